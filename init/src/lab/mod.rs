//! The lab file and the server it describes: `diskless server render` writes every
//! server file (DHCP, DNS, TFTP tree, NFS exports) from one `lab.toml`, `diskless server
//! check` proves the files on disk agree with it, `diskless server kernel` switches
//! an image's kernel. The schema is in [`schema`].

pub mod check;
pub mod kernel;
pub mod live;
pub mod render;
pub mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use schema::{Firmware, Image, LabFile, MacAddr, Subnet};

/// The lab file cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot read the lab file {}: {source}; give its path with --lab", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}see the schema in docs/lab.example.toml", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

/// A lab file that parses but describes an impossible lab. Each names the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{kind} \"{name}\" is defined twice; give each {kind} its own name")]
    DuplicateName { kind: &'static str, name: String },
    #[error("host \"{name}\": name is not a DNS label; use letters, digits and '-' (at most 63), e.g. lab3-12")]
    BadHostName { name: String },
    #[error("host \"{host}\": mac {mac} is also host \"{other}\"'s; give each machine its own MAC")]
    DuplicateMac { host: String, other: String, mac: MacAddr },
    #[error("host \"{host}\": address {address} is also {other}'s; give each machine its own address")]
    DuplicateAddress { host: String, other: String, address: Ipv4Addr },
    #[error(
        "host \"{host}\": address {address} is in no [[subnet]]; give an address inside one of {subnets}, or add the subnet"
    )]
    OutsideSubnets { host: String, address: Ipv4Addr, subnets: String },
    #[error(
        "host \"{host}\": address {address} is inside subnet {subnet}'s dynamic range {start}-{end}; \
         give a fixed address outside it, or shrink dynamic"
    )]
    InDynamicRange { host: String, address: Ipv4Addr, subnet: String, start: Ipv4Addr, end: Ipv4Addr },
    #[error("{key} = \"{image}\": no [[image]] has that name; use one of {known}")]
    UnknownImage { key: String, image: String, known: String },
    #[error("host \"{host}\": group = \"{group}\": no [[group]] has that name; use one of {known}")]
    UnknownGroup { host: String, group: String, known: String },
    #[error("host \"{host}\": no image; give image = \"NAME\" on the host or on its group")]
    NoImage { host: String },
    #[error(
        "subnet {subnet}: dynamic = [\"{start}\", \"{end}\"] is not an ascending range inside the subnet; \
         give two addresses of it, lowest first"
    )]
    BadDynamicRange { subnet: String, start: Ipv4Addr, end: Ipv4Addr },
    #[error("subnet {subnet}: {key} {address} is outside the subnet; give an address inside it")]
    SubnetAddress { subnet: String, key: &'static str, address: Ipv4Addr },
    #[error("server.address {address} is in no [[subnet]]; add the subnet the server serves")]
    ServerOutsideSubnets { address: Ipv4Addr },
    #[error("peer.address {address} is in no [[subnet]]; give the peer an address in the subnet it serves")]
    PeerOutsideSubnets { address: Ipv4Addr },
    #[error("image \"{image}\": nfs_servers lists {server} twice; list each server holding the export once")]
    DuplicateNfsServer { image: String, server: Ipv4Addr },
    #[error("image \"{image}\": export = \"{}\" is not an absolute path; give the directory the NFS server exports", .export.display())]
    RelativeExport { image: String, export: PathBuf },
    #[error(
        "image \"{image}\": name must be one path component (letters, digits, '-', '_', '.'); it names tftproot/{image}/"
    )]
    BadImageName { image: String },
    #[error("image \"{image}\": firmware is empty; give [\"bios\"], [\"uefi\"] or both")]
    NoFirmware { image: String },
    #[error(
        "image \"{image}\": firmware \"{}\" and \"{}\" are clients of different processors ({}, {}); one \
         image boots one kernel: give each architecture an image of its own",
        first.name(),
        second.name(),
        first.cpu(),
        second.cpu()
    )]
    MixedArchitectures { image: String, first: Firmware, second: Firmware },
    #[error(
        "image \"{image}\": secure_boot = true but firmware does not include \"uefi\"; Secure Boot is a UEFI \
         feature: add \"uefi\" to firmware, or drop secure_boot"
    )]
    SecureBootWithoutUefi { image: String },
}

