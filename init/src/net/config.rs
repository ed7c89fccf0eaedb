//! Network parameters of the kernel command line: `ip=`, `BOOTIF=` and the
//! `diskless.*` keys that tune the network stage.
//!
//! `ip=` follows the kernel's syntax (Documentation/admin-guide/nfs/nfsroot.rst):
//! a single keyword (`dhcp`, `on`, `any`, `off`, `none`, `bootp`, `rarp`, `both`),
//! the dracut-style `<dev>:<keyword>`, or up to ten colon-separated fields
//! `<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
//! any of them empty or absent (pxelinux `IPAPPEND 1` writes the first four).
//! A client address with no dynamic autoconf keyword is a static
//! configuration: no DHCP is run.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::dhcp::OfferPolicy;
use crate::cmdline::Cmdline;
use crate::config::Config;
use crate::root::RootRequest;

/// Default wait for links without carrier before they are given up.
pub const DEFAULT_CARRIER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default total time for DHCP before the stage reports failure (and the
/// failure policy decides between retrying and rebooting).
pub const DEFAULT_DHCP_TIMEOUT: Duration = Duration::from_secs(120);

/// An Ethernet hardware address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Mac::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a MAC address")))
    }
}

impl Mac {
    /// Parses six hex bytes separated by `:` or `-` (the sysfs `address`
    /// file and the MAC part of `BOOTIF=`). `None` when it is anything else.
    pub fn parse(text: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = text.trim().split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

/// The autoconfiguration method named by `ip=`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Autoconf {
    /// Field empty or absent.
    Unset,
    /// `off` or `none`.
    Off,
    /// `on` or `any`.
    Any,
    Dhcp,
    Bootp,
    /// There is no RARP client; DHCP is used instead and a warning logged.
    Rarp,
    Both,
}

impl Autoconf {
    /// Whether this keyword asks for dynamic configuration.
    pub fn is_dynamic(self) -> bool {
        !matches!(self, Autoconf::Unset | Autoconf::Off)
    }
}

/// Keywords of the autoconf field and of the one-word `ip=` form.
const AUTOCONF_KEYWORDS: [(&str, Autoconf); 8] = [
    ("off", Autoconf::Off),
    ("none", Autoconf::Off),
    ("on", Autoconf::Any),
    ("any", Autoconf::Any),
    ("dhcp", Autoconf::Dhcp),
    ("bootp", Autoconf::Bootp),
    ("rarp", Autoconf::Rarp),
    ("both", Autoconf::Both),
];

fn autoconf_keyword(word: &str) -> Option<Autoconf> {
    AUTOCONF_KEYWORDS.iter().find(|(name, _)| name.eq_ignore_ascii_case(word)).map(|&(_, a)| a)
}

/// All fields of an `ip=` parameter; absent fields are `None`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct IpParam {
    pub client: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub netmask: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub device: Option<String>,
    pub autoconf: Option<Autoconf>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Option<Ipv4Addr>,
}

/// What the network stage is asked to do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IpMode {
    /// DHCP, on `device` only if one is named.
    Dhcp { device: Option<String>, method: Autoconf },
    /// Static configuration from `ip=`, no DHCP.
    Static,
    /// `ip=off`/`ip=none` with no address: the network stage does nothing.
    Off,
}

impl IpParam {
    /// How the parameter's fields combine into a mode: a client address
    /// without a dynamic keyword is static (as the kernel does), no address
    /// and `off` disables networking, everything else is DHCP.
    pub fn mode(&self) -> IpMode {
        let autoconf = self.autoconf.unwrap_or(Autoconf::Unset);
        if autoconf.is_dynamic() {
            return IpMode::Dhcp { device: self.device.clone(), method: autoconf };
        }
        match (self.client, autoconf) {
            (Some(_), _) => IpMode::Static,
            (None, Autoconf::Off) => IpMode::Off,
            (None, _) => IpMode::Dhcp { device: self.device.clone(), method: Autoconf::Any },
        }
    }

