//! Lab servers from `diskless server render`'s files, with no hand edits: the lab file
//! of one busybox image and its hosts (`lab3-12`, or a room of them for a boot storm:
//! [`LabSpec`]), the rendered tree with the cached kernel and the
//! real initrd in it (and `diskless server check --root` clean before anything
//! starts), dnsmasq from the rendered `dnsmasq.conf`, nginx from the rendered
//! `nginx.conf` when the lab has `server.http`, and the rig's nfs-ganesha exporting
//! the image at its own path as the rendered `ganesha.conf` does. Used by
//! `tests/lab_server.rs`, `tests/lab_http.rs`, `qemu/bench-pxe` and `qemu/bench-storm`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::build::{build_initramfs, release_binaries};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::netns::{Listening, Netns};
use crate::nfs::{NfsExport, NfsServer, image_dir};
use crate::nginx::Nginx;
use crate::paths::log_dir;
use crate::process::ChildGuard;
use crate::pxe::BASE_APPEND;
use crate::vm::{Firmware, Machine, Nic, Vm};

/// The lab's bridge in the namespace; the rendered dnsmasq serves this interface.
pub const BRIDGE: &str = "br0";
/// lab3-12's MAC, on `tap0`.
pub const MAC: &str = "52:54:00:77:03:12";
pub const HOST: &str = "lab3-12";
/// The URL of `server.http` in [`LabServer`] labs that use HTTP.
pub const HTTP_URL: &str = "http://10.77.0.1/diskless";

/// Runs the release `diskless` with `args`, inside `ns` when given.
pub fn diskless(args: &[&str], ns: Option<&Netns>) -> Output {
    let bin = release_binaries().init.with_file_name("diskless");
    let mut cmd = match ns {
        Some(ns) => ns.command(&bin),
        None => Command::new(&bin),
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

/// A command's stdout and stderr, for assertions and messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A host of the test labs: `lab3-N` with MAC `52:54:00:77:03:NN` and address
/// `10.77.0.(100+N)` on its own tap. N = 12 is [`HOST`], whose host layer the busybox
/// image carries; every `lab3-*` gets the image's lab layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabHost {
    pub name: String,
    pub mac: String,
    pub address: String,
    pub tap: String,
}

impl LabHost {
    /// lab3-`n` on `tap`; `n` from 1 to 49 keeps the address below the dynamic range.
    pub fn lab3(n: u8, tap: &str) -> LabHost {
        assert!((1..=49).contains(&n), "lab3-{n}: the lab's fixed addresses are 10.77.0.101-149");
        LabHost {
            name: format!("lab3-{n}"),
            mac: format!("52:54:00:77:03:{n:02}"),
            address: format!("10.77.0.{}", 100 + u16::from(n)),
            tap: tap.to_string(),
        }
    }

    /// `count` hosts from lab3-12 on, on tap0, tap1, ...: a room for a storm.
    pub fn room(count: usize) -> Vec<LabHost> {
        (0..count).map(|i| LabHost::lab3(12 + u8::try_from(i).expect("a small room"), &format!("tap{i}"))).collect()
    }
}

/// What the test labs of one busybox image vary: its hosts, firmware list, kernel
/// parameters, NFS options and extra keys, `server.http`, a `[loaders]` table, more
/// top-level tables, and the initrd served.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// The image's name.
    pub image: String,
    /// Host 0 is the one [`LabServer::client`] boots.
    pub hosts: Vec<LabHost>,
    pub firmware: Vec<&'static str>,
    /// The image's `params`.
    pub params: String,
    /// The image's `nfs_options`.
    pub nfs_options: String,
    /// Lines added to the `[[image]]` table, e.g. `secure_boot = true`.
    pub image_keys: String,
    /// `server.http = HTTP_URL`: kernel and initrd over HTTP from nginx.
    pub http: bool,
    /// A `[loaders]` table, or "".
    pub loaders: String,
    /// Top-level tables after the hosts, e.g. a `[peer]`, or "".
    pub tables: String,
    /// Served in place of our initrd (after `check --root` passed with ours), e.g.
    /// initramfs-tools' for a benchmark.
    pub initrd: Option<PathBuf>,
}

