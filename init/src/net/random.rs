//! Random numbers for protocol identifiers (DHCP xid, DNS query id) that never wait.
//!
//! The plain getrandom(2) call blocks until the kernel's random pool is initialised.
//! Early in a network boot that is often the case only about a second after the link
//! comes up (no disk, no input, few interrupts), so a blocking call delayed the first
//! DISCOVER by that much. These ids only have to differ between machines and tries, and
//! be hard to guess from outside; GRND_INSECURE (Linux 5.6+) returns the pool's output
//! at once, before it is fully seeded. Where even that fails, the MAC-derived seed and
//! the clock still make the value differ per machine.

use std::time::{SystemTime, UNIX_EPOCH};

/// A random u32 that never blocks.
pub fn u32_now(seed: u32) -> u32 {
    let mut bytes = [0u8; 4];
    match rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::INSECURE) {
        Ok(4) => u32::from_ne_bytes(bytes),
        _ => fallback(seed),
    }
}

/// Mixes the seed with the clock (splitmix-style finaliser), for kernels without
/// GRND_INSECURE.
fn fallback(seed: u32) -> u32 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(seed) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_values_differ() {
        let values: std::collections::BTreeSet<u32> = (0..64).map(|_| u32_now(7)).collect();
        assert!(values.len() > 60, "only {} distinct values out of 64", values.len());
    }

    #[test]
    fn fallback_depends_on_the_seed() {
        let a: std::collections::BTreeSet<u32> = (0..16).map(|_| fallback(1)).collect();
        let b: std::collections::BTreeSet<u32> = (0..16).map(|_| fallback(2)).collect();
        assert!(a.is_disjoint(&b), "fallback ignored its seed: {a:?} {b:?}");
    }
}
