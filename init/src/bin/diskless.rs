//! `diskless`: the admin CLI (DESIGN §1). The logic is in `diskless::admin`.

use std::process::ExitCode;

use diskless::admin;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let command = match admin::parse_args(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("diskless: {e}\n\n{}", admin::USAGE);
            return ExitCode::from(admin::EXIT_USAGE);
        }
    };
    match admin::run(&command, &mut std::io::stdout().lock()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("diskless: {e}");
            ExitCode::from(admin::EXIT_PROBLEMS)
        }
    }
}
