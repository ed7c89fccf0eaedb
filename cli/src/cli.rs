//! The command line of `diskless`, defined once with clap: the parser, the `--help`
//! of every subcommand, the man page ([`man_page`]) and the shell completions
//! ([`completion`]) all derive from [`Cli`], so they cannot disagree.
//!
//! # Adding a subcommand
//!
//! 1. A variant of [`Command`] with `#[command(verbatim_doc_comment)]`. Its doc
//!    comment is the help, wrapped by hand at 80 columns: the first paragraph is the
//!    one line of `diskless --help`, the whole the long help of `diskless NAME
//!    --help` and the man page's part. Its arguments are fields, or a struct deriving
//!    [`clap::Args`] when there are several; each field's doc comment is its help.
//! 2. A match arm in [`run`]: call the library function (the logic lives in
//!    `diskless::image` and friends, computed as a report), write the rendered report
//!    to `out` and return [`EXIT_OK`], or [`EXIT_PROBLEMS`] when the report found
//!    problems. If the library function has its own error enum, give [`AdminError`]
//!    a `#[from]` variant for it; such an error exits [`EXIT_PROBLEMS`].
//!
//! A rule clap cannot express (one argument restricting another's value, as `plan`'s
//! subnet) is a method of the arguments struct returning a typed error, called from
//! [`Command::check_arguments`] (so that it is reported as a wrong command line,
//! with the usage, exit [`EXIT_USAGE`]) and again where [`run`] needs the result;
//! its error gets an [`AdminError`] variant that [`AdminError::exit_code`] maps to
//! [`EXIT_USAGE`].
//!
//! The man page, the completions and the tests that both name every subcommand pick
//! a new variant up by themselves.

