//! Kernel module database: the one contract between `mkinitramfs` (which writes it)
//! and `init` (which reads it at boot).
//!
//! Build side: [`KernelModules::load`] reads `BASEDIR/lib/modules/VERSION` (depmod's
//! files when present, otherwise each module's `.modinfo`), and [`encode`] writes the
//! compact binary database for the modules chosen for an initramfs.
//!
//! Boot side: [`Db::parse`] borrows the bytes of that file and answers alias, dependency
//! and name queries without any text parsing.
//!
//! STUB: the public API below is the agreed contract; bodies are being written.

use std::collections::BTreeSet;

mod depmod;
pub mod fnmatch;
pub mod modinfo;
mod tree;

pub use tree::{BuildError, KernelModules, ModuleInfo};

/// Where the database lives inside an initramfs (and inside a root image), relative to `/`.
pub fn db_path(kernel_version: &str) -> String {
    format!("lib/modules/{kernel_version}/modules.db")
}

/// Module names compare with `-` and `_` as the same character, as kmod does.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Encode the boot-time database for `included` modules of `km`. Each included module's
/// stored path is its uncompressed `.ko` path: mkinitramfs writes decompressed modules.
pub fn encode(_km: &KernelModules, _included: &BTreeSet<String>) -> Vec<u8> {
    Vec::new()
}

/// Index of a module inside a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(pub u32);

#[derive(Debug)]
pub enum FormatError {
    Todo,
}

/// Zero-copy reader of the boot-time database.
pub struct Db<'a> {
    _bytes: &'a [u8],
}

impl<'a> Db<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        Ok(Db { _bytes: bytes })
    }
}
