//! `qemu/bench-network`: how fast the init gets its lease and its name, and how many
//! packets it sends for them, in QEMU over the PXE rig (SeaBIOS, iPXE, pxelinux, our
//! kernel and initrd; virtio-net; dnsmasq with a static host and its PTR record).
//!
//! Each boot stops before the root stage (`diskless.break=root`, then powers off), so
//! no NFS server is needed. The console runs at `loglevel=8`, so the kmsg copy of every
//! init line appears with the kernel's timestamp (CLOCK_MONOTONIC, ms precision):
//! - link up -> lease: from `<if>: carrier, starting DHCP` (and from `found <if> ...,
//!   bringing it up`) to `<if>: lease ...`;
//! - lease -> host name: from the lease line to `host name ... from ...`.
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
        rig.pxelinux_default("loglevel=8 diskless.break=root diskless.on_failure=halt diskless.reboot_delay=0", true)
            .unwrap();
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
                "run {i}: the console lacks the timestamped lease or host name lines; see {}\n{}",
                run.log.path().display(),
                run.log.tail(30)
            );
            std::process::exit(1);
        }
        println!(
            "run {i}: link up->lease {} ms, carrier->lease {} ms, lease->name {} ms ({}), DHCP packets {}, DNS packets {}  [{}]",
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
    println!("{:<38} {:>10}", "measure", "median");
    let med = |f: &dyn Fn(&Row) -> Option<f64>| median(rows.iter().filter_map(f).collect());
    println!("{:<38} {:>10}", "link set up -> lease (ms)", fmt(med(&|r| r.up_to_lease_ms)));
    println!("{:<38} {:>10}", "carrier -> lease (ms)", fmt(med(&|r| r.carrier_to_lease_ms)));
    println!("{:<38} {:>10}", "lease -> host name (ms)", fmt(med(&|r| r.lease_to_name_ms)));
    println!("{:<38} {:>10}", "DHCP packets sent by the init", fmt(med(&|r| Some(r.dhcp_packets as f64))));
    println!("{:<38} {:>10}", "DNS packets sent by the init", fmt(med(&|r| Some(r.dns_packets as f64))));
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

/// Kernel timestamp (ms) of the first kmsg copy of an init line matching `pattern`.
fn stamp(log: &ConsoleLog, pattern: &str) -> Option<f64> {
    let m = log.find_line(&format!(r"^\[\s*(\d+\.\d+)\] diskless: {pattern}"))?;
    m[1].parse::<f64>().ok().map(|s| s * 1000.0)
}

fn measure(log: &ConsoleLog, server_log: &str) -> Row {
    let lease_line = log.find_line(&format!(r"^\[\s*[\d.]+\] diskless: (\S+): lease {}/", regex::escape(LAB_IP)));
    let iface = lease_line.as_ref().map(|m| m[1].to_string()).unwrap_or_default();
    let lease = stamp(log, &format!(r"{}: lease ", regex::escape(&iface)));
    let up = stamp(log, &format!(r"found {} \(", regex::escape(&iface)));
    let carrier = stamp(log, &format!(r"{}: carrier", regex::escape(&iface)));
    let name_line = log.find_line(r"^\[\s*([\d.]+)\] diskless: host name \S+?,? .*from (.*?)\s*$");
    let name = name_line.as_ref().and_then(|m| m[1].parse::<f64>().ok()).map(|s| s * 1000.0);
    // Packets the init sent: what dnsmasq logged after it finished sending the initrd.
    let lines: Vec<&str> = server_log.lines().collect();
    let after_pxe: Vec<&str> = match lines.iter().rposition(|l| l.contains("dnsmasq-tftp") && l.contains("/initrd.img to ")) {
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
    let dns_packets = after_pxe.iter().filter(|l| l.contains(" query[") && l.contains(&format!("from {LAB_IP}"))).count();
    Row {
        up_to_lease_ms: lease.zip(up).map(|(l, u)| l - u),
        carrier_to_lease_ms: lease.zip(carrier).map(|(l, c)| l - c),
        lease_to_name_ms: name.zip(lease).map(|(n, l)| n - l),
        dhcp_packets,
        dns_packets,
        name_source: name_line.map(|m| m[2].to_string()).unwrap_or_default(),
    }
}
