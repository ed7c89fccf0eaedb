//! What a finit_module errno means for the administrator, as a table.

use std::io;

use rustix::io::Errno;

/// finit_module errnos and their meaning; any other points to the kernel's log.
const LOAD_ERRORS: &[(Errno, &str)] = &[
    (Errno::NOENT, "unknown symbol: a module it needs is missing or failed; see dmesg"),
    (Errno::NOEXEC, "not a module for this kernel: built for another version, or a damaged file"),
    (Errno::INVAL, "the kernel rejected the module or its options; see dmesg"),
    (Errno::NODEV, "the driver found no device it can drive"),
    (Errno::PERM, "module loading is not permitted (lockdown or modules_disabled)"),
    (Errno::KEYREJECTED, "the module signature was rejected"),
    (Errno::NOKEY, "the module is not signed and signatures are enforced"),
    (Errno::BUSY, "the device or a resource it needs is busy"),
    (Errno::NOMEM, "out of memory"),
];

/// What the error of a finit_module means, in the administrator's words.
pub fn load_error_meaning(e: &io::Error) -> &'static str {
    let errno = e.raw_os_error();
    LOAD_ERRORS
        .iter()
        .find(|(n, _)| Some(n.raw_os_error()) == errno)
        .map_or("see dmesg for the kernel's reason", |(_, meaning)| meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_have_meanings_and_unknown_ones_point_to_dmesg() {
        let enoexec = io::Error::from_raw_os_error(Errno::NOEXEC.raw_os_error());
        assert!(load_error_meaning(&enoexec).contains("another version"));
        assert_eq!(load_error_meaning(&io::Error::other("x")), "see dmesg for the kernel's reason");
    }
}
