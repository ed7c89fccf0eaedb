//! Stage `hardware`: coldplug every device, load the matching modules in dependency
//! order (independent ones in parallel), and follow the uevents of the devices that
//! appear while drivers load, until nothing has happened for the settle time.
//!
//! [`loader`] reads the module database once per boot; [`coldplug`] matches devices
//! to modules and runs the loads; [`background`] lets the boot go on while the
//! coldplug settles.

pub mod background;
pub mod coldplug;
pub mod detached;
pub mod errno;
pub mod image;
pub mod index;
pub mod loader;
pub mod netpath;
pub mod plan;
#[cfg(test)]
mod real_machines;
pub mod report;
pub mod sysfs;
pub mod uevent;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use crate::info;
pub use background::{Background, Ready};
use coldplug::{Env, Event, run_coldplug};
pub use loader::{Loaded, Missing, MissingList, MissingReason, Modules};
use uevent::UeventReader;

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

#[derive(Debug, thiserror::Error)]
pub enum HardwareError {
    /// The module database could not be read.
    #[error(
        "reading the module database {}: {source}: the initramfs was not built for this kernel; rebuild it with mkinitramfs for the running kernel version",
        path.display()
    )]
    ReadDb { path: PathBuf, source: io::Error },
    /// The module database is damaged or of another format version.
    #[error(
        "reading the module database {}: {source}: rebuild the initramfs with the mkinitramfs that matches this init",
        path.display()
    )]
    ParseDb { path: PathBuf, source: modules_db::FormatError },
    /// The coldplug thread could not be started.
    #[error(
        "starting the coldplug thread: {0}: the machine is out of memory or threads; check the memory the machine boots with"
    )]
    Thread(#[source] io::Error),
    /// The coldplug thread panicked after the stage returned.
    #[error(
        "stage hardware panicked in the background: {message}: this is a bug in diskless; please report it with the console log"
    )]
    Panicked { message: String },
}

/// Run the stage at the boot: `root` is `/`, the kernel file systems are mounted, and
/// `modules` is the boot's database ([`Modules::open`]). Returns once the network path
/// is ready (see [`netpath`]); the rest of the coldplug goes on in the background until
/// the hardware settles, and joining the returned handle gives its summary.
pub fn hardware(root: &Path, modules: Arc<Modules>, settings: Settings) -> Result<Background, HardwareError> {
    let env = Env { sys: root.join("sys"), modules, settings, started: Instant::now() };
    let (tx, rx) = channel();
    let hurry = tx.clone();
    let background = Background::spawn(move |ready| {
        // Listen before the scan: a device added between the scan and the socket would
        // otherwise be missed for good.
        let reader = match UeventReader::start(&*env.modules.os, tx.clone(), Event::Uevent) {
            Ok(reader) => Some(reader),
            Err(e) => {
                info!(
                    env.modules.log,
                    "warning: opening the kernel uevent socket: {e}: devices that appear while drivers load will be missed"
                );
                None
            }
        };
        run_coldplug(&env, (tx, rx), ready, || {
            if let Some(reader) = reader {
                reader.stop();
            }
        })
    })?;
    Ok(background.with_hurry(hurry))
}
