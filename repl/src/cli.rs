//! The top-level command line: global options and the choice of subcommand.
//!
//! The subcommands themselves (their arguments and behaviour) are in [`crate::commands`].

use clap::Parser;

use crate::commands::Command;

/// Write, assemble, load, attach and inspect eBPF programs — and see every instruction.
///
/// Without a subcommand, starts the REPL (`:help` lists its commands).
#[derive(Debug, Parser)]
#[command(name = "bpfkit", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Without a subcommand: run the REPL on the commands in FILE, echoing each line as
    /// `> LINE` before its output (as it does when stdin is not a terminal); exit status 1
    /// if any line failed.
    #[arg(long, value_name = "FILE")]
    pub script: Option<std::path::PathBuf>,
}
