//! QEMU test of `diskless server render` (issue 11, 5a): dnsmasq runs from the rendered
//! `dnsmasq.conf` with no edits (`dnsmasq --conf-file=OUT/dnsmasq.conf`, TFTP from
//! `OUT/tftproot`), and a PXE client (SeaBIOS + iPXE ROM, then the rendered
//! `tftproot/busybox/pxelinux.0` and its configuration) boots the busybox image over
//! NFS with the host name from the rendered PTR record. Before the boot `diskless server
//! check --root OUT` passes (the initrd is the real mkinitramfs output); during it,
//! `check --live` passes against the running dnsmasq, and fails naming the host once a
//! dnsmasq without that host's records answers.
//!
//! The NFS server is the rig's nfs-ganesha exporting the image at its own path, as the
//! rendered ganesha.conf does. Logs: `target/qemu-logs/lab-server-*`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use qemu_tests::build::{build_initramfs, release_binaries};
use qemu_tests::kernel::Kernel;
use qemu_tests::netns::{Listening, Netns};
use qemu_tests::nfs::{ImageReport, NfsExport, NfsServer, image_dir};
use qemu_tests::paths::log_dir;
use qemu_tests::process::ChildGuard;
use qemu_tests::pxe::BASE_APPEND;
use qemu_tests::vm::{Nic, Vm};

const NAME: &str = "lab-server-dnsmasq";
const MAC: &str = "52:54:00:77:03:12";
const BRIDGE: &str = "br0";

fn diskless(args: &[&str], ns: Option<&Netns>) -> Output {
    let bin = release_binaries().init.with_file_name("diskless");
    let mut cmd = match ns {
        Some(ns) => ns.command(&bin),
        None => Command::new(&bin),
    };
    cmd.args(args).output().expect("run diskless")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn lab_file(kernel: &str, export: &Path) -> String {
    format!(
        r#"[server]
address = "10.77.0.1"
interface = "{BRIDGE}"

[[subnet]]
network = "10.77.0.0/24"
router = "10.77.0.1"
domain = "example.edu"
dynamic = ["10.77.0.150", "10.77.0.199"]

[[image]]
name = "busybox"
export = "{export}"
kernel = "{kernel}"
params = "{BASE_APPEND}"
nfs_options = "vers=3"

[[host]]
name = "lab3-12"
mac = "{MAC}"
address = "10.77.0.112"
image = "busybox"
"#,
        export = export.display()
    )
}

/// dnsmasq from `conf` as an administrator runs it; its lease and PID files and its
/// log in `state` (command-line options, the file stays as rendered).
fn start_dnsmasq(ns: &Netns, conf: &Path, state: &Path, log: &Path) -> ChildGuard {
    let mut cmd = ns.command("dnsmasq");
    cmd.arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", conf.display()))
        .arg(format!("--dhcp-leasefile={}", state.join("leases").display()))
        .arg(format!("--pid-file={}", state.join("dnsmasq.pid").display()))
        .arg(format!("--log-facility={}", log.display()))
        .arg("--log-dhcp")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn(cmd, format!("dnsmasq in namespace {}", ns.name())).unwrap();
    let want = Listening { ss_flags: "-Hlnu", ports: &[53, 67, 69], what: "dnsmasq listening", log };
    ns.wait_listening(&mut child, &want, Duration::from_secs(10), |status| {
        panic!("dnsmasq exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default())
    })
    .unwrap();
    child
}

#[test]
fn a_pxe_client_boots_from_dnsmasq_running_the_rendered_files_and_check_live_names_a_lost_ptr() {
    let kernel = Kernel::cached();
    let image = image_dir("busybox");
    let ns = Netns::new("dlls").unwrap();
    ns.add_bridge(BRIDGE, &["10.77.0.1/24"]).unwrap();
    ns.add_tap("tap0", BRIDGE).unwrap();
    let dir = tempfile::Builder::new().prefix("diskless-lab").tempdir().unwrap();
    // dnsmasq's TFTP runs unprivileged: the tree must be reachable by anyone.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dir.path().join("out");
    let lab = dir.path().join("lab.toml");
    std::fs::write(&lab, lab_file(&kernel.version, &image)).unwrap();
    let (lab_s, out_s) = (lab.to_str().unwrap(), out.to_str().unwrap());

    let o = diskless(&["server", "render", "--lab", lab_s, "--out", out_s], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let served = out.join("tftproot/busybox");
    for (from, name) in [
        (kernel.vmlinuz.clone(), format!("vmlinuz-{}", kernel.version)),
        (build_initramfs(&["--profile", "netboot"]), format!("initrd.img-{}", kernel.version)),
    ] {
        std::fs::copy(&from, served.join(&name)).unwrap();
        std::fs::set_permissions(served.join(&name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let o = diskless(&["server", "check", "--lab", lab_s, "--root", out_s], None);
    assert_eq!((o.status.code(), text(&o)), (Some(0), "0 problem(s)\n".to_string()));

    let logs = log_dir().unwrap();
    let log = logs.join(format!("{NAME}.dnsmasq.log"));
    let _ = std::fs::remove_file(&log);
    let state = tempfile::tempdir().unwrap();
    let mut dnsmasq = start_dnsmasq(&ns, &out.join("dnsmasq.conf"), state.path(), &log);
    let export = NfsExport { pseudo: image.display().to_string(), ..NfsExport::new(&image) };
    let _nfs = NfsServer::start(&ns, &export, NAME).unwrap();

    let o = diskless(&["server", "check", "--lab", lab_s, "--root", out_s, "--live"], Some(&ns));
    assert_eq!((o.status.code(), text(&o)), (Some(0), "0 problem(s)\n".to_string()));

    let run = Vm::new(NAME)
        .netns(&ns)
        .pxe()
        .nic(Nic::tap("virtio-net-pci", MAC, "tap0"))
        .timeout(Duration::from_secs(300))
        .run()
        .unwrap();
    let report = ImageReport(&run.log);
    report.assert_done();
    assert_eq!(report.value("hostname"), "lab3-12", "{}", run.log.path().display());
    assert_eq!(report.value("domainname"), "example.edu", "{}", run.log.path().display());
    run.log.assert_line(r"pxelinux|PXELINUX");
    run.log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();
    let root = report.mount("/");
    assert!(root.starts_with(&format!("10.77.0.1:{} / nfs ro,", image.display())), "root mount {root:?}");

    // The same server without lab3-12's records: --live names the host.
    dnsmasq.kill();
    let conf = std::fs::read_to_string(out.join("dnsmasq.conf")).unwrap();
    let without: String = conf.lines().filter(|l| !l.contains("lab3-12")).map(|l| format!("{l}\n")).collect();
    // A fresh lease file too: dnsmasq publishes the names of its leases in DNS.
    let fresh = tempfile::tempdir().unwrap();
    let edited = fresh.path().join("without-lab3-12.conf");
    std::fs::write(&edited, without).unwrap();
    let _dnsmasq = start_dnsmasq(&ns, &edited, fresh.path(), &logs.join(format!("{NAME}-no-ptr.dnsmasq.log")));
    let o = diskless(&["server", "check", "--lab", lab_s, "--live"], Some(&ns));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("problem: host \"lab3-12\": no PTR record for 10.77.0.112 in the answers of 10.77.0.1:53"),
        "{}",
        text(&o)
    );
}
