//! The walk over one layer: which of its entries are inside the configured dirs, where
//! each goes, and what is skipped and why. The copy ([`super::apply`]) and
//! `diskless plan` both walk with it, so the plan shows what the copy does.
//!
//! Inside a layer, paths mirror the root of the image: `<layer>/etc/fstab` belongs to
//! the configured dir `/etc`. Above the configured dirs only the directories leading
//! to one are entered; everything else there is outside the dirs. Every step works on
//! directory file descriptors with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`: a symlink of
//! the layer is handed over as a symlink (its target read with `readlinkat`) and never
//! followed. Entries come in name order, so two boots of one image do the same.

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, openat, readlinkat, statat};

use super::prefetch::LayerAhead;

/// A configured dir and where its entries go.
pub struct Root<T> {
    /// The configured dir, as in the image (`/etc`).
    pub dir: PathBuf,
    pub target: T,
}

/// An entry of the layer inside a configured dir.
pub struct Entry<'a> {
    /// Its name in its directory.
    pub name: &'a OsStr,
    /// Its path as mirrored in the image (`/etc/fstab`).
    pub image_path: &'a Path,
    /// Its own metadata, not a symlink's target's.
    pub stat: &'a Stat,
}

/// Why an entry of the layer is not placed.
#[derive(Debug)]
pub enum Skipped {
    /// Not inside any configured dir.
    OutsideDirs,
    /// A configured dir that the layer has as a non-directory (`<layer>/etc` a file or symlink).
    NotADirectory,
    /// Devices, FIFOs and sockets do not belong in configuration.
    SpecialFile { file_type: &'static str },
    /// The entry cannot be read from the image.
    Unreadable { error: io::Error },
}

/// What is done with the entries the walk finds inside the configured dirs. A
/// directory is entered (its entries go to the [`Visitor::Target`] returned by
/// [`Visitor::enter_dir`]) and left after its entries; a subdirectory that is itself
/// a configured dir goes to that dir's own root instead (dirs `/var` and `/var/lib`).
pub trait Visitor {
    /// Where the entries of a directory go.
    type Target;
    type Error;
    fn enter_dir(&mut self, parent: &Self::Target, entry: &Entry<'_>) -> Result<Self::Target, Self::Error>;
    fn leave_dir(&mut self, parent: &Self::Target, entry: &Entry<'_>, dir: Self::Target) -> Result<(), Self::Error>;
    /// A regular file, `source` open for reading.
    fn file(&mut self, parent: &Self::Target, entry: &Entry<'_>, source: OwnedFd) -> Result<(), Self::Error>;
    fn symlink(&mut self, parent: &Self::Target, entry: &Entry<'_>, link: &CStr) -> Result<(), Self::Error>;
    /// `image_path` is not placed; the walk goes on.
    fn skipped(&mut self, image_path: &Path, why: Skipped);
}

/// Walks the layer open at `layer` (its root mirrors `/`) and hands the entries inside
/// the configured dirs of `roots` to `visitor`. Stops at the visitor's first error.
pub fn walk_layer<V: Visitor>(layer: &OwnedFd, roots: &[Root<V::Target>], visitor: &mut V) -> Result<(), V::Error> {
    walk_layer_ahead(layer, None, roots, visitor)
}

/// [`walk_layer`] taking what a read-ahead of the layer learnt (names, metadata, symlink
/// targets, open files and directories) before asking the file system.
pub fn walk_layer_ahead<V: Visitor>(
    layer: &OwnedFd,
    ahead: Option<&mut LayerAhead>,
    roots: &[Root<V::Target>],
    visitor: &mut V,
) -> Result<(), V::Error> {
    let mut none = LayerAhead::default();
    Walk { roots, visitor, ahead: ahead.unwrap_or(&mut none) }.mirror(layer, Path::new("/"))
}

/// The names in `dir` except `.` and `..`, sorted.
pub(crate) fn entry_names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

fn special_file_type(file_type: FileType) -> &'static str {
    match file_type {
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        _ => "file of unknown type",
    }
}

struct Walk<'w, V: Visitor> {
    roots: &'w [Root<V::Target>],
    visitor: &'w mut V,
    ahead: &'w mut LayerAhead,
}

impl<'w, V: Visitor> Walk<'w, V> {
    fn unreadable(&mut self, image_path: &Path, error: impl Into<io::Error>) {
        self.visitor.skipped(image_path, Skipped::Unreadable { error: error.into() });
    }

    /// The entries of the layer directory `dir` (mirroring `image_path`): name, image
    /// path and the entry's own metadata. What cannot be read is skipped and left out.
    fn entries(&mut self, dir: &OwnedFd, image_path: &Path) -> Vec<(OsString, PathBuf, Stat)> {
        let names = match self.ahead.names.remove(image_path).map_or_else(|| entry_names(dir), Ok) {
            Ok(names) => names,
            Err(e) => {
                self.unreadable(image_path, e);
                return Vec::new();
            }
        };
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            let child = image_path.join(&name);
            let stat =
                self.ahead.stats.remove(&child).map_or_else(|| statat(dir, &*name, AtFlags::SYMLINK_NOFOLLOW), Ok);
            match stat {
                Ok(stat) => entries.push((name, child, stat)),
                Err(e) => self.unreadable(&child, e),
            }
        }
        entries
    }

    fn open_dir(&mut self, dir: &OwnedFd, name: &OsStr, image_path: &Path) -> Option<OwnedFd> {
        if let Some(open) = self.ahead.open.remove(image_path) {
            return Some(open);
        }
        match openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        {
            Ok(fd) => Some(fd),
            Err(e) => {
                self.unreadable(image_path, e);
                None
            }
        }
    }

    fn root(&self, image_path: &Path) -> Option<&'w Root<V::Target>> {
        let roots = self.roots;
        roots.iter().find(|r| r.dir == image_path)
    }

