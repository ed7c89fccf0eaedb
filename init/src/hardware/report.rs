//! What the machine looks like once the hardware has settled: bound drivers and system
//! devices without one (detail lines: kmsg, and the console with `diskless.debug`),
//! network interfaces, whole disks, and the devices nothing drives that should have a
//! driver, with the module the administrator should add when the database knows one.

use std::path::Path;

use super::index::ModuleIndex;
use super::plan::{Plan, State};
use super::sysfs::{self, Device};
use crate::cmdline::Cmdline;
use crate::log::Log;
use crate::{debug, info};

/// Counts for the `hardware settled` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Devices with a modalias.
    pub devices: usize,
    pub without_driver: usize,
}

/// Log the report lines of the console contract and return the counts. `fleet`: the
/// archive's fleet marker (`FILE (N machines)`) when mkinitramfs built it with `--fleet`.
pub fn report(
    sys: &Path,
    index: &dyn ModuleIndex,
    plan: &Plan,
    cmdline: &Cmdline,
    fleet: Option<&str>,
    log: &Log,
) -> Counts {
    let devices = sysfs::scan_devices(sys);
    let mut without_driver = 0;
    for device in &devices {
        if let Some(driver) = &device.driver {
            debug!(log, "device {} driver {driver}", device.devpath);
            continue;
        }
        match no_driver_line(device, index, plan, cmdline) {
            Some(mut line) => {
                if let Some(fleet) = fleet.filter(|_| is_network_controller(&device.modalias)) {
                    line.push_str(&outside_the_fleet(fleet.trim(), &index.hint(&device.modalias)));
                }
                info!(log, "{line}");
                without_driver += 1;
            }
            // Kept in kmsg (and on the console with diskless.debug), so that every
            // device without a driver is listed somewhere.
            None => debug!(
                log,
                "no driver bound to {} device {} modalias {} (normal: the kernel drives it itself, or nothing in it claims it)",
                device.bus(),
                device.name(),
                device.modalias
            ),
        }
    }
    for iface in sysfs::interfaces(sys) {
        let driver = iface.driver.as_deref().unwrap_or("none");
        info!(log, "interface {} {} driver {driver}", iface.name, iface.mac);
    }
    for disk in sysfs::disks(sys) {
        info!(log, "block {} {} MiB drivers {}", disk.name, disk.size_mib, disk.drivers.join(","));
    }
    Counts { devices: devices.len(), without_driver }
}

/// The `no driver for ...` line for an unbound device, or `None` when a module that is
/// present (built in or loaded) matches it: built-in matches are devices the kernel
/// handles on its own terms, and a loaded match had its chance to bind.
pub fn no_driver_line(device: &Device, index: &dyn ModuleIndex, plan: &Plan, cmdline: &Cmdline) -> Option<String> {
    let matched = index.lookup(&device.modalias);
    let builtin = |m: &String| index.module(m).is_some_and(|e| e.is_builtin());
    if matched.iter().any(|m| builtin(m) || plan.is_present(m)) {
        return None;
    }
    // The image's drivers load once the root is mounted (the modules stage); only a
    // NIC needs its driver before, to reach the root at all.
    let deferred = |m: &String| plan.state(m) == Some(&State::Deferred);
    if !is_network_controller(&device.modalias) && matched.iter().any(deferred) {
        return None;
    }
    let hint = index.hint(&device.modalias);
    // Firmware-described and CPU/input "devices" without any module are the normal
    // state of every machine; they matter only when some module would take them.
    if matched.is_empty() && hint.is_empty() && !expects_driver(&device.modalias) {
        return None;
    }
    let mut line = format!("no driver for {} device {} modalias {}", device.bus(), device.name(), device.modalias);
    if let Some(names) = pci_names(&device.modalias, index) {
        line.push_str(&format!(" ({names})"));
    }
    // Modules in the archive that match but did not come up say why themselves.
    for m in &matched {
        if cmdline.is_blacklisted(m) {
            line.push_str(&format!("; {m} is blacklisted by modprobe.blacklist"));
        } else if let Some(why) = plan.state(m).and_then(State::why) {
            line.push_str(&format!("; {m} did not load: {why}"));
        }
    }
    if !hint.is_empty() {
        let list = hint.join(",");
        line.push_str(&format!("; the kernel's {list} would bind it: rebuild with mkinitramfs --add-modules {list}"));
        // The default profile leaves out datacentre NIC drivers by design; for a lab
        // that has such NICs the profile, not a list, is the lasting fix.
        if is_network_controller(&device.modalias) {
            line.push_str(&format!(" (or --profile {} for every NIC driver)", modules_db::EVERY_NIC_PROFILE));
        }
    }
    Some(line)
}

