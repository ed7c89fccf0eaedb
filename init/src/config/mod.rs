//! Configuration of the boot (DESIGN §4): compiled defaults, refined by the image's
//! `/etc/diskless/diskless.toml` (or the legacy shell-style `diskless.conf` when no
//! TOML file exists), overridden by `diskless.<key>=<value>` on the kernel command line.
//!
//! Nothing here fails the boot. A lab with a typo in its configuration must still come
//! up, and say loudly what it ignored: every unknown key, bad value or unreadable file
//! becomes a [`ConfigWarning`] naming the source, the key and the reason, and the key
//! keeps the value it had before (the default, or the file's value when the command
//! line is the culprit).
//!
//! - `keys`: the keys as one table (name, how to set it, how to show it). The TOML
//!   file, the legacy file, the command line and [`rendered`] all go through it, so a
//!   key behaves the same wherever it is written;
//! - `validate`: the rules a value must follow ([`ValueError`]);
//! - `legacy`: the old scripts' `diskless.conf`.

mod keys;
mod legacy;
mod validate;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use keys::rendered;
pub use legacy::LegacyLineError;
pub use validate::{ValueError, check_image_path, parse_tmpfs_size};

use keys::{Input, find_key, is_section};
use legacy::LEGACY_VARIABLES;
use validate::SIZE_SUFFIXES;

/// The TOML configuration, relative to the image root.
pub const TOML_PATH: &str = "etc/diskless/diskless.toml";
/// The configuration of the old shell scripts, read only when no TOML file exists.
pub const LEGACY_PATH: &str = "etc/diskless/diskless.conf";
/// Prefix of the configuration keys on the kernel command line.
pub const CMDLINE_PREFIX: &str = "diskless.";
/// Larger files are not configuration: refuse them rather than parse megabytes at boot.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// How the local directories are made writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A tmpfs on `<dir>/<localdir>`; the image points into it with symlinks.
    Symlink,
    /// An overlayfs on each dir with a tmpfs upper: any file can be overridden.
    Overlay,
}

/// What PID 1 does after a permanent failure (DESIGN §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    Reboot,
    Shell,
    Halt,
}

/// The `size=` of a tmpfs: a share of RAM or a byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpfsSize {
    Percent(u8),
    Bytes(u64),
}

impl TmpfsSize {
    /// The value for tmpfs's `size=` mount option.
    pub fn mount_option(&self) -> String {
        match self {
            TmpfsSize::Percent(p) => format!("{p}%"),
            TmpfsSize::Bytes(b) => b.to_string(),
        }
    }
}

impl fmt::Display for TmpfsSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TmpfsSize::Percent(p) => write!(f, "{p}%"),
            TmpfsSize::Bytes(b) => {
                // Show the size the way an admin would have written it.
                let unit = SIZE_SUFFIXES.iter().rev().find(|(_, m)| b >= *m && b % m == 0);
                match unit {
                    Some((s, m)) => write!(f, "{}{}", b / m, s.to_ascii_uppercase()),
                    None => write!(f, "{b}"),
                }
            }
        }
    }
}

impl Serialize for TmpfsSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TmpfsSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_tmpfs_size(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The `[scratch]` section: local disks used for the local dirs, `/tmp` and swap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scratch {
    pub fstypes: Vec<String>,
    /// Only filesystems with this label are used; empty means any of `fstypes`.
    pub label: String,
    pub mountpoint: PathBuf,
    /// Empty the bind-mounted subdirectories before use.
    pub wipe: bool,
    /// `swapon` every partition with a swap signature.
    pub swap: bool,
    /// The scratch filesystem as the image's FS-Cache (needs `fsc` on the root mount).
    #[serde(default)]
    pub cache: bool,
}

/// The effective configuration of this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Directories of the image that get a writable local part; absolute, normalised.
    pub dirs: Vec<PathBuf>,
    /// Name of the local subdirectory (`/etc/local`): one path component.
    pub localdir: String,
    /// Root of the layers inside the image; absolute.
    pub layers: PathBuf,
    pub mode: Mode,
    pub tmpfs_size: TmpfsSize,
    pub scratch: Scratch,
    /// Seconds to wait for a link to report carrier.
    pub carrier_timeout: u64,
    /// Seconds to wait for a DHCP lease.
    pub dhcp_timeout: u64,
    /// DHCP servers whose offers are accepted (empty: any).
    #[serde(default)]
    pub dhcp_server: Vec<std::net::Ipv4Addr>,
    /// Where the boot's log and inventory go (`dhcp`: the lease's option 7).
    #[serde(default)]
    pub syslog: crate::syslog::Target,
    /// Milliseconds without a new device before coldplug is considered settled.
    pub settle_ms: u64,
    /// Seconds to keep retrying the NFS mount; 0 retries forever.
    pub nfs_retry_timeout: u64,
    /// Seconds one of several NFS root servers has to answer before the next is
    /// tried (0 counts as 1).
    #[serde(default = "default_nfs_server_timeout")]
    pub nfs_server_timeout: u64,
    pub on_failure: OnFailure,
    /// Seconds of countdown before a reboot or halt after a permanent failure.
    pub reboot_delay: u64,
    /// The file the values came from, if any (full path as read).
    pub file: Option<PathBuf>,
    /// Keys set on the kernel command line, in the order they were applied.
    pub cmdline_keys: Vec<String>,
}

