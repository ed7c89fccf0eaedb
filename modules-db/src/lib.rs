//! Kernel module database: the one contract between `mkinitramfs` (which writes it)
//! and `init` (which reads it at boot).
//!
//! Build side: [`KernelModules::load`] reads `BASEDIR/lib/modules/VERSION` (depmod's
//! files when present, otherwise each module's `.modinfo`), and [`encode`] writes the
//! compact binary database for the modules chosen for an initramfs.
//!
//! Boot side: [`Db::parse`] borrows the bytes of that file and answers alias, dependency
//! and name queries without any text parsing.

mod depmod;
pub mod elf;
pub mod fleet;
pub mod fnmatch;
mod format;
pub mod modinfo;
pub mod pci_ids;
mod tree;

pub use format::{Db, FormatError, HINT_DIRS, Ids, Module, ModuleId, Split, encode, encode_with};
pub use tree::{BuildError, KernelModules, ModuleInfo};

/// Where the database lives inside an initramfs (and inside a root image), relative to `/`.
pub fn db_path(kernel_version: &str) -> String {
    format!("lib/modules/{kernel_version}/modules.db")
}

/// The kernel version of a path that is some version's [`db_path`]; how an archive
/// says which kernel it was built for.
pub fn version_of_db_path(path: &str) -> Option<&str> {
    let version = path.trim_start_matches('/').strip_prefix("lib/modules/")?.strip_suffix("/modules.db")?;
    (!version.is_empty() && !version.contains('/')).then_some(version)
}

/// The mkinitramfs profile with every Ethernet driver of the kernel: the fix init names
/// for a NIC whose driver the default (lab) profile left out.
pub const EVERY_NIC_PROFILE: &str = "netboot-all";

/// Module names compare with `-` and `_` as the same character, as kmod does.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_of_a_db_path_is_the_one_it_was_made_for() {
        assert_eq!(version_of_db_path(&db_path("6.1.0-57-amd64")), Some("6.1.0-57-amd64"));
        assert_eq!(version_of_db_path("/lib/modules/6.1.0-57-amd64/modules.db"), Some("6.1.0-57-amd64"));
        for other in ["lib/modules/6.1/kernel/x.ko", "lib/modules//modules.db", "lib/modules/a/b/modules.db", "init"] {
            assert_eq!(version_of_db_path(other), None, "{other}");
        }
    }
}
