//! Relocation and linking, as libbpf's `bpf_object__relocate` does it: CO-RE relocations on
//! each code section, `ld_imm64` map / global data / subprogram-address relocations
//! (`R_BPF_64_64`), then each entry program gets the subprograms it calls appended depth-first
//! on first use, with `call` and `ld_imm64` function immediates pointing at the copies
//! (`R_BPF_64_32` and local calls), and kfunc calls resolved to vmlinux BTF ids.

use super::externs::{self, Extern, ExternKind};
use super::maps::{MapDef, MapOrigin};
use super::ObjectError;
use crate::core_btf::ext::BtfExt;
use crate::core_btf::relo::{CoreTarget, Relocator};
use crate::core_btf::{Btf, Kind};
use crate::elf::{reloc_type, ElfObject, ElfProgram, SectionKind};
use crate::insn::{Imm64, Insn, MapRef, RawInsn};
use std::collections::HashMap;

const LD_IMM64: u8 = 0x18;
const CALL: u8 = 0x85;
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
/// Put in the (otherwise zero) `off` of an `ld_imm64`'s second slot by [`relocate`] when it made
/// the instruction refer to a map of the object (its `imm` then the map's index), and taken out
/// by [`decode`]: an `ld_imm64` of a map that no relocation made (inline assembly's raw
/// `BPF_PSEUDO_MAP_FD`) keeps its number as an fd, as libbpf passes it to the kernel.
const OBJECT_MAP_MARK: i16 = 0x4d50;
const PSEUDO_BTF_ID: u8 = 3;
const PSEUDO_FUNC: u8 = 4;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_KFUNC_CALL: u8 = 2;

/// Where one function's copy landed in a linked program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    pub section_name: String,
    pub first_slot: usize,
    pub slots: usize,
    /// Its first slot in the linked program.
    pub start: usize,
}

/// Code sections after CO-RE and data relocations, ready to link programs from.
pub(crate) struct Relocated {
    sections: HashMap<usize, Vec<RawInsn>>,
    /// `ld_imm64` of a subprogram's address: (section, slot) → the subprogram's (section, slot).
    func_refs: HashMap<(usize, usize), (usize, usize)>,
    functions: Vec<ElfProgram>,
    /// Main program name → its exception callback's name (the `exception_callback:NAME` decl
    /// tag `__exception_cb` puts on the program's FUNC), appended to it as libbpf does.
    exception_cbs: HashMap<String, String>,
    /// The object's `__ksym` functions (kfuncs); any other extern function is defined in an
    /// object this one was meant to be linked with.
    kfuncs: std::collections::HashSet<String>,
    /// CO-RE relocations no candidate satisfied: their instructions are poisoned.
    poisoned: Vec<crate::core_btf::relo::Applied>,
}

/// The `exception_callback:NAME` decl tags of the object's BTF, by the tagged global FUNC's
/// name; a program tagged twice gets none (the verifier refuses it), as libbpf's
/// `bpf_prog_assign_exc_cb`.
fn exception_callbacks(local: Option<&Btf>) -> HashMap<String, String> {
    let mut out: HashMap<String, Option<String>> = HashMap::new();
    let Some(btf) = local else { return HashMap::new() };
    for id in btf.ids() {
        let Ok(t) = btf.type_by_id(id) else { continue };
        let crate::core_btf::TypeDetail::DeclTag { target, component_idx: -1, .. } = t.detail else { continue };
        let Some(cb) = t.name.strip_prefix("exception_callback:") else { continue };
        let Ok(f) = btf.type_by_id(target) else { continue };
        if !matches!(f.detail, crate::core_btf::TypeDetail::Func { linkage: crate::core_btf::Linkage::Global, .. }) || cb.is_empty() {
            continue; // libbpf refuses the object; the kernel would too.
        }
        out.entry(f.name.to_string()).and_modify(|e| *e = None).or_insert_with(|| Some(cb.to_string()));
    }
    out.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
}

fn reloc_err(section: &str, slot: usize, reason: impl Into<String>) -> ObjectError {
    ObjectError::Relocation { section: section.to_string(), slot, reason: reason.into() }
}

