//! `diskless`: the admin command (DESIGN §1). The command line is defined in [`cli`],
//! the logic in `diskless::admin` and the library modules.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // clap prints --help and --version to stdout and exits 0, a wrong command line to
    // stderr with the usage and exits 2 (diskless::admin::EXIT_USAGE).
    let cli = cli::parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match cli::run(&cli.command, &mut std::io::stdout().lock()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("diskless: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
