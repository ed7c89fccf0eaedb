//! `diskless server check`: the lab file's own problems, then, with the directory
//! render wrote (`--root`), whether the files there still are what the lab renders,
//! whether every host has an A and a PTR record that agree (without a PTR record a
//! client's host and lab layers are silently not applied), whether each image's kernel
//! and initrd are there, readable by TFTP (and HTTP, with `server.http`) and made for
//! each other, whether a `secure_boot` image's shim, GRUB and kernel carry the
//! Authenticode signature the firmware and shim demand, whether the exports cover
//! every image, and, with a `[peer]`, whether the two DHCP servers' files on disk
//! give the lab's hosts the same answers from disjoint dynamic ranges ([`pair`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::render::{self, Content, Dhcp, Dns, Options};
use super::{Lab, Problem};

/// The kernel versions an initrd was built for, as its archive records them; the
/// reader lives with the archive format (the command passes it in), so this module
/// stays free of the decompressors.
pub type InitrdVersions<'a> = &'a dyn Fn(&Path) -> Result<BTreeSet<String>, String>;

/// One problem, with its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Lab(Problem),
    /// The lab cannot be rendered (a loader or kernel missing), so nothing on disk can be compared.
    Render(String),
    /// A file render makes is missing or differs.
    Stale {
        path: PathBuf,
        missing: bool,
    },
    /// A host has no record of this kind, or one that names something else.
    Record {
        host: String,
        kind: &'static str,
        key: String,
        want: String,
        found: Vec<String>,
        source: String,
    },
    /// `--live`: the DNS server did not answer a question about a host.
    Live {
        host: String,
        question: String,
        error: String,
    },
    /// `--live`: a DNS server gave no answer to its first question; its other
    /// questions (about `hosts` hosts) were not asked.
    LiveServer {
        server: String,
        question: String,
        error: String,
        hosts: usize,
    },
    /// The kernel or initrd of an image is missing under the TFTP root.
    BootFileMissing {
        image: String,
        path: PathBuf,
        fix: String,
    },
    /// The TFTP server will refuse it.
    NotWorldReadable {
        image: String,
        path: PathBuf,
    },
    /// A directory on the way to a kernel or initrd that the servers, which run as an
    /// unprivileged user (dnsmasq's TFTP, nginx's workers), cannot enter.
    NotSearchable {
        image: String,
        /// What cannot be served: the file under the TFTP root, or its URL.
        what: String,
        dir: PathBuf,
    },
    /// The initrd holds modules for other kernels only.
    InitrdForOtherKernel {
        image: String,
        path: PathBuf,
        kernel: String,
        found: BTreeSet<String>,
        fix: String,
    },
    /// The initrd cannot be read as an initramfs.
    InitrdUnreadable {
        image: String,
        path: PathBuf,
        error: String,
    },
    /// A `secure_boot` image's loader or kernel has no Authenticode signature, or is
    /// not a PE file at all: Secure Boot refuses it. `image` is `None` for the GRUB
    /// every such image shares.
    Unsigned {
        image: Option<String>,
        path: PathBuf,
        why: String,
        fix: String,
    },
    /// The server's and the peer's DHCP files answer the lab's hosts differently:
    /// a client would get another lease, boot file or root from one than the other.
    PairDiffers {
        server: PathBuf,
        peer: PathBuf,
        only_server: Vec<String>,
        only_peer: Vec<String>,
    },
    /// The server's and the peer's dynamic ranges overlap: both may lend one address to
    /// two machines.
    PairRangesOverlap {
        server: PathBuf,
        peer: PathBuf,
        server_range: (Ipv4Addr, Ipv4Addr),
        peer_range: (Ipv4Addr, Ipv4Addr),
    },
    /// An export file does not serve an image.
    NotExported {
        image: String,
        export: PathBuf,
        file: PathBuf,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let render = "run diskless server render --lab LAB --out ROOT";
        match self {
            Finding::Lab(problem) => write!(f, "{problem}"),
            Finding::Render(error) => write!(f, "{error}"),
            Finding::Stale { path, missing: true } => write!(f, "{} is missing; {render}", path.display()),
            Finding::Stale { path, missing: false } => {
                write!(f, "{} differs from what the lab file renders (edited by hand?); {render}", path.display())
            }
            Finding::Record { host, kind, key, want, found, source } if found.is_empty() => write!(
                f,
                "host \"{host}\": no {kind} record for {key} in {source} (wanted {want}); without it the client's host and \
                 lab layers are not applied; {render}"
            ),
            Finding::Record { host, kind, key, want, found, source } => write!(
                f,
                "host \"{host}\": the {kind} record of {key} in {source} names {} instead of {want}; {render}",
                found.join(", ")
            ),
            Finding::LiveServer { server, question, error, hosts } => write!(
                f,
                "DNS server {server} gave no answer to {question}: {error}; start it from the rendered configuration \
                 (dnsmasq.conf, or dnsmasq-peer.conf on the [peer]), or check the subnets' dns servers (its other \
                 questions, about {hosts} hosts, were not asked)"
            ),
            Finding::Live { host, question, error } => write!(
                f,
                "host \"{host}\": the DNS server gave no answer to {question}: {error}; start it from the rendered \
                 configuration, or check the subnet's dns servers"
            ),
            Finding::BootFileMissing { image, path, fix } => {
                write!(f, "image \"{image}\": {} is missing; {fix}", path.display())
            }
            Finding::NotWorldReadable { image, path } => write!(
                f,
                "image \"{image}\": {} is not world-readable, the TFTP server will refuse it; chmod 644 it",
                path.display()
            ),
            Finding::NotSearchable { image, what, dir } => write!(
                f,
                "image \"{image}\": {what} cannot be served: {} is not searchable by others and the server runs as \
                 an unprivileged user; chmod o+x {}",
                dir.display(),
                dir.display()
            ),
            Finding::InitrdForOtherKernel { image, path, kernel, found, fix } => write!(
                f,
                "image \"{image}\": {} was built for {} but the kernel is {kernel}; {fix}",
                path.display(),
                if found.is_empty() { "no kernel (no lib/modules/VERSION/modules.db)".into() } else { join(found) }
            ),
            Finding::InitrdUnreadable { image, path, error } => write!(
                f,
                "image \"{image}\": {} is not an initramfs: {error}; build it again with mkinitramfs",
                path.display()
            ),
            Finding::Unsigned { image, path, why, fix } => {
                if let Some(image) = image {
                    write!(f, "image \"{image}\": ")?;
                }
                write!(f, "{} {why}, so a client with Secure Boot on refuses it; {fix}", path.display())
            }
            Finding::PairDiffers { server, peer, only_server, only_peer } => write!(
                f,
                "the DHCP pair answers the lab's hosts differently: only {} has [{}], only {} has [{}]; a client \
                 would boot differently from each; {render} and copy the directory to the peer",
                server.display(),
                only_server.join("; "),
                peer.display(),
                only_peer.join("; ")
            ),
            Finding::PairRangesOverlap { server, peer, server_range, peer_range } => write!(
                f,
                "the DHCP pair's dynamic ranges overlap: {} lends {}-{} and {} lends {}-{}, so both may give one \
                 address to two machines; {render} and copy the directory to the peer",
                server.display(),
                server_range.0,
                server_range.1,
                peer.display(),
                peer_range.0,
                peer_range.1
            ),
            Finding::NotExported { image, export, file } => {
                write!(f, "image \"{image}\": {} does not export {}; {render}", file.display(), export.display())
            }
        }
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Which servers the files under `root` are for: ISC or BIND when render wrote theirs.
pub fn options_of(root: &Path) -> Options {
    Options {
        dhcp: if root.join("dhcpd.conf").is_file() { Dhcp::Isc } else { Dhcp::Dnsmasq },
        dns: if root.join("named.conf").is_file() { Dns::Bind } else { Dns::Dnsmasq },
    }
}

/// Every finding; empty when the lab and the files under `root` are consistent.
pub fn check(lab: &Lab, root: Option<&Path>, initrd_versions: InitrdVersions) -> Vec<Finding> {
    let mut findings: Vec<Finding> = lab.problems.iter().cloned().map(Finding::Lab).collect();
    let Some(root) = root else { return findings };
    if !findings.is_empty() {
        return findings;
    }
    let options = options_of(root);
    match render::render(lab, options, root) {
        Ok(rendered) => findings.extend(stale(&rendered, root)),
        Err(error) => findings.push(Finding::Render(error.to_string())),
    }
    findings.extend(records(lab, root, options));
    for image in lab.images() {
        findings.extend(boot_files(image, root, initrd_versions));
        findings.extend(reachable(lab, image, root));
    }
    if lab.images().iter().any(|i| i.secure_boot) {
        let grub = "loaders.uefi_signed must be the signed GRUB (Debian's grubnetx64.efi.signed); render again";
        findings.extend(unsigned(None, root.join(render::SIGNED_GRUB), grub));
    }
    findings.extend(exports(lab, root));
    if lab.file.peer.is_some() {
        findings.extend(pair(root, options));
    }
    findings
}

/// What one DHCP file of the pair tells the lab's hosts (the lines that must be the
/// same in both), and the dynamic ranges it lends from.
fn dhcp_answers(text: &str, dhcp: Dhcp) -> (BTreeSet<String>, Vec<(Ipv4Addr, Ipv4Addr)>) {
    let mut answers = BTreeSet::new();
    let mut ranges = Vec::new();
    let mut in_groups = false;
    for line in text.lines().map(str::trim) {
        match dhcp {
            Dhcp::Dnsmasq => {
                if ["dhcp-host=", "dhcp-boot=", "dhcp-option=tag:img-"].iter().any(|p| line.starts_with(p)) {
                    answers.insert(line.to_string());
                } else if let Some(value) = line.strip_prefix("dhcp-range=") {
                    let addresses: Vec<Ipv4Addr> = value.split(',').filter_map(|f| f.parse().ok()).collect();
                    // `NETWORK,static,MASK` lends nothing; `START,END,MASK,...` does.
                    if !value.contains(",static,")
                        && let [start, end, ..] = addresses[..]
                    {
                        ranges.push((start, end));
                    }
                }
            }
            Dhcp::Isc => {
                in_groups |= line.starts_with("# image ");
                if let Some(range) = line.strip_prefix("range ") {
                    let addresses: Vec<Ipv4Addr> =
                        range.trim_end_matches(';').split_whitespace().filter_map(|a| a.parse().ok()).collect();
                    if let [start, end] = addresses[..] {
                        ranges.push((start, end));
                    }
                } else if in_groups && !line.starts_with("next-server ") {
                    answers.insert(line.to_string());
                }
            }
        }
    }
    (answers, ranges)
}

/// The pair's DHCP files under `root` as they are on disk: the same answers for the
/// lab's hosts, and dynamic ranges that do not overlap.
pub fn pair(root: &Path, options: Options) -> Vec<Finding> {
    let (server_file, peer_file) = match options.dhcp {
        Dhcp::Dnsmasq => (render::Role::Server.files().0, render::Role::Peer.files().0),
        Dhcp::Isc => (render::Role::Server.files().1, render::Role::Peer.files().1),
    };
    let (server, peer) = (root.join(server_file), root.join(peer_file));
    let (Ok(server_text), Ok(peer_text)) = (std::fs::read_to_string(&server), std::fs::read_to_string(&peer)) else {
        // A missing file is already a stale finding.
        return Vec::new();
    };
    let (server_answers, server_ranges) = dhcp_answers(&server_text, options.dhcp);
    let (peer_answers, peer_ranges) = dhcp_answers(&peer_text, options.dhcp);
    let mut findings = Vec::new();
    if server_answers != peer_answers {
        findings.push(Finding::PairDiffers {
            server: server.clone(),
            peer: peer.clone(),
            only_server: server_answers.difference(&peer_answers).cloned().collect(),
            only_peer: peer_answers.difference(&server_answers).cloned().collect(),
        });
    }
    for &server_range in &server_ranges {
        for &peer_range in &peer_ranges {
            if server_range.0 <= peer_range.1 && peer_range.0 <= server_range.1 {
                findings.push(Finding::PairRangesOverlap {
                    server: server.clone(),
                    peer: peer.clone(),
                    server_range,
                    peer_range,
                });
            }
        }
    }
    findings
}

/// Files render would write differently. Copies (loaders, kernels) only need to exist.
fn stale(rendered: &render::Rendered, root: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (relative, content) in &rendered.files {
        let path = root.join(relative);
        let (missing, same) = match content {
            Content::Text(text) => match std::fs::read(&path) {
                Ok(bytes) => (false, bytes == text.as_bytes()),
                Err(_) => (true, false),
            },
            Content::Link(target) => match std::fs::read_link(&path) {
                Ok(found) => (false, found == Path::new(target)),
                Err(_) => (path.symlink_metadata().is_err(), false),
            },
            Content::Copy(_) => (!path.is_file(), true),
        };
        if missing || !same {
            findings.push(Finding::Stale { path, missing });
        }
    }
    findings
}

/// The A and PTR records as the rendered DNS configuration holds them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Records {
    pub a: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    pub ptr: BTreeMap<Ipv4Addr, BTreeSet<String>>,
}

