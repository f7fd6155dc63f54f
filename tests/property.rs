//! Property tests of the instruction layer (`bpfkit::insn`):
//!
//! * every valid [`Insn`] survives the wire codec: `decode(encode(i)) == i`, and
//!   `encode(decode(b)) == b` for any bytes the encoder produced;
//! * random 8- and 16-byte slot arrays either fail to decode or re-encode to exactly
//!   the same bytes (the decoder is strict, so there is one encoding per value);
//! * text round trips in both dialects: `format_insn(i, syntax)` parses (with the
//!   matching [`Dialect`]), assembles to the same bytes, and prints the same text again;
//! * the grammar never panics, on arbitrary strings and on strings built from
//!   grammar-ish tokens, and its errors point inside the text (line ≥ 1, 1 ≤ column ≤
//!   chars in the line + 1).
//!
//! Case counts default to 1000 per property and honour `PROPTEST_CASES`;
//! `scripts/fuzz-grammar.sh` runs the `never_panics` properties with a million cases.

use bpfkit::insn::*;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::Config as ProptestConfig;

/// 1000 cases unless `PROPTEST_CASES` says otherwise. No regression files are written
/// (they would land outside `tests/`); failures found so far are pinned as unit tests below.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(cases) }
}

// ---------------------------------------------------------------------------------------
// Strategies for valid instructions.
// ---------------------------------------------------------------------------------------

fn reg() -> impl Strategy<Value = Reg> {
    (0u8..=10).prop_map(|n| Reg::from_num(n).unwrap())
}

fn width() -> impl Strategy<Value = Width> {
    prop_oneof![Just(Width::W32), Just(Width::W64)]
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W), Just(Size::DW)]
}

/// i32 biased towards the values where text and wire formats have edges.
fn i32_any() -> impl Strategy<Value = i32> {
    prop_oneof![
        3 => any::<i32>(),
        2 => -20i32..20,
        1 => prop::sample::select(vec![
            i32::MIN, i32::MIN + 1, i32::MAX, i32::MAX - 1, -1, 0, 1,
            0x7fff, 0x8000, -0x8000, -0x8001, 0xffff, 0x10000, i16::MIN as i32, i16::MAX as i32,
        ]),
    ]
}

fn i16_any() -> impl Strategy<Value = i16> {
    prop_oneof![
        3 => any::<i16>(),
        2 => -20i16..20,
        1 => prop::sample::select(vec![i16::MIN, i16::MIN + 1, i16::MAX, -1, 0, 1]),
    ]
}

fn u32_any() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => any::<u32>(),
        2 => 0u32..20,
        1 => prop::sample::select(vec![0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX, u32::MAX - 1]),
    ]
}

fn u64_any() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => any::<u64>(),
        2 => 0u64..20,
        1 => prop::sample::select(vec![
            0, 1, u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MIN as u64,
            u32::MAX as u64, 1 << 32, 0xffff_ffff_0000_0000, 0x8000_0000,
        ]),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![reg().prop_map(Operand::Reg), i32_any().prop_map(Operand::Imm)]
}

/// A jump target that fits the 16-bit offset field.
fn rel16() -> impl Strategy<Value = Target> {
    i16_any().prop_map(|v| Target::Rel(v as i32))
}

/// A 32-bit target (gotol, bpf-to-bpf calls, `ld_imm64` func).
fn rel32() -> impl Strategy<Value = Target> {
    i32_any().prop_map(Target::Rel)
}

fn alu_op() -> impl Strategy<Value = AluOp> {
    prop::sample::select(AluOp::ALL.to_vec())
}

fn jmp_cond() -> impl Strategy<Value = JmpCond> {
    prop::sample::select(JmpCond::ALL.to_vec())
}

fn atomic_op() -> impl Strategy<Value = AtomicOp> {
    prop::sample::select(AtomicOp::ALL.to_vec())
}

