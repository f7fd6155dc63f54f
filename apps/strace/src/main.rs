//! `bpfkit-strace`: a system call tracer that reads like strace. The kernel half (see
//! `kernel`) filters by task and by call and ships finished calls through a ring buffer; this
//! half formats them as strace does (`decode`, `text`) or as JSON lines, or prints strace's
//! `-c` table from counters kept in the kernel.

use bpfkit_strace::{decode, filter, kernel, record, summary, text};

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bpfkit::events::RingBuf;
use bpfkit::os::PausedChild;
use clap::Parser;

use kernel::{Config, Tracer};
use record::{Record, KIND_EXIT, KIND_SIGNAL};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Trace system calls with eBPF: strace's output, a fraction of its cost.
///
/// bpfkit-strace starts COMMAND (held before its first instruction until the probes are in
/// place) or watches running processes (-p), and prints each system call they make as strace
/// does: `openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3`. Tasks and calls are
/// filtered in the kernel, so untraced work costs almost nothing; finished calls arrive
/// through a ring buffer, and records it had no room for are counted and reported at exit.
#[derive(Debug, Parser)]
#[command(name = "bpfkit-strace", version, after_help = "\
Examples:
  bpfkit-strace -- ls /tmp                       every call of ls
  bpfkit-strace -f -e trace=%file -- make        files opened by make and its children
  bpfkit-strace -c -f -- find /usr -name '*.so'  the count/time/error table
  bpfkit-strace -p 1234 -e trace=read,write -T   a running process's I/O, with durations
  bpfkit-strace --json -o calls.jsonl -- curl -s https://example.com

Needs root (or CAP_BPF and CAP_PERFMON). Differences from strace: calls are printed when they
finish (never split into <unfinished ...>/<... resumed>); signals appear when delivered to a
handler or a default action, not when ignored; structure arguments strace expands are shown
for stat, wait4, pipe, sockaddr and execve's argv, as addresses otherwise.")]
struct Args {
    /// Follow forks, clones and threads: new tasks of a traced task are traced too, and lines
    /// get a `[pid N]` prefix (`N ` with -o).
    #[arg(short = 'f')]
    follow: bool,

    /// Trace running processes (comma-separated pids) instead of starting a command; Ctrl-C
    /// detaches and leaves them running.
    #[arg(short = 'p', value_name = "PID[,PID…]", value_delimiter = ',')]
    pids: Vec<u32>,

    /// Which calls: `trace=NAME,…` with names, classes (%file %net %process %desc %memory
    /// %signal %ipc), `all`, `none`, and `!` to negate the set. Filtered in the kernel.
    #[arg(short = 'e', value_name = "trace=EXPR")]
    expr: Option<String>,

    /// Print at most N bytes of strings and buffers (a read's data, a write's), as strace's -s.
    #[arg(short = 's', value_name = "N", default_value_t = 32)]
    string_size: usize,

    /// Count time, calls and errors per system call (in the kernel) and print strace's summary
    /// table at the end instead of the calls.
    #[arg(short = 'c')]
    summary: bool,

    /// Show the time spent in each call, `<0.000123>`.
    #[arg(short = 'T')]
    durations: bool,

    /// Prefix each line with the time of day; twice (-tt) with microseconds.
    #[arg(short = 't', action = clap::ArgAction::Count)]
    timestamps: u8,

    /// Write the trace to FILE instead of stderr.
    #[arg(short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,

    /// One JSON object per call (and per exit and signal), one per line.
    #[arg(long)]
    json: bool,

    /// Bytes of the ring buffer the calls travel through (a power of two, at least 4096). A
    /// larger one rides out longer bursts; whatever does not fit is counted and reported.
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20, value_parser = ring_size)]
    ring_size: u32,

    /// The command to start and trace (after `--` when its arguments look like options).
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

fn ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("`{s}` is not a number of bytes"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n}: the ring buffer's size is a power of two, at least 4096"));
    }
    Ok(n)
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bpfkit-strace: {e}");
            std::process::exit(1);
        }
    }
}

/// Where lines go, and how each is prefixed.
struct Out {
    sink: Box<dyn Write>,
    to_file: bool,
    follow: bool,
    timestamps: u8,
    durations: bool,
    json: bool,
    string_size: usize,
    /// Wall-clock time minus the monotonic clock (ktime) at start, in ns.
    wall_minus_mono: i128,
    tasks_seen: std::collections::BTreeSet<u32>,
}

