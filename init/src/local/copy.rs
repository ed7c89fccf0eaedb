//! Copying layers into the local dirs.
//!
//! Inside a layer, paths mirror the root of the image: `<layer>/etc/fstab` belongs to
//! the configured dir `/etc` and lands in its destination (`/etc/local/fstab`, or the
//! overlay upper of `/etc`). What is not inside any configured dir is skipped.
//!
//! Layers are written by administrators but hosts can be many and layers old, so the
//! copy trusts neither side: every step works on directory file descriptors with
//! `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`. A symlink is copied as a symlink and never
//! followed, in the layer or in the destination, so a symlink `etc/evil -> /tmp` from
//! one layer followed by a file `etc/evil/x` from the next replaces the symlink with a
//! directory instead of writing to `/tmp/x`. Later layers replace entries of earlier
//! ones, also a file by a directory and the other way round.
//!
//! A failure to write (full tmpfs, I/O error) ends the copy with an [`ApplyError`]
//! naming the layer and the file; an entry that cannot be copied on purpose (device,
//! FIFO, socket, unreadable source) is a [`CopyWarning`] and the copy goes on.
//!
//! Reading the image is the slow half: on an NFS root every directory and file costs
//! round trips (GETATTR on open, ACCESS, READ), which the machine spends waiting. So
//! each layer is first read into memory by its own thread ([`read_layer`]), all layers
//! at once, and then written in layer order from memory: the same walk, the same
//! order of writes and warnings, the waits overlapped. Files beyond a memory budget
//! are left on the image and read again while writing, from the layer's directory,
//! still without following any symlink.

use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, mkdirat, openat, openat2,
    readlinkat, statat, symlinkat, unlinkat,
};
use rustix::io::Errno;
use serde::Serialize;

use super::image::open_in_image;
use super::mounts::Destination;
use super::select::{Layer, LayerKind, LayerSelection};

/// Setting metadata on a freshly written entry, named relative to its directory.
/// Implementations must not follow a symlink named `name`.
pub trait Attributes {
    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
    fn set_owner(&mut self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    /// `fchmodat(dir, name, mode)`; never called for symlinks.
    fn set_mode(&mut self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()>;
    /// `utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW)`.
    fn set_times(&mut self, dir: BorrowedFd<'_>, name: &OsStr, times: &Timestamps) -> io::Result<()>;
}

/// What was copied from one layer, for boot.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    pub kind: LayerKind,
    pub path: PathBuf,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub skipped: u64,
}

/// The result of [`apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    pub layers: Vec<LayerReport>,
    pub warnings: Vec<CopyWarning>,
}

/// An entry of a layer that was not copied; the copy went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CopyWarning {
    /// The entry is not inside any configured dir.
    OutsideDirs { layer: String, path: PathBuf },
    /// The layer has a non-directory where a configured dir is (`<layer>/etc` a file).
    NotADirectory { layer: String, path: PathBuf },
    /// Devices, FIFOs and sockets do not belong in configuration.
    SpecialFile { layer: String, path: PathBuf, file_type: String },
    /// The entry could not be read from the image.
    Unreadable { layer: String, path: PathBuf, error: String },
}

impl fmt::Display for CopyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyWarning::OutsideDirs { layer, path } => write!(
                f,
                "layer {layer}: {} is not inside any of the configured dirs, skipped (add its dir to dirs or \
                 move it in the layer)",
                path.display()
            ),
            CopyWarning::NotADirectory { layer, path } => write!(
                f,
                "layer {layer}: {} is a configured dir but not a directory in the layer, skipped",
                path.display()
            ),
            CopyWarning::SpecialFile { layer, path, file_type } => {
                write!(
                    f,
                    "layer {layer}: {} is a {file_type}, skipped (layers hold files, directories and symlinks)",
                    path.display()
                )
            }
            CopyWarning::Unreadable { layer, path, error } => write!(
                f,
                "layer {layer}: cannot read {}: {error}; skipped (make it readable by root on the server: \
                 root_squash?)",
                path.display()
            ),
        }
    }
}

