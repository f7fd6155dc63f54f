//! Kernel tests, one per map type and per map operation: every value asserted here was read back
//! from the kernel. Types that need sockets, BTF, cgroups or programs are in
//! `kernel_maps_special.rs`.

mod support;

use bpfkit::bpf_asm;
use bpfkit::maps::{lpm_key, BatchOptions, Map, MapError, MapFlags, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};

const PACKET: [u8; 64] = [0u8; 64];

fn k(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}
fn v(i: u64) -> [u8; 8] {
    i.to_ne_bytes()
}

fn errno(e: &MapError) -> Option<i32> {
    match e {
        MapError::Sys(s) => s.errno(),
        _ => None,
    }
}

#[test]
fn hash_update_flags_lookup_delete() {
    if !support::kernel_or_skip("hash map") {
        return;
    }
    let m = Map::create(&MapSpec::new("h", MapType::Hash, 4, 8, 16)).unwrap();
    assert_eq!(m.lookup(&k(1)).unwrap(), None);
    m.update(&k(1), &v(10), UpdateFlags::NoExist).unwrap();
    let dup = m.update(&k(1), &v(11), UpdateFlags::NoExist).unwrap_err();
    assert_eq!(errno(&dup), Some(libc::EEXIST));
    assert!(dup.to_string().starts_with("map_update_elem(hash \"h\")"), "{dup}");
    let absent = m.update(&k(2), &v(20), UpdateFlags::Exist).unwrap_err();
    assert_eq!(errno(&absent), Some(libc::ENOENT));
    m.update(&k(1), &v(12), UpdateFlags::Exist).unwrap();
    m.update(&k(2), &v(20), UpdateFlags::Any).unwrap();
    assert_eq!(m.lookup(&k(1)).unwrap(), Some(v(12).to_vec()));
    assert_eq!(m.lookup_and_delete(&k(2)).unwrap(), Some(v(20).to_vec()));
    assert_eq!(m.lookup(&k(2)).unwrap(), None);
    assert!(m.delete(&k(1)).unwrap());
    assert!(!m.delete(&k(1)).unwrap());
    let short = m.lookup(&[1, 2]).unwrap_err();
    assert!(matches!(short, MapError::WrongSize { what: "key", got: 2, want: 4, .. }), "{short}");
}

#[test]
fn creation_error_names_the_map_and_sizes() {
    if !support::kernel_or_skip("map_create error") {
        return;
    }
    let err = Map::create(&MapSpec::new("counts", MapType::Hash, 4, 8, 0)).unwrap_err();
    assert_eq!(errno(&err), Some(libc::EINVAL));
    let msg = err.to_string();
    assert!(msg.starts_with("map_create(hash \"counts\", key 4, value 8, max_entries 0)"), "{msg}");
}

#[test]
fn array_semantics_and_typed_access() {
    if !support::kernel_or_skip("array map") {
        return;
    }
    let m = Map::create(&MapSpec::new("a", MapType::Array, 4, 8, 4)).unwrap();
    let t = m.typed::<u32, u64>().unwrap();
    assert_eq!(t.get(&3).unwrap(), Some(0), "arrays start zeroed");
    assert_eq!(t.get(&4).unwrap(), None, "out of range is absent");
    t.insert(&3, &33, UpdateFlags::Any).unwrap();
    assert_eq!(t.get(&3).unwrap(), Some(33));
    assert_eq!(errno(&t.insert(&1, &1, UpdateFlags::NoExist).unwrap_err()), Some(libc::EEXIST));
    assert_eq!(errno(&m.delete(&k(0)).unwrap_err()), Some(libc::EINVAL), "array elements cannot be deleted");
    let all: Vec<(u32, u64)> = t.iter().map(Result::unwrap).collect();
    assert_eq!(all, vec![(0, 0), (1, 0), (2, 0), (3, 33)]);
    assert!(m.typed::<u64, u64>().is_err(), "key type size is checked");
}

#[test]
fn per_cpu_values_are_sized_by_possible_cpus_rounded_to_8() {
    if !support::kernel_or_skip("per-CPU maps") {
        return;
    }
    let cpus = bpfkit::os::possible_cpus().unwrap();
    for ty in [MapType::PercpuHash, MapType::PercpuArray, MapType::LruPercpuHash] {
        // A 4-byte value occupies 8 bytes per CPU.
        let m = Map::create(&MapSpec::new("pc", ty, 4, 4, 8)).unwrap();
        assert_eq!(m.value_buf_len().unwrap(), 8 * cpus, "{ty}");
        let per = m.per_cpu::<u32, u32>().unwrap();
        let values: Vec<u32> = (0..cpus as u32).map(|c| 100 + c).collect();
        per.insert(&1, &values, UpdateFlags::Any).unwrap();
        assert_eq!(per.get(&1).unwrap(), Some(values.clone()), "{ty}");
        assert_eq!(m.lookup_percpu(&k(1)).unwrap().unwrap().len(), cpus);
        per.insert_all(&2, &7, UpdateFlags::Any).unwrap();
        assert_eq!(per.get(&2).unwrap(), Some(vec![7; cpus]));
        assert!(m.typed::<u32, u32>().is_err(), "per-CPU maps are not plain typed maps");
    }
}

