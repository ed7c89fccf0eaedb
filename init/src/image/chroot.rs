//! `diskless chroot IMAGE [-- CMD]`: work inside an image from a maintenance machine
//! (the HOWTO's "Script to Mount Images", and the prompt its `/root/.bashrc` set).
//!
//! The command runs chrooted into the image with the HOWTO's maintenance mounts:
//! `/dev` and `/sys` bound from the host (with their submounts: `/dev/pts` for
//! terminals), a new `/proc`, and the image's `/tmp` and `/var/tmp` bound from a
//! per-image cache directory (`<cache>/<name>/tmp`, `<cache>/<name>/var-tmp`), so
//! package builds and downloads do not fill the exported image. Without a command it
//! is the image's shell (`/bin/bash`, else `/bin/sh`) with the prompt
//! `(NAME) \w# `, NAME from the first line of the image's about file.
//!
//! The HOWTO unmounted by hand afterwards; a killed shell left the mounts behind, and
//! with them the host's `/dev` inside the exported image. Here the mounts are made in
//! a private mount namespace that only the command's processes live in, so the
//! kernel removes all of them when the last of those processes ends, however it ends
//! (exit, SIGKILL, a crash of `diskless` itself): there is no cleanup code to skip.
//! The host never sees the mounts at all.
//!
//! [`plan`] computes what will be done (data, [`render`] shows it); [`run`] does it;
//! [`chroot`] is both.

use std::ffi::{CString, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;

use rustix::fs::{CWD, Mode as FileMode, OFlags, ResolveFlags, openat, openat2};
use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_bind, mount_bind_recursive, mount_change};
use rustix::process::{chdir, chroot as chroot_call, fchdir};
use rustix::thread::{UnshareFlags, unshare_unsafe};

use super::about::{self, AboutError, NameError, check_name};
use crate::local::image::open_in_image;

/// The shells tried, in order, when no command is given.
pub const SHELLS: [&str; 2] = ["/bin/bash", "/bin/sh"];

/// `PATH` inside the image: the host's `PATH` names the host's directories.
pub const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How often to retry when the kernel reports a concurrent rename during resolution.
const EAGAIN_RETRIES: usize = 8;

/// What is mounted on a maintenance mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A directory of the host, bound with its submounts when `recursive`.
    Bind { from: PathBuf, recursive: bool },
    /// A new procfs.
    Proc,
}

/// One maintenance mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceMount {
    /// The mount point, absolute in the image (`/dev`).
    pub target: PathBuf,
    pub source: MountSource,
}

/// What [`run`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChrootPlan {
    /// The image root, canonical.
    pub image_root: PathBuf,
    /// The image's name: the about file's first line, else the image directory's name.
    pub name: String,
    /// The per-image cache directory (`<cache>/<name>`).
    pub cache: PathBuf,
    /// Cache directories to create with mode 1777 (the image's `/tmp` and `/var/tmp`).
    pub tmp_dirs: Vec<PathBuf>,
    /// In mount order.
    pub mounts: Vec<MaintenanceMount>,
    /// The program, as found inside the image (`/bin/bash`) or as given.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The environment set on top of ours (`PATH`, `PS1`, `debian_chroot`).
    pub env: Vec<(String, String)>,
}

