//! DHCPINFORM (RFC 2131 §3.4, §4.4.3): the DNS servers for a static `ip=` that
//! names none, asked of the network without taking a lease.
//!
//! pxelinux's `IPAPPEND 1` appends `ip=client:server:gw:mask` and nothing else, so
//! a machine booted by the HOWTO's entry knows its address but no DNS server, and
//! without one reverse DNS cannot name it. The DHCP server that just served the
//! PXE firmware knows the DNS servers: an INFORM carries our configured address in
//! `ciaddr`, no requested address and no server identifier, and asks for the DNS
//! servers, the domain and the host name; the server answers with a DHCPACK
//! unicast to that address and records no lease.
//!
//! The first try goes to the boot server named in `ip=` (with pxelinux it is the
//! server that answered the firmware, usually the DHCP server itself); later tries
//! are broadcast, which also reaches a DHCP server on another machine than the
//! TFTP server. The tries are few and short: a network without an answering server
//! costs [`InformTiming::default`]'s total once, then the image's `resolv.conf` is
//! the fallback (see [`super::resolv`]).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use serde::{Deserialize, Serialize};

use super::config::Mac;
use super::dhcp::{self, Ignored};
use super::dhcp_io::{self, DhcpIoError};
use super::log::{Level, NetLog};

/// Options asked for in the INFORM's parameter request list: only what naming the
/// machine needs.
const REQUESTED: [OptionCode; 3] = [OptionCode::DomainNameServer, OptionCode::DomainName, OptionCode::Hostname];

/// How long each try waits for its DHCPACK; the number of entries is the number of tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InformTiming {
    pub waits: Vec<Duration>,
}

impl Default for InformTiming {
    /// Three tries, 3.5 s in all: a server on the segment answers in milliseconds, and
    /// a segment without one should not hold the boot long before the image's
    /// `resolv.conf` is tried.
    fn default() -> Self {
        InformTiming { waits: vec![Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)] }
    }
}

/// What a DHCPACK to our INFORM told us.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InformAck {
    /// The server identifier (option 54), else the datagram's source address.
    pub server: Ipv4Addr,
    /// Option 6, without unusable addresses (0.0.0.0, broadcast).
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15.
    pub domain_name: Option<String>,
    /// Option 12.
    pub host_name: Option<String>,
}

/// Errors of one INFORM exchange.
#[derive(Debug, thiserror::Error)]
pub enum InformError {
    /// The DHCP client socket could not be set up.
    #[error("DHCPINFORM: {0}")]
    Socket(#[source] DhcpIoError),
    /// Receiving failed for another reason than a timeout.
    #[error("DHCPINFORM on {interface}: receive failed: {source}")]
    Receive { interface: String, source: std::io::Error },
    /// No usable DHCPACK after all tries.
    #[error(
        "DHCPINFORM on {interface}: no DHCPACK after {tries} tries in {} ms ({ignored} other datagrams ignored); \
         a DHCP server answering DHCPINFORM (ISC dhcpd: `authoritative;`) or the dns0 field of ip= gives the DNS server",
        .waited.as_millis()
    )]
    NoAnswer { interface: String, tries: usize, waited: Duration, ignored: u32 },
}

/// The DHCPINFORM datagram for `address` (our configured, static address).
pub fn build_inform(xid: u32, mac: &Mac, address: Ipv4Addr) -> Vec<u8> {
    let mut msg = dhcp::blank_request(xid, mac);
    // No broadcast flag: the server answers ciaddr, which is configured.
    msg.set_ciaddr(address);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Inform));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&mac.0);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::ClassIdentifier(dhcp::vendor_class().into_bytes()));
    opts.insert(DhcpOption::ParameterRequestList(REQUESTED.to_vec()));
    opts.insert(DhcpOption::MaxMessageSize(1472));
    let mut bytes = msg.to_vec().unwrap_or_default();
    // As for every other request: some BOOTP-era relays drop datagrams under 300 bytes.
    if bytes.len() < dhcproto::v4::MIN_PACKET_SIZE {
        bytes.resize(dhcproto::v4::MIN_PACKET_SIZE, 0);
    }
    bytes
}

