//! `diskless`: the admin command (DESIGN §1). The command line is defined in
//! `diskless::admin::cli`, the logic in `diskless::admin` and the library modules.

use std::process::ExitCode;

use diskless::admin;

fn main() -> ExitCode {
    // clap prints --help and --version to stdout and exits 0, a wrong command line to
    // stderr with the usage and exits 2 (admin::EXIT_USAGE).
    let cli = admin::parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match admin::run(&cli.command, &mut std::io::stdout().lock()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("diskless: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
