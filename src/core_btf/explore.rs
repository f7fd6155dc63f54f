//! The BTF explorer: what a reader asks of a kernel's types before writing a program.
//!
//! - [`Btf::member_rows`]: a struct's or union's members as rows (offset, size, bitfield width,
//!   C declaration), members of anonymous structs and unions indented under them, as `pahole`
//!   lays a type out.
//! - [`Btf::access_path`]: a chain through pointers, `task_struct->mm->arg_start`, resolved
//!   against this BTF into hops — one per dereference, each a (struct, member path) pair that a
//!   CO-RE relocation can find again on another kernel. `helpers::core_read::core_read_path`
//!   turns the hops into the instructions that read the value (`BPF_CORE_READ` in C).
//!
//! Offsets here are this BTF's; the hops carry only names, so a program built from them is
//! relocated against whichever kernel loads it.

use std::fmt;

use super::query::MemberAt;
use super::types::{Kind, TypeDetail, TypeId, MAX_DEPTH};
use super::{Btf, BtfError, IntEncoding};

/// One row of [`Btf::member_rows`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRow {
    /// Nesting inside anonymous structs and unions (0: a member of the type itself).
    pub depth: usize,
    /// The member's name; empty for an anonymous struct or union.
    pub name: String,
    /// Bits from the start of the explored type.
    pub bit_offset: u64,
    /// Bytes the member occupies (for a bitfield: its storage type's size).
    pub size: u64,
    /// A bitfield's width in bits; 0 for an ordinary member.
    pub bitfield_bits: u8,
    /// The member's C declaration (`char comm[16]`, `struct mm_struct *mm`); `struct {…}` or
    /// `union {…}` for an anonymous one, whose members follow one level deeper.
    pub decl: String,
}

/// One dereference of an [`AccessPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessHop {
    /// The struct or union read from (by name: what CO-RE looks up on the target kernel).
    pub type_name: String,
    /// The member path inside it (`mm`, `signal.rlim[7].rlim_cur`).
    pub path: String,
    /// The member's offset in this BTF, in bits.
    pub bit_offset: u64,
    /// The member's type in this BTF.
    pub ty: TypeId,
}

/// A chain of member accesses through pointers, resolved against one BTF
/// ([`Btf::access_path`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPath {
    /// The expression as given, `task_struct->mm->arg_start`.
    pub expr: String,
    /// One hop per `->` segment: every hop but the last reads a pointer.
    pub hops: Vec<AccessHop>,
    /// The final field's size in bytes (1, 2, 4 or 8).
    pub size: u64,
    /// Whether the final field is a signed integer (or a signed enum).
    pub signed: bool,
    /// The final field's C declaration (`long unsigned int arg_start`).
    pub decl: String,
}

impl fmt::Display for AccessPath {
    /// `task_struct->mm (+0x918) -> mm_struct->arg_start (+0x170): long unsigned int arg_start, 8 bytes`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, hop) in self.hops.iter().enumerate() {
            if i > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{}->{} (+{:#x})", hop.type_name, hop.path, hop.bit_offset / 8)?;
        }
        write!(f, ": {}, {} bytes", self.decl, self.size)
    }
}

impl Btf {
    /// The members of the struct or union `type_name` (`task_struct`, `struct sock`, a typedef
    /// of one), in order, anonymous members expanded one level deeper.
    pub fn member_rows(&self, type_name: &str) -> Result<Vec<MemberRow>, BtfError> {
        let id = self.composite_named(type_name)?;
        let mut rows = Vec::new();
        self.push_rows(id, 0, 0, &mut rows)?;
        Ok(rows)
    }

