//! QEMU tests of the scratch stage (DESIGN §6): local disks found by signature, a
//! filesystem labelled `scratch` mounted and bound over the local dirs, `/tmp` and
//! `/local`, swap enabled, every other disk left untouched, and the fallback to tmpfs.
//!
//! The disks are raw files made on the host before the boot, without loop devices:
//! `mkfs.ext4 -d DIR` fills a filesystem from a directory, `mkswap`, `mkntfs`, and
//! `sfdisk` writes partition tables into a file, into which the partition images are
//! copied at their offsets. After the boot the files are read again on the host
//! (`sha256sum`, `debugfs`). The machine boots the busybox NFS image like
//! `tests/nfsroot.rs` (direct `-kernel` boot on the PXE rig's segment, host lab3-12,
//! so every layer applies); the image's `/sbin/init` reports mounts, mountinfo,
//! swaps and the trees under the local dirs, `/tmp` and `/mnt/scratch`.
//!
//! Three VMs, each once per test process:
//! - A (q35): AHCI disk with an MBR and an ext4 partition labelled `scratch`; a
//!   virtio-blk disk that is all swap; an NVMe disk with a GPT holding an NTFS and an
//!   unlabelled ext4 partition with data. The scratch and the swap are used; the NVMe
//!   disk is byte-identical afterwards and never mounted.
//! - B: `diskless.scratch.wipe=true` with a scratch filesystem that already holds files
//!   in the bound subdirectories and one at its root: only the former are removed.
//! - C: an ext4 labelled `scratch` whose superblock is damaged (magic and label kept,
//!   so it is chosen): the mount fails, the local dirs fall back to tmpfs, the boot
//!   completes, and the disk is byte-identical afterwards.
//! - D: the busybox image without `/lib/modules` (hard-linked copy) and an AHCI disk
//!   with a `scratch` filesystem: the storage drivers are the image's, so the disk is
//!   never seen; one line names the missing directory and the boot completes on tmpfs.
//!
//! The initramfs holds only the way to the root: AHCI, NVMe, virtio-blk and the
//! filesystems load from the image's `/lib/modules/<kernel>` in stage `modules` (A).
//!
//! A machine without disks is covered by `tests/nfsroot.rs` (VM A there).
//!
//! Console logs: `target/qemu-logs/<vm>.log`; the disk files of a run stay in
//! `target/qemu-work/scratch-disks-<pid>-<n>/` until a later test process cleans them.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use qemu_tests::build::{build_initramfs, scratch_file};
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::{Disk, DiskBus, Machine, Nic, VmRun};

const LAB_MAC: &str = "52:54:00:77:03:12";
const TIMEOUT: Duration = Duration::from_secs(300);
const MIB: u64 = 1 << 20;
const SETUP_HINT: &str = "run qemu/setup (packages e2fsprogs, util-linux, fdisk, ntfs-3g, coreutils)";

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot"]))
}

// --- host tools ---------------------------------------------------------------------

/// Runs `program args`, returns its stdout; panics with the command, its output and
/// the setup hint when it is missing or fails (tests never skip).
#[track_caller]
fn tool(program: &str, args: &[&str]) -> String {
    tool_stdin(program, args, None)
}

#[track_caller]
fn tool_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write as _;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let shown = format!("{program} {}", args.join(" "));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}: {SETUP_HINT}"));
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{shown}: {}\n{}{}\n{SETUP_HINT}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// sha256 of a whole file.
fn sha256(path: &Path) -> String {
    let out = tool("sha256sum", &[&path.display().to_string()]);
    out.split_whitespace().next().unwrap_or_default().to_string()
}

/// `debugfs -R <request> <image>` (read-only), its stdout.
fn debugfs(image: &Path, request: &str) -> String {
    tool("debugfs", &["-R", request, &image.display().to_string()])
}

/// Where one VM's disk files are made: `target/qemu-work/scratch-disks-<pid>-<n>/`.
struct DiskDir(PathBuf);

