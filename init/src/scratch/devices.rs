//! Block devices from sysfs: `<sys>/class/block/<name>` for every whole disk and
//! partition the kernel knows (it exposes MBR and GPT partitions as `sda1`, `vda2`,
//! `nvme0n1p1`, each with a `partition` file).

use std::cmp::Ordering;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Device names never probed: virtual or removable-media devices whose content is not
/// a local disk (loop, ram disks, zram swap, CD-ROMs, floppies that block for seconds
/// without a medium, network block devices).
const IGNORED_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr", "fd", "nbd"];

/// sysfs sizes are in 512-byte sectors whatever the logical block size.
const SECTOR: u64 = 512;

/// One block device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    /// Kernel name (`sda1`).
    pub name: String,
    /// The device node (`/dev/sda1`).
    pub path: PathBuf,
    pub size: u64,
    pub read_only: bool,
    pub removable: bool,
    /// Partition number, for partitions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// The whole disk of a partition (`sda`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Whether a whole disk has partitions the kernel found.
    pub has_partitions: bool,
    /// Where the device sits under `/sys/devices`: controller order, stable from boot
    /// to boot unlike `sdX` names on several controllers.
    pub devpath: String,
}

/// Failure to list the block devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `<sys>/class/block` cannot be listed.
    #[error(
        "cannot list block devices in {}: {error} (is sysfs mounted?); no scratch disk or swap is used",
        .path.display()
    )]
    ListClass {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_flag(path: &Path) -> bool {
    read_trimmed(path).as_deref() == Some("1")
}

/// Whether a device name is never probed.
pub fn ignored(name: &str) -> bool {
    IGNORED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Every block device under `class_block` (`/sys/class/block`), with `/dev/<name>`
/// under `dev_dir`, sorted by [`device_order`]. Ignored kinds ([`ignored`]), hidden
/// devices (NVMe multipath paths, which have no device node) and devices whose size
/// cannot be read are left out; unreadable attributes of one device do not stop the
/// listing of the others.
pub fn list(class_block: &Path, dev_dir: &Path) -> Result<Vec<BlockDevice>, DeviceError> {
    let entries =
        fs::read_dir(class_block).map_err(|error| DeviceError::ListClass { path: class_block.into(), error })?;
    let mut devices = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ignored(&name) || name.contains('/') {
            continue;
        }
        let dir = entry.path();
        if read_flag(&dir.join("hidden")) {
            continue;
        }
        let Some(sectors) = read_trimmed(&dir.join("size")).and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let partition = read_trimmed(&dir.join("partition")).and_then(|s| s.parse().ok());
        // The class entry is a symlink into /sys/devices/.../block/<disk>[/<part>].
        let target = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let disk = partition.and(target.parent().and_then(|p| p.file_name())).map(|d| d.to_string_lossy().into_owned());
        let has_partitions = partition.is_none()
            && fs::read_dir(&target)
                .map(|es| es.flatten().any(|e| e.path().join("partition").is_file()))
                .unwrap_or(false);
        // A partition is removable when its disk is.
        let removable_file = match partition {
            Some(_) => target.parent().map(|p| p.join("removable")).unwrap_or_default(),
            None => dir.join("removable"),
        };
        devices.push(BlockDevice {
            path: dev_dir.join(&name),
            size: sectors.saturating_mul(SECTOR),
            read_only: read_flag(&dir.join("ro")),
            removable: read_flag(&removable_file),
            partition,
            disk,
            has_partitions,
            devpath: target.display().to_string(),
            name,
        });
    }
    devices.sort_by(device_order);
    Ok(devices)
}

/// Compares names the way people count: `sda2` < `sda10`, `vdb` < `vdc`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let order = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits.iter().position(|&d| d != b'0').unwrap_or(digits.len());
    &digits[start..]
}

