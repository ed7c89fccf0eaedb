//! What is on a block device, from its bytes: superblock magics at known offsets.
//!
//! Probing is pure: a [`Sample`] holds the first [`HEAD_BYTES`] of the device and
//! the last [`TAIL_BYTES`] (for RAID superblocks stored at the end), and [`probe`]
//! looks them up in one table of signatures ([`SIGNATURES`]). Nothing here can panic
//! on disk contents: every read goes through [`Sample::bytes`], which answers `None`
//! for ranges the sample does not hold.
//!
//! Several signatures on one device are normal only in known cases (a FAT boot
//! sector carries the same 0x55AA as an MBR; a RAID 1.0 member carries the
//! filesystem of its array at offset 0). The table is ordered so that the first match
//! is what the device *is*; the other matches are kept in [`Signature::also`] so that
//! selection can refuse a device whose content is not clear (libblkid calls this
//! "ambiguous" and refuses too).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bytes read from the start of a device: covers the btrfs superblock (64 KiB + 4 KiB)
/// and swap headers for page sizes up to 64 KiB.
pub const HEAD_BYTES: usize = 128 << 10;
/// Bytes read from the end: covers the md 0.90 superblock (in the last 64-128 KiB)
/// and the md 1.0 superblock (in the last 8-12 KiB).
pub const TAIL_BYTES: usize = 128 << 10;

/// What a signature says the device holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "ext2")]
    Ext2,
    #[serde(rename = "ext3")]
    Ext3,
    #[serde(rename = "ext4")]
    Ext4,
    /// An external ext3/ext4 journal device: not a filesystem.
    #[serde(rename = "jbd")]
    Jbd,
    #[serde(rename = "xfs")]
    Xfs,
    #[serde(rename = "btrfs")]
    Btrfs,
    #[serde(rename = "swap")]
    Swap,
    /// A swap partition holding a hibernation image: enabling it would destroy the image.
    #[serde(rename = "swsuspend")]
    Swsuspend,
    #[serde(rename = "vfat")]
    Vfat,
    #[serde(rename = "ntfs")]
    Ntfs,
    #[serde(rename = "crypto_LUKS")]
    Luks,
    #[serde(rename = "LVM2_member")]
    Lvm2,
    #[serde(rename = "linux_raid_member")]
    MdRaid,
    /// A whole disk with a GUID partition table.
    #[serde(rename = "gpt")]
    Gpt,
    /// A whole disk with an MBR (DOS) partition table.
    #[serde(rename = "dos")]
    Dos,
}

impl Kind {
    /// The name blkid and mount use, so that admins recognise it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ext2 => "ext2",
            Kind::Ext3 => "ext3",
            Kind::Ext4 => "ext4",
            Kind::Jbd => "jbd",
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
            Kind::Swap => "swap",
            Kind::Swsuspend => "swsuspend",
            Kind::Vfat => "vfat",
            Kind::Ntfs => "ntfs",
            Kind::Luks => "crypto_LUKS",
            Kind::Lvm2 => "LVM2_member",
            Kind::MdRaid => "linux_raid_member",
            Kind::Gpt => "gpt",
            Kind::Dos => "dos",
        }
    }

    /// A partition table rather than content.
    pub fn is_partition_table(self) -> bool {
        matches!(self, Kind::Gpt | Kind::Dos)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of probing one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    pub kind: Kind,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Other signatures found on the same device (stale or nested ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Kind>,
}

/// The bytes of a device that probing looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The first bytes of the device (fewer when the device is smaller).
    pub head: Vec<u8>,
    /// Bytes ending at the end of the device, starting at `tail_offset`.
    pub tail: Vec<u8>,
    pub tail_offset: u64,
    /// Size of the device in bytes.
    pub size: u64,
}

