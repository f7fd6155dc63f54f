//! Kernel tests for the map types that need more than sizes to exist or to be used: fd-valued
//! maps (programs, maps, sockets, perf events, cgroups), BTF-described local storage, struct_ops,
//! arenas, ring buffers in both directions, stack traces and cgroup storage. Plus the check that
//! bpfkit's type lists are the running kernel's.

mod support;

use support::cgroup::ChildCgroup;

use std::os::fd::{AsFd, AsRawFd};

use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, BtfBuilder, IntEncoding, Kind, LoadedBtf, Member};
use bpfkit::events::{RingBuf, UserRingBuf};
use bpfkit::maps::{Map, MapError, MapFlags, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program, TestRun};
use bpfkit::os;

const PACKET: [u8; 64] = [0u8; 64];

/// Whether the running kernel creates maps of type `ty`: bpfkit's probe decides, and a "no" is
/// believed only when libbpf 1.7's probe agrees (printed as the skip's reason).
fn kernel_has_map(test: &str, ty: MapType) -> bool {
    support::probe::kernel_has(test, &format!("{ty} maps"), bpfkit::features::Features::global().map_type(ty), || {
        support::witness::libbpf_map_type(ty.raw())
    })
}

fn k(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}
fn u64_of(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().unwrap())
}
fn errno(e: &MapError) -> Option<i32> {
    match e {
        MapError::Sys(s) => s.errno(),
        _ => None,
    }
}

/// `BPF_MAP_TYPE_LRU_HASH` → `lru_hash`.
fn enum_suffix(name: &str, prefix: &str) -> Option<String> {
    name.strip_prefix(prefix).map(str::to_ascii_lowercase)
}

#[test]
fn type_lists_are_the_running_kernels() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        support::skip("no /sys/kernel/btf/vmlinux");
        return;
    }
    let btf = Btf::vmlinux().unwrap();
    // Every type of the running kernel's enum is bpfkit's, by number and name. bpfkit may know
    // newer ones (on an older kernel): those must come after all of this kernel's (the enums only
    // grow at the end) and be refused by this kernel (`supported`: the feature probe's answer).
    let features = bpfkit::features::Features::new();
    let check = |enum_name: &str, prefix: &str, ours: &dyn Fn(u32) -> Option<&'static str>, all: &[(u32, &'static str)], supported: &dyn Fn(u32) -> bool| {
        let mut seen = Vec::new();
        for ev in btf.enum_values(enum_name).unwrap() {
            let Some(name) = enum_suffix(ev.name, prefix) else { continue };
            if name == "unspec" || name.ends_with("_deprecated") || ev.name.starts_with("__MAX") {
                continue;
            }
            let got = ours(ev.value as u32);
            // The kernel keeps old names as aliases of the same number (cgroup_storage_deprecated).
            assert!(got.is_some(), "{enum_name}: {} = {} unknown to bpfkit", ev.name, ev.value);
            assert_eq!(got, Some(name.as_str()), "{enum_name} {}", ev.value);
            seen.push(ev.value as u32);
        }
        let last = seen.iter().copied().max().unwrap();
        let newer: Vec<&str> = all.iter().filter(|(raw, _)| !seen.contains(raw)).map(|&(raw, name)| {
            assert!(raw > last, "{enum_name}: bpfkit's {name} = {raw} is missing from this kernel's enum, which goes up to {last}");
            assert!(!supported(raw), "{enum_name}: {name} is not in this kernel's enum, yet its feature probe says supported");
            name
        }).collect();
        assert_eq!(seen.len() + newer.len(), all.len(), "{enum_name}");
        if !newer.is_empty() {
            println!("{enum_name}: bpfkit knows {} newer than this kernel: {newer:?}", newer.len());
        }
        seen.len()
    };
    let maps = check("bpf_map_type", "BPF_MAP_TYPE_", &|v| MapType::from_raw(v).map(MapType::name),
        &MapType::ALL.iter().map(|t| (t.raw(), t.name())).collect::<Vec<_>>(),
        &|v| features.map_type(MapType::from_raw(v).unwrap()).unwrap().is_supported());
    let progs = check("bpf_prog_type", "BPF_PROG_TYPE_", &|v| ProgType::from_raw(v).map(ProgType::name),
        &ProgType::ALL.iter().map(|t| (t.raw(), t.name())).collect::<Vec<_>>(),
        &|v| features.prog_type(ProgType::from_raw(v).unwrap()).unwrap().is_supported());
    let attach = check("bpf_attach_type", "BPF_", &|v| AttachType::from_raw(v).map(AttachType::name),
        &AttachType::ALL.iter().map(|t| (t.raw(), t.name())).collect::<Vec<_>>(),
        &|v| features.attach_type(AttachType::from_raw(v).unwrap()).unwrap().is_supported());
    println!("vmlinux BTF: {maps} map types, {progs} program types, {attach} attach types, all known to bpfkit");
}

/// BTF for local-storage maps: `int` key, `struct storage { u64 value; }` value.
fn storage_btf() -> (LoadedBtf, u32, u32) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let u64t = b.add_int("unsigned long long", 8, IntEncoding::Unsigned, 64).unwrap();
    let value = b.add_struct("storage", 8, &[Member::new("value", u64t, 0)]).unwrap();
    let loaded = b.load().unwrap();
    (loaded, int.get(), value.get())
}

