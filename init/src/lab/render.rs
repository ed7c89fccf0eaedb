//! `diskless server render`: every server file from the lab file. [`render`] computes
//! the files (sorted, no time stamps, the DNS serial from the zone's content) so that
//! the same lab renders the same bytes; [`write`] puts them under the output directory,
//! whose absolute path the configurations name (`tftp-root=`, zone files).
//!
//! Layout of the output directory:
//! `dnsmasq.conf` (DHCP, DNS and TFTP, or only TFTP with `--dhcp isc --dns bind`),
//! `dhcpd.conf`, `named.conf` + `bind/db.*` (with `--dhcp isc --dns bind`), `exports`
//! (kernel NFS server), `ganesha.conf` (nfs-ganesha EXPORT blocks), and
//! `tftproot/<image>/{pxelinux.0, ldlinux.c32, pxelinux.cfg/, grubnetx64.efi, vmlinuz,
//! initrd.img}` plus `tftproot/grub/grub.cfg` for UEFI clients; a `secure_boot` image
//! has `shimx64.efi` instead of `grubnetx64.efi`, and the signed GRUB that shim fetches
//! is `tftproot/grubx64.efi`. The other client architectures get their GRUB in their
//! image's directory: ARM64 UEFI `grubnetaa64.efi`, OpenFirmware `grubnetppc.elf`;
//! every GRUB reads the same `tftproot/grub/grub.cfg`.
//!
//! With a `[peer]` the peer's configurations are `dnsmasq-peer.conf` and (with
//! `--dhcp isc`) `dhcpd-peer.conf`: the same hosts, options and boot files, the upper
//! half of each dynamic range, the peer as next-server and first DNS server
//! ([`Role`]).
//!
//! With `server.http` the loaders fetch kernel and initrd from that URL and only the
//! loader and its configuration go over TFTP: BIOS clients get `lpxelinux.0` (pxelinux
//! with an HTTP client) instead of `pxelinux.0`, the configurations name
//! `URL/<image>/vmlinuz`, and `nginx.conf` is the web server's site serving
//! `tftproot/` read-only under the URL's path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::schema::{Firmware, Image, NEWEST, Subnet};
use super::{Lab, LabHost};

/// Who answers DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dhcp {
    #[default]
    Dnsmasq,
    /// ISC dhcpd, `dhcpd.conf`.
    Isc,
}

/// Who answers DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dns {
    #[default]
    Dnsmasq,
    /// BIND9: zone files and the `named.conf` stanzas.
    Bind,
}

/// Which server of the DHCP pair a configuration is for (see `schema`'s `[peer]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `[server]`: the whole lab's server, with the lower half of each dynamic range.
    Server,
    /// `[peer]`: the second DHCP server, with the upper half.
    Peer,
}

impl Role {
    /// The DHCP configuration files of this role: dnsmasq's and ISC dhcpd's.
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Role::Server => ("dnsmasq.conf", "dhcpd.conf"),
            Role::Peer => ("dnsmasq-peer.conf", "dhcpd-peer.conf"),
        }
    }

    /// The roles the lab has: the server, and the peer when there is one.
    pub fn of(lab: &Lab) -> Vec<Role> {
        if lab.file.peer.is_some() { vec![Role::Server, Role::Peer] } else { vec![Role::Server] }
    }
}

/// The address and the interface a role's server answers on.
fn own(lab: &Lab, role: Role) -> (Ipv4Addr, Option<&str>) {
    let server = &lab.file.server;
    match (role, &lab.file.peer) {
        (Role::Peer, Some(peer)) => (peer.address.0, peer.interface.as_deref()),
        _ => (server.address.0, server.interface.as_deref()),
    }
}

/// A role's part of `subnet`'s dynamic range: all of it without a peer, else the lower
/// half for the server and the upper half for the peer (none when the range has one
/// address: the server keeps it).
pub fn dynamic_range(lab: &Lab, subnet: &Subnet, role: Role) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let [start, end] = subnet.dynamic?;
    let (start, end) = (u32::from(start.0), u32::from(end.0));
    if lab.file.peer.is_none() {
        return Some((start.into(), end.into()));
    }
    let middle = start + (end - start) / 2;
    match role {
        Role::Server => Some((start.into(), middle.into())),
        Role::Peer if middle < end => Some((Ipv4Addr::from(middle + 1), end.into())),
        Role::Peer => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub dhcp: Dhcp,
    pub dns: Dns,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A copy of this file (a boot loader, a kernel), mode 0644.
    Copy(PathBuf),
    /// A symbolic link with this target.
    Link(String),
}

