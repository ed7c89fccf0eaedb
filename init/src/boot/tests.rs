//! Whole boots on the fake system: a temporary directory is the initramfs, the fake
//! records every side effect as a typed call, the network is a script (a NIC that
//! appears late, its lease, a PTR answer), the "NFS mount" leaves the image tree that is
//! already on disk in place, and the disks are files.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::failure::Action;
use crate::log::{Capture, captured};
use crate::net::{Lease, Mac};
use crate::os::fake::{Call, FAKE_CHILD_PID, FAKE_HOLDER_PID, FakeLink, FakeOs, Kind};
use crate::os::{LOCAL_MOUNT_FLAGS, MS_MOVE, MountFlags};
use rustix::io::Errno;

/// The command line of a boot that reaches the image.
const NFS_BOOT: &str =
    "console=ttyS0 ip=dhcp root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3 diskless.settle_ms=0 diskless.reboot_delay=0";

struct Machine {
    boot: Boot,
    os: Arc<FakeOs>,
    console: Capture,
    dir: tempfile::TempDir,
}

impl Machine {
    /// An initramfs with `cmdline` and a module database, on `os`.
    fn new(cmdline: &str, os: FakeOs) -> Machine {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["proc", "dev", "sys/devices", "sys/class/block", "run", "newroot"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("proc/cmdline"), cmdline).unwrap();
        fs::write(root.join("dev/kmsg"), "").unwrap();
        with_module_db(root);
        let os = Arc::new(os);
        let (log, console) = captured();
        let mut boot = Boot::new(root.to_path_buf(), os.clone(), Arc::new(log));
        boot.panic_hook = false;
        boot.ctx.second = Duration::ZERO;
        Machine { boot, os, console, dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn text(&self) -> String {
        self.console.text()
    }

    /// The boot record, kept where a failing hand-off left it.
    fn boot_json(&self) -> serde_json::Value {
        serde_json::from_str(&fs::read_to_string(self.p("run/diskless/boot.json")).unwrap()).unwrap()
    }

    /// The image on the "NFS server": what the fake mount leaves at newroot.
    fn image(&self) {
        let img = self.p("newroot");
        for d in ["sbin", "dev", "proc", "sys", "run", "etc/local", "var/local", "tmp", "local", "mnt/scratch"] {
            fs::create_dir_all(img.join(d)).unwrap();
        }
        fs::write(img.join("sbin/init"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(img.join("sbin/init"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("../proc/self/mounts", img.join("etc/mtab")).unwrap();
        for (path, text) in [
            ("diskless/base/etc/motd", "base\n"),
            ("diskless/base/etc/fstab", "base\n"),
            ("diskless/hosts/lab3-12/etc/fstab", "host\n"),
            ("diskless/hosts/lab3-12/var/spool", "host\n"),
        ] {
            fs::create_dir_all(img.join(path).parent().unwrap()).unwrap();
            fs::write(img.join(path), text).unwrap();
        }
    }

    /// The mounts made on the image's mount point.
    fn root_mounts(&self) -> Vec<Call> {
        let newroot = self.p("newroot");
        self.os.calls().into_iter().filter(|c| c.mount_target() == Some(&newroot)).collect()
    }

    /// A whole disk `name` of `mib` MiB with a swap signature, as sysfs and /dev show it.
    fn swap_disk(&self, name: &str, mib: u64) {
        swap_disk(self.root(), name, mib);
    }

    /// An AHCI controller in sysfs, without driver: the database's `ahci` is the
    /// image's, so it loads in the modules stage; its load brings the disk `sda`.
    fn ahci_controller_with_a_swap_disk(&self) {
        let dev = self.p("sys/devices/pci0000:00/0000:00:1f.2");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("modalias"), AHCI_MODALIAS).unwrap();
        let root = self.root().to_path_buf();
        *self.os.on_load.lock().unwrap() = Some(Box::new(move |file: &str| {
            if file == "ahci.ko" {
                swap_disk(&root, "sda", 1);
            }
        }));
    }

    /// A processor whose driver is the image's but not on the disk path.
    fn amd_cpu(&self) {
        let dev = self.p("sys/devices/system/cpu/cpu0");
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("modalias"), CPU_MODALIAS).unwrap();
    }

    /// The image's `lib/modules/RELEASE` with the files of the database's image modules.
    fn image_modules(&self) {
        let lib = self.p("newroot/lib/modules/6.1.0-test");
        for path in IMAGE_MODULES.iter().map(|(_, path, _)| path) {
            fs::create_dir_all(lib.join(path).parent().unwrap()).unwrap();
            fs::write(lib.join(path), "").unwrap();
        }
    }

    /// A whole disk `name` of 1 MiB holding an ext4 filesystem labelled `scratch`.
    fn scratch_disk(&self, name: &str) {
        let mut bytes = vec![0u8; 1 << 20];
        let superblock = 1024;
        bytes[superblock + 56..superblock + 58].copy_from_slice(&[0x53, 0xef]);
        // INCOMPAT_FILETYPE | INCOMPAT_EXTENTS: ext4, not ext2/3.
        bytes[superblock + 96..superblock + 100].copy_from_slice(&0x42u32.to_le_bytes());
        bytes[superblock + 120..superblock + 127].copy_from_slice(b"scratch");
        self.disk(name, bytes);
    }

    /// A whole disk `name` with `bytes` on it, as sysfs and /dev show it.
    fn disk(&self, name: &str, bytes: Vec<u8>) {
        disk(self.root(), name, bytes);
    }
}

/// A whole disk `name` of `mib` MiB with a swap signature under the boot root `root`.
fn swap_disk(root: &Path, name: &str, mib: u64) {
    let mut bytes = vec![0u8; (mib << 20) as usize];
    bytes[4086..4096].copy_from_slice(b"SWAPSPACE2");
    disk(root, name, bytes);
}

/// A whole disk `name` with `bytes` on it under the boot root `root`, as sysfs and /dev
/// show it.
fn disk(root: &Path, name: &str, bytes: Vec<u8>) {
    let dev = root.join(format!("sys/devices/pci0000:00/0000:00:05.0/block/{name}"));
    fs::create_dir_all(&dev).unwrap();
    fs::write(dev.join("size"), format!("{}\n", bytes.len() / 512)).unwrap();
    fs::write(dev.join("ro"), "0\n").unwrap();
    symlink(&dev, root.join("sys/class/block").join(name)).unwrap();
    fs::write(root.join("dev").join(name), bytes).unwrap();
}

/// An AHCI controller's modalias (PCI class 01 06 01).
const AHCI_MODALIAS: &str = "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01";

/// Modules of the fake kernel that the archive leaves to the image: (name, path, depends).
const IMAGE_MODULES: [(&str, &str, &[&str]); 4] = [
    ("libahci", "kernel/drivers/ata/libahci.ko", &[]),
    ("ahci", "kernel/drivers/ata/ahci.ko", &["libahci"]),
    ("kvm", "kernel/arch/x86/kvm/kvm.ko", &[]),
    ("kvm_amd", "kernel/arch/x86/kvm/kvm-amd.ko", &["kvm"]),
];

/// A processor with AMD-V, whose driver (kvm_amd) is off the disk path.
const CPU_MODALIAS: &str = "cpu:type:x86,ven0002fam0017mod0031:feature:,0000,0001,00C0";

/// A module database for the fake kernel with the NFS client and overlayfs, so the
/// hardware and root stages run.
fn with_module_db(root: &Path) {
    let version = "6.1.0-test";
    let lib = root.join("lib/modules").join(version);
    let module = |name: &str, path: &str, depends: &[&str]| {
        fs::create_dir_all(lib.join(path).parent().unwrap()).unwrap();
        fs::write(lib.join(path), "").unwrap();
        let info = modules_db::ModuleInfo {
            name: name.into(),
            path: path.into(),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            softdep_pre: vec![],
            softdep_post: vec![],
            firmware: vec![],
            aliases: vec![],
        };
        (name.to_string(), info)
    };
    let archive: BTreeMap<String, modules_db::ModuleInfo> = [
        module("sunrpc", "kernel/net/sunrpc/sunrpc.ko", &[]),
        module("nfs", "kernel/fs/nfs/nfs.ko", &["sunrpc"]),
        module("nfsv3", "kernel/fs/nfs/nfsv3.ko", &["nfs"]),
        module("nfsv4", "kernel/fs/nfs/nfsv4.ko", &["nfs"]),
        module("overlay", "kernel/fs/overlayfs/overlay.ko", &[]),
        module("fscache", "kernel/fs/fscache/fscache.ko", &[]),
        module("cachefiles", "kernel/fs/cachefiles/cachefiles.ko", &["fscache"]),
    ]
    .into_iter()
    .collect();
    let included = archive.keys().cloned().collect();
    let mut modules = archive;
    // The image's modules: in the database, not in the archive's tree.
    for (name, path, depends) in IMAGE_MODULES {
        let mut info = module(name, path, depends).1;
        if name == "ahci" {
            info.aliases = vec!["pci:v*d*sv*sd*bc01sc06i01*".into()];
        }
        if name == "kvm_amd" {
            info.aliases = vec!["cpu:type:x86,ven0002fam*mod*:feature:*".into()];
        }
        fs::remove_file(lib.join(path)).unwrap();
        modules.insert(name.to_string(), info);
    }
    let km = modules_db::KernelModules { version: version.into(), root: lib, modules, builtin: Default::default() };
    let db = root.join(modules_db::db_path(version));
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let bytes = modules_db::encode_with(&km, &included, modules_db::Split::RestInImage, None);
    fs::write(db, bytes).unwrap();
}

/// eth0: appears 200 ms into the boot (its driver loading), gets carrier, and its DHCP
/// server answers with 10.77.0.112/24.
fn late_nic() -> FakeLink {
    let mut lease = Lease::new(Ipv4Addr::new(10, 77, 0, 112), Ipv4Addr::new(255, 255, 255, 0));
    lease.routers = vec![Ipv4Addr::new(10, 77, 0, 1)];
    lease.dns_servers = vec![Ipv4Addr::new(10, 77, 0, 1)];
    lease.next_server = Some(Ipv4Addr::new(10, 77, 0, 1));
    let mut link = FakeLink::up("eth0", Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]), lease);
    link.appears = Duration::from_millis(200);
    link
}

fn lab_network() -> FakeOs {
    FakeOs::default().with_links(vec![late_nic()]).with_ptr(&["lab3-12.example.edu."])
}

/// The number of the mount call that moves the first mount into the image: after the
/// kernel file systems, the NFS root and the two local dirs' tmpfs.
fn first_move() -> usize {
    early::MOUNTS.len() + 3 + 1
}

fn mount(source: &str, target: PathBuf, fstype: &str, flags: MountFlags, data: &str) -> Call {
    Call::Mount { source: source.into(), target, fstype: fstype.into(), flags, data: data.into() }
}

/// The NFSv3 mount of `server:/export` on `newroot` with the default options.
fn v3_root_mount(server: &str, newroot: &Path) -> Call {
    let data = format!("vers=3,addr={server},nolock,proto=tcp,mountproto=tcp");
    mount(&format!("{server}:/export"), newroot.to_path_buf(), "nfs", MountFlags::RDONLY, &data)
}

fn moved(from: &Path, to: &Path) -> Call {
    mount(&from.to_string_lossy(), to.to_path_buf(), "", MS_MOVE, "")
}

/// The calls whose order the boot decides: without the background threads' module
/// loads and priorities, the console, the syslog datagrams (log lines, as the console)
/// and the attributes of each copied file.
fn ordered_calls(os: &FakeOs) -> Vec<Call> {
    let background = [
        Kind::SendUdp,
        Kind::LoadModule,
        Kind::Nice,
        Kind::OpenUevents,
        Kind::AttachConsole,
        Kind::SetOwner,
        Kind::SetMode,
        Kind::SetTimes,
    ];
    os.calls().into_iter().filter(|c| !background.contains(&c.kind())).collect()
}

fn loaded_modules(os: &FakeOs) -> Vec<String> {
    let mut files: Vec<String> = os
        .calls_of(Kind::LoadModule)
        .into_iter()
        .filter_map(|c| match c {
            Call::LoadModule { file, .. } => Some(file),
            _ => None,
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_whole_boot_runs_every_stage_in_order_to_the_images_init() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.swap_disk("vda", 1);
    run(&m.boot);
    let text = m.text();
    let (root, newroot) = (m.root(), m.p("newroot"));

    let stages: Vec<Stage> = m.boot.timings().iter().map(|t| t.stage).collect();
    assert_eq!(stages, &Stage::ALL[..7], "every stage before the hand-off timed: {text}");
    for stage in Stage::ALL {
        assert!(text.contains(&format!("diskless: stage {stage} done in ")) || stage == Stage::Handoff, "{text}");
    }
    assert!(text.contains("diskless: host name lab3-12.example.edu (from reverse DNS)"), "{text}");
    assert!(
        text.contains(
            "diskless: booting lab3-12.example.edu 10.77.0.112/24 from 10.77.0.1:/export (NFSv3; layers base,host: 4 files) after "
        ),
        "{text}"
    );
    assert!(text.contains("diskless: starting /sbin/init (t="), "{text}");
    // The fake exec returns: the hand-off's last step fails, and the boot says so.
    assert!(text.contains("diskless: ERROR: starting the image's init /sbin/init: fake exec"), "{text}");

    let mut expected: Vec<Call> =
        early::MOUNTS.iter().map(|e| mount(e.source, root.join(e.target), e.fstype, e.flags, e.data)).collect();
    expected.extend([
        Call::LinkUp { link: "eth0".into(), up: true },
        Call::Dhcp { link: "eth0".into() },
        Call::ConfigureLink {
            link: "eth0".into(),
            config: net::link::LinkConfig {
                address: Ipv4Addr::new(10, 77, 0, 112),
                prefix_len: 24,
                broadcast: Ipv4Addr::new(10, 77, 0, 255),
                gateway: Some(Ipv4Addr::new(10, 77, 0, 1)),
                mtu: None,
            },
        },
        Call::LookupPtr { address: Ipv4Addr::new(10, 77, 0, 112) },
        Call::SetHostname { name: "lab3-12".into() },
        Call::SetDomainname { name: "example.edu".into() },
        mount(
            "10.77.0.1:/export",
            newroot.clone(),
            "nfs",
            MountFlags::RDONLY,
            "vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp",
        ),
        Call::ReadDisk { device: m.p("dev/vda"), size: 1 << 20 },
        Call::Swapon { device: m.p("dev/vda") },
        mount("tmpfs", newroot.join("etc/local"), "tmpfs", LOCAL_MOUNT_FLAGS, "size=25%,mode=0755"),
        mount("tmpfs", newroot.join("var/local"), "tmpfs", LOCAL_MOUNT_FLAGS, "size=25%,mode=0755"),
    ]);
    for dir in handoff::MOVED_MOUNTS {
        expected.push(moved(&root.join(dir), &newroot.join(dir)));
    }
    expected.extend([
        Call::Chdir { path: newroot.clone() },
        moved(Path::new("."), Path::new("/")),
        Call::Chroot { path: ".".into() },
        Call::Chdir { path: "/".into() },
        Call::Exec { path: "/sbin/init".into(), args: vec![] },
        Call::Reboot,
    ]);
    assert_eq!(ordered_calls(&m.os), expected, "{text}");
    assert_eq!(loaded_modules(&m.os), ["nfs.ko", "nfsv3.ko", "sunrpc.ko"], "NFSv3 only, each once");
    assert_eq!(m.os.calls_of(Kind::OpenUevents), [Call::OpenUevents], "the coldplug listens through the fake");

    // The layers are in the local dirs, later ones winning; the record is written.
    assert_eq!(fs::read_to_string(newroot.join("etc/local/fstab")).unwrap(), "host\n");
    assert_eq!(fs::read_to_string(newroot.join("etc/local/motd")).unwrap(), "base\n");
    assert_eq!(fs::read_to_string(newroot.join("var/local/spool")).unwrap(), "host\n");
    assert!(!m.p("proc").exists(), "the initramfs was freed, the image kept");
}

#[test]
fn with_scratch_cache_the_cache_is_bound_on_the_scratch_disk_before_the_hand_off() {
    let m = Machine::new(&format!("{NFS_BOOT} diskless.scratch.cache=true"), lab_network());
    m.image();
    m.scratch_disk("vda");
    run(&m.boot);
    let text = m.text();
    let scratch = m.p("newroot/mnt/scratch");
    let cache = scratch.join(crate::fscache::CACHE_DIR);

    let calls = m.os.calls();
    let mounted = calls.iter().position(|c| c.mount_target() == Some(&scratch)).expect("the scratch disk mounted");
    let Some(held) = calls.iter().position(|c| c.kind() == Kind::HoldCache) else {
        panic!("no cache bound: {text}");
    };
    let exec = calls.iter().position(|c| c.kind() == Kind::Exec).unwrap();
    assert!(mounted < held && held < exec, "mount, bind, hand-off in that order: {calls:?}");
    assert_eq!(
        calls[held],
        Call::HoldCache { device: m.p("dev/cachefiles"), commands: crate::fscache::bind_commands(&cache) }
    );
    assert!(loaded_modules(&m.os).contains(&"cachefiles.ko".to_string()), "{:?}", loaded_modules(&m.os));
    assert!(cache.is_dir(), "the cache directory is made on the scratch filesystem");
    assert!(
        text.contains(&format!("scratch cache bound on {} (held by pid {FAKE_HOLDER_PID})", cache.display())),
        "{text}"
    );
}

#[test]
fn with_scratch_cache_but_no_scratch_disk_the_boot_says_so_and_reads_the_server_only() {
    let m = Machine::new(&format!("{NFS_BOOT} diskless.scratch.cache=true"), lab_network());
    m.image();
    run(&m.boot);
    let text = m.text();
    assert!(m.os.calls_of(Kind::HoldCache).is_empty(), "nothing bound without a scratch disk");
    assert!(!loaded_modules(&m.os).contains(&"cachefiles.ko".to_string()), "{:?}", loaded_modules(&m.os));
    assert!(
        text.contains("WARNING: scratch.cache: no scratch filesystem is mounted; give the machine a scratch disk or drop scratch.cache; the root is read from the server only"),
        "{text}"
    );
    assert!(text.contains("diskless: starting /sbin/init"), "the boot goes on: {text}");
}

#[test]
fn a_cache_the_kernel_refuses_is_a_warning_and_the_boot_goes_on() {
    for (errno, why) in [(libc::ENOENT, "cannot open "), (libc::EINVAL, "the kernel refused \"dir ")] {
        let m = Machine::new(&format!("{NFS_BOOT} diskless.scratch.cache=true"), lab_network());
        m.image();
        m.scratch_disk("vda");
        m.os.fail_nth(Kind::HoldCache, 1, errno);
        run(&m.boot);
        let text = m.text();
        let warning = text.lines().find(|l| l.contains("WARNING: scratch.cache: cannot bind the cache on "));
        let Some(warning) = warning else { panic!("errno {errno}: no warning: {text}") };
        assert!(warning.contains(why), "errno {errno}: {warning}");
        assert!(warning.ends_with("; the root is read from the server only"), "{warning}");
        assert!(text.contains("diskless: starting /sbin/init"), "the boot goes on: {text}");
    }
}

#[test]
fn the_boot_record_holds_what_the_fake_boot_did() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    // Keep the record: the hand-off fails before the initramfs is freed.
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    assert!(text.contains("diskless: ERROR: moving the mount "), "{text}");
    let json = m.boot_json();
    assert_eq!(json["network"]["interface"], "eth0", "{json}");
    assert_eq!(json["network"]["identity"]["hostname"], "lab3-12", "{json}");
    // Reverse DNS named the machine: nothing lost, nothing warned.
    assert_eq!(json["network"]["identity"]["lost"], serde_json::Value::Null, "{json}");
    assert!(!text.contains("identity lost"), "{text}");
    assert_eq!(json["root"]["mounted_version"], "3", "{json}");
    assert_eq!(json["modules"], serde_json::json!(["sunrpc", "nfs", "nfsv3"]), "loaded once: {json}");
    let stages: Vec<&str> = json["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["early", "hardware", "network", "identity", "root", "modules", "local"]);
    let placed = fs::read_to_string(m.p("run/diskless/layer-files")).unwrap();
    assert_eq!(placed, "/etc/fstab\n/etc/motd\n/var/spool\n", "for diskless relayer");
}

/// `nfsroot=` without `vers=`: the boot used to mount NFSv4.2 and load `nfsv4` (most of
/// a second under TCG) where the kernel's nfsroot and initramfs-tools mount v3.
#[test]
fn nfsroot_without_vers_mounts_v3_as_the_kernel_does_and_never_loads_nfsv4() {
    let m = Machine::new(&NFS_BOOT.replace(",vers=3", ""), lab_network());
    m.image();
    // Keep the record: the hand-off fails before the initramfs is freed.
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    let newroot = m.p("newroot");
    assert_eq!(m.root_mounts(), [v3_root_mount("10.77.0.1", &newroot)], "{text}");
    assert!(
        text.contains(
            "diskless: NFS root 10.77.0.1:/export (NFS version 3, or 4.2 if the server refuses 3) from nfsroot="
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!("diskless: mounted 10.77.0.1:/export read-only on {} (NFSv3)", newroot.display())),
        "{text}"
    );
    assert_eq!(loaded_modules(&m.os), ["nfs.ko", "nfsv3.ko", "sunrpc.ko"], "no nfsv4 for a v3 mount");
    let json = m.boot_json();
    assert_eq!(json["root"]["version"], "auto", "{json}");
    assert_eq!(json["root"]["mounted_version"], "3", "{json}");
}

/// A server that exports the root over NFSv4 only refuses v3's mount: the boot falls
/// back to v4.2, loading `nfsv4` only then.
#[test]
fn a_server_that_refuses_v3_is_mounted_over_v4_2_with_nfsv4_loaded_for_the_fallback() {
    let m = Machine::new(&NFS_BOOT.replace(",vers=3", ""), lab_network());
    m.image();
    m.os.fail_calls(
        |c| matches!(c, Call::Mount { data, .. } if data.starts_with("vers=3,")),
        Errno::ACCESS.raw_os_error(),
    );
    // Keep the record: the hand-off fails before the initramfs is freed (one mount
    // more than usual: the refused v3 try).
    m.os.fail_nth(Kind::Mount, first_move() + 1, 16);
    run(&m.boot);
    let text = m.text();
    let newroot = m.p("newroot");
    let tried: Vec<String> =
        m.os.calls()
            .into_iter()
            .filter(|c| c.mount_target() == Some(&newroot))
            .filter_map(|c| match c {
                Call::Mount { data, .. } => Some(data),
                _ => None,
            })
            .collect();
    assert_eq!(
        tried,
        ["vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp", "vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112"],
        "{text}"
    );
    assert!(text.contains("diskless: NFSv3 failed (permission denied: "), "{text}");
    assert!(text.contains("; trying NFSv4.2\n"), "{text}");
    assert!(
        text.contains(&format!("diskless: mounted 10.77.0.1:/export read-only on {} (NFSv4.2)", newroot.display())),
        "{text}"
    );
    assert_eq!(loaded_modules(&m.os), ["nfs.ko", "nfsv3.ko", "nfsv4.ko", "sunrpc.ko"]);
    let json = m.boot_json();
    assert_eq!(json["root"]["mounted_version"], "4.2", "{json}");
    assert_eq!(json["modules"], serde_json::json!(["sunrpc", "nfs", "nfsv3", "nfsv4"]), "{json}");
}

/// A root on two servers, the first switched off: the boot names both, leaves the
/// first after its probe fails, mounts the second and records which one it was.
#[test]
fn first_root_server_dead_the_boot_mounts_the_image_from_the_second() {
    let m = Machine::new(&NFS_BOOT.replace("10.77.0.1:/export", "10.77.0.1+10.77.0.2:/export"), lab_network());
    m.image();
    m.os.fail_calls(
        |c| matches!(c, Call::ProbeTcp { to } if *to.ip() == Ipv4Addr::new(10, 77, 0, 1)),
        Errno::HOSTUNREACH.raw_os_error(),
    );
    // Keep the record: the hand-off fails before the initramfs is freed.
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    let newroot = m.p("newroot");
    assert_eq!(m.root_mounts(), [v3_root_mount("10.77.0.2", &newroot)], "{text}");
    for line in [
        "diskless: NFS root 10.77.0.1+10.77.0.2:/export (NFS version 3) from nfsroot= on the kernel command line\n",
        "diskless: NFS root servers in this host's order: 10.77.0.1, 10.77.0.2 (address 10.77.0.112 modulo 2 = 0; \
         each silent for up to 5 s before the next)\n",
        "diskless: NFS server 10.77.0.1 did not answer on TCP port 2049 (No route to host (os error 113)) after ",
        "s (nfs_server_timeout 5 s); moving on to 10.77.0.2\n",
        "diskless: NFS root from server 10.77.0.2 (2 of 2: 10.77.0.1+10.77.0.2:/export)\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(
        text.contains(&format!("diskless: mounted 10.77.0.2:/export read-only on {} (NFSv3)", newroot.display())),
        "{text}"
    );
    let json = m.boot_json();
    assert_eq!(json["root"]["server"], "10.77.0.2", "{json}");
    assert_eq!(json["root"]["servers"], serde_json::json!(["10.77.0.1", "10.77.0.2"]), "{json}");
}

/// No PTR record for the leased address (the fake without `with_ptr`): the host name
/// is made from the address and the boot used to go on with an info line only, the
/// machine silently without its lab and host layers.
#[test]
fn a_host_name_made_from_the_address_is_a_loud_lost_identity_on_console_and_in_boot_json() {
    let m = Machine::new(NFS_BOOT, FakeOs::default().with_links(vec![late_nic()]));
    m.image();
    // Keep the record: the hand-off fails before the initramfs is freed.
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    let lines: Vec<&str> = text.lines().collect();
    let at =
        |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {text}"));
    let host = at("diskless: host name ip-10-77-0-112 (from the IP address)");
    assert_eq!(
        lines[host + 1],
        "diskless: WARNING: identity lost: no PTR record for 10.77.0.112 at 10.77.0.1:53, so the host name \
         ip-10-77-0-112 is made from the address and the lab and host layers follow that made-up name: add a PTR \
         record for 10.77.0.112 in DNS",
        "{text}"
    );
    // Right after the layer lines, which list the two as missing.
    let skipped = at("diskless: layer host (/diskless/hosts/ip-10-77-0-112) missing, skipped");
    assert!(at("diskless: layer lab (/diskless/labs/ip) missing, skipped") < skipped, "{text}");
    assert_eq!(
        lines[skipped + 2],
        "diskless: WARNING: identity lost: lab layer /diskless/labs/ip skipped, host layer \
         /diskless/hosts/ip-10-77-0-112 skipped (named after the made-up host name ip-10-77-0-112, not this \
         machine's): add a PTR record for 10.77.0.112 in DNS",
        "{text}"
    );
    assert!(m.os.calls().contains(&Call::SetHostname { name: "ip-10-77-0-112".into() }), "{text}");

    let json = m.boot_json();
    let identity = &json["network"]["identity"];
    assert_eq!(identity["source"], "address", "{json}");
    assert_eq!(
        identity["lost"],
        serde_json::json!({
            "address": "10.77.0.112",
            "reason": { "kind": "no_ptr_record", "server": "10.77.0.1:53" },
            "layers": [
                { "kind": "lab", "path": "/diskless/labs/ip", "applied": false },
                { "kind": "host", "path": "/diskless/hosts/ip-10-77-0-112", "applied": false },
            ],
        }),
        "{json}"
    );
}

/// The HOWTO's pxelinux entry: `IPAPPEND 1` appends `ip=client:server:gw:mask`, no DNS server.
const HOWTO_STATIC_BOOT: &str = "console=ttyS0 root=/dev/nfs nfsroot=10.77.0.1:/export,ro,rsize=8192,posix \
     ip=10.77.0.112:10.77.0.1:10.77.0.1:255.255.255.0 diskless.settle_ms=0 diskless.reboot_delay=0";

/// eth0 with carrier and no DHCP server (the address is static).
fn static_nic() -> FakeLink {
    FakeLink {
        name: "eth0".into(),
        mac: Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
        appears: Duration::ZERO,
        carrier: Some(Duration::ZERO),
        lease: None,
    }
}

/// A static boot on `os` up to the hand-off, whose first move fails so the record stays.
fn static_boot(os: FakeOs, image: impl Fn(&Machine)) -> Machine {
    let m = Machine::new(HOWTO_STATIC_BOOT, os.with_links(vec![static_nic()]));
    m.image();
    image(&m);
    m.os.fail_nth(Kind::Mount, early::MOUNTS.len() + 3 + 1, 16);
    run(&m.boot);
    m
}

fn image_file(m: &Machine, path: &str, text: &str) {
    let path = m.p("newroot").join(path);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The HOWTO's static `ip=` named no DNS server, and the machine used to be named
/// after its address, without its lab and host layers.
#[test]
fn a_static_ip_without_dns_server_asks_dhcpinform_and_gets_its_ptr_name_and_layers() {
    let ack = net::inform::InformAck {
        server: Ipv4Addr::new(10, 77, 0, 1),
        dns_servers: vec![Ipv4Addr::new(10, 77, 0, 53)],
        domain_name: Some("example.edu".into()),
        host_name: None,
    };
    let m = static_boot(FakeOs::default().with_ptr(&["lab3-12.example.edu."]).with_inform(ack), |_| {});
    let text = m.text();
    assert!(text.contains("diskless: eth0: DNS servers 10.77.0.53 from a DHCPINFORM answered by 10.77.0.1"), "{text}");
    assert!(text.contains("diskless: host name lab3-12.example.edu (from reverse DNS)"), "{text}");
    assert!(!text.contains("identity lost"), "{text}");
    let calls = ordered_calls(&m.os);
    let inform = Call::DhcpInform {
        link: "eth0".into(),
        address: Ipv4Addr::new(10, 77, 0, 112),
        server: Some(Ipv4Addr::new(10, 77, 0, 1)),
    };
    let at = |c: &Call| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c:?} in {calls:#?}"));
    assert!(at(&inform) < at(&Call::LookupPtr { address: Ipv4Addr::new(10, 77, 0, 112) }), "{calls:#?}");
    assert_eq!(m.os.calls_of(Kind::SetHostname), [Call::SetHostname { name: "lab3-12".into() }]);
    assert_eq!(fs::read_to_string(m.p("newroot/etc/local/fstab")).unwrap(), "host\n", "the host layer applied");

    let json = m.boot_json();
    assert_eq!(json["network"]["proto"], "static", "{json}");
    assert_eq!(json["network"]["dns_source"], serde_json::json!({"kind": "dhcp_inform", "server": "10.77.0.1"}));
    assert_eq!(json["network"]["lease"]["dns_servers"], serde_json::json!(["10.77.0.53"]), "{json}");
    assert_eq!(json["network"]["identity"]["hostname"], "lab3-12", "{json}");
}

/// No DHCP server answers the INFORM: the image's resolv.conf (network layer before
/// base) names the DNS server, once the root is mounted and before the layers are chosen.
#[test]
fn a_static_ip_without_dns_server_or_inform_answer_uses_the_images_network_layer_resolv_conf() {
    let m = static_boot(FakeOs::default().with_ptr(&["lab3-12.example.edu."]), |m| {
        image_file(m, "diskless/base/etc/resolv.conf", "nameserver 10.77.0.1\n");
        image_file(m, "diskless/networks/10.77.0.255/etc/resolv.conf", "# site\nnameserver 10.77.0.53\n");
    });
    let text = m.text();
    assert!(text.contains("diskless: warning: DHCPINFORM on eth0: no DHCPACK after 3 tries"), "{text}");
    assert!(
        text.contains(
            "diskless: eth0: DNS servers 10.77.0.53 from the image's resolv.conf \
             /diskless/networks/10.77.0.255/etc/resolv.conf (network layer)"
        ),
        "{text}"
    );
    // First made from the address (nothing to ask), then named by reverse DNS; the
    // first name is not called lost while the image may still name a DNS server.
    let first = text
        .find(
            "diskless: host name ip-10-77-0-112 (from the IP address) for now: no DNS server is known; the image's \
             resolv.conf is read once the root is mounted",
        )
        .expect(&text);
    let second = text.find("diskless: host name lab3-12.example.edu (from reverse DNS)").expect(&text);
    assert!(first < second, "{text}");
    assert!(!text.contains("identity lost"), "{text}");
    let names: Vec<Call> = m.os.calls_of(Kind::SetHostname);
    assert_eq!(
        names,
        [Call::SetHostname { name: "ip-10-77-0-112".into() }, Call::SetHostname { name: "lab3-12".into() }]
    );
    let calls = ordered_calls(&m.os);
    let nfs = calls.iter().position(|c| c.mount_target() == Some(&m.p("newroot"))).expect("NFS mount");
    let rename = calls.iter().position(|c| *c == Call::SetHostname { name: "lab3-12".into() }).unwrap();
    assert!(nfs < rename, "the second try reads the mounted image: {calls:#?}");
    assert_eq!(fs::read_to_string(m.p("newroot/etc/local/fstab")).unwrap(), "host\n", "the host layer applied");

    let json = m.boot_json();
    assert_eq!(
        json["network"]["dns_source"],
        serde_json::json!({
            "kind": "image_resolv_conf",
            "path": "/diskless/networks/10.77.0.255/etc/resolv.conf",
            "layer": "network",
        })
    );
    assert_eq!(json["network"]["identity"]["source"], "ptr", "{json}");
    assert_eq!(json["network"]["identity"]["lost"], serde_json::Value::Null, "{json}");
}

/// Neither the network nor the image names a DNS server: the identity stays lost, loud.
#[test]
fn a_static_ip_with_no_dns_server_anywhere_stays_a_lost_identity() {
    let m = static_boot(FakeOs::default(), |_| {});
    let text = m.text();
    assert!(text.contains("no DNS server in the image's resolv.conf either"), "{text}");
    assert!(text.contains("diskless: WARNING: identity lost: the lease names no DNS server"), "{text}");
    let json = m.boot_json();
    assert_eq!(json["network"]["dns_source"], serde_json::json!({"kind": "nowhere"}), "{json}");
    assert_eq!(json["network"]["identity"]["lost"]["reason"]["kind"], "no_dns_server", "{json}");
}

/// A stage failing on the fake: the ERROR line names the failure, the failure action
/// follows, and no later stage runs.
struct Failing {
    stage: Stage,
    cmdline: &'static str,
    prepare: fn(&Machine),
    error: &'static str,
    action: Call,
}

fn fails_with(case: Failing) {
    let m = Machine::new(case.cmdline, lab_network());
    m.image();
    (case.prepare)(&m);
    run(&m.boot);
    let text = m.text();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.len() == 2 || case.stage == Stage::Early, "{}: {text}", case.stage);
    assert!(errors[0].starts_with(case.error), "{}: {text}", case.stage);
    assert_eq!(ordered_calls(&m.os).last(), Some(&case.action), "{}: {text}", case.stage);
    let timed: Vec<Stage> = m.boot.timings().iter().map(|t| t.stage).collect();
    let before: Vec<Stage> = Stage::ALL.into_iter().filter(|s| *s < case.stage).collect();
    assert_eq!(timed, before, "{}: only the stages before it finished", case.stage);
    assert!(m.os.calls_of(Kind::Exec).is_empty(), "{}: no hand-off", case.stage);
}

#[test]
fn a_failed_kernel_mount_fails_stage_early() {
    fails_with(Failing {
        stage: Stage::Early,
        cmdline: NFS_BOOT,
        prepare: |m| m.os.fail_mount_on(&m.p("dev"), 19),
        error: "diskless: ERROR: mounting devtmpfs on ",
        action: Call::Reboot,
    });
}

#[test]
fn a_missing_module_database_fails_stage_hardware() {
    fails_with(Failing {
        stage: Stage::Hardware,
        cmdline: NFS_BOOT,
        prepare: |m| fs::remove_dir_all(m.p("lib/modules")).unwrap(),
        error: "diskless: ERROR: reading the module database ",
        action: Call::Reboot,
    });
}

#[test]
fn no_dhcp_answer_fails_stage_network_and_reboots_even_with_halt() {
    fails_with(Failing {
        stage: Stage::Network,
        cmdline: "ip=dhcp nfsroot=10.77.0.1:/export diskless.dhcp_timeout=1 diskless.on_failure=halt diskless.settle_ms=0 diskless.reboot_delay=0",
        prepare: |m| m.os.set_links(vec![FakeLink { lease: None, ..late_nic() }]),
        error: "diskless: ERROR: no DHCP lease after 1 s: ",
        // Transient: the next boot is the retry, even with on_failure = "halt".
        action: Call::Reboot,
    });
}

#[test]
fn a_panic_in_stage_identity_is_caught_and_reported_as_a_bug() {
    fails_with(Failing {
        stage: Stage::Identity,
        cmdline: NFS_BOOT,
        prepare: |m| panic_on(m, Kind::LookupPtr),
        error: "diskless: ERROR: stage identity panicked: PTR lookup exploded: this is a bug in diskless",
        action: Call::Reboot,
    });
}

#[test]
fn a_missing_export_fails_stage_root_and_halt_is_obeyed() {
    fails_with(Failing {
        stage: Stage::Root,
        cmdline: "ip=dhcp root=nfs:10.77.0.1:/nope:vers=3 diskless.on_failure=halt diskless.settle_ms=0 diskless.reboot_delay=0",
        prepare: |m| m.os.fail_mount_on(&m.p("newroot"), 2),
        error: "diskless: ERROR: mounting the NFS root 10.77.0.1:/nope: NFSv3 ",
        // Permanent: on_failure = "halt" is obeyed.
        action: Call::PowerOff,
    });
}

#[test]
fn a_missing_local_dir_fails_stage_local() {
    fails_with(Failing {
        stage: Stage::Local,
        cmdline: NFS_BOOT,
        prepare: |m| fs::remove_dir(m.p("newroot/var/local")).unwrap(),
        error: "diskless: ERROR: making the local dirs: /var/local (",
        action: Call::Reboot,
    });
}

#[test]
fn a_missing_init_fails_stage_handoff_before_anything_moves() {
    fails_with(Failing {
        stage: Stage::Handoff,
        cmdline: NFS_BOOT,
        prepare: |m| fs::remove_file(m.p("newroot/sbin/init")).unwrap(),
        error: "diskless: ERROR: the image's init /sbin/init cannot be found in the root",
        action: Call::Reboot,
    });
}

/// Make the fake panic inside the first call of `kind`, as a bug in a stage would.
fn panic_on(m: &Machine, kind: Kind) {
    m.os.fail_calls(
        move |c| {
            if c.kind() == kind {
                panic!("PTR lookup exploded");
            }
            false
        },
        1,
    );
}

#[test]
fn break_before_each_stage_runs_the_earlier_ones_only() {
    for stage in &Stage::ALL[1..] {
        let m = Machine::new(&format!("{NFS_BOOT} diskless.break={stage}"), lab_network());
        m.image();
        run(&m.boot);
        let text = m.text();
        assert!(
            text.contains(&format!("diskless: break before stage {stage} (diskless.break={stage})\n")),
            "{stage}: {text}"
        );
        let timed: Vec<Stage> = m.boot.timings().iter().map(|t| t.stage).collect();
        assert_eq!(timed, Stage::ALL.into_iter().filter(|s| s < stage).collect::<Vec<_>>(), "{stage}");
        assert_eq!(ordered_calls(&m.os).last(), Some(&Call::Reboot), "{stage}");
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors, ["diskless: ERROR: rebooting: fake: reset the machine by hand"], "a break is no error");
    }
}

#[test]
fn a_panicking_stage_is_caught_timed_stages_kept_and_the_failure_action_taken() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    let timed_stage = timed(&m.boot, None, Stage::Early, || Ok::<_, Infallible>(7)).unwrap();
    assert_eq!(timed_stage, 7);
    let stop = timed(&m.boot, None, Stage::Hardware, || -> Result<(), Infallible> { panic!("index out of range") })
        .unwrap_err();
    let Stop::Failed(error) = stop else { panic!("{stop:?}") };
    assert_eq!(error.stage, Stage::Hardware);
    assert!(matches!(error.source, StageError::Panic { stage: Stage::Hardware, .. }));
    assert!(!error.source.is_transient());
    assert_eq!(
        error.to_string(),
        "stage hardware panicked: index out of range: this is a bug in diskless; please report it with the console log"
    );
    assert_eq!(m.boot.timings(), [StageTime { stage: Stage::Early, ms: m.boot.timings()[0].ms }]);
    assert!(m.text().starts_with("diskless: stage early done in "), "{}", m.text());
    assert!(!m.text().contains("stage hardware done"), "a failed stage is not reported done");
}

#[test]
fn nfs_prefetch_yields_the_cpu_to_the_hardware_drivers() {
    // On one CPU the NFS modules loading at the same priority as the coldplug pushed
    // the storage drivers, and so the settle the local stage waits for, 0.5 s later.
    let m = Machine::new(NFS_BOOT, FakeOs::default());
    let cmdline = Cmdline::parse(NFS_BOOT);
    let request = RootRequest::from_cmdline(&cmdline.raw).unwrap();
    let ctx = &m.boot.ctx;
    let modules = Modules::open(&ctx.root, ctx.os.clone(), ctx.log.clone(), &cmdline).unwrap();
    let prefetch = root::stage::prefetch_modules(ctx, modules, &request, true).expect("a root was asked for");
    assert_eq!(prefetch.join(), ["sunrpc", "nfs", "nfsv3"]);
    assert_eq!(m.os.calls().first(), Some(&Call::Nice { nice: 10 }), "{:?}", m.os.calls());
    assert_eq!(m.os.calls().first(), Some(&Call::Nice { nice: 10 }), "{:?}", m.os.calls());
}

#[test]
fn ip_off_without_a_root_is_a_hardware_only_run_that_powers_off() {
    let m = Machine::new("ip=off diskless.settle_ms=0", FakeOs::default());
    run(&m.boot);
    let text = m.text();
    assert!(text.contains("diskless: stage hardware done in "), "{text}");
    assert!(
        text.contains("diskless: ip=off and no root=/nfsroot=: hardware-only diagnostic run, powering off after the summary\ndiskless: boot summary (t="),
        "{text}"
    );
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors, ["diskless: ERROR: powering off: fake: switch the machine off by hand"], "only the fake's");
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::PowerOff));
}

