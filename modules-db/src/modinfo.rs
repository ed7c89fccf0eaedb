//! Reading one module file: decompression and the `.modinfo` ELF section.
//!
//! `.modinfo` is a sequence of NUL-terminated `key=value` strings (the section may
//! hold padding NULs between them). Only the keys the database needs are kept.

use std::io::Read;
use std::path::Path;

use object::elf::{FileHeader32, FileHeader64};
use object::read::elf::{FileHeader, SectionHeader};
use object::{Endianness, FileKind, ReadRef};

/// How a module file is stored, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
}

/// File-name suffixes of module files, longest first so `.ko.xz` is not taken for `.ko`.
pub const MODULE_SUFFIXES: [(&str, Compression); 3] =
    [(".ko.xz", Compression::Xz), (".ko.zst", Compression::Zstd), (".ko", Compression::None)];

/// Splits a module file name into its stem and compression, or `None` for non-modules.
pub fn split_module_file_name(file_name: &str) -> Option<(&str, Compression)> {
    MODULE_SUFFIXES
        .iter()
        .find_map(|(suffix, c)| file_name.strip_suffix(suffix).filter(|stem| !stem.is_empty()).map(|stem| (stem, *c)))
}

/// The path a module has once stored uncompressed (what mkinitramfs writes).
pub fn uncompressed_path(path: &str) -> String {
    for (suffix, c) in MODULE_SUFFIXES {
        if c != Compression::None
            && let Some(stem) = path.strip_suffix(suffix)
        {
            return format!("{stem}.ko");
        }
    }
    path.to_string()
}

#[derive(Debug)]
pub enum ModinfoError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The compressed stream is damaged or not of the format its name says.
    Decompress(String),
    /// The bytes are not an ELF object.
    Elf(String),
    /// The ELF object has no `.modinfo` section: not a kernel module.
    NoModinfo,
}

impl std::fmt::Display for ModinfoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModinfoError::Read(e) => write!(f, "cannot read the file: {e}"),
            ModinfoError::Decompress(e) => write!(f, "cannot decompress it ({e}); the file is damaged"),
            ModinfoError::Elf(e) => write!(f, "not a valid ELF object ({e}); the file is damaged"),
            ModinfoError::NoModinfo => write!(f, "no .modinfo section: this is not a kernel module"),
        }
    }
}

/// Reads a module file and returns its ELF bytes, decompressed as its name says.
pub fn read_module_file(path: &Path) -> Result<Vec<u8>, ModinfoError> {
    let raw = std::fs::read(path).map_err(ModinfoError::Read)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let compression = split_module_file_name(name).map_or(Compression::None, |(_, c)| c);
    decompress(raw, compression)
}

/// Decompresses module bytes stored with `compression`.
pub fn decompress(raw: Vec<u8>, compression: Compression) -> Result<Vec<u8>, ModinfoError> {
    let mut out = Vec::new();
    match compression {
        Compression::None => return Ok(raw),
        Compression::Xz => {
            lzma_rust2::XzReader::new(&raw[..], true)
                .read_to_end(&mut out)
                .map_err(|e| ModinfoError::Decompress(format!("xz: {e}")))?;
        }
        Compression::Zstd => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(&raw[..])
                .map_err(|e| ModinfoError::Decompress(format!("zstd: {e}")))?;
            dec.read_to_end(&mut out).map_err(|e| ModinfoError::Decompress(format!("zstd: {e}")))?;
        }
    }
    Ok(out)
}

/// The raw `.modinfo` section of an ELF module held in memory.
pub fn modinfo_section(elf: &[u8]) -> Result<Vec<u8>, ModinfoError> {
    modinfo_from(elf)
}

/// The `.modinfo` section of a module file. Uncompressed modules are read lazily
/// (ELF header, section headers, names, `.modinfo`): a few KiB instead of the whole
/// file, which matters for thousands of modules. Compressed ones are decompressed.
pub fn read_modinfo(path: &Path) -> Result<Vec<u8>, ModinfoError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match split_module_file_name(name) {
        Some((_, Compression::Xz | Compression::Zstd)) => modinfo_from(&read_module_file(path)?[..]),
        _ => {
            let file = std::fs::File::open(path).map_err(ModinfoError::Read)?;
            let cache = object::ReadCache::new(std::io::BufReader::new(file));
            modinfo_from(&cache)
        }
    }
}

