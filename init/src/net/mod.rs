//! Network and identity stages: bring up links, get a lease (DHCP on every
//! candidate NIC at once, or the static `ip=`), configure the winner, learn
//! the host name, and write the hand-off files.
//!
//! # Entry points for the boot sequence
//!
//! ```text
//! let cfg  = net::NetConfig::from_params(params)?;          // ip=, BOOTIF=, diskless.carrier_timeout/dhcp_timeout
//! let net  = net::network_stage(&cfg, os, Path::new("/sys/class/net"), &log)?;  // -> NetResult
//! let id   = net::identity_stage(os, &net, &cfg, &log);                        // -> Identity
//! net::handoff::write_files(Path::new("/run"), &net, &id, uptime)?;          // net-<if>.conf, diskless/resolv.conf
//! ```
//!
//! # Never keep a lease that cannot boot
//!
//! Which offer the DHCP client takes is its own policy ([`dhcp`], [`OfferPolicy`]:
//! offers with boot information first, a 1 s window otherwise, the
//! `diskless.dhcp_server=` allowlist). This stage then checks a lease without boot
//! information against the root the command line asks for ([`NetConfig::root`],
//! through [`crate::root::RootRequest::server_for`], the rule the root stage
//! resolves the server by): no root at all, or an NFS server that does not answer a
//! TCP connection over the lease, and the lease is released, its server excluded,
//! and DHCP run again, within `diskless.dhcp_timeout` (see `dhcp_stage`).
//!
//! `os` is the boot's one system interface ([`crate::os::Os`]): every link, socket and
//! name change goes through it.
//!
//! `log` is anything implementing [`NetLog`], e.g. a closure
//! `|level: Level, line: &str| ...`; it is called from several threads.
//!
//! Modules: [`config`] (command line), [`dhcp`] (sans-IO client),
//! [`dhcp_io`] (socket driver), [`link`] (sysfs and rtnetlink), [`dns`]
//! (PTR lookup), [`identity`] (name choice and sethostname), [`handoff`]
//! (files for the booted system).

pub mod config;
pub mod dhcp;
pub mod dhcp_io;
pub mod dns;
pub mod handoff;
pub mod identity;
pub mod inform;
pub mod link;
pub mod log;
pub mod random;
pub mod resolv;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::os::Os;

pub use config::{ConfigError, IpMode, Mac, NetConfig};
pub use dhcp::{Lease, OfferPolicy};
use dhcp_io::DhcpIoError;
use dns::{DNS_PORT, LookupTiming, PtrOutcome};
use identity::Candidates;
pub use identity::Identity;
use inform::InformTiming;
use link::{LinkConfig, LinkError, SysLink};
pub use log::{Level, NetLog};

/// How the address was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Dhcp,
    /// Static `ip=` (klibc writes PROTO='none' for it).
    Static,
}

impl Proto {
    /// The PROTO value of klibc's net-<iface>.conf.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Dhcp => "dhcp",
            Proto::Static => "none",
        }
    }
}

/// The configured interface and its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetResult {
    pub interface: String,
    pub mac: Mac,
    pub proto: Proto,
    pub lease: Lease,
    /// Where `lease.dns_servers` came from; `None` in records written before it was kept.
    #[serde(default)]
    pub dns_source: Option<DnsSource>,
}

/// Where the DNS servers used for the host name came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DnsSource {
    /// The lease (option 6).
    Dhcp,
    /// The dns0/dns1 fields of `ip=`.
    IpParam,
    /// The DHCPACK to a DHCPINFORM for the static `ip=` address.
    DhcpInform { server: std::net::Ipv4Addr },
    /// The image's `resolv.conf` in a layer (path inside the image).
    ImageResolvConf { path: std::path::PathBuf, layer: crate::local::LayerKind },
    /// Nothing named a DNS server.
    Nowhere,
}

