//! Making an image diskless (`diskless setup`) and changing which files are kept per
//! machine (`diskless add`, `diskless remove`), as the HOWTO's script did.
//!
//! A listed file `/etc/ssh/ssh_host_rsa_key` of the configured dir `/etc` has three places:
//!
//! - in the image, a relative symlink into the local dir:
//!   `/etc/ssh/ssh_host_rsa_key -> ../local/ssh/ssh_host_rsa_key`;
//! - its content in the base layer, with the original's owner, mode and times:
//!   `/diskless/base/etc/ssh/ssh_host_rsa_key`;
//! - in the image's own local dir, a relative symlink to the base layer, so that a
//!   maintenance chroot sees working files (at boot a tmpfs covers it):
//!   `/etc/local/ssh/ssh_host_rsa_key -> ../../../diskless/base/etc/ssh/ssh_host_rsa_key`.
//!
//! Everything is planned first as a list of [`Action`]s (what `--dry-run` shows), then
//! done in that order. The order keeps every file reachable if the command is
//! interrupted: the content is copied into the base layer first, then the local link
//! made, and only then is the original replaced by its link, in one rename. Nothing is
//! deleted before its replacement exists. A second run finds nothing to do; a run after
//! an interruption finishes the work (a file identical to its base copy is only linked).
//!
//! A symlink that is listed stays a symlink; a relative target is made absolute
//! (`/etc/resolv.conf -> ../run/x` becomes `/run/x` in the base layer), since the copy
//! in the local dir sits one directory deeper and would point elsewhere.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::defaults::{self, DEFAULT_FILES, Hook};
use super::lists::{self, ListError};
use super::tree::{self, Loc, Node};
use crate::config::{self, Config, ConfigWarning, Mode};
use crate::local::LayerKind;

/// The layer kinds below the layer root, as the boot selects them.
pub const LAYER_DIRS: &[&str] =
    &[LayerKind::Base.dir(), LayerKind::Network.dir(), LayerKind::Lab.dir(), LayerKind::Host.dir()];

/// One change to the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write the list of `dir` (`entries` paths in it): a default list, or an edited one.
    WriteList { dir: PathBuf, text: String, entries: usize },
    /// Create a directory: the layer tree, a local dir.
    CreateDir { dir: Loc },
    /// Copy a file or symlink into the base layer, owner, mode and times kept; a
    /// symlink gets `target` when its own had to be made absolute.
    CopyToBase { from: Loc, to: Loc, target: Option<PathBuf> },
    /// Copy the base layer's version aside before a newer one replaces it.
    KeepPrevious { base: Loc, previous: Loc },
    /// Point the image's local dir at the base layer (for a chroot).
    LinkLocal { link: Loc, target: PathBuf },
    /// Replace the file in the image by its link into the local dir.
    LinkImage { link: Loc, target: PathBuf },
    /// Put the base layer's (or the local dir's) content back in place of the link.
    Restore { from: Loc, to: Loc },
    /// Remove a link or a base copy that no longer serves.
    Remove { loc: Loc },
    /// Write `diskless.toml` with the documented defaults.
    WriteConfig { loc: Loc },
    /// Install a hook of the package manager: the dpkg hook that runs `diskless fix
    /// --auto`, the kernel hooks that build and remove initramfs images.
    InstallHook { hook: Hook, loc: Loc },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::WriteList { dir, entries, .. } => {
                write!(f, "write the list /{} ({entries} files of {})", lists::list_file(dir).display(), dir.display())
            }
            Action::CreateDir { dir } => write!(f, "create {}", dir.path().display()),
            Action::CopyToBase { from, to, target } => {
                write!(f, "copy {} to {} (owner, mode and times kept)", from.path().display(), to.path().display())?;
                match target {
                    Some(target) => write!(f, " as a symlink to {}", target.display()),
                    None => Ok(()),
                }
            }
            Action::KeepPrevious { base, previous } => {
                write!(f, "keep the previous {} as {}", base.path().display(), previous.path().display())
            }
            Action::LinkLocal { link, target } | Action::LinkImage { link, target } => {
                write!(f, "link {} -> {}", link.path().display(), target.display())
            }
            Action::Restore { from, to } => {
                write!(f, "put {} back as {} (owner, mode and times kept)", from.path().display(), to.path().display())
            }
            Action::Remove { loc } => write!(f, "remove {}", loc.path().display()),
            Action::WriteConfig { loc } => write!(f, "write {} (the documented defaults)", loc.path().display()),
            Action::InstallHook { hook, loc } => {
                let (name, purpose) = hook.describe();
                write!(f, "install {name} {} ({purpose})", loc.path().display())
            }
        }
    }
}

/// Something found that was left alone, or that needs the administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A default file the image does not have: not listed.
    DefaultAbsent { path: PathBuf },
    /// A default file outside every configured dir: not listed.
    DefaultOutsideDirs { path: PathBuf },
    /// Listed, but in neither the image nor the base layer: linked all the same, so a
    /// layer can provide it; machines of no such layer have a dangling link.
    NoContent { path: PathBuf },
    /// The image's file and the base layer's copy differ: which one is right is the
    /// administrator's call (`diskless fix` takes the image's).
    Conflict { path: PathBuf, base: PathBuf },
    /// A listed path that is a directory or a special file: lists name files.
    NotAFile { path: PathBuf, found: String },
    /// A listed path that cannot be inspected (a symlinked directory on the way, permissions).
    Unreachable { path: PathBuf, error: String },
    /// An entry of the list of `dir` that lies in another configured dir or in the local dir.
    Misplaced { dir: PathBuf, path: PathBuf, owner: PathBuf },
    /// A configured dir that the image does not have: nothing of it is converted.
    DirMissing { path: PathBuf },
    /// `mode = "overlay"`: files stay in place, the layers override them at boot.
    OverlayMode,
    /// The image has no `/etc/apt/apt.conf.d`: no dpkg hook, no kernel hooks.
    NoApt,
    /// A hook file exists with other content: left alone.
    HookDiffers { path: PathBuf },
    /// `remove`: a layer other than the base still has the file; machines of that
    /// layer get it in the local dir only.
    KeptInLayer { path: PathBuf },
    /// `remove`: the path is not listed and not a link into the local dir.
    NotListed { path: PathBuf },
    /// `fix`: dpkg left the package's version of a listed configuration file beside
    /// its link (it follows the link and keeps what it finds).
    PackageVersion { path: PathBuf, base: PathBuf },
}

