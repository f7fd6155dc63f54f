//! Lab 12.2 — zero-copy event collection (tutorial/ch12-performance.md): one producer thread
//! makes `getppid` calls at a fixed rate; a program on `syscalls:sys_enter_getppid` sends a
//! 64-byte event per call through a perf buffer or a ring buffer (reserve/submit, three wake-up
//! policies); a consumer thread on the other CPU reads them. Events per second, drops, the
//! consumer's CPU time and wake-ups (getrusage), the program's cost per event (BPF stats), and
//! seen + dropped = produced, exactly.
//!
//! Run as root: `cargo run --example lab_12_2`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::events::{PerfBuffer, Poller, RingBuf};
use bpfkit::helpers::patterns::{counter_increment, map_lookup, tgid_filter};
use bpfkit::insn::Program as Insns;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Keep the calling thread on one CPU.
fn pin_to(cpu: u32) -> std::io::Result<()> {
    let mut set = unsafe { std::mem::zeroed::<libc::cpu_set_t>() };
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    match unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// This thread's CPU time (user + system) and voluntary context switches — each one a time it
/// blocked in epoll_wait and was woken — from getrusage(RUSAGE_THREAD).
fn thread_usage() -> (Duration, u64) {
    let mut u = unsafe { std::mem::zeroed::<libc::rusage>() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(u.ru_utime) + tv(u.ru_stime), u.ru_nvcsw as u64)
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64 // bpf_ktime_get_ns's clock
}

/// What the consumer saw: sequence numbers and delivery latencies (ns).
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    latency: Vec<u64>,
}

