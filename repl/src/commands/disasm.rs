//! `bpfkit disasm`: instruction bytes → program text.
//!
//! Reads raw binary or hex text (see [`crate::hex`]), decodes it strictly, and
//! prints one instruction per line in either dialect, optionally with slot numbers
//! and encoded bytes. A length that is not a multiple of 8 is reported as a
//! truncated program; an undecodable slot is reported with its number.

use std::io::Write;
use std::path::PathBuf;

use bpfkit::insn::{decode_bytes, disassemble, DisasmOptions, Syntax};
use clap::ValueEnum;

use crate::error::CliError;
use crate::hex;
use crate::io::{write_output, Source};

/// The arguments of `bpfkit disasm` (its summary is on [`super::Command::Disasm`]).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Input format: when --input is not given, a FILE whose name ends in `.hex` or `.txt`, \
and stdin (`-`), are read as hex text; any other FILE is read as raw binary. So \
`bpfkit asm prog.s | bpfkit disasm -` works, and \
`bpfkit asm --format raw prog.s | bpfkit disasm --input raw -` too.

Hex text: `#` starts a comment that runs to the end of the line; all whitespace is \
ignored; the remaining hex digits are read two at a time as bytes (no `0x` prefixes).")]
pub struct Args {
    /// Which dialect to print.
    #[arg(long, value_enum, default_value_t = OutputSyntax::Llvm)]
    pub syntax: OutputSyntax,

    /// How the input is encoded [default: hex for stdin and *.hex / *.txt files, raw otherwise].
    #[arg(long, value_enum)]
    pub input: Option<InputFormat>,

    /// Prefix each instruction with its slot number.
    #[arg(long)]
    pub slots: bool,

    /// Prefix each instruction with its encoded bytes.
    #[arg(long)]
    pub bytes: bool,

    /// With a BPF object: only the program(s) in this section.
    #[arg(long, value_name = "NAME")]
    pub section: Option<String>,

    /// The instruction bytes, or a BPF ELF object; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

/// The dialect instructions are printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputSyntax {
    /// `r0 = 0x0`, as llvm-objdump and the verifier print.
    Llvm,
    /// `mov r0, 0`.
    Mnemonic,
}

impl From<OutputSyntax> for Syntax {
    fn from(s: OutputSyntax) -> Self {
        match s {
            OutputSyntax::Llvm => Syntax::Llvm,
            OutputSyntax::Mnemonic => Syntax::Mnemonic,
        }
    }
}

/// How the input bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Binary: 8 bytes per instruction slot.
    Raw,
    /// Hex text, as `bpfkit asm --format hex` writes it.
    Hex,
}

impl InputFormat {
    /// The format used when `--input` is not given: hex for stdin and `.hex`/`.txt` files.
    pub fn default_for(source: &Source) -> Self {
        match source {
            Source::Stdin => InputFormat::Hex,
            Source::File(p) => {
                let ext = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase);
                match ext.as_deref() {
                    Some("hex" | "txt") => InputFormat::Hex,
                    _ => InputFormat::Raw,
                }
            }
        }
    }
}

/// Read the instruction bytes from `source` in `format`.
fn read_bytes(source: &Source, format: InputFormat) -> Result<Vec<u8>, CliError> {
    match format {
        InputFormat::Raw => source.read_bytes(),
        InputFormat::Hex => {
            let text = source.read_text("not hex text: use `--input raw` for binary input")?;
            hex::parse(&text).map_err(|source_err| CliError::Hex {
                origin: source.origin(),
                source: source_err,
            })
        }
    }
}

/// A BPF object's programs, each under a `<section>: <name>` heading, as the ELF holds them
/// (before relocation: map references are `ld_imm64` of 0 with a relocation, as llvm-objdump
/// shows them).
fn disasm_object(args: &Args, bytes: Vec<u8>, stdout: &mut dyn Write) -> Result<(), CliError> {
    let origin = args.file.display().to_string();
    let object_err = |source: bpfkit::elf::ElfError| CliError::Object { file: origin.clone(), source: Box::new(source.into()) };
    let elf = bpfkit::elf::ElfObject::parse(bytes).map_err(object_err)?;
    let programs: Vec<_> = elf.programs().into_iter().filter(|p| args.section.as_ref().is_none_or(|s| *s == p.section_name)).collect();
    if programs.is_empty() {
        let sections: Vec<String> = elf.programs().into_iter().map(|p| p.section_name).collect();
        return Err(CliError::Object {
            file: origin.clone(),
            source: Box::new(bpfkit::object::ObjectError::Program {
                program: args.section.clone().unwrap_or_default(),
                reason: format!("no program in that section (programs are in: {})", sections.join(", ")),
            }),
        });
    }
    let mut text = String::new();
    for p in &programs {
        let slots = elf.program_instructions(p).map_err(object_err)?;
        let insns = bpfkit::insn::decode_slots(&slots).map_err(|e| CliError::Decode { origin: format!("{origin} section {}", p.section_name), source: e })?;
        let opts = DisasmOptions::new(args.syntax.into()).slot_numbers(args.slots).bytes(args.bytes);
        text.push_str(&format!("{}: {}\n{}\n", p.section_name, p.name, disassemble(&insns, opts)));
    }
    write_output(None, stdout, text.trim_end_matches('\n').as_bytes())?;
    write_output(None, stdout, b"\n")
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let source = Source::from_arg(&args.file);
    if let Source::File(path) = &source {
        let head = std::fs::File::open(path).ok().and_then(|mut f| {
            let mut magic = [0u8; 4];
            std::io::Read::read_exact(&mut f, &mut magic).ok().map(|_| magic)
        });
        if head == Some(*b"\x7fELF") {
            return disasm_object(args, source.read_bytes()?, stdout);
        }
    }
    let format = args
        .input
        .unwrap_or_else(|| InputFormat::default_for(&source));
    let bytes = read_bytes(&source, format)?;
    if !bytes.len().is_multiple_of(8) {
        return Err(CliError::Truncated {
            origin: source.origin(),
            len: bytes.len(),
        });
    }
    let insns = decode_bytes(&bytes).map_err(|e| CliError::Decode {
        origin: source.origin(),
        source: e,
    })?;
    let opts = DisasmOptions::new(args.syntax.into())
        .slot_numbers(args.slots)
        .bytes(args.bytes);
    write_output(None, stdout, disassemble(&insns, opts).as_bytes())
}
