//! Opcode bit fields of the eBPF wire format (Linux `include/uapi/linux/bpf.h`,
//! `bpf_common.h`). Only the codec and the disassembler use these.

// Instruction classes (low 3 bits).
/// `BPF_LD`: non-standard loads (`ld_imm64`, legacy packet access).
pub const CLASS_LD: u8 = 0x00;
/// `BPF_LDX`: loads into a register.
pub const CLASS_LDX: u8 = 0x01;
/// `BPF_ST`: stores of an immediate.
pub const CLASS_ST: u8 = 0x02;
/// `BPF_STX`: stores of a register, and atomics.
pub const CLASS_STX: u8 = 0x03;
/// `BPF_ALU`: 32-bit arithmetic.
pub const CLASS_ALU: u8 = 0x04;
/// `BPF_JMP`: 64-bit jumps, calls and exit.
pub const CLASS_JMP: u8 = 0x05;
/// `BPF_JMP32`: 32-bit conditional jumps.
pub const CLASS_JMP32: u8 = 0x06;
/// `BPF_ALU64`: 64-bit arithmetic.
pub const CLASS_ALU64: u8 = 0x07;

// Load/store size (bits 3-4).
/// `BPF_W`: 4 bytes.
pub const SIZE_W: u8 = 0x00;
/// `BPF_H`: 2 bytes.
pub const SIZE_H: u8 = 0x08;
/// `BPF_B`: 1 byte.
pub const SIZE_B: u8 = 0x10;
/// `BPF_DW`: 8 bytes.
pub const SIZE_DW: u8 = 0x18;

// Load/store mode (bits 5-7).
/// `BPF_IMM`: immediate (`ld_imm64`).
pub const MODE_IMM: u8 = 0x00;
/// `BPF_ABS`: legacy packet access at a constant offset.
pub const MODE_ABS: u8 = 0x20;
/// `BPF_IND`: legacy packet access at a register plus offset.
pub const MODE_IND: u8 = 0x40;
/// `BPF_MEM`: ordinary memory access.
pub const MODE_MEM: u8 = 0x60;
/// `BPF_MEMSX`: sign-extending load (cpu v4).
pub const MODE_MEMSX: u8 = 0x80;
/// `BPF_ATOMIC`: atomic operation; the operation is in the immediate field.
pub const MODE_ATOMIC: u8 = 0xc0;

// ALU/JMP source bit.
/// `BPF_K`: the source is the 32-bit immediate.
pub const SRC_K: u8 = 0x00;
/// `BPF_X`: the source is `src_reg`.
pub const SRC_X: u8 = 0x08;

// ALU operations (bits 4-7).
/// `BPF_ADD`.
pub const ALU_ADD: u8 = 0x00;
/// `BPF_SUB`.
pub const ALU_SUB: u8 = 0x10;
/// `BPF_MUL`.
pub const ALU_MUL: u8 = 0x20;
/// `BPF_DIV` (signed with offset 1).
pub const ALU_DIV: u8 = 0x30;
/// `BPF_OR`.
pub const ALU_OR: u8 = 0x40;
/// `BPF_AND`.
pub const ALU_AND: u8 = 0x50;
/// `BPF_LSH`.
pub const ALU_LSH: u8 = 0x60;
/// `BPF_RSH`: logical right shift.
pub const ALU_RSH: u8 = 0x70;
/// `BPF_NEG`.
pub const ALU_NEG: u8 = 0x80;
/// `BPF_MOD` (signed with offset 1).
pub const ALU_MOD: u8 = 0x90;
/// `BPF_XOR`.
pub const ALU_XOR: u8 = 0xa0;
/// `BPF_MOV` (`movsx` with a nonzero offset).
pub const ALU_MOV: u8 = 0xb0;
/// `BPF_ARSH`: arithmetic right shift.
pub const ALU_ARSH: u8 = 0xc0;
/// `BPF_END`: byte-order conversion (`BPF_TO_LE`/`BPF_TO_BE` in the source bit).
pub const ALU_END: u8 = 0xd0;

