//! `bpfkit-profile`: profiles aggregated in the kernel, written as folded stacks, a flame-graph
//! SVG, a top table and pprof. Each mode (see the library's modules) loads its programs and
//! attaches them; this file runs the session — a command or processes to watch, the duration,
//! Ctrl-C — and writes what was collected.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bpfkit::attach::Link;
use bpfkit::os::PausedChild;
use bpfkit::prog::Program;
use clap::{Args, Parser, Subcommand};

use bpfkit_profile::kernel::{Error, Sizes, StackMaps};
use bpfkit_profile::profile::{self, Profile};
use bpfkit_profile::symbols::Resolver;
use bpfkit_profile::{alloc, command, cpu, follow, io, lock, offcpu, output, pprof};

/// Profiles from eBPF, aggregated in the kernel: where CPU time goes (cpu), where threads
/// block (offcpu), what stays allocated (alloc), block I/O latency (io) and lock waits (lock),
/// written as folded stacks, a flame graph, a top table and pprof.
///
/// The programs count by stack inside the kernel — one counter per distinct (process, user
/// stack, kernel stack, thread name) — so nothing is copied out per event; the counts and stacks
/// are read once at the end, and named (symbolized) then. A run ends after -d SECONDS, when
/// COMMAND exits, when the -p processes are gone, or on Ctrl-C; each writes what was collected
/// and detaches everything.
#[derive(Debug, Parser)]
#[command(
    name = "bpfkit-profile",
    version,
    after_help = "\
Examples:
  bpfkit-profile cpu -d 10                          the whole system for 10 s: the top table
  bpfkit-profile cpu -F 999 --svg cpu.svg -- make   a command and its children, at 999 Hz
  bpfkit-profile cpu -p 1234 -f > out.folded        a running process until Ctrl-C, folded
  bpfkit-profile offcpu -m 1000 -p 1234             blocks of 1 ms or more
  bpfkit-profile alloc --objects -- ./server        what a run leaves allocated, by stack
  bpfkit-profile io -d 30                           per-disk latency histograms, by stack
  bpfkit-profile lock --pprof lock.pb.gz -- ./app   lock waits, for `go tool pprof`