impl Notice {
    /// Whether the administrator has to do something.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Notice::Conflict { .. }
                | Notice::NotAFile { .. }
                | Notice::Unreachable { .. }
                | Notice::Misplaced { .. }
                | Notice::DirMissing { .. }
        )
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::DefaultAbsent { path } => write!(f, "{}: not in the image, not listed", path.display()),
            Notice::DefaultOutsideDirs { path } => {
                write!(f, "{}: in none of the configured dirs, not listed", path.display())
            }
            Notice::NoContent { path } => write!(
                f,
                "{}: listed but in neither the image nor the base layer; a layer must provide it",
                path.display()
            ),
            Notice::Conflict { path, base } => write!(
                f,
                "{} differs from {}: left alone; `diskless fix` takes the image's version (keeping the other as \
                 .diskless-prev), or delete the one that is wrong",
                path.display(),
                base.display()
            ),
            Notice::NotAFile { path, found } => {
                write!(f, "{} is {found}: left alone; list the files in it instead", path.display())
            }
            Notice::Unreachable { path, error } => write!(
                f,
                "{}: cannot be inspected ({error}); left alone (a symlinked directory on the way is not followed)",
                path.display()
            ),
            Notice::Misplaced { dir, path, owner } => write!(
                f,
                "{} is listed for {} but belongs to {}: left alone; move it to /{}",
                path.display(),
                dir.display(),
                owner.display(),
                lists::list_file(owner).display()
            ),
            Notice::DirMissing { path } => write!(
                f,
                "{}: a configured dir that the image does not have; create it or drop it from dirs",
                path.display()
            ),
            Notice::OverlayMode => {
                write!(f, "mode = \"overlay\": listed files stay in place, the layers override them at boot")
            }
            Notice::NoApt => {
                write!(f, "no /etc/apt/apt.conf.d in the image: no dpkg hook and no kernel hooks installed")
            }
            Notice::HookDiffers { path } => write!(f, "{} exists with other content: left alone", path.display()),
            Notice::KeptInLayer { path } => write!(
                f,
                "{} is still in that layer: its machines get it in the local dir only; delete it if it is no \
                 longer wanted",
                path.display()
            ),
            Notice::NotListed { path } => write!(f, "{}: not listed, nothing to do", path.display()),
            Notice::PackageVersion { path, base } => write!(
                f,
                "{}: the package's version of a listed file, not installed: compare it with {}, move it there if \
                 wanted, then delete it",
                path.display(),
                base.display()
            ),
        }
    }
}

/// What `setup`, `add` or `remove` did, or would do with `dry_run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    pub dry_run: bool,
    /// Problems of the image's configuration (the defaults were used for them).
    pub config_warnings: Vec<ConfigWarning>,
    /// In the order done.
    pub actions: Vec<Action>,
    pub notices: Vec<Notice>,
}

impl SetupReport {
    /// Whether the image was (or would be) changed.
    pub fn changed(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Whether something needs the administrator.
    pub fn has_problems(&self) -> bool {
        self.notices.iter().any(Notice::is_problem)
    }

    /// One line per warning, action and notice; `nothing to do` when nothing changes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for warning in &self.config_warnings {
            out.push_str(&format!("warning: {warning}\n"));
        }
        let verb = if self.dry_run { "would " } else { "" };
        for action in &self.actions {
            out.push_str(&format!("{verb}{action}\n"));
        }
        for notice in &self.notices {
            let kind = if notice.is_problem() { "problem" } else { "note" };
            out.push_str(&format!("{kind}: {notice}\n"));
        }
        if self.actions.is_empty() {
            out.push_str("nothing to do\n");
        }
        out
    }
}

