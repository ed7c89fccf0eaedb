//! Command-line parsing. Hand-written: the grammar is small and a parser crate
//! would cost more build time than the code below.

use std::fmt;
use std::path::PathBuf;

use initramfs::Compression;

use crate::profile::{InArchive, Profile};

pub const USAGE: &str = "\
usage: mkinitramfs [-o OUT] [-b BASEDIR] [--profile netboot|netboot-all|all] [--add-modules LIST]
                   [--omit-modules LIST] [--fleet FLEETFILE] [--modules-in-archive network|all]
                   [--compress zstd|gzip|xz|none] [--init PATH] [VERSION]
       mkinitramfs list FILE

  VERSION          kernel version (default: the running kernel, uname -r)
  -o OUT           output file (default: /boot/initrd.img-VERSION)
  -b BASEDIR       root of the tree holding lib/modules/VERSION and lib/firmware (default: /)
  --profile P      netboot (default, the lab profile): NIC, virtio, NFS, overlay and scratch-disk
                   drivers, without the datacentre NICs no lab machine has (25 GbE and faster,
                   10 GbE server adapters, SR-IOV functions, cloud VM NICs: Mellanox, Intel
                   ice/i40e, Broadcom bnxt/bnx2x, Chelsio, QLogic, Solarflare, ...; the summary
                   lists them; on 6.1.0-57-amd64 8.1 MB against 13.0 MB); netboot-all: netboot
                   with every Ethernet driver (the old default); all: every module
  --add-modules    comma-separated modules (or aliases) to add, with their dependencies
  --omit-modules   comma-separated modules to leave out, with what only they pulled in
  --fleet FILE     exactly the NIC drivers of the fleet file FILE (written by `diskless inventory`
                   from what the clients sent the syslog server): the profile without its NIC
                   drivers, plus the fleet's; a machine whose NIC is not in the fleet says so at boot
  --modules-in-archive W
                   network (default): the archive holds the way to the root (the profile's or
                   fleet's NIC drivers, the buses they need, the NFS client, their firmware);
                   storage, filesystems, overlay and every other driver load once the root is
                   mounted, from the image's /lib/modules/VERSION (the image must have the
                   kernel's modules: apt-get install linux-image-VERSION in it). all: the whole
                   profile in the archive, as before, for images without the kernel's modules
  --compress C     zstd (default), gzip, xz or none
  --init PATH      static init binary to put at /init (default: `init` next to mkinitramfs)
  list FILE        list the entries of an initramfs (compressed or not, concatenated)
";

/// Everything `mkinitramfs [options] [VERSION]` was asked to do; `None` = use the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArgs {
    pub output: Option<PathBuf>,
    pub basedir: PathBuf,
    pub profile: Profile,
    pub add_modules: Vec<String>,
    pub omit_modules: Vec<String>,
    pub in_archive: InArchive,
    pub fleet: Option<PathBuf>,
    pub compression: Compression,
    pub init: Option<PathBuf>,
    pub version: Option<String>,
}

impl Default for BuildArgs {
    fn default() -> Self {
        BuildArgs {
            output: None,
            basedir: PathBuf::from("/"),
            profile: Profile::Netboot,
            add_modules: Vec::new(),
            omit_modules: Vec::new(),
            in_archive: InArchive::Network,
            fleet: None,
            compression: Compression::Zstd,
            init: None,
            version: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Build(BuildArgs),
    List(PathBuf),
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// An option that takes a value came last.
    MissingValue {
        option: String,
    },
    UnknownOption {
        option: String,
    },
    /// A second positional argument.
    ExtraArgument {
        argument: String,
    },
    BadProfile {
        value: String,
    },
    BadInArchive {
        value: String,
    },
    BadCompression {
        value: String,
    },
    /// `list` without a file.
    ListWithoutFile,
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::MissingValue { option } => write!(f, "option {option} needs a value (see --help)"),
            CliError::UnknownOption { option } => write!(f, "unknown option {option} (see --help)"),
            CliError::ExtraArgument { argument } => {
                write!(f, "unexpected argument {argument:?}: only one kernel VERSION may be given")
            }
            CliError::BadProfile { value } => write!(f, "unknown profile {value:?}: use netboot, netboot-all or all"),
            CliError::BadInArchive { value } => {
                write!(f, "unknown --modules-in-archive {value:?}: use network (the default) or all")
            }
            CliError::BadCompression { value } => {
                write!(f, "{}", initramfs::UnknownCompression(value.clone()))
            }
            CliError::ListWithoutFile => write!(f, "usage: mkinitramfs list FILE"),
        }
    }
}
impl std::error::Error for CliError {}

