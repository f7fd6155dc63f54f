//! Lookups over a parsed [`Btf`]: by name (through a hash index that the first lookup builds
//! in one pass over the names; later lookups walk one short chain), [`Btf::resolve`],
//! [`Btf::size_of`], [`Btf::enum_values`] and [`Btf::member_offset`]. All of them read raw
//! records directly rather than decoding whole types.

use super::reader::{ne32, Raw};
use super::types::{EnumValue, Kind, TypeDetail, TypeId, MAX_DEPTH, TYPE_HEADER_LEN};
use super::{Btf, BtfError};

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(K)
}

/// The length folded in, then a murmur3-style finalizer so that every bit is mixed.
fn finish(h: u64, len: usize) -> u64 {
    let mut h = h ^ len as u64;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// A fast 64-bit hash of a name (FxHash's multiply-rotate over zero-padded little-endian
/// 8-byte words). Collisions only cost a string comparison: every hit is checked by name.
fn name_hash(s: &[u8]) -> u64 {
    let mut h = 0;
    for chunk in s.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(w));
    }
    finish(h, s.len())
}

/// [`name_hash`] of the NUL-terminated string at the start of `s` (the end of `s` counts as a
/// NUL), and its length: one pass finding the terminator a word at a time while hashing.
fn hash_cstr(s: &[u8]) -> (u64, usize) {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut h = 0;
    let mut len = 0;
    loop {
        let mut w = [0u8; 8];
        let rest = s.get(len..).unwrap_or_default();
        let n = rest.len().min(8);
        w[..n].copy_from_slice(&rest[..n]);
        let word = u64::from_le_bytes(w);
        // The lowest set bit of `zero` marks the first zero byte (higher ones may be false).
        let zero = word.wrapping_sub(LOW) & !word & HIGH;
        if zero == 0 {
            h = mix(h, word);
            len += 8;
            continue;
        }
        let k = (zero.trailing_zeros() / 8) as usize;
        if k > 0 {
            h = mix(h, word & ((1u64 << (8 * k)) - 1));
        }
        len += k;
        return (finish(h, len), len);
    }
}

/// Whether a name contains `___` (libbpf's flavor separator).
fn has_flavor(name: &[u8]) -> bool {
    name.windows(3).any(|w| w == b"___")
}

/// The name index of one blob: a chained hash table in two flat arrays, built in one pass
/// (no sorting, one allocation each), chains in ascending id order.
pub(super) struct NameIndex {
    /// Per bucket, the index in `entries` of its first entry, or `NONE`.
    heads: Vec<u32>,
    entries: Vec<Entry>,
    shift: u32,
    /// Ids whose names contain `___` (CO-RE flavors such as `task_struct___v2`), ascending:
    /// found in the same pass, so CO-RE candidate search never rescans every name.
    flavored: Vec<u32>,
}

struct Entry {
    /// The hash's low 32 bits, to skip most string comparisons.
    tag: u32,
    id: u32,
    next: u32,
}

const NONE: u32 = u32::MAX;

/// How many members one [`Btf::member_offset`] component may visit (anonymous members included).
const MEMBER_SEARCH_BUDGET: usize = 1 << 20;

impl NameIndex {
    fn bucket(&self, h: u64) -> usize {
        (h >> self.shift) as usize
    }

    /// Ids whose name hashes to `h`, in id order.
    fn candidates(&self, h: u64) -> impl Iterator<Item = u32> + '_ {
        let mut at = self.heads.get(self.bucket(h)).copied().unwrap_or(NONE);
        std::iter::from_fn(move || {
            while let Some(e) = self.entries.get(at as usize) {
                at = e.next;
                if e.tag == h as u32 {
                    return Some(e.id);
                }
            }
            None
        })
    }
}

impl Btf {
    /// The name index of this blob's named types, built on first use.
    fn name_index(&self) -> &NameIndex {
        self.inner.names.get_or_init(|| {
            let inner = &self.inner;
            let data = self.as_bytes();
            // Twice as many buckets as types, at least 2^4; `shift` takes the hash's top bits.
            let bits = (inner.offsets.len() * 2).next_power_of_two().trailing_zeros().max(4);
            let mut index = NameIndex {
                heads: vec![NONE; 1 << bits],
                entries: Vec::with_capacity(inner.offsets.len()),
                shift: 64 - bits,
                flavored: Vec::new(),
            };
            // Last id first, so that each chain lists ids in ascending order.
            for (i, &off) in inner.offsets.iter().enumerate().rev() {
                let name_off = ne32(data, off as usize).unwrap_or(0);
                if name_off == 0 {
                    continue;
                }
                // A name that does not resolve is not indexed; `type_by_id` reports it.
                let (h, len, flavored) = match self.local_str_tail(name_off) {
                    Some(tail) => {
                        let (h, len) = hash_cstr(tail);
                        (h, len, has_flavor(&tail[..len.min(tail.len())]))
                    }
                    None => match self.str_bytes(name_off) {
                        Ok(name) => (name_hash(name), name.len(), has_flavor(name)),
                        Err(_) => continue,
                    },
                };
                if len == 0 {
                    continue;
                }
                if flavored {
                    index.flavored.push(inner.first_id + i as u32);
                }
                let bucket = index.bucket(h);
                let next = index.heads[bucket];
                index.heads[bucket] = index.entries.len() as u32;
                index.entries.push(Entry { tag: h as u32, id: inner.first_id + i as u32, next });
            }
            index.flavored.reverse();
            index
        })
    }

