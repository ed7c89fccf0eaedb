//! The mounts that make the local dirs writable: planned as data, executed through
//! the boot's [`Os`].
//!
//! - `symlink` mode: a tmpfs on `<dir>/<localdir>` of each dir. The image is read-only
//!   NFS, so the mountpoint cannot be created at boot: it must exist in the image.
//! - `overlay` mode: one tmpfs under the run dir holding an upper and a work dir per
//!   dir, and an overlayfs on each dir. The overlays are mounted after the layers
//!   were copied into the uppers ([`MountPlan::after_copy`]).

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::OVERLAY_SUBDIR;
use crate::config::{Config, Mode};
use crate::os::{LOCAL_MOUNT_FLAGS, MountFlags, Os};
use rustix::fs::{Mode as FileMode, OFlags};

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum MountAction {
    /// A directory of the image that must exist because something is mounted on it;
    /// `image_path` is the same path as the admin sees it in the image.
    RequireDir {
        path: PathBuf,
        image_path: PathBuf,
    },
    /// A directory outside the image (under the run dir) to create, with the mode and
    /// owner of `like` when given (an overlay's root takes them from its upper).
    MakeDir {
        path: PathBuf,
        like: Option<PathBuf>,
    },
    Tmpfs {
        target: PathBuf,
        options: String,
    },
    Overlay {
        target: PathBuf,
        options: String,
    },
    /// A directory of the scratch disk (DESIGN §6) in place of the tmpfs.
    Bind {
        source: PathBuf,
        target: PathBuf,
    },
}

/// Where the layer files of one configured dir go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// The configured dir, as in the image (`/etc`).
    pub dir: PathBuf,
    /// The directory the files are written into (`<root>/etc/local` or an upper).
    pub path: PathBuf,
}

/// The complete plan of the local mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    /// Run before the layers are copied.
    pub before_copy: Vec<MountAction>,
    /// Run after the layers are copied (the overlays).
    pub after_copy: Vec<MountAction>,
    pub destinations: Vec<Destination>,
}

/// A failed step of the plan.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A mountpoint that must exist in the image cannot be looked at (missing, no access).
    #[error(
        "{} ({}) cannot be used as a mountpoint: {error}; the image is read-only, so the admin must create \
         the directory in the image (mkdir -p <image>{})",
        .image_path.display(),
        .path.display(),
        .image_path.display()
    )]
    MissingDir {
        image_path: PathBuf,
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    /// A mountpoint that must exist in the image is a symlink or a file.
    #[error(
        "{} ({}) is not a directory (a symlink or a file); the image is read-only, so the admin must create \
         the directory in the image (mkdir -p <image>{})",
        .image_path.display(),
        .path.display(),
        .image_path.display()
    )]
    NotADirectory { image_path: PathBuf, path: PathBuf },
    #[error("cannot create {}: {error}", .path.display())]
    MakeDir {
        path: PathBuf,
        #[source]
        error: io::Error,
    },
    #[error("cannot mount a tmpfs on {} with -o {options}: {error} (check tmpfs_size)", .target.display())]
    Tmpfs {
        target: PathBuf,
        options: String,
        #[source]
        error: io::Error,
    },
    #[error(
        "cannot mount an overlay on {} with -o {options}: {error} (is the overlay module in the \
         initramfs? or use mode = \"symlink\")",
        .target.display()
    )]
    Overlay {
        target: PathBuf,
        options: String,
        #[source]
        error: io::Error,
    },
    #[error("cannot bind the scratch directory {} on {}: {error}", .source.display(), .target.display())]
    Bind {
        source: PathBuf,
        target: PathBuf,
        #[source]
        error: io::Error,
    },
}

