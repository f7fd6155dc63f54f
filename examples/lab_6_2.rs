//! Lab 6.2 — run-queue latency (tutorial/ch06-tracepoints.md): `sched:sched_wakeup_new` and
//! `sched:sched_wakeup` stamp the moment a thread of this lab becomes runnable,
//! `sched:sched_switch` the moment it gets a CPU; the difference goes into a log2 histogram per
//! CPU (a per-CPU array) and a per-thread count. The lab pins a sleeping thread and 0, then 3,
//! spinning threads to each CPU, checks every wakeup was measured once (against each thread's
//! own count of voluntary context switches) and that latency grows with the contention.
//!
//! Run as root: `cargo run --example lab_6_2`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::helpers::patterns::map_lookup;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 6.2") {
        return Ok(());
    }
    let me = std::process::id();
    let woken = TracepointFormat::read("sched", "sched_wakeup")?.offset_of("pid")?;
    // sched_wakeup_new's record names the new task but not its process: the tp_btf flavour of
    // the tracepoint hands over the task_struct itself, whose fields BTF locates.
    let vmlinux = Btf::vmlinux()?;
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).ok_or("no task_struct in BTF")?;
    let task_tgid = i16::try_from(vmlinux.member_offset(task, "tgid")? / 8)?;
    let task_pid = i16::try_from(vmlinux.member_offset(task, "pid")? / 8)?;
    let new_task = vmlinux.find_by_name_kind("btf_trace_sched_wakeup_new", Kind::Typedef).ok_or("no btf_trace_sched_wakeup_new")?;
    let next_pid = TracepointFormat::read("sched", "sched_switch")?.offset_of("next_pid")?;
    let cpus = bpfkit::os::online_cpus()?;
    const SLEEPS: usize = 100;

    // One run: a sleeper and `spinners` spinning threads pinned to each CPU. Returns the
    // histogram (per bucket, per CPU) and, per thread, (tid, sleeper?, latencies measured, their
    // sum in ns, 1 + its voluntary context switches).
    type Run = (Vec<Vec<u64>>, Vec<(u32, bool, u64, u64, u64)>);
    let run = |spinners: usize| -> Result<Run, Box<dyn std::error::Error>> {
        // tid -> {latencies, total ns}: an entry per thread this process created while we watch.
        let threads = Map::create(&MapSpec::new("threads", MapType::Hash, 4, 16, 1024))?;
        let queued_at = Map::create(&MapSpec::new("queued_at", MapType::Hash, 4, 8, 1024))?;
        let hist = Map::create(&MapSpec::new("runq_usecs", MapType::PercpuArray, 4, 8, 32))?;
        let maps = [&threads, &queued_at, &hist];
        let on_new = bpf_asm! {
            r2 = *(u64 *)(r1 + 0)           // the tracepoint's argument: struct task_struct *p
            r3 = *(u32 *)(r2 + {task_tgid}) // a BTF pointer: its fields are read directly
            if w3 != {me as i32} goto out   // a new thread of this process
            r6 = *(u32 *)(r2 + {task_pid})
            *(u32 *)(r10 - 4) = w6
            *(u64 *)(r10 - 24) = 0
            *(u64 *)(r10 - 16) = 0
            r1 = map[threads] ll
            r2 = r10
            r2 += -4
            r3 = r10
            r3 += -24
            r4 = 0
            call bpf_map_update_elem        // watch it from now on
            goto stamp
        out:
            r0 = 0
            exit
        stamp:
            call bpf_ktime_get_ns
            *(u64 *)(r10 - 16) = r0
            r1 = map[queued_at] ll
            r2 = r10
            r2 += -4
            r3 = r10
            r3 += -16
            r4 = 0
            call bpf_map_update_elem
            r0 = 0
            exit
        };
        let on_wakeup = bpf_asm! {
            r6 = *(u32 *)(r1 + {woken})
            *(u32 *)(r10 - 4) = w6
            {map_lookup("threads", -4, "out")?}   // not one of ours
            call bpf_ktime_get_ns
            *(u64 *)(r10 - 16) = r0
            r1 = map[queued_at] ll
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
        let on_switch = bpf_asm! {
            r6 = *(u32 *)(r1 + {next_pid})  // the thread that gets the CPU
            *(u32 *)(r10 - 4) = w6
            {map_lookup("queued_at", -4, "out")?} // not woken while we watched (or preempted)
            r7 = *(u64 *)(r0 + 0)
            r1 = map[queued_at] ll
            r2 = r10
            r2 += -4
            call bpf_map_delete_elem
            call bpf_ktime_get_ns
            r0 -= r7
            r7 = r0                         // ns on the run queue
            {map_lookup("threads", -4, "out")?}
            r1 = 1
            lock *(u64 *)(r0 + 0) += r1
            lock *(u64 *)(r0 + 8) += r7
            r7 /= 1000                      // µs
            r5 = 0                          // r5 = log2(r7), at most 31
        halve:
            if r7 <= 1 goto counted
            if r5 >= 31 goto counted
            r7 >>= 1
            r5 += 1
            goto halve
        counted:
            *(u32 *)(r10 - 8) = w5
            {map_lookup("runq_usecs", -8, "out")?}  // this CPU's own slot: no lock needed
            r1 = *(u64 *)(r0 + 0)
            r1 += 1
            *(u64 *)(r0 + 0) = r1
        out:
            r0 = 0
            exit
        };
        let load = |name: &str, p: &bpfkit::insn::Program| -> Result<Program, Box<dyn std::error::Error>> {
            Ok(Program::load(&p.assemble()?, &maps, &LoadOptions::new(name, ProgType::Tracepoint))?)
        };
        let (on_wakeup, on_switch) = (load("runq_wakeup", &on_wakeup)?, load("runq_switch", &on_switch)?);
        let tp_btf = LoadOptions::new("runq_new", ProgType::Tracing).expected_attach_type(AttachType::TraceRawTp).attach_btf_id(new_task.get());
        let on_new = Program::load(&on_new.assemble()?, &maps, &tp_btf)?;
        let links = [on_switch.attach_tracepoint("sched", "sched_switch")?, on_wakeup.attach_tracepoint("sched", "sched_wakeup")?, on_new.attach_btf()?];

        // A thread's own count of voluntary context switches: each one ended with a wakeup.
        fn voluntary_switches() -> u64 {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
            status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")?.trim().parse().ok()).unwrap_or(0)
        }
        // Pins the calling thread (threads it creates inherit the mask); `taskset` from util-linux.
        fn pin_self(cpus: &str) -> Result<(), Box<dyn std::error::Error>> {
            let tid = bpfkit::os::gettid().to_string();
            let ok = Command::new("taskset").args(["-pc", cpus, &tid]).stdout(std::process::Stdio::null()).status()?.success();
            if ok { Ok(()) } else { Err(format!("taskset -pc {cpus} {tid} failed").into()) }
        }
        struct Worker {
            tid: AtomicU32,
            sleeper: bool,
            switches: AtomicU64, // 1 (its first run) + its voluntary switches, once done
        }
        let workers: Vec<Worker> = cpus
            .iter()
            .flat_map(|_| (0..=spinners).map(|i| Worker { tid: AtomicU32::new(0), sleeper: i == spinners, switches: AtomicU64::new(0) }))
            .collect();
        let (stop_spinning, detached) = (AtomicBool::new(false), AtomicBool::new(false));
        let all_cpus = cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        std::thread::scope(|s| -> Result<(), Box<dyn std::error::Error>> {
            // On the way out, success or failure: the workers are let go (the scope waits for
            // them), and this thread, which creates the workers of CPU n while pinned to CPU n,
            // is unpinned.
            struct Release<'a>(&'a [&'a AtomicBool], &'a str);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.iter().for_each(|flag| flag.store(true, SeqCst));
                    let _ = pin_self(self.1);
                }
            }
            let _release = Release(&[&stop_spinning, &detached], &all_cpus);
            for (cpu, group) in cpus.iter().zip(workers.chunks(spinners + 1)) {
                pin_self(&cpu.to_string())?;
                for w in group {
                    let (stop_spinning, detached) = (&stop_spinning, &detached);
                    s.spawn(move || {
                        w.tid.store(bpfkit::os::gettid() as u32, SeqCst);
                        if w.sleeper {
                            for _ in 0..SLEEPS {
                                std::thread::sleep(Duration::from_millis(1));
                                let woke = Instant::now();
                                while woke.elapsed() < Duration::from_micros(200) {
                                    std::hint::spin_loop(); // a small job after each wakeup
                                }
                            }
                        } else {
                            while !stop_spinning.load(SeqCst) {
                                std::hint::spin_loop();
                            }
                        }
                        w.switches.store(1 + voluntary_switches(), SeqCst);
                        while !detached.load(SeqCst) {
                            std::hint::spin_loop(); // no sleep (and no wakeup) after reporting
                        }
                    });
                }
            }
            pin_self(&all_cpus)?;
            let done = |sleepers: bool| workers.iter().filter(|w| w.sleeper == sleepers).all(|w| w.switches.load(SeqCst) > 0);
            while !done(true) {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop_spinning.store(true, SeqCst);
            while !done(false) {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(links); // before the workers may go on (and exit)
            Ok(())
        })?;

        let per_cpu = hist.per_cpu::<u32, u64>()?;
        let histogram = (0..32u32).map(|b| Ok(per_cpu.get(&b)?.unwrap_or_default())).collect::<Result<Vec<Vec<u64>>, Box<dyn std::error::Error>>>()?;
        let mut per_thread = Vec::new();
        for w in &workers {
            let tid = w.tid.load(SeqCst);
            let [n, ns] = threads.typed::<u32, [u64; 2]>()?.get(&tid)?.unwrap_or_default();
            per_thread.push((tid, w.sleeper, n, ns, w.switches.load(SeqCst)));
        }
        Ok((histogram, per_thread))
    };

    let mut means = Vec::new();
    for spinners in [0, 3] {
        let (histogram, threads) = run(spinners)?;
        let sleepers: Vec<_> = threads.iter().filter(|t| t.1).collect();
        let (measured, ns, switches) = sleepers.iter().fold((0, 0, 0), |(n, ns, s), t| (n + t.2, ns + t.3, s + t.4));
        let mean_us = ns as f64 / measured as f64 / 1e3;
        let total: u64 = histogram.iter().flatten().sum();
        let mut seen = 0;
        let median = (0..32).find(|&b| {
            seen += histogram[b].iter().sum::<u64>();
            2 * seen >= total
        });
        println!("1 sleeper + {spinners} spinners per CPU: {measured} sleeper wakeups timed ({switches} expected), mean {mean_us:.1} µs");
        print!("{:>17} :", "usecs");
        for cpu in &cpus {
            print!(" {:>6}", format!("cpu{cpu}"));
        }
        println!();
        for b in (0..32).filter(|&b| histogram[b].iter().any(|&c| c > 0)) {
            print!("{:>17} :", format!("{} -> {}", 1u64 << b, (1u64 << (b + 1)) - 1));
            for &cpu in &cpus {
                print!(" {:>6}", histogram[b][cpu as usize]);
            }
            println!("{}", if Some(b) == median { "   <- median" } else { "" });
        }
        // Exact: the histograms hold each measured latency once.
        assert_eq!(total, threads.iter().map(|t| t.2).sum::<u64>());
        // Against the threads' own count: each spinner was woken once (when created); each
        // sleeper once more per voluntary switch, at least once per sleep. A few per hundred
        // wakeups of a sleeper can go unseen (see the text): 5% is allowed.
        for &(tid, sleeper, n, _, expected) in &threads {
            if sleeper {
                assert!(expected > SLEEPS as u64 && n <= expected + 1 && n * 100 >= expected * 95, "thread {tid}: {n} timed, {expected} expected");
            } else {
                assert_eq!(n, expected, "spinner {tid}");
            }
        }
        means.push(mean_us);
    }
    // Three spinners per CPU make the sleepers wait for their turn.
    assert!(means[1] > 2.0 * means[0], "contention makes the wait longer: {means:?} µs");
    Ok(())
}