    fn push_rows(&self, id: TypeId, base_bits: u64, depth: usize, rows: &mut Vec<MemberRow>) -> Result<(), BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id: id.get() });
        }
        let t = self.type_by_id(self.resolve(id)?)?;
        for m in t.members() {
            let bit_offset = base_bits + u64::from(m.bit_offset);
            let size = self.size_of(m.ty)?;
            let inner = self.resolve(m.ty)?;
            let anonymous_composite = m.name.is_empty() && matches!(self.kind_of(inner)?, Kind::Struct | Kind::Union);
            if anonymous_composite {
                let word = if self.kind_of(inner)? == Kind::Union { "union" } else { "struct" };
                rows.push(MemberRow { depth, name: String::new(), bit_offset, size, bitfield_bits: 0, decl: format!("{word} {{…}}") });
                self.push_rows(inner, bit_offset, depth + 1, rows)?;
                continue;
            }
            let mut decl = self.c_member_decl(m.ty, m.name)?;
            if m.bitfield_size > 0 {
                decl.push_str(&format!(": {}", m.bitfield_size));
            }
            rows.push(MemberRow { depth, name: m.name.to_string(), bit_offset, size, bitfield_bits: m.bitfield_size, decl });
        }
        Ok(())
    }

    /// Resolve `expr` — a struct name, then member paths separated by `->`, each `->` a pointer
    /// dereference: `task_struct->mm->arg_start`, `task_struct->real_parent->tgid`,
    /// `task_struct->signal->rlim[7].rlim_cur` — into the hops that read it. Every segment but
    /// the last must end at a pointer to a named struct or union; the last at an integer, enum
    /// or pointer of 1, 2, 4 or 8 bytes that is not a bitfield (what one load can read).
    pub fn access_path(&self, expr: &str) -> Result<AccessPath, BtfError> {
        let mut segments = expr.split("->").map(str::trim);
        let root = segments.next().unwrap_or_default();
        let segments: Vec<&str> = segments.collect();
        if segments.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(bad_path(expr, "write TYPE->member[->member…] (e.g. task_struct->mm->arg_start)".into()));
        }
        let mut ty = self.composite_named(root)?;
        let mut hops = Vec::with_capacity(segments.len());
        for (i, segment) in segments.iter().enumerate() {
            let type_name = self.name_of(self.resolve(ty)?)?.to_string();
            let MemberAt { bit_offset, ty: member_ty, bitfield_bits } = self.member_at(ty, segment)?;
            hops.push(AccessHop { type_name: type_name.clone(), path: segment.to_string(), bit_offset, ty: member_ty });
            let resolved = self.resolve(member_ty)?;
            let t = self.type_by_id(resolved)?;
            if i + 1 < segments.len() {
                let TypeDetail::Ptr { target } = t.detail else {
                    return Err(bad_path(expr, format!("{type_name}.{segment} is {}, not a pointer, so `->` cannot follow it", self.c_member_decl(member_ty, "")?)));
                };
                let pointee = self.resolve(target)?;
                if !matches!(self.kind_of(pointee)?, Kind::Struct | Kind::Union) || self.name_of(pointee)?.is_empty() {
                    return Err(bad_path(expr, format!("{type_name}.{segment} points to {}, not a named struct or union", self.c_member_decl(target, "")?)));
                }
                ty = pointee;
                continue;
            }
            if bitfield_bits > 0 {
                return Err(bad_path(expr, format!("{type_name}.{segment} is a {bitfield_bits}-bit bitfield: read it with core_field_lshift/rshift")));
            }
            let (size, signed) = match &t.detail {
                TypeDetail::Int { size, encoding, .. } => (u64::from(*size), *encoding == IntEncoding::Signed),
                TypeDetail::Enum { size, signed, .. } | TypeDetail::Enum64 { size, signed, .. } => (u64::from(*size), *signed),
                TypeDetail::Ptr { .. } => (8, false),
                _ => (0, false),
            };
            if !matches!(size, 1 | 2 | 4 | 8) {
                return Err(bad_path(
                    expr,
                    format!(
                        "{type_name}.{segment} is {} ({} bytes): one load reads an integer, enum or pointer of 1, 2, 4 or 8 bytes; read it into a buffer with bpf_probe_read_kernel",
                        self.c_member_decl(member_ty, "")?,
                        self.size_of(member_ty)?
                    ),
                ));
            }
            let decl = self.c_member_decl(member_ty, segment.rsplit('.').next().unwrap_or(segment))?;
            return Ok(AccessPath { expr: expr.to_string(), hops, size, signed, decl });
        }
        Err(bad_path(expr, "no member to read".into()))
    }

    /// The struct or union `name` (`struct ` / `union ` prefixes allowed), or a typedef of one.
    fn composite_named(&self, name: &str) -> Result<TypeId, BtfError> {
        let name = name.trim();
        let (bare, kinds): (&str, &[Kind]) = if let Some(n) = name.strip_prefix("struct ") {
            (n.trim(), &[Kind::Struct])
        } else if let Some(n) = name.strip_prefix("union ") {
            (n.trim(), &[Kind::Union])
        } else {
            (name, &[Kind::Struct, Kind::Union, Kind::Typedef])
        };
        for &kind in kinds {
            if let Some(id) = self.find_by_name_kind(bare, kind) {
                let resolved = self.resolve(id)?;
                if matches!(self.kind_of(resolved)?, Kind::Struct | Kind::Union) {
                    return Ok(resolved);
                }
            }
        }
        Err(BtfError::NotFound { what: "struct or union", name: bare.to_string() })
    }
}

