use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::check;
use super::kernel;
use super::render::{self, Content, Dhcp, Dns, Options};
use super::*;

pub(crate) const EXAMPLE: &str = include_str!("../../../docs/lab.example.toml");

/// The example lab with its loaders in `dir` (made there as small files; the signed
/// ones as PE files with a signature table).
pub(crate) fn example_in(dir: &Path) -> Lab {
    let lab = Lab::parse(&example_text_in(dir, "")).unwrap();
    assert_eq!(lab.problems, []);
    lab
}

/// [`example_in`] with `server` lines added to `[server]`.
pub(crate) fn example_with(dir: &Path, server: &str) -> Lab {
    let lab = Lab::parse(&example_text_in(dir, server)).unwrap();
    assert_eq!(lab.problems, []);
    lab
}

fn example_text_in(dir: &Path, server: &str) -> String {
    for name in
        ["pxelinux.0", "lpxelinux.0", "ldlinux.c32", "grubnetx64.efi", "http.mod", "grubnetaa64.efi", "grubnetppc.elf"]
    {
        fs::write(dir.join(name), format!("loader {name}")).unwrap();
    }
    for name in ["shimx64.efi.signed", "grubnetx64.efi.signed"] {
        fs::write(dir.join(name), pe(true)).unwrap();
    }
    let loaders = format!(
        "[loaders]\npxelinux = \"{0}/pxelinux.0\"\nlpxelinux = \"{0}/lpxelinux.0\"\nldlinux = \"{0}/ldlinux.c32\"\n\
         uefi = \"{0}/grubnetx64.efi\"\nuefi_http = \"{0}/http.mod\"\nshim = \"{0}/shimx64.efi.signed\"\nuefi_signed = \"{0}/grubnetx64.efi.signed\"\n\
         uefi_arm64 = \"{0}/grubnetaa64.efi\"\nopenfirmware = \"{0}/grubnetppc.elf\"\n",
        dir.display()
    );
    EXAMPLE.replacen("[[subnet]]", &format!("{loaders}\n[[subnet]]"), 1).replacen(
        "[server]\n",
        &format!("[server]\n{server}"),
        1,
    )
}

/// The example lab with image "debian" served with `secure_boot = true`.
fn secure_example_in(dir: &Path) -> Lab {
    let text = example_text_in(dir, "")
        .replace("maintenance = \"10.77.0.5\"", "maintenance = \"10.77.0.5\"\nsecure_boot = true");
    let lab = Lab::parse(&text).unwrap();
    assert_eq!(lab.problems, []);
    assert!(lab.image("debian").unwrap().secure_boot);
    lab
}

/// A minimal PE32+ file: its certificate table (data directory 4) holds a PKCS#7
/// WIN_CERTIFICATE when `signed`, else nothing.
fn pe(signed: bool) -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[..2].copy_from_slice(b"MZ");
    b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    b[0x80..0x84].copy_from_slice(b"PE\0\0");
    let optional = 0x98;
    b[optional..optional + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    b[optional + 108..optional + 112].copy_from_slice(&16u32.to_le_bytes());
    if signed {
        let entry = optional + 112 + 4 * 8;
        b[entry..entry + 4].copy_from_slice(&0x180u32.to_le_bytes());
        b[entry + 4..entry + 8].copy_from_slice(&0x10u32.to_le_bytes());
        b[0x180..0x184].copy_from_slice(&0x10u32.to_le_bytes());
        b[0x184..0x186].copy_from_slice(&0x0200u16.to_le_bytes());
        b[0x186..0x188].copy_from_slice(&2u16.to_le_bytes());
    }
    b
}

fn problems_of(text: &str) -> Vec<String> {
    Lab::parse(text).unwrap().problems.iter().map(ToString::to_string).collect()
}

/// The example with `hosts` appended.
fn with(hosts: &str) -> String {
    format!("{EXAMPLE}\n{hosts}")
}

#[test]
fn the_example_lab_parses_and_its_groups_give_defaults() {
    let lab = Lab::parse(EXAMPLE).unwrap();
    assert_eq!(lab.problems, []);
    let names: Vec<&str> = lab.hosts.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["lab3-12", "lab3-13", "maint"]);
    assert_eq!((lab.hosts[0].image.as_str(), lab.hosts[0].params.as_str()), ("debian", "diskless.mode=overlay"));
    assert_eq!(lab.hosts[1].params, "diskless.debug", "the host's own params replace the group's");
    assert_eq!((lab.hosts[2].image.as_str(), lab.hosts[2].params.as_str()), ("gentoo", ""));
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let e = Lab::parse(&EXAMPLE.replace("name = \"lab3-12\"", "name = \"lab3-12\"\ncolour = \"red\"")).unwrap_err();
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    let e = Lab::parse(&EXAMPLE.replace("[server]", "[server]\nadress = \"1.2.3.4\"")).unwrap_err();
    assert!(e.to_string().contains("adress"), "{e}");
}

#[test]
fn bad_values_are_errors_naming_the_key_and_the_form() {
    let e = Lab::parse(&EXAMPLE.replace("52:54:00:77:03:12", "52:54:00:77:03")).unwrap_err().to_string();
    assert!(e.contains("mac = \"52:54:00:77:03\"") && e.contains("not a MAC address; write six hex bytes"), "{e}");
    let e = Lab::parse(&EXAMPLE.replace("10.77.0.112", "10.77.0.312")).unwrap_err().to_string();
    assert!(e.contains("address = \"10.77.0.312\"") && e.contains("not an IPv4 address"), "{e}");
    let e = Lab::parse(&EXAMPLE.replace("10.77.0.0/24", "10.77.0.1/24")).unwrap_err().to_string();
    assert!(e.contains("network = ") && e.contains("the network is \"10.77.0.0/24\""), "{e}");
    let e = Lab::parse(&EXAMPLE.replace("[\"bios\", \"uefi\"]", "[\"bios\", \"efi\"]")).unwrap_err().to_string();
    assert!(e.contains("firmware") && e.contains("unknown variant `efi`") && e.contains("`uefi`"), "{e}");
}

#[test]
fn duplicate_names_macs_and_addresses_are_named_with_both_hosts() {
    let p = problems_of(&with(
        "[[host]]\nname = \"lab3-12\"\nmac = \"52:54:00:77:03:12\"\naddress = \"10.77.0.113\"\nimage = \"debian\"\n",
    ));
    assert_eq!(
        p,
        [
            "host \"lab3-12\" is defined twice; give each host its own name",
            "host \"lab3-12\": mac 52:54:00:77:03:12 is also host \"lab3-12\"'s; give each machine its own MAC",
            "host \"lab3-12\": address 10.77.0.113 is also host \"lab3-13\"'s; give each machine its own address",
        ]
    );
    let p = problems_of(&with(
        "[[host]]\nname = \"x\"\nmac = \"52:54:00:00:00:01\"\naddress = \"10.77.0.1\"\nimage = \"debian\"\n",
    ));
    assert_eq!(p, ["host \"x\": address 10.77.0.1 is also the server's (server)'s; give each machine its own address"]);
    let p = problems_of(&EXAMPLE.replace("name = \"gentoo\"", "name = \"debian\""));
    assert!(p.contains(&"image \"debian\" is defined twice; give each image its own name".to_string()), "{p:?}");
}

