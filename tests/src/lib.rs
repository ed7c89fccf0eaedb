//! Test rig harness: builds initramfs images and boots the real Debian kernel in QEMU,
//! asserting on the serial console; runs DHCP/DNS servers inside private network
//! namespaces for network tests.
//!
//! The rig's machine-level prerequisites (packages, the cached kernel) come from
//! `qemu/setup`; every function here that finds one missing fails with an error that
//! says to run it, never skips.
//!
//! Modules:
//! - [`kernel`]: where the cached Debian kernel lives.
//! - [`build`]: release binaries and `mkinitramfs` runs.
//! - [`image`]: hand-made busybox initramfs images for testing the rig itself.
//! - [`vm`]: QEMU runner with a machine-wide limit of two VMs and a timeout.
//! - [`console`]: the saved serial console and line assertions on it.
//! - [`netns`]: uniquely named network namespaces, bridges, taps, veth pairs.
//! - [`dnsmasq`]: DHCP/TFTP/DNS server configuration and process inside a namespace.
//! - [`dhcpd`]: ISC dhcpd (host blocks, DHCPINFORM) inside a namespace.
//! - [`bind`]: BIND9 named with forward and reverse zones inside a namespace.
//! - [`process`]: child-process guards that kill the whole process group on drop.
//! - [`pxe`]: a lab segment (namespace, bridge, taps, TFTP root with pxelinux, dnsmasq)
//!   that VMs network-boot from.
//! - [`nfs`]: nfs-ganesha + rpcbind exporting a root image inside a namespace.
//! - [`nginx`]: nginx serving a site file inside a namespace, with its access log.
//! - [`lab`]: a lab's servers running from `diskless server render`'s files.
//! - [`paths`]: workspace, target, log and scratch directories.
//! - [`foreign`]: the clients of the other architectures: kernels, inits, busybox images.
//! - [`secureboot`]: Debian's signed shim and GRUB for Secure Boot clients under OVMF.
//! - [`bad_dhcp`]: a scripted DHCP server that answers with malformed replies.
//! - [`rsyslog`]: rsyslogd receiving syslog over UDP into files of the test, inside a namespace.

pub mod bad_dhcp;
pub mod bind;
pub mod build;
pub mod cache_boot;
pub mod console;
pub mod dhcpd;
pub mod dnsmasq;
pub mod error;
pub mod foreign;
pub mod image;
pub mod kernel;
pub mod lab;
pub mod netns;
pub mod nfs;
pub mod nginx;
pub mod paths;
pub mod pcap;
pub mod process;
pub mod pxe;
pub mod rsyslog;
pub mod secureboot;
pub mod vm;

pub use error::Error;
