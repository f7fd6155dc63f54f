//! Map patterns: lookup with a null check, a create-if-missing atomic counter, and a
//! spin-locked field update.
//!
//! `map_lookup("counts", -8, "miss")` expands to:
//!
//! ```text
//! r1 = map[counts] ll
//! r2 = r10
//! r2 += -8                     ; the key, already on the stack
//! call bpf_map_lookup_elem
//! if r0 == 0 goto miss         ; on fall-through r0 points at the value
//! ```
//!
//! `counter_add("counts", -8, -16, 1)` (a `u64` value; the key at r10-8, 8 scratch bytes at
//! r10-16) expands to:
//!
//! ```text
//!     <map_lookup("counts", -8, …)>        ; if r0 != 0 goto hit
//!     *(u64 *)(r10 - 16) = 1               ; the initial value
//!     r1 = map[counts] ll
//!     r2 = r10; r2 += -8
//!     r3 = r10; r3 += -16
//!     r4 = 1                               ; BPF_NOEXIST
//!     call bpf_map_update_elem
//!     if r0 == 0 goto done                 ; created with the amount
//!     <map_lookup("counts", -8, done)>     ; -EEXIST: created meanwhile by another CPU
//! hit:
//!     r1 = 1
//!     lock *(u64 *)(r0 + 0) += r1
//! done:
//! ```
//!
//! `spin_locked_add("locked", -8, R6, 0, 8, 5, "miss")` (a value with a `struct bpf_spin_lock`
//! at offset 0 and a `u64` at offset 8) expands to:
//!
//! ```text
//! <map_lookup("locked", -8, miss)>
//! r6 = r0
//! r1 = r6; r1 += 0
//! call bpf_spin_lock
//! r1 = *(u64 *)(r6 + 8)
//! r1 += 5
//! *(u64 *)(r6 + 8) = r1
//! r1 = r6; r1 += 0
//! call bpf_spin_unlock
//! ```
//!
//! All clobber r0–r5; `spin_locked_add` also sets its value register.

use super::{call, check_callee_saved, check_stack, invalid, stack_ptr, Labels, PatternError};
use crate::insn::build::{add64, atomic, jmp_if, ld_map, ldx, mov64, st, stx};
use crate::insn::{AtomicOp, JmpCond, Program, Reg, Size};

/// `BPF_NOEXIST`.
const BPF_NOEXIST: i32 = 1;

fn check_map(pattern: &'static str, map: &str) -> Result<(), PatternError> {
    if map.is_empty() {
        return invalid(pattern, "the map name is empty");
    }
    Ok(())
}

fn lookup_into(p: &mut Program, map: &str, key_off: i16) {
    p.push(ld_map(Reg::R1, map));
    stack_ptr(p, Reg::R2, key_off);
    p.push(call("bpf_map_lookup_elem"));
}

/// Look up the key at `r10 + key_off` in `map`; jump to `on_miss` when absent. On fall-through
/// r0 points at the value.
pub fn map_lookup(map: &str, key_off: i16, on_miss: &str) -> Result<Program, PatternError> {
    check_map("map_lookup", map)?;
    check_stack("map_lookup", "the key", key_off, 1, 1)?;
    let mut p = Program::new();
    lookup_into(&mut p, map, key_off);
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, on_miss));
    Ok(p)
}

/// Add `amount` to the `u64` value of the key at `r10 + key_off`, creating the entry with
/// `amount` when missing (`BPF_NOEXIST`, so a concurrent creation is not overwritten: the
/// pattern then looks up again and adds atomically). `scratch_off` names 8 free, 8-aligned
/// stack bytes.
pub fn counter_add(map: &str, key_off: i16, scratch_off: i16, amount: i32) -> Result<Program, PatternError> {
    const P: &str = "counter_add";
    check_map(P, map)?;
    check_stack(P, "the key", key_off, 1, 1)?;
    check_stack(P, "the scratch value", scratch_off, 8, 8)?;
    let l = Labels::fresh();
    let (hit, done) = (l.name("hit"), l.name("done"));
    let mut p = Program::new();
    lookup_into(&mut p, map, key_off);
    p.push(jmp_if(JmpCond::Ne, Reg::R0, 0, hit.as_str()));
    p.push(st(Size::DW, Reg::R10, scratch_off, amount));
    p.push(ld_map(Reg::R1, map));
    stack_ptr(&mut p, Reg::R2, key_off);
    stack_ptr(&mut p, Reg::R3, scratch_off);
    p.push(mov64(Reg::R4, BPF_NOEXIST));
    p.push(call("bpf_map_update_elem"));
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, done.as_str()));
    lookup_into(&mut p, map, key_off);
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, done.as_str()));
    p.label(hit);
    p.push(mov64(Reg::R1, amount));
    p.push(atomic(AtomicOp::Add, Size::DW, Reg::R0, 0, Reg::R1));
    p.label(done);
    Ok(p)
}