Needs root (or CAP_BPF and CAP_PERFMON). Stacks are walked by the kernel: through frame
pointers in user code (build with -fno-omit-frame-pointer to keep callers; without them a stack
often stops after its first frame or two), through ORC in the kernel."
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// On-CPU time: sample every CPU on the cpu-clock software event at -F HZ and count the
    /// user and kernel stacks of whatever was running (the idle task excluded).
    Cpu {
        /// Samples per second on each CPU.
        #[arg(short = 'F', long = "frequency", value_name = "HZ", default_value_t = 99, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        hz: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Off-CPU time: how long threads were blocked (sleeping, waiting for I/O, a lock, a
    /// pipe), in nanoseconds by the stack they blocked in, from sched_switch (switched out
    /// blocked → switched back in). Preemption of a runnable thread is not counted.
    Offcpu {
        /// Count only blocks at least this long, in microseconds.
        #[arg(
            short = 'm',
            long = "min-block",
            value_name = "US",
            default_value_t = 1
        )]
        min_block_us: u64,
        /// Threads that may be blocked at once (each a `start` entry in the kernel).
        #[arg(long, value_name = "N", default_value_t = 65536)]
        threads: u32,
        /// Attach as a raw tracepoint even where the kernel takes tp_btf (the path taken on
        /// kernels without BTF-typed tracepoints).
        #[arg(long)]
        raw_tracepoint: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Memory allocations: uprobes on malloc, calloc, realloc and free keep every live
    /// allocation with the stack that made it. Shows what is outstanding at the end (leaks, if
    /// the program is done) by stack, in bytes (or allocations with --objects); pprof also gets
    /// the allocations and bytes made by each stack (the allocation rate). Allocations from
    /// before the profile started are not known.
    Alloc {
        /// The library whose malloc/calloc/realloc/free are probed: libc by default; a path or
        /// name of another one that exports them (libjemalloc, libtcmalloc) for programs using
        /// it. Allocators linked into the program itself are not seen.
        #[arg(long, value_name = "LIB", default_value = "libc")]
        allocator: String,
        /// Show outstanding allocations (a count) instead of outstanding bytes.
        #[arg(long)]
        objects: bool,
        /// Live allocations the kernel can keep; more are counted as lost.
        #[arg(long, value_name = "N", default_value_t = 1 << 20)]
        live: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Block I/O latency: a log2 histogram per device (microseconds, from the request's start
    /// to its completion) and, by the stack that issued each request, the requests (or with
    /// --latency their total nanoseconds); the innermost frame names the disk ([vda]).
    Io {
        /// Stacks weighted by total latency (ns) instead of by requests.
        #[arg(long)]
        latency: bool,
        /// Time from block_rq_issue to block_rq_complete even where the kernel has
        /// block_io_start/done (the path taken on kernels before 6.5).
        #[arg(long)]
        rq_tracepoints: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Lock contention: time threads waited for locks, by the stack that waited — user-space
    /// locks through their futex waits (a pthread mutex, condition variable or join that had to
    /// sleep), and contended kernel locks (lock:contention_begin/end, where the kernel has them).
    /// The innermost frame names the kind: [futex], [kernel-mutex], [kernel-spinlock], …
    Lock {
        /// Stacks weighted by the number of waits instead of nanoseconds waited.
        #[arg(long)]
        count: bool,
        /// Only futex waits, not kernel locks.
        #[arg(long)]
        no_kernel: bool,
        #[command(flatten)]
        common: Common,
    },
}

/// What every mode takes.
#[derive(Debug, Args)]
struct Common {
    /// Profile these running processes only (comma-separated pids); without -p or COMMAND the
    /// whole system is profiled.
    #[arg(short = 'p', value_name = "PID[,PID…]", value_delimiter = ',')]
    pids: Vec<u32>,

    /// Stop after this many seconds (else at the command's end, or Ctrl-C).
    #[arg(short = 'd', long = "duration", value_name = "SECONDS")]
    duration: Option<f64>,

    /// Print folded stacks on stdout instead of the top table.
    #[arg(short = 'f', long = "folded")]
    folded: bool,

    /// Also write folded stacks to FILE.
    #[arg(long = "folded-file", value_name = "FILE")]
    folded_file: Option<PathBuf>,

    /// Also write a flame-graph SVG to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,

    /// Also write a pprof profile (gzipped profile.proto) to FILE.
    #[arg(long, value_name = "FILE")]
    pprof: Option<PathBuf>,

    /// Rows of the top table.
    #[arg(long, value_name = "N", default_value_t = 15)]
    top: usize,

    /// No `-` frame between user and kernel frames in folded stacks (bcc's `profile -d` puts
    /// one there; this is the default here).
    #[arg(long)]
    no_delimiter: bool,

    /// Distinct stacks the kernel's stack map holds; more distinct stacks are lost (counted and
    /// reported).
    #[arg(long, value_name = "N", default_value_t = 16384)]
    stacks: u32,

    /// Distinct (process, stacks, thread name) counters; events beyond are not counted (counted
    /// and reported).
    #[arg(long, value_name = "N", default_value_t = 40960)]
    keys: u32,

    /// The command to start and profile (after `--`); it is held before its first instruction
    /// until the programs are attached. The processes it starts are profiled too (not by alloc).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<std::ffi::OsString>,
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bpfkit-profile: {e}");
            std::process::exit(1);
        }
    }
}

/// What a mode attached, kept until the session ends.
struct Attached {
    _programs: Vec<Program>,
    links: Vec<Link>,
    /// offcpu's `start` (threads blocked now) and its minimum block, read at the end: a thread
    /// still blocked then is counted up to the end.
    _maps: Vec<bpfkit::maps::Map>,
    /// alloc's maps, read at the end instead of `counts` alone; which value is shown.
    alloc: Option<(alloc::AllocMaps, usize)>,
    /// io's maps (with its histograms); which value is shown.
    io: Option<(io::IoMaps, usize)>,
    /// lock's maps; which value is shown.
    lock: Option<(lock::LockMaps, usize)>,
}

/// How a mode's amounts are named.
struct Units {
    /// In the table's header and the SVG's tooltips ("samples").
    name: &'static str,
    title: &'static str,
    pprof: pprof::Kind,
}

/// A mode's attach step: given the maps, whether processes are filtered, and the one process
/// when there is exactly one.
type AttachFn = Box<dyn FnOnce(&StackMaps, bool, Option<i32>) -> Result<Attached, Error>>;

