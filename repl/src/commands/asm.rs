//! `bpfkit asm`: program text → instruction bytes.
//!
//! Reads a file or stdin, parses it with the chosen dialect, resolves labels, and
//! encodes every instruction; writes the bytes as hex text or raw binary. Errors
//! keep their position: a syntax error shows the line with a caret, an undefined
//! label names the label and where it is used, and an instruction that cannot be
//! encoded (a map referenced by name, which needs a loaded map) names its line.

use std::io::Write;
use std::path::PathBuf;

use bpfkit::insn::{encode, parse_program_with, Assembled, Dialect, ParseOptions};
use clap::ValueEnum;

use crate::error::{snippet, CliError};
use crate::hex;
use crate::io::{write_output, Source};

/// The arguments of `bpfkit asm` (its help text is on [`super::Command::Asm`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which dialect the text is in (`auto` decides line by line).
    #[arg(long, value_enum, default_value_t = SourceSyntax::Auto)]
    pub syntax: SourceSyntax,

    /// How to write the bytes: `hex` is one 8-byte slot per line (`b7 00 00 00 00 00 00 00`),
    /// `raw` the binary bytes.
    #[arg(long, value_enum, default_value_t = OutputFormat::Hex)]
    pub format: OutputFormat,

    /// Write to OUT instead of stdout (`-` is stdout).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,

    /// The program text; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: PathBuf,
}

/// The dialect of the program text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SourceSyntax {
    /// Either dialect, decided per line.
    Auto,
    /// Only the mnemonic dialect (`mov r0, 0`).
    Mnemonic,
    /// Only the LLVM / verifier-log dialect (`r0 = 0`).
    Llvm,
}

impl From<SourceSyntax> for Dialect {
    fn from(s: SourceSyntax) -> Self {
        match s {
            SourceSyntax::Auto => Dialect::Auto,
            SourceSyntax::Mnemonic => Dialect::Mnemonic,
            SourceSyntax::Llvm => Dialect::Llvm,
        }
    }
}

/// How the assembled bytes are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lowercase hex pairs, one 8-byte instruction slot per line.
    Hex,
    /// The binary bytes, 8 per slot (little-endian, as the kernel takes them).
    Raw,
}

/// Parse `text` (named `origin` in messages) and resolve its labels; map names stay symbolic.
pub fn parse_and_assemble(
    text: &str,
    origin: &str,
    dialect: Dialect,
) -> Result<Assembled, CliError> {
    let opts = ParseOptions::new().dialect(dialect).origin(origin);
    let program = parse_program_with(text, &opts).map_err(CliError::Parse)?;
    program.assemble().map_err(|source| {
        let loc = source.loc();
        CliError::Assemble {
            snippet: loc.and_then(|l| snippet(text, l)),
            source,
        }
    })
}

/// Assemble `text` (named `origin` in messages) to bytes.
pub fn assemble(text: &str, origin: &str, dialect: Dialect) -> Result<Vec<u8>, CliError> {
    let assembled = parse_and_assemble(text, origin, dialect)?;
    // Encode one instruction at a time so that a failure can name the line it came from.
    let mut bytes = Vec::with_capacity(assembled.slot_count() * 8);
    for (insn, loc) in assembled.insns().iter().zip(assembled.locs()) {
        let slots = encode(insn).map_err(|source| CliError::Encode {
            snippet: loc.as_ref().and_then(|l| snippet(text, l)),
            loc,
            source,
        })?;
        bytes.extend(slots.iter().flat_map(|s| s.to_bytes()));
    }
    Ok(bytes)
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let source = Source::from_arg(&args.input);
    let text = source
        .read_text("`bpfkit asm` reads program text; use `bpfkit disasm` for instruction bytes")?;
    let bytes = assemble(&text, &source.origin(), args.syntax.into())?;
    let out = match args.format {
        OutputFormat::Hex => hex::format_slots(&bytes).into_bytes(),
        OutputFormat::Raw => bytes,
    };
    write_output(args.output.as_deref(), stdout, &out)
}
