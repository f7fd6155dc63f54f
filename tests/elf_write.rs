//! Objects written by `bpfkit::elf::ObjectWriter`, loaded by three independent loaders — libbpf
//! (libbpf-sys), `bpftool prog loadall`, and bpfkit's own `Object` — and run: the XDP program
//! counts packets into a BTF-defined map, the tracepoint program counts this thread's getpid
//! calls. Each loader's run is checked by what the kernel counted, and libbpf's load is checked
//! to carry the object's func and line info.

mod support;

use std::ffi::CString;
use std::os::fd::BorrowedFd;
use std::process::Command;

use bpfkit::bpf_asm;
use bpfkit::elf::{ElfObject, ObjectWriter, WriteError};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::object::Object;
use bpfkit::prog::{Program, TestRun};
use bpfkit::os;

const PACKET: [u8; 64] = [0u8; 64];

/// `counts[0] += 1; return XDP_PASS`, and a tracepoint program adding 1 to `calls[0]` when the
/// thread is `tid`.
fn writer(tid: i32) -> ObjectWriter {
    let xdp = bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[counts] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = 2
        exit
    };
    let tp = bpf_asm! {
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto out
        *(u32 *)(r10 - 4) = 0
        r1 = map[calls] ll
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
    let mut w = ObjectWriter::new("GPL");
    w.map(MapSpec::new("counts", MapType::Array, 4, 8, 1)).map(MapSpec::new("calls", MapType::Array, 4, 8, 16));
    w.program("xdp", "count_packets", &xdp.assemble().unwrap()).unwrap();
    w.program("tracepoint/syscalls/sys_enter_getpid", "count_getpid", &tp.assemble().unwrap()).unwrap();
    w
}

fn u64_at(map: &Map, key: u32) -> Option<u64> {
    map.lookup(&key.to_le_bytes()).unwrap().map(|v| u64::from_le_bytes(v[..8].try_into().unwrap()))
}

/// The map among `ids` named `name`.
fn map_named(ids: &[u32], name: &str) -> Map {
    ids.iter().map(|&id| Map::from_id(id).unwrap()).find(|m| m.info().unwrap().name == name).unwrap_or_else(|| panic!("no map {name}"))
}

/// Two programs sharing nothing but the shape: each calls two subprograms (one calling the other)
/// that go to `.text`; `xdp` returns `triple(plus_one(7)) = 24`, `tc` returns `plus_one(40)`.
fn writer_with_subprograms() -> ObjectWriter {
    let xdp = bpf_asm! {
        r1 = 7
        call local plus_one
        r1 = r0
        call local triple
        exit
    plus_one:
        r0 = r1
        r0 += 1
        exit
    triple:
        r6 = r1
        r1 = 0
        call local plus_one
        r0 = r6
        r0 *= 3
        exit
    };
    let tc = bpf_asm! {
        r1 = 40
        call local plus_one
        exit
    plus_one:
        r0 = r1
        r0 += 1
        exit
    };
    let mut w = ObjectWriter::new("GPL");
    w.program("xdp", "calls_xdp", &xdp.assemble().unwrap()).unwrap();
    w.program("tc", "calls_tc", &tc.assemble().unwrap()).unwrap();
    w
}

