//! The newc ("070701") header, shared by the writer and the reader.
//!
//! Layout, as `init/initramfs.c` in the kernel parses it: a 110-byte ASCII header
//! (6-byte magic + 13 fields of 8 hex digits), the NUL-terminated name padded so
//! that header + name end on a 4-byte boundary, then the body (file data or
//! symlink target without NUL) padded to the next 4-byte boundary. Offsets are
//! counted from the start of the (decompressed) stream, so every header starts
//! 4-aligned.

/// Magic of a newc header without checksums (the only one the writer produces).
pub const MAGIC: &[u8; 6] = b"070701";
/// Magic of a newc header with checksums ("crc" format); the kernel accepts it too.
pub const MAGIC_CRC: &[u8; 6] = b"070702";
pub const HEADER_LEN: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFBLK: u32 = 0o060000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;

/// Number of bytes needed to bring `offset` to a multiple of 4.
pub fn pad4(offset: usize) -> usize {
    (4 - offset % 4) % 4
}

/// The numeric fields of one header, in on-disk order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub filesize: u32,
    pub devmajor: u32,
    pub devminor: u32,
    pub rdevmajor: u32,
    pub rdevminor: u32,
    /// Length of the name including its terminating NUL.
    pub namesize: u32,
    pub check: u32,
}

/// Field names in on-disk order, for error messages.
pub const FIELD_NAMES: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

impl Header {
    fn fields(&self) -> [u32; 13] {
        [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.devmajor,
            self.devminor,
            self.rdevmajor,
            self.rdevminor,
            self.namesize,
            self.check,
        ]
    }

    /// Appends header, name, NUL and name padding to `out`, whose length is
    /// taken as the current stream offset.
    pub fn write_with_name(&self, name: &str, out: &mut Vec<u8>) {
        debug_assert_eq!(self.namesize as usize, name.len() + 1);
        debug_assert_eq!(out.len() % 4, 0);
        out.extend_from_slice(MAGIC);
        for field in self.fields() {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len() + pad4(out.len()), 0);
    }

    /// Parses the 13 hex fields that follow the magic. `raw` is exactly the
    /// 104 bytes after the magic; on failure returns the index of the bad field.
    pub fn parse_fields(raw: &[u8]) -> Result<Header, usize> {
        let mut values = [0u32; 13];
        for (index, value) in values.iter_mut().enumerate() {
            let digits = raw.get(index * 8..index * 8 + 8).ok_or(index)?;
            *value = parse_hex8(digits).ok_or(index)?;
        }
        let [ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check] =
            values;
        Ok(Header {
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            filesize,
            devmajor,
            devminor,
            rdevmajor,
            rdevminor,
            namesize,
            check,
        })
    }
}

fn parse_hex8(digits: &[u8]) -> Option<u32> {
    // from_str_radix would accept a leading '+', which no cpio writer emits.
    digits.iter().try_fold(0u32, |acc, &digit| {
        let nibble = (digit as char).to_digit(16)?;
        Some(acc << 4 | nibble)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_name_end_on_four_byte_boundary_for_every_name_length() {
        for len in 1..12 {
            let name = "n".repeat(len);
            let header = Header { namesize: len as u32 + 1, ..Header::default() };
            let mut out = Vec::new();
            header.write_with_name(&name, &mut out);
            assert_eq!(out.len() % 4, 0, "name length {len}");
            // The kernel's N_ALIGN: name area = ((namesize + 1) & ~3) + 2 after the header.
            let kernel_name_area = ((len + 1 + 1) & !3) + 2;
            assert_eq!(out.len(), HEADER_LEN + kernel_name_area, "name length {len}");
        }
    }

    #[test]
    fn fields_parse_back_to_what_was_written() {
        let header = Header {
            ino: 7,
            mode: S_IFCHR | 0o600,
            nlink: 1,
            mtime: 0xdead_beef,
            rdevmajor: 5,
            rdevminor: 1,
            namesize: 12,
            ..Header::default()
        };
        let mut out = Vec::new();
        header.write_with_name("dev/console", &mut out);
        assert_eq!(&out[..6], MAGIC);
        assert_eq!(Header::parse_fields(&out[6..HEADER_LEN]), Ok(header));
    }

    #[test]
    fn non_hex_field_reports_its_index() {
        let mut raw = [b'0'; 104];
        raw[6 * 8 + 3] = b'g';
        assert_eq!(Header::parse_fields(&raw), Err(6));
        raw[6 * 8 + 3] = b'+';
        assert_eq!(Header::parse_fields(&raw), Err(6));
    }
}
