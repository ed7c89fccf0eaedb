//! `qemu/bench-network`: how fast the init gets its lease and its name, and how many
//! packets it sends for them, in QEMU over the PXE rig (SeaBIOS, iPXE, pxelinux, our
//! kernel and initrd; virtio-net; dnsmasq with a static host and its PTR record).
//!
//! Each boot stops before the root stage (`diskless.break=root`, then powers off), so
//! no NFS server is needed. Times come from the init's own lines (the kmsg copies of
//! its lines do not reach the console, so there are no kernel timestamps to use):
//! - link up -> lease: `stage network done in <ms>` (the stage sets the links up,
//!   waits for carrier, runs DHCP and applies the lease);
//! - carrier -> lease: the DHCP exchange, `<if>: lease ... after <s> s` (0.1 s steps);
//! - lease -> host name: `stage identity done in <ms>` (PTR lookup or fallback, then
//!   sethostname and setdomainname).
//!
//! Packets: dnsmasq logs every DHCP packet it receives (`log-dhcp`) and every DNS query
//! (`log-queries`); those logged after it sent `initrd.img` over TFTP are the init's
//! (iPXE's own DHCP comes before). Prints one row per boot and the medians.
//!
//! Usage: `qemu/bench-network [RUNS]` (default 3).

use std::time::Duration;

use qemu_tests::build::build_initramfs;
use qemu_tests::console::ConsoleLog;
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::Nic;

const MAC: &str = "52:54:00:77:03:12";

#[derive(Debug, Default, Clone)]
struct Row {
    up_to_lease_ms: Option<f64>,
    carrier_to_lease_ms: Option<f64>,
    lease_to_name_ms: Option<f64>,
    dhcp_packets: usize,
    dns_packets: usize,
    name_source: String,
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let initrd = build_initramfs(&["--profile", "netboot"]);
    let mut rows = Vec::new();
    for i in 1..=runs {
        let name = format!("bench-network-{i}");
        let mut rig = PxeRig::new(&name).unwrap_or_else(|e| panic!("{e}"));
        rig.initrd(&initrd).unwrap();
        rig.pxelinux_default("diskless.break=root diskless.on_failure=halt diskless.reboot_delay=0", true).unwrap();
        let tap = rig.tap().unwrap();
        let config = rig.dnsmasq_config().host(MAC, LAB_IP, LAB_HOST);
        rig.start_dnsmasq(&config, "dnsmasq").unwrap_or_else(|e| panic!("{e}"));
        let run = rig
            .vm(&name)
            .nic(Nic::tap("virtio-net-pci", MAC, &tap))
            .timeout(Duration::from_secs(240))
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        let server_log = rig.dnsmasq()[0].log_text();
        let row = measure(&run.log, &server_log);
        if row.lease_to_name_ms.is_none() || row.carrier_to_lease_ms.is_none() {
            eprintln!(
                "run {i}: the console lacks the network/identity stage or lease lines; see {}\n{}",
                run.log.path().display(),
                run.log.tail(30)
            );
            std::process::exit(1);
        }
        println!(
            "run {i}: link up->lease {} ms, DHCP exchange {} ms, lease->name {} ms ({}), DHCP packets {}, DNS packets {}  [{}]",
            fmt(row.up_to_lease_ms),
            fmt(row.carrier_to_lease_ms),
            fmt(row.lease_to_name_ms),
            row.name_source,
            row.dhcp_packets,
            row.dns_packets,
            run.log.path().display()
        );
        rows.push(row);
    }
    println!();
    println!("median of {runs} PXE boots (TCG, virtio-net, dnsmasq on the same bridge):");
    println!("{:<42} {:>8}", "measure", "median");
    let med = |f: &dyn Fn(&Row) -> Option<f64>| median(rows.iter().filter_map(f).collect());
    println!("{:<42} {:>8}", "link up -> lease (network stage, ms)", fmt(med(&|r| r.up_to_lease_ms)));
    println!("{:<42} {:>8}", "DHCP exchange (lease line, ms)", fmt(med(&|r| r.carrier_to_lease_ms)));
    println!("{:<42} {:>8}", "lease -> host name (identity stage, ms)", fmt(med(&|r| r.lease_to_name_ms)));
    println!("{:<42} {:>8}", "DHCP packets sent by the init", fmt(med(&|r| Some(r.dhcp_packets as f64))));
    println!("{:<42} {:>8}", "DNS packets sent by the init", fmt(med(&|r| Some(r.dns_packets as f64))));
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// The first number captured by `pattern` on an init line.
fn number(log: &ConsoleLog, pattern: &str) -> Option<f64> {
    log.find_line(&format!(r"diskless: {pattern}")).and_then(|m| m[1].parse::<f64>().ok())
}

fn measure(log: &ConsoleLog, server_log: &str) -> Row {
    // The network stage starts by setting the links up and ends with the lease applied.
    let network = number(log, r"stage network done in (\d+) ms");
    let dhcp =
        number(log, &format!(r"\S+: lease {}/\d+ from .* after ([\d.]+) s", regex::escape(LAB_IP))).map(|s| s * 1000.0);
    // The identity stage: PTR query (or fallback), sethostname/setdomainname.
    let identity = number(log, r"stage identity done in (\d+) ms");
    let name_line = log.find_line(r"diskless: host name \S+, .*from (.*?)\s*$");
    // Packets the init sent: what dnsmasq logged after it finished sending the initrd.
    let lines: Vec<&str> = server_log.lines().collect();
    let after_pxe: Vec<&str> =
        match lines.iter().rposition(|l| l.contains("dnsmasq-tftp") && l.contains("/initrd.img to ")) {
            Some(i) => lines[i + 1..].to_vec(),
            None => Vec::new(),
        };
    let dhcp_packets = after_pxe
        .iter()
        .filter(|l| {
            ["DHCPDISCOVER(", "DHCPREQUEST(", "DHCPDECLINE(", "DHCPRELEASE(", "DHCPINFORM("]
                .iter()
                .any(|k| l.contains(k))
        })
        .count();
    let dns_packets =
        after_pxe.iter().filter(|l| l.contains(" query[") && l.contains(&format!("from {LAB_IP}"))).count();
    Row {
        up_to_lease_ms: network,
        carrier_to_lease_ms: dhcp,
        lease_to_name_ms: identity,
        dhcp_packets,
        dns_packets,
        name_source: name_line.map(|m| m[1].to_string()).unwrap_or_default(),
    }
}