/// The answer to our INFORM in `bytes` from `source`, or why the datagram is not it.
/// Never panics, whatever the bytes.
pub fn parse_ack(bytes: &[u8], xid: u32, mac: &Mac, source: Ipv4Addr) -> Result<InformAck, Ignored> {
    dhcp::precheck(bytes).map_err(Ignored::Malformed)?;
    let msg = Message::decode(&mut Decoder::new(bytes)).map_err(|e| Ignored::Malformed(e.into()))?;
    if msg.opcode() != Opcode::BootReply {
        return Err(Ignored::NotReply);
    }
    if msg.xid() != xid {
        return Err(Ignored::WrongXid { got: msg.xid() });
    }
    // chaddr starts at byte 28; precheck guaranteed the length.
    if msg.htype() != HType::Eth || msg.hlen() != 6 || bytes[28..34] != mac.0 {
        return Err(Ignored::WrongChaddr);
    }
    match msg.opts().msg_type() {
        Some(MessageType::Ack) => {}
        Some(kind) => return Err(Ignored::Unexpected(format!("{kind:?} to DHCPINFORM"))),
        None => return Err(Ignored::Unexpected("no DHCP message type (BOOTP reply)".into())),
    }
    let mut ack = InformAck { server: source, dns_servers: Vec::new(), domain_name: None, host_name: None };
    for (_, opt) in msg.opts().iter() {
        match opt {
            DhcpOption::ServerIdentifier(s) if !s.is_unspecified() => ack.server = *s,
            DhcpOption::DomainNameServer(d) => {
                ack.dns_servers = d.iter().copied().filter(|a| !a.is_unspecified() && !a.is_broadcast()).collect()
            }
            DhcpOption::DomainName(d) => ack.domain_name = dhcp::opt_text(d),
            DhcpOption::Hostname(h) => ack.host_name = dhcp::opt_text(h),
            _ => {}
        }
    }
    Ok(ack)
}

/// Where try `n` (from 0) goes: the boot server first, then broadcast.
fn destination(n: usize, server: Option<Ipv4Addr>) -> Ipv4Addr {
    match server {
        Some(s) if n == 0 && !s.is_unspecified() && !s.is_broadcast() => s,
        _ => Ipv4Addr::BROADCAST,
    }
}

/// Sends DHCPINFORM for `address` on `interface` (configured already) and waits for
/// the DHCPACK, each try logged.
pub fn run_inform(
    interface: &str,
    mac: Mac,
    address: Ipv4Addr,
    server: Option<Ipv4Addr>,
    timing: &InformTiming,
    log: &dyn NetLog,
) -> Result<InformAck, InformError> {
    let sock = dhcp_io::dhcp_socket(interface).map_err(InformError::Socket)?;
    let m = mac.0;
    let xid = super::random::u32_now(u32::from_be_bytes([m[2], m[3], m[4], m[5]]));
    let request = build_inform(xid, &mac, address);
    let started = Instant::now();
    let mut ignored = 0u32;
    let mut buf = vec![0u8; 1500];
    for (n, wait) in timing.waits.iter().enumerate() {
        let to = destination(n, server);
        match sock.send_to(&request, SocketAddr::V4(SocketAddrV4::new(to, 67))) {
            Ok(_) => log.log(
                Level::Info,
                &format!(
                    "{interface}: DHCPINFORM for {address} sent to {to} (try {} of {}), waiting {} ms for the DNS servers",
                    n + 1,
                    timing.waits.len(),
                    wait.as_millis()
                ),
            ),
            Err(e) => log.log(Level::Warn, &format!("{interface}: sending DHCPINFORM to {to} failed: {e}")),
        }
        let until = Instant::now() + *wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A zero timeout would mean "block forever".
            let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
            let (len, from) = match sock.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(InformError::Receive { interface: interface.into(), source }),
            };
            let source = match from {
                SocketAddr::V4(a) => *a.ip(),
                SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            match parse_ack(&buf[..len], xid, &mac, source) {
                Ok(ack) => return Ok(ack),
                Err(why) => {
                    ignored += 1;
                    log.log(Level::Debug, &format!("{interface}: ignored datagram from {from}: {why:?}"));
                }
            }
        }
    }
    Err(InformError::NoAnswer {
        interface: interface.into(),
        tries: timing.waits.len(),
        waited: started.elapsed(),
        ignored,
    })
}

#[cfg(test)]
mod tests {
    use dhcproto::v4::Flags;
    use proptest::prelude::*;

    use super::*;