fn set_src(insn: &mut RawInsn, src: u8) {
    insn.regs = (insn.regs & 0x0f) | (src << 4);
}

/// Relocate every code section: CO-RE (against `target`, when the object has CO-RE records),
/// then `R_BPF_64_64` on `ld_imm64`.
pub(crate) fn relocate(
    elf: &ElfObject,
    maps: &[MapDef],
    ext_syms: &[Extern],
    local: Option<&Btf>,
    ext: Option<&BtfExt>,
    vmlinux: Option<&Btf>,
) -> Result<Relocated, ObjectError> {
    let mut sections = HashMap::new();
    for s in elf.program_sections() {
        sections.insert(s.index, elf.instructions(s)?);
    }
    let mut poisoned = Vec::new();
    if let (Some(local), Some(ext)) = (local, ext) {
        if ext.core_relos.iter().any(|s| !s.records.is_empty()) {
            let vmlinux = vmlinux
                .ok_or_else(|| ObjectError::Core { reason: "CO-RE relocations need the kernel's BTF".into() })?;
            let target = CoreTarget::new(vmlinux);
            let mut relocator = Relocator::new(local, &target);
            for sec in &ext.core_relos {
                let index = elf.section_by_name(&sec.name).map(|s| s.index);
                let insns = index.and_then(|i| sections.get_mut(&i)).ok_or_else(|| ObjectError::Core {
                    reason: format!(
                        ".BTF.ext has CO-RE records for section '{}', which is not a code section",
                        sec.name
                    ),
                })?;
                let applied = relocator
                    .relocate(&sec.name, insns, &sec.records)
                    .map_err(|e| ObjectError::Core { reason: format!("section '{}': {e}", sec.name) })?;
                poisoned.extend(applied.into_iter().filter(|a| a.is_poisoned()));
            }
        }
    }
    let mut func_refs = HashMap::new();
    let kallsyms = externs::kallsyms(ext_syms)?;
    for s in elf.program_sections() {
        let Some(insns) = sections.get_mut(&s.index) else { continue };
        for r in elf.relocations(s) {
            if r.r_type != reloc_type::R_BPF_64_64 {
                continue;
            }
            let slot = (r.offset / 8) as usize;
            let err = |why: String| reloc_err(&s.name, slot, why);
            if !r.offset.is_multiple_of(8) || slot + 1 >= insns.len() || insns[slot].code != LD_IMM64 {
                return Err(err("R_BPF_64_64 is not on an ld_imm64 instruction".into()));
            }
            let sym = elf.symbols().get(r.symbol).ok_or_else(|| err(format!("symbol {} does not exist", r.symbol)))?;
            let Some(sym_sec) = sym.section else {
                let ext = ext_syms.iter().find(|e| e.name == sym.name);
                // What libbpf's `bpf_object__relocate_data` puts in the ld_imm64: a kconfig
                // extern's address in the `.kconfig` map, a typed ksym's vmlinux BTF id, or an
                // address (a `void` ksym's from kallsyms; 0 for an unresolved weak extern).
                let address = match ext.map(|e| &e.kind) {
                    Some(&ExternKind::Kconfig { offset, .. }) => {
                        let idx = maps
                            .iter()
                            .position(|m| m.name == externs::KCONFIG_SEC && matches!(m.origin, MapOrigin::Data { .. }))
                            .ok_or_else(|| err(format!("kconfig extern '{}' has no .kconfig map", sym.name)))?;
                        set_src(&mut insns[slot], PSEUDO_MAP_VALUE);
                        insns[slot + 1].off = OBJECT_MAP_MARK;
                        insns[slot].imm = idx as i32;
                        insns[slot + 1].imm = offset as i32;
                        continue;
                    }
                    Some(ExternKind::Ksym { typed: false, .. }) => match kallsyms.get(&sym.name) {
                        Some(&addr) => addr,
                        None if ext.is_some_and(|e| e.weak) => 0,
                        None => return Err(err(format!("extern (ksym) '{}' is not in /proc/kallsyms", sym.name))),
                    },
                    _ => {
                        let vml =
                            vmlinux.ok_or_else(|| err(format!("extern '{}' needs the kernel's BTF", sym.name)))?;
                        let id = match ext {
                            Some(e) => externs::ksym_var_btf_id(e, vml)?,
                            None => vml.find_by_name_kind(&sym.name, Kind::Var).map(|id| id.0),
                        };
                        match id {
                            Some(id) => {
                                set_src(&mut insns[slot], PSEUDO_BTF_ID);
                                insns[slot].imm = id as i32;
                                insns[slot + 1].imm = 0;
                                continue;
                            }
                            None if ext.is_some() => 0,
                            None => {
                                return Err(err(format!(
                                    "extern '{}' is not a kernel variable in vmlinux BTF",
                                    sym.name
                                )))
                            }
                        }
                    }
                };
                set_src(&mut insns[slot], 0);
                insns[slot].imm = address as u32 as i32;
                insns[slot + 1].imm = (address >> 32) as u32 as i32;
                continue;
            };
            let kind = elf.section(sym_sec).map(|x| x.kind);
            if kind == Some(SectionKind::Program) {
                let target = i64::from(insns[slot].imm).wrapping_add(sym.value as i64) / 8;
                set_src(&mut insns[slot], PSEUDO_FUNC);
                func_refs.insert(
                    (s.index, slot),
                    (
                        sym_sec,
                        usize::try_from(target).map_err(|_| err(format!("function address {target} is negative")))?,
                    ),
                );
                continue;
            }
            let by_offset = |m: &MapDef| matches!(m.origin, MapOrigin::Btf { offset } | MapOrigin::Legacy { offset } if offset == sym.value);
            if let Some(idx) = maps.iter().position(|m| m.section == sym_sec && by_offset(m)) {
                set_src(&mut insns[slot], PSEUDO_MAP_FD);
                insns[slot + 1].off = OBJECT_MAP_MARK;
                insns[slot].imm = idx as i32;
            } else if let Some(idx) =
                maps.iter().position(|m| m.section == sym_sec && matches!(m.origin, MapOrigin::Data { .. }))
            {
                let offset = i64::from(insns[slot].imm).wrapping_add(sym.value as i64);
                set_src(&mut insns[slot], PSEUDO_MAP_VALUE);
                insns[slot + 1].off = OBJECT_MAP_MARK;
                insns[slot].imm = idx as i32;
                insns[slot + 1].imm = i32::try_from(offset)
                    .map_err(|_| err(format!("offset {offset} into '{}' is out of range", maps[idx].name)))?;
            } else {
                let sec_name = elf.section(sym_sec).map_or("?", |x| x.name.as_str());
                return Err(err(format!(
                    "symbol '{}' in section '{sec_name}' is neither a map nor global data",
                    sym.name
                )));
            }
        }
    }
    let kfuncs = ext_syms
        .iter()
        .filter(|e| matches!(e.kind, externs::ExternKind::Ksym { func: true, .. }))
        .map(|e| e.name.clone())
        .collect();
    let exception_cbs = exception_callbacks(local);
    Ok(Relocated { sections, func_refs, functions: elf.programs(), exception_cbs, kfuncs, poisoned })
}

