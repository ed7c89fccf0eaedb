//! The boot: one function per stage, called in order, each timed; and the failure policy
//! (DESIGN §8) for a stage that fails, panics, or is the target of `diskless.break`.

use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cmdline::Cmdline;
use crate::config::{self, Config, ConfigWarning, OnFailure};
use crate::early;
use crate::handoff::{self, HandoffError, Mtab};
use crate::hardware::{self, Background, Settings, Summary};
use crate::local::{self, LayerInput, LocalReport};
use crate::log::{Log, StageTimer, monotonic_secs};
use crate::net::{self, IpMode, Level, NetConfig, NetLog, NetResult};
use crate::os::Os;
use crate::record::{self, BootRecord, LayerSummary, NetworkSection, StageTime};
use crate::root::{self, Mounted, RootError, RootRequest, Version};
use crate::scratch::{self, ScratchReport};
use crate::stage::Stage;
use crate::{debug, info};

/// Stage names in boot order: what `diskless.break=` accepts (DESIGN §2).
pub const STAGES: &[&str] = &["early", "hardware", "network", "identity", "root", "local", "handoff"];

/// Where the image is mounted, relative to the boot root (the archive has the dir).
pub const NEWROOT: &str = "newroot";
/// Private state of diskless under the boot root; moves with `/run` into the image.
pub const RUN_DIR: &str = "run/diskless";

/// Where the boot runs and through what.
pub struct Boot {
    /// `/` at boot.
    pub root: PathBuf,
    pub os: Arc<dyn Os>,
    pub log: Arc<Log>,
    /// Install the panic hook (not in unit tests: the hook is process-wide).
    pub panic_hook: bool,
    /// How long one second of a countdown lasts (shortened by tests).
    pub second: Duration,
    /// Each finished stage and its duration, for boot.json.
    pub timings: Mutex<Vec<StageTime>>,
    /// When init started.
    pub started: Instant,
    /// The hardware stage's coldplug, still settling in the background; joined before
    /// the disks are needed and before any power-off, reboot or hand-off.
    pub hardware: Mutex<Option<Background>>,
}

impl Boot {
    /// The real boot of PID 1.
    pub fn pid1(os: Arc<dyn Os>) -> Boot {
        Boot::new(PathBuf::from("/"), os, Arc::new(Log::stdout()))
    }

    /// A boot of the tree at `root`, with the real timings and no panic hook.
    pub fn new(root: PathBuf, os: Arc<dyn Os>, log: Arc<Log>) -> Boot {
        Boot {
            root,
            os,
            log,
            panic_hook: true,
            second: Duration::from_secs(1),
            timings: Mutex::new(Vec::new()),
            started: Instant::now(),
            hardware: Mutex::new(None),
        }
    }

    fn timings(&self) -> Vec<StageTime> {
        self.timings.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Wait for the hardware stage's background coldplug, if it is still to be joined:
    /// its report and summary; a panic in it comes back as the stage's error message.
    /// `hurry`: the boot needs the disks now, so the coldplug settles once nothing loads
    /// and a short quiet passed (see [`hardware::HURRIED_QUIET`]), not the full time.
    fn settle_hardware(&self, hurry: bool) -> Option<Result<Summary, String>> {
        let background = self.hardware.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        if hurry {
            background.hurry();
        }
        let waiting = !background.is_finished();
        let since = Instant::now();
        let result = background.join();
        if waiting {
            info!(self.log, "waited {} ms for the hardware to settle", since.elapsed().as_millis());
        }
        Some(result)
    }
}

/// Run the boot. Never returns: when the final power-off or reboot call fails, PID 1
/// sleeps forever rather than exit (the kernel would panic).
pub fn boot(b: &Boot) -> ! {
    // Stages catch their own panics; this catches one between stages (command-line
    // and configuration handling), which would otherwise end PID 1 and panic the kernel.
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| run(b))) {
        info!(
            b.log,
            "ERROR: the boot panicked between stages: {}: this is a bug in diskless; please report it with the console log",
            early::panic_message(&*payload)
        );
        failure_action(b, &Cmdline::default(), &Config::default());
    }
    hang()
}

/// Sleep forever.
pub fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The network stages' log lines go to the boot log.
struct NetLogger<'a>(&'a Log);

impl NetLog for NetLogger<'_> {
    fn log(&self, level: Level, line: &str) {
        match level {
            Level::Info => info!(self.0, "{line}"),
            Level::Warn => info!(self.0, "warning: {line}"),
            Level::Debug => debug!(self.0, "{line}"),
        }
    }
}

