//! Kernel tests of `bpfkit::refs`: entries whose read-modify-write is atomic against a BPF
//! program hammering the same value (no lost update over 2 M racing increments, on each atomic
//! path), streams and channels whose producer is a program, timeouts honoured, the kernel's
//! E2BIG/ENOENT as `Full`/`Empty`, watches, and no descriptor left open.
//!
//! The tests take one lock: the last counts this process's open descriptors.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapFlags, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::refs::{channel, Atomicity, Entry, PopStream, RefError, RingStream, Watch};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// An XDP program adding 1 to `map[key]` with `lock +=` (the way programs count), run by test
/// runs of `repeat` iterations.
fn incrementer(map: &Map, key: u32) -> Program {
    let asm = bpf_asm! {
        *(u32 *)(r10 - 4) = {key as i32}
        r1 = map[counter] ll
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
    Program::load(&asm.assemble().unwrap(), &[map], &LoadOptions::new("incrementer", ProgType::Xdp)).unwrap()
}

/// The program increments in batches on another thread while `user` increments here; returns
/// (program increments, user increments) once the user side is done.
fn race(prog: &Program, user: impl FnOnce() -> u64) -> (u64, u64) {
    const BATCH: u32 = 20_000;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let kernel = s.spawn(|| {
            let mut n = 0u64;
            // At least 1 M, and on for as long as the user side runs.
            while n < 1_000_000 || !done.load(Ordering::Acquire) {
                prog.test_run(&TestRun::with_data([0u8; 64]).repeat(BATCH)).unwrap();
                n += BATCH as u64;
            }
            n
        });
        let mine = user();
        done.store(true, Ordering::Release);
        (kernel.join().unwrap(), mine)
    })
}

fn racing_increments_are_never_lost(map: Map, key: u32, want: Atomicity) {
    let entry = Entry::<u32, u64>::new(&map, key).unwrap();
    assert_eq!(entry.atomicity(), want);
    entry.set(&0).unwrap();
    let prog = incrementer(&map, key);
    const USER: u64 = 500_000;
    let (by_prog, by_user) = race(&prog, || {
        let mut conflicts = 0u64;
        for i in 0..USER {
            if i % 2 == 0 {
                entry.fetch_add(1).unwrap();
            } else {
                // A compare-and-swap loop: a program's increment in between makes it retry.
                let mut tries = 0;
                entry.update(|v| {
                    tries += 1;
                    v + 1
                })
                .unwrap();
                conflicts += tries - 1;
            }
        }
        eprintln!("{want:?}: {conflicts} compare-and-swap retries");
        USER
    });
    let total = entry.load().unwrap();
    eprintln!("{want:?}: {by_prog} increments by the program + {by_user} by user space = {total}");
    assert_eq!(total, by_prog + by_user, "no increment lost on either side ({want})");
    assert!(by_prog + by_user >= 1_500_000);
}

#[test]
fn mmapped_entry_is_atomic_against_a_program() {
    let _g = serial();
    if !support::kernel_or_skip("refs: mmapped entry atomicity") {
        return;
    }
    let map = Map::create(&MapSpec::new("counter", MapType::Array, 4, 8, 4).flags(MapFlags::MMAPABLE)).unwrap();
    racing_increments_are_never_lost(map, 3, Atomicity::MappedMemory);
}

#[test]
fn hash_entry_is_atomic_against_a_program_through_the_kernel() {
    let _g = serial();
    if !support::kernel_or_skip("refs: hash entry atomicity") {
        return;
    }
    let map = Map::create(&MapSpec::new("counter", MapType::Hash, 4, 8, 16)).unwrap();
    racing_increments_are_never_lost(map, 7, Atomicity::KernelProgram);
}

#[test]
fn lookup_then_update_loses_what_compare_exchange_keeps() {
    // The reason entries exist: get + set is not atomic. Measured, not assumed: the naive loop
    // usually loses increments against the racing program; the entry's never does.
    let _g = serial();
    if !support::kernel_or_skip("refs: naive read-modify-write") {
        return;
    }
    let map = Map::create(&MapSpec::new("counter", MapType::Hash, 4, 8, 16)).unwrap();
    let entry = Entry::<u32, u64>::new(&map, 1).unwrap();
    entry.set(&0).unwrap();
    let prog = incrementer(&map, 1);
    let (by_prog, by_user) = race(&prog, || {
        for _ in 0..100_000 {
            let v = entry.get().unwrap().unwrap();
            entry.set(&(v + 1)).unwrap();
        }
        100_000
    });
    let total = entry.load().unwrap();
    eprintln!("get + set: {} of {} increments lost", by_prog + by_user - total, by_prog + by_user);
    assert!(total <= by_prog + by_user);
}