/// Splits a comma-separated module list, ignoring empty items and spaces.
pub fn split_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|item| !item.is_empty()).map(str::to_string).collect()
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, CliError> {
    if args.first().map(String::as_str) == Some("list") {
        return match args {
            [_, file] => Ok(Command::List(PathBuf::from(file))),
            _ => Err(CliError::ListWithoutFile),
        };
    }
    let mut build = BuildArgs::default();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if !arg.starts_with('-') || arg == "-" {
            if build.version.is_some() {
                return Err(CliError::ExtraArgument { argument: arg.clone() });
            }
            build.version = Some(arg.clone());
            continue;
        }
        // "--name=value" and "--name value" are both accepted; "-oFILE" too.
        let (option, inline) = match arg.split_once('=') {
            Some((option, value)) if arg.starts_with("--") => (option.to_string(), Some(value.to_string())),
            _ if !arg.starts_with("--") && arg.len() > 2 => (arg[..2].to_string(), Some(arg[2..].to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, CliError> {
            match &inline {
                Some(value) => Ok(value.clone()),
                None => rest.next().cloned().ok_or_else(|| CliError::MissingValue { option: option.clone() }),
            }
        };
        match option.as_str() {
            "-o" | "--output" => build.output = Some(PathBuf::from(value()?)),
            "-b" | "--basedir" => build.basedir = PathBuf::from(value()?),
            "--profile" => {
                let text = value()?;
                build.profile = text.parse().map_err(|_| CliError::BadProfile { value: text })?;
            }
            "--add-modules" => build.add_modules.extend(split_list(&value()?)),
            "--omit-modules" => build.omit_modules.extend(split_list(&value()?)),
            "--fleet" => build.fleet = Some(PathBuf::from(value()?)),
            "--modules-in-archive" => {
                let text = value()?;
                build.in_archive = text.parse().map_err(|_| CliError::BadInArchive { value: text })?;
            }
            "--compress" => {
                let text = value()?;
                build.compression = text.parse().map_err(|_| CliError::BadCompression { value: text })?;
            }
            "--init" => build.init = Some(PathBuf::from(value()?)),
            _ => return Err(CliError::UnknownOption { option: arg.clone() }),
        }
    }
    Ok(Command::Build(build))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn defaults_when_no_arguments() {
        assert_eq!(parse(&[]).unwrap(), Command::Build(BuildArgs::default()));
    }

    #[test]
    fn every_option_in_both_spellings() {
        let expected = BuildArgs {
            output: Some("/tmp/out.img".into()),
            basedir: "/srv/root".into(),
            profile: Profile::All,
            add_modules: vec!["e1000".into(), "fs-nfs4".into()],
            omit_modules: vec!["8139too".into(), "8139cp".into()],
            in_archive: InArchive::All,
            fleet: Some("/srv/fleet.toml".into()),
            compression: Compression::Xz,
            init: Some("/build/init".into()),
            version: Some("6.1.0-56-amd64".into()),
        };
        let separate = args(
            "-o /tmp/out.img -b /srv/root --profile all --add-modules e1000,fs-nfs4 \
             --omit-modules 8139too,,8139cp --modules-in-archive all --fleet /srv/fleet.toml --compress xz --init /build/init 6.1.0-56-amd64",
        );
        assert_eq!(parse(&separate).unwrap(), Command::Build(expected.clone()));
        let joined = args(
            "6.1.0-56-amd64 -o/tmp/out.img -b/srv/root --profile=all --add-modules=e1000 --add-modules=fs-nfs4 \
             --omit-modules=8139too,8139cp --modules-in-archive=all --fleet=/srv/fleet.toml --compress=xz --init=/build/init",
        );
        assert_eq!(parse(&joined).unwrap(), Command::Build(expected));
    }

    #[test]
    fn list_takes_exactly_one_file() {
        assert_eq!(parse(&args("list /boot/initrd.img")).unwrap(), Command::List("/boot/initrd.img".into()));
        assert_eq!(parse(&args("list")), Err(CliError::ListWithoutFile));
        assert_eq!(parse(&args("list a b")), Err(CliError::ListWithoutFile));
    }

    #[test]
    fn errors_name_the_offending_argument() {
        assert_eq!(parse(&args("--frobnicate")), Err(CliError::UnknownOption { option: "--frobnicate".into() }));
        assert_eq!(parse(&args("-o")), Err(CliError::MissingValue { option: "-o".into() }));
        assert_eq!(parse(&args("a b")), Err(CliError::ExtraArgument { argument: "b".into() }));
        assert_eq!(parse(&args("--profile tiny")), Err(CliError::BadProfile { value: "tiny".into() }));
        let error = parse(&args("--modules-in-archive disks")).unwrap_err();
        assert_eq!(error, CliError::BadInArchive { value: "disks".into() });
        let error = parse(&args("--compress lz4")).unwrap_err();
        assert!(error.to_string().contains("\"lz4\""), "{error}");
    }
}
