//! The PXE rig: one private namespace that looks like a lab segment.
//!
//! [`PxeRig::new`] creates a [`Netns`] with a bridge `br0` = 10.77.0.1/24 (+ fd77::1/64
//! for the router advertisements that save iPXE ~13 s) and a TFTP root holding
//! `pxelinux.0`, `ldlinux.c32` and the cached kernel as `vmlinuz`. A test then adds the
//! initrd ([`PxeRig::initrd`]), pxelinux configurations ([`PxeRig::pxelinux_default`],
//! [`PxeRig::pxelinux_for`]), one tap per VM NIC ([`PxeRig::tap`], or
//! [`PxeRig::dead_tap`] for a segment where nothing answers) and starts dnsmasq as
//! DHCP + TFTP + DNS with [`PxeRig::dnsmasq_config`] — at once or late, after QEMU.
//!
//! [`PxeRig::vm`] returns a [`Vm`] that runs inside the namespace and boots through
//! SeaBIOS, iPXE and pxelinux into our kernel and initrd (`-boot n`, see
//! [`Vm::pxe`]); [`PxeRig::direct_vm`] boots the same kernel and initrd with `-kernel`
//! on the same segment, for tests about the init rather than the firmware.
//!
//! Nothing here has a route or link to the outside: the namespace holds only `lo`,
//! the bridges and the taps. Servers are killed before the namespace is deleted
//! (field order), and the namespace's own drop kills anything left inside it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::dnsmasq::{Dnsmasq, DnsmasqConfig};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::netns::Netns;
use crate::paths::file_stem;
use crate::vm::Vm;

/// The lab segment's bridge inside the namespace.
pub const BRIDGE: &str = "br0";
/// A second bridge with no address and no server: a dead segment.
pub const DEAD_BRIDGE: &str = "brdead";
/// The server's address (DHCP, TFTP, DNS, NFS, router).
pub const SERVER: &str = "10.77.0.1";
/// A second server address on the bridge, for a DNS server apart from the DHCP one.
pub const SERVER2: &str = "10.77.0.2";
pub const SUBNET: &str = "10.77.0.0/24";
pub const NETMASK: &str = "255.255.255.0";
pub const BROADCAST: &str = "10.77.0.255";
pub const DOMAIN: &str = "example.edu";
/// Root path handed out as DHCP option 17.
pub const ROOT_PATH: &str = "10.77.0.1:/export";

/// The lab host the images' layers are made for: `lab3-12` = 10.77.0.112.
pub const LAB_HOST: &str = "lab3-12";
pub const LAB_IP: &str = "10.77.0.112";

/// Command-line words pxelinux always passes before a test's own.
pub const BASE_APPEND: &str = "console=ttyS0,115200 panic=-1 loglevel=4";

const PXELINUX: &str = "/usr/lib/PXELINUX/pxelinux.0";
const LDLINUX: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
const HINT: &str = "run qemu/setup (packages pxelinux, syslinux-common, ipxe-qemu, dnsmasq-base)";

/// A lab segment in a private namespace with a TFTP root; see the module docs.
pub struct PxeRig {
    // Declaration order is drop order: servers first, then files, the namespace last.
    dnsmasq: Vec<Dnsmasq>,
    tftp: tempfile::TempDir,
    name: String,
    taps: u32,
    ns: Netns,
}

impl PxeRig {
    /// A namespace with the lab bridge and a TFTP root with pxelinux and the cached
    /// kernel. `name` (the test's) names the server logs in `target/qemu-logs/`.
    pub fn new(name: &str) -> Result<PxeRig> {
        for tool in [PXELINUX, LDLINUX] {
            if !Path::new(tool).is_file() {
                return Err(Error::Missing { what: "pxelinux file".into(), path: tool.into(), hint: HINT.into() });
            }
        }
        let ns = Netns::new("dlpx")?;
        ns.add_bridge(BRIDGE, &["10.77.0.1/24", "fd77::1/64"])?;
        let tftp = tempfile::Builder::new()
            .prefix("diskless-tftp")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        // The directory itself must be readable by dnsmasq's unprivileged TFTP process.
        set_mode(tftp.path(), 0o755)?;
        let rig = PxeRig { dnsmasq: Vec::new(), tftp, name: file_stem(name), taps: 0, ns };
        rig.put_file(Path::new(PXELINUX), "pxelinux.0")?;
        rig.put_file(Path::new(LDLINUX), "ldlinux.c32")?;
        rig.put_file(&Kernel::cached().vmlinuz, "vmlinuz")?;
        let cfg = rig.tftp.path().join("pxelinux.cfg");
        std::fs::create_dir_all(&cfg).map_err(|e| Error::io("create directory", &cfg, e))?;
        set_mode(&cfg, 0o755)?;
        Ok(rig)
    }

