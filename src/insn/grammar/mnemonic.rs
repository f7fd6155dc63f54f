//! The mnemonic dialect (uBPF / bpf_conformance style): `mov r0, 0`, `ldxw r1, [r2+4]`,
//! `jeq r1, 5, done`, `lock fetch add [r10-8], r1`, `lddw r1, map[counts]`.

use super::lexer::{Cursor, PResult};
use crate::insn::model::*;

fn alu_op(name: &str) -> Option<AluOp> {
    Some(match name {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "xor" => AluOp::Xor,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "arsh" => AluOp::Arsh,
        "mov" => AluOp::Mov,
        _ => return None,
    })
}

/// The mnemonic of an ALU operation (without the `32` suffix).
pub fn alu_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Mul => "mul",
        AluOp::Div => "div",
        AluOp::SDiv => "sdiv",
        AluOp::Mod => "mod",
        AluOp::SMod => "smod",
        AluOp::Or => "or",
        AluOp::And => "and",
        AluOp::Xor => "xor",
        AluOp::Lsh => "lsh",
        AluOp::Rsh => "rsh",
        AluOp::Arsh => "arsh",
        AluOp::Mov => "mov",
    }
}

fn jmp_cond(name: &str) -> Option<JmpCond> {
    Some(match name {
        "jeq" => JmpCond::Eq,
        "jne" => JmpCond::Ne,
        "jgt" => JmpCond::Gt,
        "jge" => JmpCond::Ge,
        "jlt" => JmpCond::Lt,
        "jle" => JmpCond::Le,
        "jset" => JmpCond::Set,
        "jsgt" => JmpCond::SGt,
        "jsge" => JmpCond::SGe,
        "jslt" => JmpCond::SLt,
        "jsle" => JmpCond::SLe,
        _ => return None,
    })
}

/// The mnemonic of a jump condition (without the `32` suffix).
pub fn jmp_name(c: JmpCond) -> &'static str {
    match c {
        JmpCond::Eq => "jeq",
        JmpCond::Ne => "jne",
        JmpCond::Gt => "jgt",
        JmpCond::Ge => "jge",
        JmpCond::Lt => "jlt",
        JmpCond::Le => "jle",
        JmpCond::Set => "jset",
        JmpCond::SGt => "jsgt",
        JmpCond::SGe => "jsge",
        JmpCond::SLt => "jslt",
        JmpCond::SLe => "jsle",
    }
}

fn size_suffix(s: &str) -> Option<Size> {
    Some(match s {
        "b" => Size::B,
        "h" => Size::H,
        "w" => Size::W,
        "dw" => Size::DW,
        _ => return None,
    })
}

/// The mnemonic size suffix.
pub fn size_name(s: Size) -> &'static str {
    match s {
        Size::B => "b",
        Size::H => "h",
        Size::W => "w",
        Size::DW => "dw",
    }
}

/// Split `add32` into (`add`, W32) and `add` into (`add`, W64).
fn split_width(m: &str) -> (&str, Width) {
    match m.strip_suffix("32") {
        Some(base) => (base, Width::W32),
        None => (m, Width::W64),
    }
}

fn atomic_op(name: &str, fetch: bool) -> Option<AtomicOp> {
    Some(match (name, fetch) {
        ("add", false) => AtomicOp::Add,
        ("or", false) => AtomicOp::Or,
        ("and", false) => AtomicOp::And,
        ("xor", false) => AtomicOp::Xor,
        ("add", true) => AtomicOp::FetchAdd,
        ("or", true) => AtomicOp::FetchOr,
        ("and", true) => AtomicOp::FetchAnd,
        ("xor", true) => AtomicOp::FetchXor,
        ("xchg", _) => AtomicOp::Xchg,
        ("cmpxchg", _) => AtomicOp::CmpXchg,
        _ => return None,
    })
}

