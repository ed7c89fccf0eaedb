//! Which devices can carry the boot's network traffic: their drivers load first, and
//! the hardware stage returns as soon as they are in, so that DHCP does not wait for
//! disks, input devices and the like.

/// A kind of device on the network path, by modalias.
struct Kind {
    /// The part before `:`.
    bus: &'static str,
    /// Fields that must all have the given value (`bc` = PCI base class, `sc` its
    /// subclass, `d` = virtio device id, `ic`/`isc`/`ip` = USB interface class,
    /// subclass and protocol).
    fields: &'static [(&'static str, &'static str)],
    /// Why it is on the network path (for the debug log).
    why: &'static str,
}

const NETWORK_PATH: &[Kind] = &[
    Kind { bus: "pci", fields: &[("bc", "02")], why: "network controller" },
    Kind { bus: "pci", fields: &[("bc", "0C"), ("sc", "03")], why: "USB host controller: USB NICs sit behind it" },
    Kind {
        bus: "virtio",
        fields: &[("d", "00000001")],
        why: "virtio network device (appears once virtio_pci is loaded)",
    },
    Kind { bus: "usb", fields: &[("ic", "02"), ("isc", "06")], why: "USB CDC Ethernet" },
    Kind { bus: "usb", fields: &[("ic", "02"), ("isc", "0A")], why: "USB CDC MDLM" },
    Kind { bus: "usb", fields: &[("ic", "02"), ("isc", "0C")], why: "USB CDC EEM" },
    Kind { bus: "usb", fields: &[("ic", "02"), ("isc", "0D")], why: "USB CDC NCM" },
    Kind { bus: "usb", fields: &[("ic", "02"), ("isc", "0E")], why: "USB CDC MBIM" },
    Kind { bus: "usb", fields: &[("ic", "E0"), ("isc", "01"), ("ip", "03")], why: "USB RNDIS" },
    Kind { bus: "usb", fields: &[("ic", "EF"), ("isc", "04"), ("ip", "01")], why: "USB RNDIS (miscellaneous class)" },
];

/// Where the kernel keeps network drivers, relative to `lib/modules/VERSION`: a device
/// one of them matches is a NIC whatever its bus says (vendor-specific USB NICs,
/// hypervisor and platform NICs).
const NET_DRIVER_DIR: &str = "kernel/drivers/net/";

/// Why the device with `modalias`, matched by modules stored at `module_paths`
/// (relative to `lib/modules/VERSION`), is on the boot's network path; `None` when it
/// is not.
pub fn network_path<'p>(modalias: &str, module_paths: impl IntoIterator<Item = &'p str>) -> Option<&'static str> {
    if module_paths.into_iter().any(|p| p.starts_with(NET_DRIVER_DIR)) {
        return Some("matched by a network driver");
    }
    let (bus, body) = modalias.split_once(':')?;
    NETWORK_PATH
        .iter()
        .filter(|kind| kind.bus == bus)
        .find(|kind| kind.fields.iter().all(|(tag, value)| field(body, tag) == Some(value)))
        .map(|kind| kind.why)
}

