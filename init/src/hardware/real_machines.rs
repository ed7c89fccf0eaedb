//! The coldplug's matching on the devices of real foreign machines: the device lists
//! captured from the QEMU boots of `tests/tests/lab_foreign.rs` (an ARM64 `virt`
//! machine, a POWER `pseries` machine) as fake sysfs trees, matched against the
//! database built from the real Debian kernel of that architecture (qemu/setup unpacks
//! it), and compared with what kmod's `modprobe --resolve-alias` finds in that kernel's
//! `modules.alias` written by `depmod`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::index::{DbIndex, ModuleIndex};
use super::{netpath, sysfs};

/// The Debian kernel of `arch` unpacked by qemu/setup: its BASEDIR and version.
fn foreign_kernel(arch: &str) -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../qemu/.cache/kernels").join(arch);
    let version = std::fs::read_to_string(dir.join("version"))
        .unwrap_or_else(|e| panic!("no {arch} kernel in {} ({e}): run qemu/setup", dir.display()));
    (dir.join("root"), version.trim().to_string())
}

/// `(devpath, modalias)` of a captured device list (modules-db's test data).
fn devices(list: &str) -> Vec<(String, String)> {
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (devpath, modalias) = l.split_once(' ').unwrap_or_else(|| panic!("no modalias on {l:?}"));
            (devpath.to_string(), modalias.to_string())
        })
        .collect()
}

