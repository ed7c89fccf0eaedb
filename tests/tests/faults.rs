//! The fault suite: a lab network and server on a bad day, one fault per test, each
//! booting the real kernel and our initramfs in QEMU on the PXE rig's segment
//! (`tests/src/pxe.rs`: bridge 10.77.0.1/24, dnsmasq for DHCP and DNS with lab3-12's
//! reservation and PTR record, nfs-ganesha exporting a busybox image).
//!
//! - 20 % of the frames lost each way (nftables on the bridge): the boot completes
//!   with the machine's name and layers;
//! - the NFS server killed and restarted while the layers are read: the boot completes
//!   and the big layer file arrives whole;
//! - a layer larger than the local dirs' tmpfs: a clear error naming the layer, its size
//!   and the room there was, then the failure action;
//! - a DHCP server that answers every request with malformed replies (`bad_dhcp.rs`),
//!   the good server starting only later: no panic, the replies ignored (an offer that
//!   only lacks its end option is taken, then never acknowledged), and the boot takes
//!   the good server's lease.
//!
//! The rogue DHCP server and the HOWTO's static `ip=` have their own files
//! (`rogue_dhcp.rs`, `howto_static_ip.rs`). Console logs: `target/qemu-logs/<test>.log`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qemu_tests::bad_dhcp::{BadDhcpServer, MALFORMATIONS};
use qemu_tests::build::build_initramfs;
use qemu_tests::console::ConsoleLog;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_copy, image_dir};
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::{Nic, VmRun};

const LAB_MAC: &str = "52:54:00:77:03:12";
const NFS_V3: &str = "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3";

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot"]))
}

/// A rig with dnsmasq serving lab3-12 and a tap for the VM.
fn lab(name: &str) -> (PxeRig, String) {
    let mut rig = PxeRig::new(name).unwrap();
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let tap = rig.tap().unwrap();
    (rig, tap)
}

/// The image's init ran to its end as lab3-12 with the host layer applied.
#[track_caller]
fn assert_booted_as_lab3_12(run: &VmRun) {
    let image = ImageReport(&run.log);
    image.assert_done();
    let log = run.log.path().display();
    assert_eq!(image.value("hostname"), LAB_HOST, "host name ({log})");
    assert_eq!(image.read("/etc/upto-host"), "host lab3-12", "host layer applied ({log})");
    run.log.assert_no_line(r"diskless: ERROR");
    run.log.assert_no_line(r"panicked");
    run.assert_clean_exit();
}

/// A copy of the busybox image whose host layer (lab3-12) carries `/var/big` of
/// `mib` MiB, listed in `/etc/image-sums`; returns the copy and the file's md5.
fn image_with_big_host_file(mib: usize) -> (tempfile::TempDir, String) {
    let image = image_copy("busybox").unwrap();
    let big = image.path().join("diskless/hosts/lab3-12/var/big");
    // Not all zeros: a hole or a page of zeros must not pass for the file.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    std::fs::write(image.path().join("etc/image-sums"), "/var/local/big\n").unwrap();
    let out = std::process::Command::new("md5sum").arg(&big).output().unwrap();
    let md5 = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
    (image, md5)
}

#[test]
fn boots_through_20_percent_loss_each_way_with_its_name_and_layers() {
    let name = "faults-loss-20-percent";
    let (rig, tap) = lab(name);
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("busybox")), name).unwrap();
    rig.netns().drop_frames(20).unwrap();
    let run = rig
        .direct_vm(name, netboot_initrd(), NFS_V3)
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(Duration::from_secs(420))
        .run()
        .unwrap();
    assert_booted_as_lab3_12(&run);
    let done = run.log.assert_line(r"diskless: booting lab3-12\.example\.edu 10\.77\.0\.112/24 .* after (\d+) ms");
    eprintln!("under 20 % loss each way the initramfs took {} ms ({})", &done[1], run.log.path().display());
}