    /// The netmask to use: the given one, else the classful default the
    /// kernel derives from the client address.
    pub fn effective_netmask(&self) -> Option<Ipv4Addr> {
        self.netmask.or_else(|| {
            let first = self.client?.octets()[0];
            Some(match first {
                0..=127 => Ipv4Addr::new(255, 0, 0, 0),
                128..=191 => Ipv4Addr::new(255, 255, 0, 0),
                _ => Ipv4Addr::new(255, 255, 255, 0),
            })
        })
    }
}

type FieldParser = fn(&mut IpParam, &str) -> Result<(), FieldError>;

/// Why one field of `ip=` was refused. The text follows "field <name> = "<value>" is".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("not an IPv4 address")]
    NotAnIpv4Address(#[source] std::net::AddrParseError),
    #[error("not a contiguous netmask")]
    NotAContiguousNetmask,
    #[error("not a host name (over 253 bytes or control characters)")]
    NotAHostName,
    #[error("not an interface name (at most 15 bytes, no '/')")]
    NotAnInterfaceName,
    #[error("not one of off, none, on, any, dhcp, bootp, rarp, both")]
    NotAnAutoconfKeyword,
}

fn parse_v4(value: &str) -> Result<Ipv4Addr, FieldError> {
    value.parse().map_err(FieldError::NotAnIpv4Address)
}

fn parse_name(value: &str) -> Result<String, FieldError> {
    // The hostname is validated where it is used (identity); here it only
    // must not be absurd, so a typo is reported where it was made.
    if value.len() > 253 || value.chars().any(|c| c.is_control()) {
        return Err(FieldError::NotAHostName);
    }
    Ok(value.to_string())
}

fn parse_device(value: &str) -> Result<String, FieldError> {
    if value.len() > 15 || value.contains(['/', '\0']) || value == "." || value == ".." {
        return Err(FieldError::NotAnInterfaceName);
    }
    Ok(value.to_string())
}

/// The ten fields of the kernel form, in order: name for messages and parser.
const IP_FIELDS: [(&str, FieldParser); 10] = [
    ("client-ip", |p, v| {
        p.client = Some(parse_v4(v)?);
        Ok(())
    }),
    ("server-ip", |p, v| {
        p.server = Some(parse_v4(v)?);
        Ok(())
    }),
    ("gw-ip", |p, v| {
        p.gateway = Some(parse_v4(v)?);
        Ok(())
    }),
    ("netmask", |p, v| {
        let mask = parse_v4(v)?;
        if mask_prefix(mask).is_none() {
            return Err(FieldError::NotAContiguousNetmask);
        }
        p.netmask = Some(mask);
        Ok(())
    }),
    ("hostname", |p, v| {
        p.hostname = Some(parse_name(v)?);
        Ok(())
    }),
    ("device", |p, v| {
        p.device = Some(parse_device(v)?);
        Ok(())
    }),
    ("autoconf", |p, v| {
        let a = autoconf_keyword(v).ok_or(FieldError::NotAnAutoconfKeyword)?;
        p.autoconf = Some(a);
        Ok(())
    }),
    ("dns0-ip", |p, v| {
        p.dns.push(parse_v4(v)?);
        Ok(())
    }),
    ("dns1-ip", |p, v| {
        p.dns.push(parse_v4(v)?);
        Ok(())
    }),
    ("ntp0-ip", |p, v| {
        p.ntp = Some(parse_v4(v)?);
        Ok(())
    }),
];

/// Prefix length of a contiguous netmask.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Netmask of a prefix length (clamped to 32).
pub fn prefix_mask(prefix: u8) -> Ipv4Addr {
    let prefix = u32::from(prefix.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - prefix).unwrap_or(0))
}

