//! Repairing what a package update did to the listed files (`diskless fix`, and
//! `diskless fix --auto` from the dpkg hook), as the HOWTO's `fix` and `autofix` did.
//!
//! dpkg installs a file by renaming the package's version over the path: a listed
//! file's link becomes a regular file (or the package's own symlink), and every machine
//! silently loses its per-host version. `fix` takes the package's version as the new
//! base content (the previous base copy kept beside it as `NAME.diskless-prev`, so a
//! local edit can be merged back) and restores the link, in the order `setup` uses:
//! every file stays reachable if it is interrupted.
//!
//! A configuration file that dpkg did not replace because it is a link (dpkg follows
//! it) may leave the package's version beside it as `NAME.dpkg-new` or `NAME.dpkg-dist`:
//! that is reported, never applied, as dpkg itself would have asked.

use std::fmt;
use std::path::{Path, PathBuf};

use super::lists::{self, ListError};
use super::setup::{self, Action, Notice, Place, Plan, SetupError};
use super::tree::{self, Node};
use crate::config::{ConfigWarning, Mode};

/// Suffix of the base layer's previous copy of a file that `fix` replaced.
pub const PREVIOUS_SUFFIX: &str = ".diskless-prev";
/// What dpkg and ucf leave beside a configuration file they did not replace.
pub const PACKAGE_VERSION_SUFFIXES: &[&str] = &[".dpkg-new", ".dpkg-dist", ".ucf-dist"];

/// What happened to a listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file in place of the link.
    ReplacedByFile,
    /// A symlink that does not lead into the local dir.
    Repointed { target: PathBuf },
    /// Nothing in place of the link.
    Removed,
    /// The link is right but the image's local dir lacks its link to the base layer.
    LocalLinkMissing,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::ReplacedByFile => f.write_str("replaced by a regular file"),
            Found::Repointed { target } => write!(f, "re-pointed to {}", target.display()),
            Found::Removed => f.write_str("removed"),
            Found::LocalLinkMissing => f.write_str("its link in the local dir was missing"),
        }
    }
}

/// One repaired file: what was found and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixItem {
    /// The listed file, as in the image.
    pub path: PathBuf,
    pub found: Found,
    /// In the order done.
    pub actions: Vec<Action>,
}

impl fmt::Display for FixItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.found)?;
        for action in &self.actions {
            let done = match action {
                Action::KeepPrevious { previous, .. } => {
                    format!("kept the previous base copy as {}", previous.path().display())
                }
                Action::CopyToBase { to, .. } => format!("moved the new content to {}", to.path().display()),
                Action::LinkImage { target, .. } => format!("restored the link -> {}", target.display()),
                Action::LinkLocal { link, target } => {
                    format!("linked {} -> {}", link.path().display(), target.display())
                }
                other => other.to_string(),
            };
            write!(f, "; {done}")?;
        }
        Ok(())
    }
}

/// What `fix` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixReport {
    /// Run by the dpkg hook: [`FixReport::render`] says nothing when nothing was fixed.
    pub auto: bool,
    pub config_warnings: Vec<ConfigWarning>,
    pub fixed: Vec<FixItem>,
    /// Left alone: conflicts, package versions of configuration files, unreadable paths.
    pub notices: Vec<Notice>,
}

impl FixReport {
    /// Whether anything was repaired (the command's exit status).
    pub fn anything_fixed(&self) -> bool {
        !self.fixed.is_empty()
    }

    /// One line per repaired file and per notice; `nothing to fix` (not with `auto`).
    pub fn render(&self) -> String {
        let prefix = if self.auto { "diskless fix: " } else { "" };
        let mut out = String::new();
        for item in &self.fixed {
            out.push_str(&format!("{prefix}{item}\n"));
        }
        for notice in &self.notices {
            out.push_str(&format!("{prefix}note: {notice}\n"));
        }
        if self.fixed.is_empty() && self.notices.is_empty() && !self.auto {
            out.push_str("nothing to fix\n");
        }
        out
    }
}

