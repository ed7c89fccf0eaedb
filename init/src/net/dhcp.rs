//! DHCPv4 client as a sans-IO state machine (RFC 2131, Rapid Commit RFC 4039).
//!
//! The caller owns the socket and the clock: [`DhcpClient::poll`] says what to
//! send and when to call again, [`DhcpClient::handle`] digests a received
//! datagram. This keeps retransmission, reply matching and lease extraction
//! testable without a network.
//!
//! Retransmission starts at 1 s, not RFC 2131's 4 s, because the first packet
//! after a link comes up is often lost while the switch port settles; the
//! delay doubles up to 32 s and is randomised by up to a quarter either way
//! so that a room of machines booting together spreads out.
//!
//! # Which offer is taken
//!
//! A lab segment may hold a second DHCP server (a home router plugged in) that
//! answers first with a lease in another subnet and nothing to boot from. The
//! [`OfferPolicy`] decides:
//!
//! - An offer (or a Rapid Commit ACK) *carries boot information* when it has a
//!   root path (option 17), a next server (siaddr) other than the offering server
//!   itself (dnsmasq fills in its own address by default), or a boot file, when it comes
//!   from a server the command line names (the `ip=` server field, the NFS root
//!   server), or when its subnet holds that NFS root server. The first such offer
//!   is taken at once: the normal boot waits for nothing more.
//! - The first offer without boot information is held for [`OFFER_WINDOW`]; an
//!   offer with boot information in that time wins, and the held one is logged as
//!   passed over. When the window ends, the held offer is taken (a DHCP server
//!   that names no root is normal when the command line names it). Later weak
//!   offers are passed over for the first.
//! - `diskless.dhcp_server=IP[,IP...]` accepts offers only from those servers;
//!   offers from servers the network stage excluded in this boot (their lease
//!   could not reach the root server, see `net/mod.rs`) are ignored. Both are
//!   logged with the server and the reason.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{self, DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use serde::{Deserialize, Serialize};

use super::config::{Mac, mask_prefix};

/// First retransmission delay.
pub const INITIAL_DELAY: Duration = Duration::from_secs(1);
/// Ceiling of the retransmission delay.
pub const MAX_DELAY: Duration = Duration::from_secs(32);
/// REQUESTs sent for one offer before starting over with DISCOVER.
pub const REQUEST_TRIES: u32 = 4;
/// How long an offer without boot information waits for one with it.
pub const OFFER_WINDOW: Duration = Duration::from_secs(1);

/// What an offer lacks to count as carrying boot information.
pub const NO_BOOT_INFO: &str = "no root path, next server or boot file";

/// Which offers the client accepts and which it prefers; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferPolicy {
    /// `diskless.dhcp_server=`: when not empty, only these servers are accepted.
    pub allowed: Vec<Ipv4Addr>,
    /// Servers whose lease could not reach the root server earlier in this boot.
    pub excluded: Vec<Ipv4Addr>,
    /// Servers the command line names (the `ip=` server, the NFS root server): an
    /// offer from one of them, or in a subnet that holds one, is for this boot.
    pub boot_servers: Vec<Ipv4Addr>,
}

impl OfferPolicy {
    /// Why an offer from `server` is not accepted at all, if it is not.
    pub fn refuses(&self, server: Option<Ipv4Addr>) -> Option<Refusal> {
        if !self.allowed.is_empty() && !server.is_some_and(|s| self.allowed.contains(&s)) {
            return Some(Refusal::NotAllowed(self.allowed.clone()));
        }
        server.filter(|s| self.excluded.contains(s)).map(|_| Refusal::Excluded)
    }

    /// Whether the offer (parsed like a lease) carries boot information.
    pub fn has_boot_info(&self, offer: &Lease) -> bool {
        let on_link = |s: &Ipv4Addr| {
            u32::from(*s) & u32::from(offer.netmask) == u32::from(offer.address) & u32::from(offer.netmask)
        };
        // dnsmasq (and the home routers built on it) puts its own address in siaddr
        // by default: only a next server elsewhere was configured for booting.
        offer.root_path.is_some()
            || offer.next_server.is_some_and(|n| Some(n) != offer.server_id)
            || offer.boot_file.is_some()
            || offer.server_id.is_some_and(|s| self.boot_servers.contains(&s))
            || self.boot_servers.iter().any(on_link)
    }
}

/// Why an offer was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not among `diskless.dhcp_server=` (the list).
    NotAllowed(Vec<Ipv4Addr>),
    /// Its lease could not reach the root server earlier in this boot.
    Excluded,
    /// Without boot information, while another offer was preferred.
    NoBootInfo,
}

/// An offer that was not taken, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassedOver {
    pub address: Ipv4Addr,
    pub server: Option<Ipv4Addr>,
    /// A Rapid Commit ACK rather than an offer.
    pub rapid_commit: bool,
    pub why: Refusal,
}

impl PassedOver {
    fn of(lease: &Lease, why: Refusal) -> PassedOver {
        PassedOver { address: lease.address, server: lease.server_id, rapid_commit: lease.rapid_commit, why }
    }
}

impl std::fmt::Display for PassedOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.rapid_commit { "rapid-commit lease" } else { "offer" };
        let server = self.server.map_or_else(|| "a server without identifier".to_string(), |s| s.to_string());
        write!(f, "{kind} of {} from {server} ", self.address)?;
        match &self.why {
            Refusal::NotAllowed(list) => {
                let list: Vec<String> = list.iter().map(ToString::to_string).collect();
                write!(f, "ignored: not among diskless.dhcp_server={}", list.join(","))
            }
            Refusal::Excluded => f.write_str("ignored: its lease could not reach the root server earlier in this boot"),
            Refusal::NoBootInfo => write!(f, "passed over: {NO_BOOT_INFO}"),
        }
    }
}

/// A DHCPRELEASE of `lease` (RFC 2131 4.4.6: ciaddr, server identifier, our client
/// identifier); `None` when the lease names no server to send it to.
pub fn release_message(mac: &Mac, xid: u32, lease: &Lease) -> Option<Vec<u8>> {
    let server = lease.server_id?;
    let mut msg = blank_request(xid, mac);
    msg.set_ciaddr(lease.address);
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Release));
    opts.insert(DhcpOption::ServerIdentifier(server));
    opts.insert(DhcpOption::ClientIdentifier(client_id(mac)));
    let mut bytes = msg.to_vec().ok()?;
    if bytes.len() < v4::MIN_PACKET_SIZE {
        bytes.resize(v4::MIN_PACKET_SIZE, 0);
    }
    Some(bytes)
}

