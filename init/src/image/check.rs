//! `diskless check IMAGE`: the image as the boot will see it, beyond its configuration.
//!
//! A configuration can be flawless and the image still fail to boot, or boot and
//! quietly lose per-machine files: a configured dir without its local dir (the boot
//! cannot create the tmpfs mountpoint in the read-only image), a listed file that a
//! package update replaced by a regular file (every client then shares the image's
//! copy), a listed file that no layer provides (its link dangles on every client), a
//! scratch filesystem type the boot cannot mount, an image without the modules of the
//! kernel it is served with, no `about` file. [`check_image`] collects each of these as
//! a [`Problem`] naming the path; [`Problem::fix`] says what to do; [`render`] writes
//! the report. Any problem means `diskless check` exits 1.
//!
//! The local dirs and the `local.d` lists matter in `symlink` mode only: in `overlay`
//! mode any file of a configured dir can be overridden and nothing links into a local
//! dir, so only the dirs themselves are checked there.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode as FileMode, OFlags, ResolveFlags, openat2, readlinkat, statat};
use serde::Deserialize;

use super::about::{self, ABOUT_PATH, AboutError};
use super::lists::{self, LOCAL_D, ListError};
use crate::config::{self, Config, ConfigWarning, Mode};
use crate::local::LayerKind;
use crate::local::image::open_in_image;
use crate::local::walk::entry_names;
use crate::scratch::mount_type;
use crate::scratch::probe::Kind;

/// Where the kernel modules are, relative to the image root.
pub const MODULES_DIR: &str = "lib/modules";

/// The layer groups below the layer root that hold one layer per directory (network,
/// lab, host and IP layers; DESIGN §5): the boot's own names.
const LAYER_GROUPS: [&str; 3] = [LayerKind::Network.dir(), LayerKind::Lab.dir(), LayerKind::Host.dir()];
/// The layer every machine copies first.
const BASE_LAYER: &str = LayerKind::Base.dir();

/// What is at a path of the image, when it is not what the boot needs.
#[derive(Debug)]
pub enum Found {
    Missing,
    Symlink {
        target: PathBuf,
    },
    RegularFile,
    Directory,
    /// A device, FIFO or socket.
    Special,
    Unreadable {
        error: io::Error,
    },
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Missing => f.write_str("is missing"),
            Found::Symlink { target } => write!(f, "is a symlink to {}", target.display()),
            Found::RegularFile => f.write_str("is a regular file"),
            Found::Directory => f.write_str("is a directory"),
            Found::Special => f.write_str("is a device, FIFO or socket"),
            Found::Unreadable { error } => write!(f, "cannot be looked at ({error})"),
        }
    }
}

/// One thing in the image that the boot or the clients will trip over.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The image root itself cannot be used; nothing else was checked.
    #[error("{} cannot be checked as an image: {error}", .path.display())]
    ImageRoot { path: PathBuf, error: io::Error },
    /// The configuration has something the boot ignores.
    #[error("configuration: {0}")]
    Config(ConfigWarning),
    /// A configured dir, or a directory on its path (`at`), is not a real directory.
    #[error("configured dir {}: {} {found}", .dir.display(), .at.display())]
    Dir { dir: PathBuf, at: PathBuf, found: Found },
    /// The local dir of a configured dir (`/etc/local`), or a directory on its path
    /// (`at`), is not a real directory: the boot cannot mount the local tmpfs there.
    #[error("local dir {} of {}: {} {found}", .local.display(), .dir.display(), .at.display())]
    LocalDir { dir: PathBuf, local: PathBuf, at: PathBuf, found: Found },
    /// A `local.d` list cannot be read; the listed files were not checked.
    #[error("{0}")]
    List(ListError),
    /// A listed file that is not a link into its local dir.
    #[error("listed file {}: {found}, not a link to {}", .path.display(), .expected.display())]
    NotLinked { path: PathBuf, expected: PathBuf, found: Found },
    /// A listed file that no layer has: its link dangles on every client.
    #[error("listed file {} is in no layer under {}: its link dangles on every client", .path.display(), .layers.display())]
    InNoLayer { path: PathBuf, layers: PathBuf },
    /// A layer group or layer that cannot be listed.
    #[error("layers {}: cannot be listed ({error})", .path.display())]
    LayerUnreadable { path: PathBuf, error: io::Error },
    /// A `scratch.fstypes` entry that the boot cannot mount.
    #[error("scratch.fstypes has {fstype:?}, which the boot cannot mount (it mounts {})", .supported.join(", "))]
    FsType { fstype: String, supported: Vec<&'static str> },
    /// A kernel version that is not a directory name.
    #[error("kernel {version:?} is not a kernel version (one name under /{MODULES_DIR}, as `uname -r` prints it)")]
    KernelVersion { version: String },
    /// The image has no modules for a kernel it is served with.
    #[error("kernel {version}: /{MODULES_DIR}/{version} {found}")]
    KernelModules { version: String, found: Found },
    /// The image has no kernel modules at all.
    #[error("no kernel modules: /{MODULES_DIR} {}", .found.as_ref().map_or("has no version directory".to_string(), ToString::to_string))]
    NoKernels { found: Option<Found> },
    #[error("{0}")]
    About(AboutError),
}

