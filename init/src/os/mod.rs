//! The one system interface of the boot: every side effect of PID 1 — mounts, module
//! loads, the uevent socket, the network's links, sockets (the syslog datagrams too) and
//! netlink, host and domain
//! name, disk reads,
//! file attributes, the scratch cache's holder process, the background module loader's
//! fork, exec, power-off and reboot — goes through [`Os`]. The stages hold
//! it (`Boot::os`) and never construct a real implementation themselves.
//!
//! [`RealOs`] is the one implementation that makes system calls, and the only place
//! that calls mount(2); [`fake::FakeOs`] records every call as a typed [`fake::Call`]
//! and fails the Nth call of a kind on request, so whole boots run on the host.
//!
//! Reading and writing plain files under the boot root is not behind the trait: tests
//! give the boot a temporary directory as its root, and those reads and writes land there.

mod real;

pub mod fake;

use std::ffi::OsStr;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

pub use real::RealOs;
pub use rustix::fs::Timestamps;
pub use rustix::mount::MountFlags;

use crate::fscache::HoldError;
use crate::hardware::detached::DetachedLoad;
use crate::net::config::Mac;
use crate::net::dhcp::{Lease, OfferPolicy};
use crate::net::dhcp_io::DhcpIoError;
use crate::net::dns::{LookupTiming, PtrOutcome};
use crate::net::inform::{InformAck, InformError, InformTiming};
use crate::net::link::{LinkConfig, LinkError, SysLink};
use crate::net::log::NetLog;
use crate::scratch::probe::Sample;

/// MS_MOVE: rustix's `MountFlags` leaves it out (it has `mount_move`), but it is a plain
/// mount(2) flag, and going through [`Os::mount`] keeps mount(2) wrapped once.
/// (`as _`: the flags are a c_uint on most targets but 64-bit on powerpc64le.)
pub const MS_MOVE: MountFlags = MountFlags::from_bits_retain(libc::MS_MOVE as _);

/// Local directories and scratch filesystems hold configuration and data, never device
/// nodes or set-id programs that did not come from the image itself.
pub const LOCAL_MOUNT_FLAGS: MountFlags = MountFlags::NODEV.union(MountFlags::NOSUID);

/// Receives one uevent message into the buffer; see [`Os::open_uevents`].
pub type UeventReceive = Box<dyn FnMut(&mut [u8]) -> io::Result<usize> + Send>;

/// The operating-system calls the boot stages make.
pub trait Os: Send + Sync {
    // Mounts and disks.

    /// mount(2). Moves and binds are mounts too: see [`Os::move_mount`], [`Os::bind_mount`].
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()>;
    /// umount(2).
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// swapon(2) with no flags.
    fn swapon(&self, device: &Path) -> io::Result<()>;
    /// The first and last bytes of the block device `device` (`size` bytes long), opened
    /// read-only: the only access to a disk that was not chosen as scratch.
    fn read_disk(&self, device: &Path, size: u64) -> io::Result<Sample>;

