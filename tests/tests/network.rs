//! QEMU tests of the network and identity stages over the PXE rig: real firmware
//! (SeaBIOS + iPXE), pxelinux over TFTP, our kernel and initrd, DHCP, reverse DNS,
//! and the busybox NFS root (`qemu/build-images busybox`) that reports what it got.
//!
//! Three VMs, each run once per test process; the tests below assert on its result:
//! - A: virtio-net, PXE with `IPAPPEND 2` (BOOTIF=), lease + PTR name for lab3-12,
//!   root from DHCP option 17 (no root= on the command line).
//! - B: two e1000 NICs, the first on a dead segment (carrier, no server); the second
//!   network-boots (bootindex) with a per-MAC pxelinux file without IPAPPEND, so the
//!   init runs DHCP on both and must take the lease on the second.
//! - C: direct kernel boot (the firmware would need the server itself), DHCP server
//!   started 20 s after QEMU, DNS that has no PTR record for the client: lease after
//!   the wait, host name from DHCP option 12.
//!
//! The console of each VM is in `target/qemu-logs/<vm>.log`, the servers' logs next to
//! it (`<vm>-dnsmasq.dnsmasq.log`, `<vm>.ganesha.log`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qemu_tests::build::build_initramfs;
use qemu_tests::dnsmasq::DnsmasqConfig;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{self, BRIDGE, DOMAIN, LAB_HOST, LAB_IP, PxeRig, SERVER};
use qemu_tests::vm::{Nic, Vm, VmRun};

/// MAC of lab3-12's NIC (A, C, and B's live NIC).
const LAB_MAC: &str = "52:54:00:77:03:12";
/// MAC of B's NIC on the dead segment.
const DEAD_MAC: &str = "52:54:00:77:09:99";
/// Generous: PXE alone takes 12-14 s, two VMs share two cores.
const TIMEOUT: Duration = Duration::from_secs(300);
/// C's DHCP server comes up this long after QEMU started.
const LATE_DHCP: Duration = Duration::from_secs(20);

/// A finished VM and what its servers logged.
struct Outcome {
    run: VmRun,
    /// dnsmasq logs, concatenated with their paths.
    server_log: String,
    /// Seconds from QEMU start to the late server's start (C only).
    late_start: Option<f64>,
}

impl Outcome {
    fn image(&self) -> ImageReport<'_> {
        ImageReport(&self.run.log)
    }
}

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot"]))
}

fn busybox_export(rig: &PxeRig) -> NfsServer {
    NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("busybox")), rig.name()).unwrap()
}

/// A PXE segment where dnsmasq knows lab3-12 (A + PTR) and the busybox image is
/// exported; `nics` adds the VM's NICs on the rig's taps.
fn pxe_boot_as_lab3_12(
    name: &str,
    pxelinux: impl FnOnce(&PxeRig),
    nics: impl FnOnce(&mut PxeRig, Vm) -> Vm,
) -> Outcome {
    let mut rig = PxeRig::new(name).unwrap();
    rig.initrd(netboot_initrd()).unwrap();
    pxelinux(&rig);
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let _nfs = busybox_export(&rig);
    let vm = rig.vm(name).timeout(TIMEOUT);
    let vm = nics(&mut rig, vm);
    let run = vm.run().unwrap();
    Outcome { run, server_log: rig.server_logs(), late_start: None }
}

fn vm_a() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        pxe_boot_as_lab3_12(
            "network-A-pxe-virtio-ptr",
            |rig| drop(rig.pxelinux_default("", true).unwrap()),
            |rig, vm| vm.nic(Nic::tap("virtio-net-pci", LAB_MAC, &rig.tap().unwrap())),
        )
    })
}

fn vm_b() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        pxe_boot_as_lab3_12(
            "network-B-pxe-e1000-dead-first-nic",
            // No IPAPPEND: without BOOTIF the init must try every NIC.
            |rig| drop(rig.pxelinux_for(LAB_MAC, "", false).unwrap()),
            |rig, vm| {
                let dead = rig.dead_tap().unwrap();
                let live = rig.tap().unwrap();
                vm.nic(Nic::tap("e1000", DEAD_MAC, &dead)).nic(Nic::tap("e1000", LAB_MAC, &live).boot_first())
            },
        )
    })
}

