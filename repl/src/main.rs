//! The `bpfkit` command: parses the command line and hands off to [`commands`].
//!
//! This file owns only process concerns: argument parsing, what happens when no
//! subcommand is given, and turning a [`error::CliError`] into `error: …` on stderr
//! and an exit status. Everything a subcommand does lives in its own file under
//! `commands/`.

mod cli;
mod commands;
mod error;
mod hex;
mod io;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let Some(command) = cli.command else {
        // The interactive REPL will run here; until it exists, say how to use the subcommands.
        let help = cli::Cli::command().render_help();
        let _ = writeln!(std::io::stderr(), "{help}");
        return ExitCode::from(2);
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
