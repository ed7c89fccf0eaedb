//! Reading devices, network interfaces and disks from sysfs. `sys` is always a parameter
//! (`/sys` at boot, a temp tree in tests).

use std::path::{Path, PathBuf};

/// A device directory under `SYS/devices` with a `modalias` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Relative to SYS, in uevent form: `/devices/pci0000:00/0000:00:03.0`.
    pub devpath: String,
    pub modalias: String,
    /// Name of the bound driver, if any.
    pub driver: Option<String>,
}

impl Device {
    /// The sysfs name (`0000:00:03.0`).
    pub fn name(&self) -> &str {
        self.devpath.rsplit('/').next().unwrap_or(&self.devpath)
    }

    /// The bus, from the modalias prefix (`pci`, `virtio`, `acpi`, ...).
    pub fn bus(&self) -> &str {
        self.modalias.split_once(':').map_or("unknown", |(bus, _)| bus)
    }
}

/// Every device with a non-empty `modalias` under `SYS/devices`, in path order. Symlinks
/// are not followed (sysfs is full of them, pointing back up the tree).
pub fn scan_devices(sys: &Path) -> Vec<Device> {
    scan_from(sys, sys.join("devices"))
}

/// [`scan_devices`] of the device at `devpath` (`/devices/...`) and those under it.
pub fn scan_under(sys: &Path, devpath: &str) -> Vec<Device> {
    scan_from(sys, sys.join(devpath.trim_start_matches('/')))
}

fn scan_from(sys: &Path, top: PathBuf) -> Vec<Device> {
    let mut out = Vec::new();
    let mut todo = vec![top];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut subdirs = Vec::new();
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                subdirs.push(entry.path());
            }
        }
        if let Some(modalias) = read_trimmed(&dir.join("modalias")).filter(|m| !m.is_empty()) {
            out.push(Device { devpath: devpath(sys, &dir), modalias, driver: driver_of(&dir) });
        }
        // Reverse so that the stack pops in name order, giving a stable scan order.
        subdirs.sort();
        todo.extend(subdirs.into_iter().rev());
    }
    out
}

/// SYS/a/b -> "/a/b".
fn devpath(sys: &Path, dir: &Path) -> String {
    format!("/{}", dir.strip_prefix(sys).unwrap_or(dir).display())
}

/// Basename of the `driver` symlink of a device directory.
pub fn driver_of(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join("driver")).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// A network interface backed by a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    pub driver: Option<String>,
}