/// The independent reference: `depmod` run on the kernel's modules in a temporary
/// tree, whose `kernel/` is a link to the cache's (depmod follows it and writes only into
/// the temporary directory; kmod 30 has no `--outdir`). Needs no root and writes nothing
/// into the cache: the lib's tests also run unprivileged.
fn depmod_copy(basedir: &Path, version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let from = basedir.join("lib/modules").join(version);
    let to = dir.path().join("lib/modules").join(version);
    std::fs::create_dir_all(&to).unwrap();
    std::os::unix::fs::symlink(from.join("kernel"), to.join("kernel")).unwrap();
    for file in ["modules.order", "modules.builtin", "modules.builtin.modinfo"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap_or_else(|e| panic!("{}: {e}", from.join(file).display()));
    }
    let mut depmod = Command::new("depmod");
    depmod.arg("-b").arg(dir.path()).arg(version);
    let out = depmod.output().unwrap_or_else(|e| panic!("cannot run {depmod:?}: {e}; install kmod"));
    assert!(out.status.success(), "{depmod:?}: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// The modules kmod resolves `modalias` to in the depmod'ed tree.
fn kmod_resolve(base: &Path, version: &str, modalias: &str) -> BTreeSet<String> {
    let out = Command::new("modprobe")
        .arg("-d")
        .arg(base)
        .args(["-S", version, "--resolve-alias", "--quiet", modalias])
        .output()
        .unwrap_or_else(|e| panic!("cannot run modprobe: {e}; install kmod"));
    String::from_utf8_lossy(&out.stdout).lines().map(modules_db::normalize_name).collect()
}

/// What the coldplug decided for one device.
#[derive(Debug)]
struct Matched {
    devpath: String,
    modalias: String,
    modules: BTreeSet<String>,
    /// On the boot's network path (its modules load first).
    network: bool,
}

/// The coldplug's decisions for every device of a machine.
struct Machine(Vec<Matched>);

impl Machine {
    fn device(&self, devpath: &str) -> &Matched {
        self.0.iter().find(|m| m.devpath == devpath).unwrap_or_else(|| panic!("no {devpath}"))
    }

    fn network_path(&self) -> Vec<&str> {
        self.0.iter().filter(|m| m.network).map(|m| m.devpath.as_str()).collect()
    }
}

/// What the coldplug decides for each captured device of `arch`'s machine: the fake
/// sysfs tree scanned as at boot, each device's modules from the database of the real
/// kernel, checked against kmod's.
fn coldplug_matches(arch: &str, list: &str) -> Machine {
    let (basedir, version) = foreign_kernel(arch);
    let km = modules_db::KernelModules::load(&basedir, &version).unwrap_or_else(|e| panic!("{arch}: {e}"));
    let all: BTreeSet<String> = km.modules.keys().cloned().collect();
    let bytes = modules_db::encode(&km, &all);
    let index = DbIndex(modules_db::Db::parse(&bytes).unwrap());

    let captured = devices(list);
    let sys = tempfile::tempdir().unwrap();
    for (devpath, modalias) in &captured {
        sysfs::fake::device(sys.path(), devpath, modalias, None);
    }
    let scanned = sysfs::scan_devices(sys.path());
    let mut want: Vec<_> = captured.iter().map(|(d, m)| (d.as_str(), m.as_str())).collect();
    want.sort();
    let got: Vec<_> = scanned.iter().map(|d| (d.devpath.as_str(), d.modalias.as_str())).collect();
    assert_eq!(got, want, "{arch}: the scan finds every captured device");

    let reference = depmod_copy(&basedir, &version);
    let matched = scanned
        .iter()
        .map(|device| {
            let matched: BTreeSet<String> = index.lookup(&device.modalias).into_iter().collect();
            let kmod = kmod_resolve(reference.path(), &version, &device.modalias);
            assert_eq!(
                matched, kmod,
                "{arch}: {} ({}): the coldplug's modules and kmod's",
                device.devpath, device.modalias
            );
            let paths: Vec<String> = matched.iter().filter_map(|m| index.module(m)?.path).collect();
            let network = netpath::network_path(&device.modalias, paths.iter().map(String::as_str)).is_some();
            Matched { devpath: device.devpath.clone(), modalias: device.modalias.clone(), modules: matched, network }
        })
        .collect();
    Machine(matched)
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn a_pseries_machine_gets_ibmveth_for_its_vio_nic_and_its_nvram_stays_without_a_module() {
    let machine =
        coldplug_matches("ppc64el", include_str!("../../../modules-db/tests/data/ppc64el-pseries-devices.txt"));
    let nic = machine.device("/devices/vio/71000002");
    assert_eq!(nic.modules, set(&["ibmveth"]), "{nic:?}");
    let nvram = machine.device("/devices/vio/71000001");
    assert!(nvram.modules.is_empty(), "the report names it without a driver: {nvram:?}");
    assert_eq!(machine.network_path(), ["/devices/vio/71000002"], "only the NIC is on the network path");
    let with_modules: Vec<(&str, &BTreeSet<String>)> =
        machine.0.iter().filter(|m| !m.modules.is_empty()).map(|m| (m.devpath.as_str(), &m.modules)).collect();
    assert_eq!(
        with_modules,
        [
            ("/devices/platform/rtc-generic", &set(&["rtc_generic"])),
            // POWER's vector crypto instructions: the whole kernel's modules, where the
            // netboot initrd has only crc32c_vpmsum.
            ("/devices/system/cpu", &set(&["crc32c_vpmsum", "vmx_crypto"])),
            ("/devices/vio/71000002", &set(&["ibmveth"])),
        ]
    );
}

#[test]
fn an_arm64_virt_machine_gets_virtio_pci_then_virtio_net_and_virtio_mmio_for_its_acpi_slots() {
    let machine = coldplug_matches("arm64", include_str!("../../../modules-db/tests/data/arm64-virt-devices.txt"));
    assert_eq!(machine.device("/devices/pci0000:00/0000:00:01.0").modules, set(&["virtio_pci"]));
    assert_eq!(machine.device("/devices/pci0000:00/0000:00:01.0/virtio0").modules, set(&["virtio_net"]));
    assert_eq!(
        machine.network_path(),
        ["/devices/pci0000:00/0000:00:01.0", "/devices/pci0000:00/0000:00:01.0/virtio0"]
    );
    let slots: Vec<&Matched> = machine.0.iter().filter(|m| m.modalias == "acpi:LNRO0005:").collect();
    assert_eq!(slots.len(), 2, "the two virtio-mmio slots kept in the list");
    for slot in slots {
        assert_eq!(slot.modules, set(&["virtio_mmio"]), "{slot:?}");
    }
    assert_eq!(machine.device("/devices/platform/rtc-efi.0").modules, set(&["rtc_efi"]));
}