/// Option 61: hardware type 1 (Ethernet) and the MAC.
fn client_id(mac: &Mac) -> Vec<u8> {
    let mut id = vec![1u8];
    id.extend_from_slice(&mac.0);
    id
}

/// The vendor class identifier (option 60) sent with every request.
pub fn vendor_class() -> String {
    format!("diskless {}", env!("CARGO_PKG_VERSION"))
}

/// Options asked for in the parameter request list (option 55).
const REQUESTED: [OptionCode; 15] = [
    OptionCode::SubnetMask,
    OptionCode::BroadcastAddr,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::LogServer,
    OptionCode::DomainName,
    OptionCode::Hostname,
    OptionCode::RootPath,
    OptionCode::InterfaceMtu,
    OptionCode::ServerIdentifier,
    OptionCode::AddressLeaseTime,
    OptionCode::NisDomain,
    OptionCode::NtpServers,
    OptionCode::DomainSearch,
    OptionCode::BootfileName,
];

/// Everything a DHCP server told us, as recorded in boot.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub prefix_len: u8,
    pub broadcast: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 7: where the boot sends its log ([`crate::syslog`]).
    #[serde(default)]
    pub log_servers: Vec<Ipv4Addr>,
    pub domain_name: Option<String>,
    pub host_name: Option<String>,
    pub root_path: Option<String>,
    pub mtu: Option<u16>,
    /// Option 54; `None` for a static configuration.
    pub server_id: Option<Ipv4Addr>,
    /// siaddr, when not 0.0.0.0.
    pub next_server: Option<Ipv4Addr>,
    /// Option 67, else the `file` header field.
    pub boot_file: Option<String>,
    /// The `sname` header field.
    pub server_name: Option<String>,
    /// Seconds; `None` for an infinite or static lease.
    pub lease_time: Option<u32>,
    pub domain_search: Vec<String>,
    pub nis_domain: Option<String>,
    pub ntp_servers: Vec<Ipv4Addr>,
    /// The lease came as an ACK to DISCOVER (Rapid Commit).
    pub rapid_commit: bool,
}

impl Lease {
    /// A lease for an address with a mask; other fields empty. Broadcast is
    /// derived from the two.
    pub fn new(address: Ipv4Addr, netmask: Ipv4Addr) -> Lease {
        let prefix_len = mask_prefix(netmask).unwrap_or(32);
        Lease {
            address,
            netmask,
            prefix_len,
            broadcast: Ipv4Addr::from(u32::from(address) | !u32::from(netmask)),
            routers: Vec::new(),
            dns_servers: Vec::new(),
            log_servers: Vec::new(),
            domain_name: None,
            host_name: None,
            root_path: None,
            mtu: None,
            server_id: None,
            next_server: None,
            boot_file: None,
            server_name: None,
            lease_time: None,
            domain_search: Vec::new(),
            nis_domain: None,
            ntp_servers: Vec::new(),
            rapid_commit: false,
        }
    }
}

