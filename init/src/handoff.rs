//! Stage `handoff` (DESIGN §2 step 7): record the boot ([`crate::record`]), move the
//! kernel file systems into the image, free the initramfs, and exec the image's init as
//! PID 1.
//!
//! Everything that can be checked is checked before anything is moved or deleted
//! ([`check_image`]): once the initramfs is freed there is no way back, so a missing
//! init or mount point must stop the boot while the rescue shell still exists.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Dir, FileType, Mode, OFlags, fstat, openat, statat, unlinkat};
use serde::Serialize;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::cmdline::Cmdline;
use crate::config::{Config, ConfigWarning};
use crate::context::Context;
use crate::early;
use crate::hardware::Summary;
use crate::hardware::detached::{self, DetachedLoad};
use crate::hardware::image::ImageModules;
use crate::local::LocalReport;
use crate::local::image::open_in_image;
use crate::log::{Log, monotonic_secs};
use crate::net::{self, Identity, NetResult};
use crate::os::Os;
use crate::record::{self, BootRecord, LayerSummary, NetworkSection, StageTime};
use crate::root::Mounted;
use crate::scratch::ScratchReport;
use crate::{debug, info};

/// The mounts of the initramfs that move into the image, in order. The image must have
/// these directories: nothing is created on the read-only root.
pub const MOVED_MOUNTS: &[&str] = &["dev", "proc", "sys", "run"];

/// The image's init when `init=` is not given.
pub const DEFAULT_INIT: &str = "/sbin/init";

/// Where `/etc/mtab` should point (Debian ships it as this symlink).
pub const MTAB_TARGET: &str = "../proc/self/mounts";

/// Why the hand-off stopped.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The image has no such init (resolved inside the image).
    #[error(
        "the image's init {init} cannot be found in the root ({} in the initramfs): {source}: \
         install it in the image or name another with init=",
        .newroot.display()
    )]
    InitMissing { init: String, newroot: PathBuf, source: io::Error },
    /// The init is not a regular file.
    #[error("the image's init {init} is not a regular file: name the program with init=")]
    InitNotFile { init: String },
    /// The init has no execute permission.
    #[error("the image's init {init} is not executable (mode {mode:o}): chmod +x it in the image")]
    InitNotExecutable { init: String, mode: u32 },
    /// A directory a kernel file system moves to is missing in the image.
    #[error(
        "the image has no directory /{dir} (looked in {}): create it in the image; the root is \
         read-only so diskless cannot",
        .newroot.display()
    )]
    MountPointMissing { dir: String, newroot: PathBuf },
    /// Writing the network's `/run` hand-off files failed.
    #[error(transparent)]
    Files(crate::net::handoff::NetFilesError),
    /// Writing boot.json failed.
    #[error(transparent)]
    Record(crate::record::RecordError),
    /// Moving a mount into the image failed.
    #[error("moving the mount {} to {}: {source}: see dmesg", .from.display(), .to.display())]
    Move { from: PathBuf, to: PathBuf, source: io::Error },
    /// chdir into the new root failed.
    #[error("chdir {}: {source}: see dmesg", .path.display())]
    Chdir { path: PathBuf, source: io::Error },
    /// Moving the new root onto `/` failed.
    #[error("moving {} onto /: {source}: see dmesg", .newroot.display())]
    MoveRoot { newroot: PathBuf, source: io::Error },
    /// chroot failed.
    #[error("chroot into {}: {source}: see dmesg", .newroot.display())]
    Chroot { newroot: PathBuf, source: io::Error },
    /// exec of the image's init failed (the initramfs is already gone).
    #[error("starting the image's init {init}: {source}: check that it runs in the image (chroot IMAGE {init})")]
    Exec { init: String, source: io::Error },
}

