//! Probe reads into the stack: copy bytes or a NUL-terminated string from a kernel or user
//! pointer held in a register to a stack buffer, with the size bounded by the buffer.
//!
//! `probe_read(Space::User, -64, 16, Reg::R6)` expands to
//!
//! ```text
//! r3 = r6                 ; the source pointer (moved first: r1/r2 are overwritten next)
//! r1 = r10
//! r1 += -64               ; the destination on the stack
//! r2 = 16                 ; bytes to copy
//! call bpf_probe_read_user
//! ```
//!
//! `probe_read_str` is the same with `bpf_probe_read_{user,kernel}_str` and a maximum length
//! (including the NUL). Afterwards r0 is 0 (bytes) or the string's length including its NUL, or
//! a negative errno; on failure the kernel zero-fills the buffer. Clobbers r0–r5.

use super::{invalid, PatternError};
use crate::insn::build::{add64, call_helper, mov64};
use crate::insn::{Program, Reg};

/// Which address space the pointer lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Kernel memory: read with `bpf_probe_read_kernel(_str)`.
    Kernel,
    /// User memory: read with `bpf_probe_read_user(_str)`.
    User,
}

fn helper(pattern: &'static str, name: &str) -> Result<u32, PatternError> {
    match crate::helpers::helper_id(name) {
        Some(id) => Ok(id),
        None => invalid(pattern, format!("this kernel's helper table has no {name}")),
    }
}

fn read(pattern: &'static str, helper_name: &str, dst_off: i16, len: u32, src: Reg) -> Result<Program, PatternError> {
    if src == Reg::R10 {
        return invalid(pattern, "the source cannot be r10 (use a stack copy instead)");
    }
    if len == 0 || dst_off >= 0 || (dst_off as i32) < -512 || dst_off as i32 + len as i32 > 0 {
        return invalid(pattern, format!("{len} bytes at r10{dst_off} do not fit the 512-byte stack below r10"));
    }
    let id = helper(pattern, helper_name)?;
    let mut p = Program::new();
    p.push(mov64(Reg::R3, src));
    p.push(mov64(Reg::R1, Reg::R10));
    p.push(add64(Reg::R1, dst_off as i32));
    p.push(mov64(Reg::R2, len as i32));
    p.push(call_helper(id));
    Ok(p)
}

/// Copy `len` bytes from the pointer in `src` to the stack at `r10 + dst_off`.
pub fn probe_read(space: Space, dst_off: i16, len: u32, src: Reg) -> Result<Program, PatternError> {
    let name = match space {
        Space::Kernel => "bpf_probe_read_kernel",
        Space::User => "bpf_probe_read_user",
    };
    read("probe_read", name, dst_off, len, src)
}

/// Copy a NUL-terminated string of at most `max` bytes (with its NUL) from the pointer in
/// `src` to the stack at `r10 + dst_off`; r0 = its length including the NUL.
pub fn probe_read_str(space: Space, dst_off: i16, max: u32, src: Reg) -> Result<Program, PatternError> {
    let name = match space {
        Space::Kernel => "bpf_probe_read_kernel_str",
        Space::User => "bpf_probe_read_user_str",
    };
    read("probe_read_str", name, dst_off, max, src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked() {
        assert!(probe_read(Space::User, -64, 64, Reg::R6).is_ok());
        assert!(probe_read(Space::User, -64, 65, Reg::R6).is_err(), "past r10");
        assert!(probe_read(Space::User, -520, 8, Reg::R6).is_err(), "below the stack");
        assert!(probe_read_str(Space::Kernel, -8, 8, Reg::R10).is_err());
        assert_eq!(probe_read(Space::User, -16, 16, Reg::R6).unwrap().insns().count(), 5);
    }
}
