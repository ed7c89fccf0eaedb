//! Which probed device becomes the scratch filesystem, which are swap, and why every
//! other one is left alone. Pure: the decisions are data, tested without disks.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::devices::{BlockDevice, device_order};
use super::probe::{Kind, Signature};
use crate::config::Scratch;

/// A device with what probing found on it.
#[derive(Debug)]
pub struct Probed {
    pub device: BlockDevice,
    /// `Err` when the device could not be read.
    pub signature: Result<Option<Signature>, ReadError>,
}

/// Reading the first or last bytes of a device for probing failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {error}", .device.display())]
pub struct ReadError {
    pub device: PathBuf,
    #[source]
    pub error: io::Error,
}

/// Why a device is not used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Reading the first or last bytes failed.
    Unreadable {
        error: String,
    },
    /// Size 0: a card reader or a drive without medium.
    NoMedium,
    /// No known signature: unformatted or unknown content.
    NoSignature,
    /// A whole disk with partitions: its partitions are looked at instead.
    Partitioned,
    /// A filesystem of another system (FAT, NTFS): never touched.
    NotOurs {
        kind: Kind,
    },
    /// A swap partition holding a hibernation image.
    Hibernation,
    /// An external ext journal.
    ExternalJournal,
    Encrypted,
    LvmMember,
    RaidMember,
    /// Several signatures: which one is current is unclear.
    Ambiguous {
        kinds: Vec<Kind>,
    },
    ReadOnly,
    /// A filesystem type not in `scratch.fstypes`.
    TypeNotAllowed {
        kind: Kind,
        allowed: Vec<String>,
    },
    /// A label other than `scratch.label`.
    LabelMismatch {
        label: Option<String>,
        wanted: String,
    },
    /// Another candidate was chosen.
    NotChosen {
        chosen: PathBuf,
        why: Preference,
    },
    /// A swap signature with `scratch.swap = false`.
    SwapDisabled,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Unreadable { error } => write!(f, "cannot be read: {error}"),
            SkipReason::NoMedium => f.write_str("empty (no medium)"),
            SkipReason::NoSignature => f.write_str("no known signature"),
            SkipReason::Partitioned => f.write_str("partitioned disk, see its partitions"),
            SkipReason::NotOurs { .. } => f.write_str("another system's filesystem, never mounted or written"),
            SkipReason::Hibernation => f.write_str("holds a hibernation image, not enabled as swap"),
            SkipReason::ExternalJournal => f.write_str("external journal of another filesystem, never written"),
            SkipReason::Encrypted => f.write_str("encrypted (LUKS), not opened"),
            SkipReason::LvmMember => f.write_str("LVM physical volume, not activated"),
            SkipReason::RaidMember => f.write_str("RAID member, not assembled"),
            SkipReason::Ambiguous { kinds } => write!(
                f,
                "several signatures ({}): unclear which is current; remove the stale one with wipefs to use it",
                join(kinds)
            ),
            SkipReason::ReadOnly => f.write_str("read-only device"),
            SkipReason::TypeNotAllowed { kind, allowed } => {
                write!(f, "type {kind} not in scratch.fstypes ({})", allowed.join(", "))
            }
            SkipReason::LabelMismatch { label: Some(label), wanted } => {
                write!(f, "label {label:?} is not scratch.label {wanted:?}")
            }
            SkipReason::LabelMismatch { label: None, wanted } => write!(f, "no label, scratch.label is {wanted:?}"),
            SkipReason::NotChosen { chosen, why } => {
                write!(f, "{} is used ({why})", chosen.display())
            }
            SkipReason::SwapDisabled => f.write_str("swap not enabled (scratch.swap = false)"),
        }
    }
}

fn join(kinds: &[Kind]) -> String {
    kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// Why the chosen candidate won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// It was the only candidate.
    Only,
    /// It is larger.
    Larger,
    /// Same size; it comes first in controller order.
    ControllerOrder,
}

impl fmt::Display for Preference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preference::Only => "the only candidate",
            Preference::Larger => "larger",
            Preference::ControllerOrder => "same size, first in controller order",
        })
    }
}

/// The decisions, as indexes into the probed list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The scratch filesystem and why it won over the others.
    pub scratch: Option<(usize, Preference)>,
    pub swaps: Vec<usize>,
    pub skipped: Vec<(usize, SkipReason)>,
}

/// What one device can be used for, or why it cannot.
enum Use {
    Scratch,
    Swap,
    Skip(SkipReason),
}

