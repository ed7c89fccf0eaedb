//! Local disks (DESIGN §6): find a scratch filesystem and swap by signature, mount the
//! scratch read-write, and give the local stage directories on it to bind over the
//! local dirs instead of tmpfs.
//!
//! Steps, each its own module:
//!
//! 1. [`devices::list`]: block devices from sysfs;
//! 2. [`probe::probe`]: what is on each, from its first and last bytes (read-only);
//! 3. [`select::select`]: the scratch filesystem, the swaps, and why the rest is skipped;
//! 4. [`scratch`]: swapon, load the filesystem module, mount, prepare and wipe the
//!    subdirectories, bind `/tmp` and `/local`.
//!
//! Nothing here fails the boot: a disk that cannot be used leaves the machine on tmpfs
//! as if it had no disk, and says why on the console.
//!
//! Filesystem modules (ext4, xfs, btrfs) are loaded by name from the initramfs module
//! database through the loader the caller passes; `mkinitramfs` must include them. A
//! later step could fall back to the image's `/lib/modules/<same release>` for a
//! module missing from the initramfs.

pub mod devices;
pub mod probe;
pub mod select;
pub mod tree;

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode};
use crate::context::Context;
use crate::hardware::{Missing, MissingList, Modules};
use crate::log::Log;
use crate::os::{LOCAL_MOUNT_FLAGS, Os};
use crate::{debug, info};
pub use devices::{BlockDevice, DeviceError};
pub use probe::{Kind, Sample, Signature, probe};
pub use select::{Preference, Probed, ReadError, Selection, SkipReason, select};
pub use tree::WipeStats;

/// Loads kernel modules by name with their dependencies (`hardware::Modules::load`);
/// `Err` lists the ones still missing.
pub type ModuleLoader<'a> = dyn Fn(&[&str]) -> Result<(), Vec<Missing>> + 'a;

/// Where the stage looks and writes.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `/sys/class/block`.
    pub class_block: PathBuf,
    /// `/dev`.
    pub dev: PathBuf,
    /// Where the image is mounted (`/newroot`).
    pub image_root: PathBuf,
    /// `/run/diskless`: the fallback mountpoint goes under it.
    pub run_dir: PathBuf,
}

/// Subdirectory of the run dir used as mountpoint when the image lacks the configured one.
pub const FALLBACK_SUBDIR: &str = "scratch";

/// A failed step. Each names its device or path and says what the admin can do.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error(transparent)]
    ListDevices(#[from] DeviceError),
    #[error(
        "cannot load module {module}: {}; trying the mount anyway (it may be built in); \
         if the mount fails, add {module} to the initramfs (mkinitramfs --add-modules {module})",
        MissingList(.missing)
    )]
    LoadModule { module: String, missing: Vec<Missing> },
    #[error("cannot create {}: {error}", .path.display())]
    MakeMountpoint {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error(
        "cannot mount {} ({fstype}) on {}: {error} ({}); check it with fsck on another machine",
        .device.display(),
        .target.display(),
        mount_error_meaning(.error)
    )]
    Mount {
        device: PathBuf,
        target: PathBuf,
        fstype: String,
        #[source]
        error: io::Error,
    },
    /// Creating `<scratch>/<dir>` on the mounted filesystem.
    #[error(
        "cannot create the directory {}: {error} (a symlink or a file is in the way; remove it)",
        .path.display()
    )]
    PrepareDir {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("cannot wipe {}: {error}", .path.display())]
    Wipe {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("cannot bind {} on {}: {error}", .source.display(), .target.display())]
    Bind {
        source: PathBuf,
        target: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error(
        "swapon {} failed: {error} (made on a machine with another page size, or damaged? \
         run mkswap on it again)",
        .device.display()
    )]
    Swapon {
        device: PathBuf,
        #[source]
        error: io::Error,
    },
}

/// What a mount(2) errno usually means for a local disk.
fn mount_error_meaning(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        // ext4 and xfs report a bad metadata checksum as EBADMSG.
        Some(libc::EUCLEAN) | Some(libc::EBADMSG) => "the filesystem is corrupt",
        Some(libc::EINVAL) => "not a valid filesystem of that type, or unsupported features",
        Some(libc::EIO) => "I/O error reading the disk",
        Some(libc::ENODEV) => "the kernel does not support this filesystem: its module is missing",
        Some(libc::EROFS) | Some(libc::EACCES) => "the device is read-only",
        Some(libc::EBUSY) => "the device is already in use",
        _ => "mount refused",
    }
}

/// One device as found, for boot.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceReport {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Kind>,
}

/// A device not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub device: PathBuf,
    #[serde(flatten)]
    pub reason: SkipReason,
    /// The reason as printed on the console.
    pub message: String,
}

