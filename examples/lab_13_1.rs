//! Lab 13.1 — a real-time event stream processor (tutorial/ch13-events.md). Three tracepoint
//! programs (`sched:sched_process_exec`, `syscalls:sys_enter_openat`, `sched:sched_process_exit`)
//! send one structured record per exec, open and exit of this process's children to a ring
//! buffer, built in place with reserve/submit. User space parses the records, filters them
//! (only opens under the lab's directory), aggregates them into 200 ms windows and forwards
//! counters to a Prometheus server it starts (remote write: snappy-compressed protobuf). It then
//! asks Prometheus for the series and checks they equal what the lab's workload did.
//!
//! Run as root: `cargo run --example lab_13_1` (needs `prometheus`: `scripts/setup.sh`). The
//! same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{counter_increment, ringbuf_reserve, ringbuf_submit};
use bpfkit::insn::{Program as Insns, Reg};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bpfkit::refs::{Entry, RefError, RingStream};
use bytemuck::{Pod, Zeroable};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;
const EXEC: u32 = 1;
const OPEN: u32 = 2;
const EXIT: u32 = 3;
const WINDOW_MS: i64 = 200; // the processor's tumbling windows
const LATENESS_MS: i64 = 100; // how long a window stays open for records still on their way

/// One event, as the programs write it into the ring (168 bytes).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Event {
    kind: u32,
    pid: u32,
    ts_ns: u64,      // bpf_ktime_get_ns: CLOCK_MONOTONIC
    value: u64,      // open: the flags; exit: task->exit_code (status << 8 | signal)
    comm: [u8; 16],  // the task's name after the exec
    path: [u8; 128], // exec: the file run; open: the file opened
}

/// The record as the processor sees it, parsed.
#[derive(Debug)]
enum Parsed {
    Exec { comm: String, path: String },
    Open { comm: String, path: String },
    Exit { comm: String, code: u64 },
}

fn c_str(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

fn parse(e: &Event) -> Option<Parsed> {
    let comm = c_str(&e.comm);
    match e.kind {
        EXEC => Some(Parsed::Exec { comm, path: c_str(&e.path) }),
        OPEN => Some(Parsed::Open { comm, path: c_str(&e.path) }),
        EXIT => Some(Parsed::Exit { comm, code: e.value >> 8 & 0xff }),
        _ => None,
    }
}

/// The messages of Prometheus' remote-write protocol (prompb/remote.proto, types.proto) that a
/// sender fills in.
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64, // milliseconds since the epoch
    }
}

