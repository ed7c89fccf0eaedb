//! Who this machine is: host name and domain from reverse DNS, DHCP, `ip=`
//! or the address, in that order of precedence.
//!
//! Every candidate is validated as an RFC 1123 name (letters, digits and
//! hyphens; labels of 1-63 bytes, not starting or ending with a hyphen; at
//! most 253 bytes; one trailing dot allowed) because the name becomes a path
//! component of the layer tree (`hosts/<name>`). A rejected candidate is
//! logged with the reason and the next source is used.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::dns::PtrOutcome;
use crate::text::Escaped;

/// Why a name is not a valid host name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
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
    match c.ptr {
        PtrOutcome::Names { names, server } => {
            for name in names {
                match validate_name(name) {
                    Ok(valid) => {
                        chosen = Some((valid, NameSource::Ptr));
                        break;
                    }
                    Err(why) => log(&format!("PTR answer \"{}\" from {server} rejected: {why}", Escaped(name))),
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
    Identity { hostname, fqdn, domain, source }
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
    use crate::net::dns::{DnsError, PtrAnswer, parse_ptr_reply, tests::reply};
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

    #[test]
    fn apply_sets_short_hostname_and_domain_and_reports_failures() {
        let id = Identity {
            hostname: "lab3-12".into(),
            fqdn: Some("lab3-12.example.edu".into()),
            domain: Some("example.edu".into()),
            source: NameSource::Ptr,
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
