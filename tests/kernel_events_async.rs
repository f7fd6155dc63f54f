//! Kernel tests of `AsyncRingBuf` (feature `tokio`: `cargo test --features tokio --test
//! kernel_events_async`): a task awaits records while a blocking thread produces them with
//! PROG_TEST_RUN. Every record is seen once and in order, seen + dropped = produced exactly,
//! and with nothing left to read the wait does not return.
#![cfg(feature = "tokio")]

mod support;

use std::time::Duration;

use bpfkit::bpf_asm;
use bpfkit::events::{AsyncRingBuf, RingBuf};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::os;
use tokio::time::timeout;

const PACKET: [u8; 64] = [0u8; 64];
/// Bytes of a record: `seq`, then `seq ^ TAG`.
const RECORD: usize = 16;
const TAG: u64 = 0x5a5a_5a5a;
/// How long a wait may take when records are due: far beyond any scheduling delay, so a
/// timeout means a lost wakeup.
const DUE: Duration = Duration::from_secs(5);

/// A producer: `seq = counters[0]++`; reserve a 16-byte record, write `seq` and `seq ^ TAG`,
/// submit (the default flags: wake the consumer when it has caught up). A failed reservation
/// adds 1 to `counters[1]`.
fn reserve_producer(ring: &Map, counters: &Map) -> Program {
    let asm = bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[counters] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r6 = 1
        r6 = atomic_fetch_add((u64 *)(r0 + 0), r6)
        r1 = map[ring] ll
        r2 = {RECORD as i32}
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto dropped
        *(u64 *)(r0 + 0) = r6
        r6 ^= {TAG as i32}
        *(u64 *)(r0 + 8) = r6
        r1 = r0
        r2 = 0
        call bpf_ringbuf_submit
        goto out
    dropped:
        *(u32 *)(r10 - 4) = 1
        r1 = map[counters] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 2
        exit
    };
    Program::load(&asm.assemble().unwrap(), &[ring, counters], &LoadOptions::new("producer", ProgType::Xdp)).unwrap()
}

/// Check a record and return its sequence number.
fn check_record(rec: &[u8]) -> u64 {
    assert_eq!(rec.len(), RECORD);
    let seq = u64::from_ne_bytes(rec[..8].try_into().unwrap());
    assert_eq!(u64::from_ne_bytes(rec[8..].try_into().unwrap()), seq ^ TAG, "record {seq} corrupted");
    seq
}

/// `(produced, dropped)`.
fn counters_of(m: &Map) -> (u64, u64) {
    let t = m.typed::<u32, u64>().unwrap();
    (t.get(&0).unwrap().unwrap(), t.get(&1).unwrap().unwrap())
}

fn ring_and_counters(pages: u32) -> (Map, Map) {
    let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, pages * os::page_size() as u32)).unwrap();
    let counters = Map::create(&MapSpec::new("counters", MapType::Array, 4, 8, 2)).unwrap();
    (ring, counters)
}

/// Run `batches` test runs of `repeat` records each on a blocking thread, pausing `pause`
/// before each.
fn produce(prog: Program, batches: u32, repeat: u32, pause: Duration) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        for _ in 0..batches {
            std::thread::sleep(pause);
            prog.test_run(&TestRun::with_data(PACKET).repeat(repeat)).unwrap();
        }
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_task_is_woken_for_every_batch() {
    if !support::kernel_or_skip("async ring buffer") {
        return;
    }
    // 16 pages hold all 2,000 records (24 bytes each with the header): nothing is dropped, so
    // the task knows how many to wait for.
    let (ring, counters) = ring_and_counters(16);
    const BATCHES: u32 = 20;
    const REPEAT: u32 = 100;
    let total = (BATCHES * REPEAT) as usize;
    let mut rb = AsyncRingBuf::new(RingBuf::new(&ring).unwrap()).unwrap();
    assert!(timeout(Duration::from_millis(50), rb.readable_drain(|_| {})).await.is_err(), "an empty ring: the wait does not return");

    let producer = produce(reserve_producer(&ring, &counters), BATCHES, REPEAT, Duration::from_millis(5));
    let mut seen = Vec::with_capacity(total);
    let mut wakeups = 0;
    while seen.len() < total {
        let n = timeout(DUE, rb.readable_drain(|r| seen.push(check_record(r)))).await.expect("woken for the records produced").unwrap();
        assert!(n > 0);
        wakeups += 1;
    }
    producer.await.unwrap();
    assert_eq!(seen, (0..total as u64).collect::<Vec<_>>(), "each record once, in order");
    assert_eq!(counters_of(&counters), (total as u64, 0));
    assert!(wakeups > 1, "the task waited between batches ({wakeups} wakeups)");
    assert!(timeout(Duration::from_millis(50), rb.next_batch()).await.is_err(), "all read: the wait does not return");
    assert_eq!(rb.get_ref().pending_bytes(), 0);
    println!("async ring buffer: {total} records in {wakeups} wakeups");
}

#[tokio::test(flavor = "current_thread")]
async fn overload_is_counted_exactly_across_awaits() {
    if !support::kernel_or_skip("async ring buffer overload") {
        return;
    }
    // One page holds 170 records: batches of 200 overflow unless the task keeps up.
    let (ring, counters) = ring_and_counters(1);
    let prog = reserve_producer(&ring, &counters);
    let mut rb = AsyncRingBuf::new(RingBuf::new(&ring).unwrap()).unwrap();

    // Filled before anyone waits: the readiness is there at the first await.
    prog.test_run(&TestRun::with_data(PACKET).repeat(1000)).unwrap();
    let first = timeout(DUE, rb.next_batch()).await.expect("records waiting").unwrap();
    let (produced, dropped) = counters_of(&counters);
    assert_eq!(produced, 1000);
    assert!(dropped > 0, "the ring must overflow");
    assert_eq!(first.iter().map(|r| check_record(r)).collect::<Vec<_>>(), (0..produced - dropped).collect::<Vec<_>>(), "the first ones kept, in order");

    // Concurrently: await records until the producer is done, then the ones it left.
    const BATCHES: u32 = 50;
    const REPEAT: u32 = 200;
    let mut producer = produce(prog, BATCHES, REPEAT, Duration::from_millis(1));
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            r = rb.readable_drain(|r| seen.push(check_record(r))) => { r.unwrap(); }
            done = &mut producer => { done.unwrap(); break; }
        }
    }
    let (produced, dropped_total) = counters_of(&counters);
    assert_eq!(produced, 1000 + (BATCHES * REPEAT) as u64);
    let due = produced - 1000 - (dropped_total - dropped);
    while (seen.len() as u64) < due {
        timeout(DUE, rb.readable_drain(|r| seen.push(check_record(r)))).await.expect("woken for the records left").unwrap();
    }
    assert_eq!(seen.len() as u64, due, "seen + dropped = produced under concurrency");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(rb.try_drain(|_| panic!("nothing is left")), 0);
    let rb = rb.into_inner();
    assert_eq!(rb.pending_bytes(), 0);
    println!("async ring buffer: {} produced, {} seen, {} dropped (concurrent phase)", BATCHES * REPEAT, seen.len(), dropped_total - dropped);
}