/// The scratch filesystem in use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedScratch {
    pub device: PathBuf,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub size: u64,
    /// Where it is mounted (in the initramfs' view; under the image root or the run dir).
    pub mountpoint: PathBuf,
    /// True when the image lacks the configured mountpoint and the fallback was used.
    pub fallback_mountpoint: bool,
    pub preference: Preference,
    /// Bind mounts made by this stage (`/tmp`, `/local`).
    pub binds: Vec<Bind>,
    /// Local dirs the local stage binds from the scratch: (dir as in the config, source).
    pub local_dirs: Vec<(PathBuf, PathBuf)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wiped: Vec<Wiped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wiped {
    pub path: PathBuf,
    #[serde(flatten)]
    pub stats: WipeStats,
}

/// A swap partition and whether swapon worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapReport {
    pub device: PathBuf,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Everything the stage found and did, for boot.json.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScratchReport {
    pub devices: Vec<DeviceReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scratch: Option<UsedScratch>,
    pub swaps: Vec<SwapReport>,
    pub skipped: Vec<Skipped>,
    /// Why the local dirs stay on tmpfs although a candidate was chosen, or why no
    /// device could be listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl ScratchReport {
    /// The local dirs to bind from the scratch disk instead of a tmpfs, as
    /// `(dir as configured, source directory)`: pass to `local::setup_with_scratch`.
    /// Empty when the local dirs stay on tmpfs.
    pub fn local_dirs(&self) -> &[(PathBuf, PathBuf)] {
        self.scratch.as_ref().map(|s| s.local_dirs.as_slice()).unwrap_or(&[])
    }
}

/// Sizes as the console shows them: KiB below 1 MiB, MiB, or GiB from 10 GiB on.
pub fn show_size(bytes: u64) -> String {
    if bytes >= 10 << 30 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    }
}

/// `<image_root>` followed by an absolute image path.
fn in_image(image_root: &Path, path: &Path) -> PathBuf {
    image_root.join(path.strip_prefix("/").unwrap_or(path))
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false)
}

/// The kernel filesystem type to mount and the module providing it. The ext4 driver
/// mounts ext2 and ext3 too (Debian builds no separate ext2/ext3 drivers).
pub fn mount_type(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::Ext2 | Kind::Ext3 | Kind::Ext4 => Some(("ext4", "ext4")),
        Kind::Xfs => Some(("xfs", "xfs")),
        Kind::Btrfs => Some(("btrfs", "btrfs")),
        _ => None,
    }
}

/// Scratch disks and swap (DESIGN §6) for the boot, after the root is mounted and before
/// the local dirs are made, with the filesystem module loaded from the initramfs. Never
/// fails: a disk that cannot be used leaves the local dirs on tmpfs, and the scratch code
/// says why on the console.
pub fn stage(ctx: &Context, modules: &Modules, config: &Config, newroot: &Path, run_dir: &Path) -> ScratchReport {
    let paths = Paths {
        class_block: ctx.root.join("sys/class/block"),
        dev: ctx.root.join("dev"),
        image_root: newroot.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    };
    // A module the database lacks is not an error of the loader (it lists it as
    // missing); for the scratch code it is: it says what to add to the initramfs.
    let load = |names: &[&str]| -> Result<(), Vec<Missing>> {
        let loaded = modules.load(names);
        if loaded.missing.is_empty() { Ok(()) } else { Err(loaded.missing) }
    };
    scratch(config, &paths, &*ctx.os, &load, &ctx.log)
}

