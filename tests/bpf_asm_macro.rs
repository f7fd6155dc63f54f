//! `bpf_asm!`: the grammar at compile time. Programs built by the macro equal the same
//! text parsed at run time; `{expr}` splices Rust values; labels resolve; source lines
//! are recorded; syntax errors are compile errors (tests/ui, pinned with trybuild).

use bpfkit::bpf_asm;
use bpfkit::insn::*;

#[test]
fn macro_equals_runtime_parse_in_both_dialects() {
    let from_macro = bpf_asm! {
        mov r0, 0
        ldxw r1, [r1+4]
        r2 = *(u32 *)(r1 + 4)
        if w1 s> -3 goto +1
        add32 r0, 1
        lock fetch add [r10-8], r1
        lddw r3, 0x1122334455667788
        call bpf_ktime_get_ns
        exit
    };
    let text = "mov r0, 0\nldxw r1, [r1+4]\nr2 = *(u32 *)(r1 + 4)\nif w1 s> -3 goto +1\nadd32 r0, 1\n\
                lock fetch add [r10-8], r1\nlddw r3, 0x1122334455667788\ncall bpf_ktime_get_ns\nexit";
    let from_text = parse_program(text).unwrap();
    let a = from_macro.assemble().unwrap();
    let b = from_text.assemble().unwrap();
    assert_eq!(a.insns(), b.insns());
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
    assert_eq!(a.insns()[7], Insn::Call(Call::Helper(5)));
}

#[test]
fn semicolons_separate_statements_and_labels_resolve() {
    let p = bpf_asm! { mov r0, 1; jeq r1, 0, out; mov r0, 2; out: exit };
    let asm = p.assemble().unwrap();
    assert_eq!(asm.insns().len(), 4);
    assert_eq!(asm.insns()[1].target(), Some(&Target::Rel(1)));
}

#[test]
fn rust_values_enter_as_holes() {
    let imm: i32 = -42;
    let off: i16 = 16;
    let big: u64 = 0xdead_beef_0000_0001;
    let map = MapRef::Name("counts".into());
    let p = bpf_asm! {
        mov r0, {imm}
        r1 = *(u64 *)(r10 - {off})
        lddw r2, {big}
        lddw r3, map[{map}]
        stw [r10-{off}], {imm * 2}
        exit
    };
    let asm = p.assemble().unwrap();
    let i = asm.insns();
    assert_eq!(i[0], mov64(Reg::R0, -42));
    assert_eq!(i[1], ldx(Size::DW, Reg::R1, Reg::R10, -16));
    assert_eq!(i[2], ld_imm64(Reg::R2, 0xdead_beef_0000_0001));
    assert_eq!(i[3], ld_map(Reg::R3, "counts"));
    assert_eq!(i[4], st(Size::W, Reg::R10, -16, -84));
    assert_eq!(asm.map_references(), vec![(3, "counts")]);
}

#[test]
fn instructions_remember_their_source_line() {
    let line = line!() + 2;
    let p = bpf_asm! {
        mov r0, 0
        r0 = *(u64 *)(r10 - 8)
        exit
    };
    let asm = p.assemble().unwrap();
    let loc = asm.loc_of_slot(1).expect("location recorded");
    assert_eq!(loc.line, line + 1);
    assert!(loc.origin().ends_with("bpf_asm_macro.rs"), "{}", loc.origin());
    assert_eq!(loc.column, 9);
}

#[test]
fn undefined_label_is_reported_by_name_at_assembly() {
    let p = bpf_asm! { ja nowhere; exit };
    let err = p.assemble().unwrap_err();
    assert!(matches!(&err, AssembleError::UndefinedLabel { name, .. } if name == "nowhere"), "{err}");
    assert!(err.to_string().contains("bpf_asm_macro.rs:"), "{err}");
}

#[test]
fn compile_errors_point_at_the_offending_token() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
