//! Lab 12.3 — adaptive sampling (tutorial/ch12-performance.md): a program on
//! `syscalls:sys_enter_getppid` counts every call of this process and does expensive work for
//! one call in N, N read from a map; a controller reads the program's own run time
//! (BPF_ENABLE_STATS) ten times a second and sets N to hold the program at a target overhead
//! while a load thread raises and lowers the call rate in steps. The sampled counts, scaled by
//! N, must agree with the unsampled count within a tolerance the statistics give.
//!
//! Run as root: `cargo run --example lab_12_3`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{bpf_loop, map_lookup, tgid_filter};
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What one step of the load showed.
struct Step {
    /// Calls per second the load thread made.
    load: u64,
    /// Settled overhead: the median of the second half of the ticks, ns/s.
    overhead: f64,
    /// The estimate minus the true count, and the estimate's standard deviation.
    error: f64,
    sigma: f64,
    /// Every tick's overhead, ms/s.
    trace: Vec<f64>,
    /// ns per call in the first tick (of the first step: N = 1, every call instrumented).
    full: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 12.3") {
        return Ok(());
    }
    const TARGET: f64 = 10e6; // program time per second of wall time: 10 ms/s, 1% of a CPU
    const BAND: f64 = 0.25; // settled: the median tick within ±25% of the target
    const TICK: Duration = Duration::from_millis(100);
    const STEP: Duration = Duration::from_millis(1500);
    const LOADS: [u64; 4] = [10_000, 40_000, 80_000, 20_000]; // getppid calls per second
    let pid = std::process::id();

    // counts (per CPU): [every call, sampled calls, the sum of N over the sampled calls].
    let counts = Map::create(&MapSpec::new("counts", MapType::PercpuArray, 4, 24, 1))?;
    let config = Map::create(&MapSpec::new("config", MapType::Array, 4, 8, 1))?; // N
    // The expensive part: a stand-in for what a tracer does per event (a stack walk, a string
    // copy, a record to user space): 1000 rounds of a hash mix, in a bpf_loop callback.
    let work = bpf_loop(1000, Some(-8), bpf_asm! {
        r3 = *(u64 *)(r2 + 0)
        r3 += r1
        r3 *= 0x7feb352d
        r4 = r3
        r4 >>= 15
        r3 ^= r4
        *(u64 *)(r2 + 0) = r3
        r0 = 0
        exit
    })?;
    let prog = bpf_asm! {
        {tgid_filter(pid, "out")?}
        *(u32 *)(r10 - 4) = 0
        {map_lookup("counts", -4, "out")?}
        r6 = r0                             // this CPU's counters
        r1 = *(u64 *)(r6 + 0)
        r1 += 1
        *(u64 *)(r6 + 0) = r1               // every call: the true count
        {map_lookup("config", -4, "out")?}
        r7 = *(u64 *)(r0 + 0)               // N: sample one call in N
        if r7 == 0 goto out
        call bpf_get_prandom_u32
        r0 %= r7
        if r0 != 0 goto out
        r1 = *(u64 *)(r6 + 8)
        r1 += 1
        *(u64 *)(r6 + 8) = r1               // sampled calls
        r1 = *(u64 *)(r6 + 16)
        r1 += r7
        *(u64 *)(r6 + 16) = r1              // each sample stands for N calls
        *(u64 *)(r10 - 8) = r7
        {&work.body}
    out:
        r0 = 0
        exit
        {work.subprog}
    };
    let prog = Program::load(&prog.assemble()?, &[&counts, &config], &LoadOptions::new("sampled", ProgType::Tracepoint))?;
    let set_n = |n: u64| config.update(&0u32.to_ne_bytes(), &n.to_ne_bytes(), UpdateFlags::Any);
    let read_counts = || -> Result<[u64; 3], Error> {
        let per_cpu = counts.per_cpu::<u32, [u64; 3]>()?.get(&0)?.unwrap_or_default();
        Ok(per_cpu.iter().fold([0; 3], |acc, c| [acc[0] + c[0], acc[1] + c[1], acc[2] + c[2]]))
    };
    set_n(1)?; // start with full instrumentation

    // Run-time statistics for every program while this fd lives; closing it (or exiting, or
    // crashing) turns them off again, unless another process holds them on too.
    let stats = Program::enable_stats()?;
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getppid")?;
    let rate = AtomicU64::new(0); // calls per second the load thread makes; u64::MAX stops it
    let calls = AtomicU64::new(0);
    println!("target {:.1} ms/s of program time, band ±{:.0}%", TARGET / 1e6, BAND * 100.0);
    println!("{:>9} {:>9} {:>6} {:>14} {:>8} {:>9} {:>9} {:>16}", "load/s", "events/s", "N", "overhead ms/s", "samples", "estimate", "true", "error");
    let mut steps = Vec::new();
    std::thread::scope(|s| -> Result<(), Error> {
        // The load: `rate` getppid calls per second, paced in slices of 200 µs.
        let load = s.spawn(|| {
            let (mut start, mut current, mut made) = (Instant::now(), 0, 0u64);
            loop {
                let r = rate.load(Ordering::Relaxed);
                if r == u64::MAX {
                    break;
                }
                if r != current {
                    (start, current, made) = (Instant::now(), r, 0);
                }
                let due = start.elapsed().as_nanos() as u64 * current / 1_000_000_000;
                while made < due {
                    std::hint::black_box(std::os::unix::process::parent_id());
                    made += 1;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        // The controller: every tick, overhead = program time / wall time; N ← N · overhead / target.
        // (In a closure, so that the load thread is stopped below whatever happens.)
        let mut n = 1u64;
        let result = (|| -> Result<(), Error> {
            for &load_rate in &LOADS {
                rate.store(load_rate, Ordering::Relaxed);
                let step_start = (Instant::now(), read_counts()?);
                let mut ticks = Vec::new(); // (overhead ns/s, events/s, N, variance added)
                let (mut last_t, mut last_stats, mut last_counts) = (Instant::now(), prog.info()?.stats, read_counts()?);
                while step_start.0.elapsed() < STEP {
                    std::thread::sleep(TICK);
                    let (t, st, c) = (Instant::now(), prog.info()?.stats, read_counts()?);
                    let secs = (t - last_t).as_secs_f64();
                    let overhead = (st.run_time_ns - last_stats.run_time_ns) as f64 / secs;
                    let events = c[0] - last_counts[0];
                    // Each call sampled with probability 1/N adds N − 1 to the estimate's variance.
                    ticks.push((overhead, events as f64 / secs, n as f64, events as f64 * (n - 1) as f64));
                    n = (n as f64 * (overhead / TARGET).clamp(0.5, 2.0)).round().clamp(1.0, 1e6) as u64;
                    set_n(n)?;
                    (last_t, last_stats, last_counts) = (t, st, c);
                }
                let end = read_counts()?;
                let settled = &ticks[ticks.len() / 2..];
                let overhead = median(settled.iter().map(|t| t.0).collect());
                let events = median(settled.iter().map(|t| t.1).collect());
                let n_settled = median(settled.iter().map(|t| t.2).collect());
                let (truth, samples, estimate) = (end[0] - step_start.1[0], end[1] - step_start.1[1], end[2] - step_start.1[2]);
                let sigma = ticks.iter().map(|t| t.3).sum::<f64>().sqrt();
                let error = estimate as f64 - truth as f64;
                println!(
                    "{load_rate:>9} {events:>9.0} {n_settled:>6.0} {:>14.2} {samples:>8} {estimate:>9} {truth:>9} {:>+6.1}% ({:+.1}σ)",
                    overhead / 1e6,
                    error / truth as f64 * 100.0,
                    error / sigma.max(1.0)
                );
                let trace = ticks.iter().map(|t| t.0 / 1e6).collect();
                steps.push(Step { load: load_rate, overhead, error, sigma, trace, full: ticks[0].0 / ticks[0].1 });
            }
            Ok(())
        })();
        rate.store(u64::MAX, Ordering::Relaxed);
        load.join().expect("the load thread panicked");
        result
    })?;
    drop(link);
    let all = read_counts()?;
    drop(stats);
    let trace: Vec<String> = steps[0].trace.iter().map(|o| format!("{o:.1}")).collect();
    println!("first step, ms/s per tick: {}", trace.join(" "));
    // The first tick ran with N = 1: every call instrumented.
    let full = steps[0].full;
    println!("every call instrumented: {:.2} µs per call; at {}/s that would be {:.0} ms/s", full / 1e3, LOADS[2], full * LOADS[2] as f64 / 1e6);
    println!("all steps: {} calls made, {} counted, {} sampled, estimate {}", calls.load(Ordering::Relaxed), all[0], all[1], all[2]);

    assert_eq!(all[0], calls.load(Ordering::Relaxed), "the unsampled counter saw every call");
    for step in &steps {
        let (load, ms) = (step.load, step.overhead / 1e6);
        assert!((step.overhead / TARGET - 1.0).abs() <= BAND, "at {load}/s the overhead settled at {ms:.2} ms/s");
        assert!(step.error.abs() <= 4.0 * step.sigma + 1.0, "at {load}/s the estimate is off by {} (σ = {:.0})", step.error, step.sigma);
    }
    Ok(())
}
