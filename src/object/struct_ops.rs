//! struct_ops, as libbpf 1.7 treats them: each variable of a `.struct_ops` or `.struct_ops.link`
//! section (`SEC(".struct_ops") struct tcp_congestion_ops my_ca = { .init = (void *)my_init, … }`)
//! is a `BPF_MAP_TYPE_STRUCT_OPS` map (`init_struct_ops_maps`), its function pointers relocated
//! to the object's `SEC("struct_ops")` programs (`bpf_object__collect_st_ops_relos`). At load the
//! kernel's `struct <ops>` and `struct bpf_struct_ops_<ops>` are looked up in vmlinux BTF
//! (`bpf_map__init_kern_struct_ops`): the map's value is the latter, its data laid out as the
//! kernel's struct, and each program is loaded with the kernel struct's BTF id as
//! `attach_btf_id` and the member it implements as `expected_attach_type`. Programs referenced
//! by a map are loaded whatever their autoload says (`bpf_object_adjust_struct_ops_autoload`);
//! one referenced by none is refused.
//!
//! The maps are created, not registered: as libbpf, registering (`bpf_map__attach_struct_ops`:
//! the map's value updated with the programs' fds, or a struct_ops link) is attach's business,
//! which bpfkit's object loader does not do yet.

use super::maps::{MapDef, MapOrigin};
use super::{ObjectError, ProgramDef};
use crate::core_btf::{Btf, Kind, TypeDetail, TypeId};
use crate::elf::{ElfObject, SectionKind};
use crate::maps::{MapFlags, MapType};
use std::collections::HashMap;

/// `BPF_F_LINK`: a `.struct_ops.link` map, registered through a link.
const BPF_F_LINK: u32 = 1 << 13;
/// Largest ops struct taken from a section without data (real ones are a few hundred bytes).
const MAX_OPS_SIZE: u32 = 1 << 20;

/// What a struct_ops map holds beyond its definition.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StructOps {
    /// The ops struct's name in the object (`tcp_congestion_ops`, possibly with a `___flavor`).
    pub type_name: String,
    /// Member name → the program its function pointer names.
    pub programs: Vec<(String, String)>,
    /// The kernel's `struct bpf_struct_ops_<ops>` (the map's value type), set at load.
    pub kernel_value_type: Option<u32>,
}

fn err(map: &str, reason: impl Into<String>) -> ObjectError {
    ObjectError::Map { map: map.to_string(), reason: reason.into() }
}

