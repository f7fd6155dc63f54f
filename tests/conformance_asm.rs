//! The conformance suite's programs, assembled by bpfkit (tier 4, assembly half):
//! every `-- asm` section assembles; where a `-- raw` section exists, the bytes match it;
//! negative files that are assembler errors are rejected with a message naming line and column.

mod support;

use bpfkit::insn::*;
use support::conformance::{self, DataFile};

fn assemble(f: &DataFile) -> Result<Vec<u8>, String> {
    let (text, first_line) = f.asm.as_ref().ok_or("no -- asm section")?;
    let opts = ParseOptions::new().dialect(Dialect::Mnemonic).origin(f.name.as_str()).first_line(*first_line);
    let prog = parse_program_with(text, &opts).map_err(|e| e.render())?;
    let asm = prog.assemble().map_err(|e| e.to_string())?;
    asm.to_bytes().map_err(|e| e.to_string())
}

#[test]
fn conformance_programs_assemble_and_match_raw() {
    let Some(files) = conformance::files_or_skip("tests") else { return };
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), Vec::new());
    for path in &files {
        let f = conformance::read(path).expect("readable .data file");
        if f.asm.is_none() {
            skipped.push(format!("{}: no -- asm section", f.name));
            continue;
        }
        match assemble(&f) {
            Ok(bytes) => match &f.raw {
                Some(raw) => {
                    let ours: Vec<u64> = bytes.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect();
                    if &ours == raw {
                        passed += 1;
                    } else {
                        failed.push(format!("{}: ours {ours:#018x?} raw {raw:#018x?}", f.name));
                    }
                }
                None => passed += 1,
            },
            Err(e) => failed.push(format!("{}: {e}", f.name)),
        }
    }
    println!("conformance assembly: {passed} passed, {} failed, {} skipped", failed.len(), skipped.len());
    for s in &skipped {
        println!("  skipped {s}");
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(passed >= 300, "only {passed} programs assembled");
}

#[test]
fn negative_programs_are_rejected_with_a_clear_message() {
    let Some(files) = conformance::files_or_skip("negative") else { return };
    let (mut rejected, mut not_assembler_errors, mut wrongly_accepted) = (0, Vec::new(), Vec::new());
    for path in &files {
        let f = conformance::read(path).expect("readable .data file");
        if let Some(bytes) = &f.raw_bytes {
            // Raw negative programs: the strict decoder must refuse unused fields / bad opcodes.
            match decode_bytes(bytes) {
                Err(e) => {
                    assert!(e.to_string().contains("slot"), "{}: {e}", f.name);
                    rejected += 1;
                }
                Ok(insns) => not_assembler_errors.push(format!("{} (decodes as {:?}: a runtime/verifier matter)", f.name, insns)),
            }
            continue;
        }
        match &f.asm {
            None => not_assembler_errors.push(format!("{}: no program", f.name)),
            Some((text, _)) if text.trim().is_empty() || text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) => {
                not_assembler_errors.push(format!("{}: empty program (rejected at load, not assembly)", f.name))
            }
            Some(_) => match assemble(&f) {
                Err(e) => {
                    assert!(e.contains(&f.name) || e.contains("label"), "{}: message should name the place: {e}", f.name);
                    rejected += 1;
                }
                Ok(_) => wrongly_accepted.push(f.name.clone()),
            },
        }
    }
    println!("negative programs: {rejected} rejected by bpfkit, {} are not assembler errors", not_assembler_errors.len());
    for s in &not_assembler_errors {
        println!("  {s}");
    }
    println!("  accepted by the assembler (runtime-level negatives, checked in the kernel): {wrongly_accepted:?}");
    assert!(rejected >= 40, "only {rejected} negatives rejected");
}
