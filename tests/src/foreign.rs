//! Clients of the other architectures (issue 14): i686 PCs, ARM64 UEFI machines and
//! POWER machines with OpenFirmware. Each [`ForeignArch`] names the Debian kernel
//! `qemu/setup` unpacked for it (`qemu/.cache/kernels/<debarch>`), Debian's static
//! busybox of that architecture (`qemu/.cache/foreign/<debarch>/root/bin/busybox`),
//! the init cross-built for it, and the QEMU machine that boots it from the network.
//!
//! [`ForeignArch::image`] makes that architecture's busybox root: a copy of the busybox
//! test image whose `/bin/busybox` is the architecture's, with the layers of the host
//! that boots it (its name, its address) and `/proc/sys/kernel/osrelease` among its probes, so that the image reports what the x86-64
//! one does, run by a foreign CPU.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::build::{release_binaries, scratch_file};
use crate::error::{Error, Result};
use crate::kernel::{self, Kernel};
use crate::nfs::image_copy;
use crate::paths::{target_dir, workspace_root};
use crate::process::{describe, run};
use crate::vm::{Firmware, Machine};

/// One client architecture of the lab.
#[derive(Clone, Copy, Debug)]
pub struct ForeignArch {
    /// Debian's name: the cache directories are named after it.
    pub debarch: &'static str,
    /// The rust target the init is cross-built for (qemu/init-targets).
    pub triple: &'static str,
    pub machine: Machine,
    pub firmware: Firmware,
    /// The lab file's `firmware` value of its image.
    pub lab_firmware: &'static str,
    /// The QEMU NIC model the machine boots from.
    pub nic: &'static str,
    /// The kernel's console on the machine's first serial port.
    pub console: &'static str,
    /// Guest memory: as small as the kernel, the initrd and the firmware allow.
    pub memory_mib: u32,
    /// The lab file's `[loaders]` key of its network loader and where `qemu/setup` put
    /// it, under `qemu/.cache/foreign/<debarch>/`; `None`: the host's package (pxelinux).
    pub loader: Option<(&'static str, &'static str)>,
}

/// A 32-bit PC: SeaBIOS, the NIC's iPXE ROM, pxelinux, Debian's `686` kernel.
pub const I686: ForeignArch = ForeignArch {
    debarch: "i386",
    triple: "i686-unknown-linux-gnu",
    machine: Machine::Pc32,
    firmware: Firmware::Bios,
    lab_firmware: "bios",
    nic: "virtio-net-pci",
    console: "console=ttyS0,115200",
    memory_mib: 256,
    loader: None,
};

/// An ARM64 UEFI machine: AAVMF's own PXE, GRUB's grubnetaa64.efi, Debian's `arm64` kernel.
pub const AARCH64: ForeignArch = ForeignArch {
    debarch: "arm64",
    triple: "aarch64-unknown-linux-gnu",
    machine: Machine::Virt,
    firmware: Firmware::Aavmf,
    lab_firmware: "uefi-arm64",
    nic: "virtio-net-pci",
    console: "console=ttyAMA0",
    memory_mib: 512,
    loader: Some(("uefi_arm64", "root/usr/lib/grub/arm64-efi/monolithic/grubnetaa64.efi")),
};

/// A POWER machine: SLOF's network boot, GRUB for powerpc-ieee1275, Debian's
/// `powerpc64le` kernel, booting from the pseries `spapr-vlan` NIC (ibmveth).
pub const PPC64LE: ForeignArch = ForeignArch {
    debarch: "ppc64el",
    triple: "powerpc64le-unknown-linux-gnu",
    machine: Machine::Pseries,
    firmware: Firmware::Slof,
    lab_firmware: "openfirmware",
    nic: "spapr-vlan",
    console: "console=hvc0",
    memory_mib: 1024,
    loader: Some(("openfirmware", "grubnetppc.elf")),
};

const HINT: &str = "run qemu/setup (as root): it unpacks the other architectures' packages into qemu/.cache/foreign";

