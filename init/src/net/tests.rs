//! Orchestration tests with a fake system: which links get DHCP, who wins,
//! what happens to the losers, late NICs, carrier timeouts.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use super::*;

struct FakeLink {
    name: &'static str,
    mac: Mac,
    /// Appears in sysfs this long after the stage starts.
    appears: Duration,
    /// Gets carrier this long after the stage starts (`None`: never).
    carrier: Option<Duration>,
    /// DHCP answers this long after it starts (`None`: never).
    lease_after: Option<Duration>,
}

struct Fake {
    start: Instant,
    links: Vec<FakeLink>,
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn new(links: Vec<FakeLink>) -> Fake {
        Fake { start: Instant::now(), links, calls: Mutex::new(Vec::new()) }
    }
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn link(&self, name: &str) -> &FakeLink {
        self.links.iter().find(|l| l.name == name).unwrap()
    }
}

fn lease_for(n: u8) -> Lease {
    let mut l = Lease::new(Ipv4Addr::new(10, 0, n, 5), Ipv4Addr::new(255, 255, 255, 0));
    l.routers = vec![Ipv4Addr::new(10, 0, n, 1)];
    l.mtu = Some(1400);
    l
}

impl NetOps for Fake {
    fn links(&self) -> Vec<SysLink> {
        let t = self.start.elapsed();
        self.links.iter().filter(|l| l.appears <= t).map(|l| SysLink { name: l.name.into(), mac: l.mac }).collect()
    }
    fn has_carrier(&self, name: &str) -> bool {
        self.link(name).carrier.is_some_and(|c| c <= self.start.elapsed())
    }
    fn set_up(&self, name: &str, up: bool) -> Result<(), LinkError> {
        self.record(format!("{} {name}", if up { "up" } else { "down" }));
        Ok(())
    }
    fn configure(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        self.record(format!(
            "configure {name} {}/{} gw {:?} mtu {:?}",
            cfg.address, cfg.prefix_len, cfg.gateway, cfg.mtu
        ));
        Ok(())
    }
    fn dhcp(
        &self,
        name: &str,
        _mac: Mac,
        until: Instant,
        cancel: &AtomicBool,
        _log: &dyn NetLog,
    ) -> Result<Lease, DhcpIoError> {
        self.record(format!("dhcp {name}"));
        let begun = Instant::now();
        let link = self.link(name);
        loop {
            if cancel.load(Ordering::Relaxed) {
                self.record(format!("cancelled {name}"));
                return Err(DhcpIoError::Cancelled { interface: name.into() });
            }
            if link.lease_after.is_some_and(|d| begun.elapsed() >= d) {
                let n = name.bytes().last().unwrap_or(b'0') - b'0';
                return Ok(lease_for(n));
            }
            if Instant::now() >= until {
                return Err(DhcpIoError::Timeout {
                    interface: name.into(),
                    waited: begun.elapsed(),
                    ignored: Default::default(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn link(name: &'static str, last: u8, carrier: Option<u64>, lease_ms: Option<u64>) -> FakeLink {
    FakeLink {
        name,
        mac: Mac([2, 0, 0, 0, 0, last]),
        appears: Duration::ZERO,
        carrier: carrier.map(Duration::from_millis),
        lease_after: lease_ms.map(Duration::from_millis),
    }
}

fn cfg(cmdline: &str) -> NetConfig {
    NetConfig::from_cmdline(cmdline).unwrap()
}

fn quiet(_: Level, _: &str) {}

#[test]
fn first_lease_wins_and_other_links_are_cancelled_and_put_down() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), Some(600)), link("eth1", 1, Some(0), Some(50))]);
    let net = network_stage_with(&cfg(""), &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    assert_eq!(net.mac, Mac([2, 0, 0, 0, 0, 1]));
    assert_eq!(net.proto, Proto::Dhcp);
    let calls = fake.calls();
    assert!(calls.contains(&"dhcp eth0".into()) && calls.contains(&"dhcp eth1".into()), "{calls:?}");
    assert!(calls.contains(&"cancelled eth0".into()), "{calls:?}");
    assert!(calls.contains(&"down eth0".into()), "{calls:?}");
    assert!(!calls.contains(&"down eth1".into()), "{calls:?}");
    assert!(calls.contains(&"configure eth1 10.0.1.5/24 gw Some(10.0.1.1) mtu Some(1400)".into()), "{calls:?}");
}

#[test]
fn bootif_restricts_dhcp_to_that_nic() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), Some(10)), link("eth1", 1, Some(0), Some(100))]);
    let net = network_stage_with(&cfg("BOOTIF=01-02-00-00-00-00-01"), &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    let calls = fake.calls();
    assert!(!calls.iter().any(|c| c.ends_with("eth0")), "eth0 touched: {calls:?}");
}

