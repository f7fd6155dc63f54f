//! kfuncs by name: `call kfunc[NAME]` (text and `bpf_asm!`) and `call_kfunc_named` (builders)
//! resolve at `Program::load` to the `FUNC`'s id in the running kernel's vmlinux BTF; the
//! verifier then accepts the call for program types the kfunc is registered for, and the
//! program's effect is what the kfunc returned. An unknown name is an error naming it.

mod support;

use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::insn::{self, call_kfunc, call_kfunc_named, exit, jmp_if, ldx, mov64, JmpCond, Reg, Size};
use bpfkit::prog::{LoadError, LoadOptions, ProgType, Program, TestRun};

/// `task_struct.tgid`'s byte offset in the running kernel.
fn tgid_offset(btf: &Btf) -> i16 {
    let task = btf.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    (btf.member_offset(task, "tgid").unwrap() / 8) as i16
}

/// `bpf_task_from_pid(pid)`: its `tgid`, released with `bpf_task_release`; 0xffff if no task.
fn task_tgid_prog(pid: i32, off: i16) -> insn::Program {
    bpf_asm! {
        r1 = {pid}
        call kfunc[bpf_task_from_pid]
        if r0 == 0 goto none
        r6 = r0
        r7 = *(u32 *)(r6 + {off})
        r1 = r6
        call kfunc[bpf_task_release]
        r0 = r7
        exit
    none:
        r0 = 0xffff
        exit
    }
}

fn vmlinux_or_skip(test: &str) -> Option<Btf> {
    if !support::kernel_or_skip(test) {
        return None;
    }
    match Btf::vmlinux() {
        Ok(b) => Some(b),
        Err(e) => {
            support::skip(&format!("{test}: no vmlinux BTF ({e})"));
            None
        }
    }
}

#[test]
fn task_from_pid_by_name_returns_this_process_in_xdp_and_tc() {
    let Some(btf) = vmlinux_or_skip("kfunc by name") else { return };
    let off = tgid_offset(&btf);
    let me = std::process::id();
    for ty in [ProgType::Xdp, ProgType::SchedCls] {
        let asm = task_tgid_prog(me as i32, off).assemble().unwrap();
        let prog = Program::load(&asm, &[], &LoadOptions::new("kfunc_task", ty)).unwrap_or_else(|e| panic!("{ty}: {e}"));
        let run = |p: &Program| p.test_run(&TestRun::with_data(vec![0u8; 64])).unwrap().retval;
        // The kernel found this process by pid and read its tgid.
        assert_eq!(run(&prog), me, "{ty}");
        // A pid no task has (beyond pid_max): the kfunc returned NULL.
        let asm = task_tgid_prog(i32::MAX, off).assemble().unwrap();
        let none = Program::load(&asm, &[], &LoadOptions::new("kfunc_none", ty)).unwrap();
        assert_eq!(run(&none), 0xffff, "{ty}");
    }
}

#[test]
fn builder_kfunc_by_name_equals_the_btf_id() {
    let Some(btf) = vmlinux_or_skip("kfunc builder") else { return };
    let off = tgid_offset(&btf);
    let id = |n: &str| btf.find_by_name_kind(n, Kind::Func).unwrap().0 as i32;
    let prog = |call: &dyn Fn(&str) -> insn::Insn| {
        let mut p = insn::Program::new();
        p.push(mov64(Reg::R1, std::process::id() as i32))
            .push(call("bpf_task_from_pid"))
            .push(jmp_if(JmpCond::Eq, Reg::R0, 0, "none"))
            .push(mov64(Reg::R6, Reg::R0))
            .push(ldx(Size::W, Reg::R7, Reg::R6, off))
            .push(mov64(Reg::R1, Reg::R6))
            .push(call("bpf_task_release"))
            .push(mov64(Reg::R0, Reg::R7))
            .push(exit())
            .label("none")
            .push(mov64(Reg::R0, 0))
            .push(exit());
        Program::load(&p.assemble().unwrap(), &[], &LoadOptions::new("kfunc_built", ProgType::Xdp)).unwrap()
    };
    let by_name = prog(&|n| call_kfunc_named(n));
    let by_id = prog(&|n| call_kfunc(id(n)));
    // The kernel's translated programs are the same: the name became exactly the BTF id.
    assert_eq!(by_name.xlated_insns().unwrap(), by_id.xlated_insns().unwrap());
    assert_eq!(by_name.test_run(&TestRun::with_data(vec![0u8; 64])).unwrap().retval, std::process::id());
}

#[test]
fn an_unknown_kfunc_name_is_an_error_naming_it_and_its_line() {
    if vmlinux_or_skip("unknown kfunc").is_none() {
        return;
    }
    let p = bpf_asm! {
        r1 = 0
        call kfunc[bpf_no_such_kfunc]
        exit
    };
    let e = Program::load(&p.assemble().unwrap(), &[], &LoadOptions::new("kfunc_bad", ProgType::Xdp)).unwrap_err();
    assert!(matches!(&e, LoadError::Kfunc { name, .. } if name == "bpf_no_such_kfunc"), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("program \"kfunc_bad\": kfunc `bpf_no_such_kfunc` (tests/kfuncs.rs:"), "{msg}");
    assert!(msg.ends_with("vmlinux BTF has no function of that name"), "{msg}");
    // A kernel function that exists but is no kfunc: resolved, then refused by the verifier.
    let p = insn::parse_program("r1 = 0\ncall kfunc[vfs_read]\nr0 = 0\nexit").unwrap();
    let e = Program::load(&p.assemble().unwrap(), &[], &LoadOptions::new("kfunc_nokf", ProgType::Xdp)).unwrap_err();
    assert!(matches!(e, LoadError::Verifier { .. }), "{e:?}");
    assert!(e.to_string().contains("calling kernel function vfs_read is not allowed"), "{e}");
    // A name with a module BTF index is not looked up (no module BTF is searched by name).
    let p = insn::parse_program("call kfunc[bpf_task_release, 1]\nexit").unwrap();
    let e = Program::load(&p.assemble().unwrap(), &[], &LoadOptions::new("kfunc_mod", ProgType::Xdp)).unwrap_err();
    assert!(e.to_string().contains("kfunc `bpf_task_release` (<input>:1:1): module BTF (btf_index 1)"), "{e}");
}

#[test]
fn a_kfunc_is_refused_where_the_kernel_does_not_register_it() {
    let Some(btf) = vmlinux_or_skip("kfunc program types") else { return };
    // bpf_task_from_pid is in the kernel's generic kfunc set (tracing, TC, XDP, syscall, …),
    // not for socket filters: the same program, resolved the same way, is refused there.
    let asm = task_tgid_prog(1, tgid_offset(&btf)).assemble().unwrap();
    let e = Program::load(&asm, &[], &LoadOptions::new("kfunc_sf", ProgType::SocketFilter)).unwrap_err();
    assert!(matches!(e, LoadError::Verifier { .. }), "{e:?}");
    assert!(e.to_string().contains("calling kernel function bpf_task_from_pid is not allowed"), "{e}");
    assert!(Program::load(&asm, &[], &LoadOptions::new("kfunc_cls", ProgType::SchedCls)).is_ok());
}
