//! QEMU tests of the NFS root, the local layers and the hand-off: the init mounts an
//! image exported by nfs-ganesha, copies the layers, switches root, and the image's
//! own init reports on the console what it sees (`IMAGE: ...` lines of
//! `qemu/images/busybox/init`, `DEBIAN: ...` of the Debian image). Images come from
//! `qemu/build-images`.
//!
//! The VMs boot the kernel directly (`-kernel`: these tests are about the root, not the
//! firmware; `tests/network.rs` covers PXE) on the PXE rig's segment, with dnsmasq
//! giving lab hosts their address and PTR name. Six VMs, each once per test process:
//! - A: the kernel's default, NFSv3 (`root=/dev/nfs nfsroot=10.77.0.1:/export`, no
//!   `vers=`), busybox image, lab3-12: every layer level overrides one file; symlinks,
//!   modes, owners kept; `nfsv4` never loaded.
//! - B: NFSv4 (`root=nfs4:10.77.0.1:/export`), busybox-overlay image with
//!   `diskless.mode=overlay`: layer files override the image's own files.
//! - C: busybox-legacy image (only `diskless.conf`), host lab3-13 which has no
//!   `hosts/` layer: base, network and lab layers only, boot goes on.
//! - D: the NFS server starts 30 s after QEMU; root path from DHCP option 17.
//! - E: the Debian image reaches multi-user.target with the host name from PTR.
//! - F: the same command line as A against a server that exports the image over NFSv4
//!   only: v3 is refused and the boot falls back to v4.2.
//!
//! Console logs: `target/qemu-logs/<vm>.log`; server logs next to them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qemu_tests::build::build_initramfs;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{DOMAIN, LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::{Nic, VmRun};

const LAB_MAC: &str = "52:54:00:77:03:12";
/// lab3-13 has a PTR record but no `hosts/lab3-13` (nor `hosts/10.77.0.113`) layer.
const NO_LAYER_MAC: &str = "52:54:00:77:03:13";
const NO_LAYER_HOST: &str = "lab3-13";
const NO_LAYER_IP: &str = "10.77.0.113";
const TIMEOUT: Duration = Duration::from_secs(300);
const LATE_NFS: Duration = Duration::from_secs(30);
/// The root as the kernel's documentation and initramfs-tools write it: no version.
const DEFAULT_ROOT: &str = "root=/dev/nfs nfsroot=10.77.0.1:/export";

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot"]))
}

/// One VM boot of an NFS root image.
struct Case {
    name: &'static str,
    image: &'static str,
    mac: &'static str,
    append: &'static str,
    nfs_delay: Option<Duration>,
    timeout: Duration,
    /// The export refuses NFSv3.
    v4_only: bool,
}

struct Outcome {
    run: VmRun,
    /// Seconds from QEMU start to the NFS server listening.
    nfs_up_after: f64,
    nfs_log: PathBuf,
}

impl Outcome {
    fn image(&self) -> ImageReport<'_> {
        ImageReport(&self.run.log)
    }
    fn log_path(&self) -> String {
        self.run.log.path().display().to_string()
    }
}

impl Case {
    fn new(name: &'static str, image: &'static str, mac: &'static str, append: &'static str) -> Case {
        Case { name, image, mac, append, nfs_delay: None, timeout: TIMEOUT, v4_only: false }
    }
}

fn boot(case: Case) -> Outcome {
    let mut rig = PxeRig::new(case.name).unwrap();
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST).host(NO_LAYER_MAC, NO_LAYER_IP, NO_LAYER_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let export = NfsExport::new(&image_dir(case.image));
    let export = if case.v4_only { export.v4_only() } else { export };
    let tap = rig.tap().unwrap();
    let vm = rig
        .direct_vm(case.name, netboot_initrd(), case.append)
        .nic(Nic::tap("virtio-net-pci", case.mac, &tap))
        .timeout(case.timeout);
    let (run, nfs_up_after, nfs_log) = match case.nfs_delay {
        None => {
            let nfs = NfsServer::start(rig.netns(), &export, case.name).unwrap();
            (vm.run().unwrap(), 0.0, nfs.kept_log().to_path_buf())
        }
        Some(delay) => {
            let running = vm.spawn().unwrap();
            let started = Instant::now();
            std::thread::sleep(delay);
            let nfs = NfsServer::start(rig.netns(), &export, case.name).unwrap();
            let up = started.elapsed().as_secs_f64();
            (running.wait().unwrap(), up, nfs.kept_log().to_path_buf())
        }
    };
    Outcome { run, nfs_up_after, nfs_log }
}

fn vm_a() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| boot(Case::new("nfsroot-A-v3-layers", "busybox", LAB_MAC, DEFAULT_ROOT)))
}