impl DnsSource {
    /// Where servers known at the end of the network stage came from.
    fn of_stage(proto: Proto, servers: &[std::net::Ipv4Addr]) -> DnsSource {
        match (proto, servers.is_empty()) {
            (_, true) => DnsSource::Nowhere,
            (Proto::Dhcp, false) => DnsSource::Dhcp,
            (Proto::Static, false) => DnsSource::IpParam,
        }
    }
}

impl fmt::Display for DnsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsSource::Dhcp => f.write_str("the DHCP lease"),
            DnsSource::IpParam => f.write_str("ip="),
            DnsSource::DhcpInform { server } => write!(f, "a DHCPINFORM answered by {server}"),
            DnsSource::ImageResolvConf { path, layer } => {
                write!(f, "the image's resolv.conf {} ({layer} layer)", path.display())
            }
            DnsSource::Nowhere => f.write_str("nowhere"),
        }
    }
}

/// Errors of the network stage.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// `ip=off` / `ip=none`.
    #[error("networking disabled by ip=off/none; a network root cannot be mounted")]
    Disabled,
    /// No matching interface appeared.
    #[error(
        "no network interface {wanted} after {} s; is the NIC's driver in the initramfs? (check BOOTIF=/ip=)",
        .waited.as_secs()
    )]
    NoInterface { wanted: String, waited: Duration },
    /// Matching interfaces exist but none got carrier.
    #[error(
        "no carrier on {} after {} s; check the cable and switch port (diskless.carrier_timeout= waits longer)",
        .links.join(", "),
        .waited.as_secs()
    )]
    NoCarrier { links: Vec<String>, waited: Duration },
    /// DHCP gave no lease on any link: why, link by link.
    #[error("no DHCP lease after {} s: {}", .waited.as_secs(), joined(.errors, "; "))]
    NoLease { errors: Vec<DhcpIoError>, waited: Duration },
    /// Configuring the winning link failed.
    #[error("configuring the network failed: {0}")]
    Configure(#[source] LinkError),
}

fn joined(items: &[impl fmt::Display], separator: &str) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}

/// The links of one machine, seen through the boot's [`Os`]: the network stage's view
/// of the system (sysfs under `sys_class_net`, rtnetlink, DHCP sockets).
struct Links<'a> {
    os: &'a dyn Os,
    sys_class_net: &'a Path,
}

impl Links<'_> {
    fn links(&self) -> Vec<SysLink> {
        self.os.links(self.sys_class_net)
    }
    fn has_carrier(&self, name: &str) -> bool {
        self.os.has_carrier(self.sys_class_net, name)
    }
}

/// How often the orchestrator rescans for interfaces that appeared late
/// (a driver that finished loading after networking began).
pub const RESCAN: Duration = Duration::from_millis(500);
/// How often the "waiting for carrier" line repeats.
const WAIT_MESSAGE_EVERY: Duration = Duration::from_secs(2);

/// Which links the command line allows: the `ip=` device, else the BOOTIF
/// MAC, else all.
fn wanted(device: Option<&str>, bootif: Option<Mac>) -> impl Fn(&SysLink) -> bool + '_ {
    move |l| match (device, bootif) {
        (Some(d), _) => l.name == d,
        (None, Some(m)) => l.mac == m,
        (None, None) => true,
    }
}

