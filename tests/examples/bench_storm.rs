//! `qemu/bench-storm`: what a boot costs the server, and what a room switched on at
//! once does to it. For each initrd (ours, initramfs-tools', dracut's: same kernel,
//! same lab) and each storm size N, the lab `diskless server render` writes for N hosts
//! (lab3-12, lab3-13, ...: distinct MACs, names and addresses; dnsmasq for DHCP, DNS
//! and TFTP, nfs-ganesha for the busybox image) is started in a private namespace, the
//! bridge is captured with tcpdump, and N BIOS PXE clients (SeaBIOS, iPXE, pxelinux)
//! are started together; every VM slot of the rig is held meanwhile, so nothing else
//! shares the CPUs.
//!
//! Every client must reach its image with its own host name (ours also with the lab
//! layer), or the benchmark stops naming the console log. It prints, per storm:
//!   - each client's seconds from the storm's start to its image's first line;
//!     with `--http`, kernel and initrd come from nginx (`server.http`), TFTP sends
//!     only the loader;
//!   - DHCP messages and RPC calls the clients sent again, TCP segments sent again,
//!     and the kernel's `nfs: server ... not responding` lines (timeouts seen);
//!   - per boot (the storm's totals / N): frames and kilobytes by protocol, the RPC
//!     calls by procedure (NFSv3 by name; NFSv4 as COMPOUND), and the CPU seconds each
//!     server process used (utime + stime from /proc, before and after the storm).
//!
//! TCG clients share the host's cores with the servers: under a storm the clients are
//! slow because the CPUs are busy emulating them, so the client times say little about
//! a real lab; the server's figures (bytes, packets, calls, CPU) are what extrapolate.
//! It asserts nothing about the figures.
//!
//! Usage: `qemu/bench-storm [--sizes 1,2,4,8] [--http] [ours|initramfs-tools|dracut ...]`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qemu_tests::kernel::Kernel;
use qemu_tests::lab::{LabHost, LabServer, LabSpec};
use qemu_tests::netns::Netns;
use qemu_tests::nfs::ImageReport;
use qemu_tests::paths::{log_dir, workspace_root};
use qemu_tests::pcap::{self, Tcpdump, Traffic};
use qemu_tests::pxe::BASE_APPEND;
use qemu_tests::vm::{Firmware, RunningVm, Vm};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Protocols in the order the table prints them.
const PROTOCOLS: [&str; 10] = ["DHCP", "DNS", "TFTP", "HTTP", "NFS", "MOUNT", "RPCBIND", "ARP", "IPv6", "other"];

/// One initrd under test: how its clients boot.
struct Initrd {
    name: &'static str,
    /// None: ours, built from this tree by the lab.
    file: Option<PathBuf>,
    params: String,
    nfs_options: &'static str,
    /// Ours applies the lab's layers; the others have none to check.
    layers: bool,
}

fn initrds(wanted: &[String]) -> Vec<Initrd> {
    let reference = workspace_root().join("qemu/.cache/reference");
    let all = vec![
        Initrd { name: "ours", file: None, params: BASE_APPEND.to_string(), nfs_options: "vers=3", layers: true },
        // initramfs-tools' and dracut's command lines as in qemu/bench-boot: the
        // kernel's ip=dhcp, and NFSv3 over TCP for initramfs-tools, NFSv4.2 for dracut.
        Initrd {
            name: "initramfs-tools",
            file: Some(reference.join("initrd-initramfs-tools.img")),
            params: format!("{BASE_APPEND} ip=dhcp ro"),
            nfs_options: "tcp,vers=3",
            layers: false,
        },
        Initrd {
            name: "dracut",
            file: Some(reference.join("initrd-dracut.img")),
            params: format!("{BASE_APPEND} ip=dhcp ro rd.neednet=1"),
            nfs_options: "vers=4.2",
            layers: false,
        },
    ];
    let chosen: Vec<Initrd> =
        all.into_iter().filter(|i| wanted.is_empty() || wanted.iter().any(|w| w == i.name)).collect();
    for initrd in &chosen {
        if let Some(file) = &initrd.file
            && !file.is_file()
        {
            fail(&format!("{} missing: run qemu/build-reference-initrds", file.display()));
        }
    }
    chosen
}