impl DiskDir {
    fn new() -> DiskDir {
        let dir = scratch_file("scratch-disks", "d").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        DiskDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A zero-filled (sparse) file of `mib` MiB.
    fn blank(&self, name: &str, mib: u64) -> PathBuf {
        let path = self.path(name);
        File::create(&path).unwrap().set_len(mib * MIB).unwrap();
        path
    }

    /// A directory tree of `files` (relative path, content), for `mkfs.ext4 -d`.
    fn tree(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.path(name);
        std::fs::create_dir_all(&root).unwrap();
        for (rel, content) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        root
    }

    /// An ext4 filesystem image of `mib` MiB, labelled `label` (or none), holding `files`.
    fn ext4(&self, name: &str, mib: u64, label: Option<&str>, files: &[(&str, &str)]) -> PathBuf {
        let image = self.blank(name, mib);
        let tree = self.tree(&format!("{name}.tree"), files);
        let (tree_s, image_s) = (tree.display().to_string(), image.display().to_string());
        let mut args = vec!["-q", "-F", "-d", &tree_s];
        if let Some(label) = label {
            args.extend(["-L", label]);
        }
        args.push(&image_s);
        tool("mkfs.ext4", &args);
        image
    }

    /// A swap area of `mib` MiB labelled `label`.
    fn swap(&self, name: &str, mib: u64, label: &str) -> PathBuf {
        let image = self.blank(name, mib);
        tool("mkswap", &["-L", label, &image.display().to_string()]);
        image
    }

    /// An NTFS filesystem image of `mib` MiB labelled `label`.
    fn ntfs(&self, name: &str, mib: u64, label: &str) -> PathBuf {
        let image = self.blank(name, mib);
        tool("mkntfs", &["-F", "-Q", "-L", label, "-p", "2048", &image.display().to_string()]);
        image
    }

    /// A disk of `mib` MiB with a partition table (`label: gpt` or `dos`) whose
    /// partitions are `parts` (sfdisk type, image), 1 MiB-aligned from 1 MiB on, each
    /// exactly its image's size, with the image copied in.
    fn partitioned(&self, name: &str, mib: u64, table: &str, parts: &[(&str, &Path)]) -> PathBuf {
        let disk = self.blank(name, mib);
        let mut script = format!("label: {table}\n");
        let mut start = MIB;
        let mut offsets = Vec::new();
        for (kind, image) in parts {
            let len = std::fs::metadata(image).unwrap().len();
            assert_eq!(len % MIB, 0, "{} is not a whole number of MiB", image.display());
            script.push_str(&format!("start={}, size={}, type={kind}\n", start / 512, len / 512));
            offsets.push((start, *image));
            start += len;
        }
        tool_stdin("sfdisk", &["-q", &disk.display().to_string()], Some(&script));
        let mut out = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        for (offset, image) in offsets {
            out.seek(SeekFrom::Start(offset)).unwrap();
            std::io::copy(&mut File::open(image).unwrap(), &mut out).unwrap();
        }
        disk
    }
}

// --- the boots ------------------------------------------------------------------------

struct Outcome {
    run: VmRun,
    /// The disk files, to read again after the boot.
    disks: DiskDir,
    /// sha256 of disk files before the boot, by file name.
    before: Vec<(String, String)>,
}

impl Outcome {
    fn image(&self) -> ImageReport<'_> {
        ImageReport(&self.run.log)
    }
    fn log_path(&self) -> String {
        self.run.log.path().display().to_string()
    }
    fn console(&self) -> &qemu_tests::console::ConsoleLog {
        &self.run.log
    }
    /// The hash taken before the boot of the disk file `name`.
    fn hash_before(&self, name: &str) -> &str {
        &self.before.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no hash of {name} taken")).1
    }
    /// The boot.json the image saw.
    fn boot_json(&self) -> String {
        qemu_tests::nfs::ImageReport(self.console()).boot_json()
    }
}

/// Boots the image at `image` (the busybox image, or a variant of it) as lab3-12 with
/// `disks` (bus, file in `dir`) and the extra command line `append`; hashes the files
/// named in `hashed` before the boot.
fn boot(
    image: &Path,
    name: &str,
    machine: Machine,
    append: &str,
    dir: DiskDir,
    disks: &[(DiskBus, &str)],
    hashed: &[&str],
) -> Outcome {
    let before = hashed.iter().map(|n| (n.to_string(), sha256(&dir.path(n)))).collect();
    let mut rig = PxeRig::new(name).unwrap();
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let export = NfsExport::new(image);
    let tap = rig.tap().unwrap();
    let mut vm = rig
        .direct_vm(name, netboot_initrd(), &format!("root=/dev/nfs nfsroot=10.77.0.1:/export {append}"))
        .machine(machine)
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(TIMEOUT);
    for (bus, file) in disks {
        vm = vm.disk(Disk::image(bus.clone(), &dir.path(file)));
    }
    let _nfs = NfsServer::start(rig.netns(), &export, name).unwrap();
    let run = vm.run().unwrap();
    Outcome { run, disks: dir, before }
}

