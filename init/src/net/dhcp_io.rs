//! The socket side of the DHCP client: one UDP socket per interface, driven
//! by the sans-IO [`DhcpClient`].
//!
//! The socket is bound to 0.0.0.0:68 with SO_BINDTODEVICE, SO_BROADCAST and
//! SO_REUSEADDR: the device binding lets a broadcast leave an interface that
//! has no address yet (without it the send fails with ENETUNREACH) and lets
//! one socket per interface share port 68. It receives broadcast replies.
//!
//! A server that ignores the broadcast flag unicasts its reply to the offered
//! address and our MAC; before that address is configured the kernel does not
//! deliver such a datagram to any UDP socket (checked in a namespace). A
//! packet socket on the interface therefore also listens for IPv4 frames
//! addressed to our MAC (PACKET_HOST, so broadcasts are not seen twice) and
//! hands their UDP payload for port 68 to the same client.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, SockaddrIn, sockopt};

use super::config::Mac;
use super::dhcp::{DhcpClient, Event, Ignored, IgnoredCounts, Lease, OFFER_WINDOW, OfferPolicy, held_line};
use super::log::{Level, NetLog};
use crate::text::Escaped;

/// How often a waiting client looks at its cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(250);

/// Errors of the DHCP driver.
#[derive(Debug, thiserror::Error)]
pub enum DhcpIoError {
    /// Creating or setting up the UDP socket (or finding the interface) failed.
    #[error("DHCP on {interface}: {step} failed: {source}")]
    Socket { interface: String, step: &'static str, source: nix::Error },
    /// Creating or binding the packet socket that hears unicast replies failed.
    #[error("DHCP on {interface}: {step} failed: {source}")]
    PacketSocket { interface: String, step: &'static str, source: std::io::Error },
    #[error("DHCP on {interface}: receive failed: {source}")]
    Receive { interface: String, source: std::io::Error },
    /// No lease before the deadline.
    #[error(
        "DHCP on {interface}: no lease after {} s ({} malformed, {} wrong xid, {} wrong MAC, {} other replies ignored); check that a DHCP server serves this network",
        .waited.as_secs(),
        .ignored.malformed,
        .ignored.wrong_xid,
        .ignored.wrong_chaddr,
        .ignored.other
    )]
    Timeout { interface: String, waited: Duration, ignored: IgnoredCounts },
    /// The DHCPRELEASE of a lease that cannot boot could not be sent.
    #[error("DHCP on {interface}: sending DHCPRELEASE of {address} to {server} failed: {source}")]
    Release { interface: String, address: Ipv4Addr, server: Ipv4Addr, source: std::io::Error },
    /// Another interface won, or the caller gave up.
    #[error("DHCP on {interface}: stopped")]
    Cancelled { interface: String },
}

/// Where the UDP payload of an IPv4 packet lies, if it is an unfragmented
/// UDP datagram to port 68; `None` for anything else or anything malformed.
pub fn udp_payload_to_client(packet: &[u8]) -> Option<std::ops::Range<usize>> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || packet.len() < header_len + 8 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    // More-fragments flag or a fragment offset: not a whole datagram.
    let fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff;
    if packet[9] != 17 || fragment != 0 || total < header_len + 8 || total > packet.len() {
        return None;
    }
    let udp = &packet[header_len..total];
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if dport != 68 || udp_len < 8 || udp_len > udp.len() {
        return None;
    }
    Some(header_len + 8..header_len + udp_len)
}

/// A packet socket receiving IPv4 frames sent to our MAC on one interface.
struct UnicastListener {
    /// Always `Some` until dropped.
    fd: Option<std::os::fd::OwnedFd>,
}

impl Drop for UnicastListener {
    /// Closing a packet socket waits for an RCU grace period (synchronize_net in
    /// packet_release), milliseconds on a slow machine, and the lease is only
    /// handed on once the DHCP thread is done: a short-lived thread closes it,
    /// so the wait overlaps with configuring the link.
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        let closer = std::thread::Builder::new().name("close-packet".into()).stack_size(CLOSER_STACK);
        // If no thread can be started, the socket is closed here, waiting as before.
        let _ = closer.spawn(move || drop(fd));
    }
}

