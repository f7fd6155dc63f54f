//! Typed builders: one function per instruction form, taking [`Reg`]s, [`Size`]s,
//! immediates and targets (`impl Into<Target>`: a label name or a relative offset).
//!
//! ```
//! use bpfkit::insn::*;
//! let mut p = Program::new();
//! p.push(mov64(Reg::R0, 0))
//!     .push(jmp_if(JmpCond::Eq, Reg::R1, 5, "done"))
//!     .push(mov64(Reg::R0, 1))
//!     .label("done")
//!     .push(exit());
//! let asm = p.assemble().unwrap();
//! assert_eq!(asm.insns()[1].target(), Some(&Target::Rel(1)));
//! ```

use super::model::*;

/// `dst = dst <op> src` on 64 bits.
pub fn alu64(op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
    Insn::Alu { op, width: Width::W64, dst, src: src.into() }
}

/// `dst = dst <op> src` on 32 bits (the upper half of `dst` is zeroed).
pub fn alu32(op: AluOp, dst: Reg, src: impl Into<Operand>) -> Insn {
    Insn::Alu { op, width: Width::W32, dst, src: src.into() }
}

/// `dst = src` (64-bit).
pub fn mov64(dst: Reg, src: impl Into<Operand>) -> Insn {
    alu64(AluOp::Mov, dst, src)
}

/// `wdst = wsrc` (32-bit, zero-extending).
pub fn mov32(dst: Reg, src: impl Into<Operand>) -> Insn {
    alu32(AluOp::Mov, dst, src)
}

/// `dst += src` (64-bit).
pub fn add64(dst: Reg, src: impl Into<Operand>) -> Insn {
    alu64(AluOp::Add, dst, src)
}

/// `dst = -dst`.
pub fn neg(width: Width, dst: Reg) -> Insn {
    Insn::Neg { width, dst }
}

/// Sign-extending move `dst = (s8|s16|s32) src`.
pub fn movsx(width: Width, dst: Reg, src: Reg, from: Size) -> Insn {
    Insn::MovSx { width, dst, src, from }
}

/// Byte swap / order conversion of the low `bits` of `dst`.
pub fn endian(order: ByteOrder, bits: u32, dst: Reg) -> Insn {
    Insn::Endian { order, bits, dst }
}

/// `dst = *(size *)(src + off)`.
pub fn ldx(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::Load { size, dst, src, off }
}

/// `dst = *(s8|s16|s32 *)(src + off)`, sign-extending.
pub fn ldxs(size: Size, dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::LoadSx { size, dst, src, off }
}

/// `*(size *)(dst + off) = src`.
pub fn stx(size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
    Insn::Store { size, dst, off, src }
}

/// `*(size *)(dst + off) = imm`.
pub fn st(size: Size, dst: Reg, off: i16, imm: i32) -> Insn {
    Insn::StoreImm { size, dst, off, imm }
}

/// Atomic `op` on `*(size *)(dst + off)` with `src`.
pub fn atomic(op: AtomicOp, size: Size, dst: Reg, off: i16, src: Reg) -> Insn {
    Insn::Atomic { op, size, dst, off, src }
}

/// `dst = imm` as a 64-bit constant (two slots).
pub fn ld_imm64(dst: Reg, value: u64) -> Insn {
    Insn::LdImm64 { dst, value: Imm64::Const(value) }
}

/// `dst = &map` (`BPF_PSEUDO_MAP_FD`); a name is bound to the map's fd at load.
pub fn ld_map(dst: Reg, map: impl Into<MapRef>) -> Insn {
    Insn::LdImm64 { dst, value: Imm64::Map(map.into()) }
}

/// `dst = &map_value[offset]` (`BPF_PSEUDO_MAP_VALUE`).
pub fn ld_map_value(dst: Reg, map: impl Into<MapRef>, offset: u32) -> Insn {
    Insn::LdImm64 { dst, value: Imm64::MapValue { map: map.into(), offset } }
}

/// `dst = &subprogram` (`BPF_PSEUDO_FUNC`), e.g. a `bpf_loop` callback.
pub fn ld_func(dst: Reg, target: impl Into<Target>) -> Insn {
    Insn::LdImm64 { dst, value: Imm64::Func(target.into()) }
}

/// `goto target` (16-bit offset).
pub fn ja(target: impl Into<Target>) -> Insn {
    Insn::Ja { target: target.into() }
}

/// `gotol target` (32-bit offset).
pub fn gotol(target: impl Into<Target>) -> Insn {
    Insn::Gotol { target: target.into() }
}

/// `if dst <cond> src goto target` on 64 bits.
pub fn jmp_if(cond: JmpCond, dst: Reg, src: impl Into<Operand>, target: impl Into<Target>) -> Insn {
    Insn::JmpIf { cond, width: Width::W64, dst, src: src.into(), target: target.into() }
}

/// `if wdst <cond> wsrc goto target` on 32 bits.
pub fn jmp32_if(cond: JmpCond, dst: Reg, src: impl Into<Operand>, target: impl Into<Target>) -> Insn {
    Insn::JmpIf { cond, width: Width::W32, dst, src: src.into(), target: target.into() }
}

/// Call a helper by number (see [`crate::helpers`] for names).
pub fn call_helper(id: u32) -> Insn {
    Insn::Call(Call::Helper(id as i32))
}

/// A helper name [`call_helper_named`] did not find in the helper table (`enum bpf_func_id`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown helper `{0}`: not in the helper table (Linux 6.18's enum bpf_func_id)")]
pub struct UnknownHelper(pub String);

/// Call a helper by name, with or without its `bpf_` prefix (`"bpf_ktime_get_ns"`,
/// `"ktime_get_ns"`), looked up in the generated helper table.
///
/// ```
/// use bpfkit::insn::{call_helper, call_helper_named};
/// assert_eq!(call_helper_named("bpf_map_lookup_elem").unwrap(), call_helper(1));
/// assert_eq!(call_helper_named("ktime_get_ns").unwrap(), call_helper(5));
/// let e = call_helper_named("bpf_no_such_helper").unwrap_err();
/// assert_eq!(e.to_string(), "unknown helper `bpf_no_such_helper`: not in the helper table (Linux 6.18's enum bpf_func_id)");
/// ```
pub fn call_helper_named(name: &str) -> Result<Insn, UnknownHelper> {
    match super::grammar::helper_id(name) {
        Some(id) => Ok(call_helper(id)),
        None => Err(UnknownHelper(name.to_owned())),
    }
}

/// bpf-to-bpf call to a subprogram label.
pub fn call_local(target: impl Into<Target>) -> Insn {
    Insn::Call(Call::Local(target.into()))
}

/// Call a kfunc by BTF id.
pub fn call_kfunc(btf_id: i32) -> Insn {
    Insn::Call(Call::Kfunc { func: KfuncRef::Id(btf_id), btf_index: 0 })
}

/// Call a kfunc by name; `prog::Program::load` resolves it to its vmlinux BTF id.
pub fn call_kfunc_named(name: impl Into<String>) -> Insn {
    Insn::Call(Call::Kfunc { func: KfuncRef::Name(name.into()), btf_index: 0 })
}

/// `exit`.
pub fn exit() -> Insn {
    Insn::Exit
}
