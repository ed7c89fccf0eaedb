//! Building a reproducible newc archive in memory.
//!
//! Reproducibility comes from the format having nothing left to chance: entries are
//! sorted by path (so a parent always precedes its children), owners are 0:0,
//! inode numbers count up from 1 in that order, and every mtime is the same fixed
//! time (`SOURCE_DATE_EPOCH` when set, else 0).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;

use crate::entry::{Entry, EntryKind};
use crate::newc::{self, Header};

/// Mode of directories created implicitly as parents of added paths.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// The kernel refuses symlink targets longer than PATH_MAX.
const PATH_MAX: usize = 4096;

#[derive(Debug)]
pub enum WriteError {
    /// The path is empty, has `.`/`..`/empty components, or a NUL byte.
    InvalidPath { path: String, reason: &'static str },
    /// Mode bits outside `0o7777`.
    InvalidMode { path: String, mode: u32 },
    /// The path was already added as something other than a directory.
    Duplicate { path: String },
    /// A parent of the path was added as something other than a directory.
    ParentNotDirectory { path: String, parent: String },
    /// A symlink target is empty, longer than PATH_MAX or contains a NUL byte.
    InvalidSymlinkTarget { path: String, target: String },
    /// A file or symlink target is larger than a newc header can describe.
    TooLarge { path: String, size: usize },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds that fits the format.
    SourceDateEpoch { value: String },
    /// Writing the archive bytes failed.
    Output { source: std::io::Error },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::InvalidPath { path, reason } => {
                write!(
                    f,
                    "cannot add {path:?} to the archive: {reason}; use a plain relative path like \"lib/modules\""
                )
            }
            WriteError::InvalidMode { path, mode } => {
                write!(f, "cannot add {path:?} to the archive: mode {mode:o} has bits outside 7777")
            }
            WriteError::Duplicate { path } => write!(f, "cannot add {path:?} to the archive: it was already added"),
            WriteError::ParentNotDirectory { path, parent } => {
                write!(f, "cannot add {path:?} to the archive: its parent {parent:?} was added as a non-directory")
            }
            WriteError::InvalidSymlinkTarget { path, target } => write!(
                f,
                "cannot add symlink {path:?} to the archive: target {target:?} is empty, longer than 4096 bytes or contains NUL"
            ),
            WriteError::TooLarge { path, size } => {
                write!(f, "cannot add {path:?} to the archive: {size} bytes exceed the newc limit of 4 GiB")
            }
            WriteError::SourceDateEpoch { value } => write!(
                f,
                "SOURCE_DATE_EPOCH={value:?} is not a number of seconds between 0 and 4294967295; unset it or fix it"
            ),
            WriteError::Output { source } => write!(f, "cannot write the archive: {source}"),
        }
    }
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WriteError::Output { source } => Some(source),
            _ => None,
        }
    }
}

/// The fixed mtime for every entry from the value of `SOURCE_DATE_EPOCH` (None: unset).
pub fn mtime_from_source_date_epoch(value: Option<&str>) -> Result<u32, WriteError> {
    match value {
        None => Ok(0),
        Some(text) => text.trim().parse::<u32>().map_err(|_| WriteError::SourceDateEpoch { value: text.to_string() }),
    }
}

struct Node {
    mode: u32,
    kind: EntryKind,
    /// False for directories that exist only because a child was added.
    explicit: bool,
}

/// A newc archive being assembled. Paths are relative (`"init"`, `"lib/modules"`);
/// a leading `/` is accepted and dropped.
pub struct Archive {
    nodes: BTreeMap<String, Node>,
    mtime: u32,
}

impl Archive {
    /// An empty archive whose mtime comes from `SOURCE_DATE_EPOCH` (0 when unset).
    pub fn new() -> Result<Archive, WriteError> {
        let value = std::env::var("SOURCE_DATE_EPOCH").ok();
        Ok(Archive::with_mtime(mtime_from_source_date_epoch(value.as_deref())?))
    }

    /// An empty archive whose entries all get `mtime`.
    pub fn with_mtime(mtime: u32) -> Archive {
        Archive { nodes: BTreeMap::new(), mtime }
    }

    pub fn mtime(&self) -> u32 {
        self.mtime
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, path: &str) -> bool {
        normalize(path).is_ok_and(|path| self.nodes.contains_key(&path))
    }

