//! Which modules a profile puts in the initramfs, before dependencies are added.

use std::fmt;
use std::str::FromStr;

use modules_db::{KernelModules, normalize_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The lab profile (default): what a diskless client needs to boot from the network
    /// on a lab machine, without the datacentre NIC drivers of [`DATACENTRE_NICS`].
    Netboot,
    /// [`Profile::Netboot`] with every Ethernet driver of the kernel.
    NetbootAll,
    /// Every module of the kernel.
    All,
}

/// Where the kernel keeps its wired Ethernet drivers (relative to `lib/modules/VERSION`).
const ETHERNET_DIR: &str = "kernel/drivers/net/ethernet/";

/// Tree locations whose every module belongs to the netboot profiles
/// (paths relative to `lib/modules/VERSION`).
const NETBOOT_PATH_PREFIXES: &[&str] = &[
    // Every wired NIC a lab machine may have (less DATACENTRE_NICS by default).
    ETHERNET_DIR,
    // USB network adapters (laptops and small machines without a built-in NIC).
    "kernel/drivers/net/usb/",
];

/// The lab rule: Ethernet drivers (paths under [`ETHERNET_DIR`]) whose every device is a
/// datacentre or cloud adapter, which no lab desktop, workstation or laptop has:
/// 25 GbE and faster, 10 GbE server adapters (SFP+/QSFP, converged or offload engines,
/// server-board ports), SR-IOV virtual functions and the NICs of cloud VMs. Every
/// driver with a device found in lab machines stays: onboard and add-in 10/100/1000,
/// 2.5 and 5 GbE, the 10GBASE-T chips of workstation boards and PC cards (ixgbe's
/// X540/X550, Aquantia atlantic, Tehuti), USB adapters, virtio and the QEMU models.
/// Directories not listed (a newer kernel's) stay: an unknown NIC is never dropped.
/// Facts from each driver's Kconfig help and modinfo description.
pub const DATACENTRE_NICS: &[(&str, &str)] = &[
    ("amazon/", "ENA: AWS EC2 instances only"),
    ("broadcom/bnx2x/", "NetXtreme II 10/20 GbE server and blade adapters (BCM57710-57840)"),
    ("broadcom/bnxt/", "NetXtreme-C/E 10-200 GbE server adapters (BCM573xx/574xx/575xx)"),
    ("brocade/", "BR-series 10 GbE converged server adapters"),
    ("cavium/", "LiquidIO 10/25 GbE server adapters, ThunderX server SoC ports"),
    ("chelsio/", "T1-T6 10-100 GbE offload server adapters"),
    ("cisco/", "VIC: virtual NICs of UCS servers"),
    ("emulex/", "OneConnect 10/40 GbE converged server adapters"),
    ("google/", "gVNIC: Google Cloud VMs only"),
    ("huawei/", "hinic: 25/100 GbE server adapters"),
    ("intel/i40e/", "700 series 10/25/40 GbE server adapters (X710, XL710, XXV710), X722 server-chipset ports"),
    ("intel/iavf/", "SR-IOV virtual function: exists only inside a VM given one"),
    ("intel/ice/", "E800 series 25/50/100 GbE server adapters (E810), server SoC ports"),
    ("intel/igbvf/", "SR-IOV virtual function: exists only inside a VM given one"),
    ("intel/ixgb/", "PRO/10GbE (82597) PCI-X server adapters"),
    ("intel/ixgbevf/", "SR-IOV virtual function: exists only inside a VM given one"),
    ("mellanox/", "ConnectX and BlueField 10-400 GbE and InfiniBand server adapters, Spectrum switches"),
    ("microsoft/", "MANA: Azure VMs only"),
    ("myricom/", "Myri-10G 10 GbE HPC adapters"),
    ("neterion/", "Xframe 10 GbE PCI-X server adapters"),
    ("netronome/", "Agilio 10-100 GbE SmartNICs"),
    ("qlogic/", "FastLinQ 10-100 GbE, NetXen/QLCNIC intelligent and ISP3xxx iSCSI server adapters"),
    ("sfc/", "Solarflare 10-100 GbE low-latency server adapters"),
    ("sun/niu.ko", "Neptune 10 GbE ports of Sun servers"),
];

/// The lab rule's reason for leaving out the module at `path` (relative to
/// `lib/modules/VERSION`), or `None` when the lab profile keeps it.
pub fn datacentre_nic(path: &str) -> Option<&'static str> {
    let inside = path.strip_prefix(ETHERNET_DIR)?;
    DATACENTRE_NICS.iter().find(|(prefix, _)| inside.starts_with(prefix)).map(|(_, why)| *why)
}