/// What render makes: files by path relative to the output directory, and what the
/// administrator still has to do (a kernel or initrd not there yet).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    pub files: BTreeMap<PathBuf, Content>,
    pub todo: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the lab file has {} problem(s); run diskless server check --lab FILE and fix them:\n{}", .0.len(), problems(.0))]
    Lab(Vec<super::Problem>),
    #[error("loaders.{key} = \"{}\" does not exist; install Debian's {package} or give its path in [loaders]", .path.display())]
    Loader { key: &'static str, path: PathBuf, package: &'static str },
    #[error(
        "image \"{image}\": kernel = \"newest\" but {} holds no vmlinuz-VERSION; install a kernel in the image or give kernel = \"VERSION\"",
        .boot.display()
    )]
    NoKernel { image: String, boot: PathBuf },
    #[error(
        "image \"{image}\" serves OpenFirmware clients but [loaders] has no openfirmware; build a GRUB netboot image \
         from Debian's grub-ieee1275-bin ({}) and give its path as loaders.openfirmware",
        super::schema::OPENFIRMWARE_MKIMAGE
    )]
    NoOpenfirmwareLoader { image: String },
    #[error("--out {}: not an absolute path; the configurations name it", .0.display())]
    RelativeOut(PathBuf),
    #[error("cannot write {}: {source}; check the output directory's permissions and space", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn problems(list: &[super::Problem]) -> String {
    list.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// The first line of every text file (after the comment character).
pub const HEADER: &str = "Generated by diskless server render from the lab file: edit the lab file and render again.";

/// The UEFI loader's name in each image's TFTP directory.
pub const UEFI_LOADER: &str = "grubnetx64.efi";

/// The first loader of a `secure_boot` image's UEFI clients: shim, signed by Microsoft.
pub const SHIM: &str = "shimx64.efi";

/// Where shim fetches its second stage (Debian's signed GRUB): Debian 12's shim 16
/// asks for `grubx64.efi` (and its optional `revocations_*.efi`,
/// `shim_certificate_0.efi`) at the TFTP root, whatever directory it came from.
/// One file for every `secure_boot` image, as `grub/grub.cfg` is.
pub const SIGNED_GRUB: &str = "tftproot/grubx64.efi";

/// Where grubnetx64.efi reads its configuration, relative to the TFTP root.
pub const GRUB_CFG: &str = "tftproot/grub/grub.cfg";

/// The ARM64 UEFI loader's name in each image's TFTP directory.
pub const UEFI_ARM64_LOADER: &str = "grubnetaa64.efi";

/// The OpenFirmware loader's name in each image's TFTP directory (`loaders.openfirmware`).
pub const OPENFIRMWARE_LOADER: &str = "grubnetppc.elf";

/// GRUB's `${grub_cpu}-${grub_platform}` on the clients of `firmware`; `None` for BIOS
/// (pxelinux). Every GRUB reads `/grub/grub.cfg`: Debian's netboot images try
/// `$prefix/<this>/grub.cfg` first, but only where `test -e` works, which it does not
/// over TFTP. So one file serves them all, and what is per architecture is guarded.
pub fn grub_target(firmware: Firmware) -> Option<&'static str> {
    match firmware {
        Firmware::Bios => None,
        Firmware::Uefi => Some("x86_64-efi"),
        Firmware::UefiArm64 => Some("arm64-efi"),
        Firmware::Openfirmware => Some("powerpc-ieee1275"),
    }
}

/// Whether `image` has clients that boot GRUB.
fn serves_grub(image: &Image) -> bool {
    image.firmware.iter().any(|f| grub_target(*f).is_some())
}

/// The kernel version an image is served with: as given, or the newest in its `/boot`.
pub fn kernel_version(image: &Image) -> Result<String, RenderError> {
    if image.kernel != NEWEST {
        return Ok(image.kernel.clone());
    }
    let boot = image.export.join("boot");
    let mut versions: Vec<String> = std::fs::read_dir(&boot)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_string))
        .collect();
    versions.sort_by(|a, b| crate::scratch::devices::natural_cmp(a, b));
    versions.pop().ok_or_else(|| RenderError::NoKernel { image: image.name.clone(), boot })
}

/// The root of `image` in the kernel's syntax: `SERVER[+SERVER...]:EXPORT[,OPTIONS]`,
/// for `nfsroot=` and the DHCP root-path alike.
pub fn root_path(lab: &Lab, image: &Image) -> String {
    let servers = crate::root::parse::join_servers(&lab.nfs_servers(image), "+");
    let mut root = format!("{servers}:{}", image.export.display());
    if let Some(options) = &image.nfs_options {
        let _ = write!(root, ",{options}");
    }
    root
}

/// The kernel command line of a client of `image` with `extra` parameters.
pub fn append(lab: &Lab, image: &Image, extra: &str) -> String {
    let mut line = format!("root=/dev/nfs nfsroot={}", root_path(lab, image));
    for part in [image.params.as_str(), extra] {
        if !part.trim().is_empty() {
            let _ = write!(line, " {}", part.trim());
        }
    }
    line
}

