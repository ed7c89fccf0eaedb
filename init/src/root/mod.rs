//! Stage `root` (DESIGN §2 step 5): mount the NFS root read-only at `/newroot`,
//! retrying while the server is down.
//!
//! [`parse`] turns the command line and the lease into one [`NfsRoot`]; [`mount_root`]
//! tries each version ([`parse::attempts`]) and backs off 1, 2, 4, 8, 16, 16, ... s
//! between rounds, up to `nfs_retry_timeout` (0 = forever). An error that waiting
//! cannot fix (no such export, access denied) ends the stage at once.

pub mod parse;
pub mod stage;

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::hardware::{Missing, MissingList};
use crate::log::Log;
use crate::os::{MountFlags, Os};
use crate::{debug, info};
pub use parse::{NfsRoot, RootRequest, RootSpecError, Version};

/// First wait between rounds of tries; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// What an errno of mount(2) on NFS means, and whether waiting can fix it.
struct ErrnoMeaning {
    errno: Errno,
    meaning: &'static str,
    transient: bool,
}

/// mount(2) errors of an NFS mount, as the administrator needs to read them.
const MOUNT_ERRORS: &[ErrnoMeaning] = &[
    ErrnoMeaning { errno: Errno::TIMEDOUT, meaning: "the server did not answer", transient: true },
    ErrnoMeaning {
        errno: Errno::CONNREFUSED,
        meaning: "connection refused: no NFS service (or rpcbind for v3) on the server",
        transient: true,
    },
    ErrnoMeaning {
        errno: Errno::HOSTUNREACH,
        meaning: "host unreachable: the server is down or not on this network",
        transient: true,
    },
    ErrnoMeaning { errno: Errno::NETUNREACH, meaning: "network unreachable: no route to the server", transient: true },
    ErrnoMeaning { errno: Errno::HOSTDOWN, meaning: "host is down", transient: true },
    ErrnoMeaning { errno: Errno::CONNRESET, meaning: "the server closed the connection", transient: true },
    ErrnoMeaning { errno: Errno::AGAIN, meaning: "the server is busy (grace period?)", transient: true },
    ErrnoMeaning { errno: Errno::IO, meaning: "I/O error talking to the server", transient: true },
    ErrnoMeaning {
        errno: Errno::NOENT,
        meaning: "no such export on the server: check the path and the server's exports",
        transient: false,
    },
    ErrnoMeaning {
        errno: Errno::ACCESS,
        meaning: "permission denied: the server does not export this path to this client",
        transient: false,
    },
    ErrnoMeaning {
        errno: Errno::PERM,
        meaning: "operation not permitted: the server refused this client (check the export's client list and security flavour)",
        transient: false,
    },
    ErrnoMeaning { errno: Errno::NOTDIR, meaning: "the path is not a directory on the server", transient: false },
    ErrnoMeaning {
        errno: Errno::PROTONOSUPPORT,
        meaning: "the server does not speak this NFS version",
        transient: false,
    },
    ErrnoMeaning {
        errno: Errno::NODEV,
        meaning: "the kernel has no nfs file system: the nfs modules did not load",
        transient: false,
    },
    ErrnoMeaning { errno: Errno::INVAL, meaning: "the kernel rejected the mount options; see dmesg", transient: false },
    ErrnoMeaning { errno: Errno::NOSYS, meaning: "this NFS version is not in the kernel", transient: false },
];

fn meaning_of(e: &io::Error) -> (&'static str, bool) {
    let errno = e.raw_os_error();
    MOUNT_ERRORS
        .iter()
        .find(|m| Some(m.errno.raw_os_error()) == errno)
        .map_or(("see dmesg for the kernel's reason", true), |m| (m.meaning, m.transient))
}

/// One failed mount(2).
#[derive(Debug)]
pub struct Attempt {
    pub version: Version,
    pub options: String,
    pub error: io::Error,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NFSv{} ({}): {} ({})", self.version, self.options, self.error, meaning_of(&self.error).0)
    }
}