/// The struct_ops maps of the object's `.struct_ops` and `.struct_ops.link` sections. (A
/// `?.struct_ops` section, whose maps libbpf does not create by default, is left out.)
pub(crate) fn collect(elf: &ElfObject, btf: Option<&Btf>) -> Result<Vec<MapDef>, ObjectError> {
    let mut out = Vec::new();
    for sec in elf.sections() {
        let link = match sec.name.as_str() {
            ".struct_ops" => false,
            ".struct_ops.link" => true,
            _ => continue,
        };
        let btf = btf.ok_or_else(|| err(&sec.name, "struct_ops maps need the object's .BTF"))?;
        let datasec = btf
            .find_by_name_kind(&sec.name, Kind::Datasec)
            .ok_or_else(|| err(&sec.name, format!("DATASEC {} not found", sec.name)))?;
        let TypeDetail::Datasec { vars, .. } = btf.type_by_id(datasec).map_err(|e| err(&sec.name, e.to_string()))?.detail
        else {
            return Err(err(&sec.name, "not a DATASEC"));
        };
        let data = if sec.kind == SectionKind::Bss { &[][..] } else { elf.section_data(sec) };
        let relocs = elf.relocations(sec);
        for v in vars {
            let var = btf.type_by_id(v.ty).map_err(|e| err(&sec.name, e.to_string()))?;
            let name = var.name.to_string();
            let TypeDetail::Var { ty: var_ty, .. } = var.detail else {
                return Err(err(&name, "not a variable"));
            };
            let type_id = btf.resolve(var_ty).map_err(|e| err(&name, e.to_string()))?;
            let ty = btf.type_by_id(type_id).map_err(|e| err(&name, e.to_string()))?;
            if ty.name.is_empty() {
                return Err(err(&name, "struct_ops of an anonymous type are not supported"));
            }
            let TypeDetail::Struct { size, members } = &ty.detail else {
                return Err(err(&name, format!("struct_ops type {} is not a struct", ty.name)));
            };
            let start = v.offset as usize;
            let bytes = match data.get(start..start.saturating_add(*size as usize)) {
                Some(b) => b.to_vec(),
                None if data.is_empty() && *size <= MAX_OPS_SIZE => vec![0; *size as usize],
                None => return Err(err(&name, format!("variable is beyond the end of section {}", sec.name))),
            };
            // Function pointers: relocations inside the variable, to a program's first insn.
            let mut programs = Vec::new();
            for r in relocs.iter().filter(|r| r.offset >= u64::from(v.offset) && r.offset < u64::from(v.offset) + u64::from(*size)) {
                let moff = (r.offset - u64::from(v.offset)) as u32;
                let member = members.iter().find(|m| m.bit_offset == moff * 8).ok_or_else(|| {
                    err(&name, format!("struct_ops relocation: no member at offset {moff}"))
                })?;
                let sym = elf
                    .symbols()
                    .get(r.symbol)
                    .ok_or_else(|| err(&name, format!("relocation names symbol {} which does not exist", r.symbol)))?;
                let sym_sec = sym.section.ok_or_else(|| {
                    err(&name, format!("member {}: '{}' is not a function of the object", member.name, sym.name))
                })?;
                if sym.value % 8 != 0 {
                    return Err(err(&name, format!("member {}: '{}' is not at an instruction", member.name, sym.name)));
                }
                let prog = elf
                    .programs()
                    .into_iter()
                    .find(|p| p.section == sym_sec && p.first_slot as u64 == sym.value / 8)
                    .ok_or_else(|| err(&name, format!("member {}: no program at '{}'", member.name, sym.name)))?;
                programs.push((member.name.to_string(), prog.name));
            }
            let origin = MapOrigin::StructOps { offset: u64::from(v.offset) };
            let kernel_name = name.chars().take(15).collect();
            let mut def = MapDef::new(name.clone(), kernel_name, origin, sec.index, MapType::StructOps);
            def.key_size = 4;
            def.value_size = *size;
            def.max_entries = 1;
            def.flags = MapFlags(if link { BPF_F_LINK } else { 0 });
            def.value_type_id = Some(type_id);
            def.data = bytes;
            def.struct_ops = Some(StructOps { type_name: ty.name.to_string(), programs, kernel_value_type: None });
            out.push(def);
        }
    }
    Ok(out)
}

/// A struct_ops program's attach point: the kernel ops struct's BTF id and the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attach {
    pub btf_id: u32,
    pub member: u32,
}

/// Skip modifiers and typedefs.
fn skip_mods(btf: &Btf, id: TypeId) -> Option<(TypeId, Kind)> {
    let id = btf.resolve(id).ok()?;
    Some((id, btf.type_by_id(id).ok()?.kind()))
}

