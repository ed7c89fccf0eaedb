//! Every way an administrator names the NFS root (DESIGN §3), parsed into one
//! [`NfsRoot`].
//!
//! Two steps, because the command line is read before the network exists and the
//! lease fills in what the command line leaves open:
//!
//! 1. [`RootRequest::from_cmdline`]: which syntax the command line uses, as written;
//! 2. [`RootRequest::resolve`]: with the lease and the host name, the final server,
//!    path (`%s` replaced), version and options.
//!
//! # More than one root server
//!
//! The server part may name several servers holding the same export, joined by `+`:
//! `nfsroot=10.77.0.1+10.77.0.2:/srv/root,vers=3`, `root=nfs:10.77.0.1+10.77.0.2:/srv/root`,
//! or the same in the DHCP root-path (option 17). `+` appears in no IPv4 address, in no
//! export path diskless accepts before the first `/`, and is not the option separator
//! (`,` in nfsroot=, `:` in dracut's syntax), so a list reads the same in all three
//! places and in pxelinux, GRUB, dnsmasq and dhcpd configurations, none of which gives
//! `+` a meaning.
//!
//! Every client tries the servers in a circular order that starts at its own position,
//! [`start_position`]: its IPv4 address, read as a 32-bit number, modulo the number of
//! servers. Consecutive addresses, as a lab file hands them out, thus alternate over
//! the servers; an administrator can tell which server a host starts with from its
//! address alone. [`NfsRoot::servers`] is that order, the one `mount_root` follows.

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::local::HostNameError;
use crate::net::Lease;
use crate::text::Escaped;

/// NFS protocol version to mount with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V3,
    /// NFSv4 with this minor version (`vers=4` means 4.2, the newest the kernel has).
    V4(u8),
    /// Nothing given: 3, as the kernel's nfsroot and initramfs-tools mount, then 4.2
    /// when the server refuses 3 (see [`attempts`]).
    Auto,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::V3 => f.write_str("3"),
            Version::V4(minor) => write!(f, "4.{minor}"),
            Version::Auto => f.write_str("auto"),
        }
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The inverse of `Display`: `3`, `4.<minor>` or `auto`.
impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "3" => Ok(Version::V3),
            "auto" => Ok(Version::Auto),
            _ => text.strip_prefix("4.").and_then(|minor| minor.parse().ok()).map(Version::V4).ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not an NFS version (3, 4.<minor> or auto)"))
            }),
        }
    }
}

/// Which syntax named the root; for the log and boot.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syntax {
    /// `root=/dev/nfs nfsroot=[server:]path[,opts]` (or `nfsroot=` alone).
    Kernel,
    /// `root=nfs:server:/path[:opts]` / `root=nfs4:...`.
    Dracut,
    /// DHCP option 17 (root-path), because the command line names no root.
    DhcpRootPath,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syntax::Kernel => "nfsroot= on the kernel command line",
            Syntax::Dracut => "root=nfs: on the kernel command line",
            Syntax::DhcpRootPath => "the DHCP root-path (option 17)",
        })
    }
}

/// Where the server address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerSource {
    /// Written in the root specification.
    Given,
    /// DHCP next-server (siaddr) or the `ip=` server field.
    NextServer,
    /// The DHCP server identifier (option 54).
    DhcpServer,
}

/// The NFS root to mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsRoot {
    /// The server to mount from: the first of [`NfsRoot::servers`] before the mount,
    /// the one that answered in the boot record.
    pub server: Ipv4Addr,
    /// Every server holding the export, in the order this host tries them (from its
    /// [`start_position`]); one entry when the root names one server.
    #[serde(default)]
    pub servers: Vec<Ipv4Addr>,
    pub server_source: ServerSource,
    /// Export path on the server, `%s` already replaced.
    pub path: String,
    pub version: Version,
    pub options: Options,
    pub syntax: Syntax,
}

impl NfsRoot {
    /// `server:path`, the mount source.
    pub fn source(&self) -> String {
        format!("{}:{}", self.server, self.path)
    }

    /// `server:path`, or `a+b:path` for several servers (in this host's order): the
    /// root as the log and errors name it.
    pub fn spec(&self) -> String {
        format!("{}:{}", join_servers(&self.servers, "+"), self.path)
    }

    /// The same root on `server` alone.
    pub fn on(&self, server: Ipv4Addr) -> NfsRoot {
        NfsRoot { server, servers: vec![server], ..self.clone() }
    }
}

/// `servers` joined by `separator`, `-` when empty.
pub fn join_servers(servers: &[Ipv4Addr], separator: &str) -> String {
    if servers.is_empty() {
        return "-".into();
    }
    servers.iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(separator)
}

/// Where in a list of `count` servers the client at `client` starts: its address as a
/// 32-bit number modulo `count` (see the module docs).
pub fn start_position(client: Ipv4Addr, count: usize) -> usize {
    if count == 0 { 0 } else { (u64::from(u32::from(client)) % count as u64) as usize }
}

