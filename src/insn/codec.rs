//! Encoding [`Insn`] values to 8-byte wire slots and decoding them back.
//!
//! Decoding is strict: a field an instruction does not use must be zero, and an
//! operation's modifier (offset for sdiv, imm for atomics, …) must be one the
//! kernel defines. That is what makes `decode(encode(i)) == i` and
//! `encode(decode(b)) == b` hold for every accepted value.

use super::model::*;
use super::opcode::*;

/// One 8-byte instruction slot as the kernel's `struct bpf_insn` lays it out (little-endian host).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct RawInsn {
    /// The opcode: class, size/mode or operation, and source bits.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    /// The offset field: memory offset or jump offset in slots.
    pub off: i16,
    /// The immediate field.
    pub imm: i32,
}

impl RawInsn {
    /// A slot with registers `dst` and `src` (each masked to 4 bits) packed into `regs`.
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        RawInsn { code, regs: (dst & 0xf) | (src << 4), off, imm }
    }
    /// The destination register number (`dst_reg`).
    pub fn dst(&self) -> u8 {
        self.regs & 0xf
    }
    /// The source register number (`src_reg`).
    pub fn src(&self) -> u8 {
        self.regs >> 4
    }
    /// The slot's 8 bytes as the kernel reads them (little-endian).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
    /// A slot from its 8 little-endian bytes.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        RawInsn {
            code: b[0],
            regs: b[1],
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
    /// The slot as one little-endian u64 (the form `-- raw` sections of the conformance suite use).
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.to_bytes())
    }
    /// A slot from its little-endian u64 form ([`RawInsn::to_u64`]).
    pub fn from_u64(v: u64) -> Self {
        RawInsn::from_bytes(v.to_le_bytes())
    }
}

/// Why an instruction could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A jump or call still names a label.
    #[error("label `{0}` is not resolved: assemble the program first")]
    UnresolvedLabel(String),
    /// A map is still referred to by name.
    #[error("map `{0}` is not bound to a file descriptor: load the program with its maps")]
    UnresolvedMap(String),
    /// A kfunc is still referred to by name.
    #[error("kfunc `{0}` is not resolved to a BTF id")]
    UnresolvedKfunc(String),
    /// A jump offset does not fit the instruction's 16-bit offset field.
    #[error("offset {0} does not fit the 16-bit offset field of this jump")]
    OffsetOutOfRange(i32),
    /// An operand combination the wire format cannot express.
    #[error("invalid operand: {0}")]
    Invalid(&'static str),
    /// A CO-RE instruction, which only the loader can resolve.
    #[error("CO-RE relocation `{0}` is resolved against the kernel's BTF when the program is loaded")]
    UnresolvedCore(String),
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("slot {slot} ({raw:016x}): {reason}")]
#[non_exhaustive]
pub struct DecodeError {
    /// Index of the offending slot.
    pub slot: usize,
    /// The slot as a little-endian u64.
    pub raw: u64,
    /// What is wrong with it.
    pub reason: String,
}

fn size_bits(size: Size) -> u8 {
    match size {
        Size::B => SIZE_B,
        Size::H => SIZE_H,
        Size::W => SIZE_W,
        Size::DW => SIZE_DW,
    }
}

fn size_from_bits(code: u8) -> Size {
    match code & 0x18 {
        SIZE_B => Size::B,
        SIZE_H => Size::H,
        SIZE_W => Size::W,
        _ => Size::DW,
    }
}

fn alu_code(op: AluOp) -> (u8, i16) {
    match op {
        AluOp::Add => (ALU_ADD, 0),
        AluOp::Sub => (ALU_SUB, 0),
        AluOp::Mul => (ALU_MUL, 0),
        AluOp::Div => (ALU_DIV, 0),
        AluOp::SDiv => (ALU_DIV, 1),
        AluOp::Mod => (ALU_MOD, 0),
        AluOp::SMod => (ALU_MOD, 1),
        AluOp::Or => (ALU_OR, 0),
        AluOp::And => (ALU_AND, 0),
        AluOp::Xor => (ALU_XOR, 0),
        AluOp::Lsh => (ALU_LSH, 0),
        AluOp::Rsh => (ALU_RSH, 0),
        AluOp::Arsh => (ALU_ARSH, 0),
        AluOp::Mov => (ALU_MOV, 0),
    }
}

