//! The subcommands, one file each, and the [`Command`] enum that names them.
//!
//! Each subcommand module owns its clap arguments struct (`Args`) and a
//! `run(args, stdout)` that writes its normal output to `stdout` (so the REPL can
//! later run the same commands) and returns a [`CliError`] on failure. Adding a
//! subcommand means adding a module here and a variant to [`Command`].

pub mod asm;
pub mod btf;
pub mod disasm;
pub mod features;
pub mod link;
pub mod load;
pub mod map;
pub mod obj;
pub mod prog;
pub mod run;
pub mod test;

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
    /// Decode instruction bytes and print them as text; given a BPF object (`FILE.o`), every
    /// program's instructions (or those of `--section NAME`).
    Disasm(disasm::Args),
    /// Probe what this kernel and process support: system facts, program, map and attach
    /// types (yes/no, the release each appeared in, how it was probed), and with `--helpers`
    /// which helpers each program type may call.
    Features(features::Args),
    /// Assemble program text, load it and test-run it: prints `retval=N duration_ns=N`.
    ///
    /// The program runs once (or `--repeat` times) through `BPF_PROG_TEST_RUN` on
    /// `--data-hex` (64 zero bytes by default for packet types). A verifier rejection
    /// prints the verifier's decisive line, the failing instruction and its source line,
    /// and exits with status 1. Maps the program names (`map[counts]`) are declared with
    /// `--map counts:hash:4:8:1024`.
    Run(run::Args),
    /// Run test cases (`--case 'INPUT => RETVAL'`) on program text through `BPF_PROG_TEST_RUN`
    /// and report each verdict and the coverage: blocks and branch directions, naming the
    /// source lines no case ran (`bpfkit::testing`). Exits 1 when a case fails, or with
    /// `--full-coverage` when coverage is not complete.
    Test(test::Args),
    /// Loaded programs: `list`, `show ID|PATH`, `dump xlated ID|PATH`.
    Prog(prog::Args),
    /// Maps in the kernel: `list`, `show ID|PATH`, `dump ID|PATH`.
    Map(map::Args),
    /// bpf_links in the kernel: `list`, `show ID|PATH`, `detach ID|PATH`.
    Link(link::Args),
    /// BTF files (the kernel's /sys/kernel/btf/vmlinux by default): `dump [--format c|raw]
    /// [TYPE...]` prints types as C (what `bpftool btf dump … format c` writes) or as
    /// bpftool's raw lines; `find NAME` lists every type of that name and its `___` flavors.
    Btf(btf::Args),
    /// Open a BPF object (`clang -target bpf`, or written by bpfkit), create its maps, load its
    /// programs (CO-RE against this kernel) and print their ids and sizes; `--pin DIR` keeps
    /// them pinned at DIR/<program> and DIR/maps/<map>.
    Load(load::Args),
    /// What a BPF object holds: sections, programs (type and attach target from their section
    /// names), maps and relocations. Reads the file only.
    Obj(obj::Args),
}

/// Run one subcommand, writing its output to `stdout` (unless it was told to write a file).
pub fn run(command: Command, stdout: &mut dyn Write) -> Result<(), CliError> {
    match command {
        Command::Asm(args) => asm::run(&args, stdout),
        Command::Disasm(args) => disasm::run(&args, stdout),
        Command::Features(args) => features::run(&args, stdout),
        Command::Run(args) => run::run(&args, stdout),
        Command::Test(args) => test::run(&args, stdout),
        Command::Prog(args) => prog::run(&args, stdout),
        Command::Map(args) => map::run(&args, stdout),
        Command::Link(args) => link::run(&args, stdout),
        Command::Btf(args) => btf::run(&args, stdout),
        Command::Load(args) => load::run(&args, stdout),
        Command::Obj(args) => obj::run(&args, stdout),
    }
}
