//! The object loader against libbpf: every object of `tests/fixtures/objects/` (clang-built C,
//! `scripts/build-object-fixtures.sh`) is loaded by bpfkit (`bpfkit::object`) and by libbpf 1.7
//! (`bpf_object__open_file` + `bpf_object__load`), and for every program the kernel's xlated
//! instructions must be equal, map operands compared by map name (ids differ) and JIT addresses
//! (bpf-to-bpf call immediates, callback addresses) masked; so must the program's tag (a hash
//! of the instructions handed to the kernel), the verifier's instruction count and the number
//! of BTF func and line info records, and the kernel's map names. Then the programs that can be
//! triggered here are attached and triggered, and their maps read back.

mod support;
#[path = "support/libbpf_obj.rs"]
mod libbpf_obj;

use bpfkit::maps::Map;
use bpfkit::object::{AttachTarget, LoadedObject, Object, ObjectError};
use bpfkit::prog::{AttachType, ProgType};
use libbpf_obj::{show, LibbpfObject, Loaded};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/objects");

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/objects")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    files.sort();
    files
}

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The kfuncs an object calls (its extern `__ksym` functions: the FUNCs of its `.ksyms`
/// DATASEC) that the running kernel's vmlinux BTF, read by libbpf, does not have. Such an
/// object cannot load here (kfuncs are kernel-version dependent: `o19_ksym_kfunc.o`'s are 6.2+).
/// `__weak` kfuncs are left out: a missing one resolves to 0 (what `bpf_ksym_exists` tests), and
/// the object loads.
fn kfuncs_missing_here(path: &Path) -> Vec<String> {
    use bpfkit::core_btf::TypeDetail;
    // The object's own .BTF as clang wrote it (`Object::btf` is fixed up for the kernel, its
    // extern DATASECs emptied).
    let elf = bpfkit::elf::ElfObject::from_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(section) = elf.section_by_name(".BTF") else { return Vec::new() };
    let btf = bpfkit::core_btf::Btf::from_bytes(elf.section_data(section).to_vec()).unwrap();
    let vmlinux = support::libbpf_btf::VmlinuxBtf::load();
    let mut missing = Vec::new();
    for id in btf.ids() {
        let t = btf.type_by_id(id).unwrap();
        if let (".ksyms", TypeDetail::Datasec { vars, .. }) = (t.name, &t.detail) {
            for v in vars {
                let f = btf.type_by_id(v.ty).unwrap();
                let weak = elf.symbols().iter().any(|s| s.name == f.name && s.binding == bpfkit::elf::SymbolBinding::Weak);
                if matches!(f.detail, TypeDetail::Func { .. }) && !weak && !vmlinux.has_func(f.name) {
                    missing.push(f.name.to_string());
                }
            }
        }
    }
    missing
}

/// For an object whose kfuncs this kernel lacks: bpfkit refuses it naming one of them, and so
/// does libbpf. Returns bpfkit's error.
fn refused_for_missing_kfuncs(path: &Path, missing: &[String], libbpf: Result<(Loaded, Vec<String>), String>) -> String {
    let file = path.file_name().unwrap().to_string_lossy();
    let err = match Object::open(path).and_then(Object::load) {
        Ok(_) => panic!("{file}: bpfkit loaded it although vmlinux BTF lacks the kfuncs {missing:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not in vmlinux BTF") && missing.iter().any(|k| err.contains(&format!("'{k}'"))), "{file}: {err}");
    assert!(libbpf.is_err(), "{file}: libbpf loaded it although vmlinux BTF lacks the kfuncs {missing:?}");
    eprintln!("probe: this kernel's vmlinux BTF lacks the kfuncs {missing:?}: {file} refused by bpfkit ({err}) and libbpf");
    err
}

// ---------------------------------------------------------------------------------------------
// Both sides (tests/support/libbpf_obj.rs)
// ---------------------------------------------------------------------------------------------

/// Programs loaded by libbpf and the kernel's names of its maps; or libbpf's error. Maps pinned
/// by name go to libbpf's default root, as bpfkit's do.
fn load_with_libbpf(path: &Path) -> Result<(Loaded, Vec<String>), String> {
    let mut obj = LibbpfObject::open(path, Path::new(bpfkit::object::DEFAULT_PIN_ROOT))
        .map_err(|(errno, _)| format!("bpf_object__open_file: errno {errno}"))?;
    obj.load().map_err(|(errno, _)| format!("bpf_object__load: -{errno}"))?;
    let (programs, maps) = obj.loaded();
    Ok((programs, maps.into_iter().map(|m| m.name).collect()))
}

fn map_names(loaded: &LoadedObject) -> HashMap<u32, String> {
    libbpf_obj::map_names(loaded)
}

fn xlated_by_bpfkit(loaded: &LoadedObject) -> Loaded {
    libbpf_obj::loaded_by_bpfkit(loaded)
}

#[test]
fn corpus_loads_like_libbpf() {
    if !support::kernel_or_skip("corpus_loads_like_libbpf") {
        return;
    }
    let files = corpus();
    assert!(files.len() >= 15, "{} objects in the corpus", files.len());
    let mut failures = Vec::new();
    let mut programs = 0;
    for path in &files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let libbpf = load_with_libbpf(path);
        if file.contains("legacy") {
            // libbpf 1.x refuses `SEC("maps")`; bpfkit loads it (checked in
            // `attached_programs_count`).
            assert!(libbpf.is_err(), "{file}: libbpf 1.7 loaded legacy maps");
            continue;
        }
        let missing = kfuncs_missing_here(path);
        if !missing.is_empty() {
            refused_for_missing_kfuncs(path, &missing, libbpf);
            continue;
        }
        let (theirs, their_maps) = match libbpf {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{file}: libbpf: {e}"));
                continue;
            }
        };
        let loaded = match Object::open(path).and_then(Object::load) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("{file}: bpfkit: {e}"));
                continue;
            }
        };
        let mut our_maps: Vec<String> = map_names(&loaded).into_values().collect();
        our_maps.sort();
        if our_maps != their_maps {
            failures.push(format!("{file}: maps differ: bpfkit {our_maps:?}, libbpf {their_maps:?}"));
        }
        let ours = xlated_by_bpfkit(&loaded);
        if ours.keys().collect::<Vec<_>>() != theirs.keys().collect::<Vec<_>>() {
            failures.push(format!("{file}: programs differ: bpfkit {:?}, libbpf {:?}", ours.keys(), theirs.keys()));
        }
        for (name, (mine, my_facts)) in &ours {
            programs += 1;
            let Some((their, their_facts)) = theirs.get(name) else { continue };
            if mine != their {
                failures.push(format!(
                    "{file}: program {name}: xlated differs\n--- bpfkit\n{}--- libbpf\n{}",
                    show(mine),
                    show(their)
                ));
            }
            if my_facts != their_facts {
                failures.push(format!("{file}: program {name}: bpfkit {my_facts:?}, libbpf {their_facts:?}"));
            }
        }
    }
    // libbpf pinned o21's map at the default root and bpfkit reused it.
    let _ = std::fs::remove_file("/sys/fs/bpf/bpfkit_obj_pinned");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    eprintln!(
        "{} objects, {programs} programs: xlated, tag, verified insns, func/line info equal to libbpf's",
        files.len()
    );
    assert!(programs >= 25, "{programs} programs compared");
}

