//! The coldplug: match every device to its modules, load them in dependency order
//! (independent ones in parallel, the network path's first), and follow the uevents of
//! the devices that appear while drivers load, until nothing has happened for the
//! settle time.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::background::Ready;
use super::index::ModuleEntry;
use super::loader::Modules;
use super::plan::{Failure, Note, Plan};
use super::uevent::Uevent;
use super::{HURRIED_QUIET, Settings, Summary, netpath, report, sysfs};
use crate::log::monotonic_secs;
use crate::{debug, info};

/// What the coldplug thread works with.
pub struct Env {
    /// `/sys`.
    pub sys: PathBuf,
    /// The database of the boot, with the system and the command line to load through.
    pub modules: Arc<Modules>,
    pub settings: Settings,
    /// When the stage started.
    pub started: Instant,
}

/// Scan, load, follow uevents until settled, and report. `ready` is called once the
/// network path is ready; `settled` when the hardware has settled, before the report.
pub fn run_coldplug(
    env: &Env,
    (tx, rx): (Sender<Event>, Receiver<Event>),
    ready: Ready,
    settled: impl FnOnce(),
) -> Summary {
    let modules = &*env.modules;
    let log = modules.log.clone();
    let setup = Setup { modules, settings: env.settings.clone(), tx, sys: Some(env.sys.clone()) };
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
    let fleet = std::fs::read_to_string(modules.lib_modules.join(modules_db::fleet::MARKER_NAME)).ok();
    let counts = report::report(&env.sys, &*modules.index, &run.plan, &modules.cmdline, fleet.as_deref(), &log);
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
    /// The database and what loads go through.
    pub modules: &'a Modules,
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
    /// Only devices whose modalias passes are planned (the modules stage's disk path);
    /// the others are left for later, unseen.
    only: Option<fn(&str, &[ModuleEntry]) -> bool>,
}

impl<'a> Coldplug<'a> {
    pub fn new(setup: Setup<'a>) -> Self {
        Coldplug {
            plan: Plan::with_image(setup.modules.image_dir().is_some()),
            s: setup,
            seen: BTreeSet::new(),
            blacklist_logged: BTreeSet::new(),
            running: 0,
            loaded: 0,
            loaded_names: Vec::new(),
            net_devices: Vec::new(),
            only: None,
        }
    }

    /// Plan only the devices that `only` accepts by their modalias and the modules it
    /// matches, from the scan and from uevents.
    pub fn only(mut self, only: fn(&str, &[ModuleEntry]) -> bool) -> Self {
        self.only = Some(only);
        self
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
        let matched = self.s.modules.index.lookup(modalias);
        let entries: Vec<_> = matched.iter().filter_map(|m| self.s.modules.index.module(m)).collect();
        if self.only.is_some_and(|only| !only(modalias, &entries)) {
            return;
        }
        if !self.seen.insert(devpath.to_string()) {
            return;
        }
        let network = netpath::network_path(modalias, entries.iter().filter_map(|e| e.path.as_deref()));
        debug!(
            self.s.modules.log,
            "device {devpath} modalias {modalias} matches [{}]{}",
            matched.join(" "),
            network.map(|why| format!(" (network path: {why})")).unwrap_or_default()
        );
        let network = network.is_some();
        if network {
            self.net_devices.push((devpath.to_string(), false));
        }
        for module in matched {
            if self.s.modules.index.module(&module).is_some_and(|e| e.is_builtin()) {
                continue;
            }
            self.plan_unless_blacklisted(&module, &format!(" for {devpath}"), network);
        }
    }