/// What the earlier stages found, for the record and the hand-off.
pub struct Facts<'a> {
    pub cmdline: &'a Cmdline,
    pub config: &'a Config,
    pub config_warnings: &'a [ConfigWarning],
    pub hardware: &'a Summary,
    pub net: &'a NetResult,
    pub identity: &'a Identity,
    pub mounted: &'a Mounted,
    pub local: &'a LocalReport,
    pub scratch: &'a ScratchReport,
    /// The drivers the modules stage loaded from the image.
    pub image_modules: &'a ImageModules,
    /// Each finished stage and its duration.
    pub stages: Vec<StageTime>,
    /// When init started.
    pub started: Instant,
}

/// The image's init: `init=` from the command line, else [`DEFAULT_INIT`].
pub fn image_init(cmdline: &Cmdline) -> String {
    cmdline.init.clone().unwrap_or_else(|| DEFAULT_INIT.to_string())
}

/// Stage `handoff`: check the image, record the boot, move the kernel file systems,
/// free the initramfs and exec the image's init. Returns only on failure.
pub fn stage(ctx: &Context, f: &Facts<'_>, newroot: &Path) -> Result<Infallible, HandoffError> {
    let init = image_init(f.cmdline);
    check_image(newroot, &init)?;
    match ensure_mtab(newroot) {
        Mtab::Present => {}
        Mtab::Created => info!(ctx.log, "created /etc/mtab -> {MTAB_TARGET} in the image"),
        Mtab::Missing(e) => info!(
            ctx.log,
            "warning: the image has no /etc/mtab and /etc is read-only ({e}): make it a symlink to {MTAB_TARGET} in the image"
        ),
    }
    let run = ctx.root.join("run");
    let uptime = Duration::from_secs_f64(monotonic_secs().max(0.0));
    net::handoff::write_files(&run, f.net, f.identity, uptime).map_err(HandoffError::Files)?;
    let total_ms = f.started.elapsed().as_millis() as u64;
    let record = BootRecord {
        diskless_version: env!("CARGO_PKG_VERSION").to_string(),
        network: NetworkSection { net: f.net.clone(), identity: f.identity.clone() },
        root: f.mounted.clone(),
        layers: record::layer_summaries(&f.local.layers),
        local: f.local.clone(),
        scratch: f.scratch.clone(),
        modules: f.hardware.loaded.iter().chain(f.mounted.modules.iter()).cloned().collect(),
        image_modules: f.image_modules.clone(),
        stages: f.stages.clone(),
        config: f.config.clone(),
        config_warnings: f.config_warnings.to_vec(),
        init: init.clone(),
        init_args: f.cmdline.init_args.clone(),
        total_ms,
    };
    let json = record::write(&run, &record).map_err(HandoffError::Record)?;
    debug!(ctx.log, "wrote {}", json.display());
    info!(ctx.log, "{}", booting_line(f, &record.layers, total_ms));
    early::restore_kmsg_ratelimit(&ctx.root);
    move_mounts(&*ctx.os, &ctx.root, newroot)?;
    let freed = free_initramfs(&ctx.root, &[newroot.to_path_buf()]);
    log_freed(&ctx.log, &freed);
    info!(ctx.log, "starting {init} (t={:.3} s)", monotonic_secs());
    Err(switch_root(&*ctx.os, newroot, &init, &f.cmdline.init_args, &f.image_modules.detached, &ctx.log))
}

/// The one summary line: who, where, from what, with which layers, how long.
fn booting_line(f: &Facts<'_>, layers: &[LayerSummary], total_ms: u64) -> String {
    let name = f.identity.fqdn.as_deref().unwrap_or(&f.identity.hostname);
    let lease = &f.net.lease;
    let files: u64 = layers.iter().map(|l| l.files).sum();
    let kinds: Vec<String> = layers.iter().map(|l| l.kind.to_string()).collect();
    let layers =
        if kinds.is_empty() { "no layers".to_string() } else { format!("layers {}: {files} files", kinds.join(",")) };
    format!(
        "booting {name} {}/{} from {} (NFSv{}; {layers}) after {total_ms} ms",
        lease.address,
        lease.prefix_len,
        f.mounted.root.source(),
        f.mounted.mounted_version
    )
}

