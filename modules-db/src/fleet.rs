//! The fleet file: which machines a lab has and which NICs they boot with, learnt from
//! what the clients sent the syslog server (`diskless inventory`), read by
//! `mkinitramfs --fleet` to put exactly the fleet's NIC drivers in the archive.
//!
//! Format, version 1 (TOML):
//!
//! ```toml
//! version = 1
//!
//! [[machine]]
//! name = "pc1.lab"              # the host name the machine booted with
//! mac = "52:54:00:12:34:56"     # the MAC it booted from: the machine's key
//!
//! [[machine.nic]]
//! interface = "eth0"            # empty when no driver bound the NIC
//! mac = "52:54:00:12:34:56"     # empty when no driver bound the NIC
//! bus = "pci"                   # pci, usb, virtio, ...
//! id = "8086:100e"              # vendor:device (PCI, USB); empty for other buses
//! modalias = "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"
//! module = "e1000"              # the driver's module
//! ```
//!
//! Every string is plain printable text (no control characters); a file with any other
//! version, an unknown key or a machine without NICs is refused with what to do.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The version this code writes and reads.
pub const FLEET_VERSION: u32 = 1;

/// Where mkinitramfs records, inside the archive, that it was built for a fleet: one
/// line naming the fleet file and its machines. Init names the fix for a NIC outside
/// the fleet by it.
pub fn marker_path(kernel_version: &str) -> String {
    format!("lib/modules/{kernel_version}/{MARKER_NAME}")
}

/// The marker's file name, in `lib/modules/VERSION` beside the module database.
pub const MARKER_NAME: &str = "diskless.fleet";

/// The marker's text for the fleet file at `path`.
pub fn marker_text(path: &str, fleet: &Fleet) -> String {
    format!("{path} ({} machines)\n", fleet.machines.len())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fleet {
    pub version: u32,
    #[serde(default, rename = "machine")]
    pub machines: Vec<Machine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub name: String,
    pub mac: String,
    #[serde(default, rename = "nic")]
    pub nics: Vec<Nic>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    #[serde(default)]
    pub interface: String,
    #[serde(default)]
    pub mac: String,
    pub bus: String,
    #[serde(default)]
    pub id: String,
    pub modalias: String,
    pub module: String,
}

/// Why a fleet file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{0}: write the file with `diskless inventory` or fix it by the format in its header")]
    Syntax(#[source] toml::de::Error),
    #[error("version {found} is not the fleet file version {FLEET_VERSION}: rebuild it with this diskless inventory")]
    Version { found: u32 },
    #[error("machine {name:?} lists no NIC: drop it, or boot it once with syslog on and run diskless inventory again")]
    NoNics { name: String },
    #[error("machine {name:?}: {field} {value:?} holds a control character: fix or rewrite the file")]
    Control { name: String, field: &'static str, value: String },
    #[error("machine {name:?}: a NIC with modalias {modalias:?} names no module: fix or rewrite the file")]
    NoModule { name: String, modalias: String },
}

impl Fleet {
    pub fn new(machines: Vec<Machine>) -> Fleet {
        Fleet { version: FLEET_VERSION, machines }
    }

    /// Read a fleet file's text, checked.
    pub fn parse(text: &str) -> Result<Fleet, FleetError> {
        // The version first, so that a file of another version says so rather than
        // failing on a key this version does not know.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let versioned: Versioned = toml::from_str(text).map_err(FleetError::Syntax)?;
        if versioned.version != FLEET_VERSION {
            return Err(FleetError::Version { found: versioned.version });
        }
        let fleet: Fleet = toml::from_str(text).map_err(FleetError::Syntax)?;
        for machine in &fleet.machines {
            machine.check()?;
        }
        Ok(fleet)
    }

    /// The file's text, with a header that says what it is.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).unwrap_or_default();
        format!(
            "# diskless fleet file (format version {FLEET_VERSION}): the lab's machines and the NICs they boot\n\
             # with, written by `diskless inventory` from the syslog server's log; read by\n\
             # `mkinitramfs --fleet FILE`.\n\n{body}"
        )
    }

    /// The modules of every NIC of the fleet, sorted.
    pub fn nic_modules(&self) -> BTreeSet<String> {
        self.machines.iter().flat_map(|m| &m.nics).map(|n| crate::normalize_name(&n.module)).collect()
    }
}

impl Machine {
    fn check(&self) -> Result<(), FleetError> {
        let control = |field: &'static str, value: &str| {
            if value.chars().any(char::is_control) {
                Err(FleetError::Control { name: self.name.clone(), field, value: value.into() })
            } else {
                Ok(())
            }
        };
        control("name", &self.name)?;
        control("mac", &self.mac)?;
        if self.nics.is_empty() {
            return Err(FleetError::NoNics { name: self.name.clone() });
        }
        for nic in &self.nics {
            for (field, value) in [
                ("interface", &nic.interface),
                ("mac", &nic.mac),
                ("bus", &nic.bus),
                ("id", &nic.id),
                ("modalias", &nic.modalias),
                ("module", &nic.module),
            ] {
                control(field, value)?;
            }
            if nic.module.trim().is_empty() {
                return Err(FleetError::NoModule { name: self.name.clone(), modalias: nic.modalias.clone() });
            }
        }
        Ok(())
    }
}