/// Why a datagram is not a decodable DHCP message.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("{len} bytes, shorter than a DHCP header")]
    Short { len: usize },
    #[error("hardware address length {hlen} over 16")]
    HardwareAddressLength { hlen: u8 },
    #[error("no DHCP magic cookie")]
    NoMagicCookie,
    #[error("option {code} without a length")]
    OptionWithoutLength { code: u8 },
    #[error("option {code} length {len} runs past the packet")]
    OptionPastEnd { code: u8, len: u8 },
    /// An option whose length the decoder would assert on ([`OPTION_LENGTHS`]).
    #[error("{name} option (code {code}) with {len} bytes of data")]
    OptionLength { name: &'static str, code: u8, len: u8 },
    #[error(transparent)]
    Decode(#[from] dhcproto::error::DecodeError),
}

/// Why a datagram was not used.
#[derive(Debug)]
pub enum Ignored {
    Malformed(Malformed),
    /// A BOOTREQUEST (another client's broadcast).
    NotReply,
    WrongXid {
        got: u32,
    },
    WrongChaddr,
    /// No DHCP message type option, or one that does not fit our state.
    Unexpected(String),
    /// OFFER/ACK without a usable address or server identifier.
    Incomplete(&'static str),
    /// An ACK to DISCOVER without Rapid Commit, or from another server.
    NotOurs(&'static str),
    /// Refused by the [`OfferPolicy`], or passed over for another offer; the
    /// driver logs [`DhcpClient::take_passed_over`].
    PassedOver,
    /// Already bound.
    Late,
}

/// Result of handling one datagram.
#[derive(Debug)]
pub enum Event {
    Ignored(Ignored),
    /// An offer was taken; a REQUEST is due at once.
    Offered {
        address: Ipv4Addr,
        server: Ipv4Addr,
    },
    /// The server refused; the client starts again from DISCOVER.
    Nak {
        server: Option<Ipv4Addr>,
        message: Option<String>,
    },
    /// The lease is ours.
    Bound(Box<Lease>),
    /// The first offer without boot information: held for `window` while a
    /// better one may come.
    Held {
        address: Ipv4Addr,
        server: Option<Ipv4Addr>,
        /// A Rapid Commit ACK rather than an offer.
        rapid_commit: bool,
        window: Duration,
    },
}

/// The log line of [`Event::Held`].
pub fn held_line(address: Ipv4Addr, server: Option<Ipv4Addr>, rapid_commit: bool, window: Duration) -> String {
    let kind = if rapid_commit { "rapid-commit lease" } else { "offer" };
    let server = server.map_or_else(|| "a server without identifier".to_string(), |s| s.to_string());
    format!(
        "{kind} of {address} from {server} has {NO_BOOT_INFO}; waiting {:.1} s for an offer that has",
        window.as_secs_f32()
    )
}

/// A datagram to broadcast and when to call [`DhcpClient::poll`] next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub bytes: Vec<u8>,
    pub kind: MessageType,
    /// 1 for the first send of this message, counting up on retransmission.
    pub attempt: u32,
    pub deadline: Instant,
}

/// Counts of ignored datagrams, for the log when DHCP fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IgnoredCounts {
    pub malformed: u32,
    pub wrong_xid: u32,
    pub wrong_chaddr: u32,
    pub other: u32,
}

#[derive(Clone, Debug)]
enum State {
    Selecting,
    Requesting { address: Ipv4Addr, server: Ipv4Addr },
    Bound,
}

/// The client state machine for one interface.
#[derive(Debug)]
pub struct DhcpClient {
    mac: Mac,
    xid: u32,
    state: State,
    started: Instant,
    next_send: Instant,
    attempt: u32,
    delay: Duration,
    rng: u64,
    vendor: String,
    ignored: IgnoredCounts,
    policy: OfferPolicy,
    /// The first offer without boot information, and until when it waits.
    held: Option<(Lease, Instant)>,
    passed_over: Vec<PassedOver>,
}

impl DhcpClient {
    /// A client in INIT that sends its first DISCOVER on the first poll.
    /// `xid` also seeds the jitter, so a test can reproduce a run.
    pub fn new(mac: Mac, xid: u32, now: Instant) -> DhcpClient {
        DhcpClient {
            mac,
            xid,
            state: State::Selecting,
            started: now,
            next_send: now,
            attempt: 0,
            delay: INITIAL_DELAY,
            rng: u64::from(xid) ^ 0x9e37_79b9_7f4a_7c15,
            vendor: vendor_class(),
            ignored: IgnoredCounts::default(),
            policy: OfferPolicy::default(),
            held: None,
            passed_over: Vec::new(),
        }
    }

    /// The client with an offer policy other than "take the first".
    pub fn with_policy(mut self, policy: OfferPolicy) -> DhcpClient {
        self.policy = policy;
        self
    }

    /// The offers refused or passed over since the last call, for the log.
    pub fn take_passed_over(&mut self) -> Vec<PassedOver> {
        std::mem::take(&mut self.passed_over)
    }

    /// Takes the held offer once its window is over: returns [`Event::Offered`]
    /// (a REQUEST is due) or, for a Rapid Commit ACK, [`Event::Bound`].
    pub fn settle(&mut self, now: Instant) -> Option<Event> {
        if !matches!(self.state, State::Selecting) || self.held.as_ref().is_none_or(|(_, until)| now < *until) {
            return None;
        }
        let (lease, _) = self.held.take()?;
        Some(self.take(now, lease))
    }

    /// Current transaction id (changes when a NAK or a silent server makes
    /// the client start over).
    pub fn xid(&self) -> u32 {
        self.xid
    }

    pub fn ignored(&self) -> IgnoredCounts {
        self.ignored
    }

    pub fn is_bound(&self) -> bool {
        matches!(self.state, State::Bound)
    }

    /// When `poll` (or `settle`) wants to be called again; `None` once bound.
    pub fn next_deadline(&self) -> Option<Instant> {
        let window = self.held.as_ref().map(|(_, until)| *until);
        (!self.is_bound()).then_some(window.map_or(self.next_send, |w| w.min(self.next_send)))
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: jitter needs spread, not secrecy.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn jittered(&mut self, delay: Duration) -> Duration {
        let quarter = delay.as_millis() as u64 / 4;
        let span = quarter * 2 + 1;
        let offset = self.next_random() % span;
        (delay + Duration::from_millis(offset)).saturating_sub(Duration::from_millis(quarter))
    }

    fn restart(&mut self, now: Instant) {
        self.xid = self.next_random() as u32;
        self.state = State::Selecting;
        self.held = None;
        self.attempt = 0;
        self.delay = INITIAL_DELAY;
        self.next_send = now;
    }

    /// Returns the datagram due at `now`, if any, and schedules the next
    /// retransmission. Returns `None` before the deadline and once bound.
    pub fn poll(&mut self, now: Instant) -> Option<Transmit> {
        if self.is_bound() || now < self.next_send {
            return None;
        }
        if let State::Requesting { .. } = self.state
            && self.attempt >= REQUEST_TRIES
        {
            self.restart(now);
        }
        self.attempt += 1;
        let wait = self.jittered(self.delay);
        self.delay = (self.delay * 2).min(MAX_DELAY);
        self.next_send = now + wait;
        let secs = now.saturating_duration_since(self.started).as_secs().min(u64::from(u16::MAX)) as u16;
        let (kind, bytes) = match self.state {
            State::Selecting => (MessageType::Discover, self.build(MessageType::Discover, secs, None)),
            State::Requesting { address, server } => {
                (MessageType::Request, self.build(MessageType::Request, secs, Some((address, server))))
            }
            State::Bound => return None,
        };
        Some(Transmit { bytes, kind, attempt: self.attempt, deadline: self.next_send })
    }

    fn build(&self, kind: MessageType, secs: u16, request: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
        let mut msg = blank_request(self.xid, &self.mac);
        // Broadcast flag: we have no address yet, and a server that honours
        // the flag saves us from depending on unicast-to-unconfigured delivery.
        msg.set_flags(Flags::default().set_broadcast()).set_secs(secs);
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ClientIdentifier(client_id(&self.mac)));
        opts.insert(DhcpOption::ClassIdentifier(self.vendor.clone().into_bytes()));
        opts.insert(DhcpOption::ParameterRequestList(REQUESTED.to_vec()));
        opts.insert(DhcpOption::MaxMessageSize(1472));
        match request {
            None => {
                opts.insert(DhcpOption::RapidCommit);
            }
            Some((address, server)) => {
                opts.insert(DhcpOption::RequestedIpAddress(address));
                opts.insert(DhcpOption::ServerIdentifier(server));
            }
        }
        let mut bytes = msg.to_vec().unwrap_or_default();
        // Some BOOTP-era relays and servers drop messages under 300 bytes.
        if bytes.len() < v4::MIN_PACKET_SIZE {
            bytes.resize(v4::MIN_PACKET_SIZE, 0);
        }
        bytes
    }

    fn ignore(&mut self, why: Ignored) -> Event {
        match why {
            Ignored::Malformed(_) => self.ignored.malformed += 1,
            Ignored::WrongXid { .. } => self.ignored.wrong_xid += 1,
            Ignored::WrongChaddr => self.ignored.wrong_chaddr += 1,
            _ => self.ignored.other += 1,
        }
        Event::Ignored(why)
    }

    /// Digests one received datagram.
    pub fn handle(&mut self, now: Instant, bytes: &[u8]) -> Event {
        if let Err(why) = precheck(bytes) {
            return self.ignore(Ignored::Malformed(why));
        }
        let msg = match Message::decode(&mut Decoder::new(bytes)) {
            Ok(m) => m,
            Err(e) => return self.ignore(Ignored::Malformed(e.into())),
        };
        if msg.opcode() != Opcode::BootReply {
            return self.ignore(Ignored::NotReply);
        }
        if msg.xid() != self.xid {
            return self.ignore(Ignored::WrongXid { got: msg.xid() });
        }
        // chaddr starts at byte 28; precheck guaranteed the length.
        if msg.htype() != HType::Eth || msg.hlen() != 6 || bytes[28..34] != self.mac.0 {
            return self.ignore(Ignored::WrongChaddr);
        }
        if self.is_bound() {
            return self.ignore(Ignored::Late);
        }
        let server = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(s)) => Some(*s),
            _ => None,
        };
        let Some(kind) = msg.opts().msg_type() else {
            return self.ignore(Ignored::Unexpected("no DHCP message type (BOOTP reply)".into()));
        };
        match (kind, self.state.clone()) {
            (MessageType::Offer, State::Selecting) => {
                let address = msg.yiaddr();
                if address.is_unspecified() || address.is_broadcast() {
                    return self.ignore(Ignored::Incomplete("offer without an address"));
                }
                if server.is_none() {
                    return self.ignore(Ignored::Incomplete("offer without a server identifier"));
                }
                match lease_from_ack(&msg, false) {
                    Ok(offer) => self.consider(now, offer),
                    Err(why) => self.ignore(Ignored::Incomplete(why)),
                }
            }
            (MessageType::Ack, State::Selecting) => {
                if msg.opts().get(OptionCode::RapidCommit).is_none() {
                    return self.ignore(Ignored::NotOurs("ACK to DISCOVER without rapid commit"));
                }
                match lease_from_ack(&msg, true) {
                    Ok(lease) => self.consider(now, lease),
                    Err(why) => self.ignore(Ignored::Incomplete(why)),
                }
            }
            (MessageType::Ack, State::Requesting { server: ours, .. }) => {
                if server.is_some_and(|s| s != ours) {
                    return self.ignore(Ignored::NotOurs("ACK from a server we did not request from"));
                }
                self.bind(&msg, false)
            }
            (MessageType::Nak, State::Requesting { server: ours, .. }) => {
                if server.is_some_and(|s| s != ours) {
                    return self.ignore(Ignored::NotOurs("NAK from a server we did not request from"));
                }
                let message = match msg.opts().get(OptionCode::Message) {
                    Some(DhcpOption::Message(m)) => Some(m.clone()),
                    _ => None,
                };
                self.restart(now);
                Event::Nak { server, message }
            }
            (kind, _) => self.ignore(Ignored::Unexpected(format!("{kind:?} in state {:?}", self.state))),
        }
    }

    /// An offer (or Rapid Commit ACK) in SELECTING, by the policy.
    fn consider(&mut self, now: Instant, offer: Lease) -> Event {
        if let Some(why) = self.policy.refuses(offer.server_id) {
            self.passed_over.push(PassedOver::of(&offer, why));
            return self.ignore(Ignored::PassedOver);
        }
        if self.policy.has_boot_info(&offer) {
            if let Some((held, _)) = self.held.take() {
                self.passed_over.push(PassedOver::of(&held, Refusal::NoBootInfo));
            }
            return self.take(now, offer);
        }
        if self.held.is_some() {
            self.passed_over.push(PassedOver::of(&offer, Refusal::NoBootInfo));
            return self.ignore(Ignored::PassedOver);
        }
        let (address, server, rapid_commit) = (offer.address, offer.server_id, offer.rapid_commit);
        self.held = Some((offer, now + OFFER_WINDOW));
        Event::Held { address, server, rapid_commit, window: OFFER_WINDOW }
    }

    /// Takes a chosen offer: request it, or bind a Rapid Commit ACK.
    fn take(&mut self, now: Instant, offer: Lease) -> Event {
        match (offer.rapid_commit, offer.server_id) {
            (true, _) => {
                self.state = State::Bound;
                Event::Bound(Box::new(offer))
            }
            (false, Some(server)) => {
                let address = offer.address;
                self.state = State::Requesting { address, server };
                self.attempt = 0;
                self.delay = INITIAL_DELAY;
                self.next_send = now;
                Event::Offered { address, server }
            }
            // `handle` refuses offers without a server identifier before this.
            (false, None) => self.ignore(Ignored::Incomplete("offer without a server identifier")),
        }
    }

    fn bind(&mut self, msg: &Message, rapid_commit: bool) -> Event {
        match lease_from_ack(msg, rapid_commit) {
            Ok(lease) => {
                self.state = State::Bound;
                Event::Bound(Box::new(lease))
            }
            Err(why) => self.ignore(Ignored::Incomplete(why)),
        }
    }
}