/// Encodable `ld_imm64` values: maps by fd only (names need a loader), and the pseudo
/// forms whose second immediate the decoder requires to be zero (Map, Func, MapIdx) have
/// nothing else to carry.
fn imm64() -> impl Strategy<Value = Imm64> {
    prop_oneof![
        4 => u64_any().prop_map(Imm64::Const),
        1 => i32_any().prop_map(|fd| Imm64::Map(MapRef::Fd(fd))),
        1 => (i32_any(), u32_any()).prop_map(|(fd, offset)| Imm64::MapValue { map: MapRef::Fd(fd), offset }),
        1 => (i32_any(), i32_any()).prop_map(|(id, btf_fd)| Imm64::BtfId { id, btf_fd }),
        1 => rel32().prop_map(Imm64::Func),
        1 => u32_any().prop_map(Imm64::MapIdx),
        1 => (u32_any(), u32_any()).prop_map(|(index, offset)| Imm64::MapIdxValue { index, offset }),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        2 => i32_any().prop_map(Call::Helper),
        // Ids of real helpers, so the mnemonic dialect prints (and reads back) names.
        2 => (1i32..=211).prop_map(Call::Helper),
        1 => rel32().prop_map(Call::Local),
        1 => (i32_any(), i16_any()).prop_map(|(id, btf_index)| Call::Kfunc { func: KfuncRef::Id(id), btf_index }),
        1 => reg().prop_map(Call::Reg),
    ]
}

/// Every variant of [`Insn`], with only values the encoder accepts.
fn valid_insn() -> impl Strategy<Value = Insn> {
    let arms: Vec<BoxedStrategy<Insn>> = vec![
        (alu_op(), width(), reg(), operand())
            .prop_map(|(op, width, dst, src)| Insn::Alu { op, width, dst, src })
            .boxed(),
        (width(), reg()).prop_map(|(width, dst)| Insn::Neg { width, dst }).boxed(),
        (width(), reg(), reg(), prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W)])
            .prop_map(|(width, dst, src, from)| {
                // `from` W exists only at 64-bit width.
                let width = if from == Size::W { Width::W64 } else { width };
                Insn::MovSx { width, dst, src, from }
            })
            .boxed(),
        (reg(), reg(), any::<u16>(), any::<u16>())
            .prop_map(|(dst, src, dst_as, src_as)| Insn::AddrSpaceCast { dst, src, dst_as, src_as })
            .boxed(),
        (
            prop_oneof![Just(ByteOrder::ToLe), Just(ByteOrder::ToBe), Just(ByteOrder::Swap)],
            prop_oneof![Just(16u32), Just(32), Just(64)],
            reg(),
        )
            .prop_map(|(order, bits, dst)| Insn::Endian { order, bits, dst })
            .boxed(),
        (size(), reg(), reg(), i16_any()).prop_map(|(size, dst, src, off)| Insn::Load { size, dst, src, off }).boxed(),
        (prop_oneof![Just(Size::B), Just(Size::H), Just(Size::W)], reg(), reg(), i16_any())
            .prop_map(|(size, dst, src, off)| Insn::LoadSx { size, dst, src, off })
            .boxed(),
        (size(), reg(), i16_any(), reg()).prop_map(|(size, dst, off, src)| Insn::Store { size, dst, off, src }).boxed(),
        (size(), reg(), i16_any(), i32_any())
            .prop_map(|(size, dst, off, imm)| Insn::StoreImm { size, dst, off, imm })
            .boxed(),
        (size(), i32_any()).prop_map(|(size, imm)| Insn::LoadAbs { size, imm }).boxed(),
        (size(), reg(), i32_any()).prop_map(|(size, src, imm)| Insn::LoadInd { size, src, imm }).boxed(),
        (atomic_op(), prop_oneof![Just(Size::W), Just(Size::DW)], reg(), i16_any(), reg())
            .prop_map(|(op, size, dst, off, src)| Insn::Atomic { op, size, dst, off, src })
            .boxed(),
        (size(), reg(), reg(), i16_any())
            .prop_map(|(size, dst, src, off)| Insn::LoadAcquire { size, dst, src, off })
            .boxed(),
        (size(), reg(), i16_any(), reg())
            .prop_map(|(size, dst, off, src)| Insn::StoreRelease { size, dst, off, src })
            .boxed(),
        (reg(), imm64()).prop_map(|(dst, value)| Insn::LdImm64 { dst, value }).boxed(),
        rel16().prop_map(|target| Insn::Ja { target }).boxed(),
        rel32().prop_map(|target| Insn::Gotol { target }).boxed(),
        (jmp_cond(), width(), reg(), operand(), rel16())
            .prop_map(|(cond, width, dst, src, target)| Insn::JmpIf { cond, width, dst, src, target })
            .boxed(),
        rel16().prop_map(|target| Insn::MayGoto { target }).boxed(),
        call().prop_map(Insn::Call).boxed(),
        Just(Insn::Exit).boxed(),
    ];
    Union::new(arms)
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