fn main() {
    let mut sizes = vec![1usize, 2, 4, 8];
    let mut wanted = Vec::new();
    let mut http = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                let list = args.next().unwrap_or_default();
                sizes = list
                    .split(',')
                    .map(|n| n.parse().ok().filter(|n| (1..=37).contains(n)))
                    .collect::<Option<_>>()
                    .unwrap_or_else(|| fail(&format!("--sizes {list:?}: give storm sizes from 1 to 37, e.g. 1,2,4,8")));
            }
            "--http" => http = true,
            "ours" | "initramfs-tools" | "dracut" => wanted.push(arg),
            other => fail(&format!(
                "unknown argument {other:?}; usage: qemu/bench-storm [--sizes 1,2,4,8] [--http] [ours|initramfs-tools|dracut ...]"
            )),
        }
    }
    let kernel = Kernel::cached();
    println!(
        "bench-storm: kernel {}, busybox image over NFS, BIOS PXE clients (TCG, 1 vCPU each) started together, kernel and initrd over {}",
        kernel.version,
        if http { "HTTP (nginx)" } else { "TFTP" }
    );
    let mut per_boot: Vec<(String, usize, Traffic, BTreeMap<String, f64>)> = Vec::new();
    for initrd in initrds(&wanted) {
        for &n in &sizes {
            // The lab is dropped (servers ended, namespace removed) before a failure exits.
            let (traffic, cpu) = storm(&initrd, n, http).unwrap_or_else(|e| fail(&e));
            per_boot.push((initrd.name.to_string(), n, traffic, cpu));
        }
    }

    println!();
    println!("Per boot (the storm's totals / N): frames and kB by protocol");
    print!("{:<16} {:>3}", "initrd", "N");
    for p in PROTOCOLS {
        print!(" {:>14}", format!("{p} fr/kB"));
    }
    println!();
    for (name, n, traffic, _) in &per_boot {
        print!("{name:<16} {n:>3}");
        for p in PROTOCOLS {
            let v = traffic.protocols.get(p).copied().unwrap_or_default();
            let cell = format!("{:.0}/{:.0}", v.frames as f64 / *n as f64, v.bytes as f64 / 1000.0 / *n as f64);
            print!(" {cell:>14}");
        }
        println!();
    }

    println!();
    println!("Per boot: server CPU seconds by process (utime + stime)");
    for (name, n, _, cpu) in &per_boot {
        let cells: Vec<String> = cpu.iter().map(|(comm, s)| format!("{comm} {:.3}", s / *n as f64)).collect();
        println!("{name:<16} {n:>3}  {}", cells.join(", "));
    }

    println!();
    println!("Per boot: RPC calls by procedure");
    for (name, n, traffic, _) in &per_boot {
        let cells: Vec<String> =
            traffic.rpc_calls.iter().map(|(call, count)| format!("{call} {:.1}", *count as f64 / *n as f64)).collect();
        println!("{name:<16} {n:>3}  {}", cells.join(", "));
    }
}