#[test]
fn an_address_outside_every_subnet_or_inside_the_dynamic_range_is_refused() {
    let p = problems_of(&EXAMPLE.replace("10.77.0.112", "10.78.0.112"));
    assert_eq!(
        p,
        [
            "host \"lab3-12\": address 10.78.0.112 is in no [[subnet]]; give an address inside one of \"10.77.0.0/24\", or add the subnet"
        ]
    );
    let p = problems_of(&EXAMPLE.replace("10.77.0.112", "10.77.0.150"));
    assert_eq!(
        p,
        [
            "host \"lab3-12\": address 10.77.0.150 is inside subnet 10.77.0.0/24's dynamic range 10.77.0.150-10.77.0.199; \
             give a fixed address outside it, or shrink dynamic"
        ]
    );
    let p = problems_of(&EXAMPLE.replace("\"10.77.0.199\"]", "\"10.77.1.9\"]"));
    assert!(p[0].starts_with("subnet 10.77.0.0/24: dynamic = [\"10.77.0.150\", \"10.77.1.9\"] is not"), "{p:?}");
}

#[test]
fn unknown_images_and_groups_and_hostless_images_are_named() {
    let p = problems_of(&EXAMPLE.replace("image = \"gentoo\"", "image = \"gento\""));
    assert_eq!(p, ["host \"maint\": image = \"gento\": no [[image]] has that name; use one of \"debian\", \"gentoo\""]);
    let p = problems_of(&EXAMPLE.replace("group = \"lab3\"\nparams", "group = \"lab4\"\nparams"));
    assert_eq!(
        p,
        [
            "host \"lab3-13\": group = \"lab4\": no [[group]] has that name; use one of \"lab3\"",
            "host \"lab3-13\": no image; give image = \"NAME\" on the host or on its group",
        ]
    );
    let p = problems_of(&EXAMPLE.replace("name = \"maint\"", "name = \"maint_1\""));
    assert!(p[0].starts_with("host \"maint_1\": name is not a DNS label"), "{p:?}");
}

fn render_example(dir: &Path, options: Options) -> (Lab, render::Rendered) {
    let lab = example_in(dir);
    let out = dir.join("out");
    let rendered = render::render(&lab, options, &out).unwrap();
    (lab, rendered)
}

fn text<'a>(r: &'a render::Rendered, path: &str) -> &'a str {
    match r.files.get(Path::new(path)) {
        Some(Content::Text(text)) => text,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for options in [Options::default(), Options { dhcp: Dhcp::Isc, dns: Dns::Bind }] {
        let (lab, first) = render_example(dir.path(), options);
        let second = render::render(&lab, options, &dir.path().join("out")).unwrap();
        assert_eq!(first, second);
        // Hosts in another order in the file render the same.
        let mut reordered = lab.file.clone();
        reordered.hosts.reverse();
        reordered.images.reverse();
        assert_eq!(render::render(&Lab::new(reordered), options, &dir.path().join("out")).unwrap(), first);
    }
}

#[test]
fn dnsmasq_gives_fixed_addresses_records_and_a_boot_file_per_firmware() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = render_example(dir.path(), Options::default());
    let conf = text(&r, "dnsmasq.conf");
    let out = dir.path().join("out");
    for line in [
        "listen-address=10.77.0.1".to_string(),
        "domain=example.edu,10.77.0.0/24".into(),
        "local=/0.77.10.in-addr.arpa/".into(),
        "host-record=lab3-12.example.edu,lab3-12,10.77.0.112".into(),
        "dhcp-option=tag:net-10-77-0-0,option:log-server,10.77.0.1".into(),
        "host-record=server.example.edu,server,10.77.0.1".into(),
        "dhcp-range=set:net-10-77-0-0,10.77.0.150,10.77.0.199,255.255.255.0,12h".into(),
        "dhcp-option=tag:net-10-77-0-0,option:router,10.77.0.1".into(),
        "dhcp-host=52:54:00:77:03:12,set:img-debian,10.77.0.112,lab3-12,infinite".into(),
        "dhcp-boot=tag:img-debian,tag:!efi64,debian/pxelinux.0".into(),
        "dhcp-boot=tag:img-debian,tag:efi64,debian/grubnetx64.efi".into(),
        "dhcp-boot=tag:img-gentoo,tag:!efi64,gentoo/pxelinux.0".into(),
        "dhcp-boot=tag:!known,tag:net-10-77-0-0,tag:!efi64,debian/pxelinux.0".into(),
        "dhcp-match=set:efi64,option:client-arch,7".into(),
        format!("tftp-root={}", out.join("tftproot").display()),
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
    assert!(!conf.contains("img-gentoo,tag:efi64"), "gentoo serves BIOS clients only:\n{conf}");
    assert!(!conf.contains("efi-arm64"), "no ARM64 image, no ARM64 match:\n{conf}");
    assert!(conf.starts_with(&format!("# {}\n", render::HEADER)));
}

#[test]
fn the_tftp_tree_has_loaders_configs_per_mac_files_and_kernel_links() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = render_example(dir.path(), Options::default());
    let default = text(&r, "tftproot/debian/pxelinux.cfg/default");
    assert!(
        default.contains(
            "  APPEND root=/dev/nfs nfsroot=10.77.0.1:/srv/diskless/debian,vers=3 console=ttyS0,115200\n  IPAPPEND 2\n"
        ),
        "{default}"
    );
    assert!(default.contains("\nTIMEOUT 0\nSERIAL 0 115200\nLABEL diskless\n"), "the console's port: {default}");
    assert!(!text(&r, "tftproot/gentoo/pxelinux.cfg/default").contains("SERIAL"), "no serial console, no SERIAL");
    let host = text(&r, "tftproot/debian/pxelinux.cfg/01-52-54-00-77-03-13");
    assert!(host.contains("console=ttyS0,115200 diskless.debug\n"), "{host}");
    assert!(!r.files.contains_key(Path::new("tftproot/gentoo/pxelinux.cfg/01-52-54-00-77-00-05")), "no extra params");
    assert_eq!(r.files[Path::new("tftproot/debian/vmlinuz")], Content::Link("vmlinuz-6.1.0-57-amd64".into()));
    assert_eq!(r.files[Path::new("tftproot/debian/initrd.img")], Content::Link("initrd.img-6.1.0-57-amd64".into()));
    assert_eq!(r.files[Path::new("tftproot/debian/pxelinux.0")], Content::Copy(dir.path().join("pxelinux.0")));
    assert_eq!(r.files[Path::new("tftproot/debian/ldlinux.c32")], Content::Copy(dir.path().join("ldlinux.c32")));
    assert_eq!(r.files[Path::new("tftproot/debian/grubnetx64.efi")], Content::Copy(dir.path().join("grubnetx64.efi")));
    assert!(!r.files.contains_key(Path::new("tftproot/gentoo/grubnetx64.efi")));
    let grub = text(&r, "tftproot/grub/grub.cfg");
    assert!(grub.contains("if [ \"${net_default_mac}\" = \"52:54:00:77:03:12\" ]; then\n"), "{grub}");
    assert!(
        grub.contains("  linux /debian/vmlinuz root=/dev/nfs nfsroot=10.77.0.1:/srv/diskless/debian,vers=3 console=ttyS0,115200 diskless.mode=overlay BOOTIF=01-52-54-00-77-03-12\n  initrd /debian/initrd.img\n"),
        "{grub}"
    );
    assert!(!grub.contains("52:54:00:77:00:05"), "gentoo is BIOS only:\n{grub}");
    assert!(r.todo.iter().any(|t| t.contains("mkinitramfs -b /srv/diskless/debian -o ")), "{:?}", r.todo);
}

