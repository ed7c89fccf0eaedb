//! Stage `root` (DESIGN §2 step 5): mount the NFS root read-only at `/newroot`,
//! retrying while the server is down.
//!
//! [`parse`] turns the command line and the lease into one [`NfsRoot`]; [`mount_root`]
//! tries each version ([`parse::attempts`]: without one on the command line, v3 and
//! then v4.2 when the server refuses v3), loading a version's modules before its first
//! try, and backs off 1, 2, 4, 8, 16, 16, ... s between rounds, up to
//! `nfs_retry_timeout` (0 = forever). An error that waiting cannot fix (no such
//! export, access denied) ends the stage at once.
//!
//! A root on several servers ([`parse`]: `a+b:/path`, tried in this host's order) is
//! tried server by server within each round. Before its mount a server must answer a
//! TCP connection to its NFS port (`port=`, else 2049) within
//! `nfs_server_timeout` (default 5 s): one that is off, unplugged or unreachable is
//! named on the console and left for the next one after at most that long, instead of
//! holding the boot for the kernel's own mount timeouts (minutes over TCP). A refused
//! connection is an answer: the mount says what is wrong. A server that fails its
//! mount (silent, or refusing the export) is left for the next one too; the round
//! ends when every server failed, and the next round starts again at this host's
//! own first server. With one server there is nowhere to move: no probe is made and
//! the mount waits as it always did.

pub mod parse;
pub mod stage;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::io::Errno;

use crate::hardware::{Loaded, Missing, MissingList};
use crate::log::Log;
use crate::os::{MountFlags, Os};
use crate::{debug, info};
pub use parse::{NfsRoot, RootRequest, RootSpecError, Version};

/// First wait between rounds of tries; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// What an errno of mount(2) on NFS means, whether waiting can fix it, and whether the
/// server answered (refused) rather than stayed silent: a refusal of one version is
/// what moves on to the next ([`parse::attempts`]), silence is waited out with the first.
struct ErrnoMeaning {
    errno: Errno,
    meaning: &'static str,
    transient: bool,
    answered: bool,
}

/// mount(2) errors of an NFS mount, as the administrator needs to read them.
const MOUNT_ERRORS: &[ErrnoMeaning] = &[
    ErrnoMeaning { errno: Errno::TIMEDOUT, meaning: "the server did not answer", transient: true, answered: false },
    ErrnoMeaning {
        errno: Errno::CONNREFUSED,
        meaning: "connection refused: no NFS service (or rpcbind for v3) on the server",
        transient: true,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::HOSTUNREACH,
        meaning: "host unreachable: the server is down or not on this network",
        transient: true,
        answered: false,
    },
    ErrnoMeaning {
        errno: Errno::NETUNREACH,
        meaning: "network unreachable: no route to the server",
        transient: true,
        answered: false,
    },
    ErrnoMeaning { errno: Errno::HOSTDOWN, meaning: "host is down", transient: true, answered: false },
    ErrnoMeaning {
        errno: Errno::CONNRESET,
        meaning: "the server closed the connection",
        transient: true,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::AGAIN,
        meaning: "the server is busy (grace period?)",
        transient: true,
        answered: true,
    },
    ErrnoMeaning { errno: Errno::IO, meaning: "I/O error talking to the server", transient: true, answered: true },
    ErrnoMeaning {
        errno: Errno::NOENT,
        meaning: "no such export on the server: check the path and the server's exports",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::ACCESS,
        meaning: "permission denied: the server does not export this path to this client",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::PERM,
        meaning: "operation not permitted: the server refused this client (check the export's client list and security flavour)",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::NOTDIR,
        meaning: "the path is not a directory on the server",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::PROTONOSUPPORT,
        meaning: "the server does not speak this NFS version",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::NODEV,
        meaning: "the kernel has no nfs file system: the nfs modules did not load",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::INVAL,
        meaning: "the kernel rejected the mount options; see dmesg",
        transient: false,
        answered: true,
    },
    ErrnoMeaning {
        errno: Errno::NOSYS,
        meaning: "this NFS version is not in the kernel",
        transient: false,
        answered: true,
    },
];