/// Stack of the thread that closes the packet socket: it makes one system call.
const CLOSER_STACK: usize = 16 * 1024;

impl UnicastListener {
    fn open(interface: &str) -> Result<UnicastListener, DhcpIoError> {
        use std::os::fd::FromRawFd;
        let fail = |step: &'static str, source: std::io::Error| DhcpIoError::PacketSocket {
            interface: interface.into(),
            step,
            source,
        };
        let index = nix::net::if_::if_nametoindex(interface).map_err(|source| DhcpIoError::Socket {
            interface: interface.into(),
            step: "interface index",
            source,
        })?;
        let proto = (nix::libc::ETH_P_IP as u16).to_be();
        // Protocol 0 here and ETH_P_IP in bind: a socket created with a protocol
        // is hooked on every device at once, and binding it to one device then
        // unhooks it with synchronize_net(), an RCU grace period (milliseconds
        // on a slow single-CPU machine) before the first DISCOVER can go out.
        // SAFETY: plain socket(2) call with constant arguments; the result is
        // checked before use.
        let raw = unsafe {
            nix::libc::socket(
                nix::libc::AF_PACKET,
                nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC | nix::libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(fail("packet socket", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: nix::libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = nix::libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index as i32;
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            nix::libc::bind(
                fd.as_raw_fd(),
                (&addr as *const nix::libc::sockaddr_ll).cast(),
                std::mem::size_of::<nix::libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(fail("bind packet socket", std::io::Error::last_os_error()));
        }
        Ok(UnicastListener { fd: Some(fd) })
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    /// The next frame sent to our MAC (not broadcast), without blocking.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        loop {
            // SAFETY: as for bind; zeroed sockaddr_ll is valid.
            let mut from: nix::libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<nix::libc::sockaddr_ll>() as u32;
            // SAFETY: `buf` is writable for its length; `from`/`from_len`
            // describe a writable sockaddr_ll.
            let n = unsafe {
                nix::libc::recvfrom(
                    self.raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut nix::libc::sockaddr_ll).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                return None;
            }
            if from.sll_pkttype == nix::libc::PACKET_HOST {
                return Some(n as usize);
            }
        }
    }
}

/// Waits until one of the descriptors is readable or `timeout` passes.
fn wait_readable(fds: &[std::os::fd::RawFd], timeout: Duration) {
    let mut polls: Vec<nix::libc::pollfd> =
        fds.iter().map(|&fd| nix::libc::pollfd { fd, events: nix::libc::POLLIN, revents: 0 }).collect();
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: `polls` is a valid array of pollfd for its length.
    unsafe { nix::libc::poll(polls.as_mut_ptr(), polls.len() as nix::libc::nfds_t, ms) };
}

/// Opens the client socket for `interface` in the calling thread's network
/// namespace.
pub fn dhcp_socket(interface: &str) -> Result<UdpSocket, DhcpIoError> {
    let fail =
        |step: &'static str, source: nix::Error| DhcpIoError::Socket { interface: interface.into(), step, source };
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

/// The log line of a DHCPNAK; the server's message (option 56) is escaped.
fn nak_line(interface: &str, server: Option<Ipv4Addr>, from: &str, message: Option<&str>) -> String {
    format!(
        "{interface}: DHCPNAK from {}{}; starting over",
        server.map(|s| s.to_string()).unwrap_or_else(|| from.to_string()),
        message.map(|m| format!(" ({})", Escaped(m))).unwrap_or_default()
    )
}

/// Sends a DHCPRELEASE of `lease` (configured on `interface`) to its server, from
/// the leased address. Returns `Ok(false)` when the lease names no server.
pub fn send_release(interface: &str, mac: Mac, lease: &Lease) -> Result<bool, DhcpIoError> {
    let (Some(server), Some(bytes)) =
        (lease.server_id, super::dhcp::release_message(&mac, super::random::u32_now(0), lease))
    else {
        return Ok(false);
    };
    let fail = |source: std::io::Error| DhcpIoError::Release {
        interface: interface.into(),
        address: lease.address,
        server,
        source,
    };
    let fd = socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail(e.into()))?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail(e.into()))?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(interface)).map_err(|e| fail(e.into()))?;
    socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(lease.address, 68)))
        .map_err(|e| fail(e.into()))?;
    UdpSocket::from(fd).send_to(&bytes, SocketAddrV4::new(server, 67)).map_err(fail)?;
    // The datagram waits in the kernel for the server's MAC (a lease that cannot boot
    // often reached nothing on its link before); the caller removes the address next,
    // and the queued release was seen lost then. Wait for the neighbour, bounded.
    wait_for_neighbour(interface, server, RELEASE_ARP_WAIT);
    Ok(true)
}