/// The scratch stage. Call it after the image is mounted at `paths.image_root` and
/// before the local stage; then pass [`ScratchReport::local_dirs`] to
/// `local::setup_with_scratch` (empty = tmpfs as usual), and put the report in
/// boot.json.
///
/// `load_modules` loads kernel modules by name with their dependencies from the
/// initramfs database (`hardware::Modules::load`); it is called once, with the
/// module of the chosen filesystem type.
///
/// Never fails: every problem is logged (one line, what failed and what to do) and
/// recorded in the report, and leaves the local dirs on tmpfs.
pub fn scratch(
    config: &Config,
    paths: &Paths,
    os: &dyn Os,
    load_modules: &ModuleLoader<'_>,
    log: &Log,
) -> ScratchReport {
    let mut report = ScratchReport::default();
    let devices = match devices::list(&paths.class_block, &paths.dev) {
        Ok(devices) => devices,
        Err(e) => {
            let e = ScratchError::from(e);
            info!(log, "ERROR: scratch: {e}");
            report.failure = Some(e.to_string());
            return report;
        }
    };
    let probed: Vec<Probed> = devices
        .into_iter()
        .map(|device| {
            let signature = if device.size == 0 {
                Ok(None)
            } else {
                os.read_disk(&device.path, device.size)
                    .map(|sample| probe(&sample))
                    .map_err(|error| ReadError { device: device.path.clone(), error })
            };
            Probed { device, signature }
        })
        .collect();
    let selection = select(&probed, &config.scratch);
    log_devices(log, &probed, &selection);
    for p in &probed {
        let sig = p.signature.as_ref().ok().and_then(|s| s.as_ref());
        report.devices.push(DeviceReport {
            name: p.device.name.clone(),
            path: p.device.path.clone(),
            size: p.device.size,
            read_only: p.device.read_only,
            kind: sig.map(|s| s.kind),
            label: sig.and_then(|s| s.label.clone()),
            uuid: sig.and_then(|s| s.uuid.clone()),
            also: sig.map(|s| s.also.clone()).unwrap_or_default(),
        });
    }
    for (i, reason) in &selection.skipped {
        report.skipped.push(Skipped {
            device: probed[*i].device.path.clone(),
            message: reason.to_string(),
            reason: reason.clone(),
        });
    }

    for &i in &selection.swaps {
        let d = &probed[i].device;
        let label = probed[i].signature.as_ref().ok().and_then(|s| s.as_ref()).and_then(|s| s.label.clone());
        let result = os.swapon(&d.path);
        let error = match result {
            Ok(()) => {
                info!(log, "swap: {} {} enabled", d.path.display(), show_size(d.size));
                None
            }
            Err(error) => {
                let e = ScratchError::Swapon { device: d.path.clone(), error };
                info!(log, "swap: {} {} not enabled: {e}", d.path.display(), show_size(d.size));
                Some(e.to_string())
            }
        };
        report.swaps.push(SwapReport { device: d.path.clone(), size: d.size, label, enabled: error.is_none(), error });
    }

    let Some((chosen, preference)) = selection.scratch else {
        let label = match config.scratch.label.as_str() {
            "" => String::new(),
            l => format!(" labelled {l:?}"),
        };
        info!(log, "scratch: no {} filesystem{label} found; local dirs on tmpfs", config.scratch.fstypes.join(", "));
        return report;
    };
    let p = &probed[chosen];
    let Ok(Some(sig)) = &p.signature else {
        return report;
    };
    match use_scratch(config, paths, os, load_modules, log, &p.device, sig, preference) {
        Ok(used) => report.scratch = Some(used),
        Err(e) => {
            info!(log, "scratch: {} not used: {e}; local dirs on tmpfs", p.device.path.display());
            report.failure = Some(e.to_string());
        }
    }
    report
}

/// One line per device: what it is and, unless used, why it is skipped.
fn log_devices(log: &Log, probed: &[Probed], selection: &Selection) {
    for (i, p) in probed.iter().enumerate() {
        let what = match &p.signature {
            Ok(Some(sig)) => {
                let mut s = sig.kind.to_string();
                if let Some(label) = &sig.label {
                    s.push_str(&format!(" label {label:?}"));
                }
                s
            }
            Ok(None) => "no signature".to_string(),
            Err(_) => "unreadable".to_string(),
        };
        let size = show_size(p.device.size);
        match selection.skipped.iter().find(|(j, _)| *j == i) {
            Some((_, reason)) => info!(log, "disk {}: {what}, {size}, skipped ({reason})", p.device.name),
            None => info!(log, "disk {}: {what}, {size}", p.device.name),
        }
    }
}

/// Loads the module, mounts, prepares the directories, wipes, binds `/tmp` and
/// `/local`. On failure after the mount, unmounts again so that nothing half-set-up
/// stays.
#[allow(clippy::too_many_arguments)]
fn use_scratch(
    config: &Config,
    paths: &Paths,
    os: &dyn Os,
    load_modules: &ModuleLoader<'_>,
    log: &Log,
    device: &BlockDevice,
    sig: &Signature,
    preference: Preference,
) -> Result<UsedScratch, ScratchError> {
    let Some((fstype, module)) = mount_type(sig.kind) else {
        // select() only chooses types of scratch.fstypes, which config limits to these.
        return Err(ScratchError::Mount {
            device: device.path.clone(),
            target: config.scratch.mountpoint.clone(),
            fstype: sig.kind.to_string(),
            error: io::Error::from(io::ErrorKind::Unsupported),
        });
    };
    if let Err(missing) = load_modules(&[module]) {
        info!(log, "scratch: {}", ScratchError::LoadModule { module: module.into(), missing });
    }
    let in_image_mountpoint = in_image(&paths.image_root, &config.scratch.mountpoint);
    let (mountpoint, fallback) = if is_real_dir(&in_image_mountpoint) {
        (in_image_mountpoint, false)
    } else {
        let fallback = paths.run_dir.join(FALLBACK_SUBDIR);
        info!(
            log,
            "scratch: {} does not exist in the image; mounting on {} instead (create {} in the image to see it there)",
            config.scratch.mountpoint.display(),
            fallback.display(),
            config.scratch.mountpoint.display()
        );
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&fallback)
            .map_err(|error| ScratchError::MakeMountpoint { path: fallback.clone(), error })?;
        (fallback, true)
    };
    os.mount(&device.path.to_string_lossy(), &mountpoint, fstype, LOCAL_MOUNT_FLAGS, "").map_err(|error| {
        ScratchError::Mount { device: device.path.clone(), target: mountpoint.clone(), fstype: fstype.into(), error }
    })?;
    let label = sig.label.as_deref().map(|l| format!(", label {l}")).unwrap_or_default();
    info!(
        log,
        "scratch: using {} ({}{label}, {}) at {} ({preference})",
        device.path.display(),
        sig.kind,
        show_size(device.size),
        mountpoint.display()
    );
    match prepare(config, paths, os, log, &mountpoint) {
        Ok((binds, local_dirs, wiped)) => Ok(UsedScratch {
            device: device.path.clone(),
            kind: sig.kind,
            label: sig.label.clone(),
            size: device.size,
            mountpoint,
            fallback_mountpoint: fallback,
            preference,
            binds,
            local_dirs,
            wiped,
        }),
        Err(e) => {
            if let Err(error) = os.unmount(&mountpoint) {
                info!(log, "scratch: cannot unmount {} again: {error}", mountpoint.display());
            }
            Err(e)
        }
    }
}

