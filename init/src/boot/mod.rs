//! The boot: the stages in order, each timed and logged, `diskless.break=` before any of
//! them, and the failure policy ([`crate::failure`]) applied in one place to whatever a
//! stage returns or throws. The stages' bodies live in their modules.

use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cmdline::Cmdline;
use crate::config;
use crate::context::Context;
use crate::early;
use crate::failure::{BootError, Policy, StageError};
use crate::handoff::{self, Facts};
use crate::hardware::{self, Background, HardwareError, Modules, Settings, Summary};
use crate::inventory::{self, Outcome};
use crate::local::{self, LayerInput};
use crate::log::{Log, StageTimer, monotonic_secs};
use crate::net::{self, IpMode, NetConfig};
use crate::os::Os;
use crate::record::StageTime;
use crate::root::{self, RootRequest};
use crate::stage::Stage;
use crate::{debug, info};

pub use crate::context::{NEWROOT, RUN_DIR};

/// Where the boot runs and through what.
pub struct Boot {
    pub ctx: Context,
    /// Install the panic hook (not in unit tests: the hook is process-wide).
    pub panic_hook: bool,
    /// Each finished stage and its duration, for boot.json.
    pub timings: Mutex<Vec<StageTime>>,
    /// When init started.
    pub started: Instant,
    /// The hardware stage's coldplug, still settling in the background; joined before
    /// the disks are needed and before any power-off, reboot or hand-off.
    pub hardware: Mutex<Option<Background>>,
    /// What the inventory sent at the end of the boot needs, once the network is up.
    pub machine: Mutex<Option<MachineFacts>>,
}

/// The boot's facts for its inventory ([`crate::inventory`]), kept for the failure path.
pub struct MachineFacts {
    /// The MAC the boot came up on.
    pub mac: String,
    pub host: String,
    pub modules: Arc<Modules>,
    /// The hardware stage's summary, once joined.
    pub summary: Option<Summary>,
}

impl Boot {
    /// The real boot of PID 1.
    pub fn pid1(os: Arc<dyn Os>) -> Boot {
        Boot::new(PathBuf::from("/"), os, Arc::new(Log::stdout()))
    }

    /// A boot of the tree at `root`, with the real timings and the panic hook.
    pub fn new(root: PathBuf, os: Arc<dyn Os>, log: Arc<Log>) -> Boot {
        Boot {
            ctx: Context { root, os, log, second: Duration::from_secs(1) },
            panic_hook: true,
            timings: Mutex::new(Vec::new()),
            started: Instant::now(),
            hardware: Mutex::new(None),
            machine: Mutex::new(None),
        }
    }

    fn log(&self) -> &Log {
        &self.ctx.log
    }

    fn machine(&self) -> std::sync::MutexGuard<'_, Option<MachineFacts>> {
        self.machine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send the inventory to the syslog server (when one is known): the machine's NICs,
    /// devices and how the boot ended. `summary`: the hardware's, when it is at hand.
    fn send_inventory(&self, result: &str, stage: Option<Stage>, summary: Option<&Summary>) {
        let machine = self.machine();
        let Some(facts) = machine.as_ref() else { return };
        if self.ctx.log.remote.servers().is_empty() {
            return;
        }
        let summary = summary.or(facts.summary.as_ref());
        let outcome = Outcome {
            result,
            stage: stage.map_or("unknown", Stage::name),
            devices: summary.map_or(0, |s| s.devices),
            modules_loaded: summary.map_or(0, |s| s.modules_loaded),
            without_driver: summary.map_or(0, |s| s.without_driver),
        };
        let sys = self.ctx.root.join("sys");
        let messages = inventory::messages(&sys, facts.modules.index(), &facts.mac, &facts.host, &outcome);
        let sent = inventory::send(&self.ctx.log.remote, &messages);
        let failed = self.ctx.log.remote.failed();
        debug!(
            self.log(),
            "inventory: {sent} messages to syslog {}{}",
            list(&self.ctx.log.remote.servers()),
            if failed > 0 { format!(" ({failed} sends of the boot failed)") } else { String::new() }
        );
    }