/// Option framing checks done before dhcproto sees a datagram: its decoder
/// panics on a hardware address length over 16, and on options whose length
/// differs from what [`OPTION_LENGTHS`] lists (assertions, or a length
/// subtraction that underflows).
pub(crate) fn precheck(bytes: &[u8]) -> Result<(), Malformed> {
    const HEADER: usize = 240;
    if bytes.len() < HEADER {
        return Err(Malformed::Short { len: bytes.len() });
    }
    if bytes[2] > 16 {
        return Err(Malformed::HardwareAddressLength { hlen: bytes[2] });
    }
    if bytes[236..HEADER] != v4::MAGIC {
        return Err(Malformed::NoMagicCookie);
    }
    let overload = walk_options(&bytes[HEADER..])?;
    // Option 52 moves options into the file (bit 1) and sname (bit 2) fields.
    if overload & 1 != 0 {
        walk_options(&bytes[108..236])?;
    }
    if overload & 2 != 0 {
        walk_options(&bytes[44..108])?;
    }
    Ok(())
}

/// What the decoder assumes of an option's length.
#[derive(Clone, Copy)]
enum LengthRule {
    Exactly(u8),
    AtLeast(u8),
}

impl LengthRule {
    fn allows(self, len: u8) -> bool {
        match self {
            LengthRule::Exactly(n) => len == n,
            LengthRule::AtLeast(n) => len >= n,
        }
    }
}

/// Options whose decoding in dhcproto asserts a length or subtracts from it.
const OPTION_LENGTHS: &[(u8, LengthRule, &str)] = &[
    (80, LengthRule::Exactly(0), "rapid commit"),
    (81, LengthRule::AtLeast(3), "client FQDN"),
    (94, LengthRule::Exactly(3), "client network interface"),
    (151, LengthRule::AtLeast(1), "bulk lease query status"),
    (152, LengthRule::Exactly(4), "bulk lease query base time"),
    (153, LengthRule::Exactly(4), "bulk lease query start time of state"),
    (154, LengthRule::Exactly(4), "bulk lease query query start time"),
    (155, LengthRule::Exactly(4), "bulk lease query query end time"),
];

/// Walks an option area; returns the value of option 52 (overload) if present.
fn walk_options(area: &[u8]) -> Result<u8, Malformed> {
    let mut overload = 0;
    let mut i = 0;
    while let Some(&code) = area.get(i) {
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let Some(&len) = area.get(i + 1) else {
                    return Err(Malformed::OptionWithoutLength { code });
                };
                let data = area.get(i + 2..i + 2 + usize::from(len));
                let Some(data) = data else {
                    return Err(Malformed::OptionPastEnd { code, len });
                };
                if let Some((_, rule, name)) = OPTION_LENGTHS.iter().find(|(c, _, _)| *c == code)
                    && !rule.allows(len)
                {
                    return Err(Malformed::OptionLength { name, code, len });
                }
                if code == 52 {
                    overload = data.first().copied().unwrap_or(0);
                }
                i += 2 + usize::from(len);
            }
        }
    }
    Ok(overload)
}

