//! Orchestration tests with a fake system: which links get DHCP, who wins,
//! what happens to the losers, late NICs, carrier timeouts.

use std::net::{Ipv4Addr, SocketAddrV4};
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

// --- Leases that cannot boot ------------------------------------------------------

const ROGUE: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const GENUINE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// A home router's lease: another subnet, a router, no boot information.
fn rogue_lease() -> Lease {
    let mut l = Lease::new(Ipv4Addr::new(192, 168, 77, 50), Ipv4Addr::new(255, 255, 255, 0));
    l.routers = vec![Ipv4Addr::new(192, 168, 77, 254)];
    l.server_id = Some(ROGUE);
    l
}

/// The lab server's lease: in the NFS server's subnet, which is boot information enough.
fn genuine_lease() -> Lease {
    let mut l = Lease::new(Ipv4Addr::new(10, 77, 0, 112), Ipv4Addr::new(255, 255, 255, 0));
    l.routers = vec![GENUINE];
    l.server_id = Some(GENUINE);
    l
}

/// eth0 where the rogue answers at once and the genuine server (if any) after `genuine_ms`.
fn rogue_first(genuine_ms: Option<u64>) -> FakeOs {
    let eth0 = FakeLink::up("eth0", Mac([2, 0, 0, 0, 0, 0]), rogue_lease());
    let more = genuine_ms.map(|ms| (Duration::from_millis(ms), genuine_lease())).into_iter().collect();
    fake(vec![eth0]).with_more_servers("eth0", more)
}

/// `cmdline` with the root it names, as the boot gives it to the network stage.
fn cfg_with_root(cmdline: &str) -> NetConfig {
    let mut c = cfg(cmdline);
    let raw: Vec<(&str, Option<&str>)> =
        cmdline.split_ascii_whitespace().map(|w| w.split_once('=').map_or((w, None), |(k, v)| (k, Some(v)))).collect();
    c.root = Some(crate::root::RootRequest::from_cmdline(&raw).unwrap());
    c
}

fn logged(lines: &Mutex<Vec<String>>) -> Vec<String> {
    lines.lock().unwrap().clone()
}

#[test]
fn a_lease_that_cannot_reach_the_nfs_server_is_released_and_its_server_excluded() {
    let fake = rogue_first(Some(100));
    let lines = Mutex::new(Vec::new());
    let log = |_: Level, l: &str| lines.lock().unwrap().push(l.to_string());
    let net = run(&cfg_with_root("nfsroot=10.77.0.1:/export"), &fake, &log).unwrap();
    assert_eq!(net.lease, genuine_lease());
    let probe = Call::ProbeTcp { to: SocketAddrV4::new(GENUINE, 2049) };
    let rogue_cfg = LinkConfig {
        address: Ipv4Addr::new(192, 168, 77, 50),
        prefix_len: 24,
        broadcast: Ipv4Addr::new(192, 168, 77, 255),
        gateway: Some(Ipv4Addr::new(192, 168, 77, 254)),
        mtu: None,
    };
    let network: Vec<Call> = fake.calls().into_iter().filter(|c| c.kind() != Kind::LinkUp).collect();
    assert_eq!(
        network[..7],
        [
            dhcp("eth0"),
            Call::ConfigureLink { link: "eth0".into(), config: rogue_cfg.clone() },
            probe.clone(),
            probe,
            Call::DhcpRelease { link: "eth0".into(), address: Ipv4Addr::new(192, 168, 77, 50), server: Some(ROGUE) },
            Call::UnconfigureLink { link: "eth0".into(), config: rogue_cfg },
            dhcp("eth0"),
        ],
        "{network:?}"
    );
    // The genuine lease is on the NFS server's subnet: kept without a probe.
    assert!(matches!(&network[7..], [Call::ConfigureLink { .. }]), "{network:?}");
    let lines = logged(&lines);
    let released = lines.iter().find(|l| l.contains("releasing")).expect("a release line");
    assert!(
        released.starts_with(
            "eth0: lease 192.168.77.50 from 192.168.77.1 has no root path, next server or boot file and the NFS root \
             server 10.77.0.1:2049 does not answer over it ("
        ) && released.contains("2 tries of 2 s); releasing it and asking again without 192.168.77.1 ("),
        "{lines:?}"
    );
}

