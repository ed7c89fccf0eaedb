//! The real side effects of the local stage, through rustix.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, Gid, Mode, Timestamps, Uid, chmodat, chownat, utimensat};
use rustix::mount::{MountFlags, mount};

use super::copy::Attributes;
use super::mounts::Mounter;

/// The running system: mounts for real, changes owners, modes and times for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

fn mount_options(options: &str) -> io::Result<CString> {
    CString::new(options).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in mount options"))
}

impl Mounter for System {
    fn mount_tmpfs(&mut self, target: &Path, options: &str) -> io::Result<()> {
        let data = mount_options(options)?;
        // nodev, nosuid: the local dirs hold configuration, never devices or setuid programs
        // that did not come from the image itself.
        mount("tmpfs", target, "tmpfs", MountFlags::NODEV | MountFlags::NOSUID, data.as_c_str())?;
        Ok(())
    }

    fn mount_overlay(&mut self, target: &Path, options: &str) -> io::Result<()> {
        let data = mount_options(options)?;
        mount("overlay", target, "overlay", MountFlags::empty(), data.as_c_str())?;
        Ok(())
    }

    fn bind_mount(&mut self, source: &Path, target: &Path) -> io::Result<()> {
        rustix::mount::mount_bind(source, target)?;
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(path)?;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        // After chown, which clears set-id bits.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
}

impl Attributes for System {
    fn set_owner(&mut self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        chownat(dir, name.as_bytes(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    fn set_mode(&mut self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        // fchmodat cannot refuse to follow a symlink on Linux; the caller never passes one.
        chmodat(dir, name.as_bytes(), Mode::from_raw_mode(mode), AtFlags::empty())?;
        Ok(())
    }

    fn set_times(&mut self, dir: BorrowedFd<'_>, name: &OsStr, times: &Timestamps) -> io::Result<()> {
        utimensat(dir, name.as_bytes(), times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}