impl Sample {
    /// A sample of a device of `size` bytes, read through `read_at(offset, buf)` which
    /// must fill `buf` completely (pread until full).
    pub fn read<E>(size: u64, mut read_at: impl FnMut(u64, &mut [u8]) -> Result<(), E>) -> Result<Sample, E> {
        let head_len = size.min(HEAD_BYTES as u64) as usize;
        let mut head = vec![0; head_len];
        read_at(0, &mut head)?;
        let tail_len = size.min(TAIL_BYTES as u64) as usize;
        let tail_offset = size - tail_len as u64;
        let mut tail = vec![0; tail_len];
        read_at(tail_offset, &mut tail)?;
        Ok(Sample { head, tail, tail_offset, size })
    }

    /// A sample of a device whose content is `bytes` (the whole device, in tests).
    pub fn from_bytes(bytes: &[u8]) -> Sample {
        Sample::read(bytes.len() as u64, |offset, buf: &mut [u8]| {
            buf.copy_from_slice(&bytes[offset as usize..offset as usize + buf.len()]);
            Ok::<_, ()>(())
        })
        .unwrap_or_else(|()| unreachable!())
    }

    /// `len` bytes at absolute `offset`, when the sample holds all of them.
    pub fn bytes(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len as u64)?;
        if end <= self.head.len() as u64 {
            return self.head.get(offset as usize..end as usize);
        }
        if offset >= self.tail_offset && end <= self.size {
            let start = (offset - self.tail_offset) as usize;
            return self.tail.get(start..start + len);
        }
        None
    }
}

/// Where a superblock starts.
#[derive(Debug, Clone, Copy)]
enum Base {
    /// At this offset from the start of the device.
    Start(u64),
    /// md 1.0: 8 KiB before the end, rounded down to 4 KiB.
    MdEnd10,
    /// md 0.90: the last 64 KiB-aligned 64 KiB block before the end.
    MdEnd090,
}

impl Base {
    fn offset(self, size: u64) -> Option<u64> {
        match self {
            Base::Start(offset) => Some(offset),
            Base::MdEnd10 => size.checked_sub(8 << 10).map(|o| o & !4095),
            Base::MdEnd090 => (size & !0xffff).checked_sub(0x10000),
        }
    }
}

/// How a text field is stored.
#[derive(Debug, Clone, Copy)]
enum Text {
    /// NUL-terminated (or NUL-padded) bytes.
    Nul,
    /// Space-padded; "NO NAME" means no label (FAT).
    FatLabel,
}

/// How a UUID field is stored and shown.
#[derive(Debug, Clone, Copy)]
enum UuidFormat {
    /// 16 bytes shown 8-4-4-4-12 in byte order.
    Bytes16,
    /// A GUID: first three groups little-endian (GPT).
    Guid,
    /// ASCII, NUL-padded (LUKS).
    Ascii,
    /// 32 ASCII characters shown 6-4-4-4-4-4-6 (LVM2).
    Lvm,
    /// A 32-bit serial shown XXXX-XXXX (FAT).
    FatSerial,
    /// A 64-bit serial shown as 16 hex digits (NTFS).
    NtfsSerial,
    /// md 0.90: four 32-bit words at base+20 and base+52..64.
    Md090,
}

/// A field relative to the superblock base.
#[derive(Debug, Clone, Copy)]
struct Field<F> {
    offset: u64,
    len: usize,
    format: F,
}

const fn text(offset: u64, len: usize) -> Option<Field<Text>> {
    Some(Field { offset, len, format: Text::Nul })
}

const fn uuid(offset: u64, len: usize, format: UuidFormat) -> Option<Field<UuidFormat>> {
    Some(Field { offset, len, format })
}

/// A further check of a superblock at its base: the kind it really is, or `None`.
type Check = fn(&Sample, u64, Kind) -> Option<Kind>;

/// One known signature. Adding a format is adding a row.
struct Row {
    kind: Kind,
    base: Base,
    /// Offset of the magic from the base.
    magic_offset: u64,
    magic: &'static [u8],
    /// Further checks on the superblock (given from its base), returning the kind it
    /// really is, or `None` when the magic was a coincidence.
    check: Option<Check>,
    label: Option<Field<Text>>,
    uuid: Option<Field<UuidFormat>>,
}

