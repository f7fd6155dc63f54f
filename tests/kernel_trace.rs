//! Kernel tests of the tracing attach points: uprobes and uretprobes (by symbol, by offset, in
//! libc with a pid filter, through tracefs), uprobe_multi, USDT probes with arguments, kprobes
//! and fentry/LSM (refused by this kernel, with the reason), BPF iterators, and symbolized
//! stacks. Each triggers a known number of events and asserts the exact count the program saw;
//! dropping each link detaches it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bpfkit::attach::fentry::{BtfTarget, TracingHook};
use bpfkit::attach::iter::{self, IterScope};
use bpfkit::attach::kprobe::KprobeTarget;
use bpfkit::attach::ProbeError;
use bpfkit::attach::symbols::{self, ElfBinary};
use bpfkit::attach::uprobe::{self, UprobeMulti, UprobeTarget};
use bpfkit::attach::usdt::{self, UsdtTarget};
use bpfkit::attach::{Link, PerfEventTarget};
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::events::{stack_ips, Symbolizer};
use bpfkit::insn::Reg;
use bpfkit::maps::{Map, MapFlags, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use bpfkit::os::{self, ProbeKind};

// ---- functions the uprobes target (exported so their symbols keep their names) ----

#[no_mangle]
#[inline(never)]
pub extern "C" fn bpfkit_trace_entry(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_add(1)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bpfkit_trace_ret(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(3).wrapping_add(1)
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bpfkit_trace_tracefs(x: u64) -> u64 {
    std::hint::black_box(x) ^ 0x55
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bpfkit_trace_multi_one(x: u64) -> u64 {
    std::hint::black_box(x) + 11
}

#[no_mangle]
#[inline(never)]
pub extern "C" fn bpfkit_trace_multi_two(x: u64) -> u64 {
    std::hint::black_box(x) + 22
}

/// A function with a known instruction layout: `push rbp` (1 byte), `mov rbp, rsp` (3), then at
/// offset 4 `lea rax, [rdi + 1]` — where the offset uprobe goes.
#[cfg(target_arch = "x86_64")]
#[no_mangle]
#[unsafe(naked)]
pub extern "C" fn bpfkit_trace_asm(_x: u64) -> u64 {
    std::arch::naked_asm!("push rbp", "mov rbp, rsp", "lea rax, [rdi + 1]", "pop rbp", "ret")
}

/// The bytes `bpfkit_trace_asm` starts with.
const ASM_PROLOGUE: [u8; 8] = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x8d, 0x47, 0x01];

fn call_n(f: extern "C" fn(u64) -> u64, n: u64) -> u64 {
    let f = std::hint::black_box(f);
    (0..n).map(|i| std::hint::black_box(f(i))).fold(0, u64::wrapping_add)
}

fn exe() -> String {
    std::env::current_exe().unwrap().to_string_lossy().into_owned()
}

// ---- programs and maps ----

/// An array of `slots` × (count, sum) pairs.
fn stats_map(name: &str, slots: u32) -> Map {
    Map::create(&MapSpec::new(name, MapType::Array, 4, 16, slots)).unwrap()
}

/// (count, sum) of slot `i`.
fn stats(m: &Map, i: u32) -> (u64, u64) {
    let v = m.lookup(&i.to_le_bytes()).unwrap().unwrap();
    (u64::from_le_bytes(v[0..8].try_into().unwrap()), u64::from_le_bytes(v[8..16].try_into().unwrap()))
}

/// The end of the counting programs: `stats[*(u32 *)(r10 - 4)]` gets (+1, +r7); label `out`
/// returns 0.
fn count_tail() -> bpfkit::insn::Program {
    bpf_asm! {
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

/// A uprobe program: when the current thread is `tid`, count into `stats[0]` and add the
/// `pt_regs` member at byte `reg_off` (an argument or the return value) to its sum.
fn regs_prog(stats: &Map, name: &str, tid: i32, reg_off: i16, opts: Option<LoadOptions>) -> Program {
    let mut asm = bpf_asm! {
        r6 = r1
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        r7 = *(u64 *)(r6 + {reg_off})
        *(u32 *)(r10 - 4) = 0
    };
    asm.extend(count_tail());
    let opts = opts.unwrap_or_else(|| LoadOptions::new(name, ProgType::Kprobe));
    Program::load(&asm.assemble().unwrap(), &[stats], &opts).unwrap()
}

fn reg(member: &str) -> i16 {
    uprobe::pt_regs_offset(member).unwrap()
}

fn link_id(link: &Link) -> u32 {
    link.info().unwrap().id
}

fn uprobes_or_skip(test: &str) -> bool {
    if !support::kernel_or_skip(test) {
        return false;
    }
    let pmu = os::probe_pmu(ProbeKind::Uprobe).unwrap();
    let tracefs = os::probe_events_file(ProbeKind::Uprobe).ok().flatten();
    if pmu.is_none() && tracefs.is_none() {
        support::skip(&format!("{test}: no uprobe PMU and no uprobe_events"));
        return false;
    }
    true
}

// ---- uprobes ----

#[test]
fn uprobe_on_a_test_function_counts_each_call_and_detaches_on_drop() {
    if !uprobes_or_skip("uprobe") {
        return;
    }
    let s = stats_map("stats", 1);
    let prog = regs_prog(&s, "up_entry", os::gettid(), reg(uprobe::arg_reg(0).unwrap()), None);
    let link = prog.attach_uprobe(&UprobeTarget::symbol(exe(), "bpfkit_trace_entry")).unwrap();
    assert!(link.tracefs_event().is_none(), "the uprobe PMU is used");
    let id = link_id(&link);
    call_n(bpfkit_trace_entry, 123);
    assert_eq!(stats(&s, 0), (123, (0..123).sum()), "123 calls, arguments 0..123 seen in rdi");
    drop(link);
    call_n(bpfkit_trace_entry, 40);
    assert_eq!(stats(&s, 0).0, 123, "no hits after the link is dropped");
    support::assert_link_gone(id);

    let err = prog.attach_uprobe(&UprobeTarget::symbol(exe(), "bpfkit_no_such_function")).unwrap_err();
    assert!(err.to_string().contains("no function symbol `bpfkit_no_such_function`"), "{err}");
    assert!(err.to_string().contains(&exe()), "the error names the binary: {err}");
}

#[test]
fn uretprobe_sees_every_return_value() {
    if !uprobes_or_skip("uretprobe") {
        return;
    }
    let s = stats_map("stats", 1);
    let prog = regs_prog(&s, "up_ret", os::gettid(), reg(uprobe::RET_REG), None);
    let link = prog.attach_uprobe(&UprobeTarget::symbol(exe(), "bpfkit_trace_ret").retprobe()).unwrap();
    let id = link_id(&link);
    let total = call_n(bpfkit_trace_ret, 57);
    let expected: u64 = (0..57).map(|i| 3 * i + 1).sum();
    assert_eq!(total, expected);
    assert_eq!(stats(&s, 0), (57, expected), "57 returns, each 3i+1 seen in rax");
    drop(link);
    call_n(bpfkit_trace_ret, 5);
    assert_eq!(stats(&s, 0).0, 57);
    support::assert_link_gone(id);

    let err = prog.attach_uprobe(&UprobeTarget::symbol(exe(), "bpfkit_trace_ret").retprobe().at(4)).unwrap_err();
    assert!(err.to_string().contains("offset inside it must be 0"), "{err}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn uprobe_at_an_offset_inside_a_function() {
    if !uprobes_or_skip("uprobe at offset") {
        return;
    }
    // Where the symbol is, cross-checked three ways: the symbol table, this process's maps,
    // and the instruction bytes in the file.
    let bin = ElfBinary::open(exe()).unwrap();
    let sym = bin.function("bpfkit_trace_asm").unwrap();
    let fn_addr = bpfkit_trace_asm as extern "C" fn(u64) -> u64 as usize as u64;
    let runtime = symbols::runtime_address(None, std::path::Path::new(&exe()), sym.file_offset).unwrap();
    assert_eq!(runtime, fn_addr, "file offset {:#x} maps to the function's address", sym.file_offset);
    let bytes = std::fs::read(exe()).unwrap();
    assert_eq!(bytes[sym.file_offset as usize..][..8], ASM_PROLOGUE);

    let s = stats_map("stats", 1);
    let prog = regs_prog(&s, "up_off", os::gettid(), reg("di"), None);
    // By symbol + 4, then by the raw file offset of the same instruction.
    for target in [UprobeTarget::symbol(exe(), "bpfkit_trace_asm").at(4), UprobeTarget::file_offset(exe(), sym.file_offset + 4)] {
        assert_eq!(target.resolve().unwrap().file_offset, sym.file_offset + 4);
        let before = stats(&s, 0);
        let link = prog.attach_uprobe(&target).unwrap();
        let id = link_id(&link);
        let total = call_n(bpfkit_trace_asm, 31);
        assert_eq!(total, (1..=31).sum::<u64>(), "the probed function still computes x + 1");
        assert_eq!(stats(&s, 0), (before.0 + 31, before.1 + (0..31).sum::<u64>()), "{}", target.describe());
        drop(link);
        call_n(bpfkit_trace_asm, 3);
        assert_eq!(stats(&s, 0).0, before.0 + 31);
        support::assert_link_gone(id);
    }
    if sym.size != 0 {
        let err = prog.attach_uprobe(&UprobeTarget::symbol(exe(), "bpfkit_trace_asm").at(sym.size)).unwrap_err();
        assert!(err.to_string().contains("is past the end of `bpfkit_trace_asm`"), "{err}");
    }
}

/// A program counting `getpid` calls: slot 0 for this thread, slot 1 for other processes.
fn getpid_prog(s: &Map) -> Program {
    let (tid, pid) = (os::gettid(), std::process::id() as i32);
    let mut asm = bpf_asm! {
        call bpf_get_current_pid_tgid
        r6 = r0
        r6 >>= 32
        w0 = w0
        r7 = 0
        *(u32 *)(r10 - 4) = 0
        if r0 == {tid} goto count
        *(u32 *)(r10 - 4) = 1
        if r6 != {pid} goto count
        goto out
    count:
    };
    asm.extend(count_tail());
    Program::load(&asm.assemble().unwrap(), &[s], &LoadOptions::new("up_getpid", ProgType::Kprobe)).unwrap()
}

fn getpid_n(n: usize) {
    for _ in 0..n {
        std::hint::black_box(std::process::id());
    }
}

/// Run a shell that calls getpid() (bash reads its pid at start-up for `$$`).
fn child_calls_getpid() {
    let out = Command::new("bash").arg("-c").arg("echo $$").output().unwrap();
    assert!(out.status.success());
}

#[test]
fn uprobe_on_libc_getpid_with_a_pid_filter() {
    if !uprobes_or_skip("uprobe on libc") {
        return;
    }
    let libc = symbols::resolve_binary("libc.so.6", None).unwrap();
    let s = stats_map("stats", 2);
    let prog = getpid_prog(&s);
    // Without a filter, other processes' getpid() calls reach the program too.
    let link = prog.attach_uprobe(&UprobeTarget::symbol("libc.so.6", "getpid")).unwrap();
    child_calls_getpid();
    getpid_n(10);
    drop(link);
    assert_eq!(stats(&s, 0).0, 10);
    assert!(stats(&s, 1).0 >= 1, "the child's getpid() was seen without a pid filter");

    let s = stats_map("stats", 2);
    let prog = getpid_prog(&s);
    let target = UprobeTarget::symbol("libc", "getpid").pid(std::process::id() as i32);
    assert_eq!(target.resolve().unwrap().binary, libc, "`libc` finds the libc this process maps");
    let link = prog.attach_uprobe(&target).unwrap();
    let id = link_id(&link);
    getpid_n(250);
    child_calls_getpid();
    assert_eq!(stats(&s, 0).0, 250, "each of this thread's 250 getpid() calls");
    assert_eq!(stats(&s, 1).0, 0, "the pid filter keeps other processes out");
    drop(link);
    getpid_n(20);
    assert_eq!(stats(&s, 0).0, 250);
    support::assert_link_gone(id);
}

#[test]
fn uprobe_through_tracefs_uprobe_events_is_removed_on_drop() {
    if !support::kernel_or_skip("uprobe via tracefs") {
        return;
    }
    let Some(events) = os::probe_events_file(ProbeKind::Uprobe).unwrap() else {
        support::skip("uprobe via tracefs: tracefs has no uprobe_events");
        return;
    };
    let s = stats_map("stats", 1);
    let prog = regs_prog(&s, "up_tracefs", os::gettid(), reg("di"), None);
    let link = prog.attach_uprobe(&UprobeTarget::symbol(exe(), "bpfkit_trace_tracefs").via_tracefs()).unwrap();
    let event = link.tracefs_event().expect("a tracefs event");
    assert!(std::fs::read_to_string(&events).unwrap().contains(&event), "{event} is defined in {}", events.display());
    let id = link_id(&link);
    call_n(bpfkit_trace_tracefs, 66);
    assert_eq!(stats(&s, 0), (66, (0..66).sum()));
    drop(link);
    call_n(bpfkit_trace_tracefs, 6);
    assert_eq!(stats(&s, 0).0, 66);
    support::assert_link_gone(id);
    assert!(!std::fs::read_to_string(&events).unwrap().contains(&event), "{event} is removed from {}", events.display());
}

#[test]
fn uprobe_multi_counts_two_functions_by_cookie() {
    if !uprobes_or_skip("uprobe_multi") {
        return;
    }
    let probe = bpfkit::features::Features::global().attach_type(AttachType::TraceUprobeMulti);
    let witness = || support::witness::kernel_enum_has("bpf_attach_type", "BPF_TRACE_UPROBE_MULTI");
    if !support::probe::kernel_has("uprobe_multi", "uprobe_multi links", probe, witness) {
        return;
    }
    let s = stats_map("stats", 2);
    let tid = os::gettid();
    let mut asm = bpf_asm! {
        r6 = r1
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        r1 = r6
        call bpf_get_attach_cookie
        *(u32 *)(r10 - 4) = w0
        r7 = 0
    };
    asm.extend(count_tail());
    let opts = LoadOptions::new("up_multi", ProgType::Kprobe).expected_attach_type(AttachType::TraceUprobeMulti);
    let prog = Program::load(&asm.assemble().unwrap(), &[&s], &opts).unwrap();
    let target = UprobeMulti::symbols(exe(), &["bpfkit_trace_multi_one", "bpfkit_trace_multi_two"]).cookies(vec![0, 1]);
    let link = prog.attach_uprobe_multi(&target).unwrap();
    let info = link.info().unwrap();
    assert_eq!(info.link_type, Some(bpfkit::attach::LinkType::UprobeMulti));
    call_n(bpfkit_trace_multi_one, 17);
    call_n(bpfkit_trace_multi_two, 29);
    assert_eq!((stats(&s, 0).0, stats(&s, 1).0), (17, 29));
    drop(link);
    call_n(bpfkit_trace_multi_one, 3);
    assert_eq!((stats(&s, 0).0, stats(&s, 1).0), (17, 29));
    support::assert_link_gone(info.id);

    // A program loaded without the uprobe_multi attach type is refused, and the error says why.
    let plain = regs_prog(&s, "up_plain", tid, 0, None);
    let err = plain.attach_uprobe_multi(&target).unwrap_err();
    assert!(err.to_string().contains("trace_uprobe_multi"), "{err}");
}

// ---- USDT ----

fn usdt_fixture() -> String {
    format!("{}/tests/fixtures/usdt/usdt_probe", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn usdt_notes_are_read() {
    let probes = usdt::probes(usdt_fixture()).unwrap();
    assert_eq!(probes.len(), 1);
    let p = &probes[0];
    assert_eq!((p.provider.as_str(), p.name.as_str()), ("bpfkit", "tick"));
    let bin = ElfBinary::open(usdt_fixture()).unwrap();
    let probes_section = bin.section(".probes").unwrap().unwrap();
    assert_eq!(p.semaphore, probes_section.address, "the semaphore is the first thing in .probes");
    assert_eq!(p.semaphore_offset, probes_section.offset);
    let args = p.parse_args().unwrap();
    assert_eq!(args.len(), 3, "{}", p.args);
    assert_eq!((args[0].size, args[0].signed), (4, true));
    assert_eq!(args[2].location, usdt::ArgLocation::Const(-5));
    assert!(usdt::probes(exe()).unwrap().is_empty(), "no notes, no probes");
}

#[test]
fn usdt_probe_fires_with_its_semaphore_raised_and_arguments_read() {
    if !uprobes_or_skip("usdt") {
        return;
    }
    const N: u64 = 25;
    let mut child = Command::new(usdt_fixture()).arg(N.to_string()).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "semaphore=0", "nothing traces the probe yet");
    let pid = child.id() as i32;

    // One 32-byte value: count, Σ argument 0, Σ argument 1, the last argument 2.
    let s = Map::create(&MapSpec::new("stats", MapType::Array, 4, 32, 1)).unwrap();
    let specs = usdt::spec_map(16).unwrap();
    let mut asm = bpf_asm! {
        r6 = r1
    };
    asm.extend(usdt::read_arg(0, Reg::R6, Reg::R7, -8));
    asm.extend(usdt::read_arg(1, Reg::R6, Reg::R8, -16));
    asm.extend(usdt::read_arg(2, Reg::R6, Reg::R9, -24));
    asm.extend(bpf_asm! {
        *(u32 *)(r10 - 28) = 0
        r1 = map[stats] ll
        r2 = r10
        r2 += -28
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        lock *(u64 *)(r0 + 8) += r7
        lock *(u64 *)(r0 + 16) += r8
        *(u64 *)(r0 + 24) = r9
    out:
        r0 = 0
        exit
    });
    asm.extend(usdt::arg_subprogram(usdt::SPEC_MAP_NAME).unwrap());
    let prog = Program::load(&asm.assemble().unwrap(), &[&s, &specs], &LoadOptions::new("usdt_tick", ProgType::Kprobe)).unwrap();
    let link = prog.attach_usdt(&UsdtTarget::new(usdt_fixture(), "bpfkit", "tick").pid(pid), &specs).unwrap();
    assert_eq!(link.members().len(), 1, "one location, one uprobe");
    let spec_ids: Vec<Vec<u8>> = specs.keys().collect::<Result<_, _>>().unwrap();
    assert_eq!(spec_ids, vec![0u32.to_le_bytes().to_vec()], "the location's spec, under id 0 (its bpf_cookie)");
    let id = link_id(&link.members()[0]);

    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("fired={N}"), "the kernel raised the semaphore in the running process");
    assert!(child.wait().unwrap().success());

    let v = s.lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    let word = |i: usize| u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(word(0), N, "the probe fired {N} times");
    assert_eq!(word(1), (0..N).sum::<u64>(), "argument 0 (int i, in a register)");
    assert_eq!(word(2), (0..N).map(|i| i * 1000 + 7).sum::<u64>(), "argument 1 (long v, in memory)");
    assert_eq!(word(3) as i64, -5, "argument 2 (a signed 2-byte constant)");
    drop(link);
    support::assert_link_gone(id);
    assert!(specs.lookup(&0u32.to_le_bytes()).unwrap().is_none(), "the spec is deleted with the link");

    let err = prog.attach_usdt(&UsdtTarget::new(usdt_fixture(), "bpfkit", "nope"), &specs).unwrap_err();
    assert!(err.to_string().contains("no USDT probe bpfkit:nope"), "{err}");
}

// ---- what this kernel refuses, and why ----

#[test]
fn kprobes_fail_here_saying_why() {
    if !support::kernel_or_skip("kprobe") {
        return;
    }
    let target = KprobeTarget::function("do_unlinkat");
    assert_eq!(target.tracefs_definition("ev").unwrap(), "p:bpfkit/ev do_unlinkat+0");
    assert_eq!(target.clone().retprobe().tracefs_definition("ev").unwrap(), "r:bpfkit/ev do_unlinkat+0");
    assert_eq!(target.describe(), "kprobe do_unlinkat+0x0");

    let hits = stats_map("stats", 1);
    let prog = regs_prog(&hits, "kp_getpid", os::gettid(), reg("di"), None);
    let has_pmu = os::probe_pmu(ProbeKind::Kprobe).unwrap().is_some();
    let has_tracefs = os::probe_events_file(ProbeKind::Kprobe).ok().flatten().is_some();
    let getpid_fn = KprobeTarget::function("__x64_sys_getpid");
    match prog.attach_kprobe(&getpid_fn) {
        Err(e @ ProbeError::NoProbeSupport { .. }) => {
            assert!(!has_pmu && !has_tracefs);
            assert_eq!(e.to_string(), "no kprobe support in this kernel: /sys/bus/event_source/devices/kprobe missing and tracefs has no kprobe_events");
            let e = prog.attach_kprobe(&target.clone().retprobe()).unwrap_err();
            assert!(e.to_string().starts_with("no kprobe support in this kernel"), "{e}");
            support::kernel_lacks("attaching a kprobe", "kprobes", &e.to_string(), support::witness::no_kprobes());
        }
        Ok(link) => {
            assert!(has_pmu || has_tracefs);
            getpid_n(44);
            drop(link);
            getpid_n(4);
            assert_eq!(stats(&hits, 0).0, 44);
        }
        Err(e) => panic!("unexpected kprobe error: {e}"),
    }
}

#[test]
fn fentry_fexit_fmod_ret_and_lsm_are_refused_here_saying_why() {
    if !support::kernel_or_skip("fentry/LSM") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let cases = [
        (TracingHook::Fentry, "do_unlinkat", "do_unlinkat", AttachType::TraceFentry, ProgType::Tracing),
        (TracingHook::Fexit, "do_unlinkat", "do_unlinkat", AttachType::TraceFexit, ProgType::Tracing),
        (TracingHook::FmodRet, "security_file_open", "security_file_open", AttachType::ModifyReturn, ProgType::Tracing),
        (TracingHook::Lsm, "security_file_open", "bpf_lsm_file_open", AttachType::LsmMac, ProgType::Lsm),
        (TracingHook::Lsm, "file_open", "bpf_lsm_file_open", AttachType::LsmMac, ProgType::Lsm),
    ];
    let asm = bpf_asm! {
        r0 = 0
        exit
    };
    let asm = asm.assemble().unwrap();
    for (hook, name, func, attach_type, prog_type) in cases {
        let t = BtfTarget::find(hook, name).unwrap();
        assert_eq!(t.function, func);
        assert_eq!(Some(t.btf_id), vmlinux.find_by_name_kind(func, Kind::Func).map(|id| id.get()));
        assert_eq!(vmlinux.name_of(bpfkit::core_btf::TypeId(t.btf_id)).unwrap(), func);
        let opts = t.load_options("traced");
        assert_eq!((opts.get_prog_type(), opts.get_expected_attach_type(), opts.get_attach_btf_id()), (prog_type, Some(attach_type), t.btf_id));
        match t.load(&asm, &[], "traced") {
            Err(e @ ProbeError::TracingRefused { .. }) => {
                let msg = e.to_string();
                let head = format!("{} {func} (BTF id {}, expected attach type {attach_type}): tracing programs are refused with EPERM by this kernel", hook.name(), t.btf_id);
                assert!(msg.starts_with(&head), "{msg}");
                assert!(msg.contains("EPERM"), "{msg}");
                // Root has every capability: this EPERM has another cause, and says none is missing.
                assert!(!msg.contains("needs CAP_"), "{msg}");
                let witness = support::witness::libbpf_prog_load_refused(prog_type.raw(), attach_type.raw(), t.btf_id, libc::EPERM);
                support::kernel_lacks("running a tracing program", &format!("{} programs", hook.name()), &msg, witness);
            }
            Ok(prog) => {
                // A kernel with trampolines (the second kernel): it attaches.
                prog.attach_btf().unwrap();
            }
            Err(e) => panic!("{}: unexpected error {e}", t.describe()),
        }
    }
    let err = BtfTarget::find(TracingHook::Fentry, "bpfkit_no_such_kernel_function").unwrap_err();
    assert!(err.to_string().contains("no BTF FUNC `bpfkit_no_such_kernel_function`"), "{err}");
}

// ---- iterators ----

#[test]
fn task_iterator_output_lists_this_process() {
    if !support::kernel_or_skip("iter/task") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let pid_off = (vmlinux.member_offset(task, "pid").unwrap() / 8) as i16;
    let tgid_off = (vmlinux.member_offset(task, "tgid").unwrap() / 8) as i16;
    let fmt = b"%d %d\n\0";
    let fmt_map = Map::create(&MapSpec::new("fmt", MapType::Array, 4, fmt.len() as u32, 1).flags(MapFlags::RDONLY_PROG)).unwrap();
    fmt_map.update(&0u32.to_le_bytes(), fmt, UpdateFlags::Any).unwrap();
    fmt_map.freeze().unwrap();
    let fmt_len = fmt.len() as i32;
    let asm = bpf_asm! {
        r6 = *(u64 *)(r1 + 0)
        r7 = *(u64 *)(r1 + 8)
        if r7 == 0 goto out
        r1 = *(u32 *)(r7 + {pid_off})
        *(u64 *)(r10 - 16) = r1
        r1 = *(u32 *)(r7 + {tgid_off})
        *(u64 *)(r10 - 8) = r1
        r1 = *(u64 *)(r6 + 0)
        r2 = map_value[fmt]+0 ll
        r3 = {fmt_len}
        r4 = r10
        r4 += -16
        r5 = 16
        call bpf_seq_printf
    out:
        r0 = 0
        exit
    };
    let opts = iter::load_options("dump_tasks", "task").unwrap();
    assert_eq!(opts.get_attach_btf_id(), vmlinux.find_by_name_kind("bpf_iter_task", Kind::Func).unwrap().get());
    let prog = Program::load(&asm.assemble().unwrap(), &[&fmt_map], &opts).unwrap();
    let link = prog.attach_iter(&IterScope::All).unwrap();
    assert_eq!(link.info().unwrap().link_type, Some(bpfkit::attach::LinkType::Iter));
    let mut other = Command::new("sleep").arg("10").spawn().unwrap();
    let text = String::from_utf8(iter::read_to_end(&link).unwrap()).unwrap();
    let other_pid = other.id();
    other.kill().unwrap();
    other.wait().unwrap();
    let pid = std::process::id();
    let lines: Vec<(u32, u32)> = text.lines().map(|l| l.split_once(' ').map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())).unwrap()).collect();
    assert!(lines.contains(&(pid, pid)), "the main thread of pid {pid} is listed");
    assert!(lines.contains(&(os::gettid() as u32, pid)), "this test's thread is listed under pid {pid}");
    assert!(lines.contains(&(other_pid, other_pid)), "another process (pid {other_pid}) is listed");
    // A second reader iterates afresh.
    assert!(String::from_utf8(iter::read_to_end(&link).unwrap()).unwrap().contains(&format!("{pid} {pid}\n")));
    // Only this process's threads.
    let one = prog.attach_iter(&IterScope::Process(pid)).unwrap();
    let text = String::from_utf8(iter::read_to_end(&one).unwrap()).unwrap();
    assert!(text.lines().all(|l| l.ends_with(&format!(" {pid}"))) && text.contains(&format!("{pid} {pid}")), "{text}");
    let id = link_id(&link);
    drop(link);
    support::assert_link_gone(id);
}

// ---- stacks ----

/// Spins (no calls inside the loop) until `deadline`.
#[inline(never)]
fn bpfkit_stack_busy_loop_distinctive(deadline: Instant) -> u64 {
    let mut acc = 0u64;
    loop {
        let mut i = 0u64;
        while i < 1_000_000 {
            acc = (acc ^ i) % 1_000_003 + (i & 7);
            i += 1;
        }
        if Instant::now() >= deadline {
            return acc;
        }
    }
}

#[test]
fn user_stack_of_cpu_clock_samples_names_the_busy_function() {
    if !support::kernel_or_skip("perf_event stacks") {
        return;
    }
    let stacks = Map::create(&MapSpec::new("stacks", MapType::StackTrace, 4, 64 * 8, 1024)).unwrap();
    let counts = Map::create(&MapSpec::new("counts", MapType::Hash, 4, 8, 1024)).unwrap();
    let asm = bpf_asm! {
        r6 = r1
        r1 = r6
        r2 = map[stacks] ll
        r3 = 256
        call bpf_get_stackid
        if r0 s< 0 goto out
        *(u32 *)(r10 - 4) = w0
        r1 = map[counts] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto new
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        goto out
    new:
        *(u64 *)(r10 - 16) = 1
        r1 = map[counts] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&asm.assemble().unwrap(), &[&stacks, &counts], &LoadOptions::new("stack_sampler", ProgType::PerfEvent)).unwrap();
    let target = PerfEventTarget::software_freq(os::perf::PERF_COUNT_SW_CPU_CLOCK, 1000, -1).for_pid(os::gettid());
    let link = prog.attach_perf_event(&target).unwrap();
    std::hint::black_box(bpfkit_stack_busy_loop_distinctive(Instant::now() + Duration::from_millis(300)));
    drop(link);
    let typed = counts.typed::<u32, u64>().unwrap();
    let all: Vec<(u32, u64)> = typed.iter().map(Result::unwrap).collect();
    let (top_id, top_count) = *all.iter().max_by_key(|(_, n)| *n).expect("samples were taken");
    let total: u64 = all.iter().map(|(_, n)| n).sum();
    assert!(total >= 100, "{total} samples for 300 ms at 1000 Hz");
    let ips = stack_ips(&stacks, top_id).unwrap();
    assert!(!ips.is_empty());
    let frames = Symbolizer::new().user(std::process::id(), &ips).unwrap();
    let names: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
    assert!(
        frames.iter().any(|f| f.symbol.as_deref().is_some_and(|s| s.contains("bpfkit_stack_busy_loop_distinctive"))),
        "the most frequent stack ({top_count} of {total} samples) names the busy function: {names:#?}"
    );
}

#[test]
fn kernel_stack_of_a_syscall_tracepoint_is_symbolized() {
    if !support::kernel_or_skip("kernel stacks") {
        return;
    }
    let stacks = Map::create(&MapSpec::new("stacks", MapType::StackTrace, 4, 64 * 8, 16)).unwrap();
    let seen = stats_map("stats", 1);
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
        *(u32 *)(r10 - 4) = 0
    };
    asm.extend(count_tail());
    let prog = Program::load(&asm.assemble().unwrap(), &[&stacks, &seen], &LoadOptions::new("kstack", ProgType::Tracepoint)).unwrap();
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    getpid_n(3);
    drop(link);
    // The same path through the kernel each time: one stack, so one id, summed 3 times.
    let (n, id_sum) = stats(&seen, 0);
    assert_eq!(n, 3);
    assert_eq!(id_sum % 3, 0, "three identical stacks share one id");
    let ips = stack_ips(&stacks, (id_sum / 3) as u32).unwrap();
    let frames = Symbolizer::new().kernel(&ips).unwrap();
    let names: Vec<String> = frames.iter().map(|f| f.to_string()).collect();
    assert!(frames.iter().any(|f| f.symbol.as_deref().is_some_and(|s| s.contains("syscall"))), "{names:#?}");
    // Cross-check every symbolized frame against /proc/kallsyms: the nearest symbol below.
    let mut kallsyms: Vec<(u64, String)> = std::fs::read_to_string("/proc/kallsyms")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            (kind.eq_ignore_ascii_case("t") && f.next().is_none()).then(|| (addr, name.to_string()))
        })
        .collect();
    kallsyms.sort();
    for frame in frames.iter().filter(|f| f.symbol.is_some()) {
        let i = kallsyms.partition_point(|(a, _)| *a <= frame.addr);
        let below = &kallsyms[i - 1];
        assert_eq!(frame.addr - frame.offset, below.0, "{frame} vs kallsyms {} at {:#x}", below.1, below.0);
    }
}
