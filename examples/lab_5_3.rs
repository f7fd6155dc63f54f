//! Lab 5.3 — mutex contention (tutorial/ch05-kprobes.md). The contention is the lab's own: four
//! threads write 4 KiB chunks into one pipe while a fifth reads them, and every `write(2)` and
//! `read(2)` on a pipe takes the pipe's `mutex` (in `pipe_write`/`pipe_read`, renamed
//! `anon_pipe_write`/`anon_pipe_read` in 6.15). Two variants measure the waits, aggregated by
//! mutex address and by kernel stack:
//!
//! * kprobes: `mutex_lock` entry and return — every acquisition, contended or not;
//! * the `lock:contention_begin`/`contention_end` tracepoints — only the contended ones, from
//!   inside the slow path — where the kernel has them (decided by probing).
//!
//! The same aggregation program serves both (it reads nothing from its context). Run as root:
//! `cargo run --example lab_5_3`; on a kernel without kprobes the first variant shows bpfkit's
//! error; the 6.1 guest (`scripts/kernel2/run.sh`) runs both. The same code is a doctest.

use bpfkit::attach::kprobe::{kernel_function, KprobeTarget};
use bpfkit::attach::{Link, ProbeError, TracepointFormat};
use bpfkit::bpf_asm;
use bpfkit::events::{stack_ips, Symbolizer};
use bpfkit::helpers::patterns::{map_lookup, probe_arg, tgid_filter};
use bpfkit::insn::{MapRef, Program as Insns, Reg};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::io::{Read, Write};

type Error = Box<dyn std::error::Error + Send + Sync>;
const WRITERS: usize = 4;
const ROUNDS: usize = 400;
const CHUNK: usize = 64 * 1024; // copied with the pipe's mutex held: the longer, the more contention
const LCB_F_MUTEX: i32 = 1 << 5; // contention_begin's flags: the lock is a mutex (include/trace/events/lock.h)

/// The maps both variants fill: a wait in progress per thread, and the totals.
struct Maps {
    waiting: Map,  // tid -> {u64 start_ns; u64 lock; u64 stack_id}
    by_lock: Map,  // lock address -> {u64 count; u64 wait_ns}
    by_stack: Map, // kernel stack id -> {u64 count; u64 wait_ns}
    stacks: Map,
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 5.3") {
        return Ok(());
    }
    let mut variants = 0;
    // ---- Variant 1: kprobe + kretprobe on mutex_lock(struct mutex *lock) ----
    let maps = Maps::new()?;
    match attach_kprobes(&maps) {
        Ok(links) => {
            let (writes, reads) = contend()?;
            drop(links);
            let (on_pipe, all) = report("mutex_lock entry -> return (every acquisition)", &maps)?;
            // Each pipe write or read takes the pipe's mutex at least once.
            assert!(on_pipe >= (writes + reads) as u64, "{on_pipe} of {all} acquisitions in pipe code for {writes} writes and {reads} reads");
            variants += 1;
        }
        Err(e) if matches!(e.downcast_ref(), Some(ProbeError::NoProbeSupport { .. })) => {
            assert!(kernel_function("register_kprobe")?.is_none(), "bpfkit says no kprobes, yet register_kprobe exists");
            println!("kprobe variant: {e}\n(and /proc/kallsyms has no register_kprobe: this kernel was built without CONFIG_KPROBES)\n");
        }
        Err(e) => return Err(e),
    }
    // ---- Variant 2: lock:contention_begin -> lock:contention_end ----
    match TracepointFormat::read("lock", "contention_begin") {
        Ok(format) => {
            let maps = Maps::new()?;
            let links = attach_tracepoints(&maps, format.offset_of("lock_addr")?, format.offset_of("flags")?)?;
            // Contention needs two of our threads on CPUs at once: on a machine busy with other
            // work that can take more than one round (at most 10).
            for _round in 0..10 {
                contend()?;
                if maps.by_lock.typed::<u64, [u64; 2]>()?.iter().next().is_some() {
                    break;
                }
            }
            drop(links);
            let (on_pipe, all) = report("lock:contention_begin -> contention_end (contended mutexes only)", &maps)?;
            assert!(on_pipe > 0, "four writers and a reader on one pipe never contended ({all} other waits)");
            variants += 1;
        }
        Err(e) => println!("tracepoint variant: {e}"),
    }
    assert!(variants >= 1, "neither kprobes nor the lock:contention_* tracepoints on this kernel");
    Ok(())
}

