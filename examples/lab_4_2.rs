//! Lab 4.2 — how long files stay open (tutorial/ch04-helpers.md): `sys_exit_openat` stores a
//! timestamp under tgid << 32 | fd, `sys_enter_close` counts the time open in a log2 histogram of
//! microseconds; the lab holds a file open about 1, 10 and 100 ms, three times each.
//!
//! Run as root: `cargo run --example lab_4_2`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{map_lookup, tgid_filter};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 4.2") {
        return Ok(());
    }
    let me = std::process::id();
    let ret = TracepointFormat::read("syscalls", "sys_exit_openat")?.offset_of("ret")?;
    let fd = TracepointFormat::read("syscalls", "sys_enter_close")?.offset_of("fd")?;
    let start = Map::create(&MapSpec::new("open_since", MapType::Hash, 8, 8, 1024))?;
    let hist = Map::create(&MapSpec::new("open_usecs", MapType::Array, 4, 8, 32))?;
    let on_open = bpf_asm! {
        r6 = *(u64 *)(r1 + {ret})           // long ret: the new fd, or -errno
        {tgid_filter(me, "out")?}
        if r6 s< 0 goto out                 // the open failed: nothing to time
        call bpf_get_current_pid_tgid
        r0 >>= 32
        r0 <<= 32
        r0 |= r6                            // tgid << 32 | fd
        *(u64 *)(r10 - 8) = r0
        call bpf_ktime_get_ns
        *(u64 *)(r10 - 16) = r0
        r1 = map[open_since] ll
        r2 = r10
        r2 += -8
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    };
    let on_close = bpf_asm! {
        r6 = *(u64 *)(r1 + {fd})            // unsigned int fd, in an 8-byte slot
        w6 = w6
        {tgid_filter(me, "out")?}
        call bpf_get_current_pid_tgid
        r0 >>= 32
        r0 <<= 32
        r0 |= r6
        *(u64 *)(r10 - 8) = r0
        {map_lookup("open_since", -8, "out")?}   // not opened while we watched
        r7 = *(u64 *)(r0 + 0)
        r1 = map[open_since] ll
        r2 = r10
        r2 += -8
        call bpf_map_delete_elem
        call bpf_ktime_get_ns
        r0 -= r7
        r0 /= 1000                          // microseconds open
        r5 = 0                              // r5 = log2(r0)
    halve:
        if r0 <= 1 goto counted
        r0 >>= 1
        r5 += 1
        goto halve
    counted:
        *(u32 *)(r10 - 12) = w5
        {map_lookup("open_usecs", -12, "out")?}
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 0
        exit
    };
    let maps = [&start, &hist];
    let on_open = Program::load(&on_open.assemble()?, &maps, &LoadOptions::new("open_start", ProgType::Tracepoint))?;
    let on_close = Program::load(&on_close.assemble()?, &maps, &LoadOptions::new("close_delta", ProgType::Tracepoint))?;

    let file = tempfile::NamedTempFile::new()?;
    let bucket = |d: Duration| 63 - (d.as_micros().max(1) as u64).leading_zeros() as usize;
    // close first: attaching reads the tracepoint's id from tracefs, an open and a close of its
    // own, which must not be timed.
    let links = [on_close.attach_tracepoint("syscalls", "sys_enter_close")?, on_open.attach_tracepoint("syscalls", "sys_exit_openat")?];
    // For each file: the buckets its time must fall between. The kernel's interval lies between
    // the moment open() returned and the moment close() was called (at least), and between the
    // calls' starts and ends (at most).
    let mut bounds = Vec::new();
    for ms in [1, 10, 100] {
        for _ in 0..3 {
            let before_open = Instant::now();
            let f = std::fs::File::open(file.path())?;
            let opened = Instant::now();
            std::thread::sleep(Duration::from_millis(ms));
            let closing = Instant::now();
            drop(f);
            bounds.push((bucket(closing - opened), bucket(before_open.elapsed())));
        }
    }
    drop(links);

    let counts: Vec<u64> = (0..32u32).map(|i| hist.typed::<u32, u64>()?.get(&i).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
    let (first, last) = (counts.iter().position(|&n| n > 0).unwrap_or(0), counts.iter().rposition(|&n| n > 0).unwrap_or(0));
    println!("{:>17} : count", "usecs");
    for (b, &n) in counts.iter().enumerate().take(last + 1).skip(first) {
        let range = format!("{} -> {}", 1u64 << b, (1u64 << (b + 1)) - 1);
        println!("{}", format!("{range:>17} : {n:<5} {}", "*".repeat(n as usize * 10)).trim_end());
    }
    assert_eq!(counts.iter().sum::<u64>(), 9, "every open/close pair measured once");
    for (b, &n) in counts.iter().enumerate() {
        let surely = bounds.iter().filter(|&&(lo, hi)| lo == b && hi == b).count() as u64;
        let maybe = bounds.iter().filter(|&&(lo, hi)| lo <= b && b <= hi).count() as u64;
        assert!(surely <= n && n <= maybe, "bucket {b}: {n} counts, expected {surely}..={maybe} from {bounds:?}");
    }
    Ok(())
}
