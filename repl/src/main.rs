//! The `bpfkit` command: parses the command line and hands off to [`commands`].
//!
//! This file owns only process concerns: argument parsing, starting the REPL
//! ([`repl`]) when no subcommand is given, and turning a [`error::CliError`] into
//! `error: …` on stderr and an exit status. Everything a subcommand does lives in its
//! own file under `commands/`.

mod cli;
mod commands;
mod error;
mod hex;
mod io;
mod packet;
mod repl;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let Some(command) = cli.command else {
        return repl::main(cli.script.as_deref());
    };
    let stdout = std::io::stdout();
    match commands::run(command, &mut stdout.lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