/// dnsmasq's `host-record=NAME[,NAME...],ADDRESS` (A for every name, PTR for the first)
/// and `ptr-record=`.
pub fn dnsmasq_records(text: &str) -> Records {
    let mut records = Records::default();
    for line in text.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("host-record=") {
            let fields: Vec<&str> = value.split(',').map(str::trim).collect();
            let names: Vec<&str> = fields.iter().copied().take_while(|f| f.parse::<Ipv4Addr>().is_err()).collect();
            for address in fields.iter().filter_map(|f| f.parse::<Ipv4Addr>().ok()) {
                for name in &names {
                    records.a.entry(name.to_string()).or_default().insert(address);
                }
                if let Some(first) = names.first() {
                    records.ptr.entry(address).or_default().insert(first.to_string());
                }
            }
        } else if let Some(value) = line.strip_prefix("ptr-record=")
            && let Some((owner, target)) = value.split_once(',')
            && let Some(address) = address_of_ptr(owner)
        {
            records.ptr.entry(address).or_default().insert(target.trim().to_string());
        }
    }
    records
}

/// BIND zone lines `OWNER. [TTL] IN A ADDRESS` and `OWNER. [TTL] IN PTR NAME.` with
/// absolute owners, as render writes them.
pub fn zone_records(text: &str, records: &mut Records) {
    for line in text.lines() {
        let words: Vec<&str> = line.split(';').next().unwrap_or("").split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "A" || *w == "PTR") else { continue };
        let (Some(owner), Some(value)) = (words.first(), words.get(at + 1)) else { continue };
        let owner = owner.trim_end_matches('.');
        match words[at] {
            "A" => {
                if let Ok(address) = value.parse() {
                    records.a.entry(owner.to_string()).or_default().insert(address);
                }
            }
            _ => {
                if let Some(address) = address_of_ptr(owner) {
                    records.ptr.entry(address).or_default().insert(value.trim_end_matches('.').to_string());
                }
            }
        }
    }
}