/// A Prometheus server of the lab's own: a free localhost port, a scratch data directory, a
/// config file. Dropping it kills the server and removes the directory (on errors and panics
/// too); Ctrl-C does the same.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Prometheus {
    fn start(config: &str, flags: &[&str]) -> Result<Prometheus, Error> {
        let dir = tempfile::Builder::new().prefix("bpfkit-prometheus-").tempdir()?;
        std::fs::write(dir.path().join("prometheus.yml"), config)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(); // free now
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0); // Ctrl-C is ours to handle
        let child = command.spawn().map_err(|e| format!("starting prometheus: {e} (scripts/setup.sh installs Debian's prometheus)"))?;
        let (pid, path) = (child.id() as i32, dir.path().to_path_buf());
        ctrlc::set_handler(move || {
            unsafe { (libc::kill(pid, libc::SIGKILL), libc::waitpid(pid, std::ptr::null_mut(), 0)) };
            let _ = std::fs::remove_dir_all(&path);
            std::process::exit(130);
        })?;
        let mut server = Prometheus { child, dir, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ureq::get(format!("{}/-/ready", server.url)).call().is_err() {
            if server.child.try_wait()?.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(server.dir.path().join("prometheus.log"))?;
                return Err(format!("prometheus did not become ready:\n{}", log.lines().rev().take(5).collect::<Vec<_>>().join("\n")).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// `/api/v1/query` at `time` (seconds): each series' labels (without `__name__`) and value.
    fn query(&self, promql: &str, time: f64) -> Result<BTreeMap<Vec<(String, String)>, f64>, Error> {
        let body = ureq::get(format!("{}/api/v1/query", self.url)).query("query", promql).query("time", format!("{time:.3}")).call()?.body_mut().read_to_string()?;
        let answer: serde_json::Value = serde_json::from_str(&body)?;
        let mut out = BTreeMap::new();
        for series in answer["data"]["result"].as_array().ok_or_else(|| format!("{promql}: {body}"))? {
            let labels = series["metric"].as_object().ok_or("metric")?.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();
            out.insert(labels, series["value"][1].as_str().ok_or("value")?.parse()?);
        }
        Ok(out)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait(); // then `dir` is removed
    }
}

/// The first part of each program: only children of `lab` go on; an Event is reserved in the
/// ring (r8 points at it, r9 keeps the context) with its kind, pid, time and comm filled in.
fn start(lab: u32, kind: u32) -> Result<Insns, Error> {
    Ok(bpf_asm! {
        r9 = r1
        call bpf_get_current_task
        core_field_offset(r7, "task_struct", "real_parent")
        r0 += r7
        r1 = r10
        r1 += -8
        r2 = 8
        r3 = r0
        call bpf_probe_read_kernel      // current->real_parent
        r6 = *(u64 *)(r10 - 8)
        core_field_offset(r7, "task_struct", "tgid")
        r6 += r7
        r1 = r10
        r1 += -8
        r2 = 4
        r3 = r6
        call bpf_probe_read_kernel      // current->real_parent->tgid
        r1 = *(u32 *)(r10 - 8)
        if r1 != {lab as i32} goto out  // not a child of the lab
        {ringbuf_reserve("events", size_of::<Event>() as u32, Reg::R8, "full")?}
        *(u32 *)(r8 + 0) = {kind as i32}
        call bpf_get_current_pid_tgid
        r0 >>= 32
        *(u32 *)(r8 + 4) = w0
        call bpf_ktime_get_ns
        *(u64 *)(r8 + 8) = r0
        r1 = 0
        *(u64 *)(r8 + 16) = r1
        r1 = r8
        r1 += 24
        r2 = 16
        call bpf_get_current_comm       // into the record, in place
    })
}

/// The last part: submit; or, when the ring had no room, count the event as lost.
fn finish() -> Result<Insns, Error> {
    Ok(bpf_asm! {
        {ringbuf_submit(Reg::R8)?}
    out:
        r0 = 0
        exit
    full:
        *(u32 *)(r10 - 4) = 0
        {counter_increment("lost", -4, -16)?}
        r0 = 0
        exit
    })
}

/// Windows of events → Prometheus: cumulative counters per series, one sample per series and
/// window (Prometheus wants each series' samples in time order, one per timestamp).
struct Forwarder<'p> {
    prometheus: &'p Prometheus,
    open: BTreeMap<i64, BTreeMap<Vec<(String, String)>, u64>>, // window end (ms) -> series -> count
    totals: BTreeMap<Vec<(String, String)>, u64>,
    flushed_until: i64,
    samples: usize,
    requests: usize,
}

impl Forwarder<'_> {
    fn add(&mut self, at_ms: i64, series: Vec<(String, String)>) {
        let window = ((at_ms / WINDOW_MS + 1) * WINDOW_MS).max(self.flushed_until + WINDOW_MS); // a late record joins the next open window
        *self.open.entry(window).or_default().entry(series).or_default() += 1;
    }

    /// Send every window that ended before `until_ms`: one remote-write request each.
    fn flush(&mut self, until_ms: i64) -> Result<(), Error> {
        while let Some(entry) = self.open.first_entry().filter(|e| *e.key() <= until_ms) {
            let (end, counts) = entry.remove_entry();
            let mut request = prompb::WriteRequest::default();
            for (series, n) in counts {
                let total = self.totals.entry(series.clone()).or_default();
                *total += n;
                let labels = series.into_iter().map(|(name, value)| prompb::Label { name, value }).collect(); // sorted by name
                request.timeseries.push(prompb::TimeSeries { labels, samples: vec![prompb::Sample { value: *total as f64, timestamp: end }] });
            }
            let body = snap::raw::Encoder::new().compress_vec(&prost::Message::encode_to_vec(&request))?;
            ureq::post(format!("{}/api/v1/write", self.prometheus.url))
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .send(&body[..])?;
            self.samples += request.timeseries.len();
            self.requests += 1;
            self.flushed_until = end;
        }
        Ok(())
    }
}

