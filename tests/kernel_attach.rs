//! Kernel tests of attach points on this kernel: each triggers a real event a known number of
//! times and asserts the exact count the program saw; dropping the link detaches it.

mod support;

use support::cgroup::ChildCgroup;

use std::os::fd::AsFd;

use bpfkit::attach::{AttachPath, Link, PerfEventTarget};
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use bpfkit::sys;

fn counter(name: &str) -> Map {
    Map::create(&MapSpec::new(name, MapType::Array, 4, 8, 1)).unwrap()
}

fn count(m: &Map) -> u64 {
    m.typed::<u32, u64>().unwrap().get(&0).unwrap().unwrap()
}

/// A program that adds 1 to `hits[0]` when the current thread is `tid` (and, if `syscall_nr` is
/// set, when `*(u64 *)(ctx + 8)` — the syscall number of sys_enter's raw arguments — equals it).
fn counting_prog(hits: &Map, prog_type: ProgType, opts: LoadOptions, tid: i32, syscall_nr: Option<i64>) -> Program {
    let nr = syscall_nr.unwrap_or(-1) as i32;
    let asm = bpf_asm! {
        r6 = r1
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        r1 = {nr}
        if r1 == -1 goto count
        r2 = *(u64 *)(r6 + 8)
        if r2 != r1 goto out
    count:
        *(u32 *)(r10 - 4) = 0
        r1 = map[hits] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 0
        exit
    };
    let _ = prog_type;
    Program::load(&asm.assemble().unwrap(), &[hits], &opts).unwrap()
}

fn getpid_n(n: usize) {
    for _ in 0..n {
        std::hint::black_box(std::process::id());
    }
}

#[test]
fn tracepoint_counts_exactly_and_detaches_on_drop() {
    if !support::kernel_or_skip("tracepoint attach") {
        return;
    }
    for path in [AttachPath::BpfLink, AttachPath::PerfEventIoctl] {
        let hits = counter("hits");
        let prog = counting_prog(&hits, ProgType::Tracepoint, LoadOptions::new("tp_getpid", ProgType::Tracepoint), sys::gettid(), None);
        let link = match path {
            AttachPath::BpfLink => prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap(),
            _ => prog.attach_tracepoint_ioctl("syscalls", "sys_enter_getpid").unwrap(),
        };
        assert_eq!(link.path(), path);
        getpid_n(100);
        assert_eq!(count(&hits), 100, "{path:?}");
        let id = link.info().ok().map(|i| i.id);
        drop(link);
        getpid_n(50);
        assert_eq!(count(&hits), 100, "{path:?}: no hits after the link is dropped");
        if let Some(id) = id {
            assert!(!Link::all_ids().unwrap().contains(&id), "the bpf_link is gone");
        }
    }
    let hits = counter("hits");
    let prog = counting_prog(&hits, ProgType::Tracepoint, LoadOptions::new("tp_bad", ProgType::Tracepoint), 0, None);
    let err = prog.attach_tracepoint("syscalls", "no_such_tracepoint").unwrap_err();
    assert!(err.to_string().contains("tracepoint syscalls/no_such_tracepoint"), "{err}");
}

#[test]
fn raw_tracepoint_and_tp_btf_count_exactly() {
    if !support::kernel_or_skip("raw tracepoint attach") {
        return;
    }
    let getpid_nr = libc::SYS_getpid;
    let hits = counter("hits");
    let raw = counting_prog(&hits, ProgType::RawTracepoint, LoadOptions::new("raw_enter", ProgType::RawTracepoint), sys::gettid(), Some(getpid_nr));
    let link = raw.attach_raw_tracepoint("sys_enter").unwrap();
    getpid_n(77);
    drop(link);
    getpid_n(10);
    assert_eq!(count(&hits), 77);

    let vmlinux = Btf::vmlinux().unwrap();
    let target = vmlinux.find_by_name_kind("btf_trace_sys_enter", Kind::Typedef).unwrap();
    let hits = counter("hits");
    let opts = LoadOptions::new("btf_enter", ProgType::Tracing).expected_attach_type(AttachType::TraceRawTp).attach_btf_id(target.get());
    let tp_btf = counting_prog(&hits, ProgType::Tracing, opts, sys::gettid(), Some(getpid_nr));
    let link = tp_btf.attach_btf().unwrap();
    getpid_n(33);
    drop(link);
    getpid_n(10);
    assert_eq!(count(&hits), 33);
}