#[test]
fn without_a_root_on_the_command_line_a_lease_without_root_path_is_released_unprobed() {
    let fake = rogue_first(Some(100));
    let lines = Mutex::new(Vec::new());
    let log = |_: Level, l: &str| lines.lock().unwrap().push(l.to_string());
    // The genuine server gives the root path here.
    let mut genuine = genuine_lease();
    genuine.root_path = Some("10.77.0.1:/export".into());
    let fake = fake.with_more_servers("eth0", vec![(Duration::from_millis(100), genuine.clone())]);
    let net = run(&cfg_with_root("ip=dhcp"), &fake, &log).unwrap();
    assert_eq!(net.lease, genuine);
    assert!(fake.calls_of(Kind::ProbeTcp).is_empty());
    assert_eq!(fake.calls_of(Kind::DhcpRelease).len(), 1);
    let lines = logged(&lines);
    assert!(
        lines.iter().any(|l| l.starts_with(
            "eth0: lease 192.168.77.50 from 192.168.77.1 has no root path and the command line names no root; releasing it"
        )),
        "{lines:?}"
    );
}

#[test]
fn a_refused_connection_is_an_answer_and_the_lease_is_kept() {
    let fake = rogue_first(Some(100));
    fake.fail_calls(|c| c.kind() == Kind::ProbeTcp, nix::libc::ECONNREFUSED);
    let net = run(&cfg_with_root("nfsroot=10.77.0.1:/export"), &fake, &quiet).unwrap();
    assert_eq!(net.lease, rogue_lease());
    assert_eq!(fake.calls_of(Kind::ProbeTcp).len(), 1);
    assert!(fake.calls_of(Kind::DhcpRelease).is_empty());
}

#[test]
fn with_only_a_server_whose_lease_cannot_boot_the_dhcp_timeout_still_bounds_the_stage() {
    let fake = rogue_first(None);
    let started = Instant::now();
    let e = run(&cfg_with_root("nfsroot=10.77.0.1:/export diskless.dhcp_timeout=1"), &fake, &quiet).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert!(matches!(e, NetError::NoLease { .. }), "{e:?}");
    assert_eq!(fake.calls_of(Kind::DhcpRelease).len(), 1, "released once, then excluded");
}

#[test]
fn the_allowlist_reaches_the_dhcp_of_each_link() {
    let fake = rogue_first(Some(100));
    let net = run(&cfg("diskless.dhcp_server=10.77.0.1"), &fake, &quiet).unwrap();
    assert_eq!(net.lease, genuine_lease(), "the rogue answered first but is not allowed");
    assert!(fake.calls_of(Kind::DhcpRelease).is_empty());
}

#[test]
fn with_several_root_servers_one_that_answers_keeps_the_lease_and_none_names_them_all() {
    // The rogue's lease reaches no root server: both are probed, both named.
    let fake = rogue_first(Some(100));
    let lines = Mutex::new(Vec::new());
    let log = |_: Level, l: &str| lines.lock().unwrap().push(l.to_string());
    let net = run(&cfg_with_root("nfsroot=10.77.0.1+10.77.0.2:/export"), &fake, &log).unwrap();
    assert_eq!(net.lease, genuine_lease());
    let probed: Vec<Call> = fake.calls_of(Kind::ProbeTcp);
    let probe = |last: u8| Call::ProbeTcp { to: SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, last), 2049) };
    assert_eq!(probed, [probe(1), probe(1), probe(2), probe(2)], "every try of each server");
    let lines = logged(&lines);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("and none of the NFS root servers 10.77.0.1:2049, 10.77.0.2:2049 answers over it (")
                && l.contains("releasing it")),
        "{lines:?}"
    );
    // The second server answering (a refusal is an answer) is enough to keep it.
    let fake = rogue_first(Some(100));
    let second = probe(2);
    fake.fail_calls(move |c| *c == second, nix::libc::ECONNREFUSED);
    let net = run(&cfg_with_root("nfsroot=10.77.0.1+10.77.0.2:/export"), &fake, &quiet).unwrap();
    assert_eq!(net.lease, rogue_lease());
    assert!(fake.calls_of(Kind::DhcpRelease).is_empty());
}