/// Why `setup`, `add` or `remove` stopped. Actions before the failing one are done,
/// and the image is consistent: run the command again after fixing the cause.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error("{}: not an absolute path of the image: write it as the image sees it (/etc/fstab)", .path.display())]
    NotAbsolute { path: PathBuf },
    #[error(
        "{} is in none of the configured dirs ({}): add its directory to dirs in /{} first",
        .path.display(),
        .dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        config::TOML_PATH
    )]
    OutsideDirs { path: PathBuf, dirs: Vec<PathBuf> },
    #[error("{} is inside the local dir {}: name the file of the image (/etc/fstab, not /etc/local/fstab)", .path.display(), .local.display())]
    InLocalDir { path: PathBuf, local: PathBuf },
    #[error("creating the directory {}: {source}: check that the image is writable", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("copying {} to {}: {source}: the original is untouched; free space or fix permissions and run again", .from.display(), .to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("linking {} -> {}: {source}: the original is untouched; run again", .path.display(), .target.display())]
    Link {
        path: PathBuf,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing {}: {source}", .path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {}: {source}: check that the image is writable", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The three places of a listed file (see the module documentation).
#[derive(Debug, Clone)]
pub(super) struct Place {
    pub entry: PathBuf,
    pub image: Loc,
    pub base: Loc,
    pub local: Loc,
}

impl Place {
    pub fn new(config: &Config, dir: &Path, entry: &Path) -> Place {
        let dir_rel = dir.strip_prefix("/").unwrap_or(dir);
        Place {
            entry: entry.to_path_buf(),
            image: Loc::new(dir, entry),
            base: Loc::new(&config.layers, Path::new("base").join(dir_rel).join(entry)),
            local: Loc::new(dir, Path::new(&config.localdir).join(entry)),
        }
    }

    /// The image's link: relative, into the local dir (`local/fstab`, `../local/ssh/k`).
    pub fn image_target(&self) -> PathBuf {
        let depth = self.entry.components().count().saturating_sub(1);
        let mut target: PathBuf = std::iter::repeat_n("..", depth).collect();
        target.push(&self.local.rel);
        target
    }

    /// The local dir's link: relative, to the base layer.
    pub fn local_target(&self) -> PathBuf {
        tree::relative_target(&self.local.path(), &self.base.path())
    }

    /// Whether `target`, the image's symlink, leads into the local dir (as made here or
    /// written by hand, relative or absolute).
    pub fn is_image_link(&self, target: &Path) -> bool {
        target == self.image_target() || tree::absolute_target(&self.image.path(), target) == self.local.path()
    }

    /// The target a copy of the image's symlink `target` gets in the base layer:
    /// relative targets made absolute (`None`: its own).
    pub fn base_target(&self, target: &Path) -> Option<PathBuf> {
        target.is_relative().then(|| tree::absolute_target(&self.image.path(), target))
    }

    /// The image dir that the directory `rel` below the base layer mirrors.
    pub fn base_model(rel: &Path) -> Option<PathBuf> {
        rel.strip_prefix("base").ok().map(|r| Path::new("/").join(r))
    }
}

/// The configuration of the image, as the boot reads it (without a command line).
pub(super) fn load_config(image_root: &Path) -> (Config, Vec<ConfigWarning>) {
    config::load(image_root, &[] as &[(String, Option<String>)])
}

pub(super) fn inspect(image_root: &Path, loc: &Loc) -> Result<Node, Notice> {
    tree::node(image_root, loc).map_err(|e| Notice::Unreachable { path: loc.path(), error: e.to_string() })
}

/// Makes `image_root` diskless, or with `dry_run` says what that would do.
///
/// Reads `diskless.toml` and the `local.d` lists; without lists, writes the defaults
/// ([`DEFAULT_FILES`] present in the image). Creates the layer tree and the local dirs,
/// converts every listed file, writes `diskless.toml` when the image has no
/// configuration file, and installs the dpkg hook. Idempotent.
pub fn setup(image_root: &Path, dry_run: bool) -> Result<SetupReport, SetupError> {
    let (config, config_warnings) = load_config(image_root);
    let mut plan = Plan::default();
    let mut lists = lists::read_lists(image_root, &config.dirs)?;
    if lists.iter().all(|list| !list.exists) {
        lists = default_lists(image_root, &config, &mut plan);
    }
    plan_tree(image_root, &config, &mut plan);
    if config.mode == Mode::Overlay {
        plan.notices.push(Notice::OverlayMode);
    } else {
        for list in &lists {
            for entry in &list.entries {
                plan_entry(image_root, &config, &list.dir, entry, &mut plan);
            }
        }
    }
    plan_config_and_hook(image_root, &mut plan);
    plan.finish(image_root, dry_run, config_warnings)
}

/// Adds `paths` (absolute in the image) to their lists and converts them.
pub fn add(image_root: &Path, paths: &[PathBuf]) -> Result<SetupReport, SetupError> {
    let (config, config_warnings) = load_config(image_root);
    let mut plan = Plan::default();
    plan_tree(image_root, &config, &mut plan);
    // The list first: if the conversion is interrupted, `setup` or `fix` finish it.
    let mut texts = ListTexts::default();
    for path in paths {
        let (dir, entry) = split(&config, path)?;
        let text = texts.get(image_root, &dir)?;
        if let Some(new) = lists::with_entry(&text, &dir, &entry) {
            plan.list_written(&dir, &new, &mut texts);
        }
        if config.mode != Mode::Overlay {
            plan_entry(image_root, &config, &dir, &entry, &mut plan);
        }
    }
    if config.mode == Mode::Overlay {
        plan.notices.push(Notice::OverlayMode);
    }
    plan.finish(image_root, false, config_warnings)
}

/// Removes `paths` (absolute in the image) from their lists and puts their content back
/// in place of the links. Copies in layers other than the base are left and reported.
pub fn remove(image_root: &Path, paths: &[PathBuf]) -> Result<SetupReport, SetupError> {
    let (config, config_warnings) = load_config(image_root);
    let mut plan = Plan::default();
    let mut texts = ListTexts::default();
    for path in paths {
        let (dir, entry) = split(&config, path)?;
        let text = texts.get(image_root, &dir)?;
        // The list first: a file no longer listed but still linked is found again by
        // running `remove` once more, while a file listed but restored would be taken
        // for one a package replaced and moved back by `fix`.
        let listed = match lists::without_entry(&text, &entry) {
            Some(new) => {
                plan.list_written(&dir, &new, &mut texts);
                true
            }
            None => false,
        };
        plan_restore(image_root, &config, &Place::new(&config, &dir, &entry), listed, &mut plan);
    }
    plan.finish(image_root, false, config_warnings)
}

/// The configured dir of `path` and the path below it.
fn split(config: &Config, path: &Path) -> Result<(PathBuf, PathBuf), SetupError> {
    let normal =
        path.is_absolute() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::RootDir));
    if !normal {
        return Err(SetupError::NotAbsolute { path: path.to_path_buf() });
    }
    let dir = defaults::owning_dir(&config.dirs, path)
        .ok_or_else(|| SetupError::OutsideDirs { path: path.to_path_buf(), dirs: config.dirs.clone() })?;
    let entry = path.strip_prefix(dir).unwrap_or(path).to_path_buf();
    if entry.starts_with(&config.localdir) {
        return Err(SetupError::InLocalDir { path: path.to_path_buf(), local: dir.join(&config.localdir) });
    }
    Ok((dir.clone(), entry))
}

/// The lists' texts as read, then as edited by earlier paths of the same command.
#[derive(Default)]
struct ListTexts(Vec<(PathBuf, String)>);

impl ListTexts {
    fn get(&mut self, image_root: &Path, dir: &Path) -> Result<String, ListError> {
        if let Some((_, text)) = self.0.iter().find(|(d, _)| d == dir) {
            return Ok(text.clone());
        }
        let text = lists::read_text(image_root, dir)?.unwrap_or_default();
        self.0.push((dir.to_path_buf(), text.clone()));
        Ok(text)
    }
}

/// Actions and notices being collected.
#[derive(Default)]
pub(super) struct Plan {
    pub actions: Vec<Action>,
    pub notices: Vec<Notice>,
}

impl Plan {
    fn list_written(&mut self, dir: &Path, text: &str, texts: &mut ListTexts) {
        let entries = lists::parse(text, Path::new(""), dir).map(|e| e.len()).unwrap_or(0);
        // One write per list, with the last text.
        self.actions.retain(|a| !matches!(a, Action::WriteList { dir: d, .. } if d == dir));
        self.actions.push(Action::WriteList { dir: dir.to_path_buf(), text: text.to_string(), entries });
        if let Some(slot) = texts.0.iter_mut().find(|(d, _)| d == dir) {
            slot.1 = text.to_string();
        }
    }

