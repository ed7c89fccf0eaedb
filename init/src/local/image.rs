//! Opening paths of the image the way the image itself sees them.
//!
//! The image is mounted somewhere below the initramfs root (`/root`), and its absolute
//! symlinks (`/diskless/hosts/lab3-12 -> /diskless/hosts/common`) point at the image's
//! root, not at ours. `openat2(RESOLVE_IN_ROOT)` resolves them as a chroot would,
//! and keeps `..` from climbing out of the image.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat, openat2};

/// How often to retry when the kernel reports a concurrent rename during resolution.
const EAGAIN_RETRIES: usize = 8;

/// Opens `path` (absolute inside the image) with `flags` (`O_CLOEXEC` is added).
pub fn open_in_image(image_root: &Path, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let root = openat(CWD, image_root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let relative = path.strip_prefix("/").unwrap_or(path);
    let relative = if relative.as_os_str().is_empty() { Path::new(".") } else { relative };
    let mut attempt = 0;
    loop {
        match openat2(&root, relative, flags | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT) {
            Err(rustix::io::Errno::AGAIN) if attempt < EAGAIN_RETRIES => attempt += 1,
            result => return result.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_resolve_inside_the_image() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("diskless/hosts/common")).unwrap();
        fs::write(img.path().join("diskless/hosts/common/marker"), "in image").unwrap();
        symlink("/diskless/hosts/common", img.path().join("diskless/hosts/lab3-12")).unwrap();
        let fd = open_in_image(img.path(), Path::new("/diskless/hosts/lab3-12/marker"), OFlags::RDONLY).unwrap();
        assert_eq!(io::read_to_string(fs::File::from(fd)).unwrap(), "in image");
    }

    #[test]
    fn dot_dot_cannot_leave_the_image() {
        let outer = tempfile::tempdir().unwrap();
        fs::create_dir(outer.path().join("img")).unwrap();
        fs::write(outer.path().join("secret"), "outside").unwrap();
        fs::write(outer.path().join("img/secret"), "inside").unwrap();
        symlink("../../../secret", outer.path().join("img/link")).unwrap();
        let fd = open_in_image(&outer.path().join("img"), Path::new("/link"), OFlags::RDONLY).unwrap();
        assert_eq!(io::read_to_string(fs::File::from(fd)).unwrap(), "inside");
    }
}
