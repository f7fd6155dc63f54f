//! Showing BTF to people: raw bytes as a typed value ([`Btf::format_value`], what map dumps and
//! the REPL print) and a type as bpftool's `[ID] KIND 'name' …` lines ([`Btf::format_type_raw`]).
//!
//! Values are written as C initialisers: `{ .pid = 12, .comm = "bash", .flags = 0x4,
//! .arr = [1, 2, 3], .ptr = 0xffff888100a3c000 }`. Every read is bounds-checked against the
//! bytes given; a buffer shorter than the type is an error, never a panic, and the work done
//! for one value is bounded even for BTF describing huge nests of zero-sized types.

use super::types::{IntEncoding, Kind, Linkage, Member, Type, TypeDetail, TypeId, MAX_DEPTH};
use super::{Btf, BtfError};
use std::fmt::Write as _;

/// Nesting of structs and arrays deeper than this is refused (malformed BTF).
const MAX_VALUE_NESTING: usize = 4 * MAX_DEPTH;
/// How many zero-sized array elements are written before `…` (an array of a zero-sized type
/// takes no bytes, so its length is not bounded by the buffer).
const MAX_EMPTY_ELEMS: u64 = 16;

impl Btf {
    /// `data` read as a value of type `id` (typedefs and modifiers followed), as a C
    /// initialiser:
    ///
    /// * integers in decimal, signed or not as the type says; an unsigned integer in a member
    ///   whose name ends in `flags` or `mask` in hex (`.flags = 0x4`); 128-bit integers in hex;
    ///   `bool` as `true`/`false`;
    /// * `char` arrays holding a NUL-terminated printable string as `"text"` (bpftool's rule),
    ///   other arrays as `[1, 2, 3]`;
    /// * enums by enumerator name (the number when no enumerator matches);
    /// * structs as `{ .a = 1, .b = { .c = 2 } }` (an anonymous member as a bare `{ … }`),
    ///   unions by their first member, bitfields by value;
    /// * pointers as `0x…`, floats as Rust's `{:?}` writes them (`1.5`, `NaN`), a DATASEC as
    ///   its variables `{ .var = … }`.
    ///
    /// `data` must hold at least `size_of(id)` bytes; bytes after those are ignored.
    ///
    /// ```
    /// use bpfkit::core_btf::{Btf, BtfBuilder, IntEncoding, Member};
    /// let mut b = BtfBuilder::new();
    /// let int = b.add_int("int", 4, IntEncoding::Signed, 32)?;
    /// let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32)?;
    /// let char_ = b.add_int("char", 1, IntEncoding::Signed, 8)?;
    /// let comm = b.add_array(char_, uint, 8)?;
    /// let members = [Member::new("pid", int, 0), Member::new("comm", comm, 32), Member::new("flags", uint, 96)];
    /// let task = b.add_struct("task", 16, &members)?;
    /// let btf = Btf::from_bytes(b.encode())?;
    ///
    /// let mut value = [0u8; 16];
    /// value[..4].copy_from_slice(&12i32.to_ne_bytes());
    /// value[4..9].copy_from_slice(b"bash\0");
    /// value[12..].copy_from_slice(&4u32.to_ne_bytes());
    /// assert_eq!(btf.format_value(task, &value)?, r#"{ .pid = 12, .comm = "bash", .flags = 0x4 }"#);
    /// assert!(btf.format_value(task, &value[..8]).is_err());
    /// # Ok::<(), bpfkit::core_btf::BtfError>(())
    /// ```
    pub fn format_value(&self, id: TypeId, data: &[u8]) -> Result<String, BtfError> {
        let size = self.size_of(id)?;
        if (data.len() as u64) < size {
            let t = self.type_by_id(id)?;
            return Err(BtfError::Unexpected {
                id: id.0,
                kind: t.kind(),
                name: t.name.to_string(),
                what: format!("is {size} bytes; cannot format a value from {} bytes", data.len()),
            });
        }
        let mut f = ValueFmt { btf: self, out: String::new(), budget: 8 * data.len() + (1 << 20) };
        f.value(id, data, None, "", 0)?;
        Ok(f.out)
    }