    fn finish(
        self,
        image_root: &Path,
        dry_run: bool,
        config_warnings: Vec<ConfigWarning>,
    ) -> Result<SetupReport, SetupError> {
        if !dry_run {
            for action in &self.actions {
                execute(image_root, action)?;
            }
        }
        Ok(SetupReport { dry_run, config_warnings, actions: self.actions, notices: self.notices })
    }
}

/// The default lists: the rows of [`DEFAULT_FILES`] present in the image, each under
/// its innermost configured dir. A list is written for every dir (maybe empty), so the
/// next run reads lists and does not fall back to the defaults again.
fn default_lists(image_root: &Path, config: &Config, plan: &mut Plan) -> Vec<lists::List> {
    let mut per_dir: Vec<(PathBuf, Vec<(PathBuf, &str)>)> =
        config.dirs.iter().map(|d| (d.clone(), Vec::new())).collect();
    for row in DEFAULT_FILES {
        let path = Path::new(row.path);
        let Some(dir) = defaults::owning_dir(&config.dirs, path) else {
            plan.notices.push(Notice::DefaultOutsideDirs { path: path.to_path_buf() });
            continue;
        };
        let entry = path.strip_prefix(dir).unwrap_or(path).to_path_buf();
        match tree::node(image_root, &Loc::new(dir, &entry)) {
            Ok(node) if node.exists() => {
                if let Some((_, rows)) = per_dir.iter_mut().find(|(d, _)| d == dir) {
                    rows.push((entry, row.why));
                }
            }
            _ => plan.notices.push(Notice::DefaultAbsent { path: path.to_path_buf() }),
        }
    }
    per_dir
        .into_iter()
        .map(|(dir, rows)| {
            let text = lists::render_with_reasons(&dir, &rows);
            plan.actions.push(Action::WriteList { dir: dir.clone(), text, entries: rows.len() });
            lists::List {
                file: lists::list_file(&dir),
                entries: rows.into_iter().map(|(entry, _)| entry).collect(),
                dir,
                exists: true,
            }
        })
        .collect()
}

/// The layer tree and the local dir of each configured dir, where missing.
fn plan_tree(image_root: &Path, config: &Config, plan: &mut Plan) {
    let layers = Loc::new("/", config.layers.strip_prefix("/").unwrap_or(&config.layers));
    let mut dirs = Vec::new();
    if !matches!(tree::node(image_root, &layers), Ok(node) if node.exists()) {
        dirs.push(layers);
    }
    dirs.extend(LAYER_DIRS.iter().map(|kind| Loc::new(&config.layers, kind)));
    if config.mode == Mode::Symlink {
        for dir in &config.dirs {
            match tree::node(image_root, &Loc::new("/", dir.strip_prefix("/").unwrap_or(dir))) {
                Ok(Node::Dir(_) | Node::Symlink(..)) => dirs.push(Loc::new(dir, &config.localdir)),
                _ => plan.notices.push(Notice::DirMissing { path: dir.clone() }),
            }
        }
    }
    for dir in dirs {
        match tree::node(image_root, &dir) {
            Ok(Node::Dir(_)) => {}
            Ok(Node::Absent) => plan.actions.push(Action::CreateDir { dir }),
            Ok(other) => plan.notices.push(Notice::NotAFile { path: dir.path(), found: other.describe() }),
            Err(e) => plan.notices.push(Notice::Unreachable { path: dir.path(), error: e.to_string() }),
        }
    }
}

/// `diskless.toml` when the image has no configuration file; the dpkg and kernel hooks
/// on an image with apt.
fn plan_config_and_hook(image_root: &Path, plan: &mut Plan) {
    let etc = |rel: &str| Loc::new("/etc", Path::new(rel).strip_prefix("etc").unwrap_or(Path::new(rel)));
    let absent = |loc: &Loc| matches!(tree::node(image_root, loc), Ok(Node::Absent));
    let toml = etc(config::TOML_PATH);
    if absent(&toml) && absent(&etc(config::LEGACY_PATH)) {
        plan.actions.push(Action::WriteConfig { loc: toml });
    }
    let apt_dir = etc(defaults::DPKG_HOOK_PATH);
    let apt_dir = Loc::new("/etc", apt_dir.rel.parent().unwrap_or(Path::new("")));
    if !matches!(tree::node(image_root, &apt_dir), Ok(Node::Dir(_))) {
        plan.notices.push(Notice::NoApt);
        return;
    }
    for hook in Hook::ALL {
        let loc = etc(hook.path());
        match tree::read_file(image_root, &loc, 1 << 16) {
            Ok(None) => plan.actions.push(Action::InstallHook { hook, loc }),
            Ok(Some(text)) if text == hook.text().as_bytes() => {}
            _ => plan.notices.push(Notice::HookDiffers { path: loc.path() }),
        }
    }
}

/// Where the entry `entry` of the list of `dir` belongs, if not there.
fn misplaced(config: &Config, dir: &Path, entry: &Path) -> Option<PathBuf> {
    let path = dir.join(entry);
    if entry.starts_with(&config.localdir) {
        return Some(dir.join(&config.localdir));
    }
    defaults::owning_dir(&config.dirs, &path).filter(|owner| owner.as_path() != dir).cloned()
}

