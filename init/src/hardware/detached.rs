//! Which of the image's drivers the modules stage loads before the local stage, and
//! which load after the hand-off.
//!
//! Only the disk path is on the critical path: the local stage needs the disks of
//! storage controllers (PCI class 01: AHCI, IDE, NVMe, SCSI HBAs, virtio block and
//! SCSI), USB and SD host controllers with the mass-storage devices behind them, and
//! the SCSI disk driver for what they find. Devices of buses without classes (an ARM
//! board's AHCI, SDHCI or xHCI from ACPI or the device tree) count by their drivers'
//! place in the kernel tree ([`DISK_DRIVER_DIRS`]). Every other device's driver (kvm, input,
//! sound, sensors, crypto engines, fw_cfg...) is loaded from the image all the same, as
//! the HOWTO's autoconfig did, but by a child process forked right before the exec of
//! the image's init ([`crate::os::Os::load_detached`]).
//!
//! Why a child at the hand-off, and not a thread during the local and layers stages:
//! PID 1's threads end at its exec, so a thread would have to be joined before it, on
//! the critical path again (those loads took 0.6 s of the 0.95 s stage under TCG,
//! against a local stage of 0.2 s). A child outlives the exec (its parent stays PID 1,
//! which becomes the image's init and reaps it) and its loads overlap the image's own
//! start. It is forked from a process with threads, so it makes only
//! async-signal-safe calls: the order of the loads (each after what it needs) and every
//! log line are made before the fork, the loads run one at a time, each result goes to
//! `/dev/kmsg`, and the child starts no new load after [`LIMIT`]. An image that loads drivers
//! itself is left to do so: with a udev daemon in the image ([`UDEV_DAEMONS`]) no child
//! starts, since udev's coldplug loads the same drivers from the same directory a few
//! hundred milliseconds later, and two loaders racing over one file cost CPU at the
//! image's start and made the scratch cache (`scratch.cache`) write pages again on a
//! warm boot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::index::ModuleEntry;
use super::plan::Plan;
use super::{Modules, report, sysfs};

/// After this long the child starts no new load (one that is running is the kernel's
/// to finish) and leaves the rest.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Where an image keeps a udev daemon (systemd's, eudev's), as the image sees it.
pub const UDEV_DAEMONS: &[&str] =
    &["/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd", "/sbin/udevd", "/usr/sbin/udevd"];

/// The image's udev daemon, if it has one: it loads the remaining drivers itself.
/// Symlinks (a merged /usr) resolve inside the image.
pub fn image_udev(newroot: &Path) -> Option<&'static str> {
    UDEV_DAEMONS
        .iter()
        .copied()
        .find(|path| crate::local::image::open_in_image(newroot, Path::new(path), rustix::fs::OFlags::PATH).is_ok())
}

/// One load of the child, as the image sees its files after the hand-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedLoad {
    /// Normalised module name.
    pub module: String,
    /// `/lib/modules/RELEASE/kernel/...`, in the image's root.
    pub path: PathBuf,
    /// Options from the command line.
    pub params: String,
}

/// Where the kernel keeps the drivers of storage controllers, USB and SD hosts and
/// disks, relative to `lib/modules/VERSION`: a device of a bus without classes (ACPI,
/// the device tree's platform devices: an ARM board's AHCI, SDHCI or xHCI) is on the
/// disk path when a driver from here matches it.
const DISK_DRIVER_DIRS: &[&str] = &[
    "kernel/drivers/ata/",
    "kernel/drivers/block/",
    "kernel/drivers/mmc/host/",
    "kernel/drivers/nvme/",
    "kernel/drivers/scsi/",
    "kernel/drivers/usb/host/",
    "kernel/drivers/usb/storage/",
];

/// Whether a device, with the modules its modalias matches, is on the way to the disks
/// the local stage looks for: by its class ([`is_disk_path`]) or by its drivers.
pub fn is_disk_device(modalias: &str, drivers: &[ModuleEntry]) -> bool {
    is_disk_path(modalias)
        || drivers
            .iter()
            .filter_map(|driver| driver.path.as_deref())
            .any(|path| DISK_DRIVER_DIRS.iter().any(|dir| path.starts_with(dir)))
}

/// Whether a device is on the way to the disks the local stage looks for by its
/// modalias alone: see the module documentation.
pub fn is_disk_path(modalias: &str) -> bool {
    if let Some((class, subclass)) = pci_class_and_subclass(modalias) {
        return class.eq_ignore_ascii_case("01")
            // USB host controllers (a USB disk is behind one) and SD host controllers.
            || (class.eq_ignore_ascii_case("0c") && subclass == "03")
            || (class == "08" && subclass == "05");
    }
    // virtio device IDs 2 (block) and 8 (SCSI host).
    if let Some(rest) = modalias.strip_prefix("virtio:") {
        return rest.starts_with("d00000002v") || rest.starts_with("d00000008v");
    }
    // A USB interface of the mass-storage class (usb_storage, uas). The fields before
    // `ic` are hex digits, which never hold a lower-case `i`.
    if let Some(rest) = modalias.strip_prefix("usb:") {
        return rest.find("ic").and_then(|at| rest.get(at + 2..at + 4)) == Some("08");
    }
    // SCSI disks and reduced-block-command devices (sd_mod), SD/MMC cards (mmc_block),
    // POWER's virtual SCSI adapter.
    ["scsi:t-0x00", "scsi:t-0x0e", "mmc:", "vio:Tvscsi"].iter().any(|prefix| modalias.starts_with(prefix))
}

