//! The compatibility relations of CO-RE, each as libbpf defines it: essential names
//! (`___flavor` suffixes), `btf_kind_core_compat`, `bpf_core_fields_are_compat` (field
//! relocations), `bpf_core_types_are_compat` (type relocations) and `bpf_core_types_match`
//! (`TYPE_MATCHES`).

use super::super::types::{IntEncoding, Kind, Type, TypeDetail, TypeId, MAX_DEPTH};
use super::super::{Btf, BtfError};

/// The name without its flavor: the part before the last `___` that has a non-underscore on
/// each side (`task_struct___old` → `task_struct`, `a___b___c` → `a___b`, `__u32` → `__u32`).
pub fn essential_name(name: &str) -> &str {
    let b = name.as_bytes();
    // Position i is the last character of the essential name: b[i] != '_', then "___", then
    // b[i + 4] != '_'.
    (0..b.len().saturating_sub(4))
        .rev()
        .find(|&i| b[i] != b'_' && &b[i + 1..i + 4] == b"___" && b[i + 4] != b'_')
        .map_or(name, |i| &name[..i + 1])
}

/// Same kind, or both enums (ENUM and ENUM64 are interchangeable).
pub(crate) fn kind_core_compat(a: Kind, b: Kind) -> bool {
    a == b || (is_any_enum(a) && is_any_enum(b))
}

pub(crate) fn is_any_enum(k: Kind) -> bool {
    matches!(k, Kind::Enum | Kind::Enum64)
}

pub(crate) fn is_composite(k: Kind) -> bool {
    matches!(k, Kind::Struct | Kind::Union)
}

/// Skip typedefs and modifiers: the id reached and its decoded type.
pub(crate) fn skip_mods(btf: &Btf, id: TypeId) -> Result<(TypeId, Type<'_>), BtfError> {
    let id = btf.resolve(id)?;
    Ok((id, btf.type_by_id(id)?))
}

fn int_offset(t: &Type<'_>) -> u8 {
    match t.detail {
        TypeDetail::Int { offset, .. } => offset,
        _ => 0,
    }
}

fn too_deep(id: TypeId) -> BtfError {
    BtfError::TooDeep { id: id.0 }
}

/// `bpf_core_types_are_compat`: may the target type stand in for the local one in a type
/// relocation? Names are not compared (the caller matched the roots' essential names); kinds
/// must be compatible, typedefs and modifiers are skipped, pointers and arrays compared by
/// what they point to / hold, function prototypes by arity and argument and return types.
/// Integers are compatible whatever their size and sign (bitfield-style INTs excepted).
pub fn types_are_compat(local: &Btf, local_id: TypeId, target: &Btf, target_id: TypeId) -> Result<bool, BtfError> {
    are_compat(local, local_id, target, target_id, MAX_DEPTH)
}

fn are_compat(local: &Btf, mut lid: TypeId, target: &Btf, mut tid: TypeId, level: usize) -> Result<bool, BtfError> {
    if !kind_core_compat(local.kind_of(lid)?, target.kind_of(tid)?) {
        return Ok(false);
    }
    for _ in 0..MAX_DEPTH {
        let (l_id, lt) = skip_mods(local, lid)?;
        let (_, tt) = skip_mods(target, tid)?;
        lid = l_id;
        if !kind_core_compat(lt.kind(), tt.kind()) {
            return Ok(false);
        }
        match (&lt.detail, &tt.detail) {
            (
                TypeDetail::Void
                | TypeDetail::Struct { .. }
                | TypeDetail::Union { .. }
                | TypeDetail::Enum { .. }
                | TypeDetail::Enum64 { .. }
                | TypeDetail::Fwd { .. },
                _,
            ) => return Ok(true),
            (TypeDetail::Int { .. }, _) => return Ok(int_offset(&lt) == 0 && int_offset(&tt) == 0),
            (TypeDetail::Ptr { target: l }, TypeDetail::Ptr { target: t }) => (lid, tid) = (*l, *t),
            (TypeDetail::Array { elem: l, .. }, TypeDetail::Array { elem: t, .. }) => (lid, tid) = (*l, *t),
            (TypeDetail::FuncProto { ret: lr, params: lp }, TypeDetail::FuncProto { ret: tr, params: tp }) => {
                if lp.len() != tp.len() {
                    return Ok(false);
                }
                for (l, t) in lp.iter().zip(tp) {
                    if level == 0 {
                        return Err(too_deep(lid));
                    }
                    let (l, t) = (local.resolve(l.ty)?, target.resolve(t.ty)?);
                    if !are_compat(local, l, target, t, level - 1)? {
                        return Ok(false);
                    }
                }
                (lid, tid) = (local.resolve(*lr)?, target.resolve(*tr)?);
            }
            // FLOAT, FUNC, VAR, DATASEC, …: never the subject of a type relocation.
            _ => return Ok(false),
        }
    }
    Err(too_deep(lid))
}