/// The actions that convert one listed file, from what is there now.
pub(super) fn plan_entry(image_root: &Path, config: &Config, dir: &Path, entry: &Path, plan: &mut Plan) {
    if let Some(owner) = misplaced(config, dir, entry) {
        plan.notices.push(Notice::Misplaced { dir: dir.to_path_buf(), path: dir.join(entry), owner });
        return;
    }
    let place = Place::new(config, dir, entry);
    let (image, base) = match (inspect(image_root, &place.image), inspect(image_root, &place.base)) {
        (Ok(image), Ok(base)) => (image, base),
        (Err(notice), _) | (_, Err(notice)) => return plan.notices.push(notice),
    };
    match image {
        Node::Symlink(_, target) if place.is_image_link(&target) => {
            if !base.exists() && !local_content_to_base(image_root, &place, plan) {
                plan.notices.push(Notice::NoContent { path: place.image.path() });
            }
            plan_local_link(image_root, &place, plan);
        }
        Node::File(_) | Node::Symlink(..) => {
            let target = match &image {
                Node::Symlink(_, target) => place.base_target(target),
                _ => None,
            };
            if base.exists() {
                match tree::same_entry(image_root, &place.image, target.as_deref(), &place.base) {
                    // An interrupted run copied it already.
                    Ok(true) => {}
                    Ok(false) => {
                        return plan
                            .notices
                            .push(Notice::Conflict { path: place.image.path(), base: place.base.path() });
                    }
                    Err(e) => {
                        let error = e.to_string();
                        return plan.notices.push(Notice::Unreachable { path: place.base.path(), error });
                    }
                }
            } else {
                plan.actions.push(Action::CopyToBase { from: place.image.clone(), to: place.base.clone(), target });
            }
            plan_local_link(image_root, &place, plan);
            plan.actions.push(Action::LinkImage { link: place.image.clone(), target: place.image_target() });
        }
        Node::Absent => {
            if !base.exists() {
                plan.notices.push(Notice::NoContent { path: place.image.path() });
            }
            plan_local_link(image_root, &place, plan);
            plan.actions.push(Action::LinkImage { link: place.image.clone(), target: place.image_target() });
        }
        Node::Dir(_) | Node::Other(_) => {
            plan.notices.push(Notice::NotAFile { path: place.image.path(), found: image.describe() })
        }
    }
}

/// A file put by hand in the image's local dir (`/etc/local/motd`) is the content when
/// the base layer has none: it moves there, and the local dir gets its link.
fn local_content_to_base(image_root: &Path, place: &Place, plan: &mut Plan) -> bool {
    match inspect(image_root, &place.local) {
        Ok(Node::File(_)) => {
            plan.actions.push(Action::CopyToBase { from: place.local.clone(), to: place.base.clone(), target: None });
            true
        }
        Ok(Node::Symlink(_, target)) if target != place.local_target() => {
            let target = target.is_relative().then(|| tree::absolute_target(&place.local.path(), &target));
            plan.actions.push(Action::CopyToBase { from: place.local.clone(), to: place.base.clone(), target });
            true
        }
        _ => false,
    }
}

/// The local dir's link to the base layer, unless it is there.
pub(super) fn plan_local_link(image_root: &Path, place: &Place, plan: &mut Plan) {
    let target = place.local_target();
    let moved_here = plan.actions.iter().any(|a| matches!(a, Action::CopyToBase { from, .. } if *from == place.local));
    match inspect(image_root, &place.local) {
        Ok(Node::Symlink(_, t)) if t == target => {}
        Ok(Node::Absent | Node::Symlink(..)) => {
            plan.actions.push(Action::LinkLocal { link: place.local.clone(), target })
        }
        Ok(Node::File(_)) if moved_here => plan.actions.push(Action::LinkLocal { link: place.local.clone(), target }),
        Ok(Node::File(_)) => {
            plan.notices.push(Notice::Conflict { path: place.local.path(), base: place.base.path() });
        }
        Ok(other) => plan.notices.push(Notice::NotAFile { path: place.local.path(), found: other.describe() }),
        Err(notice) => plan.notices.push(notice),
    }
}

/// The actions that put one file back in place of its link.
fn plan_restore(image_root: &Path, config: &Config, place: &Place, listed: bool, plan: &mut Plan) {
    let nodes =
        (inspect(image_root, &place.image), inspect(image_root, &place.base), inspect(image_root, &place.local));
    let (image, base, local) = match nodes {
        (Ok(image), Ok(base), Ok(local)) => (image, base, local),
        (Err(notice), ..) | (_, Err(notice), _) | (.., Err(notice)) => return plan.notices.push(notice),
    };
    let linked = matches!(&image, Node::Symlink(_, target) if place.is_image_link(target));
    if !linked {
        if !listed {
            plan.notices.push(Notice::NotListed { path: place.image.path() });
        }
        return;
    }
    let local_is_link = matches!(&local, Node::Symlink(_, t) if *t == place.local_target());
    let from = match (&base, &local) {
        (Node::File(_) | Node::Symlink(..), _) => Some(place.base.clone()),
        (_, Node::File(_)) => Some(place.local.clone()),
        (_, Node::Symlink(..)) if !local_is_link => Some(place.local.clone()),
        _ => None,
    };
    match from {
        Some(from) => plan.actions.push(Action::Restore { from, to: place.image.clone() }),
        None => {
            plan.notices.push(Notice::NoContent { path: place.image.path() });
            plan.actions.push(Action::Remove { loc: place.image.clone() });
        }
    }
    if local.exists() {
        plan.actions.push(Action::Remove { loc: place.local.clone() });
    }
    if base.exists() {
        plan.actions.push(Action::Remove { loc: place.base.clone() });
    }
    for path in copies_in_layers(image_root, config, place) {
        plan.notices.push(Notice::KeptInLayer { path });
    }
}

/// The file of `place` in the layers other than the base (`/diskless/hosts/lab3-12/etc/fstab`).
fn copies_in_layers(image_root: &Path, config: &Config, place: &Place) -> Vec<PathBuf> {
    let mirrored = place.base.rel.strip_prefix("base").unwrap_or(&place.base.rel);
    let mut found = Vec::new();
    for kind in &LAYER_DIRS[1..] {
        for name in tree::dir_names(image_root, &Loc::new(&config.layers, kind)).unwrap_or_default() {
            let loc = Loc::new(&config.layers, Path::new(kind).join(name).join(mirrored));
            if matches!(tree::node(image_root, &loc), Ok(node) if node.exists()) {
                found.push(loc.path());
            }
        }
    }
    found
}