/// Compares sysfs device paths component by component: fixed-width bus addresses
/// (`0000:00:1f.2`, hexadecimal) byte by byte, everything else (`ata10`, `host2`)
/// naturally.
fn devpath_cmp(a: &str, b: &str) -> Ordering {
    let mut a = a.split('/');
    let mut b = b.split('/');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = if x.len() == y.len() && x.contains(':') { x.cmp(y) } else { natural_cmp(x, y) };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Controller order (sysfs device path), then name.
pub fn device_order(a: &BlockDevice, b: &BlockDevice) -> Ordering {
    devpath_cmp(&a.devpath, &b.devpath).then_with(|| natural_cmp(&a.name, &b.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs: devices under `devices/`, links under `class/block/`.
    struct Sys {
        dir: tempfile::TempDir,
    }

    impl Sys {
        fn new() -> Sys {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("class/block")).unwrap();
            Sys { dir }
        }
        fn class(&self) -> PathBuf {
            self.dir.path().join("class/block")
        }
        /// `rel` under devices/, e.g. `pci0/ata1/block/sda` or `.../sda/sda1`.
        fn add(&self, rel: &str, sectors: u64, attrs: &[(&str, &str)]) {
            let dev = self.dir.path().join("devices").join(rel);
            fs::create_dir_all(&dev).unwrap();
            fs::write(dev.join("size"), format!("{sectors}\n")).unwrap();
            for (k, v) in attrs {
                fs::write(dev.join(k), v).unwrap();
            }
            let name = Path::new(rel).file_name().unwrap();
            symlink(&dev, self.class().join(name)).unwrap();
        }
    }

    #[test]
    fn disks_and_partitions_with_sizes_parents_and_flags() {
        let sys = Sys::new();
        sys.add("pci0/ata1/block/sda", 2048, &[("ro", "0\n"), ("removable", "1\n")]);
        sys.add("pci0/ata1/block/sda/sda1", 1024, &[("partition", "1\n"), ("ro", "0\n")]);
        sys.add("pci0/virtio2/block/vdb", 4096, &[("ro", "1\n")]);
        sys.add("virtual/block/loop0", 100, &[]);
        sys.add("virtual/block/zram0", 100, &[]);
        sys.add("pci0/ata2/block/sr0", 100, &[]);
        sys.add("pci0/nvme/nvme0/nvme0c0n1", 100, &[("hidden", "1\n")]);
        let devices = list(&sys.class(), Path::new("/dev")).unwrap();
        let names: Vec<_> = devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sda1", "vdb"]);
        let (sda, sda1, vdb) = (&devices[0], &devices[1], &devices[2]);
        assert_eq!((sda.size, sda.has_partitions, sda.removable, sda.partition), (2048 * 512, true, true, None));
        assert_eq!((sda1.partition, sda1.disk.as_deref(), sda1.removable), (Some(1), Some("sda"), true));
        assert_eq!(sda1.path, Path::new("/dev/sda1"));
        assert!(vdb.read_only && !vdb.has_partitions);
    }

    #[test]
    fn missing_class_directory_is_an_error_naming_it() {
        let err = list(Path::new("/nonexistent/class/block"), Path::new("/dev")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/class/block"), "{err}");
    }

    #[test]
    fn natural_order_counts_numbers() {
        let mut names = vec!["sda10", "sdb", "sda2", "sda", "nvme0n1p10", "nvme0n1p9", "sda003"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["nvme0n1p9", "nvme0n1p10", "sda", "sda2", "sda003", "sda10", "sdb"]);
    }

    #[test]
    fn bus_addresses_compare_as_hex_and_port_numbers_as_numbers() {
        assert_eq!(devpath_cmp("/pci0000:00/0000:00:05.0/x", "/pci0000:00/0000:00:1f.2/x"), Ordering::Less);
        assert_eq!(devpath_cmp("/p/ata2/host1", "/p/ata10/host9"), Ordering::Less);
    }

    #[test]
    fn controller_order_wins_over_names() {
        let sys = Sys::new();
        sys.add("pci0/0000:00:10.0/block/sda", 8, &[]);
        sys.add("pci0/0000:00:02.0/block/sdb", 8, &[]);
        let names: Vec<_> = list(&sys.class(), Path::new("/dev")).unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["sdb", "sda"]);
    }
}
