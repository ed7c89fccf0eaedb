//! The `local.d` lists: for each configured dir (`dirs` of diskless.toml, `DIRS` of the
//! legacy diskless.conf) one file under `/etc/diskless/local.d/` that names the files of
//! that dir kept per machine, one path relative to the dir per line.
//!
//! ```text
//! # /etc/diskless/local.d/etc: files of /etc that differ per machine
//! fstab
//! hostname
//! ssh/ssh_host_ed25519_key
//! ```
//!
//! A list is named after its dir as systemd names a path: the leading `/` dropped,
//! every further `/` written `-`, and a `-`, `\` or any byte outside `[A-Za-z0-9:_.]`
//! written `\xNN`. So `/etc` has the list `etc`, `/var/lib` has `var-lib`, and
//! `/srv/lab-data` has `srv-lab\x2ddata`. Blank lines and lines starting with `#` are
//! ignored; a path must stay inside its dir (no `..`, not absolute).

use std::io;
use std::path::{Component, Path, PathBuf};

use super::tree::{self, Loc};

/// Where the lists are, relative to the image root.
pub const LOCAL_D: &str = "etc/diskless/local.d";

/// The largest list read: a list is a few hundred paths at most.
const MAX_LIST_BYTES: u64 = 1 << 20;

/// The files of one configured dir kept per machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// The configured dir, as in the image (`/etc`).
    pub dir: PathBuf,
    /// The list's file, relative to the image root (`etc/diskless/local.d/etc`).
    pub file: PathBuf,
    /// Paths relative to `dir`, in the list's order, without duplicates.
    pub entries: Vec<PathBuf>,
    /// Whether the list's file exists (an absent list is an empty one).
    pub exists: bool,
}

/// A list that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("reading the list {}: {source}: check its permissions in the image", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the list {}: {source}: check that the image is writable", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the list {} is larger than {MAX_LIST_BYTES} bytes: it should hold file names only", .path.display())]
    TooLarge { path: PathBuf },
    #[error("the list {} is not UTF-8 text: write one path per line", .path.display())]
    NotText { path: PathBuf },
    #[error("{} line {line}: {entry:?} {why}: write a path relative to {}", .path.display(), .dir.display())]
    BadEntry { path: PathBuf, line: usize, entry: String, dir: PathBuf, why: &'static str },
}

/// The name of the list of `dir` (`/var/lib` -> `var-lib`).
pub fn list_name(dir: &Path) -> String {
    let text = dir.to_string_lossy();
    let mut name = String::new();
    for (i, part) in text.trim_matches('/').split('/').filter(|p| !p.is_empty()).enumerate() {
        if i > 0 {
            name.push('-');
        }
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b':' | b'_' | b'.') {
                name.push(byte as char);
            } else {
                name.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    name
}

/// The list's file of `dir`, relative to the image root.
pub fn list_file(dir: &Path) -> PathBuf {
    Path::new(LOCAL_D).join(list_name(dir))
}

/// Why an entry cannot be used, if it cannot.
fn entry_problem(entry: &Path) -> Option<&'static str> {
    if entry.is_absolute() {
        return Some("is absolute");
    }
    let mut normal = 0;
    for component in entry.components() {
        match component {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir => return Some("leaves the dir (..)"),
            Component::RootDir | Component::Prefix(_) => return Some("is absolute"),
        }
    }
    (normal == 0).then_some("names the dir itself")
}

/// The entries of a list's text, normalised (`./a//b` -> `a/b`), duplicates dropped.
/// `path` and `dir` are for the messages.
pub fn parse(text: &str, path: &Path, dir: &Path) -> Result<Vec<PathBuf>, ListError> {
    let mut entries: Vec<PathBuf> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if let Some(why) = entry_problem(Path::new(entry)) {
            return Err(ListError::BadEntry {
                path: path.to_path_buf(),
                line: i + 1,
                entry: entry.to_string(),
                dir: dir.to_path_buf(),
                why,
            });
        }
        let normal: PathBuf = Path::new(entry).components().filter(|c| matches!(c, Component::Normal(_))).collect();
        if !entries.contains(&normal) {
            entries.push(normal);
        }
    }
    Ok(entries)
}