impl LabSpec {
    /// lab3-12 on tap0, the image served to `firmware` (`"bios"`, `"uefi"`) with the
    /// rig's kernel parameters and NFSv3, over TFTP, with our initrd.
    pub fn new(firmware: &[&'static str]) -> LabSpec {
        LabSpec {
            image: "busybox".to_string(),
            hosts: LabHost::room(1),
            firmware: firmware.to_vec(),
            params: BASE_APPEND.to_string(),
            nfs_options: "vers=3".to_string(),
            image_keys: String::new(),
            http: false,
            loaders: String::new(),
            tables: String::new(),
            initrd: None,
        }
    }
}

/// The lab file of one image at `export` served with `kernel` as `spec` says.
pub fn lab_file(kernel: &str, export: &Path, spec: &LabSpec) -> String {
    let firmware: Vec<String> = spec.firmware.iter().map(|f| format!("\"{f}\"")).collect();
    let http = if spec.http { format!("http = \"{HTTP_URL}\"\n") } else { String::new() };
    let mut text = format!(
        r#"[server]
address = "10.77.0.1"
interface = "{BRIDGE}"
{http}
{loaders}

[[subnet]]
network = "10.77.0.0/24"
router = "10.77.0.1"
domain = "example.edu"
dynamic = ["10.77.0.150", "10.77.0.199"]

[[image]]
name = "{image}"
export = "{export}"
kernel = "{kernel}"
firmware = [{firmware}]
params = "{params}"
nfs_options = "{nfs_options}"
{image_keys}"#,
        image = spec.image,
        export = export.display(),
        firmware = firmware.join(", "),
        loaders = spec.loaders,
        params = spec.params,
        nfs_options = spec.nfs_options,
        image_keys = spec.image_keys,
    );
    for host in &spec.hosts {
        text.push_str(&format!(
            "\n[[host]]\nname = \"{}\"\nmac = \"{}\"\naddress = \"{}\"\nimage = \"{}\"\n",
            host.name, host.mac, host.address, spec.image
        ));
    }
    text.push_str(&spec.tables);
    text
}

/// An image of a rendered lab: its name, the kernel its clients boot and their initrd.
pub struct ServedImage<'a> {
    pub name: &'a str,
    pub kernel: &'a Kernel,
    pub initrd: &'a Path,
}

/// A lab file rendered into `dir/out` with the cached kernel and the real initrd
/// copied beside each image's links, and `check --root` clean.
pub struct RenderedLab {
    pub dir: tempfile::TempDir,
    pub lab: PathBuf,
    pub out: PathBuf,
}

impl RenderedLab {
    /// Renders `lab_text` with `render_args` (e.g. `--dhcp isc`) and serves `images`
    /// with the cached kernel and the netboot initrd.
    pub fn new(lab_text: &str, render_args: &[&str], images: &[&str]) -> Result<RenderedLab> {
        let kernel = Kernel::cached();
        let initrd = build_initramfs(&["--profile", "netboot"]);
        let served: Vec<ServedImage> =
            images.iter().map(|name| ServedImage { name, kernel, initrd: &initrd }).collect();
        RenderedLab::serving(lab_text, render_args, &served)
    }