fn address_of_ptr(owner: &str) -> Option<Ipv4Addr> {
    let reversed = owner.trim_end_matches('.').strip_suffix(".in-addr.arpa")?;
    let mut octets: Vec<u8> = reversed.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
    octets.reverse();
    let octets: [u8; 4] = octets.try_into().ok()?;
    Some(Ipv4Addr::from(octets))
}

fn records(lab: &Lab, root: &Path, options: Options) -> Vec<Finding> {
    let (source, found) = match options.dns {
        Dns::Dnsmasq => {
            let path = root.join("dnsmasq.conf");
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            (path, dnsmasq_records(&text))
        }
        Dns::Bind => {
            let mut found = Records::default();
            let dir = root.join("bind");
            let mut files: Vec<PathBuf> =
                std::fs::read_dir(&dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                zone_records(&std::fs::read_to_string(&file).unwrap_or_default(), &mut found);
            }
            (dir, found)
        }
    };
    agree(lab, &found, &source.display().to_string())
}

/// Every host has an A record with its address and a PTR record naming it back.
pub fn agree(lab: &Lab, found: &Records, source: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for host in &lab.hosts {
        let fqdn = format!("{}.{}", host.name, lab.file.subnets[host.subnet].domain);
        let a = found.a.get(&fqdn).cloned().unwrap_or_default();
        if !a.contains(&host.address) {
            findings.push(Finding::Record {
                host: host.name.clone(),
                kind: "A",
                key: fqdn.clone(),
                want: host.address.to_string(),
                found: a.iter().map(Ipv4Addr::to_string).collect(),
                source: source.into(),
            });
        }
        let ptr = found.ptr.get(&host.address).cloned().unwrap_or_default();
        if ptr.len() != 1 || !ptr.contains(&fqdn) {
            findings.push(Finding::Record {
                host: host.name.clone(),
                kind: "PTR",
                key: host.address.to_string(),
                want: fqdn,
                found: ptr.into_iter().collect(),
                source: source.into(),
            });
        }
    }
    findings
}

