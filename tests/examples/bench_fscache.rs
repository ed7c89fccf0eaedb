//! `qemu/bench-fscache`: does the kernel's FS-Cache on the scratch disk serve a second
//! boot's reads of the image (issue #15 point 7)? The Debian image (systemd) boots three
//! times from one dnsmasq + nfs-ganesha server, with a virtio scratch disk (ext4,
//! label `scratch`), the lab bridge captured:
//!   1. `none`: the root without `fsc`, no cache (what every boot costs today);
//!   2. `cold`: `fsc` on the root and `diskless.scratch.cache=true` (the cache bound on
//!      a new scratch disk after the local stage): the cache fills;
//!   3. `warm`: the same again on the same disk.
//!
//! Per boot it prints NFS frames and kB, NFSv3 READ and the other calls, and the guest's
//! seconds to multi-user, and FS-Cache's counters as the cache's holder prints them at
//! shutdown. It asserts nothing about the figures.
//!
//! Usage: `qemu/bench-fscache` (root; qemu/setup and qemu/build-images first).

use qemu_tests::build::build_initramfs;
use qemu_tests::cache_boot::{self, ROOT, ROOT_CACHED};
use qemu_tests::paths::log_dir;

fn main() {
    let initrd = build_initramfs(&["--profile", "netboot"]);
    let logs = log_dir().unwrap_or_else(|e| fail(&e.to_string()));
    let disk = logs.join("bench-fscache-scratch.raw");
    let runs = [("none", ROOT), ("cold", ROOT_CACHED), ("warm", ROOT_CACHED)];
    println!("bench-fscache: Debian image over NFSv3, one TCG client, virtio scratch disk (ext4, 512 MiB)");
    println!(
        "{:<5} {:>9} {:>9} {:>7} {:>10} {:>8}  other NFS calls",
        "boot", "NFS fr", "NFS kB", "READ", "uptime s", "host s"
    );
    for (i, (name, append)) in runs.iter().enumerate() {
        // `none` and `cold` start from a new disk; `warm` reuses cold's.
        if i < 2 {
            cache_boot::new_scratch(&disk, 512).unwrap_or_else(|e| fail(&e));
        }
        let boot =
            cache_boot::boot(&format!("bench-fscache-{name}"), &initrd, append, &disk).unwrap_or_else(|e| fail(&e));
        let log = boot.run.log.path().display().to_string();
        if *append == ROOT_CACHED && boot.run.log.find_line(r"scratch cache bound on").is_none() {
            fail(&format!("{name}: the cache was not bound; see {log}"));
        }
        let uptime = boot.run.log.find_line(r"DEBIAN: uptime (\S+)").and_then(|m| m.get(1).map(str::to_string));
        let nfs = boot.traffic.protocols.get("NFS").copied().unwrap_or_default();
        let others: Vec<String> = boot
            .traffic
            .rpc_calls
            .iter()
            .filter(|(call, _)| call.starts_with("NFS") && call.as_str() != "NFSv3 READ")
            .map(|(call, n)| format!("{} {n}", call.trim_start_matches("NFSv3 ")))
            .collect();
        println!(
            "{name:<5} {:>9} {:>9.0} {:>7} {:>10} {:>8.1}  {}  ({log})",
            nfs.frames,
            nfs.bytes as f64 / 1000.0,
            boot.reads(),
            uptime.as_deref().unwrap_or("?"),
            boot.host_s,
            others.join(", ")
        );
        // The holder's counters at shutdown: cache reads (rd) and writes (wr) among them.
        for line in boot.run.log.find_all(r"^FSCACHE: ((?:Cookies|Acquire|IO|RdHelp).*?)\s*$") {
            println!("      fscache {}", line.get(1).unwrap_or_default());
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench-fscache: error: {message}");
    std::process::exit(1)
}