/// Computes every file; `out` is the absolute directory they will be written to.
pub fn render(lab: &Lab, options: Options, out: &Path) -> Result<Rendered, RenderError> {
    if !lab.problems.is_empty() {
        return Err(RenderError::Lab(lab.problems.clone()));
    }
    if !out.is_absolute() {
        return Err(RenderError::RelativeOut(out.into()));
    }
    let mut r = Rendered::default();
    let loaders = &lab.file.loaders;
    let needs = |firmware| lab.file.images.iter().any(|i| Lab::serves(i, firmware));
    let mut required = vec![];
    if needs(Firmware::Bios) {
        let (key, path) = bios_loader(lab);
        required.push((key, path, "pxelinux"));
        required.push(("ldlinux", &loaders.ldlinux, "syslinux-common"));
    }
    let uefi = |secure_boot: bool| {
        lab.file.images.iter().any(|i| Lab::serves(i, Firmware::Uefi) && i.secure_boot == secure_boot)
    };
    if uefi(false) {
        required.push(("uefi", &loaders.uefi, "grub-efi-amd64-bin"));
        if lab.file.server.http.is_some() {
            required.push(("uefi_http", &loaders.uefi_http, "grub-efi-amd64-bin"));
        }
    }
    if uefi(true) {
        required.push(("shim", &loaders.shim, "shim-signed"));
        required.push(("uefi_signed", &loaders.uefi_signed, "grub-efi-amd64-signed"));
    }
    if needs(Firmware::UefiArm64) {
        required.push(("uefi_arm64", &loaders.uefi_arm64, "grub-efi-arm64-bin"));
    }
    let openfirmware = lab.file.images.iter().find(|i| Lab::serves(i, Firmware::Openfirmware));
    if let Some(image) = openfirmware {
        match &loaders.openfirmware {
            Some(path) => required.push(("openfirmware", path, "grub-ieee1275-bin (built with grub-mkimage)")),
            None => return Err(RenderError::NoOpenfirmwareLoader { image: image.name.clone() }),
        }
    }
    for (key, path, package) in required {
        if !path.is_file() {
            return Err(RenderError::Loader { key, path: path.clone(), package });
        }
    }
    for image in lab.images() {
        tftp_image(lab, image, out, &mut r)?;
    }
    if lab.file.images.iter().any(serves_grub) {
        r.files.insert(GRUB_CFG.into(), Content::Text(grub_cfg(lab)));
    }
    if uefi(false) && lab.file.server.http.is_some() {
        r.files.insert(GRUB_HTTP_MODULE.into(), Content::Copy(loaders.uefi_http.clone()));
    }
    for role in Role::of(lab) {
        let (dnsmasq_conf, dhcpd_conf) = role.files();
        r.files.insert(dnsmasq_conf.into(), Content::Text(dnsmasq(lab, options, out, role)));
        if options.dhcp == Dhcp::Isc {
            r.files.insert(dhcpd_conf.into(), Content::Text(dhcpd(lab, role)));
        }
    }
    if options.dns == Dns::Bind {
        let mut stanzas = format!("# {HEADER}\n# Include this file from named.conf.local.\n");
        for (zone, text) in zones(lab) {
            let file = format!("bind/db.{zone}");
            let _ = writeln!(stanzas, "zone \"{zone}\" {{ type master; file \"{}\"; }};", out.join(&file).display());
            r.files.insert(file.into(), Content::Text(text));
        }
        r.files.insert("named.conf".into(), Content::Text(stanzas));
    }
    if let Some(url) = &lab.file.server.http {
        r.files.insert(NGINX_SITE.into(), Content::Text(nginx_site(url, out)));
    }
    r.files.insert("exports".into(), Content::Text(exports(lab)));
    r.files.insert("ganesha.conf".into(), Content::Text(ganesha(lab)));
    Ok(r)
}

fn tftp_image(lab: &Lab, image: &Image, out: &Path, r: &mut Rendered) -> Result<(), RenderError> {
    let dir = PathBuf::from("tftproot").join(&image.name);
    let version = kernel_version(image)?;
    let kernel = format!("vmlinuz-{version}");
    let initrd = format!("initrd.img-{version}");
    let source = image.export.join("boot").join(&kernel);
    if source.is_file() {
        r.files.insert(dir.join(&kernel), Content::Copy(source));
    } else if !out.join(&dir).join(&kernel).is_file() {
        r.todo.push(format!(
            "image \"{}\": put the kernel at {} (e.g. from the image's /boot)",
            image.name,
            out.join(&dir).join(&kernel).display()
        ));
    }
    if !out.join(&dir).join(&initrd).is_file() {
        r.todo.push(format!(
            "image \"{}\": build the initrd: mkinitramfs -b {} -o {} {version}",
            image.name,
            image.export.display(),
            out.join(&dir).join(&initrd).display()
        ));
    }
    r.files.insert(dir.join("vmlinuz"), Content::Link(kernel));
    r.files.insert(dir.join("initrd.img"), Content::Link(initrd));
    let hosts: Vec<&LabHost> = lab.hosts.iter().filter(|h| h.image == image.name).collect();
    if Lab::serves(image, Firmware::Bios) {
        let loaders = &lab.file.loaders;
        let (key, path) = bios_loader(lab);
        r.files.insert(dir.join(format!("{key}.0")), Content::Copy(path.clone()));
        r.files.insert(dir.join("ldlinux.c32"), Content::Copy(loaders.ldlinux.clone()));
        r.files.insert(dir.join("pxelinux.cfg/default"), Content::Text(pxelinux_cfg(lab, image, None)));
        for host in hosts.iter().filter(|h| !h.params.trim().is_empty()) {
            let name = format!("pxelinux.cfg/01-{}", host.mac.dashed());
            r.files.insert(dir.join(name), Content::Text(pxelinux_cfg(lab, image, Some(host))));
        }
    }
    if Lab::serves(image, Firmware::Uefi) {
        let loaders = &lab.file.loaders;
        if image.secure_boot {
            r.files.insert(dir.join(SHIM), Content::Copy(loaders.shim.clone()));
            r.files.insert(SIGNED_GRUB.into(), Content::Copy(loaders.uefi_signed.clone()));
        } else {
            r.files.insert(dir.join(UEFI_LOADER), Content::Copy(loaders.uefi.clone()));
        }
    }
    if Lab::serves(image, Firmware::UefiArm64) {
        r.files.insert(dir.join(UEFI_ARM64_LOADER), Content::Copy(lab.file.loaders.uefi_arm64.clone()));
    }
    if let (true, Some(path)) = (Lab::serves(image, Firmware::Openfirmware), &lab.file.loaders.openfirmware) {
        r.files.insert(dir.join(OPENFIRMWARE_LOADER), Content::Copy(path.clone()));
    }
    Ok(())
}

