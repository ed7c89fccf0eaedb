//! Stage `modules`: once the root is mounted, the drivers whose files the initramfs left
//! in the root image are loaded from the image's own `/lib/modules/$(uname -r)`. The
//! disk path's (storage, USB and SD host controllers, mass storage, disks: see
//! [`super::detached`]) load here, before the local stage looks for scratch disks; the
//! filesystems and overlayfs load by name when the local stage needs them. The drivers
//! of every other device are planned here and load after the hand-off, off the
//! critical path ([`super::detached`] says how and why). The archive's database knows
//! them all (`in_image`), so matching and the order of loads are the coldplug's as in
//! the hardware stage; only the files come from the image.
//!
//! An image without modules for the running kernel is no failure: the boot goes on
//! with the archive's drivers, the local dirs on tmpfs, and one line says what the
//! image lacks and what to install.

use std::convert::Infallible;
use std::path::Path;
use std::sync::mpsc::channel;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::coldplug::{Coldplug, Event, Setup};
use super::detached::{self, DetachedLoad};
use super::uevent::UeventReader;
use super::{HURRIED_QUIET, MAX_DURATION, Modules, PARALLEL_LOADS, Settings, sysfs};
use crate::context::Context;
use crate::{debug, info};

/// What the stage did, for boot.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageModules {
    /// The image's module directory as the image sees it: `/lib/modules/RELEASE`.
    pub dir: String,
    /// Whether the image has it.
    pub present: bool,
    /// Modules loaded from it, in the order their loads finished.
    pub loaded: Vec<String>,
    /// Modules of the image that did not load: `module: why`.
    pub failed: Vec<String>,
    /// Modules that load from the image after the hand-off, in the background, in order
    /// (a device they drive is not without driver: its driver is on its way).
    #[serde(default)]
    pub background: Vec<String>,
    /// Who loads them: `diskless` (a child of the hand-off), or the image's udev daemon
    /// by its path.
    #[serde(default)]
    pub background_loader: String,
    /// Those loads, for the hand-off (none when the image's udev does them).
    #[serde(skip)]
    pub detached: Vec<DetachedLoad>,
}

/// The line for an image without modules for the running kernel: the one thing the
/// console says about it.
pub fn missing_dir_line(release: &str) -> String {
    format!(
        "the image has no modules for the running kernel: /lib/modules/{release} is missing, so storage, \
         filesystem and other drivers off the network path are not loaded and the local dirs stay on tmpfs; \
         install that kernel's modules in the image (in `diskless chroot IMAGE`: apt install \
         linux-image-{release}), or serve the image with a kernel it has (`diskless image check --kernel \
         {release} IMAGE` checks it)"
    )
}

/// Run the stage for the image mounted at `newroot`: see the module documentation.
pub fn stage(ctx: &Context, modules: &Modules, newroot: &Path) -> Result<ImageModules, Infallible> {
    let release = modules.release();
    let relative = format!("lib/modules/{release}");
    let mut report = ImageModules { dir: format!("/{relative}"), ..ImageModules::default() };
    let dir = newroot.join(&relative);
    if !dir.is_dir() {
        info!(ctx.log, "{}", missing_dir_line(&release));
        return Ok(report);
    }
    report.present = true;
    modules.set_image(dir);
    let started = Instant::now();
    let (tx, rx) = channel();
    // Listen before the scan, as the hardware stage does: a controller's disks appear
    // while its driver loads, and their uevents bring in the disk drivers.
    let reader = match UeventReader::start(&*modules.os, tx.clone(), Event::Uevent) {
        Ok(reader) => Some(reader),
        Err(e) => {
            info!(
                ctx.log,
                "warning: opening the kernel uevent socket: {e}: devices that appear while the image's drivers \
                 load will be missed"
            );
            None
        }
    };
    // Disks are in once their controller's load returned (the kernel waits for the
    // async probes), so a short quiet ends the stage, as a hurried hardware settle.
    let settings = Settings { settle: HURRIED_QUIET, max: MAX_DURATION, parallel: PARALLEL_LOADS };
    let sys = ctx.root.join("sys");
    let mut run = Coldplug::new(Setup { modules, settings, tx, sys: Some(sys.clone()) }).only(detached::is_disk_device);
    for device in sysfs::scan_devices(&sys) {
        let matched = modules.index.lookup(&device.modalias);
        let entries: Vec<_> = matched.iter().filter_map(|m| modules.index.module(m)).collect();
        if !detached::is_disk_device(&device.modalias, &entries) {
            continue;
        }
        run.skip_live(&matched);
        run.device(&device.devpath, &device.modalias);
    }
    run.settle(&rx);
    if let Some(reader) = reader {
        reader.stop();
    }
    report.loaded = run.loaded_names.clone();
    report.failed = run.plan.failed().into_iter().map(|(module, why)| format!("{module}: {why}")).collect();
    info!(
        ctx.log,
        "{} modules from the image's {} in {} ms{}{}",
        report.loaded.len(),
        report.dir,
        started.elapsed().as_millis(),
        if report.loaded.is_empty() { String::new() } else { format!(": {}", report.loaded.join(" ")) },
        if report.failed.is_empty() { String::new() } else { format!("; {} failed", report.failed.len()) }
    );
    let later = detached::plan(&sys, modules);
    report.background = later.iter().map(|load| load.module.clone()).collect();
    if !report.background.is_empty() {
        let (count, list) = (report.background.len(), report.background.join(" "));
        if let Some(udev) = detached::image_udev(newroot) {
            report.background_loader = udev.to_string();
            info!(ctx.log, "{count} more modules are left to the image's udev ({udev}): {list}");
        } else {
            report.background_loader = "diskless".to_string();
            report.detached = later;
            info!(ctx.log, "{count} more modules load from the image in the background after the hand-off: {list}");
        }
    }
    debug!(ctx.log, "modules of the image: {}", report.dir);
    Ok(report)
}