/// Parse one mnemonic-dialect instruction whose mnemonic `m` (at byte `m_pos`) has been consumed.
pub(crate) fn parse(c: &mut Cursor, m: &str, m_pos: usize) -> PResult<Insn> {
    let insn = match m {
        "exit" => Insn::Exit,
        m if m.starts_with("core_") => {
            let Some(kind) = CoreKind::from_name(m) else {
                let names: Vec<&str> = CoreKind::ALL.iter().map(|k| k.name()).collect();
                return c.err_at(m_pos, format!("unknown CO-RE form `{m}` (known: {})", names.join(", ")));
            };
            c.expect("(")?;
            let dst = c.reg()?;
            c.comma()?;
            let type_name = c.string()?;
            let path = if kind.has_path() {
                c.comma()?;
                c.string()?
            } else {
                String::new()
            };
            c.expect(")")?;
            Insn::Core { dst, access: CoreAccess { kind, type_name, path } }
        }
        "lddw" => {
            let dst = c.reg()?;
            c.comma()?;
            Insn::LdImm64 { dst, value: c.imm64_value()? }
        }
        "ja" => Insn::Ja { target: c.target()? },
        "ja32" | "gotol" => Insn::Gotol { target: c.target()? },
        "may_goto" => Insn::MayGoto { target: c.target()? },
        "call" => Insn::Call(c.call_target()?),
        "callx" => Insn::Call(Call::Reg(c.reg()?)),
        "lock" => parse_lock(c)?,
        "neg" | "neg32" => Insn::Neg { width: split_width(m).1, dst: c.reg()? },
        "mov_percpu" => {
            let dst = c.reg()?;
            c.comma()?;
            Insn::MovPercpu { dst, src: c.reg()? }
        }
        "addr_space_cast" => {
            let dst = c.reg()?;
            c.comma()?;
            let src = c.reg()?;
            c.comma()?;
            let dst_as = address_space(c)?;
            c.comma()?;
            Insn::AddrSpaceCast { dst, src, dst_as, src_as: address_space(c)? }
        }
        _ => {
            // Loads and stores all start with `l` or `s`.
            let sized = if matches!(m.as_bytes()[0], b'l' | b's') { parse_sized(c, m)? } else { None };
            if let Some(insn) = sized {
                insn
            } else if let Some(insn) = parse_alu_jmp(c, m)? {
                insn
            } else {
                return c.err_at(m_pos, format!("unknown mnemonic `{m}`"));
            }
        }
    };
    c.end()?;
    Ok(insn)
}

fn parse_alu_jmp(c: &mut Cursor, m: &str) -> PResult<Option<Insn>> {
    let (base, width) = split_width(m);
    if let Some(op) = alu_op(base) {
        let dst = c.reg()?;
        c.comma()?;
        return Ok(Some(Insn::Alu { op, width, dst, src: c.operand()? }));
    }
    if let Some(cond) = jmp_cond(base) {
        let dst = c.reg()?;
        c.comma()?;
        let src = c.operand()?;
        c.comma()?;
        return Ok(Some(Insn::JmpIf { cond, width, dst, src, target: c.target()? }));
    }
    // movsx{8,16,32}{32,64}: sign-extending moves, source width then destination width.
    if let Some(rest) = m.strip_prefix("movsx") {
        let (from, width) = match rest {
            "832" => (Size::B, Width::W32),
            "1632" => (Size::H, Width::W32),
            "864" => (Size::B, Width::W64),
            "1664" => (Size::H, Width::W64),
            "3264" => (Size::W, Width::W64),
            _ => return Ok(None),
        };
        let dst = c.reg()?;
        c.comma()?;
        return Ok(Some(Insn::MovSx { width, dst, src: c.reg()?, from }));
    }
    let endian = |order, bits: &str| -> Option<(ByteOrder, u32)> {
        match bits {
            "16" => Some((order, 16)),
            "32" => Some((order, 32)),
            "64" => Some((order, 64)),
            _ => None,
        }
    };
    let swap = if let Some(b) = m.strip_prefix("le") {
        endian(ByteOrder::ToLe, b)
    } else if let Some(b) = m.strip_prefix("be") {
        endian(ByteOrder::ToBe, b)
    } else if let Some(b) = m.strip_prefix("bswap").or_else(|| m.strip_prefix("swap")) {
        endian(ByteOrder::Swap, b)
    } else {
        None
    };
    if let Some((order, bits)) = swap {
        return Ok(Some(Insn::Endian { order, bits, dst: c.reg()? }));
    }
    Ok(None)
}