    /// The namespace (for extra links, servers, `ss`).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// The test name given to [`PxeRig::new`], as a file stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TFTP root.
    pub fn tftp_root(&self) -> &Path {
        self.tftp.path()
    }

    /// Copies `path` into the TFTP root as `initrd.img`, world-readable (dnsmasq serves
    /// nothing else).
    pub fn initrd(&self, path: &Path) -> Result<()> {
        self.put_file(path, "initrd.img").map(drop)
    }

    /// Copies `from` into the TFTP root as `name`, mode 644.
    pub fn put_file(&self, from: &Path, name: &str) -> Result<PathBuf> {
        let to = self.tftp.path().join(name);
        std::fs::copy(from, &to).map_err(|e| Error::io(format!("copy {} to", from.display()), &to, e))?;
        set_mode(&to, 0o644)?;
        Ok(to)
    }

    /// Writes `pxelinux.cfg/default`: kernel `vmlinuz`, initrd `initrd.img`,
    /// `APPEND` [`BASE_APPEND`] + `append`, and `IPAPPEND 2` (BOOTIF=) if `ipappend`.
    pub fn pxelinux_default(&self, append: &str, ipappend: bool) -> Result<PathBuf> {
        self.write_pxelinux("default", append, ipappend)
    }

    /// Writes `pxelinux.cfg/01-<mac with dashes>`, which pxelinux prefers to `default`
    /// for the NIC it booted from.
    pub fn pxelinux_for(&self, mac: &str, append: &str, ipappend: bool) -> Result<PathBuf> {
        self.write_pxelinux(&pxelinux_mac_name(mac), append, ipappend)
    }

    fn write_pxelinux(&self, file: &str, append: &str, ipappend: bool) -> Result<PathBuf> {
        let path = self.tftp.path().join("pxelinux.cfg").join(file);
        std::fs::write(&path, pxelinux_config(append, ipappend)).map_err(|e| Error::io("write", &path, e))?;
        set_mode(&path, 0o644)?;
        Ok(path)
    }

    /// A new tap on the lab bridge; returns its name for [`crate::vm::Nic::tap`].
    pub fn tap(&mut self) -> Result<String> {
        let name = self.next_tap();
        self.ns.add_tap(&name, BRIDGE)?;
        Ok(name)
    }

    /// A new tap on [`DEAD_BRIDGE`], a bridge with no address and nothing else on it:
    /// the NIC has carrier, but no DHCP server ever answers.
    pub fn dead_tap(&mut self) -> Result<String> {
        if !self.ns.links()?.iter().any(|l| l == DEAD_BRIDGE) {
            self.ns.add_bridge(DEAD_BRIDGE, &[])?;
        }
        let name = self.next_tap();
        self.ns.add_tap(&name, DEAD_BRIDGE)?;
        Ok(name)
    }

    fn next_tap(&mut self) -> String {
        self.taps += 1;
        format!("tap{}", self.taps)
    }

    /// The lab's dnsmasq configuration: domain `example.edu` with its reverse zone,
    /// a dynamic range .100-.199, router/DNS = 10.77.0.1, domain name, root path
    /// [`ROOT_PATH`], TFTP from this rig's root with `pxelinux.0`, and RAs. Add hosts
    /// with [`DnsmasqConfig::host`] (A + PTR) or [`dhcp_only_host`] (no DNS record).
    pub fn dnsmasq_config(&self) -> DnsmasqConfig {
        DnsmasqConfig::new(BRIDGE)
            .domain(DOMAIN, SUBNET)
            .dhcp_range("10.77.0.100", "10.77.0.199", NETMASK, "1h")
            .router(SERVER)
            .dns_server(SERVER)
            .domain_name(DOMAIN)
            .root_path(ROOT_PATH)
            .tftp(self.tftp.path(), "pxelinux.0", SERVER)
    }

