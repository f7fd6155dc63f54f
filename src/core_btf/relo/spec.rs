//! Access specs (libbpf's `struct bpf_core_spec`): parsing a relocation's access string
//! against the local BTF, matching it against a target candidate, and building a target spec
//! from names ([`super::resolve_named`]).
//!
//! A spec has two levels. The raw spec is the access string itself, one index per level of
//! nesting (anonymous members included). The high-level accessors keep only what must match
//! in the target: named members and array indexes. Both carry the field's bit offset.

use super::super::types::{Kind, TypeDetail, TypeId};
use super::super::Btf;
use super::compat::{
    essential_name, fields_are_compat, is_any_enum, is_composite, skip_mods, types_are_compat, types_match,
};
use super::{Cause, CoreRelo, Fail, RelocKind, Res};
use std::fmt;

/// libbpf's `BPF_CORE_SPEC_MAX_LEN`: nesting deeper than this is refused.
pub(crate) const SPEC_MAX_LEN: usize = 64;

/// A named member (`name` set; `ty` is the struct/union, `idx` the member's index), or an
/// array element / the root object (`name` unset; `ty` is the element type, `idx` the index).
/// For enum relocations, the one accessor names the enumerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Accessor<'b> {
    pub ty: TypeId,
    pub idx: u32,
    pub name: Option<&'b str>,
}

#[derive(Clone, Debug)]
pub(crate) struct Spec<'b> {
    pub btf: &'b Btf,
    /// The type the relocation names, modifiers and typedefs not skipped.
    pub root: TypeId,
    pub kind: RelocKind,
    pub acc: Vec<Accessor<'b>>,
    pub raw: Vec<u32>,
    /// Bit offset of the field from the start of the root object. 32 bits wrapping, as libbpf.
    pub bit_offset: u32,
}

fn bad_spec(reason: impl Into<String>) -> Fail {
    Fail::new(Cause::BadSpec, reason)
}

fn too_deep() -> Fail {
    Fail::new(Cause::Unsupported, format!("access nests deeper than {SPEC_MAX_LEN} levels"))
}

/// `idx × size × 8`, wrapping to 32 bits as libbpf's `__u32 bit_offset` does.
fn element_bits(btf: &Btf, elem: TypeId, idx: u32) -> Res<u32> {
    let size = btf.size_of(elem)?;
    Ok((idx as u64).wrapping_mul(size).wrapping_mul(8) as u32)
}

