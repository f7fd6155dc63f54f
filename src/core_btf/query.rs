//! Lookups over a parsed [`Btf`]: by name (through a lazily built, sorted hash index, so the
//! first lookup pays one pass over the names and later ones a binary search), [`Btf::resolve`],
//! [`Btf::size_of`], [`Btf::enum_values`] and [`Btf::member_offset`]. All of them read raw
//! records directly rather than decoding whole types.

use super::reader::{Raw, ne32};
use super::types::{EnumValue, Kind, TypeDetail, TypeId, MAX_DEPTH, TYPE_HEADER_LEN};
use super::{Btf, BtfError};

/// A fast 64-bit hash of a name (FxHash's multiply-rotate over 8-byte words). Collisions only
/// cost a string comparison: every hit is checked against the name.
fn name_hash(s: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = s.len() as u64;
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h
}

impl Btf {
    /// The (hash, id) index of this blob's named types, built on first use.
    fn name_index(&self) -> &[(u64, u32)] {
        self.inner.names.get_or_init(|| {
            let inner = &self.inner;
            let data = self.as_bytes();
            let mut index = Vec::with_capacity(inner.offsets.len());
            for (i, &off) in inner.offsets.iter().enumerate() {
                let name_off = ne32(data, off as usize).unwrap_or(0);
                if name_off == 0 {
                    continue;
                }
                // A name that does not resolve is not indexed; `type_by_id` reports it.
                if let Ok(name) = self.str_bytes(name_off) {
                    if !name.is_empty() {
                        index.push((name_hash(name), inner.first_id + i as u32));
                    }
                }
            }
            index.sort_unstable();
            index
        })
    }

    /// Every type named `name`, base BTF's first, in id order.
    pub fn find_by_name(&self, name: &str) -> Vec<TypeId> {
        let mut out = match self.base() {
            Some(base) => base.find_by_name(name),
            None => Vec::new(),
        };
        let index = self.name_index();
        let h = name_hash(name.as_bytes());
        let start = index.partition_point(|e| e.0 < h);
        for &(_, id) in index[start..].iter().take_while(|e| e.0 == h) {
            if self.raw(TypeId(id)).and_then(|r| r.btf.str_bytes(r.name_off)).is_ok_and(|n| n == name.as_bytes()) {
                out.push(TypeId(id));
            }
        }
        out
    }

    /// The first type named `name` of kind `kind`.
    pub fn find_by_name_kind(&self, name: &str, kind: Kind) -> Option<TypeId> {
        self.find_by_name(name).into_iter().find(|&id| self.kind_of(id).is_ok_and(|k| k == kind))
    }

    /// Skip typedefs and CONST/VOLATILE/RESTRICT/TYPE_TAG modifiers.
    pub fn resolve(&self, id: TypeId) -> Result<TypeId, BtfError> {
        let mut cur = id;
        for _ in 0..=MAX_DEPTH {
            let r = self.raw(cur)?;
            if !r.kind.is_modifier() {
                return Ok(cur);
            }
            cur = TypeId(r.size_type);
        }
        Err(BtfError::TooDeep { id: id.0 })
    }

    /// A type's size in bytes: typedefs, modifiers and VARs followed, arrays multiplied out,
    /// pointers 8. VOID, FWD, FUNC, FUNC_PROTO and DECL_TAG have none (an error).
    pub fn size_of(&self, id: TypeId) -> Result<u64, BtfError> {
        let mut cur = id;
        let mut count: u64 = 1;
        for _ in 0..=MAX_DEPTH {
            let r = self.raw(cur)?;
            let size = match r.kind {
                Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Float | Kind::Datasec => {
                    r.size_type as u64
                }
                Kind::Ptr => 8,
                Kind::Typedef | Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag | Kind::Var => {
                    cur = TypeId(r.size_type);
                    continue;
                }
                Kind::Array => {
                    let t = r.trailer(4, 0);
                    let len = r.word(t + 8)? as u64;
                    count = count.checked_mul(len).ok_or_else(|| unexpected(&r, "array size overflows 64 bits".into()))?;
                    cur = TypeId(r.word(t)?);
                    continue;
                }
                Kind::Void | Kind::Fwd | Kind::Func | Kind::FuncProto | Kind::DeclTag => {
                    return Err(unexpected(&r, "has no size".into()));
                }
            };
            return count.checked_mul(size).ok_or_else(|| unexpected(&r, "array size overflows 64 bits".into()));
        }
        Err(BtfError::TooDeep { id: id.0 })
    }