/// The text of a list: a header naming the dir, then one entry per line.
pub fn render(dir: &Path, entries: &[PathBuf]) -> String {
    let mut text = format!("# files of {} kept per machine (one path relative to it per line)\n", dir.display());
    for entry in entries {
        text.push_str(&entry.to_string_lossy());
        text.push('\n');
    }
    text
}

/// The list of each of `dirs` in the image at `image_root`, in the order of `dirs`.
pub fn read_lists(image_root: &Path, dirs: &[PathBuf]) -> Result<Vec<List>, ListError> {
    dirs.iter().map(|dir| read_list(image_root, dir)).collect()
}

/// Where the list of `dir` is, as a path of the image below `/etc`: a symlinked
/// `/etc/diskless` is not followed.
fn list_loc(dir: &Path) -> Loc {
    Loc::new("/etc", Path::new(LOCAL_D).strip_prefix("etc").unwrap_or(Path::new(LOCAL_D)).join(list_name(dir)))
}

fn read_list(image_root: &Path, dir: &Path) -> Result<List, ListError> {
    let file = list_file(dir);
    let path = image_root.join(&file);
    let text = match read_text(image_root, dir)? {
        None => return Ok(List { dir: dir.to_path_buf(), file, entries: Vec::new(), exists: false }),
        Some(text) => text,
    };
    let entries = parse(&text, &path, dir)?;
    Ok(List { dir: dir.to_path_buf(), file, entries, exists: true })
}

/// The text of the list of `dir`; `None` when there is none.
pub fn read_text(image_root: &Path, dir: &Path) -> Result<Option<String>, ListError> {
    let path = image_root.join(list_file(dir));
    let bytes = match tree::read_file(image_root, &list_loc(dir), MAX_LIST_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::FileTooLarge => return Err(ListError::TooLarge { path }),
        Err(source) => return Err(ListError::Read { path, source }),
    };
    bytes.map(|bytes| String::from_utf8(bytes).map_err(|_| ListError::NotText { path })).transpose()
}

/// Replaces the list of `dir` by `text` in one rename: a reader sees the old list or
/// the new one.
pub fn write_text(image_root: &Path, dir: &Path, text: &str) -> Result<(), ListError> {
    tree::write_file(image_root, &list_loc(dir), text)
        .map_err(|source| ListError::Write { path: image_root.join(list_file(dir)), source })
}

/// The entry of a line, normalised as [`parse`] does; `None` for comments and blanks.
fn line_entry(line: &str) -> Option<PathBuf> {
    let entry = line.trim();
    if entry.is_empty() || entry.starts_with('#') || entry_problem(Path::new(entry)).is_some() {
        return None;
    }
    Some(Path::new(entry).components().filter(|c| matches!(c, Component::Normal(_))).collect())
}

/// `text` (a list, or empty for a new one of `dir`) with `entry` appended; `None` when
/// it is there already. The administrator's comments and order stay.
pub fn with_entry(text: &str, dir: &Path, entry: &Path) -> Option<String> {
    if text.lines().any(|line| line_entry(line).as_deref() == Some(entry)) {
        return None;
    }
    let mut text = if text.is_empty() { render(dir, &[]) } else { text.to_string() };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&entry.to_string_lossy());
    text.push('\n');
    Some(text)
}

/// `text` without the lines naming `entry`; `None` when none does.
pub fn without_entry(text: &str, entry: &Path) -> Option<String> {
    let kept: Vec<&str> = text.lines().filter(|line| line_entry(line).as_deref() != Some(entry)).collect();
    if kept.len() == text.lines().count() {
        return None;
    }
    Some(kept.iter().map(|line| format!("{line}\n")).collect())
}

