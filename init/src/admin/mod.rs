//! The `diskless` admin command (DESIGN §1): what a running client did, and what the
//! boot would do with an image, without mounting anything.
//!
//! - `check [IMAGE_ROOT]`: the configuration exactly as the boot loads it
//!   ([`config::load`] without a command line), and every warning.
//! - `plan [IMAGE_ROOT] --host NAME --ip ADDR[/PREFIX] [--prefix N | --broadcast ADDR]`:
//!   the layers a machine would get ([`select_layers`]), the skipped ones with the
//!   reason, and for each used layer the files it places and where.
//! - `status [RUN_DIR]`: the essentials of `RUN_DIR/diskless/boot.json` on a booted client.
//!
//! The subnet of `plan` must be given (`--ip 10.0.0.5/24`, `--prefix 24` or
//! `--broadcast 10.0.0.255`): the network layer is named after the broadcast address
//! of the lease, and guessing a /24 would show the wrong layer on any other subnet.
//!
//! The command line, its help, man page and completions are defined in the
//! `diskless-cli` package (`cli/src/cli.rs`, which says how to add a subcommand); this
//! module computes the reports as data
//! ([`CheckReport`], [`PlanReport`], [`StatusReport`]) and renders them to text
//! separately, so the tests work on both.
//!
//! Exit codes: [`EXIT_OK`] fine, [`EXIT_PROBLEMS`] problems found (warnings) or an
//! input that cannot be read, [`EXIT_USAGE`] a wrong command line.

use std::convert::Infallible;
use std::ffi::{CStr, OsStr};
use std::fmt;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::config::{self, Config, ConfigWarning, Mode};
use crate::local::image::open_in_image;
use crate::local::walk::{Entry, Root, Skipped, Visitor, walk_layer};
use crate::local::{CopyWarning, Layer, LayerInput, LayerKind, LayerSelection, SkipReason, select_layers};
use crate::record::{self, BootRecord, RecordError};
use crate::scratch::{ScratchReport, show_size};

/// Exit code: everything fine.
pub const EXIT_OK: u8 = 0;
/// Exit code: warnings found, or an input that cannot be read.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;

/// The broadcast address of `address/prefix`, as the lease computes it.
pub fn broadcast_of(address: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_bits = 32 - u32::from(prefix.min(32));
    let mask = if host_bits == 32 { 0 } else { u32::MAX << host_bits };
    Ipv4Addr::from(u32::from(address) | !mask)
}

