//! What every stage works with: the boot root, the one system interface, the log and the
//! length of a countdown second. The stages take a `&Context`, never the whole boot, so
//! the stage modules do not depend on the module that orders them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::log::Log;
use crate::os::Os;

/// Where the image is mounted, relative to the boot root (the archive has the dir).
pub const NEWROOT: &str = "newroot";
/// Private state of diskless under the boot root; moves with `/run` into the image.
pub const RUN_DIR: &str = "run/diskless";

/// The boot's surroundings.
#[derive(Clone)]
pub struct Context {
    /// `/` at boot; a temporary directory in tests.
    pub root: PathBuf,
    /// Every side effect goes through it.
    pub os: Arc<dyn Os>,
    pub log: Arc<Log>,
    /// How long one second of a countdown lasts (shortened by tests).
    pub second: Duration,
}

impl Context {
    /// Where the image is mounted.
    pub fn newroot(&self) -> PathBuf {
        self.root.join(NEWROOT)
    }

    /// `/run/diskless`.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join(RUN_DIR)
    }
}