impl Problem {
    /// What the administrator does about it, with the paths of the image at `image_root`.
    pub fn fix(&self, image_root: &Path) -> String {
        let root = image_root.display();
        match self {
            Problem::ImageRoot { .. } => "give the root directory of the image (the one holding etc/ and usr/)".into(),
            Problem::Config(_) => {
                "correct the configuration file the warning names; until then the boot does what the warning says"
                    .into()
            }
            Problem::Dir { dir, found: Found::Missing, .. } => format!(
                "create it (mkdir -p {root}{}) or remove it from dirs in {root}/{}",
                dir.display(),
                config::TOML_PATH
            ),
            Problem::Dir { at, .. } => format!(
                "the boot mounts on it, so {root}{} must be a real directory of the image: replace it by one, or \
                 configure the directory it points to instead",
                at.display()
            ),
            Problem::LocalDir { local, found: Found::Missing, .. } => {
                format!("run `diskless setup {root}`, or mkdir {root}{}", local.display())
            }
            Problem::LocalDir { at, .. } => format!(
                "the boot mounts a tmpfs on the local dir, so {root}{} must be a real directory: replace it by an \
                 empty directory, then run `diskless setup {root}`",
                at.display()
            ),
            Problem::List(_) => format!("correct the list in {root}/{LOCAL_D}"),
            Problem::NotLinked { found: Found::Directory, path, .. } => format!(
                "a directory cannot be kept per machine by one link: `diskless remove {}` and list the files inside it",
                path.display()
            ),
            Problem::NotLinked { found: Found::RegularFile, .. } => format!(
                "a package update replaced the link: run `diskless fix {root}` (it moves the new content into the base \
                 layer and restores the link)"
            ),
            Problem::NotLinked { found: Found::Special | Found::Unreadable { .. }, path, .. } => format!(
                "look at {root}{} and replace it by the link, or `diskless remove` it from the list",
                path.display()
            ),
            Problem::NotLinked { path, .. } => format!(
                "run `diskless fix {root}` to restore the link, or `diskless remove {}` if it is not kept per machine",
                path.display()
            ),
            Problem::InNoLayer { path, layers } => format!(
                "put the file into the base layer ({root}{}/{BASE_LAYER}{}) or a network, lab or host layer, or \
                 `diskless remove {}` it from the list",
                layers.display(),
                path.display(),
                path.display()
            ),
            Problem::LayerUnreadable { path, .. } => format!("check {root}{} and its permissions", path.display()),
            Problem::FsType { supported, .. } => format!(
                "set scratch.fstypes in {root}/{} to types the boot mounts ({}) and format the scratch partitions \
                 with one of them",
                config::TOML_PATH,
                supported.join(", ")
            ),
            Problem::KernelVersion { .. } => "give the version as `uname -r` prints it on a client".into(),
            Problem::KernelModules { version, .. } => format!(
                "install that kernel's modules in the image (in `diskless chroot {root}`: apt install \
                 linux-image-{version}), or serve the image with a kernel it has"
            ),
            Problem::NoKernels { .. } => format!(
                "install a kernel package in the image (in `diskless chroot {root}`: apt install linux-image-amd64): \
                 the clients load their modules from it"
            ),
            Problem::About(AboutError::Missing { .. } | AboutError::Name { .. }) => format!(
                "write the image's name (letters, digits, '-', '_', '.') as the first line of {root}/{ABOUT_PATH}, a \
                 description below"
            ),
            Problem::About(_) => format!("make {root}/{ABOUT_PATH} a readable text file"),
        }
    }
}

