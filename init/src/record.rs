//! `/run/diskless/boot.json`: what this boot found and did. The hand-off writes it just
//! before starting the image's init; `diskless status` on the running system reads it
//! back. Both go through [`BootRecord`], so the schema is written down once: a field
//! renamed on one side fails the reader loudly instead of showing a blank.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigWarning};
use crate::files::write_atomic;
use crate::hardware::image::ImageModules;
use crate::local::{ApplyReport, LayerKind, LocalReport};
use crate::net::{Identity, NetResult};
use crate::root::Mounted;
use crate::scratch::ScratchReport;
use crate::stage::Stage;

/// boot.json, relative to the run directory (`/run` at boot).
pub const PATH: &str = "diskless/boot.json";

/// Larger files are not from the boot (a real record is a few KiB).
pub const MAX_BYTES: u64 = 16 << 20;

/// The record of one boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    pub diskless_version: String,
    pub network: NetworkSection,
    pub root: Mounted,
    /// Layers applied, in order, with their file counts.
    pub layers: Vec<LayerSummary>,
    /// The local stage in full: mount plan and copy report.
    pub local: LocalReport,
    /// The scratch stage: disks found, swap, the scratch filesystem used or why not.
    pub scratch: ScratchReport,
    /// Modules loaded from the archive by the hardware and root stages, in order.
    pub modules: Vec<String>,
    /// The modules stage: the image's module directory, what loaded from it and what failed.
    /// (Absent in the records of inits before the two stages: read as empty.)
    #[serde(default)]
    pub image_modules: ImageModules,
    /// Milliseconds of each stage before the hand-off.
    pub stages: Vec<StageTime>,
    pub config: Config,
    pub config_warnings: Vec<ConfigWarning>,
    pub init: String,
    pub init_args: Vec<String>,
    /// Milliseconds from the start of init to writing this record.
    pub total_ms: u64,
}

/// The `network` section: the lease's fields at its top level, and the host name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSection {
    #[serde(flatten)]
    pub net: NetResult,
    pub identity: Identity,
}

/// One finished stage and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTime {
    pub stage: Stage,
    pub ms: u64,
}

/// One applied layer, short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub kind: LayerKind,
    pub path: PathBuf,
    /// Files and symlinks copied.
    pub files: u64,
}

/// The short form of the layer copy report.
pub fn layer_summaries(report: &ApplyReport) -> Vec<LayerSummary> {
    report
        .layers
        .iter()
        .map(|l| LayerSummary { kind: l.kind, path: l.path.clone(), files: l.files + l.symlinks })
        .collect()
}

/// boot.json under `run_dir`.
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join(PATH)
}

/// Why boot.json cannot be written or read. The read side is the admin's: it says what
/// a missing or foreign file most likely means.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create {}: {source}; is /run a writable tmpfs?", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot serialise {}: {source}", path.display())]
    Serialise { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {}: {source}; is /run a writable tmpfs?", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "cannot read {}: {source}; not booted by diskless? (the boot writes it just before starting the \
         image's init; give the run directory if it is not /run)",
        path.display()
    )]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot read {}: not a regular file; not booted by diskless?", path.display())]
    NotAFile { path: PathBuf },
    #[error(
        "{} is not a diskless boot record: {size} bytes is too big (at most {MAX_BYTES}); the file was changed",
        path.display()
    )]
    TooBig { path: PathBuf, size: u64 },
    #[error(
        "{} is not a diskless boot record: {source}; not booted by diskless, written by another version \
         of diskless (this is {}), or the file was changed",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// Writes `record` to `<run_dir>/diskless/boot.json`, atomically. Returns the path.
pub fn write(run_dir: &Path, record: &BootRecord) -> Result<PathBuf, RecordError> {
    let path = path(run_dir);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|source| RecordError::CreateDir { path: dir.into(), source })?;
    }
    let mut text =
        serde_json::to_string_pretty(record).map_err(|source| RecordError::Serialise { path: path.clone(), source })?;
    text.push('\n');
    write_atomic(&path, text.as_bytes()).map_err(|source| RecordError::Write { path: path.clone(), source })?;
    Ok(path)
}