/// Does one action.
pub(super) fn execute(image_root: &Path, action: &Action) -> Result<(), SetupError> {
    let no_model = |_: &Path| None;
    let parent = |loc: &Loc| Loc::new(&loc.anchor, loc.rel.parent().unwrap_or(Path::new("")));
    let create = |dir: &Loc, like: &dyn Fn(&Path) -> Option<PathBuf>| {
        tree::make_dirs(image_root, dir, like).map_err(|source| SetupError::CreateDir { path: dir.path(), source })
    };
    match action {
        Action::WriteList { dir, text, .. } => lists::write_text(image_root, dir, text)?,
        Action::CreateDir { dir } => create(dir, &no_model)?,
        Action::CopyToBase { from, to, target } => {
            create(&parent(to), &Place::base_model)?;
            tree::copy_entry(image_root, from, to, target.as_deref()).map_err(|source| SetupError::Copy {
                from: from.path(),
                to: to.path(),
                source,
            })?;
        }
        Action::KeepPrevious { base, previous } => tree::copy_entry(image_root, base, previous, None)
            .map_err(|source| SetupError::Copy { from: base.path(), to: previous.path(), source })?,
        Action::LinkLocal { link, target } => {
            // /etc/local/ssh mirrors /etc/ssh.
            let anchor = link.anchor.clone();
            let local_name = link.rel.components().next().map(|c| c.as_os_str().to_owned()).unwrap_or_default();
            let model = move |rel: &Path| rel.strip_prefix(&local_name).ok().map(|r| anchor.join(r));
            create(&parent(link), &model)?;
            tree::link_over(image_root, link, target).map_err(|source| SetupError::Link {
                path: link.path(),
                target: target.clone(),
                source,
            })?;
        }
        Action::LinkImage { link, target } => {
            create(&parent(link), &no_model)?;
            tree::link_over(image_root, link, target).map_err(|source| SetupError::Link {
                path: link.path(),
                target: target.clone(),
                source,
            })?;
        }
        Action::Restore { from, to } => tree::copy_entry(image_root, from, to, None)
            .map_err(|source| SetupError::Copy { from: from.path(), to: to.path(), source })?,
        Action::Remove { loc } => {
            tree::remove(image_root, loc).map_err(|source| SetupError::Remove { path: loc.path(), source })?
        }
        Action::WriteConfig { loc } => tree::write_file(image_root, loc, defaults::DEFAULT_TOML)
            .map_err(|source| SetupError::Write { path: loc.path(), source })?,
        Action::InstallHook { hook, loc } => tree::write_file_mode(image_root, loc, &hook.text(), hook.mode())
            .map_err(|source| SetupError::Write { path: loc.path(), source })?,
    }
    Ok(())
}

/// A small Debian-like image for the tests of this module and of `fix`.
#[cfg(test)]
pub(super) mod testing {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    /// An old, exact mtime: a copy that does not keep it shows.
    pub const MTIME: Duration = Duration::new(1_000_000_000, 123_456_789);

