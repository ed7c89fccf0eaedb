//! The boot-time database: a compact little-endian binary that `init` reads in
//! place, without parsing text.
//!
//! Layout:
//! ```text
//! header   magic "DLMODDB\0", u32 format version, u32 section count,
//!          then per section (u32 offset, u32 count) in the order of `Section`
//! STRINGS  UTF-8 bytes; every string elsewhere is a (u32 offset, u32 length) into it
//! KVER     the kernel version: (offset, length) stored in the section's own slot
//! MODULES  44-byte records sorted by name: name, path (uncompressed .ko in the
//!          archive; for a module of the image, its file as the kernel package
//!          installs it; empty for built-in), deps, softdep pre, softdep post (each
//!          u32 start + u32 count into IDS), u32 flags (bit 0: built-in; bit 1: the
//!          file is not in the archive but in the root image's `lib/modules/VERSION`,
//!          loaded once the root is mounted)
//! IDS      u32 module ids. A module's deps are all its hard dependencies,
//!          transitively, in load order: modules loaded first come first.
//! ALIAS_PREFIXES  16-byte records sorted by prefix: prefix string, u32 first
//!          entry, u32 entry count. The prefix is the literal text of a pattern
//!          before its first wildcard; a lookup binary-searches every prefix of
//!          the modalias and runs fnmatch only on those groups.
//! ALIAS_ENTRIES   12 bytes: pattern string after the group's prefix (patterns are
//!          normalised as kmod does), u32 module id
//! HINT_PREFIXES, HINT_ENTRIES  the same index over the modules of [`HINT_DIRS`]
//!          that are not in the archive, the entry value indexing HINT_NAMES
//! HINT_NAMES      8 bytes: module name string
//! PCI_VENDORS     12 bytes sorted: u32 vendor, name string
//! PCI_DEVICES     12 bytes sorted: u32 vendor << 16 | device, name string
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::fnmatch::{fnmatch, literal_prefix, normalize_alias};
use crate::{KernelModules, normalize_name, pci_ids};

pub const MAGIC: &[u8; 8] = b"DLMODDB\0";
/// 2: modules of the image (flag bit 1); the database covers every module of the kernel.
pub const FORMAT_VERSION: u32 = 2;

/// Directories whose left-out modules are worth naming when a device has no
/// driver in the database: the devices a netboot client needs to reach its root.
pub const HINT_DIRS: [&str; 5] = [
    "kernel/drivers/net/",
    "kernel/drivers/ata/",
    "kernel/drivers/nvme/",
    "kernel/drivers/scsi/",
    "kernel/drivers/usb/",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Strings,
    Kver,
    Modules,
    Ids,
    AliasPrefixes,
    AliasEntries,
    HintPrefixes,
    HintEntries,
    HintNames,
    PciVendors,
    PciDevices,
}

const SECTIONS: [Section; 11] = [
    Section::Strings,
    Section::Kver,
    Section::Modules,
    Section::Ids,
    Section::AliasPrefixes,
    Section::AliasEntries,
    Section::HintPrefixes,
    Section::HintEntries,
    Section::HintNames,
    Section::PciVendors,
    Section::PciDevices,
];

impl Section {
    /// Bytes per record; `Kver` has no records (its slot is a string reference).
    fn record_size(self) -> usize {
        match self {
            Section::Strings => 1,
            Section::Kver => 0,
            Section::Modules => MODULE_SIZE,
            Section::Ids => 4,
            Section::AliasPrefixes | Section::HintPrefixes => 16,
            Section::AliasEntries | Section::HintEntries => 12,
            Section::HintNames => 8,
            Section::PciVendors | Section::PciDevices => 12,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Section::Strings => "string table",
            Section::Kver => "kernel version",
            Section::Modules => "module table",
            Section::Ids => "id lists",
            Section::AliasPrefixes => "alias index",
            Section::AliasEntries => "alias table",
            Section::HintPrefixes => "hint index",
            Section::HintEntries => "hint table",
            Section::HintNames => "hint names",
            Section::PciVendors => "PCI vendor names",
            Section::PciDevices => "PCI device names",
        }
    }
}

const HEADER_SIZE: usize = 16 + SECTIONS.len() * 8;
const MODULE_SIZE: usize = 44;
const FLAG_BUILTIN: u32 = 1;
const FLAG_IN_IMAGE: u32 = 2;

