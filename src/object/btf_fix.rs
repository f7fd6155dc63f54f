//! The object's `.BTF` made acceptable to the kernel, as libbpf's `btf_fixup_datasec` and
//! `bpf_object__sanitize_btf` do: clang leaves DATASEC sizes and variable offsets at 0 (they are
//! known only from the ELF section and symbol tables), and extern variables and functions
//! (`.ksyms`, `.kconfig`) have linkages the kernel refuses.
//!
//! The blob is rewritten in place, type by type, so type ids do not change: DATASECs get their
//! section's size and their variables' symbol offsets (sorted by offset); a DATASEC with no
//! section (externs) becomes an empty anonymous struct; extern VARs and FUNCs become static,
//! and the unnamed parameters of extern functions' prototypes are named after the function.
//! The `.kconfig` DATASEC stays one: it types the `.kconfig` map, so it gets the map's size and
//! each extern's offset in it, and its variables become global (as libbpf makes them).

use super::externs::{self, Extern};
use super::ObjectError;
use crate::elf::ElfObject;
use std::collections::HashMap;

const BTF_KIND_INT: u32 = 1;
const BTF_KIND_ARRAY: u32 = 3;
const BTF_KIND_STRUCT: u32 = 4;
const BTF_KIND_UNION: u32 = 5;
const BTF_KIND_ENUM: u32 = 6;
const BTF_KIND_FUNC: u32 = 12;
const BTF_KIND_FUNC_PROTO: u32 = 13;
const BTF_KIND_VAR: u32 = 14;
const BTF_KIND_DATASEC: u32 = 15;
const BTF_KIND_DECL_TAG: u32 = 17;
const BTF_KIND_ENUM64: u32 = 19;

fn bad(reason: String) -> ObjectError {
    ObjectError::Btf { reason }
}

fn rd(b: &[u8], off: usize) -> Result<u32, ObjectError> {
    off.checked_add(4)
        .and_then(|end| b.get(off..end))
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .ok_or_else(|| bad(format!(".BTF: word at byte {off} runs past the blob's {} bytes", b.len())))
}

fn wr(b: &mut [u8], off: usize, v: u32) {
    if let Some(w) = b.get_mut(off..off + 4) {
        w.copy_from_slice(&v.to_le_bytes());
    }
}

fn cstr(strings: &[u8], off: u32) -> &str {
    let s = strings.get(off as usize..).unwrap_or_default();
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    std::str::from_utf8(&s[..end]).unwrap_or("")
}

/// Bytes after a type's 12-byte header.
fn trailer_len(kind: u32, vlen: usize) -> usize {
    match kind {
        BTF_KIND_INT | BTF_KIND_VAR | BTF_KIND_DECL_TAG => 4,
        BTF_KIND_ARRAY => 12,
        BTF_KIND_STRUCT | BTF_KIND_UNION | BTF_KIND_DATASEC | BTF_KIND_ENUM64 => 12 * vlen,
        BTF_KIND_ENUM | BTF_KIND_FUNC_PROTO => 8 * vlen,
        _ => 0,
    }
}

