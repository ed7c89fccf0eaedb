//! From debootstrap to a lab image with the tool alone, in QEMU: the Debian tree exactly
//! as debootstrap made it (`qemu/.cache/images/debian-raw`), prepared only by
//! `diskless setup` and `diskless add` plus layer files this test writes, boots with
//! systemd to multi-user with its per-host `/etc/hostname` and `/etc/fstab` from the
//! layers and no failed units. Console log: `target/qemu-logs/image-setup-debian.log`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use qemu_tests::build::{build_initramfs, release_binaries};
use qemu_tests::nfs::{NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::Nic;

const LAB_MAC: &str = "52:54:00:77:03:12";

/// The host layer's fstab: a read-only NFS root needs memory for what systemd and the
/// services write.
const FSTAB: &str = "\
# fstab of lab3-12 (host layer)
tmpfs  /tmp              tmpfs  nosuid,nodev,mode=1777,size=25%  0 0
tmpfs  /var/tmp          tmpfs  nosuid,nodev,mode=1777,size=10%  0 0
tmpfs  /var/log          tmpfs  nosuid,nodev,noexec,mode=0755,size=10%  0 0
tmpfs  /var/cache        tmpfs  nosuid,nodev,mode=0755,size=10%  0 0
tmpfs  /var/lib/systemd  tmpfs  nosuid,nodev,mode=0755,size=5%  0 0
tmpfs  /var/spool        tmpfs  nosuid,nodev,mode=0755,size=5%  0 0
";

/// What the test reads on the console once multi-user is reached.
const REPORT_UNIT: &str = "\
[Unit]
Description=Report the lab image's boot to the test console and power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh /etc/diskless-setup-report

[Install]
WantedBy=multi-user.target
";

const REPORT_SCRIPT: &str = "\
exec > /dev/console 2>&1
echo \"SETUP: hostname file $(cat /etc/hostname)\"
echo \"SETUP: fstab $(head -n1 /etc/fstab)\"
echo \"SETUP: failed units: $(systemctl --failed --plain --no-legend | awk '{print $1}' | tr '\\n' ' ')\"
echo SETUP: done
systemctl --no-block poweroff
";

fn diskless(args: &[&str]) -> String {
    let binary = release_binaries().init.with_file_name("diskless");
    let out = Command::new(&binary).args(args).output().expect("run diskless");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "diskless {args:?}: {}\n{text}", out.status);
    text
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn a_debootstrap_tree_made_diskless_by_setup_alone_boots_to_multi_user_with_its_host_layer() {
    let work = tempfile::tempdir().unwrap();
    let status = Command::new("cp").arg("-a").arg(image_dir("debian-raw")).arg(work.path()).status().unwrap();
    assert!(status.success(), "copying debian-raw");
    let img = work.path().join("debian-raw");
    let img_arg = img.to_str().unwrap();

    let setup = diskless(&["setup", img_arg]);
    assert!(setup.contains("/etc/fstab"), "setup moved fstab: {setup}");
    assert!(diskless(&["setup", img_arg]).contains("nothing to do"), "setup twice changes nothing");
    let unit = "/etc/systemd/system/diskless-setup-report.service";
    let wants = "/etc/systemd/system/multi-user.target.wants/diskless-setup-report.service";
    let script = "/etc/diskless-setup-report";
    diskless(&["add", "--image", img_arg, unit, wants, script]);

    let host = img.join("diskless/hosts").join(LAB_HOST);
    write(&host, "etc/hostname", "lab3-12\n");
    write(&host, "etc/fstab", FSTAB);
    write(&img, &format!("diskless/base{unit}"), REPORT_UNIT);
    write(&img, &format!("diskless/base{script}"), REPORT_SCRIPT);
    let wants_link = img.join("diskless/base").join(&wants[1..]);
    fs::create_dir_all(wants_link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("../diskless-setup-report.service", wants_link).unwrap();

    let initrd = build_initramfs(&["--profile", "netboot"]);
    let mut rig = PxeRig::new("image-setup-debian").unwrap();
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&img), "image-setup-debian").unwrap();
    let tap = rig.tap().unwrap();
    let run = rig
        .direct_vm("image-setup-debian", &initrd, "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3")
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(Duration::from_secs(600))
        .run()
        .unwrap();
    let log = &run.log;
    log.assert_line("SETUP: hostname file lab3-12");
    log.assert_line(r"SETUP: fstab # fstab of lab3-12 \(host layer\)");
    log.assert_line(r"SETUP: failed units:\s*$");
    log.assert_line("SETUP: done");
    log.assert_no_line("diskless: ERROR");
    run.assert_clean_exit();
}