const HTTP: &str = "http = \"http://10.77.0.1/diskless\"\n";

#[test]
fn with_server_http_only_the_loader_goes_over_tftp_and_nginx_serves_the_tftp_root() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let lab = example_with(dir.path(), HTTP);
    let r = render::render(&lab, Options::default(), &out).unwrap();
    let default = text(&r, "tftproot/debian/pxelinux.cfg/default");
    assert!(
        default.contains(
            "  KERNEL http://10.77.0.1/diskless/debian/vmlinuz\n  INITRD http://10.77.0.1/diskless/debian/initrd.img\n"
        ),
        "{default}"
    );
    assert_eq!(r.files[Path::new("tftproot/debian/lpxelinux.0")], Content::Copy(dir.path().join("lpxelinux.0")));
    assert!(!r.files.contains_key(Path::new("tftproot/debian/pxelinux.0")), "pxelinux.0 speaks no HTTP");
    let module = Path::new("tftproot/grub/x86_64-efi/http.mod");
    assert_eq!(r.files[module], Content::Copy(dir.path().join("http.mod")), "grubnetx64.efi has no http built in");
    let conf = text(&r, "dnsmasq.conf");
    assert!(conf.contains("dhcp-boot=tag:img-debian,tag:!efi64,debian/lpxelinux.0\n"), "{conf}");
    assert!(conf.contains("dhcp-boot=tag:img-debian,tag:efi64,debian/grubnetx64.efi\n"), "{conf}");
    let isc = render::render(&lab, Options { dhcp: Dhcp::Isc, dns: Dns::Bind }, &out).unwrap();
    assert!(text(&isc, "dhcpd.conf").contains("filename \"gentoo/lpxelinux.0\";"));
    let grub = text(&r, "tftproot/grub/grub.cfg");
    assert!(
        grub.contains("  linux (http,10.77.0.1)/diskless/debian/vmlinuz root=/dev/nfs ")
            && grub.contains("  initrd (http,10.77.0.1)/diskless/debian/initrd.img\n"),
        "{grub}"
    );
    let root = out.join("tftproot");
    assert_eq!(
        text(&r, "nginx.conf"),
        format!(
            "# {}\n# The web server of server.http = \"http://10.77.0.1/diskless\": kernels and initrds for the loaders.\n\
             # Enable it: ln -s {}/nginx.conf /etc/nginx/sites-enabled/diskless\nserver {{\n    listen 10.77.0.1:80;\n\
             \x20   location /diskless/ {{\n        alias {}/;\n        limit_except GET {{ deny all; }}\n    }}\n}}\n",
            render::HEADER,
            out.display(),
            root.display()
        )
    );
    // Without server.http: no site, pxelinux.0 and TFTP paths.
    let plain = render::render(&example_in(dir.path()), Options::default(), &out).unwrap();
    assert!(!plain.files.contains_key(Path::new("nginx.conf")));
    assert!(!plain.files.contains_key(module));
    assert!(text(&plain, "tftproot/debian/pxelinux.cfg/default").contains("  KERNEL vmlinuz\n"));
}

#[test]
fn an_http_port_goes_into_grubs_device_and_the_site_and_the_root_path_is_served_at_slash() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let lab = example_with(dir.path(), "http = \"http://10.77.0.1:8080/\"\n");
    let r = render::render(&lab, Options::default(), &out).unwrap();
    assert!(text(&r, "tftproot/grub/grub.cfg").contains("  linux (http,10.77.0.1:8080)/debian/vmlinuz "));
    assert!(
        text(&r, "tftproot/gentoo/pxelinux.cfg/default").contains("  KERNEL http://10.77.0.1:8080/gentoo/vmlinuz\n")
    );
    let site = text(&r, "nginx.conf");
    assert!(site.contains("    listen 10.77.0.1:8080;\n    location / {\n"), "{site}");
    let e = Lab::parse(&EXAMPLE.replace("[server]\n", "[server]\nhttp = \"https://10.77.0.1/x\"\n")).unwrap_err();
    assert!(e.to_string().contains("http = \"https://10.77.0.1/x\"") && e.to_string().contains("https is not spoken"));
}

