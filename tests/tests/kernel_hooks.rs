//! The kernel hooks `diskless setup` installs, run as Debian's kernel packages run them,
//! in a chroot of a copy of the Debian test image (`qemu/build-images debian`; needs
//! root, no QEMU).
//!
//! The cached kernel's files (`qemu/setup` unpacked its package) are copied into the
//! copy's `/boot` and `/lib/modules` through the image's merged-/usr links, as dpkg's
//! unpack puts them, diskless's `mkinitramfs` and `init` go to `/usr/lib/diskless`, and the
//! hooks run through `diskless chroot` exactly as the package's maintainer scripts call
//! them: `DEB_MAINT_PARAMS="configure" run-parts --report --exit-on-error
//! --arg=VERSION --arg=/boot/vmlinuz-VERSION /etc/kernel/postinst.d` (postrm.d with
//! `remove`). The initrd must appear at `/boot/initrd.img-VERSION`, hold that kernel's
//! modules and diskless's init, and go again on removal.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use qemu_tests::build::release_binaries;
use qemu_tests::kernel::Kernel;
use qemu_tests::nfs::image_copy;

/// Copies the cached kernel's `/boot` and `/lib/modules/VERSION` into the image. Not
/// `dpkg-deb -x` into the image: tar replaces the image's `/lib -> usr/lib` link by a
/// directory, where dpkg follows it.
fn install_kernel_files(kernel: &Kernel, img: &Path) {
    let modules = format!("lib/modules/{}", kernel.version);
    for dir in ["boot", modules.as_str()] {
        std::fs::create_dir_all(img.join(dir)).unwrap_or_else(|e| panic!("{}/{dir}: {e}", img.display()));
        run_ok(Command::new("cp").arg("-a").arg(kernel.basedir.join(dir).join(".")).arg(img.join(dir)));
    }
}

fn diskless_binary() -> PathBuf {
    release_binaries().init.with_file_name("diskless")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = text(&out);
    assert!(out.status.success(), "{cmd:?}: {}\n{text}", out.status);
    text
}

/// Puts diskless's mkinitramfs and init where the hooks look for them,
/// `/usr/lib/diskless`, as its package would.
fn install_diskless(img: &Path) -> &'static qemu_tests::build::Binaries {
    let bins = release_binaries();
    let lib = img.join("usr/lib/diskless");
    std::fs::create_dir_all(&lib).unwrap();
    for (from, name) in [(&bins.mkinitramfs, "mkinitramfs"), (&bins.init, "init")] {
        std::fs::copy(from, lib.join(name)).unwrap_or_else(|e| panic!("copy {} into the image: {e}", from.display()));
    }
    bins
}