#[test]
fn ip_off_with_a_root_is_an_error_that_names_ip_off() {
    let m = Machine::new(
        "ip=off nfsroot=10.77.0.1:/export diskless.settle_ms=0 diskless.reboot_delay=0",
        FakeOs::default(),
    );
    run(&m.boot);
    let text = m.text();
    assert!(
        text.contains("diskless: ERROR: networking disabled by ip=off/none; a network root cannot be mounted\n"),
        "{text}"
    );
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::Reboot));
}

#[test]
fn a_root_that_is_not_nfs_fails_before_the_network_is_waited_for() {
    let m = Machine::new("root=/dev/sda1 diskless.settle_ms=0 diskless.reboot_delay=0", lab_network());
    run(&m.boot);
    let text = m.text();
    assert!(text.contains("diskless: ERROR: root=/dev/sda1: diskless mounts only NFS roots"), "{text}");
    assert!(!text.contains("stage network"), "{text}");
    assert!(m.os.calls_of(Kind::Dhcp).is_empty());
}

#[test]
fn a_bad_ip_parameter_is_reported_before_the_network_stage() {
    let m = Machine::new("ip=10.0.0.300::::::off diskless.settle_ms=0 diskless.reboot_delay=0", lab_network());
    run(&m.boot);
    let text = m.text();
    assert!(text.contains("diskless: ERROR: kernel command line: "), "{text}");
    assert!(!text.contains("stage network"), "{text}");
}

