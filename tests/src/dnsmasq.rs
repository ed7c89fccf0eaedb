//! dnsmasq as DHCP, TFTP and DNS server for one test, inside a [`Netns`].
//!
//! [`DnsmasqConfig`] renders the configuration verified on this rig (see
//! `/work/shared/notes/rig.md`): bound to one interface, no upstream resolvers, no
//! `/etc/hosts`, static hosts with A and PTR records, the usual DHCP options, optional
//! TFTP + PXE boot file, and router advertisements so iPXE does not wait ~13 s for one.
//! Lease file, PID file and log live in per-test files, never in the host's `/var`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::{Daemon, Netns};
use crate::paths::{file_stem, log_dir};

/// A client with a fixed address and name: `dhcp-host` plus `host-record` (A and PTR).
#[derive(Clone, Debug)]
pub struct StaticHost {
    pub mac: String,
    pub ip: String,
    pub hostname: String,
}

/// Configuration of one dnsmasq instance. Build with the methods, then
/// [`Dnsmasq::start`] it (or [`DnsmasqConfig::render`] to inspect the text).
#[derive(Clone, Debug)]
pub struct DnsmasqConfig {
    interface: String,
    domain: Option<(String, String)>,
    ranges: Vec<String>,
    hosts: Vec<StaticHost>,
    options: Vec<String>,
    tftp_root: Option<PathBuf>,
    dhcp_boot: Option<String>,
    ipv6_ra: bool,
    dns_port: u16,
    extra: Vec<String>,
}

impl DnsmasqConfig {
    /// Serves on `interface` only (usually the namespace's bridge).
    pub fn new(interface: &str) -> DnsmasqConfig {
        DnsmasqConfig {
            interface: interface.into(),
            domain: None,
            ranges: Vec::new(),
            hosts: Vec::new(),
            options: Vec::new(),
            tftp_root: None,
            dhcp_boot: None,
            ipv6_ra: true,
            dns_port: 53,
            extra: Vec::new(),
        }
    }

    /// The local DNS domain for `subnet` (`"example.edu"`, `"10.77.0.0/24"`): dnsmasq
    /// answers for it and for the subnet's reverse zone itself, never forwarding.
    pub fn domain(mut self, domain: &str, subnet: &str) -> Self {
        self.domain = Some((domain.into(), subnet.into()));
        self
    }

    /// A dynamic DHCP range, e.g. `("10.77.0.100", "10.77.0.199", "255.255.255.0", "1h")`.
    pub fn dhcp_range(mut self, start: &str, end: &str, netmask: &str, lease: &str) -> Self {
        self.ranges.push(format!("{start},{end},{netmask},{lease}"));
        self
    }

    /// A static host: the MAC always gets `ip` with an infinite lease, and DNS resolves
    /// `hostname` (and `hostname.domain`) to `ip` and back.
    pub fn host(mut self, mac: &str, ip: &str, hostname: &str) -> Self {
        self.hosts.push(StaticHost { mac: mac.into(), ip: ip.into(), hostname: hostname.into() });
        self
    }

    /// DHCP option 3.
    pub fn router(self, ip: &str) -> Self {
        self.option(&format!("option:router,{ip}"))
    }

    /// DHCP option 6.
    pub fn dns_server(self, ip: &str) -> Self {
        self.option(&format!("option:dns-server,{ip}"))
    }

    /// DHCP option 15.
    pub fn domain_name(self, domain: &str) -> Self {
        self.option(&format!("option:domain-name,{domain}"))
    }

    /// DHCP option 17, e.g. `"10.77.0.1:/export"`.
    pub fn root_path(self, path: &str) -> Self {
        self.option(&format!("option:root-path,{path}"))
    }

    /// Any `dhcp-option=` value, e.g. `"option:ntp-server,10.77.0.1"`.
    pub fn option(mut self, value: &str) -> Self {
        self.options.push(value.into());
        self
    }

    /// Serves `root` over TFTP and names `boot_file` (e.g. `pxelinux.0`) with
    /// `server_ip` as next-server. dnsmasq serves only world-readable files.
    pub fn tftp(mut self, root: &Path, boot_file: &str, server_ip: &str) -> Self {
        self.tftp_root = Some(root.into());
        self.dhcp_boot = Some(format!("{boot_file},srv,{server_ip}"));
        self
    }

    /// Whether to send IPv6 router advertisements (default on: iPXE waits for one).
    pub fn ipv6_ra(mut self, on: bool) -> Self {
        self.ipv6_ra = on;
        self
    }

    /// DNS port; 0 disables DNS (default 53).
    pub fn dns_port(mut self, port: u16) -> Self {
        self.dns_port = port;
        self
    }

