//! Lab 6.1 — a system call monitor (tutorial/ch06-tracepoints.md): one program on
//! `raw_syscalls:sys_enter` counts every system call of the machine by number, and counts again,
//! apart, the calls of the process and user a filter map names. The lab runs a Python child as
//! `nobody` that makes 300 `getppid`, 200 `sched_yield` and 100 `umask` calls, and checks the
//! filtered counts are exactly those; names come from the `syscalls` crate.
//!
//! Run as root: `cargo run --example lab_6_1`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{counter_increment, map_lookup};
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use syscalls::Sysno;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 6.1") {
        return Ok(());
    }
    const NR_MAX: u32 = 512; // x86-64's numbers end below 512
    const ANY_UID: u32 = u32::MAX;
    let id = TracepointFormat::read("raw_syscalls", "sys_enter")?.offset_of("id")?;
    let all = Map::create(&MapSpec::new("all_calls", MapType::Array, 4, 8, NR_MAX))?;
    let filtered = Map::create(&MapSpec::new("filtered_calls", MapType::Array, 4, 8, NR_MAX))?;
    // The filter: key 0 holds {tgid, uid}; tgid 0 and uid ANY_UID match everything.
    let filter = Map::create(&MapSpec::new("filter", MapType::Array, 4, 8, 1))?;
    let set_filter = |tgid: u32, uid: u32| filter.typed::<u32, [u32; 2]>()?.insert(&0, &[tgid, uid], UpdateFlags::Any);
    set_filter(u32::MAX, 0)?; // matches no process until the child is known
    let prog = bpf_asm! {
        r6 = *(u64 *)(r1 + {id})            // long id: the system call's number
        if r6 >= {NR_MAX as i32} goto out          // unsigned: -1 (no syscall) is skipped too
        *(u32 *)(r10 - 4) = w6
        {counter_increment("all_calls", -4, -16)?}
        *(u32 *)(r10 - 8) = 0
        {map_lookup("filter", -8, "out")?}
        r7 = r0                             // {tgid, uid}; r7 survives the calls below
        r8 = *(u32 *)(r7 + 0)
        if r8 == 0 goto check_uid           // any process
        call bpf_get_current_pid_tgid
        r0 >>= 32
        if r0 != r8 goto out
    check_uid:
        r8 = *(u32 *)(r7 + 4)
        if w8 == {ANY_UID as i32} goto count    // a 32-bit compare: -1 is 0xffffffff
        call bpf_get_current_uid_gid
        w0 = w0                             // the uid is the low half
        if r0 != r8 goto out
    count:
        {counter_increment("filtered_calls", -4, -16)?}
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&all, &filtered, &filter], &LoadOptions::new("syscall_counts", ProgType::Tracepoint))?;
    let link = prog.attach_tracepoint("raw_syscalls", "sys_enter")?;

    // The child is killed and reaped if the lab fails before it ends.
    struct Reaped(Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    const NOBODY: u32 = 65534;
    let workload = "import os, sys\n\
                    sys.stdin.readline()\n\
                    for _ in range(300): os.getppid()\n\
                    for _ in range(200): os.sched_yield()\n\
                    for _ in range(100): os.umask(0o022)\n";
    let mut child = Reaped(Command::new("/usr/bin/python3").args(["-c", workload]).uid(NOBODY).gid(NOBODY).stdin(Stdio::piped()).spawn()?);
    set_filter(child.0.id(), NOBODY)?; // in the kernel from now on: the child's process, as nobody
    for _ in 0..50 {
        std::hint::black_box(std::os::unix::process::parent_id()); // getppid as root: in `all` only
    }
    child.0.stdin.take().ok_or("no stdin")?.write_all(b"go\n")?;
    assert!(child.0.wait()?.success());
    drop(link);

    let read = |m: &Map| -> Result<Vec<u64>, Box<dyn std::error::Error>> {
        Ok((0..NR_MAX).map(|nr| m.typed::<u32, u64>()?.get(&nr).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?)
    };
    let (all, filtered) = (read(&all)?, read(&filtered)?);
    let name = |nr: usize| Sysno::new(nr).map_or_else(|| format!("#{nr}"), |s| s.name().to_string());
    let top = |counts: &[u64], n: usize| {
        let mut v: Vec<(usize, u64)> = counts.iter().copied().enumerate().filter(|&(_, c)| c > 0).collect();
        v.sort_by_key(|&(nr, c)| (std::cmp::Reverse(c), nr));
        v.truncate(n);
        v
    };
    println!("system-wide, {} calls:", all.iter().sum::<u64>());
    for (nr, c) in top(&all, 8) {
        println!("  {:<16} {c:>8}", name(nr));
    }
    println!("child {} as uid {NOBODY}, {} calls:", child.0.id(), filtered.iter().sum::<u64>());
    for (nr, c) in top(&filtered, 8) {
        println!("  {:<16} {c:>8}", name(nr));
    }
    let nr = |s: Sysno| s.id() as usize;
    assert_eq!(filtered[nr(Sysno::getppid)], 300);
    assert_eq!(filtered[nr(Sysno::sched_yield)], 200);
    assert_eq!(filtered[nr(Sysno::umask)], 100);
    assert!(all[nr(Sysno::getppid)] >= 300 + 50, "the lab's own getppid calls are in `all`, not in `filtered`");
    assert!(all.iter().zip(&filtered).all(|(a, f)| a >= f), "the filtered calls are a subset of all calls");
    Ok(())
}
