//! Builds the diskless initramfs for one kernel version: the static `/init`,
//! `/dev/console`, the drivers a profile selects (with their dependencies and
//! firmware), and the module database `init` reads at boot.
//!
//! [`run`] is the whole command line; `main.rs` only forwards to it.

pub mod build;
pub mod cli;
pub mod firmware;
pub mod list;
pub mod profile;

use std::fmt;
use std::path::{Path, PathBuf};

pub use build::{BuildError, BuildOptions, InitChoice, Summary, build};
pub use cli::{BuildArgs, CliError, Command};
pub use profile::Profile;

/// Everything that can make the command fail.
#[derive(Debug)]
pub enum Error {
    Cli(CliError),
    Build(BuildError),
    /// The running kernel's version could not be read (no VERSION given).
    KernelVersion {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The mkinitramfs executable's own path is unknown (for the default --init).
    CurrentExe {
        source: std::io::Error,
    },
    /// `--fleet FILE`: the file cannot be read.
    FleetRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `--fleet FILE`: the file is no fleet file of this version.
    FleetParse {
        path: PathBuf,
        source: modules_db::fleet::FleetError,
    },
    /// `list FILE`: the file cannot be read.
    ListRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `list FILE`: the file is no valid initramfs.
    ListParse {
        path: PathBuf,
        source: initramfs::ReadError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cli(error) => write!(f, "{error}"),
            Error::Build(error) => write!(f, "{error}"),
            Error::KernelVersion { path, source } => write!(
                f,
                "cannot read the running kernel's version from {}: {source}; give VERSION on the command line",
                path.display()
            ),
            Error::CurrentExe { source } => {
                write!(f, "cannot find the mkinitramfs executable to locate init beside it: {source}; pass --init PATH")
            }
            Error::FleetRead { path, source } => write!(
                f,
                "cannot read the fleet file {}: {source}; write it with diskless inventory -o {}",
                path.display(),
                path.display()
            ),
            Error::FleetParse { path, source } => write!(f, "fleet file {}: {source}", path.display()),
            Error::ListRead { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Error::ListParse { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}
impl std::error::Error for Error {}

/// The running kernel's release (`uname -r`), as procfs reports it.
pub fn running_kernel_version(osrelease: &Path) -> Result<String, Error> {
    std::fs::read_to_string(osrelease)
        .map(|text| text.trim().to_string())
        .map_err(|source| Error::KernelVersion { path: osrelease.to_path_buf(), source })
}

/// Fills in the defaults of a parsed command line.
pub fn resolve(args: BuildArgs) -> Result<BuildOptions, Error> {
    let version = match args.version {
        Some(version) => version,
        None => running_kernel_version(Path::new("/proc/sys/kernel/osrelease"))?,
    };
    let init = match args.init {
        Some(init) => InitChoice::Given(init),
        None => InitChoice::Beside { exe: std::env::current_exe().map_err(|source| Error::CurrentExe { source })? },
    };
    let output = args.output.unwrap_or_else(|| PathBuf::from(format!("/boot/initrd.img-{version}")));
    let fleet = match args.fleet {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|source| Error::FleetRead { path: path.clone(), source })?;
            let fleet = modules_db::fleet::Fleet::parse(&text)
                .map_err(|source| Error::FleetParse { path: path.clone(), source })?;
            Some((path, fleet))
        }
        None => None,
    };
    Ok(BuildOptions {
        basedir: args.basedir,
        version,
        output,
        profile: args.profile,
        add_modules: args.add_modules,
        omit_modules: args.omit_modules,
        in_archive: args.in_archive,
        fleet,
        compression: args.compression,
        init,
    })
}

/// The entries of the initramfs at `path` (what `mkinitramfs list` shows).
pub fn read_entries(path: &Path) -> Result<Vec<initramfs::Entry>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ListRead { path: path.into(), source })?;
    initramfs::read_archive(&bytes).map_err(|source| Error::ListParse { path: path.into(), source })
}

/// The kernel versions the initramfs at `path` was built for: those whose module
/// database it holds.
pub fn kernel_versions(path: &Path) -> Result<std::collections::BTreeSet<String>, Error> {
    Ok(read_entries(path)?.iter().filter_map(|e| modules_db::version_of_db_path(&e.path)).map(str::to_string).collect())
}

/// Runs the command line `args` (without the program name); returns what to print.
pub fn run(args: &[String]) -> Result<String, Error> {
    match cli::parse(args).map_err(Error::Cli)? {
        Command::Help => Ok(cli::USAGE.to_string()),
        Command::List(path) => Ok(list::format_listing(&read_entries(&path)?)),
        Command::Build(args) => {
            let options = resolve(args)?;
            Ok(build(&options).map_err(Error::Build)?.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_init_is_beside_the_executable_then_cross_built_for_the_kernel() {
        let choice = InitChoice::Beside { exe: "/src/target/x86_64-unknown-linux-gnu/debug/mkinitramfs".into() };
        let aarch64 = modules_db::elf::ARCHITECTURES[2].0;
        assert_eq!(
            choice.candidates(Some(aarch64)),
            [
                Path::new("/src/target/x86_64-unknown-linux-gnu/debug/init"),
                Path::new("/src/target/aarch64-unknown-linux-gnu/debug/init"),
                Path::new("/src/target/aarch64-unknown-linux-gnu/release/init"),
            ]
        );
        assert_eq!(choice.candidates(None), [Path::new("/src/target/x86_64-unknown-linux-gnu/debug/init")]);
        let given = InitChoice::Given("/build/init".into());
        assert_eq!(given.candidates(Some(aarch64)), [Path::new("/build/init")]);
    }

    #[test]
    fn running_kernel_version_is_trimmed_and_a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("osrelease");
        std::fs::write(&path, "6.1.0-56-amd64\n").unwrap();
        assert_eq!(running_kernel_version(&path).unwrap(), "6.1.0-56-amd64");
        let error = running_kernel_version(&dir.path().join("absent")).unwrap_err();
        assert!(error.to_string().contains("absent"), "{error}");
    }

    #[test]
    fn kernel_versions_are_read_from_the_module_database_an_archive_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = initramfs::Archive::with_mtime(0);
        archive.add_file(&modules_db::db_path("6.1.0-57-amd64"), 0o644, b"db".to_vec()).unwrap();
        archive.add_file("lib/modules/6.1.0-56-amd64/kernel/x.ko", 0o644, b"ko".to_vec()).unwrap();
        let path = dir.path().join("initrd.img");
        std::fs::write(&path, archive.to_bytes()).unwrap();
        assert_eq!(kernel_versions(&path).unwrap().into_iter().collect::<Vec<_>>(), ["6.1.0-57-amd64"]);
        std::fs::write(&path, b"not an archive").unwrap();
        assert!(kernel_versions(&path).unwrap_err().to_string().contains("is this an initramfs?"));
    }
}