#[test]
fn an_nfs_server_restarted_while_the_layers_are_read_does_not_stop_the_boot() {
    let name = "faults-nfs-restart-in-copy";
    let (rig, tap) = lab(name);
    let (image, md5) = image_with_big_host_file(96);
    let export = NfsExport::new(image.path());
    let mut nfs = NfsServer::start(rig.netns(), &export, name).unwrap();
    let mut vm = rig
        .direct_vm(name, netboot_initrd(), NFS_V3)
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .memory_mib(1024)
        .timeout(Duration::from_secs(300))
        .spawn()
        .unwrap();
    // The layers are listed just before they are read.
    vm.wait_for_line(r"diskless: layer ip \(").unwrap();
    nfs.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let _nfs = NfsServer::start(rig.netns(), &export, &format!("{name}-again")).unwrap();
    let console = vm.console();
    assert!(
        console.find_line(r"diskless: stage local done").is_none(),
        "the copy was over before the server went down: the test did not test anything ({})",
        console.path().display()
    );
    let run = vm.wait().unwrap();
    assert_booted_as_lab3_12(&run);
    let (size, sum) = ImageReport(&run.log).sum("/var/local/big");
    assert_eq!(
        (size, sum.as_str()),
        (96 << 20, md5.as_str()),
        "the big file arrived whole ({})",
        run.log.path().display()
    );
    eprintln!("NFS server down for {:.1} s during the copy", down.elapsed().as_secs_f64().min(3.5));
}

#[test]
fn a_layer_larger_than_the_tmpfs_is_an_error_naming_the_layer_and_both_sizes() {
    let name = "faults-layer-larger-than-tmpfs";
    let (rig, tap) = lab(name);
    let (image, _) = image_with_big_host_file(24);
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(image.path()), name).unwrap();
    let append = format!("{NFS_V3} diskless.tmpfs_size=8m diskless.on_failure=halt diskless.reboot_delay=0");
    let run = rig
        .direct_vm(name, netboot_initrd(), &append)
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap();
    run.log.assert_line(
        r"diskless: ERROR: .*layer host \(/diskless/hosts/lab3-12\) holds 24 MiB: no space left for .*/var/local/big .* in a local dir of 8 MiB; raise tmpfs_size",
    );
    run.log.assert_line(r"diskless: powering off\s*$");
    run.log.assert_no_line(r"^IMAGE: start");
    run.log.assert_no_line(r"panicked");
    run.assert_clean_exit();
}

#[test]
fn malformed_dhcp_replies_are_ignored_and_the_boot_waits_for_a_good_server() {
    let name = "faults-malformed-dhcp-replies";
    let mut rig = PxeRig::new(name).unwrap();
    let tap = rig.tap().unwrap();
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("busybox")), name).unwrap();
    // Its own server identity: a request for its offer is not the good server's to answer.
    let mut bad = BadDhcpServer::start(rig.netns(), "br0", "10.77.0.9".parse().unwrap()).unwrap();
    let mut vm = rig
        .direct_vm(name, netboot_initrd(), &format!("{NFS_V3} diskless.debug"))
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(Duration::from_secs(300))
        .spawn()
        .unwrap();
    // Three rounds of malformed replies, then the good server takes port 67 over.
    vm.wait_for_line(r"diskless: eth0: DHCPDISCOVER sent \(try 1\)").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while bad.requests() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    bad.stop();
    let (requests, replies) = (bad.requests(), bad.replies());
    assert!(requests >= 3, "the scripted server saw {requests} requests");
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq-late").unwrap();
    let run = vm.wait().unwrap();
    assert_booted_as_lab3_12(&run);
    // The offer without an end option is taken as an offer (the options before the
    // end of the packet are whole); the scripted server never acknowledges it, and the
    // client starts over.
    run.log.assert_line(r"diskless: eth0: lease 10\.77\.0\.112/24 from 10\.77\.0\.1 ");
    run.log.assert_no_line(r"diskless: eth0: lease 10\.77\.0\.150");
    let ignored = ignored_lines(&run.log);
    assert!(
        ignored >= MALFORMATIONS.len(),
        "{replies} malformed replies sent, {ignored} ignored on the console ({})",
        run.log.path().display()
    );
}

/// Console lines of datagrams the DHCP client looked at and ignored.
fn ignored_lines(log: &ConsoleLog) -> usize {
    log.find_all(r"diskless: eth0: ignored datagram from ").len()
}