/// `servers` in the order the client at `client` tries them: from its
/// [`start_position`] round to the one before it.
pub fn server_order(servers: &[Ipv4Addr], client: Ipv4Addr) -> Vec<Ipv4Addr> {
    let mut order = servers.to_vec();
    order.rotate_left(start_position(client, servers.len()));
    order
}

/// The mount options that were understood, plus those passed through unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// `port=`: the NFS port; without it the kernel asks rpcbind (v3) or uses 2049 (v4).
    pub port: Option<u16>,
    /// `mountport=` (v3 only).
    pub mountport: Option<u16>,
    /// `proto=` / `tcp` / `udp`; default tcp.
    pub proto: Option<String>,
    /// `mountproto=` (v3 only); default tcp.
    pub mountproto: Option<String>,
    /// `lock` asked for NLM locking; default `nolock` (no rpc.statd at boot).
    pub lock: bool,
    /// Everything else (`hard`, `timeo=`, `rsize=`, `sec=`, ...), given to the kernel as is.
    pub extra: Vec<String>,
    /// Options that were dropped, with why: the log shows them.
    pub ignored: Vec<String>,
}

/// A root given on the command line, before the lease is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootRequest {
    /// `[server[+server...]:]path[,opts]` (kernel syntax, or dracut syntax already
    /// split); no server: the lease's.
    Spec { servers: Vec<Ipv4Addr>, path: String, version: Version, options: Options, syntax: Syntax },
    /// No root on the command line (or `root=/dev/nfs` / `root=dhcp` without more):
    /// the DHCP root-path decides.
    FromDhcp,
}

/// Why the root specification cannot be used. One variant per check, each with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootSpecError {
    /// `root=` names something that is not an NFS root (`/dev/sda1`, `UUID=...`).
    #[error(
        "root={root}: diskless mounts only NFS roots; use root=/dev/nfs nfsroot=SERVER:/PATH, \
         root=nfs:SERVER:/PATH or give a DHCP root-path"
    )]
    NotNfs { root: String },
    /// The location is an address without `:PATH`: typically servers joined by `,`,
    /// which starts the mount options.
    #[error(
        "NFS root {spec:?}: {location:?} is a server without :PATH; a comma starts the mount \
         options, several servers are joined by + (e.g. 10.77.0.1+10.77.0.2:/export)"
    )]
    ServerWithoutPath { spec: String, location: String },
    /// A server list names one server twice (`10.0.0.1+10.0.0.1`).
    #[error("NFS root {spec:?}: server {server} is listed twice; name each server once, joined by +")]
    DuplicateServer { spec: String, server: Ipv4Addr },
    /// The server part is not an IPv4 address (names are not resolved at boot).
    #[error(
        "NFS root {spec:?}: server {server:?} is not an IPv4 address; host names cannot be \
         resolved before the root is mounted, write the address (several servers: join them \
         with +, e.g. 10.77.0.1+10.77.0.2:/export)"
    )]
    Server { spec: String, server: String },
    /// The path is empty or not absolute.
    #[error("NFS root {spec:?}: path {path:?} must be absolute (start with /)")]
    Path { spec: String, path: String },
    /// A control character anywhere in the specification. No export path or mount
    /// option needs one; a DHCP server that sends one is broken or hostile, and
    /// refusing it here keeps every later line that names the root free of them.
    #[error(
        "NFS root {spec:?} contains control characters; fix the root-path option of the DHCP \
         server or the nfsroot=/root= parameter"
    )]
    Control { spec: String },
    /// `vers=`/`nfsvers=` with a version the client cannot mount.
    #[error("NFS root {spec:?}: version {value:?} is not supported; use vers=3, vers=4 or vers=4.0/4.1/4.2")]
    Version { spec: String, value: String },
    /// `port=`/`mountport=` that is not a port number.
    #[error("NFS root {spec:?}: {option:?} is not a port number (1-65535)")]
    Port { spec: String, option: String },
    /// `root=nfs4:` together with `vers=3`.
    #[error("NFS root {spec:?}: root=nfs4: cannot be mounted with vers=3; drop one of them")]
    VersionConflict { spec: String },
    /// No root on the command line and the lease has no root-path.
    #[error(
        "nothing to boot: the kernel command line has no root=/nfsroot= and the DHCP server gave no \
         root-path (option 17); add nfsroot=SERVER:/PATH to the boot loader entry or \
         option root-path to the DHCP server"
    )]
    NoRoot,
    /// The lease names no server to use for a root path without one.
    #[error(
        "NFS root {spec:?} names no server and the lease has neither next-server nor a server \
         identifier; write SERVER:{}",
        Escaped(.spec)
    )]
    NoServer { spec: String },
    /// `%s` in the path but the host name is not safe in a path.
    #[error(
        "NFS root {spec:?}: host name {hostname:?} cannot replace %s ({reason}); fix the host's \
         DNS or DHCP name"
    )]
    HostName {
        spec: String,
        hostname: String,
        #[source]
        reason: HostNameError,
    },
}

/// `root=` values that mean "the NFS root named elsewhere" (nfsroot= or DHCP).
const ROOT_NFS_WORDS: &[&str] = &["/dev/nfs", "nfs", "dhcp"];

