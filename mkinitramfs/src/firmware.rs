//! Finding the firmware files that included modules name.
//!
//! Debian installs firmware as `lib/firmware/<name>`, possibly compressed (`.xz`,
//! `.zst`) and often as symlinks to a shared file. The kernel asks for the plain
//! name, so the initramfs gets the decompressed contents at `lib/firmware/<name>`.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use initramfs::Compression;

/// Suffixes tried after the plain name, and how the file is compressed.
const VARIANTS: [(&str, Compression); 3] =
    [("", Compression::None), (".xz", Compression::Xz), (".zst", Compression::Zstd)];

#[derive(Debug)]
pub enum FirmwareError {
    /// A firmware file exists but cannot be read.
    Read { path: PathBuf, source: std::io::Error },
    /// A compressed firmware file cannot be decompressed.
    Decompress { path: PathBuf, message: String },
}

impl fmt::Display for FirmwareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirmwareError::Read { path, source } => {
                write!(f, "cannot read firmware {}: {source}; check its permissions", path.display())
            }
            FirmwareError::Decompress { path, message } => write!(
                f,
                "firmware {} is corrupt: {message}; reinstall the firmware package or delete the file",
                path.display()
            ),
        }
    }
}
impl std::error::Error for FirmwareError {}

/// The contents of firmware `name` under `firmware_root` (`BASEDIR/lib/firmware`),
/// decompressed; `None` when no variant exists, or a symlink leads outside the tree.
pub fn load(firmware_root: &Path, name: &str) -> Result<Option<Vec<u8>>, FirmwareError> {
    if !is_plain_relative(name) {
        return Ok(None);
    }
    for (suffix, compression) in VARIANTS {
        let path = firmware_root.join(format!("{name}{suffix}"));
        let Some(real) = resolve_within(firmware_root, &path) else { continue };
        let data = std::fs::read(&real).map_err(|source| FirmwareError::Read { path: path.clone(), source })?;
        if compression == Compression::None {
            return Ok(Some(data));
        }
        let (contents, _) = initramfs::compression::decompress_stream(compression, &data)
            .map_err(|message| FirmwareError::Decompress { path, message })?;
        return Ok(Some(contents));
    }
    Ok(None)
}

/// A firmware name must stay inside the firmware tree: no absolute path, no `..`.
fn is_plain_relative(name: &str) -> bool {
    !name.is_empty() && Path::new(name).components().all(|component| matches!(component, Component::Normal(_)))
}

/// The regular file `path` leads to, if it exists and, after following symlinks,
/// is still inside `root` (a symlink into another package's files is not followed).
fn resolve_within(root: &Path, path: &Path) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    let real_root = root.canonicalize().ok()?;
    (real.starts_with(&real_root) && real.is_file()).then_some(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_compressed_and_symlinked_firmware_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib/firmware");
        std::fs::create_dir_all(root.join("rtl_nic")).unwrap();
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::write(root.join("rtl_nic/plain.fw"), b"plain").unwrap();
        std::fs::write(root.join("rtl_nic/packed.fw.xz"), Compression::Xz.compress(b"xz fw").unwrap()).unwrap();
        std::fs::write(root.join("rtl_nic/packed2.fw.zst"), Compression::Zstd.compress(b"zst fw").unwrap()).unwrap();
        std::fs::write(root.join("shared/real.bin"), b"shared").unwrap();
        symlink("../shared/real.bin", root.join("rtl_nic/link.fw")).unwrap();
        assert_eq!(load(&root, "rtl_nic/plain.fw").unwrap().unwrap(), b"plain");
        assert_eq!(load(&root, "rtl_nic/packed.fw").unwrap().unwrap(), b"xz fw");
        assert_eq!(load(&root, "rtl_nic/packed2.fw").unwrap().unwrap(), b"zst fw");
        assert_eq!(load(&root, "rtl_nic/link.fw").unwrap().unwrap(), b"shared");
        assert!(load(&root, "rtl_nic/absent.fw").unwrap().is_none());
    }

    #[test]
    fn names_and_symlinks_leaving_the_tree_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lib/firmware");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        symlink("../../secret", root.join("escape.fw")).unwrap();
        assert!(load(&root, "escape.fw").unwrap().is_none());
        assert!(load(&root, "../../secret").unwrap().is_none());
        assert!(load(&root, "/etc/passwd").unwrap().is_none());
    }

    #[test]
    fn corrupt_compressed_firmware_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.fw.xz"), b"\xfd7zXZ\0garbage").unwrap();
        let error = load(dir.path(), "bad.fw").unwrap_err();
        assert!(error.to_string().contains("bad.fw.xz"), "{error}");
    }
}
