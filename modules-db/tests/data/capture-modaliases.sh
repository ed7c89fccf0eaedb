#!/bin/sh
# Captures the modalias strings of QEMU machines into qemu-modaliases.txt.
# Boots the rig's Debian kernel (-accel tcg) with a busybox initramfs whose /init
# loads the bus drivers (virtio_pci, USB host controllers, SCSI) so that devices
# behind them appear, then prints every /sys/devices/**/modalias and powers off.
# Usage: capture-modaliases.sh DEPMOD_BASEDIR VERSION > qemu-modaliases.txt
# (DEPMOD_BASEDIR: a copy of qemu/.cache/kernel/root's lib/modules on which
#  `depmod -b` ran, e.g. target/x86_64-unknown-linux-gnu/tmp/depmod-VERSION
#  left by `cargo test -p modules-db`.)
set -eu
base=$1 version=$2
here=$(cd "$(dirname "$0")" && pwd)
vmlinuz=$here/../../../qemu/.cache/kernel/root/boot/vmlinuz-$version
moddir=$base/lib/modules/$version
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Bus drivers to load in the guest; their dependencies come from modules.dep.
load="virtio_pci xhci_pci ehci_pci uhci_hcd virtio_scsi"
root=$work/root
mkdir -p "$root/bin" "$root/lib/modules/$version" "$root/proc" "$root/sys" "$root/dev"
cp /bin/busybox "$root/bin/busybox"
cp "$moddir/modules.dep" "$moddir/modules.alias" "$root/lib/modules/$version/"
for m in $load; do
    pat=$(echo "$m" | sed 's/[-_]/[-_]/g')
    grep -E "/$pat\.ko:" "$moddir/modules.dep" | tr -d ':' | tr ' ' '\n' | while read -r f; do
        [ -n "$f" ] || continue
        mkdir -p "$root/lib/modules/$version/$(dirname "$f")"
        cp "$moddir/$f" "$root/lib/modules/$version/$f"
    done
done
cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $load; do modprobe \$m; done
sleep 3
echo MODALIAS-BEGIN
find /sys/devices -name modalias | while read -r f; do cat "\$f"; done | sort -u
echo MODALIAS-END
poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$work/initrd"
for d in 0 1 2 3; do truncate -s 16M "$work/disk$d"; done

boot() {
    timeout 300 qemu-system-x86_64 -accel tcg -nographic -no-reboot -m 512 \
        -kernel "$vmlinuz" -initrd "$work/initrd" -append "console=ttyS0 panic=-1 quiet" "$@" </dev/null |
        tee -a "${LOG:-/dev/null}" | tr -d '\r' | sed -n '/MODALIAS-BEGIN/,/MODALIAS-END/p' | grep -v 'MODALIAS-'
}
{
    boot -M pc -device e1000 -device rtl8139 -device virtio-net-pci -device virtio-rng-pci \
        -drive if=none,id=d0,file="$work/disk0",format=raw -device virtio-blk-pci,drive=d0 \
        -device usb-ehci -device piix3-usb-uhci -device usb-kbd -device virtio-balloon-pci
    boot -M q35 -device e1000e -device ich9-ahci,id=ahci \
        -drive if=none,id=d1,file="$work/disk1",format=raw -device ide-hd,drive=d1,bus=ahci.0 \
        -drive if=none,id=d2,file="$work/disk2",format=raw -device nvme,drive=d2,serial=abc \
        -device qemu-xhci -device usb-tablet \
        -drive if=none,id=d3,file="$work/disk3",format=raw -device usb-storage,drive=d3 \
        -device virtio-scsi-pci -device virtio-serial-pci
} | sort -u