    pub fn timings(&self) -> Vec<StageTime> {
        self.timings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait for the hardware stage's background coldplug, if it is still to be joined:
    /// its report and summary; a panic in it comes back as the stage's error message.
    /// `hurry`: the boot needs the disks now, so the coldplug settles once nothing loads
    /// and a short quiet passed (see [`hardware::HURRIED_QUIET`]), not the full time.
    fn settle_hardware(&self, hurry: bool) -> Option<Result<Summary, HardwareError>> {
        let background = self.hardware.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        if hurry {
            background.hurry();
        }
        let waiting = !background.is_finished();
        let since = Instant::now();
        let result = background.join();
        if waiting {
            info!(self.log(), "waited {} ms for the hardware to settle", since.elapsed().as_millis());
        }
        Some(result)
    }

    /// The summary of the hardware stage, waiting for it to settle (`hurry`: see
    /// [`Boot::settle_hardware`]); a failure counts as the stage `during`'s.
    fn joined_hardware(&self, hurry: bool, during: Stage) -> Result<Summary, Stop> {
        match self.settle_hardware(hurry) {
            Some(Ok(summary)) => Ok(summary),
            Some(Err(e)) => Err(failed(during, e)),
            None => Err(failed(during, StageError::HardwareNotRun)),
        }
    }
}

/// Why the stages stopped before the hand-off's exec.
#[derive(Debug)]
enum Stop {
    /// `diskless.break=` named this stage.
    Break(Stage),
    Failed(BootError),
    /// The hardware-only diagnostic run ended (its power-off call failed).
    DiagnosticDone,
}

fn failed(stage: Stage, source: impl Into<StageError>) -> Stop {
    Stop::Failed(BootError { stage, source: source.into() })
}

/// Run the boot. Never returns: when the final power-off or reboot call fails, PID 1
/// sleeps forever rather than exit (the kernel would panic).
pub fn boot(b: &Boot) -> ! {
    // Stages catch their own panics; this catches one between stages (command-line
    // and configuration handling), which would otherwise end PID 1 and panic the kernel.
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(b))) {
        info!(
            b.log(),
            "ERROR: the boot panicked between stages: {}: this is a bug in diskless; please report it with the console log",
            early::panic_message(&*payload)
        );
        fail_with(b, &Policy::default(), false, ("failed", None));
    }
    hang()
}

/// Sleep forever.
pub fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The stages, then the failure policy for whatever stopped them; returns only when the
/// final exec, power-off or reboot failed.
pub fn run(b: &Boot) {
    let mut policy = Policy::default();
    let stop = match stages(b, &mut policy) {
        Ok(never) => match never {},
        Err(stop) => stop,
    };
    match stop {
        Stop::Break(stage) => {
            info!(b.log(), "break before stage {stage} (diskless.break={stage})");
            fail_with(b, &policy, false, ("stopped", Some(stage)));
        }
        Stop::Failed(error) => {
            info!(b.log(), "ERROR: {error}");
            fail_with(b, &policy, error.source.is_transient(), ("failed", Some(error.stage)));
        }
        Stop::DiagnosticDone => {}
    }
}

