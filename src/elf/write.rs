//! Writing bpfkit programs and their maps as a BPF ELF object that libbpf, `bpftool prog
//! loadall` and [`crate::object::Object`] load — the layout clang gives C programs:
//!
//! * one code section per program, named by libbpf's conventions (`xdp`, `socket`,
//!   `tracepoint/<category>/<name>`, `tc`, …), with a global `STT_FUNC` symbol for the program;
//!   its bpf-to-bpf subprograms (`call local LABEL`) go to `.text` as static functions named
//!   `<program>__<label>`, and each call becomes `call -1` with a `R_BPF_64_32` relocation
//!   against the callee's symbol, as clang writes them;
//! * `.maps` holding BTF-defined maps: per map a global `STT_OBJECT` symbol and, in `.BTF`, a
//!   `VAR` of an anonymous struct `{ int (*type)[T]; int (*key_size)[K]; int (*value_size)[V];
//!   int (*max_entries)[N]; int (*map_flags)[F]; }` in the `DATASEC` `.maps` (what libbpf's
//!   `__uint()` macro expands to);
//! * a `R_BPF_64_64` relocation on every `ld_imm64` that names a map (`r1 = map[counts] ll`): the
//!   instruction itself holds 0, and the loader puts the map's fd there;
//! * `license` (NUL-terminated);
//! * `.BTF` with the map types and a `FUNC` per program, and `.BTF.ext` with func info and line
//!   info, so the verifier's log quotes bpfkit's source lines for the written object as it does
//!   for a program loaded directly.
//!
//! Written with the `object` crate's ELF writer (symbol and string tables, relocation sections);
//! the BTF comes from [`BtfBuilder`].

use object::write::{Object as ElfWriter, Relocation, StandardSection, Symbol, SymbolId, SymbolSection};
use object::{elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind, SymbolScope};

use crate::core_btf::{BtfBuilder, BtfError, IntEncoding, Linkage, Member, VarSecinfo};
use crate::insn::{Assembled, Imm64, Insn, MapRef, RawInsn};
use crate::maps::MapSpec;
use crate::prog::btf_info::{self, FuncInfoRecord, LineInfoRecord};

