//! Building the initramfs: choose modules, read them, find their firmware,
//! assemble the archive, compress it, and write it atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use initramfs::{Archive, CompressError, Compression, WriteError};
use modules_db::elf::{ElfArch, ElfArchError};
use modules_db::fleet::Fleet;
use modules_db::{KernelModules, normalize_name};

use crate::firmware::{self, FirmwareError};
use crate::profile::{InArchive, NETWORK_DRIVERS_DIR, Profile};

/// (path or name, contents) of files headed for the archive.
pub type NamedFiles = Vec<(String, Vec<u8>)>;

/// Everything one build needs, defaults already applied.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub basedir: PathBuf,
    pub version: String,
    pub output: PathBuf,
    pub profile: Profile,
    pub add_modules: Vec<String>,
    pub omit_modules: Vec<String>,
    /// `--modules-in-archive`: the way to the root only, or the whole profile.
    pub in_archive: InArchive,
    /// `--fleet`: the fleet file's path and contents.
    pub fleet: Option<(PathBuf, Fleet)>,
    pub compression: Compression,
    pub init: InitChoice,
}

/// Where `/init` comes from. Either way it must be built for the kernel's architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitChoice {
    /// `--init PATH`: exactly this file.
    Given(PathBuf),
    /// No `--init`: the `init` beside the mkinitramfs executable `exe` when it is of the
    /// kernel's architecture, else the one cross-built for that architecture in the same
    /// cargo target directory, `<target>/<triple>/<profile>/init` (qemu/build-inits).
    Beside { exe: PathBuf },
}

