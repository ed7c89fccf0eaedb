//! Prototype behind `scratch.cache` (`diskless.scratch.cache=true`) (off by default; issue #15 point 7, README
//! "The scratch disk as a cache of the image: measured"): the kernel's FS-Cache with
//! cachefiles on the scratch filesystem, so that an NFS root mounted with `fsc`
//! (`nfsroot=SERVER:/export,fsc`) can read file data from the disk on a later boot.
//!
//! The cache is bound by writing commands to `/dev/cachefiles` and stays bound only
//! while that descriptor is open. PID 1 cannot hold it: systemd marks the descriptors it
//! inherits close-on-exec and closes them once it started. A forked child holds it
//! instead ([`Os::hold_cache`]), doing nothing until the shutdown's final kill unbinds
//! the cache.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::hardware::Modules;
use crate::info;
use crate::log::Log;
use crate::os::Os;
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
    #[error("{KEY}: cannot bind the cache on {}: {source}", .dir.display())]
    Hold {
        dir: PathBuf,
        #[source]
        source: HoldError,
    },
}

/// Binding the cache through the cachefiles device ([`Os::hold_cache`]) failed.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("cannot open {}: {source}; is cachefiles loaded?", .device.display())]
    Open { device: PathBuf, source: io::Error },
    #[error("the kernel refused {command:?}: {source}")]
    Command { command: String, source: io::Error },
    #[error("cannot fork the process that holds it: {0}")]
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
pub fn bind(
    os: &dyn Os,
    root: &Path,
    modules: &Modules,
    scratch: &ScratchReport,
    log: &Log,
) -> Result<PathBuf, FscacheError> {
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
    let pid = os
        .hold_cache(&root.join(DEVICE), &bind_commands(&dir), &root.join(STATS))
        .map_err(|source| FscacheError::Hold { dir: dir.clone(), source })?;
    info!(log, "scratch cache bound on {} (held by pid {pid})", dir.display());
    Ok(dir)
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
