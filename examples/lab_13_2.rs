//! Lab 13.2 — a log aggregator (tutorial/ch13-events.md). Two sources become one stream of JSON
//! lines: the kernel log, captured by a program on the `printk:console` tracepoint (where the
//! kernel has it: decided by probe) and filtered by level in the kernel; and the lab's own
//! `bpf_trace_printk` lines, read from the trace pipe. The console tracepoint carries the text
//! only, so the level comes from a second program: on `write(2)`, it parses the `<N>` prefix that
//! `/dev/kmsg` takes the level from and keeps it for the thread until the write returns (a third
//! program). The lab writes marked messages at known levels and checks that exactly those at
//! warning or above come out, from both sources.
//!
//! Run as root: `cargo run --example lab_13_2`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::events::{RingBuf, TracePipe};
use bpfkit::helpers::patterns::{counter_increment, map_lookup, ringbuf_reserve, ringbuf_submit, zero_stack};
use bpfkit::insn::{build, Program as Insns, Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bytemuck::{Pod, Zeroable};
use std::io::Write;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;
const MAX_LEVEL: i32 = 4; // warning: keep levels 0 (emerg) to 4, drop notice, info and debug
const UNKNOWN: i32 = 8; // no level seen: a message the kernel printed itself
const LEVELS: [&str; 8] = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
const SEEN: u32 = 0; // the console program's counters
const KEPT: u32 = 1;
const DROPPED: u32 = 2;

/// A console message, as the program writes it into the ring (256 bytes).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LogRecord {
    level: u32,
    pid: u32,
    ts_ns: u64,
    comm: [u8; 16],
    msg: [u8; 224],
}

fn c_str(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.split(|b| *b == 0).next().unwrap_or_default()).into_owned()
}