/// `bpf_core_fields_are_compat`: may a target member of this type stand in for a local member
/// in a field relocation? Any two structs/unions are; pointers and floats are; enums and
/// forward declarations need equal essential names (or one anonymous); integers need no
/// bitfield-style offset; arrays compare their elements.
pub(crate) fn fields_are_compat(local: &Btf, lid: TypeId, target: &Btf, tid: TypeId) -> Result<bool, BtfError> {
    let (mut lid, mut tid) = (lid, tid);
    for _ in 0..MAX_DEPTH {
        let (_, lt) = skip_mods(local, lid)?;
        let (_, tt) = skip_mods(target, tid)?;
        if is_composite(lt.kind()) && is_composite(tt.kind()) {
            return Ok(true);
        }
        if !kind_core_compat(lt.kind(), tt.kind()) {
            return Ok(false);
        }
        match (&lt.detail, &tt.detail) {
            (TypeDetail::Ptr { .. } | TypeDetail::Float { .. }, _) => return Ok(true),
            (TypeDetail::Fwd { .. } | TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. }, _) => {
                let (l, t) = (essential_name(lt.name), essential_name(tt.name));
                return Ok(l.is_empty() || t.is_empty() || l == t);
            }
            (TypeDetail::Int { .. }, _) => return Ok(int_offset(&lt) == 0 && int_offset(&tt) == 0),
            (TypeDetail::Array { elem: l, .. }, TypeDetail::Array { elem: t, .. }) => (lid, tid) = (*l, *t),
            _ => return Ok(false),
        }
    }
    Err(too_deep(lid))
}

/// Names match when both are empty, or their essential names are equal.
fn names_match(local: &str, target: &str) -> bool {
    if target.is_empty() {
        return local.is_empty();
    }
    essential_name(local) == essential_name(target)
}

/// `bpf_core_types_match`: the strict relation behind `bpf_core_type_matches()`. After
/// typedefs and modifiers, the types have the same kind (a struct/union behind a pointer also
/// matches a forward declaration of it; ENUM matches ENUM64) and name (modulo flavor);
/// integers have the same size and signedness; arrays the same length; every local member of
/// a struct/union exists in the target by name with a matching type (behind a pointer, only
/// names and kinds are compared); every local enumerator exists by name, sizes equal;
/// function prototypes match argument by argument.
pub fn types_match(local: &Btf, local_id: TypeId, target: &Btf, target_id: TypeId) -> Result<bool, BtfError> {
    types_match_at(local, local_id, target, target_id, false, MAX_DEPTH)
}

