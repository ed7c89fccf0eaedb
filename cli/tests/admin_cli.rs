//! The `diskless` admin binary end to end: output and exit codes.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};

use diskless::config::Config;
use diskless::local::{LocalReport, MountPlan};
use diskless::net::identity::NameSource;
use diskless::net::{Identity, Lease, Mac, NetResult, Proto};
use diskless::record::{self, BootRecord, NetworkSection, StageTime};
use diskless::root::parse::{ServerSource, Syntax};
use diskless::root::{Mounted, NfsRoot, Version};
use diskless::stage::Stage;

fn diskless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diskless")).args(args).output().expect("run diskless")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn check_prints_the_configuration_and_fails_on_warnings() {
    let img = tempfile::tempdir().unwrap();
    let root = img.path().to_str().unwrap();
    for dir in ["etc/local", "var/local", "lib/modules/6.1.0-57-amd64"] {
        fs::create_dir_all(img.path().join(dir)).unwrap();
    }
    write(img.path(), "etc/diskless/about", "lab-image\n");
    let o = diskless(&["check", root]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("layers = \"/diskless\"\n"), "{}", stdout(&o));

    write(img.path(), "etc/diskless/diskless.toml", "mode = \"overlay\"\ncolour = 1\n");
    let o = diskless(&["check", root]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("mode = \"overlay\"\n"), "{out}");
    assert!(out.contains("warning: ") && out.contains("unknown key \"colour\""), "{out}");
}

#[test]
fn plan_shows_layers_and_files() {
    let img = tempfile::tempdir().unwrap();
    write(img.path(), "diskless/base/etc/fstab", "base");
    write(img.path(), "diskless/hosts/lab3-12/etc/fstab", "host");
    let o = diskless(&["plan", img.path().to_str().unwrap(), "--host", "lab3-12", "--ip", "10.0.0.12/24"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("# layers of lab3-12 (10.0.0.12, network 10.0.0.255)"), "{out}");
    assert!(out.contains("/etc/local/fstab  [overridden by host]"), "{out}");
    assert!(out.contains("-  network /diskless/networks/10.0.0.255  skipped: missing"), "{out}");
}

/// The record of a boot by DHCP without layers or disks.
fn boot_record() -> BootRecord {
    let net = NetResult {
        interface: "eth0".into(),
        mac: Mac([2, 0, 0, 0, 0, 5]),
        proto: Proto::Dhcp,
        lease: Lease::new(Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(255, 255, 255, 0)),
        dns_source: None,
    };
    let identity = Identity { hostname: "pc-1".into(), fqdn: None, domain: None, source: NameSource::Dhcp, lost: None };
    let root = NfsRoot {
        server: Ipv4Addr::new(10, 0, 0, 1),
        servers: vec![Ipv4Addr::new(10, 0, 0, 1)],
        server_source: ServerSource::NextServer,
        path: "/srv/root".into(),
        version: Version::Auto,
        options: Default::default(),
        syntax: Syntax::DhcpRootPath,
    };
    BootRecord {
        diskless_version: env!("CARGO_PKG_VERSION").into(),
        network: NetworkSection { net, identity },
        root: Mounted {
            root,
            mounted_version: Version::V4(2),
            mount_options: "ro".into(),
            attempts: 1,
            modules: Vec::new(),
        },
        layers: Vec::new(),
        local: LocalReport {
            plan: MountPlan { before_copy: Vec::new(), after_copy: Vec::new(), destinations: Vec::new() },
            layers: Default::default(),
        },
        scratch: Default::default(),
        modules: Vec::new(),
        image_modules: Default::default(),
        stages: vec![StageTime { stage: Stage::Root, ms: 42 }],
        config: Config::default(),
        config_warnings: Vec::new(),
        init: "/sbin/init".into(),
        init_args: Vec::new(),
        total_ms: 99,
    }
}

#[test]
fn status_reads_boot_json_or_says_why_not() {
    let run = tempfile::tempdir().unwrap();
    let o = diskless(&["status", run.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("boot.json") && stderr(&o).contains("not booted by diskless?"), "{}", stderr(&o));
    record::write(run.path(), &boot_record()).unwrap();
    let o = diskless(&["status", run.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("host       pc-1 (from dhcp)")
            && out.contains("root       10.0.0.1:/srv/root (NFSv4.2)")
            && out.contains("root          42 ms")
            && out.contains("total      99 ms"),
        "{out}"
    );
}

#[test]
fn status_prints_a_root_path_from_dhcp_with_its_escape_sequence_escaped() {
    let run = tempfile::tempdir().unwrap();
    let mut record = boot_record();
    record.root.root.path = "/srv/root\u{1b}[2J".into();
    record::write(run.path(), &record).unwrap();
    let o = diskless(&["status", run.path().to_str().unwrap()]);
    let out = stdout(&o);
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("10.0.0.1:/srv/root\\u{1b}[2J"), "{out}");
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    for (args, usage) in [
        (&["frob"][..], "Usage: diskless <COMMAND>"),
        (&[], "Usage: diskless <COMMAND>"),
        (&["check", "--frob"], "Usage: diskless check [OPTIONS] [IMAGE_ROOT]"),
        (&["plan", "--host", "a", "--ip", "10.0.0.1"], "Usage: diskless plan "),
    ] {
        let o = diskless(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}");
        assert!(stderr(&o).contains(usage), "{args:?}: {}", stderr(&o));
    }
    let o = diskless(&["plan", "--host", "a", "--ip", "10.0.0.1"]);
    assert!(stderr(&o).contains("plan needs the subnet"), "{}", stderr(&o));
    let o = diskless(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("Usage: diskless <COMMAND>") && stdout(&o).contains("Exit status: 0 fine"));
    for sub in ["check", "plan", "status", "setup", "add", "remove", "fix", "about", "chroot", "relayer"] {
        let o = diskless(&[sub, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{sub}");
        assert!(stdout(&o).contains(&format!("Usage: diskless {sub} ")), "{sub}: {}", stdout(&o));
    }
    let o = diskless(&["--version"]);
    assert_eq!(stdout(&o), format!("diskless {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn generate_prints_the_man_page_and_completions() {
    let o = diskless(&["generate", "man"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("\n.TH DISKLESS 1 "), "{}", stdout(&o));
    let o = diskless(&["generate", "bash"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("complete -F _diskless"), "{}", stdout(&o));
}