#[test]
fn entry_semantics_validator_and_u32_words() {
    let _g = serial();
    if !support::kernel_or_skip("refs: entry semantics") {
        return;
    }
    let map = Map::create(&MapSpec::new("small", MapType::Hash, 8, 4, 4)).unwrap();
    let e = Entry::<u64, u32>::new(&map, 0xdead_beef_0000_0001).unwrap().with_validator(|v| if *v < 100 { Ok(()) } else { Err(format!("{v} >= 100")) });
    // Absent counts as 0: exchanging 0 creates the key, exchanging anything else fails.
    assert_eq!(e.get().unwrap(), None);
    assert_eq!(e.compare_exchange(5, 6).unwrap(), Err(0));
    assert_eq!(e.compare_exchange(0, 6).unwrap(), Ok(0));
    assert_eq!(e.get().unwrap(), Some(6));
    assert_eq!(e.compare_exchange(5, 7).unwrap(), Err(6), "a mismatch reports the value");
    assert_eq!(e.fetch_add(10).unwrap(), 6);
    assert_eq!(e.update(|v| v * 2).unwrap(), (16, 32));
    // The validator refuses before anything is written, on every path.
    for attempt in [e.set(&100), e.compare_exchange(32, 500).map(|_| ()), e.fetch_add(90).map(|_| ()), e.update(|v| v + 1000).map(|_| ())] {
        match attempt {
            Err(RefError::Invalid { map, reason }) => assert_eq!((map.as_str(), reason.contains(">= 100")), ("small", true)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(e.load().unwrap(), 32);
    assert!(e.delete().unwrap());
    // Wrong sizes and map types are refused with the map's name.
    assert!(matches!(Entry::<u32, u32>::new(&map, 1), Err(RefError::Map(_))));
    let q = Map::create(&MapSpec::new("q", MapType::Queue, 0, 4, 4)).unwrap();
    assert!(matches!(Entry::<u32, u32>::new(&q, 0), Err(RefError::Unsupported { .. })));
}

/// An XDP program that pushes `value` into the queue/stack `chan` (as a producer in the kernel).
fn pusher(chan: &Map, value: u64) -> Program {
    let asm = bpf_asm! {
        r1 = {value as i64} ll
        *(u64 *)(r10 - 8) = r1
        r1 = map[chan] ll
        r2 = r10
        r2 += -8
        r3 = 0
        call bpf_map_push_elem
        r0 = 2
        exit
    };
    Program::load(&asm.assemble().unwrap(), &[chan], &LoadOptions::new("pusher", ProgType::Xdp)).unwrap()
}

#[test]
fn channels_map_full_and_empty_and_keep_order() {
    let _g = serial();
    if !support::kernel_or_skip("refs: channels") {
        return;
    }
    for (map_type, fifo) in [(MapType::Queue, true), (MapType::Stack, false)] {
        let map = Map::create(&MapSpec::new("chan", map_type, 0, 8, 3)).unwrap();
        let (tx, rx) = channel::<u64>(&map).unwrap();
        assert_eq!(tx.is_fifo(), fifo);
        // Producers: user space and a program.
        tx.try_send(&1).unwrap();
        pusher(&map, 2).test_run(&TestRun::with_data([0u8; 64])).unwrap();
        tx.send_timeout(&3, Duration::from_millis(10)).unwrap();
        match tx.try_send(&4) {
            Err(RefError::Full { map, max_entries: 3 }) => assert_eq!(map, "chan"),
            other => panic!("{other:?}"),
        }
        let started = Instant::now();
        assert!(matches!(tx.send_timeout(&4, Duration::from_millis(60)), Err(RefError::Timeout { .. })));
        assert!(started.elapsed() >= Duration::from_millis(60) && started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
        let want: Vec<u64> = if fifo { vec![1, 2, 3] } else { vec![3, 2, 1] };
        assert_eq!(rx.peek().unwrap(), want[0], "peek does not remove");
        let got: Vec<u64> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(got, want);
        assert!(matches!(rx.try_recv(), Err(RefError::Empty { .. })));
        let started = Instant::now();
        assert!(matches!(rx.recv_timeout(Duration::from_millis(60)), Err(RefError::Timeout { .. })));
        assert!(started.elapsed() >= Duration::from_millis(60) && started.elapsed() < Duration::from_millis(500));
        // force_send makes room by dropping the oldest (queue) / bottom (stack) value.
        for v in [10, 11, 12, 13] {
            tx.force_send(&v).unwrap();
        }
        let got: Vec<u64> = rx.until_idle(Duration::from_millis(5)).map(Result::unwrap).collect();
        assert_eq!(got, if fifo { vec![11, 12, 13] } else { vec![13, 12, 11] });
    }
}

#[test]
fn channel_ends_work_across_threads() {
    let _g = serial();
    if !support::kernel_or_skip("refs: channel threads") {
        return;
    }
    let map = Map::create(&MapSpec::new("work", MapType::Queue, 0, 8, 64)).unwrap();
    let (tx, rx) = channel::<u64>(&map).unwrap();
    drop(map); // the ends keep it alive
    const PER: u64 = 2_000;
    let received: Vec<u64> = std::thread::scope(|s| {
        for p in 0..3u64 {
            let tx = tx.clone();
            s.spawn(move || (0..PER).for_each(|i| tx.send(&(p * PER + i)).unwrap()));
        }
        let consumers: Vec<_> = (0..2).map(|_| {
            let rx = rx.clone();
            s.spawn(move || rx.until_idle(Duration::from_millis(200)).map(Result::unwrap).collect::<Vec<u64>>())
        }).collect();
        consumers.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(sorted, (0..3 * PER).collect::<Vec<_>>(), "every value exactly once");
}

#[test]
fn ring_stream_decodes_a_programs_records_and_times_out() {
    let _g = serial();
    if !support::kernel_or_skip("refs: ring stream") {
        return;
    }
    let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, 4096)).unwrap();
    let prog = bpf_asm! {
        r1 = 0x1122334455667788 ll
        *(u64 *)(r10 - 8) = r1
        r1 = map[ring] ll
        r2 = r10
        r2 += -8
        r3 = 8
        r4 = 0
        call bpf_ringbuf_output
        r0 = 2
        exit
    };
    let prog = Program::load(&prog.assemble().unwrap(), &[&ring], &LoadOptions::new("emit", ProgType::Xdp)).unwrap();
    let mut stream = RingStream::<u64>::new(&ring).unwrap();
    drop(ring);
    let started = Instant::now();
    assert!(matches!(stream.recv_timeout(Duration::from_millis(80)), Err(RefError::Timeout { .. })));
    assert!(started.elapsed() >= Duration::from_millis(80) && started.elapsed() < Duration::from_millis(500));
    assert_eq!(stream.try_recv().unwrap(), None);
    prog.test_run(&TestRun::with_data([0u8; 64]).repeat(5)).unwrap();
    let got: Vec<u64> = stream.until_idle(Duration::from_millis(20)).map(Result::unwrap).collect();
    assert_eq!(got, vec![0x1122334455667788; 5]);
    // A stream of the wrong width says so.
    let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, 4096)).unwrap();
    let prog = Program::load(&bpf_asm! {
        r1 = 7
        *(u64 *)(r10 - 8) = r1
        r1 = map[ring] ll
        r2 = r10
        r2 += -8
        r3 = 8
        r4 = 0
        call bpf_ringbuf_output
        r0 = 2
        exit
    }.assemble().unwrap(), &[&ring], &LoadOptions::new("emit", ProgType::Xdp)).unwrap();
    let mut narrow = RingStream::<u32>::new(&ring).unwrap();
    prog.test_run(&TestRun::with_data([0u8; 64])).unwrap();
    assert!(matches!(narrow.recv_timeout(Duration::from_secs(1)), Err(RefError::Size { got: 8, want: 4, .. })));
}

#[test]
fn pop_stream_and_watch_see_a_programs_writes() {
    let _g = serial();
    if !support::kernel_or_skip("refs: watch") {
        return;
    }
    let stack = Map::create(&MapSpec::new("chan", MapType::Stack, 0, 8, 8)).unwrap();
    let pops = PopStream::<u64>::new(&stack).unwrap();
    let push = pusher(&stack, 99);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(30));
            push.test_run(&TestRun::with_data([0u8; 64])).unwrap();
        });
        assert_eq!(pops.recv_timeout(Duration::from_secs(2)).unwrap(), 99, "waited for the program's push");
    });

    let map = Map::create(&MapSpec::new("counter", MapType::Hash, 4, 8, 4)).unwrap();
    let watch = Watch::<u32, u64>::new(&map, 5).unwrap();
    let started = Instant::now();
    assert!(matches!(watch.wait_present(Some(Duration::from_millis(50))), Err(RefError::Timeout { .. })));
    assert!(started.elapsed() >= Duration::from_millis(50));
    let prog = incrementer(&map, 5);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            map.update(&5u32.to_ne_bytes(), &40u64.to_ne_bytes(), bpfkit::maps::UpdateFlags::Any).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            prog.test_run(&TestRun::with_data([0u8; 64]).repeat(2)).unwrap();
        });
        assert_eq!(watch.wait_present(Some(Duration::from_secs(2))).unwrap(), 40);
        assert_eq!(watch.wait_change(Some(40), Some(Duration::from_secs(2))).unwrap(), Some(42), "the program's two increments");
    });
    map.delete(&5u32.to_ne_bytes()).unwrap();
    assert_eq!(watch.wait_change(Some(42), Some(Duration::from_millis(100))).unwrap(), None, "deleted");
}