impl RootRequest {
    /// What the command line (`raw`: every parameter in order; the last `root=` and
    /// `nfsroot=` win, as in the kernel) says about the root.
    pub fn from_cmdline<K: AsRef<str>, V: AsRef<str>>(raw: &[(K, Option<V>)]) -> Result<RootRequest, RootSpecError> {
        let last = |key: &str| {
            raw.iter().rev().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v.as_ref().map_or("", |v| v.as_ref()))
        };
        let root = last("root");
        let nfsroot = last("nfsroot").filter(|v| !v.is_empty());
        match root {
            Some(r) if r.starts_with("nfs:") || r.starts_with("nfs4:") => parse_dracut(r),
            Some(r) if ROOT_NFS_WORDS.contains(&r) || r.is_empty() => match nfsroot {
                Some(spec) => parse_kernel(spec, Syntax::Kernel),
                None => Ok(RootRequest::FromDhcp),
            },
            Some(r) => Err(RootSpecError::NotNfs { root: r.to_string() }),
            None => match nfsroot {
                Some(spec) => parse_kernel(spec, Syntax::Kernel),
                None => Ok(RootRequest::FromDhcp),
            },
        }
    }

    /// Whether the command line names a root of its own (not left to DHCP).
    pub fn is_given(&self) -> bool {
        matches!(self, RootRequest::Spec { .. })
    }

    /// The final root, with the lease filling in the server (and the root-path when the
    /// command line has none), the servers in the order of the leased address
    /// ([`server_order`]), and `%s` replaced by `hostname`.
    pub fn resolve(&self, lease: &Lease, hostname: &str) -> Result<NfsRoot, RootSpecError> {
        let (servers, path, version, options, syntax) = self.in_force(lease)?;
        let (servers, server_source) = root_servers(&servers, lease, &path)?;
        let servers = server_order(&servers, lease.address);
        let path = substitute_host(&path, hostname)?;
        Ok(NfsRoot { server: servers[0], servers, server_source, path, version, options, syntax })
    }

    /// The NFS servers the root would be mounted from with `lease` (as written), and the
    /// `port=` given for them: what the network stage checks a lease against.
    pub fn servers_for(&self, lease: &Lease) -> Result<(Vec<Ipv4Addr>, Option<u16>), RootSpecError> {
        let (servers, path, _, options, _) = self.in_force(lease)?;
        root_servers(&servers, lease, &path).map(|(servers, _)| (servers, options.port))
    }

    /// The specification in force: the command line's, else the lease's root-path.
    fn in_force(&self, lease: &Lease) -> Result<(Vec<Ipv4Addr>, String, Version, Options, Syntax), RootSpecError> {
        let from_dhcp;
        let (servers, path, version, options, syntax) = match self {
            RootRequest::Spec { servers, path, version, options, syntax } => (servers, path, version, options, syntax),
            RootRequest::FromDhcp => {
                let root_path = lease.root_path.as_deref().filter(|p| !p.is_empty()).ok_or(RootSpecError::NoRoot)?;
                from_dhcp = parse_root_path(root_path)?;
                match &from_dhcp {
                    RootRequest::Spec { servers, path, version, options, .. } => {
                        (servers, path, version, options, &Syntax::DhcpRootPath)
                    }
                    RootRequest::FromDhcp => return Err(RootSpecError::NoRoot),
                }
            }
        };
        Ok((servers.clone(), path.clone(), *version, options.clone(), *syntax))
    }
}

/// nfsroot.rst: a missing server is the "root-server-ip" the autoconfiguration
/// learned: siaddr (next-server, or ip='s server field), else the DHCP server.
fn root_servers(
    servers: &[Ipv4Addr],
    lease: &Lease,
    path: &str,
) -> Result<(Vec<Ipv4Addr>, ServerSource), RootSpecError> {
    match (servers, lease.next_server, lease.server_id) {
        ([_, ..], _, _) => Ok((servers.to_vec(), ServerSource::Given)),
        ([], Some(s), _) if !s.is_unspecified() => Ok((vec![s], ServerSource::NextServer)),
        ([], _, Some(s)) if !s.is_unspecified() => Ok((vec![s], ServerSource::DhcpServer)),
        _ => Err(RootSpecError::NoServer { spec: path.to_string() }),
    }
}

/// A DHCP root-path: kernel style `[server:]path[,opts]`, or dracut style when it
/// starts with `nfs:`/`nfs4:` (dracut accepts both in option 17).
fn parse_root_path(value: &str) -> Result<RootRequest, RootSpecError> {
    let request = if value.starts_with("nfs:") || value.starts_with("nfs4:") {
        parse_dracut(value)?
    } else {
        parse_kernel(value, Syntax::DhcpRootPath)?
    };
    Ok(match request {
        RootRequest::Spec { servers, path, version, options, .. } => {
            RootRequest::Spec { servers, path, version, options, syntax: Syntax::DhcpRootPath }
        }
        other => other,
    })
}