use std::ffi::OsString;
use std::io::Write;
use std::net::{AddrParseError, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use clap_mangen::Man;

use diskless::admin::{
    AdminError, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, SubnetError, broadcast_of, check, plan, render_check, render_plan,
    render_status, status,
};
use diskless::image::{self, fix, setup};
use diskless::inventory;
use diskless::lab::Lab;
use diskless::lab::check as lab_check;
use diskless::lab::render as lab_render;
use diskless::local::LayerInput;
use diskless::os::RealOs;
use diskless::relayer;
use diskless::text::escape_lines;

/// The exit codes, shown by `--help` and in the man page.
fn exit_codes() -> String {
    format!(
        "{EXIT_OK} fine, {EXIT_PROBLEMS} problems found (warnings) or an input cannot be read,\n\
         {EXIT_USAGE} a wrong command line."
    )
}

/// The `diskless` command line.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "diskless",
    version,
    about = "Inspect diskless images and the clients booted from them",
    long_about = "Inspect diskless images and the clients booted from them.\n\n\
        An image is the root file system one architecture's clients mount read-only\n\
        over NFS; the files of each machine come from the layers under its /diskless.\n\
        diskless reads an image without mounting or changing anything, and reads the\n\
        record a client's boot left in /run.\n\n\
        diskless generate man|bash|zsh|fish prints the manual page or a shell completion.",
    after_help = format!("Exit status: {}", exit_codes()),
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. Their long help is wrapped by hand (`verbatim_doc_comment`):
/// clap wraps only with its `wrap_help` feature, whose terminal_size dependency would
/// change the features of the rustix that the static `init` links.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Check the image as the boot will see it and list every problem with its fix
    ///
    /// Loads IMAGE_ROOT/etc/diskless/diskless.toml (or the legacy diskless.conf) exactly
    /// as the boot does, without a kernel command line, and prints the effective
    /// configuration and every warning. Then checks the image: every configured dir
    /// has its local dir, every listed file (local.d) is a link into it and is in some
    /// layer, the scratch filesystem types are ones the boot mounts, the image has
    /// /lib/modules for the kernels it is served with (--kernel, repeatable; without
    /// it any one version), and the about file names the image. Exits 1 when there is
    /// a warning or a problem.
    #[command(verbatim_doc_comment)]
    Check {
        /// The image: the directory exported over NFS as the clients' root
        #[arg(default_value = "/")]
        image_root: PathBuf,
        /// A kernel version (`uname -r`) the image is served with
        #[arg(long = "kernel", value_name = "VERSION")]
        kernels: Vec<String>,
    },
    /// Show the layers a machine gets from the image, and where each file lands
    ///
    /// Shows the layers a machine would get from the image, in the order they are
    /// applied, the skipped ones with the reason, and the files each layer places and
    /// where. The subnet is required, it names the network layer: --ip 10.0.0.5/24,
    /// --prefix 24 or --broadcast 10.0.0.255. Exits 1 on configuration warnings, an
    /// unusable host name or files the copy would skip.
    #[command(verbatim_doc_comment)]
    Plan(PlanArgs),
    /// Summarise the boot of this client
    ///
    /// On a booted client: host name, address, root, layers, scratch and swap, and
    /// the time of each stage, from RUN_DIR/diskless/boot.json.
    #[command(verbatim_doc_comment)]
    Status {
        /// Where the boot wrote diskless/boot.json
        #[arg(default_value = "/run")]
        run_dir: PathBuf,
    },
    /// Make an image diskless: layer tree, per-machine files moved to the base layer
    ///
    /// Reads the local.d lists (/etc/diskless/local.d/<dir>, one path per line;
    /// /var/lib's list is named var-lib) or, when there are none, writes the default
    /// lists for Debian/systemd images. Creates the layer tree, moves each listed file
    /// into the base layer (owner, mode, times and symlinks kept), replaces it in the
    /// image by a relative symlink into its local dir, fills the image's local dirs
    /// with links to the base layer (so a chroot sees working files), writes
    /// diskless.toml when missing and installs the APT hook that runs
    /// diskless fix --auto after every package operation, and the kernel hooks
    /// (/etc/kernel/postinst.d and postrm.d) that build /boot/initrd.img-VERSION with
    /// /usr/lib/diskless/mkinitramfs for each kernel package installed and remove it
    /// with the kernel. Running it again changes nothing. Exits 1 when something needs
    /// the administrator.
    #[command(verbatim_doc_comment)]
    Setup {
        /// The image: the directory exported over NFS as the clients' root
        image_root: PathBuf,
        /// Show what would be done, change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Keep more files per machine: extend the lists and convert the files
    ///
    /// Each PATH (as the image names it, /etc/foo) is added to the list of its
    /// configured dir, moved into the base layer and replaced by a link into the
    /// local dir.
    #[command(verbatim_doc_comment)]
    Add {
        /// The image (default: this system)
        #[arg(long, value_name = "IMAGE_ROOT", default_value = "/")]
        image: PathBuf,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Keep files in the image again: shrink the lists and convert the files back
    ///
    /// Each PATH leaves its list; the base layer's content takes the place of the
    /// link. Copies of it in other layers are left alone and reported.
    #[command(verbatim_doc_comment)]
    Remove {
        /// The image (default: this system)
        #[arg(long, value_name = "IMAGE_ROOT", default_value = "/")]
        image: PathBuf,
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Repair listed files that a package update replaced, removed or re-pointed
    ///
    /// The new content goes to the base layer (the previous base copy kept beside it
    /// as NAME.diskless-prev) and the link is restored; each action is one line.
    /// Exits 1 when something was fixed, 0 when there was nothing to fix. --auto is
    /// the APT hook's mode: silent when there is nothing to do.
    #[command(verbatim_doc_comment)]
    Fix {
        /// The image (default: this system)
        #[arg(default_value = "/")]
        image_root: PathBuf,
        /// Run from the package manager's hook: quiet when nothing to do
        #[arg(long)]
        auto: bool,
    },
    /// Show the image's about file: its name and description
    #[command(verbatim_doc_comment)]
    About {
        /// The image (default: this system)
        #[arg(default_value = "/")]
        image_root: PathBuf,
    },
    /// Work in the image: a shell (or CMD) chrooted into it with /dev, /proc, /sys
    ///
    /// Binds /dev, /proc and /sys into the image and a per-image tmp and var/tmp from
    /// CACHE_DIR, runs the image's shell with the about file's name as the prompt (or
    /// the command after --), and everything is unmounted when it ends, also when it is
    /// killed: the mounts live in a private mount namespace. Exits with the command's
    /// status. Needs root.
    #[command(verbatim_doc_comment)]
    Chroot {
        /// The image: the directory exported over NFS as the clients' root
        image_root: PathBuf,
        /// Where each image's tmp and var/tmp are kept between sessions
        #[arg(long, value_name = "DIR", default_value = "/var/cache/diskless")]
        cache_dir: PathBuf,
        /// The command to run instead of the shell
        #[arg(last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Copy the layers again on this running client, without a reboot
    ///
    /// Selects the layers again from the identity this client's boot recorded (its
    /// host name, address and subnet, in RUN_DIR/diskless/boot.json) and copies them
    /// into the live local dirs with the boot's own copy code: a changed layer on the
    /// server reaches the machine. A file a layer placed at boot that no layer has any
    /// more is removed; files made at run time stay; nothing outside the local dirs
    /// is written. --dry-run shows what would change.
    #[command(verbatim_doc_comment)]
    Relayer {
        /// Show what would be copied and removed, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Where the boot wrote diskless/boot.json and diskless/layer-files
        #[arg(long, value_name = "DIR", default_value = "/run")]
        run_dir: PathBuf,
        /// The running system's root (another directory only for tests)
        #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Make the lab's fleet file from what the clients sent the syslog server
    ///
    /// Every client sends its boot log and, at the end of each boot, its inventory
    /// (NICs with modalias and module, PCI/USB/virtio devices with their drivers, how
    /// the boot ended) as syslog over UDP to the log servers of DHCP option 7 or
    /// diskless.syslog=HOST[:PORT]. Give the files rsyslog wrote them to (its default
    /// format or RSYSLOG_SyslogProtocol23Format): the fleet file lists one machine per
    /// MAC it booted from, with every NIC it reported. mkinitramfs --fleet FILE builds
    /// an initrd with exactly the fleet's NIC drivers. Without -o the file goes to
    /// stdout. Exits 1 when a NIC had to be left out (the notes say which and why).
    #[command(verbatim_doc_comment)]
    Inventory {
        /// The syslog server's files with the clients' messages
        #[arg(required = true, value_name = "LOGFILE")]
        logs: Vec<PathBuf>,
        /// Write the fleet file here instead of stdout
        #[arg(short, long, value_name = "FLEETFILE")]
        output: Option<PathBuf>,
    },
    /// Write and check the lab's server files (DHCP, DNS, TFTP, NFS) from one lab file
    ///
    /// The lab file (lab.toml; schema in docs/lab.example.toml) names the server, the
    /// subnets, the images and every host. diskless server render writes every server
    /// file from it; diskless server check proves the files agree with it.
    #[command(verbatim_doc_comment, subcommand)]
    Server(ServerCommand),
    /// Print the manual page or a shell completion script to stdout
    ///
    /// E.g. diskless generate man > /usr/local/share/man/man1/diskless.1, or
    /// diskless generate bash > /etc/bash_completion.d/diskless.
    #[command(hide = true, verbatim_doc_comment)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

/// `diskless server ...`: the lab's server, from its lab file.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ServerCommand {
    /// Write every server file of the lab into DIR
    ///
    /// Writes DIR/dnsmasq.conf (DHCP with a fixed address and boot file per host,
    /// chosen by DHCP option 93: pxelinux for BIOS, GRUB for UEFI; DNS with an A and a
    /// PTR record per host; TFTP from DIR/tftproot), or with --dhcp isc --dns bind
    /// DIR/dhcpd.conf, DIR/named.conf and the zones in DIR/bind (dnsmasq.conf then only
    /// serves TFTP); DIR/tftproot/IMAGE/ with pxelinux.0, ldlinux.c32, pxelinux.cfg/
    /// (default and one 01-MAC file per host with extra parameters), grubnetx64.efi
    /// (or, for a secure_boot image, shimx64.efi and the signed GRUB as grubx64.efi),
    /// and vmlinuz and initrd.img as links to the versioned files; DIR/exports for the
    /// kernel NFS server and DIR/ganesha.conf for nfs-ganesha. With server.http in
    /// the lab file the loaders fetch kernel and initrd over HTTP (BIOS clients get
    /// lpxelinux.0) and DIR/nginx.conf is the web server's site serving DIR/tftproot
    /// under the URL's path; only the loader goes over TFTP. The same lab file
    /// gives the same bytes. The configurations name DIR: render where the servers
    /// will read the files. Says what is still missing (a kernel, an initrd).
    #[command(verbatim_doc_comment)]
    Render {
        /// The lab file
        #[arg(long, value_name = "FILE")]
        lab: PathBuf,
        /// Where to write (and where the servers read) the files
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The DHCP server to configure
        #[arg(long, value_enum, default_value = "dnsmasq")]
        dhcp: DhcpServer,
        /// The DNS server to configure
        #[arg(long, value_enum, default_value = "dnsmasq")]
        dns: DnsServer,
    },
    /// Check the lab file and the files rendered from it; every problem with its fix
    ///
    /// Checks that host names, MACs and addresses are unique, inside their subnet and
    /// outside its dynamic range. With --root (the DIR render wrote): the files there
    /// are what the lab file renders, every host has an A and a PTR record that agree,
    /// each image's vmlinuz and initrd.img exist under tftproot, are world-readable and
    /// the initrd was built for that kernel, a secure_boot image's shimx64.efi,
    /// grubx64.efi and vmlinuz carry an Authenticode signature, and the exports cover
    /// every image. With
    /// --live, each host's A and PTR records are asked of each DNS server its subnet
    /// hands out (the [peer]'s too), every server alone, as a booting client asks
    /// them; a server that does not answer is one line. Exits 1 when there is a problem.
    #[command(verbatim_doc_comment)]
    Check {
        /// The lab file
        #[arg(long, value_name = "FILE")]
        lab: PathBuf,
        /// The directory render wrote
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Ask the running DNS servers for every host's A and PTR records
        #[arg(long)]
        live: bool,
        /// The DNS servers' port for --live (another one only for tests)
        #[arg(long, value_name = "PORT", default_value_t = 53, hide = true)]
        dns_port: u16,
    },
    /// Switch the kernel (and its initrd) an image's clients boot
    ///
    /// Points DIR/tftproot/IMAGE/vmlinuz and initrd.img at vmlinuz-VERSION and
    /// initrd.img-VERSION, each link replaced by a rename, the initrd first. Copies
    /// the kernel from the image's /boot and builds the initrd with mkinitramfs (from
    /// the image's /lib/modules/VERSION) when they are not there yet. The links they
    /// replace become vmlinuz.previous and initrd.img.previous, and the previous
    /// kernel's files stay: switching back is the same command with the old VERSION.
    /// Set kernel = "VERSION" in the lab file's [[image]] too, or render links the
    /// lab file's kernel again.
    #[command(verbatim_doc_comment)]
    Kernel {
        /// The lab file
        #[arg(long, value_name = "FILE")]
        lab: PathBuf,
        /// The directory render wrote
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// The init binary for a new initrd (default: init beside diskless)
        #[arg(long, value_name = "PATH")]
        init: Option<PathBuf>,
        /// The image, as the lab file names it
        image: String,
        /// The kernel version (uname -r of that kernel, e.g. 6.1.0-57-amd64)
        version: String,
    },
}

/// `--dhcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DhcpServer {
    Dnsmasq,
    /// ISC dhcpd
    Isc,
}

/// `--dns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DnsServer {
    Dnsmasq,
    /// BIND9
    Bind,
}

/// The arguments of `plan`: the machine, as its lease would describe it.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct PlanArgs {
    /// The image: the directory exported over NFS as the clients' root
    #[arg(default_value = "/")]
    pub image_root: PathBuf,
    /// The machine's host name, without domain (lab3-12)
    #[arg(long, value_name = "NAME")]
    pub host: String,
    /// The machine's address, with the subnet's prefix length if known (10.0.0.5/24)
    #[arg(long, value_name = "ADDR[/PREFIX]")]
    pub ip: AddressArg,
    /// The subnet's prefix length, if --ip has none
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=32), conflicts_with = "broadcast")]
    pub prefix: Option<u8>,
    /// The subnet's broadcast address, instead of a prefix length
    #[arg(long, value_name = "ADDR")]
    pub broadcast: Option<Ipv4Addr>,
}