/// The BIOS loader: its `[loaders]` key, which is also its file name without `.0`,
/// and where it is copied from. pxelinux.0 speaks only TFTP.
fn bios_loader(lab: &Lab) -> (&'static str, &PathBuf) {
    let loaders = &lab.file.loaders;
    match lab.file.server.http {
        Some(_) => ("lpxelinux", &loaders.lpxelinux),
        None => ("pxelinux", &loaders.pxelinux),
    }
}

/// Where grubnetx64.efi loads its http module from (its prefix is the TFTP root's
/// `grub/`), relative to the output directory.
pub const GRUB_HTTP_MODULE: &str = "tftproot/grub/x86_64-efi/http.mod";

/// The rendered nginx site, relative to the output directory.
pub const NGINX_SITE: &str = "nginx.conf";

/// The directory the web server serves under the URL's path: the TFTP root, so that
/// both servers send the same files and `diskless server kernel` switches both.
pub fn http_document_root(out: &Path) -> PathBuf {
    out.join("tftproot")
}

/// The URL of `file` of `image` when the lab has `server.http`.
pub fn http_url(lab: &Lab, image: &Image, file: &str) -> Option<String> {
    lab.file.server.http.as_ref().map(|url| format!("{url}/{}/{file}", image.name))
}

/// How pxelinux's configuration names `file` of `image`: relative to pxelinux's own
/// TFTP directory, or its URL.
fn pxelinux_path(lab: &Lab, image: &Image, file: &str) -> String {
    http_url(lab, image, file).unwrap_or_else(|| file.into())
}

/// How grub.cfg names `file` of `image`: from the TFTP root, or on GRUB's http device
/// (`(http,ADDRESS[:PORT])/PATH`).
fn grub_path(lab: &Lab, image: &Image, file: &str) -> String {
    match &lab.file.server.http {
        Some(url) => format!("(http,{}){}/{}/{file}", url.authority(), url.path, image.name),
        None => format!("/{}/{file}", image.name),
    }
}

