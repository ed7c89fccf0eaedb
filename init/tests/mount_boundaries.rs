//! Freeing the initramfs and wiping a scratch directory stop at mount points: each
//! test mounts a real tmpfs inside its temp tree, so these run as root (CI does);
//! the lib's unit tests stay runnable by a normal user.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use diskless::handoff::free_initramfs;
use diskless::scratch::tree::wipe;
use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

/// A tmpfs mounted on `path` for the guard's life.
struct TmpfsMount(PathBuf);

impl TmpfsMount {
    fn new(path: &Path) -> TmpfsMount {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a tmpfs to check that nothing crosses a mount point: run it as root"
        );
        mount("tmpfs", path, "tmpfs", MountFlags::empty(), None).expect("mount tmpfs");
        TmpfsMount(path.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = unmount(&self.0, UnmountFlags::DETACH);
    }
}

#[test]
fn freeing_deletes_the_tree_but_not_mounts_kept_paths_or_symlink_targets() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("precious"), "x").unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["lib/modules/6.1/kernel", "bin", "newroot", "mnt", "empty"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::write(r.join("init"), vec![0u8; 4096]).unwrap();
    fs::write(r.join("lib/modules/6.1/kernel/nfs.ko"), "ko").unwrap();
    fs::write(r.join("newroot/image-file"), "kept").unwrap();
    symlink(outside.path(), r.join("bin/link-to-outside")).unwrap();
    symlink(outside.path().join("precious"), r.join("file-link")).unwrap();
    let _mnt = TmpfsMount::new(&r.join("mnt"));
    fs::write(r.join("mnt/on-tmpfs"), "other fs").unwrap();

    let freed = free_initramfs(r, &[r.join("newroot")]);

    assert!(freed.errors.is_empty(), "{:?}", freed.errors);
    assert_eq!(freed.kept, [r.join("mnt")]);
    assert_eq!(freed.files, 4, "init, nfs.ko and two symlinks: {freed:?}");
    // Symlinks count their own size: the length of their target.
    let link_bytes = (outside.path().as_os_str().len() + outside.path().join("precious").as_os_str().len()) as u64;
    assert_eq!(freed.bytes, 4096 + 2 + link_bytes);
    let mut left: Vec<String> =
        fs::read_dir(r).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["mnt", "newroot"]);
    assert_eq!(fs::read_to_string(r.join("newroot/image-file")).unwrap(), "kept");
    assert_eq!(fs::read_to_string(r.join("mnt/on-tmpfs")).unwrap(), "other fs");
    assert_eq!(fs::read_to_string(outside.path().join("precious")).unwrap(), "x", "symlink followed");
    assert!(outside.path().is_dir());
}

#[test]
fn wipe_does_not_enter_another_filesystem() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("tmp/mnt");
    fs::create_dir_all(&mnt).unwrap();
    let _mnt = TmpfsMount::new(&mnt);
    fs::write(mnt.join("inside"), "x").unwrap();
    fs::write(root.path().join("tmp/beside"), "x").unwrap();

    let stats = wipe(root.path(), Path::new("tmp")).unwrap();

    assert!(mnt.join("inside").exists(), "entered the other filesystem");
    assert_eq!((stats.removed, stats.other_filesystems), (1, 1), "{stats:?}");
    assert!(!root.path().join("tmp/beside").exists());
}
