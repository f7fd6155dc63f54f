//! The LLVM / verifier-log dialect: `r0 = 0`, `w1 += w2`, `r1 = *(u32 *)(r2 + 4)`,
//! `if w1 s> -3 goto +2`, `r1 = 0x1122334455667788 ll`, `lock *(u64 *)(r1 + 0) += r2`,
//! `r0 = atomic_fetch_add((u64 *)(r1 + 0), r0)`, … — what llvm-objdump and the verifier print,
//! so their output can be pasted back in.

use super::lexer::{Cursor, PResult};
use crate::insn::model::*;

/// `s>=` etc. Longest operators first so `<=` is not read as `<`.
const JMP_OPS: [(&str, JmpCond); 11] = [
    ("s>=", JmpCond::SGe),
    ("s<=", JmpCond::SLe),
    ("s>", JmpCond::SGt),
    ("s<", JmpCond::SLt),
    ("==", JmpCond::Eq),
    ("!=", JmpCond::Ne),
    (">=", JmpCond::Ge),
    ("<=", JmpCond::Le),
    (">", JmpCond::Gt),
    ("<", JmpCond::Lt),
    ("&", JmpCond::Set),
];

/// Compound assignment operators of ALU instructions, longest first.
const ALU_OPS: [(&str, AluOp); 13] = [
    ("s>>=", AluOp::Arsh),
    ("s/=", AluOp::SDiv),
    ("s%=", AluOp::SMod),
    ("<<=", AluOp::Lsh),
    (">>=", AluOp::Rsh),
    ("+=", AluOp::Add),
    ("-=", AluOp::Sub),
    ("*=", AluOp::Mul),
    ("/=", AluOp::Div),
    ("%=", AluOp::Mod),
    ("|=", AluOp::Or),
    ("&=", AluOp::And),
    ("^=", AluOp::Xor),
];

/// The LLVM operator of a jump condition.
pub fn jmp_op(c: JmpCond) -> &'static str {
    JMP_OPS.iter().find(|(_, k)| *k == c).map(|(s, _)| *s).unwrap_or("?")
}

/// The LLVM compound operator of an ALU operation (`Mov` is `=`).
pub fn alu_op(op: AluOp) -> &'static str {
    ALU_OPS.iter().find(|(_, k)| *k == op).map(|(s, _)| *s).unwrap_or("=")
}

/// Whether a statement starting at the cursor is in this dialect (cheap look-ahead).
pub(crate) fn starts_llvm(c: &mut Cursor) -> bool {
    let save = c.pos;
    let yes = match c.peek_char() {
        Some('*') => true,
        Some('%') => false,
        _ => match c.ident() {
            Some(id) => ident_starts_llvm(c, id),
            None => false,
        },
    };
    c.pos = save;
    yes
}

/// [`starts_llvm`] for a statement whose first token is the identifier `id`, with the
/// cursor just after it (the caller restores the cursor).
pub(crate) fn ident_starts_llvm(c: &mut Cursor, id: &str) -> bool {
    match id {
        "if" | "goto" | "store_release" | "ld_pseudo" => true,
        "lock" => c.peek_char() == Some('*'),
        _ => {
            let is_reg = (id.starts_with('r') || id.starts_with('w'))
                && id.len() > 1
                && id[1..].bytes().all(|b| b.is_ascii_digit());
            is_reg && matches!(c.peek_char(), Some('=' | '+' | '-' | '*' | '/' | '%' | '|' | '&' | '^' | '<' | '>' | 's'))
        }
    }
}

fn type_size(c: &mut Cursor) -> PResult<(Size, bool)> {
    let start = c.pos;
    let Some(t) = c.ident() else { return c.expected("a type such as `u32`") };
    Ok(match t {
        "u8" => (Size::B, false),
        "u16" => (Size::H, false),
        "u32" => (Size::W, false),
        "u64" => (Size::DW, false),
        "s8" => (Size::B, true),
        "s16" => (Size::H, true),
        "s32" => (Size::W, true),
        _ => return c.err_at(start, format!("expected u8, u16, u32, u64, s8, s16 or s32, found `{t}`")),
    })
}

/// `(uN *)` — the cast inside a memory operand.
fn cast(c: &mut Cursor) -> PResult<(Size, bool)> {
    c.expect("(")?;
    let t = type_size(c)?;
    c.expect("*")?;
    c.expect(")")?;
    Ok(t)
}

/// `*(uN *)(rX + off)`, the leading `*` already consumed.
fn deref(c: &mut Cursor) -> PResult<(Size, bool, Reg, i16)> {
    let (size, signed) = cast(c)?;
    let (reg, off) = c.mem_paren()?;
    Ok((size, signed, reg, off))
}

