//! Orchestration tests with a fake system: which links get DHCP, who wins,
//! what happens to the losers, late NICs, carrier timeouts.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use super::*;
use crate::os::fake::{Call, FakeLink, FakeOs, Kind};

fn lease_for(n: u8) -> Lease {
    let mut l = Lease::new(Ipv4Addr::new(10, 0, n, 5), Ipv4Addr::new(255, 255, 255, 0));
    l.routers = vec![Ipv4Addr::new(10, 0, n, 1)];
    l.mtu = Some(1400);
    l
}

/// `eth<last>` with MAC 02:00:00:00:00:<last>, carrier and a lease (10.0.<last>.5/24)
/// after the given milliseconds.
fn link(name: &str, last: u8, carrier: Option<u64>, lease_ms: Option<u64>) -> FakeLink {
    FakeLink {
        name: name.into(),
        mac: Mac([2, 0, 0, 0, 0, last]),
        appears: Duration::ZERO,
        carrier: carrier.map(Duration::from_millis),
        lease: lease_ms.map(|ms| (Duration::from_millis(ms), lease_for(last))),
    }
}

fn fake(links: Vec<FakeLink>) -> FakeOs {
    FakeOs::default().with_links(links)
}

fn run(cfg: &NetConfig, os: &FakeOs, log: &dyn NetLog) -> Result<NetResult, NetError> {
    network_stage(cfg, os, Path::new("/sys/class/net"), log)
}

fn up(link: &str, up: bool) -> Call {
    Call::LinkUp { link: link.into(), up }
}

fn dhcp(link: &str) -> Call {
    Call::Dhcp { link: link.into() }
}

fn cfg(cmdline: &str) -> NetConfig {
    NetConfig::from_cmdline(cmdline).unwrap()
}

fn quiet(_: Level, _: &str) {}