    /// Take those of `names` and their dependencies that are in the kernel already
    /// (loaded earlier, e.g. by the hardware stage) as present: loading them again would
    /// make the kernel read and check the whole file only to answer EEXIST.
    pub fn skip_live(&mut self, names: &[String]) {
        self.s.modules.mark_live(&mut self.plan, names);
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
        if self.s.modules.cmdline.is_blacklisted(module) {
            if self.blacklist_logged.insert(module.to_string()) {
                info!(self.s.modules.log, "not loading {module}{why}: blacklisted by modprobe.blacklist");
            }
            return;
        }
        let notes = if first {
            self.plan.request_first(module, &*self.s.modules.index)
        } else {
            self.plan.request(module, &*self.s.modules.index)
        };
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
            info!(self.s.modules.log, "not loading {module}: {reason}");
        }
    }

    /// Hand ready modules to worker threads, up to the parallel limit.
    fn start_ready(&mut self) {
        self.look_under_network_devices();
        while self.running < self.s.settings.parallel {
            let Some(job) = self.plan.next_job() else { return };
            let path = self.s.modules.file(&job.path, job.in_image);
            let params = self.s.modules.cmdline.module_options(&job.module);
            let (os, tx, module) = (self.s.modules.os.clone(), self.s.tx.clone(), job.module.clone());
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
                    debug!(self.s.modules.log, "starting a loader thread: {e}; loading {} inline", job.module);
                    let result = self.s.modules.os.finit_module(&path, &params);
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
                self.s.modules.note_live(&module);
                info!(self.s.modules.log, "loaded {module} in {} ms", took.as_millis());
                debug!(self.s.modules.log, "  {module}: {} options \"{params}\"", path.display());
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::EXIST.raw_os_error()) => {
                self.s.modules.note_live(&module);
                debug!(self.s.modules.log, "{module} was already loaded");
                Ok(())
            }
            Err(e) => {
                // ENODEV: a driver matched by a wide alias (cpufreq, EDAC, CPU crypto) that
                // finds nothing to drive, as every machine has; kept in kmsg. A device that
                // stays without driver is reported with this reason all the same.
                let no_device = e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error());
                let failure = Failure::load(e);
                if no_device {
                    debug!(self.s.modules.log, "module {module} found no device from {}: {failure}", path.display());
                } else {
                    info!(self.s.modules.log, "module {module} failed to load from {}: {failure}", path.display());
                }
                Err(failure)
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
                    self.s.modules.log,
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
                    debug!(self.s.modules.log, "uevent {}@{}", event.action, event.devpath);
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
                    debug!(
                        self.s.modules.log,
                        "hardware: hurried, settling after {} ms of quiet",
                        HURRIED_QUIET.as_millis()
                    );
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cmdline::Cmdline;
    use crate::hardware::index::fake::FakeIndex;
    use crate::log::{Log, captured};
    use crate::os::fake::{Call, FakeOs};
    use std::sync::Mutex;
    use std::sync::mpsc::channel;

    pub fn settings() -> Settings {
        Settings { settle: Duration::from_millis(100), max: Duration::from_secs(10), parallel: 8 }
    }

    pub fn virtio_index() -> FakeIndex {
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

    /// The loader over `idx`, with modules under `/lib/modules/v` and none in the kernel.
    pub fn modules(idx: FakeIndex, cmdline: Cmdline, os: Arc<FakeOs>, log: Log) -> Modules {
        let (lib_modules, sys_module) = (PathBuf::from("/lib/modules/v"), PathBuf::from("/nonexistent/sys/module"));
        Modules::new(Box::new(idx), lib_modules, sys_module, os, Arc::new(log), cmdline)
    }

    fn coldplug(modules: &Modules, settings: Settings, tx: Sender<Event>) -> Coldplug<'_> {
        Coldplug::new(Setup { modules, settings, tx, sys: None })
    }

    /// The module loads, in order, each as `load <file> [<params>]`.
    pub fn loads(os: &FakeOs) -> Vec<String> {
        os.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::LoadModule { file, params, .. } => Some(format!("load {file} [{params}]")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn devices_created_by_a_loading_driver_are_followed_through_uevents() {
        let idx = virtio_index();
        let cmdline = Cmdline::parse("virtio_net.napi_tx=1");
        let os = Arc::new(FakeOs::default().with_load_time(Duration::from_millis(5)));
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
        let m = modules(idx, cmdline, os.clone(), log);
        let mut run = coldplug(&m, settings(), tx);
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
        let os = Arc::new(FakeOs::default().with_load_time(Duration::from_millis(300)));
        let (tx, rx) = channel();
        let (log, _) = captured();
        let m = modules(idx, cmdline, os.clone(), log);
        let mut run = coldplug(&m, Settings { settle: Duration::from_millis(10), ..settings() }, tx);
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
        os.fail_module("failover.ko", rustix::io::Errno::NOEXEC.raw_os_error());
        os.fail_module("virtio.ko", rustix::io::Errno::EXIST.raw_os_error());
        let (tx, rx) = channel();
        let (log, console) = captured();
        let m = modules(idx, cmdline, os.clone(), log);
        let mut run = coldplug(&m, settings(), tx);
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
        let m = modules(idx, cmdline, os.clone(), log);
        let mut run = coldplug(&m, settings(), tx);
        run.device("/devices/pci0000:00/0000:00:06.0", "pci:v00008086d0000100Esv0");
        assert!(run.settle(&rx));
        assert_eq!(loads(&os), ["load e1000.ko []"]);
    }

    #[test]
    fn the_overall_cap_ends_a_stage_that_never_settles() {
        let idx = virtio_index();
        let cmdline = Cmdline::default();
        let os = Arc::new(FakeOs::default().with_load_time(Duration::from_millis(500)));
        let (tx, rx) = channel();
        let (log, console) = captured();
        let s = Settings { settle: Duration::from_millis(10), max: Duration::from_millis(100), parallel: 2 };
        let m = modules(idx, cmdline, os, log);
        let mut run = coldplug(&m, s, tx);
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
    fn the_network_and_root_stages_uevents_do_not_hold_the_settle() {
        let idx = virtio_index();
        let cmdline = Cmdline::default();
        let os = Arc::new(FakeOs::default());
        let (tx, rx) = channel();
        let (log, _) = captured();
        let s = Settings { settle: Duration::from_millis(150), max: Duration::from_secs(10), parallel: 8 };
        let m = modules(idx, cmdline, os, log);
        let mut run = coldplug(&m, s, tx.clone());
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
