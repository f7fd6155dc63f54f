//! End-to-end tests of the `bpfkit` binary: `asm` and `disasm` run as a user runs
//! them (real process, real files, stdin), checking stdout bytes, stderr messages
//! and exit statuses.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

/// Run `bpfkit` with `args` in `dir`, feeding `stdin`.
fn run_in(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bpfkit");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    // A command that fails early may not read stdin: a broken pipe here is fine.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child.wait_with_output().expect("wait for bpfkit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "bpfkit panicked: {stderr}");
    out
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    run_in(&std::env::temp_dir(), args, stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "expected success, got {:?}; stderr:\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Assert exit status 1 with nothing on stdout, and return stderr (which starts with `error: `).
fn fails(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1; stdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout on failure, got:\n{}",
        stdout(&o)
    );
    let err = stderr(&o);
    assert!(err.starts_with("error: "), "{err}");
    err
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().expect("temp dir"))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, contents).expect("write test file");
        p
    }
    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_in(self.path(), args, stdin)
    }
}

const MOV_R0_0: &str = "b7 00 00 00 00 00 00 00\n";
const LDDW: &str = "18 01 00 00 88 77 66 55\n00 00 00 00 44 33 22 11\n";
const EXIT: &str = "95 00 00 00 00 00 00 00\n";

#[test]
fn asm_mnemonic_to_hex() {
    let d = Dir::new();
    d.file("p.s", "mov r0, 0\nlddw r1, 0x1122334455667788\nexit\n");
    let out = ok(d.run(&["asm", "p.s"], b""));
    assert_eq!(out, format!("{MOV_R0_0}{LDDW}{EXIT}"));
    let explicit = ok(d.run(
        &["asm", "--syntax", "mnemonic", "--format", "hex", "p.s"],
        b"",
    ));
    assert_eq!(explicit, out);
}

#[test]
fn asm_llvm_to_hex() {
    let d = Dir::new();
    d.file("p.s", "r0 = 0\nr1 = 0x1122334455667788 ll\nexit\n");
    let out = ok(d.run(&["asm", "--syntax", "llvm", "p.s"], b""));
    assert_eq!(out, format!("{MOV_R0_0}{LDDW}{EXIT}"));
}

#[test]
fn asm_reads_stdin() {
    let out = ok(run(&["asm", "-"], b"mov r0, 0\nexit\n"));
    assert_eq!(out, format!("{MOV_R0_0}{EXIT}"));
}

