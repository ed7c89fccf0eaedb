//! The real system calls, for PID 1 in the initramfs: the only implementation of [`Os`]
//! that touches the kernel.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, Gid, Mode, Timestamps, Uid, chmodat, chownat, utimensat};
use rustix::mount::{MountFlags, UnmountFlags};
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType, netlink};

use super::{Os, UeventReceive};
use crate::fscache::HoldError;
use crate::hardware::detached::DetachedLoad;
use crate::net::config::Mac;
use crate::net::dhcp::{Lease, OfferPolicy};
use crate::net::dhcp_io::{self, DhcpIoError};
use crate::net::dns::{self, LookupTiming, PtrOutcome};
use crate::net::inform::{self, InformAck, InformError, InformTiming};
use crate::net::link::{self, LinkConfig, LinkError, SysLink};
use crate::net::log::NetLog;
use crate::scratch::probe::Sample;

/// The running kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealOs;

fn c_string(text: &[u8], what: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in {what}")))
}

impl Os for RealOs {
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        let data = c_string(data.as_bytes(), "mount options")?;
        let data = (!data.is_empty()).then_some(data.as_c_str());
        rustix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        rustix::mount::unmount(target, UnmountFlags::empty()).map_err(io::Error::from)
    }

    fn swapon(&self, device: &Path) -> io::Result<()> {
        let path = c_string(device.as_os_str().as_bytes(), "device path")?;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call;
        // swapon(2) only reads it.
        let rc = unsafe { libc::swapon(path.as_ptr(), 0) };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn read_disk(&self, device: &Path, size: u64) -> io::Result<Sample> {
        // File::open is O_RDONLY | O_CLOEXEC: probing can never write.
        let file = File::open(device)?;
        Sample::read(size, |offset, buf| file.read_exact_at(buf, offset))
    }

    fn set_owner(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        chownat(dir, name.as_bytes(), uid, gid, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    }

    fn set_mode(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
        // fchmodat cannot refuse to follow a symlink on Linux; the caller never passes one.
        chmodat(dir, name.as_bytes(), Mode::from_raw_mode(mode), AtFlags::empty()).map_err(io::Error::from)
    }

    fn set_times(&self, dir: BorrowedFd<'_>, name: &OsStr, times: &Timestamps) -> io::Result<()> {
        utimensat(dir, name.as_bytes(), times, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
    }

    fn finit_module(&self, path: &Path, params: &str) -> io::Result<()> {
        let file = File::open(path)?;
        let params = c_string(params.as_bytes(), "module parameters")?;
        rustix::system::finit_module(&file, &params, compressed_file_flag(path)).map_err(io::Error::from)
    }

    fn load_detached(&self, loads: &[DetachedLoad], limit: Duration) -> io::Result<u32> {
        // Everything that allocates happens here, before the fork: see `detached_child`.
        let prepared = loads
            .iter()
            .map(|load| {
                Ok(Prepared {
                    path: c_string(load.path.as_os_str().as_bytes(), "module path")?,
                    params: c_string(load.params.as_bytes(), "module parameters")?,
                    flags: compressed_file_flag(&load.path),
                    loaded: format!("<6>diskless: loaded {} from the image in the background\n", load.module)
                        .into_bytes(),
                    no_device: format!(
                        "<7>diskless: {} from the image found no device to drive (background)\n",
                        load.module
                    )
                    .into_bytes(),
                    failed: format!(
                        "<4>diskless: {} did not load from the image in the background: errno ",
                        load.module
                    )
                    .into_bytes(),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let done = format!("<6>diskless: the image's {} background loads are done\n", loads.len()).into_bytes();
        let gave_up = format!(
            "<4>diskless: background loads from the image stopped after {} s; the rest are left to the image\n",
            limit.as_secs()
        )
        .into_bytes();
        let limit_ns = i64::try_from(limit.as_nanos()).unwrap_or(i64::MAX);
        // SAFETY: the child runs `detached_child`, which only makes async-signal-safe
        // system calls on memory prepared above and never returns; the parent goes on.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            // SAFETY: this is the child of the fork above, as `detached_child` requires.
            0 => unsafe { detached_child(&prepared, &done, &gave_up, limit_ns) },
            pid => Ok(pid as u32),
        }
    }

    fn set_thread_nice(&self, nice: i32) -> io::Result<()> {
        rustix::process::setpriority_process(None, nice).map_err(io::Error::from)
    }

    fn kernel_release(&self) -> String {
        rustix::system::uname().release().to_string_lossy().into_owned()
    }

    fn open_uevents(&self, poll: Duration) -> io::Result<UeventReceive> {
        // The kernel's uevent multicast group.
        const KERNEL_GROUP: u32 = 1;
        // Large enough for the burst of events a bus driver produces while it probes: the
        // kernel drops events (ENOBUFS) when the queue overflows.
        const RECV_BUFFER: usize = 4 << 20;
        let socket = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Best effort: a smaller buffer still works for quiet machines.
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, RECV_BUFFER)
            .or_else(|_| rustix::net::sockopt::set_socket_recv_buffer_size(&socket, RECV_BUFFER));
        rustix::net::bind(&socket, &netlink::SocketAddrNetlink::new(0, KERNEL_GROUP))?;
        rustix::net::sockopt::set_socket_timeout(&socket, rustix::net::sockopt::Timeout::Recv, Some(poll))?;
        Ok(Box::new(move |buf: &mut [u8]| {
            rustix::net::recv(&socket, buf, RecvFlags::empty()).map(|(n, _)| n).map_err(io::Error::from)
        }))
    }

    fn links(&self, sys_class_net: &Path) -> Vec<SysLink> {
        link::list_links(sys_class_net)
    }

    fn has_carrier(&self, sys_class_net: &Path, name: &str) -> bool {
        link::has_carrier(sys_class_net, name)
    }

    fn set_link_up(&self, name: &str, up: bool) -> Result<(), LinkError> {
        link::Netlink::open()?.set_up(name, up)
    }

    fn configure_link(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        link::Netlink::open()?.configure(name, cfg)
    }

    fn unconfigure_link(&self, name: &str, cfg: &LinkConfig) -> Result<(), LinkError> {
        link::Netlink::open()?.unconfigure(name, cfg)
    }

    fn dhcp(
        &self,
        name: &str,
        mac: Mac,
        policy: &OfferPolicy,
        until: Instant,
        cancel: &AtomicBool,
        log: &dyn NetLog,
    ) -> Result<Lease, DhcpIoError> {
        dhcp_io::run_dhcp(name, mac, policy, until, cancel, log)
    }

    fn dhcp_release(&self, name: &str, mac: Mac, lease: &Lease) -> Result<bool, DhcpIoError> {
        dhcp_io::send_release(name, mac, lease)
    }

    fn send_udp(&self, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        // One socket for the whole boot, made on the first send (when the network is
        // up); close-on-exec, so the image's init does not inherit it.
        static SOCKET: std::sync::OnceLock<io::Result<std::net::UdpSocket>> = std::sync::OnceLock::new();
        let socket = SOCKET.get_or_init(|| {
            let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            // A full send buffer drops the message rather than hold up the line that logged it.
            socket.set_nonblocking(true)?;
            Ok(socket)
        });
        match socket {
            Ok(socket) => socket.send_to(payload, to).map(drop),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    fn probe_tcp(&self, to: SocketAddrV4, timeout: Duration) -> io::Result<()> {
        std::net::TcpStream::connect_timeout(&SocketAddr::V4(to), timeout).map(drop)
    }

    fn dhcp_inform(
        &self,
        name: &str,
        mac: Mac,
        address: Ipv4Addr,
        server: Option<Ipv4Addr>,
        timing: &InformTiming,
        log: &dyn NetLog,
    ) -> Result<InformAck, InformError> {
        inform::run_inform(name, mac, address, server, timing, log)
    }

    fn lookup_ptr(
        &self,
        addr: Ipv4Addr,
        servers: &[SocketAddr],
        timing: LookupTiming,
        debug: &dyn Fn(&str),
    ) -> PtrOutcome {
        dns::lookup_ptr(addr, servers, timing, debug)
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes()).map_err(io::Error::from)
    }

    fn set_domainname(&self, name: &str) -> io::Result<()> {
        rustix::system::setdomainname(name.as_bytes()).map_err(io::Error::from)
    }

    fn attach_console(&self, console: &Path) -> io::Result<bool> {
        use rustix::fd::AsFd;
        if rustix::io::fcntl_getfd(rustix::stdio::stdout()).is_ok() {
            return Ok(false);
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).open(console)?;
        rustix::stdio::dup2_stdin(file.as_fd())?;
        rustix::stdio::dup2_stdout(file.as_fd())?;
        rustix::stdio::dup2_stderr(file.as_fd())?;
        Ok(true)
    }

    fn run_shell(&self, shell: &Path) -> io::Result<ExitStatus> {
        std::process::Command::new(shell).env("PS1", "diskless# ").status()
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        rustix::process::chdir(path).map_err(io::Error::from)
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        rustix::process::chroot(path).map_err(io::Error::from)
    }

    fn hold_cache(&self, device: &Path, commands: &[String], stats: &Path) -> Result<u32, HoldError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut cachefiles = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(device)
            .map_err(|source| HoldError::Open { device: device.to_path_buf(), source })?;
        // Opened now: after the hand-off the holder's root is the emptied initramfs, where
        // no /proc is mounted; the open file stays valid when /proc moves to the image.
        let stats = File::open(stats).ok();
        for command in commands {
            // cachefiles takes one command per write(2).
            cachefiles
                .write_all(command.as_bytes())
                .map_err(|source| HoldError::Command { command: command.clone(), source })?;
        }
        // SAFETY: after fork the child calls only async-signal-safe functions (prctl,
        // signal-mask calls, pread, write, _exit: see `hold_until_sigterm`) and never
        // returns into Rust code that could take a lock another thread held. The
        // descriptors stay open in the child without exec, close-on-exec or not.
        match unsafe { libc::fork() } {
            -1 => Err(HoldError::Fork(io::Error::last_os_error())),
            0 => unsafe {
                // SAFETY: as above; the name is a NUL-terminated static string.
                libc::prctl(libc::PR_SET_NAME, c"fscache-hold".as_ptr() as libc::c_ulong, 0, 0, 0);
                hold_until_sigterm(stats.as_ref().map(AsRawFd::as_raw_fd))
            },
            // PID 1's copies close on return; the holder's keep the cache bound.
            pid => Ok(pid as u32),
        }
    }

    fn exec(&self, path: &Path, args: &[String]) -> io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(path).args(args).exec()
    }

    fn power_off(&self) -> io::Error {
        rustix::fs::sync();
        match rustix::system::reboot(rustix::system::RebootCommand::PowerOff) {
            Ok(()) => io::Error::other("reboot(POWER_OFF) returned"),
            Err(e) => e.into(),
        }
    }

    fn reboot(&self) -> io::Error {
        rustix::fs::sync();
        match rustix::system::reboot(rustix::system::RebootCommand::Restart) {
            Ok(()) => io::Error::other("reboot(RESTART) returned"),
            Err(e) => e.into(),
        }
    }
}

/// One load of [`Os::load_detached`], ready for the child.
struct Prepared {
    path: CString,
    params: CString,
    flags: std::ffi::c_int,
    /// The kmsg line when it loaded.
    loaded: Vec<u8>,
    /// The kmsg line when it found nothing to drive (ENODEV: cpufreq, EDAC on a VM),
    /// a debug line as in the coldplug.
    no_device: Vec<u8>,
    /// The kmsg line when it failed, up to the errno.
    failed: Vec<u8>,
}

/// The child of [`Os::load_detached`]: loads each module, one at a time, and exits.
///
/// # Safety
/// Call only in the child of a fork. It was forked from a process with threads, so it
/// calls only async-signal-safe functions (open, finit_module, write, close,
/// clock_gettime, setpriority, prctl, _exit) and allocates nothing.
unsafe fn detached_child(loads: &[Prepared], done: &[u8], gave_up: &[u8], limit_ns: i64) -> ! {
    // SAFETY: plain system calls on this process and on buffers that live in this
    // (copied) address space, with their lengths passed alongside.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"diskless-modules".as_ptr() as libc::c_ulong, 0, 0, 0);
        // Below the image's own start, which this child overlaps.
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
        // Not the console's holder (the image's init takes the console over), nor of
        // anything else PID 1 had open (its kmsg, the syslog socket): this child never
        // execs, so close-on-exec would not close them. close_range(2) is a plain syscall.
        libc::syscall(libc::SYS_close_range, 0 as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint);
        let kmsg = libc::open(c"/dev/kmsg".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        let now = || {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
            (ts.tv_sec as i64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as i64)
        };
        let deadline = now().saturating_add(limit_ns);
        let say = |line: &[u8]| {
            if kmsg >= 0 {
                libc::write(kmsg, line.as_ptr().cast(), line.len());
            }
        };
        for load in loads {
            if now() >= deadline {
                say(gave_up);
                libc::_exit(1);
            }
            let fd = libc::open(load.path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            let errno = if fd < 0 {
                *libc::__errno_location()
            } else {
                let result = libc::syscall(libc::SYS_finit_module, fd, load.params.as_ptr(), load.flags);
                let errno = if result == 0 { 0 } else { *libc::__errno_location() };
                libc::close(fd);
                errno
            };
            match errno {
                0 => say(&load.loaded),
                // The image's udev got there first.
                libc::EEXIST => {}
                libc::ENODEV => say(&load.no_device),
                errno => {
                    let mut line = [0u8; 256];
                    let len = failed_line(&mut line, &load.failed, errno);
                    say(&line[..len]);
                }
            }
        }
        say(done);
        libc::_exit(0)
    }
}

/// `prefix` (cut to fit), the decimal `errno` and a newline in `buf`, without
/// allocating (the child of a fork may not); returns the length.
fn failed_line(buf: &mut [u8; 256], prefix: &[u8], errno: i32) -> usize {
    let mut digits = [0u8; 12];
    let mut n = errno.unsigned_abs();
    let mut count = 0;
    loop {
        digits[digits.len() - 1 - count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let head = prefix.len().min(buf.len() - count - 1);
    buf[..head].copy_from_slice(&prefix[..head]);
    buf[head..head + count].copy_from_slice(&digits[digits.len() - count..]);
    buf[head + count] = b'\n';
    head + count + 1
}

/// finit_module's MODULE_INIT_COMPRESSED_FILE for a compressed module file: the root
/// image keeps its modules as the kernel package installed them (`.ko.xz` on newer
/// Debian kernels), and the kernel decompresses them itself.
fn compressed_file_flag(path: &Path) -> std::ffi::c_int {
    const MODULE_INIT_COMPRESSED_FILE: std::ffi::c_int = 4;
    match path.extension().and_then(|e| e.to_str()) {
        Some("xz" | "zst" | "gz") => MODULE_INIT_COMPRESSED_FILE,
        _ => 0,
    }
}

/// The scratch cache's holder: waits for the shutdown's SIGTERM, then prints FS-Cache's
/// counters on its console (each line after `FSCACHE: `, for `qemu/bench-fscache`) and
/// exits, which unbinds the cache. Only async-signal-safe calls: it runs in a child
/// forked from a process with threads.
///
/// # Safety
/// Call only in the child of a fork.
unsafe fn hold_until_sigterm(stats: Option<libc::c_int>) -> ! {
    // SAFETY: plain syscalls on this process's own signal mask and descriptors; the
    // buffers are on this stack and their lengths are passed with them.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let mut signal = 0;
        while libc::sigwait(&set, &mut signal) != 0 {}
        if let Some(fd) = stats {
            let mut buf = [0u8; 8192];
            let n = libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            if n > 0 {
                for line in buf[..n as usize].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    let prefix = b"FSCACHE: ";
                    libc::write(1, prefix.as_ptr().cast(), prefix.len());
                    libc::write(1, line.as_ptr().cast(), line.len());
                    libc::write(1, b"\n".as_ptr().cast(), 1);
                }
            }
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_childs_failure_line_ends_in_the_errno_and_a_newline_and_fits_its_buffer() {
        let mut buf = [0u8; 256];
        let len = failed_line(&mut buf, b"<4>diskless: kvm did not load: errno ", 19);
        assert_eq!(&buf[..len], b"<4>diskless: kvm did not load: errno 19\n");
        let long = vec![b'x'; 400];
        let len = failed_line(&mut buf, &long, 2147483647);
        assert_eq!(len, 256);
        assert!(buf[..len].ends_with(b"x2147483647\n"), "{:?}", String::from_utf8_lossy(&buf[..len]));
    }
}
