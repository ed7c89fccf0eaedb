//! The lab file as written (`lab.toml`): strict serde types. Every table refuses keys it
//! does not know, so a misspelt key is an error naming it rather than a silent default.
//! What serde cannot see (unique names, an address inside its subnet, a group that
//! exists) is checked afterwards by [`super::Lab::from_file`], naming the key path.
//!
//! ```toml
//! [server]
//! address = "10.77.0.1"            # this server: TFTP, NFS, DNS and next-server
//! name = "server"                  # its host name in the lab's domain (A record, NS)
//! interface = "br0"                # optional: dnsmasq serves only this interface
//! http = "http://10.77.0.1/diskless"   # optional: kernels and initrds over HTTP (nginx.conf)
//!
//! [peer]                           # optional: a second server answering DHCP, DNS and TFTP
//! address = "10.77.0.2"            # (dnsmasq-peer.conf / dhcpd-peer.conf; see below)
//! name = "server2"
//! interface = "br0"                # optional, as server.interface
//!
//! [loaders]                        # optional; where the boot loaders are taken from
//! pxelinux = "/usr/lib/PXELINUX/pxelinux.0"                       # package pxelinux
//! lpxelinux = "/usr/lib/PXELINUX/lpxelinux.0"                     # the same, with HTTP
//! ldlinux = "/usr/lib/syslinux/modules/bios/ldlinux.c32"          # syslinux-common
//! uefi = "/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi"     # grub-efi-amd64-bin
//! uefi_http = "/usr/lib/grub/x86_64-efi/http.mod"                 # the same, with server.http
//! shim = "/usr/lib/shim/shimx64.efi.signed"                        # shim-signed
//! uefi_signed = "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"  # grub-efi-amd64-signed
//! uefi_arm64 = "/usr/lib/grub/arm64-efi/monolithic/grubnetaa64.efi"  # grub-efi-arm64-bin
//! openfirmware = "/srv/grub/grubnetppc.elf"  # no default: grub-mkimage from grub-ieee1275-bin 2.12
//!
//! [[subnet]]
//! network = "10.77.0.0/24"
//! router = "10.77.0.1"             # optional
//! dns = ["10.77.0.1"]              # optional, default: the server's address
//! syslog = ["10.77.0.1"]           # optional: log servers (DHCP option 7) the clients report to
//! domain = "example.edu"
//! dynamic = ["10.77.0.150", "10.77.0.199"]   # optional: addresses for unknown machines
//! image = "debian"                 # optional: what unknown machines boot
//!
//! [[image]]
//! name = "debian"                  # the TFTP subdirectory: tftproot/debian/
//! export = "/srv/diskless/debian"  # the NFS export, the clients' root
//! kernel = "newest"                # or a version, e.g. "6.1.0-57-amd64"
//! firmware = ["bios", "uefi"]      # which clients it serves (DHCP option 93):
//!                                  # "bios", "uefi" (x86-64), "uefi-arm64", "openfirmware"
//! params = "console=ttyS0,115200"  # optional: kernel parameters of every client
//! nfs_options = "vers=3"           # optional: appended to nfsroot=
//! nfs_servers = ["10.77.0.1", "10.77.0.2"]  # optional: servers holding the same export
//! maintenance = "10.77.0.5"        # optional: the one host that mounts it read-write
//! secure_boot = true               # optional: UEFI clients boot shim -> signed GRUB -> signed kernel
//!
//! [[group]]
//! name = "lab3"
//! image = "debian"                 # default image of its hosts
//! params = "diskless.mode=overlay" # default extra parameters of its hosts
//!
//! [[host]]
//! name = "lab3-12"
//! mac = "52:54:00:77:03:12"
//! address = "10.77.0.112"
//! group = "lab3"                   # optional
//! image = "debian"                 # optional when the group gives one
//! params = "diskless.debug"        # optional: replaces the group's
//! ```
//!
//! `nfs_servers` lists the NFS servers that hold the image's export (default: the
//! server's address alone). The clients' command lines name them joined by `+`
//! (`nfsroot=10.77.0.1+10.77.0.2:/srv/diskless/debian`), and so does the root-path
//! (DHCP option 17) handed to the image's hosts; each client starts at its address
//! modulo their number and moves on from a server that does not answer (see
//! `root::parse`). Keeping the copies identical (rsync after each change of the
//! image) is the administrator's; every server exports it read-only.
//!
//! `[peer]` is a second DHCP server, so that a lab still boots while one server is
//! down: render writes `dnsmasq-peer.conf` (or `dhcpd-peer.conf` with `--dhcp isc`)
//! beside the server's. Both give every host of the lab file the same fixed address,
//! options and boot file, so whichever answers first the client gets the same lease;
//! the subnet's `dynamic` range is split in two halves, the lower for the server and
//! the upper for the peer, so two servers never lend one address to two unknown
//! machines. Each gives itself as next-server (TFTP) and first DNS server, the other
//! second. The peer needs a copy of the output directory at the same path (TFTP root,
//! kernels, initrds), e.g. by rsync after every render. No lease database is shared:
//! a lab's machines are in the lab file, and for them there is nothing to share (this
//! is why a pair of independent servers rather than ISC's failover protocol, which
//! needs both peers' clocks and states in step and an operator's partner-down
//! command before one server may lend the other's addresses).
//!
//! `secure_boot = true` serves the image's UEFI clients through the distribution's
//! signed chain, so that machines with Secure Boot on start it (machines with it off
//! start it too): DHCP hands out `<image>/shimx64.efi` (`loaders.shim`, signed by
//! Microsoft), which fetches `grubx64.efi` (`loaders.uefi_signed`, Debian's signed
//! GRUB) from the TFTP root (Debian 12's shim 16 looks there whatever directory it
//! came from; one GRUB for all such images); GRUB reads the same `grub/grub.cfg` and
//! boots the kernel only if it is signed (Debian's are), the initrd unchecked. The
//! kernel then runs locked down and loads only signed modules: mkinitramfs copies
//! the image's modules byte for byte, signatures included. The image must serve
//! `"uefi"`. The two packages may be unpacked (`apt-get download`, `dpkg -x`) rather
//! than installed where installing them would change the server's own boot setup.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabFile {
    pub server: Server,
    #[serde(default)]
    pub loaders: Loaders,
    #[serde(default, rename = "subnet")]
    pub subnets: Vec<Subnet>,
    #[serde(default, rename = "image")]
    pub images: Vec<Image>,
    #[serde(default, rename = "group")]
    pub groups: Vec<Group>,
    #[serde(default, rename = "host")]
    pub hosts: Vec<Host>,
    /// A second server answering DHCP, DNS and TFTP like [`LabFile::server`].
    pub peer: Option<Peer>,
}

