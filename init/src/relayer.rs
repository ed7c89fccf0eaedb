//! `diskless relayer` on a running client (the HOWTO's "relayering"): the layers are
//! selected again from the identity the boot recorded and copied again into the live
//! local dirs with the boot's own copy code ([`crate::local::apply`]), so a change of a
//! layer on the server reaches the machine without a reboot.
//!
//! A file that a layer placed at boot (listed in `/run/diskless/layer-files`) and that
//! no layer holds any more is removed; files made at run time were never placed and
//! stay. Nothing outside the local dirs is written: the copy writes only below them,
//! and a removal is only of a placed file, at its place in its local dir.

use std::collections::BTreeSet;
use std::ffi::CStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::config::{Config, Mode};
use crate::local::image::open_in_image;
use crate::local::walk::{Entry, Root, Skipped, Visitor, walk_layer};
use crate::local::{
    ApplyError, ApplyReport, Destination, LayerInput, LayerSelection, PLACED_FILES, apply, plan_mounts, read_placed,
    select_layers, write_placed,
};
use crate::os::Os;
use crate::record::{self, RecordError};

/// What a relayering did, or with `dry_run` would do.
#[derive(Debug)]
pub struct RelayerReport {
    pub dry_run: bool,
    pub selection: LayerSelection,
    /// The files the layers place now, as the image names them.
    pub placed: BTreeSet<PathBuf>,
    /// The copy (none on a dry run).
    pub copied: Option<ApplyReport>,
    /// Files placed at boot that no layer holds now: removed (or to be removed).
    pub removed: Vec<PathBuf>,
    /// The boot left no list of what it placed (an older diskless): nothing is removed.
    pub no_placed_list: bool,
}