/// Runs `command` in the image through `diskless chroot`.
fn in_chroot(img: &Path, cache: &Path, command: &[String]) -> Output {
    let mut cmd = Command::new(diskless_binary());
    cmd.arg("chroot").arg("--cache-dir").arg(cache).arg(img).arg("--").args(command);
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Runs the hooks of `dir` (`postinst.d`, `postrm.d`) in the image as the kernel
/// package's maintainer script does, with its arguments `maint` in DEB_MAINT_PARAMS.
fn run_parts(img: &Path, cache: &Path, dir: &str, version: &str, maint: &str) -> Output {
    let command = [
        "env".to_string(),
        format!("DEB_MAINT_PARAMS={maint}"),
        "run-parts".into(),
        "--report".into(),
        "--exit-on-error".into(),
        format!("--arg={version}"),
        format!("--arg=/boot/vmlinuz-{version}"),
        format!("/etc/kernel/{dir}"),
    ];
    in_chroot(img, cache, &command)
}

#[test]
fn installing_a_kernel_builds_its_initramfs_and_removing_it_removes_it() {
    let kernel = Kernel::cached();
    let version = &kernel.version;
    let img_dir = image_copy("debian").expect("copy of the Debian image");
    let img = img_dir.path();
    let cache = tempfile::tempdir().expect("temp dir");

    // The tool installs the hooks; the image gets diskless's mkinitramfs and init.
    let setup = run_ok(Command::new(diskless_binary()).arg("setup").arg(img));
    for hook in ["/etc/kernel/postinst.d/zz-diskless", "/etc/kernel/postrm.d/zz-diskless"] {
        assert!(setup.contains(&format!("install the kernel hook {hook} (")), "setup did not install {hook}:\n{setup}");
    }
    let bins = install_diskless(img);

    // The package's files, as dpkg unpacks them before it runs the postinst.
    install_kernel_files(kernel, img);
    let initrd = img.join(format!("boot/initrd.img-{version}"));
    assert!(!initrd.exists(), "{} before the hook ran", initrd.display());

    // dpkg runs the postinst for other actions too (abort-upgrade, ...): nothing built.
    let out = run_parts(img, cache.path(), "postinst.d", version, "abort-upgrade 6.1.0-1");
    assert!(out.status.success(), "postinst.d for abort-upgrade: {}\n{}", out.status, text(&out));
    assert!(!initrd.exists(), "built for abort-upgrade:\n{}", text(&out));

    let out = run_parts(img, cache.path(), "postinst.d", version, "configure");
    let log = text(&out);
    assert!(out.status.success(), "postinst.d: {}\n{log}", out.status);
    assert!(log.contains(&format!("diskless: building /boot/initrd.img-{version}")), "{log}");
    assert!(initrd.is_file(), "no {} after postinst.d:\n{log}", initrd.display());

    let listing = run_ok(Command::new(&bins.mkinitramfs).arg("list").arg(&initrd));
    let has = |suffix: &str| listing.lines().any(|l| l.ends_with(suffix));
    assert!(has(&format!(" lib/modules/{version}/modules.db")), "no module database for {version}:\n{listing}");
    assert!(
        listing.contains(&format!(" lib/modules/{version}/kernel/fs/nfs/nfsv3.ko")),
        "no NFS client of {version}:\n{listing}"
    );
    assert!(has(" init"), "no /init:\n{listing}");

    // postrm runs for upgrade and purge as well: only remove removes.
    let out = run_parts(img, cache.path(), "postrm.d", version, "upgrade 6.1.192-4");
    assert!(out.status.success(), "postrm.d for upgrade: {}\n{}", out.status, text(&out));
    assert!(initrd.is_file(), "removed on upgrade:\n{}", text(&out));
    let out = run_parts(img, cache.path(), "postrm.d", version, "remove");
    let log = text(&out);
    assert!(out.status.success(), "postrm.d: {}\n{log}", out.status);
    assert!(log.contains(&format!("diskless: removing /boot/initrd.img-{version}")), "{log}");
    assert!(!initrd.exists(), "{} left after postrm.d:\n{log}", initrd.display());
}

/// A package that provides `linux-initramfs-tool`, the kernel package's alternative to
/// initramfs-tools, as an administrator makes one with equivs for an image whose
/// initrds diskless builds: dpkg-deb of a control file and nothing else.
fn initramfs_tool_provider(dir: &Path) -> PathBuf {
    let root = dir.join("provider");
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: diskless-initramfs-tool\nVersion: 1\nArchitecture: all\nMaintainer: lab admin <root@localhost>\n\
         Provides: linux-initramfs-tool\nDescription: initrds of this image are built by diskless's kernel hooks\n",
    )
    .unwrap();
    let deb = dir.join("diskless-initramfs-tool_1_all.deb");
    run_ok(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&root).arg(&deb));
    deb
}

/// The one .deb in the kernel cache whose name starts with `prefix`; `qemu/setup`
/// downloads them.
fn cached_deb(kernel: &Kernel, prefix: &str) -> PathBuf {
    let cache = kernel.basedir.parent().expect("the kernel cache holds root/");
    let found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".deb"))
        })
        .collect();
    assert_eq!(found.len(), 1, "one {prefix}*.deb in {} (run qemu/setup): {found:?}", cache.display());
    found.into_iter().next().unwrap()
}