/// The base class and subclass (two hex digits each) of a PCI modalias.
fn pci_class_and_subclass(modalias: &str) -> Option<(&str, &str)> {
    let class = report::pci_class(modalias)?;
    let rest = modalias.strip_prefix("pci:")?;
    let subclass = rest.find("sc").and_then(|at| rest.get(at + 2..at + 4))?;
    Some((class, subclass))
}

/// The loads left for the child: the image's drivers of every device off the disk
/// path that nothing loaded yet, with what they need, each after its dependencies.
/// Blacklisted and built-in modules are left out, and so are drivers of the archive
/// (the hardware stage loaded those, or said why not).
pub fn plan(sys: &Path, modules: &Modules) -> Vec<DetachedLoad> {
    let index = &*modules.index;
    let mut plan = Plan::with_image(true);
    for device in sysfs::scan_devices(sys) {
        let matched = index.lookup(&device.modalias);
        let entries: Vec<ModuleEntry> = matched.iter().filter_map(|m| index.module(m)).collect();
        if is_disk_device(&device.modalias, &entries) {
            continue;
        }
        for entry in entries {
            let module = entry.name.clone();
            if !entry.in_image || entry.is_builtin() || modules.cmdline.is_blacklisted(&module) {
                continue;
            }
            modules.mark_live(&mut plan, std::slice::from_ref(&module));
            plan.request(&module, index);
        }
    }
    let dir = Path::new("/lib/modules").join(modules.release());
    plan.into_order()
        .into_iter()
        .map(|job| DetachedLoad {
            path: dir.join(&job.path),
            params: modules.cmdline.module_options(&job.module),
            module: job.module,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_images_udev_is_found_through_its_merged_usr() {
        let img = tempfile::tempdir().unwrap();
        assert_eq!(image_udev(img.path()), None);
        std::fs::create_dir_all(img.path().join("usr/lib/systemd")).unwrap();
        std::fs::write(img.path().join("usr/lib/systemd/systemd-udevd"), "").unwrap();
        std::os::unix::fs::symlink("usr/lib", img.path().join("lib")).unwrap();
        assert_eq!(image_udev(img.path()), Some("/lib/systemd/systemd-udevd"));
    }

    #[test]
    fn the_disk_path_is_storage_controllers_usb_and_sd_hosts_mass_storage_and_disks() {
        let on = [
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // AHCI
            "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", // NVMe
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", // virtio-blk
            "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", // xHCI
            "pci:v00008086d00007020sv00001AF4sd00001100bc0Csc03i00", // UHCI
            "pci:v00001180d00000822sv00001028sd00000000bc08sc05i01", // SD host
            "virtio:d00000002v00001AF4",
            "virtio:d00000008v00001AF4",
            "usb:v0781p5581d0100dc00dsc00dp00ic08isc06ip50in00",
            "scsi:t-0x00",
            "mmc:block",
        ];
        for modalias in on {
            assert!(is_disk_path(modalias), "{modalias}");
        }
        let off = [
            "pci:v00008086d00007113sv00001AF4sd00001100bc06sc80i00", // PIIX4 ACPI (i2c_piix4)
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", // NIC
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00", // VGA
            "virtio:d00000001v00001AF4",                             // virtio-net
            "usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00",     // USB tablet (HID)
            "scsi:t-0x05",                                           // CD-ROM
            "cpu:type:x86,ven0000fam0006mod003F:feature:,0000",
            "platform:pcspkr",
            "serio:ty01pr00id00ex00",
            "acpi:QEMU0002:",
        ];
        for modalias in off {
            assert!(!is_disk_path(modalias), "{modalias}");
        }
    }

    fn driver(path: Option<&str>) -> ModuleEntry {
        ModuleEntry {
            name: "m".into(),
            path: path.map(str::to_string),
            in_image: true,
            depends: vec![],
            softdep_pre: vec![],
            softdep_post: vec![],
        }
    }

    #[test]
    fn a_board_storage_controller_without_a_class_is_on_the_disk_path_by_its_driver() {
        // An ARM board's AHCI, SDHCI and xHCI described by ACPI or the device tree.
        for (modalias, path) in [
            ("acpi:LNRO001E:", "kernel/drivers/ata/ahci_platform.ko"),
            ("of:NmmcT(null)Cfsl,imx6q-usdhc", "kernel/drivers/mmc/host/sdhci-esdhc-imx.ko.xz"),
            ("of:NusbT(null)Cgeneric-xhci", "kernel/drivers/usb/host/xhci-plat-hcd.ko"),
        ] {
            assert!(!is_disk_path(modalias), "{modalias}: no class to go by");
            assert!(is_disk_device(modalias, &[driver(Some(path))]), "{modalias} with {path}");
        }
        for (modalias, drivers) in [
            ("acpi:QEMU0002:", vec![driver(Some("kernel/drivers/firmware/qemu_fw_cfg.ko"))]),
            ("platform:pcspkr", vec![driver(Some("kernel/drivers/input/misc/pcspkr.ko"))]),
            ("acpi:PNP0A03:", vec![driver(None)]),
            ("acpi:LNRO0005:", vec![]),
        ] {
            assert!(!is_disk_device(modalias, &drivers), "{modalias}: {drivers:?}");
        }
    }
}