#[test]
fn a_missing_module_database_is_one_error_line_then_a_reboot_countdown() {
    let m = Machine::new("diskless.reboot_delay=3", FakeOs::default());
    fs::remove_dir_all(m.p("lib/modules")).unwrap();
    run(&m.boot);
    let text = m.text();
    let lines: Vec<&str> = text.lines().collect();
    let db = m.p("lib/modules/6.1.0-test/modules.db");
    assert!(lines[0].starts_with("diskless: stage early done in "), "{text}");
    assert!(
        lines[1].starts_with(&format!("diskless: ERROR: reading the module database {}: ", db.display())),
        "{text}"
    );
    assert!(lines[1].ends_with("rebuild it with mkinitramfs for the running kernel version"), "{text}");
    assert_eq!(
        &lines[2..],
        [
            "diskless: rebooting in 3 s",
            "diskless: rebooting in 2 s",
            "diskless: rebooting in 1 s",
            "diskless: rebooting",
            "diskless: ERROR: rebooting: fake: reset the machine by hand"
        ]
    );
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::Reboot));
    let kmsg = fs::read_to_string(m.p("dev/kmsg")).unwrap();
    assert!(kmsg.contains(&format!("<7>{}\n", lines[1])), "the ERROR line also goes to kmsg: {kmsg}");
}

