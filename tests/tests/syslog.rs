//! QEMU tests of the clients' syslog (issue 12, points 3 and 6): a real rsyslogd in the
//! test's namespace receives a boot's log and inventory over UDP from the log server of
//! DHCP option 7; `diskless inventory` makes the fleet file from what rsyslogd wrote
//! (both its RFC 5424 and its default file format); `mkinitramfs --fleet` builds an
//! initrd with exactly the fleet's NIC drivers, and that initrd boots the same machine.
//! A machine with a NIC outside the fleet says so, naming the NIC, the module and the
//! fix, on the console and in the server's log, and its failing boot sends the failure
//! line and an inventory that names the stage.
//!
//! One lab segment (the PXE rig's namespace, dnsmasq, nfs-ganesha with the busybox
//! image, rsyslogd) serves three direct-kernel boots in a row:
//! 1. lab3-12 (e1000) with the default initrd;
//! 2. lab3-12 with the fleet initrd built from what boot 1 sent;
//! 3. lab3-12 with a second NIC (rtl8139, not in the fleet) and a root path that does
//!    not exist, with the fleet initrd.
//!
//! Logs: `target/qemu-logs/syslog-*` (consoles, `*.syslog-rfc5424.log`, `*.syslog.log`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use qemu_tests::build::{build_initramfs, release_binaries, scratch_file};
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig, SERVER};
use qemu_tests::rsyslog::Rsyslog;
use qemu_tests::vm::{Nic, VmRun};

const NAME: &str = "syslog-fleet";
const MAC: &str = "52:54:00:77:03:12";
const OTHER_MAC: &str = "52:54:00:77:03:13";
const TIMEOUT: Duration = Duration::from_secs(300);
/// The e1000 of QEMU: PCI 8086:100e.
const E1000_ID: &str = "8086:100e";

/// What the three boots produced.
struct Fleet {
    first: VmRun,
    /// rsyslogd's files after the first boot (RFC 5424, traditional).
    first_received: (String, String),
    fleet_file: String,
    fleet_file_from_traditional: String,
    inventory_output: String,
    default_initrd: PathBuf,
    fleet_initrd: PathBuf,
    second: VmRun,
    third: VmRun,
    /// rsyslogd's RFC 5424 file after the third boot.
    last_received: String,
}

fn diskless(args: &[&str]) -> Output {
    let bin = release_binaries().init.with_file_name("diskless");
    std::process::Command::new(&bin).args(args).output().expect("run diskless")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `diskless inventory FILE -o OUT`: the fleet file's text and the command's output.
fn inventory(log: &Path, stem: &str) -> (String, String) {
    let out = scratch_file(stem, "toml").unwrap();
    let o = diskless(&["inventory", &log.display().to_string(), "-o", &out.display().to_string()]);
    assert!(o.status.success(), "diskless inventory {}: {}", log.display(), text(&o));
    (std::fs::read_to_string(&out).unwrap(), text(&o))
}

/// Boot `initrd` directly on the rig with `nics` (QEMU model, MAC), each on a tap.
fn boot(rig: &mut PxeRig, name: &str, initrd: &Path, append: &str, nics: &[(&str, &str)]) -> VmRun {
    let mut vm = rig.direct_vm(&format!("{NAME}-{name}"), initrd, append).timeout(TIMEOUT);
    for (model, mac) in nics {
        vm = vm.nic(Nic::tap(model, mac, &rig.tap().unwrap()));
    }
    vm.run().unwrap()
}

fn fleet() -> &'static Fleet {
    static RUN: OnceLock<Fleet> = OnceLock::new();
    RUN.get_or_init(|| {
        let default_initrd = build_initramfs(&[]);
        let mut rig = PxeRig::new(NAME).unwrap();
        let syslog = Rsyslog::start(rig.netns(), SERVER, NAME).unwrap();
        let config = rig.dnsmasq_config().host(MAC, LAB_IP, LAB_HOST).option(&format!("option:log-server,{SERVER}"));
        rig.start_dnsmasq(&config, "dnsmasq").unwrap();
        let _nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir("busybox")), NAME).unwrap();

        let first = boot(&mut rig, "1-default-initrd", &default_initrd, "", &[("e1000", MAC)]);
        // rsyslogd writes asynchronously: the inventory's last message ends the boot's.
        syslog.wait_for("inventory/1 summary ", Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let first_received =
            (syslog.received(), std::fs::read_to_string(syslog.traditional_path()).unwrap_or_default());
        let (fleet_file, inventory_output) = inventory(syslog.rfc5424_path(), "fleet");
        let (fleet_file_from_traditional, _) = inventory(syslog.traditional_path(), "fleet-traditional");
        let fleet_path = scratch_file("fleet-used", "toml").unwrap();
        std::fs::write(&fleet_path, &fleet_file).unwrap();
        let fleet_initrd = build_initramfs(&["--fleet", &fleet_path.display().to_string()]);

        let second = boot(&mut rig, "2-fleet-initrd", &fleet_initrd, "", &[("e1000", MAC)]);
        let third = boot(
            &mut rig,
            "3-nic-outside-the-fleet",
            &fleet_initrd,
            "root=nfs:10.77.0.1:/nope diskless.reboot_delay=0",
            &[("e1000", MAC), ("rtl8139", OTHER_MAC)],
        );
        syslog.wait_for("result=failed", Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Fleet {
            first,
            first_received,
            fleet_file,
            fleet_file_from_traditional,
            inventory_output,
            default_initrd,
            fleet_initrd,
            second,
            third,
            last_received: syslog.received(),
        }
    })
}

