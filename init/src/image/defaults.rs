//! What `diskless setup` writes into an image that has none of its own: the default
//! `local.d` lists for Debian/systemd images, `diskless.toml`, the dpkg hook and the
//! kernel hooks that build the initramfs of each kernel the package manager installs.
//!
//! Every row of [`DEFAULT_FILES`] says why the file differs per machine: a file of one
//! machine's identity or hardware, shared by a whole lab from a read-only image, is
//! wrong on all the others (two machines with one `machine-id` share a journal and a
//! DHCP client id; one set of SSH host keys lets any of them impersonate the others).

use std::path::{Path, PathBuf};

/// A file kept per machine unless the image has lists of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultFile {
    /// Absolute in the image.
    pub path: &'static str,
    /// Why it differs per machine; written above it in the list.
    pub why: &'static str,
}

const fn row(path: &'static str, why: &'static str) -> DefaultFile {
    DefaultFile { path, why }
}

/// The default per-machine files of a Debian/systemd image. Only those present in the
/// image are listed; a file listed here under a dir that is not configured is reported.
pub const DEFAULT_FILES: &[DefaultFile] = &[
    row("/etc/fstab", "mounts differ per machine: scratch disks, swap, local filesystems"),
    row("/etc/hostname", "the machine's own name"),
    row("/etc/hosts", "names the machine itself (127.0.1.1 <host name>)"),
    row("/etc/resolv.conf", "name servers of the machine's network (from its DHCP lease)"),
    row("/etc/machine-id", "systemd's identity of the machine: journal, DHCP client id, D-Bus"),
    row("/etc/machine-info", "the machine's pretty name, chassis and location (hostnamectl)"),
    row("/etc/adjtime", "drift and UTC/local setting of the machine's own hardware clock"),
    row("/etc/mailname", "the mail name the machine's outgoing mail uses"),
    row("/etc/ssh/ssh_host_rsa_key", "the machine's SSH identity (private RSA host key)"),
    row("/etc/ssh/ssh_host_rsa_key.pub", "the machine's SSH identity (public RSA host key)"),
    row("/etc/ssh/ssh_host_ecdsa_key", "the machine's SSH identity (private ECDSA host key)"),
    row("/etc/ssh/ssh_host_ecdsa_key.pub", "the machine's SSH identity (public ECDSA host key)"),
    row("/etc/ssh/ssh_host_ed25519_key", "the machine's SSH identity (private Ed25519 host key)"),
    row("/etc/ssh/ssh_host_ed25519_key.pub", "the machine's SSH identity (public Ed25519 host key)"),
    row("/etc/ssh/ssh_host_dsa_key", "the machine's SSH identity (private DSA host key, older images)"),
    row("/etc/ssh/ssh_host_dsa_key.pub", "the machine's SSH identity (public DSA host key, older images)"),
    row("/etc/X11/xorg.conf", "written for the machine's own graphics hardware"),
    row("/etc/udev/rules.d/70-persistent-net.rules", "names the machine's own network cards by MAC (older images)"),
    row("/var/lib/dbus/machine-id", "D-Bus's copy of the machine id (on Debian a symlink to /etc/machine-id)"),
    row("/var/lib/systemd/random-seed", "seed of the kernel's random pool: one shared seed is no seed"),
];

/// `diskless.toml` as `setup` writes it when the image has no configuration: the
/// compiled defaults, each key explained, so that the file documents itself.
pub const DEFAULT_TOML: &str = r#"# diskless configuration (written by `diskless setup`): the compiled defaults.
# Every key can also be set on the kernel command line as diskless.<key>=<value>.

