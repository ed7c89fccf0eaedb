//! Child processes that cannot outlive their test.
//!
//! Every server and VM the rig starts runs in its own process group; dropping its
//! [`ChildGuard`] sends SIGKILL to that whole group (QEMU helpers, dnsmasq's children,
//! a shell's pipeline) and reaps the child, also when the test panics.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A running child process in its own process group, killed with its group on drop.
pub struct ChildGuard {
    child: Child,
    what: String,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Starts `cmd` as the leader of a new process group. `what` names it in errors.
    pub fn spawn(mut cmd: Command, what: impl Into<String>) -> Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        let what = what.into();
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| Error::Command {
            command: describe(&cmd),
            detail: e.to_string(),
            hint: "is the rig installed? run qemu/setup".into(),
        })?;
        Ok(ChildGuard { child, what, status: None })
    }

    /// The child's PID, which is also its process group ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What this process is, as given to [`ChildGuard::spawn`].
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The exit status if the child has exited, without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the child's process group and reaps the child.
    pub fn kill(&mut self) {
        // The group may still hold grandchildren after the leader exited, so signal the
        // group even when the leader is already gone.
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `program arg arg ...` for error messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion and returns its stdout; a failure names the command and
/// carries its stderr, with `hint` saying what to do.
pub fn run(cmd: &mut Command, hint: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::Command {
        command: describe(cmd),
        detail: e.to_string(),
        hint: hint.into(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: describe(cmd),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
            hint: hint.into(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry; a zombie would still be listed, which is
        // why kill() reaps.
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn dropping_guard_kills_whole_process_group() {
        let mut cmd = Command::new("sh");
        // The grandchild `sleep` is in the same group and must die with it.
        cmd.args(["-c", "sleep 300 & echo $! ; wait"]).stdout(std::process::Stdio::piped());
        let mut guard = ChildGuard::spawn(cmd, "sleeper").unwrap();
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(guard.child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let leader = guard.pid();
        assert!(alive(grandchild));
        drop(guard);
        // The grandchild is reparented to init (or a subreaper) and reaped there; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(leader), "group leader {leader} survived");
        let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(!alive(grandchild) || state.contains(") Z "), "grandchild {grandchild} survived: {state}");
    }

    #[test]
    fn run_reports_command_and_stderr_on_failure() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"]), "try again").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c") && msg.contains("boom") && msg.contains("try again"), "{msg}");
    }
}
