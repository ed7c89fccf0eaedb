//! PID 1 of the diskless initramfs. All logic lives in the `diskless` library.

use std::sync::Arc;

use diskless::boot::{Boot, boot};
use diskless::os::RealOs;

fn main() {
    // Started by hand (not by the kernel), init must not mount anything or load
    // modules on the machine it runs on: say what it is and leave.
    if rustix::process::getpid() != rustix::process::Pid::INIT {
        println!(
            "diskless init {}: PID 1 of a diskless initramfs (mkinitramfs builds it).\n\
             It runs only as process 1, started by the kernel; here it is process {}, so it does nothing.",
            env!("CARGO_PKG_VERSION"),
            rustix::process::getpid().as_raw_nonzero()
        );
        return;
    }
    boot(&Boot::pid1(Arc::new(RealOs)))
}