impl Maps {
    fn new() -> Result<Maps, Error> {
        let hash = |name: &str, key: u32, value: u32| Map::create(&MapSpec::new(name, MapType::Hash, key, value, 4096));
        Ok(Maps {
            waiting: hash("waiting", 4, 24)?,
            by_lock: hash("by_lock", 8, 16)?,
            by_stack: hash("by_stack", 8, 16)?,
            stacks: Map::create(&MapSpec::new("stacks", MapType::StackTrace, 4, 127 * 8, 4096))?,
        })
    }

    /// Where a wait starts (the lock's address in r6, the context in r1): remember when, which
    /// lock and from where, for this thread. Only this process's threads.
    fn wait_begins(&self, name: &str, prog_type: ProgType, lock_addr: Insns) -> Result<Program, Error> {
        let mut p = bpf_asm! { r9 = r1 };
        p.extend(lock_addr);
        p.extend(bpf_asm! {
            {tgid_filter(std::process::id(), "out")?}
            r1 = r9
            r2 = map[stacks] ll
            r3 = 0                          // the kernel stack
            call bpf_get_stackid
            *(u64 *)(r10 - 8) = r0          // stack id (or a negative errno)
            *(u64 *)(r10 - 16) = r6         // the lock
            call bpf_ktime_get_ns
            *(u64 *)(r10 - 24) = r0         // start
            call bpf_get_current_pid_tgid
            *(u32 *)(r10 - 28) = w0         // key: the thread
            r1 = map[waiting] ll
            r2 = r10
            r2 += -28
            r3 = r10
            r3 += -24
            r4 = 0
            call bpf_map_update_elem
        out:
            r0 = 0
            exit
        });
        Ok(Program::load(&p.assemble()?, &[&self.stacks, &self.waiting], &LoadOptions::new(name, prog_type))?)
    }

    /// Where the wait ends: add it to the lock's and the stack's totals. Reads nothing from its
    /// context, so one instruction list serves a kretprobe and a tracepoint alike.
    fn wait_ends(&self, name: &str, prog_type: ProgType) -> Result<Program, Error> {
        let mut p = bpf_asm! {
            call bpf_get_current_pid_tgid
            *(u32 *)(r10 - 4) = w0
            {map_lookup("waiting", -4, "out")?}
            r6 = r0
            call bpf_ktime_get_ns
            r1 = *(u64 *)(r6 + 0)
            r0 -= r1
            r7 = r0                         // the wait, in ns
            r1 = *(u64 *)(r6 + 8)
            *(u64 *)(r10 - 16) = r1         // key: the lock
            r1 = *(u64 *)(r6 + 16)
            *(u64 *)(r10 - 24) = r1         // key: the stack id
            r1 = map[waiting] ll
            r2 = r10
            r2 += -4
            call bpf_map_delete_elem
        };
        p.extend(add_wait("by_lock", -16, "lock_done")?);
        p.extend(bpf_asm! {
        lock_done:
            r1 = *(u64 *)(r10 - 24)
            if r1 s< 0 goto out             // no stack (bpf_get_stackid failed)
        });
        p.extend(add_wait("by_stack", -24, "out")?);
        p.extend(bpf_asm! {
        out:
            r0 = 0
            exit
        });
        let maps = [&self.waiting, &self.by_lock, &self.by_stack];
        Ok(Program::load(&p.assemble()?, &maps, &LoadOptions::new(name, prog_type))?)
    }
}

/// `map[key at r10+key_off] += {1, r7}`: the entry is created at zero first if missing (an
/// update with BPF_NOEXIST fails harmlessly when it exists), then found and added to atomically.
fn add_wait(map: &str, key_off: i16, on_miss: &str) -> Result<Insns, Error> {
    let mut p = bpf_asm! {
        *(u64 *)(r10 - 40) = 0
        *(u64 *)(r10 - 32) = 0
        r1 = map[{MapRef::Name(map.into())}] ll
        r2 = r10
        r2 += {key_off as i32}
        r3 = r10
        r3 += -40
        r4 = 1                          // BPF_NOEXIST
        call bpf_map_update_elem
    };
    p.extend(map_lookup(map, key_off, on_miss)?);
    p.extend(bpf_asm! {
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1     // count
        lock *(u64 *)(r0 + 8) += r7     // wait_ns
    });
    Ok(p)
}

