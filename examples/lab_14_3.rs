//! Lab 14.3 — a performance regression detector (tutorial/ch14-testing.md). The program is a
//! tc flow counter: it hashes a packet's addresses and ports and counts the flow in one of 256
//! buckets. Version 2 "strengthens" the hash with 8 mixing rounds instead of 1 — a bounded
//! loop of extra work, the deliberate regression. Each sample is one test run of 50 000 runs,
//! timed by the kernel's run-time statistics (BPF_ENABLE_STATS); a check pairs the baseline with
//! a candidate round by round, takes the median of the per-round ratios with a bootstrap 95%
//! confidence interval, and flags a regression only when the whole interval lies above +10%.
//! Repeated five times, the check must flag version 2 every time and an unchanged reload of
//! version 1 never.
//!
//! Run as root: `cargo run --example lab_14_3`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::insn::Assembled;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::testing::packet::Packet;

type Error = Box<dyn std::error::Error + Send + Sync>;
const BATCH: u32 = 50_000; // runs per sample (one test run)
const ROUNDS: usize = 31; // paired samples per check
const THRESHOLD: f64 = 1.10; // a regression: confidently more than 10% slower
const REPEATS: usize = 5;

/// The flow counter, mixing the flow's words `rounds` times.
fn flow_counter(rounds: i32) -> Result<Assembled, Error> {
    Ok(bpf_asm! {
        r2 = *(u32 *)(r1 + 76)          // __sk_buff.data
        r3 = *(u32 *)(r1 + 80)          // __sk_buff.data_end
        r4 = r2
        r4 += 38                        // Ethernet + IPv4 + the ports
        if r4 > r3 goto out
        r6 = *(u32 *)(r2 + 26)          // source address
        r7 = *(u32 *)(r2 + 30)          // destination address
        r8 = *(u32 *)(r2 + 34)          // both ports
        r9 = 0
    mix:
        r6 += r8
        r6 *= 0x7feb352d
        r7 ^= r6
        r8 += r7
        r8 >>= 3
        r9 += 1
        if r9 < {rounds} goto mix
        r6 ^= r7
        r6 &= 255                       // one of 256 buckets
        r6 <<= 3
        r1 = map_value[flows]+0 ll
        r1 += r6
        r2 = 1
        lock *(u64 *)(r1 + 0) += r2
    out:
        r0 = 0                          // TC_ACT_OK
        exit
    }
    .assemble()?)
}

/// One sample: `BATCH` runs in one test run. The program's own time per run comes from the
/// kernel's statistics (run_time_ns / run_cnt, counted around each run); the test run's
/// duration also includes its harness.
#[derive(Clone, Copy)]
struct Sample {
    stats_ns: f64,
    test_run_ns: f64,
}

fn sample(prog: &Program, frame: &[u8]) -> Result<Sample, Error> {
    let before = prog.info()?.stats;
    let run = prog.test_run(&TestRun::with_data(frame.to_vec()).repeat(BATCH))?;
    let after = prog.info()?.stats;
    assert_eq!(after.run_count - before.run_count, u64::from(BATCH), "every run counted");
    let stats_ns = (after.run_time_ns - before.run_time_ns) as f64 / f64::from(BATCH);
    Ok(Sample { stats_ns, test_run_ns: f64::from(run.duration_ns) })
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What a check found: the median ratio candidate/baseline and its 95% confidence interval.
struct Verdict {
    ratio: f64,
    low: f64,
    high: f64,
}

impl Verdict {
    fn regressed(&self) -> bool {
        self.low > THRESHOLD
    }
    fn describe(&self) -> &'static str {
        match (self.regressed(), self.high < THRESHOLD) {
            (true, _) => "REGRESSION",
            (false, true) => "no regression",
            (false, false) => "inconclusive (measure again)",
        }
    }
}

/// The decision rule. Baseline and candidate are measured in pairs, alternating which runs
/// first, so both see the machine as it is at that moment; each pair gives a ratio. The median
/// of the ratios ignores the rounds a build or an interrupt disturbed, and resampling the
/// ratios (2000 bootstrap medians) says how far that median could be from the truth.
fn check(baseline: &Program, candidate: &Program, frame: &[u8]) -> Result<Verdict, Error> {
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (b, c) = if round % 2 == 0 {
            let b = sample(baseline, frame)?;
            (b, sample(candidate, frame)?)
        } else {
            let c = sample(candidate, frame)?;
            (sample(baseline, frame)?, c)
        };
        ratios.push(c.stats_ns / b.stats_ns);
    }
    let mut rng = fastrand::Rng::with_seed(143);
    let mut medians: Vec<f64> = (0..2000).map(|_| median(&(0..ROUNDS).map(|_| ratios[rng.usize(..ROUNDS)]).collect::<Vec<_>>())).collect();
    medians.sort_by(f64::total_cmp);
    Ok(Verdict { ratio: median(&ratios), low: medians[50], high: medians[1949] })
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 14.3") {
        return Ok(());
    }
    let flows = Map::create(&MapSpec::new("flows", MapType::Array, 4, 256 * 8, 1))?;
    let frame = Packet::udp("10.0.0.1:40000".parse()?, "10.0.0.2:53".parse()?).payload(*b"query").build()?;
    let load = |name: &str, rounds: i32| -> Result<Program, Error> {
        Ok(Program::load(&flow_counter(rounds)?, &[&flows], &LoadOptions::new(name, ProgType::SchedCls))?)
    };
    let baseline = load("flows_v1", 1)?;
    // Run-time statistics are counted while this fd is open (for every program: keep it short).
    let _stats = Program::enable_stats()?;

    // The baseline alone: what one number would have been, and how much it moves.
    let samples: Vec<Sample> = (0..2 * ROUNDS).map(|_| sample(&baseline, &frame)).collect::<Result<_, _>>()?;
    let own: Vec<f64> = samples.iter().map(|s| s.stats_ns).collect();
    let (lo, hi) = own.iter().fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let harness = median(&samples.iter().map(|s| s.test_run_ns).collect::<Vec<_>>());
    println!("baseline flows_v1: {} samples of {BATCH} runs", samples.len());
    println!("  the program: {:.1} ns per run (median; samples from {lo:.1} to {hi:.1})", median(&own));
    println!("  the test run: {harness:.0} ns per run (median; with the harness around the program)\n");

    println!("{:<6} {:<22} {:>12} {:>16}  verdict", "check", "candidate", "median ratio", "95% interval");
    let (mut flagged_slow, mut flagged_same) = (0, 0);
    for repeat in 1..=REPEATS {
        for (name, rounds) in [("flows_v1 reloaded", 1), ("flows_v2 (8 rounds)", 8)] {
            let candidate = load(if rounds == 1 { "flows_v1" } else { "flows_v2" }, rounds)?;
            let v = check(&baseline, &candidate, &frame)?;
            println!("{repeat:<6} {name:<22} {:>12.2} {:>16}  {}", v.ratio, format!("{:.2}-{:.2}", v.low, v.high), v.describe());
            if rounds == 1 {
                flagged_same += usize::from(v.regressed());
            } else {
                flagged_slow += usize::from(v.regressed());
            }
        }
    }
    println!("\nflagged: flows_v2 {flagged_slow} of {REPEATS}, the unchanged reload {flagged_same} of {REPEATS}");
    assert_eq!((flagged_slow, flagged_same), (REPEATS, 0));
    Ok(())
}
