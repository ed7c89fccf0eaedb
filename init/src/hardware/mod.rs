//! Stage `hardware`: coldplug every device, load the matching modules in dependency
//! order (independent ones in parallel), and follow the uevents of the devices that
//! appear while drivers load, until nothing has happened for the settle time.

pub mod index;
pub mod plan;
pub mod report;
pub mod sysfs;
pub mod uevent;

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use crate::cmdline::Cmdline;
use crate::log::{Log, monotonic_secs};
use crate::os::Os;
use crate::{debug, info};
use index::{DbIndex, ModuleIndex};
use plan::{Note, Plan};
use uevent::{Uevent, UeventReader};

/// Timing of the stage, from the command line or the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Quiet time (no uevent, no load running) after which the hardware has settled.
    pub settle: Duration,
    /// Upper bound of the whole stage, however busy the hardware stays.
    pub max: Duration,
    /// Modules loading at the same time.
    pub parallel: usize,
}

impl Settings {
    /// The stage's upper bound and parallelism are fixed; the settle time is the
    /// configuration's `settle_ms` (`diskless.settle_ms=` before the root is mounted).
    pub fn with_settle_ms(settle_ms: u64) -> Settings {
        Settings { settle: Duration::from_millis(settle_ms), max: MAX_DURATION, parallel: PARALLEL_LOADS }
    }
}

/// However busy the hardware stays, the boot goes on after this.
pub const MAX_DURATION: Duration = Duration::from_secs(30);
/// Loads running at once: finit_module mostly waits in the driver's probe, so more
/// loads than CPUs help, but not without bound.
pub const PARALLEL_LOADS: usize = 8;

/// What the hardware stage found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub devices: usize,
    pub modules_loaded: usize,
    pub without_driver: usize,
    /// Names of the modules this stage loaded, in load order (for boot.json).
    pub loaded: Vec<String>,
    /// False when the overall cap ended the stage while things were still happening.
    pub settled: bool,
}

#[derive(Debug)]
pub enum HardwareError {
    /// The module database could not be read.
    ReadDb { path: PathBuf, source: io::Error },
    /// The module database is damaged or of another format version.
    ParseDb { path: PathBuf, reason: String },
}

impl fmt::Display for HardwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HardwareError::ReadDb { path, source } => write!(
                f,
                "reading the module database {}: {source}: the initramfs was not built for this kernel; rebuild it with mkinitramfs for the running kernel version",
                path.display()
            ),
            HardwareError::ParseDb { path, reason } => write!(
                f,
                "reading the module database {}: {reason}: rebuild the initramfs with the mkinitramfs that matches this init",
                path.display()
            ),
        }
    }
}

impl std::error::Error for HardwareError {}

/// Run the stage at the boot: `root` is `/`, the kernel file systems are mounted.
pub fn hardware(
    root: &Path,
    os: Arc<dyn Os>,
    log: Arc<Log>,
    cmdline: &Cmdline,
    settings: Settings,
) -> Result<Summary, HardwareError> {
    let started = Instant::now();
    let (lib_modules, bytes) = read_db(root, &*os)?;
    let index = parse_db(root, &*os, &bytes)?;
    let sys = root.join("sys");

    let (tx, rx) = channel();
    // Listen before the scan: a device added between the scan and the socket would
    // otherwise be missed for good.
    let reader = match UeventReader::start(tx.clone(), Event::Uevent) {
        Ok(reader) => Some(reader),
        Err(e) => {
            info!(
                log,
                "warning: opening the kernel uevent socket: {e}: devices that appear while drivers load will be missed"
            );
            None
        }
    };
    let mut run = Coldplug::new(Setup { index: &index, cmdline, os, log: log.clone(), lib_modules, settings, tx });
    for device in sysfs::scan_devices(&sys) {
        run.device(&device.devpath, &device.modalias);
    }
    let settled = run.settle(&rx);
    if let Some(reader) = reader {
        reader.stop();
    }
    let counts = report::report(&sys, &index, &run.plan, cmdline, &log);
    let summary = Summary {
        devices: counts.devices,
        modules_loaded: run.loaded,
        without_driver: counts.without_driver,
        loaded: run.loaded_names.clone(),
        settled,
    };
    info!(
        log,
        "hardware settled in {} ms (t={:.3} s): {} devices, {} modules loaded, {} without driver",
        started.elapsed().as_millis(),
        monotonic_secs(),
        summary.devices,
        summary.modules_loaded,
        summary.without_driver
    );
    Ok(summary)
}