#[test]
fn break_stops_before_the_named_stage() {
    let m = Machine::new("diskless.break=hardware diskless.reboot_delay=0", FakeOs::default());
    fs::remove_dir_all(m.p("lib/modules")).unwrap();
    run(&m.boot);
    let text = m.text();
    assert!(
        text.contains("diskless: break before stage hardware (diskless.break=hardware)\ndiskless: rebooting\n"),
        "{text}"
    );
    assert!(!text.contains("ERROR: reading the module database"), "hardware ran: {text}");
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::Reboot));
}

#[test]
fn on_failure_halt_powers_off_instead_of_rebooting() {
    let m = Machine::new("diskless.on_failure=halt diskless.break=hardware diskless.reboot_delay=1", FakeOs::default());
    run(&m.boot);
    assert!(m.text().contains("diskless: powering off in 1 s\ndiskless: powering off\n"), "{}", m.text());
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::PowerOff));
}

#[test]
fn unknown_break_stage_is_named_with_the_valid_ones() {
    let m = Machine::new("diskless.break=netwrok diskless.reboot_delay=0", FakeOs::default());
    fs::remove_dir_all(m.p("lib/modules")).unwrap();
    run(&m.boot);
    assert!(
        m.text().contains(
            "diskless.break=netwrok: no such stage; stages are early, hardware, network, identity, root, modules, local, handoff"
        ),
        "{}",
        m.text()
    );
}

