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
    DIR.get_or_init(|| depmod_basedir_of(&kernel_basedir(), &kernel_version()))
}

/// [`depmod_basedir`] for any kernel tree, foreign architectures included (kmod's
/// depmod reads modules of any ELF class and byte order).
pub fn depmod_basedir_of(basedir: &Path, version: &str) -> PathBuf {
    let done = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("depmod-{version}"));
    if done.join("lib/modules").join(version).join("modules.dep").is_file() {
        return done;
    }
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir in target");
    let modules = scratch.path().join("lib/modules");
    std::fs::create_dir_all(&modules).expect("create lib/modules");
    run(Command::new("cp").arg("-al").arg(basedir.join("lib/modules").join(version)).arg(&modules));
    run(Command::new("depmod").arg("-b").arg(scratch.path()).arg(version));
    let _ = std::fs::remove_dir_all(&done);
    std::fs::rename(scratch.keep(), &done).expect("move depmod tree into place");
    done
}

/// The Debian kernel of another architecture (Debian's name: i386, arm64, ppc64el)
/// that `qemu/setup` unpacks into qemu/.cache/kernels/ARCH: its BASEDIR and version.
pub fn foreign_kernel(arch: &str) -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/.cache/kernels").join(arch);
    let version_file = dir.join("version");
    let version = std::fs::read_to_string(&version_file)
        .unwrap_or_else(|e| {
            panic!("cannot read {}: {e}; run qemu/setup to fetch the {arch} kernel", version_file.display())
        })
        .trim()
        .to_string();
    let base = dir.join("root");
    assert!(
        base.join("lib/modules").join(&version).is_dir(),
        "{} has no lib/modules/{version}: run qemu/setup to fetch the {arch} kernel",
        base.display()
    );
    (base, version)
}