fn vm_b() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        boot(Case::new(
            "nfsroot-B-v4-overlay",
            "busybox-overlay",
            LAB_MAC,
            "root=nfs4:10.77.0.1:/export diskless.mode=overlay",
        ))
    })
}

fn vm_c() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| boot(Case::new("nfsroot-C-legacy-conf-no-host-layer", "busybox-legacy", NO_LAYER_MAC, "")))
}

fn vm_d() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        boot(Case { nfs_delay: Some(LATE_NFS), ..Case::new("nfsroot-D-server-30s-late", "busybox", LAB_MAC, "") })
    })
}

fn vm_f() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        boot(Case { v4_only: true, ..Case::new("nfsroot-F-v4-only-server", "busybox", LAB_MAC, DEFAULT_ROOT) })
    })
}

fn vm_e() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        // systemd under TCG on an NFS root takes minutes, not seconds.
        boot(Case {
            timeout: Duration::from_secs(480),
            ..Case::new("nfsroot-E-debian-multi-user", "debian", LAB_MAC, "")
        })
    })
}

/// The image's init ran to the end, no ERROR from ours, QEMU powered off.
#[track_caller]
fn assert_completed(o: &Outcome, hostname: &str) {
    let image = o.image();
    image.assert_done();
    assert_eq!(image.value("hostname"), hostname, "host name in the image ({})", o.log_path());
    assert_eq!(image.value("domainname"), DOMAIN, "domain name in the image ({})", o.log_path());
    o.run.log.assert_no_line(r"diskless: ERROR");
    o.run.assert_clean_exit();
}

/// `IMAGE: read <path>` equals `want`.
#[track_caller]
fn assert_reads(o: &Outcome, path: &str, want: &str) {
    assert_eq!(o.image().read(path), want, "content of {path} seen by the image ({})", o.log_path());
}

/// `IMAGE: file <path>` has `mode`, `owner` and `what`.
#[track_caller]
fn assert_file(o: &Outcome, path: &str, mode: &str, owner: &str, what: &str) {
    let (m, u, w) = o.image().assert_file(path);
    assert_eq!((m.as_str(), u.as_str(), w.as_str()), (mode, owner, what), "IMAGE: file {path} ({})", o.log_path());
}

