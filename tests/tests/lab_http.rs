//! QEMU tests of `server.http` in the lab file (issue 11, 6): a BIOS client gets
//! `lpxelinux.0` over TFTP and a UEFI client (OVMF's own PXE) `grubnetx64.efi`,
//! `grub.cfg` and GRUB's `http.mod`; both fetch kernel and initrd from nginx running the
//! rendered `nginx.conf`: nginx's access log has both, dnsmasq's TFTP log neither. The
//! servers are `qemu_tests::lab::LabServer`, started from `render`'s files only. Logs:
//! `target/qemu-logs/lab-server-http-*`.

use std::time::Duration;

use qemu_tests::lab::{HTTP_URL, LabServer, LabSpec};
use qemu_tests::nfs::ImageReport;
use qemu_tests::vm::Firmware;

#[test]
fn with_server_http_a_bios_client_gets_only_lpxelinux_over_tftp_and_kernel_and_initrd_from_nginx() {
    assert_boots_over_http("lab-server-http-bios", Firmware::Bios, &["busybox/lpxelinux.0", "busybox/ldlinux.c32"]);
}

#[test]
fn with_server_http_a_uefi_client_gets_only_grub_over_tftp_and_kernel_and_initrd_from_nginx() {
    assert_boots_over_http("lab-server-http-uefi", Firmware::Uefi, &["busybox/grubnetx64.efi", "grub/grub.cfg"]);
}

/// A client with `firmware` of a lab with server.http boots its image with its name;
/// nginx's access log has kernel and initrd, dnsmasq's TFTP sent `loader` files only.
fn assert_boots_over_http(name: &str, firmware: Firmware, loader: &[&str]) {
    let lab = LabServer::start(name, &LabSpec { http: true, ..LabSpec::new(&["bios", "uefi"]) }).unwrap();
    let run = lab.client(name, firmware).timeout(Duration::from_secs(300)).run().unwrap();
    let report = ImageReport(&run.log);
    report.assert_done();
    assert_eq!(report.value("hostname"), "lab3-12", "{}", run.log.path().display());
    run.log.assert_no_line(r"diskless: ERROR");
    run.assert_clean_exit();

    let nginx = lab.nginx.as_ref().expect("an http lab runs nginx");
    let access = nginx.access_text();
    for file in ["vmlinuz", "initrd.img"] {
        let request = format!("\"GET /diskless/busybox/{file} HTTP/1.0\" 200 ");
        let request11 = request.replace("HTTP/1.0", "HTTP/1.1");
        assert!(
            access.lines().any(|l| l.starts_with("10.77.0.112 ") && (l.contains(&request) || l.contains(&request11))),
            "{file} not sent by nginx to 10.77.0.112; {}:\n{access}",
            nginx.access_log().display()
        );
    }
    let sent = lab.tftp_sent();
    for file in loader {
        assert!(sent.iter().any(|s| s == file), "TFTP sent {sent:?}, not {file}; see {}", lab.dnsmasq_log.display());
    }
    let big: Vec<&String> = sent.iter().filter(|f| f.contains("vmlinuz") || f.contains("initrd")).collect();
    assert!(big.is_empty(), "kernel or initrd went over TFTP: {big:?}; see {}", lab.dnsmasq_log.display());
    assert!(HTTP_URL.ends_with("/diskless"), "the requests above are under the lab's URL path");
}
