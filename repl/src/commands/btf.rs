//! `bpfkit btf`: reading BTF files — dump types as C or as bpftool's raw lines, find types by
//! name.
//!
//! `dump` without types prints the whole file: `--format c` is the header
//! `bpftool btf dump file … format c` writes (line for line), `--format raw` bpftool's
//! `[ID] KIND 'name' …` lines. With types (names or ids) it prints only those: raw lines, or
//! each type's C declaration (`--deps` makes it a header holding everything they need).
//! `find` lists every type with a name, and its CO-RE flavors (`name___suffix`).
//! `members` lays out a struct (offset, size, bitfield, declaration); `path` resolves
//! `task_struct->mm->arg_start` into CO-RE hops and prints the instructions that read it.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use bpfkit::core_btf::{Btf, BtfError, TypeId};
use clap::ValueEnum;

use crate::error::CliError;
use crate::io::write_output;

/// Where the running kernel's BTF is.
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The arguments of `bpfkit btf` (its help text is on [`super::Command::Btf`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: BtfCommand,
}

/// What `bpfkit btf` does.
#[derive(Debug, clap::Subcommand)]
pub enum BtfCommand {
    /// Print types: all of the file, or the TYPEs named (a name matches every type of that
    /// name; a number is a type id).
    Dump {
        /// `c`: C declarations; `raw`: bpftool's `[ID] KIND 'name' …` lines.
        #[arg(long, value_enum, default_value_t = DumpFormat::C)]
        format: DumpFormat,
        #[command(flatten)]
        file: FileArgs,
        /// With TYPEs and `--format c`: a header defining the TYPEs and everything they
        /// need, in an order that compiles, instead of only their own declarations.
        #[arg(long)]
        deps: bool,
        /// Write to OUT instead of stdout (`-` is stdout).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
        /// Type names or ids.
        #[arg(value_name = "TYPE")]
        types: Vec<String>,
    },
    /// List every type named NAME or NAME___FLAVOR: `[ID] KIND 'name' size=N`.
    Find {
        #[command(flatten)]
        file: FileArgs,
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Lay out a struct or union: each member's offset and size in bytes, a bitfield's bit
    /// offset and width, and its C declaration; members of anonymous structs and unions
    /// indented under them.
    Members {
        #[command(flatten)]
        file: FileArgs,
        /// `task_struct`, `struct sock`, or a typedef of a struct.
        #[arg(value_name = "TYPE")]
        name: String,
    },
    /// Resolve an access path through pointers (`task_struct->mm->arg_start`): each hop's
    /// struct, member and offset in this BTF, then the CO-RE instructions that read the value
    /// from a pointer in r6 into r0 (relocated by name on whichever kernel loads them).
    Path {
        #[command(flatten)]
        file: FileArgs,
        /// TYPE->member[->member…]; members may be nested (`signal->rlim[7].rlim_cur`).
        #[arg(value_name = "PATH")]
        expr: String,
    },
}

/// Which BTF file to read.
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The BTF file (raw BTF, as in /sys/kernel/btf/).
    #[arg(long, value_name = "PATH", default_value = VMLINUX)]
    pub file: PathBuf,
    /// For split BTF (a module's /sys/kernel/btf/MODULE): the base it extends.
    #[arg(long, value_name = "PATH")]
    pub base: Option<PathBuf>,
}

/// How `bpfkit btf dump` writes types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DumpFormat {
    /// C declarations, as `bpftool btf dump … format c`.
    C,
    /// `[ID] KIND 'name' …` lines, as `bpftool btf dump …`.
    Raw,
}

impl FileArgs {
    fn open(&self) -> Result<Btf, CliError> {
        let base = match &self.base {
            Some(path) => Some(Btf::from_file(path).map_err(|e| not_btf(path, e))?),
            None => None,
        };
        match &base {
            Some(base) => Btf::from_split_file(&self.file, base),
            None => Btf::from_file(&self.file),
        }
        .map_err(|e| not_btf(&self.file, e))
    }
}

/// A file that could not be read (the error names it), or is not BTF (say which file).
fn not_btf(path: &std::path::Path, e: BtfError) -> CliError {
    match e {
        BtfError::Io { .. } => CliError::Btf(e),
        e => CliError::Read {
            origin: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        },
    }
}

/// The types `arg` names: an id (`114`), or every type with that name.
fn lookup(btf: &Btf, arg: &str) -> Result<Vec<TypeId>, CliError> {
    if let Ok(id) = arg
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<u32>()
    {
        btf.kind_of(TypeId(id)).map_err(CliError::Btf)?;
        return Ok(vec![TypeId(id)]);
    }
    let ids = btf.find_by_name(arg);
    if ids.is_empty() {
        return Err(CliError::Btf(BtfError::NotFound {
            what: "type",
            name: arg.to_string(),
        }));
    }
    Ok(ids)
}

