//! The module database of the boot, read once, and the loads by name that every stage
//! after the hardware stage asks for (the NFS client, overlay, scratch file systems).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::coldplug::{Coldplug, Setup};
use super::index::{DbIndex, ModuleIndex};
use super::plan::{Failure, Skip, State};
use super::{HardwareError, MAX_DURATION, PARALLEL_LOADS, Settings};
use crate::cmdline::Cmdline;
use crate::log::Log;
use crate::os::Os;

/// The parsed module database of the running kernel and what loading needs besides:
/// made once per boot by the hardware stage, then shared by the coldplug and every
/// stage that loads modules by name, from any thread.
pub struct Modules {
    pub(super) index: Box<dyn ModuleIndex + Send + Sync>,
    /// `lib/modules/VERSION`: module paths of the database are relative to it.
    pub(super) lib_modules: PathBuf,
    /// `/sys/module`, where the kernel lists the modules it has.
    sys_module: PathBuf,
    pub(super) os: Arc<dyn Os>,
    pub(super) log: Arc<Log>,
    /// Module options and `modprobe.blacklist`.
    pub(super) cmdline: Cmdline,
    /// Modules this boot loaded (or found loaded): live without asking sysfs again.
    live: Mutex<BTreeSet<String>>,
    /// The root image's `lib/modules/VERSION`, once the modules stage found it: the
    /// database's modules of the image load from there.
    image: OnceLock<PathBuf>,
}

impl Modules {
    /// Read and check the database of the running kernel under `root` (`/` at boot).
    /// A damaged or missing database is the hardware stage's error.
    pub fn open(root: &Path, os: Arc<dyn Os>, log: Arc<Log>, cmdline: &Cmdline) -> Result<Arc<Modules>, HardwareError> {
        let release = os.kernel_release();
        let path = root.join(modules_db::db_path(&release));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) => return Err(HardwareError::ReadDb { path, source }),
        };
        // The reader borrows the bytes it parsed. They are read once per boot and PID 1
        // never exits, so leaking them gives every thread the parsed database without
        // parsing it again per load or a self-referential struct.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let db = modules_db::Db::parse(bytes).map_err(|source| HardwareError::ParseDb { path, source })?;
        let lib_modules = root.join("lib/modules").join(&release);
        Ok(Arc::new(Modules::new(
            Box::new(DbIndex(db)),
            lib_modules,
            root.join("sys/module"),
            os,
            log,
            cmdline.clone(),
        )))
    }

    /// The loader over any index (tests use an in-memory one).
    pub fn new(
        index: Box<dyn ModuleIndex + Send + Sync>,
        lib_modules: PathBuf,
        sys_module: PathBuf,
        os: Arc<dyn Os>,
        log: Arc<Log>,
        cmdline: Cmdline,
    ) -> Modules {
        Modules { index, lib_modules, sys_module, os, log, cmdline, live: Mutex::default(), image: OnceLock::new() }
    }

    /// From now on the modules of the image load from `dir`, the mounted root's
    /// `lib/modules/VERSION`. Set once per boot (by the modules stage).
    pub fn set_image(&self, dir: PathBuf) {
        let _ = self.image.set(dir);
    }

    /// The image's module directory, once set.
    pub fn image_dir(&self) -> Option<&Path> {
        self.image.get().map(PathBuf::as_path)
    }

    /// The file of a load: `path` under the archive's or the image's directory.
    pub(super) fn file(&self, path: &str, in_image: bool) -> PathBuf {
        match self.image_dir().filter(|_| in_image) {
            Some(image) => image.join(path),
            None => self.lib_modules.join(path),
        }
    }

    /// The kernel release the database is for (`uname -r`).
    pub fn release(&self) -> String {
        self.os.kernel_release()
    }

    /// Load the modules called `names` and their dependencies, with the ordering and
    /// parallel loads of the coldplug but no settle time (no device is expected to
    /// appear). Modules already loaded or built in count as present.
    pub fn load(&self, names: &[&str]) -> Loaded {
        let (tx, rx) = channel();
        let settings = Settings { settle: Duration::ZERO, max: MAX_DURATION, parallel: PARALLEL_LOADS };
        let mut run = Coldplug::new(Setup { modules: self, settings, tx, sys: None });
        run.skip_live(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
        for name in names {
            run.request_module(name);
        }
        run.settle(&rx);
        let missing = names
            .iter()
            .map(|n| modules_db::normalize_name(n))
            .filter(|n| !run.plan.is_present(n))
            .map(|module| {
                let reason = match run.plan.state(&module) {
                    Some(State::Failed(failure)) => MissingReason::Failed(failure.clone()),
                    Some(State::Skipped(skip)) => MissingReason::Skipped(skip.clone()),
                    Some(State::Deferred) => MissingReason::NotInImage { release: self.release() },
                    Some(_) => MissingReason::Unfinished,
                    None => MissingReason::Blacklisted,
                };
                Missing { module, reason }
            })
            .collect();
        Loaded { loaded: run.loaded_names, missing }
    }
}

