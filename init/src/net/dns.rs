//! Reverse DNS (PTR) lookup of the leased address.
//!
//! Message building and answer checking are pure ([`ptr_query`],
//! [`parse_ptr_reply`]); [`lookup_ptr`] sends over a std `UdpSocket` to the
//! servers of the lease, with a per-try timeout, several rounds, and rotation
//! over the servers. Names are returned as text exactly as received (labels
//! joined with dots); whether they make a host name is for
//! [`super::identity`] to decide, so a rejection can be logged with its reason.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::DecodeError;

/// The DNS port, for building server addresses from the lease.
pub const DNS_PORT: u16 = 53;

/// What a server said about the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtrAnswer {
    /// PTR targets, as text, in answer order.
    Names(Vec<String>),
    /// NXDOMAIN, or NOERROR without a PTR record.
    NoRecord,
}

/// Why a datagram was not accepted as the answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplyRejected {
    #[error("malformed DNS message: {0}")]
    Malformed(#[source] DecodeError),
    #[error("answer with id {got:#06x} to another query")]
    WrongId { got: u16 },
    #[error("a query, not a response")]
    NotResponse,
    #[error("answer to another question ({name} {record_type})")]
    WrongQuestion { name: Name, record_type: RecordType },
    #[error("answer to another question ({count} questions)")]
    QuestionCount { count: usize },
    /// Truncated: a PTR answer always fits in UDP, so this is a broken server.
    #[error("truncated answer")]
    Truncated,
    /// SERVFAIL, REFUSED, ...: ask the next server.
    #[error("server answered {0:?}")]
    Rcode(ResponseCode),
}

/// Builds the PTR query for `addr` with message id `id` (recursion desired,
/// so a forwarding server resolves it for us).
pub fn ptr_query(id: u16, addr: Ipv4Addr) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from(addr), RecordType::PTR));
    // Encoding a message we built from an address cannot fail; an empty
    // datagram would only cost one unanswered try.
    msg.to_vec().unwrap_or_default()
}

/// Text of a wire name: labels joined by dots, non-UTF-8 bytes as `\xNN`
/// ([`crate::text::lossy`]), no trailing dot. A label that itself contains a
/// dot shows up as an extra dot, so validation sees it. Control characters
/// are kept: validation rejects them, and whoever prints the name escapes them.
pub fn name_text(name: &Name) -> String {
    let labels: Vec<String> = name.iter().map(crate::text::lossy).collect();
    labels.join(".")
}

/// Checks a reply against the query (`id`, question) and extracts the PTR
/// targets. Follows one CNAME from the question name, as RFC 2317 classless
/// delegation uses.
pub fn parse_ptr_reply(bytes: &[u8], id: u16, addr: Ipv4Addr) -> Result<PtrAnswer, ReplyRejected> {
    let msg = Message::from_vec(bytes).map_err(ReplyRejected::Malformed)?;
    if msg.metadata.id != id {
        return Err(ReplyRejected::WrongId { got: msg.metadata.id });
    }
    if msg.metadata.message_type != MessageType::Response {
        return Err(ReplyRejected::NotResponse);
    }
    let qname = Name::from(addr);
    match msg.queries.as_slice() {
        [q] if q.name() == &qname && q.query_type() == RecordType::PTR && q.query_class() == DNSClass::IN => {}
        [q] => {
            return Err(ReplyRejected::WrongQuestion { name: q.name().clone(), record_type: q.query_type() });
        }
        qs => return Err(ReplyRejected::QuestionCount { count: qs.len() }),
    }
    if msg.metadata.truncation {
        return Err(ReplyRejected::Truncated);
    }
    match msg.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(PtrAnswer::NoRecord),
        other => return Err(ReplyRejected::Rcode(other)),
    }
    let mut owner = qname;
    for r in &msg.answers {
        if r.name == owner
            && let RData::CNAME(target) = &r.data
        {
            owner = target.0.clone();
            break;
        }
    }
    let names: Vec<String> = msg
        .answers
        .iter()
        .filter(|r| r.name == owner)
        .filter_map(|r| match &r.data {
            RData::PTR(p) => Some(name_text(&p.0)),
            _ => None,
        })
        .collect();
    Ok(if names.is_empty() { PtrAnswer::NoRecord } else { PtrAnswer::Names(names) })
}

/// Outcome of a lookup over all servers.
#[derive(Debug)]
pub enum PtrOutcome {
    /// A server answered with names (not yet validated).
    Names { names: Vec<String>, server: SocketAddr },
    /// A server answered that there is no PTR record.
    NoRecord { server: SocketAddr },
    /// Nobody gave a usable answer; says what went wrong last.
    Failed(DnsError),
}

/// Errors of the lookup driver.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("reverse lookup of {addr}: the lease names no DNS server (DHCP option 6)")]
    NoServers { addr: Ipv4Addr },
    #[error("reverse lookup: cannot open a UDP socket: {source}")]
    Socket { source: io::Error },
    /// Every try timed out or was rejected.
    #[error(
        "reverse lookup of {addr}: no usable answer from {} after {tries} tries (last: {last}); check the DNS servers of the DHCP lease",
        joined(.servers)
    )]
    NoAnswer {
        addr: Ipv4Addr,
        servers: Vec<SocketAddr>,
        tries: u32,
        #[source]
        last: TryError,
    },
}

