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

/// `current->real_parent->tgid` through two `core_field_offset` relocations and
/// `bpf_probe_read_kernel`, written to `out[0]` when the current thread is `tid` (for a
/// tracepoint the thread triggers). The same program relocates against any kernel's BTF.
pub fn parent_tgid_through_core(tid: i32) -> Program {
    bpf_asm! {
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto done
        call bpf_get_current_task
        r6 = r0
        core_field_offset(r7, "task_struct", "real_parent")
        r6 += r7
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = r6
        call bpf_probe_read_kernel
        r6 = *(u64 *)(r10 - 8)
        core_field_offset(r7, "task_struct", "tgid")
        r6 += r7
        r1 = r10
        r1 += -16
        r2 = 4
        r3 = r6
        call bpf_probe_read_kernel
        *(u32 *)(r10 - 20) = 0
        r1 = map[out] ll
        r2 = r10
        r2 += -20
        call bpf_map_lookup_elem
        if r0 == 0 goto done
        r1 = *(u32 *)(r10 - 16)
        *(u64 *)(r0 + 0) = r1
    done:
        r0 = 0
        exit
    }
}
