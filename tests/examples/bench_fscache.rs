//! `qemu/bench-fscache`: does the kernel's FS-Cache on the scratch disk serve a second
//! boot's reads of the image (issue #15 point 7)? The Debian image (systemd) boots three
//! times from one dnsmasq + nfs-ganesha server, with a virtio scratch disk (ext4,
//! label `scratch`), the lab bridge captured:
//!   1. `none`: the root without `fsc`, no cache (what every boot costs today);
//!   2. `cold`: `fsc` on the root and `diskless.fscache` (the cache bound on a new
//!      scratch disk after the local stage): the cache fills;
//!   3. `warm`: the same again on the same disk.
//!
//! Per boot it prints NFS frames and kB, NFSv3 READ and the other calls, and the guest's
//! seconds to multi-user, and FS-Cache's counters as the cache's holder prints them at
//! shutdown. It asserts nothing about the figures.
//!
//! Usage: `qemu/bench-fscache` (root; qemu/setup and qemu/build-images first).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use qemu_tests::build::build_initramfs;
use qemu_tests::nfs::{NfsExport, NfsServer, image_dir};
use qemu_tests::paths::log_dir;
use qemu_tests::pcap::{self, Tcpdump};
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::{Disk, DiskBus, Nic};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const MAC: &str = "52:54:00:77:03:12";
const ROOT: &str = "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3";

fn main() {
    let initrd = build_initramfs(&["--profile", "netboot"]);
    let logs = log_dir().unwrap_or_else(|e| fail(&e.to_string()));
    let disk = logs.join("bench-fscache-scratch.raw");
    let runs = [("none", ""), ("cold", ",fsc diskless.fscache"), ("warm", ",fsc diskless.fscache")];
    println!("bench-fscache: Debian image over NFSv3, one TCG client, virtio scratch disk (ext4, 512 MiB)");
    println!(
        "{:<5} {:>9} {:>9} {:>7} {:>10} {:>8}  other NFS calls",
        "boot", "NFS fr", "NFS kB", "READ", "uptime s", "host s"
    );
    for (i, (name, extra)) in runs.iter().enumerate() {
        // `none` and `cold` start from a new disk; `warm` reuses cold's.
        if i < 2 {
            new_scratch(&disk);
        }
        let label = format!("bench-fscache-{name}");
        let mut rig = PxeRig::new(&label).unwrap_or_else(|e| fail(&e.to_string()));
        let config = rig.dnsmasq_config().host(MAC, LAB_IP, LAB_HOST);
        rig.start_dnsmasq(&config, "dnsmasq").unwrap_or_else(|e| fail(&e.to_string()));
        let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("debian")), &label)
            .unwrap_or_else(|e| fail(&e.to_string()));
        let capture = logs.join(format!("{label}.pcap"));
        let tcpdump = Tcpdump::start(rig.netns(), &capture, &logs.join(format!("{label}.tcpdump.txt")))
            .unwrap_or_else(|e| fail(&e));
        let tap = rig.tap().unwrap_or_else(|e| fail(&e.to_string()));
        let started = std::time::Instant::now();
        let run = rig
            .direct_vm(&label, &initrd, &format!("{ROOT}{extra}"))
            .nic(Nic::tap("virtio-net-pci", MAC, &tap))
            .disk(Disk::image(DiskBus::VirtioBlk, &disk))
            .memory_mib(1024)
            .timeout(Duration::from_secs(600))
            .run()
            .unwrap_or_else(|e| fail(&e.to_string()));
        let host_s = started.elapsed().as_secs_f64();
        tcpdump.stop();
        let log = run.log.path().display().to_string();
        if run.log.find_line(r"DEBIAN: hostname=\S+ multi-user reached").is_none() {
            fail(&format!("{name}: the image did not reach multi-user; see {log}"));
        }
        if !extra.is_empty() && run.log.find_line(r"scratch cache bound on").is_none() {
            fail(&format!("{name}: the cache was not bound; see {log}"));
        }
        let uptime = run.log.find_line(r"DEBIAN: uptime (\S+)").and_then(|m| m.get(1).map(str::to_string));
        let traffic = pcap::read_file(&capture, SERVER).unwrap_or_else(|e| fail(&e.to_string()));
        let nfs = traffic.protocols.get("NFS").copied().unwrap_or_default();
        let reads = traffic.rpc_calls.get("NFSv3 READ").copied().unwrap_or_default();
        let others: Vec<String> = traffic
            .rpc_calls
            .iter()
            .filter(|(call, _)| call.starts_with("NFS") && call.as_str() != "NFSv3 READ")
            .map(|(call, n)| format!("{} {n}", call.trim_start_matches("NFSv3 ")))
            .collect();
        println!(
            "{name:<5} {:>9} {:>9.0} {reads:>7} {:>10} {host_s:>8.1}  {}  ({log})",
            nfs.frames,
            nfs.bytes as f64 / 1000.0,
            uptime.as_deref().unwrap_or("?"),
            others.join(", ")
        );
        // The holder's counters at shutdown: cache reads (rd) and writes (wr) among them.
        for line in run.log.find_all(r"^FSCACHE: ((?:Cookies|Acquire|IO|RdHelp).*?)\s*$") {
            println!("      fscache {}", line.get(1).unwrap_or_default());
        }
    }
}

/// A new 512 MiB ext4 filesystem labelled `scratch` at `path`.
fn new_scratch(path: &Path) {
    let _ = std::fs::remove_file(path);
    let file = std::fs::File::create(path).unwrap_or_else(|e| fail(&format!("create {}: {e}", path.display())));
    file.set_len(512 << 20).unwrap_or_else(|e| fail(&format!("size {}: {e}", path.display())));
    let status = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "scratch"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| fail(&format!("mkfs.ext4: {e}")));
    if !status.success() {
        fail(&format!("mkfs.ext4 {} failed", path.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("bench-fscache: error: {message}");
    std::process::exit(1)
}