    /// MS_MOVE the mount at `from` (and its submounts) to `to`.
    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mount(&from.to_string_lossy(), to, "", MS_MOVE, "")
    }
    /// `mount --bind source target`.
    fn bind_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        self.mount(&source.to_string_lossy(), target, "", MountFlags::BIND, "")
    }

    // Attributes of a freshly written entry, named relative to its directory; never
    // following a symlink called `name`.

    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
    fn set_owner(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    /// `fchmodat(dir, name, mode)`; never called for symlinks.
    fn set_mode(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()>;
    /// `utimensat(dir, name, times, AT_SYMLINK_NOFOLLOW)`.
    fn set_times(&self, dir: BorrowedFd<'_>, name: &OsStr, times: &Timestamps) -> io::Result<()>;

    // Kernel modules and scheduling.

    /// finit_module(2) on the file at `path` with the option string `params`. Blocks
    /// while the module's init function runs.
    fn finit_module(&self, path: &Path, params: &str) -> io::Result<()>;
    /// Give the calling thread, and the threads it starts afterwards, the nice value
    /// `nice`: setpriority(PRIO_PROCESS, 0) acts on the calling thread on Linux.
    fn set_thread_nice(&self, nice: i32) -> io::Result<()>;
    /// The running kernel's release (`uname -r`).
    fn kernel_release(&self) -> String;
    /// Fork a child that loads `loads` one by one, in order, at a low priority, each
    /// result as a line in `/dev/kmsg`, and gives up after `limit`; it outlives the
    /// exec of the image's init (see [`crate::hardware::detached`]). Returns its PID.
    fn load_detached(&self, loads: &[DetachedLoad], limit: Duration) -> io::Result<u32>;

    /// Open and bind the kernel's uevent socket (NETLINK_KOBJECT_UEVENT): events after
    /// this call are queued. The returned receive fills its buffer with one message, or
    /// fails after `poll` without one, so its reader can check whether to stop.
    fn open_uevents(&self, poll: Duration) -> io::Result<UeventReceive>;

    // The network.

    /// The Ethernet links under `sys_class_net`, sorted by name.
    fn links(&self, sys_class_net: &Path) -> Vec<SysLink>;
    /// Whether `name` has carrier.
    fn has_carrier(&self, sys_class_net: &Path, name: &str) -> bool;
    /// Set the link up or down (rtnetlink).
    fn set_link_up(&self, name: &str, up: bool) -> Result<(), LinkError>;
    /// Give the link its address, route and MTU (rtnetlink).
    fn configure_link(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError>;
    /// Remove what [`Os::configure_link`] gave the link (a lease that cannot boot).
    fn unconfigure_link(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError>;
    /// Run DHCP on `name` until a lease, the deadline `until`, or `cancel`, choosing
    /// among offers by `policy`.
    fn dhcp(
        &self,
        name: &str,
        mac: Mac,
        policy: &OfferPolicy,
        until: Instant,
        cancel: &AtomicBool,
        log: &dyn NetLog,
    ) -> Result<Lease, DhcpIoError>;
    /// DHCPINFORM for the static `address` of the configured link `name`, first to
    /// `server` (see [`crate::net::inform`]).
    fn dhcp_inform(
        &self,
        name: &str,
        mac: Mac,
        address: Ipv4Addr,
        server: Option<Ipv4Addr>,
        timing: &InformTiming,
        log: &dyn NetLog,
    ) -> Result<InformAck, InformError>;
    /// Send a DHCPRELEASE of `lease`, configured on `name`, to its server; `Ok(false)`
    /// when the lease names no server.
    fn dhcp_release(&self, name: &str, mac: Mac, lease: &Lease) -> Result<bool, DhcpIoError>;
    /// Send one UDP datagram to `to` without waiting: a datagram the kernel cannot
    /// take at once (full socket buffer) is an error, never a wait. No answer is read.
    fn send_udp(&self, to: SocketAddrV4, payload: &[u8]) -> io::Result<()>;
    /// Open a TCP connection to `to` and close it, waiting at most `timeout`.
    fn probe_tcp(&self, to: SocketAddrV4, timeout: Duration) -> io::Result<()>;
    /// Ask `servers` for the PTR record of `addr`.
    fn lookup_ptr(
        &self,
        addr: Ipv4Addr,
        servers: &[SocketAddr],
        timing: LookupTiming,
        debug: &dyn Fn(&str),
    ) -> PtrOutcome;
    /// sethostname(2).
    fn set_hostname(&self, name: &str) -> io::Result<()>;
    /// setdomainname(2).
    fn set_domainname(&self, name: &str) -> io::Result<()>;

    // The scratch disk as a cache of the image.

    /// Bind an FS-Cache cache by writing each of `commands` alone to the cachefiles
    /// device `device`, then fork a holder that keeps the device open (the cache stays
    /// bound only while it is) until the shutdown's SIGTERM, when it prints the FS-Cache
    /// counters `stats` on the console and exits. Returns the holder's pid.
    fn hold_cache(&self, device: &Path, commands: &[String], stats: &Path) -> Result<u32, HoldError>;

    // The console, the hand-off and the end.

    /// Make sure fds 0, 1 and 2 are the console: when the archive has no `dev/console`
    /// node the kernel starts PID 1 without them. Returns whether they had to be opened.
    fn attach_console(&self, console: &Path) -> io::Result<bool>;
    /// Run the rescue shell on the console and wait for it.
    fn run_shell(&self, shell: &Path) -> io::Result<ExitStatus>;
    /// chdir(2).
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// chroot(2).
    fn chroot(&self, path: &Path) -> io::Result<()>;
    /// execv(2) of `path` with `args` after argv[0] (= `path`), keeping the environment.
    /// Returns only when the call failed.
    fn exec(&self, path: &Path, args: &[String]) -> io::Error;
    /// reboot(POWER_OFF). Returns only when the call failed.
    fn power_off(&self) -> io::Error;
    /// reboot(RESTART). Returns only when the call failed.
    fn reboot(&self) -> io::Error;
}
