//! Lab 15.2 — a producer–consumer pipeline (tutorial/ch15-references.md). A program on
//! `syscalls:sys_enter_write` sends one ring buffer record per write this process makes to
//! `/dev/null`; four writer threads make 2000 of them. Three stages, each a thread, joined by
//! queue maps through `refs::channel`: *filter* (drops writes under 256 bytes; into a queue of
//! 8 with `try_send`, so a full queue drops the record and counts it), *enrich* (joins the
//! thread id with the writers' table — slowly, as a real lookup would be — and passes records
//! on with `send_timeout`: lossless, it waits for room) and *aggregate* (per writer and per
//! size). Every record is accounted for: produced = aggregated + filtered + dropped.
//!
//! Run as root: `cargo run --example lab_15_2`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{map_lookup, ringbuf_output, tgid_filter};
use bpfkit::maps::{Map, MapFlags, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bpfkit::refs::{channel, Entry, RefError, RingStream};
use bytemuck::{Pod, Zeroable};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
const WRITERS: usize = 4;
const WRITES: usize = 500; // per writer
const MIN_BYTES: u64 = 256; // the filter keeps writes of at least this many bytes
const END: u64 = u64::MAX; // `bytes` of the record that ends the stream
const STALL: Duration = Duration::from_secs(5); // a stage that failed must not leave its neighbours waiting for ever
type Totals = BTreeMap<(u32, u32), (u64, u64)>; // (writer, log2 of the size) -> (writes, bytes)

/// What the program sends: one write(2) call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct WriteCall {
    tid: u32,
    fd: u32,
    bytes: u64,
}

/// What *enrich* passes on: the write, with the writer's number instead of its thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct Enriched {
    writer: u32,
    log2: u32,
    bytes: u64,
}

