//! QEMU tests of issue 14, point 3: a client of each other architecture network-boots
//! its own image from one server rendered by `diskless server render` from a lab file
//! (dnsmasq from the rendered `dnsmasq.conf`, TFTP from the rendered tree, the rig's
//! nfs-ganesha exporting the image at its own path as the rendered `ganesha.conf` does).
//!
//! - i686: `qemu-system-i386 -machine pc`, SeaBIOS + the NIC's iPXE ROM (DHCP option 93
//!   = 0) -> the rendered pxelinux -> Debian's `686` kernel and an initrd with the
//!   i686 init -> the i386 busybox image.
//! - aarch64: `qemu-system-aarch64 -machine virt`, AAVMF's own PXE from a virtio NIC
//!   without option ROM (option 93 = 11) -> the rendered grubnetaa64.efi and
//!   `grub/grub.cfg` -> Debian's `arm64` kernel -> the arm64 busybox image.
//! - ppc64le: `qemu-system-ppc64 -machine pseries`, SLOF's network boot from the
//!   `spapr-vlan` NIC (no option 93: the host's image picks the loader) -> the rendered
//!   grubnetppc.elf (GRUB 2.12 for powerpc-ieee1275, made by qemu/setup), which takes
//!   SLOF's DHCP reply and reads `grub/grub.cfg` -> Debian's `powerpc64le` kernel, its
//!   ibmveth driver loaded by the coldplug from the `vio` bus -> the ppc64el busybox image.
//!
//! Each image is the busybox test image with that architecture's static busybox and
//! the layers of its own host ([`qemu_tests::foreign`]); the console shows the image's
//! report (host name from the rendered PTR record, the network, lab and host layers),
//! the NIC's driver loaded by the init's coldplug, and the clean power-off.
//! Logs: `target/qemu-logs/lab-foreign-*`.

use std::time::Duration;

use qemu_tests::foreign::{AARCH64, ForeignArch, I686, PPC64LE};
use qemu_tests::lab::{BRIDGE, LabHost, LabSpec, RenderedLab, ServedImage, lab_file, start_dnsmasq};
use qemu_tests::netns::Netns;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer};
use qemu_tests::paths::log_dir;
use qemu_tests::vm::{Nic, Vm, VmRun};

/// A host of the lab: its name, MAC and address.
struct Client {
    name: &'static str,
    mac: &'static str,
    address: &'static str,
}

/// Renders and serves the lab of `arch`'s image to `client`, boots the client from the
/// network and returns its run; the servers stop when it returns.
fn boot(name: &str, arch: &ForeignArch, client: &Client, timeout: Duration) -> VmRun {
    let kernel = arch.kernel();
    let initrd = arch.initrd(&kernel);
    let image = arch.image(client.name, client.address).unwrap();
    let export = qemu_tests::foreign::canonical(image.path());
    let image_name = format!("busybox-{}", arch.debarch);
    let served = [ServedImage { name: &image_name, kernel: &kernel, initrd: &initrd }];
    let loaders = arch.loaders_table().unwrap();
    // diskless.debug lists every device the coldplug saw (devpath, modalias, matched
    // modules) on the console: the real device trees of these machines, from which the
    // coldplug's host tests on fake sysfs trees are made.
    let params = format!("{} panic=-1 loglevel=4 diskless.debug", arch.console);
    let spec = LabSpec {
        image: image_name.clone(),
        hosts: vec![LabHost {
            name: client.name.to_string(),
            mac: client.mac.to_string(),
            address: client.address.to_string(),
            tap: "tap0".to_string(),
        }],
        firmware: vec![arch.lab_firmware],
        params,
        loaders,
        ..LabSpec::new(&[])
    };
    let rendered = RenderedLab::serving(&lab_file(&kernel.version, &export, &spec), &[], &served).unwrap();

    let ns = Netns::new("dlfa").unwrap();
    ns.add_bridge(BRIDGE, &["10.77.0.1/24"]).unwrap();
    ns.add_tap("tap0", BRIDGE).unwrap();
    let logs = log_dir().unwrap();
    let dnsmasq_log = logs.join(format!("{name}.dnsmasq.log"));
    let _ = std::fs::remove_file(&dnsmasq_log);
    let state = tempfile::tempdir().unwrap();
    let _dnsmasq =
        start_dnsmasq(&ns, &rendered.out.join("dnsmasq.conf"), state.path(), &dnsmasq_log, &[53, 67, 69]).unwrap();
    let nfs_export = NfsExport { pseudo: export.display().to_string(), ..NfsExport::new(&export) };
    let _nfs = NfsServer::start(&ns, &nfs_export, name).unwrap();

    let mut nic = Nic::tap(arch.nic, client.mac, "tap0");
    if arch.firmware == qemu_tests::vm::Firmware::Aavmf {
        // AAVMF's own network boot, as on the real machine (no iPXE ROM); SLOF's NIC,
        // spapr-vlan, has no ROM to begin with.
        nic = nic.without_rom();
    }
    let run = Vm::new(name)
        .machine(arch.machine)
        .firmware(arch.firmware)
        .memory_mib(arch.memory_mib)
        .netns(&ns)
        .pxe()
        .nic(nic)
        .timeout(timeout)
        .run()
        .unwrap();
    eprintln!("{name}: QEMU ran {:.1} s", run.elapsed.as_secs_f64());
    let sent = std::fs::read_to_string(&dnsmasq_log).unwrap_or_default();
    eprintln!("{name}: dnsmasq log {}", dnsmasq_log.display());
    // The loaders ask for the rendered link, tftproot/IMAGE/initrd.img.
    assert!(sent.contains(&format!("/{image_name}/initrd.img to ")), "initrd not sent:\n{sent}");
    run
}