fn text(bytes: &[u8]) -> Option<String> {
    // Header fields are NUL-padded; options sometimes carry a trailing NUL. Text
    // options arrive as UTF-8 (the decoder refuses a message where one is not);
    // the sname and file fields may hold anything, and show their odd bytes.
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = crate::text::lossy(&bytes[..end]);
    (!s.is_empty()).then_some(s)
}

pub(crate) fn opt_text(s: &str) -> Option<String> {
    text(s.as_bytes())
}

/// Extracts the lease from an ACK.
fn lease_from_ack(msg: &Message, rapid_commit: bool) -> Result<Lease, &'static str> {
    let address = msg.yiaddr();
    if address.is_unspecified() || address.is_broadcast() {
        return Err("ACK without an address");
    }
    let opts = msg.opts();
    let netmask = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(m)) if mask_prefix(*m).is_some() => *m,
        // RFC 2131 lets the server omit the mask; the classful mask is the
        // traditional fallback, as the kernel's own client does.
        _ => match address.octets()[0] {
            0..=127 => Ipv4Addr::new(255, 0, 0, 0),
            128..=191 => Ipv4Addr::new(255, 255, 0, 0),
            _ => Ipv4Addr::new(255, 255, 255, 0),
        },
    };
    let mut lease = Lease::new(address, netmask);
    lease.rapid_commit = rapid_commit;
    for (_, opt) in opts.iter() {
        match opt {
            DhcpOption::BroadcastAddr(b) => lease.broadcast = *b,
            DhcpOption::Router(r) => lease.routers = r.clone(),
            DhcpOption::DomainNameServer(d) => lease.dns_servers = d.clone(),
            DhcpOption::LogServer(l) => lease.log_servers = l.clone(),
            DhcpOption::DomainName(d) => lease.domain_name = opt_text(d),
            DhcpOption::Hostname(h) => lease.host_name = opt_text(h),
            DhcpOption::RootPath(p) => lease.root_path = opt_text(p),
            // RFC 2132: the minimum legal MTU is 68.
            DhcpOption::InterfaceMtu(m) if *m >= 68 => lease.mtu = Some(*m),
            DhcpOption::ServerIdentifier(s) => lease.server_id = Some(*s),
            DhcpOption::AddressLeaseTime(t) if *t != u32::MAX => lease.lease_time = Some(*t),
            DhcpOption::NisDomain(d) => lease.nis_domain = opt_text(d),
            DhcpOption::NtpServers(n) => lease.ntp_servers = n.clone(),
            DhcpOption::BootfileName(f) => lease.boot_file = text(f),
            DhcpOption::DomainSearch(names) => {
                lease.domain_search = names
                    .iter()
                    .map(|n| n.to_ascii().trim_end_matches('.').to_string())
                    .filter(|n| !n.is_empty())
                    .collect()
            }
            _ => {}
        }
    }
    if !msg.siaddr().is_unspecified() {
        lease.next_server = Some(msg.siaddr());
    }
    if lease.boot_file.is_none() {
        lease.boot_file = msg.fname().and_then(text);
    }
    lease.server_name = msg.sname().and_then(text);
    Ok(lease)
}