/// Loads and stores: `ldx{b,h,w,dw}`, `ldxs{b,h,w}`, `st*`, `stx*`, `ldabs*`, `ldind*`, `ldacq*`, `strel*`.
fn parse_sized(c: &mut Cursor, m: &str) -> PResult<Option<Insn>> {
    let try_split = |prefix: &str| m.strip_prefix(prefix).and_then(size_suffix);
    if let Some(size) = try_split("ldxs") {
        if size == Size::DW {
            return c.err("sign-extending loads are ldxsb, ldxsh and ldxsw");
        }
        let dst = c.reg()?;
        c.comma()?;
        let (src, off) = c.mem_bracket()?;
        return Ok(Some(Insn::LoadSx { size, dst, src, off }));
    }
    if let Some(size) = try_split("ldx") {
        let dst = c.reg()?;
        c.comma()?;
        let (src, off) = c.mem_bracket()?;
        return Ok(Some(Insn::Load { size, dst, src, off }));
    }
    if let Some(size) = try_split("ldacq") {
        let dst = c.reg()?;
        c.comma()?;
        let (src, off) = c.mem_bracket()?;
        return Ok(Some(Insn::LoadAcquire { size, dst, src, off }));
    }
    if let Some(size) = try_split("stx") {
        let (dst, off) = c.mem_bracket()?;
        c.comma()?;
        return Ok(Some(Insn::Store { size, dst, off, src: c.reg()? }));
    }
    if let Some(size) = try_split("strel") {
        let (dst, off) = c.mem_bracket()?;
        c.comma()?;
        return Ok(Some(Insn::StoreRelease { size, dst, off, src: c.reg()? }));
    }
    if let Some(size) = try_split("st") {
        let (dst, off) = c.mem_bracket()?;
        c.comma()?;
        return Ok(Some(Insn::StoreImm { size, dst, off, imm: c.imm32()? }));
    }
    if let Some(size) = try_split("ldabs") {
        return Ok(Some(Insn::LoadAbs { size, imm: c.imm32()? }));
    }
    if let Some(size) = try_split("ldind") {
        let src = c.reg()?;
        c.comma()?;
        return Ok(Some(Insn::LoadInd { size, src, imm: c.imm32()? }));
    }
    Ok(None)
}

fn address_space(c: &mut Cursor) -> PResult<u16> {
    let at = c.pos;
    let v = c.imm32()?;
    u16::try_from(v).or_else(|_| c.err_at(at, "an address space is 0…65535"))
}

/// `lock [fetch] OP[32] [rD+off], rS`.
fn parse_lock(c: &mut Cursor) -> PResult<Insn> {
    let fetch = c.eat_word("fetch");
    let start = c.pos;
    let Some(name) = c.ident() else {
        return c.expected("an atomic operation (add, or, and, xor, xchg, cmpxchg)");
    };
    let (base, width) = split_width(name);
    let Some(op) = atomic_op(base, fetch) else {
        return c.err_at(start, format!("unknown atomic operation `{name}`"));
    };
    let (dst, off) = c.mem_bracket()?;
    if !c.eat(",") {
        return c.expected("`,` and a source register (lock takes two operands)");
    }
    let src = c.reg()?;
    let size = if width == Width::W32 { Size::W } else { Size::DW };
    Ok(Insn::Atomic { op, size, dst, off, src })
}