// ---------------------------------------------------------------------------------------------
// Open-phase inspection
// ---------------------------------------------------------------------------------------------

#[test]
fn sections_maps_and_globals_are_read() {
    let obj = Object::open(fixture("o15_probes.o")).unwrap();
    let tp = obj.program("optional_tp").unwrap();
    assert!(!tp.autoload, "a '?' section is not loaded by default");
    let kp = obj.program("kp_nanosleep").unwrap().spec.clone().unwrap();
    assert_eq!(kp.prog_type, ProgType::Kprobe);
    assert_eq!(kp.target, AttachTarget::Kprobe { function: "do_nanosleep".into(), offset: 0, ret: false });
    assert_eq!(obj.license(), "GPL");

    let obj = Object::open(fixture("o10_tc.o")).unwrap();
    let tcx = obj.program("tcx_in").unwrap().spec.clone().unwrap();
    assert_eq!((tcx.prog_type, tcx.expected_attach_type), (ProgType::SchedCls, Some(AttachType::TcxIngress)));

    let obj = Object::open(fixture("o03_percpu.o")).unwrap();
    let h = obj.map("pcpu_hash").unwrap();
    assert_eq!((h.key_size, h.value_size, h.max_entries, h.flags.0), (4, 8, 64, 1));

    let mut obj = Object::open(fixture("o05_globals.o")).unwrap();
    assert_eq!(obj.map(".rodata").unwrap().kernel_name, "o05_glob.rodata");
    assert_eq!(obj.global("base").unwrap(), 1000u64.to_le_bytes());
    obj.set_global("increment", &7u64.to_le_bytes()).unwrap();
    assert_eq!(obj.global("increment").unwrap(), 7u64.to_le_bytes());
    let e = obj.set_global("increment", &[1, 2]).unwrap_err();
    assert!(e.to_string().contains("'increment'") && e.to_string().contains("8 bytes"), "{e}");
    assert!(matches!(obj.set_global("nope", &[0]), Err(ObjectError::Global { .. })));

    let obj = Object::open(fixture("o17_map_in_map.o")).unwrap();
    let outer = obj.map("outer").unwrap();
    assert_eq!(outer.inner.as_ref().unwrap().max_entries, 4);
    assert_eq!(outer.init_slots, vec![(0, "inner0".to_string())]);
}