/// Why the root stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The root specification cannot be used.
    #[error(transparent)]
    Spec(#[from] RootSpecError),
    /// `/newroot` is missing and cannot be made.
    #[error("creating the root mount point {}: {source}: rebuild the initramfs with mkinitramfs", .path.display())]
    MountPoint { path: PathBuf, source: io::Error },
    /// The NFS modules did not load.
    #[error(
        "loading the NFS modules {}: {}: rebuild the initramfs with them (mkinitramfs --profile netboot)",
        module_names(.missing),
        MissingList(.missing)
    )]
    Modules { missing: Vec<Missing> },
    /// An error waiting cannot fix.
    #[error("mounting the NFS root {root}: {}: fix the server's export or the root= parameter", join(.attempts))]
    Refused { root: String, attempts: Vec<Attempt> },
    /// The server kept failing until `nfs_retry_timeout` ran out.
    #[error(
        "mounting the NFS root {root}: gave up after {} s: {}: check that the server runs and \
         exports the path (diskless.nfs_retry_timeout=0 waits forever)",
        .waited.as_secs(),
        join(.attempts)
    )]
    GaveUp { root: String, waited: Duration, attempts: Vec<Attempt> },
}

fn join(attempts: &[Attempt]) -> String {
    attempts.iter().map(Attempt::to_string).collect::<Vec<_>>().join("; ")
}

fn module_names(missing: &[Missing]) -> String {
    missing.iter().map(|m| m.module.as_str()).collect::<Vec<_>>().join(", ")
}

/// How the stage waits and gives up.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// 0: forever.
    pub timeout: Duration,
    /// How long one second of backoff lasts (shortened by tests).
    pub second: Duration,
}

/// What the mount did, for boot.json.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mounted {
    #[serde(flatten)]
    pub root: NfsRoot,
    /// The version that worked.
    pub mounted_version: Version,
    pub mount_options: String,
    pub attempts: u32,
    /// NFS modules loaded for this mount (filled in by the boot).
    pub modules: Vec<String>,
}

/// The wait before round `round` (1-based): 1, 2, 4, 8, 16, 16, ... s.
pub fn backoff(round: u32) -> Duration {
    let doubled = FIRST_BACKOFF.saturating_mul(1u32 << round.saturating_sub(1).min(8));
    doubled.min(MAX_BACKOFF)
}