impl InitChoice {
    /// The files this choice may take, in order, for a kernel of `arch`.
    pub fn candidates(&self, arch: Option<ElfArch>) -> Vec<PathBuf> {
        let exe = match self {
            InitChoice::Given(path) => return vec![path.clone()],
            InitChoice::Beside { exe } => exe,
        };
        let dir = exe.parent().unwrap_or(Path::new("."));
        let mut paths = vec![dir.join("init")];
        // exe is <target>/<host triple>/<profile>/mkinitramfs.
        if let (Some(triple), Some(target), Some(profile)) =
            (arch.and_then(|a| a.triple()), dir.parent().and_then(Path::parent), dir.file_name())
        {
            for profile in [profile, std::ffi::OsStr::new("release")] {
                let path = target.join(triple).join(profile).join("init");
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        paths
    }
}

#[derive(Debug)]
pub enum BuildError {
    /// Loading the kernel tree, resolving names, or reading a module failed.
    Modules(modules_db::BuildError),
    /// `--omit-modules` names something that is no module of this kernel.
    UnknownOmit {
        names: Vec<String>,
    },
    /// An omitted module is a hard dependency of a module that stays.
    OmitNeeded {
        omitted: String,
        needed_by: Vec<String>,
    },
    /// A NIC module of the fleet file is no module of this kernel.
    FleetModules {
        names: Vec<String>,
    },
    /// The init binary cannot be read.
    Init {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The init binary is no ELF executable.
    InitNotElf {
        path: PathBuf,
        source: ElfArchError,
    },
    /// The init binary is built for another architecture than the kernel.
    InitArch {
        path: PathBuf,
        init: ElfArch,
        version: String,
        kernel: ElfArch,
        module: String,
    },
    /// No `--init` and no init of the kernel's architecture where mkinitramfs looks.
    NoInitForArch {
        version: String,
        kernel: ElfArch,
        tried: Vec<PathBuf>,
    },
    /// A module of the kernel is no ELF object, so its architecture is unknown.
    ModuleArch {
        module: String,
        source: ElfArchError,
    },
    Firmware(FirmwareError),
    Archive(WriteError),
    Compress(CompressError),
    /// The output file cannot be written or renamed into place.
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Modules(error) => write!(f, "{error}"),
            BuildError::UnknownOmit { names } => {
                write!(f, "--omit-modules: this kernel has no module called {}; check the spelling", names.join(", "))
            }
            BuildError::OmitNeeded { omitted, needed_by } => write!(
                f,
                "--omit-modules: {omitted} cannot be left out because {} depend(s) on it; omit those too",
                needed_by.join(", ")
            ),
            BuildError::FleetModules { names } => write!(
                f,
                "--fleet: this kernel has no module {} that the fleet's NICs use; build for the kernel the clients \
                 run, or fix the fleet file's module names",
                names.join(", ")
            ),
            BuildError::Init { path, source } => write!(
                f,
                "cannot read the init binary {}: {source}; build it (cargo build -p diskless) or pass --init PATH",
                path.display()
            ),
            BuildError::InitNotElf { path, source } => write!(
                f,
                "cannot use {} as /init: {source}; pass --init with diskless's static init binary",
                path.display()
            ),
            BuildError::InitArch { path, init, version, kernel, module } => write!(
                f,
                "the init binary {} is built for {init} but kernel {version} is {kernel} (its module {module}); \
                 {}",
                path.display(),
                build_hint(*kernel)
            ),
            BuildError::NoInitForArch { version, kernel, tried } => write!(
                f,
                "no init built for {kernel}, the architecture of kernel {version}, in {}; {}",
                tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                build_hint(*kernel)
            ),
            BuildError::ModuleArch { module, source } => {
                write!(f, "cannot tell the kernel's architecture from its module {module}: {source}")
            }
            BuildError::Firmware(error) => write!(f, "{error}"),
            BuildError::Archive(error) => write!(f, "{error}"),
            BuildError::Compress(error) => write!(f, "{error}"),
            BuildError::Output { path, source } => {
                write!(f, "cannot write the initramfs to {}: {source}; choose another path with -o", path.display())
            }
        }
    }
}
impl std::error::Error for BuildError {}

/// How to get an init for a kernel of `arch`.
fn build_hint(arch: ElfArch) -> String {
    match arch.triple() {
        Some(triple) => format!(
            "build it with qemu/build-inits {triple} (writes target/{triple}/release/init) and pass it with --init"
        ),
        None => "diskless builds init for x86-64, i686, aarch64 and ppc64le only (qemu/init-targets)".to_string(),
    }
}

/// The architecture of the kernel's modules, from the first one (in name order), with
/// that module's name; `None` for a kernel without modules.
pub fn kernel_arch(kernel: &KernelModules) -> Result<Option<(ElfArch, String)>, BuildError> {
    let Some(name) = kernel.modules.keys().next() else {
        return Ok(None);
    };
    let bytes = kernel.module_bytes(name)?;
    let arch = ElfArch::of(&bytes).map_err(|source| BuildError::ModuleArch { module: name.clone(), source })?;
    Ok(Some((arch, name.clone())))
}

/// Reads the init `choice` names for `kernel`, checking it is of the kernel's architecture.
pub fn read_init(choice: &InitChoice, kernel: &KernelModules) -> Result<(PathBuf, Vec<u8>), BuildError> {
    let arch = kernel_arch(kernel)?;
    let candidates = choice.candidates(arch.as_ref().map(|(a, _)| *a));
    let mut first_error = None;
    for path in &candidates {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(source) => {
                first_error.get_or_insert(BuildError::Init { path: path.clone(), source });
                continue;
            }
        };
        let init = ElfArch::of(&bytes).map_err(|source| BuildError::InitNotElf { path: path.clone(), source })?;
        match &arch {
            Some((kernel_arch, module)) if *kernel_arch != init => {
                first_error.get_or_insert(BuildError::InitArch {
                    path: path.clone(),
                    init,
                    version: kernel.version.clone(),
                    kernel: *kernel_arch,
                    module: module.clone(),
                });
            }
            _ => return Ok((path.clone(), bytes)),
        }
    }
    match (choice, arch) {
        (InitChoice::Beside { .. }, Some((kernel_arch, _))) if candidates.len() > 1 => {
            Err(BuildError::NoInitForArch { version: kernel.version.clone(), kernel: kernel_arch, tried: candidates })
        }
        _ => Err(first_error.expect("at least one candidate was tried")),
    }
}

impl From<modules_db::BuildError> for BuildError {
    fn from(error: modules_db::BuildError) -> Self {
        BuildError::Modules(error)
    }
}

/// What a build produced, for the summary lines.
#[derive(Debug, Clone)]
pub struct Summary {
    pub version: String,
    pub profile: Profile,
    pub in_archive: InArchive,
    /// Modules in the archive.
    pub modules: usize,
    /// Modules of the kernel left to the image.
    pub image_modules: usize,
    pub firmware_included: usize,
    pub firmware_missing: Vec<String>,
    /// Names of the profile this kernel has neither as module nor built in.
    pub profile_absent: Vec<String>,
    /// NIC drivers the lab rule left out (see `profile::DATACENTRE_NICS`).
    pub left_out_nics: Vec<String>,
    /// `--fleet`: what the fleet chose.
    pub fleet: Option<FleetChoice>,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub compression: Compression,
    pub output: PathBuf,
    pub elapsed: Duration,
    /// The pci.ids whose names went into the module database, if one was found.
    pub pci_ids: Option<PathBuf>,
    pub contents: Contents,
}