/// The nginx site (a `server` block for nginx's `http` block, as in `sites-enabled/`):
/// the TFTP root read-only under the URL's path, on the URL's address and port.
fn nginx_site(url: &super::schema::HttpUrl, out: &Path) -> String {
    let site = out.join(NGINX_SITE);
    let root = http_document_root(out);
    [
        format!("# {HEADER}"),
        format!("# The web server of server.http = \"{url}\": kernels and initrds for the loaders."),
        format!("# Enable it: ln -s {} /etc/nginx/sites-enabled/diskless", site.display()),
        "server {".into(),
        format!("    listen {}:{};", url.address, url.port),
        format!("    location {}/ {{", url.path),
        format!("        alias {}/;", root.display()),
        "        limit_except GET { deny all; }".into(),
        "    }".into(),
        "}".into(),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}

fn pxelinux_cfg(lab: &Lab, image: &Image, host: Option<&LabHost>) -> String {
    let who = match host {
        Some(h) => format!("host {} ({})", h.name, h.mac),
        None => "every client without a file of its own".into(),
    };
    let append = append(lab, image, host.map_or("", |h| h.params.as_str()));
    format!(
        "# {HEADER}\n# Image {}, {who}.\nDEFAULT diskless\nPROMPT 0\nTIMEOUT 0\n{}LABEL diskless\n  KERNEL {}\n  \
         INITRD {}\n  APPEND {append}\n  IPAPPEND 2\n",
        image.name,
        serial_directive(&append),
        pxelinux_path(lab, image, "vmlinuz"),
        pxelinux_path(lab, image, "initrd.img"),
    )
}

/// `SERIAL PORT BAUD` when the kernel's console is a serial port (`console=ttyS0,115200`),
/// so that pxelinux's own messages (a missing kernel, ...) reach the same console.
fn serial_directive(append: &str) -> String {
    let Some(console) = append.split_whitespace().filter_map(|w| w.strip_prefix("console=ttyS")).next_back() else {
        return String::new();
    };
    let (port, options) = console.split_once(',').unwrap_or((console, ""));
    let baud: String = options.chars().take_while(char::is_ascii_digit).collect();
    match port.parse::<u8>() {
        Ok(port) if baud.is_empty() => format!("SERIAL {port}\n"),
        Ok(port) => format!("SERIAL {port} {baud}\n"),
        Err(_) => String::new(),
    }
}

/// The grub.cfg of every GRUB client (each reads `/grub/grub.cfg` of the
/// TFTP root whatever directory it was loaded from): an entry per known MAC, then the
/// server subnet's image for the others.
fn grub_cfg(lab: &Lab) -> String {
    let mut cfg = format!("# {HEADER}\nset timeout=0\nset default=0\n");
    let entry = |image: &Image, extra: &str, bootif: &str| {
        format!(
            "menuentry \"diskless {}\" {{\n  linux {} {}{bootif}\n  initrd {}\n}}\n",
            image.name,
            grub_path(lab, image, "vmlinuz"),
            append(lab, image, extra),
            grub_path(lab, image, "initrd.img"),
        )
    };
    for host in &lab.hosts {
        let Some(image) = lab.image(&host.image).filter(|i| serves_grub(i)) else { continue };
        let _ = write!(
            cfg,
            "if [ \"${{net_default_mac}}\" = \"{}\" ]; then\n# host {}\n{}fi\n",
            host.mac,
            host.name,
            entry(image, &host.params, &format!(" BOOTIF=01-{}", host.mac.dashed()))
        );
    }
    match lab.server_subnet().and_then(|s| s.image.as_deref()).and_then(|i| lab.image(i)) {
        Some(image) if serves_grub(image) => {
            cfg.push_str("# machines not in the lab file, of the image's architecture\n");
            for target in image.firmware.iter().filter_map(|f| grub_target(*f)) {
                let _ = write!(
                    cfg,
                    "if [ \"${{grub_cpu}}-${{grub_platform}}\" = \"{target}\" ]; then\n{}fi\n",
                    entry(image, "", "")
                );
            }
        }
        _ => cfg.push_str("# machines not in the lab file: no image (the server's subnet names none for GRUB)\n"),
    }
    cfg
}

/// The boot file of `image` for `firmware`, relative to the TFTP root.
pub fn boot_file(lab: &Lab, image: &Image, firmware: Firmware) -> String {
    let name = &image.name;
    match firmware {
        Firmware::Bios => format!("{name}/{}.0", bios_loader(lab).0),
        Firmware::Uefi if image.secure_boot => format!("{name}/{SHIM}"),
        Firmware::Uefi => format!("{name}/{UEFI_LOADER}"),
        Firmware::UefiArm64 => format!("{name}/{UEFI_ARM64_LOADER}"),
        Firmware::Openfirmware => format!("{name}/{OPENFIRMWARE_LOADER}"),
    }
}

/// The dnsmasq tag condition that picks `firmware`'s boot file by DHCP option 93 (the
/// `dhcp-match` lines set the tags). OpenFirmware has none: SLOF sends no option 93,
/// and its image serves no other firmware (one processor per image).
fn dnsmasq_arch(firmware: Firmware) -> Option<&'static str> {
    match firmware {
        Firmware::Bios => Some("tag:!efi64"),
        Firmware::Uefi => Some("tag:efi64"),
        Firmware::UefiArm64 => Some("tag:efi-arm64"),
        Firmware::Openfirmware => None,
    }
}

/// `dhcp-boot` lines of `image` after `tags` (`tag:img-NAME`, ...), one per firmware.
fn dnsmasq_boot(lab: &Lab, image: &Image, tags: &str) -> String {
    let mut lines = String::new();
    for firmware in Firmware::ALL.into_iter().filter(|f| Lab::serves(image, *f)) {
        let arch = dnsmasq_arch(firmware).map(|a| format!("{a},")).unwrap_or_default();
        let _ = writeln!(lines, "dhcp-boot={tags},{arch}{}", boot_file(lab, image, firmware));
    }
    lines
}

/// dnsmasq's tag for the clients of a subnet (set by its dhcp-range).
fn subnet_tag(subnet: &Subnet) -> String {
    format!("net-{}", subnet.network.network.to_string().replace('.', "-"))
}

fn subnets_sorted(lab: &Lab) -> Vec<&Subnet> {
    let mut subnets: Vec<&Subnet> = lab.file.subnets.iter().collect();
    subnets.sort_by_key(|s| s.network);
    subnets
}

/// The DNS servers a subnet's clients are given: the subnet's `dns`, else the server
/// (and the peer).
pub fn dns_servers(lab: &Lab, subnet: &Subnet) -> Vec<Ipv4Addr> {
    match &subnet.dns {
        Some(list) => list.iter().map(|a| a.0).collect(),
        None => std::iter::once(lab.file.server.address.0).chain(lab.file.peer.iter().map(|p| p.address.0)).collect(),
    }
}

/// [`dns_servers`] as `role`'s server hands them out: itself first when it is one of them.
fn dns_servers_of(lab: &Lab, subnet: &Subnet, role: Role) -> Vec<Ipv4Addr> {
    let mut list = dns_servers(lab, subnet);
    let me = own(lab, role).0;
    if let Some(at) = list.iter().position(|a| *a == me) {
        list[..=at].rotate_right(1);
    }
    list
}

