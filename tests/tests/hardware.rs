//! QEMU tests of the hardware stage: the real Debian kernel boots the real init in a
//! netboot-profile initramfs, and the console must show each device getting its
//! driver, NICs with their MACs, disks with their sizes, unknown hardware named,
//! and a clean power-off.
//!
//! Three VMs cover everything (a TCG boot costs 10-20 s); each VM runs once per test
//! process and the tests below assert on its shared result:
//! - A: pc + e1000 + rtl8139 + virtio-blk 64 MiB
//! - B: q35 + e1000e + virtio-net + AHCI disk 48 MiB + NVMe disk 80 MiB
//! - C: pc + rtl8139 + e1000 with 8139cp/8139too left out of the archive
//!
//! The guest boots with `ip=off` and no root: the hardware-only diagnostic run, which
//! prints the summary after the hardware stage and powers off. With no root there is
//! no image to load the storage drivers from, so these initrds hold the whole profile
//! (`--modules-in-archive all`, the build for a diagnostic initrd). `loglevel=4` keeps kernel info messages off the
//! console so they cannot split the init's lines.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qemu_tests::build::build_initramfs;
use qemu_tests::vm::{Disk, Machine, Nic, Vm, VmRun};

const APPEND: &str = "ip=off loglevel=4";

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot", "--modules-in-archive", "all"]))
}

fn without_8139_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| {
        build_initramfs(&["--profile", "netboot", "--modules-in-archive", "all", "--omit-modules", "8139cp,8139too"])
    })
}

fn vm_a() -> &'static VmRun {
    static RUN: OnceLock<VmRun> = OnceLock::new();
    RUN.get_or_init(|| {
        Vm::new("hardware-A-pc-e1000-rtl8139-virtio_blk")
            .machine(Machine::Pc)
            .nic(Nic::new("e1000", "52:54:00:12:34:01"))
            .nic(Nic::new("rtl8139", "52:54:00:12:34:02"))
            .disk(Disk::virtio(64))
            .initrd(netboot_initrd())
            .append(APPEND)
            .run()
            .unwrap()
    })
}

fn vm_b() -> &'static VmRun {
    static RUN: OnceLock<VmRun> = OnceLock::new();
    RUN.get_or_init(|| {
        Vm::new("hardware-B-q35-e1000e-virtio_net-ahci-nvme")
            .machine(Machine::Q35)
            .nic(Nic::new("e1000e", "52:54:00:12:34:11"))
            .nic(Nic::new("virtio-net-pci", "52:54:00:12:34:12"))
            .disk(Disk::ahci(48))
            .disk(Disk::nvme(80, "diskless-nvme1"))
            .initrd(netboot_initrd())
            .append(APPEND)
            .run()
            .unwrap()
    })
}

fn vm_c() -> &'static VmRun {
    static RUN: OnceLock<VmRun> = OnceLock::new();
    RUN.get_or_init(|| {
        Vm::new("hardware-C-omitted-8139")
            .machine(Machine::Pc)
            .nic(Nic::new("rtl8139", "52:54:00:12:34:21"))
            .nic(Nic::new("e1000", "52:54:00:12:34:22"))
            .initrd(without_8139_initrd())
            .append(APPEND)
            .run()
            .unwrap()
    })
}

/// The NIC with `mac` was bound by one of `drivers` and its module load was logged.
#[track_caller]
fn assert_nic(run: &VmRun, mac: &str, drivers: &str) {
    let m = run.log.assert_line(&format!(r"diskless: interface (\S+) {mac} driver ({drivers})\s*$"));
    assert!(
        m[1].starts_with("eth") || m[1].starts_with("en"),
        "odd interface name {:?} in {}",
        &m[1],
        run.log.path().display()
    );
    run.log.assert_line(&format!(r"diskless: loaded {} in \d+ ms", &m[2]));
}

/// A block device of `size_mib` with `name_re` and exactly `chain` as its drivers.
#[track_caller]
fn assert_block(run: &VmRun, name_re: &str, size_mib: u64, chain: &str) {
    run.log.assert_line(&format!(r"diskless: block {name_re} {size_mib} MiB drivers {}\s*$", regex_escape(chain)));
}

