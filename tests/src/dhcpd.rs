//! ISC dhcpd as the lab's DHCP server for one test, inside a [`Netns`]: the server the
//! HOWTO's labs ran, with its own semantics (fixed addresses in `host` blocks, DHCPINFORM
//! answered only when `authoritative`).
//!
//! [`DhcpdConfig`] renders `dhcpd.conf`; [`Dhcpd::start`] runs
//! `dhcpd -4 -d -cf CONF -lf LEASES -pf PID IFACE` (`-d`: foreground, log on stderr,
//! which goes to `target/qemu-logs/<name>.dhcpd.log`). Lease and PID files live in a
//! per-server temporary directory, never in the host's `/var`. The process is killed
//! by PID (its process group) when the [`Dhcpd`] drops.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::{Daemon, Netns};
use crate::paths::{file_stem, log_dir};

const DHCPD: &str = "/usr/sbin/dhcpd";
const HINT: &str = "run qemu/setup (package isc-dhcp-server)";

/// A `host` block: a fixed address for a MAC, and optionally a boot file.
#[derive(Clone, Debug)]
pub struct DhcpdHost {
    /// The block's name (dhcpd's own label, not sent as option 12).
    pub name: String,
    pub mac: String,
    pub fixed_address: String,
    /// `filename`, e.g. `pxelinux.0`.
    pub filename: Option<String>,
}

/// One subnet served by dhcpd on one interface. Build with the methods, then
/// [`Dhcpd::start`] it (or [`DhcpdConfig::render`] to inspect the text).
#[derive(Clone, Debug)]
pub struct DhcpdConfig {
    interface: String,
    subnet: String,
    netmask: String,
    authoritative: bool,
    next_server: Option<String>,
    options: Vec<String>,
    hosts: Vec<DhcpdHost>,
    extra: Vec<String>,
}