/// `lib/modules/VERSION` of the running kernel and the bytes of its module database.
fn read_db(root: &Path, os: &dyn Os) -> Result<(PathBuf, Vec<u8>), HardwareError> {
    let release = os.kernel_release();
    let db_file = root.join(modules_db::db_path(&release));
    let bytes = std::fs::read(&db_file).map_err(|source| HardwareError::ReadDb { path: db_file, source })?;
    Ok((root.join("lib/modules").join(&release), bytes))
}

fn parse_db<'a>(root: &Path, os: &dyn Os, bytes: &'a [u8]) -> Result<DbIndex<'a>, HardwareError> {
    let db_file = root.join(modules_db::db_path(&os.kernel_release()));
    let db =
        modules_db::Db::parse(bytes).map_err(|e| HardwareError::ParseDb { path: db_file, reason: e.to_string() })?;
    Ok(DbIndex(db))
}

/// What [`load_modules_by_name`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Modules loaded now, in order.
    pub loaded: Vec<String>,
    /// Requested modules that are not present afterwards, with why.
    pub missing: Vec<(String, String)>,
}

/// Load the modules called `names` and their dependencies on demand (the NFS client
/// after the network is up), with the same database, loader and ordering as the
/// coldplug. Modules already loaded or built in count as present.
pub fn load_modules_by_name(
    root: &Path,
    os: Arc<dyn Os>,
    log: Arc<Log>,
    cmdline: &Cmdline,
    names: &[&str],
) -> Result<Loaded, HardwareError> {
    let (lib_modules, bytes) = read_db(root, &*os)?;
    let index = parse_db(root, &*os, &bytes)?;
    let sys_module = root.join("sys/module");
    let is_live = |name: &str| is_live_module(&sys_module, name);
    Ok(load_by_name(&index, os, log, cmdline, lib_modules, names, &is_live))
}

/// Whether the kernel has `name` loaded and initialised: `/sys/module/<name>/initstate`
/// says `live` (built-in modules have no initstate; the database knows those).
pub fn is_live_module(sys_module: &Path, name: &str) -> bool {
    std::fs::read_to_string(sys_module.join(name).join("initstate")).is_ok_and(|state| state.trim() == "live")
}

/// [`load_modules_by_name`] over any index: no settle time (no device is expected to
/// appear), only the loads themselves.
pub fn load_by_name(
    index: &dyn ModuleIndex,
    os: Arc<dyn Os>,
    log: Arc<Log>,
    cmdline: &Cmdline,
    lib_modules: PathBuf,
    names: &[&str],
    is_live: &dyn Fn(&str) -> bool,
) -> Loaded {
    let (tx, rx) = channel();
    let settings = Settings { settle: Duration::ZERO, max: MAX_DURATION, parallel: PARALLEL_LOADS };
    let mut run = Coldplug::new(Setup { index, cmdline, os, log, lib_modules, settings, tx });
    // Modules already in the kernel (loaded earlier, e.g. in the background) are taken
    // as present: loading them again would make the kernel read and check the whole
    // file only to answer EEXIST.
    for name in names {
        let name = modules_db::normalize_name(name);
        let deps = index.module(&name).map(|entry| entry.depends).unwrap_or_default();
        for module in deps.iter().map(|d| modules_db::normalize_name(d)).chain([name]) {
            if is_live(&module) {
                run.plan.mark_present(&module);
            }
        }
    }
    for name in names {
        run.request_module(name);
    }
    run.settle(&rx);
    let missing = names
        .iter()
        .map(|n| modules_db::normalize_name(n))
        .filter(|n| !run.plan.is_present(n))
        .map(|n| {
            let why = match run.plan.state(&n) {
                Some(plan::State::Failed(why) | plan::State::Skipped(why)) => why.clone(),
                Some(_) => "it did not finish loading".to_string(),
                None => "it is blacklisted by modprobe.blacklist".to_string(),
            };
            (n, why)
        })
        .collect();
    Loaded { loaded: run.loaded_names, missing }
}

/// What the settle loop waits for.
pub enum Event {
    Uevent(Uevent),
    /// A worker's finit_module returned.
    Finished {
        module: String,
        path: PathBuf,
        params: String,
        result: io::Result<()>,
        took: Duration,
    },
}

/// What the coldplug works with.
pub struct Setup<'a> {
    pub index: &'a dyn ModuleIndex,
    pub cmdline: &'a Cmdline,
    pub os: Arc<dyn Os>,
    pub log: Arc<Log>,
    /// `lib/modules/VERSION`: module paths of the database are relative to it.
    pub lib_modules: PathBuf,
    pub settings: Settings,
    /// Where loader threads report; the settle loop holds the receiver.
    pub tx: Sender<Event>,
}