/// The stages in boot order. `policy` follows the configuration in force, for the
/// failure action.
fn stages(b: &Boot, policy: &mut Policy) -> Result<Infallible, Stop> {
    let ctx = &b.ctx;
    let cmdline = timed(b, None, Stage::Early, || {
        if b.panic_hook {
            early::install_panic_hook(ctx.log.clone());
        }
        early::early(&ctx.root, &*ctx.os, &ctx.log)
    })?;
    // Before the root is mounted only the command line can refine the defaults.
    policy.cmdline = cmdline.clone();
    let config_warnings = policy.config.apply_cmdline(&cmdline.raw);
    for warning in &config_warnings {
        info!(ctx.log, "warning: {warning}");
    }
    let stop_before = break_point(ctx, &cmdline);
    let config = policy.config.clone();

    // What the command line asks of the network and the root, checked before waiting
    // for any network; an error is reported when its stage comes.
    let net_cfg = NetConfig::for_boot(&cmdline, &config);
    let request = RootRequest::from_cmdline(&cmdline.raw);
    let network_on = net_cfg.as_ref().is_ok_and(|cfg| cfg.mode() != IpMode::Off);
    let root_given = request.as_ref().is_ok_and(RootRequest::is_given);

    let settings = Settings::with_settle_ms(config.settle_ms);
    // The stage reads the module database once: every later load of the boot goes
    // through `modules`. It returns once the network drivers are in; the rest of the
    // coldplug settles in the background while DHCP, DNS and the NFS mount run.
    let (background, modules, nfs_modules) = timed(b, stop_before, Stage::Hardware, || {
        let modules = Modules::open(&ctx.root, ctx.os.clone(), ctx.log.clone(), &cmdline)?;
        // The NFS modules are needed as soon as the lease is in. Loading them (the NFSv3
        // client takes 0.4 s on a slow machine, nfsv4 another 0.65 s when v4 is asked
        // for) runs in the background from here, while the hardware settles and DHCP
        // waits for answers, rather than after both.
        let needed = network_on || root_given;
        let prefetch =
            request.as_ref().ok().and_then(|r| root::stage::prefetch_modules(ctx, modules.clone(), r, needed));
        let background = hardware::hardware(&ctx.root, modules.clone(), settings)?;
        Ok::<_, hardware::HardwareError>((background, modules, prefetch))
    })?;
    *b.hardware.lock().unwrap_or_else(|p| p.into_inner()) = Some(background);

    let mut net_cfg = net_cfg.map_err(|e| failed(Stage::Network, e))?;
    let request = request.map_err(|e| failed(Stage::Root, e))?;
    // The network stage keeps only a lease over which this root can be reached.
    net_cfg.root = Some(request.clone());
    if !network_on && !root_given {
        return Err(diagnostic_run(b));
    }

    let mut net = timed(b, stop_before, Stage::Network, || {
        net::network_stage(&net_cfg, &*ctx.os, &ctx.root.join("sys/class/net"), &*ctx.log)
    })?;
    start_syslog(ctx, &config, &net);
    *b.machine() = Some(MachineFacts {
        mac: net.mac.to_string(),
        host: net.lease.address.to_string(),
        modules: modules.clone(),
        summary: None,
    });
    let mut identity = timed(b, stop_before, Stage::Identity, || {
        let id = net::identity_stage(&*ctx.os, &mut net, &net_cfg, &*ctx.log);
        if net::awaits_image_dns(&id) {
            // Not lost yet: the warning waits for the second try below.
            info!(
                ctx.log,
                "host name {} (from {}) for now: no DNS server is known; the image's resolv.conf is read once \
                 the root is mounted",
                id.hostname,
                id.source
            );
        } else {
            announce_identity(b, &id);
        }
        Ok::<_, Infallible>(id)
    })?;
    let newroot = ctx.newroot();
    let mounted = timed(b, stop_before, Stage::Root, || {
        let inputs = root::stage::Inputs {
            modules: &modules,
            config: &config,
            request: &request,
            lease: &net.lease,
            hostname: &identity.hostname,
        };
        root::stage::stage(ctx, &inputs, &newroot, nfs_modules)
    })?;

    breakpoint(stop_before, Stage::Modules)?;
    // From here on the image's configuration rules, including the failure policy.
    let (config, config_warnings) = config::load(&newroot, &cmdline.raw);
    for warning in &config_warnings {
        info!(ctx.log, "WARNING: configuration: {warning}");
    }
    policy.config = config.clone();
    // A host name made for want of a DNS server gets a second chance with the servers
    // of the image's resolv.conf: the NFS root, mounted with the address-made name,
    // has not used it unless its path has `%s`, and the layers are chosen only below.
    if net::awaits_image_dns(&identity) {
        let image = (&config, newroot.as_path());
        let timing = net::dns::LookupTiming::default();
        if let Some(id) = net::identity_from_image(&*ctx.os, &mut net, &net_cfg, &identity, image, timing, &*ctx.log) {
            identity = id;
        }
        announce_identity(b, &identity);
    }
    let input =
        LayerInput { broadcast: net.lease.broadcast, address: net.lease.address, hostname: identity.hostname.clone() };
    // The image's drivers are matched against every device the coldplug saw: it must
    // have settled. It need not wait out the full settle time meant for devices that
    // come later on their own (USB).
    let hardware = b.joined_hardware(true, Stage::Modules)?;
    if let Some(facts) = b.machine().as_mut() {
        facts.summary = Some(hardware.clone());
    }
    // Scratch disks and their filesystems, and overlay for the layers, come from the
    // image: its drivers are in before the local stage looks for disks.
    let image_modules = timed(b, stop_before, Stage::Modules, || hardware::image::stage(ctx, &modules, &newroot))?;
    let (local, scratch) = timed(b, stop_before, Stage::Local, || {
        let inputs = local::stage::Inputs {
            modules: &modules,
            config: &config,
            newroot: &newroot,
            layers: &input,
            init: &handoff::image_init(&cmdline),
        };
        local::stage::stage(ctx, &inputs, identity.lost.as_mut())
    })?;

    // Prototype, off by default: the scratch disk as a cache of the image. It cannot
    // be bound before the scratch filesystem is mounted, hence only after the root's.
    if crate::fscache::wanted(&config)
        && let Err(e) = crate::fscache::bind(&*ctx.os, &ctx.root, &modules, &scratch, &ctx.log)
    {
        info!(ctx.log, "WARNING: {e}; the root is read from the server only");
    }

    breakpoint(stop_before, Stage::Handoff)?;
    // The hand-off ends in exec: the inventory goes now. A hand-off that fails after
    // this sends its failure line as every log line.
    b.send_inventory("booted", Some(Stage::Handoff), Some(&hardware));
    let facts = Facts {
        cmdline: &cmdline,
        config: &config,
        config_warnings: &config_warnings,
        hardware: &hardware,
        net: &net,
        identity: &identity,
        mounted: &mounted,
        local: &local,
        scratch: &scratch,
        image_modules: &image_modules,
        stages: b.timings(),
        started: b.started,
    };
    timed(b, stop_before, Stage::Handoff, || handoff::stage(ctx, &facts, &newroot))
}

