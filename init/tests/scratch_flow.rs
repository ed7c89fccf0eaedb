//! The scratch stage end to end on a temp tree: a fake sysfs, image files made with
//! mkfs as the devices (read through the real read-only probing), and a fake system
//! whose "mount" leaves the mountpoint a plain directory, so the directories, wipe
//! and binds happen in the temp tree and can be checked.

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use diskless::config::Config;
use diskless::os::fake::{Call, FakeOs, Kind};
use diskless::os::{LOCAL_MOUNT_FLAGS, MountFlags};
use diskless::scratch::{self, Paths};

/// The calls that change something: every disk is read, those reads are left out.
fn changes(fake: &FakeOs) -> Vec<Call> {
    fake.calls().into_iter().filter(|c| c.kind() != Kind::ReadDisk).collect()
}

/// Mounting or enabling `device` fails with `errno`.
fn fail_device(fake: &FakeOs, device: PathBuf, errno: i32) {
    fake.fail_calls(
        move |c| match c {
            Call::Mount { source, .. } => Path::new(source) == device,
            Call::Swapon { device: d } => *d == device,
            _ => false,
        },
        errno,
    );
}

fn mount(device: PathBuf, target: PathBuf, fstype: &str) -> Call {
    let source = device.display().to_string();
    Call::Mount { source, target, fstype: fstype.into(), flags: LOCAL_MOUNT_FLAGS, data: String::new() }
}

fn bind(source: PathBuf, target: PathBuf) -> Call {
    let source = source.display().to_string();
    Call::Mount { source, target, fstype: String::new(), flags: MountFlags::BIND, data: String::new() }
}

