//! Prototype behind `scratch.cache` (`diskless.scratch.cache=true`) (off by default; issue #15 point 7, README
//! "The scratch disk as a cache of the image: measured"): the kernel's FS-Cache with
//! cachefiles on the scratch filesystem, so that an NFS root mounted with `fsc`
//! (`nfsroot=SERVER:/export,fsc`) can read file data from the disk on a later boot.
//!
//! The cache is bound by writing commands to `/dev/cachefiles` and stays bound only
//! while that descriptor is open. PID 1 cannot hold it: systemd marks the descriptors it
//! inherits close-on-exec and closes them once it started. A forked child holds it
//! instead, doing nothing until the shutdown's final kill unbinds the cache.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::hardware::Modules;
use crate::info;
use crate::log::Log;
use crate::scratch::ScratchReport;

/// The command-line key that turns the prototype on.
pub const KEY: &str = "scratch.cache";
/// The cache's directory on the scratch filesystem, outside every wiped subdirectory.
pub const CACHE_DIR: &str = "fscache";
/// The cache's tag (NFS volumes take the first cache, whatever its name).
const TAG: &str = "diskless";
/// The device cachefiles registers.
const DEVICE: &str = "dev/cachefiles";
/// FS-Cache's counters (cookies, cache reads and writes).
const STATS: &str = "proc/fs/fscache/stats";

#[derive(Debug, thiserror::Error)]
pub enum FscacheError {
    #[error("{KEY}: no scratch filesystem is mounted; give the machine a scratch disk or drop {KEY}")]
    NoScratch,
    #[error(
        "{KEY}: cannot load cachefiles ({0}); it loads from the image's /lib/modules (install the running kernel's \
         modules in the image), or build the initramfs with --modules-in-archive all"
    )]
    Module(String),
    #[error("{KEY}: cannot create the cache directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("{KEY}: cannot open /{DEVICE}: {0}")]
    Open(io::Error),
    #[error("{KEY}: the kernel refused {command:?} for the cache on {dir}: {source}")]
    Command { command: String, dir: PathBuf, source: io::Error },
    #[error("{KEY}: cannot fork the process that holds the cache: {0}")]
    Fork(io::Error),
}

/// The cachefiles commands that bind a cache in `dir`, in order, each written alone.
/// The free-space limits (culling stops above `brun`, starts below `bcull`, no new
/// cache files below `bstop`) are higher than cachefiles' 7/5/1 %: the scratch also
/// holds `/tmp` and the local dirs, which must not run out of space for the cache.
pub fn bind_commands(dir: &Path) -> Vec<String> {
    vec![
        format!("dir {}", dir.display()),
        format!("tag {TAG}"),
        "brun 10%".into(),
        "bcull 7%".into(),
        "bstop 3%".into(),
        "bind".into(),
    ]
}

/// Whether the configuration (the image's or the command line's `diskless.scratch.cache`)
/// asks for the cache.
pub fn wanted(config: &Config) -> bool {
    config.scratch.cache
}

/// Binds the cache on the mounted scratch filesystem and leaves a child holding it.
/// Returns the cache directory (in the initramfs' view).
pub fn bind(root: &Path, modules: &Modules, scratch: &ScratchReport, log: &Log) -> Result<PathBuf, FscacheError> {
    let used = scratch.scratch.as_ref().ok_or(FscacheError::NoScratch)?;
    if let Some(missing) = modules.load(&["cachefiles"]).missing.into_iter().next() {
        return Err(FscacheError::Module(missing.reason.to_string()));
    }
    let dir = used.mountpoint.join(CACHE_DIR);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|source| FscacheError::Dir { path: dir.clone(), source })?;
    // Without O_CLOEXEC: the holder below keeps it across the image's exec of its init.
    let mut device = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(0)
        .open(root.join(DEVICE))
        .map_err(FscacheError::Open)?;
    clear_cloexec(&device);
    // Opened now: after the hand-off the holder's root is the emptied initramfs, where
    // no /proc is mounted; the open file stays valid when /proc moves to the image.
    let stats = std::fs::File::open(root.join(STATS)).ok();
    for command in bind_commands(&dir) {
        device.write_all(command.as_bytes()).map_err(|source| FscacheError::Command {
            command: command.clone(),
            dir: dir.clone(),
            source,
        })?;
    }
    // SAFETY: after fork the child calls only async-signal-safe functions (prctl,
    // pause) and never returns into Rust code that could take a lock another thread held.
    match unsafe { libc::fork() } {
        -1 => return Err(FscacheError::Fork(io::Error::last_os_error())),
        0 => unsafe {
            // SAFETY: see above; the name is a NUL-terminated static string.
            libc::prctl(libc::PR_SET_NAME, c"fscache-hold".as_ptr() as libc::c_ulong, 0, 0, 0);
            hold(stats.as_ref().map(std::os::fd::AsRawFd::as_raw_fd))
        },
        pid => info!(log, "scratch cache bound on {} (held by pid {pid})", dir.display()),
    }
    // The child's copy keeps the cache bound; PID 1's closes here.
    drop(device);
    drop(stats);
    Ok(dir)
}

/// The holder: waits for the shutdown's SIGTERM, then prints the cache's statistics on
/// its console (each line after `FSCACHE: `, for the benchmark) and exits, which
/// unbinds the cache. Only async-signal-safe calls: it runs in a child forked from a
/// process with threads.
///
/// # Safety
/// Call only in the child of a fork.
unsafe fn hold(stats: Option<libc::c_int>) -> ! {
    // SAFETY: plain syscalls on this process's own signal mask and descriptors; the
    // buffers are on this stack and their lengths are passed with them.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut signal = 0;
        while libc::sigwait(&set, &mut signal) != 0 {}
        if let Some(fd) = stats {
            let mut buf = [0u8; 8192];
            let n = libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n > 0 {
                for line in buf[..n as usize].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let prefix = b"FSCACHE: ";
                    libc::write(1, prefix.as_ptr().cast(), prefix.len());
                    libc::write(1, line.as_ptr().cast(), line.len());
                    libc::write(1, b"\n".as_ptr().cast(), 1);
                }
            }
        }
        libc::_exit(0)
    }
}

/// std opens with O_CLOEXEC whatever the custom flags say.
fn clear_cloexec(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: F_SETFD on a descriptor this function's caller owns.
    unsafe {
        libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_commands_name_the_dir_and_end_with_bind() {
        let cmds = bind_commands(Path::new("/newroot/mnt/scratch/fscache"));
        assert_eq!(cmds.first().unwrap(), "dir /newroot/mnt/scratch/fscache");
        assert_eq!(cmds.last().unwrap(), "bind");
        assert!(cmds.contains(&"tag diskless".to_string()), "{cmds:?}");
    }

    #[test]
    fn the_cache_is_off_unless_the_key_is_given() {
        let off = crate::config::load::<String, String>(Path::new("/nonexistent"), &[]).0;
        assert!(!wanted(&off));
        let raw = vec![("diskless.scratch.cache".to_string(), Some("true".to_string()))];
        let on = crate::config::load(Path::new("/nonexistent"), &raw).0;
        assert!(wanted(&on));
    }
}