impl Out {
    fn prefix(&mut self, tid: u32, ts: u64) -> String {
        self.tasks_seen.insert(tid);
        let mut p = String::new();
        if self.follow && self.to_file {
            p.push_str(&format!("{tid:<5} "));
        } else if self.follow && self.tasks_seen.len() > 1 {
            p.push_str(&format!("[pid {tid:>5}] "));
        }
        if self.timestamps > 0 {
            let wall = (ts as i128 + self.wall_minus_mono).max(0) as u64;
            let secs = wall / 1_000_000_000;
            let local = chrono::DateTime::from_timestamp(secs as i64, (wall % 1_000_000_000) as u32).map(|t| t.with_timezone(&chrono::Local));
            if let Some(t) = local {
                p.push_str(&if self.timestamps > 1 { t.format("%H:%M:%S%.6f ").to_string() } else { t.format("%H:%M:%S ").to_string() });
            }
        }
        p
    }

    fn record(&mut self, r: &Record) -> Result<(), Error> {
        if self.json {
            return self.json_line(r);
        }
        let line = match r.kind {
            KIND_EXIT => {
                let prefix = self.prefix(r.tid, r.ts_enter);
                let code = r.nr;
                if code & 0x7f == 0 {
                    format!("{prefix}+++ exited with {} +++", (code >> 8) & 0xff)
                } else {
                    format!("{prefix}+++ killed by {}{} +++", decode::signal_name(i64::from(code & 0x7f)), if code & 0x80 != 0 { " (core dumped)" } else { "" })
                }
            }
            KIND_SIGNAL => {
                let prefix = self.prefix(r.tid, r.ts_enter);
                format!("{prefix}--- {} {} ---", decode::signal_name(i64::from(r.nr)), siginfo(r))
            }
            _ => {
                let prefix = self.prefix(r.tid, r.ts_enter);
                let (call, mut result) = decode::call(r, self.string_size);
                if self.durations && r.flags & record::FLAG_NORETURN == 0 {
                    let d = r.ts_exit.saturating_sub(r.ts_enter);
                    result.push_str(&format!(" <{}.{:06}>", d / 1_000_000_000, (d % 1_000_000_000) / 1000));
                }
                text::finished(&prefix, &call, &result)
            }
        };
        writeln!(self.sink, "{line}")?;
        Ok(())
    }

    fn json_line(&mut self, r: &Record) -> Result<(), Error> {
        let v = match r.kind {
            KIND_EXIT => serde_json::json!({"pid": r.tid, "tgid": r.tgid, "event": "exit", "status": (r.nr >> 8) & 0xff, "signal": r.nr & 0x7f}),
            KIND_SIGNAL => serde_json::json!({"pid": r.tid, "tgid": r.tgid, "event": "signal", "signal": decode::signal_name(i64::from(r.nr)), "siginfo": siginfo(r)}),
            _ => {
                let (call, result) = decode::call(r, self.string_size);
                let name = decode::name(r.nr);
                let args = call.strip_prefix(&format!("{name}(")).and_then(|s| s.strip_suffix(')')).unwrap_or_default().to_string();
                let error = decode::error_result(r.ret).map(|e| e.split_whitespace().nth(1).unwrap_or_default().to_string());
                let returns = r.flags & record::FLAG_NORETURN == 0;
                serde_json::json!({
                    "pid": r.tid, "tgid": r.tgid, "syscall": name, "nr": r.nr, "args": args,
                    "raw_args": r.args, "return": if returns { serde_json::json!(r.ret) } else { serde_json::Value::Null },
                    "result": result, "error": error,
                    "start_ns": r.ts_enter, "duration_ns": if returns { r.ts_exit.saturating_sub(r.ts_enter) } else { 0 },
                })
            }
        };
        writeln!(self.sink, "{v}")?;
        Ok(())
    }
}

/// The siginfo as strace prints it: `{si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=…, …}`.
fn siginfo(r: &Record) -> String {
    let sig = decode::signal_name(i64::from(r.nr));
    let code = r.args[0] as i32;
    let (pid, uid) = (r.args[1] as i32, r.args[2] as u32);
    let mut s = format!("{{si_signo={sig}, si_code={}", si_code(r.nr, code));
    match (r.nr, code) {
        (17, 1..=6) => {
            let status = r.args[3] as i32;
            let status = if code == 1 { status.to_string() } else { decode::signal_name(i64::from(status)) };
            s.push_str(&format!(", si_pid={pid}, si_uid={uid}, si_status={status}, si_utime={}, si_stime={}", r.args[4], r.args[5]));
        }
        (4 | 7 | 8 | 11, c) if c > 0 => s.push_str(&format!(", si_addr={}", text::pointer(r.args[1]))),
        (_, c) if c <= 0 => s.push_str(&format!(", si_pid={pid}, si_uid={uid}")),
        _ => {}
    }
    s.push('}');
    s
}

/// A signal's `si_code` as strace names the common ones.
fn si_code(sig: u32, code: i32) -> String {
    match (sig, code) {
        (_, 0) => "SI_USER".into(),
        (_, 0x80) => "SI_KERNEL".into(),
        (_, -1) => "SI_QUEUE".into(),
        (_, -6) => "SI_TKILL".into(),
        (17, 1) => "CLD_EXITED".into(),
        (17, 2) => "CLD_KILLED".into(),
        (17, 3) => "CLD_DUMPED".into(),
        (17, 5) => "CLD_STOPPED".into(),
        (11, 1) => "SEGV_MAPERR".into(),
        (11, 2) => "SEGV_ACCERR".into(),
        (_, c) => c.to_string(),
    }
}