fn classify(p: &Probed, config: &Scratch) -> Use {
    let d = &p.device;
    if d.size == 0 {
        return Use::Skip(SkipReason::NoMedium);
    }
    if d.has_partitions {
        return Use::Skip(SkipReason::Partitioned);
    }
    let sig = match &p.signature {
        Err(error) => {
            return Use::Skip(SkipReason::Unreadable { error: error.to_string() });
        }
        Ok(None) => return Use::Skip(SkipReason::NoSignature),
        Ok(Some(sig)) => sig,
    };
    let by_kind = match sig.kind {
        Kind::Gpt | Kind::Dos => Some(SkipReason::Partitioned),
        Kind::Vfat | Kind::Ntfs => Some(SkipReason::NotOurs { kind: sig.kind }),
        Kind::Swsuspend => Some(SkipReason::Hibernation),
        Kind::Jbd => Some(SkipReason::ExternalJournal),
        Kind::Luks => Some(SkipReason::Encrypted),
        Kind::Lvm2 => Some(SkipReason::LvmMember),
        Kind::MdRaid => Some(SkipReason::RaidMember),
        Kind::Ext2 | Kind::Ext3 | Kind::Ext4 | Kind::Xfs | Kind::Btrfs | Kind::Swap => None,
    };
    if let Some(reason) = by_kind {
        return Use::Skip(reason);
    }
    // Only now: a stale signature next to a container or foreign filesystem does not
    // matter, but next to something we would write to it does.
    if !sig.also.is_empty() {
        let mut kinds = vec![sig.kind];
        kinds.extend(&sig.also);
        return Use::Skip(SkipReason::Ambiguous { kinds });
    }
    if d.read_only {
        return Use::Skip(SkipReason::ReadOnly);
    }
    if sig.kind == Kind::Swap {
        return if config.swap { Use::Swap } else { Use::Skip(SkipReason::SwapDisabled) };
    }
    if !config.fstypes.iter().any(|t| t == sig.kind.name()) {
        return Use::Skip(SkipReason::TypeNotAllowed { kind: sig.kind, allowed: config.fstypes.clone() });
    }
    if !config.label.is_empty() && sig.label.as_deref() != Some(config.label.as_str()) {
        return Use::Skip(SkipReason::LabelMismatch { label: sig.label.clone(), wanted: config.label.clone() });
    }
    Use::Scratch
}

