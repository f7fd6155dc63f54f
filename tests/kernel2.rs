//! Tests that only the second kernel can run (Debian's 6.1 cloud kernel under qemu,
//! `scripts/kernel2/run.sh`, which sets `BPFKIT_KERNEL2=1`): kprobes and kretprobes through the
//! perf kprobe PMU and through tracefs' `kprobe_events`, fentry/fexit seeing arguments and
//! return values, fmod_ret and BPF-LSM denying `open()` of one file while attached and allowing
//! it after detach, and tc attach without TCX (6.6+) falling back to a cls_bpf filter over
//! netlink. Each counts exactly what it triggers. Without `BPFKIT_KERNEL2` each test skips with
//! one line (the host kernel has no kprobes and refuses trampolines; `kernel_trace.rs` checks
//! how it refuses).

mod support;

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bpfkit::attach::fentry::{BtfTarget, TracingHook};
use bpfkit::attach::kprobe::KprobeTarget;
use bpfkit::attach::{cls_bpf_filters, TcDirection};
use bpfkit::attach::uprobe;
use bpfkit::attach::AttachPath;
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bpfkit::os::{self, ProbeKind};

/// Whether this is the second kernel; otherwise prints one skip line (not a failure: the host
/// kernel lacks what these tests need).
fn kernel2(test: &str) -> bool {
    if std::env::var("BPFKIT_KERNEL2").is_ok_and(|v| v == "1") {
        return support::kernel_or_skip(test);
    }
    eprintln!("skipped: {test}: second kernel only (scripts/kernel2/run.sh sets BPFKIT_KERNEL2=1)");
    false
}

// ---- shared pieces ----

/// An array of `slots` × (count, sum) pairs.
fn stats_map(slots: u32) -> Map {
    Map::create(&MapSpec::new("stats", MapType::Array, 4, 16, slots)).unwrap()
}

fn stats(m: &Map, i: u32) -> (u64, u64) {
    let v = m.lookup(&i.to_le_bytes()).unwrap().unwrap();
    (u64::from_le_bytes(v[0..8].try_into().unwrap()), u64::from_le_bytes(v[8..16].try_into().unwrap()))
}

/// `stats[0]` gets (+1, +r7); label `out` returns 0.
fn count_tail() -> bpfkit::insn::Program {
    bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[stats] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        lock *(u64 *)(r0 + 8) += r7
    out:
        r0 = 0
        exit
    }
}

/// A kprobe program counting this thread's hits and summing the `pt_regs` member at `reg_off`.
fn kprobe_prog(s: &Map, name: &str, reg_off: i16) -> Program {
    let tid = os::gettid();
    let mut asm = bpf_asm! {
        r6 = r1
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        r7 = *(u64 *)(r6 + {reg_off})
    };
    asm.extend(count_tail());
    Program::load(&asm.assemble().unwrap(), &[s], &LoadOptions::new(name, ProgType::Kprobe)).unwrap()
}

fn reg(member: &str) -> i16 {
    uprobe::pt_regs_offset(member).unwrap()
}