/// Why copying the layers stopped. `path` is where in the destination it failed.
#[derive(Debug)]
pub enum ApplyError {
    /// A destination directory (a mounted local dir or upper) cannot be opened.
    OpenDestination { dir: PathBuf, path: PathBuf, error: io::Error },
    /// The layer itself cannot be opened.
    OpenLayer { layer: String, error: io::Error },
    /// The local dir is full: tmpfs size or quota reached.
    NoSpace { layer: String, path: PathBuf, error: io::Error },
    /// Creating or writing an entry failed.
    Write { layer: String, path: PathBuf, error: io::Error },
    /// Removing an entry of an earlier layer that this layer replaces failed.
    Remove { layer: String, path: PathBuf, error: io::Error },
    /// Setting owner, mode or times failed.
    SetAttributes { layer: String, path: PathBuf, error: io::Error },
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::OpenDestination { dir, path, error } => {
                write!(f, "cannot open {} (the local part of {}): {error}", path.display(), dir.display())
            }
            ApplyError::OpenLayer { layer, error } => write!(f, "cannot open layer {layer}: {error}"),
            ApplyError::NoSpace { layer, path, error } => write!(
                f,
                "layer {layer}: no space left for {} ({error}); raise tmpfs_size or make the layer smaller",
                path.display()
            ),
            ApplyError::Write { layer, path, error } => {
                write!(f, "layer {layer}: cannot write {}: {error}", path.display())
            }
            ApplyError::Remove { layer, path, error } => {
                write!(f, "layer {layer}: cannot replace {}: {error}", path.display())
            }
            ApplyError::SetAttributes { layer, path, error } => {
                write!(f, "layer {layer}: cannot set owner, mode or times of {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for ApplyError {}

/// Bytes read and written at a time when copying a file.
const COPY_BUFFER: usize = 64 * 1024;

/// An open destination of one configured dir.
struct OpenDestination<'a> {
    dir: &'a Path,
    path: &'a Path,
    fd: OwnedFd,
}

/// Copies the layers of `selection`, in order, from the image at `image_root` into
/// `destinations` (from the mount plan, already mounted).
pub fn apply<A: Attributes + ?Sized>(
    selection: &LayerSelection,
    image_root: &Path,
    destinations: &[Destination],
    attrs: &mut A,
) -> Result<ApplyReport, ApplyError> {
    apply_with_budget(selection, image_root, destinations, attrs, READ_BUDGET)
}

/// [`apply`] with `budget` bytes of file data read ahead.
fn apply_with_budget<A: Attributes + ?Sized>(
    selection: &LayerSelection,
    image_root: &Path,
    destinations: &[Destination],
    attrs: &mut A,
    budget: u64,
) -> Result<ApplyReport, ApplyError> {
    let mut open = Vec::with_capacity(destinations.len());
    for d in destinations {
        let fd = openat(
            rustix::fs::CWD,
            &d.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ApplyError::OpenDestination {
            dir: d.dir.clone(),
            path: d.path.clone(),
            error: e.into(),
        })?;
        open.push(OpenDestination { dir: &d.dir, path: &d.path, fd });
    }
    let dirs: Vec<&Path> = destinations.iter().map(|d| d.dir.as_path()).collect();
    let budget = AtomicU64::new(budget);
    let mut report = ApplyReport::default();
    std::thread::scope(|scope| {
        let readers: Vec<_> = selection
            .layers
            .iter()
            .map(|layer| {
                let (dirs, budget) = (&dirs, &budget);
                let read = move || read_layer(image_root, layer, dirs, budget);
                // A thread that cannot be started reads its layer when it is written.
                std::thread::Builder::new().name("read-layer".into()).spawn_scoped(scope, read).map_err(|_| read)
            })
            .collect();
        for (layer, reader) in selection.layers.iter().zip(readers) {
            let read = match reader {
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(read) => read(),
            };
            let name = layer.to_string();
            let (root, tree) = read.map_err(|error| ApplyError::OpenLayer { layer: name.clone(), error })?;
            let mut copy = LayerCopy {
                layer: layer.clone(),
                name,
                root,
                destinations: &open,
                attrs: &mut *attrs,
                report: LayerReport {
                    kind: layer.kind,
                    path: layer.path.clone(),
                    files: 0,
                    directories: 0,
                    symlinks: 0,
                    skipped: 0,
                },
                warnings: &mut report.warnings,
            };
            copy.walk_mirror(&tree, Path::new("/"))?;
            report.layers.push(copy.report);
        }
        Ok(())
    })?;
    Ok(report)
}

/// Bytes of file data all layer readers together keep in memory (the machine may be
/// small); the files beyond stay on the image and are read while writing.
const READ_BUDGET: u64 = 32 << 20;

/// A directory of a layer as read: its entries in name order, or why it could not be
/// listed. An entry whose metadata could not be read carries the error.
type SourceDir = Result<Vec<Result<SourceEntry, (OsString, Errno)>>, io::Error>;

/// One entry of a layer directory, with its own metadata (not a symlink's target).
struct SourceEntry {
    name: OsString,
    stat: Stat,
    content: Content,
}

/// What was read of an entry. Only what the copy uses is read.
enum Content {
    /// A directory the copy enters, or why it could not be opened.
    Dir(Result<SourceDir, Errno>),
    File(FileData),
    Symlink(Result<CString, Errno>),
    /// Not needed: outside the configured dirs, or not a copyable type.
    Skipped,
}

enum FileData {
    Read(Vec<u8>),
    OpenFailed(Errno),
    ReadFailed(io::Error),
    /// Over the budget: read while writing, from this path below the layer.
    Later(PathBuf),
}

/// Opens the layer and reads everything of it that [`LayerCopy`] will copy. Returns
/// the layer's directory (for files read later) and its top-level listing.
fn read_layer(
    image_root: &Path,
    layer: &Layer,
    dirs: &[&Path],
    budget: &AtomicU64,
) -> io::Result<(OwnedFd, SourceDir)> {
    let root = open_in_image(image_root, &layer.path, OFlags::RDONLY | OFlags::DIRECTORY)?;
    let mut reader = LayerReader { dirs, budget };
    let tree = reader.read_dir(&root, Path::new("/"), false);
    Ok((root, tree))
}

struct LayerReader<'a> {
    dirs: &'a [&'a Path],
    /// What is left of [`READ_BUDGET`], shared by the readers of all layers.
    budget: &'a AtomicU64,
}

