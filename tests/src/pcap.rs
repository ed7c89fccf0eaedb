//! What a boot costs the network and the server, from a capture on the lab's bridge
//! (`tcpdump -w`, classic pcap, Ethernet): frames and bytes by protocol, the RPC calls
//! by program and procedure (NFSv3 by name; NFSv4 as COMPOUND), and the
//! retransmissions a loaded server causes (DHCP messages, RPC calls and TCP segments
//! sent again). Used by `qemu/bench-storm`.
//!
//! Protocols are told apart by port: DHCP 67/68, DNS 53, TFTP 69 and the transfers
//! that follow a request to 69 (between the same client port and the server's
//! ephemeral one), HTTP 80, rpcbind 111, NFS 2049, syslog 514, and ONC RPC on any
//! other TCP port once a call on that connection names its program (mountd, NLM,
//! statd). Everything else counts as `other`, ARP as `ARP`.
//!
//! RPC over TCP is read by its record marks, following each connection's sequence
//! numbers; a segment before the expected sequence number is a retransmission and is
//! counted as one, a gap (a frame the capture missed) restarts the reading at the next
//! segment. Only the call header is needed (xid, program, version, procedure), so the
//! arguments are skipped without decoding.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::process::ChildGuard;

use crate::error::{Error, Result};

/// Frames and bytes (as on the wire) of one protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Volume {
    pub frames: u64,
    pub bytes: u64,
}

impl Volume {
    fn add(&mut self, bytes: u32) {
        self.frames += 1;
        self.bytes += u64::from(bytes);
    }
}

/// What a capture holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// By protocol name ("DHCP", "DNS", "TFTP", "HTTP", "NFS", "RPCBIND", "MOUNT", ...).
    pub protocols: BTreeMap<String, Volume>,
    /// RPC calls by "PROGRAM PROCEDURE" (e.g. "NFSv3 READ", "MOUNTv3 MNT").
    pub rpc_calls: BTreeMap<String, u64>,
    /// DHCP client messages sent again (same transaction and message type).
    pub dhcp_retransmissions: u64,
    /// RPC calls sent again (same client, connection side and xid).
    pub rpc_retransmissions: u64,
    /// TCP segments with data sent again (sequence number below the expected one).
    pub tcp_retransmissions: u64,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap file (magic {0:#010x}); write captures with tcpdump -w")]
    Magic(u32),
    #[error("link type {0} is not Ethernet; capture on the bridge (tcpdump -i br0)")]
    LinkType(u32),
    #[error("truncated at byte {0}")]
    Truncated(usize),
}

/// Reads the capture at `path`, `server` being the lab server's address.
pub fn read_file(path: &Path, server: Ipv4Addr) -> Result<Traffic> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read capture", path, e))?;
    parse(&bytes, server)
        .map_err(|e| Error::Invalid { what: format!("capture {}", path.display()), reason: e.to_string() })
}

/// Parses a whole capture.
pub fn parse(bytes: &[u8], server: Ipv4Addr) -> std::result::Result<Traffic, PcapError> {
    let magic = u32_at(bytes, 0, false).ok_or(PcapError::Truncated(0))?;
    let big_endian = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => false,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
        _ => return Err(PcapError::Magic(magic)),
    };
    let link = u32_at(bytes, 20, big_endian).ok_or(PcapError::Truncated(20))?;
    if link != 1 {
        return Err(PcapError::LinkType(link));
    }
    let mut reader = Reader {
        server,
        traffic: Traffic::default(),
        flows: HashMap::new(),
        tftp_clients: HashSet::new(),
        rpc_ports: HashMap::new(),
        dhcp_seen: HashSet::new(),
        rpc_seen: HashSet::new(),
    };
    let mut at = 24;
    while at < bytes.len() {
        let captured = u32_at(bytes, at + 8, big_endian).ok_or(PcapError::Truncated(at))? as usize;
        let wire = u32_at(bytes, at + 12, big_endian).ok_or(PcapError::Truncated(at))?;
        let frame = bytes.get(at + 16..at + 16 + captured).ok_or(PcapError::Truncated(at))?;
        reader.frame(frame, wire);
        at += 16 + captured;
    }
    Ok(reader.traffic)
}