/// The creation parameters each map type needs.
fn spec_for(ty: MapType, btf: &(LoadedBtf, u32, u32), vmlinux: &Btf, inner: &Map) -> MapSpec {
    let page = os::page_size() as u32;
    let cpus = os::possible_cpus().unwrap() as u32;
    let name = format!("t_{}", ty.name());
    let s = |key, value, max| MapSpec::new(name.clone(), ty, key, value, max);
    match ty {
        MapType::ProgArray | MapType::CgroupArray | MapType::Devmap | MapType::DevmapHash | MapType::Xskmap | MapType::Sockmap | MapType::Sockhash | MapType::ReuseportSockarray => s(4, 4, 4),
        MapType::PerfEventArray => s(4, 4, cpus),
        MapType::Cpumap => s(4, 4, cpus),
        MapType::StackTrace => s(4, 8 * 127, 16),
        MapType::LpmTrie => s(8, 8, 16).flags(MapFlags::NO_PREALLOC),
        MapType::ArrayOfMaps | MapType::HashOfMaps => s(4, 4, 4).inner_map(inner).unwrap(),
        MapType::CgroupStorage | MapType::PercpuCgroupStorage => s(16, 8, 0),
        MapType::Queue | MapType::Stack | MapType::BloomFilter => s(0, 8, 16),
        MapType::SkStorage | MapType::InodeStorage | MapType::TaskStorage | MapType::CgrpStorage => {
            s(4, 8, 0).flags(MapFlags::NO_PREALLOC).btf(btf.0.as_fd(), btf.1, btf.2).unwrap()
        }
        MapType::StructOps => {
            let id = vmlinux.find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", Kind::Struct).unwrap();
            let size = vmlinux.size_of(id).unwrap() as u32;
            s(4, size, 1).btf_vmlinux_value_type_id(id.get()).btf(btf.0.as_fd(), 0, 0).unwrap()
        }
        MapType::RingBuf | MapType::UserRingBuf => s(0, 0, 4 * page),
        MapType::Arena => s(0, 0, 16).flags(MapFlags::MMAPABLE),
        _ => s(4, 8, 16),
    }
}

#[test]
fn every_map_type_is_created_and_reported_back() {
    if !support::kernel_or_skip("every map type") {
        return;
    }
    let btf = storage_btf();
    let vmlinux = Btf::vmlinux().unwrap();
    let inner = Map::create(&MapSpec::new("inner", MapType::Array, 4, 8, 1)).unwrap();
    let mut created = 0;
    for &ty in MapType::ALL {
        if !kernel_has_map("every map type", ty) {
            continue;
        }
        created += 1;
        let spec = spec_for(ty, &btf, &vmlinux, &inner);
        let m = Map::create(&spec).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let info = m.info().unwrap();
        assert_eq!(info.map_type, Some(ty));
        assert_eq!((info.key_size, info.value_size), (spec.get_key_size(), spec.get_value_size()), "{ty}");
        let again = Map::from_id(info.id).unwrap();
        assert_eq!(again.map_type(), ty);
    }
    println!("created {created} of bpfkit's {} map types", MapType::ALL.len());
}

#[test]
fn prog_array_tail_call() {
    if !support::kernel_or_skip("prog array") {
        return;
    }
    let jumps = Map::create(&MapSpec::new("jumps", MapType::ProgArray, 4, 4, 4)).unwrap();
    let target = Program::load(&bpf_asm! { r0 = 42; exit }.assemble().unwrap(), &[], &LoadOptions::new("target", ProgType::Xdp)).unwrap();
    jumps.update_fd(&k(0), &target, UpdateFlags::Any).unwrap();
    assert_eq!(jumps.lookup(&k(0)).unwrap(), Some(target.info().unwrap().id.to_ne_bytes().to_vec()), "lookup gives the program id");
    let caller = bpf_asm! {
        r2 = map[jumps] ll
        r3 = 0
        call bpf_tail_call
        r0 = 1
        exit
    };
    let caller = Program::load(&caller.assemble().unwrap(), &[&jumps], &LoadOptions::new("caller", ProgType::Xdp)).unwrap();
    assert_eq!(caller.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 42);
    jumps.delete(&k(0)).unwrap();
    assert_eq!(caller.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 1, "an empty slot falls through");
}

#[test]
fn map_in_map_lookup_from_program_and_user_space() {
    if !support::kernel_or_skip("map in map") {
        return;
    }
    let inner = Map::create(&MapSpec::new("inner", MapType::Array, 4, 8, 1)).unwrap();
    inner.update(&k(0), &5u64.to_ne_bytes(), UpdateFlags::Any).unwrap();
    for ty in [MapType::ArrayOfMaps, MapType::HashOfMaps] {
        let outer = Map::create(&MapSpec::new("outer", ty, 4, 4, 4).inner_map(&inner).unwrap()).unwrap();
        outer.update_fd(&k(0), &inner, UpdateFlags::Any).unwrap();
        let got = outer.lookup_inner_map(&k(0)).unwrap().unwrap();
        assert_eq!(got.info().unwrap().id, inner.info().unwrap().id, "{ty}");
        let prog = bpf_asm! {
            *(u32 *)(r10 - 4) = 0
            r1 = map[outer] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto miss
            r1 = r0
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto miss
            r0 = *(u64 *)(r0 + 0)
            exit
        miss:
            r0 = 99
            exit
        };
        let p = Program::load(&prog.assemble().unwrap(), &[&outer], &LoadOptions::new("mim", ProgType::Xdp)).unwrap();
        assert_eq!(p.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 5, "{ty}");
    }
}

