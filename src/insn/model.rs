//! The logical instruction model: one `Insn` value per eBPF instruction.
//!
//! `Insn` is not the wire format. `ld_imm64` is one value that encodes to two
//! 8-byte slots, and operations the kernel encodes in the offset or immediate
//! field (sdiv/smod, movsx, sign-extending loads, atomics' fetch flag,
//! load-acquire/store-release) are distinct variants, so a match on `Insn`
//! never has to look at bit fields. Every value that can be built here encodes
//! to exactly one byte sequence, and decoding that sequence gives the value back.

use std::fmt;

/// A register, `r0`…`r10`. `r10` is the read-only frame pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Reg {
    /// `r0`: return value of calls and of the program.
    R0 = 0,
    /// `r1`: first argument; holds the context pointer on program entry.
    R1,
    /// `r2`: second argument.
    R2,
    /// `r3`: third argument.
    R3,
    /// `r4`: fourth argument.
    R4,
    /// `r5`: fifth argument.
    R5,
    /// `r6`: callee-saved.
    R6,
    /// `r7`: callee-saved.
    R7,
    /// `r8`: callee-saved.
    R8,
    /// `r9`: callee-saved.
    R9,
    /// `r10`: read-only frame pointer (top of the 512-byte stack).
    R10,
}

impl Reg {
    /// All registers in number order.
    pub const ALL: [Reg; 11] = [
        Reg::R0,
        Reg::R1,
        Reg::R2,
        Reg::R3,
        Reg::R4,
        Reg::R5,
        Reg::R6,
        Reg::R7,
        Reg::R8,
        Reg::R9,
        Reg::R10,
    ];

    /// The register with number `n`, if `n <= 10`.
    pub fn from_num(n: u8) -> Option<Reg> {
        Reg::ALL.get(n as usize).copied()
    }

    /// The register's number, 0…10.
    pub fn num(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.num())
    }
}

/// The operand width of ALU and conditional-jump instructions:
/// `W64` is the ALU64/JMP class (`r` registers), `W32` the ALU/JMP32 class (`w`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Width {
    /// 32-bit operands (`BPF_ALU` / `BPF_JMP32` class, `w` registers); ALU results are zero-extended.
    W32,
    /// 64-bit operands (`BPF_ALU64` / `BPF_JMP` class, `r` registers).
    W64,
}

/// A memory access size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Size {
    /// 1 byte (`u8`).
    B,
    /// 2 bytes (`u16`).
    H,
    /// 4 bytes (`u32`).
    W,
    /// 8 bytes (`u64`).
    DW,
}

impl Size {
    /// The size in bytes.
    pub fn bytes(self) -> u32 {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// The size in bits.
    pub fn bits(self) -> u32 {
        self.bytes() * 8
    }
}

/// The second operand of ALU and jump instructions: a register or a 32-bit immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    /// A register (`BPF_X` source).
    Reg(Reg),
    /// A 32-bit immediate (`BPF_K` source), sign-extended at 64-bit width.
    Imm(i32),
}

impl From<Reg> for Operand {
    fn from(r: Reg) -> Self {
        Operand::Reg(r)
    }
}

impl From<i32> for Operand {
    fn from(v: i32) -> Self {
        Operand::Imm(v)
    }
}

/// Binary ALU operations (both widths). `neg`, `movsx` and byte swaps are their own variants of [`Insn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// `BPF_ADD`: `dst += src`.
    Add,
    /// `BPF_SUB`: `dst -= src`.
    Sub,
    /// `BPF_MUL`: `dst *= src`.
    Mul,
    /// Unsigned division.
    Div,
    /// Signed division (cpu v4; offset field 1).
    SDiv,
    /// Unsigned modulo.
    Mod,
    /// Signed modulo (cpu v4; offset field 1).
    SMod,
    /// `BPF_OR`: `dst |= src`.
    Or,
    /// `BPF_AND`: `dst &= src`.
    And,
    /// `BPF_XOR`: `dst ^= src`.
    Xor,
    /// `BPF_LSH`: `dst <<= src`.
    Lsh,
    /// Logical right shift.
    Rsh,
    /// Arithmetic right shift.
    Arsh,
    /// `BPF_MOV`: `dst = src`.
    Mov,
}

