//! Build side: reading a kernel's module tree (`BASEDIR/lib/modules/VERSION`).
//!
//! With depmod's files present, aliases, dependencies and soft dependencies come
//! from `modules.alias`, `modules.dep` and `modules.softdep`, and only firmware
//! names from each module's `.modinfo`. Without them (a kernel unpacked from a
//! package), everything comes from `.modinfo`. Built-in drivers come from
//! `modules.builtin` and `modules.builtin.modinfo` in both cases.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::depmod;
use crate::fnmatch::{fnmatch, normalize_alias};
use crate::modinfo::{self, ModinfoError};
use crate::normalize_name;

/// Everything known about one loadable module of a kernel tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Normalised name (`-` replaced by `_`).
    pub name: String,
    /// Path relative to `lib/modules/VERSION`, as found in the tree (`.ko`, `.ko.xz`, `.ko.zst`).
    pub path: String,
    /// Hard dependencies (normalised names): the direct ones from `.modinfo`, or
    /// all of them in load order from `modules.dep`. Their transitive closure is
    /// the same either way, and that is all the database uses.
    pub depends: Vec<String>,
    /// Soft dependencies as written (module names or aliases).
    pub softdep_pre: Vec<String>,
    pub softdep_post: Vec<String>,
    pub firmware: Vec<String>,
    /// Alias patterns as written in `.modinfo` / `modules.alias`.
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
    /// `BASEDIR/lib/modules/VERSION` is not a directory.
    KernelDirMissing { path: PathBuf, versions: Vec<String> },
    /// A directory of the module tree could not be listed.
    ReadDir { path: PathBuf, source: std::io::Error },
    /// One of depmod's or the kernel build's index files could not be read.
    ReadIndex { path: PathBuf, source: std::io::Error },
    /// A line of such an index file is not in the expected format.
    BadIndexLine { path: PathBuf, line: usize },
    /// An index file names a module that `modules.dep` does not list.
    IndexUnknownModule { path: PathBuf, module: String },
    /// A module file could not be read.
    ReadModule { path: PathBuf, source: std::io::Error },
    /// A module file is damaged (bad compression or ELF).
    CorruptModule { path: PathBuf, reason: String },
    /// A file named like a module has no `.modinfo` section.
    NoModinfo { path: PathBuf },
    /// Names asked for are neither modules, built-in, nor aliases of either.
    UnknownModules { names: Vec<String> },
    /// A single name asked for is not a module of the tree.
    UnknownModule { name: String },
    /// A module depends on a module the tree does not have.
    MissingDependency { module: String, dependency: String },
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use BuildError::*;
        match self {
            KernelDirMissing { path, versions } if versions.is_empty() => write!(
                f,
                "kernel module directory {} does not exist and no kernel versions are installed beside it; \
                 check -b BASEDIR",
                path.display()
            ),
            KernelDirMissing { path, versions } => write!(
                f,
                "kernel module directory {} does not exist; versions present: {}",
                path.display(),
                versions.join(", ")
            ),
            ReadDir { path, source } => write!(f, "cannot list module directory {}: {source}", path.display()),
            ReadIndex { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            BadIndexLine { path, line } => write!(
                f,
                "{}:{line}: line not understood; regenerate the file with depmod or delete it",
                path.display()
            ),
            IndexUnknownModule { path, module } => {
                write!(f, "{} names module {module}, which modules.dep does not list; run depmod again", path.display())
            }
            ReadModule { path, source } => write!(f, "cannot read module {}: {source}", path.display()),
            CorruptModule { path, reason } => {
                write!(f, "module {} is damaged: {reason}; reinstall the kernel package", path.display())
            }
            NoModinfo { path } => write!(
                f,
                "{} has no .modinfo section, so it is not a kernel module; remove it from the tree",
                path.display()
            ),
            UnknownModules { names } => write!(
                f,
                "no module, built-in driver or alias of this kernel is called {}; check the spelling \
                 (modinfo NAME on the build machine)",
                names.join(", ")
            ),
            UnknownModule { name } => write!(f, "the kernel tree has no module called {name}"),
            MissingDependency { module, dependency } => write!(
                f,
                "module {module} depends on {dependency}, which the kernel tree does not have; \
                 the tree is incomplete"
            ),
        }
    }
}

impl std::error::Error for BuildError {}

fn module_error(path: &Path, e: ModinfoError) -> BuildError {
    let path = path.to_path_buf();
    match e {
        ModinfoError::Read(source) => BuildError::ReadModule { path, source },
        ModinfoError::Decompress(reason) | ModinfoError::Elf(reason) => BuildError::CorruptModule { path, reason },
        ModinfoError::NoModinfo => BuildError::NoModinfo { path },
    }
}

/// What a name given by a user or a softdep stands for.
enum Resolved {
    Modules(Vec<String>),
    Builtin,
    Unknown,
}

