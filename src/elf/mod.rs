//! Reading clang-built BPF objects (`clang -target bpf -g -O2 -c prog.c -o prog.o`): the
//! section table, the symbol table, each program section's instructions as 8-byte
//! [`RawInsn`] slots, the `.BTF` and `.BTF.ext` blobs, and the `.rel<section>` relocation
//! tables.
//!
//! [`ObjectWriter`] (`write.rs`) is the other direction: bpfkit programs and maps as an object
//! that libbpf and bpftool load.
//!
//! The reader is the reading half of an object loader and deliberately no more: nothing is
//! interpreted beyond what the ELF format itself says (which sections hold code, which symbols
//! are functions, which relocation points at which symbol). Map definitions, subprogram
//! linking, global data and CO-RE ([`crate::core_btf::relo`]) are built on top of it. All
//! tables are parsed once into owned, plain types ([`Section`], [`Symbol`], [`Relocation`],
//! [`ElfProgram`]), so a later loader can walk them freely without borrowing from the parser.
//!
//! Only little-endian 64-bit `EM_BPF` objects are read (`-target bpf` on a little-endian host,
//! or `bpfel`); an object file is untrusted input: every offset is bounds-checked, and malformed
//! input gives an [`ElfError`], never a panic.
//!
//! ```no_run
//! use bpfkit::elf::ElfObject;
//! let obj = ElfObject::from_file("prog.o")?;
//! for prog in obj.programs() {
//!     let insns = obj.program_instructions(&prog)?;
//!     println!("{} in {}: {} slots", prog.name, prog.section_name, insns.len());
//! }
//! # Ok::<(), bpfkit::elf::ElfError>(())
//! ```

mod write;

pub use write::{ObjectWriter, WriteError};

use crate::insn::RawInsn;
use object::elf;
use object::read::elf::{FileHeader, Rel as _, SectionHeader as _, Sym as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// `R_BPF_*` relocation types (llvm `ELFRelocs/BPF.def`).
pub mod reloc_type {
    /// No relocation.
    pub const R_BPF_NONE: u32 = 0;
    /// `ld_imm64` of a map or global variable address (two slots).
    pub const R_BPF_64_64: u32 = 1;
    /// 64-bit data word (e.g. in `.maps` or DWARF).
    pub const R_BPF_64_ABS64: u32 = 2;
    /// 32-bit data word.
    pub const R_BPF_64_ABS32: u32 = 3;
    /// 32-bit data word that a dynamic linker leaves alone (`.BTF`, `.BTF.ext`).
    pub const R_BPF_64_NODYLD32: u32 = 4;
    /// `call` of a function (bpf-to-bpf call, or a kfunc/extern when the symbol is undefined).
    pub const R_BPF_64_32: u32 = 10;
}

/// Everything that can go wrong reading an object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElfError {
    /// Reading the object file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a well-formed ELF file (or a table runs past its end).
    #[error("malformed ELF: {0}")]
    Malformed(String),
    /// A well-formed ELF file that is not a little-endian 64-bit BPF object.
    #[error("not a BPF object: {0}")]
    NotBpf(String),
    /// A section's content does not fit its kind (instructions not a multiple of 8 bytes, …).
    #[error("ELF section [{index}] '{name}': {reason}")]
    BadSection {
        /// The section's index in the section header table.
        index: usize,
        /// The section's name.
        name: String,
        /// What is wrong with its content.
        reason: String,
    },
}

impl From<object::read::Error> for ElfError {
    fn from(e: object::read::Error) -> Self {
        ElfError::Malformed(e.to_string())
    }
}

/// What a section holds, as libbpf classifies sections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// Instructions (`SHT_PROGBITS` with `SHF_EXECINSTR`): a program section such as
    /// `tracepoint/syscalls/sys_enter_openat`, or `.text` holding subprograms.
    Program,
    /// Writable initialised data (`.data`, `.data.*`).
    Data,
    /// Read-only data (`.rodata`, `.rodata.*`).
    ReadOnlyData,
    /// Zero-initialised data (`SHT_NOBITS`, `.bss`).
    Bss,
    /// BTF-defined map definitions (`.maps`).
    Maps,
    /// The `license` string.
    License,
    /// `.BTF`.
    Btf,
    /// `.BTF.ext`.
    BtfExt,
    /// `SHT_REL` relocations of section `target` (`.rel<name of target>`).
    Relocations {
        /// Index of the section the relocations apply to.
        target: usize,
    },
    /// `SHT_SYMTAB`.
    SymbolTable,
    /// `SHT_STRTAB`.
    StringTable,
    /// Anything else (DWARF, `.llvm_addrsig`, …).
    Other,
}

