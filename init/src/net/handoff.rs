//! Files that tell the booted system how the network was configured.
//!
//! - `<run>/net-<iface>.conf` in the format of klibc's ipconfig, which
//!   initramfs-tools scripts and Debian's ifupdown hooks source;
//! - `<run>/diskless/resolv.conf` for the image to link or copy.
//!
//! The record of the whole boot, `<run>/diskless/boot.json`, is [`crate::record`]'s.
//! The run directory is a parameter so tests write into a temp dir.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::NetResult;
use super::identity::Identity;
use crate::files::write_atomic;

/// Errors writing the network's hand-off files.
#[derive(Debug, thiserror::Error)]
pub enum NetFilesError {
    #[error("interface name {name:?} cannot be used in a file name")]
    InterfaceName { name: String },
    #[error("cannot create {}: {source}; is /run a writable tmpfs?", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}; is /run a writable tmpfs?", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Single-quotes a value for a shell that sources the file; a quote inside
/// is closed, escaped and reopened, so no value can run a command.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

fn v4(a: Option<Ipv4Addr>) -> String {
    a.unwrap_or(Ipv4Addr::UNSPECIFIED).to_string()
}

/// The `net-<iface>.conf` text (klibc ipconfig variables, in its order).
pub fn net_conf_text(net: &NetResult, id: &Identity, uptime: Duration) -> String {
    let l = &net.lease;
    let root_server = l.next_server.or(l.server_id);
    let vars: [(&str, String); 17] = [
        ("DEVICE", net.interface.clone()),
        ("PROTO", net.proto.as_str().to_string()),
        ("IPV4ADDR", l.address.to_string()),
        ("IPV4BROADCAST", l.broadcast.to_string()),
        ("IPV4NETMASK", l.netmask.to_string()),
        ("IPV4GATEWAY", v4(l.routers.first().copied())),
        ("IPV4DNS0", v4(l.dns_servers.first().copied())),
        ("IPV4DNS1", v4(l.dns_servers.get(1).copied())),
        ("HOSTNAME", id.hostname.clone()),
        ("DNSDOMAIN", id.domain.clone().unwrap_or_default()),
        ("NISDOMAIN", l.nis_domain.clone().unwrap_or_default()),
        ("ROOTSERVER", v4(root_server)),
        ("ROOTPATH", l.root_path.clone().unwrap_or_default()),
        ("filename", l.boot_file.clone().unwrap_or_default()),
        ("UPTIME", uptime.as_secs().to_string()),
        ("DHCPLEASETIME", l.lease_time.unwrap_or(0).to_string()),
        ("DOMAINSEARCH", l.domain_search.join(" ")),
    ];
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str(k);
        out.push('=');
        out.push_str(&shell_quote(&v));
        out.push('\n');
    }
    out
}