#[test]
fn break_early_cannot_stop_before_the_stage_that_reads_it_and_says_so() {
    let m = Machine::new("diskless.break=early diskless.reboot_delay=0", FakeOs::default());
    fs::remove_dir_all(m.p("lib/modules")).unwrap();
    run(&m.boot);
    let text = m.text();
    assert!(text.contains("warning: diskless.break=early: the command line is read in stage early"), "{text}");
    assert!(text.contains("ERROR: reading the module database"), "the boot went on into hardware: {text}");
}

#[test]
fn rescue_shell_needs_both_the_flag_and_bin_sh() {
    let m = Machine::new("diskless.shell diskless.break=hardware diskless.reboot_delay=0", FakeOs::default());
    run(&m.boot);
    assert!(m.text().contains("no /bin/sh: rebuild it with a shell"), "{}", m.text());
    assert!(m.os.calls_of(Kind::RunShell).is_empty());

    fs::create_dir_all(m.p("bin")).unwrap();
    fs::write(m.p("bin/sh"), "").unwrap();
    run(&m.boot);
    let calls = m.os.calls();
    let at = calls.iter().position(|c| *c == Call::RunShell { shell: m.p("bin/sh") }).expect("shell started");
    assert_eq!(calls[at + 1], Call::Reboot, "reboot after the shell ends");
    assert!(m.text().contains("diskless: starting rescue shell\n"));

    let no_flag = Policy::default();
    assert_eq!(no_flag.action(&m.boot.ctx, false), Action::Reboot, "no flag: no shell even with /bin/sh");
    let shell =
        Policy { config: config::Config { on_failure: config::OnFailure::Shell, ..Default::default() }, ..no_flag };
    assert_eq!(shell.action(&m.boot.ctx, true), Action::Shell(m.p("bin/sh")), "the shell also for a transient failure");
}

