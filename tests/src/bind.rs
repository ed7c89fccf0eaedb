//! BIND9 (`named`) as the lab's DNS server for one test, inside a [`Netns`]: the
//! authoritative server of the HOWTO's labs, with a forward zone and its reverse zone.
//!
//! [`NamedConfig`] renders `named.conf` and the zone files (authoritative only, no
//! recursion, no control channel, every file in a per-server temporary directory);
//! [`Named::start`] runs `named -g -c CONF` as root (`-g`: foreground, log on stderr,
//! which goes to `target/qemu-logs/<name>.named.log`) and waits until it answers on
//! port 53. The process is killed by PID (its process group) when the [`Named`] drops.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::{Daemon, Netns};
use crate::paths::{file_stem, log_dir};

const NAMED: &str = "/usr/sbin/named";
const HINT: &str = "run qemu/setup (package bind9)";

/// One zone with its records, each `(owner, type, data)` relative to the zone, e.g.
/// `("lab3-12", "A", "10.77.0.112")`, `("112", "PTR", "lab3-12.example.edu.")`.
#[derive(Clone, Debug)]
pub struct Zone {
    pub name: String,
    pub records: Vec<(String, String, String)>,
}

impl Zone {
    /// The zone file: SOA and NS naming `ns.<domain>` of the configuration.
    fn render(&self, ns_name: &str) -> String {
        let mut z =
            format!("$TTL 60\n@ IN SOA {ns_name}. hostmaster.{ns_name}. ( 1 3600 600 86400 60 )\n@ IN NS {ns_name}.\n");
        for (owner, kind, data) in &self.records {
            z.push_str(&format!("{owner} IN {kind} {data}\n"));
        }
        z
    }

    /// The zone's file name in the state directory.
    fn file_name(&self) -> String {
        format!("db.{}", self.name)
    }
}

/// An authoritative-only named listening on given IPv4 addresses.
#[derive(Clone, Debug)]
pub struct NamedConfig {
    listen: Vec<String>,
    ns_name: String,
    zones: Vec<Zone>,
}

impl NamedConfig {
    /// Listens on `listen` (IPv4, inside the namespace); `ns_name` is the name server's
    /// own name in the SOA and NS records (`ns.example.edu`).
    pub fn new(listen: &[&str], ns_name: &str) -> NamedConfig {
        NamedConfig {
            listen: listen.iter().map(|s| s.to_string()).collect(),
            ns_name: ns_name.into(),
            zones: Vec::new(),
        }
    }

    /// A zone and its records.
    pub fn zone(mut self, name: &str, records: &[(&str, &str, &str)]) -> Self {
        let records = records.iter().map(|(o, k, d)| (o.to_string(), k.to_string(), d.to_string())).collect();
        self.zones.push(Zone { name: name.into(), records });
        self
    }

    /// `named.conf` with every path under `state`.
    pub fn render(&self, state: &Path) -> String {
        let s = state.display();
        let mut c = options(state, &self.listen);
        for zone in &self.zones {
            c.push_str(&format!("zone \"{}\" {{ type primary; file \"{s}/{}\"; }};\n", zone.name, zone.file_name()));
        }
        c
    }
}

/// The top of a `named.conf` without zones: authoritative only, listening on `listen`,
/// every file under `state`, logging to stderr (what a distribution's named.conf holds
/// before it includes the zones).
pub fn options(state: &Path, listen: &[String]) -> String {
    let s = state.display();
    let listen: String = listen.iter().map(|a| format!("{a}; ")).collect();
    format!(
        "options {{\n  directory \"{s}\";\n  pid-file \"{s}/named.pid\";\n  session-keyfile \"{s}/session.key\";\n  \
         managed-keys-directory \"{s}\";\n  listen-on port 53 {{ {listen}}};\n  listen-on-v6 {{ none; }};\n  \
         recursion no;\n  allow-query {{ any; }};\n  dnssec-validation no;\n  notify no;\n}};\ncontrols {{ }};\n\
         logging {{ category default {{ default_stderr; }}; category queries {{ default_stderr; }}; }};\n"
    )
}

