//! The DNS servers of the image's `resolv.conf`, as its layers define it: the last
//! resort for naming a machine whose `ip=` named no DNS server and whose network
//! answered no DHCPINFORM.
//!
//! The HOWTO's images carry the site's `resolv.conf` in the network layer (or the
//! base layer), and its machines found their names with it. The file is read from
//! the network layer, then the base layer — the layer that would win when they are
//! copied, first — through [`open_in_image`], so symlinks resolve inside the image.
//! The layers are found by the rule the local stage uses ([`select_layers`]); only
//! the base and network layers are looked at, as the others are named after the
//! host name being looked for.

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use crate::config::Config;
use crate::local::image::open_in_image;
use crate::local::{LayerInput, LayerKind, select_layers};

/// As many servers as the C library uses (MAXNS); later ones are ignored, as it does.
pub const MAX_SERVERS: usize = 3;

/// Larger files are not `resolv.conf`s; only this much is read.
const MAX_BYTES: u64 = 64 * 1024;

/// The IPv4 `nameserver` lines of a `resolv.conf`, at most [`MAX_SERVERS`]. Comments
/// (`#`, `;`), other keywords, IPv6 and unparsable addresses are skipped; the bytes
/// need not be UTF-8.
pub fn nameservers(text: &[u8]) -> Vec<Ipv4Addr> {
    let mut servers = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let mut words = line.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
        if words.next() != Some(b"nameserver".as_slice()) {
            continue;
        }
        let Some(address) = words.next().and_then(|w| std::str::from_utf8(w).ok()) else {
            continue;
        };
        match address.parse::<Ipv4Addr>() {
            Ok(a) if !a.is_unspecified() && !a.is_broadcast() && !servers.contains(&a) => servers.push(a),
            _ => {}
        }
        if servers.len() == MAX_SERVERS {
            break;
        }
    }
    servers
}

/// The DNS servers of the image at `image_root`, and the file (inside the image)
/// and layer they came from; `None` when neither layer has a `resolv.conf` naming
/// an IPv4 server.
pub fn from_layers(
    config: &Config,
    image_root: &Path,
    input: &LayerInput,
) -> Option<(PathBuf, LayerKind, Vec<Ipv4Addr>)> {
    let selection = select_layers(config, image_root, input);
    [LayerKind::Network, LayerKind::Base].into_iter().find_map(|kind| {
        let layer = selection.layers.iter().find(|l| l.kind == kind)?;
        let path = layer.path.join("etc/resolv.conf");
        let file = open_in_image(image_root, &path, OFlags::RDONLY).ok()?;
        let mut text = Vec::new();
        std::fs::File::from(file).take(MAX_BYTES).read_to_end(&mut text).ok()?;
        let servers = nameservers(&text);
        (!servers.is_empty()).then_some((path, kind, servers))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use proptest::prelude::*;

    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 0, last)
    }

    #[test]
    fn nameserver_lines_in_order_with_comments_and_options_skipped() {
        let text = b"# generated\n; old style comment\nsearch lab.example\noptions ndots:2 timeout:1\n\
                     nameserver 10.77.0.1\n  nameserver\t10.77.0.2   # second\n#nameserver 10.77.0.9\n";
        assert_eq!(nameservers(text), [ip(1), ip(2)]);
    }

    #[test]
    fn more_than_three_servers_keeps_the_first_three() {
        let text = b"nameserver 10.77.0.1\nnameserver 10.77.0.2\nnameserver 10.77.0.3\nnameserver 10.77.0.4\n";
        assert_eq!(nameservers(text), [ip(1), ip(2), ip(3)]);
    }

    #[test]
    fn ipv6_and_unparsable_lines_are_ignored() {
        let text = b"nameserver ::1\nnameserver fe80::1%eth0\nnameserver 10.77.0.300\nnameserver\n\
                     nameserver 0.0.0.0\nnameservers 10.77.0.8\nnameserver 10.77.0.5\r\n";
        assert_eq!(nameservers(text), [ip(5)]);
    }

    #[test]
    fn hostile_bytes_around_a_server_do_not_hide_it() {
        let text = b"\0\x1b[2J\xff\xfe\nnameserver \xff\nnameserver 10.77.0.7\x00\nnameserver 10.77.0.6\n";
        assert_eq!(nameservers(text), [ip(6)]);
    }

    #[test]
    fn a_repeated_server_counts_once() {
        assert_eq!(nameservers(b"nameserver 10.77.0.1\nnameserver 10.77.0.1\n"), [ip(1)]);
    }

    fn image(files: &[(&str, &str)]) -> tempfile::TempDir {
        let img = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = img.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        img
    }

    fn input() -> LayerInput {
        LayerInput { broadcast: Ipv4Addr::new(10, 77, 0, 255), address: ip(112), hostname: "ip-10-77-0-112".into() }
    }

    #[test]
    fn the_network_layer_comes_before_the_base_layer() {
        let img = image(&[
            ("diskless/base/etc/resolv.conf", "nameserver 10.77.0.1\n"),
            ("diskless/networks/10.77.0.255/etc/resolv.conf", "nameserver 10.77.0.2\n"),
        ]);
        let got = from_layers(&Config::default(), img.path(), &input()).unwrap();
        assert_eq!(
            got,
            (PathBuf::from("/diskless/networks/10.77.0.255/etc/resolv.conf"), LayerKind::Network, vec![ip(2)])
        );
    }

    #[test]
    fn the_base_layer_when_the_network_layer_names_no_server() {
        let img = image(&[
            ("diskless/base/etc/resolv.conf", "nameserver 10.77.0.1\n"),
            ("diskless/networks/10.77.0.255/etc/resolv.conf", "nameserver ::1\n"),
        ]);
        let got = from_layers(&Config::default(), img.path(), &input()).unwrap();
        assert_eq!(got, (PathBuf::from("/diskless/base/etc/resolv.conf"), LayerKind::Base, vec![ip(1)]));
    }

    #[test]
    fn no_layer_resolv_conf_is_none() {
        let img = image(&[("diskless/base/etc/hostname", "x\n"), ("etc/resolv.conf", "nameserver 10.77.0.1\n")]);
        assert_eq!(from_layers(&Config::default(), img.path(), &input()), None);
    }

    #[test]
    fn a_symlinked_resolv_conf_resolves_inside_the_image() {
        let img = image(&[("diskless/base/etc/x", ""), ("etc/site-resolv.conf", "nameserver 10.77.0.4\n")]);
        std::os::unix::fs::symlink("/etc/site-resolv.conf", img.path().join("diskless/base/etc/resolv.conf")).unwrap();
        let got = from_layers(&Config::default(), img.path(), &input()).unwrap();
        assert_eq!(got.2, [ip(4)]);
    }

    proptest! {
        #[test]
        fn any_bytes_give_at_most_three_ipv4_servers(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            prop_assert!(nameservers(&bytes).len() <= MAX_SERVERS);
        }
    }
}