type Prepared = (Vec<Bind>, Vec<(PathBuf, PathBuf)>, Vec<Wiped>);

/// The subdirectories on the mounted scratch and the binds of `/tmp` and `/local`.
fn prepare(config: &Config, paths: &Paths, os: &dyn Os, log: &Log, scratch: &Path) -> Result<Prepared, ScratchError> {
    // (relative path on the scratch, mode, dir in the image it is bound over)
    let mut subdirs: Vec<(PathBuf, u32, PathBuf)> = Vec::new();
    if config.mode == Mode::Symlink {
        for dir in &config.dirs {
            let local = dir.join(&config.localdir);
            subdirs.push((local.strip_prefix("/").unwrap_or(&local).to_path_buf(), 0o755, local));
        }
    } else {
        info!(log, "scratch: mode = \"overlay\": the local dirs stay on tmpfs; /tmp and /local use the scratch");
    }
    subdirs.push((PathBuf::from("tmp"), 0o1777, PathBuf::from("/tmp")));
    subdirs.push((PathBuf::from("local"), 0o755, PathBuf::from("/local")));

    let mut wiped = Vec::new();
    for (rel, mode, _) in &subdirs {
        let path = scratch.join(rel);
        tree::ensure_dir(scratch, rel, *mode)
            .map_err(|error| ScratchError::PrepareDir { path: path.clone(), error })?;
        if config.scratch.wipe {
            let stats = tree::wipe(scratch, rel).map_err(|error| ScratchError::Wipe { path: path.clone(), error })?;
            info!(log, "scratch: wiped {}: {} entries removed", path.display(), stats.removed);
            if stats.failed > 0 || stats.other_filesystems > 0 {
                info!(
                    log,
                    "scratch: wipe of {} left {} entries that could not be removed{} and {} other filesystems",
                    path.display(),
                    stats.failed,
                    stats.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default(),
                    stats.other_filesystems
                );
            }
            wiped.push(Wiped { path, stats });
        }
    }

    let mut binds = Vec::new();
    let mut local_dirs = Vec::new();
    for (rel, _, image_dir) in subdirs {
        let source = scratch.join(&rel);
        if image_dir == Path::new("/tmp") || image_dir == Path::new("/local") {
            let target = in_image(&paths.image_root, &image_dir);
            if !is_real_dir(&target) {
                debug!(
                    log,
                    "scratch: no directory {} in the image; {} is not bound",
                    image_dir.display(),
                    source.display()
                );
                continue;
            }
            // Not fatal: the scratch is mounted and the local dirs can still use it;
            // /tmp then stays what the image makes of it.
            match os.bind_mount(&source, &target) {
                Ok(()) => {
                    info!(log, "scratch: {} on {}", image_dir.display(), source.display());
                    binds.push(Bind { source, target });
                }
                Err(error) => info!(log, "scratch: {}", ScratchError::Bind { source, target, error }),
            }
        } else if let Some(dir) = image_dir.parent() {
            local_dirs.push((dir.to_path_buf(), source));
        }
    }
    if !local_dirs.is_empty() {
        let names: Vec<String> =
            local_dirs.iter().map(|(d, _)| d.join(&config.localdir).display().to_string()).collect();
        info!(log, "scratch: local dirs from {}: {}", scratch.display(), names.join(", "));
    }
    Ok((binds, local_dirs, wiped))
}