/// What `e` means, whether waiting can fix it, and whether the server answered. An
/// errno not in the table is taken as transient and as an answer.
fn meaning_of(e: &io::Error) -> (&'static str, bool, bool) {
    let errno = e.raw_os_error();
    MOUNT_ERRORS
        .iter()
        .find(|m| Some(m.errno.raw_os_error()) == errno)
        .map_or(("see dmesg for the kernel's reason", true, true), |m| (m.meaning, m.transient, m.answered))
}

/// Why one version could not be mounted.
#[derive(Debug)]
pub enum AttemptError {
    /// mount(2) failed.
    Mount(io::Error),
    /// The version's modules did not load, so it was not tried.
    Modules(Vec<Missing>),
    /// One of several servers did not answer a TCP connection to its NFS port within
    /// `nfs_server_timeout`: not mounted, the next server tried.
    Silent { server: Ipv4Addr, port: u16, waited: Duration, error: io::Error },
}

/// One failed try of one version.
#[derive(Debug)]
pub struct Attempt {
    pub version: Version,
    pub options: String,
    pub error: AttemptError,
}

impl Attempt {
    /// Whether waiting may fix it.
    fn transient(&self) -> bool {
        match &self.error {
            AttemptError::Mount(e) => meaning_of(e).1,
            AttemptError::Modules(_) => false,
            AttemptError::Silent { .. } => true,
        }
    }

    /// Whether the next version is worth a try: the server refused this one, or this
    /// client cannot mount it.
    fn falls_back(&self) -> bool {
        match &self.error {
            AttemptError::Mount(e) => meaning_of(e).2,
            AttemptError::Modules(_) => true,
            AttemptError::Silent { .. } => false,
        }
    }

    /// Whether this version can never work in this boot: its modules are missing, or the
    /// server or the kernel does not have it.
    fn version_unusable(&self) -> bool {
        match &self.error {
            AttemptError::Mount(e) => {
                matches!(e.raw_os_error(), Some(n) if n == Errno::PROTONOSUPPORT.raw_os_error() || n == Errno::NOSYS.raw_os_error())
            }
            AttemptError::Modules(_) => true,
            AttemptError::Silent { .. } => false,
        }
    }

    fn reason(&self) -> &'static str {
        match &self.error {
            AttemptError::Mount(e) => meaning_of(e).0,
            AttemptError::Modules(_) => "its modules did not load",
            AttemptError::Silent { .. } => "the server did not answer",
        }
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            AttemptError::Mount(e) => {
                write!(f, "NFSv{} ({}): {} ({})", self.version, self.options, e, self.reason())
            }
            AttemptError::Modules(missing) => {
                write!(f, "NFSv{}: not tried, {}: {}", self.version, self.reason(), MissingList(missing))
            }
            AttemptError::Silent { server, port, waited, error } => {
                write!(f, "{server}: no answer on TCP port {port} within {} s ({error})", waited.as_secs())
            }
        }
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
    /// How long one of several servers has to answer before the next is tried
    /// (`nfs_server_timeout`).
    pub server_timeout: Duration,
}

/// The NFS port probed when the root gives no `port=`.
pub const NFS_PORT: u16 = 2049;

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

