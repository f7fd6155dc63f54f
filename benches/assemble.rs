//! Assembly throughput (docs/PERFORMANCE.md): `cargo bench --bench assemble`.
//!
//! * `text_assembly/*`: the same 10,000-line program text in the uBPF mnemonic dialect,
//!   assembled to bytes by bpfkit (`parse_program` + `assemble` + `to_bytes`) and by rbpf
//!   0.3's assembler (`rbpf::assembler::assemble`). The setup asserts both produce
//!   identical bytes. Throughput is in lines (= instructions) per second.
//! * `builder_encode/*`: 10,000 instructions built with the typed builders of
//!   `bpfkit::insn` and encoded with `encode_bytes` (and encoding alone).

use std::hint::black_box;
use std::time::Duration;

use bpfkit::insn::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LINES: usize = 10_000;

/// Line `i` of the program: a rotating mix of ALU (64/32-bit, register/immediate), loads,
/// stores, conditional and unconditional jumps, `lddw`, byte swaps, `neg`, `call`, `exit`
/// — forms both assemblers accept with the same meaning.
fn line(i: usize) -> String {
    let r = |k: usize| (i + k) % 10; // r0..r9 (r10 only as a base)
    let imm = (i as i64 * 7919) % 100_000 - 50_000;
    let off = ((i % 64) as i64 - 32) * 8;
    let alu = ["add", "sub", "mul", "div", "or", "and", "lsh", "rsh", "mod", "xor", "mov", "arsh"][i % 12];
    let jmp = ["jeq", "jgt", "jge", "jlt", "jle", "jset", "jne", "jsgt", "jsge", "jslt", "jsle"][i % 11];
    let size = ["b", "h", "w", "dw"][i % 4];
    match i % 20 {
        0 | 1 => format!("{alu} r{}, r{}", r(1), r(2)),
        2 | 3 => format!("{alu} r{}, {imm}", r(3)),
        4 => format!("{alu}32 r{}, r{}", r(4), r(5)),
        5 => format!("{alu}32 r{}, {:#x}", r(6), imm.unsigned_abs()),
        6 | 7 => format!("ldx{size} r{}, [r{}{:+}]", r(1), r(7), off),
        8 => format!("ldxdw r{}, [r10{:+}]", r(2), -((i % 64) as i64 + 1) * 8),
        9 => format!("stx{size} [r10{:+}], r{}", -((i % 64) as i64 + 1) * 8, r(3)),
        10 => format!("st{size} [r{}{:+}], {imm}", r(4), off),
        11 | 12 => format!("{jmp} r{}, {imm}, {:+}", r(5), (i % 40) as i64 - 20),
        13 => format!("{jmp} r{}, r{}, {:+}", r(6), r(7), (i % 40) as i64 - 20),
        14 => format!("{jmp}32 r{}, {imm}, +{}", r(8), i % 9),
        15 => format!("lddw r{}, {:#x}", r(9), (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        16 => format!("ja {:+}", (i % 30) as i64 - 15),
        17 => format!("{}{} r{}", ["be", "le"][i % 2], [16, 32, 64][i % 3], r(1)),
        18 => [format!("neg r{}", r(2)), format!("call {}", i % 200 + 1)][i % 2].clone(),
        _ => "exit".to_owned(),
    }
}

fn program_text() -> String {
    let mut s = String::with_capacity(LINES * 24);
    for i in 0..LINES {
        s.push_str(&line(i));
        s.push('\n');
    }
    s
}

fn bpfkit_assemble(text: &str) -> Vec<u8> {
    parse_program(text).expect("parse").assemble().expect("assemble").to_bytes().expect("encode")
}

fn rbpf_assemble(text: &str) -> Vec<u8> {
    rbpf::assembler::assemble(text).expect("rbpf assemble")
}

/// The same kind of mix, built with the typed builders.
fn build_insns() -> Vec<Insn> {
    let reg = |k: usize| Reg::from_num((k % 10) as u8).unwrap();
    (0..LINES)
        .map(|i| {
            let imm = ((i as i64 * 7919) % 100_000 - 50_000) as i32;
            let off = ((i % 64) as i16 - 32) * 8;
            let size = [Size::B, Size::H, Size::W, Size::DW][i % 4];
            match i % 10 {
                0 => mov64(reg(i), imm),
                1 => add64(reg(i), reg(i + 1)),
                2 => alu32(AluOp::ALL[i % 14], reg(i), imm),
                3 => ldx(size, reg(i), reg(i + 3), off),
                4 => stx(size, Reg::R10, -(((i % 64) as i16) + 1) * 8, reg(i)),
                5 => jmp_if(JmpCond::ALL[i % 11], reg(i), imm, (i % 40) as i32 - 20),
                6 => ld_imm64(reg(i), (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                7 => ja((i % 30) as i32 - 15),
                8 => call_helper((i % 200 + 1) as u32),
                _ => exit(),
            }
        })
        .collect()
}

fn text_assembly(c: &mut Criterion) {
    let text = program_text();
    assert_eq!(text.lines().count(), LINES);
    // Both assemblers must agree on every byte of this text.
    let ours = bpfkit_assemble(&text);
    let theirs = rbpf_assemble(&text);
    assert_eq!(ours.len(), theirs.len(), "bpfkit and rbpf produce different lengths");
    if let Some(k) = (0..ours.len()).find(|&k| ours[k] != theirs[k]) {
        panic!("bpfkit and rbpf differ at slot {} (line `{}`)", k / 8, line_at_slot(&text, k / 8));
    }
    assert_eq!(ours.len(), (LINES + LINES / 20) * 8, "lddw takes two slots");

    let mut g = c.benchmark_group("text_assembly");
    g.throughput(Throughput::Elements(LINES as u64));
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("bpfkit", |b| b.iter(|| bpfkit_assemble(black_box(&text))));
    g.bench_function("rbpf", |b| b.iter(|| rbpf_assemble(black_box(&text))));
    g.finish();
}

fn line_at_slot(text: &str, slot: usize) -> String {
    let mut s = 0;
    for l in text.lines() {
        let n = if l.starts_with("lddw") { 2 } else { 1 };
        if slot < s + n {
            return l.to_owned();
        }
        s += n;
    }
    String::new()
}

fn builder_encode(c: &mut Criterion) {
    let insns = build_insns();
    let bytes = encode_bytes(&insns).unwrap();
    assert_eq!(decode_bytes(&bytes).unwrap(), insns);

    let mut g = c.benchmark_group("builder_encode");
    g.throughput(Throughput::Elements(LINES as u64));
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("build_and_encode", |b| b.iter(|| encode_bytes(&build_insns()).unwrap()));
    g.bench_function("encode_only", |b| b.iter(|| encode_bytes(black_box(&insns)).unwrap()));
    g.finish();
}

criterion_group!(benches, text_assembly, builder_encode);
criterion_main!(benches);