/// The text of a default list: each entry under a comment saying why it is per machine.
pub fn render_with_reasons(dir: &Path, entries: &[(PathBuf, &str)]) -> String {
    let mut text = render(dir, &[]);
    text.push_str("# written by `diskless setup` from its defaults for Debian/systemd images\n");
    for (entry, why) in entries {
        text.push_str(&format!("\n# {why}\n{}\n", entry.to_string_lossy()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn list_names_follow_systemd_path_escaping() {
        assert_eq!(list_name(Path::new("/etc")), "etc");
        assert_eq!(list_name(Path::new("/var/lib")), "var-lib");
        assert_eq!(list_name(Path::new("/var/lib/")), "var-lib");
        assert_eq!(list_name(Path::new("/srv/lab-data")), "srv-lab\\x2ddata");
        assert_eq!(list_name(Path::new("/opt/a b")), "opt-a\\x20b");
        assert_eq!(list_file(Path::new("/var/lib")), Path::new("etc/diskless/local.d/var-lib"));
    }

    #[test]
    fn entries_are_normalised_deduplicated_and_comments_skipped() {
        let text = "# per machine\n\nfstab\n./hostname\nssh//ssh_host_rsa_key\n  fstab  \n";
        let entries = parse(text, Path::new("l"), Path::new("/etc")).unwrap();
        assert_eq!(entries, [PathBuf::from("fstab"), "hostname".into(), "ssh/ssh_host_rsa_key".into()]);
        assert_eq!(parse(&render(Path::new("/etc"), &entries), Path::new("l"), Path::new("/etc")).unwrap(), entries);
    }

    #[test]
    fn an_entry_outside_its_dir_is_refused_with_the_line() {
        for (text, why) in [("../shadow", "leaves the dir"), ("/etc/fstab", "is absolute"), (".", "names the dir")] {
            let e = parse(&format!("fstab\n{text}\n"), Path::new("/img/etc/diskless/local.d/etc"), Path::new("/etc"))
                .unwrap_err();
            let message = e.to_string();
            assert!(message.starts_with("/img/etc/diskless/local.d/etc line 2: "), "{message}");
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn a_missing_list_is_empty_and_a_present_one_is_read() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join(LOCAL_D)).unwrap();
        fs::write(img.path().join(LOCAL_D).join("etc"), "fstab\n").unwrap();
        let lists = read_lists(img.path(), &[PathBuf::from("/etc"), PathBuf::from("/var/lib")]).unwrap();
        assert_eq!(lists[0].entries, [PathBuf::from("fstab")]);
        assert!(lists[0].exists);
        assert_eq!((lists[1].entries.len(), lists[1].exists), (0, false));
        assert_eq!(lists[1].file, Path::new("etc/diskless/local.d/var-lib"));
    }

    #[test]
    fn editing_a_list_keeps_the_comments_and_order() {
        let dir = Path::new("/etc");
        let text = "# ours\nfstab\n# keys\n./hostname\n";
        let added = with_entry(text, dir, Path::new("ssh/ssh_host_rsa_key")).unwrap();
        assert_eq!(added, "# ours\nfstab\n# keys\n./hostname\nssh/ssh_host_rsa_key\n");
        assert_eq!(with_entry(&added, dir, Path::new("hostname")), None);
        assert_eq!(
            without_entry(&added, Path::new("hostname")).unwrap(),
            "# ours\nfstab\n# keys\nssh/ssh_host_rsa_key\n"
        );
        assert_eq!(without_entry(&added, Path::new("motd")), None);
        let new = with_entry("", Path::new("/var/lib"), Path::new("dbus/machine-id")).unwrap();
        assert_eq!(parse(&new, Path::new("l"), Path::new("/var/lib")).unwrap(), [PathBuf::from("dbus/machine-id")]);
    }

    #[test]
    fn a_list_is_written_atomically_and_read_back() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir(img.path().join("etc")).unwrap();
        let text = render_with_reasons(Path::new("/var/lib"), &[("dbus/machine-id".into(), "D-Bus's id")]);
        write_text(img.path(), Path::new("/var/lib"), &text).unwrap();
        let lists = read_lists(img.path(), &[PathBuf::from("/var/lib")]).unwrap();
        assert_eq!(lists[0].entries, [PathBuf::from("dbus/machine-id")]);
        assert!(text.contains("# D-Bus's id\ndbus/machine-id\n"), "{text}");
        let names: Vec<_> = fs::read_dir(img.path().join(LOCAL_D)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["var-lib"], "no temporary file left");
    }

    #[test]
    fn a_list_behind_a_symlink_out_of_the_image_is_not_read() {
        let outer = tempfile::tempdir().unwrap();
        let img = outer.path().join("img");
        fs::create_dir_all(img.join("etc")).unwrap();
        fs::create_dir_all(outer.path().join("elsewhere/local.d")).unwrap();
        fs::write(outer.path().join("elsewhere/local.d/etc"), "fstab\n").unwrap();
        std::os::unix::fs::symlink(outer.path().join("elsewhere"), img.join("etc/diskless")).unwrap();
        assert!(read_lists(&img, &[PathBuf::from("/etc")]).is_err());
    }
}