#[test]
fn nothing_is_left_open() {
    let _g = serial();
    if !support::kernel_or_skip("refs: descriptors") {
        return;
    }
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let before = fds();
    for _ in 0..20 {
        let counter = Map::create(&MapSpec::new("counter", MapType::Hash, 4, 8, 4)).unwrap();
        let e = Entry::<u32, u64>::new(&counter, 1).unwrap();
        e.fetch_add(1).unwrap(); // loads the compare-and-swap program
        let arr = Map::create(&MapSpec::new("arr", MapType::Array, 4, 8, 4).flags(MapFlags::MMAPABLE)).unwrap();
        Entry::<u32, u64>::new(&arr, 0).unwrap().fetch_add(1).unwrap();
        let q = Map::create(&MapSpec::new("q", MapType::Queue, 0, 8, 4)).unwrap();
        let (tx, rx) = channel::<u64>(&q).unwrap();
        tx.send(&1).unwrap();
        rx.recv().unwrap();
        let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, 4096)).unwrap();
        let mut s = RingStream::<u64>::new(&ring).unwrap();
        assert!(s.try_recv().unwrap().is_none());
        let _w = Watch::<u32, u64>::new(&counter, 1).unwrap();
    }
    assert_eq!(fds(), before, "every map, program and mapping closed on drop");
}