impl AluOp {
    /// Every operation, in declaration order.
    pub const ALL: [AluOp; 14] = [
        AluOp::Add,
        AluOp::Sub,
        AluOp::Mul,
        AluOp::Div,
        AluOp::SDiv,
        AluOp::Mod,
        AluOp::SMod,
        AluOp::Or,
        AluOp::And,
        AluOp::Xor,
        AluOp::Lsh,
        AluOp::Rsh,
        AluOp::Arsh,
        AluOp::Mov,
    ];
}

/// Conditions of conditional jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JmpCond {
    /// `BPF_JEQ`: jump if equal (`if r1 == r2 goto`).
    Eq,
    /// `BPF_JNE`: jump if not equal (`if r1 != r2 goto`).
    Ne,
    /// Unsigned `>`.
    Gt,
    /// `BPF_JGE`: jump if unsigned greater or equal (`if r1 >= r2 goto`).
    Ge,
    /// `BPF_JLT`: jump if unsigned less (`if r1 < r2 goto`).
    Lt,
    /// `BPF_JLE`: jump if unsigned less or equal (`if r1 <= r2 goto`).
    Le,
    /// Jump if `dst & src != 0`.
    Set,
    /// Signed `>`.
    SGt,
    /// `BPF_JSGE`: jump if signed greater or equal (`if r1 s>= r2 goto`).
    SGe,
    /// `BPF_JSLT`: jump if signed less (`if r1 s< r2 goto`).
    SLt,
    /// `BPF_JSLE`: jump if signed less or equal (`if r1 s<= r2 goto`).
    SLe,
}

impl JmpCond {
    /// Every condition, in declaration order.
    pub const ALL: [JmpCond; 11] = [
        JmpCond::Eq,
        JmpCond::Ne,
        JmpCond::Gt,
        JmpCond::Ge,
        JmpCond::Lt,
        JmpCond::Le,
        JmpCond::Set,
        JmpCond::SGt,
        JmpCond::SGe,
        JmpCond::SLt,
        JmpCond::SLe,
    ];
}

/// Byte-order operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Convert host order to little endian (`le16`…; a truncation on little-endian hosts).
    ToLe,
    /// Convert host order to big endian (`be16`…).
    ToBe,
    /// Unconditional byte swap (cpu v4 `bswap16`…).
    Swap,
}

/// Atomic read-modify-write operations (`BPF_STX | BPF_ATOMIC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// `BPF_ADD`: `lock *(size *)(dst + off) += src`.
    Add,
    /// `BPF_OR`: `lock *(size *)(dst + off) |= src`.
    Or,
    /// `BPF_AND`: `lock *(size *)(dst + off) &= src`.
    And,
    /// `BPF_XOR`: `lock *(size *)(dst + off) ^= src`.
    Xor,
    /// `add` returning the old value in the source register.
    FetchAdd,
    /// `BPF_OR | BPF_FETCH`: `or` returning the old value in the source register.
    FetchOr,
    /// `BPF_AND | BPF_FETCH`: `and` returning the old value in the source register.
    FetchAnd,
    /// `BPF_XOR | BPF_FETCH`: `xor` returning the old value in the source register.
    FetchXor,
    /// Exchange: the old value lands in the source register.
    Xchg,
    /// Compare `r0` with memory; store `src` if equal; the old value lands in `r0`.
    CmpXchg,
}

