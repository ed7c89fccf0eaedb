//! What one archive member is, independent of how it is encoded.

use crate::newc;

/// The kind of a member and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File(Vec<u8>),
    Symlink(String),
    CharDevice { major: u32, minor: u32 },
    BlockDevice { major: u32, minor: u32 },
    Fifo,
    Socket,
}

impl EntryKind {
    /// The `S_IFMT` bits of this kind.
    pub fn type_bits(&self) -> u32 {
        match self {
            EntryKind::Directory => newc::S_IFDIR,
            EntryKind::File(_) => newc::S_IFREG,
            EntryKind::Symlink(_) => newc::S_IFLNK,
            EntryKind::CharDevice { .. } => newc::S_IFCHR,
            EntryKind::BlockDevice { .. } => newc::S_IFBLK,
            EntryKind::Fifo => newc::S_IFIFO,
            EntryKind::Socket => newc::S_IFSOCK,
        }
    }

    /// The body stored after the name: file data or symlink target.
    pub fn body(&self) -> &[u8] {
        match self {
            EntryKind::File(data) => data,
            EntryKind::Symlink(target) => target.as_bytes(),
            _ => &[],
        }
    }

    /// `(major, minor)` of a device node, `(0, 0)` otherwise.
    pub fn rdev(&self) -> (u32, u32) {
        match self {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => (*major, *minor),
            _ => (0, 0),
        }
    }
}

/// One member of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path as stored, without a leading `/` (archives made by other tools may differ).
    pub path: String,
    /// Permission bits (`mode & 0o7777`); the type is in `kind`.
    pub mode: u32,
    pub kind: EntryKind,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
}

impl Entry {
    /// Full `st_mode`: type bits and permission bits.
    pub fn st_mode(&self) -> u32 {
        self.kind.type_bits() | self.mode
    }

    /// Size as `ls -l` shows it: data length for files, target length for symlinks.
    pub fn size(&self) -> usize {
        self.kind.body().len()
    }

    /// `ls -l` style mode string, e.g. `drwxr-xr-x`, `crw-------`, `-rwsr-xr-x`.
    pub fn mode_string(&self) -> String {
        let type_char = match self.kind {
            EntryKind::Directory => 'd',
            EntryKind::File(_) => '-',
            EntryKind::Symlink(_) => 'l',
            EntryKind::CharDevice { .. } => 'c',
            EntryKind::BlockDevice { .. } => 'b',
            EntryKind::Fifo => 'p',
            EntryKind::Socket => 's',
        };
        let mut out = String::with_capacity(10);
        out.push(type_char);
        // (read bit, write bit, exec bit, special bit, special char with exec, without)
        let triples = [
            (0o400, 0o200, 0o100, 0o4000, 's', 'S'),
            (0o040, 0o020, 0o010, 0o2000, 's', 'S'),
            (0o004, 0o002, 0o001, 0o1000, 't', 'T'),
        ];
        for (read, write, exec, special, with_exec, without_exec) in triples {
            out.push(if self.mode & read != 0 { 'r' } else { '-' });
            out.push(if self.mode & write != 0 { 'w' } else { '-' });
            out.push(match (self.mode & exec != 0, self.mode & special != 0) {
                (true, true) => with_exec,
                (false, true) => without_exec,
                (true, false) => 'x',
                (false, false) => '-',
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mode: u32, kind: EntryKind) -> Entry {
        Entry { path: "x".into(), mode, kind, uid: 0, gid: 0, mtime: 0 }
    }

    #[test]
    fn mode_string_matches_ls_for_common_kinds() {
        assert_eq!(entry(0o755, EntryKind::Directory).mode_string(), "drwxr-xr-x");
        assert_eq!(entry(0o600, EntryKind::CharDevice { major: 5, minor: 1 }).mode_string(), "crw-------");
        assert_eq!(entry(0o777, EntryKind::Symlink("a".into())).mode_string(), "lrwxrwxrwx");
        assert_eq!(entry(0o4755, EntryKind::File(vec![])).mode_string(), "-rwsr-xr-x");
        assert_eq!(entry(0o1777, EntryKind::Directory).mode_string(), "drwxrwxrwt");
        assert_eq!(entry(0o2644, EntryKind::File(vec![])).mode_string(), "-rw-r-Sr--");
    }

    #[test]
    fn st_mode_combines_type_and_permissions() {
        assert_eq!(entry(0o644, EntryKind::File(vec![1])).st_mode(), 0o100644);
        assert_eq!(entry(0o660, EntryKind::BlockDevice { major: 8, minor: 0 }).st_mode(), 0o060660);
    }
}
