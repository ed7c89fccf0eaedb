//! Who this machine is: host name and domain from reverse DNS, DHCP, `ip=`
//! or the address, in that order of precedence.
//!
//! Every candidate is validated as an RFC 1123 name (letters, digits and
//! hyphens; labels of 1-63 bytes, not starting or ending with a hyphen; at
//! most 253 bytes; one trailing dot allowed) because the name becomes a path
//! component of the layer tree (`hosts/<name>`). A rejected candidate is
//! logged with the reason and the next source is used.
//!
//! A name made from the address means the identity is *lost*: the HOWTO's
//! clients learn their names by reverse DNS, and the lab and host layers are
//! named after them, so an `ip-10-77-0-112` gets neither. [`LostIdentity`]
//! carries why (the typed failure of the reverse lookup) to the console, to
//! the local stage (which adds the layers it cost) and to boot.json. A name
//! from DHCP option 12 or `ip=` is an admin's deliberate choice, not a loss,
//! even when reverse DNS failed first.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::dns::{DnsError, PtrOutcome, TryError};
use crate::local::LayerKind;
use crate::text::Escaped;

/// Why a name is not a valid host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NameRejected {
    #[error("empty name")]
    Empty,
    #[error("{len} bytes, over 253")]
    TooLong { len: usize },
    #[error("empty label")]
    EmptyLabel,
    #[error("label of {} bytes, over 63", .label.len())]
    LabelTooLong { label: String },
    #[error("label \"{}\" contains {ch:?} (only letters, digits, '-')", Escaped(.label))]
    BadCharacter { label: String, ch: char },
    #[error("label \"{}\" starts or ends with '-'", Escaped(.label))]
    HyphenAtEdge { label: String },
}

/// Validates a host or domain name and returns it without its trailing dot,
/// in lower case (DNS names are case-insensitive; layer directories are not).
pub fn validate_name(name: &str) -> Result<String, NameRejected> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(NameRejected::Empty);
    }
    if name.len() > 253 {
        return Err(NameRejected::TooLong { len: name.len() });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameRejected::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(NameRejected::LabelTooLong { label: label.into() });
        }
        if let Some(ch) = label.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '-') {
            return Err(NameRejected::BadCharacter { label: label.into(), ch });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameRejected::HyphenAtEdge { label: label.into() });
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// Where the host name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// Reverse DNS of the leased address.
    Ptr,
    /// DHCP option 12.
    Dhcp,
    /// The hostname field of `ip=`.
    IpParam,
    /// Made from the address, e.g. `ip-10-77-0-112`.
    Address,
}

impl fmt::Display for NameSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameSource::Ptr => "reverse DNS",
            NameSource::Dhcp => "DHCP option 12",
            NameSource::IpParam => "the ip= hostname field",
            NameSource::Address => "the IP address",
        })
    }
}

/// The chosen identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Short host name (first label), as set with sethostname.
    pub hostname: String,
    /// Fully qualified name when known.
    pub fqdn: Option<String>,
    /// Domain (from the FQDN, else DHCP option 15), as set with setdomainname.
    pub domain: Option<String>,
    pub source: NameSource,
    /// Set when the name was made from the address: the machine is not who
    /// its layers think.
    pub lost: Option<LostIdentity>,
}

impl Identity {
    /// The console's warning when the identity is lost, naming why and the fix.
    pub fn lost_warning(&self) -> Option<String> {
        let lost = self.lost.as_ref()?;
        Some(format!(
            "WARNING: identity lost: {}, so the host name {} is made from the address and the lab and host \
             layers follow that made-up name: {}",
            lost.cause(),
            self.hostname,
            lost.fix()
        ))
    }
}

/// The host name was made from the address: why, and what it cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostIdentity {
    /// The address whose PTR record was missing or unusable.
    pub address: Ipv4Addr,
    pub reason: LostReason,
    /// The layers named after the made-up host name (lab and host), filled in by
    /// the local stage; empty if the boot did not get that far.
    pub layers: Vec<LostLayer>,
}