/// The NIC drivers of a `--fleet` build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetChoice {
    pub path: PathBuf,
    pub machines: usize,
    /// The fleet's NIC modules (loadable ones; built-in ones need nothing).
    pub modules: Vec<String>,
    /// The profile's NIC drivers the fleet does not use, left out.
    pub left_out: usize,
}

/// `roots` without the NIC drivers, plus the fleet's NIC modules.
pub fn fleet_roots(
    kernel: &KernelModules,
    roots: Vec<String>,
    path: &Path,
    fleet: &Fleet,
) -> Result<(Vec<String>, FleetChoice), BuildError> {
    let is_nic = |name: &String| kernel.modules.get(name).is_some_and(|m| m.path.starts_with(NETWORK_DRIVERS_DIR));
    let before = roots.len();
    let mut roots: Vec<String> = roots.into_iter().filter(|name| !is_nic(name)).collect();
    let left_out = before - roots.len();
    let mut modules = Vec::new();
    let mut unknown = Vec::new();
    for name in fleet.nic_modules() {
        if kernel.modules.contains_key(&name) {
            modules.push(name.clone());
            roots.push(name);
        } else if !kernel.builtin.contains_key(&name) {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        return Err(BuildError::FleetModules { names: unknown });
    }
    let left_out = left_out.saturating_sub(modules.iter().filter(|m| is_nic(m)).count());
    Ok((roots, FleetChoice { path: path.to_path_buf(), machines: fleet.machines.len(), modules, left_out }))
}

/// What the archive is made of, in bytes before compression: where to look when
/// the initramfs grows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub init: u64,
    pub database: u64,
    /// The part of `database` that PCI vendor and device names take.
    pub pci_names: u64,
    pub firmware: u64,
    /// Module bytes per directory (see [`module_group`]), largest first.
    pub modules: Vec<(String, u64)>,
}

/// How many directory groups the summary names before it sums up the rest.
const SHOWN_GROUPS: usize = 10;

impl Contents {
    pub fn new(init: &[u8], modules: &NamedFiles, database: &[u8], firmware: &NamedFiles) -> Contents {
        let mut groups: BTreeMap<&str, u64> = BTreeMap::new();
        for (path, bytes) in modules {
            *groups.entry(module_group(path)).or_default() += bytes.len() as u64;
        }
        let mut modules: Vec<(String, u64)> =
            groups.into_iter().map(|(group, bytes)| (group.to_string(), bytes)).collect();
        modules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Contents {
            init: init.len() as u64,
            database: database.len() as u64,
            pci_names: modules_db::Db::parse(database).map_or(0, |db| db.pci_names_bytes() as u64),
            firmware: firmware.iter().map(|(_, bytes)| bytes.len() as u64).sum(),
            modules,
        }
    }

    pub fn module_bytes(&self) -> u64 {
        self.modules.iter().map(|(_, bytes)| bytes).sum()
    }

    /// Everything but the cpio headers and padding.
    pub fn total(&self) -> u64 {
        self.init + self.database + self.firmware + self.module_bytes()
    }
}

impl fmt::Display for Contents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "contents before compression (bytes):")?;
        let line = |f: &mut fmt::Formatter<'_>, what: &str, bytes: u64| writeln!(f, "  {what:<40} {bytes:>10}");
        line(f, "init", self.init)?;
        line(f, "module database", self.database)?;
        line(f, "  of which PCI names", self.pci_names)?;
        line(f, "firmware", self.firmware)?;
        line(f, &format!("modules ({} directories)", self.modules.len()), self.module_bytes())?;
        for (group, bytes) in self.modules.iter().take(SHOWN_GROUPS) {
            line(f, &format!("  {group}"), *bytes)?;
        }
        if self.modules.len() > SHOWN_GROUPS {
            let rest = &self.modules[SHOWN_GROUPS..];
            line(f, &format!("  {} more directories", rest.len()), rest.iter().map(|(_, bytes)| bytes).sum())?;
        }
        Ok(())
    }
}

/// Directory depth under `lib/modules/VERSION` by which module bytes are summed:
/// deep enough to tell kernel/drivers/net/ethernet from kernel/drivers/net/usb,
/// shallow enough for a summary.
const GROUP_DEPTH: usize = 4;

