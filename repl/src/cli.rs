//! The top-level command line: global options and the choice of subcommand.
//!
//! The subcommands themselves (their arguments and behaviour) are in [`crate::commands`].

use clap::Parser;

use crate::commands::Command;

/// Write, assemble, load, attach and inspect eBPF programs — and see every instruction.
#[derive(Debug, Parser)]
#[command(name = "bpfkit", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}
