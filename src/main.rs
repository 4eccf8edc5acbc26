//! The `tms` binary: parses the command line, dispatches it, and is the one place that maps errors
//! to exit statuses, in one line each. Bad input ([`tms::error::UsageError`]) exits with status 2, a run stopped by Ctrl-C or SIGTERM with 130, other failures with 1.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A fault we did not turn into an error (wgpu reports device loss and out-of-memory through
    // panics) still gets one line, not a backtrace; the run directory keeps its last checkpoint.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown failure".into());
            eprintln!("error: {} (the run directory keeps its last checkpoint; set RUST_BACKTRACE=1 for details)", message.replace('\n', " "));
        }));
    }
    let cli = tms::cli::Cli::parse();
    match tms::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", tms::error::one_line(&err));
            if err.downcast_ref::<tms::error::UsageError>().is_some() {
                ExitCode::from(2)
            } else if err.downcast_ref::<tms::error::Interrupted>().is_some() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