impl AtomicOp {
    /// Every operation, in declaration order.
    pub const ALL: [AtomicOp; 10] = [
        AtomicOp::Add,
        AtomicOp::Or,
        AtomicOp::And,
        AtomicOp::Xor,
        AtomicOp::FetchAdd,
        AtomicOp::FetchOr,
        AtomicOp::FetchAnd,
        AtomicOp::FetchXor,
        AtomicOp::Xchg,
        AtomicOp::CmpXchg,
    ];
}

/// A jump or call destination: a relative offset in slots, or a label resolved at assembly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Offset relative to the next slot (the kernel's convention).
    Rel(i32),
    /// A label name, resolved by [`crate::insn::Program::assemble`].
    Label(String),
}

impl From<&str> for Target {
    fn from(s: &str) -> Self {
        Target::Label(s.to_owned())
    }
}

impl From<String> for Target {
    fn from(s: String) -> Self {
        Target::Label(s)
    }
}

impl From<i32> for Target {
    fn from(v: i32) -> Self {
        Target::Rel(v)
    }
}

impl From<i16> for Target {
    fn from(v: i16) -> Self {
        Target::Rel(v as i32)
    }
}

/// How an instruction names a map: by a file descriptor, or by a name bound when the program is loaded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MapRef {
    /// A map file descriptor already open in this process.
    Fd(i32),
    /// A map name, replaced by the map's fd when the program is loaded.
    Name(String),
}

impl From<&str> for MapRef {
    fn from(s: &str) -> Self {
        MapRef::Name(s.to_owned())
    }
}

impl From<String> for MapRef {
    fn from(s: String) -> Self {
        MapRef::Name(s)
    }
}

/// A kfunc: by BTF id, or by name looked up in vmlinux BTF when loading.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KfuncRef {
    /// A BTF type id (of a `BTF_KIND_FUNC`) in vmlinux or the module BTF chosen by `btf_index`.
    Id(i32),
    /// A function name, resolved to its BTF id in vmlinux BTF at load time.
    Name(String),
}

/// The value of an `ld_imm64` (`lddw`) instruction: a constant or one of the kernel's pseudo forms
/// (the `src_reg` field of the first slot says which).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Imm64 {
    /// `src_reg = 0`: a plain 64-bit constant.
    Const(u64),
    /// `BPF_PSEUDO_MAP_FD` (1): the map itself.
    Map(MapRef),
    /// `BPF_PSEUDO_MAP_VALUE` (2): address of the value at `offset` in a single-element array map.
    MapValue {
        /// The map.
        map: MapRef,
        /// Byte offset into the value.
        offset: u32,
    },
    /// `BPF_PSEUDO_BTF_ID` (3): a kernel variable by BTF id (`btf_fd` 0 is vmlinux).
    BtfId {
        /// The variable's BTF type id.
        id: i32,
        /// Fd of the BTF holding it (0 for vmlinux).
        btf_fd: i32,
    },
    /// `BPF_PSEUDO_FUNC` (4): address of a subprogram.
    Func(Target),
    /// `BPF_PSEUDO_MAP_IDX` (5): the map at this index of the load's `fd_array`.
    MapIdx(u32),
    /// `BPF_PSEUDO_MAP_IDX_VALUE` (6).
    MapIdxValue {
        /// Index of the map in the load's `fd_array`.
        index: u32,
        /// Byte offset into the value.
        offset: u32,
    },
}

/// What a `call` instruction calls.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    /// A helper by `enum bpf_func_id` number (`src_reg = 0`).
    Helper(i32),
    /// A bpf-to-bpf call (`src_reg = BPF_PSEUDO_CALL`).
    Local(Target),
    /// A kfunc (`src_reg = BPF_PSEUDO_KFUNC_CALL`); `btf_index` selects a module BTF in `fd_array` (0 = vmlinux).
    Kfunc {
        /// The kfunc, by BTF id or name.
        func: KfuncRef,
        /// Index of the module BTF in `fd_array` (0 for vmlinux).
        btf_index: i16,
    },
    /// An indirect call through a register (`callx`, opcode 0x8d): LLVM emits it, the Linux verifier refuses it.
    Reg(Reg),
}

