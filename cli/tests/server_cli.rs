//! `diskless server render` and `check` end to end, on a temporary directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLE: &str = include_str!("../../docs/lab.example.toml");
const KERNEL: &str = "6.1.0-57-amd64";

fn diskless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diskless")).args(args).output().expect("run diskless")
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The example lab with its exports and loaders under `dir`; returns the lab file.
fn lab_in(dir: &Path) -> PathBuf {
    for name in ["pxelinux.0", "ldlinux.c32", "grubnetx64.efi"] {
        fs::write(dir.join(name), format!("loader {name}")).unwrap();
    }
    for image in ["debian", "gentoo"] {
        let boot = dir.join("srv").join(image).join("boot");
        fs::create_dir_all(&boot).unwrap();
        fs::write(boot.join(format!("vmlinuz-{KERNEL}")), "kernel").unwrap();
    }
    let loaders = format!(
        "[loaders]\npxelinux = \"{0}/pxelinux.0\"\nldlinux = \"{0}/ldlinux.c32\"\nuefi = \"{0}/grubnetx64.efi\"\n\n",
        dir.display()
    );
    let text = EXAMPLE.replace("/srv/diskless/", &format!("{}/srv/", dir.display())).replacen(
        "[[subnet]]",
        &format!("{loaders}[[subnet]]"),
        1,
    );
    let lab = dir.join("lab.toml");
    fs::write(&lab, text).unwrap();
    lab
}

