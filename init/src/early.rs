//! Stage `early`: the kernel file systems, the console, `/dev/kmsg`, the panic hook and
//! the kernel command line.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cmdline::Cmdline;
use crate::log::Log;
use crate::os::{MountFlags, Os};
use crate::{debug, info};

/// One kernel file system PID 1 mounts.
pub struct MountSpec {
    /// Mount point relative to the root.
    pub target: &'static str,
    pub fstype: &'static str,
    pub source: &'static str,
    pub flags: MountFlags,
    pub data: &'static str,
    /// Without it the boot cannot go on; the others only warn.
    pub required: bool,
}

const NO_EXEC: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV).union(MountFlags::NOEXEC);

/// What the early stage mounts, in order (`/dev/pts` needs `/dev`).
pub const MOUNTS: &[MountSpec] = &[
    MountSpec { target: "proc", fstype: "proc", source: "proc", flags: NO_EXEC, data: "", required: true },
    MountSpec { target: "sys", fstype: "sysfs", source: "sysfs", flags: NO_EXEC, data: "", required: true },
    MountSpec {
        target: "dev",
        fstype: "devtmpfs",
        source: "devtmpfs",
        flags: MountFlags::NOSUID,
        data: "mode=0755",
        required: true,
    },
    MountSpec {
        target: "run",
        fstype: "tmpfs",
        source: "tmpfs",
        flags: MountFlags::NOSUID.union(MountFlags::NODEV),
        data: "mode=0755",
        required: true,
    },
    MountSpec {
        target: "dev/pts",
        fstype: "devpts",
        source: "devpts",
        flags: MountFlags::NOSUID.union(MountFlags::NOEXEC),
        data: "gid=5,mode=0620,ptmxmode=0666",
        required: false,
    },
];

#[derive(Debug, thiserror::Error)]
pub enum EarlyError {
    /// Creating a mount point failed.
    #[error(
        "creating mount point {}: {source}: the initramfs root must be writable (rootfs); rebuild it with mkinitramfs",
        .path.display()
    )]
    CreateMountPoint { path: PathBuf, source: io::Error },
    /// mount(2) of a required file system failed.
    #[error(
        "mounting {fstype} on {}: {source}: the kernel needs {fstype} support (CONFIG_{}); use a kernel that has it",
        .target.display(),
        .fstype.to_ascii_uppercase()
    )]
    Mount { fstype: &'static str, target: PathBuf, source: io::Error },
    /// `/proc/cmdline` could not be read.
    #[error("reading the kernel command line from {}: {source}: is /proc mounted?", .path.display())]
    ReadCmdline { path: PathBuf, source: io::Error },
}

/// Mount the kernel file systems under `root`, attach the console and kmsg, and parse the
/// command line. Returns the parsed command line; the log's debug flag is set from it.
pub fn early(root: &Path, os: &dyn Os, log: &Log) -> Result<Cmdline, EarlyError> {
    mount_kernel_filesystems(root, os, log)?;
    match os.attach_console(&root.join("dev/console")) {
        Ok(true) => info!(log, "console opened on {}", root.join("dev/console").display()),
        Ok(false) => {}
        Err(e) => {
            info!(log, "warning: opening {}: {e}: console output may be lost", root.join("dev/console").display())
        }
    }
    let kmsg = root.join("dev/kmsg");
    lift_kmsg_ratelimit(root);
    match std::fs::OpenOptions::new().write(true).open(&kmsg) {
        Ok(file) => log.attach_kmsg(Box::new(file)),
        Err(e) => info!(log, "warning: opening {}: {e}: boot messages will be missing from dmesg", kmsg.display()),
    }
    let path = root.join("proc/cmdline");
    let bytes = std::fs::read(&path).map_err(|source| EarlyError::ReadCmdline { path: path.clone(), source })?;
    // The boot loader may pass any bytes; one that is not UTF-8 must not stop the boot.
    let text = String::from_utf8_lossy(&bytes);
    let cmdline = Cmdline::parse(&text);
    log.set_debug(cmdline.debug);
    debug!(log, "command line: {}", text.trim_end());
    if std::str::from_utf8(&bytes).is_err() {
        info!(
            log,
            "warning: {}: bytes that are not UTF-8 were read as U+FFFD; fix the boot loader's kernel command line",
            path.display()
        );
    }
    for warning in &cmdline.warnings {
        info!(log, "warning: command line: {warning}");
    }
    Ok(cmdline)
}

