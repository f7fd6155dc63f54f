//! `bpfkit obj FILE.o`: what a BPF object holds — its sections, programs (with the program
//! type, expected attach type and attach target their section names mean), maps, and
//! relocations — read with the library's object loader without touching the kernel.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use bpfkit::elf::{reloc_type, SectionKind};
use bpfkit::object::{MapOrigin, Object};

use crate::error::CliError;
use crate::io::write_output;

/// The arguments of `bpfkit obj` (its help text is on [`super::Command::Obj`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A BPF ELF object (`clang -target bpf -c …`, or one bpfkit wrote).
    #[arg(value_name = "FILE.o")]
    pub file: PathBuf,
}

/// Open `path` as a BPF object, naming the file in the error.
pub fn open(path: &std::path::Path) -> Result<Object, CliError> {
    Object::open(path).map_err(|source| CliError::Object { file: path.display().to_string(), source: Box::new(source) })
}

fn reloc_name(r_type: u32) -> &'static str {
    match r_type {
        reloc_type::R_BPF_64_64 => "R_BPF_64_64",
        reloc_type::R_BPF_64_ABS64 => "R_BPF_64_ABS64",
        reloc_type::R_BPF_64_ABS32 => "R_BPF_64_ABS32",
        reloc_type::R_BPF_64_NODYLD32 => "R_BPF_64_NODYLD32",
        reloc_type::R_BPF_64_32 => "R_BPF_64_32",
        reloc_type::R_BPF_NONE => "R_BPF_NONE",
        _ => "R_BPF_?",
    }
}

fn kind_name(kind: &SectionKind) -> &'static str {
    match kind {
        SectionKind::Program => "program",
        SectionKind::Data => "data",
        SectionKind::ReadOnlyData => "rodata",
        SectionKind::Bss => "bss",
        SectionKind::Maps => "maps",
        SectionKind::License => "license",
        SectionKind::Btf => "btf",
        SectionKind::BtfExt => "btf.ext",
        SectionKind::Relocations { .. } => "rel",
        SectionKind::SymbolTable => "symtab",
        SectionKind::StringTable => "strtab",
        _ => "other",
    }
}

/// The report `bpfkit obj` prints.
pub fn describe(obj: &Object) -> String {
    let elf = obj.elf();
    let mut out = String::new();
    let _ = writeln!(out, "object {}: license \"{}\", {} sections, BTF {}", obj.name(), obj.license(), elf.sections().len(), if obj.btf().is_some() { "yes" } else { "no" });
    let _ = writeln!(out, "\nsections:");
    for s in elf.sections().iter().filter(|s| s.index != 0) {
        let _ = writeln!(out, "  [{:>2}] {:<40} {:<8} {:>6} bytes", s.index, s.name, kind_name(&s.kind), s.size);
    }
    let _ = writeln!(out, "\nprograms:");
    for p in obj.programs() {
        let what = match &p.spec {
            Some(spec) => {
                let attach = spec.expected_attach_type.map(|a| format!(" attach {a}")).unwrap_or_default();
                format!("{}{attach} target {:?}", spec.prog_type, spec.target)
            }
            None => "unknown section type (not loaded)".into(),
        };
        let autoload = if p.autoload { "" } else { " (autoload off)" };
        let _ = writeln!(out, "  {} in {}: {what}{autoload}", p.name, p.section_name);
    }
    let _ = writeln!(out, "\nmaps:");
    for m in obj.maps() {
        let origin = match m.origin {
            MapOrigin::Btf { .. } => "BTF-defined",
            MapOrigin::Legacy { .. } => "legacy",
            MapOrigin::Data { readonly: true } => "global data (read-only)",
            MapOrigin::Data { readonly: false } => "global data",
            MapOrigin::Inner => "inner map",
            MapOrigin::StructOps { .. } => "struct_ops",
        };
        let _ = writeln!(out, "  {} ({}): {} key {} value {} max_entries {} flags {:#x}, {origin}", m.name, m.kernel_name, m.map_type, m.key_size, m.value_size, m.max_entries, m.flags.0);
    }
    let _ = writeln!(out, "\nrelocations:");
    // `relocations(section)` are those that apply to `section` (its `.rel<name>` table).
    for s in elf.sections() {
        if matches!(s.kind, SectionKind::Btf | SectionKind::BtfExt | SectionKind::Other | SectionKind::Relocations { .. }) {
            continue;
        }
        for r in elf.relocations(s) {
            let sym = elf.symbols().iter().find(|y| y.index == r.symbol).map_or("?", |y| y.name.as_str());
            let _ = writeln!(out, "  {}+{:#x} (insn {}): {} → {sym}", s.name, r.offset, r.offset / 8, reloc_name(r.r_type));
        }
    }
    out
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let obj = open(&args.file)?;
    write_output(None, stdout, describe(&obj).as_bytes())
}