/// `--ip ADDR[/PREFIX]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressArg {
    pub address: Ipv4Addr,
    pub prefix: Option<u8>,
}

/// A value of `--ip` that is not `ADDR[/PREFIX]`; clap shows it after the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressArgError {
    #[error("not an IPv4 address (e.g. 10.0.0.5 or 10.0.0.5/24)")]
    NotAnAddress {
        #[source]
        error: AddrParseError,
    },
    #[error("prefix {value:?} is not a number from 0 to 32")]
    NotAPrefix { value: String },
}

impl FromStr for AddressArg {
    type Err = AddressArgError;

    fn from_str(text: &str) -> Result<Self, AddressArgError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => match prefix.parse::<u8>() {
                Ok(p) if p <= 32 => (address, Some(p)),
                _ => return Err(AddressArgError::NotAPrefix { value: prefix.to_string() }),
            },
            None => (text, None),
        };
        let address = address.parse().map_err(|error| AddressArgError::NotAnAddress { error })?;
        Ok(AddressArg { address, prefix })
    }
}

impl PlanArgs {
    /// The machine as [`diskless::local::select_layers`] sees it; the broadcast address
    /// from whichever way the subnet was given.
    pub fn input(&self) -> Result<LayerInput, SubnetError> {
        let address = self.ip.address;
        let prefix = match (self.ip.prefix, self.prefix) {
            (Some(_), Some(_)) => return Err(SubnetError::PrefixTwice),
            (one, other) => one.or(other),
        };
        let broadcast = match (prefix, self.broadcast) {
            (Some(_), Some(_)) => return Err(SubnetError::PrefixAndBroadcast),
            (Some(p), None) => broadcast_of(address, p),
            (None, Some(b)) => b,
            (None, None) => return Err(SubnetError::NoSubnet),
        };
        Ok(LayerInput { broadcast, address, hostname: self.host.clone() })
    }
}

