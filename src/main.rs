#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    bosun::cli::run(bosun::cli::Cli::parse())
}