fn u32_at(bytes: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(if big_endian { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) })
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// One direction of a TCP connection: (source, source port, destination, port).
type FlowKey = (Ipv4Addr, u16, Ipv4Addr, u16);

#[derive(Debug, Default)]
struct Flow {
    /// The sequence number of the next new byte, once a segment with data was seen.
    next_seq: Option<u32>,
    /// Bytes left of the current RPC record fragment; `None` when out of step.
    left_in_record: Option<u32>,
}

#[derive(Debug)]
struct Reader {
    server: Ipv4Addr,
    traffic: Traffic,
    flows: HashMap<FlowKey, Flow>,
    /// Client (address, port) pairs that asked the server's TFTP port for a file.
    tftp_clients: HashSet<(Ipv4Addr, u16)>,
    /// Server TCP/UDP ports whose RPC program a call named.
    rpc_ports: HashMap<u16, &'static str>,
    dhcp_seen: HashSet<(u32, u8)>,
    rpc_seen: HashSet<(Ipv4Addr, u16, u32)>,
}

const TCP: u8 = 6;
const UDP: u8 = 17;

impl Reader {
    fn frame(&mut self, frame: &[u8], wire: u32) {
        let protocol = self.classify(frame);
        self.traffic.protocols.entry(protocol.to_string()).or_default().add(wire);
    }

