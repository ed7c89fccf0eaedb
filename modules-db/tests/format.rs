//! The boot-time format on a small synthetic kernel: round trip, queries, and
//! that damaged bytes are an error, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use modules_db::{Db, FormatError, KernelModules, ModuleId, ModuleInfo, Split, encode, encode_with};
use proptest::prelude::*;

fn module(name: &str, path: &str, depends: &[&str], pre: &[&str], post: &[&str], aliases: &[&str]) -> ModuleInfo {
    let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
    ModuleInfo {
        name: name.to_string(),
        path: path.to_string(),
        depends: strings(depends),
        softdep_pre: strings(pre),
        softdep_post: strings(post),
        firmware: Vec::new(),
        aliases: strings(aliases),
    }
}

fn kernel() -> KernelModules {
    let modules = [
        module(
            "virtio_net",
            "kernel/drivers/net/virtio_net.ko.xz",
            &["net_failover", "virtio"],
            &[],
            &[],
            &["virtio:d00000001v*"],
        ),
        module("net_failover", "kernel/drivers/net/net_failover.ko", &["failover"], &[], &[], &[]),
        module("failover", "kernel/net/core/failover.ko.zst", &[], &[], &[], &[]),
        module("virtio", "kernel/drivers/virtio/virtio.ko", &[], &[], &[], &[]),
        module(
            "e1000",
            "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
            &[],
            &[],
            &[],
            &["pci:v00008086d0000100Esv*sd*bc*sc*i*", "pci:v00008086d0000100Fsv*sd*bc*sc*i*"],
        ),
        module(
            "ahci",
            "kernel/drivers/ata/ahci.ko",
            &["libahci"],
            &["crypto-crc32c"],
            &["platform:leds-gpio"],
            &["pci:v*d*sv*sd*bc01sc06i01*"],
        ),
        module("libahci", "kernel/drivers/ata/libahci.ko", &[], &[], &[], &[]),
        module("crc32c_generic", "kernel/crypto/crc32c_generic.ko", &[], &[], &[], &["crypto-crc32c", "crc32c"]),
        module("leds_gpio", "kernel/drivers/leds/leds-gpio.ko", &[], &[], &[], &["platform:leds-gpio"]),
        module(
            "rtl8139too",
            "kernel/drivers/net/ethernet/realtek/8139too.ko",
            &[],
            &[],
            &[],
            &["pci:v000010ECd00008139sv*sd*bc*sc*i*"],
        ),
        module("snd_x", "kernel/sound/snd-x.ko", &[], &[], &[], &["pci:v000010ECd00008139sv*sd*bc*sc*i*"]),
    ];
    KernelModules {
        version: "6.1.0-test".to_string(),
        root: PathBuf::from("/nonexistent"),
        modules: modules.into_iter().map(|m| (m.name.clone(), m)).collect(),
        builtin: BTreeMap::from([
            ("rtc_cmos".to_string(), vec!["platform:rtc_cmos".to_string()]),
            ("ext4".to_string(), vec![]),
        ]),
    }
}

fn included() -> BTreeSet<String> {
    kernel().closure(["virtio_net", "e1000", "ahci"]).unwrap()
}

const PCI_IDS: &str = "8086  Intel Corporation\n\t100e  82540EM Gigabit Ethernet Controller\n\t1234  Not in any alias\n10ec  Realtek Semiconductor Co., Ltd.\n\t8139  RTL-8100/8101L/8139 PCI Fast Ethernet Adapter\n";

fn names(db: &Db, ids: &[ModuleId]) -> Vec<String> {
    ids.iter().map(|id| db.module(*id).unwrap().name().to_string()).collect()
}

#[test]
fn round_trip_keeps_modules_paths_and_flags() {
    let km = kernel();
    let bytes = encode(&km, &included());
    let db = Db::parse(&bytes).unwrap();
    assert_eq!(db.kernel_version(), "6.1.0-test");
    let in_db: BTreeSet<String> = db.modules().map(|m| m.name().to_string()).collect();
    let mut want = included();
    want.extend(km.builtin.keys().cloned());
    assert_eq!(in_db, want);
    assert_eq!(db.len(), want.len());
    let vn = db.module(db.find("virtio-net").unwrap()).unwrap();
    assert_eq!(vn.path(), "kernel/drivers/net/virtio_net.ko", "stored path is the uncompressed one");
    assert!(!vn.is_builtin());
    let rtc = db.module(db.find("rtc_cmos").unwrap()).unwrap();
    assert!(rtc.is_builtin());
    assert_eq!(rtc.path(), "");
    assert!(db.find("e1000e").is_none());
    assert!(db.module(ModuleId(db.len() as u32)).is_none());
}