/// A subcommand that cannot do its work; [`AdminError::exit_code`] says how to exit.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The image root cannot be looked at.
    #[error(
        "{}: {error}; give the directory where the image is (the NFS export), e.g. diskless check /srv/nfsroot",
        .path.display()
    )]
    ImageRoot {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    /// The image root is not a directory.
    #[error(
        "{}: not a directory; give the directory where the image is (the NFS export), e.g. diskless check \
         /srv/nfsroot",
        .path.display()
    )]
    ImageRootNotADirectory { path: PathBuf },
    /// boot.json cannot be read, or is not what the boot writes.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Making the image diskless, or changing its lists, failed.
    #[error(transparent)]
    Setup(#[from] crate::image::setup::SetupError),
    /// Repairing the image failed.
    #[error(transparent)]
    Fix(#[from] crate::image::fix::FixError),
    /// The about file cannot be read.
    #[error(transparent)]
    About(#[from] crate::image::about::AboutError),
    /// The maintenance chroot failed.
    #[error(transparent)]
    Chroot(#[from] crate::image::chroot::ChrootError),
    /// Relayering a running client failed.
    #[error(transparent)]
    Relayer(#[from] crate::relayer::RelayerError),
    /// The lab file cannot be read or parsed.
    #[error(transparent)]
    Lab(#[from] crate::lab::LabError),
    /// The syslog files cannot be read, hold no inventory, or the fleet file cannot be written.
    #[error(transparent)]
    Inventory(#[from] crate::inventory::InventoryError),
    /// The lab's server files cannot be rendered or written.
    #[error(transparent)]
    Render(#[from] crate::lab::render::RenderError),
    /// Switching an image's kernel failed.
    #[error(transparent)]
    Kernel(#[from] crate::lab::kernel::KernelError),
    /// The subnet of `plan` given wrongly (the command-line parser refuses it already).
    #[error(transparent)]
    Subnet(#[from] SubnetError),
}

/// The subnet of `plan` given wrongly: the rules between `--ip`'s prefix,
/// `--prefix` and `--broadcast` that clap cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    #[error("give the prefix once: --ip ADDR/N or --prefix N")]
    PrefixTwice,
    #[error("give either a prefix or --broadcast, not both")]
    PrefixAndBroadcast,
    #[error("plan needs the subnet, it names the network layer: --ip ADDR/PREFIX, --prefix N or --broadcast ADDR")]
    NoSubnet,
}

impl AdminError {
    /// [`EXIT_USAGE`] for a wrong command line, else [`EXIT_PROBLEMS`].
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Subnet(_) => EXIT_USAGE,
            _ => EXIT_PROBLEMS,
        }
    }
}

fn require_image_root(path: &Path) -> Result<(), AdminError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(AdminError::ImageRootNotADirectory { path: path.into() }),
        Err(error) => Err(AdminError::ImageRoot { path: path.into(), error }),
    }
}

// ---------------------------------------------------------------- check

/// The configuration of an image as the boot loads it.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub image_root: PathBuf,
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
}

/// Loads the configuration of the image at `image_root` exactly as the boot does
/// (without kernel command line).
pub fn check(image_root: &Path) -> Result<CheckReport, AdminError> {
    require_image_root(image_root)?;
    let (config, warnings) = config::load::<&str, &str>(image_root, &[]);
    Ok(CheckReport { image_root: image_root.into(), config, warnings })
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "?".into())
}

/// The effective configuration in the syntax of `diskless.toml`: every key of the
/// configuration table, a dotted key under its `[section]`.
pub fn render_config(c: &Config) -> String {
    let mut out = String::new();
    let mut section = "";
    for (name, value) in config::rendered(c) {
        let (key_section, key) = name.rsplit_once('.').unwrap_or(("", name));
        if key_section != section {
            out.push_str(&format!("[{key_section}]\n"));
            section = key_section;
        }
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

fn render_warnings(out: &mut String, warnings: &[impl fmt::Display]) {
    for w in warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
}

/// The text of `diskless check`.
pub fn render_check(r: &CheckReport) -> String {
    let mut out = match &r.config.file {
        Some(file) => format!("# configuration of {} from {}\n", r.image_root.display(), file.display()),
        None => format!(
            "# configuration of {}: no {} or {} in the image, compiled defaults\n",
            r.image_root.display(),
            config::TOML_PATH,
            config::LEGACY_PATH
        ),
    };
    out.push_str(&render_config(&r.config));
    if !r.warnings.is_empty() {
        out.push('\n');
        render_warnings(&mut out, &r.warnings);
    }
    let n = r.warnings.len();
    out.push_str(&format!("{n} warning{}\n", if n == 1 { "" } else { "s" }));
    out
}

// ---------------------------------------------------------------- plan

/// What an entry of a layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink { target: PathBuf },
}

/// One entry a layer places.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    /// Path inside the layer, mirroring the root (`/etc/fstab`).
    pub path: PathBuf,
    /// Where it lands as seen on the booted client (`/etc/local/fstab`; in overlay
    /// mode the path itself).
    pub destination: PathBuf,
    pub kind: EntryKind,
    /// The later layer that replaces it, if any.
    pub overridden_by: Option<LayerKind>,
}

/// A used layer and its entries, sorted by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLayer {
    pub kind: LayerKind,
    pub path: PathBuf,
    pub entries: Vec<PlannedEntry>,
}

/// What the boot would do with the layers of one machine.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub image_root: PathBuf,
    pub input: LayerInput,
    pub config: Config,
    pub config_warnings: Vec<ConfigWarning>,
    pub selection: LayerSelection,
    pub layers: Vec<PlannedLayer>,
    /// Entries the copy would skip (outside the dirs, special files, unreadable), as
    /// the boot would log them.
    pub warnings: Vec<CopyWarning>,
}