/// Sort key of a PCI device: vendor first, so (vendor, device) order is key order.
fn pci_device_key(vendor: u16, device: u16) -> u32 {
    (u32::from(vendor) << 16) | u32::from(device)
}

// ---------------------------------------------------------------- encoding

#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    seen: HashMap<String, u32>,
}

impl Strings {
    fn add(&mut self, s: &str) -> (u32, u32) {
        let off = *self.seen.entry(s.to_string()).or_insert_with(|| {
            let off = self.bytes.len() as u32;
            self.bytes.extend_from_slice(s.as_bytes());
            off
        });
        (off, s.len() as u32)
    }
}

fn put(out: &mut Vec<u8>, values: &[u32]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Builds the prefix index and entry table for (normalised pattern, value) pairs.
fn encode_index(strings: &mut Strings, mut pairs: Vec<(String, u32)>) -> (Vec<u8>, Vec<u8>) {
    pairs.sort_by(|a, b| (literal_prefix(&a.0), &a.0, a.1).cmp(&(literal_prefix(&b.0), &b.0, b.1)));
    pairs.dedup();
    let (mut prefixes, mut entries) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < pairs.len() {
        let prefix = literal_prefix(&pairs[i].0);
        let group = pairs[i..].iter().take_while(|(p, _)| literal_prefix(p) == prefix).count();
        let (off, _) = strings.add(prefix);
        put(&mut prefixes, &[off, prefix.len() as u32, i as u32, group as u32]);
        for (pattern, value) in &pairs[i..i + group] {
            // Only the part after the group's prefix is stored: the tails repeat
            // across devices (`sv*sd*bc*sc*i*`), so the string table shares them.
            let (off, len) = strings.add(&pattern[prefix.len()..]);
            put(&mut entries, &[off, len, *value]);
        }
        i += group;
    }
    (prefixes, entries)
}

/// Hard dependencies of `name` within the database, transitively, ordered by
/// depth (a module after everything it needs) and then by name. Depth is the
/// longest dependency chain, which is the same whether `depends` lists direct
/// dependencies (.modinfo) or all of them (modules.dep), so both give one order.
fn load_order(km: &KernelModules, name: &str, depth: &mut HashMap<String, u32>) -> Vec<String> {
    let mut all = BTreeSet::new();
    let mut todo: Vec<&str> =
        km.modules.get(name).map(|m| m.depends.iter().map(String::as_str).collect()).unwrap_or_default();
    while let Some(d) = todo.pop() {
        if let Some(info) = km.modules.get(d)
            && all.insert(d.to_string())
        {
            todo.extend(info.depends.iter().map(String::as_str));
        }
    }
    let mut ordered: Vec<(u32, String)> = all.into_iter().map(|d| (depth_of(km, &d, depth, 0), d)).collect();
    ordered.sort();
    ordered.into_iter().map(|(_, d)| d).collect()
}

fn depth_of(km: &KernelModules, name: &str, memo: &mut HashMap<String, u32>, guard: u32) -> u32 {
    if let Some(d) = memo.get(name) {
        return *d;
    }
    // A dependency cycle is a broken tree; the guard keeps it from recursing forever.
    let d = if guard > 64 {
        0
    } else {
        km.modules
            .get(name)
            .map(|m| {
                m.depends
                    .iter()
                    .filter(|d| km.modules.contains_key(*d))
                    .map(|d| 1 + depth_of(km, d, memo, guard + 1))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    memo.insert(name.to_string(), d);
    d
}

/// Encode the boot-time database for `included` modules of `km`, all in the archive.
/// Each included module's stored path is its uncompressed `.ko` path: mkinitramfs
/// writes decompressed modules. `included` should be closed under
/// [`KernelModules::closure`]; dependencies outside it are left out of the id lists.
/// Names in `included` that are not modules of `km` are ignored.
pub fn encode(km: &KernelModules, included: &BTreeSet<String>) -> Vec<u8> {
    encode_with(km, included, Split::ArchiveOnly, None)
}

/// Where the modules of the kernel that are not in the archive are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Nowhere: the database knows only the archive's (and hints for the others).
    ArchiveOnly,
    /// In the root image's `lib/modules/VERSION`: the database lists every module of the
    /// kernel, those outside the archive flagged, under the path the kernel package
    /// gives them (compressed or not).
    RestInImage,
}

/// [`encode`] with the modules outside `archive` placed as `split` says, plus PCI vendor
/// and device names from the text of `pci.ids`: every vendor, and the devices that PCI
/// aliases of the archive's modules and of [`HINT_DIRS`] name literally.
pub fn encode_with(km: &KernelModules, archive: &BTreeSet<String>, split: Split, pci_ids: Option<&str>) -> Vec<u8> {
    let included: BTreeSet<String> =
        archive.iter().map(|n| normalize_name(n)).filter(|n| km.modules.contains_key(n)).collect();
    let in_image: BTreeSet<String> = match split {
        Split::ArchiveOnly => BTreeSet::new(),
        Split::RestInImage => km.modules.keys().filter(|n| !included.contains(*n)).cloned().collect(),
    };
    // Module ids: the archive's and the image's modules and built-in drivers, by name.
    let mut names: BTreeMap<&str, bool> = km.builtin.keys().map(|n| (n.as_str(), true)).collect();
    names.extend(included.iter().chain(&in_image).map(|n| (n.as_str(), false)));
    let id_of: HashMap<&str, u32> = names.keys().enumerate().map(|(i, n)| (*n, i as u32)).collect();

    let mut strings = Strings::default();
    let kver = strings.add(&km.version);
    let (mut modules, mut ids) = (Vec::new(), Vec::new());
    let mut depth = HashMap::new();
    let id_list = |ids: &mut Vec<u8>, list: Vec<u32>| {
        let start = (ids.len() / 4) as u32;
        put(ids, &list);
        [start, list.len() as u32]
    };
    let (mut alias_pairs, mut image_pairs) = (Vec::new(), Vec::new());
    for (name, builtin) in &names {
        let id = id_of[name];
        let n = strings.add(name);
        if *builtin {
            alias_pairs.extend(km.builtin[*name].iter().filter_map(|a| normalize_alias(a)).map(|a| (a, id)));
            put(&mut modules, &[n.0, n.1, 0, 0, 0, 0, 0, 0, 0, 0, FLAG_BUILTIN]);
            continue;
        }
        let info = &km.modules[*name];
        let image = in_image.contains(*name);
        let p =
            if image { strings.add(&info.path) } else { strings.add(&crate::modinfo::uncompressed_path(&info.path)) };
        let deps: Vec<u32> =
            load_order(km, name, &mut depth).iter().filter_map(|d| id_of.get(d.as_str()).copied()).collect();
        let soft = |list: &[String]| -> Vec<u32> {
            let mut out: Vec<u32> = Vec::new();
            for s in list {
                for m in km.resolve_softdep(s) {
                    if let Some(id) = id_of.get(m.as_str())
                        && !out.contains(id)
                    {
                        out.push(*id);
                    }
                }
            }
            out
        };
        let d = id_list(&mut ids, deps);
        let pre = id_list(&mut ids, soft(&info.softdep_pre));
        let post = id_list(&mut ids, soft(&info.softdep_post));
        let flags = if image { FLAG_IN_IMAGE } else { 0 };
        put(&mut modules, &[n.0, n.1, p.0, p.1, d[0], d[1], pre[0], pre[1], post[0], post[1], flags]);
        let aliases = info.aliases.iter().filter_map(|a| normalize_alias(a)).map(|a| (a, id));
        if image { image_pairs.extend(aliases) } else { alias_pairs.extend(aliases) }
    }

    // Hints: aliases of the modules outside the archive in the directories that matter
    // for netboot.
    // (The image's are in the alias index: [`Db::hint`] finds them there.)
    let hinted: Vec<&str> = km
        .modules
        .values()
        .filter(|m| !included.contains(&m.name) && !in_image.contains(&m.name))
        .filter(|m| HINT_DIRS.iter().any(|d| m.path.starts_with(d)))
        .map(|m| m.name.as_str())
        .collect();
    let mut hint_names = Vec::new();
    let mut hint_pairs = Vec::new();
    for (i, name) in hinted.iter().enumerate() {
        let n = strings.add(name);
        put(&mut hint_names, &[n.0, n.1]);
        hint_pairs.extend(km.modules[*name].aliases.iter().filter_map(|a| normalize_alias(a)).map(|a| (a, i as u32)));
    }

    let (mut vendors, mut devices) = (Vec::new(), Vec::new());
    if let Some(text) = pci_ids {
        let pci = pci_ids::parse(text);
        // Named for the archive's modules and the hints, not for every driver of the
        // image: the names of all the kernel's PCI devices would weigh more than the
        // database itself.
        let by_id: Vec<&str> = names.keys().copied().collect();
        let image_hints = image_pairs.iter().filter(|(_, id)| {
            let module = by_id.get(*id as usize).and_then(|name| km.modules.get(*name));
            module.is_some_and(|m| HINT_DIRS.iter().any(|d| m.path.starts_with(d)))
        });
        let pairs: BTreeSet<(u16, u16)> = alias_pairs
            .iter()
            .chain(&hint_pairs)
            .chain(image_hints)
            .filter_map(|(p, _)| pci_ids::pci_pair_of_alias(p))
            .collect();
        for (vendor, name) in &pci.vendors {
            let s = strings.add(name);
            put(&mut vendors, &[u32::from(*vendor), s.0, s.1]);
        }
        for pair in pairs {
            if let Some(name) = pci.devices.get(&pair) {
                let s = strings.add(name);
                put(&mut devices, &[pci_device_key(pair.0, pair.1), s.0, s.1]);
            }
        }
    }

    alias_pairs.extend(image_pairs);
    let (alias_prefixes, alias_entries) = encode_index(&mut strings, alias_pairs);
    let (hint_prefixes, hint_entries) = encode_index(&mut strings, hint_pairs);

    let bodies: [(Section, Vec<u8>); 11] = [
        (Section::Strings, strings.bytes),
        (Section::Kver, Vec::new()),
        (Section::Modules, modules),
        (Section::Ids, ids),
        (Section::AliasPrefixes, alias_prefixes),
        (Section::AliasEntries, alias_entries),
        (Section::HintPrefixes, hint_prefixes),
        (Section::HintEntries, hint_entries),
        (Section::HintNames, hint_names),
        (Section::PciVendors, vendors),
        (Section::PciDevices, devices),
    ];
    let mut out = Vec::with_capacity(HEADER_SIZE + bodies.iter().map(|(_, b)| b.len()).sum::<usize>());
    out.extend_from_slice(MAGIC);
    put(&mut out, &[FORMAT_VERSION, SECTIONS.len() as u32]);
    let mut offset = HEADER_SIZE;
    for (section, body) in &bodies {
        if *section == Section::Kver {
            put(&mut out, &[kver.0, kver.1]);
        } else {
            put(&mut out, &[offset as u32, (body.len() / section.record_size()) as u32]);
            offset += body.len();
        }
    }
    for (_, body) in &bodies {
        out.extend_from_slice(body);
    }
    out
}

// ---------------------------------------------------------------- reading

/// Index of a module inside a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(pub u32);

/// Why bytes are not a database this reader can use. Each names what is wrong;
/// the fix is always to rebuild the initramfs with this version's mkinitramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// Fewer bytes than the header needs.
    TooShort { len: usize },
    /// The file does not start with the database's magic bytes.
    BadMagic,
    /// Written by a mkinitramfs with another format version.
    UnsupportedVersion { found: u32 },
    /// The header declares another number of sections than this version has.
    SectionCount { found: u32 },
    /// A section reaches past the end of the file.
    SectionOutOfBounds { section: &'static str },
    /// The string table is not UTF-8.
    StringsNotUtf8 { at: usize },
    /// Record `index` of `section` refers to text outside the string table.
    BadString { section: &'static str, index: usize },
    /// Record `index` of `section` refers to a module id, id list or entry range that does not exist.
    BadReference { section: &'static str, index: usize },
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use FormatError::*;
        match self {
            TooShort { len } => write!(f, "module database is truncated ({len} bytes)"),
            BadMagic => write!(f, "not a module database (wrong magic bytes)"),
            UnsupportedVersion { found } => {
                write!(f, "module database has format version {found}, this init reads version {FORMAT_VERSION}")
            }
            SectionCount { found } => write!(f, "module database has {found} sections, expected {}", SECTIONS.len()),
            SectionOutOfBounds { section } => write!(f, "module database is truncated: {section} runs past the end"),
            StringsNotUtf8 { at } => write!(f, "module database string table is damaged at byte {at}"),
            BadString { section, index } => write!(f, "module database {section} record {index} has a bad string"),
            BadReference { section, index } => {
                write!(f, "module database {section} record {index} refers to something that does not exist")
            }
        }?;
        write!(f, "; rebuild the initramfs with mkinitramfs")
    }
}

impl std::error::Error for FormatError {}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A section's records.
#[derive(Clone, Copy)]
struct Table<'a> {
    bytes: &'a [u8],
    size: usize,
}

impl<'a> Table<'a> {
    fn len(&self) -> usize {
        self.bytes.len().checked_div(self.size).unwrap_or(0)
    }
    fn field(&self, index: usize, field: usize) -> u32 {
        u32_at(self.bytes, index * self.size + field * 4)
    }
}

/// Zero-copy reader of the boot-time database. Everything is validated by
/// [`Db::parse`], so queries cannot fail; they also never slice unchecked.
#[derive(Clone, Copy)]
pub struct Db<'a> {
    strings: &'a str,
    kver: &'a str,
    modules: Table<'a>,
    ids: Table<'a>,
    alias_prefixes: Table<'a>,
    alias_entries: Table<'a>,
    hint_prefixes: Table<'a>,
    hint_entries: Table<'a>,
    hint_names: Table<'a>,
    pci_vendors: Table<'a>,
    pci_devices: Table<'a>,
}

/// One module (or built-in driver) of a [`Db`].
#[derive(Clone, Copy)]
pub struct Module<'a> {
    id: ModuleId,
    name: &'a str,
    path: &'a str,
    builtin: bool,
    in_image: bool,
    depends: &'a [u8],
    pre: &'a [u8],
    post: &'a [u8],
}

/// Module ids stored in the database, in stored order.
#[derive(Clone)]
pub struct Ids<'a>(std::slice::ChunksExact<'a, u8>);