    /// Above the configured dirs: enter only directories that are or lead to one.
    fn mirror(&mut self, dir: &OwnedFd, image_path: &Path) -> Result<(), V::Error> {
        for (name, child, stat) in self.entries(dir, image_path) {
            let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
            if let Some(root) = self.root(&child) {
                if !is_dir {
                    self.visitor.skipped(&child, Skipped::NotADirectory);
                } else if let Some(sub) = self.open_dir(dir, &name, &child) {
                    self.inside(&sub, &child, &root.target)?;
                }
            } else if is_dir && self.roots.iter().any(|r| r.dir.starts_with(&child)) {
                if let Some(sub) = self.open_dir(dir, &name, &child) {
                    self.mirror(&sub, &child)?;
                }
            } else {
                self.visitor.skipped(&child, Skipped::OutsideDirs);
            }
        }
        Ok(())
    }

    /// Inside a configured dir: every entry of `dir` (mirroring `image_path`) goes to `target`.
    fn inside(&mut self, dir: &OwnedFd, image_path: &Path, target: &V::Target) -> Result<(), V::Error> {
        for (name, child, stat) in self.entries(dir, image_path) {
            let entry = Entry { name: &name, image_path: &child, stat: &stat };
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    let Some(sub) = self.open_dir(dir, &name, &child) else { continue };
                    if let Some(root) = self.root(&child) {
                        self.inside(&sub, &child, &root.target)?;
                        continue;
                    }
                    let made = self.visitor.enter_dir(target, &entry)?;
                    self.inside(&sub, &child, &made)?;
                    self.visitor.leave_dir(target, &entry, made)?;
                }
                FileType::RegularFile => {
                    // O_NONBLOCK and O_NOCTTY: harmless on a file, and a file swapped
                    // for a FIFO or a tty after the stat cannot block or take the console.
                    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
                    let open =
                        self.ahead.open.remove(&child).map_or_else(|| openat(dir, &*name, flags, Mode::empty()), Ok);
                    match open {
                        Ok(source) => self.visitor.file(target, &entry, source)?,
                        Err(e) => self.unreadable(&child, e),
                    }
                }
                FileType::Symlink => {
                    match self.ahead.links.remove(&child).map_or_else(|| readlinkat(dir, &*name, Vec::new()), Ok) {
                        Ok(link) => self.visitor.symlink(target, &entry, &link)?,
                        Err(e) => self.unreadable(&child, e),
                    }
                }
                other => self.visitor.skipped(&child, Skipped::SpecialFile { file_type: special_file_type(other) }),
            }
        }
        Ok(())
    }
}
