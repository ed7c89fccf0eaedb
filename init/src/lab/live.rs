//! `diskless server check --live`: the A and PTR records of every host, asked of the
//! running DNS servers of its subnet over the network. The PTR question is asked with
//! the boot's own client ([`crate::net::dns::lookup_ptr`]), so the check sees what a
//! booting client will see.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::check::{Finding, Records, agree};
use super::{Lab, LabHost};
use crate::net::dns::{LookupTiming, PtrOutcome, lookup_ptr};

/// Why a live question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{name} is not a DNS name: {message}")]
    Name { name: String, message: String },
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[source] io::Error),
    #[error("no answer from {} within {per_try:?} (tries: {tries})", servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    NoAnswer { servers: Vec<SocketAddr>, per_try: Duration, tries: u32 },
    #[error("{server} answered {rcode:?}")]
    Rcode { server: SocketAddr, rcode: ResponseCode },
}

/// The A records of `fqdn` at `servers` (the first server that answers); empty when
/// the name does not exist.
pub fn lookup_a(fqdn: &str, servers: &[SocketAddr], timing: LookupTiming) -> Result<BTreeSet<Ipv4Addr>, LiveError> {
    let name = Name::from_ascii(format!("{fqdn}."))
        .map_err(|e| LiveError::Name { name: fqdn.into(), message: e.to_string() })?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(LiveError::Socket)?;
    let mut buf = [0u8; 4096];
    let mut tries = 0;
    for _ in 0..timing.rounds.max(1) {
        for &server in servers {
            tries += 1;
            let id = (tries as u16).wrapping_mul(7919) ^ 0x5a5a;
            let mut query = Message::new(id, MessageType::Query, OpCode::Query);
            query.metadata.recursion_desired = true;
            query.add_query(Query::query(name.clone(), RecordType::A));
            if socket.send_to(&query.to_vec().unwrap_or_default(), server).is_err() {
                continue;
            }
            let deadline = Instant::now() + timing.per_try;
            while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
                let _ = socket.set_read_timeout(Some(left));
                let Ok((len, from)) = socket.recv_from(&mut buf) else { break };
                let Ok(reply) = Message::from_vec(&buf[..len]) else { continue };
                if from != server || reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
                    continue;
                }
                return match reply.metadata.response_code {
                    ResponseCode::NoError => Ok(reply
                        .answers
                        .iter()
                        .filter(|r| r.name == name)
                        .filter_map(|r| match &r.data {
                            RData::A(a) => Some(a.0),
                            _ => None,
                        })
                        .collect()),
                    ResponseCode::NXDomain => Ok(BTreeSet::new()),
                    rcode => Err(LiveError::Rcode { server, rcode }),
                };
            }
        }
    }
    Err(LiveError::NoAnswer { servers: servers.to_vec(), per_try: timing.per_try, tries })
}

/// Asks each host's A and PTR records of each DNS server its subnet hands out (on
/// `port`), every server alone, and compares the answers with the lab. Alone, because a
/// client takes the first server that answers: a `[peer]` whose records lag behind is
/// what the lab's clients see exactly when the other server is down.
pub fn check_live(lab: &Lab, port: u16, timing: LookupTiming) -> Vec<Finding> {
    let mut hosts_of: BTreeMap<SocketAddr, Vec<&LabHost>> = BTreeMap::new();
    for host in &lab.hosts {
        for address in super::render::dns_servers(lab, &lab.file.subnets[host.subnet]) {
            hosts_of.entry(SocketAddr::from((address, port))).or_default().push(host);
        }
    }
    hosts_of.into_iter().flat_map(|(server, hosts)| check_server(lab, server, &hosts, timing)).collect()
}

