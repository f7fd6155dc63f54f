//! Current-task patterns: process info into a stack struct, timestamps and deltas keyed by
//! thread id, tgid/tid/uid filters, and 1-in-N sampling.
//!
//! `process_info(-32)` fills a [`ProcInfo`] at r10-32:
//!
//! ```text
//! call bpf_get_current_pid_tgid
//! *(u32 *)(r10 - 28) = r0          ; tid: the low half
//! r0 >>= 32
//! *(u32 *)(r10 - 32) = r0          ; tgid (what user space calls the pid)
//! call bpf_get_current_uid_gid
//! *(u32 *)(r10 - 24) = r0          ; uid
//! r0 >>= 32
//! *(u32 *)(r10 - 20) = r0          ; gid
//! r1 = r10
//! r1 += -16
//! r2 = 16
//! call bpf_get_current_comm        ; comm, NUL-padded
//! ```
//!
//! `timestamp_store("start", -8, -16)`: `call bpf_get_current_pid_tgid; *(u32 *)(r10 - 8) = r0;
//! call bpf_ktime_get_ns; *(u64 *)(r10 - 16) = r0; r1 = map[start] ll; r2 = r10; r2 += -8;
//! r3 = r10; r3 += -16; r4 = 0; call bpf_map_update_elem`.
//!
//! `timestamp_delta("start", -8, R6, "none")`:
//!
//! ```text
//! call bpf_ktime_get_ns
//! r6 = r0                          ; now
//! call bpf_get_current_pid_tgid
//! *(u32 *)(r10 - 8) = r0
//! <map_lookup("start", -8, none)>
//! r1 = *(u64 *)(r0 + 0)
//! r6 -= r1                         ; now - start
//! r1 = map[start] ll; r2 = r10; r2 += -8
//! call bpf_map_delete_elem
//! ```
//!
//! Filters jump away unless the task matches: `tgid_filter(1234, "skip")` is
//! `call bpf_get_current_pid_tgid; r0 >>= 32; if w0 != 1234 goto skip`; `tid_filter` skips the
//! shift; `uid_filter(0, "skip")` is `call bpf_get_current_uid_gid; if w0 != 0 goto skip`.
//! `sample_one_in(10, "skip")` is `call bpf_get_prandom_u32; w0 %= 10; if w0 != 0 goto skip`.
//!
//! All clobber r0–r5.

use super::maps::map_lookup;
use super::{call, check_callee_saved, check_stack, invalid, stack_ptr, PatternError};
use crate::insn::build::{alu32, alu64, jmp32_if, ld_map, ldx, mov64, stx};
use crate::insn::{AluOp, JmpCond, Program, Reg, Size};

/// The struct [`process_info`] writes (32 bytes, native endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id (thread group id): the high 32 bits of `bpf_get_current_pid_tgid`.
    pub tgid: u32,
    /// Thread id: the low 32 bits of `bpf_get_current_pid_tgid`.
    pub tid: u32,
    /// User id: the low 32 bits of `bpf_get_current_uid_gid`.
    pub uid: u32,
    /// Group id: the high 32 bits of `bpf_get_current_uid_gid`.
    pub gid: u32,
    /// The task's command name from `bpf_get_current_comm`, NUL-padded.
    pub comm: [u8; 16],
}

impl ProcInfo {
    /// Its size on the stack.
    pub const SIZE: usize = 32;
    /// Byte offset of `tgid` in the struct (for `stx`/`ldx` off the stack slot).
    pub const TGID: i16 = 0;
    /// Byte offset of `tid` in the struct.
    pub const TID: i16 = 4;
    /// Byte offset of `uid` in the struct.
    pub const UID: i16 = 8;
    /// Byte offset of `gid` in the struct.
    pub const GID: i16 = 12;
    /// Byte offset of `comm` in the struct.
    pub const COMM: i16 = 16;

