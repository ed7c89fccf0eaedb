//! Debian's rsyslogd as the lab's syslog server for one test, inside a [`Netns`]: UDP
//! input on one address, everything it receives written to two files of the test's own
//! (RFC 5424 lines and rsyslog's default traditional lines), its own configuration,
//! PID file and work directory, never the host's `/etc/rsyslog.conf`, `/var/log` or
//! `/dev/log` (`imuxsock` is not loaded).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::{Daemon, Netns};
use crate::paths::{file_stem, log_dir};

/// The syslog port the server listens on.
pub const PORT: u16 = 514;

/// A running rsyslogd; killed when dropped. Its own messages and errors: [`Daemon`]'s log.
pub struct Rsyslog {
    daemon: Daemon,
    rfc5424: PathBuf,
    traditional: PathBuf,
}

impl std::ops::Deref for Rsyslog {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.daemon
    }
}

/// The configuration: `state` holds the work directory and PID file.
pub fn config(address: &str, state: &Path, rfc5424: &Path, traditional: &Path) -> String {
    format!(
        "global(workDirectory=\"{state}\")\n\
         module(load=\"imudp\")\n\
         input(type=\"imudp\" address=\"{address}\" port=\"{PORT}\")\n\
         *.* action(type=\"omfile\" file=\"{rfc5424}\" template=\"RSYSLOG_SyslogProtocol23Format\")\n\
         *.* action(type=\"omfile\" file=\"{traditional}\")\n",
        state = state.display(),
        rfc5424 = rfc5424.display(),
        traditional = traditional.display(),
    )
}

impl Rsyslog {
    /// Starts rsyslogd in `ns` listening on `address`:514/udp and waits until it
    /// listens. The received files and its own output are kept in `target/qemu-logs/`
    /// as `<name>.syslog-rfc5424.log`, `<name>.syslog.log` and `<name>.rsyslogd.log`.
    pub fn start(ns: &Netns, address: &str, name: &str) -> Result<Rsyslog> {
        let state = tempfile::Builder::new()
            .prefix("diskless-rsyslog")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let logs = log_dir()?;
        let stem = file_stem(name);
        let rfc5424 = logs.join(format!("{stem}.syslog-rfc5424.log"));
        let traditional = logs.join(format!("{stem}.syslog.log"));
        let own_log = logs.join(format!("{stem}.rsyslogd.log"));
        for file in [&rfc5424, &traditional, &own_log] {
            let _ = std::fs::remove_file(file);
        }
        let conf_path = state.path().join("rsyslog.conf");
        let text = config(address, state.path(), &rfc5424, &traditional);
        std::fs::write(&conf_path, &text).map_err(|e| Error::io("write", &conf_path, e))?;
        let _ = std::fs::write(own_log.with_extension("conf"), &text);
        let own = std::fs::File::create(&own_log).map_err(|e| Error::io("create", &own_log, e))?;
        let own_err = own.try_clone().map_err(|e| Error::io("duplicate", &own_log, e))?;

        let mut cmd = ns.command("rsyslogd");
        cmd.arg("-n")
            .arg("-f")
            .arg(&conf_path)
            .arg("-i")
            .arg(state.path().join("rsyslogd.pid"))
            .stdin(std::process::Stdio::null())
            .stdout(own)
            .stderr(own_err);
        let daemon = Daemon::start(ns, "rsyslogd", cmd, ("-Hlnu", &[PORT]), Duration::from_secs(10), own_log, state)?;
        Ok(Rsyslog { daemon, rfc5424, traditional })
    }

    /// What the server wrote in RFC 5424 form so far.
    pub fn rfc5424_path(&self) -> &Path {
        &self.rfc5424
    }

    /// What the server wrote in its default (traditional) form so far.
    pub fn traditional_path(&self) -> &Path {
        &self.traditional
    }

    /// The RFC 5424 file's text (empty before the first message).
    pub fn received(&self) -> String {
        std::fs::read_to_string(&self.rfc5424).unwrap_or_default()
    }

    /// Wait until the RFC 5424 file has a line containing `needle` (rsyslog writes
    /// asynchronously), at most `timeout`; returns the whole text.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.received();
            if text.lines().any(|l| l.contains(needle)) {
                return Ok(text);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("rsyslogd to write a line with {needle:?}"),
                    seconds: timeout.as_secs_f64(),
                    log: Some(self.rfc5424.clone()),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_udp_input_on_the_address_and_both_files() {
        let c = config("10.77.0.1", Path::new("/s"), Path::new("/l/a.log"), Path::new("/l/b.log"));
        for want in [
            "global(workDirectory=\"/s\")",
            "input(type=\"imudp\" address=\"10.77.0.1\" port=\"514\")",
            "*.* action(type=\"omfile\" file=\"/l/a.log\" template=\"RSYSLOG_SyslogProtocol23Format\")",
            "*.* action(type=\"omfile\" file=\"/l/b.log\")",
        ] {
            assert!(c.lines().any(|l| l == want), "missing {want:?} in\n{c}");
        }
        assert!(!c.contains("imuxsock"), "never the host's /dev/log");
    }
}
