//! Copying layers into the local dirs.
//!
//! The layer is walked by [`super::walk::walk_layer`]: `<layer>/etc/fstab` belongs to the
//! configured dir `/etc` and lands in its destination (`/etc/local/fstab`, or the
//! overlay upper of `/etc`). What is not inside any configured dir is skipped.
//!
//! Layers are written by administrators but hosts can be many and layers old, so the
//! copy trusts neither side: every step, of the walk and of the writing, works on
//! directory file descriptors with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`. A symlink is copied as a symlink and never
//! followed, in the layer or in the destination, so a symlink `etc/evil -> /tmp` from
//! one layer followed by a file `etc/evil/x` from the next replaces the symlink with a
//! directory instead of writing to `/tmp/x`. Later layers replace entries of earlier
//! ones, also a file by a directory and the other way round.
//!
//! A failure to write (full tmpfs, I/O error) ends the copy with an [`ApplyError`]
//! naming the layer and the file; an entry that cannot be copied on purpose (device,
//! FIFO, socket, unreadable source) is a [`CopyWarning`] and the copy goes on.

use std::collections::BTreeSet;
use std::ffi::{CStr, OsStr};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, mkdirat, openat, statat, symlinkat, unlinkat,
};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use super::image::open_in_image;
use super::mounts::Destination;
use super::prefetch::ReadAhead;
use super::select::{Layer, LayerKind, LayerSelection};
use super::walk::{Entry, Root, Skipped, Visitor, entry_names, walk_layer_ahead};
use crate::os::Os;

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
    /// Every file and symlink the copy placed, as the image names it (`/etc/fstab`, not
    /// the local dir's `/etc/local/fstab`), sorted. Not in boot.json (it can be long):
    /// the local stage writes it to [`PLACED_FILES`] for `diskless relayer`.
    #[serde(skip)]
    pub placed: BTreeSet<PathBuf>,
}

/// Under the run dir: the files the layers placed, one image path per line.
pub const PLACED_FILES: &str = "layer-files";

/// Write the list of the files the layers placed into `run_dir`.
pub fn write_placed(run_dir: &Path, placed: &BTreeSet<PathBuf>) -> io::Result<()> {
    let mut text = Vec::new();
    for path in placed {
        text.extend_from_slice(path.as_os_str().as_bytes());
        text.push(b'\n');
    }
    std::fs::create_dir_all(run_dir)?;
    crate::files::write_atomic(&run_dir.join(PLACED_FILES), &text)
}

