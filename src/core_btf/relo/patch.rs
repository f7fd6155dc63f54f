//! Writing a resolved value into the instruction (libbpf's `bpf_core_patch_insn`), or
//! poisoning it.

use super::calc::Resolution;
use super::{Cause, Fail, Res};
use crate::insn::opcode::{
    CLASS_ALU, CLASS_ALU64, CLASS_JMP, CLASS_LD, CLASS_LDX, CLASS_ST, CLASS_STX, JMP_CALL, SRC_X,
};
use crate::insn::opcode::{MODE_IMM, SIZE_B, SIZE_DW, SIZE_H, SIZE_W};
use crate::insn::RawInsn;

/// The immediate of the `call` that replaces an instruction whose relocation found no target
/// (`0xbad2310`, "bad relo"): the verifier rejects it as `invalid func unknown#195896080`
/// when it is reachable, and removes it as dead code otherwise.
pub const POISON_CALL_IMM: i32 = 0xbad2310;

/// What was done to the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Patch {
    /// The immediate (ALU), offset (LDX/ST/STX) or 64-bit value (`ld_imm64`) changed from
    /// `old` to `new`; `size` is `(old, new)` bytes when a load/store's size changed too.
    Value {
        old: u64,
        new: u64,
        size: Option<(u32, u32)>,
    },
    Poisoned,
}

const LD_IMM64: u8 = CLASS_LD | MODE_IMM | SIZE_DW;

fn insn_fail(reason: String) -> Fail {
    Fail::new(Cause::Instruction, reason)
}

/// `call 0xbad2310`.
fn poison_slot(insn: &mut RawInsn) {
    *insn = RawInsn::new(CLASS_JMP | JMP_CALL, 0, 0, 0, POISON_CALL_IMM);
}

/// Poison the instruction at `slot` (both slots of an `ld_imm64`, so the verifier does not
/// stop at a confusing "unknown opcode 00" first).
fn poison(insns: &mut [RawInsn], slot: usize) -> Patch {
    if insns.get(slot).is_some_and(|i| i.code == LD_IMM64) {
        if let Some(next) = insns.get_mut(slot + 1) {
            poison_slot(next);
        }
    }
    if let Some(insn) = insns.get_mut(slot) {
        poison_slot(insn);
    }
    Patch::Poisoned
}

fn size_bytes(code: u8) -> u32 {
    match code & 0x18 {
        SIZE_DW => 8,
        SIZE_W => 4,
        SIZE_H => 2,
        _ => 1,
    }
}

fn size_code(bytes: u32) -> Option<u8> {
    match bytes {
        8 => Some(SIZE_DW),
        4 => Some(SIZE_W),
        2 => Some(SIZE_H),
        1 => Some(SIZE_B),
        _ => None,
    }
}

