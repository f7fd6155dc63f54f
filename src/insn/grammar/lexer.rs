//! The token layer shared by both dialects: a cursor over one statement whose
//! token recognisers are nom parsers, and the operand forms the dialects share
//! (registers, numbers, offsets, jump targets, `ld_imm64` pseudo values, holes).

use nom::error::{Error, ErrorKind};
use nom::IResult;

use super::{HoleKind, HoleValue, Holes};
use crate::insn::model::*;

/// A parse failure inside one statement: byte position and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StmtError {
    pub pos: usize,
    pub message: String,
}

pub(crate) type PResult<T> = Result<T, StmtError>;

// Tokens are ASCII, so the recognisers run over bytes (no UTF-8 decoding); a byte
// offset where an ASCII token ends is always a char boundary of the `&str`.

/// `s` with its first `n` bytes (an ASCII token) split off: `(rest, token)`.
#[inline]
fn split_ascii(s: &str, n: usize) -> (&str, &str) {
    (&s[n..], &s[..n])
}

/// Byte classes of identifiers: bit 0 may start one (`[A-Za-z_.]`), bit 1 may continue one (`[A-Za-z0-9_.]`).
static IDENT_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphabetic() || b == b'_' || b == b'.' {
            t[c] = 3;
        } else if b.is_ascii_digit() {
            t[c] = 2;
        }
        c += 1;
    }
    t
};

/// An identifier, `[A-Za-z_.][A-Za-z0-9_.]*` (the hottest token: every mnemonic and register;
/// a byte loop over a class table, with nom's signature).
#[inline]
fn ident_token(s: &str) -> IResult<&str, &str> {
    let b = s.as_bytes();
    if b.first().is_none_or(|&c| IDENT_CLASS[c as usize] & 1 == 0) {
        return Err(nom::Err::Error(Error::new(s, ErrorKind::TakeWhile1)));
    }
    let mut n = 1;
    while n < b.len() && IDENT_CLASS[b[n] as usize] & 2 != 0 {
        n += 1;
    }
    Ok(split_ascii(s, n))
}

fn number_token(s: &str) -> IResult<&str, (u64, bool)> {
    // Returns (magnitude, was_hex); a magnitude beyond u64 saturates to u64::MAX, and
    // the caller reports it as out of range. One pass: recognise and accumulate together.
    let b = s.as_bytes();
    let (radix, start) = if b.len() > 1 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') { (16, 2) } else { (10, 0) };
    let mut v: u64 = 0;
    let mut overflow = false;
    let mut n = start;
    while let Some(&c) = b.get(n) {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' if radix == 16 => c - b'a' + 10,
            b'A'..=b'F' if radix == 16 => c - b'A' + 10,
            _ => break,
        };
        let (m, o1) = v.overflowing_mul(radix);
        let (a, o2) = m.overflowing_add(d as u64);
        overflow |= o1 | o2;
        v = a;
        n += 1;
    }
    if n == start {
        let kind = if radix == 16 { ErrorKind::HexDigit } else { ErrorKind::Digit };
        return Err(nom::Err::Error(Error::new(&s[start..], kind)));
    }
    let (rest, _) = split_ascii(s, n);
    Ok((rest, (if overflow { u64::MAX } else { v }, radix == 16)))
}

/// A cursor over one statement (no comments, no newlines).
pub(crate) struct Cursor<'a, 'h> {
    pub src: &'a str,
    pub pos: usize,
    pub holes: &'h Holes<'h>,
}

/// A number as written: sign and magnitude (so range checks can be exact).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Num {
    pub neg: bool,
    pub mag: u64,
    pub hex: bool,
}

impl Num {
    fn signed(self) -> Option<i128> {
        let m = self.mag as i128;
        Some(if self.neg { -m } else { m })
    }
}

impl<'a, 'h> Cursor<'a, 'h> {
    pub fn new(src: &'a str, holes: &'h Holes<'h>) -> Self {
        Cursor { src, pos: 0, holes }
    }

    pub fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    pub fn err<T>(&self, message: impl Into<String>) -> PResult<T> {
        Err(StmtError { pos: self.pos, message: message.into() })
    }

    pub fn err_at<T>(&self, pos: usize, message: impl Into<String>) -> PResult<T> {
        Err(StmtError { pos, message: message.into() })
    }

    /// "expected X, found `Y`" at the cursor.
    pub fn expected<T>(&mut self, what: &str) -> PResult<T> {
        self.ws();
        let found = self.found();
        self.err(format!("expected {what}, found {found}"))
    }

