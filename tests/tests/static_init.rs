//! The release `init` is a static executable that runs with nothing around it: the
//! kernel starts it from an initramfs that has no dynamic loader, no libc and, before
//! init mounts devtmpfs, no /dev.

use std::process::Command;

use qemu_tests::build::release_binaries;

#[test]
fn release_init_is_statically_linked() {
    let init = &release_binaries().init;
    let out = Command::new("ldd").arg(init).output().expect("run ldd (package libc-bin)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd {} says it is dynamic:\n{said}",
        init.display()
    );
    // The kernel itself would honour a PT_INTERP header: there must be none.
    let out = Command::new("readelf").args(["-l", "-W"]).arg(init).output().expect("run readelf (package binutils)");
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && headers.contains("LOAD"), "readelf -l {} failed:\n{headers}", init.display());
    assert!(
        !headers.contains("INTERP"),
        "{} asks for a program interpreter; it would not start in an initramfs:\n{headers}",
        init.display()
    );
}

#[test]
fn release_init_starts_in_an_empty_chroot_without_dev() {
    let init = &release_binaries().init;
    let root = tempfile::tempdir().expect("temp dir");
    // Copied by another process: a write descriptor of ours would be inherited by the
    // commands the other test forks meanwhile, and exec then fails with ETXTBSY.
    let copied = Command::new("cp").arg(init).arg(root.path().join("init")).status().expect("run cp");
    assert!(copied.success(), "cp {} into the empty root: {copied}", init.display());
    let entries: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("init")], "the chroot must hold init alone");
    // Not PID 1 here, so init only says what it is and exits: enough to show that the
    // loader, libc and its start-up code need nothing from the file system.
    let out = Command::new("chroot").arg(root.path()).arg("/init").output().expect("run chroot (coreutils)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "init in an empty chroot failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("diskless init {}", env!("CARGO_PKG_VERSION"))),
        "init in an empty chroot did not print its version line:\n{stdout}"
    );
}
