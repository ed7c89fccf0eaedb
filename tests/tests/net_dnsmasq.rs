//! The real network stage, identity stage and hand-off files against a real
//! dnsmasq, over a veth pair between two namespaces this test creates.
//!
//! Namespace A holds dnsmasq on `vs` (10.78.0.1/24); namespace B holds the
//! client end `vc`. The client runs on a thread that `setns`'d into B and
//! has its own mount namespace with a sysfs mounted on a temp dir, so
//! `/sys/class/net` of B is a plain path parameter. Nothing has a route or a
//! link to the outside; namespaces and processes go away on drop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diskless::net::{self, Level, NetConfig, NetResult, Proto, dns::LookupTiming, identity::NameSource};
use diskless::os::RealOs;
use diskless::os::fake::{Call, FakeOs};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use qemu_tests::dnsmasq::{Dnsmasq, DnsmasqConfig};
use qemu_tests::netns::Netns;

const MAC: &str = "52:54:00:78:03:12";
const SUBNET: &str = "10.78.0.0/24";
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 112);

/// Server namespace with `vs` at 10.78.0.1/24, client namespace with `vc`
/// (down, fixed MAC) at the other end.
struct Rig {
    client: Netns,
    server: Netns,
}

impl Rig {
    fn new() -> Rig {
        let server = Netns::new("dls").expect("server namespace");
        let client = Netns::new("dlc").expect("client namespace");
        server.add_veth_to("vs", &client, "vc").expect("veth pair");
        server.add_addr("vs", "10.78.0.1/24").expect("server address");
        client.ip(&["link", "set", "vc", "address", MAC]).expect("client MAC");
        // The stage must bring the link up itself.
        client.ip(&["link", "set", "vc", "down"]).expect("client link down");
        Rig { client, server }
    }

    fn dhcp_config(&self) -> DnsmasqConfig {
        DnsmasqConfig::new("vs")
            .ipv6_ra(false)
            .dhcp_range("10.78.0.100", "10.78.0.199", "255.255.255.0", "1h")
            .router("10.78.0.1")
            .dns_server("10.78.0.1")
            .domain_name("example.edu")
            .root_path("10.78.0.1:/export")
            .option("option:mtu,1400")
    }
}

/// Collected log lines of a stage run.
struct Lines(Mutex<Vec<String>>);

impl Lines {
    fn new() -> Lines {
        Lines(Mutex::new(Vec::new()))
    }
    fn log(&self) -> impl Fn(Level, &str) + Sync + '_ {
        move |_: Level, l: &str| self.0.lock().unwrap().push(l.to_string())
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Runs `f` on a thread inside `ns` with that namespace's sysfs mounted at
/// the path handed to `f`.
fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce(&Path) -> T + Send) -> T {
    let ns_path = PathBuf::from("/run/netns").join(ns.name());
    let sys = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = std::fs::File::open(&ns_path).expect("open network namespace");
            setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns into the client namespace");
            // A private mount namespace for this thread, so the sysfs mount
            // (which shows the mounting thread's network namespace) is
            // invisible to the host and to other tests.
            unshare(CloneFlags::CLONE_NEWNS).expect("unshare mount namespace");
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
                .expect("make mounts private");
            mount(Some("sysfs"), sys.path(), Some("sysfs"), MsFlags::empty(), None::<&str>).expect("mount sysfs");
            let out = f(&sys.path().join("class/net"));
            let _ = umount2(sys.path(), MntFlags::MNT_DETACH);
            out
        })
        .join()
        .expect("client thread panicked")
    })
}

fn cfg(cmdline: &str) -> NetConfig {
    NetConfig::from_cmdline(cmdline).unwrap()
}

fn quick_dns() -> LookupTiming {
    LookupTiming { per_try: Duration::from_millis(500), rounds: 2 }
}

