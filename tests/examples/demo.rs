//! `qemu/demo`: one lab machine network-boots, live on this terminal.
//!
//! Builds the release `init` and `mkinitramfs` and a netboot initramfs, starts the PXE
//! rig (a private namespace with a bridge; dnsmasq as DHCP + TFTP + DNS with a PTR
//! record for `lab3-12.example.edu`; nfs-ganesha exporting the busybox root image, or
//! the Debian one with `--debian`), and boots one QEMU client (TCG, virtio-net) through
//! SeaBIOS, iPXE and pxelinux. The serial console streams to stdout as it comes: the
//! firmware, the kernel, the init's `diskless:` lines (hardware, lease, host name, NFS
//! mount, layers, hand-off), then the image's own output until it powers off.
//!
//! The root path comes from DHCP option 17, as in a lab; extra arguments are added to
//! the kernel command line (e.g. `diskless.debug`).
//!
//! Exit status: 0 when the image ran to its end and QEMU exited cleanly; QEMU's status
//! if it failed; 1 if the boot did not reach the image's last line; 124 on timeout; 130
//! on Ctrl-C (SIGINT, SIGTERM and SIGHUP stop QEMU and the servers and delete the
//! namespace before exiting).
//!
//! Usage: `qemu/demo [--debian] [--timeout SECONDS] [KERNEL ARGS...]`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use qemu_tests::build::{release_binaries, try_build_initramfs};
use qemu_tests::kernel::{Kernel, cache_dir};
use qemu_tests::nfs::{NfsExport, NfsServer};
use qemu_tests::paths::workspace_root;
use qemu_tests::pxe::{LAB_HOST, LAB_IP, PxeRig, ROOT_PATH};
use qemu_tests::vm::{Nic, RunningVm, VmRun};

const MAC: &str = "52:54:00:77:03:12";
const USAGE: &str = "usage: qemu/demo [--debian] [--timeout SECONDS] [KERNEL ARGS...]";

/// Set by SIGINT, SIGTERM or SIGHUP; the main loop then stops QEMU and the servers.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// What to boot.
struct Args {
    image: &'static str,
    /// The image's line that says it ran to its end.
    done: &'static str,
    timeout: Duration,
    append: String,
}

fn parse_args() -> Result<Args, String> {
    let mut debian = false;
    let mut timeout = None;
    let mut append = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--debian" => debian = true,
            "--timeout" => {
                let v = args.next().ok_or(USAGE)?;
                timeout =
                    Some(v.parse::<u64>().map_err(|_| format!("--timeout {v}: not a number of seconds\n{USAGE}"))?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => append.push(a),
        }
    }
    // systemd under TCG on an NFS root takes minutes; busybox well under one.
    let env_timeout = std::env::var("DISKLESS_QEMU_TIMEOUT").ok().and_then(|s| s.parse().ok());
    let secs = timeout.or(env_timeout).unwrap_or(if debian { 600 } else { 300 });
    Ok(Args {
        image: if debian { "debian" } else { "busybox" },
        done: if debian { r"DEBIAN: hostname=\S+ multi-user reached" } else { r"IMAGE: done\s*$" },
        timeout: Duration::from_secs(secs),
        append: append.join(" "),
    })
}