    /// Starts dnsmasq with `config` and keeps it until the rig drops. Call it before
    /// the VM, or later to play a server that comes up late. `role` names its log
    /// (`<test>-<role>.dnsmasq.log`).
    pub fn start_dnsmasq(&mut self, config: &DnsmasqConfig, role: &str) -> Result<&Dnsmasq> {
        let d = Dnsmasq::start(&self.ns, config, &format!("{}-{role}", self.name))?;
        self.dnsmasq.push(d);
        Ok(self.dnsmasq.last().expect("just pushed"))
    }

    /// The dnsmasq instances started so far, in order.
    pub fn dnsmasq(&self) -> &[Dnsmasq] {
        &self.dnsmasq
    }

    /// Every dnsmasq log so far, each under its path (for failure messages).
    pub fn server_logs(&self) -> String {
        self.dnsmasq.iter().map(|d| format!("--- {} ---\n{}", d.log_path().display(), d.log_text())).collect()
    }

    /// A VM named `name` that runs in this namespace and network-boots ([`Vm::pxe`]).
    /// Add NICs on this rig's taps.
    pub fn vm(&self, name: &str) -> Vm {
        Vm::new(name).netns(&self.ns).pxe()
    }

    /// A VM on this segment that boots the cached kernel and `initrd` directly
    /// (`-kernel`), with `loglevel=4` + `append` on its command line: for tests of the
    /// init's own behaviour (e.g. a server that is late), without 12-14 s of firmware.
    pub fn direct_vm(&self, name: &str, initrd: &Path, append: &str) -> Vm {
        Vm::new(name).netns(&self.ns).initrd(initrd).append("loglevel=4").append(append)
    }
}

/// A DHCP reservation with a name (DHCP option 12) but no DNS record: a client whose
/// address has no PTR record. Use it with a DNS server that is not the DHCP server
/// (dnsmasq publishes the names of its own leases), see `tests/network.rs`.
pub fn dhcp_only_host(config: DnsmasqConfig, mac: &str, ip: &str, hostname: &str) -> DnsmasqConfig {
    config.extra(&format!("dhcp-host={mac},{ip},{hostname},infinite"))
}

/// `52:54:00:77:03:12` -> `01-52-54-00-77-03-12` (ARP type 1 + MAC, as pxelinux asks).
pub fn pxelinux_mac_name(mac: &str) -> String {
    format!("01-{}", mac.to_ascii_lowercase().replace(':', "-"))
}

/// The text of a pxelinux configuration with one entry booting `vmlinuz` +
/// `initrd.img` with [`BASE_APPEND`] + `append`.
pub fn pxelinux_config(append: &str, ipappend: bool) -> String {
    let mut c = String::from("DEFAULT diskless\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\nLABEL diskless\n");
    c.push_str("  KERNEL vmlinuz\n  INITRD initrd.img\n");
    let append = append.trim();
    if append.is_empty() {
        c.push_str(&format!("  APPEND {BASE_APPEND}\n"));
    } else {
        c.push_str(&format!("  APPEND {BASE_APPEND} {append}\n"));
    }
    if ipappend {
        c.push_str("  IPAPPEND 2\n");
    }
    c
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pxelinux_config_has_base_args_test_args_and_ipappend() {
        let c = pxelinux_config("nfsroot=10.77.0.1:/export,vers=3", true);
        assert!(
            c.contains("  APPEND console=ttyS0,115200 panic=-1 loglevel=4 nfsroot=10.77.0.1:/export,vers=3\n"),
            "{c}"
        );
        assert!(c.contains("  KERNEL vmlinuz\n  INITRD initrd.img\n"), "{c}");
        assert!(c.ends_with("  IPAPPEND 2\n"), "{c}");
        assert!(!pxelinux_config("", false).contains("IPAPPEND"));
    }

    #[test]
    fn per_mac_file_name_is_arp_type_and_dashed_lowercase_mac() {
        assert_eq!(pxelinux_mac_name("52:54:00:77:03:AB"), "01-52-54-00-77-03-ab");
    }
}