/// Every file and link under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let key = path.strip_prefix(dir).unwrap().to_path_buf();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_symlink() {
                files.insert(key, fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes());
            } else {
                files.insert(key, fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn initrd_for(path: &Path, version: &str) {
    let mut archive = initramfs::Archive::with_mtime(0);
    archive.add_file(&modules_db::db_path(version), 0o644, b"db".to_vec()).unwrap();
    fs::write(path, archive.to_bytes()).unwrap();
}

#[test]
fn render_writes_the_same_files_twice_and_check_finds_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_in(dir.path());
    let root = dir.path().join("out");
    let (lab, root_s) = (lab.to_str().unwrap(), root.to_str().unwrap());
    let o = diskless(&["server", "render", "--lab", lab, "--out", root_s]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("  tftproot/debian/vmlinuz -> vmlinuz-6.1.0-57-amd64\n"), "{text}");
    assert!(text.contains("todo: image \"debian\": build the initrd: mkinitramfs -b "), "{text}");
    let first = snapshot(&root);
    assert_eq!(first[Path::new("tftproot/debian/vmlinuz-6.1.0-57-amd64")], b"kernel");
    assert!(first.contains_key(Path::new("tftproot/debian/pxelinux.cfg/01-52-54-00-77-03-12")));
    let o = diskless(&["server", "render", "--lab", lab, "--out", root_s]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(snapshot(&root), first, "rendering again changed files");

    let o = diskless(&["server", "check", "--lab", lab, "--root", root_s]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains("problem: image \"debian\": ") && text.contains("initrd.img is missing; build it: mkinitramfs")
    );
    assert!(text.ends_with("\n2 problem(s)\n"), "{text}");

    for (image, version) in [("debian", KERNEL), ("gentoo", "6.1.0-56-amd64")] {
        initrd_for(&root.join(format!("tftproot/{image}/initrd.img-{KERNEL}")), version);
    }
    let o = diskless(&["server", "check", "--lab", lab, "--root", root_s]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("initrd.img was built for 6.1.0-56-amd64 but the kernel is 6.1.0-57-amd64"),
        "{}",
        out(&o)
    );
    initrd_for(&root.join(format!("tftproot/gentoo/initrd.img-{KERNEL}")), KERNEL);
    let o = diskless(&["server", "check", "--lab", lab, "--root", root_s]);
    assert_eq!((o.status.code(), out(&o)), (Some(0), "0 problem(s)\n".to_string()));

    let conf = root.join("dnsmasq.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, text.replace("host-record=maint.example.edu,maint,10.77.0.5\n", "")).unwrap();
    let o = diskless(&["server", "check", "--lab", lab, "--root", root_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("problem: host \"maint\": no PTR record for 10.77.0.5 in "), "{}", out(&o));
}

#[test]
fn isc_and_bind_files_are_rendered_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_in(dir.path());
    let root = dir.path().join("out");
    let args = ["server", "render", "--lab", lab.to_str().unwrap(), "--out", root.to_str().unwrap()];
    let o = diskless(&[&args[..], &["--dhcp", "isc", "--dns", "bind"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    for file in ["dhcpd.conf", "named.conf", "bind/db.example.edu", "bind/db.0.77.10.in-addr.arpa", "exports"] {
        assert!(root.join(file).is_file(), "{file}");
    }
    let o = diskless(&[&args[..], &["--dhcp", "kea"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}

#[test]
fn a_bad_lab_file_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_in(dir.path());
    let text = fs::read_to_string(&lab).unwrap();
    fs::write(&lab, text.replace("name = \"maint\"", "name = \"maint\"\nmack = \"x\"")).unwrap();
    let o = diskless(&["server", "check", "--lab", lab.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("unknown field `mack`") && out(&o).contains("lab.toml"), "{}", out(&o));
    fs::write(&lab, text.replace("10.77.0.113", "10.77.0.112")).unwrap();
    let o = diskless(&["server", "check", "--lab", lab.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("problem: host \"lab3-13\": address 10.77.0.112 is also host \"lab3-12\"'s"),
        "{}",
        out(&o)
    );
    let o = diskless(&["server", "check", "--lab", dir.path().join("absent.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("cannot read the lab file"), "{}", out(&o));
}

#[test]
fn check_live_asks_the_subnets_dns_servers_and_names_one_that_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_in(dir.path());
    let text = fs::read_to_string(&lab).unwrap();
    fs::write(&lab, text.replace("dns = [\"10.77.0.1\"]", "dns = [\"127.0.0.1\"]")).unwrap();
    // A DNS server that refuses every question at once.
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = server.recv_from(&mut buf) {
            buf[2] |= 0x80; // a response
            buf[3] = (buf[3] & 0xf0) | 5; // REFUSED
            let _ = server.send_to(&buf[..len], from);
        }
    });
    let o = diskless(&["server", "check", "--lab", lab.to_str().unwrap(), "--live", "--dns-port", &port]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "problem: host \"maint\": the DNS server gave no answer to PTR 10.77.0.5: reverse lookup of 10.77.0.5: no usable answer from 127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(text.ends_with("\n6 problem(s)\n"), "{text}");
}

#[test]
fn kernel_switches_both_links_builds_the_initrd_with_mkinitramfs_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_in(dir.path());
    let root = dir.path().join("out");
    let (lab, root_s) = (lab.to_str().unwrap(), root.to_str().unwrap());
    let o = diskless(&["server", "render", "--lab", lab, "--out", root_s]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let tftp = root.join("tftproot/debian");
    initrd_for(&tftp.join(format!("initrd.img-{KERNEL}")), KERNEL);

    const NEW: &str = "6.1.0-58-amd64";
    let export = dir.path().join("srv/debian");
    fs::write(export.join(format!("boot/vmlinuz-{NEW}")), "new kernel").unwrap();
    let o = diskless(&["server", "kernel", "--lab", lab, "--root", root_s, "debian", NEW]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("kernel {NEW} has no modules at {}/lib/modules/{NEW}", export.display())),
        "{}",
        out(&o)
    );
    assert_eq!(fs::read_link(tftp.join("vmlinuz")).unwrap(), Path::new(&format!("vmlinuz-{KERNEL}")));

    fs::create_dir_all(export.join(format!("lib/modules/{NEW}"))).unwrap();
    let init = dir.path().join("init");
    // An x86-64 ELF header: mkinitramfs checks the init's machine against the kernel's.
    fs::write(&init, modules_db::elf::ARCHITECTURES[0].0.identity_header()).unwrap();
    let init_s = init.to_str().unwrap();
    let o = diskless(&["server", "kernel", "--lab", lab, "--root", root_s, "--init", init_s, "debian", NEW]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("built {}/initrd.img-{NEW} with mkinitramfs\n", tftp.display())), "{text}");
    assert!(
        text.contains(&format!("image \"debian\": vmlinuz -> vmlinuz-{NEW}, initrd.img -> initrd.img-{NEW}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("debian {KERNEL}\n")), "the rollback command: {text}");
    assert_eq!(fs::read_to_string(tftp.join("vmlinuz")).unwrap(), "new kernel");
    assert_eq!(fs::read_link(tftp.join("vmlinuz.previous")).unwrap(), Path::new(&format!("vmlinuz-{KERNEL}")));
    assert_eq!(fs::read_link(tftp.join("initrd.img.previous")).unwrap(), Path::new(&format!("initrd.img-{KERNEL}")));
    // The built initrd is mkinitramfs's: its archive records the new kernel.
    let versions = mkinitramfs::kernel_versions(&tftp.join("initrd.img")).unwrap();
    assert!(versions.contains(NEW), "{versions:?}");

    // Back, by the command the switch printed.
    let o = diskless(&["server", "kernel", "--lab", lab, "--root", root_s, "debian", KERNEL]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert_eq!(fs::read_link(tftp.join("initrd.img")).unwrap(), Path::new(&format!("initrd.img-{KERNEL}")));
    let text = out(&diskless(&["server", "check", "--lab", lab, "--root", root_s]));
    assert!(!text.contains("tftproot/debian/vmlinuz") && !text.contains("tftproot/debian/initrd"), "{text}");
}