fn log_servers(subnet: &Subnet) -> Vec<Ipv4Addr> {
    subnet.syslog.iter().map(|a| a.0).collect()
}

fn join<T: ToString>(items: &[T], separator: &str) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(separator)
}

/// The name and address records every DNS server of the lab holds: (fqdn, address).
pub fn records(lab: &Lab) -> Vec<(String, Ipv4Addr)> {
    let server = &lab.file.server;
    let mut records = BTreeSet::new();
    if let Some(subnet) = lab.server_subnet() {
        records.insert((format!("{}.{}", server.name, subnet.domain), server.address.0));
    }
    if let Some(peer) = &lab.file.peer
        && let Some(subnet) = lab.file.subnets.iter().find(|s| s.network.contains(peer.address.0))
    {
        records.insert((format!("{}.{}", peer.name, subnet.domain), peer.address.0));
    }
    for host in &lab.hosts {
        records.insert((format!("{}.{}", host.name, lab.file.subnets[host.subnet].domain), host.address));
    }
    records.into_iter().collect()
}

fn dnsmasq(lab: &Lab, options: Options, out: &Path, role: Role) -> String {
    let (address, interface) = own(lab, role);
    let mut c = format!("# {HEADER}\n# Run: dnsmasq --conf-file={}\n", out.join(role.files().0).display());
    if role == Role::Peer {
        c.push_str("# On the peer, with a copy of this directory at the same path (rsync after each render).\n");
    }
    match interface {
        Some(interface) => {
            let _ = write!(c, "interface={interface}\nexcept-interface=lo\n");
        }
        None => {
            let _ = writeln!(c, "listen-address={address}");
        }
    }
    c.push_str("bind-interfaces\nno-resolv\nno-hosts\n");
    if options.dns == Dns::Dnsmasq {
        c.push_str("\n# DNS: an A and a PTR record per host\n");
        let mut zones = BTreeSet::new();
        for subnet in subnets_sorted(lab) {
            let _ = writeln!(c, "domain={},{}", subnet.domain, subnet.network);
            zones.insert(subnet.domain.clone());
            zones.insert(reverse_zone(subnet));
        }
        for zone in zones {
            let _ = writeln!(c, "local=/{zone}/");
        }
        for (fqdn, address) in records(lab) {
            let short = fqdn.split('.').next().unwrap_or(&fqdn);
            let _ = writeln!(c, "host-record={fqdn},{short},{address}");
        }
    } else {
        c.push_str("\n# DNS is BIND's (named.conf)\nport=0\n");
    }
    if options.dhcp == Dhcp::Dnsmasq {
        c.push_str("\n# DHCP: a fixed address and boot file per host; the boot file by DHCP option 93\n");
        // The lab's server owns its subnets (the HOWTO's dhcpd is authoritative too):
        // a client asking for an address from elsewhere is told no at once.
        c.push_str("dhcp-authoritative\n");
        for subnet in subnets_sorted(lab) {
            let tag = subnet_tag(subnet);
            match dynamic_range(lab, subnet, role) {
                Some((start, end)) => {
                    let _ = writeln!(c, "dhcp-range=set:{tag},{start},{end},{},12h", subnet.network.netmask());
                }
                None => {
                    let _ = writeln!(
                        c,
                        "dhcp-range=set:{tag},{},static,{}",
                        subnet.network.network,
                        subnet.network.netmask()
                    );
                }
            }
            if let Some(router) = subnet.router {
                let _ = writeln!(c, "dhcp-option=tag:{tag},option:router,{}", router.0);
            }
            let _ = writeln!(
                c,
                "dhcp-option=tag:{tag},option:dns-server,{}",
                join(&dns_servers_of(lab, subnet, role), ",")
            );
            let _ = writeln!(c, "dhcp-option=tag:{tag},option:domain-name,{}", subnet.domain);
            if !subnet.syslog.is_empty() {
                let _ = writeln!(c, "dhcp-option=tag:{tag},option:log-server,{}", join(&log_servers(subnet), ","));
            }
        }
        c.push_str("dhcp-match=set:efi64,option:client-arch,7\ndhcp-match=set:efi64,option:client-arch,9\n");
        if lab.file.images.iter().any(|i| Lab::serves(i, Firmware::UefiArm64)) {
            c.push_str("dhcp-match=set:efi-arm64,option:client-arch,11\n");
        }
        c.push_str("dhcp-userclass=set:ipxe,iPXE\ndhcp-option=tag:ipxe,encap:175,176,1b\n");
        for host in &lab.hosts {
            let _ =
                writeln!(c, "dhcp-host={},set:img-{},{},{},infinite", host.mac, host.image, host.address, host.name);
        }
        for image in lab.images() {
            c.push_str(&dnsmasq_boot(lab, image, &format!("tag:img-{}", image.name)));
            let _ = writeln!(c, "dhcp-option=tag:img-{},option:root-path,\"{}\"", image.name, root_path(lab, image));
        }
        for subnet in subnets_sorted(lab) {
            let Some(image) = subnet.image.as_deref().and_then(|i| lab.image(i)) else { continue };
            c.push_str(&dnsmasq_boot(lab, image, &format!("tag:!known,tag:{}", subnet_tag(subnet))));
        }
    } else {
        c.push_str("\n# DHCP is ISC dhcpd's (dhcpd.conf)\n");
    }
    let _ = write!(c, "\n# TFTP\nenable-tftp\ntftp-root={}\n", out.join("tftproot").display());
    c
}