/// What `generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// The manual page, diskless(1), in roff
    Man,
    Bash,
    Zsh,
    Fish,
}

impl Command {
    /// The rules clap cannot express; a broken one is a wrong command line.
    pub fn check_arguments(&self) -> Result<(), clap::Error> {
        match self {
            Command::Plan(args) => {
                args.input().map(drop).map_err(|e| usage_error("plan", ErrorKind::ArgumentConflict, e))
            }
            _ => Ok(()),
        }
    }
}

/// A wrong command line of `subcommand`, shown as clap shows its own: the message,
/// the subcommand's usage and the hint to `--help`; exits [`EXIT_USAGE`].
fn usage_error(subcommand: &str, kind: ErrorKind, message: impl std::fmt::Display) -> clap::Error {
    let mut cli = Cli::command();
    // Names the usage `diskless plan` rather than `plan`.
    cli.build();
    match cli.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(kind, message),
        None => cli.error(kind, message),
    }
}

/// Parses a command line (program name first) as the binary does: clap's parser,
/// then [`Command::check_arguments`]. `--help` and `--version` come back as the
/// `Err` clap uses for them; `clap::Error::exit` prints either correctly.
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    cli.command.check_arguments()?;
    Ok(cli)
}

/// Runs `command`, writing its report to `out`; returns the exit code.
pub fn run(command: &Command, out: &mut dyn Write) -> Result<u8, AdminError> {
    let (text, code) = match command {
        Command::Check { image_root, kernels } => {
            let report = check(image_root)?;
            let mut image = image::check::check_image(image_root, kernels);
            // The configuration's warnings are listed above already.
            image.problems.retain(|p| !matches!(p, image::check::Problem::Config(_)));
            let code = if report.warnings.is_empty() && !image.has_problems() { EXIT_OK } else { EXIT_PROBLEMS };
            (format!("{}\n{}", render_check(&report), image::check::render(&image)).into_bytes(), code)
        }
        Command::Plan(args) => {
            let report = plan(&args.image_root, &args.input()?)?;
            let code = if report.has_problems() { EXIT_PROBLEMS } else { EXIT_OK };
            (render_plan(&report).into_bytes(), code)
        }
        // boot.json holds strings a DHCP server chose (root path, boot file, ...).
        Command::Status { run_dir } => (escape_lines(&render_status(&status(run_dir)?)).into_bytes(), EXIT_OK),
        Command::Setup { image_root, dry_run } => {
            let report = setup::setup(image_root, *dry_run)?;
            (report.render().into_bytes(), if report.has_problems() { EXIT_PROBLEMS } else { EXIT_OK })
        }
        Command::Add { image, paths } => {
            let report = setup::add(image, paths)?;
            (report.render().into_bytes(), if report.has_problems() { EXIT_PROBLEMS } else { EXIT_OK })
        }
        Command::Remove { image, paths } => {
            let report = setup::remove(image, paths)?;
            (report.render().into_bytes(), if report.has_problems() { EXIT_PROBLEMS } else { EXIT_OK })
        }
        Command::Fix { image_root, auto } => {
            let report = fix::fix(image_root, *auto)?;
            (report.render().into_bytes(), if report.anything_fixed() { EXIT_PROBLEMS } else { EXIT_OK })
        }
        Command::About { image_root } => (image::about::render(&image::about::read(image_root)?).into_bytes(), EXIT_OK),
        Command::Chroot { image_root, cache_dir, command } => {
            let status = image::chroot::chroot(image_root, cache_dir, command)?;
            let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(EXIT_PROBLEMS as i32);
            return Ok(u8::try_from(code).unwrap_or(EXIT_PROBLEMS));
        }
        Command::Relayer { dry_run, run_dir, root } => {
            let report = relayer::relayer(root, &run_dir.join("diskless"), &RealOs, *dry_run)?;
            let code =
                if report.copied.as_ref().is_some_and(|c| !c.warnings.is_empty()) { EXIT_PROBLEMS } else { EXIT_OK };
            (relayer::render(&report).into_bytes(), code)
        }
        Command::Inventory { logs, output } => {
            let report = inventory::inventory(logs)?;
            let code = if report.skipped.is_empty() { EXIT_OK } else { EXIT_PROBLEMS };
            match output {
                Some(path) => {
                    inventory::write(&report, path)?;
                    (report.summary(path).into_bytes(), code)
                }
                None => (report.fleet_file().into_bytes(), code),
            }
        }
        Command::Server(command) => server(command)?,
        Command::Generate { what } => (generate(*what), EXIT_OK),
    };
    // A closed stdout (`diskless status | head -1`) is not an error of the command.
    let _ = out.write_all(&text);
    Ok(code)
}