impl Seen {
    fn record(&mut self, raw: &[u8]) {
        let field = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        self.seqs.push(field(0));
        self.latency.push(monotonic_ns().saturating_sub(field(1)));
    }
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 12.2") {
        return Ok(());
    }
    const RATE: u64 = 50_000; // events offered per second
    const EVENTS: u64 = 25_000; // per run: half a second at RATE
    const RECORD: i32 = 64; // bytes per event: seq, timestamp, 48 bytes of payload
    const BUFFER: u32 = 256 * 1024; // bytes of buffer, in total, for both kinds
    let cpus = bpfkit::os::online_cpus()?;
    let (producer_cpu, consumer_cpu) = (cpus[0], *cpus.last().unwrap_or(&cpus[0]));
    let pid = std::process::id();
    let _stats = Program::enable_stats()?; // the program's own time per event

    let mut table = Vec::new();
    for mode in ["perf buffer", "ring, wake every event", "ring, default wake-up", "ring, wake every 1 ms"] {
        let counts = Map::create(&MapSpec::new("counts", MapType::Array, 4, 8, 2))?; // [produced, dropped]
        let woke = Map::create(&MapSpec::new("woke", MapType::Array, 4, 8, 1))?; // the last forced wake-up
        let perf = Map::create(&MapSpec::new("perf", MapType::PerfEventArray, 4, 4, bpfkit::os::possible_cpus()? as u32))?;
        let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, BUFFER))?;
        // r6 = this event's sequence number (counts[0] before the add): the events produced.
        let head = bpf_asm! {
            r9 = r1
            {tgid_filter(pid, "out")?}
            *(u32 *)(r10 - 4) = 0
            {map_lookup("counts", -4, "out")?}
            r6 = 1
            r6 = atomic_fetch_add((u64 *)(r0 + 0), r6)
            call bpf_ktime_get_ns
            r7 = r0
        };
        // The submit flags (r8) for the ring buffer, by policy.
        let flags = match mode {
            "ring, wake every event" => bpf_asm! { r8 = 2 },   // BPF_RB_FORCE_WAKEUP
            "ring, default wake-up" => bpf_asm! { r8 = 0 },    // wake only a reader that caught up
            _ => bpf_asm! {
                r8 = 1                                          // BPF_RB_NO_WAKEUP …
                *(u32 *)(r10 - 4) = 0
                {map_lookup("woke", -4, "flags_done")?}
                r1 = *(u64 *)(r0 + 0)
                r2 = r7
                r2 -= r1
                if r2 < 1000000 goto flags_done
                *(u64 *)(r0 + 0) = r7                           // … unless 1 ms has passed
                r8 = 2
            flags_done:
            },
        };
        let send: Insns = if mode == "perf buffer" {
            bpf_asm! {
                *(u64 *)(r10 - 64) = r6         // the record, built on the stack, then copied
                *(u64 *)(r10 - 56) = r7
                r1 = 0
                *(u64 *)(r10 - 48) = r1
                *(u64 *)(r10 - 40) = r1
                *(u64 *)(r10 - 32) = r1
                *(u64 *)(r10 - 24) = r1
                *(u64 *)(r10 - 16) = r1
                *(u64 *)(r10 - 8) = r1
                r1 = r9
                r2 = map[perf] ll
                r3 = 0xffffffff ll              // BPF_F_CURRENT_CPU
                r4 = r10
                r4 += -64
                r5 = {RECORD}
                call bpf_perf_event_output
                if r0 != 0 goto dropped
                goto out
            }
        } else {
            bpf_asm! {
                {flags}
                r1 = map[ring] ll
                r2 = {RECORD}
                r3 = 0
                call bpf_ringbuf_reserve
                if r0 == 0 goto dropped
                *(u64 *)(r0 + 0) = r6           // written in place, in the ring itself
                *(u64 *)(r0 + 8) = r7
                r1 = r0
                r2 = r8
                call bpf_ringbuf_submit
                goto out
            }
        };
        let mut prog = head;
        prog.extend(send);
        prog.extend(bpf_asm! {
        dropped:
            *(u32 *)(r10 - 4) = 1
            {counter_increment("counts", -4, -16)?}
        out:
            r0 = 0
            exit
        });
        let prog = Program::load(&prog.assemble()?, &[&counts, &woke, &perf, &ring], &LoadOptions::new("events", ProgType::Tracepoint))?;

        // Perf: BUFFER split between the CPUs (32 pages each here); records are copied out.
        // Ring: one Poller (one epoll instance for the whole run); records are read in place.
        let mut perf_reader = if mode == "perf buffer" { Some(PerfBuffer::new(&perf, (BUFFER as usize / 4096 / cpus.len()).next_power_of_two())?) } else { None };
        let mut ring_reader = if mode == "perf buffer" { None } else { Some(Poller::new()?) };
        if let Some(p) = ring_reader.as_mut() {
            p.add(RingBuf::new(&ring)?)?;
        }
        let stop = AtomicBool::new(false);
        let link = prog.attach_tracepoint("syscalls", "sys_enter_getppid")?;
        let (calls, elapsed, (seen, cpu, wakeups)) = std::thread::scope(|s| -> Result<_, Error> {
            let consumer = s.spawn(|| -> Result<(Seen, Duration, u64), Error> {
                pin_to(consumer_cpu)?;
                let mut seen = Seen::default();
                let start = thread_usage();
                loop {
                    let stopping = stop.load(Ordering::Acquire); // then one last drain
                    let timeout = Some(Duration::from_millis(10));
                    match (&mut perf_reader, &mut ring_reader) {
                        (Some(perf), _) => perf.poll(timeout, |_, raw| seen.record(raw))?,
                        (_, Some(ring)) => ring.poll(timeout, |_, raw| seen.record(raw))?,
                        _ => unreachable!(),
                    };
                    if stopping {
                        break;
                    }
                }
                let end = thread_usage();
                Ok((seen, end.0 - start.0, end.1 - start.1))
            });
            // The producer: RATE calls per second, in slices of 100 µs.
            pin_to(producer_cpu)?;
            let start = Instant::now();
            let mut calls = 0u64;
            while calls < EVENTS {
                let due = (start.elapsed().as_nanos() as u64 * RATE / 1_000_000_000).min(EVENTS);
                while calls < due {
                    std::hint::black_box(std::os::unix::process::parent_id());
                    calls += 1;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            let elapsed = start.elapsed();
            std::thread::sleep(Duration::from_millis(20)); // let the last batch be woken for
            stop.store(true, Ordering::Release);
            Ok((calls, elapsed, consumer.join().expect("the consumer panicked")?))
        })?;
        drop(link);
        let c = counts.typed::<u32, u64>()?;
        let (produced, dropped) = (c.get(&0)?.unwrap_or(0), c.get(&1)?.unwrap_or(0));
        let stats = prog.info()?.stats;
        let mut latency = seen.latency.clone();
        latency.sort_unstable();
        let p50 = latency.get(latency.len() / 2).copied().unwrap_or(0);
        let p99 = latency.get(latency.len() * 99 / 100).copied().unwrap_or(0);
        let row = (mode, produced as f64 / elapsed.as_secs_f64(), seen.seqs.len() as u64, dropped, cpu, wakeups, stats.run_time_ns / stats.run_count.max(1), p50, p99);
        table.push(row);

        assert_eq!(produced, calls, "{mode}: one event per getppid call");
        assert_eq!(seen.seqs.len() as u64 + dropped, produced, "{mode}: seen + dropped = produced");
        let mut seqs = seen.seqs;
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len() as u64, produced - dropped, "{mode}: no event seen twice");
        assert!(seqs.last().is_none_or(|&s| s < produced));
    }
    println!("{:<24} {:>9} {:>8} {:>7} {:>12} {:>8} {:>10} {:>14}", "mode", "events/s", "seen", "dropped", "consumer CPU", "wakeups", "program", "latency p50/99");
    for (mode, rate, seen, dropped, cpu, wakeups, ns, p50, p99) in &table {
        println!(
            "{mode:<24} {rate:>9.0} {seen:>8} {dropped:>7} {:>9.1} ms {wakeups:>8} {:>7} ns {:>7.0}/{:.0} µs",
            cpu.as_secs_f64() * 1e3,
            ns,
            *p50 as f64 / 1e3,
            *p99 as f64 / 1e3
        );
    }
    let row = |mode: &str| table.iter().find(|r| r.0 == mode).copied().ok_or("no such mode");
    let (batched, every) = (row("ring, wake every 1 ms")?, row("ring, wake every event")?);
    assert!(batched.5 * 10 < EVENTS, "batched: many events per wake-up");
    assert!(batched.6 < every.6, "a wake-up costs the program that asks for it");
    Ok(())
}