    fn found(&self) -> String {
        let rest = self.rest();
        if rest.is_empty() {
            return "end of line".into();
        }
        let tok: String = match ident_token(rest) {
            Ok((r, _)) => rest[..rest.len() - r.len()].into(),
            Err(_) => rest.chars().take_while(|c| !c.is_whitespace()).take(12).collect(),
        };
        format!("`{tok}`")
    }

    #[inline]
    pub fn ws(&mut self) {
        let b = self.src.as_bytes();
        while let Some(b' ' | b'\t' | b'\r') = b.get(self.pos) {
            self.pos += 1;
        }
    }

    #[inline]
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.pos >= self.src.len()
    }

    pub fn end(&mut self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            let found = self.found();
            self.err(format!("expected end of instruction, found {found}"))
        }
    }

    #[inline]
    pub fn peek_char(&mut self) -> Option<char> {
        self.ws();
        self.rest().chars().next()
    }

    /// Consume `s` (after whitespace) if it is next.
    #[inline]
    pub fn eat(&mut self, s: &str) -> bool {
        self.ws();
        if self.src.as_bytes()[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    #[inline]
    pub fn expect(&mut self, s: &str) -> PResult<()> {
        if self.eat(s) {
            Ok(())
        } else {
            self.expected(&format!("`{s}`"))
        }
    }

    /// A double-quoted string (`\"` and `\\` escapes), as CO-RE type names and paths are written.
    pub fn string(&mut self) -> PResult<String> {
        self.ws();
        let start = self.pos;
        if !self.eat("\"") {
            return self.expected("a \"quoted\" name");
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    _ => return self.err_at(self.pos + i, "only \\\" and \\\\ escapes are allowed in names"),
                },
                c => out.push(c),
            }
        }
        self.err_at(start, "unterminated string")
    }

    /// Consume a keyword: `s` followed by a non-identifier character.
    pub fn eat_word(&mut self, s: &str) -> bool {
        self.ws();
        let rest = self.rest();
        if rest.starts_with(s) && !rest[s.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    #[inline]
    pub fn ident(&mut self) -> Option<&'a str> {
        self.ws();
        let rest = self.rest();
        match ident_token(rest) {
            Ok((r, id)) => {
                self.pos += rest.len() - r.len();
                Some(id)
            }
            Err(_) => None,
        }
    }

    /// `{N}`: a Rust value spliced in by `bpf_asm!`.
    fn hole(&mut self, kind: HoleKind) -> PResult<Option<HoleValue>> {
        self.ws();
        let start = self.pos;
        if !self.rest().starts_with('{') {
            return Ok(None);
        }
        let body = &self.rest()[1..];
        let Some(close) = body.find('}') else {
            return self.err("unclosed `{`");
        };
        let Ok(index) = body[..close].trim().parse::<usize>() else {
            return self.err("`{…}` holds a Rust expression only inside `bpf_asm!`");
        };
        self.pos += close + 2;
        match self.holes {
            Holes::None => self.err_at(start, "`{…}` holds a Rust expression only inside `bpf_asm!`"),
            Holes::Probe(kinds) => {
                kinds.borrow_mut().push((index, kind));
                Ok(Some(match kind {
                    HoleKind::Map => HoleValue::Map(MapRef::Fd(0)),
                    _ => HoleValue::Int(0),
                }))
            }
            Holes::Values(values) => match values.get(index) {
                Some(v) => Ok(Some(v.clone())),
                None => self.err_at(start, format!("no value for `{{{index}}}`")),
            },
        }
    }

    #[inline]
    fn hole_int(&mut self, kind: HoleKind) -> PResult<Option<i128>> {
        self.ws();
        if self.src.as_bytes().get(self.pos) != Some(&b'{') {
            return Ok(None);
        }
        let start = self.pos;
        match self.hole(kind)? {
            None => Ok(None),
            Some(HoleValue::Int(v)) => Ok(Some(v)),
            Some(HoleValue::Map(_)) => self.err_at(start, "a map handle cannot be used as a number"),
        }
    }

    /// An optionally signed number (`-1`, `+2`, `0x10`) or a hole.
    pub fn number(&mut self, kind: HoleKind) -> PResult<Option<(i128, Num)>> {
        self.ws();
        let start = self.pos;
        let mut neg = false;
        // An unsigned literal (the common case) has no sign and is no hole.
        if !matches!(self.src.as_bytes().get(start), Some(b'0'..=b'9')) {
            if self.eat("-") {
                neg = true;
            } else {
                self.eat("+");
            }
            self.ws();
            if let Some(v) = self.hole_int(kind)? {
                let v = if neg { -v } else { v };
                return Ok(Some((v, Num { neg: v < 0, mag: v.unsigned_abs() as u64, hex: false })));
            }
        }
        match number_token(self.rest()) {
            Ok((r, (mag, hex))) => {
                self.pos = self.src.len() - r.len();
                if r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                    return self.err_at(start, format!("invalid number `{}`", &self.src[start..self.pos + 1]));
                }
                let n = Num { neg, mag, hex };
                Ok(Some((n.signed().unwrap_or_default(), n)))
            }
            Err(_) => {
                self.pos = start;
                Ok(None)
            }
        }
    }

    /// A 32-bit immediate. Decimal must fit i32 (or u32 when written in hex, as a bit pattern).
    pub fn imm32(&mut self) -> PResult<i32> {
        self.ws();
        let start = self.pos;
        match self.number(HoleKind::Imm32)? {
            Some((v, n)) => {
                if let Ok(x) = i32::try_from(v) {
                    Ok(x)
                } else if n.hex && !n.neg && v <= u32::MAX as i128 {
                    Ok(v as u32 as i32)
                } else {
                    self.err_at(start, format!("immediate {} does not fit in 32 bits", &self.src[start..self.pos]))
                }
            }
            None => self.expected("an immediate"),
        }
    }

    /// A 64-bit immediate (signed or unsigned).
    pub fn imm64(&mut self) -> PResult<u64> {
        self.ws();
        let start = self.pos;
        match self.number(HoleKind::Imm64)? {
            Some((v, _)) if v >= i64::MIN as i128 && v <= u64::MAX as i128 => Ok(v as u64),
            Some(_) => self.err_at(start, format!("immediate {} does not fit in 64 bits", &self.src[start..self.pos])),
            None => self.expected("a 64-bit immediate"),
        }
    }

    /// A signed 16-bit offset with explicit sign (`+4`, `-8`) as in `[r1+4]` or `(r1 + 4)`.
    pub fn mem_offset(&mut self) -> PResult<i16> {
        self.ws();
        let start = self.pos;
        let neg = if self.eat("+") {
            false
        } else if self.eat("-") {
            true
        } else {
            return Ok(0);
        };
        self.ws();
        let v = if let Some(v) = self.hole_int(HoleKind::Off16)? {
            v
        } else {
            match number_token(self.rest()) {
                Ok((r, (mag, _))) => {
                    self.pos = self.src.len() - r.len();
                    mag as i128
                }
                Err(_) => return self.expected("an offset"),
            }
        };
        let v = if neg { -v } else { v };
        i16::try_from(v).or_else(|_| self.err_at(start, format!("offset {v} does not fit in 16 bits (-32768..=32767)")))
    }

    /// A register name: `r0`…`r10`, `%r0`, `fp`; with `allow_w`, also `w0`…`w10`.
    /// Returns the register and whether it was written as `wN`.
    #[inline]
    pub fn try_reg(&mut self) -> PResult<Option<(Reg, bool)>> {
        self.ws();
        let start = self.pos;
        // Fast path: `rN`/`wN` (N ≤ 9) or `r10`/`w10` not followed by an identifier character.
        let b = &self.src.as_bytes()[start..];
        let ident_cont = |c: Option<&u8>| matches!(c, Some(c) if c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.');
        if let [p @ (b'r' | b'w'), d @ b'0'..=b'9', ..] = b {
            if !ident_cont(b.get(2)) {
                self.pos = start + 2;
                return Ok(Some((Reg::ALL[(d - b'0') as usize], *p == b'w')));
            }
            if *d == b'1' && b.get(2) == Some(&b'0') && !ident_cont(b.get(3)) {
                self.pos = start + 3;
                return Ok(Some((Reg::R10, *p == b'w')));
            }
        }
        let pct = self.eat("%");
        let Some(id) = self.ident() else {
            self.pos = start;
            return Ok(None);
        };
        if id == "fp" {
            return Ok(Some((Reg::R10, false)));
        }
        let (w, digits) = match id.as_bytes()[0] {
            b'r' => (false, &id[1..]),
            b'w' => (true, &id[1..]),
            _ => {
                self.pos = start;
                return Ok(None);
            }
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            self.pos = start;
            return Ok(None);
        }
        match digits.parse::<u8>().ok().and_then(Reg::from_num) {
            Some(r) if !(digits.len() > 1 && digits.starts_with('0')) => Ok(Some((r, w))),
            _ => self.err_at(start, format!("invalid register `{}{id}`: registers are r0…r10", if pct { "%" } else { "" })),
        }
    }

    /// A 64-bit register (`rN`); `wN` is an error here.
    pub fn reg(&mut self) -> PResult<Reg> {
        let start = self.pos;
        match self.try_reg()? {
            Some((r, false)) => Ok(r),
            Some((_, true)) => self.err_at(start, "expected a 64-bit register `rN` here, found a `wN` register"),
            None => self.expected("a register"),
        }
    }

    /// A register of the given width (`rN` for 64, `wN` for 32).
    pub fn reg_w(&mut self, width: Width) -> PResult<Reg> {
        self.ws();
        let start = self.pos;
        match self.try_reg()? {
            Some((r, w)) if w == (width == Width::W32) => Ok(r),
            Some(_) => self.err_at(
                start,
                if width == Width::W32 {
                    "expected a 32-bit register `wN` here (the instruction is 32-bit)"
                } else {
                    "expected a 64-bit register `rN` here (the instruction is 64-bit)"
                },
            ),
            None => self.expected(if width == Width::W32 { "a register `wN`" } else { "a register `rN`" }),
        }
    }

    /// A register or an immediate.
    pub fn operand(&mut self) -> PResult<Operand> {
        if let Some((r, _)) = self.try_reg()? {
            return Ok(Operand::Reg(r));
        }
        if self.peek_is_number() {
            return Ok(Operand::Imm(self.imm32()?));
        }
        self.expected("a register or an immediate")
    }

    pub fn peek_is_number(&mut self) -> bool {
        self.ws();
        let b = self.rest().as_bytes();
        match b.first() {
            Some(b'0'..=b'9') | Some(b'{') => true,
            Some(b'-') | Some(b'+') => {
                let t = self.rest()[1..].trim_start();
                t.starts_with(|c: char| c.is_ascii_digit() || c == '{')
            }
            _ => false,
        }
    }

    /// A jump target: `+N`, `-N`, `N` or a label.
    pub fn target(&mut self) -> PResult<Target> {
        self.ws();
        let start = self.pos;
        if self.peek_is_number() {
            let (v, _) = self.number(HoleKind::Off16)?.unwrap_or_default();
            return i32::try_from(v)
                .map(Target::Rel)
                .or_else(|_| self.err_at(start, "jump offset does not fit in 32 bits"));
        }
        match self.ident() {
            Some(l) => Ok(Target::Label(l.to_owned())),
            None => self.expected("a jump target (`+N`, `-N` or a label)"),
        }
    }

    /// `[NAME]` or `[{hole}]` after `map`/`map_value`: a map reference.
    pub fn map_ref(&mut self) -> PResult<MapRef> {
        self.expect("[")?;
        self.ws();
        let start = self.pos;
        let r = if let Some(h) = self.hole(HoleKind::Map)? {
            match h {
                HoleValue::Map(m) => m,
                HoleValue::Int(_) => return self.err_at(start, "expected a map handle"),
            }
        } else if self.eat_word("fd") {
            self.expect(":")?;
            MapRef::Fd(self.imm32()?)
        } else if let Some(name) = self.ident() {
            MapRef::Name(name.to_owned())
        } else {
            return self.expected("a map name, `fd:N` or `{map}`");
        };
        self.expect("]")?;
        Ok(r)
    }

    /// An unsigned 32-bit value (`map_idx` index, map value offset): 0…4294967295, decimal or hex.
    fn imm_u32(&mut self, what: &str) -> PResult<u32> {
        self.ws();
        let start = self.pos;
        match self.number(HoleKind::Imm32)? {
            Some((v, _)) if v < 0 => self.err_at(start, format!("expected a non-negative {what}")),
            Some((v, _)) => u32::try_from(v)
                .or_else(|_| self.err_at(start, format!("{what} {} does not fit in 32 bits", &self.src[start..self.pos]))),
            None => self.expected("an immediate"),
        }
    }

    fn bracket_u32(&mut self) -> PResult<u32> {
        self.expect("[")?;
        let v = self.imm_u32("index")?;
        self.expect("]")?;
        Ok(v)
    }

    fn plus_offset(&mut self) -> PResult<u32> {
        if self.eat("+") {
            self.imm_u32("offset")
        } else {
            Ok(0)
        }
    }

    /// The value of `ld_imm64`: a number, or a pseudo form
    /// `map[NAME]`, `map_value[NAME]+OFF`, `map_idx[N]`, `map_idx_value[N]+OFF`,
    /// `btf_id[ID]` / `btf_id[ID, FD]`, `func[LABEL]`.
    pub fn imm64_value(&mut self) -> PResult<Imm64> {
        self.ws();
        if self.peek_is_number() {
            return Ok(Imm64::Const(self.imm64()?));
        }
        let start = self.pos;
        match self.ident() {
            Some("map") => Ok(Imm64::Map(self.map_ref()?)),
            Some("map_value") => {
                let map = self.map_ref()?;
                Ok(Imm64::MapValue { map, offset: self.plus_offset()? })
            }
            Some("map_idx") => Ok(Imm64::MapIdx(self.bracket_u32()?)),
            Some("map_idx_value") => {
                let index = self.bracket_u32()?;
                Ok(Imm64::MapIdxValue { index, offset: self.plus_offset()? })
            }
            Some("btf_id") => {
                self.expect("[")?;
                let id = self.imm32()?;
                let btf_fd = if self.eat(",") { self.imm32()? } else { 0 };
                self.expect("]")?;
                Ok(Imm64::BtfId { id, btf_fd })
            }
            Some("func") => {
                self.expect("[")?;
                let t = self.target()?;
                self.expect("]")?;
                Ok(Imm64::Func(t))
            }
            _ => {
                self.pos = start;
                self.expected("a 64-bit immediate or `map[NAME]`, `map_value[NAME]+OFF`, `map_idx[N]`, `btf_id[N]`, `func[LABEL]`")
            }
        }
    }

    /// The operand of `call`: a helper by number or name, `local LABEL`, `kfunc[...]`, or a register (callx).
    pub fn call_target(&mut self) -> PResult<Call> {
        self.ws();
        let start = self.pos;
        if self.peek_is_number() {
            return Ok(Call::Helper(self.imm32()?));
        }
        if let Some((r, _)) = self.try_reg()? {
            return Ok(Call::Reg(r));
        }
        match self.ident() {
            Some("local") => Ok(Call::Local(self.target()?)),
            Some("kfunc") => {
                self.expect("[")?;
                let func = if self.peek_is_number() {
                    KfuncRef::Id(self.imm32()?)
                } else if let Some(n) = self.ident() {
                    KfuncRef::Name(n.to_owned())
                } else {
                    return self.expected("a kfunc BTF id or name");
                };
                let btf_index = if self.eat(",") { self.mem_offset_plain()? } else { 0 };
                self.expect("]")?;
                Ok(Call::Kfunc { func, btf_index })
            }
            Some(name) => match helper_id(name) {
                Some(id) => Ok(Call::Helper(id as i32)),
                None => self.err_at(start, format!("unknown helper `{name}` (use `call local {name}` for a subprogram)")),
            },
            None => self.expected("a helper number or name, `local LABEL`, `kfunc[ID]` or a register"),
        }
    }

    fn mem_offset_plain(&mut self) -> PResult<i16> {
        let start = self.pos;
        let v = self.imm32()?;
        i16::try_from(v).or_else(|_| self.err_at(start, "expected a 16-bit value"))
    }

    /// `[rN+off]` (mnemonic memory operand).
    pub fn mem_bracket(&mut self) -> PResult<(Reg, i16)> {
        if !self.eat("[") {
            return self.expected("a memory operand `[rN+offset]`");
        }
        let r = self.reg()?;
        let off = self.mem_offset()?;
        self.expect("]")?;
        Ok((r, off))
    }

    /// `(rN + off)` (LLVM memory operand, after the type cast).
    pub fn mem_paren(&mut self) -> PResult<(Reg, i16)> {
        self.expect("(")?;
        let r = self.reg()?;
        let off = self.mem_offset()?;
        self.expect(")")?;
        Ok((r, off))
    }

    pub fn comma(&mut self) -> PResult<()> {
        self.expect(",")
    }
}

/// A helper's id by name (`bpf_map_lookup_elem`, or without the `bpf_` prefix).
pub fn helper_id(name: &str) -> Option<u32> {
    let ids = crate::helpers::ids::HELPER_IDS;
    ids.iter()
        .find(|(_, n)| *n == name || n.strip_prefix("bpf_") == Some(name))
        .map(|(id, _)| *id)
}

/// A helper's name by id.
pub fn helper_name(id: i32) -> Option<&'static str> {
    let ids = crate::helpers::ids::HELPER_IDS;
    u32::try_from(id).ok().and_then(|id| ids.binary_search_by_key(&id, |(i, _)| *i).ok().map(|k| ids[k].1))
}
