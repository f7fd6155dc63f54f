//! One focused check for each loader behaviour the real-world corpus (tests/object_corpus.rs,
//! docs/CORPUS.md) showed bpfkit lacked, against libbpf 1.7 where libbpf can say: the small
//! objects are `tests/fixtures/objects/o26`–`o30` (also compared instruction by instruction in
//! tests/object_load.rs), the refusals use objects of the corpus.

mod support;
#[path = "support/libbpf_obj.rs"]
mod libbpf_obj;

use bpfkit::object::{Object, ObjectError};
use libbpf_obj::{LibbpfObject, MapFacts};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/objects").join(name)
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/selftests").join(name)
}

fn pin_root() -> PathBuf {
    std::env::temp_dir()
}

/// The maps of `file` as libbpf creates them, and as bpfkit does.
fn maps_of_both(file: &Path) -> (Vec<MapFacts>, Vec<MapFacts>) {
    let mut theirs = LibbpfObject::open(file, &pin_root()).unwrap_or_else(|(e, m)| panic!("libbpf open: {e} {m}"));
    theirs.load().unwrap_or_else(|(e, m)| panic!("libbpf load: {e} {m}"));
    let ours = Object::open(file).and_then(Object::load).unwrap_or_else(|e| panic!("bpfkit: {e}"));
    (theirs.loaded().1, libbpf_obj::map_facts(&ours))
}

fn facts<'a>(maps: &'a [MapFacts], name: &str) -> &'a MapFacts {
    maps.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no map {name} in {maps:?}"))
}

#[test]
fn map_sizes_and_btf_as_libbpf_creates_them() {
    if !support::kernel_or_skip("map_sizes_and_btf_as_libbpf_creates_them") {
        return;
    }
    let (theirs, ours) = maps_of_both(&fixture("o26_map_sizes.o"));
    assert_eq!(ours, theirs);
    // A perf event array without max_entries: one slot per possible CPU.
    let cpus = bpfkit::os::possible_cpus().unwrap() as u32;
    assert_eq!(facts(&ours, "events").max_entries, cpus);
    // A ring buffer of 1000 bytes: one page.
    assert_eq!(facts(&ours, "odd_ring").max_entries, bpfkit::os::page_size() as u32);
    // Key/value BTF types only where the kernel takes them.
    for name in ["cgroups", "stacks", "socks"] {
        let m = facts(&ours, name);
        assert_eq!((m.btf_key_type_id, m.btf_value_type_id), (0, 0), "{name}");
    }
}

#[test]
fn kconfig_probes_give_libbpfs_values() {
    if !support::kernel_or_skip("kconfig_probes_give_libbpfs_values") {
        return;
    }
    let file = fixture("o27_kconfig_probes.o");
    let ours = Object::open(&file).and_then(Object::load).unwrap_or_else(|e| panic!("bpfkit: {e}"));
    let kconfig = ours.map(".kconfig").expect("a .kconfig map").lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    // libbpf's values, read from its .kconfig map.
    let mut theirs = LibbpfObject::open(&file, &pin_root()).unwrap_or_else(|(e, m)| panic!("libbpf open: {e} {m}"));
    theirs.load().unwrap_or_else(|(e, m)| panic!("libbpf load: {e} {m}"));
    assert_eq!(kconfig, theirs.map_value(".kconfig"), "LINUX_HAS_BPF_COOKIE, LINUX_HAS_SYSCALL_WRAPPER");
    // This kernel has bpf_get_attach_cookie; without kprobes the syscall-wrapper probe says no.
    assert!(kconfig.contains(&1), "LINUX_HAS_BPF_COOKIE is set: {kconfig:?}");
}

#[test]
fn hidden_subprograms_are_verified_in_their_callers_context() {
    if !support::kernel_or_skip("hidden_subprograms_are_verified_in_their_callers_context") {
        return;
    }
    let obj = Object::open(fixture("o28_hidden_subprog.o")).unwrap();
    let btf = obj.btf().unwrap();
    let fill = btf.find_by_name_kind("fill", bpfkit::core_btf::Kind::Func).unwrap();
    use bpfkit::core_btf::{Linkage, TypeDetail};
    let detail = btf.type_by_id(fill).unwrap().detail;
    assert!(
        matches!(detail, TypeDetail::Func { linkage: Linkage::Static, .. }),
        "a hidden global function is static in the BTF the kernel gets"
    );
    let loaded = obj.load().unwrap_or_else(|e| panic!("{e}"));
    let info = loaded.program("caller").unwrap().program().info().unwrap();
    assert_ne!(info.btf_id, 0, "loaded with the object's BTF, as libbpf loads it");
}

