//! QEMU test of the HOWTO's own pxelinux entry, which gives the init a static `ip=`
//! without a DNS server:
//!
//! ```text
//! DEFAULT vmlinuz
//! APPEND root=/dev/nfs nfsroot=SERVER:/path,ro,rsize=8192,posix
//! IPAPPEND 1
//! ```
//!
//! `IPAPPEND 1` makes pxelinux append `ip=client:server:gw:mask`. The lab is the
//! HOWTO's: ISC dhcpd with a `host` block (fixed address and boot file, no host-name
//! option), BIND9 with the forward and reverse zone (the PTR record of the client),
//! TFTP by dnsmasq with its DHCP and DNS off, the busybox image over NFS. The machine
//! must still learn its name by reverse DNS and get its lab and host layers:
//! - A: dhcpd answers the init's DHCPINFORM with the DNS server (BIND on 10.77.0.1).
//! - B: dhcpd is not authoritative, so it ignores DHCPINFORM; the image's network
//!   layer carries a `resolv.conf` naming BIND (on 10.77.0.2, which nothing else names).
//!
//! Console logs: `target/qemu-logs/<vm>.log`; the servers' logs and configurations
//! next to them (`<vm>.dhcpd.log`, `<vm>.named.log`, `<vm>-tftp.dnsmasq.log`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use qemu_tests::bind::{Named, NamedConfig};
use qemu_tests::dhcpd::{Dhcpd, DhcpdConfig};
use qemu_tests::dnsmasq::DnsmasqConfig;
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{self, BRIDGE, DOMAIN, LAB_HOST, LAB_IP, NETMASK, PxeRig, SERVER, SERVER2};
use qemu_tests::vm::{Nic, VmRun};

const LAB_MAC: &str = "52:54:00:77:03:12";
/// PXE alone takes 12-14 s; the INFORM case B waits out its tries too.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The HOWTO's entry with this rig's server, plus the initrd and the serial console.
/// As a label: this rig's pxelinux 6.04 did not pass the global `APPEND` to a kernel
/// named by `DEFAULT` (the kernel booted without initrd and console arguments), so
/// the entry's `APPEND` and `IPAPPEND 1` go in the label that `DEFAULT` names.
fn howto_pxelinux() -> String {
    format!(
        "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT diskless\nLABEL diskless\n  KERNEL vmlinuz\n  \
         APPEND initrd=initrd.img {} root=/dev/nfs nfsroot={SERVER}:/export,ro,rsize=8192,posix\n  IPAPPEND 1\n",
        pxe::BASE_APPEND
    )
}

fn netboot_initrd() -> &'static Path {
    static INITRD: OnceLock<PathBuf> = OnceLock::new();
    INITRD.get_or_init(|| qemu_tests::build::build_initramfs(&["--profile", "netboot"]))
}

struct Outcome {
    run: VmRun,
    dhcpd_log: String,
    named_log: String,
}

impl Outcome {
    fn image(&self) -> ImageReport<'_> {
        ImageReport(&self.run.log)
    }
    fn log_path(&self) -> String {
        self.run.log.path().display().to_string()
    }
}

/// The lab's BIND on `address`: example.edu and its reverse zone, lab3-12's PTR record.
fn named_config(address: &str) -> NamedConfig {
    NamedConfig::new(&[address], "ns.example.edu").zone(DOMAIN, &[("ns", "A", address), (LAB_HOST, "A", LAB_IP)]).zone(
        &qemu_tests::dnsmasq::reverse_zone(pxe::SUBNET).unwrap(),
        &[(LAB_IP.rsplit('.').next().unwrap(), "PTR", &format!("{LAB_HOST}.{DOMAIN}."))],
    )
}

/// PXE-boots lab3-12 with the HOWTO's entry. `inform`: dhcpd authoritative (answers
/// DHCPINFORM); `dns`: where BIND listens; `image`: the root image directory.
fn boot(name: &str, inform: bool, dns: &str, image: &Path) -> Outcome {
    let mut rig = PxeRig::new(name).unwrap();
    rig.initrd(netboot_initrd()).unwrap();
    let cfg = rig.tftp_root().join("pxelinux.cfg/default");
    std::fs::write(&cfg, howto_pxelinux()).unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    if dns != SERVER {
        rig.netns().add_addr(BRIDGE, &format!("{dns}/24")).unwrap();
    }
    // TFTP only: no DHCP range or host, DNS off.
    let tftp = DnsmasqConfig::new(BRIDGE).dns_port(0).tftp(rig.tftp_root(), "pxelinux.0", SERVER);
    rig.start_dnsmasq(&tftp, "tftp").unwrap();
    // The servers drop before the rig (and its namespace): declared after it.
    let dhcp = DhcpdConfig::new(BRIDGE, "10.77.0.0", NETMASK)
        .authoritative(inform)
        .next_server(SERVER)
        .option(&format!("subnet-mask {NETMASK}"))
        .option(&format!("routers {SERVER}"))
        .option(&format!("domain-name-servers {SERVER}"))
        .option(&format!("domain-name \"{DOMAIN}\""))
        .host(LAB_HOST, LAB_MAC, LAB_IP, Some("pxelinux.0"));
    let dhcpd = Dhcpd::start(rig.netns(), &dhcp, name).unwrap();
    let named = Named::start(rig.netns(), &named_config(dns), name).unwrap();
    let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(image), name).unwrap();
    let tap = rig.tap().unwrap();
    let run = rig.vm(name).nic(Nic::tap("virtio-net-pci", LAB_MAC, &tap)).timeout(TIMEOUT).run().unwrap();
    Outcome { run, dhcpd_log: dhcpd.log_text(), named_log: named.log_text() }
}