/// `[peer]`: the second DHCP (and DNS, TFTP) server of the pair.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub address: Addr,
    #[serde(default = "default_peer_name")]
    pub name: String,
    pub interface: Option<String>,
}

fn default_peer_name() -> String {
    "server2".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub address: Addr,
    #[serde(default = "default_server_name")]
    pub name: String,
    pub interface: Option<String>,
    /// Where the clients fetch kernels and initrds over HTTP; only the loader and its
    /// configuration still go over TFTP. Absent: everything over TFTP.
    pub http: Option<HttpUrl>,
}

fn default_server_name() -> String {
    "server".into()
}

/// Where render copies the boot loaders from (Debian's paths by default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loaders {
    #[serde(default = "default_pxelinux")]
    pub pxelinux: PathBuf,
    /// pxelinux with an HTTP client: BIOS clients get it when `server.http` is set.
    #[serde(default = "default_lpxelinux")]
    pub lpxelinux: PathBuf,
    #[serde(default = "default_ldlinux")]
    pub ldlinux: PathBuf,
    #[serde(default = "default_uefi")]
    pub uefi: PathBuf,
    /// GRUB's http module: Debian's grubnetx64.efi has no HTTP client built in and
    /// loads it from the TFTP root (`grub/x86_64-efi/http.mod`) when `server.http` is set.
    #[serde(default = "default_uefi_http")]
    pub uefi_http: PathBuf,
    /// shim signed by Microsoft: the first loader of `secure_boot` images.
    #[serde(default = "default_shim")]
    pub shim: PathBuf,
    /// The distribution's signed GRUB network loader that shim starts.
    #[serde(default = "default_uefi_signed")]
    pub uefi_signed: PathBuf,
    /// GRUB's network loader for ARM64 UEFI clients.
    #[serde(default = "default_uefi_arm64")]
    pub uefi_arm64: PathBuf,
    /// A GRUB netboot image for OpenFirmware clients. Debian ships only GRUB's modules
    /// (grub-ieee1275-bin), so the administrator builds it with grub-mkimage (see
    /// [`OPENFIRMWARE_MKIMAGE`]); no default.
    pub openfirmware: Option<PathBuf>,
}