fn jmp_code(cond: JmpCond) -> u8 {
    match cond {
        JmpCond::Eq => JMP_JEQ,
        JmpCond::Ne => JMP_JNE,
        JmpCond::Gt => JMP_JGT,
        JmpCond::Ge => JMP_JGE,
        JmpCond::Lt => JMP_JLT,
        JmpCond::Le => JMP_JLE,
        JmpCond::Set => JMP_JSET,
        JmpCond::SGt => JMP_JSGT,
        JmpCond::SGe => JMP_JSGE,
        JmpCond::SLt => JMP_JSLT,
        JmpCond::SLe => JMP_JSLE,
    }
}

fn atomic_imm(op: AtomicOp) -> i32 {
    match op {
        AtomicOp::Add => ATOMIC_ADD,
        AtomicOp::Or => ATOMIC_OR,
        AtomicOp::And => ATOMIC_AND,
        AtomicOp::Xor => ATOMIC_XOR,
        AtomicOp::FetchAdd => ATOMIC_ADD | ATOMIC_FETCH,
        AtomicOp::FetchOr => ATOMIC_OR | ATOMIC_FETCH,
        AtomicOp::FetchAnd => ATOMIC_AND | ATOMIC_FETCH,
        AtomicOp::FetchXor => ATOMIC_XOR | ATOMIC_FETCH,
        AtomicOp::Xchg => ATOMIC_XCHG,
        AtomicOp::CmpXchg => ATOMIC_CMPXCHG,
    }
}

fn class_for(width: Width, w64: u8, w32: u8) -> u8 {
    match width {
        Width::W64 => w64,
        Width::W32 => w32,
    }
}

fn rel(target: &Target) -> Result<i32, EncodeError> {
    match target {
        Target::Rel(v) => Ok(*v),
        Target::Label(l) => Err(EncodeError::UnresolvedLabel(l.clone())),
    }
}

fn rel16(target: &Target) -> Result<i16, EncodeError> {
    let v = rel(target)?;
    i16::try_from(v).map_err(|_| EncodeError::OffsetOutOfRange(v))
}

fn map_fd(map: &MapRef) -> Result<i32, EncodeError> {
    match map {
        MapRef::Fd(fd) => Ok(*fd),
        MapRef::Name(n) => Err(EncodeError::UnresolvedMap(n.clone())),
    }
}

