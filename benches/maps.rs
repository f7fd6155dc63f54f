//! Kernel-interface cost beside libbpf and aya (docs/PERFORMANCE.md): `cargo bench --bench maps`.
//! Needs root (or CAP_BPF) and a kernel with bpf(2); every figure includes the syscall.
//!
//! * `map_lookup/{hash,array}`, `map_update/{hash,array}`: one element operation on an existing
//!   key of a map with key `u32`, value `u64`, 10,000 entries, all filled; successive iterations
//!   visit every key in turn ([`KeyCycle`]). Each library works on its own map of that shape.
//!   bpfkit uses `Map::lookup_into` (no allocation) and `Map::update` (and the typed view),
//!   libbpf `bpf_map_lookup_elem`/`bpf_map_update_elem` (libbpf-sys), aya 0.13
//!   `HashMap::get/insert` and `Array::get/set` on libbpf-made maps adopted with
//!   `MapData::from_fd` (aya 0.13 creates maps only from an ELF object).
//! * `batch_lookup_10k/hash`: read all 10,000 elements of a hash map, with
//!   `BPF_MAP_LOOKUP_BATCH` (chunks of [`BATCH_CHUNK`]) and one by one (next-key walk + lookup
//!   per key), in bpfkit and libbpf; aya 0.13 has no batch API, its one-by-one `HashMap::iter`
//!   is shown for reference.
//! * `prog_load_100_insns`: `BPF_PROG_LOAD` of the same 100-instruction socket filter (the
//!   verifier runs each time) and closing the fd, bpfkit `Program::load` vs libbpf
//!   `bpf_prog_load`. aya 0.13 cannot load a program without an ELF object through its public
//!   API, so it is not in this group.
//!
//! bpfkit is used only through its safe API. `unsafe` appears only around libbpf-sys's C
//! functions (the peer's API), each block with a `// SAFETY:` comment.

use std::ffi::{c_void, CStr};
use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use bpfkit::insn::{exit, mov64, Assembled, Program as InsnProgram, Reg};
use bpfkit::maps::{BatchOptions, Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};

/// Entries of every map (all filled).
const ENTRIES: u32 = 10_000;
/// Elements per `BPF_MAP_LOOKUP_BATCH` call, for bpfkit and libbpf alike (bpfkit's default).
const BATCH_CHUNK: u32 = 1_024;
/// Instructions of the loaded program.
const PROG_INSNS: usize = 100;

