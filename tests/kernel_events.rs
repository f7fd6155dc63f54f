//! Kernel tests of event streams: ring buffer records are intact, in order and exactly counted
//! under overload (seen + dropped = produced), also when their length changes; several rings in
//! one poller; perf buffer samples and lost-record accounting.

mod support;

use std::time::Duration;

use bpfkit::bpf_asm;
use bpfkit::events::{PerfBufferOptions, PerfBuffer, Poller, RingBuf};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::os;

const PACKET: [u8; 64] = [0u8; 64];
const WORDS: usize = 8;

/// A producer: `seq = counters[0]++` (in r6), then `record` writes the record to the stack at
/// r10-64 and its length to r3, and `bpf_ringbuf_output` sends it; a failed send adds 1 to
/// `counters[1]`.
fn counted_producer(ring: &Map, counters: &Map, name: &str, record: bpfkit::insn::Program) -> Program {
    let dropped = bpfkit::helpers::patterns::counter_increment("counters", -72, -80).unwrap();
    let asm = bpf_asm! {
        *(u32 *)(r10 - 72) = 0
        r1 = map[counters] ll
        r2 = r10
        r2 += -72
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r6 = 1
        r6 = atomic_fetch_add((u64 *)(r0 + 0), r6)
        {record}
        r1 = map[ring] ll
        r2 = r10
        r2 += -64
        r4 = 0
        call bpf_ringbuf_output
        if r0 == 0 goto out
        *(u32 *)(r10 - 72) = 1
        {dropped}
    out:
        r0 = 2
        exit
    };
    Program::load(&asm.assemble().unwrap(), &[ring, counters], &LoadOptions::new(name, ProgType::Xdp)).unwrap()
}

/// 64-byte records of `seq ^ (i * 0x1111)` words ([`counted_producer`]).
fn ring_producer(ring: &Map, counters: &Map) -> Program {
    let record = bpf_asm! {
        *(u64 *)(r10 - 64) = r6
        r1 = r6
        r1 ^= 0x1111
        *(u64 *)(r10 - 56) = r1
        r1 = r6
        r1 ^= 0x2222
        *(u64 *)(r10 - 48) = r1
        r1 = r6
        r1 ^= 0x3333
        *(u64 *)(r10 - 40) = r1
        r1 = r6
        r1 ^= 0x4444
        *(u64 *)(r10 - 32) = r1
        r1 = r6
        r1 ^= 0x5555
        *(u64 *)(r10 - 24) = r1
        r1 = r6
        r1 ^= 0x6666
        *(u64 *)(r10 - 16) = r1
        r1 = r6
        r1 ^= 0x7777
        *(u64 *)(r10 - 8) = r1
        r3 = 64
    };
    counted_producer(ring, counters, "producer", record)
}

/// Check a record's words and return its sequence number.
fn check_record(rec: &[u8]) -> u64 {
    assert_eq!(rec.len(), 64);
    let w: Vec<u64> = rec.chunks(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
    for (i, word) in w.iter().enumerate().take(WORDS) {
        assert_eq!(*word, w[0] ^ (i as u64 * 0x1111), "record {} word {i} corrupted", w[0]);
    }
    w[0]
}

/// A ring buffer of `pages` pages and the producers' two counters (produced, dropped).
fn ring_and_counters(pages: u32) -> (Map, Map) {
    let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, pages * os::page_size() as u32)).unwrap();
    (ring, Map::create(&MapSpec::new("counters", MapType::Array, 4, 8, 2)).unwrap())
}

fn counters_of(m: &Map) -> (u64, u64) {
    let t = m.typed::<u32, u64>().unwrap();
    (t.get(&0).unwrap().unwrap(), t.get(&1).unwrap().unwrap())
}