impl PlanReport {
    /// Configuration warnings, an invalid host name or entries the copy would skip.
    pub fn has_problems(&self) -> bool {
        !self.config_warnings.is_empty()
            || !self.warnings.is_empty()
            || self.selection.skipped.iter().any(|s| {
                matches!(
                    s.reason,
                    SkipReason::InvalidName { .. } | SkipReason::NotADirectory | SkipReason::Unreadable { .. }
                )
            })
    }
}

/// Computes the layers of the machine `input` in the image at `image_root`, with the
/// configuration the boot would load, and walks each used layer as the copy does
/// ([`walk_layer`]) to list what it places.
pub fn plan(image_root: &Path, input: &LayerInput) -> Result<PlanReport, AdminError> {
    require_image_root(image_root)?;
    let (config, config_warnings) = config::load::<&str, &str>(image_root, &[]);
    let selection = select_layers(&config, image_root, input);
    // Where the entries of each dir land, as seen on the booted client.
    let roots: Vec<Root<PathBuf>> = config
        .dirs
        .iter()
        .map(|dir| Root {
            dir: dir.clone(),
            target: match config.mode {
                Mode::Symlink => dir.join(&config.localdir),
                Mode::Overlay => dir.clone(),
            },
        })
        .collect();
    let mut warnings = Vec::new();
    let mut layers: Vec<PlannedLayer> = Vec::new();
    for layer in &selection.layers {
        let mut walk = PlanWalk { layer, entries: Vec::new(), warnings: &mut warnings };
        match open_in_image(image_root, &layer.path, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => {
                let Ok(()) = walk_layer(&fd, &roots, &mut walk);
            }
            Err(error) => walk.skipped(Path::new("/"), Skipped::Unreadable { error }),
        }
        let mut entries = walk.entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        // Later layers replace what earlier ones placed at the same destination, and a
        // non-directory replaces a whole directory of an earlier layer.
        for earlier in layers.iter_mut() {
            for e in earlier.entries.iter_mut() {
                let replaced = entries.iter().any(|n| {
                    (n.destination == e.destination
                        && !(n.kind == EntryKind::Directory && e.kind == EntryKind::Directory))
                        || (n.kind != EntryKind::Directory && e.destination.starts_with(&n.destination))
                });
                if replaced {
                    e.overridden_by = Some(layer.kind);
                }
            }
        }
        layers.push(PlannedLayer { kind: layer.kind, path: layer.path.clone(), entries });
    }
    Ok(PlanReport {
        image_root: image_root.into(),
        input: input.clone(),
        config,
        config_warnings,
        selection,
        layers,
        warnings,
    })
}

/// The plan of one layer: records what the copy would place, where.
struct PlanWalk<'a> {
    layer: &'a Layer,
    entries: Vec<PlannedEntry>,
    warnings: &'a mut Vec<CopyWarning>,
}

impl PlanWalk<'_> {
    fn place(&mut self, parent: &Path, entry: &Entry<'_>, kind: EntryKind) -> PathBuf {
        let destination = parent.join(entry.name);
        self.entries.push(PlannedEntry {
            path: entry.image_path.to_path_buf(),
            destination: destination.clone(),
            kind,
            overridden_by: None,
        });
        destination
    }
}

impl Visitor for PlanWalk<'_> {
    type Target = PathBuf;
    type Error = Infallible;

    fn enter_dir(&mut self, parent: &PathBuf, entry: &Entry<'_>) -> Result<PathBuf, Infallible> {
        Ok(self.place(parent, entry, EntryKind::Directory))
    }

    fn leave_dir(&mut self, _: &PathBuf, _: &Entry<'_>, _: PathBuf) -> Result<(), Infallible> {
        Ok(())
    }

    fn file(&mut self, parent: &PathBuf, entry: &Entry<'_>, _source: OwnedFd) -> Result<(), Infallible> {
        self.place(parent, entry, EntryKind::File);
        Ok(())
    }

    fn symlink(&mut self, parent: &PathBuf, entry: &Entry<'_>, link: &CStr) -> Result<(), Infallible> {
        let target = PathBuf::from(OsStr::from_bytes(link.to_bytes()));
        self.place(parent, entry, EntryKind::Symlink { target });
        Ok(())
    }

    fn skipped(&mut self, image_path: &Path, why: Skipped) {
        self.warnings.push(CopyWarning::new(self.layer, image_path, why));
    }
}