/// `<image_root>` followed by an absolute image path.
fn in_image(image_root: &Path, path: &Path) -> PathBuf {
    image_root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The mount plan for `config`, the image at `image_root` and private mounts under
/// `run_dir` (`/run/diskless`). Pure: reads nothing.
pub fn plan_mounts(config: &Config, image_root: &Path, run_dir: &Path) -> MountPlan {
    plan_mounts_with_scratch(config, image_root, run_dir, &[])
}

/// [`plan_mounts`] with local dirs on a scratch disk: `scratch` lists `(dir, source)`
/// pairs (`/etc`, `<scratch>/etc/local`) from `scratch::ScratchReport::local_dirs`;
/// in symlink mode those dirs get a bind mount of their source instead of a tmpfs.
/// Overlay mode ignores them (its uppers stay on tmpfs).
pub fn plan_mounts_with_scratch(
    config: &Config,
    image_root: &Path,
    run_dir: &Path,
    scratch: &[(PathBuf, PathBuf)],
) -> MountPlan {
    let tmpfs_options = format!("size={},mode=0755", config.tmpfs_size.mount_option());
    let mut plan = MountPlan { before_copy: Vec::new(), after_copy: Vec::new(), destinations: Vec::new() };
    match config.mode {
        Mode::Symlink => {
            for dir in &config.dirs {
                let image_path = dir.join(&config.localdir);
                let target = in_image(image_root, &image_path);
                plan.before_copy.push(MountAction::RequireDir { path: target.clone(), image_path });
                match scratch.iter().find(|(d, _)| d == dir) {
                    Some((_, source)) => {
                        plan.before_copy.push(MountAction::Bind { source: source.clone(), target: target.clone() })
                    }
                    None => plan
                        .before_copy
                        .push(MountAction::Tmpfs { target: target.clone(), options: tmpfs_options.clone() }),
                }
                plan.destinations.push(Destination { dir: dir.clone(), path: target });
            }
        }
        Mode::Overlay => {
            let base = run_dir.join(OVERLAY_SUBDIR);
            plan.before_copy.push(MountAction::MakeDir { path: base.clone(), like: None });
            plan.before_copy.push(MountAction::Tmpfs { target: base.clone(), options: tmpfs_options });
            // Parents first: an overlay on /var/lib then stacks on the overlay of /var.
            let mut dirs: Vec<&PathBuf> = config.dirs.iter().collect();
            dirs.sort_by_key(|d| d.components().count());
            for (index, dir) in dirs.into_iter().enumerate() {
                let lower = in_image(image_root, dir);
                // The index keeps `/a_b` and `/a/b` apart; the name is for the admin.
                let name = format!("{index}-{}", dir.display().to_string().trim_start_matches('/').replace('/', "_"));
                let upper = base.join(&name).join("upper");
                let work = base.join(&name).join("work");
                plan.before_copy.push(MountAction::RequireDir { path: lower.clone(), image_path: dir.clone() });
                plan.before_copy.push(MountAction::MakeDir { path: upper.clone(), like: Some(lower.clone()) });
                plan.before_copy.push(MountAction::MakeDir { path: work.clone(), like: None });
                plan.after_copy.push(MountAction::Overlay {
                    target: lower.clone(),
                    options: format!(
                        "lowerdir={},upperdir={},workdir={}",
                        lower.display(),
                        upper.display(),
                        work.display()
                    ),
                });
                plan.destinations.push(Destination { dir: dir.clone(), path: upper });
            }
        }
    }
    plan
}

/// `mkdir -p path`, then give the last component `mode` and owner `uid:gid`.
fn make_dir(os: &dyn Os, path: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o755).create(path)?;
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a directory below another"));
    };
    let parent = rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, FileMode::empty())?;
    os.set_owner(parent.as_fd(), name, uid, gid)?;
    // After chown, which clears set-id bits.
    os.set_mode(parent.as_fd(), name, mode)
}

