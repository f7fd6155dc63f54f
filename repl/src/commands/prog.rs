//! `bpfkit prog`: the programs loaded in the kernel — list them, show one, and dump the
//! instructions the kernel runs (xlated: after the verifier's rewrites).
//!
//! Also home of what `prog` and `map` share: naming an object by id or pinned path
//! ([`Target`], [`open_pinned`]) and printing aligned rows ([`table`]).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use bpfkit::insn::{disassemble, DisasmOptions};
use bpfkit::prog::{LoadError, ProgInfo, Program};

use super::disasm::OutputSyntax;
use crate::error::CliError;
use crate::io::write_output;

/// The arguments of `bpfkit prog` (its help text is on [`super::Command::Prog`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ProgCommand,
}

/// What `bpfkit prog` does.
#[derive(Debug, clap::Subcommand)]
pub enum ProgCommand {
    /// One line per loaded program, by id:
    /// `ID TYPE NAME tag TAG xlated NB jited NB [maps IDS]`.
    List,
    /// The `list` line of one program.
    Show {
        /// A program id, or the path it is pinned at on a bpffs.
        #[arg(value_name = "ID|PATH")]
        target: Target,
    },
    /// Disassemble a program's instructions as the kernel rewrote them (`xlated`).
    ///
    /// Helper calls show the kernel's call offsets and map loads show map ids
    /// (`map[fd:ID]`), as the kernel reports them.
    Dump {
        /// Which instructions: `xlated` (the only form so far).
        #[arg(value_enum)]
        form: DumpForm,
        /// A program id, or the path it is pinned at on a bpffs.
        #[arg(value_name = "ID|PATH")]
        target: Target,
        /// Which dialect to print.
        #[arg(long, value_enum, default_value_t = OutputSyntax::Llvm)]
        syntax: OutputSyntax,
    },
}

/// The instructions `bpfkit prog dump` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpForm {
    /// After the verifier's rewrites, before JIT.
    Xlated,
}

/// A kernel object named on the command line: an id (all digits) or a pinned path.
#[derive(Debug, Clone)]
pub enum Target {
    Id(u32),
    Pinned(PathBuf),
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse()
                .map(Target::Id)
                .map_err(|_| format!("id {s} is out of range (ids are 32-bit)"))
        } else {
            Ok(Target::Pinned(PathBuf::from(s)))
        }
    }
}

/// Open the object pinned at `path`, checking that it is a `want` (`bpf-map`, `bpf-prog`:
/// the kernel's anon-inode names), since info and element calls would misread another kind.
pub fn open_pinned(path: &Path, want: &'static str) -> Result<OwnedFd, CliError> {
    let fd = bpfkit::os::obj_get(path).map_err(CliError::Pin)?;
    // /proc/self/fd/N of a bpf object reads `anon_inode:bpf-map`, `anon_inode:bpf-prog`, ….
    if let Ok(link) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        let link = link.to_string_lossy();
        let found = link.strip_prefix("anon_inode:").unwrap_or(&link);
        if found != want {
            return Err(CliError::WrongPinKind {
                path: path.display().to_string(),
                want,
                found: found.to_owned(),
            });
        }
    }
    Ok(fd)
}

/// Whether a failure to open by id means there is no such object (it was never there or is gone).
pub fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Rows of cells as text: each column padded to its widest cell, two spaces between
/// columns, no trailing spaces. Rows may have fewer cells than others.
pub fn table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            if !line.is_empty() {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A name for a table cell: `-` when empty, so columns stay countable.
pub fn name_cell(name: &str) -> String {
    if name.is_empty() {
        "-".into()
    } else {
        name.into()
    }
}

fn load_error(source: LoadError) -> CliError {
    CliError::Load {
        source: Box::new(source),
        snippet: None,
        log: None,
    }
}

/// Open the program `target` names.
fn open(target: &Target) -> Result<Program, CliError> {
    match target {
        Target::Id(id) => Program::from_id(*id).map_err(|e| match e {
            LoadError::Sys(s) if is_not_found(&s.source) => CliError::NoSuchId {
                kind: "prog",
                id: *id,
            },
            e => load_error(e),
        }),
        Target::Pinned(path) => {
            Program::from_fd(open_pinned(path, "bpf-prog")?).map_err(load_error)
        }
    }
}

/// The `list` row of a program.
fn row(info: &ProgInfo) -> Vec<String> {
    let prog_type = match info.prog_type {
        Some(t) => t.to_string(),
        None => format!("type({})", info.raw_type),
    };
    let mut row = vec![
        info.id.to_string(),
        prog_type,
        name_cell(&info.name),
        format!("tag {}", info.tag_hex()),
        format!("xlated {}B", info.xlated_len),
        format!("jited {}B", info.jited_len),
    ];
    if !info.map_ids.is_empty() {
        let ids: Vec<String> = info.map_ids.iter().map(u32::to_string).collect();
        row.push(format!("maps {}", ids.join(",")));
    }
    row
}

/// The rows of every loaded program, by id. Programs unloaded while the list is read are left out.
fn list_rows() -> Result<Vec<Vec<String>>, CliError> {
    let mut rows = Vec::new();
    for id in Program::all_ids().map_err(load_error)? {
        match Program::from_id(id) {
            Ok(prog) => rows.push(row(&prog.info().map_err(load_error)?)),
            Err(LoadError::Sys(s)) if is_not_found(&s.source) => {}
            // A type this bpfkit does not know yet still gets a line.
            Err(LoadError::UnknownType { id, raw }) => rows.push(vec![
                id.to_string(),
                format!("type({raw})"),
                "(unknown to bpfkit)".into(),
            ]),
            Err(e) => return Err(load_error(e)),
        }
    }
    Ok(rows)
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let out = match &args.command {
        ProgCommand::List => table(&list_rows()?),
        ProgCommand::Show { target } => table(&[row(&open(target)?.info().map_err(load_error)?)]),
        ProgCommand::Dump {
            form: DumpForm::Xlated,
            target,
            syntax,
        } => {
            let insns = open(target)?.xlated_insns().map_err(load_error)?;
            disassemble(
                &insns,
                DisasmOptions::new((*syntax).into()).slot_numbers(true),
            )
        }
    };
    write_output(None, stdout, out.as_bytes())
}
