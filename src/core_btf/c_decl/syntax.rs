//! The C syntax of one definition or declarator (libbpf's `btf_dump_emit_*_def` and
//! `btf_dump_emit_type_chain`): struct bodies with their padding and packing, enums, typedefs,
//! and C's inside-out declarators (`int (*table[2])(void)`). The walk deciding what to write
//! where is the parent module's.

use super::{pfx, too_deep, Dumper, MAX_NESTING, PTR_SIZE};

/// The largest gap between members written as padding: 1 MiB (16,384 `long: 64;` lines).
const MAX_GAP_BITS: i64 = 8 << 20;
use crate::core_btf::types::{Kind, Member, Type, TypeDetail, TypeId};
use crate::core_btf::BtfError;
use std::fmt::Write as _;

impl<'b> Dumper<'b> {
    /// libbpf's `btf__align_of`: natural alignment, 1 for a struct that must be packed, 0 for
    /// kinds that have none.
    fn align_of(&mut self, id: TypeId, depth: usize) -> Result<u32, BtfError> {
        if depth > MAX_NESTING {
            return Err(too_deep(id));
        }
        if let Some(&a) = self.aligns.get(id.0 as usize).filter(|&&a| a != u32::MAX) {
            return Ok(a);
        }
        let t = self.ty(id)?;
        let a = match &t.detail {
            TypeDetail::Int { size, .. }
            | TypeDetail::Enum { size, .. }
            | TypeDetail::Enum64 { size, .. }
            | TypeDetail::Float { size } => PTR_SIZE.min(*size),
            TypeDetail::Ptr { .. } => PTR_SIZE,
            TypeDetail::Typedef { target }
            | TypeDetail::Volatile { target }
            | TypeDetail::Const { target }
            | TypeDetail::Restrict { target }
            | TypeDetail::TypeTag { target, .. } => self.align_of(*target, depth + 1)?,
            TypeDetail::Array { elem, .. } => self.align_of(*elem, depth + 1)?,
            TypeDetail::Struct { size, members } | TypeDetail::Union { size, members } => {
                let mut max = 1;
                let mut packed = false;
                for m in members {
                    let a = self.align_of(m.ty, depth + 1)?;
                    if a == 0 {
                        max = 0;
                        break;
                    }
                    max = max.max(a);
                    if m.bitfield_size == 0 && m.bit_offset % (8 * a) != 0 {
                        packed = true;
                        break;
                    }
                }
                match max {
                    0 => 0,
                    _ if packed || size % max != 0 => 1,
                    _ => max,
                }
            }
            _ => 0,
        };
        if let Some(slot) = self.aligns.get_mut(id.0 as usize) {
            *slot = a;
        }
        Ok(a)
    }