fn server(command: &ServerCommand) -> Result<(Vec<u8>, u8), AdminError> {
    match command {
        ServerCommand::Render { lab, out, dhcp, dns } => {
            let lab = Lab::load(lab)?;
            let options = lab_render::Options {
                dhcp: match dhcp {
                    DhcpServer::Dnsmasq => lab_render::Dhcp::Dnsmasq,
                    DhcpServer::Isc => lab_render::Dhcp::Isc,
                },
                dns: match dns {
                    DnsServer::Dnsmasq => lab_render::Dns::Dnsmasq,
                    DnsServer::Bind => lab_render::Dns::Bind,
                },
            };
            // The configurations name the directory: an absolute one.
            let out = std::path::absolute(out).unwrap_or_else(|_| out.clone());
            let rendered = lab_render::render(&lab, options, &out)?;
            lab_render::write(&rendered, &out)?;
            Ok((lab_render::summary(&rendered, &out).into_bytes(), EXIT_OK))
        }
        ServerCommand::Check { lab, root, live, dns_port } => {
            let lab = Lab::load(lab)?;
            let root = root.as_ref().map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone()));
            let versions = |path: &std::path::Path| mkinitramfs::kernel_versions(path).map_err(|e| e.to_string());
            let mut findings = lab_check::check(&lab, root.as_deref(), &versions);
            if *live && lab.problems.is_empty() {
                findings.extend(diskless::lab::live::check_live(&lab, *dns_port, Default::default()));
            }
            let code = if findings.is_empty() { EXIT_OK } else { EXIT_PROBLEMS };
            Ok((lab_check::render_findings(&findings).into_bytes(), code))
        }
        ServerCommand::Kernel { lab: lab_path, root, init, image, version } => {
            let lab = Lab::load(lab_path)?;
            let root = std::path::absolute(root).unwrap_or_else(|_| root.clone());
            let build = |basedir: &std::path::Path, version: &str, output: &std::path::Path| {
                let args = mkinitramfs::BuildArgs {
                    basedir: basedir.into(),
                    version: Some(version.into()),
                    output: Some(output.into()),
                    init: init.clone(),
                    ..Default::default()
                };
                let options = mkinitramfs::resolve(args).map_err(|e| e.to_string())?;
                mkinitramfs::build(&options).map(drop).map_err(|e| e.to_string())
            };
            let switched = diskless::lab::kernel::switch(&lab, &root, image, version, &build)?;
            let again = format!("diskless server kernel --lab {} --root {}", lab_path.display(), root.display());
            Ok((diskless::lab::kernel::render_switched(&switched, &again).into_bytes(), EXIT_OK))
        }
    }
}