/// The step of the chroot that failed.
#[derive(Debug, thiserror::Error)]
pub enum ChrootError {
    #[error("{} cannot be used as an image: {source}: give the root directory of the image", .path.display())]
    ImageRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the image's about file cannot be used for its name: {source}")]
    About {
        #[source]
        source: AboutError,
    },
    #[error(
        "{} has no about file and its directory name {name:?} {reason}: write the image's name as the first line \
         of {}/{}",
        .image_root.display(),
        .image_root.display(),
        about::ABOUT_PATH
    )]
    NoName {
        image_root: PathBuf,
        name: String,
        #[source]
        reason: NameError,
    },
    #[error("{} has neither {} nor {}: name the command to run after --", .image_root.display(), SHELLS[0], SHELLS[1])]
    NoShell { image_root: PathBuf },
    #[error(
        "{}{} cannot be a mount point ({source}): create the directory in the image (mkdir -p {}{})",
        .image_root.display(), .target.display(), .image_root.display(), .target.display()
    )]
    MountPoint {
        image_root: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating the cache directory {}: {source}: give a cache directory root can write", .path.display())]
    CacheDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the cache directory {} is not a directory (a symlink or a file): remove it", .path.display())]
    CacheNotADirectory { path: PathBuf },
    #[error("{} contains a NUL byte, which no path can", .path.display())]
    NulInPath { path: PathBuf },
    #[error("creating the socket that reports a failed setup step: {source}")]
    ReportSocket {
        #[source]
        source: io::Error,
    },
    #[error("creating a private mount namespace (unshare CLONE_NEWNS): {source}: run as root")]
    Namespace {
        #[source]
        source: io::Error,
    },
    #[error("making the mounts of the new namespace private: {source}")]
    Private {
        #[source]
        source: io::Error,
    },
    #[error("opening the image {} in the new namespace: {source}", .image_root.display())]
    OpenImage {
        image_root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mounting {from} on {}{}: {source}", .image_root.display(), .target.display())]
    Mount {
        from: String,
        image_root: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("chroot into {}: {source}: run as root", .image_root.display())]
    Chroot {
        image_root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running {program:?} inside {}: {source} (is it in the image? PATH is {CHROOT_PATH})", .image_root.display())]
    Exec {
        program: OsString,
        image_root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for {program:?}: {source}")]
    Wait {
        program: OsString,
        #[source]
        source: io::Error,
    },
}

/// The prompt of the image named `name`: `(lab-image) \w# `.
pub fn prompt(name: &str) -> String {
    format!("({name}) \\w# ")
}

/// Plans a chroot into the image at `image_root` running `command` (empty: the
/// image's shell), with the image's `/tmp` and `/var/tmp` under `cache_dir`. Reads
/// the image (about file, shell) but changes nothing.
pub fn plan(image_root: &Path, cache_dir: &Path, command: &[OsString]) -> Result<ChrootPlan, ChrootError> {
    let image_root_error = |source| ChrootError::ImageRoot { path: image_root.to_path_buf(), source };
    let root = std::fs::canonicalize(image_root).map_err(image_root_error)?;
    if !root.is_dir() {
        return Err(image_root_error(io::Error::from(io::ErrorKind::NotADirectory)));
    }
    let name = image_name(&root)?;
    let (program, args) = match command.split_first() {
        Some((program, args)) => (program.clone(), args.to_vec()),
        None => {
            let shell = SHELLS
                .iter()
                .find(|shell| open_in_image(&root, Path::new(shell), OFlags::PATH).is_ok())
                .ok_or_else(|| ChrootError::NoShell { image_root: root.clone() })?;
            (OsString::from(shell), Vec::new())
        }
    };
    let cache = cache_dir.join(&name);
    let tmp = cache.join("tmp");
    let var_tmp = cache.join("var-tmp");
    let bind = |from: &Path, recursive| MountSource::Bind { from: from.to_path_buf(), recursive };
    let mounts = vec![
        MaintenanceMount { target: "/dev".into(), source: bind(Path::new("/dev"), true) },
        MaintenanceMount { target: "/proc".into(), source: MountSource::Proc },
        MaintenanceMount { target: "/sys".into(), source: bind(Path::new("/sys"), true) },
        MaintenanceMount { target: "/tmp".into(), source: bind(&tmp, false) },
        MaintenanceMount { target: "/var/tmp".into(), source: bind(&var_tmp, false) },
    ];
    let env = vec![
        ("PATH".to_string(), CHROOT_PATH.to_string()),
        ("PS1".to_string(), prompt(&name)),
        // Debian's bashrc replaces PS1 but shows this variable in its prompt.
        ("debian_chroot".to_string(), name.clone()),
    ];
    Ok(ChrootPlan { image_root: root, name, cache, tmp_dirs: vec![tmp, var_tmp], mounts, program, args, env })
}

/// The about file's name; without an about file, the image directory's name.
fn image_name(root: &Path) -> Result<String, ChrootError> {
    match about::read(root) {
        Ok(about) => Ok(about.name),
        Err(AboutError::Missing { .. }) => {
            let name = root.file_name().unwrap_or_default().to_string_lossy().into_owned();
            check_name(&name).map_err(|reason| ChrootError::NoName {
                image_root: root.to_path_buf(),
                name: name.clone(),
                reason,
            })?;
            Ok(name)
        }
        Err(source) => Err(ChrootError::About { source }),
    }
}

impl fmt::Display for MaintenanceMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            MountSource::Bind { from, recursive: true } => {
                write!(f, "--rbind {} {}", from.display(), self.target.display())
            }
            MountSource::Bind { from, recursive: false } => {
                write!(f, "--bind {} {}", from.display(), self.target.display())
            }
            MountSource::Proc => write!(f, "-t proc proc {}", self.target.display()),
        }
    }
}