#[test]
fn check_names_a_directory_the_unprivileged_servers_cannot_enter_with_the_url() {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let lab = example_with(dir.path(), HTTP);
    let out = dir.path().join("out");
    render::write(&render::render(&lab, Options::default(), &out).unwrap(), &out).unwrap();
    for image in ["debian", "gentoo"] {
        for file in ["vmlinuz-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64"] {
            let path = out.join("tftproot").join(image).join(file);
            fs::write(&path, format!("for 6.1.0-57-amd64 {file}")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    assert_eq!(findings(&lab, &out), Vec::<String>::new());
    let gentoo = out.join("tftproot/gentoo");
    fs::set_permissions(&gentoo, fs::Permissions::from_mode(0o750)).unwrap();
    let f = findings(&lab, &out);
    let want = |file: &str| {
        format!(
            "image \"gentoo\": {}/{file} (http://10.77.0.1/diskless/gentoo/{file}) cannot be served: {} is not \
             searchable by others and the server runs as an unprivileged user; chmod o+x {}",
            gentoo.display(),
            gentoo.display(),
            gentoo.display()
        )
    };
    assert_eq!(f, [want("vmlinuz"), want("initrd.img")]);
    // The site edited by hand is stale like every rendered file.
    fs::set_permissions(&gentoo, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(out.join("nginx.conf"), "server { listen 80; }\n").unwrap();
    let f = findings(&lab, &out);
    assert!(f.len() == 1 && f[0].contains("nginx.conf differs from what the lab file renders"), "{f:#?}");
}

#[test]
fn exports_follow_the_howto_and_ganesha_exports_the_same_images() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = render_example(dir.path(), Options::default());
    let exports = text(&r, "exports");
    assert!(
        exports.lines().any(|l| l
            == "/srv/diskless/debian 10.77.0.5(rw,async,no_root_squash,no_subtree_check) 10.77.0.0/24(ro,async,no_root_squash,no_subtree_check)"),
        "{exports}"
    );
    assert!(
        exports.lines().any(|l| l == "/srv/diskless/gentoo 10.77.0.0/24(ro,async,no_root_squash,no_subtree_check)")
    );
    let ganesha = text(&r, "ganesha.conf");
    assert!(
        ganesha
            .contains("  Export_Id = 1;\n  Path = \"/srv/diskless/debian\";\n  Pseudo = \"/srv/diskless/debian\";\n"),
        "{ganesha}"
    );
    assert!(ganesha.contains(
        "  CLIENT { Clients = 10.77.0.5; Access_Type = RW; }\n  CLIENT { Clients = 10.77.0.0/24; Access_Type = RO; }\n"
    ));
    assert!(ganesha.contains("  Export_Id = 2;\n  Path = \"/srv/diskless/gentoo\";"));
}

#[test]
fn isc_and_bind_get_host_blocks_zones_with_a_content_serial_and_named_stanzas() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { dhcp: Dhcp::Isc, dns: Dns::Bind };
    let (lab, r) = render_example(dir.path(), options);
    let dhcpd = text(&r, "dhcpd.conf");
    for part in [
        "subnet 10.77.0.0 netmask 255.255.255.0 {\n  option broadcast-address 10.77.0.255;\n  option routers 10.77.0.1;\n",
        "  next-server 10.77.0.1;\n  option log-servers 10.77.0.1;\n  range 10.77.0.150 10.77.0.199;\n",
        "  host lab3-12 {\n    hardware ethernet 52:54:00:77:03:12;\n    fixed-address 10.77.0.112;\n",
        "# image gentoo\ngroup {\n  next-server 10.77.0.1;\n  option root-path \"10.77.0.1:/srv/diskless/gentoo\";\n  \
         filename \"gentoo/pxelinux.0\";\n  host maint {",
        "  if option arch = 00:07 or option arch = 00:09 {\n    filename \"debian/grubnetx64.efi\";\n  } else {\n    filename \"debian/pxelinux.0\";\n  }\n",
    ] {
        assert!(dhcpd.contains(part), "{part} missing:\n{dhcpd}");
    }
    let forward = text(&r, "bind/db.example.edu");
    assert!(forward.contains("\n@ IN NS server.example.edu.\n"), "{forward}");
    assert!(forward.contains("\nlab3-12.example.edu. IN A 10.77.0.112\n"), "{forward}");
    let reverse = text(&r, "bind/db.0.77.10.in-addr.arpa");
    assert!(reverse.contains("\n112.0.77.10.in-addr.arpa. IN PTR lab3-12.example.edu.\n"), "{reverse}");
    let named = text(&r, "named.conf");
    let zone = dir.path().join("out/bind/db.example.edu");
    assert!(named.contains(&format!("zone \"example.edu\" {{ type master; file \"{}\"; }};\n", zone.display())));
    let conf = text(&r, "dnsmasq.conf");
    assert!(conf.contains("\nport=0\n") && !conf.contains("dhcp-range") && conf.contains("\nenable-tftp\n"), "{conf}");
    // The serial follows the records: another host, another serial.
    let serial_of = |zone: &str| zone.split("( ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    let mut more = lab.file.clone();
    more.hosts.retain(|h| h.name != "maint");
    let other = render::render(&Lab::new(more), options, &dir.path().join("out")).unwrap();
    assert_ne!(serial_of(forward), serial_of(text(&other, "bind/db.example.edu")));
}

#[test]
fn render_names_a_missing_loader_and_refuses_a_lab_with_problems() {
    let dir = tempfile::tempdir().unwrap();
    let lab = example_in(dir.path());
    fs::remove_file(dir.path().join("grubnetx64.efi")).unwrap();
    let e = render::render(&lab, Options::default(), &dir.path().join("out")).unwrap_err().to_string();
    assert!(e.starts_with("loaders.uefi = \"") && e.contains("install Debian's grub-efi-amd64-bin"), "{e}");
    let bad = Lab::parse(&EXAMPLE.replace("10.77.0.112", "10.77.0.113")).unwrap();
    let e = render::render(&bad, Options::default(), &dir.path().join("out")).unwrap_err().to_string();
    assert!(e.contains("1 problem(s)") && e.contains("address 10.77.0.113 is also"), "{e}");
    let e = render::render(&lab, Options::default(), Path::new("out")).unwrap_err().to_string();
    assert!(e.contains("not an absolute path"), "{e}");
}

#[test]
fn newest_is_the_highest_kernel_version_in_the_images_boot() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    fs::create_dir_all(&boot).unwrap();
    let image = schema::Image {
        name: "x".into(),
        export: dir.path().into(),
        kernel: "newest".into(),
        firmware: vec![schema::Firmware::Bios],
        params: String::new(),
        nfs_options: None,
        nfs_servers: Vec::new(),
        maintenance: None,
        secure_boot: false,
    };
    let e = render::kernel_version(&image).unwrap_err().to_string();
    assert!(e.contains("holds no vmlinuz-VERSION"), "{e}");
    for v in ["6.1.0-9-amd64", "6.1.0-57-amd64", "6.1.0-10-amd64"] {
        fs::write(boot.join(format!("vmlinuz-{v}")), "").unwrap();
    }
    assert_eq!(render::kernel_version(&image).unwrap(), "6.1.0-57-amd64");
}

/// Renders the example into `dir/out`, with kernels and initrds for 6.1.0-57-amd64.
fn served(dir: &Path, options: Options) -> (Lab, std::path::PathBuf) {
    let (lab, rendered) = render_example(dir, options);
    let out = dir.join("out");
    render::write(&rendered, &out).unwrap();
    with_kernels(&out);
    (lab, out)
}

/// Kernels and initrds for 6.1.0-57-amd64 in the example's images under `out`.
fn with_kernels(out: &Path) {
    for image in ["debian", "gentoo"] {
        for file in ["vmlinuz-6.1.0-57-amd64", "initrd.img-6.1.0-57-amd64"] {
            let path = out.join("tftproot").join(image).join(file);
            fs::write(&path, format!("for 6.1.0-57-amd64 {file}")).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

#[test]
fn secure_boot_images_give_uefi_clients_shim_which_fetches_the_signed_grub_from_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let lab = secure_example_in(dir.path());
    let out = dir.path().join("out");
    let r = render::render(&lab, Options::default(), &out).unwrap();
    let conf = text(&r, "dnsmasq.conf");
    assert!(conf.lines().any(|l| l == "dhcp-boot=tag:img-debian,tag:efi64,debian/shimx64.efi"), "{conf}");
    assert!(conf.lines().any(|l| l == "dhcp-boot=tag:img-debian,tag:!efi64,debian/pxelinux.0"), "{conf}");
    let copy = |name: &str| Content::Copy(dir.path().join(name));
    assert_eq!(r.files[Path::new("tftproot/debian/shimx64.efi")], copy("shimx64.efi.signed"));
    assert_eq!(r.files[Path::new("tftproot/grubx64.efi")], copy("grubnetx64.efi.signed"));
    assert!(!r.files.contains_key(Path::new("tftproot/debian/grubx64.efi")));
    assert!(!r.files.contains_key(Path::new("tftproot/debian/grubnetx64.efi")), "no unsigned GRUB to start");
    assert!(text(&r, "tftproot/grub/grub.cfg").contains("  linux /debian/vmlinuz root=/dev/nfs "));
    let isc = render::render(&lab, Options { dhcp: Dhcp::Isc, dns: Dns::Bind }, &out).unwrap();
    let dhcpd = text(&isc, "dhcpd.conf");
    assert!(
        dhcpd.contains("    filename \"debian/shimx64.efi\";\n  } else {\n    filename \"debian/pxelinux.0\";"),
        "{dhcpd}"
    );

    // The unsigned GRUB is not needed: a missing one is no error.
    let mut file = lab.file.clone();
    file.loaders.uefi = dir.path().join("absent.efi");
    file.images.retain(|i| i.name == "debian");
    file.hosts.retain(|h| h.name != "maint");
    assert!(render::render(&Lab::new(file.clone()), Options::default(), &out).is_ok());
    file.loaders.shim = dir.path().join("absent-shim.efi");
    let e = render::render(&Lab::new(file), Options::default(), &out).unwrap_err().to_string();
    assert!(e.starts_with("loaders.shim = \"") && e.contains("install Debian's shim-signed"), "{e}");
}

#[test]
fn secure_boot_on_an_image_without_uefi_clients_is_a_problem() {
    let p = problems_of(&EXAMPLE.replace(
        "kernel = \"6.1.0-57-amd64\"\n\n[[group]]",
        "kernel = \"6.1.0-57-amd64\"\nsecure_boot = true\n\n[[group]]",
    ));
    assert_eq!(
        p,
        ["image \"gentoo\": secure_boot = true but firmware does not include \"uefi\"; Secure Boot is a UEFI \
             feature: add \"uefi\" to firmware, or drop secure_boot"]
    );
}

#[test]
fn check_names_an_unsigned_kernel_or_loader_of_a_secure_boot_image() {
    let dir = tempfile::tempdir().unwrap();
    let lab = secure_example_in(dir.path());
    let out = dir.path().join("out");
    render::write(&render::render(&lab, Options::default(), &out).unwrap(), &out).unwrap();
    for image in ["debian", "gentoo"] {
        let kernel = if image == "debian" { pe(true) } else { b"for 6.1.0-57-amd64".to_vec() };
        for (file, bytes) in
            [("vmlinuz-6.1.0-57-amd64", kernel), ("initrd.img-6.1.0-57-amd64", b"for 6.1.0-57-amd64".to_vec())]
        {
            let path = out.join("tftproot").join(image).join(file);
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    assert_eq!(findings(&lab, &out), Vec::<String>::new(), "signed PE loaders and kernel");

    let debian = out.join("tftproot/debian");
    fs::write(debian.join("vmlinuz-6.1.0-57-amd64"), pe(false)).unwrap();
    fs::write(out.join("tftproot/grubx64.efi"), b"loader grubnetx64.efi").unwrap();
    let f = findings(&lab, &out);
    assert_eq!(
        f,
        [
            format!(
                "image \"debian\": {}/vmlinuz has no Authenticode signature, so a client with Secure Boot on \
                 refuses it; serve the distribution's signed kernel (Debian's linux-image-6.1.0-57-amd64), or drop \
                 secure_boot",
                debian.display()
            ),
            format!(
                "{}/tftproot/grubx64.efi is not a PE/EFI image, so a client with Secure Boot on refuses it; \
                 loaders.uefi_signed must be the signed GRUB (Debian's grubnetx64.efi.signed); render again",
                out.display()
            ),
        ]
    );
}

#[test]
fn authenticode_signatures_are_found_in_pe32_and_pe32_plus_and_a_cut_table_is_named() {
    assert_eq!(check::authenticode_signed(&pe(true)), Ok(()));
    assert_eq!(check::authenticode_signed(&pe(false)).unwrap_err(), "has no Authenticode signature");
    assert_eq!(check::authenticode_signed(b"\x7fELF").unwrap_err(), "is not a PE/EFI image");
    assert_eq!(check::authenticode_signed(&pe(true)[..0x90]).unwrap_err(), "is not a PE/EFI image");
    let cut = &pe(true)[..0x184];
    assert_eq!(check::authenticode_signed(cut).unwrap_err(), "has a signature table past its end (truncated?)");
    let mut not_pkcs7 = pe(true);
    not_pkcs7[0x186] = 1;
    assert!(check::authenticode_signed(&not_pkcs7).unwrap_err().contains("no PKCS#7"));
    // PE32: the data directories start 16 bytes earlier.
    let mut pe32 = vec![0u8; 0x200];
    pe32[..0x98].copy_from_slice(&pe(false)[..0x98]);
    pe32[0x98..0x9a].copy_from_slice(&0x10bu16.to_le_bytes());
    pe32[0x98 + 92..0x98 + 96].copy_from_slice(&16u32.to_le_bytes());
    let entry = 0x98 + 96 + 32;
    pe32[entry..entry + 4].copy_from_slice(&0x180u32.to_le_bytes());
    pe32[entry + 4..entry + 8].copy_from_slice(&8u32.to_le_bytes());
    pe32[0x186] = 2;
    assert_eq!(check::authenticode_signed(&pe32), Ok(()));
}

/// Reads the fake initrds of [`served`]: the version after "for ".
fn versions(path: &Path) -> Result<BTreeSet<String>, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let version = text.strip_prefix("for ").ok_or("no archive")?.split(' ').next().unwrap();
    Ok(BTreeSet::from([version.to_string()]))
}

fn findings(lab: &Lab, out: &Path) -> Vec<String> {
    check::check(lab, Some(out), &versions).iter().map(ToString::to_string).collect()
}

#[test]
fn a_rendered_lab_checks_clean_and_written_twice_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    for options in [Options::default(), Options { dhcp: Dhcp::Isc, dns: Dns::Bind }] {
        let (lab, out) = served(dir.path(), options);
        assert_eq!(findings(&lab, &out), Vec::<String>::new(), "{options:?}");
        let mode = fs::metadata(out.join("dnsmasq.conf")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    let lab = Lab::parse(EXAMPLE).unwrap();
    assert_eq!(check::check(&lab, None, &versions), [], "without --root only the lab file is checked");
}

#[test]
fn a_missing_ptr_record_is_named_with_the_host_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, out) = served(dir.path(), Options::default());
    let conf = out.join("dnsmasq.conf");
    let text = fs::read_to_string(&conf).unwrap();
    fs::write(&conf, text.replace("host-record=lab3-13.example.edu,lab3-13,10.77.0.113\n", "")).unwrap();
    let f = findings(&lab, &out);
    assert_eq!(f.len(), 3, "{f:#?}");
    assert!(f[0].contains("dnsmasq.conf differs from what the lab file renders"), "{}", f[0]);
    assert!(f[1].starts_with("host \"lab3-13\": no A record for lab3-13.example.edu in "), "{}", f[1]);
    assert!(
        f[2].starts_with("host \"lab3-13\": no PTR record for 10.77.0.113 in ")
            && f[2]
                .contains("(wanted lab3-13.example.edu); without it the client's host and lab layers are not applied"),
        "{}",
        f[2]
    );
}

#[test]
fn a_ptr_record_naming_another_host_in_a_zone_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, out) = served(dir.path(), Options { dhcp: Dhcp::Isc, dns: Dns::Bind });
    let zone = out.join("bind/db.0.77.10.in-addr.arpa");
    let text = fs::read_to_string(&zone).unwrap();
    fs::write(&zone, text.replace("IN PTR lab3-12.example.edu.", "IN PTR lab3-99.example.edu.")).unwrap();
    let f = findings(&lab, &out);
    assert!(
        f.iter().any(|l| l.starts_with("host \"lab3-12\": the PTR record of 10.77.0.112 in ")
            && l.contains("names lab3-99.example.edu instead of lab3-12.example.edu")),
        "{f:#?}"
    );
}

#[test]
fn kernel_and_initrd_problems_are_named_with_their_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, out) = served(dir.path(), Options::default());
    let debian = out.join("tftproot/debian");
    fs::write(debian.join("initrd.img-6.1.0-57-amd64"), "for 6.1.0-56-amd64").unwrap();
    fs::set_permissions(debian.join("vmlinuz-6.1.0-57-amd64"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(out.join("tftproot/gentoo/initrd.img-6.1.0-57-amd64")).unwrap();
    let f = findings(&lab, &out);
    assert_eq!(f.len(), 3, "{f:#?}");
    assert!(
        f[0].contains("tftproot/debian/vmlinuz is not world-readable") && f[0].ends_with("chmod 644 it"),
        "{}",
        f[0]
    );
    assert!(
        f[1].contains("tftproot/debian/initrd.img was built for 6.1.0-56-amd64 but the kernel is 6.1.0-57-amd64; build it again: mkinitramfs -b /srv/diskless/debian -o "),
        "{}",
        f[1]
    );
    assert!(f[2].contains("tftproot/gentoo/initrd.img is missing; build it: mkinitramfs"), "{}", f[2]);
}

#[test]
fn an_image_missing_from_the_exports_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, out) = served(dir.path(), Options::default());
    let exports = out.join("exports");
    let text = fs::read_to_string(&exports).unwrap();
    let kept: String =
        text.lines().filter(|l| !l.starts_with("/srv/diskless/gentoo")).map(|l| format!("{l}\n")).collect();
    fs::write(&exports, kept).unwrap();
    let f = findings(&lab, &out);
    assert_eq!(f.len(), 2, "{f:#?}");
    assert!(
        f[1].starts_with("image \"gentoo\": ") && f[1].contains("exports does not export /srv/diskless/gentoo"),
        "{}",
        f[1]
    );
}