/// The stages in order; returns only when the final exec, power-off or reboot failed.
pub fn run(b: &Boot) {
    let cmdline = match stage(b, Stage::Early, || {
        if b.panic_hook {
            early::install_panic_hook(b.log.clone());
        }
        early::early(&b.root, &*b.os, &b.log)
    }) {
        Ok(cmdline) => cmdline,
        Err(message) => return fail(b, &Cmdline::default(), &Config::default(), &message),
    };
    // Before the root is mounted only the command line can refine the defaults.
    let mut config = Config::default();
    let mut config_warnings = config.apply_cmdline(&cmdline.raw);
    for warning in &config_warnings {
        info!(b.log, "warning: {warning}");
    }
    if let Some(name) = &cmdline.break_before
        && !STAGES.contains(&name.as_str())
    {
        info!(b.log, "warning: diskless.break={name}: no such stage; stages are {}", STAGES.join(", "));
    }

    if breaks_before(b, &cmdline, &config, "hardware") {
        return;
    }
    // The NFS modules are needed as soon as the lease is in. Loading them (nfsv4 alone
    // takes most of a second on a slow machine) runs in the background from here, while
    // the hardware settles and DHCP waits for answers, rather than after both.
    let nfs_modules = prefetch_nfs_modules(b, &cmdline, &config);
    let settings = Settings::with_settle_ms(config.settle_ms);
    // The stage returns once the network drivers are in; the rest of the coldplug
    // settles in the background while DHCP, DNS and the NFS mount run.
    match stage(b, Stage::Hardware, || hardware::hardware(&b.root, b.os.clone(), b.log.clone(), &cmdline, settings)) {
        Ok(background) => *b.hardware.lock().unwrap_or_else(|p| p.into_inner()) = Some(background),
        Err(message) => return fail(b, &cmdline, &config, &message),
    }

    // What the command line asks of the network and the root, checked before waiting
    // for any network.
    let net_cfg = match net_config(&cmdline, &config) {
        Ok(cfg) => cfg,
        Err(message) => return fail(b, &cmdline, &config, &message),
    };
    let request = match RootRequest::from_cmdline(&cmdline.raw) {
        Ok(request) => request,
        Err(e) => return fail(b, &cmdline, &config, &e.to_string()),
    };
    if net_cfg.mode() == IpMode::Off && !request.is_given() {
        // Diagnostic mode: no network and no root asked for, so nothing can boot; the
        // hardware report is the result.
        let hardware = match joined_hardware(b, false) {
            Ok(summary) => summary,
            Err(message) => return fail(b, &cmdline, &config, &message),
        };
        info!(b.log, "ip=off and no root=/nfsroot=: hardware-only diagnostic run, powering off after the summary");
        log_summary(&b.log, &hardware);
        info!(b.log, "powering off");
        let e = b.os.power_off();
        info!(b.log, "ERROR: powering off: {e}: switch the machine off by hand");
        return;
    }

    if breaks_before(b, &cmdline, &config, "network") {
        return;
    }
    let logger = NetLogger(&b.log);
    let net = match stage(b, Stage::Network, || net::network_stage(&net_cfg, &b.root.join("sys/class/net"), &logger)) {
        Ok(net) => net,
        Err(message) => return fail(b, &cmdline, &config, &message),
    };

    if breaks_before(b, &cmdline, &config, "identity") {
        return;
    }
    let identity = match stage(b, Stage::Identity, || {
        let id = net::identity_stage(&net, &net_cfg, &mut net::identity::SystemNames, &logger);
        info!(b.log, "host name {} (from {})", id.fqdn.as_deref().unwrap_or(&id.hostname), id.source);
        Ok::<_, Infallible>(id)
    }) {
        Ok(id) => id,
        Err(message) => return fail(b, &cmdline, &config, &message),
    };

    if breaks_before(b, &cmdline, &config, "root") {
        return;
    }
    let newroot = b.root.join(NEWROOT);
    let mounted = match stage(b, Stage::Root, || {
        root_stage(b, &cmdline, &config, &request, &net, &identity.hostname, &newroot, nfs_modules)
    }) {
        Ok(mounted) => mounted,
        Err(message) => return fail(b, &cmdline, &config, &message),
    };

    if breaks_before(b, &cmdline, &config, "local") {
        return;
    }
    // From here on the image's configuration rules, including the failure policy.
    let (image_config, warnings) = config::load(&newroot, &cmdline.raw);
    for warning in &warnings {
        info!(b.log, "WARNING: configuration: {warning}");
    }
    config = image_config;
    config_warnings = warnings;
    let input =
        LayerInput { broadcast: net.lease.broadcast, address: net.lease.address, hostname: identity.hostname.clone() };
    // Scratch disks are found by what the coldplug brought up: it must have settled. The
    // disks are in once their drivers' loads returned, so it need not wait out the full
    // settle time meant for devices that come later on their own.
    let hardware = match joined_hardware(b, true) {
        Ok(summary) => summary,
        Err(message) => return fail(b, &cmdline, &config, &message),
    };
    let (local, scratch) = match stage(b, Stage::Local, || local_stage(b, &cmdline, &config, &newroot, &input)) {
        Ok(done) => done,
        Err(message) => return fail(b, &cmdline, &config, &message),
    };

    if breaks_before(b, &cmdline, &config, "handoff") {
        return;
    }
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
    };
    let Err(message) = stage(b, Stage::Handoff, || handoff_stage(b, &facts, &newroot));
    fail(b, &cmdline, &config, &message)
}

