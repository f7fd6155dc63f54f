//! Hygiene: 10,000 cycles of create map + load program + test run + drop leave the
//! process's fd count unchanged. Alone in its binary so no other test opens or closes
//! fds while it counts.

mod support;

use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};

const PACKET: [u8; 64] = [0u8; 64];

#[test]
fn ten_thousand_load_run_drop_cycles_leak_no_fds() {
    if !support::kernel_or_skip("fd hygiene") {
        return;
    }
    let asm = bpf_asm! {
        stw [r10-4], 0
        lddw r1, map[m]
        mov r2, r10
        add r2, -4
        call bpf_map_lookup_elem
        mov r0, 2
        exit
    }
    .assemble()
    .unwrap();
    let before = bpfkit::os::open_fd_count().unwrap();
    for _ in 0..10_000 {
        let map = Map::create(&MapSpec::new("m", MapType::Array, 4, 8, 1)).unwrap();
        let prog = Program::load(&asm, &[&map], &LoadOptions::new("cycle", ProgType::Xdp)).unwrap();
        assert_eq!(prog.test_run(&TestRun::with_data(PACKET)).unwrap().retval, 2);
    }
    assert_eq!(bpfkit::os::open_fd_count().unwrap(), before);
}