/// Matching devices to modules and running the load plan.
pub struct Coldplug<'a> {
    s: Setup<'a>,
    pub plan: Plan,
    seen: BTreeSet<String>,
    blacklist_logged: BTreeSet<String>,
    running: usize,
    pub loaded: usize,
    /// The modules loaded so far, in the order their loads finished.
    pub loaded_names: Vec<String>,
}

impl<'a> Coldplug<'a> {
    pub fn new(setup: Setup<'a>) -> Self {
        Coldplug {
            s: setup,
            plan: Plan::new(),
            seen: BTreeSet::new(),
            blacklist_logged: BTreeSet::new(),
            running: 0,
            loaded: 0,
            loaded_names: Vec::new(),
        }
    }

    /// A device with a modalias, from the scan or a uevent: plan its modules. Each
    /// device is handled once, whichever way it was seen first.
    pub fn device(&mut self, devpath: &str, modalias: &str) {
        if !self.seen.insert(devpath.to_string()) {
            return;
        }
        let matched = self.s.index.lookup(modalias);
        debug!(self.s.log, "device {devpath} modalias {modalias} matches [{}]", matched.join(" "));
        for module in matched {
            if self.s.index.module(&module).is_some_and(|e| e.is_builtin()) {
                continue;
            }
            self.plan_unless_blacklisted(&module, &format!(" for {devpath}"));
        }
        self.start_ready();
    }

    /// Ask for the module `name` by name (not through a device), with its dependencies;
    /// the blacklist applies as for devices.
    pub fn request_module(&mut self, name: &str) {
        self.plan_unless_blacklisted(&modules_db::normalize_name(name), "");
        self.start_ready();
    }

    /// Add `module` to the plan unless `modprobe.blacklist` names it (said once per
    /// module; `why` tells for what it was wanted).
    fn plan_unless_blacklisted(&mut self, module: &str, why: &str) {
        if self.s.cmdline.is_blacklisted(module) {
            if self.blacklist_logged.insert(module.to_string()) {
                info!(self.s.log, "not loading {module}{why}: blacklisted by modprobe.blacklist");
            }
            return;
        }
        let notes = self.plan.request(module, self.s.index);
        self.log_notes(notes);
    }

    fn log_notes(&self, notes: Vec<Note>) {
        for Note::Skipped { module, reason } in notes {
            info!(self.s.log, "not loading {module}: {reason}");
        }
    }

    /// Hand ready modules to worker threads, up to the parallel limit.
    fn start_ready(&mut self) {
        while self.running < self.s.settings.parallel {
            let Some(job) = self.plan.next_job() else { return };
            let path = self.s.lib_modules.join(&job.path);
            let params = self.s.cmdline.module_options(&job.module);
            let (os, tx, module) = (self.s.os.clone(), self.s.tx.clone(), job.module.clone());
            let (p, o) = (path.clone(), params.clone());
            let spawned = std::thread::Builder::new().name(format!("load {module}")).spawn(move || {
                let started = Instant::now();
                let result = os.finit_module(&p, &o);
                let _ = tx.send(Event::Finished { module, path: p, params: o, result, took: started.elapsed() });
            });
            match spawned {
                Ok(_) => self.running += 1,
                Err(e) => {
                    // Could not start a thread: load it here instead of not at all.
                    let started = Instant::now();
                    debug!(self.s.log, "starting a loader thread: {e}; loading {} inline", job.module);
                    let result = self.s.os.finit_module(&path, &params);
                    self.running += 1;
                    self.finished(job.module, path, params, result, started.elapsed());
                }
            }
        }
    }

    fn finished(&mut self, module: String, path: PathBuf, params: String, result: io::Result<()>, took: Duration) {
        self.running -= 1;
        let outcome = match result {
            Ok(()) => {
                self.loaded += 1;
                self.loaded_names.push(module.clone());
                info!(self.s.log, "loaded {module} in {} ms", took.as_millis());
                debug!(self.s.log, "  {module}: {} options \"{params}\"", path.display());
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                debug!(self.s.log, "{module} was already loaded");
                Ok(())
            }
            Err(e) => {
                let why = format!("{e} ({})", load_error_meaning(&e));
                info!(self.s.log, "module {module} failed to load from {}: {why}", path.display());
                Err(why)
            }
        };
        let notes = self.plan.finish(&module, outcome);
        self.log_notes(notes);
        self.start_ready();
    }