#[test]
fn subprograms_are_written_to_text_and_every_loader_links_them() {
    let bytes = writer_with_subprograms().to_bytes().unwrap();
    let elf = ElfObject::parse(bytes.clone()).unwrap();
    let mut funcs: Vec<String> = elf.programs().iter().map(|p| format!("{} {}", p.section_name, p.name)).collect();
    funcs.sort();
    assert_eq!(funcs, [".text calls_tc__plus_one", ".text calls_xdp__plus_one", ".text calls_xdp__triple", "tc calls_tc", "xdp calls_xdp"]);
    if !support::kernel_or_skip("ObjectWriter subprograms") {
        return;
    }
    // bpfkit's loader.
    let obj = Object::open_bytes("calls", bytes.clone()).unwrap().load().unwrap();
    assert_eq!(obj.program("calls_xdp").unwrap().program().test_run(&TestRun::with_data(PACKET)).unwrap().retval, 24);
    assert_eq!(obj.program("calls_tc").unwrap().program().test_run(&TestRun::with_data(PACKET)).unwrap().retval, 41);
    // libbpf's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.o");
    std::fs::write(&path, &bytes).unwrap();
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY (test code): a NUL-terminated path; null opts are allowed.
    let lobj = unsafe { libbpf_sys::bpf_object__open_file(c_path.as_ptr(), std::ptr::null()) };
    assert!(!lobj.is_null());
    // SAFETY (test code): `lobj` was just opened.
    assert_eq!(unsafe { libbpf_sys::bpf_object__load(lobj) }, 0, "libbpf links and loads the subprograms");
    for (name, want) in [("calls_xdp", 24), ("calls_tc", 41)] {
        let c_name = CString::new(name).unwrap();
        // SAFETY (test code): `lobj` is loaded; the name is NUL-terminated; the fd is duplicated.
        let fd = unsafe { BorrowedFd::borrow_raw(libbpf_sys::bpf_program__fd(libbpf_sys::bpf_object__find_program_by_name(lobj, c_name.as_ptr()))) }.try_clone_to_owned().unwrap();
        let prog = Program::from_fd(fd).unwrap();
        assert_eq!(prog.test_run(&TestRun::with_data(PACKET)).unwrap().retval, want, "{name} loaded by libbpf");
    }
    // SAFETY (test code): `lobj` is valid and not used after this.
    unsafe { libbpf_sys::bpf_object__close(lobj) };
}

#[test]
fn written_object_reads_back_with_its_sections_maps_and_btf() {
    let bytes = writer(1).to_bytes().unwrap();
    let elf = ElfObject::parse(bytes.clone()).unwrap();
    let mut sections: Vec<String> = elf.programs().iter().map(|p| format!("{} {}", p.section_name, p.name)).collect();
    sections.sort();
    assert_eq!(sections, ["tracepoint/syscalls/sys_enter_getpid count_getpid", "xdp count_packets"]);
    let obj = Object::open_bytes("written", bytes).unwrap();
    assert_eq!(obj.license(), "GPL");
    let map = obj.map("calls").unwrap();
    assert_eq!((map.map_type, map.key_size, map.value_size, map.max_entries), (MapType::Array, 4, 8, 16));
    let btf = obj.btf().expect(".BTF");
    assert!(btf.find_by_name_kind("count_packets", bpfkit::core_btf::Kind::Func).is_some());
    assert!(btf.find_by_name_kind(".maps", bpfkit::core_btf::Kind::Datasec).is_some());
}

#[test]
fn bad_objects_are_refused_with_the_name_of_what_is_wrong() {
    let prog = bpf_asm! {
        r1 = map[nowhere] ll
        r0 = 0
        exit
    };
    let mut w = ObjectWriter::new("GPL");
    w.program("xdp", "p", &prog.assemble().unwrap()).unwrap();
    let err = w.to_bytes().unwrap_err();
    assert!(matches!(&err, WriteError::UnknownMap { prog, map } if prog == "p" && map == "nowhere"), "{err}");
    assert!(w.program("socket", "p", &prog.assemble().unwrap()).is_err(), "duplicate program name");
    let fd_ref = bpf_asm! {
        r1 = map[fd:3] ll
        r0 = 0
        exit
    };
    let mut w = ObjectWriter::new("GPL");
    w.program("xdp", "by_fd", &fd_ref.assemble().unwrap()).unwrap();
    let err = w.to_bytes().unwrap_err().to_string();
    assert!(err.contains("program \"by_fd\": instruction 0") && err.contains("by name"), "{err}");
}

