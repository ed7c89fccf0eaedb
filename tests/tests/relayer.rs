//! `diskless relayer` on a running client, in QEMU: the Debian (systemd) image boots to
//! multi-user, a host-layer file changes on the server, and `diskless relayer` inside
//! the client puts the new content into the live local dir, without a reboot.
//!
//! The test works on a copy of the Debian image (the shared tree is never written):
//! the workspace's static `diskless` goes to `/usr/sbin/diskless`, a host layer holds
//! `/etc/relayer-probe`, and a unit prints the probe, waits until the server's copy
//! changes (each `cat` of the layer file opens it, and NFS revalidates on open), runs
//! the relayer and prints the probe again. The test changes the layer file once the
//! first line is on the console. Console log: `target/qemu-logs/relayer-debian.log`.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use qemu_tests::build::{build_initramfs, release_binaries};
use qemu_tests::nfs::{NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::Nic;

const LAB_MAC: &str = "52:54:00:77:03:12";

const PROBE_UNIT: &str = "\
[Unit]
Description=Relayer test: show a layer file, relayer once the server changed it, power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/diskless-relayer-test

[Install]
WantedBy=multi-user.target
";

const PROBE_SCRIPT: &str = "\
#!/bin/sh
out=/dev/console
echo \"RELAYER: before $(cat /etc/local/relayer-probe)\" > $out
i=0
until [ \"$(cat /diskless/hosts/lab3-12/etc/relayer-probe)\" = v2 ]; do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo 'RELAYER: the server never changed the layer' > $out; break; fi
    sleep 1
done
echo \"RELAYER: local dir still $(cat /etc/local/relayer-probe)\" > $out
/usr/sbin/diskless relayer > $out 2>&1
echo \"RELAYER: exit $?\" > $out
echo \"RELAYER: after $(cat /etc/local/relayer-probe)\" > $out
systemctl --no-block poweroff
";

/// A copy of the Debian image with the relayer probe.
fn image_with_probe(dir: &Path) {
    let status = Command::new("cp").arg("-a").arg(image_dir("debian")).arg(dir).status().expect("cp");
    assert!(status.success(), "copying the Debian image failed");
    let root = dir.join("debian");
    let diskless = release_binaries().init.with_file_name("diskless");
    fs::copy(&diskless, root.join("usr/sbin/diskless")).expect("install diskless into the image copy");
    let layer = root.join("diskless/hosts").join(LAB_HOST).join("etc");
    fs::create_dir_all(&layer).unwrap();
    fs::write(layer.join("relayer-probe"), "v1\n").unwrap();
    let script = root.join("usr/local/sbin/diskless-relayer-test");
    fs::write(&script, PROBE_SCRIPT).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let units = root.join("etc/systemd/system");
    fs::write(units.join("diskless-relayer-test.service"), PROBE_UNIT).unwrap();
    let wants = units.join("multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    symlink("../diskless-relayer-test.service", wants.join("diskless-relayer-test.service")).unwrap();
}

#[test]
fn relayer_on_a_running_debian_client_applies_a_changed_host_layer_without_reboot() {
    let work = tempfile::tempdir().unwrap();
    image_with_probe(work.path());
    let root = work.path().join("debian");
    let initrd = build_initramfs(&["--profile", "netboot"]);

    let mut rig = PxeRig::new("relayer-debian").unwrap();
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&root), "relayer-debian").unwrap();
    let tap = rig.tap().unwrap();
    // image.stay: the image's report unit leaves the power-off to the probe.
    let mut vm = rig
        .direct_vm("relayer-debian", &initrd, "root=/dev/nfs nfsroot=10.77.0.1:/export,vers=3 image.stay")
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(Duration::from_secs(600))
        .spawn()
        .unwrap();
    vm.wait_for_line("RELAYER: before v1").unwrap();
    fs::write(root.join("diskless/hosts").join(LAB_HOST).join("etc/relayer-probe"), "v2\n").unwrap();
    let run = vm.wait().unwrap();
    let log = &run.log;
    let path = log.path().display().to_string();
    log.assert_line("RELAYER: local dir still v1");
    log.assert_line(r"layer host \(/diskless/hosts/lab3-12\)");
    log.assert_line("RELAYER: exit 0");
    log.assert_line("RELAYER: after v2");
    assert_eq!(log.find_all(r"diskless: booting lab3-12").len(), 1, "one boot, no reboot ({path})");
    log.assert_no_line("diskless: ERROR");
    run.assert_clean_exit();
}
