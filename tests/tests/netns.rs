//! Host-side tests of the namespace and dnsmasq helpers: no VM, a few seconds each.

use std::time::Duration;

use qemu_tests::dnsmasq::{Dnsmasq, DnsmasqConfig};
use qemu_tests::netns::{self, Netns};

#[test]
fn veth_pair_between_namespaces_carries_ping_and_is_removed_on_drop() {
    let name;
    {
        let a = Netns::new("dlna").unwrap();
        let b = Netns::new("dlnb").unwrap();
        name = (a.name().to_string(), b.name().to_string());
        a.add_veth_to("va", &b, "vb").unwrap();
        a.add_addr("va", "10.78.0.1/24").unwrap();
        b.add_addr("vb", "10.78.0.2/24").unwrap();
        let out = a.run("ping", &["-c", "1", "-W", "2", "10.78.0.2"]).unwrap();
        assert!(out.contains("1 received"), "ping output: {out}");
        assert!(b.links().unwrap().contains(&"vb".to_string()));
        // Neither namespace may know a way out.
        assert_eq!(a.ip(&["route", "show", "default"]).unwrap().trim(), "");
    }
    assert!(!netns::exists(&name.0), "namespace {} survived its guard", name.0);
    assert!(!netns::exists(&name.1), "namespace {} survived its guard", name.1);
}

#[test]
fn dropping_namespace_kills_processes_left_inside() {
    let ns = Netns::new("dlnk").unwrap();
    let child = ns.spawn("sleep", &["300"]).unwrap();
    let pid = child.pid();
    // Leak the guard on purpose: the namespace's own drop must still clean up.
    std::mem::forget(child);
    // `ip netns exec` enters the namespace only after spawn() returned: wait for it.
    assert!(
        poll(Duration::from_secs(10), || ns.pids().contains(&pid)),
        "process {pid} never showed up in namespace {}",
        ns.name()
    );
    drop(ns);
    // The process is dead (SIGKILL is delivered asynchronously); being our unreaped
    // child it may linger as a zombie.
    let stat = || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let dead = |s: &str| s.is_empty() || s.contains(") Z ");
    assert!(poll(Duration::from_secs(5), || dead(&stat())), "process {pid} still running: {}", stat());
}

/// Calls `done` every 20 ms until it holds or `timeout` has passed; whether it held.
fn poll(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dnsmasq_gives_static_host_its_address_over_veth() {
    let server = Netns::new("dlds").unwrap();
    let client = Netns::new("dldc").unwrap();
    server.add_bridge("br0", &["10.79.0.1/24", "fd79::1/64"]).unwrap();
    server.add_veth_to("vs", &client, "vc").unwrap();
    server.set_master("vs", "br0").unwrap();
    client.ip(&["link", "set", "vc", "address", "52:54:00:79:00:12"]).unwrap();

    let config = DnsmasqConfig::new("br0")
        .domain("example.edu", "10.79.0.0/24")
        .dhcp_range("10.79.0.100", "10.79.0.199", "255.255.255.0", "1h")
        .host("52:54:00:79:00:12", "10.79.0.112", "lab3-12")
        .router("10.79.0.1")
        .dns_server("10.79.0.1")
        .domain_name("example.edu")
        .root_path("10.79.0.1:/export");
    let dnsmasq = Dnsmasq::start(&server, &config, "netns-dnsmasq_static_host").unwrap();

    let out = client
        .command("busybox")
        .args(["udhcpc", "-i", "vc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", "/bin/true"])
        .output()
        .expect("busybox runs (package busybox-static; run qemu/setup)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("lease of 10.79.0.112 obtained"),
        "udhcpc: {text}\ndnsmasq log {}:\n{}",
        dnsmasq.log_path().display(),
        dnsmasq.log_text()
    );

    // The PTR record of the static host answers from inside the namespace.
    client.add_addr("vc", "10.79.0.112/24").unwrap();
    let out = client.run("busybox", &["nslookup", "10.79.0.112", "10.79.0.1"]).unwrap();
    assert!(out.contains("lab3-12.example.edu"), "nslookup: {out}");
    // dnsmasq writes its log asynchronously: give a loaded machine a few seconds.
    assert!(
        poll(Duration::from_secs(5), || dnsmasq.log_text().contains("DHCPACK")),
        "no DHCPACK in dnsmasq log {}",
        dnsmasq.log_path().display()
    );
}