#[test]
fn depends_are_transitive_in_load_order() {
    let bytes = encode(&kernel(), &included());
    let db = Db::parse(&bytes).unwrap();
    let vn = db.module(db.find("virtio_net").unwrap()).unwrap();
    let deps: Vec<ModuleId> = vn.depends().collect();
    let deps = names(&db, &deps);
    assert_eq!(deps.len(), 3, "{deps:?}");
    let pos = |n: &str| deps.iter().position(|d| d == n).unwrap_or_else(|| panic!("{n} not in {deps:?}"));
    assert!(pos("failover") < pos("net_failover"), "{deps:?}");
    assert!(deps.contains(&"virtio".to_string()));
}

#[test]
fn softdeps_given_as_aliases_resolve_to_included_modules() {
    let bytes = encode(&kernel(), &included());
    let db = Db::parse(&bytes).unwrap();
    let ahci = db.module(db.find("ahci").unwrap()).unwrap();
    assert_eq!(names(&db, &ahci.softdep_pre().collect::<Vec<_>>()), ["crc32c_generic"]);
    assert_eq!(names(&db, &ahci.softdep_post().collect::<Vec<_>>()), ["leds_gpio"]);
}

#[test]
fn lookup_matches_included_and_builtin_aliases_only() {
    let bytes = encode(&kernel(), &included());
    let db = Db::parse(&bytes).unwrap();
    let l = |a: &str| names(&db, &db.lookup(a));
    assert_eq!(l("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"), ["e1000"]);
    assert_eq!(l("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"), ["ahci"]);
    assert_eq!(l("virtio:d00000001v00001AF4"), ["virtio_net"]);
    assert_eq!(l("platform:rtc_cmos"), ["rtc_cmos"]);
    assert_eq!(l("platform:leds-gpio"), ["leds_gpio"], "dashes and underscores are the same");
    assert!(l("pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00").is_empty(), "8139too was left out");
    assert!(l("").is_empty());
    assert!(l("x[").is_empty());
}

#[test]
fn hints_name_left_out_drivers_only_under_hint_dirs() {
    let bytes = encode(&kernel(), &included());
    let db = Db::parse(&bytes).unwrap();
    // snd_x has the same alias but lives under sound/: not a hint.
    assert_eq!(db.hint("pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00"), ["rtl8139too"]);
    assert!(db.hint("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00").is_empty(), "e1000 is included");
}

#[test]
fn pci_names_keep_all_vendors_and_only_aliased_devices() {
    let km = kernel();
    let without = encode(&km, &included());
    let bytes = encode_with(&km, &included(), Split::ArchiveOnly, Some(PCI_IDS));
    assert!(bytes.len() > without.len());
    let db = Db::parse(&bytes).unwrap();
    assert_eq!(db.pci_vendor_name(0x8086), Some("Intel Corporation"));
    assert_eq!(db.pci_vendor_name(0x10ec), Some("Realtek Semiconductor Co., Ltd."));
    assert_eq!(db.pci_device_name(0x8086, 0x100e), Some("82540EM Gigabit Ethernet Controller"));
    assert_eq!(
        db.pci_device_name(0x10ec, 0x8139),
        Some("RTL-8100/8101L/8139 PCI Fast Ethernet Adapter"),
        "hinted alias"
    );
    assert_eq!(db.pci_device_name(0x8086, 0x1234), None, "no alias names it");
    assert_eq!(db.pci_vendor_name(0x1af4), None);
    assert_eq!(Db::parse(&without).unwrap().pci_vendor_name(0x8086), None);
    assert_eq!(Db::parse(&without).unwrap().pci_names_bytes(), 0);
    // The names account for the whole difference: they share no text with the rest.
    assert_eq!(db.pci_names_bytes(), bytes.len() - without.len());
}

#[test]
fn encoding_is_deterministic() {
    assert_eq!(
        encode_with(&kernel(), &included(), Split::ArchiveOnly, Some(PCI_IDS)),
        encode_with(&kernel(), &included(), Split::ArchiveOnly, Some(PCI_IDS))
    );
}