#[test]
fn asm_raw_to_stdout_and_to_file() {
    let expected: Vec<u8> = vec![0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let o = run(&["asm", "--format", "raw", "-"], b"r0 = 0\nexit\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, expected);

    let d = Dir::new();
    let o = d.run(
        &["asm", "--format", "raw", "-o", "out.bin", "-"],
        b"r0 = 0\nexit\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert_eq!(
        std::fs::read(d.path().join("out.bin")).expect("out.bin written"),
        expected
    );
}

const LABELLED: &str = "\
# count down from 3
start:
    mov r0, 0
    mov r1, 3
loop:
    add r0, r1
    sub r1, 1
    jne r1, 0, loop   ; back 3
    jgt r0, 5, out
    lddw r0, 0x1122334455667788
out:
    exit
";

const LABELLED_LLVM: &str = "\
r0 = 0x0
r1 = 0x3
r0 += r1
r1 -= 0x1
if r1 != 0x0 goto -0x3
if r0 > 0x5 goto +0x2
r0 = 0x1122334455667788 ll
exit
";

const LABELLED_MNEMONIC: &str = "\
mov r0, 0
mov r1, 3
add r0, r1
sub r1, 1
jne r1, 0, -3
jgt r0, 5, +2
lddw r0, 0x1122334455667788
exit
";

#[test]
fn asm_raw_disasm_round_trip_with_labels() {
    let d = Dir::new();
    d.file("prog.s", LABELLED);
    ok(d.run(&["asm", "--format", "raw", "-o", "prog.bin", "prog.s"], b""));
    let bytes = std::fs::read(d.path().join("prog.bin")).expect("prog.bin");
    assert_eq!(bytes.len(), 9 * 8, "8 instructions, lddw takes 2 slots");

    assert_eq!(ok(d.run(&["disasm", "prog.bin"], b"")), LABELLED_LLVM);
    assert_eq!(
        ok(d.run(
            &["disasm", "--syntax", "llvm", "--input", "raw", "prog.bin"],
            b""
        )),
        LABELLED_LLVM
    );
    assert_eq!(
        ok(d.run(&["disasm", "--syntax", "mnemonic", "prog.bin"], b"")),
        LABELLED_MNEMONIC
    );

    // Both listings assemble back to the same bytes.
    for (text, syntax) in [(LABELLED_LLVM, "llvm"), (LABELLED_MNEMONIC, "mnemonic")] {
        let o = d.run(
            &["asm", "--syntax", syntax, "--format", "raw", "-"],
            text.as_bytes(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(o.stdout, bytes, "{syntax} listing reassembles");
    }
}

#[test]
fn asm_hex_pipes_into_disasm_stdin() {
    let hex = ok(run(&["asm", "-"], LABELLED.as_bytes()));
    assert_eq!(ok(run(&["disasm", "-"], hex.as_bytes())), LABELLED_LLVM);
    let raw = run(&["asm", "--format", "raw", "-"], LABELLED.as_bytes());
    assert!(raw.status.success());
    assert_eq!(
        ok(run(&["disasm", "--input", "raw", "-"], &raw.stdout)),
        LABELLED_LLVM
    );
}

#[test]
fn disasm_hex_file_with_comments_slots_and_bytes() {
    let d = Dir::new();
    d.file("p.hex", format!("# a program\n{MOV_R0_0}  # mov\n18 01 00 00 88 77 66 55 00 00 00 00\n44 33 22 11\n\n{EXIT}"));
    let out = ok(d.run(&["disasm", "--slots", "--bytes", "p.hex"], b""));
    assert_eq!(
        out,
        "    0: b7 00 00 00 00 00 00 00  r0 = 0x0\n\
         \x20   1: 18 01 00 00 88 77 66 55  00 00 00 00 44 33 22 11  r1 = 0x1122334455667788 ll\n\
         \x20   3: 95 00 00 00 00 00 00 00  exit\n"
    );
    let out = ok(d.run(&["disasm", "--slots", "--syntax", "mnemonic", "p.hex"], b""));
    assert_eq!(
        out,
        "    0: mov r0, 0\n    1: lddw r1, 0x1122334455667788\n    3: exit\n"
    );
}

#[test]
fn syntax_error_shows_line_column_and_caret() {
    let d = Dir::new();
    d.file("bad.s", "mov r0, 0\nmov r1, ,\nexit\n");
    let err = fails(d.run(&["asm", "bad.s"], b""));
    assert!(err.contains("bad.s:2:9:"), "{err}");
    assert!(err.contains("  | mov r1, ,\n  |         ^"), "{err}");
}

#[test]
fn syntax_error_on_stdin_names_stdin() {
    let err = fails(run(&["asm", "-"], b"exit\nfrobnicate r1\n"));
    assert!(err.contains("<stdin>:2:1:"), "{err}");
    assert!(err.contains("\n  | ^"), "{err}");
}

#[test]
fn dialect_restriction_is_an_error() {
    let err = fails(run(&["asm", "--syntax", "mnemonic", "-"], b"r0 = 0\n"));
    assert!(err.contains("<stdin>:1:"), "{err}");
    assert!(err.contains("mnemonic dialect was requested"), "{err}");
    let err = fails(run(&["asm", "--syntax", "llvm", "-"], b"mov r0, 0\n"));
    assert!(err.contains("LLVM dialect was requested"), "{err}");
}

#[test]
fn undefined_label_is_named() {
    let d = Dir::new();
    d.file("p.s", "mov r0, 0\n  ja nowhere\nexit\n");
    let err = fails(d.run(&["asm", "p.s"], b""));
    assert!(err.contains("undefined label `nowhere`"), "{err}");
    assert!(err.contains("p.s:2:3:"), "{err}");
    assert!(err.contains("  |   ja nowhere\n  |   ^"), "{err}");
}

#[test]
fn map_by_name_cannot_be_encoded() {
    let d = Dir::new();
    let err = fails(d.run(
        &["asm", "-o", "out.hex", "-"],
        b"lddw r1, map[counts]\nexit\n",
    ));
    assert!(err.contains("<stdin>:1:1:"), "{err}");
    assert!(
        err.contains("map `counts` is not bound to a file descriptor"),
        "{err}"
    );
    assert!(
        !d.path().join("out.hex").exists(),
        "no output file on failure"
    );
}

#[test]
fn disasm_truncated_input() {
    let d = Dir::new();
    d.file("short.bin", [0xb7u8, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0]);
    let err = fails(d.run(&["disasm", "short.bin"], b""));
    assert!(err.contains("short.bin"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(
        err.contains("12 bytes is not a whole number of 8-byte instruction slots"),
        "{err}"
    );
}

#[test]
fn disasm_invalid_opcode_names_the_slot() {
    let d = Dir::new();
    d.file(
        "bad.hex",
        format!("{MOV_R0_0}ff 00 00 00 00 00 00 00\n{EXIT}"),
    );
    let err = fails(d.run(&["disasm", "bad.hex"], b""));
    assert!(err.contains("bad.hex: slot 1 "), "{err}");
    assert!(err.contains("0xff"), "{err}");
}

#[test]
fn disasm_lddw_missing_second_slot_names_the_slot() {
    let err = fails(run(
        &["disasm", "-"],
        format!("{MOV_R0_0}18 01 00 00 88 77 66 55\n").as_bytes(),
    ));
    assert!(err.contains("slot 1 "), "{err}");
    assert!(err.contains("second slot"), "{err}");
}

#[test]
fn disasm_bad_hex_has_position() {
    let err = fails(run(&["disasm", "-"], b"b7 00 00 00 00 00 00 00\n95 0z\n"));
    assert!(err.contains("<stdin>:2:5:"), "{err}");
    let err = fails(run(&["disasm", "-"], b"0xb7\n"));
    assert!(err.contains("`0x` prefixes are not accepted"), "{err}");
    let err = fails(run(&["disasm", "-"], b"b7 0\n"));
    assert!(err.contains("odd number of hex digits"), "{err}");
}

#[test]
fn disasm_binary_stdin_needs_input_raw() {
    let err = fails(run(&["disasm", "-"], &[0xb7, 0, 0, 0, 0, 0, 0xff, 0xfe]));
    assert!(err.contains("--input raw"), "{err}");
}

#[test]
fn asm_of_binary_input_says_so() {
    let d = Dir::new();
    d.file("p.bin", [0x95u8, 0, 0, 0, 0xff, 0xfe, 0, 0]);
    let err = fails(d.run(&["asm", "p.bin"], b""));
    assert!(err.contains("p.bin: not UTF-8 text"), "{err}");
}

#[test]
fn missing_file_is_an_error() {
    let d = Dir::new();
    let err = fails(d.run(&["asm", "nope.s"], b""));
    assert!(err.contains("cannot read nope.s"), "{err}");
    let err = fails(d.run(&["disasm", "nope.bin"], b""));
    assert!(err.contains("cannot read nope.bin"), "{err}");
}

#[test]
fn empty_program_is_empty_output() {
    assert_eq!(ok(run(&["asm", "-"], b"# nothing\n\n")), "");
    assert_eq!(ok(run(&["disasm", "-"], b"")), "");
}

#[test]
fn no_subcommand_starts_the_repl() {
    // Stdin is not a terminal: the REPL runs it as a script, echoing each line.
    let o = run(&[], b"mov r0, 0\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("> mov r0, 0\n"), "{out}");
    assert!(out.contains("b7 00 00 00 00 00 00 00  r0 = 0x0"), "{out}");
    let help = ok(run(&["--help"], b""));
    assert!(help.contains("starts the REPL") && help.contains("disasm") && help.contains("--script"), "{help}");
}

#[test]
fn usage_errors_exit_2() {
    let o = run(&["asm", "--syntax", "intel", "-"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));
    let o = run(&["disasm"], b"");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn help_documents_the_default_input_format() {
    let out = ok(run(&["disasm", "--help"], b""));
    assert!(
        out.contains("hex for stdin and *.hex / *.txt files, raw otherwise"),
        "{out}"
    );
    let out = ok(run(&["asm", "--help"], b""));
    assert!(out.contains("--format"), "{out}");
}
