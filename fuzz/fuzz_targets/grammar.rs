//! Fuzz target: the text grammar and the wire decoder.
//!
//! * Input that is UTF-8 is parsed as a program in every dialect. Parsing must not panic;
//!   an error must point inside the text (line ≥ 1, 1 ≤ column ≤ chars in the line + 1);
//!   a program that parses and assembles must encode to bytes that decode back to it.
//! * The input's bytes (cut to whole 8-byte slots) are decoded. Decoding must not panic;
//!   what decodes must re-encode to exactly the same bytes, and its text in both syntaxes
//!   must parse back to those bytes.
#![no_main]

use bpfkit::insn::*;
use libfuzzer_sys::fuzz_target;

fn check_text(text: &str) {
    for dialect in [Dialect::Auto, Dialect::Llvm, Dialect::Mnemonic] {
        match parse_program_with(text, &ParseOptions::new().dialect(dialect)) {
            Ok(prog) => {
                let Ok(asm) = prog.assemble() else { continue };
                let Ok(bytes) = asm.to_bytes() else { continue };
                let decoded = decode_bytes(&bytes).unwrap_or_else(|e| panic!("{text:?} assembled to undecodable bytes: {e}"));
                assert_eq!(decoded, asm.insns(), "{text:?}");
            }
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1, "{e}");
                let line = text.lines().nth(e.line as usize - 1).unwrap_or_else(|| panic!("line past the end: {e}"));
                assert!(e.column as usize <= line.chars().count() + 1, "column past the line: {e}");
                assert_eq!(e.source_line, line);
            }
        }
    }
}

fn check_bytes(data: &[u8]) {
    let bytes = &data[..data.len() / 8 * 8];
    let Ok(insns) = decode_bytes(bytes) else { return };
    let again = encode_bytes(&insns).expect("decoded instructions encode");
    assert_eq!(again, bytes, "{insns:?}");
    for (syntax, dialect) in [(Syntax::Llvm, Dialect::Llvm), (Syntax::Mnemonic, Dialect::Mnemonic)] {
        let text = disassemble(&insns, DisasmOptions::new(syntax));
        let prog = parse_program_with(&text, &ParseOptions::new().dialect(dialect))
            .unwrap_or_else(|e| panic!("{syntax:?} text does not parse: {}", e.render()));
        let out = prog.assemble().expect("no labels").to_bytes().expect("resolved");
        assert_eq!(out, bytes, "{syntax:?} text:\n{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
    check_bytes(data);
});
