//! CO-RE in bpfkit's own grammar: `core_*` forms are relocated against the target BTF at load
//! time. The headline: a program reads `current->real_parent->tgid` through CO-RE offsets,
//! runs on a tracepoint, and reports this process's parent pid.

mod support;

use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, BtfBuilder, IntEncoding, Kind, Member};
use bpfkit::insn::{disassemble, parse_program, DisasmOptions, Syntax};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadError, LoadOptions, ProgType, Program, TestRun};

#[test]
fn core_forms_parse_print_and_refuse_to_encode_unresolved() {
    let prog = parse_program("core_field_offset(r1, \"task_struct\", \"real_parent.tgid\")\ncore_type_size(r2, \"struct task_struct\")\nexit").unwrap();
    let asm = prog.assemble().unwrap();
    let text = disassemble(asm.insns(), DisasmOptions::new(Syntax::Llvm));
    assert_eq!(text, "core_field_offset(r1, \"task_struct\", \"real_parent.tgid\")\ncore_type_size(r2, \"struct task_struct\")\nexit\n");
    assert_eq!(parse_program(&text).unwrap().assemble().unwrap().insns(), asm.insns(), "text round trip");
    let err = asm.to_bytes().unwrap_err();
    assert!(err.to_string().contains("resolved against the kernel's BTF when the program is loaded"), "{err}");
    let err = parse_program("core_field_offzet(r1, \"a\", \"b\")").unwrap_err();
    assert!(err.message.contains("unknown CO-RE form"), "{}", err.message);
    let err = parse_program("core_field_offset(r1, \"task_struct)").unwrap_err();
    assert!(err.message.contains("unterminated"), "{}", err.message);
}

#[test]
fn parent_tgid_through_core_on_a_tracepoint() {
    if !support::kernel_or_skip("CO-RE parent tgid") {
        return;
    }
    let out = Map::create(&MapSpec::new("out", MapType::Array, 4, 8, 1)).unwrap();
    let tid = bpfkit::os::gettid();
    let asm = support::progs::parent_tgid_through_core(tid);
    let prog = Program::load(&asm.assemble().unwrap(), &[&out], &LoadOptions::new("ppid", ProgType::Tracepoint)).unwrap();
    // The offsets really are the kernel's: the xlated program holds them as immediates.
    let vmlinux = Btf::vmlinux().unwrap();
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let want_off = (vmlinux.member_offset(task, "real_parent").unwrap() / 8) as i32;
    let xlated = disassemble(&prog.xlated_insns().unwrap(), DisasmOptions::new(Syntax::Llvm));
    assert!(xlated.contains(&format!("r7 = {want_off:#x}")), "{xlated}");
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    std::hint::black_box(std::process::id());
    drop(link);
    let got = out.typed::<u32, u64>().unwrap().get(&0).unwrap().unwrap();
    assert_eq!(got, std::os::unix::process::parent_id() as u64, "current->real_parent->tgid");
}