/// Kernel syntax `[server:]path[,opts]` (Documentation/admin-guide/nfs/nfsroot.rst).
fn parse_kernel(spec: &str, syntax: Syntax) -> Result<RootRequest, RootSpecError> {
    no_controls(spec)?;
    let (location, opts) = match spec.split_once(',') {
        Some((l, o)) => (l, o),
        None => (spec, ""),
    };
    if location.parse::<Ipv4Addr>().is_ok() {
        return Err(RootSpecError::ServerWithoutPath { spec: spec.into(), location: location.into() });
    }
    let (servers, path) = split_server(spec, location)?;
    let (version, options) = parse_options(spec, opts.split(','), Version::Auto)?;
    check_path(spec, path)?;
    Ok(RootRequest::Spec { servers, path: path.to_string(), version, options, syntax })
}

/// dracut syntax `nfs:[server:]/path[:opts]` and `nfs4:...` (dracut.cmdline(7)).
fn parse_dracut(spec: &str) -> Result<RootRequest, RootSpecError> {
    no_controls(spec)?;
    let (nfs4, rest) = match spec.strip_prefix("nfs4:") {
        Some(rest) => (true, rest),
        None => (false, spec.strip_prefix("nfs:").unwrap_or(spec)),
    };
    // The path starts with '/', so a ':' before it ends the server, and the first ':'
    // after it starts the options.
    let (servers, after) = match rest.find('/') {
        Some(slash) if slash > 0 => {
            let s = rest[..slash]
                .strip_suffix(':')
                .ok_or_else(|| RootSpecError::Path { spec: spec.into(), path: rest.to_string() })?;
            (parse_servers(spec, s)?, &rest[slash..])
        }
        _ => (Vec::new(), rest),
    };
    let (path, opts) = match after.split_once(':') {
        Some((p, o)) => (p, o),
        None => (after, ""),
    };
    check_path(spec, path)?;
    let default = if nfs4 { Version::V4(2) } else { Version::Auto };
    let (version, options) = parse_options(spec, opts.split(','), default)?;
    if nfs4 && version == Version::V3 {
        return Err(RootSpecError::VersionConflict { spec: spec.into() });
    }
    Ok(RootRequest::Spec { servers, path: path.to_string(), version, options, syntax: Syntax::Dracut })
}

/// `server[+server...]:path` or `path`: a ':' before the first '/' separates the servers.
fn split_server<'a>(spec: &str, location: &'a str) -> Result<(Vec<Ipv4Addr>, &'a str), RootSpecError> {
    match location.split_once(':') {
        Some((servers, path)) if !servers.contains('/') => Ok((parse_servers(spec, servers)?, path)),
        _ => Ok((Vec::new(), location)),
    }
}

/// `a[+b...]`: one or more addresses, each once.
fn parse_servers(spec: &str, servers: &str) -> Result<Vec<Ipv4Addr>, RootSpecError> {
    let mut list: Vec<Ipv4Addr> = Vec::new();
    for server in servers.split('+') {
        let address = parse_server(spec, server)?;
        if list.contains(&address) {
            return Err(RootSpecError::DuplicateServer { spec: spec.into(), server: address });
        }
        list.push(address);
    }
    Ok(list)
}

fn parse_server(spec: &str, server: &str) -> Result<Ipv4Addr, RootSpecError> {
    // dracut allows [v4] brackets around addresses; accept them for IPv4.
    let bare = server.strip_prefix('[').and_then(|s| s.strip_suffix(']')).unwrap_or(server);
    bare.parse().map_err(|_| RootSpecError::Server { spec: spec.into(), server: server.into() })
}

fn no_controls(spec: &str) -> Result<(), RootSpecError> {
    if spec.contains(char::is_control) { Err(RootSpecError::Control { spec: spec.into() }) } else { Ok(()) }
}

fn check_path(spec: &str, path: &str) -> Result<(), RootSpecError> {
    if path.starts_with('/') { Ok(()) } else { Err(RootSpecError::Path { spec: spec.into(), path: path.into() }) }
}

/// `vers=`/`nfsvers=` values and what they select.
const VERSIONS: &[(&str, Version)] = &[
    ("3", Version::V3),
    ("4", Version::V4(2)),
    ("4.0", Version::V4(0)),
    ("4.1", Version::V4(1)),
    ("4.2", Version::V4(2)),
];

/// Options diskless sets itself: a value given for them is replaced.
const SET_BY_US: &[&str] = &["addr", "clientaddr"];