#[test]
fn struct_ops_maps_and_programs() {
    if !support::kernel_or_skip("struct_ops_maps_and_programs") {
        return;
    }
    let file = fixture("o29_struct_ops.o");
    let (theirs, ours) = maps_of_both(&file);
    assert_eq!(ours, theirs);
    let vmlinux = bpfkit::core_btf::Btf::vmlinux().unwrap();
    let value = vmlinux.find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", bpfkit::core_btf::Kind::Struct).unwrap();
    let ops = vmlinux.find_by_name_kind("tcp_congestion_ops", bpfkit::core_btf::Kind::Struct).unwrap();
    assert_eq!(facts(&ours, "bpfkit_ca").btf_vmlinux_value_type_id, value.0);
    let loaded = Object::open(&file).and_then(Object::load).unwrap();
    for p in ["bpfkit_ssthresh", "bpfkit_undo_cwnd", "bpfkit_cong_avoid"] {
        let info = loaded.program(p).unwrap().program().info().unwrap();
        assert_eq!(info.attach_btf_id, ops.0, "{p} attaches to struct tcp_congestion_ops");
    }
    // A struct_ops program no map refers to is refused, as libbpf refuses it.
    let e = Object::open(corpus("bad_struct_ops2.o")).and_then(Object::load).unwrap_err();
    assert!(e.to_string().contains("'foo'") && e.to_string().contains("isn't referenced anywhere"), "{e}");
}

#[test]
fn exception_callbacks_are_appended() {
    if !support::kernel_or_skip("exception_callbacks_are_appended") {
        return;
    }
    let loaded = Object::open(fixture("o30_exception_cb.o")).and_then(Object::load).unwrap_or_else(|e| panic!("{e}"));
    let p = loaded.program("thrower").unwrap().program();
    let n = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(p));
    let (_, facts) = libbpf_obj::prog_info(n);
    assert_eq!(facts.nr_func_info, 2, "the program and its exception callback");
}

#[test]
fn refusals_made_before_the_kernel() {
    // No kernel needed: these are refused while preparing the load, as libbpf refuses them.
    let refusal = |file: &str| -> String {
        match Object::open(corpus(file)).and_then(Object::load) {
            Ok(_) => panic!("{file} loaded"),
            Err(e) => e.to_string(),
        }
    };
    // `SEC("freplace")` without a target program, `SEC("fentry")` without a target function.
    let e = refusal("freplace_dead_global_func.o");
    assert!(e.contains("'freplace_prog'") && e.contains("names no BTF attach target"), "{e}");
    let mut obj = Object::open(corpus("test_cgroup1_hierarchy.o")).unwrap();
    let names: Vec<String> = obj.programs().iter().map(|p| p.name.clone()).collect();
    for n in names {
        obj.program_mut(&n).unwrap().autoload = n == "fentry_run";
    }
    let e = obj.load().unwrap_err().to_string();
    assert!(e.contains("'fentry_run'") && e.contains("names no BTF attach target"), "{e}");
    // An extern function defined in another object (meant for `bpftool gen object`).
    let e = refusal("test_subskeleton.o");
    assert!(e.contains("'lib_routine'") && e.contains("defined in another object"), "{e}");
}

#[test]
fn raw_map_fds_in_inline_assembly_stay_fds() {
    if !support::kernel_or_skip("raw_map_fds_in_inline_assembly_stay_fds") {
        return;
    }
    // `ld_imm64 r1, BPF_PSEUDO_MAP_FD 1` written by inline assembly, no relocation: the kernel
    // gets fd 1 (not the object's map number 1), and says it is no map.
    let mut obj = Object::open(corpus("verifier_cgroup_storage.o")).unwrap();
    let names: Vec<String> = obj.programs().iter().map(|p| p.name.clone()).collect();
    for n in names {
        obj.program_mut(&n).unwrap().autoload = n == "invalid_cgroup_storage_access_2";
    }
    let e = obj.load().unwrap_err();
    let ObjectError::Load { source, .. } = &e else { panic!("{e}") };
    assert!(source.to_string().contains("fd 1 is not pointing to valid bpf_map"), "{e}");
}

#[test]
fn hidden_globals_are_static_and_their_sections_not_mmapable() {
    if !support::kernel_or_skip("hidden_globals_are_static_and_their_sections_not_mmapable") {
        return;
    }
    // test_skeleton.c: `.data.non_mmapable` holds only `__hidden` variables.
    let (theirs, ours) = maps_of_both(&corpus("test_skeleton.o"));
    assert_eq!(ours, theirs);
    let m = facts(&ours, ".data.non_mmapa");
    assert_eq!(m.flags & (1 << 10), 0, "BPF_F_MMAPABLE: {m:?}");
}

#[test]
fn failed_core_relocations_are_named() {
    if !support::kernel_or_skip("failed_core_relocations_are_named") {
        return;
    }
    // The kernel has no `struct core_reloc_arrays` (the selftest brings its own target BTF): the
    // relocation is poisoned, the verifier refuses the poisoned call, and the error says which
    // relocation, in libbpf's words.
    let e = Object::open(corpus("test_core_reloc_arrays.o")).and_then(Object::load).unwrap_err().to_string();
    assert!(
        e.contains("failed to resolve CO-RE relocation <byte_off> [5] struct core_reloc_arrays.a[2] (0:0:2 @ offset 8)"),
        "{e}"
    );
}