/// The chosen host name on the console, and why it is lost when it is; the syslog
/// messages and the inventory name the machine by it from here on.
fn announce_identity(b: &Boot, id: &net::Identity) {
    let ctx = &b.ctx;
    ctx.log.remote.set_hostname(id.fqdn.as_deref().unwrap_or(&id.hostname));
    if let Some(facts) = b.machine().as_mut() {
        facts.host = id.fqdn.clone().unwrap_or_else(|| id.hostname.clone());
    }
    info!(ctx.log, "host name {} (from {})", id.fqdn.as_deref().unwrap_or(&id.hostname), id.source);
    if let Some(warning) = id.lost_warning() {
        info!(ctx.log, "{warning}");
    }
}

/// `diskless.break=`: the stage to stop before. An unknown name is reported with the
/// valid ones, and the boot goes on.
fn break_point(ctx: &Context, cmdline: &Cmdline) -> Option<Stage> {
    let name = cmdline.break_before.as_deref()?;
    match Stage::from_name(name) {
        None => {
            info!(ctx.log, "warning: diskless.break={name}: no such stage; stages are {}", Stage::names());
            None
        }
        // The command line is read by the early stage itself.
        Some(Stage::Early) => {
            info!(
                ctx.log,
                "warning: diskless.break=early: the command line is read in stage early, so the boot cannot stop \
                 before it; diskless.break=hardware stops right after it"
            );
            None
        }
        stage => stage,
    }
}