#[test]
fn per_cpu_counter_incremented_by_a_program() {
    if !support::kernel_or_skip("per-CPU counter") {
        return;
    }
    let m = Map::create(&MapSpec::new("pcc", MapType::PercpuArray, 4, 8, 1)).unwrap();
    let asm = bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[pcc] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
    out:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    let p = Program::load(&asm, &[&m], &LoadOptions::new("pcc", ProgType::Xdp)).unwrap();
    p.test_run(&TestRun::with_data(PACKET).repeat(5)).unwrap();
    let total: u64 = m.per_cpu::<u32, u64>().unwrap().get(&0).unwrap().unwrap().iter().sum();
    assert_eq!(total, 5);
}

#[test]
fn lru_hash_evicts_instead_of_failing() {
    if !support::kernel_or_skip("lru hash") {
        return;
    }
    let m = Map::create(&MapSpec::new("lru", MapType::LruHash, 4, 8, 64).flags(MapFlags::NO_COMMON_LRU)).unwrap();
    for i in 0..1000 {
        m.update(&k(i), &v(i as u64), UpdateFlags::Any).unwrap();
    }
    let n = m.keys().count();
    assert!(n <= 64 && n > 0, "{n} entries in a 64-entry LRU");
    assert_eq!(m.lookup(&k(999)).unwrap(), Some(v(999).to_vec()), "the newest survives");
}

#[test]
fn lpm_trie_longest_prefix_match() {
    if !support::kernel_or_skip("lpm trie") {
        return;
    }
    let m = Map::create(&MapSpec::new("routes", MapType::LpmTrie, 8, 8, 16).flags(MapFlags::NO_PREALLOC)).unwrap();
    m.update(&lpm_key(8, &[10, 0, 0, 0]), &v(1), UpdateFlags::Any).unwrap();
    m.update(&lpm_key(16, &[10, 1, 0, 0]), &v(2), UpdateFlags::Any).unwrap();
    assert_eq!(m.lookup(&lpm_key(32, &[10, 1, 2, 3])).unwrap(), Some(v(2).to_vec()));
    assert_eq!(m.lookup(&lpm_key(32, &[10, 2, 0, 0])).unwrap(), Some(v(1).to_vec()));
    assert_eq!(m.lookup(&lpm_key(32, &[11, 0, 0, 0])).unwrap(), None);
    assert!(m.delete(&lpm_key(16, &[10, 1, 0, 0])).unwrap());
    assert_eq!(m.lookup(&lpm_key(32, &[10, 1, 2, 3])).unwrap(), Some(v(1).to_vec()));
    assert_eq!(m.keys().count(), 1);
}

#[test]
fn queue_and_stack_push_pop_peek() {
    if !support::kernel_or_skip("queue/stack") {
        return;
    }
    for (ty, order) in [(MapType::Queue, [1u64, 2, 3]), (MapType::Stack, [3u64, 2, 1])] {
        let m = Map::create(&MapSpec::new("qs", ty, 0, 8, 3)).unwrap();
        assert_eq!(m.peek().unwrap(), None);
        for i in 1..=3u64 {
            m.push(&v(i), UpdateFlags::Any).unwrap();
        }
        assert_eq!(errno(&m.push(&v(4), UpdateFlags::Any).unwrap_err()), Some(libc::E2BIG), "{ty} full");
        assert_eq!(m.peek().unwrap(), Some(v(order[0]).to_vec()));
        let popped: Vec<u64> = std::iter::from_fn(|| m.pop().unwrap()).map(|b| u64::from_ne_bytes(b.try_into().unwrap())).collect();
        assert_eq!(popped, order.to_vec(), "{ty}");
        assert!(matches!(m.lookup(&k(0)), Err(MapError::Unsupported { .. })), "keyless");
    }
    // BPF_EXIST on a full queue drops the oldest.
    let q = Map::create(&MapSpec::new("q", MapType::Queue, 0, 8, 2)).unwrap();
    for i in 1..=3u64 {
        q.push(&v(i), UpdateFlags::Exist).unwrap();
    }
    assert_eq!(q.pop().unwrap(), Some(v(2).to_vec()));
}