impl KernelModules {
    /// Reads `BASEDIR/lib/modules/VERSION`.
    pub fn load(basedir: &Path, version: &str) -> Result<Self, BuildError> {
        let modules_dir = basedir.join("lib/modules");
        let root = modules_dir.join(version);
        if !root.is_dir() {
            return Err(BuildError::KernelDirMissing { path: root, versions: versions_in(&modules_dir) });
        }
        let builtin = read_builtin(&root)?;
        let modules = if root.join("modules.dep").is_file() && root.join("modules.alias").is_file() {
            from_depmod(&root)?
        } else {
            from_modinfo(&root)?
        };
        Ok(KernelModules { version: version.to_string(), root, modules, builtin })
    }

    /// The named modules plus all their hard and soft dependencies, transitively.
    /// Built-in names are accepted and dropped; an unknown name is an error naming it.
    /// A name may also be an alias (`fs-nfs4`), standing for the modules it matches.
    /// Soft dependencies that name nothing in this kernel are skipped, as modprobe does.
    pub fn closure<'n>(&self, names: impl IntoIterator<Item = &'n str>) -> Result<BTreeSet<String>, BuildError> {
        let mut todo = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            match self.resolve(name) {
                Resolved::Modules(m) => todo.extend(m),
                Resolved::Builtin => {}
                Resolved::Unknown => unknown.push(name.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(BuildError::UnknownModules { names: unknown });
        }
        let mut done = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if done.contains(&name) {
                continue;
            }
            let Some(info) = self.modules.get(&name) else { continue };
            for dep in &info.depends {
                if self.modules.contains_key(dep) {
                    todo.push(dep.clone());
                } else if !self.builtin.contains_key(dep) {
                    return Err(BuildError::MissingDependency { module: name.clone(), dependency: dep.clone() });
                }
            }
            for soft in info.softdep_pre.iter().chain(&info.softdep_post) {
                if let Resolved::Modules(m) = self.resolve(soft) {
                    todo.extend(m);
                }
            }
            done.insert(name);
        }
        Ok(done)
    }

    /// A module name, built-in name, or alias, the way modprobe resolves it.
    fn resolve(&self, name: &str) -> Resolved {
        let normal = normalize_name(name);
        if self.modules.contains_key(&normal) {
            return Resolved::Modules(vec![normal]);
        }
        if self.builtin.contains_key(&normal) {
            return Resolved::Builtin;
        }
        let Some(alias) = normalize_alias(name) else { return Resolved::Unknown };
        let matches =
            |patterns: &[String]| patterns.iter().any(|p| normalize_alias(p).is_some_and(|p| fnmatch(&p, &alias)));
        let found: Vec<String> =
            self.modules.values().filter(|m| matches(&m.aliases)).map(|m| m.name.clone()).collect();
        if !found.is_empty() {
            Resolved::Modules(found)
        } else if self.builtin.values().any(|a| matches(a)) {
            Resolved::Builtin
        } else {
            Resolved::Unknown
        }
    }

    /// The modules a softdep name stands for (none if built in or unknown).
    pub(crate) fn resolve_softdep(&self, name: &str) -> Vec<String> {
        match self.resolve(name) {
            Resolved::Modules(m) => m,
            Resolved::Builtin | Resolved::Unknown => Vec::new(),
        }
    }

    /// The module's ELF bytes, decompressed if the file is `.ko.xz` or `.ko.zst`.
    pub fn module_bytes(&self, name: &str) -> Result<Vec<u8>, BuildError> {
        let info = self
            .modules
            .get(&normalize_name(name))
            .ok_or_else(|| BuildError::UnknownModule { name: name.to_string() })?;
        let path = self.root.join(&info.path);
        modinfo::read_module_file(&path).map_err(|e| module_error(&path, e))
    }
}

/// Kernel versions installed in `lib/modules`, sorted, for the "missing" error.
fn versions_in(modules_dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(modules_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads an optional index file: a kernel built without modules has none.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, BuildError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(BuildError::ReadIndex { path: path.to_path_buf(), source }),
    }
}

fn read_text(path: &Path) -> Result<Option<String>, BuildError> {
    Ok(read_optional(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn read_builtin(root: &Path) -> Result<BTreeMap<String, Vec<String>>, BuildError> {
    let mut builtin = BTreeMap::new();
    let list = root.join("modules.builtin");
    if let Some(text) = read_text(&list)? {
        let names =
            depmod::parse_modules_builtin(&text).map_err(|line| BuildError::BadIndexLine { path: list, line })?;
        builtin.extend(names.into_iter().map(|n| (n, Vec::new())));
    }
    if let Some(bytes) = read_optional(&root.join("modules.builtin.modinfo"))? {
        for (name, aliases) in depmod::parse_builtin_modinfo(&bytes) {
            builtin.entry(name).or_default().extend(aliases);
        }
    }
    Ok(builtin)
}

/// Applies `f` to every item on all cores; results keep the order of `items`.
/// Threads take the next item from a shared counter, since module sizes vary a lot.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    let next = AtomicUsize::new(0);
    let mut indexed: Vec<(usize, U)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        // A worker panics only if `f` does; pass that panic on unchanged.
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    indexed.sort_unstable_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, u)| u).collect()
}