/// The `filename` statement(s) of a client of `image`, chosen by DHCP option 93.
fn isc_filename(lab: &Lab, image: &Image, indent: &str) -> String {
    let bios = format!("filename \"{}\";", boot_file(lab, image, Firmware::Bios));
    let uefi = format!("filename \"{}\";", boot_file(lab, image, Firmware::Uefi));
    match (Lab::serves(image, Firmware::Bios), Lab::serves(image, Firmware::Uefi)) {
        (true, true) => format!(
            "{indent}if option arch = 00:07 or option arch = 00:09 {{\n{indent}  {uefi}\n{indent}}} else {{\n{indent}  {bios}\n{indent}}}\n"
        ),
        (false, true) => format!("{indent}{uefi}\n"),
        (true, false) => format!("{indent}{bios}\n"),
        // The other processors' images serve one firmware each (one kernel per image).
        (false, false) => match image.firmware.first() {
            Some(&firmware) => format!("{indent}filename \"{}\";\n", boot_file(lab, image, firmware)),
            None => format!("{indent}{bios}\n"),
        },
    }
}

fn dhcpd(lab: &Lab, role: Role) -> String {
    let server = own(lab, role).0;
    let mut c = format!(
        "# {HEADER}\ndefault-lease-time 604800;\nmax-lease-time 604800;\nddns-update-style none;\nauthoritative;\n\
         option arch code 93 = unsigned integer 16;\n"
    );
    for subnet in subnets_sorted(lab) {
        let n = subnet.network;
        let _ = write!(
            c,
            "\nsubnet {} netmask {} {{\n  option broadcast-address {};\n",
            n.network,
            n.netmask(),
            n.broadcast()
        );
        if let Some(router) = subnet.router {
            let _ = writeln!(c, "  option routers {};", router.0);
        }
        let _ = write!(
            c,
            "  option domain-name-servers {};\n  option domain-name \"{}\";\n  next-server {server};\n",
            join(&dns_servers_of(lab, subnet, role), ", "),
            subnet.domain
        );
        if !subnet.syslog.is_empty() {
            let _ = writeln!(c, "  option log-servers {};", join(&log_servers(subnet), ", "));
        }
        if let Some((start, end)) = dynamic_range(lab, subnet, role) {
            let _ = writeln!(c, "  range {start} {end};");
            if let Some(image) = subnet.image.as_deref().and_then(|i| lab.image(i)) {
                c.push_str(&isc_filename(lab, image, "  "));
            }
        }
        c.push_str("}\n");
    }
    for image in lab.images() {
        let _ = write!(
            c,
            "\n# image {}\ngroup {{\n  next-server {server};\n  option root-path \"{}\";\n",
            image.name,
            root_path(lab, image)
        );
        c.push_str(&isc_filename(lab, image, "  "));
        for host in lab.hosts.iter().filter(|h| h.image == image.name) {
            let _ = write!(
                c,
                "  host {} {{\n    hardware ethernet {};\n    fixed-address {};\n    option host-name \"{}\";\n  }}\n",
                host.name, host.mac, host.address, host.name
            );
        }
        c.push_str("}\n");
    }
    c
}

/// The reverse zone of a subnet: whole octets covering it (a /26 is in its /24's zone).
pub fn reverse_zone(subnet: &Subnet) -> String {
    let octets = (usize::from(subnet.network.prefix) / 8).clamp(1, 3);
    let mut parts: Vec<String> = subnet.network.network.octets()[..octets].iter().map(u8::to_string).collect();
    parts.reverse();
    format!("{}.in-addr.arpa", parts.join("."))
}

/// The PTR owner name of an address.
pub fn ptr_name(address: Ipv4Addr) -> String {
    let o = address.octets();
    format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
}

/// The zone files by zone name: forward zones with A records, reverse with PTR.
fn zones(lab: &Lab) -> BTreeMap<String, String> {
    let mut bodies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for subnet in &lab.file.subnets {
        bodies.entry(subnet.domain.clone()).or_default();
        bodies.entry(reverse_zone(subnet)).or_default();
    }
    for (fqdn, address) in records(lab) {
        let Some(subnet) = lab.file.subnets.iter().find(|s| s.network.contains(address)) else { continue };
        bodies.entry(subnet.domain.clone()).or_default().insert(format!("{fqdn}. IN A {address}"));
        bodies.entry(reverse_zone(subnet)).or_default().insert(format!("{}. IN PTR {fqdn}.", ptr_name(address)));
    }
    let server = &lab.file.server;
    let domain = lab.server_subnet().map_or("invalid", |s| s.domain.as_str());
    let ns = format!("{}.{domain}.", server.name);
    bodies
        .into_iter()
        .map(|(zone, records)| {
            let body: String = records.iter().map(|r| format!("{r}\n")).collect();
            let serial = serial(&format!("{zone}\n{ns}\n{body}"));
            let text = format!(
                "; {HEADER}\n$TTL 3600\n@ IN SOA {ns} hostmaster.{domain}. ( {serial} 3600 900 604800 300 )\n@ IN NS {ns}\n{body}"
            );
            (zone, text)
        })
        .collect()
}

