//! Which layers apply to this machine, in which order (DESIGN §5).
//!
//! Names that come from the network (the host name from reverse DNS or DHCP) become
//! path components here, so they are checked against RFC 1123 first: a PTR record
//! saying `../../etc` must not pick a directory outside the layer root.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};

use super::image::open_in_image;
use crate::config::Config;

/// What the network told us about this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerInput {
    /// Broadcast address of the leased subnet.
    pub broadcast: Ipv4Addr,
    /// Leased address.
    pub address: Ipv4Addr,
    /// Host name; a domain, if any, is dropped (`lab3-12.example.org` -> `lab3-12`).
    pub hostname: String,
}

/// The kinds of layer, in the order they are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Base,
    Network,
    Lab,
    Host,
    Ip,
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayerKind::Base => "base",
            LayerKind::Network => "network",
            LayerKind::Lab => "lab",
            LayerKind::Host => "host",
            LayerKind::Ip => "ip",
        })
    }
}

/// A layer that exists and will be copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    pub kind: LayerKind,
    /// Path inside the image, e.g. `/diskless/hosts/lab3-12`.
    pub path: PathBuf,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind, self.path.display())
    }
}

/// Why a layer is not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SkipReason {
    /// No such directory in the image: the usual case for most layers.
    Missing,
    /// The path exists but is not a directory.
    NotADirectory,
    /// The directory exists but cannot be opened.
    Unreadable { error: String },
    /// The name from the network cannot be a path component.
    InvalidName { name: String, reason: HostNameError },
    /// The host name has no `-`, so there is no lab prefix.
    NoLabPrefix { hostname: String },
}

/// A layer that is not used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedLayer {
    pub kind: LayerKind,
    /// Path inside the image, when one could be formed.
    pub path: Option<PathBuf>,
    #[serde(flatten)]
    pub reason: SkipReason,
}

impl fmt::Display for SkippedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer {}", self.kind)?;
        if let Some(path) = &self.path {
            write!(f, " ({})", path.display())?;
        }
        match &self.reason {
            SkipReason::Missing => write!(f, " missing, skipped"),
            SkipReason::NotADirectory => write!(f, " is not a directory, skipped (make it one in the image)"),
            SkipReason::Unreadable { error } => {
                write!(f, " cannot be opened ({error}), skipped (check its permissions on the server)")
            }
            SkipReason::InvalidName { name, reason } => write!(f, " skipped: name {name:?} from the network {reason}"),
            SkipReason::NoLabPrefix { hostname } => {
                write!(f, " skipped: host name {hostname:?} has no '-', so no lab prefix")
            }
        }
    }
}

/// The layers of this machine, in application order, and the ones skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LayerSelection {
    pub layers: Vec<Layer>,
    pub skipped: Vec<SkippedLayer>,
}

impl LayerKind {
    /// Every kind, in the order the layers are applied.
    pub const ALL: [LayerKind; 5] =
        [LayerKind::Base, LayerKind::Network, LayerKind::Lab, LayerKind::Host, LayerKind::Ip];

    /// Where layers of this kind live below the layer root: the base layer is the
    /// directory `base`; the others are one directory per network, lab or host in
    /// their group (`networks`, `labs`, `hosts`; IP layers share `hosts`).
    pub const fn dir(self) -> &'static str {
        match self {
            LayerKind::Base => "base",
            LayerKind::Network => "networks",
            LayerKind::Lab => "labs",
            LayerKind::Host | LayerKind::Ip => "hosts",
        }
    }
}

/// The path of a layer below the layer root, or why there is none.
type LayerName = fn(&LayerInput) -> Result<String, SkipReason>;

/// The layers in application order: later rows override earlier ones.
const LAYER_TABLE: &[(LayerKind, LayerName)] = &[
    (LayerKind::Base, |_| Ok(LayerKind::Base.dir().into())),
    (LayerKind::Network, |i| Ok(format!("{}/{}", LayerKind::Network.dir(), i.broadcast))),
    (LayerKind::Lab, |i| {
        let host = short_name(&i.hostname)?;
        match host.split_once('-') {
            Some((prefix, _)) => Ok(format!("{}/{prefix}", LayerKind::Lab.dir())),
            None => Err(SkipReason::NoLabPrefix { hostname: host }),
        }
    }),
    (LayerKind::Host, |i| Ok(format!("{}/{}", LayerKind::Host.dir(), short_name(&i.hostname)?))),
    (LayerKind::Ip, |i| Ok(format!("{}/{}", LayerKind::Ip.dir(), i.address))),
];

