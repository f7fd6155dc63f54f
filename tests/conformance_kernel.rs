//! The conformance suite executed in the kernel (tier 4, execution half).
//!
//! Each program becomes a bpf-to-bpf subprogram of an XDP harness, as the suite's Linux
//! runner does with a prologue: r1 = pointer to the `-- mem` bytes (at the start of the
//! packet), r2 = their length. Because the program is *called*, its `exit` returns the full
//! 64-bit r0 to the harness, which stores it in the packet just after the `-- mem` bytes; the
//! test reads it from PROG_TEST_RUN's data_out. (XDP's retval alone is truncated to 32 bits.)
//! A verifier rejection is a skip, printed with the verifier's reason; any other load error is
//! a failure, and every program the verifier accepts must produce its `-- result`.

mod support;

use bpfkit::insn::*;
use bpfkit::prog::{LoadError, LoadOptions, ProgType, Program as Loaded, TestRun};
use support::conformance;

const BODY: &str = "__bpfkit_body";
const OUT: &str = "__bpfkit_out";

/// The XDP harness around `body`, for `mem_len` bytes of input.
fn harness(body: Program, mem_len: usize) -> Program {
    let k = mem_len as i32;
    let mut p = Program::new();
    p.push(ldx(Size::W, Reg::R6, Reg::R1, 0)) // xdp_md->data
        .push(ldx(Size::W, Reg::R7, Reg::R1, 4)) // xdp_md->data_end
        .push(mov64(Reg::R1, Reg::R6))
        .push(mov64(Reg::R2, k))
        .push(call_local(BODY))
        .push(mov64(Reg::R1, Reg::R6))
        .push(add64(Reg::R1, k + 8))
        .push(jmp_if(JmpCond::Gt, Reg::R1, Reg::R7, OUT))
        .push(stx(Size::DW, Reg::R6, k as i16, Reg::R0))
        .label(OUT)
        .push(mov64(Reg::R0, 2)) // XDP_PASS
        .push(exit())
        .label(BODY)
        .extend(body);
    p
}

#[test]
fn conformance_programs_run_in_the_kernel() {
    let Some(files) = conformance::files_or_skip("tests") else { return };
    if !support::kernel_or_skip("conformance in the kernel") {
        return;
    }
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), Vec::new());
    for path in &files {
        let f = conformance::read(path).expect("readable .data file");
        let (Some((text, first)), Some(expected)) = (&f.asm, f.result) else {
            skipped.push(format!("{}: no -- asm or no -- result", f.name));
            continue;
        };
        let body = parse_program_with(text, &ParseOptions::new().dialect(Dialect::Mnemonic).origin(f.name.as_str()).first_line(*first))
            .unwrap_or_else(|e| panic!("{}", e.render()));
        let asm = match harness(body, f.mem.len()).assemble() {
            Ok(a) => a,
            Err(e) => {
                failed.push(format!("{}: {e}", f.name));
                continue;
            }
        };
        let prog = match Loaded::load(&asm, &[], &LoadOptions::new("conformance", ProgType::Xdp)) {
            Ok(p) => p,
            Err(LoadError::Verifier { rejection, .. }) => {
                skipped.push(format!("{}: verifier: {rejection}", f.name));
                continue;
            }
            // Anything else (EPERM, a map or BTF failure, a log the explainer could not read)
            // is not the verifier's verdict on the program: the suite cannot skip it.
            Err(e) => {
                failed.push(format!("{}: load failed without a verifier rejection: {e}", f.name));
                continue;
            }
        };
        let mut packet = f.mem.clone();
        packet.extend_from_slice(&[0u8; 8]);
        packet.resize(packet.len().max(64), 0);
        let out = match prog.test_run(&TestRun::with_data(packet)) {
            Ok(o) => o,
            Err(e) => {
                failed.push(format!("{}: {e}", f.name));
                continue;
            }
        };
        let k = f.mem.len();
        let r0 = u64::from_le_bytes(out.data_out[k..k + 8].try_into().expect("8 bytes"));
        if r0 == expected {
            passed += 1;
        } else {
            failed.push(format!("{}: r0 = {r0:#x}, expected {expected:#x}", f.name));
        }
    }
    println!("conformance in the kernel: {passed} passed, {} failed, {} skipped", failed.len(), skipped.len());
    for s in &skipped {
        println!("  skipped {s}");
    }
    for s in &failed {
        println!("  FAILED {s}");
    }
    assert!(failed.is_empty(), "{} programs failed (wrong result, or an error other than a verifier rejection):\n{}", failed.len(), failed.join("\n"));
    assert!(passed >= 200, "only {passed} conformance programs ran");
}
