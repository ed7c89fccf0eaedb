//! nginx inside a [`Netns`], serving a site file as written (`diskless server render`'s
//! `nginx.conf`, a `server` block): the top-level configuration here holds what
//! Debian's `/etc/nginx/nginx.conf` would (user, events, the `http` block that
//! includes the site) with this instance's own PID file, temporary directories and
//! logs, never the host's `/var` or `/run`. The workers run as `www-data`, as Debian's
//! do, so a file they cannot read fails the test as it would fail a lab.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::{Daemon, Netns, daemon_wrapper};
use crate::paths::{file_stem, log_dir};

/// A running nginx; killed when dropped. Its error log is the daemon's log
/// (`<name>.nginx-error.log`), requests go to [`Nginx::access_log`].
pub struct Nginx(Daemon, PathBuf);

daemon_wrapper!(Nginx);

impl Nginx {
    /// Starts nginx with `site` included in its `http` block and waits until `port`
    /// listens. `name` (the test's) names the logs in `target/qemu-logs/`.
    pub fn start(ns: &Netns, site: &Path, port: u16, name: &str) -> Result<Nginx> {
        let state = tempfile::Builder::new()
            .prefix("diskless-nginx")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let logs = log_dir()?;
        let stem = file_stem(name);
        let error_log = logs.join(format!("{stem}.nginx-error.log"));
        let access_log = logs.join(format!("{stem}.nginx-access.log"));
        for log in [&error_log, &access_log] {
            let _ = std::fs::remove_file(log);
        }
        let text = config(state.path(), site, &error_log, &access_log);
        let conf = state.path().join("nginx.conf");
        std::fs::write(&conf, &text).map_err(|e| Error::io("write", &conf, e))?;
        let _ = std::fs::write(error_log.with_extension("conf"), &text);
        let mut cmd = ns.command("nginx");
        // -e: the error log before the configuration is read (else /var/log/nginx).
        cmd.arg("-p")
            .arg(state.path())
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let daemon = Daemon::start(ns, "nginx", cmd, ("-Hltn", &[port]), Duration::from_secs(10), error_log, state)
            .map_err(|e| match e {
                Error::Command { command, detail, .. } if !Path::new("/usr/sbin/nginx").exists() => {
                    Error::Command { command, detail, hint: "nginx is not installed: run qemu/setup".into() }
                }
                other => other,
            })?;
        Ok(Nginx(daemon, access_log))
    }

    /// The access log: one line per request, `"GET /path HTTP/1.1" status bytes`.
    pub fn access_log(&self) -> &Path {
        &self.1
    }

    /// The access log so far.
    pub fn access_text(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

fn config(state: &Path, site: &Path, error_log: &Path, access_log: &Path) -> String {
    let s = state.display();
    [
        "user www-data;".to_string(),
        "daemon off;".into(),
        "worker_processes 1;".into(),
        format!("pid {s}/nginx.pid;"),
        format!("error_log {} info;", error_log.display()),
        "events { worker_connections 64; }".into(),
        "http {".into(),
        format!("  access_log {};", access_log.display()),
        "  default_type application/octet-stream;".into(),
        "  sendfile on;".into(),
        format!("  client_body_temp_path {s}/body;"),
        format!("  proxy_temp_path {s}/proxy;"),
        format!("  fastcgi_temp_path {s}/fastcgi;"),
        format!("  uwsgi_temp_path {s}/uwsgi;"),
        format!("  scgi_temp_path {s}/scgi;"),
        format!("  include {};", site.display()),
        "}".into(),
    ]
    .iter()
    .map(|line| format!("{line}\n"))
    .collect()
}