fn dialect_of(syntax: Syntax) -> Dialect {
    match syntax {
        Syntax::Llvm => Dialect::Llvm,
        Syntax::Mnemonic => Dialect::Mnemonic,
    }
}

/// Parse `text` in `dialect`, assemble, and return the instructions and the bytes.
fn assemble_text(text: &str, dialect: Dialect) -> Result<(Vec<Insn>, Vec<u8>), String> {
    let prog = parse_program_with(text, &ParseOptions::new().dialect(dialect)).map_err(|e| e.render())?;
    let asm = prog.assemble().map_err(|e| e.to_string())?;
    let bytes = asm.to_bytes().map_err(|e| e.to_string())?;
    Ok((asm.insns().to_vec(), bytes))
}

/// The text → bytes → text → bytes check of one instruction in one syntax.
fn check_text_round_trip(insn: &Insn, syntax: Syntax) -> Result<(), TestCaseError> {
    let bytes = encode_bytes(std::slice::from_ref(insn)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let text = format_insn(insn, syntax);
    let (insns, reassembled) = assemble_text(&text, dialect_of(syntax))
        .map_err(|e| TestCaseError::fail(format!("{syntax:?} text of {insn:?} does not parse:\n{e}")))?;
    prop_assert_eq!(&reassembled, &bytes, "{:?} text `{}` of {:?} assembles to other bytes", syntax, text, insn);
    prop_assert_eq!(insns.len(), 1);
    let again = format_insn(&insns[0], syntax);
    prop_assert_eq!(&again, &text, "{:?} text is not stable for {:?}", syntax, insn);
    Ok(())
}

/// What every `ParseError` must satisfy: it points inside the text.
fn check_error_position(text: &str, e: &ParseError) -> Result<(), TestCaseError> {
    prop_assert!(e.line >= 1, "line {} < 1: {}", e.line, e);
    prop_assert!(e.column >= 1, "column {} < 1: {}", e.column, e);
    let line = text.lines().nth(e.line as usize - 1);
    prop_assert!(line.is_some(), "line {} is past the end of the text ({} lines): {}", e.line, text.lines().count(), e);
    let line = line.unwrap();
    let chars = line.chars().count() as u32;
    prop_assert!(e.column <= chars + 1, "column {} > {} + 1 chars in line {:?}: {}", e.column, chars, line, e);
    prop_assert_eq!(&e.source_line, line);
    Ok(())
}

/// Parse in every dialect; on success assemble and encode too (none of it may panic).
fn check_grammar(text: &str) -> Result<(), TestCaseError> {
    for dialect in [Dialect::Auto, Dialect::Llvm, Dialect::Mnemonic] {
        let r = if dialect == Dialect::Auto {
            parse_program(text)
        } else {
            parse_program_with(text, &ParseOptions::new().dialect(dialect))
        };
        match r {
            Ok(prog) => {
                if let Ok(asm) = prog.assemble() {
                    if let Ok(bytes) = asm.to_bytes() {
                        // Whatever assembled must decode back to the same instructions.
                        let decoded = decode_bytes(&bytes);
                        prop_assert!(decoded.is_ok(), "`{}` assembled to undecodable bytes: {:?}", text, decoded);
                        prop_assert_eq!(&decoded.unwrap(), &asm.insns().to_vec());
                    }
                }
            }
            Err(e) => check_error_position(text, &e)?,
        }
    }
    Ok(())
}

/// Tokens of both dialects, operands, numbers that overflow, holes, and junk.
const TOKENS: &[&str] = &[
    // registers
    "r0", "r1", "r2", "r9", "r10", "r11", "r01", "r99999999999", "w0", "w1", "w10", "w11", "%r1", "%", "fp", "r",
    "w",
    // mnemonics
    "mov", "mov32", "add", "add32", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "xor", "lsh", "rsh",
    "arsh", "neg", "neg32", "movsx832", "movsx1664", "movsx3264", "movsx3232", "le16", "be32", "bswap64", "swap16",
    "le8", "ldxb", "ldxh", "ldxw", "ldxdw", "ldxsb", "ldxsdw", "stb", "sth", "stw", "stdw", "stxb", "stxdw",
    "ldabsw", "ldindb", "ldacqw", "strelb", "lock", "fetch", "xchg", "cmpxchg", "add32", "lddw", "ja", "ja32",
    "gotol", "goto", "may_goto", "jeq", "jne", "jgt", "jsge", "jset32", "call", "callx", "local", "kfunc", "exit",
    "if", "ll", "map", "map_value", "map_idx", "map_idx_value", "btf_id", "func", "fd", "fd:", "skb",
    "ld_pseudo", "store_release", "load_acquire", "addr_space_cast", "atomic_fetch_add", "atomic_fetch_xor",
    "xchg_64", "xchg32_32", "cmpxchg_64", "cmpxchg32_32", "bpf_map_lookup_elem", "map_lookup_elem",
    "unknown_helper",
    // operators and punctuation
    "=", "+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=", "<<=", ">>=", "s>>=", "s/=", "s%=", "==", "!=", ">", ">=",
    "<", "<=", "s>", "s>=", "s<", "s<=", "&", "-", "+", "*", "(", ")", "[", "]", "{", "}", ":", ",", ";", "#", "//",
    "/", "<", ">", "<.text+0x10>", "*(u32 *)", "*(u8 *)", "*(u64 *)", "*(s16 *)", "(u32 *)", "(s8)", "(s32)",
    "(u8 *)", "u64", "s8", "u128",
    // numbers
    "0", "1", "-1", "+1", "5", "0x0", "0x10", "-0x8", "0x7fffffff", "0x80000000", "0xffffffff", "0x100000000",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296", "32767", "32768",
    "-32768", "-32769", "65535", "65536", "0xffffffffffffffff", "0x10000000000000000", "18446744073709551615",
    "18446744073709551616", "-9223372036854775808", "-9223372036854775809", "99999999999999999999999999999999",
    "0x", "0xg", "1a", "0b1", "00", "-", "+0x", "- 5",
    // holes
    "{0}", "{1}", "{}", "{x}", "{", "{99999999999999999999}",
    // labels
    "done", "loop", "exit:", "l1:", "_x", ".L1", "a.b",
    // whitespace and junk
    " ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "é", "ß", "日本", "🦀", "\u{0}", "\u{feff}", "\u{200b}", "\u{301}",
    "\u{10ffff}", "\\", "\"", "'", "`", "!", "@", "$", "?", "~",
];

fn token_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|v| v.concat())
}

