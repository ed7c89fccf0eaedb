//! An NFS server for root images: nfs-ganesha (user space; the host kernel has no
//! nfsd) with rpcbind, inside a test's [`Netns`].
//!
//! Both run in a private mount namespace with their own tmpfs on `/run`, so their
//! sockets and PID files never appear on the host (recipe and configuration verified
//! in `/work/shared/notes/rig.md`). The export is one image directory, read-only,
//! no root squash, at pseudo path `/export`, over NFSv3 (with MOUNT on 20048) and
//! NFSv4 (graceless, so v4 works at once). Config, log and recovery state live in a
//! per-server temporary directory; the log is copied to
//! `target/qemu-logs/<name>.ganesha.log` when the server stops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::netns::{Listening, Netns};
use crate::paths::{file_stem, log_dir};
use crate::process::ChildGuard;

const HINT: &str = "run qemu/setup (packages nfs-ganesha, nfs-ganesha-vfs, rpcbind)";
const PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/ganesha";

/// How to export.
#[derive(Clone, Debug)]
pub struct NfsExport {
    /// The directory to export (a root image).
    pub path: PathBuf,
    /// Address to bind, inside the namespace (e.g. 10.77.0.1).
    pub bind: String,
    /// The NFSv4 pseudo path and NFSv3 mount path.
    pub pseudo: String,
    /// More directories exported by the same server, each with its pseudo path.
    pub more: Vec<(PathBuf, String)>,
    /// The NFS versions the exports are served over (ganesha's `Protocols`): `"3, 4"`,
    /// or `"4"` for a server that refuses NFSv3 mounts of them.
    pub protocols: &'static str,
}

impl NfsExport {
    /// Exports `path` as `10.77.0.1:/export`.
    pub fn new(path: &Path) -> NfsExport {
        NfsExport {
            path: path.into(),
            bind: "10.77.0.1".into(),
            pseudo: "/export".into(),
            more: Vec::new(),
            protocols: "3, 4",
        }
    }

    /// The exports over NFSv4 only: MOUNT still answers (the server speaks v3), but
    /// refuses a v3 mount of them.
    pub fn v4_only(self) -> NfsExport {
        NfsExport { protocols: "4", ..self }
    }

    /// The ganesha configuration, with recovery state under `state`.
    pub fn config(&self, state: &Path) -> String {
        let exports = std::iter::once((&self.path, &self.pseudo)).chain(self.more.iter().map(|(p, s)| (p, s)));
        let exports: String = exports
            .enumerate()
            .map(|(i, (path, pseudo))| {
                format!(
                    "EXPORT {{\n  Export_Id = {};\n  Path = \"{}\";\n  Pseudo = \"{pseudo}\";\n  Protocols = {protocols};\n  \
                     Access_Type = RO;\n  Squash = No_Root_Squash;\n  FSAL {{ Name = VFS; }}\n}}\n",
                    i + 1,
                    path.display(),
                    protocols = self.protocols,
                )
            })
            .collect();
        format!(
            r#"NFS_CORE_PARAM {{
  Bind_Addr = {bind};
  Protocols = 3, 4;
  NFS_Port = 2049;
  MNT_Port = 20048;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Mount_Path_Pseudo = true;
  Plugins_Dir = "{PLUGINS}";
}}
NFSV4 {{
  Graceless = true;
  Lease_Lifetime = 10;
  RecoveryBackend = fs;
  RecoveryRoot = "{state}";
  Only_Numeric_Owners = true;
}}
EXPORT_DEFAULTS {{
  Access_Type = RO;
  Squash = No_Root_Squash;
  SecType = sys;
  Transports = TCP;
}}
{exports}LOG {{
  Default_Log_Level = EVENT;
}}
"#,
            bind = self.bind,
            state = state.display(),
        )
    }
}

/// A running ganesha + rpcbind; both killed (process group) on drop.
pub struct NfsServer {
    child: ChildGuard,
    log: PathBuf,
    kept_log: PathBuf,
    started: Duration,
    state: tempfile::TempDir,
}