/// Whether boot.json (as the image saw it) names the module `name` among those the
/// boot loaded.
fn loaded_module(o: &Outcome, name: &str) -> bool {
    let json = o.image().boot_json();
    assert!(json.contains(r#""modules": ["#), "no module list in boot.json ({}):\n{json}", o.log_path());
    json.contains(&format!("\"{name}\""))
}

// --- A: the default command line, NFSv3, every layer level ----------------------------

#[test]
fn nfsroot_without_vers_mounts_v3_as_the_kernel_does() {
    let o = vm_a();
    o.run.log.assert_line(r"^diskless: mounted 10\.77\.0\.1:/export read-only on /newroot \(NFSv3\)\s*$");
    o.run.log.assert_no_line(r"trying NFSv4");
    let root = o.image().mount("/");
    assert!(root.starts_with("10.77.0.1:/export / nfs ro,"), "root mount {root:?} ({})", o.log_path());
    assert!(root.contains("vers=3"), "not NFSv3: {root:?} ({})", o.log_path());
    assert!(loaded_module(o, "nfsv3"), "nfsv3 not in boot.json ({})", o.log_path());
    assert!(!loaded_module(o, "nfsv4"), "nfsv4 loaded for a v3 root ({})", o.log_path());
    assert_completed(o, LAB_HOST);
}

#[test]
fn each_layer_level_overrides_the_one_below() {
    let o = vm_a();
    // base < network < lab < host < ip: each file is last written by the level named.
    assert_reads(o, "/etc/upto-network", "network 10.77.0.255");
    assert_reads(o, "/etc/upto-lab", "lab lab3");
    assert_reads(o, "/etc/upto-host", "host lab3-12");
    assert_reads(o, "/etc/layer-test", "ip 10.77.0.112");
    for (file, want) in [
        ("from-base", "only in base"),
        ("from-network", "only in network 10.77.0.255"),
        ("from-lab", "only in lab lab3"),
        ("from-host", "only in host lab3-12"),
        ("from-ip", "only in ip 10.77.0.112"),
    ] {
        assert_reads(o, &format!("/etc/{file}"), want);
    }
    assert_reads(o, "/var/from-base", "var file in base");
    assert_reads(o, "/var/from-host", "var file in host lab3-12");
    // No disks: the scratch stage finds nothing and says so; the local dirs are tmpfs.
    o.run.log.assert_line(
        r#"diskless: scratch: no ext4, xfs, btrfs filesystem labelled "scratch" found; local dirs on tmpfs\s*$"#,
    );
    o.run.log.assert_no_line(r"diskless: (disk \S+:|swap:|scratch: using)");
    o.image().mount("/etc/local");
    assert!(o.image().mount("/etc/local").starts_with("tmpfs "), "({})", o.log_path());
    assert!(o.image().mount("/var/local").starts_with("tmpfs "), "({})", o.log_path());
}

#[test]
fn layer_copy_keeps_symlinks_modes_owners_and_nesting() {
    let o = vm_a();
    assert_file(o, "/etc/local/link-absolute", "777", "0:0", "-> /etc/layer-test");
    assert_file(o, "/etc/local/link-relative", "777", "0:0", "-> layer-test");
    assert_file(o, "/etc/local/secret", "600", "1000:1000", "secret of lab3-12");
    assert_file(o, "/etc/local/private", "700", "1000:1000", "(dir)");
    assert_file(o, "/etc/local/private/key", "400", "1000:1000", "key of lab3-12");
    assert_file(o, "/etc/local/multi-line", "644", "0:0", r"line one\nline two");
    assert_file(o, "/etc/local/sub/deeper/nested", "644", "0:0", "nested file in base");
    // Reading through the image's symlink /etc/secret -> local/secret works for root.
    assert_reads(o, "/etc/secret", "secret of lab3-12");
}

// --- B: NFSv4, overlay mode --------------------------------------------------------

#[test]
fn v4_root_is_mounted_over_nfs4() {
    let o = vm_b();
    let root = o.image().mount("/");
    assert!(root.starts_with("10.77.0.1:/export / nfs4 ro,"), "root mount {root:?} ({})", o.log_path());
    assert_completed(o, LAB_HOST);
}

#[test]
fn overlay_mode_layers_override_image_files_without_symlinks() {
    let o = vm_b();
    assert!(o.image().mount("/etc").starts_with("overlay /etc overlay "), "({})", o.log_path());
    assert!(o.image().mount("/var").starts_with("overlay /var overlay "), "({})", o.log_path());
    // The image holds /etc/layer-test = "image" as a regular file; the ip layer wins.
    assert_reads(o, "/etc/layer-test", "ip 10.77.0.112");
    assert_reads(o, "/etc/upto-lab", "lab lab3");
    assert_reads(o, "/etc/from-host", "only in host lab3-12");
    assert_reads(o, "/var/from-base", "var file in base");
    let secret =
        o.run.log.assert_line(r"^IMAGE: file /run/diskless/overlay/\S+/upper/secret (\d+) (\d+:\d+) (.*?)\s*$");
    assert_eq!((&secret[1], &secret[2], &secret[3]), ("600", "1000:1000", "secret of lab3-12"), "({})", o.log_path());
}

#[test]
fn diskless_status_reads_the_boot_record_of_a_real_boot() {
    // The admin CLI reads boot.json into the same type the boot writes it from; this
    // checks the file of a real boot (the static init) against the host's CLI.
    let o = vm_a();
    let run = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(run.path().join("diskless")).unwrap();
    std::fs::write(run.path().join("diskless/boot.json"), o.image().boot_json()).unwrap();
    let cli = qemu_tests::build::release_binaries().init.with_file_name("diskless");
    let out = std::process::Command::new(&cli).arg("status").arg(run.path()).output().expect("run diskless status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "diskless status failed on the boot.json of {}:\n{text}{}",
        o.log_path(),
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "host       lab3-12.example.edu (from ptr)",
        "address    10.77.0.112/24 on eth0",
        "root       10.77.0.1:/export (NFSv3)",
        "ip      /diskless/hosts/10.77.0.112",
    ] {
        assert!(
            text.contains(expected),
            "diskless status lacks {expected:?} for the boot of {}:\n{text}",
            o.log_path()
        );
    }
    assert!(!text.contains(" ?"), "diskless status could not read a field of {}:\n{text}", o.log_path());
}

// --- F: a server that refuses NFSv3 ------------------------------------------------

#[test]
fn a_server_that_refuses_v3_is_mounted_over_v4_2() {
    let o = vm_f();
    o.run.log.assert_line(r"^diskless: mount failed: NFSv3 \(vers=3,");
    o.run.log.assert_line(r"^diskless: NFSv3 failed \(.*\); trying NFSv4\.2\s*$");
    o.run.log.assert_line(r"^diskless: mounted 10\.77\.0\.1:/export read-only on /newroot \(NFSv4\.2\)\s*$");
    let root = o.image().mount("/");
    assert!(root.starts_with("10.77.0.1:/export / nfs4 ro,"), "root mount {root:?} ({})", o.log_path());
    assert!(root.contains("vers=4.2"), "not NFSv4.2: {root:?} ({})", o.log_path());
    assert!(loaded_module(o, "nfsv4"), "nfsv4 not loaded for the fallback ({})", o.log_path());
    assert_completed(o, LAB_HOST);
}

// --- C: legacy diskless.conf, missing host layer ---------------------------------

#[test]
fn legacy_conf_image_boots_with_layers() {
    let o = vm_c();
    o.run.log.assert_line(r"^IMAGE: config /etc/diskless/diskless.conf\s*$");
    o.run.log.assert_no_line(r"^IMAGE: config /etc/diskless/diskless.toml");
    assert_reads(o, "/etc/from-base", "only in base");
    assert_reads(o, "/var/from-base", "var file in base");
    assert_completed(o, NO_LAYER_HOST);
}

#[test]
fn host_without_host_layer_gets_base_network_and_lab_layers_only() {
    let o = vm_c();
    assert_reads(o, "/etc/layer-test", "lab lab3");
    assert_reads(o, "/etc/upto-host", "lab lab3");
    assert_reads(o, "/etc/from-network", "only in network 10.77.0.255");
    assert_reads(o, "/etc/from-host", "(missing)");
    assert_reads(o, "/etc/from-ip", "(missing)");
    assert!(o.image().file("/etc/local/secret").is_none(), "lab3-12's secret leaked to lab3-13 ({})", o.log_path());
    // The missing layers are listed on the console, each with its path.
    o.run.log.assert_line(r"^diskless: layer host \(/diskless/hosts/lab3-13\) missing, skipped\s*$");
    o.run.log.assert_line(r"^diskless: layer ip \(/diskless/hosts/10\.77\.0\.113\) missing, skipped\s*$");
}

// --- D: NFS server late ------------------------------------------------------------

#[test]
fn nfs_server_30_s_late_is_waited_for_and_boot_completes() {
    let o = vm_d();
    assert!(o.nfs_up_after >= LATE_NFS.as_secs_f64(), "server up after {} s ({})", o.nfs_up_after, o.log_path());
    // The init saw the server missing and said it retries, with a countdown.
    o.run.log.assert_line(r"diskless: NFS server 10\.77\.0\.1 not answering .*retrying in \d+ s");
    let root = o.image().mount("/");
    assert!(
        root.starts_with("10.77.0.1:/export / nfs"),
        "root mount {root:?} ({}; NFS log {})",
        o.log_path(),
        o.nfs_log.display()
    );
    assert_completed(o, LAB_HOST);
}

// --- E: Debian -----------------------------------------------------------------------

#[test]
fn debian_image_reaches_multi_user_with_ptr_host_name() {
    let o = vm_e();
    o.run.log.assert_line(&format!(r"DEBIAN: hostname={LAB_HOST} multi-user reached"));
    let root = o.run.log.assert_line(r"DEBIAN: root (\S+) (\S+) (\S+)");
    assert_eq!(&root[1], "10.77.0.1:/export", "({})", o.log_path());
    assert!(root[2].starts_with("nfs"), "root fstype {} ({})", &root[2], o.log_path());
    o.run.log.assert_no_line(r"diskless: ERROR");
    o.run.assert_clean_exit();
}

#[test]
fn debian_image_has_no_failed_units() {
    let o = vm_e();
    let failed = o.run.log.assert_line(r"DEBIAN: failed units: (.*?)\s*$");
    assert_eq!(&failed[1], "none", "({})", o.log_path());
}

// --- the server itself (no VM) -----------------------------------------------------

#[test]
fn ganesha_serves_v3_and_v4_in_namespace_and_vanishes_on_drop() {
    let rig = PxeRig::new("nfsroot-ganesha-host").unwrap();
    let nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("busybox")), "nfsroot-ganesha-host").unwrap();
    let pid = nfs.pid();
    let sockets = rig.netns().run("ss", &["-Hltn"]).unwrap();
    for port in ["10.77.0.1]:2049", "10.77.0.1]:20048", ":111"] {
        assert!(sockets.contains(port), "nothing listens on {port}:\n{sockets}");
    }
    // Nothing of it on the host: no rpcbind socket appeared in the host's /run.
    let host_sockets = std::process::Command::new("ss").args(["-Hltn"]).output().unwrap();
    let host = String::from_utf8_lossy(&host_sockets.stdout);
    assert!(!host.contains(":2049"), "ganesha listens on the host:\n{host}");
    let log = nfs.log_text();
    assert!(log.contains("NFS SERVER INITIALIZED"), "ganesha log:\n{log}");
    drop(nfs);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(stat.is_empty() || stat.contains(") Z "), "ganesha {pid} survived: {stat}");
    // rpcbind is a grandchild in the same process group: SIGKILL reached it, but its
    // exit (and its sockets' close) may lag behind the reaped leader on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = rig.netns().run("ss", &["-Hltn"]).unwrap();
    while !left.trim().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = rig.netns().run("ss", &["-Hltn"]).unwrap();
    }
    assert!(
        left.trim().is_empty(),
        "sockets left in namespace {} 10 s after the server stopped:\n{left}",
        rig.netns().name()
    );
}