fn value_of(k: u32) -> u64 {
    (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn small_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g
}

// ---------------------------------------------------------------------------------------------
// Map creation and filling

fn kit_map(name: &str, map_type: MapType) -> Map {
    let map = Map::create(&MapSpec::new(name, map_type, 4, 8, ENTRIES)).expect("bpfkit map_create (run as root)");
    let keys: Vec<u8> = (0..ENTRIES).flat_map(u32::to_ne_bytes).collect();
    let values: Vec<u8> = (0..ENTRIES).flat_map(|k| value_of(k).to_ne_bytes()).collect();
    let n = map.update_batch(&keys, &values, UpdateFlags::Any, &BatchOptions::default()).expect("bpfkit update_batch");
    assert_eq!(n, ENTRIES as usize);
    map
}

/// A map created and filled through libbpf.
fn libbpf_map(name: &CStr, map_type: MapType) -> OwnedFd {
    let raw_type = match map_type {
        MapType::Hash => libbpf_sys::BPF_MAP_TYPE_HASH,
        MapType::Array => libbpf_sys::BPF_MAP_TYPE_ARRAY,
        other => panic!("no libbpf map of type {other} in this bench"),
    };
    // SAFETY: `name` is a NUL-terminated string that outlives the call; a null `opts` is allowed
    // (libbpf defaults). A non-negative return is a new fd that nothing else owns, so wrapping it
    // in an OwnedFd (closed once, on drop) is sound.
    let fd = unsafe {
        let fd = libbpf_sys::bpf_map_create(raw_type, name.as_ptr(), 4, 8, ENTRIES, std::ptr::null());
        assert!(fd >= 0, "libbpf bpf_map_create: {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(fd)
    };
    for k in 0..ENTRIES {
        let v = value_of(k);
        // SAFETY: `k` and `v` are live locals of exactly the map's key and value sizes (4 and 8).
        let r = unsafe {
            libbpf_sys::bpf_map_update_elem(fd.as_raw_fd(), &k as *const u32 as *const c_void, &v as *const u64 as *const c_void, 0)
        };
        assert_eq!(r, 0, "libbpf bpf_map_update_elem: {}", std::io::Error::last_os_error());
    }
    fd
}

fn libbpf_lookup(fd: i32, key: &u32, value: &mut u64) -> i32 {
    // SAFETY: `key` and `value` point to live memory of the map's key size (4) and value size (8).
    unsafe { libbpf_sys::bpf_map_lookup_elem(fd, key as *const u32 as *const c_void, value as *mut u64 as *mut c_void) }
}

fn libbpf_update(fd: i32, key: &u32, value: &u64) -> i32 {
    // SAFETY: `key` and `value` point to live memory of the map's key size (4) and value size (8).
    unsafe {
        libbpf_sys::bpf_map_update_elem(fd, key as *const u32 as *const c_void, value as *const u64 as *const c_void, libbpf_sys::BPF_ANY as u64)
    }
}

/// aya 0.13 cannot create a map without an ELF object through its public API: it adopts an fd of
/// a map made (and filled) by libbpf, reading the map's type and sizes from the kernel.
fn aya_map_data(name: &CStr, map_type: MapType) -> aya::maps::MapData {
    aya::maps::MapData::from_fd(libbpf_map(name, map_type)).expect("aya MapData::from_fd")
}

// ---------------------------------------------------------------------------------------------
// 1, 2: single element lookup and update

/// The keys the single-element benchmarks visit, in turn: every key of the map, in a scrambled
/// order. Each map has its own hash seed, so one fixed key can sit in a longer bucket chain in one
/// library's map than in another's; cycling through all keys gives every map the same average.
struct KeyCycle(u32);

impl KeyCycle {
    fn next(&mut self) -> u32 {
        // 7919 is prime, so it is coprime with ENTRIES and the walk visits every key.
        self.0 = (self.0 + 7_919) % ENTRIES;
        self.0
    }
}

fn single_ops(c: &mut Criterion) {
    // Hash maps.
    let kit_hash = kit_map("kit_hash", MapType::Hash);
    let lb_hash = libbpf_map(c"lb_hash", MapType::Hash);
    let mut aya_hash: aya::maps::HashMap<_, u32, u64> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(aya_map_data(c"aya_hash", MapType::Hash))).expect("aya HashMap");
    // Arrays.
    let kit_array = kit_map("kit_array", MapType::Array);
    let lb_array = libbpf_map(c"lb_array", MapType::Array);
    let mut aya_array: aya::maps::Array<_, u64> =
        aya::maps::Array::try_from(aya::maps::Map::Array(aya_map_data(c"aya_array", MapType::Array))).expect("aya Array");

    // Every library must read the same value for every key before anything is timed.
    for k in 0..ENTRIES {
        let want = value_of(k);
        for map in [&kit_hash, &kit_array] {
            let mut out = [0u8; 8];
            assert!(map.lookup_into(&k.to_ne_bytes(), &mut out).unwrap());
            assert_eq!(u64::from_ne_bytes(out), want);
        }
        for fd in [&lb_hash, &lb_array] {
            let mut v = 0u64;
            assert_eq!(libbpf_lookup(fd.as_raw_fd(), &k, &mut v), 0);
            assert_eq!(v, want);
        }
        assert_eq!(aya_hash.get(&k, 0).unwrap(), want);
        assert_eq!(aya_array.get(&k, 0).unwrap(), want);
    }
    let mut cycle = KeyCycle(0);
    assert_eq!((0..ENTRIES).map(|_| cycle.next()).collect::<std::collections::HashSet<_>>().len(), ENTRIES as usize);

    for (kind, kit, lb) in [("hash", &kit_hash, &lb_hash), ("array", &kit_array, &lb_array)] {
        let mut g = small_group(c, &format!("map_lookup/{kind}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("bpfkit", |b| {
            let (mut keys, mut out) = (KeyCycle(0), [0u8; 8]);
            b.iter(|| {
                let found = kit.lookup_into(black_box(&keys.next().to_ne_bytes()), &mut out).unwrap();
                black_box((found, out))
            })
        });
        g.bench_function("bpfkit_typed", |b| {
            let (mut keys, typed) = (KeyCycle(0), kit.typed::<u32, u64>().unwrap());
            b.iter(|| typed.get(black_box(&keys.next())).unwrap())
        });
        g.bench_function("libbpf", |b| {
            let (mut keys, fd, mut v) = (KeyCycle(0), lb.as_raw_fd(), 0u64);
            b.iter(|| {
                let r = libbpf_lookup(fd, black_box(&keys.next()), &mut v);
                assert_eq!(r, 0);
                black_box(v)
            })
        });
        g.bench_function("aya", |b| {
            let mut keys = KeyCycle(0);
            if kind == "hash" {
                b.iter(|| aya_hash.get(black_box(&keys.next()), 0).unwrap())
            } else {
                b.iter(|| aya_array.get(black_box(&keys.next()), 0).unwrap())
            }
        });
        g.finish();
    }

    // Updates rewrite each key with its own value, so the maps stay as filled.
    for (kind, kit, lb) in [("hash", &kit_hash, &lb_hash), ("array", &kit_array, &lb_array)] {
        let mut g = small_group(c, &format!("map_update/{kind}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("bpfkit", |b| {
            let mut keys = KeyCycle(0);
            b.iter(|| {
                let k = keys.next();
                kit.update(black_box(&k.to_ne_bytes()), black_box(&value_of(k).to_ne_bytes()), UpdateFlags::Any).unwrap()
            })
        });
        g.bench_function("bpfkit_typed", |b| {
            let (mut keys, typed) = (KeyCycle(0), kit.typed::<u32, u64>().unwrap());
            b.iter(|| {
                let k = keys.next();
                typed.insert(black_box(&k), black_box(&value_of(k)), UpdateFlags::Any).unwrap()
            })
        });
        g.bench_function("libbpf", |b| {
            let (mut keys, fd) = (KeyCycle(0), lb.as_raw_fd());
            b.iter(|| {
                let k = keys.next();
                assert_eq!(libbpf_update(fd, black_box(&k), black_box(&value_of(k))), 0)
            })
        });
        g.bench_function("aya", |b| {
            let mut keys = KeyCycle(0);
            if kind == "hash" {
                b.iter(|| {
                    let k = keys.next();
                    aya_hash.insert(black_box(k), black_box(value_of(k)), 0).unwrap()
                })
            } else {
                b.iter(|| {
                    let k = keys.next();
                    aya_array.set(black_box(k), black_box(value_of(k)), 0).unwrap()
                })
            }
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------------
// 3: reading 10k elements, batched and one by one

/// libbpf: every element with `bpf_map_lookup_batch`, [`BATCH_CHUNK`] per call, into buffers
/// allocated once by the caller (the usual libbpf pattern). Returns the number read.
fn libbpf_batch(fd: i32, keys: &mut [u32], values: &mut [u64]) -> usize {
    let opts = libbpf_sys::bpf_map_batch_opts { sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _, elem_flags: 0, flags: 0 };
    // The cursor is opaque (a bucket index for hash maps, at least 4 bytes).
    let (mut in_batch, mut out_batch) = (0u64, 0u64);
    let mut total = 0usize;
    let mut first = true;
    loop {
        let room = keys.len() - total;
        let mut count = room.min(BATCH_CHUNK as usize) as u32;
        let in_ptr = if first { std::ptr::null_mut() } else { &mut in_batch as *mut u64 as *mut c_void };
        // SAFETY: `keys[total..]`/`values[total..]` hold at least `count` keys (4 bytes) and values
        // (8 bytes); `in_batch`/`out_batch` are live 8-byte cursors; `opts` is a live, correctly
        // sized options struct.
        let r = unsafe {
            libbpf_sys::bpf_map_lookup_batch(
                fd,
                in_ptr,
                &mut out_batch as *mut u64 as *mut c_void,
                keys[total..].as_mut_ptr() as *mut c_void,
                values[total..].as_mut_ptr() as *mut c_void,
                &mut count,
                &opts,
            )
        };
        total += count as usize;
        if r == -libc::ENOENT {
            return total;
        }
        assert_eq!(r, 0, "libbpf bpf_map_lookup_batch: {r}");
        first = false;
        in_batch = out_batch;
    }
}

/// libbpf: every element with `bpf_map_get_next_key` + `bpf_map_lookup_elem`.
fn libbpf_one_by_one(fd: i32) -> (usize, u64) {
    let (mut n, mut sum) = (0usize, 0u64);
    let (mut key, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let prev: *const c_void = if first { std::ptr::null() } else { &key as *const u32 as *const c_void };
        // SAFETY: `prev` is null (first key) or points to `key` (4 bytes, live); `next` is 4
        // writable bytes.
        let r = unsafe { libbpf_sys::bpf_map_get_next_key(fd, prev, &mut next as *mut u32 as *mut c_void) };
        if r == -libc::ENOENT {
            return (n, sum);
        }
        assert_eq!(r, 0, "libbpf bpf_map_get_next_key: {r}");
        key = next;
        first = false;
        let mut v = 0u64;
        if libbpf_lookup(fd, &key, &mut v) == 0 {
            n += 1;
            sum = sum.wrapping_add(v);
        }
    }
}

/// bpfkit: every element with `Map::keys` + `Map::lookup_into`.
fn kit_one_by_one(map: &Map) -> (usize, u64) {
    let (mut n, mut sum) = (0usize, 0u64);
    let mut out = [0u8; 8];
    for k in map.keys() {
        if map.lookup_into(&k.unwrap(), &mut out).unwrap() {
            n += 1;
            sum = sum.wrapping_add(u64::from_ne_bytes(out));
        }
    }
    (n, sum)
}

fn batch_lookup(c: &mut Criterion) {
    let kit = kit_map("kit_batch", MapType::Hash);
    let lb = libbpf_map(c"lb_batch", MapType::Hash);
    let aya_hash: aya::maps::HashMap<_, u32, u64> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(aya_map_data(c"aya_batch", MapType::Hash))).expect("aya HashMap");
    let opts = BatchOptions::default().chunk(BATCH_CHUNK);

    // Every variant must see all 10k elements with the same value sum.
    let want_sum = (0..ENTRIES).fold(0u64, |s, k| s.wrapping_add(value_of(k)));
    let got = kit.lookup_batch(&opts).unwrap();
    assert_eq!(got.len(), ENTRIES as usize);
    assert_eq!(got.iter().fold(0u64, |s, (_, v)| s.wrapping_add(u64::from_ne_bytes(v.try_into().unwrap()))), want_sum);
    assert_eq!(kit_one_by_one(&kit), (ENTRIES as usize, want_sum));
    let mut keys = vec![0u32; ENTRIES as usize];
    let mut values = vec![0u64; ENTRIES as usize];
    assert_eq!(libbpf_batch(lb.as_raw_fd(), &mut keys, &mut values), ENTRIES as usize);
    assert_eq!(values.iter().fold(0u64, |s, v| s.wrapping_add(*v)), want_sum);
    assert_eq!(libbpf_one_by_one(lb.as_raw_fd()), (ENTRIES as usize, want_sum));
    assert_eq!(aya_hash.iter().count(), ENTRIES as usize);

    let mut g = c.benchmark_group("batch_lookup_10k/hash");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(ENTRIES as u64));
    g.bench_function("bpfkit_batch", |b| b.iter(|| kit.lookup_batch(black_box(&opts)).unwrap()));
    g.bench_function("bpfkit_one_by_one", |b| b.iter(|| kit_one_by_one(black_box(&kit))));
    g.bench_function("libbpf_batch", |b| b.iter(|| libbpf_batch(black_box(lb.as_raw_fd()), &mut keys, &mut values)));
    g.bench_function("libbpf_one_by_one", |b| b.iter(|| libbpf_one_by_one(black_box(lb.as_raw_fd()))));
    g.bench_function("aya_one_by_one", |b| b.iter(|| aya_hash.iter().map(|r| r.unwrap().1).fold(0u64, u64::wrapping_add)));
    g.finish();
}

// ---------------------------------------------------------------------------------------------
// 4: program load

/// 99 × `r0 = i` then `exit`: 100 instructions, 100 slots, a valid socket filter.
fn hundred_insns() -> Assembled {
    let mut p = InsnProgram::new();
    for i in 0..PROG_INSNS as i32 - 1 {
        p.push(mov64(Reg::R0, i));
    }
    p.push(exit());
    let asm = p.assemble().unwrap();
    assert_eq!(asm.slot_count(), PROG_INSNS);
    asm
}

/// bpfkit's encoding of the program, as libbpf's `struct bpf_insn` array.
fn to_libbpf_insns(bytes: &[u8]) -> Vec<libbpf_sys::bpf_insn> {
    bytes
        .chunks_exact(8)
        .map(|s| libbpf_sys::bpf_insn {
            code: s[0],
            _bitfield_align_1: [],
            _bitfield_1: libbpf_sys::bpf_insn::new_bitfield_1(s[1] & 0x0f, s[1] >> 4),
            off: i16::from_le_bytes([s[2], s[3]]),
            imm: i32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        })
        .collect()
}

fn libbpf_load(insns: &[libbpf_sys::bpf_insn]) -> OwnedFd {
    // SAFETY: the name and license are NUL-terminated literals; `insns` holds `insns.len()`
    // instructions and outlives the call; a null `opts` is allowed. A non-negative return is a new
    // fd that nothing else owns, so wrapping it in an OwnedFd (closed once, on drop) is sound.
    unsafe {
        let fd = libbpf_sys::bpf_prog_load(
            libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
            c"bench".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            std::ptr::null_mut(),
        );
        assert!(fd >= 0, "libbpf bpf_prog_load: {fd}");
        OwnedFd::from_raw_fd(fd)
    }
}

fn prog_load(c: &mut Criterion) {
    let asm = hundred_insns();
    let insns = to_libbpf_insns(&asm.to_bytes().unwrap());
    assert_eq!(insns.len(), PROG_INSNS);
    assert_eq!((insns[0].code, insns[0].dst_reg(), insns[99].code), (0xb7, 0, 0x95)); // mov64 r0, imm; exit
    let opts = LoadOptions::new("bench", ProgType::SocketFilter);
    drop(Program::load(&asm, &[], &opts).expect("bpfkit Program::load (run as root)"));
    drop(libbpf_load(&insns));

    let mut g = small_group(c, "prog_load_100_insns");
    g.throughput(Throughput::Elements(PROG_INSNS as u64));
    g.bench_function("bpfkit", |b| b.iter(|| Program::load(black_box(&asm), &[], &opts).unwrap()));
    g.bench_function("libbpf", |b| b.iter(|| libbpf_load(black_box(&insns))));
    g.finish();
}

criterion_group!(benches, single_ops, batch_lookup, prog_load);
criterion_main!(benches);
