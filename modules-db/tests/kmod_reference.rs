//! Alias lookup against kmod itself: for every modalias captured from QEMU
//! machines, `Db::lookup` on a database of all modules must name the same
//! modules as `modprobe -R` on the depmod'ed copy of the same kernel tree.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use modules_db::{Db, KernelModules, encode, encode_with};

fn fixture() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/qemu-modaliases.txt");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let lines: Vec<String> =
        text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    assert!(lines.len() >= 30, "fixture has only {} modaliases", lines.len());
    lines
}

/// What kmod resolves `modalias` to; an empty set when it finds nothing.
/// An empty config directory keeps the host's /etc/modprobe.d out of it.
fn modprobe_resolve(config: &std::path::Path, modalias: &str) -> BTreeSet<String> {
    let out = Command::new("modprobe")
        .arg("-C")
        .arg(config)
        .arg("-d")
        .arg(common::depmod_basedir())
        .arg("-S")
        .arg(common::kernel_version())
        .arg("-R")
        .arg(modalias)
        .output()
        .unwrap_or_else(|e| panic!("cannot run modprobe: {e}; run qemu/setup (installs kmod)"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        assert!(stderr.contains("not found"), "modprobe -R {modalias} failed: {stderr}");
        return BTreeSet::new();
    }
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn all_modules_db(km: &KernelModules) -> Vec<u8> {
    let all: BTreeSet<String> = km.modules.keys().cloned().collect();
    encode(km, &all)
}

#[test]
fn lookup_names_the_same_modules_as_modprobe_for_every_fixture_modalias() {
    let km = KernelModules::load(&common::kernel_basedir(), &common::kernel_version()).expect("load kernel tree");
    let bytes = all_modules_db(&km);
    let db = Db::parse(&bytes).expect("parse db");
    let config = tempfile::tempdir().expect("temp dir");
    let mut matched_buses = BTreeSet::new();
    for modalias in fixture() {
        let want = modprobe_resolve(config.path(), &modalias);
        let found: Vec<_> = db.lookup(&modalias).into_iter().filter_map(|id| db.module(id)).collect();
        // kmod consults built-in aliases only when no module alias matches.
        let modules: BTreeSet<String> =
            found.iter().filter(|m| !m.is_builtin()).map(|m| m.name().to_string()).collect();
        let ours = if modules.is_empty() { found.iter().map(|m| m.name().to_string()).collect() } else { modules };
        assert_eq!(ours, want, "modules for {modalias}");
        if !want.is_empty() {
            matched_buses.insert(modalias.split(':').next().unwrap_or("").to_string());
        }
    }
    for bus in ["pci", "usb", "virtio", "platform", "acpi", "cpu"] {
        assert!(matched_buses.contains(bus), "no {bus} modalias of the fixture has a driver: {matched_buses:?}");
    }
}

#[test]
fn a_netboot_db_hints_at_left_out_drivers_and_names_pci_devices() {
    let km = KernelModules::load(&common::kernel_basedir(), &common::kernel_version()).expect("load kernel tree");
    let included = km.closure(["virtio_net", "virtio_blk", "virtio_pci", "nfsv4", "nfsv3"]).expect("closure");
    let pci_ids = std::fs::read_to_string("/usr/share/misc/pci.ids")
        .expect("/usr/share/misc/pci.ids: run qemu/setup (installs pci.ids)");
    let bytes = encode_with(&km, &included, modules_db::Split::ArchiveOnly, Some(&pci_ids));
    let all = all_modules_db(&km);
    println!(
        "db size: netboot set ({} modules) with pci.ids names {} bytes; all {} modules {} bytes",
        included.len(),
        bytes.len(),
        km.modules.len(),
        all.len()
    );
    let db = Db::parse(&bytes).expect("parse db");
    let e1000 = fixture().into_iter().find(|a| a.starts_with("pci:v00008086d0000100E")).expect("e1000 in fixture");
    assert!(db.lookup(&e1000).iter().all(|id| db.module(*id).is_some_and(|m| m.is_builtin())), "e1000 not included");
    assert_eq!(db.hint(&e1000), ["e1000"]);
    assert_eq!(db.pci_vendor_name(0x8086), Some("Intel Corporation"));
    assert!(db.pci_device_name(0x8086, 0x100e).is_some_and(|n| n.contains("82540EM")), "e1000's device name");
    let virtio_net = db.find("virtio_net").expect("virtio_net in db");
    assert_eq!(db.lookup("virtio:d00000001v00001AF4"), [virtio_net]);
}
