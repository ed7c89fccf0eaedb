//! `probe` on real filesystem images made at test time by the tools admins use, so the
//! magic numbers and label/UUID offsets of the signature table are checked against
//! what mkfs really writes. The tools are rig packages (e2fsprogs, xfsprogs,
//! btrfs-progs, dosfstools, ntfs-3g, cryptsetup-bin, fdisk, util-linux): a
//! missing tool fails the test loudly.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use diskless::scratch::{Kind, Sample, Signature, probe};

/// A sparse image file of `mib` MiB in its own temp dir.
struct Image {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn image(mib: u64) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    File::create(&path).unwrap().set_len(mib << 20).unwrap();
    Image { _dir: dir, path }
}

fn run(program: &str, args: &[&str], image: &Path) {
    let out = Command::new(program)
        .args(args)
        .arg(image)
        .output()
        .unwrap_or_else(|e| panic!("{program} not runnable ({e}): the rig must install it"));
    assert!(out.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// What `blkid -p` (low-level probe, no cache) says, to compare labels and UUIDs.
fn blkid(image: &Path, tag: &str) -> Option<String> {
    let out = Command::new("blkid").args(["-p", "-o", "value", "-s", tag]).arg(image).output().expect("blkid");
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!v.is_empty()).then_some(v)
}

fn probe_file(path: &Path) -> Option<Signature> {
    let file = File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    probe(&Sample::read(size, |offset, buf| file.read_exact_at(buf, offset)).unwrap())
}

/// Probes, checks kind and label, and the UUID against blkid's.
fn check(img: &Image, kind: Kind, label: Option<&str>) -> Signature {
    let sig = probe_file(&img.path).unwrap_or_else(|| panic!("no signature found for {kind}"));
    assert_eq!(sig.kind, kind, "{sig:?}");
    assert_eq!(sig.label.as_deref(), label, "{sig:?}");
    assert!(sig.also.is_empty(), "{sig:?}");
    assert_eq!(sig.uuid, blkid(&img.path, "UUID"), "uuid of {kind}");
    sig
}

#[test]
fn mkfs_ext4_with_label() {
    let img = image(64);
    run("mkfs.ext4", &["-q", "-F", "-L", "scratch"], &img.path);
    check(&img, Kind::Ext4, Some("scratch"));
}

#[test]
fn mkfs_ext2_and_ext3_are_told_apart_from_ext4() {
    let img = image(32);
    run("mkfs.ext2", &["-q", "-F"], &img.path);
    check(&img, Kind::Ext2, None);
    run("mke2fs", &["-q", "-F", "-t", "ext3", "-L", "old"], &img.path);
    check(&img, Kind::Ext3, Some("old"));
}

#[test]
fn mkfs_xfs_with_label() {
    // xfsprogs refuses filesystems under 300 MiB; the file is sparse.
    let img = image(320);
    run("mkfs.xfs", &["-q", "-f", "-L", "scratch"], &img.path);
    check(&img, Kind::Xfs, Some("scratch"));
}

#[test]
fn mkfs_btrfs_with_label() {
    let img = image(256);
    run("mkfs.btrfs", &["-q", "-f", "-L", "scratch"], &img.path);
    check(&img, Kind::Btrfs, Some("scratch"));
}

#[test]
fn mkswap_with_label() {
    let img = image(16);
    run("mkswap", &["-L", "x"], &img.path);
    check(&img, Kind::Swap, Some("x"));
}

#[test]
fn mkfs_vfat_is_reported_with_its_label() {
    let img = image(64);
    run("mkfs.vfat", &["-n", "EFI"], &img.path);
    check(&img, Kind::Vfat, Some("EFI"));
    let img = image(64);
    run("mkfs.vfat", &["-F", "32"], &img.path);
    check(&img, Kind::Vfat, None);
}

#[test]
fn mkfs_ntfs_is_ntfs() {
    let img = image(64);
    run("mkfs.ntfs", &["-q", "-F", "-f", "-L", "win"], &img.path);
    let sig = probe_file(&img.path).unwrap();
    assert_eq!((sig.kind, sig.also.as_slice()), (Kind::Ntfs, &[][..]));
    assert_eq!(sig.uuid, blkid(&img.path, "UUID"));
}

#[test]
fn cryptsetup_luks1_and_luks2_headers() {
    for (kind, label) in [("luks2", Some("vault")), ("luks1", None)] {
        let img = image(32);
        let key = img.path.with_file_name("key");
        fs::write(&key, "not a secret").unwrap();
        let mut args =
            vec!["luksFormat", "-q", "--type", kind, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"];
        args.extend(["--key-file", key.to_str().unwrap()]);
        if let Some(label) = label {
            args.extend(["--label", label]);
        }
        run("cryptsetup", &args, &img.path);
        let sig = probe_file(&img.path).unwrap();
        assert_eq!((sig.kind, sig.label.as_deref()), (Kind::Luks, label), "{kind}");
        assert_eq!(sig.uuid, blkid(&img.path, "UUID"), "{kind}");
    }
}

#[test]
fn partitioned_disk_images() {
    let img = image(64);
    let script = |label: &str| format!("label: {label}\n,16M,L\n,,S\n");
    for (label, kind) in [("gpt", Kind::Gpt), ("dos", Kind::Dos)] {
        let out = Command::new("sfdisk")
            .args(["-q", "--wipe", "always"])
            .arg(&img.path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(script(label).as_bytes())?;
                child.wait_with_output()
            })
            .expect("sfdisk (fdisk package) not runnable: the rig must install it");
        assert!(out.status.success(), "sfdisk {label}");
        let sig = probe_file(&img.path).unwrap();
        assert_eq!(sig.kind, kind, "{sig:?}");
    }
}

// md members: `mdadm --create` needs md device nodes that this container does not
// create ("unexpected failure opening /dev/md127"), so md superblocks are hand-built
// in the unit tests of scratch::probe (1.1, 1.2, 1.0 and 0.90 offsets).