fn attach_kprobes(maps: &Maps) -> Result<Vec<Link>, Error> {
    let begin = maps.wait_begins("mutex_in", ProgType::Kprobe, probe_arg(Reg::R6, Reg::R1, 0)?)?;
    let end = maps.wait_ends("mutex_out", ProgType::Kprobe)?;
    Ok(vec![
        end.attach_kprobe(&KprobeTarget::function("mutex_lock").retprobe())?,
        begin.attach_kprobe(&KprobeTarget::function("mutex_lock"))?,
    ])
}

fn attach_tracepoints(maps: &Maps, lock_addr: i16, flags: i16) -> Result<Vec<Link>, Error> {
    let mutex_only = bpf_asm! {
        r6 = *(u64 *)(r1 + {lock_addr})
        r2 = *(u32 *)(r1 + {flags})
        r2 &= {LCB_F_MUTEX}
        if r2 == 0 goto out             // an rwsem, spinlock, …: not what this lab is about
    };
    let begin = maps.wait_begins("contention_in", ProgType::Tracepoint, mutex_only)?;
    let end = maps.wait_ends("contention_out", ProgType::Tracepoint)?;
    Ok(vec![end.attach_tracepoint("lock", "contention_end")?, begin.attach_tracepoint("lock", "contention_begin")?])
}

/// Four writers and a reader on one pipe; returns how many write and read calls they made.
fn contend() -> Result<(usize, usize), Error> {
    let (mut rx, tx) = std::io::pipe()?;
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let mut tx = tx.try_clone()?;
            Ok(std::thread::spawn(move || -> std::io::Result<usize> {
                let (chunk, mut calls) = (vec![0x5a; CHUNK], 0);
                for _ in 0..ROUNDS {
                    let mut rest = &chunk[..];
                    while !rest.is_empty() {
                        rest = &rest[tx.write(rest)?..]; // one write(2) per call
                        calls += 1;
                    }
                }
                Ok(calls)
            }))
        })
        .collect::<std::io::Result<_>>()?;
    drop(tx);
    let (mut reads, mut bytes, mut buf) = (0, 0, vec![0u8; CHUNK]);
    loop {
        let n = rx.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reads += 1;
        bytes += n;
    }
    let writes: usize = writers.into_iter().map(|w| w.join().expect("writer thread")).sum::<std::io::Result<usize>>()?;
    assert_eq!(bytes, WRITERS * ROUNDS * CHUNK);
    Ok((writes, reads + 1)) // and the read that saw EOF
}

/// The totals by lock and by stack, largest wait first; returns how many of the waits were on
/// stacks through the pipe's code (pipe_write/pipe_read, or anon_pipe_* since 6.15), and all.
fn report(title: &str, maps: &Maps) -> Result<(u64, u64), Error> {
    let totals = |m: &Map| -> Result<Vec<(u64, u64, u64)>, Error> {
        let mut v: Vec<(u64, u64, u64)> = m
            .typed::<u64, [u64; 2]>()?
            .iter()
            .map(|e| e.map(|(k, [count, ns])| (k, count, ns)))
            .collect::<Result<_, _>>()?;
        v.sort_by_key(|&(_, count, ns)| std::cmp::Reverse((ns, count)));
        Ok(v)
    };
    let (locks, stacks) = (totals(&maps.by_lock)?, totals(&maps.by_stack)?);
    println!("{title}\n  {:<20} {:>8} {:>12} {:>10}", "mutex", "count", "wait µs", "avg ns");
    for &(lock, count, ns) in locks.iter().take(3) {
        println!("  {lock:<#20x} {count:>8} {:>12.1} {:>10}", ns as f64 / 1e3, ns / count.max(1));
    }
    let symbolizer = Symbolizer::new();
    let (mut on_pipe, mut all) = (0, 0);
    for (rank, &(id, count, ns)) in stacks.iter().enumerate() {
        let frames = symbolizer.kernel(&stack_ips(&maps.stacks, id as u32)?)?;
        let names: Vec<String> = frames.iter().filter_map(|f| f.symbol.clone()).take(5).collect();
        if rank < 2 {
            println!("  stack {id}: {count} times, {:.1} µs\n    {}", ns as f64 / 1e3, names.join(" <- "));
        }
        if names.iter().any(|n| n.contains("pipe_write") || n.contains("pipe_read")) {
            on_pipe += count;
        }
        all += count;
    }
    println!("  {on_pipe} of {all} on stacks through the pipe's code\n");
    Ok((on_pipe, all))
}