/// One section header, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Index in the section header table (what symbols' `st_shndx` and `sh_info` refer to).
    pub index: usize,
    /// The section's name (from `.shstrtab`).
    pub name: String,
    /// What the section holds.
    pub kind: SectionKind,
    /// `sh_type` (`SHT_*`).
    pub sh_type: u32,
    /// `sh_flags` (`SHF_*`).
    pub flags: u64,
    /// `sh_size`: bytes of content (for `SHT_NOBITS`, the size in memory).
    pub size: u64,
    /// `sh_addralign`: required alignment in bytes.
    pub align: u64,
    /// The content's byte range in the file; `None` for `SHT_NOBITS`.
    file_range: Option<Range<usize>>,
}

/// `STT_*` of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    /// `STT_NOTYPE`.
    NoType,
    /// `STT_OBJECT`: a data object (a map definition or a global variable).
    Object,
    /// `STT_FUNC`: a function (a program or subprogram).
    Func,
    /// `STT_SECTION`: the section itself.
    Section,
    /// `STT_FILE`: the source file name.
    File,
    /// Any other `STT_*` value, as stored.
    Other(u8),
}

/// `STB_*` of a symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolBinding {
    /// `STB_LOCAL`: visible within the object only.
    Local,
    /// `STB_GLOBAL`.
    Global,
    /// `STB_WEAK`: global, but may be overridden.
    Weak,
    /// Any other `STB_*` value, as stored.
    Other(u8),
}

/// One symbol table entry, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Index in the symbol table (what relocations' `r_sym` refers to).
    pub index: usize,
    /// The symbol's name (from `.strtab`); empty for unnamed symbols.
    pub name: String,
    /// `STT_*` type.
    pub kind: SymbolKind,
    /// `STB_*` binding.
    pub binding: SymbolBinding,
    /// The defining section's index; `None` for undefined (extern), absolute and common symbols.
    pub section: Option<usize>,
    /// `st_value`: for symbols in a section, the byte offset in it.
    pub value: u64,
    /// `st_size`: size in bytes (of a function, of a data object).
    pub size: u64,
    /// `STV_HIDDEN` or `STV_INTERNAL` (`__attribute__((visibility("hidden")))`): a global
    /// function libbpf has the verifier check as a static one.
    pub hidden: bool,
}

/// One `Elf64_Rel` entry of a `.rel<section>` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relocation {
    /// Byte offset in the relocated section (for code: slot × 8).
    pub offset: u64,
    /// Index of the referenced [`Symbol`] (0: none).
    pub symbol: usize,
    /// `R_BPF_*` ([`reloc_type`]).
    pub r_type: u32,
}

/// A function defined in a program section (`STT_FUNC`): a program (global function in its own
/// section) or a subprogram (usually in `.text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfProgram {
    /// The function's symbol name.
    pub name: String,
    /// Index of the section that holds it.
    pub section: usize,
    /// That section's name (e.g. `kprobe/do_sys_open`, `.text`).
    pub section_name: String,
    /// First slot in the section (`st_value / 8`).
    pub first_slot: usize,
    /// Number of slots (`st_size / 8`).
    pub slots: usize,
    /// The symbol's binding (`STB_GLOBAL` for programs, often `STB_LOCAL` for static subprograms).
    pub binding: SymbolBinding,
}

/// A parsed BPF object file. Owns its bytes; all tables are decoded up front.
#[derive(Clone, Debug)]
pub struct ElfObject {
    data: Vec<u8>,
    sections: Vec<Section>,
    symbols: Vec<Symbol>,
    /// Per section index, the relocations that apply to it (empty when it has none).
    relocations: Vec<Vec<Relocation>>,
}