/// The kernel rate-limits writes to /dev/kmsg by default (`printk.devkmsg=ratelimit`:
/// a burst of ten lines, then silence for five seconds), which dropped most of the boot
/// log from `dmesg`. While the initramfs runs the limit is lifted; the image gets the
/// setting back as it was. A value given on the kernel command line locks the sysctl:
/// then the write fails and the administrator's choice stands.
const DEVKMSG_SYSCTL: &str = "proc/sys/kernel/printk_devkmsg";

/// The setting found at boot, when the early stage changed it.
static DEVKMSG_BEFORE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn lift_kmsg_ratelimit(root: &Path) {
    let path = root.join(DEVKMSG_SYSCTL);
    let Ok(before) = std::fs::read_to_string(&path) else { return };
    let before = before.trim();
    if before == "ratelimit" && std::fs::write(&path, "on").is_ok() {
        let _ = DEVKMSG_BEFORE.set(before.to_string());
    }
}

/// Put back the kmsg rate limit that [`early`] lifted; called before the hand-off.
pub fn restore_kmsg_ratelimit(root: &Path) {
    if let Some(before) = DEVKMSG_BEFORE.get() {
        let _ = std::fs::write(root.join(DEVKMSG_SYSCTL), before);
    }
}

/// Mount every entry of [`MOUNTS`] under `root` that is not mounted yet.
pub fn mount_kernel_filesystems(root: &Path, os: &dyn Os, log: &Log) -> Result<(), EarlyError> {
    for spec in MOUNTS {
        let target = root.join(spec.target);
        std::fs::create_dir_all(&target)
            .map_err(|source| EarlyError::CreateMountPoint { path: target.clone(), source })?;
        // Read again before each mount: /proc itself is the first entry.
        if mounted_points(root).contains(&format!("/{}", spec.target)) {
            debug!(log, "{} already mounted", target.display());
            continue;
        }
        match os.mount(spec.source, &target, spec.fstype, spec.flags, spec.data) {
            Ok(()) => debug!(log, "mounted {} on {}", spec.fstype, target.display()),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                debug!(log, "{} already mounted", target.display())
            }
            Err(source) if spec.required => return Err(EarlyError::Mount { fstype: spec.fstype, target, source }),
            Err(e) => info!(log, "warning: mounting {} on {}: {e}; going on without it", spec.fstype, target.display()),
        }
    }
    Ok(())
}

