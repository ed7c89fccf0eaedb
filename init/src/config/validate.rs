//! The rules a value must follow before a key takes it. Each rule is one variant of
//! [`ValueError`], whose text is the "why" of a [`super::ConfigWarning::BadValue`].

use std::path::{Component, Path, PathBuf};

use super::TmpfsSize;

/// Why a value was refused. The text is the reason shown after `key = value:`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A reason read back from a boot record, where it is kept as its text.
    #[error("{0}")]
    Recorded(String),
    /// The value has the wrong TOML type (`expected` and `found` are "a string", "a list"...).
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: &'static str },
    /// A list with an item that is not a string.
    #[error("expected a list of strings, found {found} in it")]
    WrongItemType { found: &'static str },
    /// A key of the table was written as a plain value (`scratch = 1`).
    #[error("{name} is a section: write [{name}] and its keys below it")]
    Section { name: String },
    #[error("not a boolean (one of {} or {})", super::keys::TRUE_WORDS.join("/"), super::keys::FALSE_WORDS.join("/"))]
    NotABoolean { value: String },
    #[error("{value:?} is not an IPv4 address")]
    NotAnIpv4Address { value: String },
    #[error(transparent)]
    Syslog(crate::syslog::TargetError),
    #[error("must not be negative")]
    Negative { value: i64 },
    #[error("not a whole number (digits only, no unit)")]
    NotAWholeNumber { value: String },
    #[error("more than {max} {unit}")]
    TooLarge { value: u64, max: u64, unit: &'static str },
    #[error("must be one of {}", quoted_list(.choices))]
    NotOneOf { value: String, choices: Vec<&'static str> },
    #[error("{value:?} is not an absolute path (it must start with /)")]
    NotAbsolute { value: String },
    #[error("{value:?} contains a control character")]
    ControlCharacter { value: String },
    #[error("{value:?} contains \"..\"")]
    DotDot { value: String },
    /// Entry `number` (from 1) of the dirs list, and what is wrong with it.
    #[error("entry {number} {value:?}: {reason}")]
    Dir { number: usize, value: String, reason: Box<ValueError> },
    #[error("the root itself cannot be a local dir")]
    RootDir,
    #[error("{character:?} cannot be used in a mount option")]
    MountOptionCharacter { character: char },
    #[error("{} is listed twice", .dir.display())]
    DirTwice { dir: PathBuf },
    #[error("must not be empty")]
    EmptyName,
    #[error("{value:?} is not a directory name")]
    NotADirectoryName { value: String },
    #[error("longer than 255 bytes")]
    NameTooLong { value: String },
    #[error("{character:?} is not allowed: one directory name of letters, digits, '.', '_' and '-' (no '/')")]
    NameCharacter { value: String, character: char },
    #[error("{value:?} is not a size: write N% (of RAM) or N, Nk, Nm, Ng")]
    NotASize { value: String },
    #[error("{value:?}: a share of RAM must be between 1% and 100%")]
    PercentRange { value: String },
    #[error("{value:?}: a tmpfs of size 0 would hold nothing")]
    ZeroSize { value: String },
    #[error("{value:?} is not a filesystem type name (like ext4)")]
    NotAFilesystemType { value: String },
    #[error("{value:?} is listed twice")]
    FilesystemTypeTwice { value: String },
    #[error("longer than 255 bytes, no filesystem has such a label")]
    LabelTooLong { value: String },
    #[error("contains a control character")]
    LabelControlCharacter { value: String },
}

fn quoted_list(items: &[&str]) -> String {
    items.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// The tmpfs size suffixes (any case) and their multipliers.
pub(super) const SIZE_SUFFIXES: &[(char, u64)] = &[('k', 1 << 10), ('m', 1 << 20), ('g', 1 << 30)];

/// Characters that separate mount options (`lowerdir=a,upperdir=b`, `a:b` lower lists)
/// and so cannot appear in a dir that becomes part of one.
const MOUNT_OPTION_SPECIALS: &[char] = &[',', ':', '\\'];

pub(super) fn at_most(value: u64, max: u64, unit: &'static str) -> Result<u64, ValueError> {
    if value > max { Err(ValueError::TooLarge { value, max, unit }) } else { Ok(value) }
}

pub(super) fn one_of<T: Copy>(value: &str, table: &[(&'static str, T)]) -> Result<T, ValueError> {
    table.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or_else(|| ValueError::NotOneOf {
        value: value.to_string(),
        choices: table.iter().map(|(n, _)| *n).collect(),
    })
}

/// An absolute path inside the image, normalised (`//` and `.` removed). `..` is
/// refused rather than resolved: it would let a value point outside what it names.
pub fn check_image_path(value: &str) -> Result<PathBuf, ValueError> {
    if !value.starts_with('/') {
        return Err(ValueError::NotAbsolute { value: value.into() });
    }
    if value.chars().any(char::is_control) {
        return Err(ValueError::ControlCharacter { value: value.into() });
    }
    let mut path = PathBuf::from("/");
    for component in Path::new(value).components() {
        match component {
            Component::Normal(c) => path.push(c),
            Component::ParentDir => return Err(ValueError::DotDot { value: value.into() }),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(path)
}

pub(super) fn check_dirs(values: &[String]) -> Result<Vec<PathBuf>, ValueError> {
    let mut dirs: Vec<PathBuf> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let entry =
            |reason: ValueError| ValueError::Dir { number: i + 1, value: value.clone(), reason: Box::new(reason) };
        let dir = check_image_path(value).map_err(entry)?;
        if dir == Path::new("/") {
            return Err(entry(ValueError::RootDir));
        }
        if let Some(character) = value.chars().find(|c| MOUNT_OPTION_SPECIALS.contains(c) || c.is_whitespace()) {
            return Err(entry(ValueError::MountOptionCharacter { character }));
        }
        if dirs.contains(&dir) {
            return Err(entry(ValueError::DirTwice { dir }));
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// A single path component that is safe as a directory name on any filesystem.
pub(super) fn check_localdir(value: &str) -> Result<String, ValueError> {
    if value.is_empty() {
        return Err(ValueError::EmptyName);
    }
    if value == "." || value == ".." {
        return Err(ValueError::NotADirectoryName { value: value.into() });
    }
    if value.len() > 255 {
        return Err(ValueError::NameTooLong { value: value.into() });
    }
    if let Some(character) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(ValueError::NameCharacter { value: value.into(), character });
    }
    Ok(value.to_string())
}

/// `N%` of RAM (1-100) or `N` bytes with an optional `k`, `m` or `g` suffix.
pub fn parse_tmpfs_size(value: &str) -> Result<TmpfsSize, ValueError> {
    let bad = || ValueError::NotASize { value: value.into() };
    if let Some(number) = value.strip_suffix('%') {
        let p: u8 = digits(number).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        if !(1..=100).contains(&p) {
            return Err(ValueError::PercentRange { value: value.into() });
        }
        return Ok(TmpfsSize::Percent(p));
    }
    let (number, multiplier) = match value.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = SIZE_SUFFIXES.iter().find(|(s, _)| *s == c.to_ascii_lowercase()).ok_or_else(bad)?.1;
            (&value[..value.len() - 1], m)
        }
        _ => (value, 1),
    };
    let bytes = digits(number).and_then(|n| n.checked_mul(multiplier)).ok_or_else(bad)?;
    if bytes == 0 {
        return Err(ValueError::ZeroSize { value: value.into() });
    }
    Ok(TmpfsSize::Bytes(bytes))
}

/// A decimal number of ASCII digits only (no sign, no space).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub(super) fn check_ipv4_list(values: Vec<String>) -> Result<Vec<std::net::Ipv4Addr>, ValueError> {
    values.into_iter().map(|v| v.trim().parse().map_err(|_| ValueError::NotAnIpv4Address { value: v })).collect()
}

pub(super) fn check_fstypes(values: Vec<String>) -> Result<Vec<String>, ValueError> {
    let mut seen: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(ValueError::NotAFilesystemType { value });
        }
        if seen.contains(&value) {
            return Err(ValueError::FilesystemTypeTwice { value });
        }
        seen.push(value);
    }
    Ok(seen)
}

pub(super) fn check_label(value: &str) -> Result<String, ValueError> {
    // The longest label of the scratch filesystems (btrfs) is 255 bytes.
    if value.len() > 255 {
        return Err(ValueError::LabelTooLong { value: value.into() });
    }
    if value.chars().any(char::is_control) {
        return Err(ValueError::LabelControlCharacter { value: value.into() });
    }
    Ok(value.to_string())
}

/// boot.json keeps the reason as its text; read back, it stays text.
impl<'de> serde::Deserialize<'de> for ValueError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(ValueError::Recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    fn dirs_error(values: &[&str]) -> String {
        check_dirs(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>()).unwrap_err().to_string()
    }

    #[test]
    fn dirs_must_be_absolute() {
        assert!(dirs_error(&["/etc", "var"]).contains("entry 2 \"var\""));
    }

    #[test]
    fn dirs_must_not_contain_dot_dot() {
        assert!(dirs_error(&["/etc/../root"]).contains(".."));
    }

    #[test]
    fn dirs_must_not_repeat_after_normalisation() {
        assert!(dirs_error(&["/etc", "/etc/"]).contains("listed twice"));
        assert!(dirs_error(&["/var", "//var/./"]).contains("listed twice"));
    }

    #[test]
    fn dirs_refuse_root_and_mount_option_separators() {
        assert!(dirs_error(&["/"]).contains("root itself"));
        assert!(dirs_error(&["/a,b"]).contains("mount option"));
        assert!(check_dirs(&["/a:b".into()]).is_err());
        assert!(check_dirs(&["/a b".into()]).is_err());
    }

    #[test]
    fn dirs_are_normalised_and_may_be_empty() {
        assert_eq!(check_dirs(&["//etc/./".into()]).unwrap(), paths(&["/etc"]));
        assert_eq!(check_dirs(&[]).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn localdir_must_be_one_safe_component() {
        assert_eq!(check_localdir("local").unwrap(), "local");
        assert_eq!(check_localdir(".local-2_x").unwrap(), ".local-2_x");
        for bad in ["", ".", "..", "a/b", "/local", "lo cal", "l\0x", &"x".repeat(256)] {
            assert!(check_localdir(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tmpfs_size_accepts_percent_and_suffixes() {
        assert_eq!(parse_tmpfs_size("25%"), Ok(TmpfsSize::Percent(25)));
        assert_eq!(parse_tmpfs_size("100%"), Ok(TmpfsSize::Percent(100)));
        assert_eq!(parse_tmpfs_size("64k"), Ok(TmpfsSize::Bytes(64 << 10)));
        assert_eq!(parse_tmpfs_size("2G"), Ok(TmpfsSize::Bytes(2 << 30)));
        assert_eq!(parse_tmpfs_size("1M"), Ok(TmpfsSize::Bytes(1 << 20)));
        assert_eq!(parse_tmpfs_size("4096"), Ok(TmpfsSize::Bytes(4096)));
    }

    #[test]
    fn tmpfs_size_refuses_nonsense() {
        for bad in
            ["", "%", "0%", "101%", "300%", "-5%", "x", "5t", "1.5g", " 5g", "0", "0k", "99999999999999999999g", "+5"]
        {
            assert!(parse_tmpfs_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn layers_and_mountpoint_must_be_absolute_without_dot_dot() {
        assert_eq!(check_image_path("/diskless/"), Ok(PathBuf::from("/diskless")));
        assert!(check_image_path("diskless").is_err());
        assert!(check_image_path("/a/../b").is_err());
        assert!(check_image_path("/a\nb").is_err());
    }

    #[test]
    fn fstypes_and_label_are_checked() {
        assert!(check_fstypes(vec!["ext4".into(), "EXT4".into()]).is_err());
        assert!(check_fstypes(vec!["xfs".into(), "xfs".into()]).is_err());
        assert!(check_fstypes(vec!["".into()]).is_err());
        assert!(check_label(&"l".repeat(256)).is_err());
        assert!(check_label("a\tb").is_err());
        assert_eq!(check_label(""), Ok(String::new()));
    }

    #[test]
    fn reasons_read_as_before_the_typed_errors() {
        assert_eq!(
            dirs_error(&["/etc", "/etc/"]),
            "entry 2 \"/etc/\": /etc is listed twice",
            "the dirs entry wraps the reason of its path"
        );
        assert_eq!(
            check_localdir("a/b").unwrap_err().to_string(),
            "'/' is not allowed: one directory name of letters, digits, '.', '_' and '-' (no '/')"
        );
        assert_eq!(one_of("x", &[("a", 1), ("b", 2)]).unwrap_err().to_string(), "must be one of \"a\", \"b\"");
        assert_eq!(at_most(7, 5, "seconds").unwrap_err().to_string(), "more than 5 seconds");
        assert_eq!(
            parse_tmpfs_size("0%").unwrap_err().to_string(),
            "\"0%\": a share of RAM must be between 1% and 100%"
        );
    }
}