fn default_nfs_server_timeout() -> u64 {
    5
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dirs: vec![PathBuf::from("/etc"), PathBuf::from("/var")],
            localdir: "local".into(),
            layers: PathBuf::from("/diskless"),
            mode: Mode::Symlink,
            tmpfs_size: TmpfsSize::Percent(25),
            scratch: Scratch {
                fstypes: vec!["ext4".into(), "xfs".into(), "btrfs".into()],
                label: "scratch".into(),
                mountpoint: PathBuf::from("/mnt/scratch"),
                wipe: false,
                cache: false,
                swap: true,
            },
            carrier_timeout: 10,
            dhcp_timeout: 120,
            dhcp_server: Vec::new(),
            syslog: crate::syslog::Target::Dhcp,
            settle_ms: 500,
            nfs_retry_timeout: 300,
            nfs_server_timeout: default_nfs_server_timeout(),
            on_failure: OnFailure::Reboot,
            reboot_delay: 30,
            file: None,
            cmdline_keys: Vec::new(),
        }
    }
}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    File(PathBuf),
    KernelCommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::KernelCommandLine => f.write_str("kernel command line"),
        }
    }
}

/// Something in the configuration that was ignored. One variant per step that can go
/// wrong; each says what was ignored and what is used instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConfigWarning {
    /// The file exists but cannot be read (permissions, I/O error, not UTF-8, too big).
    #[error("cannot read {}: {error}; using the compiled defaults (check the file in the image)", .path.display())]
    ReadFile { path: PathBuf, error: String },
    /// The TOML file does not parse; none of it is used.
    #[error(
        "{}{}: not valid TOML ({error}); the whole file is ignored, using the compiled defaults",
        .path.display(),
        .line.map(|n| format!(" line {n}")).unwrap_or_default()
    )]
    ParseToml { path: PathBuf, line: Option<usize>, error: String },
    /// A line of the legacy file that is not a plain `VAR=value` assignment.
    #[error("{} line {line}: {text:?}: {reason}; line ignored", .path.display())]
    ParseLegacyLine {
        path: PathBuf,
        line: usize,
        text: String,
        #[serde(serialize_with = "as_text")]
        reason: LegacyLineError,
    },
    /// A variable of the legacy file that diskless does not know.
    #[error(
        "{} line {line}: unknown variable {name} ignored (known: {})",
        .path.display(),
        LEGACY_VARIABLES.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(", ")
    )]
    UnknownLegacyVariable { path: PathBuf, line: usize, name: String },
    /// A key that is not in the key table.
    #[error("{origin}: unknown key {key:?} ignored (known keys: {})", keys::names().collect::<Vec<_>>().join(", "))]
    UnknownKey {
        /// Not `source`: that name would make it the error's cause.
        #[serde(rename = "source")]
        origin: Source,
        key: String,
    },
    /// A known key with a value that failed validation.
    #[error("{origin}: {key} = {value}: {reason}; using {key} = {using}")]
    BadValue {
        #[serde(rename = "source")]
        origin: Source,
        key: String,
        value: String,
        #[serde(serialize_with = "as_text")]
        reason: ValueError,
        using: String,
    },
    /// `diskless.<key>` on the command line without `=<value>`.
    #[error("kernel command line: {CMDLINE_PREFIX}{key} needs a value ({CMDLINE_PREFIX}{key}=...); ignored")]
    MissingValue { key: String },
    /// A key of an earlier stage written in the file, which is read after that stage ran.
    #[error(
        "{}: {key} is used before the image is mounted, so the file cannot change it for this boot; set \
         {CMDLINE_PREFIX}{key}=... on the kernel command line instead",
        .path.display()
    )]
    TooLate { path: PathBuf, key: String },
}

