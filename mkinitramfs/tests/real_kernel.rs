//! The mkinitramfs binary on the real Debian kernel the rig caches (qemu/setup).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use initramfs::EntryKind;

struct Kernel {
    basedir: PathBuf,
    version: String,
}

fn kernel() -> Kernel {
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../qemu/.cache/kernel");
    let version = std::fs::read_to_string(cache.join("version"))
        .unwrap_or_else(|error| panic!("no cached kernel in {} ({error}): run qemu/setup", cache.display()));
    let kernel = Kernel { basedir: cache.join("root"), version: version.trim().to_string() };
    let modules = kernel.basedir.join("lib/modules").join(&kernel.version);
    assert!(modules.is_dir(), "{} missing: run qemu/setup", modules.display());
    kernel
}

/// Builds with the given extra arguments; returns the archive bytes and the summary.
fn build(kernel: &Kernel, extra: &[&str]) -> (Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init");
    // An x86-64 ELF header: mkinitramfs checks it against the modules' architecture.
    std::fs::write(&init, modules_db::elf::ARCHITECTURES[0].0.identity_header()).unwrap();
    let out = dir.path().join("initrd.img");
    let output = Command::new(env!("CARGO_BIN_EXE_mkinitramfs"))
        .args(["-b", kernel.basedir.to_str().unwrap(), "--init", init.to_str().unwrap()])
        .args(["-o", out.to_str().unwrap()])
        .args(extra)
        .arg(&kernel.version)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    assert!(output.status.success(), "mkinitramfs failed: {}", String::from_utf8_lossy(&output.stderr));
    (std::fs::read(&out).unwrap(), String::from_utf8(output.stdout).unwrap())
}

/// Module name -> contents, from the archive's `lib/modules/VERSION/**.ko`.
fn modules_in(bytes: &[u8], version: &str) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("lib/modules/{version}/");
    initramfs::read_archive(bytes)
        .unwrap()
        .into_iter()
        .filter(|entry| entry.path.starts_with(&prefix) && entry.path.ends_with(".ko"))
        .map(|entry| {
            let name = entry.path.rsplit('/').next().unwrap().trim_end_matches(".ko").replace('-', "_");
            let EntryKind::File(data) = entry.kind else { panic!("{} is not a file", entry.path) };
            (name, data)
        })
        .collect()
}

/// Hard dependencies as kmod's modinfo reads them from the module file.
fn kmod_depends(module: &[u8], scratch: &std::path::Path) -> Vec<String> {
    let path = scratch.join("module.ko");
    std::fs::write(&path, module).unwrap();
    let output = Command::new("modinfo")
        .args(["-F", "depends"])
        .arg(&path)
        .output()
        .unwrap_or_else(|error| panic!("cannot run modinfo ({error}): run qemu/setup to install kmod"));
    assert!(output.status.success(), "modinfo failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .split(',')
        .filter(|name| !name.is_empty())
        .map(|name| name.replace('-', "_"))
        .collect()
}

#[test]
fn netboot_archive_holds_the_lab_drivers_and_every_dependency() {
    let kernel = kernel();
    let (bytes, summary) = build(&kernel, &["--compress", "none"]);
    assert!(summary.contains(&format!("kernel {}, profile netboot: ", kernel.version)), "{summary}");
    let modules = modules_in(&bytes, &kernel.version);
    // The virtio-to-NFSv4 load chain from the rig notes, plus the lab's NICs and disks.
    let required = [
        "virtio_ring",
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio",
        "virtio_pci",
        "failover",
        "net_failover",
        "virtio_net",
        "sunrpc",
        "grace",
        "lockd",
        "netfs",
        "fscache",
        "nfs",
        "nfs_acl",
        "nfsv3",
        "dns_resolver",
        "nfsv4",
        "e1000",
        "e1000e",
        "8139cp",
        "8139too",
    ];
    for name in required {
        assert!(modules.contains_key(name), "{name} missing from the netboot archive");
    }
    assert!(!modules.contains_key("snd"), "sound drivers are not part of netboot");
    // Disks, filesystems and overlay load from the image once the root is mounted.
    for name in ["nvme", "ahci", "ext4", "xfs", "overlay"] {
        assert!(!modules.contains_key(name), "{name} is the image's, not the archive's");
    }

    let scratch = tempfile::tempdir().unwrap();
    for (name, data) in &modules {
        assert_eq!(&data[..4], b"\x7fELF", "{name} is stored decompressed");
        for dependency in kmod_depends(data, scratch.path()) {
            assert!(modules.contains_key(&dependency), "{name} depends on {dependency}, which is missing");
        }
    }

    let entries = initramfs::read_archive(&bytes).unwrap();
    let find = |path: &str| entries.iter().find(|entry| entry.path == path);
    assert_eq!(find("init").unwrap().mode, 0o755);
    assert_eq!(find("dev/console").unwrap().kind, EntryKind::CharDevice { major: 5, minor: 1 });
    let db = find(&modules_db::db_path(&kernel.version)).expect("module database in the archive");
    assert!(db.size() > 0, "module database is empty");

    // The summary's breakdown adds up to the module bytes actually in the archive.
    let module_bytes: usize = modules.values().map(Vec::len).sum();
    let reported = summary
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("modules ("))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|bytes| bytes.parse::<usize>().ok());
    assert_eq!(reported, Some(module_bytes), "{summary}");
    assert!(summary.contains("kernel/drivers/net/ethernet"), "the largest directory is named: {summary}");
}

#[test]
fn omitted_nic_drivers_are_left_out() {
    let kernel = kernel();
    let (bytes, _) = build(&kernel, &["--compress", "none", "--omit-modules", "8139too,8139cp"]);
    let modules = modules_in(&bytes, &kernel.version);
    assert!(!modules.contains_key("8139too"));
    assert!(!modules.contains_key("8139cp"));
    assert!(modules.contains_key("e1000") && modules.contains_key("virtio_net"));
}

#[test]
fn building_twice_gives_identical_bytes() {
    let kernel = kernel();
    let (first, _) = build(&kernel, &["--compress", "zstd"]);
    let (second, _) = build(&kernel, &["--compress", "zstd"]);
    assert!(first == second, "two zstd builds of the same kernel differ");
    assert_eq!(&first[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
}

/// A Secure Boot client's kernel runs locked down and loads a module only if its
/// appended signature verifies: every module must reach the archive byte for byte as
/// Debian signed it (never stripped, never re-signed).
#[test]
fn modules_keep_debians_signatures_byte_for_byte() {
    const SIGNED: &[u8] = b"~Module signature appended~\n";
    let kernel = kernel();
    let (bytes, _) = build(&kernel, &["--compress", "none", "--profile", "netboot"]);
    let prefix = format!("lib/modules/{}/", kernel.version);
    let mut checked = 0;
    for entry in initramfs::read_archive(&bytes).unwrap() {
        if !(entry.path.starts_with(&prefix) && entry.path.ends_with(".ko")) {
            continue;
        }
        let EntryKind::File(data) = entry.kind else { panic!("{} is not a file", entry.path) };
        let source = kernel.basedir.join(&entry.path);
        let original = std::fs::read(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(original.ends_with(SIGNED), "{} is not signed in the kernel package", source.display());
        assert!(data == original, "{} differs from {}", entry.path, source.display());
        checked += 1;
    }
    assert!(checked > 10, "only {checked} modules in the netboot archive");
}