/// Why reverse DNS gave no name: the typed outcome of the lookup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LostReason {
    /// The lease (or `ip=`) names no DNS server.
    NoDnsServer,
    /// The server answered that there is no PTR record.
    NoPtrRecord { server: SocketAddr },
    /// The PTR record names something that is not a host name.
    PtrRejected { server: SocketAddr, name: String, why: NameRejected },
    /// No server gave a usable answer.
    NoAnswer { servers: Vec<SocketAddr>, tries: u32, last: LastTry },
    /// The lookup could not even start.
    NoSocket { error: String },
}

/// How the last try of a failed lookup ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LastTry {
    NotTried,
    TimedOut {
        server: SocketAddr,
        per_try_ms: u64,
    },
    SendFailed {
        server: SocketAddr,
        error: String,
    },
    ReceiveFailed {
        server: SocketAddr,
        error: String,
    },
    /// The server's answer was refused (SERVFAIL, malformed, ...).
    Rejected {
        server: SocketAddr,
        reason: String,
    },
}

impl From<&TryError> for LastTry {
    fn from(e: &TryError) -> LastTry {
        match e {
            TryError::NotTried => LastTry::NotTried,
            TryError::Timeout { server, per_try } => {
                LastTry::TimedOut { server: *server, per_try_ms: per_try.as_millis() as u64 }
            }
            TryError::Send { server, source } => LastTry::SendFailed { server: *server, error: source.to_string() },
            TryError::Receive { server, source } => {
                LastTry::ReceiveFailed { server: *server, error: source.to_string() }
            }
            TryError::Rejected { server, reason } => LastTry::Rejected { server: *server, reason: reason.to_string() },
        }
    }
}

impl fmt::Display for LastTry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastTry::NotTried => write!(f, "no try made"),
            LastTry::TimedOut { server, per_try_ms } => write!(f, "no answer from {server} within {per_try_ms} ms"),
            LastTry::SendFailed { server, error } => write!(f, "sending to {server} failed: {error}"),
            LastTry::ReceiveFailed { server, error } => write!(f, "receive error after asking {server}: {error}"),
            LastTry::Rejected { server, reason } => write!(f, "{server} answered badly: {reason}"),
        }
    }
}

/// A layer named after the made-up host name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostLayer {
    pub kind: LayerKind,
    /// Path inside the image, when one could be formed.
    pub path: Option<PathBuf>,
    /// True when a directory of that made-up name exists and was applied.
    pub applied: bool,
}

impl LostIdentity {
    /// Why reverse DNS gave no name, in words.
    pub fn cause(&self) -> String {
        let addr = self.address;
        match &self.reason {
            LostReason::NoDnsServer => {
                format!("the lease names no DNS server (DHCP option 6) to ask for the PTR record of {addr}")
            }
            LostReason::NoPtrRecord { server } => format!("no PTR record for {addr} at {server}"),
            LostReason::PtrRejected { server, name, why } => {
                format!("the PTR record of {addr} at {server} names {name:?}, which is no host name: {why}")
            }
            LostReason::NoAnswer { servers, tries, last } => {
                let servers = servers.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
                format!(
                    "the reverse lookup of {addr} got no usable answer from {servers} in {tries} tries (last: {last})"
                )
            }
            LostReason::NoSocket { error } => {
                format!("the reverse lookup of {addr} could not open a UDP socket: {error}")
            }
        }
    }

    /// What the admin does about it.
    pub fn fix(&self) -> String {
        let addr = self.address;
        match &self.reason {
            LostReason::NoDnsServer => {
                format!(
                    "give the DNS server in DHCP option 6 (or ip='s dns0 field; for a static ip=, by a DHCP server \
                     answering DHCPINFORM or a nameserver line in the image's network or base layer resolv.conf) \
                     and a PTR record for {addr}"
                )
            }
            LostReason::NoPtrRecord { .. } => format!("add a PTR record for {addr} in DNS"),
            LostReason::PtrRejected { .. } => {
                format!("make the PTR record of {addr} a host name (letters, digits and '-' in each label)")
            }
            LostReason::NoAnswer { .. } => format!(
                "make the DNS server of DHCP option 6 (or ip='s dns0 field) answer, with a PTR record for {addr}"
            ),
            LostReason::NoSocket { .. } => "check the kernel's IPv4 UDP support".to_string(),
        }
    }