fn unsigned_size(c: &mut Cursor, at: usize, size: Size, signed: bool) -> PResult<Size> {
    if signed {
        c.err_at(at, "a signed type is only valid in a load")
    } else {
        Ok(size)
    }
}

fn width_of(is_w: bool) -> Width {
    if is_w {
        Width::W32
    } else {
        Width::W64
    }
}

/// Parse one LLVM-dialect statement.
pub(crate) fn parse(c: &mut Cursor) -> PResult<Insn> {
    let insn = parse_inner(c)?;
    // llvm-objdump annotates jump targets with `<section+offset>`: accept and ignore it.
    if c.eat("<") {
        while !c.at_end() && !c.eat(">") {
            c.pos += c.rest().chars().next().map(char::len_utf8).unwrap_or(1);
        }
    }
    c.end()?;
    Ok(insn)
}

fn parse_inner(c: &mut Cursor) -> PResult<Insn> {
    c.ws();
    let start = c.pos;
    if c.eat("*") {
        // Store: *(uN *)(rD + off) = rS | imm
        let at = c.pos;
        let (size, signed, dst, off) = deref(c)?;
        let size = unsigned_size(c, at, size, signed)?;
        c.expect("=")?;
        if let Some((src, _)) = c.try_reg()? {
            return Ok(Insn::Store { size, dst, off, src });
        }
        return Ok(Insn::StoreImm { size, dst, off, imm: c.imm32()? });
    }
    match c.ident() {
        Some("if") => return parse_if(c),
        Some("goto") => return Ok(Insn::Ja { target: c.target()? }),
        Some("lock") => {
            c.expect("*")?;
            let at = c.pos;
            let (size, signed, dst, off) = deref(c)?;
            let size = unsigned_size(c, at, size, signed)?;
            let op = if c.eat("+=") {
                AtomicOp::Add
            } else if c.eat("|=") {
                AtomicOp::Or
            } else if c.eat("&=") {
                AtomicOp::And
            } else if c.eat("^=") {
                AtomicOp::Xor
            } else {
                return c.expected("`+=`, `|=`, `&=` or `^=`");
            };
            // LLVM accepts `rN` or `wN` here whatever the size.
            let Some((src, _)) = c.try_reg()? else { return c.expected("a register") };
            return Ok(Insn::Atomic { op, size, dst, off, src });
        }
        Some("store_release") => {
            c.expect("(")?;
            let at = c.pos;
            let (size, signed) = cast(c)?;
            let size = unsigned_size(c, at, size, signed)?;
            let (dst, off) = c.mem_paren()?;
            c.comma()?;
            let src = c.reg_w(if size == Size::DW { Width::W64 } else { Width::W32 })?;
            c.expect(")")?;
            return Ok(Insn::StoreRelease { size, dst, off, src });
        }
        Some("ld_pseudo") => {
            let dst = c.reg()?;
            c.comma()?;
            let kind_at = c.pos;
            let kind = c.imm32()?;
            c.comma()?;
            let imm = c.imm32()?;
            let value = match kind {
                1 => Imm64::Map(MapRef::Fd(imm)),
                2 => Imm64::MapValue { map: MapRef::Fd(imm), offset: 0 },
                3 => Imm64::BtfId { id: imm, btf_fd: 0 },
                4 => Imm64::Func(Target::Rel(imm)),
                5 => Imm64::MapIdx(imm as u32),
                6 => Imm64::MapIdxValue { index: imm as u32, offset: 0 },
                _ => return c.err_at(kind_at, format!("ld_imm64 pseudo form {kind} is not defined (1…6)")),
            };
            return Ok(Insn::LdImm64 { dst, value });
        }
        _ => {}
    }
    c.pos = start;
    let Some((dst, is_w)) = c.try_reg()? else {
        return c.expected("an instruction");
    };
    let width = width_of(is_w);
    for (text, op) in ALU_OPS {
        if c.eat(text) {
            let src = if let Some((r, w)) = c.try_reg()? {
                if w != is_w {
                    return c.err("both registers of an ALU instruction must be `rN` or both `wN`");
                }
                Operand::Reg(r)
            } else {
                Operand::Imm(c.imm32()?)
            };
            return Ok(Insn::Alu { op, width, dst, src });
        }
    }
    c.expect("=")?;
    parse_assign(c, dst, is_w)
}