/// Why one try of a lookup failed; the lookup goes on with the next server.
#[derive(Debug, thiserror::Error)]
pub enum TryError {
    #[error("no try made")]
    NotTried,
    #[error("reverse lookup: sending to {server} failed: {source}")]
    Send { server: SocketAddr, source: io::Error },
    #[error("no answer from {server} within {per_try:?}")]
    Timeout { server: SocketAddr, per_try: Duration },
    /// An ICMP port unreachable from an earlier send shows up here.
    #[error("receive error after asking {server}: {source}")]
    Receive { server: SocketAddr, source: io::Error },
    #[error("{server}: {reason}")]
    Rejected {
        server: SocketAddr,
        #[source]
        reason: ReplyRejected,
    },
}

fn joined(servers: &[SocketAddr]) -> String {
    servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Timing of a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupTiming {
    /// How long one try waits for its answer.
    pub per_try: Duration,
    /// How many times the whole server list is tried.
    pub rounds: u32,
}

impl Default for LookupTiming {
    fn default() -> Self {
        LookupTiming { per_try: Duration::from_secs(1), rounds: 3 }
    }
}

/// Looks up the PTR record of `addr` at `servers`, rotating over them. The
/// socket is created in the calling thread's network namespace.
pub fn lookup_ptr(addr: Ipv4Addr, servers: &[SocketAddr], timing: LookupTiming, debug: &dyn Fn(&str)) -> PtrOutcome {
    if servers.is_empty() {
        return PtrOutcome::Failed(DnsError::NoServers { addr });
    }
    let sock = match UdpSocket::bind(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))) {
        Ok(s) => s,
        Err(e) => {
            return PtrOutcome::Failed(DnsError::Socket { source: e });
        }
    };
    let mut last = TryError::NotTried;
    let mut tries = 0;
    let mut buf = [0u8; 4096];
    for _ in 0..timing.rounds.max(1) {
        for &server in servers {
            tries += 1;
            let id = super::random::u32_now(tries) as u16;
            if let Err(source) = sock.send_to(&ptr_query(id, addr), server) {
                last = TryError::Send { server, source };
                debug(&last.to_string());
                continue;
            }
            let deadline = Instant::now() + timing.per_try;
            loop {
                let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                    last = TryError::Timeout { server, per_try: timing.per_try };
                    debug(&last.to_string());
                    break;
                };
                let _ = sock.set_read_timeout(Some(left));
                let (len, from) = match sock.recv_from(&mut buf) {
                    Ok(r) => r,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        continue;
                    }
                    Err(source) => {
                        last = TryError::Receive { server, source };
                        debug(&last.to_string());
                        break;
                    }
                };
                if from != server {
                    debug(&format!("ignored DNS datagram from {from} while asking {server}"));
                    continue;
                }
                match parse_ptr_reply(&buf[..len], id, addr) {
                    Ok(PtrAnswer::Names(names)) => return PtrOutcome::Names { names, server },
                    Ok(PtrAnswer::NoRecord) => return PtrOutcome::NoRecord { server },
                    Err(ReplyRejected::WrongId { got }) => {
                        debug(&format!("ignored stale DNS answer from {server} (id {got:#06x})"));
                    }
                    Err(reason) => {
                        last = TryError::Rejected { server, reason };
                        debug(&last.to_string());
                        break;
                    }
                }
            }
        }
    }
    PtrOutcome::Failed(DnsError::NoAnswer { addr, servers: servers.to_vec(), tries, last })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes a name from raw labels, so tests can put bytes on the wire
    /// that no name builder would accept.
    pub(crate) fn wire_name(labels: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l);
        }
        out.push(0);
        out
    }

    /// A reply to `ptr_query(id, addr)` with the given PTR targets written
    /// by hand (rcode in the low bits of the flags).
    pub(crate) fn reply(id: u16, addr: Ipv4Addr, rcode: u8, targets: &[&[&[u8]]]) -> Vec<u8> {
        let query = ptr_query(id, addr);
        let mut out = query[..12].to_vec();
        out[2] = 0x81; // QR, RD
        out[3] = 0x80 | rcode; // RA
        out[6..8].copy_from_slice(&(targets.len() as u16).to_be_bytes());
        out.extend_from_slice(&query[12..]);
        for t in targets {
            out.extend_from_slice(&[0xc0, 12]); // pointer to the question name
            out.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0, 60]); // PTR IN ttl 60
            let name = wire_name(t);
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(&name);
        }
        out
    }

    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 112);

    #[test]
    fn query_asks_ptr_of_reverse_name() {
        let q = Message::from_vec(&ptr_query(0x4242, ADDR)).unwrap();
        assert_eq!(q.metadata.id, 0x4242);
        assert!(q.metadata.recursion_desired);
        assert_eq!(q.queries.len(), 1);
        assert_eq!(q.queries[0].name().to_ascii(), "112.0.77.10.in-addr.arpa.");
        assert_eq!(q.queries[0].query_type(), RecordType::PTR);
    }

    #[test]
    fn answer_names_are_returned_as_text() {
        let r = reply(7, ADDR, 0, &[&[b"lab3-12", b"example", b"edu"]]);
        assert_eq!(parse_ptr_reply(&r, 7, ADDR).unwrap(), PtrAnswer::Names(vec!["lab3-12.example.edu".into()]));
    }

    #[test]
    fn label_with_dots_shows_up_as_empty_labels() {
        let r = reply(7, ADDR, 0, &[&[b"a..b", b"edu"]]);
        assert_eq!(parse_ptr_reply(&r, 7, ADDR).unwrap(), PtrAnswer::Names(vec!["a..b.edu".into()]));
    }

    #[test]
    fn nxdomain_and_empty_answer_mean_no_record() {
        assert_eq!(parse_ptr_reply(&reply(7, ADDR, 3, &[]), 7, ADDR).unwrap(), PtrAnswer::NoRecord);
        assert_eq!(parse_ptr_reply(&reply(7, ADDR, 0, &[]), 7, ADDR).unwrap(), PtrAnswer::NoRecord);
    }

    #[test]
    fn wrong_id_question_flag_and_rcode_are_rejected() {
        let good = reply(7, ADDR, 0, &[&[b"x"]]);
        assert!(matches!(parse_ptr_reply(&good, 8, ADDR), Err(ReplyRejected::WrongId { got: 7 })));
        let other = parse_ptr_reply(&good, 7, Ipv4Addr::new(10, 77, 0, 113)).unwrap_err();
        assert_eq!(other.to_string(), "answer to another question (112.0.77.10.in-addr.arpa. PTR)");
        let mut query_flag = good.clone();
        query_flag[2] &= 0x7f;
        assert!(matches!(parse_ptr_reply(&query_flag, 7, ADDR), Err(ReplyRejected::NotResponse)));
        let servfail = reply(7, ADDR, 2, &[]);
        let rejected = parse_ptr_reply(&servfail, 7, ADDR).unwrap_err();
        assert_eq!(rejected.to_string(), "server answered ServFail");
        let mut truncated = good;
        truncated[2] |= 0x02;
        assert!(matches!(parse_ptr_reply(&truncated, 7, ADDR), Err(ReplyRejected::Truncated)));
        assert!(matches!(parse_ptr_reply(b"\x00\x07", 7, ADDR), Err(ReplyRejected::Malformed(_))));
    }

    #[test]
    fn lookup_without_servers_fails_naming_the_address() {
        let PtrOutcome::Failed(e) = lookup_ptr(ADDR, &[], LookupTiming::default(), &|_| {}) else { panic!() };
        assert!(e.to_string().contains("10.77.0.112"), "{e}");
    }

    #[test]
    fn lookup_ignores_foreign_source_and_wrong_id_then_accepts_the_real_answer() {
        // Loopback only: a fake server and an impostor on 127.0.0.1.
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let impostor = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server_addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (len, client) = server.recv_from(&mut buf).unwrap();
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            assert!(len > 12);
            impostor.send_to(&reply(id, ADDR, 0, &[&[b"evil"]]), client).unwrap();
            server.send_to(&reply(id.wrapping_add(1), ADDR, 0, &[&[b"stale"]]), client).unwrap();
            server.send_to(&reply(id, ADDR, 0, &[&[b"lab3-12", b"example", b"edu"]]), client).unwrap();
        });
        let out = lookup_ptr(ADDR, &[server_addr], LookupTiming::default(), &|_| {});
        t.join().unwrap();
        assert!(
            matches!(&out, PtrOutcome::Names { names, server } if names == &["lab3-12.example.edu"] && *server == server_addr),
            "{out:?}"
        );
    }

    #[test]
    fn lookup_rotates_to_the_next_server_after_a_timeout() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addrs = [silent.local_addr().unwrap(), server.local_addr().unwrap()];
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (_, client) = server.recv_from(&mut buf).unwrap();
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            server.send_to(&reply(id, ADDR, 3, &[]), client).unwrap();
        });
        let timing = LookupTiming { per_try: Duration::from_millis(200), rounds: 1 };
        let out = lookup_ptr(ADDR, &addrs, timing, &|_| {});
        t.join().unwrap();
        drop(silent);
        assert!(matches!(out, PtrOutcome::NoRecord { server } if server == addrs[1]), "{out:?}");
    }

    proptest::proptest! {
        #[test]
        fn reply_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_ptr_reply(&bytes, 7, ADDR);
        }

        #[test]
        fn reply_parser_never_panics_on_mutated_answers(
            edits in proptest::collection::vec((0usize..80, proptest::num::u8::ANY), 1..8),
            cut in 0usize..80,
        ) {
            let mut b = reply(7, ADDR, 0, &[&[b"lab3-12", b"example", b"edu"], &[b"x"]]);
            for (p, v) in edits { if let Some(x) = b.get_mut(p) { *x = v; } }
            b.truncate(cut);
            let _ = parse_ptr_reply(&b, 7, ADDR);
        }
    }
}