/// Mount `root` read-only at `target`, retrying transient failures. `load` brings in
/// the modules of a version before its first try (what it loaded ends up in
/// [`Mounted::modules`]); a version whose modules are missing is not tried. Several
/// servers are tried in the order of [`NfsRoot::servers`] (see the module docs).
pub fn mount_root(
    os: &dyn Os,
    log: &Log,
    root: &NfsRoot,
    client: Ipv4Addr,
    target: &Path,
    retry: Retry,
    load: &dyn Fn(Version) -> Loaded,
) -> Result<Mounted, RootError> {
    if !target.is_dir() {
        std::fs::create_dir_all(target)
            .map_err(|source| RootError::MountPoint { path: target.to_path_buf(), source })?;
    }
    for ignored in &root.options.ignored {
        info!(log, "NFS root option ignored: {ignored}");
    }
    let started = Instant::now();
    let servers: Vec<Ipv4Addr> = if root.servers.is_empty() { vec![root.server] } else { root.servers.clone() };
    let mut tries = Tries { versions: parse::attempts(root.version), ready: Vec::new(), modules: Vec::new() };
    let spec = root.spec();
    let mut round = 0u32;
    loop {
        round += 1;
        // Every try is shown in the first round; later rounds are summed up by the
        // countdown line, with the tries in the debug log.
        let say = |line: String| if round == 1 { info!(log, "{line}") } else { debug!(log, "{line}") };
        let mut failed: Vec<Attempt> = Vec::new();
        for (index, &server) in servers.iter().enumerate() {
            let next = servers.get(index + 1).map_or_else(|| "the next round".to_string(), Ipv4Addr::to_string);
            if servers.len() > 1 {
                let port = root.options.port.unwrap_or(NFS_PORT);
                let wait = retry.server_timeout.max(Duration::from_secs(1));
                let asked = Instant::now();
                match os.probe_tcp(SocketAddrV4::new(server, port), wait) {
                    Err(error) if error.kind() != io::ErrorKind::ConnectionRefused => {
                        let waited = asked.elapsed();
                        let attempt = Attempt {
                            version: tries.versions.first().copied().unwrap_or(root.version),
                            options: String::new(),
                            error: AttemptError::Silent { server, port, waited: wait, error },
                        };
                        // Always on the console: which server a boot skipped is what
                        // the administrator of a server pair looks for.
                        info!(
                            log,
                            "NFS server {server} did not answer on TCP port {port} ({}) after {:.1} s \
                             (nfs_server_timeout {} s); moving on to {next}",
                            match &attempt.error {
                                AttemptError::Silent { error, .. } => error.to_string(),
                                _ => String::new(),
                            },
                            waited.as_secs_f32(),
                            wait.as_secs()
                        );
                        failed.push(attempt);
                        continue;
                    }
                    _ => say(format!("NFS server {server} answers on TCP port {port}")),
                }
            }
            let one = root.on(server);
            match tries.mount(os, &say, &one, client, target, log, load) {
                Ok((version, options)) => {
                    if servers.len() > 1 {
                        info!(log, "NFS root from server {server} ({} of {}: {spec})", index + 1, servers.len());
                    }
                    return Ok(Mounted {
                        root: NfsRoot { servers: servers.clone(), ..one },
                        mounted_version: version,
                        mount_options: options,
                        attempts: round,
                        modules: tries.modules,
                    });
                }
                Err(attempts) => {
                    if servers.len() > 1 {
                        let reason = attempts.last().map_or("", Attempt::reason);
                        info!(log, "NFS server {server} failed ({reason}); moving on to {next}");
                    }
                    failed.extend(attempts);
                }
            }
        }
        if failed.iter().all(|a| matches!(a.error, AttemptError::Modules(_))) {
            let missing = failed
                .into_iter()
                .flat_map(|a| match a.error {
                    AttemptError::Modules(missing) => missing,
                    AttemptError::Mount(_) | AttemptError::Silent { .. } => Vec::new(),
                })
                .fold(Vec::<Missing>::new(), |mut all, m| {
                    if !all.contains(&m) {
                        all.push(m);
                    }
                    all
                });
            return Err(RootError::Modules { missing });
        }
        // A version the server or kernel does not have is not tried again; the
        // others may still work once the server is up.
        if failed.len() > 1 {
            tries.versions.retain(|v| !failed.iter().any(|a| a.version == *v && a.version_unusable()));
        }
        if failed.iter().all(|a| !a.transient()) || tries.versions.is_empty() {
            return Err(RootError::Refused { root: spec, attempts: failed });
        }
        let waited = started.elapsed();
        let wait = backoff(round);
        let left = if retry.timeout.is_zero() { None } else { Some(retry.timeout.saturating_sub(waited)) };
        if left.is_some_and(|left| left.is_zero()) {
            return Err(RootError::GaveUp { root: spec, waited, attempts: failed });
        }
        let reason = failed.iter().rev().find(|a| a.transient()).map_or("", Attempt::reason);
        let giving_up = match left {
            Some(left) => format!("giving up in {} s", left.as_secs()),
            None => "retrying forever (nfs_retry_timeout=0)".to_string(),
        };
        let who = if servers.len() > 1 { "servers" } else { "server" };
        info!(
            log,
            "NFS {who} {} not answering ({reason}); retrying in {} s (attempt {}, {giving_up})",
            parse::join_servers(&servers, ", "),
            wait.as_secs(),
            round + 1
        );
        let wait = left.map_or(wait, |left| wait.min(left));
        std::thread::sleep(retry.second.saturating_mul(wait.as_secs().max(1) as u32));
    }
}

