//! The subcommands, one file each, and the [`Command`] enum that names them.
//!
//! Each subcommand module owns its clap arguments struct (`Args`) and a
//! `run(args, stdout)` that writes its normal output to `stdout` (so the REPL can
//! later run the same commands) and returns a [`CliError`] on failure. Adding a
//! subcommand means adding a module here and a variant to [`Command`].

pub mod asm;
pub mod disasm;

use std::io::Write;

use clap::Subcommand;

use crate::error::CliError;

/// The subcommands of `bpfkit`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Assemble program text (either dialect) to instruction bytes.
    ///
    /// Every line holds at most one instruction, in the mnemonic dialect (`mov r0, 0`)
    /// or the LLVM dialect (`r0 = 0`), after any number of `label:` definitions.
    /// Comments start with `#`, `//` or `;`. A map referenced by name
    /// (`lddw r1, map[counts]`) cannot be encoded without a loaded map.
    Asm(asm::Args),
    /// Decode instruction bytes and print them as text.
    Disasm(disasm::Args),
}

/// Run one subcommand, writing its output to `stdout` (unless it was told to write a file).
pub fn run(command: Command, stdout: &mut dyn Write) -> Result<(), CliError> {
    match command {
        Command::Asm(args) => asm::run(&args, stdout),
        Command::Disasm(args) => disasm::run(&args, stdout),
    }
}
