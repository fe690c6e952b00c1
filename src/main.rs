//! The `custody` command: parse, run, map the outcome to an exit status.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Two TLS providers are compiled in (object_store's and ureq's): name
    // the one every TLS connection of this process uses.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        // A reader that stops early (`custody log | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("custody: error: {e:#}");
            if let Some(advice) = cli::advice(&e) {
                eprintln!("custody: hint: {advice}");
            }
            ExitCode::from(2)
        }
    }
}