/// Runs `dpkg ARGS` in the image, without questions.
fn dpkg(img: &Path, cache: &Path, args: &[&str]) -> Output {
    let mut command = vec!["env".to_string(), "DEBIAN_FRONTEND=noninteractive".into(), "dpkg".into()];
    command.extend(args.iter().map(|a| a.to_string()));
    in_chroot(img, cache, &command)
}

/// Not the hooks alone: dpkg installs Debian's kernel package in the image, its
/// postinst runs the hooks, and the initrd is diskless's; `dpkg --remove` removes it.
#[test]
fn dpkg_installing_the_kernel_package_builds_the_diskless_initramfs_and_removing_it_removes_it() {
    let kernel = Kernel::cached();
    let version = &kernel.version;
    let img_dir = image_copy("debian").expect("copy of the Debian image");
    let img = img_dir.path();
    let cache = tempfile::tempdir().expect("temp dir");
    run_ok(Command::new(diskless_binary()).arg("setup").arg(img));
    let bins = install_diskless(img);
    // The packages go where the chroot sees them (its /tmp is the cache's).
    let debs = img.join("root/debs");
    std::fs::create_dir_all(&debs).unwrap();
    let mut in_image = Vec::new();
    for deb in [
        cached_deb(kernel, "linux-base_"),
        initramfs_tool_provider(cache.path()),
        cached_deb(kernel, &format!("linux-image-{version}_")),
    ] {
        let name = deb.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(&deb, debs.join(&name)).unwrap_or_else(|e| panic!("copy {}: {e}", deb.display()));
        in_image.push(format!("/root/debs/{name}"));
    }

    let mut install = vec!["--install"];
    install.extend(in_image.iter().map(String::as_str));
    let out = dpkg(img, cache.path(), &install);
    let log = text(&out);
    assert!(out.status.success(), "dpkg --install: {}\n{log}", out.status);
    assert!(log.contains(&format!("Setting up linux-image-{version} ")), "{log}");
    assert!(log.contains(&format!("diskless: building /boot/initrd.img-{version}")), "{log}");
    let initrd = img.join(format!("boot/initrd.img-{version}"));
    let listing = run_ok(Command::new(&bins.mkinitramfs).arg("list").arg(&initrd));
    assert!(
        listing.lines().any(|l| l.ends_with(&format!(" lib/modules/{version}/modules.db"))),
        "the initrd dpkg's postinst left is not diskless's for {version}:\n{listing}"
    );

    let out = dpkg(img, cache.path(), &["--remove", &format!("linux-image-{version}")]);
    let log = text(&out);
    assert!(out.status.success(), "dpkg --remove: {}\n{log}", out.status);
    assert!(log.contains(&format!("diskless: removing /boot/initrd.img-{version}")), "{log}");
    assert!(!initrd.exists(), "{} left after dpkg --remove:\n{log}", initrd.display());
}

/// An image set up by the tool but without diskless's mkinitramfs: the kernel package
/// installs, and the hook says what is missing.
#[test]
fn without_mkinitramfs_in_the_image_the_hook_says_what_to_install() {
    let version = &Kernel::cached().version;
    let img_dir = image_copy("debian").expect("copy of the Debian image");
    let img = img_dir.path();
    let cache = tempfile::tempdir().expect("temp dir");
    run_ok(Command::new(diskless_binary()).arg("setup").arg(img));
    let out = run_parts(img, cache.path(), "postinst.d", version, "configure");
    let log = text(&out);
    assert!(out.status.success(), "the package installation failed: {}\n{log}", out.status);
    assert!(
        log.contains(&format!(
            "diskless: /usr/lib/diskless/mkinitramfs is not installed, so kernel {version} has no diskless \
             initramfs: install mkinitramfs and init there, then run /etc/kernel/postinst.d/zz-diskless {version}"
        )),
        "{log}"
    );
    assert!(!img.join(format!("boot/initrd.img-{version}")).exists());
}