#[test]
fn every_core_form_against_the_kernel_and_a_custom_target() {
    if !support::kernel_or_skip("CO-RE forms") {
        return;
    }
    // r0 = <form>; exit — run as a socket filter to read the resolved value back.
    let value_of = |text: &str, target: Option<Btf>| -> Result<u32, LoadError> {
        let asm = parse_program(&format!("{text}\nexit")).unwrap().assemble().unwrap();
        let mut opts = LoadOptions::new("core", ProgType::SocketFilter);
        if let Some(t) = target {
            opts = opts.core_btf(t);
        }
        let p = Program::load(&asm, &[], &opts)?;
        Ok(p.test_run(&TestRun::with_data([0u8; 64])).unwrap().retval)
    };
    let vmlinux = Btf::vmlinux().unwrap();
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let pid_off = (vmlinux.member_offset(task, "pid").unwrap() / 8) as u32;
    assert_eq!(value_of(r#"core_field_offset(r0, "task_struct", "pid")"#, None).unwrap(), pid_off);
    assert_eq!(value_of(r#"core_field_size(r0, "task_struct", "pid")"#, None).unwrap(), 4);
    assert_eq!(value_of(r#"core_field_exists(r0, "task_struct", "pid")"#, None).unwrap(), 1);
    assert_eq!(value_of(r#"core_field_exists(r0, "task_struct", "no_such_field")"#, None).unwrap(), 0);
    assert_eq!(value_of(r#"core_field_signed(r0, "task_struct", "pid")"#, None).unwrap(), 1);
    assert_eq!(value_of(r#"core_type_exists(r0, "task_struct")"#, None).unwrap(), 1);
    assert_eq!(value_of(r#"core_type_exists(r0, "no_such_struct")"#, None).unwrap(), 0);
    assert_eq!(value_of(r#"core_type_size(r0, "task_struct")"#, None).unwrap() as u64, vmlinux.size_of(task).unwrap());
    assert_eq!(value_of(r#"core_type_id(r0, "task_struct")"#, None).unwrap(), task.get());
    // Enumerators as this kernel has them, read by libbpf: arenas (6.9+) may be missing, and then
    // `core_enum_exists` is 0 (and `core_enum_value` of a missing one is poisoned, like a field).
    let libbpf = support::libbpf_btf::VmlinuxBtf::load();
    for name in ["BPF_MAP_TYPE_ARENA", "BPF_MAP_TYPE_BLOOM_FILTER", "BPF_MAP_TYPE_NO_SUCH_TYPE"] {
        let want = libbpf.enum_value("bpf_map_type", name);
        let exists = value_of(&format!(r#"core_enum_exists(r0, "bpf_map_type", "{name}")"#), None).unwrap();
        assert_eq!(exists, want.is_some() as u32, "{name}: libbpf reads {want:?} from this kernel's BTF");
        let value = value_of(&format!(r#"core_enum_value(r0, "bpf_map_type", "{name}")"#), None);
        match want {
            Some(v) => assert_eq!(value.unwrap() as i64, v, "{name}"),
            None => assert!(value.unwrap_err().to_string().contains("CO-RE relocation failed"), "{name}"),
        }
    }
    // Bitfield shifts: task_struct.sched_contributes_to_load is a 1-bit field.
    let l = value_of(r#"core_field_lshift(r0, "task_struct", "sched_contributes_to_load")"#, None).unwrap();
    let r = value_of(r#"core_field_rshift(r0, "task_struct", "sched_contributes_to_load")"#, None).unwrap();
    assert_eq!(r, 63, "a 1-bit field is shifted down by 63");
    assert!(l < 64);

    // A hand-made target where task_struct is small and pid moved; a flavored local name matches it.
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    b.add_struct("task_struct", 16, &[Member::new("flags", int, 0), Member::new("pid", int, 96)]).unwrap();
    let custom = Btf::from_bytes(b.encode()).unwrap();
    assert_eq!(value_of(r#"core_field_offset(r0, "task_struct___mine", "pid")"#, Some(custom.clone())).unwrap(), 12);
    assert_eq!(value_of(r#"core_type_size(r0, "task_struct")"#, Some(custom.clone())).unwrap(), 16);
    // No match: the instruction is poisoned; the verifier refuses it, and the error names the relocation.
    let err = value_of(r#"core_field_offset(r0, "task_struct", "tgid")"#, Some(custom)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("CO-RE relocation failed") && msg.contains("core_field_offset(\"task_struct\", \"tgid\")"), "{msg}");
}

#[test]
fn core_read_pattern_follows_a_pointer_chain() {
    use bpfkit::helpers::core_read::{core_read, Hop};
    use bpfkit::insn::{Reg, Size};
    if !support::kernel_or_skip("core_read pattern") {
        return;
    }
    let out = Map::create(&MapSpec::new("out", MapType::Array, 4, 8, 1)).unwrap();
    let tid = bpfkit::os::gettid();
    let mut prog = bpf_asm! {
        call bpf_get_current_pid_tgid
        w0 = w0
        if r0 != {tid} goto done
        call bpf_get_current_task
        r6 = r0
    };
    prog.extend(core_read(Reg::R8, Reg::R6, &[Hop::new("task_struct", "real_parent"), Hop::new("task_struct", "tgid")], Size::W, -8, Reg::R7).unwrap());
    prog.extend(bpf_asm! {
        *(u32 *)(r10 - 12) = 0
        r1 = map[out] ll
        r2 = r10
        r2 += -12
        call bpf_map_lookup_elem
        if r0 == 0 goto done
        *(u64 *)(r0 + 0) = r8
    done:
        r0 = 0
        exit
    });
    let prog = Program::load(&prog.assemble().unwrap(), &[&out], &LoadOptions::new("core_read", ProgType::Tracepoint)).unwrap();
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    std::hint::black_box(std::process::id());
    drop(link);
    assert_eq!(out.typed::<u32, u64>().unwrap().get(&0).unwrap().unwrap(), std::os::unix::process::parent_id() as u64);
}

#[test]
fn a_loaded_program_reports_what_each_relocation_became() {
    if !support::kernel_or_skip("CO-RE relocation records") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let pid = (vmlinux.member_offset(task, "pid").unwrap() / 8) as i64;
    // The second field exists nowhere: guarded by its own existence check, its offset is
    // poisoned in code the verifier proves dead, and the program loads.
    let asm = bpf_asm! {
        core_field_offset(r1, "task_struct", "pid")
        core_field_exists(r2, "task_struct", "no_such_field_anywhere")
        if r2 == 0 goto out
        core_field_offset(r3, "task_struct", "no_such_field_anywhere")
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&asm.assemble().unwrap(), &[], &LoadOptions::new("core_records", ProgType::SocketFilter)).unwrap();
    let records: Vec<String> = prog.core_relocations().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        records,
        vec![
            format!("core_field_offset(\"task_struct\", \"pid\") = {pid:#x}"),
            "core_field_exists(\"task_struct\", \"no_such_field_anywhere\") = 0x0".to_string(),
            "core_field_offset(\"task_struct\", \"no_such_field_anywhere\") = poisoned (not found)".to_string(),
        ]
    );
    assert_eq!(prog.core_relocations().iter().map(|r| r.slot).collect::<Vec<_>>(), vec![0, 1, 3]);
}