/// One logical eBPF instruction.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `dst = dst <op> src` (`Mov`: `dst = src`).
    Alu {
        /// The operation.
        op: AluOp,
        /// 32- or 64-bit.
        width: Width,
        /// Destination register.
        dst: Reg,
        /// Source register or immediate.
        src: Operand,
    },
    /// `dst = -dst`.
    Neg {
        /// 32- or 64-bit.
        width: Width,
        /// Destination register.
        dst: Reg,
    },
    /// Sign-extending move (cpu v4): `dst = (s8|s16|s32) src`. `from` is B, H or W (W only at 64-bit width).
    MovSx {
        /// 32- or 64-bit.
        width: Width,
        /// Destination register.
        dst: Reg,
        /// Source register.
        src: Reg,
        /// The size sign-extended from (B, H or W).
        from: Size,
    },
    /// `dst = addr_space_cast(src, dst_as, src_as)`: convert a pointer between address spaces
    /// (BPF arena, Linux 6.9+; `BPF_ALU64 | BPF_MOV | BPF_X` with offset 1).
    AddrSpaceCast {
        /// Destination register.
        dst: Reg,
        /// Source register.
        src: Reg,
        /// Address space converted to.
        dst_as: u16,
        /// Address space converted from.
        src_as: u16,
    },
    /// `dst = &(void __percpu *)(src)`: the address of this CPU's copy of the per-CPU variable
    /// at `src` (`BPF_ALU64 | BPF_MOV | BPF_X` with offset -1, `BPF_ADDR_PERCPU`). The verifier
    /// writes it when it inlines per-CPU lookups (Linux 6.8+): it appears in translated
    /// (`xlated`) programs, and the kernel refuses it in programs loaded from user space.
    MovPercpu {
        /// Destination register.
        dst: Reg,
        /// Source register: a per-CPU address.
        src: Reg,
    },
    /// Byte-order conversion or swap of the low `bits` (16, 32 or 64) of `dst`.
    Endian {
        /// Convert to little or big endian, or swap unconditionally.
        order: ByteOrder,
        /// How many low bits: 16, 32 or 64.
        bits: u32,
        /// Destination register.
        dst: Reg,
    },
    /// `dst = *(size *)(src + off)`, zero-extending.
    Load {
        /// Access size.
        size: Size,
        /// Destination register.
        dst: Reg,
        /// Base register of the address.
        src: Reg,
        /// Byte offset from the base.
        off: i16,
    },
    /// `dst = *(s8|s16|s32 *)(src + off)`, sign-extending (cpu v4). Size B, H or W.
    LoadSx {
        /// Access size (B, H or W).
        size: Size,
        /// Destination register.
        dst: Reg,
        /// Base register of the address.
        src: Reg,
        /// Byte offset from the base.
        off: i16,
    },
    /// `*(size *)(dst + off) = src`.
    Store {
        /// Access size.
        size: Size,
        /// Base register of the address.
        dst: Reg,
        /// Byte offset from the base.
        off: i16,
        /// Register holding the value stored.
        src: Reg,
    },
    /// `*(size *)(dst + off) = imm`.
    StoreImm {
        /// Access size.
        size: Size,
        /// Base register of the address.
        dst: Reg,
        /// Byte offset from the base.
        off: i16,
        /// The value stored.
        imm: i32,
    },
    /// Legacy packet access: `r0 = *(size *)skb[imm]` (socket filters).
    LoadAbs {
        /// Access size.
        size: Size,
        /// Byte offset into the packet.
        imm: i32,
    },
    /// Legacy packet access: `r0 = *(size *)skb[src + imm]`.
    LoadInd {
        /// Access size.
        size: Size,
        /// Register holding the base offset into the packet.
        src: Reg,
        /// Byte offset added to `src`.
        imm: i32,
    },
    /// Atomic operation on `*(size *)(dst + off)` with `src`; size W or DW.
    Atomic {
        /// The atomic operation.
        op: AtomicOp,
        /// Access size (W or DW).
        size: Size,
        /// Base register of the address.
        dst: Reg,
        /// Byte offset from the base.
        off: i16,
        /// Source register: the operand; fetching ops and `Xchg` put the old value in it.
        src: Reg,
    },
    /// `dst = load_acquire((size *)(src + off))` (Linux 6.15+).
    LoadAcquire {
        /// Access size.
        size: Size,
        /// Destination register.
        dst: Reg,
        /// Base register of the address.
        src: Reg,
        /// Byte offset from the base.
        off: i16,
    },
    /// `store_release((size *)(dst + off), src)` (Linux 6.15+).
    StoreRelease {
        /// Access size.
        size: Size,
        /// Base register of the address.
        dst: Reg,
        /// Byte offset from the base.
        off: i16,
        /// Register holding the value stored.
        src: Reg,
    },
    /// `dst = imm64` in one of its forms; two slots on the wire.
    LdImm64 {
        /// Destination register.
        dst: Reg,
        /// The 64-bit value, or what the loader resolves it to.
        value: Imm64,
    },
    /// Unconditional jump with a 16-bit offset (`goto`, `ja`).
    Ja {
        /// Jump offset or label.
        target: Target,
    },
    /// Unconditional jump with a 32-bit offset (`gotol`, cpu v4).
    Gotol {
        /// Jump offset or label.
        target: Target,
    },
    /// Conditional jump.
    JmpIf {
        /// The comparison.
        cond: JmpCond,
        /// 32- or 64-bit comparison.
        width: Width,
        /// Left-hand register.
        dst: Reg,
        /// Right-hand register or immediate.
        src: Operand,
        /// Jump offset or label.
        target: Target,
    },
    /// `may_goto`: a jump the verifier may take to bound loops (Linux 6.9+).
    MayGoto {
        /// Jump offset or label.
        target: Target,
    },
    /// A call.
    Call(Call),
    /// Return `r0`.
    Exit,
    /// `dst = <a CO-RE value>`: a field offset, size or existence, a type's size or existence,
    /// an enum value, resolved against the target kernel's BTF when the program is loaded and
    /// encoded as `mov64 dst, value` (or poisoned as libbpf does when nothing matches). Written
    /// `core_field_offset(r1, "task_struct", "real_parent.tgid")`.
    Core {
        /// Destination register.
        dst: Reg,
        /// The type, field or enum value asked about, and what of it.
        access: CoreAccess,
    },
}