fn modinfo_from<'data, R: ReadRef<'data>>(data: R) -> Result<Vec<u8>, ModinfoError> {
    let elf_error = |e: object::Error| ModinfoError::Elf(e.to_string());
    match FileKind::parse(data).map_err(elf_error)? {
        FileKind::Elf64 => section_of::<FileHeader64<Endianness>, R>(data),
        FileKind::Elf32 => section_of::<FileHeader32<Endianness>, R>(data),
        other => Err(ModinfoError::Elf(format!("{other:?} object, expected ELF"))),
    }
}

fn section_of<'data, H: FileHeader, R: ReadRef<'data>>(data: R) -> Result<Vec<u8>, ModinfoError> {
    let elf_error = |e: object::Error| ModinfoError::Elf(e.to_string());
    let header = H::parse(data).map_err(elf_error)?;
    let endian = header.endian().map_err(elf_error)?;
    let sections = header.sections(endian, data).map_err(elf_error)?;
    let (_, section) = sections.section_by_name(endian, b".modinfo").ok_or(ModinfoError::NoModinfo)?;
    Ok(section.data(endian, data).map_err(elf_error)?.to_vec())
}

/// The `key=value` pairs of a `.modinfo` section, in order. Entries that are not
/// UTF-8 or have no `=` are skipped: the kernel never writes such entries for the
/// keys we read.
pub fn modinfo_pairs(section: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    section
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.split_once('='))
}

/// The fields of `.modinfo` the database is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modinfo {
    pub name: Option<String>,
    pub aliases: Vec<String>,
    pub depends: Vec<String>,
    pub softdep_pre: Vec<String>,
    pub softdep_post: Vec<String>,
    pub firmware: Vec<String>,
}

/// Parses the fields the database needs from a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> Modinfo {
    let mut info = Modinfo::default();
    for (key, value) in modinfo_pairs(section) {
        match key {
            "name" => info.name = Some(value.to_string()),
            "alias" => info.aliases.push(value.to_string()),
            "depends" => info.depends.extend(value.split(',').filter(|d| !d.is_empty()).map(crate::normalize_name)),
            "softdep" => {
                let (pre, post) = parse_softdep(value);
                info.softdep_pre.extend(pre);
                info.softdep_post.extend(post);
            }
            "firmware" => info.firmware.push(value.to_string()),
            _ => {}
        }
    }
    info
}