fn dump(btf: &Btf, format: DumpFormat, deps: bool, types: &[String]) -> Result<String, CliError> {
    let mut ids = Vec::new();
    for t in types {
        ids.extend(lookup(btf, t)?);
    }
    let all = types.is_empty();
    if all {
        ids.extend(btf.ids());
    }
    let mut out = String::new();
    match format {
        DumpFormat::C if all || deps => out = btf.c_dump_with_deps(&ids).map_err(CliError::Btf)?,
        DumpFormat::C => {
            for id in ids {
                let decl = btf.c_decl(id).map_err(CliError::Btf)?;
                let _ = writeln!(out, "/* {id} */\n{decl}\n");
            }
        }
        DumpFormat::Raw => {
            for id in ids {
                out.push_str(&btf.format_type_raw(id).map_err(CliError::Btf)?);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// `[ID] KIND 'name' size=N` for every type named `name` or `name___…`, in id order.
fn find(btf: &Btf, name: &str) -> Result<String, CliError> {
    let flavor = format!("{name}___");
    let mut out = String::new();
    // Base types first for split BTF: ids are numbered across both.
    for id in (1..=btf.last_id().0).map(TypeId) {
        let n = btf.name_of(id).map_err(CliError::Btf)?;
        if n != name && !n.starts_with(&flavor) {
            continue;
        }
        let kind = btf.kind_of(id).map_err(CliError::Btf)?;
        let _ = write!(out, "{id} {kind} '{n}'");
        if let Ok(size) = btf.size_of(id) {
            let _ = write!(out, " size={size}");
        }
        out.push('\n');
    }
    if out.is_empty() {
        return Err(CliError::Btf(BtfError::NotFound {
            what: "type",
            name: name.to_string(),
        }));
    }
    Ok(out)
}

/// `offset size  declaration` rows; bitfields as `byte:bit/width`.
fn members(btf: &Btf, name: &str) -> Result<String, CliError> {
    let rows = btf.member_rows(name).map_err(CliError::Btf)?;
    let id = btf
        .find_by_name(name.trim_start_matches("struct ").trim_start_matches("union "))
        .into_iter()
        .find_map(|id| btf.size_of(id).ok().map(|size| (id, size)));
    let mut out = String::new();
    if let Some((id, size)) = id {
        let _ = writeln!(out, "{name} ({id}, {size} bytes, {} members)", rows.len());
    }
    let _ = writeln!(out, "{:>10} {:>5}  member", "offset", "size");
    for r in &rows {
        let offset = if r.bitfield_bits > 0 {
            format!("{:#x}:{}/{}", r.bit_offset / 8, r.bit_offset % 8, r.bitfield_bits)
        } else {
            format!("{:#x}", r.bit_offset / 8)
        };
        let _ = writeln!(out, "{offset:>10} {:>5}  {}{}", r.size, "    ".repeat(r.depth), r.decl);
    }
    Ok(out)
}

/// The hops of an access path, then the instructions that read it (r6 → r0).
fn path(btf: &Btf, expr: &str) -> Result<String, CliError> {
    use bpfkit::helpers::core_read::core_read_path;
    use bpfkit::insn::format::{disassemble, DisasmOptions, Syntax};
    use bpfkit::insn::Reg;
    let access = btf.access_path(expr).map_err(CliError::Btf)?;
    let mut out = String::new();
    for (i, hop) in access.hops.iter().enumerate() {
        let decl = btf.c_member_decl(hop.ty, "").map_err(CliError::Btf)?;
        let _ = writeln!(out, "hop {}: {}->{} at {:#x} ({decl})", i + 1, hop.type_name, hop.path, hop.bit_offset / 8);
    }
    let _ = writeln!(out, "reads: {}, {} bytes{}", access.decl, access.size, if access.signed { ", signed" } else { "" });
    let program = core_read_path(Reg::R0, Reg::R6, &access, -8, Reg::R7).map_err(|e| CliError::Message(e.to_string()))?;
    let insns: Vec<_> = program.insns().cloned().collect();
    out.push_str("; r6: the pointer to the first struct; r0: the value (0 if a read faults); clobbers r1-r5, r7\n");
    out.push_str(&disassemble(&insns, DisasmOptions::new(Syntax::Llvm)));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    match &args.command {
        BtfCommand::Dump {
            format,
            file,
            deps,
            output,
            types,
        } => {
            let text = dump(&file.open()?, *format, *deps, types)?;
            write_output(output.as_deref(), stdout, text.as_bytes())
        }
        BtfCommand::Find { file, name } => {
            let text = find(&file.open()?, name)?;
            write_output(None, stdout, text.as_bytes())
        }
        BtfCommand::Members { file, name } => {
            let text = members(&file.open()?, name)?;
            write_output(None, stdout, text.as_bytes())
        }
        BtfCommand::Path { file, expr } => {
            let text = path(&file.open()?, expr)?;
            write_output(None, stdout, text.as_bytes())
        }
    }
}
