//! Archives written by this crate read back through this crate and through GNU cpio.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use initramfs::{Archive, Compression, EntryKind, ReadError, read_archive};

fn sample(mtime: u32) -> Archive {
    let mut archive = Archive::with_mtime(mtime);
    archive.add_file("init", 0o755, b"\x7fELF static init".to_vec()).unwrap();
    archive.add_char_dev("dev/console", 0o600, 5, 1).unwrap();
    archive.add_block_dev("dev/vda", 0o660, 253, 0).unwrap();
    for dir in ["proc", "sys", "run", "root", "newroot"] {
        archive.add_dir(dir, 0o755).unwrap();
    }
    archive.add_dir("tmp", 0o1777).unwrap();
    archive.add_symlink("bin", "usr/bin").unwrap();
    archive.add_symlink("lib/firmware/alias.bin", "../firmware-real/x.bin").unwrap();
    // Body lengths 0..=4 and names of every length modulo 4 exercise all padding cases.
    for len in 0..=4usize {
        archive.add_file(&format!("lib/pad/{}", "n".repeat(len + 1)), 0o644, vec![b'a' + len as u8; len]).unwrap();
    }
    let big: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 253) as u8).collect();
    archive.add_file("lib/modules/6.1.0-56-amd64/kernel/drivers/net/virtio_net.ko", 0o644, big).unwrap();
    archive
}

fn all_compressions() -> [Compression; 4] {
    [Compression::None, Compression::Gzip, Compression::Zstd, Compression::Xz]
}

#[test]
fn every_compression_round_trips_all_entries() {
    let archive = sample(0);
    let expected: Vec<_> = archive.entries().collect();
    assert!(expected.iter().any(|entry| entry.path == "lib/pad"), "implicit parent present");
    for compression in all_compressions() {
        let bytes = compression.compress(&archive.to_bytes()).unwrap();
        let entries = read_archive(&bytes).unwrap_or_else(|error| panic!("{compression}: {error}"));
        assert_eq!(entries, expected, "{compression}");
    }
}

#[test]
fn building_twice_gives_identical_bytes_for_every_compression() {
    for compression in all_compressions() {
        let first = compression.compress(&sample(0).to_bytes()).unwrap();
        let second = compression.compress(&sample(0).to_bytes()).unwrap();
        assert!(first == second, "{compression} output differs between two builds");
    }
}

#[test]
fn mtime_changes_only_the_mtime_fields() {
    let zero = sample(0).to_bytes();
    let later = sample(1_700_000_000).to_bytes();
    assert_eq!(zero.len(), later.len());
    assert_ne!(zero, later);
    let entries = read_archive(&later).unwrap();
    assert!(entries.iter().all(|entry| entry.mtime == 1_700_000_000));
}

#[test]
fn source_date_epoch_from_the_environment_sets_the_mtime() {
    // Runs in a child process so no other test sees the variable.
    if std::env::var_os("INITRAMFS_TEST_CHILD").is_some() {
        let archive = Archive::new().unwrap();
        assert_eq!(archive.mtime(), 1_600_000_000);
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "source_date_epoch_from_the_environment_sets_the_mtime"])
        .env("INITRAMFS_TEST_CHILD", "1")
        .env("SOURCE_DATE_EPOCH", "1600000000")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child test with SOURCE_DATE_EPOCH failed: {report}");
    assert!(report.contains("1 passed"), "the child ran no test: {report}");
}

fn run_cpio(args: &[&str], dir: &Path, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run GNU cpio ({error}): run qemu/setup to install it"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "cpio {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn gnu_cpio_lists_every_entry() {
    let archive = sample(0);
    let dir = tempfile::tempdir().unwrap();
    let output = run_cpio(&["-t", "--quiet"], dir.path(), &archive.to_bytes());
    let listed: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect();
    let expected: Vec<String> = archive.entries().map(|entry| entry.path).collect();
    assert_eq!(listed, expected);
}

#[test]
fn gnu_cpio_extracts_contents_modes_targets_and_devices() {
    let archive = sample(1_500_000_000);
    let dir = tempfile::tempdir().unwrap();
    run_cpio(&["-i", "-d", "-m", "--quiet", "--no-absolute-filenames"], dir.path(), &archive.to_bytes());
    for entry in archive.entries() {
        let path = dir.path().join(&entry.path);
        let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|error| panic!("{}: {error}", entry.path));
        assert_eq!(meta.uid(), 0, "{}", entry.path);
        match &entry.kind {
            EntryKind::File(data) => {
                assert_eq!(&std::fs::read(&path).unwrap(), data, "{}", entry.path);
                assert_eq!(meta.permissions().mode() & 0o7777, entry.mode, "{}", entry.path);
                assert_eq!(meta.mtime(), 1_500_000_000, "{}", entry.path);
            }
            EntryKind::Directory => {
                assert!(meta.is_dir(), "{}", entry.path);
                assert_eq!(meta.permissions().mode() & 0o7777, entry.mode, "{}", entry.path);
            }
            EntryKind::Symlink(target) => {
                assert_eq!(std::fs::read_link(&path).unwrap().to_str().unwrap(), target, "{}", entry.path);
            }
            EntryKind::CharDevice { major, minor } => {
                assert!(meta.file_type().is_char_device(), "{}", entry.path);
                assert_eq!((libc_major(meta.rdev()), libc_minor(meta.rdev())), (*major, *minor));
                assert_eq!(meta.permissions().mode() & 0o7777, entry.mode, "{}", entry.path);
            }
            EntryKind::BlockDevice { major, minor } => {
                assert!(meta.file_type().is_block_device(), "{}", entry.path);
                assert_eq!((libc_major(meta.rdev()), libc_minor(meta.rdev())), (*major, *minor));
            }
            other => panic!("sample has no {other:?}"),
        }
    }
}

/// glibc's encoding of dev_t.
fn libc_major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}
fn libc_minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

