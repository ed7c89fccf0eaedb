//! QEMU tests of a lab without a single server (issue 15, points 4 and 5): the root
//! image on two NFS servers, and two DHCP servers.
//!
//! The NFS servers are nfs-ganesha, each a machine of its own on the lab segment: a
//! namespace joined to the bridge by a veth ([`Netns::machine_on`]), 10.77.0.2 and
//! 10.77.0.3, each with its own rpcbind and `/run` (ganesha's private mount namespace,
//! `qemu_tests::nfs`), exporting the same busybox image.
//! - `first_root_server_dead_the_boot_mounts_the_image_from_the_second`: the first
//!   server is switched off (its link down: no ARP answer, nothing at all) after both
//!   started; the client, told `nfsroot=10.77.0.2+10.77.0.3:/export`, names both,
//!   leaves the first within `nfs_server_timeout` and boots from the second.
//! - `a_storm_of_four_lab_clients_spreads_over_both_root_servers`: a lab file with four
//!   hosts and `nfs_servers = [both]`, rendered by `diskless server render`, served by
//!   the rendered dnsmasq; the clients boot with no root on their command line, so the
//!   rendered root-path (DHCP option 17) names the pair, and each mounts from the
//!   server its address picks (even addresses the first, odd the second). The four
//!   boot at once (`Vm::spawn_all`: a storm holds every VM slot of the machine).
//! - `first_dhcp_server_down_the_peer_boots_the_client`: a lab file with a `[peer]`;
//!   only the peer's rendered `dnsmasq-peer.conf` runs (the server's DHCP is down), and
//!   a PXE client gets its lease, loader, kernel, initrd and name from the peer.
//!
//! Console logs: `target/qemu-logs/root-servers-*.log`, the servers' logs next to them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use qemu_tests::build::build_initramfs;
use qemu_tests::kernel::Kernel;
use qemu_tests::lab::{LabHost, LabSpec, RenderedLab, diskless, lab_file, start_dnsmasq};
use qemu_tests::netns::Netns;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::paths::log_dir;
use qemu_tests::process::ChildGuard;
use qemu_tests::pxe::{BRIDGE, DOMAIN, LAB_HOST, LAB_IP, PxeRig};
use qemu_tests::vm::{Nic, Vm, VmRun};

const LAB_MAC: &str = "52:54:00:77:03:12";
const TIMEOUT: Duration = Duration::from_secs(300);
const FIRST: &str = "10.77.0.2";
const SECOND: &str = "10.77.0.3";

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| build_initramfs(&["--profile", "netboot"]))
}

/// The two NFS servers on `lab`'s bridge, exporting the busybox image at `pseudo`.
/// Fields drop in order: the servers before their namespaces.
struct NfsPair {
    servers: Vec<NfsServer>,
    machines: Vec<Netns>,
}

impl NfsPair {
    fn start(lab: &Netns, pseudo: &str, name: &str) -> NfsPair {
        let mut pair = NfsPair { servers: Vec::new(), machines: Vec::new() };
        for (i, address) in [FIRST, SECOND].into_iter().enumerate() {
            let machine = lab
                .machine_on(BRIDGE, "dlnf", (&format!("nfs{i}a"), &format!("nfs{i}b")), &format!("{address}/24"))
                .unwrap();
            let export =
                NfsExport { bind: address.into(), pseudo: pseudo.into(), ..NfsExport::new(&image_dir("busybox")) };
            pair.servers.push(NfsServer::start(&machine, &export, &format!("{name}-{address}")).unwrap());
            pair.machines.push(machine);
        }
        pair
    }

    /// Switches the first server off: its link goes down, so nothing answers for it,
    /// not even ARP.
    fn switch_off_first(&self) {
        self.machines[0].ip(&["link", "set", "nfs0b", "down"]).unwrap();
    }
}

/// The boot reached the image's init as `host` with its root mounted from `server`.
#[track_caller]
fn assert_booted_from(run: &VmRun, host: &str, server: &str, export: &str) {
    let log = &run.log;
    let path = log.path().display();
    let image = ImageReport(log);
    image.assert_done();
    assert_eq!(image.value("hostname"), host, "host name in the image ({path})");
    assert_eq!(image.value("domainname"), DOMAIN, "domain name in the image ({path})");
    let root = image.mount("/");
    assert!(root.starts_with(&format!("{server}:{export} / nfs ro,")), "root mount {root:?} ({path})");
    log.assert_line(&format!(
        r"^diskless: mounted {}:{} read-only on /newroot \(NFSv3\)\s*$",
        regex::escape(server),
        regex::escape(export)
    ));
    log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();
}

