//! The REPL session chapter 1 of the tutorial shows (§1.3) is real: every `text` block of that
//! section that starts with `> ` is a piece of the REPL's own expected transcript
//! (`fixtures/repl_session.out`, which `repl_session.rs` replays), and typing its `> ` lines
//! into the REPL prints exactly that block again. The chapter cannot drift from the REPL.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The REPL sessions shown in section 1.3 of chapter 1: its `text` blocks whose first line is
/// an echoed input (`> …`).
fn chapter_sessions() -> Vec<String> {
    let chapter = std::fs::read_to_string(repo().join("tutorial/ch01-introduction.md")).expect("chapter 1");
    let start = chapter.find("\n## 1.3 ").expect("section 1.3");
    let rest = &chapter[start + 1..];
    let section = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3)];
    let mut sessions = Vec::new();
    let mut block: Option<String> = None;
    for line in section.lines() {
        match (&mut block, line) {
            (None, "```text") => block = Some(String::new()),
            (Some(b), "```") => {
                if b.starts_with("> ") {
                    sessions.push(std::mem::take(b));
                }
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    sessions
}

/// What was typed: each echoed `> LINE` (a bare `>` is an empty line).
fn typed(session: &str) -> String {
    session
        .lines()
        .filter_map(|l| if l == ">" { Some("") } else { l.strip_prefix("> ") })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn chapter_session_is_a_piece_of_the_transcript() {
    let sessions = chapter_sessions();
    assert!(!sessions.is_empty(), "section 1.3 of chapter 1 shows no REPL session");
    let transcript = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repl_session.out")).expect("transcript");
    for session in &sessions {
        // Whole lines: the piece starts at a line's start.
        assert!(
            transcript.starts_with(session.as_str()) || transcript.contains(&format!("\n{session}")),
            "chapter 1's session is not a piece of repl/tests/fixtures/repl_session.out:\n{session}"
        );
    }
}

#[test]
fn chapter_session_replays_exactly() {
    if !support::kernel_or_skip("chapter_session_replays_exactly") {
        return;
    }
    for session in chapter_sessions() {
        let mut child = Command::new(BIN).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run bpfkit");
        child.stdin.take().expect("stdin").write_all(typed(&session).as_bytes()).expect("write script");
        let out = child.wait_with_output().expect("bpfkit runs");
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        for (i, (got, want)) in stdout.lines().zip(session.lines()).enumerate() {
            assert_eq!(got, want, "line {} of chapter 1's session differs; the REPL printed:\n{stdout}", i + 1);
        }
        assert_eq!(stdout, session, "chapter 1's session and the REPL's output differ in length");
    }
}