#[test]
fn stack_trace_map_filled_by_get_stackid() {
    if !support::kernel_or_skip("stack trace map") {
        return;
    }
    let stacks = Map::create(&MapSpec::new("stacks", MapType::StackTrace, 4, 8 * 127, 16)).unwrap();
    let prog = bpf_asm! {
        r2 = map[stacks] ll
        r3 = 0
        call bpf_get_stackid
        exit
    };
    let p = Program::load(&prog.assemble().unwrap(), &[&stacks], &LoadOptions::new("stk", ProgType::RawTracepoint)).unwrap();
    let id = p.test_run(&TestRun::default()).unwrap().retval as i32;
    assert!(id >= 0, "bpf_get_stackid returned {id}");
    let frames = stacks.lookup(&(id as u32).to_ne_bytes()).unwrap().expect("the stack is stored");
    assert_ne!(u64_of(&frames), 0, "a kernel instruction pointer");
}

#[test]
fn ring_buffer_records_from_a_program() {
    if !support::kernel_or_skip("ring buffer") {
        return;
    }
    let rb = Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, 4 * os::page_size() as u32)).unwrap();
    let prog = bpf_asm! {
        r1 = 0x1122334455667788 ll
        *(u64 *)(r10 - 8) = r1
        r1 = map[events] ll
        r2 = r10
        r2 += -8
        r3 = 8
        r4 = 0
        call bpf_ringbuf_output
        exit
    };
    let p = Program::load(&prog.assemble().unwrap(), &[&rb], &LoadOptions::new("rbout", ProgType::Xdp)).unwrap();
    let mut reader = RingBuf::new(&rb).unwrap();
    assert!(reader.read_all().is_empty());
    assert_eq!(p.test_run(&TestRun::with_data(PACKET).repeat(3)).unwrap().retval, 0);
    let records = reader.read_all();
    assert_eq!(records, vec![0x1122334455667788u64.to_ne_bytes().to_vec(); 3]);
    assert!(reader.read_all().is_empty(), "consumed records are gone");
}

#[test]
fn user_ring_buffer_drained_by_a_program() {
    if !support::kernel_or_skip("user ring buffer") {
        return;
    }
    let urb = Map::create(&MapSpec::new("cmds", MapType::UserRingBuf, 0, 0, 4 * os::page_size() as u32)).unwrap();
    let sum = Map::create(&MapSpec::new("sum", MapType::Array, 4, 8, 1)).unwrap();
    let mut w = UserRingBuf::new(&urb).unwrap();
    for x in [1u64, 20, 300] {
        w.write(&x.to_ne_bytes()).unwrap();
    }
    // The callback reads each record with bpf_dynptr_read and adds it to sum[0].
    let prog = bpf_asm! {
        r1 = map[cmds] ll
        r2 = func[add] ll
        r3 = 0
        r4 = 0
        call bpf_user_ringbuf_drain
        exit
    add:
        r3 = r1
        r1 = r10
        r1 += -8
        r2 = 8
        r4 = 0
        r5 = 0
        call bpf_dynptr_read
        if r0 != 0 goto done
        *(u32 *)(r10 - 12) = 0
        r1 = map[sum] ll
        r2 = r10
        r2 += -12
        call bpf_map_lookup_elem
        if r0 == 0 goto done
        r1 = *(u64 *)(r10 - 8)
        r2 = *(u64 *)(r0 + 0)
        r2 += r1
        *(u64 *)(r0 + 0) = r2
    done:
        r0 = 0
        exit
    };
    let p = Program::load(&prog.assemble().unwrap(), &[&urb, &sum], &LoadOptions::new("drain", ProgType::Xdp)).unwrap();
    assert_eq!(p.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 3, "three records drained");
    assert_eq!(u64_of(&sum.lookup(&k(0)).unwrap().unwrap()), 321);
}

