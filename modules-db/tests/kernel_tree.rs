//! The build side against the real kernel: what we derive from `.modinfo` must
//! equal what depmod writes, for every module.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use modules_db::{KernelModules, normalize_name};

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap();
    normalize_name(file.split(".ko").next().unwrap())
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// All hard dependencies of `name`, following `depends` transitively.
fn transitive(km: &KernelModules, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = km.modules[name].depends.clone();
    while let Some(d) = todo.pop() {
        if seen.insert(d.clone()) {
            todo.extend(km.modules[&d].depends.iter().cloned());
        }
    }
    seen
}

fn pristine() -> KernelModules {
    let km = KernelModules::load(&common::kernel_basedir(), &common::kernel_version()).expect("load kernel tree");
    assert!(km.modules.len() > 1000, "only {} modules read", km.modules.len());
    km
}

#[test]
fn modinfo_derived_tree_equals_what_depmod_writes() {
    let km = pristine();
    let root = common::depmod_basedir().join("lib/modules").join(common::kernel_version());
    assert_tree_equals_depmod(&km, &root);
}

/// The Debian kernels of the other client architectures: modules of another ELF class
/// (i686: 32-bit) and machine are read as depmod reads them, whatever the host is.
#[test]
fn foreign_architecture_trees_equal_what_depmod_writes() {
    for (arch, class64, machine) in [("i386", false, 3), ("arm64", true, 183), ("ppc64el", true, 21)] {
        let (basedir, version) = common::foreign_kernel(arch);
        let km = KernelModules::load(&basedir, &version).unwrap_or_else(|e| panic!("load {arch} kernel: {e}"));
        assert!(km.modules.len() > 1000, "{arch}: only {} modules read", km.modules.len());
        let first = km.modules.keys().next().unwrap();
        let elf = modules_db::elf::ElfArch::of(&km.module_bytes(first).unwrap()).unwrap();
        assert_eq!((elf.class64, elf.big_endian, elf.machine), (class64, false, machine), "{arch}: module {first}");
        let root = common::depmod_basedir_of(&basedir, &version).join("lib/modules").join(&version);
        println!("{arch} ({version}):");
        assert_tree_equals_depmod(&km, &root);
    }
}

/// Every module's path, dependencies, aliases and softdeps as `km` has them equal
/// depmod's files in `root` (lib/modules/VERSION of a depmod'ed tree).
fn assert_tree_equals_depmod(km: &KernelModules, root: &std::path::Path) {
    // modules.dep: same modules at the same paths; each module's dependency *set*
    // equals the transitive closure of the direct `depends=` from .modinfo
    // (depmod lists all of them, ordered for loading; the order is not compared).
    let mut dep_modules = BTreeSet::new();
    for line in read(&root.join("modules.dep")).lines() {
        let (path, deps) = line.split_once(':').expect("modules.dep line has a colon");
        let name = name_of(path);
        let info = km.modules.get(&name).unwrap_or_else(|| panic!("depmod has {name}, we do not"));
        assert_eq!(info.path, path, "path of {name}");
        let want: BTreeSet<String> = deps.split_whitespace().map(name_of).collect();
        assert_eq!(transitive(km, &name), want, "dependencies of {name}");
        dep_modules.insert(name);
    }
    let ours: BTreeSet<String> = km.modules.keys().cloned().collect();
    assert_eq!(ours, dep_modules, "module sets differ");

    // modules.alias: per module, the same alias patterns with the same multiplicity.
    let mut depmod_aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut count = 0;
    for line in read(&root.join("modules.alias")).lines().filter(|l| !l.starts_with('#')) {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((w.len(), w[0]), (3, "alias"), "modules.alias line {line:?}");
        depmod_aliases.entry(normalize_name(w[2])).or_default().push(w[1].to_string());
        count += 1;
    }
    for (name, info) in &km.modules {
        let mut ours = info.aliases.clone();
        ours.sort();
        let mut want = depmod_aliases.remove(name).unwrap_or_default();
        want.sort();
        assert_eq!(ours, want, "aliases of {name}");
    }
    assert!(depmod_aliases.is_empty(), "depmod has aliases for unknown modules: {:?}", depmod_aliases.keys());
    println!("{} modules, {count} aliases: identical to depmod", km.modules.len());

    // modules.softdep: `softdep NAME pre: ... post: ...`, words before a marker ignored.
    let mut softdeps: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for line in read(&root.join("modules.softdep")).lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("softdep"));
        let entry = softdeps.entry(normalize_name(words.next().unwrap())).or_default();
        let mut list = None;
        for w in words {
            match w {
                "pre:" => list = Some(true),
                "post:" => list = Some(false),
                _ => match list {
                    Some(true) => entry.0.push(w.to_string()),
                    Some(false) => entry.1.push(w.to_string()),
                    None => {}
                },
            }
        }
    }
    assert!(softdeps.len() > 10, "modules.softdep has only {} modules", softdeps.len());
    for (name, info) in &km.modules {
        let want = softdeps.remove(name).unwrap_or_default();
        assert_eq!((info.softdep_pre.clone(), info.softdep_post.clone()), want, "softdeps of {name}");
    }
    assert!(softdeps.is_empty(), "softdeps of unknown modules: {:?}", softdeps.keys());
}