/// How to build `loaders.openfirmware` from Debian's grub-ieee1275-bin: the network
/// modules built in; GRUB takes the firmware's DHCP reply and reads `/grub/grub.cfg`
/// from the TFTP server it came from. GRUB 2.12: bookworm's 2.06-13+deb12u2 registers
/// no OpenFirmware NIC (its ofnet never allocates the card's path).
pub const OPENFIRMWARE_MKIMAGE: &str = "grub-mkimage -O powerpc-ieee1275 -d /usr/lib/grub/powerpc-ieee1275 \
     -p /grub -o PATH net ofnet tftp linux normal echo test configfile, with GRUB 2.12 or later \
     (grub-ieee1275-bin and grub-common of bookworm-backports): 2.06 finds no network card";

fn default_pxelinux() -> PathBuf {
    "/usr/lib/PXELINUX/pxelinux.0".into()
}
fn default_lpxelinux() -> PathBuf {
    "/usr/lib/PXELINUX/lpxelinux.0".into()
}
fn default_ldlinux() -> PathBuf {
    "/usr/lib/syslinux/modules/bios/ldlinux.c32".into()
}
fn default_uefi() -> PathBuf {
    "/usr/lib/grub/x86_64-efi/monolithic/grubnetx64.efi".into()
}
fn default_shim() -> PathBuf {
    "/usr/lib/shim/shimx64.efi.signed".into()
}
fn default_uefi_http() -> PathBuf {
    "/usr/lib/grub/x86_64-efi/http.mod".into()
}
fn default_uefi_arm64() -> PathBuf {
    "/usr/lib/grub/arm64-efi/monolithic/grubnetaa64.efi".into()
}
fn default_uefi_signed() -> PathBuf {
    "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed".into()
}

impl Default for Loaders {
    fn default() -> Self {
        Loaders {
            pxelinux: default_pxelinux(),
            lpxelinux: default_lpxelinux(),
            ldlinux: default_ldlinux(),
            uefi: default_uefi(),
            uefi_http: default_uefi_http(),
            shim: default_shim(),
            uefi_signed: default_uefi_signed(),
            uefi_arm64: default_uefi_arm64(),
            openfirmware: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub network: Cidr,
    pub router: Option<Addr>,
    pub dns: Option<Vec<Addr>>,
    /// Log servers handed out as DHCP option 7: where the clients send their boot log
    /// and inventory (`diskless inventory` reads what they received).
    #[serde(default)]
    pub syslog: Vec<Addr>,
    pub domain: String,
    pub dynamic: Option<[Addr; 2]>,
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    pub name: String,
    pub export: PathBuf,
    #[serde(default = "default_kernel")]
    pub kernel: String,
    #[serde(default = "default_firmware")]
    pub firmware: Vec<Firmware>,
    #[serde(default)]
    pub params: String,
    pub nfs_options: Option<String>,
    /// The NFS servers holding the export, in the order of the list clients rotate
    /// (default: the server's address).
    #[serde(default)]
    pub nfs_servers: Vec<Addr>,
    pub maintenance: Option<Addr>,
    /// UEFI clients boot through shim and the signed GRUB (see the module docs).
    #[serde(default)]
    pub secure_boot: bool,
}

fn default_kernel() -> String {
    NEWEST.into()
}

/// `kernel = "newest"`: the highest version found in the image's `/boot`.
pub const NEWEST: &str = "newest";

fn default_firmware() -> Vec<Firmware> {
    vec![Firmware::Bios]
}

/// The client firmware an image serves; DHCP option 93 tells them apart (RFC 4578 and
/// IANA's "Processor Architecture Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// x86 BIOS PXE, 32- or 64-bit PCs (option 93 = 0): pxelinux.
    Bios,
    /// x86-64 UEFI (7, or 9): GRUB's grubnetx64.efi, or shim with `secure_boot`.
    Uefi,
    /// ARM64 UEFI (11): GRUB's grubnetaa64.efi.
    #[serde(rename = "uefi-arm64")]
    UefiArm64,
    /// POWER OpenFirmware (SLOF on pseries, PowerVM): a GRUB netboot image for
    /// powerpc-ieee1275. SLOF sends no option 93, so its image's hosts get it by their
    /// image alone.
    Openfirmware,
}

impl Firmware {
    /// Every firmware, in the order render writes them.
    pub const ALL: [Firmware; 4] = [Firmware::Bios, Firmware::Uefi, Firmware::UefiArm64, Firmware::Openfirmware];

