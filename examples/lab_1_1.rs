//! Lab 1.1 — hello, eBPF (tutorial/ch01-introduction.md): a tracepoint program on
//! `syscalls:sys_enter_execve` writes "Hello eBPF" to the trace pipe and counts the execs of
//! this process's children; the lab starts three and reads the three lines back.
//!
//! Run as root: `cargo run --example lab_1_1`. The same code is a doctest of the chapter.

use std::time::{Duration, Instant};
use bpfkit::bpf_asm;
use bpfkit::events::TracePipe;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 1.1") {
        return Ok(());
    }
    let me = std::process::id() as i32;
    let execs = Map::create(&MapSpec::new("execs", MapType::Array, 4, 8, 1))?;
    let hello = bpf_asm! {
        // r6 = current->real_parent->tgid, read with bpf_probe_read_kernel at CO-RE offsets
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
        r1 += -8
        r2 = 4
        r3 = r6
        call bpf_probe_read_kernel
        r1 = *(u32 *)(r10 - 8)
        if r1 != {me} goto out          // not our child
        // bpf_trace_printk("Hello eBPF\n"): the format lives on the stack
        r1 = 0x4265206f6c6c6548 ll      // "Hello eB", little-endian
        *(u64 *)(r10 - 16) = r1
        *(u32 *)(r10 - 8) = 0x000a4650  // "PF\n\0"
        r1 = r10
        r1 += -16
        r2 = 12
        call bpf_trace_printk
        // execs[0] += 1
        *(u32 *)(r10 - 4) = 0
        r1 = map[execs] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&hello.assemble()?, &[&execs], &LoadOptions::new("hello", ProgType::Tracepoint))?;
    let mut pipe = TracePipe::open()?;
    let link = prog.attach_tracepoint("syscalls", "sys_enter_execve")?;
    // An absolute path: given a bare name, the child would try `execve` in every $PATH directory
    // until one works — and each attempt is a system call the tracepoint sees.
    for _ in 0..3 {
        std::process::Command::new("/usr/bin/true").status()?;
    }
    // The trace pipe: wait until our three lines have arrived (or give up after 5 s).
    let mut hellos = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while hellos.len() < 3 && Instant::now() < deadline {
        hellos.extend(pipe.read_lines(Duration::from_millis(200))?.into_iter().filter(|l| l.contains("Hello eBPF")));
    }
    drop(link); // detached: later execs are not seen
    std::process::Command::new("/usr/bin/true").status()?;
    for line in &hellos {
        println!("{line}");
    }
    assert_eq!(hellos.len(), 3, "one line per execve of our children");
    assert_eq!(execs.typed::<u32, u64>()?.get(&0)?, Some(3));
    Ok(())
}
