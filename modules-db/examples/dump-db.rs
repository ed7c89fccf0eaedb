//! Writes a database for the given modules of a kernel tree to a file, for
//! inspecting its size: `dump-db BASEDIR VERSION OUT [MODULE...]` (no modules: all).

use std::collections::BTreeSet;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, version, out, names @ ..] = &args[..] else {
        return Err("usage: dump-db BASEDIR VERSION OUT [MODULE...]".into());
    };
    let km = modules_db::KernelModules::load(Path::new(base), version)?;
    let included: BTreeSet<String> = if names.is_empty() {
        km.modules.keys().cloned().collect()
    } else {
        km.closure(names.iter().map(String::as_str))?
    };
    let pci = std::fs::read_to_string("/usr/share/misc/pci.ids").ok();
    let bytes = modules_db::encode_with(&km, &included, modules_db::Split::ArchiveOnly, pci.as_deref());
    std::fs::write(out, &bytes)?;
    println!("{} modules, {} bytes", included.len(), bytes.len());
    Ok(())
}