    /// Whether a struct's layout needs `__attribute__((packed))`.
    fn is_packed(&mut self, size: u32, members: &[Member<'_>], depth: usize) -> Result<bool, BtfError> {
        let mut max = 1;
        for m in members {
            let a = self.align_of(m.ty, depth + 1)?;
            if a != 0 && m.bitfield_size == 0 && m.bit_offset % (8 * a) != 0 {
                return Ok(true);
            }
            max = max.max(a);
        }
        Ok(!size.is_multiple_of(max))
    }

    /// Unnamed bitfields filling bits `cur..next` (libbpf's `btf_dump_emit_bit_padding`) in
    /// struct `t`. A gap of more than [`MAX_GAP_BITS`] is refused: written as `long: 64;` lines
    /// it would take gigabytes for a hostile 4 GiB struct.
    fn bit_padding(
        &mut self,
        t: &Type<'b>,
        (cur, next): (i64, i64),
        next_align: u32,
        in_bitfield: bool,
        lvl: usize,
    ) -> Result<(), BtfError> {
        const PADS: [(&str, i64); 4] = [("long", PTR_SIZE as i64 * 8), ("int", 32), ("short", 16), ("char", 8)];
        if cur >= next {
            return Ok(());
        }
        if next - cur > MAX_GAP_BITS {
            return Err(BtfError::Unexpected {
                id: t.id.0,
                kind: t.kind(),
                name: t.name.to_string(),
                what: format!("has a gap of {} bytes between members, too large to write as padding", (next - cur) / 8),
            });
        }
        let roundup = |x: i64, to: i64| if to <= 0 { x } else { (x + to - 1) / to * to };
        let (mut pad_type, mut pad_bits, mut new_off) = ("char", 8, cur);
        for (name, bits) in PADS {
            (pad_type, pad_bits, new_off) = (name, bits, roundup(cur, bits));
            if new_off <= next {
                break;
            }
        }
        let mut cur = cur;
        if new_off > cur && new_off <= next {
            if in_bitfield
                || (new_off == next && roundup(cur, next_align as i64 * 8) != new_off)
                || (new_off != next && next - new_off <= new_off - cur)
            {
                let width = if in_bitfield { new_off - cur } else { 0 };
                let _ = write!(self.out, "\n{}{pad_type}: {width};", pfx(lvl));
            }
            cur = new_off;
        }
        while cur != next {
            let bits = (next - cur).min(pad_bits);
            if bits == pad_bits {
                let _ = write!(self.out, "\n{}{pad_type}: {pad_bits};", pfx(lvl));
                cur += bits;
                continue;
            }
            // The remainder: the smallest type that holds it.
            let (name, _) = PADS.iter().rev().find(|(_, b)| *b >= bits).copied().unwrap_or(PADS[0]);
            let _ = write!(self.out, "\n{}{name}: {bits};", pfx(lvl));
            cur += bits;
        }
        Ok(())
    }

    pub(super) fn struct_fwd(&mut self, t: &Type<'b>) {
        let kw = if t.kind() == Kind::Struct { "struct" } else { "union" };
        let name = self.type_name(t).to_string();
        self.out.push_str(kw);
        if !name.is_empty() {
            self.out.push(' ');
            self.out.push_str(&name);
        }
    }

    /// `struct name { members }` at indent `lvl` (libbpf's `btf_dump_emit_struct_def`).
    pub(super) fn struct_def(&mut self, t: &Type<'b>, lvl: usize, depth: usize) -> Result<(), BtfError> {
        if depth > MAX_NESTING {
            return Err(too_deep(t.id));
        }
        let (is_struct, size, members) = match &t.detail {
            TypeDetail::Struct { size, members } => (true, *size, members),
            TypeDetail::Union { size, members } => (false, *size, members),
            _ => return Ok(()),
        };
        let align = self.align_of(t.id, depth)?;
        let packed = is_struct && self.is_packed(size, members, depth)?;
        self.struct_fwd(t);
        self.out.push_str(" {");
        let mut off: i64 = 0;
        let mut prev_bitfield = false;
        for m in members {
            let m_align = if packed { 1 } else { self.align_of(m.ty, depth + 1)? };
            let in_bitfield = prev_bitfield && m.bitfield_size != 0;
            self.bit_padding(t, (off, m.bit_offset as i64), m_align, in_bitfield, lvl + 1)?;
            self.out.push('\n');
            self.out.push_str(pfx(lvl + 1));
            self.type_decl(m.ty, m.name, lvl + 1, depth + 1)?;
            if m.bitfield_size != 0 {
                let _ = write!(self.out, ": {}", m.bitfield_size);
                off = m.bit_offset as i64 + m.bitfield_size as i64;
                prev_bitfield = true;
            } else {
                let sz = self.btf.size_of(m.ty).unwrap_or(0).min(u32::MAX as u64) as i64;
                off = m.bit_offset as i64 + sz * 8;
                prev_bitfield = false;
            }
            self.out.push(';');
        }
        if is_struct {
            self.bit_padding(t, (off, size as i64 * 8), align, false, lvl + 1)?;
        }
        if !members.is_empty() || size != 0 {
            self.out.push('\n');
            self.out.push_str(pfx(lvl));
        }
        self.out.push('}');
        if packed {
            self.out.push_str(" __attribute__((packed))");
        }
        Ok(())
    }

    /// `enum name { A = 1, … }` at indent `lvl`.
    pub(super) fn enum_def(&mut self, t: &Type<'b>, lvl: usize) -> Result<(), BtfError> {
        let name = self.type_name(t).to_string();
        self.out.push_str("enum");
        if !name.is_empty() {
            self.out.push(' ');
            self.out.push_str(&name);
        }
        self.out.push_str(" {");
        let (signed, is64) = match &t.detail {
            TypeDetail::Enum { signed, .. } => (*signed, false),
            TypeDetail::Enum64 { signed, .. } => (*signed, true),
            _ => return Ok(()),
        };
        for v in t.enum_values() {
            // Enumerators share a namespace with typedef names: every enumerator counts, each
            // time it is written.
            let n = self.ident_names.entry(v.name).or_insert(0);
            *n += 1;
            let suffix = if *n > 1 { format!("___{n}") } else { String::new() };
            let value: String = match (is64, signed) {
                (false, true) => (v.value as i32).to_string(),
                (false, false) => (v.value as u32).to_string(),
                (true, true) => format!("{}LL", v.value as i64),
                (true, false) => format!("{}ULL", v.value as u64),
            };
            let _ = write!(self.out, "\n{}{}{suffix} = {value},", pfx(lvl + 1), v.name);
        }
        self.out.push('\n');
        self.out.push_str(pfx(lvl));
        self.out.push('}');
        // C sizes an enum to hold its values (4 bytes, 8 for 64-bit values): other sizes need
        // `mode` to keep the layout of structs embedding them.
        let size = t.size().unwrap_or(4);
        let fits32 = t.enum_values().iter().all(|v| (v.value as u64) >> 32 == 0);
        if size == 1 {
            self.out.push_str(" __attribute__((mode(byte)))");
        } else if size == 8 && PTR_SIZE == 8 && (!is64 || fits32) {
            self.out.push_str(" __attribute__((mode(word)))");
        }
        Ok(())
    }

    pub(super) fn fwd_def(&mut self, t: &Type<'b>) {
        let union = matches!(t.detail, TypeDetail::Fwd { union: true });
        self.out.push_str(if union { "union " } else { "struct " });
        self.out.push_str(t.name);
    }

    pub(super) fn typedef_def(&mut self, t: &Type<'b>, lvl: usize, depth: usize) -> Result<(), BtfError> {
        let name = self.ident_name(t).to_string();
        let target = t.target().unwrap_or_default();
        if target == TypeId::VOID && name == "__gnuc_va_list" {
            self.out.push_str("typedef __builtin_va_list __gnuc_va_list");
            return Ok(());
        }
        self.out.push_str("typedef ");
        self.type_decl(target, &name, lvl, depth + 1)
    }

    /// A declaration of `fname` (empty: an abstract declarator) with type `id`, in C's
    /// inside-out syntax (libbpf's `btf_dump_emit_type_decl`): the chain of pointers,
    /// modifiers, arrays and prototypes down to a named type, written from that type back out.
    pub(super) fn type_decl(&mut self, id: TypeId, fname: &str, lvl: usize, depth: usize) -> Result<(), BtfError> {
        if depth > MAX_NESTING {
            return Err(too_deep(id));
        }
        let mut chain = Vec::new();
        let mut cur = id;
        loop {
            if chain.len() > MAX_NESTING {
                return Err(too_deep(id));
            }
            chain.push(cur);
            if cur == TypeId::VOID {
                break;
            }
            let t = self.ty(cur)?;
            match &t.detail {
                TypeDetail::Ptr { target }
                | TypeDetail::Volatile { target }
                | TypeDetail::Const { target }
                | TypeDetail::Restrict { target }
                | TypeDetail::TypeTag { target, .. } => cur = *target,
                TypeDetail::FuncProto { ret, .. } => cur = *ret,
                TypeDetail::Array { elem, .. } => cur = *elem,
                _ => break,
            }
        }
        self.type_chain(&mut chain, fname, lvl, depth)
    }

    /// Leading modifiers of a named type (`const int`), popped off the chain.
    fn mods(&mut self, chain: &mut Vec<TypeId>) -> Result<(), BtfError> {
        while let Some(&id) = chain.last() {
            let word = match self.ty(id)?.kind() {
                Kind::Volatile => "volatile ",
                Kind::Const => "const ",
                Kind::Restrict => "restrict ",
                _ => return Ok(()),
            };
            self.out.push_str(word);
            chain.pop();
        }
        Ok(())
    }

    /// Drop modifiers (of arrays and prototypes, where C has no place for them).
    fn drop_mods(&mut self, chain: &mut Vec<TypeId>) -> Result<(), BtfError> {
        while let Some(&id) = chain.last() {
            if !matches!(self.ty(id)?.kind(), Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag) {
                return Ok(());
            }
            chain.pop();
        }
        Ok(())
    }

    fn name_after(&mut self, fname: &str, last_was_ptr: bool) {
        if !fname.is_empty() && !last_was_ptr {
            self.out.push(' ');
        }
        self.out.push_str(fname);
    }

    /// libbpf's `btf_dump_emit_type_chain`: `chain` is innermost-last.
    fn type_chain(&mut self, chain: &mut Vec<TypeId>, fname: &str, lvl: usize, depth: usize) -> Result<(), BtfError> {
        if depth > MAX_NESTING {
            return Err(too_deep(TypeId::VOID));
        }
        let mut last_was_ptr = true;
        while let Some(id) = chain.pop() {
            if id == TypeId::VOID {
                self.mods(chain)?;
                self.out.push_str("void");
                last_was_ptr = false;
                continue;
            }
            let t = self.ty(id)?;
            match &t.detail {
                TypeDetail::Int { .. } | TypeDetail::Float { .. } => {
                    self.mods(chain)?;
                    self.out.push_str(t.name);
                }
                TypeDetail::Struct { .. } | TypeDetail::Union { .. } => {
                    self.mods(chain)?;
                    if t.name.is_empty() {
                        self.struct_def(&t, lvl, depth + 1)?;
                    } else {
                        self.struct_fwd(&t);
                    }
                }
                TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. } => {
                    self.mods(chain)?;
                    if t.name.is_empty() {
                        self.enum_def(&t, lvl)?;
                    } else {
                        let name = self.type_name(&t).to_string();
                        self.out.push_str("enum ");
                        self.out.push_str(&name);
                    }
                }
                TypeDetail::Fwd { .. } => {
                    self.mods(chain)?;
                    self.fwd_def(&t);
                }
                TypeDetail::Typedef { .. } => {
                    self.mods(chain)?;
                    let name = self.ident_name(&t).to_string();
                    self.out.push_str(&name);
                }
                TypeDetail::Ptr { .. } => self.out.push_str(if last_was_ptr { "*" } else { " *" }),
                TypeDetail::Volatile { .. } => self.out.push_str(" volatile"),
                TypeDetail::Const { .. } => self.out.push_str(" const"),
                TypeDetail::Restrict { .. } => self.out.push_str(" restrict"),
                TypeDetail::TypeTag { attr, .. } => {
                    self.mods(chain)?;
                    if *attr {
                        let _ = write!(self.out, " __attribute__(({}))", t.name);
                    } else {
                        let _ = write!(self.out, " __attribute__((btf_type_tag(\"{}\")))", t.name);
                    }
                }
                TypeDetail::Array { len, .. } => {
                    self.drop_mods(chain)?;
                    let Some(&next) = chain.last() else {
                        self.name_after(fname, last_was_ptr);
                        let _ = write!(self.out, "[{len}]");
                        return Ok(());
                    };
                    let multidim = self.ty(next)?.kind() == Kind::Array;
                    if !fname.is_empty() && !last_was_ptr {
                        self.out.push(' ');
                    }
                    if !multidim {
                        self.out.push('(');
                    }
                    self.type_chain(chain, fname, lvl, depth + 1)?;
                    if !multidim {
                        self.out.push(')');
                    }
                    let _ = write!(self.out, "[{len}]");
                    return Ok(());
                }
                TypeDetail::FuncProto { params, .. } => {
                    self.drop_mods(chain)?;
                    if chain.is_empty() {
                        self.name_after(fname, last_was_ptr);
                    } else {
                        self.out.push_str(" (");
                        self.type_chain(chain, fname, lvl, depth + 1)?;
                        self.out.push(')');
                    }
                    self.out.push('(');
                    if params.is_empty() || (params.len() == 1 && params[0].ty == TypeId::VOID) {
                        self.out.push_str("void)");
                        return Ok(());
                    }
                    for (i, p) in params.iter().enumerate() {
                        if i > 0 {
                            self.out.push_str(", ");
                        }
                        if i == params.len() - 1 && p.ty == TypeId::VOID {
                            self.out.push_str("...");
                            break;
                        }
                        self.type_decl(p.ty, p.name, lvl, depth + 1)?;
                    }
                    self.out.push(')');
                    return Ok(());
                }
                _ => {
                    return Err(BtfError::Unexpected {
                        id: id.0,
                        kind: t.kind(),
                        name: t.name.to_string(),
                        what: "cannot appear in a C type declaration".into(),
                    })
                }
            }
            last_was_ptr = t.kind() == Kind::Ptr;
        }
        self.name_after(fname, last_was_ptr);
        Ok(())
    }
}