    pub fn add_dir(&mut self, path: &str, mode: u32) -> Result<(), WriteError> {
        self.insert(path, mode, EntryKind::Directory)
    }

    pub fn add_file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> Result<(), WriteError> {
        self.insert(path, mode, EntryKind::File(data.into()))
    }

    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), WriteError> {
        if target.is_empty() || target.len() > PATH_MAX || target.contains('\0') {
            return Err(WriteError::InvalidSymlinkTarget { path: path.to_string(), target: target.to_string() });
        }
        self.insert(path, 0o777, EntryKind::Symlink(target.to_string()))
    }

    pub fn add_char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<(), WriteError> {
        self.insert(path, mode, EntryKind::CharDevice { major, minor })
    }

    pub fn add_block_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<(), WriteError> {
        self.insert(path, mode, EntryKind::BlockDevice { major, minor })
    }

    fn insert(&mut self, path: &str, mode: u32, kind: EntryKind) -> Result<(), WriteError> {
        let path = normalize(path)?;
        if mode & !0o7777 != 0 {
            return Err(WriteError::InvalidMode { path, mode });
        }
        if u32::try_from(kind.body().len()).is_err() {
            return Err(WriteError::TooLarge { size: kind.body().len(), path });
        }
        let mut parent_end = 0;
        while let Some(slash) = path[parent_end..].find('/') {
            parent_end += slash;
            let parent = &path[..parent_end];
            match self.nodes.get(parent) {
                Some(Node { kind: EntryKind::Directory, .. }) => {}
                Some(_) => return Err(WriteError::ParentNotDirectory { parent: parent.to_string(), path }),
                None => {
                    let node = Node { mode: IMPLICIT_DIR_MODE, kind: EntryKind::Directory, explicit: false };
                    self.nodes.insert(parent.to_string(), node);
                }
            }
            parent_end += 1;
        }
        match self.nodes.get_mut(&path) {
            // A directory created as a parent takes the mode it is later added with.
            Some(existing)
                if matches!(kind, EntryKind::Directory)
                    && matches!(existing.kind, EntryKind::Directory)
                    && !existing.explicit =>
            {
                existing.mode = mode;
                existing.explicit = true;
                Ok(())
            }
            Some(_) => Err(WriteError::Duplicate { path }),
            None => {
                self.nodes.insert(path, Node { mode, kind, explicit: true });
                Ok(())
            }
        }
    }

    /// The entries as they will be written, in archive order.
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        self.nodes.iter().map(|(path, node)| Entry {
            path: path.clone(),
            mode: node.mode,
            kind: node.kind.clone(),
            uid: 0,
            gid: 0,
            mtime: self.mtime,
        })
    }

    /// The uncompressed archive, ending with the trailer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body_total: usize = self.nodes.values().map(|node| node.kind.body().len() + 3).sum();
        let mut out = Vec::with_capacity(body_total + (self.nodes.len() + 1) * (newc::HEADER_LEN + 64));
        for (index, (path, node)) in self.nodes.iter().enumerate() {
            let body = node.kind.body();
            let (rdevmajor, rdevminor) = node.kind.rdev();
            let header = Header {
                // Inode 0 is avoided: some readers treat it as "no inode".
                ino: index as u32 + 1,
                mode: node.kind.type_bits() | node.mode,
                nlink: if matches!(node.kind, EntryKind::Directory) { 2 } else { 1 },
                mtime: self.mtime,
                // insert() rejected bodies that do not fit in u32.
                filesize: body.len() as u32,
                rdevmajor,
                rdevminor,
                namesize: path.len() as u32 + 1,
                ..Header::default()
            };
            header.write_with_name(path, &mut out);
            out.extend_from_slice(body);
            out.resize(out.len() + newc::pad4(out.len()), 0);
        }
        let trailer = Header { nlink: 1, namesize: newc::TRAILER.len() as u32 + 1, ..Header::default() };
        trailer.write_with_name(newc::TRAILER, &mut out);
        out
    }

    /// Writes the uncompressed archive; returns the number of bytes written.
    pub fn write(&self, out: &mut impl Write) -> Result<u64, WriteError> {
        let bytes = self.to_bytes();
        out.write_all(&bytes).map_err(|source| WriteError::Output { source })?;
        Ok(bytes.len() as u64)
    }
}