fn monotonic_ns() -> i128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128
}

fn run(args: Args) -> Result<i32, Error> {
    if args.command.is_empty() && args.pids.is_empty() {
        return Err("nothing to trace: give a command after `--`, or -p PID".into());
    }
    if !args.command.is_empty() && !args.pids.is_empty() {
        return Err("give either a command or -p, not both".into());
    }
    let selected = match args.expr.as_deref() {
        None => filter::parse("all")?,
        Some(e) => filter::parse(e.strip_prefix("trace=").unwrap_or(e))?,
    };
    let cfg = Config { buf_max: args.string_size.clamp(1, 4096), follow: args.follow, summary: args.summary, ring_size: args.ring_size };
    let mut tracer = Tracer::load(&cfg).map_err(|e| format!("loading the kernel programs: {e}"))?;
    for &nr in &selected {
        if nr < kernel::NR_MAX {
            tracer.maps.select(nr, &decode::spec(&decode::name(nr)))?;
        }
    }
    // The tasks: a command held before its exec, or the given processes' threads.
    let mut child = None;
    if args.command.is_empty() {
        for &pid in &args.pids {
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).map_err(|e| format!("process {pid}: {e}"))?;
            for t in tasks {
                let tid: u32 = t?.file_name().to_string_lossy().parse()?;
                if args.follow || tid == pid {
                    tracer.maps.trace(tid)?;
                }
            }
        }
    } else {
        let paused = PausedChild::spawn(&args.command[0], &args.command).map_err(|e| format!("{}: {e}", args.command[0].to_string_lossy()))?;
        tracer.maps.trace_from_exec(paused.id())?;
        child = Some(paused);
    }
    tracer.attach().map_err(|e| format!("attaching to the tracepoints: {e}"))?;

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    // As strace says it: from here on, the processes' calls are seen.
    for pid in &args.pids {
        eprintln!("bpfkit-strace: Process {pid} attached");
    }

    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?)),
        None => Box::new(std::io::stderr()),
    };
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as i128;
    let mut out = Out {
        sink,
        to_file: args.output.is_some(),
        follow: args.follow,
        timestamps: args.timestamps,
        durations: args.durations,
        json: args.json,
        string_size: args.string_size,
        wall_minus_mono: wall - monotonic_ns(),
        tasks_seen: Default::default(),
    };
    let mut ring = RingBuf::new(&tracer.maps.events)?;
    let mut status = None;
    if let Some(c) = child.as_mut() {
        c.resume().map_err(|e| format!("{}: {e}", args.command[0].to_string_lossy()))?;
    }
    // The command's end, seen by a thread (waitpid blocks).
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    if let Some(mut c) = child.take() {
        std::thread::spawn(move || {
            let _ = done_tx.send(c.wait());
        });
    }
    let mut failed: Option<Error> = None;
    loop {
        // Short waits: the end of the command is noticed within 10 ms of the last record.
        ring.poll(Some(Duration::from_millis(10)), |bytes| {
            if failed.is_some() {
                return;
            }
            if let Some(r) = Record::parse(bytes) {
                if let Err(e) = out.record(&r) {
                    failed = Some(e);
                }
            }
        })?;
        if let Some(e) = failed.take() {
            return Err(e);
        }
        if status.is_none() {
            if let Ok(s) = done_rx.try_recv() {
                status = Some(s?);
            }
        }
        let command_done = !args.command.is_empty() && status.is_some();
        let tasks_left = tracer.maps.tids.keys().next().is_some();
        let pids_gone = args.command.is_empty() && !args.pids.iter().any(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if interrupted.load(Ordering::SeqCst) || (command_done && (!args.follow || !tasks_left)) || pids_gone {
            break;
        }
    }
    tracer.detach();
    // What arrived before the links went.
    ring.drain(|bytes| {
        if let Some(r) = Record::parse(bytes) {
            let _ = out.record(&r);
        }
    });
    if args.summary {
        summary::print(&tracer.maps.stats, &mut out.sink)?;
    }
    let lost = tracer.lost()?;
    out.sink.flush()?;
    if lost > 0 {
        eprintln!("bpfkit-strace: {lost} call{} not shown: the ring buffer was full (the consumer fell behind)", if lost == 1 { "" } else { "s" });
    }
    if interrupted.load(Ordering::SeqCst) && !args.command.is_empty() && status.is_none() {
        eprintln!("bpfkit-strace: interrupted; detached (the command goes on untraced)");
    }
    // The command's own exit status, as strace returns it.
    Ok(match status {
        Some(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
        }
        None => 0,
    })
}
