//! A fake [`Os`] for tests of whole boots on the host: every call is recorded as a typed
//! [`Call`]; the Nth call of a [`Kind`], or every call matching a predicate, fails with
//! a chosen errno; the network is a script of links that appear, get carrier and answer
//! DHCP after given delays, and a PTR answer.
//!
//! Calls that only touch files under the boot root act for real: the boot root of a
//! test is a temporary directory. Disk reads read the file at the device path; the
//! attribute calls change nothing (the owners of a test tree are the test's own).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{MountFlags, Os, Timestamps, UeventReceive};
use crate::fscache::HoldError;
use crate::hardware::detached::DetachedLoad;
use crate::net::config::Mac;
use crate::net::dhcp::{Lease, OfferPolicy};
use crate::net::dhcp_io::DhcpIoError;
use crate::net::dns::{DnsError, LookupTiming, PtrOutcome, TryError};
use crate::net::inform::{InformAck, InformError, InformTiming};
use crate::net::link::{LinkConfig, LinkError, SysLink};
use crate::net::log::NetLog;
use crate::scratch::probe::Sample;

/// The PID [`FakeOs::load_detached`] answers with.
pub const FAKE_CHILD_PID: u32 = 4242;
/// The pid [`Os::hold_cache`] of the fake gives its holder.
pub const FAKE_HOLDER_PID: u32 = 4343;

/// One call made through the fake, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: String,
        target: PathBuf,
        fstype: String,
        flags: MountFlags,
        data: String,
    },
    Unmount {
        target: PathBuf,
    },
    Swapon {
        device: PathBuf,
    },
    ReadDisk {
        device: PathBuf,
        size: u64,
    },
    SetOwner {
        name: OsString,
        uid: u32,
        gid: u32,
    },
    SetMode {
        name: OsString,
        mode: u32,
    },
    SetTimes {
        name: OsString,
    },
    /// finit_module of the module file `file` (`virtio_net.ko`) at `path` (under the
    /// archive's or the root image's `lib/modules`).
    LoadModule {
        file: String,
        params: String,
        path: PathBuf,
    },
    Nice {
        nice: i32,
    },
    /// The child that loads the image's remaining drivers after the hand-off, with its
    /// modules in load order.
    LoadDetached {
        modules: Vec<String>,
        paths: Vec<PathBuf>,
    },
    OpenUevents,
    LinkUp {
        link: String,
        up: bool,
    },
    ConfigureLink {
        link: String,
        config: LinkConfig,
    },
    /// Removal of what ConfigureLink gave `link`.
    UnconfigureLink {
        link: String,
        config: LinkConfig,
    },
    /// DHCP on `link`, with the servers the policy excluded at the time.
    Dhcp {
        link: String,
    },
    DhcpRelease {
        link: String,
        address: Ipv4Addr,
        server: Option<Ipv4Addr>,
    },
    ProbeTcp {
        to: SocketAddrV4,
    },
    /// One datagram (a syslog message), its payload as text.
    SendUdp {
        to: SocketAddrV4,
        payload: String,
    },
    /// The DHCP of `link` was cancelled (another link won, or the stage gave up).
    DhcpCancelled {
        link: String,
    },
    DhcpInform {
        link: String,
        address: Ipv4Addr,
        server: Option<Ipv4Addr>,
    },
    LookupPtr {
        address: Ipv4Addr,
    },
    SetHostname {
        name: String,
    },
    SetDomainname {
        name: String,
    },
    AttachConsole {
        console: PathBuf,
    },
    RunShell {
        shell: PathBuf,
    },
    Chdir {
        path: PathBuf,
    },
    Chroot {
        path: PathBuf,
    },
    /// The scratch cache bound through `device` by `commands`, and its holder forked.
    HoldCache {
        device: PathBuf,
        commands: Vec<String>,
    },
    Exec {
        path: PathBuf,
        args: Vec<String>,
    },
    PowerOff,
    Reboot,
}

/// The kind of a [`Call`], for counting and failing calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Mount,
    Unmount,
    Swapon,
    ReadDisk,
    SetOwner,
    SetMode,
    SetTimes,
    LoadModule,
    Nice,
    LoadDetached,
    OpenUevents,
    LinkUp,
    ConfigureLink,
    UnconfigureLink,
    Dhcp,
    DhcpRelease,
    ProbeTcp,
    SendUdp,
    DhcpCancelled,
    DhcpInform,
    LookupPtr,
    SetHostname,
    SetDomainname,
    AttachConsole,
    RunShell,
    Chdir,
    Chroot,
    HoldCache,
    Exec,
    PowerOff,
    Reboot,
}