/// What the versions' tries keep from one server and round to the next.
struct Tries {
    /// The versions still worth a try, in order.
    versions: Vec<Version>,
    /// Versions whose modules are loaded.
    ready: Vec<Version>,
    /// Every module the loads brought in.
    modules: Vec<String>,
}

impl Tries {
    /// Mount `root` (one server) with each version in turn, a later one only when the
    /// server refused the one before; the version and options that worked, or every
    /// failed try.
    #[allow(clippy::too_many_arguments)]
    fn mount(
        &mut self,
        os: &dyn Os,
        say: &dyn Fn(String),
        root: &NfsRoot,
        client: Ipv4Addr,
        target: &Path,
        log: &Log,
        load: &dyn Fn(Version) -> Loaded,
    ) -> Result<(Version, String), Vec<Attempt>> {
        let source = root.source();
        let mut failed: Vec<Attempt> = Vec::new();
        for &version in &self.versions {
            // A later version is a fallback: tried when the server refused the one
            // before, not while it does not answer at all (its modules, nfsv4 most of a
            // second, stay unloaded while the first version waits for the server).
            if let Some(previous) = failed.last() {
                if !previous.falls_back() {
                    break;
                }
                say(format!("NFSv{} failed ({}); trying NFSv{version}", previous.version, previous.reason()));
            }
            let options = mount_options_for(root, version, client);
            if !self.ready.contains(&version) {
                let loaded = load(version);
                self.modules.extend(loaded.loaded);
                if !loaded.missing.is_empty() {
                    let attempt = Attempt { version, options, error: AttemptError::Modules(loaded.missing) };
                    info!(log, "warning: {attempt}");
                    failed.push(attempt);
                    continue;
                }
                self.ready.push(version);
            }
            say(format!("mounting {source} read-only on {} (NFSv{version}: {options})", target.display()));
            match os.mount(&source, target, "nfs", MountFlags::RDONLY, &options) {
                Ok(()) => return Ok((version, options)),
                Err(error) => {
                    let attempt = Attempt { version, options, error: AttemptError::Mount(error) };
                    say(format!("mount failed: {attempt}"));
                    failed.push(attempt);
                }
            }
        }
        Err(failed)
    }
}

