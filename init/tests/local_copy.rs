//! Layer copying on real temp-dir trees. These tests run as root (the rig and CI do),
//! so owners are set and checked for real; they fail rather than skip otherwise.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use diskless::admin::{self, EntryKind};
use diskless::config::{Config, Mode as LocalMode};
use diskless::local::{
    self, ApplyError, ApplyReport, CopyWarning, LayerInput, LayerKind, apply, plan_mounts, select_layers,
};
use diskless::os::RealOs;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, makedev, mknodat, utimensat};

struct Image {
    dir: tempfile::TempDir,
    config: Config,
}

fn input() -> LayerInput {
    LayerInput {
        broadcast: Ipv4Addr::new(192, 168, 1, 255),
        address: Ipv4Addr::new(192, 168, 1, 23),
        hostname: "lab3-12".into(),
    }
}

fn assert_root() {
    assert!(rustix::process::geteuid().is_root(), "the layer copy tests need root (owners, device nodes, mounts)");
}

impl Image {
    /// An image with the local dirs of `dirs` present (as the admin must create them).
    fn new(dirs: &[&str]) -> Image {
        assert_root();
        let dir = tempfile::tempdir().unwrap();
        let config = Config { dirs: dirs.iter().map(PathBuf::from).collect(), ..Config::default() };
        for d in dirs {
            fs::create_dir_all(dir.path().join(d.trim_start_matches('/')).join("local")).unwrap();
        }
        Image { dir, config }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `<root>/diskless/<layer>/<path>`
    fn layer(&self, layer: &str, path: &str) -> PathBuf {
        self.root().join("diskless").join(layer).join(path)
    }

    fn write(&self, layer: &str, path: &str, content: &str) -> PathBuf {
        let p = self.layer(layer, path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    fn local(&self, path: &str) -> PathBuf {
        self.root().join(path)
    }

    fn copy(&self) -> Result<ApplyReport, ApplyError> {
        let selection = select_layers(&self.config, self.root(), &input());
        let plan = plan_mounts(&self.config, self.root(), Path::new("/run/diskless-unused"));
        // As the boot copies: after the read-ahead, from what it kept.
        let ahead = diskless::local::prefetch::prefetch(self.root(), &selection.layers);
        apply(&selection, self.root(), &plan.destinations, Some(ahead), &RealOs)
    }
}

fn set_times_nofollow(path: &Path, seconds: i64, nanos: i64) {
    let t = Timespec { tv_sec: seconds, tv_nsec: nanos };
    utimensat(CWD, path, &Timestamps { last_access: t, last_modification: t }, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

#[test]
fn modes_owners_mtimes_and_symlinks_are_preserved() {
    let img = Image::new(&["/etc"]);
    let fstab = img.write("base", "etc/fstab", "proc /proc proc defaults 0 0\n");
    lchown(&fstab, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&fstab, fs::Permissions::from_mode(0o4640)).unwrap();
    set_times_nofollow(&fstab, 1_000_000_000, 123_456_789);

    let ssh = img.layer("base", "etc/ssh");
    fs::create_dir_all(&ssh).unwrap();
    img.write("base", "etc/ssh/key", "secret");
    lchown(&ssh, Some(42), Some(43)).unwrap();
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
    set_times_nofollow(&ssh, 1_100_000_000, 0);

    let absolute = img.layer("base", "etc/resolv.conf");
    symlink("/run/resolv.conf", &absolute).unwrap();
    lchown(&absolute, Some(7), Some(8)).unwrap();
    set_times_nofollow(&absolute, 1_200_000_000, 5);
    symlink("does/not/exist", img.layer("base", "etc/dangling")).unwrap();

    let report = img.copy().unwrap();
    assert_eq!(report.warnings, []);
    let base = &report.layers[0];
    assert_eq!((base.kind, base.files, base.directories, base.symlinks, base.skipped), (LayerKind::Base, 2, 1, 2, 0));

    let f = fs::symlink_metadata(img.local("etc/local/fstab")).unwrap();
    assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o4640, 1234, 5678));
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_000_000_000, 123_456_789));
    assert_eq!(fs::read_to_string(img.local("etc/local/fstab")).unwrap(), "proc /proc proc defaults 0 0\n");

    let d = fs::symlink_metadata(img.local("etc/local/ssh")).unwrap();
    assert!(d.is_dir());
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()), (0o700, 42, 43, 1_100_000_000));
    assert_eq!(fs::read_to_string(img.local("etc/local/ssh/key")).unwrap(), "secret");

    let l = fs::symlink_metadata(img.local("etc/local/resolv.conf")).unwrap();
    assert!(l.file_type().is_symlink());
    assert_eq!((l.uid(), l.gid(), l.mtime(), l.mtime_nsec()), (7, 8, 1_200_000_000, 5));
    assert_eq!(fs::read_link(img.local("etc/local/resolv.conf")).unwrap(), Path::new("/run/resolv.conf"));
    assert_eq!(fs::read_link(img.local("etc/local/dangling")).unwrap(), Path::new("does/not/exist"));
}

