//! Instruction patterns: the sequences eBPF programs keep writing (map lookups with a null
//! check, counters, probe reads into the stack, process info, timestamps, filters, sampling, ring buffers, spin locks,
//! loops, packet parsing, checksums), as builders returning a [`Program`] fragment.
//!
//! Every pattern is parameterised by registers, stack offsets, map names and labels; its module
//! documents the exact instructions it expands to and what it clobbers (a helper call clobbers
//! r0–r5). Labels a pattern defines inside itself are named `__bpfkit_p<N>_<what>`, with `N` from
//! a process-wide counter, so two instances — or an instance and the user's own labels — never
//! collide. Fragments compose with [`Program::extend`], or inside `bpf_asm!` as a statement
//! consisting only of `{fragment}`.
//!
//! Context field offsets and program return codes come from the running kernel's BTF
//! ([`ctx`]), not from constants copied out of headers.

pub mod ctx;
pub mod loops;
pub mod maps;
pub mod packet;
pub mod probe;
pub mod process;
pub mod ringbuf;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::insn::build::{add64, call_helper, mov64};
use crate::insn::{Program, Reg};

pub use ctx::{ctx_field, return_code, tc_action, xdp_action};
pub use loops::{bounded_loop, bpf_loop, zero_stack, WithSubprog};
pub use maps::{counter_add, counter_increment, map_lookup, spin_locked_add};
pub use packet::{ipv4_checksum, ipv4_l4_checksum, parse_ports, PacketCtx, PacketInfo, L4_CHECKSUM_MAX_LEN};
pub use probe::{probe_arg, probe_read, probe_read_str, probe_ret, Space};
pub use process::{process_info, sample_one_in, tgid_filter, tid_filter, timestamp_delta, timestamp_store, uid_filter, ProcInfo};
pub use ringbuf::{ringbuf_emit, ringbuf_fill_from_stack, ringbuf_output, ringbuf_reserve, ringbuf_submit};

/// Why a pattern's parameters are unusable, or what it needed from the kernel's BTF.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatternError {
    /// A parameter is out of range or conflicts with the registers the pattern uses.
    #[error("{pattern}: {reason}")]
    Invalid {
        /// The pattern's name.
        pattern: &'static str,
        /// What is out of range or conflicts.
        reason: String,
    },
    /// vmlinux BTF lacks what the pattern looks up (or could not be read).
    #[error("{pattern}: {reason}")]
    Btf {
        /// The pattern's name.
        pattern: &'static str,
        /// What is missing, or why the BTF could not be read.
        reason: String,
    },
}

pub(crate) fn invalid<T>(pattern: &'static str, reason: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError::Invalid { pattern, reason: reason.into() })
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Label names for one pattern instance: `__bpfkit_p<N>_<what>`, `N` unique in the process.
pub(crate) struct Labels(u64);

impl Labels {
    pub(crate) fn fresh() -> Labels {
        Labels(INSTANCE.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn name(&self, what: &str) -> String {
        format!("__bpfkit_p{}_{what}", self.0)
    }
}

/// A helper's id by name; every name a pattern uses is in the generated table (unit-tested).
pub(crate) fn helper(name: &str) -> u32 {
    crate::helpers::helper_id(name).unwrap_or_else(|| panic!("helper {name} missing from the generated table"))
}

/// `call <name>`.
pub(crate) fn call(name: &str) -> crate::insn::Insn {
    call_helper(helper(name))
}

/// `reg = r10; reg += off`: a pointer to a stack slot.
pub(crate) fn stack_ptr(p: &mut Program, reg: Reg, off: i16) {
    p.push(mov64(reg, Reg::R10));
    p.push(add64(reg, off as i32));
}

/// Check that `[off, off + len)` lies within the 512-byte stack, `off` aligned to `align`.
pub(crate) fn check_stack(pattern: &'static str, what: &str, off: i16, len: usize, align: i16) -> Result<(), PatternError> {
    let end = off as i64 + len as i64;
    if off >= 0 || (off as i64) < -512 || end > 0 || len == 0 {
        return invalid(pattern, format!("{what} at r10{off:+} ({len} bytes) is not within the 512-byte stack below r10"));
    }
    if off % align != 0 {
        return invalid(pattern, format!("{what} at r10{off:+} is not {align}-byte aligned"));
    }
    Ok(())
}

/// Check that `reg` is callee-saved (r6–r9): it must survive helper calls.
pub(crate) fn check_callee_saved(pattern: &'static str, what: &str, reg: Reg) -> Result<(), PatternError> {
    if matches!(reg, Reg::R6 | Reg::R7 | Reg::R8 | Reg::R9) {
        Ok(())
    } else {
        invalid(pattern, format!("{what} must be one of r6-r9 (helper calls clobber r0-r5), not {reg:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_helper_a_pattern_calls_is_in_the_table() {
        for name in [
            "bpf_map_lookup_elem", "bpf_map_update_elem", "bpf_map_delete_elem", "bpf_get_current_pid_tgid",
            "bpf_get_current_uid_gid", "bpf_get_current_comm", "bpf_ktime_get_ns", "bpf_get_prandom_u32",
            "bpf_ringbuf_reserve", "bpf_ringbuf_submit", "bpf_ringbuf_output", "bpf_spin_lock", "bpf_spin_unlock",
            "bpf_loop", "bpf_csum_diff",
        ] {
            assert!(crate::helpers::helper_id(name).is_some(), "{name}");
        }
    }

    #[test]
    fn labels_are_unique_per_instance() {
        let (a, b) = (Labels::fresh(), Labels::fresh());
        assert_ne!(a.name("miss"), b.name("miss"));
        assert!(a.name("miss").starts_with("__bpfkit_p"));
    }

    #[test]
    fn stack_ranges_are_checked() {
        assert!(check_stack("t", "x", -8, 8, 8).is_ok());
        assert!(check_stack("t", "x", -8, 16, 8).is_err());
        assert!(check_stack("t", "x", -520, 8, 8).is_err());
        assert!(check_stack("t", "x", -12, 8, 8).is_err());
        assert!(check_stack("t", "x", 0, 8, 1).is_err());
    }
}

crate::error::errno_from_sources!(PatternError);