#[test]
fn loading_with_depmod_files_gives_the_same_modules_and_db() {
    let km = pristine();
    let with_depmod =
        KernelModules::load(common::depmod_basedir(), &common::kernel_version()).expect("load depmod tree");
    assert_eq!(km.builtin, with_depmod.builtin);
    assert_eq!(km.modules.len(), with_depmod.modules.len());
    for (name, a) in &km.modules {
        let b = &with_depmod.modules[name];
        assert_eq!(
            (&a.path, &a.firmware, &a.softdep_pre, &a.softdep_post),
            (&b.path, &b.firmware, &b.softdep_pre, &b.softdep_post),
            "{name}"
        );
        let (mut x, mut y) = (a.aliases.clone(), b.aliases.clone());
        x.sort();
        y.sort();
        assert_eq!(x, y, "aliases of {name}");
        assert_eq!(transitive(&km, name), transitive(&with_depmod, name), "dependencies of {name}");
    }
    let all: BTreeSet<String> = km.modules.keys().cloned().collect();
    assert!(modules_db::encode(&km, &all) == modules_db::encode(&with_depmod, &all), "encoded databases differ");
}

#[test]
fn builtin_drivers_and_their_aliases_are_known() {
    let km = pristine();
    assert!(km.builtin.len() > 50, "only {} built-in names", km.builtin.len());
    let aliases: usize = km.builtin.values().map(Vec::len).sum();
    assert!(aliases > 0, "no aliases of built-in drivers read");
    assert!(km.builtin.values().flatten().any(|a| a == "platform:rtc_cmos"), "rtc_cmos alias missing");
}

#[test]
fn netboot_closure_pulls_in_dependencies_and_softdeps() {
    let km = pristine();
    let set = km.closure(["virtio_net", "nfsv4", "e1000e"]).expect("closure");
    for needed in ["virtio_ring", "virtio", "net_failover", "failover", "sunrpc", "nfs", "lockd"] {
        assert!(set.contains(needed), "{needed} missing from {set:?}");
    }
    // Every hard dependency of every member is a member (or built in).
    for m in &set {
        for d in &km.modules[m].depends {
            assert!(set.contains(d) || km.builtin.contains_key(d), "{m} needs {d}");
        }
    }
    let err = km.closure(["virtio_net", "no_such_module_x"]).unwrap_err();
    assert!(err.to_string().contains("no_such_module_x"), "{err}");
    let builtin = km.builtin.keys().next().unwrap().clone();
    assert!(km.closure([builtin.as_str()]).unwrap().is_empty(), "built-in {builtin} not dropped");
}

#[test]
fn module_bytes_are_the_elf_file() {
    let km = pristine();
    let bytes = km.module_bytes("virtio-net").expect("virtio_net bytes");
    assert_eq!(&bytes[..4], b"\x7fELF");
    let on_disk = std::fs::read(km.root.join(&km.modules["virtio_net"].path)).unwrap();
    assert_eq!(bytes, on_disk);
    assert!(km.module_bytes("no_such").is_err());
}

#[test]
fn a_missing_kernel_version_names_the_versions_present() {
    let err = KernelModules::load(&common::kernel_basedir(), "0.0.0-none").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("0.0.0-none") && msg.contains(&common::kernel_version()), "{msg}");
}
