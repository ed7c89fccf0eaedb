//! Stage `root` (DESIGN §2 step 5): the final NFS root from the command line and the
//! lease, the first version's modules (loaded in the background from the hardware
//! stage on; a fallback version's when it is tried), and the mount with retries.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Mounted, RootError, RootRequest, Version, mount_root, parse};
use crate::config::Config;
use crate::context::Context;
use crate::hardware::Modules;
use crate::net::Lease;
use crate::{debug, info};

/// Nice value of the background NFS module loads (the coldplug's run at 0).
const NFS_PREFETCH_NICE: i32 = 10;

/// NFS modules loading in the background; the thread returns their names.
pub struct Prefetch(JoinHandle<Vec<String>>);

impl Prefetch {
    /// The modules the background loads brought in (none if the thread panicked: the
    /// stage loads what is still missing and reports what fails).
    pub fn join(self) -> Vec<String> {
        self.0.join().unwrap_or_default()
    }
}

/// Start loading the NFS modules in the background when the boot will need them:
/// `needed` (a root was asked for, or the network is on and DHCP may name one). They
/// are the modules of the first version to try: v3's unless the command line asks for
/// v4 (a DHCP root-path that asks for v4 has its modules loaded by the stage). Errors
/// are not reported here: the root stage loads whatever is still missing and reports
/// what fails.
pub fn prefetch_modules(ctx: &Context, modules: Arc<Modules>, request: &RootRequest, needed: bool) -> Option<Prefetch> {
    if !needed {
        return None;
    }
    let version = match request {
        RootRequest::Spec { version, .. } => *version,
        RootRequest::FromDhcp => Version::Auto,
    };
    let names = parse::modules_for(version);
    let ctx = ctx.clone();
    std::thread::Builder::new()
        .name("nfs-modules".into())
        .spawn(move || {
            // The hardware's drivers go first: the settle window that the local stage
            // waits for starts only when their loads are done, while the NFS modules
            // are not needed before the lease and the host name are in. On one CPU a
            // nice value is what orders them; with more CPUs both run at once anyway.
            if let Err(e) = ctx.os.set_thread_nice(NFS_PREFETCH_NICE) {
                debug!(ctx.log, "lowering the priority of the NFS module loads: {e}");
            }
            modules.load(&names).loaded
        })
        .ok()
        .map(Prefetch)
}

/// What the root stage needs from the earlier ones.
pub struct Inputs<'a> {
    pub modules: &'a Modules,
    pub config: &'a Config,
    pub request: &'a RootRequest,
    pub lease: &'a Lease,
    pub hostname: &'a str,
}

/// Stage `root`: mount the image read-only on `newroot`.
pub fn stage(
    ctx: &Context,
    inputs: &Inputs<'_>,
    newroot: &Path,
    prefetch: Option<Prefetch>,
) -> Result<Mounted, RootError> {
    let nfs = inputs.request.resolve(inputs.lease, inputs.hostname)?;
    let version = match nfs.version {
        Version::Auto => "3, or 4.2 if the server refuses 3".to_string(),
        v => v.to_string(),
    };
    info!(ctx.log, "NFS root {} (NFS version {version}) from {}", nfs.spec(), nfs.syntax);
    if nfs.servers.len() > 1 {
        let position = parse::start_position(inputs.lease.address, nfs.servers.len());
        info!(
            ctx.log,
            "NFS root servers in this host's order: {} (address {} modulo {} = {position}; each silent for up \
             to {} s before the next)",
            parse::join_servers(&nfs.servers, ", "),
            inputs.lease.address,
            nfs.servers.len(),
            inputs.config.nfs_server_timeout.max(1)
        );
    }
    // What the background loads brought in is live and skipped by the loads of the
    // versions tried; what they did not (another version, a failure) is loaded then.
    let prefetched = prefetch.map(Prefetch::join).unwrap_or_default();
    let load = |version: Version| inputs.modules.load(&parse::modules_for(version));
    let retry = super::Retry {
        timeout: Duration::from_secs(inputs.config.nfs_retry_timeout),
        second: ctx.second,
        server_timeout: Duration::from_secs(inputs.config.nfs_server_timeout),
    };
    let mut mounted = mount_root(&*ctx.os, &ctx.log, &nfs, inputs.lease.address, newroot, retry, &load)?;
    mounted.modules = prefetched.into_iter().chain(std::mem::take(&mut mounted.modules)).collect();
    info!(
        ctx.log,
        "mounted {} read-only on {} (NFSv{})",
        mounted.root.source(),
        newroot.display(),
        mounted.mounted_version
    );
    Ok(mounted)
}
