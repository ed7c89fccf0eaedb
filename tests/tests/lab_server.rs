//! QEMU tests of `diskless server render` (issue 11, 5a-c): dnsmasq runs from the rendered
//! `dnsmasq.conf` with no edits (`dnsmasq --conf-file=OUT/dnsmasq.conf`, TFTP from
//! `OUT/tftproot`), and a PXE client (SeaBIOS + iPXE ROM, then the rendered
//! `tftproot/busybox/pxelinux.0` and its configuration) boots the busybox image over
//! NFS with the host name from the rendered PTR record. Before the boot `diskless server
//! check --root OUT` passes (the initrd is the real mkinitramfs output); during it,
//! `check --live` passes against the running dnsmasq, and fails naming the host once a
//! dnsmasq without that host's records answers.
//!
//! The ISC + BIND cases (5b, 5c) run dhcpd from the rendered `dhcpd.conf`, named with
//! the rendered `named.conf` included from a top-level configuration (as Debian's
//! `named.conf.local` includes it) and dnsmasq from the rendered `dnsmasq.conf` for TFTP
//! only; 5c serves two images to two hosts from one lab file.
//!
//! The UEFI cases (5d, 5e) serve the same kernel and initrd from the same kind of
//! dnsmasq lab to an OVMF client whose NIC has no option ROM, so that the firmware's
//! own PXE asks for the UEFI boot file (DHCP option 93): the rendered
//! `busybox/grubnetx64.efi`, or with `secure_boot = true` and Secure Boot on,
//! `busybox/shimx64.efi` -> Debian's signed GRUB -> Debian's signed kernel, which then
//! runs locked down and loads our initrd's modules only because they are Debian's,
//! signatures intact.
//!
//! The NFS server is the rig's nfs-ganesha exporting the image at its own path, as the
//! rendered ganesha.conf does. Logs: `target/qemu-logs/lab-server-*`.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use qemu_tests::kernel::Kernel;
use qemu_tests::lab::{BRIDGE, LabServer, LabSpec, MAC, RenderedLab, diskless, text};
use qemu_tests::netns::{Listening, Netns};
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::paths::log_dir;
use qemu_tests::process::ChildGuard;
use qemu_tests::pxe::BASE_APPEND;
use qemu_tests::secureboot::SignedLoaders;
use qemu_tests::vm::{Firmware, Nic, Vm, VmRun};

const NAME: &str = "lab-server-dnsmasq";

/// The rig's dnsmasq from the rendered `conf`, waiting for `ports` (69 alone when it
/// serves only TFTP).
fn start_dnsmasq_on(ns: &Netns, conf: &Path, state: &Path, log: &Path, ports: &[u16]) -> ChildGuard {
    qemu_tests::lab::start_dnsmasq(ns, conf, state, log, ports).unwrap()
}

/// An OVMF client lab3-12 of `lab` whose NIC has no option ROM: the firmware's own
/// PXE boots it, as a lab PC's does.
fn uefi_client(lab: &LabServer, name: &str, firmware: Firmware) -> Vm {
    lab.client(name, firmware).timeout(Duration::from_secs(300))
}

/// lab3-12 reached the busybox image over NFS with its name from the rendered PTR
/// record and its network, lab and host layers, and powered off cleanly.
fn assert_lab3_12_with_layers(run: &VmRun, image: &Path) {
    let report = ImageReport(&run.log);
    report.assert_done();
    let log = run.log.path().display();
    assert_eq!(report.value("hostname"), "lab3-12", "{log}");
    assert_eq!(report.value("domainname"), "example.edu", "{log}");
    assert_eq!(report.read("/etc/upto-network"), "network 10.77.0.255", "network layer ({log})");
    assert_eq!(report.read("/etc/upto-lab"), "lab lab3", "lab layer ({log})");
    assert_eq!(report.read("/etc/upto-host"), "host lab3-12", "host layer ({log})");
    assert_eq!(report.read("/etc/layer-test"), "ip 10.77.0.112", "address layer last ({log})");
    run.log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();
    let root = report.mount("/");
    assert!(root.starts_with(&format!("10.77.0.1:{} / nfs ro,", image.display())), "root mount {root:?}");
}

