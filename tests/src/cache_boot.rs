//! One boot of the Debian image over NFSv3 with a scratch disk, the lab bridge
//! captured: what `qemu/bench-fscache` and `tests/scratch_cache.rs` measure the scratch
//! disk as a cache of the image with (README "The scratch disk as a cache of the image:
//! measured").

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::nfs::{NfsExport, NfsServer, image_dir};
use crate::paths::log_dir;
use crate::pcap::{self, Tcpdump, Traffic};
use crate::pxe::{LAB_HOST, LAB_IP, PxeRig};
use crate::vm::{Disk, DiskBus, Nic, VmRun};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const MAC: &str = "52:54:00:77:03:12";
/// The root without the cache.
pub const ROOT: &str = "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3";
/// The root with `fsc` and the cache bound on the scratch disk.
pub const ROOT_CACHED: &str = "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3,fsc diskless.scratch.cache=true";

/// A finished boot and its capture.
pub struct CacheBoot {
    pub run: VmRun,
    pub traffic: Traffic,
    /// Seconds from QEMU's start to its exit, on the host.
    pub host_s: f64,
}

impl CacheBoot {
    /// NFSv3 READ calls of the boot.
    pub fn reads(&self) -> u64 {
        self.traffic.rpc_calls.get("NFSv3 READ").copied().unwrap_or_default()
    }

    /// FS-Cache's `IO : rd=N wr=M` at shutdown, as the cache's holder printed it.
    pub fn cache_io(&self) -> Option<(u64, u64)> {
        let m = self.run.log.find_line(r"^FSCACHE: IO\s*: rd=(\d+) wr=(\d+)")?;
        Some((m.get(1)?.parse().ok()?, m.get(2)?.parse().ok()?))
    }
}

/// A new `mib` MiB ext4 filesystem labelled `scratch` at `path`.
pub fn new_scratch(path: &Path, mib: u64) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let file = std::fs::File::create(path).map_err(|e| format!("create {}: {e}", path.display()))?;
    file.set_len(mib << 20).map_err(|e| format!("size {}: {e}", path.display()))?;
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "scratch"])
        .arg(path)
        .status()
        .map_err(|e| format!("mkfs.ext4: {e}"))?;
    if !status.success() {
        return Err(format!("mkfs.ext4 {} failed", path.display()));
    }
    Ok(())
}

/// Boots `initrd` with `append` and the raw scratch disk `disk` against the Debian
/// image; `label` names the namespace, logs and capture. Fails unless the image
/// reached multi-user.
pub fn boot(label: &str, initrd: &Path, append: &str, disk: &Path) -> Result<CacheBoot, String> {
    let logs: PathBuf = log_dir().map_err(|e| e.to_string())?;
    let mut rig = PxeRig::new(label).map_err(|e| e.to_string())?;
    let config = rig.dnsmasq_config().host(MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").map_err(|e| e.to_string())?;
    let _nfs =
        NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("debian")), label).map_err(|e| e.to_string())?;
    let capture = logs.join(format!("{label}.pcap"));
    let tcpdump = Tcpdump::start(rig.netns(), &capture, &logs.join(format!("{label}.tcpdump.txt")))?;
    let tap = rig.tap().map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let run = rig
        .direct_vm(label, initrd, append)
        .nic(Nic::tap("virtio-net-pci", MAC, &tap))
        .disk(Disk::image(DiskBus::VirtioBlk, disk))
        .memory_mib(1024)
        .timeout(Duration::from_secs(600))
        .run()
        .map_err(|e| e.to_string());
    let host_s = started.elapsed().as_secs_f64();
    tcpdump.stop();
    let run = run?;
    if run.log.find_line(r"DEBIAN: hostname=\S+ multi-user reached").is_none() {
        return Err(format!("{label}: the image did not reach multi-user; see {}", run.log.path().display()));
    }
    let traffic = pcap::read_file(&capture, SERVER).map_err(|e| e.to_string())?;
    Ok(CacheBoot { run, traffic, host_s })
}