#[test]
fn lab_problems_come_first_and_stop_the_file_checks() {
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::parse(&EXAMPLE.replace("10.77.0.112", "10.77.0.160")).unwrap();
    let f = findings(&lab, dir.path());
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(f[0].contains("inside subnet 10.77.0.0/24's dynamic range"));
}

/// [`served`] with image "debian" exported from `dir/srv/debian`, whose /boot and
/// /lib/modules hold each of `versions`.
fn served_with_kernels(dir: &Path, versions: &[&str]) -> (Lab, std::path::PathBuf) {
    let (mut lab, out) = served(dir, Options::default());
    let export = dir.join("srv/debian");
    for version in versions {
        fs::create_dir_all(export.join("lib/modules").join(version)).unwrap();
        fs::create_dir_all(export.join("boot")).unwrap();
        fs::write(export.join("boot").join(format!("vmlinuz-{version}")), format!("kernel {version}")).unwrap();
    }
    lab.file.images.iter_mut().find(|i| i.name == "debian").unwrap().export = export;
    (lab, out)
}

/// A build that writes what [`versions`] reads, counting its calls.
fn fake_build(calls: &std::cell::Cell<usize>) -> impl Fn(&Path, &str, &Path) -> Result<(), String> + '_ {
    move |_, version, output| {
        calls.set(calls.get() + 1);
        fs::write(output, format!("for {version} initrd")).map_err(|e| e.to_string())
    }
}