/// The zone serial from the zone's content (FNV-1a): the same records, the same serial,
/// so rendering twice changes nothing; different records, (almost surely) another.
fn serial(content: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in content.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    // 1..=2^31-1: a positive serial in any resolver's arithmetic.
    hash % 0x7fff_ffff + 1
}

/// The subnets whose clients mount `image`: those of its hosts and those whose
/// unknown machines boot it; all subnets when none does.
fn image_subnets<'a>(lab: &'a Lab, image: &Image) -> Vec<&'a Subnet> {
    let used: Vec<&Subnet> = subnets_sorted(lab)
        .into_iter()
        .filter(|s| {
            s.image.as_deref() == Some(image.name.as_str())
                || lab.hosts.iter().any(|h| h.image == image.name && s.network.contains(h.address))
        })
        .collect();
    if used.is_empty() { subnets_sorted(lab) } else { used }
}

fn exports(lab: &Lab) -> String {
    let mut c = format!(
        "# {HEADER}\n# /etc/exports: the image read-only for its subnets, read-write for its maintenance host.\n"
    );
    for image in lab.images() {
        let _ = write!(c, "{}", image.export.display());
        if let Some(host) = image.maintenance {
            let _ = write!(c, " {}(rw,async,no_root_squash,no_subtree_check)", host.0);
        }
        for subnet in image_subnets(lab, image) {
            let _ = write!(c, " {}(ro,async,no_root_squash,no_subtree_check)", subnet.network);
        }
        c.push('\n');
    }
    c
}

fn ganesha(lab: &Lab) -> String {
    let mut c = format!("# {HEADER}\n# nfs-ganesha: %include this file from ganesha.conf.\n");
    for (id, image) in lab.images().into_iter().enumerate() {
        let path = image.export.display();
        let _ = write!(
            c,
            "\nEXPORT {{\n  Export_Id = {};\n  Path = \"{path}\";\n  Pseudo = \"{path}\";\n  Protocols = 3, 4;\n  \
             Transports = TCP;\n  Access_Type = None;\n  Squash = No_Root_Squash;\n  SecType = sys;\n",
            id + 1
        );
        if let Some(host) = image.maintenance {
            let _ = writeln!(c, "  CLIENT {{ Clients = {}; Access_Type = RW; }}", host.0);
        }
        for subnet in image_subnets(lab, image) {
            let _ = writeln!(c, "  CLIENT {{ Clients = {}; Access_Type = RO; }}", subnet.network);
        }
        c.push_str("  FSAL { Name = VFS; }\n}\n");
    }
    c
}

/// What render reports: the files written, then what is still to do.
pub fn summary(rendered: &Rendered, out: &Path) -> String {
    let mut text = format!("wrote {} files under {}:\n", rendered.files.len(), out.display());
    for (path, content) in &rendered.files {
        let _ = match content {
            Content::Link(target) => writeln!(text, "  {} -> {target}", path.display()),
            _ => writeln!(text, "  {}", path.display()),
        };
    }
    for todo in &rendered.todo {
        let _ = writeln!(text, "todo: {todo}");
    }
    text
}

/// Writes `rendered` under `out`: directories made, files replaced, links re-pointed.
pub fn write(rendered: &Rendered, out: &Path) -> Result<(), RenderError> {
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Write { path, source }
    };
    for (relative, content) in &rendered.files {
        let path = out.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail(parent))?;
        }
        match content {
            Content::Text(text) => write_file(&path, text.as_bytes()).map_err(fail(&path))?,
            Content::Copy(source) => {
                let bytes = std::fs::read(source).map_err(fail(source))?;
                write_file(&path, &bytes).map_err(fail(&path))?;
            }
            Content::Link(target) => link(&path, target).map_err(fail(&path))?,
        }
    }
    Ok(())
}

/// Points the symbolic link `path` at `target`, unless it already does. Replaced by
/// a rename so that the link is never missing for a client.
pub(crate) fn link(path: &Path, target: &str) -> io::Result<()> {
    if std::fs::read_link(path).ok().as_deref() == Some(Path::new(target)) {
        return Ok(());
    }
    let temporary = temporary_of(path);
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)?;
    std::fs::rename(&temporary, path)
}

/// Writes `bytes` world-readable (TFTP servers serve only such files), through a
/// temporary file and a rename.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    }
    let temporary = temporary_of(path);
    std::fs::write(&temporary, bytes)?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&temporary, path)
}

/// `NAME.diskless-new` beside `path`: where a file is made before it is renamed into place.
fn temporary_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".diskless-new");
    path.with_file_name(name)
}