#[test]
fn bloom_filter_has_no_false_negatives() {
    if !support::kernel_or_skip("bloom filter") {
        return;
    }
    let m = Map::create(&MapSpec::new("bloom", MapType::BloomFilter, 0, 8, 1000).map_extra(3)).unwrap();
    for i in 0..100u64 {
        m.push(&v(i * 7919), UpdateFlags::Any).unwrap();
    }
    assert!((0..100u64).all(|i| m.contains(&v(i * 7919)).unwrap()));
    let false_pos = (0..100u64).filter(|i| m.contains(&v(1_000_000 + i)).unwrap()).count();
    assert!(false_pos < 10, "{false_pos} false positives of 100");
}

#[test]
fn key_iteration_survives_deleting_while_walking() {
    if !support::kernel_or_skip("iteration") {
        return;
    }
    let m = Map::create(&MapSpec::new("it", MapType::Hash, 4, 8, 2048)).unwrap();
    for i in 0..1000 {
        m.update(&k(i), &v(i as u64), UpdateFlags::Any).unwrap();
    }
    // Delete every key as soon as it is seen: the kernel restarts from the first key each time.
    let mut seen = std::collections::BTreeSet::new();
    for key in m.keys() {
        let key = key.unwrap();
        assert!(seen.insert(u32::from_ne_bytes(key.clone().try_into().unwrap())), "no key twice");
        m.delete(&key).unwrap();
    }
    assert_eq!(seen.len(), 1000);
    assert_eq!(m.keys().count(), 0);

    // Another thread deletes odd keys while this one walks: no error, no duplicates, every even key.
    for i in 0..1000 {
        m.update(&k(i), &v(i as u64), UpdateFlags::Any).unwrap();
    }
    let seen = std::thread::scope(|s| {
        let deleter = s.spawn(|| {
            for i in (1..1000).step_by(2) {
                m.delete(&k(i)).unwrap();
            }
        });
        let keys: Vec<u32> = m.keys().map(|k| u32::from_ne_bytes(k.unwrap().try_into().unwrap())).collect();
        deleter.join().unwrap();
        keys
    });
    let unique: std::collections::BTreeSet<u32> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no key twice");
    assert!((0..1000).step_by(2).all(|i| unique.contains(&i)), "every surviving key visited");
}

#[test]
fn batch_update_lookup_delete() {
    if !support::kernel_or_skip("batch ops") {
        return;
    }
    for ty in [MapType::Hash, MapType::Array, MapType::PercpuHash] {
        let n = 10_000u32;
        let m = Map::create(&MapSpec::new("batch", ty, 4, 8, n)).unwrap();
        let stride = m.value_buf_len().unwrap();
        let keys: Vec<u8> = (0..n).flat_map(k).collect();
        let values: Vec<u8> = (0..n).flat_map(|i| {
            let mut val = vec![0u8; stride];
            val[..8].copy_from_slice(&v(i as u64 * 3));
            val
        }).collect();
        assert_eq!(m.update_batch(&keys, &values, UpdateFlags::Any, &BatchOptions::default()).unwrap(), n as usize, "{ty}");
        let got = m.lookup_batch(&BatchOptions::default().chunk(1000)).unwrap();
        assert_eq!(got.len(), n as usize, "{ty}");
        for (key, val) in got.iter() {
            let i = u32::from_ne_bytes(key.try_into().unwrap());
            assert_eq!(&val[..8], &v(i as u64 * 3), "{ty} key {i}");
        }
        if ty == MapType::Array {
            continue; // arrays cannot delete
        }
        let half: Vec<u8> = (0..n / 2).flat_map(k).collect();
        assert_eq!(m.delete_batch(&half).unwrap(), (n / 2) as usize);
        let rest = m.lookup_and_delete_batch(&BatchOptions::default().chunk(7)).unwrap();
        assert_eq!(rest.len(), (n / 2) as usize, "{ty}: chunk of 7 grows past full buckets");
        assert_eq!(m.keys().count(), 0, "{ty} empty after lookup_and_delete_batch");
    }
}