#[test]
fn libbpf_loads_the_written_object_with_its_func_and_line_info() {
    if !support::kernel_or_skip("ObjectWriter + libbpf") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("written.o");
    writer(os::gettid()).write_to(&path).unwrap();
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY (test code): a NUL-terminated path; null opts are allowed.
    let obj = unsafe { libbpf_sys::bpf_object__open_file(c_path.as_ptr(), std::ptr::null()) };
    assert!(!obj.is_null(), "libbpf opens the object");
    // SAFETY (test code): `obj` was just opened.
    assert_eq!(unsafe { libbpf_sys::bpf_object__load(obj) }, 0, "libbpf loads the object");
    let name = CString::new("count_packets").unwrap();
    // SAFETY (test code): `obj` is loaded; the name is NUL-terminated.
    let prog = unsafe { libbpf_sys::bpf_object__find_program_by_name(obj, name.as_ptr()) };
    assert!(!prog.is_null());
    // SAFETY (test code): `prog` belongs to `obj`; the fd stays libbpf's, so it is duplicated.
    let fd = unsafe { BorrowedFd::borrow_raw(libbpf_sys::bpf_program__fd(prog)) }.try_clone_to_owned().unwrap();
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY (test code): `info` is a zeroed bpf_prog_info of `len` bytes.
    assert_eq!(unsafe { libbpf_sys::bpf_prog_get_info_by_fd(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut info, &mut len) }, 0);
    assert_eq!(info.nr_func_info, 1, "one function");
    assert_eq!(info.nr_line_info, 10, "a line record for each of the 10 instructions, all written in bpf_asm!");
    let prog = Program::from_fd(fd).unwrap();
    for _ in 0..5 {
        assert_eq!(prog.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 2);
    }
    let counts = map_named(&prog.info().unwrap().map_ids, "counts");
    assert_eq!(u64_at(&counts, 0), Some(5), "libbpf's load counted 5 runs");
    // SAFETY (test code): `obj` is valid and not used after this.
    unsafe { libbpf_sys::bpf_object__close(obj) };
}

#[test]
fn bpftool_prog_loadall_loads_the_written_object() {
    if !support::kernel_or_skip("ObjectWriter + bpftool") {
        return;
    }
    if !support::bpftool::bpftool_or_skip("ObjectWriter + bpftool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("written.o");
    writer(os::gettid()).write_to(&path).unwrap();
    let pins = dir.path().join("bpffs");
    std::fs::create_dir(&pins).unwrap();
    os::mount_bpffs(&pins).unwrap();
    let out = Command::new("bpftool").args(["prog", "loadall"]).arg(&path).arg(pins.join("progs")).output().unwrap();
    assert!(out.status.success(), "bpftool prog loadall: {}", String::from_utf8_lossy(&out.stderr));
    let prog = Program::from_pin(pins.join("progs/count_packets")).unwrap();
    for _ in 0..7 {
        assert_eq!(prog.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 2);
    }
    let counts = map_named(&prog.info().unwrap().map_ids, "counts");
    assert_eq!(u64_at(&counts, 0), Some(7), "bpftool's load counted 7 runs");
    let tp = Program::from_pin(pins.join("progs/count_getpid")).unwrap();
    assert_eq!(tp.info().unwrap().prog_type, Some(bpfkit::prog::ProgType::Tracepoint), "the section name chose the type");
    drop((prog, tp, counts));
    os::unmount(&pins).unwrap();
}

#[test]
fn bpfkit_object_loader_attaches_the_written_tracepoint_from_its_section_name() {
    if !support::kernel_or_skip("ObjectWriter + Object") {
        return;
    }
    let tid = os::gettid();
    let obj = Object::open_bytes("written", writer(tid).to_bytes().unwrap()).unwrap().load().unwrap();
    let link = obj.program("count_getpid").unwrap().attach().unwrap();
    for _ in 0..25 {
        std::hint::black_box(std::process::id()); // getpid(2) each time: glibc does not cache it
    }
    drop(link);
    let calls = obj.map("calls").unwrap();
    assert_eq!(u64_at(calls, 0), Some(25), "25 getpid calls counted");
    let run = obj.program("count_packets").unwrap().program().test_run(&TestRun::with_data(PACKET)).unwrap();
    assert_eq!(run.retval, 2);
    assert_eq!(u64_at(obj.map("counts").unwrap(), 0), Some(1));
}
