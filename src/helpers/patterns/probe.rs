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

/// `dst = ` integer argument `n` (0-based) of the function a kprobe or uprobe stopped at: a
/// load from the `pt_regs` the program's context register `ctx` points to. On x86-64 the
/// first six arguments are in di, si, dx, cx, r8, r9 (the System V calling convention); their
/// offsets in `pt_regs` come from vmlinux BTF, so nothing is hard-coded. Only valid at the
/// entry: by the return the registers hold other things.
pub fn probe_arg(dst: Reg, ctx: Reg, n: usize) -> Result<Program, PatternError> {
    let Some(reg) = crate::attach::uprobe::arg_reg(n) else {
        return invalid("probe_arg", format!("argument {n}: only the first 6 are passed in registers (the rest are on the stack)"));
    };
    pt_regs_load("probe_arg", dst, ctx, reg)
}

/// `dst = ` the return value at a kretprobe or uretprobe (`ax` on x86-64).
pub fn probe_ret(dst: Reg, ctx: Reg) -> Result<Program, PatternError> {
    pt_regs_load("probe_ret", dst, ctx, crate::attach::uprobe::RET_REG)
}

fn pt_regs_load(pattern: &'static str, dst: Reg, ctx: Reg, member: &str) -> Result<Program, PatternError> {
    if dst == Reg::R10 || ctx == Reg::R10 {
        return invalid(pattern, "r10 is the read-only frame pointer");
    }
    let off = match crate::attach::uprobe::pt_regs_offset(member) {
        Ok(off) => off,
        Err(e) => return invalid(pattern, format!("pt_regs.{member}: {e}")),
    };
    let mut p = Program::new();
    p.push(crate::insn::build::ldx(crate::insn::Size::DW, dst, ctx, off));
    Ok(p)
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

    #[test]
    fn arguments_are_pt_regs_loads() {
        // r6 = *(u64 *)(r1 + offsetof(struct pt_regs, si)): argument 1 on x86-64.
        let si = crate::attach::uprobe::pt_regs_offset("si").unwrap();
        let p = probe_arg(Reg::R6, Reg::R1, 1).unwrap();
        assert_eq!(p.insns().collect::<Vec<_>>(), [&crate::insn::build::ldx(crate::insn::Size::DW, Reg::R6, Reg::R1, si)]);
        assert!(probe_arg(Reg::R6, Reg::R1, 6).is_err(), "the seventh is on the stack");
        assert!(probe_ret(Reg::R10, Reg::R1).is_err());
    }
}