# Directories of the image that get a writable local subdirectory at boot. The files
# of a dir kept per machine are listed in /etc/diskless/local.d/ (one list per dir,
# /var/lib's is named var-lib) and are symlinks into the local subdirectory.
dirs = ["/etc", "/var"]
# The local subdirectory of each dir: /etc/local, /var/local.
localdir = "local"
# The layers: base, networks/<broadcast>, labs/<host name before the first ->,
# hosts/<short host name>, hosts/<address>; later ones win.
layers = "/diskless"
# "symlink": a tmpfs on each local dir; "overlay": an overlayfs on each dir.
mode = "symlink"
# Size of each tmpfs: a share of RAM ("25%") or a size ("512M").
tmpfs_size = "25%"
# After a failure that stops the boot: "reboot", "shell" or "halt".
on_failure = "reboot"
reboot_delay = 30
# Used before the image is mounted, so only the kernel command line sets them
# (diskless.dhcp_timeout=300); the defaults: seconds to wait for a carrier and for a
# DHCP lease, milliseconds of quiet that end coldplug, seconds to retry the NFS mount
# (0: forever) and for one of several root servers to answer before the next is tried;
# the DHCP servers whose offers are taken (none: any; e.g.
# diskless.dhcp_server=10.77.0.1); where the boot's log and hardware inventory go as
# syslog over UDP: "dhcp" (the lease's log servers, option 7), "off", or a server's
# address with an optional port (diskless.syslog=10.77.0.1:514).
#   carrier_timeout = 10, dhcp_timeout = 120, settle_ms = 500, nfs_retry_timeout = 300,
#   nfs_server_timeout = 5, dhcp_server = [], syslog = "dhcp"

[scratch]
# Local disks used for the local dirs, /tmp and swap: only filesystems of these types
# carrying this label (mkfs.ext4 -L scratch /dev/sdX1) are ever mounted.
fstypes = ["ext4", "xfs", "btrfs"]
label = "scratch"
mountpoint = "/mnt/scratch"
wipe = false
swap = true
"#;

/// The dpkg hook, relative to the image root.
pub const DPKG_HOOK_PATH: &str = "etc/apt/apt.conf.d/80diskless";

/// Where the image has its `diskless` command; the hook runs it from there.
pub const DISKLESS_BINARY: &str = "/usr/sbin/diskless";

/// The hook's text: after every dpkg run (install, upgrade, reinstall, remove), put
/// back what a package update did to the listed files. It runs only when the command is
/// installed, and never fails apt: a failed repair is printed, and `fix` runs again
/// after the next dpkg run.
pub fn dpkg_hook() -> String {
    format!(
        "// Written by `diskless setup`: after each dpkg run, put the per-machine files a package\n\
         // replaced back into the base layer and restore their links ({DISKLESS_BINARY} fix --auto).\n\
         DPkg::Post-Invoke {{ \"if [ -x {DISKLESS_BINARY} ]; then {DISKLESS_BINARY} fix --auto / || true; fi\"; }};\n"
    )
}

/// Where the image has diskless's `mkinitramfs`, with `init` beside it (its default
/// `--init`). Not `/usr/sbin`: initramfs-tools has a `mkinitramfs` of its own there.
pub const MKINITRAMFS_BINARY: &str = "/usr/lib/diskless/mkinitramfs";