/// Store `text` and its NUL at `r10 + off` (8 bytes at a time): a format string for
/// `bpf_trace_printk`.
fn stack_string(off: i16, text: &str) -> Insns {
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(text.len() / 8 * 8 + 8, 0);
    let mut p = Insns::new();
    for (i, chunk) in bytes.chunks(8).enumerate() {
        p.push(build::ld_imm64(Reg::R1, u64::from_ne_bytes(chunk.try_into().unwrap())));
        p.push(build::stx(Size::DW, Reg::R10, off + 8 * i as i16, Reg::R1));
    }
    p
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 13.2") {
        return Ok(());
    }
    // The probe: is there a printk:console tracepoint on this kernel?
    let console = match TracepointFormat::read("printk", "console") {
        Ok(format) => Some(format.offset_of("msg")?),
        Err(e) => {
            println!("printk:console: not on this kernel ({e}); only the trace-pipe half runs");
            None
        }
    };
    let levels = Map::create(&MapSpec::new("levels", MapType::LruHash, 4, 4, 1024))?; // tid -> level of its write in progress
    let logs = Map::create(&MapSpec::new("logs", MapType::RingBuf, 0, 0, 64 * 1024))?;
    let stats = Map::create(&MapSpec::new("stats", MapType::Array, 4, 8, 3))?;
    let write = TracepointFormat::read("syscalls", "sys_enter_write")?;
    let (buf_at, count_at) = (write.offset_of("buf")?, write.offset_of("count")?);
    const FORMAT: &str = "lab13.2 level %d: %s";
    let on_write = bpf_asm! {
        r9 = r1
        r6 = *(u64 *)(r9 + {buf_at})    // const char *buf, in user space
        r1 = r10
        r1 += -8
        r2 = 4
        r3 = r6
        call bpf_probe_read_user        // its first 4 bytes
        if r0 != 0 goto out
        r1 = *(u8 *)(r10 - 8)
        if r1 != 60 goto out            // '<'
        r7 = *(u8 *)(r10 - 7)
        r7 -= 48                        // a digit?
        if r7 > 9 goto out
        r8 = 3                          // the text starts after "<d>" …
        r1 = *(u8 *)(r10 - 6)
        if r1 == 62 goto parsed         // '>'
        r1 -= 48
        if r1 > 9 goto out
        r7 *= 10
        r7 += r1
        r1 = *(u8 *)(r10 - 5)
        if r1 != 62 goto out
        r8 = 4                          // … or after "<dd>"
    parsed:
        r7 &= 7                         // the level: the low 3 bits (the rest is the facility)
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 12) = w0         // key: the thread
        *(u32 *)(r10 - 16) = w7
        r1 = map[levels] ll
        r2 = r10
        r2 += -12
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem        // levels[tid] = level, until the write returns
        if r7 > {MAX_LEVEL} goto out    // the trace-pipe half filters by level too
        {zero_stack(-88, 64)?}
        r3 = r6
        r3 += r8
        r2 = *(u64 *)(r9 + {count_at})  // the text is count bytes, not NUL-terminated
        r2 -= r8
        if r2 s< 0 goto out
        if r2 <= 63 goto copy
        r2 = 63
    copy:
        r1 = r10
        r1 += -88
        call bpf_probe_read_user        // the text, up to 63 bytes; a NUL stays after it
        if r0 != 0 goto out
        {stack_string(-112, FORMAT)}
        r1 = r10
        r1 += -112
        r2 = {FORMAT.len() as i32 + 1}
        r3 = r7
        r4 = r10
        r4 += -88
        call bpf_trace_printk
    out:
        r0 = 0
        exit
    };
    let on_write_exit = bpf_asm! {
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 4) = w0
        r1 = map[levels] ll
        r2 = r10
        r2 += -4
        call bpf_map_delete_elem        // the write is over (most threads had no entry)
        r0 = 0
        exit
    };
    let load = |insns: Insns, name: &str| -> Result<Program, Error> { Ok(Program::load(&insns.assemble()?, &[&levels, &logs, &stats], &LoadOptions::new(name, ProgType::Tracepoint))?) };
    let (on_write, on_write_exit) = (load(on_write, "kmsg_level")?, load(on_write_exit, "kmsg_level_end")?);
    let on_console = match console {
        Some(msg_at) => Some(load(
            bpf_asm! {
                r9 = r1
                call bpf_get_current_pid_tgid
                *(u32 *)(r10 - 4) = w0
                r8 = {UNKNOWN}
                {map_lookup("levels", -4, "counted")?}
                r8 = *(u32 *)(r0 + 0)   // the level the writer gave
            counted:
                *(u32 *)(r10 - 8) = {SEEN as i32}
                {counter_increment("stats", -8, -24)?}
                if r8 == {UNKNOWN} goto keep
                if r8 > {MAX_LEVEL} goto drop // the filter, in the kernel
            keep:
                {ringbuf_reserve("logs", size_of::<LogRecord>() as u32, Reg::R7, "out")?}
                *(u32 *)(r7 + 0) = w8
                call bpf_get_current_pid_tgid
                r0 >>= 32
                *(u32 *)(r7 + 4) = w0
                call bpf_ktime_get_ns
                *(u64 *)(r7 + 8) = r0
                r1 = r7
                r1 += 16
                r2 = 16
                call bpf_get_current_comm
                r3 = *(u32 *)(r9 + {msg_at}) // __data_loc char[] msg
                r3 &= 0xffff
                r3 += r9
                r1 = r7
                r1 += 32
                r2 = 224
                call bpf_probe_read_kernel_str
                {ringbuf_submit(Reg::R7)?}
                *(u32 *)(r10 - 8) = {KEPT as i32}
                {counter_increment("stats", -8, -24)?}
                goto out
            drop:
                *(u32 *)(r10 - 8) = {DROPPED as i32}
                {counter_increment("stats", -8, -24)?}
            out:
                r0 = 0
                exit
            },
            "console_logs",
        )?),
        None => None,
    };

    let mut pipe = TracePipe::open()?;
    let mut ring = RingBuf::new(&logs)?;
    let mut links = vec![on_write.attach_tracepoint("syscalls", "sys_enter_write")?, on_write_exit.attach_tracepoint("syscalls", "sys_exit_write")?];
    if let Some(prog) = &on_console {
        links.push(prog.attach_tracepoint("printk", "console")?);
    }
    // The messages: (priority as written, text). The level is the priority's low 3 bits; 12 and
    // 14 are the "user" facility's warning and info.
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_micros();
    let marker = format!("lab13.2-{}-{nonce}", std::process::id()); // this run's messages, and no one else's
    let messages = [(3, "disk on fire"), (4, "fan is slow"), (5, "new disk seen"), (6, "all good"), (7, "tick"), (12, "user warning"), (14, "user info")];
    let mut kmsg = std::fs::OpenOptions::new().write(true).open("/dev/kmsg")?;
    for (priority, text) in messages {
        kmsg.write_all(format!("<{priority}>{marker} {text}").as_bytes())?; // one write(2), one message
    }
    drop(links);
    let expected: Vec<(String, String)> = messages.iter().filter(|(p, _)| p & 7 <= MAX_LEVEL).map(|(p, t)| (LEVELS[(p & 7) as usize].to_string(), format!("{marker} {t}"))).collect();

    // One stream of JSON lines from both sources.
    let offset_ns = {
        let (mut real, mut mono) = (libc::timespec { tv_sec: 0, tv_nsec: 0 }, libc::timespec { tv_sec: 0, tv_nsec: 0 });
        unsafe { (libc::clock_gettime(libc::CLOCK_REALTIME, &mut real), libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut mono)) };
        (real.tv_sec - mono.tv_sec) * 1_000_000_000 + real.tv_nsec - mono.tv_nsec
    };
    let mut lines: Vec<serde_json::Value> = Vec::new();
    ring.drain(|r| {
        let r: LogRecord = bytemuck::pod_read_unaligned(r);
        lines.push(serde_json::json!({
            "source": "printk:console",
            "time_ms": (r.ts_ns as i64 + offset_ns) / 1_000_000,
            "level": LEVELS.get(r.level as usize), // null: the kernel's own message
            "pid": r.pid,
            "comm": c_str(&r.comm),
            "msg": c_str(&r.msg),
        }));
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut traced = 0;
    while traced < expected.len() && Instant::now() < deadline {
        for line in pipe.read_lines(Duration::from_millis(200))? {
            // "    lab_13_2-1234    [001] ..... 1234.5678: bpf_trace_printk: lab13.2 level 3: text"
            let Some((head, text)) = line.split_once("bpf_trace_printk: lab13.2 level ") else { continue };
            let Some((level, msg)) = text.split_once(": ") else { continue };
            let task = head.split(" [").next().unwrap_or_default().trim();
            traced += usize::from(msg.starts_with(&marker));
            lines.push(serde_json::json!({
                "source": "trace_pipe",
                "level": level.parse::<usize>().ok().and_then(|l| LEVELS.get(l)),
                "task": task,
                "msg": msg,
            }));
        }
    }
    for line in &lines {
        println!("{line}");
    }
    let from = |source: &str| -> Vec<(String, String)> {
        lines.iter().filter(|l| l["source"] == source && l["msg"].as_str().is_some_and(|m| m.starts_with(&marker))).map(|l| (l["level"].as_str().unwrap_or("?").to_string(), l["msg"].as_str().unwrap_or_default().to_string())).collect()
    };
    assert_eq!(from("trace_pipe"), expected, "bpf_trace_printk: exactly the marked messages at warning or above");
    if on_console.is_some() {
        let stats = stats.typed::<u32, u64>()?;
        let (seen, kept, dropped) = (stats.get(&SEEN)?.unwrap_or(0), stats.get(&KEPT)?.unwrap_or(0), stats.get(&DROPPED)?.unwrap_or(0));
        println!("printk:console: {seen} messages seen, {kept} kept, {dropped} dropped by level in the kernel");
        assert_eq!(from("printk:console"), expected, "printk:console: exactly the marked messages at warning or above");
        assert!(dropped >= (messages.len() - expected.len()) as u64, "the lower levels were dropped in the kernel");
        assert_eq!(seen, kept + dropped);
    }
    Ok(())
}
