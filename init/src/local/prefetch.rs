//! Reading the layers ahead of the copy, with several readers at once.
//!
//! The copy walks a layer one entry at a time, and on an NFS root every step is a
//! round trip (LOOKUP, ACCESS, GETATTR, READ, READDIRPLUS): about five per file. With
//! one request in flight a lost frame costs a TCP retransmission timeout (hundreds of
//! milliseconds, doubling when the retransmission is lost too) and nothing overlaps it.
//! On a lossy lab network (20 % each way) that made the copy of 27 small files take
//! 16-22 s instead of 70 ms. The prefetch walks the selected layers with [`READERS`]
//! threads, so their round trips and their losses overlap and a loss is more often
//! repaired by a fast retransmission (later segments in flight) than by a timeout.
//!
//! What it learns it hands to the copy ([`ReadAhead`]): each directory's names, each
//! entry's metadata, symlink targets, and the files and directories themselves, still
//! open. Reopening them would not do: every open on NFS asks the server whether the
//! file changed (close-to-open), and cached attributes expire after 3 s, so a copy after
//! a read-ahead still made one round trip per entry (71 GETATTRs, 8 s of a 16 s copy).
//! The layers do not change during the boot, so what the read-ahead saw is what the
//! copy copies.
//!
//! It only reads, never follows a symlink (the copy does not either), and ignores every
//! error: the copy reads what it lacks itself and reports what is wrong.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, openat, readlinkat, statat};

use super::image::open_in_image;
use super::select::Layer;
use super::walk::entry_names;

/// Readers at once: enough to keep a few requests in flight on one TCP connection,
/// few enough not to crowd a single-CPU client.
pub const READERS: usize = 8;
/// Open files and directories kept for the copy, all layers together: PID 1's soft
/// limit is 1024 descriptors. Beyond it the copy opens entries itself (one
/// revalidation each), as without a read-ahead.
pub const KEPT_DESCRIPTORS: usize = 512;
/// Each reader makes a few system calls at a time.
const READER_STACK: usize = 128 * 1024;
const READ_BUFFER: usize = 64 * 1024;

/// What the prefetch read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefetchReport {
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for PrefetchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read ahead {} files in {} directories ({} KiB) of the layers with {READERS} readers in {} ms",
            self.files,
            self.directories,
            self.bytes.div_ceil(1024),
            self.elapsed.as_millis()
        )
    }
}

/// What was read of one layer, by the entry's path as the layer mirrors the image
/// (`/etc/fstab`; the layer's own root is `/`). The walk takes from it instead of
/// asking the server again; what is not here it reads itself.
#[derive(Debug, Default)]
pub struct LayerAhead {
    /// A directory's entry names, sorted, without `.` and `..`.
    pub names: HashMap<PathBuf, Vec<OsString>>,
    /// An entry's own metadata (a symlink's, not its target's).
    pub stats: HashMap<PathBuf, Stat>,
    /// A symlink's target.
    pub links: HashMap<PathBuf, CString>,
    /// Files and directories left open, positioned at their start.
    pub open: HashMap<PathBuf, OwnedFd>,
}

/// The read-ahead of every selected layer, in the selection's order.
#[derive(Debug, Default)]
pub struct ReadAhead {
    pub layers: Vec<LayerAhead>,
    pub report: PrefetchReport,
}

/// A directory waiting to be read: its layer, its path in the layer, and the open
/// directory.
struct Pending {
    layer: usize,
    path: PathBuf,
    dir: OwnedFd,
}

/// Directories waiting to be read, and how many readers are busy with one (they may
/// add more): the work ends when both are zero.
struct Queue {
    state: Mutex<(VecDeque<Pending>, usize)>,
    changed: Condvar,
}

impl Queue {
    fn push(&self, pending: Pending) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.push_back(pending);
        self.changed.notify_one();
    }

    /// The next directory, or `None` once every directory has been read.
    fn next(&self) -> Option<Pending> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(pending) = state.0.pop_front() {
                state.1 += 1;
                return Some(pending);
            }
            if state.1 == 0 {
                self.changed.notify_all();
                return None;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn done_with_one(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 -= 1;
        if state.1 == 0 && state.0.is_empty() {
            self.changed.notify_all();
        }
    }
}

