//! Writing bpfkit programs and their maps as a BPF ELF object that libbpf, `bpftool prog
//! loadall` and [`crate::object::Object`] load — the layout clang gives C programs:
//!
//! * one code section per program, named by libbpf's conventions (`xdp`, `socket`,
//!   `tracepoint/<category>/<name>`, `tc`, …), with a global `STT_FUNC` symbol for the program;
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

use object::write::{Object as ElfWriter, Relocation, StandardSection, Symbol, SymbolSection};
use object::{elf, Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind, SymbolScope};

use crate::core_btf::{BtfBuilder, BtfError, IntEncoding, Linkage, Member, VarSecinfo};
use crate::insn::{Assembled, Imm64, Insn, MapRef};
use crate::maps::MapSpec;
use crate::prog::btf_info::{self, FuncInfoRecord, LineInfoRecord};

/// What can go wrong writing an object; each names the program or map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error("program \"{prog}\" refers to map \"{map}\", which the object does not define (add it with `ObjectWriter::map`)")]
    UnknownMap { prog: String, map: String },
    #[error("program \"{prog}\": instruction {index} `{what}` cannot be written to an object: {why}")]
    Unsupported { prog: String, index: usize, what: String, why: &'static str },
    #[error("two {what} are named \"{name}\"")]
    Duplicate { what: &'static str, name: String },
    #[error("program \"{prog}\": {source}")]
    Encode { prog: String, source: crate::insn::EncodeError },
    #[error("BTF for the object: {0}")]
    Btf(#[from] BtfError),
    #[error("ELF: {0}")]
    Elf(String),
    #[error("write {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

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
/// let read = bpfkit::elf::ElfObject::parse(&bytes)?;
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

        // .maps: one zeroed struct of 5 pointers per map, described in BTF.
        let map_struct_size = 5 * 8u32;
        let maps_sec = elf.add_section(Vec::new(), b".maps".to_vec(), SectionKind::Data);
        let int = btf.add_int("int", 4, IntEncoding::Signed, 32)?;
        let mut map_syms = Vec::with_capacity(self.maps.len());
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
        if !self.maps.is_empty() {
            btf.add_datasec(".maps", self.maps.len() as u32 * map_struct_size, &secinfo)?;
        }

        // Programs, with their map relocations and BTF func/line info.
        let mut ext_funcs: Vec<(u32, Vec<FuncInfoRecord>)> = Vec::new();
        let mut ext_lines: Vec<(u32, Vec<LineInfoRecord>)> = Vec::new();
        for p in &self.programs {
            let (slots, bytes, relocs) = self.encode_program(p)?;
            let (starts, _) = btf_info::function_starts(&slots);
            if starts.len() > 1 {
                let index = p.asm.insn_at_slot(starts[1] as usize).unwrap_or(0);
                return Err(WriteError::Unsupported {
                    prog: p.name.clone(),
                    index,
                    what: "call local".into(),
                    why: "bpf-to-bpf subprograms would have to move to .text, which this writer does not do yet",
                });
            }
            let sec = elf.add_section(Vec::new(), p.section.as_bytes().to_vec(), SectionKind::Text);
            elf.append_section_data(sec, &bytes, 8);
            elf.add_symbol(Symbol {
                name: p.name.as_bytes().to_vec(),
                value: 0,
                size: bytes.len() as u64,
                kind: SymbolKind::Text,
                scope: SymbolScope::Dynamic, // STV_DEFAULT: libbpf treats hidden symbols as static
                weak: false,
                section: SymbolSection::Section(sec),
                flags: SymbolFlags::None,
            });
            for (slot, map) in relocs {
                let symbol = map_syms[map];
                elf.add_relocation(sec, Relocation { offset: slot as u64 * 8, symbol, addend: 0, flags: RelocationFlags::Elf { r_type: elf::R_BPF_64_64 } })
                    .map_err(|e| WriteError::Elf(e.to_string()))?;
            }
            let (funcs, lines) = btf_info::add_program(&mut btf, &p.name, &p.asm, &starts)?;
            let sec_name = btf.add_string(&p.section)?;
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
        let _ = elf.section_id(StandardSection::Text); // an empty .text, as clang always emits
        elf.write().map_err(|e| WriteError::Elf(e.to_string()))
    }

    /// Write the object to `path`.
    pub fn write_to(&self, path: impl AsRef<std::path::Path>) -> Result<(), WriteError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|source| WriteError::Io { path: path.display().to_string(), source })
    }

    /// A program's bytes with every map reference zeroed, and `(slot, map index)` relocations.
    fn encode_program(&self, p: &ProgramEntry) -> Result<(Vec<crate::insn::RawInsn>, Vec<u8>, Vec<(usize, usize)>), WriteError> {
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
        let bytes = asm.to_bytes().map_err(|source| WriteError::Encode { prog: p.name.clone(), source })?;
        Ok((slots, bytes, relocs))
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
    out.extend(0xeB9Fu16.to_le_bytes());
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
