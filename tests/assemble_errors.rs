//! Assembly errors name the label and the place: undefined and duplicate labels, and jumps
//! beyond the 16-bit offset range (with the `gotol` suggestion). Builders and text agree.

use bpfkit::insn::*;

#[test]
fn undefined_label_names_label_and_line() {
    let p = parse_program_with("mov r0, 0\njeq r1, 0, finish\nexit", &ParseOptions::new().origin("prog.s")).unwrap();
    let e = p.assemble().unwrap_err();
    assert_eq!(e.to_string(), "prog.s:2:1: undefined label `finish`");
}

#[test]
fn duplicate_label_names_both_places() {
    let p = parse_program_with("a:\nmov r0, 0\na: exit", &ParseOptions::new().origin("dup.s")).unwrap();
    let e = p.assemble().unwrap_err();
    assert_eq!(e.to_string(), "dup.s:3:1: duplicate label `a` (first defined at dup.s:1:1)");
}

fn far_program(jump: Insn, fill: usize) -> Program {
    let mut p = Program::new();
    p.push(jump);
    for _ in 0..fill {
        p.push(mov64(Reg::R0, 0));
    }
    p.label("far").push(exit());
    p
}

#[test]
fn jump_beyond_16_bits_suggests_gotol_and_gotol_reaches() {
    let e = far_program(ja("far"), 40_000).assemble().unwrap_err();
    assert!(matches!(&e, AssembleError::JumpOutOfRange { name, distance: 40_000, .. } if name == "far"), "{e}");
    assert!(e.to_string().contains("use `gotol`"), "{e}");

    let e = far_program(jmp_if(JmpCond::Eq, Reg::R1, 0, "far"), 40_000).assemble().unwrap_err();
    assert!(e.to_string().contains("invert the condition around a `gotol`"), "{e}");

    let asm = far_program(gotol("far"), 40_000).assemble().unwrap();
    assert_eq!(asm.insns()[0], Insn::Gotol { target: Target::Rel(40_000) });
    // Exactly at the edge of the 16-bit range still fits.
    let asm = far_program(ja("far"), 32_767).assemble().unwrap();
    assert_eq!(asm.insns()[0], Insn::Ja { target: Target::Rel(32_767) });
}

#[test]
fn ld_imm64_counts_two_slots_in_jump_offsets() {
    // clj-ebpf's hand-counted offsets forgot this; labels make it impossible to get wrong.
    let mut p = Program::new();
    p.push(jmp_if(JmpCond::Eq, Reg::R1, 0, "end")).push(ld_imm64(Reg::R2, u64::MAX)).push(mov64(Reg::R0, 1)).label("end").push(exit());
    let asm = p.assemble().unwrap();
    assert_eq!(asm.insns()[0].target(), Some(&Target::Rel(3)));
    assert_eq!(asm.slot_count(), 5);
    assert_eq!(asm.insn_at_slot(2), Some(1));
    assert_eq!(asm.insn_at_slot(3), Some(2));
}

#[test]
fn builders_and_text_give_the_same_program() {
    let text = parse_program("r0 = 0\nif r1 == 5 goto done\nr0 = *(u64 *)(r1 + 8)\nlock *(u64 *)(r10 - 8) += r0\ndone:\nexit").unwrap();
    let mut built = Program::new();
    built
        .push(mov64(Reg::R0, 0))
        .push(jmp_if(JmpCond::Eq, Reg::R1, 5, "done"))
        .push(ldx(Size::DW, Reg::R0, Reg::R1, 8))
        .push(atomic(AtomicOp::Add, Size::DW, Reg::R10, -8, Reg::R0))
        .label("done")
        .push(exit());
    assert_eq!(text.assemble().unwrap().to_bytes().unwrap(), built.assemble().unwrap().to_bytes().unwrap());
}

#[test]
fn parse_errors_say_what_was_expected_with_line_and_column() {
    let cases = [
        ("mov r0", 1, 7, "expected `,`"),
        ("exit\nldxw r1, r2", 2, 10, "expected a memory operand"),
        ("r1 = *(u33 *)(r2 + 0)", 1, 8, "expected u8, u16, u32, u64"),
        ("mov32 r0, 2147483648", 1, 11, "does not fit in 32 bits"),
        ("or r0, r50", 1, 8, "invalid register `r50`"),
        ("lock or [r10-8]", 1, 16, "lock takes two operands"),
        ("call bpf_no_such_helper", 1, 6, "unknown helper `bpf_no_such_helper`"),
    ];
    for (text, line, col, msg) in cases {
        let e = parse_program(text).unwrap_err();
        assert_eq!((e.line, e.column), (line, col), "{text}: {e}");
        assert!(e.message.contains(msg), "{text}: {e}");
    }
}