/// The host name without domain, lower case (DNS names are case-insensitive, the
/// layer directories are not), after checking the whole name against RFC 1123.
fn short_name(hostname: &str) -> Result<String, SkipReason> {
    check_host_name(hostname).map_err(|reason| SkipReason::InvalidName { name: hostname.to_string(), reason })?;
    let short = hostname.split('.').next().unwrap_or(hostname);
    Ok(short.to_ascii_lowercase())
}

/// Why a name from the network cannot be a host name (RFC 1123), and so a path component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostNameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 253 bytes")]
    TooLong,
    #[error("has an empty label (\"..\" or a leading dot)")]
    EmptyLabel,
    #[error("has a label longer than 63 bytes")]
    LabelTooLong,
    #[error("contains {character:?}, which is not a letter, digit or '-'")]
    Character { character: char },
    #[error("has a label that starts or ends with '-'")]
    HyphenAtLabelEnd,
}

/// `diskless plan` shows the reason as the text the console would.
impl Serialize for HostNameError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Checks a host name (RFC 1123): dot-separated labels of 1-63 letters, digits and
/// `-`, not starting or ending with `-`, 253 bytes at most. That excludes `/`, `..`,
/// the empty name and everything else that could make a path climb or break.
pub fn check_host_name(name: &str) -> Result<(), HostNameError> {
    if name.is_empty() {
        return Err(HostNameError::Empty);
    }
    if name.len() > 253 {
        return Err(HostNameError::TooLong);
    }
    for label in name.strip_suffix('.').unwrap_or(name).split('.') {
        if label.is_empty() {
            return Err(HostNameError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(HostNameError::LabelTooLong);
        }
        if let Some(character) = label.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-')) {
            return Err(HostNameError::Character { character });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostNameError::HyphenAtLabelEnd);
        }
    }
    Ok(())
}

