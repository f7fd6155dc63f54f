//! The helper table: exactly the running kernel's `enum bpf_func_id`, every helper with its
//! documented signature and the version it appeared in; availability per program type agrees
//! with loading a program that calls the helper.

mod support;

use bpfkit::core_btf::Btf;
use bpfkit::features::Features;
use bpfkit::helpers::{self, ArgKind, RetKind};
use bpfkit::insn::build::{call_helper, exit, mov64};
use bpfkit::insn::{Program as Text, Reg};
use bpfkit::prog::{LoadOptions, ProgType, Program};

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
fn availability_agrees_with_loading_a_caller() {
    if !support::kernel_or_skip("helper availability") {
        return;
    }
    let features = Features::new();
    let mut checked = 0;
    for prog_type in [ProgType::Xdp, ProgType::SocketFilter, ProgType::Tracepoint, ProgType::CgroupSkb] {
        for name in ["bpf_ktime_get_ns", "bpf_get_current_task", "bpf_get_prandom_u32", "bpf_skb_load_bytes", "bpf_xdp_adjust_head", "bpf_get_current_pid_tgid"] {
            let h = helpers::by_name(name).unwrap();
            let probed = features.helper(prog_type, h.id).unwrap().is_supported();
            // A caller with scalar zero arguments: the verifier either accepts the call or rejects
            // the helper itself; argument complaints still mean the helper is available.
            let mut text = Text::new();
            for r in [Reg::R1, Reg::R2, Reg::R3, Reg::R4, Reg::R5] {
                text.push(mov64(r, 0));
            }
            text.push(call_helper(h.id)).push(mov64(Reg::R0, 0)).push(exit());
            let loaded = match Program::load(&text.assemble().unwrap(), &[], &LoadOptions::new("probe", prog_type)) {
                Ok(_) => true,
                Err(e) => {
                    let msg = e.to_string();
                    !(msg.contains("unknown func") || msg.contains("cannot use helper") || msg.contains("invalid func"))
                }
            };
            assert_eq!(probed, loaded, "{name} in {prog_type}");
            checked += 1;
        }
    }
    println!("helpers: {checked} (program type, helper) pairs agree with a load");
}
