//! Times what init does at coldplug: `Db::parse` plus a lookup of every modalias
//! of the QEMU fixture, for a netboot-like database and for one of all modules.
//!
//! `cargo run --release -p modules-db --example lookup-bench [BASEDIR [VERSION]]`
//! (default: the rig's kernel in qemu/.cache/kernel/root).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use modules_db::{Db, KernelModules, encode};

const NETBOOT: &[&str] = &[
    "virtio_net",
    "virtio_blk",
    "virtio_pci",
    "virtio_scsi",
    "e1000",
    "e1000e",
    "8139cp",
    "8139too",
    "r8169",
    "igb",
    "ahci",
    "nvme",
    "xhci_pci",
    "ehci_pci",
    "usb_storage",
    "sd_mod",
    "nfsv3",
    "nfsv4",
    "ext4",
];
const PASSES: u32 = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(|| manifest.join("../qemu/.cache/kernel/root"), PathBuf::from);
    let version = match args.next() {
        Some(v) => v,
        None => std::fs::read_dir(base.join("lib/modules"))
            .map_err(|e| format!("{}: {e}; run qemu/setup", base.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .max()
            .ok_or("no kernel version found; run qemu/setup")?,
    };
    let fixture = std::fs::read_to_string(manifest.join("tests/data/qemu-modaliases.txt"))?;
    let modaliases: Vec<&str> = fixture.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();

    let start = Instant::now();
    let km = KernelModules::load(&base, &version)?;
    println!("loaded {} modules of {version} in {:.0} ms", km.modules.len(), start.elapsed().as_secs_f64() * 1e3);
    let netboot = km.closure(NETBOOT.iter().copied())?;
    let all: BTreeSet<String> = km.modules.keys().cloned().collect();

    for (label, included) in [("netboot", &netboot), ("all", &all)] {
        let start = Instant::now();
        let bytes = encode(&km, included);
        let encode_ms = start.elapsed().as_secs_f64() * 1e3;
        let mut matches = 0;
        let start = Instant::now();
        for _ in 0..PASSES {
            let db = Db::parse(std::hint::black_box(&bytes))?;
            matches = modaliases.iter().map(|m| db.lookup(m).len()).sum::<usize>();
        }
        let pass = start.elapsed().as_secs_f64() / f64::from(PASSES);
        let start = Instant::now();
        for _ in 0..PASSES {
            std::hint::black_box(Db::parse(std::hint::black_box(&bytes))?);
        }
        let parse = start.elapsed().as_secs_f64() / f64::from(PASSES);
        println!(
            "{label:8} {:5} modules, db {:8} bytes (encode {encode_ms:.0} ms): parse + {} lookups {:.3} ms/pass \
             (parse {:.3} ms, {:.2} us/lookup), {matches} matches",
            included.len(),
            bytes.len(),
            modaliases.len(),
            pass * 1e3,
            parse * 1e3,
            (pass - parse) * 1e6 / modaliases.len() as f64,
        );
    }
    Ok(())
}