impl fmt::Display for Nic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.interface.is_empty() { "(no driver bound)" } else { &self.interface };
        write!(
            f,
            "{name} {} {} module {}",
            self.bus,
            if self.id.is_empty() { &self.modalias } else { &self.id },
            self.module
        )
    }
}

/// `vendor:device` of a PCI or USB modalias (`pci:v00008086d0000100E...` -> `8086:100e`,
/// `usb:v0BDAp8153...` -> `0bda:8153`); empty for other buses.
pub fn device_id(modalias: &str) -> String {
    let hex4 = |s: &str| s.get(..4).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit())).map(str::to_ascii_lowercase);
    let parts = if let Some(rest) = modalias.strip_prefix("pci:v") {
        rest.get(4..)
            .zip(rest.find('d').and_then(|at| rest.get(at + 5..)))
            .and_then(|(v, d)| Some((hex4(v)?, hex4(d)?)))
    } else if let Some(rest) = modalias.strip_prefix("usb:v") {
        hex4(rest).zip(rest.get(4..).and_then(|r| r.strip_prefix('p')).and_then(hex4))
    } else {
        None
    };
    parts.map(|(v, d)| format!("{v}:{d}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e1000() -> Nic {
        Nic {
            interface: "eth0".into(),
            mac: "52:54:00:12:34:56".into(),
            bus: "pci".into(),
            id: "8086:100e".into(),
            modalias: "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00".into(),
            module: "e1000".into(),
        }
    }

    fn fleet() -> Fleet {
        Fleet::new(vec![Machine { name: "pc1.lab".into(), mac: "52:54:00:12:34:56".into(), nics: vec![e1000()] }])
    }

    #[test]
    fn the_file_round_trips_and_says_what_it_is() {
        let text = fleet().to_toml();
        assert!(text.starts_with("# diskless fleet file (format version 1)"), "{text}");
        assert!(text.contains("version = 1\n"), "{text}");
        assert!(text.contains("[[machine]]\nname = \"pc1.lab\""), "{text}");
        assert!(text.contains("[[machine.nic]]\n"), "{text}");
        assert_eq!(Fleet::parse(&text).unwrap(), fleet());
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("fleet.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        assert_eq!(Fleet::parse(&example).unwrap(), fleet());
    }

    #[test]
    fn another_version_is_refused_with_the_fix() {
        let e = Fleet::parse("version = 2\n[[machine]]\nname = \"x\"\nnew_key = 1\n").unwrap_err();
        assert!(matches!(e, FleetError::Version { found: 2 }), "{e}");
        assert!(e.to_string().contains("rebuild it with this diskless inventory"), "{e}");
    }

    #[test]
    fn bad_files_name_the_machine_and_what_to_do() {
        let e = Fleet::parse("version = 1\n[[machine]]\nname = \"pc2\"\nmac = \"\"\n").unwrap_err();
        assert!(e.to_string().starts_with("machine \"pc2\" lists no NIC"), "{e}");
        let mut bad = fleet();
        bad.machines[0].nics[0].module = "e1000\u{1b}[2J".into();
        let e = Fleet::parse(&bad.to_toml()).unwrap_err();
        assert!(e.to_string().contains("module \"e1000\\u{1b}[2J\" holds a control character"), "{e}");
        bad.machines[0].nics[0].module = String::new();
        assert!(matches!(Fleet::parse(&bad.to_toml()), Err(FleetError::NoModule { .. })));
        let e = Fleet::parse("version = 1\ncolour = \"red\"\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        assert!(matches!(Fleet::parse("version = "), Err(FleetError::Syntax(_))));
    }

    #[test]
    fn nic_modules_are_normalised_and_unique() {
        let mut f = fleet();
        let mut usb = e1000();
        usb.module = "r8152".into();
        let mut second = f.machines[0].clone();
        second.nics.push(usb);
        second.nics[0].module = "e1000".into();
        f.machines.push(second);
        f.machines[0].nics[0].module = "virtio-net".into();
        assert_eq!(f.nic_modules().into_iter().collect::<Vec<_>>(), ["e1000", "r8152", "virtio_net"]);
    }

    #[test]
    fn device_ids_of_pci_and_usb() {
        assert_eq!(device_id("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"), "8086:100e");
        assert_eq!(device_id("usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00"), "0bda:8153");
        assert_eq!(device_id("virtio:d00000001v00001AF4"), "");
        assert_eq!(device_id("pci:v0000"), "");
    }
}
