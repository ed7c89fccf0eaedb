//! QEMU runner for the rig.
//!
//! A [`Vm`] describes one guest: machine type, memory, NICs, disks, kernel, initrd
//! and command line. [`Vm::run`] boots it under TCG (`-accel tcg`: KVM guests hang
//! on this kind of machine) with the serial console written to
//! `target/qemu-logs/<name>.log`, QEMU's own output to `<name>.qemu.txt` (which
//! starts with the full command line), and waits for QEMU to exit or kills it after
//! the timeout.
//!
//! At most two VMs run at once on the machine, across all test processes: each run
//! first takes one of two `flock`ed slot files in `/tmp`. The timeout counts from
//! the moment the slot is held.
//!
//! The firmware is SeaBIOS by default; [`Vm::firmware`] selects OVMF (UEFI), with or
//! without Secure Boot ([`Firmware`]): the read-only code image from package `ovmf`
//! and a private copy of its variable store in the VM's temporary directory, so a
//! run never changes the next one's boot entries. With [`Nic::without_rom`] the NIC
//! has no option ROM and the firmware's own network stack (OVMF's PXE, HTTP boot)
//! boots from it, as on a real PC; only `virtio-net-pci` has an OVMF driver then.
//!
//! NICs never reach the outside: a NIC is either alone on its own QEMU hub
//! (`-netdev hubport`, hardware-only tests) or a tap that a test created inside its
//! own [`crate::netns::Netns`]; QEMU then runs inside that namespace.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::console::ConsoleLog;
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::netns::Netns;
use crate::paths::{file_stem, log_dir};
use crate::process::{ChildGuard, describe};

/// Default time a VM may run before it is killed; `DISKLESS_QEMU_TIMEOUT` (seconds)
/// overrides it for slow machines.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Machine-wide number of concurrent VMs: the machine has 2 cores and TCG guests
/// starve and time out beyond that.
pub const VM_SLOTS: usize = 2;

/// QEMU machine type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// i440FX + PIIX (`-machine pc`).
    Pc,
    /// Q35 + ICH9, PCIe (`-machine q35`).
    Q35,
    /// A 32-bit PC: `qemu-system-i386 -machine pc` (i440FX, SeaBIOS), for the i686 kernel.
    Pc32,
    /// ARM64 `qemu-system-aarch64 -machine virt` (PCIe host bridge, PL011 `ttyAMA0`,
    /// platform devices from the device tree), a Cortex-A57. Boots with [`Firmware::Aavmf`].
    Virt,
    /// POWER `qemu-system-ppc64 -machine pseries` (PCI host bridge, the `vio` bus with
    /// the console `hvc0` and `spapr-vlan` NICs), with QEMU's SLOF ([`Firmware::Slof`]).
    Pseries,
}

impl Machine {
    /// The QEMU program that emulates this machine.
    pub fn qemu(self) -> &'static str {
        match self {
            Machine::Pc | Machine::Q35 => "qemu-system-x86_64",
            Machine::Pc32 => "qemu-system-i386",
            Machine::Virt => "qemu-system-aarch64",
            Machine::Pseries => "qemu-system-ppc64",
        }
    }
}

/// The VM's firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default.
    Bios,
    /// OVMF without Secure Boot.
    Uefi,
    /// OVMF with Secure Boot on and Microsoft's keys enrolled, so that shim (signed by
    /// Microsoft) starts and unsigned loaders get "Access Denied". Needs
    /// [`Machine::Q35`]: the firmware guards its variables with SMM.
    UefiSecureBoot,
    /// AAVMF, OVMF's ARM64 build (package qemu-efi-aarch64), for [`Machine::Virt`].
    Aavmf,
    /// SLOF, the OpenFirmware QEMU ships for [`Machine::Pseries`] (its default).
    Slof,
}

/// OVMF's files (package `ovmf`): code and the variable store it starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OvmfFiles {
    pub code: &'static str,
    pub vars: &'static str,
}

