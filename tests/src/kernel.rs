//! The Debian kernel that `qemu/setup` unpacked into `qemu/.cache/kernel/`:
//! `version` holds e.g. `6.1.0-56-amd64`, `root/` is the unpacked package
//! (`root/boot/vmlinuz-<version>`, `root/lib/modules/<version>/`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::paths::workspace_root;

const HINT: &str = "run qemu/setup (as root) to download and unpack the Debian kernel";

/// Where the cached kernel and its modules are.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// The `-b` base directory for mkinitramfs/depmod: modules are under
    /// `<basedir>/lib/modules/<version>`.
    pub basedir: PathBuf,
    /// The kernel image the loaders boot (`vmlinuz-VERSION`, or POWER's `vmlinux-VERSION`).
    pub vmlinuz: PathBuf,
}

impl Kernel {
    /// Finds the kernel in a cache directory laid out by `qemu/setup`.
    pub fn locate(cache: &Path) -> Result<Kernel> {
        let version_file = cache.join("version");
        let version = std::fs::read_to_string(&version_file)
            .map_err(|_| Error::Missing {
                what: "kernel version file".into(),
                path: version_file.clone(),
                hint: HINT.into(),
            })?
            .trim()
            .to_string();
        let basedir = cache.join("root");
        // POWER's Debian kernel is an uncompressed ELF, vmlinux-VERSION.
        let boot = basedir.join("boot");
        let vmlinuz = ["vmlinuz", "vmlinux"]
            .iter()
            .map(|stem| boot.join(format!("{stem}-{version}")))
            .find(|p| p.is_file())
            .unwrap_or_else(|| boot.join(format!("vmlinuz-{version}")));
        if !vmlinuz.is_file() {
            return Err(Error::Missing { what: "kernel image".into(), path: vmlinuz, hint: HINT.into() });
        }
        let kernel = Kernel { version, basedir, vmlinuz };
        if !kernel.modules_dir().join("kernel").is_dir() {
            return Err(Error::Missing {
                what: "kernel modules".into(),
                path: kernel.modules_dir(),
                hint: HINT.into(),
            });
        }
        Ok(kernel)
    }

    /// The kernel cached in `<workspace>/qemu/.cache/kernel`, located once per process.
    /// Panics with "run qemu/setup" when it is absent: tests must not skip.
    pub fn cached() -> &'static Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        KERNEL.get_or_init(|| match Kernel::locate(&cache_dir()) {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        })
    }

    /// `<basedir>/lib/modules/<version>`.
    pub fn modules_dir(&self) -> PathBuf {
        self.basedir.join("lib/modules").join(&self.version)
    }
}

/// The Debian kernel of another client architecture that `qemu/setup` unpacked into
/// `qemu/.cache/kernels/<debarch>/` (`i386`, `arm64`, `ppc64el`), laid out as the
/// cached one.
pub fn foreign(debarch: &str) -> Result<Kernel> {
    Kernel::locate(&workspace_root().join("qemu/.cache/kernels").join(debarch))
}

/// `<workspace>/qemu/.cache/kernel`.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("qemu/.cache/kernel")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names_missing_version_file_and_setup() {
        let dir = tempfile::tempdir().unwrap();
        let msg = Kernel::locate(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("version") && msg.contains("run qemu/setup"), "{msg}");
    }

    #[test]
    fn locate_finds_unpacked_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("version"), "6.1.0-99-amd64\n").unwrap();
        std::fs::create_dir_all(dir.path().join("root/boot")).unwrap();
        std::fs::write(dir.path().join("root/boot/vmlinuz-6.1.0-99-amd64"), "").unwrap();
        let err = Kernel::locate(dir.path()).unwrap_err().to_string();
        assert!(err.contains("modules"), "{err}");
        std::fs::create_dir_all(dir.path().join("root/lib/modules/6.1.0-99-amd64/kernel")).unwrap();
        let k = Kernel::locate(dir.path()).unwrap();
        assert_eq!(k.version, "6.1.0-99-amd64");
        assert_eq!(k.modules_dir(), dir.path().join("root/lib/modules/6.1.0-99-amd64"));
    }

    #[test]
    fn cached_kernel_is_present_after_setup() {
        let k = Kernel::cached();
        assert!(k.vmlinuz.is_file() && k.modules_dir().is_dir(), "{k:?}");
    }
}