/// What can go wrong writing an object; each names the program or map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A program names a map the writer was not given.
    #[error("program \"{prog}\" refers to map \"{map}\", which the object does not define (add it with `ObjectWriter::map`)")]
    UnknownMap {
        /// The program's name.
        prog: String,
        /// The map name it refers to.
        map: String,
    },
    /// An instruction (at `index` in program `prog`) has no ELF form, e.g. a map bound by fd.
    #[error("program \"{prog}\": instruction {index} `{what}` cannot be written to an object: {why}")]
    Unsupported {
        /// The program's name.
        prog: String,
        /// The instruction's index in the program.
        index: usize,
        /// The instruction, as text.
        what: String,
        /// Why it has no ELF form.
        why: &'static str,
    },
    /// Two programs or maps have the same name.
    #[error("two {what} are named \"{name}\"")]
    Duplicate {
        /// `programs`, `program sections` or `maps`.
        what: &'static str,
        /// The name they share.
        name: String,
    },
    /// Encoding a program's instructions failed.
    #[error("program \"{prog}\": {source}")]
    Encode {
        /// The program's name.
        prog: String,
        /// The encoding error.
        source: crate::insn::EncodeError,
    },
    /// Building the object's `.BTF` failed.
    #[error("BTF for the object: {0}")]
    Btf(#[from] BtfError),
    /// The `object` crate could not write the ELF file.
    #[error("ELF: {0}")]
    Elf(String),
    /// Writing the file at `path` failed.
    #[error("write {path}: {source}")]
    Io {
        /// The file being written.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

const CALL: u8 = 0x85;
const LD_IMM64: u8 = 0x18;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_FUNC: u8 = 4;

struct ProgramEntry {
    section: String,
    name: String,
    asm: Assembled,
}

/// An object under construction: maps and programs, then [`to_bytes`](Self::to_bytes).
///
/// ```
/// use bpfkit::bpf_asm;
/// use bpfkit::elf::ObjectWriter;
/// use bpfkit::maps::{MapSpec, MapType};
///
/// let prog = bpf_asm! {
///     r1 = map[counts] ll
///     r0 = 2
///     exit
/// };
/// let mut obj = ObjectWriter::new("GPL");
/// obj.map(MapSpec::new("counts", MapType::Array, 4, 8, 1))
///     .program("xdp", "count_packets", &prog.assemble()?)?;
/// let bytes = obj.to_bytes()?;
/// let read = bpfkit::elf::ElfObject::parse(bytes)?;
/// assert_eq!(read.programs()[0].section_name, "xdp");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ObjectWriter {
    license: String,
    maps: Vec<MapSpec>,
    programs: Vec<ProgramEntry>,
}

impl ObjectWriter {
    /// An empty object whose programs carry `license` (e.g. `"GPL"`, which GPL-only helpers need).
    pub fn new(license: &str) -> ObjectWriter {
        ObjectWriter { license: license.to_owned(), maps: Vec::new(), programs: Vec::new() }
    }

    /// Define a map (type, key and value sizes, max entries and flags are written; the name is
    /// how programs refer to it).
    pub fn map(&mut self, spec: MapSpec) -> &mut Self {
        self.maps.push(spec);
        self
    }

    /// Add program `name` in section `section` (libbpf's naming: the section decides the
    /// program type and attach point).
    pub fn program(&mut self, section: &str, name: &str, asm: &Assembled) -> Result<&mut Self, WriteError> {
        if self.programs.iter().any(|p| p.name == name) {
            return Err(WriteError::Duplicate { what: "programs", name: name.to_owned() });
        }
        if self.programs.iter().any(|p| p.section == section) {
            return Err(WriteError::Duplicate { what: "program sections", name: section.to_owned() });
        }
        self.programs.push(ProgramEntry { section: section.to_owned(), name: name.to_owned(), asm: asm.clone() });
        Ok(self)
    }

    /// The object file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        for (i, m) in self.maps.iter().enumerate() {
            if self.maps[..i].iter().any(|o| o.name == m.name) {
                return Err(WriteError::Duplicate { what: "maps", name: m.name.clone() });
            }
        }
        let mut elf = ElfWriter::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);
        let mut btf = BtfBuilder::new();

        // .maps: one zeroed struct of 5 pointers per map, described in BTF (no section without
        // maps: libbpf expects a `.maps` section to have its DATASEC).
        let mut map_syms = Vec::with_capacity(self.maps.len());
        if !self.maps.is_empty() {
            let map_struct_size = 5 * 8u32;
            let maps_sec = elf.add_section(Vec::new(), b".maps".to_vec(), SectionKind::Data);
            let int = btf.add_int("int", 4, IntEncoding::Signed, 32)?;
            let mut secinfo = Vec::with_capacity(self.maps.len());
            for (i, m) in self.maps.iter().enumerate() {
                let mut field = |value: u32| -> Result<crate::core_btf::TypeId, BtfError> {
                    let arr = btf.add_array(int, int, value)?;
                    btf.add_ptr(arr)
                };
                let fields = [
                    ("type", field(m.map_type.raw())?),
                    ("key_size", field(m.key_size)?),
                    ("value_size", field(m.value_size)?),
                    ("max_entries", field(m.max_entries)?),
                    ("map_flags", field(m.flags.0)?),
                ];
                let members: Vec<Member<'_>> = fields.iter().enumerate().map(|(j, (name, ty))| Member::new(name, *ty, j as u32 * 64)).collect();
                let def = btf.add_struct("", map_struct_size, &members)?;
                let var = btf.add_var(&m.name, def, Linkage::Global)?;
                let offset = i as u64 * map_struct_size as u64;
                secinfo.push(VarSecinfo { ty: var, offset: offset as u32, size: map_struct_size });
                map_syms.push(elf.add_symbol(Symbol {
                    name: m.name.as_bytes().to_vec(),
                    value: offset,
                    size: map_struct_size as u64,
                    kind: SymbolKind::Data,
                    scope: SymbolScope::Dynamic, // STV_DEFAULT: libbpf treats hidden symbols as static
                    weak: false,
                    section: SymbolSection::Section(maps_sec),
                    flags: SymbolFlags::None,
                }));
            }
            elf.append_section_data(maps_sec, &vec![0u8; self.maps.len() * map_struct_size as usize], 8);
            btf.add_datasec(".maps", self.maps.len() as u32 * map_struct_size, &secinfo)?;
        }

        // Programs: each entry function in its own section, subprograms in `.text` (as clang
        // lays them out), with map and call relocations and BTF func/line info per section.
        let text_sec = elf.section_id(StandardSection::Text);
        let mut text: Vec<u8> = Vec::new();
        let mut text_relocs: Vec<(u64, SymbolId, u32)> = Vec::new();
        let mut ext: Vec<(String, Vec<FuncInfoRecord>, Vec<LineInfoRecord>)> = Vec::new();
        for p in &self.programs {
            let (mut slots, map_relocs) = self.encode_program(p)?;
            let (starts, takes_address) = btf_info::function_starts(&slots);
            if takes_address {
                let index = slots.iter().position(|s| s.code == LD_IMM64 && s.src() == PSEUDO_FUNC).and_then(|slot| p.asm.insn_at_slot(slot)).unwrap_or(0);
                return Err(WriteError::Unsupported {
                    prog: p.name.clone(),
                    index,
                    what: "ld_imm64 func[…]".into(),
                    why: "subprogram addresses (callbacks) are not written to objects yet",
                });
            }
            // Function k covers slots starts[k]..ends[k]; function 0 is the entry point.
            let ends: Vec<usize> = starts.iter().skip(1).map(|&s| s as usize).chain([slots.len()]).collect();
            let func_of = |slot: usize| starts.iter().rposition(|&s| s as usize <= slot).unwrap_or(0);
            // Where each function lands: (in .text?, first slot there).
            let mut place = Vec::with_capacity(starts.len());
            let mut text_slot = text.len() / 8;
            for (k, &start) in starts.iter().enumerate() {
                if k == 0 {
                    place.push((false, 0usize));
                } else {
                    place.push((true, text_slot));
                    text_slot += ends[k] - start as usize;
                }
            }
            let placed = |slot: usize| -> (bool, u64) {
                let k = func_of(slot);
                (place[k].0, (place[k].1 + slot - starts[k] as usize) as u64 * 8)
            };
            let sec = elf.add_section(Vec::new(), p.section.as_bytes().to_vec(), SectionKind::Text);
            let labels = p.asm.labels_by_slot();
            let mut syms = Vec::with_capacity(starts.len());
            for (k, &start) in starts.iter().enumerate() {
                let (in_text, first) = place[k];
                let size = (ends[k] - start as usize) as u64 * 8;
                let name = if k == 0 {
                    p.name.clone()
                } else {
                    let label = labels.iter().find(|(s, _)| *s == start as usize).map_or_else(|| format!("sub_{start}"), |(_, l)| (*l).to_owned());
                    format!("{}__{label}", p.name)
                };
                syms.push(elf.add_symbol(Symbol {
                    name: name.into_bytes(),
                    value: first as u64 * 8,
                    size,
                    kind: SymbolKind::Text,
                    // The entry point is global; subprograms are static functions, which libbpf
                    // verifies in their caller's context (as the kernel does for bpfkit's own loads).
                    scope: if in_text { SymbolScope::Compilation } else { SymbolScope::Dynamic },
                    weak: false,
                    section: SymbolSection::Section(if in_text { text_sec } else { sec }),
                    flags: SymbolFlags::None,
                }));
            }
            // bpf-to-bpf calls: `call -1` with R_BPF_64_32 against the callee's symbol.
            let mut call_relocs = Vec::new();
            let mut j = 0;
            while j < slots.len() {
                let s = slots[j];
                if s.code == CALL && s.src() == PSEUDO_CALL {
                    let target = (j as i64 + s.imm as i64 + 1) as usize;
                    let k = starts.iter().position(|&st| st as usize == target).ok_or_else(|| WriteError::Unsupported {
                        prog: p.name.clone(),
                        index: p.asm.insn_at_slot(j).unwrap_or(0),
                        what: "call local".into(),
                        why: "the call's target is not the start of a function",
                    })?;
                    slots[j].imm = -1;
                    call_relocs.push((j, syms[k]));
                }
                j += if s.code == LD_IMM64 { 2 } else { 1 };
            }
            let main_end = ends[0];
            let mut main_bytes = Vec::with_capacity(main_end * 8);
            for s in &slots[..main_end] {
                main_bytes.extend(s.to_bytes());
            }
            elf.append_section_data(sec, &main_bytes, 8);
            for s in &slots[main_end..] {
                text.extend(s.to_bytes());
            }
            let relocs = map_relocs.iter().map(|&(slot, m)| (slot, map_syms[m], elf::R_BPF_64_64)).chain(call_relocs.iter().map(|&(slot, sym)| (slot, sym, elf::R_BPF_64_32)));
            for (slot, symbol, r_type) in relocs {
                match placed(slot) {
                    (true, offset) => text_relocs.push((offset, symbol, r_type)),
                    (false, offset) => elf
                        .add_relocation(sec, Relocation { offset, symbol, addend: 0, flags: RelocationFlags::Elf { r_type } })
                        .map_err(|e| WriteError::Elf(e.to_string()))?,
                }
            }
            // Func and line records, moved to where their instructions went.
            let (funcs, lines) = btf_info::add_program(&mut btf, &p.name, &p.asm, &starts)?;
            let entry = ext_entry(&mut ext, &p.section);
            for (in_text, f) in funcs.iter().map(|f| (placed(f.insn_off as usize), f)) {
                let rec = FuncInfoRecord { insn_off: (in_text.1 / 8) as u32, ..*f };
                let i = if in_text.0 { ext_entry(&mut ext, ".text") } else { entry };
                ext[i].1.push(rec);
            }
            for (at, l) in lines.iter().map(|l| (placed(l.insn_off as usize), l)) {
                let rec = LineInfoRecord { insn_off: (at.1 / 8) as u32, ..*l };
                let i = if at.0 { ext_entry(&mut ext, ".text") } else { entry };
                ext[i].2.push(rec);
            }
        }
        elf.append_section_data(text_sec, &text, 8);
        for (offset, symbol, r_type) in text_relocs {
            elf.add_relocation(text_sec, Relocation { offset, symbol, addend: 0, flags: RelocationFlags::Elf { r_type } }).map_err(|e| WriteError::Elf(e.to_string()))?;
        }
        let mut ext_funcs = Vec::with_capacity(ext.len());
        let mut ext_lines = Vec::with_capacity(ext.len());
        for (name, funcs, lines) in ext {
            let sec_name = btf.add_string(&name)?;
            ext_funcs.push((sec_name, funcs));
            ext_lines.push((sec_name, lines));
        }

        let license = elf.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
        let mut text = self.license.as_bytes().to_vec();
        text.push(0);
        elf.append_section_data(license, &text, 1);
        elf.add_symbol(Symbol {
            name: b"_license".to_vec(),
            value: 0,
            size: text.len() as u64,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic, // STV_DEFAULT: libbpf treats hidden symbols as static
            weak: false,
            section: SymbolSection::Section(license),
            flags: SymbolFlags::None,
        });

        let btf_sec = elf.add_section(Vec::new(), b".BTF".to_vec(), SectionKind::Metadata);
        elf.append_section_data(btf_sec, &btf.encode(), 4);
        let ext_sec = elf.add_section(Vec::new(), b".BTF.ext".to_vec(), SectionKind::Metadata);
        elf.append_section_data(ext_sec, &btf_ext(&ext_funcs, &ext_lines), 4);
        elf.write().map_err(|e| WriteError::Elf(e.to_string()))
    }

    /// Write the object to `path`.
    pub fn write_to(&self, path: impl AsRef<std::path::Path>) -> Result<(), WriteError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|source| WriteError::Io { path: path.display().to_string(), source })
    }

    /// A program's bytes with every map reference zeroed, and `(slot, map index)` relocations.
    fn encode_program(&self, p: &ProgramEntry) -> Result<(Vec<RawInsn>, Vec<(usize, usize)>), WriteError> {
        let mut asm = p.asm.clone();
        let mut relocs = Vec::new();
        for i in 0..asm.insns().len() {
            let slot = asm.slot_of(i).unwrap_or(0);
            let insn = &mut asm.insns_mut()[i];
            let Insn::LdImm64 { value, .. } = insn else { continue };
            match value {
                Imm64::Map(MapRef::Name(name)) => {
                    let idx = self.maps.iter().position(|m| &m.name == name).ok_or_else(|| WriteError::UnknownMap { prog: p.name.clone(), map: name.clone() })?;
                    relocs.push((slot, idx));
                    *value = Imm64::Const(0);
                }
                Imm64::Map(MapRef::Fd(_)) | Imm64::MapValue { .. } | Imm64::MapIdx(_) | Imm64::MapIdxValue { .. } => {
                    return Err(WriteError::Unsupported {
                        prog: p.name.clone(),
                        index: i,
                        what: crate::insn::format_insn(insn, crate::insn::Syntax::Llvm),
                        why: "an object refers to maps by name (`map[NAME]`); fds, indexes and map values are not portable",
                    });
                }
                _ => {}
            }
        }
        let slots = asm.encode().map_err(|source| WriteError::Encode { prog: p.name.clone(), source })?;
        Ok((slots, relocs))
    }
}