/// Where a group of [`NETBOOT_NAMES`] goes in a `--modules-in-archive network` build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// On the way to the root: in the archive.
    Archive,
    /// USB host controllers: in the archive when a USB NIC driver is (it needs them).
    WithUsbNics,
    /// Loaded once the root is mounted, from the image's `lib/modules/VERSION`.
    Image,
}

/// Single modules of the netboot profile, grouped by why they are needed, with where
/// they go. Names that a kernel has built in, or lacks, are skipped.
const NETBOOT_NAMES: &[(&str, Place, &[&str])] = &[
    ("virtual machines' network", Place::Archive, &["virtio_pci", "virtio_net", "virtio_mmio"]),
    ("virtual machines' disks", Place::Image, &["virtio_blk", "virtio_scsi"]),
    ("NFS root", Place::Archive, &["nfs", "nfsv3", "nfsv4"]),
    ("overlay mode", Place::Image, &["overlay"]),
    // Bound after the local stage, when the scratch filesystem is mounted: the image's
    // modules are in by then, so it stays out of the archive.
    ("scratch disk as a cache of the image (scratch.cache)", Place::Image, &["cachefiles"]),
    // ata_piix: Intel SATA controllers set to legacy IDE mode in the firmware, common in lab PCs.
    ("scratch disk controllers", Place::Image, &["ahci", "ata_piix", "ata_generic", "nvme", "sd_mod"]),
    ("USB host controllers", Place::WithUsbNics, &["xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd"]),
    ("USB disks", Place::Image, &["usb_storage", "uas"]),
    ("scratch filesystems", Place::Image, &["ext4", "xfs", "btrfs"]),
];

/// Where the kernel keeps its network drivers (relative to `lib/modules/VERSION`): the
/// NIC drivers of a profile or fleet are the ones under it.
pub const NETWORK_DRIVERS_DIR: &str = "kernel/drivers/net/";

/// Where USB network adapters' drivers are: with one of them in the archive, the USB
/// host controllers are too.
const USB_NIC_DIR: &str = "kernel/drivers/net/usb/";

/// What `--modules-in-archive` puts in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InArchive {
    /// The default: the way to the root (NIC drivers, the buses they sit on, the NFS
    /// client); every other module loads from the image once the root is mounted.
    Network,
    /// Every module of the profile, as before the two-stage load: for images without
    /// the kernel's modules.
    All,
}

impl InArchive {
    pub fn name(self) -> &'static str {
        match self {
            InArchive::Network => "network",
            InArchive::All => "all",
        }
    }

    /// Of a profile's (or fleet's) `roots`, those that go in the archive.
    pub fn roots(self, kernel: &KernelModules, roots: Vec<String>) -> Vec<String> {
        if self == InArchive::All {
            return roots;
        }
        let path = |name: &str| kernel.modules.get(name).map_or("", |m| m.path.as_str());
        let usb_nics = roots.iter().any(|name| path(name).starts_with(USB_NIC_DIR));
        let place = |name: &str| {
            NETBOOT_NAMES
                .iter()
                .find(|(_, _, names)| names.iter().any(|n| normalize_name(n) == name))
                .map(|(_, place, _)| *place)
        };
        roots
            .into_iter()
            .filter(|name| match place(name) {
                Some(Place::Archive) => true,
                Some(Place::WithUsbNics) => usb_nics,
                Some(Place::Image) => false,
                None => path(name).starts_with(NETWORK_DRIVERS_DIR),
            })
            .collect()
    }
}

