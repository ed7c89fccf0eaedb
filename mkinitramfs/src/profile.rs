//! Which modules a profile puts in the initramfs, before dependencies are added.

use std::fmt;
use std::str::FromStr;

use modules_db::{KernelModules, normalize_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// What a diskless client needs to boot from the network on any lab machine.
    Netboot,
    /// Every module of the kernel.
    All,
}

/// Tree locations whose every module belongs to the netboot profile
/// (paths relative to `lib/modules/VERSION`).
const NETBOOT_PATH_PREFIXES: &[&str] = &[
    // Every wired NIC a lab machine may have.
    "kernel/drivers/net/ethernet/",
    // USB network adapters (laptops and small machines without a built-in NIC).
    "kernel/drivers/net/usb/",
];

/// Single modules of the netboot profile, grouped by why they are needed. Names that
/// a kernel has built in, or lacks, are skipped.
const NETBOOT_NAMES: &[(&str, &[&str])] = &[
    ("virtual machines", &["virtio_pci", "virtio_net", "virtio_blk", "virtio_scsi", "virtio_mmio"]),
    ("NFS root", &["nfs", "nfsv3", "nfsv4"]),
    ("overlay mode", &["overlay"]),
    // ata_piix: Intel SATA controllers set to legacy IDE mode in the firmware, common in lab PCs.
    ("scratch disk controllers", &["ahci", "ata_piix", "ata_generic", "nvme", "sd_mod"]),
    ("USB disks", &["xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usb_storage", "uas"]),
    ("scratch filesystems", &["ext4", "xfs", "btrfs"]),
];

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Netboot => "netboot",
            Profile::All => "all",
        }
    }

    /// The profile's module names for this kernel: loadable modules only, sorted.
    /// Also returns the profile's names the kernel has neither as module nor built in.
    pub fn modules(self, kernel: &KernelModules) -> (Vec<String>, Vec<String>) {
        match self {
            Profile::All => (kernel.modules.keys().cloned().collect(), Vec::new()),
            Profile::Netboot => {
                let mut chosen: Vec<String> = kernel
                    .modules
                    .values()
                    .filter(|info| NETBOOT_PATH_PREFIXES.iter().any(|prefix| info.path.starts_with(prefix)))
                    .map(|info| info.name.clone())
                    .collect();
                let mut absent = Vec::new();
                for name in NETBOOT_NAMES.iter().flat_map(|(_, names)| names.iter()) {
                    let name = normalize_name(name);
                    if kernel.modules.contains_key(&name) {
                        chosen.push(name);
                    } else if !kernel.builtin.contains_key(&name) {
                        absent.push(name);
                    }
                }
                chosen.sort();
                chosen.dedup();
                (chosen, absent)
            }
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [Profile::Netboot, Profile::All]
            .into_iter()
            .find(|profile| profile.name() == text)
            .ok_or_else(|| text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use modules_db::ModuleInfo;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn kernel(paths: &[&str], builtin: &[&str]) -> KernelModules {
        let modules = paths
            .iter()
            .map(|path| {
                let file = path.rsplit('/').next().unwrap();
                let name = normalize_name(file.split('.').next().unwrap());
                let info = ModuleInfo {
                    name: name.clone(),
                    path: path.to_string(),
                    depends: vec![],
                    softdep_pre: vec![],
                    softdep_post: vec![],
                    firmware: vec![],
                    aliases: vec![],
                };
                (name, info)
            })
            .collect();
        KernelModules {
            version: "v".into(),
            root: PathBuf::from("/nonexistent"),
            modules,
            builtin: builtin.iter().map(|name| (name.to_string(), vec![])).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn netboot_takes_nic_trees_and_named_modules_but_not_others() {
        let kernel = kernel(
            &[
                "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
                "kernel/drivers/net/usb/r8152.ko.xz",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/fs/nfs/nfsv4.ko",
                "kernel/drivers/net/wireless/ath/ath9k/ath9k.ko",
                "kernel/sound/core/snd.ko",
            ],
            &["ext4", "virtio_pci"],
        );
        let (chosen, absent) = Profile::Netboot.modules(&kernel);
        assert_eq!(chosen, ["e1000e", "nfsv4", "r8152", "virtio_net"]);
        assert!(absent.contains(&"xfs".to_string()));
        assert!(!absent.contains(&"ext4".to_string()), "built-in names are not absent");
        assert!(!absent.contains(&"virtio_pci".to_string()));
    }

    #[test]
    fn all_takes_every_module() {
        let kernel = kernel(&["kernel/sound/core/snd.ko", "kernel/fs/nfs/nfs.ko"], &[]);
        assert_eq!(Profile::All.modules(&kernel), (vec!["nfs".to_string(), "snd".to_string()], vec![]));
    }

    #[test]
    fn profile_names_parse() {
        assert_eq!("netboot".parse::<Profile>(), Ok(Profile::Netboot));
        assert_eq!("all".parse::<Profile>(), Ok(Profile::All));
        assert!("tiny".parse::<Profile>().is_err());
    }
}
