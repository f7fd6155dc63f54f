//! Kernel tests of attach points on this kernel: each triggers a real event a known number of
//! times and asserts the exact count the program saw; dropping the link detaches it.

mod support;

use support::cgroup::ChildCgroup;

use std::os::fd::AsFd;

use bpfkit::attach::{AttachPath, Link, PerfEventTarget, TracepointOptions};
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use bpfkit::os;

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
    let count = support::progs::count_and_return("hits", 0);
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
        {&count}
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
        let prog = counting_prog(&hits, ProgType::Tracepoint, LoadOptions::new("tp_getpid", ProgType::Tracepoint), os::gettid(), None);
        let link = match path {
            AttachPath::BpfLink => prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap(),
            _ => prog.attach_tracepoint_with("syscalls", "sys_enter_getpid", &TracepointOptions::new().ioctl()).unwrap(),
        };
        assert_eq!(link.path(), path);
        getpid_n(100);
        assert_eq!(count(&hits), 100, "{path:?}");
        let id = link.info().ok().map(|i| i.id);
        if let Some(id) = id {
            support::bpftool::assert_link_listed(id, true);
        }
        drop(link);
        getpid_n(50);
        assert_eq!(count(&hits), 100, "{path:?}: no hits after the link is dropped");
        if let Some(id) = id {
            assert!(!Link::all_ids().unwrap().contains(&id), "the bpf_link is gone");
            support::bpftool::assert_link_listed(id, false);
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
    let raw = counting_prog(&hits, ProgType::RawTracepoint, LoadOptions::new("raw_enter", ProgType::RawTracepoint), os::gettid(), Some(getpid_nr));
    let link = raw.attach_raw_tracepoint("sys_enter").unwrap();
    getpid_n(77);
    let id = link.info().unwrap().id;
    support::bpftool::assert_link_listed(id, true);
    drop(link);
    support::bpftool::assert_link_listed(id, false);
    getpid_n(10);
    assert_eq!(count(&hits), 77);

    let vmlinux = Btf::vmlinux().unwrap();
    let target = vmlinux.find_by_name_kind("btf_trace_sys_enter", Kind::Typedef).unwrap();
    let hits = counter("hits");
    let opts = LoadOptions::new("btf_enter", ProgType::Tracing).expected_attach_type(AttachType::TraceRawTp).attach_btf_id(target.get());
    let tp_btf = counting_prog(&hits, ProgType::Tracing, opts, os::gettid(), Some(getpid_nr));
    let link = tp_btf.attach_btf().unwrap();
    getpid_n(33);
    let id = link.info().unwrap().id;
    drop(link);
    support::bpftool::assert_link_listed(id, false);
    getpid_n(10);
    assert_eq!(count(&hits), 33);
}

#[test]
fn pinned_link_outlives_its_fd_until_unpinned() {
    if !support::kernel_or_skip("link pinning") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    os::mount_bpffs(dir.path()).unwrap();
    let pin = dir.path().join("getpid_link");
    let hits = counter("hits");
    let prog = counting_prog(&hits, ProgType::Tracepoint, LoadOptions::new("tp_pinned", ProgType::Tracepoint), os::gettid(), None);
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    link.pin(&pin).unwrap();
    let id = link.info().unwrap().id;
    drop(link);
    getpid_n(20);
    assert_eq!(count(&hits), 20, "the pin keeps the link attached");
    let reopened = Link::from_pin(&pin).unwrap();
    assert_eq!(reopened.info().unwrap().id, id);
    drop(reopened);
    support::bpftool::assert_link_listed(id, true);
    Link::unpin(&pin).unwrap();
    // The pin held the last reference: the kernel drops it from a workqueue, shortly after the
    // unlink rather than at it.
    support::assert_link_gone(id);
    let before = count(&hits);
    getpid_n(20);
    assert_eq!(count(&hits), before, "unpinned and closed: detached");
    assert!(before <= 40, "only the getpid calls made before the release can count");
    support::bpftool::assert_link_listed(id, false);
    os::unmount(dir.path()).unwrap();
}