#[test]
fn countdown_prints_tens_and_the_last_five_seconds() {
    let m = Machine::new("", FakeOs::default());
    let policy = Policy { config: config::Config { reboot_delay: 21, ..Default::default() }, ..Policy::default() };
    policy.act(&m.boot.ctx, false);
    let marks: Vec<String> =
        m.text().lines().filter_map(|l| l.strip_prefix("diskless: rebooting in ")).map(str::to_string).collect();
    assert_eq!(marks, ["21 s", "20 s", "10 s", "5 s", "4 s", "3 s", "2 s", "1 s"]);
}

#[test]
fn a_panic_in_the_background_coldplug_is_reported_before_the_failure_action() {
    let m = Machine::new("", FakeOs::default());
    let background = Background::spawn(|ready| {
        ready.signal();
        panic!("lost device")
    })
    .unwrap();
    *m.boot.hardware.lock().unwrap() = Some(background);
    let policy = Policy { config: config::Config { reboot_delay: 0, ..Default::default() }, ..Policy::default() };
    fail_with(&m.boot, &policy, false, ("failed", None));
    let text = m.text();
    assert!(
        text.contains(
            "diskless: ERROR: stage hardware panicked in the background: lost device: this is a bug in diskless"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("diskless: rebooting\ndiskless: ERROR: rebooting: fake: reset the machine by hand\n"),
        "{text}"
    );
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::Reboot));
    assert!(m.boot.hardware.lock().unwrap().is_none(), "joined");
}

/// PTR names as the real decoder makes them from a hand-written wire answer, so bytes
/// that are not UTF-8 arrive the way a server sends them.
fn ptr_names_from_wire(targets: &[&[&[u8]]]) -> Vec<String> {
    use crate::net::dns::{PtrAnswer, parse_ptr_reply, tests::reply};
    let address = Ipv4Addr::new(10, 77, 0, 112);
    match parse_ptr_reply(&reply(9, address, 0, targets), 9, address).unwrap() {
        PtrAnswer::Names(names) => names,
        PtrAnswer::NoRecord => panic!("no names decoded"),
    }
}

/// No byte that acts on a terminal: below 0x20 only the line feeds that end lines,
/// no DEL, no C1 control.
fn assert_inert(what: &str, text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(bad.is_empty(), "{what}: {bad:?} in {text}");
    for line in text.lines() {
        assert!(line.starts_with("diskless: ") || line.starts_with("<7>diskless: "), "{what}: stray line {line:?}");
    }
}

#[test]
fn the_nul_of_a_rejected_ptr_answer_is_not_printed_raw() {
    let names = ptr_names_from_wire(&[&[b"lab3\x0012", b"example", b"edu"]]);
    let m = Machine::new(&format!("{NFS_BOOT} diskless.break=root"), lab_network().with_ptr(&[&names[0]]));
    run(&m.boot);
    let text = m.text();
    assert_inert("console", &text);
    assert!(
        text.contains(
            r#"diskless: PTR answer "lab3\012.example.edu" from 10.77.0.1:53 rejected: label "lab3\012" contains '\0' (only letters, digits, '-')"#
        ),
        "{text}"
    );
}

#[test]
fn hostile_bytes_from_dhcp_and_dns_reach_console_and_kmsg_escaped() {
    let names = ptr_names_from_wire(&[
        &[b"clear\x1b[2J\x1b[31mred", b"edu"],
        &[b"back\x08\x08\x08", b"edu"],
        &[b"del\x7f", b"edu"],
        &[b"csi\xc2\x9b2J", b"edu"],
        &[b"bad\xff\xfeutf8", b"edu"],
        &[b"line\ndiskless: stage root done in 1 ms", b"edu"],
    ]);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut link = late_nic();
    let lease = &mut link.lease.as_mut().unwrap().1;
    lease.host_name = Some("host\x1b]0;owned\x07".into());
    lease.domain_name = Some("dom\r\x1b[Kain".into());
    lease.root_path = Some("10.77.0.1:/export\x1b[2J\n,hard".into());
    lease.boot_file = Some(crate::text::lossy(b"pxe\xff\x08.0"));
    lease.server_name = Some("\u{9b}31mboot".into());
    lease.nis_domain = Some("nis\x7f".into());
    lease.domain_search = vec!["search\x1b[2J".into()];
    lease.log_servers = vec![Ipv4Addr::new(10, 77, 0, 1)];
    let os = FakeOs::default().with_links(vec![link]).with_ptr(&names);
    // No root on the command line: the DHCP root path is the one used.
    let m = Machine::new("console=ttyS0 ip=dhcp diskless.debug diskless.settle_ms=0 diskless.reboot_delay=0", os);
    m.image();
    run(&m.boot);
    let text = m.text();
    let kmsg = fs::read_to_string(m.p("dev/kmsg")).unwrap();
    assert_inert("console", &text);
    assert_inert("kmsg", &kmsg);
    for escaped in [
        r#"PTR answer "clear\u{1b}[2J\u{1b}[31mred.edu" from 10.77.0.1:53 rejected: label "clear\u{1b}[2J\u{1b}[31mred" contains '\u{1b}'"#,
        r#"PTR answer "back\u{8}\u{8}\u{8}.edu""#,
        r#"PTR answer "del\u{7f}.edu""#,
        r#"PTR answer "csi\u{9b}2J.edu""#,
        r#"PTR answer "bad\xff\xfeutf8.edu" from 10.77.0.1:53 rejected: label "bad\xff\xfeutf8" contains '\\'"#,
        r#"PTR answer "line\ndiskless: stage root done in 1 ms.edu""#,
        r#"host name "host\u{1b}]0;owned\u{7}" from DHCP option 12 rejected"#,
        r#"domain "dom\r\u{1b}[Kain" from DHCP option 15 rejected"#,
        "host name ip-10-77-0-112 from the IP address",
        r#"NFS root "10.77.0.1:/export\u{1b}[2J\n,hard" contains control characters"#,
    ] {
        assert!(text.contains(escaped), "{escaped} missing: {text}");
        assert!(kmsg.contains(escaped), "{escaped} missing in kmsg: {kmsg}");
    }
    assert!(
        !text.lines().any(|l| l.starts_with("diskless: stage root done")),
        "a line feed in a PTR name started a line: {text}"
    );
    let debug = r#"PTR 10.77.0.112 at 10.77.0.1:53: clear\u{1b}[2J\u{1b}[31mred.edu, back\u{8}\u{8}\u{8}.edu"#;
    assert!(text.contains(debug), "{text}");
    assert_eq!(ordered_calls(&m.os).last(), Some(&Call::Reboot), "the refused root fails the boot: {text}");
    // The syslog server gets the same lines, escaped the same way, one datagram each.
    let sent = syslog_sent(&m.os);
    let syslog: String = sent.iter().map(|(_, t)| format!("{t}\n")).collect();
    assert!(sent.iter().all(|(_, t)| !t.chars().any(char::is_control)), "{syslog}");
    for escaped in [r#"domain "dom\r\u{1b}[Kain" from DHCP option 15 rejected"#, debug] {
        assert!(syslog.contains(escaped), "{escaped} missing in syslog: {syslog}");
    }
    assert!(syslog.contains(" result=failed stage=root "), "{syslog}");
}