/// The boot's own console lines (`diskless: ...`), without the prefix.
fn boot_lines(run: &VmRun) -> Vec<String> {
    run.log.lines().filter_map(|l| l.trim_end().strip_prefix("diskless: ")).map(str::to_string).collect()
}

#[test]
fn rsyslog_receives_every_line_of_the_boot_from_the_server_of_option_7() {
    let f = fleet();
    ImageReport(&f.first.log).assert_done();
    f.first.log.assert_line(r"^diskless: sending the boot log to syslog 10\.77\.0\.1:514 \(from DHCP option 7\)");
    let (rfc5424, traditional) = &f.first_received;
    // Every console line, those from before the lease included, reached the server.
    let lines = boot_lines(&f.first);
    assert!(lines.len() > 20, "{}", f.first.log.tail(40));
    for line in &lines {
        assert!(
            rfc5424.lines().any(|r| r.ends_with(&format!(" diskless - log - {line}"))),
            "{line:?} not received; see {}",
            f.first.log.path().display()
        );
    }
    // RFC 5424 as the boot wrote it: the lease's address until the host name is known,
    // the host name after; rsyslog put the time in.
    let first = rfc5424.lines().find(|l| l.contains(" diskless - log - ")).unwrap();
    assert!(first.starts_with("<31>1 20") && first.contains(&format!(" {LAB_IP} diskless - log - ")), "{first}");
    assert!(
        rfc5424.lines().any(|l| l.contains(" lab3-12.example.edu diskless - log - stage root done in ")),
        "{rfc5424}"
    );
    assert!(
        rfc5424.lines().any(|l| l.contains(&format!(
            " diskless - inventory - inventory/1 summary machine={MAC} host=lab3-12.example.edu result=booted \
             stage=handoff "
        ))),
        "{rfc5424}"
    );
    assert!(traditional.lines().any(|l| l.contains(" diskless stage early done in ")), "{traditional}");
}

#[test]
fn diskless_inventory_makes_the_fleet_file_from_either_rsyslog_format() {
    let f = fleet();
    assert_eq!(f.fleet_file, f.fleet_file_from_traditional, "the same fleet from both of rsyslog's formats");
    let fleet = &f.fleet_file;
    assert!(fleet.contains("version = 1\n"), "{fleet}");
    assert_eq!(fleet.matches("[[machine]]").count(), 1, "{fleet}");
    assert!(fleet.contains(&format!("[[machine]]\nname = \"lab3-12.example.edu\"\nmac = \"{MAC}\"\n")), "{fleet}");
    assert_eq!(fleet.matches("[[machine.nic]]").count(), 1, "{fleet}");
    for want in [
        format!("mac = \"{MAC}\""),
        "bus = \"pci\"".to_string(),
        format!("id = \"{E1000_ID}\""),
        "modalias = \"pci:v00008086d0000100Esv".to_string(),
        "module = \"e1000\"".to_string(),
    ] {
        assert!(fleet.contains(&want), "{want} missing: {fleet}");
    }
    assert!(f.inventory_output.starts_with("1 machines, NIC modules e1000: written to "), "{}", f.inventory_output);
}