/// The summary of the hardware stage, waiting for it to settle (`hurry`: see
/// [`Boot::settle_hardware`]).
fn joined_hardware(b: &Boot, hurry: bool) -> Result<Summary, String> {
    b.settle_hardware(hurry)
        .unwrap_or_else(|| Err("the hardware stage did not run: this is a bug in diskless".to_string()))
}

/// The network configuration from the command line; the timeouts come from the
/// (validated) configuration so both read `diskless.*_timeout` the same way.
fn net_config(cmdline: &Cmdline, config: &Config) -> Result<NetConfig, String> {
    let params = cmdline
        .raw
        .iter()
        .filter(|(k, _)| !k.starts_with(config::CMDLINE_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or("")));
    let mut cfg = NetConfig::from_params(params).map_err(|e| format!("kernel command line: {e}"))?;
    cfg.carrier_timeout = Duration::from_secs(config.carrier_timeout);
    cfg.dhcp_timeout = Duration::from_secs(config.dhcp_timeout);
    Ok(cfg)
}

/// Nice value of the background NFS module loads (the coldplug's run at 0).
const NFS_PREFETCH_NICE: i32 = 10;

/// Modules loaded in the background; the thread returns their names.
type Prefetch = std::thread::JoinHandle<Vec<String>>;

/// Start loading the NFS modules in the background when the boot will need them: a root
/// was asked for, or the network is on (DHCP may name the root). A version given on the
/// command line narrows the set. Errors are not reported here: the root stage loads
/// whatever is still missing and reports what fails.
fn prefetch_nfs_modules(b: &Boot, cmdline: &Cmdline, config: &Config) -> Option<Prefetch> {
    let request = RootRequest::from_cmdline(&cmdline.raw).ok()?;
    let network_on = net_config(cmdline, config).is_ok_and(|cfg| cfg.mode() != IpMode::Off);
    if !network_on && !request.is_given() {
        return None;
    }
    let version = match &request {
        RootRequest::Spec { version, .. } => *version,
        RootRequest::FromDhcp => Version::Auto,
    };
    let names = root::parse::modules_for(version);
    let (root, os, log, cmdline) = (b.root.clone(), b.os.clone(), b.log.clone(), cmdline.clone());
    std::thread::Builder::new()
        .name("nfs-modules".into())
        .spawn(move || {
            // The hardware's drivers go first: the settle window that the local stage
            // waits for starts only when their loads are done, while the NFS modules
            // are not needed before the lease and the host name are in. On one CPU a
            // nice value is what orders them; with more CPUs both run at once anyway.
            if let Err(e) = os.set_thread_nice(NFS_PREFETCH_NICE) {
                debug!(log, "lowering the priority of the NFS module loads: {e}");
            }
            hardware::load_modules_by_name(&root, os, log, &cmdline, &names)
                .map(|loaded| loaded.loaded)
                .unwrap_or_default()
        })
        .ok()
}