impl NfsServer {
    /// Starts rpcbind and ganesha in `ns` exporting `export`, and waits (up to 30 s)
    /// until NFS listens on 2049 and MOUNT on 20048. `name` names the kept log.
    pub fn start(ns: &Netns, export: &NfsExport, name: &str) -> Result<NfsServer> {
        for tool in ["/usr/bin/ganesha.nfsd", "/usr/sbin/rpcbind"] {
            if !Path::new(tool).is_file() {
                return Err(Error::Missing { what: "NFS server program".into(), path: tool.into(), hint: HINT.into() });
            }
        }
        if !Path::new(PLUGINS).join("libfsalvfs.so").is_file() {
            return Err(Error::Missing {
                what: "ganesha VFS backend".into(),
                path: Path::new(PLUGINS).join("libfsalvfs.so"),
                hint: HINT.into(),
            });
        }
        if !export.path.is_dir() {
            return Err(Error::Missing {
                what: "directory to export".into(),
                path: export.path.clone(),
                hint: "run qemu/build-images to build the root images".into(),
            });
        }
        let state = tempfile::Builder::new()
            .prefix("diskless-ganesha")
            .tempdir()
            .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
        let recovery = state.path().join("recovery");
        std::fs::create_dir_all(&recovery).map_err(|e| Error::io("create directory", &recovery, e))?;
        let conf = state.path().join("ganesha.conf");
        let text = export.config(&recovery);
        std::fs::write(&conf, &text).map_err(|e| Error::io("write", &conf, e))?;
        let log = state.path().join("ganesha.log");
        let kept_log = log_dir()?.join(format!("{}.ganesha.log", file_stem(name)));
        let _ = std::fs::remove_file(&kept_log);
        let _ = std::fs::write(kept_log.with_extension("conf"), &text);

        // rpcbind must be up before ganesha registers v3 (ganesha exits otherwise).
        let script = r#"set -e
mount -t tmpfs -o mode=755 none /run
mkdir -p /run/rpcbind /run/ganesha
chown _rpc /run/rpcbind
rpcbind -f -w &
i=0; while [ ! -S /run/rpcbind.sock ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
exec ganesha.nfsd -F -f "$1" -L "$2" -p /run/ganesha/ganesha.pid
"#;
        let mut cmd = ns.command("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(&conf)
            .arg(&log)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let t0 = Instant::now();
        let child = ChildGuard::spawn(cmd, format!("rpcbind + ganesha.nfsd in namespace {}", ns.name()))?;
        let mut server = NfsServer { child, log, kept_log, started: Duration::ZERO, state };
        server.wait_listening(ns, Duration::from_secs(30))?;
        server.started = t0.elapsed();
        Ok(server)
    }

    fn wait_listening(&mut self, ns: &Netns, timeout: Duration) -> Result<()> {
        let log = self.log.clone();
        let want = Listening {
            ss_flags: "-Hltn",
            ports: &[2049, 20048],
            what: "ganesha listening on 2049 and 20048",
            log: &log,
        };
        let conf = self.kept_log.with_extension("conf");
        ns.wait_listening(&mut self.child, &want, timeout, |status| Error::Command {
            command: "ganesha.nfsd".into(),
            detail: format!("exited with {status} at start:\n{}", std::fs::read_to_string(&log).unwrap_or_default()),
            hint: format!("its configuration is in {}; {HINT}", conf.display()),
        })
    }

    /// How long the start took until both ports listened.
    pub fn start_time(&self) -> Duration {
        self.started
    }

    /// The ganesha log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the log is kept after the server stops.
    pub fn kept_log(&self) -> &Path {
        &self.kept_log
    }

    /// The server's process group leader (the `unshare` that became ganesha).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the server (also done on drop) and keeps its log.
    pub fn stop(&mut self) {
        self.child.kill();
        let _ = std::fs::copy(&self.log, &self.kept_log);
        let _ = self.state.path();
    }
}

impl Drop for NfsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A root image built by `qemu/build-images`: `qemu/.cache/images/<name>`
/// (`busybox`, `busybox-legacy`, `busybox-overlay`, `debian`). Panics with the command
/// to run when it is missing: tests never skip.
pub fn image_dir(name: &str) -> PathBuf {
    let dir = crate::paths::workspace_root().join("qemu/.cache/images").join(name);
    let stamp_of = match name {
        "busybox-legacy" | "busybox-overlay" => "busybox",
        other => other,
    };
    // Debian's /sbin/init is an absolute symlink: look at the link, not its target.
    if std::fs::symlink_metadata(dir.join("sbin/init")).is_err() {
        panic!("root image {name} not found at {}: run qemu/build-images {stamp_of} (as root)", dir.display());
    }
    // In a git worktree qemu/.cache is a symlink to the shared cache, and nfs-ganesha
    // refuses (EACCES at mount time) an export path that goes through a symlink.
    dir.canonicalize().unwrap_or(dir)
}

/// A private copy of the root image `name` (see [`image_dir`]), made with `cp -a` in a
/// temporary directory, for a test that adds to it; removed on drop.
pub fn image_copy(name: &str) -> Result<tempfile::TempDir> {
    let from = image_dir(name);
    let dir = tempfile::Builder::new()
        .prefix("diskless-image")
        .tempdir()
        .map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
    let mut cp = std::process::Command::new("cp");
    cp.arg("-a").arg(from.join(".")).arg(dir.path());
    crate::process::run(&mut cp, "needs coreutils' cp")?;
    Ok(dir)
}

/// What the busybox image's `/sbin/init` reports (`IMAGE: ...` lines, see
/// `qemu/images/busybox/init`), read from a console log. Every accessor panics naming
/// the log when the line is absent.
pub struct ImageReport<'a>(pub &'a crate::console::ConsoleLog);

impl ImageReport<'_> {
    /// `IMAGE: done` is on the console: the image's init ran to its end.
    #[track_caller]
    pub fn assert_done(&self) {
        self.0.assert_line(r"^IMAGE: done\s*$");
    }