/// sysfs, /dev with image files, the image root and the run dir in one temp dir.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let m = Machine { dir: tempfile::tempdir().unwrap() };
        for d in [
            "sys/class/block",
            "dev",
            "newroot/etc/local",
            "newroot/var/local",
            "newroot/tmp",
            "newroot/local",
            "newroot/mnt/scratch",
            "run/diskless",
        ] {
            fs::create_dir_all(m.dir.path().join(d)).unwrap();
        }
        m
    }
    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn paths(&self) -> Paths {
        Paths {
            class_block: self.p("sys/class/block"),
            dev: self.p("dev"),
            image_root: self.p("newroot"),
            run_dir: self.p("run/diskless"),
        }
    }
    /// A whole disk `name` on controller `bus`, made by `mkfs args`.
    fn disk(&self, bus: &str, name: &str, mib: u64, mkfs: &str, args: &[&str]) {
        let dev = self.p(&format!("sys/devices/{bus}/block/{name}"));
        fs::create_dir_all(&dev).unwrap();
        fs::write(dev.join("size"), format!("{}\n", (mib << 20) / 512)).unwrap();
        fs::write(dev.join("ro"), "0\n").unwrap();
        symlink(&dev, self.p("sys/class/block").join(name)).unwrap();
        let img = self.p("dev").join(name);
        File::create(&img).unwrap().set_len(mib << 20).unwrap();
        let out = Command::new(mkfs)
            .args(args)
            .arg(&img)
            .output()
            .unwrap_or_else(|e| panic!("{mkfs}: {e}: the rig must install it"));
        assert!(out.status.success(), "{mkfs}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Machine {
    /// An ext4 whole disk `vda`-like, 64 MiB, with `label`.
    fn ext4(&self, bus: &str, name: &str, label: &str) {
        self.disk(bus, name, 64, "mkfs.ext4", &["-q", "-F", "-L", label]);
    }

    /// Runs the stage with a loader that loads nothing; returns the report and the console.
    fn run(&self, config: &Config, fake: &FakeOs) -> (scratch::ScratchReport, String) {
        let (log, console) = diskless::log::captured();
        let report = scratch::scratch(config, &self.paths(), fake, &no_loader(), &log);
        (report, console.text())
    }
}

fn no_loader() -> impl Fn(&[&str]) -> Result<(), Vec<diskless::hardware::Missing>> {
    |_: &[&str]| Ok(())
}

#[test]
fn largest_labelled_fs_is_used_swaps_enabled_and_dirs_bound() {
    let m = Machine::new();
    m.ext4("pci0/0000:00:04.0", "vda", "scratch");
    m.disk("pci0/0000:00:05.0", "vdb", 96, "mkfs.ext4", &["-q", "-F", "-L", "scratch"]);
    m.disk("pci0/0000:00:06.0", "vdc", 16, "mkswap", &["-L", "x"]);
    m.disk("pci0/0000:00:07.0", "vdd", 32, "mkfs.vfat", &[]);
    let loaded = std::cell::RefCell::new(Vec::new());
    let loader = |names: &[&str]| {
        loaded.borrow_mut().extend(names.iter().map(|s| s.to_string()));
        Ok(())
    };
    let (log, console) = diskless::log::captured();
    let fake = FakeOs::default();
    let report = scratch::scratch(&Config::default(), &m.paths(), &fake, &loader, &log);
    let text = console.text();
    let mnt = m.p("newroot/mnt/scratch");
    assert_eq!(
        changes(&fake),
        [
            Call::Swapon { device: m.p("dev/vdc") },
            mount(m.p("dev/vdb"), mnt.clone(), "ext4"),
            bind(mnt.join("tmp"), m.p("newroot/tmp")),
            bind(mnt.join("local"), m.p("newroot/local")),
        ]
    );
    assert_eq!(*loaded.borrow(), ["ext4"]);
    assert_eq!(fs::metadata(mnt.join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
    assert!(mnt.join("etc/local").is_dir() && mnt.join("var/local").is_dir());
    assert_eq!(
        report.local_dirs(),
        [(PathBuf::from("/etc"), mnt.join("etc/local")), (PathBuf::from("/var"), mnt.join("var/local"))]
    );
    assert!(
        text.contains(&format!(
            "diskless: scratch: using {} (ext4, label scratch, 96 MiB) at {} (larger)\n",
            m.p("dev/vdb").display(),
            mnt.display()
        )),
        "{text}"
    );
    assert!(text.contains(&format!("diskless: swap: {} 16 MiB enabled\n", m.p("dev/vdc").display())), "{text}");
    assert!(
        text.contains(
            "diskless: disk vdd: vfat, 32 MiB, skipped (another system's filesystem, never mounted or written)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "diskless: disk vda: ext4 label \"scratch\", 64 MiB, skipped ({} is used (larger))\n",
            m.p("dev/vdb").display()
        )),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["devices"].as_array().unwrap().len(), 4);
    assert_eq!(json["swaps"][0]["enabled"], true);
    assert_eq!(json["skipped"][1]["reason"], "not_ours");
}

#[test]
fn wipe_empties_only_the_bound_subdirectories() {
    let m = Machine::new();
    m.ext4("pci0/0000:00:04.0", "vda", "scratch");
    // The fake mount leaves the mountpoint a directory: give it content of an earlier boot.
    let mnt = m.p("newroot/mnt/scratch");
    let outside = m.p("precious");
    fs::write(&outside, "keep").unwrap();
    for d in ["etc/local/sub", "tmp", "local", "keep"] {
        fs::create_dir_all(mnt.join(d)).unwrap();
    }
    fs::write(mnt.join("etc/local/sub/fstab"), "old").unwrap();
    fs::write(mnt.join("keep/data"), "keep").unwrap();
    fs::write(mnt.join("etc/other"), "keep").unwrap();
    symlink(&outside, mnt.join("tmp/evil")).unwrap();
    symlink(m.p("newroot"), mnt.join("local/evil-dir")).unwrap();
    let mut config = Config::default();
    config.scratch.wipe = true;
    let (report, console) = m.run(&config, &FakeOs::default());
    assert!(report.scratch.is_some(), "{}", console);
    for d in ["etc/local", "var/local", "tmp", "local"] {
        assert_eq!(fs::read_dir(mnt.join(d)).unwrap().count(), 0, "{d} not emptied");
    }
    assert_eq!(fs::read_to_string(&outside).unwrap(), "keep");
    assert!(m.p("newroot/etc/local").is_dir(), "followed a symlink into the image");
    assert!(mnt.join("keep/data").exists() && mnt.join("etc/other").exists());
    assert!(console.contains(&format!("diskless: scratch: wiped {}: 1 entries removed\n", mnt.join("tmp").display())));
}

#[test]
fn mount_failure_falls_back_to_tmpfs_and_says_why() {
    let m = Machine::new();
    m.ext4("pci0/0000:00:04.0", "vda", "scratch");
    let fake = FakeOs::default();
    fail_device(&fake, m.p("dev/vda"), 117); // EUCLEAN
    let (report, console) = m.run(&Config::default(), &fake);
    assert!(report.scratch.is_none() && report.local_dirs().is_empty());
    let failure = report.failure.unwrap();
    assert!(failure.contains("the filesystem is corrupt"), "{failure}");
    assert!(console.contains("local dirs on tmpfs"), "{}", console);
    assert_eq!(changes(&fake).len(), 1, "nothing after the failed mount: {:?}", fake.calls());
}

#[test]
fn missing_mountpoint_uses_the_run_dir_and_swapon_failure_is_not_fatal() {
    let m = Machine::new();
    fs::remove_dir(m.p("newroot/mnt/scratch")).unwrap();
    fs::remove_dir(m.p("newroot/local")).unwrap();
    m.ext4("pci0/0000:00:04.0", "vda", "scratch");
    m.disk("pci0/0000:00:05.0", "vdb", 16, "mkswap", &[]);
    let fake = FakeOs::default();
    fail_device(&fake, m.p("dev/vdb"), 22);
    let (report, console) = m.run(&Config::default(), &fake);
    let used = report.scratch.expect("scratch used");
    assert_eq!((used.mountpoint, used.fallback_mountpoint), (m.p("run/diskless/scratch"), true));
    assert_eq!(used.binds.len(), 1, "only /tmp: the image has no /local");
    assert!(!report.swaps[0].enabled);
    assert!(console.contains("/mnt/scratch does not exist in the image"), "{}", console);
}

#[test]
fn no_candidate_leaves_everything_alone() {
    let m = Machine::new();
    m.ext4("pci0/0000:00:04.0", "vda", "data");
    let fake = FakeOs::default();
    let (report, console) = m.run(&Config::default(), &fake);
    assert!(changes(&fake).is_empty(), "{:?}", fake.calls());
    assert_eq!(fake.calls_of(Kind::ReadDisk), [Call::ReadDisk { device: m.p("dev/vda"), size: 64 << 20 }]);
    assert!(report.scratch.is_none());
    assert!(
        console.contains(
            "diskless: scratch: no ext4, xfs, btrfs filesystem labelled \"scratch\" found; local dirs on tmpfs\n"
        ),
        "{}",
        console
    );
}