    /// Renders `lab_text` with `render_args` and copies each image's kernel and initrd
    /// beside its links, as `vmlinuz-VERSION` and `initrd.img-VERSION`.
    pub fn serving(lab_text: &str, render_args: &[&str], images: &[ServedImage]) -> Result<RenderedLab> {
        let dir = tempfile::Builder::new()
            .prefix("diskless-lab")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        // The servers run unprivileged (dnsmasq's TFTP, nginx's workers): the tree
        // must be reachable by anyone, which check --root verifies.
        set_mode(dir.path(), 0o755)?;
        let out = dir.path().join("out");
        let lab = dir.path().join("lab.toml");
        std::fs::write(&lab, lab_text).map_err(|e| Error::io("write", &lab, e))?;
        let (lab_s, out_s) = (lab.to_str().expect("UTF-8 path"), out.to_str().expect("UTF-8 path"));
        let mut args = vec!["server", "render", "--lab", lab_s, "--out", out_s];
        args.extend_from_slice(render_args);
        expect_ok(&args, "0")?;
        for image in images {
            let served = out.join("tftproot").join(image.name);
            let version = &image.kernel.version;
            for (from, name) in [
                (image.kernel.vmlinuz.as_path(), format!("vmlinuz-{version}")),
                (image.initrd, format!("initrd.img-{version}")),
            ] {
                let to = served.join(&name);
                std::fs::copy(from, &to).map_err(|e| Error::io(format!("copy {} to", from.display()), &to, e))?;
                set_mode(&to, 0o644)?;
            }
        }
        expect_ok(&["server", "check", "--lab", lab_s, "--root", out_s], "0 problem(s)\n")?;
        Ok(RenderedLab { dir, lab, out })
    }

    pub fn lab_arg(&self) -> &str {
        self.lab.to_str().expect("UTF-8 path")
    }

    pub fn out_arg(&self) -> &str {
        self.out.to_str().expect("UTF-8 path")
    }
}

/// Runs `diskless args`: exit 0, and stdout+stderr equal to `want` unless it is "0".
fn expect_ok(args: &[&str], want: &str) -> Result<()> {
    let o = diskless(args, None);
    if o.status.code() == Some(0) && (want == "0" || text(&o) == want) {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("diskless {}", args.join(" ")),
        detail: format!("{}: {}", o.status, text(&o)),
        hint: "the rendered lab must check clean before a client boots".into(),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| Error::io("chmod", path, e))
}