/// Stop before `stage` when `diskless.break=` names it.
fn breakpoint(stop_before: Option<Stage>, stage: Stage) -> Result<(), Stop> {
    if stop_before == Some(stage) { Err(Stop::Break(stage)) } else { Ok(()) }
}

/// Run one stage: stop before it when asked, time it, record its time, and keep its
/// error or panic typed for the failure policy.
fn timed<T, E: Into<StageError>>(
    b: &Boot,
    stop_before: Option<Stage>,
    stage: Stage,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, Stop> {
    breakpoint(stop_before, stage)?;
    let timer = StageTimer::start(stage.name());
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => {
            let ms = timer.elapsed_ms() as u64;
            b.timings.lock().unwrap_or_else(|p| p.into_inner()).push(StageTime { stage, ms });
            timer.done(b.log());
            Ok(value)
        }
        Ok(Err(e)) => Err(failed(stage, e)),
        Err(payload) => Err(failed(stage, StageError::Panic { stage, message: early::panic_message(&*payload) })),
    }
}

/// `ip=off` and no root: nothing can boot, the hardware report is the result. Powers off.
fn diagnostic_run(b: &Boot) -> Stop {
    let hardware = match b.joined_hardware(false, Stage::Hardware) {
        Ok(summary) => summary,
        Err(stop) => return stop,
    };
    info!(b.log(), "ip=off and no root=/nfsroot=: hardware-only diagnostic run, powering off after the summary");
    log_summary(b.log(), &hardware);
    info!(b.log(), "powering off");
    let e = b.ctx.os.power_off();
    info!(b.log(), "ERROR: powering off: {e}: switch the machine off by hand");
    Stop::DiagnosticDone
}

/// The failure action, after the hardware report: what the administrator needs most
/// after a failure (devices without driver, interfaces, disks) is never cut off. The
/// syslog server (when the network came up) gets the inventory with `ended`: how the
/// boot ended and in which stage.
fn fail_with(b: &Boot, policy: &Policy, transient: bool, ended: (&str, Option<Stage>)) {
    let summary = match b.settle_hardware(false) {
        Some(Err(e)) => {
            info!(b.log(), "ERROR: {e}");
            None
        }
        Some(Ok(summary)) => Some(summary),
        None => None,
    };
    b.send_inventory(ended.0, ended.1, summary.as_ref());
    policy.act(&b.ctx, transient);
}

/// Addresses for a log line: `10.0.0.1:514, 10.0.0.2:514`.
fn list(servers: &[std::net::SocketAddrV4]) -> String {
    servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Once the network is up: send the boot's log to the syslog servers of the
/// configuration (before the root: the command line) or of the lease (option 7), the
/// lines logged so far first; with none, keep no more lines for it.
fn start_syslog(ctx: &Context, config: &config::Config, net: &net::NetResult) {
    let servers = config.syslog.servers(&net.lease.log_servers);
    if servers.is_empty() {
        ctx.log.remote.stop();
        debug!(
            ctx.log,
            "no syslog server (diskless.syslog={}, the lease names none in option 7): the log stays on this machine",
            config.syslog
        );
        return;
    }
    let from = if config.syslog == crate::syslog::Target::Dhcp { "DHCP option 7" } else { "diskless.syslog" };
    ctx.log.remote.start(crate::syslog::Sender {
        os: ctx.os.clone(),
        servers: servers.clone(),
        hostname: net.lease.address.to_string(),
    });
    info!(ctx.log, "sending the boot log to syslog {} (from {from})", list(&servers));
}

fn log_summary(log: &Log, hw: &Summary) {
    info!(
        log,
        "boot summary (t={:.3} s): {} devices, {} modules loaded, {} without driver{}",
        monotonic_secs(),
        hw.devices,
        hw.modules_loaded,
        hw.without_driver,
        if hw.settled { "" } else { ", hardware did not settle" }
    );
}

#[cfg(test)]
mod tests;