#[test]
fn perf_event_array_holds_perf_events_a_program_outputs_to() {
    if !support::kernel_or_skip("perf event array") {
        return;
    }
    let cpus = os::possible_cpus().unwrap() as u32;
    let events = Map::create(&MapSpec::new("perf", MapType::PerfEventArray, 4, 4, cpus)).unwrap();
    let attr = os::perf::PerfEventAttr {
        type_: os::perf::PERF_TYPE_SOFTWARE,
        config: os::perf::PERF_COUNT_SW_BPF_OUTPUT,
        sample_type: os::perf::PERF_SAMPLE_RAW,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    let fds: Vec<_> = (0..cpus).map(|cpu| os::perf::open(&attr, -1, cpu as i32, -1, 0).unwrap()).collect();
    let page = os::page_size();
    // Each event needs its ring (1 metadata page + 2^n data pages) mapped before it can take output.
    // SAFETY (test code): a shared mapping of a perf event's ring, which the kernel writes;
    // read below only through atomics and after the kernel's data_head says it is there.
    let rings: Vec<memmap2::MmapMut> =
        fds.iter().map(|fd| unsafe { memmap2::MmapOptions::new().len(2 * page).map_mut(fd.as_raw_fd()) }.unwrap()).collect();
    for (cpu, fd) in fds.iter().enumerate() {
        events.update_fd(&k(cpu as u32), fd, UpdateFlags::Any).unwrap();
    }
    // The kernel's internal ENOTSUPP (524): perf event arrays are not readable from user space.
    assert_eq!(errno(&events.lookup(&k(0)).unwrap_err()), Some(524));
    let prog = bpf_asm! {
        r6 = 7
        *(u64 *)(r10 - 8) = r6
        r2 = map[perf] ll
        r3 = 0xffffffff ll
        r4 = r10
        r4 += -8
        r5 = 8
        call bpf_perf_event_output
        exit
    };
    let p = Program::load(&prog.assemble().unwrap(), &[&events], &LoadOptions::new("perfout", ProgType::Xdp)).unwrap();
    assert_eq!(p.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 0, "bpf_perf_event_output succeeded");
    // struct perf_event_mmap_page: data_head at byte 1024; records start at the second page:
    // { u32 type (PERF_RECORD_SAMPLE = 9), u16 misc, u16 size, u32 raw size, raw bytes }.
    let data_head = |r: &memmap2::MmapMut| {
        // SAFETY (test code): byte 1024 of the mapping is the u64 data_head, 8-byte aligned in a
        // page-aligned mapping, which the kernel stores to; an atomic load reads it.
        unsafe { (*(r.as_ptr().add(1024) as *const std::sync::atomic::AtomicU64)).load(std::sync::atomic::Ordering::Acquire) }
    };
    let written: Vec<_> = rings.iter().filter(|r| data_head(r) > 0).collect();
    assert_eq!(written.len(), 1, "one CPU's ring got the record");
    let rec = &written[0][page..];
    assert_eq!(u32::from_ne_bytes(rec[0..4].try_into().unwrap()), 9);
    // The raw size is padded so that size field + data stay 8-byte aligned: 8 bytes → 12.
    assert_eq!(u32::from_ne_bytes(rec[8..12].try_into().unwrap()), 12, "raw size");
    assert_eq!(u64_of(&rec[12..20]), 7, "the program's value");
    assert!(events.delete(&k(0)).unwrap());
}

use support::cgroup::CGROUP2;

/// A child cgroup v2 for the test, removed on drop.
#[test]
fn cgroup_array_and_current_task_under_cgroup() {
    if !support::kernel_or_skip("cgroup array") {
        return;
    }
    let cgs = Map::create(&MapSpec::new("cgs", MapType::CgroupArray, 4, 4, 2)).unwrap();
    let root = std::fs::File::open(CGROUP2).unwrap();
    cgs.update_fd(&k(0), &root, UpdateFlags::Any).unwrap();
    let child = ChildCgroup::new("cgarr");
    cgs.update_fd(&k(1), child.open(), UpdateFlags::Any).unwrap();
    let prog = |idx: i32| {
        let asm = bpf_asm! {
            r1 = map[cgs] ll
            r2 = {idx}
            call bpf_current_task_under_cgroup
            exit
        };
        Program::load(&asm.assemble().unwrap(), &[&cgs], &LoadOptions::new("undercg", ProgType::RawTracepoint)).unwrap()
    };
    assert_eq!(prog(0).test_run(&TestRun::default()).unwrap().retval, 1, "this task is under the root cgroup");
    assert_eq!(prog(1).test_run(&TestRun::default()).unwrap().retval, 0, "and not under an empty child");
}

#[test]
fn devmap_devmap_hash_and_cpumap_hold_devices_and_queues() {
    if !support::kernel_or_skip("devmap/cpumap") {
        return;
    }
    let lo = 1u32; // the loopback device's ifindex
    for ty in [MapType::Devmap, MapType::DevmapHash] {
        let m = Map::create(&MapSpec::new("devs", ty, 4, 4, 4)).unwrap();
        m.update(&k(3), &lo.to_ne_bytes(), UpdateFlags::Any).unwrap();
        assert_eq!(m.lookup(&k(3)).unwrap(), Some(lo.to_ne_bytes().to_vec()), "{ty}");
        let bad = m.update(&k(2), &999_999u32.to_ne_bytes(), UpdateFlags::Any).unwrap_err();
        assert_eq!(errno(&bad), Some(libc::EINVAL), "{ty}: no such device: {bad}");
    }
    let cpus = Map::create(&MapSpec::new("cpus", MapType::Cpumap, 4, 4, os::possible_cpus().unwrap() as u32)).unwrap();
    cpus.update(&k(0), &192u32.to_ne_bytes(), UpdateFlags::Any).unwrap();
    assert_eq!(cpus.lookup(&k(0)).unwrap(), Some(192u32.to_ne_bytes().to_vec()), "queue size read back");
}

#[test]
fn sockmap_sockhash_and_reuseport_array_hold_sockets() {
    if !support::kernel_or_skip("socket maps") {
        return;
    }
    use socket2::{Domain, Socket, Type};
    for ty in [MapType::Sockmap, MapType::Sockhash, MapType::ReuseportSockarray] {
        // value_size 8: lookups return the socket's cookie.
        let m = Map::create(&MapSpec::new("socks", ty, 4, 8, 4)).unwrap();
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        sock.set_reuse_port(true).unwrap();
        sock.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
        m.update_fd(&k(1), &sock, UpdateFlags::Any).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let cookie = os::socket_cookie(sock.as_fd()).unwrap();
        assert_eq!(u64_of(&m.lookup(&k(1)).unwrap().unwrap()), cookie, "{ty}");
        assert!(m.delete(&k(1)).unwrap(), "{ty}");
    }
    let xsk = Map::create(&MapSpec::new("xsks", MapType::Xskmap, 4, 4, 4)).unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = xsk.update_fd(&k(0), &udp, UpdateFlags::Any).unwrap_err();
    assert_eq!(errno(&err), Some(libc::EOPNOTSUPP), "an xskmap takes only AF_XDP sockets: {err}");
    assert!(err.to_string().contains("xskmap \"xsks\""), "{err}");
}

#[test]
fn local_storage_maps_keyed_by_fds() {
    if !support::kernel_or_skip("local storage maps") {
        return;
    }
    let btf = storage_btf();
    let spec = |name: &str, ty| MapSpec::new(name, ty, 4, 8, 0).flags(MapFlags::NO_PREALLOC).btf(btf.0.as_fd(), btf.1, btf.2).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let pidfd = os::pidfd_open(std::process::id() as i32).unwrap();
    let child = ChildCgroup::new("storage");
    let cg = child.open();
    let file = tempfile::NamedTempFile::new().unwrap();
    let cases: [(MapType, i32); 4] = [
        (MapType::SkStorage, std::os::fd::AsRawFd::as_raw_fd(&sock)),
        (MapType::TaskStorage, std::os::fd::AsRawFd::as_raw_fd(&pidfd)),
        (MapType::CgrpStorage, std::os::fd::AsRawFd::as_raw_fd(&cg)),
        (MapType::InodeStorage, std::os::fd::AsRawFd::as_raw_fd(file.as_file())),
    ];
    for (ty, fd) in cases {
        let m = Map::create(&spec("store", ty)).unwrap();
        let key = fd.to_ne_bytes();
        match m.update(&key, &77u64.to_ne_bytes(), UpdateFlags::Any) {
            Ok(()) => {}
            // Inode storage lives in the BPF LSM's part of `inode->i_security`: with `bpf` not
            // among the active LSMs (/sys/kernel/security/lsm) the inode has no such blob and
            // the kernel answers EBADF.
            Err(e) if ty == MapType::InodeStorage && errno(&e) == Some(libc::EBADF) => {
                support::skip(&format!("inode_storage elements: the BPF LSM is not active, so inodes have no storage blob ({e})"));
                continue;
            }
            Err(e) => panic!("{ty}: {e}"),
        }
        assert_eq!(u64_of(&m.lookup(&key).unwrap().unwrap()), 77, "{ty}");
        if ty == MapType::InodeStorage {
            // Keyed by the inode behind the fd, not the fd: another open of the same file
            // finds the element.
            let again = std::fs::File::open(file.path()).unwrap();
            let key2 = std::os::fd::AsRawFd::as_raw_fd(&again).to_ne_bytes();
            assert_eq!(u64_of(&m.lookup(&key2).unwrap().unwrap()), 77, "inode_storage through a second fd of the same inode");
            let other = tempfile::tempfile().unwrap();
            let key3 = std::os::fd::AsRawFd::as_raw_fd(&other).to_ne_bytes();
            assert_eq!(m.lookup(&key3).unwrap(), None, "another inode has no element");
        }
        assert!(m.delete(&key).unwrap(), "{ty}");
        assert_eq!(m.lookup(&key).unwrap(), None, "{ty}");
    }
}

/// Inode storage from the program side: `bpf_inode_storage_get` belongs to BPF LSM programs
/// only. The verifier refuses it to every other program type that could run here (tracing
/// iterators, syscall programs), and this kernel refuses LSM programs at PROG_LOAD (EPERM), so
/// no program can reach an inode's storage on this machine; both refusals are asserted.
#[test]
fn inode_storage_helper_is_for_lsm_programs_only() {
    if !support::kernel_or_skip("inode storage from programs") {
        return;
    }
    let btf = storage_btf();
    let store = Map::create(&MapSpec::new("store", MapType::InodeStorage, 4, 8, 0).flags(MapFlags::NO_PREALLOC).btf(btf.0.as_fd(), btf.1, btf.2).unwrap()).unwrap();
    let asm = bpf_asm! {
        r1 = map[store] ll
        r2 = 0
        r3 = 0
        r4 = 0
        call bpf_inode_storage_get
        r0 = 0
        exit
    }
    .assemble()
    .unwrap();
    let iter = bpfkit::attach::iter::load_options("inode_iter", "task_file").unwrap();
    let syscall = LoadOptions::new("inode_sc", ProgType::Syscall).flags(bpfkit::prog::ProgFlags::SLEEPABLE);
    for opts in [iter, syscall] {
        let err = Program::load(&asm, &[&store], &opts).unwrap_err();
        assert!(err.to_string().contains("cannot use helper bpf_inode_storage_get"), "{err}");
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let hook = vmlinux.find_by_name_kind("bpf_lsm_file_open", Kind::Func).unwrap();
    let lsm = LoadOptions::new("inode_lsm", ProgType::Lsm).expected_attach_type(AttachType::LsmMac).attach_btf_id(hook.get());
    match Program::load(&asm, &[&store], &lsm) {
        Err(bpfkit::prog::LoadError::Sys(e)) if e.errno() == Some(libc::EPERM) => {
            println!("inode_storage from a program: only BPF LSM programs may call bpf_inode_storage_get, and this kernel refuses them ({e})");
        }
        Err(e) => panic!("an LSM program using inode storage: {e}"),
        Ok(_) => eprintln!("note: LSM programs load on this kernel; this test does not attach one to exercise inode storage from a program"),
    }
}

#[test]
fn cgroup_storage_exists_while_a_program_is_attached() {
    if !support::kernel_or_skip("cgroup storage") {
        return;
    }
    for ty in [MapType::CgroupStorage, MapType::PercpuCgroupStorage] {
        let store = Map::create(&MapSpec::new("cgstore", ty, 16, 8, 0)).unwrap();
        let prog = bpf_asm! {
            r1 = map[cgstore] ll
            r2 = 0
            call bpf_get_local_storage
            r1 = 1
            lock *(u64 *)(r0 + 0) += r1
            r0 = 1
            exit
        };
        let opts = LoadOptions::new("cgcount", ProgType::CgroupSkb).expected_attach_type(AttachType::CgroupInetEgress);
        let prog = if ty == MapType::PercpuCgroupStorage {
            let asm = bpf_asm! {
                r1 = map[cgstore] ll
                r2 = 0
                call bpf_get_local_storage
                r1 = *(u64 *)(r0 + 0)
                r1 += 1
                *(u64 *)(r0 + 0) = r1
                r0 = 1
                exit
            };
            Program::load(&asm.assemble().unwrap(), &[&store], &opts).unwrap()
        } else {
            Program::load(&prog.assemble().unwrap(), &[&store], &opts).unwrap()
        };
        let child = ChildCgroup::new("cgstore");
        let cg = child.open();
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&child.id().to_ne_bytes());
        key[8..12].copy_from_slice(&AttachType::CgroupInetEgress.raw().to_ne_bytes());
        assert_eq!(store.lookup(&key).unwrap(), None, "{ty}: no storage before attaching");
        let link = prog.attach_cgroup(&cg, AttachType::CgroupInetEgress).unwrap();
        let zero = vec![0u8; store.value_buf_len().unwrap()];
        assert_eq!(store.lookup(&key).unwrap(), Some(zero.clone()), "{ty}: storage allocated on attach");
        let mut five = zero.clone();
        five[..8].copy_from_slice(&5u64.to_ne_bytes());
        store.update(&key, &five, UpdateFlags::Any).unwrap();
        assert_eq!(store.lookup(&key).unwrap(), Some(five), "{ty}");
        drop(link);
    }
}

#[test]
fn struct_ops_map_created_from_vmlinux_btf() {
    if !support::kernel_or_skip("struct_ops map") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let id = vmlinux.find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", Kind::Struct).unwrap();
    let size = vmlinux.size_of(id).unwrap() as u32;
    // The kernel wants a program BTF fd beside the vmlinux type (any loaded BTF will do).
    let btf = storage_btf();
    let no_btf = Map::create(&MapSpec::new("cc", MapType::StructOps, 4, size, 1).btf_vmlinux_value_type_id(id.get())).unwrap_err();
    assert_eq!(errno(&no_btf), Some(libc::EINVAL));
    let m = Map::create(&MapSpec::new("cc", MapType::StructOps, 4, size, 1).btf_vmlinux_value_type_id(id.get()).btf(btf.0.as_fd(), 0, 0).unwrap()).unwrap();
    assert_eq!(m.info().unwrap().btf_vmlinux_value_type_id, id.get());
    let value = m.lookup(&k(0)).unwrap().expect("the struct_ops value");
    assert_eq!(value.len(), size as usize);
    // struct bpf_struct_ops_common_value { refcount_t refcnt; enum bpf_struct_ops_state state; }
    let state = u32::from_ne_bytes(value[4..8].try_into().unwrap());
    let states = vmlinux.enum_values("bpf_struct_ops_state").unwrap();
    let init = states.iter().find(|e| e.name == "BPF_STRUCT_OPS_STATE_INIT").unwrap().value;
    assert_eq!(state as i64, init as i64, "a new struct_ops map is in state INIT");
}

#[test]
fn arena_pages_are_shared_memory() {
    if !support::kernel_or_skip("arena") || !kernel_has_map("arena", MapType::Arena) {
        return;
    }
    let arena = Map::create(&MapSpec::new("arena", MapType::Arena, 0, 0, 16).flags(MapFlags::MMAPABLE)).unwrap();
    let mut mem = arena.mmap().unwrap();
    assert_eq!(mem.len(), 16 * os::page_size());
    let off = 3 * os::page_size() + 8;
    mem.set::<u64>(off, &0xfeed_f00d).unwrap();
    // A second mapping sees the same pages.
    let other = arena.mmap();
    if let Ok(other) = other {
        assert_eq!(other.get::<u64>(off).unwrap(), 0xfeed_f00d);
    }
    assert!(mem.get::<u64>(16 * os::page_size() - 4).is_err(), "past the end");
}

/// Across the boundary both ways: user space writes a word through its mapping, an XDP program
/// reaches the same byte through the arena's kernel mapping (`map_value[arena]+OFF` is the
/// arena's user address plus OFF; `addr_space_cast(.., 0, 1)` makes it an arena pointer, which
/// the JIT rebases onto the kernel's view), reads it, and writes `3x + 1` next to it, which user
/// space then reads through the mapping.
#[test]
fn arena_words_cross_between_a_program_and_user_space() {
    if !support::kernel_or_skip("arena") || !kernel_has_map("arena", MapType::Arena) {
        return;
    }
    let arena = Map::create(&MapSpec::new("arena", MapType::Arena, 0, 0, 4).flags(MapFlags::MMAPABLE)).unwrap();
    // The first mmap fixes the arena's user address, which the verifier needs before a program
    // may use the arena ("arena's user address must be set via map_extra or mmap()").
    let mut mem = arena.mmap().unwrap();
    const OFF: usize = 4096 + 64; // second page
    let asm = bpf_asm! {
        r1 = map_value[arena]+4160 ll
        r1 = addr_space_cast(r1, 0x0, 0x1)
        r0 = *(u64 *)(r1 + 0)
        r2 = r0
        r2 *= 3
        r2 += 1
        *(u64 *)(r1 + 8) = r2
        exit
    }
    .assemble()
    .unwrap();
    let prog = Program::load(&asm, &[&arena], &LoadOptions::new("arena_rw", ProgType::Xdp)).unwrap();
    for x in [0x1234_5678u64, 41] {
        // Written by user space only; the program's retval and the word at OFF + 8 come from
        // the kernel's side of the mapping.
        mem.set::<u64>(OFF, &x).unwrap();
        mem.set::<u64>(OFF + 8, &0).unwrap();
        let ret = prog.test_run(&TestRun::with_data(PACKET.to_vec())).unwrap().retval;
        assert_eq!(ret as u64, x & 0xffff_ffff, "the program read user space's word");
        assert_eq!(mem.get::<u64>(OFF + 8).unwrap(), 3 * x + 1, "user space reads the program's word");
    }
}

/// A page the kernel allocates (`bpf_arena_alloc_pages` in a sleepable syscall program) and
/// writes appears in user space's mapping at the address the kfunc returned: user space never
/// touched it before.
#[test]
fn arena_page_allocated_by_a_program_is_seen_through_the_mapping() {
    if !support::kernel_or_skip("arena") || !kernel_has_map("arena", MapType::Arena) {
        return;
    }
    let arena = Map::create(&MapSpec::new("arena", MapType::Arena, 0, 0, 8).flags(MapFlags::MMAPABLE)).unwrap();
    let mem = arena.mmap().unwrap();
    let base = mem.as_bytes().as_ptr() as u64;
    let asm = bpf_asm! {
        r1 = map[arena] ll
        r2 = 0
        r3 = 1
        r4 = -1
        r5 = 0
        call kfunc[bpf_arena_alloc_pages]
        if r0 == 0 goto none
        r6 = r0
        r1 = addr_space_cast(r6, 0x0, 0x1)
        r2 = 0x5eed1e55
        *(u64 *)(r1 + 24) = r2
        r0 = r6
        exit
    none:
        r0 = 0
        exit
    }
    .assemble()
    .unwrap();
    let opts = LoadOptions::new("arena_alloc", ProgType::Syscall).flags(bpfkit::prog::ProgFlags::SLEEPABLE);
    let prog = Program::load(&asm, &[&arena], &opts).unwrap();
    let page = os::page_size();
    // The kfunc returns the page's user address; its low 32 bits reach us as retval.
    let ret = prog.test_run(&TestRun::default()).unwrap().retval;
    assert_ne!(ret, 0, "bpf_arena_alloc_pages returned NULL");
    let off = ret.wrapping_sub(base as u32) as usize;
    assert!(off.is_multiple_of(page) && off < 8 * page, "the page at {ret:#x} lies in the arena mapped at {base:#x}");
    assert_eq!(mem.get::<u64>(off + 24).unwrap(), 0x5eed_1e55, "the program's word, read through the mapping");
    // A second allocation is a different page.
    let again = prog.test_run(&TestRun::default()).unwrap().retval;
    assert_ne!(again.wrapping_sub(base as u32) as usize, off, "a second page");
}

/// An xskmap holding a real AF_XDP socket: bound to queue 0 of a veth in a namespace of its
/// own, stored in the map, found by a program's lookup (which reads the socket's queue), and
/// fed by `bpf_redirect_map`: every IPv4 datagram sent over the veth arrives in the socket's
/// RX ring, and none reaches the UDP socket behind it; once the entry is deleted the same
/// program falls back to XDP_PASS and the datagrams reach the UDP socket again.
#[test]
fn xskmap_holds_an_af_xdp_socket_that_receives_redirected_packets() {
    use bpfkit::attach::XdpMode;
    use bpfkit::net::{if_index, Netlink};
    use bpfkit::net::xsk::{XskConfig, XskSocket};
    use bpfkit::net::NetNs;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::Duration;

    if !support::kernel_or_skip("xskmap with an AF_XDP socket") {
        return;
    }
    const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const PORT: u16 = 4243;
    const N: usize = 8;
    let (a, b) = (NetNs::new().unwrap(), NetNs::new().unwrap());
    let up = |name: &str, ip: Ipv4Addr| {
        let nl = Netlink::open().unwrap();
        let i = if_index(name).unwrap();
        nl.add_ipv4(i, ip, 24).unwrap();
        nl.set_up(i).unwrap();
        i
    };
    a.run(|| {
        Netlink::open().unwrap().add_veth("xa", "xb", Some(b.as_fd())).unwrap();
        up("xa", A_IP)
    })
    .unwrap();
    let ifb = b.run(|| up("xb", B_IP)).unwrap();
    let tx = a.run(|| UdpSocket::bind((A_IP, 0)).unwrap()).unwrap();
    let rx = b.run(|| UdpSocket::bind((B_IP, PORT)).unwrap()).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tx.send_to(b"warm-up", (B_IP, PORT)).unwrap();
    rx.recv(&mut [0u8; 64]).expect("a warm-up datagram crosses the veth (ARP resolved)");

    let mut xsk = b.run(|| XskSocket::bind(ifb, XskConfig::default())).unwrap().unwrap();
    let xsks = Map::create(&MapSpec::new("xsks", MapType::Xskmap, 4, 4, 4)).unwrap();
    xsks.update_fd(&k(0), &xsk, UpdateFlags::Any).unwrap();
    // User space cannot read an xskmap back (the kernel has no value to give it)…
    let err = xsks.lookup(&k(0)).unwrap_err();
    assert_eq!(errno(&err), Some(libc::EOPNOTSUPP), "{err}");
    // …but a program's lookup finds the socket: `struct bpf_xdp_sock { __u32 queue_id; }`.
    let looked_up = |key: u32| {
        let asm = bpf_asm! {
            r1 = map[xsks] ll
            r2 = r10
            r2 += -4
            *(u32 *)(r10 - 4) = {key as i32}
            call bpf_map_lookup_elem
            if r0 == 0 goto missing
            r0 = *(u32 *)(r0 + 0)
            r0 += 100
            exit
        missing:
            r0 = 7
            exit
        }
        .assemble()
        .unwrap();
        let p = Program::load(&asm, &[&xsks], &LoadOptions::new("xsk_lookup", ProgType::Xdp)).unwrap();
        p.test_run(&TestRun::with_data(PACKET.to_vec())).unwrap().retval
    };
    assert_eq!(looked_up(0), 100 + xsk.queue_id(), "slot 0 holds the socket bound to queue {}", xsk.queue_id());
    assert_eq!(looked_up(1), 7, "slot 1 is empty");

    // IPv4 frames to the socket of the frame's queue; everything else (ARP) passes.
    let redirect = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto pass
        r4 = *(u16 *)(r2 + 12)
        if r4 != 0x0008 goto pass
        r2 = *(u32 *)(r1 + 16)
        r1 = map[xsks] ll
        r3 = 2
        call bpf_redirect_map
        exit
    pass:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    let prog = Program::load(&redirect, &[&xsks], &LoadOptions::new("to_xsk", ProgType::Xdp)).unwrap();
    let link = b.run(|| prog.attach_xdp(ifb, XdpMode::Native)).unwrap().unwrap();
    for i in 0..N {
        tx.send_to(format!("to the xsk {i}").as_bytes(), (B_IP, PORT)).unwrap();
    }
    let mut frames = Vec::new();
    while frames.len() < N {
        match xsk.recv(Duration::from_secs(2)).unwrap() {
            Some(f) => frames.push(f),
            None => break,
        }
    }
    assert_eq!(frames.len(), N, "frames in the RX ring; socket stats {:?}", xsk.stats().unwrap());
    for (i, f) in frames.iter().enumerate() {
        // Ethernet (14) + IPv4 (20) + UDP (8), then the payload.
        assert_eq!(u16::from_be_bytes([f[12], f[13]]), 0x0800, "frame {i} is IPv4");
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), PORT, "frame {i}'s UDP destination port");
        assert_eq!(&f[42..], format!("to the xsk {i}").as_bytes(), "frame {i}'s payload, in order");
    }
    rx.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(rx.recv(&mut [0u8; 64]).is_err(), "redirected datagrams never reach the UDP socket");

    // Without the entry, bpf_redirect_map returns its fallback (XDP_PASS).
    assert!(xsks.delete(&k(0)).unwrap());
    tx.send_to(b"passed", (B_IP, PORT)).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let n = rx.recv(&mut buf).expect("with slot 0 empty the datagram passes to the stack");
    assert_eq!(&buf[..n], b"passed");
    assert_eq!(xsk.try_recv().unwrap(), None, "and not to the AF_XDP socket");
    drop(link);
}
