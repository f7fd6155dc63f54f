//! The helper table: exactly the running kernel's `enum bpf_func_id`, every helper with its
//! documented signature and the version it appeared in; availability per program type agrees
//! with loading a program that calls the helper.

mod support;

use bpfkit::core_btf::Btf;
use bpfkit::features::Features;
use bpfkit::helpers::{self, ArgKind, RetKind};
use bpfkit::insn::build::{add64, call_helper, call_helper_named, exit, mov64, UnknownHelper};
use bpfkit::insn::{Program as Text, Reg};
use bpfkit::prog::{LoadError, LoadOptions, ProgFlags, ProgType, Program, TestRun};

#[test]
fn table_is_the_kernels_enum_exactly() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        support::skip("no /sys/kernel/btf/vmlinux");
        return;
    }
    let btf = Btf::vmlinux().unwrap();
    let kernel: Vec<(u32, String)> = btf
        .enum_values("bpf_func_id")
        .unwrap()
        .iter()
        .filter(|e| e.name != "BPF_FUNC_unspec" && !e.name.starts_with("__"))
        .map(|e| (e.value as u32, format!("bpf_{}", e.name.trim_start_matches("BPF_FUNC_"))))
        .collect();
    let ours: Vec<(u32, String)> = helpers::all().map(|h| (h.id, h.name.to_string())).collect();
    assert_eq!(ours, kernel);
    let without_sig: Vec<&str> = helpers::all().filter(|h| h.sig.is_none()).map(|h| h.name).collect();
    assert!(without_sig.is_empty(), "helpers without a documented signature: {without_sig:?}");
    assert!(helpers::all().all(|h| h.since.is_some()), "every helper has its first kernel version");
    println!("helpers: {} in the table, all with signatures and versions", ours.len());
}

#[test]
fn signatures_are_split_and_classified() {
    let h = helpers::by_name("map_lookup_elem").unwrap();
    assert_eq!(h.id, 1);
    let sig = h.sig.unwrap();
    assert_eq!(sig.prototype(), "void *bpf_map_lookup_elem(struct bpf_map *map, const void *key)");
    assert_eq!(sig.ret_kind, RetKind::PtrOrNull);
    assert_eq!(sig.params.iter().map(|p| p.kind).collect::<Vec<_>>(), [ArgKind::Map, ArgKind::Mem]);
    let lp = helpers::by_name("bpf_loop").unwrap().sig.unwrap();
    assert_eq!(lp.params.iter().map(|p| p.kind).collect::<Vec<_>>(), [ArgKind::Scalar, ArgKind::Callback, ArgKind::Mem, ArgKind::Scalar]);
    let rd = helpers::by_name("bpf_probe_read_kernel").unwrap();
    assert_eq!(rd.sig.unwrap().params[1].kind, ArgKind::Size);
    assert_eq!(rd.since.unwrap().to_string(), "5.5");
    assert_eq!(helpers::by_id(113).unwrap().name, "bpf_probe_read_kernel");
    assert!(helpers::by_name("bpf_no_such_helper").is_none());
}

#[test]
fn helpers_are_called_by_name_from_the_builders() {
    // Every helper of the table, by its full name and without `bpf_`, is `call <its id>`.
    for h in helpers::all() {
        assert_eq!(call_helper_named(h.name).unwrap(), call_helper(h.id), "{}", h.name);
        assert_eq!(call_helper_named(h.name.trim_start_matches("bpf_")).unwrap(), call_helper(h.id), "{}", h.name);
    }
    let e = call_helper_named("bpf_map_lookup_elm").unwrap_err();
    assert_eq!(e, UnknownHelper("bpf_map_lookup_elm".into()));
    assert!(e.to_string().contains("unknown helper `bpf_map_lookup_elm`"), "{e}");
}

#[test]
fn a_helper_called_by_name_runs_in_the_kernel() {
    if !support::kernel_or_skip("helper by name") {
        return;
    }
    // r0 = bpf_get_smp_processor_id() + 1000, in a raw tracepoint run pinned to each CPU.
    let mut text = Text::new();
    text.push(call_helper_named("bpf_get_smp_processor_id").unwrap()).push(add64(Reg::R0, 1000)).push(exit());
    let prog = Program::load(&text.assemble().unwrap(), &[], &LoadOptions::new("by_name", ProgType::RawTracepoint)).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    for cpu in 0..cpus {
        let r = prog.test_run(&TestRun::default().ctx(vec![0u8; 8]).ctx_out_size(0).on_cpu(cpu)).unwrap();
        assert_eq!(r.retval, 1000 + cpu);
    }
}

