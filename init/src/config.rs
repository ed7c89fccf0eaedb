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
//! The keys are one table ([`KEYS`]): name, how to set it (with its validation) and
//! how to show it. The TOML file, the legacy file and the command line all go
//! through that table, so a key behaves the same wherever it is written.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

const SIZE_SUFFIXES: &[(char, u64)] = &[('k', 1 << 10), ('m', 1 << 20), ('g', 1 << 30)];

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
    /// Milliseconds without a new device before coldplug is considered settled.
    pub settle_ms: u64,
    /// Seconds to keep retrying the NFS mount; 0 retries forever.
    pub nfs_retry_timeout: u64,
    pub on_failure: OnFailure,
    /// Seconds of countdown before a reboot or halt after a permanent failure.
    pub reboot_delay: u64,
    /// The file the values came from, if any (full path as read).
    pub file: Option<PathBuf>,
    /// Keys set on the kernel command line, in the order they were applied.
    pub cmdline_keys: Vec<String>,
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
                swap: true,
            },
            carrier_timeout: 10,
            dhcp_timeout: 120,
            settle_ms: 500,
            nfs_retry_timeout: 300,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConfigWarning {
    /// The file exists but cannot be read (permissions, I/O error, not UTF-8, too big).
    ReadFile { path: PathBuf, error: String },
    /// The TOML file does not parse; none of it is used.
    ParseToml { path: PathBuf, line: Option<usize>, error: String },
    /// A line of the legacy file that is not a plain `VAR=value` assignment.
    ParseLegacyLine { path: PathBuf, line: usize, text: String, reason: String },
    /// A variable of the legacy file that diskless does not know.
    UnknownLegacyVariable { path: PathBuf, line: usize, name: String },
    /// A key that is not in the key table.
    UnknownKey { source: Source, key: String },
    /// A known key with a value that failed validation.
    BadValue { source: Source, key: String, value: String, reason: String, using: String },
    /// `diskless.<key>` on the command line without `=<value>`.
    MissingValue { key: String },
    /// A key of an earlier stage written in the file, which is read after that stage ran.
    TooLate { path: PathBuf, key: String },
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigWarning::ReadFile { path, error } => write!(
                f,
                "cannot read {}: {error}; using the compiled defaults (check the file in the image)",
                path.display()
            ),
            ConfigWarning::ParseToml { path, line, error } => {
                write!(f, "{}", path.display())?;
                if let Some(line) = line {
                    write!(f, " line {line}")?;
                }
                write!(f, ": not valid TOML ({error}); the whole file is ignored, using the compiled defaults")
            }
            ConfigWarning::ParseLegacyLine { path, line, text, reason } => {
                write!(f, "{} line {line}: {text:?}: {reason}; line ignored", path.display())
            }
            ConfigWarning::UnknownLegacyVariable { path, line, name } => write!(
                f,
                "{} line {line}: unknown variable {name} ignored (known: {})",
                path.display(),
                LEGACY_VARIABLES.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(", ")
            ),
            ConfigWarning::UnknownKey { source, key } => write!(
                f,
                "{source}: unknown key {key:?} ignored (known keys: {})",
                KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ),
            ConfigWarning::BadValue { source, key, value, reason, using } => {
                write!(f, "{source}: {key} = {value}: {reason}; using {key} = {using}")
            }
            ConfigWarning::MissingValue { key } => write!(
                f,
                "kernel command line: {CMDLINE_PREFIX}{key} needs a value ({CMDLINE_PREFIX}{key}=...); ignored"
            ),
            ConfigWarning::TooLate { path, key } => write!(
                f,
                "{}: {key} is used before the image is mounted, so the file cannot change it for this \
                 boot; set {CMDLINE_PREFIX}{key}=... on the kernel command line instead",
                path.display()
            ),
        }
    }
}