type Header = elf::FileHeader64<object::Endianness>;

/// `e_ident` indexes (the `object` crate does not name them).
const EI_NIDENT: usize = 16;
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;

impl ElfObject {
    /// Read and parse an object file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ElfObject, ElfError> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| ElfError::Io { path: path.to_path_buf(), source })?;
        ElfObject::parse(data)
    }

    /// Parse an object from its bytes.
    pub fn parse(data: impl Into<Vec<u8>>) -> Result<ElfObject, ElfError> {
        let data = data.into();
        let (sections, symbols, relocations) = parse_tables(&data)?;
        Ok(ElfObject { data, sections, symbols, relocations })
    }

    /// The object's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Every section, in header table order (index 0 is the null section).
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// The section at header table index `index`.
    pub fn section(&self, index: usize) -> Option<&Section> {
        self.sections.get(index)
    }

    /// The first section named `name`.
    pub fn section_by_name(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// A section's bytes (empty for `SHT_NOBITS`).
    pub fn section_data(&self, section: &Section) -> &[u8] {
        section.file_range.clone().and_then(|r| self.data.get(r)).unwrap_or_default()
    }

    /// Sections holding instructions, in header table order.
    pub fn program_sections(&self) -> impl Iterator<Item = &Section> {
        self.sections.iter().filter(|s| s.kind == SectionKind::Program)
    }

    /// A section's content as instruction slots (its size must be a multiple of 8).
    pub fn instructions(&self, section: &Section) -> Result<Vec<RawInsn>, ElfError> {
        let bytes = self.section_data(section);
        if !bytes.len().is_multiple_of(8) {
            return Err(bad_section(
                section,
                format!("{} bytes is not a whole number of 8-byte instructions", bytes.len()),
            ));
        }
        Ok(bytes.chunks_exact(8).map(|c| RawInsn::from_bytes(c.try_into().unwrap_or_default())).collect())
    }

    /// The symbol table (index 0 is the null symbol); empty when the object has none.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }

    /// The relocations (`.rel<name>`) that apply to `section`, in table order.
    pub fn relocations(&self, section: &Section) -> &[Relocation] {
        self.relocations.get(section.index).map(Vec::as_slice).unwrap_or_default()
    }

    /// Every function defined in a program section, ordered by section, then offset.
    pub fn programs(&self) -> Vec<ElfProgram> {
        let mut out: Vec<ElfProgram> = self
            .symbols
            .iter()
            .filter(|s| s.kind == SymbolKind::Func)
            .filter_map(|s| {
                let section = self.sections.get(s.section?).filter(|sec| sec.kind == SectionKind::Program)?;
                Some(ElfProgram {
                    name: s.name.clone(),
                    section: section.index,
                    section_name: section.name.clone(),
                    first_slot: (s.value / 8) as usize,
                    slots: (s.size / 8) as usize,
                    binding: s.binding,
                })
            })
            .collect();
        out.sort_by_key(|p| (p.section, p.first_slot));
        out
    }

    /// The function named `name` in a program section.
    pub fn program(&self, name: &str) -> Option<ElfProgram> {
        self.programs().into_iter().find(|p| p.name == name)
    }

    /// A program's own instructions (its symbol's range within its section).
    pub fn program_instructions(&self, program: &ElfProgram) -> Result<Vec<RawInsn>, ElfError> {
        let section = self.section(program.section).ok_or_else(|| {
            ElfError::Malformed(format!(
                "program '{}' names section {} which does not exist",
                program.name, program.section
            ))
        })?;
        let all = self.instructions(section)?;
        program
            .first_slot
            .checked_add(program.slots)
            .and_then(|end| all.get(program.first_slot..end))
            .map(<[_]>::to_vec)
            .ok_or_else(|| {
                bad_section(
                    section,
                    format!(
                        "program '{}' (slots {}..+{}) runs past the section's {} slots",
                        program.name,
                        program.first_slot,
                        program.slots,
                        all.len()
                    ),
                )
            })
    }

    /// The `.BTF` section's bytes.
    pub fn btf(&self) -> Option<&[u8]> {
        self.section_by_name(".BTF").map(|s| self.section_data(s))
    }

    /// The `.BTF.ext` section's bytes.
    pub fn btf_ext(&self) -> Option<&[u8]> {
        self.section_by_name(".BTF.ext").map(|s| self.section_data(s))
    }

    /// The `license` section's string (up to its first NUL).
    pub fn license(&self) -> Option<&str> {
        let bytes = self.section_data(self.section_by_name("license")?);
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        std::str::from_utf8(&bytes[..end]).ok()
    }
}

