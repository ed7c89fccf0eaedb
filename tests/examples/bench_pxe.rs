//! `qemu/bench-pxe`: how long a lab client takes from QEMU's start to its image's
//! first console line when kernel and initrd come over TFTP, and when they come over
//! HTTP (`server.http`: nginx, with only the loader over TFTP), for BIOS clients
//! (SeaBIOS + iPXE ROM, pxelinux.0 or lpxelinux.0) and UEFI clients (OVMF's own PXE,
//! grubnetx64.efi), in one run.
//!
//! The servers are the ones `diskless server render` writes for the one-host busybox
//! lab (`qemu_tests::lab::LabServer`: dnsmasq, nginx, nfs-ganesha, with `check --root`
//! clean first); the client is lab3-12 on a virtio NIC, TCG. Per boot it prints, in
//! seconds:
//!   image   host time from QEMU's start to the image's first console line
//!           (`IMAGE: `; the console is polled every 0.1 s)
//!   kernel  when the kernel started: `image` less the guest's uptime at that line
//!           (`IMAGE: uptime=`), i.e. firmware, loader and the download of kernel and
//!           initrd (the kernel's own lines are below loglevel=4)
//! and the median of each over RUNS boots. Every boot must reach the image with its
//! host name, else the benchmark stops with the console's path. It asserts nothing
//! about the figures.
//!
//! Usage: `qemu/bench-pxe [RUNS]` (default 3).

use std::time::{Duration, Instant};

use qemu_tests::lab::{HOST, LabServer, LabSpec};
use qemu_tests::nfs::ImageReport;
use qemu_tests::vm::Firmware;

const MODES: [(&str, bool); 2] = [("tftp", false), ("http", true)];
const FIRMWARE: [(&str, Firmware); 2] = [("bios", Firmware::Bios), ("uefi", Firmware::Uefi)];

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    // (mode, firmware) -> [(kernel s, image s)]
    let mut rows: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    println!(
        "bench-pxe: seconds from QEMU's start to the kernel's start and to the image's first line, {runs} run(s) each"
    );
    println!("{:<6} {:<6} {:>4} {:>9} {:>9}", "files", "client", "run", "kernel_s", "image_s");
    for (mode, http) in MODES {
        let name = format!("bench-pxe-{mode}");
        let lab = LabServer::start(&name, &LabSpec { http, ..LabSpec::new(&["bios", "uefi"]) })
            .unwrap_or_else(|e| fail(&e.to_string()));
        for (client, firmware) in FIRMWARE {
            let mut times = Vec::new();
            for run in 1..=runs {
                let vm_name = format!("bench-pxe-{mode}-{client}-{run}");
                let started = Instant::now();
                let mut vm = lab
                    .client(&vm_name, firmware)
                    .timeout(Duration::from_secs(300))
                    .spawn()
                    .unwrap_or_else(|e| fail(&e.to_string()));
                vm.wait_for_line(r"^IMAGE: ").unwrap_or_else(|e| fail(&e.to_string()));
                let image = started.elapsed().as_secs_f64();
                let done = vm.wait().unwrap_or_else(|e| fail(&e.to_string()));
                let report = ImageReport(&done.log);
                if done.log.find_line(r"^IMAGE: done").is_none() || report.value("hostname") != HOST {
                    fail(&format!("{vm_name} did not reach its image as {HOST}; see {}", done.log.path().display()));
                }
                let uptime: f64 = report.value("uptime").parse().unwrap_or_else(|_| {
                    fail(&format!("{vm_name}: IMAGE: uptime= is not a number; see {}", done.log.path().display()))
                });
                let kernel = image - uptime;
                println!("{mode:<6} {client:<6} {run:>4} {kernel:>9.2} {image:>9.2}");
                times.push((kernel, image));
            }
            rows.push((format!("{mode:<6} {client:<6}"), times));
        }
        if let Some(nginx) = &lab.nginx {
            println!("(nginx access log: {})", nginx.access_log().display());
        }
    }
    println!();
    println!("{:<13} {:>16} {:>15}", "files client", "median_kernel_s", "median_image_s");
    for (label, times) in &rows {
        let kernel = median(times.iter().map(|t| t.0).collect());
        let image = median(times.iter().map(|t| t.1).collect());
        println!("{label:<13} {kernel:>16.2} {image:>15.2}");
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// Stops the benchmark. A panic, not `process::exit`: unwinding drops the running VM
/// and the lab's servers and namespace, which would otherwise outlive the benchmark.
fn fail(message: &str) -> ! {
    panic!("bench-pxe: {message}");
}