/// What [`check_image`] found.
#[derive(Debug)]
pub struct ImageReport {
    pub image_root: PathBuf,
    /// The mode of the configuration: what the local dirs need depends on it.
    pub mode: Mode,
    /// The configured dirs.
    pub dirs: Vec<PathBuf>,
    /// How many listed files were checked, over all lists (symlink mode).
    pub listed: usize,
    /// The kernel versions whose modules the image has, among those checked.
    pub kernels: Vec<String>,
    /// The image's name from its about file, when it has a valid one.
    pub name: Option<String>,
    pub problems: Vec<Problem>,
}

impl ImageReport {
    /// Whether `diskless check` exits 1.
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// Checks the image at `image_root` as the boot will see it. `kernels` are the
/// versions (`uname -r`) of the kernels the image is served with; empty means any:
/// then the image must have at least one version under `/lib/modules`.
pub fn check_image(image_root: &Path, kernels: &[String]) -> ImageReport {
    let mut report = ImageReport {
        image_root: image_root.to_path_buf(),
        mode: Mode::Symlink,
        dirs: Vec::new(),
        listed: 0,
        kernels: Vec::new(),
        name: None,
        problems: Vec::new(),
    };
    match std::fs::metadata(image_root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            let error = io::Error::from(io::ErrorKind::NotADirectory);
            report.problems.push(Problem::ImageRoot { path: image_root.to_path_buf(), error });
            return report;
        }
        Err(error) => {
            report.problems.push(Problem::ImageRoot { path: image_root.to_path_buf(), error });
            return report;
        }
    }
    let (config, warnings) = config::load::<&str, &str>(image_root, &[]);
    report.mode = config.mode;
    report.dirs = config.dirs.clone();
    report.problems.extend(warnings.into_iter().map(Problem::Config));
    check_fstypes(&config, &mut report.problems);
    check_dirs(image_root, &config, &mut report.problems);
    if config.mode == Mode::Symlink {
        report.listed = check_lists(image_root, &config, &mut report.problems);
    }
    report.kernels = check_kernels(image_root, kernels, &mut report.problems);
    match about::read(image_root) {
        Ok(about) => report.name = Some(about.name),
        Err(e) => report.problems.push(Problem::About(e)),
    }
    report
}

/// The text of the image part of `diskless check`.
pub fn render(report: &ImageReport) -> String {
    let root = &report.image_root;
    let mut out = format!("# image {} as the boot will see it\n", root.display());
    let dirs: Vec<String> = report.dirs.iter().map(|d| d.display().to_string()).collect();
    out.push_str(&format!("dirs:    {} ({} mode)\n", or_none(&dirs), enum_name(&report.mode)));
    if report.mode == Mode::Symlink {
        out.push_str(&format!("listed:  {} file{}\n", report.listed, plural(report.listed)));
    }
    out.push_str(&format!("kernels: {}\n", or_none(&report.kernels)));
    out.push_str(&format!("name:    {}\n", report.name.as_deref().unwrap_or("none")));
    for problem in &report.problems {
        out.push_str(&format!("problem: {problem}\n  fix: {}\n", problem.fix(root)));
    }
    let n = report.problems.len();
    out.push_str(&format!("{n} problem{}\n", plural(n)));
    out
}