/// Errors in the network parameters of the command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field of `ip=` has a bad value.
    #[error(
        "ip={value}: field {field} = \"{field_value}\" is {reason}; fix the ip= parameter (kernel nfsroot.rst syntax) or remove it to use DHCP"
    )]
    IpField {
        value: String,
        field: &'static str,
        field_value: String,
        #[source]
        reason: FieldError,
    },
    /// `ip=` has more than ten fields.
    #[error(
        "ip={value}: more than 10 colon-separated fields; the form is <client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>"
    )]
    IpTooManyFields { value: String },
    /// `BOOTIF=` is not `01-` followed by six hex bytes.
    #[error("BOOTIF={value}: expected 01-aa-bb-cc-dd-ee-ff (pxelinux IPAPPEND 2); fix or remove it to try every NIC")]
    BootIf { value: String },
    /// An entry of `diskless.dhcp_server=` is not an IPv4 address.
    #[error("{key}={value}: {item:?} is not an IPv4 address; write the DHCP servers' addresses as IP[,IP...]")]
    Server { key: String, value: String, item: String },
    /// A `diskless.*` duration is not a number of seconds.
    #[error("{key}={value}: expected a whole number of seconds")]
    Seconds { key: String, value: String, source: std::num::ParseIntError },
}

/// Parses the value of one `ip=` parameter.
pub fn parse_ip(value: &str) -> Result<IpParam, ConfigError> {
    let mut param = IpParam::default();
    if !value.contains(':') {
        if value.is_empty() {
            return Ok(param);
        }
        let a = autoconf_keyword(value).ok_or_else(|| ConfigError::IpField {
            value: value.into(),
            field: "autoconf",
            field_value: value.into(),
            reason: FieldError::NotAnAutoconfKeyword,
        })?;
        param.autoconf = Some(a);
        return Ok(param);
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > IP_FIELDS.len() {
        return Err(ConfigError::IpTooManyFields { value: value.into() });
    }
    // dracut's `<dev>:<keyword>`: two fields whose second is a keyword; in
    // the kernel form the second field is an address, so there is no clash.
    if let [dev, word] = fields[..]
        && let Some(a) = autoconf_keyword(word)
    {
        if !dev.is_empty() {
            param.device = Some(parse_device(dev).map_err(|reason| ConfigError::IpField {
                value: value.into(),
                field: "device",
                field_value: dev.into(),
                reason,
            })?);
        }
        param.autoconf = Some(a);
        return Ok(param);
    }
    for (field_value, (name, parse)) in fields.iter().zip(IP_FIELDS.iter()) {
        if field_value.is_empty() {
            continue;
        }
        parse(&mut param, field_value).map_err(|reason| ConfigError::IpField {
            value: value.into(),
            field: name,
            field_value: (*field_value).into(),
            reason,
        })?;
    }
    Ok(param)
}

/// Parses `BOOTIF=01-aa-bb-cc-dd-ee-ff` (hardware type 1, Ethernet).
/// A bare colon-separated MAC is accepted too, as some boot loaders write it.
pub fn parse_bootif(value: &str) -> Result<Mac, ConfigError> {
    let err = || ConfigError::BootIf { value: value.into() };
    // A dash-separated value must carry the type prefix: "01-52-54-00-77-03"
    // is a truncated BOOTIF, not the MAC 01:52:54:00:77:03.
    let mac = match value.strip_prefix("01-") {
        Some(rest) if value.len() == 20 => Mac::parse(rest),
        _ if !value.contains('-') => Mac::parse(value),
        _ => None,
    };
    mac.ok_or_else(err)
}

/// Network configuration of this boot, from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConfig {
    /// The last `ip=` parameter; `None` when there is none (DHCP everywhere).
    pub ip: Option<IpParam>,
    /// `BOOTIF=`: only the NIC with this MAC is used.
    pub bootif: Option<Mac>,
    /// `diskless.carrier_timeout=<s>`
    pub carrier_timeout: Duration,
    /// `diskless.dhcp_timeout=<s>`
    pub dhcp_timeout: Duration,
    /// `diskless.dhcp_server=IP[,IP...]`: accept offers only from these servers
    /// (empty: from any).
    pub dhcp_servers: Vec<Ipv4Addr>,
    /// The root the command line asks for, when known: the network stage checks
    /// that a lease without boot information can reach its server.
    pub root: Option<RootRequest>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            ip: None,
            bootif: None,
            carrier_timeout: DEFAULT_CARRIER_TIMEOUT,
            dhcp_timeout: DEFAULT_DHCP_TIMEOUT,
            dhcp_servers: Vec::new(),
            root: None,
        }
    }
}

