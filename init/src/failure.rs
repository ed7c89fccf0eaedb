//! The failure policy (DESIGN §8): what a failed stage is, by its type, and what ends a
//! boot that cannot go on. Applied in one place, `boot::run`; the stages only return
//! their errors.

use std::path::PathBuf;

use crate::cmdline::Cmdline;
use crate::config::{Config, OnFailure};
use crate::context::Context;
use crate::early::EarlyError;
use crate::handoff::HandoffError;
use crate::hardware::HardwareError;
use crate::info;
use crate::local::StageError as LocalStageError;
use crate::net::{ConfigError as IpError, NetError};
use crate::root::{RootError, RootSpecError};
use crate::stage::Stage;

/// A stage that failed, with the typed error of its module.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct BootError {
    pub stage: Stage,
    pub source: StageError,
}

/// The error of one stage's module.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Early(#[from] EarlyError),
    #[error(transparent)]
    Hardware(#[from] HardwareError),
    /// The boot needed the hardware's summary before the hardware stage ran.
    #[error("the hardware stage did not run: this is a bug in diskless")]
    HardwareNotRun,
    #[error("kernel command line: {0}")]
    IpParameter(#[from] IpError),
    #[error(transparent)]
    RootParameter(#[from] RootSpecError),
    #[error(transparent)]
    Network(#[from] NetError),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Local(#[from] LocalStageError),
    #[error(transparent)]
    Handoff(#[from] HandoffError),
    /// The stage panicked: a bug.
    #[error("stage {stage} panicked: {message}: this is a bug in diskless; please report it with the console log")]
    Panic { stage: Stage, message: String },
}

/// A stage that cannot fail.
impl From<std::convert::Infallible> for StageError {
    fn from(never: std::convert::Infallible) -> StageError {
        match never {}
    }
}

impl StageError {
    /// Whether the failure is the network's or the server's and a later boot may well
    /// succeed unchanged: no carrier, no DHCP answer, an NFS server that stopped
    /// answering. Everything else (a bad parameter, a missing driver, a broken image, a
    /// bug) needs the administrator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StageError::Network(NetError::NoCarrier { .. } | NetError::NoLease { .. })
                | StageError::Root(RootError::GaveUp { .. })
        )
    }
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

/// What the failure action is chosen by: the command line, and the configuration in
/// force (the image's once the root is mounted, else the defaults and the command line).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub cmdline: Cmdline,
    pub config: Config,
}

impl Policy {
    /// The rescue shell only when allowed (`diskless.shell` or `on_failure = "shell"`)
    /// and the archive has one; otherwise the configured reboot or halt. A transient
    /// failure reboots even with `on_failure = "halt"`: the next boot is the retry, and a
    /// room switched on while its server was down comes up by itself.
    pub fn action(&self, ctx: &Context, transient: bool) -> Action {
        let shell = ctx.root.join("bin/sh");
        if self.cmdline.shell || self.config.on_failure == OnFailure::Shell {
            if shell.exists() {
                return Action::Shell(shell);
            }
            info!(
                ctx.log,
                "a rescue shell is allowed but the initramfs has no /bin/sh: rebuild it with a shell to get one"
            );
        }
        match self.config.on_failure {
            OnFailure::Halt if transient => {
                info!(ctx.log, "the failure may pass (network or server): rebooting rather than powering off");
                Action::Reboot
            }
            OnFailure::Halt => Action::Halt,
            OnFailure::Reboot | OnFailure::Shell => Action::Reboot,
        }
    }

    /// Rescue shell or countdown, then reboot (or power off). Returns only when that
    /// call failed.
    pub fn act(&self, ctx: &Context, transient: bool) {
        let action = self.action(ctx, transient);
        if let Action::Shell(shell) = &action {
            info!(ctx.log, "starting rescue shell");
            match ctx.os.run_shell(shell) {
                Ok(status) => info!(ctx.log, "rescue shell ended ({status})"),
                Err(e) => info!(
                    ctx.log,
                    "ERROR: starting the rescue shell {}: {e}: check that it is a static binary",
                    shell.display()
                ),
            }
        }
        let verb = if action == Action::Halt { "powering off" } else { "rebooting" };
        let delay = self.config.reboot_delay;
        for left in (1..=delay).rev() {
            if left == delay || left <= 5 || left % 10 == 0 {
                info!(ctx.log, "{verb} in {left} s");
            }
            std::thread::sleep(ctx.second);
        }
        info!(ctx.log, "{verb}");
        let e = if action == Action::Halt { ctx.os.power_off() } else { ctx.os.reboot() };
        info!(ctx.log, "ERROR: {verb}: {e}: reset the machine by hand");
    }
}