impl<'b> Spec<'b> {
    /// A spec without accessors: what a type relocation's spec is.
    pub fn empty(btf: &'b Btf, root: TypeId, kind: RelocKind) -> Spec<'b> {
        Spec { btf, root, kind, acc: Vec::new(), raw: Vec::new(), bit_offset: 0 }
    }

    /// The spec of the enumerator of `cand` (an enum, after typedefs) whose essential name is
    /// `name`'s; `Ok(None)` when `cand` is no enum or has no such enumerator.
    pub fn enumerator(target: &'b Btf, cand: TypeId, kind: RelocKind, name: &str) -> Res<Option<Spec<'b>>> {
        let (id, t) = skip_mods(target, cand)?;
        if !is_any_enum(t.kind()) {
            return Ok(None);
        }
        let want = essential_name(name);
        let Some(i) = t.enum_values().iter().position(|v| essential_name(v.name) == want) else { return Ok(None) };
        let mut spec = Spec::empty(target, cand, kind);
        spec.acc.push(Accessor { ty: id, idx: i as u32, name: Some(t.enum_values()[i].name) });
        spec.raw.push(i as u32);
        Ok(Some(spec))
    }

    /// `bpf_core_parse_spec`: the local spec of `relo` in the object's BTF.
    pub fn parse(btf: &'b Btf, relo: &CoreRelo) -> Res<Spec<'b>> {
        let access = relo.access.as_str();
        if access.is_empty() || access.starts_with(':') {
            return Err(bad_spec(format!("access string \"{access}\" is empty or starts with ':'")));
        }
        let mut spec = Spec::empty(btf, relo.type_id, relo.kind);
        if relo.kind.is_type_based() {
            return match access {
                "0" => Ok(spec),
                _ => Err(bad_spec(format!("a type relocation's access string must be \"0\", not \"{access}\""))),
            };
        }
        for part in access.split(':') {
            let idx = part
                .parse::<u32>()
                .ok()
                .filter(|_| part.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad_spec(format!("access string \"{access}\": \"{part}\" is not an index")))?;
            if spec.raw.len() == SPEC_MAX_LEN {
                return Err(too_deep());
            }
            spec.raw.push(idx);
        }
        let (mut id, t) = skip_mods(btf, relo.type_id)?;
        let first = spec.raw[0];
        spec.acc.push(Accessor { ty: id, idx: first, name: None });

        if relo.kind.is_enumval_based() {
            let value = t
                .enum_values()
                .get(first as usize)
                .filter(|_| is_any_enum(t.kind()) && spec.raw.len() == 1)
                .ok_or_else(|| bad_spec(format!("\"{access}\" is not an enumerator of [{}] {}", id.0, t.kind())))?;
            spec.acc[0].name = Some(value.name);
            return Ok(spec);
        }

        spec.bit_offset = element_bits(btf, id, first)?;
        for &idx in &spec.raw[1..] {
            let (cur, t) = skip_mods(btf, id)?;
            id = cur;
            match &t.detail {
                TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. } => {
                    let m = members.get(idx as usize).ok_or_else(|| {
                        bad_spec(format!("[{}] {} has {} members, no member {idx}", id.0, t.kind(), members.len()))
                    })?;
                    spec.bit_offset = spec.bit_offset.wrapping_add(m.bit_offset);
                    if !m.name.is_empty() {
                        spec.acc.push(Accessor { ty: id, idx, name: Some(m.name) });
                    }
                    id = m.ty;
                }
                TypeDetail::Array { elem, len, .. } => {
                    let (elem, _) = skip_mods(btf, *elem)?;
                    let flex = spec.acc.last().is_some_and(|a| is_flex_arr(btf, a, *len));
                    if !flex && idx >= *len {
                        return Err(bad_spec(format!("index {idx} of an array of {len}")));
                    }
                    spec.acc.push(Accessor { ty: elem, idx, name: None });
                    spec.bit_offset = spec.bit_offset.wrapping_add(element_bits(btf, elem, idx)?);
                    id = elem;
                }
                _ => {
                    return Err(bad_spec(format!(
                        "\"{access}\" indexes into [{}] {} '{}', neither a struct, union nor array",
                        id.0,
                        t.kind(),
                        t.name
                    )))
                }
            }
        }
        Ok(spec)
    }

    /// `bpf_core_spec_match`: match this local spec against candidate `cand` of `target`.
    /// `Ok(None)`: the candidate does not match.
    pub fn match_candidate<'t>(&self, target: &'t Btf, cand: TypeId) -> Res<Option<Spec<'t>>> {
        let mut targ = Spec::empty(target, cand, self.kind);
        if self.kind.is_type_based() {
            let ok = if self.kind == RelocKind::TypeMatches {
                types_match(self.btf, self.root, target, cand)?
            } else {
                types_are_compat(self.btf, self.root, target, cand)?
            };
            return Ok(ok.then_some(targ));
        }
        if self.kind.is_enumval_based() {
            return Spec::enumerator(target, cand, self.kind, self.acc[0].name.unwrap_or_default());
        }
        let mut id = cand;
        for (i, local) in self.acc.iter().enumerate() {
            id = target.resolve(id)?;
            let next = match local.name {
                Some(name) => {
                    let local_member = self.local_member(local)?;
                    let compat = |t: TypeId| fields_are_compat(self.btf, local_member, target, t).map_err(Fail::from);
                    targ.match_member(id, name, &compat)?
                }
                None => targ.push_index(id, local.idx, i == 0)?,
            };
            match next {
                Some(next) => id = next,
                None => return Ok(None),
            }
        }
        Ok(Some(targ))
    }

    /// The type of the local member a named accessor stands for.
    fn local_member(&self, acc: &Accessor<'_>) -> Res<TypeId> {
        let t = self.btf.type_by_id(acc.ty)?;
        t.members().get(acc.idx as usize).map(|m| m.ty).ok_or_else(|| bad_spec("accessor past the members"))
    }

    /// `bpf_core_match_member`: find member `name` of the struct/union `id` (looking inside
    /// anonymous members), extending the raw spec and bit offset along the way; push its
    /// accessor if `compat` accepts its type. Returns the member's type.
    ///
    /// The speculative pushes are undone exactly as libbpf undoes them: a name match whose
    /// type is incompatible returns without popping its raw index and offset, so that an
    /// enclosing anonymous member's search goes on from the same state libbpf's does.
    fn match_member(&mut self, id: TypeId, name: &str, compat: &dyn Fn(TypeId) -> Res<bool>) -> Res<Option<TypeId>> {
        let (id, t) = skip_mods(self.btf, id)?;
        if !is_composite(t.kind()) {
            return Ok(None);
        }
        for (i, m) in t.members().iter().enumerate() {
            if self.raw.len() == SPEC_MAX_LEN {
                return Err(too_deep());
            }
            self.bit_offset = self.bit_offset.wrapping_add(m.bit_offset);
            self.raw.push(i as u32);
            if m.name.is_empty() {
                if let Some(found) = self.match_member(m.ty, name, compat)? {
                    return Ok(Some(found));
                }
            } else if m.name == name {
                if !compat(m.ty)? {
                    return Ok(None);
                }
                self.acc.push(Accessor { ty: id, idx: i as u32, name: Some(m.name) });
                return Ok(Some(m.ty));
            }
            self.bit_offset = self.bit_offset.wrapping_sub(m.bit_offset);
            self.raw.pop();
        }
        Ok(None)
    }