/// Checks of the image before anything changes: the init exists inside the image (its
/// symlinks resolved as the image sees them) and is an executable file, and every
/// directory of [`MOVED_MOUNTS`] exists.
pub fn check_image(newroot: &Path, init: &str) -> Result<(), HandoffError> {
    let fd = open_in_image(newroot, Path::new(init), OFlags::PATH).map_err(|source| HandoffError::InitMissing {
        init: init.to_string(),
        newroot: newroot.to_path_buf(),
        source,
    })?;
    let st = fstat(&fd).map_err(|e| HandoffError::InitMissing {
        init: init.to_string(),
        newroot: newroot.to_path_buf(),
        source: e.into(),
    })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(HandoffError::InitNotFile { init: init.to_string() });
    }
    let mode = st.st_mode & 0o7777;
    if mode & 0o111 == 0 {
        return Err(HandoffError::InitNotExecutable { init: init.to_string(), mode });
    }
    for dir in MOVED_MOUNTS {
        let is_dir = open_in_image(newroot, Path::new(dir), OFlags::PATH | OFlags::DIRECTORY).is_ok();
        if !is_dir {
            return Err(HandoffError::MountPointMissing { dir: dir.to_string(), newroot: newroot.to_path_buf() });
        }
    }
    Ok(())
}

/// What [`ensure_mtab`] found or did.
#[derive(Debug)]
pub enum Mtab {
    /// `/etc/mtab` exists (symlink or file): left alone.
    Present,
    /// Missing, and created as a symlink to `/proc/self/mounts` (writable /etc).
    Created,
    /// Missing and /etc is read-only: tools that read it will complain.
    Missing(io::Error),
}

/// `/etc/mtab` in the image: Debian ships it as a symlink to `/proc/self/mounts`; if it
/// is missing and `/etc` is writable (overlay mode), create that symlink.
pub fn ensure_mtab(newroot: &Path) -> Mtab {
    let path = newroot.join("etc/mtab");
    if path.symlink_metadata().is_ok() {
        return Mtab::Present;
    }
    match std::os::unix::fs::symlink(MTAB_TARGET, &path) {
        Ok(()) => Mtab::Created,
        Err(e) => Mtab::Missing(e),
    }
}

/// What freeing the initramfs did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Freed {
    pub files: u64,
    pub directories: u64,
    pub bytes: u64,
    /// Directories left because they are (or hold) other file systems.
    pub kept: Vec<PathBuf>,
    /// Entries that could not be removed, with the error.
    pub errors: Vec<String>,
}

/// Delete everything under `root` that is on `root`'s file system, except the paths in
/// `keep`. Never follows a symlink (symlinks are unlinked as links) and never enters a
/// directory of another file system (st_dev differs: a mount point), so the mounted
/// image and any still-mounted file system are untouched.
pub fn free_initramfs(root: &Path, keep: &[PathBuf]) -> Freed {
    let mut freed = Freed::default();
    let dir =
        match openat(CWD, root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        {
            Ok(dir) => dir,
            Err(e) => {
                freed.errors.push(format!("{}: {e}", root.display()));
                return freed;
            }
        };
    match fstat(&dir) {
        Ok(st) => remove_contents(&dir, root, st.st_dev, keep, &mut freed),
        Err(e) => freed.errors.push(format!("{}: {e}", root.display())),
    }
    freed
}

fn remove_contents(dir: &OwnedFd, path: &Path, dev: u64, keep: &[PathBuf], freed: &mut Freed) {
    let names = match list(dir) {
        Ok(names) => names,
        Err(e) => {
            freed.errors.push(format!("{}: {e}", path.display()));
            return;
        }
    };
    for name in names {
        let child = path.join(std::ffi::OsStr::from_bytes_ext(&name));
        if keep.contains(&child) {
            continue;
        }
        let st = match statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                freed.errors.push(format!("{}: {e}", child.display()));
                continue;
            }
        };
        if st.st_dev != dev {
            freed.kept.push(child);
            continue;
        }
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            let sub = openat(
                dir,
                name.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let sub = match sub {
                Ok(sub) => sub,
                Err(e) => {
                    freed.errors.push(format!("{}: {e}", child.display()));
                    continue;
                }
            };
            // Checked again on the open directory: something mounted between the stat
            // and the open must not be entered either.
            if fstat(&sub).map(|s| s.st_dev) != Ok(dev) {
                freed.kept.push(child);
                continue;
            }
            remove_contents(&sub, &child, dev, keep, freed);
            let holds_kept = freed.kept.iter().chain(keep.iter()).any(|k| k.starts_with(&child));
            match unlinkat(dir, name.as_slice(), AtFlags::REMOVEDIR) {
                Ok(()) => freed.directories += 1,
                Err(_) if holds_kept => {}
                Err(e) => freed.errors.push(format!("{}: {e}", child.display())),
            }
        } else {
            match unlinkat(dir, name.as_slice(), AtFlags::empty()) {
                Ok(()) => {
                    freed.files += 1;
                    freed.bytes += st.st_size as u64;
                }
                Err(e) => freed.errors.push(format!("{}: {e}", child.display())),
            }
        }
    }
}