#[test]
fn a_symlink_from_one_layer_is_not_followed_by_the_next() {
    let img = Image::new(&["/etc"]);
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir_all(img.layer("base", "etc")).unwrap();
    symlink(outside.path(), img.layer("base", "etc/evil")).unwrap();
    symlink(outside.path().join("file"), img.layer("base", "etc/evilfile")).unwrap();
    img.write("hosts/lab3-12", "etc/evil/x", "pwned");
    img.write("hosts/lab3-12", "etc/evilfile", "pwned");

    let report = img.copy().unwrap();
    assert_eq!(report.layers.len(), 2);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "wrote outside the local dir");
    assert!(fs::symlink_metadata(img.local("etc/local/evil")).unwrap().is_dir());
    assert_eq!(fs::read_to_string(img.local("etc/local/evil/x")).unwrap(), "pwned");
    assert!(fs::symlink_metadata(img.local("etc/local/evilfile")).unwrap().is_file());
}

#[test]
fn a_symlink_already_in_the_local_dir_is_replaced_not_followed() {
    let img = Image::new(&["/etc"]);
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), img.local("etc/local/evil")).unwrap();
    img.write("base", "etc/evil/x", "data");
    img.copy().unwrap();
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(fs::read_to_string(img.local("etc/local/evil/x")).unwrap(), "data");
}

#[test]
fn a_layer_whose_dir_is_a_symlink_is_skipped_not_followed() {
    let img = Image::new(&["/etc"]);
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("passwd"), "x").unwrap();
    fs::create_dir_all(img.layer("base", "")).unwrap();
    symlink(outside.path(), img.layer("base", "etc")).unwrap();
    let report = img.copy().unwrap();
    assert!(matches!(&report.warnings[..], [CopyWarning::NotADirectory { .. }]), "{:?}", report.warnings);
    assert_eq!(fs::read_dir(img.local("etc/local")).unwrap().count(), 0);
}

#[test]
fn later_layers_override_earlier_ones_in_design_order() {
    let img = Image::new(&["/etc"]);
    let layers = [
        ("base", "base"),
        ("networks/192.168.1.255", "network"),
        ("labs/lab3", "lab"),
        ("hosts/lab3-12", "host"),
        ("hosts/192.168.1.23", "ip"),
    ];
    for (i, (dir, kind)) in layers.iter().enumerate() {
        img.write(dir, "etc/who", kind);
        img.write(dir, &format!("etc/only-{kind}"), kind);
        // Each layer from the lab on also overrides the one before it and no later one.
        for (_, later) in &layers[i..] {
            img.write(dir, &format!("etc/upto-{later}"), kind);
        }
    }
    let report = img.copy().unwrap();
    let kinds: Vec<LayerKind> = report.layers.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [LayerKind::Base, LayerKind::Network, LayerKind::Lab, LayerKind::Host, LayerKind::Ip]);
    assert_eq!(fs::read_to_string(img.local("etc/local/who")).unwrap(), "ip");
    for (_, kind) in &layers {
        assert_eq!(fs::read_to_string(img.local(&format!("etc/local/only-{kind}"))).unwrap(), *kind);
        assert_eq!(fs::read_to_string(img.local(&format!("etc/local/upto-{kind}"))).unwrap(), *kind);
    }
}

