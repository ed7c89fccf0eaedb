//! A real package update against a diskless image (issue #10, point 4): a copy of the
//! Debian test image is made diskless by `setup`, the `diskless` binary is installed in
//! it, and base-files is reinstalled with apt inside a chroot. dpkg replaces the listed
//! `/etc/os-release` (not a configuration file: unpacked by a rename over the link);
//! the dpkg hook runs `diskless fix --auto`, which must move the package's version into
//! the base layer, keep the lab's version beside it and restore the link.
//!
//! Needs root (chroot, bind mounts) and the image built by `qemu/setup`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use diskless::image::fix::fix;
use diskless::image::setup::setup;

/// The Debian test image `qemu/setup` builds.
fn debian_image() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/.cache/images/debian");
    assert!(
        path.join("var/lib/dpkg/status").is_file(),
        "the Debian test image {} is missing: build it with qemu/setup",
        path.display()
    );
    path
}

/// The bind mounts of the chroot, undone when dropped (also when an assertion fails).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn bind(&mut self, from: &str, to: PathBuf) {
        rustix::mount::mount_bind(from, &to).unwrap_or_else(|e| panic!("bind {from} on {}: {e}", to.display()));
        self.0.push(to);
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for point in self.0.iter().rev() {
            if let Err(e) = rustix::mount::unmount(point, rustix::mount::UnmountFlags::DETACH) {
                eprintln!("unmounting {}: {e}", point.display());
            }
        }
    }
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}

/// The installed version of `package` in the image's dpkg status.
fn installed_version(root: &Path, package: &str) -> String {
    let status = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    let stanza = status.split("\n\n").find(|s| s.starts_with(&format!("Package: {package}\n"))).unwrap();
    stanza.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap().to_string()
}

/// The package's .deb in the image's /tmp: the installed version, or the mirror's
/// current one when that is gone (then the reinstall is an up- or downgrade).
fn download(root: &Path, package: &str) -> String {
    let dir = root.join("tmp");
    let versioned = format!("{package}={}", installed_version(root, package));
    let fetched = Command::new("apt-get").args(["download", "-q", &versioned]).current_dir(&dir).output().unwrap();
    if !fetched.status.success() {
        run(Command::new("apt-get").args(["download", "-q", package]).current_dir(&dir));
    }
    let deb = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with(&format!("{package}_")) && name.ends_with(".deb"))
        .expect("apt-get download left no .deb");
    format!("/tmp/{deb}")
}

#[test]
fn a_reinstalled_package_file_goes_to_the_base_layer_and_its_link_comes_back() {
    let copy = tempfile::tempdir().unwrap();
    let root = copy.path().join("debian");
    run(Command::new("cp").arg("-a").arg(debian_image()).arg(&root));
    let base_files = run(Command::new("chroot").arg(&root).args(["dpkg", "-S", "/etc/os-release", "/etc/issue"]));
    assert_eq!(base_files.matches("base-files: ").count(), 2, "{base_files}");

    fs::create_dir_all(root.join("etc/diskless/local.d")).unwrap();
    fs::write(root.join("etc/diskless/local.d/etc"), "os-release\nissue\nmotd\n").unwrap();
    let report = setup(&root, false).unwrap();
    assert!(!report.has_problems(), "{}", report.render());
    assert!(!setup(&root, false).unwrap().changed());
    // The lab's own version, which the package's must not silently replace.
    let base = root.join("diskless/base/etc");
    fs::remove_file(base.join("os-release")).unwrap();
    fs::write(base.join("os-release"), "PRETTY_NAME=\"Lab 3\"\n").unwrap();
    fs::copy(env!("CARGO_BIN_EXE_diskless"), root.join("usr/sbin/diskless")).unwrap();
    let deb = download(&root, "base-files");

    let output = {
        let mut mounts = Mounts(Vec::new());
        mounts.bind("/proc", root.join("proc"));
        mounts.bind("/dev", root.join("dev"));
        run(Command::new("chroot")
            .arg(&root)
            .args(["apt-get", "install", "--reinstall", "--allow-downgrades", "-y", &deb])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };

    assert!(
        output.contains("diskless fix: /etc/os-release: re-pointed to ../usr/lib/os-release"),
        "the hook ran:\n{output}"
    );
    assert_eq!(fs::read_link(root.join("etc/os-release")).unwrap(), Path::new("local/os-release"));
    assert_eq!(fs::read_link(base.join("os-release")).unwrap(), Path::new("/usr/lib/os-release"));
    assert_eq!(fs::read_to_string(base.join("os-release.diskless-prev")).unwrap(), "PRETTY_NAME=\"Lab 3\"\n");
    // A configuration file is followed by dpkg, not replaced: the link stays, and the
    // package's version dpkg leaves beside it is reported, not applied.
    assert_eq!(fs::read_link(root.join("etc/issue")).unwrap(), Path::new("local/issue"));
    assert!(output.contains("note: /etc/issue.dpkg-new: the package's version of a listed file"), "{output}");
    assert_eq!(fs::read_link(root.join("etc/motd")).unwrap(), Path::new("local/motd"));
    assert!(!fix(&root, false).unwrap().anything_fixed(), "the hook left nothing to fix");
    drop(copy);
}
