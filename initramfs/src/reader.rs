//! Reading an initramfs the way the kernel's `unpack_to_rootfs` does: any number of
//! archives back to back, each raw or compressed, separated by zero padding.

use std::fmt;

use crate::compression::{self, Compression};
use crate::entry::{Entry, EntryKind};
use crate::newc::{self, Header};

/// Where in the input a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Offset in the input bytes.
    Raw { offset: usize },
    /// Offset in the output of the compressed stream that starts at `stream_offset`.
    Decompressed { compression: Compression, stream_offset: usize, offset: usize },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Raw { offset } => write!(f, "offset {offset}"),
            Location::Decompressed { compression, stream_offset, offset } => {
                write!(f, "offset {offset} of the {compression} stream starting at offset {stream_offset}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Bytes that are neither zero padding, a cpio header nor a known compression magic.
    UnknownFormat { offset: usize, found: Vec<u8> },
    /// A compressed stream could not be decoded.
    Decompress { offset: usize, compression: Compression, message: String },
    /// A header does not start with 070701/070702.
    BadMagic { at: Location, found: Vec<u8> },
    /// A raw archive starts at an offset that is not a multiple of 4.
    Misaligned { at: Location },
    /// A header field is not 8 hex digits.
    BadField { at: Location, field: &'static str },
    /// The input ends inside a header, name or body.
    Truncated { at: Location, what: &'static str, needed: usize, available: usize },
    /// The name is empty or not NUL-terminated where namesize says.
    BadName { at: Location },
    /// The archive has no TRAILER!!! entry.
    MissingTrailer { at: Location },
    /// The mode's file type is not one the kernel knows.
    BadFileType { at: Location, path: String, mode: u32 },
    /// A symlink target is not UTF-8.
    BadSymlinkTarget { at: Location, path: String },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::UnknownFormat { offset, found } => write!(
                f,
                "at offset {offset}: bytes {found:02x?} are neither a cpio header (070701) nor gzip, zstd or xz data; is this an initramfs?"
            ),
            ReadError::Decompress { offset, compression, message } => {
                write!(f, "at offset {offset}: the {compression} stream is corrupt or truncated: {message}")
            }
            ReadError::BadMagic { at, found } => {
                write!(f, "at {at}: expected a cpio header (070701), found {:?}", String::from_utf8_lossy(found))
            }
            ReadError::Misaligned { at } => write!(f, "at {at}: cpio header is not 4-byte aligned (broken padding)"),
            ReadError::BadField { at, field } => write!(f, "at {at}: cpio header field {field} is not 8 hex digits"),
            ReadError::Truncated { at, what, needed, available } => {
                write!(f, "at {at}: archive truncated in {what}: {needed} bytes needed, {available} left")
            }
            ReadError::BadName { at } => write!(f, "at {at}: entry name is empty or not NUL-terminated"),
            ReadError::MissingTrailer { at } => write!(f, "at {at}: archive ends without a TRAILER!!! entry"),
            ReadError::BadFileType { at, path, mode } => {
                write!(f, "at {at}: entry {path:?} has mode {mode:o}, which is no known file type")
            }
            ReadError::BadSymlinkTarget { at, path } => write!(f, "at {at}: symlink {path:?} has a non-UTF-8 target"),
        }
    }
}
impl std::error::Error for ReadError {}

/// All entries of an initramfs image, in archive order (trailers left out).
/// Accepts raw and gzip/zstd/xz-compressed archives, concatenated in any mix.
pub fn read_archive(bytes: &[u8]) -> Result<Vec<Entry>, ReadError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        if bytes[offset] == 0 {
            offset += 1;
            continue;
        }
        if bytes[offset] == b'0' {
            offset = read_cpio_sequence(bytes, offset, &mut entries, &|offset| Location::Raw { offset })?;
            continue;
        }
        let Some(compression) = compression::detect(&bytes[offset..]) else {
            let end = bytes.len().min(offset + 8);
            return Err(ReadError::UnknownFormat { offset, found: bytes[offset..end].to_vec() });
        };
        let (output, consumed) = compression::decompress_stream(compression, &bytes[offset..])
            .map_err(|message| ReadError::Decompress { offset, compression, message })?;
        let stream_offset = offset;
        let locate = move |offset| Location::Decompressed { compression, stream_offset, offset };
        let mut position = 0;
        while position < output.len() {
            if output[position] == 0 {
                position += 1;
            } else {
                position = read_cpio_sequence(&output, position, &mut entries, &locate)?;
            }
        }
        offset += consumed;
    }
    Ok(entries)
}

