//! The strata command: parse, set up logging, dispatch, report errors.

// Output goes through strata::console, which cannot panic on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use strata::cli::{parse_args, ArgsError};
use strata::errln;

fn main() {
    let cli = match parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(ArgsError::Input(e)) => fail(e),
        Err(ArgsError::Clap(e)) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = strata::cli::run(cli);
    // No tunnel pump may be inside libssh2 while the process exits.
    strata::guest::jump::close_all();
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(e),
    }
}

fn fail(e: strata::error::Error) -> ! {
    errln!("error: {e}");
    std::process::exit(e.exit_code());
}