/// Picks the layers of this machine from the image mounted at `image_root`, in the
/// order of DESIGN §5. Symlinks in the image (a host directory pointing at a shared
/// one) are followed inside the image.
pub fn select_layers(config: &Config, image_root: &Path, input: &LayerInput) -> LayerSelection {
    let mut selection = LayerSelection::default();
    for (kind, name) in LAYER_TABLE {
        let kind = *kind;
        let path = match name(input) {
            Ok(relative) => config.layers.join(relative),
            Err(reason) => {
                selection.skipped.push(SkippedLayer { kind, path: None, reason });
                continue;
            }
        };
        match open_in_image(image_root, &path, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => selection.layers.push(Layer { kind, path }),
            Err(e) => {
                let reason = match e.kind() {
                    io::ErrorKind::NotFound => SkipReason::Missing,
                    io::ErrorKind::NotADirectory => SkipReason::NotADirectory,
                    _ => SkipReason::Unreadable { error: e.to_string() },
                };
                selection.skipped.push(SkippedLayer { kind, path: Some(path), reason });
            }
        }
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn input(hostname: &str) -> LayerInput {
        LayerInput {
            broadcast: Ipv4Addr::new(192, 168, 1, 255),
            address: Ipv4Addr::new(192, 168, 1, 23),
            hostname: hostname.into(),
        }
    }

    fn image_with(dirs: &[&str]) -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        for d in dirs {
            fs::create_dir_all(img.path().join("diskless").join(d)).unwrap();
        }
        img
    }

    fn chosen(sel: &LayerSelection) -> Vec<(LayerKind, String)> {
        sel.layers.iter().map(|l| (l.kind, l.path.display().to_string())).collect()
    }

    #[test]
    fn all_layers_exist_in_design_order() {
        let img = image_with(&["base", "networks/192.168.1.255", "labs/lab3", "hosts/lab3-12", "hosts/192.168.1.23"]);
        let sel = select_layers(&Config::default(), img.path(), &input("lab3-12.example.org"));
        assert_eq!(
            chosen(&sel),
            [
                (LayerKind::Base, "/diskless/base".into()),
                (LayerKind::Network, "/diskless/networks/192.168.1.255".into()),
                (LayerKind::Lab, "/diskless/labs/lab3".into()),
                (LayerKind::Host, "/diskless/hosts/lab3-12".into()),
                (LayerKind::Ip, "/diskless/hosts/192.168.1.23".into()),
            ]
        );
        assert_eq!(sel.skipped, []);
    }

    #[test]
    fn missing_layers_are_listed_with_their_path() {
        let img = image_with(&["base"]);
        let sel = select_layers(&Config::default(), img.path(), &input("lab3-12"));
        assert_eq!(chosen(&sel), [(LayerKind::Base, "/diskless/base".into())]);
        let lines: Vec<String> = sel.skipped.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[2], "layer host (/diskless/hosts/lab3-12) missing, skipped");
    }

    #[test]
    fn a_file_where_a_layer_should_be_is_not_a_directory() {
        let img = image_with(&["hosts"]);
        fs::write(img.path().join("diskless/hosts/lab3-12"), "oops").unwrap();
        let sel = select_layers(&Config::default(), img.path(), &input("lab3-12"));
        let host = sel.skipped.iter().find(|s| s.kind == LayerKind::Host).unwrap();
        assert_eq!(host.reason, SkipReason::NotADirectory);
    }

    #[test]
    fn host_name_without_dash_has_no_lab_layer() {
        let img = image_with(&["labs/lab3", "hosts/printer"]);
        let sel = select_layers(&Config::default(), img.path(), &input("printer"));
        assert_eq!(chosen(&sel), [(LayerKind::Host, "/diskless/hosts/printer".into())]);
        assert!(sel.skipped.iter().any(|s| s.kind == LayerKind::Lab
            && matches!(&s.reason, SkipReason::NoLabPrefix { hostname } if hostname == "printer")));
    }

    #[test]
    fn lab_prefix_is_the_part_before_the_first_dash() {
        let img = image_with(&["labs/lab3"]);
        let sel = select_layers(&Config::default(), img.path(), &input("LAB3-12-b"));
        assert_eq!(chosen(&sel), [(LayerKind::Lab, "/diskless/labs/lab3".into())]);
    }

    #[test]
    fn hostile_host_names_skip_their_layers_but_not_the_others() {
        let img = image_with(&["base", "hosts/192.168.1.23"]);
        fs::create_dir_all(img.path().join("etc")).unwrap();
        for name in ["", "..", "../../etc", "a/b", "lab3_12", "-lab", "lab-", "a..b", "\u{e9}cole-1", &"x".repeat(64)] {
            let sel = select_layers(&Config::default(), img.path(), &input(name));
            assert_eq!(
                chosen(&sel),
                [(LayerKind::Base, "/diskless/base".into()), (LayerKind::Ip, "/diskless/hosts/192.168.1.23".into())],
                "{name:?}"
            );
            let invalid = sel.skipped.iter().filter(|s| matches!(s.reason, SkipReason::InvalidName { .. })).count();
            assert_eq!(invalid, 2, "{name:?}: lab and host must both be refused");
        }
    }

    #[test]
    fn host_layer_may_be_a_symlink_inside_the_image() {
        let img = image_with(&["hosts/shared"]);
        std::os::unix::fs::symlink("/diskless/hosts/shared", img.path().join("diskless/hosts/lab3-12")).unwrap();
        let sel = select_layers(&Config::default(), img.path(), &input("lab3-12"));
        assert!(chosen(&sel).contains(&(LayerKind::Host, "/diskless/hosts/lab3-12".into())));
    }

    #[test]
    fn layer_root_comes_from_the_config() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("srv/layers/base")).unwrap();
        let config = Config { layers: PathBuf::from("/srv/layers"), ..Config::default() };
        let sel = select_layers(&config, img.path(), &input("x"));
        assert_eq!(chosen(&sel), [(LayerKind::Base, "/srv/layers/base".into())]);
    }

    #[test]
    fn host_name_rules() {
        for good in ["a", "lab3-12", "lab3-12.example.org", "lab3-12.example.org.", "1x"] {
            assert_eq!(check_host_name(good), Ok(()), "{good:?}");
        }
        for bad in ["", ".", "..", "a..b", ".a", "a/b", "a b", "a_b", "-a", "a-", &"a".repeat(254)] {
            assert!(check_host_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_host_name_yields_paths_inside_the_layer_root(name in any::<String>()) {
                for (_, layer_name) in LAYER_TABLE {
                    if let Ok(relative) = layer_name(&input(&name)) {
                        let path = Path::new("/diskless").join(&relative);
                        prop_assert!(path.starts_with("/diskless"));
                        prop_assert!((3..=4).contains(&path.components().count()), "{}", relative);
                        prop_assert!(!relative.contains(".."));
                    }
                }
            }
        }
    }
}