    /// The values of the ENUM or ENUM64 named `name`.
    pub fn enum_values(&self, name: &str) -> Result<Vec<EnumValue<'_>>, BtfError> {
        let id = self
            .find_by_name(name)
            .into_iter()
            .find(|&id| self.kind_of(id).is_ok_and(|k| matches!(k, Kind::Enum | Kind::Enum64)))
            .ok_or_else(|| BtfError::NotFound { what: "enum", name: name.to_string() })?;
        match self.type_by_id(id)?.detail {
            TypeDetail::Enum { values, .. } | TypeDetail::Enum64 { values, .. } => Ok(values),
            _ => Ok(Vec::new()),
        }
    }

    /// The offset in bits of a member from the start of `id` (a struct or union, typedefs
    /// and modifiers allowed): `"a.b.c"`, through pointers-free nesting; members of anonymous
    /// structs and unions are found as in C; `"arr[3]"` indexes an array member.
    pub fn member_offset(&self, id: TypeId, path: &str) -> Result<u64, BtfError> {
        let mut cur = id;
        let mut bits: u64 = 0;
        for component in path.split('.') {
            let (name, indexes) = split_component(component).ok_or_else(|| {
                let r = self.raw(id);
                match r {
                    Ok(r) => unexpected(&r, format!("bad member path \"{path}\" at \"{component}\"")),
                    Err(e) => e,
                }
            })?;
            if !name.is_empty() {
                let r = self.raw(self.resolve(cur)?)?;
                if !matches!(r.kind, Kind::Struct | Kind::Union) {
                    return Err(unexpected(&r, format!("is not a struct or union, so has no member \"{name}\" (path \"{path}\")")));
                }
                let (off, ty) = self
                    .find_member(&r, name.as_bytes(), 0)?
                    .ok_or_else(|| unexpected(&r, format!("has no member \"{name}\" (path \"{path}\")")))?;
                bits = bits.saturating_add(off);
                cur = ty;
            }
            for index in indexes {
                let r = self.raw(self.resolve(cur)?)?;
                if r.kind != Kind::Array {
                    return Err(unexpected(&r, format!("is not an array, so cannot be indexed [{index}] (path \"{path}\")")));
                }
                let elem = TypeId(r.word(r.trailer(4, 0))?);
                let step = self.size_of(elem)?.checked_mul(8).and_then(|s| s.checked_mul(index));
                bits = step
                    .and_then(|s| bits.checked_add(s))
                    .ok_or_else(|| unexpected(&r, format!("offset of [{index}] overflows (path \"{path}\")")))?;
                cur = elem;
            }
        }
        Ok(bits)
    }

    /// Find member `name` of the struct/union `r`, looking inside anonymous members.
    /// Returns its bit offset from the start of `r` and its type.
    fn find_member(&self, r: &Raw<'_>, name: &[u8], depth: usize) -> Result<Option<(u64, TypeId)>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id: r.id });
        }
        for i in 0..r.vlen() {
            let m = r.off + TYPE_HEADER_LEN + 12 * i;
            let (name_off, ty, offset) = (r.word(m)?, TypeId(r.word(m + 4)?), r.word(m + 8)?);
            let bit = if r.kflag() { offset & 0xff_ffff } else { offset } as u64;
            let member_name = r.btf.str_bytes(name_off).map_err(|e| r.bad(format!("member {i} name: {e}")))?;
            if member_name == name {
                return Ok(Some((bit, ty)));
            }
            if member_name.is_empty() {
                let inner = self.raw(self.resolve(ty)?)?;
                if matches!(inner.kind, Kind::Struct | Kind::Union) {
                    if let Some((off, found)) = self.find_member(&inner, name, depth + 1)? {
                        return Ok(Some((bit + off, found)));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// `name[1][2]` → ("name", [1, 2]); `None` when malformed.
fn split_component(component: &str) -> Option<(&str, Vec<u64>)> {
    let (name, mut rest) = match component.find('[') {
        Some(i) => (&component[..i], &component[i..]),
        None => (component, ""),
    };
    let mut indexes = Vec::new();
    while let Some(after) = rest.strip_prefix('[') {
        let close = after.find(']')?;
        indexes.push(after[..close].trim().parse().ok()?);
        rest = &after[close + 1..];
    }
    if !rest.is_empty() || (name.is_empty() && indexes.is_empty()) {
        return None;
    }
    Some((name, indexes))
}

/// An [`BtfError::Unexpected`] naming `r`.
fn unexpected(r: &Raw<'_>, what: String) -> BtfError {
    let name = r.btf.str_bytes(r.name_off).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
    BtfError::Unexpected { id: r.id, kind: r.kind, name, what }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_path_components() {
        assert_eq!(split_component("a"), Some(("a", vec![])));
        assert_eq!(split_component("a[1][22]"), Some(("a", vec![1, 22])));
        assert_eq!(split_component("[3]"), Some(("", vec![3])));
        assert_eq!(split_component(""), None);
        assert_eq!(split_component("a[1"), None);
        assert_eq!(split_component("a[x]"), None);
        assert_eq!(split_component("a[1]b"), None);
    }

    #[test]
    fn name_hash_differs_by_length_and_content() {
        assert_ne!(name_hash(b"task_struct"), name_hash(b"task_struct\0"));
        assert_ne!(name_hash(b"a"), name_hash(b"b"));
    }
}