/// Encode one instruction, appending its slot(s) to `out`.
pub fn encode_into(insn: &Insn, out: &mut Vec<RawInsn>) -> Result<(), EncodeError> {
    let r = RawInsn::new;
    let one = match insn {
        Insn::Core { access, .. } => return Err(EncodeError::UnresolvedCore(access.to_string())),
        Insn::Alu { op, width, dst, src } => {
            let class = class_for(*width, CLASS_ALU64, CLASS_ALU);
            let (code, off) = alu_code(*op);
            match src {
                Operand::Reg(s) => r(class | code | SRC_X, dst.num(), s.num(), off, 0),
                Operand::Imm(i) => r(class | code | SRC_K, dst.num(), 0, off, *i),
            }
        }
        Insn::Neg { width, dst } => r(class_for(*width, CLASS_ALU64, CLASS_ALU) | ALU_NEG, dst.num(), 0, 0, 0),
        Insn::MovSx { width, dst, src, from } => {
            if *from == Size::DW || (*width == Width::W32 && *from == Size::W) {
                return Err(EncodeError::Invalid("movsx extends from 8, 16 or (64-bit only) 32 bits"));
            }
            let class = class_for(*width, CLASS_ALU64, CLASS_ALU);
            r(class | ALU_MOV | SRC_X, dst.num(), src.num(), from.bits() as i16, 0)
        }
        Insn::AddrSpaceCast { dst, src, dst_as, src_as } => r(
            CLASS_ALU64 | ALU_MOV | SRC_X,
            dst.num(),
            src.num(),
            1,
            ((*dst_as as u32) << 16 | *src_as as u32) as i32,
        ),
        Insn::MovPercpu { dst, src } => r(CLASS_ALU64 | ALU_MOV | SRC_X, dst.num(), src.num(), -1, 0),
        Insn::Endian { order, bits, dst } => {
            if !matches!(bits, 16 | 32 | 64) {
                return Err(EncodeError::Invalid("byte swaps are 16, 32 or 64 bits"));
            }
            let code = match order {
                ByteOrder::ToLe => CLASS_ALU | ALU_END | SRC_K,
                ByteOrder::ToBe => CLASS_ALU | ALU_END | SRC_X,
                ByteOrder::Swap => CLASS_ALU64 | ALU_END | SRC_K,
            };
            r(code, dst.num(), 0, 0, *bits as i32)
        }
        Insn::Load { size, dst, src, off } => r(CLASS_LDX | MODE_MEM | size_bits(*size), dst.num(), src.num(), *off, 0),
        Insn::LoadSx { size, dst, src, off } => {
            if *size == Size::DW {
                return Err(EncodeError::Invalid("sign-extending loads are 8, 16 or 32 bits"));
            }
            r(CLASS_LDX | MODE_MEMSX | size_bits(*size), dst.num(), src.num(), *off, 0)
        }
        Insn::Store { size, dst, off, src } => r(CLASS_STX | MODE_MEM | size_bits(*size), dst.num(), src.num(), *off, 0),
        Insn::StoreImm { size, dst, off, imm } => r(CLASS_ST | MODE_MEM | size_bits(*size), dst.num(), 0, *off, *imm),
        Insn::LoadAbs { size, imm } => r(CLASS_LD | MODE_ABS | size_bits(*size), 0, 0, 0, *imm),
        Insn::LoadInd { size, src, imm } => r(CLASS_LD | MODE_IND | size_bits(*size), 0, src.num(), 0, *imm),
        Insn::Atomic { op, size, dst, off, src } => {
            if !matches!(size, Size::W | Size::DW) {
                return Err(EncodeError::Invalid("atomic operations are 32 or 64 bits"));
            }
            r(CLASS_STX | MODE_ATOMIC | size_bits(*size), dst.num(), src.num(), *off, atomic_imm(*op))
        }
        Insn::LoadAcquire { size, dst, src, off } => {
            r(CLASS_STX | MODE_ATOMIC | size_bits(*size), dst.num(), src.num(), *off, ATOMIC_LOAD_ACQ)
        }
        Insn::StoreRelease { size, dst, off, src } => {
            r(CLASS_STX | MODE_ATOMIC | size_bits(*size), dst.num(), src.num(), *off, ATOMIC_STORE_REL)
        }
        Insn::LdImm64 { dst, value } => {
            let (src, lo, hi) = match value {
                Imm64::Const(v) => (0, *v as u32 as i32, (*v >> 32) as u32 as i32),
                Imm64::Map(m) => (PSEUDO_MAP_FD, map_fd(m)?, 0),
                Imm64::MapValue { map, offset } => (PSEUDO_MAP_VALUE, map_fd(map)?, *offset as i32),
                Imm64::BtfId { id, btf_fd } => (PSEUDO_BTF_ID, *id, *btf_fd),
                Imm64::Func(t) => (PSEUDO_FUNC, rel(t)?, 0),
                Imm64::MapIdx(i) => (PSEUDO_MAP_IDX, *i as i32, 0),
                Imm64::MapIdxValue { index, offset } => (PSEUDO_MAP_IDX_VALUE, *index as i32, *offset as i32),
            };
            out.push(r(LD_IMM64, dst.num(), src, 0, lo));
            out.push(r(0, 0, 0, 0, hi));
            return Ok(());
        }
        Insn::Ja { target } => r(CLASS_JMP | JMP_JA, 0, 0, rel16(target)?, 0),
        Insn::Gotol { target } => r(CLASS_JMP32 | JMP_JA, 0, 0, 0, rel(target)?),
        Insn::JmpIf { cond, width, dst, src, target } => {
            let class = class_for(*width, CLASS_JMP, CLASS_JMP32);
            let off = rel16(target)?;
            match src {
                Operand::Reg(s) => r(class | jmp_code(*cond) | SRC_X, dst.num(), s.num(), off, 0),
                Operand::Imm(i) => r(class | jmp_code(*cond) | SRC_K, dst.num(), 0, off, *i),
            }
        }
        Insn::MayGoto { target } => r(CLASS_JMP | JMP_JCOND, 0, 0, rel16(target)?, 0),
        Insn::Call(call) => match call {
            Call::Helper(id) => r(CLASS_JMP | JMP_CALL, 0, 0, 0, *id),
            Call::Local(t) => r(CLASS_JMP | JMP_CALL, 0, PSEUDO_CALL, 0, rel(t)?),
            Call::Kfunc { func, btf_index } => {
                let id = match func {
                    KfuncRef::Id(id) => *id,
                    KfuncRef::Name(n) => return Err(EncodeError::UnresolvedKfunc(n.clone())),
                };
                r(CLASS_JMP | JMP_CALL, 0, PSEUDO_KFUNC_CALL, *btf_index, id)
            }
            Call::Reg(reg) => r(CLASS_JMP | JMP_CALL | SRC_X, reg.num(), 0, 0, 0),
        },
        Insn::Exit => r(CLASS_JMP | JMP_EXIT, 0, 0, 0, 0),
    };
    out.push(one);
    Ok(())
}

