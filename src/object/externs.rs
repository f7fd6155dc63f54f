//! Extern variables of an object, as libbpf's `bpf_object__collect_externs` and
//! `bpf_object__resolve_externs` treat them: `__kconfig` externs (the `.kconfig` DATASEC) are
//! laid out in one read-only `.kconfig` array map (sorted by alignment, then size, then name)
//! whose values are filled at load from `/boot/config-$(uname -r)` or `/proc/config.gz`, and
//! `LINUX_KERNEL_VERSION` from the running kernel's release; `__ksym` variables (the `.ksyms`
//! DATASEC) are resolved against vmlinux BTF when typed, against `/proc/kallsyms` when
//! `void`-typed. A `__weak` extern that cannot be resolved is 0.
//!
//! Unlike libbpf, a missing kernel config file is not an error by itself: `__weak` `CONFIG_*`
//! externs are then 0 and only strong ones fail (naming the files looked for).
//! `LINUX_HAS_BPF_COOKIE` and `LINUX_HAS_SYSCALL_WRAPPER` are probed as libbpf probes them
//! (`features::load_probes`), so an object sees the values libbpf would give it.

use super::ObjectError;
use crate::core_btf::{Btf, IntEncoding, Kind, TypeDetail, TypeId};
use crate::elf::{ElfObject, SymbolBinding, SymbolKind};
use std::collections::HashMap;

pub(crate) const KCONFIG_SEC: &str = ".kconfig";
const KSYMS_SEC: &str = ".ksyms";
/// Largest `.kconfig` map made (1 MiB; real ones are a few dozen bytes).
const MAX_KCONFIG: u32 = 1 << 20;