/// How a key takes its value. The setter validates and either stores the value or
/// leaves the configuration untouched and says why.
enum Setter {
    Str(fn(&mut Config, &str) -> Result<(), String>),
    List(fn(&mut Config, Vec<String>) -> Result<(), String>),
    Bool(fn(&mut Config, bool)),
    Int(fn(&mut Config, u64) -> Result<(), String>),
}

/// One configuration key.
struct Key {
    /// Dotted name: `scratch.label` is `label` in `[scratch]` and `diskless.scratch.label=`.
    name: &'static str,
    set: Setter,
    /// The current value, for "using ..." in warnings.
    show: fn(&Config) -> String,
    /// Used by a stage that runs before the image (and so the file) is available.
    before_root: bool,
}

/// The configuration keys. Adding a key is adding a row.
const KEYS: &[Key] = &[
    Key {
        name: "dirs",
        set: Setter::List(|c, v| check_dirs(&v).map(|x| c.dirs = x)),
        show: |c| show_paths(&c.dirs),
        before_root: false,
    },
    Key {
        name: "localdir",
        set: Setter::Str(|c, v| check_localdir(v).map(|x| c.localdir = x)),
        show: |c| format!("{:?}", c.localdir),
        before_root: false,
    },
    Key {
        name: "layers",
        set: Setter::Str(|c, v| check_image_path(v).map(|x| c.layers = x)),
        show: |c| format!("{:?}", c.layers.display().to_string()),
        before_root: false,
    },
    Key {
        name: "mode",
        set: Setter::Str(|c, v| one_of(v, MODES).map(|x| c.mode = x)),
        show: |c| format!("{:?}", name_of(c.mode, MODES)),
        before_root: false,
    },
    Key {
        name: "tmpfs_size",
        set: Setter::Str(|c, v| parse_tmpfs_size(v).map(|x| c.tmpfs_size = x)),
        show: |c| format!("{:?}", c.tmpfs_size.to_string()),
        before_root: false,
    },
    Key {
        name: "scratch.fstypes",
        set: Setter::List(|c, v| check_fstypes(v).map(|x| c.scratch.fstypes = x)),
        show: |c| format!("{:?}", c.scratch.fstypes),
        before_root: false,
    },
    Key {
        name: "scratch.label",
        set: Setter::Str(|c, v| check_label(v).map(|x| c.scratch.label = x)),
        show: |c| format!("{:?}", c.scratch.label),
        before_root: false,
    },
    Key {
        name: "scratch.mountpoint",
        set: Setter::Str(|c, v| check_image_path(v).map(|x| c.scratch.mountpoint = x)),
        show: |c| format!("{:?}", c.scratch.mountpoint.display().to_string()),
        before_root: false,
    },
    Key {
        name: "scratch.wipe",
        set: Setter::Bool(|c, v| c.scratch.wipe = v),
        show: |c| c.scratch.wipe.to_string(),
        before_root: false,
    },
    Key {
        name: "scratch.swap",
        set: Setter::Bool(|c, v| c.scratch.swap = v),
        show: |c| c.scratch.swap.to_string(),
        before_root: false,
    },
    Key {
        name: "carrier_timeout",
        set: Setter::Int(|c, v| at_most(v, 3600, "seconds").map(|x| c.carrier_timeout = x)),
        show: |c| c.carrier_timeout.to_string(),
        before_root: true,
    },
    Key {
        name: "dhcp_timeout",
        set: Setter::Int(|c, v| at_most(v, 3600, "seconds").map(|x| c.dhcp_timeout = x)),
        show: |c| c.dhcp_timeout.to_string(),
        before_root: true,
    },
    Key {
        name: "settle_ms",
        set: Setter::Int(|c, v| at_most(v, 60_000, "milliseconds").map(|x| c.settle_ms = x)),
        show: |c| c.settle_ms.to_string(),
        before_root: true,
    },
    Key {
        name: "nfs_retry_timeout",
        set: Setter::Int(|c, v| at_most(v, 86_400, "seconds (0 = forever)").map(|x| c.nfs_retry_timeout = x)),
        show: |c| c.nfs_retry_timeout.to_string(),
        before_root: true,
    },
    Key {
        name: "on_failure",
        set: Setter::Str(|c, v| one_of(v, ON_FAILURE).map(|x| c.on_failure = x)),
        show: |c| format!("{:?}", name_of(c.on_failure, ON_FAILURE)),
        before_root: false,
    },
    Key {
        name: "reboot_delay",
        set: Setter::Int(|c, v| at_most(v, 3600, "seconds").map(|x| c.reboot_delay = x)),
        show: |c| c.reboot_delay.to_string(),
        before_root: false,
    },
];

