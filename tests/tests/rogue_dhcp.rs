//! QEMU tests of a rogue DHCP server on the lab segment: a home router plugged into
//! the lab answers first with a lease in its own subnet and nothing to boot from. The
//! client must not keep that lease (it used to, and hung in the NFS mount).
//!
//! The rig: the PXE rig's segment (`br0` = 10.77.0.1/24) with the genuine dnsmasq
//! (lab3-12 reserved, its PTR record, root path, TFTP) and the busybox image exported
//! by nfs-ganesha; the rogue is another machine on the segment: a namespace of its
//! own, joined to `br0` by a veth, 192.168.77.1/24, running a DHCP-only dnsmasq
//! (range 192.168.77.50-99, a router 192.168.77.254 that does not exist, no root
//! path, no next server, no boot file, no DNS).
//!
//! The rogue answers first, every time, because the two servers are made so: the
//! rogue answers the DISCOVER at once with a Rapid Commit ACK and without dnsmasq's
//! ping check (`dhcp-rapid-commit`, `no-ping`), within milliseconds, while the
//! genuine server holds each offer 3 s (`dhcp-reply-delay=3`), longer than the
//! client's 1 s window for a better offer (`OFFER_WINDOW`). So the rogue's lease is
//! held 1 s, taken, found unable to reach the NFS root server, released, and the next
//! round ignores the rogue and takes the genuine lease.
//!
//! The client boots the kernel directly with `root=/dev/nfs nfsroot=10.77.0.1:/export`
//! (the command line names the root server, as the HOWTO's boot entries do).
//! - `rogue_first_then_genuine_boots_as_lab3_12_three_times`: three boots in a row.
//! - `allowlist_ignores_the_rogue_at_once`: `diskless.dhcp_server=10.77.0.1`.
//!
//! Console logs: `target/qemu-logs/rogue-dhcp-*.log`, the servers' logs next to them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use qemu_tests::build::build_initramfs;
use qemu_tests::dnsmasq::{Dnsmasq, DnsmasqConfig};
use qemu_tests::netns::Netns;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{BRIDGE, DOMAIN, LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::{Nic, VmRun};

const LAB_MAC: &str = "52:54:00:77:03:12";
const TIMEOUT: Duration = Duration::from_secs(300);
const ROGUE: &str = "192.168.77.1";
const ROOT: &str = "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3";

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot"]))
}

/// A finished boot and the rogue's log.
struct Outcome {
    run: VmRun,
    rogue_log: String,
}

impl Outcome {
    fn path(&self) -> String {
        self.run.log.path().display().to_string()
    }
}

/// One boot on a segment with the genuine server (offers delayed 3 s) and the rogue.
fn boot(name: &str, append: &str) -> Outcome {
    let mut rig = PxeRig::new(name).unwrap();
    let genuine = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST).extra("dhcp-reply-delay=3");
    rig.start_dnsmasq(&genuine, "genuine").unwrap();
    // Field order in this function's locals: the rogue's dnsmasq drops before its
    // namespace (declared after it), the rig last.
    let rogue_ns = Netns::new("dlrg").unwrap();
    rig.netns().add_veth_to("rogue0", &rogue_ns, "rogue1").unwrap();
    rig.netns().set_master("rogue0", BRIDGE).unwrap();
    rogue_ns.add_addr("rogue1", &format!("{ROGUE}/24")).unwrap();
    let rogue_cfg = DnsmasqConfig::new("rogue1")
        .ipv6_ra(false)
        .dns_port(0)
        .dhcp_range("192.168.77.50", "192.168.77.99", "255.255.255.0", "1h")
        .router("192.168.77.254")
        .extra("dhcp-rapid-commit")
        .extra("no-ping");
    let rogue = Dnsmasq::start(&rogue_ns, &rogue_cfg, &format!("{name}-rogue")).unwrap();
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("busybox")), name).unwrap();
    let tap = rig.tap().unwrap();
    let run = rig
        .direct_vm(name, netboot_initrd(), append)
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(TIMEOUT)
        .run()
        .unwrap();
    let rogue_log = rogue.log_text();
    drop(rogue);
    drop(rogue_ns);
    Outcome { run, rogue_log }
}

/// The boot reached the image's init as lab3-12 on the genuine lease, with its layers.
#[track_caller]
fn assert_booted_as_lab3_12(o: &Outcome) {
    let log = &o.run.log;
    log.assert_line(&format!(r"diskless: \S+: lease {}/24 from 10\.77\.0\.1 after ", regex::escape(LAB_IP)));
    log.assert_line(&format!(r"diskless: host name {LAB_HOST}, domain {DOMAIN} from reverse DNS\s*$"));
    let image = ImageReport(log);
    image.assert_done();
    assert_eq!(image.value("hostname"), LAB_HOST, "host name in the image ({})", o.path());
    assert_eq!(image.value("domainname"), DOMAIN, "domain name in the image ({})", o.path());
    let root = image.mount("/");
    assert!(root.starts_with("10.77.0.1:/export / nfs ro,"), "root mount {root:?} ({})", o.path());
    // The host and ip layers were applied: the identity is the lab's, not the rogue's.
    assert_eq!(image.read("/etc/upto-host"), "host lab3-12", "host layer ({})", o.path());
    assert_eq!(image.read("/etc/layer-test"), "ip 10.77.0.112", "ip layer ({})", o.path());
    log.assert_no_line(r"diskless: ERROR");
    o.run.assert_clean_exit();
}

#[test]
fn rogue_first_then_genuine_boots_as_lab3_12_three_times() {
    for run in 1..=3 {
        let o = boot(&format!("rogue-dhcp-release-{run}"), ROOT);
        let log = &o.run.log;
        // Held for the window, taken for want of a better offer...
        log.assert_line(
            r"diskless: \S+: rapid-commit lease of 192\.168\.77\.\d+ from 192\.168\.77\.1 has no root path, next server or boot file; waiting 1\.0 s for an offer that has",
        );
        log.assert_line(r"diskless: \S+: no offer with boot information within 1\.0 s; taking the one held");
        // ...found unable to reach the NFS server, released, the rogue excluded...
        log.assert_line(
            r"diskless: warning: \S+: lease 192\.168\.77\.\d+ from 192\.168\.77\.1 has no root path, next server or boot file and the NFS root server 10\.77\.0\.1:2049 does not answer over it \(.*; 2 tries of 2 s\); releasing it and asking again without 192\.168\.77\.1 \(\d+ s left\)",
        );
        log.assert_line(
            r"diskless: \S+: rapid-commit lease of 192\.168\.77\.\d+ from 192\.168\.77\.1 ignored: its lease could not reach the root server earlier in this boot",
        );
        assert!(
            o.rogue_log.contains("DHCPRELEASE(rogue1)"),
            "the rogue never saw the DHCPRELEASE (console {}):\n{}",
            o.path(),
            o.rogue_log
        );
        // ...and the genuine lease boots.
        assert_booted_as_lab3_12(&o);
    }
}

#[test]
fn allowlist_ignores_the_rogue_at_once() {
    let o = boot("rogue-dhcp-allowlist", &format!("{ROOT} diskless.dhcp_server=10.77.0.1"));
    let log = &o.run.log;
    log.assert_line(
        r"diskless: \S+: rapid-commit lease of 192\.168\.77\.\d+ from 192\.168\.77\.1 ignored: not among diskless\.dhcp_server=10\.77\.0\.1",
    );
    log.assert_no_line("releasing it");
    assert_booted_as_lab3_12(&o);
}