/// PCI base class of network controllers.
const NETWORK_PCI_CLASS: &str = "02";

fn is_network_controller(modalias: &str) -> bool {
    pci_class(modalias).is_some_and(|class| class.eq_ignore_ascii_case(NETWORK_PCI_CLASS))
}

/// The end of the line for a NIC a fleet initrd has no driver for: the fleet it was
/// built for, the module and the fix.
fn outside_the_fleet(fleet: &str, modules: &[String]) -> String {
    let (file, _) = fleet.rsplit_once(" (").unwrap_or((fleet, ""));
    let add = if modules.is_empty() { "its driver's module".to_string() } else { modules.join(",") };
    format!(
        "; this NIC is not in the fleet this initrd was built for ({fleet}): rebuild it with mkinitramfs --fleet \
         {file} --add-modules {add}; once this machine booted with syslog on, diskless inventory adds it to the fleet"
    )
}

/// The base class (two hex digits) of a PCI modalias.
pub(super) fn pci_class(modalias: &str) -> Option<&str> {
    // pci:v<8>d<8>sv<8>sd<8>bc<2>sc<2>i<2>
    let rest = modalias.strip_prefix("pci:")?;
    rest.find("bc").and_then(|at| rest.get(at + 2..at + 4))
}

/// Buses whose devices are all meant to have a driver, with the PCI classes that never
/// get one (host and ISA bridges are driven by the platform code, not by a driver).
/// `vio` is POWER's hypervisor bus (pseries): its NIC (ibmveth), disks (ibmvscsi) and
/// console are all devices a driver is for; device-tree platform devices (`of:`) are
/// not, many are described for the firmware alone.
const DRIVEN_BUSES: &[&str] = &["pci", "usb", "virtio", "vio"];
const UNDRIVEN_PCI_CLASSES: &[&str] = &["06"];

/// Whether a device on this modalias's bus is worth a line even when no module at all
/// is known for it.
fn expects_driver(modalias: &str) -> bool {
    let Some((bus, _)) = modalias.split_once(':') else { return false };
    if !DRIVEN_BUSES.contains(&bus) {
        return false;
    }
    !(pci_class(modalias).is_some_and(|c| UNDRIVEN_PCI_CLASSES.iter().any(|u| u.eq_ignore_ascii_case(c))))
}