impl Call {
    pub fn kind(&self) -> Kind {
        match self {
            Call::Mount { .. } => Kind::Mount,
            Call::Unmount { .. } => Kind::Unmount,
            Call::Swapon { .. } => Kind::Swapon,
            Call::ReadDisk { .. } => Kind::ReadDisk,
            Call::SetOwner { .. } => Kind::SetOwner,
            Call::SetMode { .. } => Kind::SetMode,
            Call::SetTimes { .. } => Kind::SetTimes,
            Call::LoadModule { .. } => Kind::LoadModule,
            Call::Nice { .. } => Kind::Nice,
            Call::LoadDetached { .. } => Kind::LoadDetached,
            Call::OpenUevents => Kind::OpenUevents,
            Call::LinkUp { .. } => Kind::LinkUp,
            Call::ConfigureLink { .. } => Kind::ConfigureLink,
            Call::UnconfigureLink { .. } => Kind::UnconfigureLink,
            Call::Dhcp { .. } => Kind::Dhcp,
            Call::DhcpRelease { .. } => Kind::DhcpRelease,
            Call::ProbeTcp { .. } => Kind::ProbeTcp,
            Call::SendUdp { .. } => Kind::SendUdp,
            Call::DhcpCancelled { .. } => Kind::DhcpCancelled,
            Call::DhcpInform { .. } => Kind::DhcpInform,
            Call::LookupPtr { .. } => Kind::LookupPtr,
            Call::SetHostname { .. } => Kind::SetHostname,
            Call::SetDomainname { .. } => Kind::SetDomainname,
            Call::AttachConsole { .. } => Kind::AttachConsole,
            Call::RunShell { .. } => Kind::RunShell,
            Call::Chdir { .. } => Kind::Chdir,
            Call::Chroot { .. } => Kind::Chroot,
            Call::HoldCache { .. } => Kind::HoldCache,
            Call::Exec { .. } => Kind::Exec,
            Call::PowerOff => Kind::PowerOff,
            Call::Reboot => Kind::Reboot,
        }
    }

    /// A mount of a new filesystem, a bind or a move, by target.
    pub fn mount_target(&self) -> Option<&Path> {
        match self {
            Call::Mount { target, .. } => Some(target),
            _ => None,
        }
    }
}

/// A network link of the fake machine; times count from the fake's creation.
#[derive(Debug, Clone)]
pub struct FakeLink {
    pub name: String,
    pub mac: Mac,
    /// Appears in sysfs this long after the start.
    pub appears: Duration,
    /// Gets carrier this long after the start (`None`: never).
    pub carrier: Option<Duration>,
    /// DHCP answers with this lease this long after it starts (`None`: never).
    pub lease: Option<(Duration, Lease)>,
}

/// More DHCP servers on a link: their leases and how long after DHCP starts each
/// answers. The fake's DHCP takes the earliest lease whose server the policy
/// accepts ([`OfferPolicy::refuses`]); which of several accepted offers the client
/// prefers is the sans-IO client's business, tested in `net::dhcp`.
pub type MoreServers = Vec<(Duration, Lease)>;

impl FakeLink {
    /// A link present from the start with carrier, answering DHCP with `lease` at once.
    pub fn up(name: &str, mac: Mac, lease: Lease) -> FakeLink {
        FakeLink {
            name: name.to_string(),
            mac,
            appears: Duration::ZERO,
            carrier: Some(Duration::ZERO),
            lease: Some((Duration::ZERO, lease)),
        }
    }
}

type Matcher = Box<dyn Fn(&Call) -> bool + Send>;

/// A planned failure: the `nth` (1-based) call of `kind`, or every call `matching`.
enum Failure {
    Nth { kind: Kind, nth: usize, errno: i32 },
    Matching { matching: Matcher, errno: i32 },
}

#[derive(Default)]
pub struct FakeOs {
    calls: Mutex<Vec<Call>>,
    counts: Mutex<BTreeMap<Kind, usize>>,
    failures: Mutex<Vec<Failure>>,
    links: Mutex<Vec<FakeLink>>,
    ptr: Mutex<Option<Vec<String>>>,
    /// The answer to DHCPINFORM; `None`: no server answers.
    inform: Mutex<Option<InformAck>>,
    more_servers: Mutex<BTreeMap<String, MoreServers>>,
    /// The address and mask configured on each link, for the TCP probes.
    configured: Mutex<BTreeMap<String, LinkConfig>>,
    started: Mutex<Option<Instant>>,
    /// How long each finit_module blocks.
    pub load_time: Duration,
    /// Called after a successful finit_module with the file name: lets a test make
    /// a bus announce new devices the way the kernel does.
    #[allow(clippy::type_complexity)]
    pub on_load: Mutex<Option<Box<dyn FnMut(&str) + Send>>>,
}