    /// The processor family its clients run: one image (one kernel) serves one.
    pub fn cpu(self) -> &'static str {
        match self {
            Firmware::Bios | Firmware::Uefi => "x86",
            Firmware::UefiArm64 => "arm64",
            Firmware::Openfirmware => "powerpc",
        }
    }

    /// Its name in the lab file.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
            Firmware::UefiArm64 => "uefi-arm64",
            Firmware::Openfirmware => "openfirmware",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub image: Option<String>,
    pub params: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    pub mac: MacAddr,
    pub address: Addr,
    pub group: Option<String>,
    pub image: Option<String>,
    pub params: Option<String>,
}

/// An IPv4 address whose parse error says what is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr(pub Ipv4Addr);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Addr).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an IPv4 address; write four numbers, e.g. \"10.77.0.12\""
            ))
        })
    }
}

/// A MAC address as written in the lab file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        crate::net::Mac::parse(&text).map(|m| MacAddr(m.0)).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a MAC address; write six hex bytes, e.g. \"52:54:00:77:03:12\""
            ))
        })
    }
}

impl MacAddr {
    /// `aa-bb-cc-dd-ee-ff`, as pxelinux names its per-machine files (after `01-`).
    pub fn dashed(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&crate::net::Mac(self.0), f)
    }
}

/// `server.http`: `http://ADDRESS[:PORT][/PATH]`, the URL under which the web server
/// serves the TFTP root (`URL/IMAGE/vmlinuz`). An IPv4 address rather than a name: the
/// loaders fetch before the client has a resolver worth the name, and nginx listens on
/// it. No `https`: neither pxelinux nor GRUB's network loader speaks TLS.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpUrl {
    pub address: Ipv4Addr,
    pub port: u16,
    /// Empty, or `/a/b` without a trailing slash.
    pub path: String,
}