/// Parses a softdep value `pre: a b post: c` into (pre, post) names, as kmod reads
/// it: words before the first `pre:`/`post:` marker belong to neither list.
/// Names are kept as written (they may be aliases such as `platform:leds-gpio`).
pub fn parse_softdep(value: &str) -> (Vec<String>, Vec<String>) {
    enum Mode {
        None,
        Pre,
        Post,
    }
    let (mut pre, mut post, mut mode) = (Vec::new(), Vec::new(), Mode::None);
    for word in value.split_ascii_whitespace() {
        match word {
            "pre:" => mode = Mode::Pre,
            "post:" => mode = Mode::Post,
            _ => match mode {
                Mode::None => {}
                Mode::Pre => pre.push(word.to_string()),
                Mode::Post => post.push(word.to_string()),
            },
        }
    }
    (pre, post)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_file_names_are_split_by_longest_suffix() {
        assert_eq!(split_module_file_name("e1000.ko"), Some(("e1000", Compression::None)));
        assert_eq!(split_module_file_name("e1000.ko.xz"), Some(("e1000", Compression::Xz)));
        assert_eq!(split_module_file_name("e1000.ko.zst"), Some(("e1000", Compression::Zstd)));
        assert_eq!(split_module_file_name("e1000.ko.gz"), None);
        assert_eq!(split_module_file_name(".ko"), None);
        assert_eq!(split_module_file_name("modules.dep"), None);
    }

    #[test]
    fn uncompressed_path_drops_only_the_compression_suffix() {
        assert_eq!(uncompressed_path("kernel/a/b.ko.xz"), "kernel/a/b.ko");
        assert_eq!(uncompressed_path("kernel/a/b.ko.zst"), "kernel/a/b.ko");
        assert_eq!(uncompressed_path("kernel/a/b.ko"), "kernel/a/b.ko");
    }

    #[test]
    fn softdep_words_go_to_the_list_of_the_last_marker() {
        let (pre, post) = parse_softdep("pre: a b post: c pre: d");
        assert_eq!(pre, ["a", "b", "d"]);
        assert_eq!(post, ["c"]);
        let (pre, post) = parse_softdep("ignored pre:  x");
        assert_eq!((pre, post), (vec!["x".to_string()], vec![]));
    }

    #[test]
    fn modinfo_fields_are_collected_across_padding() {
        let section = b"license=GPL\0\0\0alias=pci:v*d*\0depends=a-b,c\0softdep=pre: x post: y\0firmware=f.bin\0name=my-mod\0depends=\0";
        let info = parse_modinfo(section);
        assert_eq!(info.name.as_deref(), Some("my-mod"));
        assert_eq!(info.aliases, ["pci:v*d*"]);
        assert_eq!(info.depends, ["a_b", "c"]);
        assert_eq!(info.softdep_pre, ["x"]);
        assert_eq!(info.softdep_post, ["y"]);
        assert_eq!(info.firmware, ["f.bin"]);
    }

    /// A relocatable ELF object of the given class and byte order whose only named
    /// section is `.modinfo` holding `modinfo` (section headers: null, .modinfo, .shstrtab).
    fn module(class64: bool, big_endian: bool, modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let (ehsize, shentsize) = if class64 { (64usize, 64usize) } else { (52, 40) };
        let modinfo_at = ehsize;
        let shstrtab_at = modinfo_at + modinfo.len();
        let shoff = shstrtab_at + shstrtab.len();
        let mut out = vec![0x7f, b'E', b'L', b'F', if class64 { 2 } else { 1 }, if big_endian { 2 } else { 1 }, 1];
        out.resize(16, 0);
        let half = |out: &mut Vec<u8>, v: u16| out.extend(if big_endian { v.to_be_bytes() } else { v.to_le_bytes() });
        let word = |out: &mut Vec<u8>, v: u32| out.extend(if big_endian { v.to_be_bytes() } else { v.to_le_bytes() });
        // Addresses and offsets: 8 bytes in ELF64, 4 in ELF32.
        let addr = |out: &mut Vec<u8>, v: usize| match (class64, big_endian) {
            (true, true) => out.extend((v as u64).to_be_bytes()),
            (true, false) => out.extend((v as u64).to_le_bytes()),
            (false, true) => out.extend((v as u32).to_be_bytes()),
            (false, false) => out.extend((v as u32).to_le_bytes()),
        };
        half(&mut out, 1); // ET_REL
        half(&mut out, if class64 { 21 } else { 20 }); // EM_PPC64 / EM_PPC
        word(&mut out, 1);
        addr(&mut out, 0); // entry
        addr(&mut out, 0); // phoff
        addr(&mut out, shoff);
        word(&mut out, 0); // flags
        for v in [ehsize, 0, 0, shentsize, 3, 2] {
            half(&mut out, v as u16);
        }
        out.extend_from_slice(modinfo);
        out.extend_from_slice(shstrtab);
        out.resize(shoff + shentsize, 0); // the null section header
        for (name, kind, offset, size) in [(1, 1, modinfo_at, modinfo.len()), (10, 3, shstrtab_at, shstrtab.len())] {
            word(&mut out, name);
            word(&mut out, kind);
            addr(&mut out, 0); // flags
            addr(&mut out, 0); // addr
            addr(&mut out, offset);
            addr(&mut out, size);
            word(&mut out, 0); // link
            word(&mut out, 0); // info
            addr(&mut out, 1); // addralign
            addr(&mut out, 0); // entsize
        }
        out
    }

    #[test]
    fn modinfo_is_read_from_modules_of_every_class_and_byte_order() {
        let section = b"alias=of:N*T*Cibm,l-lan\0depends=\0name=ibmveth\0";
        for class64 in [false, true] {
            for big_endian in [false, true] {
                let elf = module(class64, big_endian, section);
                let info = parse_modinfo(&modinfo_section(&elf).unwrap());
                assert_eq!(info.name.as_deref(), Some("ibmveth"), "class64 {class64}, big endian {big_endian}");
                assert_eq!(info.aliases, ["of:N*T*Cibm,l-lan"]);
                let arch = crate::elf::ElfArch::of(&elf).unwrap();
                assert_eq!((arch.class64, arch.big_endian), (class64, big_endian));
            }
        }
    }

    #[test]
    fn non_elf_bytes_are_an_elf_error() {
        assert!(matches!(modinfo_section(b"not an elf"), Err(ModinfoError::Elf(_))));
    }
}
