//! Ring buffer patterns: reserve / fill / submit, and `bpf_ringbuf_output`.
//!
//! `ringbuf_emit("events", -32, 32, R6, "full")` copies 32 stack bytes into a record:
//!
//! ```text
//! r1 = map[events] ll
//! r2 = 32
//! r3 = 0
//! call bpf_ringbuf_reserve
//! if r0 == 0 goto full             ; the ring is full
//! r6 = r0
//! r1 = *(u64 *)(r10 - 32)          ; once per 8 bytes
//! *(u64 *)(r6 + 0) = r1
//! …
//! r1 = r6
//! r2 = 0
//! call bpf_ringbuf_submit
//! ```
//!
//! The three steps are also separate patterns ([`ringbuf_reserve`], [`ringbuf_fill_from_stack`],
//! [`ringbuf_submit`]), for records filled from elsewhere: the verifier insists that every
//! path after a successful reserve submits (or discards) the record.
//!
//! `ringbuf_output("events", -32, 32)` copies through the kernel instead:
//! `r1 = map[events] ll; r2 = r10; r2 += -32; r3 = 32; r4 = 0; call bpf_ringbuf_output`
//! (r0 = 0 or a negative errno).
//!
//! All clobber r0–r5.

use super::{call, check_callee_saved, check_stack, invalid, stack_ptr, PatternError};
use crate::insn::build::{jmp_if, ld_map, ldx, mov64, stx};
use crate::insn::{JmpCond, Program, Reg, Size};

/// Reserve a `size`-byte record in `map`; `rec` (r6–r9) points at it; jump to `on_full` if the
/// ring has no room.
pub fn ringbuf_reserve(map: &str, size: u32, rec: Reg, on_full: &str) -> Result<Program, PatternError> {
    check_callee_saved("ringbuf_reserve", "the record register", rec)?;
    if size == 0 || size > i32::MAX as u32 {
        return invalid("ringbuf_reserve", "the size must be positive");
    }
    let mut p = Program::new();
    p.push(ld_map(Reg::R1, map));
    p.push(mov64(Reg::R2, size as i32));
    p.push(mov64(Reg::R3, 0));
    p.push(call("bpf_ringbuf_reserve"));
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, on_full));
    p.push(mov64(rec, Reg::R0));
    Ok(p)
}

/// Copy `len` bytes (a multiple of 8) from `r10 + off` to the record at `rec`.
pub fn ringbuf_fill_from_stack(rec: Reg, off: i16, len: usize) -> Result<Program, PatternError> {
    check_stack("ringbuf_fill_from_stack", "the source", off, len, 8)?;
    if !len.is_multiple_of(8) {
        return invalid("ringbuf_fill_from_stack", "the length must be a multiple of 8");
    }
    let mut p = Program::new();
    for i in (0..len as i16).step_by(8) {
        p.push(ldx(Size::DW, Reg::R1, Reg::R10, off + i));
        p.push(stx(Size::DW, rec, i, Reg::R1));
    }
    Ok(p)
}

/// Submit the record at `rec`.
pub fn ringbuf_submit(rec: Reg) -> Result<Program, PatternError> {
    let mut p = Program::new();
    p.push(mov64(Reg::R1, rec));
    p.push(mov64(Reg::R2, 0));
    p.push(call("bpf_ringbuf_submit"));
    Ok(p)
}

/// Reserve, fill from `r10 + off` (`len` bytes, a multiple of 8), and submit.
pub fn ringbuf_emit(map: &str, off: i16, len: usize, rec: Reg, on_full: &str) -> Result<Program, PatternError> {
    let fill = ringbuf_fill_from_stack(rec, off, len)?;
    let mut p = ringbuf_reserve(map, len as u32, rec, on_full)?;
    p.extend(fill);
    p.extend(ringbuf_submit(rec)?);
    Ok(p)
}

/// `bpf_ringbuf_output(map, r10 + off, len, 0)`.
pub fn ringbuf_output(map: &str, off: i16, len: usize) -> Result<Program, PatternError> {
    check_stack("ringbuf_output", "the record", off, len, 1)?;
    let mut p = Program::new();
    p.push(ld_map(Reg::R1, map));
    stack_ptr(&mut p, Reg::R2, off);
    p.push(mov64(Reg::R3, len as i32));
    p.push(mov64(Reg::R4, 0));
    p.push(call("bpf_ringbuf_output"));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_sizes_and_checks() {
        assert_eq!(ringbuf_emit("e", -32, 32, Reg::R6, "full").unwrap().insns().count(), 6 + 8 + 3);
        assert!(ringbuf_emit("e", -32, 12, Reg::R6, "full").is_err());
        assert!(ringbuf_reserve("e", 8, Reg::R2, "full").is_err());
        assert!(ringbuf_output("e", -8, 16).is_err());
    }
}