/// Boots `n` clients of `initrd` at once; prints the storm's line and returns its
/// capture and the server processes' CPU seconds.
fn storm(initrd: &Initrd, n: usize, http: bool) -> Result<(Traffic, BTreeMap<String, f64>), String> {
    let name = format!("bench-storm-{}{}-{n}", initrd.name, if http { "-http" } else { "" });
    let spec = LabSpec {
        hosts: LabHost::room(n),
        params: initrd.params.clone(),
        nfs_options: initrd.nfs_options.to_string(),
        initrd: initrd.file.clone(),
        http,
        ..LabSpec::new(&["bios"])
    };
    let lab = LabServer::start(&name, &spec).map_err(|e| e.to_string())?;
    let logs = log_dir().map_err(|e| e.to_string())?;
    let capture = logs.join(format!("{name}.pcap"));
    let tcpdump = Tcpdump::start(&lab.ns, &capture, &logs.join(format!("{name}.tcpdump.txt")))?;
    let before = server_cpu(&lab.ns);

    let vms: Vec<Vm> = lab
        .hosts
        .iter()
        .map(|host| {
            lab.client_of(host, &format!("{name}-{}", host.name), Firmware::Bios).timeout(Duration::from_secs(900))
        })
        .collect();
    let started = Instant::now();
    let mut running = Vm::spawn_all(vms).map_err(|e| e.to_string())?;
    let image_times = wait_for_images(&mut running, started)?;
    let runs: Vec<_> = running.into_iter().map(|vm| vm.wait().map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    let after = server_cpu(&lab.ns);
    tcpdump.stop();

    let mut timeouts = 0;
    for (run, host) in runs.iter().zip(&lab.hosts) {
        let report = ImageReport(&run.log);
        let path = run.log.path().display();
        // dracut sets the fully qualified name; the others the short one.
        let hostname = report.value("hostname");
        if run.log.find_line(r"^IMAGE: done").is_none() || hostname.split('.').next() != Some(host.name.as_str()) {
            return Err(format!("{} did not reach its image as {}; see {path}", initrd.name, host.name));
        }
        if initrd.layers && report.read("/etc/upto-lab") != "lab lab3" {
            return Err(format!("{}: the lab layer is missing; see {path}", host.name));
        }
        timeouts += run.log.find_all(r"nfs: server .* not responding").len();
    }
    let traffic = pcap::read_file(&capture, SERVER).map_err(|e| e.to_string())?;
    let mut sorted = image_times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{:<16} N={n:<3} image_s min {:.1} median {:.1} max {:.1} | sent again: DHCP {} RPC {} TCP {} | NFS timeouts {timeouts} | {}",
        initrd.name,
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        traffic.dhcp_retransmissions,
        traffic.rpc_retransmissions,
        traffic.tcp_retransmissions,
        capture.display()
    );
    let each: Vec<String> =
        lab.hosts.iter().zip(&image_times).map(|(host, s)| format!("{} {s:.1}", host.name)).collect();
    println!("{:<16}   each client's image line, s: {}", "", each.join(", "));
    let cpu = after
        .iter()
        .map(|(comm, ticks)| (comm.clone(), ticks_to_seconds(ticks - before.get(comm).copied().unwrap_or(0))))
        .filter(|(_, s)| *s > 0.0)
        .collect();
    Ok((traffic, cpu))
}

/// Seconds from `started` to each VM's image's first line, polling all consoles.
fn wait_for_images(running: &mut [RunningVm], started: Instant) -> Result<Vec<f64>, String> {
    let mut times = vec![None; running.len()];
    while times.iter().any(Option::is_none) {
        for (vm, time) in running.iter().zip(times.iter_mut()) {
            if time.is_none() && vm.console().find_line(r"^IMAGE: ").is_some() {
                *time = Some(started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() > Duration::from_secs(900) {
            let logs: Vec<String> = running.iter().map(|vm| vm.console().path().display().to_string()).collect();
            return Err(format!("not every client reached its image in 900 s; consoles: {}", logs.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(times.into_iter().flatten().collect())
}

/// CPU clock ticks (utime + stime) of the server processes in `ns`, by command name;
/// QEMU is a client, not a server.
fn server_cpu(ns: &Netns) -> BTreeMap<String, u64> {
    let mut by_comm = BTreeMap::new();
    for pid in ns.pids() {
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let comm = comm.trim().to_string();
        if comm.starts_with("qemu") || comm == "tcpdump" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
        *by_comm.entry(comm).or_default() += ticks;
    }
    by_comm
}

fn ticks_to_seconds(ticks: u64) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / per_second.max(1) as f64
}

fn fail(message: &str) -> ! {
    eprintln!("bench-storm: error: {message}");
    std::process::exit(1)
}
