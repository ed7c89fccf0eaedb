//! The scratch disk as a cache of the image (`scratch.cache`, README "The scratch disk
//! as a cache of the image: measured"): the Debian image boots twice with `fsc` on the
//! root and the cache bound on the same scratch disk; the second boot reads its files'
//! data from the disk, not from the server. Console logs and captures:
//! `target/qemu-logs/scratch-cache-*`.

use qemu_tests::build::build_initramfs;
use qemu_tests::cache_boot::{self, ROOT_CACHED};
use qemu_tests::paths::log_dir;

#[test]
fn warm_boot_reads_file_data_from_the_scratch_cache() {
    let initrd = build_initramfs(&["--profile", "netboot"]);
    let disk = log_dir().unwrap().join("scratch-cache.raw");
    cache_boot::new_scratch(&disk, 512).unwrap();
    let cold = cache_boot::boot("scratch-cache-cold", &initrd, ROOT_CACHED, &disk).unwrap();
    let warm = cache_boot::boot("scratch-cache-warm", &initrd, ROOT_CACHED, &disk).unwrap();
    let (cold_log, warm_log) = (cold.run.log.path().display(), warm.run.log.path().display());
    for boot in [&cold, &warm] {
        boot.run.log.assert_line(r"^diskless: scratch cache bound on \S+/fscache \(held by pid \d+\)");
        boot.run.log.assert_no_line(r"diskless: ERROR");
    }
    let (_, written) = cold.cache_io().unwrap_or_else(|| panic!("no FSCACHE: IO line ({cold_log})"));
    assert!(written > 1000, "the cold boot wrote {written} pages to the cache ({cold_log})");
    let (read, rewritten) = warm.cache_io().unwrap_or_else(|| panic!("no FSCACHE: IO line ({warm_log})"));
    assert!(read > 1000 && rewritten == 0, "warm boot: {read} cache reads, {rewritten} writes ({warm_log})");
    // `rd` also counts the cold boot's misses: that the reads were served from the disk
    // shows in the server's READ calls (measured: 582 cold, 3 warm).
    assert!(cold.reads() > 100, "cold boot: {} NFS READ calls ({cold_log})", cold.reads());
    assert!(
        warm.reads() * 10 < cold.reads(),
        "warm {} READ calls against cold {} ({warm_log})",
        warm.reads(),
        cold.reads()
    );
}