#[test]
fn archive_written_by_gnu_cpio_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/hostname"), "lab3-12\n").unwrap();
    std::os::unix::fs::symlink("hostname", dir.path().join("etc/name")).unwrap();
    let output = run_cpio(&["-o", "-H", "newc", "--quiet"], dir.path(), b"etc\netc/hostname\netc/name\n");
    let entries = read_archive(&output.stdout).unwrap();
    let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(paths, ["etc", "etc/hostname", "etc/name"]);
    assert_eq!(entries[1].kind, EntryKind::File(b"lab3-12\n".to_vec()));
    assert_eq!(entries[2].kind, EntryKind::Symlink("hostname".into()));
}

#[test]
fn concatenated_compressed_and_raw_archives_read_back_fully() {
    let mut first = Archive::with_mtime(0);
    first.add_file("kernel/x86/microcode/GenuineIntel.bin", 0o644, vec![1u8; 5000]).unwrap();
    let second = sample(0);
    let mut third = Archive::with_mtime(0);
    third.add_file("etc/extra", 0o644, b"extra".to_vec()).unwrap();

    let mut image = first.to_bytes();
    image.resize(image.len().next_multiple_of(512), 0);
    image.extend(Compression::Zstd.compress(&second.to_bytes()).unwrap());
    // Raw data must start 4-aligned after a compressed stream, as for the kernel.
    image.resize(image.len().next_multiple_of(4) + 8, 0);
    image.extend(third.to_bytes());
    image.extend(Compression::Gzip.compress(&third.to_bytes()).unwrap());

    let entries = read_archive(&image).unwrap();
    let expected: Vec<_> =
        first.entries().chain(second.entries()).chain(third.entries()).chain(third.entries()).collect();
    assert_eq!(entries, expected);
}

#[test]
fn truncated_archives_are_errors_naming_an_offset() {
    let raw = sample(0).to_bytes();
    for cut in [3, 50, 200, raw.len() / 2, raw.len() - 4] {
        let error = read_archive(&raw[..cut]).unwrap_err();
        assert!(error.to_string().contains("offset"), "cut at {cut}: {error}");
    }
    for compression in [Compression::Gzip, Compression::Zstd, Compression::Xz] {
        let stream = compression.compress(&raw).unwrap();
        let error = read_archive(&stream[..stream.len() - 10]).unwrap_err();
        assert!(matches!(error, ReadError::Decompress { offset: 0, .. }), "{compression}: {error}");
    }
}

#[test]
fn garbage_is_an_error_naming_offset_and_bytes() {
    let mut image = sample(0).to_bytes();
    let end = image.len();
    image.extend_from_slice(b"\0\0\0\0garbage!");
    let error = read_archive(&image).unwrap_err();
    assert_eq!(error, ReadError::UnknownFormat { offset: end + 4, found: b"garbage!".to_vec() });
    assert!(error.to_string().contains(&format!("offset {}", end + 4)));
}

#[test]
fn corrupt_header_field_is_named() {
    let mut raw = sample(0).to_bytes();
    raw[6 + 6 * 8] = b'z'; // first digit of filesize of the first entry
    let error = read_archive(&raw).unwrap_err();
    assert!(matches!(error, ReadError::BadField { field: "filesize", .. }), "{error}");
    assert!(error.to_string().contains("offset 0"), "{error}");
}

#[test]
fn huge_sizes_in_headers_do_not_panic() {
    let mut raw = sample(0).to_bytes();
    raw[6 + 6 * 8..6 + 7 * 8].copy_from_slice(b"ffffffff");
    assert!(matches!(read_archive(&raw), Err(ReadError::Truncated { .. })));
    let mut raw = sample(0).to_bytes();
    raw[6 + 11 * 8..6 + 12 * 8].copy_from_slice(b"ffffffff");
    assert!(matches!(read_archive(&raw), Err(ReadError::Truncated { .. })));
}

#[test]
fn every_truncation_of_a_small_archive_fails_without_panicking() {
    let mut archive = Archive::with_mtime(0);
    archive.add_file("a/b", 0o644, b"hello".to_vec()).unwrap();
    archive.add_symlink("c", "a/b").unwrap();
    let raw = archive.to_bytes();
    for compression in all_compressions() {
        let stream = compression.compress(&raw).unwrap();
        // The last 3 bytes of a raw archive pad the trailer's name: without them the
        // archive is still complete (the kernel accepts it too).
        let complete_from = if compression == Compression::None { stream.len() - 3 } else { stream.len() };
        for cut in 1..complete_from {
            let truncated = &stream[..cut];
            if let Ok(entries) = read_archive(truncated) {
                panic!("{compression}: cut at {cut} of {} read {} entries without error", stream.len(), entries.len());
            }
        }
    }
}