    /// One type as `bpftool btf dump` prints it in its plain format: `[ID] KIND 'name' …`, with
    /// a tab-indented line for each member, enumerator, parameter or section variable.
    pub fn format_type_raw(&self, id: TypeId) -> Result<String, BtfError> {
        let t = self.type_by_id(id)?;
        let anon = |n: &str| if n.is_empty() { "(anon)".to_string() } else { n.to_string() };
        let linkage = |l: &Linkage| match l {
            Linkage::Static => "static",
            Linkage::Global => "global",
            Linkage::Extern => "extern",
        };
        let mut s = format!("[{}] {} '{}'", t.id.0, t.kind().name(), anon(t.name));
        let w = &mut s;
        match &t.detail {
            TypeDetail::Void => {}
            TypeDetail::Int { size, encoding, offset, bits } => {
                let enc = match encoding {
                    IntEncoding::Unsigned => "(none)",
                    IntEncoding::Signed => "SIGNED",
                    IntEncoding::Char => "CHAR",
                    IntEncoding::Bool => "BOOL",
                };
                let _ = write!(w, " size={size} bits_offset={offset} nr_bits={bits} encoding={enc}");
            }
            TypeDetail::Ptr { target }
            | TypeDetail::Typedef { target }
            | TypeDetail::Volatile { target }
            | TypeDetail::Const { target }
            | TypeDetail::Restrict { target }
            | TypeDetail::TypeTag { target, .. } => {
                let _ = write!(w, " type_id={}", target.0);
            }
            TypeDetail::Array { elem, index, len } => {
                let _ = write!(w, " type_id={} index_type_id={} nr_elems={len}", elem.0, index.0);
            }
            TypeDetail::Struct { size, members } | TypeDetail::Union { size, members } => {
                let _ = write!(w, " size={size} vlen={}", members.len());
                for m in members {
                    let _ = write!(w, "\n\t'{}' type_id={} bits_offset={}", anon(m.name), m.ty.0, m.bit_offset);
                    if m.bitfield_size != 0 {
                        let _ = write!(w, " bitfield_size={}", m.bitfield_size);
                    }
                }
            }
            TypeDetail::Enum { size, signed, values } | TypeDetail::Enum64 { size, signed, values } => {
                let enc = if *signed { "SIGNED" } else { "UNSIGNED" };
                let _ = write!(w, " encoding={enc} size={size} vlen={}", values.len());
                let suffix = match (t.kind(), signed) {
                    (Kind::Enum64, true) => "LL",
                    (Kind::Enum64, false) => "ULL",
                    _ => "",
                };
                for v in values {
                    let _ = write!(w, "\n\t'{}' val={}{suffix}", anon(v.name), v.value);
                }
            }
            TypeDetail::Fwd { union } => {
                let _ = write!(w, " fwd_kind={}", if *union { "union" } else { "struct" });
            }
            TypeDetail::Func { proto, linkage: l } => {
                let _ = write!(w, " type_id={} linkage={}", proto.0, linkage(l));
            }
            TypeDetail::FuncProto { ret, params } => {
                let _ = write!(w, " ret_type_id={} vlen={}", ret.0, params.len());
                for p in params {
                    let _ = write!(w, "\n\t'{}' type_id={}", anon(p.name), p.ty.0);
                }
            }
            TypeDetail::Var { ty, linkage: l } => {
                let _ = write!(w, " type_id={}, linkage={}", ty.0, linkage(l));
            }
            TypeDetail::Datasec { size, vars } => {
                let _ = write!(w, " size={size} vlen={}", vars.len());
                for v in vars {
                    let var = self.type_by_id(v.ty)?;
                    let (kind, name) = (var.kind().name(), anon(var.name));
                    let _ = write!(w, "\n\ttype_id={} offset={} size={} ({kind} '{name}')", v.ty.0, v.offset, v.size);
                }
            }
            TypeDetail::Float { size } => {
                let _ = write!(w, " size={size}");
            }
            TypeDetail::DeclTag { target, component_idx, .. } => {
                let _ = write!(w, " type_id={} component_idx={component_idx}", target.0);
            }
        }
        Ok(s)
    }
}