impl Modules {
    /// The module database of the boot, for questions other than loads (the inventory).
    pub fn index(&self) -> &dyn super::index::ModuleIndex {
        &*self.index
    }

    /// Note that `module` is in the kernel now: a later load of it, or of a module that
    /// depends on it, is not asked of the kernel again.
    pub(super) fn note_live(&self, module: &str) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(module.to_string());
    }

    /// Whether `module` is in the kernel: loaded by this boot, or listed live in sysfs
    /// (loaded before init ran, or by the kernel itself).
    pub(super) fn is_live(&self, module: &str) -> bool {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).contains(module) || is_live_module(&self.sys_module, module)
    }

    /// Take those of `names` and their dependencies that are in the kernel already
    /// (loaded earlier, e.g. by the hardware stage) as present in `plan`: loading them
    /// again would make the kernel read and check the whole file only to answer EEXIST.
    pub(super) fn mark_live(&self, plan: &mut super::plan::Plan, names: &[String]) {
        for name in names {
            let name = modules_db::normalize_name(name);
            let deps = self.index.module(&name).map(|entry| entry.depends).unwrap_or_default();
            for module in deps.iter().map(|d| modules_db::normalize_name(d)).chain([name]) {
                if self.is_live(&module) {
                    plan.mark_present(&module);
                }
            }
        }
    }
}

/// Whether the kernel has `name` loaded and initialised: `/sys/module/<name>/initstate`
/// says `live` (built-in modules have no initstate; the database knows those).
pub fn is_live_module(sys_module: &Path, name: &str) -> bool {
    std::fs::read_to_string(sys_module.join(name).join("initstate")).is_ok_and(|state| state.trim() == "live")
}

/// What [`Modules::load`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Modules loaded now, in order.
    pub loaded: Vec<String>,
    /// Requested modules that are not present afterwards, with why.
    pub missing: Vec<Missing>,
}

impl Loaded {
    /// Whether `module` (normalised) was asked for and is not present.
    pub fn is_missing(&self, module: &str) -> bool {
        self.missing.iter().any(|m| m.module == module)
    }

    /// The missing modules with why, as every stage reports them.
    pub fn missing_list(&self) -> MissingList<'_> {
        MissingList(&self.missing)
    }
}

/// A requested module that is not present after [`Modules::load`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{module}: {reason}")]
pub struct Missing {
    /// Normalised name.
    pub module: String,
    #[source]
    pub reason: MissingReason,
}

/// Why a requested module is not present.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissingReason {
    /// Not in the database, or finit_module failed.
    #[error(transparent)]
    Failed(Failure),
    /// A module it needs is missing or failed.
    #[error(transparent)]
    Skipped(Skip),
    #[error("it is blacklisted by modprobe.blacklist")]
    Blacklisted,
    /// Its file (or a dependency's) is one of the root image's, and the image has no
    /// modules for this kernel.
    #[error("it is loaded from the image's /lib/modules/{release}, which the image does not have")]
    NotInImage { release: String },
    /// The loads were cut off by the overall cap.
    #[error("it did not finish loading")]
    Unfinished,
}