/// How long a DHCPRELEASE may wait for the server's MAC before the address goes.
const RELEASE_ARP_WAIT: Duration = Duration::from_secs(1);

fn wait_for_neighbour(interface: &str, address: Ipv4Addr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let table = std::fs::read_to_string("/proc/net/arp").unwrap_or_default();
        if neighbour_resolved(&table, interface, address) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `/proc/net/arp` (`IP address  HW type  Flags  HW address  Mask  Device`)
/// holds a complete entry (ATF_COM, 0x2) for `address` on `interface`.
fn neighbour_resolved(table: &str, interface: &str, address: Ipv4Addr) -> bool {
    const ATF_COM: u32 = 0x2;
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [ip, _, flags, _, _, device] = fields[..] else { return false };
        let complete = u32::from_str_radix(flags.trim_start_matches("0x"), 16).is_ok_and(|f| f & ATF_COM != 0);
        ip.parse() == Ok(address) && device == interface && complete
    })
}

/// Logs what a client event means; returns the lease once bound.
fn log_event(interface: &str, from: &str, started: Instant, event: Event, log: &dyn NetLog) -> Option<Lease> {
    match event {
        // Logged from the client's list of passed-over offers.
        Event::Ignored(Ignored::PassedOver) => {}
        Event::Ignored(why) => log.log(Level::Debug, &format!("{interface}: ignored datagram from {from}: {why:?}")),
        Event::Offered { address, server } => {
            log.log(Level::Info, &format!("{interface}: offer of {address} from {server}"))
        }
        Event::Held { address, server, rapid_commit, window } => {
            log.log(Level::Info, &format!("{interface}: {}", held_line(address, server, rapid_commit, window)))
        }
        Event::Nak { server, message } => log.log(Level::Warn, &nak_line(interface, server, from, message.as_deref())),
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
            return Some(*lease);
        }
    }
    None
}