impl fmt::Display for InArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InArchive {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        [InArchive::Network, InArchive::All].into_iter().find(|a| a.name() == text).ok_or_else(|| text.to_string())
    }
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Netboot => "netboot",
            Profile::NetbootAll => modules_db::EVERY_NIC_PROFILE,
            Profile::All => "all",
        }
    }

    /// The profile's module names for this kernel: loadable modules only, sorted.
    /// Also returns the profile's names the kernel has neither as module nor built in.
    pub fn modules(self, kernel: &KernelModules) -> (Vec<String>, Vec<String>) {
        match self {
            Profile::All => (kernel.modules.keys().cloned().collect(), Vec::new()),
            Profile::Netboot | Profile::NetbootAll => {
                let mut chosen: Vec<String> = kernel
                    .modules
                    .values()
                    .filter(|info| NETBOOT_PATH_PREFIXES.iter().any(|prefix| info.path.starts_with(prefix)))
                    .filter(|info| self == Profile::NetbootAll || datacentre_nic(&info.path).is_none())
                    .map(|info| info.name.clone())
                    .collect();
                let mut absent = Vec::new();
                for name in NETBOOT_NAMES.iter().flat_map(|(_, _, names)| names.iter()) {
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

    /// The kernel's modules this profile leaves out by the lab rule, sorted: what
    /// [`Profile::NetbootAll`] would add.
    pub fn left_out_nics(self, kernel: &KernelModules) -> Vec<String> {
        if self != Profile::Netboot {
            return Vec::new();
        }
        // BTreeMap values come sorted by name.
        kernel.modules.values().filter(|info| datacentre_nic(&info.path).is_some()).map(|i| i.name.clone()).collect()
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
        [Profile::Netboot, Profile::NetbootAll, Profile::All]
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
    fn lab_profile_drops_a_25_gbe_only_driver_and_keeps_onboard_nics_the_every_nic_profile_keeps_both() {
        let kernel = kernel(
            &[
                "kernel/drivers/net/ethernet/intel/ice/ice.ko",
                "kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko",
                "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
                "kernel/drivers/net/ethernet/intel/ixgbe/ixgbe.ko",
                "kernel/drivers/net/ethernet/realtek/r8169.ko",
                "kernel/drivers/net/ethernet/sun/niu.ko",
                "kernel/drivers/net/ethernet/sun/sungem.ko",
            ],
            &[],
        );
        let (lab, _) = Profile::Netboot.modules(&kernel);
        assert_eq!(lab, ["e1000e", "ixgbe", "r8169", "sungem"]);
        assert_eq!(Profile::Netboot.left_out_nics(&kernel), ["ice", "mlx5_core", "niu"]);
        let (every, _) = Profile::NetbootAll.modules(&kernel);
        assert_eq!(every, ["e1000e", "ice", "ixgbe", "mlx5_core", "niu", "r8169", "sungem"]);
        assert!(Profile::NetbootAll.left_out_nics(&kernel).is_empty());
    }

    #[test]
    fn lab_rule_keeps_the_qemu_test_machines_nics() {
        // virtio-net, e1000, e1000e and rtl8139 (tests/tests/*.rs, Nic::new/Nic::tap).
        for path in [
            "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
            "kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko",
            "kernel/drivers/net/ethernet/realtek/8139cp.ko",
            "kernel/drivers/net/ethernet/realtek/8139too.ko",
            "kernel/drivers/net/virtio_net.ko",
        ] {
            assert_eq!(datacentre_nic(path), None, "{path}");
        }
    }

    #[test]
    fn lab_rule_entries_are_directories_or_modules_of_the_ethernet_tree_with_a_reason() {
        for (prefix, why) in DATACENTRE_NICS {
            assert!(prefix.ends_with('/') || prefix.ends_with(".ko"), "{prefix}");
            assert!(!why.is_empty(), "{prefix}");
            assert!(datacentre_nic(&format!("{ETHERNET_DIR}{prefix}")).is_some(), "{prefix}");
        }
        // Only the Ethernet tree is ruled: a USB adapter is never dropped.
        assert_eq!(datacentre_nic("kernel/drivers/net/usb/mellanox/x.ko"), None);
    }

    #[test]
    fn the_network_archive_keeps_the_way_to_the_root_and_leaves_disks_and_filesystems_to_the_image() {
        let kernel = kernel(
            &[
                "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/fs/nfs/nfsv3.ko",
                "kernel/fs/overlayfs/overlay.ko",
                "kernel/fs/xfs/xfs.ko",
                "kernel/drivers/ata/ahci.ko",
                "kernel/drivers/nvme/host/nvme.ko",
                "kernel/drivers/usb/host/xhci-pci.ko",
                "kernel/drivers/usb/storage/usb-storage.ko",
                "kernel/drivers/net/usb/r8152.ko",
            ],
            &[],
        );
        let (roots, _) = Profile::Netboot.modules(&kernel);
        assert_eq!(
            InArchive::Network.roots(&kernel, roots.clone()),
            ["e1000", "nfsv3", "r8152", "virtio_net", "virtio_pci", "xhci_pci"],
            "a USB NIC brings the USB host controllers"
        );
        let without_usb_nic: Vec<String> = roots.iter().filter(|r| *r != "r8152").cloned().collect();
        assert_eq!(InArchive::Network.roots(&kernel, without_usb_nic), ["e1000", "nfsv3", "virtio_net", "virtio_pci"]);
        assert_eq!(InArchive::All.roots(&kernel, roots.clone()), roots, "the old build keeps the whole profile");
        assert_eq!("all".parse::<InArchive>(), Ok(InArchive::All));
        assert_eq!("network".parse::<InArchive>(), Ok(InArchive::Network));
        assert!("disks".parse::<InArchive>().is_err());
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
        assert_eq!("netboot-all".parse::<Profile>(), Ok(Profile::NetbootAll));
        assert!("tiny".parse::<Profile>().is_err());
    }
}