#[test]
fn the_fleet_initrd_has_only_the_fleets_nic_driver_and_boots_the_same_machine() {
    let f = fleet();
    let listing = |initrd: &Path| {
        let o = std::process::Command::new(&release_binaries().mkinitramfs)
            .arg("list")
            .arg(initrd)
            .output()
            .expect("mkinitramfs list");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let fleet_list = listing(&f.fleet_initrd);
    let nic_drivers = |list: &str| -> Vec<String> {
        list.lines()
            .filter(|l| l.contains("/kernel/drivers/net/ethernet/") || l.contains("/kernel/drivers/net/usb/"))
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .filter(|path| path.contains(".ko"))
            .collect()
    };
    let fleet_nics = nic_drivers(&fleet_list);
    assert!(
        fleet_nics.len() == 1 && fleet_nics[0].ends_with("/e1000.ko"),
        "the fleet's NIC driver only: {fleet_nics:?}"
    );
    assert!(fleet_list.contains("diskless.fleet"), "{fleet_list}");
    assert!(nic_drivers(&listing(&f.default_initrd)).len() > 50, "the default initrd has the lab's NIC drivers");
    let (default_size, fleet_size) =
        (std::fs::metadata(&f.default_initrd).unwrap().len(), std::fs::metadata(&f.fleet_initrd).unwrap().len());
    eprintln!(
        "initrd sizes: default {default_size} bytes, fleet {fleet_size} bytes ({:.2}x of the default)",
        fleet_size as f64 / default_size as f64
    );
    assert!(fleet_size < default_size, "{fleet_size} >= {default_size}");

    ImageReport(&f.second.log).assert_done();
    f.second.log.assert_line(&format!(r"^diskless: interface (\S+) {MAC} driver e1000"));
    f.second.log.assert_no_line(r"^diskless: no driver for ");
}

#[test]
fn a_nic_outside_the_fleet_is_named_with_its_module_and_the_fix_on_the_console_and_the_syslog_server() {
    let f = fleet();
    let line = f.third.log.assert_line(concat!(
        r"^diskless: (no driver for pci device \S+ modalias pci:v000010ECd00008139\S* .*; ",
        r"this NIC is not in the fleet this initrd was built for \(.*fleet-used.*\.toml \(1 machines\)\): ",
        r"rebuild it with mkinitramfs --fleet \S+ --add-modules 8139(cp|too)(,8139(cp|too))?; ",
        r"once this machine booted with syslog on, diskless inventory adds it to the fleet)\s*$",
    ));
    let received = &f.last_received;
    assert!(received.lines().any(|l| l.ends_with(&format!(" diskless - log - {}", &line[1]))), "{received}");
    // The failing boot's failure line and its inventory reach the server too.
    let error = f.third.log.assert_line(r"^diskless: (ERROR: mounting the NFS root 10\.77\.0\.1:/nope.*?)\s*$");
    assert!(received.lines().any(|l| l.starts_with("<27>1 ") && l.ends_with(&error[1])), "{received}");
    assert!(
        received
            .lines()
            .any(|l| l.contains(&format!("inventory/1 summary machine={MAC} "))
                && l.contains(" result=failed stage=root ")),
        "{received}"
    );
    assert!(
        received.lines().any(|l| l.contains("inventory/1 nic ")
            && l.contains("modalias=pci:v000010ECd00008139")
            && l.contains(" driver= module=8139")),
        "the NIC outside the fleet is in the inventory with its module: {received}"
    );
}