fn generate(what: Generated) -> Vec<u8> {
    match what {
        Generated::Man => man_page().into_bytes(),
        Generated::Bash => completion(Shell::Bash),
        Generated::Zsh => completion(Shell::Zsh),
        Generated::Fish => completion(Shell::Fish),
    }
}

/// The completion script of `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "diskless", &mut out);
    out
}

/// The lines with which roff starts every rendering: the definition of `\*(Aq`, the
/// apostrophe, for groff and for other troffs. Said once, at the top of the page.
const ROFF_PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];

/// The manual page diskless(1), in roff: name, synopsis, description, then each
/// visible subcommand with its synopsis, description and options, then the exit
/// status. One page rather than one per subcommand, so that `generate man` installs
/// everything with one redirection.
pub fn man_page() -> String {
    let mut cli = Cli::command();
    // Names the subcommands' synopses `diskless check` rather than `check`.
    cli.build();
    let mut page: String = ROFF_PREAMBLE.iter().map(|line| format!("{line}\n")).collect();
    let top = Man::new(cli.clone()).title("DISKLESS");
    let mut roff = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = top.render_title(&mut roff);
    let _ = top.render_name_section(&mut roff);
    let _ = top.render_synopsis_section(&mut roff);
    let _ = top.render_description_section(&mut roff);
    append_roff(&mut page, &roff, true);
    page.push_str(".SH COMMANDS\n");
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        page.push_str(&format!(".SS \"diskless {}\"\n", sub.get_name()));
        let man = Man::new(sub.clone());
        let mut roff = Vec::new();
        let _ = man.render_synopsis_section(&mut roff);
        roff.extend_from_slice(b".PP\n");
        let _ = man.render_description_section(&mut roff);
        let _ = man.render_options_section(&mut roff);
        // A subcommand's parts are paragraphs of its .SS, not sections of the page.
        append_roff(&mut page, &roff, false);
    }
    page.push_str(&format!(".SH \"EXIT STATUS\"\n{}\n", exit_codes()));
    page.push_str(&format!(".SH VERSION\nv{}\n", env!("CARGO_PKG_VERSION")));
    page
}