const MD_MAGIC: &[u8] = &0xa92b_4efc_u32.to_le_bytes();
const SWAP_LABEL: Option<Field<Text>> = text(1024 + 28, 16);
const SWAP_UUID: Option<Field<UuidFormat>> = uuid(1024 + 12, 16, UuidFormat::Bytes16);

const fn swap(page: u64, magic: &'static [u8]) -> Row {
    Row {
        kind: Kind::Swap,
        base: Base::Start(0),
        magic_offset: page - 10,
        magic,
        check: None,
        label: SWAP_LABEL,
        uuid: SWAP_UUID,
    }
}

const fn swsuspend(page: u64, magic: &'static [u8]) -> Row {
    Row {
        kind: Kind::Swsuspend,
        base: Base::Start(0),
        magic_offset: page - 10,
        magic,
        check: None,
        label: None,
        uuid: None,
    }
}

const fn md1(base: Base) -> Row {
    Row {
        kind: Kind::MdRaid,
        base,
        magic_offset: 0,
        magic: MD_MAGIC,
        check: Some(md_major_1),
        label: text(32, 32),
        uuid: uuid(16, 16, UuidFormat::Bytes16),
    }
}

const fn lvm(sector: u64) -> Row {
    Row {
        kind: Kind::Lvm2,
        base: Base::Start(sector * 512),
        magic_offset: 0,
        magic: b"LABELONE",
        check: Some(lvm_type),
        label: None,
        uuid: uuid(32, 32, UuidFormat::Lvm),
    }
}

/// The signatures, in priority order: containers (whose content must never be
/// touched directly) first, then filesystems and swap, then the MBR, whose 0x55AA is
/// also in every FAT and NTFS boot sector.
#[rustfmt::skip]
static SIGNATURES: &[Row] = &[
    // GPT header in LBA 1 (512-byte sectors; 4Kn disks put it at 4096).
    Row { kind: Kind::Gpt, base: Base::Start(512), magic_offset: 0, magic: b"EFI PART", check: None, label: None, uuid: uuid(56, 16, UuidFormat::Guid) },
    Row { kind: Kind::Gpt, base: Base::Start(4096), magic_offset: 0, magic: b"EFI PART", check: None, label: None, uuid: uuid(56, 16, UuidFormat::Guid) },
    // md superblocks: 1.1 at 0, 1.2 at 4 KiB, 1.0 and 0.90 near the end.
    md1(Base::Start(0)),
    md1(Base::Start(4096)),
    md1(Base::MdEnd10),
    Row { kind: Kind::MdRaid, base: Base::MdEnd090, magic_offset: 0, magic: MD_MAGIC, check: Some(md_major_0), label: None, uuid: uuid(0, 64, UuidFormat::Md090) },
    // LUKS: magic then a big-endian version; only LUKS2 has a label.
    Row { kind: Kind::Luks, base: Base::Start(0), magic_offset: 0, magic: b"LUKS\xba\xbe\x00\x01", check: None, label: None, uuid: uuid(168, 40, UuidFormat::Ascii) },
    Row { kind: Kind::Luks, base: Base::Start(0), magic_offset: 0, magic: b"LUKS\xba\xbe\x00\x02", check: None, label: text(24, 48), uuid: uuid(168, 40, UuidFormat::Ascii) },
    // LVM2 label: in one of the first four sectors.
    lvm(0), lvm(1), lvm(2), lvm(3),
    // ext2/3/4: superblock at 1 KiB, s_magic 0xEF53 little-endian.
    Row { kind: Kind::Ext4, base: Base::Start(1024), magic_offset: 56, magic: &[0x53, 0xef], check: Some(ext_kind), label: text(120, 16), uuid: uuid(104, 16, UuidFormat::Bytes16) },
    Row { kind: Kind::Xfs, base: Base::Start(0), magic_offset: 0, magic: b"XFSB", check: None, label: text(108, 12), uuid: uuid(32, 16, UuidFormat::Bytes16) },
    Row { kind: Kind::Btrfs, base: Base::Start(64 << 10), magic_offset: 64, magic: b"_BHRfS_M", check: None, label: text(299, 256), uuid: uuid(32, 16, UuidFormat::Bytes16) },
    // Swap header in the first page; the page size of the machine that made it.
    swap(4096, b"SWAPSPACE2"), swap(8192, b"SWAPSPACE2"), swap(16384, b"SWAPSPACE2"), swap(65536, b"SWAPSPACE2"),
    swap(4096, b"SWAP-SPACE"),
    swsuspend(4096, b"S1SUSPEND\0"), swsuspend(4096, b"S2SUSPEND\0"), swsuspend(4096, b"ULSUSPEND\0"), swsuspend(4096, b"LINHIB0001"),
    Row { kind: Kind::Ntfs, base: Base::Start(0), magic_offset: 3, magic: b"NTFS    ", check: None, label: None, uuid: uuid(0x48, 8, UuidFormat::NtfsSerial) },
    // FAT32 names its type at 82, FAT12/16 at 54.
    Row { kind: Kind::Vfat, base: Base::Start(0), magic_offset: 82, magic: b"FAT32   ", check: Some(fat_boot_sector), label: Some(Field { offset: 71, len: 11, format: Text::FatLabel }), uuid: uuid(67, 4, UuidFormat::FatSerial) },
    Row { kind: Kind::Vfat, base: Base::Start(0), magic_offset: 54, magic: b"FAT", check: Some(fat_boot_sector), label: Some(Field { offset: 43, len: 11, format: Text::FatLabel }), uuid: uuid(39, 4, UuidFormat::FatSerial) },
    Row { kind: Kind::Dos, base: Base::Start(0), magic_offset: 510, magic: &[0x55, 0xaa], check: Some(mbr_entries), label: None, uuid: None },
];