/// A hook `setup` installs into an image with apt, where the package manager runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// After every dpkg run: `diskless fix --auto`.
    Dpkg,
    /// Debian's kernel packages run `/etc/kernel/postinst.d/*` with `VERSION
    /// IMAGE-PATH` once a kernel is installed: build its initramfs.
    KernelPostinst,
    /// ... and `/etc/kernel/postrm.d/*` once one is removed: remove its initramfs.
    KernelPostrm,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::Dpkg, Hook::KernelPostinst, Hook::KernelPostrm];

    /// Relative to the image root. The kernel hooks are named to sort after
    /// initramfs-tools' own (run-parts runs them in name order), so that when both are
    /// installed the initrd left in `/boot` is diskless's; `run-parts` only runs names
    /// of letters, digits, `_` and `-`.
    pub fn path(self) -> &'static str {
        match self {
            Hook::Dpkg => DPKG_HOOK_PATH,
            Hook::KernelPostinst => "etc/kernel/postinst.d/zz-diskless",
            Hook::KernelPostrm => "etc/kernel/postrm.d/zz-diskless",
        }
    }

    /// Which hook it is and what it does, for `setup`'s list of actions.
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Hook::Dpkg => ("the dpkg hook", "runs diskless fix --auto after each dpkg run"),
            Hook::KernelPostinst => {
                ("the kernel hook", "builds /boot/initrd.img-VERSION with mkinitramfs for each kernel installed")
            }
            Hook::KernelPostrm => ("the kernel hook", "removes /boot/initrd.img-VERSION of each kernel removed"),
        }
    }

    /// The file's content.
    pub fn text(self) -> String {
        match self {
            Hook::Dpkg => dpkg_hook(),
            Hook::KernelPostinst => kernel_postinst_hook(),
            Hook::KernelPostrm => kernel_postrm_hook(),
        }
    }

    /// apt reads its configuration; run-parts runs only executable hooks.
    pub fn mode(self) -> u32 {
        match self {
            Hook::Dpkg => 0o644,
            Hook::KernelPostinst | Hook::KernelPostrm => 0o755,
        }
    }
}

/// The start both kernel hooks share: the contract of Debian's kernel packages
/// (`VERSION [IMAGE-PATH]`, `DEB_MAINT_PARAMS` the maintainer script's arguments), the
/// initrd's path beside the kernel image as `/boot/initrd.img-VERSION`, and the one
/// maintainer-script action (`configure`, `remove`) that the hook acts on, so that a
/// kernel is built or removed once per installation, as initramfs-tools' hooks do.
fn kernel_hook_start(what: &str, action: &str) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by `diskless setup`: {what}.\n\
         # Debian's kernel packages run it as: zz-diskless VERSION [IMAGE-PATH].\n\
         set -e\n\
         version=\"$1\"\n\
         if [ -z \"$version\" ]; then\n\
         \techo \"diskless: $0: no kernel version given; run it as $0 VERSION [/boot/vmlinuz-VERSION]\" >&2\n\
         \texit 2\n\
         fi\n\
         initrd=\"$(dirname \"${{2:-/boot/vmlinuz-$version}}\")/initrd.img-$version\"\n\
         if [ -n \"$DEB_MAINT_PARAMS\" ]; then\n\
         \tset -- $DEB_MAINT_PARAMS\n\
         \t[ \"$1\" = {action} ] || exit 0\n\
         fi\n"
    )
}

/// `/etc/kernel/postinst.d/zz-diskless`: `mkinitramfs VERSION` into the initrd's path.
/// An image without diskless's mkinitramfs gets a warning that names what to install,
/// and the package installation goes on; a failed build fails it, as initramfs-tools'
/// hook does, so that a kernel without a working initramfs is not left unnoticed.
pub fn kernel_postinst_hook() -> String {
    format!(
        "{}\
         if [ ! -x {MKINITRAMFS_BINARY} ]; then\n\
         \techo \"diskless: {MKINITRAMFS_BINARY} is not installed, so kernel $version has no diskless \
         initramfs: install mkinitramfs and init there, then run $0 $version\" >&2\n\
         \texit 0\n\
         fi\n\
         echo \"diskless: building $initrd\" >&2\n\
         {MKINITRAMFS_BINARY} -o \"$initrd\" \"$version\" >&2\n",
        kernel_hook_start("build the diskless initramfs of a kernel the package manager installed", "configure")
    )
}

/// `/etc/kernel/postrm.d/zz-diskless`: remove the initrd of the removed kernel.
pub fn kernel_postrm_hook() -> String {
    format!(
        "{}\
         if [ -e \"$initrd\" ]; then\n\
         \techo \"diskless: removing $initrd\" >&2\n\
         \trm -f \"$initrd\"\n\
         fi\n",
        kernel_hook_start("remove the initramfs of a kernel the package manager removed", "remove")
    )
}