#[test]
fn malformed_objects_are_errors() {
    // Every object of the corpus, cut short and with bytes overwritten (a fixed pseudo-random
    // walk): opening and relocating (CO-RE against the object's own BTF, which is cheap)
    // give errors, never panics. (The open-ended run over many
    // more cases is a fuzz job; this is the quick regression check.)
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut opened = 0;
    for path in corpus() {
        let bytes = std::fs::read(&path).unwrap();
        for len in (0..bytes.len()).step_by(61) {
            assert!(Object::open_bytes("cut", bytes[..len].to_vec()).is_err() || len > 64);
        }
        for _ in 0..60 {
            let mut b = bytes.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % b.len() as u64) as usize;
                b[at] = next() as u8;
            }
            match Object::open_bytes("mutated", b) {
                Ok(obj) => {
                    opened += 1;
                    if let Err(e) = obj.relocate(obj.btf()) {
                        assert!(!e.to_string().is_empty());
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
    assert!(opened > 0, "some mutations leave a loadable object (the walk reaches relocation)");
}

#[test]
fn unknown_sections_fail_naming_the_section() {
    // o11's `socket` section renamed (every occurrence, so ELF, BTF and .BTF.ext agree).
    let bytes = std::fs::read(fixture("o11_socket.o")).unwrap();
    let mut renamed = bytes.clone();
    let mut at = 0;
    while let Some(i) = renamed[at..].windows(6).position(|w| w == b"socket") {
        renamed[at + i..at + i + 6].copy_from_slice(b"sockex");
        at += i + 6;
    }
    let obj = Object::open_bytes("renamed", renamed).unwrap();
    let p = obj.program("keep64").unwrap();
    assert!(p.spec.is_none() && p.autoload);
    let e = obj.clone().load().unwrap_err();
    assert!(e.to_string().contains("'keep64'") && e.to_string().contains("'sockex'"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Attached and triggered
// ---------------------------------------------------------------------------------------------

fn u64_at(map: &Map, key: u32) -> u64 {
    let v = map.lookup(&key.to_le_bytes()).unwrap().unwrap_or_default();
    u64::from_le_bytes(v[..8].try_into().unwrap())
}

fn global_u64(loaded: &LoadedObject, var: &str) -> u64 {
    let v = loaded.global(var).unwrap_or_else(|e| panic!("{e}"));
    u64::from_le_bytes(v[..8].try_into().unwrap())
}

#[test]
fn attached_programs_count() {
    if !support::kernel_or_skip("attached_programs_count") {
        return;
    }
    let tgid = std::process::id();

    // A hash map keyed by tgid from a tracepoint.
    let loaded = Object::open(fixture("o01_hash_tp.o")).unwrap().load().unwrap();
    {
        let _link = loaded.program("count_getpid").unwrap().attach().unwrap();
        for _ in 0..3 {
            // SAFETY: getpid has no preconditions.
            unsafe { libc::syscall(libc::SYS_getpid) };
        }
    }
    assert!(u64_at(loaded.map("counts").unwrap(), tgid) >= 3);

    // A raw tracepoint filling an array by syscall number.
    let loaded = Object::open(fixture("o02_array_rawtp.o")).unwrap().load().unwrap();
    {
        let _link = loaded.program("on_sys_enter").unwrap().attach().unwrap();
        // SAFETY: getpid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getpid) };
    }
    assert!(u64_at(loaded.map("by_nr").unwrap(), libc::SYS_getpid as u32) >= 1);

    // Globals: .rodata set before load, .data and .bss read back.
    let mut obj = Object::open(fixture("o05_globals.o")).unwrap();
    obj.set_global("target_tgid", &tgid.to_le_bytes()).unwrap();
    obj.set_global("increment", &5u64.to_le_bytes()).unwrap();
    let loaded = obj.load().unwrap();
    {
        let _link = loaded.program("globals").unwrap().attach().unwrap();
        // SAFETY: getgid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getgid) };
    }
    assert!(global_u64(&loaded, "hits") >= 5);
    assert_eq!(global_u64(&loaded, "hits") % 5, 0, "only this process's calls, 5 each");
    assert!(global_u64(&loaded, "base") >= 1001);
    assert!(
        loaded.map(".rodata").unwrap().update(&0u32.to_le_bytes(), &[0; 16], bpfkit::maps::UpdateFlags::Any).is_err(),
        ".rodata is frozen"
    );

    // Static and global subprograms, bpf_loop callback, map-in-map, tp_btf.
    let cases: &[(&str, &str, libc::c_long)] = &[
        ("o06_static_subprog.o", "static_call", libc::SYS_geteuid),
        ("o07_global_subprog.o", "global_call", libc::SYS_getegid),
        ("o18_bpf_loop.o", "looper", libc::SYS_getresuid),
        ("o17_map_in_map.o", "mim", libc::SYS_getpgrp),
        ("o13_tp_btf.o", "on_enter_btf", libc::SYS_getpid),
        ("o14_rodata_config.o", "configured", libc::SYS_getpgid),
        ("o19_ksym_kfunc.o", "ksym_enter", libc::SYS_getpid),
        ("o20_legacy_maps.o", "legacy", libc::SYS_getpid),
        ("o22_tail_call.o", "entry", libc::SYS_getuid),
    ];
    for (file, prog, nr) in cases {
        let missing = kfuncs_missing_here(&fixture(file));
        if !missing.is_empty() {
            refused_for_missing_kfuncs(&fixture(file), &missing, load_with_libbpf(&fixture(file)));
            continue;
        }
        let loaded = Object::open(fixture(file)).and_then(Object::load).unwrap_or_else(|e| panic!("{file}: {e}"));
        {
            let _link = loaded.program(prog).unwrap().attach().unwrap_or_else(|e| panic!("{file}: {e}"));
            let (mut a, mut b, mut c) = (0u32, 0u32, 0u32);
            // SAFETY: these syscalls take no pointers, except getresuid, given three valid u32s.
            unsafe {
                if *nr == libc::SYS_getresuid {
                    libc::syscall(*nr, &mut a, &mut b, &mut c);
                } else {
                    libc::syscall(*nr, 0);
                }
            }
        }
        let got = match *file {
            "o06_static_subprog.o" => global_u64(&loaded, "total"),
            "o07_global_subprog.o" => global_u64(&loaded, "calls") / 2,
            "o18_bpf_loop.o" => global_u64(&loaded, "loop_sum") / 45,
            "o17_map_in_map.o" => u64_at(loaded.map("inner0").unwrap(), 0),
            "o13_tp_btf.o" => global_u64(&loaded, "btf_hits"),
            "o19_ksym_kfunc.o" => global_u64(&loaded, "ksym_hits"),
            "o20_legacy_maps.o" => u64_at(loaded.map("legacy_counts").unwrap(), 1),
            "o22_tail_call.o" => {
                assert_eq!(global_u64(&loaded, "tailed"), global_u64(&loaded, "entered"), "every entry tail-called");
                global_u64(&loaded, "tailed")
            }
            _ => {
                let v = loaded.map(".data.stats").unwrap().lookup(&0u32.to_le_bytes()).unwrap().unwrap();
                let stat = |i: usize| u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
                assert_eq!((stat(2), stat(3)), (0, 0), "only the `mode == 1` branch runs");
                stat(1)
            }
        };
        assert!(got >= 1, "{file}: {prog} counted {got}");
    }
}

fn sum_u64(map: &Map) -> u64 {
    map.iter().map(|kv| u64::from_le_bytes(kv.unwrap().1[..8].try_into().unwrap())).sum()
}

#[test]
fn packet_programs_see_packets() {
    if !support::kernel_or_skip("packet_programs_see_packets") {
        return;
    }
    let send = |sock: &std::net::UdpSocket| {
        let to = sock.local_addr().unwrap();
        for _ in 0..3 {
            sock.send_to(b"bpfkit", to).unwrap();
        }
        let mut buf = [0u8; 16];
        sock.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
        sock.recv(&mut buf).unwrap();
    };

    // XDP in generic mode on the loopback interface.
    let loaded = Object::open(fixture("o09_xdp.o")).and_then(Object::load).unwrap();
    let lo = bpfkit::attach::ifindex("lo").unwrap();
    {
        let _link = loaded.program("xdp_count").unwrap().attach_xdp(lo, bpfkit::attach::XdpMode::Generic).unwrap();
        send(&std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    }
    assert!(sum_u64(loaded.map("pkts").unwrap()) >= 3);
    let e = loaded.program("xdp_count").unwrap().attach().unwrap_err();
    assert!(e.to_string().contains("attach_xdp"), "{e}");

    // A socket filter on a UDP socket.
    let loaded = Object::open(fixture("o11_socket.o")).and_then(Object::load).unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let _link = loaded.program("keep64").unwrap().program().attach_socket_filter(&sock).unwrap();
    send(&sock);
    assert!(u64_at(loaded.map("seen_pkts").unwrap(), 0) >= 1);
}

#[test]
fn maps_pinned_by_name_are_reused() {
    if !support::kernel_or_skip("maps_pinned_by_name_are_reused") {
        return;
    }
    let root = std::path::PathBuf::from(format!("/sys/fs/bpf/bpfkit-object-test-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let open = || {
        let mut obj = Object::open(fixture("o21_pinned.o")).unwrap();
        obj.set_pin_root(&root);
        obj.load().unwrap()
    };
    let first = open();
    let key = 7u32.to_le_bytes();
    first.map("bpfkit_obj_pinned").unwrap().update(&key, &42u64.to_le_bytes(), bpfkit::maps::UpdateFlags::Any).unwrap();
    drop(first);
    let second = open();
    assert_eq!(u64_at(second.map("bpfkit_obj_pinned").unwrap(), 7), 42, "the pinned map was reused");

    // A pinned map with another definition is refused, naming the map.
    let mut obj = Object::open(fixture("o21_pinned.o")).unwrap();
    obj.set_pin_root(&root);
    obj.map_mut("bpfkit_obj_pinned").unwrap().max_entries = 32;
    let e = obj.load().unwrap_err();
    assert!(e.to_string().contains("'bpfkit_obj_pinned'") && e.to_string().contains("another definition"), "{e}");
    std::fs::remove_file(root.join("bpfkit_obj_pinned")).unwrap();
    std::fs::remove_dir(&root).unwrap();
}

/// The uprobe target of `uprobes_fire`: a function of this test binary.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bpfkit_object_uprobe_target(x: u64) -> u64 {
    std::hint::black_box(x).wrapping_mul(7)
}

#[test]
fn uprobes_fire() {
    if !support::kernel_or_skip("uprobes_fire") {
        return;
    }
    let loaded = Object::open(fixture("o15_probes.o")).and_then(Object::load).unwrap();
    let up = loaded.program("up_any").unwrap();
    // A bare `uprobe` section names no target: attach() says so; attach_uprobe takes one.
    let e = up.attach().unwrap_err();
    assert!(e.to_string().contains("attach_uprobe"), "{e}");
    let exe = std::env::current_exe().unwrap().to_string_lossy().into_owned();
    let target =
        bpfkit::attach::uprobe::UprobeTarget::symbol(exe, "bpfkit_object_uprobe_target").pid(std::process::id() as i32);
    {
        let _link = up.attach_uprobe(&target).unwrap();
        for i in 0..3 {
            std::hint::black_box(bpfkit_object_uprobe_target(i));
        }
    }
    assert!(global_u64(&loaded, "probe_hits") >= 3);
}

#[test]
fn task_iterator_runs() {
    if !support::kernel_or_skip("task_iterator_runs") {
        return;
    }
    let loaded = Object::open(fixture("o16_iter_task.o")).and_then(Object::load).unwrap();
    let it = loaded.program("count_tasks").unwrap();
    assert!(it.attach().unwrap_err().to_string().contains("attach_iter"));
    let link = it.program().attach_iter(&bpfkit::attach::iter::IterScope::All).unwrap();
    bpfkit::attach::iter::read_to_end(&link).unwrap();
    assert!(global_u64(&loaded, "tasks") >= 2, "at least this process and init");
}

#[test]
fn ring_buffer_records_arrive() {
    if !support::kernel_or_skip("ring_buffer_records_arrive") {
        return;
    }
    let loaded = Object::open(fixture("o04_ringbuf.o")).and_then(Object::load).unwrap();
    let mut ring = bpfkit::events::RingBuf::new(loaded.map("events").unwrap()).unwrap();
    let tid = {
        let _link = loaded.program("emit_getuid").unwrap().attach().unwrap();
        // SAFETY: getuid and gettid have no preconditions.
        unsafe {
            libc::syscall(libc::SYS_getuid);
            libc::syscall(libc::SYS_gettid) as u32
        }
    };
    let mut mine = 0;
    ring.drain(|rec| {
        // struct event { u32 pid; u32 tgid; char comm[16]; }
        let pid = u32::from_le_bytes(rec[..4].try_into().unwrap());
        let tgid = u32::from_le_bytes(rec[4..8].try_into().unwrap());
        if pid == tid && tgid == std::process::id() {
            mine += 1;
        }
    });
    assert!(mine >= 1, "a record from this thread");
}