fn bad_section(section: &Section, reason: String) -> ElfError {
    ElfError::BadSection { index: section.index, name: section.name.clone(), reason }
}

type Tables = (Vec<Section>, Vec<Symbol>, Vec<Vec<Relocation>>);

fn parse_tables(data: &[u8]) -> Result<Tables, ElfError> {
    let ident = data
        .get(..EI_NIDENT)
        .ok_or_else(|| ElfError::Malformed(format!("{} bytes is too short for an ELF header", data.len())))?;
    if ident[..4] != elf::ELFMAG {
        return Err(ElfError::Malformed("no ELF magic at byte 0".into()));
    }
    if ident[EI_CLASS] != elf::ELFCLASS64 {
        return Err(ElfError::NotBpf("32-bit ELF (BPF objects are ELF64)".into()));
    }
    if ident[EI_DATA] != elf::ELFDATA2LSB || cfg!(target_endian = "big") {
        return Err(ElfError::NotBpf("only little-endian objects on a little-endian host are read".into()));
    }
    let header = Header::parse(data)?;
    let endian = header.endian()?;
    let machine = header.e_machine(endian);
    if machine != elf::EM_BPF {
        return Err(ElfError::NotBpf(format!("e_machine {machine}, not EM_BPF ({})", elf::EM_BPF)));
    }
    let table = header.sections(endian, data)?;
    let mut sections = Vec::with_capacity(table.len());
    for (index, sh) in table.enumerate() {
        let name = String::from_utf8_lossy(table.section_name(endian, sh)?).into_owned();
        let sh_type = sh.sh_type(endian);
        let flags = sh.sh_flags(endian);
        let file_range = match sh.file_range(endian) {
            None => None,
            Some((off, len)) => {
                let range = usize::try_from(off)
                    .ok()
                    .zip(usize::try_from(len).ok())
                    .and_then(|(o, l)| Some(o..o.checked_add(l)?))
                    .filter(|r| r.end <= data.len());
                Some(range.ok_or_else(|| ElfError::BadSection {
                    index: index.0,
                    name: name.clone(),
                    reason: format!("content (offset {off}, {len} bytes) runs past the file's {} bytes", data.len()),
                })?)
            }
        };
        let kind = classify(&name, sh_type, flags, sh.sh_info(endian) as usize);
        sections.push(Section {
            index: index.0,
            name,
            kind,
            sh_type,
            flags,
            size: sh.sh_size(endian),
            align: sh.sh_addralign(endian),
            file_range,
        });
    }

    let symtab = table.symbols(endian, data, elf::SHT_SYMTAB)?;
    let mut symbols = Vec::with_capacity(symtab.len());
    for (index, sym) in symtab.enumerate() {
        let name = String::from_utf8_lossy(symtab.symbol_name(endian, sym)?).into_owned();
        let shndx = sym.st_shndx(endian);
        let section = match shndx {
            elf::SHN_UNDEF | elf::SHN_ABS | elf::SHN_COMMON => None,
            elf::SHN_XINDEX => symtab.shndx(endian, index).map(|i| i as usize),
            n if n >= elf::SHN_LORESERVE => None,
            n => Some(n as usize),
        };
        symbols.push(Symbol {
            index: index.0,
            name,
            kind: match sym.st_type() {
                elf::STT_NOTYPE => SymbolKind::NoType,
                elf::STT_OBJECT => SymbolKind::Object,
                elf::STT_FUNC => SymbolKind::Func,
                elf::STT_SECTION => SymbolKind::Section,
                elf::STT_FILE => SymbolKind::File,
                other => SymbolKind::Other(other),
            },
            binding: match sym.st_bind() {
                elf::STB_LOCAL => SymbolBinding::Local,
                elf::STB_GLOBAL => SymbolBinding::Global,
                elf::STB_WEAK => SymbolBinding::Weak,
                other => SymbolBinding::Other(other),
            },
            section,
            value: sym.st_value(endian),
            size: sym.st_size(endian),
            hidden: matches!(sym.st_other() & 3, elf::STV_HIDDEN | elf::STV_INTERNAL),
        });
    }

    let mut relocations = vec![Vec::new(); sections.len()];
    for (index, sh) in table.enumerate() {
        let Some((rels, _symtab)) = sh.rel(endian, data)? else { continue };
        let target = sh.sh_info(endian) as usize;
        let Some(slot) = relocations.get_mut(target) else {
            return Err(bad_section(&sections[index.0], format!("relocates section {target}, which does not exist")));
        };
        slot.extend(rels.iter().map(|r| Relocation {
            offset: r.r_offset(endian),
            symbol: r.r_sym(endian) as usize,
            r_type: r.r_type(endian),
        }));
    }
    Ok((sections, symbols, relocations))
}