/// [`check_live`] for one DNS server and the hosts it answers for. A server silent from
/// its first question is one finding, not two per host.
fn check_server(lab: &Lab, server: SocketAddr, hosts: &[&LabHost], timing: LookupTiming) -> Vec<Finding> {
    let servers = [server];
    let mut records = Records::default();
    let mut findings = Vec::new();
    let mut unanswered = BTreeSet::new();
    let mut answered = false;
    for host in hosts {
        let fqdn = format!("{}.{}", host.name, lab.file.subnets[host.subnet].domain);
        match lookup_a(&fqdn, &servers, timing) {
            Ok(addresses) => {
                answered = true;
                records.a.insert(fqdn, addresses);
            }
            Err(error @ LiveError::NoAnswer { .. }) if !answered => {
                let question = format!("A {fqdn}");
                findings.push(Finding::LiveServer {
                    server: server.to_string(),
                    question,
                    error: error.to_string(),
                    hosts: hosts.len(),
                });
                return findings;
            }
            Err(error) => {
                // An error answer (REFUSED, SERVFAIL) is an answer: the server is up.
                answered |= matches!(error, LiveError::Rcode { .. });
                unanswered.insert(host.name.clone());
                findings.push(Finding::Live {
                    host: host.name.clone(),
                    question: format!("A {fqdn}"),
                    error: error.to_string(),
                });
            }
        }
        match lookup_ptr(host.address, &servers, timing, &|_| {}) {
            PtrOutcome::Names { names, .. } => {
                answered = true;
                records.ptr.insert(host.address, names.into_iter().collect());
            }
            PtrOutcome::NoRecord { .. } => answered = true,
            PtrOutcome::Failed(error) => {
                unanswered.insert(host.name.clone());
                let question = format!("PTR {}", host.address);
                findings.push(Finding::Live { host: host.name.clone(), question, error: error.to_string() });
            }
        }
    }
    let asked: BTreeSet<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
    let source = format!("the answers of {server}");
    findings.extend(agree(lab, &records, &source).into_iter().filter(|f| match f {
        Finding::Record { host, .. } => asked.contains(host.as_str()) && !unanswered.contains(host),
        _ => true,
    }));
    findings
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::thread;

    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, PTR};

    use super::*;
    use crate::lab::render::ptr_name;
    use crate::lab::tests::EXAMPLE;

    /// A DNS server on 127.0.0.1 answering A and PTR questions from the maps; serves
    /// until `queries` questions were answered.
    fn serve(a: BTreeMap<String, Ipv4Addr>, ptr: BTreeMap<String, String>, queries: usize) -> u16 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        serve_on(socket, a, ptr, queries);
        port
    }

    /// [`serve`] on `socket`.
    fn serve_on(socket: UdpSocket, a: BTreeMap<String, Ipv4Addr>, ptr: BTreeMap<String, String>, queries: usize) {
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            for _ in 0..queries {
                let (len, from) = socket.recv_from(&mut buf).unwrap();
                let query = Message::from_vec(&buf[..len]).unwrap();
                let question = query.queries[0].clone();
                let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
                reply.add_query(question.clone());
                let owner = question.name().to_ascii().trim_end_matches('.').to_string();
                let data = match question.query_type() {
                    RecordType::A => a.get(&owner).map(|a| RData::A(A(*a))),
                    _ => ptr.get(&owner).map(|n| RData::PTR(PTR(Name::from_ascii(format!("{n}.")).unwrap()))),
                };
                match data {
                    Some(data) => {
                        reply.add_answer(Record::from_rdata(question.name().clone(), 60, data));
                    }
                    None => reply.metadata.response_code = ResponseCode::NXDomain,
                }
                socket.send_to(&reply.to_vec().unwrap(), from).unwrap();
            }
        });
    }

    /// The example lab with its DNS on 127.0.0.1.
    fn local_lab() -> Lab {
        Lab::parse(&EXAMPLE.replace("dns = [\"10.77.0.1\"]", "dns = [\"127.0.0.1\"]")).unwrap()
    }

    fn fast() -> LookupTiming {
        LookupTiming { per_try: Duration::from_millis(500), rounds: 2 }
    }

    #[test]
    fn live_answers_that_match_the_lab_are_no_problem_and_a_missing_ptr_names_the_host() {
        let lab = local_lab();
        let (a, mut ptr) = records_of(&lab);
        let port = serve(a.clone(), ptr.clone(), 6);
        assert_eq!(check_live(&lab, port, fast()), []);
        ptr.remove(&ptr_name(Ipv4Addr::new(10, 77, 0, 113)));
        let port = serve(a, ptr, 6);
        let findings: Vec<String> = check_live(&lab, port, fast()).iter().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(
            findings[0].starts_with(&format!(
                "host \"lab3-13\": no PTR record for 10.77.0.113 in the answers of 127.0.0.1:{port}"
            )),
            "{}",
            findings[0]
        );
    }

    /// The A and PTR records of every host of `lab`.
    fn records_of(lab: &Lab) -> (BTreeMap<String, Ipv4Addr>, BTreeMap<String, String>) {
        let mut a = BTreeMap::new();
        let mut ptr = BTreeMap::new();
        for host in &lab.hosts {
            let fqdn = format!("{}.example.edu", host.name);
            a.insert(fqdn.clone(), host.address);
            ptr.insert(ptr_name(host.address), fqdn);
        }
        (a, ptr)
    }

    #[test]
    fn a_silent_dns_server_is_one_finding_that_names_it() {
        let lab = local_lab();
        // A bound socket that never answers.
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = silent.local_addr().unwrap().port();
        let timing = LookupTiming { per_try: Duration::from_millis(50), rounds: 1 };
        let findings: Vec<String> = check_live(&lab, port, timing).iter().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 1, "one line for the server, not two per host: {findings:#?}");
        assert!(
            findings[0].starts_with(&format!(
                "DNS server 127.0.0.1:{port} gave no answer to A lab3-12.example.edu: no answer from 127.0.0.1:{port}"
            )),
            "{}",
            findings[0]
        );
        assert!(findings[0].ends_with("(its other questions, about 3 hosts, were not asked)"), "{}", findings[0]);
        drop(silent);
    }

    #[test]
    fn a_dns_server_that_stops_answering_is_named_once_per_unanswered_question() {
        let lab = local_lab();
        let (a, ptr) = records_of(&lab);
        // Answers lab3-12's two questions, then its socket closes.
        let port = serve(a, ptr, 2);
        let timing = LookupTiming { per_try: Duration::from_millis(200), rounds: 1 };
        let findings: Vec<String> = check_live(&lab, port, timing).iter().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 4, "an A and a PTR question for each of the two other hosts: {findings:#?}");
        assert!(
            findings[0].starts_with("host \"lab3-13\": the DNS server gave no answer to A lab3-13.example.edu"),
            "{}",
            findings[0]
        );
        assert!(findings.iter().all(|f| !f.contains("lab3-12")), "lab3-12 was answered: {findings:#?}");
    }

    #[test]
    fn a_peer_whose_records_lag_behind_is_named_though_the_server_agrees() {
        let lab =
            Lab::parse(&EXAMPLE.replace("dns = [\"10.77.0.1\"]", "dns = [\"127.0.0.1\", \"127.0.0.2\"]")).unwrap();
        let (a, ptr) = records_of(&lab);
        let port = serve(a.clone(), ptr.clone(), 6);
        // The peer on the same port of another loopback address, without lab3-13.
        let mut lagging = (a, ptr);
        lagging.0.remove("lab3-13.example.edu");
        lagging.1.remove(&ptr_name(Ipv4Addr::new(10, 77, 0, 113)));
        let peer = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), port)).expect("127.0.0.2 is loopback too");
        serve_on(peer, lagging.0, lagging.1, 6);
        let findings: Vec<String> = check_live(&lab, port, fast()).iter().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 2, "lab3-13's A and PTR at the peer, nothing at the server: {findings:#?}");
        for finding in &findings {
            assert!(finding.starts_with("host \"lab3-13\": no "), "{finding}");
            assert!(finding.contains(&format!("in the answers of 127.0.0.2:{port}")), "{finding}");
        }
    }

    #[test]
    fn a_server_that_refuses_its_first_question_is_up_and_each_question_is_named() {
        let lab = local_lab();
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = socket.local_addr().unwrap().port();
        // Answers REFUSED once, then its socket closes.
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (len, from) = socket.recv_from(&mut buf).unwrap();
            let query = Message::from_vec(&buf[..len]).unwrap();
            let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
            reply.add_query(query.queries[0].clone());
            reply.metadata.response_code = ResponseCode::Refused;
            socket.send_to(&reply.to_vec().unwrap(), from).unwrap();
        });
        let timing = LookupTiming { per_try: Duration::from_millis(200), rounds: 1 };
        let findings: Vec<String> = check_live(&lab, port, timing).iter().map(ToString::to_string).collect();
        assert!(findings.iter().all(|f| !f.starts_with("DNS server ")), "it answered, so not silent: {findings:#?}");
        assert!(findings[0].contains("A lab3-12.example.edu") && findings[0].contains("Refused"), "{findings:#?}");
        assert_eq!(findings.len(), 6, "each host's A and PTR named: {findings:#?}");
    }
}