fn run(cli: Cli) -> Result<i32, Error> {
    let is_alloc = matches!(cli.mode, Mode::Alloc { .. });
    let is_offcpu = matches!(cli.mode, Mode::Offcpu { .. });
    let offcpu_min_ns = match cli.mode {
        Mode::Offcpu { min_block_us, .. } => min_block_us.saturating_mul(1000),
        _ => 0,
    };
    let (common, units, attach): (Common, Units, AttachFn) = match cli.mode {
        Mode::Cpu { hz, common } => {
            let period = 1_000_000_000 / hz as i64;
            let units = Units {
                name: "samples",
                title: "CPU",
                pprof: pprof::Kind {
                    types: vec![("samples", "count"), ("cpu", "nanoseconds")],
                    scale: vec![1, period],
                    period: Some(("cpu", "nanoseconds", period)),
                },
            };
            let attach = Box::new(move |maps: &StackMaps, filtered: bool, _pid: Option<i32>| {
                let (prog, links) = cpu::attach(maps, hz, filtered)
                    .map_err(|e| format!("attaching to cpu-clock: {e}"))?;
                Ok(Attached {
                    _programs: vec![prog],
                    links,
                    _maps: Vec::new(),
                    alloc: None,
                    io: None,
                    lock: None,
                })
            });
            (common, units, attach)
        }
        Mode::Offcpu {
            min_block_us,
            threads,
            raw_tracepoint,
            common,
        } => {
            let units = Units {
                name: "ns",
                title: "Off-CPU time",
                pprof: pprof::Kind {
                    types: vec![("offcpu", "nanoseconds")],
                    scale: vec![1],
                    period: None,
                },
            };
            let attach = Box::new(move |maps: &StackMaps, filtered: bool, _pid: Option<i32>| {
                let start = offcpu::start_map(threads)?;
                let (prog, link, via) = offcpu::attach(
                    maps,
                    &start,
                    filtered,
                    min_block_us.saturating_mul(1000),
                    raw_tracepoint,
                )
                .map_err(|e| format!("attaching to sched_switch: {e}"))?;
                if via == offcpu::Via::RawTracepoint && !raw_tracepoint {
                    eprintln!("bpfkit-profile: this kernel refused a tp_btf program on sched_switch; using a raw tracepoint");
                }
                Ok(Attached {
                    _programs: vec![prog],
                    links: vec![link],
                    _maps: vec![start],
                    alloc: None,
                    io: None,
                    lock: None,
                })
            });
            (common, units, attach)
        }
        Mode::Alloc {
            allocator,
            objects,
            live,
            common,
        } => {
            let units = Units {
                name: if objects { "allocations" } else { "bytes" },
                title: if objects {
                    "Outstanding allocations"
                } else {
                    "Outstanding bytes"
                },
                pprof: pprof::Kind {
                    types: vec![
                        ("inuse_objects", "count"),
                        ("inuse_space", "bytes"),
                        ("alloc_objects", "count"),
                        ("alloc_space", "bytes"),
                    ],
                    scale: vec![1, 1, 1, 1],
                    period: None,
                },
            };
            let keys = common.keys;
            let attach = Box::new(move |maps: &StackMaps, filtered: bool, pid: Option<i32>| {
                let own = alloc::AllocMaps::new(live, keys)?;
                let (programs, links) = alloc::attach(maps, &own, &allocator, pid, filtered)
                    .map_err(|e| format!("attaching to the allocator: {e}"))?;
                Ok(Attached {
                    _programs: programs,
                    links,
                    _maps: Vec::new(),
                    alloc: Some((own, if objects { 0 } else { 1 })),
                    io: None,
                    lock: None,
                })
            });
            (common, units, attach)
        }
        Mode::Io {
            latency,
            rq_tracepoints,
            common,
        } => {
            let units = Units {
                name: if latency { "ns" } else { "requests" },
                title: if latency {
                    "Block I/O latency"
                } else {
                    "Block I/O requests"
                },
                pprof: pprof::Kind {
                    types: vec![("requests", "count"), ("latency", "nanoseconds")],
                    scale: vec![1, 1],
                    period: None,
                },
            };
            let keys = common.keys;
            let attach = Box::new(move |maps: &StackMaps, filtered: bool, _pid: Option<i32>| {
                let own = io::IoMaps::new(keys)?;
                let (programs, links, points) = io::attach(maps, &own, filtered, rq_tracepoints)
                    .map_err(|e| format!("attaching to the block tracepoints: {e}"))?;
                if points == io::Points::RqIssueComplete && !rq_tracepoints {
                    eprintln!("bpfkit-profile: this kernel has no block_io_start/done; timing from block_rq_issue (issuing stacks may be a kworker's)");
                }
                Ok(Attached {
                    _programs: programs,
                    links,
                    _maps: Vec::new(),
                    alloc: None,
                    io: Some((own, if latency { 1 } else { 0 })),
                    lock: None,
                })
            });
            (common, units, attach)
        }
        Mode::Lock {
            count,
            no_kernel,
            common,
        } => {
            let units = Units {
                name: if count { "waits" } else { "ns" },
                title: "Lock contention",
                pprof: pprof::Kind {
                    types: vec![("waits", "count"), ("delay", "nanoseconds")],
                    scale: vec![1, 1],
                    period: None,
                },
            };
            let keys = common.keys;
            let attach = Box::new(move |maps: &StackMaps, filtered: bool, _pid: Option<i32>| {
                let own = lock::LockMaps::new(keys)?;
                let (programs, links, kernel) = lock::attach(maps, &own, filtered, !no_kernel)
                    .map_err(|e| format!("attaching to the futex and lock tracepoints: {e}"))?;
                if !kernel && !no_kernel {
                    eprintln!("bpfkit-profile: this kernel has no lock:contention_begin/end tracepoints; futex waits only");
                }
                Ok(Attached {
                    _programs: programs,
                    links,
                    _maps: Vec::new(),
                    alloc: None,
                    io: None,
                    lock: Some((own, if count { 0 } else { 1 })),
                })
            });
            (common, units, attach)
        }
    };
    if !common.command.is_empty() && !common.pids.is_empty() {
        return Err("give either a command or -p, not both".into());
    }
    if let Some(d) = common.duration {
        if !(d > 0.0 && d.is_finite()) {
            return Err(format!("-d {d}: the duration is a positive number of seconds").into());
        }
    }
    let maps = StackMaps::new(Sizes {
        stacks: common.stacks,
        keys: common.keys,
    })
    .map_err(|e| format!("creating the maps: {e}"))?;
    let filtered = !common.pids.is_empty() || !common.command.is_empty();
    for &pid in &common.pids {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Err(format!("-p {pid}: no such process").into());
        }
        maps.target(pid)?;
    }
    let mut child = None;
    if !common.command.is_empty() {
        let paused = PausedChild::spawn(&common.command[0], &common.command)
            .map_err(|e| format!("{}: {e}", common.command[0].to_string_lossy()))?;
        maps.target(paused.id())?;
        child = Some(paused);
    }
    // One process: probes that fire for it alone (uprobes), not for every user of the library.
    let single = match (&child, common.pids.as_slice()) {
        (Some(c), _) => Some(c.id() as i32),
        (None, [pid]) => Some(*pid as i32),
        _ => None,
    };
    // A command's children are profiled too (its forks join `targets` before they run) —
    // except by alloc, whose uprobes are bound to the one process.
    let _follow =
        if !common.command.is_empty() && !is_alloc {
            Some(follow::attach(&maps).map_err(|e| {
                format!("following the command's children (sched_process_fork): {e}")
            })?)
        } else {
            None
        };
    let mut attached = attach(&maps, filtered, single)?;

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;

    let started = Instant::now();
    let wall_start = SystemTime::now();
    let mut resolver = Resolver::new();
    for &pid in &common.pids {
        resolver.snapshot(pid);
    }
    // The command: watched (held once at its exit, see `command`), then let go.
    let watcher = match child.as_mut() {
        Some(c) => {
            let rx = command::watch(c.id());
            match rx.recv() {
                Ok(command::Event::Ready { held }) if !held => {
                    eprintln!("bpfkit-profile: ptrace refused: the command's frames are named only if it still runs when the profile ends");
                }
                _ => {}
            }
            c.resume()
                .map_err(|e| format!("{}: {e}", common.command[0].to_string_lossy()))?;
            Some(rx)
        }
        None => None,
    };
    let mut status: Option<i32> = None;
    let mut last_refresh = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        // Mappings of the processes that have counts, read while they run: new ones at once,
        // known ones again every second (libraries loaded later, an exec).
        let refresh_all = last_refresh.elapsed() >= Duration::from_secs(1);
        for tgid in profile::tgids_seen(&maps) {
            if refresh_all || !resolver.knows(tgid) {
                resolver.snapshot(tgid);
            }
        }
        if refresh_all {
            last_refresh = Instant::now();
        }
        if let Some(rx) = &watcher {
            while let Ok(event) = rx.try_recv() {
                match event {
                    command::Event::Exiting(pid, mappings) => resolver.set_maps(pid, mappings),
                    command::Event::Ended(code) => status = Some(code),
                    command::Event::Failed(e) => return Err(e.into()),
                    command::Event::Ready { .. } => {}
                }
            }
        }
        let timed_out = common
            .duration
            .is_some_and(|d| started.elapsed().as_secs_f64() >= d);
        let command_done = !common.command.is_empty() && status.is_some();
        let pids_gone = !common.pids.is_empty()
            && !common
                .pids
                .iter()
                .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if interrupted.load(Ordering::SeqCst) || timed_out || command_done || pids_gone {
            break;
        }
    }
    let elapsed = started.elapsed();
    // Detach first: the counts stop moving while they are read.
    let end_ns = profile::ktime_now()?; // what is still blocked or waiting is counted up to here
    attached.links.clear();
    let profile = match &attached.alloc {
        Some((own, primary)) => {
            let profile = profile::collect_entries(
                &maps,
                &mut resolver,
                alloc::entries(&maps, own)?,
                *primary,
            )?;
            let lost = maps.stat(alloc::STAT_ALLOCS_FULL)?;
            if lost > 0 {
                eprintln!("bpfkit-profile: {lost} allocations not tracked: the live-allocation map was full (raise --live)");
            }
            profile
        }
        None => match &attached.io {
            Some((own, primary)) => {
                let lost = maps.stat(io::STAT_INFLIGHT_FULL)?;
                if lost > 0 {
                    eprintln!(
                        "bpfkit-profile: {lost} requests not timed: the in-flight map was full"
                    );
                }
                if !common.folded {
                    print!("{}", io::histogram_text(&own.histograms()?));
                }
                let mut profile = profile::collect_entries(
                    &maps,
                    &mut resolver,
                    io::entries(&maps, own)?,
                    *primary,
                )?;
                // The disk as the innermost frame: one flame per device under each stack.
                for s in &mut profile.samples {
                    let disk = format!("[{}]", io::device_name(s.extra));
                    if s.kernel.is_empty() {
                        s.user.push(disk);
                    } else {
                        s.kernel.push(disk);
                    }
                }
                profile
            }
            None => match &attached.lock {
                Some((own, primary)) => {
                    let mut profile = profile::collect_entries(
                        &maps,
                        &mut resolver,
                        lock::entries(&maps, own, end_ns)?,
                        *primary,
                    )?;
                    for s in &mut profile.samples {
                        let kind = lock::kind_frame(s.extra);
                        if s.kernel.is_empty() {
                            s.user.push(kind);
                        } else {
                            s.kernel.push(kind);
                        }
                    }
                    profile
                }
                None if is_offcpu => match attached._maps.first() {
                    Some(start) => {
                        let entries = offcpu::entries_until_now(&maps, start, end_ns, offcpu_min_ns)?;
                        profile::collect_entries(&maps, &mut resolver, entries, 0)?
                    }
                    None => profile::collect(&maps, &mut resolver)?,
                },
                None => profile::collect(&maps, &mut resolver)?,
            },
        },
    };
    write_outputs(&common, &units, &profile, wall_start, elapsed)?;
    for line in profile.losses.report(units.name) {
        eprintln!("bpfkit-profile: {line}");
    }
    if interrupted.load(Ordering::SeqCst) && !common.command.is_empty() && status.is_none() {
        eprintln!("bpfkit-profile: interrupted; detached (the command goes on unprofiled)");
    }
    Ok(status.unwrap_or(0))
}

