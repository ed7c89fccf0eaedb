//! The parts of `pci.ids` (the PCI ID repository's text file) the database keeps:
//! vendor names and device names.
//!
//! Format: `vvvv  Vendor`, then `\tdddd  Device`, then `\t\tssss ssss  Subsystem`
//! lines; after the vendors a `C cc  Class` section, which is not needed.

use std::collections::BTreeMap;

/// Vendor and device names by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PciIds<'t> {
    pub vendors: BTreeMap<u16, &'t str>,
    pub devices: BTreeMap<(u16, u16), &'t str>,
}

/// `hhhh  name` -> (id, name).
fn id_and_name(line: &str) -> Option<(u16, &str)> {
    let (id, name) = line.split_once(' ')?;
    if id.len() != 4 {
        return None;
    }
    Some((u16::from_str_radix(id, 16).ok()?, name.trim()))
}

/// Parses `pci.ids`. Lines it does not understand are skipped: the file is a
/// convenience for messages, and a damaged line must not stop a build.
pub fn parse(text: &str) -> PciIds<'_> {
    let mut ids = PciIds::default();
    let mut vendor = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("C ") {
            break;
        }
        if let Some(rest) = line.strip_prefix('\t') {
            if rest.starts_with('\t') {
                continue;
            }
            if let (Some(v), Some((device, name))) = (vendor, id_and_name(rest)) {
                ids.devices.insert((v, device), name);
            }
        } else {
            vendor = id_and_name(line).map(|(v, name)| {
                ids.vendors.insert(v, name);
                v
            });
        }
    }
    ids
}

/// The vendor:device pair a PCI alias pattern names literally
/// (`pci:v00008086d0000100Esv*...`), or `None` if either is a wildcard.
pub fn pci_pair_of_alias(pattern: &str) -> Option<(u16, u16)> {
    let rest = pattern.strip_prefix("pci:v")?;
    let hex8 = |s: &str| -> Option<u16> {
        let digits = s.get(..8)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u16::try_from(u32::from_str_radix(digits, 16).ok()?).ok()
    };
    let vendor = hex8(rest)?;
    let device = hex8(rest.get(8..)?.strip_prefix('d')?)?;
    Some((vendor, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n8086  Intel Corporation\n\t100e  82540EM Gigabit Ethernet Controller\n\t\t8086 001e  PRO/1000 MT\n10ec  Realtek\n\t8139  RTL-8100/8101L/8139\nC 02  Network controller\n\t00  Ethernet controller\n";

    #[test]
    fn vendors_and_devices_are_read_and_subsystems_and_classes_skipped() {
        let ids = parse(SAMPLE);
        assert_eq!(ids.vendors.get(&0x8086), Some(&"Intel Corporation"));
        assert_eq!(ids.devices.get(&(0x8086, 0x100e)), Some(&"82540EM Gigabit Ethernet Controller"));
        assert_eq!(ids.devices.get(&(0x10ec, 0x8139)), Some(&"RTL-8100/8101L/8139"));
        assert_eq!(ids.vendors.len(), 2);
        assert_eq!(ids.devices.len(), 2);
    }

    #[test]
    fn only_literal_vendor_device_pairs_are_taken_from_aliases() {
        assert_eq!(pci_pair_of_alias("pci:v00008086d0000100Esv*sd*bc*sc*i*"), Some((0x8086, 0x100e)));
        assert_eq!(pci_pair_of_alias("pci:v00008086d*sv*"), None);
        assert_eq!(pci_pair_of_alias("pci:v*d0000100E*"), None);
        assert_eq!(pci_pair_of_alias("usb:v8086p*"), None);
        assert_eq!(pci_pair_of_alias("pci:v0001FFFFd00000001*"), None);
    }
}
