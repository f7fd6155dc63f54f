//! The disassembler: [`Insn`] → text in either dialect.
//!
//! The LLVM dialect prints what `llvm-objdump-19 -d --mattr=+alu32` prints for the
//! same bytes (hex immediates with a sign, `w` registers for sub-64-bit loads and
//! stores), minus objdump's `<section+offset>` annotation of jump targets. Forms
//! LLVM 19 has no text for (load-acquire, kfunc calls, pseudo `ld_imm64` with a
//! second immediate or a map name) use bpfkit's extensions, which the grammar reads back.
//! The mnemonic dialect prints what the conformance suite's assembler reads.

use std::fmt::Write;

use super::grammar::{helper_name, llvm, mnemonic};
use super::model::*;

/// Which dialect to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Syntax {
    /// `r0 = 0x0`, as llvm-objdump and the verifier print.
    #[default]
    Llvm,
    /// `mov r0, 0`.
    Mnemonic,
}

/// Signed hex as llvm-objdump prints it: `0x1f`, `-0x1`.
fn hex(v: i64) -> String {
    if v < 0 {
        format!("-{:#x}", (v as i128).unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

fn target_llvm(t: &Target) -> String {
    match t {
        Target::Rel(v) if *v >= 0 => format!("+{v:#x}"),
        Target::Rel(v) => hex(*v as i64),
        Target::Label(l) => l.clone(),
    }
}

fn target_mn(t: &Target) -> String {
    match t {
        Target::Rel(v) if *v >= 0 => format!("+{v}"),
        Target::Rel(v) => v.to_string(),
        Target::Label(l) => l.clone(),
    }
}

fn reg_w(r: Reg, width: Width) -> String {
    match width {
        Width::W64 => format!("r{}", r.num()),
        Width::W32 => format!("w{}", r.num()),
    }
}

/// The register name a value of `size` lives in (LLVM prints `w` for < 64-bit memory values).
fn reg_sized(r: Reg, size: Size) -> String {
    reg_w(r, if size == Size::DW { Width::W64 } else { Width::W32 })
}

fn utype(size: Size) -> &'static str {
    match size {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn stype(size: Size) -> &'static str {
    match size {
        Size::B => "s8",
        Size::H => "s16",
        Size::W => "s32",
        Size::DW => "s64",
    }
}

fn mem_llvm(r: Reg, off: i16) -> String {
    if off < 0 {
        format!("{r} - {:#x}", (off as i32).unsigned_abs())
    } else {
        format!("{r} + {off:#x}")
    }
}

fn mem_mn(r: Reg, off: i16) -> String {
    if off < 0 {
        format!("[{r}{off}]")
    } else {
        format!("[{r}+{off}]")
    }
}

fn map_ref(m: &MapRef) -> String {
    match m {
        MapRef::Fd(fd) => format!("fd:{fd}"),
        MapRef::Name(n) => n.clone(),
    }
}

/// Pseudo `ld_imm64` values in bpfkit's syntax (both dialects).
fn imm64_pseudo(v: &Imm64, tgt: fn(&Target) -> String) -> Option<String> {
    Some(match v {
        Imm64::Const(_) => return None,
        Imm64::Map(m) => format!("map[{}]", map_ref(m)),
        Imm64::MapValue { map, offset } => format!("map_value[{}]+{offset}", map_ref(map)),
        Imm64::MapIdx(i) => format!("map_idx[{i}]"),
        Imm64::MapIdxValue { index, offset } => format!("map_idx_value[{index}]+{offset}"),
        Imm64::BtfId { id, btf_fd: 0 } => format!("btf_id[{id}]"),
        Imm64::BtfId { id, btf_fd } => format!("btf_id[{id}, {btf_fd}]"),
        Imm64::Func(t) => format!("func[{}]", tgt(t)),
    })
}

/// LLVM's own text for a pseudo `ld_imm64`, when it can say it exactly (`ld_pseudo dst, src, imm`).
fn ld_pseudo_llvm(dst: Reg, v: &Imm64) -> Option<String> {
    let (src, imm) = match v {
        Imm64::Map(MapRef::Fd(fd)) => (1, *fd),
        Imm64::MapValue { map: MapRef::Fd(fd), offset: 0 } => (2, *fd),
        Imm64::BtfId { id, btf_fd: 0 } => (3, *id),
        Imm64::Func(Target::Rel(r)) => (4, *r),
        Imm64::MapIdx(i) => (5, *i as i32),
        Imm64::MapIdxValue { index, offset: 0 } => (6, *index as i32),
        _ => return None,
    };
    Some(format!("ld_pseudo {dst}, {src:#x}, {}", hex(imm as u32 as i64)))
}

fn kfunc(func: &KfuncRef, btf_index: i16) -> String {
    let f = match func {
        KfuncRef::Id(id) => id.to_string(),
        KfuncRef::Name(n) => n.clone(),
    };
    if btf_index == 0 {
        format!("kfunc[{f}]")
    } else {
        format!("kfunc[{f}, {btf_index}]")
    }
}

fn atomic_name(op: AtomicOp) -> (&'static str, bool) {
    match op {
        AtomicOp::Add => ("add", false),
        AtomicOp::Or => ("or", false),
        AtomicOp::And => ("and", false),
        AtomicOp::Xor => ("xor", false),
        AtomicOp::FetchAdd => ("add", true),
        AtomicOp::FetchOr => ("or", true),
        AtomicOp::FetchAnd => ("and", true),
        AtomicOp::FetchXor => ("xor", true),
        AtomicOp::Xchg => ("xchg", false),
        AtomicOp::CmpXchg => ("cmpxchg", false),
    }
}

/// Format one instruction.
pub fn format_insn(insn: &Insn, syntax: Syntax) -> String {
    match syntax {
        Syntax::Llvm => format_llvm(insn),
        Syntax::Mnemonic => format_mnemonic(insn),
    }
}

fn format_llvm(insn: &Insn) -> String {
    match insn {
        Insn::Alu { op, width, dst, src } => {
            let d = reg_w(*dst, *width);
            let s = match src {
                Operand::Reg(r) => reg_w(*r, *width),
                Operand::Imm(i) => hex(*i as i64),
            };
            format!("{d} {} {s}", llvm::alu_op(*op))
        }
        Insn::Neg { width, dst } => {
            let d = reg_w(*dst, *width);
            format!("{d} = -{d}")
        }
        Insn::MovSx { width, dst, src, from } => {
            format!("{} = ({}){}", reg_w(*dst, *width), stype(*from), reg_w(*src, *width))
        }
        Insn::AddrSpaceCast { dst, src, dst_as, src_as } => {
            format!("{dst} = addr_space_cast({src}, {dst_as:#x}, {src_as:#x})")
        }
        // The kernel's own disassembler's words (kernel/bpf/disasm.c); LLVM has no syntax for it.
        Insn::MovPercpu { dst, src } => format!("{dst} = &(void __percpu *)({src})"),
        Insn::Core { dst, access } => core_text(*dst, access),
        Insn::Endian { order, bits, dst } => {
            let name = match order {
                ByteOrder::ToLe => "le",
                ByteOrder::ToBe => "be",
                ByteOrder::Swap => "bswap",
            };
            format!("{dst} = {name}{bits} {dst}")
        }
        Insn::Load { size, dst, src, off } => {
            format!("{} = *({} *)({})", reg_sized(*dst, *size), utype(*size), mem_llvm(*src, *off))
        }
        Insn::LoadSx { size, dst, src, off } => format!("{dst} = *({} *)({})", stype(*size), mem_llvm(*src, *off)),
        Insn::Store { size, dst, off, src } => {
            format!("*({} *)({}) = {}", utype(*size), mem_llvm(*dst, *off), reg_sized(*src, *size))
        }
        Insn::StoreImm { size, dst, off, imm } => {
            format!("*({} *)({}) = {}", utype(*size), mem_llvm(*dst, *off), hex(*imm as i64))
        }
        Insn::LoadAbs { size, imm } => format!("r0 = *({} *)skb[{}]", utype(*size), hex(*imm as i64)),
        Insn::LoadInd { size, src, imm: 0 } => format!("r0 = *({} *)skb[{src}]", utype(*size)),
        Insn::LoadInd { size, src, imm } => format!("r0 = *({} *)skb[{src} {}]", utype(*size), signed_hex_term(*imm)),
        Insn::Atomic { op, size, dst, off, src } => {
            let s = reg_sized(*src, *size);
            let m = mem_llvm(*dst, *off);
            let t = utype(*size);
            let w = *size == Size::W;
            match op {
                AtomicOp::Add | AtomicOp::Or | AtomicOp::And | AtomicOp::Xor => {
                    let o = match op {
                        AtomicOp::Add => "+=",
                        AtomicOp::Or => "|=",
                        AtomicOp::And => "&=",
                        _ => "^=",
                    };
                    format!("lock *({t} *)({m}) {o} {s}")
                }
                AtomicOp::Xchg => format!("{s} = {}({m}, {s})", if w { "xchg32_32" } else { "xchg_64" }),
                AtomicOp::CmpXchg => {
                    let r0 = if w { "w0" } else { "r0" };
                    format!("{r0} = {}({m}, {r0}, {s})", if w { "cmpxchg32_32" } else { "cmpxchg_64" })
                }
                _ => format!("{s} = atomic_fetch_{}(({t} *)({m}), {s})", atomic_name(*op).0),
            }
        }
        Insn::LoadAcquire { size, dst, src, off } => {
            format!("{} = load_acquire(({} *)({}))", reg_sized(*dst, *size), utype(*size), mem_llvm(*src, *off))
        }
        Insn::StoreRelease { size, dst, off, src } => {
            format!("store_release(({} *)({}), {})", utype(*size), mem_llvm(*dst, *off), reg_sized(*src, *size))
        }
        Insn::LdImm64 { dst, value } => match value {
            Imm64::Const(v) => format!("{dst} = {} ll", hex(*v as i64)),
            other => ld_pseudo_llvm(*dst, other)
                .unwrap_or_else(|| format!("{dst} = {} ll", imm64_pseudo(other, target_llvm).unwrap_or_default())),
        },
        Insn::Ja { target } => format!("goto {}", target_llvm(target)),
        Insn::Gotol { target } => format!("gotol {}", target_llvm(target)),
        Insn::JmpIf { cond, width, dst, src, target } => {
            let s = match src {
                Operand::Reg(r) => reg_w(*r, *width),
                Operand::Imm(i) => hex(*i as i64),
            };
            format!("if {} {} {s} goto {}", reg_w(*dst, *width), llvm::jmp_op(*cond), target_llvm(target))
        }
        Insn::MayGoto { target } => format!("may_goto {}", target_llvm(target)),
        Insn::Call(c) => match c {
            Call::Helper(id) => format!("call {}", hex(*id as i64)),
            Call::Local(t) => format!("call local {}", target_llvm(t)),
            Call::Kfunc { func, btf_index } => format!("call {}", kfunc(func, *btf_index)),
            Call::Reg(r) => format!("callx {r}"),
        },
        Insn::Exit => "exit".into(),
    }
}

fn signed_hex_term(v: i32) -> String {
    if v < 0 {
        format!("- {:#x}", v.unsigned_abs())
    } else {
        format!("+ {v:#x}")
    }
}

fn w32(width: Width) -> &'static str {
    match width {
        Width::W32 => "32",
        Width::W64 => "",
    }
}

fn operand_mn(o: &Operand) -> String {
    match o {
        Operand::Reg(r) => r.to_string(),
        Operand::Imm(i) => i.to_string(),
    }
}

/// `core_field_offset(r1, "task_struct", "pid")`: the same in both dialects.
fn core_text(dst: Reg, access: &CoreAccess) -> String {
    let mut s = format!("{}({dst}, {:?}", access.kind.name(), access.type_name);
    if access.kind.has_path() {
        s.push_str(&format!(", {:?}", access.path));
    }
    s.push(')');
    s
}

fn format_mnemonic(insn: &Insn) -> String {
    match insn {
        Insn::Alu { op, width, dst, src } => {
            format!("{}{} {dst}, {}", mnemonic::alu_name(*op), w32(*width), operand_mn(src))
        }
        Insn::Neg { width, dst } => format!("neg{} {dst}", w32(*width)),
        Insn::MovSx { width, dst, src, from } => {
            format!("movsx{}{} {dst}, {src}", from.bits(), if *width == Width::W32 { 32 } else { 64 })
        }
        Insn::AddrSpaceCast { dst, src, dst_as, src_as } => format!("addr_space_cast {dst}, {src}, {dst_as}, {src_as}"),
        Insn::MovPercpu { dst, src } => format!("mov_percpu {dst}, {src}"),
        Insn::Core { dst, access } => core_text(*dst, access),
        Insn::Endian { order, bits, dst } => {
            let name = match order {
                ByteOrder::ToLe => "le",
                ByteOrder::ToBe => "be",
                ByteOrder::Swap => "bswap",
            };
            format!("{name}{bits} {dst}")
        }
        Insn::Load { size, dst, src, off } => format!("ldx{} {dst}, {}", mnemonic::size_name(*size), mem_mn(*src, *off)),
        Insn::LoadSx { size, dst, src, off } => format!("ldxs{} {dst}, {}", mnemonic::size_name(*size), mem_mn(*src, *off)),
        Insn::Store { size, dst, off, src } => format!("stx{} {}, {src}", mnemonic::size_name(*size), mem_mn(*dst, *off)),
        Insn::StoreImm { size, dst, off, imm } => format!("st{} {}, {imm}", mnemonic::size_name(*size), mem_mn(*dst, *off)),
        Insn::LoadAbs { size, imm } => format!("ldabs{} {imm}", mnemonic::size_name(*size)),
        Insn::LoadInd { size, src, imm } => format!("ldind{} {src}, {imm}", mnemonic::size_name(*size)),
        Insn::Atomic { op, size, dst, off, src } => {
            let (name, fetch) = atomic_name(*op);
            let w = if *size == Size::W { "32" } else { "" };
            format!("lock {}{name}{w} {}, {src}", if fetch { "fetch " } else { "" }, mem_mn(*dst, *off))
        }
        Insn::LoadAcquire { size, dst, src, off } => format!("ldacq{} {dst}, {}", mnemonic::size_name(*size), mem_mn(*src, *off)),
        Insn::StoreRelease { size, dst, off, src } => format!("strel{} {}, {src}", mnemonic::size_name(*size), mem_mn(*dst, *off)),
        Insn::LdImm64 { dst, value } => match value {
            Imm64::Const(v) => format!("lddw {dst}, {v:#x}"),
            other => format!("lddw {dst}, {}", imm64_pseudo(other, target_mn).unwrap_or_default()),
        },
        Insn::Ja { target } => format!("ja {}", target_mn(target)),
        Insn::Gotol { target } => format!("ja32 {}", target_mn(target)),
        Insn::JmpIf { cond, width, dst, src, target } => {
            format!("{}{} {dst}, {}, {}", mnemonic::jmp_name(*cond), w32(*width), operand_mn(src), target_mn(target))
        }
        Insn::MayGoto { target } => format!("may_goto {}", target_mn(target)),
        Insn::Call(c) => match c {
            Call::Helper(id) => match helper_name(*id) {
                Some(n) => format!("call {n}"),
                None => format!("call {id}"),
            },
            Call::Local(t) => format!("call local {}", target_mn(t)),
            Call::Kfunc { func, btf_index } => format!("call {}", kfunc(func, *btf_index)),
            Call::Reg(r) => format!("callx {r}"),
        },
        Insn::Exit => "exit".into(),
    }
}

/// Options for [`disassemble`].
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct DisasmOptions {
    syntax: Syntax,
    /// Prefix each line with its slot number.
    slot_numbers: bool,
    /// Prefix each line with its encoded bytes.
    bytes: bool,
}

impl DisasmOptions {
    /// Options for `syntax`, without slot numbers or bytes.
    pub fn new(syntax: Syntax) -> Self {
        DisasmOptions { syntax, ..Default::default() }
    }
    /// Whether to prefix each line with its slot number.
    pub fn slot_numbers(mut self, on: bool) -> Self {
        self.slot_numbers = on;
        self
    }
    /// Whether to prefix each line with its encoded bytes.
    pub fn bytes(mut self, on: bool) -> Self {
        self.bytes = on;
        self
    }
}

/// Disassemble a sequence of instructions, one per line.
pub fn disassemble(insns: &[Insn], opts: DisasmOptions) -> String {
    let mut out = String::new();
    let mut slot = 0;
    for insn in insns {
        if opts.slot_numbers {
            let _ = write!(out, "{slot:>5}: ");
        }
        if opts.bytes {
            match super::codec::encode(insn) {
                Ok(slots) => {
                    for (k, s) in slots.iter().enumerate() {
                        if k > 0 {
                            out.push(' ');
                        }
                        for b in s.to_bytes() {
                            let _ = write!(out, "{b:02x} ");
                        }
                    }
                    out.push(' ');
                }
                Err(_) => out.push_str("(unresolved)             "),
            }
        }
        out.push_str(&format_insn(insn, opts.syntax));
        out.push('\n');
        slot += insn.slots();
    }
    out
}
