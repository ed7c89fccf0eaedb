//! Debian's signed shim and GRUB network loader that `qemu/setup` unpacked (not
//! installed: their scripts would change this machine's own boot setup) into
//! `qemu/.cache/secureboot/root/`, for Secure Boot clients under OVMF.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::paths::workspace_root;

/// The signed loaders of a Secure Boot network boot.
#[derive(Clone, Debug)]
pub struct SignedLoaders {
    /// shim signed by Microsoft (package shim-signed): what OVMF with Microsoft's keys starts.
    pub shim: PathBuf,
    /// GRUB's network loader signed by Debian (package grub-efi-amd64-signed): what
    /// shim starts, as `grubx64.efi`.
    pub grub: PathBuf,
}

impl SignedLoaders {
    /// The loaders in `<workspace>/qemu/.cache/secureboot/root`; an error saying to
    /// run qemu/setup when one is missing.
    pub fn cached() -> Result<SignedLoaders> {
        let root = workspace_root().join("qemu/.cache/secureboot/root");
        let loaders = SignedLoaders {
            shim: root.join("usr/lib/shim/shimx64.efi.signed"),
            grub: root.join("usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"),
        };
        for path in [&loaders.shim, &loaders.grub] {
            if !path.is_file() {
                return Err(Error::Missing {
                    what: "signed boot loader".into(),
                    path: path.clone(),
                    hint: "run qemu/setup (it unpacks shim-signed and grub-efi-amd64-signed)".into(),
                });
            }
        }
        Ok(loaders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_loaders_are_present_after_setup() {
        let loaders = SignedLoaders::cached().unwrap();
        assert!(loaders.shim.ends_with("shimx64.efi.signed"), "{loaders:?}");
    }
}