/// Reads one archive (up to and including its trailer) starting at `start`.
/// Returns the offset after the trailer's padding. Every header must start
/// 4-aligned, as the kernel requires.
fn read_cpio_sequence(
    data: &[u8],
    start: usize,
    entries: &mut Vec<Entry>,
    locate: &dyn Fn(usize) -> Location,
) -> Result<usize, ReadError> {
    let mut offset = start;
    loop {
        if offset >= data.len() {
            return Err(ReadError::MissingTrailer { at: locate(offset) });
        }
        if !offset.is_multiple_of(4) {
            return Err(ReadError::Misaligned { at: locate(offset) });
        }
        let (entry, next) = read_entry(data, offset, locate)?;
        offset = next;
        match entry {
            None => return Ok(offset),
            Some(entry) => entries.push(entry),
        }
    }
}

fn take<'d>(
    data: &'d [u8],
    offset: usize,
    len: usize,
    what: &'static str,
    locate: &dyn Fn(usize) -> Location,
) -> Result<&'d [u8], ReadError> {
    let available = data.len().saturating_sub(offset);
    if len > available {
        return Err(ReadError::Truncated { at: locate(offset), what, needed: len, available });
    }
    Ok(&data[offset..offset + len])
}

/// One header + name + body. `None` for the trailer.
fn read_entry(
    data: &[u8],
    offset: usize,
    locate: &dyn Fn(usize) -> Location,
) -> Result<(Option<Entry>, usize), ReadError> {
    let raw = take(data, offset, newc::HEADER_LEN, "a header", locate)?;
    let magic = &raw[..6];
    if magic != newc::MAGIC && magic != newc::MAGIC_CRC {
        return Err(ReadError::BadMagic { at: locate(offset), found: magic.to_vec() });
    }
    let header = Header::parse_fields(&raw[6..])
        .map_err(|index| ReadError::BadField { at: locate(offset), field: newc::FIELD_NAMES[index] })?;
    let name_offset = offset + newc::HEADER_LEN;
    let name_bytes = take(data, name_offset, header.namesize as usize, "a name", locate)?;
    let Some((&0, name)) = name_bytes.split_last() else {
        return Err(ReadError::BadName { at: locate(offset) });
    };
    if name.is_empty() || name.contains(&0) {
        return Err(ReadError::BadName { at: locate(offset) });
    }
    let path = String::from_utf8_lossy(name).into_owned();
    let body_offset = name_offset + name_bytes.len() + newc::pad4(name_offset + name_bytes.len());
    if path == newc::TRAILER {
        return Ok((None, body_offset));
    }
    let body = take(data, body_offset, header.filesize as usize, "a file body", locate)?;
    let body_end = body_offset + body.len();
    let next = body_end + newc::pad4(body_end);
    let kind = match header.mode & newc::S_IFMT {
        newc::S_IFDIR => EntryKind::Directory,
        newc::S_IFREG => EntryKind::File(body.to_vec()),
        newc::S_IFLNK => EntryKind::Symlink(
            String::from_utf8(body.to_vec())
                .map_err(|_| ReadError::BadSymlinkTarget { at: locate(offset), path: path.clone() })?,
        ),
        newc::S_IFCHR => EntryKind::CharDevice { major: header.rdevmajor, minor: header.rdevminor },
        newc::S_IFBLK => EntryKind::BlockDevice { major: header.rdevmajor, minor: header.rdevminor },
        newc::S_IFIFO => EntryKind::Fifo,
        newc::S_IFSOCK => EntryKind::Socket,
        _ => return Err(ReadError::BadFileType { at: locate(offset), path, mode: header.mode }),
    };
    let entry = Entry { path, mode: header.mode & 0o7777, kind, uid: header.uid, gid: header.gid, mtime: header.mtime };
    Ok((Some(entry), next))
}