#[test]
fn perf_event_program_samples_cpu_clock() {
    if !support::kernel_or_skip("perf_event attach") {
        return;
    }
    let hits = counter("samples");
    let asm = support::progs::count_and_return("samples", 0);
    let prog = Program::load(&asm.assemble().unwrap(), &[&hits], &LoadOptions::new("sampler", ProgType::PerfEvent)).unwrap();
    // Sample this thread's CPU time 1000 times a second while it spins for 300 ms.
    let target = PerfEventTarget::software_freq(os::perf::PERF_COUNT_SW_CPU_CLOCK, 1000, -1).for_pid(os::gettid());
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

/// A program counting the page faults that thread `tid` takes inside `[lo, hi)`: the sample's
/// `addr` (`struct bpf_perf_event_data`, offset from vmlinux BTF) is the faulting address.
fn page_fault_counter(hits: &Map, tid: i32, lo: u64, hi: u64) -> Program {
    let vmlinux = Btf::vmlinux().unwrap();
    let data = vmlinux.find_by_name_kind("bpf_perf_event_data", Kind::Struct).unwrap();
    let addr_off = (vmlinux.member_offset(data, "addr").unwrap() / 8) as i16;
    let count = support::progs::count_hit("faults");
    let asm = bpf_asm! {
        r6 = *(u64 *)(r1 + {addr_off})
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        r1 = {lo} ll
        if r6 < r1 goto out
        r1 = {hi} ll
        if r6 >= r1 goto out
        {&count}
    out:
        r0 = 0
        exit
    };
    Program::load(&asm.assemble().unwrap(), &[hits], &LoadOptions::new("faults", ProgType::PerfEvent)).unwrap()
}

/// Fresh anonymous pages (not yet faulted in), unmapped on drop.
struct FreshPages {
    base: *mut u8,
    len: usize,
}

impl FreshPages {
    fn new(pages: usize) -> FreshPages {
        let len = pages * 4096;
        // SAFETY (test code): a private anonymous mapping nothing else refers to; MADV_NOHUGEPAGE
        // keeps one fault per 4 KiB page.
        let base = unsafe {
            let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert_ne!(p, libc::MAP_FAILED);
            libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
            p as *mut u8
        };
        FreshPages { base, len }
    }
    fn range(&self) -> (u64, u64) {
        (self.base as u64, self.base as u64 + self.len as u64)
    }
    /// Write the first byte of every page: one minor fault each.
    fn touch_all(&self) {
        for off in (0..self.len).step_by(4096) {
            // SAFETY (test code): inside the mapping made in `new`.
            unsafe { std::ptr::write_volatile(self.base.add(off), 1) };
        }
    }
}

impl Drop for FreshPages {
    fn drop(&mut self) {
        // SAFETY (test code): the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

#[test]
fn perf_event_program_counts_page_faults_exactly_per_thread_and_per_cpu() {
    if !support::kernel_or_skip("perf_event page faults") {
        return;
    }
    const PAGES: usize = 128; // well under perf's per-tick throttle (max_sample_rate / HZ)
    let tid = os::gettid();
    // Every page fault of this thread, any CPU, sample period 1: the program runs per fault.
    let hits = counter("faults");
    let pages = FreshPages::new(PAGES);
    let (lo, hi) = pages.range();
    let prog = page_fault_counter(&hits, tid, lo, hi);
    let link = prog.attach_perf_event(&PerfEventTarget::software(os::perf::PERF_COUNT_SW_PAGE_FAULTS, 1, -1).for_pid(tid)).unwrap();
    pages.touch_all();
    assert_eq!(count(&hits), PAGES as u64, "one sample per fault inside the fresh mapping");
    pages.touch_all();
    assert_eq!(count(&hits), PAGES as u64, "faulted-in pages do not fault again");
    let id = link.info().unwrap().id;
    drop(link);
    drop(pages);
    support::bpftool::assert_link_listed(id, false);

    // Every process on CPU 0 (pid -1), with this thread pinned there: per-CPU events see it too.
    let hits = counter("faults");
    let pages = FreshPages::new(PAGES);
    let (lo, hi) = pages.range();
    let prog = page_fault_counter(&hits, tid, lo, hi);
    support::pin_to_cpu(0);
    let link = prog.attach_perf_event(&PerfEventTarget::software(os::perf::PERF_COUNT_SW_PAGE_FAULTS, 1, 0)).unwrap();
    pages.touch_all();
    assert_eq!(count(&hits), PAGES as u64, "per-CPU event on CPU 0");
    drop(link);
    // A period of 4: one sample every 4th fault, on this thread only while on CPU 0.
    let hits = counter("faults");
    let more = FreshPages::new(PAGES);
    let (lo, hi) = more.range();
    let prog = page_fault_counter(&hits, tid, lo, hi);
    let link = prog.attach_perf_event(&PerfEventTarget::software(os::perf::PERF_COUNT_SW_PAGE_FAULTS, 4, -1).for_pid_on_cpu(tid, 0)).unwrap();
    more.touch_all();
    // The counter carries no faults from before the attach, so sample k is fault 4k exactly.
    assert_eq!(count(&hits), (PAGES / 4) as u64, "sample period 4");
    drop(link);
}

#[test]
fn hardware_perf_events_name_the_event_when_there_is_no_pmu() {
    if !support::kernel_or_skip("perf_event hardware") {
        return;
    }
    let hits = counter("faults");
    let prog = page_fault_counter(&hits, os::gettid(), 0, 1);
    let target = PerfEventTarget::hardware(os::perf::PERF_COUNT_HW_CPU_CYCLES, 100_000, -1).for_pid(os::gettid());
    match prog.attach_perf_event(&target) {
        // A machine with a PMU: the program samples cycles.
        Ok(link) => drop(link),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("perf_event_open(perf event type 0 config 0"), "{msg}");
            assert!(msg.contains("ENOENT") || msg.contains("EOPNOTSUPP") || msg.contains("ENODEV"), "{msg}");
            eprintln!("no hardware PMU here: {msg}");
        }
    }
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
        let link_id = (path == AttachPath::BpfLink).then(|| link.info().unwrap().id);
        support::bpftool::assert_cgroup_progs(&cg.0, 1);
        let err = connect_from(&cg, blocked);
        assert!(err.contains("Operation not permitted"), "{path:?}: blocked port: {err}");
        assert_eq!(connect_from(&cg, open), "", "{path:?}: the other port connects");
        drop(link);
        assert_eq!(connect_from(&cg, blocked), "", "{path:?}: detached on drop");
        if let Some(id) = link_id {
            support::bpftool::assert_link_listed(id, false);
        }
        support::bpftool::assert_cgroup_progs(&cg.0, 0);
    }
}
