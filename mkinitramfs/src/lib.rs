//! Builds the diskless initramfs for one kernel.
