//! newc (SVR4 "070701") cpio archives as the kernel unpacks them into its rootfs.