const MODES: &[(&str, Mode)] = &[("symlink", Mode::Symlink), ("overlay", Mode::Overlay)];
const ON_FAILURE: &[(&str, OnFailure)] =
    &[("reboot", OnFailure::Reboot), ("shell", OnFailure::Shell), ("halt", OnFailure::Halt)];

/// Variables of the legacy `diskless.conf` and the key each one sets. Lists in the
/// legacy file are separated by white space (`DIRS="/etc /var"`).
const LEGACY_VARIABLES: &[(&str, &str)] = &[("DIRS", "dirs"), ("LOCALDIR", "localdir")];

/// Boolean spellings on the command line and in the legacy file, as the kernel's `kstrtobool`.
const TRUE_WORDS: &[&str] = &["1", "y", "yes", "true", "on"];
const FALSE_WORDS: &[&str] = &["0", "n", "no", "false", "off"];

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
                Err(w) => warnings.push(w),
            }
        }
        Err(w) => warnings.push(w),
    }
    warnings.extend(config.apply_cmdline(cmdline));
    (config, warnings)
}

/// The text of a configuration file; `None` when it does not exist.
fn read_config_file(path: &Path) -> Result<Option<String>, ConfigWarning> {
    let warn = |error: String| ConfigWarning::ReadFile { path: path.to_path_buf(), error };
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

/// A value before it meets its key.
enum Input<'a> {
    Toml(&'a toml::Value),
    /// Text from the command line or the legacy file, with the list separator of its origin.
    Text {
        text: &'a str,
        split: fn(&str) -> Vec<String>,
    },
}

impl Input<'_> {
    fn shown(&self) -> String {
        match self {
            Input::Toml(v) => v.to_string(),
            Input::Text { text, .. } => format!("{text:?}"),
        }
    }
}

