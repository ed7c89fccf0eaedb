//! Shared by the integration tests: the rig's real Debian kernel and a
//! depmod'ed copy of its module tree as the independent reference.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// `BASEDIR` of the kernel that `qemu/setup` unpacks.
pub fn kernel_basedir() -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/.cache/kernel/root");
    assert!(
        base.join("lib/modules").is_dir(),
        "{} is missing: run qemu/setup to fetch the Debian kernel",
        base.display()
    );
    base
}

/// The one kernel version unpacked there.
pub fn kernel_version() -> String {
    let dir = kernel_basedir().join("lib/modules");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}; run qemu/setup", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("no kernel in {}: run qemu/setup", dir.display()))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; run qemu/setup (installs kmod, cpio)"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A BASEDIR holding a hard-linked copy of the kernel's module tree on which
/// depmod has run. Kept under the target directory between runs (depmod takes a
/// few seconds); made in a scratch directory and renamed into place, so a run
/// that dies half-way leaves nothing that looks finished.
pub fn depmod_basedir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let version = kernel_version();
        let done = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("depmod-{version}"));
        if done.join("lib/modules").join(&version).join("modules.dep").is_file() {
            return done;
        }
        let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir in target");
        let modules = scratch.path().join("lib/modules");
        std::fs::create_dir_all(&modules).expect("create lib/modules");
        run(Command::new("cp").arg("-al").arg(kernel_basedir().join("lib/modules").join(&version)).arg(&modules));
        run(Command::new("depmod").arg("-b").arg(scratch.path()).arg(&version));
        let _ = std::fs::remove_dir_all(&done);
        std::fs::rename(scratch.keep(), &done).expect("move depmod tree into place");
        done
    })
}