/// Reads the boot.json at `path`.
pub fn read(path: &Path) -> Result<BootRecord, RecordError> {
    let read_err = |source| RecordError::Read { path: path.into(), source };
    let meta = fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(RecordError::NotAFile { path: path.into() });
    }
    if meta.len() > MAX_BYTES {
        return Err(RecordError::TooBig { path: path.into(), size: meta.len() });
    }
    let bytes = fs::read(path).map_err(read_err)?;
    serde_json::from_slice(&bytes).map_err(|source| RecordError::Parse { path: path.into(), source })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::Source;
    use crate::local::{CopyWarning, Destination, LayerReport, MountAction, MountPlan};
    use crate::net::identity::{LastTry, LostIdentity, LostLayer, LostReason, NameRejected, NameSource};
    use crate::net::{DnsSource, Lease, Mac, Proto};
    use crate::root::parse::{Options, ServerSource, Syntax};
    use crate::root::{NfsRoot, Version};
    use crate::scratch::{Bind, DeviceReport, Kind, Preference, SkipReason, Skipped, SwapReport, UsedScratch};
    use crate::scratch::{WipeStats, Wiped};

    /// A record with every section and every optional field filled, as a boot with a
    /// scratch disk, swap and layers writes it.
    pub(crate) fn full() -> BootRecord {
        let ip = |last| Ipv4Addr::new(10, 77, 0, last);
        let mut lease = Lease::new(ip(112), Ipv4Addr::new(255, 255, 255, 0));
        lease.routers = vec![ip(1)];
        lease.dns_servers = vec![ip(1), ip(2)];
        lease.domain_name = Some("example.org".into());
        lease.host_name = Some("lab3-12".into());
        lease.root_path = Some("10.77.0.1:/export".into());
        lease.mtu = Some(1500);
        lease.server_id = Some(ip(1));
        lease.next_server = Some(ip(1));
        lease.boot_file = Some("pxelinux.0".into());
        lease.server_name = Some("boot".into());
        lease.lease_time = Some(3600);
        lease.domain_search = vec!["example.org".into()];
        lease.nis_domain = Some("nis".into());
        lease.ntp_servers = vec![ip(3)];
        lease.rapid_commit = true;
        let net = NetResult {
            interface: "eth0".into(),
            mac: Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            proto: Proto::Dhcp,
            lease,
            dns_source: Some(DnsSource::Dhcp),
        };
        let identity = Identity {
            hostname: "lab3-12".into(),
            fqdn: Some("lab3-12.example.org".into()),
            domain: Some("example.org".into()),
            source: NameSource::Ptr,
            lost: None,
        };
        let root = Mounted {
            root: NfsRoot {
                server: ip(1),
                servers: vec![ip(1)],
                server_source: ServerSource::Given,
                path: "/export".into(),
                version: Version::V4(1),
                options: Options {
                    port: Some(2049),
                    mountport: Some(635),
                    proto: Some("tcp".into()),
                    mountproto: Some("udp".into()),
                    lock: true,
                    extra: vec!["hard".into()],
                    ignored: vec!["addr=1.2.3.4: set by diskless".into()],
                },
                syntax: Syntax::Kernel,
            },
            mounted_version: Version::V3,
            mount_options: "ro,nolock".into(),
            attempts: 2,
            modules: vec!["nfsv3".into()],
        };
        let layer = |kind, path: &str, files| LayerReport {
            kind,
            path: path.into(),
            files,
            directories: 2,
            symlinks: 1,
            skipped: 1,
        };
        let copy = ApplyReport {
            layers: vec![
                layer(LayerKind::Base, "/diskless/base", 3),
                layer(LayerKind::Host, "/diskless/hosts/lab3-12", 1),
            ],
            warnings: vec![
                CopyWarning::OutsideDirs { layer: "base".into(), path: "/usr/x".into() },
                CopyWarning::SpecialFile { layer: "base".into(), path: "/etc/fifo".into(), file_type: "FIFO".into() },
            ],
            // Not in boot.json: the local stage writes it beside it.
            placed: Default::default(),
        };
        let local = LocalReport {
            plan: MountPlan {
                before_copy: vec![
                    MountAction::RequireDir { path: "/newroot/etc/local".into(), image_path: "/etc/local".into() },
                    MountAction::MakeDir { path: "/run/diskless/overlay".into(), like: Some("/etc".into()) },
                    MountAction::Tmpfs { target: "/newroot/etc/local".into(), options: "size=25%".into() },
                    MountAction::Bind { source: "/mnt/scratch/var".into(), target: "/newroot/var/local".into() },
                ],
                after_copy: vec![MountAction::Overlay { target: "/newroot/etc".into(), options: "lowerdir=x".into() }],
                destinations: vec![Destination { dir: "/etc".into(), path: "/newroot/etc/local".into() }],
            },
            layers: copy,
        };
        let scratch = ScratchReport {
            devices: vec![DeviceReport {
                name: "sda1".into(),
                path: "/dev/sda1".into(),
                size: 1 << 30,
                read_only: false,
                kind: Some(Kind::Ext4),
                label: Some("scratch".into()),
                uuid: Some("0b5c".into()),
                also: vec![Kind::Dos],
            }],
            scratch: Some(UsedScratch {
                device: "/dev/sda1".into(),
                kind: Kind::Ext4,
                label: Some("scratch".into()),
                size: 1 << 30,
                mountpoint: "/mnt/scratch".into(),
                fallback_mountpoint: false,
                preference: Preference::Larger,
                binds: vec![Bind { source: "/mnt/scratch/tmp".into(), target: "/newroot/tmp".into() }],
                local_dirs: vec![("/var".into(), "/mnt/scratch/var".into())],
                wiped: vec![Wiped {
                    path: "/mnt/scratch/tmp".into(),
                    stats: WipeStats { removed: 4, other_filesystems: 1, failed: 1, first_error: Some("EBUSY".into()) },
                }],
            }),
            swaps: vec![
                SwapReport {
                    device: "/dev/sda2".into(),
                    size: 512 << 20,
                    label: Some("swap".into()),
                    enabled: true,
                    error: None,
                },
                SwapReport {
                    device: "/dev/sdb2".into(),
                    size: 256 << 20,
                    label: None,
                    enabled: false,
                    error: Some("EINVAL".into()),
                },
            ],
            skipped: vec![Skipped {
                device: "/dev/sdc1".into(),
                reason: SkipReason::NotOurs { kind: Kind::Ntfs },
                message: "an ntfs filesystem of another system".into(),
            }],
            failure: Some("cannot mount /dev/sdd (ext4)".into()),
        };
        let config = Config {
            file: Some("/newroot/etc/diskless/diskless.toml".into()),
            cmdline_keys: vec!["settle_ms".into()],
            ..Config::default()
        };
        let config_warnings = vec![
            ConfigWarning::UnknownKey {
                origin: Source::File("/etc/diskless/diskless.toml".into()),
                key: "colour".into(),
            },
            ConfigWarning::MissingValue { key: "mode".into() },
        ];
        BootRecord {
            diskless_version: "0.1.0".into(),
            network: NetworkSection { net, identity },
            root,
            layers: layer_summaries(&local.layers),
            local,
            scratch,
            modules: vec!["virtio_net".into(), "nfsv3".into()],
            image_modules: ImageModules {
                dir: "/lib/modules/6.1.0-test".into(),
                present: true,
                loaded: vec!["ahci".into()],
                failed: vec![],
                background: vec!["kvm".into(), "kvm_amd".into()],
                background_loader: "diskless".into(),
                detached: Vec::new(),
            },
            stages: vec![
                StageTime { stage: Stage::Early, ms: 3 },
                StageTime { stage: Stage::Hardware, ms: 1500 },
                StageTime { stage: Stage::Network, ms: 120 },
            ],
            config,
            config_warnings,
            init: "/sbin/init".into(),
            init_args: vec!["single".into()],
            total_ms: 1810,
        }
    }

    /// The record of a boot whose host name was made from the address: no PTR record,
    /// the lab layer skipped and a host layer of the made-up name applied.
    pub(crate) fn lost() -> BootRecord {
        let mut record = full();
        let server = "10.77.0.1:53".parse().unwrap();
        record.network.identity = Identity {
            hostname: "ip-10-77-0-112".into(),
            fqdn: Some("ip-10-77-0-112.example.org".into()),
            domain: Some("example.org".into()),
            source: NameSource::Address,
            lost: Some(LostIdentity {
                address: Ipv4Addr::new(10, 77, 0, 112),
                reason: LostReason::NoPtrRecord { server },
                layers: vec![
                    LostLayer { kind: LayerKind::Lab, path: Some("/diskless/labs/ip".into()), applied: false },
                    LostLayer {
                        kind: LayerKind::Host,
                        path: Some("/diskless/hosts/ip-10-77-0-112".into()),
                        applied: true,
                    },
                ],
            }),
        };
        record
    }

    #[test]
    fn a_full_record_survives_the_round_trip_through_boot_json() {
        let run = tempfile::tempdir().unwrap();
        for record in [full(), lost()] {
            let path = write(run.path(), &record).unwrap();
            assert_eq!(path, run.path().join("diskless/boot.json"));
            assert_eq!(read(&path).unwrap(), record);
        }
    }

    /// Every reason of a lost identity reads back as written, typed.
    #[test]
    fn every_lost_identity_reason_survives_the_round_trip() {
        let server: std::net::SocketAddr = "10.77.0.1:53".parse().unwrap();
        let lasts = [
            LastTry::NotTried,
            LastTry::TimedOut { server, per_try_ms: 1000 },
            LastTry::SendFailed { server, error: "Network unreachable".into() },
            LastTry::ReceiveFailed { server, error: "Connection refused".into() },
            LastTry::Rejected { server, reason: "server answered ServFail".into() },
        ];
        let rejections = [
            NameRejected::Empty,
            NameRejected::TooLong { len: 300 },
            NameRejected::EmptyLabel,
            NameRejected::LabelTooLong { label: "x".repeat(64) },
            NameRejected::BadCharacter { label: "a/b".into(), ch: '/' },
            NameRejected::HyphenAtEdge { label: "-a".into() },
        ];
        let mut reasons = vec![
            LostReason::NoDnsServer,
            LostReason::NoPtrRecord { server },
            LostReason::NoSocket { error: "Address family not supported".into() },
        ];
        reasons.extend(rejections.into_iter().map(|why| LostReason::PtrRejected { server, name: "a..b".into(), why }));
        reasons.extend(lasts.into_iter().map(|last| LostReason::NoAnswer { servers: vec![server], tries: 3, last }));
        for reason in reasons {
            let lost = LostIdentity { address: Ipv4Addr::new(10, 77, 0, 112), reason, layers: vec![] };
            let text = serde_json::to_string(&lost).unwrap();
            assert_eq!(serde_json::from_str::<LostIdentity>(&text).unwrap(), lost, "{text}");
        }
    }

    /// Scripts test `identity.lost` and its reason's kind.
    #[test]
    fn a_lost_identity_is_recorded_under_network_identity_lost() {
        assert_eq!(serde_json::to_value(full()).unwrap().pointer("/network/identity/lost"), Some(&().into()));
        let v = serde_json::to_value(lost()).unwrap();
        for (pointer, want) in [
            ("/network/identity/source", "address".into()),
            ("/network/identity/lost/address", "10.77.0.112".into()),
            ("/network/identity/lost/reason/kind", "no_ptr_record".into()),
            ("/network/identity/lost/reason/server", "10.77.0.1:53".into()),
            ("/network/identity/lost/layers/0/kind", "lab".into()),
            ("/network/identity/lost/layers/0/path", "/diskless/labs/ip".into()),
            ("/network/identity/lost/layers/0/applied", false.into()),
            ("/network/identity/lost/layers/1/applied", true.into()),
        ] {
            assert_eq!(v.pointer(pointer), Some(&want), "{pointer} in\n{v:#}");
        }
    }

    /// Records written before `lost` existed read as not lost.
    #[test]
    fn a_record_without_the_lost_field_reads_as_not_lost() {
        let mut v = serde_json::to_value(full()).unwrap();
        v["network"]["identity"].as_object_mut().unwrap().remove("lost");
        let record: BootRecord = serde_json::from_value(v).unwrap();
        assert_eq!(record, full());
    }

    /// Records written before the DNS servers' source was kept read as not known.
    #[test]
    fn a_record_without_dns_source_reads_as_unknown() {
        let mut v = serde_json::to_value(full()).unwrap();
        v["network"].as_object_mut().unwrap().remove("dns_source");
        let record: BootRecord = serde_json::from_value(v).unwrap();
        assert_eq!(record.network.net.dns_source, None);
    }

    /// Scripts test `network.dns_source.kind`; each source reads back as written.
    #[test]
    fn every_dns_source_is_recorded_under_network_dns_source() {
        let server = Ipv4Addr::new(10, 77, 0, 1);
        let path = std::path::PathBuf::from("/diskless/networks/10.77.0.255/etc/resolv.conf");
        for (source, kind) in [
            (DnsSource::Dhcp, "dhcp"),
            (DnsSource::IpParam, "ip_param"),
            (DnsSource::DhcpInform { server }, "dhcp_inform"),
            (DnsSource::ImageResolvConf { path, layer: crate::local::LayerKind::Network }, "image_resolv_conf"),
            (DnsSource::Nowhere, "nowhere"),
        ] {
            let mut record = full();
            record.network.net.dns_source = Some(source);
            let v = serde_json::to_value(&record).unwrap();
            assert_eq!(v.pointer("/network/dns_source/kind"), Some(&kind.into()), "{v:#}");
            assert_eq!(serde_json::from_value::<BootRecord>(v).unwrap(), record);
        }
    }

    /// The types with a hand-written text form read back what they write.
    #[test]
    fn versions_sizes_and_macs_read_back_their_text() {
        fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(value: T) {
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(serde_json::from_str::<T>(&text).unwrap(), value, "{text}");
        }
        for version in [Version::V3, Version::V4(0), Version::V4(2), Version::Auto] {
            round_trip(version);
        }
        round_trip(crate::config::TmpfsSize::Bytes(512 << 20));
        round_trip(crate::config::TmpfsSize::Bytes(1000));
        round_trip(crate::config::TmpfsSize::Percent(25));
        round_trip(Mac([0xff, 0, 0x0a, 1, 2, 3]));
        assert!(serde_json::from_str::<Version>("\"4\"").is_err(), "4 is written 4.2");
        assert!(serde_json::from_str::<Mac>("\"52:54:00\"").is_err());
    }

    /// QEMU tests and scripts on booted clients read these names: renaming one is a
    /// change of the file format, not a refactoring.
    #[test]
    fn boot_json_keeps_its_field_names() {
        let v = serde_json::to_value(full()).unwrap();
        for (pointer, want) in [
            ("/diskless_version", "0.1.0".into()),
            ("/network/interface", "eth0".into()),
            ("/network/mac", "52:54:00:12:34:56".into()),
            ("/network/proto", "dhcp".into()),
            ("/network/dns_source/kind", "dhcp".into()),
            ("/network/lease/address", "10.77.0.112".into()),
            ("/network/lease/prefix_len", 24.into()),
            ("/network/lease/root_path", "10.77.0.1:/export".into()),
            ("/network/identity/hostname", "lab3-12".into()),
            ("/network/identity/fqdn", "lab3-12.example.org".into()),
            ("/network/identity/source", "ptr".into()),
            ("/root/server", "10.77.0.1".into()),
            ("/root/path", "/export".into()),
            ("/root/version", "4.1".into()),
            ("/root/mounted_version", "3".into()),
            ("/layers/1/kind", "host".into()),
            ("/layers/1/path", "/diskless/hosts/lab3-12".into()),
            ("/layers/1/files", 2.into()),
            ("/local/layers/warnings/0/kind", "outside_dirs".into()),
            ("/local/plan/before_copy/0/action", "require_dir".into()),
            ("/scratch/scratch/device", "/dev/sda1".into()),
            ("/scratch/scratch/kind", "ext4".into()),
            ("/scratch/swaps/0/enabled", true.into()),
            ("/scratch/skipped/0/reason", "not_ours".into()),
            ("/scratch/failure", "cannot mount /dev/sdd (ext4)".into()),
            ("/stages/0/stage", "early".into()),
            ("/stages/0/ms", 3.into()),
            ("/config/tmpfs_size", "25%".into()),
            ("/config_warnings/0/kind", "unknown_key".into()),
            ("/init", "/sbin/init".into()),
            ("/init_args/0", "single".into()),
            ("/total_ms", 1810.into()),
        ] {
            let got: Option<&serde_json::Value> = v.pointer(pointer);
            assert_eq!(got, Some(&want), "{pointer} in\n{v:#}");
        }
    }

    #[test]
    fn a_renamed_field_is_an_error_naming_the_file_and_the_field() {
        let run = tempfile::tempdir().unwrap();
        let path = write(run.path(), &full()).unwrap();
        let text = fs::read_to_string(&path).unwrap().replace("\"total_ms\"", "\"total\"");
        fs::write(&path, text).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{} is not a diskless boot record: ", path.display())), "{err}");
        assert!(err.contains("missing field `total_ms`"), "{err}");
    }

    #[test]
    fn a_missing_or_huge_file_is_named_with_what_to_do() {
        let run = tempfile::tempdir().unwrap();
        let err = read(&path(run.path())).unwrap_err().to_string();
        assert!(err.contains("diskless/boot.json") && err.contains("not booted by diskless?"), "{err}");
        let err = read(run.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let huge = run.path().join("huge.json");
        fs::File::create(&huge).unwrap().set_len(MAX_BYTES + 1).unwrap();
        let err = read(&huge).unwrap_err().to_string();
        assert!(err.contains("is too big"), "{err}");
    }
}