/// Everything of the form `rD = …` / `wD = …`.
fn parse_assign(c: &mut Cursor, dst: Reg, is_w: bool) -> PResult<Insn> {
    let width = width_of(is_w);
    c.ws();
    let at = c.pos;
    // rD = -rD
    if c.eat("-") {
        if let Some((r, w)) = c.try_reg()? {
            if r != dst || w != is_w {
                return c.err_at(at, "negation is in place: write `rN = -rN`");
            }
            return Ok(Insn::Neg { width, dst });
        }
        c.pos = at;
    }
    // rD = &(void __percpu *)(rS): the kernel's per-CPU address move, as xlated programs print it
    if c.eat("&") {
        c.expect("(")?;
        if !(c.eat_word("void") && c.eat_word("__percpu")) {
            return c.err_at(at, "expected `&(void __percpu *)(rS)`, the per-CPU address move");
        }
        c.expect("*")?;
        c.expect(")")?;
        c.expect("(")?;
        let src = c.reg()?;
        c.expect(")")?;
        if is_w {
            return c.err_at(at, "a per-CPU address is 64 bits: write `rN = &(void __percpu *)(rM)`");
        }
        return Ok(Insn::MovPercpu { dst, src });
    }
    // rD = (s8)rS
    if c.eat("(") {
        let (size, signed) = type_size(c)?;
        if !signed {
            return c.err_at(at, "a sign-extending move casts to s8, s16 or s32");
        }
        c.expect(")")?;
        let src = c.reg_w(width)?;
        if size == Size::W && width == Width::W32 {
            return c.err_at(at, "a 32-bit move sign-extends from s8 or s16 only");
        }
        return Ok(Insn::MovSx { width, dst, src, from: size });
    }
    // rD = *(uN *)(rS + off) | *(uN *)skb[...]
    if c.eat("*") {
        let (size, signed) = cast(c)?;
        if c.eat_word("skb") {
            if signed {
                return c.err_at(at, "legacy packet loads are unsigned");
            }
            if dst != Reg::R0 {
                return c.err_at(at, "legacy packet loads always load into r0");
            }
            c.expect("[")?;
            let insn = if let Some((src, _)) = c.try_reg()? {
                let imm = if c.peek_is_number() { c.imm32()? } else { 0 };
                Insn::LoadInd { size, src, imm }
            } else {
                Insn::LoadAbs { size, imm: c.imm32()? }
            };
            c.expect("]")?;
            return Ok(insn);
        }
        let (src, off) = c.mem_paren()?;
        return Ok(if signed { Insn::LoadSx { size, dst, src, off } } else { Insn::Load { size, dst, src, off } });
    }
    if c.peek_is_number() {
        let save = c.pos;
        let v = c.imm64()?;
        if c.eat_word("ll") {
            return Ok(Insn::LdImm64 { dst, value: Imm64::Const(v) });
        }
        c.pos = save;
        return Ok(Insn::Alu { op: AluOp::Mov, width, dst, src: Operand::Imm(c.imm32()?) });
    }
    if let Some((src, w)) = c.try_reg()? {
        if w != is_w {
            return c.err_at(at, "both registers of a move must be `rN` or both `wN`");
        }
        return Ok(Insn::Alu { op: AluOp::Mov, width, dst, src: Operand::Reg(src) });
    }
    let word_at = c.pos;
    let Some(word) = c.ident() else {
        return c.expected("a register, an immediate, a memory operand or an operation");
    };
    let same_reg = |c: &mut Cursor, what: &str| -> PResult<()> {
        let at = c.pos;
        match c.try_reg()? {
            Some((r, w)) if r == dst && w == is_w => Ok(()),
            _ => c.err_at(at, format!("{what} works in place: the operand must be the destination register")),
        }
    };
    if let Some((order, rest)) = word
        .strip_prefix("le")
        .map(|r| (ByteOrder::ToLe, r))
        .or_else(|| word.strip_prefix("be").map(|r| (ByteOrder::ToBe, r)))
        .or_else(|| word.strip_prefix("bswap").map(|r| (ByteOrder::Swap, r)))
    {
        if let Ok(bits @ (16 | 32 | 64)) = rest.parse::<u32>() {
            same_reg(c, "a byte swap")?;
            return Ok(Insn::Endian { order, bits, dst });
        }
    }
    let atomic_size = |c: &mut Cursor, suffix_w: bool| -> PResult<Size> {
        if suffix_w == is_w {
            Ok(if is_w { Size::W } else { Size::DW })
        } else {
            c.err_at(word_at, "use `wN` with the 32-bit form and `rN` with the 64-bit form")
        }
    };
    match word {
        "ll" => c.err_at(word_at, "`ll` follows the 64-bit value"),
        "map" | "map_value" | "map_idx" | "map_idx_value" | "btf_id" | "func" => {
            c.pos = word_at;
            let value = c.imm64_value()?;
            c.eat_word("ll");
            Ok(Insn::LdImm64 { dst, value })
        }
        "atomic_fetch_add" | "atomic_fetch_or" | "atomic_fetch_and" | "atomic_fetch_xor" => {
            let op = match word {
                "atomic_fetch_add" => AtomicOp::FetchAdd,
                "atomic_fetch_or" => AtomicOp::FetchOr,
                "atomic_fetch_and" => AtomicOp::FetchAnd,
                _ => AtomicOp::FetchXor,
            };
            c.expect("(")?;
            let cast_at = c.pos;
            let (size, signed) = cast(c)?;
            let size = unsigned_size(c, cast_at, size, signed)?;
            let (mem, off) = c.mem_paren()?;
            c.comma()?;
            same_reg(c, "an atomic fetch")?;
            c.expect(")")?;
            if (size == Size::DW) == is_w || !matches!(size, Size::W | Size::DW) {
                return c.err_at(cast_at, "atomic fetch is `(u64 *)` with `rN` or `(u32 *)` with `wN`");
            }
            Ok(Insn::Atomic { op, size, dst: mem, off, src: dst })
        }
        "xchg_64" | "xchg32_32" => {
            let size = atomic_size(c, word == "xchg32_32")?;
            c.expect("(")?;
            let (mem, off) = paren_less_mem(c)?;
            c.comma()?;
            same_reg(c, "xchg")?;
            c.expect(")")?;
            Ok(Insn::Atomic { op: AtomicOp::Xchg, size, dst: mem, off, src: dst })
        }
        "cmpxchg_64" | "cmpxchg32_32" => {
            let size = atomic_size(c, word == "cmpxchg32_32")?;
            if dst != Reg::R0 {
                return c.err_at(word_at, "cmpxchg compares with and returns in r0/w0");
            }
            c.expect("(")?;
            let (mem, off) = paren_less_mem(c)?;
            c.comma()?;
            same_reg(c, "cmpxchg")?;
            c.comma()?;
            let src = c.reg_w(width)?;
            c.expect(")")?;
            Ok(Insn::Atomic { op: AtomicOp::CmpXchg, size, dst: mem, off, src })
        }
        "load_acquire" => {
            c.expect("(")?;
            let cast_at = c.pos;
            let (size, signed) = cast(c)?;
            let size = unsigned_size(c, cast_at, size, signed)?;
            let (src, off) = c.mem_paren()?;
            c.expect(")")?;
            Ok(Insn::LoadAcquire { size, dst, src, off })
        }
        "addr_space_cast" => {
            c.expect("(")?;
            let src = c.reg()?;
            c.comma()?;
            let dst_as = as_u16(c)?;
            c.comma()?;
            let src_as = as_u16(c)?;
            c.expect(")")?;
            Ok(Insn::AddrSpaceCast { dst, src, dst_as, src_as })
        }
        _ => c.err_at(word_at, format!("unknown operation `{word}`")),
    }
}

