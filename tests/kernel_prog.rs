//! Kernel tests: programs load, run and are explained when rejected; maps round-trip;
//! nothing leaks. Run as root (CI); otherwise each test skips with its reason.

mod support;

use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{LoadError, LoadOptions, ProgType, Program, TestRun};

const PACKET: [u8; 64] = [0u8; 64];

#[test]
fn xdp_program_returns_its_value() {
    if !support::kernel_or_skip("xdp test run") {
        return;
    }
    let asm = bpf_asm! { mov r0, 1; add r0, 1; exit }.assemble().unwrap();
    let prog = Program::load(&asm, &[], &LoadOptions::new("ret2", ProgType::Xdp)).unwrap();
    let out = prog.test_run(&TestRun::with_data(PACKET)).unwrap();
    assert_eq!(out.retval, 2);
    assert_eq!(out.data_out.len(), PACKET.len());
}

#[test]
fn program_reads_a_map_and_sees_userspace_updates() {
    if !support::kernel_or_skip("map lookup from program") {
        return;
    }
    let map = Map::create(&MapSpec::new("answers", MapType::Array, 4, 8, 1)).unwrap();
    let asm = bpf_asm! {
        stw [r10-4], 0
        lddw r1, map[answers]
        mov r2, r10
        add r2, -4
        call bpf_map_lookup_elem
        mov r1, r0
        mov r0, 0
        jeq r1, 0, out
        ldxdw r0, [r1+0]
    out:
        exit
    }
    .assemble()
    .unwrap();
    let prog = Program::load(&asm, &[&map], &LoadOptions::new("lookup", ProgType::Xdp)).unwrap();
    assert_eq!(prog.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 0);
    map.update(&0u32.to_ne_bytes(), &3u64.to_ne_bytes(), UpdateFlags::Any).unwrap();
    assert_eq!(map.lookup(&0u32.to_ne_bytes()).unwrap(), Some(3u64.to_ne_bytes().to_vec()));
    assert_eq!(prog.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 3);
}

#[test]
fn unbound_map_name_is_an_error_naming_it() {
    let asm = bpf_asm! { lddw r1, map[missing]; mov r0, 0; exit }.assemble().unwrap();
    let err = Program::load(&asm, &[], &LoadOptions::new("nomap", ProgType::Xdp)).unwrap_err();
    assert!(matches!(&err, LoadError::UnboundMap { map, .. } if map == "missing"), "{err}");
}

#[test]
fn verifier_rejection_names_the_macro_source_line() {
    if !support::kernel_or_skip("verifier rejection") {
        return;
    }
    let line = line!() + 4;
    let asm = bpf_asm! {
        mov r0, 0
        mov r1, 1
        *(u64 *)(r10 - 520) = r1
        exit
    }
    .assemble()
    .unwrap();
    let err = Program::load(&asm, &[], &LoadOptions::new("oob_stack", ProgType::Xdp)).unwrap_err();
    let LoadError::Verifier { rejection, .. } = &err else { panic!("expected a verifier rejection, got {err}") };
    assert_eq!(rejection.slot, Some(2), "{}", rejection.log);
    let loc = rejection.loc.as_ref().expect("source location");
    assert_eq!(loc.line, line);
    assert!(loc.origin().ends_with("kernel_prog.rs"));
    let msg = err.to_string();
    assert!(msg.contains("stack"), "{msg}");
    assert!(msg.contains(&format!("kernel_prog.rs:{line}:")), "{msg}");
    println!("{msg}");
}