#[test]
fn ring_buffer_overload_is_counted_exactly() {
    if !support::kernel_or_skip("ring buffer overload") {
        return;
    }
    let (ring, counters) = ring_and_counters(4);
    let prog = ring_producer(&ring, &counters);
    let mut rb = RingBuf::new(&ring).unwrap();

    // Without a consumer: the ring fills, the rest is dropped.
    prog.test_run(&TestRun::with_data(PACKET).repeat(1000)).unwrap();
    let seqs: Vec<u64> = rb.read_all().iter().map(|r| check_record(r)).collect();
    let (produced, dropped) = counters_of(&counters);
    assert_eq!(produced, 1000);
    assert!(dropped > 0, "the ring must overflow");
    assert_eq!(seqs.len() as u64 + dropped, produced, "seen + dropped = produced");
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "in order, the first ones kept");

    // With a consumer running concurrently: still exact, still in order.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut seen = Vec::new();
            loop {
                let done = stop.load(std::sync::atomic::Ordering::Acquire);
                rb.poll(Some(Duration::from_millis(10)), |r| seen.push(check_record(r))).unwrap();
                if done {
                    rb.drain(|r| seen.push(check_record(r)));
                    return seen;
                }
            }
        });
        for _ in 0..50 {
            prog.test_run(&TestRun::with_data(PACKET).repeat(200)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Release);
        consumer.join().unwrap()
    });
    let (produced, dropped_total) = counters_of(&counters);
    assert_eq!(produced, 1000 + 50 * 200);
    assert_eq!(seen.len() as u64 + (dropped_total - dropped), 50 * 200, "seen + dropped = produced under concurrency");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order");
    println!("ring buffer: {} produced, {} seen, {} dropped (concurrent phase)", 50 * 200, seen.len(), dropped_total - dropped);
}

/// A producer that reserves a 16-byte record `{seq, seq * 3}` per run (`seq = counters[0]++`)
/// and discards it (`bpf_ringbuf_discard`) when `seq % 3 == 1`, else submits it.
fn discarding_producer(ring: &Map, counters: &Map) -> Program {
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
        r2 = 16
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto out
        *(u64 *)(r0 + 0) = r6
        r7 = r6
        r7 *= 3
        *(u64 *)(r0 + 8) = r7
        r1 = r0
        r2 = 0
        r8 = r6
        r8 %= 3
        if r8 == 1 goto discard
        call bpf_ringbuf_submit
        goto out
    discard:
        call bpf_ringbuf_discard
    out:
        r0 = 2
        exit
    };
    Program::load(&asm.assemble().unwrap(), &[ring, counters], &LoadOptions::new("discarder", ProgType::Xdp)).unwrap()
}

#[test]
fn discarded_records_are_skipped_by_every_reader() {
    if !support::kernel_or_skip("ring buffer discard") {
        return;
    }
    let (ring, counters) = ring_and_counters(4);
    let prog = discarding_producer(&ring, &counters);
    let mut rb = RingBuf::new(&ring).unwrap();
    let decode = |r: &[u8]| {
        assert_eq!(r.len(), 16);
        let (seq, triple) = (u64::from_ne_bytes(r[..8].try_into().unwrap()), u64::from_ne_bytes(r[8..].try_into().unwrap()));
        assert_eq!(triple, seq * 3, "record {seq} intact");
        seq
    };
    let kept = |range: std::ops::Range<u64>| range.filter(|s| s % 3 != 1).collect::<Vec<u64>>();
    // The discarded records still occupy the ring until read past: every reader steps over them.
    prog.test_run(&TestRun::with_data(PACKET).repeat(30)).unwrap();
    let mut by_drain = Vec::new();
    assert_eq!(rb.drain(|r| by_drain.push(decode(r))), 20);
    assert_eq!(by_drain, kept(0..30), "drain: submitted records only, in order");
    assert_eq!(rb.pending_bytes(), 0, "the discarded ones were consumed too");

    prog.test_run(&TestRun::with_data(PACKET).repeat(30)).unwrap();
    let mut by_next = Vec::new();
    while let Some(rec) = rb.next() {
        by_next.push(decode(&rec));
    }
    assert_eq!(by_next, kept(30..60), "next: submitted records only");

    prog.test_run(&TestRun::with_data(PACKET).repeat(30)).unwrap();
    let by_iter: Vec<u64> = rb.iter().map(|r| decode(&r)).collect();
    assert_eq!(by_iter, kept(60..90), "iter: submitted records only");
    assert_eq!(rb.iter().count(), 0, "nothing left");
    // A ring of discards alone: nothing to read, and nothing pending afterwards.
    let counters_t = counters.typed::<u32, u64>().unwrap();
    counters_t.insert(&0, &1, bpfkit::maps::UpdateFlags::Any).unwrap(); // seq 1: discarded
    prog.test_run(&TestRun::with_data(PACKET)).unwrap();
    assert_eq!(rb.drain(|_| panic!("a discarded record was delivered")), 0);
    assert_eq!(rb.pending_bytes(), 0);
}