#[test]
fn pinned_link_outlives_its_fd_until_unpinned() {
    if !support::kernel_or_skip("link pinning") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    sys::mount_bpffs(dir.path()).unwrap();
    let pin = dir.path().join("getpid_link");
    let hits = counter("hits");
    let prog = counting_prog(&hits, ProgType::Tracepoint, LoadOptions::new("tp_pinned", ProgType::Tracepoint), sys::gettid(), None);
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    link.pin(&pin).unwrap();
    let id = link.info().unwrap().id;
    drop(link);
    getpid_n(20);
    assert_eq!(count(&hits), 20, "the pin keeps the link attached");
    let reopened = Link::from_pin(&pin).unwrap();
    assert_eq!(reopened.info().unwrap().id, id);
    drop(reopened);
    Link::unpin(&pin).unwrap();
    getpid_n(20);
    assert_eq!(count(&hits), 20, "unpinned and closed: detached");
    sys::unmount(dir.path()).unwrap();
}

#[test]
fn perf_event_program_samples_cpu_clock() {
    if !support::kernel_or_skip("perf_event attach") {
        return;
    }
    let hits = counter("samples");
    let asm = bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[samples] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&asm.assemble().unwrap(), &[&hits], &LoadOptions::new("sampler", ProgType::PerfEvent)).unwrap();
    // Sample this thread's CPU time 1000 times a second while it spins for 300 ms.
    let target = PerfEventTarget::software_freq(sys::PERF_COUNT_SW_CPU_CLOCK, 1000, -1).for_pid(sys::gettid());
    let link = prog.attach_perf_event(&target).unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(300) {
        std::hint::black_box((0..1000u64).sum::<u64>());
    }
    drop(link);
    let n = count(&hits);
    assert!((100..=600).contains(&n), "{n} samples for 300 ms at 1000 Hz");
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(50) {
        std::hint::black_box((0..1000u64).sum::<u64>());
    }
    assert_eq!(count(&hits), n, "no samples after detach");
}

/// A child cgroup v2 for the test, removed on drop.
/// Run `connect()` to 127.0.0.1:`port` from a shell moved into `cgroup`; the shell's stderr.
fn connect_from(cgroup: &ChildCgroup, port: u16) -> String {
    let out = cgroup.bash(&format!("exec 3<>/dev/tcp/127.0.0.1/{port}")).output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cgroup_connect4_refuses_one_port_only() {
    if !support::kernel_or_skip("cgroup connect4") {
        return;
    }
    let listener_a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listener_b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (blocked, open) = (listener_a.local_addr().unwrap().port(), listener_b.local_addr().unwrap().port());
    // bpf_sock_addr.user_port (offset 24) holds the port in network byte order.
    let port_be = blocked.to_be() as i32;
    let asm = bpf_asm! {
        r2 = *(u32 *)(r1 + 24)
        r0 = 1
        if r2 != {port_be} goto out
        r0 = 0
    out:
        exit
    };
    let opts = LoadOptions::new("deny_port", ProgType::CgroupSockAddr).expected_attach_type(AttachType::CgroupInet4Connect);
    let prog = Program::load(&asm.assemble().unwrap(), &[], &opts).unwrap();
    for path in [AttachPath::BpfLink, AttachPath::ProgAttach] {
        let cg = ChildCgroup::new("connect4");
        let dir = cg.open();
        let link = prog.attach_cgroup_via(dir.as_fd(), AttachType::CgroupInet4Connect, path).unwrap();
        assert_eq!(link.path(), path);
        let err = connect_from(&cg, blocked);
        assert!(err.contains("Operation not permitted"), "{path:?}: blocked port: {err}");
        assert_eq!(connect_from(&cg, open), "", "{path:?}: the other port connects");
        drop(link);
        assert_eq!(connect_from(&cg, blocked), "", "{path:?}: detached on drop");
    }
}