#[test]
fn lease_with_all_options_configures_link_and_ptr_gives_fqdn() {
    let rig = Rig::new();
    let _dnsmasq = Dnsmasq::start(
        &rig.server,
        &rig.dhcp_config().domain("example.edu", SUBNET).host(MAC, "10.78.0.112", "lab3-12"),
        "net_dnsmasq_all_options",
    )
    .expect("dnsmasq");
    let lines = Lines::new();
    let log = lines.log();
    let (net, id) = in_netns(&rig.client, |sys| {
        let net = net::network_stage(&cfg(""), &RealOs, sys, &log).expect("network stage");
        let id = net::resolve_identity(&RealOs, &net, &cfg(""), 53, quick_dns(), &log);
        (net, id)
    });
    let l = &net.lease;
    assert_eq!(net.interface, "vc");
    assert_eq!(net.mac.to_string(), MAC);
    assert_eq!(net.proto, Proto::Dhcp);
    assert_eq!(l.address, CLIENT);
    assert_eq!(l.prefix_len, 24);
    assert_eq!(l.broadcast, Ipv4Addr::new(10, 78, 0, 255));
    assert_eq!(l.routers, vec![SERVER]);
    assert_eq!(l.dns_servers, vec![SERVER]);
    assert_eq!(l.domain_name.as_deref(), Some("example.edu"));
    assert_eq!(l.host_name.as_deref(), Some("lab3-12"));
    assert_eq!(l.root_path.as_deref(), Some("10.78.0.1:/export"));
    assert_eq!(l.mtu, Some(1400));
    assert_eq!(l.server_id, Some(SERVER));
    assert!(!l.rapid_commit, "dnsmasq without dhcp-rapid-commit must not commit on DISCOVER");

    let addrs = rig.client.ip(&["-4", "addr", "show", "dev", "vc"]).unwrap();
    assert!(addrs.contains("10.78.0.112/24") && addrs.contains("brd 10.78.0.255"), "{addrs}");
    assert!(rig.client.ip(&["link", "show", "vc"]).unwrap().contains("mtu 1400"));
    let routes = rig.client.ip(&["-4", "route", "show", "default"]).unwrap();
    assert!(routes.contains("default via 10.78.0.1 dev vc"), "{routes}");

    assert_eq!(id.hostname, "lab3-12");
    assert_eq!(id.domain.as_deref(), Some("example.edu"));
    assert_eq!(id.source, NameSource::Ptr, "{:?}", lines.all());

    let run = tempfile::tempdir().unwrap();
    net::handoff::write_files(run.path(), &net, &id, Duration::from_secs(3)).unwrap();
    let conf = std::fs::read_to_string(run.path().join("net-vc.conf")).unwrap();
    for want in
        ["IPV4ADDR='10.78.0.112'", "HOSTNAME='lab3-12'", "DNSDOMAIN='example.edu'", "ROOTPATH='10.78.0.1:/export'"]
    {
        assert!(conf.lines().any(|l| l == want), "{want} missing:\n{conf}");
    }
}

#[test]
fn no_ptr_record_falls_back_to_dhcp_hostname() {
    let rig = Rig::new();
    // DHCP server without DNS; a separate DNS-only server that is
    // authoritative for the reverse zone but has no record for the client.
    rig.server.add_addr("vs", "10.78.0.2/24").unwrap();
    let _dhcp = Dnsmasq::start(
        &rig.server,
        &rig.dhcp_config().dns_port(0).extra(&format!("dhcp-host={MAC},10.78.0.112,lab3-12,infinite")),
        "net_dnsmasq_no_ptr_dhcp",
    )
    .expect("dhcp dnsmasq");
    let _dns = Dnsmasq::start(
        &rig.server,
        &DnsmasqConfig::new("vs").ipv6_ra(false).domain("example.edu", SUBNET),
        "net_dnsmasq_no_ptr_dns",
    )
    .expect("dns dnsmasq");
    let lines = Lines::new();
    let log = lines.log();
    // The names go to the fake: the test shares the host's UTS namespace.
    let names = FakeOs::default();
    let id = in_netns(&rig.client, |sys| {
        let net = net::network_stage(&cfg(""), &RealOs, sys, &log).expect("network stage");
        assert_eq!(net.lease.address, CLIENT);
        let id = net::resolve_identity(&RealOs, &net, &cfg(""), 53, quick_dns(), &log);
        net::apply_identity(&id, &names).unwrap();
        id
    });
    let all = lines.all();
    assert!(all.iter().any(|l| l.contains("has no PTR record for 10.78.0.112")), "{all:?}");
    assert_eq!(id.source, NameSource::Dhcp);
    assert_eq!(id.hostname, "lab3-12");
    assert_eq!(id.domain.as_deref(), Some("example.edu"), "domain from option 15");
    assert_eq!(
        names.calls(),
        [Call::SetHostname { name: "lab3-12".into() }, Call::SetDomainname { name: "example.edu".into() }]
    );
}

#[test]
fn dnsmasq_started_after_the_client_still_gives_a_lease_quickly() {
    let rig = Rig::new();
    let config = rig.dhcp_config().dns_port(0).extra(&format!("dhcp-host={MAC},10.78.0.112,lab3-12,infinite"));
    // 3 s: the server comes up between the third DISCOVER (2.25-3.75 s) and the
    // fourth (5.25-8.75 s) if its start takes under 2.25 s; a start later than the
    // fourth would leave the fifth up to 10 s away and fail the bound below.
    let delay = Duration::from_secs(3);
    let lines = Lines::new();
    let log = lines.log();
    let started = Instant::now();
    let (net, server_up) = std::thread::scope(|s| {
        let server = s.spawn(|| {
            std::thread::sleep(delay);
            let d = Dnsmasq::start(&rig.server, &config, "net_dnsmasq_late").expect("dnsmasq");
            (d, Instant::now())
        });
        let net: NetResult =
            in_netns(&rig.client, |sys| net::network_stage(&cfg(""), &RealOs, sys, &log).expect("network stage"));
        let (dnsmasq, up) = server.join().unwrap();
        drop(dnsmasq);
        (net, up)
    });
    assert_eq!(net.lease.address, CLIENT);
    let after_server = Instant::now().saturating_duration_since(server_up);
    assert!(started.elapsed() >= delay);
    // Backoff 1, 2, 4 s (+-25%): the next DISCOVER after the server came up
    // is at most 5 s away; klibc's 10 s wait would fail this.
    assert!(
        after_server < Duration::from_secs(6),
        "lease {after_server:?} after dnsmasq was up ({:?} after the client started): {:?}",
        server_up.saturating_duration_since(started),
        lines.all()
    );
    let discovers = lines.all().iter().filter(|l| l.contains("DHCPDISCOVER sent")).count();
    assert!(discovers >= 3, "expected retransmissions while the server was down: {:?}", lines.all());
}

