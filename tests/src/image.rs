//! Hand-made initramfs images with the static busybox, for testing the rig itself
//! (VM runner, console capture, device options) without the project's init.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::scratch_file;
use crate::error::{Error, Result};
use crate::process::run;

/// The busybox-static binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Builds an uncompressed newc archive holding `/bin/busybox`, `/bin/sh` and `/init`
/// = `#!/bin/sh` + `script`, plus `files` (archive path, contents). Returns its path
/// in `target/qemu-work/`.
pub fn busybox_initramfs(script: &str, files: &[(&str, &[u8])]) -> Result<PathBuf> {
    if !Path::new(BUSYBOX).is_file() {
        return Err(Error::Missing {
            what: "static busybox".into(),
            path: BUSYBOX.into(),
            hint: "run qemu/setup (package busybox-static)".into(),
        });
    }
    let tree = tempfile::tempdir().map_err(|e| Error::io("create temporary directory in", std::env::temp_dir(), e))?;
    let root = tree.path();
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| Error::io("create directory", &d, e))?;
    }
    let bb = root.join("bin/busybox");
    std::fs::copy(BUSYBOX, &bb).map_err(|e| Error::io("copy busybox to", &bb, e))?;
    std::os::unix::fs::symlink("busybox", root.join("bin/sh"))
        .map_err(|e| Error::io("symlink", root.join("bin/sh"), e))?;
    let init = root.join("init");
    let text = format!("#!/bin/sh\nexport PATH=/bin\n/bin/busybox --install -s /bin\n{script}\n");
    std::fs::write(&init, text).map_err(|e| Error::io("write", &init, e))?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("chmod", &init, e))?;
    for (path, contents) in files {
        let p = root.join(path.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create directory", parent, e))?;
        }
        std::fs::write(&p, contents).map_err(|e| Error::io("write", &p, e))?;
    }
    let out = scratch_file("busybox-initrd", "cpio")?;
    // GNU cpio reads the file list from stdin; the shell keeps the pipe simple.
    run(
        Command::new("sh")
            .arg("-c")
            .arg("find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > \"$1\"")
            .arg("sh")
            .arg(&out)
            .current_dir(root),
        "needs cpio (run qemu/setup)",
    )?;
    Ok(out)
}