/// Records whose length changes every 5 records: `8 * (1 + (seq / 5) % 4)` bytes, each word
/// `seq` ([`counted_producer`]).
fn varying_length_producer(ring: &Map, counters: &Map) -> Program {
    let record = bpf_asm! {
        *(u64 *)(r10 - 64) = r6
        *(u64 *)(r10 - 56) = r6
        *(u64 *)(r10 - 48) = r6
        *(u64 *)(r10 - 40) = r6
        r3 = r6
        r3 /= 5
        r3 &= 3
        r3 += 1
        r3 <<= 3
    };
    counted_producer(ring, counters, "varlen", record)
}

#[test]
fn records_of_changing_length_are_read_intact() {
    if !support::kernel_or_skip("ring buffer records of changing length") {
        return;
    }
    let (ring, counters) = ring_and_counters(2);
    let prog = varying_length_producer(&ring, &counters);
    let mut rb = RingBuf::new(&ring).unwrap();
    let decode = |r: &[u8]| {
        let seq = u64::from_ne_bytes(r[..8].try_into().unwrap());
        assert_eq!(r.len() as u64, 8 * (1 + (seq / 5) % 4), "record {seq}: its length");
        assert!(r.chunks(8).all(|w| u64::from_ne_bytes(w.try_into().unwrap()) == seq), "record {seq} intact");
        seq
    };
    // Read between bursts: the ring wraps many times, lengths change inside every drain.
    let mut seen = Vec::new();
    for _ in 0..40 {
        prog.test_run(&TestRun::with_data(PACKET).repeat(50)).unwrap();
        rb.drain(|r| seen.push(decode(r)));
    }
    assert_eq!(counters_of(&counters), (2000, 0));
    assert_eq!(seen, (0..2000).collect::<Vec<u64>>(), "every record, in order");
    // Overload: more than the ring holds; seen + dropped = produced, in order. (Once the ring is
    // nearly full, a short record may still fit where a longer one before it did not.)
    prog.test_run(&TestRun::with_data(PACKET).repeat(1000)).unwrap();
    let seqs: Vec<u64> = rb.read_all().iter().map(|r| decode(r)).collect();
    let (produced, dropped) = counters_of(&counters);
    assert!(dropped > 0, "the ring must overflow");
    assert_eq!(seqs.len() as u64 + dropped, produced - 2000, "seen + dropped = produced");
    assert_eq!(seqs.first(), Some(&2000));
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[test]
fn zero_copy_records_and_a_poller_over_two_rings() {
    if !support::kernel_or_skip("ring poller") {
        return;
    }
    let page = os::page_size() as u32;
    let (ring_a, ring_b) = (Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, page)).unwrap(), Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, page)).unwrap());
    let (ca, cb) = (Map::create(&MapSpec::new("counters", MapType::Array, 4, 8, 2)).unwrap(), Map::create(&MapSpec::new("counters", MapType::Array, 4, 8, 2)).unwrap());
    let (pa, pb) = (ring_producer(&ring_a, &ca), ring_producer(&ring_b, &cb));
    let mut solo = RingBuf::new(&ring_a).unwrap();
    pa.test_run(&TestRun::with_data(PACKET).repeat(3)).unwrap();
    {
        let rec = solo.next().expect("a record");
        assert_eq!(check_record(&rec), 0, "borrowed straight from the ring");
    }
    assert_eq!(solo.read_all().len(), 2, "the first was consumed when its borrow ended");

    let mut poller = Poller::new().unwrap();
    let a = poller.add(RingBuf::new(&ring_a).unwrap()).unwrap();
    let b = poller.add(RingBuf::new(&ring_b).unwrap()).unwrap();
    assert_eq!(poller.poll(Some(Duration::from_millis(20)), |_, _| {}).unwrap(), 0, "nothing yet: the wait times out");
    pa.test_run(&TestRun::with_data(PACKET).repeat(2)).unwrap();
    pb.test_run(&TestRun::with_data(PACKET).repeat(5)).unwrap();
    let mut per_ring = [0usize; 2];
    poller.poll(Some(Duration::from_secs(1)), |i, r| {
        check_record(r);
        per_ring[i] += 1;
    }).unwrap();
    assert_eq!((per_ring[a], per_ring[b]), (2, 5));
}

