//! Malformed objects never panic, and every refusal names what is wrong.
//!
//! A property run over mutations of real objects: the 22 clang-built objects of
//! `tests/fixtures/objects` and the core corpus, plus one written by `ObjectWriter`. Mutations
//! aim at the structures a loader trusts — the ELF header, section headers, symbols,
//! relocations, the `.BTF`/`.BTF.ext` headers and type records — as well as random bytes and
//! truncation, so that most cases get past the first check. Each case is opened
//! (`Object::open_bytes`), and if that succeeds, relocated against its own BTF.
//!
//! `cargo test` runs a few thousand cases; `scripts/fuzz-objects.sh` runs 1,000,000 and more in
//! release mode (`PROPTEST_CASES`), outside the normal test run.

use std::sync::OnceLock;

use bpfkit::bpf_asm;
use bpfkit::elf::ObjectWriter;
use bpfkit::maps::{MapSpec, MapType};
use bpfkit::object::Object;
use proptest::prelude::*;

/// Every object of the corpus, and where its structures are (offsets into the file).
struct Sample {
    bytes: Vec<u8>,
    /// Byte ranges worth aiming at: section headers, symbol and relocation tables, BTF.
    targets: Vec<(usize, usize)>,
}

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut files: Vec<Vec<u8>> = Vec::new();
        for dir in ["tests/fixtures/objects", "tests/fixtures/core"] {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            let mut paths: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "o")).collect();
            paths.sort();
            files.extend(paths.iter().map(|p| std::fs::read(p).unwrap()));
        }
        let prog = bpf_asm! {
            r1 = map[counts] ll
            r0 = 2
            exit
        };
        let mut w = ObjectWriter::new("GPL");
        w.map(MapSpec::new("counts", MapType::Array, 4, 8, 1)).program("xdp", "written", &prog.assemble().unwrap()).unwrap();
        files.push(w.to_bytes().unwrap());
        files.into_iter().map(|bytes| Sample { targets: structure(&bytes), bytes }).collect()
    })
}

fn u16_at(b: &[u8], off: usize) -> usize {
    u16::from_le_bytes([b[off], b[off + 1]]) as usize
}

fn u64_at(b: &[u8], off: usize) -> usize {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap()) as usize
}

/// The ELF64 header, every section header, and the contents of the symbol table, relocation
/// tables and `.BTF*` sections (found through the section headers of the unmutated file).
fn structure(b: &[u8]) -> Vec<(usize, usize)> {
    let mut t = vec![(0, 64)];
    let (shoff, shentsize, shnum) = (u64_at(b, 0x28), u16_at(b, 0x3a), u16_at(b, 0x3c));
    for i in 0..shnum {
        let sh = shoff + i * shentsize;
        t.push((sh, shentsize));
        let sh_type = u32::from_le_bytes(b[sh + 4..sh + 8].try_into().unwrap());
        let (off, size) = (u64_at(b, sh + 0x18), u64_at(b, sh + 0x20));
        // SYMTAB (2), REL (9), and PROGBITS (1) of at most 64 KiB (BTF, code, maps).
        if matches!(sh_type, 1 | 2 | 9) && size > 0 && off + size <= b.len() && size <= 1 << 16 {
            t.push((off, size));
        }
    }
    t
}

#[derive(Clone, Debug)]
enum Mutation {
    /// Overwrite one byte of a targeted structure.
    Byte { target: usize, at: usize, value: u8 },
    /// Overwrite a little-endian u32 of a targeted structure with an interesting value.
    Word { target: usize, at: usize, value: u32 },
    /// Overwrite any byte of the file.
    Anywhere { at: usize, value: u8 },
    /// Cut the file.
    Truncate { keep: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![Just(0u32), Just(1), Just(0xffff_ffff), Just(0x8000_0000), Just(0x7fff_ffff), Just(0x1000), any::<u32>()];
    prop_oneof![
        4 => (any::<usize>(), any::<usize>(), any::<u8>()).prop_map(|(target, at, value)| Mutation::Byte { target, at, value }),
        4 => (any::<usize>(), any::<usize>(), interesting).prop_map(|(target, at, value)| Mutation::Word { target, at, value }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Anywhere { at, value }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
    ]
}

fn apply(sample: &Sample, mutations: &[Mutation]) -> Vec<u8> {
    let mut b = sample.bytes.clone();
    for m in mutations {
        if b.is_empty() {
            break;
        }
        match *m {
            Mutation::Byte { target, at, value } => {
                let (off, len) = sample.targets[target % sample.targets.len()];
                let i = off + at % len.max(1);
                if i < b.len() {
                    b[i] = value;
                }
            }
            Mutation::Word { target, at, value } => {
                let (off, len) = sample.targets[target % sample.targets.len()];
                let i = off + (at % len.max(4)) / 4 * 4;
                if i + 4 <= b.len() {
                    b[i..i + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            Mutation::Anywhere { at, value } => {
                let i = at % b.len();
                b[i] = value;
            }
            Mutation::Truncate { keep } => b.truncate(keep % (b.len() + 1)),
        }
    }
    b
}

/// The shapes bpfkit's object errors take: each says what it is about (the file, a section, a
/// map, a relocation, a program, BTF, CO-RE, a global) before why.
const ERROR_SUBJECTS: &[&str] = &[
    "malformed ELF: ",
    "not a BPF object: ",
    "ELF section [",
    "object BTF: ",
    "map '",
    "relocation in section '",
    "CO-RE: ",
    "program '",
    "global variable '",
    "extern '",
    "BTF",
    ".BTF.ext",
];

fn assert_names_the_problem(stage: &str, err: &dyn std::error::Error) {
    let msg = err.to_string();
    assert!(
        ERROR_SUBJECTS.iter().any(|s| msg.starts_with(s) && msg.len() > s.len() + 3),
        "{stage}: an error that does not say what is wrong: {msg:?}"
    );
}

proptest! {
    // 3,000 cases in `cargo test`; PROPTEST_CASES (scripts/fuzz-objects.sh) for long runs.
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutated_objects_are_refused_with_a_named_reason_never_a_panic(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let sample = &samples()[which % samples().len()];
        let bytes = apply(sample, &mutations);
        match Object::open_bytes("mutated", bytes) {
            Ok(obj) => {
                if let Err(e) = obj.relocate(obj.btf()) {
                    assert_names_the_problem("relocate", &e);
                }
            }
            Err(e) => assert_names_the_problem("open", &e),
        }
    }
}

#[test]
fn unmutated_samples_open_and_relocate() {
    // The baseline the mutations start from: every sample opens, and most relocate against
    // their own BTF (the CO-RE corpus's flavoured copies of kernel types can be ambiguous there,
    // and say so).
    let mut relocated = 0;
    for (i, s) in samples().iter().enumerate() {
        let obj = Object::open_bytes("sample", s.bytes.clone()).unwrap_or_else(|e| panic!("sample {i}: {e}"));
        match obj.relocate(obj.btf()) {
            Ok(_) => relocated += 1,
            Err(e) => assert_names_the_problem("relocate", &e),
        }
        assert!(s.targets.len() > 5, "sample {i}: structure found");
    }
    assert!(relocated * 2 > samples().len(), "{relocated} of {} relocate", samples().len());
}