fn vm_c() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let name = "network-C-late-dhcp-no-ptr";
        let mut rig = PxeRig::new(name).unwrap();
        // DNS apart from DHCP (dnsmasq publishes its own leases' names): this one is
        // authoritative for example.edu and the reverse zone and knows no 10.77.0.112.
        let dns = DnsmasqConfig::new(BRIDGE)
            .ipv6_ra(false)
            .domain(DOMAIN, pxe::SUBNET)
            .extra("host-record=lab3-50.example.edu,lab3-50,10.77.0.150");
        rig.start_dnsmasq(&dns, "dns").unwrap();
        let dhcp = pxe::dhcp_only_host(rig.dnsmasq_config().dns_port(0), LAB_MAC, LAB_IP, LAB_HOST);
        let _nfs = busybox_export(&rig);
        let tap = rig.tap().unwrap();
        let vm =
            rig.direct_vm(name, netboot_initrd(), "").nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap)).timeout(TIMEOUT);
        let running = vm.spawn().unwrap();
        let started = Instant::now();
        std::thread::sleep(LATE_DHCP);
        rig.start_dnsmasq(&dhcp, "dhcp-late").unwrap();
        let late = started.elapsed().as_secs_f64();
        let run = running.wait().unwrap();
        Outcome { run, server_log: rig.server_logs(), late_start: Some(late) }
    })
}

/// The interface the hardware stage named for `mac`.
#[track_caller]
fn interface_of(o: &Outcome, mac: &str) -> String {
    o.run.log.assert_line(&format!(r"diskless: interface (\S+) {mac} driver ")).get(1).unwrap().to_string()
}

/// The lease line for `ip`; returns (interface, seconds the DHCP exchange took).
#[track_caller]
fn assert_lease(o: &Outcome, ip: &str) -> (String, f64) {
    let m = o.run.log.assert_line(&format!(
        r"diskless: (\S+): lease {}/24 from {} .*after ([\d.]+) s",
        regex::escape(ip),
        regex::escape(SERVER)
    ));
    (m[1].to_string(), m[2].parse().unwrap())
}

/// The boot reached the image's init with the lab host's identity and powered off.
#[track_caller]
fn assert_completed_as_lab3_12(o: &Outcome) {
    let image = o.image();
    image.assert_done();
    assert_eq!(image.value("hostname"), LAB_HOST, "kernel host name in the image ({})", o.run.log.path().display());
    assert_eq!(image.value("domainname"), DOMAIN, "kernel domain name in the image ({})", o.run.log.path().display());
    let root = image.mount("/");
    assert!(
        root.starts_with("10.77.0.1:/export / nfs"),
        "root is not the NFS export: {root:?} ({})",
        o.run.log.path().display()
    );
    o.run.log.assert_no_line(r"diskless: ERROR");
    o.run.assert_clean_exit();
}

#[track_caller]
fn assert_ptr_identity(o: &Outcome) {
    o.run.log.assert_line(&format!(r"diskless: host name {LAB_HOST}, domain {DOMAIN} from reverse DNS\s*$"));
}

// --- A: virtio over PXE --------------------------------------------------------------

#[test]
fn pxe_boot_fetches_pxelinux_kernel_and_initrd_over_tftp() {
    let o = vm_a();
    for file in ["pxelinux.0", "ldlinux.c32", "vmlinuz", "initrd.img"] {
        assert!(
            o.server_log.lines().any(|l| l.contains("sent ") && l.contains(&format!("/{file} to {LAB_IP}"))),
            "dnsmasq did not send {file} over TFTP (console {}):\n{}",
            o.run.log.path().display(),
            o.server_log
        );
    }
    o.run.log.assert_line(r"diskless: stage early done in \d+ ms");
    // pxelinux's IPAPPEND 2 reached the kernel command line.
    o.run.log.assert_line(r"^IMAGE: cmdline .*BOOTIF=01-52-54-00-77-03-12");
}

