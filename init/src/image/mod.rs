//! The administrator's work on an image (the HOWTO's `diskless` script on the master):
//! the `local.d` lists of per-machine files, making an image diskless (`setup`), adding
//! and removing files, repairing what a package update broke (`fix`), checking the
//! image as the boot will see it, the `about` file, and the maintenance chroot.
//!
//! None of this is linked into PID 1: only the `diskless` command uses it.

pub mod about;
pub mod check;
pub mod chroot;
pub mod defaults;
pub mod fix;
pub mod lists;
pub mod setup;
pub mod tree;
