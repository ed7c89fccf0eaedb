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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where the database lives inside an initramfs (and inside a root image), relative to `/`.
pub fn db_path(kernel_version: &str) -> String {
    format!("lib/modules/{kernel_version}/modules.db")
}

/// Module names compare with `-` and `_` as the same character, as kmod does.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Everything known about one loadable module of a kernel tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Normalised name (`-` replaced by `_`).
    pub name: String,
    /// Path relative to `lib/modules/VERSION`, as found in the tree (`.ko`, `.ko.xz`, `.ko.zst`).
    pub path: String,
    pub depends: Vec<String>,
    pub softdep_pre: Vec<String>,
    pub softdep_post: Vec<String>,
    pub firmware: Vec<String>,
    pub aliases: Vec<String>,
}

/// A kernel's module tree, as read at build time.
#[derive(Debug, Clone)]
pub struct KernelModules {
    pub version: String,
    /// `BASEDIR/lib/modules/VERSION`
    pub root: PathBuf,
    pub modules: BTreeMap<String, ModuleInfo>,
    /// Built-in drivers (from modules.builtin / modules.builtin.modinfo) and their aliases.
    pub builtin: BTreeMap<String, Vec<String>>,
}

#[derive(Debug)]
pub enum BuildError {
    Todo,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for BuildError {}

impl KernelModules {
    pub fn load(_basedir: &Path, _version: &str) -> Result<Self, BuildError> {
        Err(BuildError::Todo)
    }
    /// The named modules plus all their hard and soft dependencies, transitively.
    /// Built-in names are accepted and dropped; an unknown name is an error naming it.
    pub fn closure<'n>(&self, _names: impl IntoIterator<Item = &'n str>) -> Result<BTreeSet<String>, BuildError> {
        Err(BuildError::Todo)
    }
    /// The module's ELF bytes, decompressed if the file is `.ko.xz` or `.ko.zst`.
    pub fn module_bytes(&self, _name: &str) -> Result<Vec<u8>, BuildError> {
        Err(BuildError::Todo)
    }
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
