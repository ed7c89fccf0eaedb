//! Links: discovery and carrier through sysfs, configuration through
//! rtnetlink (synchronous socket; the calling thread's network namespace).

use std::net::Ipv4Addr;
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use super::config::Mac;

/// ARPHRD_ETHER in `/sys/class/net/<if>/type`.
const ARPHRD_ETHER: u32 = 1;

/// A network interface as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysLink {
    pub name: String,
    pub mac: Mac,
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Ethernet interfaces under `sys_class_net` (loopback, tunnels and others
/// without an Ethernet address are left out), sorted by name.
pub fn list_links(sys_class_net: &Path) -> Vec<SysLink> {
    let Ok(dir) = std::fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut links: Vec<SysLink> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let base = sys_class_net.join(&name);
            let kind: u32 = read_trimmed(&base.join("type"))?.parse().ok()?;
            let mac = Mac::parse(&read_trimmed(&base.join("address"))?)?;
            (kind == ARPHRD_ETHER && mac != Mac::default()).then_some(SysLink { name, mac })
        })
        .collect();
    links.sort_by(|a, b| a.name.cmp(&b.name));
    links
}

/// Whether the link reports carrier. The file is unreadable (EINVAL) while
/// the link is down, which counts as no carrier.
pub fn has_carrier(sys_class_net: &Path, name: &str) -> bool {
    read_trimmed(&sys_class_net.join(name).join("carrier")).is_some_and(|c| c == "1")
}

/// Errors of link configuration.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open a netlink socket: {source}")]
    Socket { source: std::io::Error },
    #[error("no network interface named {name}")]
    NoSuchLink { name: String },
    /// Sending or receiving failed, or the kernel refused the request.
    #[error("{op} on {name} failed: {source}")]
    Request { op: &'static str, name: String, source: std::io::Error },
    #[error("{op} on {name} failed: unreadable netlink reply: {source}")]
    UnreadableReply { op: &'static str, name: String, source: netlink_packet_core::DecodeError },
}

/// Address configuration for one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub broadcast: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: Option<u16>,
}

/// An rtnetlink connection.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

const EEXIST: i32 = 17;

impl Netlink {
    pub fn open() -> Result<Netlink, LinkError> {
        let err = |source| LinkError::Socket { source };
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
        sock.bind_auto().map_err(err)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(err)?;
        Ok(Netlink { sock, seq: 0 })
    }

    fn index(name: &str) -> Result<u32, LinkError> {
        nix::net::if_::if_nametoindex(name).map_err(|_| LinkError::NoSuchLink { name: name.into() })
    }

    /// Sends one request and waits for its acknowledgement. `EEXIST` counts
    /// as success so that configuring twice is harmless.
    fn request(&mut self, op: &'static str, name: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<(), LinkError> {
        let fail = |source| LinkError::Request { op, name: name.into(), source };
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(fail)?;
        let mut rx = vec![0u8; 8192];
        loop {
            let len = self.sock.recv(&mut &mut rx[..], 0).map_err(fail)?;
            let mut offset = 0;
            while offset < len {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[offset..len])
                    .map_err(|source| LinkError::UnreadableReply { op, name: name.into(), source })?;
                let size = reply.header.length as usize;
                if reply.header.sequence_number == self.seq
                    && let NetlinkPayload::Error(e) = reply.payload
                {
                    return match e.code {
                        None => Ok(()),
                        Some(code) if -code.get() == EEXIST => Ok(()),
                        Some(code) => Err(fail(std::io::Error::from_raw_os_error(-code.get()))),
                    };
                }
                if size == 0 {
                    break;
                }
                offset += size;
            }
        }
    }

    /// Sets the link administratively up or down.
    pub fn set_up(&mut self, name: &str, up: bool) -> Result<(), LinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = Self::index(name)?;
        msg.header.flags = if up { LinkFlags::Up } else { LinkFlags::empty() };
        msg.header.change_mask = LinkFlags::Up;
        self.request(if up { "link up" } else { "link down" }, name, RouteNetlinkMessage::SetLink(msg), 0)
    }

    pub fn set_mtu(&mut self, name: &str, mtu: u16) -> Result<(), LinkError> {
        let mut msg = LinkMessage::default();
        msg.header.index = Self::index(name)?;
        msg.attributes.push(LinkAttribute::Mtu(u32::from(mtu)));
        self.request("set MTU", name, RouteNetlinkMessage::SetLink(msg), 0)
    }

    pub fn add_address(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        prefix_len: u8,
        broadcast: Ipv4Addr,
    ) -> Result<(), LinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.scope = AddressScope::Universe;
        msg.header.index = Self::index(name)?;
        msg.attributes.push(AddressAttribute::Local(addr.into()));
        msg.attributes.push(AddressAttribute::Address(addr.into()));
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        self.request("add address", name, RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_REPLACE)
    }

    pub fn add_default_route(&mut self, name: &str, gateway: Ipv4Addr) -> Result<(), LinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Dhcp;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(Self::index(name)?));
        self.request("add default route", name, RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_REPLACE)
    }

    pub fn remove_address(&mut self, name: &str, addr: Ipv4Addr, prefix_len: u8) -> Result<(), LinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = Self::index(name)?;
        msg.attributes.push(AddressAttribute::Local(addr.into()));
        msg.attributes.push(AddressAttribute::Address(addr.into()));
        self.request("remove address", name, RouteNetlinkMessage::DelAddress(msg), 0)
    }

    /// Undoes [`Netlink::configure`]: removing the link's only address also makes
    /// the kernel drop the routes through it, the default route included.
    pub fn unconfigure(&mut self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        self.remove_address(name, cfg.address, cfg.prefix_len)
    }

    /// MTU first (the address route inherits it), then address, then the
    /// default route, which needs the gateway to be on-link already.
    pub fn configure(&mut self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        if let Some(mtu) = cfg.mtu {
            self.set_mtu(name, mtu)?;
        }
        self.add_address(name, cfg.address, cfg.prefix_len, cfg.broadcast)?;
        if let Some(gw) = cfg.gateway {
            self.add_default_route(name, gw)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_link(root: &Path, name: &str, kind: &str, mac: &str, carrier: Option<&str>) {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
        std::fs::write(d.join("address"), format!("{mac}\n")).unwrap();
        if let Some(c) = carrier {
            std::fs::write(d.join("carrier"), format!("{c}\n")).unwrap();
        }
    }

    #[test]
    fn list_links_keeps_ethernet_and_skips_loopback_and_others() {
        let dir = tempfile::tempdir().unwrap();
        fake_link(dir.path(), "lo", "772", "00:00:00:00:00:00", Some("1"));
        fake_link(dir.path(), "eth1", "1", "52:54:00:00:00:02", Some("0"));
        fake_link(dir.path(), "eth0", "1", "52:54:00:00:00:01", None);
        fake_link(dir.path(), "ipip0", "768", "00:00:00:00", None);
        let links = list_links(dir.path());
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(links[0].mac, Mac([0x52, 0x54, 0, 0, 0, 1]));
        assert!(!has_carrier(dir.path(), "eth0"), "missing carrier file means no carrier");
        assert!(!has_carrier(dir.path(), "eth1"));
        assert!(has_carrier(dir.path(), "lo"));
        assert!(list_links(&dir.path().join("absent")).is_empty());
    }

    #[test]
    fn request_on_missing_link_names_it() {
        let mut nl = Netlink::open().unwrap();
        let e = nl.set_up("dlnoexist0", true).unwrap_err();
        assert!(matches!(&e, LinkError::NoSuchLink { name } if name == "dlnoexist0"), "{e:?}");
    }
}