// ext feature flags (from the ext4 on-disk format documentation).
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x8;
/// Incompatible features an ext2 driver knows: filetype, meta_bg.
const EXT2_INCOMPAT: u32 = 0x2 | 0x10;
/// ext3 adds recover (journal needs replay).
const EXT3_INCOMPAT: u32 = EXT2_INCOMPAT | 0x4;
/// Read-only-compatible features of ext2/ext3: sparse_super, large_file, btree_dir.
const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;

fn le32(sample: &Sample, offset: u64) -> Option<u32> {
    Some(u32::from_le_bytes(sample.bytes(offset, 4)?.try_into().ok()?))
}

/// ext2, ext3 or ext4 from the feature flags, as blkid decides: anything beyond
/// ext3's features (extents, 64bit, flex_bg, huge_file, metadata_csum...) is ext4.
fn ext_kind(sample: &Sample, base: u64, _: Kind) -> Option<Kind> {
    let compat = le32(sample, base + 92)?;
    let incompat = le32(sample, base + 96)?;
    let ro_compat = le32(sample, base + 100)?;
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        return Some(Kind::Jbd);
    }
    if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        Some(Kind::Ext4)
    } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
        Some(Kind::Ext3)
    } else if incompat & !EXT2_INCOMPAT != 0 {
        // recover without a journal: not a state mkfs produces; the ext4 driver decides.
        Some(Kind::Ext4)
    } else {
        Some(Kind::Ext2)
    }
}

fn md_major_1(sample: &Sample, base: u64, kind: Kind) -> Option<Kind> {
    (le32(sample, base + 4)? == 1).then_some(kind)
}

fn md_major_0(sample: &Sample, base: u64, kind: Kind) -> Option<Kind> {
    (le32(sample, base + 4)? == 0).then_some(kind)
}

fn lvm_type(sample: &Sample, base: u64, kind: Kind) -> Option<Kind> {
    (sample.bytes(base + 24, 8)? == b"LVM2 001").then_some(kind)
}

