//! Ring buffer consumption beside libbpf and aya (docs/PERFORMANCE.md): `cargo bench --bench
//! ringbuf`. Needs root (or CAP_BPF) and a kernel with bpf(2).
//!
//! For each record size (64 B, 128 B, 1 KiB), every library gets its own `BPF_MAP_TYPE_RINGBUF`
//! of [`RING_BYTES`] and its own copy of one producer program (`bpf_ringbuf_reserve` of the
//! record size, write the first word, `bpf_ringbuf_submit`). The producer is a `sched_cls`
//! program: an XDP one (`RINGBUF_PRODUCER=xdp`) makes every test run re-patch the kernel's XDP
//! dispatcher (text_poke, and IPIs to every CPU, seen in perf), which leaves the consumer that
//! follows on a cold TLB and adds the kernel's noise to what is a measure of the consumer.
//! Before each timed consumption the ring is filled outside the timed part by one
//! `BPF_PROG_TEST_RUN` whose repeat count is the number of records the ring holds, so each
//! library reads the same full ring every time. The timed part reads every record and sums its
//! first word (so each record is touched):
//!
//! * bpfkit: `RingBuf::drain` with a closure.
//! * libbpf-rs 0.25: `RingBuffer::consume` (libbpf 1.7's `ring_buffer__consume` calling the Rust
//!   closure through libbpf-rs's C trampoline).
//! * libbpf: `ring_buffer__consume` through libbpf-sys with a plain `extern "C"` callback (the C
//!   library alone, without libbpf-rs's boxed closure).
//! * aya 0.13: `RingBuf::next` in a loop, on the map adopted with `MapData::from_fd`.
//!
//! The thread is pinned to CPU 0 (every library alike). bpfkit is used only through its safe API.
//! `unsafe` appears only around libbpf-sys's C functions (the peer's API) and the affinity call,
//! each block with a `// SAFETY:` comment.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::hint::black_box;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

/// Data bytes of every ring.
const RING_BYTES: u32 = 1 << 20;
/// Record sizes measured.
const SIZES: [usize; 3] = [64, 128, 1024];
/// Each record's header, and records are padded to 8 bytes (kernel/bpf/ringbuf.c).
const HDR: usize = 8;

/// Records of `size` bytes that fill a ring exactly.
fn records_per_fill(size: usize) -> u32 {
    RING_BYTES / (size + HDR).next_multiple_of(8) as u32
}

/// The per-record work of every consumer: read the first word.
fn first_word(rec: &[u8]) -> u64 {
    u64::from_ne_bytes(rec[..8].try_into().unwrap())
}

/// The producer's program type: `sched_cls` unless `RINGBUF_PRODUCER=xdp`.
fn producer_type() -> ProgType {
    match std::env::var("RINGBUF_PRODUCER").as_deref() {
        Ok("xdp") => ProgType::Xdp,
        _ => ProgType::SchedCls,
    }
}

/// A program that reserves a `size`-byte record, writes `size` into its first word, and submits it.
fn producer(ring: &Map, size: usize) -> Program {
    let size = size as i32;
    let asm = bpf_asm! {
        r1 = map[ring] ll
        r2 = {size}
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto out
        r1 = {size}
        *(u64 *)(r0 + 0) = r1
        r1 = r0
        r2 = 0
        call bpf_ringbuf_submit
    out:
        r0 = 0
        exit
    };
    Program::load(&asm.assemble().unwrap(), &[ring], &LoadOptions::new("rb_producer", producer_type())).expect("load the producer (run as root)")
}

/// One library's ring and the program that fills it.
struct Ring {
    map: Map,
    prog: Program,
    records: u32,
}

impl Ring {
    fn new(size: usize) -> Ring {
        let map = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, RING_BYTES)).expect("ringbuf map_create (run as root)");
        let prog = producer(&map, size);
        Ring { map, prog, records: records_per_fill(size) }
    }

    /// Fill the (empty) ring with exactly `records` records.
    fn fill(&self) {
        self.prog.test_run(&TestRun::with_data([0u8; 64]).repeat(self.records)).expect("test_run the producer");
    }
}

/// libbpf's `struct ring_buffer` over one map, with a plain C callback summing into `acc`.
struct LibbpfRing {
    rb: NonNull<libbpf_sys::ring_buffer>,
    acc: Box<Cell<u64>>,
}

unsafe extern "C" fn libbpf_sample(ctx: *mut c_void, data: *mut c_void, size: libbpf_sys::size_t) -> c_int {
    // SAFETY: `ctx` is the `Box<Cell<u64>>` of the `LibbpfRing` that owns the ring_buffer, alive
    // as long as it is (only shared references to the cell exist); libbpf passes `data` pointing
    // to `size` readable bytes of the mapped ring.
    let (acc, rec) = unsafe { (&*(ctx as *const Cell<u64>), std::slice::from_raw_parts(data as *const u8, size as usize)) };
    acc.set(acc.get().wrapping_add(first_word(rec)));
    0
}