/// The index of `section`'s func/line records in `ext`, added when new.
fn ext_entry(ext: &mut Vec<(String, Vec<FuncInfoRecord>, Vec<LineInfoRecord>)>, section: &str) -> usize {
    match ext.iter().position(|(s, _, _)| s == section) {
        Some(i) => i,
        None => {
            ext.push((section.to_owned(), Vec::new(), Vec::new()));
            ext.len() - 1
        }
    }
}

/// `.BTF.ext` version 1: the header, then func info and line info, each `rec_size` followed by
/// per-section `{ sec_name_off, num_info, records… }` with instruction offsets in bytes.
fn btf_ext(funcs: &[(u32, Vec<FuncInfoRecord>)], lines: &[(u32, Vec<LineInfoRecord>)]) -> Vec<u8> {
    const HDR_LEN: u32 = 32;
    let mut func_part = 8u32.to_le_bytes().to_vec();
    for (sec, recs) in funcs.iter().filter(|(_, r)| !r.is_empty()) {
        func_part.extend(sec.to_le_bytes());
        func_part.extend((recs.len() as u32).to_le_bytes());
        for r in recs {
            func_part.extend((r.insn_off * 8).to_le_bytes());
            func_part.extend(r.type_id.to_le_bytes());
        }
    }
    let mut line_part = 16u32.to_le_bytes().to_vec();
    for (sec, recs) in lines.iter().filter(|(_, r)| !r.is_empty()) {
        line_part.extend(sec.to_le_bytes());
        line_part.extend((recs.len() as u32).to_le_bytes());
        for r in recs {
            for w in [r.insn_off * 8, r.file_name_off, r.line_off, r.line_col] {
                line_part.extend(w.to_le_bytes());
            }
        }
    }
    let mut out = Vec::with_capacity(HDR_LEN as usize + func_part.len() + line_part.len());
    out.extend(0xEB9Fu16.to_le_bytes());
    out.push(1); // version
    out.push(0); // flags
    out.extend(HDR_LEN.to_le_bytes());
    let (func_off, func_len) = (0u32, func_part.len() as u32);
    let (line_off, line_len) = (func_len, line_part.len() as u32);
    for w in [func_off, func_len, line_off, line_len, line_off + line_len, 0] {
        out.extend(w.to_le_bytes());
    }
    out.extend(func_part);
    out.extend(line_part);
    out
}

crate::error::errno_from_sources!(WriteError);