/// The plan as the commands an administrator would type (mount targets in the image).
pub fn render(plan: &ChrootPlan) -> String {
    let mut out =
        format!("# chroot into {} ({}), in a private mount namespace\n", plan.image_root.display(), plan.name);
    for dir in &plan.tmp_dirs {
        out.push_str(&format!("mkdir -p -m 1777 {}\n", dir.display()));
    }
    for mount in &plan.mounts {
        out.push_str(&format!("mount {mount}\n"));
    }
    let mut command = vec![plan.program.to_string_lossy().into_owned()];
    command.extend(plan.args.iter().map(|a| a.to_string_lossy().into_owned()));
    let env: Vec<String> = plan.env.iter().map(|(k, v)| format!("{k}='{v}'")).collect();
    out.push_str(&format!("chroot {} env {} {}\n", plan.image_root.display(), env.join(" "), command.join(" ")));
    out
}

/// Plans and runs: see [`plan`] and [`run`].
pub fn chroot(image_root: &Path, cache_dir: &Path, command: &[OsString]) -> Result<ExitStatus, ChrootError> {
    run(&plan(image_root, cache_dir, command)?)
}

/// Creates the cache directories, then runs the plan's command in a child inside its
/// own mount namespace with the maintenance mounts, chrooted into the image; returns
/// its exit status. Needs root. While the command runs, this process ignores SIGINT
/// and SIGQUIT (as `system(3)` does): they are meant for the command on the terminal.
pub fn run(plan: &ChrootPlan) -> Result<ExitStatus, ChrootError> {
    make_cache_dir(&plan.cache, None)?;
    for dir in &plan.tmp_dirs {
        make_cache_dir(dir, Some(0o1777))?;
    }
    // Checked here for a clear message; the child resolves them again in its namespace.
    for mount in &plan.mounts {
        open_in_image(&plan.image_root, &mount.target, OFlags::PATH | OFlags::DIRECTORY).map_err(|source| {
            ChrootError::MountPoint { image_root: plan.image_root.clone(), target: mount.target.clone(), source }
        })?;
    }
    let setup = ChildSetup::new(plan)?;
    let (report_read, report_write) = UnixStream::pair().map_err(|source| ChrootError::ReportSocket { source })?;
    let mut command = Command::new(&plan.program);
    command.args(&plan.args).envs(plan.env.iter().map(|(k, v)| (k, v)));
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe work is sound: it makes system calls (unshare, mount,
    // openat2, fchdir, chroot, write) on C strings prepared in `ChildSetup::new` and
    // on stack buffers; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || setup.enter(&report_write));
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(source) => {
            return Err(failed_step(plan, &report_read).unwrap_or(ChrootError::Exec {
                program: plan.program.clone(),
                image_root: plan.image_root.clone(),
                source,
            }));
        }
    };
    drop(command);
    let _interrupts = IgnoredInterrupts::new();
    child.wait().map_err(|source| ChrootError::Wait { program: plan.program.clone(), source })
}

/// `mkdir -p`, then `mode` (whatever the umask) when given; refuses a symlink or file.
fn make_cache_dir(path: &Path, mode: Option<u32>) -> Result<(), ChrootError> {
    let made = std::fs::DirBuilder::new().recursive(true).mode(0o755).create(path);
    made.map_err(|source| ChrootError::CacheDir { path: path.to_path_buf(), source })?;
    let meta =
        std::fs::symlink_metadata(path).map_err(|source| ChrootError::CacheDir { path: path.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(ChrootError::CacheNotADirectory { path: path.to_path_buf() });
    }
    if let Some(mode) = mode.filter(|mode| meta.permissions().mode() & 0o7777 != *mode) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|source| ChrootError::CacheDir { path: path.to_path_buf(), source })?;
    }
    Ok(())
}