impl LayerReader<'_> {
    /// Reads the directory `src` (mirroring `image_path`); `copying` once inside a
    /// configured dir, where everything is read, before it only the way to one.
    fn read_dir(&mut self, src: &OwnedFd, image_path: &Path, copying: bool) -> SourceDir {
        let names = entry_names(src)?;
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let stat = match statat(src, &*name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(e) => {
                    entries.push(Err((name, e)));
                    continue;
                }
            };
            let child = image_path.join(&name);
            let content = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    let configured = self.dirs.contains(&child.as_path());
                    if copying || configured || self.dirs.iter().any(|d| d.starts_with(&child)) {
                        Content::Dir(open_dir(src, &name).map(|sub| self.read_dir(&sub, &child, copying || configured)))
                    } else {
                        Content::Skipped
                    }
                }
                FileType::RegularFile if copying => Content::File(self.read_file(src, &name, &child, &stat)),
                FileType::Symlink if copying => Content::Symlink(readlinkat(src, &*name, Vec::new())),
                _ => Content::Skipped,
            };
            entries.push(Ok(SourceEntry { name, stat, content }));
        }
        Ok(entries)
    }

    fn read_file(&mut self, src: &OwnedFd, name: &OsStr, image_path: &Path, stat: &Stat) -> FileData {
        let later = || FileData::Later(image_path.strip_prefix("/").unwrap_or(image_path).to_path_buf());
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        let take = |left: u64| left.checked_sub(size);
        if self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, take).is_err() {
            return later();
        }
        let give_back = |n: u64| self.budget.fetch_add(n, Ordering::Relaxed);
        let fd = match open_source_file(src, name) {
            Ok(fd) => fd,
            Err(e) => {
                give_back(size);
                return FileData::OpenFailed(e);
            }
        };
        let mut data = Vec::with_capacity(size as usize);
        // One byte more than the size: a file that grew meanwhile is read whole while
        // writing, never cut at its old size.
        match File::from(fd).take(size.saturating_add(1)).read_to_end(&mut data) {
            Ok(n) if n as u64 <= size => {
                give_back(size - n as u64);
                FileData::Read(data)
            }
            Ok(_) => {
                give_back(size);
                later()
            }
            Err(e) => {
                give_back(size);
                FileData::ReadFailed(e)
            }
        }
    }
}

fn open_dir(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

fn open_source_file(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The copy of one layer.
struct LayerCopy<'a, A: ?Sized> {
    layer: Layer,
    /// `host (/diskless/hosts/lab3-12)`, for messages.
    name: String,
    /// The layer's directory in the image, for files read while writing.
    root: OwnedFd,
    destinations: &'a [OpenDestination<'a>],
    attrs: &'a mut A,
    report: LayerReport,
    warnings: &'a mut Vec<CopyWarning>,
}

/// Where the entries of a source directory go.
struct Target<'d> {
    fd: &'d OwnedFd,
    /// The destination path, for messages.
    path: PathBuf,
}