    /// The layers it cost, short: `lab and host layers not applied`.
    pub fn layers_summary(&self) -> String {
        let kinds = |applied: bool| {
            let kinds: Vec<String> =
                self.layers.iter().filter(|l| l.applied == applied).map(|l| l.kind.to_string()).collect();
            let plural = if kinds.len() > 1 { "s" } else { "" };
            (!kinds.is_empty()).then(|| format!("{} layer{plural}", kinds.join(" and ")))
        };
        match (kinds(false), kinds(true)) {
            (None, None) => "lab and host layers not this machine's".into(),
            (Some(skipped), None) => format!("{skipped} not applied"),
            (None, Some(applied)) => format!("{applied} of the made-up name applied"),
            (Some(skipped), Some(applied)) => format!("{skipped} not applied, {applied} of the made-up name applied"),
        }
    }

    /// The local stage's warning: each layer named after the made-up `hostname`, and the fix.
    pub fn layers_warning(&self, hostname: &str) -> String {
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                let path = l.path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default();
                format!("{} layer{path} {}", l.kind, if l.applied { "applied" } else { "skipped" })
            })
            .collect();
        format!(
            "WARNING: identity lost: {} (named after the made-up host name {hostname}, not this machine's): {}",
            layers.join(", "),
            self.fix()
        )
    }
}

impl LostReason {
    /// The reason of a lookup that gave no name; `rejected` is the first PTR
    /// name refused, when the lookup gave names.
    fn of(ptr: &PtrOutcome, rejected: Option<(String, NameRejected)>) -> LostReason {
        match (ptr, rejected) {
            (PtrOutcome::Names { server, .. }, Some((name, why))) => {
                LostReason::PtrRejected { server: *server, name, why }
            }
            // An answer without names says as much as no record.
            (PtrOutcome::Names { server, .. }, None) | (PtrOutcome::NoRecord { server }, _) => {
                LostReason::NoPtrRecord { server: *server }
            }
            (PtrOutcome::Failed(DnsError::NoServers { .. }), _) => LostReason::NoDnsServer,
            (PtrOutcome::Failed(DnsError::Socket { source }), _) => LostReason::NoSocket { error: source.to_string() },
            (PtrOutcome::Failed(DnsError::NoAnswer { servers, tries, last, .. }), _) => {
                LostReason::NoAnswer { servers: servers.clone(), tries: *tries, last: last.into() }
            }
        }
    }
}

/// Name derived from the address when nothing else is usable.
pub fn address_name(addr: Ipv4Addr) -> String {
    let o = addr.octets();
    format!("ip-{}-{}-{}-{}", o[0], o[1], o[2], o[3])
}

/// Inputs to the choice, gathered by the caller.
#[derive(Clone, Debug)]
pub struct Candidates<'a> {
    pub ptr: &'a PtrOutcome,
    /// DHCP option 12.
    pub dhcp_hostname: Option<&'a str>,
    /// DHCP option 15.
    pub dhcp_domain: Option<&'a str>,
    pub ip_hostname: Option<&'a str>,
    pub address: Ipv4Addr,
}