/// What a CO-RE instruction asks of the target BTF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreKind {
    /// `BPF_CORE_FIELD_BYTE_OFFSET`: the field's byte offset.
    FieldOffset,
    /// `BPF_CORE_FIELD_BYTE_SIZE`: the field's size in bytes.
    FieldSize,
    /// `BPF_CORE_FIELD_EXISTS`: 1 if the field exists in the target, else 0.
    FieldExists,
    /// `BPF_CORE_FIELD_SIGNED`: 1 if the field is signed.
    FieldSigned,
    /// `BPF_CORE_FIELD_LSHIFT_U64`: left shift that puts a bitfield at the top of a `u64`.
    FieldLshift,
    /// `BPF_CORE_FIELD_RSHIFT_U64`: right shift that then extracts the bitfield.
    FieldRshift,
    /// `BPF_CORE_TYPE_EXISTS`: 1 if the type exists in the target.
    TypeExists,
    /// `BPF_CORE_TYPE_SIZE`: the type's size in bytes.
    TypeSize,
    /// `BPF_CORE_TYPE_ID_TARGET`: the type's id in the target BTF.
    TypeId,
    /// `BPF_CORE_ENUMVAL_EXISTS`: 1 if the enumerator exists in the target.
    EnumExists,
    /// `BPF_CORE_ENUMVAL_VALUE`: the enumerator's value in the target.
    EnumValue,
}