/// What each stage counted.
#[derive(Debug, Default)]
struct Tally {
    seen: u64,
    filtered: u64,
    dropped: u64,
    passed: u64,
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 15.2") {
        return Ok(());
    }
    let devnull = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let format = TracepointFormat::read("syscalls", "sys_enter_write")?;
    let (fd_at, count_at) = (format.offset_of("fd")?, format.offset_of("count")?);
    let events = Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, 256 * 1024))?;
    let stats = Map::create(&MapSpec::new("stats", MapType::Array, 4, 8, 2).flags(MapFlags::MMAPABLE))?; // produced, lost
    let producer = bpf_asm! {
        r6 = *(u32 *)(r1 + {fd_at})         // unsigned int fd
        r7 = *(u64 *)(r1 + {count_at})      // size_t count
        if r6 != {devnull.as_raw_fd()} goto out
        {tgid_filter(std::process::id(), "out")?}
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 16) = w0             // struct WriteCall: tid, fd, bytes
        *(u32 *)(r10 - 12) = w6
        *(u64 *)(r10 - 8) = r7
        *(u32 *)(r10 - 20) = 0
        {map_lookup("stats", -20, "out")?}
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1         // produced
        {ringbuf_output("events", -16, 16)?}
        if r0 == 0 goto out
        *(u32 *)(r10 - 20) = 1
        {map_lookup("stats", -20, "out")?}
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1         // the ring was full: lost
    out:
        r0 = 0
        exit
    };
    let producer = Program::load(&producer.assemble()?, &[&events, &stats], &LoadOptions::new("writes", ProgType::Tracepoint))?;
    let (produced, lost) = (Entry::<u32, u64>::new(&stats, 0)?, Entry::<u32, u64>::new(&stats, 1)?);

    // The stages' channels: small queues, so that the slow stage pushes back.
    let (to_enrich, from_filter) = channel::<WriteCall>(&Map::create(&MapSpec::new("filtered", MapType::Queue, 0, 16, 8))?)?;
    let (to_aggregate, from_enrich) = channel::<Enriched>(&Map::create(&MapSpec::new("enriched", MapType::Queue, 0, 16, 8))?)?;
    let mut ring = RingStream::<WriteCall>::new(&events)?;
    let writers_table = Mutex::new(HashMap::new()); // thread id -> writer number
    let writers_done = AtomicBool::new(false);
    let link = producer.attach_tracepoint("syscalls", "sys_enter_write")?;
    let (tally, totals, expected_small) = std::thread::scope(|s| -> Result<_, Error> {
        let filter = s.spawn(|| -> Result<Tally, Error> {
            let mut t = Tally::default();
            loop {
                let call = match ring.recv_timeout(Duration::from_millis(50)) {
                    Ok(call) => call,
                    // Every write has returned, so every record is in the ring, and none came.
                    Err(RefError::Timeout { .. }) if writers_done.load(Ordering::Acquire) => break,
                    Err(RefError::Timeout { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                t.seen += 1;
                if call.bytes < MIN_BYTES {
                    t.filtered += 1;
                    continue;
                }
                match to_enrich.try_send(&call) {
                    Ok(()) => t.passed += 1,
                    Err(RefError::Full { .. }) => t.dropped += 1, // enrich is behind: shed load here
                    Err(e) => return Err(e.into()),
                }
            }
            to_enrich.send_timeout(&WriteCall { bytes: END, ..Zeroable::zeroed() }, STALL)?; // waits for room
            Ok(t)
        });
        let enrich = s.spawn(|| -> Result<(), Error> {
            loop {
                let call = from_filter.recv_timeout(STALL)?;
                if call.bytes == END {
                    to_aggregate.send_timeout(&Enriched { bytes: END, ..Zeroable::zeroed() }, STALL)?;
                    return Ok(());
                }
                std::thread::sleep(Duration::from_micros(50)); // the cost of a real lookup
                let writer = *writers_table.lock().unwrap().get(&call.tid).ok_or("a write from an unknown thread")?;
                let e = Enriched { writer, log2: call.bytes.ilog2(), bytes: call.bytes };
                to_aggregate.send_timeout(&e, STALL)?; // waits for room: backpressure, not loss
            }
        });
        let aggregate = s.spawn(|| -> Result<Totals, Error> {
            let mut totals = Totals::new();
            loop {
                let e = from_enrich.recv_timeout(STALL)?;
                if e.bytes == END {
                    return Ok(totals);
                }
                let (n, bytes) = totals.entry((e.writer, e.log2)).or_insert((0, 0));
                *n += 1;
                *bytes += e.bytes;
            }
        });
        // The producers: each writer makes WRITES writes of 1 to 1024 bytes, in bursts of 10.
        let writers: Vec<_> = (0..WRITERS as u32)
            .map(|w| {
                let (mut devnull, table) = (&devnull, &writers_table);
                s.spawn(move || -> std::io::Result<u64> {
                    table.lock().unwrap().insert(bpfkit::os::gettid() as u32, w);
                    let (buf, mut small) = ([0x15u8; 1024], 0);
                    for i in 0..WRITES {
                        let n = (i * 37 + w as usize * 101) % 1024 + 1;
                        devnull.write_all(&buf[..n])?; // /dev/null takes it all: one write(2)
                        small += u64::from((n as u64) < MIN_BYTES);
                        if i % 10 == 9 {
                            std::thread::sleep(Duration::from_millis(1)); // bursts of 10
                        }
                    }
                    Ok(small)
                })
            })
            .collect();
        let written: Vec<_> = writers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err(std::io::Error::other("a writer panicked")))).collect();
        writers_done.store(true, Ordering::Release); // even if a writer failed: the filter must finish
        let expected_small = written.into_iter().sum::<std::io::Result<u64>>()?;
        let tally = filter.join().expect("filter")?;
        enrich.join().expect("enrich")?;
        Ok((tally, aggregate.join().expect("aggregate")?, expected_small))
    })?;
    drop(link);

    println!("{:<10} {:>7} {:>9}   by size (writes)", "writer", "writes", "bytes");
    for w in 0..WRITERS as u32 {
        let mine: Vec<_> = totals.iter().filter(|((writer, _), _)| *writer == w).collect();
        let (n, bytes) = mine.iter().fold((0, 0), |(n, b), (_, (wn, wb))| (n + wn, b + wb));
        let sizes: Vec<String> = mine.iter().map(|((_, log2), (wn, _))| format!("{}+:{wn}", 1u64 << log2)).collect();
        println!("writer-{w:<3} {n:>7} {bytes:>9}   {}", sizes.join(" "));
    }
    let aggregated: u64 = totals.values().map(|(n, _)| n).sum();
    let (produced, lost) = (produced.load()?, lost.load()?);
    println!("produced {produced} = aggregated {aggregated} + filtered {} + dropped {} (+ {lost} lost in the ring)", tally.filtered, tally.dropped);
    assert_eq!(produced, (WRITERS * WRITES) as u64, "one record per write the lab made");
    assert_eq!(lost, 0, "the ring holds every record");
    assert_eq!(tally.seen, produced - lost, "the filter read every record");
    assert_eq!(tally.filtered, expected_small, "exactly the small writes were filtered");
    assert_eq!(aggregated, tally.passed, "enrich -> aggregate is lossless");
    assert_eq!(aggregated + tally.filtered + tally.dropped + lost, produced, "every record accounted for");
    assert!(tally.dropped > 0, "the small queue pushed back");
    Ok(())
}