fn link_of(path: &Path) -> String {
    fs::read_link(path).unwrap().to_string_lossy().into_owned()
}

#[test]
fn switching_copies_the_kernel_builds_the_initrd_and_keeps_the_previous_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (mut lab, out) = served_with_kernels(dir.path(), &["6.1.0-58-amd64"]);
    let calls = std::cell::Cell::new(0);
    let tftp = out.join("tftproot/debian");
    let s = kernel::switch(&lab, &out, "debian", "6.1.0-58-amd64", &fake_build(&calls)).unwrap();
    assert_eq!((calls.get(), s.built_initrd, s.previous.as_deref()), (1, true, Some("6.1.0-57-amd64")));
    assert_eq!(fs::read_to_string(tftp.join("vmlinuz")).unwrap(), "kernel 6.1.0-58-amd64");
    assert_eq!(link_of(&tftp.join("initrd.img")), "initrd.img-6.1.0-58-amd64");
    assert_eq!(link_of(&tftp.join("vmlinuz.previous")), "vmlinuz-6.1.0-57-amd64");
    assert_eq!(link_of(&tftp.join("initrd.img.previous")), "initrd.img-6.1.0-57-amd64");
    for file in ["vmlinuz-6.1.0-58-amd64", "initrd.img-6.1.0-58-amd64"] {
        assert_eq!(fs::metadata(tftp.join(file)).unwrap().permissions().mode() & 0o777, 0o644, "{file}");
    }
    let text = kernel::render_switched(&s, "diskless server kernel --lab L --root R");
    assert!(
        text.contains("switch back with: diskless server kernel --lab L --root R debian 6.1.0-57-amd64\n"),
        "{text}"
    );
    assert!(text.contains("note: the lab file serves image \"debian\" with kernel 6.1.0-57-amd64"), "{text}");
    // The lab file saying the new kernel, check finds the kernel and initrd right (the
    // export moved, so the exports and configurations differ).
    lab.file.images.iter_mut().find(|i| i.name == "debian").unwrap().kernel = "6.1.0-58-amd64".into();
    let boot_files: Vec<String> =
        findings(&lab, &out).into_iter().filter(|f| f.contains("vmlinuz") || f.contains("initrd")).collect();
    assert_eq!(boot_files, Vec::<String>::new());
    lab.file.images.iter_mut().find(|i| i.name == "debian").unwrap().kernel = "6.1.0-56-amd64".into();
    assert!(findings(&lab, &out).iter().any(|f| f.contains("initrd.img was built for 6.1.0-58-amd64")));

    // Back: both files are there, nothing is built, and the rollback names 58.
    let s = kernel::switch(&lab, &out, "debian", "6.1.0-57-amd64", &fake_build(&calls)).unwrap();
    assert_eq!((calls.get(), s.built_initrd, s.copied_kernel.is_some()), (1, false, false));
    assert_eq!(link_of(&tftp.join("vmlinuz")), "vmlinuz-6.1.0-57-amd64");
    assert_eq!(link_of(&tftp.join("vmlinuz.previous")), "vmlinuz-6.1.0-58-amd64");
    // The same switch again keeps the rollback.
    let s = kernel::switch(&lab, &out, "debian", "6.1.0-57-amd64", &fake_build(&calls)).unwrap();
    assert_eq!(s.previous, None);
    assert_eq!(link_of(&tftp.join("initrd.img.previous")), "initrd.img-6.1.0-58-amd64");
}

#[test]
fn a_missing_kernel_or_modules_or_a_failed_build_is_named_and_switches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, out) = served_with_kernels(dir.path(), &["6.1.0-58-amd64"]);
    let calls = std::cell::Cell::new(0);
    let e = kernel::switch(&lab, &out, "debian", "6.1.0-59-amd64", &fake_build(&calls)).unwrap_err().to_string();
    assert!(
        e.starts_with("image \"debian\": kernel 6.1.0-59-amd64 is neither at ")
            && e.contains("srv/debian/boot/vmlinuz-6.1.0-59-amd64; install that kernel in the image"),
        "{e}"
    );
    fs::remove_dir(dir.path().join("srv/debian/lib/modules/6.1.0-58-amd64")).unwrap();
    let e = kernel::switch(&lab, &out, "debian", "6.1.0-58-amd64", &fake_build(&calls)).unwrap_err().to_string();
    assert!(
        e.contains("kernel 6.1.0-58-amd64 has no modules at ")
            && e.contains(
                "srv/debian/lib/modules/6.1.0-58-amd64, so no initrd can be built for it; install the kernel's modules"
            ),
        "{e}"
    );
    fs::create_dir(dir.path().join("srv/debian/lib/modules/6.1.0-58-amd64")).unwrap();
    let failing = |_: &Path, _: &str, _: &Path| Err("no NIC driver".to_string());
    let e = kernel::switch(&lab, &out, "debian", "6.1.0-58-amd64", &failing).unwrap_err().to_string();
    assert!(e.contains("initrd.img-6.1.0-58-amd64 for kernel 6.1.0-58-amd64 failed: no NIC driver"), "{e}");
    assert_eq!(calls.get(), 0);
    let tftp = out.join("tftproot/debian");
    assert_eq!(link_of(&tftp.join("vmlinuz")), "vmlinuz-6.1.0-57-amd64");
    assert_eq!(link_of(&tftp.join("initrd.img")), "initrd.img-6.1.0-57-amd64");
    assert!(fs::symlink_metadata(tftp.join("vmlinuz.previous")).is_err());
}