/// The resolv.conf text: search list (domain first) and name servers.
pub fn resolv_conf_text(net: &NetResult, id: &Identity) -> String {
    let mut search: Vec<&str> = Vec::new();
    for d in id.domain.iter().chain(net.lease.domain_search.iter()) {
        if !search.contains(&d.as_str()) {
            search.push(d);
        }
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in &net.lease.dns_servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

fn create_dir(path: &Path) -> Result<(), NetFilesError> {
    std::fs::create_dir_all(path).map_err(|source| NetFilesError::CreateDir { path: path.into(), source })
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), NetFilesError> {
    write_atomic(path, data).map_err(|source| NetFilesError::Write { path: path.into(), source })
}

/// Writes `<run_dir>/net-<iface>.conf` and `<run_dir>/diskless/resolv.conf`.
/// Returns the paths written.
pub fn write_files(
    run_dir: &Path,
    net: &NetResult,
    id: &Identity,
    uptime: Duration,
) -> Result<Vec<PathBuf>, NetFilesError> {
    let iface = &net.interface;
    if iface.is_empty() || iface.contains('/') || iface == "." || iface == ".." {
        return Err(NetFilesError::InterfaceName { name: iface.clone() });
    }
    create_dir(run_dir)?;
    let conf = run_dir.join(format!("net-{iface}.conf"));
    write_file(&conf, net_conf_text(net, id, uptime).as_bytes())?;
    let dir = run_dir.join("diskless");
    create_dir(&dir)?;
    let resolv = dir.join("resolv.conf");
    write_file(&resolv, resolv_conf_text(net, id).as_bytes())?;
    Ok(vec![conf, resolv])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Proto;
    use crate::net::config::Mac;
    use crate::net::dhcp::Lease;
    use crate::net::identity::NameSource;

    fn sample() -> (NetResult, Identity) {
        let mut lease = Lease::new(Ipv4Addr::new(10, 77, 0, 112), Ipv4Addr::new(255, 255, 255, 0));
        lease.routers = vec![Ipv4Addr::new(10, 77, 0, 1)];
        lease.dns_servers = vec![Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)];
        lease.root_path = Some("10.77.0.1:/export".into());
        lease.server_id = Some(Ipv4Addr::new(10, 77, 0, 1));
        lease.lease_time = Some(3600);
        lease.domain_search = vec!["example.edu".into(), "lab.example.edu".into()];
        lease.boot_file = Some("it's.0".into());
        let net = NetResult {
            interface: "eth0".into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            proto: Proto::Dhcp,
            lease,
            dns_source: None,
        };
        let id = Identity {
            hostname: "lab3-12".into(),
            fqdn: Some("lab3-12.example.edu".into()),
            domain: Some("example.edu".into()),
            source: NameSource::Ptr,
            lost: None,
        };
        (net, id)
    }

    #[test]
    fn net_conf_has_klibc_variables_single_quoted() {
        let (net, id) = sample();
        let text = net_conf_text(&net, &id, Duration::from_secs(7));
        for line in [
            "DEVICE='eth0'",
            "PROTO='dhcp'",
            "IPV4ADDR='10.77.0.112'",
            "IPV4BROADCAST='10.77.0.255'",
            "IPV4NETMASK='255.255.255.0'",
            "IPV4GATEWAY='10.77.0.1'",
            "IPV4DNS0='10.77.0.1'",
            "IPV4DNS1='10.77.0.2'",
            "HOSTNAME='lab3-12'",
            "DNSDOMAIN='example.edu'",
            "NISDOMAIN=''",
            "ROOTSERVER='10.77.0.1'",
            "ROOTPATH='10.77.0.1:/export'",
            "filename='it'\\''s.0'",
            "UPTIME='7'",
            "DHCPLEASETIME='3600'",
            "DOMAINSEARCH='example.edu lab.example.edu'",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert_eq!(text.lines().count(), 17);
    }

    #[test]
    fn shell_reading_the_file_gets_the_values_back() {
        let (net, id) = sample();
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &net, &id, Duration::from_secs(1)).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(". \"$1\"; printf '%s|%s' \"$filename\" \"$ROOTPATH\"")
            .arg("sh")
            .arg(dir.path().join("net-eth0.conf"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's.0|10.77.0.1:/export");
    }

    #[test]
    fn resolv_conf_lists_domain_once_then_servers() {
        let (net, id) = sample();
        assert_eq!(
            resolv_conf_text(&net, &id),
            "search example.edu lab.example.edu\nnameserver 10.77.0.1\nnameserver 10.77.0.2\n"
        );
    }

    #[test]
    fn files_land_under_the_given_run_dir() {
        let (net, id) = sample();
        let dir = tempfile::tempdir().unwrap();
        let paths = write_files(dir.path(), &net, &id, Duration::ZERO).unwrap();
        assert_eq!(paths, vec![dir.path().join("net-eth0.conf"), dir.path().join("diskless/resolv.conf")]);
    }

    #[test]
    fn interface_name_with_slash_is_refused() {
        let (mut net, id) = sample();
        net.interface = "../x".into();
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(write_files(dir.path(), &net, &id, Duration::ZERO), Err(NetFilesError::InterfaceName { .. })));
    }
}