/// A host with its group's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    pub name: String,
    pub mac: MacAddr,
    pub address: Ipv4Addr,
    pub image: String,
    /// Extra kernel parameters (the host's, else its group's), after the image's.
    pub params: String,
    /// Index into [`LabFile::subnets`].
    pub subnet: usize,
}

/// A lab file that parsed; [`Lab::problems`] says whether it is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lab {
    pub file: LabFile,
    /// Hosts by name (sorted), with their defaults applied; hosts with problems that
    /// make them unusable (no image, no subnet) are left out.
    pub hosts: Vec<LabHost>,
    pub problems: Vec<Problem>,
}

impl Lab {
    /// Reads and checks the lab file at `path`.
    pub fn load(path: &Path) -> Result<Lab, LabError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::Read { path: path.into(), source })?;
        Lab::parse(&text).map_err(|source| LabError::Parse { path: path.into(), source })
    }

    /// Parses and checks lab file text.
    pub fn parse(text: &str) -> Result<Lab, toml::de::Error> {
        Ok(Lab::new(toml::from_str(text)?))
    }

    /// Applies the group defaults and collects every problem of `file`.
    pub fn new(file: LabFile) -> Lab {
        let mut problems = Vec::new();
        let images: BTreeMap<&str, &Image> = file.images.iter().map(|i| (i.name.as_str(), i)).collect();
        let known_images = names(file.images.iter().map(|i| &i.name));
        let groups: BTreeMap<&str, &schema::Group> = file.groups.iter().map(|g| (g.name.as_str(), g)).collect();
        for (kind, list) in [
            ("image", file.images.iter().map(|i| &i.name).collect::<Vec<_>>()),
            ("group", file.groups.iter().map(|g| &g.name).collect()),
            ("host", file.hosts.iter().map(|h| &h.name).collect()),
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for name in list {
                if !seen.insert(name) {
                    problems.push(Problem::DuplicateName { kind, name: name.clone() });
                }
            }
        }
        for image in &file.images {
            if !is_path_component(&image.name) {
                problems.push(Problem::BadImageName { image: image.name.clone() });
            }
            if !image.export.is_absolute() {
                problems.push(Problem::RelativeExport { image: image.name.clone(), export: image.export.clone() });
            }
            let mixed = image.firmware.iter().find(|f| f.cpu() != image.firmware[0].cpu());
            if image.firmware.is_empty() {
                problems.push(Problem::NoFirmware { image: image.name.clone() });
            } else if let Some(&second) = mixed {
                let first = image.firmware[0];
                problems.push(Problem::MixedArchitectures { image: image.name.clone(), first, second });
            } else if image.secure_boot && !Lab::serves(image, Firmware::Uefi) {
                problems.push(Problem::SecureBootWithoutUefi { image: image.name.clone() });
            }
        }
        let server = file.server.address.0;
        if !file.subnets.iter().any(|s| s.network.contains(server)) {
            problems.push(Problem::ServerOutsideSubnets { address: server });
        }
        if let Some(peer) = &file.peer
            && !file.subnets.iter().any(|s| s.network.contains(peer.address.0))
        {
            problems.push(Problem::PeerOutsideSubnets { address: peer.address.0 });
        }
        for image in &file.images {
            let mut seen = std::collections::BTreeSet::new();
            for server in &image.nfs_servers {
                if !seen.insert(server.0) {
                    problems.push(Problem::DuplicateNfsServer { image: image.name.clone(), server: server.0 });
                }
            }
        }
        for subnet in &file.subnets {
            let label = subnet.network.to_string();
            if let Some([start, end]) = subnet.dynamic
                && (start.0 > end.0 || !subnet.network.contains(start.0) || !subnet.network.contains(end.0))
            {
                problems.push(Problem::BadDynamicRange { subnet: label.clone(), start: start.0, end: end.0 });
            }
            if let Some(router) = subnet.router
                && !subnet.network.contains(router.0)
            {
                problems.push(Problem::SubnetAddress { subnet: label.clone(), key: "router", address: router.0 });
            }
            if let Some(image) = &subnet.image
                && !images.contains_key(image.as_str())
            {
                problems.push(Problem::UnknownImage {
                    key: format!("subnet {label}: image"),
                    image: image.clone(),
                    known: known_images.clone(),
                });
            }
        }
        for group in &file.groups {
            if let Some(image) = &group.image
                && !images.contains_key(image.as_str())
            {
                problems.push(Problem::UnknownImage {
                    key: format!("group \"{}\": image", group.name),
                    image: image.clone(),
                    known: known_images.clone(),
                });
            }
        }
        let subnets = names(file.subnets.iter().map(|s| s.network.to_string()));
        let mut hosts = Vec::new();
        let mut by_mac: BTreeMap<MacAddr, &str> = BTreeMap::new();
        let mut by_address: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        by_address.insert(server, format!("the server's ({})", file.server.name));
        if let Some(peer) = &file.peer {
            by_address.insert(peer.address.0, format!("the peer's ({})", peer.name));
        }
        for host in &file.hosts {
            let name = host.name.clone();
            if !is_dns_label(&name) {
                problems.push(Problem::BadHostName { name: name.clone() });
            }
            if let Some(other) = by_mac.insert(host.mac, &host.name) {
                problems.push(Problem::DuplicateMac { host: name.clone(), other: other.into(), mac: host.mac });
            }
            let address = host.address.0;
            if let Some(other) = by_address.insert(address, format!("host \"{}\"", host.name)) {
                problems.push(Problem::DuplicateAddress { host: name.clone(), other, address });
            }
            let group = match &host.group {
                Some(g) => match groups.get(g.as_str()) {
                    Some(group) => Some(*group),
                    None => {
                        problems.push(Problem::UnknownGroup {
                            host: name.clone(),
                            group: g.clone(),
                            known: names(file.groups.iter().map(|g| &g.name)),
                        });
                        None
                    }
                },
                None => None,
            };
            let image = host.image.clone().or_else(|| group.and_then(|g| g.image.clone()));
            let image = match image {
                Some(image) if images.contains_key(image.as_str()) => Some(image),
                Some(image) => {
                    let key = format!("host \"{name}\": image");
                    problems.push(Problem::UnknownImage { key, image, known: known_images.clone() });
                    None
                }
                None => {
                    problems.push(Problem::NoImage { host: name.clone() });
                    None
                }
            };
            let subnet = file.subnets.iter().position(|s| s.network.contains(address));
            match subnet {
                None => {
                    problems.push(Problem::OutsideSubnets { host: name.clone(), address, subnets: subnets.clone() })
                }
                Some(i) => {
                    let s = &file.subnets[i];
                    if let Some([start, end]) = s.dynamic
                        && (start.0..=end.0).contains(&address)
                    {
                        problems.push(Problem::InDynamicRange {
                            host: name.clone(),
                            address,
                            subnet: s.network.to_string(),
                            start: start.0,
                            end: end.0,
                        });
                    }
                }
            }
            let params = host.params.clone().or_else(|| group.and_then(|g| g.params.clone())).unwrap_or_default();
            if let (Some(image), Some(subnet)) = (image, subnet) {
                hosts.push(LabHost { name, mac: host.mac, address, image, params, subnet });
            }
        }
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Lab { file, hosts, problems }
    }

    pub fn image(&self, name: &str) -> Option<&Image> {
        self.file.images.iter().find(|i| i.name == name)
    }

    /// Images sorted by name.
    pub fn images(&self) -> Vec<&Image> {
        let mut images: Vec<&Image> = self.file.images.iter().collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        images
    }

    /// The subnet the server's address is in (the first one if several).
    pub fn server_subnet(&self) -> Option<&Subnet> {
        self.file.subnets.iter().find(|s| s.network.contains(self.file.server.address.0))
    }

    /// The NFS servers of `image`: its `nfs_servers`, else the server.
    pub fn nfs_servers(&self, image: &Image) -> Vec<Ipv4Addr> {
        match image.nfs_servers.as_slice() {
            [] => vec![self.file.server.address.0],
            list => list.iter().map(|a| a.0).collect(),
        }
    }

    /// Whether `image` serves clients with `firmware`.
    pub fn serves(image: &Image, firmware: Firmware) -> bool {
        image.firmware.contains(&firmware)
    }
}

/// `"a", "b"` for messages; `(none)` when empty.
fn names<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let list: Vec<String> = items.map(|i| format!("\"{i}\"")).collect();
    if list.is_empty() { "(none defined)".into() } else { list.join(", ") }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn is_path_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
pub(crate) mod tests;