fn as_u16(c: &mut Cursor) -> PResult<u16> {
    let at = c.pos;
    let v = c.imm32()?;
    u16::try_from(v).or_else(|_| c.err_at(at, "an address space is 0…65535"))
}

/// `rD + off` without parentheses, as in `xchg_64(r1 + 8, r2)`.
fn paren_less_mem(c: &mut Cursor) -> PResult<(Reg, i16)> {
    let r = c.reg()?;
    let off = c.mem_offset()?;
    Ok((r, off))
}

fn parse_if(c: &mut Cursor) -> PResult<Insn> {
    let Some((dst, is_w)) = c.try_reg()? else {
        return c.expected("a register");
    };
    c.ws();
    let Some((op_text, cond)) = JMP_OPS.iter().find(|(t, _)| c.rest().starts_with(t)) else {
        return c.expected("a comparison (==, !=, >, >=, <, <=, s>, s>=, s<, s<=, &)");
    };
    c.pos += op_text.len();
    let src = if let Some((r, w)) = c.try_reg()? {
        if w != is_w {
            return c.err("both registers of a comparison must be `rN` or both `wN`");
        }
        Operand::Reg(r)
    } else {
        Operand::Imm(c.imm32()?)
    };
    if !c.eat_word("goto") {
        return c.expected("`goto`");
    }
    Ok(Insn::JmpIf { cond: *cond, width: width_of(is_w), dst, src, target: c.target()? })
}