fn is_full(e: Errno) -> bool {
    e == Errno::NOSPC || e == Errno::DQUOT
}

fn entry_names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    // Sorted, so that two boots of the same image copy in the same order.
    names.sort();
    Ok(names)
}

/// Which side of a copy failed: reading the image is the layer's problem, writing
/// the local dir is the boot's.
enum CopyFailure {
    Read(io::Error),
    Write(io::Error),
}

fn copy_data(mut from: File, mut to: File) -> Result<(), CopyFailure> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyFailure::Read(e)),
        };
        to.write_all(&buffer[..n]).map_err(CopyFailure::Write)?;
    }
}

fn timespec(sec: impl TryInto<i64>, nsec: impl TryInto<i64>) -> Timespec {
    Timespec { tv_sec: sec.try_into().unwrap_or(0), tv_nsec: nsec.try_into().unwrap_or(0) }
}

impl<A: Attributes + ?Sized> LayerCopy<'_, A> {
    fn layer_path(&self, image_path: &Path) -> PathBuf {
        self.layer.path.join(image_path.strip_prefix("/").unwrap_or(image_path))
    }

    fn unreadable(&mut self, image_path: &Path, error: impl fmt::Display) {
        self.report.skipped += 1;
        let path = self.layer_path(image_path);
        self.warnings.push(CopyWarning::Unreadable { layer: self.name.clone(), path, error: error.to_string() });
    }

    fn write_error(&self, path: PathBuf, e: Errno) -> ApplyError {
        let (layer, error) = (self.name.clone(), io::Error::from(e));
        if is_full(e) { ApplyError::NoSpace { layer, path, error } } else { ApplyError::Write { layer, path, error } }
    }

    fn io_write_error(&self, path: PathBuf, e: io::Error) -> ApplyError {
        match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(errno) => self.write_error(path, errno),
            None => ApplyError::Write { layer: self.name.clone(), path, error: e },
        }
    }

    /// Walks the part of the layer that mirrors `image_path` but is not yet inside a
    /// configured dir: only directories leading to one are entered.
    fn walk_mirror(&mut self, src: &SourceDir, image_path: &Path) -> Result<(), ApplyError> {
        for (entry, child) in self.source_entries(src, image_path) {
            let is_dir = FileType::from_raw_mode(entry.stat.st_mode) == FileType::Directory;
            let destinations = self.destinations;
            if let Some(dest) = destinations.iter().find(|d| d.dir == child) {
                if !is_dir {
                    self.report.skipped += 1;
                    let path = self.layer_path(&child);
                    self.warnings.push(CopyWarning::NotADirectory { layer: self.name.clone(), path });
                    continue;
                }
                let Some(sub) = self.source_dir(entry, &child) else { continue };
                let target = Target { fd: &dest.fd, path: dest.path.to_path_buf() };
                self.copy_dir(sub, &child, &target)?;
            } else if is_dir && destinations.iter().any(|d| d.dir.starts_with(&child)) {
                let Some(sub) = self.source_dir(entry, &child) else { continue };
                self.walk_mirror(sub, &child)?;
            } else {
                self.report.skipped += 1;
                let path = self.layer_path(&child);
                self.warnings.push(CopyWarning::OutsideDirs { layer: self.name.clone(), path });
            }
        }
        Ok(())
    }

    /// The entries of the source directory `src` (mirroring `image_path`) with their
    /// image paths. What could not be read is a warning and left out.
    fn source_entries<'s>(&mut self, src: &'s SourceDir, image_path: &Path) -> Vec<(&'s SourceEntry, PathBuf)> {
        let listed = match src {
            Ok(listed) => listed,
            Err(e) => {
                self.unreadable(image_path, e);
                return Vec::new();
            }
        };
        let mut entries = Vec::with_capacity(listed.len());
        for entry in listed {
            match entry {
                Ok(entry) => entries.push((entry, image_path.join(&entry.name))),
                Err((name, e)) => self.unreadable(&image_path.join(name), e),
            }
        }
        entries
    }

    /// The listing of a source directory the reader entered.
    fn source_dir<'s>(&mut self, entry: &'s SourceEntry, image_path: &Path) -> Option<&'s SourceDir> {
        match &entry.content {
            Content::Dir(Ok(dir)) => Some(dir),
            Content::Dir(Err(e)) => {
                self.unreadable(image_path, e);
                None
            }
            _ => {
                // The reader enters every directory the walk enters.
                self.unreadable(image_path, "not read from the image");
                None
            }
        }
    }

    /// Copies the entries of the source directory `src` (mirroring `image_path`) into
    /// `target`. A subdirectory that is itself a configured dir goes to its own
    /// destination instead (dirs `/var` and `/var/lib`).
    fn copy_dir(&mut self, src: &SourceDir, image_path: &Path, target: &Target<'_>) -> Result<(), ApplyError> {
        for (entry, child) in self.source_entries(src, image_path) {
            let (name, stat) = (&entry.name, &entry.stat);
            let dest_path = target.path.join(name);
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    let destinations = self.destinations;
                    let Some(sub) = self.source_dir(entry, &child) else { continue };
                    if let Some(dest) = destinations.iter().find(|d| d.dir == child) {
                        self.copy_dir(sub, &child, &Target { fd: &dest.fd, path: dest.path.to_path_buf() })?;
                        continue;
                    }
                    let made = self.make_dir(target.fd, name, &dest_path)?;
                    self.copy_dir(sub, &child, &Target { fd: &made, path: dest_path.clone() })?;
                    self.set_attributes(target.fd, name, &dest_path, stat, true)?;
                    self.report.directories += 1;
                }
                FileType::RegularFile => {
                    let later = match &entry.content {
                        Content::File(FileData::Read(_)) => None,
                        Content::File(FileData::OpenFailed(e)) => {
                            self.unreadable(&child, e);
                            continue;
                        }
                        Content::File(FileData::Later(relative)) => match self.open_later(relative) {
                            Ok(fd) => Some(File::from(fd)),
                            Err(e) => {
                                self.unreadable(&child, e);
                                continue;
                            }
                        },
                        // ReadFailed: the local file is cleared below, as when a read fails.
                        _ => None,
                    };
                    self.clear(target.fd, name, &dest_path)?;
                    let out = openat(
                        target.fd,
                        &**name,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| self.write_error(dest_path.clone(), e))?;
                    let written = match (&entry.content, later) {
                        (_, Some(from)) => copy_data(from, File::from(out)),
                        (Content::File(FileData::Read(data)), None) => {
                            File::from(out).write_all(data).map_err(CopyFailure::Write)
                        }
                        (Content::File(FileData::ReadFailed(e)), None) => {
                            Err(CopyFailure::Read(io::Error::new(e.kind(), e.to_string())))
                        }
                        _ => Err(CopyFailure::Read(io::Error::other("not read from the image"))),
                    };
                    match written {
                        Ok(()) => {}
                        Err(CopyFailure::Read(e)) => {
                            // Leave no half file behind to be taken for the layer's version.
                            self.clear(target.fd, name, &dest_path)?;
                            self.unreadable(&child, e);
                            continue;
                        }
                        Err(CopyFailure::Write(e)) => return Err(self.io_write_error(dest_path, e)),
                    }
                    self.set_attributes(target.fd, name, &dest_path, stat, true)?;
                    self.report.files += 1;
                }
                FileType::Symlink => {
                    let link = match &entry.content {
                        Content::Symlink(Ok(link)) => link,
                        Content::Symlink(Err(e)) => {
                            self.unreadable(&child, e);
                            continue;
                        }
                        _ => {
                            self.unreadable(&child, "not read from the image");
                            continue;
                        }
                    };
                    self.clear(target.fd, name, &dest_path)?;
                    symlinkat(link.as_c_str(), target.fd, &**name)
                        .map_err(|e| self.write_error(dest_path.clone(), e))?;
                    self.set_attributes(target.fd, name, &dest_path, stat, false)?;
                    self.report.symlinks += 1;
                }
                other => {
                    self.report.skipped += 1;
                    let file_type = match other {
                        FileType::CharacterDevice => "character device",
                        FileType::BlockDevice => "block device",
                        FileType::Fifo => "FIFO",
                        FileType::Socket => "socket",
                        _ => "file of unknown type",
                    };
                    let path = self.layer_path(&child);
                    self.warnings.push(CopyWarning::SpecialFile {
                        layer: self.name.clone(),
                        path,
                        file_type: file_type.into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Opens a file the reader left on the image, by its path below the layer: no
    /// component may be a symlink, and the path cannot leave the layer.
    fn open_later(&self, relative: &Path) -> Result<OwnedFd, Errno> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        openat2(&self.root, relative, flags, Mode::empty(), resolve)
    }

    /// Opens the destination directory `name`, replacing whatever non-directory an
    /// earlier layer left there.
    fn make_dir(&mut self, dir: &OwnedFd, name: &OsStr, dest_path: &Path) -> Result<OwnedFd, ApplyError> {
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
            Ok(_) => {
                self.remove(dir, name, dest_path, false)?;
                self.mkdir(dir, name, dest_path)?;
            }
            Err(Errno::NOENT) => self.mkdir(dir, name, dest_path)?,
            Err(e) => return Err(self.write_error(dest_path.to_path_buf(), e)),
        }
        // O_NOFOLLOW: if anything turned the directory into a symlink meanwhile, fail
        // instead of writing where it points.
        openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| self.write_error(dest_path.to_path_buf(), e))
    }

    fn mkdir(&self, dir: &OwnedFd, name: &OsStr, dest_path: &Path) -> Result<(), ApplyError> {
        mkdirat(dir, name, Mode::from_raw_mode(0o700)).map_err(|e| self.write_error(dest_path.to_path_buf(), e))
    }

    /// Makes room for a new entry `name`: removes what an earlier layer put there.
    fn clear(&mut self, dir: &OwnedFd, name: &OsStr, dest_path: &Path) -> Result<(), ApplyError> {
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => self.remove(dir, name, dest_path, FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.remove_error(dest_path, e)),
        }
    }

    fn remove_error(&self, path: &Path, e: Errno) -> ApplyError {
        ApplyError::Remove { layer: self.name.clone(), path: path.to_path_buf(), error: e.into() }
    }

    /// Removes `name` from `dir`; a directory with everything in it, without
    /// following any symlink inside.
    fn remove(&mut self, dir: &OwnedFd, name: &OsStr, dest_path: &Path, is_dir: bool) -> Result<(), ApplyError> {
        if !is_dir {
            return unlinkat(dir, name, AtFlags::empty()).map_err(|e| self.remove_error(dest_path, e));
        }
        let sub =
            openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| self.remove_error(dest_path, e))?;
        let names = entry_names(&sub).map_err(|e| ApplyError::Remove {
            layer: self.name.clone(),
            path: dest_path.to_path_buf(),
            error: e,
        })?;
        for child in names {
            let child_path = dest_path.join(&child);
            let st = statat(&sub, &*child, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| self.remove_error(&child_path, e))?;
            let child_is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            self.remove(&sub, &child, &child_path, child_is_dir)?;
        }
        unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(|e| self.remove_error(dest_path, e))
    }

    /// Owner first (it clears set-id bits), then mode, then times (the others change ctime only).
    fn set_attributes(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        dest_path: &Path,
        stat: &Stat,
        with_mode: bool,
    ) -> Result<(), ApplyError> {
        let fail = |error: io::Error| ApplyError::SetAttributes {
            layer: self.name.clone(),
            path: dest_path.to_path_buf(),
            error,
        };
        let times = Timestamps {
            last_access: timespec(stat.st_atime, stat.st_atime_nsec),
            last_modification: timespec(stat.st_mtime, stat.st_mtime_nsec),
        };
        let result = self
            .attrs
            .set_owner(dir.as_fd(), name, stat.st_uid, stat.st_gid)
            .and_then(
                |()| if with_mode { self.attrs.set_mode(dir.as_fd(), name, stat.st_mode & 0o7777) } else { Ok(()) },
            )
            .and_then(|()| self.attrs.set_times(dir.as_fd(), name, &times));
        result.map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::System;
    use std::fs;

    #[test]
    fn files_over_the_read_budget_are_copied_whole_from_the_image() {
        let img = tempfile::tempdir().unwrap();
        let layer = img.path().join("diskless/base/etc");
        fs::create_dir_all(&layer).unwrap();
        fs::create_dir_all(img.path().join("etc/local")).unwrap();
        fs::write(layer.join("big"), "more than eight bytes").unwrap();
        fs::create_dir(layer.join("sub")).unwrap();
        fs::write(layer.join("sub/small"), "tiny").unwrap();
        let selection = LayerSelection {
            layers: vec![Layer { kind: LayerKind::Base, path: "/diskless/base".into() }],
            skipped: Vec::new(),
        };
        let local = img.path().join("etc/local");
        let destinations = [Destination { dir: "/etc".into(), path: local.clone() }];
        let report = apply_with_budget(&selection, img.path(), &destinations, &mut System, 8).unwrap();
        assert_eq!(fs::read_to_string(local.join("big")).unwrap(), "more than eight bytes");
        assert_eq!(fs::read_to_string(local.join("sub/small")).unwrap(), "tiny");
        assert_eq!((report.layers[0].files, report.layers[0].directories), (2, 1));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }
}