impl FakeOs {
    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The calls of one kind, in order.
    pub fn calls_of(&self, kind: Kind) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.kind() == kind).collect()
    }

    /// The last call.
    pub fn last_call(&self) -> Option<Call> {
        self.calls().pop()
    }

    /// Fail the `nth` call (1-based) of `kind` with `errno`.
    pub fn fail_nth(&self, kind: Kind, nth: usize, errno: i32) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(Failure::Nth { kind, nth, errno });
    }

    /// Fail every call for which `matching` holds with `errno`.
    pub fn fail_calls(&self, matching: impl Fn(&Call) -> bool + Send + 'static, errno: i32) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Failure::Matching { matching: Box::new(matching), errno });
    }

    /// Fail every mount (also a bind or move) onto `target` with `errno`.
    pub fn fail_mount_on(&self, target: &Path, errno: i32) {
        let target = target.to_path_buf();
        self.fail_calls(move |c| c.mount_target() == Some(&target), errno);
    }

    /// Forget every planned failure: from now on calls succeed.
    pub fn clear_failures(&self) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Fail every load of the module file `file` (`virtio_net.ko`) with `errno`.
    pub fn fail_module(&self, file: &str, errno: i32) {
        let file = file.to_string();
        self.fail_calls(move |c| matches!(c, Call::LoadModule { file: f, .. } if *f == file), errno);
    }

    /// Each module load blocks this long, as the kernel's module init does.
    pub fn with_load_time(mut self, load_time: Duration) -> FakeOs {
        self.load_time = load_time;
        self
    }

    /// The machine's network links.
    pub fn with_links(self, links: Vec<FakeLink>) -> FakeOs {
        self.set_links(links);
        self
    }

    /// Change the machine's network links.
    pub fn set_links(&self, links: Vec<FakeLink>) {
        *self.links.lock().unwrap_or_else(|p| p.into_inner()) = links;
    }

    /// The names the DNS servers answer for the PTR record (else: no record).
    pub fn with_ptr(self, names: &[&str]) -> FakeOs {
        *self.ptr.lock().unwrap() = Some(names.iter().map(|n| n.to_string()).collect());
        self
    }

    /// More DHCP servers answering on `link`, besides its own lease.
    pub fn with_more_servers(self, link: &str, servers: MoreServers) -> FakeOs {
        self.more_servers.lock().unwrap_or_else(|p| p.into_inner()).insert(link.to_string(), servers);
        self
    }

    /// Record `call`; its result by the planned failures.
    pub fn with_inform(self, ack: InformAck) -> FakeOs {
        *self.inform.lock().unwrap() = Some(ack);
        self
    }

    fn record(&self, call: Call) -> io::Result<()> {
        let kind = call.kind();
        let nth = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let count = counts.entry(kind).or_default();
            *count += 1;
            *count
        };
        let errno = self.failures.lock().unwrap_or_else(|p| p.into_inner()).iter().find_map(|f| match f {
            Failure::Nth { kind: k, nth: n, errno } => (*k == kind && *n == nth).then_some(*errno),
            Failure::Matching { matching, errno } => matching(&call).then_some(*errno),
        });
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
        match errno {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    /// Time since the fake network started: its first network call.
    fn elapsed(&self) -> Duration {
        self.started.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now).elapsed()
    }

    fn link(&self, name: &str) -> Option<FakeLink> {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|l| l.name == name).cloned()
    }
}

fn link_error(e: io::Error) -> LinkError {
    LinkError::Socket { source: e }
}

