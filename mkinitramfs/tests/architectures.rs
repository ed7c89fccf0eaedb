//! The client architectures: the init cross-built for each (qemu/build-inits) is a
//! static executable of its machine, and mkinitramfs builds for the real Debian kernel
//! of each architecture (qemu/setup unpacks them) with the init of that architecture.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The cargo target directory these tests were built in: mkinitramfs is
/// `<target>/<host triple>/<profile>/mkinitramfs`.
fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_mkinitramfs"));
    exe.ancestors().nth(3).expect("mkinitramfs lives in <target>/<triple>/<profile>").to_path_buf()
}

/// (triple, what file(1) calls its machine), from qemu/init-targets.
fn init_targets() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/init-targets");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let targets: Vec<(String, String)> = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (triple, machine) = line.split_once('|').unwrap_or_else(|| panic!("bad line {line:?} in init-targets"));
            (triple.to_string(), machine.to_string())
        })
        .collect();
    assert_eq!(targets.len(), 4, "init-targets: {targets:?}");
    targets
}

fn cross_init(triple: &str) -> PathBuf {
    let init = target_dir().join(triple).join("release/init");
    assert!(init.is_file(), "{} is missing: run qemu/build-inits (after qemu/setup)", init.display());
    init
}

#[test]
fn cross_built_inits_are_static_executables_of_their_machine() {
    for (triple, machine) in init_targets() {
        let init = cross_init(&triple);
        let out = Command::new("file")
            .arg("-b")
            .arg(&init)
            .output()
            .unwrap_or_else(|e| panic!("cannot run file: {e}; install it (apt-get install file)"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "file {}: {}", init.display(), String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("executable"), "{}: not an executable: {text}", init.display());
        assert!(text.contains(&machine), "{}: not {machine}: {text}", init.display());
        assert!(
            text.contains("statically linked") || text.contains("static-pie linked"),
            "{}: not static: {text}",
            init.display()
        );
        println!("{triple}: {} bytes: {text}", std::fs::metadata(&init).unwrap().len());
    }
}

/// Debian's name of each foreign architecture with the triple of its init.
const FOREIGN: [(&str, &str); 3] = [
    ("i386", "i686-unknown-linux-gnu"),
    ("arm64", "aarch64-unknown-linux-gnu"),
    ("ppc64el", "powerpc64le-unknown-linux-gnu"),
];

/// BASEDIR and version of the Debian kernel of `arch` that qemu/setup unpacks.
fn foreign_kernel(arch: &str) -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/.cache/kernels").join(arch);
    let version = std::fs::read_to_string(dir.join("version"))
        .unwrap_or_else(|e| panic!("no {arch} kernel in {} ({e}): run qemu/setup", dir.display()));
    (dir.join("root"), version.trim().to_string())
}

fn mkinitramfs(basedir: &Path, version: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkinitramfs"))
        .arg("-b")
        .arg(basedir)
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg(version)
        .output()
        .unwrap()
}

#[test]
fn without_init_each_foreign_kernel_gets_the_init_built_for_its_architecture() {
    let scratch = tempfile::tempdir().unwrap();
    for (arch, triple) in FOREIGN {
        let (basedir, version) = foreign_kernel(arch);
        let out = scratch.path().join(format!("initrd-{arch}.img"));
        let output = mkinitramfs(&basedir, &version, &out, &[]);
        assert!(output.status.success(), "{arch}: {}", String::from_utf8_lossy(&output.stderr));
        let entries = initramfs::read_archive(&std::fs::read(&out).unwrap()).unwrap();
        let init = entries.iter().find(|e| e.path == "init").unwrap_or_else(|| panic!("{arch}: no /init"));
        let want = std::fs::read(cross_init(triple)).unwrap();
        assert!(init.kind == initramfs::EntryKind::File(want), "{arch}: /init is not {triple}'s init");
        assert!(
            entries.iter().any(|e| e.path == modules_db::db_path(&version)),
            "{arch}: no module database for {version}"
        );
        println!("{arch} {version}: {} bytes", std::fs::metadata(&out).unwrap().len());
    }
}

#[test]
fn an_init_of_another_architecture_is_refused_naming_both() {
    let scratch = tempfile::tempdir().unwrap();
    let x86_64 = cross_init("x86_64-unknown-linux-gnu");
    for (arch, name) in [("arm64", "aarch64 (ARM64)"), ("i386", "i386 (32-bit x86)"), ("ppc64el", "ppc64le (POWER)")] {
        let (basedir, version) = foreign_kernel(arch);
        let out = scratch.path().join("initrd.img");
        let output = mkinitramfs(&basedir, &version, &out, &["--init", x86_64.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{arch}: {stderr}");
        for needle in ["built for x86-64", &format!("is {name}"), &version, "qemu/build-inits"] {
            assert!(stderr.contains(needle), "{arch}: stderr lacks {needle:?}: {stderr}");
        }
        assert!(!out.exists(), "{arch}: an initramfs was written");
    }
}