/// Picks the identity by precedence, logging what won and why each earlier
/// candidate lost. Pure: the caller does the lookup and the system calls.
pub fn choose_identity(c: &Candidates<'_>, log: &mut dyn FnMut(&str)) -> Identity {
    let mut chosen: Option<(String, NameSource)> = None;
    let mut ptr_rejected = None;
    match c.ptr {
        PtrOutcome::Names { names, server } => {
            for name in names {
                match validate_name(name) {
                    Ok(valid) => {
                        chosen = Some((valid, NameSource::Ptr));
                        break;
                    }
                    Err(why) => {
                        log(&format!("PTR answer \"{}\" from {server} rejected: {why}", Escaped(name)));
                        ptr_rejected.get_or_insert((name.clone(), why));
                    }
                }
            }
        }
        PtrOutcome::NoRecord { server } => log(&format!("{server} has no PTR record for {}", c.address)),
        PtrOutcome::Failed(e) => log(&e.to_string()),
    }
    let others = [(c.dhcp_hostname, NameSource::Dhcp), (c.ip_hostname, NameSource::IpParam)];
    for (candidate, source) in others {
        if chosen.is_some() {
            break;
        }
        let Some(name) = candidate else { continue };
        match validate_name(name) {
            Ok(valid) => chosen = Some((valid, source)),
            Err(why) => log(&format!("host name \"{}\" from {source} rejected: {why}", Escaped(name))),
        }
    }
    let (name, source) = chosen.unwrap_or_else(|| (address_name(c.address), NameSource::Address));
    let (hostname, name_domain) = match name.split_once('.') {
        Some((short, domain)) => (short.to_string(), Some(domain.to_string())),
        None => (name.clone(), None),
    };
    let domain = name_domain.or_else(|| {
        let d = c.dhcp_domain?;
        validate_name(d)
            .map_err(|why| log(&format!("domain \"{}\" from DHCP option 15 rejected: {why}", Escaped(d))))
            .ok()
    });
    let fqdn = domain.as_ref().map(|d| format!("{hostname}.{d}"));
    log(&format!(
        "host name {hostname}{} from {source}",
        domain.as_ref().map(|d| format!(", domain {d}")).unwrap_or_default()
    ));
    let lost = (source == NameSource::Address).then(|| LostIdentity {
        address: c.address,
        reason: LostReason::of(c.ptr, ptr_rejected),
        layers: Vec::new(),
    });
    Identity { hostname, fqdn, domain, source, lost }
}