impl Os for FakeOs {
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        let (source, fstype, data) = (source.to_string(), fstype.to_string(), data.to_string());
        self.record(Call::Mount { source, target: target.to_path_buf(), fstype, flags, data })
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        self.record(Call::Unmount { target: target.to_path_buf() })
    }

    fn swapon(&self, device: &Path) -> io::Result<()> {
        self.record(Call::Swapon { device: device.to_path_buf() })
    }

    fn read_disk(&self, device: &Path, size: u64) -> io::Result<Sample> {
        self.record(Call::ReadDisk { device: device.to_path_buf(), size })?;
        let file = File::open(device)?;
        Sample::read(size, |offset, buf| file.read_exact_at(buf, offset))
    }

    fn set_owner(&self, _dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        self.record(Call::SetOwner { name: name.to_os_string(), uid, gid })
    }

    fn set_mode(&self, _dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        self.record(Call::SetMode { name: name.to_os_string(), mode })
    }

    fn set_times(&self, _dir: BorrowedFd<'_>, name: &OsStr, _times: &Timestamps) -> io::Result<()> {
        self.record(Call::SetTimes { name: name.to_os_string() })
    }

    fn finit_module(&self, path: &Path, params: &str) -> io::Result<()> {
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let result =
            self.record(Call::LoadModule { file: file.clone(), params: params.to_string(), path: path.to_path_buf() });
        std::thread::sleep(self.load_time);
        result?;
        if let Some(hook) = self.on_load.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            hook(&file);
        }
        Ok(())
    }

    fn load_detached(&self, loads: &[DetachedLoad], _limit: Duration) -> io::Result<u32> {
        self.record(Call::LoadDetached {
            modules: loads.iter().map(|l| l.module.clone()).collect(),
            paths: loads.iter().map(|l| l.path.clone()).collect(),
        })?;
        Ok(FAKE_CHILD_PID)
    }

    fn set_thread_nice(&self, nice: i32) -> io::Result<()> {
        self.record(Call::Nice { nice })
    }

    fn kernel_release(&self) -> String {
        "6.1.0-test".to_string()
    }

    fn open_uevents(&self, poll: Duration) -> io::Result<UeventReceive> {
        self.record(Call::OpenUevents)?;
        // A quiet machine: devices of the fake appear through `on_load` and the tests'
        // own events, never on this socket.
        Ok(Box::new(move |_: &mut [u8]| {
            std::thread::sleep(poll);
            Err(io::Error::from(io::ErrorKind::WouldBlock))
        }))
    }

    fn links(&self, _sys_class_net: &Path) -> Vec<SysLink> {
        let now = self.elapsed();
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let mut present: Vec<SysLink> =
            links.iter().filter(|l| l.appears <= now).map(|l| SysLink { name: l.name.clone(), mac: l.mac }).collect();
        present.sort_by(|a, b| a.name.cmp(&b.name));
        present
    }

    fn has_carrier(&self, _sys_class_net: &Path, name: &str) -> bool {
        let now = self.elapsed();
        self.link(name).and_then(|l| l.carrier).is_some_and(|c| c <= now)
    }

    fn set_link_up(&self, name: &str, up: bool) -> Result<(), LinkError> {
        self.record(Call::LinkUp { link: name.to_string(), up }).map_err(link_error)
    }

    fn configure_link(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        self.record(Call::ConfigureLink { link: name.to_string(), config: cfg.clone() }).map_err(link_error)?;
        self.configured.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), cfg.clone());
        Ok(())
    }

    fn unconfigure_link(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        self.record(Call::UnconfigureLink { link: name.to_string(), config: cfg.clone() }).map_err(link_error)?;
        self.configured.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    fn dhcp_release(&self, name: &str, _mac: Mac, lease: &Lease) -> Result<bool, DhcpIoError> {
        let call = Call::DhcpRelease { link: name.to_string(), address: lease.address, server: lease.server_id };
        match (self.record(call), lease.server_id) {
            (Err(source), Some(server)) => {
                Err(DhcpIoError::Release { interface: name.to_string(), address: lease.address, server, source })
            }
            (_, server) => Ok(server.is_some()),
        }
    }

    /// The fake network routes nothing: a server answers when it is in the subnet of
    /// an address configured on some link.
    fn send_udp(&self, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        self.record(Call::SendUdp { to, payload: String::from_utf8_lossy(payload).into_owned() })
    }

    fn probe_tcp(&self, to: SocketAddrV4, _timeout: Duration) -> io::Result<()> {
        self.record(Call::ProbeTcp { to })?;
        let on_link = |c: &LinkConfig| {
            let mask = u32::MAX.checked_shl(32 - u32::from(c.prefix_len)).unwrap_or(0);
            u32::from(c.address) & mask == u32::from(*to.ip()) & mask
        };
        match self.configured.lock().unwrap_or_else(|p| p.into_inner()).values().any(on_link) {
            true => Ok(()),
            false => Err(io::Error::from_raw_os_error(libc::ENETUNREACH)),
        }
    }

    fn dhcp(
        &self,
        name: &str,
        _mac: Mac,
        policy: &OfferPolicy,
        until: Instant,
        cancel: &AtomicBool,
        _log: &dyn NetLog,
    ) -> Result<Lease, DhcpIoError> {
        let interface = name.to_string();
        if let Err(source) = self.record(Call::Dhcp { link: interface.clone() }) {
            return Err(DhcpIoError::Receive { interface, source });
        }
        let begun = Instant::now();
        let more = self.more_servers.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned().unwrap_or_default();
        let lease = self
            .link(name)
            .and_then(|l| l.lease)
            .into_iter()
            .chain(more)
            .filter(|(_, lease)| policy.refuses(lease.server_id).is_none())
            .min_by_key(|(after, _)| *after);
        loop {
            if cancel.load(Ordering::Relaxed) {
                let _ = self.record(Call::DhcpCancelled { link: interface.clone() });
                return Err(DhcpIoError::Cancelled { interface });
            }
            if let Some((after, lease)) = &lease
                && begun.elapsed() >= *after
            {
                return Ok(lease.clone());
            }
            if Instant::now() >= until {
                return Err(DhcpIoError::Timeout { interface, waited: begun.elapsed(), ignored: Default::default() });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn dhcp_inform(
        &self,
        name: &str,
        _mac: Mac,
        address: Ipv4Addr,
        server: Option<Ipv4Addr>,
        timing: &InformTiming,
        _log: &dyn NetLog,
    ) -> Result<InformAck, InformError> {
        let interface = name.to_string();
        if let Err(source) = self.record(Call::DhcpInform { link: interface.clone(), address, server }) {
            return Err(InformError::Receive { interface, source });
        }
        match self.inform.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(ack) => Ok(ack),
            None => {
                Err(InformError::NoAnswer { interface, tries: timing.waits.len(), waited: Duration::ZERO, ignored: 0 })
            }
        }
    }

    fn lookup_ptr(
        &self,
        addr: Ipv4Addr,
        servers: &[SocketAddr],
        _timing: LookupTiming,
        _debug: &dyn Fn(&str),
    ) -> PtrOutcome {
        let result = self.record(Call::LookupPtr { address: addr });
        let Some(&server) = servers.first() else {
            return PtrOutcome::Failed(DnsError::NoServers { addr });
        };
        if let Err(source) = result {
            let last = TryError::Send { server, source };
            return PtrOutcome::Failed(DnsError::NoAnswer { addr, servers: servers.to_vec(), tries: 1, last });
        }
        match self.ptr.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(names) => PtrOutcome::Names { names, server },
            None => PtrOutcome::NoRecord { server },
        }
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetHostname { name: name.to_string() })
    }

    fn set_domainname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetDomainname { name: name.to_string() })
    }

    fn attach_console(&self, console: &Path) -> io::Result<bool> {
        self.record(Call::AttachConsole { console: console.to_path_buf() }).map(|()| false)
    }

    fn run_shell(&self, shell: &Path) -> io::Result<ExitStatus> {
        use std::os::unix::process::ExitStatusExt;
        self.record(Call::RunShell { shell: shell.to_path_buf() }).map(|()| ExitStatus::from_raw(0))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chdir { path: path.to_path_buf() })
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chroot { path: path.to_path_buf() })
    }

    fn hold_cache(&self, device: &Path, commands: &[String], _stats: &Path) -> Result<u32, HoldError> {
        // A planned EINVAL is the kernel refusing the first command (cachefiles answers
        // a bad one so); any other errno is the device failing to open.
        self.record(Call::HoldCache { device: device.to_path_buf(), commands: commands.to_vec() }).map_err(
            |source| match source.raw_os_error() {
                Some(libc::EINVAL) => HoldError::Command { command: commands[0].clone(), source },
                _ => HoldError::Open { device: device.to_path_buf(), source },
            },
        )?;
        Ok(FAKE_HOLDER_PID)
    }

    fn exec(&self, path: &Path, args: &[String]) -> io::Error {
        match self.record(Call::Exec { path: path.to_path_buf(), args: args.to_vec() }) {
            Err(e) => e,
            Ok(()) => io::Error::other("fake exec"),
        }
    }

    fn power_off(&self) -> io::Error {
        let _ = self.record(Call::PowerOff);
        io::Error::other("fake")
    }

    fn reboot(&self) -> io::Error {
        let _ = self.record(Call::Reboot);
        io::Error::other("fake")
    }
}