#[test]
fn mmapable_array_is_shared_with_syscalls_and_programs() {
    if !support::kernel_or_skip("mmapable array") {
        return;
    }
    let m = Map::create(&MapSpec::new("mm", MapType::Array, 4, 8, 16).flags(MapFlags::MMAPABLE)).unwrap();
    let mut mem = m.mmap().unwrap();
    assert_eq!(mem.len(), 16);
    mem.set::<u64>(5, &55).unwrap();
    assert_eq!(m.typed::<u32, u64>().unwrap().get(&5).unwrap(), Some(55), "a write through memory is seen by lookup");
    m.update(&k(6), &v(66), UpdateFlags::Any).unwrap();
    assert_eq!(mem.get::<u64>(6).unwrap(), 66, "an update is seen in memory");
    assert!(mem.get::<u64>(16).is_err(), "index past the end");
    let asm = bpf_asm! {
        *(u32 *)(r10 - 4) = 7
        r1 = map[mm] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r2 = 77
        *(u64 *)(r0 + 0) = r2
    out:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    let p = Program::load(&asm, &[&m], &LoadOptions::new("mmw", ProgType::Xdp)).unwrap();
    p.test_run(&TestRun::with_data(PACKET)).unwrap();
    assert_eq!(mem.get::<u64>(7).unwrap(), 77, "a program's write is seen in memory");
    let plain = Map::create(&MapSpec::new("plain", MapType::Array, 4, 8, 1)).unwrap();
    assert!(matches!(plain.mmap(), Err(MapError::Unsupported { .. })));
}

#[test]
fn frozen_map_is_read_only_for_user_space_only() {
    if !support::kernel_or_skip("freeze") {
        return;
    }
    let m = Map::create(&MapSpec::new("frozen", MapType::Array, 4, 8, 1)).unwrap();
    m.update(&k(0), &v(9), UpdateFlags::Any).unwrap();
    m.freeze().unwrap();
    assert_eq!(errno(&m.update(&k(0), &v(1), UpdateFlags::Any).unwrap_err()), Some(libc::EPERM));
    assert_eq!(m.lookup(&k(0)).unwrap(), Some(v(9).to_vec()));
    let asm = bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[frozen] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 10
        *(u64 *)(r0 + 0) = r1
    out:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    let p = Program::load(&asm, &[&m], &LoadOptions::new("frz", ProgType::Xdp)).unwrap();
    p.test_run(&TestRun::with_data(PACKET)).unwrap();
    assert_eq!(m.lookup(&k(0)).unwrap(), Some(v(10).to_vec()), "programs may still write");
}

#[test]
fn info_by_fd_and_open_by_id() {
    if !support::kernel_or_skip("map info") {
        return;
    }
    let m = Map::create(&MapSpec::new("infomap", MapType::Hash, 4, 8, 32).flags(MapFlags::NO_PREALLOC)).unwrap();
    let info = m.info().unwrap();
    assert_eq!((info.map_type, info.key_size, info.value_size, info.max_entries), (Some(MapType::Hash), 4, 8, 32));
    assert_eq!(info.name, "infomap");
    assert!(info.flags.contains(MapFlags::NO_PREALLOC));
    assert!(Map::all_ids().unwrap().contains(&info.id));
    m.update(&k(1), &v(2), UpdateFlags::Any).unwrap();
    let again = Map::from_id(info.id).unwrap();
    assert_eq!(again.name(), "infomap");
    assert_eq!(again.lookup(&k(1)).unwrap(), Some(v(2).to_vec()));
    let err = Map::from_id(u32::MAX).unwrap_err();
    assert!(err.to_string().contains("map_get_fd_by_id(4294967295)"), "{err}");
}

/// A bpffs mounted on a fresh temp directory for the test, unmounted on drop.
struct Bpffs(tempfile::TempDir);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = tempfile::tempdir().unwrap();
        bpfkit::os::mount_bpffs(dir.path()).unwrap();
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = bpfkit::os::unmount(self.0.path());
    }
}

#[test]
fn pin_open_pinned_unpin_and_bpffs_checks() {
    if !support::kernel_or_skip("pinning") {
        return;
    }
    let fs = Bpffs::new();
    let path = fs.0.path().join("counts");
    let id = {
        let m = Map::create(&MapSpec::new("pinned", MapType::Hash, 4, 8, 8)).unwrap();
        m.update(&k(7), &v(70), UpdateFlags::Any).unwrap();
        m.pin(&path).unwrap();
        m.info().unwrap().id
    };
    // The map outlives its creator's fd while pinned.
    let m = Map::from_pin(&path).unwrap();
    assert_eq!(m.info().unwrap().id, id);
    assert_eq!(m.lookup(&k(7)).unwrap(), Some(v(70).to_vec()));
    Map::unpin(&path).unwrap();
    assert!(!path.exists());
    let gone = Map::from_pin(&path).unwrap_err();
    assert!(gone.to_string().contains("counts"), "{gone}");

    // Not a bpffs: a clear error before the kernel is asked.
    let tmp = tempfile::tempdir().unwrap();
    let err = m.pin(tmp.path().join("x")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not on a bpffs") && msg.contains("mount -t bpf"), "{msg}");
    let err = m.pin("/nonexistent-dir/x").unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
