//! The boot: one function per stage, called in order, each timed; and the failure policy
//! (DESIGN §8) for a stage that fails, panics, or is the target of `diskless.break`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cmdline::Cmdline;
use crate::config::{Config, OnFailure};
use crate::early;
use crate::hardware::{self, Settings, Summary};
use crate::info;
use crate::log::{Log, StageTimer, monotonic_secs};
use crate::os::Os;

/// Stage names in boot order: what `diskless.break=` accepts.
pub const STAGES: &[&str] = &["early", "hardware", "summary"];

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
}

impl Boot {
    /// The real boot of PID 1.
    pub fn pid1(os: Arc<dyn Os>) -> Boot {
        Boot {
            root: PathBuf::from("/"),
            os,
            log: Arc::new(Log::stdout()),
            panic_hook: true,
            second: Duration::from_secs(1),
        }
    }
}

/// Run the boot. Never returns: when the final power-off or reboot call fails, PID 1
/// sleeps forever rather than exit (the kernel would panic).
pub fn boot(b: &Boot) -> ! {
    run(b);
    hang()
}

/// Sleep forever.
pub fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The stages in order; returns only when the final power-off or reboot failed.
pub fn run(b: &Boot) {
    let cmdline = match stage(b, "early", || {
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
    for warning in config.apply_cmdline(&cmdline.raw) {
        info!(b.log, "warning: {warning}");
    }
    let ctx = Failing { cmdline: &cmdline, config: &config };
    if let Some(name) = &cmdline.break_before
        && !STAGES.contains(&name.as_str())
    {
        info!(b.log, "warning: diskless.break={name}: no such stage; stages are {}", STAGES.join(", "));
    }

    if breaks_before(b, &ctx, "hardware") {
        return;
    }
    let settings = Settings::with_settle_ms(config.settle_ms);
    let summary =
        match stage(b, "hardware", || hardware::hardware(&b.root, b.os.clone(), b.log.clone(), &cmdline, settings)) {
            Ok(summary) => summary,
            Err(message) => return fail(b, ctx.cmdline, ctx.config, &message),
        };

    if breaks_before(b, &ctx, "summary") {
        return;
    }
    let summary_stage = || {
        log_summary(&b.log, &summary);
        Ok::<_, std::convert::Infallible>(())
    };
    if let Err(message) = stage(b, "summary", summary_stage) {
        return fail(b, ctx.cmdline, ctx.config, &message);
    }
    info!(b.log, "powering off");
    let e = b.os.power_off();
    info!(b.log, "ERROR: powering off: {e}: switch the machine off by hand");
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
pub fn stage<T, E: std::fmt::Display>(
    b: &Boot,
    name: &'static str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    let timer = StageTimer::start(name);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => {
            timer.done(&b.log);
            Ok(value)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!(
            "stage {name} panicked: {}: this is a bug in diskless; please report it with the console log",
            early::panic_message(&*payload)
        )),
    }
}

/// What the failure policy reads.
struct Failing<'a> {
    cmdline: &'a Cmdline,
    config: &'a Config,
}

/// `diskless.break=<stage>`: stop before `name` and apply the failure action.
fn breaks_before(b: &Boot, ctx: &Failing<'_>, name: &str) -> bool {
    if ctx.cmdline.break_before.as_deref() != Some(name) {
        return false;
    }
    info!(b.log, "break before stage {name} (diskless.break={name})");
    failure_action(b, ctx.cmdline, ctx.config);
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
            root: root.path().to_path_buf(),
            os: os.clone(),
            log: Arc::new(log),
            panic_hook: false,
            second: Duration::ZERO,
        };
        (b, os, console, root)
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
            console.text().contains("diskless.break=netwrok: no such stage; stages are early, hardware, summary"),
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
        let err = stage(&b, "hardware", || -> Result<(), String> { panic!("index out of range") }).unwrap_err();
        assert_eq!(
            err,
            "stage hardware panicked: index out of range: this is a bug in diskless; please report it with the console log"
        );
        assert_eq!(console.text(), "", "a failed stage is not reported done");
        assert_eq!(stage(&b, "early", || Ok::<_, String>(7)), Ok(7));
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
}