/// The client reached its image with its own name and layers, the image's busybox ran
/// as PID 1 (its report's first line), and it powered off cleanly.
fn assert_reached_image(run: &VmRun, client: &Client, arch: &ForeignArch) {
    let report = ImageReport(&run.log);
    let log = run.log.path().display();
    run.log.assert_line(r"^IMAGE: start pid=1\s*$");
    report.assert_done();
    assert_eq!(report.value("hostname"), client.name, "{log}");
    assert_eq!(report.value("domainname"), "example.edu", "{log}");
    assert_eq!(report.read("/etc/upto-network"), "network 10.77.0.255", "network layer ({log})");
    assert_eq!(report.read("/etc/upto-lab"), "lab lab3", "lab layer ({log})");
    assert_eq!(report.read("/etc/upto-host"), format!("host {}", client.name), "host layer ({log})");
    assert_eq!(report.read("/etc/layer-test"), format!("ip {}", client.address), "address layer last ({log})");
    assert_eq!(report.read("/proc/sys/kernel/osrelease"), arch.kernel().version, "the running kernel ({log})");
    run.log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();
}

/// What a client of `arch` shows beyond its image's report: its loader's banner, its
/// NIC's driver loaded by the coldplug and bound to eth0, and a line of the hardware
/// report that names a device left without a driver.
struct Expect {
    loader: &'static str,
    driver: &'static str,
    unclaimed: Option<&'static str>,
}

/// `client` boots from the lab of `arch` within `timeout` and shows what [`Expect`]s.
fn boots(name: &str, arch: &ForeignArch, client: &Client, timeout: Duration, expect: Expect) {
    let run = boot(name, arch, client, timeout);
    assert_reached_image(&run, client, arch);
    run.log.assert_line(expect.loader);
    run.log.assert_line(&format!(r"^diskless: loaded {} in ", expect.driver));
    run.log.assert_line(&format!(r"^diskless: interface eth0 {} driver {}$", client.mac, expect.driver));
    if let Some(line) = expect.unclaimed {
        run.log.assert_line(line);
    }
}

#[test]
fn an_i686_pc_boots_pxelinux_the_686_kernel_and_its_i386_busybox_image_from_the_rendered_server() {
    let client = Client { name: "lab3-21", mac: "52:54:00:77:03:21", address: "10.77.0.121" };
    let expect = Expect { loader: r"pxelinux|PXELINUX", driver: "virtio_net", unclaimed: None };
    boots("lab-foreign-i686", &I686, &client, Duration::from_secs(300), expect);
}

#[test]
fn an_arm64_uefi_machine_boots_grubnetaa64_the_arm64_kernel_and_its_arm64_busybox_image_from_the_rendered_server() {
    let client = Client { name: "lab3-22", mac: "52:54:00:77:03:22", address: "10.77.0.122" };
    // PCI on virt: the virtio NIC.
    let expect = Expect { loader: r"Welcome to GRUB!", driver: "virtio_net", unclaimed: None };
    boots("lab-foreign-aarch64", &AARCH64, &client, Duration::from_secs(600), expect);
}

#[test]
fn a_power_machine_boots_slof_grub_for_openfirmware_the_ppc64el_kernel_and_its_busybox_image_from_the_rendered_server()
{
    let client = Client { name: "lab3-23", mac: "52:54:00:77:03:23", address: "10.77.0.123" };
    // The vio bus: pseries' ibmveth NIC; its NVRAM has no module (the kernel's pseries
    // code reads it through RTAS), which the hardware report says.
    let expect = Expect {
        loader: r"Welcome to GRUB!",
        driver: "ibmveth",
        unclaimed: Some(r"^diskless: no driver for vio device 71000001 modalias vio:TnvramSqemu,spapr-nvram$"),
    };
    boots("lab-foreign-ppc64le", &PPC64LE, &client, Duration::from_secs(600), expect);
}