/// The directory group of a module's archive path `lib/modules/VERSION/kernel/...`:
/// its directory relative to `lib/modules/VERSION`, cut to [`GROUP_DEPTH`] components.
pub fn module_group(archive_path: &str) -> &str {
    let relative = archive_path.splitn(4, '/').nth(3).unwrap_or(archive_path);
    let directory = relative.rsplit_once('/').map_or("", |(directory, _)| directory);
    match directory.match_indices('/').nth(GROUP_DEPTH - 1) {
        Some((cut, _)) => &directory[..cut],
        None => directory,
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel {}, profile {}: {} modules, firmware {} included / {} missing; {} more modules load from the \
             image's /lib/modules/{} (--modules-in-archive {})",
            self.version,
            self.profile,
            self.modules,
            self.firmware_included,
            self.firmware_missing.len(),
            self.image_modules,
            self.version,
            self.in_archive
        )?;
        writeln!(
            f,
            "{} bytes before compression, {} bytes after ({}), written to {} in {:.2} s",
            self.raw_bytes,
            self.compressed_bytes,
            self.compression,
            self.output.display(),
            self.elapsed.as_secs_f64()
        )?;
        write!(f, "{}", self.contents)?;
        match &self.pci_ids {
            Some(path) => writeln!(f, "PCI names from {}", path.display())?,
            None => {
                writeln!(f, "no pci.ids found (install pci.ids): devices without a driver are reported by number only")?
            }
        }
        if !self.profile_absent.is_empty() {
            writeln!(f, "not in this kernel (skipped): {}", self.profile_absent.join(", "))?;
        }
        if let Some(fleet) = &self.fleet {
            writeln!(
                f,
                "fleet {} ({} machines): NIC drivers {}; {} other NIC drivers of the profile left out",
                fleet.path.display(),
                fleet.machines,
                fleet.modules.join(", "),
                fleet.left_out
            )?;
        }
        if !self.left_out_nics.is_empty() {
            writeln!(
                f,
                "datacentre NIC drivers left out ({}; --profile {} keeps them): {}",
                self.left_out_nics.len(),
                modules_db::EVERY_NIC_PROFILE,
                self.left_out_nics.join(", ")
            )?;
        }
        if !self.firmware_missing.is_empty() {
            writeln!(f, "missing firmware:")?;
            for name in &self.firmware_missing {
                writeln!(f, "  {name}")?;
            }
        }
        Ok(())
    }
}

/// Builds the initramfs described by `options` and writes it to `options.output`.
pub fn build(options: &BuildOptions) -> Result<Summary, BuildError> {
    let started = Instant::now();
    let kernel = KernelModules::load(&options.basedir, &options.version)?;
    let (_, init) = read_init(&options.init, &kernel)?;
    let (mut roots, profile_absent) = options.profile.modules(&kernel);
    let mut fleet = None;
    let mut marker = Vec::new();
    if let Some((path, chosen)) = &options.fleet {
        let (fleet_roots, choice) = fleet_roots(&kernel, roots, path, chosen)?;
        roots = fleet_roots;
        let text = modules_db::fleet::marker_text(&path.display().to_string(), chosen);
        marker.push((modules_db::fleet::marker_path(&kernel.version), text.into_bytes()));
        fleet = Some(choice);
    }
    // `--profile all` asks for every module in the archive.
    let in_archive = if options.profile == Profile::All { InArchive::All } else { options.in_archive };
    let mut roots = in_archive.roots(&kernel, roots);
    roots.extend(options.add_modules.iter().cloned());
    let included = select_modules(&kernel, &roots, &options.omit_modules)?;
    // With a fleet every NIC driver but the fleet's is left out: the lab rule's list
    // (and its "--profile netboot-all keeps them") does not apply.
    let left_out_nics = match &fleet {
        Some(_) => Vec::new(),
        None => options.profile.left_out_nics(&kernel).into_iter().filter(|name| !included.contains(name)).collect(),
    };
    let modules = read_modules(&kernel, &included)?;
    let (firmware, firmware_missing) = collect_firmware(&options.basedir.join("lib/firmware"), &kernel, &included)?;
    let firmware_included = firmware.len();
    let pci_ids = read_pci_ids(&options.basedir);
    // The database covers every module of the kernel: those outside the archive load
    // from the image once the root is mounted, and the hardware report names them.
    let pci_text = pci_ids.as_ref().map(|(_, text)| text.as_str());
    let db = modules_db::encode_with(&kernel, &included, modules_db::Split::RestInImage, pci_text);
    let contents = Contents::new(&init, &modules, &db, &firmware);
    let archive = assemble(&kernel.version, init, modules, db, firmware, marker)?;
    let raw = archive.to_bytes();
    drop(archive);
    let compressed = options.compression.compress(&raw).map_err(BuildError::Compress)?;
    write_atomically(&options.output, &compressed)?;
    Ok(Summary {
        version: kernel.version.clone(),
        profile: options.profile,
        in_archive,
        modules: included.len(),
        image_modules: kernel.modules.len() - included.len(),
        firmware_included,
        firmware_missing,
        profile_absent,
        left_out_nics,
        fleet,
        raw_bytes: raw.len() as u64,
        compressed_bytes: compressed.len() as u64,
        compression: options.compression,
        output: options.output.clone(),
        elapsed: started.elapsed(),
        pci_ids: pci_ids.map(|(path, _)| path),
        contents,
    })
}