impl Relocated {
    /// The CO-RE relocation that poisoned slot `slot` of a program linked from `placed`, in
    /// libbpf's words (`failed to resolve CO-RE relocation <byte_off> [5] struct s.a (0:0 @
    /// offset 0)`), for a verifier rejection at that slot.
    pub(crate) fn poisoned_at(&self, placed: &[Placement], slot: usize) -> Option<String> {
        let p = placed.iter().find(|p| (p.start..p.start + p.slots).contains(&slot))?;
        let at = p.first_slot + (slot - p.start);
        let a = crate::core_btf::relo::find_poisoned(&self.poisoned, &p.section_name, at)?;
        Some(format!("failed to resolve CO-RE relocation {}", a.spec))
    }

    /// Program `prog`'s instructions with its subprograms appended (libbpf's order).
    pub(crate) fn link(
        &self,
        elf: &ElfObject,
        prog: &ElfProgram,
        vmlinux: Option<&Btf>,
    ) -> Result<(Vec<RawInsn>, Vec<Placement>), ObjectError> {
        let mut out = Vec::new();
        let mut placed = HashMap::new();
        self.append(elf, prog, vmlinux, &mut out, &mut placed, 0)?;
        // The exception callback is not called, only named: appended after the rest unless a
        // call placed it already (which the verifier refuses).
        if let Some(cb) = self.exception_cbs.get(&prog.name) {
            let text = elf.section_by_name(".text").map(|s| s.index);
            let f = self.functions.iter().find(|f| Some(f.section) == text && &f.name == cb).ok_or_else(|| {
                let why = format!("exception callback '{cb}' of program '{}' is not a subprogram of the object", prog.name);
                reloc_err(&prog.section_name, prog.first_slot, why)
            })?;
            if !placed.contains_key(&(f.section, f.first_slot)) {
                self.append(elf, f, vmlinux, &mut out, &mut placed, 0)?;
            }
        }
        let mut placements: Vec<Placement> = placed
            .into_iter()
            .filter_map(|((section, first_slot), start)| {
                let f = self.functions.iter().find(|f| f.section == section && f.first_slot == first_slot)?;
                Some(Placement { section_name: f.section_name.clone(), first_slot, slots: f.slots, start })
            })
            .collect();
        placements.sort_by_key(|p| p.start);
        Ok((out, placements))
    }