/// Where a bitfield sits: `bits` wide, starting `bit_off` bits into the value's bytes.
#[derive(Clone, Copy)]
struct Bits {
    bit_off: u32,
    bits: u32,
}

struct ValueFmt<'a> {
    btf: &'a Btf,
    out: String,
    /// Values left to write before giving up.
    budget: usize,
}

fn unexpected(t: &Type<'_>, what: String) -> BtfError {
    BtfError::Unexpected { id: t.id.0, kind: t.kind(), name: t.name.to_string(), what }
}

/// Members whose unsigned values read best in hex.
fn hex_hint(name: &str) -> bool {
    name.ends_with("flags") || name.ends_with("mask")
}

/// Up to 16 bytes at the start of `data` as a native-endian unsigned integer.
fn read_uint(data: &[u8], size: usize) -> Option<u128> {
    let bytes = data.get(..size).filter(|_| size <= 16)?;
    let mut buf = [0u8; 16];
    if cfg!(target_endian = "little") {
        buf[..size].copy_from_slice(bytes);
        Some(u128::from_le_bytes(buf))
    } else {
        buf[16 - size..].copy_from_slice(bytes);
        Some(u128::from_be_bytes(buf))
    }
}

/// `bits` bits starting `bit_off` bits into `data` (little-endian bit numbering, as the
/// kernel lays out bitfields on little-endian machines).
fn read_bits(data: &[u8], b: Bits) -> Option<u128> {
    if b.bits == 0 || b.bits > 128 {
        return None;
    }
    let first = (b.bit_off / 8) as usize;
    let shift = b.bit_off % 8;
    let len = ((shift + b.bits).div_ceil(8)) as usize;
    let bytes = data.get(first..first.checked_add(len)?)?;
    // Up to 17 bytes: fold from the top so that nothing is lost before the shift.
    let mut v: u128 = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let pos = 8 * i as u32;
        if pos >= shift {
            if let Some(part) = (byte as u128).checked_shl(pos - shift) {
                v |= part;
            }
        } else {
            v |= (byte as u128) >> (shift - pos);
        }
    }
    Some(if b.bits == 128 { v } else { v & ((1u128 << b.bits) - 1) })
}

fn sign_extend(v: u128, bits: u32) -> i128 {
    if bits == 0 || bits >= 128 {
        return v as i128;
    }
    let shift = 128 - bits;
    ((v << shift) as i128) >> shift
}