fn main() {
    let code = match parse_args().and_then(|args| run(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn say(msg: impl AsRef<str>) {
    let _ = std::io::stdout().flush();
    eprintln!("demo: {}", msg.as_ref());
}

/// Everything the rig needs that `qemu/setup` and `qemu/build-images` provide; fails
/// before any build with the command to run.
fn check_prerequisites(image: &str) -> Result<PathBuf, String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (network namespace, taps, NFS server): run it as root".into());
    }
    Kernel::locate(&cache_dir()).map_err(|e| e.to_string())?;
    let dir = workspace_root().join("qemu/.cache/images").join(image);
    // Debian's /sbin/init is an absolute symlink: look at the link, not its target.
    if std::fs::symlink_metadata(dir.join("sbin/init")).is_err() {
        return Err(format!(
            "root image {image} not found at {}: run qemu/setup (as root), which builds it with qemu/build-images",
            dir.display()
        ));
    }
    Ok(dir)
}

fn run(args: &Args) -> Result<i32, String> {
    let image_dir = check_prerequisites(args.image)?;
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }

    let t = Instant::now();
    say(
        "building the release init and mkinitramfs (cargo build --release -p diskless -p mkinitramfs; minutes on a fresh checkout)",
    );
    release_binaries();
    let initrd = try_build_initramfs(&["--profile", "netboot"]).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&initrd).map(|m| m.len()).unwrap_or(0);
    say(format!(
        "netboot initramfs {} ({} KiB) ready after {:.1} s",
        initrd.display(),
        size / 1024,
        t.elapsed().as_secs_f64()
    ));
    if stopped() {
        return Ok(130);
    }

    let name = format!("demo-{}", args.image);
    // Drop order (reverse of declaration): QEMU, then NFS, then the rig (dnsmasq, the
    // namespace with its bridge and tap).
    let mut rig = PxeRig::new(&name).map_err(|e| e.to_string())?;
    rig.initrd(&initrd).map_err(|e| e.to_string())?;
    rig.pxelinux_default(&args.append, true).map_err(|e| e.to_string())?;
    let tap = rig.tap().map_err(|e| e.to_string())?;
    let config = rig.dnsmasq_config().host(MAC, LAB_IP, LAB_HOST);
    let dnsmasq_log = rig.start_dnsmasq(&config, "dnsmasq").map_err(|e| e.to_string())?.log_path().to_path_buf();
    say(format!(
        "namespace {}: dnsmasq on 10.77.0.1 (DHCP, TFTP pxelinux.0, DNS: {LAB_IP} = {LAB_HOST}.example.edu, root path {ROOT_PATH})",
        rig.netns().name()
    ));
    let nfs = NfsServer::start(rig.netns(), &NfsExport::new(&image_dir), &name).map_err(|e| e.to_string())?;
    say(format!("nfs-ganesha exports {} read-only as {ROOT_PATH} (NFSv3 and v4)", image_dir.display()));
    let logs = [dnsmasq_log, nfs.kept_log().to_path_buf()];
    if stopped() {
        return Ok(130);
    }

    let vm = rig.vm(&name).nic(Nic::tap("virtio-net-pci", MAC, &tap)).timeout(args.timeout);
    let log_path = vm.log_path().map_err(|e| e.to_string())?;
    say(format!(
        "network-booting {MAC} (pc, virtio-net, TCG; timeout {} s; Ctrl-C stops it); console follows",
        args.timeout.as_secs()
    ));
    say("----------------------------------------------------------------------------");
    // Spawning waits for one of the machine's two VM slots: do it on a thread, so that
    // Ctrl-C during the wait still cleans up.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(vm.spawn());
    });
    let running = loop {
        if stopped() {
            say("interrupted while waiting for a VM slot");
            return Ok(130);
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => break r.map_err(|e| e.to_string())?,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the thread starting QEMU died".into()),
        }
    };
    let started = Instant::now();
    let mut console = Console::new(&log_path, started);
    let (vm_run, stamps) = match follow(running, &mut console, args.timeout) {
        Some(run) => (run, console.finish()),
        None => {
            console.finish();
            say("interrupted: QEMU stopped; stopping the servers and deleting the namespace");
            drop(nfs);
            drop(rig);
            return Ok(130);
        }
    };
    drop(nfs);
    drop(rig);
    Ok(report(args, &vm_run, &stamps, &logs))
}

/// Streams the console until QEMU exits (returns its run), the timeout passes (QEMU is
/// killed; the run says `timed_out`) or a signal arrives (QEMU is killed; `None`).
fn follow(running: RunningVm, console: &mut Console, timeout: Duration) -> Option<VmRun> {
    loop {
        console.poll();
        if stopped() {
            drop(running);
            return None;
        }
        // QEMU is our child: once it exits it stays a zombie until wait() reaps it.
        if exited(running.pid()) || console.started.elapsed() >= timeout {
            let run = running.wait().ok()?;
            console.poll();
            return Some(run);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])).unwrap_or(false),
        Err(_) => true,
    }
}

/// Seconds after QEMU's start at which the console first showed each milestone.
#[derive(Default)]
struct Stamps {
    kernel: Option<f64>,
    init: Option<f64>,
    handoff: Option<f64>,
    image: Option<f64>,
}

/// Follows the console file QEMU writes: copies new bytes to stdout (without the
/// terminal resets SeaBIOS and the kernel send) and notes when milestones appear.
struct Console {
    path: PathBuf,
    file: Option<File>,
    started: Instant,
    /// The current, unfinished line (lossy text, no `\r`).
    line: String,
    stamps: Stamps,
}

