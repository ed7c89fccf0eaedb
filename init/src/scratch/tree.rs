//! Directories on the scratch filesystem: create the ones the boot binds, and empty
//! them with `wipe = true`.
//!
//! The scratch disk survives reboots and its `/tmp` and `/local` were writable by
//! users, so its content is untrusted: a previous user may have left a symlink to `/`
//! where a directory is expected. Everything here walks with file descriptors and
//! `O_NOFOLLOW`: a symlink is never followed, only removed; a directory on another
//! filesystem (a mount point, a btrfs subvolume) is never entered.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, fchmod, fstat, mkdirat, openat, statat, unlinkat};
use serde::{Deserialize, Serialize};

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(openat(rustix::fs::CWD, root, DIR_FLAGS, Mode::empty())?)
}

/// The normal components of `rel`; `..` or a root would leave the scratch fs.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a relative path", rel.display()))),
        })
        .collect()
}

/// Creates `root/rel` one component at a time (mode 0755) without following a
/// symlink, and gives the last component `mode` (so `tmp` is 1777 whatever the umask
/// and whatever an earlier boot left). A component that exists as anything but a
/// directory is an error (`ELOOP` for a symlink, `ENOTDIR` for a file).
pub fn ensure_dir(root: &Path, rel: &Path, mode: u32) -> io::Result<()> {
    let mut fd = open_root(root)?;
    for name in components(rel)? {
        match mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        fd = openat(&fd, name, DIR_FLAGS, Mode::empty())?;
    }
    fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// What emptying one directory did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeStats {
    /// Files, symlinks, devices and directories removed.
    pub removed: u64,
    /// Directories left alone because they are on another filesystem.
    pub other_filesystems: u64,
    /// Entries that could not be removed.
    pub failed: u64,
    /// The first removal error, for the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl WipeStats {
    fn fail(&mut self, what: &CStr, e: rustix::io::Errno) {
        self.failed += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {e}", what.to_string_lossy()));
        }
    }
}

/// One directory on the way down.
struct Level {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
    /// Its name in the parent (empty for the top).
    name: CString,
}

/// Removes everything inside `root/rel` and keeps the directory itself.
///
/// Never follows a symlink (it is unlinked), never enters a directory on another
/// device. Depth costs no file descriptors: only the current directory is open, and
/// the way back up is `..`, checked against the device and inode recorded on the way
/// down (nothing else runs while PID 1 wipes, but a mismatch still stops the wipe
/// rather than delete somewhere else). Entries that cannot be removed are counted and
/// the rest is still removed; only failing to open `root/rel` is an error.
pub fn wipe(root: &Path, rel: &Path) -> io::Result<WipeStats> {
    let mut fd = open_root(root)?;
    for name in components(rel)? {
        fd = openat(&fd, name, DIR_FLAGS, Mode::empty())?;
    }
    let top = fstat(&fd)?;
    let dev = top.st_dev;
    let mut stats = WipeStats::default();
    // Directories that could not be emptied (they hold another filesystem or a file
    // that refuses removal): skipped when their parent is read again.
    let mut stuck: HashSet<(u64, u64)> = HashSet::new();
    let mut path = vec![Level { fd, dev, ino: top.st_ino, name: CString::default() }];
    while let Some(current) = path.last() {
        let mut descend = None;
        let dir = match Dir::read_from(&current.fd) {
            Ok(dir) => dir,
            Err(e) => {
                stats.fail(&current.name, e);
                stuck.insert((current.dev, current.ino));
                if !go_up(&mut path, &mut stats, &mut stuck)? {
                    break;
                }
                continue;
            }
        };
        for entry in dir {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    stats.fail(&current.name, e);
                    break;
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let st = match statat(&current.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    stats.fail(name, e);
                    continue;
                }
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                match unlinkat(&current.fd, name, AtFlags::empty()) {
                    Ok(()) => stats.removed += 1,
                    Err(e) => stats.fail(name, e),
                }
                continue;
            }
            if stuck.contains(&(st.st_dev, st.st_ino)) {
                continue;
            }
            if st.st_dev != dev {
                stats.other_filesystems += 1;
                stuck.insert((st.st_dev, st.st_ino));
                continue;
            }
            if descend.is_none() {
                descend = Some((name.to_owned(), st.st_dev, st.st_ino));
            }
        }
        match descend {
            Some((name, dev, ino)) => {
                let fd = match openat(&current.fd, &*name, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(e) => {
                        stats.fail(&name, e);
                        stuck.insert((dev, ino));
                        continue;
                    }
                };
                // The directory opened must be the one stat'ed, not a replacement.
                let st = fstat(&fd)?;
                if (st.st_dev, st.st_ino) != (dev, ino) {
                    stuck.insert((dev, ino));
                    continue;
                }
                path.push(Level { fd, dev, ino, name });
            }
            None => {
                if !go_up(&mut path, &mut stats, &mut stuck)? {
                    break;
                }
            }
        }
    }
    Ok(stats)
}