    fn classify(&mut self, frame: &[u8]) -> &'static str {
        match be16(frame, 12) {
            Some(0x0806) => return "ARP",
            Some(0x86dd) => return "IPv6",
            Some(0x0800) => {}
            _ => return "other",
        }
        let ip = &frame[14..];
        let Some(&version_ihl) = ip.first() else { return "other" };
        let header = usize::from(version_ihl & 0x0f) * 4;
        let (Some(&proto), Some(total)) = (ip.get(9), be16(ip, 2)) else { return "other" };
        let (Some(src), Some(dst)) = (ip.get(12..16), ip.get(16..20)) else { return "other" };
        let src = Ipv4Addr::new(src[0], src[1], src[2], src[3]);
        let dst = Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3]);
        let end = usize::from(total).min(ip.len());
        let Some(l4) = ip.get(header..end) else { return "other" };
        match proto {
            UDP => self.udp(src, dst, l4),
            TCP => self.tcp(src, dst, l4),
            1 => "ICMP",
            _ => "other",
        }
    }

    fn udp(&mut self, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> &'static str {
        let (Some(sport), Some(dport)) = (be16(l4, 0), be16(l4, 2)) else { return "other" };
        let payload = l4.get(8..).unwrap_or_default();
        let (client, client_port, server_port) =
            if dst == self.server { (src, sport, dport) } else { (dst, dport, sport) };
        match (sport, dport) {
            (67 | 68, 67 | 68) => {
                self.dhcp(payload);
                return "DHCP";
            }
            (53, _) | (_, 53) => return "DNS",
            (514, _) | (_, 514) => return "syslog",
            _ => {}
        }
        if dst == self.server && dport == 69 {
            self.tftp_clients.insert((src, sport));
            return "TFTP";
        }
        if self.tftp_clients.contains(&(client, client_port)) {
            return "TFTP";
        }
        if dst == self.server {
            self.rpc_call(src, sport, server_port, payload);
        }
        self.rpc_port_name(server_port)
    }

    fn tcp(&mut self, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> &'static str {
        let (Some(sport), Some(dport), Some(seq)) = (be16(l4, 0), be16(l4, 2), be32(l4, 4)) else { return "other" };
        let offset = usize::from(l4.get(12).copied().unwrap_or(0) >> 4) * 4;
        let payload = l4.get(offset..).unwrap_or_default();
        let server_port = if dst == self.server { dport } else { sport };
        if !payload.is_empty() {
            let flow = self.flows.entry((src, sport, dst, dport)).or_default();
            let retransmitted = match flow.next_seq {
                // Serial-number comparison: before the expected byte means sent again.
                Some(next) if (seq.wrapping_sub(next) as i32) < 0 => true,
                Some(next) if seq != next => {
                    flow.left_in_record = None;
                    false
                }
                _ => false,
            };
            if retransmitted {
                self.traffic.tcp_retransmissions += 1;
            } else {
                flow.next_seq = Some(seq.wrapping_add(payload.len() as u32));
                if dst == self.server && server_port != 80 {
                    self.rpc_records(src, sport, dport, payload);
                }
            }
        }
        match server_port {
            80 => "HTTP",
            port => self.rpc_port_name(port),
        }
    }

    fn rpc_port_name(&self, port: u16) -> &'static str {
        match port {
            111 => "RPCBIND",
            2049 => "NFS",
            _ => self.rpc_ports.get(&port).copied().unwrap_or("other"),
        }
    }

    /// Walks the record marks of a client-to-server TCP segment's data.
    fn rpc_records(&mut self, client: Ipv4Addr, client_port: u16, server_port: u16, mut data: &[u8]) {
        let key = (client, client_port, self.server, server_port);
        while !data.is_empty() {
            let left = self.flows.get(&key).and_then(|f| f.left_in_record);
            let left = match left {
                Some(0) | None => {
                    // A record starts here; only trusted after a known boundary or at a
                    // segment's start after a gap (the common case: one call per segment).
                    let Some(mark) = be32(data, 0) else {
                        self.set_left(key, None);
                        return;
                    };
                    data = &data[4..];
                    self.rpc_call(client, client_port, server_port, data);
                    mark & 0x7fff_ffff
                }
                Some(n) => n,
            };
            let take = (left as usize).min(data.len());
            data = &data[take..];
            self.set_left(key, Some(left - take as u32));
        }
    }

    fn set_left(&mut self, key: FlowKey, left: Option<u32>) {
        if let Some(flow) = self.flows.get_mut(&key) {
            flow.left_in_record = left;
        }
    }

    /// Counts the call whose header starts `data` (xid, CALL, RPC 2, program,
    /// version, procedure), if it is one.
    fn rpc_call(&mut self, client: Ipv4Addr, client_port: u16, server_port: u16, data: &[u8]) {
        let (Some(xid), Some(0), Some(2), Some(program), Some(version), Some(procedure)) =
            (be32(data, 0), be32(data, 4), be32(data, 8), be32(data, 12), be32(data, 16), be32(data, 20))
        else {
            return;
        };
        let Some(name) = program_name(program) else { return };
        if !matches!(server_port, 111 | 2049) {
            self.rpc_ports.insert(server_port, name);
        }
        if !self.rpc_seen.insert((client, client_port, xid)) {
            self.traffic.rpc_retransmissions += 1;
        }
        let call = format!("{name}v{version} {}", procedure_name(program, version, procedure));
        *self.traffic.rpc_calls.entry(call).or_default() += 1;
    }

    /// Notes a DHCP client message; the same transaction and type again is a retransmission.
    fn dhcp(&mut self, payload: &[u8]) {
        // op 1 = BOOTREQUEST; options after the 236-byte header and the magic cookie.
        let (Some(1), Some(xid)) = (payload.first().copied(), be32(payload, 4)) else { return };
        let mut at = 240;
        while let (Some(&code), Some(&len)) = (payload.get(at), payload.get(at + 1)) {
            match code {
                0 => at += 1,
                255 => return,
                53 => {
                    if let Some(&kind) = payload.get(at + 2)
                        && !self.dhcp_seen.insert((xid, kind))
                    {
                        self.traffic.dhcp_retransmissions += 1;
                    }
                    return;
                }
                _ => at += 2 + usize::from(len),
            }
        }
    }
}

/// The ONC RPC programs a diskless boot talks to.
fn program_name(program: u32) -> Option<&'static str> {
    Some(match program {
        100_000 => "RPCBIND",
        100_003 => "NFS",
        100_005 => "MOUNT",
        100_021 => "NLM",
        100_024 => "STATUS",
        _ => return None,
    })
}

/// NFSv3 and MOUNTv3 procedures by name (RFC 1813); others by number.
fn procedure_name(program: u32, version: u32, procedure: u32) -> String {
    const NFS3: [&str; 22] = [
        "NULL",
        "GETATTR",
        "SETATTR",
        "LOOKUP",
        "ACCESS",
        "READLINK",
        "READ",
        "WRITE",
        "CREATE",
        "MKDIR",
        "SYMLINK",
        "MKNOD",
        "REMOVE",
        "RMDIR",
        "RENAME",
        "LINK",
        "READDIR",
        "READDIRPLUS",
        "FSSTAT",
        "FSINFO",
        "PATHCONF",
        "COMMIT",
    ];
    const MOUNT3: [&str; 6] = ["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"];
    let table: &[&str] = match (program, version) {
        (100_003, 3) => &NFS3,
        (100_003, 4) => &["NULL", "COMPOUND"],
        (100_005, 3) => &MOUNT3,
        (100_000, 2..=4) => &["NULL", "SET", "UNSET", "GETPORT/GETADDR"],
        _ => &[],
    };
    table.get(procedure as usize).map_or_else(|| format!("proc{procedure}"), |n| n.to_string())
}