/// The innermost of `dirs` that `path` is inside (not the dir itself): `/var/lib/x`
/// belongs to `/var/lib` when both `/var` and `/var/lib` are configured, as at boot.
pub fn owning_dir<'d>(dirs: &'d [PathBuf], path: &Path) -> Option<&'d PathBuf> {
    dirs.iter().filter(|dir| path != dir.as_path() && path.starts_with(dir)).max_by_key(|dir| dir.components().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};

    #[test]
    fn the_default_toml_is_the_compiled_defaults() {
        let img = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(img.path().join("etc/diskless")).unwrap();
        std::fs::write(img.path().join(config::TOML_PATH), DEFAULT_TOML).unwrap();
        let (loaded, warnings) = config::load(img.path(), &[] as &[(String, Option<String>)]);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(Config { file: None, ..loaded }, Config::default());
    }

    #[test]
    fn every_default_file_is_absolute_and_says_why() {
        for row in DEFAULT_FILES {
            assert!(row.path.starts_with('/') && !row.path.contains(".."), "{}", row.path);
            assert!(row.why.len() > 10, "{}", row.path);
        }
        let names: Vec<&str> = DEFAULT_FILES.iter().map(|r| r.path).collect();
        for wanted in ["/etc/fstab", "/etc/hostname", "/etc/machine-id", "/etc/ssh/ssh_host_ed25519_key"] {
            assert!(names.contains(&wanted), "{wanted}");
        }
    }

    #[test]
    fn a_nested_dir_owns_its_files() {
        let dirs = [PathBuf::from("/etc"), PathBuf::from("/var"), PathBuf::from("/var/lib")];
        assert_eq!(owning_dir(&dirs, Path::new("/var/lib/dbus/machine-id")), Some(&dirs[2]));
        assert_eq!(owning_dir(&dirs, Path::new("/var/log/x")), Some(&dirs[1]));
        assert_eq!(owning_dir(&dirs, Path::new("/var/lib")), Some(&dirs[1]));
        assert_eq!(owning_dir(&dirs, Path::new("/usr/x")), None);
        assert_eq!(owning_dir(&dirs, Path::new("/etcetera")), None);
    }

    #[test]
    fn the_kernel_hooks_are_shell_scripts_for_run_parts_acting_once_per_package_run() {
        for hook in [Hook::KernelPostinst, Hook::KernelPostrm] {
            let text = hook.text();
            assert!(text.starts_with("#!/bin/sh\n# Written by `diskless setup`: "), "{text}");
            let name = Path::new(hook.path()).file_name().unwrap().to_str().unwrap();
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                "run-parts skips {name}"
            );
            assert!(name > "initramfs-tools", "{name} runs before initramfs-tools' hook");
            assert_eq!(hook.mode(), 0o755);
            assert!(
                text.contains("initrd=\"$(dirname \"${2:-/boot/vmlinuz-$version}\")/initrd.img-$version\""),
                "{text}"
            );
        }
        assert!(Hook::KernelPostinst.text().contains("\t[ \"$1\" = configure ] || exit 0\n"));
        assert!(
            Hook::KernelPostinst.text().contains("/usr/lib/diskless/mkinitramfs -o \"$initrd\" \"$version\" >&2\n")
        );
        assert!(Hook::KernelPostrm.text().contains("\t[ \"$1\" = remove ] || exit 0\n"));
        assert!(Hook::KernelPostrm.text().contains("\trm -f \"$initrd\"\n"));
        assert_eq!(Hook::Dpkg.text(), dpkg_hook());
        assert_eq!(Hook::Dpkg.mode(), 0o644);
    }

    #[test]
    fn the_hook_runs_fix_only_when_installed_and_never_fails_apt() {
        let hook = dpkg_hook();
        assert!(hook.contains("DPkg::Post-Invoke { \"if [ -x /usr/sbin/diskless ]; then"), "{hook}");
        assert!(hook.contains("/usr/sbin/diskless fix --auto / || true; fi\"; };"), "{hook}");
    }
}