/// A BOOTREQUEST with all fields zero but the xid and our hardware address, made
/// without `Message::new_with_id` or `Message::default`: those draw a throw-away xid
/// from the `rand` crate, whose getrandom(2) call blocks until the kernel's random pool
/// is seeded - about a second after the link comes up in a freshly booted machine,
/// which held back the first DISCOVER by that much. Decoding fixed bytes draws nothing.
pub(crate) fn blank_request(xid: u32, mac: &Mac) -> Message {
    // op, htype, hlen, hops | xid | secs, flags | ciaddr, yiaddr, siaddr, giaddr |
    // chaddr (16) | sname (64) | file (128) | magic cookie | end option.
    let mut bytes = [0u8; 241];
    bytes[..4].copy_from_slice(&[1, 1, mac.0.len() as u8, 0]);
    bytes[4..8].copy_from_slice(&xid.to_be_bytes());
    bytes[28..28 + mac.0.len()].copy_from_slice(&mac.0);
    bytes[236..240].copy_from_slice(&[99, 130, 83, 99]);
    bytes[240] = 255;
    match Message::decode(&mut Decoder::new(&bytes)) {
        Ok(msg) => msg,
        // Fixed, valid bytes: decoding cannot fail. Should a dhcproto change make it,
        // the old constructor still works, only slower to start.
        Err(_) => Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &mac.0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = Mac([0x52, 0x54, 0, 0x77, 3, 0x12]);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 112);

    #[test]
    fn blank_request_matches_the_library_constructor_field_for_field() {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut ours = blank_request(0xdead_beef, &MAC);
        let mut theirs = Message::new_with_id(0xdead_beef, z, z, z, z, &MAC.0);
        // Options and magic compare through the encoding, as a server sees them.
        ours.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
        theirs.opts_mut().insert(DhcpOption::MessageType(MessageType::Discover));
        assert_eq!(ours.to_vec().unwrap(), theirs.to_vec().unwrap());
        assert_eq!(ours.xid(), 0xdead_beef);
        assert_eq!(ours.chaddr(), &MAC.0[..]);
    }

    #[test]
    fn options_with_lengths_the_decoder_asserts_on_are_ignored_not_panicking() {
        // Found by the mutation proptest: a client network interface option (94) of
        // one byte tripped an assertion inside dhcproto.
        for (code, len) in [(94u8, 1u8), (81, 0), (81, 2), (151, 0), (152, 3), (80, 1)] {
            let t0 = Instant::now();
            let mut c = DhcpClient::new(MAC, 1, t0);
            c.poll(t0);
            let mut b = reply(1, MessageType::Offer, &MAC.0, &[]);
            let end = b.iter().rposition(|&x| x == 255).expect("end option");
            let mut option = vec![code, len];
            option.resize(2 + usize::from(len), 7);
            b.splice(end..end, option);
            assert!(matches!(c.handle(t0, &b), Event::Ignored(_)), "option {code} len {len} accepted");
        }
    }

    fn reply(xid: u32, kind: MessageType, chaddr: &[u8], extra: &[DhcpOption]) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, ADDR, SERVER, z, chaddr);
        m.set_opcode(Opcode::BootReply);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        if kind == MessageType::Offer {
            // An offer for this boot (siaddr = the server itself is none): taken at once.
            m.opts_mut().insert(DhcpOption::RootPath("10.77.0.1:/export".into()));
        }
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        m.to_vec().unwrap()
    }

    fn decode(bytes: &[u8]) -> Message {
        Message::decode(&mut Decoder::new(bytes)).unwrap()
    }

    #[test]
    fn discover_carries_client_id_vendor_class_rapid_commit_and_broadcast_flag() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 0x1234, t0);
        let tx = c.poll(t0).expect("first poll sends");
        assert_eq!(tx.kind, MessageType::Discover);
        assert!(tx.bytes.len() >= 300);
        let m = decode(&tx.bytes);
        assert_eq!(m.xid(), 0x1234);
        assert!(m.flags().broadcast());
        assert_eq!(m.chaddr(), &MAC.0);
        let o = m.opts();
        assert_eq!(o.msg_type(), Some(MessageType::Discover));
        assert_eq!(
            o.get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(vec![1, 0x52, 0x54, 0, 0x77, 3, 0x12]))
        );
        let Some(DhcpOption::ClassIdentifier(v)) = o.get(OptionCode::ClassIdentifier) else { panic!() };
        assert_eq!(String::from_utf8_lossy(v), format!("diskless {}", env!("CARGO_PKG_VERSION")));
        assert!(o.get(OptionCode::RapidCommit).is_some());
        let Some(DhcpOption::ParameterRequestList(list)) = o.get(OptionCode::ParameterRequestList) else { panic!() };
        for code in [
            OptionCode::RootPath,
            OptionCode::InterfaceMtu,
            OptionCode::Hostname,
            OptionCode::Router,
            OptionCode::LogServer,
        ] {
            assert!(list.contains(&code), "{code:?}");
        }
    }

    #[test]
    fn retransmission_starts_near_one_second_and_doubles_with_jitter() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 7, t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let tx = c.poll(now).unwrap();
            assert!(c.poll(now).is_none(), "nothing due before the deadline");
            waits.push(tx.deadline - now);
            now = tx.deadline;
        }
        let nominal = [1u64, 2, 4, 8, 16, 32, 32, 32];
        for (w, n) in waits.iter().zip(nominal) {
            let n = Duration::from_secs(n);
            assert!(*w >= n * 3 / 4 && *w <= n * 5 / 4, "wait {w:?} not within 25% of {n:?}");
        }
        assert!(waits.iter().zip(nominal).any(|(w, n)| *w != Duration::from_secs(n)), "no jitter at all");
    }

    #[test]
    fn offer_then_ack_binds_with_all_options() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 42, t0);
        c.poll(t0).unwrap();
        let ev = c.handle(t0, &reply(42, MessageType::Offer, &MAC.0, &[]));
        assert!(matches!(ev, Event::Offered { address: ADDR, server: SERVER }), "{ev:?}");
        let tx = c.poll(t0).expect("request due at once");
        assert_eq!(tx.kind, MessageType::Request);
        let m = decode(&tx.bytes);
        assert_eq!(m.opts().get(OptionCode::RequestedIpAddress), Some(&DhcpOption::RequestedIpAddress(ADDR)));
        assert_eq!(m.opts().get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
        let ack = reply(
            42,
            MessageType::Ack,
            &MAC.0,
            &[
                DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
                DhcpOption::Router(vec![SERVER]),
                DhcpOption::DomainNameServer(vec![SERVER, Ipv4Addr::new(10, 77, 0, 2)]),
                DhcpOption::LogServer(vec![Ipv4Addr::new(10, 77, 0, 3)]),
                DhcpOption::DomainName("example.edu".into()),
                DhcpOption::Hostname("lab3-12".into()),
                DhcpOption::RootPath("10.77.0.1:/export".into()),
                DhcpOption::InterfaceMtu(1400),
                DhcpOption::AddressLeaseTime(3600),
                DhcpOption::BootfileName(b"pxelinux.0".to_vec()),
            ],
        );
        let Event::Bound(lease) = c.handle(t0, &ack) else { panic!("not bound") };
        assert_eq!(lease.address, ADDR);
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.broadcast, Ipv4Addr::new(10, 77, 0, 255));
        assert_eq!(lease.routers, vec![SERVER]);
        assert_eq!(lease.dns_servers.len(), 2);
        assert_eq!(lease.log_servers, [Ipv4Addr::new(10, 77, 0, 3)]);
        assert_eq!(lease.domain_name.as_deref(), Some("example.edu"));
        assert_eq!(lease.host_name.as_deref(), Some("lab3-12"));
        assert_eq!(lease.root_path.as_deref(), Some("10.77.0.1:/export"));
        assert_eq!(lease.mtu, Some(1400));
        assert_eq!(lease.lease_time, Some(3600));
        assert_eq!(lease.server_id, Some(SERVER));
        assert_eq!(lease.next_server, Some(SERVER));
        assert_eq!(lease.boot_file.as_deref(), Some("pxelinux.0"));
        assert!(!lease.rapid_commit);
        assert!(c.is_bound() && c.poll(t0 + Duration::from_secs(100)).is_none());
    }

    #[test]
    fn server_name_and_boot_file_show_bytes_that_are_not_utf8_as_escapes() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 5, t0);
        c.poll(t0).unwrap();
        let extra = [DhcpOption::RapidCommit, DhcpOption::BootfileName(b"pxe\xfe\x7f.0".to_vec())];
        let mut ack = decode(&reply(5, MessageType::Ack, &MAC.0, &extra));
        ack.set_sname(b"boot\xff\x1b[2J\0after the padding");
        let Event::Bound(lease) = c.handle(t0, &ack.to_vec().unwrap()) else { panic!("not bound") };
        // Controls stay for the printing side to escape; odd bytes become visible here.
        assert_eq!(lease.server_name.as_deref(), Some("boot\\xff\x1b[2J"));
        assert_eq!(lease.boot_file.as_deref(), Some("pxe\\xfe\x7f.0"));
    }

    #[test]
    fn rapid_commit_ack_to_discover_binds_but_plain_ack_does_not() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 5, t0);
        c.poll(t0).unwrap();
        let ev = c.handle(t0, &reply(5, MessageType::Ack, &MAC.0, &[]));
        assert!(matches!(ev, Event::Ignored(Ignored::NotOurs(_))), "{ev:?}");
        let root = DhcpOption::RootPath("10.77.0.1:/export".into());
        let ev = c.handle(t0, &reply(5, MessageType::Ack, &MAC.0, &[DhcpOption::RapidCommit, root]));
        let Event::Bound(lease) = ev else { panic!("{ev:?}") };
        assert!(lease.rapid_commit);
    }

    #[test]
    fn wrong_xid_wrong_chaddr_and_garbage_are_counted_and_ignored() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 9, t0);
        c.poll(t0).unwrap();
        let ev = c.handle(t0, &reply(10, MessageType::Offer, &MAC.0, &[]));
        assert!(matches!(ev, Event::Ignored(Ignored::WrongXid { got: 10 })), "{ev:?}");
        let ev = c.handle(t0, &reply(9, MessageType::Offer, &[1, 2, 3, 4, 5, 6], &[]));
        assert!(matches!(ev, Event::Ignored(Ignored::WrongChaddr)), "{ev:?}");
        let ev = c.handle(t0, b"\x02\x01garbage");
        assert!(
            matches!(&ev, Event::Ignored(Ignored::Malformed(why)) if why.to_string() == "9 bytes, shorter than a DHCP header"),
            "{ev:?}"
        );
        assert_eq!(c.ignored(), IgnoredCounts { malformed: 1, wrong_xid: 1, wrong_chaddr: 1, other: 0 });
        assert!(!c.is_bound());
    }

    #[test]
    fn nak_restarts_from_discover_with_new_xid() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 77, t0);
        c.poll(t0).unwrap();
        c.handle(t0, &reply(77, MessageType::Offer, &MAC.0, &[]));
        c.poll(t0).unwrap();
        let ev = c.handle(t0, &reply(77, MessageType::Nak, &MAC.0, &[DhcpOption::Message("wrong network".into())]));
        assert!(matches!(&ev, Event::Nak { server: Some(SERVER), message: Some(m) } if m == "wrong network"), "{ev:?}");
        assert_ne!(c.xid(), 77);
        let tx = c.poll(t0).expect("discover due at once");
        assert_eq!(tx.kind, MessageType::Discover);
        assert_eq!(decode(&tx.bytes).xid(), c.xid());
    }

    #[test]
    fn unanswered_requests_fall_back_to_discover() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 3, t0);
        c.poll(t0).unwrap();
        c.handle(t0, &reply(3, MessageType::Offer, &MAC.0, &[]));
        let mut now = t0;
        let mut kinds = Vec::new();
        for _ in 0..REQUEST_TRIES + 1 {
            let tx = c.poll(now).unwrap();
            kinds.push(tx.kind);
            now = tx.deadline;
        }
        assert!(kinds[..REQUEST_TRIES as usize].iter().all(|k| *k == MessageType::Request));
        assert_eq!(kinds[REQUEST_TRIES as usize], MessageType::Discover);
    }

    const ROGUE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
    const ROGUE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 50);

    /// A reply from `server` offering `address`, with siaddr 0: boot information only
    /// from `extra`.
    fn reply_from(xid: u32, kind: MessageType, server: Ipv4Addr, address: Ipv4Addr, extra: &[DhcpOption]) -> Vec<u8> {
        let z = Ipv4Addr::UNSPECIFIED;
        let mut m = Message::new_with_id(xid, z, address, z, z, &MAC.0);
        m.set_opcode(Opcode::BootReply);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        m.opts_mut().insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        for o in extra {
            m.opts_mut().insert(o.clone());
        }
        m.to_vec().unwrap()
    }

    fn rogue_offer(xid: u32) -> Vec<u8> {
        reply_from(xid, MessageType::Offer, ROGUE, ROGUE_ADDR, &[DhcpOption::Router(vec![ROGUE])])
    }

    fn genuine_offer(xid: u32) -> Vec<u8> {
        reply_from(xid, MessageType::Offer, SERVER, ADDR, &[DhcpOption::RootPath("10.77.0.1:/export".into())])
    }

    fn lines(c: &mut DhcpClient) -> Vec<String> {
        c.take_passed_over().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_first_offer_with_a_root_path_is_requested_at_once() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 1, t0);
        c.poll(t0).unwrap();
        let ev = c.handle(t0, &genuine_offer(1));
        assert!(matches!(ev, Event::Offered { address: ADDR, server: SERVER }), "{ev:?}");
        assert_eq!(c.poll(t0).expect("request due at once").kind, MessageType::Request);
    }

    #[test]
    fn a_weak_first_offer_is_passed_over_for_a_good_one_within_the_window() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 2, t0);
        c.poll(t0).unwrap();
        let ev = c.handle(t0, &rogue_offer(2));
        assert!(
            matches!(
                ev,
                Event::Held { address: ROGUE_ADDR, server: Some(ROGUE), rapid_commit: false, window: OFFER_WINDOW }
            ),
            "{ev:?}"
        );
        assert!(c.next_deadline().unwrap() <= t0 + OFFER_WINDOW);
        assert!(c.settle(t0 + OFFER_WINDOW / 2).is_none(), "the window is not over");
        let ev = c.handle(t0 + OFFER_WINDOW / 2, &genuine_offer(2));
        assert!(matches!(ev, Event::Offered { address: ADDR, server: SERVER }), "{ev:?}");
        assert_eq!(
            lines(&mut c),
            ["offer of 192.168.77.50 from 192.168.77.1 passed over: no root path, next server or boot file"]
        );
        assert!(c.settle(t0 + OFFER_WINDOW * 2).is_none(), "the held offer is gone");
        let m = decode(&c.poll(t0 + OFFER_WINDOW / 2).unwrap().bytes);
        assert_eq!(m.opts().get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(SERVER)));
    }

    #[test]
    fn only_weak_offers_the_first_is_taken_when_the_window_ends() {
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 3, t0);
        c.poll(t0).unwrap();
        assert!(matches!(c.handle(t0, &rogue_offer(3)), Event::Held { .. }));
        let other = Ipv4Addr::new(172, 16, 0, 1);
        let later = reply_from(3, MessageType::Offer, other, Ipv4Addr::new(172, 16, 0, 9), &[]);
        assert!(matches!(c.handle(t0, &later), Event::Ignored(Ignored::PassedOver)));
        assert_eq!(
            lines(&mut c),
            ["offer of 172.16.0.9 from 172.16.0.1 passed over: no root path, next server or boot file"]
        );
        assert!(c.settle(t0 + OFFER_WINDOW - Duration::from_millis(1)).is_none());
        let ev = c.settle(t0 + OFFER_WINDOW).expect("the window is over");
        assert!(matches!(ev, Event::Offered { address: ROGUE_ADDR, server: ROGUE }), "{ev:?}");
        let tx = c.poll(t0 + OFFER_WINDOW).unwrap();
        assert_eq!(tx.kind, MessageType::Request);
        let m = decode(&tx.bytes);
        assert_eq!(m.opts().get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(ROGUE)));
    }

    #[test]
    fn the_allowlist_ignores_other_servers_and_names_them() {
        let t0 = Instant::now();
        let policy = OfferPolicy { allowed: vec![SERVER], ..OfferPolicy::default() };
        let mut c = DhcpClient::new(MAC, 4, t0).with_policy(policy);
        c.poll(t0).unwrap();
        // With boot information too: the allowlist is not about that.
        let rogue = reply_from(4, MessageType::Offer, ROGUE, ROGUE_ADDR, &[DhcpOption::RootPath("/x".into())]);
        assert!(matches!(c.handle(t0, &rogue), Event::Ignored(Ignored::PassedOver)));
        assert_eq!(
            lines(&mut c),
            ["offer of 192.168.77.50 from 192.168.77.1 ignored: not among diskless.dhcp_server=10.77.0.1"]
        );
        let weak = reply_from(4, MessageType::Offer, SERVER, ADDR, &[]);
        assert!(matches!(c.handle(t0, &weak), Event::Held { .. }), "an allowed server's weak offer is still weak");
        assert!(matches!(c.settle(t0 + OFFER_WINDOW), Some(Event::Offered { server: SERVER, .. })));
    }

    #[test]
    fn an_excluded_server_is_ignored_with_the_reason() {
        let t0 = Instant::now();
        let policy = OfferPolicy { excluded: vec![ROGUE], ..OfferPolicy::default() };
        let mut c = DhcpClient::new(MAC, 5, t0).with_policy(policy);
        c.poll(t0).unwrap();
        assert!(matches!(c.handle(t0, &rogue_offer(5)), Event::Ignored(Ignored::PassedOver)));
        assert_eq!(
            lines(&mut c),
            [
                "offer of 192.168.77.50 from 192.168.77.1 ignored: its lease could not reach the root server earlier in this boot"
            ]
        );
        assert!(c.settle(t0 + OFFER_WINDOW * 2).is_none(), "nothing held");
    }

    #[test]
    fn a_weak_rapid_commit_ack_waits_like_a_weak_offer() {
        let t0 = Instant::now();
        let ack = |xid| reply_from(xid, MessageType::Ack, ROGUE, ROGUE_ADDR, &[DhcpOption::RapidCommit]);
        // A good offer within the window wins over it.
        let mut c = DhcpClient::new(MAC, 6, t0);
        c.poll(t0).unwrap();
        assert!(matches!(c.handle(t0, &ack(6)), Event::Held { .. }));
        assert!(!c.is_bound());
        assert!(matches!(c.handle(t0, &genuine_offer(6)), Event::Offered { server: SERVER, .. }));
        assert_eq!(
            lines(&mut c),
            [
                "rapid-commit lease of 192.168.77.50 from 192.168.77.1 passed over: no root path, next server or boot file"
            ]
        );
        // Alone, it is bound when the window ends.
        let mut c = DhcpClient::new(MAC, 7, t0);
        c.poll(t0).unwrap();
        assert!(matches!(c.handle(t0, &ack(7)), Event::Held { rapid_commit: true, .. }));
        let Some(Event::Bound(lease)) = c.settle(t0 + OFFER_WINDOW) else { panic!("not bound") };
        assert!(lease.rapid_commit && c.is_bound());
        assert_eq!(lease.server_id, Some(ROGUE));
    }

    #[test]
    fn an_offer_from_or_next_to_the_root_server_carries_boot_information() {
        let root = Ipv4Addr::new(10, 77, 0, 9);
        let policy = OfferPolicy { boot_servers: vec![root], ..OfferPolicy::default() };
        let mut on_link = Lease::new(ADDR, Ipv4Addr::new(255, 255, 255, 0));
        assert!(policy.has_boot_info(&on_link), "the root server is in the offered subnet");
        on_link.address = ROGUE_ADDR;
        assert!(!policy.has_boot_info(&on_link));
        on_link.server_id = Some(root);
        assert!(policy.has_boot_info(&on_link), "offered by the root server");
        assert!(!OfferPolicy::default().has_boot_info(&Lease::new(ADDR, Ipv4Addr::new(255, 255, 255, 0))));
    }

    /// The QEMU rogue (a plain dnsmasq) sent siaddr = its own address, and its lease
    /// was taken at once as if it carried boot information.
    #[test]
    fn a_next_server_that_is_the_offering_server_itself_is_no_boot_information() {
        let policy = OfferPolicy::default();
        let mut offer = Lease::new(ROGUE_ADDR, Ipv4Addr::new(255, 255, 255, 0));
        offer.server_id = Some(ROGUE);
        offer.next_server = Some(ROGUE);
        assert!(!policy.has_boot_info(&offer));
        offer.next_server = Some(SERVER);
        assert!(policy.has_boot_info(&offer), "a next server elsewhere was configured");
        let t0 = Instant::now();
        let mut c = DhcpClient::new(MAC, 8, t0);
        c.poll(t0).unwrap();
        let mut m = decode(&rogue_offer(8));
        m.set_siaddr(ROGUE);
        assert!(matches!(c.handle(t0, &m.to_vec().unwrap()), Event::Held { .. }));
    }

    #[test]
    fn release_names_the_address_and_the_server() {
        let mut lease = Lease::new(ROGUE_ADDR, Ipv4Addr::new(255, 255, 255, 0));
        assert!(release_message(&MAC, 9, &lease).is_none(), "no server to release to");
        lease.server_id = Some(ROGUE);
        let m = decode(&release_message(&MAC, 9, &lease).unwrap());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Release));
        assert_eq!(m.ciaddr(), ROGUE_ADDR);
        assert_eq!(m.opts().get(OptionCode::ServerIdentifier), Some(&DhcpOption::ServerIdentifier(ROGUE)));
        assert_eq!(m.chaddr(), &MAC.0);
    }

    proptest::proptest! {
        #[test]
        fn handle_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let t0 = Instant::now();
            let mut c = DhcpClient::new(MAC, 1, t0);
            c.poll(t0);
            let _ = c.handle(t0, &bytes);
        }

        #[test]
        fn handle_never_panics_on_mutated_replies(
            pos in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 1..12),
            cut in 0usize..400,
        ) {
            let t0 = Instant::now();
            let mut c = DhcpClient::new(MAC, 1, t0);
            c.poll(t0);
            let mut b = reply(1, MessageType::Offer, &MAC.0, &[DhcpOption::Router(vec![SERVER]), DhcpOption::Hostname("x".into())]);
            for (p, v) in pos { if let Some(x) = b.get_mut(p) { *x = v; } }
            b.truncate(cut.max(1));
            let _ = c.handle(t0, &b);
            let _ = c.poll(t0);
        }
    }
}