/// boot.json keeps the reasons as the text the console showed.
fn as_text<S: Serializer>(value: &impl fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Reads the configuration of the image mounted at `image_root` and applies the
/// `diskless.*` parameters of the kernel command line (`cmdline`: every raw parameter
/// in command-line order, as `(key, value)`; others than `diskless.*` are ignored).
///
/// Never fails: what cannot be used is in the returned warnings, which the caller must
/// log, one line each.
pub fn load<K: AsRef<str>, V: AsRef<str>>(
    image_root: &Path,
    cmdline: &[(K, Option<V>)],
) -> (Config, Vec<ConfigWarning>) {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    let toml_path = image_root.join(TOML_PATH);
    match read_config_file(&toml_path) {
        Ok(Some(text)) => warnings.extend(config.apply_toml(&text, &toml_path)),
        Ok(None) => {
            let legacy_path = image_root.join(LEGACY_PATH);
            match read_config_file(&legacy_path) {
                Ok(Some(text)) => warnings.extend(config.apply_legacy(&text, &legacy_path)),
                Ok(None) => {}
                Err(w) => warnings.push(*w),
            }
        }
        Err(w) => warnings.push(*w),
    }
    warnings.extend(config.apply_cmdline(cmdline));
    (config, warnings)
}

/// The text of a configuration file; `None` when it does not exist.
fn read_config_file(path: &Path) -> Result<Option<String>, Box<ConfigWarning>> {
    let warn = |error: String| Box::new(ConfigWarning::ReadFile { path: path.to_path_buf(), error });
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(warn(e.to_string())),
    };
    if !meta.is_file() {
        return Err(warn("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(warn(format!("{} bytes, more than the {MAX_FILE_BYTES} a configuration may have", meta.len())));
    }
    let bytes = fs::read(path).map_err(|e| warn(e.to_string()))?;
    String::from_utf8(bytes).map(Some).map_err(|e| warn(format!("not UTF-8 text ({e})")))
}

fn split_commas(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

impl Config {
    /// Applies a TOML document read from `path`.
    pub fn apply_toml(&mut self, text: &str, path: &Path) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        match text.parse::<toml::Table>() {
            Ok(table) => {
                self.file = Some(path.to_path_buf());
                self.apply_table(&table, "", path, &mut warnings);
            }
            Err(e) => warnings.push(ConfigWarning::ParseToml {
                path: path.to_path_buf(),
                line: e.span().map(|s| line_of(text, s.start)),
                error: e.message().trim().replace('\n', " "),
            }),
        }
        warnings
    }

    fn apply_table(&mut self, table: &toml::Table, prefix: &str, path: &Path, warnings: &mut Vec<ConfigWarning>) {
        let source = Source::File(path.to_path_buf());
        for (name, value) in table {
            let dotted = format!("{prefix}{name}");
            if let Some(key) = find_key(&dotted) {
                if key.before_root {
                    warnings.push(ConfigWarning::TooLate { path: path.to_path_buf(), key: dotted.clone() });
                }
                self.apply_key(key, Input::Toml(value), &source, warnings);
            } else if is_section(&dotted) {
                match value {
                    toml::Value::Table(t) => self.apply_table(t, &format!("{dotted}."), path, warnings),
                    other => warnings.push(ConfigWarning::BadValue {
                        origin: source.clone(),
                        key: dotted.clone(),
                        value: other.to_string(),
                        reason: ValueError::Section { name: dotted.clone() },
                        using: "the defaults of its keys".into(),
                    }),
                }
            } else {
                warnings.push(ConfigWarning::UnknownKey { origin: source.clone(), key: dotted });
            }
        }
    }

    /// Applies the `diskless.<key>=<value>` parameters among `cmdline`, in order (a later
    /// one wins). Lists are comma separated: `diskless.dirs=/etc,/var`.
    pub fn apply_cmdline<K: AsRef<str>, V: AsRef<str>>(&mut self, cmdline: &[(K, Option<V>)]) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        for (key, value) in cmdline {
            let Some(name) = key.as_ref().strip_prefix(CMDLINE_PREFIX) else { continue };
            let Some(key) = find_key(name) else {
                warnings.push(ConfigWarning::UnknownKey { origin: Source::KernelCommandLine, key: name.to_string() });
                continue;
            };
            let Some(value) = value else {
                warnings.push(ConfigWarning::MissingValue { key: name.to_string() });
                continue;
            };
            let input = Input::Text { text: value.as_ref(), split: split_commas };
            if self.apply_key(key, input, &Source::KernelCommandLine, &mut warnings) {
                self.cmdline_keys.push(name.to_string());
            }
        }
        warnings
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::validate::{check_dirs, check_localdir};
    use super::*;

    fn cmd(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect()
    }

    pub(super) fn toml(text: &str) -> (Config, Vec<ConfigWarning>) {
        let mut c = Config::default();
        let w = c.apply_toml(text, Path::new("/img/etc/diskless/diskless.toml"));
        (c, w)
    }

    pub(super) fn legacy(text: &str) -> (Config, Vec<ConfigWarning>) {
        let mut c = Config::default();
        let w = c.apply_legacy(text, Path::new("/img/etc/diskless/diskless.conf"));
        (c, w)
    }

    pub(super) fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::default();
        assert_eq!(c.dirs, paths(&["/etc", "/var"]));
        assert_eq!(c.localdir, "local");
        assert_eq!(c.layers, Path::new("/diskless"));
        assert_eq!(c.mode, Mode::Symlink);
        assert_eq!(c.tmpfs_size, TmpfsSize::Percent(25));
        assert_eq!(c.scratch.fstypes, ["ext4", "xfs", "btrfs"]);
        assert_eq!(c.scratch.label, "scratch");
        assert_eq!(c.scratch.mountpoint, Path::new("/mnt/scratch"));
        assert!(!c.scratch.wipe);
        assert!(c.scratch.swap);
        assert_eq!(c.on_failure, OnFailure::Reboot);
    }

    #[test]
    fn boot_json_summary_uses_the_words_of_the_file() {
        let v = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(v["tmpfs_size"], "25%");
        assert_eq!(v["mode"], "symlink");
        assert_eq!(v["on_failure"], "reboot");
        assert_eq!(v["dirs"][1], "/var");
        assert_eq!(v["scratch"]["label"], "scratch");
        let w = serde_json::to_value(ConfigWarning::UnknownKey { origin: Source::KernelCommandLine, key: "x".into() })
            .unwrap();
        assert_eq!(w["kind"], "unknown_key");
        assert_eq!(w["source"], "kernel_command_line");
        let (_, bad) = toml("localdir = \"a/b\"\n");
        let bad = serde_json::to_value(&bad[0]).unwrap();
        assert_eq!(bad["source"]["file"], "/img/etc/diskless/diskless.toml");
        assert_eq!(
            bad["reason"], "'/' is not allowed: one directory name of letters, digits, '.', '_' and '-' (no '/')",
            "boot.json keeps the reason as text"
        );
    }

    #[test]
    fn full_toml_file_sets_every_key() {
        let (c, w) = toml(
            r#"
            dirs = ["/etc", "/var", "/srv/data"]
            localdir = "site"
            layers = "/srv/layers"
            mode = "overlay"
            tmpfs_size = "512m"
            on_failure = "shell"
            reboot_delay = 5
            [scratch]
            fstypes = ["xfs"]
            label = ""
            mountpoint = "/scratch"
            wipe = true
            swap = false
            "#,
        );
        assert_eq!(w, []);
        assert_eq!(c.dirs, paths(&["/etc", "/var", "/srv/data"]));
        assert_eq!(c.localdir, "site");
        assert_eq!(c.layers, Path::new("/srv/layers"));
        assert_eq!(c.mode, Mode::Overlay);
        assert_eq!(c.tmpfs_size, TmpfsSize::Bytes(512 << 20));
        assert_eq!(c.on_failure, OnFailure::Shell);
        assert_eq!(c.reboot_delay, 5);
        assert_eq!(c.scratch.fstypes, ["xfs"]);
        assert_eq!(c.scratch.label, "");
        assert_eq!(c.scratch.mountpoint, Path::new("/scratch"));
        assert!(c.scratch.wipe);
        assert!(!c.scratch.swap);
        assert_eq!(c.file.as_deref(), Some(Path::new("/img/etc/diskless/diskless.toml")));
    }

    #[test]
    fn dotted_toml_keys_reach_the_scratch_section() {
        let (c, w) = toml("scratch.label = \"disk\"\n");
        assert_eq!(w, []);
        assert_eq!(c.scratch.label, "disk");
    }

    #[test]
    fn unknown_toml_key_is_named_and_the_rest_is_used() {
        let (c, w) = toml("dirz = [\"/etc\"]\nlocaldir = \"loc\"\n[scratch]\nlabl = \"x\"\n[extra]\na = 1\n");
        assert_eq!(c.localdir, "loc");
        let keys: Vec<_> = w
            .iter()
            .map(|w| match w {
                ConfigWarning::UnknownKey { key, origin: Source::File(_) } => key.as_str(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(keys, ["dirz", "extra", "scratch.labl"]);
        assert!(w[0].to_string().contains("diskless.toml: unknown key \"dirz\""));
    }

    #[test]
    fn bad_value_keeps_the_default_and_names_file_key_and_reason() {
        let (c, w) = toml("dirs = [\"etc\"]\n");
        assert_eq!(c.dirs, Config::default().dirs);
        let msg = w[0].to_string();
        assert!(msg.contains("/img/etc/diskless/diskless.toml: dirs = [\"etc\"]"), "{msg}");
        assert!(msg.contains("not an absolute path"), "{msg}");
        assert!(msg.contains("using dirs = [\"/etc\", \"/var\"]"), "{msg}");
    }

    #[test]
    fn wrong_toml_types_are_reported() {
        let (c, w) = toml("dirs = \"/etc /var\"\nscratch = 1\nreboot_delay = -1\nmode = 3\n");
        let (_, wipe) = toml("scratch.wipe = \"yes\"\n");
        let w: Vec<_> = w.into_iter().chain(wipe).collect();
        assert_eq!(c, Config { file: c.file.clone(), ..Config::default() });
        let reasons: Vec<String> = w
            .iter()
            .map(|w| match w {
                ConfigWarning::BadValue { key, reason, .. } => format!("{key}: {reason}"),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.starts_with("dirs: expected a list of strings")));
        assert!(reasons.iter().any(|r| r.starts_with("scratch.wipe: expected true or false")));
        assert!(reasons.iter().any(|r| r.starts_with("reboot_delay: must not be negative")));
        assert!(reasons.iter().any(|r| r.starts_with("mode: expected a string")));
        assert!(reasons.iter().any(|r| r.starts_with("scratch: scratch is a section")));
    }

    #[test]
    fn toml_syntax_error_ignores_the_file_with_its_line() {
        let (c, w) = toml("localdir = \"x\"\ndirs = [\n");
        assert_eq!(c.localdir, "local");
        assert!(matches!(&w[..], [ConfigWarning::ParseToml { line: Some(_), .. }]), "{w:?}");
        assert!(w[0].to_string().contains("not valid TOML"));
    }

    #[test]
    fn network_keys_in_the_file_are_kept_but_flagged_as_too_late() {
        let (c, w) = toml("carrier_timeout = 3\n");
        assert_eq!(c.carrier_timeout, 3);
        assert!(matches!(&w[..], [ConfigWarning::TooLate { key, .. }] if key == "carrier_timeout"));
        assert!(w[0].to_string().contains("diskless.carrier_timeout="));
    }

    #[test]
    fn mode_is_one_of_two() {
        let (c, w) = toml("mode = \"overlay\"");
        assert_eq!((c.mode, w.len()), (Mode::Overlay, 0));
        let (c, w) = toml("mode = \"unionfs\"");
        assert_eq!(c.mode, Mode::Symlink);
        assert!(w[0].to_string().contains("must be one of \"symlink\", \"overlay\""));
    }

    #[test]
    fn tmpfs_size_displays_as_written() {
        assert_eq!(TmpfsSize::Bytes(512 << 20).to_string(), "512M");
        assert_eq!(TmpfsSize::Bytes(1000).to_string(), "1000");
        assert_eq!(TmpfsSize::Percent(25).mount_option(), "25%");
        assert_eq!(TmpfsSize::Bytes(2048).mount_option(), "2048");
    }

    #[test]
    fn bad_layers_and_mountpoint_keep_their_defaults() {
        let (c, w) = toml("layers = \"srv\"\n[scratch]\nmountpoint = \"/mnt/../x\"\n");
        assert_eq!(
            (c.layers.as_path(), c.scratch.mountpoint.as_path()),
            (Path::new("/diskless"), Path::new("/mnt/scratch"))
        );
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn integers_have_upper_bounds() {
        let (c, w) = toml("reboot_delay = 100000\n");
        assert_eq!(c.reboot_delay, 30);
        assert!(w[0].to_string().contains("more than 3600 seconds"));
    }

    #[test]
    fn cmdline_overrides_file_and_defaults() {
        let (mut c, w) = toml("localdir = \"site\"\nmode = \"overlay\"\n");
        assert!(w.is_empty());
        let w = c.apply_cmdline(&cmd(&[
            ("diskless.localdir", Some("lab")),
            ("diskless.dirs", Some("/etc,/var,/opt")),
            ("diskless.scratch.label", Some("x")),
            ("diskless.scratch.swap", Some("off")),
            ("diskless.settle_ms", Some("750")),
            ("ip", Some("dhcp")),
            ("quiet", None),
        ]));
        assert_eq!(w, []);
        assert_eq!(c.localdir, "lab");
        assert_eq!(c.mode, Mode::Overlay);
        assert_eq!(c.dirs, paths(&["/etc", "/var", "/opt"]));
        assert_eq!(c.scratch.label, "x");
        assert!(!c.scratch.swap);
        assert_eq!(c.settle_ms, 750);
        assert_eq!(c.cmdline_keys, ["localdir", "dirs", "scratch.label", "scratch.swap", "settle_ms"]);
    }

    #[test]
    fn later_cmdline_parameter_wins() {
        let mut c = Config::default();
        c.apply_cmdline(&cmd(&[("diskless.mode", Some("overlay")), ("diskless.mode", Some("symlink"))]));
        assert_eq!(c.mode, Mode::Symlink);
    }

    #[test]
    fn bad_cmdline_value_keeps_the_file_value_and_says_kernel_command_line() {
        let (mut c, _) = toml("tmpfs_size = \"1g\"\n");
        let w = c.apply_cmdline(&cmd(&[
            ("diskless.tmpfs_size", Some("lots")),
            ("diskless.nope", Some("1")),
            ("diskless.dirs", None),
        ]));
        assert_eq!(c.tmpfs_size, TmpfsSize::Bytes(1 << 30));
        assert_eq!(w.len(), 3);
        assert_eq!(
            w[0].to_string(),
            "kernel command line: tmpfs_size = \"lots\": \"lots\" is not a size: write N% (of RAM) or N, Nk, Nm, Ng; using tmpfs_size = \"1G\""
        );
        assert!(matches!(&w[1], ConfigWarning::UnknownKey { origin: Source::KernelCommandLine, key } if key == "nope"));
        assert!(matches!(&w[2], ConfigWarning::MissingValue { key } if key == "dirs"));
        assert!(c.cmdline_keys.is_empty());
    }

    #[test]
    fn cmdline_booleans_and_numbers_are_checked() {
        let mut c = Config::default();
        let w =
            c.apply_cmdline(&cmd(&[("diskless.scratch.wipe", Some("maybe")), ("diskless.reboot_delay", Some("5s"))]));
        assert_eq!((c.scratch.wipe, c.reboot_delay), (false, 30));
        assert_eq!(w.len(), 2);
        let w = c.apply_cmdline(&cmd(&[("diskless.scratch.wipe", Some("YES")), ("diskless.on_failure", Some("halt"))]));
        assert_eq!(w, []);
        assert!(c.scratch.wipe);
        assert_eq!(c.on_failure, OnFailure::Halt);
    }

    mod files {
        use super::*;
        use std::os::unix::fs::PermissionsExt;

        fn image() -> tempfile::TempDir {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("etc/diskless")).unwrap();
            dir
        }

        const NO_CMDLINE: &[(String, Option<String>)] = &[];

        #[test]
        fn no_file_gives_defaults_without_warnings() {
            let dir = tempfile::tempdir().unwrap();
            let (c, w) = load(dir.path(), NO_CMDLINE);
            assert_eq!(c, Config::default());
            assert_eq!(w, []);
        }

        #[test]
        fn toml_wins_over_legacy_file() {
            let dir = image();
            fs::write(dir.path().join(TOML_PATH), "localdir = \"fromtoml\"\n").unwrap();
            fs::write(dir.path().join(LEGACY_PATH), "LOCALDIR=fromconf\n").unwrap();
            let (c, w) = load(dir.path(), NO_CMDLINE);
            assert_eq!((c.localdir.as_str(), w.len()), ("fromtoml", 0));
        }

        #[test]
        fn legacy_file_is_read_when_no_toml_exists() {
            let dir = image();
            fs::write(dir.path().join(LEGACY_PATH), "LOCALDIR=fromconf\n").unwrap();
            let (c, w) = load(dir.path(), &cmd(&[("diskless.dirs", Some("/etc"))]));
            assert_eq!(w, []);
            assert_eq!(c.localdir, "fromconf");
            assert_eq!(c.dirs, paths(&["/etc"]));
            assert_eq!(c.file, Some(dir.path().join(LEGACY_PATH)));
        }

        #[test]
        fn unreadable_file_is_a_warning_and_defaults_apply() {
            let dir = image();
            fs::write(dir.path().join(TOML_PATH), [0xff, 0xfe, b'\n']).unwrap();
            let (c, w) = load(dir.path(), NO_CMDLINE);
            assert_eq!(c, Config::default());
            assert!(matches!(&w[..], [ConfigWarning::ReadFile { error, .. }] if error.contains("UTF-8")));

            fs::remove_file(dir.path().join(TOML_PATH)).unwrap();
            fs::create_dir(dir.path().join(TOML_PATH)).unwrap();
            let (_, w) = load(dir.path(), NO_CMDLINE);
            assert!(w[0].to_string().contains("not a regular file"), "{w:?}");
        }

        #[test]
        fn permission_denied_is_a_warning_naming_the_file() {
            let dir = image();
            let path = dir.path().join(TOML_PATH);
            fs::write(&path, "localdir = \"x\"\n").unwrap();
            fs::set_permissions(dir.path().join("etc/diskless"), fs::Permissions::from_mode(0o000)).unwrap();
            // Root bypasses permissions; this only bites when the tests run unprivileged.
            let (c, w) = load(dir.path(), NO_CMDLINE);
            fs::set_permissions(dir.path().join("etc/diskless"), fs::Permissions::from_mode(0o755)).unwrap();
            if rustix::process::geteuid().is_root() {
                assert_eq!(c.localdir, "x");
            } else {
                assert!(w[0].to_string().contains(&*path.to_string_lossy()), "{w:?}");
                assert_eq!(c.localdir, "local");
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_toml_text_never_panics(text in any::<String>()) {
                let (_, _) = toml(&text);
            }

            #[test]
            fn toml_like_text_never_panics(text in "([a-z._]{1,12} ?= ?(\"[ -~]{0,16}\"|[0-9-]{1,5}|true|\\[(\"[ -~]{0,8}\",?){0,3}\\])\n|\\[[a-z.]{1,8}\\]\n){0,8}") {
                let (c, _) = toml(&text);
                // Whatever the file says, what is used still passes validation.
                prop_assert!(check_dirs(&c.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>()).is_ok());
                prop_assert!(check_localdir(&c.localdir).is_ok());
            }

            #[test]
            fn arbitrary_legacy_text_never_panics(text in any::<String>()) {
                let (c, _) = legacy(&text);
                prop_assert!(check_localdir(&c.localdir).is_ok());
            }

            #[test]
            fn arbitrary_cmdline_values_never_panic(key in "[a-z._]{0,20}", value in any::<String>()) {
                let mut c = Config::default();
                c.apply_cmdline(&[(format!("diskless.{key}"), Some(value))]);
                prop_assert!(check_localdir(&c.localdir).is_ok());
            }
        }
    }
}