/// Runs `actions` in order through `os`; stops at the first failure.
pub fn execute(actions: &[MountAction], os: &dyn Os) -> Result<(), MountError> {
    for action in actions {
        match action {
            MountAction::RequireDir { path, image_path } => {
                // symlink_metadata: a symlink here would make mount(2) follow it out of
                // the image, since the kernel resolves it against the initramfs root.
                match fs::symlink_metadata(path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(MountError::NotADirectory { image_path: image_path.clone(), path: path.clone() });
                    }
                    Err(error) => {
                        return Err(MountError::MissingDir {
                            image_path: image_path.clone(),
                            path: path.clone(),
                            error,
                        });
                    }
                }
            }
            MountAction::MakeDir { path, like } => {
                let (mode, uid, gid) = match like {
                    Some(like) => fs::metadata(like)
                        .map(|m| (m.mode() & 0o7777, m.uid(), m.gid()))
                        .map_err(|error| MountError::MakeDir { path: path.clone(), error })?,
                    None => (0o755, 0, 0),
                };
                make_dir(os, path, mode, uid, gid)
                    .map_err(|error| MountError::MakeDir { path: path.clone(), error })?;
            }
            MountAction::Tmpfs { target, options } => os
                .mount("tmpfs", target, "tmpfs", LOCAL_MOUNT_FLAGS, options)
                .map_err(|error| MountError::Tmpfs { target: target.clone(), options: options.clone(), error })?,
            MountAction::Overlay { target, options } => os
                .mount("overlay", target, "overlay", MountFlags::empty(), options)
                .map_err(|error| MountError::Overlay { target: target.clone(), options: options.clone(), error })?,
            MountAction::Bind { source, target } => os
                .bind_mount(source, target)
                .map_err(|error| MountError::Bind { source: source.clone(), target: target.clone(), error })?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TmpfsSize;
    use crate::os::fake::{Call, FakeOs, Kind};

    fn config(mode: Mode, dirs: &[&str]) -> Config {
        Config { mode, dirs: dirs.iter().map(PathBuf::from).collect(), ..Config::default() }
    }

    #[test]
    fn symlink_mode_mounts_a_tmpfs_on_each_local_dir() {
        let plan =
            plan_mounts(&config(Mode::Symlink, &["/etc", "/var"]), Path::new("/root"), Path::new("/run/diskless"));
        assert_eq!(
            plan.before_copy,
            [
                MountAction::RequireDir { path: "/root/etc/local".into(), image_path: "/etc/local".into() },
                MountAction::Tmpfs { target: "/root/etc/local".into(), options: "size=25%,mode=0755".into() },
                MountAction::RequireDir { path: "/root/var/local".into(), image_path: "/var/local".into() },
                MountAction::Tmpfs { target: "/root/var/local".into(), options: "size=25%,mode=0755".into() },
            ]
        );
        assert_eq!(plan.after_copy, []);
        assert_eq!(
            plan.destinations,
            [
                Destination { dir: "/etc".into(), path: "/root/etc/local".into() },
                Destination { dir: "/var".into(), path: "/root/var/local".into() },
            ]
        );
    }

    #[test]
    fn tmpfs_size_and_localdir_come_from_the_config() {
        let mut c = config(Mode::Symlink, &["/etc"]);
        c.tmpfs_size = TmpfsSize::Bytes(64 << 20);
        c.localdir = "site".into();
        let plan = plan_mounts(&c, Path::new("/root"), Path::new("/run/diskless"));
        assert_eq!(
            plan.before_copy[1],
            MountAction::Tmpfs { target: "/root/etc/site".into(), options: format!("size={},mode=0755", 64 << 20) }
        );
    }

    #[test]
    fn overlay_mode_copies_into_uppers_then_mounts_overlays() {
        let plan = plan_mounts(&config(Mode::Overlay, &["/etc"]), Path::new("/root"), Path::new("/run/diskless"));
        assert_eq!(
            plan.before_copy,
            [
                MountAction::MakeDir { path: "/run/diskless/overlay".into(), like: None },
                MountAction::Tmpfs { target: "/run/diskless/overlay".into(), options: "size=25%,mode=0755".into() },
                MountAction::RequireDir { path: "/root/etc".into(), image_path: "/etc".into() },
                MountAction::MakeDir {
                    path: "/run/diskless/overlay/0-etc/upper".into(),
                    like: Some("/root/etc".into())
                },
                MountAction::MakeDir { path: "/run/diskless/overlay/0-etc/work".into(), like: None },
            ]
        );
        assert_eq!(
            plan.after_copy,
            [MountAction::Overlay {
                target: "/root/etc".into(),
                options: "lowerdir=/root/etc,upperdir=/run/diskless/overlay/0-etc/upper,workdir=/run/diskless/overlay/0-etc/work".into(),
            }]
        );
        assert_eq!(
            plan.destinations,
            [Destination { dir: "/etc".into(), path: "/run/diskless/overlay/0-etc/upper".into() }]
        );
    }

    #[test]
    fn overlay_mode_mounts_parents_first_and_keeps_similar_names_apart() {
        let plan = plan_mounts(
            &config(Mode::Overlay, &["/var/lib", "/a_b", "/var", "/a/b"]),
            Path::new("/r"),
            Path::new("/run/d"),
        );
        let targets: Vec<_> = plan
            .after_copy
            .iter()
            .map(|a| match a {
                MountAction::Overlay { target, .. } => target.display().to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(targets, ["/r/a_b", "/r/var", "/r/var/lib", "/r/a/b"]);
        let uppers: Vec<_> = plan.destinations.iter().map(|d| d.path.display().to_string()).collect();
        assert_eq!(
            uppers,
            [
                "/run/d/overlay/0-a_b/upper",
                "/run/d/overlay/1-var/upper",
                "/run/d/overlay/2-var_lib/upper",
                "/run/d/overlay/3-a_b/upper"
            ]
        );
    }

    #[test]
    fn no_dirs_means_no_mounts_in_symlink_mode() {
        let plan = plan_mounts(&config(Mode::Symlink, &[]), Path::new("/root"), Path::new("/run/diskless"));
        assert_eq!((plan.before_copy.len(), plan.destinations.len()), (0, 0));
    }

    fn tmpfs(target: PathBuf) -> Call {
        let options = "size=25%,mode=0755".into();
        Call::Mount { source: "tmpfs".into(), target, fstype: "tmpfs".into(), flags: LOCAL_MOUNT_FLAGS, data: options }
    }

    #[test]
    fn scratch_dirs_are_bound_instead_of_tmpfs_in_symlink_mode() {
        let scratch = [(PathBuf::from("/var"), PathBuf::from("/root/mnt/scratch/var/local"))];
        let plan = plan_mounts_with_scratch(
            &config(Mode::Symlink, &["/etc", "/var"]),
            Path::new("/root"),
            Path::new("/run/d"),
            &scratch,
        );
        assert_eq!(
            plan.before_copy[1],
            MountAction::Tmpfs { target: "/root/etc/local".into(), options: "size=25%,mode=0755".into() }
        );
        assert_eq!(
            plan.before_copy[3],
            MountAction::Bind { source: "/root/mnt/scratch/var/local".into(), target: "/root/var/local".into() }
        );
        assert_eq!(plan.destinations[1].path, Path::new("/root/var/local"));
        let overlay = plan_mounts_with_scratch(
            &config(Mode::Overlay, &["/var"]),
            Path::new("/root"),
            Path::new("/run/d"),
            &scratch,
        );
        assert_eq!(overlay, plan_mounts(&config(Mode::Overlay, &["/var"]), Path::new("/root"), Path::new("/run/d")));
    }

    #[test]
    fn missing_mountpoint_in_the_image_is_reported_for_the_admin() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("etc/local")).unwrap();
        fs::create_dir_all(img.path().join("var")).unwrap();
        let plan = plan_mounts(&config(Mode::Symlink, &["/etc", "/var"]), img.path(), Path::new("/run/diskless"));
        let os = FakeOs::default();
        let err = execute(&plan.before_copy, &os).unwrap_err();
        assert_eq!(os.calls(), [tmpfs(img.path().join("etc/local"))]);
        let msg = err.to_string();
        assert!(msg.starts_with("/var/local ("), "{msg}");
        assert!(msg.contains("create the directory in the image"), "{msg}");
    }

    #[test]
    fn symlinked_mountpoint_is_refused() {
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/tmp", img.path().join("etc/local")).unwrap();
        let plan = plan_mounts(&config(Mode::Symlink, &["/etc"]), img.path(), Path::new("/run/diskless"));
        let err = execute(&plan.before_copy, &FakeOs::default()).unwrap_err();
        assert!(matches!(err, MountError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn upper_dir_takes_mode_and_owner_of_the_lower_dir() {
        use std::os::unix::fs::PermissionsExt;
        let img = tempfile::tempdir().unwrap();
        fs::create_dir_all(img.path().join("srv")).unwrap();
        fs::set_permissions(img.path().join("srv"), fs::Permissions::from_mode(0o1775)).unwrap();
        let owner = fs::metadata(img.path().join("srv")).unwrap();
        let run = tempfile::tempdir().unwrap();
        let plan = plan_mounts(&config(Mode::Overlay, &["/srv"]), img.path(), run.path());
        let os = FakeOs::default();
        execute(&plan.before_copy, &os).unwrap();
        assert!(run.path().join("overlay/0-srv/upper").is_dir() && run.path().join("overlay/0-srv/work").is_dir());
        let attributes: Vec<Call> =
            os.calls().into_iter().filter(|c| matches!(c.kind(), Kind::SetOwner | Kind::SetMode)).collect();
        assert_eq!(
            attributes[2..],
            [
                Call::SetOwner { name: "upper".into(), uid: owner.uid(), gid: owner.gid() },
                Call::SetMode { name: "upper".into(), mode: 0o1775 },
                Call::SetOwner { name: "work".into(), uid: 0, gid: 0 },
                Call::SetMode { name: "work".into(), mode: 0o755 },
            ]
        );
    }

    #[test]
    fn failed_overlay_names_target_and_options() {
        let plan = plan_mounts(&config(Mode::Overlay, &["/etc"]), Path::new("/root"), Path::new("/run/d"));
        let os = FakeOs::default();
        os.fail_nth(Kind::Mount, 1, 19);
        let err = execute(&plan.after_copy, &os).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("overlay on /root/etc with -o lowerdir=/root/etc,"), "{msg}");
        assert!(msg.contains("mode = \"symlink\""), "{msg}");
    }
}