    fn append(
        &self,
        elf: &ElfObject,
        f: &ElfProgram,
        vmlinux: Option<&Btf>,
        out: &mut Vec<RawInsn>,
        placed: &mut HashMap<(usize, usize), usize>,
        depth: usize,
    ) -> Result<usize, ObjectError> {
        let err = |slot: usize, why: String| reloc_err(&f.section_name, slot, why);
        if depth > 256 {
            return Err(err(f.first_slot, "subprogram calls nest deeper than 256".into()));
        }
        let start = out.len();
        placed.insert((f.section, f.first_slot), start);
        let body = self
            .sections
            .get(&f.section)
            .and_then(|s| s.get(f.first_slot..f.first_slot.checked_add(f.slots)?))
            .ok_or_else(|| err(f.first_slot, format!("function '{}' runs past its section", f.name)))?;
        out.extend_from_slice(body);
        let section = elf.section(f.section).ok_or_else(|| err(0, "section does not exist".into()))?;
        let relocs = elf.relocations(section);
        let mut i = 0;
        while i < f.slots {
            let insn = out[start + i];
            let slot = f.first_slot + i;
            i += if insn.code == LD_IMM64 { 2 } else { 1 };
            let callee = if insn.code == CALL && matches!(insn.src(), PSEUDO_CALL | PSEUDO_KFUNC_CALL) {
                let reloc = relocs.iter().find(|r| r.offset == slot as u64 * 8 && r.r_type == reloc_type::R_BPF_64_32);
                match reloc {
                    Some(r) => {
                        let sym = elf
                            .symbols()
                            .get(r.symbol)
                            .ok_or_else(|| err(slot, format!("symbol {} does not exist", r.symbol)))?;
                        match sym.section {
                            Some(sec) => (sec, (sym.value / 8) as i64 + i64::from(insn.imm) + 1),
                            None => {
                                if !self.kfuncs.contains(&sym.name) {
                                    return Err(err(slot, format!(
                                        "extern function '{}' is not a __ksym (kfunc): it is defined in another \
                                         object, link the objects first",
                                        sym.name
                                    )));
                                }
                                // A kfunc: its vmlinux BTF id.
                                let vml = vmlinux
                                    .ok_or_else(|| err(slot, format!("kfunc '{}' needs the kernel's BTF", sym.name)))?;
                                let id = vml
                                    .find_by_name_kind(&sym.name, Kind::Func)
                                    .ok_or_else(|| err(slot, format!("kfunc '{}' is not in vmlinux BTF", sym.name)))?;
                                let c = &mut out[start + i - 1];
                                set_src(c, PSEUDO_KFUNC_CALL);
                                c.imm = id.0 as i32;
                                c.off = 0;
                                continue;
                            }
                        }
                    }
                    None => (f.section, slot as i64 + i64::from(insn.imm) + 1),
                }
            } else if insn.code == LD_IMM64 && insn.src() == PSEUDO_FUNC {
                let &(sec, target) = self
                    .func_refs
                    .get(&(f.section, slot))
                    .ok_or_else(|| err(slot, "ld_imm64 of a function without a relocation".into()))?;
                (sec, target as i64)
            } else {
                continue;
            };
            let callee = self
                .functions
                .iter()
                .find(|p| p.section == callee.0 && p.first_slot as i64 == callee.1)
                .ok_or_else(|| {
                    err(
                        slot,
                        format!("call target (section {}, slot {}) is not the start of a function", callee.0, callee.1),
                    )
                })?;
            let at = match placed.get(&(callee.section, callee.first_slot)) {
                Some(&at) => at,
                None => self.append(elf, callee, vmlinux, out, placed, depth + 1)?,
            };
            let here = start + slot - f.first_slot;
            out[here].imm = at as i32 - here as i32 - 1;
        }
        Ok(start)
    }
}