impl Firmware {
    /// The OVMF images of this firmware; `None` for SeaBIOS.
    pub fn ovmf(self) -> Option<OvmfFiles> {
        match self {
            Firmware::Bios => None,
            Firmware::Uefi => {
                Some(OvmfFiles { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd" })
            }
            Firmware::UefiSecureBoot => Some(OvmfFiles {
                code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                vars: "/usr/share/OVMF/OVMF_VARS_4M.ms.fd",
            }),
            Firmware::Aavmf => {
                Some(OvmfFiles { code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd" })
            }
            Firmware::Slof => None,
        }
    }
}

/// Where a NIC's frames go.
#[derive(Clone, Debug)]
pub enum NetBackend {
    /// Alone on QEMU hub `id`: the guest sees a link, nothing answers.
    Hub(u32),
    /// A tap device of that name inside the VM's namespace ([`Vm::netns`]).
    Tap(String),
}

/// A network card.
#[derive(Clone, Debug)]
pub struct Nic {
    /// QEMU device model: `virtio-net-pci`, `e1000`, `e1000e`, `rtl8139`, ...
    pub model: String,
    /// MAC address, `52:54:00:xx:xx:xx`.
    pub mac: String,
    pub backend: Option<NetBackend>,
    /// QEMU `bootindex` of the NIC: the firmware tries it (its iPXE ROM) before other
    /// boot devices. Only meaningful with [`Vm::pxe`].
    pub bootindex: Option<u32>,
    /// `romfile=` empty: no option ROM, so the firmware's own driver and network boot
    /// run (OVMF's PXE) instead of QEMU's iPXE ROM.
    pub no_rom: bool,
}

impl Nic {
    /// A NIC alone on its own hub (the hub id is chosen by [`Vm::run`]).
    pub fn new(model: &str, mac: &str) -> Nic {
        Nic { model: model.into(), mac: mac.into(), backend: None, bootindex: None, no_rom: false }
    }

    /// A NIC on a tap inside the VM's namespace.
    pub fn tap(model: &str, mac: &str, ifname: &str) -> Nic {
        Nic {
            model: model.into(),
            mac: mac.into(),
            backend: Some(NetBackend::Tap(ifname.into())),
            bootindex: None,
            no_rom: false,
        }
    }

    /// Makes the firmware network-boot from this NIC first (`bootindex=1`), e.g. the
    /// second NIC of a VM whose first NIC sits on a dead segment.
    pub fn boot_first(mut self) -> Nic {
        self.bootindex = Some(1);
        self
    }

    /// No option ROM on this NIC (`romfile=`): under OVMF the firmware's own PXE boots
    /// from it, as a lab PC's firmware does. Use `virtio-net-pci`, the one model OVMF
    /// drives without a ROM (e1000 or rtl8139 fall through to the UEFI shell).
    pub fn without_rom(mut self) -> Nic {
        self.no_rom = true;
        self
    }
}

/// How a disk is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskBus {
    /// `virtio-blk-pci` (guest: `vda`, ...).
    VirtioBlk,
    /// SATA disk (`ide-hd`) on an added `ich9-ahci` controller (guest: `sda`, ...).
    Ahci,
    /// NVMe controller with one namespace (guest: `nvme0n1`, ...).
    Nvme { serial: String },
}

/// What backs a disk.
#[derive(Clone, Debug)]
pub enum DiskSource {
    /// A sparse raw file of this size, created in the VM's temporary directory.
    Blank { size_mib: u64 },
    /// An existing raw image (used read-write, so pass a copy).
    Image(PathBuf),
}

/// A disk of the VM.
#[derive(Clone, Debug)]
pub struct Disk {
    pub bus: DiskBus,
    pub source: DiskSource,
}

impl Disk {
    pub fn virtio(size_mib: u64) -> Disk {
        Disk { bus: DiskBus::VirtioBlk, source: DiskSource::Blank { size_mib } }
    }
    pub fn ahci(size_mib: u64) -> Disk {
        Disk { bus: DiskBus::Ahci, source: DiskSource::Blank { size_mib } }
    }
    pub fn nvme(size_mib: u64, serial: &str) -> Disk {
        Disk { bus: DiskBus::Nvme { serial: serial.into() }, source: DiskSource::Blank { size_mib } }
    }
    /// A disk on `bus` backed by an existing raw image.
    pub fn image(bus: DiskBus, path: &Path) -> Disk {
        Disk { bus, source: DiskSource::Image(path.into()) }
    }
}

/// One guest to boot. Build with the methods, then [`Vm::run`] or [`Vm::spawn`].
#[derive(Clone, Debug)]
pub struct Vm {
    name: String,
    machine: Machine,
    memory_mib: u32,
    nics: Vec<Nic>,
    disks: Vec<Disk>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Vec<String>,
    timeout: Duration,
    netns: Option<String>,
    extra: Vec<String>,
    pxe: bool,
    firmware: Firmware,
}

impl Vm {
    /// A VM whose logs are named after `name` (use the test's name; it must be unique
    /// among concurrently running VMs). Defaults: pc, 768 MiB, the cached kernel, no
    /// NICs, no disks.
    pub fn new(name: &str) -> Vm {
        let timeout = std::env::var("DISKLESS_QEMU_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        Vm {
            name: file_stem(name),
            machine: Machine::Pc,
            memory_mib: 768,
            nics: Vec::new(),
            disks: Vec::new(),
            kernel: None,
            initrd: None,
            append: Vec::new(),
            timeout,
            netns: None,
            extra: Vec::new(),
            pxe: false,
            firmware: Firmware::Bios,
        }
    }

    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }
    pub fn nic(mut self, nic: Nic) -> Self {
        self.nics.push(nic);
        self
    }
    pub fn disk(mut self, disk: Disk) -> Self {
        self.disks.push(disk);
        self
    }
    /// The bzImage to boot (default: the cached Debian kernel).
    pub fn kernel(mut self, path: &Path) -> Self {
        self.kernel = Some(path.into());
        self
    }
    pub fn initrd(mut self, path: &Path) -> Self {
        self.initrd = Some(path.into());
        self
    }
    /// Kernel command line words added after `console=ttyS0 panic=-1`.
    pub fn append(mut self, args: &str) -> Self {
        self.append.extend(args.split_whitespace().map(str::to_string));
        self
    }
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Runs QEMU inside `ns` (needed for tap NICs created there).
    pub fn netns(mut self, ns: &Netns) -> Self {
        self.netns = Some(ns.name().into());
        self
    }
    /// Boots from the network like a lab machine: no `-kernel`/`-initrd`/`-append`;
    /// SeaBIOS runs the NIC's iPXE ROM (QEMU's default `romfile` from `ipxe-qemu`),
    /// which gets kernel, initrd and command line through DHCP + TFTP + pxelinux (see
    /// [`crate::pxe::PxeRig`]). `-boot n` unless a NIC has a `bootindex`. Under OVMF
    /// ([`Vm::firmware`]) the first NIC gets `bootindex=1` instead, and with
    /// [`Nic::without_rom`] OVMF's own PXE asks DHCP for a UEFI boot file (option 93 = 7).
    pub fn pxe(mut self) -> Self {
        self.pxe = true;
        self
    }

    /// The firmware (default SeaBIOS). [`Firmware::UefiSecureBoot`] needs
    /// [`Machine::Q35`]; [`Vm::command`] refuses it on `pc`, where OVMF hangs silently.
    /// Under OVMF a PXE VM boots from its first NIC (`bootindex=1`) unless a NIC has a
    /// `bootindex`.
    pub fn firmware(mut self, firmware: Firmware) -> Self {
        self.firmware = firmware;
        self
    }

    /// Raw QEMU arguments appended at the end.
    pub fn qemu_args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// Path of the console log this VM writes.
    pub fn log_path(&self) -> Result<PathBuf> {
        Ok(log_dir()?.join(format!("{}.log", self.name)))
    }

    /// The QEMU command line, with disk files placed in `dir` and the console in `log`.
    /// Creates the blank disk files.
    pub fn command(&self, dir: &Path, log: &Path) -> Result<Command> {
        let qemu = self.machine.qemu();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, qemu]);
                c
            }
            None => Command::new(qemu),
        };
        let machine = match (self.machine, self.firmware) {
            (Machine::Pc, Firmware::UefiSecureBoot) => {
                return Err(Error::Invalid {
                    what: format!("VM {}", self.name),
                    reason: "Secure Boot OVMF needs .machine(Machine::Q35) (SMM); on pc it hangs silently".into(),
                });
            }
            (Machine::Pc, _) => "pc",
            (Machine::Q35, Firmware::UefiSecureBoot) => "q35,smm=on",
            (Machine::Q35, _) => "q35",
            (Machine::Pc32, _) => "pc",
            (Machine::Virt, Firmware::Aavmf) => "virt",
            (Machine::Pseries, Firmware::Slof) => "pseries",
            (Machine::Virt | Machine::Pseries, firmware) => {
                return Err(Error::Invalid {
                    what: format!("VM {}", self.name),
                    reason: format!(
                        "{:?} boots with its own firmware (virt: Firmware::Aavmf, pseries: Firmware::Slof), not {firmware:?}",
                        self.machine
                    ),
                });
            }
        };
        cmd.args(["-machine", machine, "-accel", "tcg", "-m", &self.memory_mib.to_string()]);
        if self.machine == Machine::Virt {
            // virt has no default CPU model; one core of a common ARMv8.0 design.
            cmd.args(["-cpu", "cortex-a57"]);
        }
        cmd.args(["-nographic", "-no-reboot", "-nodefaults"]).arg("-serial").arg(format!("file:{}", log.display()));
        if let Some(ovmf) = self.firmware.ovmf() {
            for path in [ovmf.code, ovmf.vars] {
                if !Path::new(path).is_file() {
                    return Err(Error::Missing {
                        what: "OVMF firmware image".into(),
                        path: path.into(),
                        hint: "run qemu/setup (package ovmf)".into(),
                    });
                }
            }
            // The firmware writes boot entries into its variable store: each run
            // starts from a fresh copy.
            let vars = dir.join("OVMF_VARS.fd");
            std::fs::copy(ovmf.vars, &vars).map_err(|e| Error::io(format!("copy {} to", ovmf.vars), &vars, e))?;
            if self.firmware == Firmware::UefiSecureBoot {
                cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
            }
            cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={}", ovmf.code));
            cmd.arg("-drive").arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()));
        }

        let any_bootindex = self.nics.iter().any(|n| n.bootindex.is_some());
        for (i, nic) in self.nics.iter().enumerate() {
            let netdev = match &nic.backend {
                // Hub ids are per VM; each NIC gets a hub of its own with nothing else on it.
                None | Some(NetBackend::Hub(_)) => {
                    let hub = match &nic.backend {
                        Some(NetBackend::Hub(id)) => *id,
                        _ => 100 + i as u32,
                    };
                    format!("hubport,id=n{i},hubid={hub}")
                }
                Some(NetBackend::Tap(ifname)) => {
                    if self.netns.is_none() {
                        return Err(Error::Invalid {
                            what: format!("NIC on tap {ifname}"),
                            reason: "a tap NIC needs Vm::netns(..) with the namespace that holds the tap; the rig never uses host taps".into(),
                        });
                    }
                    format!("tap,id=n{i},ifname={ifname},script=no,downscript=no")
                }
            };
            cmd.arg("-netdev").arg(netdev);
            // OVMF ignores `-boot n`: it follows bootindex, so a PXE VM boots its first NIC.
            let bootindex = match nic.bootindex {
                None if i == 0 && self.pxe && self.firmware != Firmware::Bios && !any_bootindex => Some(1),
                other => other,
            };
            let bootindex = bootindex.map(|b| format!(",bootindex={b}")).unwrap_or_default();
            let rom = if nic.no_rom { ",romfile=" } else { "" };
            cmd.arg("-device").arg(format!("{},netdev=n{i},mac={}{bootindex}{rom}", nic.model, nic.mac));
        }

        let mut ahci_port = 0;
        for (i, disk) in self.disks.iter().enumerate() {
            let file = match &disk.source {
                DiskSource::Blank { size_mib } => {
                    let path = dir.join(format!("disk{i}.raw"));
                    let f = File::create(&path).map_err(|e| Error::io("create disk image", &path, e))?;
                    f.set_len(size_mib * 1024 * 1024).map_err(|e| Error::io("size disk image", &path, e))?;
                    path
                }
                DiskSource::Image(path) => path.clone(),
            };
            cmd.arg("-drive").arg(format!("file={},format=raw,if=none,id=d{i}", file.display()));
            match &disk.bus {
                DiskBus::VirtioBlk => {
                    cmd.arg("-device").arg(format!("virtio-blk-pci,drive=d{i}"));
                }
                DiskBus::Ahci => {
                    if ahci_port == 0 {
                        cmd.args(["-device", "ich9-ahci,id=ahci"]);
                    }
                    cmd.arg("-device").arg(format!("ide-hd,drive=d{i},bus=ahci.{ahci_port}"));
                    ahci_port += 1;
                }
                DiskBus::Nvme { serial } => {
                    cmd.arg("-device").arg(format!("nvme,drive=d{i},serial={serial}"));
                }
            }
        }

        if self.pxe {
            if self.kernel.is_some() || self.initrd.is_some() || !self.append.is_empty() {
                return Err(Error::Invalid {
                    what: format!("VM {}", self.name),
                    reason: "a PXE boot takes kernel, initrd and command line from pxelinux; set them on the PxeRig"
                        .into(),
                });
            }
            if !any_bootindex && self.firmware == Firmware::Bios {
                cmd.args(["-boot", "n"]);
            }
            cmd.args(&self.extra);
            return Ok(cmd);
        }
        let kernel = match &self.kernel {
            Some(k) => k.clone(),
            None => Kernel::cached().vmlinuz.clone(),
        };
        cmd.arg("-kernel").arg(kernel);
        if let Some(initrd) = &self.initrd {
            cmd.arg("-initrd").arg(initrd);
        }
        let mut append = vec!["console=ttyS0".to_string(), "panic=-1".to_string()];
        append.extend(self.append.iter().cloned());
        cmd.arg("-append").arg(append.join(" "));
        cmd.args(&self.extra);
        Ok(cmd)
    }

    /// Boots the VM and waits until QEMU exits or the timeout kills it.
    pub fn run(self) -> Result<VmRun> {
        self.spawn()?.wait()
    }

    /// Boots the VM in the background (after taking a VM slot).
    pub fn spawn(self) -> Result<RunningVm> {
        let slot = Arc::new(vec![VmSlot::acquire()?]);
        self.spawn_holding(slot)
    }

    /// Boots `vms` at once, as a room switched on together (a boot storm): first
    /// takes every VM slot, which the VMs hold until the last of them exits, so no
    /// other VM shares the CPUs with the storm. Each VM's timeout counts from then.
    pub fn spawn_all(vms: Vec<Vm>) -> Result<Vec<RunningVm>> {
        let slots = Arc::new(VmSlot::acquire_all()?);
        vms.into_iter().map(|vm| vm.spawn_holding(Arc::clone(&slots))).collect()
    }

    fn spawn_holding(self, slot: Arc<Vec<VmSlot>>) -> Result<RunningVm> {
        let log = self.log_path()?;
        let qemu_out = log.with_extension("qemu.txt");
        let _ = std::fs::remove_file(&log);
        let dir = tempfile::Builder::new()
            .prefix("diskless-vm")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let mut cmd = self.command(dir.path(), &log)?;

        let mut out = File::create(&qemu_out).map_err(|e| Error::io("create", &qemu_out, e))?;
        let _ = writeln!(out, "# {}", describe(&cmd));
        let err = out.try_clone().map_err(|e| Error::io("duplicate handle of", &qemu_out, e))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = ChildGuard::spawn(cmd, format!("QEMU for {}", self.name)).map_err(|e| match e {
            Error::Command { command, detail, .. } => Error::Command {
                command,
                detail,
                hint: format!("is {} installed? run qemu/setup", self.machine.qemu()),
            },
            other => other,
        })?;
        Ok(RunningVm { child, log, qemu_out, started: Instant::now(), timeout: self.timeout, _slot: slot, _dir: dir })
    }
}

