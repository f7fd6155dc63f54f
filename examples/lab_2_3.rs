//! Lab 2.3 — stack traces on scheduler events (tutorial/ch02-maps.md): kernel stacks of this
//! process's context switches, counted by stack id and symbolized.
//!
//! Run as root: `cargo run --example lab_2_3`. The same code is a doctest of the chapter.

use std::time::Duration;
use bpfkit::bpf_asm;
use bpfkit::events::{stack_ips, Symbolizer};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 2.3") {
        return Ok(());
    }
    let me = std::process::id() as i32;
    // Stack id → up to 127 return addresses of 8 bytes.
    let stacks = Map::create(&MapSpec::new("stacks", MapType::StackTrace, 4, 127 * 8, 1024))?;
    let counts = Map::create(&MapSpec::new("stack_counts", MapType::Hash, 4, 8, 1024))?;
    let prog = bpf_asm! {
        r6 = r1                         // the context, for bpf_get_stackid
        call bpf_get_current_pid_tgid   // tgid << 32 | tid
        r0 >>= 32
        if r0 != {me} goto out          // another process is being switched out
        r1 = r6
        r2 = map[stacks] ll
        r3 = 0                          // the kernel stack
        call bpf_get_stackid
        if r0 s< 0 goto out
        *(u32 *)(r10 - 4) = w0
        r1 = map[stack_counts] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto first
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        goto out
    first:
        *(u64 *)(r10 - 16) = 1
        r1 = map[stack_counts] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&stacks, &counts], &LoadOptions::new("switch_stacks", ProgType::Tracepoint))?;
    let link = prog.attach_tracepoint("sched", "sched_switch")?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(link);

    let mut by_count: Vec<(u32, u64)> = counts.typed::<u32, u64>()?.iter().collect::<Result<_, _>>()?;
    by_count.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let total: u64 = by_count.iter().map(|(_, n)| n).sum();
    println!("{total} switches, {} distinct kernel stacks", by_count.len());
    let (top_id, top_count) = by_count[0];
    let frames = Symbolizer::new().kernel(&stack_ips(&stacks, top_id)?)?;
    println!("most frequent ({top_count} times):");
    for frame in &frames {
        println!("  {frame}");
    }
    assert!(total >= 50, "each sleep switched us out at least once");
    let names: Vec<&str> = frames.iter().filter_map(|f| f.symbol.as_deref()).collect();
    assert!(names.iter().any(|s| s.contains("schedule")), "the scheduler is on the stack: {names:?}");
    assert!(names.iter().any(|s| s.contains("nanosleep")), "and the sleep that called it: {names:?}");
    Ok(())
}