/// libbpf's `kcfg_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KcfgType {
    Bool,
    /// `enum libbpf_tristate`: n = 0, y = 1, m = 2.
    Tristate,
    Char,
    Int,
    CharArray,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExternKind {
    /// A `__kconfig` extern at `offset` in the `.kconfig` map.
    Kconfig { ty: KcfgType, size: u32, align: u32, signed: bool, offset: u32 },
    /// A `__ksym` extern: `typed` ones (a non-void variable type, or a function) are resolved
    /// by vmlinux BTF id, `void` ones by address.
    Ksym { typed: bool, func: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Extern {
    pub name: String,
    pub weak: bool,
    pub kind: ExternKind,
}

fn ext_err(name: &str, reason: impl Into<String>) -> ObjectError {
    ObjectError::Extern { name: name.to_string(), reason: reason.into() }
}

/// Skip modifiers and typedefs; `None` for void.
fn resolved(btf: &Btf, ty: TypeId) -> Option<TypeId> {
    if ty.0 == 0 {
        return None;
    }
    btf.resolve(ty).ok().filter(|t| t.0 != 0)
}

/// libbpf's `find_kcfg_type`, with the type's size and alignment.
fn kcfg_type(btf: &Btf, ty: TypeId) -> Option<(KcfgType, bool, u32, u32)> {
    let id = resolved(btf, ty)?;
    let t = btf.type_by_id(id).ok()?;
    match t.detail {
        TypeDetail::Int { size, encoding, .. } => match encoding {
            IntEncoding::Bool => (size == 1).then_some((KcfgType::Bool, false, 1, 1)),
            _ if size == 1 => Some((KcfgType::Char, encoding == IntEncoding::Signed, 1, 1)),
            _ if size.is_power_of_two() && size <= 8 => {
                Some((KcfgType::Int, encoding == IntEncoding::Signed, size, size))
            }
            _ => None,
        },
        TypeDetail::Enum { size: 4, .. } | TypeDetail::Enum64 { .. } if t.name == "libbpf_tristate" => {
            let size = btf.size_of(id).ok()? as u32;
            Some((KcfgType::Tristate, false, size, size.min(8)))
        }
        TypeDetail::Array { elem, len, .. } if len > 0 => {
            // Of chars: 1-byte, non-bool ints (not followed further, so a cyclic array cannot recurse).
            let elem = resolved(btf, elem).and_then(|id| btf.type_by_id(id).ok());
            let of_chars = elem.is_some_and(|t| {
                matches!(t.detail, TypeDetail::Int { size: 1, encoding, .. } if encoding != IntEncoding::Bool)
            });
            of_chars.then_some((KcfgType::CharArray, false, len, 1))
        }
        _ => None,
    }
}

/// The externs of `elf` that its BTF (`btf`, as clang wrote it) places in `.kconfig` or
/// `.ksyms`, kconfig ones laid out as libbpf lays them out.
pub(crate) fn collect(elf: &ElfObject, btf: &Btf) -> Result<Vec<Extern>, ObjectError> {
    let mut in_sec: HashMap<&str, (&str, TypeId)> = HashMap::new();
    for id in btf.ids() {
        let Ok(t) = btf.type_by_id(id) else { continue };
        let TypeDetail::Datasec { vars, .. } = &t.detail else {
            continue;
        };
        if t.name != KCONFIG_SEC && t.name != KSYMS_SEC {
            continue;
        }
        for v in vars {
            if let Ok(name) = btf.name_of(v.ty) {
                in_sec.insert(name, (t.name, v.ty));
            }
        }
    }
    let mut out = Vec::new();
    for sym in elf.symbols() {
        let candidate = sym.section.is_none()
            && !sym.name.is_empty()
            && matches!(sym.binding, SymbolBinding::Global | SymbolBinding::Weak)
            && matches!(sym.kind, SymbolKind::NoType | SymbolKind::Object | SymbolKind::Func);
        let Some(&(sec, var)) = candidate.then(|| in_sec.get(sym.name.as_str())).flatten() else {
            continue;
        };
        let t = btf.type_by_id(var).map_err(|e| ext_err(&sym.name, e.to_string()))?;
        let weak = sym.binding == SymbolBinding::Weak;
        let kind = match (sec, &t.detail) {
            (KCONFIG_SEC, TypeDetail::Var { ty, .. }) => {
                let (ty, signed, size, align) =
                    kcfg_type(btf, *ty).ok_or_else(|| ext_err(&sym.name, "(kconfig) type is unsupported"))?;
                ExternKind::Kconfig { ty, size, align, signed, offset: 0 }
            }
            (KCONFIG_SEC, _) => return Err(ext_err(&sym.name, "extern functions are unsupported under .kconfig")),
            (_, TypeDetail::Var { ty, .. }) => ExternKind::Ksym { typed: resolved(btf, *ty).is_some(), func: false },
            (_, _) => ExternKind::Ksym { typed: true, func: true },
        };
        out.push(Extern { name: sym.name.clone(), weak, kind });
    }
    // libbpf's `cmp_externs`: kconfig first, by alignment (descending), size, then name.
    let key = |e: &Extern| match e.kind {
        ExternKind::Kconfig { align, size, .. } => (0, u32::MAX - align, size),
        ExternKind::Ksym { .. } => (1, 0, 0),
    };
    out.sort_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name)));
    let mut off = 0u32;
    for e in &mut out {
        if let ExternKind::Kconfig { size, align, offset, .. } = &mut e.kind {
            // Kconfig values are a few bytes; an object claiming megabytes is malformed.
            *offset = off
                .checked_next_multiple_of(*align)
                .filter(|o| o.checked_add(*size).is_some_and(|end| end <= MAX_KCONFIG))
                .ok_or_else(|| ext_err(&e.name, format!("(kconfig) {size} bytes do not fit a .kconfig map")))?;
            off = *offset + *size;
        }
    }
    Ok(out)
}

/// Bytes of the `.kconfig` map (0 when there are no kconfig externs).
pub(crate) fn kconfig_size(externs: &[Extern]) -> u32 {
    externs
        .iter()
        .filter_map(|e| match e.kind {
            ExternKind::Kconfig { offset, size, .. } => Some(offset + size),
            ExternKind::Ksym { .. } => None,
        })
        .max()
        .unwrap_or(0)
}

/// The kconfig extern named `name`'s (offset, size) in the `.kconfig` map.
pub(crate) fn kconfig_slot(externs: &[Extern], name: &str) -> Option<(u32, u32)> {
    externs.iter().find(|e| e.name == name).and_then(|e| match e.kind {
        ExternKind::Kconfig { offset, size, .. } => Some((offset, size)),
        ExternKind::Ksym { .. } => None,
    })
}

/// Where libbpf looks for the running kernel's config, in order.
fn config_paths(release: &str) -> [String; 2] {
    [format!("/boot/config-{release}"), "/proc/config.gz".to_string()]
}