impl ValueFmt<'_> {
    /// Write the value of type `id` at the start of `data` (or, for a bitfield, at `bits`).
    /// `hint` is the member's name.
    fn value(&mut self, id: TypeId, data: &[u8], bits: Option<Bits>, hint: &str, depth: usize) -> Result<(), BtfError> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| BtfError::Unexpected {
            id: id.0,
            kind: Kind::Void,
            name: String::new(),
            what: "value has too many parts to format (zero-sized types nested?)".into(),
        })?;
        let t = self.btf.type_by_id(self.btf.resolve(id)?)?;
        if depth > MAX_VALUE_NESTING {
            return Err(unexpected(&t, format!("value nests deeper than {MAX_VALUE_NESTING} levels")));
        }
        let short = |t: &Type<'_>| unexpected(t, "value runs past the end of the bytes".into());
        match &t.detail {
            TypeDetail::Int { size, encoding, offset, bits: nr_bits } => {
                let b = bits.unwrap_or(Bits { bit_off: *offset as u32, bits: *nr_bits as u32 });
                let raw = if bits.is_none() && *offset == 0 && *nr_bits as u32 == 8 * size {
                    read_uint(data, *size as usize)
                } else {
                    read_bits(data, b)
                };
                let v = raw.ok_or_else(|| short(&t))?;
                match encoding {
                    IntEncoding::Bool => self.out.push_str(if v != 0 { "true" } else { "false" }),
                    _ if *size > 8 => {
                        let _ = write!(self.out, "{v:#x}");
                    }
                    IntEncoding::Signed | IntEncoding::Char => {
                        let _ = write!(self.out, "{}", sign_extend(v, b.bits));
                    }
                    IntEncoding::Unsigned if hex_hint(hint) => {
                        let _ = write!(self.out, "{v:#x}");
                    }
                    IntEncoding::Unsigned => {
                        let _ = write!(self.out, "{v}");
                    }
                }
            }
            TypeDetail::Enum { size, signed, values } | TypeDetail::Enum64 { size, signed, values } => {
                let b = bits.unwrap_or(Bits { bit_off: 0, bits: 8 * size });
                let raw = read_bits(data, b).ok_or_else(|| short(&t))?;
                let v = if *signed { sign_extend(raw, b.bits) } else { raw as i128 };
                match values.iter().find(|e| e.value == v) {
                    Some(e) => self.out.push_str(e.name),
                    None => {
                        let _ = write!(self.out, "{v}");
                    }
                }
            }
            TypeDetail::Ptr { .. } => {
                let v = read_uint(data, 8).ok_or_else(|| short(&t))?;
                let _ = write!(self.out, "{v:#x}");
            }
            TypeDetail::Float { size } => {
                let raw = data.get(..*size as usize).ok_or_else(|| short(&t))?;
                match raw.len() {
                    4 => {
                        let _ = write!(self.out, "{:?}", f32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]));
                    }
                    8 => {
                        let v = read_uint(raw, 8).ok_or_else(|| short(&t))? as u64;
                        let _ = write!(self.out, "{:?}", f64::from_bits(v));
                    }
                    _ => {
                        let v = read_uint(raw, raw.len()).ok_or_else(|| short(&t))?;
                        let _ = write!(self.out, "{v:#x}");
                    }
                }
            }
            TypeDetail::Array { elem, len, .. } => self.array(&t, *elem, *len, data, depth)?,
            TypeDetail::Struct { members, .. } => self.members(members, data, depth)?,
            TypeDetail::Union { members, .. } => self.members(&members[..members.len().min(1)], data, depth)?,
            TypeDetail::Datasec { vars, .. } => {
                let mut first = true;
                self.out.push('{');
                for v in vars {
                    let name = self.btf.name_of(v.ty)?;
                    let at = data.get(v.offset as usize..).ok_or_else(|| short(&t))?;
                    self.out.push_str(if first { " ." } else { ", ." });
                    first = false;
                    self.out.push_str(name);
                    self.out.push_str(" = ");
                    self.value(v.ty, at, None, name, depth + 1)?;
                }
                self.out.push_str(if first { "}" } else { " }" });
            }
            TypeDetail::Var { ty, .. } => self.value(*ty, data, bits, hint, depth + 1)?,
            _ => return Err(unexpected(&t, "has no value to format".into())),
        }
        Ok(())
    }

    /// A struct's (or a union's first) members, `{ .a = 1, … }`.
    fn members(&mut self, members: &[Member<'_>], data: &[u8], depth: usize) -> Result<(), BtfError> {
        if members.is_empty() {
            self.out.push_str("{}");
            return Ok(());
        }
        self.out.push_str("{ ");
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            if !m.name.is_empty() {
                let _ = write!(self.out, ".{} = ", m.name);
            }
            if m.bitfield_size != 0 {
                let b = Bits { bit_off: m.bit_offset, bits: m.bitfield_size as u32 };
                self.value(m.ty, data, Some(b), m.name, depth + 1)?;
            } else if m.bit_offset % 8 == 0 {
                let at = data.get((m.bit_offset / 8) as usize..).unwrap_or_default();
                self.value(m.ty, at, None, m.name, depth + 1)?;
            } else {
                // Not byte-aligned without a bitfield size: an old-style bitfield, whose width
                // is its INT's.
                let b = Bits { bit_off: m.bit_offset, bits: 8 * self.btf.size_of(m.ty)?.min(16) as u32 };
                self.value(m.ty, data, Some(b), m.name, depth + 1)?;
            }
        }
        self.out.push_str(" }");
        Ok(())
    }

    fn array(&mut self, t: &Type<'_>, elem: TypeId, len: u32, data: &[u8], depth: usize) -> Result<(), BtfError> {
        let size = self.btf.size_of(elem)?;
        let total = size.checked_mul(len as u64).filter(|&n| n <= data.len() as u64);
        let bytes = total
            .map(|n| &data[..n as usize])
            .ok_or_else(|| unexpected(t, "array runs past the end of the bytes".into()))?;
        if self.is_char(elem)? {
            if let Some(s) = printable(bytes) {
                self.out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        self.out.push('\\');
                    }
                    self.out.push(c);
                }
                self.out.push('"');
                return Ok(());
            }
        }
        self.out.push('[');
        let shown = if size == 0 { (len as u64).min(MAX_EMPTY_ELEMS) } else { len as u64 };
        for i in 0..shown {
            if i > 0 {
                self.out.push_str(", ");
            }
            let at = bytes.get((i * size) as usize..).unwrap_or_default();
            self.value(elem, at, None, "", depth + 1)?;
        }
        if shown < len as u64 {
            self.out.push_str(", …");
        }
        self.out.push(']');
        Ok(())
    }

    /// A one-byte INT named `char` or encoded CHAR, modifiers skipped but not typedefs
    /// (bpftool's test for a string array).
    fn is_char(&self, mut id: TypeId) -> Result<bool, BtfError> {
        for _ in 0..=MAX_DEPTH {
            let t = self.btf.type_by_id(id)?;
            match t.detail {
                TypeDetail::Const { target } | TypeDetail::Volatile { target } | TypeDetail::Restrict { target } => {
                    id = target
                }
                TypeDetail::TypeTag { target, .. } => id = target,
                TypeDetail::Int { size: 1, encoding, .. } => {
                    return Ok(encoding == IntEncoding::Char || t.name == "char")
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }
}

/// The text before the first NUL when everything before it is printable ASCII.
fn printable(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0)?;
    let text = &bytes[..end];
    text.iter().all(|b| (0x20..0x7f).contains(b)).then(|| std::str::from_utf8(text).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_read_little_endian_across_bytes() {
        let data = [0b1010_0000, 0b0000_0111, 0xff];
        assert_eq!(read_bits(&data, Bits { bit_off: 5, bits: 6 }), Some(0b111101));
        assert_eq!(read_bits(&data, Bits { bit_off: 0, bits: 24 }), Some(0xff07a0));
        assert_eq!(read_bits(&data, Bits { bit_off: 20, bits: 8 }), None);
        assert_eq!(read_bits(&[0xff; 17], Bits { bit_off: 7, bits: 128 }), Some(u128::MAX));
        assert_eq!(sign_extend(0b111101, 6), -3);
        assert_eq!(sign_extend(5, 64), 5);
    }

    #[test]
    fn strings_need_a_nul_and_printable_text() {
        assert_eq!(printable(b"bash\0\0\0"), Some("bash"));
        assert_eq!(printable(b"\0junk\x01"), Some(""));
        assert_eq!(printable(b"bash"), None);
        assert_eq!(printable(b"ba\x01sh\0"), None);
    }
}
