//! `mkinitramfs list FILE`: what an initramfs holds, one `ls -l` style line per entry.

use std::fmt::Write;

use initramfs::{Entry, EntryKind};

/// One line per entry (mode, size or device numbers, path, `-> target`), then totals.
pub fn format_listing(entries: &[Entry]) -> String {
    let mut out = String::new();
    let (mut dirs, mut files, mut links, mut nodes, mut bytes) = (0, 0, 0, 0, 0usize);
    for entry in entries {
        let size = match entry.kind {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                format!("{major}, {minor}")
            }
            _ => entry.size().to_string(),
        };
        let _ = write!(out, "{} {size:>10} {}", entry.mode_string(), entry.path);
        match &entry.kind {
            EntryKind::Symlink(target) => {
                links += 1;
                let _ = write!(out, " -> {target}");
            }
            EntryKind::Directory => dirs += 1,
            EntryKind::File(data) => {
                files += 1;
                bytes += data.len();
            }
            _ => nodes += 1,
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} entries: {files} files ({bytes} bytes), {dirs} directories, {links} symlinks, {nodes} other",
        entries.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mode: u32, kind: EntryKind) -> Entry {
        Entry { path: path.into(), mode, kind, uid: 0, gid: 0, mtime: 0 }
    }

    #[test]
    fn listing_shows_modes_sizes_devices_targets_and_totals() {
        let entries = [
            entry("dev", 0o755, EntryKind::Directory),
            entry("dev/console", 0o600, EntryKind::CharDevice { major: 5, minor: 1 }),
            entry("init", 0o755, EntryKind::File(vec![0; 1234])),
            entry("bin", 0o777, EntryKind::Symlink("usr/bin".into())),
        ];
        let listing = format_listing(&entries);
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines[0], "drwxr-xr-x          0 dev");
        assert_eq!(lines[1], "crw-------       5, 1 dev/console");
        assert_eq!(lines[2], "-rwxr-xr-x       1234 init");
        assert_eq!(lines[3], "lrwxrwxrwx          7 bin -> usr/bin");
        assert_eq!(lines[4], "4 entries: 1 files (1234 bytes), 1 directories, 1 symlinks, 1 other");
    }
}