#[test]
fn a_file_replaces_a_directory_and_a_directory_replaces_a_file() {
    let img = Image::new(&["/etc"]);
    img.write("base", "etc/cron.d/job", "* * * * * true\n");
    img.write("base", "etc/cron.d/sub/deeper", "x");
    img.write("base", "etc/motd", "hello");
    img.write("hosts/lab3-12", "etc/cron.d", "now a file");
    img.write("hosts/lab3-12", "etc/motd/part", "now a dir");
    img.copy().unwrap();
    assert_eq!(fs::read_to_string(img.local("etc/local/cron.d")).unwrap(), "now a file");
    assert_eq!(fs::read_to_string(img.local("etc/local/motd/part")).unwrap(), "now a dir");
}

#[test]
fn device_nodes_fifos_and_sockets_are_skipped_with_a_warning() {
    let img = Image::new(&["/etc"]);
    img.write("base", "etc/ok", "ok");
    mknodat(CWD, img.layer("base", "etc/null"), FileType::CharacterDevice, Mode::from_raw_mode(0o666), makedev(1, 3))
        .unwrap();
    mknodat(CWD, img.layer("base", "etc/pipe"), FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(img.layer("base", "etc/sock")).unwrap();
    let report = img.copy().unwrap();
    let mut kinds: Vec<String> = report
        .warnings
        .iter()
        .map(|w| match w {
            CopyWarning::SpecialFile { file_type, path, .. } => {
                assert!(w.to_string().contains(&*path.to_string_lossy()));
                file_type.clone()
            }
            other => panic!("unexpected {other}"),
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["FIFO", "character device", "socket"]);
    assert_eq!(report.layers[0].skipped, 3);
    let copied: Vec<_> = fs::read_dir(img.local("etc/local")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(copied, ["ok"]);
}

#[test]
fn files_outside_the_configured_dirs_are_skipped_with_a_warning() {
    let img = Image::new(&["/etc"]);
    img.write("base", "README", "notes");
    img.write("base", "usr/bin/tool", "#!/bin/sh\n");
    img.write("base", "etc/hosts", "127.0.0.1 localhost\n");
    let report = img.copy().unwrap();
    let skipped: Vec<String> = report
        .warnings
        .iter()
        .map(|w| match w {
            CopyWarning::OutsideDirs { path, .. } => path.display().to_string(),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(skipped, ["/diskless/base/README", "/diskless/base/usr"]);
    assert!(
        report.warnings[1].to_string().starts_with("layer base (/diskless/base): /diskless/base/usr is not inside")
    );
    assert!(img.local("etc/local/hosts").is_file());
}

#[test]
fn nested_dirs_each_get_their_own_files() {
    let img = Image::new(&["/var", "/var/lib/app"]);
    img.write("base", "var/log.conf", "v");
    img.write("base", "var/lib/app/state", "s");
    img.write("base", "var/lib/other", "o");
    img.copy().unwrap();
    assert_eq!(fs::read_to_string(img.local("var/local/log.conf")).unwrap(), "v");
    assert_eq!(fs::read_to_string(img.local("var/lib/app/local/state")).unwrap(), "s");
    assert_eq!(fs::read_to_string(img.local("var/local/lib/other")).unwrap(), "o");
    assert!(!img.local("var/local/lib/app").exists());
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn a_full_tmpfs_names_the_layer_and_the_file() {
    let img = Image::new(&["/etc"]);
    let target = img.local("etc/local");
    rustix::mount::mount("tmpfs", &target, "tmpfs", rustix::mount::MountFlags::empty(), c"size=64k").unwrap();
    let _guard = MountGuard(target.clone());
    img.write("base", "etc/small", "fits");
    img.write("hosts/lab3-12", "etc/big", &"x".repeat(256 * 1024));
    let err = img.copy().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ApplyError::NoSpace { .. }), "{msg}");
    assert!(msg.contains("layer host (/diskless/hosts/lab3-12)"), "{msg}");
    assert!(msg.contains(&*target.join("big").to_string_lossy()), "{msg}");
    assert!(msg.contains("tmpfs_size"), "{msg}");
}

#[test]
fn setup_in_overlay_mode_fills_the_upper_and_mounts_the_overlay() {
    let img = Image::new(&[]);
    fs::create_dir_all(img.local("etc")).unwrap();
    fs::write(img.local("etc/from-image"), "image").unwrap();
    fs::write(img.local("etc/hostname"), "generic").unwrap();
    img.write("base", "etc/hostname", "lab3-12");
    let run = tempfile::tempdir().unwrap();
    let config = Config { mode: LocalMode::Overlay, dirs: vec![PathBuf::from("/etc")], ..Config::default() };
    let selection = select_layers(&config, img.root(), &input());
    let _guards = [MountGuard(img.local("etc")), MountGuard(run.path().join("overlay"))];
    let report = local::setup(&config, img.root(), run.path(), &selection, &RealOs).unwrap();
    assert_eq!(report.layers.layers[0].files, 1);
    assert_eq!(fs::read_to_string(img.local("etc/hostname")).unwrap(), "lab3-12");
    assert_eq!(fs::read_to_string(img.local("etc/from-image")).unwrap(), "image");
    assert_eq!(fs::read_to_string(run.path().join("overlay/0-etc/upper/hostname")).unwrap(), "lab3-12");
}

/// What is in the local dirs of the image after a copy: `(client path, kind)`.
fn placed_by_copy(img: &Image) -> BTreeSet<(PathBuf, String)> {
    fn visit(dir: &Path, client: &Path, out: &mut BTreeSet<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let (path, client) = (entry.path(), client.join(entry.file_name()));
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert((client.clone(), "dir".into()));
                visit(&path, &client, out);
            } else if meta.file_type().is_symlink() {
                out.insert((client, format!("-> {}", fs::read_link(&path).unwrap().display())));
            } else {
                out.insert((client, "file".into()));
            }
        }
    }
    let mut out = BTreeSet::new();
    for dir in &img.config.dirs {
        let local = dir.join(&img.config.localdir);
        visit(&img.local(local.to_str().unwrap().trim_start_matches('/')), &local, &mut out);
    }
    out
}

fn planned_kind(kind: &EntryKind) -> String {
    match kind {
        EntryKind::Directory => "dir".into(),
        EntryKind::File => "file".into(),
        EntryKind::Symlink { target } => format!("-> {}", target.display()),
    }
}

#[test]
fn plan_and_copy_agree_on_what_lands_where_and_what_is_skipped() {
    let img = Image::new(&["/etc", "/var"]);
    img.write("base", "etc/motd", "base");
    img.write("base", "etc/ssh/sshd_config", "Port 22\n");
    img.write("base", "etc/ssh/keys/host_key", "key");
    img.write("base", "var/lib/app/state", "s");
    img.write("base", "usr/bin/tool", "#!/bin/sh\n");
    symlink("/run/resolv.conf", img.layer("base", "etc/resolv.conf")).unwrap();
    mknodat(CWD, img.layer("base", "etc/pipe"), FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    img.write("hosts/lab3-12", "etc/motd", "host");
    img.write("hosts/lab3-12", "etc/ssh/keys", "now a file");
    img.write("hosts/lab3-12", "README", "notes");

    let report = img.copy().unwrap();
    let plan = admin::plan(img.root(), &input()).unwrap();

    assert_eq!(plan.warnings, report.warnings);
    assert_eq!(report.warnings.len(), 3, "{:?}", report.warnings);
    let planned: BTreeSet<(PathBuf, String)> = plan
        .layers
        .iter()
        .flat_map(|l| &l.entries)
        .filter(|e| e.overridden_by.is_none())
        .map(|e| (e.destination.clone(), planned_kind(&e.kind)))
        .collect();
    assert_eq!(planned, placed_by_copy(&img));
    assert!(planned.contains(&(PathBuf::from("/etc/local/resolv.conf"), "-> /run/resolv.conf".into())));
    assert!(planned.contains(&(PathBuf::from("/etc/local/ssh/keys"), "file".into())));
    for (layer, copied) in plan.layers.iter().zip(&report.layers) {
        let count = |kind: &str| layer.entries.iter().filter(|e| planned_kind(&e.kind).starts_with(kind)).count();
        assert_eq!(
            (count("file"), count("dir"), count("->")),
            (copied.files as usize, copied.directories as usize, copied.symlinks as usize),
            "{}",
            layer.path.display()
        );
    }
}