fn nvme() -> DiskBus {
    DiskBus::Nvme { serial: "diskless-nvme0".into() }
}

/// A: scratch partition on AHCI, swap on virtio-blk, a foreign NVMe disk.
fn vm_a() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = DiskDir::new();
        let scratch = d.ext4("scratch.part", 128, Some("scratch"), &[("tmp/from-scratch", "tmp file on the scratch")]);
        d.partitioned("ahci.raw", 160, "dos", &[("83", &scratch)]);
        d.swap("swap.raw", 64, "swap0");
        let ntfs = d.ntfs("ntfs.part", 32, "windows");
        let data =
            d.ext4("data.part", 32, None, &[("data/report.txt", "precious data\n"), ("data/sub/more", "more\n")]);
        d.partitioned(
            "nvme.raw",
            80,
            "gpt",
            &[("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", &ntfs), ("0FC63DAF-8483-4772-8E79-3D69D8477DE4", &data)],
        );
        boot(
            &image_dir("busybox"),
            "scratch-A-ahci-scratch-virtio-swap-nvme-foreign",
            Machine::Q35,
            "",
            d,
            &[(DiskBus::Ahci, "ahci.raw"), (DiskBus::VirtioBlk, "swap.raw"), (nvme(), "nvme.raw")],
            &["nvme.raw"],
        )
    })
}

/// Files on B's scratch before the boot: in each bound subdirectory, and at its root.
const B_FILES: &[(&str, &str)] = &[
    ("etc/local/stale-etc", "from the last boot"),
    ("var/local/stale-var", "from the last boot"),
    ("tmp/stale-tmp", "from the last boot"),
    ("tmp/subdir/deep", "nested, from the last boot"),
    ("local/stale-local", "from the last boot"),
    ("keep-me", "at the root of the scratch: not bound, never wiped"),
];

/// B: a used scratch with `diskless.scratch.wipe=true`.
fn vm_b() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = DiskDir::new();
        d.ext4("scratch.raw", 64, Some("scratch"), B_FILES);
        boot(
            &image_dir("busybox"),
            "scratch-B-wipe",
            Machine::Pc,
            "diskless.scratch.wipe=true",
            d,
            &[(DiskBus::VirtioBlk, "scratch.raw")],
            &[],
        )
    })
}

/// C: an ext4 labelled scratch with a damaged superblock.
fn vm_c() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = DiskDir::new();
        let image = d.ext4("corrupt.raw", 64, Some("scratch"), &[("tmp/old", "old")]);
        // Zero the first 56 bytes of the superblock (at 1 KiB): inode and block counts,
        // first data block, block size, blocks per group... up to s_magic at byte 56,
        // which stays, as do the feature flags and the label (byte 120).
        use std::os::unix::fs::FileExt as _;
        let f = std::fs::OpenOptions::new().write(true).open(&image).unwrap();
        f.write_all_at(&[0u8; 56], 1024).unwrap();
        drop(f);
        let check = Command::new("e2fsck").args(["-fn", &image.display().to_string()]).output().unwrap();
        assert!(!check.status.success(), "the damaged superblock still passes e2fsck -n");
        boot(
            &image_dir("busybox"),
            "scratch-C-corrupt",
            Machine::Pc,
            "",
            d,
            &[(DiskBus::Ahci, "corrupt.raw")],
            &["corrupt.raw"],
        )
    })
}

/// The image's init ran to the end, no ERROR from ours, QEMU powered off.
#[track_caller]
/// D: the busybox image without its kernel modules, an AHCI disk with a scratch filesystem.
fn vm_d() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let d = DiskDir::new();
        d.ext4("scratch.raw", 64, Some("scratch"), &[]);
        // A hard-linked copy costs nothing; removing its lib/modules unlinks only the copy's.
        let image = d.path("image-without-modules");
        let source = image_dir("busybox");
        tool("cp", &["-al", &source.display().to_string(), &image.display().to_string()]);
        std::fs::remove_dir_all(image.join("lib/modules")).unwrap();
        boot(&image, "scratch-D-nomodules", Machine::Pc, "", d, &[(DiskBus::Ahci, "scratch.raw")], &[])
    })
}