// ---------------------------------------------------------------- in the child

/// A step of [`ChildSetup::enter`], as reported to the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Unshare = 1,
    Private,
    OpenImage,
    OpenMountPoint,
    Mount,
    Chroot,
}

const STEPS: [Step; 6] =
    [Step::Unshare, Step::Private, Step::OpenImage, Step::OpenMountPoint, Step::Mount, Step::Chroot];

/// A failed step: the step, the index of the mount, the errno.
const REPORT_BYTES: usize = 6;

enum ChildSource {
    Bind { from: CString, recursive: bool },
    Proc,
}

/// The plan's paths as C strings, made before the fork.
struct ChildSetup {
    image_root: CString,
    /// Mount points relative to the image root, with what goes on them.
    mounts: Vec<(CString, ChildSource)>,
}

fn c_path(path: &Path) -> Result<CString, ChrootError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| ChrootError::NulInPath { path: path.to_path_buf() })
}

impl ChildSetup {
    fn new(plan: &ChrootPlan) -> Result<ChildSetup, ChrootError> {
        let mut mounts = Vec::with_capacity(plan.mounts.len());
        for mount in &plan.mounts {
            let relative = mount.target.strip_prefix("/").unwrap_or(&mount.target);
            let source = match &mount.source {
                MountSource::Bind { from, recursive } => {
                    ChildSource::Bind { from: c_path(from)?, recursive: *recursive }
                }
                MountSource::Proc => ChildSource::Proc,
            };
            mounts.push((c_path(relative)?, source));
        }
        Ok(ChildSetup { image_root: c_path(&plan.image_root)?, mounts })
    }

    /// In the forked child: a private mount namespace, the mounts, the chroot. A
    /// failure is written to `report` (step, mount index, errno) for the parent.
    fn enter(&self, report: &UnixStream) -> io::Result<()> {
        self.steps().map_err(|(step, index, errno)| {
            let code = errno.raw_os_error();
            let mut bytes = [0u8; REPORT_BYTES];
            bytes[0] = step as u8;
            bytes[1] = index;
            bytes[2..].copy_from_slice(&code.to_le_bytes());
            let _ = (&*report).write(&bytes);
            io::Error::from_raw_os_error(code)
        })
    }

    fn steps(&self) -> Result<(), (Step, u8, rustix::io::Errno)> {
        let at = |step| move |errno| (step, 0, errno);
        // SAFETY: NEWNS only gives this (single-threaded, forked) process its own
        // copy of the mount table; no file descriptor table is unshared.
        unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.map_err(at(Step::Unshare))?;
        // The copy keeps the host's propagation: on a shared `/` (systemd's default)
        // every mount below would also appear on the host, and stay there after we end.
        // Private first, and the namespace's mounts are ours alone and die with it.
        mount_change(c"/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC).map_err(at(Step::Private))?;
        // Opened in the new namespace: mount(2) refuses targets of another namespace.
        let root =
            openat(CWD, &*self.image_root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, FileMode::empty())
                .map_err(at(Step::OpenImage))?;
        for (index, (target, source)) in self.mounts.iter().enumerate() {
            let index = index as u8;
            // Resolved as the image sees it, so a symlink in the image cannot aim a
            // mount at the host; the mount then goes on the resolved directory through
            // the working directory.
            let dir = open_beneath(&root, target).map_err(|errno| (Step::OpenMountPoint, index, errno))?;
            let mounted = fchdir(&dir).and_then(|()| match source {
                ChildSource::Bind { from, recursive: true } => mount_bind_recursive(&**from, c"."),
                ChildSource::Bind { from, recursive: false } => mount_bind(&**from, c"."),
                ChildSource::Proc => {
                    mount(c"proc", c".", c"proc", MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC, None)
                }
            });
            mounted.map_err(|errno| (Step::Mount, index, errno))?;
        }
        fchdir(&root).and_then(|()| chroot_call(c".")).and_then(|()| chdir(c"/")).map_err(at(Step::Chroot))
    }
}

fn open_beneath(root: &impl std::os::fd::AsFd, path: &std::ffi::CStr) -> rustix::io::Result<std::os::fd::OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut attempt = 0;
    loop {
        match openat2(root, path, flags, FileMode::empty(), ResolveFlags::IN_ROOT) {
            Err(rustix::io::Errno::AGAIN) if attempt < EAGAIN_RETRIES => attempt += 1,
            result => return result,
        }
    }
}

