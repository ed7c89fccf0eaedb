//! Stage `local` (DESIGN §2 step 6): the layers that match this machine, the scratch
//! disks and swap, then the local dirs mounted and filled.

use std::path::{Path, PathBuf};

use super::prefetch;
use super::{
    LayerInput, LayerKind, LayerSelection, LocalError, LocalReport, PLACED_FILES, select_layers, setup_with_scratch,
    write_placed,
};
use crate::config::{self, Config};
use crate::context::Context;
use crate::hardware::{MissingReason, Modules};
use crate::net::identity::{LostIdentity, LostLayer};
use crate::os::MountFlags;
use crate::root::Mounted;
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
    /// The root mount, for the private layer mount; `None` reads the layers through
    /// `newroot`.
    pub root: Option<&'a Mounted>,
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
    let Inputs { modules, config, newroot, layers: input, root, .. } = *inputs;
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
    let source = LayerSource::mount(ctx, root, newroot, &selection);
    // The layers are read ahead while the scratch disks are looked for: on a lossy
    // network the copy's round trips one by one are what takes long (see `prefetch`).
    let (scratch, read_ahead) = std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("prefetch".into())
            .spawn_scoped(scope, || prefetch::prefetch(source.root(), &selection.layers));
        let scratch = scratch::stage(ctx, modules, config, newroot, &run_dir);
        (scratch, reader.ok().and_then(|r| r.join().ok()))
    });
    if let Some(report) = read_ahead {
        info!(ctx.log, "{report}");
    }
    let report =
        setup_with_scratch(config, newroot, source.root(), &run_dir, &selection, scratch.local_dirs(), &*ctx.os)
            .map_err(StageError::Setup)?;
    drop(source);
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

/// Where the initramfs mounts the image a second time to read the layers.
const LAYER_MOUNT: &str = "layers";
/// Added to the root's own mount options for the layer mount. On the root every open
/// asks the server whether the file changed (close-to-open) and cached attributes last
/// 3 s: after the read-ahead the copy still made one round trip per entry, and on a
/// lossy network each costs a retransmission timeout now and then (71 GETATTRs, 8 s
/// of a 16 s copy at 20 % loss each way). The layers do not change during the copy, so
/// this private mount keeps what the read-ahead learnt for the copy's few seconds;
/// `nosharecache` gives it caches of its own, apart from the root's, whose semantics stay
/// the kernel's defaults for the running system.
const LAYER_MOUNT_OPTIONS: &str = "nocto,actimeo=3600,nosharecache";

/// The image as the layer copy reads it: the private layer mount when it works and
/// shows every selected layer, else the root itself. Unmounted on drop.
struct LayerSource<'a> {
    ctx: &'a Context,
    root: PathBuf,
    mount: Option<PathBuf>,
}

impl<'a> LayerSource<'a> {
    fn mount(ctx: &'a Context, root: Option<&Mounted>, newroot: &Path, selection: &LayerSelection) -> LayerSource<'a> {
        let fallback = LayerSource { ctx, root: newroot.to_path_buf(), mount: None };
        let Some(root) = root else { return fallback };
        if selection.layers.is_empty() {
            return fallback;
        }
        let target = ctx.root.join(LAYER_MOUNT);
        if let Err(e) = std::fs::create_dir_all(&target) {
            debug!(ctx.log, "layers read through the root: cannot create {}: {e}", target.display());
            return fallback;
        }
        let options = format!("{},{LAYER_MOUNT_OPTIONS}", root.mount_options);
        if let Err(e) = ctx.os.mount(&root.root.source(), &target, "nfs", MountFlags::RDONLY, &options) {
            debug!(
                ctx.log,
                "layers read through the root: mounting {} on {}: {e}",
                root.root.source(),
                target.display()
            );
            return fallback;
        }
        // A mount that does not show the layers the root shows is not the same image
        // (it is still unmounted on drop).
        let read_from = match selection.layers.iter().find(|l| !super::image::exists_in_image(&target, &l.path)) {
            Some(missing) => {
                debug!(ctx.log, "layers read through the root: the layer mount has no {}", missing.path.display());
                newroot.to_path_buf()
            }
            None => {
                debug!(ctx.log, "layers read through a private mount of {} ({options})", root.root.source());
                target.clone()
            }
        };
        LayerSource { ctx, root: read_from, mount: Some(target) }
    }

    fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for LayerSource<'_> {
    fn drop(&mut self) {
        let Some(target) = self.mount.take() else { return };
        if let Err(e) = self.ctx.os.unmount(&target) {
            info!(self.ctx.log, "warning: unmounting the layer mount {}: {e}", target.display());
        }
    }
}