fn split_commas(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

fn split_spaces(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
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
                        source: source.clone(),
                        key: dotted.clone(),
                        value: other.to_string(),
                        reason: format!("{dotted} is a section: write [{dotted}] and its keys below it"),
                        using: "the defaults of its keys".into(),
                    }),
                }
            } else {
                warnings.push(ConfigWarning::UnknownKey { source: source.clone(), key: dotted });
            }
        }
    }

    /// Applies the legacy shell-style file read from `path`.
    pub fn apply_legacy(&mut self, text: &str, path: &Path) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        self.file = Some(path.to_path_buf());
        let source = Source::File(path.to_path_buf());
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let (name, value) = match parse_legacy_line(raw) {
                Ok(Some(assignment)) => assignment,
                Ok(None) => continue,
                Err(reason) => {
                    warnings.push(ConfigWarning::ParseLegacyLine {
                        path: path.to_path_buf(),
                        line,
                        text: raw.trim().to_string(),
                        reason,
                    });
                    continue;
                }
            };
            let key = LEGACY_VARIABLES.iter().find(|(v, _)| *v == name).and_then(|(_, k)| find_key(k));
            match key {
                Some(key) => {
                    self.apply_key(key, Input::Text { text: &value, split: split_spaces }, &source, &mut warnings);
                }
                None => warnings.push(ConfigWarning::UnknownLegacyVariable { path: path.to_path_buf(), line, name }),
            }
        }
        warnings
    }

    /// Applies the `diskless.<key>=<value>` parameters among `cmdline`, in order (a later
    /// one wins). Lists are comma separated: `diskless.dirs=/etc,/var`.
    pub fn apply_cmdline<K: AsRef<str>, V: AsRef<str>>(&mut self, cmdline: &[(K, Option<V>)]) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        for (key, value) in cmdline {
            let Some(name) = key.as_ref().strip_prefix(CMDLINE_PREFIX) else { continue };
            let Some(key) = find_key(name) else {
                warnings.push(ConfigWarning::UnknownKey { source: Source::KernelCommandLine, key: name.to_string() });
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

    /// Converts and validates one value; on failure the key keeps its value and a
    /// warning says why. Returns whether the value was taken.
    fn apply_key(&mut self, key: &Key, input: Input<'_>, source: &Source, warnings: &mut Vec<ConfigWarning>) -> bool {
        let result = match &key.set {
            Setter::Str(set) => input_str(&input).and_then(|s| set(self, s)),
            Setter::List(set) => input_list(&input).and_then(|l| set(self, l)),
            Setter::Bool(set) => input_bool(&input).map(|b| set(self, b)),
            Setter::Int(set) => input_int(&input).and_then(|n| set(self, n)),
        };
        match result {
            Ok(()) => true,
            Err(reason) => {
                warnings.push(ConfigWarning::BadValue {
                    source: source.clone(),
                    key: key.name.to_string(),
                    value: input.shown(),
                    reason,
                    using: (key.show)(self),
                });
                false
            }
        }
    }
}

fn find_key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

fn is_section(name: &str) -> bool {
    KEYS.iter().any(|k| k.name.strip_prefix(name).is_some_and(|rest| rest.starts_with('.')))
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
}

fn toml_type(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

fn input_str<'a>(input: &Input<'a>) -> Result<&'a str, String> {
    match *input {
        Input::Toml(toml::Value::String(s)) => Ok(s),
        Input::Toml(other) => Err(format!("expected a string, found {}", toml_type(other))),
        Input::Text { text, .. } => Ok(text),
    }
}

fn input_list(input: &Input<'_>) -> Result<Vec<String>, String> {
    match *input {
        Input::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!("expected a list of strings, found {} in it", toml_type(other))),
            })
            .collect(),
        Input::Toml(other) => {
            Err(format!("expected a list of strings like [\"a\", \"b\"], found {}", toml_type(other)))
        }
        Input::Text { text, split } => Ok(split(text)),
    }
}

fn input_bool(input: &Input<'_>) -> Result<bool, String> {
    match *input {
        Input::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Input::Toml(other) => Err(format!("expected true or false, found {}", toml_type(other))),
        Input::Text { text, .. } => {
            let word = text.trim().to_ascii_lowercase();
            if TRUE_WORDS.contains(&word.as_str()) {
                Ok(true)
            } else if FALSE_WORDS.contains(&word.as_str()) {
                Ok(false)
            } else {
                Err(format!("not a boolean (one of {} or {})", TRUE_WORDS.join("/"), FALSE_WORDS.join("/")))
            }
        }
    }
}

fn input_int(input: &Input<'_>) -> Result<u64, String> {
    match *input {
        Input::Toml(toml::Value::Integer(n)) => u64::try_from(*n).map_err(|_| "must not be negative".to_string()),
        Input::Toml(other) => Err(format!("expected a whole number, found {}", toml_type(other))),
        Input::Text { text, .. } => {
            text.trim().parse::<u64>().map_err(|_| "not a whole number (digits only, no unit)".to_string())
        }
    }
}

fn at_most(value: u64, max: u64, unit: &str) -> Result<u64, String> {
    if value > max { Err(format!("more than {max} {unit}")) } else { Ok(value) }
}

