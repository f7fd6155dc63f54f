//! The `core_read` pattern: follow a chain of pointers in kernel memory with CO-RE field
//! offsets and `bpf_probe_read_kernel`, as C's `BPF_CORE_READ(task, real_parent, tgid)` does.
//!
//! `core_read(R0, R6, &[Hop::new("task_struct", "real_parent"), Hop::new("task_struct", "tgid")],
//! Size::W, -8, R7)` expands to, for each hop (the source pointer in r3):
//!
//! ```text
//! r3 = r6                                          ; first hop: the source register
//! r3 = *(u64 *)(r10 - 8)                           ; later hops: the pointer just read
//! core_field_offset(r7, "task_struct", "real_parent")
//! r3 += r7
//! r1 = r10
//! r1 += -8
//! r2 = 8                                           ; the last hop reads `size` bytes
//! call bpf_probe_read_kernel
//! ```
//!
//! and finally `r0 = *(u32 *)(r10 - 8)`. On a failed read the kernel zero-fills the buffer, so
//! the result is 0. It clobbers r1–r5 and the `tmp` register.

use crate::insn::build::{add64, alu64, call_helper, ldx, mov64};
use crate::insn::{AluOp, CoreAccess, CoreKind, Insn, Program, Reg, Size};

/// `bpf_probe_read_kernel`.
const PROBE_READ_KERNEL: u32 = 113;

/// One hop: a member path inside a struct type.
#[derive(Clone, Copy, Debug)]
pub struct Hop<'a> {
    /// The struct type the hop reads from (`task_struct`; flavors allowed).
    pub type_name: &'a str,
    /// The member path in it whose CO-RE offset is added (`real_parent`, `a.b`).
    pub path: &'a str,
}

impl<'a> Hop<'a> {
    /// A hop through `path` of `type_name`.
    pub fn new(type_name: &'a str, path: &'a str) -> Hop<'a> {
        Hop { type_name, path }
    }
}

pub use super::patterns::PatternError;

/// Read `src->hop[0]->…->hop[n-1]` (`size` bytes of the last field, zero-extended) into `dst`.
/// `scratch` is a negative, 8-byte-aligned stack offset with 8 free bytes; `tmp` holds the
/// relocated offsets and must not be r1–r5 or r10.
pub fn core_read(dst: Reg, src: Reg, hops: &[Hop<'_>], size: Size, scratch: i16, tmp: Reg) -> Result<Program, PatternError> {
    let bad = |m: &str| super::patterns::invalid("core_read", m);
    if hops.is_empty() {
        return bad("at least one hop is needed");
    }
    if matches!(tmp, Reg::R1 | Reg::R2 | Reg::R3 | Reg::R4 | Reg::R5 | Reg::R10) || tmp == src {
        return bad("tmp must not be r1-r5, r10 or the source register (helper calls clobber r1-r5)");
    }
    if dst == Reg::R10 {
        return bad("the destination cannot be r10");
    }
    if scratch > -8 || scratch % 8 != 0 || scratch < -512 {
        return bad("scratch must be a negative multiple of 8 within the 512-byte stack");
    }
    let mut p = Program::new();
    for (i, hop) in hops.iter().enumerate() {
        let last = i + 1 == hops.len();
        if i == 0 {
            p.push(mov64(Reg::R3, src));
        } else {
            p.push(ldx(Size::DW, Reg::R3, Reg::R10, scratch));
        }
        let access = CoreAccess { kind: CoreKind::FieldOffset, type_name: hop.type_name.to_string(), path: hop.path.to_string() };
        p.push(Insn::Core { dst: tmp, access });
        p.push(add64(Reg::R3, tmp));
        p.push(mov64(Reg::R1, Reg::R10));
        p.push(add64(Reg::R1, scratch as i32));
        p.push(mov64(Reg::R2, if last { size.bytes() as i32 } else { 8 }));
        p.push(call_helper(PROBE_READ_KERNEL));
    }
    p.push(ldx(size, dst, Reg::R10, scratch));
    Ok(p)
}

/// The instructions that read `path` ([`Btf::access_path`](crate::core_btf::Btf::access_path),
/// e.g. `task_struct->mm->arg_start`) from the pointer in `src` into `dst`: [`core_read`] with
/// one hop per `->` and the final field's size. A signed field of fewer than 8 bytes is
/// sign-extended, as C's read of it would be.
pub fn core_read_path(dst: Reg, src: Reg, path: &crate::core_btf::AccessPath, scratch: i16, tmp: Reg) -> Result<Program, PatternError> {
    let size = match path.size {
        1 => Size::B,
        2 => Size::H,
        4 => Size::W,
        8 => Size::DW,
        n => return super::patterns::invalid("core_read_path", format!("{}: a {n}-byte field cannot be read by one load", path.expr)),
    };
    let hops: Vec<Hop<'_>> = path.hops.iter().map(|h| Hop::new(&h.type_name, &h.path)).collect();
    let mut p = core_read(dst, src, &hops, size, scratch, tmp)?;
    if path.signed && size != Size::DW {
        // The load zero-extended. Shifts rather than a sign-extending load (cpu v4, kernels
        // from 6.6): the program must load on older kernels too — that is CO-RE's point.
        let shift = 64 - 8 * size.bytes() as i32;
        p.push(alu64(AluOp::Lsh, dst, shift));
        p.push(alu64(AluOp::Arsh, dst, shift));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_id_is_the_kernels() {
        assert_eq!(crate::helpers::helper_id("bpf_probe_read_kernel"), Some(PROBE_READ_KERNEL));
    }

    #[test]
    fn expansion_is_as_documented() {
        let p = core_read(Reg::R0, Reg::R6, &[Hop::new("task_struct", "real_parent"), Hop::new("task_struct", "tgid")], Size::W, -8, Reg::R7).unwrap();
        let text = crate::insn::disassemble(p.assemble().unwrap().insns(), crate::insn::DisasmOptions::new(crate::insn::Syntax::Llvm));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 15);
        assert_eq!(lines[0], "r3 = r6");
        assert_eq!(lines[1], "core_field_offset(r7, \"task_struct\", \"real_parent\")");
        assert_eq!(lines[7], "r3 = *(u64 *)(r10 - 0x8)");
        assert_eq!(lines[14], "w0 = *(u32 *)(r10 - 0x8)");
        assert!(core_read(Reg::R0, Reg::R6, &[], Size::W, -8, Reg::R7).is_err());
        assert!(core_read(Reg::R0, Reg::R6, &[Hop::new("a", "b")], Size::W, -8, Reg::R2).is_err());
        assert!(core_read(Reg::R0, Reg::R6, &[Hop::new("a", "b")], Size::W, -4, Reg::R7).is_err());
    }
}
