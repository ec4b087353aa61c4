//! `composure`: the command-line interface (and, in later versions, the daemon).

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Config(args) => commands::config::run(&cli.global.then(&args.global), args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::from(output::EXIT_FAILURE)
        }
    }
}