/// The names in a directory, without `.` and `..`. Read fully before anything is
/// removed, so deleting does not disturb the listing.
fn list(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(dir.as_fd())? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// `OsStr` from bytes, as a small extension so the walker reads plainly.
trait FromBytesExt {
    fn from_bytes_ext(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytesExt for std::ffi::OsStr {
    fn from_bytes_ext(bytes: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}

/// Move the kernel file systems under `root` into `newroot`. Stops at the first failure.
pub fn move_mounts(os: &dyn Os, root: &Path, newroot: &Path) -> Result<(), HandoffError> {
    for dir in MOVED_MOUNTS {
        let (from, to) = (root.join(dir), newroot.join(dir));
        os.move_mount(&from, &to).map_err(|source| HandoffError::Move {
            from: from.clone(),
            to: to.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Make `newroot` the root and exec `init` with `args` (util-linux switch_root's
/// sequence: chdir, move the mount onto /, chroot ., chdir /). Right before the exec,
/// in the new root where their paths are the image's, a child starts on the `detached`
/// loads ([`crate::hardware::detached`]). Returns only on failure.
pub fn switch_root(
    os: &dyn Os,
    newroot: &Path,
    init: &str,
    args: &[String],
    detached: &[DetachedLoad],
    log: &Log,
) -> HandoffError {
    if let Err(source) = os.chdir(newroot) {
        return HandoffError::Chdir { path: newroot.to_path_buf(), source };
    }
    if let Err(source) = os.move_mount(Path::new("."), Path::new("/")) {
        return HandoffError::MoveRoot { newroot: newroot.to_path_buf(), source };
    }
    if let Err(source) = os.chroot(Path::new(".")) {
        return HandoffError::Chroot { newroot: newroot.to_path_buf(), source };
    }
    if let Err(source) = os.chdir(Path::new("/")) {
        return HandoffError::Chdir { path: PathBuf::from("/"), source };
    }
    if !detached.is_empty() {
        match os.load_detached(detached, detached::LIMIT) {
            Ok(pid) => info!(log, "the image's other {} drivers load in the background (pid {pid})", detached.len()),
            // The boot goes on: the image's own udev, if it has one, loads them.
            Err(e) => info!(
                log,
                "warning: cannot start the background loads of the image's drivers ({e}): {} stay unloaded unless \
                 the image loads them",
                detached.iter().map(|l| l.module.as_str()).collect::<Vec<_>>().join(" ")
            ),
        }
    }
    HandoffError::Exec { init: init.to_string(), source: os.exec(Path::new(init), args) }
}

/// Log what freeing did, one line.
pub fn log_freed(log: &Log, freed: &Freed) {
    info!(
        log,
        "freed the initramfs: {} files, {} directories, {} KiB{}",
        freed.files,
        freed.directories,
        freed.bytes / 1024,
        if freed.kept.is_empty() {
            String::new()
        } else {
            format!(
                "; left mount points {}",
                freed.kept.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            )
        }
    );
    for e in &freed.errors {
        info!(log, "warning: freeing the initramfs: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::fake::{Call, FakeOs};
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for d in ["dev", "proc", "sys", "run", "sbin", "lib/systemd", "etc"] {
            fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        let systemd = dir.path().join("lib/systemd/systemd");
        fs::write(&systemd, "#!").unwrap();
        fs::set_permissions(&systemd, fs::Permissions::from_mode(0o755)).unwrap();
        // Absolute, as in Debian: resolved inside the image, not on the host.
        symlink("/lib/systemd/systemd", dir.path().join("sbin/init")).unwrap();
        dir
    }

    #[test]
    fn init_behind_an_absolute_symlink_is_found_inside_the_image() {
        let img = image();
        check_image(img.path(), DEFAULT_INIT).unwrap();
    }

    #[test]
    fn missing_or_unusable_init_is_refused_before_anything_changes() {
        let img = image();
        let err = check_image(img.path(), "/sbin/nope").unwrap_err();
        assert!(matches!(err, HandoffError::InitMissing { .. }), "{err}");
        assert!(err.to_string().contains("name another with init="), "{err}");
        fs::set_permissions(img.path().join("lib/systemd/systemd"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            check_image(img.path(), DEFAULT_INIT),
            Err(HandoffError::InitNotExecutable { mode: 0o644, .. })
        ));
        assert!(matches!(check_image(img.path(), "/etc"), Err(HandoffError::InitNotFile { .. })));
    }

    #[test]
    fn a_missing_mount_point_in_the_image_is_named() {
        let img = image();
        fs::remove_dir(img.path().join("run")).unwrap();
        let err = check_image(img.path(), DEFAULT_INIT).unwrap_err();
        assert!(matches!(&err, HandoffError::MountPointMissing { dir, .. } if dir == "run"), "{err}");
        assert!(err.to_string().contains("the image has no directory /run"), "{err}");
    }

    #[test]
    fn mtab_is_left_alone_created_as_a_symlink_or_reported() {
        let img = image();
        assert!(matches!(ensure_mtab(img.path()), Mtab::Created));
        assert_eq!(fs::read_link(img.path().join("etc/mtab")).unwrap(), Path::new(MTAB_TARGET));
        assert!(matches!(ensure_mtab(img.path()), Mtab::Present));
        let no_etc = tempfile::tempdir().unwrap();
        assert!(matches!(ensure_mtab(no_etc.path()), Mtab::Missing(_)));
    }

    #[test]
    fn moves_and_switch_follow_the_switch_root_sequence() {
        let os = FakeOs::default();
        move_mounts(&os, Path::new("/"), Path::new("/newroot")).unwrap();
        let (log, _) = crate::log::captured();
        let err = switch_root(&os, Path::new("/newroot"), "/sbin/init", &["single".to_string()], &[], &log);
        assert!(matches!(err, HandoffError::Exec { .. }));
        let moved = |from: &str, to: &str| Call::Mount {
            source: from.into(),
            target: to.into(),
            fstype: String::new(),
            flags: crate::os::MS_MOVE,
            data: String::new(),
        };
        assert_eq!(
            os.calls(),
            [
                moved("/dev", "/newroot/dev"),
                moved("/proc", "/newroot/proc"),
                moved("/sys", "/newroot/sys"),
                moved("/run", "/newroot/run"),
                Call::Chdir { path: "/newroot".into() },
                moved(".", "/"),
                Call::Chroot { path: ".".into() },
                Call::Chdir { path: "/".into() },
                Call::Exec { path: "/sbin/init".into(), args: vec!["single".into()] },
            ]
        );
    }

    #[test]
    fn a_failed_move_names_both_paths() {
        let os = FakeOs::default();
        os.fail_mount_on(Path::new("/newroot/sys"), 2);
        let err = move_mounts(&os, Path::new("/"), Path::new("/newroot")).unwrap_err();
        assert!(err.to_string().starts_with("moving the mount /sys to /newroot/sys: "), "{err}");
        assert_eq!(os.calls().len(), 3, "stops at the failure");
    }
}