/// Mount `root` read-only at `target`, retrying transient failures.
pub fn mount_root(
    os: &dyn Os,
    log: &Log,
    root: &NfsRoot,
    client: Ipv4Addr,
    target: &Path,
    retry: Retry,
) -> Result<Mounted, RootError> {
    if !target.is_dir() {
        std::fs::create_dir_all(target)
            .map_err(|source| RootError::MountPoint { path: target.to_path_buf(), source })?;
    }
    for ignored in &root.options.ignored {
        info!(log, "NFS root option ignored: {ignored}");
    }
    let started = Instant::now();
    let mut versions = parse::attempts(root.version);
    let source = root.source();
    let mut round = 0u32;
    loop {
        round += 1;
        let mut failed = Vec::new();
        for &version in &versions {
            let options = mount_options_for(root, version, client);
            // Every try is shown in the first round; later rounds are summed up by the
            // countdown line, with the tries in the debug log.
            let line = format!("mounting {source} read-only on {} (NFSv{version}: {options})", target.display());
            if round == 1 {
                info!(log, "{line}")
            } else {
                debug!(log, "{line}")
            }
            match os.mount(&source, target, "nfs", MountFlags::RDONLY, &options) {
                Ok(()) => {
                    return Ok(Mounted {
                        root: root.clone(),
                        mounted_version: version,
                        mount_options: options,
                        attempts: round,
                        modules: Vec::new(),
                    });
                }
                Err(error) => {
                    let attempt = Attempt { version, options, error };
                    if round == 1 {
                        info!(log, "mount failed: {attempt}")
                    } else {
                        debug!(log, "mount failed: {attempt}")
                    }
                    failed.push(attempt);
                }
            }
        }
        // A version the server or kernel does not have is not tried again; the
        // others may still work once the server is up.
        let unsupported = |a: &Attempt| matches!(a.error.raw_os_error(), Some(e) if e == Errno::PROTONOSUPPORT.raw_os_error() || e == Errno::NOSYS.raw_os_error());
        if failed.len() > 1 {
            versions.retain(|v| !failed.iter().any(|a| a.version == *v && unsupported(a)));
        }
        if failed.iter().all(|a| !meaning_of(&a.error).1) || versions.is_empty() {
            return Err(RootError::Refused { root: source, attempts: failed });
        }
        let waited = started.elapsed();
        let wait = backoff(round);
        let left = if retry.timeout.is_zero() { None } else { Some(retry.timeout.saturating_sub(waited)) };
        if left.is_some_and(|left| left.is_zero()) {
            return Err(RootError::GaveUp { root: source, waited, attempts: failed });
        }
        let reason = failed.last().map(|a| meaning_of(&a.error).0).unwrap_or("");
        let giving_up = match left {
            Some(left) => format!("giving up in {} s", left.as_secs()),
            None => "retrying forever (nfs_retry_timeout=0)".to_string(),
        };
        info!(
            log,
            "NFS server {} not answering ({reason}); retrying in {} s (attempt {}, {giving_up})",
            root.server,
            wait.as_secs(),
            round + 1
        );
        let wait = left.map_or(wait, |left| wait.min(left));
        std::thread::sleep(retry.second.saturating_mul(wait.as_secs().max(1) as u32));
    }
}