impl HttpUrl {
    pub const DEFAULT_PORT: u16 = 80;

    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let hint = "write http://ADDRESS[:PORT]/PATH, e.g. \"http://10.77.0.1/diskless\"";
        let Some(rest) = text.strip_prefix("http://") else {
            let why = if text.starts_with("https://") {
                "https is not spoken by pxelinux nor GRUB's network loader"
            } else {
                "it does not start with http://"
            };
            return Err(format!("{text:?}: {why}; {hint}"));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let (address, port) = match authority.rsplit_once(':') {
            Some((address, port)) => match port.parse::<u16>() {
                Ok(p) if p > 0 => (address, p),
                _ => return Err(format!("{text:?}: port {port:?} is not a number from 1 to 65535; {hint}")),
            },
            None => (authority, Self::DEFAULT_PORT),
        };
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{text:?}: {address:?} is not an IPv4 address (the loaders need one); {hint}"))?;
        let path = path.trim_end_matches('/');
        // The path goes unquoted into pxelinux's, GRUB's and nginx's configurations.
        let safe = |segment: &str| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        };
        if !path.is_empty() && !path[1..].split('/').all(safe) {
            return Err(format!(
                "{text:?}: path {path:?} may only hold letters, digits, '-', '_', '.', '~' between single slashes; {hint}"
            ));
        }
        Ok(HttpUrl { address, port, path: path.into() })
    }

    /// `ADDRESS` or `ADDRESS:PORT` (the port only when it is not 80).
    pub fn authority(&self) -> String {
        if self.port == Self::DEFAULT_PORT {
            self.address.to_string()
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.path)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HttpUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A network `a.b.c.d/n` whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) }
    }

    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    pub fn broadcast(self) -> Ipv4Addr {
        crate::admin::broadcast_of(self.network, self.prefix)
    }

    pub fn contains(self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.network)
    }

    fn parse(text: &str) -> Result<Cidr, String> {
        let hint = "write the network and its prefix length, e.g. \"10.77.0.0/24\"";
        let (network, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} has no /prefix; {hint}"))?;
        let network: Ipv4Addr = network.parse().map_err(|_| format!("{network:?} is not an IPv4 address; {hint}"))?;
        let prefix: u8 = match prefix.parse() {
            Ok(p) if p <= 32 => p,
            _ => return Err(format!("prefix {prefix:?} is not a number from 0 to 32; {hint}")),
        };
        let cidr = Cidr { network, prefix };
        let masked = Ipv4Addr::from(u32::from(network) & cidr.mask());
        if masked != network {
            return Err(format!("{text:?} has host bits set; the network is \"{masked}/{prefix}\""));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cidr::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_with_their_mask_and_broadcast() {
        let c = Cidr::parse("10.77.0.0/24").unwrap();
        assert_eq!((c.netmask(), c.broadcast()), (Ipv4Addr::new(255, 255, 255, 0), Ipv4Addr::new(10, 77, 0, 255)));
        assert!(c.contains(Ipv4Addr::new(10, 77, 0, 9)) && !c.contains(Ipv4Addr::new(10, 77, 1, 9)));
        assert!(Cidr::parse("10.77.0.5/24").unwrap_err().contains("\"10.77.0.0/24\""));
        assert!(Cidr::parse("10.77.0.0").unwrap_err().contains("no /prefix"));
        assert!(Cidr::parse("10.77.0.0/33").unwrap_err().contains("0 to 32"));
    }

    #[test]
    fn http_urls_parse_to_address_port_and_path_and_name_what_is_wrong() {
        let u = HttpUrl::parse("http://10.77.0.1/diskless/").unwrap();
        assert_eq!((u.address, u.port, u.path.as_str()), (Ipv4Addr::new(10, 77, 0, 1), 80, "/diskless"));
        assert_eq!(u.to_string(), "http://10.77.0.1/diskless");
        let u = HttpUrl::parse("http://10.77.0.1:8080").unwrap();
        assert_eq!((u.port, u.path.as_str(), u.authority()), (8080, "", "10.77.0.1:8080".to_string()));
        assert!(HttpUrl::parse("https://10.77.0.1/x").unwrap_err().contains("https is not spoken"));
        assert!(HttpUrl::parse("ftp://10.77.0.1/x").unwrap_err().contains("does not start with http://"));
        assert!(HttpUrl::parse("http://server/x").unwrap_err().contains("\"server\" is not an IPv4 address"));
        assert!(HttpUrl::parse("http://10.77.0.1:0/x").unwrap_err().contains("port \"0\""));
        assert!(HttpUrl::parse("http://10.77.0.1/a b").unwrap_err().contains("may only hold"));
        assert!(HttpUrl::parse("http://10.77.0.1/a/../b").unwrap_err().contains("may only hold"));
        assert!(HttpUrl::parse("http://10.77.0.1//b").unwrap_err().contains("may only hold"));
    }
}