/// Interfaces in `SYS/class/net` that have a `device` (so not `lo` or virtual ones).
pub fn interfaces(sys: &Path) -> Vec<Interface> {
    let mut out: Vec<Interface> = sorted_entries(&sys.join("class/net"))
        .into_iter()
        .filter(|dir| dir.join("device").exists())
        .map(|dir| Interface {
            name: file_name(&dir),
            mac: read_trimmed(&dir.join("address")).unwrap_or_default(),
            driver: driver_of(&dir.join("device")),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A whole disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size_mib: u64,
    /// Drivers bound along the device's ancestor chain, nearest first.
    pub drivers: Vec<String>,
}

/// Name prefixes of block devices that are never disks of the machine.
const VIRTUAL_BLOCK: &[&str] = &["loop", "ram", "zram", "dm-", "md", "nbd"];

/// Whole disks in `SYS/class/block`: no partitions, no loop/ram and other virtual devices.
pub fn disks(sys: &Path) -> Vec<Disk> {
    let devices = std::fs::canonicalize(sys.join("devices")).unwrap_or_else(|_| sys.join("devices"));
    sorted_entries(&sys.join("class/block"))
        .into_iter()
        .filter(|link| !link.join("partition").exists())
        .filter(|link| !VIRTUAL_BLOCK.iter().any(|p| file_name(link).starts_with(p)))
        // NVMe multipath: the per-controller path disks (nvme0c0n1) are hidden; the
        // namespace disk (nvme0n1) is the one to use.
        .filter(|link| read_trimmed(&link.join("hidden")).as_deref() != Some("1"))
        .map(|link| {
            let sectors: u64 = read_trimmed(&link.join("size")).and_then(|s| s.parse().ok()).unwrap_or(0);
            Disk {
                name: file_name(&link),
                // 2048 sectors of 512 bytes make a MiB; dividing first cannot overflow.
                size_mib: sectors / 2048,
                drivers: disk_drivers(&link, &devices),
            }
        })
        .collect()
}

/// Drivers of a disk's own ancestors. A disk stacked on others has none of its own: an
/// NVMe multipath head sits under a virtual subsystem whose `device` directory links to
/// the controllers; newer kernels list the paths in `multipath`, device mapper in
/// `slaves`. Then the drivers are those of the first linked device that has some.
fn disk_drivers(link: &Path, devices: &Path) -> Vec<String> {
    let real = std::fs::canonicalize(link).unwrap_or_else(|_| link.to_path_buf());
    let own = real.parent().map(|parent| drivers_upward(parent, devices)).unwrap_or_default();
    if !own.is_empty() {
        return own;
    }
    ["multipath", "slaves", "device"]
        .iter()
        .flat_map(|dir| sorted_entries(&real.join(dir)))
        .filter(|entry| entry.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()))
        .filter_map(|lower| std::fs::canonicalize(lower).ok())
        .map(|lower| drivers_upward(&lower, devices))
        .find(|drivers| !drivers.is_empty())
        .unwrap_or_default()
}

/// Drivers bound to `dir` and its ancestors up to (not including) `top`, nearest first,
/// without repeats.
fn drivers_upward(dir: &Path, top: &Path) -> Vec<String> {
    let mut drivers: Vec<String> = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if !d.starts_with(top) || d == top {
            break;
        }
        if let Some(driver) = driver_of(d)
            && drivers.last() != Some(&driver)
        {
            drivers.push(driver);
        }
        at = d.parent();
    }
    drivers
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    out.sort();
    out
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Builders of fake sysfs trees for tests.
#[cfg(test)]
pub mod fake {
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// Create `SYS/<devpath>` with a modalias and, optionally, a bound driver.
    pub fn device(sys: &Path, devpath: &str, modalias: &str, driver: Option<&str>) {
        let dir = sys.join(devpath.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modalias"), format!("{modalias}\n")).unwrap();
        if let Some(driver) = driver {
            bind(sys, devpath, driver);
        }
    }

    /// Make `SYS/<devpath>/driver` point at a driver directory, as the kernel does on bind.
    pub fn bind(sys: &Path, devpath: &str, driver: &str) {
        let dir = sys.join(devpath.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let drv = sys.join("bus/any/drivers").join(driver);
        std::fs::create_dir_all(&drv).unwrap();
        let _ = std::fs::remove_file(dir.join("driver"));
        symlink(&drv, dir.join("driver")).unwrap();
    }

    /// A net interface `SYS/class/net/<name>` for the device at `devpath`.
    pub fn interface(sys: &Path, name: &str, mac: &str, devpath: &str) {
        let dir = sys.join(devpath.trim_start_matches('/')).join("net").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
        symlink(sys.join(devpath.trim_start_matches('/')), dir.join("device")).unwrap();
        std::fs::create_dir_all(sys.join("class/net")).unwrap();
        symlink(&dir, sys.join("class/net").join(name)).unwrap();
    }

    /// A block device at `SYS/<devpath>` (its full path) with `sectors`; `partition`
    /// marks it as a partition.
    pub fn block(sys: &Path, devpath: &str, sectors: u64, partition: bool) {
        let dir = sys.join(devpath.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("size"), format!("{sectors}\n")).unwrap();
        if partition {
            std::fs::write(dir.join("partition"), "1\n").unwrap();
        }
        std::fs::create_dir_all(sys.join("class/block")).unwrap();
        let name = devpath.rsplit('/').next().unwrap();
        symlink(&dir, sys.join("class/block").join(name)).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    #[test]
    fn scan_finds_modalias_devices_with_drivers_and_skips_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        device(
            sys,
            "/devices/pci0000:00/0000:00:03.0",
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
            Some("virtio-pci"),
        );
        device(sys, "/devices/pci0000:00/0000:00:03.0/virtio0", "virtio:d00000001v00001AF4", None);
        device(sys, "/devices/platform/serial8250", "platform:serial8250", Some("serial8250"));
        std::fs::create_dir_all(sys.join("devices/empty")).unwrap();
        std::fs::write(sys.join("devices/empty/modalias"), "\n").unwrap();
        // A symlink loop, as sysfs has (subsystem, driver, device links).
        std::os::unix::fs::symlink(sys.join("devices"), sys.join("devices/pci0000:00/loop")).unwrap();
        let found = scan_devices(sys);
        let summary: Vec<(&str, &str, Option<&str>)> =
            found.iter().map(|d| (d.devpath.as_str(), d.bus(), d.driver.as_deref())).collect();
        assert_eq!(
            summary,
            [
                ("/devices/pci0000:00/0000:00:03.0", "pci", Some("virtio-pci")),
                ("/devices/pci0000:00/0000:00:03.0/virtio0", "virtio", None),
                ("/devices/platform/serial8250", "platform", Some("serial8250")),
            ]
        );
        assert_eq!(found[1].name(), "virtio0");
        let under: Vec<String> =
            scan_under(sys, "/devices/pci0000:00/0000:00:03.0").into_iter().map(|d| d.devpath).collect();
        assert_eq!(under, ["/devices/pci0000:00/0000:00:03.0", "/devices/pci0000:00/0000:00:03.0/virtio0"]);
        assert_eq!(scan_under(sys, "/devices/gone"), []);
    }

    #[test]
    fn interfaces_need_a_device_and_report_mac_and_driver() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        device(sys, "/devices/pci0000:00/0000:00:03.0/virtio0", "virtio:d00000001v00001AF4", Some("virtio_net"));
        interface(sys, "eth0", "52:54:00:12:34:56", "/devices/pci0000:00/0000:00:03.0/virtio0");
        std::fs::create_dir_all(sys.join("devices/virtual/net/lo")).unwrap();
        std::os::unix::fs::symlink(sys.join("devices/virtual/net/lo"), sys.join("class/net/lo")).unwrap();
        assert_eq!(
            interfaces(sys),
            [Interface { name: "eth0".into(), mac: "52:54:00:12:34:56".into(), driver: Some("virtio_net".into()) }]
        );
    }

    #[test]
    fn disks_are_whole_and_list_drivers_nearest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        let ahci = "/devices/pci0000:00/0000:00:1f.2";
        bind(sys, ahci, "ahci");
        bind(sys, &format!("{ahci}/ata1/host0/target0:0:0/0:0:0:0"), "sd");
        block(sys, &format!("{ahci}/ata1/host0/target0:0:0/0:0:0:0/block/sda"), 131072, false);
        block(sys, &format!("{ahci}/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1"), 2048, true);
        bind(sys, "/devices/pci0000:00/0000:00:04.0", "virtio-pci");
        bind(sys, "/devices/pci0000:00/0000:00:04.0/virtio1", "virtio_blk");
        block(sys, "/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", 131072, false);
        bind(sys, "/devices/pci0000:00/0000:00:05.0", "nvme");
        block(sys, "/devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0c0n1", 2 * 131072, false);
        std::fs::write(sys.join("devices/pci0000:00/0000:00:05.0/nvme/nvme0/nvme0c0n1/hidden"), "1\n").unwrap();
        // The multipath head lives under a virtual subsystem that links to its controllers.
        let subsys = sys.join("devices/virtual/nvme-subsystem/nvme-subsys0");
        block(sys, "/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1", 2 * 131072, false);
        std::os::unix::fs::symlink(&subsys, subsys.join("nvme0n1/device")).unwrap();
        std::os::unix::fs::symlink(sys.join("devices/pci0000:00/0000:00:05.0/nvme/nvme0"), subsys.join("nvme0"))
            .unwrap();
        block(sys, "/devices/virtual/block/loop0", 100, false);
        block(sys, "/devices/virtual/block/ram0", 100, false);
        let got: Vec<(String, u64, String)> =
            disks(sys).into_iter().map(|d| (d.name, d.size_mib, d.drivers.join(","))).collect();
        let want = [
            ("nvme0n1".to_string(), 128, "nvme".to_string()),
            ("sda".to_string(), 64, "sd,ahci".to_string()),
            ("vda".to_string(), 64, "virtio_blk,virtio-pci".to_string()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_disk_size_near_u64_max_does_not_overflow() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path();
        block(sys, "/devices/virtual/huge/vdz", u64::MAX, false);
        let got: Vec<(String, u64)> = disks(sys).into_iter().map(|d| (d.name, d.size_mib)).collect();
        assert_eq!(got, [("vdz".to_string(), u64::MAX / 2048)]);
    }
}