// Jump operations (bits 4-7).
/// `BPF_JA`: unconditional jump.
pub const JMP_JA: u8 = 0x00;
/// `BPF_JEQ`: jump if equal.
pub const JMP_JEQ: u8 = 0x10;
/// `BPF_JGT`: jump if unsigned greater.
pub const JMP_JGT: u8 = 0x20;
/// `BPF_JGE`: jump if unsigned greater or equal.
pub const JMP_JGE: u8 = 0x30;
/// `BPF_JSET`: jump if `dst & src != 0`.
pub const JMP_JSET: u8 = 0x40;
/// `BPF_JNE`: jump if not equal.
pub const JMP_JNE: u8 = 0x50;
/// `BPF_JSGT`: jump if signed greater.
pub const JMP_JSGT: u8 = 0x60;
/// `BPF_JSGE`: jump if signed greater or equal.
pub const JMP_JSGE: u8 = 0x70;
/// `BPF_CALL`: call a helper, subprogram or kfunc.
pub const JMP_CALL: u8 = 0x80;
/// `BPF_EXIT`: return from the function.
pub const JMP_EXIT: u8 = 0x90;
/// `BPF_JLT`: jump if unsigned less.
pub const JMP_JLT: u8 = 0xa0;
/// `BPF_JLE`: jump if unsigned less or equal.
pub const JMP_JLE: u8 = 0xb0;
/// `BPF_JSLT`: jump if signed less.
pub const JMP_JSLT: u8 = 0xc0;
/// `BPF_JSLE`: jump if signed less or equal.
pub const JMP_JSLE: u8 = 0xd0;
/// `BPF_JCOND`: `may_goto` (with `src_reg` `BPF_MAY_GOTO`).
pub const JMP_JCOND: u8 = 0xe0;

// Atomic operations (immediate field).
/// `BPF_ADD`: atomic add.
pub const ATOMIC_ADD: i32 = 0x00;
/// `BPF_OR`: atomic or.
pub const ATOMIC_OR: i32 = 0x40;
/// `BPF_AND`: atomic and.
pub const ATOMIC_AND: i32 = 0x50;
/// `BPF_XOR`: atomic xor.
pub const ATOMIC_XOR: i32 = 0xa0;
/// `BPF_FETCH`: flag asking for the old value back in `src_reg`.
pub const ATOMIC_FETCH: i32 = 0x01;
/// `BPF_XCHG`: atomic exchange.
pub const ATOMIC_XCHG: i32 = 0xe0 | ATOMIC_FETCH;
/// `BPF_CMPXCHG`: atomic compare-and-exchange with `r0`.
pub const ATOMIC_CMPXCHG: i32 = 0xf0 | ATOMIC_FETCH;
/// `BPF_LOAD_ACQ`: load-acquire.
pub const ATOMIC_LOAD_ACQ: i32 = 0x100;
/// `BPF_STORE_REL`: store-release.
pub const ATOMIC_STORE_REL: i32 = 0x110;

// `src_reg` values of ld_imm64 and call.
/// `BPF_PSEUDO_MAP_FD`: `ld_imm64` of a map by fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `BPF_PSEUDO_MAP_VALUE`: `ld_imm64` of an address in a map's value.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `BPF_PSEUDO_BTF_ID`: `ld_imm64` of a kernel variable by BTF id.
pub const PSEUDO_BTF_ID: u8 = 3;
/// `BPF_PSEUDO_FUNC`: `ld_imm64` of a subprogram's address.
pub const PSEUDO_FUNC: u8 = 4;
/// `BPF_PSEUDO_MAP_IDX`: `ld_imm64` of a map by `fd_array` index.
pub const PSEUDO_MAP_IDX: u8 = 5;
/// `BPF_PSEUDO_MAP_IDX_VALUE`: `ld_imm64` of a value address in a map by `fd_array` index.
pub const PSEUDO_MAP_IDX_VALUE: u8 = 6;
/// `BPF_PSEUDO_CALL`: `call` of a bpf-to-bpf subprogram.
pub const PSEUDO_CALL: u8 = 1;
/// `BPF_PSEUDO_KFUNC_CALL`: `call` of a kfunc by BTF id.
pub const PSEUDO_KFUNC_CALL: u8 = 2;

/// The opcode of `ld_imm64`.
pub const LD_IMM64: u8 = CLASS_LD | SIZE_DW | MODE_IMM;