/// The error of the step the child reported, if it reported one (else exec failed).
fn failed_step(plan: &ChrootPlan, report: &UnixStream) -> Option<ChrootError> {
    let mut bytes = [0u8; REPORT_BYTES];
    report.set_nonblocking(true).ok()?;
    (&*report).read_exact(&mut bytes).ok()?;
    let step = *STEPS.iter().find(|s| **s as u8 == bytes[0])?;
    let mount = plan.mounts.get(usize::from(bytes[1]));
    let source = io::Error::from_raw_os_error(i32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]));
    let image_root = plan.image_root.clone();
    Some(match step {
        Step::Unshare => ChrootError::Namespace { source },
        Step::Private => ChrootError::Private { source },
        Step::OpenImage => ChrootError::OpenImage { image_root, source },
        Step::OpenMountPoint => ChrootError::MountPoint { image_root, target: mount?.target.clone(), source },
        Step::Mount => {
            let mount = mount?;
            let from = match &mount.source {
                MountSource::Bind { from, .. } => from.display().to_string(),
                MountSource::Proc => "a new proc".to_string(),
            };
            ChrootError::Mount { from, image_root, target: mount.target.clone(), source }
        }
        Step::Chroot => ChrootError::Chroot { image_root, source },
    })
}

// ---------------------------------------------------------------- signals

/// The signals a terminal sends to its whole foreground process group.
const INTERRUPTS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGQUIT];

/// How many [`IgnoredInterrupts`] are alive and the dispositions to restore after the last.
struct Ignoring {
    count: usize,
    saved: Vec<(libc::c_int, libc::sigaction)>,
}

static IGNORING: Mutex<Ignoring> = Mutex::new(Ignoring { count: 0, saved: Vec::new() });

/// While alive, SIGINT and SIGQUIT are ignored: a Ctrl-C at the chrooted shell must
/// not end `diskless` and leave the shell behind on the terminal. Counted, so that
/// concurrent chroots restore the dispositions only after the last one.
struct IgnoredInterrupts;

impl IgnoredInterrupts {
    fn new() -> IgnoredInterrupts {
        let mut ignoring = IGNORING.lock().unwrap_or_else(|e| e.into_inner());
        if ignoring.count == 0 {
            ignoring.saved.clear();
            for signal in INTERRUPTS {
                // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask).
                let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
                ignore.sa_sigaction = libc::SIG_IGN;
                // SAFETY: as above.
                let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
                // SAFETY: both pointers are to valid sigaction values on our stack.
                if unsafe { libc::sigaction(signal, &ignore, &mut old) } == 0 {
                    ignoring.saved.push((signal, old));
                }
            }
        }
        ignoring.count += 1;
        IgnoredInterrupts
    }
}