#[test]
fn ip_device_restricts_dhcp_to_that_nic() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), Some(10)), link("eth1", 1, Some(0), Some(100))]);
    let net = network_stage_with(&cfg("ip=eth1:dhcp"), &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    assert!(!fake.calls().contains(&"dhcp eth0".into()));
}

#[test]
fn nic_appearing_late_is_picked_up_by_the_rescan() {
    let mut late = link("eth3", 3, Some(0), Some(10));
    late.appears = Duration::from_millis(700);
    let fake = Fake::new(vec![link("eth0", 0, Some(0), None), late]);
    let mut c = cfg("");
    c.dhcp_timeout = Duration::from_secs(5);
    let net = network_stage_with(&c, &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth3");
}

#[test]
fn link_waits_for_carrier_and_waiting_is_logged_by_name() {
    let fake = Fake::new(vec![link("eth0", 0, Some(2300), Some(10))]);
    let lines = Mutex::new(Vec::new());
    let log = |_: Level, l: &str| lines.lock().unwrap().push(l.to_string());
    let net = network_stage_with(&cfg(""), &fake, &log).unwrap();
    assert_eq!(net.interface, "eth0");
    let lines = lines.into_inner().unwrap();
    assert!(lines.iter().any(|l| l.starts_with("waiting for carrier on eth0")), "{lines:?}");
}

#[test]
fn no_carrier_anywhere_fails_after_carrier_timeout_naming_links() {
    let fake = Fake::new(vec![link("eth0", 0, None, None), link("eth1", 1, None, None)]);
    let c = cfg("diskless.carrier_timeout=1");
    let t = Instant::now();
    let e = network_stage_with(&c, &fake, &quiet).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "should not wait for the DHCP timeout");
    assert!(matches!(&e, NetError::NoCarrier { links, .. } if links == &["eth0", "eth1"]), "{e:?}");
    assert!(e.to_string().contains("eth0, eth1"));
}

#[test]
fn dhcp_timeout_reports_no_lease() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), None)]);
    let c = cfg("diskless.dhcp_timeout=1");
    let e = network_stage_with(&c, &fake, &quiet).unwrap_err();
    assert!(matches!(e, NetError::NoLease { .. }), "{e:?}");
}

#[test]
fn missing_interface_is_reported_with_what_was_wanted() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), Some(10))]);
    let c = cfg("BOOTIF=01-aa-bb-cc-dd-ee-ff diskless.dhcp_timeout=1");
    let e = network_stage_with(&c, &fake, &quiet).unwrap_err();
    assert!(e.to_string().contains("aa:bb:cc:dd:ee:ff"), "{e}");
}

#[test]
fn static_ip_configures_without_dhcp() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), Some(10)), link("eth1", 1, Some(0), Some(10))]);
    let c = cfg("ip=192.168.1.23:192.168.1.1:192.168.1.254:255.255.255.0:box:eth1:off:192.168.1.2");
    let net = network_stage_with(&c, &fake, &quiet).unwrap();
    assert_eq!(net.interface, "eth1");
    assert_eq!(net.proto, Proto::Static);
    assert_eq!(net.lease.address, Ipv4Addr::new(192, 168, 1, 23));
    assert_eq!(net.lease.broadcast, Ipv4Addr::new(192, 168, 1, 255));
    assert_eq!(net.lease.dns_servers, vec![Ipv4Addr::new(192, 168, 1, 2)]);
    assert_eq!(net.lease.next_server, Some(Ipv4Addr::new(192, 168, 1, 1)));
    let calls = fake.calls();
    assert!(!calls.iter().any(|c| c.starts_with("dhcp")), "{calls:?}");
    assert!(calls.contains(&"configure eth1 192.168.1.23/24 gw Some(192.168.1.254) mtu None".into()), "{calls:?}");
}

#[test]
fn ip_off_disables_the_stage() {
    let fake = Fake::new(vec![link("eth0", 0, Some(0), Some(10))]);
    assert_eq!(network_stage_with(&cfg("ip=off"), &fake, &quiet), Err(NetError::Disabled));
    assert!(fake.calls().is_empty());
}