/// Fill the `.kconfig` map's initial value `data` (`kconfig_size` bytes, zeroed).
pub(crate) fn fill_kconfig(externs: &[Extern], data: &mut [u8]) -> Result<(), ObjectError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut set = vec![false; externs.len()];
    let mut need_config = false;
    for (i, e) in externs.iter().enumerate() {
        let ExternKind::Kconfig { .. } = e.kind else {
            continue;
        };
        if e.name.starts_with("CONFIG_") {
            need_config = true;
            continue;
        }
        let value = match e.name.as_str() {
            "LINUX_KERNEL_VERSION" => crate::features::KernelVersion::parse(release)
                .map(|v| u64::from(v.code()))
                .ok_or_else(|| ext_err(&e.name, format!("kernel release '{release}' has no version number")))?,
            "LINUX_HAS_BPF_COOKIE" => u64::from(crate::features::load_probes::has_bpf_cookie()),
            "LINUX_HAS_SYSCALL_WRAPPER" => u64::from(crate::features::load_probes::has_syscall_wrapper()),
            _ if e.name.starts_with("LINUX_") && e.weak => continue,
            _ => return Err(ext_err(&e.name, "(kconfig) unrecognized virtual extern (only CONFIG_* and LINUX_*)")),
        };
        set_num(e, data, value)?;
        set[i] = true;
    }
    let mut looked = String::new();
    if need_config {
        let paths = config_paths(release);
        looked = paths.join(" or ");
        let text =
            paths.iter().find_map(|p| std::fs::read(p).ok()).map(|bytes| match bytes.starts_with(&[0x1f, 0x8b]) {
                true => {
                    let mut text = Vec::new();
                    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
                        .map(|_| text)
                        .map_err(|e| ext_err("CONFIG_*", format!("reading the kernel config: {e}")))
                }
                false => Ok(bytes),
            });
        if let Some(text) = text {
            for line in String::from_utf8_lossy(&text?).lines() {
                kconfig_line(externs, &mut set, data, line)?;
            }
            looked.clear();
        }
    }
    for (e, &done) in externs.iter().zip(&set) {
        if matches!(e.kind, ExternKind::Kconfig { .. }) && !done && !e.weak {
            let why = match looked.is_empty() {
                true => "(kconfig, strong) is not set in the kernel config".to_string(),
                false => format!("(kconfig, strong) needs the kernel config, but there is none at {looked}"),
            };
            return Err(ext_err(&e.name, why));
        }
    }
    Ok(())
}

/// libbpf's `bpf_object__process_kconfig_line`.
fn kconfig_line(externs: &[Extern], set: &mut [bool], data: &mut [u8], line: &str) -> Result<(), ObjectError> {
    if !line.starts_with("CONFIG_") {
        return Ok(());
    }
    let Some((name, value)) = line.split_once('=') else {
        return Err(ext_err(name_of(line), format!("kernel config line '{line}' has no '='")));
    };
    if value.is_empty() {
        return Err(ext_err(name, format!("kernel config line '{line}' has no value")));
    }
    let Some(i) = externs.iter().position(|e| e.name == name) else {
        return Ok(());
    };
    if set[i] {
        return Ok(());
    }
    let e = &externs[i];
    let ExternKind::Kconfig { ty, size, offset, .. } = e.kind else {
        return Ok(());
    };
    let slot = data
        .get_mut(offset as usize..(offset + size) as usize)
        .ok_or_else(|| ext_err(name, "outside the .kconfig map"))?;
    match value.as_bytes()[0] {
        c @ (b'y' | b'n' | b'm') => match ty {
            KcfgType::Bool if c == b'm' => {
                return Err(ext_err(name, format!("value '{value}' implies tristate or char type")))
            }
            KcfgType::Bool => slot[0] = u8::from(c == b'y'),
            KcfgType::Tristate => {
                slot.fill(0);
                slot[0] = match c {
                    b'y' => 1,
                    b'm' => 2,
                    _ => 0,
                };
            }
            KcfgType::Char => slot[0] = c,
            _ => return Err(ext_err(name, format!("value '{value}' implies bool, tristate, or char type"))),
        },
        b'"' => {
            if ty != KcfgType::CharArray {
                return Err(ext_err(name, format!("value '{value}' implies char array type")));
            }
            let inner = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| ext_err(name, format!("invalid string config '{value}'")))?;
            let len = inner.len().min(slot.len() - 1);
            slot[..len].copy_from_slice(&inner.as_bytes()[..len]);
            slot[len..].fill(0);
        }
        _ => {
            let num =
                parse_u64(value).ok_or_else(|| ext_err(name, format!("value '{value}' isn't a valid integer")))?;
            if !matches!(ty, KcfgType::Int | KcfgType::Char) {
                return Err(ext_err(name, format!("value '{value}' implies integer type")));
            }
            set_num(e, data, num)?;
        }
    }
    set[i] = true;
    Ok(())
}

