//! The `tms` binary: parses the command line and reports errors in one line.
//! Bad settings exit with status 2, a run stopped by Ctrl-C or SIGTERM with 130, other failures with 1.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = tms::cli::Cli::parse();
    match tms::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", tms::cli::one_line(&err));
            if err.downcast_ref::<tms::config::ConfigError>().is_some() {
                ExitCode::from(2)
            } else if err.downcast_ref::<tms::cli::Interrupted>().is_some() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