/// Valid instruction texts with one random edit (a token inserted, a span deleted, or a
/// character replaced): near misses reach deep into the grammar.
fn mutated_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((valid_insn(), any::<bool>()), 1..4),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop::sample::select(TOKENS),
        0u8..3,
    )
        .prop_map(|(insns, at, len, tok, kind)| {
            let text: String = insns
                .iter()
                .map(|(i, llvm)| format_insn(i, if *llvm { Syntax::Llvm } else { Syntax::Mnemonic }))
                .collect::<Vec<_>>()
                .join("\n");
            let chars: Vec<char> = text.chars().collect();
            let at = at.index(chars.len() + 1);
            let mut out: Vec<char> = chars[..at].to_vec();
            match kind {
                0 => {
                    out.extend(tok.chars());
                    out.extend(&chars[at..]);
                }
                1 => {
                    let n = len.index(chars.len() - at + 1);
                    out.extend(&chars[at + n..]);
                }
                _ => {
                    out.extend(tok.chars());
                    out.extend(chars.get(at + 1..).unwrap_or(&[]));
                }
            }
            out.into_iter().collect()
        })
}

// ---------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// `decode(encode(i)) == i` for every valid instruction.
    #[test]
    fn decode_of_encode_is_identity(insn in valid_insn()) {
        let slots = encode(&insn).map_err(|e| TestCaseError::fail(format!("{insn:?}: {e}")))?;
        prop_assert_eq!(slots.len(), insn.slots());
        let bytes: Vec<u8> = slots.iter().flat_map(|s| s.to_bytes()).collect();
        prop_assert_eq!(&encode_bytes(std::slice::from_ref(&insn)).unwrap(), &bytes);
        let decoded = decode_bytes(&bytes).map_err(|e| TestCaseError::fail(format!("{insn:?} → {bytes:02x?}: {e}")))?;
        prop_assert_eq!(decoded, vec![insn]);
    }

    /// `encode(decode(b)) == b` for bytes the encoder produced (whole programs).
    #[test]
    fn encode_of_decode_is_identity(insns in prop::collection::vec(valid_insn(), 1..16)) {
        let bytes = encode_bytes(&insns).unwrap();
        let decoded = decode_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&encode_bytes(&decoded).unwrap(), &bytes);
        prop_assert_eq!(&decoded, &insns);
    }

    /// LLVM dialect: format → parse → assemble gives the same bytes, and the same text again.
    #[test]
    fn llvm_text_round_trips(insn in valid_insn()) {
        check_text_round_trip(&insn, Syntax::Llvm)?;
    }

    /// Mnemonic dialect: the same.
    #[test]
    fn mnemonic_text_round_trips(insn in valid_insn()) {
        check_text_round_trip(&insn, Syntax::Mnemonic)?;
    }

    /// Whole programs, one instruction per line, both dialects, and the two mixed under `Auto`.
    #[test]
    fn program_text_round_trips(insns in prop::collection::vec((valid_insn(), any::<bool>()), 1..16)) {
        let plain: Vec<Insn> = insns.iter().map(|(i, _)| i.clone()).collect();
        let bytes = encode_bytes(&plain).unwrap();
        for syntax in [Syntax::Llvm, Syntax::Mnemonic] {
            let text = disassemble(&plain, DisasmOptions::new(syntax));
            let (_, got) = assemble_text(&text, dialect_of(syntax)).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&got, &bytes, "{:?}:\n{}", syntax, text);
        }
        let mixed: String = insns
            .iter()
            .map(|(i, llvm)| format_insn(i, if *llvm { Syntax::Llvm } else { Syntax::Mnemonic }) + "\n")
            .collect();
        let (_, got) = assemble_text(&mixed, Dialect::Auto).map_err(TestCaseError::fail)?;
        prop_assert_eq!(&got, &bytes, "mixed:\n{}", mixed);
    }

    /// Random 8/16-byte inputs: rejected, or re-encoded to exactly the same bytes (and then
    /// their text round-trips too).
    #[test]
    fn random_slots_decode_strictly(slots in prop::collection::vec(any::<[u8; 8]>(), 1..=2)) {
        check_random_bytes(&slots.concat())?;
    }

    /// The same with slots shaped like instructions (valid registers, small or edge
    /// offsets and immediates) so far more of them decode.
    #[test]
    fn shaped_random_slots_decode_strictly(slots in prop::collection::vec(shaped_slot(), 1..=2)) {
        check_random_bytes(&slots.concat())?;
    }

    /// The grammar never panics on arbitrary strings, and its errors point inside the text.
    #[test]
    fn grammar_never_panics_on_arbitrary_strings(text in any::<String>()) {
        check_grammar(&text)?;
    }

    /// … nor on printable text with newlines.
    #[test]
    fn grammar_never_panics_on_printable_lines(text in "[ -~\t\n]{0,80}") {
        check_grammar(&text)?;
    }

    /// … nor on strings built from grammar tokens.
    #[test]
    fn grammar_never_panics_on_token_soup(text in token_text()) {
        check_grammar(&text)?;
    }

    /// … nor on valid programs with one random edit.
    #[test]
    fn grammar_never_panics_on_near_misses(text in mutated_text()) {
        check_grammar(&text)?;
    }

    /// Line splitting, blank-line and comment skipping: in text with blank lines (including
    /// Unicode whitespace), comments, indentation and `\n` / `\r\n` endings, every instruction
    /// is found, at its line in `str::lines` numbering and the column of its first character.
    #[test]
    fn source_locations_follow_str_lines(lines in prop::collection::vec(source_line(), 0..12), last_newline in any::<bool>()) {
        // (An empty last line without a line ending is no line at all.)
        let last_newline = last_newline || lines.last().is_some_and(|l| l.0.is_empty());
        let mut text = String::new();
        for (k, (line, ending, _)) in lines.iter().enumerate() {
            text.push_str(line);
            if k + 1 < lines.len() || last_newline {
                text.push_str(ending);
            }
        }
        let prog = parse_program(&text).map_err(|e| TestCaseError::fail(e.render()))?;
        let got: Vec<(Insn, u32, u32)> = prog
            .items()
            .iter()
            .filter_map(|item| match item {
                Item::Insn { insn, loc: Some(loc) } => Some((insn.clone(), loc.line, loc.column)),
                _ => None,
            })
            .collect();
        let expected: Vec<(Insn, u32, u32)> = text
            .lines()
            .zip(&lines)
            .enumerate()
            .filter_map(|(k, (l, (_, _, insn)))| {
                insn.clone().map(|i| (i, k as u32 + 1, (l.len() - l.trim_start().len()) as u32 + 1))
            })
            .collect();
        prop_assert_eq!(text.lines().count(), lines.len());
        prop_assert_eq!(got, expected, "{:?}", text);
    }
}