/// Stage `root`: the final NFS root, its modules, and the mount with retries.
#[allow(clippy::too_many_arguments)]
fn root_stage(
    b: &Boot,
    cmdline: &Cmdline,
    config: &Config,
    request: &RootRequest,
    net: &NetResult,
    hostname: &str,
    newroot: &Path,
    prefetch: Option<Prefetch>,
) -> Result<Mounted, RootError> {
    let mut nfs = request.resolve(&net.lease, hostname)?;
    info!(b.log, "NFS root {} (NFS version {}) from {}", nfs.source(), nfs.version, nfs.syntax);
    // What the background loads did not bring in (another version, a failure) is loaded
    // now; what they did is already live and is skipped.
    let prefetched = prefetch.and_then(|thread| thread.join().ok()).unwrap_or_default();
    let wanted = root::parse::modules_for(nfs.version);
    let loaded =
        hardware::load_modules_by_name(&b.root, b.os.clone(), b.log.clone(), cmdline, &wanted).map_err(|e| {
            RootError::Modules { modules: wanted.iter().map(|m| m.to_string()).collect(), reason: e.to_string() }
        })?;
    let missing = |m: &str| loaded.missing.iter().any(|(name, _)| name == m);
    if !loaded.missing.is_empty() {
        let reasons: Vec<String> = loaded.missing.iter().map(|(m, why)| format!("{m}: {why}")).collect();
        info!(b.log, "warning: NFS modules not available: {}", reasons.join("; "));
    }
    // Without one version's module, try only the other; without nfs, nothing works.
    nfs.version = match (nfs.version, missing("nfs"), missing("nfsv4"), missing("nfsv3")) {
        (_, true, _, _) | (Version::V3, _, _, true) | (Version::V4(_), _, true, _) | (Version::Auto, _, true, true) => {
            return Err(RootError::Modules {
                modules: loaded.missing.iter().map(|(m, _)| m.clone()).collect(),
                reason: loaded.missing.iter().map(|(m, why)| format!("{m}: {why}")).collect::<Vec<_>>().join("; "),
            });
        }
        (Version::Auto, _, true, false) => Version::V3,
        (Version::Auto, _, false, true) => Version::V4(2),
        (v, _, _, _) => v,
    };
    let retry = root::Retry { timeout: Duration::from_secs(config.nfs_retry_timeout), second: b.second };
    let mut mounted = root::mount_root(&*b.os, &b.log, &nfs, net.lease.address, newroot, retry)?;
    mounted.modules = prefetched.into_iter().chain(loaded.loaded).collect();
    info!(b.log, "mounted {} read-only on {} (NFSv{})", nfs.source(), newroot.display(), mounted.mounted_version);
    Ok(mounted)
}

/// Why the local stage stopped.
#[derive(Debug)]
enum LocalStageError {
    /// The overlay module (overlay mode) did not load.
    OverlayModule(String),
    Setup(local::LocalError),
}

impl std::fmt::Display for LocalStageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocalStageError::OverlayModule(e) => write!(
                f,
                "loading the overlay module for mode = \"overlay\": {e}: rebuild the initramfs with it \
                 (mkinitramfs --profile netboot) or use mode = \"symlink\""
            ),
            LocalStageError::Setup(e) => write!(f, "making the local dirs: {e}"),
        }
    }
}

/// Stage `local`: layers for this machine, scratch disks, local dirs filled.
fn local_stage(
    b: &Boot,
    cmdline: &Cmdline,
    config: &Config,
    newroot: &Path,
    input: &LayerInput,
) -> Result<(LocalReport, ScratchReport), LocalStageError> {
    if config.mode == config::Mode::Overlay {
        // Loaded on demand like the NFS client: only overlay-mode images need it.
        let loaded = hardware::load_modules_by_name(&b.root, b.os.clone(), b.log.clone(), cmdline, &["overlay"])
            .map_err(|e| LocalStageError::OverlayModule(e.to_string()))?;
        if let Some((_, why)) = loaded.missing.first() {
            return Err(LocalStageError::OverlayModule(why.clone()));
        }
    }
    let selection = local::select_layers(config, newroot, input);
    for layer in &selection.layers {
        info!(b.log, "layer {layer}");
    }
    // Missing layers are listed: a host that silently lacks its own layer is the
    // classic surprise of per-host configuration.
    for skipped in &selection.skipped {
        info!(b.log, "{skipped}");
    }
    let run_dir = b.root.join(RUN_DIR);
    let scratch = scratch_stage(b, cmdline, config, newroot, &run_dir);
    let report =
        local::setup_with_scratch(config, newroot, &run_dir, &selection, scratch.local_dirs(), &mut local::System)
            .map_err(LocalStageError::Setup)?;
    for warning in &report.layers.warnings {
        info!(b.log, "warning: layer copy: {warning}");
    }
    Ok((report, scratch))
}

/// Scratch disks and swap (DESIGN §6), after the root is mounted and before the local
/// dirs are made. Never fails: a disk that cannot be used leaves the local dirs on
/// tmpfs, and the scratch code says why on the console.
fn scratch_stage(b: &Boot, cmdline: &Cmdline, config: &Config, newroot: &Path, run_dir: &Path) -> ScratchReport {
    let paths = scratch::Paths {
        class_block: b.root.join("sys/class/block"),
        dev: b.root.join("dev"),
        image_root: newroot.to_path_buf(),
        run_dir: run_dir.to_path_buf(),
    };
    // A module the database lacks is not an error of load_modules_by_name (it lists
    // it as missing); for the scratch code it is: it says what to add to the initramfs.
    let load = |names: &[&str]| -> Result<(), String> {
        let loaded = hardware::load_modules_by_name(&b.root, b.os.clone(), b.log.clone(), cmdline, names)
            .map_err(|e| e.to_string())?;
        match loaded.missing.as_slice() {
            [] => Ok(()),
            missing => Err(missing.iter().map(|(m, why)| format!("{m}: {why}")).collect::<Vec<_>>().join("; ")),
        }
    };
    scratch::scratch(config, &paths, &mut scratch::RealDisks, &load, &b.log)
}