impl ForeignArch {
    /// The Debian kernel of this architecture.
    pub fn kernel(&self) -> Kernel {
        kernel::foreign(self.debarch).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `qemu/.cache/foreign/<debarch>/root`: the unpacked packages.
    pub fn packages(&self) -> PathBuf {
        workspace_root().join("qemu/.cache/foreign").join(self.debarch).join("root")
    }

    /// The lab file's `[loaders]` table for this architecture's loader ("" for none).
    pub fn loaders_table(&self) -> Result<String> {
        let Some((key, relative)) = self.loader else { return Ok(String::new()) };
        let path = workspace_root().join("qemu/.cache/foreign").join(self.debarch).join(relative);
        if !path.is_file() {
            return Err(Error::Missing { what: format!("{} network loader", self.debarch), path, hint: HINT.into() });
        }
        Ok(format!("[loaders]\n{key} = \"{}\"\n", path.display()))
    }

    /// A file of the unpacked packages, which must exist.
    pub fn package_file(&self, relative: &str) -> Result<PathBuf> {
        let path = self.packages().join(relative);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::Missing { what: format!("{} package file", self.debarch), path, hint: HINT.into() })
        }
    }

    /// The init cross-built for this architecture (`cargo build --release --target`,
    /// as qemu/build-inits does), built once per process.
    pub fn init(&self) -> PathBuf {
        static BUILT: OnceLock<Mutex<Vec<&'static str>>> = OnceLock::new();
        let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
        let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
        let init = target_dir().join(self.triple).join("release/init");
        if !built.contains(&self.triple) {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(workspace_root()).args(["build", "--release", "-p", "diskless", "--bin", "init"]);
            cmd.args(["--target", self.triple]);
            if let Err(e) = run(&mut cmd, "qemu/setup installs the rust targets and cross linkers") {
                panic!("{e}");
            }
            built.push(self.triple);
        }
        init
    }

    /// The netboot initrd of this architecture's kernel with its cross-built init.
    pub fn initrd(&self, kernel: &Kernel) -> PathBuf {
        let init = self.init();
        let out = scratch_file(&format!("initrd-{}", self.debarch), "img").unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = Command::new(&release_binaries().mkinitramfs);
        cmd.arg("-b").arg(&kernel.basedir).arg("-o").arg(&out).arg("--init").arg(&init);
        cmd.args(["--profile", "netboot"]).arg(&kernel.version);
        match cmd.output() {
            Ok(o) if o.status.success() && out.is_file() => out,
            Ok(o) => panic!(
                "{} failed: {}{}",
                describe(&cmd),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => panic!("cannot run {}: {e}", describe(&cmd)),
        }
    }

    /// This architecture's busybox root for host `host` at `address` (see the module
    /// docs), in a temporary directory removed on drop. Its export path is canonical:
    /// nfs-ganesha refuses one through a symlink.
    pub fn image(&self, host: &str, address: &str) -> Result<tempfile::TempDir> {
        let busybox = self.package_file("bin/busybox")?;
        let dir = image_copy("busybox")?;
        let root = dir.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", root, e))?;
        let to = root.join("bin/busybox");
        std::fs::copy(&busybox, &to).map_err(|e| Error::io(format!("copy {} to", busybox.display()), &to, e))?;
        let layers = root.join("diskless/hosts");
        for (layer, file, text) in
            [(host, "upto-host", format!("host {host}")), (address, "layer-test", format!("ip {address}"))]
        {
            let etc = layers.join(layer).join("etc");
            std::fs::create_dir_all(&etc).map_err(|e| Error::io("create directory", &etc, e))?;
            std::fs::write(etc.join(file), format!("{text}\n")).map_err(|e| Error::io("write", etc.join(file), e))?;
        }
        // The running kernel's release in the report: the foreign kernel ran the image.
        let probes = root.join("etc/image-probes");
        let mut list = std::fs::read_to_string(&probes).map_err(|e| Error::io("read", &probes, e))?;
        list.push_str("/proc/sys/kernel/osrelease\n");
        std::fs::write(&probes, list).map_err(|e| Error::io("write", &probes, e))?;
        Ok(dir)
    }
}

/// `path` canonical (no symlink on the way), for NFS exports.
pub fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}