/// [`counter_add`] by 1.
pub fn counter_increment(map: &str, key_off: i16, scratch_off: i16) -> Result<Program, PatternError> {
    counter_add(map, key_off, scratch_off, 1)
}

/// Look up the key at `r10 + key_off`, then under the value's `bpf_spin_lock` (at `lock_off`
/// in the value) add `amount` to the `u64` at `field_off`. `val` (r6–r9) keeps the value
/// pointer afterwards. The map's value type must be described by BTF containing
/// `struct bpf_spin_lock` at `lock_off`, as the verifier requires.
pub fn spin_locked_add(map: &str, key_off: i16, val: Reg, lock_off: i16, field_off: i16, amount: i32, on_miss: &str) -> Result<Program, PatternError> {
    const P: &str = "spin_locked_add";
    check_callee_saved(P, "the value register", val)?;
    if lock_off < 0 || lock_off % 4 != 0 || field_off < 0 || field_off % 8 != 0 {
        return invalid(P, "lock_off must be a non-negative multiple of 4 and field_off of 8");
    }
    if (lock_off..lock_off + 4).contains(&field_off) || (field_off..field_off + 8).contains(&lock_off) {
        return invalid(P, "the field overlaps the lock");
    }
    let mut p = map_lookup(map, key_off, on_miss)?;
    p.push(mov64(val, Reg::R0));
    p.push(mov64(Reg::R1, val));
    p.push(add64(Reg::R1, lock_off as i32));
    p.push(call("bpf_spin_lock"));
    p.push(ldx(Size::DW, Reg::R1, val, field_off));
    p.push(add64(Reg::R1, amount));
    p.push(stx(Size::DW, val, field_off, Reg::R1));
    p.push(mov64(Reg::R1, val));
    p.push(add64(Reg::R1, lock_off as i32));
    p.push(call("bpf_spin_unlock"));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{disassemble, DisasmOptions, Syntax};

    fn text(p: &Program, extra: &str) -> Vec<String> {
        let mut p = p.clone();
        p.label(extra);
        let asm = p.assemble().unwrap();
        disassemble(asm.insns(), DisasmOptions::new(Syntax::Llvm)).lines().map(str::to_owned).collect()
    }

    #[test]
    fn expansions_are_as_documented() {
        let l = text(&map_lookup("counts", -8, "miss").unwrap(), "miss");
        assert_eq!(l, ["r1 = map[counts] ll", "r2 = r10", "r2 += -0x8", "call 0x1", "if r0 == 0x0 goto +0x0"]);
        let c = counter_add("counts", -8, -16, 1).unwrap();
        assert_eq!(c.insns().count(), 21);
        let s = spin_locked_add("locked", -8, Reg::R6, 0, 8, 5, "miss").unwrap();
        assert_eq!(text(&s, "miss")[5], "r6 = r0");
    }

    #[test]
    fn bad_parameters_are_refused() {
        assert!(map_lookup("", -8, "m").is_err());
        assert!(map_lookup("m", 8, "m").is_err());
        assert!(counter_add("m", -8, -12, 1).is_err());
        assert!(spin_locked_add("m", -8, Reg::R1, 0, 8, 1, "m").is_err());
        assert!(spin_locked_add("m", -8, Reg::R6, 0, 0, 1, "m").is_err());
    }

    #[test]
    fn two_instances_assemble_together() {
        let mut p = counter_increment("c", -8, -16).unwrap();
        p.extend(counter_increment("c", -8, -16).unwrap());
        assert!(p.assemble().is_ok());
    }
}