fn classify(name: &str, sh_type: u32, flags: u64, info: usize) -> SectionKind {
    let flag = |f: u32| flags & u64::from(f) != 0;
    match (sh_type, name) {
        (elf::SHT_REL, _) => SectionKind::Relocations { target: info },
        (elf::SHT_SYMTAB, _) => SectionKind::SymbolTable,
        (elf::SHT_STRTAB, _) => SectionKind::StringTable,
        (elf::SHT_NOBITS, _) => SectionKind::Bss,
        (_, ".BTF") => SectionKind::Btf,
        (_, ".BTF.ext") => SectionKind::BtfExt,
        (_, ".maps") => SectionKind::Maps,
        (_, "license") => SectionKind::License,
        (elf::SHT_PROGBITS, _) if flag(elf::SHF_EXECINSTR) => SectionKind::Program,
        (elf::SHT_PROGBITS, _) if flag(elf::SHF_ALLOC) && flag(elf::SHF_WRITE) => SectionKind::Data,
        (elf::SHT_PROGBITS, _) if flag(elf::SHF_ALLOC) => SectionKind::ReadOnlyData,
        _ => SectionKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(ElfObject::parse(Vec::new()), Err(ElfError::Malformed(_))));
        assert!(matches!(ElfObject::parse(b"\x7fELF".to_vec()), Err(ElfError::Malformed(_))));
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&elf::ELFMAG);
        header[EI_CLASS] = elf::ELFCLASS32;
        assert!(matches!(ElfObject::parse(header.clone()), Err(ElfError::NotBpf(_))));
        header[EI_CLASS] = elf::ELFCLASS64;
        header[EI_DATA] = elf::ELFDATA2LSB;
        header[6] = elf::EV_CURRENT; // EI_VERSION
                                     // e_machine 0: a well-formed header, but not BPF.
        assert!(ElfObject::parse(header.clone()).is_err());
        // Every truncation of a header with a section table far past the end.
        header[18] = elf::EM_BPF as u8;
        header[40..48].copy_from_slice(&0xffff_ffffu64.to_le_bytes()); // e_shoff
        header[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        header[60..62].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        for len in 0..=header.len() {
            assert!(ElfObject::parse(header[..len].to_vec()).is_err(), "length {len}");
        }
    }

    #[test]
    fn section_kinds() {
        assert_eq!(
            classify(".text", elf::SHT_PROGBITS, (elf::SHF_ALLOC | elf::SHF_EXECINSTR) as u64, 0),
            SectionKind::Program
        );
        assert_eq!(classify(".rodata", elf::SHT_PROGBITS, elf::SHF_ALLOC as u64, 0), SectionKind::ReadOnlyData);
        assert_eq!(
            classify(".data", elf::SHT_PROGBITS, (elf::SHF_ALLOC | elf::SHF_WRITE) as u64, 0),
            SectionKind::Data
        );
        assert_eq!(classify(".reltp/x", elf::SHT_REL, 0, 3), SectionKind::Relocations { target: 3 });
        assert_eq!(classify(".BTF.ext", elf::SHT_PROGBITS, 0, 0), SectionKind::BtfExt);
    }
}

crate::error::errno_from_sources!(ElfError);