/// Why `fix` stopped. Repairs before the failing one are done.
#[derive(Debug, thiserror::Error)]
pub enum FixError {
    #[error(transparent)]
    List(#[from] ListError),
    /// A repair failed; the file it was about is still reachable.
    #[error("repairing {}: {source}", .path.display())]
    Repair {
        path: PathBuf,
        #[source]
        source: SetupError,
    },
}

/// Finds the listed files of the image at `image_root` that a package update replaced,
/// re-pointed or removed, and repairs them. `auto`: run from the dpkg hook (same
/// repairs; the report renders nothing when there was nothing to do).
pub fn fix(image_root: &Path, auto: bool) -> Result<FixReport, FixError> {
    let (config, config_warnings) = setup::load_config(image_root);
    let mut report = FixReport { auto, config_warnings, fixed: Vec::new(), notices: Vec::new() };
    if config.mode == Mode::Overlay {
        return Ok(report);
    }
    for list in lists::read_lists(image_root, &config.dirs)? {
        for entry in &list.entries {
            let place = Place::new(&config, &list.dir, entry);
            let mut plan = Plan::default();
            let found = plan_fix(image_root, &place, &mut plan);
            report.notices.append(&mut plan.notices);
            report.notices.extend(package_versions(image_root, &place));
            let Some(found) = found else { continue };
            if plan.actions.is_empty() {
                continue;
            }
            for action in &plan.actions {
                setup::execute(image_root, action)
                    .map_err(|source| FixError::Repair { path: place.image.path(), source })?;
            }
            report.fixed.push(FixItem { path: place.image.path(), found, actions: plan.actions });
        }
    }
    Ok(report)
}

/// What happened to one listed file and the actions that repair it.
fn plan_fix(image_root: &Path, place: &Place, plan: &mut Plan) -> Option<Found> {
    let image = match setup::inspect(image_root, &place.image) {
        Ok(node) => node,
        Err(notice) => {
            plan.notices.push(notice);
            return None;
        }
    };
    let found = match &image {
        Node::Symlink(_, target) if place.is_image_link(target) => {
            setup::plan_local_link(image_root, place, plan);
            return (!plan.actions.is_empty()).then_some(Found::LocalLinkMissing);
        }
        Node::File(_) => Found::ReplacedByFile,
        Node::Symlink(_, target) => Found::Repointed { target: target.clone() },
        Node::Absent => Found::Removed,
        Node::Dir(_) | Node::Other(_) => {
            plan.notices.push(Notice::NotAFile { path: place.image.path(), found: image.describe() });
            return None;
        }
    };
    if found != Found::Removed {
        let target = match &image {
            Node::Symlink(_, target) => place.base_target(target),
            _ => None,
        };
        let base = match setup::inspect(image_root, &place.base) {
            Ok(base) => base,
            Err(notice) => {
                plan.notices.push(notice);
                return None;
            }
        };
        // Identical to the base copy (an interrupted `setup` or `fix`): only the link is missing.
        let same = base.exists()
            && tree::same_entry(image_root, &place.image, target.as_deref(), &place.base).unwrap_or(false);
        if !same {
            if base.exists() {
                let previous = place.base.with_suffix(PREVIOUS_SUFFIX);
                plan.actions.push(Action::KeepPrevious { base: place.base.clone(), previous });
            }
            plan.actions.push(Action::CopyToBase { from: place.image.clone(), to: place.base.clone(), target });
        }
    }
    setup::plan_local_link(image_root, place, plan);
    plan.actions.push(Action::LinkImage { link: place.image.clone(), target: place.image_target() });
    Some(found)
}

/// The package's versions of a configuration file left beside the link.
fn package_versions(image_root: &Path, place: &Place) -> Vec<Notice> {
    PACKAGE_VERSION_SUFFIXES
        .iter()
        .map(|suffix| place.image.with_suffix(suffix))
        .filter(|loc| matches!(tree::node(image_root, loc), Ok(node) if node.exists()))
        .map(|loc| Notice::PackageVersion { path: loc.path(), base: place.base.path() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::setup::{setup, testing::*};
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn set_up() -> tempfile::TempDir {
        let img = debian_image();
        setup(img.path(), false).unwrap();
        img
    }

    #[test]
    fn a_file_a_package_replaced_goes_to_the_base_layer_and_the_link_comes_back() {
        let img = set_up();
        let root = img.path();
        // dpkg renames its version over the link.
        fs::remove_file(root.join("etc/fstab")).unwrap();
        file(root, "etc/fstab", "# the package's fstab\n", 0o640);
        let report = fix(root, false).unwrap();
        assert!(report.anything_fixed());
        assert_eq!(target(root, "etc/fstab"), "local/fstab");
        assert_eq!(fs::read_to_string(root.join("etc/fstab")).unwrap(), "# the package's fstab\n");
        let base = fs::metadata(root.join("diskless/base/etc/fstab")).unwrap();
        assert_eq!((base.mode() & 0o7777, base.mtime()), (0o640, 1_000_000_000));
        assert_eq!(
            fs::read_to_string(root.join("diskless/base/etc/fstab.diskless-prev")).unwrap(),
            "# fstab of the image\n"
        );
        assert_eq!(
            report.render(),
            "/etc/fstab: replaced by a regular file; kept the previous base copy as \
             /diskless/base/etc/fstab.diskless-prev; moved the new content to /diskless/base/etc/fstab; restored the \
             link -> local/fstab\n"
        );

        let again = fix(root, false).unwrap();
        assert!(!again.anything_fixed());
        assert_eq!(again.render(), "nothing to fix\n");
        assert_eq!(fix(root, true).unwrap().render(), "", "the hook is quiet when nothing is to do");
    }

    #[test]
    fn a_removed_file_gets_its_link_back_and_the_base_copy_stays() {
        let img = set_up();
        let root = img.path();
        fs::remove_file(root.join("etc/hostname")).unwrap();
        let report = fix(root, true).unwrap();
        assert_eq!(report.fixed.len(), 1);
        assert_eq!(report.fixed[0].found, Found::Removed);
        assert_eq!(fs::read_to_string(root.join("etc/hostname")).unwrap(), "master\n");
        assert!(!root.join("diskless/base/etc/hostname.diskless-prev").exists());
        assert!(report.render().starts_with("diskless fix: /etc/hostname: removed; restored the link"));
    }

    #[test]
    fn a_repointed_symlink_is_kept_as_a_symlink_in_the_base_layer() {
        let img = set_up();
        let root = img.path();
        fs::remove_file(root.join("etc/resolv.conf")).unwrap();
        symlink("../run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
        let report = fix(root, false).unwrap();
        assert_eq!(
            report.fixed[0].found,
            Found::Repointed { target: "../run/systemd/resolve/stub-resolv.conf".into() }
        );
        assert_eq!(target(root, "etc/resolv.conf"), "local/resolv.conf");
        assert_eq!(target(root, "diskless/base/etc/resolv.conf"), "/run/systemd/resolve/stub-resolv.conf");
        assert_eq!(target(root, "diskless/base/etc/resolv.conf.diskless-prev"), "/run/diskless/resolv.conf");
    }

    #[test]
    fn a_file_identical_to_its_base_copy_is_only_linked() {
        let img = set_up();
        let root = img.path();
        fs::remove_file(root.join("etc/hostname")).unwrap();
        file(root, "etc/hostname", "master\n", 0o644);
        let report = fix(root, false).unwrap();
        assert!(matches!(report.fixed[0].actions[..], [Action::LinkImage { .. }]), "{}", report.render());
        assert!(!root.join("diskless/base/etc/hostname.diskless-prev").exists());
    }

    #[test]
    fn a_missing_local_link_is_restored() {
        let img = set_up();
        let root = img.path();
        fs::remove_file(root.join("etc/local/fstab")).unwrap();
        let report = fix(root, false).unwrap();
        assert_eq!(report.fixed[0].found, Found::LocalLinkMissing);
        assert_eq!(fs::read_to_string(root.join("etc/fstab")).unwrap(), "# fstab of the image\n");
    }

    #[test]
    fn a_package_version_left_beside_a_link_is_reported_not_applied() {
        let img = set_up();
        let root = img.path();
        file(root, "etc/fstab.dpkg-new", "# new upstream fstab\n", 0o644);
        let report = fix(root, true).unwrap();
        assert!(!report.anything_fixed());
        assert_eq!(
            report.notices,
            [Notice::PackageVersion { path: "/etc/fstab.dpkg-new".into(), base: "/diskless/base/etc/fstab".into() }]
        );
        assert!(report.render().contains("compare it with /diskless/base/etc/fstab"), "{}", report.render());
        assert_eq!(fs::read_to_string(root.join("etc/fstab")).unwrap(), "# fstab of the image\n");
    }

    #[test]
    fn a_directory_in_place_of_a_listed_file_is_left_alone() {
        let img = set_up();
        let root = img.path();
        fs::remove_file(root.join("etc/hostname")).unwrap();
        fs::create_dir(root.join("etc/hostname")).unwrap();
        let report = fix(root, false).unwrap();
        assert!(!report.anything_fixed());
        assert!(matches!(&report.notices[..], [Notice::NotAFile { .. }]));
        assert!(root.join("etc/hostname").is_dir());
    }
}