/// The kernel-ready copy of `.BTF` (little-endian objects only, as [`ElfObject`] reads).
pub(crate) fn sanitize(blob: &[u8], elf: &ElfObject, externs: &[Extern]) -> Result<Vec<u8>, ObjectError> {
    let hdr_len = rd(blob, 4)? as usize;
    let header = blob
        .get(..hdr_len)
        .filter(|h| h.len() >= 24)
        .ok_or_else(|| bad(format!(".BTF: header length {hdr_len} is invalid")))?;
    let (type_off, type_len, str_off, str_len) =
        (rd(blob, 8)? as usize, rd(blob, 12)? as usize, rd(blob, 16)? as usize, rd(blob, 20)? as usize);
    let types_at = hdr_len.checked_add(type_off).ok_or_else(|| bad(".BTF: type section offset overflows".into()))?;
    let strs_at = hdr_len.checked_add(str_off).ok_or_else(|| bad(".BTF: string section offset overflows".into()))?;
    let types = types_at
        .checked_add(type_len)
        .and_then(|end| blob.get(types_at..end))
        .ok_or_else(|| bad(".BTF: type section runs past the blob".into()))?;
    let strings = strs_at
        .checked_add(str_len)
        .and_then(|end| blob.get(strs_at..end))
        .ok_or_else(|| bad(".BTF: string section runs past the blob".into()))?;

    // First pass: each VAR's name, by type id (DATASEC entries refer to VARs by id).
    let mut records: Vec<(usize, usize)> = Vec::new(); // (start, end) in `types`, id = index + 1
    let mut off = 0;
    while off < types.len() {
        let info = rd(types, off + 4)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let end = off + 12 + trailer_len(kind, vlen);
        if end > types.len() {
            return Err(bad(format!(".BTF: type [{}] runs past the type section", records.len() + 1)));
        }
        records.push((off, end));
        off = end;
    }
    let kind_of = |id: u32| -> Option<(u32, &str)> {
        let &(s, _) = records.get((id as usize).checked_sub(1)?)?;
        let info = rd(types, s + 4).ok()?;
        Some(((info >> 24) & 0x1f, cstr(strings, rd(types, s).ok()?)))
    };

    // Extern functions' prototypes: the kernel wants named parameters in every FUNC's prototype
    // (libbpf names them after the function).
    let mut extern_protos = HashMap::new();
    for &(start, _) in &records {
        let info = rd(types, start + 4)?;
        if (info >> 24) & 0x1f == BTF_KIND_FUNC && info & 0xffff == 2 {
            extern_protos.insert(rd(types, start + 8)?, rd(types, start)?);
        }
    }

    // The VARs of the `.kconfig` DATASEC: they become global, allocated variables. Those of
    // `.ksyms` get a 4-byte int type, as libbpf gives them (a `void` one is refused).
    let mut kconfig_vars = std::collections::HashSet::new();
    let mut ksym_vars = std::collections::HashSet::new();
    let mut int32 = None;
    for (index, &(start, end)) in records.iter().enumerate() {
        let info = rd(types, start + 4)?;
        let kind = (info >> 24) & 0x1f;
        if kind == BTF_KIND_INT && int32.is_none() && rd(types, start + 12)? & 0xff == 32 {
            int32 = Some(index as u32 + 1);
        }
        if kind != BTF_KIND_DATASEC {
            continue;
        }
        let set = match cstr(strings, rd(types, start)?) {
            externs::KCONFIG_SEC => &mut kconfig_vars,
            ".ksyms" => &mut ksym_vars,
            _ => continue,
        };
        for entry in types[start + 12..end].chunks_exact(12) {
            set.insert(rd(entry, 0)?);
        }
    }

    // Global subprograms (in `.text`) of hidden visibility: their FUNCs become static, so the
    // verifier checks them in their callers' context, as libbpf has it
    // (`bpf_object__sanitize_and_load_btf`: "mark_btf_static"); the first FUNC of each name.
    let text = elf.section_by_name(".text").map(|s| s.index);
    let mut hidden_subprogs: std::collections::HashSet<&str> = elf
        .symbols()
        .iter()
        .filter(|s| {
            s.hidden
                && s.kind == crate::elf::SymbolKind::Func
                && s.binding != crate::elf::SymbolBinding::Local
                && text.is_some()
                && s.section == text
        })
        .map(|s| s.name.as_str())
        .collect();

    // Global variables of hidden visibility: their VARs become static (which also keeps their
    // section's map from being mmapable), as libbpf's `btf_fixup_datasec` does.
    let mut hidden_vars = std::collections::HashSet::new();
    for &(start, end) in &records {
        let info = rd(types, start + 4)?;
        if (info >> 24) & 0x1f != BTF_KIND_DATASEC {
            continue;
        }
        let Some(sec) = elf.section_by_name(cstr(strings, rd(types, start)?)) else { continue };
        for entry in types[start + 12..end].chunks_exact(12) {
            let ty = rd(entry, 0)?;
            let Some((BTF_KIND_VAR, var_name)) = kind_of(ty) else { continue };
            let hidden = elf.symbols().iter().any(|s| {
                s.section == Some(sec.index)
                    && s.name == var_name
                    && s.hidden
                    && s.binding != crate::elf::SymbolBinding::Local
            });
            if hidden {
                hidden_vars.insert(ty);
            }
        }
    }

    let mut out_types = Vec::with_capacity(types.len());
    for (index, &(start, end)) in records.iter().enumerate() {
        let mut rec = types[start..end].to_vec();
        let info = rd(&rec, 4)?;
        let kind = (info >> 24) & 0x1f;
        match kind {
            BTF_KIND_VAR if kconfig_vars.contains(&(index as u32 + 1)) => wr(&mut rec, 12, 1),
            BTF_KIND_VAR if ksym_vars.contains(&(index as u32 + 1)) => {
                wr(&mut rec, 12, 0);
                if let Some(int) = int32 {
                    wr(&mut rec, 8, int);
                }
            }
            BTF_KIND_VAR if rd(&rec, 12)? == 2 => wr(&mut rec, 12, 0),
            BTF_KIND_VAR if hidden_vars.contains(&(index as u32 + 1)) => wr(&mut rec, 12, 0),
            BTF_KIND_FUNC if info & 0xffff == 2 => wr(&mut rec, 4, info & !0xffff),
            BTF_KIND_FUNC if info & 0xffff == 1 && hidden_subprogs.remove(cstr(strings, rd(&rec, 0)?)) => {
                wr(&mut rec, 4, info & !0xffff)
            }
            BTF_KIND_FUNC_PROTO => {
                if let Some(&name_off) = extern_protos.get(&(index as u32 + 1)) {
                    for p in 0..(info & 0xffff) as usize {
                        if rd(&rec, 12 + p * 8)? == 0 {
                            wr(&mut rec, 12 + p * 8, name_off);
                        }
                    }
                }
            }
            BTF_KIND_DATASEC => {
                let name = cstr(strings, rd(&rec, 0)?);
                if name == externs::KCONFIG_SEC {
                    // Each extern at its offset in the `.kconfig` map, sorted by offset.
                    wr(&mut rec, 8, externs::kconfig_size(externs));
                    let mut vars = Vec::new();
                    for entry in rec[12..].chunks_exact(12) {
                        let ty = rd(entry, 0)?;
                        let var_name = kind_of(ty).map_or("", |(_, n)| n);
                        let (offset, size) = externs::kconfig_slot(externs, var_name).ok_or_else(|| {
                            bad(format!("DATASEC '{name}': variable '{var_name}' is not an extern of the object"))
                        })?;
                        vars.push((ty, offset, size));
                    }
                    vars.sort_by_key(|v| v.1);
                    for (i, (ty, offset, size)) in vars.into_iter().enumerate() {
                        wr(&mut rec, 12 + i * 12, ty);
                        wr(&mut rec, 16 + i * 12, offset);
                        wr(&mut rec, 20 + i * 12, size);
                    }
                    out_types.extend_from_slice(&rec);
                    continue;
                }
                match elf.section_by_name(name) {
                    Some(sec) => {
                        wr(&mut rec, 8, u32::try_from(sec.size).unwrap_or(u32::MAX));
                        let mut vars = Vec::new();
                        for entry in rec[12..].chunks_exact(12) {
                            let ty = rd(entry, 0)?;
                            let size = rd(entry, 8)?;
                            let var_name = match kind_of(ty) {
                                Some((BTF_KIND_VAR, n)) => n,
                                _ => "",
                            };
                            let sym = elf.symbols().iter().find(|s| s.section == Some(sec.index) && s.name == var_name);
                            let offset = match sym {
                                Some(s) => u32::try_from(s.value).unwrap_or(u32::MAX),
                                None if var_name.is_empty() => rd(entry, 4)?,
                                // A static variable optimised away: libbpf fails too.
                                None => {
                                    return Err(bad(format!(
                                        "DATASEC '{name}' [{}]: variable '{var_name}' has no ELF symbol",
                                        index + 1
                                    )))
                                }
                            };
                            vars.push((ty, offset, size));
                        }
                        vars.sort_by_key(|v| v.1);
                        for (i, (ty, offset, size)) in vars.into_iter().enumerate() {
                            wr(&mut rec, 12 + i * 12, ty);
                            wr(&mut rec, 16 + i * 12, offset);
                            wr(&mut rec, 20 + i * 12, size);
                        }
                    }
                    None => {
                        // Externs' DATASEC (.ksyms, .kconfig): an empty anonymous struct.
                        rec = Vec::with_capacity(12);
                        rec.extend_from_slice(&0u32.to_le_bytes());
                        rec.extend_from_slice(&(BTF_KIND_STRUCT << 24).to_le_bytes());
                        rec.extend_from_slice(&0u32.to_le_bytes());
                    }
                }
            }
            _ => {}
        }
        out_types.extend_from_slice(&rec);
    }
    let mut out = Vec::with_capacity(hdr_len + out_types.len() + strings.len());
    out.extend_from_slice(header);
    wr(&mut out, 8, 0);
    wr(&mut out, 12, out_types.len() as u32);
    wr(&mut out, 16, out_types.len() as u32);
    wr(&mut out, 20, strings.len() as u32);
    out.extend_from_slice(&out_types);
    out.extend_from_slice(strings);
    Ok(out)
}