#[test]
fn rapid_commit_is_used_when_dnsmasq_allows_it() {
    let rig = Rig::new();
    let config = rig
        .dhcp_config()
        .dns_port(0)
        .extra(&format!("dhcp-host={MAC},10.78.0.112,lab3-12,infinite"))
        .extra("dhcp-rapid-commit");
    let _dnsmasq = Dnsmasq::start(&rig.server, &config, "net_dnsmasq_rapid").expect("dnsmasq");
    let lines = Lines::new();
    let log = lines.log();
    let net = in_netns(&rig.client, |sys| net::network_stage(&cfg(""), &RealOs, sys, &log).expect("network stage"));
    assert!(net.lease.rapid_commit, "{:?}", lines.all());
    assert!(!lines.all().iter().any(|l| l.contains("DHCPREQUEST sent")), "no REQUEST with rapid commit");
}

/// A minimal DHCP server that ignores the broadcast flag and unicasts its
/// OFFER and ACK to the offered address and the client's MAC, as some
/// servers do. Runs on a thread inside the server namespace; answers one
/// DISCOVER and one REQUEST, then returns what it saw.
fn unicast_server(ns: &Netns, offered: Ipv4Addr) -> Vec<&'static str> {
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
    use dhcproto::{Decodable, Decoder, Encodable};
    let fd = std::fs::File::open(PathBuf::from("/run/netns").join(ns.name())).unwrap();
    setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns into the server namespace");
    let sock = std::net::UdpSocket::bind("0.0.0.0:67").expect("bind :67 in the server namespace");
    sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    // A real server writes the ARP entry itself, since the client cannot
    // answer ARP for an address it does not have yet.
    ns.ip(&["neigh", "replace", &offered.to_string(), "lladdr", MAC, "dev", "vs"]).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1500];
    while let Ok((len, _)) = sock.recv_from(&mut buf) {
        let Ok(req) = Message::decode(&mut Decoder::new(&buf[..len])) else {
            continue;
        };
        let kind = match req.opts().msg_type() {
            Some(MessageType::Discover) => MessageType::Offer,
            Some(MessageType::Request) => MessageType::Ack,
            _ => continue,
        };
        seen.push(if kind == MessageType::Offer { "offer" } else { "ack" });
        let z = Ipv4Addr::UNSPECIFIED;
        let mut reply = Message::new_with_id(req.xid(), z, offered, SERVER, z, req.chaddr());
        reply.set_opcode(Opcode::BootReply);
        let o = reply.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(SERVER));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![SERVER]));
        o.insert(DhcpOption::AddressLeaseTime(600));
        sock.send_to(&reply.to_vec().unwrap(), (offered, 68)).expect("unicast reply");
        if kind == MessageType::Ack {
            break;
        }
    }
    seen
}

#[test]
fn server_unicasting_to_the_offered_address_still_gives_a_lease() {
    let rig = Rig::new();
    let lines = Lines::new();
    let log = lines.log();
    let (net, seen) = std::thread::scope(|s| {
        let server = s.spawn(|| unicast_server(&rig.server, CLIENT));
        let mut c = cfg("");
        c.dhcp_timeout = Duration::from_secs(15);
        let net = in_netns(&rig.client, |sys| net::network_stage(&c, &RealOs, sys, &log));
        (net, server.join().expect("server thread"))
    });
    let net = net.unwrap_or_else(|e| panic!("{e}; log: {:?}", lines.all()));
    // The client retransmits its DISCOVER after about a second; on a loaded
    // machine the server thread may answer the first one late, so more than
    // one OFFER is fine. What must hold: offers, then exactly one ACK.
    let (ack, offers) = seen.split_last().expect("the server answered nothing");
    assert_eq!(*ack, "ack", "{seen:?}");
    assert!(!offers.is_empty() && offers.iter().all(|k| *k == "offer"), "{seen:?}");
    assert_eq!(net.lease.address, CLIENT);
    assert_eq!(net.lease.lease_time, Some(600));
    assert!(lines.all().iter().any(|l| l.contains("offer of 10.78.0.112")), "{:?}", lines.all());
}
