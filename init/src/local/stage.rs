//! Stage `local` (DESIGN §2 step 6): the layers that match this machine, the scratch
//! disks and swap, then the local dirs mounted and filled.

use std::path::Path;

use super::prefetch;
use super::{
    LayerInput, LayerKind, LayerSelection, LocalError, LocalReport, PLACED_FILES, select_layers, setup_with_scratch,
    write_placed,
};
use crate::config::{self, Config};
use crate::context::Context;
use crate::hardware::{MissingReason, Modules};
use crate::net::identity::{LostIdentity, LostLayer};
use crate::scratch::{self, ScratchReport};
use crate::{debug, info};

/// Why the local stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The overlay module (overlay mode) did not load.
    #[error(
        "loading the overlay module for mode = \"overlay\": {0}: rebuild the initramfs with it \
         (mkinitramfs --profile netboot) or use mode = \"symlink\""
    )]
    OverlayModule(#[source] MissingReason),
    #[error("making the local dirs: {0}")]
    Setup(#[source] LocalError),
}

/// Stage `local` for the image mounted at `newroot`, configured by `config` (the image's).
/// When the identity was `lost`, the layers named after the made-up host name are
/// recorded in it and the console warns about them.
/// What the local stage works from.
pub struct Inputs<'a> {
    pub modules: &'a Modules,
    /// The image's configuration.
    pub config: &'a Config,
    /// Where the image is mounted.
    pub newroot: &'a Path,
    pub layers: &'a LayerInput,
    /// The image's init (`/sbin/init`), read ahead for the hand-off.
    pub init: &'a str,
}

pub fn stage(
    ctx: &Context,
    inputs: &Inputs<'_>,
    lost: Option<&mut LostIdentity>,
) -> Result<(LocalReport, ScratchReport), StageError> {
    let Inputs { modules, config, newroot, init, .. } = *inputs;
    if config.mode == config::Mode::Overlay {
        // Loaded on demand like the NFS client: only overlay-mode images need it.
        if let Some(missing) = modules.load(&["overlay"]).missing.into_iter().next() {
            return Err(StageError::OverlayModule(missing.reason));
        }
    }
    std::thread::scope(|scope| {
        // The image's init is read into the root's page cache while this stage works:
        // after the hand-off its exec then needs no round trips (on a lossy network the
        // busybox binary alone took 8-23 s to page in).
        let init_reader = std::thread::Builder::new()
            .name("read-init".into())
            .spawn_scoped(scope, || prefetch::read_program(newroot, Path::new(init)));
        let result = copy_layers(ctx, inputs, lost);
        if let Ok(Ok(bytes)) = init_reader.map(|r| r.join()) {
            debug!(ctx.log, "read ahead {init} and its interpreter: {}", crate::scratch::show_size(bytes));
        }
        result
    })
}

fn copy_layers(
    ctx: &Context,
    inputs: &Inputs<'_>,
    lost: Option<&mut LostIdentity>,
) -> Result<(LocalReport, ScratchReport), StageError> {
    let Inputs { modules, config, newroot, layers: input, .. } = *inputs;
    let selection = select_layers(config, newroot, input);
    for layer in &selection.layers {
        info!(ctx.log, "layer {layer}");
    }
    // Missing layers are listed: a host that silently lacks its own layer is the
    // classic surprise of per-host configuration.
    for skipped in &selection.skipped {
        info!(ctx.log, "{skipped}");
    }
    if let Some(lost) = lost {
        lost.layers = named_layers(&selection);
        info!(ctx.log, "{}", lost.layers_warning(&input.hostname));
    }
    let run_dir = ctx.run_dir();
    // The layers are read ahead while the scratch disks are looked for: on a lossy
    // network the copy's round trips one by one are what takes long (see `prefetch`).
    let (scratch, ahead) = std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn_scoped(scope, || prefetch::prefetch(newroot, &selection.layers));
        let scratch = scratch::stage(ctx, modules, config, newroot, &run_dir);
        (scratch, reader.ok().and_then(|r| r.join().ok()))
    });
    if let Some(ahead) = &ahead {
        info!(ctx.log, "{}", ahead.report);
    }
    let report = setup_with_scratch(config, newroot, &run_dir, &selection, scratch.local_dirs(), ahead, &*ctx.os)
        .map_err(StageError::Setup)?;
    for warning in &report.layers.warnings {
        info!(ctx.log, "warning: layer copy: {warning}");
    }
    // For `diskless relayer`: it removes what a layer placed and no layer has any more.
    if let Err(e) = write_placed(&run_dir, &report.layers.placed) {
        info!(
            ctx.log,
            "warning: writing {}: {e}: diskless relayer will not remove files that leave the layers",
            run_dir.join(PLACED_FILES).display()
        );
    }
    Ok((report, scratch))
}

/// The layers whose directory is named after the host name (`labs/<prefix>`,
/// `hosts/<name>`; see the layer table of `select`), as the selection decided them.
fn named_layers(selection: &LayerSelection) -> Vec<LostLayer> {
    let applied = selection.layers.iter().map(|l| (l.kind, Some(l.path.clone()), true));
    let skipped = selection.skipped.iter().map(|s| (s.kind, s.path.clone(), false));
    let mut layers: Vec<LostLayer> = applied
        .chain(skipped)
        .filter(|(kind, _, _)| matches!(kind, LayerKind::Lab | LayerKind::Host))
        .map(|(kind, path, applied)| LostLayer { kind, path, applied })
        .collect();
    // Application order, as the console lists the layers.
    layers.sort_by_key(|l| l.kind as u8);
    layers
}