/// Strips one leading `/` and rejects paths the kernel would mis-create.
fn normalize(path: &str) -> Result<String, WriteError> {
    let invalid = |reason| Err(WriteError::InvalidPath { path: path.to_string(), reason });
    let relative = path.strip_prefix('/').unwrap_or(path);
    if relative.is_empty() {
        return invalid("the path is empty or the root itself");
    }
    if relative.contains('\0') {
        return invalid("the path contains a NUL byte");
    }
    if relative == newc::TRAILER {
        return invalid("the name is reserved for the end-of-archive marker");
    }
    for component in relative.split('/') {
        match component {
            "" => return invalid("the path has an empty component (double or trailing slash)"),
            "." | ".." => return invalid("the path has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(relative.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_before_children_in_sorted_order() {
        let mut archive = Archive::with_mtime(0);
        archive.add_file("/lib/modules/v/kernel/a.ko", 0o644, b"a".to_vec()).unwrap();
        archive.add_file("init", 0o755, b"elf".to_vec()).unwrap();
        archive.add_file("lib-x", 0o644, b"".to_vec()).unwrap();
        let paths: Vec<String> = archive.entries().map(|entry| entry.path).collect();
        assert_eq!(
            paths,
            [
                "init",
                "lib",
                "lib-x",
                "lib/modules",
                "lib/modules/v",
                "lib/modules/v/kernel",
                "lib/modules/v/kernel/a.ko"
            ]
        );
    }

    #[test]
    fn explicit_dir_mode_overrides_implicit_parent_mode() {
        let mut archive = Archive::with_mtime(0);
        archive.add_file("tmp/x", 0o644, Vec::new()).unwrap();
        archive.add_dir("tmp", 0o1777).unwrap();
        let tmp = archive.entries().find(|entry| entry.path == "tmp").unwrap();
        assert_eq!(tmp.mode, 0o1777);
    }

    #[test]
    fn adding_a_path_twice_is_an_error_naming_it() {
        let mut archive = Archive::with_mtime(0);
        archive.add_file("init", 0o755, Vec::new()).unwrap();
        let error = archive.add_symlink("init", "bin/init").unwrap_err();
        assert!(matches!(&error, WriteError::Duplicate { path } if path == "init"));
        assert!(error.to_string().contains("\"init\""));
        archive.add_dir("dev", 0o755).unwrap();
        assert!(matches!(archive.add_dir("dev", 0o755), Err(WriteError::Duplicate { .. })));
    }

    #[test]
    fn child_of_a_file_is_rejected() {
        let mut archive = Archive::with_mtime(0);
        archive.add_file("init", 0o755, Vec::new()).unwrap();
        let error = archive.add_file("init/x", 0o644, Vec::new()).unwrap_err();
        assert!(matches!(error, WriteError::ParentNotDirectory { ref parent, .. } if parent == "init"));
    }

    #[test]
    fn bad_paths_and_modes_are_rejected() {
        let mut archive = Archive::with_mtime(0);
        for path in ["", "/", "a//b", "a/", "./a", "a/../b", "TRAILER!!!", "a\0b"] {
            assert!(matches!(archive.add_dir(path, 0o755), Err(WriteError::InvalidPath { .. })), "{path:?}");
        }
        assert!(matches!(archive.add_dir("a", 0o40755), Err(WriteError::InvalidMode { .. })));
        assert!(archive.is_empty());
    }

    #[test]
    fn source_date_epoch_parsing() {
        assert_eq!(mtime_from_source_date_epoch(None).unwrap(), 0);
        assert_eq!(mtime_from_source_date_epoch(Some("1700000000")).unwrap(), 1_700_000_000);
        assert!(matches!(mtime_from_source_date_epoch(Some("yesterday")), Err(WriteError::SourceDateEpoch { .. })));
        assert!(matches!(mtime_from_source_date_epoch(Some("-1")), Err(WriteError::SourceDateEpoch { .. })));
    }

    #[test]
    fn every_entry_carries_the_archive_mtime() {
        let mut archive = Archive::with_mtime(1_234_567);
        archive.add_file("a/b", 0o644, b"x".to_vec()).unwrap();
        assert!(archive.entries().all(|entry| entry.mtime == 1_234_567));
        // The mtime field (7th, hex) of the first header.
        let bytes = archive.to_bytes();
        assert_eq!(&bytes[6 + 5 * 8..6 + 6 * 8], format!("{:08x}", 1_234_567).as_bytes());
    }
}