/// The verifier's words for a helper the program type may not call (an id it does not know,
/// `unknown func` before 6.x, `cannot use helper` since): written out here, independently of
/// `features`, so the probe and this test can disagree.
fn unavailable(log: &str) -> bool {
    log.lines().any(|l| l.contains("invalid func ") || l.contains("unknown func ") || l.contains("program of this type cannot use helper "))
}

#[test]
fn availability_agrees_with_loading_a_caller() {
    if !support::kernel_or_skip("helper availability") {
        return;
    }
    let t0 = std::time::Instant::now();
    let features = Features::new();
    let types = [
        ProgType::SocketFilter, ProgType::Xdp, ProgType::Kprobe, ProgType::Tracepoint, ProgType::SchedCls, ProgType::CgroupSkb,
        ProgType::SchedAct, ProgType::PerfEvent, ProgType::RawTracepoint, ProgType::SockOps, ProgType::SkSkb, ProgType::SkMsg,
        ProgType::LwtIn, ProgType::LwtXmit, ProgType::CgroupDevice, ProgType::Syscall,
    ];
    let (mut checked, mut available) = (0, 0);
    let mut noisy = Vec::new();
    for prog_type in types {
        if !features.prog_type(prog_type).unwrap().is_supported() {
            support::skip(&format!("helper availability: program type {prog_type} does not load here"));
            continue;
        }
        for h in helpers::all() {
            // These three write a warning to the kernel log on every load (trace_printk's
            // banner, probe_write_user's "is installing a program with bpf_probe_write_user"):
            // `features` does not probe them by default, and neither do we.
            if bpfkit::features::NOISY_HELPERS.contains(&h.id) {
                if !noisy.contains(&h.name) {
                    noisy.push(h.name);
                }
                continue;
            }
            let verdict = features.helper(prog_type, h.id).unwrap();
            let probed = verdict.is_supported();
            // Not the probe's program: scalar zeroes in r1-r5, the call by name, r0 = 0. The
            // verifier either refuses the helper itself (at the call) or knows it and then
            // checks its arguments, which may fail: that still means available.
            let mut text = Text::new();
            for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
                text.push(mov64(r, 0));
            }
            text.push(call_helper_named(h.name).unwrap()).push(mov64(Reg::R0, 0)).push(exit());
            let mut why = String::from("loaded");
            let mut opts = LoadOptions::new("avail", prog_type);
            if prog_type == ProgType::Syscall {
                opts = opts.flags(ProgFlags::SLEEPABLE); // the kernel loads no other kind
            }
            let loaded = match Program::load(&text.assemble().unwrap(), &[], &opts) {
                Ok(_) => true,
                Err(LoadError::Verifier { rejection, .. }) => {
                    why = rejection.reason.clone();
                    if unavailable(&rejection.log) {
                        assert_eq!(rejection.slot, Some(5), "{} in {prog_type}: refused at the call: {}", h.name, rejection.reason);
                        false
                    } else {
                        // Refused at or after the call: the verifier knew the helper.
                        assert!(rejection.slot >= Some(5), "{} in {prog_type}: refused before the call: {}", h.name, rejection.reason);
                        true
                    }
                }
                Err(e) => panic!("{} in {prog_type}: not a verifier verdict: {e}", h.name),
            };
            assert_eq!(probed, loaded, "{} in {prog_type}: the probe said {verdict:?}; our load: {why}", h.name);
            checked += 1;
            available += loaded as usize;
        }
    }
    let took = t0.elapsed();
    println!("helpers: {checked} (program type, helper) pairs agree with a load ({available} available); not probed (kernel log noise): {noisy:?}; {took:?}");
    assert!(checked >= 5 * (helpers::all().count() - noisy.len()), "{checked} pairs");
    assert!(took.as_secs() < 20, "took {took:?}");
}