fn or_none(items: &[String]) -> String {
    if items.is_empty() { "none".into() } else { items.join(", ") }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------- scratch types

/// The `scratch.fstypes` values the boot can mount: the probe's kinds ([`Kind`]) that
/// [`mount_type`] mounts, by their names (the ones `scratch.fstypes` is compared with).
pub fn mountable_fstypes() -> Vec<&'static str> {
    kind_names().iter().copied().filter(|name| boot_mounts(name)).collect()
}

/// Whether the boot mounts a scratch disk of type `fstype`.
fn boot_mounts(fstype: &str) -> bool {
    kind_named(fstype).and_then(mount_type).is_some()
}

fn kind_named(name: &str) -> Option<Kind> {
    use serde::de::IntoDeserializer;
    Kind::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(name)).ok()
}

/// The names of every [`Kind`]. The enum lists its variants in one place only, its
/// serde derive; a deserializer that asks for an enum is handed that list
/// (`deserialize_enum`'s `variants`), so a kind added to the probe shows up here
/// without a second list to keep in step.
fn kind_names() -> &'static [&'static str] {
    use serde::de::{self, Visitor};

    struct VariantNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> de::Deserializer<'de> for VariantNames<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("only the variant names of an enum are read"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(de::Error::custom("variant names read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = Kind::deserialize(VariantNames(&mut names));
    names
}

fn check_fstypes(config: &Config, problems: &mut Vec<Problem>) {
    for fstype in &config.scratch.fstypes {
        if !boot_mounts(fstype) {
            problems.push(Problem::FsType { fstype: fstype.clone(), supported: mountable_fstypes() });
        }
    }
}

// ---------------------------------------------------------------- dirs

/// What is at `path` of the image itself, without following a symlink.
fn found_at(image_root: &Path, path: &Path) -> Found {
    let host_path = image_root.join(path.strip_prefix("/").unwrap_or(path));
    match std::fs::symlink_metadata(&host_path) {
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Found::Missing,
        Err(error) => Found::Unreadable { error },
        Ok(meta) if meta.is_dir() => Found::Directory,
        Ok(meta) if meta.is_file() => Found::RegularFile,
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_link(&host_path) {
            Ok(target) => Found::Symlink { target },
            Err(error) => Found::Unreadable { error },
        },
        Ok(_) => Found::Special,
    }
}

/// The first path on the way to `path` (absolute in the image) that is not a real
/// directory, and what is there. The boot mounts on `<root>/<path>` from outside the
/// image, where the image's absolute symlinks point elsewhere, so none may be on the way.
fn first_non_directory(image_root: &Path, path: &Path) -> Option<(PathBuf, Found)> {
    let mut at = PathBuf::from("/");
    for component in path.components() {
        let Component::Normal(name) = component else { continue };
        at.push(name);
        match found_at(image_root, &at) {
            Found::Directory => {}
            found => return Some((at, found)),
        }
    }
    None
}

fn check_dirs(image_root: &Path, config: &Config, problems: &mut Vec<Problem>) {
    for dir in &config.dirs {
        if let Some((at, found)) = first_non_directory(image_root, dir) {
            problems.push(Problem::Dir { dir: dir.clone(), at, found });
            continue;
        }
        if config.mode == Mode::Symlink {
            let local = dir.join(&config.localdir);
            if let Some((at, found)) = first_non_directory(image_root, &local) {
                problems.push(Problem::LocalDir { dir: dir.clone(), local, at, found });
            }
        }
    }
}

// ---------------------------------------------------------------- lists

/// `path` with `.` and `..` applied lexically, as an absolute path.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// What the listed file at `path` (absolute in the image) is, its directory resolved
/// inside the image as a client resolves it; `None` when it is a link to `expected`.
fn listed_file_state(image_root: &Path, path: &Path, expected: &Path) -> Option<Found> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else { return Some(Found::Missing) };
    let dir = match open_in_image(image_root, parent, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(dir) => dir,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            return Some(Found::Missing);
        }
        Err(error) => return Some(Found::Unreadable { error }),
    };
    let stat = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Some(Found::Missing),
        Err(e) => return Some(Found::Unreadable { error: e.into() }),
    };
    Some(match FileType::from_raw_mode(stat.st_mode) {
        FileType::Symlink => match readlinkat(&dir, name, Vec::new()) {
            Ok(target) => {
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                if lexical(&parent.join(&target)) == expected {
                    return None;
                }
                Found::Symlink { target }
            }
            Err(e) => Found::Unreadable { error: e.into() },
        },
        FileType::RegularFile => Found::RegularFile,
        FileType::Directory => Found::Directory,
        _ => Found::Special,
    })
}