#[test]
fn perf_buffer_samples_and_lost_records() {
    if !support::kernel_or_skip("perf buffer") {
        return;
    }
    let cpus = os::possible_cpus().unwrap() as u32;
    let events = Map::create(&MapSpec::new("events", MapType::PerfEventArray, 4, 4, cpus)).unwrap();
    let asm = bpf_asm! {
        r6 = r1
        r1 = 0x1234
        *(u64 *)(r10 - 8) = r1
        r1 = r6
        r2 = map[events] ll
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 8
        call bpf_perf_event_output
        r0 = 2
        exit
    };
    let prog = Program::load(&asm.assemble().unwrap(), &[&events], &LoadOptions::new("perfout", ProgType::Xdp)).unwrap();
    let mut pb = PerfBuffer::new(&events, 1).unwrap();
    prog.test_run(&TestRun::with_data(PACKET).repeat(10)).unwrap();
    let mut samples = Vec::new();
    pb.poll(Some(Duration::from_secs(1)), |_, raw| samples.push(raw.to_vec())).unwrap();
    assert_eq!(samples.len(), 10);
    assert!(samples.iter().all(|s| s[..8] == 0x1234u64.to_ne_bytes()));
    assert_eq!(pb.lost(), 0);

    // Overload one page: the kernel counts what it could not write, and reports it with the next
    // record that fits. Pinned, so that every record goes to the same CPU's buffer (a test run
    // may otherwise migrate between its repeats and spread them over several).
    support::pin_to_cpu(0);
    prog.test_run(&TestRun::with_data(PACKET).repeat(1000)).unwrap();
    let mut n = pb.drain(|_, _| {});
    prog.test_run(&TestRun::with_data(PACKET)).unwrap();
    n += pb.drain(|_, _| {});
    assert!(pb.lost() > 0);
    assert_eq!(n as u64 + pb.lost(), 1001, "samples + lost = produced");
    let bad = Map::create(&MapSpec::new("notperf", MapType::Array, 4, 4, 1)).unwrap();
    assert!(PerfBuffer::new(&bad, 1).is_err());
    assert!(PerfBuffer::new(&events, 3).is_err(), "pages must be a power of two");
}

#[test]
fn perf_buffer_wakes_a_reader_every_n_samples() {
    if !support::kernel_or_skip("perf buffer wakeup_events") {
        return;
    }
    let cpus = os::possible_cpus().unwrap() as u32;
    let events = Map::create(&MapSpec::new("events", MapType::PerfEventArray, 4, 4, cpus)).unwrap();
    let asm = bpf_asm! {
        r6 = r1
        *(u64 *)(r10 - 8) = r6
        r1 = r6
        r2 = map[events] ll
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 8
        call bpf_perf_event_output
        r0 = 2
        exit
    };
    let prog = Program::load(&asm.assemble().unwrap(), &[&events], &LoadOptions::new("perfwake", ProgType::Xdp)).unwrap();
    let mut pb = PerfBuffer::with_options(&events, &PerfBufferOptions::new().pages(1).wakeup_events(8)).unwrap();
    support::pin_to_cpu(0); // all samples in one CPU's ring, counted against one threshold
    let timeout = Duration::from_millis(300);
    // Seven samples: below the threshold, no wake-up — the poll waits its whole timeout, then
    // drains what is there anyway.
    prog.test_run(&TestRun::with_data(PACKET).repeat(7)).unwrap();
    let start = std::time::Instant::now();
    let n = pb.poll(Some(timeout), |_, _| {}).unwrap();
    let waited = start.elapsed();
    assert_eq!(n, 7);
    assert!(waited >= Duration::from_millis(250), "woken after {waited:?} with 7 of 8 samples");
    // Eight more: the eighth wakes the reader at once.
    prog.test_run(&TestRun::with_data(PACKET).repeat(8)).unwrap();
    let start = std::time::Instant::now();
    let n = pb.poll(Some(Duration::from_secs(5)), |_, _| {}).unwrap();
    assert_eq!(n, 8);
    assert!(start.elapsed() < Duration::from_secs(1), "the 8th sample wakes the reader: {:?}", start.elapsed());
}