fn types_match_at(
    local: &Btf,
    mut lid: TypeId,
    target: &Btf,
    mut tid: TypeId,
    mut behind_ptr: bool,
    level: usize,
) -> Result<bool, BtfError> {
    if level == 0 {
        return Err(too_deep(lid));
    }
    for _ in 0..MAX_DEPTH {
        let (_, lt) = skip_mods(local, lid)?;
        let (_, tt) = skip_mods(target, tid)?;
        if !names_match(lt.name, tt.name) {
            return Ok(false);
        }
        let (lk, tk) = (lt.kind(), tt.kind());
        match (&lt.detail, &tt.detail) {
            (TypeDetail::Void, _) => return Ok(tk == Kind::Void),
            (TypeDetail::Fwd { union: lf }, _) => {
                return Ok(match (&tt.detail, behind_ptr) {
                    (TypeDetail::Fwd { union: tf }, _) => lf == tf,
                    (TypeDetail::Struct { .. }, true) => !lf,
                    (TypeDetail::Union { .. }, true) => *lf,
                    _ => false,
                });
            }
            (TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. }, _) => {
                return Ok(is_any_enum(tk) && enums_match(&lt, &tt));
            }
            (TypeDetail::Struct { .. } | TypeDetail::Union { .. }, _) => {
                if behind_ptr {
                    return Ok(match tt.detail {
                        _ if lk == tk => true,
                        TypeDetail::Fwd { union } => (lk == Kind::Union) == union,
                        _ => false,
                    });
                }
                if lk != tk {
                    return Ok(false);
                }
                return composites_match(local, &lt, target, &tt, behind_ptr, level);
            }
            (TypeDetail::Int { size: ls, encoding: le, .. }, TypeDetail::Int { size: ts, encoding: te, .. }) => {
                let signed = |e: &IntEncoding| *e == IntEncoding::Signed;
                return Ok(ls == ts && signed(le) == signed(te));
            }
            (TypeDetail::Ptr { target: l }, TypeDetail::Ptr { target: t }) => {
                behind_ptr = true;
                (lid, tid) = (*l, *t);
            }
            (TypeDetail::Array { elem: l, len: ln, .. }, TypeDetail::Array { elem: t, len: tn, .. }) => {
                if ln != tn {
                    return Ok(false);
                }
                (lid, tid) = (*l, *t);
            }
            (TypeDetail::FuncProto { ret: lr, params: lp }, TypeDetail::FuncProto { ret: tr, params: tp }) => {
                if lp.len() != tp.len() {
                    return Ok(false);
                }
                for (l, t) in lp.iter().zip(tp) {
                    if !types_match_at(local, l.ty, target, t.ty, behind_ptr, level - 1)? {
                        return Ok(false);
                    }
                }
                (lid, tid) = (*lr, *tr);
            }
            // Kinds differ, or a kind no relocation matches (FLOAT, FUNC, VAR, …).
            _ => return Ok(false),
        }
    }
    Err(too_deep(lid))
}

fn enums_match(local: &Type<'_>, target: &Type<'_>) -> bool {
    let (lv, tv) = (local.enum_values(), target.enum_values());
    local.size() == target.size()
        && lv.len() <= tv.len()
        && lv.iter().all(|l| tv.iter().any(|t| names_match(l.name, t.name)))
}

fn composites_match(
    local: &Btf,
    lt: &Type<'_>,
    target: &Btf,
    tt: &Type<'_>,
    behind_ptr: bool,
    level: usize,
) -> Result<bool, BtfError> {
    let (lm, tm) = (lt.members(), tt.members());
    if lm.len() > tm.len() {
        return Ok(false);
    }
    for l in lm {
        let mut matched = false;
        for t in tm {
            if names_match(l.name, t.name) && types_match_at(local, l.ty, target, t.ty, behind_ptr, level - 1)? {
                matched = true;
                break;
            }
        }
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essential_names_as_libbpf() {
        assert_eq!(essential_name("task_struct___old"), "task_struct");
        assert_eq!(essential_name("task_struct"), "task_struct");
        assert_eq!(essential_name("a___b___c"), "a___b");
        assert_eq!(essential_name("a____b"), "a____b"); // four underscores: not a separator
        assert_eq!(essential_name("a___"), "a___"); // nothing after
        assert_eq!(essential_name("___a"), "___a"); // nothing before
        assert_eq!(essential_name("x___y"), "x");
        assert_eq!(essential_name("ab_"), "ab_");
        assert_eq!(essential_name(""), "");
    }
}
