//! newc (SVR4 "070701") cpio archives as the kernel unpacks them into its rootfs.
//!
//! - [`Archive`] builds a reproducible archive (sorted entries, owner 0:0, sequential
//!   inode numbers, one fixed mtime from `SOURCE_DATE_EPOCH`).
//! - [`Compression`] compresses it as gzip, zstd or xz in forms the kernel decodes.
//! - [`read_archive`] reads any initramfs back: raw or compressed archives,
//!   concatenated with zero padding, as `init/initramfs.c` accepts them.

pub mod compression;
pub mod entry;
pub mod newc;
pub mod reader;
pub mod writer;

pub use compression::{CompressError, Compression, UnknownCompression};
pub use entry::{Entry, EntryKind};
pub use reader::{Location, ReadError, read_archive};
pub use writer::{Archive, WriteError, mtime_from_source_date_epoch};