/// What the earlier stages found, for the hand-off.
struct Facts<'a> {
    cmdline: &'a Cmdline,
    config: &'a Config,
    config_warnings: &'a [ConfigWarning],
    hardware: &'a Summary,
    net: &'a NetResult,
    identity: &'a net::Identity,
    mounted: &'a Mounted,
    local: &'a LocalReport,
    scratch: &'a ScratchReport,
}

/// Stage `handoff`: check the image, record the boot, move the kernel file systems,
/// free the initramfs and exec the image's init. Returns only on failure.
fn handoff_stage(b: &Boot, f: &Facts<'_>, newroot: &Path) -> Result<Infallible, HandoffError> {
    let init = f.cmdline.init.clone().unwrap_or_else(|| handoff::DEFAULT_INIT.to_string());
    handoff::check_image(newroot, &init)?;
    match handoff::ensure_mtab(newroot) {
        Mtab::Present => {}
        Mtab::Created => info!(b.log, "created /etc/mtab -> {} in the image", handoff::MTAB_TARGET),
        Mtab::Missing(e) => info!(
            b.log,
            "warning: the image has no /etc/mtab and /etc is read-only ({e}): make it a symlink to {} in the image",
            handoff::MTAB_TARGET
        ),
    }
    let run = b.root.join("run");
    let uptime = Duration::from_secs_f64(monotonic_secs().max(0.0));
    net::handoff::write_files(&run, f.net, f.identity, uptime).map_err(HandoffError::Files)?;
    let total_ms = b.started.elapsed().as_millis() as u64;
    let record = BootRecord {
        diskless_version: env!("CARGO_PKG_VERSION").to_string(),
        network: NetworkSection { net: f.net.clone(), identity: f.identity.clone() },
        root: f.mounted.clone(),
        layers: record::layer_summaries(&f.local.layers),
        local: f.local.clone(),
        scratch: f.scratch.clone(),
        modules: f.hardware.loaded.iter().chain(f.mounted.modules.iter()).cloned().collect(),
        stages: b.timings(),
        config: f.config.clone(),
        config_warnings: f.config_warnings.to_vec(),
        init: init.clone(),
        init_args: f.cmdline.init_args.clone(),
        total_ms,
    };
    let json = record::write(&run, &record).map_err(HandoffError::Record)?;
    debug!(b.log, "wrote {}", json.display());
    info!(b.log, "{}", booting_line(f, &record.layers, total_ms));
    early::restore_kmsg_ratelimit(&b.root);
    handoff::move_mounts(&*b.os, &b.root, newroot)?;
    let freed = handoff::free_initramfs(&b.root, &[newroot.to_path_buf()]);
    handoff::log_freed(&b.log, &freed);
    info!(b.log, "starting {init} (t={:.3} s)", monotonic_secs());
    Err(handoff::switch_root(&*b.os, newroot, &init, &f.cmdline.init_args))
}

/// The one summary line: who, where, from what, with which layers, how long.
fn booting_line(f: &Facts<'_>, layers: &[LayerSummary], total_ms: u64) -> String {
    let name = f.identity.fqdn.as_deref().unwrap_or(&f.identity.hostname);
    let lease = &f.net.lease;
    let files: u64 = layers.iter().map(|l| l.files).sum();
    let kinds: Vec<String> = layers.iter().map(|l| l.kind.to_string()).collect();
    let layers =
        if kinds.is_empty() { "no layers".to_string() } else { format!("layers {}: {files} files", kinds.join(",")) };
    format!(
        "booting {name} {}/{} from {} (NFSv{}; {layers}) after {total_ms} ms",
        lease.address,
        lease.prefix_len,
        f.mounted.root.source(),
        f.mounted.mounted_version
    )
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

/// Run one stage: time it, and turn an error or a panic into the ERROR message.
pub fn stage<T, E: std::fmt::Display>(b: &Boot, stage: Stage, f: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    let timer = StageTimer::start(stage.name());
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => {
            let ms = timer.elapsed_ms() as u64;
            b.timings.lock().unwrap_or_else(|p| p.into_inner()).push(StageTime { stage, ms });
            timer.done(&b.log);
            Ok(value)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!(
            "stage {stage} panicked: {}: this is a bug in diskless; please report it with the console log",
            early::panic_message(&*payload)
        )),
    }
}