impl Iterator for Ids<'_> {
    type Item = ModuleId;
    fn next(&mut self) -> Option<ModuleId> {
        self.0.next().map(|b| ModuleId(u32_at(b, 0)))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Ids<'_> {}

impl<'a> Module<'a> {
    pub fn id(&self) -> ModuleId {
        self.id
    }
    pub fn name(&self) -> &'a str {
        self.name
    }
    /// Path of the `.ko` relative to `lib/modules/VERSION` (of the archive, or of the
    /// image for [`Module::in_image`]); empty for built-in drivers.
    pub fn path(&self) -> &'a str {
        self.path
    }
    pub fn is_builtin(&self) -> bool {
        self.builtin
    }
    /// Whether the file is in the root image's `lib/modules/VERSION` rather than in the
    /// archive: loadable only once the root is mounted.
    pub fn in_image(&self) -> bool {
        self.in_image
    }
    /// All hard dependencies, transitively, in load order (load them first, in this order).
    pub fn depends(&self) -> Ids<'a> {
        Ids(self.depends.chunks_exact(4))
    }
    /// Modules to load before this one if present (not needed for it to load).
    pub fn softdep_pre(&self) -> Ids<'a> {
        Ids(self.pre.chunks_exact(4))
    }
    /// Modules to load after this one if present.
    pub fn softdep_post(&self) -> Ids<'a> {
        Ids(self.post.chunks_exact(4))
    }
}

