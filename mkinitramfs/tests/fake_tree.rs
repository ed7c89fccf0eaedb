//! The mkinitramfs binary against small kernel trees made in temp dirs:
//! error messages name what is wrong, and a good tree builds a complete archive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use initramfs::EntryKind;

const VERSION: &str = "6.1.0-test";

/// An "init": an x86-64 ELF header (what mkinitramfs checks against the modules'
/// architecture) and nothing behind it.
fn fake_init() -> Vec<u8> {
    let x86_64 = modules_db::elf::ARCHITECTURES[0].0;
    [&x86_64.identity_header()[..], b"fake init"].concat()
}

/// A minimal relocatable ELF64 object with a `.modinfo` section holding `pairs`.
fn module_elf(pairs: &[&str]) -> Vec<u8> {
    let mut modinfo = Vec::new();
    for pair in pairs {
        modinfo.extend_from_slice(pair.as_bytes());
        modinfo.push(0);
    }
    let shstrtab = b"\0.modinfo\0.shstrtab\0";
    let modinfo_offset = 64u64;
    let shstrtab_offset = modinfo_offset + modinfo.len() as u64;
    let section_headers = (shstrtab_offset + shstrtab.len() as u64).next_multiple_of(8);

    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&1u16.to_le_bytes()); // ET_REL
    elf.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes()); // entry
    elf.extend_from_slice(&0u64.to_le_bytes()); // phoff
    elf.extend_from_slice(&section_headers.to_le_bytes());
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 0, 0, 64, 3, 2] {
        // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&modinfo);
    elf.extend_from_slice(shstrtab);
    elf.resize(section_headers as usize, 0);
    let mut section = |name: u32, kind: u32, flags: u64, offset: u64, size: u64| {
        elf.extend_from_slice(&name.to_le_bytes());
        elf.extend_from_slice(&kind.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        elf.extend_from_slice(&0u64.to_le_bytes()); // addr
        elf.extend_from_slice(&offset.to_le_bytes());
        elf.extend_from_slice(&size.to_le_bytes());
        elf.extend_from_slice(&0u32.to_le_bytes()); // link
        elf.extend_from_slice(&0u32.to_le_bytes()); // info
        elf.extend_from_slice(&1u64.to_le_bytes()); // addralign
        elf.extend_from_slice(&0u64.to_le_bytes()); // entsize
    };
    section(0, 0, 0, 0, 0);
    section(1, 1, 2, modinfo_offset, modinfo.len() as u64); // .modinfo, PROGBITS, ALLOC
    section(10, 3, 0, shstrtab_offset, shstrtab.len() as u64); // .shstrtab, STRTAB
    elf
}

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    /// A kernel with one NIC driver (needing a library and firmware), one filesystem and
    /// one unrelated sound module, plus a fake init binary.
    fn new() -> Tree {
        let tree = Tree { dir: tempfile::tempdir().unwrap() };
        tree.module(
            "kernel/drivers/net/ethernet/fake/fakenic.ko",
            &[
                "name=fakenic",
                "depends=fakemii",
                "firmware=fake/nic.bin",
                "firmware=fake/absent.bin",
                "alias=pci:v00001234d00005678sv*sd*bc*sc*i*",
            ],
        );
        tree.module("kernel/drivers/net/fakemii.ko", &["name=fakemii", "depends="]);
        tree.module("kernel/fs/ext4/ext4.ko", &["name=ext4", "depends=", "alias=fs-ext4"]);
        tree.module("kernel/sound/fakesnd.ko", &["name=fakesnd", "depends="]);
        let firmware = tree.path("lib/firmware/fake");
        std::fs::create_dir_all(&firmware).unwrap();
        std::fs::write(firmware.join("nic.bin"), b"firmware blob").unwrap();
        std::fs::write(tree.path("init"), fake_init()).unwrap();
        tree
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn module(&self, relative: &str, pairs: &[&str]) {
        let path = self.path(&format!("lib/modules/{VERSION}/{relative}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, module_elf(pairs)).unwrap();
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec![
            "-b".into(),
            self.dir.path().display().to_string(),
            "--init".into(),
            self.path("init").display().to_string(),
            "-o".into(),
            self.path("out.img").display().to_string(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        if !extra.iter().any(|arg| arg.starts_with("6.") || *arg == "--help") {
            args.push(VERSION.into());
        }
        mkinitramfs(&args, &[])
    }
}

fn mkinitramfs(args: &[String], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mkinitramfs"))
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_fails_with(output: &Output, needles: &[&str]) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "expected exit 1, stderr: {text}");
    assert!(text.starts_with("mkinitramfs: error: "), "{text}");
    for needle in needles {
        assert!(text.contains(needle), "stderr lacks {needle:?}: {text}");
    }
}

fn read_entries(path: &Path) -> Vec<initramfs::Entry> {
    initramfs::read_archive(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn good_tree_builds_archive_with_profile_modules_dependencies_and_firmware() {
    let tree = Tree::new();
    let output = tree.run(&["--compress", "gzip"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(
        summary.contains(
            "kernel 6.1.0-test, profile netboot: 2 modules, firmware 1 included / 1 missing; 2 more modules load \
             from the image's /lib/modules/6.1.0-test (--modules-in-archive network)"
        ),
        "{summary}"
    );
    assert!(summary.contains("missing firmware:\n  fake/absent.bin"), "{summary}");
    assert!(summary.contains("(gzip)"), "{summary}");
    assert!(summary.contains(&tree.path("out.img").display().to_string()), "{summary}");

    let entries = read_entries(&tree.path("out.img"));
    let find = |path: &str| entries.iter().find(|entry| entry.path == path);
    let modules = format!("lib/modules/{VERSION}");
    assert!(find(&format!("{modules}/kernel/drivers/net/ethernet/fake/fakenic.ko")).is_some());
    assert!(find(&format!("{modules}/kernel/drivers/net/fakemii.ko")).is_some(), "dependency included");
    assert!(find(&format!("{modules}/kernel/fs/ext4/ext4.ko")).is_none(), "a filesystem loads from the image");
    assert!(find(&format!("{modules}/kernel/sound/fakesnd.ko")).is_none(), "not in the netboot profile");
    let EntryKind::File(db) = &find(&format!("{modules}/modules.db")).unwrap().kind else { panic!("no database") };
    let db = modules_db::Db::parse(db).unwrap();
    let module = |name: &str| db.module(db.find(name).expect(name)).unwrap();
    assert!(module("ext4").in_image() && module("fakesnd").in_image(), "every module of the kernel is known");
    assert!(!module("fakenic").in_image());
    assert_eq!(find("lib/firmware/fake/nic.bin").unwrap().kind, EntryKind::File(b"firmware blob".to_vec()));
    assert_eq!(find("init").unwrap().kind, EntryKind::File(fake_init()));
    assert_eq!(find("dev/console").unwrap().kind, EntryKind::CharDevice { major: 5, minor: 1 });
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tree.path("out.img")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "TFTP servers need a world-readable image");
}

#[test]
fn modules_in_archive_all_is_the_whole_profile_in_the_archive() {
    let tree = Tree::new();
    let output = tree.run(&["--modules-in-archive", "all", "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = read_entries(&tree.path("out.img"));
    let has = |name: &str| entries.iter().any(|entry| entry.path.ends_with(name));
    assert!(has("ext4.ko") && has("fakenic.ko") && !has("fakesnd.ko"), "the netboot profile as before");
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(summary.contains("(--modules-in-archive all)"), "{summary}");
    assert_fails_with(&tree.run(&["--modules-in-archive", "disks"]), &["--modules-in-archive \"disks\""]);
}

#[test]
fn profile_all_and_add_modules_take_more() {
    let tree = Tree::new();
    let output = tree.run(&["--profile", "all", "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(read_entries(&tree.path("out.img")).iter().any(|entry| entry.path.ends_with("fakesnd.ko")));
    let output = tree.run(&["--add-modules", "fakesnd", "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(read_entries(&tree.path("out.img")).iter().any(|entry| entry.path.ends_with("fakesnd.ko")));
}

#[test]
fn default_profile_leaves_out_a_datacentre_nic_yet_its_database_names_it_and_netboot_all_keeps_it() {
    let tree = Tree::new();
    let alias = "pci:v000015B3d00001017sv*sd*bc*sc*i*";
    tree.module(
        "kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko",
        &["name=mlx5_core", "depends=", &format!("alias={alias}")],
    );
    let connectx5 = "pci:v000015B3d00001017sv000015B3sd00000007bc02sc00i00";
    let output = tree.run(&["--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(
        summary.contains("datacentre NIC drivers left out (1; --profile netboot-all keeps them): mlx5_core"),
        "{summary}"
    );
    let entries = read_entries(&tree.path("out.img"));
    assert!(!entries.iter().any(|entry| entry.path.ends_with("mlx5_core.ko")));
    assert!(entries.iter().any(|entry| entry.path.ends_with("fakenic.ko")), "other NICs stay");
    let db_path = format!("lib/modules/{VERSION}/modules.db");
    let db_entry = entries.iter().find(|entry| entry.path == db_path).unwrap();
    let EntryKind::File(db_bytes) = &db_entry.kind else { panic!("{db_path} is no file") };
    let db = modules_db::Db::parse(db_bytes).unwrap();
    assert_eq!(db.hint(connectx5), ["mlx5_core"], "init can name the left-out driver");

    let output = tree.run(&["--profile", "netboot-all", "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!String::from_utf8(output.stdout).unwrap().contains("left out"));
    let entries = read_entries(&tree.path("out.img"));
    assert!(entries.iter().any(|entry| entry.path.ends_with("mlx5_core.ko")));
    assert!(entries.iter().any(|entry| entry.path.ends_with("fakenic.ko")));
}

#[test]
fn omit_modules_removes_the_module_and_what_only_it_needed() {
    let tree = Tree::new();
    let output = tree.run(&["--omit-modules", "fakenic", "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = read_entries(&tree.path("out.img"));
    assert!(!entries.iter().any(|entry| entry.path.ends_with("fakenic.ko")));
    assert!(!entries.iter().any(|entry| entry.path.ends_with("fakemii.ko")));
    assert!(!entries.iter().any(|entry| entry.path.starts_with("lib/firmware/")));
    let output = tree.run(&["--omit-modules", "ext4", "--modules-in-archive", "all", "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = read_entries(&tree.path("out.img"));
    assert!(!entries.iter().any(|entry| entry.path.ends_with("ext4.ko")));
    assert!(entries.iter().any(|entry| entry.path.ends_with("fakenic.ko")));
}

/// A fleet file whose one machine boots with `module`.
fn fleet_file(tree: &Tree, module: &str) -> String {
    let path = tree.path("fleet.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\n[[machine]]\nname = \"pc1\"\nmac = \"52:54:00:00:00:01\"\n[[machine.nic]]\nbus = \"pci\"\n\
             modalias = \"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\"\nmodule = \"{module}\"\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn a_fleet_build_has_exactly_the_fleets_nic_drivers_and_records_the_fleet() {
    let tree = Tree::new();
    tree.module(
        "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
        &["name=e1000", "depends=", "alias=pci:v00008086d0000100Esv*sd*bc*sc*i*"],
    );
    let fleet = fleet_file(&tree, "e1000");
    let output = tree.run(&["--fleet", &fleet, "--compress", "none"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        summary.contains(&format!(
            "fleet {fleet} (1 machines): NIC drivers e1000; 1 other NIC drivers of the profile left out"
        )),
        "{summary}"
    );
    let entries = read_entries(&tree.path("out.img"));
    let has = |name: &str| entries.iter().any(|entry| entry.path.ends_with(name));
    assert!(has("e1000.ko") && !has("ext4.ko"), "the fleet's NIC driver, the filesystems in the image");
    assert!(!has("fakenic.ko") && !has("fakemii.ko"), "no other NIC driver");
    let marker = entries.iter().find(|e| e.path == format!("lib/modules/{VERSION}/diskless.fleet")).expect("marker");
    assert_eq!(marker.kind.body(), format!("{fleet} (1 machines)\n").as_bytes());

    let bad = fleet_file(&tree, "igc");
    assert_fails_with(&tree.run(&["--fleet", &bad]), &["--fleet: this kernel has no module igc"]);
    std::fs::write(tree.path("fleet.toml"), "version = 7\n").unwrap();
    assert_fails_with(&tree.run(&["--fleet", &bad]), &["fleet file", "version 7"]);
    assert_fails_with(&tree.run(&["--fleet", "/nonexistent/fleet.toml"]), &["diskless inventory -o"]);
}

#[test]
fn missing_kernel_directory_names_the_path_and_the_versions_present() {
    let tree = Tree::new();
    let output = tree.run(&["6.9.9-absent"]);
    let expected = tree.path("lib/modules/6.9.9-absent");
    assert_fails_with(&output, &[&expected.display().to_string(), VERSION]);
}

#[test]
fn unknown_added_module_is_named() {
    let tree = Tree::new();
    assert_fails_with(&tree.run(&["--add-modules", "ext4,no_such_driver"]), &["no_such_driver"]);
}

#[test]
fn unknown_omitted_module_is_named() {
    let tree = Tree::new();
    assert_fails_with(&tree.run(&["--omit-modules", "8139too"]), &["8139too"]);
}

#[test]
fn corrupt_module_file_is_named() {
    let tree = Tree::new();
    let bad = tree.path(&format!("lib/modules/{VERSION}/kernel/drivers/net/ethernet/fake/broken.ko"));
    let mut bytes = module_elf(&["name=broken"]);
    bytes.truncate(100);
    std::fs::write(&bad, bytes).unwrap();
    assert_fails_with(&tree.run(&[]), &["broken.ko"]);
}

#[test]
fn missing_init_binary_is_named() {
    let tree = Tree::new();
    std::fs::remove_file(tree.path("init")).unwrap();
    assert_fails_with(&tree.run(&[]), &[&tree.path("init").display().to_string()]);
}

#[test]
fn unwritable_output_is_named_and_nothing_is_left_behind() {
    let tree = Tree::new();
    let out = tree.path("missing-dir/initrd.img");
    let init = tree.path("init");
    let args = [
        "-b",
        tree.dir.path().to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        VERSION,
    ];
    let output = mkinitramfs(&args.map(str::to_string), &[]);
    assert_fails_with(&output, &[out.to_str().unwrap()]);
    assert!(!tree.path("missing-dir").exists());
}

#[test]
fn bad_arguments_fail_with_usage_hint() {
    assert_fails_with(&mkinitramfs(&["--compress".into(), "lz4".into()], &[]), &["lz4"]);
    assert_fails_with(&mkinitramfs(&["--bogus".into()], &[]), &["--bogus"]);
    let help = mkinitramfs(&["--help".into()], &[]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--omit-modules"));
}

#[test]
fn same_input_gives_identical_bytes_and_source_date_epoch_sets_mtimes() {
    let tree = Tree::new();
    let init = tree.path("init");
    let base = ["-b", tree.dir.path().to_str().unwrap(), "--init", init.to_str().unwrap(), VERSION];
    let build = |name: &str, env: &[(&str, &str)]| {
        let out = tree.path(name);
        let mut args: Vec<String> = base.iter().map(|arg| arg.to_string()).collect();
        args.extend(["-o".to_string(), out.display().to_string()]);
        let output = mkinitramfs(&args, env);
        assert!(output.status.success(), "{}", stderr(&output));
        std::fs::read(out).unwrap()
    };
    let first = build("a.img", &[]);
    let second = build("b.img", &[]);
    assert!(first == second, "two builds differ");
    let dated = build("c.img", &[("SOURCE_DATE_EPOCH", "1700000000")]);
    let entries = initramfs::read_archive(&dated).unwrap();
    assert!(entries.iter().all(|entry| entry.mtime == 1_700_000_000));
    assert!(initramfs::read_archive(&first).unwrap().iter().all(|entry| entry.mtime == 0));
}

#[test]
fn list_shows_entries_and_names_a_corrupt_file() {
    let tree = Tree::new();
    assert!(tree.run(&[]).status.success());
    let output = mkinitramfs(&["list".into(), tree.path("out.img").display().to_string()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let listing = String::from_utf8(output.stdout).unwrap();
    assert!(listing.lines().any(|line| line.starts_with("crw-------") && line.ends_with(" dev/console")), "{listing}");
    assert!(listing.lines().any(|line| line.starts_with("-rwxr-xr-x") && line.ends_with(" init")), "{listing}");
    assert!(listing.lines().last().unwrap().contains(" entries: "), "{listing}");

    std::fs::write(tree.path("junk.img"), b"this is no initramfs").unwrap();
    let output = mkinitramfs(&["list".into(), tree.path("junk.img").display().to_string()], &[]);
    assert_fails_with(&output, &["junk.img", "offset 0"]);
}

#[test]
fn an_init_of_another_architecture_than_the_kernel_is_refused_naming_both() {
    let tree = Tree::new();
    let aarch64 = modules_db::elf::ARCHITECTURES.iter().find(|(arch, _, _)| arch.machine == 183).unwrap().0;
    std::fs::write(tree.path("init"), aarch64.identity_header()).unwrap();
    assert_fails_with(
        &tree.run(&[]),
        &["aarch64 (ARM64)", "is x86-64", &tree.path("init").display().to_string(), "qemu/build-inits"],
    );
    assert!(!tree.path("out.img").exists());
}

#[test]
fn an_init_that_is_no_elf_executable_is_refused() {
    let tree = Tree::new();
    std::fs::write(tree.path("init"), b"#!/bin/sh\nexec /sbin/init\n").unwrap();
    assert_fails_with(&tree.run(&[]), &["not an ELF file", &tree.path("init").display().to_string()]);
}
