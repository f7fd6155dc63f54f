//! Lab 1.2 — system information (tutorial/ch01-introduction.md): the architecture, the kernel
//! and what bpfkit detects, beside a program on `raw_syscalls:sys_enter` that counts every
//! system call entry by process id and call number; the lab's own 1000 getppid calls are
//! counted exactly.
//!
//! Run as root: `cargo run --example lab_1_2`. The same code is a doctest of the chapter.

use std::time::Duration;
use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::features::Features;
use bpfkit::helpers::patterns::counter_increment;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 1.2") {
        return Ok(());
    }
    // The machine and the kernel, as bpfkit sees them.
    let features = Features::global();
    let sys = features.system();
    println!("architecture   {}", std::env::consts::ARCH);
    println!("kernel         {}", sys.release.as_deref().unwrap_or("unknown"));
    println!("BTF            {}", if sys.btf_vmlinux { "yes" } else { "no" });
    println!("possible CPUs  {}", bpfkit::os::possible_cpus()?);
    let progs: Vec<String> = ProgType::ALL.iter().filter(|t| features.prog_type(**t).is_ok_and(|v| v.is_supported())).map(|t| t.to_string()).collect();
    let maps: Vec<String> = MapType::ALL.iter().filter(|t| features.map_type(**t).is_ok_and(|v| v.is_supported())).map(|t| t.to_string()).collect();
    println!("program types  {} of {}: {}", progs.len(), ProgType::ALL.len(), progs.join(" "));
    println!("map types      {} of {}: {}", maps.len(), MapType::ALL.len(), maps.join(" "));
    assert!(progs.iter().any(|p| p == "tracepoint") && maps.iter().any(|m| m == "hash"));

    // The kernel side: count every system call entry by (tgid, system call number).
    let nr = TracepointFormat::read("raw_syscalls", "sys_enter")?.offset_of("id")?;
    let calls = Map::create(&MapSpec::new("calls", MapType::Hash, 8, 8, 16384))?;
    let prog = bpf_asm! {
        r6 = r1                         // the tracepoint's record
        call bpf_get_current_pid_tgid   // tgid << 32 | thread id
        r0 >>= 32
        *(u32 *)(r10 - 8) = w0          // key[0]: the process (thread group) id
        r1 = *(u64 *)(r6 + {nr})
        *(u32 *)(r10 - 4) = w1          // key[1]: the system call number
        {counter_increment("calls", -8, -16)?}
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&calls], &LoadOptions::new("sys_enter_pids", ProgType::Tracepoint))?;
    let ppid = std::os::unix::process::parent_id(); // before attaching: not counted
    let link = prog.attach_tracepoint("raw_syscalls", "sys_enter")?;
    for _ in 0..1000 {
        assert_eq!(std::os::unix::process::parent_id(), ppid); // one getppid(2) each
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(link);

    // Per process: all its calls, and its getppid calls.
    let me = std::process::id();
    let getppid = libc::SYS_getppid as u32;
    let mut per_process = std::collections::BTreeMap::<u32, u64>::new();
    let mut my_getppid = 0;
    for entry in calls.typed::<[u32; 2], u64>()?.iter() {
        let ([tgid, call], n) = entry?;
        *per_process.entry(tgid).or_default() += n;
        if tgid == me && call == getppid {
            my_getppid = n;
        }
    }
    let mut busiest: Vec<(u32, u64)> = per_process.into_iter().collect();
    busiest.sort_by_key(|&(tgid, n)| (std::cmp::Reverse(n), tgid));
    println!("system calls while attached, by process ({} processes):", busiest.len());
    println!("{:>8}  {:<16} {:>7}", "pid", "command", "calls");
    for &(tgid, n) in busiest.iter().take(5) {
        let comm = std::fs::read_to_string(format!("/proc/{tgid}/comm")).unwrap_or_else(|_| "(exited)".into());
        println!("{tgid:>8}  {:<16} {n:>7}", comm.trim());
    }
    println!("this process ({me}): getppid is system call {getppid} on {}; counted {my_getppid}", std::env::consts::ARCH);
    assert_eq!(my_getppid, 1000, "every getppid this process made, and no other");
    assert!(busiest.iter().any(|&(tgid, n)| tgid == me && n > 1000), "and its other calls (the sleep, at least)");
    Ok(())
}