#[test]
fn an_unknown_image_or_an_unrendered_root_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, out) = served_with_kernels(dir.path(), &["6.1.0-58-amd64"]);
    let calls = std::cell::Cell::new(0);
    let e = kernel::switch(&lab, &out, "ubuntu", "6.1.0-58-amd64", &fake_build(&calls)).unwrap_err().to_string();
    assert_eq!(e, "image \"ubuntu\": no [[image]] of the lab file has that name; use one of \"debian\", \"gentoo\"");
    let e = kernel::switch(&lab, &dir.path().join("elsewhere"), "debian", "6.1.0-58-amd64", &fake_build(&calls))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tftproot/debian does not exist; write the server files first: diskless server render"), "{e}");
}

/// The example lab with a `[peer]` at 10.77.0.2 and image "debian" on both servers.
fn pair_example_in(dir: &Path) -> Lab {
    let text = example_text_in(dir, "")
        .replacen("[[subnet]]", "[peer]\naddress = \"10.77.0.2\"\nname = \"server2\"\n\n[[subnet]]", 1)
        .replace("dns = [\"10.77.0.1\"]", "")
        .replace("nfs_options = \"vers=3\"", "nfs_options = \"vers=3\"\nnfs_servers = [\"10.77.0.1\", \"10.77.0.2\"]");
    let lab = Lab::parse(&text).unwrap();
    assert_eq!(lab.problems, []);
    lab
}

/// Images and hosts of the other client architectures, for the example.
const FOREIGN: &str = r#"
[[image]]
name = "debian-arm64"             # ARM64 UEFI machines (DHCP option 93 = 11)
export = "/srv/diskless/debian-arm64"
kernel = "6.1.0-57-arm64"
firmware = ["uefi-arm64"]
params = "console=ttyAMA0"

[[image]]
name = "debian-ppc64el"           # POWER machines booting from OpenFirmware (SLOF)
export = "/srv/diskless/debian-ppc64el"
kernel = "6.1.0-57-powerpc64le"
firmware = ["openfirmware"]
params = "console=hvc0"

[[host]]
name = "lab4-1"
mac = "52:54:00:77:04:01"
address = "10.77.0.141"
image = "debian-arm64"

[[host]]
name = "lab4-2"
mac = "52:54:00:77:04:02"
address = "10.77.0.142"
image = "debian-ppc64el"
"#;

/// The example (its loaders in `dir`) with [`FOREIGN`]'s images and hosts.
fn foreign_example_in(dir: &Path) -> Lab {
    let lab = Lab::parse(&format!("{}{FOREIGN}", example_text_in(dir, ""))).unwrap();
    assert_eq!(lab.problems, []);
    lab
}

#[test]
fn an_images_nfs_servers_go_joined_by_plus_into_every_command_line_and_root_path() {
    let dir = tempfile::tempdir().unwrap();
    let lab = pair_example_in(dir.path());
    let out = dir.path().join("out");
    for options in [Options::default(), Options { dhcp: Dhcp::Isc, dns: Dns::Bind }] {
        let r = render::render(&lab, options, &out).unwrap();
        let root = "10.77.0.1+10.77.0.2:/srv/diskless/debian,vers=3";
        let pxelinux = text(&r, "tftproot/debian/pxelinux.cfg/default");
        assert!(pxelinux.contains(&format!("  APPEND root=/dev/nfs nfsroot={root} console=ttyS0")), "{pxelinux}");
        assert!(text(&r, "tftproot/grub/grub.cfg").contains(&format!("nfsroot={root} ")));
        for file in ["dnsmasq.conf", "dnsmasq-peer.conf"] {
            let conf = text(&r, file);
            if options.dhcp == Dhcp::Dnsmasq {
                let line = format!("dhcp-option=tag:img-debian,option:root-path,\"{root}\"");
                assert!(conf.lines().any(|l| l == line), "{file}: {line} missing:\n{conf}");
            }
        }
        if options.dhcp == Dhcp::Isc {
            for file in ["dhcpd.conf", "dhcpd-peer.conf"] {
                assert!(text(&r, file).contains(&format!("  option root-path \"{root}\";\n")), "{file}");
            }
        }
        // gentoo names no nfs_servers: the server alone.
        assert!(text(&r, "tftproot/gentoo/pxelinux.cfg/default").contains("nfsroot=10.77.0.1:/srv/diskless/gentoo\n"));
    }
    let twice = example_text_in(dir.path(), "")
        .replace("nfs_options = \"vers=3\"", "nfs_options = \"vers=3\"\nnfs_servers = [\"10.77.0.1\", \"10.77.0.1\"]");
    assert_eq!(
        problems_of(&twice),
        ["image \"debian\": nfs_servers lists 10.77.0.1 twice; list each server holding the export once"]
    );
}

#[test]
fn a_peer_gets_the_same_hosts_the_upper_half_of_the_range_and_itself_first() {
    let dir = tempfile::tempdir().unwrap();
    let lab = pair_example_in(dir.path());
    let r = render::render(&lab, Options::default(), &dir.path().join("out")).unwrap();
    let (server, peer) = (text(&r, "dnsmasq.conf"), text(&r, "dnsmasq-peer.conf"));
    let lines = |conf: &str, prefix: &str| -> Vec<String> {
        conf.lines().filter(|l| l.starts_with(prefix)).map(str::to_string).collect()
    };
    for prefix in ["dhcp-host=", "dhcp-boot=", "host-record=", "dhcp-option=tag:img-"] {
        assert_eq!(lines(server, prefix), lines(peer, prefix), "{prefix} lines differ");
        assert!(!lines(server, prefix).is_empty(), "{prefix}");
    }
    assert!(server.contains("\nlisten-address=10.77.0.1\n") && peer.contains("\nlisten-address=10.77.0.2\n"));
    assert!(server.contains("\ndhcp-range=set:net-10-77-0-0,10.77.0.150,10.77.0.174,255.255.255.0,12h\n"), "{server}");
    assert!(peer.contains("\ndhcp-range=set:net-10-77-0-0,10.77.0.175,10.77.0.199,255.255.255.0,12h\n"), "{peer}");
    assert!(server.contains("\ndhcp-option=tag:net-10-77-0-0,option:dns-server,10.77.0.1,10.77.0.2\n"), "{server}");
    assert!(peer.contains("\ndhcp-option=tag:net-10-77-0-0,option:dns-server,10.77.0.2,10.77.0.1\n"), "{peer}");
    assert!(peer.contains("\nhost-record=server2.example.edu,server2,10.77.0.2\n"), "{peer}");
    assert!(!server.contains("peer"), "the server's file says nothing of the peer: {server}");
    let r = render::render(&lab, Options { dhcp: Dhcp::Isc, dns: Dns::Bind }, &dir.path().join("out")).unwrap();
    let (server, peer) = (text(&r, "dhcpd.conf"), text(&r, "dhcpd-peer.conf"));
    assert!(
        server.contains("  range 10.77.0.150 10.77.0.174;\n") && peer.contains("  range 10.77.0.175 10.77.0.199;\n")
    );
    assert!(peer.contains("# image debian\ngroup {\n  next-server 10.77.0.2;\n"), "{peer}");
    assert!(peer.contains("  option domain-name-servers 10.77.0.2, 10.77.0.1;\n"), "{peer}");
    let outside =
        example_text_in(dir.path(), "").replacen("[[subnet]]", "[peer]\naddress = \"10.99.0.2\"\n\n[[subnet]]", 1);
    assert_eq!(
        problems_of(&outside),
        ["peer.address 10.99.0.2 is in no [[subnet]]; give the peer an address in the subnet it serves"]
    );
}