#[test]
fn header_damage_is_reported_by_kind() {
    let bytes = encode(&kernel(), &included());
    assert_eq!(Db::parse(&bytes[..10]).err(), Some(FormatError::TooShort { len: 10 }));
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(Db::parse(&bad).err(), Some(FormatError::BadMagic));
    let mut bad = bytes.clone();
    bad[8] = 99;
    assert_eq!(Db::parse(&bad).err(), Some(FormatError::UnsupportedVersion { found: 99 }));
    let err = Db::parse(&bytes[..bytes.len() - 1]).err().expect("truncated db accepted");
    assert!(matches!(err, FormatError::SectionOutOfBounds { .. }), "{err:?}");
    assert!(err.to_string().contains("mkinitramfs"), "{err}");
}

/// Runs every query a booting init makes; none may panic on any accepted db.
fn exercise(db: &Db) {
    let _ = db.kernel_version();
    for m in db.modules() {
        let _ = (m.name(), m.path(), m.is_builtin());
        for id in m.depends().chain(m.softdep_pre()).chain(m.softdep_post()) {
            assert!(db.module(id).is_some(), "dangling id {id:?} in an accepted db");
        }
        let _ = db.find(m.name());
    }
    for a in
        ["pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", "virtio:d00000001v00001AF4", "platform:rtc_cmos", ""]
    {
        for id in db.lookup(a) {
            assert!(db.module(id).is_some());
        }
        let _ = db.hint(a);
    }
    let _ = (db.pci_vendor_name(0x8086), db.pci_device_name(0x8086, 0x100e));
}

proptest! {
    #[test]
    fn random_mutations_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = encode_with(&kernel(), &included(), Split::ArchiveOnly, Some(PCI_IDS));
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        let keep = bytes.len() - cut % 8;
        if let Ok(db) = Db::parse(&bytes[..keep]) {
            exercise(&db);
        }
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..400)) {
        let good = encode(&kernel(), &included());
        let mut bytes = good[..16].to_vec();
        bytes.extend(tail);
        if let Ok(db) = Db::parse(&bytes) {
            exercise(&db);
        }
    }
}

#[test]
fn rest_in_image_lists_every_module_with_the_image_ones_flagged_under_their_package_paths() {
    let km = kernel();
    let archive = km.closure(["virtio_net"]).unwrap();
    let bytes = encode_with(&km, &archive, Split::RestInImage, None);
    let db = Db::parse(&bytes).unwrap();
    assert_eq!(db.len(), km.modules.len() + km.builtin.len(), "every module of the kernel is known");
    let module = |name: &str| db.module(db.find(name).unwrap()).unwrap();
    let vn = module("virtio_net");
    assert!(!vn.in_image() && vn.path() == "kernel/drivers/net/virtio_net.ko", "archive: decompressed path");
    let failover = module("failover");
    assert!(!failover.in_image(), "a dependency of the archive's module is in the archive");
    let ahci = module("ahci");
    assert!(ahci.in_image(), "ahci is loaded from the image");
    assert_eq!(ahci.path(), "kernel/drivers/ata/ahci.ko");
    assert_eq!(names(&db, &ahci.depends().collect::<Vec<_>>()), ["libahci"]);
    assert_eq!(
        names(&db, &db.lookup("pci:v00001234d00005678sv0sd0bc01sc06i01")),
        ["ahci"],
        "the image's modules are matched like the archive's"
    );
    assert!(!module("rtc_cmos").in_image(), "built-in drivers are never in the image");
    // A compressed file of the image keeps its name: the kernel decompresses it.
    let archive = km.closure(["e1000"]).unwrap();
    let bytes = encode_with(&km, &archive, Split::RestInImage, None);
    let db = Db::parse(&bytes).unwrap();
    let failover = db.module(db.find("failover").unwrap()).unwrap();
    assert!(failover.in_image() && failover.path() == "kernel/net/core/failover.ko.zst");
}

#[test]
fn a_module_of_the_image_in_a_hint_directory_is_a_hint_without_a_second_copy_of_its_aliases() {
    let km = kernel();
    let archive = km.closure(["virtio_net"]).unwrap();
    let split = encode_with(&km, &archive, Split::RestInImage, None);
    let db = Db::parse(&split).unwrap();
    assert_eq!(db.hint("pci:v000010ECd00008139sv0sd0bc02sc00i00"), ["rtl8139too"], "drivers/net: a hint");
    assert!(db.hint("platform:leds-gpio").is_empty(), "drivers/leds is no hint directory");
    let archive_only = encode_with(&km, &archive, Split::ArchiveOnly, None);
    assert_eq!(Db::parse(&archive_only).unwrap().hint("pci:v000010ECd00008139sv0sd0bc02sc00i00"), ["rtl8139too"]);
}