fn one_of<T: Copy>(value: &str, table: &[(&str, T)]) -> Result<T, String> {
    table.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or_else(|| {
        format!("must be one of {}", table.iter().map(|(n, _)| format!("{n:?}")).collect::<Vec<_>>().join(", "))
    })
}

fn name_of<T: PartialEq>(value: T, table: &[(&'static str, T)]) -> &'static str {
    table.iter().find(|(_, v)| *v == value).map_or("?", |(n, _)| n)
}

fn show_paths(paths: &[PathBuf]) -> String {
    format!("{:?}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>())
}

/// An absolute path inside the image, normalised (`//` and `.` removed). `..` is
/// refused rather than resolved: it would let a value point outside what it names.
pub fn check_image_path(value: &str) -> Result<PathBuf, String> {
    if !value.starts_with('/') {
        return Err(format!("{value:?} is not an absolute path (it must start with /)"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{value:?} contains a control character"));
    }
    let mut path = PathBuf::from("/");
    for component in Path::new(value).components() {
        match component {
            Component::Normal(c) => path.push(c),
            Component::ParentDir => return Err(format!("{value:?} contains \"..\"")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(path)
}

/// Characters that separate mount options (`lowerdir=a,upperdir=b`, `a:b` lower lists)
/// and so cannot appear in a dir that becomes part of one.
const MOUNT_OPTION_SPECIALS: &[char] = &[',', ':', '\\'];

fn check_dirs(values: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut dirs: Vec<PathBuf> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let entry = |reason: String| format!("entry {} {value:?}: {reason}", i + 1);
        let dir = check_image_path(value).map_err(entry)?;
        if dir == Path::new("/") {
            return Err(entry("the root itself cannot be a local dir".into()));
        }
        if let Some(c) = value.chars().find(|c| MOUNT_OPTION_SPECIALS.contains(c) || c.is_whitespace()) {
            return Err(entry(format!("{c:?} cannot be used in a mount option")));
        }
        if dirs.contains(&dir) {
            return Err(entry(format!("{} is listed twice", dir.display())));
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// A single path component that is safe as a directory name on any filesystem.
fn check_localdir(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value == "." || value == ".." {
        return Err(format!("{value:?} is not a directory name"));
    }
    if value.len() > 255 {
        return Err("longer than 255 bytes".into());
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("{c:?} is not allowed: one directory name of letters, digits, '.', '_' and '-' (no '/')"));
    }
    Ok(value.to_string())
}

/// `N%` of RAM (1-100) or `N` bytes with an optional `k`, `m` or `g` suffix.
pub fn parse_tmpfs_size(value: &str) -> Result<TmpfsSize, String> {
    let bad = || format!("{value:?} is not a size: write N% (of RAM) or N, Nk, Nm, Ng");
    if let Some(number) = value.strip_suffix('%') {
        let p: u8 = digits(number).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        if !(1..=100).contains(&p) {
            return Err(format!("{value:?}: a share of RAM must be between 1% and 100%"));
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
        return Err(format!("{value:?}: a tmpfs of size 0 would hold nothing"));
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

fn check_fstypes(values: Vec<String>) -> Result<Vec<String>, String> {
    let mut seen: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(format!("{value:?} is not a filesystem type name (like ext4)"));
        }
        if seen.contains(&value) {
            return Err(format!("{value:?} is listed twice"));
        }
        seen.push(value);
    }
    Ok(seen)
}

fn check_label(value: &str) -> Result<String, String> {
    // The longest label of the scratch filesystems (btrfs) is 255 bytes.
    if value.len() > 255 {
        return Err("longer than 255 bytes, no filesystem has such a label".into());
    }
    if value.chars().any(char::is_control) {
        return Err("contains a control character".into());
    }
    Ok(value.to_string())
}

/// One line of the legacy file: `None` for blank and comment lines, else the variable
/// and its value with shell quoting removed. Only what the old scripts' files use is
/// understood; anything that would need a shell to evaluate is refused.
fn parse_legacy_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = match line.strip_prefix("export") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_whitespace()) => rest.trim_start(),
        _ => line,
    };
    let Some((name, value)) = line.split_once('=') else {
        return Err("not a VAR=value assignment".into());
    };
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!("{name:?} is not a shell variable name"));
    }
    Ok(Some((name.to_string(), shell_word(value)?)))
}

/// The value of a shell word: `'...'` literal, `"..."` with `\"`, `\\`, `\$` and
/// `` \` `` escapes, `\x` outside quotes; a `#` after white space starts a comment.
fn shell_word(text: &str) -> Result<String, String> {
    let substitution = || "variable or command substitution ($, `) is not supported: write the value out".to_string();
    let mut value = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated single quote".into()),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '\\' | '$' | '`')) => value.push(c),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                        None => return Err("unterminated double quote".into()),
                    },
                    Some('$' | '`') => return Err(substitution()),
                    Some(c) => value.push(c),
                    None => return Err("unterminated double quote".into()),
                }
            },
            '\\' => match chars.next() {
                Some(c) => value.push(c),
                None => return Err("line continuation (trailing \\) is not supported".into()),
            },
            '$' | '`' => return Err(substitution()),
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                return Err(format!("shell syntax {c:?} is not supported: only VAR=value"));
            }
            c if c.is_whitespace() => {
                let rest = chars.as_str().trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err("unquoted white space in the value: put the value in quotes".into());
            }
            c => value.push(c),
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect()
    }

    fn toml(text: &str) -> (Config, Vec<ConfigWarning>) {
        let mut c = Config::default();
        let w = c.apply_toml(text, Path::new("/img/etc/diskless/diskless.toml"));
        (c, w)
    }

    fn legacy(text: &str) -> (Config, Vec<ConfigWarning>) {
        let mut c = Config::default();
        let w = c.apply_legacy(text, Path::new("/img/etc/diskless/diskless.conf"));
        (c, w)
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
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
        let w = serde_json::to_value(ConfigWarning::UnknownKey { source: Source::KernelCommandLine, key: "x".into() })
            .unwrap();
        assert_eq!(w["kind"], "unknown_key");
        assert_eq!(w["source"], "kernel_command_line");
    }

    #[test]
    fn every_key_of_the_table_is_reachable_from_toml_and_shows_its_default() {
        for key in KEYS {
            assert!(!(key.show)(&Config::default()).is_empty(), "{}", key.name);
            assert!(find_key(key.name).is_some());
        }
        assert!(is_section("scratch"));
        assert!(!is_section("dirs"));
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
                ConfigWarning::UnknownKey { key, source: Source::File(_) } => key.as_str(),
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
    fn dirs_must_be_absolute() {
        assert!(check_dirs(&["/etc".into(), "var".into()]).unwrap_err().contains("entry 2 \"var\""));
    }

    #[test]
    fn dirs_must_not_contain_dot_dot() {
        assert!(check_dirs(&["/etc/../root".into()]).unwrap_err().contains(".."));
    }

    #[test]
    fn dirs_must_not_repeat_after_normalisation() {
        assert!(check_dirs(&["/etc".into(), "/etc/".into()]).unwrap_err().contains("listed twice"));
        assert!(check_dirs(&["/var".into(), "//var/./".into()]).unwrap_err().contains("listed twice"));
    }

    #[test]
    fn dirs_refuse_root_and_mount_option_separators() {
        assert!(check_dirs(&["/".into()]).unwrap_err().contains("root itself"));
        assert!(check_dirs(&["/a,b".into()]).unwrap_err().contains("mount option"));
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
    fn mode_is_one_of_two() {
        let (c, w) = toml("mode = \"overlay\"");
        assert_eq!((c.mode, w.len()), (Mode::Overlay, 0));
        let (c, w) = toml("mode = \"unionfs\"");
        assert_eq!(c.mode, Mode::Symlink);
        assert!(w[0].to_string().contains("must be one of \"symlink\", \"overlay\""));
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
    fn tmpfs_size_displays_as_written() {
        assert_eq!(TmpfsSize::Bytes(512 << 20).to_string(), "512M");
        assert_eq!(TmpfsSize::Bytes(1000).to_string(), "1000");
        assert_eq!(TmpfsSize::Percent(25).mount_option(), "25%");
        assert_eq!(TmpfsSize::Bytes(2048).mount_option(), "2048");
    }

    #[test]
    fn layers_and_mountpoint_must_be_absolute_without_dot_dot() {
        assert_eq!(check_image_path("/diskless/"), Ok(PathBuf::from("/diskless")));
        assert!(check_image_path("diskless").is_err());
        assert!(check_image_path("/a/../b").is_err());
        assert!(check_image_path("/a\nb").is_err());
        let (c, w) = toml("layers = \"srv\"\n[scratch]\nmountpoint = \"/mnt/../x\"\n");
        assert_eq!(
            (c.layers.as_path(), c.scratch.mountpoint.as_path()),
            (Path::new("/diskless"), Path::new("/mnt/scratch"))
        );
        assert_eq!(w.len(), 2);
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
        assert!(matches!(&w[1], ConfigWarning::UnknownKey { source: Source::KernelCommandLine, key } if key == "nope"));
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

    #[test]
    fn legacy_file_sets_dirs_and_localdir() {
        let (c, w) =
            legacy("# diskless settings\n\nDIRS=\"/etc /var /srv\"   # the writable dirs\nexport LOCALDIR='site'\n");
        assert_eq!(w, []);
        assert_eq!(c.dirs, paths(&["/etc", "/var", "/srv"]));
        assert_eq!(c.localdir, "site");
        assert_eq!(c.file.as_deref(), Some(Path::new("/img/etc/diskless/diskless.conf")));
    }

    #[test]
    fn legacy_unquoted_and_escaped_values() {
        let (c, w) = legacy("LOCALDIR=lo\\cal\nDIRS=/etc\n");
        assert_eq!(w, []);
        assert_eq!(c.localdir, "local");
        assert_eq!(c.dirs, paths(&["/etc"]));
        assert_eq!(shell_word(r#""a\"b\\c\n""#), Ok("a\"b\\c\\n".into()));
        assert_eq!(shell_word("'a'\"b\"c"), Ok("abc".into()));
    }

    #[test]
    fn legacy_unknown_variables_are_warned_with_their_line() {
        let (c, w) = legacy("DIRS=\"/etc\"\nNFSROOT=server:/x\n");
        assert_eq!(c.dirs, paths(&["/etc"]));
        assert!(matches!(&w[..], [ConfigWarning::UnknownLegacyVariable { line: 2, name, .. }] if name == "NFSROOT"));
        assert!(w[0].to_string().contains("line 2: unknown variable NFSROOT"));
    }

    #[test]
    fn legacy_shell_constructs_are_refused_per_line() {
        let (c, w) = legacy(
            "DIRS=\"$HOME\"\nLOCALDIR='x\nDIRS=/etc /var\necho hi\n1X=2\nDIRS=`pwd`\nLOCALDIR=a;b\nLOCALDIR=\"ok\"\n",
        );
        assert_eq!(c.localdir, "ok");
        assert_eq!(c.dirs, Config::default().dirs);
        let lines: Vec<usize> = w
            .iter()
            .map(|w| match w {
                ConfigWarning::ParseLegacyLine { line, .. } => *line,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn legacy_bad_value_is_a_bad_value() {
        let (c, w) = legacy("LOCALDIR=\"a/b\"\n");
        assert_eq!(c.localdir, "local");
        assert!(matches!(&w[..], [ConfigWarning::BadValue { key, .. }] if key == "localdir"));
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