fn wanted_text(device: Option<&str>, bootif: Option<Mac>) -> String {
    match (device, bootif) {
        (Some(d), _) => format!("named {d} (ip=)"),
        (None, Some(m)) => format!("with MAC {m} (BOOTIF=)"),
        (None, None) => "with Ethernet".into(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum LinkState {
    WaitingCarrier { since: Instant },
    NoCarrier,
    Running,
    Failed,
}

/// The network stage: bring up the wanted links under `sys_class_net` and take the first
/// lease (or the static `ip=`), through `os`.
pub fn network_stage(
    cfg: &NetConfig,
    os: &dyn Os,
    sys_class_net: &Path,
    log: &dyn NetLog,
) -> Result<NetResult, NetError> {
    let ops = &Links { os, sys_class_net };
    match cfg.mode() {
        IpMode::Off => Err(NetError::Disabled),
        IpMode::Static => static_stage(cfg, ops, log),
        IpMode::Dhcp { device, method } => {
            if method == config::Autoconf::Rarp {
                log.log(Level::Warn, "ip=rarp: RARP is not supported, using DHCP");
            }
            dhcp_stage(cfg, device.as_deref(), ops, log)
        }
    }
}

/// DHCP on every wanted link at once until one gets a lease by `policy` or `until`
/// passes; returns the winning link. `start` is when the stage began (for errors).
fn acquire(
    cfg: &NetConfig,
    device: Option<&str>,
    ops: &Links<'_>,
    log: &dyn NetLog,
    policy: &OfferPolicy,
    start: Instant,
    until: Instant,
) -> Result<(String, Mac, Lease), NetError> {
    let cancel = AtomicBool::new(false);
    let is_wanted = wanted(device, cfg.bootif);
    let mut links: BTreeMap<String, (Mac, LinkState)> = BTreeMap::new();
    let mut errors: Vec<DhcpIoError> = Vec::new();
    let (tx, rx) = mpsc::channel::<(String, Mac, Result<Lease, DhcpIoError>)>();
    let mut last_message = Instant::now();
    let outcome = std::thread::scope(|scope| {
        let result = (|| loop {
            let now = Instant::now();
            for l in ops.links().into_iter().filter(|l| is_wanted(l)) {
                if links.contains_key(&l.name) {
                    continue;
                }
                log.log(Level::Info, &format!("found {} ({}), bringing it up", l.name, l.mac));
                if let Err(e) = ops.os.set_link_up(&l.name, true) {
                    log.log(Level::Warn, &e.to_string());
                }
                links.insert(l.name, (l.mac, LinkState::WaitingCarrier { since: now }));
            }
            let mut waiting = Vec::new();
            for (name, (mac, state)) in links.iter_mut() {
                if matches!(state, LinkState::WaitingCarrier { .. } | LinkState::NoCarrier) && ops.has_carrier(name) {
                    log.log(Level::Info, &format!("{name}: carrier, starting DHCP"));
                    *state = LinkState::Running;
                    let (tx, name, mac, cancel) = (tx.clone(), name.clone(), *mac, &cancel);
                    scope.spawn(move || {
                        let result = ops.os.dhcp(&name, mac, policy, until, cancel, log);
                        let _ = tx.send((name, mac, result));
                    });
                } else if let LinkState::WaitingCarrier { since } = *state {
                    if now.duration_since(since) >= cfg.carrier_timeout {
                        log.log(
                            Level::Warn,
                            &format!(
                                "{name}: no carrier after {} s, not waiting for it any more",
                                cfg.carrier_timeout.as_secs()
                            ),
                        );
                        *state = LinkState::NoCarrier;
                    } else {
                        waiting.push(name.clone());
                    }
                }
            }
            if now.duration_since(last_message) >= WAIT_MESSAGE_EVERY {
                last_message = now;
                let left = until.saturating_duration_since(now).as_secs();
                if links.is_empty() {
                    log.log(
                        Level::Info,
                        &format!("waiting for a network interface {} ({left} s left)", wanted_text(device, cfg.bootif)),
                    );
                } else if !waiting.is_empty() {
                    log.log(Level::Info, &format!("waiting for carrier on {} ({left} s left)", waiting.join(", ")));
                }
            }
            match rx.recv_timeout(RESCAN) {
                Ok((name, mac, Ok(lease))) => return Ok((name, mac, lease)),
                Ok((name, _, Err(e))) => {
                    log.log(Level::Warn, &e.to_string());
                    errors.push(e);
                    if let Some((_, state)) = links.get_mut(&name) {
                        *state = LinkState::Failed;
                    }
                }
                Err(_) => {}
            }
            let now = Instant::now();
            let all_done =
                !links.is_empty() && links.values().all(|(_, s)| matches!(s, LinkState::NoCarrier | LinkState::Failed));
            let none_ran = links.values().all(|(_, s)| *s == LinkState::NoCarrier);
            if now >= until || all_done {
                let waited = now - start;
                return Err(if links.is_empty() {
                    NetError::NoInterface { wanted: wanted_text(device, cfg.bootif), waited }
                } else if none_ran {
                    NetError::NoCarrier { links: links.keys().cloned().collect(), waited }
                } else {
                    NetError::NoLease { errors: std::mem::take(&mut errors), waited }
                });
            }
        })();
        // The scope joins every DHCP thread before it returns: stop them.
        cancel.store(true, Ordering::Relaxed);
        result
    });
    let (name, mac, lease) = outcome?;
    for other in links.keys().filter(|n| **n != name) {
        if let Err(e) = ops.os.set_link_up(other, false) {
            log.log(Level::Warn, &e.to_string());
        }
    }
    Ok((name, mac, lease))
}

/// While servers are excluded, how long one round of DHCP may go without a lease
/// before the exclusions are dropped and every server is asked again.
pub const EXCLUDED_ROUND: Duration = Duration::from_secs(10);
/// How long one TCP connection to the NFS root server over a lease without boot
/// information may take, and how many are tried.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
pub const PROBE_TRIES: u32 = 2;
/// The NFS port the probe connects to when the root names no `port=`.
const NFS_PORT: u16 = 2049;

/// The DHCP stage: take a lease ([`acquire`], offers chosen by the command line's
/// [`OfferPolicy`]), configure its link, and keep it only if it can boot (see
/// [`cannot_boot`]). A lease that cannot is released, its server excluded and DHCP
/// run again; when no other server answers within [`EXCLUDED_ROUND`] the exclusions
/// are dropped. `diskless.dhcp_timeout` bounds the whole stage: when it is over, the
/// last lease is kept (with a warning) and the NFS mount's own retries take over.
fn dhcp_stage(cfg: &NetConfig, device: Option<&str>, ops: &Links<'_>, log: &dyn NetLog) -> Result<NetResult, NetError> {
    let start = Instant::now();
    let until = start + cfg.dhcp_timeout;
    let mut policy = cfg.offer_policy();
    loop {
        let round_until = if policy.excluded.is_empty() { until } else { until.min(Instant::now() + EXCLUDED_ROUND) };
        let (name, mac, lease) = match acquire(cfg, device, ops, log, &policy, start, round_until) {
            Err(NetError::NoLease { .. }) if !policy.excluded.is_empty() && Instant::now() < until => {
                log.log(
                    Level::Warn,
                    &format!(
                        "no lease within {} s from any server but the excluded {}; asking every server again ({} s left)",
                        EXCLUDED_ROUND.as_secs(),
                        joined(&policy.excluded, ", "),
                        until.saturating_duration_since(Instant::now()).as_secs()
                    ),
                );
                policy.excluded.clear();
                continue;
            }
            other => other?,
        };
        let link_cfg = LinkConfig {
            address: lease.address,
            prefix_len: lease.prefix_len,
            broadcast: lease.broadcast,
            gateway: lease.routers.first().copied(),
            mtu: lease.mtu,
        };
        ops.os.configure_link(&name, &link_cfg).map_err(NetError::Configure)?;
        let Some(why) = cannot_boot(cfg, ops.os, &policy, &lease, &|l| log.log(Level::Debug, l)) else {
            return Ok(dhcp_result(name, mac, lease));
        };
        let what = format!(
            "{name}: lease {} from {}",
            lease.address,
            lease.server_id.map_or_else(|| "a server without identifier".into(), |s| s.to_string())
        );
        let left = until.saturating_duration_since(Instant::now());
        let Some(server) = lease.server_id.filter(|_| !left.is_zero()) else {
            let reason = if left.is_zero() {
                "the DHCP time (diskless.dhcp_timeout) is over"
            } else {
                "its server has no identifier to exclude it by"
            };
            log.log(Level::Warn, &format!("{what} {why}; keeping it all the same: {reason}"));
            return Ok(dhcp_result(name, mac, lease));
        };
        log.log(
            Level::Warn,
            &format!("{what} {why}; releasing it and asking again without {server} ({:.0} s left)", left.as_secs_f32()),
        );
        if let Err(e) = ops.os.dhcp_release(&name, mac, &lease) {
            log.log(Level::Warn, &e.to_string());
        }
        if let Err(e) = ops.os.unconfigure_link(&name, &link_cfg) {
            log.log(Level::Warn, &e.to_string());
        }
        policy.excluded.push(server);
    }
}

/// The network stage's result for a DHCP lease.
fn dhcp_result(interface: String, mac: Mac, lease: Lease) -> NetResult {
    let dns_source = Some(DnsSource::of_stage(Proto::Dhcp, &lease.dns_servers));
    NetResult { interface, mac, proto: Proto::Dhcp, lease, dns_source }
}

/// Why a configured lease cannot boot, if it cannot. A lease with boot information
/// ([`OfferPolicy::has_boot_info`]) or for a root the command line does not name
/// is trusted; otherwise the NFS root server must be known and answer a TCP
/// connection over it ([`PROBE_TRIES`] of [`PROBE_TIMEOUT`]; a refused connection
/// is an answer: the mount will say what is wrong with the server).
fn cannot_boot(
    cfg: &NetConfig,
    os: &dyn Os,
    policy: &OfferPolicy,
    lease: &Lease,
    debug: &dyn Fn(&str),
) -> Option<String> {
    let root = cfg.root.as_ref().filter(|_| !policy.has_boot_info(lease))?;
    let (servers, port) = match root.servers_for(lease) {
        Ok(found) => found,
        Err(crate::root::RootSpecError::NoRoot) => {
            return Some("has no root path and the command line names no root".into());
        }
        Err(e) => return Some(format!("names no usable root: {e}")),
    };
    // One server of several that answers is enough: the root stage moves past the others.
    let mut last = None;
    for server in &servers {
        let to = SocketAddrV4::new(*server, port.unwrap_or(NFS_PORT));
        for attempt in 1..=PROBE_TRIES {
            match os.probe_tcp(to, PROBE_TIMEOUT) {
                Ok(()) => return None,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return None,
                Err(e) => {
                    debug(&format!("probe {attempt} of the NFS root server {to}: {e}"));
                    last = Some(e);
                }
            }
        }
    }
    let last = last.map(|e| e.to_string()).unwrap_or_default();
    let port = port.unwrap_or(NFS_PORT);
    let to: Vec<String> = servers.iter().map(|s| SocketAddrV4::new(*s, port).to_string()).collect();
    let who = match to.as_slice() {
        [one] => format!("the NFS root server {one} does not answer"),
        all => format!("none of the NFS root servers {} answers", all.join(", ")),
    };
    Some(format!(
        "has {} and {who} over it ({last}; {PROBE_TRIES} tries of {} s)",
        dhcp::NO_BOOT_INFO,
        PROBE_TIMEOUT.as_secs()
    ))
}

fn static_stage(cfg: &NetConfig, ops: &Links<'_>, log: &dyn NetLog) -> Result<NetResult, NetError> {
    let Some(ip) = &cfg.ip else {
        return Err(NetError::Disabled);
    };
    let (Some(address), Some(netmask)) = (ip.client, ip.effective_netmask()) else {
        return Err(NetError::Disabled);
    };
    let start = Instant::now();
    let device = ip.device.as_deref();
    let is_wanted = wanted(device, cfg.bootif);
    let mut brought_up: Vec<String> = Vec::new();
    let chosen = loop {
        let now = Instant::now();
        let candidates: Vec<SysLink> = ops.links().into_iter().filter(|l| is_wanted(l)).collect();
        for l in &candidates {
            if !brought_up.contains(&l.name) {
                if let Err(e) = ops.os.set_link_up(&l.name, true) {
                    log.log(Level::Warn, &e.to_string());
                }
                brought_up.push(l.name.clone());
            }
        }
        // Without a named device the kernel takes the first link that works;
        // a named device is used even without carrier once the wait is over.
        if let Some(l) = candidates.iter().find(|l| ops.has_carrier(&l.name)) {
            break l.clone();
        }
        let waited = now - start;
        if waited >= cfg.carrier_timeout {
            match (device, candidates.first()) {
                (Some(_), Some(l)) => break l.clone(),
                (_, None) => {
                    return Err(NetError::NoInterface { wanted: wanted_text(device, cfg.bootif), waited });
                }
                (None, Some(_)) => {
                    return Err(NetError::NoCarrier {
                        links: candidates.iter().map(|l| l.name.clone()).collect(),
                        waited,
                    });
                }
            }
        }
        std::thread::sleep(RESCAN);
    };
    let mut lease = Lease::new(address, netmask);
    lease.routers = ip.gateway.into_iter().collect();
    lease.dns_servers = ip.dns.clone();
    lease.next_server = ip.server;
    lease.ntp_servers = ip.ntp.into_iter().collect();
    for other in brought_up.iter().filter(|n| **n != chosen.name) {
        let _ = ops.os.set_link_up(other, false);
    }
    let link_cfg = LinkConfig {
        address,
        prefix_len: lease.prefix_len,
        broadcast: lease.broadcast,
        gateway: ip.gateway,
        mtu: None,
    };
    ops.os.configure_link(&chosen.name, &link_cfg).map_err(NetError::Configure)?;
    log.log(Level::Info, &format!("{}: static address {}/{} from ip=", chosen.name, address, lease.prefix_len));
    let dns_source = Some(DnsSource::of_stage(Proto::Static, &lease.dns_servers));
    Ok(NetResult { interface: chosen.name, mac: chosen.mac, proto: Proto::Static, lease, dns_source })
}

/// Chooses the identity (PTR to the lease's DNS servers on `dns_port`, then
/// DHCP option 12, `ip=` hostname, address) without applying it.
pub fn resolve_identity(
    os: &dyn Os,
    net: &NetResult,
    cfg: &NetConfig,
    dns_port: u16,
    timing: LookupTiming,
    log: &dyn NetLog,
) -> Identity {
    let servers: Vec<SocketAddr> =
        net.lease.dns_servers.iter().map(|s| SocketAddr::V4(SocketAddrV4::new(*s, dns_port))).collect();
    let ptr = os.lookup_ptr(net.lease.address, &servers, timing, &|l| log.log(Level::Debug, l));
    if let PtrOutcome::Names { names, server } = &ptr {
        let names: Vec<String> = names.iter().map(|n| crate::text::Escaped(n).to_string()).collect();
        log.log(Level::Debug, &format!("PTR {} at {server}: {}", net.lease.address, names.join(", ")));
    }
    let candidates = Candidates {
        ptr: &ptr,
        dhcp_hostname: net.lease.host_name.as_deref(),
        dhcp_domain: net.lease.domain_name.as_deref(),
        ip_hostname: cfg.ip_hostname(),
        address: net.lease.address,
    };
    identity::choose_identity(&candidates, &mut |l| log.log(Level::Info, l))
}

/// Sets host name and (when known) domain name.
pub fn apply_identity(id: &Identity, os: &dyn Os) -> Result<(), identity::IdentityError> {
    os.set_hostname(&id.hostname)
        .map_err(|source| identity::IdentityError::SetHostname { name: id.hostname.clone(), source })?;
    if let Some(d) = &id.domain {
        os.set_domainname(d).map_err(|source| identity::IdentityError::SetDomainname { name: d.clone(), source })?;
    }
    Ok(())
}

/// The identity stage: for a static `ip=` without a DNS server, ask for one with
/// DHCPINFORM; then resolve, and set host and domain name. A failure to set them is
/// logged; the boot goes on with the chosen names recorded.
pub fn identity_stage(os: &dyn Os, net: &mut NetResult, cfg: &NetConfig, log: &dyn NetLog) -> Identity {
    inform_for_static(os, net, &InformTiming::default(), log);
    let id = resolve_identity(os, net, cfg, DNS_PORT, LookupTiming::default(), log);
    if let Err(e) = apply_identity(&id, os) {
        log.log(Level::Warn, &e.to_string());
    }
    id
}

/// Records `servers` from `source` as the DNS servers of `net` and says so.
fn use_dns_servers(net: &mut NetResult, servers: Vec<std::net::Ipv4Addr>, source: DnsSource, log: &dyn NetLog) {
    let list = servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    log.log(Level::Info, &format!("{}: DNS servers {list} from {source}", net.interface));
    net.lease.dns_servers = servers;
    net.dns_source = Some(source);
}

/// A static `ip=` that names no DNS server (pxelinux's `IPAPPEND 1`): the DNS servers,
/// domain and host name from a DHCPINFORM ([`inform`]) into the lease, where reverse
/// DNS, the hand-off files and boot.json find them. Nothing changes when no server answers.
pub fn inform_for_static(os: &dyn Os, net: &mut NetResult, timing: &InformTiming, log: &dyn NetLog) {
    if net.proto != Proto::Static || !net.lease.dns_servers.is_empty() {
        return;
    }
    log.log(
        Level::Info,
        &format!("{}: ip= names no DNS server, asking the network with DHCPINFORM (no lease is taken)", net.interface),
    );
    match os.dhcp_inform(&net.interface, net.mac, net.lease.address, net.lease.next_server, timing, log) {
        Ok(ack) if ack.dns_servers.is_empty() => log.log(
            Level::Warn,
            &format!("{}: the DHCPACK of {} to DHCPINFORM names no DNS server (option 6)", net.interface, ack.server),
        ),
        Ok(ack) => {
            net.lease.domain_name = net.lease.domain_name.take().or(ack.domain_name);
            net.lease.host_name = net.lease.host_name.take().or(ack.host_name);
            use_dns_servers(net, ack.dns_servers, DnsSource::DhcpInform { server: ack.server }, log);
        }
        Err(e) => log.log(Level::Warn, &e.to_string()),
    }
}

/// Whether the identity was lost for want of a DNS server, so the image's
/// `resolv.conf` gets a second try at it ([`identity_from_image`]).
pub fn awaits_image_dns(id: &Identity) -> bool {
    id.lost.as_ref().is_some_and(|l| l.reason == identity::LostReason::NoDnsServer)
}

/// The second try at the identity, once the image is mounted and its configuration
/// read, before the layers are chosen: when no DNS server was known (the identity
/// was lost for want of one), the servers of the image's `resolv.conf` ([`resolv`]).
/// Returns the identity resolved (and applied) with them, or `None` when there was
/// nothing to retry or the image names no server.
pub fn identity_from_image(
    os: &dyn Os,
    net: &mut NetResult,
    cfg: &NetConfig,
    id: &Identity,
    image: (&crate::config::Config, &Path),
    timing: LookupTiming,
    log: &dyn NetLog,
) -> Option<Identity> {
    if !awaits_image_dns(id) {
        return None;
    }
    let (config, image_root) = image;
    let input = crate::local::LayerInput {
        broadcast: net.lease.broadcast,
        address: net.lease.address,
        hostname: id.hostname.clone(),
    };
    let Some((path, layer, servers)) = resolv::from_layers(config, image_root, &input) else {
        log.log(
            Level::Info,
            "no DNS server in the image's resolv.conf either (network layer, then base layer): the host name stays",
        );
        return None;
    };
    use_dns_servers(net, servers, DnsSource::ImageResolvConf { path, layer }, log);
    let id = resolve_identity(os, net, cfg, DNS_PORT, timing, log);
    if let Err(e) = apply_identity(&id, os) {
        log.log(Level::Warn, &e.to_string());
    }
    Some(id)
}

#[cfg(test)]
mod tests;