impl Drop for IgnoredInterrupts {
    fn drop(&mut self) {
        let mut ignoring = IGNORING.lock().unwrap_or_else(|e| e.into_inner());
        ignoring.count -= 1;
        if ignoring.count == 0 {
            for (signal, old) in ignoring.saved.drain(..) {
                // SAFETY: `old` is the disposition sigaction returned for this signal.
                unsafe { libc::sigaction(signal, &old, std::ptr::null_mut()) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs;

    fn image(about: Option<&str>, shells: &[&str]) -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        for dir in ["bin", "dev", "proc", "sys", "tmp", "var/tmp", "etc/diskless"] {
            fs::create_dir_all(img.path().join(dir)).unwrap();
        }
        if let Some(text) = about {
            fs::write(img.path().join(about::ABOUT_PATH), text).unwrap();
        }
        for shell in shells {
            fs::write(img.path().join(shell.trim_start_matches('/')), "").unwrap();
        }
        img
    }

    #[test]
    fn the_plan_mounts_dev_proc_sys_and_the_cache_tmp_dirs_with_the_about_prompt() {
        let img = image(Some("lab-image\nthe lab\n"), &["/bin/sh", "/bin/bash"]);
        let plan = plan(img.path(), Path::new("/var/cache/diskless"), &[]).unwrap();
        assert_eq!(plan.name, "lab-image");
        assert_eq!(plan.program, "/bin/bash");
        assert_eq!(plan.cache, Path::new("/var/cache/diskless/lab-image"));
        assert!(plan.env.contains(&("PS1".into(), "(lab-image) \\w# ".into())), "{:?}", plan.env);
        let root = plan.image_root.display().to_string();
        assert_eq!(
            render(&plan),
            format!(
                "# chroot into {root} (lab-image), in a private mount namespace\n\
                 mkdir -p -m 1777 /var/cache/diskless/lab-image/tmp\n\
                 mkdir -p -m 1777 /var/cache/diskless/lab-image/var-tmp\n\
                 mount --rbind /dev /dev\n\
                 mount -t proc proc /proc\n\
                 mount --rbind /sys /sys\n\
                 mount --bind /var/cache/diskless/lab-image/tmp /tmp\n\
                 mount --bind /var/cache/diskless/lab-image/var-tmp /var/tmp\n\
                 chroot {root} env PATH='{CHROOT_PATH}' PS1='(lab-image) \\w# ' debian_chroot='lab-image' /bin/bash\n"
            )
        );
    }

    #[test]
    fn without_bash_the_shell_is_sh_and_a_command_is_run_as_given() {
        let img = image(Some("x\n"), &["/bin/sh"]);
        assert_eq!(plan(img.path(), Path::new("/c"), &[]).unwrap().program, "/bin/sh");
        let command = [OsString::from("apt-get"), OsString::from("upgrade")];
        let plan = plan(img.path(), Path::new("/c"), &command).unwrap();
        assert_eq!((plan.program.as_os_str(), &plan.args[..]), (OsStr::new("apt-get"), &command[1..]));
    }

    #[test]
    fn an_image_without_a_shell_asks_for_a_command() {
        let img = image(Some("x\n"), &[]);
        let e = plan(img.path(), Path::new("/c"), &[]).unwrap_err();
        assert!(matches!(e, ChrootError::NoShell { .. }), "{e}");
        assert!(e.to_string().ends_with("name the command to run after --"), "{e}");
    }

    #[test]
    fn without_an_about_file_the_directory_names_the_image() {
        let outer = tempfile::tempdir().unwrap();
        let img = outer.path().join("gentoo-2024");
        fs::create_dir(&img).unwrap();
        fs::create_dir(img.join("bin")).unwrap();
        fs::write(img.join("bin/sh"), "").unwrap();
        assert_eq!(plan(&img, Path::new("/c"), &[]).unwrap().name, "gentoo-2024");
        let bad = outer.path().join("my image");
        fs::create_dir(&bad).unwrap();
        let e = plan(&bad, Path::new("/c"), &[]).unwrap_err();
        assert!(matches!(e, ChrootError::NoName { reason: NameError::Character { character: ' ' }, .. }), "{e}");
    }

    #[test]
    fn an_invalid_about_name_is_refused() {
        let img = image(Some("lab image\n"), &["/bin/sh"]);
        let e = plan(img.path(), Path::new("/c"), &[]).unwrap_err();
        assert!(matches!(e, ChrootError::About { source: AboutError::Name { .. } }), "{e}");
    }

    #[test]
    fn a_missing_image_is_named() {
        let e = plan(Path::new("/nonexistent/img"), Path::new("/c"), &[]).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/img cannot be used as an image"), "{e}");
    }

    #[test]
    fn cache_dirs_get_mode_1777_and_a_symlink_is_refused() {
        let cache = tempfile::tempdir().unwrap();
        let tmp = cache.path().join("img/tmp");
        make_cache_dir(&tmp, Some(0o1777)).unwrap();
        assert_eq!(fs::symlink_metadata(&tmp).unwrap().permissions().mode() & 0o7777, 0o1777);
        make_cache_dir(&tmp, Some(0o1777)).unwrap();
        std::os::unix::fs::symlink("/etc", cache.path().join("img/var-tmp")).unwrap();
        let e = make_cache_dir(&cache.path().join("img/var-tmp"), Some(0o1777)).unwrap_err();
        assert!(matches!(e, ChrootError::CacheNotADirectory { .. }), "{e}");
    }
}