/// libbpf's `bpf_map__init_kern_struct_ops` and `bpf_object_adjust_struct_ops_autoload`: each
/// struct_ops map's value laid out as the kernel's, and where each program attaches.
pub(crate) fn prepare(
    maps: &mut [MapDef],
    programs: &mut [ProgramDef],
    local: Option<&Btf>,
    vmlinux: &Btf,
) -> Result<HashMap<String, Attach>, ObjectError> {
    let mut attach: HashMap<String, Attach> = HashMap::new();
    // Programs a map's members name: loaded whatever their autoload says.
    let mut used: Vec<String> = Vec::new();
    for def in maps.iter_mut() {
        let Some(ops) = def.struct_ops.as_mut() else { continue };
        let name = def.name.clone();
        let local = local.ok_or_else(|| err(&name, "struct_ops maps need the object's .BTF"))?;
        let type_id = def.value_type_id.ok_or_else(|| err(&name, "no struct type"))?;
        let ty = local.type_by_id(type_id).map_err(|e| err(&name, e.to_string()))?;
        let tname = crate::core_btf::relo::essential_name(&ops.type_name).to_string();
        let vname = format!("bpf_struct_ops_{tname}");
        let vtype_id = vmlinux
            .find_by_name_kind(&vname, Kind::Struct)
            .ok_or_else(|| err(&name, format!("struct {vname} is not in the kernel's BTF (the kernel has no '{tname}' struct_ops)")))?;
        let ktype_id = vmlinux
            .find_by_name_kind(&tname, Kind::Struct)
            .ok_or_else(|| err(&name, format!("struct {tname} is not in the kernel's BTF")))?;
        let vtype = vmlinux.type_by_id(vtype_id).map_err(|e| err(&name, e.to_string()))?;
        let ktype = vmlinux.type_by_id(ktype_id).map_err(|e| err(&name, e.to_string()))?;
        let data_member = vtype
            .members()
            .iter()
            .find(|m| m.ty == ktype_id)
            .ok_or_else(|| err(&name, format!("struct {tname} data is not found in struct {vname}")))?;
        let TypeDetail::Struct { size: vsize, .. } = vtype.detail else {
            return Err(err(&name, format!("{vname} is not a struct")));
        };
        let data_off = (data_member.bit_offset / 8) as usize;
        let mut kern = vec![0u8; vsize as usize];
        for m in ty.members() {
            let moff = (m.bit_offset / 8) as usize;
            let msize = local.size_of(m.ty).map_err(|e| err(&name, format!("member {}: {e}", m.name)))?;
            let msize = usize::try_from(msize).map_err(|_| err(&name, format!("member {}: too large", m.name)))?;
            let mdata = moff.checked_add(msize).and_then(|end| def.data.get(moff..end)).unwrap_or(&[]);
            let prog = ops.programs.iter().position(|(member, _)| member == m.name);
            let Some((kidx, km)) = ktype.members().iter().enumerate().find(|(_, km)| km.name == m.name) else {
                // Not in this kernel: fine while unset (a function pointer set to a program is
                // set, as in libbpf's shadow copy).
                if mdata.iter().any(|&b| b != 0) || prog.is_some() {
                    return Err(err(&name, format!("member {} is not in the kernel's struct {tname} (ENOTSUP)", m.name)));
                }
                continue;
            };
            if m.bitfield_size != 0 || km.bitfield_size != 0 {
                return Err(err(&name, format!("member {}: bitfields are not supported (ENOTSUP)", m.name)));
            }
            let (_, lkind) = skip_mods(local, m.ty).ok_or_else(|| err(&name, format!("member {}: bad type", m.name)))?;
            let (kmt, kkind) = skip_mods(vmlinux, km.ty).ok_or_else(|| err(&name, format!("member {}: bad kernel type", m.name)))?;
            if lkind != kkind {
                return Err(err(&name, format!("member {}: a {} here, a {} in the kernel (ENOTSUP)", m.name, lkind.name(), kkind.name())));
            }
            let kmoff = (km.bit_offset / 8) as usize;
            if lkind == Kind::Ptr {
                let Some(p) = prog else { continue };
                let pointee = match vmlinux.type_by_id(kmt).map(|t| t.detail) {
                    Ok(TypeDetail::Ptr { target }) => skip_mods(vmlinux, target).map(|(_, k)| k),
                    _ => None,
                };
                if pointee != Some(Kind::FuncProto) {
                    return Err(err(&name, format!("kernel member {} is not a function pointer (ENOTSUP)", m.name)));
                }
                let prog_name = ops.programs[p].1.clone();
                let at = Attach { btf_id: ktype_id.0, member: kidx as u32 };
                match attach.get(&prog_name) {
                    Some(prev) if *prev != at => {
                        return Err(err(&name, format!(
                            "program '{prog_name}' is used for two different struct_ops members (member {})",
                            m.name
                        )))
                    }
                    _ => {
                        attach.insert(prog_name.clone(), at);
                    }
                }
                used.push(prog_name);
                continue;
            }
            let ksize = vmlinux.size_of(kmt).map_err(|e| err(&name, format!("member {}: {e}", m.name)))?;
            if ksize != msize as u64 || mdata.len() != msize {
                return Err(err(&name, format!("member {}: {msize} bytes here, {ksize} in the kernel (ENOTSUP)", m.name)));
            }
            let at = data_off + kmoff;
            if let Some(dst) = at.checked_add(msize).and_then(|end| kern.get_mut(at..end)) {
                dst.copy_from_slice(mdata);
            }
        }
        def.value_size = vsize;
        def.data = kern;
        ops.kernel_value_type = Some(vtype_id.0);
    }
    for p in programs.iter_mut().filter(|p| used.contains(&p.name)) {
        p.autoload = true;
    }
    Ok(attach)
}