/// The files the layers placed, as [`write_placed`] wrote them; a run dir without the
/// list (a boot by an older diskless) reads as `None`.
pub fn read_placed(run_dir: &Path) -> io::Result<Option<BTreeSet<PathBuf>>> {
    match std::fs::read(run_dir.join(PLACED_FILES)) {
        Ok(bytes) => Ok(Some(
            bytes
                .split(|b| *b == b'\n')
                .filter(|line| line.starts_with(b"/"))
                .map(|line| PathBuf::from(OsStr::from_bytes(line)))
                .collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
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

impl CopyWarning {
    /// The warning for `image_path` of `layer`, which the walk skipped for `why`.
    pub fn new(layer: &Layer, image_path: &Path, why: Skipped) -> CopyWarning {
        let (layer_name, path) =
            (layer.to_string(), layer.path.join(image_path.strip_prefix("/").unwrap_or(image_path)));
        match why {
            Skipped::OutsideDirs => CopyWarning::OutsideDirs { layer: layer_name, path },
            Skipped::NotADirectory => CopyWarning::NotADirectory { layer: layer_name, path },
            Skipped::SpecialFile { file_type } => {
                CopyWarning::SpecialFile { layer: layer_name, path, file_type: file_type.into() }
            }
            Skipped::Unreadable { error } => {
                CopyWarning::Unreadable { layer: layer_name, path, error: error.to_string() }
            }
        }
    }
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
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A destination directory (a mounted local dir or upper) cannot be opened.
    #[error("cannot open {} (the local part of {}): {error}", .path.display(), .dir.display())]
    OpenDestination {
        dir: PathBuf,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    /// The layer itself cannot be opened.
    #[error("cannot open layer {layer}: {error}")]
    OpenLayer {
        layer: String,
        #[source]
        error: io::Error,
    },
    /// The local dir is full: tmpfs size or quota reached. `layer_bytes` is what the
    /// layer's files hold in all, `room` the size of the full file system.
    #[error(
        "layer {layer} holds {}: no space left for {} ({error}) in a local dir of {}; raise tmpfs_size \
         (or give the machine a scratch disk) or make the layer smaller",
        crate::scratch::show_size(*.layer_bytes),
        .path.display(),
        .room.map_or_else(|| "unknown size".to_string(), crate::scratch::show_size)
    )]
    NoSpace {
        layer: String,
        path: PathBuf,
        layer_bytes: u64,
        room: Option<u64>,
        #[source]
        error: io::Error,
    },
    /// Creating or writing an entry failed.
    #[error("layer {layer}: cannot write {}: {error}", .path.display())]
    Write {
        layer: String,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    /// Removing an entry of an earlier layer that this layer replaces failed.
    #[error("layer {layer}: cannot replace {}: {error}", .path.display())]
    Remove {
        layer: String,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    /// Setting owner, mode or times failed.
    #[error("layer {layer}: cannot set owner, mode or times of {}: {error}", .path.display())]
    SetAttributes {
        layer: String,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
}

/// Bytes read and written at a time when copying a file.
const COPY_BUFFER: usize = 64 * 1024;

/// Copies the layers of `selection`, in order, from the image at `image_root` into
/// `destinations` (from the mount plan, already mounted).
pub fn apply(
    selection: &LayerSelection,
    image_root: &Path,
    destinations: &[Destination],
    ahead: Option<ReadAhead>,
    os: &dyn Os,
) -> Result<ApplyReport, ApplyError> {
    let mut ahead = ahead.map(|a| a.layers).unwrap_or_default().into_iter();
    let mut roots = Vec::with_capacity(destinations.len());
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
        roots.push(Root { dir: d.dir.clone(), target: Target { fd, path: d.path.clone() } });
    }
    let mut report = ApplyReport::default();
    for layer in &selection.layers {
        let name = layer.to_string();
        let root = open_in_image(image_root, &layer.path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|error| ApplyError::OpenLayer { layer: name.clone(), error })?;
        let mut copy = LayerCopy {
            layer,
            name,
            os,
            placed: Vec::new(),
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
        // The read-ahead's layers come in the selection's order.
        let mut layer_ahead = ahead.next();
        walk_layer_ahead(&root, layer_ahead.as_mut(), &roots, &mut copy)
            .map_err(|e| with_sizes(e, &root, destinations))?;
        report.placed.extend(copy.placed);
        report.layers.push(copy.report);
    }
    Ok(report)
}

/// A full local dir is reported with the layer's size and the file system's, so the
/// administrator sees by how much it does not fit.
fn with_sizes(error: ApplyError, layer_root: &OwnedFd, destinations: &[Destination]) -> ApplyError {
    let ApplyError::NoSpace { layer, path, error, .. } = error else { return error };
    let room = destinations
        .iter()
        .filter(|d| path.starts_with(&d.path))
        .max_by_key(|d| d.path.as_os_str().len())
        .and_then(|d| rustix::fs::statvfs(&d.path).ok())
        .map(|fs| fs.f_blocks.saturating_mul(fs.f_frsize));
    ApplyError::NoSpace { layer, path, layer_bytes: file_bytes(layer_root), room, error }
}

/// The bytes of the regular files under `dir`, without following symlinks.
fn file_bytes(dir: &OwnedFd) -> u64 {
    let Ok(names) = entry_names(dir) else { return 0 };
    let mut total = 0u64;
    for name in names {
        let Ok(st) = statat(dir, &*name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => total = total.saturating_add(st.st_size as u64),
            FileType::Directory => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(sub) = openat(dir, &*name, flags, Mode::empty()) {
                    total = total.saturating_add(file_bytes(&sub));
                }
            }
            _ => {}
        }
    }
    total
}

/// The copy of one layer.
struct LayerCopy<'a> {
    layer: &'a Layer,
    /// `host (/diskless/hosts/lab3-12)`, for messages.
    name: String,
    os: &'a dyn Os,
    /// The files and symlinks written, as the image names them.
    placed: Vec<PathBuf>,
    report: LayerReport,
    warnings: &'a mut Vec<CopyWarning>,
}

/// An open destination directory.
struct Target {
    fd: OwnedFd,
    /// Its path, for messages.
    path: PathBuf,
}

fn is_full(e: Errno) -> bool {
    e == Errno::NOSPC || e == Errno::DQUOT
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

impl Visitor for LayerCopy<'_> {
    type Target = Target;
    type Error = ApplyError;

    fn enter_dir(&mut self, parent: &Target, entry: &Entry<'_>) -> Result<Target, ApplyError> {
        let path = parent.path.join(entry.name);
        let fd = self.make_dir(&parent.fd, entry.name, &path)?;
        Ok(Target { fd, path })
    }

    fn leave_dir(&mut self, parent: &Target, entry: &Entry<'_>, dir: Target) -> Result<(), ApplyError> {
        // Times last: writing the entries changed the directory's mtime.
        self.set_attributes(&parent.fd, entry.name, &dir.path, entry.stat, true)?;
        self.report.directories += 1;
        Ok(())
    }

    fn file(&mut self, parent: &Target, entry: &Entry<'_>, source: OwnedFd) -> Result<(), ApplyError> {
        let (name, dest_path) = (entry.name, parent.path.join(entry.name));
        self.clear(&parent.fd, name, &dest_path)?;
        let out = openat(
            &parent.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.write_error(dest_path.clone(), e))?;
        match copy_data(File::from(source), File::from(out)) {
            Ok(()) => {}
            Err(CopyFailure::Read(error)) => {
                // Leave no half file behind to be taken for the layer's version.
                self.clear(&parent.fd, name, &dest_path)?;
                self.skipped(entry.image_path, Skipped::Unreadable { error });
                return Ok(());
            }
            Err(CopyFailure::Write(e)) => return Err(self.io_write_error(dest_path, e)),
        }
        self.set_attributes(&parent.fd, name, &dest_path, entry.stat, true)?;
        self.report.files += 1;
        self.placed.push(entry.image_path.to_path_buf());
        Ok(())
    }

    fn symlink(&mut self, parent: &Target, entry: &Entry<'_>, link: &CStr) -> Result<(), ApplyError> {
        let (name, dest_path) = (entry.name, parent.path.join(entry.name));
        self.clear(&parent.fd, name, &dest_path)?;
        symlinkat(link, &parent.fd, name).map_err(|e| self.write_error(dest_path.clone(), e))?;
        self.set_attributes(&parent.fd, name, &dest_path, entry.stat, false)?;
        self.report.symlinks += 1;
        self.placed.push(entry.image_path.to_path_buf());
        Ok(())
    }

    fn skipped(&mut self, image_path: &Path, why: Skipped) {
        self.report.skipped += 1;
        self.warnings.push(CopyWarning::new(self.layer, image_path, why));
    }
}

impl LayerCopy<'_> {
    fn write_error(&self, path: PathBuf, e: Errno) -> ApplyError {
        let (layer, error) = (self.name.clone(), io::Error::from(e));
        if is_full(e) {
            // The sizes are filled in by `apply`, which has the layer and the destinations.
            ApplyError::NoSpace { layer, path, layer_bytes: 0, room: None, error }
        } else {
            ApplyError::Write { layer, path, error }
        }
    }

    fn io_write_error(&self, path: PathBuf, e: io::Error) -> ApplyError {
        match e.raw_os_error().map(Errno::from_raw_os_error) {
            Some(errno) => self.write_error(path, errno),
            None => ApplyError::Write { layer: self.name.clone(), path, error: e },
        }
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
            .and_then(|()| if with_mode { self.os.set_mode(dir.as_fd(), name, stat.st_mode & 0o7777) } else { Ok(()) })
            .and_then(|()| self.os.set_times(dir.as_fd(), name, &times));
        result.map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The copy takes what the read-ahead saw (names, metadata, the open files) instead
    /// of asking the server again: an entry added or replaced after it is not seen.
    #[test]
    fn the_copy_copies_what_the_read_ahead_saw() {
        let img = tempfile::tempdir().unwrap();
        let etc = img.path().join("diskless/base/etc");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("motd"), "seen by the read-ahead\n").unwrap();
        let selection = LayerSelection {
            layers: vec![Layer { kind: LayerKind::Base, path: "/diskless/base".into() }],
            skipped: Vec::new(),
        };
        let ahead = super::super::prefetch::prefetch(img.path(), &selection.layers);
        // Replaced by a new file (a new inode) and joined by another, after the read-ahead.
        fs::write(etc.join("motd.new"), "written later\n").unwrap();
        fs::rename(etc.join("motd.new"), etc.join("motd")).unwrap();
        fs::write(etc.join("later"), "later\n").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let destinations = [Destination { dir: "/etc".into(), path: dest.path().to_path_buf() }];
        let os = crate::os::fake::FakeOs::default();
        let report = apply(&selection, img.path(), &destinations, Some(ahead), &os).unwrap();
        assert_eq!(fs::read_to_string(dest.path().join("motd")).unwrap(), "seen by the read-ahead\n");
        assert!(!dest.path().join("later").exists(), "{report:?}");
        // Without a read-ahead the copy sees the layer as it is now.
        let fresh = tempfile::tempdir().unwrap();
        let destinations = [Destination { dir: "/etc".into(), path: fresh.path().to_path_buf() }];
        apply(&selection, img.path(), &destinations, None, &os).unwrap();
        assert_eq!(fs::read_to_string(fresh.path().join("motd")).unwrap(), "written later\n");
        assert!(fresh.path().join("later").exists());
    }

    /// A full tmpfs said only "no space left for /etc/local/big": nothing told the
    /// administrator how big the layer was or how small the local dir.
    #[test]
    fn a_full_local_dir_names_the_layers_size_and_the_room_there_was() {
        let layer = tempfile::tempdir().unwrap();
        fs::create_dir_all(layer.path().join("etc/sub")).unwrap();
        fs::write(layer.path().join("etc/big"), vec![0u8; 3 << 20]).unwrap();
        fs::write(layer.path().join("etc/sub/small"), vec![0u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink("/somewhere/huge", layer.path().join("etc/link")).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let destinations = [Destination { dir: "/etc".into(), path: dest.path().to_path_buf() }];
        let root = openat(rustix::fs::CWD, layer.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let full = ApplyError::NoSpace {
            layer: "host (/diskless/hosts/lab3-12)".into(),
            path: dest.path().join("big"),
            layer_bytes: 0,
            room: None,
            error: io::Error::from_raw_os_error(28),
        };
        let text = with_sizes(full, &root, &destinations).to_string();
        assert!(text.starts_with("layer host (/diskless/hosts/lab3-12) holds 4 MiB: no space left for "), "{text}");
        assert!(text.contains("in a local dir of ") && !text.contains("unknown size"), "{text}");
        assert!(
            text.ends_with("raise tmpfs_size (or give the machine a scratch disk) or make the layer smaller"),
            "{text}"
        );
        let other =
            ApplyError::Write { layer: "base".into(), path: "/x".into(), error: io::Error::from_raw_os_error(5) };
        assert!(matches!(with_sizes(other, &root, &destinations), ApplyError::Write { .. }), "other errors unchanged");
    }
}
