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
pub mod fnmatch;
mod format;
pub mod modinfo;
pub mod pci_ids;
mod tree;

pub use format::{Db, FormatError, HINT_DIRS, Ids, Module, ModuleId, encode, encode_with};
pub use tree::{BuildError, KernelModules, ModuleInfo};

/// Where the database lives inside an initramfs (and inside a root image), relative to `/`.
pub fn db_path(kernel_version: &str) -> String {
    format!("lib/modules/{kernel_version}/modules.db")
}

/// Module names compare with `-` and `_` as the same character, as kmod does.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}