/// Split the option list into what diskless understands and what it passes through.
fn parse_options<'a>(
    spec: &str,
    opts: impl Iterator<Item = &'a str>,
    default: Version,
) -> Result<(Version, Options), RootSpecError> {
    let mut version = default;
    let mut minor: Option<u8> = None;
    let mut o = Options::default();
    let port = |option: &str, value: &str| {
        value
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| RootSpecError::Port { spec: spec.into(), option: option.into() })
    };
    for opt in opts.map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("vers" | "nfsvers", Some(v)) => {
                version = VERSIONS
                    .iter()
                    .find(|(name, _)| *name == v)
                    .map(|(_, version)| *version)
                    .ok_or_else(|| RootSpecError::Version { spec: spec.into(), value: v.into() })?;
            }
            ("v3", None) => version = Version::V3,
            ("v4", None) => version = Version::V4(2),
            ("minorversion", Some(v)) => {
                minor = Some(
                    v.parse::<u8>()
                        .ok()
                        .filter(|m| *m <= 2)
                        .ok_or_else(|| RootSpecError::Version { spec: spec.into(), value: format!("4.{v}") })?,
                )
            }
            ("tcp" | "udp", None) => o.proto = Some(key.to_string()),
            ("proto", Some(v)) => o.proto = Some(v.to_string()),
            ("mountproto", Some(v)) => o.mountproto = Some(v.to_string()),
            ("port", Some(v)) => o.port = Some(port(opt, v)?),
            ("mountport", Some(v)) => o.mountport = Some(port(opt, v)?),
            ("nolock", None) => o.lock = false,
            ("lock", None) => o.lock = true,
            ("ro", None) => {}
            ("rw", None) => o.ignored.push("rw (the root is always mounted read-only)".into()),
            (k, _) if SET_BY_US.contains(&k) => o.ignored.push(format!("{opt} (diskless sets {k} itself)")),
            _ => o.extra.push(opt.to_string()),
        }
    }
    if let Some(minor) = minor {
        match version {
            Version::V3 => {
                return Err(RootSpecError::Version {
                    spec: spec.into(),
                    value: format!("3 with minorversion={minor}"),
                });
            }
            Version::V4(_) | Version::Auto => version = Version::V4(minor),
        }
    }
    Ok((version, o))
}

/// Replace every `%s` with the host name, which must be usable as one path component.
fn substitute_host(path: &str, hostname: &str) -> Result<String, RootSpecError> {
    if !path.contains("%s") {
        return Ok(path.to_string());
    }
    crate::local::check_host_name(hostname).map_err(|reason| RootSpecError::HostName {
        spec: path.into(),
        hostname: hostname.into(),
        reason,
    })?;
    Ok(path.replace("%s", hostname))
}

/// The mount(2) option string for one try with `version` (never [`Version::Auto`]),
/// from the client address `client`.
pub fn mount_options(root: &NfsRoot, version: Version, client: Ipv4Addr) -> String {
    let o = &root.options;
    let mut out: Vec<String> = Vec::new();
    match version {
        Version::V3 | Version::Auto => {
            out.push("vers=3".into());
            out.push(format!("addr={}", root.server));
            out.push(if o.lock { "lock" } else { "nolock" }.into());
            out.push(format!("proto={}", o.proto.as_deref().unwrap_or("tcp")));
            out.push(format!("mountproto={}", o.mountproto.as_deref().unwrap_or("tcp")));
            // Without port/mountport the kernel asks the server's rpcbind.
            out.extend(o.port.map(|p| format!("port={p}")));
            out.extend(o.mountport.map(|p| format!("mountport={p}")));
        }
        Version::V4(minor) => {
            out.push(format!("vers=4.{minor}"));
            out.push(format!("addr={}", root.server));
            out.push(format!("clientaddr={client}"));
            out.extend(o.proto.as_ref().map(|p| format!("proto={p}")));
            out.extend(o.port.map(|p| format!("port={p}")));
        }
    }
    out.extend(o.extra.iter().cloned());
    out.join(",")
}

/// The versions to try, in order. A version after the first is a fallback: it is tried
/// only when the server refused the one before (see `mount_root`).
pub fn attempts(version: Version) -> Vec<Version> {
    match version {
        Version::Auto => vec![Version::V3, Version::V4(2)],
        v => vec![v],
    }
}