/// One line for `source_locations_follow_str_lines`: its text, its line ending, and the
/// instruction on it (if any).
fn source_line() -> impl Strategy<Value = (String, &'static str, Option<Insn>)> {
    let ending = prop_oneof![Just("\n"), Just("\r\n")];
    let indent = "[ \t]{0,3}";
    let line = prop_oneof![
        // An instruction, possibly indented, possibly with a trailing comment.
        3 => (indent, valid_insn(), any::<bool>(), prop::sample::select(vec!["", " # note", " // note", " ; note", "\t#"]))
            .prop_map(|(ind, insn, llvm, comment)| {
                let text = format_insn(&insn, if llvm { Syntax::Llvm } else { Syntax::Mnemonic });
                (format!("{ind}{text}{comment}"), Some(insn))
            }),
        // Blank, including Unicode whitespace a statement may not start with but a blank line may hold.
        1 => "[ \t\u{a0}\u{2003}\u{3000}\u{b}\u{c}]{0,4}".prop_map(|s| (s, None)),
        // A comment line.
        1 => (indent, prop::sample::select(vec!["#", "//", ";"]), "[ -~]{0,20}").prop_map(|(i, c, t)| (format!("{i}{c}{t}"), None)),
    ];
    (line, ending).prop_map(|((text, insn), ending)| (text, ending, insn))
}