    const MAC: Mac = Mac([0x52, 0x54, 0, 0x77, 3, 0x12]);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 112);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const XID: u32 = 0x1234_5678;

    fn ack(xid: u32, chaddr: &[u8], kind: MessageType, extra: &[DhcpOption]) -> Vec<u8> {
        let mut msg = Message::new_with_id(xid, ADDR, Ipv4Addr::UNSPECIFIED, SERVER, Ipv4Addr::UNSPECIFIED, chaddr);
        msg.set_opcode(Opcode::BootReply);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in extra {
            msg.opts_mut().insert(o.clone());
        }
        msg.to_vec().unwrap()
    }

    fn full_ack() -> Vec<u8> {
        ack(
            XID,
            &MAC.0,
            MessageType::Ack,
            &[
                DhcpOption::ServerIdentifier(SERVER),
                DhcpOption::DomainNameServer(vec![SERVER, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 77, 0, 2)]),
                DhcpOption::DomainName("lab.example".into()),
                DhcpOption::Hostname("lab3-12".into()),
            ],
        )
    }

    #[test]
    fn inform_carries_our_address_in_ciaddr_and_asks_for_dns_domain_and_host_name_only() {
        let msg = Message::decode(&mut Decoder::new(&build_inform(XID, &MAC, ADDR))).unwrap();
        assert_eq!(msg.opcode(), Opcode::BootRequest);
        assert_eq!(msg.xid(), XID);
        assert_eq!(msg.ciaddr(), ADDR);
        assert_eq!(msg.yiaddr(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(msg.chaddr(), &MAC.0);
        assert_eq!(msg.flags(), Flags::default(), "no broadcast flag: the server answers ciaddr");
        let opts = msg.opts();
        assert_eq!(opts.msg_type(), Some(MessageType::Inform));
        assert_eq!(
            opts.get(OptionCode::ParameterRequestList),
            Some(&DhcpOption::ParameterRequestList(REQUESTED.to_vec()))
        );
        let codes: Vec<u8> = REQUESTED.iter().map(|c| u8::from(*c)).collect();
        assert_eq!(codes, [6, 15, 12]);
        // RFC 2131 §4.4.3: no requested address, no server identifier, no lease time.
        for absent in [OptionCode::RequestedIpAddress, OptionCode::ServerIdentifier, OptionCode::AddressLeaseTime] {
            assert!(opts.get(absent).is_none(), "{absent:?} in a DHCPINFORM");
        }
    }

    #[test]
    fn inform_is_padded_to_the_bootp_minimum() {
        assert!(build_inform(XID, &MAC, ADDR).len() >= 300);
    }

    #[test]
    fn ack_gives_dns_servers_domain_host_name_and_server() {
        let got = parse_ack(&full_ack(), XID, &MAC, Ipv4Addr::new(10, 77, 0, 9)).unwrap();
        assert_eq!(
            got,
            InformAck {
                server: SERVER,
                dns_servers: vec![SERVER, Ipv4Addr::new(10, 77, 0, 2)],
                domain_name: Some("lab.example".into()),
                host_name: Some("lab3-12".into()),
            }
        );
    }

    #[test]
    fn ack_without_server_identifier_is_named_after_its_source() {
        let bytes = ack(XID, &MAC.0, MessageType::Ack, &[DhcpOption::DomainNameServer(vec![SERVER])]);
        let got = parse_ack(&bytes, XID, &MAC, Ipv4Addr::new(10, 77, 0, 9)).unwrap();
        assert_eq!(got.server, Ipv4Addr::new(10, 77, 0, 9));
        assert_eq!(got.domain_name, None);
    }

    #[test]
    fn other_clients_answers_naks_offers_and_requests_are_not_the_answer() {
        let other_mac = [2, 0, 0, 0, 0, 9];
        assert!(matches!(
            parse_ack(&ack(XID + 1, &MAC.0, MessageType::Ack, &[]), XID, &MAC, SERVER),
            Err(Ignored::WrongXid { .. })
        ));
        assert!(matches!(
            parse_ack(&ack(XID, &other_mac, MessageType::Ack, &[]), XID, &MAC, SERVER),
            Err(Ignored::WrongChaddr)
        ));
        for kind in [MessageType::Nak, MessageType::Offer] {
            assert!(matches!(parse_ack(&ack(XID, &MAC.0, kind, &[]), XID, &MAC, SERVER), Err(Ignored::Unexpected(_))));
        }
        assert!(matches!(parse_ack(&build_inform(XID, &MAC, ADDR), XID, &MAC, SERVER), Err(Ignored::NotReply)));
        assert!(matches!(parse_ack(&[0; 20], XID, &MAC, SERVER), Err(Ignored::Malformed(_))));
    }

    #[test]
    fn first_try_goes_to_the_boot_server_then_broadcast() {
        let tries: Vec<Ipv4Addr> = (0..3).map(|n| destination(n, Some(SERVER))).collect();
        assert_eq!(tries, [SERVER, Ipv4Addr::BROADCAST, Ipv4Addr::BROADCAST]);
        assert_eq!(destination(0, None), Ipv4Addr::BROADCAST);
        assert_eq!(destination(0, Some(Ipv4Addr::UNSPECIFIED)), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn default_timing_is_short_and_bounded() {
        let total: Duration = InformTiming::default().waits.iter().sum();
        assert!(total <= Duration::from_secs(4), "{total:?}");
    }

    proptest! {
        #[test]
        fn malformed_acks_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_ack(&bytes, XID, &MAC, SERVER);
        }

        #[test]
        fn mutated_acks_never_panic(
            edits in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 1..20),
            cut in 0usize..700,
        ) {
            let mut bytes = full_ack();
            let len = bytes.len();
            for (at, value) in edits {
                bytes[at % len] = value;
            }
            // Past the end (most cuts of the full ACK) nothing is cut.
            bytes.truncate(cut);
            let _ = parse_ack(&bytes, XID, &MAC, SERVER);
        }
    }
}
