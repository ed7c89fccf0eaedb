//! The side effects of the scratch stage behind one narrow trait, and the real ones.

use std::ffi::CString;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::Path;

use rustix::mount::{MountFlags, UnmountFlags, mount, mount_bind, unmount};

use super::probe::Sample;
use super::tree::{self, WipeStats};

/// What the scratch stage does to the system. Reading is read-only by construction:
/// [`Disks::read_sample`] is the only call that touches a device that is not selected.
pub trait Disks {
    /// The first and last bytes of `device` (`size` bytes long), opened read-only.
    fn read_sample(&mut self, device: &Path, size: u64) -> io::Result<Sample>;
    /// `mount -t <fstype> <device> <target>` read-write, no options.
    fn mount(&mut self, device: &Path, target: &Path, fstype: &str) -> io::Result<()>;
    /// `umount <target>`.
    fn unmount(&mut self, target: &Path) -> io::Result<()>;
    /// `swapon <device>`.
    fn swapon(&mut self, device: &Path) -> io::Result<()>;
    /// `mount --bind <source> <target>`.
    fn bind_mount(&mut self, source: &Path, target: &Path) -> io::Result<()>;
    /// `mkdir -p <path>` outside the image (the fallback mountpoint under /run).
    fn make_dir(&mut self, path: &Path) -> io::Result<()>;
    /// [`tree::ensure_dir`] on the mounted scratch filesystem.
    fn ensure_dir(&mut self, root: &Path, rel: &Path, mode: u32) -> io::Result<()>;
    /// [`tree::wipe`] on the mounted scratch filesystem.
    fn wipe(&mut self, root: &Path, rel: &Path) -> io::Result<WipeStats>;
}

/// The running system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisks;

impl Disks for RealDisks {
    fn read_sample(&mut self, device: &Path, size: u64) -> io::Result<Sample> {
        // File::open is O_RDONLY | O_CLOEXEC: probing can never write.
        let file = File::open(device)?;
        Sample::read(size, |offset, buf| file.read_exact_at(buf, offset))
    }

    fn mount(&mut self, device: &Path, target: &Path, fstype: &str) -> io::Result<()> {
        // nodev, nosuid as on the tmpfs the scratch replaces: the local dirs, /tmp and
        // /local never need device nodes or set-id programs.
        mount(device, target, fstype, MountFlags::NODEV | MountFlags::NOSUID, None)?;
        Ok(())
    }

    fn unmount(&mut self, target: &Path) -> io::Result<()> {
        unmount(target, UnmountFlags::empty())?;
        Ok(())
    }

    fn swapon(&mut self, device: &Path) -> io::Result<()> {
        let path = CString::new(device.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in device path"))?;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call;
        // swapon(2) only reads it.
        let rc = unsafe { libc::swapon(path.as_ptr(), 0) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn bind_mount(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        mount_bind(source, target)?;
        Ok(())
    }

    fn make_dir(&mut self, path: &Path) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(path)
    }

    fn ensure_dir(&mut self, root: &Path, rel: &Path, mode: u32) -> io::Result<()> {
        tree::ensure_dir(root, rel, mode)
    }

    fn wipe(&mut self, root: &Path, rel: &Path) -> io::Result<WipeStats> {
        tree::wipe(root, rel)
    }
}