impl CoreKind {
    /// Every kind, in declaration order.
    pub const ALL: [CoreKind; 11] = [
        CoreKind::FieldOffset,
        CoreKind::FieldSize,
        CoreKind::FieldExists,
        CoreKind::FieldSigned,
        CoreKind::FieldLshift,
        CoreKind::FieldRshift,
        CoreKind::TypeExists,
        CoreKind::TypeSize,
        CoreKind::TypeId,
        CoreKind::EnumExists,
        CoreKind::EnumValue,
    ];

    /// The grammar's name: `core_field_offset`, …
    pub fn name(self) -> &'static str {
        match self {
            CoreKind::FieldOffset => "core_field_offset",
            CoreKind::FieldSize => "core_field_size",
            CoreKind::FieldExists => "core_field_exists",
            CoreKind::FieldSigned => "core_field_signed",
            CoreKind::FieldLshift => "core_field_lshift",
            CoreKind::FieldRshift => "core_field_rshift",
            CoreKind::TypeExists => "core_type_exists",
            CoreKind::TypeSize => "core_type_size",
            CoreKind::TypeId => "core_type_id",
            CoreKind::EnumExists => "core_enum_exists",
            CoreKind::EnumValue => "core_enum_value",
        }
    }

    /// The kind whose grammar name ([`CoreKind::name`]) is `name`.
    pub fn from_name(name: &str) -> Option<CoreKind> {
        CoreKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the form takes a path after the type name (a field path or an enumerator).
    pub fn has_path(self) -> bool {
        !matches!(self, CoreKind::TypeExists | CoreKind::TypeSize | CoreKind::TypeId)
    }
}

/// The operands of a CO-RE instruction: a kind, a type name (`task_struct`, `struct
/// task_struct`, `enum pid_type`, flavors like `task_struct___old` allowed) and, for field and
/// enum kinds, a path (`real_parent.tgid`, `arr[2].x`) or an enumerator name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoreAccess {
    /// What is asked (offset, size, existence, …).
    pub kind: CoreKind,
    /// The local type's name, possibly with a `___flavor` suffix.
    pub type_name: String,
    /// The field path or enumerator name; unused by the type kinds.
    pub path: String,
}

impl fmt::Display for CoreAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(\"{}\"", self.kind.name(), self.type_name)?;
        if self.kind.has_path() {
            write!(f, ", \"{}\"", self.path)?;
        }
        f.write_str(")")
    }
}

impl Insn {
    /// How many 8-byte slots this instruction takes on the wire (2 for `ld_imm64`, else 1).
    pub fn slots(&self) -> usize {
        match self {
            Insn::LdImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// The jump/call target, if this instruction has one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Insn::Ja { target }
            | Insn::Gotol { target }
            | Insn::JmpIf { target, .. }
            | Insn::MayGoto { target }
            | Insn::Call(Call::Local(target))
            | Insn::LdImm64 { value: Imm64::Func(target), .. } => Some(target),
            _ => None,
        }
    }

    /// Mutable access to the jump/call target, if any.
    pub fn target_mut(&mut self) -> Option<&mut Target> {
        match self {
            Insn::Ja { target }
            | Insn::Gotol { target }
            | Insn::JmpIf { target, .. }
            | Insn::MayGoto { target }
            | Insn::Call(Call::Local(target))
            | Insn::LdImm64 { value: Imm64::Func(target), .. } => Some(target),
            _ => None,
        }
    }

    /// Whether the target field is 16 bits wide on the wire (else 32).
    pub fn has_short_target(&self) -> bool {
        matches!(self, Insn::Ja { .. } | Insn::JmpIf { .. } | Insn::MayGoto { .. })
    }
}