    /// Decode the bytes a program copied out (`None` if fewer than 32).
    pub fn from_bytes(b: &[u8]) -> Option<ProcInfo> {
        let u = |o: usize| Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?));
        Some(ProcInfo { tgid: u(0)?, tid: u(4)?, uid: u(8)?, gid: u(12)?, comm: b.get(16..32)?.try_into().ok()? })
    }

    /// `comm` up to its first NUL.
    pub fn comm_str(&self) -> String {
        let end = self.comm.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// Fill a [`ProcInfo`] at `r10 + off` (8-aligned, 32 bytes).
pub fn process_info(off: i16) -> Result<Program, PatternError> {
    check_stack("process_info", "the struct", off, ProcInfo::SIZE, 8)?;
    let mut p = Program::new();
    p.push(call("bpf_get_current_pid_tgid"));
    p.push(stx(Size::W, Reg::R10, off + ProcInfo::TID, Reg::R0));
    p.push(alu64(AluOp::Rsh, Reg::R0, 32));
    p.push(stx(Size::W, Reg::R10, off + ProcInfo::TGID, Reg::R0));
    p.push(call("bpf_get_current_uid_gid"));
    p.push(stx(Size::W, Reg::R10, off + ProcInfo::UID, Reg::R0));
    p.push(alu64(AluOp::Rsh, Reg::R0, 32));
    p.push(stx(Size::W, Reg::R10, off + ProcInfo::GID, Reg::R0));
    stack_ptr(&mut p, Reg::R1, off + ProcInfo::COMM);
    p.push(mov64(Reg::R2, 16));
    p.push(call("bpf_get_current_comm"));
    Ok(p)
}

fn pid_tgid_into_key(p: &mut Program, key_off: i16) {
    p.push(call("bpf_get_current_pid_tgid"));
    p.push(stx(Size::W, Reg::R10, key_off, Reg::R0));
}

/// Store `bpf_ktime_get_ns()` in `map` (a hash, `u32` key, `u64` value) under the current
/// thread id. `key_off` (4 bytes) and `val_off` (8 bytes) are stack scratch.
pub fn timestamp_store(map: &str, key_off: i16, val_off: i16) -> Result<Program, PatternError> {
    check_stack("timestamp_store", "the key", key_off, 4, 4)?;
    check_stack("timestamp_store", "the value", val_off, 8, 8)?;
    if map.is_empty() {
        return invalid("timestamp_store", "the map name is empty");
    }
    let mut p = Program::new();
    pid_tgid_into_key(&mut p, key_off);
    p.push(call("bpf_ktime_get_ns"));
    p.push(stx(Size::DW, Reg::R10, val_off, Reg::R0));
    p.push(ld_map(Reg::R1, map));
    stack_ptr(&mut p, Reg::R2, key_off);
    stack_ptr(&mut p, Reg::R3, val_off);
    p.push(mov64(Reg::R4, 0));
    p.push(call("bpf_map_update_elem"));
    Ok(p)
}

/// `dst = now - start`, where `start` is what [`timestamp_store`] stored for this thread; the
/// entry is then deleted. Jumps to `on_missing` (with `dst` = now) if there is none. `dst` must
/// be r6–r9.
pub fn timestamp_delta(map: &str, key_off: i16, dst: Reg, on_missing: &str) -> Result<Program, PatternError> {
    check_callee_saved("timestamp_delta", "the destination", dst)?;
    check_stack("timestamp_delta", "the key", key_off, 4, 4)?;
    let mut p = Program::new();
    p.push(call("bpf_ktime_get_ns"));
    p.push(mov64(dst, Reg::R0));
    pid_tgid_into_key(&mut p, key_off);
    p.extend(map_lookup(map, key_off, on_missing)?);
    p.push(ldx(Size::DW, Reg::R1, Reg::R0, 0));
    p.push(alu64(AluOp::Sub, dst, Reg::R1));
    p.push(ld_map(Reg::R1, map));
    stack_ptr(&mut p, Reg::R2, key_off);
    p.push(call("bpf_map_delete_elem"));
    Ok(p)
}

/// Jump to `skip` unless the current process (thread group) id is `tgid`.
pub fn tgid_filter(tgid: u32, skip: &str) -> Result<Program, PatternError> {
    let mut p = Program::new();
    p.push(call("bpf_get_current_pid_tgid"));
    p.push(alu64(AluOp::Rsh, Reg::R0, 32));
    p.push(jmp32_if(JmpCond::Ne, Reg::R0, tgid as i32, skip));
    Ok(p)
}

/// Jump to `skip` unless the current thread id is `tid`.
pub fn tid_filter(tid: u32, skip: &str) -> Result<Program, PatternError> {
    let mut p = Program::new();
    p.push(call("bpf_get_current_pid_tgid"));
    p.push(jmp32_if(JmpCond::Ne, Reg::R0, tid as i32, skip));
    Ok(p)
}

/// Jump to `skip` unless the current uid is `uid`.
pub fn uid_filter(uid: u32, skip: &str) -> Result<Program, PatternError> {
    let mut p = Program::new();
    p.push(call("bpf_get_current_uid_gid"));
    p.push(jmp32_if(JmpCond::Ne, Reg::R0, uid as i32, skip));
    Ok(p)
}

/// Fall through once in `n` runs on average (uniformly at random); otherwise jump to `skip`.
pub fn sample_one_in(n: u32, skip: &str) -> Result<Program, PatternError> {
    if n == 0 || n > i32::MAX as u32 {
        return invalid("sample_one_in", format!("n must be within 1..=2^31-1, not {n}"));
    }
    let mut p = Program::new();
    p.push(call("bpf_get_prandom_u32"));
    p.push(alu32(AluOp::Mod, Reg::R0, n as i32));
    p.push(jmp32_if(JmpCond::Ne, Reg::R0, 0, skip));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        assert!(process_info(-24).is_err());
        assert!(process_info(-36).is_err());
        assert!(process_info(-32).is_ok());
        assert!(sample_one_in(0, "s").is_err());
        assert!(timestamp_delta("m", -8, Reg::R1, "x").is_err());
        assert!(timestamp_store("m", -8, -12).is_err());
    }

    #[test]
    fn proc_info_decodes() {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&7u32.to_ne_bytes());
        b[16..19].copy_from_slice(b"abc");
        let i = ProcInfo::from_bytes(&b).unwrap();
        assert_eq!((i.tgid, i.comm_str().as_str()), (7, "abc"));
        assert!(ProcInfo::from_bytes(&b[..31]).is_none());
    }
}