    /// This blob's types whose names carry a `___flavor` suffix, in id order (not the base's).
    pub(crate) fn flavored_ids(&self) -> impl Iterator<Item = TypeId> + '_ {
        self.name_index().flavored.iter().map(|&id| TypeId(id))
    }

    /// Every type named `name`, base BTF's first, in id order.
    pub fn find_by_name(&self, name: &str) -> Vec<TypeId> {
        let mut out = match self.base() {
            Some(base) => base.find_by_name(name),
            None => Vec::new(),
        };
        for id in self.name_index().candidates(name_hash(name.as_bytes())) {
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
                    count =
                        count.checked_mul(len).ok_or_else(|| unexpected(&r, "array size overflows 64 bits".into()))?;
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

    /// The offset in bits of a member from the start of `id` (a struct or union; typedefs
    /// and modifiers are skipped). `"a.b.c"` names nested members (embedded, not behind
    /// pointers); members of anonymous structs and unions are found by their own names, as in
    /// C; `"arr[3]"` indexes an array member. A bitfield's offset is its first bit.
    pub fn member_offset(&self, id: TypeId, path: &str) -> Result<u64, BtfError> {
        Ok(self.member_at(id, path)?.bit_offset)
    }

    /// Where the member at `path` of `id` is and what it is: [`Btf::member_offset`]'s walk,
    /// also returning the member's type and bitfield width (what a reader of it needs).
    pub fn member_at(&self, id: TypeId, path: &str) -> Result<MemberAt, BtfError> {
        let mut cur = id;
        let mut bits: u64 = 0;
        let mut bitfield_bits = 0;
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
                    return Err(unexpected(
                        &r,
                        format!("is not a struct or union, so has no member \"{name}\" (path \"{path}\")"),
                    ));
                }
                let mut budget = MEMBER_SEARCH_BUDGET;
                let (off, ty, width) = self
                    .find_member(&r, name.as_bytes(), 0, &mut budget)?
                    .ok_or_else(|| unexpected(&r, format!("has no member \"{name}\" (path \"{path}\")")))?;
                bits = bits.saturating_add(off);
                cur = ty;
                bitfield_bits = width;
            }
            for index in indexes {
                let r = self.raw(self.resolve(cur)?)?;
                if r.kind != Kind::Array {
                    return Err(unexpected(
                        &r,
                        format!("is not an array, so cannot be indexed [{index}] (path \"{path}\")"),
                    ));
                }
                let elem = TypeId(r.word(r.trailer(4, 0))?);
                let step = self.size_of(elem)?.checked_mul(8).and_then(|s| s.checked_mul(index));
                bits = step
                    .and_then(|s| bits.checked_add(s))
                    .ok_or_else(|| unexpected(&r, format!("offset of [{index}] overflows (path \"{path}\")")))?;
                cur = elem;
                bitfield_bits = 0;
            }
        }
        Ok(MemberAt { bit_offset: bits, ty: cur, bitfield_bits })
    }

    /// Find member `name` of the struct/union `r`, looking inside anonymous members.
    /// Returns its bit offset from the start of `r`, its type and its bitfield width (0: none). `budget` bounds the members
    /// visited, so that malformed BTF nesting many anonymous members cannot take forever.
    fn find_member(
        &self,
        r: &Raw<'_>,
        name: &[u8],
        depth: usize,
        budget: &mut usize,
    ) -> Result<Option<(u64, TypeId, u8)>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id: r.id });
        }
        *budget = budget.checked_sub(r.vlen()).ok_or_else(|| {
            unexpected(
                r,
                format!("looking for a member visits more than {MEMBER_SEARCH_BUDGET} members of anonymous structs"),
            )
        })?;
        for i in 0..r.vlen() {
            let m = r.off + TYPE_HEADER_LEN + 12 * i;
            let (name_off, ty, offset) = (r.word(m)?, TypeId(r.word(m + 4)?), r.word(m + 8)?);
            let bit = if r.kflag() { offset & 0xff_ffff } else { offset } as u64;
            let width = if r.kflag() { (offset >> 24) as u8 } else { 0 };
            let member_name = r.btf.str_bytes(name_off).map_err(|e| r.bad(format!("member {i} name: {e}")))?;
            if member_name == name {
                return Ok(Some((bit, ty, width)));
            }
            if member_name.is_empty() {
                let inner = self.raw(self.resolve(ty)?)?;
                if matches!(inner.kind, Kind::Struct | Kind::Union) {
                    if let Some((off, found, width)) = self.find_member(&inner, name, depth + 1, budget)? {
                        return Ok(Some((bit + off, found, width)));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// A member found by [`Btf::member_at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberAt {
    /// Bits from the start of the outer type.
    pub bit_offset: u64,
    /// The member's type (an array element's for a path ending in `[i]`).
    pub ty: TypeId,
    /// A bitfield's width in bits; 0 for an ordinary member.
    pub bitfield_bits: u8,
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
    fn hash_of_a_c_string_is_the_hash_of_the_name() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789";
        for len in 0..text.len() {
            let mut s = text[..len].to_vec();
            s.extend_from_slice(b"\0tail");
            assert_eq!(hash_cstr(&s), (name_hash(&text[..len]), len), "length {len}");
            assert_eq!(hash_cstr(&text[..len]), (name_hash(&text[..len]), len), "unterminated, length {len}");
        }
    }

    #[test]
    fn name_hash_differs_by_length_and_content() {
        assert_ne!(name_hash(b"task_struct"), name_hash(b"task_struct\0"));
        assert_ne!(name_hash(b"a"), name_hash(b"b"));
    }
}