/// Where pci.ids is looked for, first under BASEDIR (the system the initramfs is for),
/// then on the build host. Only names come from it, so any version will do.
const PCI_IDS_PATHS: &[&str] = &["usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids"];

/// The text of the first pci.ids found, for readable "no driver for ..." lines at boot.
/// Missing is not an error: init then reports bare vendor and device numbers.
fn read_pci_ids(basedir: &Path) -> Option<(PathBuf, String)> {
    let bases = [basedir, Path::new("/")];
    bases.iter().flat_map(|base| PCI_IDS_PATHS.iter().map(move |rel| base.join(rel))).find_map(|path| {
        let text = std::fs::read(&path).ok()?;
        Some((path, String::from_utf8_lossy(&text).into_owned()))
    })
}

/// The closure of `roots` (modules or aliases, with hard and soft dependencies),
/// without the `omit` modules and what only they pulled in.
pub fn select_modules(
    kernel: &KernelModules,
    roots: &[String],
    omit: &[String],
) -> Result<BTreeSet<String>, BuildError> {
    let omitted: BTreeSet<String> = omit.iter().map(|name| normalize_name(name)).collect();
    let unknown: Vec<String> = omitted
        .iter()
        .filter(|name| !kernel.modules.contains_key(*name) && !kernel.builtin.contains_key(*name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(BuildError::UnknownOmit { names: unknown });
    }
    let kept: Vec<&str> =
        roots.iter().map(String::as_str).filter(|name| !omitted.contains(&normalize_name(name))).collect();
    let full = kernel.closure(kept.iter().copied())?;
    if omitted.is_empty() {
        return Ok(full);
    }
    // Walk the dependency graph again with omitted modules as walls, so that
    // dependencies reachable only through them stay out.
    let mut todo: Vec<String> = Vec::new();
    for name in &kept {
        let normal = normalize_name(name);
        if kernel.modules.contains_key(&normal) {
            todo.push(normal);
        } else if !kernel.builtin.contains_key(&normal) {
            todo.extend(kernel.closure([*name])?);
        }
    }
    let mut reached = BTreeSet::new();
    let mut needed: Vec<(String, String)> = Vec::new();
    while let Some(name) = todo.pop() {
        if omitted.contains(&name) || !full.contains(&name) || !reached.insert(name.clone()) {
            continue;
        }
        let info = &kernel.modules[&name];
        for dependency in &info.depends {
            if omitted.contains(dependency) {
                needed.push((dependency.clone(), name.clone()));
            }
            todo.push(dependency.clone());
        }
        for soft in info.softdep_pre.iter().chain(&info.softdep_post) {
            let normal = normalize_name(soft);
            if kernel.modules.contains_key(&normal) {
                todo.push(normal);
            } else {
                todo.extend(kernel.closure([soft.as_str()]).unwrap_or_default());
            }
        }
    }
    if let Some((omitted, _)) = needed.first() {
        let mut needed_by: Vec<String> =
            needed.iter().filter(|(dependency, _)| dependency == omitted).map(|(_, by)| by.clone()).collect();
        needed_by.sort();
        needed_by.dedup();
        return Err(BuildError::OmitNeeded { omitted: omitted.clone(), needed_by });
    }
    Ok(reached)
}

/// Reads every included module (decompressed), in parallel. Returns archive paths
/// and contents in name order; the first failure in name order is reported.
pub fn read_modules(kernel: &KernelModules, included: &BTreeSet<String>) -> Result<NamedFiles, BuildError> {
    let names: Vec<&String> = included.iter().collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |count| count.get()).min(names.len().max(1));
    let mut results: Vec<(usize, Result<Vec<u8>, modules_db::BuildError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(index) else { break };
                        done.push((index, kernel.module_bytes(name)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    let mut modules = Vec::with_capacity(names.len());
    for (index, result) in results {
        let name = names[index];
        let bytes = result?;
        let path = uncompressed_module_path(&kernel.modules[name].path);
        modules.push((format!("lib/modules/{}/{path}", kernel.version), bytes));
    }
    Ok(modules)
}

/// Where a module goes in the archive: modules are stored decompressed, so
/// `x.ko.xz` / `x.ko.zst` / `x.ko.gz` become `x.ko` (the database says the same).
pub fn uncompressed_module_path(path: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|suffix| path.strip_suffix(suffix).filter(|stem| stem.ends_with(".ko")))
        .unwrap_or(path)
}

/// Firmware named by the included modules: (name, contents) found, names missing.
pub fn collect_firmware(
    firmware_root: &Path,
    kernel: &KernelModules,
    included: &BTreeSet<String>,
) -> Result<(NamedFiles, Vec<String>), BuildError> {
    let wanted: BTreeSet<&String> =
        included.iter().filter_map(|name| kernel.modules.get(name)).flat_map(|info| &info.firmware).collect();
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in wanted {
        match firmware::load(firmware_root, name).map_err(BuildError::Firmware)? {
            Some(contents) => found.push((name.clone(), contents)),
            None => missing.push(name.clone()),
        }
    }
    Ok((found, missing))
}

/// Directories the init needs before it mounts anything, with their modes.
const EMPTY_DIRS: [(&str, u32); 7] = [
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("newroot", 0o755),
];

/// The archive: /init, /dev/console, empty mount points, modules, database, firmware,
/// and `other` files (the fleet marker).
pub fn assemble(
    version: &str,
    init: Vec<u8>,
    modules: NamedFiles,
    db: Vec<u8>,
    firmware: NamedFiles,
    other: NamedFiles,
) -> Result<Archive, BuildError> {
    let mut archive = Archive::new().map_err(BuildError::Archive)?;
    archive.add_file("init", 0o755, init).map_err(BuildError::Archive)?;
    for (dir, mode) in EMPTY_DIRS {
        archive.add_dir(dir, mode).map_err(BuildError::Archive)?;
    }
    // The kernel opens /dev/console for PID 1 before anything is mounted.
    archive.add_char_dev("dev/console", 0o600, 5, 1).map_err(BuildError::Archive)?;
    for (path, bytes) in modules {
        archive.add_file(&path, 0o644, bytes).map_err(BuildError::Archive)?;
    }
    archive.add_file(&modules_db::db_path(version), 0o644, db).map_err(BuildError::Archive)?;
    for (name, contents) in firmware {
        archive.add_file(&format!("lib/firmware/{name}"), 0o644, contents).map_err(BuildError::Archive)?;
    }
    for (path, contents) in other {
        archive.add_file(&path, 0o644, contents).map_err(BuildError::Archive)?;
    }
    Ok(archive)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place,
/// so a reader (TFTP server, bootloader installer) never sees a partial image.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |source| BuildError::Output { path: path.to_path_buf(), source };
    let file_name = path.file_name().ok_or_else(|| fail(std::io::Error::other("the path names no file")))?;
    let temp = path.with_file_name(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        // World-readable: TFTP servers serve only such files.
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&temp)?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use modules_db::ModuleInfo;
    use std::collections::BTreeMap;

    /// (name, hard deps, soft pre deps) of a small made-up kernel.
    fn kernel(modules: &[(&str, &[&str], &[&str])], builtin: &[&str]) -> KernelModules {
        let modules = modules
            .iter()
            .map(|(name, depends, soft)| {
                let info = ModuleInfo {
                    name: name.to_string(),
                    path: format!("kernel/{name}.ko"),
                    depends: depends.iter().map(|d| d.to_string()).collect(),
                    softdep_pre: soft.iter().map(|d| d.to_string()).collect(),
                    softdep_post: vec![],
                    firmware: vec![],
                    aliases: vec![],
                };
                (name.to_string(), info)
            })
            .collect();
        let builtin = builtin.iter().map(|name| (name.to_string(), vec![])).collect::<BTreeMap<_, _>>();
        KernelModules { version: "v".into(), root: PathBuf::from("/nonexistent"), modules, builtin }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    fn nic_kernel() -> KernelModules {
        kernel(
            &[
                ("8139too", &["mii"], &[]),
                ("8139cp", &["mii"], &[]),
                ("mii", &[], &[]),
                ("e1000", &[], &[]),
                ("r8169", &["realtek_phy"], &[]),
                ("realtek_phy", &[], &[]),
                ("ext4", &["jbd2", "mbcache"], &["crc32c_generic"]),
                ("jbd2", &[], &[]),
                ("mbcache", &[], &[]),
                ("crc32c_generic", &[], &[]),
            ],
            &["crc32c"],
        )
    }

    /// nic_kernel() with its NIC drivers and their helpers where the kernel keeps them.
    fn nic_kernel_in_tree() -> KernelModules {
        let mut k = nic_kernel();
        for (name, dir) in [
            ("8139too", "ethernet/realtek/"),
            ("8139cp", "ethernet/realtek/"),
            ("r8169", "ethernet/realtek/"),
            ("e1000", "ethernet/intel/e1000/"),
            ("mii", ""),
            ("realtek_phy", "phy/"),
        ] {
            k.modules.get_mut(name).unwrap().path = format!("{NETWORK_DRIVERS_DIR}{dir}{name}.ko");
        }
        k
    }

    fn fleet_of(modules: &[&str]) -> Fleet {
        let nic = |module: &str| modules_db::fleet::Nic {
            interface: "eth0".into(),
            mac: "52:54:00:00:00:01".into(),
            bus: "pci".into(),
            id: String::new(),
            modalias: "pci:x".into(),
            module: module.into(),
        };
        Fleet::new(vec![modules_db::fleet::Machine {
            name: "pc1".into(),
            mac: "52:54:00:00:00:01".into(),
            nics: modules.iter().map(|m| nic(m)).collect(),
        }])
    }

    #[test]
    fn a_fleet_keeps_exactly_its_nic_drivers_and_everything_else_of_the_profile() {
        let kernel = nic_kernel_in_tree();
        let profile = names(&["8139too", "8139cp", "e1000", "r8169", "ext4"]);
        let (roots, choice) =
            fleet_roots(&kernel, profile, Path::new("/srv/fleet.toml"), &fleet_of(&["r8169"])).unwrap();
        let selected = select_modules(&kernel, &roots, &[]).unwrap();
        assert_eq!(
            selected,
            names(&["crc32c_generic", "ext4", "jbd2", "mbcache", "r8169", "realtek_phy"]).into_iter().collect(),
            "the fleet's driver with its PHY; no other NIC driver"
        );
        assert_eq!(
            choice,
            FleetChoice { path: "/srv/fleet.toml".into(), machines: 1, modules: names(&["r8169"]), left_out: 3 }
        );
        // Built in: nothing to add, no error.
        let (roots, choice) = fleet_roots(&kernel, names(&["ext4"]), Path::new("f"), &fleet_of(&["crc32c"])).unwrap();
        assert_eq!((roots, choice.modules), (names(&["ext4"]), vec![]));
    }

    #[test]
    fn a_fleet_module_the_kernel_lacks_is_an_error_naming_it() {
        let error =
            fleet_roots(&nic_kernel_in_tree(), vec![], Path::new("f"), &fleet_of(&["e1000", "igc"])).unwrap_err();
        assert!(matches!(&error, BuildError::FleetModules { names } if names == &["igc"]), "{error}");
        assert!(error.to_string().starts_with("--fleet: this kernel has no module igc "), "{error}");
    }

    #[test]
    fn selection_adds_hard_and_soft_dependencies() {
        let selected = select_modules(&nic_kernel(), &names(&["ext4", "8139too"]), &[]).unwrap();
        let expected: BTreeSet<String> =
            names(&["8139too", "crc32c_generic", "ext4", "jbd2", "mbcache", "mii"]).into_iter().collect();
        assert_eq!(selected, expected);
    }

    #[test]
    fn omitting_drops_the_module_and_what_only_it_pulled_in() {
        let kernel = nic_kernel();
        let roots = names(&["8139too", "8139cp", "e1000", "r8169"]);
        let selected = select_modules(&kernel, &roots, &names(&["8139too", "8139cp"])).unwrap();
        assert_eq!(selected, names(&["e1000", "r8169", "realtek_phy"]).into_iter().collect());
        let selected = select_modules(&kernel, &roots, &names(&["8139too", "r8169"])).unwrap();
        assert!(selected.contains("mii"), "8139cp still needs mii");
        assert!(!selected.contains("realtek_phy"));
    }

    #[test]
    fn omitting_an_unknown_module_is_an_error_naming_it() {
        let error = select_modules(&nic_kernel(), &names(&["e1000"]), &names(&["e1001"])).unwrap_err();
        assert!(matches!(&error, BuildError::UnknownOmit { names } if names == &["e1001"]), "{error}");
        assert!(error.to_string().contains("e1001"));
    }

    #[test]
    fn omitting_a_needed_dependency_names_who_needs_it() {
        let error = select_modules(&nic_kernel(), &names(&["8139too", "8139cp"]), &names(&["mii"])).unwrap_err();
        assert!(
            matches!(&error, BuildError::OmitNeeded { omitted, needed_by } if omitted == "mii" && needed_by == &["8139cp", "8139too"]),
            "{error}"
        );
    }

    #[test]
    fn modules_are_grouped_by_directory_cut_to_four_levels() {
        let v = "lib/modules/6.1.0-test";
        assert_eq!(
            module_group(&format!("{v}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko")),
            "kernel/drivers/net/ethernet"
        );
        assert_eq!(module_group(&format!("{v}/kernel/drivers/net/virtio_net.ko")), "kernel/drivers/net");
        assert_eq!(module_group(&format!("{v}/kernel/fs/xfs/xfs.ko")), "kernel/fs/xfs");
        assert_eq!(module_group(&format!("{v}/updates/dkms.ko")), "updates");
        assert_eq!(module_group(&format!("{v}/top.ko")), "");
    }

    #[test]
    fn contents_sum_each_part_and_list_the_largest_directories_first() {
        let v = "lib/modules/6.1.0-test";
        let mut modules: NamedFiles = (0..12).map(|i| (format!("{v}/kernel/d{i}/m.ko"), vec![0; 100 + i])).collect();
        modules.push((format!("{v}/kernel/d0/n.ko"), vec![0; 1000]));
        let firmware = vec![("a.bin".to_string(), vec![0; 7]), ("b.bin".to_string(), vec![0; 3])];
        let contents = Contents::new(b"init", &modules, b"db", &firmware);
        assert_eq!((contents.init, contents.database, contents.pci_names, contents.firmware), (4, 2, 0, 10));
        assert_eq!(contents.modules[0], ("kernel/d0".to_string(), 1100));
        assert_eq!(contents.modules[1], ("kernel/d11".to_string(), 111));
        assert_eq!(contents.module_bytes(), 1000 + (100..112).sum::<u64>());
        assert_eq!(contents.total(), 4 + 2 + 10 + contents.module_bytes());
        let text = contents.to_string();
        assert!(text.contains("modules (12 directories)"), "{text}");
        assert!(text.contains("kernel/d0") && text.contains("kernel/d11"), "{text}");
        // The two smallest groups are summed up, not listed.
        assert!(!text.contains("kernel/d1 ") && !text.contains("kernel/d2 "), "{text}");
        assert!(text.contains("2 more directories") && text.contains(&(101 + 102).to_string()), "{text}");
    }

    #[test]
    fn compressed_module_paths_lose_their_compression_suffix() {
        assert_eq!(uncompressed_module_path("kernel/a/e1000.ko.xz"), "kernel/a/e1000.ko");
        assert_eq!(uncompressed_module_path("kernel/a/e1000.ko.zst"), "kernel/a/e1000.ko");
        assert_eq!(uncompressed_module_path("kernel/a/e1000.ko"), "kernel/a/e1000.ko");
    }

    #[test]
    fn archive_has_init_console_mount_points_and_db() {
        let archive = assemble("6.1.0-test", b"init".to_vec(), vec![], b"db".to_vec(), vec![], vec![]).unwrap();
        let entries: BTreeMap<String, initramfs::Entry> = archive.entries().map(|e| (e.path.clone(), e)).collect();
        assert_eq!(entries["init"].mode, 0o755);
        assert_eq!(entries["dev/console"].kind, initramfs::EntryKind::CharDevice { major: 5, minor: 1 });
        assert_eq!(entries["dev/console"].mode, 0o600);
        for dir in ["dev", "proc", "sys", "run", "tmp", "root", "newroot"] {
            assert_eq!(entries[dir].kind, initramfs::EntryKind::Directory, "{dir}");
        }
        assert_eq!(entries[&modules_db::db_path("6.1.0-test")].kind, initramfs::EntryKind::File(b"db".to_vec()));
    }

    #[test]
    fn atomic_write_leaves_no_temp_file_and_names_an_unwritable_path() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("initrd.img");
        write_atomically(&out, b"first").unwrap();
        write_atomically(&out, b"second").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let bad = dir.path().join("no/such/dir/initrd.img");
        let error = write_atomically(&bad, b"x").unwrap_err();
        assert!(error.to_string().contains("no/such/dir/initrd.img"), "{error}");
    }
}
