//! `diskless server check --live`: the A and PTR records of every host, asked of the
//! running DNS servers of its subnet over the network. The PTR question is asked with
//! the boot's own client ([`crate::net::dns::lookup_ptr`]), so the check sees what a
//! booting client will see.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::Lab;
use super::check::{Finding, Records, agree};
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

/// Asks each host's A and PTR records of the DNS servers its subnet hands out (on
/// `port`) and compares them with the lab.
pub fn check_live(lab: &Lab, port: u16, timing: LookupTiming) -> Vec<Finding> {
    let mut records = Records::default();
    let mut findings = Vec::new();
    let mut unanswered = BTreeSet::new();
    let mut asked = BTreeSet::new();
    for host in &lab.hosts {
        let subnet = &lab.file.subnets[host.subnet];
        let servers: Vec<SocketAddr> =
            super::render::dns_servers(lab, subnet).into_iter().map(|a| SocketAddr::from((a, port))).collect();
        asked.extend(servers.iter().copied());
        let fqdn = format!("{}.{}", host.name, subnet.domain);
        match lookup_a(&fqdn, &servers, timing) {
            Ok(addresses) => {
                records.a.insert(fqdn, addresses);
            }
            Err(error) => {
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
                records.ptr.insert(host.address, names.into_iter().collect());
            }
            PtrOutcome::NoRecord { .. } => {}
            PtrOutcome::Failed(error) => {
                unanswered.insert(host.name.clone());
                let question = format!("PTR {}", host.address);
                findings.push(Finding::Live { host: host.name.clone(), question, error: error.to_string() });
            }
        }
    }
    let source = format!("the answers of {}", asked.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
    let disagreeing = agree(lab, &records, &source);
    findings.extend(
        disagreeing.into_iter().filter(|f| !matches!(f, Finding::Record { host, .. } if unanswered.contains(host))),
    );
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
        port
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
        let mut a = BTreeMap::new();
        let mut ptr = BTreeMap::new();
        for host in &lab.hosts {
            let fqdn = format!("{}.example.edu", host.name);
            a.insert(fqdn.clone(), host.address);
            ptr.insert(ptr_name(host.address), fqdn);
        }
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

    #[test]
    fn a_dns_server_that_does_not_answer_is_named_once_per_question() {
        let lab = local_lab();
        // A bound socket that never answers.
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = silent.local_addr().unwrap().port();
        let timing = LookupTiming { per_try: Duration::from_millis(50), rounds: 1 };
        let findings: Vec<String> = check_live(&lab, port, timing).iter().map(ToString::to_string).collect();
        assert_eq!(findings.len(), 6, "an A and a PTR question per host, nothing else: {findings:#?}");
        assert!(
            findings[0].starts_with(
                "host \"lab3-12\": the DNS server gave no answer to A lab3-12.example.edu: no answer from 127.0.0.1:"
            ),
            "{}",
            findings[0]
        );
        drop(silent);
    }
}