fn mount_options_for(root: &NfsRoot, version: Version, client: Ipv4Addr) -> String {
    parse::mount_options(root, version, client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::MissingReason;
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
        Retry {
            timeout: Duration::from_secs(timeout_s),
            second: Duration::ZERO,
            server_timeout: Duration::from_secs(5),
        }
    }

    /// Module loads of a fake kernel that has the modules of every version but those in
    /// `missing`; `asked` records which versions' modules were asked for.
    struct FakeLoads {
        missing: Vec<Version>,
        asked: std::cell::RefCell<Vec<Version>>,
    }

    impl FakeLoads {
        fn all() -> FakeLoads {
            FakeLoads::without(&[])
        }

        fn without(missing: &[Version]) -> FakeLoads {
            FakeLoads { missing: missing.to_vec(), asked: Default::default() }
        }

        fn load(&self, version: Version) -> Loaded {
            self.asked.borrow_mut().push(version);
            let names = parse::modules_for(version);
            if self.missing.contains(&version) {
                let module = names.last().expect("a module").to_string();
                Loaded { loaded: Vec::new(), missing: vec![Missing { module, reason: MissingReason::Blacklisted }] }
            } else {
                Loaded { loaded: names.iter().map(|n| n.to_string()).collect(), missing: Vec::new() }
            }
        }

        fn asked(&self) -> Vec<Version> {
            self.asked.borrow().clone()
        }
    }

    fn mount(
        os: &FakeOs,
        log: &Log,
        cmdline: &str,
        target: &Path,
        retry: Retry,
        loads: &FakeLoads,
    ) -> Result<Mounted, RootError> {
        mount_root(os, log, &nfs_root(cmdline), client(), target, retry, &|v| loads.load(v))
    }

    #[test]
    fn backoff_doubles_from_one_to_sixteen_seconds() {
        let secs: Vec<u64> = (1..=7).map(|r| backoff(r).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn auto_mounts_v3_read_only_without_loading_nfsv4() {
        let os = FakeOs::default();
        let (log, console) = captured();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("newroot");
        let loads = FakeLoads::all();
        let m = mount(&os, &log, "nfsroot=10.77.0.1:/export", &target, retry(10), &loads).unwrap();
        assert_eq!(m.mounted_version, Version::V3);
        assert_eq!(
            os.calls(),
            [Call::Mount {
                source: "10.77.0.1:/export".into(),
                target: target.clone(),
                fstype: "nfs".into(),
                flags: MountFlags::RDONLY,
                data: "vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp".into(),
            }]
        );
        assert_eq!(loads.asked(), [Version::V3], "v4's modules are not loaded for a v3 mount");
        assert_eq!(m.modules, ["nfs", "nfsv3"]);
        assert!(target.is_dir(), "mount point made");
        assert!(
            console.text().contains("(NFSv3: vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp)"),
            "{}",
            console.text()
        );
    }

    #[test]
    fn auto_falls_back_to_v4_2_when_the_server_refuses_v3() {
        // A server that exports the path over v4 only answers v3's MOUNT with an error.
        for errno in [Errno::ACCESS, Errno::PROTONOSUPPORT, Errno::CONNREFUSED, Errno::NOENT] {
            let os = FakeOs::default();
            os.fail_calls(
                |c| matches!(c, Call::Mount { data, .. } if data.starts_with("vers=3,")),
                errno.raw_os_error(),
            );
            let (log, console) = captured();
            let dir = tempfile::tempdir().unwrap();
            let loads = FakeLoads::all();
            let m = mount(&os, &log, "root=/dev/nfs nfsroot=10.77.0.1:/export", dir.path(), retry(10), &loads).unwrap();
            assert_eq!(m.mounted_version, Version::V4(2), "{errno:?}");
            assert_eq!(m.mount_options, "vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112");
            assert_eq!(os.calls().len(), 2, "{errno:?}");
            assert_eq!(loads.asked(), [Version::V3, Version::V4(2)], "nfsv4 loaded when the fallback needs it");
            assert_eq!(m.modules, ["nfs", "nfsv3", "nfs", "nfsv4"]);
            let text = console.text();
            assert!(text.contains("diskless: mount failed: NFSv3 (vers=3,"), "{text}");
            assert!(text.contains("; trying NFSv4.2\n"), "{text}");
        }
    }

    #[test]
    fn auto_waits_for_a_silent_server_with_v3_alone() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::TIMEDOUT.raw_os_error());
        let (log, console) = captured();
        let loads = FakeLoads::all();
        let retry = Retry {
            timeout: Duration::from_millis(300),
            second: Duration::from_millis(40),
            server_timeout: Duration::from_secs(5),
        };
        let err = mount(&os, &log, "nfsroot=10.77.0.1:/export", &target, retry, &loads).unwrap_err();
        assert!(matches!(err, RootError::GaveUp { .. }), "{err}");
        assert!(os.calls().len() >= 2, "{:?}", os.calls());
        assert!(
            os.calls().iter().all(|c| matches!(c, Call::Mount { data, .. } if data.starts_with("vers=3,"))),
            "v4 tried while the server was silent: {:?}",
            os.calls()
        );
        assert_eq!(loads.asked(), [Version::V3]);
        assert!(!console.text().contains("trying NFSv4"), "{}", console.text());
    }

    #[test]
    fn explicit_versions_never_fall_back() {
        for (cmdline, tried) in [
            ("nfsroot=10.77.0.1:/export,vers=3", "vers=3,"),
            ("root=nfs4:10.77.0.1:/export", "vers=4.2,"),
            ("nfsroot=10.77.0.1:/export,vers=4.1", "vers=4.1,"),
        ] {
            let os = FakeOs::default();
            let dir = tempfile::tempdir().unwrap();
            os.fail_mount_on(dir.path(), Errno::ACCESS.raw_os_error());
            let (log, _) = captured();
            let loads = FakeLoads::all();
            let err = mount(&os, &log, cmdline, dir.path(), retry(10), &loads).unwrap_err();
            assert!(matches!(err, RootError::Refused { .. }), "{cmdline}: {err}");
            let calls = os.calls();
            assert_eq!(calls.len(), 1, "{cmdline}: {calls:?}");
            assert!(matches!(&calls[0], Call::Mount { data, .. } if data.starts_with(tried)), "{cmdline}: {calls:?}");
            assert_eq!(loads.asked().len(), 1, "{cmdline}");
        }
    }

    #[test]
    fn neither_version_spoken_is_a_permanent_failure_naming_both_tries() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::PROTONOSUPPORT.raw_os_error());
        let (log, console) = captured();
        let err = mount(&os, &log, "nfsroot=10.77.0.1:/export", &target, retry(10), &FakeLoads::all()).unwrap_err();
        // Both versions refused as unsupported: permanent, with both tries named.
        let text = err.to_string();
        assert!(text.contains("NFSv3 (vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp)"), "{text}");
        assert!(text.contains("NFSv4.2 (vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112)"), "{text}");
        assert!(text.contains("the server does not speak this NFS version"), "{text}");
        assert_eq!(os.calls().len(), 2);
        assert!(console.text().contains("mount failed: NFSv4.2"), "{}", console.text());
    }

    #[test]
    fn without_v3_modules_auto_mounts_v4_2() {
        let os = FakeOs::default();
        let (log, console) = captured();
        let dir = tempfile::tempdir().unwrap();
        let loads = FakeLoads::without(&[Version::V3]);
        let m = mount(&os, &log, "nfsroot=10.77.0.1:/export", dir.path(), retry(10), &loads).unwrap();
        assert_eq!(m.mounted_version, Version::V4(2));
        assert_eq!(os.calls().len(), 1, "v3 is not tried without its module");
        assert!(
            console
                .text()
                .contains("diskless: warning: NFSv3: not tried, its modules did not load: nfsv3: it is blacklisted"),
            "{}",
            console.text()
        );
    }

    #[test]
    fn a_refused_v3_without_v4_modules_names_both() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        os.fail_mount_on(dir.path(), Errno::ACCESS.raw_os_error());
        let (log, _) = captured();
        let loads = FakeLoads::without(&[Version::V4(2)]);
        let err = mount(&os, &log, "nfsroot=10.77.0.1:/export", dir.path(), retry(10), &loads).unwrap_err();
        assert!(matches!(err, RootError::Refused { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("NFSv3 (vers=3,"), "{text}");
        assert!(text.contains("; NFSv4.2: not tried, its modules did not load: nfsv4: it is blacklisted"), "{text}");
    }

    #[test]
    fn no_modules_for_any_version_is_the_modules_error() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = captured();
        for (cmdline, want) in [
            ("nfsroot=10.77.0.1:/export", "loading the NFS modules nfsv3, nfsv4: "),
            ("nfsroot=10.77.0.1:/export,vers=3", "loading the NFS modules nfsv3: "),
        ] {
            let loads = FakeLoads::without(&[Version::V3, Version::V4(2)]);
            let err = mount(&os, &log, cmdline, dir.path(), retry(10), &loads).unwrap_err();
            assert!(matches!(err, RootError::Modules { .. }), "{err}");
            assert!(err.to_string().starts_with(want), "{err}");
        }
        assert!(os.calls().is_empty(), "nothing mounted without modules: {:?}", os.calls());
    }

    #[test]
    fn a_server_that_is_down_is_retried_with_a_countdown_until_the_timeout() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().to_path_buf();
        os.fail_mount_on(&target, Errno::TIMEDOUT.raw_os_error());
        let (log, console) = captured();
        let root = nfs_root("nfsroot=10.77.0.1:/export,vers=3");
        let retry = Retry {
            timeout: Duration::from_millis(300),
            second: Duration::from_millis(40),
            server_timeout: Duration::from_secs(5),
        };
        let err = mount_root(&os, &log, &root, client(), &target, retry, &|v| FakeLoads::all().load(v)).unwrap_err();
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
        let err =
            mount(&os, &log, "root=nfs:10.77.0.1:/nope:vers=3", &target, retry(0), &FakeLoads::all()).unwrap_err();
        assert!(matches!(err, RootError::Refused { .. }));
        assert_eq!(os.calls().len(), 1);
        assert!(err.to_string().starts_with("mounting the NFS root 10.77.0.1:/nope: NFSv3 "), "{err}");
        assert!(err.to_string().contains("no such export on the server"), "{err}");
    }

    fn probe(server: &str) -> Call {
        Call::ProbeTcp { to: SocketAddrV4::new(server.parse().unwrap(), NFS_PORT) }
    }

    /// A fake with the client's link configured on the servers' subnet: its TCP probes
    /// reach them unless a test fails them.
    fn on_lab() -> FakeOs {
        let os = FakeOs::default();
        let config = crate::net::link::LinkConfig {
            address: client(),
            prefix_len: 24,
            broadcast: "10.77.0.255".parse().unwrap(),
            gateway: None,
            mtu: None,
        };
        crate::os::Os::configure_link(&os, "eth0", &config).unwrap();
        os
    }

    fn nfs_calls(os: &FakeOs) -> Vec<Call> {
        os.calls().into_iter().filter(|c| matches!(c, Call::Mount { .. } | Call::ProbeTcp { .. })).collect()
    }

    #[test]
    fn a_silent_first_server_is_left_for_the_second_and_the_move_is_logged() {
        let os = on_lab();
        let dir = tempfile::tempdir().unwrap();
        os.fail_calls(|c| *c == probe("10.77.0.1"), Errno::HOSTUNREACH.raw_os_error());
        let (log, console) = captured();
        let m =
            mount(&os, &log, "nfsroot=10.77.0.1+10.77.0.2:/export,vers=3", dir.path(), retry(10), &FakeLoads::all())
                .unwrap();
        assert_eq!(
            nfs_calls(&os),
            [
                probe("10.77.0.1"),
                probe("10.77.0.2"),
                Call::Mount {
                    source: "10.77.0.2:/export".into(),
                    target: dir.path().into(),
                    fstype: "nfs".into(),
                    flags: MountFlags::RDONLY,
                    data: "vers=3,addr=10.77.0.2,nolock,proto=tcp,mountproto=tcp".into(),
                }
            ]
        );
        assert_eq!((m.root.server, m.attempts), ("10.77.0.2".parse().unwrap(), 1));
        assert_eq!(m.root.servers, ["10.77.0.1".parse::<Ipv4Addr>().unwrap(), "10.77.0.2".parse().unwrap()]);
        let text = console.text();
        assert!(
            text.contains("diskless: NFS server 10.77.0.1 did not answer on TCP port 2049 (No route to host (os error 113)) after 0.0 s (nfs_server_timeout 5 s); moving on to 10.77.0.2\n"),
            "{text}"
        );
        assert!(
            text.contains("diskless: NFS root from server 10.77.0.2 (2 of 2: 10.77.0.1+10.77.0.2:/export)"),
            "{text}"
        );
    }

    #[test]
    fn a_server_that_refuses_the_export_is_left_for_the_next_and_a_refused_probe_is_an_answer() {
        let os = on_lab();
        let dir = tempfile::tempdir().unwrap();
        // .112 starts at the first; the first has no such export, its port refuses.
        os.fail_calls(|c| *c == probe("10.77.0.1"), Errno::CONNREFUSED.raw_os_error());
        os.fail_calls(
            |c| matches!(c, Call::Mount { source, .. } if source == "10.77.0.1:/export"),
            Errno::NOENT.raw_os_error(),
        );
        let (log, console) = captured();
        let m =
            mount(&os, &log, "root=nfs:10.77.0.1+10.77.0.2:/export:vers=3", dir.path(), retry(10), &FakeLoads::all())
                .unwrap();
        assert_eq!(m.root.server, "10.77.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(nfs_calls(&os).len(), 4, "probe, refused mount, probe, mount: {:?}", os.calls());
        let text = console.text();
        assert!(text.contains("diskless: NFS server 10.77.0.1 failed (no such export on the server: "), "{text}");
        assert!(text.contains("moving on to 10.77.0.2\n"), "{text}");
    }

    #[test]
    fn every_server_silent_is_retried_in_rounds_from_the_hosts_first_server_until_the_timeout() {
        let os = on_lab();
        let dir = tempfile::tempdir().unwrap();
        os.fail_calls(|c| matches!(c, Call::ProbeTcp { .. }), Errno::TIMEDOUT.raw_os_error());
        let (log, console) = captured();
        let mut root = nfs_root("nfsroot=10.77.0.1+10.77.0.2:/export");
        // The host at .113 starts at the second server.
        root.servers.reverse();
        let retry = Retry {
            timeout: Duration::from_millis(300),
            second: Duration::from_millis(40),
            server_timeout: Duration::from_secs(5),
        };
        let err = mount_root(&os, &log, &root, client(), dir.path(), retry, &|v| FakeLoads::all().load(v)).unwrap_err();
        assert!(matches!(err, RootError::GaveUp { .. }), "{err}");
        let calls = nfs_calls(&os);
        assert!(calls.len() >= 4 && calls.len().is_multiple_of(2), "{calls:?}");
        for pair in calls.chunks(2) {
            assert_eq!(pair, [probe("10.77.0.2"), probe("10.77.0.1")], "each round from the host's own first server");
        }
        let text = console.text();
        assert!(text.contains("moving on to the next round\n"), "{text}");
        assert!(text.contains("diskless: NFS servers 10.77.0.2, 10.77.0.1 not answering (the server did not answer); retrying in 1 s (attempt 2, "), "{text}");
        let e = err.to_string();
        assert!(e.starts_with("mounting the NFS root 10.77.0.2+10.77.0.1:/export: gave up after 0 s: 10.77.0.2: no answer on TCP port 2049 within 5 s ("), "{e}");
    }

    #[test]
    fn one_server_is_never_probed() {
        let os = FakeOs::default();
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = captured();
        mount(&os, &log, "nfsroot=10.77.0.1:/export,vers=3", dir.path(), retry(10), &FakeLoads::all()).unwrap();
        assert!(os.calls_of(crate::os::fake::Kind::ProbeTcp).is_empty(), "{:?}", os.calls());
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
            Retry { timeout: Duration::ZERO, second: Duration::from_millis(5), server_timeout: Duration::from_secs(5) },
            &|v| FakeLoads::all().load(v),
        )
        .unwrap();
        fixer.join().unwrap();
        assert!(m.attempts >= 3);
        assert!(console.text().contains("retrying forever (nfs_retry_timeout=0)"), "{}", console.text());
    }
}