#[test]
fn a_pxe_client_boots_from_dnsmasq_running_the_rendered_files_and_check_live_names_a_lost_ptr() {
    let mut lab = LabServer::start(NAME, &LabSpec::new(&["bios"])).unwrap();
    let o = lab.check(&["--root", lab.rendered.out_arg(), "--live"]);
    assert_eq!((o.status.code(), text(&o)), (Some(0), "0 problem(s)\n".to_string()));

    let run = lab.bios_client(NAME).timeout(Duration::from_secs(300)).run().unwrap();
    let report = ImageReport(&run.log);
    report.assert_done();
    assert_eq!(report.value("hostname"), "lab3-12", "{}", run.log.path().display());
    assert_eq!(report.value("domainname"), "example.edu", "{}", run.log.path().display());
    run.log.assert_line(r"pxelinux|PXELINUX");
    run.log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();
    let root = report.mount("/");
    assert!(root.starts_with(&format!("10.77.0.1:{} / nfs ro,", lab.image.display())), "root mount {root:?}");

    // The same server without lab3-12's records: --live names the host.
    lab.dnsmasq.kill();
    let conf = std::fs::read_to_string(lab.rendered.out.join("dnsmasq.conf")).unwrap();
    let without: String = conf.lines().filter(|l| !l.contains("lab3-12")).map(|l| format!("{l}\n")).collect();
    // A fresh lease file too: dnsmasq publishes the names of its leases in DNS.
    let fresh = tempfile::tempdir().unwrap();
    let edited = fresh.path().join("without-lab3-12.conf");
    std::fs::write(&edited, without).unwrap();
    let logs = log_dir().unwrap();
    let no_ptr_log = logs.join(format!("{NAME}-no-ptr.dnsmasq.log"));
    let _dnsmasq = start_dnsmasq_on(&lab.ns, &edited, fresh.path(), &no_ptr_log, &[53, 67, 69]);
    let o = lab.check(&["--live"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("problem: host \"lab3-12\": no PTR record for 10.77.0.112 in the answers of 10.77.0.1:53"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_uefi_client_boots_through_the_rendered_grub_from_dnsmasq_running_the_rendered_files() {
    const NAME: &str = "lab-server-uefi";
    // Both firmwares: dnsmasq must pick the UEFI loader by the client's option 93.
    let lab = LabServer::start(NAME, &LabSpec::new(&["bios", "uefi"])).unwrap();
    let run = uefi_client(&lab, NAME, Firmware::Uefi).run().unwrap();
    eprintln!("{NAME}: QEMU ran {:.1} s", run.elapsed.as_secs_f64());
    assert_lab3_12_with_layers(&run, &lab.image);
    run.log.assert_line(r#"BdsDxe: starting Boot\d+ "UEFI PXEv4"#);
    run.log.assert_line(r"Welcome to GRUB!");
    let sent = lab.tftp_sent();
    assert_eq!(
        sent,
        ["busybox/grubnetx64.efi", "grub/grub.cfg", "busybox/vmlinuz", "busybox/initrd.img"],
        "{}",
        lab.dnsmasq_log.display()
    );
}

#[test]
fn a_secure_boot_client_boots_shim_signed_grub_and_the_signed_kernel_locked_down_from_the_rendered_files() {
    const NAME: &str = "lab-server-secure-boot";
    let signed = SignedLoaders::cached().unwrap();
    let loaders =
        format!("[loaders]\nshim = \"{}\"\nuefi_signed = \"{}\"\n", signed.shim.display(), signed.grub.display());
    // loglevel=6 shows the kernel's notices: the lockdown line, and any refusal of it.
    let params = BASE_APPEND.replace("loglevel=4", "loglevel=6");
    let spec = LabSpec { params, image_keys: "secure_boot = true\n".into(), loaders, ..LabSpec::new(&["uefi"]) };
    let lab = LabServer::start(NAME, &spec).unwrap();
    let run = uefi_client(&lab, NAME, Firmware::UefiSecureBoot).run().unwrap();
    eprintln!("{NAME}: QEMU ran {:.1} s", run.elapsed.as_secs_f64());
    // Both only printed when the firmware reports Secure Boot on.
    run.log.assert_line(r"^EFI stub: UEFI Secure Boot is enabled");
    run.log.assert_line(r"\] Kernel is locked down from EFI Secure Boot; see man kernel_lockdown");
    assert_lab3_12_with_layers(&run, &lab.image);
    // The initrd's modules loaded in the locked-down kernel, Debian's signatures intact.
    run.log.assert_line(r"^diskless: loaded virtio_net in ");
    run.log.assert_line(r"^diskless: loaded nfs in ");
    run.log.assert_no_line(r"module verification failed|Loading of unsigned module|Key was rejected");
    // Nothing of ours was refused; the kernel itself refuses hibernation at boot.
    let refused: Vec<&str> = run
        .log
        .lines()
        .filter(|l| l.contains("Lockdown: ") && !l.contains("Lockdown: swapper/0: hibernation is restricted"))
        .collect();
    assert!(refused.is_empty(), "lockdown refused: {refused:#?}");
    let sent = lab.tftp_sent();
    assert_eq!(
        &sent[..2],
        ["busybox/shimx64.efi", "grubx64.efi"],
        "shim, then the signed GRUB from the TFTP root: {}",
        lab.dnsmasq_log.display()
    );
    for file in ["busybox/vmlinuz", "busybox/initrd.img"] {
        assert!(sent.iter().any(|s| s == file), "{file} not sent: {sent:?}");
    }
    assert!(!sent.iter().any(|s| s.ends_with("grubnetx64.efi")), "unsigned GRUB sent: {sent:?}");
}

/// A lab image: its name and the directory exported as its root.
struct LabImage {
    name: &'static str,
    export: std::path::PathBuf,
}

/// A lab host: name, MAC, address, image, and its tap on the bridge.
struct LabHost {
    name: &'static str,
    mac: &'static str,
    address: &'static str,
    image: &'static str,
    tap: &'static str,
}

fn isc_lab_file(kernel: &str, images: &[LabImage], hosts: &[LabHost]) -> String {
    let mut text = format!(
        "[server]\naddress = \"10.77.0.1\"\ninterface = \"{BRIDGE}\"\n\n[[subnet]]\nnetwork = \"10.77.0.0/24\"\n\
         router = \"10.77.0.1\"\ndomain = \"example.edu\"\ndynamic = [\"10.77.0.150\", \"10.77.0.199\"]\n"
    );
    for image in images {
        text.push_str(&format!(
            "\n[[image]]\nname = \"{}\"\nexport = \"{}\"\nkernel = \"{kernel}\"\nfirmware = [\"bios\"]\n\
             params = \"{BASE_APPEND}\"\nnfs_options = \"vers=3\"\n",
            image.name,
            image.export.display()
        ));
    }
    for host in hosts {
        text.push_str(&format!(
            "\n[[host]]\nname = \"{}\"\nmac = \"{}\"\naddress = \"{}\"\nimage = \"{}\"\n",
            host.name, host.mac, host.address, host.image
        ));
    }
    text
}

/// dhcpd from the rendered `conf` on the bridge; leases and PID file in `state`.
fn start_dhcpd(ns: &Netns, conf: &Path, state: &Path, log: &Path) -> ChildGuard {
    let leases = state.join("dhcpd.leases");
    std::fs::write(&leases, "").unwrap();
    let mut cmd = ns.command("/usr/sbin/dhcpd");
    cmd.args(["-4", "-d", "-cf"])
        .arg(conf)
        .arg("-lf")
        .arg(&leases)
        .arg("-pf")
        .arg(state.join("dhcpd.pid"))
        .arg(BRIDGE)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = ChildGuard::spawn(cmd, format!("dhcpd in namespace {}", ns.name())).unwrap();
    let want = Listening { ss_flags: "-Hlnu", ports: &[67], what: "dhcpd listening", log };
    ns.wait_listening(&mut child, &want, Duration::from_secs(10), |status| {
        panic!("dhcpd exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default())
    })
    .unwrap();
    child
}

/// named with `stanzas` (a rendered named.conf) included from a top-level configuration
/// in `state` that holds what the distribution's named.conf would: the options.
fn start_named(ns: &Netns, stanzas: &Path, state: &Path, log: &Path) -> ChildGuard {
    let top =
        format!("{}include \"{}\";\n", qemu_tests::bind::options(state, &["10.77.0.1".to_string()]), stanzas.display());
    let conf = state.join("named.conf");
    std::fs::write(&conf, top).unwrap();
    let mut cmd = ns.command("/usr/sbin/named");
    cmd.arg("-g")
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = ChildGuard::spawn(cmd, format!("named in namespace {}", ns.name())).unwrap();
    let want = Listening { ss_flags: "-Hlnu", ports: &[53], what: "named listening", log };
    ns.wait_listening(&mut child, &want, Duration::from_secs(20), |status| {
        panic!("named exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default())
    })
    .unwrap();
    qemu_tests::bind::wait_zones_loaded(log, Duration::from_secs(20)).unwrap();
    child
}

/// The servers of an ISC + BIND lab, running from `render --dhcp isc --dns bind`'s
/// files; every process is killed when this drops.
struct IscLab {
    ns: Netns,
    rendered: RenderedLab,
    named: ChildGuard,
    _dhcpd: ChildGuard,
    _dnsmasq: ChildGuard,
    _nfs: NfsServer,
}

impl IscLab {
    fn start(name: &str, images: &[LabImage], hosts: &[LabHost]) -> IscLab {
        let ns = Netns::new("dlli").unwrap();
        ns.add_bridge(BRIDGE, &["10.77.0.1/24"]).unwrap();
        for host in hosts {
            ns.add_tap(host.tap, BRIDGE).unwrap();
        }
        let text = isc_lab_file(&Kernel::cached().version, images, hosts);
        let names: Vec<&str> = images.iter().map(|i| i.name).collect();
        let rendered = RenderedLab::new(&text, &["--dhcp", "isc", "--dns", "bind"], &names).unwrap();
        let out = &rendered.out;

        let logs = log_dir().unwrap();
        let state = rendered.dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let dhcpd = start_dhcpd(&ns, &out.join("dhcpd.conf"), &state, &logs.join(format!("{name}.dhcpd.log")));
        let named = start_named(&ns, &out.join("named.conf"), &state, &logs.join(format!("{name}.named.log")));
        let dnsmasq =
            start_dnsmasq_on(&ns, &out.join("dnsmasq.conf"), &state, &logs.join(format!("{name}.dnsmasq.log")), &[69]);
        let mut export =
            NfsExport { pseudo: images[0].export.display().to_string(), ..NfsExport::new(&images[0].export) };
        export.more = images[1..].iter().map(|i| (i.export.clone(), i.export.display().to_string())).collect();
        let nfs = NfsServer::start(&ns, &export, name).unwrap();
        IscLab { ns, rendered, named, _dhcpd: dhcpd, _dnsmasq: dnsmasq, _nfs: nfs }
    }

    fn check_live(&self) -> Output {
        diskless(&["server", "check", "--lab", self.rendered.lab_arg(), "--live"], Some(&self.ns))
    }

    /// Starts a PXE client for `host`; the caller waits for it.
    fn client(&self, name: &str, host: &LabHost) -> qemu_tests::vm::RunningVm {
        Vm::new(name)
            .netns(&self.ns)
            .pxe()
            .nic(Nic::tap("virtio-net-pci", host.mac, host.tap))
            .timeout(Duration::from_secs(300))
            .spawn()
            .unwrap()
    }
}

/// What every client of these tests shows: the lab's name from BIND's PTR record, its
/// image's root over NFS, a clean boot.
fn assert_booted(run: &qemu_tests::vm::VmRun, host: &LabHost, image: &LabImage) {
    let report = ImageReport(&run.log);
    report.assert_done();
    assert_eq!(report.value("hostname"), host.name, "{}", run.log.path().display());
    assert_eq!(report.value("domainname"), "example.edu", "{}", run.log.path().display());
    run.log.assert_line(r"pxelinux|PXELINUX");
    run.log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();
    let root = report.mount("/");
    assert!(root.starts_with(&format!("10.77.0.1:{} / nfs ro,", image.export.display())), "root mount {root:?}");
}

const HOST_12: LabHost = LabHost { name: "lab3-12", mac: MAC, address: "10.77.0.112", image: "busybox", tap: "tap0" };

#[test]
fn a_pxe_client_boots_from_isc_dhcpd_and_bind_running_the_rendered_files_and_check_live_names_a_lost_ptr() {
    const NAME: &str = "lab-server-isc-bind";
    let images = [LabImage { name: "busybox", export: image_dir("busybox") }];
    let mut lab = IscLab::start(NAME, &images, &[HOST_12]);
    let o = lab.check_live();
    assert_eq!((o.status.code(), text(&o)), (Some(0), "0 problem(s)\n".to_string()));

    let run = lab.client(NAME, &HOST_12).wait().unwrap();
    assert_booted(&run, &HOST_12, &images[0]);

    // BIND restarted from an edited copy of the zones, lab3-12's PTR record removed.
    lab.named.kill();
    let copy = lab.rendered.dir.path().join("edited");
    std::fs::create_dir_all(copy.join("bind")).unwrap();
    let out = &lab.rendered.out;
    for entry in std::fs::read_dir(out.join("bind")).unwrap() {
        let path = entry.unwrap().path();
        let zone = std::fs::read_to_string(&path).unwrap();
        let kept: String = zone.lines().filter(|l| !l.contains("PTR lab3-12.")).map(|l| format!("{l}\n")).collect();
        std::fs::write(copy.join("bind").join(path.file_name().unwrap()), kept).unwrap();
    }
    let stanzas = std::fs::read_to_string(out.join("named.conf")).unwrap();
    let edited = stanzas.replace(&out.join("bind").display().to_string(), &copy.join("bind").display().to_string());
    assert_ne!(edited, stanzas, "named.conf names the zone files under OUT/bind");
    std::fs::write(copy.join("named.conf"), edited).unwrap();
    let state = copy.join("state");
    std::fs::create_dir(&state).unwrap();
    let _named = start_named(
        &lab.ns,
        &copy.join("named.conf"),
        &state,
        &log_dir().unwrap().join(format!("{NAME}-no-ptr.named.log")),
    );
    let o = lab.check_live();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let found = text(&o);
    assert!(
        found.starts_with("problem: host \"lab3-12\": no PTR record for 10.77.0.112 in the answers of 10.77.0.1:53")
            && found.ends_with("\n1 problem(s)\n"),
        "{found}"
    );
}

#[test]
fn two_hosts_boot_their_own_images_side_by_side_from_one_rendered_server() {
    const NAME: &str = "lab-server-two-images";
    let images = [
        LabImage { name: "busybox", export: image_dir("busybox") },
        LabImage { name: "legacy", export: image_dir("busybox-legacy") },
    ];
    let hosts = [
        HOST_12,
        LabHost { name: "lab3-13", mac: "52:54:00:77:03:13", address: "10.77.0.113", image: "legacy", tap: "tap1" },
    ];
    let lab = IscLab::start(NAME, &images, &hosts);
    let o = lab.check_live();
    assert_eq!((o.status.code(), text(&o)), (Some(0), "0 problem(s)\n".to_string()));
    // Both at once: one server for both images.
    let first = lab.client(&format!("{NAME}-lab3-12"), &hosts[0]);
    let second = lab.client(&format!("{NAME}-lab3-13"), &hosts[1]);
    let (first, second) = (first.wait().unwrap(), second.wait().unwrap());
    assert_booted(&first, &hosts[0], &images[0]);
    assert_booted(&second, &hosts[1], &images[1]);
    first.log.assert_line(r"^IMAGE: config /etc/diskless/diskless.toml\s*$");
    second.log.assert_line(r"^IMAGE: config /etc/diskless/diskless.conf\s*$");
    second.log.assert_no_line(r"^IMAGE: config /etc/diskless/diskless.toml");
}