/// A FAT boot sector: a jump instruction, a power-of-two sector size and the 0x55AA
/// end marker, so that the word "FAT" in random data is not enough.
fn fat_boot_sector(sample: &Sample, _: u64, kind: Kind) -> Option<Kind> {
    let sector = sample.bytes(0, 512)?;
    let jump = sector[0] == 0xeb || sector[0] == 0xe9;
    let bytes_per_sector = u16::from_le_bytes([sector[11], sector[12]]);
    let sane = bytes_per_sector.is_power_of_two() && (512..=4096).contains(&bytes_per_sector) && sector[13] != 0;
    (jump && sane && sector[510..512] == [0x55, 0xaa]).then_some(kind)
}

/// An MBR partition table: every entry has a valid boot flag and at least one is used.
fn mbr_entries(sample: &Sample, _: u64, kind: Kind) -> Option<Kind> {
    let table = sample.bytes(446, 64)?;
    let entries: Vec<&[u8]> = table.chunks(16).collect();
    let flags_valid = entries.iter().all(|e| e[0] == 0 || e[0] == 0x80);
    let used = entries.iter().any(|e| e[4] != 0);
    (flags_valid && used).then_some(kind)
}

fn read_text(bytes: &[u8], format: Text) -> Option<String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let raw = String::from_utf8_lossy(&bytes[..end]);
    let value = match format {
        Text::Nul => raw.trim_end().to_string(),
        Text::FatLabel => {
            let v = raw.trim_end();
            if v == "NO NAME" { String::new() } else { v.to_string() }
        }
    };
    (!value.is_empty()).then_some(value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Groups of hex digits joined with '-' (`sizes` in bytes).
fn grouped(bytes: &[u8], sizes: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut at = 0;
    for &n in sizes {
        parts.push(hex(&bytes[at..at + n]));
        at += n;
    }
    parts.join("-")
}

fn read_uuid(sample: &Sample, base: u64, field: Field<UuidFormat>) -> Option<String> {
    let b = sample.bytes(base + field.offset, field.len)?;
    let value = match field.format {
        UuidFormat::Bytes16 => grouped(b, &[4, 2, 2, 2, 6]),
        UuidFormat::Guid => {
            let mut le = b.to_vec();
            le[0..4].reverse();
            le[4..6].reverse();
            le[6..8].reverse();
            grouped(&le, &[4, 2, 2, 2, 6])
        }
        UuidFormat::Ascii => read_text(b, Text::Nul)?,
        UuidFormat::Lvm => {
            let s = String::from_utf8_lossy(b);
            let chars: Vec<char> = s.chars().collect();
            if chars.len() != 32 {
                return Some(s.into_owned());
            }
            let mut out = String::new();
            let mut at = 0;
            for (i, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
                if i > 0 {
                    out.push('-');
                }
                out.extend(&chars[at..at + n]);
                at += n;
            }
            out
        }
        UuidFormat::FatSerial => format!("{:02X}{:02X}-{:02X}{:02X}", b[3], b[2], b[1], b[0]),
        UuidFormat::NtfsSerial => b.iter().rev().map(|x| format!("{x:02X}")).collect(),
        UuidFormat::Md090 => {
            let words = [b.get(20..24)?, b.get(52..56)?, b.get(56..60)?, b.get(60..64)?];
            let mut bytes = Vec::new();
            for w in words {
                // md 0.90 stores host-endian words; blkid shows them big-endian.
                bytes.extend(u32::from_le_bytes(w.try_into().ok()?).to_be_bytes());
            }
            grouped(&bytes, &[4, 2, 2, 2, 6])
        }
    };
    // An all-zero UUID is "none" (e.g. a v0 swap or a fresh header).
    (!value.chars().all(|c| matches!(c, '0' | '-'))).then_some(value)
}

/// Every signature found in the sample, in table order, with label and UUID.
pub fn probe_all(sample: &Sample) -> Vec<Signature> {
    let mut found: Vec<Signature> = Vec::new();
    for row in SIGNATURES {
        let Some(base) = row.base.offset(sample.size) else {
            continue;
        };
        let Some(magic) = base.checked_add(row.magic_offset).and_then(|at| sample.bytes(at, row.magic.len())) else {
            continue;
        };
        if magic != row.magic {
            continue;
        }
        let kind = match row.check {
            Some(check) => match check(sample, base, row.kind) {
                Some(kind) => kind,
                None => continue,
            },
            None => row.kind,
        };
        // One entry per kind: md 1.x at two offsets, or swap magics for two page sizes.
        if found.iter().any(|s| s.kind == kind) {
            continue;
        }
        let label = row.label.and_then(|f| sample.bytes(base + f.offset, f.len).and_then(|b| read_text(b, f.format)));
        let uuid = row.uuid.and_then(|f| read_uuid(sample, base, f));
        found.push(Signature { kind, label, uuid, also: Vec::new() });
    }
    found
}

/// What the device is: the first signature in priority order, with the other ones in
/// [`Signature::also`]. An MBR next to a FAT or NTFS boot sector is that boot sector's
/// own 0x55AA, not a second signature.
pub fn probe(sample: &Sample) -> Option<Signature> {
    let mut all = probe_all(sample);
    if all.len() > 1 && all.iter().any(|s| matches!(s.kind, Kind::Vfat | Kind::Ntfs)) {
        all.retain(|s| s.kind != Kind::Dos);
    }
    let mut first = all.first()?.clone();
    first.also = all[1..].iter().map(|s| s.kind).collect();
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(size: usize) -> Vec<u8> {
        vec![0; size]
    }

    fn put(dev: &mut [u8], at: usize, bytes: &[u8]) {
        dev[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn probe_bytes(dev: &[u8]) -> Option<Signature> {
        probe(&Sample::from_bytes(dev))
    }

    fn ext(compat: u32, incompat: u32, ro_compat: u32) -> Vec<u8> {
        let mut d = device(1 << 20);
        put(&mut d, 1024 + 56, &[0x53, 0xef]);
        put(&mut d, 1024 + 92, &compat.to_le_bytes());
        put(&mut d, 1024 + 96, &incompat.to_le_bytes());
        put(&mut d, 1024 + 100, &ro_compat.to_le_bytes());
        put(&mut d, 1024 + 104, &[0x11; 16]);
        put(&mut d, 1024 + 120, b"scratch\0");
        d
    }

    #[test]
    fn ext_flavour_follows_the_feature_flags() {
        let kind = |c, i, r| probe_bytes(&ext(c, i, r)).map(|s| s.kind);
        assert_eq!(kind(0, 0x2, 0x3), Some(Kind::Ext2));
        assert_eq!(kind(0x4, 0x2, 0x3), Some(Kind::Ext3));
        assert_eq!(kind(0x4, 0x2 | 0x40, 0x3), Some(Kind::Ext4), "extents");
        assert_eq!(kind(0, 0x2 | 0x200, 0x3), Some(Kind::Ext4), "flex_bg without journal");
        assert_eq!(kind(0x4, 0x2, 0x3 | 0x400), Some(Kind::Ext4), "metadata_csum");
        assert_eq!(kind(0, 0x8, 0), Some(Kind::Jbd));
    }

    #[test]
    fn ext_label_and_uuid_are_read_from_the_superblock() {
        let s = probe_bytes(&ext(0x4, 0x2 | 0x40, 0)).unwrap();
        assert_eq!(s.label.as_deref(), Some("scratch"));
        assert_eq!(s.uuid.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
        assert!(s.also.is_empty());
    }

    #[test]
    fn zero_device_has_no_signature() {
        assert_eq!(probe_bytes(&device(1 << 20)), None);
        assert_eq!(probe_bytes(&[]), None);
    }

    #[test]
    fn truncated_devices_never_panic() {
        let full = ext(0x4, 0x40, 0);
        for len in [0, 1, 500, 1080, 1081, 1082, 1100, 1200, 4096, 65600] {
            let _ = probe_bytes(&full[..len]);
        }
        // Magic present but feature words cut off: not enough to call it ext.
        assert_eq!(probe_bytes(&full[..1082]), None);
    }

    #[test]
    fn xfs_magic_label_and_uuid() {
        let mut d = device(1 << 20);
        put(&mut d, 0, b"XFSB");
        put(&mut d, 32, &[0xab; 16]);
        put(&mut d, 108, b"twelve_chars");
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.label.as_deref()), (Kind::Xfs, Some("twelve_chars")));
        assert_eq!(s.uuid.as_deref(), Some("abababab-abab-abab-abab-abababababab"));
    }

    #[test]
    fn btrfs_magic_at_64k() {
        let mut d = device(1 << 20);
        put(&mut d, 65536 + 64, b"_BHRfS_M");
        put(&mut d, 65536 + 299, b"data\0");
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.label.as_deref(), s.uuid), (Kind::Btrfs, Some("data"), None));
    }

    #[test]
    fn swap_for_each_page_size_and_old_format() {
        for page in [4096usize, 8192, 16384, 65536] {
            let mut d = device(1 << 20);
            put(&mut d, page - 10, b"SWAPSPACE2");
            put(&mut d, 1024 + 28, b"x\0");
            let s = probe_bytes(&d).unwrap();
            assert_eq!((s.kind, s.label.as_deref()), (Kind::Swap, Some("x")), "page {page}");
        }
        let mut d = device(1 << 20);
        put(&mut d, 4086, b"SWAP-SPACE");
        assert_eq!(probe_bytes(&d).unwrap().kind, Kind::Swap);
        put(&mut d, 4086, b"S1SUSPEND\0");
        assert_eq!(probe_bytes(&d).unwrap().kind, Kind::Swsuspend);
    }

    fn fat16() -> Vec<u8> {
        let mut d = device(1 << 20);
        put(&mut d, 0, &[0xeb, 0x3c, 0x90]);
        put(&mut d, 11, &512u16.to_le_bytes());
        d[13] = 4;
        put(&mut d, 39, &[0x78, 0x56, 0x34, 0x12]);
        put(&mut d, 43, b"EFI        ");
        put(&mut d, 54, b"FAT16   ");
        put(&mut d, 510, &[0x55, 0xaa]);
        d
    }

    #[test]
    fn fat_boot_sector_is_vfat_not_an_mbr() {
        let s = probe_bytes(&fat16()).unwrap();
        assert_eq!((s.kind, s.label.as_deref(), s.uuid.as_deref()), (Kind::Vfat, Some("EFI"), Some("1234-5678")));
        assert!(s.also.is_empty(), "{:?}", s.also);
        let mut no_jump = fat16();
        no_jump[0] = 0;
        assert_ne!(probe_bytes(&no_jump).map(|s| s.kind), Some(Kind::Vfat));
    }

    #[test]
    fn ntfs_oem_id() {
        let mut d = device(1 << 20);
        put(&mut d, 3, b"NTFS    ");
        put(&mut d, 0x48, &0x0123_4567_89ab_cdef_u64.to_le_bytes());
        put(&mut d, 510, &[0x55, 0xaa]);
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.uuid.as_deref()), (Kind::Ntfs, Some("0123456789ABCDEF")));
        assert!(s.also.is_empty());
    }

    #[test]
    fn luks_versions_and_label() {
        let mut d = device(1 << 20);
        put(&mut d, 0, b"LUKS\xba\xbe\x00\x02");
        put(&mut d, 24, b"secret\0");
        put(&mut d, 168, b"0b2a1c7e-0000-4000-8000-000000000001\0");
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.label.as_deref()), (Kind::Luks, Some("secret")));
        assert_eq!(s.uuid.as_deref(), Some("0b2a1c7e-0000-4000-8000-000000000001"));
        put(&mut d, 6, &[0, 1]);
        assert_eq!(probe_bytes(&d).unwrap().label, None, "LUKS1 has no label");
        put(&mut d, 6, &[0, 9]);
        assert_eq!(probe_bytes(&d), None, "unknown LUKS version");
    }

    #[test]
    fn lvm_label_needs_both_magics() {
        let mut d = device(1 << 20);
        put(&mut d, 512, b"LABELONE");
        assert_eq!(probe_bytes(&d), None);
        put(&mut d, 512 + 24, b"LVM2 001");
        put(&mut d, 512 + 32, b"abcdefGHIJKLmnopQRSTuvwxYZ012345");
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.uuid.as_deref()), (Kind::Lvm2, Some("abcdef-GHIJ-KLmn-opQR-STuv-wxYZ-012345")));
    }

    #[test]
    fn md_superblocks_at_every_version_offset() {
        let size = (1 << 20) + 4096 * 3;
        let md = |at: usize, major: u32| {
            let mut d = device(size);
            put(&mut d, at, MD_MAGIC);
            put(&mut d, at + 4, &major.to_le_bytes());
            d
        };
        for (at, version) in [(0, "1.1"), (4096, "1.2"), (((size - 8192) & !4095), "1.0")] {
            assert_eq!(probe_bytes(&md(at, 1)).map(|s| s.kind), Some(Kind::MdRaid), "{version}");
        }
        let at090 = (size & !0xffff) - 0x10000;
        assert_eq!(probe_bytes(&md(at090, 0)).map(|s| s.kind), Some(Kind::MdRaid), "0.90");
        assert_eq!(probe_bytes(&md(4096, 7)), None, "unknown major version");
    }

    #[test]
    fn md_member_with_a_filesystem_inside_is_a_raid_member() {
        // RAID1 with metadata 1.0: the array's ext4 is visible at offset 0 of each member.
        let mut d = ext(0x4, 0x40, 0);
        let at = (d.len() - 8192) & !4095;
        put(&mut d, at, MD_MAGIC);
        put(&mut d, at + 4, &1u32.to_le_bytes());
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.also.as_slice()), (Kind::MdRaid, &[Kind::Ext4][..]));
    }

    #[test]
    fn partition_tables() {
        let mut d = device(1 << 20);
        put(&mut d, 446 + 4, &[0x83]);
        put(&mut d, 510, &[0x55, 0xaa]);
        assert_eq!(probe_bytes(&d).unwrap().kind, Kind::Dos);
        d[446] = 0x12;
        assert_eq!(probe_bytes(&d), None, "invalid boot flag: not a partition table");
        d[446] = 0;
        put(&mut d, 512, b"EFI PART");
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.also.as_slice()), (Kind::Gpt, &[Kind::Dos][..]));
    }

    #[test]
    fn two_filesystems_are_both_reported() {
        let mut d = ext(0x4, 0x40, 0);
        put(&mut d, 65536 + 64, b"_BHRfS_M");
        let s = probe_bytes(&d).unwrap();
        assert_eq!((s.kind, s.also.as_slice()), (Kind::Ext4, &[Kind::Btrfs][..]));
    }

    #[test]
    fn sample_reads_head_and_tail_only() {
        let bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| i as u8).collect();
        let s = Sample::from_bytes(&bytes);
        assert_eq!(s.head.len(), HEAD_BYTES);
        assert_eq!(s.bytes(5, 2), Some(&bytes[5..7]));
        assert_eq!(s.bytes((1 << 20) - 3, 3), Some(&bytes[(1 << 20) - 3..]));
        assert_eq!(s.bytes(1 << 19, 1), None, "middle is not sampled");
        assert_eq!(s.bytes(1 << 20, 1), None, "past the end");
        assert_eq!(s.bytes(u64::MAX, 2), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..140_000)) {
                let _ = probe(&Sample::from_bytes(&bytes));
            }

            #[test]
            fn any_ext_features_give_an_ext_kind(c in any::<u32>(), i in any::<u32>(), r in any::<u32>()) {
                let kind = probe_bytes(&ext(c, i, r)).unwrap().kind;
                prop_assert!(matches!(kind, Kind::Ext2 | Kind::Ext3 | Kind::Ext4 | Kind::Jbd));
            }
        }
    }
}