#[test]
fn check_finds_a_pair_whose_files_answer_differently_or_lend_the_same_addresses() {
    let dir = tempfile::tempdir().unwrap();
    for options in [Options::default(), Options { dhcp: Dhcp::Isc, dns: Dns::Bind }] {
        let lab = pair_example_in(dir.path());
        let out = dir.path().join("out");
        let _ = fs::remove_dir_all(&out);
        render::write(&render::render(&lab, options, &out).unwrap(), &out).unwrap();
        with_kernels(&out);
        assert_eq!(findings(&lab, &out), Vec::<String>::new(), "{options:?}");
        assert_eq!(check::pair(&out, options), []);
    }
    // The peer's file edited by hand: lab3-12 moved, and the whole range lent.
    let out = dir.path().join("out");
    let lab = pair_example_in(dir.path());
    render::write(&render::render(&lab, Options::default(), &out).unwrap(), &out).unwrap();
    let peer = out.join("dnsmasq-peer.conf");
    let text = fs::read_to_string(&peer).unwrap();
    fs::write(
        &peer,
        text.replace("10.77.0.112,lab3-12", "10.77.0.212,lab3-12")
            .replace("10.77.0.175,10.77.0.199", "10.77.0.150,10.77.0.199"),
    )
    .unwrap();
    let found: Vec<String> = check::pair(&out, Options::default()).iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    for (at, part) in [
        (0, "the DHCP pair answers the lab's hosts differently: only "),
        (0, "dhcp-host=52:54:00:77:03:12,set:img-debian,10.77.0.112,lab3-12,infinite"),
        (0, "dhcp-host=52:54:00:77:03:12,set:img-debian,10.77.0.212,lab3-12,infinite"),
        (1, "lends 10.77.0.150-10.77.0.174 and "),
        (1, " lends 10.77.0.150-10.77.0.199, so both may give one address to two machines"),
    ] {
        assert!(found[at].contains(part), "{part:?} not in {}", found[at]);
    }
    assert!(
        findings(&lab, &out).iter().any(|f| f.contains("dnsmasq-peer.conf differs from what the lab file renders"))
    );
}

#[test]
fn arm64_and_power_clients_get_their_grub_by_option_93_or_their_image_and_entries_in_the_one_grub_cfg() {
    let dir = tempfile::tempdir().unwrap();
    let lab = foreign_example_in(dir.path());
    let r = render::render(&lab, Options::default(), &dir.path().join("out")).unwrap();
    let conf = text(&r, "dnsmasq.conf");
    for line in [
        "dhcp-match=set:efi-arm64,option:client-arch,11",
        "dhcp-boot=tag:img-debian-arm64,tag:efi-arm64,debian-arm64/grubnetaa64.efi",
        // SLOF sends no option 93: the host's image alone picks its loader.
        "dhcp-boot=tag:img-debian-ppc64el,debian-ppc64el/grubnetppc.elf",
        "dhcp-host=52:54:00:77:04:02,set:img-debian-ppc64el,10.77.0.142,lab4-2,infinite",
    ] {
        assert!(conf.lines().any(|l| l == line), "{line} missing:\n{conf}");
    }
    let copy = |path: &str| r.files[Path::new(path)].clone();
    assert_eq!(copy("tftproot/debian-arm64/grubnetaa64.efi"), Content::Copy(dir.path().join("grubnetaa64.efi")));
    assert_eq!(copy("tftproot/debian-ppc64el/grubnetppc.elf"), Content::Copy(dir.path().join("grubnetppc.elf")));
    for (path, stray) in [
        ("tftproot/debian-arm64/pxelinux.0", "no BIOS loader for ARM64"),
        ("tftproot/debian-ppc64el/grubnetx64.efi", "no x86 GRUB for POWER"),
        ("tftproot/debian/grubnetaa64.efi", "no ARM64 GRUB for x86"),
    ] {
        assert!(!r.files.contains_key(Path::new(path)), "{stray}: {path}");
    }
    // Every GRUB reads the one grub.cfg: each host's entry by its MAC.
    let grub = text(&r, "tftproot/grub/grub.cfg");
    assert!(grub.contains("if [ \"${net_default_mac}\" = \"52:54:00:77:04:01\" ]; then\n# host lab4-1\n"), "{grub}");
    assert!(
        grub.contains("  linux /debian-arm64/vmlinuz root=/dev/nfs nfsroot=10.77.0.1:/srv/diskless/debian-arm64 console=ttyAMA0 BOOTIF=01-52-54-00-77-04-01\n"),
        "{grub}"
    );
    assert!(
        grub.contains("  linux /debian-ppc64el/vmlinuz root=/dev/nfs nfsroot=10.77.0.1:/srv/diskless/debian-ppc64el console=hvc0 BOOTIF=01-52-54-00-77-04-02\n"),
        "{grub}"
    );
    // Unknown machines get the server subnet's image only on its architecture.
    assert!(
        grub.contains("# machines not in the lab file, of the image's architecture\nif [ \"${grub_cpu}-${grub_platform}\" = \"x86_64-efi\" ]; then\nmenuentry \"diskless debian\""),
        "{grub}"
    );
    assert!(!grub.contains("arm64-efi\" ]") && !grub.contains("powerpc-ieee1275\" ]"), "{grub}");

    let isc = render::render(&lab, Options { dhcp: Dhcp::Isc, dns: Dns::Bind }, &dir.path().join("out")).unwrap();
    let dhcpd = text(&isc, "dhcpd.conf");
    assert!(
        dhcpd.contains(
            "# image debian-arm64\ngroup {\n  next-server 10.77.0.1;\n  option root-path \"10.77.0.1:/srv/diskless/debian-arm64\";\n  filename \"debian-arm64/grubnetaa64.efi\";\n"
        ),
        "{dhcpd}"
    );
    assert!(dhcpd.contains("  filename \"debian-ppc64el/grubnetppc.elf\";\n"), "{dhcpd}");
}

#[test]
fn an_image_for_two_processors_is_a_problem_and_openfirmware_needs_its_loader() {
    let p = problems_of(&format!("{EXAMPLE}{FOREIGN}").replace("[\"uefi-arm64\"]", "[\"uefi-arm64\", \"bios\"]"));
    assert_eq!(
        p,
        ["image \"debian-arm64\": firmware \"uefi-arm64\" and \"bios\" are clients of different processors (arm64, \
          x86); one image boots one kernel: give each architecture an image of its own"]
    );
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{}{FOREIGN}", example_text_in(dir.path(), ""));
    let text = text.replace(&format!("openfirmware = \"{}/grubnetppc.elf\"\n", dir.path().display()), "");
    let lab = Lab::parse(&text).unwrap();
    let e = render::render(&lab, Options::default(), &dir.path().join("out")).unwrap_err().to_string();
    assert!(
        e.starts_with("image \"debian-ppc64el\" serves OpenFirmware clients but [loaders] has no openfirmware; ")
            && e.contains("grub-mkimage -O powerpc-ieee1275"),
        "{e}"
    );
}