/// `IP[,IP...]`, as `diskless.dhcp_server=` takes it.
pub fn parse_servers(key: &str, value: &str) -> Result<Vec<Ipv4Addr>, ConfigError> {
    value
        .split(',')
        .map(|item| {
            item.trim().parse().map_err(|_| ConfigError::Server {
                key: key.into(),
                value: value.into(),
                item: item.into(),
            })
        })
        .collect()
}

fn parse_seconds(key: &str, value: &str) -> Result<Duration, ConfigError> {
    value.parse::<u32>().map(|s| Duration::from_secs(u64::from(s))).map_err(|source| ConfigError::Seconds {
        key: key.into(),
        value: value.into(),
        source,
    })
}

impl NetConfig {
    /// Builds the configuration from command-line parameters as `(key,
    /// value)` pairs (value `""` for a bare word). Parameters that are not
    /// about the network are ignored; a later `ip=` overrides an earlier one,
    /// as in the kernel.
    pub fn from_params<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<NetConfig, ConfigError> {
        let mut cfg = NetConfig::default();
        for (key, value) in params {
            match key {
                "ip" => cfg.ip = Some(parse_ip(value)?),
                "BOOTIF" => cfg.bootif = Some(parse_bootif(value)?),
                "diskless.carrier_timeout" => cfg.carrier_timeout = parse_seconds(key, value)?,
                "diskless.dhcp_timeout" => cfg.dhcp_timeout = parse_seconds(key, value)?,
                "diskless.dhcp_server" => cfg.dhcp_servers = parse_servers(key, value)?,
                _ => {}
            }
        }
        Ok(cfg)
    }

