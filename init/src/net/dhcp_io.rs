//! The socket side of the DHCP client: one UDP socket per interface, driven
//! by the sans-IO [`DhcpClient`].
//!
//! The socket is bound to 0.0.0.0:68 with SO_BINDTODEVICE, SO_BROADCAST and
//! SO_REUSEADDR: the device binding lets a broadcast leave an interface that
//! has no address yet (without it the send fails with ENETUNREACH) and lets
//! one socket per interface share port 68; replies arrive whether the server
//! broadcasts them or unicasts them to the offered address and our MAC.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};

use super::config::Mac;
use super::dhcp::{DhcpClient, Event, IgnoredCounts, Lease};
use super::{Level, NetLog};

/// How often a waiting client looks at its cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(250);

/// Errors of the DHCP driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpIoError {
    /// Creating or setting up the socket failed.
    Socket { interface: String, step: &'static str, reason: String },
    Receive { interface: String, reason: String },
    /// No lease before the deadline.
    Timeout { interface: String, waited: Duration, ignored: IgnoredCounts },
    /// Another interface won, or the caller gave up.
    Cancelled { interface: String },
}

impl fmt::Display for DhcpIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DhcpIoError::Socket { interface, step, reason } => {
                write!(f, "DHCP on {interface}: {step} failed: {reason}")
            }
            DhcpIoError::Receive { interface, reason } => write!(f, "DHCP on {interface}: receive failed: {reason}"),
            DhcpIoError::Timeout { interface, waited, ignored } => write!(
                f,
                "DHCP on {interface}: no lease after {} s ({} malformed, {} wrong xid, {} wrong MAC, {} other replies ignored); check that a DHCP server serves this network",
                waited.as_secs(),
                ignored.malformed,
                ignored.wrong_xid,
                ignored.wrong_chaddr,
                ignored.other
            ),
            DhcpIoError::Cancelled { interface } => write!(f, "DHCP on {interface}: stopped"),
        }
    }
}

impl std::error::Error for DhcpIoError {}

/// Opens the client socket for `interface` in the calling thread's network
/// namespace.
pub fn dhcp_socket(interface: &str) -> Result<UdpSocket, DhcpIoError> {
    let fail = |step: &'static str, e: nix::Error| DhcpIoError::Socket {
        interface: interface.into(),
        step,
        reason: e.to_string(),
    };
    let fd = socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail("socket", e))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("SO_REUSEADDR", e))?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(|e| fail("SO_BROADCAST", e))?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(interface))
        .map_err(|e| fail("SO_BINDTODEVICE", e))?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)))
        .map_err(|e| fail("bind 0.0.0.0:68", e))?;
    Ok(UdpSocket::from(fd))
}

fn kind_name(kind: MessageType) -> &'static str {
    match kind {
        MessageType::Discover => "DHCPDISCOVER",
        MessageType::Request => "DHCPREQUEST",
        _ => "DHCP message",
    }
}

/// Runs DHCP on `interface` until a lease, `until`, or `cancel` is set.
/// Logs each send with the time to the next one (the visible countdown).
pub fn run_dhcp(
    interface: &str,
    mac: Mac,
    until: Instant,
    cancel: &AtomicBool,
    log: &dyn NetLog,
) -> Result<Lease, DhcpIoError> {
    let sock = dhcp_socket(interface)?;
    let started = Instant::now();
    let xid = getrandom::u32().unwrap_or_else(|_| {
        // No entropy syscall: the MAC and the clock still differ per machine.
        let m = mac.0;
        u32::from_be_bytes([m[2], m[3], m[4], m[5]]) ^ started.elapsed().subsec_nanos()
    });
    let mut client = DhcpClient::new(mac, xid, started);
    let server = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, 67));
    let mut buf = vec![0u8; 1500];
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(DhcpIoError::Cancelled { interface: interface.into() });
        }
        let now = Instant::now();
        if now >= until {
            return Err(DhcpIoError::Timeout {
                interface: interface.into(),
                waited: now - started,
                ignored: client.ignored(),
            });
        }
        if let Some(tx) = client.poll(now) {
            let next = tx.deadline.saturating_duration_since(now).min(until.saturating_duration_since(now));
            match sock.send_to(&tx.bytes, server) {
                Ok(_) => log.log(
                    Level::Info,
                    &format!(
                        "{interface}: {} sent (try {}), next try in {:.1} s, giving up in {} s",
                        kind_name(tx.kind),
                        tx.attempt,
                        next.as_secs_f32(),
                        until.saturating_duration_since(now).as_secs()
                    ),
                ),
                // The link may still be settling: keep the schedule and retry.
                Err(e) => log.log(Level::Warn, &format!("{interface}: sending {} failed: {e}", kind_name(tx.kind))),
            }
        }
        let now = Instant::now();
        let wake = client.next_deadline().unwrap_or(until).min(until).min(now + CANCEL_CHECK);
        let wait = wake.saturating_duration_since(now).max(Duration::from_millis(1));
        let _ = sock.set_read_timeout(Some(wait));
        let (len, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DhcpIoError::Receive { interface: interface.into(), reason: e.to_string() }),
        };
        match client.handle(Instant::now(), &buf[..len]) {
            Event::Ignored(why) => log.log(Level::Debug, &format!("{interface}: ignored datagram from {from}: {why:?}")),
            Event::Offered { address, server } => {
                log.log(Level::Info, &format!("{interface}: offer of {address} from {server}"))
            }
            Event::Nak { server, message } => log.log(
                Level::Warn,
                &format!(
                    "{interface}: DHCPNAK from {}{}; starting over",
                    server.map(|s| s.to_string()).unwrap_or_else(|| from.to_string()),
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                ),
            ),
            Event::Bound(lease) => {
                log.log(
                    Level::Info,
                    &format!(
                        "{interface}: lease {}/{} from {}{} after {:.1} s",
                        lease.address,
                        lease.prefix_len,
                        lease.server_id.map(|s| s.to_string()).unwrap_or_else(|| from.to_string()),
                        if lease.rapid_commit { " (rapid commit)" } else { "" },
                        started.elapsed().as_secs_f32()
                    ),
                );
                return Ok(*lease);
            }
        }
    }
}