/// Encode one instruction to its slot(s).
pub fn encode(insn: &Insn) -> Result<Vec<RawInsn>, EncodeError> {
    let mut out = Vec::with_capacity(2);
    encode_into(insn, &mut out)?;
    Ok(out)
}

/// Encode instructions to bytes (8 per slot).
pub fn encode_bytes(insns: &[Insn]) -> Result<Vec<u8>, EncodeError> {
    let mut slots = Vec::with_capacity(insns.len() + 4);
    for i in insns {
        encode_into(i, &mut slots)?;
    }
    Ok(slots_to_bytes(&slots))
}

/// Flatten slots to bytes.
pub fn slots_to_bytes(slots: &[RawInsn]) -> Vec<u8> {
    slots.iter().flat_map(|s| s.to_bytes()).collect()
}

/// Split bytes into slots; the length must be a multiple of 8.
pub fn bytes_to_slots(bytes: &[u8]) -> Result<Vec<RawInsn>, DecodeError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(DecodeError {
            slot: bytes.len() / 8,
            raw: 0,
            reason: format!("{} bytes is not a whole number of 8-byte instructions", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| RawInsn::from_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Decode bytes into instructions.
pub fn decode_bytes(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
    decode_slots(&bytes_to_slots(bytes)?)
}

/// Decode slots into instructions (an `ld_imm64` consumes two).
pub fn decode_slots(slots: &[RawInsn]) -> Result<Vec<Insn>, DecodeError> {
    let mut out = Vec::with_capacity(slots.len());
    let mut i = 0;
    while i < slots.len() {
        let (insn, n) = decode_at(slots, i)?;
        out.push(insn);
        i += n;
    }
    Ok(out)
}

/// Decode the instruction starting at slot `i`; returns it and the number of slots it used.
pub fn decode_at(slots: &[RawInsn], i: usize) -> Result<(Insn, usize), DecodeError> {
    let s = slots[i];
    let fail = |reason: String| DecodeError { slot: i, raw: s.to_u64(), reason };
    let reg = |n: u8, what: &str| Reg::from_num(n).ok_or_else(|| fail(format!("{what} register r{n} does not exist")));
    // Checks that the listed fields are zero.
    let unused = |dst: bool, src: bool, off: bool, imm: bool| -> Result<(), DecodeError> {
        let mut bad = Vec::new();
        if dst && s.dst() != 0 {
            bad.push("dst_reg");
        }
        if src && s.src() != 0 {
            bad.push("src_reg");
        }
        if off && s.off != 0 {
            bad.push("offset");
        }
        if imm && s.imm != 0 {
            bad.push("imm");
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(fail(format!("unused field(s) {} must be zero for opcode {:#04x}", bad.join(", "), s.code)))
        }
    };
    let class = s.code & 0x07;
    let insn = match class {
        CLASS_ALU | CLASS_ALU64 => {
            let width = if class == CLASS_ALU64 { Width::W64 } else { Width::W32 };
            let op = s.code & 0xf0;
            let x = s.code & SRC_X != 0;
            let dst = reg(s.dst(), "destination")?;
            match op {
                ALU_NEG => {
                    if x {
                        return Err(fail("neg has no register-source form".into()));
                    }
                    unused(false, true, true, true)?;
                    Insn::Neg { width, dst }
                }
                ALU_END => {
                    let order = match (class, x) {
                        (CLASS_ALU, false) => ByteOrder::ToLe,
                        (CLASS_ALU, true) => ByteOrder::ToBe,
                        (_, false) => ByteOrder::Swap,
                        (_, true) => return Err(fail("opcode 0xdf is not defined".into())),
                    };
                    unused(false, true, true, false)?;
                    if !matches!(s.imm, 16 | 32 | 64) {
                        return Err(fail(format!("byte swap width {} is not 16, 32 or 64", s.imm)));
                    }
                    Insn::Endian { order, bits: s.imm as u32, dst }
                }
                ALU_MOV if x && s.off == 1 && width == Width::W64 => Insn::AddrSpaceCast {
                    dst,
                    src: reg(s.src(), "source")?,
                    dst_as: (s.imm as u32 >> 16) as u16,
                    src_as: s.imm as u32 as u16,
                },
                ALU_MOV if x && s.off == -1 && width == Width::W64 => {
                    unused(false, false, false, true)?;
                    Insn::MovPercpu { dst, src: reg(s.src(), "source")? }
                }
                ALU_MOV if x && s.off != 0 => {
                    let from = match (s.off, width) {
                        (8, _) => Size::B,
                        (16, _) => Size::H,
                        (32, Width::W64) => Size::W,
                        _ => return Err(fail(format!("movsx offset {} is not a valid source width", s.off))),
                    };
                    unused(false, false, false, true)?;
                    Insn::MovSx { width, dst, src: reg(s.src(), "source")?, from }
                }
                _ => {
                    let aop = match (op, s.off) {
                        (ALU_ADD, 0) => AluOp::Add,
                        (ALU_SUB, 0) => AluOp::Sub,
                        (ALU_MUL, 0) => AluOp::Mul,
                        (ALU_DIV, 0) => AluOp::Div,
                        (ALU_DIV, 1) => AluOp::SDiv,
                        (ALU_MOD, 0) => AluOp::Mod,
                        (ALU_MOD, 1) => AluOp::SMod,
                        (ALU_OR, 0) => AluOp::Or,
                        (ALU_AND, 0) => AluOp::And,
                        (ALU_XOR, 0) => AluOp::Xor,
                        (ALU_LSH, 0) => AluOp::Lsh,
                        (ALU_RSH, 0) => AluOp::Rsh,
                        (ALU_ARSH, 0) => AluOp::Arsh,
                        (ALU_MOV, 0) => AluOp::Mov,
                        (ALU_ADD | ALU_SUB | ALU_MUL | ALU_OR | ALU_AND | ALU_XOR | ALU_LSH | ALU_RSH | ALU_ARSH
                            | ALU_MOV, _) => return Err(fail("unused field(s) offset must be zero".into())),
                        (ALU_DIV | ALU_MOD, off) => return Err(fail(format!("division offset {off} is not 0 or 1"))),
                        _ => return Err(fail(format!("unknown ALU opcode {:#04x}", s.code))),
                    };
                    let src = if x {
                        unused(false, false, false, true)?;
                        Operand::Reg(reg(s.src(), "source")?)
                    } else {
                        unused(false, true, false, false)?;
                        Operand::Imm(s.imm)
                    };
                    Insn::Alu { op: aop, width, dst, src }
                }
            }
        }
        CLASS_LDX => {
            let size = size_from_bits(s.code);
            let dst = reg(s.dst(), "destination")?;
            let src = reg(s.src(), "source")?;
            unused(false, false, false, true)?;
            match s.code & 0xe0 {
                MODE_MEM => Insn::Load { size, dst, src, off: s.off },
                MODE_MEMSX if size != Size::DW => Insn::LoadSx { size, dst, src, off: s.off },
                _ => return Err(fail(format!("unknown load opcode {:#04x}", s.code))),
            }
        }
        CLASS_ST => {
            if s.code & 0xe0 != MODE_MEM {
                return Err(fail(format!("unknown store opcode {:#04x}", s.code)));
            }
            unused(false, true, false, false)?;
            Insn::StoreImm { size: size_from_bits(s.code), dst: reg(s.dst(), "destination")?, off: s.off, imm: s.imm }
        }
        CLASS_STX => {
            let size = size_from_bits(s.code);
            let dst = reg(s.dst(), "destination")?;
            let src = reg(s.src(), "source")?;
            match s.code & 0xe0 {
                MODE_MEM => {
                    unused(false, false, false, true)?;
                    Insn::Store { size, dst, off: s.off, src }
                }
                MODE_ATOMIC => match s.imm {
                    ATOMIC_LOAD_ACQ => Insn::LoadAcquire { size, dst, src, off: s.off },
                    ATOMIC_STORE_REL => Insn::StoreRelease { size, dst, off: s.off, src },
                    imm if matches!(size, Size::W | Size::DW) => {
                        let op = AtomicOp::ALL
                            .iter()
                            .copied()
                            .find(|op| atomic_imm(*op) == imm)
                            .ok_or_else(|| fail(format!("unknown atomic operation {imm:#x}")))?;
                        Insn::Atomic { op, size, dst, off: s.off, src }
                    }
                    _ => return Err(fail("8- and 16-bit atomics exist only as load-acquire/store-release".into())),
                },
                _ => return Err(fail(format!("unknown store opcode {:#04x}", s.code))),
            }
        }
        CLASS_LD => {
            let size = size_from_bits(s.code);
            match s.code & 0xe0 {
                MODE_IMM if size == Size::DW => return decode_ld_imm64(slots, i),
                MODE_ABS => {
                    unused(true, true, true, false)?;
                    Insn::LoadAbs { size, imm: s.imm }
                }
                MODE_IND => {
                    unused(true, false, true, false)?;
                    Insn::LoadInd { size, src: reg(s.src(), "source")?, imm: s.imm }
                }
                _ => return Err(fail(format!("unknown load opcode {:#04x}", s.code))),
            }
        }
        _ => {
            // JMP and JMP32
            let op = s.code & 0xf0;
            let x = s.code & SRC_X != 0;
            let is32 = class == CLASS_JMP32;
            match op {
                JMP_JA if !x && !is32 => {
                    unused(true, true, false, true)?;
                    Insn::Ja { target: Target::Rel(s.off as i32) }
                }
                JMP_JA if !x => {
                    unused(true, true, true, false)?;
                    Insn::Gotol { target: Target::Rel(s.imm) }
                }
                JMP_CALL if !is32 && !x => match s.src() {
                    0 => {
                        unused(true, false, true, false)?;
                        Insn::Call(Call::Helper(s.imm))
                    }
                    PSEUDO_CALL => {
                        unused(true, false, true, false)?;
                        Insn::Call(Call::Local(Target::Rel(s.imm)))
                    }
                    PSEUDO_KFUNC_CALL => {
                        unused(true, false, false, false)?;
                        Insn::Call(Call::Kfunc { func: KfuncRef::Id(s.imm), btf_index: s.off })
                    }
                    n => return Err(fail(format!("call with src_reg {n} is not defined"))),
                },
                JMP_CALL if !is32 => {
                    unused(false, true, true, true)?;
                    Insn::Call(Call::Reg(reg(s.dst(), "call target")?))
                }
                JMP_EXIT if !is32 && !x => {
                    unused(true, true, true, true)?;
                    Insn::Exit
                }
                JMP_JCOND if !is32 && !x => {
                    unused(true, true, false, true)?;
                    Insn::MayGoto { target: Target::Rel(s.off as i32) }
                }
                _ => {
                    let cond = JmpCond::ALL
                        .iter()
                        .copied()
                        .find(|c| jmp_code(*c) == op)
                        .ok_or_else(|| fail(format!("unknown jump opcode {:#04x}", s.code)))?;
                    let width = if is32 { Width::W32 } else { Width::W64 };
                    let dst = reg(s.dst(), "destination")?;
                    let src = if x {
                        unused(false, false, false, true)?;
                        Operand::Reg(reg(s.src(), "source")?)
                    } else {
                        unused(false, true, false, false)?;
                        Operand::Imm(s.imm)
                    };
                    Insn::JmpIf { cond, width, dst, src, target: Target::Rel(s.off as i32) }
                }
            }
        }
    };
    Ok((insn, 1))
}

fn decode_ld_imm64(slots: &[RawInsn], i: usize) -> Result<(Insn, usize), DecodeError> {
    let s = slots[i];
    let fail = |slot: usize, reason: String| DecodeError { slot, raw: slots[slot].to_u64(), reason };
    let Some(&n) = slots.get(i + 1) else {
        return Err(fail(i, "ld_imm64 needs a second slot, but the program ends".into()));
    };
    if n.code != 0 || n.regs != 0 || n.off != 0 {
        return Err(fail(i + 1, "the second slot of ld_imm64 must have opcode, registers and offset zero".into()));
    }
    if s.off != 0 {
        return Err(fail(i, "unused field(s) offset must be zero for ld_imm64".into()));
    }
    let dst = Reg::from_num(s.dst()).ok_or_else(|| fail(i, format!("destination register r{} does not exist", s.dst())))?;
    let need_zero_hi = |v: Imm64| {
        if n.imm != 0 {
            Err(fail(i + 1, format!("the upper immediate must be zero for ld_imm64 pseudo form {}", s.src())))
        } else {
            Ok(v)
        }
    };
    let value = match s.src() {
        0 => Imm64::Const((s.imm as u32 as u64) | ((n.imm as u32 as u64) << 32)),
        PSEUDO_MAP_FD => need_zero_hi(Imm64::Map(MapRef::Fd(s.imm)))?,
        PSEUDO_MAP_VALUE => Imm64::MapValue { map: MapRef::Fd(s.imm), offset: n.imm as u32 },
        PSEUDO_BTF_ID => Imm64::BtfId { id: s.imm, btf_fd: n.imm },
        PSEUDO_FUNC => need_zero_hi(Imm64::Func(Target::Rel(s.imm)))?,
        PSEUDO_MAP_IDX => need_zero_hi(Imm64::MapIdx(s.imm as u32))?,
        PSEUDO_MAP_IDX_VALUE => Imm64::MapIdxValue { index: s.imm as u32, offset: n.imm as u32 },
        other => return Err(fail(i, format!("ld_imm64 pseudo form {other} is not defined"))),
    };
    Ok((Insn::LdImm64 { dst, value }, 2))
}

impl EncodeError {
    /// Always `None`: text, labels and encodings fail in bpfkit, never in a syscall (the same
    /// `errno()` as every bpfkit error has, so callers need not know which layer failed).
    pub fn errno(&self) -> Option<i32> {
        None
    }
}

impl DecodeError {
    /// Always `None`: text, labels and encodings fail in bpfkit, never in a syscall (the same
    /// `errno()` as every bpfkit error has, so callers need not know which layer failed).
    pub fn errno(&self) -> Option<i32> {
        None
    }
}