impl LibbpfRing {
    fn new(map: &Map) -> LibbpfRing {
        let acc = Box::new(Cell::new(0u64));
        let ctx = &*acc as *const Cell<u64> as *mut c_void;
        // SAFETY: the fd is a live ring buffer map fd (libbpf maps it and keeps no ownership);
        // `ctx` stays valid until `ring_buffer__free` in Drop (the box moves with the struct, its
        // heap address does not); null opts are allowed.
        let rb = unsafe { libbpf_sys::ring_buffer__new(map.as_fd().as_raw_fd(), Some(libbpf_sample), ctx, std::ptr::null()) };
        LibbpfRing { rb: NonNull::new(rb).expect("libbpf ring_buffer__new"), acc }
    }

    fn consume(&mut self) -> i32 {
        // SAFETY: `rb` is the live ring_buffer made in `new`.
        unsafe { libbpf_sys::ring_buffer__consume(self.rb.as_ptr()) }
    }
}

impl Drop for LibbpfRing {
    fn drop(&mut self) {
        // SAFETY: `rb` came from `ring_buffer__new` and is freed once, here.
        unsafe { libbpf_sys::ring_buffer__free(self.rb.as_ptr()) }
    }
}

/// Time `consume` (which returns how many records it read) on full rings, `iters` times;
/// `ring.fill()` runs before each, outside the timed part.
fn timed_consume(ring: &Ring, iters: u64, mut consume: impl FnMut() -> usize) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        ring.fill();
        let start = Instant::now();
        let n = consume();
        total += start.elapsed();
        assert_eq!(n, ring.records as usize, "a full ring read in one consumption");
    }
    total
}

/// Pin the benchmark thread to CPU 0 for every library alike: the producer's test runs and the
/// consumer's reads then share one CPU's caches, and no library is measured across a migration.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread (pid 0); libc's own types.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    assert!(ok, "sched_setaffinity(CPU 0)");
}

fn consume(c: &mut Criterion) {
    pin_to_cpu0();
    for size in SIZES {
        let (kit, lbrs, lb, aya) = (Ring::new(size), Ring::new(size), Ring::new(size), Ring::new(size));
        let records = kit.records as usize;

        // Each consumer sums the first words into its own cell and returns how many it read.
        let sums: [Cell<u64>; 4] = Default::default();
        let add = |i: usize, rec: &[u8]| sums[i].set(sums[i].get().wrapping_add(first_word(rec)));

        let mut kit_rb = RingBuf::new(&kit.map).expect("bpfkit RingBuf");
        let mut kit_consume = || kit_rb.drain(|r| add(0, r));

        let lbrs_map = libbpf_rs::MapHandle::from_map_id(lbrs.map.info().unwrap().id).expect("libbpf-rs MapHandle");
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&lbrs_map, |r| {
                add(1, r);
                0
            })
            .expect("libbpf-rs RingBufferBuilder::add");
        let lbrs_rb = builder.build().expect("libbpf-rs RingBuffer");
        let mut lbrs_consume = || usize::try_from(lbrs_rb.consume_raw()).expect("libbpf-rs consume");

        let mut lb_rb = LibbpfRing::new(&lb.map);
        let mut lb_consume = || {
            let n = usize::try_from(lb_rb.consume()).expect("libbpf ring_buffer__consume");
            sums[2].set(lb_rb.acc.get());
            n
        };

        let aya_map = aya::maps::MapData::from_fd(aya.map.as_fd().try_clone_to_owned().unwrap()).expect("aya MapData::from_fd");
        let mut aya_rb = aya::maps::RingBuf::try_from(aya::maps::Map::RingBuf(aya_map)).expect("aya RingBuf");
        let mut aya_consume = || {
            let mut n = 0;
            while let Some(r) = aya_rb.next() {
                add(3, &r);
                n += 1;
            }
            n
        };

        // Before timing: every library reads every record of a full ring, each intact.
        timed_consume(&kit, 1, &mut kit_consume);
        timed_consume(&lbrs, 1, &mut lbrs_consume);
        timed_consume(&lb, 1, &mut lb_consume);
        timed_consume(&aya, 1, &mut aya_consume);
        for (i, name) in ["bpfkit", "libbpf-rs", "libbpf", "aya"].iter().enumerate() {
            assert_eq!(sums[i].get(), (size * records) as u64, "{name}: the first word of every record");
        }

        let mut g = c.benchmark_group(format!("ringbuf_consume/{size}B"));
        g.sampling_mode(SamplingMode::Flat).sample_size(20).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        g.throughput(Throughput::Elements(records as u64));
        g.bench_function("bpfkit", |b| b.iter_custom(|iters| timed_consume(&kit, iters, &mut kit_consume)));
        g.bench_function("libbpf-rs", |b| b.iter_custom(|iters| timed_consume(&lbrs, iters, &mut lbrs_consume)));
        g.bench_function("libbpf", |b| b.iter_custom(|iters| timed_consume(&lb, iters, &mut lb_consume)));
        g.bench_function("aya", |b| b.iter_custom(|iters| timed_consume(&aya, iters, &mut aya_consume)));
        g.finish();
        black_box(&sums);
    }
}

criterion_group!(benches, consume);
criterion_main!(benches);
