//! Private network namespaces for tests.
//!
//! All test traffic stays inside namespaces created here: a new namespace has only
//! `lo`, and nothing in this module ever adds a default route or moves a link to or
//! from the host's namespace. Links are created inside a namespace (`ip -n NS ...`),
//! so bridges, taps and veth pairs vanish with it.
//!
//! Names are unique per run ([`crate::paths::unique_name`]), so tests in parallel
//! processes do not collide. Dropping a [`Netns`] kills every process still inside it
//! and deletes it; declare server guards after the namespace so they drop first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::paths::unique_name;
use crate::process::{ChildGuard, run};

const HINT: &str = "needs root and iproute2 (run qemu/setup)";

/// A uniquely named network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `prefix` + a unique suffix, with `lo` up.
    /// `prefix` must be at most 4 characters so derived names fit interface names.
    pub fn new(prefix: &str) -> Result<Netns> {
        // A stale namespace from a crashed run may hold a name with a recycled PID; try
        // the next counter value then.
        let mut last = None;
        for _ in 0..5 {
            let name = unique_name(prefix)?;
            if exists(&name) {
                continue;
            }
            match run(Command::new("ip").args(["netns", "add", &name]), HINT) {
                Ok(_) => {
                    let ns = Netns { name };
                    ns.ip(&["link", "set", "lo", "up"])?;
                    return Ok(ns);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Invalid {
            what: format!("namespace prefix {prefix:?}"),
            reason: "every candidate name is taken; delete stale namespaces listed by `ip netns list`".into(),
        }))
    }

    /// The namespace's name (as in `ip netns list`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args), HINT)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Runs `program args` inside the namespace to completion and returns its stdout.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args), HINT)
    }

    /// Starts `program args` inside the namespace in its own process group; the guard
    /// kills the group on drop. (`ip netns exec` execs the program, so the guard's PID
    /// is the program's.)
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<ChildGuard> {
        let mut cmd = self.command(program);
        cmd.args(args);
        ChildGuard::spawn(cmd, format!("{program} in namespace {}", self.name))
    }

    /// Drops `percent` % of the frames each way between the bridge ports and the
    /// namespace's own addresses on its bridges (nftables, bridge family, input and
    /// output hooks; this kernel has no `sch_netem`): a lossy lab network. The rules go
    /// away with the namespace.
    pub fn drop_frames(&self, percent: u8) -> Result<()> {
        if percent >= 100 {
            return Err(Error::Invalid { what: format!("loss of {percent} %"), reason: "must be below 100".into() });
        }
        let rules = format!(
            "table bridge loss {{\n\
             \tchain to_server {{ type filter hook input priority 0; numgen random mod 100 < {percent} drop; }}\n\
             \tchain to_client {{ type filter hook output priority 0; numgen random mod 100 < {percent} drop; }}\n\
             }}\n"
        );
        let file = tempfile::NamedTempFile::new()
            .map_err(|e| Error::io("create temporary file in", std::env::temp_dir(), e))?;
        std::fs::write(file.path(), rules).map_err(|e| Error::io("write", file.path(), e))?;
        run(self.command("nft").arg("-f").arg(file.path()), "needs nftables (run qemu/setup)").map(drop)
    }

    /// Brings link `dev` up.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    /// Adds an address (`10.77.0.1/24`, `fd77::1/64`) to `dev`. IPv6 addresses skip
    /// duplicate address detection so they are usable at once.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]).map(drop)
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
        }
    }

    /// Adds a bridge with the given addresses, STP off and no forward delay (so a tap
    /// forwards as soon as the VM's NIC is up), and brings it up.
    pub fn add_bridge(&self, name: &str, addrs: &[&str]) -> Result<()> {
        check_ifname(name)?;
        self.ip(&["link", "add", name, "type", "bridge"])?;
        self.ip(&["link", "set", name, "type", "bridge", "forward_delay", "0", "stp_state", "0"])?;
        for addr in addrs {
            self.add_addr(name, addr)?;
        }
        self.link_up(name)
    }

    /// Adds a tap device attached to `bridge`, up. QEMU opens it with
    /// `-netdev tap,ifname=<name>,script=no,downscript=no` when run inside this namespace.
    pub fn add_tap(&self, name: &str, bridge: &str) -> Result<()> {
        check_ifname(name)?;
        self.ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
        self.ip(&["link", "set", name, "master", bridge])?;
        self.link_up(name)
    }

    /// Adds a veth pair with both ends in this namespace, both up.
    pub fn add_veth(&self, a: &str, b: &str) -> Result<()> {
        check_ifname(a)?;
        check_ifname(b)?;
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        self.link_up(a)?;
        self.link_up(b)
    }

    /// Adds a veth pair: `local` in this namespace, `remote` in `other`, both up.
    pub fn add_veth_to(&self, local: &str, other: &Netns, remote: &str) -> Result<()> {
        check_ifname(local)?;
        check_ifname(remote)?;
        self.ip(&["link", "add", local, "type", "veth", "peer", "name", remote, "netns", other.name()])?;
        self.link_up(local)?;
        other.link_up(remote)
    }

    /// Another machine on this namespace's `bridge`: a new namespace (`prefix`, as in
    /// [`Netns::new`]) joined to the bridge by a veth pair (`local` here on the bridge,
    /// `remote` there with address `cidr`), so that it has its own MAC, addresses and
    /// ports (a second rpcbind on 111, a second DHCP server on 67). Drop it before this
    /// namespace.
    pub fn machine_on(&self, bridge: &str, prefix: &str, (local, remote): (&str, &str), cidr: &str) -> Result<Netns> {
        let other = Netns::new(prefix)?;
        self.add_veth_to(local, &other, remote)?;
        self.set_master(local, bridge)?;
        other.add_addr(remote, cidr)?;
        Ok(other)
    }

    /// Attaches an existing link of this namespace to `bridge`.
    pub fn set_master(&self, dev: &str, bridge: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "master", bridge]).map(drop)
    }

    /// Names of the links in this namespace.
    pub fn links(&self) -> Result<Vec<String>> {
        let out = self.ip(&["-o", "link", "show"])?;
        // "2: br0@if3: <...>" -> "br0"
        Ok(out
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .collect())
    }

    /// PIDs of processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<u32> {
        run(Command::new("ip").args(["netns", "pids", &self.name]), HINT)
            .map(|out| out.split_whitespace().filter_map(|p| p.parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only processes this test started can be inside a namespace it created; kill
        // the leftovers so the namespace really goes away with its links.
        for pid in self.pids() {
            // SAFETY: plain kill(2) on a PID that lives in our private namespace.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        for _ in 0..20 {
            if run(Command::new("ip").args(["netns", "del", &self.name]), HINT).is_ok() || !exists(&self.name) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "warning: could not delete network namespace {}; remove it with `ip netns del {}`",
            self.name, self.name
        );
    }
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        return Err(Error::Invalid {
            what: format!("interface name {name:?}"),
            reason: "Linux interface names are 1 to 15 characters without '/', ':' or spaces".into(),
        });
    }
    Ok(())
}
/// What [`Netns::wait_listening`] waits for.
pub struct Listening<'a> {
    /// `ss` flags naming the sockets to list: `-Hlnu` (UDP) or `-Hltn` (TCP).
    pub ss_flags: &'a str,
    pub ports: &'a [u16],
    /// For the timeout message, e.g. "dnsmasq listening".
    pub what: &'a str,
    /// The server's log, named by the timeout error.
    pub log: &'a Path,
}