/// Missing modules as one line: `module: why; module: why`.
pub struct MissingList<'a>(pub &'a [Missing]);

impl fmt::Display for MissingList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, missing) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{missing}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::coldplug::tests::{loads, modules};
    use crate::hardware::index::fake::FakeIndex;
    use crate::log::captured;
    use crate::os::fake::FakeOs;

    #[test]
    fn modules_by_name_load_with_their_dependencies_in_order_and_missing_ones_are_named() {
        let mut idx = FakeIndex::default();
        idx.add("sunrpc", &[], &[]);
        idx.add("lockd", &["sunrpc"], &[]);
        idx.add("nfs", &["sunrpc", "lockd"], &[]);
        idx.add("nfsv3", &["nfs"], &[]);
        let os = Arc::new(FakeOs::default().with_load_time(Duration::from_millis(2)));
        os.fail_module("lockd.ko", rustix::io::Errno::EXIST.raw_os_error());
        let (log, _) = captured();
        let got = modules(idx, Cmdline::default(), os.clone(), log).load(&["nfs", "nfsv3", "nfsv4"]);
        assert_eq!(got.loaded, ["sunrpc", "nfs", "nfsv3"], "lockd was already loaded");
        let not_in_initramfs = MissingReason::Failed(Failure::NotInInitramfs);
        assert_eq!(got.missing, [Missing { module: "nfsv4".into(), reason: not_in_initramfs }]);
        assert_eq!(got.missing_list().to_string(), "nfsv4: it is not in the initramfs");
        assert_eq!(loads(&os), ["load sunrpc.ko []", "load lockd.ko []", "load nfs.ko []", "load nfsv3.ko []"]);

        let mut idx = FakeIndex::default();
        idx.add("nfsv3", &[], &[]);
        let (log, console) = captured();
        let got =
            modules(idx, Cmdline::parse("modprobe.blacklist=nfsv3"), Arc::new(FakeOs::default()), log).load(&["nfsv3"]);
        assert_eq!(got.missing, [Missing { module: "nfsv3".into(), reason: MissingReason::Blacklisted }]);
        assert_eq!(got.missing_list().to_string(), "nfsv3: it is blacklisted by modprobe.blacklist");
        assert!(console.text().contains("not loading nfsv3: blacklisted by modprobe.blacklist"));
    }

    #[test]
    fn a_failed_load_and_the_modules_it_takes_down_are_missing_with_the_kernels_reason() {
        let mut idx = FakeIndex::default();
        idx.add("sunrpc", &[], &[]);
        idx.add("nfs", &["sunrpc"], &[]);
        let os = Arc::new(FakeOs::default());
        os.fail_module("sunrpc.ko", rustix::io::Errno::NOEXEC.raw_os_error());
        let (log, _) = captured();
        let got = modules(idx, Cmdline::default(), os, log).load(&["sunrpc", "nfs"]);
        assert!(got.is_missing("sunrpc") && got.is_missing("nfs"), "{got:?}");
        assert!(matches!(&got.missing[0].reason, MissingReason::Failed(Failure::Load { .. })), "{got:?}");
        assert_eq!(
            got.missing_list().to_string(),
            "sunrpc: Exec format error (os error 8) (not a module for this kernel: built for another version, or a \
             damaged file); nfs: it needs sunrpc, and sunrpc failed: Exec format error (os error 8) (not a module \
             for this kernel: built for another version, or a damaged file)"
        );
    }

    #[test]
    fn a_database_error_is_the_stages_error() {
        let root = tempfile::tempdir().unwrap();
        let (log, _) = captured();
        let err = Modules::open(root.path(), Arc::new(FakeOs::default()), Arc::new(log), &Cmdline::default())
            .err()
            .expect("no database");
        assert!(matches!(err, HardwareError::ReadDb { .. }), "{err}");
    }
}