/// Every module file under `root`, as paths relative to it, sorted. Symbolic links
/// are not followed (`build` and `source` point into kernel headers).
fn module_files(root: &Path) -> Result<Vec<String>, BuildError> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        let dir = root.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|source| BuildError::ReadDir { path: dir.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| BuildError::ReadDir { path: dir.clone(), source })?;
            let file_type = entry.file_type().map_err(|source| BuildError::ReadDir { path: dir.clone(), source })?;
            let Ok(name) = entry.file_name().into_string() else { continue };
            let child = rel.join(&name);
            if file_type.is_dir() {
                dirs.push(child);
            } else if file_type.is_file()
                && modinfo::split_module_file_name(&name).is_some()
                && let Some(s) = child.to_str()
            {
                found.push(s.to_string());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// When two files define the same module, the one under `updates/` wins, as in
/// depmod's default search order; otherwise the first in path order.
fn priority(path: &str) -> u8 {
    u8::from(!path.starts_with("updates/"))
}

fn from_modinfo(root: &Path) -> Result<BTreeMap<String, ModuleInfo>, BuildError> {
    let mut files = module_files(root)?;
    files.sort_by(|a, b| (priority(a), a).cmp(&(priority(b), b)));
    let parsed = par_map(&files, |rel| {
        let path = root.join(rel);
        modinfo::read_modinfo(&path).map(|s| modinfo::parse_modinfo(&s)).map_err(|e| module_error(&path, e))
    });
    let mut modules = BTreeMap::new();
    for (rel, info) in files.into_iter().zip(parsed) {
        let info = info?;
        let name = info.name.as_deref().map(normalize_name).or_else(|| depmod::name_from_path(&rel));
        let Some(name) = name else { continue };
        modules.entry(name.clone()).or_insert(ModuleInfo {
            name,
            path: rel,
            depends: info.depends,
            softdep_pre: info.softdep_pre,
            softdep_post: info.softdep_post,
            firmware: info.firmware,
            aliases: info.aliases,
        });
    }
    Ok(modules)
}

fn from_depmod(root: &Path) -> Result<BTreeMap<String, ModuleInfo>, BuildError> {
    let dep_path = root.join("modules.dep");
    let text = read_text(&dep_path)?.unwrap_or_default();
    let deps = depmod::parse_modules_dep(&text).map_err(|line| BuildError::BadIndexLine { path: dep_path, line })?;
    let paths: Vec<&str> = deps.iter().map(|(p, _)| p.as_str()).collect();
    let firmware = par_map(&paths, |rel| {
        let path = root.join(rel);
        modinfo::read_modinfo(&path).map(|s| modinfo::parse_modinfo(&s).firmware).map_err(|e| module_error(&path, e))
    });
    let mut modules = BTreeMap::new();
    for ((rel, dep_paths), firmware) in deps.iter().zip(firmware) {
        let name = depmod::name_from_path(rel).unwrap_or_default();
        modules.entry(name.clone()).or_insert(ModuleInfo {
            name,
            path: rel.clone(),
            depends: dep_paths.iter().filter_map(|p| depmod::name_from_path(p)).collect(),
            softdep_pre: Vec::new(),
            softdep_post: Vec::new(),
            firmware: firmware?,
            aliases: Vec::new(),
        });
    }
    let alias_path = root.join("modules.alias");
    let text = read_text(&alias_path)?.unwrap_or_default();
    let aliases = depmod::parse_modules_alias(&text)
        .map_err(|line| BuildError::BadIndexLine { path: alias_path.clone(), line })?;
    for (pattern, module) in aliases {
        let info = modules
            .get_mut(&module)
            .ok_or_else(|| BuildError::IndexUnknownModule { path: alias_path.clone(), module: module.clone() })?;
        info.aliases.push(pattern);
    }
    let softdep_path = root.join("modules.softdep");
    if let Some(text) = read_text(&softdep_path)? {
        let softdeps = depmod::parse_modules_softdep(&text)
            .map_err(|line| BuildError::BadIndexLine { path: softdep_path, line })?;
        for (module, pre, post) in softdeps {
            if let Some(info) = modules.get_mut(&module) {
                info.softdep_pre.extend(pre);
                info.softdep_post.extend(post);
            }
        }
    }
    Ok(modules)
}
