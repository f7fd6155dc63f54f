//! Lab 2.1 — process creations per UID (tutorial/ch02-maps.md): counts `execve`s of this
//! process's children per UID with a tracepoint program, after starting 3 as root and 5 as nobody.
//!
//! Run as root: `cargo run --example lab_2_1`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::os::unix::process::CommandExt;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 2.1") {
        return Ok(());
    }
    let me = std::process::id() as i32;
    let execs = Map::create(&MapSpec::new("execs_by_uid", MapType::Hash, 4, 8, 1024))?;
    let mut prog = bpf_asm! {
        call bpf_get_current_task
        r6 = r0
    };
    // r8 = current->real_parent->tgid
    let parent_tgid = [Hop::new("task_struct", "real_parent"), Hop::new("task_struct", "tgid")];
    prog.extend(core_read(Reg::R8, Reg::R6, &parent_tgid, Size::W, -16, Reg::R7)?);
    prog.extend(bpf_asm! {
        if r8 != {me} goto out          // not one of our children
        call bpf_get_current_uid_gid    // gid << 32 | uid
        *(u32 *)(r10 - 4) = w0          // key: the uid
        r1 = map[execs_by_uid] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto first
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        goto out
    first:
        *(u64 *)(r10 - 16) = 1          // value: 1
        r1 = map[execs_by_uid] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 1                          // BPF_NOEXIST
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    });
    let prog = Program::load(&prog.assemble()?, &[&execs], &LoadOptions::new("execs_by_uid", ProgType::Tracepoint))?;
    let link = prog.attach_tracepoint("sched", "sched_process_exec")?;
    let spawned = [(0u32, 3), (65534, 5)]; // root, nobody
    for (uid, n) in spawned {
        for _ in 0..n {
            // An absolute path: no $PATH search, so exactly one execve per child.
            let status = std::process::Command::new("/usr/bin/true").uid(uid).status()?;
            assert!(status.success());
        }
    }
    drop(link);
    let mut top: Vec<(u32, u64)> = execs.typed::<u32, u64>()?.iter().collect::<Result<_, _>>()?;
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("{:>8}  processes", "UID");
    for (uid, count) in &top {
        println!("{uid:>8}  {count}");
    }
    assert_eq!(top, [(65534, 5), (0, 3)], "every exec seen, under the right user");
    Ok(())
}