    /// An array-element accessor `[idx]` of `id` (already past modifiers). For the root
    /// accessor (`root`), `id` is the object itself rather than an array. Returns the element
    /// type, or `None` when `id` is not an array or `idx` is out of its bounds.
    fn push_index(&mut self, id: TypeId, idx: u32, root: bool) -> Res<Option<TypeId>> {
        let mut elem = id;
        if !root {
            let t = self.btf.type_by_id(id)?;
            let TypeDetail::Array { elem: e, len, .. } = t.detail else { return Ok(None) };
            let flex = self.acc.last().is_some_and(|a| is_flex_arr(self.btf, a, len));
            if !flex && idx >= len {
                return Ok(None);
            }
            elem = self.btf.resolve(e)?;
        }
        if self.raw.len() == SPEC_MAX_LEN {
            return Err(too_deep());
        }
        self.acc.push(Accessor { ty: elem, idx, name: None });
        self.raw.push(idx);
        self.bit_offset = self.bit_offset.wrapping_add(element_bits(self.btf, elem, idx)?);
        Ok(Some(elem))
    }

    /// A target spec built from names: `path` is `member.member[2].member` from `cand`
    /// (members of anonymous structs/unions are found by their own names, as in C).
    /// `Ok(None)` when a member is absent or an index out of bounds.
    pub fn from_names(target: &'b Btf, cand: TypeId, kind: RelocKind, path: &[PathStep<'_>]) -> Res<Option<Spec<'b>>> {
        let mut spec = Spec::empty(target, cand, kind);
        let mut id = target.resolve(cand)?;
        if spec.push_index(id, 0, true)?.is_none() {
            return Ok(None);
        }
        let any = |_: TypeId| Ok(true);
        for step in path {
            id = target.resolve(id)?;
            let next = match *step {
                PathStep::Member(name) => spec.match_member(id, name, &any)?,
                PathStep::Index(idx) => spec.push_index(id, idx, false)?,
            };
            match next {
                Some(next) => id = next,
                None => return Ok(None),
            }
        }
        Ok(Some(spec))
    }
}

/// One step of a name-based access path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathStep<'p> {
    Member(&'p str),
    Index(u32),
}

/// A zero-length array that is the last member of the struct it is accessed through.
fn is_flex_arr(btf: &Btf, acc: &Accessor<'_>, len: u32) -> bool {
    if acc.name.is_none() || len > 0 {
        return false;
    }
    btf.type_by_id(acc.ty).is_ok_and(|t| acc.idx as usize + 1 == t.members().len())
}

/// libbpf's `bpf_core_format_spec`: `<byte_off> [5] struct task_struct.real_parent.tgid
/// (0:61:53 @ offset 2500)`.
impl fmt::Display for Spec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match self.btf.type_by_id(self.root) {
            Ok(t) => (t.kind(), if t.name.is_empty() { "<anon>" } else { t.name }),
            Err(_) => (Kind::Void, "<?>"),
        };
        write!(f, "<{}> [{}] {} {name}", self.kind, self.root.0, kind.name().to_ascii_lowercase())?;
        if self.kind.is_type_based() {
            return Ok(());
        }
        if self.kind.is_enumval_based() {
            if let Some(acc) = self.acc.first() {
                let value =
                    self.btf.type_by_id(acc.ty).ok().and_then(|t| t.enum_values().get(acc.idx as usize).copied());
                match value {
                    Some(v) => write!(f, "::{} = {}", v.name, v.value)?,
                    None => write!(f, "::{}", acc.name.unwrap_or("?"))?,
                }
            }
            return Ok(());
        }
        for (i, acc) in self.acc.iter().enumerate() {
            match acc.name {
                Some(name) => write!(f, ".{name}")?,
                None if i > 0 || acc.idx > 0 => write!(f, "[{}]", acc.idx)?,
                None => {}
            }
        }
        let raw: Vec<String> = self.raw.iter().map(u32::to_string).collect();
        write!(f, " ({} @ offset {}", raw.join(":"), self.bit_offset / 8)?;
        if !self.bit_offset.is_multiple_of(8) {
            write!(f, ".{}", self.bit_offset % 8)?;
        }
        f.write_str(")")
    }
}