#[test]
fn first_root_server_dead_the_boot_mounts_the_image_from_the_second() {
    let name = "root-servers-first-dead";
    let mut rig = PxeRig::new(name).unwrap();
    let config = rig.dnsmasq_config().host(LAB_MAC, LAB_IP, LAB_HOST);
    rig.start_dnsmasq(&config, "dnsmasq").unwrap();
    let nfs = NfsPair::start(rig.netns(), "/export", name);
    nfs.switch_off_first();
    let tap = rig.tap().unwrap();
    let run = rig
        .direct_vm(name, netboot_initrd(), &format!("root=/dev/nfs nfsroot={FIRST}+{SECOND}:/export,vers=3"))
        .nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap))
        .timeout(TIMEOUT)
        .run()
        .unwrap();
    let log = &run.log;
    let path = log.path().display();
    // Both named, in this host's order (.112 is even: the first server first)...
    log.assert_line(r"^diskless: NFS root 10\.77\.0\.2\+10\.77\.0\.3:/export \(NFS version 3\) from nfsroot=");
    log.assert_line(
        r"^diskless: NFS root servers in this host's order: 10\.77\.0\.2, 10\.77\.0\.3 \(address 10\.77\.0\.112 modulo 2 = 0; ",
    );
    // ...the dead one left within nfs_server_timeout (5 s), the move on the console...
    let moved = log.assert_line(
        r"^diskless: NFS server 10\.77\.0\.2 did not answer on TCP port 2049 \((.+)\) after ([0-9.]+) s \(nfs_server_timeout 5 s\); moving on to 10\.77\.0\.3\s*$",
    );
    let after: f64 = moved[2].parse().expect("seconds");
    // The timeout, and slack for a guest clock under TCG.
    assert!(after <= 6.0, "the dead server held the boot {after} s, more than nfs_server_timeout ({path})");
    log.assert_line(r"^diskless: NFS root from server 10\.77\.0\.3 \(2 of 2: 10\.77\.0\.2\+10\.77\.0\.3:/export\)");
    // ...and the image came from the second.
    assert_booted_from(&run, LAB_HOST, SECOND, "/export");
    let json = ImageReport(log).boot_json();
    assert!(json.contains(r#""server": "10.77.0.3""#), "boot.json names another server ({path}):\n{json}");
    eprintln!("root-servers: the dead first server was left after {after} s ({})", moved[1].trim());
}

/// A lab file with the busybox image at `export`, the four lab hosts lab3-12..15
/// (10.77.0.112-115), `image_keys` in its image (the `nfs_servers` list) and `tables`
/// after the hosts (a `[peer]`).
fn lab_text(export: &Path, image_keys: &str, tables: &str) -> String {
    let spec = LabSpec {
        hosts: LabHost::room(4),
        image_keys: image_keys.to_string(),
        tables: tables.to_string(),
        ..LabSpec::new(&["bios"])
    };
    lab_file(&Kernel::cached().version, export, &spec)
}

/// The lab's segment: a namespace with the bridge at 10.77.0.1 and a tap per client.
/// Fields drop in order: servers, then files, the namespace last.
struct LabSegment {
    dnsmasq: Option<ChildGuard>,
    state: tempfile::TempDir,
    rendered: RenderedLab,
    ns: Netns,
}

impl LabSegment {
    fn new(text: &str, taps: usize) -> LabSegment {
        let ns = Netns::new("dlrs").unwrap();
        ns.add_bridge(BRIDGE, &["10.77.0.1/24"]).unwrap();
        for i in 0..taps {
            ns.add_tap(&format!("tap{i}"), BRIDGE).unwrap();
        }
        // `server check --root` runs clean here, the pair's files included.
        let rendered = RenderedLab::new(text, &[], &["busybox"]).unwrap();
        let state = tempfile::tempdir().unwrap();
        LabSegment { dnsmasq: None, state, rendered, ns }
    }

    /// The rendered `file` (dnsmasq.conf or dnsmasq-peer.conf) as dnsmasq's
    /// configuration, run in `ns`; its log is `target/qemu-logs/<name>.dnsmasq.log`.
    fn dnsmasq(&self, ns: &Netns, file: &str, name: &str) -> (ChildGuard, PathBuf) {
        let log = log_dir().unwrap().join(format!("{name}.dnsmasq.log"));
        let _ = std::fs::remove_file(&log);
        let conf = self.rendered.out.join(file);
        (start_dnsmasq(ns, &conf, self.state.path(), &log, &[53, 67, 69]).unwrap(), log)
    }

    fn client(&self, name: &str, tap: usize, mac: &str) -> Vm {
        Vm::new(name).netns(&self.ns).nic(Nic::tap("virtio-net-pci", mac, &format!("tap{tap}"))).timeout(TIMEOUT)
    }
}

#[test]
fn a_storm_of_four_lab_clients_spreads_over_both_root_servers() {
    let name = "root-servers-storm";
    let image = image_dir("busybox");
    let text = lab_text(&image, &format!("nfs_servers = [\"{FIRST}\", \"{SECOND}\"]"), "");
    let mut lab = LabSegment::new(&text, 4);
    let conf = std::fs::read_to_string(lab.rendered.out.join("dnsmasq.conf")).unwrap();
    let root_path = format!("option:root-path,\"{FIRST}+{SECOND}:{},vers=3\"", image.display());
    assert!(conf.contains(&root_path), "the rendered dnsmasq.conf hands out no root-path {root_path}:\n{conf}");
    let (dnsmasq, _) = lab.dnsmasq(&lab.ns, "dnsmasq.conf", name);
    lab.dnsmasq = Some(dnsmasq);
    let nfs = NfsPair::start(&lab.ns, &image.display().to_string(), name);
    // No root on the command line: the rendered root-path (option 17) names the pair.
    // All four at once, a room switched on together (every VM slot held meanwhile).
    let vms: Vec<Vm> = (0..4)
        .map(|i| {
            lab.client(&format!("{name}-lab3-1{}", i + 2), i, &format!("52:54:00:77:03:1{}", i + 2))
                .initrd(netboot_initrd())
                .append("loglevel=4")
        })
        .collect();
    let runs: Vec<VmRun> = Vm::spawn_all(vms).unwrap().into_iter().map(|vm| vm.wait().unwrap()).collect();
    let export = image.display().to_string();
    let mut served = [0, 0];
    for (i, run) in runs.iter().enumerate() {
        // Address modulo 2: .112 and .114 start at the first server, .113 and .115 at the second.
        let server = [FIRST, SECOND][i % 2];
        run.log.assert_line(r"^diskless: NFS root .* from the DHCP root-path \(option 17\)");
        assert_booted_from(run, &format!("lab3-1{}", i + 2), server, &export);
        served[i % 2] += 1;
    }
    assert_eq!(served, [2, 2]);
    drop(nfs);
}

#[test]
fn first_dhcp_server_down_the_peer_boots_the_client() {
    let name = "root-servers-dhcp-peer";
    let image = image_dir("busybox");
    let text = lab_text(&image, "", "\n[peer]\naddress = \"10.77.0.2\"\nname = \"server2\"\ninterface = \"peer0b\"\n");
    let lab = LabSegment::new(&text, 1);
    let peer = lab.ns.machine_on(BRIDGE, "dlpe", ("peer0a", "peer0b"), "10.77.0.2/24").unwrap();
    // The server's own DHCP is down: only the peer's rendered configuration runs.
    let (dnsmasq, log) = lab.dnsmasq(&peer, "dnsmasq-peer.conf", &format!("{name}-peer"));
    let export = NfsExport { pseudo: image.display().to_string(), ..NfsExport::new(&image) };
    let nfs = NfsServer::start(&lab.ns, &export, name).unwrap();
    let run = lab.client(name, 0, LAB_MAC).pxe().run().unwrap();
    // check --live asks each DNS server alone: the server's is down (one line for it),
    // the peer's answers agree with the lab (no line).
    let live = diskless(&["server", "check", "--lab", lab.rendered.lab_arg(), "--live"], Some(&lab.ns));
    let report = String::from_utf8_lossy(&live.stdout).into_owned() + &String::from_utf8_lossy(&live.stderr);
    assert!(!live.status.success(), "{report}");
    assert_eq!(report.matches("DNS server 10.77.0.1:53 gave no answer").count(), 1, "{report}");
    assert!(!report.contains("10.77.0.2"), "the peer's answers agree with the lab: {report}");
    drop(nfs);
    drop(dnsmasq);
    let peer_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        peer_log.contains(&format!("DHCPACK(peer0b) {LAB_IP} {LAB_MAC} {LAB_HOST}")),
        "peer's log {}",
        log.display()
    );
    for file in ["pxelinux.0", "vmlinuz", "initrd.img"] {
        assert!(
            peer_log.lines().any(|l| l.contains(" sent ") && l.contains(&format!("busybox/{file} to {LAB_IP}"))),
            "the peer's TFTP did not send busybox/{file} ({})",
            log.display()
        );
    }
    run.log.assert_line(&format!(r"diskless: \S+: lease {}/24 from 10\.77\.0\.2 after ", regex::escape(LAB_IP)));
    assert_booted_from(&run, LAB_HOST, "10.77.0.1", &image.display().to_string());
    drop(peer);
}