    /// The value of `IMAGE: <key>=<value>` (`hostname`, `domainname`).
    #[track_caller]
    pub fn value(&self, key: &str) -> String {
        let m = self.0.assert_line(&format!(r"^IMAGE: {}=(.*?)\s*$", regex::escape(key)));
        m[1].to_string()
    }

    /// The content of `IMAGE: read <path> <content>` (`(missing)` for no file).
    #[track_caller]
    pub fn read(&self, path: &str) -> String {
        let m = self.0.assert_line(&format!(r"^IMAGE: read {} (.*?)\s*$", regex::escape(path)));
        m[1].to_string()
    }

    /// `(size, md5)` of `IMAGE: sum <path> <size> <md5>` (files listed in the image's
    /// `/etc/image-sums`).
    #[track_caller]
    pub fn sum(&self, path: &str) -> (u64, String) {
        let m = self.0.assert_line(&format!(r"^IMAGE: sum {} (\d+) ([0-9a-f]{{32}})\s*$", regex::escape(path)));
        (m[1].parse().expect("digits"), m[2].to_string())
    }

    /// `(mode, "uid:gid", what)` of `IMAGE: file <path> <mode> <uid>:<gid> <what>`;
    /// `None` if the path is not listed.
    pub fn file(&self, path: &str) -> Option<(String, String, String)> {
        self.0
            .find_line(&format!(r"^IMAGE: file {} ([0-7]+) (\d+:\d+) ?(.*?)\s*$", regex::escape(path)))
            .map(|m| (m[1].to_string(), m[2].to_string(), m[3].to_string()))
    }

    /// Like [`ImageReport::file`], panicking naming the log when the path is not listed.
    #[track_caller]
    pub fn assert_file(&self, path: &str) -> (String, String, String) {
        match self.file(path) {
            Some(f) => f,
            None => panic!("console log {} lists no IMAGE: file {path}\n{}", self.0.path().display(), self.0.tail(60)),
        }
    }

    /// All `IMAGE: bootjson` lines joined: `/run/diskless/boot.json` as the image saw it.
    pub fn boot_json(&self) -> String {
        let lines: Vec<String> =
            self.0.find_all(r"^IMAGE: bootjson (.*?)\s*$").iter().map(|m| m[1].to_string()).collect();
        lines.join("\n")
    }

    /// The `/proc/mounts` line (from `IMAGE: mount`) whose mount point is `target`.
    #[track_caller]
    pub fn mount(&self, target: &str) -> String {
        let m = self.0.assert_line(&format!(r"^IMAGE: mount (\S+ {} .*?)\s*$", regex::escape(target)));
        m[1].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_exports_path_read_only_at_pseudo_path_over_v3_and_v4() {
        let c = NfsExport::new(Path::new("/img/busybox")).config(Path::new("/state"));
        for want in [
            "Bind_Addr = 10.77.0.1;",
            "Protocols = 3, 4;",
            "Mount_Path_Pseudo = true;",
            "Graceless = true;",
            "Path = \"/img/busybox\";",
            "Pseudo = \"/export\";",
            "Access_Type = RO;",
            "Squash = No_Root_Squash;",
            "RecoveryRoot = \"/state\";",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
    }

    #[test]
    fn a_v4_only_export_keeps_the_server_speaking_v3() {
        let c = NfsExport::new(Path::new("/img/busybox")).v4_only().config(Path::new("/state"));
        assert!(c.contains("  Protocols = 3, 4;\n  NFS_Port"), "the server itself: {c}");
        assert!(c.contains("Pseudo = \"/export\";\n  Protocols = 4;\n"), "the export: {c}");
    }
}
