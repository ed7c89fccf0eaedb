//! The configuration keys: one row per key, with how to set it (and its validation)
//! and how to show it. The TOML file, the legacy file, the command line and
//! `diskless check` all go through this table.

use std::path::PathBuf;

use super::validate::{
    ValueError, at_most, check_dirs, check_fstypes, check_image_path, check_ipv4_list, check_label, check_localdir,
    one_of, parse_tmpfs_size,
};
use super::{Config, ConfigWarning, Mode, OnFailure, Source};

/// How a key takes its value. The setter validates and either stores the value or
/// leaves the configuration untouched and says why.
pub(super) enum Setter {
    Str(fn(&mut Config, &str) -> Result<(), ValueError>),
    List(fn(&mut Config, Vec<String>) -> Result<(), ValueError>),
    Bool(fn(&mut Config, bool)),
    Int(fn(&mut Config, u64) -> Result<(), ValueError>),
}

/// One configuration key.
pub(super) struct Key {
    /// Dotted name: `scratch.label` is `label` in `[scratch]` and `diskless.scratch.label=`.
    pub(super) name: &'static str,
    pub(super) set: Setter,
    /// The current value in TOML syntax, for "using ..." in warnings and `diskless check`.
    pub(super) show: fn(&Config) -> String,
    /// Used by a stage that runs before the image (and so the file) is available.
    pub(super) before_root: bool,
}

/// The configuration keys. Adding a key is adding a row. The order is the order of
/// `diskless check`, which prints a TOML file: keys of the top level before the
/// sections.
pub(super) const KEYS: &[Key] = &[
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
        name: "dhcp_server",
        set: Setter::List(|c, v| check_ipv4_list(v).map(|x| c.dhcp_server = x)),
        show: |c| format!("{:?}", c.dhcp_server.iter().map(ToString::to_string).collect::<Vec<_>>()),
        before_root: true,
    },
    Key {
        name: "syslog",
        set: Setter::Str(|c, v| v.parse().map(|x| c.syslog = x).map_err(ValueError::Syslog)),
        show: |c| format!("{:?}", c.syslog.to_string()),
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
        name: "nfs_server_timeout",
        set: Setter::Int(|c, v| at_most(v, 300, "seconds").map(|x| c.nfs_server_timeout = x)),
        show: |c| c.nfs_server_timeout.to_string(),
        before_root: true,
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
        name: "scratch.cache",
        set: Setter::Bool(|c, v| c.scratch.cache = v),
        show: |c| c.scratch.cache.to_string(),
        before_root: false,
    },
];

const MODES: &[(&str, Mode)] = &[("symlink", Mode::Symlink), ("overlay", Mode::Overlay)];
const ON_FAILURE: &[(&str, OnFailure)] =
    &[("reboot", OnFailure::Reboot), ("shell", OnFailure::Shell), ("halt", OnFailure::Halt)];

/// Boolean spellings on the command line and in the legacy file, as the kernel's `kstrtobool`.
pub(super) const TRUE_WORDS: &[&str] = &["1", "y", "yes", "true", "on"];
pub(super) const FALSE_WORDS: &[&str] = &["0", "n", "no", "false", "off"];

/// Every key (dotted name) with the value `config` has for it, in TOML syntax, in
/// table order.
pub fn rendered(config: &Config) -> Vec<(&'static str, String)> {
    KEYS.iter().map(|k| (k.name, (k.show)(config))).collect()
}

/// The names of all keys, for "known keys" in warnings.
pub(super) fn names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.name)
}

pub(super) fn find_key(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// Whether `name` is a section of the table (`scratch`).
pub(super) fn is_section(name: &str) -> bool {
    KEYS.iter().any(|k| k.name.strip_prefix(name).is_some_and(|rest| rest.starts_with('.')))
}

fn name_of<T: PartialEq>(value: T, table: &[(&'static str, T)]) -> &'static str {
    table.iter().find(|(_, v)| *v == value).map_or("?", |(n, _)| n)
}

fn show_paths(paths: &[PathBuf]) -> String {
    format!("{:?}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>())
}

/// A value before it meets its key.
pub(super) enum Input<'a> {
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

pub(super) fn toml_type(v: &toml::Value) -> &'static str {
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

fn input_str<'a>(input: &Input<'a>) -> Result<&'a str, ValueError> {
    match *input {
        Input::Toml(toml::Value::String(s)) => Ok(s),
        Input::Toml(other) => Err(ValueError::WrongType { expected: "a string", found: toml_type(other) }),
        Input::Text { text, .. } => Ok(text),
    }
}

fn input_list(input: &Input<'_>) -> Result<Vec<String>, ValueError> {
    match *input {
        Input::Toml(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(ValueError::WrongItemType { found: toml_type(other) }),
            })
            .collect(),
        Input::Toml(other) => {
            Err(ValueError::WrongType { expected: "a list of strings like [\"a\", \"b\"]", found: toml_type(other) })
        }
        Input::Text { text, split } => Ok(split(text)),
    }
}

fn input_bool(input: &Input<'_>) -> Result<bool, ValueError> {
    match *input {
        Input::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Input::Toml(other) => Err(ValueError::WrongType { expected: "true or false", found: toml_type(other) }),
        Input::Text { text, .. } => {
            let word = text.trim().to_ascii_lowercase();
            if TRUE_WORDS.contains(&word.as_str()) {
                Ok(true)
            } else if FALSE_WORDS.contains(&word.as_str()) {
                Ok(false)
            } else {
                Err(ValueError::NotABoolean { value: text.into() })
            }
        }
    }
}

fn input_int(input: &Input<'_>) -> Result<u64, ValueError> {
    match *input {
        Input::Toml(toml::Value::Integer(n)) => u64::try_from(*n).map_err(|_| ValueError::Negative { value: *n }),
        Input::Toml(other) => Err(ValueError::WrongType { expected: "a whole number", found: toml_type(other) }),
        Input::Text { text, .. } => {
            text.trim().parse::<u64>().map_err(|_| ValueError::NotAWholeNumber { value: text.into() })
        }
    }
}

impl Config {
    /// Converts and validates one value; on failure the key keeps its value and a
    /// warning says why. Returns whether the value was taken.
    pub(super) fn apply_key(
        &mut self,
        key: &Key,
        input: Input<'_>,
        source: &Source,
        warnings: &mut Vec<ConfigWarning>,
    ) -> bool {
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
                    origin: source.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_top_level_keys_come_before_the_sections() {
        // `diskless check` prints the table in order as a TOML file, where a key after
        // a [section] header would belong to that section.
        let first_in_section = KEYS.iter().position(|k| k.name.contains('.')).unwrap_or(KEYS.len());
        assert!(KEYS[first_in_section..].iter().all(|k| k.name.contains('.')));
    }

    #[test]
    fn rendered_shows_every_key_in_table_order() {
        let shown = rendered(&Config::default());
        assert_eq!(shown.len(), KEYS.len());
        assert_eq!(shown[0], ("dirs", "[\"/etc\", \"/var\"]".to_string()));
        assert!(shown.contains(&("scratch.swap", "true".to_string())));
    }
}