    /// A raw configuration line appended at the end.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    /// The configuration file text, with the per-instance files in `state_dir` and the
    /// log written to `log`.
    pub fn render(&self, state_dir: &Path, log: &Path) -> Result<String> {
        let mut c = String::new();
        let iface = &self.interface;
        // writeln! to a String cannot fail.
        let mut line = |s: String| {
            c.push_str(&s);
            c.push('\n');
        };
        line("keep-in-foreground".into());
        line(format!("interface={iface}"));
        line("bind-interfaces".into());
        line("except-interface=lo".into());
        line("no-resolv".into());
        line("no-hosts".into());
        line("dhcp-authoritative".into());
        line(format!("port={}", self.dns_port));
        line(format!("dhcp-leasefile={}", state_dir.join("leases").display()));
        line(format!("pid-file={}", state_dir.join("dnsmasq.pid").display()));
        line(format!("log-facility={}", log.display()));
        line("log-dhcp".into());
        line("log-queries".into());
        if let Some((domain, subnet)) = &self.domain {
            line(format!("domain={domain},{subnet}"));
            line(format!("local=/{domain}/"));
            line(format!("local=/{}/", reverse_zone(subnet)?));
        }
        for host in &self.hosts {
            let fqdn = match &self.domain {
                Some((domain, _)) => format!("{}.{domain},", host.hostname),
                None => String::new(),
            };
            line(format!("host-record={fqdn}{},{}", host.hostname, host.ip));
            line(format!("dhcp-host={},{},{},infinite", host.mac, host.ip, host.hostname));
        }
        for range in &self.ranges {
            line(format!("dhcp-range={range}"));
        }
        for option in &self.options {
            line(format!("dhcp-option={option}"));
        }
        if let Some(root) = &self.tftp_root {
            line("enable-tftp".into());
            line(format!("tftp-root={}", root.display()));
        }
        if let Some(boot) = &self.dhcp_boot {
            line(format!("dhcp-boot={boot}"));
        }
        if self.ipv6_ra {
            line("enable-ra".into());
            line(format!("dhcp-range=::,constructor:{iface},ra-only"));
            line(format!("ra-param={iface},10,0"));
        }
        for extra in &self.extra {
            line(extra.clone());
        }
        Ok(c)
    }
}

/// `"10.77.0.0/24"` -> `"0.77.10.in-addr.arpa"`. Only whole-octet prefixes have a
/// reverse zone of their own.
pub fn reverse_zone(subnet: &str) -> Result<String> {
    let invalid = |reason: &str| Error::Invalid { what: format!("subnet {subnet:?}"), reason: reason.into() };
    let (addr, prefix) = subnet.split_once('/').ok_or_else(|| invalid("expected ADDRESS/PREFIX, e.g. 10.77.0.0/24"))?;
    let prefix: usize = prefix.parse().map_err(|_| invalid("prefix is not a number"))?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| invalid("not an IPv4 address"))?;
    if prefix == 0 || prefix > 24 || !prefix.is_multiple_of(8) {
        return Err(invalid("reverse zones need a prefix of 8, 16 or 24"));
    }
    let octets = addr.octets();
    let mut zone = String::new();
    for octet in octets[..prefix / 8].iter().rev() {
        let _ = write!(zone, "{octet}.");
    }
    zone.push_str("in-addr.arpa");
    Ok(zone)
}

/// A running dnsmasq; killed when dropped. Its log and process: [`Daemon`].
pub struct Dnsmasq(Daemon);

crate::netns::daemon_wrapper!(Dnsmasq);

impl Dnsmasq {
    /// Starts dnsmasq in `ns` with `config` and waits until it listens for DHCP (and
    /// DNS, unless disabled). The log goes to `target/qemu-logs/<name>.dnsmasq.log`.
    pub fn start(ns: &Netns, config: &DnsmasqConfig, name: &str) -> Result<Dnsmasq> {
        let state = tempfile::Builder::new()
            .prefix("diskless-dnsmasq")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let log = log_dir()?.join(format!("{}.dnsmasq.log", file_stem(name)));
        let _ = std::fs::remove_file(&log);
        let conf_path = state.path().join("dnsmasq.conf");
        let text = config.render(state.path(), &log)?;
        std::fs::write(&conf_path, &text).map_err(|e| Error::io("write", &conf_path, e))?;
        // Keep a copy of the configuration next to the log for post-mortems.
        let _ = std::fs::write(log.with_extension("conf"), &text);

        let mut cmd = ns.command("dnsmasq");
        cmd.arg(format!("--conf-file={}", conf_path.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let mut ports = Vec::new();
        if !config.ranges.is_empty() || !config.hosts.is_empty() {
            ports.push(67);
        }
        if config.dns_port != 0 {
            ports.push(config.dns_port);
        }
        Daemon::start(ns, "dnsmasq", cmd, ("-Hlnu", &ports), Duration::from_secs(10), log, state).map(Dnsmasq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_zone_of_24_reverses_three_octets() {
        assert_eq!(reverse_zone("10.77.0.0/24").unwrap(), "0.77.10.in-addr.arpa");
        assert_eq!(reverse_zone("172.16.0.0/16").unwrap(), "16.172.in-addr.arpa");
        assert!(reverse_zone("10.77.0.0/25").is_err());
    }

    #[test]
    fn render_contains_verified_lines() {
        let c = DnsmasqConfig::new("br0")
            .domain("example.edu", "10.77.0.0/24")
            .dhcp_range("10.77.0.100", "10.77.0.199", "255.255.255.0", "1h")
            .host("52:54:00:77:03:12", "10.77.0.112", "lab3-12")
            .router("10.77.0.1")
            .root_path("10.77.0.1:/export")
            .tftp(Path::new("/srv/tftp"), "pxelinux.0", "10.77.0.1")
            .render(Path::new("/state"), Path::new("/log"))
            .unwrap();
        for want in [
            "interface=br0",
            "local=/0.77.10.in-addr.arpa/",
            "host-record=lab3-12.example.edu,lab3-12,10.77.0.112",
            "dhcp-host=52:54:00:77:03:12,10.77.0.112,lab3-12,infinite",
            "dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h",
            "dhcp-option=option:router,10.77.0.1",
            "dhcp-option=option:root-path,10.77.0.1:/export",
            "tftp-root=/srv/tftp",
            "dhcp-boot=pxelinux.0,srv,10.77.0.1",
            "dhcp-range=::,constructor:br0,ra-only",
            "dhcp-leasefile=/state/leases",
        ] {
            assert!(c.lines().any(|l| l == want), "missing {want:?} in\n{c}");
        }
    }
}