/// A home router on the lab segment answers first with a lease in its own subnet and
/// nothing to boot from: the boot used to take it and hang in the NFS mount. Now the
/// lease is released, the router excluded, and the lab server's lease boots.
#[test]
fn a_rogue_dhcp_servers_lease_is_released_and_the_boot_completes_on_the_lab_lease() {
    let mut rogue = Lease::new(Ipv4Addr::new(192, 168, 77, 50), Ipv4Addr::new(255, 255, 255, 0));
    rogue.routers = vec![Ipv4Addr::new(192, 168, 77, 254)];
    rogue.server_id = Some(Ipv4Addr::new(192, 168, 77, 1));
    let mut nic = late_nic();
    let (_, lab) = nic.lease.replace((Duration::ZERO, rogue)).unwrap();
    let os = FakeOs::default()
        .with_links(vec![nic])
        .with_more_servers("eth0", vec![(Duration::from_millis(50), lab)])
        .with_ptr(&["lab3-12.example.edu."]);
    let m = Machine::new(NFS_BOOT, os);
    m.image();
    run(&m.boot);
    let text = m.text();
    assert!(
        text.contains(
            "diskless: warning: eth0: lease 192.168.77.50 from 192.168.77.1 has no root path, next server or boot \
             file and the NFS root server 10.77.0.1:2049 does not answer over it"
        ),
        "{text}"
    );
    assert!(text.contains("releasing it and asking again without 192.168.77.1"), "{text}");
    assert!(text.contains("diskless: host name lab3-12.example.edu (from reverse DNS)"), "{text}");
    assert!(text.contains("diskless: booting lab3-12.example.edu 10.77.0.112/24 from 10.77.0.1:/export"), "{text}");
    assert_eq!(m.os.calls_of(Kind::DhcpRelease).len(), 1, "{text}");
    assert_eq!(m.os.calls_of(Kind::Dhcp).len(), 2, "{text}");
}

/// The lab network whose lease names `log_servers` in option 7.
fn network_with_log_servers(log_servers: &[Ipv4Addr]) -> FakeOs {
    let mut nic = late_nic();
    if let Some(lease) = nic.lease.as_mut() {
        lease.1.log_servers = log_servers.to_vec();
    }
    FakeOs::default().with_links(vec![nic]).with_ptr(&["lab3-12.example.edu."])
}

/// Every datagram the boot sent, as (server, text).
fn syslog_sent(os: &FakeOs) -> Vec<(String, String)> {
    os.calls_of(Kind::SendUdp)
        .into_iter()
        .filter_map(|c| match c {
            Call::SendUdp { to, payload } => Some((to.to_string(), payload)),
            _ => None,
        })
        .collect()
}

#[test]
fn option_7_gets_the_whole_boot_log_from_its_first_line_and_the_inventory_at_the_end() {
    let m = Machine::new(NFS_BOOT, network_with_log_servers(&[Ipv4Addr::new(10, 77, 0, 1)]));
    m.image();
    // The machine's NIC as sysfs shows it: the inventory lists it.
    let nic = "sys/devices/pci0000:00/0000:00:03.0";
    fs::create_dir_all(m.p(nic).join("net/eth0")).unwrap();
    fs::write(m.p(nic).join("modalias"), "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n").unwrap();
    fs::write(m.p(nic).join("net/eth0/address"), "52:54:00:12:34:56\n").unwrap();
    symlink(m.p(nic), m.p(nic).join("net/eth0/device")).unwrap();
    fs::create_dir_all(m.p("sys/class/net")).unwrap();
    symlink(m.p(nic).join("net/eth0"), m.p("sys/class/net/eth0")).unwrap();
    run(&m.boot);
    let text = m.text();
    assert!(text.contains("diskless: sending the boot log to syslog 10.77.0.1:514 (from DHCP option 7)"), "{text}");
    let sent = syslog_sent(&m.os);
    assert!(sent.iter().all(|(to, _)| to == "10.77.0.1:514"), "{sent:?}");
    let texts: Vec<&str> = sent.iter().map(|(_, t)| t.as_str()).collect();
    // The lines from before the lease come first (the detail lines too, which the
    // console hides), named by the lease's address.
    assert!(texts[0].starts_with("<31>1 - 10.77.0.112 diskless - log - mounted proc on "), "{texts:#?}");
    let first_console_line = text.lines().next().unwrap().strip_prefix("diskless: ").unwrap();
    assert!(texts.contains(&format!("<30>1 - 10.77.0.112 diskless - log - {first_console_line}").as_str()));
    assert!(texts.iter().any(|t| t.starts_with("<30>1 - 10.77.0.112 diskless - log - stage hardware done in ")));
    // After the identity stage, by the host name.
    assert!(
        texts.iter().any(|t| t.starts_with("<30>1 - lab3-12.example.edu diskless - log - stage root done in ")),
        "{texts:#?}"
    );
    let summary = texts.iter().position(|t| t.contains(" - inventory - inventory/1 summary ")).expect("summary");
    assert!(
        texts[summary].starts_with(
            "<30>1 - lab3-12.example.edu diskless - inventory - inventory/1 summary machine=52:54:00:12:34:56 \
             host=lab3-12.example.edu result=booted stage=handoff devices="
        ),
        "{}",
        texts[summary]
    );
    assert!(
        texts.contains(
            &"<30>1 - lab3-12.example.edu diskless - inventory - inventory/1 nic machine=52:54:00:12:34:56 \
              interface=eth0 mac=52:54:00:12:34:56 bus=pci modalias=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00 \
              driver= module="
        ),
        "{texts:#?}"
    );
    // The fake exec returns: that failure line goes out as an error, after the inventory.
    let exec_error = texts.iter().position(|t| t.starts_with("<27>1 - lab3-12.example.edu diskless - log - ERROR: "));
    assert!(exec_error.is_some_and(|at| at > summary), "{texts:#?}");
    // Every console line reached the server (the detail lines too, which the console hides).
    let logged = texts.iter().filter(|t| t.contains(" diskless - log - ")).count();
    assert!(logged >= text.lines().count(), "{logged} < {}: {texts:#?}", text.lines().count());
}

#[test]
fn a_failing_boot_sends_its_failure_line_and_an_inventory_that_names_the_stage() {
    let m = Machine::new(
        "ip=dhcp root=nfs:10.77.0.1:/nope:vers=3 diskless.settle_ms=0 diskless.reboot_delay=0",
        network_with_log_servers(&[Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)]),
    );
    m.image();
    m.os.fail_mount_on(&m.p("newroot"), 2);
    run(&m.boot);
    let sent = syslog_sent(&m.os);
    for server in ["10.77.0.1:514", "10.77.0.2:514"] {
        let texts: Vec<&str> = sent.iter().filter(|(to, _)| to == server).map(|(_, t)| t.as_str()).collect();
        assert!(
            texts.iter().any(|t| t.starts_with(
                "<27>1 - lab3-12.example.edu diskless - log - ERROR: mounting the NFS root 10.77.0.1:/nope"
            )),
            "{server}: {texts:#?}"
        );
        assert!(
            texts.iter().any(|t| t.contains(
                "inventory/1 summary machine=52:54:00:12:34:56 host=lab3-12.example.edu \
                 result=failed stage=root "
            )),
            "{server}: {texts:#?}"
        );
        // The failure action is logged (and sent) after the inventory.
        let summary = texts.iter().position(|t| t.contains("inventory/1 summary")).unwrap();
        assert!(texts[summary..].iter().any(|t| t.ends_with(" - log - rebooting")), "{server}: {texts:#?}");
    }
}

#[test]
fn diskless_syslog_on_the_command_line_overrides_option_7_or_turns_it_off() {
    let m = Machine::new(
        &format!("{NFS_BOOT} diskless.syslog=10.9.9.9:1514"),
        network_with_log_servers(&[Ipv4Addr::new(10, 77, 0, 1)]),
    );
    m.image();
    run(&m.boot);
    let sent = syslog_sent(&m.os);
    assert!(!sent.is_empty() && sent.iter().all(|(to, _)| to == "10.9.9.9:1514"), "{sent:?}");
    assert!(m.text().contains("sending the boot log to syslog 10.9.9.9:1514 (from diskless.syslog)"), "{}", m.text());

    let m = Machine::new(
        &format!("{NFS_BOOT} diskless.syslog=off"),
        network_with_log_servers(&[Ipv4Addr::new(10, 77, 0, 1)]),
    );
    m.image();
    run(&m.boot);
    assert_eq!(syslog_sent(&m.os), []);

    let m = Machine::new(&format!("{NFS_BOOT} diskless.syslog=loghost"), lab_network());
    run(&m.boot);
    assert!(
        m.text()
            .contains("warning: kernel command line: syslog = \"loghost\": \"loghost\" is not dhcp, off or an IPv4"),
        "{}",
        m.text()
    );
}

