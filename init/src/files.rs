//! Files the boot leaves for the running system.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes through a temporary file and a rename, so a reader never sees a
/// half-written file.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(data)?;
    drop(f);
    fs::rename(&tmp, path)
}