/// A running named; killed (by PID, with its process group) when dropped. Its log and
/// process: [`Daemon`].
pub struct Named(Daemon);

crate::netns::daemon_wrapper!(Named);

impl Named {
    /// Starts named in `ns` with `config` and waits until it listens on UDP 53. The log
    /// goes to `target/qemu-logs/<name>.named.log`, the configuration next to it.
    pub fn start(ns: &Netns, config: &NamedConfig, name: &str) -> Result<Named> {
        if !Path::new(NAMED).is_file() {
            return Err(Error::Missing { what: "BIND9 named".into(), path: NAMED.into(), hint: HINT.into() });
        }
        let state = tempfile::Builder::new()
            .prefix("diskless-named")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let log = log_dir()?.join(format!("{}.named.log", file_stem(name)));
        let conf = state.path().join("named.conf");
        let text = config.render(state.path());
        std::fs::write(&conf, &text).map_err(|e| Error::io("write", &conf, e))?;
        let mut kept = text.clone();
        for zone in &config.zones {
            let path = state.path().join(zone.file_name());
            let body = zone.render(&config.ns_name);
            std::fs::write(&path, &body).map_err(|e| Error::io("write", &path, e))?;
            kept.push_str(&format!("\n; --- {} ---\n{body}", zone.file_name()));
        }
        let _ = std::fs::write(log.with_extension("conf"), kept);
        let log_file = std::fs::File::create(&log).map_err(|e| Error::io("create", &log, e))?;

        let mut cmd = ns.command(NAMED);
        cmd.arg("-g")
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file);
        let daemon = Daemon::start(ns, "named", cmd, ("-Hlnu", &[53]), Duration::from_secs(20), log.clone(), state)?;
        wait_zones_loaded(&log, Duration::from_secs(20))?;
        Ok(Named(daemon))
    }
}

/// Waits until the named writing `log` (run with `-g`) has loaded its zones: it listens
/// on port 53 before that and answers SERVFAIL ("zone not loaded") meanwhile.
pub fn wait_zones_loaded(log: &Path, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(log).map_err(|e| Error::io("read", log, e))?;
        if text.lines().any(|l| l.ends_with(" running")) {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: "named loading its zones".into(),
                seconds: timeout.as_secs_f64(),
                log: Some(log.to_path_buf()),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> NamedConfig {
        NamedConfig::new(&["10.77.0.1"], "ns.example.edu")
            .zone("example.edu", &[("ns", "A", "10.77.0.1"), ("lab3-12", "A", "10.77.0.112")])
            .zone("0.77.10.in-addr.arpa", &[("112", "PTR", "lab3-12.example.edu.")])
    }

    #[test]
    fn config_is_authoritative_only_and_keeps_every_file_in_the_state_dir() {
        let c = lab().render(Path::new("/state"));
        for want in [
            "  directory \"/state\";",
            "  pid-file \"/state/named.pid\";",
            "  listen-on port 53 { 10.77.0.1; };",
            "  recursion no;",
            "controls { };",
            "zone \"0.77.10.in-addr.arpa\" { type primary; file \"/state/db.0.77.10.in-addr.arpa\"; };",
        ] {
            assert!(c.lines().any(|l| l == want), "missing {want:?} in\n{c}");
        }
    }

    #[test]
    fn zone_files_have_soa_ns_and_the_records() {
        let config = lab();
        let reverse = config.zones[1].render(&config.ns_name);
        assert!(reverse.starts_with("$TTL 60\n@ IN SOA ns.example.edu. hostmaster.ns.example.edu. "), "{reverse}");
        assert!(reverse.lines().any(|l| l == "112 IN PTR lab3-12.example.edu."), "{reverse}");
    }
}