#[test]
fn a_storage_driver_of_the_image_loads_after_the_root_and_its_disk_is_used() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.image_modules();
    m.ahci_controller_with_a_swap_disk();
    m.amd_cpu();
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    let image_lib = m.p("newroot/lib/modules/6.1.0-test");
    let loads: Vec<(String, PathBuf)> =
        m.os.calls_of(Kind::LoadModule)
            .into_iter()
            .filter_map(|c| match c {
                Call::LoadModule { file, path, .. } => Some((file, path)),
                _ => None,
            })
            .collect();
    let from_image: Vec<&str> =
        loads.iter().filter(|(_, path)| path.starts_with(&image_lib)).map(|(file, _)| file.as_str()).collect();
    assert_eq!(from_image, ["libahci.ko", "ahci.ko"], "the image's files, after their dependencies: {loads:?}");
    assert!(
        loads.iter().filter(|(_, path)| !path.starts_with(&image_lib)).all(|(_, p)| p.starts_with(m.p("lib/modules"))),
        "the NFS client from the archive: {loads:?}"
    );
    // The image's modules wait for the root: loaded after the NFS mount, before the swap.
    let calls = m.os.calls();
    let at = |want: &dyn Fn(&Call) -> bool| calls.iter().position(want).unwrap_or(usize::MAX);
    let nfs_mount = at(&|c| matches!(c, Call::Mount { fstype, .. } if fstype == "nfs"));
    let ahci = at(&|c| matches!(c, Call::LoadModule { file, .. } if file == "ahci.ko"));
    let swapon = at(&|c| matches!(c, Call::Swapon { .. }));
    assert!(nfs_mount < ahci && ahci < swapon, "mount {nfs_mount}, ahci {ahci}, swapon {swapon}: {calls:?}");
    assert!(text.contains("diskless: 2 modules from the image's /lib/modules/6.1.0-test in "), "{text}");
    assert!(!text.contains("no driver for pci device 0000:00:1f.2"), "the image's driver is no missing driver: {text}");
    let json = m.boot_json();
    assert_eq!(json["image_modules"]["loaded"], serde_json::json!(["libahci", "ahci"]), "{json}");
    assert_eq!(json["image_modules"]["background"], serde_json::json!(["kvm", "kvm_amd"]), "on their way: {json}");
    assert_eq!(json["image_modules"]["present"], true, "{json}");
    assert_eq!(json["modules"], serde_json::json!(["sunrpc", "nfs", "nfsv3"]), "from the archive: {json}");
    assert_eq!(json["scratch"]["swaps"][0]["enabled"], true, "{json}");
}

#[test]
fn drivers_off_the_disk_path_load_after_the_handoff_in_a_child_not_before_the_local_stage() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.image_modules();
    m.ahci_controller_with_a_swap_disk();
    m.amd_cpu();
    run(&m.boot);
    let text = m.text();
    assert!(!loaded_modules(&m.os).iter().any(|f| f.starts_with("kvm")), "kvm is off the critical path: {text}");
    assert_eq!(m.os.calls_of(Kind::Swapon).len(), 1, "the disk path loaded before the local stage: {text}");
    let calls = m.os.calls();
    let detached = calls.iter().position(|c| matches!(c, Call::LoadDetached { .. })).expect("a child started");
    assert_eq!(
        calls[detached],
        Call::LoadDetached {
            modules: vec!["kvm".into(), "kvm_amd".into()],
            paths: vec![
                PathBuf::from("/lib/modules/6.1.0-test/kernel/arch/x86/kvm/kvm.ko"),
                PathBuf::from("/lib/modules/6.1.0-test/kernel/arch/x86/kvm/kvm-amd.ko"),
            ],
        },
        "each after what it needs, as the image sees the files: {calls:?}"
    );
    let chroot = calls.iter().position(|c| matches!(c, Call::Chroot { .. })).unwrap();
    let exec = calls.iter().position(|c| matches!(c, Call::Exec { .. })).unwrap();
    assert!(chroot < detached && detached < exec, "in the new root, right before the exec: {calls:?}");
    assert!(
        text.contains("diskless: 2 more modules load from the image in the background after the hand-off: kvm kvm_amd"),
        "{text}"
    );
    assert!(
        text.contains(&format!("diskless: the image's other 2 drivers load in the background (pid {FAKE_CHILD_PID})")),
        "{text}"
    );
    assert!(!text.contains("no driver for cpu"), "a driver on its way is no missing driver: {text}");
}

#[test]
fn an_image_with_udev_loads_the_drivers_off_the_disk_path_itself_and_no_child_starts() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.image_modules();
    m.amd_cpu();
    fs::create_dir_all(m.p("newroot/lib/systemd")).unwrap();
    fs::write(m.p("newroot/lib/systemd/systemd-udevd"), "").unwrap();
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    assert!(
        text.contains(
            "diskless: 2 more modules are left to the image's udev (/lib/systemd/systemd-udevd): kvm kvm_amd"
        ),
        "{text}"
    );
    assert!(m.os.calls_of(Kind::LoadDetached).is_empty(), "{text}");
    assert!(!loaded_modules(&m.os).iter().any(|f| f.starts_with("kvm")), "{text}");
    let json = m.boot_json();
    assert_eq!(json["image_modules"]["background"], serde_json::json!(["kvm", "kvm_amd"]), "{json}");
    assert_eq!(json["image_modules"]["background_loader"], "/lib/systemd/systemd-udevd", "{json}");
}

#[test]
fn a_background_loader_that_cannot_start_is_a_warning_and_the_image_still_starts() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.image_modules();
    m.amd_cpu();
    m.os.fail_nth(Kind::LoadDetached, 1, Errno::AGAIN.raw_os_error());
    run(&m.boot);
    let text = m.text();
    assert!(
        text.contains(
            "diskless: warning: cannot start the background loads of the image's drivers (Resource temporarily \
             unavailable (os error 11)): kvm kvm_amd stay unloaded unless the image loads them"
        ),
        "{text}"
    );
    assert_eq!(m.os.calls_of(Kind::Exec).len(), 1, "{text}");
}

#[test]
fn an_image_without_modules_for_the_kernel_boots_on_tmpfs_with_one_line_naming_the_directory() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.ahci_controller_with_a_swap_disk();
    run(&m.boot);
    let text = m.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("/lib/modules/6.1.0-test")).collect();
    assert_eq!(
        lines,
        [format!("diskless: {}", hardware::image::missing_dir_line("6.1.0-test"))],
        "one line, and no load errors: {text}"
    );
    assert!(lines[0].contains("apt install linux-image-6.1.0-test"), "{text}");
    assert!(!loaded_modules(&m.os).contains(&"ahci.ko".to_string()), "{text}");
    assert!(m.os.calls_of(Kind::Swapon).is_empty(), "no disk without its driver: {text}");
    let newroot = m.p("newroot");
    let tmpfs = m.os.calls_of(Kind::Mount).into_iter().filter(
        |c| matches!(c, Call::Mount { fstype, target, .. } if fstype == "tmpfs" && target.starts_with(&newroot)),
    );
    assert_eq!(tmpfs.count(), 2, "the local dirs on tmpfs: {text}");
    assert!(text.contains("diskless: starting /sbin/init (t="), "the boot goes on: {text}");
}

#[test]
fn a_module_of_the_image_that_fails_to_load_is_named_and_the_boot_goes_on_on_tmpfs() {
    let m = Machine::new(NFS_BOOT, lab_network());
    m.image();
    m.image_modules();
    m.ahci_controller_with_a_swap_disk();
    // Another build of the same kernel version: the kernel refuses the file.
    m.os.fail_module("ahci.ko", Errno::NOEXEC.raw_os_error());
    m.os.fail_nth(Kind::Mount, first_move(), 16);
    run(&m.boot);
    let text = m.text();
    let file = m.p("newroot/lib/modules/6.1.0-test/kernel/drivers/ata/ahci.ko");
    assert!(
        text.contains(&format!(
            "diskless: module ahci failed to load from {}: Exec format error (os error 8) (not a module for this \
             kernel: built for another version, or a damaged file)",
            file.display()
        )),
        "{text}"
    );
    assert!(text.contains("diskless: 1 modules from the image's /lib/modules/6.1.0-test in "), "{text}");
    assert!(text.contains("; 1 failed"), "{text}");
    assert!(m.os.calls_of(Kind::Swapon).is_empty(), "{text}");
    let json = m.boot_json();
    assert_eq!(json["image_modules"]["loaded"], serde_json::json!(["libahci"]), "{json}");
    let failed = json["image_modules"]["failed"][0].as_str().unwrap_or_default();
    assert!(failed.starts_with("ahci: Exec format error"), "{json}");
    assert_eq!(json["stages"].as_array().unwrap().len(), 7, "every stage up to the hand-off ran: {json}");
}
