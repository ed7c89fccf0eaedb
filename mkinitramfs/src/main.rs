//! Builds the diskless initramfs for one kernel (see `mkinitramfs --help`).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match mkinitramfs::run(&args) {
        Ok(output) => print!("{output}"),
        Err(error) => {
            eprintln!("mkinitramfs: error: {error}");
            std::process::exit(1);
        }
    }
}