fn boot_files(image: &super::schema::Image, root: &Path, initrd_versions: InitrdVersions) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Ok(version) = render::kernel_version(image) else { return findings };
    let dir = root.join("tftproot").join(&image.name);
    let build = format!(
        "mkinitramfs -b {} -o {} {version}",
        image.export.display(),
        dir.join(format!("initrd.img-{version}")).display()
    );
    if image.secure_boot {
        let shim = "loaders.shim must be shim signed by Microsoft (Debian's shimx64.efi.signed); render again";
        findings.extend(unsigned(Some(&image.name), dir.join(render::SHIM), shim));
        let kernel =
            format!("serve the distribution's signed kernel (Debian's linux-image-{version}), or drop secure_boot");
        findings.extend(unsigned(Some(&image.name), dir.join("vmlinuz"), &kernel));
    }
    for (name, fix) in [
        ("vmlinuz", format!("copy vmlinuz-{version} there from the image's /boot")),
        ("initrd.img", format!("build it: {build}")),
    ] {
        let path = dir.join(name);
        // The link's target: what the TFTP server sends.
        let Ok(meta) = std::fs::metadata(&path) else {
            findings.push(Finding::BootFileMissing { image: image.name.clone(), path, fix });
            continue;
        };
        if meta.permissions().mode() & 0o004 == 0 {
            findings.push(Finding::NotWorldReadable { image: image.name.clone(), path: path.clone() });
        }
        if name == "initrd.img" {
            match initrd_versions(&path) {
                Ok(found) if !found.contains(&version) => findings.push(Finding::InitrdForOtherKernel {
                    image: image.name.clone(),
                    path,
                    kernel: version.clone(),
                    found,
                    fix: format!("build it again: {build}"),
                }),
                Ok(_) => {}
                Err(error) => findings.push(Finding::InitrdUnreadable { image: image.name.clone(), path, error }),
            }
        }
    }
    findings
}