#[test]
fn virtio_client_gets_its_reserved_lease() {
    let o = vm_a();
    let (iface, _) = assert_lease(o, LAB_IP);
    assert_eq!(iface, interface_of(o, LAB_MAC), "lease on another interface ({})", o.run.log.path().display());
}

#[test]
fn virtio_client_learns_host_name_from_ptr() {
    assert_ptr_identity(vm_a());
}

#[test]
fn virtio_client_boots_nfs_root_from_dhcp_root_path_as_lab3_12() {
    let o = vm_a();
    assert_completed_as_lab3_12(o);
    let cmdline = o.run.log.assert_line(r"^IMAGE: cmdline (.*)$");
    assert!(!cmdline[1].contains("root="), "the root must come from DHCP option 17 here: {:?}", cmdline.line);
}

// --- B: e1000, first NIC on a dead segment ---------------------------------------

#[test]
fn dual_nic_client_tries_both_nics_and_takes_the_lease_on_the_live_one() {
    let o = vm_b();
    let dead = interface_of(o, DEAD_MAC);
    let live = interface_of(o, LAB_MAC);
    assert_ne!(dead, live, "both MACs on one interface ({})", o.run.log.path().display());
    // No BOOTIF: both links were brought up and DHCP ran on the dead one too.
    o.run.log.assert_no_line(r"^IMAGE: cmdline .*BOOTIF=");
    o.run.log.assert_line(&format!(r"diskless: found {dead} \({DEAD_MAC}\), bringing it up"));
    o.run.log.assert_line(&format!(r"diskless: {dead}: carrier, starting DHCP"));
    let (iface, _) = assert_lease(o, LAB_IP);
    assert_eq!(iface, live, "lease taken on {iface}, expected {live} ({})", o.run.log.path().display());
}

#[test]
fn e1000_client_gets_lease_and_host_name_from_ptr() {
    let o = vm_b();
    o.run.log.assert_line(&format!(r"diskless: interface \S+ {LAB_MAC} driver e1000\s*$"));
    assert_lease(o, LAB_IP);
    assert_ptr_identity(o);
}

#[test]
fn dual_nic_client_boots_nfs_root_as_lab3_12() {
    assert_completed_as_lab3_12(vm_b());
}

// --- C: late DHCP server, no PTR record ------------------------------------------

#[test]
fn dhcp_server_20_s_late_still_gives_a_lease() {
    let o = vm_c();
    let late = o.late_start.unwrap();
    let (_, took) = assert_lease(o, LAB_IP);
    // The client was already asking before the server existed, and kept asking.
    let tries = o.run.log.find_all(r"diskless: \S+: \S+ sent \(try (\d+)\)");
    let max_try = tries.iter().filter_map(|m| m[1].parse::<u32>().ok()).max().unwrap_or(0);
    assert!(
        max_try >= 3,
        "expected retransmissions while the server was down (started {late:.1} s after QEMU); max try {max_try} ({})",
        o.run.log.path().display()
    );
    assert!(
        took >= 5.0,
        "the lease took {took} s although the server started {late:.1} s after QEMU ({})",
        o.run.log.path().display()
    );
}

#[test]
fn client_without_ptr_record_takes_host_name_from_dhcp_option_12() {
    let o = vm_c();
    o.run.log.assert_line(&format!(r"diskless: {SERVER}(:53)? has no PTR record for {LAB_IP}"));
    o.run.log.assert_line(&format!(r"diskless: host name {LAB_HOST}, domain {DOMAIN} from DHCP option 12\s*$"));
    // Option 12 is the admin's choice of name: no lost identity to warn about.
    o.run.log.assert_no_line("identity lost");
    assert!(
        o.server_log.contains("query[PTR] 112.0.77.10.in-addr.arpa"),
        "the PTR query never reached the DNS server (console {}):\n{}",
        o.run.log.path().display(),
        o.server_log
    );
}

#[test]
fn late_dhcp_boot_completes_with_option_12_name() {
    assert_completed_as_lab3_12(vm_c());
}