/// Every layer of the image: the base layer and each directory of the layer groups,
/// as paths in the image, with the layer groups that cannot be listed as problems.
fn all_layers(image_root: &Path, layer_root: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let mut layers = vec![layer_root.join(BASE_LAYER)];
    for group in LAYER_GROUPS {
        let path = layer_root.join(group);
        let names = match open_in_image(image_root, &path, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(dir) => entry_names(&dir),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound) => continue,
            Err(e) => Err(e),
        };
        match names {
            Ok(names) => layers.extend(names.into_iter().map(|name| path.join(name))),
            Err(error) => problems.push(Problem::LayerUnreadable { path, error }),
        }
    }
    layers
}

/// Whether the layer at `layer` (in the image) has `path` (absolute in the image) as
/// the boot's copy sees it: the layer itself resolved inside the image, no symlink
/// followed below it (the copy does not follow them either).
fn layer_has(image_root: &Path, layer: &Path, path: &Path) -> bool {
    let Ok(layer) = open_in_image(image_root, layer, OFlags::PATH | OFlags::DIRECTORY) else { return false };
    let relative = path.strip_prefix("/").unwrap_or(path);
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    openat2(&layer, relative, flags, FileMode::empty(), ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH).is_ok()
}

/// Checks the listed files of every configured dir; returns how many there are.
fn check_lists(image_root: &Path, config: &Config, problems: &mut Vec<Problem>) -> usize {
    let lists = match lists::read_lists(image_root, &config.dirs) {
        Ok(lists) => lists,
        Err(e) => {
            problems.push(Problem::List(e));
            return 0;
        }
    };
    let listed: usize = lists.iter().map(|l| l.entries.len()).sum();
    if listed == 0 {
        return 0;
    }
    let layers = all_layers(image_root, &config.layers, problems);
    for list in &lists {
        let local = list.dir.join(&config.localdir);
        for entry in &list.entries {
            let path = list.dir.join(entry);
            let expected = local.join(entry);
            if let Some(found) = listed_file_state(image_root, &path, &expected) {
                problems.push(Problem::NotLinked { path: path.clone(), expected, found });
            }
            if !layers.iter().any(|layer| layer_has(image_root, layer, &path)) {
                problems.push(Problem::InNoLayer { path, layers: config.layers.clone() });
            }
        }
    }
    listed
}

// ---------------------------------------------------------------- kernels