/// Decode linked slots and name each map operand by its kernel name.
pub(crate) fn decode(prog: &str, slots: &[RawInsn], maps: &[MapDef]) -> Result<Vec<Insn>, ObjectError> {
    // The slots whose map operand a relocation set: an index into `maps`.
    let mut slots = slots.to_vec();
    let mut object_maps = std::collections::HashSet::new();
    for i in 0..slots.len().saturating_sub(1) {
        if slots[i].code == LD_IMM64 && slots[i + 1].code == 0 && slots[i + 1].off == OBJECT_MAP_MARK {
            slots[i + 1].off = 0;
            object_maps.insert(i);
        }
    }
    let mut insns = crate::insn::decode_slots(&slots).map_err(|e| ObjectError::Program {
        program: prog.to_string(),
        reason: format!("relocated instructions do not decode: {e}"),
    })?;
    let mut slot = 0;
    for insn in &mut insns {
        let at = slot;
        slot += if matches!(insn, Insn::LdImm64 { .. }) { 2 } else { 1 };
        if !object_maps.contains(&at) {
            continue;
        }
        if let Insn::LdImm64 { value: Imm64::Map(m) | Imm64::MapValue { map: m, .. }, .. } = insn {
            if let MapRef::Fd(idx) = *m {
                let def = usize::try_from(idx).ok().and_then(|i| maps.get(i)).ok_or_else(|| ObjectError::Program {
                    program: prog.to_string(),
                    reason: format!("map index {idx} out of range"),
                })?;
                *m = MapRef::Name(def.kernel_name.clone());
            }
        }
    }
    Ok(insns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::MapType;

    #[test]
    fn only_relocated_map_loads_name_object_maps() {
        let maps = vec![MapDef::new("counts".into(), "counts".into(), MapOrigin::Btf { offset: 0 }, 3, MapType::Hash)];
        let exit = RawInsn::new(0x95, 0, 0, 0, 0);
        // `r1 = map[0]` as a relocation made it (index, marked), and as inline assembly wrote
        // it (`BPF_PSEUDO_MAP_FD` with fd 0, unmarked).
        let relocated = [RawInsn::new(LD_IMM64, 1, PSEUDO_MAP_FD, 0, 0), RawInsn::new(0, 0, 0, OBJECT_MAP_MARK, 0), exit];
        let raw = [RawInsn::new(LD_IMM64, 1, PSEUDO_MAP_FD, 0, 0), RawInsn::new(0, 0, 0, 0, 0), exit];
        let map_of = |insns: Vec<Insn>| match &insns[0] {
            Insn::LdImm64 { value: Imm64::Map(m), .. } => m.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(map_of(decode("p", &relocated, &maps).unwrap()), MapRef::Name("counts".into()));
        assert_eq!(map_of(decode("p", &raw, &maps).unwrap()), MapRef::Fd(0));
    }
}