fn write_outputs(
    common: &Common,
    units: &Units,
    profile: &Profile,
    wall_start: SystemTime,
    elapsed: Duration,
) -> Result<(), Error> {
    let lines = output::folded(profile, !common.no_delimiter);
    let mut stdout = std::io::stdout().lock();
    if common.folded {
        for l in &lines {
            writeln!(stdout, "{l}")?;
        }
    } else {
        write!(
            stdout,
            "{}",
            output::top_table(profile, common.top, units.name)
        )?;
        writeln!(
            stdout,
            "{} {} in {:.1} s, {} stacks",
            profile.total(),
            units.name,
            elapsed.as_secs_f64(),
            profile.samples.len()
        )?;
    }
    stdout.flush()?;
    let create = |p: &PathBuf| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    if let Some(path) = &common.folded_file {
        let mut f = create(path)?;
        for l in &lines {
            writeln!(f, "{l}")?;
        }
        f.flush()?;
    }
    if let Some(path) = &common.svg {
        if lines.is_empty() {
            eprintln!(
                "bpfkit-profile: nothing was counted; {} not written",
                path.display()
            );
        } else {
            let mut f = create(path)?;
            output::svg(&lines, units.title, units.name, &mut f)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.flush()?;
        }
    }
    if let Some(path) = &common.pprof {
        let since_epoch = wall_start
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let message = pprof::build(
            profile,
            &units.pprof,
            since_epoch.as_nanos() as i64,
            elapsed.as_nanos() as i64,
        );
        let f = create(path)?;
        pprof::write(&message, f).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
