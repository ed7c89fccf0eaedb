//! The side effects of PID 1 behind one small trait, so that the logic deciding what to
//! mount, what to load and what to do on failure is tested with a fake that records calls.

use std::io;
use std::path::Path;
use std::process::ExitStatus;

pub use rustix::mount::MountFlags;

/// The operating-system calls the boot stages make.
pub trait Os: Send + Sync {
    /// mount(2).
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()>;
    /// finit_module(2) on the file at `path` with the option string `params`. Blocks
    /// while the module's init function runs.
    fn finit_module(&self, path: &Path, params: &str) -> io::Result<()>;
    /// Make sure fds 0, 1 and 2 are the console: when the archive has no `dev/console`
    /// node the kernel starts PID 1 without them. Returns whether they had to be opened.
    fn attach_console(&self, console: &Path) -> io::Result<bool>;
    /// The running kernel's release (`uname -r`).
    fn kernel_release(&self) -> String;
    /// Run the rescue shell on the console and wait for it.
    fn run_shell(&self, shell: &Path) -> io::Result<ExitStatus>;
    /// mount(2) with MS_MOVE: move the mount at `from` (and its submounts) to `to`.
    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()>;
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
    /// Give the calling thread, and the threads it starts afterwards, the nice value
    /// `nice`: setpriority(PRIO_PROCESS, 0) acts on the calling thread on Linux.
    fn set_thread_nice(&self, nice: i32) -> io::Result<()>;
}

/// The real system calls, for PID 1 in the initramfs.
pub struct RealOs;

impl Os for RealOs {
    fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
        let data = std::ffi::CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let data = (!data.is_empty()).then_some(data.as_c_str());
        rustix::mount::mount(source, target, fstype, flags, data).map_err(io::Error::from)
    }

    fn finit_module(&self, path: &Path, params: &str) -> io::Result<()> {
        let file = std::fs::File::open(path)?;
        let params = std::ffi::CString::new(params).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        rustix::system::finit_module(&file, &params, 0).map_err(io::Error::from)
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

    fn kernel_release(&self) -> String {
        rustix::system::uname().release().to_string_lossy().into_owned()
    }

    fn run_shell(&self, shell: &Path) -> io::Result<ExitStatus> {
        std::process::Command::new(shell).env("PS1", "diskless# ").status()
    }

    fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
        rustix::mount::mount_move(from, to).map_err(io::Error::from)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        rustix::process::chdir(path).map_err(io::Error::from)
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        rustix::process::chroot(path).map_err(io::Error::from)
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

    fn set_thread_nice(&self, nice: i32) -> io::Result<()> {
        rustix::process::setpriority_process(None, nice).map_err(io::Error::from)
    }
}

/// A fake for tests: records every call as one line and answers from settings.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    pub struct FakeOs {
        pub calls: Mutex<Vec<String>>,
        /// finit_module results by module file name (`virtio_net.ko`); default success.
        pub load_errors: Mutex<BTreeMap<String, i32>>,
        /// mount results by target, else by the first option of the data (`vers=4.2`);
        /// default success.
        pub mount_errors: Mutex<BTreeMap<String, i32>>,
        /// How long each finit_module blocks.
        pub load_time: Duration,
        /// Called after a successful finit_module with the file name: lets a test make
        /// a bus announce new devices the way the kernel does.
        #[allow(clippy::type_complexity)]
        pub on_load: Mutex<Option<Box<dyn FnMut(&str) + Send>>>,
    }

    impl FakeOs {
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    impl Os for FakeOs {
        fn mount(&self, source: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> io::Result<()> {
            self.record(format!("mount {source} {} {fstype} {:#x} {data}", target.display(), flags.bits()));
            let errors = self.mount_errors.lock().unwrap();
            let by_target = errors.get(&target.display().to_string());
            match by_target.or_else(|| errors.get(data.split(',').next().unwrap_or(""))) {
                Some(errno) => Err(io::Error::from_raw_os_error(*errno)),
                None => Ok(()),
            }
        }
        fn finit_module(&self, path: &Path, params: &str) -> io::Result<()> {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            self.record(format!("load {file} [{params}]"));
            std::thread::sleep(self.load_time);
            if let Some(errno) = self.load_errors.lock().unwrap().get(&file) {
                return Err(io::Error::from_raw_os_error(*errno));
            }
            if let Some(hook) = self.on_load.lock().unwrap().as_mut() {
                hook(&file);
            }
            Ok(())
        }
        fn attach_console(&self, console: &Path) -> io::Result<bool> {
            self.record(format!("console {}", console.display()));
            Ok(false)
        }
        fn kernel_release(&self) -> String {
            "6.1.0-test".to_string()
        }
        fn run_shell(&self, shell: &Path) -> io::Result<ExitStatus> {
            use std::os::unix::process::ExitStatusExt;
            self.record(format!("shell {}", shell.display()));
            Ok(ExitStatus::from_raw(0))
        }
        fn move_mount(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.record(format!("move {} {}", from.display(), to.display()));
            match self.mount_errors.lock().unwrap().get(&to.display().to_string()) {
                Some(errno) => Err(io::Error::from_raw_os_error(*errno)),
                None => Ok(()),
            }
        }
        fn chdir(&self, path: &Path) -> io::Result<()> {
            self.record(format!("chdir {}", path.display()));
            Ok(())
        }
        fn chroot(&self, path: &Path) -> io::Result<()> {
            self.record(format!("chroot {}", path.display()));
            Ok(())
        }
        fn exec(&self, path: &Path, args: &[String]) -> io::Error {
            self.record(format!("exec {} {}", path.display(), args.join(" ")).trim_end().to_string());
            io::Error::other("fake exec")
        }
        fn power_off(&self) -> io::Error {
            self.record("power_off".to_string());
            io::Error::other("fake")
        }
        fn reboot(&self) -> io::Error {
            self.record("reboot".to_string());
            io::Error::other("fake")
        }
        fn set_thread_nice(&self, nice: i32) -> io::Result<()> {
            self.record(format!("nice {nice}"));
            Ok(())
        }
    }
}