/// What the readers share.
struct Shared {
    queue: Queue,
    layers: Vec<Mutex<LayerAhead>>,
    kept: AtomicUsize,
    files: AtomicU64,
    directories: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn layer(&self, index: usize) -> std::sync::MutexGuard<'_, LayerAhead> {
        self.layers[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `fd` for the copy, rewound, while the budget lasts.
    fn keep(&self, layer: usize, path: PathBuf, fd: OwnedFd) {
        if self.kept.fetch_add(1, Ordering::Relaxed) < KEPT_DESCRIPTORS
            && rustix::fs::seek(&fd, rustix::fs::SeekFrom::Start(0)).is_ok()
        {
            self.layer(layer).open.insert(path, fd);
        }
    }
}

/// Reads every layer of `layers` under `image_root` with [`READERS`] threads and returns
/// what it read when all is read.
pub fn prefetch(image_root: &Path, layers: &[Layer]) -> ReadAhead {
    let started = Instant::now();
    let shared = Shared {
        queue: Queue { state: Mutex::new((VecDeque::new(), 0)), changed: Condvar::new() },
        layers: layers.iter().map(|_| Mutex::default()).collect(),
        kept: AtomicUsize::new(0),
        files: AtomicU64::new(0),
        directories: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    for (index, layer) in layers.iter().enumerate() {
        if let Ok(dir) = open_in_image(image_root, &layer.path, OFlags::RDONLY | OFlags::DIRECTORY) {
            shared.queue.push(Pending { layer: index, path: PathBuf::from("/"), dir });
        }
    }
    std::thread::scope(|scope| {
        for n in 0..READERS {
            let shared = &shared;
            let reader = std::thread::Builder::new().name(format!("prefetch-{n}")).stack_size(READER_STACK);
            // A reader that cannot start leaves its share to the others; with none the
            // copy simply reads everything itself.
            let _ = reader.spawn_scoped(scope, move || read_directories(shared));
        }
    });
    let report = PrefetchReport {
        files: shared.files.load(Ordering::Relaxed),
        directories: shared.directories.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    };
    let layers = shared.layers.into_iter().map(|l| l.into_inner().unwrap_or_else(|p| p.into_inner())).collect();
    ReadAhead { layers, report }
}

fn read_directories(shared: &Shared) {
    let mut buffer = vec![0u8; READ_BUFFER];
    while let Some(pending) = shared.queue.next() {
        read_directory(pending, shared, &mut buffer);
        shared.queue.done_with_one();
    }
}

fn read_directory(Pending { layer, path, dir }: Pending, shared: &Shared, buffer: &mut [u8]) {
    shared.directories.fetch_add(1, Ordering::Relaxed);
    let Ok(names) = entry_names(&dir) else { return };
    for name in &names {
        let child = path.join(name);
        let Ok(stat) = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        shared.layer(layer).stats.insert(child.clone(), stat);
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                if let Ok(sub) = openat(&dir, name, flags, Mode::empty()) {
                    shared.queue.push(Pending { layer, path: child, dir: sub });
                }
            }
            FileType::RegularFile => {
                // The walk's flags: a file swapped for a FIFO cannot block a reader.
                let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
                let Ok(file) = openat(&dir, name, flags, Mode::empty()) else { continue };
                shared.files.fetch_add(1, Ordering::Relaxed);
                let mut reading = File::from(file);
                while let Ok(n @ 1..) = reading.read(buffer) {
                    shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                shared.keep(layer, child, OwnedFd::from(reading));
            }
            FileType::Symlink => {
                if let Ok(target) = readlinkat(&dir, name, Vec::new()) {
                    shared.layer(layer).links.insert(child, target);
                }
            }
            // Special files are skipped by the copy.
            _ => {}
        }
    }
    shared.layer(layer).names.insert(path.clone(), names);
    shared.keep(layer, path, dir);
}

/// Reads the program `path` of the image under `image_root` (symlinks resolved in the
/// image) and, for a script, its interpreter (`#!/bin/sh`); returns the bytes read.
pub fn read_program(image_root: &Path, path: &Path) -> u64 {
    let mut buffer = vec![0u8; READ_BUFFER];
    let Some((bytes, head)) = read_whole(image_root, path, &mut buffer) else { return 0 };
    match interpreter(&head) {
        Some(interp) => bytes + read_whole(image_root, Path::new(interp), &mut buffer).map_or(0, |(n, _)| n),
        None => bytes,
    }
}

/// The interpreter a `#!` line names: its first word.
fn interpreter(head: &[u8]) -> Option<&str> {
    let line = head.strip_prefix(b"#!")?.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.split_ascii_whitespace().next().filter(|p| p.starts_with('/'))
}

/// Reads the file whole; returns its size and its first line's bytes (up to 128).
fn read_whole(image_root: &Path, path: &Path, buffer: &mut [u8]) -> Option<(u64, Vec<u8>)> {
    let mut file = File::from(open_in_image(image_root, path, OFlags::RDONLY).ok()?);
    let mut head = Vec::new();
    let mut total = 0u64;
    while let Ok(n @ 1..) = file.read(buffer) {
        if head.is_empty() {
            head.extend_from_slice(&buffer[..n.min(128)]);
        }
        total += n as u64;
    }
    Some((total, head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::LayerKind;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn layer(kind: LayerKind, path: &str) -> Layer {
        Layer { kind, path: PathBuf::from(path) }
    }

    #[test]
    fn every_file_and_directory_of_every_layer_is_read_once_and_kept_for_the_copy() {
        let img = tempfile::tempdir().unwrap();
        let base = img.path().join("diskless/base");
        for d in ["etc/a/b", "var/c"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::write(base.join("etc/a/one"), vec![7u8; 100_000]).unwrap();
        fs::write(base.join("etc/a/b/two"), "two").unwrap();
        fs::write(base.join("var/c/three"), "three").unwrap();
        symlink("a/one", base.join("etc/link")).unwrap();
        let host = img.path().join("diskless/hosts/lab3-12");
        fs::create_dir_all(host.join("etc")).unwrap();
        fs::write(host.join("etc/four"), "four").unwrap();
        let layers = [layer(LayerKind::Base, "/diskless/base"), layer(LayerKind::Host, "/diskless/hosts/lab3-12")];
        let ahead = prefetch(img.path(), &layers);
        let report = ahead.report;
        assert_eq!((report.files, report.directories, report.bytes), (4, 8, 100_000 + 3 + 5 + 4), "{report:?}");
        assert!(report.to_string().starts_with("read ahead 4 files in 8 directories (98 KiB)"), "{report}");
        let [base, host] = &ahead.layers[..] else { panic!("one read-ahead per layer: {ahead:?}") };
        assert_eq!(base.names[Path::new("/")], ["etc", "var"]);
        assert_eq!(base.names[Path::new("/etc")], ["a", "link"]);
        assert_eq!(base.links[Path::new("/etc/link")].to_bytes(), b"a/one");
        assert_eq!(base.stats[Path::new("/etc/a/one")].st_size, 100_000);
        // Kept open and rewound: the copy reads the whole file from it.
        let mut kept = File::from(base.open[Path::new("/etc/a/one")].try_clone().unwrap());
        let mut content = Vec::new();
        kept.read_to_end(&mut content).unwrap();
        assert_eq!(content.len(), 100_000);
        assert!(host.open.contains_key(Path::new("/etc/four")) && host.open.contains_key(Path::new("/")));
    }

    #[test]
    fn no_more_descriptors_are_kept_than_the_budget() {
        let img = tempfile::tempdir().unwrap();
        let etc = img.path().join("diskless/base/etc");
        fs::create_dir_all(&etc).unwrap();
        for n in 0..KEPT_DESCRIPTORS + 40 {
            fs::write(etc.join(format!("f{n}")), "x").unwrap();
        }
        let ahead = prefetch(img.path(), &[layer(LayerKind::Base, "/diskless/base")]);
        assert_eq!(ahead.report.files, (KEPT_DESCRIPTORS + 40) as u64);
        assert_eq!(ahead.layers[0].open.len(), KEPT_DESCRIPTORS);
        assert_eq!(ahead.layers[0].stats.len(), KEPT_DESCRIPTORS + 41, "metadata of every entry is kept");
    }

    #[test]
    fn symlinks_are_not_followed_out_of_the_layer() {
        let outer = tempfile::tempdir().unwrap();
        let img = outer.path().join("img");
        fs::create_dir_all(img.join("diskless/base/etc")).unwrap();
        fs::create_dir_all(outer.path().join("elsewhere")).unwrap();
        fs::write(outer.path().join("elsewhere/big"), vec![0u8; 50_000]).unwrap();
        symlink(outer.path().join("elsewhere"), img.join("diskless/base/etc/dir-link")).unwrap();
        symlink(outer.path().join("elsewhere/big"), img.join("diskless/base/etc/file-link")).unwrap();
        let report = prefetch(&img, &[layer(LayerKind::Base, "/diskless/base")]).report;
        assert_eq!((report.files, report.directories, report.bytes), (0, 2, 0), "{report:?}");
    }

    #[test]
    fn a_script_init_is_read_with_its_interpreter_in_the_image() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("sbin")).unwrap();
        fs::create_dir_all(img.path().join("bin")).unwrap();
        fs::write(img.path().join("bin/busybox"), vec![1u8; 70_000]).unwrap();
        symlink("busybox", img.path().join("bin/sh")).unwrap();
        fs::write(img.path().join("sbin/init"), "#!/bin/sh -e\necho hi\n").unwrap();
        assert_eq!(read_program(img.path(), Path::new("/sbin/init")), 21 + 70_000);
        symlink("/bin/busybox", img.path().join("sbin/elf-init")).unwrap();
        assert_eq!(read_program(img.path(), Path::new("/sbin/elf-init")), 70_000, "no #!: the file alone");
        assert_eq!(read_program(img.path(), Path::new("/sbin/none")), 0);
        assert_eq!(interpreter(b"#!  /usr/bin/env python3\n"), Some("/usr/bin/env"));
        assert_eq!(interpreter(b"#!relative\n"), None);
        assert_eq!(interpreter(b"\x7fELF"), None);
    }

    #[test]
    fn missing_and_unreadable_layers_are_left_to_the_copy() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("diskless")).unwrap();
        fs::write(img.path().join("diskless/base"), "a file, not a layer").unwrap();
        let layers = [layer(LayerKind::Base, "/diskless/base"), layer(LayerKind::Lab, "/diskless/labs/none")];
        let report = prefetch(img.path(), &layers).report;
        assert_eq!((report.files, report.directories, report.bytes), (0, 0, 0), "{report:?}");
    }
}