/// Why relayering stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayerError {
    #[error("{0}: relayer runs on a client booted by diskless")]
    Record(#[from] RecordError),
    #[error("reading {}: {source}: remove it to relayer without removing files", .path.display())]
    ReadPlaced {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening the layer {layer} in {}: {source}", .root.display())]
    OpenLayer {
        layer: String,
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening the local dir {}: {source}: is this the client's running system?", .path.display())]
    OpenLocalDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("copying the layers: {0}")]
    Copy(#[from] ApplyError),
    #[error("removing {} (no layer has it any more): {source}", .path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {}: {source}: the next relayer cannot tell which files came from the layers", .path.display())]
    WritePlaced {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where the layers' files go on the running system. In symlink mode the local dirs
/// (`/etc/local`); in overlay mode the dirs themselves: the overlay is mounted, and its
/// upper must only be changed through it.
pub fn live_destinations(config: &Config, root: &Path, run_dir: &Path) -> Vec<Destination> {
    match config.mode {
        Mode::Symlink => plan_mounts(config, root, run_dir).destinations,
        Mode::Overlay => config
            .dirs
            .iter()
            .map(|dir| Destination { dir: dir.clone(), path: root.join(dir.strip_prefix("/").unwrap_or(dir)) })
            .collect(),
    }
}

/// Where a placed file lives on the running system, if it is inside a destination.
fn live_path(destinations: &[Destination], image_path: &Path) -> Option<PathBuf> {
    destinations.iter().find_map(|d| image_path.strip_prefix(&d.dir).ok().map(|rel| d.path.join(rel)))
}

/// Relayer the running system at `root` (`/`), whose boot left its record and list of
/// placed files in `run_dir` (`/run/diskless`).
pub fn relayer(root: &Path, run_dir: &Path, os: &dyn Os, dry_run: bool) -> Result<RelayerReport, RelayerError> {
    let boot = record::read(&record::path(run_dir.parent().unwrap_or(run_dir)))?;
    let config = &boot.config;
    let input = LayerInput {
        broadcast: boot.network.net.lease.broadcast,
        address: boot.network.net.lease.address,
        hostname: boot.network.identity.hostname.clone(),
    };
    let selection = select_layers(config, root, &input);
    let destinations = live_destinations(config, root, run_dir);
    let before =
        read_placed(run_dir).map_err(|source| RelayerError::ReadPlaced { path: run_dir.join(PLACED_FILES), source })?;

    let (placed, copied) = if dry_run {
        (layer_files(&selection, root, config)?, None)
    } else {
        // Read ahead as at boot: the image is on NFS here too.
        let ahead = crate::local::prefetch::prefetch(root, &selection.layers);
        let report = apply(&selection, root, &destinations, Some(ahead), os)?;
        (report.placed.clone(), Some(report))
    };

    let gone: Vec<PathBuf> = before.iter().flatten().filter(|p| !placed.contains(*p)).cloned().collect();
    let mut removed = Vec::new();
    for image_path in gone {
        let Some(path) = live_path(&destinations, &image_path) else { continue };
        // Only files and symlinks were placed; a directory there now is another layer's.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_dir() => {
                if !dry_run {
                    std::fs::remove_file(&path)
                        .map_err(|source| RelayerError::Remove { path: path.clone(), source })?;
                }
                removed.push(image_path);
            }
            _ => {}
        }
    }
    if !dry_run {
        write_placed(run_dir, &placed)
            .map_err(|source| RelayerError::WritePlaced { path: run_dir.join(PLACED_FILES), source })?;
    }
    Ok(RelayerReport { dry_run, selection, placed, copied, removed, no_placed_list: before.is_none() })
}

/// The files and symlinks the layers of `selection` hold inside the configured dirs.
fn layer_files(selection: &LayerSelection, root: &Path, config: &Config) -> Result<BTreeSet<PathBuf>, RelayerError> {
    struct Collect(BTreeSet<PathBuf>);
    impl Visitor for Collect {
        type Target = ();
        type Error = std::convert::Infallible;
        fn enter_dir(&mut self, _: &(), _: &Entry<'_>) -> Result<(), Self::Error> {
            Ok(())
        }
        fn leave_dir(&mut self, _: &(), _: &Entry<'_>, _: ()) -> Result<(), Self::Error> {
            Ok(())
        }
        fn file(&mut self, _: &(), entry: &Entry<'_>, _: OwnedFd) -> Result<(), Self::Error> {
            self.0.insert(entry.image_path.to_path_buf());
            Ok(())
        }
        fn symlink(&mut self, _: &(), entry: &Entry<'_>, _: &CStr) -> Result<(), Self::Error> {
            self.0.insert(entry.image_path.to_path_buf());
            Ok(())
        }
        fn skipped(&mut self, _: &Path, _: Skipped) {}
    }
    let roots: Vec<Root<()>> = config.dirs.iter().map(|dir| Root { dir: dir.clone(), target: () }).collect();
    let mut collect = Collect(BTreeSet::new());
    for layer in &selection.layers {
        let fd = open_in_image(root, &layer.path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|source| RelayerError::OpenLayer { layer: layer.to_string(), root: root.to_path_buf(), source })?;
        let Ok(()) = walk_layer(&fd, &roots, &mut collect);
    }
    Ok(collect.0)
}

/// The report as the command prints it.
pub fn render(r: &RelayerReport) -> String {
    let mut out = String::new();
    let verb = if r.dry_run { "would copy" } else { "copied" };
    for layer in &r.selection.layers {
        out.push_str(&format!("layer {layer}\n"));
    }
    for skipped in &r.selection.skipped {
        out.push_str(&format!("{skipped}\n"));
    }
    match &r.copied {
        Some(report) => {
            let files: u64 = report.layers.iter().map(|l| l.files + l.symlinks).sum();
            out.push_str(&format!("{verb} {files} files from {} layers\n", report.layers.len()));
            for warning in &report.warnings {
                out.push_str(&format!("warning: {warning}\n"));
            }
        }
        None => out.push_str(&format!("{verb} {} files from {} layers\n", r.placed.len(), r.selection.layers.len())),
    }
    let removed = if r.dry_run { "would remove" } else { "removed" };
    for path in &r.removed {
        out.push_str(&format!("{removed} {} (no layer has it any more)\n", path.display()));
    }
    if r.no_placed_list {
        out.push_str("note: the boot left no list of the files it placed: files that left the layers stay\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::os::fake::FakeOs;

    /// A running client's `/`: the image with its layers, `/etc/local` and `/var/local`
    /// (tmpfs at boot; here plain dirs), and the boot's record in `/run/diskless`.
    struct Client(tempfile::TempDir);

    impl Client {
        fn new() -> Client {
            let client = Client(tempfile::tempdir().unwrap());
            for dir in ["etc/local", "var/local", "run/diskless"] {
                fs::create_dir_all(client.p(dir)).unwrap();
            }
            let mut boot = record::tests::full();
            boot.config = Config::default();
            boot.network.identity.hostname = "lab3-12".into();
            record::write(&client.p("run"), &boot).unwrap();
            client
        }

        fn p(&self, rel: &str) -> PathBuf {
            self.0.path().join(rel)
        }

        fn layer_file(&self, rel: &str, text: &str) {
            let path = self.p(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }

        fn read(&self, rel: &str) -> Option<String> {
            fs::read_to_string(self.p(rel)).ok()
        }

        fn relayer(&self, dry_run: bool) -> RelayerReport {
            relayer(self.0.path(), &self.p("run/diskless"), &FakeOs::default(), dry_run).unwrap()
        }
    }

    #[test]
    fn a_changed_layer_reaches_the_local_dirs_and_what_left_it_is_removed() {
        let client = Client::new();
        client.layer_file("diskless/base/etc/fstab", "base\n");
        client.layer_file("diskless/base/etc/motd", "welcome\n");
        client.layer_file("diskless/hosts/lab3-12/etc/fstab", "host v1\n");
        client.layer_file("diskless/hosts/lab3-12/var/spool/job", "job\n");
        let boot = client.relayer(false);
        assert_eq!(boot.placed.len(), 3, "{:?}", boot.placed);
        assert_eq!(client.read("etc/local/fstab").as_deref(), Some("host v1\n"));
        // At run time: a file the machine made itself, and changes on the server.
        fs::write(client.p("etc/local/made-here"), "mine\n").unwrap();
        client.layer_file("diskless/hosts/lab3-12/etc/fstab", "host v2\n");
        fs::remove_file(client.p("diskless/hosts/lab3-12/var/spool/job")).unwrap();
        client.layer_file("diskless/hosts/lab3-12/etc/new", "new\n");

        let dry = client.relayer(true);
        assert_eq!(dry.removed, [PathBuf::from("/var/spool/job")]);
        assert!(render(&dry).contains("would remove /var/spool/job (no layer has it any more)\n"), "{}", render(&dry));
        assert_eq!(client.read("etc/local/fstab").as_deref(), Some("host v1\n"), "a dry run changes nothing");
        assert!(client.p("var/local/spool/job").exists(), "a dry run removes nothing");

        let report = client.relayer(false);
        assert_eq!(client.read("etc/local/fstab").as_deref(), Some("host v2\n"));
        assert_eq!(client.read("etc/local/new").as_deref(), Some("new\n"));
        assert_eq!(client.read("etc/local/motd").as_deref(), Some("welcome\n"));
        assert!(!client.p("var/local/spool/job").exists(), "left the layers: removed");
        assert_eq!(client.read("etc/local/made-here").as_deref(), Some("mine\n"), "made at run time: kept");
        assert_eq!(report.removed, [PathBuf::from("/var/spool/job")]);
        let placed = read_placed(&client.p("run/diskless")).unwrap().unwrap();
        assert!(placed.contains(Path::new("/etc/new")) && !placed.contains(Path::new("/var/spool/job")));
        let again = client.relayer(false);
        assert!(again.removed.is_empty(), "nothing left to remove the second time");
    }

    #[test]
    fn without_the_boots_list_nothing_is_removed_and_the_report_says_so() {
        let client = Client::new();
        client.layer_file("diskless/base/etc/fstab", "base\n");
        fs::create_dir_all(client.p("var/local/spool")).unwrap();
        fs::write(client.p("var/local/spool/job"), "old\n").unwrap();
        let report = client.relayer(false);
        assert!(report.no_placed_list && report.removed.is_empty());
        assert!(client.p("var/local/spool/job").exists());
        assert!(render(&report).contains("note: the boot left no list"), "{}", render(&report));
    }

    #[test]
    fn a_client_without_a_boot_record_is_told_relayer_needs_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = relayer(dir.path(), &dir.path().join("run/diskless"), &FakeOs::default(), false).unwrap_err();
        assert!(e.to_string().ends_with("relayer runs on a client booted by diskless"), "{e}");
    }

    #[test]
    fn overlay_mode_writes_through_the_mounted_dirs() {
        let config = Config { mode: Mode::Overlay, ..Config::default() };
        let dests = live_destinations(&config, Path::new("/"), Path::new("/run/diskless"));
        assert_eq!(dests[0], Destination { dir: "/etc".into(), path: "/etc".into() });
        let dests = live_destinations(&Config::default(), Path::new("/"), Path::new("/run/diskless"));
        assert_eq!(dests[0], Destination { dir: "/etc".into(), path: "/etc/local".into() });
    }
}