/// Patch `insns[slot]` with `res`. The forms: `rX = imm` / `rX op= imm` (ALU/ALU64 with an
/// immediate), `rX = *(T *)(rY + off)`, `*(T *)(rX + off) = rY | imm`, and `rX = imm64 ll`.
pub(crate) fn patch(insns: &mut [RawInsn], slot: usize, res: &Resolution) -> Res<Patch> {
    let insn = *insns
        .get(slot)
        .ok_or_else(|| insn_fail(format!("instruction {slot} is past the section's {} instructions", insns.len())))?;
    if res.poison {
        return Ok(poison(insns, slot));
    }
    let (orig, new) = (res.orig_val, res.new_val);
    let unexpected = |what: &str, got: String| {
        insn_fail(format!("unexpected {what} value in insn {slot}: got {got}, expected {orig} (-> {new})"))
    };
    match insn.code & 0x07 {
        CLASS_ALU | CLASS_ALU64 => {
            if insn.code & SRC_X != 0 {
                return Err(insn_fail(format!("insn {slot} (ALU) takes a register, not an immediate")));
            }
            if res.validate && insn.imm as i64 as u64 != orig {
                return Err(unexpected("ALU/ALU64", insn.imm.to_string()));
            }
            insns[slot].imm = new as i32;
            Ok(Patch::Value { old: insn.imm as i64 as u64, new, size: None })
        }
        CLASS_LDX | CLASS_ST | CLASS_STX => {
            if res.validate && insn.off as i64 as u64 != orig {
                return Err(unexpected("LDX/ST/STX offset", insn.off.to_string()));
            }
            if new > i16::MAX as u64 {
                return Err(insn_fail(format!("insn {slot} (LDX/ST/STX): offset {new} does not fit 16 bits")));
            }
            if res.fail_memsz_adjust {
                // The field changed size in a way a load cannot follow (signed, or not a
                // scalar): libbpf poisons rather than read a wrong value.
                return Ok(poison(insns, slot));
            }
            let mut size = None;
            let mut code = insn.code;
            if res.new_sz != res.orig_sz {
                let have = size_bytes(insn.code);
                if have != res.orig_sz {
                    return Err(insn_fail(format!(
                        "insn {slot} (LDX/ST/STX) accesses {have} bytes, the field is {} bytes",
                        res.orig_sz
                    )));
                }
                let sz = size_code(res.new_sz).ok_or_else(|| {
                    insn_fail(format!("insn {slot} (LDX/ST/STX): no load/store of {} bytes", res.new_sz))
                })?;
                code = (insn.code & 0xe0) | sz | (insn.code & 0x07);
                size = Some((res.orig_sz, res.new_sz));
            }
            insns[slot].off = new as i16;
            insns[slot].code = code;
            Ok(Patch::Value { old: insn.off as i64 as u64, new, size })
        }
        CLASS_LD => {
            let next = insns.get(slot + 1).copied().filter(|n| n.code == 0 && n.regs == 0 && n.off == 0);
            let (true, Some(next)) = (insn.code == LD_IMM64 && insn.src() == 0 && insn.off == 0, next) else {
                return Err(insn_fail(format!("insn {slot} (LD) is not a plain ld_imm64")));
            };
            let imm = insn.imm as u32 as u64 | (next.imm as u32 as u64) << 32;
            if res.validate && imm != orig {
                return Err(unexpected("LDIMM64", imm.to_string()));
            }
            insns[slot].imm = new as u32 as i32;
            insns[slot + 1].imm = (new >> 32) as u32 as i32;
            Ok(Patch::Value { old: imm, new, size: None })
        }
        _ => {
            Err(insn_fail(format!("insn {slot} (code {:#04x}) is of no class a CO-RE relocation can patch", insn.code)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(orig: u64, new: u64) -> Resolution {
        Resolution { orig_val: orig, new_val: new, validate: true, ..Resolution::default() }
    }

    #[test]
    fn patches_each_form() {
        // r1 = 8 → 16
        let mut insns = vec![RawInsn::new(CLASS_ALU64 | 0xb0, 1, 0, 0, 8)];
        assert_eq!(patch(&mut insns, 0, &res(8, 16)), Ok(Patch::Value { old: 8, new: 16, size: None }));
        assert_eq!(insns[0].imm, 16);
        // r1 = *(u32 *)(r2 + 4) → + 12, widened to u64
        let mut insns = vec![RawInsn::new(CLASS_LDX | 0x60 | SIZE_W, 1, 2, 4, 0)];
        let r = Resolution { orig_sz: 4, new_sz: 8, ..res(4, 12) };
        assert_eq!(patch(&mut insns, 0, &r), Ok(Patch::Value { old: 4, new: 12, size: Some((4, 8)) }));
        assert_eq!((insns[0].code, insns[0].off), (CLASS_LDX | 0x60 | SIZE_DW, 12));
        // r1 = 5 ll → 1 << 40
        let mut insns = vec![RawInsn::new(LD_IMM64, 1, 0, 0, 5), RawInsn::default()];
        assert!(patch(&mut insns, 0, &res(5, 1 << 40)).is_ok());
        assert_eq!((insns[0].imm, insns[1].imm), (0, 256));
        // a wrong expected value is an error, as is a register ALU form
        let mut insns = vec![RawInsn::new(CLASS_ALU64 | 0xb0, 1, 0, 0, 9)];
        assert_eq!(patch(&mut insns, 0, &res(8, 16)).map_err(|f| f.cause), Err(Cause::Instruction));
        let mut insns = vec![RawInsn::new(CLASS_ALU64 | SRC_X, 1, 2, 0, 8)];
        assert!(patch(&mut insns, 0, &res(8, 16)).is_err());
    }

    #[test]
    fn poisons_both_slots_of_ld_imm64() {
        let mut insns = vec![RawInsn::new(LD_IMM64, 1, 0, 0, 5), RawInsn::default()];
        let r = Resolution { poison: true, ..res(5, 0) };
        assert_eq!(patch(&mut insns, 0, &r), Ok(Patch::Poisoned));
        let call = RawInsn::new(0x85, 0, 0, 0, 195896080);
        assert_eq!(insns, vec![call, call]);
    }
}