fn name_of(line: &str) -> &str {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap_or(line)
}

/// `strtoull(value, _, 0)` on the whole string: hex with `0x`, octal with a leading 0.
fn parse_u64(value: &str) -> Option<u64> {
    let (neg, v) = match value.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let n = if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if v.len() > 1 && v.starts_with('0') {
        u64::from_str_radix(&v[1..], 8).ok()?
    } else {
        v.parse().ok()?
    };
    Some(if neg { n.wrapping_neg() } else { n })
}

/// libbpf's `set_kcfg_value_num`: range-checked for the extern's size and signedness.
fn set_num(e: &Extern, data: &mut [u8], value: u64) -> Result<(), ObjectError> {
    let ExternKind::Kconfig { ty, size, signed, offset, .. } = e.kind else {
        return Ok(());
    };
    if !matches!(ty, KcfgType::Int | KcfgType::Char | KcfgType::Bool) {
        return Err(ext_err(&e.name, format!("value '{value}' implies integer, char, or boolean type")));
    }
    if ty == KcfgType::Bool && value > 1 {
        return Err(ext_err(&e.name, format!("value '{value}' isn't boolean compatible")));
    }
    let bits = size * 8;
    let fits =
        bits >= 64 || if signed { value.wrapping_add(1u64 << (bits - 1)) < (1u64 << bits) } else { value >> bits == 0 };
    if !fits {
        return Err(ext_err(&e.name, format!("value '{value}' doesn't fit in {size} bytes")));
    }
    let slot = data
        .get_mut(offset as usize..(offset + size) as usize)
        .ok_or_else(|| ext_err(&e.name, "outside the .kconfig map"))?;
    slot.copy_from_slice(&value.to_le_bytes()[..size as usize]);
    Ok(())
}

/// Addresses of `void`-typed `__ksym` externs from `/proc/kallsyms` (libbpf's `kallsyms_cb`):
/// name → address, for the names asked for. Two different addresses for one name is an error.
pub(crate) fn kallsyms(externs: &[Extern]) -> Result<HashMap<String, u64>, ObjectError> {
    let wanted: Vec<&str> = externs
        .iter()
        .filter(|e| matches!(e.kind, ExternKind::Ksym { typed: false, .. }))
        .map(|e| e.name.as_str())
        .collect();
    let mut out = HashMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    let symbols = crate::attach::kprobe::kernel_symbols().map_err(|e| ext_err(wanted[0], format!("(ksym) {e}")))?;
    for sym in symbols {
        let (name, addr) = (sym.name.as_str(), sym.address);
        if !wanted.contains(&name) {
            continue;
        }
        if let Some(&prev) = out.get(name) {
            if prev != addr {
                return Err(ext_err(name, format!("(ksym) resolution is ambiguous: 0x{prev:x} or 0x{addr:x}")));
            }
        }
        out.insert(name.to_string(), addr);
    }
    Ok(out)
}

/// A typed `__ksym`'s vmlinux BTF id, for an `ld_imm64` of its address: a VAR, or a FUNC for
/// a kfunc's address (`bpf_ksym_exists(kfunc)`); `None` for an unresolved weak one.
pub(crate) fn ksym_var_btf_id(e: &Extern, vmlinux: &Btf) -> Result<Option<u32>, ObjectError> {
    let (kind, what) = match e.kind {
        ExternKind::Ksym { func: true, .. } => (Kind::Func, "kernel function"),
        _ => (Kind::Var, "kernel variable"),
    };
    match vmlinux.find_by_name_kind(&e.name, kind) {
        Some(id) => Ok(Some(id.0)),
        None if e.weak => Ok(None),
        None => Err(ext_err(&e.name, format!("(ksym) is not a {what} in vmlinux BTF"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_as_strtoull() {
        assert_eq!(parse_u64("250"), Some(250));
        assert_eq!(parse_u64("0x1f"), Some(31));
        assert_eq!(parse_u64("010"), Some(8));
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("-1"), Some(u64::MAX));
        assert_eq!(parse_u64("12abc"), None);
    }
}