/// Mount points listed in `ROOT/proc/self/mountinfo` (empty before /proc is mounted).
fn mounted_points(root: &Path) -> BTreeSet<String> {
    let Ok(text) = std::fs::read_to_string(root.join("proc/self/mountinfo")) else {
        return BTreeSet::new();
    };
    text.lines().filter_map(|line| line.split(' ').nth(4)).map(unescape_mount_field).collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal =
            bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Log every panic (message and location) through `log` before it unwinds to the stage
/// runner, so a panic is never silent even when it happens in a worker thread.
pub fn install_panic_hook(log: Arc<Log>) {
    std::panic::set_hook(Box::new(move |info| {
        let message = panic_message(info.payload());
        match info.location() {
            Some(at) => log.info(format_args!("panic: {message} at {}:{}", at.file(), at.line())),
            None => log.info(format_args!("panic: {message}")),
        }
    }));
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kmsg_rate_limit_is_lifted_for_the_boot_and_restored_for_the_image() {
        let root = tempfile::tempdir().unwrap();
        let sysctl = root.path().join(DEVKMSG_SYSCTL);
        std::fs::create_dir_all(sysctl.parent().unwrap()).unwrap();
        std::fs::write(&sysctl, "ratelimit\n").unwrap();
        lift_kmsg_ratelimit(root.path());
        assert_eq!(std::fs::read_to_string(&sysctl).unwrap(), "on");
        restore_kmsg_ratelimit(root.path());
        assert_eq!(std::fs::read_to_string(&sysctl).unwrap(), "ratelimit");
    }

    use super::*;
    use crate::log::captured;
    use crate::os::fake::{Call, FakeOs, Kind};

    fn tree_with_cmdline(cmdline: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc")).unwrap();
        std::fs::write(root.path().join("proc/cmdline"), cmdline).unwrap();
        root
    }

    #[test]
    fn mounts_every_table_entry_in_order_with_mount_points() {
        let root = tree_with_cmdline("console=ttyS0\n");
        let os = FakeOs::default();
        let (log, _) = captured();
        early(root.path(), &os, &log).unwrap();
        let mounts = os.calls_of(Kind::Mount);
        let expected: Vec<Call> = MOUNTS
            .iter()
            .map(|m| Call::Mount {
                source: m.source.into(),
                target: root.path().join(m.target),
                fstype: m.fstype.into(),
                flags: m.flags,
                data: m.data.into(),
            })
            .collect();
        assert_eq!(mounts, expected);
        for m in MOUNTS {
            assert!(root.path().join(m.target).is_dir(), "{} not created", m.target);
        }
        assert!(MOUNTS.iter().any(|m| m.fstype == "tmpfs" && m.target == "run" && m.data.contains("mode=0755")));
    }

    #[test]
    fn already_mounted_file_systems_are_skipped() {
        let root = tree_with_cmdline("");
        std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
        std::fs::write(
            root.path().join("proc/self/mountinfo"),
            "22 1 0:21 / /proc rw - proc proc rw\n23 1 0:5 / /dev rw - devtmpfs udev rw\n",
        )
        .unwrap();
        let os = FakeOs::default();
        let (log, _) = captured();
        mount_kernel_filesystems(root.path(), &os, &log).unwrap();
        let calls = os.calls();
        let rel: Vec<&Path> =
            calls.iter().filter_map(Call::mount_target).map(|t| t.strip_prefix(root.path()).unwrap()).collect();
        assert_eq!(rel, [Path::new("sys"), Path::new("run"), Path::new("dev/pts")]);
    }

    #[test]
    fn ebusy_counts_as_mounted_and_optional_failures_only_warn() {
        let root = tree_with_cmdline("");
        let os = FakeOs::default();
        let busy = rustix::io::Errno::BUSY.raw_os_error();
        let nodev = rustix::io::Errno::NODEV.raw_os_error();
        os.fail_mount_on(&root.path().join("sys"), busy);
        os.fail_mount_on(&root.path().join("dev/pts"), nodev);
        let (log, console) = captured();
        mount_kernel_filesystems(root.path(), &os, &log).unwrap();
        assert!(console.text().contains("warning: mounting devpts on"), "{}", console.text());
    }

    #[test]
    fn a_required_mount_failure_names_fstype_and_target() {
        let root = tree_with_cmdline("");
        let os = FakeOs::default();
        let target = root.path().join("dev");
        os.fail_mount_on(&target, rustix::io::Errno::NODEV.raw_os_error());
        let (log, _) = captured();
        let err = mount_kernel_filesystems(root.path(), &os, &log).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&format!("mounting devtmpfs on {}: ", target.display())), "{text}");
        assert!(text.contains("CONFIG_DEVTMPFS"), "{text}");
    }

    #[test]
    fn command_line_is_read_and_debug_switched_on() {
        let root = tree_with_cmdline("console=ttyS0 diskless.debug ip=dhcp\n");
        let os = FakeOs::default();
        let (log, console) = captured();
        let cmdline = early(root.path(), &os, &log).unwrap();
        assert_eq!(cmdline.get("ip"), Some("dhcp"));
        assert!(log.debug_enabled());
        assert!(console.text().contains("command line: console=ttyS0 diskless.debug ip=dhcp\n"), "{}", console.text());
        assert!(os.calls().contains(&Call::AttachConsole { console: root.path().join("dev/console") }));
    }

    #[test]
    fn missing_cmdline_is_an_error_naming_the_path() {
        let root = tempfile::tempdir().unwrap();
        let (log, _) = captured();
        let err = early(root.path(), &FakeOs::default(), &log).unwrap_err();
        assert!(err.to_string().contains(&root.path().join("proc/cmdline").display().to_string()), "{err}");
    }

    #[test]
    fn non_utf8_cmdline_is_read_lossily_with_a_warning() {
        let root = tree_with_cmdline("");
        std::fs::write(root.path().join("proc/cmdline"), b"ip=dhcp x=\xff\xfe nfsroot=10.0.0.1:/srv\n").unwrap();
        let (log, console) = captured();
        let cmdline = early(root.path(), &FakeOs::default(), &log).unwrap();
        assert_eq!(cmdline.get("ip"), Some("dhcp"));
        assert_eq!(cmdline.get("nfsroot"), Some("10.0.0.1:/srv"));
        assert!(console.text().contains("proc/cmdline: bytes that are not UTF-8"), "{}", console.text());
    }

    #[test]
    fn mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape_mount_field(r"/mnt/a\040b\134c"), r"/mnt/a b\c");
        assert_eq!(unescape_mount_field(r"/x\04"), r"/x\04");
        assert_eq!(unescape_mount_field(r"\777"), "\u{FFFD}");
    }
}