/// Leaves the current (emptied) directory for its parent and removes it there.
/// Returns false at the top, which is kept.
fn go_up(path: &mut Vec<Level>, stats: &mut WipeStats, stuck: &mut HashSet<(u64, u64)>) -> io::Result<bool> {
    if path.len() == 1 {
        return Ok(false);
    }
    let Some(done) = path.pop() else {
        return Ok(false);
    };
    let parent = openat(&done.fd, c"..", DIR_FLAGS, Mode::empty())?;
    let st = fstat(&parent)?;
    let Some(expected) = path.last_mut() else {
        return Ok(false);
    };
    if (st.st_dev, st.st_ino) != (expected.dev, expected.ino) {
        return Err(io::Error::other(format!(
            "the parent of {} changed while wiping; stopped",
            done.name.to_string_lossy()
        )));
    }
    expected.fd = parent;
    match unlinkat(&expected.fd, &*done.name, AtFlags::REMOVEDIR) {
        Ok(()) => stats.removed += 1,
        // Something inside could not go (kept mount, refused removal): leave it.
        Err(_) => {
            stuck.insert((done.dev, done.ino));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn ensure_dir_creates_nested_dirs_with_the_last_mode() {
        let root = tempfile::tempdir().unwrap();
        ensure_dir(root.path(), Path::new("etc/local"), 0o755).unwrap();
        ensure_dir(root.path(), Path::new("tmp"), 0o1777).unwrap();
        assert!(root.path().join("etc/local").is_dir());
        let mode = fs::metadata(root.path().join("tmp")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o1777);
        // Again: existing dirs are fine, the mode is put back.
        fs::set_permissions(root.path().join("tmp"), fs::Permissions::from_mode(0o700)).unwrap();
        ensure_dir(root.path(), Path::new("tmp"), 0o1777).unwrap();
        assert_eq!(fs::metadata(root.path().join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
    }

    #[test]
    fn ensure_dir_refuses_a_symlinked_component() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("etc")).unwrap();
        assert!(ensure_dir(root.path(), Path::new("etc/local"), 0o755).is_err());
        assert!(!outside.path().join("local").exists(), "followed the symlink");
        assert!(ensure_dir(root.path(), Path::new("../x"), 0o755).is_err());
    }

    #[test]
    fn wipe_empties_only_the_given_dir_and_removes_symlinks_without_following() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("tmp/a/b/c")).unwrap();
        fs::write(r.join("tmp/a/b/c/file"), "x").unwrap();
        fs::write(r.join("tmp/top"), "x").unwrap();
        symlink(outside.path(), r.join("tmp/link-to-dir")).unwrap();
        symlink(outside.path().join("precious"), r.join("tmp/a/link-to-file")).unwrap();
        fs::create_dir_all(r.join("etc/local")).unwrap();
        fs::write(r.join("etc/local/fstab"), "x").unwrap();
        fs::write(r.join("other"), "x").unwrap();

        let stats = wipe(r, Path::new("tmp")).unwrap();
        assert_eq!(fs::read_dir(r.join("tmp")).unwrap().count(), 0);
        assert!(r.join("tmp").is_dir(), "the wiped dir itself stays");
        // a, a/b, a/b/c, file, top, two links.
        assert_eq!((stats.removed, stats.failed), (7, 0), "{stats:?}");
        assert_eq!(fs::read_to_string(outside.path().join("precious")).unwrap(), "keep");
        assert!(r.join("etc/local/fstab").exists() && r.join("other").exists());
    }

    #[test]
    fn wipe_of_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), "keep").unwrap();
        symlink(outside.path(), root.path().join("tmp")).unwrap();
        assert!(wipe(root.path(), Path::new("tmp")).is_err());
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn wipe_handles_deep_trees_without_running_out_of_descriptors() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("tmp")).unwrap();
        // Deeper than the default limit of 1024 open files; built by fd so the path
        // length stays short.
        let mut fd = open_root(&root.path().join("tmp")).unwrap();
        for _ in 0..1500 {
            mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
            fd = openat(&fd, "d", DIR_FLAGS, Mode::empty()).unwrap();
        }
        drop(fd);
        let stats = wipe(root.path(), Path::new("tmp")).unwrap();
        assert_eq!((stats.removed, stats.failed), (1500, 0));
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }
}