#[test]
fn first_lease_wins_and_other_links_are_cancelled_and_put_down() {
    let fake = fake(vec![link("eth0", 0, Some(0), Some(600)), link("eth1", 1, Some(0), Some(50))]);
    let net = run(&cfg(""), &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    assert_eq!(net.mac, Mac([2, 0, 0, 0, 0, 1]));
    assert_eq!(net.proto, Proto::Dhcp);
    let calls = fake.calls();
    assert!(calls.contains(&dhcp("eth0")) && calls.contains(&dhcp("eth1")), "{calls:?}");
    assert!(calls.contains(&Call::DhcpCancelled { link: "eth0".into() }), "{calls:?}");
    assert!(calls.contains(&up("eth0", false)), "{calls:?}");
    assert!(!calls.contains(&up("eth1", false)), "{calls:?}");
    let configured = LinkConfig {
        address: Ipv4Addr::new(10, 0, 1, 5),
        prefix_len: 24,
        broadcast: Ipv4Addr::new(10, 0, 1, 255),
        gateway: Some(Ipv4Addr::new(10, 0, 1, 1)),
        mtu: Some(1400),
    };
    assert_eq!(fake.calls_of(Kind::ConfigureLink), [Call::ConfigureLink { link: "eth1".into(), config: configured }]);
}

#[test]
fn bootif_restricts_dhcp_to_that_nic() {
    let fake = fake(vec![link("eth0", 0, Some(0), Some(10)), link("eth1", 1, Some(0), Some(100))]);
    let net = run(&cfg("BOOTIF=01-02-00-00-00-00-01"), &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    let calls = fake.calls();
    let touches_eth0 = |c: &Call| match c {
        Call::LinkUp { link, .. } | Call::Dhcp { link } | Call::DhcpCancelled { link } => link == "eth0",
        Call::ConfigureLink { link, .. } => link == "eth0",
        _ => false,
    };
    assert!(!calls.iter().any(touches_eth0), "eth0 touched: {calls:?}");
}

#[test]
fn ip_device_restricts_dhcp_to_that_nic() {
    let fake = fake(vec![link("eth0", 0, Some(0), Some(10)), link("eth1", 1, Some(0), Some(100))]);
    let net = run(&cfg("ip=eth1:dhcp"), &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    assert!(!fake.calls().contains(&dhcp("eth0")));
}

#[test]
fn nic_appearing_late_is_picked_up_by_the_rescan() {
    let mut late = link("eth3", 3, Some(0), Some(10));
    late.appears = Duration::from_millis(700);
    let fake = fake(vec![link("eth0", 0, Some(0), None), late]);
    let mut c = cfg("");
    c.dhcp_timeout = Duration::from_secs(5);
    let net = run(&c, &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth3");
}

#[test]
fn link_waits_for_carrier_and_waiting_is_logged_by_name() {
    let fake = fake(vec![link("eth0", 0, Some(2300), Some(10))]);
    let lines = Mutex::new(Vec::new());
    let log = |_: Level, l: &str| lines.lock().unwrap().push(l.to_string());
    let net = run(&cfg(""), &fake, &log).unwrap();
    assert_eq!(net.interface, "eth0");
    let lines = lines.into_inner().unwrap();
    assert!(lines.iter().any(|l| l.starts_with("waiting for carrier on eth0")), "{lines:?}");
}

#[test]
fn no_carrier_anywhere_fails_after_carrier_timeout_naming_links() {
    let fake = fake(vec![link("eth0", 0, None, None), link("eth1", 1, None, None)]);
    let c = cfg("diskless.carrier_timeout=1");
    let t = Instant::now();
    let e = run(&c, &fake, &quiet).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "should not wait for the DHCP timeout");
    assert!(matches!(&e, NetError::NoCarrier { links, .. } if links == &["eth0", "eth1"]), "{e:?}");
    assert!(e.to_string().contains("eth0, eth1"));
}

#[test]
fn dhcp_timeout_reports_no_lease() {
    let fake = fake(vec![link("eth0", 0, Some(0), None)]);
    let c = cfg("diskless.dhcp_timeout=1");
    let e = run(&c, &fake, &quiet).unwrap_err();
    // The stage and its DHCP threads share one deadline: a thread's timeout may come too late to be listed.
    let NetError::NoLease { errors, .. } = &e else { panic!("{e:?}") };
    assert!(errors.iter().all(|e| matches!(e, DhcpIoError::Timeout { .. })), "{errors:?}");
    assert!(e.to_string().starts_with("no DHCP lease after "), "{e}");
}

#[test]
fn missing_interface_is_reported_with_what_was_wanted() {
    let fake = fake(vec![link("eth0", 0, Some(0), Some(10))]);
    let c = cfg("BOOTIF=01-aa-bb-cc-dd-ee-ff diskless.dhcp_timeout=1");
    let e = run(&c, &fake, &quiet).unwrap_err();
    assert!(e.to_string().contains("aa:bb:cc:dd:ee:ff"), "{e}");
}

#[test]
fn static_ip_configures_without_dhcp() {
    let fake = fake(vec![link("eth0", 0, Some(0), Some(10)), link("eth1", 1, Some(0), Some(10))]);
    let c = cfg("ip=192.168.1.23:192.168.1.1:192.168.1.254:255.255.255.0:box:eth1:off:192.168.1.2");
    let net = run(&c, &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    assert_eq!(net.proto, Proto::Static);
    assert_eq!(net.lease.address, Ipv4Addr::new(192, 168, 1, 23));
    assert_eq!(net.lease.broadcast, Ipv4Addr::new(192, 168, 1, 255));
    assert_eq!(net.lease.dns_servers, vec![Ipv4Addr::new(192, 168, 1, 2)]);
    assert_eq!(net.lease.next_server, Some(Ipv4Addr::new(192, 168, 1, 1)));
    assert!(fake.calls_of(Kind::Dhcp).is_empty(), "{:?}", fake.calls());
    let configured = LinkConfig {
        address: Ipv4Addr::new(192, 168, 1, 23),
        prefix_len: 24,
        broadcast: Ipv4Addr::new(192, 168, 1, 255),
        gateway: Some(Ipv4Addr::new(192, 168, 1, 254)),
        mtu: None,
    };
    assert_eq!(fake.calls_of(Kind::ConfigureLink), [Call::ConfigureLink { link: "eth1".into(), config: configured }]);
}

#[test]
fn ip_off_disables_the_stage() {
    let fake = fake(vec![link("eth0", 0, Some(0), Some(10))]);
    assert!(matches!(run(&cfg("ip=off"), &fake, &quiet), Err(NetError::Disabled)));
    assert!(fake.calls().is_empty());
}