/// Appends what clap_mangen rendered, without its preamble and, unless
/// `with_sections`, without its section headings.
fn append_roff(page: &mut String, roff: &[u8], with_sections: bool) {
    for line in String::from_utf8_lossy(roff).lines() {
        if !ROFF_PREAMBLE.contains(&line) && (with_sections || !line.starts_with(".SH ")) {
            page.push_str(line);
            page.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(args: &[&str]) -> LayerInput {
        let argv = ["diskless", "plan"].iter().chain(args);
        match parse(argv) {
            Ok(Cli { command: Command::Plan(args) }) => args.input().unwrap(),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn command_lines() {
        let i = plan_of(&["/srv/img", "--host", "lab3-12", "--ip", "10.0.0.12/24"]);
        assert_eq!(
            (i.broadcast, i.address, i.hostname.as_str()),
            (Ipv4Addr::new(10, 0, 0, 255), Ipv4Addr::new(10, 0, 0, 12), "lab3-12")
        );
        assert_eq!(
            plan_of(&["--host=a", "--ip=172.16.5.9", "--prefix", "16"]).broadcast,
            Ipv4Addr::new(172, 16, 255, 255)
        );
        assert_eq!(
            plan_of(&["--host", "a", "--ip", "10.1.2.3", "--broadcast", "10.1.2.127"]).broadcast,
            Ipv4Addr::new(10, 1, 2, 127)
        );
        let parsed = |args: &[&str]| parse(["diskless"].iter().chain(args)).map(|cli| cli.command);
        assert_eq!(parsed(&["check"]).unwrap(), Command::Check { image_root: "/".into(), kernels: vec![] });
        assert_eq!(
            parsed(&["check", "/srv/img", "--kernel", "6.1.0-57-amd64"]).unwrap(),
            Command::Check { image_root: "/srv/img".into(), kernels: vec!["6.1.0-57-amd64".into()] }
        );
        assert_eq!(parsed(&["status", "/tmp/r"]).unwrap(), Command::Status { run_dir: "/tmp/r".into() });
        assert_eq!(parsed(&["generate", "zsh"]).unwrap(), Command::Generate { what: Generated::Zsh });
        assert_eq!(parsed(&["status", "-h"]).unwrap_err().kind(), ErrorKind::DisplayHelp);
        assert_eq!(parsed(&["--version"]).unwrap_err().kind(), ErrorKind::DisplayVersion);
        for bad in [
            &[][..],
            &["frob"],
            &["check", "--frob"],
            &["check", "a", "b"],
            &["check", ""],
            &["plan", "--ip", "10.0.0.1/24"],
            &["plan", "--host", "a", "--ip", "10.0.0.1"],
            &["plan", "--host", "a", "--ip", "10.0.0.1/33"],
            &["plan", "--host", "a", "--ip", "300.0.0.1/24"],
            &["plan", "--host", "a", "--ip", "10.0.0.1", "--prefix", "33"],
            &["plan", "--host", "a", "--ip", "10.0.0.1", "--prefix", "24", "--broadcast", "10.0.0.255"],
            &["plan", "--host", "a", "--ip", "10.0.0.1/24", "--prefix", "24"],
            &["plan", "--host", "a", "--ip", "10.0.0.1/24", "--broadcast", "10.0.0.255"],
            &["plan", "--host", "a", "--host", "b", "--ip", "10.0.0.1/24"],
            &["plan", "--host"],
            &["generate", "tcsh"],
        ] {
            let e = parsed(bad).expect_err(&format!("{bad:?} accepted"));
            assert_eq!(e.exit_code(), i32::from(EXIT_USAGE), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_subnet_rules_clap_cannot_express_say_what_to_give() {
        let e = parse(["diskless", "plan", "--host", "a", "--ip", "10.0.0.1"]).unwrap_err().to_string();
        assert!(e.contains(&SubnetError::NoSubnet.to_string()) && e.contains("Usage: diskless plan"), "{e}");
        let e = parse(["diskless", "plan", "--host", "a", "--ip", "10.0.0.1/24", "--prefix", "24"]).unwrap_err();
        assert!(e.to_string().contains("give the prefix once"), "{e}");
        let e = parse(["diskless", "plan", "--host", "a", "--ip", "10.0.0.1/33"]).unwrap_err().to_string();
        assert!(e.contains("prefix \"33\" is not a number from 0 to 32"), "{e}");
    }

    /// The subcommands an administrator sees: every one must be documented.
    fn visible_subcommands() -> Vec<String> {
        let names: Vec<String> =
            Cli::command().get_subcommands().filter(|s| !s.is_hide_set()).map(|s| s.get_name().to_string()).collect();
        assert!(names.contains(&"plan".to_string()), "{names:?}");
        names
    }

    #[test]
    fn the_man_page_has_a_section_for_every_subcommand() {
        let page = man_page();
        assert!(page.contains("\n.TH DISKLESS 1 "), "{page}");
        for name in visible_subcommands() {
            assert!(page.contains(&format!("\n.SS \"diskless {name}\"\n")), "{name} missing:\n{page}");
        }
        // Each subcommand's options are in its own part of the page.
        let plan = page.split(".SS \"diskless plan\"").nth(1).unwrap();
        assert!(plan.split(".SS ").next().unwrap().contains("\\-\\-broadcast"), "{plan}");
        assert!(page.contains(".SH \"EXIT STATUS\"\n0 fine, 1 problems found"), "{page}");
    }

    #[test]
    fn the_bash_completion_offers_every_subcommand() {
        let script = String::from_utf8(completion(Shell::Bash)).unwrap();
        // The words offered after `diskless `: the opts of the case for the bare command.
        let mut lines = script.lines().skip_while(|l| l.trim() != "diskless)");
        let top = lines.nth(1).unwrap();
        let offered: Vec<&str> = top.trim().trim_start_matches("opts=\"").trim_end_matches('"').split(' ').collect();
        for name in visible_subcommands() {
            assert!(offered.contains(&name.as_str()), "{name} not in {top}");
        }
        assert!(script.contains("--broadcast"), "plan's options are completed too");
    }

    #[test]
    fn generate_prints_what_it_is_asked_for() {
        for (what, start) in [
            (Generated::Man, "\n.TH DISKLESS 1 "),
            (Generated::Bash, "_diskless()"),
            (Generated::Zsh, "#compdef diskless"),
            (Generated::Fish, "# Print an optspec"),
        ] {
            let mut out = Vec::new();
            assert_eq!(run(&Command::Generate { what }, &mut out).unwrap(), EXIT_OK);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(start), "{what:?}: {}", &text[..text.len().min(300)]);
        }
    }

    #[test]
    fn check_of_an_empty_image_said_0_warnings_now_names_what_the_boot_needs() {
        let img = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let command = Command::Check { image_root: img.path().into(), kernels: vec![] };
        assert_eq!(run(&command, &mut out).unwrap(), EXIT_PROBLEMS);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("0 warnings\n"), "{text}");
        assert!(text.contains("problem: configured dir /etc"), "{text}");
        assert!(text.contains("problem: no kernel modules"), "{text}");
    }

    #[test]
    fn check_of_a_complete_image_exits_0() {
        let img = tempfile::tempdir().unwrap();
        for dir in ["etc/local", "var/local", "lib/modules/6.1.0-57-amd64", "etc/diskless"] {
            std::fs::create_dir_all(img.path().join(dir)).unwrap();
        }
        std::fs::write(img.path().join("etc/diskless/about"), "lab-image\nThe lab's Debian.\n").unwrap();
        let mut out = Vec::new();
        let command = Command::Check { image_root: img.path().into(), kernels: vec!["6.1.0-57-amd64".into()] };
        let code = run(&command, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, EXIT_OK, "{text}");
        assert!(text.contains("kernels: 6.1.0-57-amd64\n") && text.contains("name:    lab-image\n"), "{text}");
        let missing = Command::Check { image_root: img.path().into(), kernels: vec!["6.1.0-99-amd64".into()] };
        assert_eq!(
            run(&missing, &mut Vec::new()).unwrap(),
            EXIT_PROBLEMS,
            "served with a kernel it has no modules for"
        );
    }
}