/// Escape sequences that would clear the person's screen or turn off line wrapping,
/// and what replaces them (the kernel resets the terminal in the middle of a line).
const REPLACED: [(&str, &str); 3] = [("\x1bc", "\r\n"), ("\x1b[?7l", ""), ("\x1b[2J", "")];

impl Console {
    fn new(path: &Path, started: Instant) -> Console {
        Console { path: path.into(), file: None, started, line: String::new(), stamps: Stamps::default() }
    }

    fn poll(&mut self) {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(file) = self.file.as_mut() else { return };
        let mut buf = Vec::new();
        if file.read_to_end(&mut buf).is_err() || buf.is_empty() {
            return;
        }
        let now = self.started.elapsed().as_secs_f64();
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        for (seq, by) in REPLACED {
            text = text.replace(seq, by);
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        for c in text.chars() {
            match c {
                '\n' => {
                    self.see(now);
                    self.line.clear();
                }
                '\r' => {}
                c => self.line.push(c),
            }
        }
        // A line still being written may already hold a milestone ("Probing EDD... o").
        self.see(now);
    }

    /// Notes the milestones in the current line.
    fn see(&mut self, now: f64) {
        let line = self.line.trim();
        let s = &mut self.stamps;
        let init_line = line.contains("diskless: ");
        // The kernel's setup code is the first to print (loglevel=4 hides the rest).
        if s.kernel.is_none() && (line.contains("Probing EDD") || line.contains("Decompressing Linux") || init_line) {
            s.kernel = Some(now);
        }
        if s.init.is_none() && init_line {
            s.init = Some(now);
        }
        if s.handoff.is_some() && s.image.is_none() && !line.is_empty() && !init_line {
            s.image = Some(now);
        }
        if s.handoff.is_none() && line.contains("diskless: starting /") {
            s.handoff = Some(now);
        }
    }

    /// Ends the stream with the terminal's attributes and line wrapping restored.
    fn finish(&mut self) -> Stamps {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"\x1b[0m\x1b[?7h\n");
        let _ = out.flush();
        std::mem::take(&mut self.stamps)
    }
}

/// Prints the summary and returns the exit status.
fn report(args: &Args, run: &VmRun, stamps: &Stamps, server_logs: &[PathBuf]) -> i32 {
    let secs = |v: Option<f64>| v.map(|s| format!("{s:6.1} s")).unwrap_or_else(|| "     (not seen)".into());
    let log = run.log.path().display();
    let done = run.log.find_line(args.done);
    let error = run.log.find_line(r"diskless: ERROR");
    say("----------------------------------------------------------------------------");
    say(format!("QEMU start -> kernel                {}", secs(stamps.kernel)));
    say(format!("QEMU start -> init's first line     {}", secs(stamps.init)));
    say(format!("QEMU start -> hand-off to the image {}", secs(stamps.handoff)));
    say(format!("QEMU start -> image's first line    {}", secs(stamps.image)));
    say(format!("QEMU ran                            {:6.1} s", run.elapsed.as_secs_f64()));
    say(format!("console log  {log}"));
    let servers: Vec<String> = server_logs.iter().map(|p| p.display().to_string()).collect();
    say(format!("server logs  {}", servers.join(" ")));
    if run.timed_out {
        say(format!("FAILED: no power-off within {} s; QEMU killed; see {log}", args.timeout.as_secs()));
        return 124;
    }
    let status = run.status.and_then(|s| s.code()).unwrap_or(1);
    if status != 0 {
        say(format!("FAILED: QEMU exited with {status}; see {log} and {}", run.qemu_output.display()));
        return status;
    }
    if done.is_none() || run.log.find_line("Kernel panic").is_some() {
        // The init's error, else its last word before a reboot countdown.
        let why = error
            .or_else(|| run.log.find_all(r"diskless: ").into_iter().rfind(|m| !m.line.contains("diskless: rebooting")))
            .map(|m| m.line.trim().to_string())
            .unwrap_or_else(|| "the init printed nothing".into());
        say(format!("FAILED: no line matching /{}/; the init's last word: {why}; see {log}", args.done));
        return 1;
    }
    say(format!("OK: {} booted {LAB_HOST} from the network and powered off", args.image));
    0
}
