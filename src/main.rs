//! The `custody` command: parse, run, map the outcome to an exit status.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("custody: error: {e:#}");
            if let Some(advice) = cli::advice(&e) {
                eprintln!("custody: hint: {advice}");
            }
            ExitCode::from(2)
        }
    }
}
