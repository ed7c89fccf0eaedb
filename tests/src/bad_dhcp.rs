//! A scripted DHCP server that answers every request with malformed replies.
//!
//! Each reply is addressed to the asking client (its transaction id and hardware
//! address), so the client must look into it to find it wrong: a reply cut before the
//! end of the BOOTP header, no magic cookie, an option running past the end, no end
//! option, option overload into fields of garbage, options of the wrong length, a
//! message type of no known kind. None of them carries a usable lease; a client that
//! handles them right ignores them all and waits for a good server.
//!
//! The server runs on a thread of the test process that entered the rig's network
//! namespace (`setns` works per thread), bound to port 67 of one interface, so the
//! traffic stays inside the namespace like every other server's.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// The malformed replies, each with what is wrong with it (for the test's messages).
pub const MALFORMATIONS: &[&str] = &[
    "cut before the end of the BOOTP header",
    "no magic cookie",
    "an option longer than the packet",
    "no end option",
    "option overload into sname and file of garbage",
    "a message type option of length 0",
    "a server identifier of 3 bytes",
    "a subnet mask of 5 bytes",
    "message type 200",
];

/// Counts of what the server saw and sent.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU32,
    pub replies: AtomicU32,
}

/// The running server; stops (and joins its thread) on drop.
pub struct BadDhcpServer {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

impl BadDhcpServer {
    /// Starts answering DHCP requests on `interface` of `ns` as `server`.
    pub fn start(ns: &Netns, interface: &str, server: Ipv4Addr) -> Result<BadDhcpServer> {
        let ns_path = std::path::PathBuf::from("/run/netns").join(ns.name());
        let ns_file = std::fs::File::open(&ns_path).map_err(|e| Error::io("open network namespace", &ns_path, e))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (thread_stop, thread_counts, interface) = (stop.clone(), counts.clone(), interface.to_string());
        let thread = std::thread::Builder::new()
            .name("bad-dhcp".into())
            .spawn(move || {
                let socket = match open_socket(&ns_file, &interface) {
                    Ok(socket) => socket,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                serve(&socket, server, &thread_stop, &thread_counts);
            })
            .map_err(|e| Error::io("start the scripted DHCP server's thread for", &ns_path, e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(BadDhcpServer { stop, counts, thread: Some(thread) }),
            Ok(Err(reason)) => Err(Error::Invalid { what: "scripted DHCP server".into(), reason }),
            Err(_) => Err(Error::Invalid { what: "scripted DHCP server".into(), reason: "its thread died".into() }),
        }
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u32 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Malformed replies sent so far.
    pub fn replies(&self) -> u32 {
        self.counts.replies.load(Ordering::Relaxed)
    }

    /// Stops the server and frees port 67 (for the good server).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BadDhcpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn open_socket(ns: &std::fs::File, interface: &str) -> std::result::Result<UdpSocket, String> {
    // SAFETY: setns(2) on a valid namespace descriptor; it changes only this thread's
    // network namespace, and the result is checked.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("setns: {}", std::io::Error::last_os_error()));
    }
    // A UDP socket created after setns lives in the rig's namespace.
    let socket = bound_socket(interface)?;
    socket.set_broadcast(true).map_err(|e| format!("SO_BROADCAST: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(socket)
}

/// A socket on 0.0.0.0:67 bound to `interface` (broadcasts to a client without an
/// address leave through that interface only).
fn bound_socket(interface: &str) -> std::result::Result<UdpSocket, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let socket = unsafe { UdpSocket::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: the option value points at a c_int of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("SO_REUSEADDR: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the option value points at the interface name's bytes, of the length given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_ptr().cast(),
            interface.len() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("SO_BINDTODEVICE {interface}: {}", std::io::Error::last_os_error()));
    }
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67);
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: `sin` is a valid sockaddr_in and the length is its size.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(format!("bind 0.0.0.0:67: {}", std::io::Error::last_os_error()));
    }
    Ok(socket)
}

fn serve(socket: &UdpSocket, server: Ipv4Addr, stop: &AtomicBool, counts: &Counts) {
    let mut buf = [0u8; 1500];
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, _)) = socket.recv_from(&mut buf) else { continue };
        let Some((xid, chaddr)) = request_of(&buf[..n]) else { continue };
        counts.requests.fetch_add(1, Ordering::Relaxed);
        for reply in malformed_replies(xid, chaddr, server) {
            if socket.send_to(&reply, to).is_ok() {
                counts.replies.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The transaction id and hardware address of a BOOTREQUEST.
fn request_of(packet: &[u8]) -> Option<([u8; 4], [u8; 6])> {
    if packet.len() < 240 || packet[0] != 1 {
        return None;
    }
    Some((packet[4..8].try_into().ok()?, packet[28..34].try_into().ok()?))
}

const COOKIE: [u8; 4] = [99, 130, 83, 99];

/// A BOOTREPLY header for the client offering 10.77.0.150, without options.
fn header(xid: [u8; 4], chaddr: [u8; 6], server: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0u8; 236];
    p[0] = 2; // BOOTREPLY
    p[1] = 1; // Ethernet
    p[2] = 6;
    p[4..8].copy_from_slice(&xid);
    p[10] = 0x80; // broadcast flag
    p[16..20].copy_from_slice(&[10, 77, 0, 150]);
    p[20..24].copy_from_slice(&server.octets());
    p[28..34].copy_from_slice(&chaddr);
    p
}

/// One reply per entry of [`MALFORMATIONS`], in that order.
pub fn malformed_replies(xid: [u8; 4], chaddr: [u8; 6], server: Ipv4Addr) -> Vec<Vec<u8>> {
    let base = header(xid, chaddr, server);
    let id = server.octets();
    let offer = |options: &[u8]| {
        let mut p = base.clone();
        p.extend_from_slice(&COOKIE);
        p.extend_from_slice(options);
        p
    };
    let good_start = [&[53u8, 1, 2][..], &[54, 4, id[0], id[1], id[2], id[3]]].concat();
    let mut overload = base.clone();
    // sname (44..108) and file (108..236) said to hold options, filled with junk whose
    // lengths run past their fields.
    overload[44..108].fill(0x33);
    overload[108..236].fill(0xfe);
    overload.extend_from_slice(&COOKIE);
    overload.extend_from_slice(&[&good_start[..], &[52, 1, 3, 255]].concat());
    vec![
        base[..200].to_vec(),
        [&base[..], &good_start[..], &[255]].concat(),
        offer(&[&good_start[..], &[1, 4, 255, 255, 255, 0, 12, 200, b'a', b'b', b'c']].concat()),
        offer(&[&good_start[..], &[1, 4, 255, 255, 255, 0]].concat()),
        overload,
        offer(&[53, 0, 54, 4, id[0], id[1], id[2], id[3], 255]),
        offer(&[53, 1, 2, 54, 3, id[0], id[1], id[2], 255]),
        offer(&[&good_start[..], &[1, 5, 255, 255, 255, 0, 0, 255]].concat()),
        offer(&[53, 1, 200, 54, 4, id[0], id[1], id[2], id[3], 255]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reply_per_malformation_each_for_the_asking_client() {
        let replies = malformed_replies([1, 2, 3, 4], [0x52, 0x54, 0, 0x77, 3, 0x12], Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(replies.len(), MALFORMATIONS.len());
        for (reply, what) in replies.iter().zip(MALFORMATIONS) {
            assert_eq!(&reply[4..8], &[1, 2, 3, 4], "{what}: xid");
            if reply.len() >= 34 {
                assert_eq!(&reply[28..34], &[0x52, 0x54, 0, 0x77, 3, 0x12], "{what}: chaddr");
            }
        }
        assert!(replies[0].len() < 236, "the first is cut inside the header");
        assert_eq!(&replies[1][236..240], &[53, 1, 2, 54], "the second has options where the cookie belongs");
    }

    #[test]
    fn requests_are_recognised_by_op_and_length() {
        let mut request = vec![0u8; 300];
        request[0] = 1;
        request[4..8].copy_from_slice(&[9, 9, 9, 9]);
        request[28..34].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(request_of(&request), Some(([9, 9, 9, 9], [1, 2, 3, 4, 5, 6])));
        request[0] = 2;
        assert_eq!(request_of(&request), None, "a reply is not a request");
        assert_eq!(request_of(&[1; 100]), None, "too short");
    }
}