/// tcpdump writing the bridge's frames to a file, each frame flushed as it comes.
pub struct Tcpdump {
    child: ChildGuard,
}

impl Tcpdump {
    pub fn start(ns: &Netns, file: &Path, messages: &Path) -> std::result::Result<Tcpdump, String> {
        let _ = std::fs::remove_file(file);
        let out = std::fs::File::create(messages).map_err(|e| format!("create {}: {e}", messages.display()))?;
        let mut cmd = ns.command("tcpdump");
        // -Z root: tcpdump otherwise drops to its own user, which cannot write here.
        cmd.args(["-i", "br0", "-U", "-s", "0", "-Z", "root", "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out);
        let child = ChildGuard::spawn(cmd, "tcpdump on the lab bridge").map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(messages).unwrap_or_default().contains("listening on") {
            if Instant::now() > deadline {
                return Err(format!("tcpdump did not start listening; see {}", messages.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Tcpdump { child })
    }

    /// Ends the capture with SIGTERM so the file is complete.
    pub fn stop(mut self) {
        // SAFETY: kill(2) of the process group of the tcpdump we started.
        unsafe {
            libc::kill(-(self.child.pid() as libc::pid_t), libc::SIGTERM);
        }
        if self.child.wait_timeout(Duration::from_secs(5)).is_none() {
            self.child.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 112);

    fn capture(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        out.extend(2u16.to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend([0; 8]);
        out.extend(65535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for frame in frames {
            out.extend([0; 8]);
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend(frame);
        }
        out
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(0x0800u16.to_be_bytes());
        f.push(0x45);
        f.push(0);
        f.extend(((20 + l4.len()) as u16).to_be_bytes());
        f.extend([0, 0, 0, 0, 64, proto, 0, 0]);
        f.extend(src.octets());
        f.extend(dst.octets());
        f.extend(l4);
        f
    }

    fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend(sport.to_be_bytes());
        l4.extend(dport.to_be_bytes());
        l4.extend(((8 + payload.len()) as u16).to_be_bytes());
        l4.extend([0, 0]);
        l4.extend(payload);
        ipv4(src, dst, UDP, &l4)
    }

    fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend(sport.to_be_bytes());
        l4.extend(dport.to_be_bytes());
        l4.extend(seq.to_be_bytes());
        l4.extend([0; 4]);
        l4.extend([0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        l4.extend(payload);
        ipv4(src, dst, TCP, &l4)
    }

    /// A record-marked RPC call with `args_len` bytes of arguments.
    fn rpc_call(xid: u32, program: u32, version: u32, procedure: u32, args_len: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for word in [xid, 0, 2, program, version, procedure] {
            body.extend(word.to_be_bytes());
        }
        body.extend(vec![0u8; args_len]);
        let mut out = (0x8000_0000u32 | body.len() as u32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    fn dhcp(xid: u32, kind: u8) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = 1;
        p[4..8].copy_from_slice(&xid.to_be_bytes());
        p[236..240].copy_from_slice(&[99, 130, 83, 99]);
        p.extend([53, 1, kind, 255]);
        p
    }

    #[test]
    fn protocols_are_counted_by_port_and_tftp_transfers_follow_their_request() {
        let frames = vec![
            udp(CLIENT, 68, SERVER, 67, &dhcp(7, 1)),
            udp(CLIENT, 68, SERVER, 67, &dhcp(7, 1)),
            udp(CLIENT, 68, SERVER, 67, &dhcp(7, 3)),
            udp(CLIENT, 40000, SERVER, 53, b"query"),
            udp(CLIENT, 2070, SERVER, 69, b"\0\x01pxelinux.0\0octet\0"),
            udp(SERVER, 51234, CLIENT, 2070, &[0u8; 512]),
            udp(CLIENT, 2070, SERVER, 51234, b"\0\x04\0\x01"),
            udp(CLIENT, 3000, SERVER, 4000, b"unknown"),
        ];
        let t = parse(&capture(&frames), SERVER).unwrap();
        assert_eq!(t.protocols["DHCP"].frames, 3);
        assert_eq!(t.dhcp_retransmissions, 1, "the second DISCOVER of transaction 7");
        assert_eq!(t.protocols["DNS"].frames, 1);
        assert_eq!(t.protocols["TFTP"].frames, 3);
        assert_eq!(t.protocols["TFTP"].bytes, 3 * 42 + 19 + 512 + 4);
        assert_eq!(t.protocols["other"].frames, 1);
    }

    #[test]
    fn rpc_calls_are_named_across_segments_and_retransmissions_counted() {
        let getattr = rpc_call(1, 100_003, 3, 1, 36);
        let read = rpc_call(2, 100_003, 3, 6, 3000);
        let (read_a, read_b) = read.split_at(1448);
        let lookup = rpc_call(3, 100_003, 3, 3, 40);
        let mut tail = read_b.to_vec();
        tail.extend(&lookup);
        let mnt = rpc_call(9, 100_005, 3, 1, 24);
        let mut seq = 1000u32;
        let mut next = |len: usize| {
            let at = seq;
            seq += len as u32;
            at
        };
        let s1 = next(getattr.len());
        let s2 = next(read_a.len());
        let s3 = next(tail.len());
        let s4 = next(getattr.len());
        let frames = vec![
            tcp(CLIENT, 800, SERVER, 2049, s1, &getattr),
            tcp(CLIENT, 800, SERVER, 2049, s2, read_a),
            tcp(CLIENT, 800, SERVER, 2049, s3, &tail),
            // The first segment again: TCP retransmission, not a new call.
            tcp(CLIENT, 800, SERVER, 2049, s1, &getattr),
            // The same call again as new data: an RPC retransmission.
            tcp(CLIENT, 800, SERVER, 2049, s4, &getattr),
            tcp(SERVER, 2049, CLIENT, 800, 5000, &[0u8; 100]),
            tcp(CLIENT, 801, SERVER, 20048, 1, &mnt),
            tcp(SERVER, 20048, CLIENT, 801, 1, &[0u8; 60]),
        ];
        let t = parse(&capture(&frames), SERVER).unwrap();
        let calls: Vec<(&str, u64)> = t.rpc_calls.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(calls, [("MOUNTv3 MNT", 1), ("NFSv3 GETATTR", 2), ("NFSv3 LOOKUP", 1), ("NFSv3 READ", 1)]);
        assert_eq!(t.tcp_retransmissions, 1);
        assert_eq!(t.rpc_retransmissions, 1);
        assert_eq!(t.protocols["NFS"].frames, 6);
        assert_eq!(t.protocols["MOUNT"].frames, 2, "the call names its port's program, the reply is counted too");
    }

    #[test]
    fn a_missed_segment_resynchronises_at_the_next_record() {
        let read = rpc_call(2, 100_003, 3, 6, 3000);
        let getattr = rpc_call(4, 100_003, 3, 1, 36);
        let frames = vec![
            tcp(CLIENT, 800, SERVER, 2049, 0, &read[..1000]),
            // bytes 1000..2000 were not captured
            tcp(CLIENT, 800, SERVER, 2049, 2000, &getattr),
        ];
        let t = parse(&capture(&frames), SERVER).unwrap();
        assert_eq!(t.rpc_calls.get("NFSv3 READ"), Some(&1));
        assert_eq!(t.rpc_calls.get("NFSv3 GETATTR"), Some(&1));
        assert_eq!(t.tcp_retransmissions, 0);
    }

    #[test]
    fn not_a_capture_or_not_ethernet_is_named() {
        assert!(matches!(parse(b"GIF89a..", SERVER), Err(PcapError::Magic(_))));
        let mut raw_ip = capture(&[]);
        raw_ip[20..24].copy_from_slice(&101u32.to_le_bytes());
        assert!(matches!(parse(&raw_ip, SERVER), Err(PcapError::LinkType(101))));
        let mut cut = capture(&[udp(CLIENT, 68, SERVER, 67, &dhcp(1, 1))]);
        cut.truncate(cut.len() - 10);
        assert!(matches!(parse(&cut, SERVER), Err(PcapError::Truncated(24))));
    }
}