fn mount_options_for(root: &NfsRoot, version: Version, client: Ipv4Addr) -> String {
    parse::mount_options(root, version, client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::captured;
    use crate::net::Lease;
    use crate::os::fake::{Call, FakeOs};

    fn nfs_root(cmdline: &str) -> NfsRoot {
        let raw = crate::cmdline::Cmdline::parse(cmdline).raw;
        let mut lease = Lease::new("10.77.0.112".parse().unwrap(), "255.255.255.0".parse().unwrap());
        lease.server_id = Some("10.77.0.1".parse().unwrap());
        RootRequest::from_cmdline(&raw).unwrap().resolve(&lease, "lab3-12").unwrap()
    }

    fn client() -> Ipv4Addr {
        "10.77.0.112".parse().unwrap()
    }

    fn retry(timeout_s: u64) -> Retry {
        Retry { timeout: Duration::from_secs(timeout_s), second: Duration::ZERO }
    }

    #[test]
    fn backoff_doubles_from_one_to_sixteen_seconds() {
        let secs: Vec<u64> = (1..=7).map(|r| backoff(r).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn auto_mounts_v4_2_read_only_first() {
        let os = FakeOs::default();
        let (log, console) = captured();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("newroot");
        let m = mount_root(&os, &log, &nfs_root("nfsroot=10.77.0.1:/export"), client(), &target, retry(10)).unwrap();
        assert_eq!(m.mounted_version, Version::V4(2));
        assert_eq!(
            os.calls(),
            [Call::Mount {
                source: "10.77.0.1:/export".into(),
                target: target.clone(),
                fstype: "nfs".into(),
                flags: MountFlags::RDONLY,
                data: "vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112".into(),
            }]
        );
        assert!(target.is_dir(), "mount point made");
        assert!(
            console.text().contains("(NFSv4.2: vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112)"),
            "{}",
            console.text()
        );
    }

    #[test]
    fn auto_falls_back_to_v3_when_the_server_has_no_v4() {
        let os = FakeOs::default();
        os.fail_calls(
            |c| matches!(c, Call::Mount { data, .. } if data.starts_with("vers=4.2,")),
            Errno::PROTONOSUPPORT.raw_os_error(),
        );
        let (log, _) = captured();
        let dir = tempfile::tempdir().unwrap();
        let m = mount_root(&os, &log, &nfs_root("nfsroot=10.77.0.1:/export"), client(), dir.path(), retry(10)).unwrap();
        assert_eq!(m.mounted_version, Version::V3);
        assert_eq!(m.mount_options, "vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp");
        assert_eq!(os.calls().len(), 2);
    }

    #[test]
    fn neither_version_spoken_is_a_permanent_failure_naming_both_tries() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::PROTONOSUPPORT.raw_os_error());
        let (log, console) = captured();
        let err =
            mount_root(&os, &log, &nfs_root("nfsroot=10.77.0.1:/export"), client(), &target, retry(10)).unwrap_err();
        // Both versions refused as unsupported: permanent, with both tries named.
        let text = err.to_string();
        assert!(text.contains("NFSv4.2 (vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112)"), "{text}");
        assert!(text.contains("NFSv3 (vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp)"), "{text}");
        assert!(text.contains("the server does not speak this NFS version"), "{text}");
        assert_eq!(os.calls().len(), 2);
        assert!(console.text().contains("mount failed: NFSv3"), "{}", console.text());
    }

    #[test]
    fn a_server_that_is_down_is_retried_with_a_countdown_until_the_timeout() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::TIMEDOUT.raw_os_error());
        let (log, console) = captured();
        let root = nfs_root("nfsroot=10.77.0.1:/export,vers=3");
        let retry = Retry { timeout: Duration::from_millis(300), second: Duration::from_millis(40) };
        let err = mount_root(&os, &log, &root, client(), &target, retry).unwrap_err();
        assert!(matches!(err, RootError::GaveUp { .. }), "{err}");
        let text = console.text();
        assert!(
            text.contains(
                "diskless: NFS server 10.77.0.1 not answering (the server did not answer); retrying in 1 s (attempt 2, giving up in 0 s)"
            ),
            "{text}"
        );
        assert!(os.calls().len() >= 3, "{:?}", os.calls());
        assert!(err.to_string().contains("gave up after 0 s"), "{err}");
        assert!(err.to_string().contains("diskless.nfs_retry_timeout=0 waits forever"), "{err}");
    }

    #[test]
    fn a_missing_export_fails_at_once() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::NOENT.raw_os_error());
        let (log, _) = captured();
        let err = mount_root(&os, &log, &nfs_root("root=nfs:10.77.0.1:/nope:vers=3"), client(), &target, retry(0))
            .unwrap_err();
        assert!(matches!(err, RootError::Refused { .. }));
        assert_eq!(os.calls().len(), 1);
        assert!(err.to_string().starts_with("mounting the NFS root 10.77.0.1:/nope: NFSv3 "), "{err}");
        assert!(err.to_string().contains("no such export on the server"), "{err}");
    }

    #[test]
    fn forever_says_so_in_the_countdown() {
        let os = std::sync::Arc::new(FakeOs::default());
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::HOSTUNREACH.raw_os_error());
        let (log, console) = captured();
        let root = nfs_root("nfsroot=10.77.0.1:/export,vers=4");
        // Fix the server after a few tries, from another thread.
        let fixer = {
            let os = os.clone();
            std::thread::spawn(move || {
                while os.calls().len() < 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                os.clear_failures();
            })
        };
        let m = mount_root(
            &*os,
            &log,
            &root,
            client(),
            &target,
            Retry { timeout: Duration::ZERO, second: Duration::from_millis(5) },
        )
        .unwrap();
        fixer.join().unwrap();
        assert!(m.attempts >= 3);
        assert!(console.text().contains("retrying forever (nfs_retry_timeout=0)"), "{}", console.text());
    }
}