/// The boot went through the hardware stage and ended in a clean power-off.
#[track_caller]
fn assert_settled_and_powered_off(run: &VmRun) -> u64 {
    run.assert_clean_exit();
    run.log.assert_line(r"diskless: stage hardware done in \d+ ms \(t=[\d.]+ s\)");
    let settled = run.log.assert_line(r"diskless: hardware settled in \d+ ms \(t=[\d.]+ s\): (\d+) devices, (\d+) modules loaded, (\d+) without driver");
    assert!(
        settled[2].parse::<u64>().unwrap() > 0,
        "no modules loaded: {:?} ({})",
        settled.line,
        run.log.path().display()
    );
    run.log.assert_line(r"diskless: powering off");
    run.log.assert_no_line(r"diskless: ERROR");
    settled[3].parse().unwrap()
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

#[test]
fn e1000_nic_gets_e1000_driver_and_interface_with_its_mac() {
    assert_nic(vm_a(), "52:54:00:12:34:01", "e1000");
}

#[test]
fn rtl8139_nic_gets_8139_driver_and_interface_with_its_mac() {
    assert_nic(vm_a(), "52:54:00:12:34:02", "8139cp|8139too");
}

#[test]
fn virtio_blk_disk_appears_as_vd_with_size_and_driver_chain() {
    assert_block(vm_a(), "vd[a-z]", 64, "virtio_blk,virtio-pci");
}

#[test]
fn pc_machine_boot_settles_hardware_and_powers_off_cleanly() {
    assert_settled_and_powered_off(vm_a());
}

#[test]
fn e1000e_nic_gets_e1000e_driver_and_interface_with_its_mac() {
    assert_nic(vm_b(), "52:54:00:12:34:11", "e1000e");
}

#[test]
fn virtio_net_nic_gets_virtio_net_driver_and_interface_with_its_mac() {
    assert_nic(vm_b(), "52:54:00:12:34:12", "virtio_net");
}

#[test]
fn ahci_disk_appears_as_sd_with_size_and_driver_chain() {
    assert_block(vm_b(), "sd[a-z]", 48, "sd,ahci");
}

#[test]
fn nvme_disk_appears_as_nvme_namespace_with_size() {
    assert_block(vm_b(), r"nvme\d+n1", 80, "nvme");
}

#[test]
fn q35_machine_boot_settles_hardware_and_powers_off_cleanly() {
    assert_settled_and_powered_off(vm_b());
}

#[test]
fn nic_whose_driver_is_omitted_is_reported_by_vendor_name() {
    let run = vm_c();
    let m = run.log.assert_line(
        r"diskless: no driver for pci device (\S+) modalias (pci:v000010ECd00008139\S*) \((Realtek[^)]*)\)(; the kernel's (\S+) would bind it: rebuild with mkinitramfs --add-modules (\S+))?",
    );
    // The hint may name every module that would bind (a valid --add-modules LIST).
    if let Some(modules) = m.get(5) {
        assert!(
            modules.split(',').all(|x| x == "8139cp" || x == "8139too"),
            "suggested modules {modules:?} ({})",
            run.log.path().display()
        );
        assert_eq!(
            m.get(6),
            Some(modules),
            "the hint and the rebuild command disagree: {:?} ({})",
            m.line,
            run.log.path().display()
        );
    }
    run.log.assert_no_line(r"diskless: loaded 8139(cp|too) ");
    run.log.assert_no_line(r"diskless: interface \S+ 52:54:00:12:34:21 ");
}

#[test]
fn boot_with_omitted_nic_driver_still_binds_others_and_powers_off_cleanly() {
    let run = vm_c();
    assert_nic(run, "52:54:00:12:34:22", "e1000");
    let without = assert_settled_and_powered_off(run);
    assert!(without >= 1, "the rtl8139 is not counted as without driver ({})", run.log.path().display());
}