    /// Follow events until the settle time passed with no uevent and no load running,
    /// or the overall cap is reached. Returns whether the hardware settled.
    pub fn settle(&mut self, rx: &Receiver<Event>) -> bool {
        let deadline = Instant::now() + self.s.settings.max;
        let mut last_activity = Instant::now();
        loop {
            self.start_ready();
            let now = Instant::now();
            let quiet_until = last_activity + self.s.settings.settle;
            if self.running == 0 && !self.plan.busy() && now >= quiet_until {
                return true;
            }
            if now >= deadline {
                info!(
                    self.s.log,
                    "warning: hardware still busy after {} ms ({} loads running); going on",
                    self.s.settings.max.as_millis(),
                    self.running
                );
                return false;
            }
            let wake = if self.running > 0 { deadline } else { quiet_until.min(deadline) };
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Event::Uevent(event)) => {
                    // A module's own uevent (a load elsewhere, e.g. the NFS modules fetched
                    // in the background) is no new device: it must not hold the settle.
                    if !event.devpath.starts_with("/module/") {
                        last_activity = Instant::now();
                    }
                    debug!(self.s.log, "uevent {}@{}", event.action, event.devpath);
                    if event.action == "add"
                        && let Some(modalias) = event.modalias()
                    {
                        self.device(&event.devpath, modalias);
                    }
                }
                Ok(Event::Finished { module, path, params, result, took }) => {
                    last_activity = Instant::now();
                    self.finished(module, path, params, result, took);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
    }
}

/// What a finit_module errno means for the administrator.
const LOAD_ERRORS: &[(rustix::io::Errno, &str)] = &[
    (rustix::io::Errno::NOENT, "unknown symbol: a module it needs is missing or failed; see dmesg"),
    (rustix::io::Errno::NOEXEC, "not a module for this kernel: built for another version, or a damaged file"),
    (rustix::io::Errno::INVAL, "the kernel rejected the module or its options; see dmesg"),
    (rustix::io::Errno::NODEV, "the driver found no device it can drive"),
    (rustix::io::Errno::PERM, "module loading is not permitted (lockdown or modules_disabled)"),
    (rustix::io::Errno::KEYREJECTED, "the module signature was rejected"),
    (rustix::io::Errno::NOKEY, "the module is not signed and signatures are enforced"),
    (rustix::io::Errno::BUSY, "the device or a resource it needs is busy"),
    (rustix::io::Errno::NOMEM, "out of memory"),
];

pub fn load_error_meaning(e: &io::Error) -> &'static str {
    let errno = e.raw_os_error();
    LOAD_ERRORS
        .iter()
        .find(|(n, _)| Some(n.raw_os_error()) == errno)
        .map_or("see dmesg for the kernel's reason", |(_, meaning)| meaning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::index::fake::FakeIndex;
    use crate::log::captured;
    use crate::os::fake::FakeOs;
    use std::sync::Mutex;

    fn settings() -> Settings {
        Settings { settle: Duration::from_millis(100), max: Duration::from_secs(10), parallel: 8 }
    }

    fn virtio_index() -> FakeIndex {
        let mut idx = FakeIndex::default();
        idx.add("virtio", &[], &[]);
        idx.add("virtio_ring", &[], &[]);
        idx.add("virtio_pci", &["virtio", "virtio_ring"], &["pci:v00001AF4d*"]);
        idx.add("failover", &[], &[]);
        idx.add("net_failover", &["failover"], &[]);
        idx.add("virtio_net", &["net_failover", "virtio", "virtio_ring"], &["virtio:d00000001v*"]);
        idx.add("e1000", &[], &["pci:v00008086d0000100E*"]);
        idx.add_builtin("serial8250", &["platform:serial8250"]);
        idx
    }

    fn coldplug<'a>(
        idx: &'a FakeIndex,
        cmdline: &'a Cmdline,
        os: Arc<FakeOs>,
        log: Log,
        settings: Settings,
        tx: Sender<Event>,
    ) -> Coldplug<'a> {
        let lib_modules = PathBuf::from("/lib/modules/v");
        Coldplug::new(Setup { index: idx, cmdline, os, log: Arc::new(log), lib_modules, settings, tx })
    }

    fn loads(os: &FakeOs) -> Vec<String> {
        os.calls().into_iter().filter(|c| c.starts_with("load ")).collect()
    }

    #[test]
    fn devices_created_by_a_loading_driver_are_followed_through_uevents() {
        let idx = virtio_index();
        let cmdline = Cmdline::parse("virtio_net.napi_tx=1");
        let os = Arc::new(FakeOs { load_time: Duration::from_millis(5), ..FakeOs::default() });
        let (tx, rx) = channel();
        // The PCI driver creates the virtio device, as the kernel's bus does.
        let bus_tx = Mutex::new(tx.clone());
        *os.on_load.lock().unwrap() = Some(Box::new(move |file| {
            if file == "virtio_pci.ko" {
                let msg =
                    b"add@/devices/pci0000:00/0000:00:03.0/virtio0\0ACTION=add\0MODALIAS=virtio:d00000001v00001AF4\0";
                bus_tx.lock().unwrap().send(Event::Uevent(Uevent::parse(msg).unwrap())).unwrap();
            }
        }));
        let (log, console) = captured();
        let mut run = coldplug(&idx, &cmdline, os.clone(), log, settings(), tx);
        run.device("/devices/pci0000:00/0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00");
        run.device("/devices/platform/serial8250", "platform:serial8250");
        assert!(run.settle(&rx));
        assert_eq!(run.loaded, 6);
        let order = loads(&os);
        let pos = |m: &str| {
            order
                .iter()
                .position(|c| c.starts_with(&format!("load {m}.ko")))
                .unwrap_or_else(|| panic!("{m} not loaded: {order:?}"))
        };
        assert!(pos("virtio") < pos("virtio_pci") && pos("virtio_ring") < pos("virtio_pci"));
        assert!(pos("virtio_pci") < pos("virtio_net") && pos("net_failover") < pos("virtio_net"));
        assert!(order.contains(&"load virtio_net.ko [napi_tx=1]".to_string()), "{order:?}");
        assert!(!order.iter().any(|c| c.contains("serial8250")), "built-in loaded: {order:?}");
        let text = console.text();
        for m in ["virtio", "virtio_ring", "virtio_pci", "failover", "net_failover", "virtio_net"] {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("diskless: loaded {m} in ")) && l.ends_with(" ms")),
                "{m}: {text}"
            );
        }
    }

    #[test]
    fn independent_modules_load_in_parallel() {
        let mut idx = FakeIndex::default();
        for m in ["a", "b", "c", "d"] {
            idx.add(m, &[], &[&format!("test:{m}")]);
        }
        let cmdline = Cmdline::default();
        let os = Arc::new(FakeOs { load_time: Duration::from_millis(300), ..FakeOs::default() });
        let (tx, rx) = channel();
        let (log, _) = captured();
        let mut run =
            coldplug(&idx, &cmdline, os.clone(), log, Settings { settle: Duration::from_millis(10), ..settings() }, tx);
        let started = Instant::now();
        for m in ["a", "b", "c", "d"] {
            run.device(&format!("/devices/{m}"), &format!("test:{m}"));
        }
        assert!(run.settle(&rx));
        assert_eq!(loads(&os).len(), 4);
        // Sequential loading would take 1.2 s.
        assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
    }

    #[test]
    fn failures_are_explained_and_dependents_skipped_while_the_rest_loads() {
        let idx = virtio_index();
        let cmdline = Cmdline::parse("modprobe.blacklist=e1000");
        let os = Arc::new(FakeOs::default());
        os.load_errors.lock().unwrap().insert("failover.ko".into(), rustix::io::Errno::NOEXEC.raw_os_error());
        os.load_errors.lock().unwrap().insert("virtio.ko".into(), rustix::io::Errno::EXIST.raw_os_error());
        let (tx, rx) = channel();
        let (log, console) = captured();
        let mut run = coldplug(&idx, &cmdline, os.clone(), log, settings(), tx);
        run.device("/devices/virtio0", "virtio:d00000001v00001AF4");
        run.device("/devices/pci0000:00/0000:00:05.0", "pci:v00008086d0000100Esv0");
        assert!(run.settle(&rx));
        let text = console.text();
        assert!(
            text.contains("diskless: module failover failed to load from /lib/modules/v/kernel/drivers/failover.ko: "),
            "{text}"
        );
        assert!(text.contains("not a module for this kernel"), "{text}");
        assert!(
            text.contains("diskless: not loading net_failover: it needs failover, and failover failed: "),
            "{text}"
        );
        assert!(text.contains("diskless: not loading virtio_net: it needs net_failover, which was skipped"), "{text}");
        assert!(
            text.contains(
                "diskless: not loading e1000 for /devices/pci0000:00/0000:00:05.0: blacklisted by modprobe.blacklist"
            ),
            "{text}"
        );
        assert!(!text.contains("loaded virtio in"), "EEXIST is not a load of ours: {text}");
        assert!(run.plan.is_present("virtio"), "EEXIST counts as present");
        assert_eq!(run.loaded, 1, "only virtio_ring was loaded by us");
        assert!(!loads(&os).iter().any(|c| c.contains("e1000") || c.contains("virtio_net")));
    }

    #[test]
    fn a_device_seen_by_scan_and_uevent_is_handled_once() {
        let idx = virtio_index();
        let cmdline = Cmdline::default();
        let os = Arc::new(FakeOs::default());
        let (tx, rx) = channel();
        let msg = b"add@/devices/pci0000:00/0000:00:06.0\0MODALIAS=pci:v00008086d0000100Esv0\0";
        tx.send(Event::Uevent(Uevent::parse(msg).unwrap())).unwrap();
        let (log, _) = captured();
        let mut run = coldplug(&idx, &cmdline, os.clone(), log, settings(), tx);
        run.device("/devices/pci0000:00/0000:00:06.0", "pci:v00008086d0000100Esv0");
        assert!(run.settle(&rx));
        assert_eq!(loads(&os), ["load e1000.ko []"]);
    }

    #[test]
    fn the_overall_cap_ends_a_stage_that_never_settles() {
        let idx = virtio_index();
        let cmdline = Cmdline::default();
        let os = Arc::new(FakeOs { load_time: Duration::from_millis(500), ..FakeOs::default() });
        let (tx, rx) = channel();
        let (log, console) = captured();
        let s = Settings { settle: Duration::from_millis(10), max: Duration::from_millis(100), parallel: 2 };
        let mut run = coldplug(&idx, &cmdline, os, log, s, tx);
        run.device("/devices/x", "pci:v00008086d0000100E");
        let started = Instant::now();
        assert!(!run.settle(&rx));
        assert!(started.elapsed() < Duration::from_millis(400), "{:?}", started.elapsed());
        assert!(
            console.text().contains("warning: hardware still busy after 100 ms (1 loads running)"),
            "{}",
            console.text()
        );
    }

    #[test]
    fn modules_by_name_load_with_their_dependencies_in_order_and_missing_ones_are_named() {
        let mut idx = FakeIndex::default();
        idx.add("sunrpc", &[], &[]);
        idx.add("lockd", &["sunrpc"], &[]);
        idx.add("nfs", &["sunrpc", "lockd"], &[]);
        idx.add("nfsv3", &["nfs"], &[]);
        let os = Arc::new(FakeOs { load_time: Duration::from_millis(2), ..FakeOs::default() });
        os.load_errors.lock().unwrap().insert("lockd.ko".into(), rustix::io::Errno::EXIST.raw_os_error());
        let (log, _) = captured();
        let cmdline = Cmdline::default();
        let got = load_by_name(
            &idx,
            os.clone(),
            Arc::new(log),
            &cmdline,
            PathBuf::from("/m"),
            &["nfs", "nfsv3", "nfsv4"],
            &|_| false,
        );
        assert_eq!(got.loaded, ["sunrpc", "nfs", "nfsv3"], "lockd was already loaded");
        assert_eq!(got.missing, [("nfsv4".to_string(), "it is not in the initramfs".to_string())]);
        let loads = loads(&os);
        assert_eq!(loads, ["load sunrpc.ko []", "load lockd.ko []", "load nfs.ko []", "load nfsv3.ko []"]);

        let blacklisted = Cmdline::parse("modprobe.blacklist=nfsv3");
        let (log, console) = captured();
        let got = load_by_name(
            &idx,
            Arc::new(FakeOs::default()),
            Arc::new(log),
            &blacklisted,
            PathBuf::from("/m"),
            &["nfsv3"],
            &|_| false,
        );
        assert_eq!(got.missing, [("nfsv3".to_string(), "it is blacklisted by modprobe.blacklist".to_string())]);
        assert!(console.text().contains("not loading nfsv3: blacklisted by modprobe.blacklist"));
    }

    #[test]
    fn load_errors_have_meanings_and_unknown_ones_point_to_dmesg() {
        let enoexec = io::Error::from_raw_os_error(rustix::io::Errno::NOEXEC.raw_os_error());
        assert!(load_error_meaning(&enoexec).contains("another version"));
        assert_eq!(load_error_meaning(&io::Error::other("x")), "see dmesg for the kernel's reason");
    }
}
