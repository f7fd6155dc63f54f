//! Lab 13.3 — a metrics exporter (tutorial/ch13-events.md). Two tracepoint programs aggregate in
//! the kernel: execs of the lab's children by program name (`sched:sched_process_exec`, a hash
//! map of counters) and the sizes of the lab's writes to `/dev/null` (`syscalls:sys_enter_write`,
//! an array of power-of-two buckets and a byte total). User space reads the maps on every scrape
//! and serves them as a counter family and a histogram in the Prometheus text format
//! (`prometheus-client`) on an HTTP `/metrics` endpoint. A Prometheus server the lab starts
//! scrapes it every second; the lab checks the text with `promtool check metrics` and asks
//! Prometheus' HTTP API for the values, which must equal what the lab did.
//!
//! Run as root: `cargo run --example lab_13_3` (needs `prometheus`: `scripts/setup.sh`). The
//! same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{counter_increment, map_lookup, tgid_filter};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;
const LARGEST: u32 = 12; // histogram buckets: le = 1, 2, 4, … 4096 bytes, then +Inf

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


/// The kernel's maps, read on every scrape: a `Collector` hands prometheus-client values it did
/// not count itself.
#[derive(Debug)]
struct KernelMetrics {
    execs: Map, // comm -> u64
    sizes: Map, // k -> writes of at most 2^k bytes (and more than 2^(k-1))
    bytes: Map, // [0]: total bytes
}

/// What the maps hold at one scrape.
struct Snapshot {
    execs: BTreeMap<String, u64>,
    buckets: Vec<(f64, u64)>, // (upper bound, count in this bucket): the encoder accumulates
    sum: u64,
    count: u64,
}

impl KernelMetrics {
    fn read(&self) -> Result<Snapshot, bpfkit::maps::MapError> {
        let mut execs = BTreeMap::new();
        for entry in self.execs.typed::<[u8; 16], u64>()?.iter() {
            let (comm, n) = entry?;
            execs.insert(String::from_utf8_lossy(comm.split(|b| *b == 0).next().unwrap_or_default()).into_owned(), n);
        }
        let sizes = self.sizes.typed::<u32, u64>()?;
        let mut buckets = Vec::new();
        let mut count = 0;
        for k in 0..64 {
            let n = sizes.get(&k)?.unwrap_or(0);
            count += n;
            if k <= LARGEST {
                buckets.push((f64::from(1u32 << k), n));
            }
        }
        Ok(Snapshot { execs, buckets, sum: self.bytes.typed::<u32, u64>()?.get(&0)?.unwrap_or(0), count })
    }
}

impl Collector for KernelMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.read().map_err(|_| std::fmt::Error)?; // a failed read fails the scrape
        let mut family = encoder.encode_descriptor("bpfkit_lab13_execs", "Programs the lab's children ran, by name (sched_process_exec).", None, MetricType::Counter)?;
        for (comm, n) in &now.execs {
            ConstCounter::new(*n).encode(family.encode_family(&[("comm", comm.as_str())])?)?;
        }
        let mut histogram = encoder.encode_descriptor("bpfkit_lab13_write_size", "Sizes of the lab's writes to /dev/null (sys_enter_write).", Some(&Unit::Bytes), MetricType::Histogram)?;
        histogram.encode_histogram::<NoLabelSet>(now.sum as f64, now.count, &now.buckets, None)
    }
}

