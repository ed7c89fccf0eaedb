//! Reading and changing files of an image that is not the running system.
//!
//! An image is a directory tree prepared for other machines: its symlinks mean what they
//! mean inside it, and a hostile or careless one (`/etc/ssh -> /root/.ssh`,
//! `etc/x -> ../../../outside`) must never make the administrator's command read or
//! write outside it. So every path is a [`Loc`]: an *anchor* (a configured dir, the
//! layer root), opened with `RESOLVE_IN_ROOT` as the image itself would resolve it, and
//! a path below it walked with `RESOLVE_NO_SYMLINKS`: below an anchor, only real
//! directories are entered, and the last component is never followed.
//!
//! Every change is atomic for a reader of the image: new content is written under a
//! temporary name beside its destination, synced, then renamed over it. An
//! interrupted run leaves the old entry or the new one, and at worst a stale
//! `.NAME.diskless-new` that the next run replaces.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, fstat, mkdirat, openat, openat2,
    readlinkat, renameat, statat, symlinkat, unlinkat,
};
use rustix::io::Errno;

use crate::local::image::open_in_image;
use crate::os::{Os, RealOs};

/// How often to retry when the kernel reports a concurrent rename during resolution.
const EAGAIN_RETRIES: usize = 8;
/// Suffix of the temporary name new content is written under.
const NEW_SUFFIX: &str = ".diskless-new";
/// Directories created without a model get the usual mode of system directories.
const DEFAULT_DIR_MODE: u32 = 0o755;

/// A path of the image: `rel` below the directory `anchor` (both as in the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// Absolute in the image; its own symlinks resolve inside the image.
    pub anchor: PathBuf,
    /// Relative, without `..`; walked without following any symlink.
    pub rel: PathBuf,
}

impl Loc {
    pub fn new(anchor: impl Into<PathBuf>, rel: impl Into<PathBuf>) -> Loc {
        Loc { anchor: anchor.into(), rel: rel.into() }
    }

    /// The path as the image sees it (`/etc/ssh/ssh_host_rsa_key`).
    pub fn path(&self) -> PathBuf {
        self.anchor.join(&self.rel)
    }

    fn name(&self) -> &OsStr {
        self.rel.file_name().unwrap_or(OsStr::new("."))
    }

    /// The entry beside this one called `NAME<suffix>`.
    pub fn with_suffix(&self, suffix: &str) -> Loc {
        let mut name = self.name().to_os_string();
        name.push(suffix);
        Loc { anchor: self.anchor.clone(), rel: self.rel.with_file_name(name) }
    }
}

/// What is at a [`Loc`], never following it.
#[derive(Debug, Clone)]
pub enum Node {
    Absent,
    File(Stat),
    Symlink(Stat, PathBuf),
    Dir(Stat),
    /// Devices, FIFOs and sockets: not configuration.
    Other(&'static str),
}

impl Node {
    pub fn exists(&self) -> bool {
        !matches!(self, Node::Absent)
    }

    /// `regular file`, `symlink to X`, ... for messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Absent => "absent".into(),
            Node::File(_) => "a regular file".into(),
            Node::Symlink(_, target) => format!("a symlink to {}", target.display()),
            Node::Dir(_) => "a directory".into(),
            Node::Other(kind) => format!("a {kind}"),
        }
    }
}

fn retry<T>(mut f: impl FnMut() -> Result<T, Errno>) -> Result<T, Errno> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(Errno::AGAIN) if attempt < EAGAIN_RETRIES => attempt += 1,
            result => return result,
        }
    }
}

/// Opens the directory `rel` below the open directory `base`, following no symlink.
fn open_beneath(base: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    retry(|| openat2(base, rel, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH))
        .map_err(io::Error::from)
}

/// The anchor of `loc`, opened as a directory of the image.
fn open_anchor(image_root: &Path, loc: &Loc) -> io::Result<OwnedFd> {
    open_in_image(image_root, &loc.anchor, OFlags::RDONLY | OFlags::DIRECTORY)
}

/// The directory holding `loc`, and the entry's name in it.
pub fn open_parent(image_root: &Path, loc: &Loc) -> io::Result<(OwnedFd, OsString)> {
    let anchor = open_anchor(image_root, loc)?;
    let parent = open_beneath(&anchor, loc.rel.parent().unwrap_or(Path::new("")))?;
    Ok((parent, loc.name().to_os_string()))
}

/// The directory `loc` itself (`rel` may be empty: the anchor).
pub fn open_dir(image_root: &Path, loc: &Loc) -> io::Result<OwnedFd> {
    open_beneath(&open_anchor(image_root, loc)?, &loc.rel)
}