/// A file of our own to open (and deny), in a fresh directory.
fn scratch(tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("bpfkit-k2-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("target");
    std::fs::write(&file, b"bpfkit").unwrap();
    (dir, file)
}

fn open_n(path: &Path, n: usize) -> usize {
    (0..n).filter(|_| std::fs::File::open(path).is_ok()).count()
}

const KPROBE_FN: &str = "do_sys_openat2";

// ---- kprobes ----

#[test]
fn kprobe_counts_opens_through_the_pmu_and_through_kprobe_events() {
    if !kernel2("kprobe do_sys_openat2") {
        return;
    }
    assert!(os::probe_pmu(ProbeKind::Kprobe).unwrap().is_some(), "the kprobe PMU exists here");
    let events = os::probe_events_file(ProbeKind::Kprobe).unwrap().expect("tracefs has kprobe_events");
    let (dir, file) = scratch("kprobe");
    // do_sys_openat2(int dfd, ...): every open(2) by this thread, dfd = AT_FDCWD in rdi.
    for via_tracefs in [false, true] {
        let s = stats_map(1);
        let prog = kprobe_prog(&s, "k2_open", reg("di"));
        let mut target = KprobeTarget::function(KPROBE_FN);
        if via_tracefs {
            target = target.via_tracefs();
        }
        let link = prog.attach_kprobe(&target).unwrap();
        let event = link.tracefs_event();
        assert_eq!(event.is_some(), via_tracefs, "{}", target.describe());
        let id = link.info().unwrap().id;
        assert_eq!(open_n(&file, 37), 37);
        let (n, sum) = stats(&s, 0);
        assert_eq!(n, 37, "37 opens seen (tracefs: {via_tracefs})");
        assert_eq!(sum as u32, (37 * -100i32) as u32, "dfd = AT_FDCWD (-100) each time");
        // (Reading kprobe_events is an open(2) too: only after counting.)
        if let Some(ev) = &event {
            assert!(std::fs::read_to_string(&events).unwrap().contains(ev.as_str()), "{ev} defined in {}", events.display());
        }
        let seen = stats(&s, 0).0;
        drop(link);
        open_n(&file, 5);
        assert_eq!(stats(&s, 0).0, seen, "no hits after the link is dropped");
        support::assert_link_gone(id);
        if let Some(ev) = &event {
            assert!(!std::fs::read_to_string(&events).unwrap().contains(ev.as_str()), "{ev} removed");
        }
        eprintln!("kprobe {KPROBE_FN} via {}: 37 of 37 opens counted", if via_tracefs { "tracefs kprobe_events" } else { "perf kprobe PMU" });
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn kretprobe_sees_each_return_value() {
    if !kernel2("kretprobe do_sys_openat2") {
        return;
    }
    let (dir, file) = scratch("kretprobe");
    let missing = dir.join("missing");
    for via_tracefs in [false, true] {
        let s = stats_map(1);
        let prog = kprobe_prog(&s, "k2_open_ret", reg(uprobe::RET_REG));
        let mut target = KprobeTarget::function(KPROBE_FN).retprobe();
        if via_tracefs {
            target = target.via_tracefs();
        }
        let link = prog.attach_kprobe(&target).unwrap();
        assert_eq!(link.tracefs_event().is_some(), via_tracefs);
        // 23 failed opens return -ENOENT; then one that works returns an fd ≥ 3.
        assert_eq!(open_n(&missing, 23), 0);
        assert_eq!(stats(&s, 0), (23, (23 * -(libc::ENOENT as i64)) as u64), "23 returns of -ENOENT");
        let f = std::fs::File::open(&file).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f) as i64;
        assert_eq!(stats(&s, 0), (24, (23 * -(libc::ENOENT as i64) + fd) as u64), "then fd {fd}");
        drop(link);
        open_n(&missing, 3);
        assert_eq!(stats(&s, 0).0, 24);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- fentry / fexit ----

/// Number of parameters of kernel function `name` (fexit's return value follows them).
fn nr_args(name: &str) -> usize {
    let btf = Btf::vmlinux().unwrap();
    let id = btf.find_by_name_kind(name, Kind::Func).unwrap();
    let proto = btf.type_by_id(id).unwrap().target().unwrap();
    btf.type_by_id(proto).unwrap().params().len()
}

#[test]
fn fentry_and_fexit_see_arguments_and_the_return_value() {
    if !kernel2("fentry/fexit do_unlinkat") {
        return;
    }
    // do_unlinkat(int dfd, struct filename *name) -> int: unlink(2) of a missing file gives
    // dfd = AT_FDCWD and returns -ENOENT.
    let args = nr_args("do_unlinkat");
    assert_eq!(args, 2);
    let (dir, _file) = scratch("fentry");
    let missing = dir.join("missing");
    let tid = os::gettid();
    for (hook, off) in [(TracingHook::Fentry, 0i16), (TracingHook::Fexit, (args * 8) as i16)] {
        let s = stats_map(1);
        let mut asm = bpf_asm! {
            r6 = r1
            call bpf_get_current_pid_tgid
            w0 = w0
            if r0 != {tid} goto out
            r7 = *(u64 *)(r6 + {off})
            w7 = w7
        };
        asm.extend(count_tail());
        let t = BtfTarget::find(hook, "do_unlinkat").unwrap();
        let prog = t.load(&asm.assemble().unwrap(), &[&s], "k2_unlink").unwrap();
        let link = prog.attach_btf().unwrap();
        let id = link.info().unwrap().id;
        for _ in 0..19 {
            assert_eq!(std::fs::remove_file(&missing).unwrap_err().kind(), ErrorKind::NotFound);
        }
        let want = if hook == TracingHook::Fentry { -100i32 } else { -libc::ENOENT } as u32 as u64;
        assert_eq!(stats(&s, 0), (19, 19 * want), "{}: 19 calls, each {}", t.describe(), want as u32 as i32);
        drop(link);
        let _ = std::fs::remove_file(&missing);
        assert_eq!(stats(&s, 0).0, 19);
        support::assert_link_gone(id);
        eprintln!("{}: 19 of 19 calls, {} = {}", t.describe(), if off == 0 { "dfd" } else { "return value" }, want as u32 as i32);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- denying open(2) of one file: BPF-LSM and fmod_ret ----

/// Byte offsets of `file->f_inode` and `inode->i_ino` in this kernel.
fn inode_offsets() -> (i16, i16) {
    let btf = Btf::vmlinux().unwrap();
    let file = btf.find_by_name_kind("file", Kind::Struct).unwrap();
    let inode = btf.find_by_name_kind("inode", Kind::Struct).unwrap();
    ((btf.member_offset(file, "f_inode").unwrap() / 8) as i16, (btf.member_offset(inode, "i_ino").unwrap() / 8) as i16)
}

/// A program on `hook` `target` (whose first argument is a `struct file *`) returning -EPERM
/// when this thread opens inode `ino`, counting denials.
fn deny_open_prog(s: &Map, hook: TracingHook, target: &str, ino: u64) -> (BtfTarget, Program) {
    let (f_inode, i_ino) = inode_offsets();
    let tid = os::gettid();
    let ino = ino as i64;
    let asm = bpf_asm! {
        r6 = r1
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto allow
        r1 = *(u64 *)(r6 + 0)
        r1 = *(u64 *)(r1 + {f_inode})
        r1 = *(u64 *)(r1 + {i_ino})
        r2 = {ino} ll
        if r1 != r2 goto allow
        *(u32 *)(r10 - 4) = 0
        r1 = map[stats] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto deny
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    deny:
        r0 = -1
        exit
    allow:
        r0 = 0
        exit
    };
    let t = BtfTarget::find(hook, target).unwrap();
    let prog = t.load(&asm.assemble().unwrap(), &[s], "k2_deny_open").unwrap();
    (t, prog)
}

fn deny_then_allow(hook: TracingHook, target: &str) {
    let (dir, file) = scratch(hook.name());
    let other = dir.join("other");
    std::fs::write(&other, b"x").unwrap();
    let s = stats_map(1);
    let (t, prog) = deny_open_prog(&s, hook, target, std::fs::metadata(&file).unwrap().ino());
    assert!(std::fs::File::open(&file).is_ok(), "opens before attach");
    let link = prog.attach_btf().unwrap();
    let id = link.info().unwrap().id;
    for _ in 0..7 {
        let err = std::fs::File::open(&file).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{}: open({}) while attached: {err}", t.describe(), file.display());
    }
    assert!(std::fs::File::open(&other).is_ok(), "another file of the same directory still opens");
    assert_eq!(stats(&s, 0).0, 7, "7 denials counted");
    drop(link);
    support::assert_link_gone(id);
    assert!(std::fs::File::open(&file).is_ok(), "{}: open works again after detach", t.describe());
    assert_eq!(stats(&s, 0).0, 7);
    eprintln!("{}: open({}) → EPERM 7 of 7 times while attached, allowed after detach", t.describe(), file.display());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lsm_file_open_denies_one_file_while_attached() {
    if !kernel2("lsm file_open") {
        return;
    }
    assert!(std::fs::read_to_string("/sys/kernel/security/lsm").map(|l| l.split(',').any(|x| x.trim() == "bpf")).unwrap_or(true), "bpf is an active LSM");
    deny_then_allow(TracingHook::Lsm, "file_open");
}

#[test]
fn fmod_ret_on_security_file_open_denies_one_file_while_attached() {
    if !kernel2("fmod_ret security_file_open") {
        return;
    }
    deny_then_allow(TracingHook::FmodRet, "security_file_open");
}

// ---- no TCX before 6.6: tc goes through netlink ----

#[test]
fn tc_attach_falls_back_to_cls_bpf_over_netlink_without_tcx() {
    if !kernel2("tc without tcx") {
        return;
    }
    let lo = bpfkit::attach::ifindex("lo").unwrap();
    let s = stats_map(1);
    // __sk_buff.len is at offset 0.
    let mut asm = bpf_asm! {
        r7 = *(u32 *)(r1 + 0)
    };
    // Count every packet (with its length summed) and let it pass (TC_ACT_OK via r0 = 0).
    asm.extend(count_tail());
    let prog = Program::load(&asm.assemble().unwrap(), &[&s], &LoadOptions::new("k2_tc", ProgType::SchedCls)).unwrap();
    let link = prog.attach_tc(lo, TcDirection::Ingress).unwrap();
    assert_eq!(link.path(), AttachPath::Netlink, "no tcx links on this kernel: {}", link.describe());
    let filters = cls_bpf_filters(lo, TcDirection::Ingress).unwrap();
    assert_eq!(filters.len(), 1, "one cls_bpf filter on lo ingress: {filters:?}");
    // 10 UDP datagrams over lo: each crosses lo's ingress once.
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10u8 {
        tx.send_to(&[i; 100], rx.local_addr().unwrap()).unwrap();
    }
    let mut buf = [0u8; 200];
    for _ in 0..10 {
        assert_eq!(rx.recv(&mut buf).unwrap(), 100);
    }
    let (n, bytes) = stats(&s, 0);
    assert!(n >= 10, "at least the 10 datagrams were seen on lo ingress: {n}");
    assert!(bytes >= 10 * (14 + 20 + 8 + 100), "{bytes} bytes");
    drop(link);
    assert!(cls_bpf_filters(lo, TcDirection::Ingress).unwrap().is_empty(), "the filter is removed on drop");
    tx.send_to(&[0; 100], rx.local_addr().unwrap()).unwrap();
    rx.recv(&mut buf).unwrap();
    assert_eq!(stats(&s, 0).0, n, "no packets counted after detach");
    eprintln!("tc ingress on lo: tcx refused, cls_bpf over netlink ({n} packets)");
}

// ---- kernel stacks from a kprobe ----

#[test]
fn kernel_stack_of_a_kprobe_is_symbolized() {
    // (kernel_trace's kernel_stack_of_a_syscall_tracepoint_is_symbolized is skipped here: on 6.1
    // bpf_get_stackid of a kernel stack from a syscall tracepoint gives -EFAULT, an empty
    // callchain; from a kprobe it works.)
    if !kernel2("kprobe kernel stack") {
        return;
    }
    let stacks = Map::create(&MapSpec::new("stacks", MapType::StackTrace, 4, 64 * 8, 16)).unwrap();
    let s = stats_map(1);
    let tid = os::gettid();
    let mut asm = bpf_asm! {
        r6 = r1
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        r1 = r6
        r2 = map[stacks] ll
        r3 = 0
        call bpf_get_stackid
        if r0 s< 0 goto out
        r7 = r0
    };
    asm.extend(count_tail());
    let prog = Program::load(&asm.assemble().unwrap(), &[&stacks, &s], &LoadOptions::new("k2_kstack", ProgType::Kprobe)).unwrap();
    let link = prog.attach_kprobe(&KprobeTarget::function("__x64_sys_getpid")).unwrap();
    for _ in 0..3 {
        std::hint::black_box(std::process::id());
    }
    drop(link);
    let (n, id_sum) = stats(&s, 0);
    assert_eq!(n, 3, "3 getpid() calls, each with a kernel stack");
    assert_eq!(id_sum % 3, 0, "three identical stacks share one id");
    let ips = bpfkit::events::stack_ips(&stacks, (id_sum / 3) as u32).unwrap();
    let frames = bpfkit::events::Symbolizer::new().kernel(&ips).unwrap();
    let names: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
    assert!(frames.iter().any(|f| f.symbol.as_deref().is_some_and(|s| s.contains("syscall"))), "{names:#?}");
    eprintln!("kprobe __x64_sys_getpid kernel stack: {names:?}");
}

// ---- CO-RE across two kernels: the same DSL program, 6.1's layout ----

/// `kernel_core_dsl.rs`'s headline program, unchanged: `current->real_parent->tgid` through
/// `core_field_offset`, written to `out[0]` when this thread calls getpid().
fn parent_tgid_asm(tid: i32) -> bpfkit::insn::Assembled {
    support::progs::parent_tgid_through_core(tid).assemble().unwrap()
}

/// `task_struct.real_parent` and `task_struct.tgid` byte offsets in `btf`.
fn task_offsets(btf: &Btf) -> (u32, u32) {
    let task = btf.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    ((btf.member_offset(task, "real_parent").unwrap() / 8) as u32, (btf.member_offset(task, "tgid").unwrap() / 8) as u32)
}

/// The immediates the two `core_field_offset` forms became (`r7 = imm` in the xlated program).
fn relocated_offsets(prog: &Program) -> Vec<u32> {
    let xlated = bpfkit::insn::disassemble(&prog.xlated_insns().unwrap(), bpfkit::insn::DisasmOptions::new(bpfkit::insn::Syntax::Llvm));
    xlated
        .lines()
        .filter_map(|l| l.trim().strip_prefix("r7 = 0x"))
        .map(|h| u32::from_str_radix(h.trim(), 16).unwrap())
        .collect()
}

#[test]
fn core_dsl_parent_tgid_relocates_against_6_1_and_runs() {
    if !kernel2("CO-RE parent tgid on 6.1") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let (real_parent, tgid) = task_offsets(&vmlinux);
    let out = Map::create(&MapSpec::new("out", MapType::Array, 4, 8, 1)).unwrap();
    let prog = Program::load(&parent_tgid_asm(os::gettid()), &[&out], &LoadOptions::new("k2_ppid", ProgType::Tracepoint)).unwrap();
    assert_eq!(relocated_offsets(&prog), vec![real_parent, tgid], "relocated against this kernel's task_struct");
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    std::hint::black_box(std::process::id());
    drop(link);
    let got = out.typed::<u32, u64>().unwrap().get(&0).unwrap().unwrap();
    assert_eq!(got, std::os::unix::process::parent_id() as u64, "current->real_parent->tgid");
    eprintln!("guest: task_struct.real_parent at {real_parent:#x}, tgid at {tgid:#x}; the program read parent tgid {got}");
}

#[test]
fn core_dsl_forms_resolve_against_6_1() {
    if !kernel2("CO-RE forms on 6.1") {
        return;
    }
    // r0 = <form>; exit, run as a socket filter to read the resolved value back.
    let value_of = |text: &str| -> u32 {
        let asm = bpfkit::insn::parse_program(&format!("{text}\nexit")).unwrap().assemble().unwrap();
        let p = Program::load(&asm, &[], &LoadOptions::new("k2_core", ProgType::SocketFilter)).unwrap();
        p.test_run(&bpfkit::prog::TestRun::with_data([0u8; 64])).unwrap().retval
    };
    let vmlinux = Btf::vmlinux().unwrap();
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let (real_parent, _) = task_offsets(&vmlinux);
    assert_eq!(value_of(r#"core_field_offset(r0, "task_struct", "real_parent")"#), real_parent);
    assert_eq!(value_of(r#"core_field_size(r0, "task_struct", "pid")"#), 4);
    assert_eq!(value_of(r#"core_field_exists(r0, "task_struct", "no_such_field")"#), 0);
    assert_eq!(value_of(r#"core_type_size(r0, "task_struct")"#) as u64, vmlinux.size_of(task).unwrap());
    assert_eq!(value_of(r#"core_type_id(r0, "task_struct")"#), task.get());
    // 6.1's enum bpf_map_type: bloom filters (5.16) are there, arenas (6.9) are not.
    let has_arena = vmlinux.find_by_name_kind("bpf_map_type", Kind::Enum).is_some_and(|e| {
        vmlinux.type_by_id(e).unwrap().enum_values().iter().any(|v| v.name == "BPF_MAP_TYPE_ARENA")
    });
    assert!(!has_arena, "this kernel's bpf_map_type has no arena");
    assert_eq!(value_of(r#"core_enum_exists(r0, "bpf_map_type", "BPF_MAP_TYPE_ARENA")"#), 0);
    assert_eq!(value_of(r#"core_enum_value(r0, "bpf_map_type", "BPF_MAP_TYPE_BLOOM_FILTER")"#), 30);
    eprintln!("guest: CO-RE forms resolved against 6.1 (real_parent {real_parent:#x}, task_struct id {}, no BPF_MAP_TYPE_ARENA)", task.get());
}

/// The guest's vmlinux BTF saved by `scripts/kernel2/run.sh` (`BPFKIT_KERNEL2_BTF`, else any
/// `target/kernel2/*/vmlinux.btf`).
fn guest_btf_file() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("BPFKIT_KERNEL2_BTF") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/kernel2");
    std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path().join("vmlinux.btf")).find(|p| p.is_file())
}

#[test]
fn core_dsl_relocates_against_the_guest_btf_on_the_host() {
    // The host half: the same program, on the host kernel, relocated against the guest's BTF
    // file (`LoadOptions::core_btf`) instead of the running kernel's.
    if std::env::var("BPFKIT_KERNEL2").is_ok_and(|v| v == "1") {
        eprintln!("skipped: host half of CO-RE across kernels: runs on the host (scripts/kernel2/run.sh runs it after the VM)");
        return;
    }
    let Some(path) = guest_btf_file() else {
        eprintln!("skipped: CO-RE against the guest's BTF: no target/kernel2/*/vmlinux.btf yet (scripts/kernel2/run.sh saves it)");
        return;
    };
    if !support::kernel_or_skip("CO-RE against the guest's BTF") {
        return;
    }
    let guest = Btf::from_file(&path).unwrap();
    let host = Btf::vmlinux().unwrap();
    let (g, h) = (task_offsets(&guest), task_offsets(&host));
    let out = Map::create(&MapSpec::new("out", MapType::Array, 4, 8, 1)).unwrap();
    let asm = parent_tgid_asm(os::gettid());
    let opts = LoadOptions::new("k2_ppid_61", ProgType::Tracepoint).core_btf(guest);
    let for_guest = Program::load(&asm, &[&out], &opts).unwrap();
    assert_eq!(relocated_offsets(&for_guest), vec![g.0, g.1], "relocated against {}", path.display());
    let for_host = Program::load(&asm, &[&out], &LoadOptions::new("k2_ppid_618", ProgType::Tracepoint)).unwrap();
    assert_eq!(relocated_offsets(&for_host), vec![h.0, h.1], "relocated against the running kernel");
    eprintln!(
        "host: task_struct.real_parent {:#x} (guest BTF) vs {:#x} (host), tgid {:#x} vs {:#x}",
        g.0, h.0, g.1, h.1
    );
}

// ---- CO-RE across two kernels: a clang-built object, relocated by bpfkit's object loader ----

/// `tests/fixtures/objects/o08_core.c`: on `sys_enter_gettid`, `BPF_CORE_READ(task, tgid)` into
/// `seen[0]` and `BPF_CORE_READ(task, real_parent, tgid)` into `seen[1]` (any caller).
fn core_object() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects/o08_core.o")
}

/// o08's program relocated against `target` (the running kernel's BTF for `None`).
fn core_object_insns(target: Option<&Btf>) -> Vec<bpfkit::insn::Insn> {
    let obj = bpfkit::object::Object::open(core_object()).unwrap();
    let mut progs = obj.relocate(target).unwrap();
    assert_eq!(progs.len(), 1, "one program in o08_core.o");
    progs.pop().unwrap().1
}

/// The immediates where two relocations of the same program differ: what CO-RE wrote, per target.
fn core_differences(a: &[bpfkit::insn::Insn], b: &[bpfkit::insn::Insn]) -> Vec<(i32, i32)> {
    use bpfkit::insn::{Insn, Operand};
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| match (x, y) {
            (Insn::Alu { src: Operand::Imm(i), .. }, Insn::Alu { src: Operand::Imm(j), .. }) => (*i, *j),
            _ => panic!("CO-RE changed more than an ALU immediate: {x:?} vs {y:?}"),
        })
        .collect()
}

/// The ALU immediates of a program (CO-RE field offsets among them).
fn alu_immediates(insns: &[bpfkit::insn::Insn]) -> Vec<u32> {
    use bpfkit::insn::{Insn, Operand};
    insns.iter().filter_map(|i| match i {
        Insn::Alu { src: Operand::Imm(v), .. } => Some(*v as u32),
        _ => None,
    }).collect()
}

#[test]
fn clang_core_object_reads_task_fields_on_6_1() {
    if !kernel2("clang CO-RE object on 6.1") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let (real_parent, tgid) = task_offsets(&vmlinux);
    // Relocated against this kernel: its task_struct offsets are in the program.
    let imms = alu_immediates(&core_object_insns(None));
    assert!(imms.contains(&real_parent) && imms.contains(&tgid), "real_parent {real_parent:#x}, tgid {tgid:#x} in {imms:x?}");
    let loaded = bpfkit::object::Object::open(core_object()).and_then(bpfkit::object::Object::load).unwrap();
    let seen = loaded.map("seen").unwrap();
    let link = loaded.program("core_task").unwrap().attach().unwrap();
    // SAFETY: gettid has no arguments and no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    drop(link);
    assert_eq!(tid as u32, os::gettid() as u32);
    let read = |k: u32| u64::from_ne_bytes(seen.lookup(&k.to_ne_bytes()).unwrap().unwrap()[..8].try_into().unwrap());
    // (Nothing else in the guest calls gettid: init is busybox sh waiting for this binary.)
    assert_eq!(read(0), std::process::id() as u64, "BPF_CORE_READ(task, tgid)");
    assert_eq!(read(1), std::os::unix::process::parent_id() as u64, "BPF_CORE_READ(task, real_parent, tgid)");
    eprintln!(
        "guest: o08_core.o relocated by bpfkit against the running kernel (task_struct.real_parent {real_parent:#x}, tgid {tgid:#x}) read tgid {} and parent tgid {}",
        read(0),
        read(1)
    );
}

#[test]
fn clang_core_object_relocates_against_the_guest_btf_on_the_host() {
    // The host half of the clang object: relocated against the guest's BTF file and against the
    // running kernel's, the instructions differ exactly where CO-RE wrote each kernel's offsets.
    if std::env::var("BPFKIT_KERNEL2").is_ok_and(|v| v == "1") {
        eprintln!("skipped: host half of the clang CO-RE object: runs on the host (scripts/kernel2/run.sh runs it after the VM)");
        return;
    }
    let Some(path) = guest_btf_file() else {
        eprintln!("skipped: clang CO-RE object against the guest's BTF: no target/kernel2/*/vmlinux.btf yet (scripts/kernel2/run.sh saves it)");
        return;
    };
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        support::skip("clang CO-RE object on the host: no /sys/kernel/btf/vmlinux");
        return;
    }
    let guest = Btf::from_file(&path).unwrap();
    let host = Btf::vmlinux().unwrap();
    let (g, h) = (task_offsets(&guest), task_offsets(&host));
    let diff = core_differences(&core_object_insns(Some(&guest)), &core_object_insns(None));
    assert!(!diff.is_empty() && g != h, "the two kernels' task_struct layouts differ");
    for (in_guest, in_host) in &diff {
        let pair = (*in_guest as u32, *in_host as u32);
        assert!(pair == (g.0, h.0) || pair == (g.1, h.1), "{pair:x?}: neither real_parent {:x?} nor tgid {:x?}", (g.0, h.0), (g.1, h.1));
    }
    assert!(diff.iter().any(|&(a, _)| a as u32 == g.0) && diff.iter().any(|&(a, _)| a as u32 == g.1), "{diff:x?}");
    eprintln!("host: o08_core.o CO-RE immediates against {} vs the host: {diff:x?}", path.display());
}

// ---- a kfunc the older kernel lacks: both loaders refuse the object ----

#[test]
fn kfunc_object_is_refused_by_bpfkit_and_libbpf_alike() {
    if !kernel2("kfunc object refused") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    assert!(vmlinux.find_by_name_kind("bpf_task_from_pid", Kind::Func).is_none(), "this kernel has no bpf_task_from_pid kfunc");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects/o19_ksym_kfunc.o");
    let err = bpfkit::object::Object::open(&path).and_then(bpfkit::object::Object::load).err().expect("bpfkit refuses the object");
    assert!(err.to_string().contains("bpf_task_from_pid"), "{err}");
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // libbpf's own warning (the first missing kfunc, bpf_rcu_read_lock) would go to stderr
    // uncaptured, into the middle of libtest's `test … ok` line: silence its printing.
    // SAFETY: no callback; libbpf then prints nothing.
    unsafe { libbpf_sys::libbpf_set_print(None) };
    // SAFETY: a NUL-terminated path, null opts; the object is closed below.
    let obj = unsafe { libbpf_sys::bpf_object__open_file(c_path.as_ptr(), std::ptr::null()) };
    assert!(!obj.is_null());
    // SAFETY: `obj` was just opened and is closed once.
    let rc = unsafe { libbpf_sys::bpf_object__load(obj) };
    unsafe { libbpf_sys::bpf_object__close(obj) };
    assert!(rc < 0, "libbpf refuses it too ({rc})");
    eprintln!("o19_ksym_kfunc.o: bpfkit: {err}; libbpf: {rc}");
}
