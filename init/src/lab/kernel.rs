//! `diskless server kernel`: switches the kernel an image's clients boot. In
//! `tftproot/<image>/`, `vmlinuz` and `initrd.img` are links to `vmlinuz-VERSION` and
//! `initrd.img-VERSION`; switching copies the kernel from the image's `/boot` and builds
//! the initrd when they are not there yet, then re-points both links. The links they
//! replaced become `vmlinuz.previous` and `initrd.img.previous`, so the files of the
//! previous kernel stay and switching back is the same command with its version.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Lab;
use super::render;

/// Builds the initrd for kernel `version` of the image at `basedir` into `output`
/// (mkinitramfs, given by the caller: the library does not link it).
pub type BuildInitrd<'a> = &'a dyn Fn(&Path, &str, &Path) -> Result<(), String>;

/// The names in the image's TFTP directory.
const KERNEL: &str = "vmlinuz";
const INITRD: &str = "initrd.img";
const PREVIOUS: &str = ".previous";

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("image \"{image}\": no [[image]] of the lab file has that name; use one of {known}")]
    UnknownImage { image: String, known: String },
    #[error(
        "image \"{image}\": {} does not exist; write the server files first: diskless server render --lab FILE --out {}",
        .dir.display(), .root.display()
    )]
    NotRendered { image: String, dir: PathBuf, root: PathBuf },
    #[error(
        "image \"{image}\": kernel {version} is neither at {} nor at {}; install that kernel in the image \
         (diskless image chroot, then the distribution's kernel package) or copy vmlinuz-{version} there",
        .tftp.display(), .boot.display()
    )]
    NoKernel { image: String, version: String, tftp: PathBuf, boot: PathBuf },
    #[error(
        "image \"{image}\": kernel {version} has no modules at {}, so no initrd can be built for it; install \
         the kernel's modules in the image (the package that brought vmlinuz-{version}), or build the initrd \
         elsewhere and put it at {}",
        .modules.display(), .initrd.display()
    )]
    NoModules { image: String, version: String, modules: PathBuf, initrd: PathBuf },
    #[error("image \"{image}\": building {} for kernel {version} failed: {error}", .initrd.display())]
    Build { image: String, version: String, initrd: PathBuf, error: String },
    #[error("cannot write {}: {source}; check the TFTP directory's permissions and space", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    pub image: String,
    pub dir: PathBuf,
    pub version: String,
    /// The kernel was copied from the image's `/boot` (it was not in the TFTP directory).
    pub copied_kernel: Option<PathBuf>,
    /// The initrd was built (it was not in the TFTP directory).
    pub built_initrd: bool,
    /// The version the links named before, now behind the `.previous` links; `None`
    /// when there were no links, or they already named `version` (then `.previous`
    /// is left as it was).
    pub previous: Option<String>,
    /// The version the lab file serves the image with, when it is another one.
    pub lab_version: Option<String>,
}

/// Switches image `image_name`'s clients to kernel `version` under the TFTP root of
/// `root` (the directory render wrote).
pub fn switch(
    lab: &Lab,
    root: &Path,
    image_name: &str,
    version: &str,
    build: BuildInitrd,
) -> Result<Switched, KernelError> {
    let image = lab.image(image_name).ok_or_else(|| KernelError::UnknownImage {
        image: image_name.into(),
        known: super::names(lab.images().iter().map(|i| &i.name)),
    })?;
    let name = || image.name.clone();
    let dir = root.join("tftproot").join(&image.name);
    if !dir.is_dir() {
        return Err(KernelError::NotRendered { image: name(), dir, root: root.into() });
    }
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KernelError::Write { path, source }
    };

    let kernel = format!("{KERNEL}-{version}");
    let mut copied_kernel = None;
    if !dir.join(&kernel).is_file() {
        let boot = image.export.join("boot").join(&kernel);
        let bytes = std::fs::read(&boot).map_err(|_| KernelError::NoKernel {
            image: name(),
            version: version.into(),
            tftp: dir.join(&kernel),
            boot: boot.clone(),
        })?;
        render::write_file(&dir.join(&kernel), &bytes).map_err(write(&dir.join(&kernel)))?;
        copied_kernel = Some(boot);
    }

    let initrd = dir.join(format!("{INITRD}-{version}"));
    let built_initrd = !initrd.is_file();
    if built_initrd {
        let modules = image.export.join("lib/modules").join(version);
        if !modules.is_dir() {
            return Err(KernelError::NoModules { image: name(), version: version.into(), modules, initrd });
        }
        build(&image.export, version, &initrd).map_err(|error| KernelError::Build {
            image: name(),
            version: version.into(),
            initrd: initrd.clone(),
            error,
        })?;
        // TFTP servers send only world-readable files.
        std::fs::set_permissions(&initrd, std::fs::Permissions::from_mode(0o644)).map_err(write(&initrd))?;
    }

    let previous = version_of(&dir.join(KERNEL)).filter(|old| old != version);
    if previous.is_some() {
        // The rollback is recorded before anything is switched.
        for name in [KERNEL, INITRD] {
            if let Ok(old) = std::fs::read_link(dir.join(name)) {
                let link = dir.join(format!("{name}{PREVIOUS}"));
                render::link(&link, &old.to_string_lossy()).map_err(write(&link))?;
            }
        }
    }
    // The initrd first: a client that reads vmlinuz between the two renames still
    // boots the old pair, as pxelinux and GRUB fetch the kernel before the initrd.
    for (name, target) in [(INITRD, format!("{INITRD}-{version}")), (KERNEL, kernel)] {
        let link = dir.join(name);
        render::link(&link, &target).map_err(write(&link))?;
    }

    let lab_version = render::kernel_version(image).ok().filter(|v| v != version);
    Ok(Switched { image: name(), dir, version: version.into(), copied_kernel, built_initrd, previous, lab_version })
}

/// The version `vmlinuz` links to (`vmlinuz-VERSION`), if it is such a link.
fn version_of(link: &Path) -> Option<String> {
    let target = std::fs::read_link(link).ok()?;
    Some(target.to_str()?.strip_prefix(&format!("{KERNEL}-"))?.to_string())
}

/// What `diskless server kernel` prints; `command` is how to run it again (for the
/// rollback line), without the image and version.
pub fn render_switched(s: &Switched, command: &str) -> String {
    let mut text = String::new();
    if let Some(boot) = &s.copied_kernel {
        let _ =
            writeln!(text, "copied {} to {}", boot.display(), s.dir.join(format!("{KERNEL}-{}", s.version)).display());
    }
    if s.built_initrd {
        let _ = writeln!(text, "built {} with mkinitramfs", s.dir.join(format!("{INITRD}-{}", s.version)).display());
    }
    let _ = writeln!(text, "image \"{}\": {KERNEL} -> {KERNEL}-{v}, {INITRD} -> {INITRD}-{v}", s.image, v = s.version);
    if let Some(old) = &s.previous {
        let _ = writeln!(
            text,
            "previous: {KERNEL}{PREVIOUS} -> {KERNEL}-{old}, {INITRD}{PREVIOUS} -> {INITRD}-{old}; \
             switch back with: {command} {} {old}",
            s.image
        );
    }
    if let Some(lab) = &s.lab_version {
        let _ = writeln!(
            text,
            "note: the lab file serves image \"{}\" with kernel {lab}, so render would switch back and check \
             complain; set kernel = \"{}\" in its [[image]]",
            s.image, s.version
        );
    }
    text
}
