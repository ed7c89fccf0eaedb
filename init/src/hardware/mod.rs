//! Stage `hardware`: coldplug every device, load the matching modules in dependency
//! order (independent ones in parallel), and follow the uevents of the devices that
//! appear while drivers load, until nothing has happened for the settle time.

pub mod index;
pub mod netpath;
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
use std::thread::JoinHandle;
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

/// The quiet time that ends a hurried settle. Disks appear while their controller's
/// driver loads (the kernel waits for the async probes of libata, SCSI scans and NVMe
/// namespaces before finit_module returns), so the full settle time only guards
/// against devices that show up on their own later (USB), which the local stage does
/// not wait for.
pub const HURRIED_QUIET: Duration = Duration::from_millis(100);

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
    /// The coldplug thread could not be started.
    Thread(io::Error),
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
            HardwareError::Thread(e) => write!(
                f,
                "starting the coldplug thread: {e}: the machine is out of memory or threads; check the memory the machine boots with"
            ),
        }
    }
}

impl std::error::Error for HardwareError {}

/// Run the stage at the boot: `root` is `/`, the kernel file systems are mounted.
/// Returns once the network path is ready (see [`netpath`]); the rest of the coldplug
/// goes on in the background until the hardware settles, and joining the returned
/// handle gives its summary. A damaged or missing module database is an error here.
pub fn hardware(
    root: &Path,
    os: Arc<dyn Os>,
    log: Arc<Log>,
    cmdline: &Cmdline,
    settings: Settings,
) -> Result<Background, HardwareError> {
    let env = Env { sys: root.join("sys"), os, log, cmdline: cmdline.clone(), settings, started: Instant::now() };
    let root = root.to_path_buf();
    let (tx, rx) = channel();
    let hurry = tx.clone();
    let background = Background::spawn(move |ready| {
        let (lib_modules, bytes) = read_db(&root, &*env.os)?;
        let index = parse_db(&root, &*env.os, &bytes)?;
        // Listen before the scan: a device added between the scan and the socket would
        // otherwise be missed for good.
        let reader = match UeventReader::start(tx.clone(), Event::Uevent) {
            Ok(reader) => Some(reader),
            Err(e) => {
                info!(
                    env.log,
                    "warning: opening the kernel uevent socket: {e}: devices that appear while drivers load will be missed"
                );
                None
            }
        };
        let summary = run_coldplug(&index, &env, lib_modules, (tx, rx), ready, || {
            if let Some(reader) = reader {
                reader.stop();
            }
        });
        Ok(summary)
    })?;
    Ok(background.with_hurry(hurry))
}

/// What the coldplug thread works with besides the module database.
pub struct Env {
    /// `/sys`.
    pub sys: PathBuf,
    pub os: Arc<dyn Os>,
    pub log: Arc<Log>,
    pub cmdline: Cmdline,
    pub settings: Settings,
    /// When the stage started.
    pub started: Instant,
}