/// The kernel modules the first try with `version` needs (their dependencies come from
/// the module database). For [`Version::Auto`] that is v3's: `nfsv4`, most of a second
/// to load on a slow machine, is loaded only when the fallback reaches v4.
pub fn modules_for(version: Version) -> Vec<&'static str> {
    match version {
        Version::V3 | Version::Auto => vec!["nfs", "nfsv3"],
        Version::V4(_) => vec!["nfs", "nfsv4"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(cmdline: &str) -> Vec<(String, Option<String>)> {
        crate::cmdline::Cmdline::parse(cmdline).raw
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn lease() -> Lease {
        let mut l = Lease::new(ip("10.77.0.112"), ip("255.255.255.0"));
        l.server_id = Some(ip("10.77.0.1"));
        l
    }

    fn resolve(cmdline: &str, lease: &Lease) -> Result<NfsRoot, RootSpecError> {
        RootRequest::from_cmdline(&raw(cmdline))?.resolve(lease, "lab3-12")
    }

    #[test]
    fn kernel_syntax_with_server_path_and_options() {
        let r = resolve("root=/dev/nfs nfsroot=10.77.0.9:/export/root,vers=3,tcp,port=2049,hard,timeo=600", &lease())
            .unwrap();
        assert_eq!(r.server, ip("10.77.0.9"));
        assert_eq!(r.server_source, ServerSource::Given);
        assert_eq!(r.path, "/export/root");
        assert_eq!(r.version, Version::V3);
        assert_eq!(r.options.proto.as_deref(), Some("tcp"));
        assert_eq!(r.options.port, Some(2049));
        assert_eq!(r.options.extra, ["hard", "timeo=600"]);
        assert_eq!(r.syntax, Syntax::Kernel);
        assert_eq!(r.source(), "10.77.0.9:/export/root");
    }

    #[test]
    fn kernel_syntax_without_server_uses_next_server_then_server_id() {
        let mut l = lease();
        let r = resolve("root=/dev/nfs nfsroot=/export", &l).unwrap();
        assert_eq!((r.server, r.server_source), (ip("10.77.0.1"), ServerSource::DhcpServer));
        l.next_server = Some(ip("10.77.0.5"));
        let r = resolve("root=/dev/nfs nfsroot=/export", &l).unwrap();
        assert_eq!((r.server, r.server_source), (ip("10.77.0.5"), ServerSource::NextServer));
        l.next_server = Some(Ipv4Addr::UNSPECIFIED);
        let r = resolve("root=/dev/nfs nfsroot=/export", &l).unwrap();
        assert_eq!(r.server, ip("10.77.0.1"), "siaddr 0.0.0.0 means none");
        l.server_id = None;
        assert_eq!(
            resolve("root=/dev/nfs nfsroot=/export", &l),
            Err(RootSpecError::NoServer { spec: "/export".into() })
        );
    }

    #[test]
    fn nfsroot_alone_is_the_kernel_syntax_too() {
        let r = resolve("nfsroot=10.77.0.1:/export", &lease()).unwrap();
        assert_eq!((r.syntax, r.version), (Syntax::Kernel, Version::Auto));
    }

    #[test]
    fn dracut_syntax_nfs_and_nfs4() {
        let r = resolve("root=nfs:10.77.0.1:/export:vers=4.1,nolock", &lease()).unwrap();
        assert_eq!((r.server, r.path.as_str(), r.version), (ip("10.77.0.1"), "/export", Version::V4(1)));
        assert_eq!(r.syntax, Syntax::Dracut);
        let r = resolve("root=nfs4:10.77.0.1:/export", &lease()).unwrap();
        assert_eq!(r.version, Version::V4(2));
        let r = resolve("root=nfs:10.77.0.1:/export", &lease()).unwrap();
        assert_eq!(r.version, Version::Auto);
        let r = resolve("root=nfs:/export:vers=3", &lease()).unwrap();
        assert_eq!((r.server, r.version), (ip("10.77.0.1"), Version::V3));
        let r = resolve("root=nfs:[10.77.0.3]:/export", &lease()).unwrap();
        assert_eq!(r.server, ip("10.77.0.3"));
        assert_eq!(
            resolve("root=nfs4:10.77.0.1:/export:vers=3", &lease()),
            Err(RootSpecError::VersionConflict { spec: "nfs4:10.77.0.1:/export:vers=3".into() })
        );
    }

    #[test]
    fn no_root_uses_the_dhcp_root_path_with_its_own_server_or_next_server() {
        let mut l = lease();
        assert_eq!(resolve("quiet", &l), Err(RootSpecError::NoRoot));
        assert_eq!(resolve("root=/dev/nfs", &l), Err(RootSpecError::NoRoot), "root=/dev/nfs without nfsroot");
        l.root_path = Some("10.77.0.7:/export/%s,vers=4.2".into());
        let r = resolve("quiet", &l).unwrap();
        assert_eq!((r.server, r.path.as_str(), r.version), (ip("10.77.0.7"), "/export/lab3-12", Version::V4(2)));
        assert_eq!(r.syntax, Syntax::DhcpRootPath);
        l.root_path = Some("/export".into());
        l.next_server = Some(ip("10.77.0.8"));
        let r = resolve("root=dhcp", &l).unwrap();
        assert_eq!((r.server, r.server_source), (ip("10.77.0.8"), ServerSource::NextServer));
        l.root_path = Some("nfs4:10.77.0.9:/export".into());
        let r = resolve("", &l).unwrap();
        assert_eq!((r.server, r.version, r.syntax), (ip("10.77.0.9"), Version::V4(2), Syntax::DhcpRootPath));
        assert!(!RootRequest::from_cmdline(&raw("")).unwrap().is_given());
    }

    #[test]
    fn the_command_line_wins_over_the_root_path() {
        let mut l = lease();
        l.root_path = Some("10.77.0.7:/other".into());
        let r = resolve("nfsroot=10.77.0.1:/export", &l).unwrap();
        assert_eq!(r.source(), "10.77.0.1:/export");
    }

    #[test]
    fn percent_s_becomes_the_validated_host_name() {
        let r = resolve("nfsroot=10.77.0.1:/export/%s/root", &lease()).unwrap();
        assert_eq!(r.path, "/export/lab3-12/root");
        let req = RootRequest::from_cmdline(&raw("nfsroot=10.77.0.1:/export/%s")).unwrap();
        for bad in ["..", "a/b", ""] {
            assert!(matches!(req.resolve(&lease(), bad), Err(RootSpecError::HostName { .. })), "{bad:?} accepted");
        }
        assert_eq!(
            RootRequest::from_cmdline(&raw("nfsroot=10.77.0.1:/export")).unwrap().resolve(&lease(), "..").unwrap().path,
            "/export",
            "no %s: the name is not used"
        );
    }

    #[test]
    fn other_roots_and_bad_specs_are_refused_with_the_input() {
        let err = |c: &str| RootRequest::from_cmdline(&raw(c)).unwrap_err();
        assert_eq!(err("root=/dev/sda1"), RootSpecError::NotNfs { root: "/dev/sda1".into() });
        assert!(
            matches!(err("nfsroot=server.example:/export"), RootSpecError::Server { server, .. } if server == "server.example")
        );
        assert!(matches!(err("nfsroot=10.0.0.1:export"), RootSpecError::Path { path, .. } if path == "export"));
        assert!(matches!(err("nfsroot=10.0.0.1:/e,vers=2"), RootSpecError::Version { value, .. } if value == "2"));
        assert!(
            matches!(err("nfsroot=10.0.0.1:/e,port=99999"), RootSpecError::Port { option, .. } if option == "port=99999")
        );
        assert!(matches!(err("root=nfs:10.0.0.1:/e:mountport=x"), RootSpecError::Port { .. }));
        assert!(err("root=UUID=1234").to_string().contains("root=UUID=1234: diskless mounts only NFS roots"));
    }

    #[test]
    fn control_characters_in_a_dhcp_root_path_are_refused_and_shown_escaped() {
        let mut l = lease();
        for hostile in [
            "10.77.0.1:/export\0",
            "10.77.0.1:/export\x1b[2J",
            "10.77.0.1:/export,hard\ndiskless: forged",
            "nfs:10.77.0.1:/e\x08\x7f",
            "/export/\u{9b}2J",
        ] {
            l.root_path = Some(hostile.into());
            let e = resolve("quiet", &l).unwrap_err();
            assert_eq!(e, RootSpecError::Control { spec: hostile.into() });
            let text = e.to_string();
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
        let e = resolve("quiet", &l).unwrap_err().to_string();
        assert!(e.starts_with(r#"NFS root "/export/\u{9b}2J" contains control characters"#), "{e}");
        l.server_id = None;
        l.root_path = Some("/export/\u{1b}".into());
        assert!(matches!(resolve("quiet", &l), Err(RootSpecError::Control { .. })), "refused before the server");
        let no_server = RootSpecError::NoServer { spec: "/e\x1b".into() }.to_string();
        assert!(no_server.ends_with(r"write SERVER:/e\u{1b}"), "{no_server}");
    }

    #[test]
    fn version_spellings() {
        let v = |opts: &str| resolve(&format!("nfsroot=10.0.0.1:/e,{opts}"), &lease()).unwrap().version;
        assert_eq!(v("vers=3"), Version::V3);
        assert_eq!(v("nfsvers=3"), Version::V3);
        assert_eq!(v("v3"), Version::V3);
        assert_eq!(v("vers=4"), Version::V4(2));
        assert_eq!(v("v4"), Version::V4(2));
        assert_eq!(v("vers=4.0"), Version::V4(0));
        assert_eq!(v("vers=4,minorversion=1"), Version::V4(1));
        assert_eq!(v("minorversion=0"), Version::V4(0));
        assert_eq!(v("hard"), Version::Auto);
    }

    #[test]
    fn v3_options_default_to_tcp_and_nolock_and_leave_ports_to_rpcbind() {
        let r = resolve("nfsroot=10.77.0.1:/export,vers=3", &lease()).unwrap();
        assert_eq!(
            mount_options(&r, Version::V3, ip("10.77.0.112")),
            "vers=3,addr=10.77.0.1,nolock,proto=tcp,mountproto=tcp"
        );
        let r = resolve("nfsroot=10.77.0.1:/export,vers=3,port=2049,mountport=20048,lock,udp,rsize=8192", &lease())
            .unwrap();
        assert_eq!(
            mount_options(&r, Version::V3, ip("10.77.0.112")),
            "vers=3,addr=10.77.0.1,lock,proto=udp,mountproto=tcp,port=2049,mountport=20048,rsize=8192"
        );
    }

    #[test]
    fn v4_options_name_the_client_address_and_skip_v3_only_ones() {
        let r = resolve("root=nfs4:10.77.0.1:/export:mountport=20048,port=2049,addr=1.2.3.4,rw", &lease()).unwrap();
        assert_eq!(
            mount_options(&r, Version::V4(2), ip("10.77.0.112")),
            "vers=4.2,addr=10.77.0.1,clientaddr=10.77.0.112,port=2049"
        );
        assert_eq!(r.options.ignored.len(), 2, "{:?}", r.options.ignored);
    }

    #[test]
    fn auto_tries_v3_then_v4_2_and_loads_only_v3_modules_up_front() {
        assert_eq!(attempts(Version::Auto), [Version::V3, Version::V4(2)]);
        assert_eq!(attempts(Version::V4(1)), [Version::V4(1)]);
        assert_eq!(attempts(Version::V3), [Version::V3]);
        assert_eq!(modules_for(Version::Auto), ["nfs", "nfsv3"]);
        assert_eq!(modules_for(Version::V3), ["nfs", "nfsv3"]);
        assert_eq!(modules_for(Version::V4(0)), ["nfs", "nfsv4"]);
    }

    #[test]
    fn a_server_list_joined_by_plus_is_read_from_every_syntax() {
        let two = [ip("10.77.0.1"), ip("10.77.0.2")];
        let mut l = lease();
        for cmdline in [
            "root=/dev/nfs nfsroot=10.77.0.1+10.77.0.2:/export,vers=3",
            "root=nfs:10.77.0.1+10.77.0.2:/export:vers=3",
            "root=nfs:[10.77.0.1]+[10.77.0.2]:/export:vers=3",
        ] {
            let r = resolve(cmdline, &l).unwrap();
            assert_eq!(r.servers, two, "{cmdline}: .112 is even, so it starts at the first");
            assert_eq!((r.server, r.path.as_str(), r.version), (two[0], "/export", Version::V3), "{cmdline}");
            assert_eq!(r.server_source, ServerSource::Given);
            assert_eq!(r.spec(), "10.77.0.1+10.77.0.2:/export");
            assert_eq!(r.source(), "10.77.0.1:/export", "the mount source names one server");
        }
        l.root_path = Some("10.77.0.1+10.77.0.2:/export/%s,vers=4.2".into());
        let r = resolve("quiet", &l).unwrap();
        assert_eq!((r.servers.as_slice(), r.path.as_str()), (&two[..], "/export/lab3-12"));
        assert_eq!(r.syntax, Syntax::DhcpRootPath);
        l.root_path = Some("nfs4:10.77.0.1+10.77.0.2:/export".into());
        assert_eq!(resolve("quiet", &l).unwrap().servers, two);
        let (servers, port) = RootRequest::from_cmdline(&raw("nfsroot=10.77.0.2+10.77.0.1:/e,port=2050"))
            .unwrap()
            .servers_for(&l)
            .unwrap();
        assert_eq!((servers, port), (vec![two[1], two[0]], Some(2050)), "as written, for the network stage");
    }

    #[test]
    fn each_host_starts_at_its_address_modulo_the_number_of_servers() {
        let three = [ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")];
        assert_eq!(start_position(ip("10.77.0.112"), 2), 0);
        assert_eq!(start_position(ip("10.77.0.113"), 2), 1);
        // 10.77.0.112 is 0x0a4d0070 = 172_818_544; mod 3 = 1.
        assert_eq!(start_position(ip("10.77.0.112"), 3), 1);
        assert_eq!(start_position(ip("255.255.255.255"), 3), 0, "4_294_967_295 = 3 * 1_431_655_765");
        assert_eq!(start_position(ip("10.0.0.1"), 1), 0);
        assert_eq!(start_position(ip("10.0.0.1"), 0), 0, "no servers: no panic");
        assert_eq!(server_order(&three, ip("10.77.0.112")), [three[1], three[2], three[0]], "circular from 1");
        // Consecutive addresses alternate over two servers: a lab's load spreads evenly.
        let firsts: Vec<Ipv4Addr> =
            (112..116).map(|last| server_order(&three[..2], Ipv4Addr::new(10, 77, 0, last))[0]).collect();
        assert_eq!(firsts, [three[0], three[1], three[0], three[1]]);
        let mut l = lease();
        l.address = ip("10.77.0.113");
        let r = resolve("nfsroot=10.77.0.1+10.77.0.2:/export", &l).unwrap();
        assert_eq!((r.server, r.servers.as_slice()), (ip("10.77.0.2"), &[ip("10.77.0.2"), ip("10.77.0.1")][..]));
        assert_eq!(r.spec(), "10.77.0.2+10.77.0.1:/export", "the log names the host's order");
        assert_eq!(r.on(ip("10.77.0.1")).servers, [ip("10.77.0.1")]);
    }

    #[test]
    fn bad_server_lists_are_refused_naming_the_entry() {
        let err = |c: &str| RootRequest::from_cmdline(&raw(c)).unwrap_err();
        assert_eq!(
            err("nfsroot=10.0.0.1+10.0.0.1:/e"),
            RootSpecError::DuplicateServer { spec: "10.0.0.1+10.0.0.1:/e".into(), server: ip("10.0.0.1") }
        );
        assert!(
            matches!(err("nfsroot=10.0.0.1+:/e"), RootSpecError::Server { server, .. } if server.is_empty()),
            "an empty entry"
        );
        assert!(matches!(err("root=nfs:10.0.0.1+srv2:/e"), RootSpecError::Server { server, .. } if server == "srv2"));
        let text = err("nfsroot=10.0.0.1,10.0.0.2:/e").to_string();
        assert!(
            text.contains("several servers are joined by +"),
            "a comma list is an option list, and the error says so: {text}"
        );
    }

    #[test]
    fn the_last_root_parameter_wins() {
        let r = resolve("nfsroot=10.0.0.1:/a nfsroot=10.0.0.2:/b", &lease()).unwrap();
        assert_eq!(r.source(), "10.0.0.2:/b");
        let r = resolve("root=/dev/sda1 root=nfs:10.0.0.3:/c", &lease()).unwrap();
        assert_eq!(r.source(), "10.0.0.3:/c");
    }
}