impl DhcpdConfig {
    /// Serves `subnet`/`netmask` (`"10.77.0.0"`, `"255.255.255.0"`) on `interface`,
    /// authoritative (so it answers DHCPINFORM and NAKs foreign addresses).
    pub fn new(interface: &str, subnet: &str, netmask: &str) -> DhcpdConfig {
        DhcpdConfig {
            interface: interface.into(),
            subnet: subnet.into(),
            netmask: netmask.into(),
            authoritative: true,
            next_server: None,
            options: Vec::new(),
            hosts: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// `authoritative;` or `not authoritative;`: dhcpd ignores DHCPINFORM for a subnet
    /// it is not authoritative for.
    pub fn authoritative(mut self, on: bool) -> Self {
        self.authoritative = on;
        self
    }

    /// `next-server` (siaddr: the TFTP server).
    pub fn next_server(mut self, ip: &str) -> Self {
        self.next_server = Some(ip.into());
        self
    }

    /// An `option` statement of the subnet without `option` and `;`, e.g.
    /// `"routers 10.77.0.1"`, `"domain-name \"example.edu\""`.
    pub fn option(mut self, statement: &str) -> Self {
        self.options.push(statement.into());
        self
    }

    /// A `host` block with a fixed address and, if given, a boot file.
    pub fn host(mut self, name: &str, mac: &str, fixed_address: &str, filename: Option<&str>) -> Self {
        self.hosts.push(DhcpdHost {
            name: name.into(),
            mac: mac.into(),
            fixed_address: fixed_address.into(),
            filename: filename.map(Into::into),
        });
        self
    }

    /// A raw statement appended at the top level.
    pub fn extra(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    /// The `dhcpd.conf` text.
    pub fn render(&self) -> String {
        let mut c = String::new();
        let mut line = |s: String| {
            c.push_str(&s);
            c.push('\n');
        };
        line("ddns-update-style none;".into());
        line("default-lease-time 3600;".into());
        line("max-lease-time 7200;".into());
        line(if self.authoritative { "authoritative;" } else { "not authoritative;" }.into());
        for extra in &self.extra {
            line(extra.clone());
        }
        line(format!("subnet {} netmask {} {{", self.subnet, self.netmask));
        if let Some(next) = &self.next_server {
            line(format!("  next-server {next};"));
        }
        for option in &self.options {
            line(format!("  option {option};"));
        }
        line("}".into());
        for host in &self.hosts {
            line(format!("host {} {{", host.name));
            line(format!("  hardware ethernet {};", host.mac));
            line(format!("  fixed-address {};", host.fixed_address));
            if let Some(file) = &host.filename {
                line(format!("  filename \"{file}\";"));
            }
            line("}".into());
        }
        c
    }
}

/// A running dhcpd; killed (by PID, with its process group) when dropped. Its log and
/// process: [`Daemon`].
pub struct Dhcpd(Daemon);

crate::netns::daemon_wrapper!(Dhcpd);

impl Dhcpd {
    /// Starts dhcpd in `ns` with `config` and waits until it listens on port 67. The log
    /// goes to `target/qemu-logs/<name>.dhcpd.log`, the configuration next to it.
    pub fn start(ns: &Netns, config: &DhcpdConfig, name: &str) -> Result<Dhcpd> {
        if !Path::new(DHCPD).is_file() {
            return Err(Error::Missing { what: "ISC dhcpd".into(), path: DHCPD.into(), hint: HINT.into() });
        }
        let state = tempfile::Builder::new()
            .prefix("diskless-dhcpd")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let log = log_dir()?.join(format!("{}.dhcpd.log", file_stem(name)));
        let conf = state.path().join("dhcpd.conf");
        let leases = state.path().join("dhcpd.leases");
        let text = config.render();
        std::fs::write(&conf, &text).map_err(|e| Error::io("write", &conf, e))?;
        std::fs::write(&leases, "").map_err(|e| Error::io("write", &leases, e))?;
        let _ = std::fs::write(log.with_extension("conf"), &text);
        let log_file = std::fs::File::create(&log).map_err(|e| Error::io("create", &log, e))?;

        let mut cmd = ns.command(DHCPD);
        cmd.args(["-4", "-d", "-cf"])
            .arg(&conf)
            .arg("-lf")
            .arg(&leases)
            .arg("-pf")
            .arg(state.path().join("dhcpd.pid"))
            .arg(&config.interface)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file);
        Daemon::start(ns, "dhcpd", cmd, ("-Hlnu", &[67]), Duration::from_secs(10), log, state).map(Dhcpd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_the_subnet_its_options_and_a_host_block_without_host_name() {
        let c = DhcpdConfig::new("br0", "10.77.0.0", "255.255.255.0")
            .next_server("10.77.0.1")
            .option("routers 10.77.0.1")
            .option("domain-name-servers 10.77.0.1")
            .host("lab3-12", "52:54:00:77:03:12", "10.77.0.112", Some("pxelinux.0"))
            .render();
        for want in [
            "authoritative;",
            "subnet 10.77.0.0 netmask 255.255.255.0 {",
            "  next-server 10.77.0.1;",
            "  option routers 10.77.0.1;",
            "  option domain-name-servers 10.77.0.1;",
            "host lab3-12 {",
            "  hardware ethernet 52:54:00:77:03:12;",
            "  fixed-address 10.77.0.112;",
            "  filename \"pxelinux.0\";",
        ] {
            assert!(c.lines().any(|l| l == want), "missing {want:?} in\n{c}");
        }
        assert!(!c.contains("host-name"), "{c}");
        assert!(!c.contains("not authoritative;"), "{c}");
    }

    #[test]
    fn a_server_that_is_not_authoritative_says_so() {
        let c = DhcpdConfig::new("br0", "10.77.0.0", "255.255.255.0").authoritative(false).render();
        assert!(c.lines().any(|l| l == "not authoritative;"), "{c}");
    }
}
