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

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps, mkdirat, openat, readlinkat, statat, symlinkat,
    unlinkat,
};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::image::open_in_image;
use crate::os::Os;
use super::mounts::Destination;
use super::select::{Layer, LayerKind, LayerSelection};

/// What was copied from one layer, for boot.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerReport {
    pub kind: LayerKind,
    pub path: PathBuf,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub skipped: u64,
}

/// The result of [`apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub layers: Vec<LayerReport>,
    pub warnings: Vec<CopyWarning>,
}

/// An entry of a layer that was not copied; the copy went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
pub fn apply(
    selection: &LayerSelection,
    image_root: &Path,
    destinations: &[Destination],
    os: &dyn Os,
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
    let mut report = ApplyReport::default();
    for layer in &selection.layers {
        let name = layer.to_string();
        let root = open_in_image(image_root, &layer.path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|error| ApplyError::OpenLayer { layer: name.clone(), error })?;
        let mut copy = LayerCopy {
            layer: layer.clone(),
            name,
            destinations: &open,
            os,
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
        copy.walk_mirror(&root, Path::new("/"))?;
        report.layers.push(copy.report);
    }
    Ok(report)
}

/// The copy of one layer.
struct LayerCopy<'a> {
    layer: Layer,
    /// `host (/diskless/hosts/lab3-12)`, for messages.
    name: String,
    destinations: &'a [OpenDestination<'a>],
    os: &'a dyn Os,
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

impl LayerCopy<'_> {
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
    fn walk_mirror(&mut self, src: &OwnedFd, image_path: &Path) -> Result<(), ApplyError> {
        for (name, child, stat) in self.source_entries(src, image_path) {
            let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            let destinations = self.destinations;
            if let Some(dest) = destinations.iter().find(|d| d.dir == child) {
                if !is_dir {
                    self.report.skipped += 1;
                    let path = self.layer_path(&child);
                    self.warnings.push(CopyWarning::NotADirectory { layer: self.name.clone(), path });
                    continue;
                }
                let Some(sub) = self.open_source_dir(src, &name, &child) else { continue };
                let target = Target { fd: &dest.fd, path: dest.path.to_path_buf() };
                self.copy_dir(&sub, &child, &target)?;
            } else if is_dir && destinations.iter().any(|d| d.dir.starts_with(&child)) {
                let Some(sub) = self.open_source_dir(src, &name, &child) else { continue };
                self.walk_mirror(&sub, &child)?;
            } else {
                self.report.skipped += 1;
                let path = self.layer_path(&child);
                self.warnings.push(CopyWarning::OutsideDirs { layer: self.name.clone(), path });
            }
        }
        Ok(())
    }

    /// The entries of the source directory `src` (mirroring `image_path`): name, image
    /// path and the entry's own metadata (not a symlink's target). What cannot be read
    /// is a warning and left out.
    fn source_entries(&mut self, src: &OwnedFd, image_path: &Path) -> Vec<(OsString, PathBuf, Stat)> {
        let names = match entry_names(src) {
            Ok(names) => names,
            Err(e) => {
                self.unreadable(image_path, e);
                return Vec::new();
            }
        };
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let child = image_path.join(&name);
            match statat(src, &*name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => entries.push((name, child, stat)),
                Err(e) => self.unreadable(&child, e),
            }
        }
        entries
    }

    fn open_source_dir(&mut self, src: &OwnedFd, name: &OsStr, image_path: &Path) -> Option<OwnedFd> {
        match openat(src, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        {
            Ok(fd) => Some(fd),
            Err(e) => {
                self.unreadable(image_path, e);
                None
            }
        }
    }

    /// Copies the entries of the source directory `src` (mirroring `image_path`) into
    /// `target`. A subdirectory that is itself a configured dir goes to its own
    /// destination instead (dirs `/var` and `/var/lib`).
    fn copy_dir(&mut self, src: &OwnedFd, image_path: &Path, target: &Target<'_>) -> Result<(), ApplyError> {
        for (name, child, stat) in self.source_entries(src, image_path) {
            let dest_path = target.path.join(&name);
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    let destinations = self.destinations;
                    let Some(sub) = self.open_source_dir(src, &name, &child) else { continue };
                    if let Some(dest) = destinations.iter().find(|d| d.dir == child) {
                        self.copy_dir(&sub, &child, &Target { fd: &dest.fd, path: dest.path.to_path_buf() })?;
                        continue;
                    }
                    let made = self.make_dir(target.fd, &name, &dest_path)?;
                    self.copy_dir(&sub, &child, &Target { fd: &made, path: dest_path.clone() })?;
                    self.set_attributes(target.fd, &name, &dest_path, &stat, true)?;
                    self.report.directories += 1;
                }
                FileType::RegularFile => {
                    let source = match openat(
                        src,
                        &*name,
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(fd) => fd,
                        Err(e) => {
                            self.unreadable(&child, e);
                            continue;
                        }
                    };
                    self.clear(target.fd, &name, &dest_path)?;
                    let out = openat(
                        target.fd,
                        &*name,
                        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(|e| self.write_error(dest_path.clone(), e))?;
                    match copy_data(File::from(source), File::from(out)) {
                        Ok(()) => {}
                        Err(CopyFailure::Read(e)) => {
                            // Leave no half file behind to be taken for the layer's version.
                            self.clear(target.fd, &name, &dest_path)?;
                            self.unreadable(&child, e);
                            continue;
                        }
                        Err(CopyFailure::Write(e)) => return Err(self.io_write_error(dest_path, e)),
                    }
                    self.set_attributes(target.fd, &name, &dest_path, &stat, true)?;
                    self.report.files += 1;
                }
                FileType::Symlink => {
                    let link = match readlinkat(src, &*name, Vec::new()) {
                        Ok(link) => link,
                        Err(e) => {
                            self.unreadable(&child, e);
                            continue;
                        }
                    };
                    self.clear(target.fd, &name, &dest_path)?;
                    symlinkat(link.as_c_str(), target.fd, &*name)
                        .map_err(|e| self.write_error(dest_path.clone(), e))?;
                    self.set_attributes(target.fd, &name, &dest_path, &stat, false)?;
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
            .os
            .set_owner(dir.as_fd(), name, stat.st_uid, stat.st_gid)
            .and_then(
                |()| if with_mode { self.os.set_mode(dir.as_fd(), name, stat.st_mode & 0o7777) } else { Ok(()) },
            )
            .and_then(|()| self.os.set_times(dir.as_fd(), name, &times));
        result.map_err(fail)
    }
}