/// A slot whose fields are biased towards what the decoder accepts.
fn shaped_slot() -> impl Strategy<Value = [u8; 8]> {
    (
        any::<u8>(),
        prop_oneof![3 => 0u8..=10, 1 => any::<u8>().prop_map(|r| r & 0xf)],
        prop_oneof![3 => 0u8..=10, 1 => 0u8..=15],
        prop_oneof![3 => Just(0i16), 1 => prop::sample::select(vec![1i16, 8, 16, 32, -1]), 1 => any::<i16>()],
        prop_oneof![
            2 => Just(0i32),
            1 => prop::sample::select(vec![1i32, 16, 32, 64, 0x01, 0x40, 0x41, 0x50, 0xa0, 0xe1, 0xf1, 0x100, 0x110, -1]),
            1 => any::<i32>(),
        ],
    )
        .prop_map(|(code, dst, src, off, imm)| {
            let mut b = [0u8; 8];
            b[0] = code;
            b[1] = (dst & 0xf) | (src << 4);
            b[2..4].copy_from_slice(&off.to_le_bytes());
            b[4..8].copy_from_slice(&imm.to_le_bytes());
            b
        })
}

fn check_random_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(insns) = decode_bytes(bytes) {
        let again = encode_bytes(&insns).map_err(|e| TestCaseError::fail(format!("{insns:?}: {e}")))?;
        prop_assert_eq!(&again, &bytes.to_vec(), "{:?}", insns);
        for syntax in [Syntax::Llvm, Syntax::Mnemonic] {
            for i in &insns {
                check_text_round_trip(i, syntax)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Pinned cases: every variant once, and regressions found by the properties above.
// ---------------------------------------------------------------------------------------

#[test]
fn strategy_covers_every_variant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut seen = std::collections::BTreeSet::new();
    let mut runner = TestRunner::deterministic();
    let strat = valid_insn();
    for _ in 0..5000 {
        let i = strat.new_tree(&mut runner).unwrap().current();
        let name = format!("{i:?}");
        let variant: String = name.chars().take_while(|c| c.is_alphanumeric()).collect();
        let sub = match &i {
            Insn::LdImm64 { value, .. } => format!("{value:?}").chars().take_while(|c| c.is_alphanumeric()).collect(),
            Insn::Call(c) => format!("{c:?}").chars().take_while(|c| c.is_alphanumeric()).collect(),
            _ => String::new(),
        };
        seen.insert(format!("{variant}/{sub}"));
    }
    let expected = [
        "Alu/", "Neg/", "MovSx/", "AddrSpaceCast/", "Endian/", "Load/", "LoadSx/", "Store/", "StoreImm/", "LoadAbs/",
        "LoadInd/", "Atomic/", "LoadAcquire/", "StoreRelease/", "LdImm64/Const", "LdImm64/Map", "LdImm64/MapValue",
        "LdImm64/BtfId", "LdImm64/Func", "LdImm64/MapIdx", "LdImm64/MapIdxValue", "Ja/", "Gotol/", "JmpIf/",
        "MayGoto/", "Call/Helper", "Call/Local", "Call/Kfunc", "Call/Reg", "Exit/",
    ];
    for e in expected {
        assert!(seen.contains(e), "strategy never generated {e}; saw {seen:?}");
    }
}

/// Regression: the mnemonic printer once printed the LLVM arena-cast form, which
/// `Dialect::Mnemonic` rejects; the mnemonic dialect now has `addr_space_cast rD, rS, DST, SRC`.
#[test]
fn addr_space_cast_mnemonic_text_parses_in_mnemonic_dialect() {
    let insn = Insn::AddrSpaceCast { dst: Reg::R1, src: Reg::R2, dst_as: 1, src_as: 0 };
    let text = format_insn(&insn, Syntax::Mnemonic);
    let (insns, _) = assemble_text(&text, Dialect::Mnemonic).unwrap();
    assert_eq!(insns, vec![insn]);
}

/// Regression (found by `llvm_text_round_trips`, fixed in grammar/lexer.rs): u32 fields of
/// pseudo `ld_imm64` values printed in decimal above i32::MAX did not parse back.
#[test]
fn ld_imm64_u32_fields_read_back_above_i32_max() {
    let cases = [
        Imm64::MapIdxValue { index: 2147483648, offset: 1 },
        Imm64::MapIdxValue { index: 1, offset: u32::MAX },
        Imm64::MapValue { map: MapRef::Fd(3), offset: 0x8000_0000 },
        Imm64::MapIdx(u32::MAX),
    ];
    for value in cases {
        let insn = Insn::LdImm64 { dst: Reg::R0, value };
        for syntax in [Syntax::Llvm, Syntax::Mnemonic] {
            check_text_round_trip(&insn, syntax).unwrap();
        }
    }
    for bad in ["lddw r1, map_idx[4294967296]", "lddw r1, map_idx[-1]", "lddw r1, map_value[fd:1]+-1"] {
        assert!(parse_program(bad).is_err(), "{bad}");
    }
}