/// The value of `tag` in a modalias body such as `v00001AF4d00001000sv...bc02sc00i00`:
/// tags are lowercase letters, values uppercase hex digits (the kernel prints `%X`).
fn field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let mut rest = body;
    while !rest.is_empty() {
        let tag_len = rest.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(rest.len());
        let (this_tag, after) = rest.split_at(tag_len);
        let value_len = after.find(|c: char| c.is_ascii_lowercase()).unwrap_or(after.len());
        let (value, next) = after.split_at(value_len);
        if this_tag == tag {
            return Some(value);
        }
        rest = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Modaliases captured from QEMU machines under the Debian kernel (modules-db's
    /// test data, shared so that the classification is tested on real strings).
    const CAPTURED: &str = include_str!("../../../modules-db/tests/data/qemu-modaliases.txt");

    fn is_net<'p>(modalias: &str, module_paths: impl IntoIterator<Item = &'p str>) -> bool {
        network_path(modalias, module_paths).is_some()
    }

    fn captured() -> impl Iterator<Item = &'static str> {
        CAPTURED.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
    }

    #[test]
    fn captured_qemu_devices_on_the_network_path_are_the_nics_usb_hosts_and_virtio_net() {
        let net: Vec<&str> = captured().filter(|m| is_net(m, [])).collect();
        assert_eq!(
            net,
            [
                // rtl8139, virtio-net-pci, qemu-xhci, e1000, e1000e, ICH9 EHCI, PIIX3 UHCI
                "pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00",
                "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
                "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30",
                "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
                "pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00",
                "pci:v00008086d000024CDsv00001AF4sd00001100bc0Csc03i20",
                "pci:v00008086d00007020sv00001AF4sd00001100bc0Csc03i00",
                "virtio:d00000001v00001AF4",
            ]
        );
    }

    #[test]
    fn storage_input_and_bridges_are_not_on_the_network_path() {
        for modalias in [
            "pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", // PIIX IDE
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // ICH9 AHCI
            "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", // virtio-blk-pci
            "pci:v00008086d00002930sv00001AF4sd00001100bc0Csc05i00", // SMBus: class 0C, not USB
            "virtio:d00000002v00001AF4",                             // virtio block
            "usb:v0627p0001d0000dc00dsc00dp00ic03isc01ip01in00",     // USB keyboard
            "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00",     // USB storage
            "usb:v1D6Bp0002d0601dc09dsc00dp00ic09isc00ip00in00",     // root hub
            "acpi:PNP0303:",
            "no colon here",
        ] {
            assert!(!is_net(modalias, []), "{modalias}");
        }
    }

    #[test]
    fn usb_network_interfaces_are_on_the_network_path() {
        // CDC Ethernet (cdc_ether) and RNDIS (rndis_host) interfaces of USB dongles.
        assert!(is_net("usb:v0BDAp8153d3000dc00dsc00dp00ic02isc06ip00in01", []));
        assert!(is_net("usb:v1D6Bp0104d0510dcEFdsc02dp01icE0isc01ip03in00", []));
        assert!(!is_net("usb:v0BDAp8153d3000dc00dsc00dp00ic02isc02ip01in00", []), "CDC ACM modem");
    }

    #[test]
    fn a_device_matched_by_a_network_driver_is_on_the_network_path_whatever_its_bus() {
        // An ASIX dongle's vendor-specific interface, driven by kernel/drivers/net/usb/.
        let asix = "usb:v0B95p772Bd0001dcFFdscFFdp00icFFiscFFipFFin00";
        assert!(!is_net(asix, ["kernel/drivers/usb/storage/usb-storage.ko"]));
        assert!(is_net(asix, ["kernel/drivers/net/usb/asix.ko"]));
        assert!(is_net("vmbus:635161f83edfc546913ff2d2f965ed0e", ["kernel/drivers/net/hyperv/hv_netvsc.ko"]));
        // POWER's hypervisor NIC on the vio bus, and ARM64 virt's virtio-mmio transport
        // (device tree), whose driver is virtio's, not a NIC's: only once it made the
        // virtio device does the virtio NIC rule apply.
        assert!(is_net("vio:TnetworkSIBM,l-lan", ["kernel/drivers/net/ethernet/ibm/ibmveth.ko"]));
        assert!(!is_net("of:Nvirtio_mmioT(null)Cvirtio,mmio", ["kernel/drivers/virtio/virtio_mmio.ko"]));
    }

    #[test]
    fn the_reason_is_the_kinds() {
        assert_eq!(
            network_path("pci:v00008086d00007020sv00001AF4sd00001100bc0Csc03i00", []),
            Some("USB host controller: USB NICs sit behind it")
        );
        assert_eq!(
            network_path("platform:x", ["kernel/drivers/net/ethernet/x.ko"]),
            Some("matched by a network driver")
        );
    }

    #[test]
    fn modalias_fields_are_read_by_tag_not_by_position() {
        let body = "v00008086d00007020sv00001AF4sd00001100bc0Csc03i00";
        assert_eq!(field(body, "bc"), Some("0C"));
        assert_eq!(field(body, "sc"), Some("03"));
        assert_eq!(field(body, "d"), Some("00007020"));
        assert_eq!(field(body, "sd"), Some("00001100"));
        assert_eq!(field(body, "x"), None);
    }
}