impl Netns {
    /// Wait until every port of `want` listens inside the namespace. Fails with the
    /// error `exited` builds when the server process ends first, or after `timeout`.
    pub fn wait_listening(
        &self,
        server: &mut ChildGuard,
        want: &Listening<'_>,
        timeout: Duration,
        exited: impl Fn(ExitStatus) -> Error,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = server.try_wait() {
                return Err(exited(status));
            }
            let sockets = self.run("ss", &[want.ss_flags]).unwrap_or_default();
            let listens = |port: &u16| sockets.split_whitespace().any(|f| f.ends_with(&format!(":{port}")));
            if want.ports.iter().all(listens) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{} in namespace {}", want.what, self.name()),
                    seconds: timeout.as_secs_f64(),
                    log: Some(want.log.to_path_buf()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A server process started in a namespace with its log kept under
/// `target/qemu-logs/`: what dnsmasq, dhcpd and named share. Killed (with its process
/// group) when dropped; `state` (its configuration and run files) is removed after.
pub struct Daemon {
    child: ChildGuard,
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl Daemon {
    /// Spawns `cmd` (a command of `ns`, its output already directed) as `program` and
    /// waits up to `timeout` until `ports` listen (`ss_flags` as in [`Listening`]). A
    /// server that exits first is an error with its log and where its configuration
    /// was kept (`<log>.conf`).
    pub fn start(
        ns: &Netns,
        program: &str,
        cmd: Command,
        listen: (&str, &[u16]),
        timeout: Duration,
        log: PathBuf,
        state: tempfile::TempDir,
    ) -> Result<Daemon> {
        let child = ChildGuard::spawn(cmd, format!("{program} in namespace {}", ns.name()))?;
        let mut daemon = Daemon { child, log, _state: state };
        let log = daemon.log.clone();
        let what = format!("{program} listening");
        let want = Listening { ss_flags: listen.0, ports: listen.1, what: &what, log: &log };
        ns.wait_listening(&mut daemon.child, &want, timeout, |status| Error::Command {
            command: program.into(),
            detail: format!("exited with {status} at start: {}", std::fs::read_to_string(&log).unwrap_or_default()),
            hint: format!("check its configuration in {}", log.with_extension("conf").display()),
        })?;
        Ok(daemon)
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (empty if none yet).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process guard (PID, kill).
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

/// A server type that is a [`Daemon`] with its own start: its log and process are the
/// daemon's (`log_path`, `log_text`, `child`).
macro_rules! daemon_wrapper {
    ($name:ident) => {
        impl std::ops::Deref for $name {
            type Target = $crate::netns::Daemon;
            fn deref(&self) -> &$crate::netns::Daemon {
                &self.0
            }
        }

        impl std::ops::DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $crate::netns::Daemon {
                &mut self.0
            }
        }
    };
}
pub(crate) use daemon_wrapper;