/// Errors applying the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("sethostname(\"{name}\") failed: {source}; init needs CAP_SYS_ADMIN")]
    SetHostname { name: String, source: std::io::Error },
    #[error("setdomainname(\"{name}\") failed: {source}; init needs CAP_SYS_ADMIN")]
    SetDomainname { name: String, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dns::{DnsError, PtrAnswer, TryError, parse_ptr_reply, tests::reply};
    use crate::os::fake::{Call, FakeOs, Kind};

    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 112);

    fn server() -> std::net::SocketAddr {
        "10.77.0.1:53".parse().unwrap()
    }

    fn choose(ptr: &PtrOutcome, dhcp: Option<&str>, ip: Option<&str>) -> (Identity, Vec<String>) {
        let mut lines = Vec::new();
        let c =
            Candidates { ptr, dhcp_hostname: dhcp, dhcp_domain: Some("dhcp.example"), ip_hostname: ip, address: ADDR };
        let id = choose_identity(&c, &mut |l| lines.push(l.to_string()));
        (id, lines)
    }

    /// Runs a hand-made wire answer through the real parser into the choice.
    fn ptr_from_wire(labels: &[&[u8]]) -> PtrOutcome {
        let bytes = reply(9, ADDR, 0, &[labels]);
        match parse_ptr_reply(&bytes, 9, ADDR).unwrap() {
            PtrAnswer::Names(names) => PtrOutcome::Names { names, server: server() },
            PtrAnswer::NoRecord => PtrOutcome::NoRecord { server: server() },
        }
    }

    #[test]
    fn valid_names_pass_trailing_dot_stripped_lowercased() {
        assert_eq!(validate_name("Lab3-12.Example.EDU.").unwrap(), "lab3-12.example.edu");
        assert_eq!(validate_name(&"a".repeat(63)).unwrap(), "a".repeat(63));
    }

    #[test]
    fn invalid_names_are_rejected_with_reason() {
        assert_eq!(validate_name(""), Err(NameRejected::Empty));
        assert_eq!(validate_name("."), Err(NameRejected::Empty));
        assert_eq!(validate_name("a..b"), Err(NameRejected::EmptyLabel));
        assert_eq!(validate_name(".a"), Err(NameRejected::EmptyLabel));
        assert!(matches!(validate_name(&"a".repeat(64)), Err(NameRejected::LabelTooLong { .. })));
        let long = vec!["abcdefg"; 32].join(".");
        assert_eq!(validate_name(&long), Err(NameRejected::TooLong { len: long.len() }));
        assert_eq!(validate_name("a/b.edu"), Err(NameRejected::BadCharacter { label: "a/b".into(), ch: '/' }));
        assert!(matches!(validate_name("-a.edu"), Err(NameRejected::HyphenAtEdge { .. })));
        assert!(matches!(validate_name("a_b"), Err(NameRejected::BadCharacter { ch: '_', .. })));
    }

    #[test]
    fn ptr_wins_and_gives_short_name_and_domain() {
        let (id, lines) = choose(&ptr_from_wire(&[b"lab3-12", b"example", b"edu"]), Some("other"), Some("third"));
        assert_eq!(id.hostname, "lab3-12");
        assert_eq!(id.domain.as_deref(), Some("example.edu"));
        assert_eq!(id.fqdn.as_deref(), Some("lab3-12.example.edu"));
        assert_eq!(id.source, NameSource::Ptr);
        assert!(lines.iter().any(|l| l.contains("from reverse DNS")), "{lines:?}");
    }

    #[test]
    fn ptr_naming_dot_dot_is_rejected_with_reason_and_dhcp_name_used() {
        let (id, lines) = choose(&ptr_from_wire(&[b"a..b", b"edu"]), Some("lab3-12"), None);
        assert_eq!(id.hostname, "lab3-12");
        assert_eq!(id.source, NameSource::Dhcp);
        assert_eq!(id.domain.as_deref(), Some("dhcp.example"), "domain falls back to option 15");
        assert!(
            lines.iter().any(|l| l.contains("PTR answer \"a..b.edu\"") && l.contains("rejected: empty label")),
            "{lines:?}"
        );
    }

    #[test]
    fn ptr_over_253_bytes_is_rejected_and_ip_hostname_used() {
        // The wire limit is 255 octets, so the DNS parser already refuses
        // such an answer; the name check catches what a parser might let by.
        let label = [b'x'; 60];
        let labels: Vec<&[u8]> = vec![&label[..]; 5];
        let wire = reply(9, ADDR, 0, &[&labels]);
        assert!(parse_ptr_reply(&wire, 9, ADDR).is_err(), "a 306-octet wire name must not parse");
        let long = PtrOutcome::Names { names: vec![vec!["x".repeat(60); 5].join(".")], server: server() };
        let (id, lines) = choose(&long, None, Some("from-ip"));
        assert_eq!(id.hostname, "from-ip");
        assert_eq!(id.source, NameSource::IpParam);
        assert!(lines.iter().any(|l| l.contains("rejected: 304 bytes, over 253")), "{lines:?}");
    }

    #[test]
    fn ptr_label_with_slash_is_rejected_and_address_name_used() {
        let (id, lines) = choose(&ptr_from_wire(&[b"..", b"etc"]), None, None);
        assert_eq!(id.source, NameSource::Address);
        assert_eq!(id.hostname, "ip-10-77-0-112");
        assert!(lines.iter().any(|l| l.contains("rejected")), "{lines:?}");
        let (id, lines) = choose(&ptr_from_wire(&[b"a/b", b"edu"]), Some("bad name"), None);
        assert_eq!(id.source, NameSource::Address);
        assert!(lines.iter().any(|l| l.contains("contains '/'")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("\"bad name\" from DHCP option 12 rejected")), "{lines:?}");
    }

    #[test]
    fn no_record_or_failed_lookup_falls_back_to_dhcp_name() {
        let (id, _) = choose(&PtrOutcome::NoRecord { server: server() }, Some("lab3-12.example.edu"), None);
        assert_eq!((id.hostname.as_str(), id.domain.as_deref()), ("lab3-12", Some("example.edu")));
        let failed = PtrOutcome::Failed(DnsError::NoServers { addr: ADDR });
        let (id, lines) = choose(&failed, Some("lab3-12"), None);
        assert_eq!(id.source, NameSource::Dhcp);
        assert!(lines.iter().any(|l| l.contains("no DNS server")), "{lines:?}");
    }

    /// The identity chosen with nothing but `ptr`: made from the address, so lost.
    fn lost_by(ptr: PtrOutcome) -> (Identity, LostIdentity) {
        let (id, _) = choose(&ptr, None, None);
        assert_eq!((id.hostname.as_str(), id.source), ("ip-10-77-0-112", NameSource::Address));
        let lost = id.lost.clone().expect("a name made from the address is a lost identity");
        assert_eq!(lost.address, ADDR);
        assert!(lost.layers.is_empty(), "the local stage fills them in");
        (id, lost)
    }

    fn warning(id: &Identity) -> String {
        id.lost_warning().unwrap()
    }

    #[test]
    fn no_ptr_record_loses_the_identity_and_says_add_one() {
        let (id, lost) = lost_by(PtrOutcome::NoRecord { server: server() });
        assert_eq!(lost.reason, LostReason::NoPtrRecord { server: server() });
        assert_eq!(
            warning(&id),
            "WARNING: identity lost: no PTR record for 10.77.0.112 at 10.77.0.1:53, so the host name ip-10-77-0-112 \
             is made from the address and the lab and host layers follow that made-up name: add a PTR record for \
             10.77.0.112 in DNS"
        );
    }

    #[test]
    fn no_dns_server_loses_the_identity_and_says_give_one() {
        let (id, lost) = lost_by(PtrOutcome::Failed(DnsError::NoServers { addr: ADDR }));
        assert_eq!(lost.reason, LostReason::NoDnsServer);
        let w = warning(&id);
        assert!(w.contains("identity lost: the lease names no DNS server (DHCP option 6)"), "{w}");
        assert!(
            w.ends_with(
                ": give the DNS server in DHCP option 6 (or ip='s dns0 field; for a static ip=, by a DHCP server \
                 answering DHCPINFORM or a nameserver line in the image's network or base layer resolv.conf) and a \
                 PTR record for 10.77.0.112"
            ),
            "{w}"
        );
    }

    #[test]
    fn rejected_ptr_answer_loses_the_identity_with_the_first_name_and_why() {
        let ptr = PtrOutcome::Names { names: vec!["a/b.edu".into(), "-x".into()], server: server() };
        let (id, lost) = lost_by(ptr);
        let why = NameRejected::BadCharacter { label: "a/b".into(), ch: '/' };
        assert_eq!(lost.reason, LostReason::PtrRejected { server: server(), name: "a/b.edu".into(), why });
        let w = warning(&id);
        assert!(
            w.contains("the PTR record of 10.77.0.112 at 10.77.0.1:53 names \"a/b.edu\", which is no host name: label \"a/b\" contains '/'"),
            "{w}"
        );
        assert!(
            w.ends_with(": make the PTR record of 10.77.0.112 a host name (letters, digits and '-' in each label)"),
            "{w}"
        );
    }

    /// A name with a control character is shown escaped, not sent to the terminal.
    #[test]
    fn rejected_ptr_name_with_a_control_character_is_shown_escaped() {
        let (id, _) = lost_by(PtrOutcome::Names { names: vec!["a\x1b[2Jb".into()], server: server() });
        let w = warning(&id);
        assert!(w.contains("names \"a\\u{1b}[2Jb\""), "{w}");
        assert!(!w.contains('\x1b'), "{w}");
    }

    #[test]
    fn timed_out_lookup_loses_the_identity_with_the_last_try() {
        let last = TryError::Timeout { server: server(), per_try: std::time::Duration::from_secs(1) };
        let failed = DnsError::NoAnswer { addr: ADDR, servers: vec![server()], tries: 3, last };
        let (id, lost) = lost_by(PtrOutcome::Failed(failed));
        let last = LastTry::TimedOut { server: server(), per_try_ms: 1000 };
        assert_eq!(lost.reason, LostReason::NoAnswer { servers: vec![server()], tries: 3, last });
        let w = warning(&id);
        assert!(
            w.contains("the reverse lookup of 10.77.0.112 got no usable answer from 10.77.0.1:53 in 3 tries (last: no answer from 10.77.0.1:53 within 1000 ms)"),
            "{w}"
        );
        assert!(w.contains(": make the DNS server of DHCP option 6 (or ip='s dns0 field) answer"), "{w}");
    }

    #[test]
    fn refused_send_and_socket_failures_keep_their_kind() {
        let refused = TryError::Send { server: server(), source: std::io::Error::other("unreachable") };
        let failed = DnsError::NoAnswer { addr: ADDR, servers: vec![server()], tries: 1, last: refused };
        let (_, lost) = lost_by(PtrOutcome::Failed(failed));
        assert!(
            matches!(&lost.reason, LostReason::NoAnswer { last: LastTry::SendFailed { error, .. }, .. } if error == "unreachable"),
            "{lost:?}"
        );
        let (id, lost) =
            lost_by(PtrOutcome::Failed(DnsError::Socket { source: std::io::Error::other("EAFNOSUPPORT") }));
        assert_eq!(lost.reason, LostReason::NoSocket { error: "EAFNOSUPPORT".into() });
        assert!(warning(&id).contains("could not open a UDP socket: EAFNOSUPPORT"), "{}", warning(&id));
    }

    /// Option 12 and `ip=` are the admin's choice: the boot is not warned about them,
    /// even when reverse DNS failed first.
    #[test]
    fn names_from_dhcp_or_ip_are_not_lost_even_without_ptr() {
        let no_record = PtrOutcome::NoRecord { server: server() };
        let (id, _) = choose(&no_record, Some("lab3-12"), None);
        assert_eq!((id.lost_warning(), id.source, id.lost), (None, NameSource::Dhcp, None));
        let (id, _) = choose(&no_record, None, Some("lab3-12"));
        assert_eq!((id.source, id.lost), (NameSource::IpParam, None));
        let (id, _) = choose(&ptr_from_wire(&[b"lab3-12", b"edu"]), None, None);
        assert_eq!((id.source, id.lost), (NameSource::Ptr, None));
    }

    #[test]
    fn layers_of_the_made_up_name_are_summed_up_by_what_became_of_them() {
        let layer = |kind, applied| LostLayer { kind, path: Some(format!("/diskless/{kind}").into()), applied };
        let mut lost = LostIdentity {
            address: ADDR,
            reason: LostReason::NoPtrRecord { server: server() },
            layers: vec![layer(LayerKind::Lab, false), layer(LayerKind::Host, false)],
        };
        assert_eq!(lost.layers_summary(), "lab and host layers not applied");
        assert_eq!(
            lost.layers_warning("ip-10-77-0-112"),
            "WARNING: identity lost: lab layer /diskless/lab skipped, host layer /diskless/host skipped (named after \
             the made-up host name ip-10-77-0-112, not this machine's): add a PTR record for 10.77.0.112 in DNS"
        );
        lost.layers[1].applied = true;
        assert_eq!(lost.layers_summary(), "lab layer not applied, host layer of the made-up name applied");
        lost.layers.clear();
        assert_eq!(lost.layers_summary(), "lab and host layers not this machine's");
    }

    #[test]
    fn apply_sets_short_hostname_and_domain_and_reports_failures() {
        let id = Identity {
            hostname: "lab3-12".into(),
            fqdn: Some("lab3-12.example.edu".into()),
            domain: Some("example.edu".into()),
            source: NameSource::Ptr,
            lost: None,
        };
        let os = FakeOs::default();
        os.fail_nth(Kind::SetDomainname, 1, 1);
        let e = crate::net::apply_identity(&id, &os).unwrap_err();
        assert_eq!(
            os.calls(),
            [Call::SetHostname { name: "lab3-12".into() }, Call::SetDomainname { name: "example.edu".into() }]
        );
        assert!(e.to_string().contains("setdomainname(\"example.edu\")"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics_and_accepted_names_are_safe_paths(s in "\\PC{0,300}") {
            if let Ok(n) = validate_name(&s) {
                proptest::prop_assert!(!n.contains('/') && !n.contains("..") && n.len() <= 253);
            }
        }
    }
}