fn skip_reason(reason: &SkipReason) -> String {
    match reason {
        SkipReason::Missing => "missing".into(),
        SkipReason::NotADirectory => "not a directory (make it one in the image)".into(),
        SkipReason::Unreadable { error } => format!("cannot be opened ({error})"),
        SkipReason::InvalidName { name, reason } => format!("host name {name:?} {reason}; the boot would not use it"),
        SkipReason::NoLabPrefix { hostname } => format!("host name {hostname:?} has no '-', so no lab prefix"),
    }
}

/// The text of `diskless plan`.
pub fn render_plan(r: &PlanReport) -> String {
    let i = &r.input;
    let mut out = format!(
        "# layers of {} ({}, network {}) in {}, mode {}\n",
        i.hostname,
        i.address,
        i.broadcast,
        r.image_root.display(),
        enum_name(&r.config.mode)
    );
    // Application order: the table order of select_layers, used and skipped merged.
    let order = [LayerKind::Base, LayerKind::Network, LayerKind::Lab, LayerKind::Host, LayerKind::Ip];
    let mut n = 0;
    for kind in order {
        if let Some(layer) = r.layers.iter().find(|l| l.kind == kind) {
            n += 1;
            let files = layer.entries.iter().filter(|e| e.kind != EntryKind::Directory).count();
            out.push_str(&format!(
                "{n}. {:<7} {}  ({files} file{})\n",
                kind.to_string(),
                layer.path.display(),
                if files == 1 { "" } else { "s" }
            ));
            for e in layer.entries.iter().filter(|e| e.kind != EntryKind::Directory) {
                let what = match &e.kind {
                    EntryKind::Symlink { target } => format!("{} -> {}", e.destination.display(), target.display()),
                    _ => e.destination.display().to_string(),
                };
                let over = e.overridden_by.map(|k| format!("  [overridden by {k}]")).unwrap_or_default();
                out.push_str(&format!("     {:<28} {what}{over}\n", e.path.display().to_string()));
            }
        }
        for s in r.selection.skipped.iter().filter(|s| s.kind == kind) {
            let path = s.path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into());
            out.push_str(&format!("-  {:<7} {path}  skipped: {}\n", kind.to_string(), skip_reason(&s.reason)));
        }
    }
    if !r.config_warnings.is_empty() || !r.warnings.is_empty() {
        out.push('\n');
        render_warnings(&mut out, &r.config_warnings);
        render_warnings(&mut out, &r.warnings);
    }
    out
}

// ---------------------------------------------------------------- status

/// The boot record of a client and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub path: PathBuf,
    pub record: BootRecord,
}

/// Reads `run_dir/diskless/boot.json`.
pub fn status(run_dir: &Path) -> Result<StatusReport, AdminError> {
    let path = record::path(run_dir);
    let record = record::read(&path)?;
    Ok(StatusReport { path, record })
}

/// One line per scratch fact: the scratch filesystem, each swap, why it is not used.
fn scratch_lines(s: &ScratchReport) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(used) = &s.scratch {
        let label = used.label.as_ref().map(|l| format!(" label {l}")).unwrap_or_default();
        lines.push(format!(
            "scratch {} ({}{label}, {}) on {}",
            used.device.display(),
            used.kind,
            show_size(used.size),
            used.mountpoint.display()
        ));
    }
    for swap in &s.swaps {
        let state = match (swap.enabled, &swap.error) {
            (true, _) => "on".to_string(),
            (false, Some(error)) => format!("off ({error})"),
            (false, None) => "off".to_string(),
        };
        lines.push(format!("swap {} ({}) {state}", swap.device.display(), show_size(swap.size)));
    }
    if let Some(failure) = &s.failure {
        lines.push(format!("scratch not used: {failure}"));
    }
    lines
}