impl std::fmt::Debug for Module<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("id", &self.id).field("name", &self.name).field("path", &self.path).finish()
    }
}

impl<'a> Db<'a> {
    /// Checks the header and every reference, so that later queries need no checks.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_SIZE {
            return Err(FormatError::TooShort { len: bytes.len() });
        }
        if &bytes[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion { found: version });
        }
        let count = u32_at(bytes, 12);
        if count as usize != SECTIONS.len() {
            return Err(FormatError::SectionCount { found: count });
        }
        let slot = |i: usize| (u32_at(bytes, 16 + i * 8) as usize, u32_at(bytes, 20 + i * 8) as usize);
        let section = |s: Section| -> Result<Table<'a>, FormatError> {
            let (offset, count) = slot(s as usize);
            let size = s.record_size();
            let body = count
                .checked_mul(size)
                .and_then(|len| offset.checked_add(len))
                .and_then(|end| bytes.get(offset..end))
                .ok_or(FormatError::SectionOutOfBounds { section: s.name() })?;
            Ok(Table { bytes: body, size })
        };
        let raw_strings = section(Section::Strings)?.bytes;
        let strings =
            std::str::from_utf8(raw_strings).map_err(|e| FormatError::StringsNotUtf8 { at: e.valid_up_to() })?;
        let string = |off: u32, len: u32| {
            (off as usize).checked_add(len as usize).and_then(|end| strings.get(off as usize..end))
        };
        let (koff, klen) = slot(Section::Kver as usize);
        let kver = string(koff as u32, klen as u32).ok_or(FormatError::BadString { section: "header", index: 0 })?;
        let db = Db {
            strings,
            kver,
            modules: section(Section::Modules)?,
            ids: section(Section::Ids)?,
            alias_prefixes: section(Section::AliasPrefixes)?,
            alias_entries: section(Section::AliasEntries)?,
            hint_prefixes: section(Section::HintPrefixes)?,
            hint_entries: section(Section::HintEntries)?,
            hint_names: section(Section::HintNames)?,
            pci_vendors: section(Section::PciVendors)?,
            pci_devices: section(Section::PciDevices)?,
        };
        db.validate()?;
        Ok(db)
    }

    fn str_ok(&self, table: Table<'_>, index: usize, field: usize) -> bool {
        let (off, len) = (table.field(index, field) as usize, table.field(index, field + 1) as usize);
        off.checked_add(len).and_then(|end| self.strings.get(off..end)).is_some()
    }

    fn validate(&self) -> Result<(), FormatError> {
        let n_modules = self.modules.len();
        let n_ids = self.ids.len();
        let bad_string = |s: Section, index| FormatError::BadString { section: s.name(), index };
        let bad_ref = |s: Section, index| FormatError::BadReference { section: s.name(), index };
        for i in 0..n_modules {
            if !self.str_ok(self.modules, i, 0) || !self.str_ok(self.modules, i, 2) {
                return Err(bad_string(Section::Modules, i));
            }
            for list in [4, 6, 8] {
                let (start, count) = (self.modules.field(i, list) as usize, self.modules.field(i, list + 1) as usize);
                if start.checked_add(count).is_none_or(|end| end > n_ids) {
                    return Err(bad_ref(Section::Modules, i));
                }
            }
        }
        if let Some(i) = (0..n_ids).find(|i| self.ids.field(*i, 0) as usize >= n_modules) {
            return Err(bad_ref(Section::Ids, i));
        }
        let indexes = [
            (Section::AliasPrefixes, self.alias_prefixes, Section::AliasEntries, self.alias_entries, n_modules),
            (Section::HintPrefixes, self.hint_prefixes, Section::HintEntries, self.hint_entries, self.hint_names.len()),
        ];
        for (ps, prefixes, es, entries, n_values) in indexes {
            for i in 0..prefixes.len() {
                if !self.str_ok(prefixes, i, 0) {
                    return Err(bad_string(ps, i));
                }
                let (first, count) = (prefixes.field(i, 2) as usize, prefixes.field(i, 3) as usize);
                if first.checked_add(count).is_none_or(|end| end > entries.len()) {
                    return Err(bad_ref(ps, i));
                }
            }
            for i in 0..entries.len() {
                if !self.str_ok(entries, i, 0) {
                    return Err(bad_string(es, i));
                }
                if entries.field(i, 2) as usize >= n_values {
                    return Err(bad_ref(es, i));
                }
            }
        }
        for (s, table, field) in [
            (Section::HintNames, self.hint_names, 0),
            (Section::PciVendors, self.pci_vendors, 1),
            (Section::PciDevices, self.pci_devices, 1),
        ] {
            if let Some(i) = (0..table.len()).find(|i| !self.str_ok(table, *i, field)) {
                return Err(bad_string(s, i));
            }
        }
        Ok(())
    }

    fn string(&self, table: Table<'_>, index: usize, field: usize) -> &'a str {
        let (off, len) = (table.field(index, field) as usize, table.field(index, field + 1) as usize);
        off.checked_add(len).and_then(|end| self.strings.get(off..end)).unwrap_or("")
    }

    fn ids_slice(&self, start: u32, count: u32) -> &'a [u8] {
        let (start, count) = (start as usize * 4, count as usize * 4);
        start.checked_add(count).and_then(|end| self.ids.bytes.get(start..end)).unwrap_or(&[])
    }

    pub fn kernel_version(&self) -> &'a str {
        self.kver
    }

    /// Number of modules and built-in drivers.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn module(&self, id: ModuleId) -> Option<Module<'a>> {
        let i = id.0 as usize;
        if i >= self.modules.len() {
            return None;
        }
        let m = self.modules;
        Some(Module {
            id,
            name: self.string(m, i, 0),
            path: self.string(m, i, 2),
            builtin: m.field(i, 10) & FLAG_BUILTIN != 0,
            in_image: m.field(i, 10) & FLAG_IN_IMAGE != 0,
            depends: self.ids_slice(m.field(i, 4), m.field(i, 5)),
            pre: self.ids_slice(m.field(i, 6), m.field(i, 7)),
            post: self.ids_slice(m.field(i, 8), m.field(i, 9)),
        })
    }

    /// Every module and built-in driver, in id order (sorted by name).
    pub fn modules(&self) -> impl Iterator<Item = Module<'a>> + '_ {
        (0..self.len() as u32).filter_map(|i| self.module(ModuleId(i)))
    }

    /// The module or built-in driver called `name` (`-` and `_` are the same).
    pub fn find(&self, name: &str) -> Option<ModuleId> {
        let name = normalize_name(name);
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.string(self.modules, mid, 0).cmp(name.as_str()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(ModuleId(mid as u32)),
            }
        }
        None
    }

    /// Values of the entries whose pattern matches `modalias`, deduplicated and sorted.
    fn search(&self, prefixes: Table<'_>, entries: Table<'_>, modalias: &str) -> Vec<u32> {
        let mut found = Vec::new();
        let Some(text) = normalize_alias(modalias) else { return found };
        let n = prefixes.len();
        let prefix_at = |i: usize| self.string(prefixes, i, 0);
        for k in (0..=text.len()).filter(|k| text.is_char_boundary(*k)) {
            let key = &text[..k];
            // First prefix >= key; groups whose prefix starts with `key` follow it.
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if prefix_at(mid) < key { lo = mid + 1 } else { hi = mid }
            }
            if lo < n && prefix_at(lo) == key {
                let (first, count) = (prefixes.field(lo, 2) as usize, prefixes.field(lo, 3) as usize);
                for e in first..first.saturating_add(count).min(entries.len()) {
                    if fnmatch(self.string(entries, e, 0), &text[k..]) {
                        found.push(entries.field(e, 2));
                    }
                }
                lo += 1;
            }
            // No longer prefix can match once no group starts with this one.
            if lo >= n || !prefix_at(lo).starts_with(key) {
                break;
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Modules and built-in drivers with an alias matching `modalias`, in id order.
    pub fn lookup(&self, modalias: &str) -> Vec<ModuleId> {
        self.search(self.alias_prefixes, self.alias_entries, modalias).into_iter().map(ModuleId).collect()
    }

    /// Names of modules of the kernel that were left out of this database but
    /// would bind `modalias` (network, storage and USB drivers only).
    pub fn hint(&self, modalias: &str) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = self
            .search(self.hint_prefixes, self.hint_entries, modalias)
            .into_iter()
            .map(|i| self.string(self.hint_names, i as usize, 0))
            .collect();
        // The image's modules are in the alias index itself: no copy of their aliases.
        let of_image = self
            .lookup(modalias)
            .into_iter()
            .filter_map(|id| self.module(id))
            .filter(|m| m.in_image() && HINT_DIRS.iter().any(|dir| m.path().starts_with(dir)));
        names.extend(of_image.map(|m| m.name()));
        names
    }

    /// Binary search of a table sorted by its first u32.
    fn name_by_key(&self, table: Table<'_>, key: u32) -> Option<&'a str> {
        let (mut lo, mut hi) = (0, table.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match table.field(mid, 0).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.string(table, mid, 1)),
            }
        }
        None
    }

    pub fn pci_vendor_name(&self, vendor: u16) -> Option<&'a str> {
        self.name_by_key(self.pci_vendors, u32::from(vendor))
    }

    pub fn pci_device_name(&self, vendor: u16, device: u16) -> Option<&'a str> {
        self.name_by_key(self.pci_devices, pci_device_key(vendor, device))
    }

    /// Bytes the PCI vendor and device names take in the database (records and text),
    /// so that mkinitramfs can report what pci.ids costs in the initramfs.
    pub fn pci_names_bytes(&self) -> usize {
        let mut names: BTreeSet<(u32, u32)> = BTreeSet::new();
        for table in [self.pci_vendors, self.pci_devices] {
            names.extend((0..table.len()).map(|i| (table.field(i, 1), table.field(i, 2))));
        }
        let text: usize = names.iter().map(|(_, len)| *len as usize).sum();
        self.pci_vendors.bytes.len() + self.pci_devices.bytes.len() + text
    }
}
