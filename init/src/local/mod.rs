//! The local stage (DESIGN §5): make the configured dirs of the read-only image
//! writable and fill them from the layers that match this machine.
//!
//! The stage is four steps, each usable alone (the admin CLI shows plans without
//! mounting anything):
//!
//! 1. [`select_layers`]: which layer directories of the image apply to this machine,
//!    in order, with the ones skipped and why;
//! 2. [`plan_mounts`]: a pure list of mount actions for the configured mode;
//! 3. [`execute`]: those actions through the boot's [`Os`];
//! 4. [`apply`]: copy the layers into the local dirs, metadata set through the boot's [`Os`].
//!
//! The copy and `diskless plan` go through a layer with one walk ([`walk`]).
//!
//! [`setup`] runs 2-4 in the order the modes need (in overlay mode the layers are
//! copied into the uppers *before* the overlays are mounted, because overlayfs does
//! not allow its upper to change under a mounted overlay).
//!
//! Side effects (mount, lchown, chmod, utimensat) go through [`Os`], so the logic is
//! tested against temp-dir trees with the fake.

mod copy;
pub(crate) mod image;
mod mounts;
pub mod prefetch;
mod select;
pub mod stage;
pub mod walk;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::os::Os;

pub use copy::{ApplyError, ApplyReport, CopyWarning, LayerReport, PLACED_FILES, apply, read_placed, write_placed};
pub use mounts::{Destination, MountAction, MountError, MountPlan, execute, plan_mounts, plan_mounts_with_scratch};
pub use select::{
    HostNameError, Layer, LayerInput, LayerKind, LayerSelection, SkipReason, SkippedLayer, check_host_name,
    select_layers,
};
pub use stage::StageError;

/// Directory under the run dir (`/run/diskless`) that holds the overlay uppers.
pub const OVERLAY_SUBDIR: &str = "overlay";

/// What the local stage did, for boot.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReport {
    pub plan: MountPlan,
    pub layers: ApplyReport,
}

/// Why the local stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Mounting the local dirs failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Copying a layer failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Mounts the local dirs of the image at `image_root` as `config` says and copies the
/// `selection` into them. `run_dir` is where private mounts go (`/run/diskless`).
/// Warnings about skipped files are in the report; the caller logs them.
pub fn setup(
    config: &Config,
    image_root: &Path,
    run_dir: &Path,
    selection: &LayerSelection,
    os: &dyn Os,
) -> Result<LocalReport, LocalError> {
    setup_with_scratch(config, image_root, run_dir, selection, &[], None, os)
}

/// [`setup`] with the local dirs the scratch stage put on a scratch disk
/// (`scratch::ScratchReport::local_dirs`): those are bind-mounted instead of a tmpfs,
/// and what [`prefetch::prefetch`] read of the selection's layers.
pub fn setup_with_scratch(
    config: &Config,
    image_root: &Path,
    run_dir: &Path,
    selection: &LayerSelection,
    scratch: &[(std::path::PathBuf, std::path::PathBuf)],
    ahead: Option<prefetch::ReadAhead>,
    os: &dyn Os,
) -> Result<LocalReport, LocalError> {
    let plan = mounts::plan_mounts_with_scratch(config, image_root, run_dir, scratch);
    execute(&plan.before_copy, os)?;
    let layers = apply(selection, image_root, &plan.destinations, ahead, os)?;
    execute(&plan.after_copy, os)?;
    Ok(LocalReport { plan, layers })
}