    /// Convenience over [`NetConfig::from_params`] for a whole command line
    /// split at white space (network parameters never contain quotes).
    /// The boot's network configuration: the kernel's parameters of the command line
    /// (`diskless.*` ones are the configuration's) and the configuration's validated
    /// timeouts, so both read `diskless.*_timeout` the same way.
    pub fn for_boot(cmdline: &Cmdline, config: &Config) -> Result<NetConfig, ConfigError> {
        let params = cmdline
            .raw
            .iter()
            .filter(|(k, _)| !k.starts_with(crate::config::CMDLINE_PREFIX))
            .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or("")));
        let mut cfg = NetConfig::from_params(params)?;
        cfg.carrier_timeout = Duration::from_secs(config.carrier_timeout);
        cfg.dhcp_timeout = Duration::from_secs(config.dhcp_timeout);
        cfg.dhcp_servers = config.dhcp_server.clone();
        Ok(cfg)
    }

    pub fn from_cmdline(cmdline: &str) -> Result<NetConfig, ConfigError> {
        NetConfig::from_params(cmdline.split_ascii_whitespace().map(|w| w.split_once('=').unwrap_or((w, ""))))
    }

    /// What to do; no `ip=` means DHCP on every NIC.
    pub fn mode(&self) -> IpMode {
        match &self.ip {
            Some(p) => p.mode(),
            None => IpMode::Dhcp { device: None, method: Autoconf::Any },
        }
    }

    /// The offer policy this command line asks for: the allowlist, and the servers
    /// it names (the `ip=` server, the NFS root server) as those that serve boots.
    pub fn offer_policy(&self) -> OfferPolicy {
        let root_servers = match &self.root {
            Some(RootRequest::Spec { servers, .. }) => servers.clone(),
            _ => Vec::new(),
        };
        let ip_server = self.ip.as_ref().and_then(|ip| ip.server);
        OfferPolicy {
            allowed: self.dhcp_servers.clone(),
            excluded: Vec::new(),
            boot_servers: ip_server.into_iter().chain(root_servers).collect(),
        }
    }

    /// The host name given in `ip=`, the third choice for the host name.
    pub fn ip_hostname(&self) -> Option<&str> {
        self.ip.as_ref()?.hostname.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn one_word_forms_select_dhcp_or_off() {
        for word in ["dhcp", "on", "any", "bootp", "both", "rarp", "DHCP"] {
            let p = parse_ip(word).unwrap();
            assert!(matches!(p.mode(), IpMode::Dhcp { device: None, .. }), "{word}");
        }
        for word in ["off", "none"] {
            assert_eq!(parse_ip(word).unwrap().mode(), IpMode::Off, "{word}");
        }
    }

    #[test]
    fn device_colon_dhcp_restricts_to_that_device() {
        let p = parse_ip("eth1:dhcp").unwrap();
        assert_eq!(p.mode(), IpMode::Dhcp { device: Some("eth1".into()), method: Autoconf::Dhcp });
    }

    #[test]
    fn full_static_form_fills_every_field() {
        let p =
            parse_ip("10.0.0.5:10.0.0.1:10.0.0.254:255.255.255.0:lab3-12:eth0:off:10.0.0.2:10.0.0.3:10.0.0.4").unwrap();
        assert_eq!(p.client, Some(ip("10.0.0.5")));
        assert_eq!(p.server, Some(ip("10.0.0.1")));
        assert_eq!(p.gateway, Some(ip("10.0.0.254")));
        assert_eq!(p.netmask, Some(ip("255.255.255.0")));
        assert_eq!(p.hostname.as_deref(), Some("lab3-12"));
        assert_eq!(p.device.as_deref(), Some("eth0"));
        assert_eq!(p.autoconf, Some(Autoconf::Off));
        assert_eq!(p.dns, vec![ip("10.0.0.2"), ip("10.0.0.3")]);
        assert_eq!(p.ntp, Some(ip("10.0.0.4")));
        assert_eq!(p.mode(), IpMode::Static);
    }

    #[test]
    fn pxelinux_ipappend1_four_fields_is_static() {
        let p = parse_ip("192.168.1.23:192.168.1.1:192.168.1.254:255.255.255.0").unwrap();
        assert_eq!(p.mode(), IpMode::Static);
        assert_eq!(p.gateway, Some(ip("192.168.1.254")));
        assert_eq!(p.device, None);
    }

    #[test]
    fn empty_fields_are_absent_and_autoconf_dhcp_with_address_runs_dhcp() {
        let p = parse_ip(":::::eth2:dhcp").unwrap();
        assert_eq!(p.mode(), IpMode::Dhcp { device: Some("eth2".into()), method: Autoconf::Dhcp });
        let p = parse_ip("10.1.2.3::::::dhcp").unwrap();
        assert!(matches!(p.mode(), IpMode::Dhcp { .. }));
        let p = parse_ip("::::host1").unwrap();
        assert_eq!(p.hostname.as_deref(), Some("host1"));
        assert!(matches!(p.mode(), IpMode::Dhcp { device: None, .. }));
    }

    #[test]
    fn missing_netmask_uses_classful_default() {
        let p = parse_ip("172.16.0.9").unwrap_err();
        // A bare address has no colon and is therefore not a keyword.
        assert!(matches!(p, ConfigError::IpField { field: "autoconf", .. }));
        let p = parse_ip("172.16.0.9::").unwrap();
        assert_eq!(p.effective_netmask(), Some(ip("255.255.0.0")));
        let p = parse_ip("10.1.0.9::").unwrap();
        assert_eq!(p.effective_netmask(), Some(ip("255.0.0.0")));
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let e = parse_ip("10.0.0.5:10.0.0.1:bogus:255.255.255.0").unwrap_err();
        assert_eq!(
            e,
            ConfigError::IpField {
                value: "10.0.0.5:10.0.0.1:bogus:255.255.255.0".into(),
                field: "gw-ip",
                field_value: "bogus".into(),
                reason: FieldError::NotAnIpv4Address("bogus".parse::<Ipv4Addr>().unwrap_err())
            }
        );
        assert_eq!(
            e.to_string(),
            "ip=10.0.0.5:10.0.0.1:bogus:255.255.255.0: field gw-ip = \"bogus\" is not an IPv4 address; fix the ip= parameter (kernel nfsroot.rst syntax) or remove it to use DHCP"
        );
        let e = parse_ip("10.0.0.5::::::sometimes").unwrap_err();
        assert!(matches!(e, ConfigError::IpField { field: "autoconf", .. }));
        let e = parse_ip("10.0.0.5:::255.0.255.0").unwrap_err();
        assert!(matches!(e, ConfigError::IpField { field: "netmask", .. }));
        assert!(matches!(parse_ip("1:2:3:4:5:6:7:8:9:10:11"), Err(ConfigError::IpTooManyFields { .. })));
    }

    #[test]
    fn bootif_with_type_prefix_and_bare_mac() {
        assert_eq!(parse_bootif("01-52-54-00-77-03-12").unwrap(), Mac([0x52, 0x54, 0, 0x77, 3, 0x12]));
        assert_eq!(parse_bootif("52:54:00:77:03:12").unwrap(), Mac([0x52, 0x54, 0, 0x77, 3, 0x12]));
        for bad in ["", "01-52-54-00-77-03", "01-52-54-00-77-03-12-13", "zz-52-54-00-77-03-12x", "01-5g-54-00-77-03-12"]
        {
            assert!(parse_bootif(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cmdline_without_ip_means_dhcp_everywhere_and_keys_are_read() {
        let cfg = NetConfig::from_cmdline(
            "console=ttyS0 root=/dev/nfs BOOTIF=01-aa-bb-cc-dd-ee-ff diskless.carrier_timeout=3 quiet",
        )
        .unwrap();
        assert_eq!(cfg.mode(), IpMode::Dhcp { device: None, method: Autoconf::Any });
        assert_eq!(cfg.bootif, Some(Mac([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff])));
        assert_eq!(cfg.carrier_timeout, Duration::from_secs(3));
        assert_eq!(cfg.dhcp_timeout, DEFAULT_DHCP_TIMEOUT);
        let cfg = NetConfig::from_cmdline("diskless.dhcp_server=10.77.0.1,10.77.0.2").unwrap();
        assert_eq!(cfg.dhcp_servers, [Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)]);
        let e = NetConfig::from_cmdline("diskless.dhcp_server=10.77.0.1,router").unwrap_err();
        assert_eq!(
            e.to_string(),
            "diskless.dhcp_server=10.77.0.1,router: \"router\" is not an IPv4 address; write the DHCP servers' addresses as IP[,IP...]"
        );
        let e = NetConfig::from_cmdline("diskless.dhcp_timeout=soon").unwrap_err();
        assert!(e.to_string().contains("diskless.dhcp_timeout"));
    }

    #[test]
    fn later_ip_parameter_overrides_earlier() {
        let cfg = NetConfig::from_cmdline("ip=off ip=eth0:dhcp").unwrap();
        assert_eq!(cfg.mode(), IpMode::Dhcp { device: Some("eth0".into()), method: Autoconf::Dhcp });
    }

    #[test]
    fn mask_and_prefix_convert_both_ways() {
        assert_eq!(mask_prefix(ip("255.255.255.0")), Some(24));
        assert_eq!(mask_prefix(ip("0.0.0.0")), Some(0));
        assert_eq!(mask_prefix(ip("255.255.255.255")), Some(32));
        assert_eq!(mask_prefix(ip("255.0.255.0")), None);
        for p in 0..=32u8 {
            assert_eq!(mask_prefix(prefix_mask(p)), Some(p));
        }
    }

    proptest::proptest! {
        #[test]
        fn ip_parser_never_panics(s in "\\PC{0,80}") {
            let _ = parse_ip(&s);
        }

        #[test]
        fn ip_parser_never_panics_on_colon_heavy_input(s in "[0-9a-z.:]{0,60}") {
            if let Ok(p) = parse_ip(&s) { let _ = p.mode(); let _ = p.effective_netmask(); }
        }

        #[test]
        fn bootif_parser_never_panics(s in "\\PC{0,40}") {
            let _ = parse_bootif(&s);
        }

        #[test]
        fn cmdline_parser_never_panics(s in "\\PC{0,200}") {
            let _ = NetConfig::from_cmdline(&s);
        }
    }
}