fn bad_path(expr: &str, what: String) -> BtfError {
    BtfError::BadPath { expr: expr.to_string(), what }
}

#[cfg(test)]
mod tests {
    use crate::core_btf::{Btf, BtfBuilder, IntEncoding, Member};

    /// `struct inner { int x; unsigned int f: 3; }; struct outer { long a; union { int b; short c; }; struct inner *in; char name[4]; }`
    fn sample() -> Btf {
        let mut b = BtfBuilder::new();
        let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
        let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
        let long = b.add_int("long", 8, IntEncoding::Signed, 64).unwrap();
        let short = b.add_int("short", 2, IntEncoding::Signed, 16).unwrap();
        let ch = b.add_int("char", 1, IntEncoding::Char, 8).unwrap();
        let inner = b.add_struct("inner", 8, &[Member::new("x", int, 0), Member::bitfield("f", uint, 32, 3)]).unwrap();
        let inner_ptr = b.add_ptr(inner).unwrap();
        let u = b.add_union("", 4, &[Member::new("b", int, 0), Member::new("c", short, 0)]).unwrap();
        let arr = b.add_array(ch, int, 4).unwrap();
        b.add_struct("outer", 32, &[Member::new("a", long, 0), Member::new("", u, 64), Member::new("in", inner_ptr, 128), Member::new("name", arr, 192)])
            .unwrap();
        Btf::from_bytes(b.encode()).unwrap()
    }

    #[test]
    fn rows_expand_anonymous_members_and_show_bitfields() {
        let btf = sample();
        let rows: Vec<(usize, String, u64, u64, String)> =
            btf.member_rows("outer").unwrap().into_iter().map(|r| (r.depth, r.name, r.bit_offset, r.size, r.decl)).collect();
        assert_eq!(
            rows,
            vec![
                (0, "a".into(), 0, 8, "long a".into()),
                (0, "".into(), 64, 4, "union {…}".into()),
                (1, "b".into(), 64, 4, "int b".into()),
                (1, "c".into(), 64, 2, "short c".into()),
                (0, "in".into(), 128, 8, "struct inner *in".into()),
                (0, "name".into(), 192, 4, "char name[4]".into()),
            ]
        );
        let inner = btf.member_rows("struct inner").unwrap();
        assert_eq!((inner[1].bitfield_bits, inner[1].decl.as_str()), (3, "unsigned int f: 3"));
    }

    #[test]
    fn paths_follow_pointers_and_refuse_what_one_load_cannot_read() {
        let btf = sample();
        let p = btf.access_path("outer->in->x").unwrap();
        assert_eq!(p.hops.iter().map(|h| (h.type_name.as_str(), h.path.as_str(), h.bit_offset)).collect::<Vec<_>>(), vec![("outer", "in", 128), ("inner", "x", 0)]);
        assert_eq!((p.size, p.signed, p.decl.as_str()), (4, true, "int x"));
        assert_eq!(p.to_string(), "outer->in (+0x10) -> inner->x (+0x0): int x, 4 bytes");
        assert_eq!(btf.access_path("outer->c").unwrap().size, 2);
        let err = |e: &str| btf.access_path(e).unwrap_err().to_string();
        assert!(err("outer->a->x").contains("not a pointer"), "{}", err("outer->a->x"));
        assert!(err("outer->in->f").contains("bitfield"), "{}", err("outer->in->f"));
        assert!(err("outer->name").contains("into a buffer"), "{}", err("outer->name"));
        assert!(err("outer->nope").contains("has no member \"nope\""), "{}", err("outer->nope"));
        assert!(err("outer").contains("TYPE->member"), "{}", err("outer"));
        assert!(err("missing->x").contains("no BTF struct or union named \"missing\""), "{}", err("missing->x"));
    }
}
