//! Instruction fragments the kernel tests share, built from the library's own patterns.

use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::counter_increment;
use bpfkit::insn::Program;

/// `map[0] += 1` (u32 key 0, u64 value; created if missing), falling through. Uses r0–r5 and
/// the stack at r10-4 (the key) and r10-16 (scratch).
pub fn count_hit(map: &str) -> Program {
    let mut p = bpf_asm! { *(u32 *)(r10 - 4) = 0 };
    p.extend(counter_increment(map, -4, -16).expect("a valid counter pattern"));
    p
}

/// [`count_hit`], then `return verdict`.
pub fn count_and_return(map: &str, verdict: i32) -> Program {
    let mut p = count_hit(map);
    p.extend(bpf_asm! {
        r0 = {verdict}
        exit
    });
    p
}