/// What is at `name` in `dir`.
pub fn node_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Node> {
    let stat = match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::NOENT) => return Ok(Node::Absent),
        Err(e) => return Err(e.into()),
    };
    Ok(match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Node::File(stat),
        FileType::Directory => Node::Dir(stat),
        FileType::Symlink => {
            let target = readlinkat(dir, name, Vec::new())?;
            Node::Symlink(stat, PathBuf::from(OsStr::from_bytes(target.to_bytes())))
        }
        FileType::CharacterDevice => Node::Other("character device"),
        FileType::BlockDevice => Node::Other("block device"),
        FileType::Fifo => Node::Other("FIFO"),
        FileType::Socket => Node::Other("socket"),
        FileType::Unknown => Node::Other("file of unknown type"),
    })
}

/// What is at `loc`; a missing directory on the way means absent.
pub fn node(image_root: &Path, loc: &Loc) -> io::Result<Node> {
    match open_parent(image_root, loc) {
        Ok((dir, name)) => node_at(&dir, &name),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Node::Absent),
        Err(e) => Err(e),
    }
}

/// `target` of a symlink at `link` (absolute in the image) as an absolute path,
/// resolved lexically: the directories below an anchor are real ones, so `..` is the
/// lexical parent.
pub fn absolute_target(link: &Path, target: &Path) -> PathBuf {
    let mut path =
        if target.is_absolute() { PathBuf::from("/") } else { link.parent().unwrap_or(Path::new("/")).to_path_buf() };
    for component in target.components() {
        match component {
            Component::ParentDir => {
                path.pop();
            }
            Component::Normal(part) => path.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    path
}

/// The relative symlink target that leads from a link at `link` to `target`
/// (both absolute in the image): up to the root, then down (`../../diskless/base/etc/fstab`).
pub fn relative_target(link: &Path, target: &Path) -> PathBuf {
    let parent = link.parent().unwrap_or(Path::new("/"));
    let ups = parent.components().filter(|c| matches!(c, Component::Normal(_))).count();
    let mut path: PathBuf = std::iter::repeat_n("..", ups).collect();
    path.push(target.strip_prefix("/").unwrap_or(target));
    path
}

fn timestamps(stat: &Stat) -> Timestamps {
    fn time(sec: impl TryInto<i64>, nsec: impl TryInto<i64>) -> Timespec {
        Timespec { tv_sec: sec.try_into().unwrap_or(0), tv_nsec: nsec.try_into().unwrap_or(0) }
    }
    Timestamps {
        last_access: time(stat.st_atime, stat.st_atime_nsec),
        last_modification: time(stat.st_mtime, stat.st_mtime_nsec),
    }
}

/// Owner first (it clears set-id bits), then mode, then times (the others change them).
fn copy_attributes(dir: &OwnedFd, name: &OsStr, stat: &Stat, with_mode: bool) -> io::Result<()> {
    let os = RealOs;
    os.set_owner(dir.as_fd(), name, stat.st_uid, stat.st_gid)?;
    if with_mode {
        os.set_mode(dir.as_fd(), name, stat.st_mode & 0o7777)?;
    }
    os.set_times(dir.as_fd(), name, &timestamps(stat))
}

fn remove_stale(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn temporary_name(name: &OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(NEW_SUFFIX);
    tmp
}

/// Copies the entry `from` (a regular file or a symlink) to `to`, replacing what is
/// there atomically and keeping owner, mode and times. A symlink is copied as a symlink
/// with `target` as its target when given (else its own). The parent of `to` must exist.
pub fn copy_entry(image_root: &Path, from: &Loc, to: &Loc, target: Option<&Path>) -> io::Result<()> {
    let (from_dir, from_name) = open_parent(image_root, from)?;
    let (to_dir, to_name) = open_parent(image_root, to)?;
    let tmp = temporary_name(&to_name);
    remove_stale(&to_dir, &tmp)?;
    match node_at(&from_dir, &from_name)? {
        Node::File(stat) => {
            // O_NONBLOCK | O_NOCTTY: a file swapped for a FIFO or a tty cannot block or take the terminal.
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
            let mut source = File::from(openat(&from_dir, &*from_name, flags, Mode::empty())?);
            let out = openat(
                &to_dir,
                &*tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut out = File::from(out);
            let written = io::copy(&mut source, &mut out).and_then(|_| out.flush());
            if let Err(e) =
                written.and_then(|()| copy_attributes(&to_dir, &tmp, &stat, true)).and_then(|()| out.sync_all())
            {
                let _ = unlinkat(&to_dir, &*tmp, AtFlags::empty());
                return Err(e);
            }
        }
        Node::Symlink(stat, own) => {
            symlinkat(target.unwrap_or(&own), &to_dir, &*tmp)?;
            copy_attributes(&to_dir, &tmp, &stat, false)?;
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {}, not a file or a symlink", from.path().display(), other.describe()),
            ));
        }
    }
    renameat(&to_dir, &*tmp, &to_dir, &*to_name)?;
    Ok(())
}

/// Puts a symlink to `target` at `loc` in one rename, whatever was there (not a directory).
pub fn link_over(image_root: &Path, loc: &Loc, target: &Path) -> io::Result<()> {
    let (dir, name) = open_parent(image_root, loc)?;
    let tmp = temporary_name(&name);
    remove_stale(&dir, &tmp)?;
    symlinkat(target, &dir, &*tmp)?;
    renameat(&dir, &*tmp, &dir, &*name).map_err(io::Error::from)
}

/// Renames `from` to `to` (same directory or not; the same filesystem).
pub fn rename(image_root: &Path, from: &Loc, to: &Loc) -> io::Result<()> {
    let (from_dir, from_name) = open_parent(image_root, from)?;
    let (to_dir, to_name) = open_parent(image_root, to)?;
    renameat(&from_dir, &*from_name, &to_dir, &*to_name).map_err(io::Error::from)
}

/// Removes the non-directory `loc`; absent is fine.
pub fn remove(image_root: &Path, loc: &Loc) -> io::Result<()> {
    match open_parent(image_root, loc) {
        Ok((dir, name)) => remove_stale(&dir, &name),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the directory `loc` and any missing directory below its anchor on the way.
/// A directory created gets the owner and mode of `like(rel)` (the image directory it
/// mirrors, when there is one), else root's 0755.
pub fn make_dirs(image_root: &Path, loc: &Loc, like: &dyn Fn(&Path) -> Option<PathBuf>) -> io::Result<()> {
    let mut dir = open_anchor(image_root, loc)?;
    let mut rel = PathBuf::new();
    for component in loc.rel.components() {
        let Component::Normal(name) = component else { continue };
        rel.push(name);
        match mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => {
                let model = like(&rel).and_then(|p| open_in_image(image_root, &p, OFlags::PATH).ok());
                match model.map(fstat).transpose()? {
                    Some(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                        copy_attributes(&dir, name, &stat, true)?
                    }
                    _ => RealOs.set_mode(dir.as_fd(), name, DEFAULT_DIR_MODE)?,
                }
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        dir = open_beneath(&dir, Path::new(name))?;
    }
    Ok(())
}

/// Writes `text` as the file `loc` (mode 0644), replacing it atomically; missing
/// directories on the way are created (0755).
pub fn write_file(image_root: &Path, loc: &Loc, text: &str) -> io::Result<()> {
    write_file_mode(image_root, loc, text, 0o644)
}

/// [`write_file`] with permissions `mode` (an executable hook).
pub fn write_file_mode(image_root: &Path, loc: &Loc, text: &str, mode: u32) -> io::Result<()> {
    make_dirs(image_root, &Loc::new(&loc.anchor, loc.rel.parent().unwrap_or(Path::new(""))), &|_| None)?;
    let (dir, name) = open_parent(image_root, loc)?;
    let tmp = temporary_name(&name);
    remove_stale(&dir, &tmp)?;
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut out = File::from(openat(&dir, &*tmp, flags, Mode::from_raw_mode(mode))?);
    let written = out.write_all(text.as_bytes()).and_then(|()| out.sync_all());
    if let Err(e) = written.and_then(|()| RealOs.set_mode(dir.as_fd(), &tmp, mode)) {
        let _ = unlinkat(&dir, &*tmp, AtFlags::empty());
        return Err(e);
    }
    renameat(&dir, &*tmp, &dir, &*name).map_err(io::Error::from)
}

/// The content of the regular file `loc`, at most `limit` bytes; `None` when absent.
pub fn read_file(image_root: &Path, loc: &Loc, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let (dir, name) = match open_parent(image_root, loc) {
        Ok(found) => found,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match openat(&dir, &*name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(io::ErrorKind::FileTooLarge, format!("larger than {limit} bytes")));
    }
    Ok(Some(bytes))
}

/// Whether two entries hold the same thing: type, owner, mode and content (or target;
/// `a_target` stands for `a`'s own when `a` is a symlink whose copy would get another).
pub fn same_entry(image_root: &Path, a: &Loc, a_target: Option<&Path>, b: &Loc) -> io::Result<bool> {
    let (na, nb) = (node(image_root, a)?, node(image_root, b)?);
    let owner = |s: &Stat| (s.st_uid, s.st_gid, s.st_mode & 0o7777);
    Ok(match (&na, &nb) {
        (Node::Symlink(sa, ta), Node::Symlink(sb, tb)) => {
            a_target.unwrap_or(ta) == tb && (sa.st_uid, sa.st_gid) == (sb.st_uid, sb.st_gid)
        }
        (Node::File(sa), Node::File(sb)) => {
            owner(sa) == owner(sb) && sa.st_size == sb.st_size && same_content(image_root, a, b)?
        }
        _ => false,
    })
}

fn same_content(image_root: &Path, a: &Loc, b: &Loc) -> io::Result<bool> {
    let open = |loc: &Loc| -> io::Result<File> {
        let (dir, name) = open_parent(image_root, loc)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        Ok(File::from(openat(&dir, &*name, flags, Mode::empty())?))
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n]).map_err(|_| io::Error::other("shorter"))?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The names in the directory `loc`, sorted; none when it is absent.
pub fn dir_names(image_root: &Path, loc: &Loc) -> io::Result<Vec<OsString>> {
    let dir = match open_dir(image_root, loc) {
        Ok(dir) => dir,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    #[test]
    fn relative_targets_climb_to_the_root() {
        let t = |link: &str, target: &str| relative_target(Path::new(link), Path::new(target));
        assert_eq!(t("/etc/local/fstab", "/diskless/base/etc/fstab"), Path::new("../../diskless/base/etc/fstab"));
        assert_eq!(
            t("/var/lib/local/dbus/machine-id", "/diskless/base/var/lib/dbus/machine-id"),
            Path::new("../../../../diskless/base/var/lib/dbus/machine-id")
        );
    }

    #[test]
    fn absolute_targets_resolve_lexically() {
        let t = |link: &str, target: &str| absolute_target(Path::new(link), Path::new(target));
        assert_eq!(t("/etc/resolv.conf", "../run/diskless/resolv.conf"), Path::new("/run/diskless/resolv.conf"));
        assert_eq!(t("/etc/ssh/k", "../local/ssh/k"), Path::new("/etc/local/ssh/k"));
        assert_eq!(t("/etc/a", "/etc/../../x"), Path::new("/x"));
    }

    #[test]
    fn a_copy_keeps_mode_and_mtime_and_replaces_atomically() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("etc")).unwrap();
        fs::create_dir_all(img.path().join("diskless/base/etc")).unwrap();
        fs::write(img.path().join("etc/fstab"), "new").unwrap();
        fs::set_permissions(img.path().join("etc/fstab"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::write(img.path().join("diskless/base/etc/fstab"), "old").unwrap();
        let (from, to) = (Loc::new("/etc", "fstab"), Loc::new("/diskless", "base/etc/fstab"));
        copy_entry(img.path(), &from, &to, None).unwrap();
        let (a, b) = (img.path().join("etc/fstab"), img.path().join("diskless/base/etc/fstab"));
        assert_eq!(fs::read_to_string(&b).unwrap(), "new");
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!((mb.mode() & 0o7777, mb.mtime(), mb.mtime_nsec()), (0o640, ma.mtime(), ma.mtime_nsec()));
        assert!(same_entry(img.path(), &from, None, &to).unwrap());
        assert_eq!(fs::read_dir(img.path().join("diskless/base/etc")).unwrap().count(), 1, "no temporary left");
    }

    #[test]
    fn a_symlinked_dir_below_an_anchor_is_not_entered() {
        let outer = tempfile::tempdir().unwrap();
        let img = outer.path().join("img");
        fs::create_dir_all(img.join("etc")).unwrap();
        fs::create_dir(outer.path().join("outside")).unwrap();
        fs::write(outer.path().join("outside/key"), "secret").unwrap();
        symlink(outer.path().join("outside"), img.join("etc/ssh")).unwrap();
        let e = node(&img, &Loc::new("/etc", "ssh/key")).unwrap_err();
        assert!(matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)), "{e}");
        assert!(link_over(&img, &Loc::new("/etc", "ssh/key"), Path::new("x")).is_err());
        assert_eq!(fs::read_to_string(outer.path().join("outside/key")).unwrap(), "secret");
    }

    #[test]
    fn created_dirs_take_the_mode_of_the_dir_they_mirror() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("etc/ssh")).unwrap();
        fs::set_permissions(img.path().join("etc/ssh"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::create_dir_all(img.path().join("diskless/base")).unwrap();
        let like = |rel: &Path| Some(Path::new("/").join(rel.strip_prefix("base").ok()?));
        make_dirs(img.path(), &Loc::new("/diskless", "base/etc/ssh"), &like).unwrap();
        let mode = |p: &str| fs::metadata(img.path().join(p)).unwrap().mode() & 0o7777;
        assert_eq!((mode("diskless/base/etc"), mode("diskless/base/etc/ssh")), (0o755, 0o750));
    }
}