/// `diskless.break=<stage>`: stop before `name` and apply the failure action.
fn breaks_before(b: &Boot, cmdline: &Cmdline, config: &Config, name: &str) -> bool {
    if cmdline.break_before.as_deref() != Some(name) {
        return false;
    }
    info!(b.log, "break before stage {name} (diskless.break={name})");
    failure_action(b, cmdline, config);
    true
}

/// One clear ERROR line, then the failure action.
fn fail(b: &Boot, cmdline: &Cmdline, config: &Config, message: &str) {
    info!(b.log, "ERROR: {message}");
    failure_action(b, cmdline, config);
}

/// What ends a failed boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the archive's shell, then reboot when it exits.
    Shell(PathBuf),
    Reboot,
    /// Power off after the countdown (`on_failure = "halt"`).
    Halt,
}

/// The rescue shell only when allowed (`diskless.shell` or `on_failure = "shell"`) and
/// the archive has one; otherwise the configured reboot or halt.
pub fn choose_action(b: &Boot, cmdline: &Cmdline, config: &Config) -> Action {
    let shell = b.root.join("bin/sh");
    if cmdline.shell || config.on_failure == OnFailure::Shell {
        if shell.exists() {
            return Action::Shell(shell);
        }
        info!(b.log, "a rescue shell is allowed but the initramfs has no /bin/sh: rebuild it with a shell to get one");
    }
    match config.on_failure {
        OnFailure::Halt => Action::Halt,
        OnFailure::Reboot | OnFailure::Shell => Action::Reboot,
    }
}