    pub fn file(root: &Path, rel: &str, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        // Times first: a read-only mode would keep an unprivileged test from opening it.
        fs::File::options().write(true).open(&path).unwrap().set_modified(SystemTime::UNIX_EPOCH + MTIME).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn link(root: &Path, rel: &str, target: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    /// What debootstrap leaves of the files setup cares about.
    pub fn debian_image() -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        let root = img.path();
        file(root, "etc/fstab", "# fstab of the image\n", 0o644);
        file(root, "etc/hostname", "master\n", 0o644);
        file(root, "etc/machine-id", "", 0o444);
        file(root, "etc/ssh/ssh_host_ed25519_key", "PRIVATE\n", 0o600);
        file(root, "etc/ssh/ssh_host_ed25519_key.pub", "PUBLIC\n", 0o644);
        file(root, "run/diskless/resolv.conf", "nameserver 10.0.0.1\n", 0o644);
        link(root, "etc/resolv.conf", "../run/diskless/resolv.conf");
        link(root, "var/lib/dbus/machine-id", "/etc/machine-id");
        fs::create_dir_all(root.join("etc/apt/apt.conf.d")).unwrap();
        img
    }

    pub fn target(root: &Path, rel: &str) -> String {
        fs::read_link(root.join(rel)).unwrap().to_string_lossy().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    fn paths(a: &[&str]) -> Vec<PathBuf> {
        a.iter().map(PathBuf::from).collect()
    }

    /// Every entry below `root` with its type, mode and link target: what a run changed.
    fn snapshot(root: &Path) -> Vec<(PathBuf, u32, Option<PathBuf>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path.clone());
                }
                out.push((path.clone(), meta.mode(), fs::read_link(&path).ok()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn setup_converts_the_default_files_keeping_mode_and_mtime() {
        let img = debian_image();
        let root = img.path();
        let report = setup(root, false).unwrap();
        assert!(report.changed() && !report.has_problems(), "{}", report.render());

        assert_eq!(target(root, "etc/fstab"), "local/fstab");
        assert_eq!(target(root, "etc/local/fstab"), "../../diskless/base/etc/fstab");
        assert_eq!(target(root, "etc/ssh/ssh_host_ed25519_key"), "../local/ssh/ssh_host_ed25519_key");
        assert_eq!(
            target(root, "etc/local/ssh/ssh_host_ed25519_key"),
            "../../../diskless/base/etc/ssh/ssh_host_ed25519_key"
        );
        // Through the links, as a chroot sees them.
        assert_eq!(fs::read_to_string(root.join("etc/fstab")).unwrap(), "# fstab of the image\n");
        assert_eq!(fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key")).unwrap(), "PRIVATE\n");
        let key = fs::symlink_metadata(root.join("diskless/base/etc/ssh/ssh_host_ed25519_key")).unwrap();
        assert_eq!((key.mode() & 0o7777, key.mtime(), key.mtime_nsec()), (0o600, 1_000_000_000, 123_456_789));
        // Symlinks stay symlinks; a relative target is made absolute.
        assert_eq!(target(root, "diskless/base/etc/resolv.conf"), "/run/diskless/resolv.conf");
        assert_eq!(target(root, "diskless/base/var/lib/dbus/machine-id"), "/etc/machine-id");
        assert_eq!(target(root, "var/lib/dbus/machine-id"), "../../local/lib/dbus/machine-id");
        assert_eq!(target(root, "var/local/lib/dbus/machine-id"), "../../../../diskless/base/var/lib/dbus/machine-id");
        for kind in LAYER_DIRS {
            assert!(root.join("diskless").join(kind).is_dir(), "{kind}");
        }

        let etc_list = fs::read_to_string(root.join("etc/diskless/local.d/etc")).unwrap();
        assert!(etc_list.contains("# the machine's own name\nhostname\n"), "{etc_list}");
        assert!(!etc_list.contains("adjtime"), "absent files are not listed: {etc_list}");
        assert!(report.notices.contains(&Notice::DefaultAbsent { path: "/etc/adjtime".into() }));
        let var_list = fs::read_to_string(root.join("etc/diskless/local.d/var")).unwrap();
        assert!(var_list.contains("\nlib/dbus/machine-id\n"), "{var_list}");
        assert_eq!(fs::read_to_string(root.join(config::TOML_PATH)).unwrap(), defaults::DEFAULT_TOML);
        assert_eq!(fs::read_to_string(root.join(defaults::DPKG_HOOK_PATH)).unwrap(), defaults::dpkg_hook());
        for hook in Hook::ALL {
            let path = root.join(hook.path());
            assert_eq!(fs::read_to_string(&path).unwrap(), hook.text(), "{}", path.display());
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o7777, hook.mode(), "{}", path.display());
        }
        let text = report.render();
        assert!(
            text.contains(
                "install the kernel hook /etc/kernel/postinst.d/zz-diskless (builds /boot/initrd.img-VERSION with \
                 mkinitramfs for each kernel installed)\n"
            ),
            "{text}"
        );
        assert!(text.contains("link /etc/fstab -> local/fstab\n"), "{text}");
        assert!(text.contains("note: /etc/adjtime: not in the image, not listed\n"), "{text}");
    }

    #[test]
    fn setup_twice_changes_nothing_the_second_time() {
        let img = debian_image();
        setup(img.path(), false).unwrap();
        let before = snapshot(img.path());
        let again = setup(img.path(), false).unwrap();
        assert!(!again.changed(), "{}", again.render());
        assert_eq!(again.render(), "nothing to do\n");
        assert_eq!(snapshot(img.path()), before);
    }

    #[test]
    fn dry_run_writes_nothing_and_shows_the_plan() {
        let img = debian_image();
        let before = snapshot(img.path());
        let plan = setup(img.path(), true).unwrap();
        assert_eq!(snapshot(img.path()), before);
        let text = plan.render();
        assert!(text.contains("would copy /etc/fstab to /diskless/base/etc/fstab"), "{text}");
        assert!(text.contains("would write the list /etc/diskless/local.d/etc ("), "{text}");
        assert_eq!(plan.actions, setup(img.path(), false).unwrap().actions, "the plan is what is done");
    }

    #[test]
    fn an_interrupted_setup_is_finished_by_the_next_run() {
        let img = debian_image();
        let root = img.path();
        let plan = setup(root, true).unwrap();
        // Stop right before the first file is replaced by its link: its copy, the local
        // link and everything earlier are done; a stale temporary lies beside it.
        let stop = plan.actions.iter().position(|a| matches!(a, Action::LinkImage { .. })).unwrap();
        for action in &plan.actions[..stop] {
            execute(root, action).unwrap();
        }
        let Action::LinkImage { link, .. } = &plan.actions[stop] else { unreachable!() };
        fs::write(root.join("etc").join(".fstab.diskless-new"), "half").unwrap();
        assert_eq!(
            fs::read_to_string(root.join(link.path().strip_prefix("/").unwrap())).unwrap(),
            "# fstab of the image\n"
        );
        let rest = setup(root, false).unwrap();
        assert!(!rest.has_problems(), "{}", rest.render());
        let redone = |a: &Action| match a {
            Action::CopyToBase { from, .. } => *from == *link,
            Action::WriteList { .. } | Action::CreateDir { .. } => true,
            _ => false,
        };
        assert!(!rest.actions.iter().any(redone), "{}", rest.render());
        assert_eq!(target(root, "etc/fstab"), "local/fstab");
        assert!(!root.join("etc/.fstab.diskless-new").exists());
        assert!(!setup(root, false).unwrap().changed());
    }

    #[test]
    fn a_file_differing_from_its_base_copy_is_left_alone() {
        let img = debian_image();
        let root = img.path();
        file(root, "diskless/base/etc/fstab", "# the lab's fstab\n", 0o644);
        let report = setup(root, false).unwrap();
        assert!(report.has_problems());
        assert!(
            report
                .notices
                .contains(&Notice::Conflict { path: "/etc/fstab".into(), base: "/diskless/base/etc/fstab".into() })
        );
        assert_eq!(fs::read_to_string(root.join("etc/fstab")).unwrap(), "# fstab of the image\n");
        assert_eq!(fs::read_to_string(root.join("diskless/base/etc/fstab")).unwrap(), "# the lab's fstab\n");
    }

    #[test]
    fn a_nested_dir_gets_its_own_list_and_local_dir() {
        let img = debian_image();
        let root = img.path();
        file(root, config::TOML_PATH, "dirs = [\"/etc\", \"/var\", \"/var/lib\"]\n", 0o644);
        file(root, "var/lib/local/.keep", "", 0o644);
        file(root, "etc/diskless/local.d/var-lib", "dbus/machine-id\n", 0o644);
        file(root, "etc/diskless/local.d/var", "lib/other\n", 0o644);
        let report = setup(root, false).unwrap();
        assert_eq!(target(root, "var/lib/dbus/machine-id"), "../local/dbus/machine-id");
        assert_eq!(target(root, "var/lib/local/dbus/machine-id"), "../../../../diskless/base/var/lib/dbus/machine-id");
        assert_eq!(target(root, "diskless/base/var/lib/dbus/machine-id"), "/etc/machine-id");
        let misplaced =
            Notice::Misplaced { dir: "/var".into(), path: "/var/lib/other".into(), owner: "/var/lib".into() };
        assert!(report.notices.contains(&misplaced), "{}", report.render());
        assert!(report.render().contains("move it to /etc/diskless/local.d/var-lib"));
        // Lists exist: no defaults, /etc's list is empty and written by nobody.
        assert!(!root.join("etc/diskless/local.d/etc").exists());
        assert!(!report.actions.iter().any(|a| matches!(a, Action::WriteConfig { .. })), "the image has a toml");
    }

    #[test]
    fn a_symlinked_dir_pointing_out_of_the_image_is_not_followed() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("img");
        file(&root, "etc/fstab", "x\n", 0o644);
        file(outer.path(), "outside/ssh_host_rsa_key", "NOT THE IMAGE'S\n", 0o600);
        symlink(outer.path().join("outside"), root.join("etc/ssh")).unwrap();
        file(&root, "etc/diskless/local.d/etc", "fstab\nssh/ssh_host_rsa_key\n", 0o644);
        let report = setup(&root, false).unwrap();
        assert!(
            report.notices.iter().any(
                |n| matches!(n, Notice::Unreachable { path, .. } if path == Path::new("/etc/ssh/ssh_host_rsa_key"))
            ),
            "{}",
            report.render()
        );
        assert_eq!(target(&root, "etc/fstab"), "local/fstab");
        assert_eq!(fs::read_dir(outer.path().join("outside")).unwrap().count(), 1);
        assert!(fs::symlink_metadata(outer.path().join("outside/ssh_host_rsa_key")).unwrap().is_file());
        assert!(!root.join("diskless/base/etc/ssh").exists());
    }

    #[test]
    fn an_absolute_layer_root_symlink_resolves_inside_the_image() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("img");
        file(&root, "etc/fstab", "x\n", 0o644);
        file(&root, "etc/diskless/local.d/etc", "fstab\n", 0o644);
        fs::create_dir_all(root.join("srv/layers")).unwrap();
        symlink("/srv/layers", root.join("diskless")).unwrap();
        setup(&root, false).unwrap();
        assert_eq!(fs::read_to_string(root.join("srv/layers/base/etc/fstab")).unwrap(), "x\n");
        assert_eq!(target(&root, "etc/local/fstab"), "../../diskless/base/etc/fstab");
    }

    #[test]
    fn a_file_placed_in_the_image_local_dir_moves_to_the_base_layer() {
        let img = tempfile::tempdir().unwrap();
        let root = img.path();
        link(root, "etc/motd", "local/motd");
        file(root, "etc/local/motd", "welcome\n", 0o644);
        fs::create_dir(root.join("var")).unwrap();
        file(root, "etc/diskless/local.d/etc", "motd\n", 0o644);
        let report = setup(root, false).unwrap();
        assert!(!report.has_problems(), "{}", report.render());
        assert_eq!(fs::read_to_string(root.join("diskless/base/etc/motd")).unwrap(), "welcome\n");
        assert_eq!(target(root, "etc/local/motd"), "../../diskless/base/etc/motd");
        assert!(!setup(root, false).unwrap().changed());
    }

    #[test]
    fn a_legacy_configuration_gets_no_toml() {
        let img = debian_image();
        file(img.path(), config::LEGACY_PATH, "DIRS=\"/etc /var\"\n", 0o644);
        let report = setup(img.path(), false).unwrap();
        assert!(!img.path().join(config::TOML_PATH).exists());
        assert!(!report.actions.iter().any(|a| matches!(a, Action::WriteConfig { .. })));
    }

    #[test]
    fn add_extends_the_list_and_converts_the_file() {
        let img = debian_image();
        let root = img.path();
        setup(root, false).unwrap();
        file(root, "etc/motd", "hello\n", 0o640);
        let report = add(root, &paths(&["/etc/motd", "/var/lib/dbus/machine-id"])).unwrap();
        assert!(report.changed(), "{}", report.render());
        assert_eq!(target(root, "etc/motd"), "local/motd");
        assert_eq!(fs::read_to_string(root.join("etc/motd")).unwrap(), "hello\n");
        let list = fs::read_to_string(root.join("etc/diskless/local.d/etc")).unwrap();
        assert!(list.ends_with("\nmotd\n") && list.contains("# the machine's own name\n"), "{list}");
        assert!(!add(root, &paths(&["/etc/motd"])).unwrap().changed(), "adding twice changes nothing");
    }

    #[test]
    fn add_refuses_a_path_outside_the_dirs_naming_them() {
        let img = debian_image();
        let e = add(img.path(), &paths(&["/usr/share/x"])).unwrap_err();
        assert!(matches!(e, SetupError::OutsideDirs { .. }));
        assert!(e.to_string().contains("(/etc, /var)"), "{e}");
        for bad in ["etc/fstab", "/etc/../usr/x"] {
            assert!(matches!(add(img.path(), &paths(&[bad])), Err(SetupError::NotAbsolute { .. })), "{bad}");
        }
        assert!(matches!(add(img.path(), &paths(&["/etc/local/fstab"])), Err(SetupError::InLocalDir { .. })));
        assert!(!img.path().join("etc/diskless/local.d").exists(), "nothing written");
    }

    #[test]
    fn remove_puts_the_content_back_and_reports_layer_copies() {
        let img = debian_image();
        let root = img.path();
        setup(root, false).unwrap();
        file(root, "diskless/hosts/lab3-12/etc/hostname", "lab3-12\n", 0o644);
        let report = remove(root, &paths(&["/etc/hostname", "/var/lib/dbus/machine-id"])).unwrap();
        let meta = fs::symlink_metadata(root.join("etc/hostname")).unwrap();
        assert!(meta.is_file());
        assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o644, 1_000_000_000));
        assert_eq!(fs::read_to_string(root.join("etc/hostname")).unwrap(), "master\n");
        assert_eq!(target(root, "var/lib/dbus/machine-id"), "/etc/machine-id");
        for gone in ["etc/local/hostname", "diskless/base/etc/hostname", "diskless/base/var/lib/dbus/machine-id"] {
            assert!(fs::symlink_metadata(root.join(gone)).is_err(), "{gone}");
        }
        assert!(report.notices.contains(&Notice::KeptInLayer { path: "/diskless/hosts/lab3-12/etc/hostname".into() }));
        assert!(root.join("diskless/hosts/lab3-12/etc/hostname").exists());
        let list = fs::read_to_string(root.join("etc/diskless/local.d/etc")).unwrap();
        assert!(!list.lines().any(|l| l == "hostname") && list.contains("\nfstab\n"), "{list}");

        let again = remove(root, &paths(&["/etc/hostname"])).unwrap();
        assert!(!again.changed());
        assert_eq!(again.notices, [Notice::NotListed { path: "/etc/hostname".into() }]);
        assert!(!setup(root, false).unwrap().changed(), "setup does not bring it back");
    }
}