/// `pci:v000010ECd00008139...` -> "<vendor name> <device name>" from the database.
fn pci_names(modalias: &str, index: &dyn ModuleIndex) -> Option<String> {
    let rest = modalias.strip_prefix("pci:v")?;
    let vendor = u16::from_str_radix(rest.get(4..8)?, 16).ok()?;
    let device = u16::from_str_radix(rest.strip_prefix(rest.get(..8)?)?.strip_prefix('d')?.get(4..8)?, 16).ok()?;
    let vendor_name = index.pci_vendor_name(vendor)?;
    Some(match index.pci_device_name(vendor, device) {
        Some(device_name) => format!("{vendor_name} {device_name}"),
        None => format!("{vendor_name} device {device:04x}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::index::fake::FakeIndex;
    use crate::hardware::sysfs::fake;
    use crate::log::captured;

    const RTL8139: &str = "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00";

    fn index() -> FakeIndex {
        let mut idx = FakeIndex::default();
        idx.add_builtin("rtc_cmos", &["platform:rtc_cmos"]);
        idx.add("virtio_pci", &[], &["pci:v00001AF4d*"]);
        idx.add("e1000", &[], &["pci:v00008086d0000100Esv*"]);
        idx.hints.push(("pci:v000010ECd00008139*".into(), "8139cp".into()));
        idx.vendors.insert(0x10ec, "Realtek Semiconductor Co., Ltd.".into());
        idx.devices.insert((0x10ec, 0x8139), "RTL-8100/8101L/8139 PCI Fast Ethernet Adapter".into());
        idx.vendors.insert(0x8086, "Intel Corporation".into());
        idx
    }

    fn device(devpath: &str, modalias: &str) -> Device {
        Device { devpath: devpath.into(), modalias: modalias.into(), driver: None }
    }

    #[test]
    fn missing_module_line_has_pci_names_and_the_rebuild_hint() {
        let line = no_driver_line(
            &device("/devices/pci0000:00/0000:00:03.0", RTL8139),
            &index(),
            &Plan::new(),
            &Cmdline::default(),
        );
        assert_eq!(
            line.as_deref(),
            Some(
                "no driver for pci device 0000:00:03.0 modalias pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00 \
                 (Realtek Semiconductor Co., Ltd. RTL-8100/8101L/8139 PCI Fast Ethernet Adapter); \
                 the kernel's 8139cp would bind it: rebuild with mkinitramfs --add-modules 8139cp \
                 (or --profile netboot-all for every NIC driver)"
            )
        );
    }

    #[test]
    fn a_storage_controller_whose_driver_is_the_images_is_no_missing_driver_but_a_nic_is() {
        let mut idx = index();
        idx.add_image("ahci", &[], &["pci:v00008086d00002922*"]);
        idx.add_image("8139cp", &[], &["pci:v000010ECd00008139*"]);
        let mut plan = Plan::new();
        plan.request("ahci", &idx);
        plan.request("8139cp", &idx);
        let ahci = device("/devices/pci0000:00/0000:00:1f.2", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01");
        assert_eq!(no_driver_line(&ahci, &idx, &plan, &Cmdline::default()), None, "loaded after the root is mounted");
        // A NIC is needed before: its driver in the image cannot reach the root.
        let nic = device("/devices/pci0000:00/0000:00:03.0", RTL8139);
        let line = no_driver_line(&nic, &idx, &plan, &Cmdline::default()).unwrap();
        assert!(line.contains("rebuild with mkinitramfs --add-modules 8139cp"), "{line}");
    }

    #[test]
    fn a_datacentre_nic_left_out_by_the_lab_profile_names_the_every_nic_profile() {
        let mut idx = index();
        idx.hints.push(("pci:v000015B3d00001017*".into(), "mlx5_core".into()));
        let connectx5 =
            device("/devices/pci0000:00/0000:00:06.0", "pci:v000015B3d00001017sv000015B3sd00000007bc02sc00i00");
        let line = no_driver_line(&connectx5, &idx, &Plan::new(), &Cmdline::default()).unwrap();
        assert!(
            line.ends_with(
                "; the kernel's mlx5_core would bind it: rebuild with mkinitramfs --add-modules mlx5_core \
                 (or --profile netboot-all for every NIC driver)"
            ),
            "{line}"
        );
        // Not a network controller: the module list alone is the fix.
        idx.hints.push(("pci:v00001000d00000097*".into(), "mpt3sas".into()));
        let sas = device("/devices/pci0000:00/0000:00:07.0", "pci:v00001000d00000097sv00001000sd00003090bc01sc07i00");
        let line = no_driver_line(&sas, &idx, &Plan::new(), &Cmdline::default()).unwrap();
        assert!(line.ends_with("rebuild with mkinitramfs --add-modules mpt3sas"), "{line}");
    }

    #[test]
    fn builtin_and_loaded_matches_are_not_reported() {
        let idx = index();
        let mut plan = Plan::new();
        let cmdline = Cmdline::default();
        assert_eq!(
            no_driver_line(&device("/devices/platform/rtc_cmos", "platform:rtc_cmos"), &idx, &plan, &cmdline),
            None
        );
        let virtio = device("/devices/pci0000:00/0000:00:04.0", "pci:v00001AF4d00001000sv0bc02");
        assert!(no_driver_line(&virtio, &idx, &plan, &cmdline).is_some(), "not loaded yet: reported");
        plan.request("virtio_pci", &idx);
        let job = plan.next_job().unwrap();
        plan.finish(&job.module, Ok(()));
        assert_eq!(no_driver_line(&virtio, &idx, &plan, &cmdline), None);
    }

    #[test]
    fn blacklisted_and_failed_matches_are_named() {
        let idx = index();
        let e1000 = device("/devices/pci0000:00/0000:00:05.0", "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00");
        let cmdline = Cmdline::parse("modprobe.blacklist=e1000");
        let line = no_driver_line(&e1000, &idx, &Plan::new(), &cmdline).unwrap();
        assert!(
            line.ends_with("(Intel Corporation device 100e); e1000 is blacklisted by modprobe.blacklist"),
            "{line}"
        );
        let mut plan = Plan::new();
        plan.request("e1000", &idx);
        plan.next_job();
        let einval = std::io::Error::from_raw_os_error(rustix::io::Errno::INVAL.raw_os_error());
        plan.finish("e1000", Err(crate::hardware::plan::Failure::load(einval)));
        let line = no_driver_line(&e1000, &idx, &plan, &Cmdline::default()).unwrap();
        assert!(
            line.ends_with(
                "; e1000 did not load: Invalid argument (os error 22) (the kernel rejected the module or its options; see dmesg)"
            ),
            "{line}"
        );
    }

    #[test]
    fn non_pci_devices_are_reported_only_when_a_module_is_known() {
        let mut idx = index();
        let serio = device("/devices/platform/i8042/serio0", "serio:ty01pr00id00ex00");
        assert_eq!(no_driver_line(&serio, &idx, &Plan::new(), &Cmdline::default()), None);
        idx.hints.push(("serio:ty01*".into(), "atkbd".into()));
        let line = no_driver_line(&serio, &idx, &Plan::new(), &Cmdline::default()).unwrap();
        assert!(
            line.starts_with("no driver for serio device serio0 modalias serio:ty01pr00id00ex00; the kernel's atkbd"),
            "{line}"
        );
    }

    #[test]
    fn unknown_pci_usb_virtio_devices_are_reported_but_not_bridges() {
        let idx = index();
        let (plan, cmdline) = (Plan::new(), Cmdline::default());
        let smbus = device("/devices/pci0000:00/0000:00:1f.3", "pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00");
        let line = no_driver_line(&smbus, &idx, &plan, &cmdline).unwrap();
        assert_eq!(
            line,
            "no driver for pci device 0000:00:1f.3 modalias pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00 (Intel Corporation device 2930)"
        );
        let host_bridge =
            device("/devices/pci0000:00/0000:00:00.0", "pci:v00008086d000029C0sv00001AF4sd00001100bc06sc00i00");
        assert_eq!(no_driver_line(&host_bridge, &idx, &plan, &cmdline), None);
        let usb =
            device("/devices/pci0000:00/0000:00:1d.0/usb1/1-1", "usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00");
        assert!(no_driver_line(&usb, &idx, &plan, &cmdline).is_some());
    }

    #[test]
    fn a_power_vio_device_without_a_module_is_named_and_a_device_tree_one_is_not() {
        let mut idx = index();
        idx.add("ibmveth", &[], &["vio:TnetworkSIBM,l-lan*"]);
        let (mut plan, cmdline) = (Plan::new(), Cmdline::default());
        let vscsi = device("/devices/vio/2000", "vio:TvscsiSIBM,v-scsi");
        assert_eq!(
            no_driver_line(&vscsi, &idx, &plan, &cmdline).as_deref(),
            Some("no driver for vio device 2000 modalias vio:TvscsiSIBM,v-scsi")
        );
        let lan = device("/devices/vio/71000003", "vio:TnetworkSIBM,l-lan");
        assert!(no_driver_line(&lan, &idx, &plan, &cmdline).is_some(), "ibmveth not loaded yet: reported");
        plan.request("ibmveth", &idx);
        let job = plan.next_job().unwrap();
        plan.finish(&job.module, Ok(()));
        assert_eq!(no_driver_line(&lan, &idx, &plan, &cmdline), None);
        let flash = device("/devices/platform/4000000.flash", "of:NflashT(null)Ccfi-flash");
        assert_eq!(no_driver_line(&flash, &idx, &plan, &cmdline), None, "firmware-described, no module known");
    }

    #[test]
    fn report_logs_contract_lines_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        fake::device(sys, "/devices/pci0000:00/0000:00:03.0", RTL8139, None);
        fake::device(
            sys,
            "/devices/pci0000:00/0000:00:04.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            Some("virtio-pci"),
        );
        fake::device(sys, "/devices/pci0000:00/0000:00:04.0/virtio0", "virtio:d00000001v00001AF4", Some("virtio_net"));
        fake::device(sys, "/devices/platform/rtc_cmos", "platform:rtc_cmos", None);
        fake::interface(sys, "eth0", "52:54:00:12:34:56", "/devices/pci0000:00/0000:00:04.0/virtio0");
        fake::bind(sys, "/devices/pci0000:00/0000:00:05.0", "virtio-pci");
        fake::bind(sys, "/devices/pci0000:00/0000:00:05.0/virtio1", "virtio_blk");
        fake::block(sys, "/devices/pci0000:00/0000:00:05.0/virtio1/block/vda", 131072, false);
        let (log, console) = captured();
        let counts = report(sys, &index(), &Plan::new(), &Cmdline::default(), None, &log);
        assert_eq!(counts, Counts { devices: 4, without_driver: 1 });
        let text = console.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("diskless: no driver for pci device 0000:00:03.0 modalias pci:v000010EC"),
            "{text}"
        );
        assert_eq!(lines[1], "diskless: interface eth0 52:54:00:12:34:56 driver virtio_net");
        assert_eq!(lines[2], "diskless: block vda 64 MiB drivers virtio_blk,virtio-pci");
    }

    #[test]
    fn a_nic_outside_the_fleet_of_a_fleet_initrd_is_named_with_its_module_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        fake::device(sys, "/devices/pci0000:00/0000:00:03.0", RTL8139, None);
        // Not a NIC: no fleet advice.
        fake::device(
            sys,
            "/devices/pci0000:00/0000:00:1f.3",
            "pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00",
            None,
        );
        let (log, console) = captured();
        let fleet = "/srv/diskless/fleet.toml (12 machines)\n";
        report(sys, &index(), &Plan::new(), &Cmdline::default(), Some(fleet), &log);
        let text = console.text();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("diskless: no driver for pci device 0000:00:03.0 modalias pci:v000010EC"),
            "{text}"
        );
        assert!(
            lines[0].ends_with(
                "(Realtek Semiconductor Co., Ltd. RTL-8100/8101L/8139 PCI Fast Ethernet Adapter); the kernel's 8139cp \
                 would bind it: rebuild with mkinitramfs --add-modules 8139cp (or --profile netboot-all for every NIC \
                 driver); this NIC is not in the fleet this initrd was built for (/srv/diskless/fleet.toml (12 \
                 machines)): rebuild it with mkinitramfs --fleet /srv/diskless/fleet.toml --add-modules 8139cp; once \
                 this machine booted with syslog on, diskless inventory adds it to the fleet"
            ),
            "{text}"
        );
        assert!(lines[1].starts_with("diskless: no driver for pci device 0000:00:1f.3") && !lines[1].contains("fleet"));
    }

    #[test]
    fn every_device_without_a_driver_is_listed_in_detail_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        fake::device(sys, "/devices/LNXSYSTM:00/LNXPWRBN:00", "acpi:LNXPWRBN:", None);
        let (log, console) = captured();
        log.set_debug(true);
        let counts = report(sys, &index(), &Plan::new(), &Cmdline::default(), None, &log);
        assert_eq!(counts, Counts { devices: 1, without_driver: 0 });
        assert!(
            console.text().contains("no driver bound to acpi device LNXPWRBN:00 modalias acpi:LNXPWRBN: (normal:"),
            "{}",
            console.text()
        );
    }
}