/// The finding for `path` when it is present but not signed; a missing file is
/// already named (a stale file, a missing kernel).
fn unsigned(image: Option<&str>, path: PathBuf, fix: &str) -> Option<Finding> {
    let bytes = std::fs::read(&path).ok()?;
    let why = authenticode_signed(&bytes).err()?;
    Some(Finding::Unsigned { image: image.map(str::to_string), path, why, fix: fix.into() })
}

/// Whether the servers reach each image's kernel and initrd: every directory on the
/// way searchable by others. With `server.http` the web server sends the same files
/// (the rendered site serves the TFTP root), so the finding names the URL too. A
/// missing file is [`boot_files`]' finding.
fn reachable(lab: &Lab, image: &super::schema::Image, root: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    for name in ["vmlinuz", "initrd.img"] {
        let path = root.join("tftproot").join(&image.name).join(name);
        if std::fs::metadata(&path).is_err() {
            continue;
        }
        if let Some(dir) = unsearchable(&path) {
            let what = match render::http_url(lab, image, name) {
                Some(url) => format!("{} ({url})", path.display()),
                None => path.display().to_string(),
            };
            findings.push(Finding::NotSearchable { image: image.name.clone(), what, dir });
        }
    }
    findings
}

/// The first directory above `path` that others may not enter.
fn unsearchable(path: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    dirs.reverse();
    dirs.into_iter()
        .find(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// Whether `bytes` are a PE image (an EFI program, or a bzImage with its EFI stub)
/// carrying an Authenticode signature: the certificate table of the optional header's
/// data directory (entry 4) lies inside the file and starts with a PKCS#7
/// WIN_CERTIFICATE. `Err` says what is missing. The signature itself is the
/// firmware's and shim's to verify; this catches the unsigned build, the stripped copy.
pub fn authenticode_signed(bytes: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let not_pe = || "is not a PE/EFI image".to_string();
    if bytes.get(..2) != Some(b"MZ") {
        return Err(not_pe());
    }
    let pe = u32_at(0x3c).ok_or_else(not_pe)?;
    if bytes.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(not_pe());
    }
    let optional = pe + 24;
    // PE32 and PE32+ differ in where the data directories start.
    let (count_at, directories) = match u16_at(optional) {
        Some(0x10b) => (optional + 92, optional + 96),
        Some(0x20b) => (optional + 108, optional + 112),
        _ => return Err(not_pe()),
    };
    const SECURITY: usize = 4;
    let unsigned = || "has no Authenticode signature".to_string();
    if u32_at(count_at).ok_or_else(not_pe)? <= SECURITY {
        return Err(unsigned());
    }
    let entry = directories + SECURITY * 8;
    let (offset, size) = (u32_at(entry).ok_or_else(not_pe)?, u32_at(entry + 4).ok_or_else(not_pe)?);
    if size == 0 {
        return Err(unsigned());
    }
    if offset.checked_add(size).is_none_or(|end| end > bytes.len()) {
        return Err("has a signature table past its end (truncated?)".into());
    }
    // WIN_CERTIFICATE: length, revision, type 2 = PKCS#7 signed data.
    if u16_at(offset + 6) != Some(2) {
        return Err("has a certificate table that holds no PKCS#7 signature".into());
    }
    Ok(())
}

fn exports(lab: &Lab, root: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    let kernel = root.join("exports");
    let ganesha = root.join("ganesha.conf");
    let kernel_text = std::fs::read_to_string(&kernel).unwrap_or_default();
    let ganesha_text = std::fs::read_to_string(&ganesha).unwrap_or_default();
    for image in lab.images() {
        let export = image.export.display().to_string();
        let in_kernel = kernel_text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.split_whitespace().next() == Some(export.as_str()) && l.split_whitespace().nth(1).is_some());
        if !in_kernel {
            findings.push(not_exported(image, &kernel));
        }
        let in_ganesha = ganesha_text.lines().any(|l| l.trim() == format!("Path = \"{export}\";"));
        if !in_ganesha {
            findings.push(not_exported(image, &ganesha));
        }
    }
    findings
}

fn not_exported(image: &super::schema::Image, file: &Path) -> Finding {
    Finding::NotExported { image: image.name.clone(), export: image.export.clone(), file: file.into() }
}

/// One line per finding, then the count.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut out: String = findings.iter().map(|f| format!("problem: {f}\n")).collect();
    out.push_str(&format!("{} problem(s)\n", findings.len()));
    out
}
