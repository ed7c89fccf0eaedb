//! Directories of the rig: the workspace root (found from this crate's manifest
//! directory, so tests work from any current directory), the cargo target directory,
//! where console logs are kept, and a scratch directory for generated images.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// The workspace root: the parent of the `tests/` crate.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives one level below the workspace root")
}

/// The cargo target directory (`CARGO_TARGET_DIR` if set, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { workspace_root().join(dir) }
        }
        None => workspace_root().join("target"),
    }
}

/// `target/qemu-logs/`: console logs of VMs and logs of servers, kept after the test
/// so a failing assertion can point at them.
pub fn log_dir() -> Result<PathBuf> {
    ensure_dir(target_dir().join("qemu-logs"))
}

/// `target/qemu-work/`: generated initramfs images and other per-process scratch files.
pub fn work_dir() -> Result<PathBuf> {
    ensure_dir(target_dir().join("qemu-work"))
}

fn ensure_dir(dir: PathBuf) -> Result<PathBuf> {
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create directory", &dir, e))?;
    Ok(dir)
}

/// A name unique among all live processes of this machine: `prefix` + this process's
/// PID + a per-process counter, in base 36 so it fits Linux's 15-character limit on
/// interface names with a prefix of up to 4 characters.
pub fn unique_name(prefix: &str) -> Result<String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{}", base36(std::process::id()), base36(n));
    if name.len() > 15 {
        return Err(Error::Invalid {
            what: format!("name prefix {prefix:?}"),
            reason: format!(
                "{name:?} is longer than the 15 characters Linux allows for interface names; use a shorter prefix"
            ),
        });
    }
    Ok(name)
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("base-36 digits are ASCII")
}

/// Turns a test name such as `hardware::vm_a` into a file name stem (`hardware-vm_a`).
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' { c } else { '-' })
        .collect::<String>()
        .replace("--", "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_fit_interface_name_limit() {
        let a = unique_name("dlbr").unwrap();
        let b = unique_name("dlbr").unwrap();
        assert_ne!(a, b);
        assert!(a.len() <= 15 && a.starts_with("dlbr"), "{a}");
    }

    #[test]
    fn unique_name_rejects_prefix_that_would_exceed_limit() {
        assert!(unique_name("a-very-long-prefix").is_err());
    }

    #[test]
    fn file_stem_replaces_path_separators() {
        assert_eq!(file_stem("hardware::vm_a"), "hardware-vm_a");
        assert_eq!(file_stem("a/b c"), "a-b-c");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests").is_dir());
    }
}