/// Labels of a series, sorted by name as remote write requires.
fn series(name: &str, labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    all.push(("__name__".into(), name.into()));
    all.sort();
    all
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 13.1") {
        return Ok(());
    }
    let lab = std::process::id();
    let events = Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, 256 * 1024))?;
    let lost = Map::create(&MapSpec::new("lost", MapType::Array, 4, 8, 1))?;
    let exec_at = TracepointFormat::read("sched", "sched_process_exec")?.offset_of("filename")?;
    let open_at = TracepointFormat::read("syscalls", "sys_enter_openat")?;
    let (filename_at, flags_at) = (open_at.offset_of("filename")?, open_at.offset_of("flags")?);
    let exec = bpf_asm! {
        {start(lab, EXEC)?}
        r3 = *(u32 *)(r9 + {exec_at})   // __data_loc char[] filename: offset in the low 16 bits
        r3 &= 0xffff
        r3 += r9
        r1 = r8
        r1 += 40
        r2 = 128
        call bpf_probe_read_kernel_str
        {finish()?}
    };
    let open = bpf_asm! {
        {start(lab, OPEN)?}
        r1 = *(u64 *)(r9 + {flags_at})
        *(u64 *)(r8 + 16) = r1
        r3 = *(u64 *)(r9 + {filename_at}) // a user-space pointer
        r1 = r8
        r1 += 40
        r2 = 128
        call bpf_probe_read_user_str
        {finish()?}
    };
    let exit = bpf_asm! {
        call bpf_get_current_pid_tgid
        r1 = r0
        r1 >>= 32
        if w0 != w1 goto out            // a thread, not the process, is exiting
        {start(lab, EXIT)?}
        call bpf_get_current_task
        core_field_offset(r7, "task_struct", "exit_code")
        r0 += r7
        r1 = r8
        r1 += 16
        r2 = 4
        r3 = r0
        call bpf_probe_read_kernel      // set by do_exit() before the tracepoint
        {finish()?}
    };
    let load = |insns: Insns, name: &str| -> Result<Program, Error> { Ok(Program::load(&insns.assemble()?, &[&events, &lost], &LoadOptions::new(name, ProgType::Tracepoint))?) };
    let (exec, open, exit) = (load(exec, "on_exec")?, load(open, "on_open")?, load(exit, "on_exit")?);
    let lost = Entry::<u32, u64>::new(&lost, 0)?;

    let prometheus = Prometheus::start("global:\n  scrape_interval: 1m\n", &["--web.enable-remote-write-receiver"])?;
    let work = tempfile::Builder::new().prefix("bpfkit-lab13-").tempdir()?;
    let dir = work.path().to_str().ok_or("a UTF-8 temp path")?.to_string();
    std::fs::write(work.path().join("a.txt"), "alpha\n")?;
    std::fs::write(work.path().join("b.txt"), "beta\n")?;
    let (a, b, missing) = (format!("{dir}/a.txt"), format!("{dir}/b.txt"), format!("{dir}/missing.txt"));
    // The workload: (program, arguments, how many of the lab's files it opens).
    let workload: Vec<(&str, Vec<&str>, u64)> = vec![
        ("/usr/bin/cat", vec![&a, &b], 2),
        ("/usr/bin/cat", vec![&a, &b], 2),
        ("/usr/bin/cat", vec![&a, &b], 2),
        ("/usr/bin/cat", vec![&missing], 1),
        ("/usr/bin/sh", vec!["-c", "exit 3"], 0),
        ("/usr/bin/sh", vec!["-c", "exit 3"], 0),
        ("/usr/bin/head", vec!["-c", "4", &a], 1),
    ];
    let offset_ms = (clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC)) / 1_000_000; // kernel time -> wall clock
    let mut stream = RingStream::<Event>::new(&events)?;
    let links = [exec.attach_tracepoint("sched", "sched_process_exec")?, open.attach_tracepoint("syscalls", "sys_enter_openat")?, exit.attach_tracepoint("sched", "sched_process_exit")?];
    let done = AtomicBool::new(false);
    let mut forwarder = Forwarder { prometheus: &prometheus, open: BTreeMap::new(), totals: BTreeMap::new(), flushed_until: 0, samples: 0, requests: 0 };
    let (statuses, (received, filtered)) = std::thread::scope(|s| -> Result<_, Error> {
        let processor = s.spawn(|| -> Result<(u64, u64), Error> {
            let (mut received, mut filtered) = (0, 0);
            loop {
                let event = match stream.recv_timeout(Duration::from_millis(50)) {
                    Ok(event) => Some(event),
                    Err(RefError::Timeout { .. }) if done.load(Ordering::Acquire) => break, // every child has exited
                    Err(RefError::Timeout { .. }) => None,
                    Err(e) => return Err(e.into()),
                };
                if let Some(event) = event {
                    received += 1;
                    let at_ms = event.ts_ns as i64 / 1_000_000 + offset_ms;
                    match parse(&event).ok_or("an unknown event kind")? {
                        Parsed::Exec { comm, path } => {
                            println!("exec  {:>7} {comm:<5} {path}", event.pid);
                            forwarder.add(at_ms, series("lab13_events_total", &[("kind", "exec"), ("comm", &comm)]));
                        }
                        Parsed::Open { comm, path } if path.starts_with(&format!("{dir}/")) => {
                            println!("open  {:>7} {comm:<5} {path}", event.pid);
                            forwarder.add(at_ms, series("lab13_events_total", &[("kind", "open"), ("comm", &comm)]));
                        }
                        Parsed::Open { .. } => filtered += 1, // the loader's libraries, locales, …
                        Parsed::Exit { comm, code } => {
                            println!("exit  {:>7} {comm:<5} status {code}", event.pid);
                            forwarder.add(at_ms, series("lab13_events_total", &[("kind", "exit"), ("comm", &comm)]));
                            forwarder.add(at_ms, series("lab13_exits_total", &[("comm", &comm), ("code", &code.to_string())]));
                        }
                    }
                }
                forwarder.flush(clock_ns(libc::CLOCK_REALTIME) / 1_000_000 - LATENESS_MS)?; // real time: windows leave as they close
            }
            forwarder.flush(i64::MAX)?;
            Ok((received, filtered))
        });
        let mut statuses = Vec::new();
        for (program, args, _) in &workload {
            statuses.push(Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status());
            std::thread::sleep(Duration::from_millis(60)); // spread over a few windows
        }
        done.store(true, Ordering::Release); // even if a command failed: the processor must finish
        let processed = processor.join().expect("the processor")?;
        Ok((statuses.into_iter().collect::<std::io::Result<Vec<_>>>()?, processed))
    })?;
    drop(links);

    // What the lab caused, from the workload and the statuses the children returned.
    let mut expected_events: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    let mut expected_exits: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    for ((program, _, opens), status) in workload.iter().zip(&statuses) {
        let comm = program.rsplit('/').next().unwrap_or(program);
        let code = status.code().ok_or("a child was killed")?.to_string();
        for (kind, n) in [("exec", 1), ("open", *opens), ("exit", 1)] {
            if n > 0 {
                *expected_events.entry(vec![("comm".into(), comm.into()), ("kind".into(), kind.into())]).or_default() += n as f64;
            }
        }
        *expected_exits.entry(vec![("code".into(), code), ("comm".into(), comm.into())]).or_default() += 1.0;
    }
    // What the store says, at the time of the last sample.
    let at = forwarder.flushed_until as f64 / 1000.0;
    let stored_events = prometheus.query("lab13_events_total", at)?;
    let stored_exits = prometheus.query("lab13_exits_total", at)?;
    let stored_samples: f64 = prometheus.query("count_over_time({__name__=~\"lab13_.*\"}[5m])", at)?.values().sum();
    println!("{received} events received, {filtered} opens outside {dir} filtered out, {} lost", lost.load()?);
    println!("forwarded {} samples in {} remote-write requests; Prometheus holds {stored_samples}", forwarder.samples, forwarder.requests);
    println!("{:<40} {:>8} {:>8}", "series (from Prometheus)", "expected", "stored");
    for (labels, want) in expected_events.iter().chain(&expected_exits) {
        let name = if labels[0].0 == "code" { "lab13_exits_total" } else { "lab13_events_total" };
        let got = stored_events.get(labels).or(stored_exits.get(labels)).copied().unwrap_or(f64::NAN);
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{:<40} {want:>8} {got:>8}", format!("{name}{{{}}}", shown.join(",")));
    }
    assert_eq!(lost.load()?, 0, "the ring had room for every event");
    assert_eq!(stored_events, expected_events, "exec, open and exit counts per program");
    assert_eq!(stored_exits, expected_exits, "exit statuses");
    assert_eq!(stored_samples, forwarder.samples as f64, "every sample forwarded is stored");
    Ok(())
}