/// Rescue shell or countdown, then reboot (or power off). Returns only when that call
/// failed.
fn failure_action(b: &Boot, cmdline: &Cmdline, config: &Config) {
    // The hardware report (devices without driver, interfaces, disks) is what the
    // administrator needs most after a failure: never cut it off.
    if let Some(Err(message)) = b.settle_hardware(false) {
        info!(b.log, "ERROR: {message}");
    }
    let action = choose_action(b, cmdline, config);
    if let Action::Shell(shell) = &action {
        info!(b.log, "starting rescue shell");
        match b.os.run_shell(shell) {
            Ok(status) => info!(b.log, "rescue shell ended ({status})"),
            Err(e) => info!(
                b.log,
                "ERROR: starting the rescue shell {}: {e}: check that it is a static binary",
                shell.display()
            ),
        }
    }
    let verb = if action == Action::Halt { "powering off" } else { "rebooting" };
    let delay = config.reboot_delay;
    for left in (1..=delay).rev() {
        if left == delay || left <= 5 || left % 10 == 0 {
            info!(b.log, "{verb} in {left} s");
        }
        std::thread::sleep(b.second);
    }
    info!(b.log, "{verb}");
    let e = if action == Action::Halt { b.os.power_off() } else { b.os.reboot() };
    info!(b.log, "ERROR: {verb}: {e}: reset the machine by hand");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Capture, captured};
    use crate::os::fake::FakeOs;

    fn test_boot(cmdline: &str) -> (Boot, Arc<FakeOs>, Capture, tempfile::TempDir) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("proc")).unwrap();
        std::fs::write(root.path().join("proc/cmdline"), cmdline).unwrap();
        std::fs::create_dir_all(root.path().join("dev")).unwrap();
        std::fs::write(root.path().join("dev/kmsg"), "").unwrap();
        let os = Arc::new(FakeOs::default());
        let (log, console) = captured();
        let b = Boot {
            panic_hook: false,
            second: Duration::ZERO,
            ..Boot::new(root.path().to_path_buf(), os.clone(), Arc::new(log))
        };
        (b, os, console, root)
    }

    /// An empty module database for the fake kernel, so the hardware stage runs.
    fn with_module_db(root: &Path) {
        let km = modules_db::KernelModules {
            version: "6.1.0-test".into(),
            root: root.join("lib/modules/6.1.0-test"),
            modules: Default::default(),
            builtin: Default::default(),
        };
        let db = root.join(modules_db::db_path("6.1.0-test"));
        std::fs::create_dir_all(db.parent().unwrap()).unwrap();
        std::fs::write(db, modules_db::encode(&km, &Default::default())).unwrap();
        std::fs::create_dir_all(root.join("sys/devices")).unwrap();
    }

    #[test]
    fn nfs_prefetch_yields_the_cpu_to_the_hardware_drivers() {
        // On one CPU the NFS modules loading at the same priority as the coldplug pushed
        // the storage drivers, and so the settle the local stage waits for, 0.5 s later.
        let (b, os, _console, root) = test_boot("root=/dev/nfs nfsroot=10.0.0.1:/srv/root,vers=3 ip=dhcp");
        with_module_db(root.path());
        let cmdline = Cmdline::parse("root=/dev/nfs nfsroot=10.0.0.1:/srv/root,vers=3 ip=dhcp");
        let thread = prefetch_nfs_modules(&b, &cmdline, &Config::default()).expect("a root was asked for");
        thread.join().unwrap();
        assert_eq!(os.calls().first().map(String::as_str), Some("nice 10"), "{:?}", os.calls());
    }

    #[test]
    fn ip_off_without_a_root_is_a_hardware_only_run_that_powers_off() {
        let (b, os, console, root) = test_boot("ip=off diskless.settle_ms=0");
        with_module_db(root.path());
        run(&b);
        let text = console.text();
        assert!(text.contains("diskless: stage hardware done in "), "{text}");
        assert!(
            text.contains("diskless: ip=off and no root=/nfsroot=: hardware-only diagnostic run, powering off after the summary\ndiskless: boot summary (t="),
            "{text}"
        );
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors, ["diskless: ERROR: powering off: fake: switch the machine off by hand"], "only the fake's");
        assert_eq!(os.calls().last().map(String::as_str), Some("power_off"));
    }

    #[test]
    fn ip_off_with_a_root_is_an_error_that_names_ip_off() {
        let (b, os, console, root) =
            test_boot("ip=off nfsroot=10.77.0.1:/export diskless.settle_ms=0 diskless.reboot_delay=0");
        with_module_db(root.path());
        run(&b);
        let text = console.text();
        assert!(
            text.contains("diskless: ERROR: networking disabled by ip=off/none; a network root cannot be mounted\n"),
            "{text}"
        );
        assert_eq!(os.calls().last().map(String::as_str), Some("reboot"));
    }

    #[test]
    fn a_root_that_is_not_nfs_fails_before_the_network_is_waited_for() {
        let (b, _, console, root) = test_boot("root=/dev/sda1 diskless.settle_ms=0 diskless.reboot_delay=0");
        with_module_db(root.path());
        run(&b);
        let text = console.text();
        assert!(text.contains("diskless: ERROR: root=/dev/sda1: diskless mounts only NFS roots"), "{text}");
        assert!(!text.contains("stage network"), "{text}");
    }

    #[test]
    fn break_before_a_late_stage_lets_the_earlier_ones_run_and_records_their_times() {
        let (b, os, console, root) = test_boot("diskless.break=network diskless.settle_ms=0 diskless.reboot_delay=0");
        with_module_db(root.path());
        run(&b);
        let text = console.text();
        assert!(text.contains("diskless: break before stage network (diskless.break=network)"), "{text}");
        let stages: Vec<Stage> = b.timings().iter().map(|t| t.stage).collect();
        assert_eq!(stages, [Stage::Early, Stage::Hardware]);
        assert_eq!(os.calls().last().map(String::as_str), Some("reboot"));
    }

    #[test]
    fn a_bad_ip_parameter_is_reported_before_the_network_stage() {
        let (b, _, console, root) = test_boot("ip=10.0.0.300::::::off diskless.settle_ms=0 diskless.reboot_delay=0");
        with_module_db(root.path());
        run(&b);
        let text = console.text();
        assert!(text.contains("diskless: ERROR: kernel command line: "), "{text}");
        assert!(!text.contains("stage network"), "{text}");
    }

    #[test]
    fn a_missing_module_database_is_one_error_line_then_a_reboot_countdown() {
        let (b, os, console, root) = test_boot("diskless.reboot_delay=3");
        run(&b);
        let text = console.text();
        let lines: Vec<&str> = text.lines().collect();
        let db = root.path().join("lib/modules/6.1.0-test/modules.db");
        assert!(lines[0].starts_with("diskless: stage early done in "), "{text}");
        assert!(
            lines[1].starts_with(&format!("diskless: ERROR: reading the module database {}: ", db.display())),
            "{text}"
        );
        assert!(lines[1].ends_with("rebuild it with mkinitramfs for the running kernel version"), "{text}");
        assert_eq!(
            &lines[2..],
            [
                "diskless: rebooting in 3 s",
                "diskless: rebooting in 2 s",
                "diskless: rebooting in 1 s",
                "diskless: rebooting",
                "diskless: ERROR: rebooting: fake: reset the machine by hand"
            ]
        );
        assert_eq!(os.calls().last().map(String::as_str), Some("reboot"));
        let kmsg = std::fs::read_to_string(root.path().join("dev/kmsg")).unwrap();
        assert!(kmsg.contains(&format!("<7>{}\n", lines[1])), "the ERROR line also goes to kmsg: {kmsg}");
    }

    #[test]
    fn break_stops_before_the_named_stage() {
        let (b, os, console, _root) = test_boot("diskless.break=hardware diskless.reboot_delay=0");
        run(&b);
        let text = console.text();
        assert!(
            text.contains("diskless: break before stage hardware (diskless.break=hardware)\ndiskless: rebooting\n"),
            "{text}"
        );
        assert!(!text.contains("ERROR: reading the module database"), "hardware ran: {text}");
        assert_eq!(os.calls().last().map(String::as_str), Some("reboot"));
    }

    #[test]
    fn on_failure_halt_powers_off_instead_of_rebooting() {
        let (b, os, console, _root) =
            test_boot("diskless.on_failure=halt diskless.break=hardware diskless.reboot_delay=1");
        run(&b);
        assert!(
            console.text().contains("diskless: powering off in 1 s\ndiskless: powering off\n"),
            "{}",
            console.text()
        );
        assert_eq!(os.calls().last().map(String::as_str), Some("power_off"));
    }

    #[test]
    fn unknown_break_stage_is_named_with_the_valid_ones() {
        let (b, _, console, _root) = test_boot("diskless.break=netwrok diskless.reboot_delay=0");
        run(&b);
        assert!(
            console.text().contains("diskless.break=netwrok: no such stage; stages are early, hardware, network, identity, root, local, handoff"),
            "{}",
            console.text()
        );
    }

    #[test]
    fn rescue_shell_needs_both_the_flag_and_bin_sh() {
        let (b, os, console, root) = test_boot("diskless.shell diskless.break=hardware diskless.reboot_delay=0");
        run(&b);
        assert!(console.text().contains("no /bin/sh: rebuild it with a shell"), "{}", console.text());
        assert!(!os.calls().iter().any(|c| c.starts_with("shell")));

        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::write(root.path().join("bin/sh"), "").unwrap();
        run(&b);
        let shell = format!("shell {}", root.path().join("bin/sh").display());
        let calls = os.calls();
        let at = calls.iter().position(|c| *c == shell).expect("shell started");
        assert_eq!(calls[at + 1], "reboot", "reboot after the shell ends");
        assert!(console.text().contains("diskless: starting rescue shell\n"));

        let config = Config::default();
        assert_eq!(
            choose_action(&b, &Cmdline::parse(""), &config),
            Action::Reboot,
            "no flag: no shell even with /bin/sh"
        );
        let shell_config = Config { on_failure: OnFailure::Shell, ..Config::default() };
        assert_eq!(choose_action(&b, &Cmdline::parse(""), &shell_config), Action::Shell(root.path().join("bin/sh")));
    }

    #[test]
    fn a_panicking_stage_becomes_an_error_message_and_others_are_timed() {
        let (b, _, console, _root) = test_boot("");
        let err = stage(&b, Stage::Hardware, || -> Result<(), String> { panic!("index out of range") }).unwrap_err();
        assert_eq!(
            err,
            "stage hardware panicked: index out of range: this is a bug in diskless; please report it with the console log"
        );
        assert_eq!(console.text(), "", "a failed stage is not reported done");
        assert_eq!(stage(&b, Stage::Early, || Ok::<_, String>(7)), Ok(7));
        assert!(console.text().starts_with("diskless: stage early done in "));
    }

    #[test]
    fn countdown_prints_tens_and_the_last_five_seconds() {
        let (b, _, console, _root) = test_boot("");
        failure_action(&b, &Cmdline::default(), &Config { reboot_delay: 21, ..Config::default() });
        let marks: Vec<String> = console
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("diskless: rebooting in "))
            .map(str::to_string)
            .collect();
        assert_eq!(marks, ["21 s", "20 s", "10 s", "5 s", "4 s", "3 s", "2 s", "1 s"]);
    }

    #[test]
    fn a_panic_in_the_background_coldplug_is_reported_before_the_failure_action() {
        let (b, os, console, _root) = test_boot("");
        let background = Background::spawn(|ready| {
            ready.signal();
            panic!("lost device")
        })
        .unwrap();
        *b.hardware.lock().unwrap() = Some(background);
        failure_action(&b, &Cmdline::default(), &Config { reboot_delay: 0, ..Config::default() });
        let text = console.text();
        assert!(
            text.contains(
                "diskless: ERROR: stage hardware panicked in the background: lost device: this is a bug in diskless"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("diskless: rebooting\ndiskless: ERROR: rebooting: fake: reset the machine by hand\n"),
            "{text}"
        );
        assert_eq!(os.calls().last().map(String::as_str), Some("reboot"));
        assert!(b.hardware.lock().unwrap().is_none(), "joined");
    }
}