/// A kernel version is one directory name.
fn is_kernel_version(version: &str) -> bool {
    !version.is_empty()
        && version != "."
        && version != ".."
        && !version.contains('/')
        && !version.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Checks `/lib/modules/VERSION` for each of `kernels`, or that there is any version
/// when `kernels` is empty; returns the versions found.
fn check_kernels(image_root: &Path, kernels: &[String], problems: &mut Vec<Problem>) -> Vec<String> {
    let modules = Path::new("/").join(MODULES_DIR);
    let mut found = Vec::new();
    if kernels.is_empty() {
        let names = match open_in_image(image_root, &modules, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(dir) => entry_names(&dir),
            Err(e) => Err(e),
        };
        match names {
            Ok(names) => {
                for name in names {
                    let is_dir = open_in_image(image_root, &modules.join(&name), OFlags::PATH | OFlags::DIRECTORY);
                    if let (Ok(_), Some(name)) = (is_dir, name.to_str()) {
                        found.push(name.to_string());
                    }
                }
                if found.is_empty() {
                    problems.push(Problem::NoKernels { found: None });
                }
            }
            Err(error) => problems.push(Problem::NoKernels { found: Some(kernel_dir_state(error)) }),
        }
        return found;
    }
    for version in kernels {
        if !is_kernel_version(version) {
            problems.push(Problem::KernelVersion { version: version.clone() });
            continue;
        }
        match open_in_image(image_root, &modules.join(version), OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => found.push(version.clone()),
            Err(error) => {
                problems.push(Problem::KernelModules { version: version.clone(), found: kernel_dir_state(error) })
            }
        }
    }
    found
}

fn kernel_dir_state(error: io::Error) -> Found {
    match error.kind() {
        io::ErrorKind::NotFound => Found::Missing,
        io::ErrorKind::NotADirectory => Found::RegularFile,
        _ => Found::Unreadable { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, path: &str, text: &str) {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// An image the boot is happy with: /etc and /var with their local dirs, fstab
    /// listed, linked and in the base layer, a kernel's modules, an about file.
    fn good_image() -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        let r = img.path();
        for dir in ["etc/local", "var/local", "lib/modules/6.1.0-18-amd64/kernel"] {
            fs::create_dir_all(r.join(dir)).unwrap();
        }
        write(r, "etc/diskless/local.d/etc", "fstab\nssh/ssh_host_ed25519_key\n");
        write(r, "etc/diskless/about", "lab-image\nDebian for lab 3\n");
        symlink("local/fstab", r.join("etc/fstab")).unwrap();
        fs::create_dir_all(r.join("etc/ssh")).unwrap();
        symlink("../local/ssh/ssh_host_ed25519_key", r.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        write(r, "diskless/base/etc/fstab", "base fstab\n");
        write(r, "diskless/hosts/lab3-12/etc/ssh/ssh_host_ed25519_key", "key\n");
        img
    }

    fn problems(report: &ImageReport) -> Vec<String> {
        report.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_prepared_image_has_no_problems() {
        let img = good_image();
        let report = check_image(img.path(), &[]);
        assert_eq!(problems(&report), Vec::<String>::new());
        assert_eq!(report.listed, 2);
        assert_eq!(report.kernels, ["6.1.0-18-amd64"]);
        assert_eq!(report.name.as_deref(), Some("lab-image"));
        let text = render(&report);
        assert!(text.contains("dirs:    /etc, /var (symlink mode)\nlisted:  2 files\n"), "{text}");
        assert!(text.ends_with("kernels: 6.1.0-18-amd64\nname:    lab-image\n0 problems\n"), "{text}");
    }

    #[test]
    fn an_image_without_etc_local_is_a_problem() {
        let img = good_image();
        fs::remove_dir(img.path().join("etc/local")).unwrap();
        let report = check_image(img.path(), &[]);
        assert!(report.has_problems());
        assert!(matches!(
            &report.problems[..],
            [Problem::LocalDir { dir, local, found: Found::Missing, .. }]
                if dir == Path::new("/etc") && local == Path::new("/etc/local")
        ));
        let text = render(&report);
        assert!(text.contains("problem: local dir /etc/local of /etc: /etc/local is missing\n"), "{text}");
        assert!(text.contains(&format!("fix: run `diskless setup {}`", img.path().display())), "{text}");
    }

    #[test]
    fn a_local_dir_that_is_a_symlink_is_a_problem() {
        let img = good_image();
        fs::remove_dir(img.path().join("var/local")).unwrap();
        symlink("/tmp", img.path().join("var/local")).unwrap();
        let report = check_image(img.path(), &[]);
        assert!(
            matches!(
                &report.problems[..],
                [Problem::LocalDir { at, found: Found::Symlink { target }, .. }]
                    if at == Path::new("/var/local") && target == Path::new("/tmp")
            ),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_configured_dir_behind_a_symlink_or_missing_is_a_problem() {
        let img = good_image();
        write(img.path(), "etc/diskless/diskless.toml", "dirs = [\"/etc\", \"/var\", \"/srv/data\", \"/opt/x\"]\n");
        symlink("/elsewhere", img.path().join("srv")).unwrap();
        let report = check_image(img.path(), &[]);
        let found: Vec<(String, String)> = report
            .problems
            .iter()
            .map(|p| match p {
                Problem::Dir { dir, at, found } => (dir.display().to_string(), format!("{} {found}", at.display())),
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(
            found,
            [
                ("/srv/data".to_string(), "/srv is a symlink to /elsewhere".to_string()),
                ("/opt/x".to_string(), "/opt is missing".to_string())
            ]
        );
        assert!(report.problems[1].fix(Path::new("/img")).starts_with("create it (mkdir -p /img/opt/x)"));
    }

    #[test]
    fn a_listed_file_replaced_by_a_regular_file_says_run_diskless_fix() {
        let img = good_image();
        fs::remove_file(img.path().join("etc/fstab")).unwrap();
        write(img.path(), "etc/fstab", "from the package\n");
        let report = check_image(img.path(), &[]);
        assert!(
            matches!(
                &report.problems[..],
                [Problem::NotLinked { path, expected, found: Found::RegularFile }]
                    if path == Path::new("/etc/fstab") && expected == Path::new("/etc/local/fstab")
            ),
            "{:?}",
            report.problems
        );
        let text = render(&report);
        assert!(text.contains("problem: listed file /etc/fstab: is a regular file, not a link to /etc/local/fstab\n"));
        assert!(text.contains(&format!("run `diskless fix {}`", img.path().display())), "{text}");
        assert!(text.ends_with("1 problem\n"), "{text}");
    }

    #[test]
    fn listed_files_missing_or_pointing_elsewhere_are_problems_and_absolute_links_are_fine() {
        let img = good_image();
        let r = img.path();
        write(r, "etc/diskless/local.d/etc", "fstab\nhostname\nmachine-id\nssh/ssh_host_ed25519_key\n");
        write(r, "diskless/base/etc/hostname", "x\n");
        write(r, "diskless/networks/10.0.0.255/etc/machine-id", "x\n");
        symlink("/etc/local/hostname", r.join("etc/hostname")).unwrap();
        fs::remove_file(r.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        symlink("../local/ssh_host_ed25519_key", r.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        let report = check_image(r, &[]);
        assert_eq!(
            problems(&report),
            [
                "listed file /etc/machine-id: is missing, not a link to /etc/local/machine-id",
                "listed file /etc/ssh/ssh_host_ed25519_key: is a symlink to ../local/ssh_host_ed25519_key, not a link \
                 to /etc/local/ssh/ssh_host_ed25519_key",
            ]
        );
    }

    #[test]
    fn a_listed_file_in_no_layer_dangles_on_every_client() {
        let img = good_image();
        fs::remove_file(img.path().join("diskless/base/etc/fstab")).unwrap();
        // The copy does not follow a symlinked directory inside a layer: neither does the check.
        fs::create_dir_all(img.path().join("diskless/labs/lab3")).unwrap();
        fs::create_dir_all(img.path().join("shared/etc")).unwrap();
        fs::write(img.path().join("shared/etc/fstab"), "x").unwrap();
        symlink("/shared/etc", img.path().join("diskless/labs/lab3/etc")).unwrap();
        let report = check_image(img.path(), &[]);
        assert_eq!(
            problems(&report),
            ["listed file /etc/fstab is in no layer under /diskless: its link dangles on every client"]
        );
        assert!(report.problems[0].fix(Path::new("/img")).contains("base layer (/img/diskless/base/etc/fstab)"));
    }

    #[test]
    fn a_layer_that_is_a_symlink_inside_the_image_counts() {
        let img = good_image();
        fs::remove_file(img.path().join("diskless/base/etc/fstab")).unwrap();
        write(img.path(), "srv/common/etc/fstab", "shared\n");
        fs::create_dir_all(img.path().join("diskless/hosts")).unwrap();
        symlink("/srv/common", img.path().join("diskless/hosts/lab3-13")).unwrap();
        assert_eq!(problems(&check_image(img.path(), &[])), Vec::<String>::new());
    }

    #[test]
    fn reiserfs_is_a_problem_naming_the_types_the_boot_mounts() {
        let img = good_image();
        write(img.path(), "etc/diskless/diskless.toml", "[scratch]\nfstypes = [\"reiserfs\", \"ext3\"]\n");
        let report = check_image(img.path(), &[]);
        assert_eq!(
            problems(&report),
            ["scratch.fstypes has \"reiserfs\", which the boot cannot mount (it mounts ext2, ext3, ext4, xfs, btrfs)"]
        );
    }

    #[test]
    fn the_mountable_types_are_those_of_the_scratch_code() {
        assert_eq!(mountable_fstypes(), ["ext2", "ext3", "ext4", "xfs", "btrfs"]);
        assert!(kind_names().contains(&"swap") && kind_names().contains(&"crypto_LUKS"), "{:?}", kind_names());
    }

    #[test]
    fn configuration_warnings_are_problems() {
        let img = good_image();
        write(img.path(), "etc/diskless/diskless.toml", "colour = 1\n");
        let report = check_image(img.path(), &[]);
        assert!(matches!(&report.problems[..], [Problem::Config(ConfigWarning::UnknownKey { .. })]));
    }

    #[test]
    fn kernels_the_image_is_served_with_need_their_modules() {
        let img = good_image();
        let kernels = ["6.1.0-18-amd64".to_string(), "6.12.0-1-amd64".to_string(), "../../etc".to_string()];
        let report = check_image(img.path(), &kernels);
        assert_eq!(report.kernels, ["6.1.0-18-amd64"]);
        assert_eq!(
            problems(&report),
            [
                "kernel 6.12.0-1-amd64: /lib/modules/6.12.0-1-amd64 is missing",
                "kernel \"../../etc\" is not a kernel version (one name under /lib/modules, as `uname -r` prints it)",
            ]
        );
    }

    #[test]
    fn modules_are_found_through_a_merged_usr_link() {
        let img = good_image();
        let r = img.path();
        fs::create_dir_all(r.join("usr")).unwrap();
        fs::rename(r.join("lib"), r.join("usr/lib")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        assert_eq!(check_image(r, &["6.1.0-18-amd64".to_string()]).kernels, ["6.1.0-18-amd64"]);
        assert_eq!(check_image(r, &[]).kernels, ["6.1.0-18-amd64"]);
    }

    #[test]
    fn an_image_without_kernel_modules_is_a_problem() {
        let img = good_image();
        fs::remove_dir_all(img.path().join("lib/modules/6.1.0-18-amd64")).unwrap();
        assert_eq!(
            problems(&check_image(img.path(), &[])),
            ["no kernel modules: /lib/modules has no version directory"]
        );
        fs::remove_dir_all(img.path().join("lib")).unwrap();
        assert_eq!(problems(&check_image(img.path(), &[])), ["no kernel modules: /lib/modules is missing"]);
    }

    #[test]
    fn the_about_file_is_checked() {
        let img = good_image();
        fs::write(img.path().join(ABOUT_PATH), "lab image\n").unwrap();
        let report = check_image(img.path(), &[]);
        assert!(matches!(&report.problems[..], [Problem::About(AboutError::Name { .. })]));
        fs::remove_file(img.path().join(ABOUT_PATH)).unwrap();
        let report = check_image(img.path(), &[]);
        assert!(matches!(&report.problems[..], [Problem::About(AboutError::Missing { .. })]));
        assert!(render(&report).contains("name:    none\n"));
    }

    #[test]
    fn overlay_mode_needs_neither_local_dirs_nor_links() {
        let img = good_image();
        write(img.path(), "etc/diskless/diskless.toml", "mode = \"overlay\"\n");
        fs::remove_dir(img.path().join("etc/local")).unwrap();
        fs::remove_file(img.path().join("etc/fstab")).unwrap();
        let report = check_image(img.path(), &[]);
        assert_eq!(problems(&report), Vec::<String>::new());
        assert!(!render(&report).contains("listed:"));
    }

    #[test]
    fn a_missing_image_is_one_problem() {
        let report = check_image(Path::new("/nonexistent/image"), &[]);
        assert!(matches!(&report.problems[..], [Problem::ImageRoot { .. }]));
    }
}
