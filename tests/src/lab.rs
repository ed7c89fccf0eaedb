//! Lab servers from `diskless server render`'s files, with no hand edits: the lab file
//! of one busybox host (`lab3-12`), the rendered tree with the cached kernel and the
//! real initrd in it (and `diskless server check --root` clean before anything
//! starts), dnsmasq from the rendered `dnsmasq.conf`, nginx from the rendered
//! `nginx.conf` when the lab has `server.http`, and the rig's nfs-ganesha exporting
//! the image at its own path as the rendered `ganesha.conf` does. Used by
//! `tests/lab_server.rs` and `qemu/bench-pxe`.

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
use crate::vm::{Firmware, Nic, Vm};

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

/// The lab file of one busybox image at `export` served with `kernel` to `firmware`
/// (`"bios"`, `"uefi"`) and the host lab3-12; `server` adds lines to `[server]`.
pub fn lab_file(kernel: &str, export: &Path, firmware: &[&str], server: &str) -> String {
    OneHostLab {
        image: "busybox",
        export,
        kernel,
        firmware,
        params: BASE_APPEND,
        host: HOST,
        mac: MAC,
        address: "10.77.0.112",
        server,
        loaders: "",
    }
    .text()
}

/// A lab of one image and one host on the rig's subnet 10.77.0.0/24 (domain
/// example.edu), its root over NFSv3.
pub struct OneHostLab<'a> {
    pub image: &'a str,
    pub export: &'a Path,
    pub kernel: &'a str,
    /// The image's `firmware` values.
    pub firmware: &'a [&'a str],
    /// The image's kernel parameters.
    pub params: &'a str,
    pub host: &'a str,
    pub mac: &'a str,
    pub address: &'a str,
    /// Lines added to `[server]`.
    pub server: &'a str,
    /// A `[loaders]` table, or "".
    pub loaders: &'a str,
}

impl OneHostLab<'_> {
    /// The lab file.
    pub fn text(&self) -> String {
        let firmware: Vec<String> = self.firmware.iter().map(|f| format!("\"{f}\"")).collect();
        format!(
            r#"[server]
address = "10.77.0.1"
interface = "{BRIDGE}"
{server}
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
nfs_options = "vers=3"

[[host]]
name = "{host}"
mac = "{mac}"
address = "{address}"
image = "{image}"
"#,
            server = self.server,
            loaders = self.loaders,
            image = self.image,
            export = self.export.display(),
            kernel = self.kernel,
            firmware = firmware.join(", "),
            params = self.params,
            host = self.host,
            mac = self.mac,
            address = self.address,
        )
    }
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

/// The servers of a one-host lab rendered with `diskless server render` (dnsmasq for
/// DHCP, DNS and TFTP; nginx with `server.http`; NFS), in a namespace of their own
/// with the host's tap `tap0`. Every process is killed when this drops.
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
    pub ns: Netns,
}

impl LabServer {
    /// Renders and starts the lab of [`lab_file`] for `firmware`, over TFTP only or,
    /// with `http`, with `server.http = HTTP_URL`. `name` names the logs.
    pub fn start(name: &str, firmware: &[&str], http: bool) -> Result<LabServer> {
        let image = image_dir("busybox");
        let ns = Netns::new("dlls")?;
        ns.add_bridge(BRIDGE, &["10.77.0.1/24"])?;
        ns.add_tap("tap0", BRIDGE)?;
        let server = if http { format!("http = \"{HTTP_URL}\"\n") } else { String::new() };
        let text = lab_file(&Kernel::cached().version, &image, firmware, &server);
        let rendered = RenderedLab::new(&text, &[], &["busybox"])?;
        let dnsmasq_log = log_dir()?.join(format!("{name}.dnsmasq.log"));
        let _ = std::fs::remove_file(&dnsmasq_log);
        let state = tempfile::tempdir().map_err(|e| Error::io("create temporary directory in", "/tmp", e))?;
        let dnsmasq =
            start_dnsmasq(&ns, &rendered.out.join("dnsmasq.conf"), state.path(), &dnsmasq_log, &[53, 67, 69])?;
        let nginx = match http {
            true => Some(Nginx::start(&ns, &rendered.out.join("nginx.conf"), 80, name)?),
            false => None,
        };
        let export = NfsExport { pseudo: image.display().to_string(), ..NfsExport::new(&image) };
        let nfs = NfsServer::start(&ns, &export, name)?;
        Ok(LabServer { nginx, dnsmasq, nfs, dnsmasq_log, state, rendered, image, ns })
    }

    /// A BIOS PXE client of lab3-12 (SeaBIOS + iPXE ROM) on `tap0`, named `name`.
    pub fn bios_client(&self, name: &str) -> Vm {
        self.client(name, Firmware::Bios)
    }

    /// A PXE client of lab3-12 on `tap0` with `firmware`: SeaBIOS with the NIC's iPXE
    /// ROM, or OVMF's own PXE (a NIC without option ROM, as a lab PC boots).
    pub fn client(&self, name: &str, firmware: Firmware) -> Vm {
        let nic = Nic::tap("virtio-net-pci", MAC, "tap0");
        let vm = Vm::new(name).netns(&self.ns).pxe().firmware(firmware);
        match firmware {
            Firmware::Bios => vm.nic(nic),
            // The firmware's own network boot (the other machines' too: tests/lab_foreign.rs).
            Firmware::Uefi | Firmware::UefiSecureBoot | Firmware::Aavmf | Firmware::Slof => vm.nic(nic.without_rom()),
        }
    }

    /// The files dnsmasq's TFTP server sent so far, as its log names them
    /// (`sent /path/file to 10.77.0.112`), relative to the TFTP root.
    pub fn tftp_sent(&self) -> Vec<String> {
        let root = format!("{}/", self.rendered.out.join("tftproot").display());
        let log = std::fs::read_to_string(&self.dnsmasq_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("dnsmasq-tftp["))
            .filter_map(|l| l.split_once(" sent ").map(|(_, rest)| rest))
            .filter_map(|rest| rest.split(" to ").next())
            .map(|path| path.strip_prefix(&root).unwrap_or(path).to_string())
            .collect()
    }
}