/// The text of `diskless status`.
pub fn render_status(s: &StatusReport) -> String {
    let r = &s.record;
    let (net, id) = (&r.network.net, &r.network.identity);
    let mut out = format!("# {} (diskless {})\n", s.path.display(), r.diskless_version);
    let name = id.fqdn.as_deref().unwrap_or(&id.hostname);
    out.push_str(&format!("host       {name} (from {})\n", enum_name(&id.source).replace('_', " ")));
    if let Some(lost) = &id.lost {
        out.push_str(&format!(
            "identity   LOST: name made from the address ({}); {}: {}\n",
            lost.cause(),
            lost.layers_summary(),
            lost.fix()
        ));
    }
    out.push_str(&format!("address    {}/{} on {}\n", net.lease.address, net.lease.prefix_len, net.interface));
    match &net.dns_source {
        None => {}
        Some(crate::net::DnsSource::Nowhere) => {
            out.push_str("dns        none (no DHCP option 6, ip= field or image resolv.conf)\n")
        }
        Some(source) => {
            let servers: Vec<String> = net.lease.dns_servers.iter().map(ToString::to_string).collect();
            out.push_str(&format!("dns        {} (from {source})\n", servers.join(", ")));
        }
    }
    out.push_str(&format!("root       {} (NFSv{})\n", r.root.root.source(), r.root.mounted_version));
    if r.layers.is_empty() {
        out.push_str("layers     none\n");
    }
    for (n, layer) in r.layers.iter().enumerate() {
        let label = if n == 0 { "layers" } else { "" };
        let (kind, path, files) = (layer.kind.to_string(), layer.path.display(), layer.files);
        out.push_str(&format!("{label:<10} {kind:<7} {path} ({files} file{})\n", if files == 1 { "" } else { "s" }));
    }
    let scratch = scratch_lines(&r.scratch);
    if scratch.is_empty() {
        out.push_str("scratch    none (local dirs on tmpfs, no swap)\n");
    }
    for (n, line) in scratch.iter().enumerate() {
        out.push_str(&format!("{:<10} {line}\n", if n == 0 { "scratch" } else { "" }));
    }
    for (n, t) in r.stages.iter().enumerate() {
        out.push_str(&format!("{:<10} {:<9} {:>6} ms\n", if n == 0 { "stages" } else { "" }, t.stage.name(), t.ms));
    }
    out.push_str(&format!("total      {} ms\n", r.total_ms));
    if !r.config_warnings.is_empty() {
        out.push_str(&format!(
            "config     {} warning(s) at boot: see config_warnings in {} or run diskless check\n",
            r.config_warnings.len(),
            s.path.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// An image with all kinds of layer, a TOML file with an unknown key, a file
    /// outside the dirs, an override and a symlink.
    fn image() -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        let r = img.path();
        write(r, "etc/diskless/diskless.toml", "dirs = [\"/etc\", \"/var\"]\ncolour = \"blue\"\n");
        write(r, "diskless/base/etc/fstab", "base fstab\n");
        write(r, "diskless/base/etc/motd", "hello\n");
        write(r, "diskless/base/usr/bin/tool", "#!/bin/sh\n");
        write(r, "diskless/networks/10.0.0.255/etc/resolv.conf", "nameserver 10.0.0.1\n");
        fs::create_dir_all(r.join("diskless/labs/lab3/etc")).unwrap();
        symlink("/proc/self/mounts", r.join("diskless/labs/lab3/etc/mtab")).unwrap();
        write(r, "diskless/hosts/lab3-12/etc/fstab", "host fstab\n");
        write(r, "diskless/hosts/lab3-12/var/lib/x", "x\n");
        img
    }

    fn input(host: &str) -> LayerInput {
        LayerInput {
            broadcast: Ipv4Addr::new(10, 0, 0, 255),
            address: Ipv4Addr::new(10, 0, 0, 12),
            hostname: host.into(),
        }
    }

    #[test]
    fn check_reports_the_unknown_key_with_file_and_exit_1() {
        let img = image();
        let report = check(img.path()).unwrap();
        assert_eq!(report.config.dirs, [PathBuf::from("/etc"), PathBuf::from("/var")]);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        let text = render_check(&report);
        assert!(text.contains("dirs = [\"/etc\", \"/var\"]\n"), "{text}");
        assert!(text.contains("diskless.toml: unknown key \"colour\" ignored"), "{text}");
        assert!(text.ends_with("1 warning\n"), "{text}");
    }

    #[test]
    fn check_of_an_image_without_configuration_shows_the_defaults() {
        let img = tempfile::tempdir().unwrap();
        let report = check(img.path()).unwrap();
        assert_eq!(report.config, Config::default());
        let text = render_check(&report);
        assert!(text.contains("compiled defaults"), "{text}");
        assert!(
            text.contains("mode = \"symlink\"\n")
                && text.contains("[scratch]\nfstypes = [\"ext4\", \"xfs\", \"btrfs\"]\n"),
            "{text}"
        );
    }

    #[test]
    fn check_renders_every_key_of_the_config_table_in_toml_order() {
        let expected = "dirs = [\"/etc\", \"/var\"]\nlocaldir = \"local\"\nlayers = \"/diskless\"\nmode = \"symlink\"\n\
                        tmpfs_size = \"25%\"\non_failure = \"reboot\"\nreboot_delay = 30\ncarrier_timeout = 10\n\
                        dhcp_timeout = 120\ndhcp_server = []\nsyslog = \"dhcp\"\nsettle_ms = 500\nnfs_retry_timeout = 300\nnfs_server_timeout = 5\n[scratch]\n\
                        fstypes = [\"ext4\", \"xfs\", \"btrfs\"]\nlabel = \"scratch\"\nmountpoint = \"/mnt/scratch\"\n\
                        wipe = false\nswap = true\ncache = false\n";
        assert_eq!(render_config(&Config::default()), expected);
        let mut c = Config { dirs: Vec::new(), mode: Mode::Overlay, ..Config::default() };
        c.tmpfs_size = config::parse_tmpfs_size("512m").unwrap();
        c.scratch.label = String::new();
        let text = render_config(&c);
        assert!(text.starts_with("dirs = []\nlocaldir = \"local\"\n"), "{text}");
        assert!(text.contains("mode = \"overlay\"\ntmpfs_size = \"512M\"\n"), "{text}");
        assert!(text.contains("[scratch]\nfstypes = [\"ext4\", \"xfs\", \"btrfs\"]\nlabel = \"\"\n"), "{text}");
    }

    #[test]
    fn check_of_a_missing_image_names_it() {
        let err = check(Path::new("/nonexistent/image")).unwrap_err();
        assert!(err.to_string().starts_with("/nonexistent/image: "), "{err}");
    }

    #[test]
    fn plan_lists_layers_files_overrides_and_skips_in_order() {
        let img = image();
        let report = plan(img.path(), &input("lab3-12.example.org")).unwrap();
        let kinds: Vec<LayerKind> = report.layers.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [LayerKind::Base, LayerKind::Network, LayerKind::Lab, LayerKind::Host]);
        let base = &report.layers[0];
        let fstab = base.entries.iter().find(|e| e.path == Path::new("/etc/fstab")).unwrap();
        assert_eq!(fstab.destination, Path::new("/etc/local/fstab"));
        assert_eq!(fstab.overridden_by, Some(LayerKind::Host));
        let motd = base.entries.iter().find(|e| e.path == Path::new("/etc/motd")).unwrap();
        assert_eq!(motd.overridden_by, None);
        let host = &report.layers[3];
        assert!(host.entries.iter().any(|e| e.destination == Path::new("/var/local/lib/x")), "{:?}", host.entries);
        let text = render_plan(&report);
        assert!(text.contains("/etc/local/mtab -> /proc/self/mounts"), "{text}");
        assert!(text.contains("/etc/local/fstab  [overridden by host]"), "{text}");
        assert!(text.contains("-  ip      /diskless/hosts/10.0.0.12  skipped: missing"), "{text}");
        assert!(
            text.contains(
                "warning: layer base (/diskless/base): /diskless/base/usr is not inside any of the configured dirs"
            ),
            "{text}"
        );
        // The order on screen is the application order.
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
        assert!(at("1. base") < at("2. network") && at("2. network") < at("3. lab") && at("3. lab") < at("4. host"));
        assert!(report.has_problems(), "unknown key and the file outside the dirs are problems");
    }

    #[test]
    fn plan_in_overlay_mode_places_files_at_their_own_path() {
        let img = tempfile::tempdir().unwrap();
        write(img.path(), "etc/diskless/diskless.toml", "mode = \"overlay\"\n");
        write(img.path(), "diskless/base/etc/hosts", "127.0.0.1 localhost\n");
        let report = plan(img.path(), &input("lab3-12")).unwrap();
        assert_eq!(report.layers[0].entries[0].destination, Path::new("/etc/hosts"));
        assert!(!report.has_problems(), "{}", render_plan(&report));
    }

    #[test]
    fn plan_refuses_hostile_host_names_as_the_boot_does() {
        let img = image();
        let report = plan(img.path(), &input("../etc")).unwrap();
        let kinds: Vec<LayerKind> = report.layers.iter().map(|l| l.kind).collect();
        assert_eq!(kinds, [LayerKind::Base, LayerKind::Network]);
        let text = render_plan(&report);
        assert!(text.contains("-  host    -  skipped: host name \"../etc\""), "{text}");
        assert!(report.has_problems());
    }

    #[test]
    fn plan_does_not_follow_symlinked_directories_in_a_layer() {
        let img = image();
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", "s");
        symlink(outside.path(), img.path().join("diskless/base/etc/link")).unwrap();
        let report = plan(img.path(), &input("x")).unwrap();
        let base = &report.layers[0];
        assert!(
            base.entries
                .iter()
                .any(|e| e.path == Path::new("/etc/link") && matches!(e.kind, EntryKind::Symlink { .. }))
        );
        assert!(!base.entries.iter().any(|e| e.path.ends_with("secret")), "{:?}", base.entries);
    }

    #[test]
    fn a_later_file_replaces_an_earlier_directory() {
        let img = tempfile::tempdir().unwrap();
        write(img.path(), "diskless/base/etc/conf.d/a", "a");
        write(img.path(), "diskless/hosts/lab3-12/etc/conf.d", "now a file");
        let report = plan(img.path(), &input("lab3-12")).unwrap();
        let a = report.layers[0].entries.iter().find(|e| e.path == Path::new("/etc/conf.d/a")).unwrap();
        assert_eq!(a.overridden_by, Some(LayerKind::Host));
    }

    #[test]
    fn broadcast_addresses() {
        let a = Ipv4Addr::new(192, 168, 1, 23);
        assert_eq!(broadcast_of(a, 24), Ipv4Addr::new(192, 168, 1, 255));
        assert_eq!(broadcast_of(a, 32), a);
        assert_eq!(broadcast_of(a, 0), Ipv4Addr::BROADCAST);
        assert_eq!(broadcast_of(a, 22), Ipv4Addr::new(192, 168, 3, 255));
    }

    #[test]
    fn status_shows_the_essentials_of_the_boot_record() {
        let run_dir = tempfile::tempdir().unwrap();
        let path = record::write(run_dir.path(), &record::tests::full()).unwrap();
        let s = status(run_dir.path()).unwrap();
        assert_eq!(s.record, record::tests::full());
        assert_eq!(
            render_status(&s),
            format!(
                "# {path} (diskless 0.1.0)
host       lab3-12.example.org (from ptr)
address    10.77.0.112/24 on eth0
dns        10.77.0.1, 10.77.0.2 (from the DHCP lease)
root       10.77.0.1:/export (NFSv3)
layers     base    /diskless/base (4 files)
           host    /diskless/hosts/lab3-12 (2 files)
scratch    scratch /dev/sda1 (ext4 label scratch, 1024 MiB) on /mnt/scratch
           swap /dev/sda2 (512 MiB) on
           swap /dev/sdb2 (256 MiB) off (EINVAL)
           scratch not used: cannot mount /dev/sdd (ext4)
stages     early          3 ms
           hardware    1500 ms
           network      120 ms
total      1810 ms
config     2 warning(s) at boot: see config_warnings in {path} or run diskless check
",
                path = path.display()
            )
        );
    }

    #[test]
    fn status_says_when_the_identity_was_lost_why_and_what_to_do() {
        let run_dir = tempfile::tempdir().unwrap();
        record::write(run_dir.path(), &record::tests::lost()).unwrap();
        let text = render_status(&status(run_dir.path()).unwrap());
        assert!(
            text.contains(
                "\nhost       ip-10-77-0-112.example.org (from address)\n\
                 identity   LOST: name made from the address (no PTR record for 10.77.0.112 at 10.77.0.1:53); \
                 lab layer not applied, host layer of the made-up name applied: add a PTR record for 10.77.0.112 \
                 in DNS\naddress "
            ),
            "{text}"
        );
        let full = status_of(record::tests::full());
        assert!(!full.contains("identity"), "{full}");
    }

    #[test]
    fn status_says_where_the_dns_servers_came_from() {
        let mut r = record::tests::full();
        r.network.net.lease.dns_servers = vec![Ipv4Addr::new(10, 77, 0, 2)];
        r.network.net.dns_source = Some(crate::net::DnsSource::ImageResolvConf {
            path: "/diskless/networks/10.77.0.255/etc/resolv.conf".into(),
            layer: crate::local::LayerKind::Network,
        });
        let text = status_of(r.clone());
        assert!(
            text.contains(
                "\ndns        10.77.0.2 (from the image's resolv.conf /diskless/networks/10.77.0.255/etc/resolv.conf \
                 (network layer))\n"
            ),
            "{text}"
        );
        r.network.net.dns_source = None;
        assert!(!status_of(r).contains("\ndns "), "a record from before dns_source has no dns line");
    }

    fn status_of(record: BootRecord) -> String {
        let run_dir = tempfile::tempdir().unwrap();
        record::write(run_dir.path(), &record).unwrap();
        render_status(&status(run_dir.path()).unwrap())
    }

    #[test]
    fn status_of_a_boot_without_layers_or_disks_says_none() {
        let run_dir = tempfile::tempdir().unwrap();
        let mut r = record::tests::full();
        r.layers.clear();
        r.scratch = ScratchReport::default();
        r.config_warnings.clear();
        record::write(run_dir.path(), &r).unwrap();
        let text = render_status(&status(run_dir.path()).unwrap());
        assert!(text.contains("\nlayers     none\nscratch    none (local dirs on tmpfs, no swap)\nstages "), "{text}");
        assert!(!text.contains("config "), "{text}");
    }

    #[test]
    fn status_errors_name_the_file() {
        let run_dir = tempfile::tempdir().unwrap();
        let missing = status(run_dir.path()).unwrap_err().to_string();
        assert!(missing.contains("diskless/boot.json") && missing.contains("not booted by diskless?"), "{missing}");
        for bad in ["{not json", "[1, 2]", "{}", ""] {
            write(run_dir.path(), "diskless/boot.json", bad);
            let e = status(run_dir.path()).unwrap_err().to_string();
            assert!(e.contains("boot.json is not a diskless boot record"), "{bad:?}: {e}");
        }
    }

    /// A field renamed by the boot but not by the reader used to show "?".
    #[test]
    fn status_of_a_record_with_a_renamed_field_names_the_field() {
        let run_dir = tempfile::tempdir().unwrap();
        let path = record::write(run_dir.path(), &record::tests::full()).unwrap();
        let text = fs::read_to_string(&path).unwrap().replace("\"prefix_len\"", "\"prefix\"");
        fs::write(&path, text).unwrap();
        let e = status(run_dir.path()).unwrap_err().to_string();
        assert!(e.contains("boot.json is not a diskless boot record: missing field `prefix_len`"), "{e}");
    }
}