/// A VM that is running; dropping it kills QEMU.
pub struct RunningVm {
    child: ChildGuard,
    log: PathBuf,
    qemu_out: PathBuf,
    started: Instant,
    timeout: Duration,
    _slot: Arc<Vec<VmSlot>>,
    _dir: tempfile::TempDir,
}

impl RunningVm {
    /// The console so far.
    pub fn console(&self) -> ConsoleLog {
        ConsoleLog::read(&self.log)
    }

    /// Waits (within the VM's timeout) until a console line matches `pattern`;
    /// returns the log, or an error if QEMU exited or time ran out first.
    pub fn wait_for_line(&mut self, pattern: &str) -> Result<ConsoleLog> {
        let re = regex::Regex::new(pattern)
            .map_err(|e| Error::Invalid { what: format!("pattern /{pattern}/"), reason: e.to_string() })?;
        loop {
            let log = self.console();
            if log.lines().any(|l| re.is_match(l)) {
                return Ok(log);
            }
            if let Some(status) = self.child.try_wait() {
                return Err(Error::Command {
                    command: "qemu-system-x86_64".into(),
                    detail: format!("exited with {status} before a line matched /{pattern}/\n{}", log.tail(30)),
                    hint: format!("QEMU's own output is in {}", self.qemu_out.display()),
                });
            }
            if self.started.elapsed() >= self.timeout {
                return Err(Error::Timeout {
                    what: format!("a console line matching /{pattern}/"),
                    seconds: self.timeout.as_secs_f64(),
                    log: Some(self.log.clone()),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for QEMU to exit, killing it (and its process group) at the timeout.
    pub fn wait(mut self) -> Result<VmRun> {
        let left = self.timeout.saturating_sub(self.started.elapsed());
        let status = self.child.wait_timeout(left);
        let timed_out = status.is_none();
        if timed_out {
            self.child.kill();
        }
        Ok(VmRun {
            log: ConsoleLog::read(&self.log),
            status,
            timed_out,
            elapsed: self.started.elapsed(),
            qemu_output: self.qemu_out.clone(),
            timeout: self.timeout,
        })
    }

    /// QEMU's PID (the group leader).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// The outcome of one VM run.
#[derive(Debug)]
pub struct VmRun {
    /// The serial console.
    pub log: ConsoleLog,
    /// QEMU's exit status; `None` if it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// From VM start (slot held) to QEMU's exit.
    pub elapsed: Duration,
    /// QEMU's own stdout/stderr, starting with the command line.
    pub qemu_output: PathBuf,
    timeout: Duration,
}

impl VmRun {
    /// Asserts that QEMU exited by itself with status 0 (the guest powered off; with
    /// `-no-reboot` a reboot also ends QEMU, hence the check for a kernel panic) and
    /// that no kernel panic is on the console.
    #[track_caller]
    pub fn assert_clean_exit(&self) {
        let qemu_text = std::fs::read_to_string(&self.qemu_output).unwrap_or_default();
        if self.timed_out {
            panic!(
                "QEMU was killed after {:.0} s without exiting; console log {}\n{}",
                self.timeout.as_secs_f64(),
                self.log.path().display(),
                self.log.tail(40)
            );
        }
        match self.status {
            Some(s) if s.success() => {}
            other => panic!(
                "QEMU exited with {other:?}; console log {}; QEMU output {}:\n{qemu_text}\n{}",
                self.log.path().display(),
                self.qemu_output.display(),
                self.log.tail(40)
            ),
        }
        self.log.assert_no_line(r"Kernel panic");
    }
}

/// One of the machine-wide VM slots, held (flock) while a VM runs.
struct VmSlot {
    _file: File,
}

impl VmSlot {
    /// Every slot, for a storm. A storm first takes its own lock, so two storms never
    /// hold a part of the slots each and wait for each other.
    fn acquire_all() -> Result<Vec<VmSlot>> {
        let path = Path::new("/tmp/diskless-qemu-storm.lock");
        let storm = open_lock_file(path)?;
        storm.lock().map_err(|e| Error::io("lock", path, e))?;
        let mut slots: Vec<VmSlot> = (0..VM_SLOTS).map(|_| VmSlot::acquire()).collect::<Result<_>>()?;
        // The storm lock is released with the last slot's holder.
        slots.push(VmSlot { _file: storm });
        Ok(slots)
    }

    fn acquire() -> Result<VmSlot> {
        let paths: Vec<PathBuf> =
            (0..VM_SLOTS).map(|i| PathBuf::from(format!("/tmp/diskless-qemu-slot-{i}.lock"))).collect();
        let mut said = false;
        loop {
            for path in &paths {
                let file = open_lock_file(path)?;
                match file.try_lock() {
                    Ok(()) => return Ok(VmSlot { _file: file }),
                    Err(std::fs::TryLockError::WouldBlock) => {}
                    Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock VM slot", path, e)),
                }
            }
            if !said {
                eprintln!("waiting for one of {VM_SLOTS} VM slots (/tmp/diskless-qemu-slot-*.lock)");
                said = true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A lock file shared by every test process, created when missing.
fn open_lock_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(vm: &Vm) -> String {
        let dir = tempfile::tempdir().unwrap();
        let cmd = vm.command(dir.path(), Path::new("/logs/t.log")).unwrap();
        describe(&cmd)
    }

    #[test]
    fn command_has_tcg_serial_file_and_console_append() {
        let a = args(&Vm::new("t").kernel(Path::new("/k")).append("quiet"));
        for want in [
            "-accel tcg",
            "-nodefaults",
            "-no-reboot",
            "-serial file:/logs/t.log",
            "-append console=ttyS0 panic=-1 quiet",
        ] {
            assert!(a.contains(want), "{want:?} missing in {a}");
        }
    }

    #[test]
    fn each_hub_nic_gets_its_own_hub() {
        let a = args(
            &Vm::new("t")
                .kernel(Path::new("/k"))
                .nic(Nic::new("e1000", "52:54:00:00:00:01"))
                .nic(Nic::new("rtl8139", "52:54:00:00:00:02")),
        );
        assert!(a.contains("-netdev hubport,id=n0,hubid=100 -device e1000,netdev=n0,mac=52:54:00:00:00:01"), "{a}");
        assert!(a.contains("-netdev hubport,id=n1,hubid=101 -device rtl8139,netdev=n1,mac=52:54:00:00:00:02"), "{a}");
    }

    #[test]
    fn tap_nic_without_namespace_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vm = Vm::new("t").kernel(Path::new("/k")).nic(Nic::tap("e1000", "52:54:00:00:00:01", "tap0"));
        assert!(vm.command(dir.path(), Path::new("/l")).is_err());
    }

    #[test]
    fn disks_get_controllers_and_sized_backing_files() {
        let dir = tempfile::tempdir().unwrap();
        let vm = Vm::new("t")
            .kernel(Path::new("/k"))
            .disk(Disk::ahci(64))
            .disk(Disk::ahci(8))
            .disk(Disk::nvme(32, "SER1"))
            .disk(Disk::virtio(16));
        let a = describe(&vm.command(dir.path(), Path::new("/l")).unwrap());
        assert_eq!(a.matches("ich9-ahci").count(), 1, "{a}");
        assert!(a.contains("ide-hd,drive=d0,bus=ahci.0") && a.contains("ide-hd,drive=d1,bus=ahci.1"), "{a}");
        assert!(a.contains("nvme,drive=d2,serial=SER1") && a.contains("virtio-blk-pci,drive=d3"), "{a}");
        assert_eq!(std::fs::metadata(dir.path().join("disk2.raw")).unwrap().len(), 32 << 20);
    }

    #[test]
    fn uefi_pxe_gets_ovmf_a_private_vars_copy_and_the_first_nic_as_boot_device() {
        let dir = tempfile::tempdir().unwrap();
        let vm = Vm::new("t")
            .pxe()
            .firmware(Firmware::Uefi)
            .nic(Nic::new("virtio-net-pci", "52:54:00:00:00:01").without_rom())
            .nic(Nic::new("virtio-net-pci", "52:54:00:00:00:02"));
        let a = describe(&vm.command(dir.path(), Path::new("/l")).unwrap());
        assert!(a.contains("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"), "{a}");
        let vars = dir.path().join("OVMF_VARS.fd");
        assert!(a.contains(&format!("if=pflash,format=raw,unit=1,file={}", vars.display())), "{a}");
        assert_eq!(std::fs::read(&vars).unwrap(), std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.fd").unwrap());
        assert!(a.contains("mac=52:54:00:00:00:01,bootindex=1,romfile= "), "{a}");
        assert!(a.contains("mac=52:54:00:00:00:02 ") || a.ends_with("mac=52:54:00:00:00:02"), "{a}");
        assert!(!a.contains("-boot n") && !a.contains("secure=on") && a.contains("-machine pc "), "{a}");
    }

    #[test]
    fn the_other_architectures_run_their_own_qemu_with_their_own_firmware() {
        let dir = tempfile::tempdir().unwrap();
        let nic = || Nic::new("virtio-net-pci", "52:54:00:00:00:01");
        let arm = Vm::new("t").machine(Machine::Virt).pxe().nic(nic().without_rom());
        let e = arm.clone().command(dir.path(), Path::new("/l")).unwrap_err().to_string();
        assert!(e.contains("Firmware::Aavmf"), "{e}");
        let a = describe(&arm.firmware(Firmware::Aavmf).command(dir.path(), Path::new("/l")).unwrap());
        assert!(a.starts_with("qemu-system-aarch64 -machine virt -accel tcg"), "{a}");
        assert!(a.contains("-cpu cortex-a57") && a.contains("file=/usr/share/AAVMF/AAVMF_CODE.fd"), "{a}");
        assert!(a.contains("mac=52:54:00:00:00:01,bootindex=1,romfile="), "{a}");
        let power = Vm::new("t").machine(Machine::Pseries).firmware(Firmware::Slof).pxe();
        let a = describe(
            &power.nic(Nic::new("spapr-vlan", "52:54:00:00:00:02")).command(dir.path(), Path::new("/l")).unwrap(),
        );
        assert!(a.starts_with("qemu-system-ppc64 -machine pseries ") && !a.contains("pflash"), "{a}");
        assert!(a.contains("spapr-vlan,netdev=n0,mac=52:54:00:00:00:02,bootindex=1"), "SLOF boots its first NIC: {a}");
        let pc32 = Vm::new("t").machine(Machine::Pc32).pxe().nic(nic());
        let a = describe(&pc32.command(dir.path(), Path::new("/l")).unwrap());
        assert!(a.starts_with("qemu-system-i386 -machine pc ") && a.contains("-boot n"), "{a}");
    }

    #[test]
    fn secure_boot_needs_q35_and_gets_smm_secure_flash_and_microsoft_keys() {
        let dir = tempfile::tempdir().unwrap();
        let vm = Vm::new("t").pxe().firmware(Firmware::UefiSecureBoot);
        let e = vm.clone().command(dir.path(), Path::new("/l")).unwrap_err().to_string();
        assert!(e.contains("Machine::Q35"), "{e}");
        let a = describe(&vm.machine(Machine::Q35).command(dir.path(), Path::new("/l")).unwrap());
        for want in [
            "-machine q35,smm=on ",
            "-global driver=cfi.pflash01,property=secure,value=on",
            "file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
        ] {
            assert!(a.contains(want), "{want:?} missing in {a}");
        }
        let vars = std::fs::read(dir.path().join("OVMF_VARS.fd")).unwrap();
        assert_eq!(vars, std::fs::read("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").unwrap());
    }
}
