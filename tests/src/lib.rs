//! Test rig harness: builds initramfs images and boots QEMU, asserting on the serial console.
