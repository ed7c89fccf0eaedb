//! `diskless setup` and `remove` keep the owners of what they move: needs root (chown to
//! other users), so it is not among the unit tests of `image::setup`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, lchown, symlink};
use std::path::{Path, PathBuf};

use diskless::image::setup::{remove, setup};

fn owner(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap();
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn owners_of_files_symlinks_and_mirrored_dirs_are_kept() {
    let img = tempfile::tempdir().unwrap();
    let root = img.path();
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    fs::create_dir_all(root.join("var/lib/dbus")).unwrap();
    fs::create_dir_all(root.join("etc/diskless/local.d")).unwrap();
    fs::write(root.join("etc/diskless/local.d/etc"), "ssh/ssh_host_ed25519_key\n").unwrap();
    fs::write(root.join("etc/diskless/local.d/var"), "lib/dbus/machine-id\n").unwrap();
    chown(root.join("etc/ssh"), Some(1234), Some(1234)).unwrap();
    fs::set_permissions(root.join("etc/ssh"), fs::Permissions::from_mode(0o750)).unwrap();
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    fs::write(&key, "PRIVATE\n").unwrap();
    chown(&key, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o4600)).unwrap();
    symlink("/etc/machine-id", root.join("var/lib/dbus/machine-id")).unwrap();
    lchown(root.join("var/lib/dbus/machine-id"), Some(42), Some(43)).unwrap();

    let report = setup(root, false).unwrap();
    assert!(!report.has_problems(), "{}", report.render());
    let base_key = root.join("diskless/base/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(owner(&base_key), (1234, 5678, 0o4600), "set-uid survives the chown");
    assert_eq!(owner(&root.join("diskless/base/etc/ssh")), (1234, 1234, 0o750));
    assert_eq!(owner(&root.join("etc/local/ssh")), (1234, 1234, 0o750));
    let base_link = root.join("diskless/base/var/lib/dbus/machine-id");
    assert_eq!((owner(&base_link).0, owner(&base_link).1), (42, 43));
    assert_eq!(fs::read_link(&base_link).unwrap(), Path::new("/etc/machine-id"));

    remove(root, &[PathBuf::from("/etc/ssh/ssh_host_ed25519_key")]).unwrap();
    assert_eq!(owner(&key), (1234, 5678, 0o4600));
    assert_eq!(fs::read_to_string(&key).unwrap(), "PRIVATE\n");
}