/// Scan, load, follow uevents until settled, and report. `ready` is called once the
/// network path is ready; `settled` when the hardware has settled, before the report.
pub fn run_coldplug(
    index: &dyn ModuleIndex,
    env: &Env,
    lib_modules: PathBuf,
    (tx, rx): (Sender<Event>, Receiver<Event>),
    ready: Ready,
    settled: impl FnOnce(),
) -> Summary {
    let log = env.log.clone();
    let setup = Setup {
        index,
        cmdline: &env.cmdline,
        os: env.os.clone(),
        log: log.clone(),
        lib_modules,
        settings: env.settings.clone(),
        tx,
        sys: Some(env.sys.clone()),
    };
    let mut run = Coldplug::new(setup);
    // All devices are planned before any load starts, so that the network path's
    // modules go first whatever the scan order.
    for device in sysfs::scan_devices(&env.sys) {
        run.plan_device(&device.devpath, &device.modalias);
    }
    let started = env.started;
    let is_settled = run.settle_then(&rx, |run| {
        info!(
            log,
            "network drivers ready in {} ms; {} more loads continue in the background",
            started.elapsed().as_millis(),
            run.plan.pending()
        );
        ready.signal();
    });
    settled();
    let counts = report::report(&env.sys, index, &run.plan, &env.cmdline, &log);
    let summary = Summary {
        devices: counts.devices,
        modules_loaded: run.loaded,
        without_driver: counts.without_driver,
        loaded: run.loaded_names.clone(),
        settled: is_settled,
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
    summary
}

/// Tells [`Background::spawn`] that the network path is ready.
pub struct Ready(Sender<()>);

impl Ready {
    pub fn signal(&self) {
        // The spawner waits on the other end; it is gone only if it panicked itself.
        let _ = self.0.send(());
    }
}

/// The coldplug still running in the background after the stage returned.
pub struct Background {
    state: BackgroundState,
    /// Where [`Background::hurry`] sends [`Event::Hurry`] (the coldplug's event queue).
    hurry: Option<Sender<Event>>,
}

enum BackgroundState {
    Running(JoinHandle<Result<Summary, HardwareError>>),
    /// The work ended before signalling (nothing on the network path was slower than
    /// the whole coldplug, or the overall cap was reached).
    Done(Summary),
}

impl Background {
    /// Run `work` in a thread and return once it called [`Ready`] or ended. An error of
    /// `work` is returned; a panic before the signal is resumed here, in the stage.
    pub fn spawn(
        work: impl FnOnce(Ready) -> Result<Summary, HardwareError> + Send + 'static,
    ) -> Result<Background, HardwareError> {
        let (tx, rx) = channel();
        let spawned = std::thread::Builder::new().name("coldplug".into()).spawn(move || work(Ready(tx)));
        let thread = match spawned {
            Ok(thread) => thread,
            Err(e) => return Err(HardwareError::Thread(e)),
        };
        if rx.recv().is_ok() {
            return Ok(Background { state: BackgroundState::Running(thread), hurry: None });
        }
        match thread.join() {
            Ok(Ok(summary)) => Ok(Background { state: BackgroundState::Done(summary), hurry: None }),
            Ok(Err(e)) => Err(e),
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Wait for the hardware to settle. A panic of the thread becomes the same message
    /// as a stage's panic, for the failure policy.
    pub fn join(self) -> Result<Summary, String> {
        let thread = match self.state {
            BackgroundState::Done(summary) => return Ok(summary),
            BackgroundState::Running(thread) => thread,
        };
        match thread.join() {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(payload) => Err(format!(
                "stage hardware panicked in the background: {}: this is a bug in diskless; please report it with the console log",
                crate::early::panic_message(&*payload)
            )),
        }
    }

    /// Let [`Background::hurry`] reach the coldplug through `events`, its event queue.
    pub fn with_hurry(mut self, events: Sender<Event>) -> Background {
        self.hurry = Some(events);
        self
    }

    /// Ask the coldplug to settle as soon as no load runs and [`HURRIED_QUIET`] passed,
    /// instead of the full settle time: the boot is about to wait for it.
    pub fn hurry(&self) {
        if let Some(events) = &self.hurry {
            // A coldplug that already ended has dropped its queue: nothing to hurry.
            let _ = events.send(Event::Hurry);
        }
    }

    /// Whether the hardware has settled already (joining will not wait).
    pub fn is_finished(&self) -> bool {
        match &self.state {
            BackgroundState::Done(_) => true,
            BackgroundState::Running(thread) => thread.is_finished(),
        }
    }
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
    let mut run = Coldplug::new(Setup { index, cmdline, os, log, lib_modules, settings, tx, sys: None });
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
    /// The boot needs the hardware now (the local stage looks for disks): settle as
    /// soon as nothing loads and [`HURRIED_QUIET`] passed without a device event.
    Hurry,
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
    /// `/sys`, to look under a network device for the devices its driver created;
    /// `None` when only modules by name are loaded.
    pub sys: Option<PathBuf>,
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
    /// Devices on the network path, and whether the devices under them were looked
    /// for since their modules finished.
    net_devices: Vec<(String, bool)>,
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
            net_devices: Vec::new(),
        }
    }

    /// A device with a modalias, from the scan or a uevent: plan its modules and start
    /// what is ready. Each device is handled once, whichever way it was seen first.
    pub fn device(&mut self, devpath: &str, modalias: &str) {
        self.plan_device(devpath, modalias);
        self.start_ready();
    }

    /// [`Coldplug::device`] without starting loads; a device on the network path has
    /// its modules loaded before all others.
    pub fn plan_device(&mut self, devpath: &str, modalias: &str) {
        if !self.seen.insert(devpath.to_string()) {
            return;
        }
        let matched = self.s.index.lookup(modalias);
        let entries: Vec<_> = matched.iter().filter_map(|m| self.s.index.module(m)).collect();
        let network = netpath::network_path(modalias, entries.iter().filter_map(|e| e.path.as_deref()));
        debug!(
            self.s.log,
            "device {devpath} modalias {modalias} matches [{}]{}",
            matched.join(" "),
            network.map(|why| format!(" (network path: {why})")).unwrap_or_default()
        );
        let network = network.is_some();
        if network {
            self.net_devices.push((devpath.to_string(), false));
        }
        for module in matched {
            if self.s.index.module(&module).is_some_and(|e| e.is_builtin()) {
                continue;
            }
            self.plan_unless_blacklisted(&module, &format!(" for {devpath}"), network);
        }
    }

    /// Ask for the module `name` by name (not through a device), with its dependencies;
    /// the blacklist applies as for devices.
    pub fn request_module(&mut self, name: &str) {
        self.plan_unless_blacklisted(&modules_db::normalize_name(name), "", false);
        self.start_ready();
    }

    /// Add `module` to the plan unless `modprobe.blacklist` names it (said once per
    /// module; `why` tells for what it was wanted); `first` for the network path.
    fn plan_unless_blacklisted(&mut self, module: &str, why: &str, first: bool) {
        if self.s.cmdline.is_blacklisted(module) {
            if self.blacklist_logged.insert(module.to_string()) {
                info!(self.s.log, "not loading {module}{why}: blacklisted by modprobe.blacklist");
            }
            return;
        }
        let notes =
            if first { self.plan.request_first(module, self.s.index) } else { self.plan.request(module, self.s.index) };
        self.log_notes(notes);
    }

    /// Whether every device on the network path has its modules loaded (or failed),
    /// and the devices their drivers created were planned.
    fn network_ready(&self) -> bool {
        !self.plan.first_pending() && self.net_devices.iter().all(|(_, scanned)| *scanned)
    }

    /// A driver creates devices of its own as it binds (virtio_pci the virtio device
    /// that virtio_net drives): once the network path's modules are done, the devices
    /// under its devices are planned from sysfs, where the kernel put them before the
    /// load returned, rather than from their uevents, which may come after other loads
    /// have taken the CPU.
    fn look_under_network_devices(&mut self) {
        let Some(sys) = self.s.sys.clone() else { return };
        while !self.plan.first_pending() {
            let unscanned: Vec<String> = self
                .net_devices
                .iter_mut()
                .filter(|(_, scanned)| !*scanned)
                .map(|(devpath, scanned)| {
                    *scanned = true;
                    devpath.clone()
                })
                .collect();
            if unscanned.is_empty() {
                return;
            }
            for devpath in unscanned {
                for device in sysfs::scan_under(&sys, &devpath) {
                    self.plan_device(&device.devpath, &device.modalias);
                }
            }
        }
    }

    fn log_notes(&self, notes: Vec<Note>) {
        for Note::Skipped { module, reason } in notes {
            info!(self.s.log, "not loading {module}: {reason}");
        }
    }

    /// Hand ready modules to worker threads, up to the parallel limit.
    fn start_ready(&mut self) {
        self.look_under_network_devices();
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
        self.settle_then(rx, |_| {})
    }

    /// [`Coldplug::settle`], calling `network_ready` once when the network path is
    /// ready (at the latest when the loop ends).
    pub fn settle_then(&mut self, rx: &Receiver<Event>, network_ready: impl FnOnce(&Self)) -> bool {
        let mut network_ready = Some(network_ready);
        let deadline = Instant::now() + self.s.settings.max;
        let mut last_activity = Instant::now();
        let mut quiet = self.s.settings.settle;
        loop {
            self.start_ready();
            if network_ready.is_some()
                && self.network_ready()
                && let Some(call) = network_ready.take()
            {
                call(self);
            }
            let now = Instant::now();
            let quiet_until = last_activity + quiet;
            if self.running == 0 && !self.plan.busy() && now >= quiet_until {
                if let Some(call) = network_ready.take() {
                    call(self);
                }
                return true;
            }
            if now >= deadline {
                info!(
                    self.s.log,
                    "warning: hardware still busy after {} ms ({} loads running); going on",
                    self.s.settings.max.as_millis(),
                    self.running
                );
                if let Some(call) = network_ready.take() {
                    call(self);
                }
                return false;
            }
            let wake = if self.running > 0 { deadline } else { quiet_until.min(deadline) };
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Event::Uevent(event)) => {
                    if is_hardware_event(&event.devpath) {
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
                Ok(Event::Hurry) => {
                    debug!(self.s.log, "hardware: hurried, settling after {} ms of quiet", HURRIED_QUIET.as_millis());
                    quiet = quiet.min(HURRIED_QUIET);
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
        }
    }
}

/// Whether a uevent at `devpath` is hardware coming up, which holds the settle. Not:
/// a module's own uevent (a load elsewhere, e.g. the NFS modules fetched in the
/// background), kernel objects outside `/devices` (the NFS mount's sunrpc clients),
/// and software devices under `/devices/virtual` (workqueues, a mount's bdi). The
/// coldplug settles in the background while the network and root stages run: their
/// events would otherwise push the settle, and the wait for it, into the local stage.
fn is_hardware_event(devpath: &str) -> bool {
    devpath.starts_with("/devices/") && !devpath.starts_with("/devices/virtual/")
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
    use crate::log::{Capture, captured};
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
        Coldplug::new(Setup { index: idx, cmdline, os, log: Arc::new(log), lib_modules, settings, tx, sys: None })
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

    /// A PIIX IDE controller (first in the scan) and a virtio-net-pci NIC under `sys`.
    fn ide_and_virtio_nic(sys: &Path) -> FakeIndex {
        use sysfs::fake::device;
        device(sys, "/devices/pci0000:00/0000:00:01.1", "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", None);
        device(sys, "/devices/pci0000:00/0000:00:03.0", "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00", None);
        let mut idx = virtio_index();
        idx.add("scsi_mod", &[], &[]);
        idx.add("libata", &["scsi_mod"], &[]);
        idx.add("ata_piix", &["libata"], &["pci:v00008086d00007010*"]);
        idx
    }

    fn env(sys: &Path, os: Arc<FakeOs>, log: Log, settle_ms: u64) -> Env {
        Env {
            sys: sys.to_path_buf(),
            os,
            log: Arc::new(log),
            cmdline: Cmdline::default(),
            settings: Settings { settle: Duration::from_millis(settle_ms), ..settings() },
            started: Instant::now(),
        }
    }

    /// The coldplug of `idx` in the background, as the boot runs it, with `tx` to send
    /// uevents from the test.
    fn background(idx: FakeIndex, env: Env) -> (Result<Background, HardwareError>, Sender<Event>) {
        let (tx, rx) = channel();
        let events = tx.clone();
        let spawned = Background::spawn(move |ready| {
            Ok(run_coldplug(&idx, &env, PathBuf::from("/lib/modules/v"), (tx, rx), ready, || {}))
        });
        (spawned, events)
    }

    #[test]
    fn the_stage_returns_once_the_nic_driver_is_in_and_the_rest_loads_in_the_background() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().to_path_buf();
        let idx = ide_and_virtio_nic(&sys);
        let os = Arc::new(FakeOs { load_time: Duration::from_millis(5), ..FakeOs::default() });
        // virtio_pci creates the virtio device in sysfs before its load returns, as the
        // kernel does; no uevent is sent, so only the look under the NIC finds it. The
        // first ATA load blocks until the test lets it go.
        let (release, released) = channel::<()>();
        let released = Mutex::new(released);
        let virtio0 = sys.join("devices/pci0000:00/0000:00:03.0/virtio0");
        *os.on_load.lock().unwrap() = Some(Box::new(move |file| match file {
            "virtio_pci.ko" => {
                std::fs::create_dir_all(&virtio0).unwrap();
                std::fs::write(virtio0.join("modalias"), "virtio:d00000001v00001AF4\n").unwrap();
            }
            "scsi_mod.ko" => released.lock().unwrap().recv().unwrap(),
            _ => {}
        }));
        let (log, console) = captured();
        let (spawned, _events) = background(idx, env(&sys, os.clone(), log, 50));
        let background = spawned.unwrap();
        let at_return = loads(&os);
        assert!(at_return.contains(&"load virtio_net.ko []".to_string()), "{at_return:?}");
        assert!(!at_return.iter().any(|l| l.contains("ata_piix") || l.contains("libata")), "{at_return:?}");
        assert!(!background.is_finished());
        let text = console.text();
        assert!(
            text.contains("diskless: network drivers ready in ")
                && text.contains(" ms; 3 more loads continue in the background\n"),
            "{text}"
        );
        assert!(!text.contains("hardware settled"), "{text}");
        release.send(()).unwrap();
        let summary = background.join().unwrap();
        assert!(summary.settled);
        assert_eq!(summary.modules_loaded, 9);
        let order = loads(&os);
        let last_net = order.iter().position(|l| l.starts_with("load virtio_net.ko")).unwrap();
        let first_ata = order.iter().position(|l| l.starts_with("load scsi_mod.ko")).unwrap();
        assert!(last_net < first_ata, "the NIC chain loads before the IDE controller's: {order:?}");
        assert!(order.iter().any(|l| l.starts_with("load ata_piix.ko")), "{order:?}");
        assert!(console.text().contains("diskless: hardware settled in "), "{}", console.text());
    }

    #[test]
    fn a_nic_that_appears_after_the_stage_returned_is_still_loaded_in_the_background() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().to_path_buf();
        let idx = virtio_index();
        let os = Arc::new(FakeOs::default());
        let (log, console) = captured();
        // Nothing on the network path at the scan: the stage returns at once.
        let (spawned, events) = background(idx, env(&sys, os.clone(), log, 300));
        let background = spawned.unwrap();
        assert!(console.text().contains("network drivers ready in "), "{}", console.text());
        assert_eq!(loads(&os), Vec::<String>::new());
        let msg =
            b"add@/devices/pci0000:00/0000:00:05.0\0MODALIAS=pci:v00008086d0000100Esv00008086sd00000000bc02sc00i00\0";
        events.send(Event::Uevent(Uevent::parse(msg).unwrap())).unwrap();
        let summary = background.join().unwrap();
        assert_eq!(summary.loaded, ["e1000"]);
        assert_eq!(loads(&os), ["load e1000.ko []"]);
    }

    /// The IDE controller and virtio NIC machine's coldplug in the background, with its
    /// event queue wired for [`Background::hurry`].
    fn hurriable_ide_and_nic(settle_ms: u64) -> (Background, Arc<FakeOs>, Capture, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let idx = ide_and_virtio_nic(tmp.path());
        let os = Arc::new(FakeOs::default());
        let (log, console) = captured();
        let (spawned, events) = background(idx, env(tmp.path(), os.clone(), log, settle_ms));
        (spawned.unwrap().with_hurry(events), os, console, tmp)
    }

    #[test]
    fn a_hurried_coldplug_settles_after_the_short_quiet_not_the_full_settle_time() {
        // The local stage waited out the full settle time after the last storage driver,
        // 0.3 s on the rig, although the disks were in when that load returned.
        let (background, os, console, _tmp) = hurriable_ide_and_nic(60_000);
        let asked = Instant::now();
        background.hurry();
        let summary = background.join().unwrap();
        assert!(asked.elapsed() < Duration::from_secs(20), "waited {:?}", asked.elapsed());
        assert!(summary.settled);
        assert!(loads(&os).iter().any(|l| l.starts_with("load ata_piix.ko")), "{:?}", loads(&os));
        assert!(console.text().contains("diskless: hardware settled in "), "{}", console.text());
    }

    #[test]
    fn an_unhurried_coldplug_still_waits_the_full_settle_time() {
        let (background, _os, _console, _tmp) = hurriable_ide_and_nic(400);
        let asked = Instant::now();
        background.join().unwrap();
        assert!(asked.elapsed() >= Duration::from_millis(300), "settled after {:?}", asked.elapsed());
    }

    #[test]
    fn a_panic_in_the_background_comes_back_when_joined_and_one_before_ready_in_the_stage() {
        let late = Background::spawn(|ready| {
            ready.signal();
            panic!("late trouble")
        });
        assert_eq!(
            late.unwrap().join().unwrap_err(),
            "stage hardware panicked in the background: late trouble: this is a bug in diskless; please report it with the console log"
        );
        let early = std::panic::catch_unwind(|| Background::spawn(|_| panic!("early trouble")));
        let payload = early.err().expect("the panic is resumed in the caller");
        assert_eq!(crate::early::panic_message(&*payload), "early trouble");
    }

    #[test]
    fn a_database_error_is_the_stages_error() {
        let root = tempfile::tempdir().unwrap();
        let (log, _) = captured();
        let err = hardware(root.path(), Arc::new(FakeOs::default()), Arc::new(log), &Cmdline::default(), settings())
            .err()
            .expect("no database");
        assert!(matches!(err, HardwareError::ReadDb { .. }), "{err}");
    }

    #[test]
    fn the_network_and_root_stages_uevents_do_not_hold_the_settle() {
        let idx = virtio_index();
        let cmdline = Cmdline::default();
        let os = Arc::new(FakeOs::default());
        let (tx, rx) = channel();
        let (log, _) = captured();
        let s = Settings { settle: Duration::from_millis(150), max: Duration::from_secs(10), parallel: 8 };
        let mut run = coldplug(&idx, &cmdline, os, log, s, tx.clone());
        // What an NFS mount and module loads elsewhere send, every 30 ms for 600 ms.
        let sender = std::thread::spawn(move || {
            for i in 0..20 {
                let msg = match i % 4 {
                    0 => "add@/kernel/sunrpc/rpc-clients/clnt-0\0".to_string(),
                    1 => "add@/devices/virtual/bdi/0:23\0".to_string(),
                    2 => "add@/module/nfsv3\0".to_string(),
                    _ => "remove@/switch-0/xprt-0-tcp\0".to_string(),
                };
                if tx.send(Event::Uevent(Uevent::parse(msg.as_bytes()).unwrap())).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        let started = Instant::now();
        assert!(run.settle(&rx));
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "held by non-hardware uevents: {:?}",
            started.elapsed()
        );
        drop(rx);
        sender.join().unwrap();

        assert!(is_hardware_event("/devices/pci0000:00/0000:00:01.1/ata1/host0"));
        assert!(!is_hardware_event("/devices/virtual/workqueue/scsi_tmf_0"));
        assert!(!is_hardware_event("/module/virtio_net"));
    }
}