/// Sets its flag when dropped: on return, on error, and while a panic unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The `/metrics` endpoint: one request per connection, until `stop`.
fn serve(listener: &TcpListener, registry: &Registry, scrapes: &Counter, stop: &AtomicBool) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Acquire) {
        let mut conn = match listener.accept() {
            Ok((conn, _)) => conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut answer = || -> Result<(), Error> {
            conn.set_nonblocking(false)?;
            conn.set_read_timeout(Some(Duration::from_secs(2)))?;
            let (mut request, mut buf) = (Vec::new(), [0u8; 1024]);
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let (status, body) = if request.starts_with(b"GET /metrics ") {
                scrapes.inc();
                let mut text = String::new();
                prometheus_text::encode(&mut text, registry)?;
                ("200 OK", text)
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let head = format!("HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", prometheus_text::CONTENT_TYPE, body.len());
            conn.write_all(head.as_bytes())?;
            conn.write_all(body.as_bytes())?;
            Ok(())
        };
        if let Err(e) = answer() {
            eprintln!("/metrics: {e}"); // one bad request does not stop the exporter
        }
    }
    Ok(())
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 13.3") {
        return Ok(());
    }
    let lab = std::process::id();
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let write = TracepointFormat::read("syscalls", "sys_enter_write")?;
    let (fd_at, count_at) = (write.offset_of("fd")?, write.offset_of("count")?);
    let metrics = KernelMetrics {
        execs: Map::create(&MapSpec::new("execs", MapType::Hash, 16, 8, 256))?,
        sizes: Map::create(&MapSpec::new("sizes", MapType::Array, 4, 8, 65))?,
        bytes: Map::create(&MapSpec::new("bytes", MapType::Array, 4, 8, 1))?,
    };
    let on_exec = bpf_asm! {
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
        r1 = r10
        r1 += -16
        r2 = 16
        call bpf_get_current_comm       // the key: the name after the exec, NUL-padded
        {counter_increment("execs", -16, -24)?}
    out:
        r0 = 0
        exit
    };
    let on_write = bpf_asm! {
        r6 = *(u32 *)(r1 + {fd_at})
        r7 = *(u64 *)(r1 + {count_at})  // the write's size
        if r6 != {devnull.as_raw_fd()} goto out
        {tgid_filter(lab, "out")?}
        if r7 == 0 goto out
        r1 = r7                         // k: the smallest with size <= 2^k, i.e. 1 + log2(size - 1)
        r1 -= 1
        r2 = 0
        if r1 == 0 goto found
        r2 = 1
        r3 = r1
        r3 >>= 32
        if r3 == 0 goto b16
        r1 = r3
        r2 += 32
    b16: if r1 < 0x10000 goto b8
        r1 >>= 16
        r2 += 16
    b8: if r1 < 0x100 goto b4
        r1 >>= 8
        r2 += 8
    b4: if r1 < 0x10 goto b2
        r1 >>= 4
        r2 += 4
    b2: if r1 < 4 goto b1
        r1 >>= 2
        r2 += 2
    b1: if r1 < 2 goto found
        r2 += 1
    found:
        *(u32 *)(r10 - 4) = w2
        {map_lookup("sizes", -4, "out")?}
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1     // sizes[k] += 1
        *(u32 *)(r10 - 4) = 0
        {map_lookup("bytes", -4, "out")?}
        lock *(u64 *)(r0 + 0) += r7     // bytes[0] += size
    out:
        r0 = 0
        exit
    };
    let maps = [&metrics.execs, &metrics.sizes, &metrics.bytes];
    let on_exec = Program::load(&on_exec.assemble()?, &maps, &LoadOptions::new("count_execs", ProgType::Tracepoint))?;
    let on_write = Program::load(&on_write.assemble()?, &maps, &LoadOptions::new("write_sizes", ProgType::Tracepoint))?;

    // The exporter: the kernel's maps through the collector, and a metric of its own.
    let scrapes = Counter::<u64>::default();
    let mut registry = Registry::default();
    registry.register("bpfkit_lab13_scrapes", "Scrapes of this exporter", scrapes.clone()); // the registry adds the period
    registry.register_collector(Box::new(metrics));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let target = listener.local_addr()?;
    let config = format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lab13_3\n    static_configs:\n      - targets: ['{target}']\n");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<(), Error> {
        let stopper = StopOnDrop(&stop); // a failed assertion below must not leave the scope waiting for the server
        let server = s.spawn(|| serve(&listener, &registry, &scrapes, &stop));
        let result = (|| -> Result<(), Error> {
            let prometheus = Prometheus::start(&config, &[])?;
            let links = [on_exec.attach_tracepoint("sched", "sched_process_exec")?, on_write.attach_tracepoint("syscalls", "sys_enter_write")?];
            // The workload: programs run, and writes of known sizes.
            let runs: [(&str, &[&str]); 6] = [("/usr/bin/true", &[]), ("/usr/bin/true", &[]), ("/usr/bin/true", &[]), ("/usr/bin/echo", &["hi"]), ("/usr/bin/echo", &["ho"]), ("/usr/bin/sleep", &["0"])];
            for (program, args) in runs {
                Command::new(program).args(args).stdout(Stdio::null()).status()?;
            }
            let sizes: Vec<usize> = (0..300).map(|i| (i * 53) % 4096 + 1).chain([1, 2, 4096, 5000]).collect();
            let buf = [0u8; 5000];
            for &size in &sizes {
                (&devnull).write_all(&buf[..size])?; // one write(2) each
            }
            drop(links);

            // Two more scrapes: the first surely saw all of it, the second began after it was stored.
            let (from, deadline) = (scrapes.get(), Instant::now() + Duration::from_secs(10));
            while scrapes.get() < from + 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let text = ureq::get(format!("http://{target}/metrics")).call()?.body_mut().read_to_string()?;
            let mut promtool = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
            promtool.stdin.take().ok_or("promtool's stdin")?.write_all(text.as_bytes())?;
            let checked = promtool.wait_with_output()?;
            println!("{}", text.trim_end());
            let problems = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
            println!("promtool check metrics: {}", if checked.status.success() { "no problems" } else { problems.trim() });
            assert!(checked.status.success(), "promtool check metrics ({}): {problems}", checked.status); // 3: lint problems, 1: not parsable

            // What Prometheus scraped, from its HTTP API.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs_f64();
            let by = |promql: &str, label: &str| -> Result<BTreeMap<String, f64>, Error> {
                let answer = prometheus.query(promql, now)?;
                Ok(answer.into_iter().map(|(labels, v)| (labels.into_iter().find(|(k, _)| k == label).map(|(_, v)| v).unwrap_or_default(), v)).collect())
            };
            let up = by("up{job=\"lab13_3\"}", "job")?;
            let execs = by("bpfkit_lab13_execs_total", "comm")?;
            let buckets = by("bpfkit_lab13_write_size_bytes_bucket", "le")?;
            let (sum, count) = (by("bpfkit_lab13_write_size_bytes_sum", "job")?, by("bpfkit_lab13_write_size_bytes_count", "job")?);
            let median = by("histogram_quantile(0.5, bpfkit_lab13_write_size_bytes_bucket)", "job")?;
            println!("Prometheus: up {up:?}, {} scrapes served", scrapes.get());
            println!("  bpfkit_lab13_execs_total by comm: {execs:?}");
            println!("  write sizes: count {count:?}, sum {sum:?}, median estimate {median:?}");
            let mut shown: Vec<(f64, f64)> = buckets.iter().map(|(le, n)| (le.parse().unwrap_or(f64::NAN), *n)).collect();
            shown.sort_by(|a, b| a.0.total_cmp(&b.0));
            println!("  buckets: {}", shown.iter().map(|(le, n)| format!("le={le}:{n}")).collect::<Vec<_>>().join(" "));

            // What the lab did.
            let mut want_execs = BTreeMap::new();
            for (program, _) in runs {
                *want_execs.entry(program.rsplit('/').next().unwrap_or(program).to_string()).or_insert(0.0) += 1.0;
            }
            let mut want_buckets: BTreeMap<String, f64> = (0..=LARGEST).map(|k| ((1u64 << k).to_string(), 0.0)).collect();
            want_buckets.insert("+Inf".into(), sizes.len() as f64);
            for &size in &sizes {
                for k in 0..=LARGEST {
                    if size <= 1 << k {
                        *want_buckets.entry((1u64 << k).to_string()).or_default() += 1.0;
                    }
                }
            }
            let job = |v: f64| BTreeMap::from([("lab13_3".to_string(), v)]);
            assert_eq!(up, job(1.0), "Prometheus scrapes the exporter");
            assert_eq!(execs, want_execs, "execs by program name");
            assert_eq!(buckets, want_buckets, "cumulative bucket counts");
            assert_eq!(count, job(sizes.len() as f64));
            assert_eq!(sum, job(sizes.iter().sum::<usize>() as f64));
            Ok(())
        })();
        drop(stopper); // the server thread ends
        server.join().expect("the /metrics server")?;
        result
    })
}