/// dnsmasq from `conf` as an administrator runs it; its lease and PID files in
/// `state` and its log (with `log-dhcp`, and every file TFTP sent) at `log`, by
/// command-line options: the file stays as rendered. Waits for `ports` (UDP; 69
/// alone when it serves only TFTP).
pub fn start_dnsmasq(ns: &Netns, conf: &Path, state: &Path, log: &Path, ports: &[u16]) -> Result<ChildGuard> {
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
    let mut child = ChildGuard::spawn(cmd, format!("dnsmasq in namespace {}", ns.name()))?;
    let want = Listening { ss_flags: "-Hlnu", ports, what: "dnsmasq listening", log };
    ns.wait_listening(&mut child, &want, Duration::from_secs(10), |status| Error::Command {
        command: format!("dnsmasq --conf-file={}", conf.display()),
        detail: format!("exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default()),
        hint: "the rendered dnsmasq.conf must start as it is".into(),
    })?;
    Ok(child)
}

/// The servers of a lab rendered with `diskless server render` (dnsmasq for
/// DHCP, DNS and TFTP; nginx with `server.http`; NFS), in a namespace of their own
/// with a tap per host. Every process is killed when this drops.
pub struct LabServer {
    // Declaration order is drop order: servers first, the namespace last.
    pub nginx: Option<Nginx>,
    pub dnsmasq: ChildGuard,
    pub nfs: NfsServer,
    /// dnsmasq's log: DHCP and every file its TFTP server sent.
    pub dnsmasq_log: PathBuf,
    pub state: tempfile::TempDir,
    pub rendered: RenderedLab,
    pub image: PathBuf,
    pub hosts: Vec<LabHost>,
    pub ns: Netns,
}

impl LabServer {
    /// Renders and starts the lab of [`lab_file`] for `spec`, a tap per host on the
    /// bridge. `name` names the logs.
    pub fn start(name: &str, spec: &LabSpec) -> Result<LabServer> {
        let image = image_dir("busybox");
        let ns = Netns::new("dlls")?;
        ns.add_bridge(BRIDGE, &["10.77.0.1/24"])?;
        for host in &spec.hosts {
            ns.add_tap(&host.tap, BRIDGE)?;
        }
        let kernel = Kernel::cached();
        let text = lab_file(&kernel.version, &image, spec);
        let rendered = RenderedLab::new(&text, &[], &["busybox"])?;
        if let Some(initrd) = &spec.initrd {
            let served = rendered.out.join(format!("tftproot/busybox/initrd.img-{}", kernel.version));
            std::fs::copy(initrd, &served)
                .map_err(|e| Error::io(format!("copy {} to", initrd.display()), &served, e))?;
        }
        let dnsmasq_log = log_dir()?.join(format!("{name}.dnsmasq.log"));
        let _ = std::fs::remove_file(&dnsmasq_log);
        let state = tempfile::tempdir().map_err(|e| Error::io("create temporary directory in", "/tmp", e))?;
        let dnsmasq =
            start_dnsmasq(&ns, &rendered.out.join("dnsmasq.conf"), state.path(), &dnsmasq_log, &[53, 67, 69])?;
        let nginx = match spec.http {
            true => Some(Nginx::start(&ns, &rendered.out.join("nginx.conf"), 80, name)?),
            false => None,
        };
        let export = NfsExport { pseudo: image.display().to_string(), ..NfsExport::new(&image) };
        let nfs = NfsServer::start(&ns, &export, name)?;
        Ok(LabServer { nginx, dnsmasq, nfs, dnsmasq_log, state, rendered, image, hosts: spec.hosts.clone(), ns })
    }

    /// `diskless server check --lab LAB [args]` inside the lab's namespace.
    pub fn check(&self, args: &[&str]) -> Output {
        let mut all = vec!["server", "check", "--lab", self.rendered.lab_arg()];
        all.extend_from_slice(args);
        diskless(&all, Some(&self.ns))
    }

    /// A BIOS PXE client of lab3-12 (SeaBIOS + iPXE ROM) on `tap0`, named `name`.
    pub fn bios_client(&self, name: &str) -> Vm {
        self.client(name, Firmware::Bios)
    }

    /// A PXE client of the lab's first host (lab3-12 on `tap0`) with `firmware`.
    pub fn client(&self, name: &str, firmware: Firmware) -> Vm {
        self.client_of(&self.hosts[0], name, firmware)
    }

    /// A PXE client of `host` with `firmware`: SeaBIOS with the NIC's iPXE ROM, or
    /// OVMF's own PXE (a NIC without option ROM, as a lab PC boots).
    pub fn client_of(&self, host: &LabHost, name: &str, firmware: Firmware) -> Vm {
        let nic = Nic::tap("virtio-net-pci", &host.mac, &host.tap);
        let vm = Vm::new(name).netns(&self.ns).pxe().firmware(firmware);
        match firmware {
            Firmware::Bios => vm.nic(nic),
            Firmware::Uefi | Firmware::Aavmf | Firmware::Slof => vm.nic(nic.without_rom()),
            // OVMF's Secure Boot build guards its variables with SMM, which only q35 has.
            Firmware::UefiSecureBoot => vm.nic(nic.without_rom()).machine(Machine::Q35),
        }
    }

    /// The files dnsmasq's TFTP server sent so far, in order, as its log names them
    /// (`sent /path/file to 10.77.0.112`), relative to the TFTP root. A file sent twice
    /// in a row counts once: OVMF's PXE fetches its boot file twice.
    pub fn tftp_sent(&self) -> Vec<String> {
        let root = format!("{}/", self.rendered.out.join("tftproot").display());
        let log = std::fs::read_to_string(&self.dnsmasq_log).unwrap_or_default();
        let mut sent: Vec<String> = log
            .lines()
            .filter(|l| l.contains("dnsmasq-tftp["))
            .filter_map(|l| l.split_once(" sent ").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split(" to ").next())
            .map(|path| path.strip_prefix(&root).unwrap_or(path).to_string())
            .collect();
        sent.dedup();
        sent
    }
}