fn vm_a() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| boot("howto-static-A-dhcpinform", true, SERVER, &image_dir("busybox")))
}

/// A copy of the busybox image with `networks/10.77.0.255/etc/resolv.conf` naming
/// [`SERVER2`]; removed when dropped.
fn image_with_resolv_conf() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("diskless-howto-image").tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", image_dir("busybox").display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "copying the busybox image: {status}");
    let resolv = dir.path().join(format!("diskless/networks/{}/etc/resolv.conf", pxe::BROADCAST));
    std::fs::write(&resolv, format!("# the lab's resolver\nsearch {DOMAIN}\nnameserver {SERVER2}\n")).unwrap();
    dir
}

fn vm_b() -> &'static Outcome {
    static RUN: OnceLock<Outcome> = OnceLock::new();
    RUN.get_or_init(|| {
        let image = image_with_resolv_conf();
        // nfs-ganesha refuses an export path through a symlink.
        boot("howto-static-B-image-resolv-conf", false, SERVER2, &image.path().canonicalize().unwrap())
    })
}

/// The image's init ran with lab3-12's name, domain, lab and host layers.
#[track_caller]
fn assert_named_with_layers(o: &Outcome) {
    let image = o.image();
    image.assert_done();
    assert_eq!(image.value("hostname"), LAB_HOST, "host name in the image ({})", o.log_path());
    assert_eq!(image.value("domainname"), DOMAIN, "domain name in the image ({})", o.log_path());
    assert_eq!(image.read("/etc/upto-lab"), "lab lab3", "lab layer applied ({})", o.log_path());
    assert_eq!(image.read("/etc/upto-host"), "host lab3-12", "host layer applied ({})", o.log_path());
    o.run.log.assert_line(&format!(r"diskless: host name {LAB_HOST}\.{DOMAIN} \(from reverse DNS\)"));
    o.run.log.assert_no_line(r"identity lost");
    o.run.log.assert_no_line(r"diskless: ERROR");
    o.run.assert_clean_exit();
    assert!(
        o.named_log.contains(&format!("{}.in-addr.arpa", LAB_IP.split('.').rev().collect::<Vec<_>>().join("."))),
        "BIND was asked for the PTR record:\n{}",
        o.named_log
    );
}

/// The lines of `network.dns_source` in boot.json as the image printed it (one JSON
/// line each, indentation stripped by the image's shell).
fn dns_source(o: &Outcome) -> Vec<String> {
    let json = o.image().boot_json();
    let at = json
        .find(r#""dns_source": {"#)
        .unwrap_or_else(|| panic!("no network.dns_source in boot.json ({}):\n{json}", o.log_path()));
    json[at..].lines().skip(1).map(str::trim).take_while(|l| !l.starts_with('}')).map(String::from).collect()
}

#[test]
fn howto_entry_gives_a_static_ip_without_dns_server() {
    let o = vm_a();
    let m = o.run.log.assert_line(r"ip=(\S+)");
    assert_eq!(&m[1], format!("{LAB_IP}:{SERVER}:{SERVER}:{NETMASK}"), "pxelinux IPAPPEND 1 ({})", o.log_path());
    o.run.log.assert_line(r"diskless: \S+: static address 10\.77\.0\.112/24 from ip=");
}

#[test]
fn dhcpinform_names_the_dns_server_and_reverse_dns_names_the_machine() {
    let o = vm_a();
    o.run.log.assert_line(r"diskless: \S+: DHCPINFORM for 10\.77\.0\.112 sent to 10\.77\.0\.1 \(try 1 of 3\)");
    o.run.log.assert_line(r"diskless: \S+: DNS servers 10\.77\.0\.1 from a DHCPINFORM answered by 10\.77\.0\.1\s*$");
    assert!(o.dhcpd_log.contains("DHCPINFORM from 10.77.0.112"), "dhcpd saw the INFORM:\n{}", o.dhcpd_log);
    assert_named_with_layers(o);
    assert_eq!(dns_source(o), [r#""kind": "dhcp_inform","#, r#""server": "10.77.0.1""#]);
}

#[test]
fn without_an_inform_answer_the_images_network_layer_resolv_conf_names_the_dns_server() {
    let o = vm_b();
    assert!(o.dhcpd_log.contains("not authoritative"), "dhcpd ignored the INFORM:\n{}", o.dhcpd_log);
    o.run.log.assert_line(r"DHCPINFORM on \S+: no DHCPACK after 3 tries");
    o.run.log.assert_line(
        r"diskless: \S+: DNS servers 10\.77\.0\.2 from the image's resolv\.conf /diskless/networks/10\.77\.0\.255/etc/resolv\.conf \(network layer\)",
    );
    assert_named_with_layers(o);
    assert_eq!(
        dns_source(o),
        [
            r#""kind": "image_resolv_conf","#,
            r#""path": "/diskless/networks/10.77.0.255/etc/resolv.conf","#,
            r#""layer": "network""#
        ]
    );
}
