//! Helper functions: every id of the kernel's `enum bpf_func_id` by name ([`ids`], generated
//! from vmlinux BTF by `scripts/gen-helper-ids.sh`), looked up by the grammar (`call bpf_map_lookup_elem`)
//! and the disassembler. Signatures and instruction patterns build on this table; the first
//! pattern is [`core_read`] (CO-RE pointer chains read with `bpf_probe_read_kernel`).

pub mod core_read;
pub mod patterns;
pub mod ids;
mod helper;
mod prototypes;

pub use helper::{all, by_id, by_name, ArgKind, Helper, HelperSig, Param, RetKind};
pub use prototypes::SIGNATURES;

pub use crate::insn::grammar::{helper_id, helper_name};