/// E: the busybox image, no disk, the console showing every kernel message
/// (`loglevel=7`): the background loader's lines in kmsg reach it.
fn vm_e() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        boot(&image_dir("busybox"), "scratch-E-background", Machine::Pc, "loglevel=7", DiskDir::new(), &[], &[])
    })
}

fn assert_completed(o: &Outcome) {
    o.image().assert_done();
    assert_eq!(o.image().value("hostname"), LAB_HOST, "({})", o.log_path());
    o.console().assert_no_line(r"diskless: ERROR");
    o.run.assert_clean_exit();
}

/// The `/proc/self/mountinfo` line of `target`: (root within its filesystem, fstype, source).
#[track_caller]
fn mountinfo(o: &Outcome, target: &str) -> (String, String, String) {
    let m = o.console().assert_line(&format!(
        r"^IMAGE: mountinfo \d+ \d+ \d+:\d+ (\S+) {} \S+.* - (\S+) (\S+) ",
        regex::escape(target)
    ));
    (m[1].to_string(), m[2].to_string(), m[3].to_string())
}

// --- A: scratch, swap, foreign disk ---------------------------------------------------

#[test]
fn scratch_partition_is_mounted_and_bound_over_local_dirs_and_tmp() {
    let o = vm_a();
    assert_completed(o);
    o.console()
        .assert_line(r"diskless: scratch: using /dev/sda1 \(ext4, label scratch, 128 MiB\) at /newroot/mnt/scratch \(");
    o.console().assert_line(r"diskless: scratch: /tmp on /newroot/mnt/scratch/tmp\s*$");
    o.console().assert_line(r"diskless: scratch: local dirs from /newroot/mnt/scratch: /etc/local, /var/local\s*$");
    o.console().assert_line(r#"diskless: disk sda1: ext4 label "scratch", 128 MiB\s*$"#);
    // Inside the image: the scratch on /mnt/scratch, its subdirectories on the local
    // dirs, /tmp and /local (mountinfo's root field names the subdirectory).
    for (target, root) in [
        ("/mnt/scratch", "/"),
        ("/etc/local", "/etc/local"),
        ("/var/local", "/var/local"),
        ("/tmp", "/tmp"),
        ("/local", "/local"),
    ] {
        let (r, fstype, source) = mountinfo(o, target);
        assert_eq!(
            (r.as_str(), fstype.as_str(), source.as_str()),
            (root, "ext4", "/dev/sda1"),
            "{target} ({})",
            o.log_path()
        );
        assert!(o.image().mount(target).starts_with("/dev/sda1 "), "{target} in /proc/mounts ({})", o.log_path());
    }
    assert!(o.image().mount("/etc/local").contains(" ext4 rw,"), "({})", o.log_path());
    // /tmp shows what was on the scratch's tmp/ before the boot.
    let (_, _, what) = o.image().assert_file("/tmp/from-scratch");
    assert_eq!(what, "tmp file on the scratch", "({})", o.log_path());
}

#[test]
fn layers_are_copied_onto_the_scratch() {
    let o = vm_a();
    assert_eq!(o.image().read("/etc/layer-test"), "ip 10.77.0.112", "({})", o.log_path());
    assert_eq!(o.image().read("/etc/from-base"), "only in base", "({})", o.log_path());
    assert_eq!(o.image().read("/var/from-host"), "var file in host lab3-12", "({})", o.log_path());
    // The same files seen through the scratch mount: they are on the disk.
    let (mode, owner, what) = o.image().assert_file("/mnt/scratch/etc/local/secret");
    assert_eq!(
        (mode.as_str(), owner.as_str(), what.as_str()),
        ("600", "1000:1000", "secret of lab3-12"),
        "({})",
        o.log_path()
    );
    let (_, _, what) = o.image().assert_file("/mnt/scratch/var/local/from-base");
    assert_eq!(what, "var file in base", "({})", o.log_path());
}

#[test]
fn swap_on_virtio_disk_is_enabled() {
    let o = vm_a();
    o.console().assert_line(r"diskless: swap: /dev/vda 64 MiB enabled\s*$");
    o.console().assert_line(r#"diskless: disk vda: swap label "swap0", 64 MiB\s*$"#);
    let swap = o.console().assert_line(r"^IMAGE: swap (\S+)\s+(\S+)\s+(\d+)\s");
    assert_eq!((&swap[1], &swap[2]), ("/dev/vda", "partition"), "({})", o.log_path());
    let kib: u64 = swap[3].parse().unwrap();
    assert!((60 * 1024..=64 * 1024).contains(&kib), "swap size {kib} KiB ({})", o.log_path());
}

#[test]
fn foreign_nvme_disk_is_skipped_with_reasons_never_mounted_and_unchanged() {
    let o = vm_a();
    assert_completed(o);
    o.console().assert_line(r"diskless: disk nvme0n1: .*skipped \(partitioned disk, see its partitions\)");
    // (NTFS keeps its label in $Volume, not in the boot sector the probe reads.)
    o.console().assert_line(r"diskless: disk nvme0n1p1: ntfs, 32 MiB, skipped \(another system's filesystem, never mounted or written\)\s*$");
    o.console()
        .assert_line(r#"diskless: disk nvme0n1p2: ext4, 32 MiB, skipped \(no label, scratch.label is "scratch"\)"#);
    // Not in /proc/mounts at all, and the kernel never mounted it (EXT4-fs/ntfs lines).
    o.console().assert_no_line(r"^IMAGE: mount /dev/nvme");
    o.console().assert_no_line(r"^IMAGE: swap /dev/nvme");
    o.console().assert_no_line(r"(EXT4-fs|ntfs3?)\W*\(?nvme");
    let after = sha256(&o.disks.path("nvme.raw"));
    assert_eq!(after, o.hash_before("nvme.raw"), "the NVMe disk changed during the boot ({})", o.log_path());
}

#[test]
fn boot_json_records_the_scratch_and_the_swap() {
    let o = vm_a();
    let json = o.boot_json();
    let at = json
        .find(r#""scratch": {"#)
        .unwrap_or_else(|| panic!("no \"scratch\" in boot.json ({}):\n{json}", o.log_path()));
    let section = &json[at..];
    for want in [
        r#""device": "/dev/sda1""#,
        r#""kind": "ext4""#,
        r#""mountpoint": "/newroot/mnt/scratch""#,
        r#""device": "/dev/vda""#,
        r#""enabled": true"#,
        r#""device": "/dev/nvme0n1p1""#,
    ] {
        assert!(section.contains(want), "{want} missing in boot.json's scratch section ({}):\n{section}", o.log_path());
    }
}

// --- B: wipe ------------------------------------------------------------------------

#[test]
fn wipe_empties_the_bound_subdirectories_in_the_image() {
    let o = vm_b();
    assert_completed(o);
    o.console()
        .assert_line(r"diskless: scratch: using /dev/vda \(ext4, label scratch, 64 MiB\) at /newroot/mnt/scratch");
    for (dir, removed) in [("etc/local", 1), ("var/local", 1), ("tmp", 3), ("local", 1)] {
        o.console().assert_line(&format!(
            r"diskless: scratch: wiped /newroot/mnt/scratch/{}: {removed} entries removed\s*$",
            regex::escape(dir)
        ));
    }
    for stale in ["/etc/local/stale-etc", "/var/local/stale-var", "/tmp/stale-tmp", "/tmp/subdir"] {
        assert!(o.image().file(stale).is_none(), "{stale} survived the wipe ({})", o.log_path());
    }
    assert!(
        o.image().file("/mnt/scratch/local/stale-local").is_none(),
        "local/stale-local survived ({})",
        o.log_path()
    );
    let (_, _, what) = o.image().assert_file("/mnt/scratch/keep-me");
    assert_eq!(what, "at the root of the scratch: not bound, never wiped", "({})", o.log_path());
    // The layers land after the wipe.
    assert_eq!(o.image().read("/etc/layer-test"), "ip 10.77.0.112", "({})", o.log_path());
    assert_eq!(mountinfo(o, "/etc/local").0, "/etc/local", "({})", o.log_path());
}

#[test]
fn wipe_result_is_on_the_disk_after_poweroff() {
    let o = vm_b();
    o.run.assert_clean_exit();
    // The guest powers off with the scratch mounted: replay its journal on a copy, as
    // the next mount would, and check the result is a consistent filesystem.
    let disk = o.disks.path("scratch-after.raw");
    // Every message names the console log and the disk copy.
    let at = format!("console log {}, disk {}", o.log_path(), disk.display());
    tool("cp", &["--sparse=always", &o.disks.path("scratch.raw").display().to_string(), &disk.display().to_string()]);
    let fix = Command::new("e2fsck").args(["-fy", &disk.display().to_string()]).output().expect(SETUP_HINT);
    assert!(
        matches!(fix.status.code(), Some(0 | 1)),
        "e2fsck -fy of the scratch after the boot ({at}): {}\n{}",
        fix.status,
        String::from_utf8_lossy(&fix.stdout)
    );
    tool("e2fsck", &["-fn", &disk.display().to_string()]);
    let root = debugfs(&disk, "ls -l /");
    assert!(root.contains("keep-me"), "keep-me gone from the scratch's root ({at}):\n{root}");
    assert_eq!(
        debugfs(&disk, "cat /keep-me"),
        "at the root of the scratch: not bound, never wiped",
        "content of keep-me ({at})"
    );
    // `ls -p`: one "/inode/mode/uid/gid/name/size/" line per entry.
    let names = |dir: &str| -> Vec<String> {
        debugfs(&disk, &format!("ls -p {dir}"))
            .lines()
            .filter_map(|l| l.split('/').nth(5))
            .filter(|n| *n != "." && *n != "..")
            .map(str::to_string)
            .collect()
    };
    // (debugfs lists a missing directory as empty: the subdirectories must exist.)
    let top = names("/");
    for want in ["keep-me", "tmp", "local", "etc", "var"] {
        assert!(top.iter().any(|n| n == want), "{want} missing at the scratch's root ({at}): {top:?}");
    }
    assert_eq!(names("/tmp"), Vec::<String>::new(), "/tmp on the disk after the boot ({at})");
    assert_eq!(names("/local"), Vec::<String>::new(), "/local on the disk after the boot ({at})");
    let etc = names("/etc/local");
    assert!(!etc.iter().any(|n| n == "stale-etc"), "stale-etc on the disk ({at}): {etc:?}");
    assert!(etc.iter().any(|n| n == "from-base"), "the layer copy is not on the disk ({at}): {etc:?}");
    let var = names("/var/local");
    assert!(!var.iter().any(|n| n == "stale-var"), "stale-var on the disk ({at}): {var:?}");
}

// --- C: damaged scratch -------------------------------------------------------------

#[test]
fn damaged_scratch_falls_back_to_tmpfs_and_the_boot_completes() {
    let o = vm_c();
    assert_completed(o);
    o.console().assert_line(r#"diskless: disk sda: ext4 label "scratch", 64 MiB\s*$"#);
    o.console().assert_line(
        r"diskless: scratch: /dev/sda not used: cannot mount /dev/sda \(ext4\) on /newroot/mnt/scratch: .*the filesystem is corrupt.*; local dirs on tmpfs\s*$",
    );
    o.console().assert_no_line(r"diskless: scratch: using ");
    assert!(o.image().mount("/etc/local").starts_with("tmpfs "), "({})", o.log_path());
    assert!(o.image().mount("/var/local").starts_with("tmpfs "), "({})", o.log_path());
    o.console().assert_no_line(r"^IMAGE: mount \S+ /mnt/scratch ");
    o.console().assert_no_line(r"^IMAGE: mount /dev/sda");
    assert_eq!(o.image().read("/etc/layer-test"), "ip 10.77.0.112", "({})", o.log_path());
    let json = o.boot_json();
    assert!(
        json.contains(r#""failure": "cannot mount /dev/sda (ext4)"#),
        "no failure in boot.json ({}):\n{json}",
        o.log_path()
    );
}

#[test]
fn damaged_scratch_is_unchanged() {
    let o = vm_c();
    o.run.assert_clean_exit();
    let after = sha256(&o.disks.path("corrupt.raw"));
    assert_eq!(after, o.hash_before("corrupt.raw"), "the failed mount changed the disk ({})", o.log_path());
}

/// The rig kernel's release, as the image's module directory is named.
fn kernel_release() -> String {
    qemu_tests::kernel::Kernel::cached().version.clone()
}

#[test]
fn ahci_and_nvme_drivers_load_from_the_image_after_the_root_and_find_their_disks() {
    let o = vm_a();
    assert_completed(o);
    let release = kernel_release();
    let line = o.console().assert_line(&format!(
        r"diskless: (\d+) modules from the image's /lib/modules/{} in \d+ ms: ([^;]*?)(?:; \d+ failed)?\s*$",
        regex::escape(&release)
    ));
    let loaded: Vec<&str> = line[2].split(' ').collect();
    for module in ["ahci", "nvme", "virtio_blk", "sd_mod"] {
        assert!(loaded.contains(&module), "{module} not loaded from the image: {loaded:?} ({})", o.log_path());
    }
    // Only the disk path before the local stage; the other devices' drivers load after
    // the hand-off, in a child the image's init inherits.
    let later = o.console().assert_line(
        r"diskless: (\d+) more modules load from the image in the background after the hand-off: (.*?)\s*$",
    );
    let later: Vec<&str> = later[2].split(' ').collect();
    for module in ["psmouse", "qemu_fw_cfg"] {
        assert!(later.contains(&module), "{module} not left for later: {later:?} ({})", o.log_path());
        assert!(!loaded.contains(&module), "{module} on the critical path: {loaded:?} ({})", o.log_path());
    }
    o.console().assert_line(&format!(
        r"diskless: the image's other {} drivers load in the background \(pid \d+\)\s*$",
        later.len()
    ));
    // boot.json: the archive's modules and the image's, each in its own list.
    let json = o.boot_json();
    let section = |start: &str, end: char| -> String {
        let at = json.find(start).unwrap_or_else(|| panic!("no {start} in boot.json ({}):\n{json}", o.log_path()));
        let rest = &json[at + start.len()..];
        rest[..rest.find(end).unwrap_or(rest.len())].to_string()
    };
    // Top-level keys (two spaces in): the root's own "modules" (the NFS client) come first.
    let archive = section("\n  \"modules\": [", ']');
    let image = section("\n  \"image_modules\": {", '}');
    assert!(archive.contains(r#""virtio_net""#) && !archive.contains(r#""ahci""#), "{archive} ({})", o.log_path());
    assert!(image.contains(r#""ahci""#) && image.contains(r#""nvme""#), "{image} ({})", o.log_path());
    // The disks on both controllers were found by the scratch search that followed.
    o.console().assert_line(r#"diskless: disk sda1: ext4 label "scratch", 128 MiB\s*$"#);
    o.console().assert_line(r"diskless: disk nvme0n1p2: ");
}

#[test]
fn an_image_without_modules_for_the_kernel_boots_on_tmpfs_with_one_line_naming_what_to_install() {
    let o = vm_d();
    assert_completed(o);
    let release = kernel_release();
    let lines = o.console().find_all(&format!(r"^diskless: .*/lib/modules/{}.*$", regex::escape(&release)));
    assert_eq!(lines.len(), 1, "one line about the missing modules ({})", o.log_path());
    assert!(
        lines[0]
            .line
            .contains(&format!("the image has no modules for the running kernel: /lib/modules/{release} is missing"))
            && lines[0].line.contains(&format!("apt install linux-image-{release}")),
        "{} ({})",
        lines[0].line,
        o.log_path()
    );
    o.console().assert_no_line(r"diskless: scratch: using ");
    assert!(o.image().mount("/etc/local").starts_with("tmpfs "), "({})", o.log_path());
}

#[test]
fn drivers_off_the_disk_path_load_from_the_image_after_the_handoff_in_the_background() {
    let o = vm_e();
    assert_completed(o);
    let queued = o.console().assert_line(
        r"diskless: (\d+) more modules load from the image in the background after the hand-off: (.*?)\s*$",
    );
    let queued: Vec<String> = queued[2].split(' ').map(str::to_string).collect();
    o.console().assert_line(r"diskless: the image's other \d+ drivers load in the background \(pid \d+\)\s*$");
    // The child's kmsg lines: the image powers off when its report is done, so the
    // first loads are certain, not the last.
    let loaded = o.console().find_all(r"diskless: loaded (\S+) from the image in the background\s*$");
    assert!(!loaded.is_empty(), "no background load reported ({})", o.log_path());
    for m in &loaded {
        let module = m.get(1).unwrap_or_default();
        assert!(queued.iter().any(|q| q == module), "{module} was not queued: {queued:?} ({})", o.log_path());
    }
    o.console().assert_no_line(r"diskless: \S+ did not load from the image in the background: errno");
}