/// Decides for every probed device. Among several scratch candidates the largest
/// wins, then the first in controller order (sysfs path: stable from boot to boot,
/// unlike `sdX` names); the others are skipped naming the winner.
pub fn select(probed: &[Probed], config: &Scratch) -> Selection {
    let mut candidates = Vec::new();
    let mut selection = Selection { scratch: None, swaps: Vec::new(), skipped: Vec::new() };
    for (i, p) in probed.iter().enumerate() {
        match classify(p, config) {
            Use::Scratch => candidates.push(i),
            Use::Swap => selection.swaps.push(i),
            Use::Skip(reason) => selection.skipped.push((i, reason)),
        }
    }
    candidates.sort_by(|&a, &b| {
        let (a, b) = (&probed[a].device, &probed[b].device);
        b.size.cmp(&a.size).then_with(|| device_order(a, b))
    });
    if let Some((&winner, losers)) = candidates.split_first() {
        let chosen = &probed[winner].device;
        let why_over = |loser: usize| {
            if probed[loser].device.size < chosen.size { Preference::Larger } else { Preference::ControllerOrder }
        };
        let preference = match losers {
            [] => Preference::Only,
            [next, ..] => why_over(*next),
        };
        selection.scratch = Some((winner, preference));
        for &loser in losers {
            selection
                .skipped
                .push((loser, SkipReason::NotChosen { chosen: chosen.path.clone(), why: why_over(loser) }));
        }
        selection.skipped.sort_by_key(|(i, _)| *i);
    }
    selection
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn device(name: &str, devpath: &str, mib: u64) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            path: PathBuf::from("/dev").join(name),
            size: mib << 20,
            read_only: false,
            removable: false,
            partition: Some(1),
            disk: None,
            has_partitions: false,
            devpath: devpath.into(),
        }
    }

    fn fs(name: &str, devpath: &str, mib: u64, kind: Kind, label: Option<&str>) -> Probed {
        Probed {
            device: device(name, devpath, mib),
            signature: Ok(Some(Signature { kind, label: label.map(Into::into), uuid: None, also: Vec::new() })),
        }
    }

    fn config() -> Scratch {
        Config::default().scratch
    }

    fn reason(sel: &Selection, index: usize) -> &SkipReason {
        &sel.skipped.iter().find(|(i, _)| *i == index).unwrap_or_else(|| panic!("{index} not skipped: {sel:?}")).1
    }

    #[test]
    fn largest_labelled_candidate_wins_and_others_name_it() {
        let probed = [
            fs("sda1", "/pci/1/sda/sda1", 512, Kind::Ext4, Some("scratch")),
            fs("sdb1", "/pci/2/sdb/sdb1", 2048, Kind::Xfs, Some("scratch")),
            fs("vda", "/pci/3/vda", 4096, Kind::Ext4, Some("data")),
        ];
        let sel = select(&probed, &config());
        assert_eq!(sel.scratch, Some((1, Preference::Larger)));
        assert_eq!(reason(&sel, 0), &SkipReason::NotChosen { chosen: "/dev/sdb1".into(), why: Preference::Larger });
        assert_eq!(reason(&sel, 2).to_string(), "label \"data\" is not scratch.label \"scratch\"");
    }

    #[test]
    fn same_size_candidates_are_ordered_by_controller_not_name() {
        let probed = [
            fs("sda1", "/pci/0000:00:1f.2/sda/sda1", 1024, Kind::Ext4, Some("scratch")),
            fs("sdb1", "/pci/0000:00:05.0/sdb/sdb1", 1024, Kind::Btrfs, Some("scratch")),
        ];
        let sel = select(&probed, &config());
        assert_eq!(sel.scratch, Some((1, Preference::ControllerOrder)));
        assert_eq!(reason(&sel, 0).to_string(), "/dev/sdb1 is used (same size, first in controller order)");
    }

    #[test]
    fn empty_label_accepts_any_allowed_type() {
        let mut c = config();
        c.label = String::new();
        let probed = [fs("vda", "/v/a", 100, Kind::Ext3, None), fs("vdb", "/v/b", 50, Kind::Btrfs, None)];
        let sel = select(&probed, &c);
        assert_eq!(sel.scratch, Some((1, Preference::Only)));
        assert_eq!(reason(&sel, 0).to_string(), "type ext3 not in scratch.fstypes (ext4, xfs, btrfs)");
    }

    #[test]
    fn every_swap_is_used_unless_disabled_or_read_only() {
        let mut probed = vec![
            fs("vdb", "/v/b", 256, Kind::Swap, None),
            fs("vdc1", "/v/c/vdc1", 128, Kind::Swap, Some("x")),
            fs("vdd", "/v/d", 64, Kind::Swap, None),
        ];
        probed[2].device.read_only = true;
        let sel = select(&probed, &config());
        assert_eq!(sel.swaps, [0, 1]);
        assert_eq!(reason(&sel, 2), &SkipReason::ReadOnly);
        assert_eq!(sel.scratch, None);
        let mut c = config();
        c.swap = false;
        let sel = select(&probed, &c);
        assert!(sel.swaps.is_empty());
        assert_eq!(reason(&sel, 0), &SkipReason::SwapDisabled);
    }

    #[test]
    fn foreign_containers_and_partitioned_disks_are_skipped() {
        let mut disk = fs("sda", "/p/sda", 8192, Kind::Gpt, None);
        disk.device.has_partitions = true;
        let probed = [
            disk,
            fs("sda1", "/p/sda/sda1", 100, Kind::Vfat, Some("scratch")),
            fs("sda2", "/p/sda/sda2", 100, Kind::Ntfs, Some("scratch")),
            fs("sda3", "/p/sda/sda3", 100, Kind::Luks, Some("scratch")),
            fs("sda4", "/p/sda/sda4", 100, Kind::Lvm2, None),
            fs("sda5", "/p/sda/sda5", 100, Kind::MdRaid, Some("scratch")),
            fs("sda6", "/p/sda/sda6", 100, Kind::Swsuspend, None),
        ];
        let sel = select(&probed, &config());
        assert_eq!((sel.scratch, sel.swaps.len()), (None, 0));
        let reasons: Vec<String> = sel.skipped.iter().map(|(_, r)| r.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "partitioned disk, see its partitions",
                "another system's filesystem, never mounted or written",
                "another system's filesystem, never mounted or written",
                "encrypted (LUKS), not opened",
                "LVM physical volume, not activated",
                "RAID member, not assembled",
                "holds a hibernation image, not enabled as swap",
            ]
        );
    }

    #[test]
    fn whole_disk_with_partitions_is_never_used_even_with_a_filesystem_signature() {
        let mut disk = fs("vdb", "/v/b", 1024, Kind::Ext4, Some("scratch"));
        disk.device.has_partitions = true;
        let sel = select(&[disk], &config());
        assert_eq!(sel.scratch, None);
        assert_eq!(reason(&sel, 0), &SkipReason::Partitioned);
    }

    #[test]
    fn ambiguous_and_read_only_filesystems_are_refused() {
        let mut both = fs("vdb", "/v/b", 1024, Kind::Ext4, Some("scratch"));
        if let Ok(Some(sig)) = &mut both.signature {
            sig.also = vec![Kind::Swap];
        }
        let mut ro = fs("vdc", "/v/c", 1024, Kind::Ext4, Some("scratch"));
        ro.device.read_only = true;
        let sel = select(&[both, ro], &config());
        assert_eq!(sel.scratch, None);
        assert!(reason(&sel, 0).to_string().starts_with("several signatures (ext4, swap)"));
        assert_eq!(reason(&sel, 1), &SkipReason::ReadOnly);
    }

    #[test]
    fn unreadable_empty_and_unformatted_devices_say_so() {
        let mut empty = fs("sdc", "/u/c", 0, Kind::Ext4, None);
        empty.signature = Ok(None);
        let probed = [
            Probed {
                device: device("sda", "/u/a", 10),
                signature: Err(ReadError { device: "/dev/sda".into(), error: io::Error::from_raw_os_error(libc::EIO) }),
            },
            Probed { device: device("sdb", "/u/b", 10), signature: Ok(None) },
            empty,
        ];
        let sel = select(&probed, &config());
        let reasons: Vec<String> = sel.skipped.iter().map(|(_, r)| r.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "cannot be read: cannot read /dev/sda: Input/output error (os error 5)",
                "no known signature",
                "empty (no medium)"
            ]
        );
    }
}
