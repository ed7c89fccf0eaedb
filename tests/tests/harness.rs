//! Tests of the VM runner itself, with a hand-made busybox initramfs (no project
//! code involved): console capture, device wiring, clean exit, timeout kill.

use std::time::Duration;

use qemu_tests::dnsmasq::{Dnsmasq, DnsmasqConfig};
use qemu_tests::image::busybox_initramfs;
use qemu_tests::kernel::Kernel;
use qemu_tests::netns::Netns;
use qemu_tests::vm::{Disk, Machine, Nic, Vm};

const LIST_PCI: &str = r#"
mount -t proc proc /proc; mount -t sysfs sysfs /sys
for d in /sys/bus/pci/devices/*; do echo "pci $(cat $d/vendor):$(cat $d/device) class $(cat $d/class)"; done
echo "rig: done"
poweroff -f
"#;

#[test]
fn busybox_guest_sees_requested_devices_and_exits_cleanly() {
    let initrd = busybox_initramfs(LIST_PCI, &[]).unwrap();
    let run = Vm::new("harness-busybox_devices")
        .machine(Machine::Q35)
        .nic(Nic::new("e1000", "52:54:00:12:34:01"))
        .nic(Nic::new("rtl8139", "52:54:00:12:34:02"))
        .disk(Disk::ahci(16))
        .disk(Disk::nvme(16, "rig1"))
        .disk(Disk::virtio(16))
        .initrd(&initrd)
        .append("quiet")
        .run()
        .unwrap();
    run.assert_clean_exit();
    let log = &run.log;
    log.assert_line("rig: done");
    log.assert_line(r"pci 0x8086:0x100e class"); // e1000
    log.assert_line(r"pci 0x10ec:0x8139 class"); // rtl8139
    log.assert_line(r"pci 0x8086:0x2922 class 0x010601"); // ich9-ahci we added
    log.assert_line(r"pci 0x1b36:0x0010 class 0x010802"); // nvme
    log.assert_line(r"pci 0x1af4:0x1001 class"); // virtio-blk (transitional)
    // The target directory may be CARGO_TARGET_DIR, not `target`.
    let kept = qemu_tests::paths::log_dir().unwrap().join("harness-busybox_devices.log");
    assert_eq!(run.log.path(), kept, "the console log is kept in the target's qemu-logs");
}

#[test]
fn hung_guest_is_killed_at_timeout() {
    let initrd = busybox_initramfs("echo 'rig: hanging'; while true; do sleep 1; done", &[]).unwrap();
    let vm = Vm::new("harness-hung_guest").initrd(&initrd).append("quiet").timeout(Duration::from_secs(60));
    let mut running = vm.spawn().unwrap();
    let pid = running.pid();
    running.wait_for_line("rig: hanging").unwrap();
    drop(running);
    // The guard reaped QEMU; its PID is gone.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "QEMU {pid} survived");

    let initrd = busybox_initramfs("while true; do sleep 1; done", &[]).unwrap();
    let run = Vm::new("harness-hung_guest_timeout")
        .initrd(&initrd)
        .append("quiet")
        .timeout(Duration::from_secs(8))
        .run()
        .unwrap();
    assert!(run.timed_out && run.status.is_none(), "QEMU exited by itself: {:?}", run.status);
    assert!(std::panic::catch_unwind(|| run.assert_clean_exit()).is_err());
}

#[test]
fn busybox_guest_gets_dhcp_lease_over_tap_in_private_namespace() {
    let ns = Netns::new("dlh").unwrap();
    ns.add_bridge("br0", &["10.80.0.1/24", "fd80::1/64"]).unwrap();
    ns.add_tap("tap0", "br0").unwrap();
    let config = DnsmasqConfig::new("br0")
        .domain("example.edu", "10.80.0.0/24")
        .dhcp_range("10.80.0.100", "10.80.0.199", "255.255.255.0", "1h")
        .host("52:54:00:80:00:12", "10.80.0.112", "lab3-12")
        .router("10.80.0.1");
    let dnsmasq = Dnsmasq::start(&ns, &config, "harness-busybox_dhcp_tap").unwrap();

    // e1000 has no module dependencies, so a plain insmod brings the NIC up.
    let ko = Kernel::cached().modules_dir().join("kernel/drivers/net/ethernet/intel/e1000/e1000.ko");
    let ko = std::fs::read(&ko).unwrap_or_else(|e| panic!("read {}: {e} (run qemu/setup)", ko.display()));
    let script = r#"
mount -t proc proc /proc; mount -t sysfs sysfs /sys
insmod /e1000.ko
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 10 -T 1 -s /bin/true 2>&1 | sed 's/^/rig: /'
poweroff -f
"#;
    let initrd = busybox_initramfs(script, &[("e1000.ko", &ko)]).unwrap();
    let run = Vm::new("harness-busybox_dhcp_tap")
        .netns(&ns)
        .nic(Nic::tap("e1000", "52:54:00:80:00:12", "tap0"))
        .initrd(&initrd)
        .append("quiet")
        .run()
        .unwrap();
    run.assert_clean_exit();
    let m = run.log.assert_line(r"rig: .*lease of (\S+) obtained");
    assert_eq!(
        &m[1],
        "10.80.0.112",
        "console log {}, dnsmasq log {}",
        run.log.path().display(),
        dnsmasq.log_path().display()
    );
}
