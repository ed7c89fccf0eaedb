//! Release binaries of the workspace and initramfs images built from them.
//!
//! [`release_binaries`] runs `cargo build --release -p diskless -p diskless-cli -p mkinitramfs` once
//! per test process (quick when up to date); [`build_initramfs`] runs the real
//! `mkinitramfs` for the cached kernel with the real `init`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::paths::{target_dir, work_dir, workspace_root};
use crate::process::describe;

/// Paths of the release binaries the QEMU tests need.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The static PID 1.
    pub init: PathBuf,
    pub mkinitramfs: PathBuf,
}

/// Builds the release binaries once per process and returns their paths. Panics
/// with cargo's output if the build fails.
pub fn release_binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| match build_release() {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    })
}

fn build_release() -> Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--release",
        "-p",
        "diskless",
        "-p",
        "diskless-cli",
        "-p",
        "mkinitramfs",
    ]);
    let out = cmd.output().map_err(|e| Error::Command {
        command: describe(&cmd),
        detail: e.to_string(),
        hint: String::new(),
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: describe(&cmd),
            detail: format!("{}:\n{}", out.status, String::from_utf8_lossy(&out.stderr)),
            hint: "fix the build first".into(),
        });
    }
    let dir = target_dir().join("x86_64-unknown-linux-gnu/release");
    let bins = Binaries { init: dir.join("init"), mkinitramfs: dir.join("mkinitramfs") };
    for path in [&bins.init, &bins.mkinitramfs] {
        if !path.is_file() {
            return Err(Error::Missing {
                what: "release binary".into(),
                path: path.clone(),
                hint: "the build target is set in .cargo/config.toml; check it still is x86_64-unknown-linux-gnu"
                    .into(),
            });
        }
    }
    Ok(bins)
}

/// Runs `mkinitramfs -b <kernel basedir> -o <work>/initrd-<pid>-<n>.img --init
/// <release init> [args] <version>` for the cached kernel and returns the archive's
/// path. Panics with mkinitramfs's output on failure.
pub fn build_initramfs(args: &[&str]) -> PathBuf {
    match try_build_initramfs(args) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// [`build_initramfs`] returning the error instead of panicking.
pub fn try_build_initramfs(args: &[&str]) -> Result<PathBuf> {
    let bins = release_binaries();
    let kernel = Kernel::cached();
    let out_path = scratch_file("initrd", "img")?;
    let mut cmd = Command::new(&bins.mkinitramfs);
    cmd.arg("-b")
        .arg(&kernel.basedir)
        .arg("-o")
        .arg(&out_path)
        .arg("--init")
        .arg(&bins.init)
        .args(args)
        .arg(&kernel.version);
    let out = cmd.output().map_err(|e| Error::Command {
        command: describe(&cmd),
        detail: e.to_string(),
        hint: String::new(),
    })?;
    if !out.status.success() || !out_path.is_file() {
        return Err(Error::Command {
            command: describe(&cmd),
            detail: format!(
                "{}:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            hint: "mkinitramfs must write the archive given with -o".into(),
        });
    }
    Ok(out_path)
}

/// A fresh path `target/qemu-work/<stem>-<pid>-<n>.<ext>`. Files of processes that no
/// longer run are deleted on the first call, so the directory does not grow forever.
pub fn scratch_file(stem: &str, ext: &str) -> Result<PathBuf> {
    static CLEANED: OnceLock<()> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = work_dir()?;
    CLEANED.get_or_init(|| remove_stale(&dir));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!("{stem}-{}-{n}.{ext}", std::process::id())))
}

fn remove_stale(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // "<stem>-<pid>-<n>.<ext>": the PID is the second-to-last dash-separated field.
        let mut fields = name.rsplit('-');
        let _n = fields.next();
        let Some(pid) = fields.next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_files_are_distinct_and_carry_this_pid() {
        let a = scratch_file("t", "img").unwrap();
        let b = scratch_file("t", "img").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.contains(&format!("-{}-", std::process::id())), "{name}");
    }
}