/// Runs DHCP on `interface` until a lease, `until`, or `cancel` is set, choosing
/// among offers by `policy`. Logs each send with the time to the next one (the
/// visible countdown), and each offer refused or passed over with the reason.
pub fn run_dhcp(
    interface: &str,
    mac: Mac,
    policy: &OfferPolicy,
    until: Instant,
    cancel: &AtomicBool,
    log: &dyn NetLog,
) -> Result<Lease, DhcpIoError> {
    let sock = dhcp_socket(interface)?;
    let _ = sock.set_nonblocking(true);
    let unicast = UnicastListener::open(interface)?;
    let started = Instant::now();
    let m = mac.0;
    let xid = super::random::u32_now(u32::from_be_bytes([m[2], m[3], m[4], m[5]]));
    let mut client = DhcpClient::new(mac, xid, started).with_policy(policy.clone());
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
        if let Some(event) = client.settle(now) {
            log.log(
                Level::Info,
                &format!(
                    "{interface}: no offer with boot information within {:.1} s; taking the one held",
                    OFFER_WINDOW.as_secs_f32()
                ),
            );
            if let Some(lease) = log_event(interface, "the held offer", started, event, log) {
                return Ok(lease);
            }
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
        wait_readable(&[sock.as_raw_fd(), unicast.raw_fd()], wake.saturating_duration_since(now));
        let (len, from) = match sock.recv_from(&mut buf) {
            Ok((len, from)) => (len, from.to_string()),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                let Some(n) = unicast.recv(&mut buf) else {
                    continue;
                };
                let Some(payload) = udp_payload_to_client(&buf[..n]) else {
                    continue;
                };
                let len = payload.len();
                buf.copy_within(payload, 0);
                (len, "a unicast frame".to_string())
            }
            Err(e) => {
                return Err(DhcpIoError::Receive { interface: interface.into(), source: e });
            }
        };
        let event = client.handle(Instant::now(), &buf[..len]);
        for passed in client.take_passed_over() {
            log.log(Level::Info, &format!("{interface}: {passed}"));
        }
        if let Some(lease) = log_event(interface, &from, started, event, log) {
            return Ok(lease);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_release_waits_only_for_a_complete_neighbour_on_its_interface() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     192.168.77.1     0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                     10.77.0.1        0x1         0x2         52:54:00:aa:bb:cc     *        eth0\n\
                     192.168.77.2     0x1         0x2         52:54:00:aa:bb:cd     *        eth1\n";
        assert!(!super::neighbour_resolved(table, "eth0", "192.168.77.1".parse().unwrap()), "incomplete");
        assert!(super::neighbour_resolved(table, "eth0", "10.77.0.1".parse().unwrap()));
        assert!(!super::neighbour_resolved(table, "eth0", "192.168.77.2".parse().unwrap()), "other interface");
        assert!(!super::neighbour_resolved("", "eth0", "10.77.0.1".parse().unwrap()));
    }

    use super::*;

    /// An IPv4/UDP packet as the kernel hands it to a packet socket.
    fn packet(dport: u16, payload: &[u8]) -> Vec<u8> {
        let total = 28 + payload.len();
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 10, 78, 0, 1, 10, 78, 0, 112];
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&67u16.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn udp_payload_for_port_68_is_extracted() {
        let p = packet(68, b"dhcp");
        assert_eq!(udp_payload_to_client(&p).map(|r| &p[r]), Some(&b"dhcp"[..]));
        // Ethernet padding after the IP packet is not payload.
        let mut padded = packet(68, b"x");
        padded.extend_from_slice(&[0; 20]);
        assert_eq!(udp_payload_to_client(&padded).map(|r| &padded[r]), Some(&b"x"[..]));
    }

    #[test]
    fn other_ports_protocols_fragments_and_short_packets_are_refused() {
        assert_eq!(udp_payload_to_client(&packet(67, b"dhcp")), None);
        let mut tcp = packet(68, b"x");
        tcp[9] = 6;
        assert_eq!(udp_payload_to_client(&tcp), None);
        let mut frag = packet(68, b"x");
        frag[6] = 0x20; // more fragments
        assert_eq!(udp_payload_to_client(&frag), None);
        let p = packet(68, b"abc");
        assert_eq!(udp_payload_to_client(&p[..p.len() - 1]), None);
        assert_eq!(udp_payload_to_client(&[]), None);
    }

    #[test]
    fn a_nak_message_is_logged_with_its_controls_escaped() {
        let server = Some(Ipv4Addr::new(10, 77, 0, 1));
        let line = nak_line("eth0", server, "x", Some("no\0\x1b[2J\x08\x7f\ndiskless: forged"));
        assert_eq!(line, r"eth0: DHCPNAK from 10.77.0.1 (no\0\u{1b}[2J\u{8}\u{7f}\ndiskless: forged); starting over");
        assert_eq!(nak_line("eth0", None, "10.77.0.9:67", None), "eth0: DHCPNAK from 10.77.0.9:67; starting over");
    }

    proptest::proptest! {
        #[test]
        fn packet_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let _ = udp_payload_to_client(&bytes);
        }
    }
}