#[cfg(feature = "tokio")]
#[test]
fn async_ring_stream_is_a_stream() {
    use std::pin::Pin;
    use std::task::Context;
    let _g = serial();
    if !support::kernel_or_skip("refs: async stream") {
        return;
    }
    let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, 4096)).unwrap();
    let prog = Program::load(&bpf_asm! {
        r1 = 42
        *(u64 *)(r10 - 8) = r1
        r1 = map[ring] ll
        r2 = r10
        r2 += -8
        r3 = 8
        r4 = 0
        call bpf_ringbuf_output
        r0 = 2
        exit
    }.assemble().unwrap(), &[&ring], &LoadOptions::new("emit", ProgType::Xdp)).unwrap();
    fn next(s: &mut bpfkit::refs::AsyncRingStream<u64>) -> impl std::future::Future<Output = Option<Result<u64, RefError>>> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| futures_core::Stream::poll_next(Pin::new(&mut *s), cx))
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut stream = bpfkit::refs::AsyncRingStream::<u64>::new(&ring).unwrap();
        // `Stream::poll_next` through a tiny `next()`, without a futures dependency.
        assert!(tokio::time::timeout(Duration::from_millis(50), next(&mut stream)).await.is_err(), "nothing yet: pending");
        std::thread::scope(|s| {
            s.spawn(|| prog.test_run(&TestRun::with_data([0u8; 64]).repeat(3)).unwrap());
        });
        for _ in 0..3 {
            let got = tokio::time::timeout(Duration::from_secs(2), next(&mut stream)).await.unwrap();
            assert_eq!(got.unwrap().unwrap(), 42);
        }
    });
}
