//! Lab 3.2 — capturing a system call's argument (tutorial/ch03-instructions.md): a tracepoint
//! program on `syscalls:sys_enter_openat` copies each filename this process opens (its offset read
//! from the tracepoint's tracefs format file) into a ring buffer; the lab opens three unique paths
//! and checks that exactly those names came through.
//!
//! Run as root: `cargo run --example lab_3_2`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::{probe_read_str, ringbuf_output, tgid_filter, zero_stack, Space};
use bpfkit::insn::Reg;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 3.2") {
        return Ok(());
    }
    const PATH_MAX: usize = 256;
    const RECORD: usize = 8 + PATH_MAX; // {u32 pid, u32 len, char path[256]}
    let me = std::process::id();
    let format = TracepointFormat::read("syscalls", "sys_enter_openat")?;
    let filename = format.offset_of("filename")?;
    println!("sys_enter_openat: filename pointer at offset {filename}");

    let events = Map::create(&MapSpec::new("opens", MapType::RingBuf, 0, 0, 64 * 1024))?;
    let rec = -(RECORD as i16); // the record's stack offset
    let prog = bpf_asm! {
        r9 = r1                         // the context: r1 is clobbered by the first call
        {tgid_filter(me, "out")?}
        r6 = *(u64 *)(r9 + {filename})  // const char *filename, a user-space pointer
        {zero_stack(rec, RECORD)?}
        call bpf_get_current_pid_tgid
        r0 >>= 32
        *(u32 *)(r10 + {rec}) = w0      // pid: the thread group id
        {probe_read_str(Space::User, rec + 8, PATH_MAX as u32, Reg::R6)?}
        if r0 s< 0 goto out             // an unreadable pointer: no record
        *(u32 *)(r10 + {rec + 4}) = w0  // len, with the NUL
        {ringbuf_output("opens", rec, RECORD)?}
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&events], &LoadOptions::new("openat_names", ProgType::Tracepoint))?;
    let mut ring = RingBuf::new(&events)?;
    let link = prog.attach_tracepoint("syscalls", "sys_enter_openat")?;
    let opened: Vec<String> = (1..=3).map(|n| format!("/tmp/bpfkit-lab32-{me}-{n}")).collect();
    for path in &opened {
        let _ = std::fs::File::open(path); // ENOENT is fine: openat was entered
    }
    drop(link);

    let mut seen = Vec::new();
    ring.poll(Some(Duration::from_secs(1)), |r| {
        let pid = u32::from_ne_bytes(r[0..4].try_into().unwrap());
        let len = u32::from_ne_bytes(r[4..8].try_into().unwrap()) as usize;
        let path = String::from_utf8_lossy(&r[8..8 + len.saturating_sub(1)]).into_owned();
        seen.push((pid, path));
    })?;
    println!("{:>8}  path", "pid");
    for (pid, path) in &seen {
        println!("{pid:>8}  {path}");
    }
    let ours: Vec<&String> = seen.iter().filter(|(_, p)| p.starts_with("/tmp/bpfkit-lab32-")).map(|(_, p)| p).collect();
    assert_eq!(ours, opened.iter().collect::<Vec<_>>(), "each name, exactly, in order");
    assert!(seen.iter().all(|&(pid, _)| pid == me), "the kernel saw this process open them");
    Ok(())
}
