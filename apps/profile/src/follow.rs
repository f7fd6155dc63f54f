//! Following a command's children: a `tp_btf` program on `sched_process_fork` adds every new
//! *process* forked by a profiled one to `targets`, before the child runs, so `-- make` profiles
//! the compilers make starts. New threads need nothing: the filter is by process (tgid), and a
//! thread shares its process's.
//!
//! The tracepoint fires in the parent, with the child's `task_struct` as its second argument;
//! the child's `pid` and `tgid` are read with CO-RE, and only a child that leads a new process
//! (`pid == tgid`) is added.

use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{Program as Insns, Reg, Size};
use bpfkit::prog::Program;

use crate::kernel::{filter_target, Error, StackMaps};

/// The fork program.
pub fn program() -> Result<Insns, Error> {
    let mut p = bpf_asm! {
        r6 = r1                                 // u64 args[]: parent, child
        call bpf_get_current_pid_tgid
        r7 = r0
        r7 >>= 32                               // the parent's process
    };
    p.extend(filter_target("out"));
    p.extend(bpf_asm! { r9 = *(u64 *)(r6 + 8) });
    p.extend(core_read(
        Reg::R8,
        Reg::R9,
        &[Hop::new("task_struct", "tgid")],
        Size::W,
        -8,
        Reg::R0,
    )?);
    p.extend(core_read(
        Reg::R7,
        Reg::R9,
        &[Hop::new("task_struct", "pid")],
        Size::W,
        -16,
        Reg::R0,
    )?);
    p.extend(bpf_asm! {
        if r7 != r8 goto out                    // a new thread, not a new process
        *(u32 *)(r10 - 20) = w8
        *(u8 *)(r10 - 24) = 1
        r1 = map[targets] ll
        r2 = r10
        r2 += -20
        r3 = r10
        r3 += -24
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// The program loaded and attached.
pub fn attach(maps: &StackMaps) -> Result<(Program, Link), Error> {
    let opts = bpfkit::attach::tp_btf_options("profile_follow", "sched_process_fork")?;
    let prog = Program::load(&program()?.assemble()?, &maps.all(), &opts)?;
    let link = prog.attach_btf()?;
    Ok((prog, link))
}
