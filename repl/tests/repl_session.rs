//! The REPL end to end: a script session compared with its expected transcript, the same
//! flow typed into a real pseudo-terminal (with tab completion of a helper name), and Ctrl-C
//! during `:watch` leaving nothing attached. Run as root (CI); otherwise each test skips
//! with its reason.
//!
//! `BPFKIT_BLESS=1` rewrites the expected transcript from the current output.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bpfkit::attach::Link;
use rexpect::reader::Options;
use rexpect::session::{spawn_with_options, PtySession};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Run the binary as a script on `input`; (exit code, stdout, stderr).
fn script(input: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bpfkit");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write script");
    let out = child.wait_with_output().expect("bpfkit runs");
    (
        out.status.code(),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn script_session_matches_transcript() {
    if !support::kernel_or_skip("script_session_matches_transcript") {
        return;
    }
    let input = std::fs::read_to_string(fixture("repl_session.bpf")).expect("script fixture");
    let (code, stdout, stderr) = script(&input);
    assert!(!stderr.contains("panicked"), "{stderr}");
    compare_transcript(&stdout, "repl_session.out", true);
    // The deliberate mistakes make the session fail.
    assert_eq!(code, Some(1), "{stderr}");
}

/// Compare `stdout` with fixture `name` line by line (`bless`: BPFKIT_BLESS=1 rewrites it).
fn compare_transcript(stdout: &str, name: &str, bless: bool) {
    let whole = stdout;
    let expected_path = fixture(name);
    if bless && std::env::var("BPFKIT_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&expected_path, stdout).expect("bless transcript");
    }
    let expected = std::fs::read_to_string(&expected_path).expect("expected transcript (BPFKIT_BLESS=1 writes it)");
    let (stdout, expected) = (without_verifier_wording(stdout), without_verifier_wording(&expected));
    if stdout != expected {
        for (i, (got, want)) in stdout.lines().zip(expected.lines()).enumerate() {
            assert_eq!(got, want, "transcript line {} differs (verifier wording left out); whole output:\n{whole}", i + 1);
        }
        panic!("transcript length differs: got {} lines, want {}:\n{stdout}", stdout.lines().count(), expected.lines().count());
    }
}

/// The transcript with the verifier's own words taken out, so that it holds on every kernel
/// build (their wording and state annotations differ): the decisive line quoted in an error
/// becomes `…` (it must not be empty), and of a `:log` block only bpfkit's part stays — the
/// line-info comments quoting the user's statements, and each instruction line up to the
/// verifier's state annotation.
fn without_verifier_wording(text: &str) -> String {
    let mut out = String::new();
    let mut in_log = false;
    for line in text.lines() {
        if line.starts_with("> ") {
            in_log = line == "> :log";
        } else if in_log {
            let insn = line.split_once(": (").is_some_and(|(n, _)| n.parse::<u32>().is_ok());
            if line.starts_with("; ") {
                out.push_str(line);
            } else if insn {
                out.push_str(line.split("  ;").next().unwrap_or(line).trim_end());
            } else {
                continue;
            }
            out.push('\n');
            continue;
        }
        let mut line = line.to_string();
        for (start, end) in [("rejected by the verifier: ", " at insn "), ("^ the verifier: ", "")] {
            if let Some(i) = line.find(start) {
                let from = i + start.len();
                let to = if end.is_empty() { line.len() } else { line[from..].find(end).map_or(line.len(), |j| from + j) };
                assert!(to > from, "the verifier's words are missing: {line}");
                line.replace_range(from..to, "…");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `bpfkit --script FILE` runs the same session from the file (stdin left empty): the same
/// transcript, the same exit status.
#[test]
fn script_file_matches_transcript() {
    if !support::kernel_or_skip("script_file_matches_transcript") {
        return;
    }
    let out = Command::new(BIN)
        .arg("--script")
        .arg(fixture("repl_session.bpf"))
        .stdin(Stdio::null())
        .output()
        .expect("run bpfkit --script");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    compare_transcript(&stdout, "repl_session.out", false);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // A script that cannot be read is a usage error, named.
    let out = Command::new(BIN).args(["--script", "/nonexistent/x.bpf"]).output().expect("run bpfkit");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/x.bpf"));
}

#[test]
fn script_mode_without_kernel_reports_errors_and_goes_on() {
    let (code, stdout, _) = script("mov r0, 1\n:nonsense\nexit\n:help run\n");
    assert_eq!(code, Some(1));
    assert!(stdout.starts_with("> mov r0, 1\nprogram prog1: type its instructions\n   0: b7 00 00 00 01 00 00 00  r0 = 0x1\n"), "{stdout}");
    assert!(stdout.contains("> :nonsense\nerror: unknown command `:nonsense`"), "{stdout}");
    assert!(stdout.contains("   1: 95 00 00 00 00 00 00 00  exit\n"), "{stdout}");
    assert!(stdout.contains("example: :run p packet udp"), "{stdout}");
}

fn pty(home: &std::path::Path) -> PtySession {
    let mut cmd = Command::new(BIN);
    cmd.env("HOME", home).env("TERM", "xterm");
    let opts = Options::new().timeout_ms(Some(20_000)).strip_ansi_escape_codes(true);
    spawn_with_options(cmd, opts).expect("spawn bpfkit in a pty")
}

fn exp(p: &mut PtySession, s: &str) {
    if let Err(e) = p.exp_string(s) {
        panic!("expected {s:?}: {e}");
    }
}

/// Wait for the next prompt (`bpf> `, `bpf:PROG> `, `...> ` in a block); the output before it.
///
/// Typing ahead of the prompt would lose input: rustyline asks the terminal for the cursor
/// position when it starts a line, and reads what was typed before the answer.
fn prompt(p: &mut PtySession) -> String {
    match p.exp_regex(r"(bpf(:[A-Za-z0-9_.]+)?|\.\.\.)> ") {
        Ok((before, _)) => before,
        Err(e) => panic!("expected a prompt: {e}"),
    }
}

/// Type `line`, wait for the prompt after it, and check the output holds `want`.
fn line(p: &mut PtySession, line: &str, want: &str) -> String {
    p.send_line(line).expect("type into the pty");
    let out = prompt(p);
    assert!(out.contains(want), "after {line:?} expected {want:?} in:\n{out}");
    out
}

#[test]
fn interactive_session_in_a_pty() {
    if !support::kernel_or_skip("interactive_session_in_a_pty") {
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    let mut p = pty(home.path());
    prompt(&mut p);
    line(&mut p, ":prog ret", "program ret");
    line(&mut p, "r1 = map[vals] ll", "18 11 00 00 00 00 00 00  r1 = map[vals] ll");
    line(&mut p, "*(u32 *)(r10 - 4) = 0", "*(u32 *)(r10 - 0x4) = 0x0");
    line(&mut p, "r2 = r10", "r2 = r10");
    line(&mut p, "r2 += -4", "r2 += -0x4");
    // Tab completion of a helper name.
    p.send("call bpf_map_lo").expect("type");
    p.send("\t").expect("tab");
    p.flush().expect("flush");
    exp(&mut p, "bpf_map_lookup_elem");
    line(&mut p, "", "85 00 00 00 01 00 00 00  call 0x1");
    for l in ["if r0 == 0 goto miss", "r0 = *(u64 *)(r0 + 0)", "exit", "miss:", "r0 = 0", "exit"] {
        line(&mut p, l, "");
    }
    line(&mut p, "", "miss:");
    line(&mut p, ":map create vals array 4 8 1", "map vals: array");
    line(&mut p, ":load ret xdp", "loaded ret as xdp");
    line(&mut p, ":run ret", "retval=0");
    line(&mut p, ":map set vals u32:0 u64:9", "updated");
    line(&mut p, ":run ret packet udp 10.0.0.1:1234 10.0.0.2:53", "retval=9");
    // A tracepoint counting every getpid (this session's trigger among them).
    for l in [":map create hits array 4 8 1", ":prog count", "r1 = map[hits] ll", "*(u32 *)(r10 - 4) = 0", "r2 = r10", "r2 += -4", "call bpf_map_lookup_elem", "if r0 == 0 goto out", "r1 = 1", "lock *(u64 *)(r0 + 0) += r1", "out:", "r0 = 0", "exit"] {
        line(&mut p, l, "");
    }
    line(&mut p, ":end", "lock *(u64 *)(r0 + 0x0) += r1");
    line(&mut p, ":load count tracepoint", "loaded count as tracepoint");
    line(&mut p, ":attach count tracepoint syscalls/sys_enter_getpid", "link 1: count");
    line(&mut p, ":trigger getpid 20", "getpid called 20 times");
    let out = line(&mut p, ":count hits 0", "hits[00 00 00 00] = ");
    let n: u64 = out
        .split("hits[00 00 00 00] = ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(n >= 20, "counted {n} getpid calls, want at least 20");
    // Tab completion of a session program's name and of a kernel BTF type's.
    p.send(":info co").expect("type");
    p.send("\t").expect("tab");
    p.flush().expect("flush");
    exp(&mut p, ":info count");
    line(&mut p, "", "count: id ");
    p.send(":btf task_stru").expect("type");
    p.send("\t").expect("tab");
    p.flush().expect("flush");
    exp(&mut p, ":btf task_struct");
    line(&mut p, "", "struct task_struct {");
    // A verifier rejection points at the typed line.
    line(&mut p, ":prog bad", "program bad");
    line(&mut p, "r1 = 1", "r1 = 0x1");
    line(&mut p, "exit", "exit");
    let out = line(&mut p, ":load bad xdp", "R0 !read_ok");
    assert!(out.contains("| exit") && out.contains("^ the verifier: R0 !read_ok"), "{out}");
    p.send_line(":quit").expect("type");
    exp(&mut p, "detached 1 link");
    p.exp_eof().expect("the session ends");
    assert!(home.path().join(".bpfkit_history").exists(), "history is saved");
}


/// The links bpftool lists for the programs `progs`, by link id, sorted.
fn links_of(progs: &[u32]) -> Vec<u32> {
    let mut ids: Vec<u32> = support::bpftool::links().into_iter().filter(|(_, p)| progs.contains(p)).map(|(l, _)| l).collect();
    ids.sort();
    ids
}

/// The kernel id N an interactive session shows as `(MARKER N)`: `(link id N)` after
/// `:attach`, `(id N)` in `:progs`.
fn shown_id(out: &str, marker: &str) -> u32 {
    let open = format!("({marker} ");
    out.split(&open).nth(1).and_then(|r| r.split(')').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no `{open}N)` in {out:?}"))
}

fn link_id(out: &str) -> u32 {
    shown_id(out, "link id")
}

/// Ctrl-C stops a `:watch` and nothing else: right after it, bpftool lists exactly the link
/// the user attached for the session's programs; `:detach` and `:quit` leave none.
#[test]
fn ctrl_c_during_watch_leaves_nothing_attached() {
    if !support::kernel_or_skip("ctrl_c_during_watch_leaves_nothing_attached") {
        return;
    }
    if !support::bpftool::bpftool_or_skip("ctrl_c_during_watch_leaves_nothing_attached") {
        return;
    }
    let before = Link::all_ids().expect("link ids");
    let home = tempfile::tempdir().expect("tempdir");
    let mut p = pty(home.path());
    prompt(&mut p);
    for l in [
        ":map create events ringbuf 0 0 4096",
        ":prog emit",
        "*(u64 *)(r10 - 8) = 42",
        "r1 = map[events] ll",
        "r2 = r10",
        "r2 += -8",
        "r3 = 8",
        "r4 = 0",
        "call bpf_ringbuf_output",
        "r0 = 0",
        "exit",
    ] {
        line(&mut p, l, "");
    }
    line(&mut p, ":load emit tracepoint", "loaded emit as tracepoint");
    let progs = line(&mut p, ":progs", "emit: 9 instructions, loaded as tracepoint (id ");
    let prog = shown_id(&progs, "id");
    assert_eq!(links_of(&[prog]), Vec::<u32>::new(), "loading attaches nothing");
    let first = link_id(&line(&mut p, ":attach emit tracepoint syscalls/sys_enter_getpid", "link 1: emit"));
    assert_eq!(links_of(&[prog]), [first], "bpftool lists the one link the user made");
    line(&mut p, ":trigger getpid 3", "getpid called 3 times");
    p.send_line(":watch events").expect("type");
    exp(&mut p, "record 1: 2a 00 00 00 00 00 00 00");
    p.send_control('c').expect("Ctrl-C");
    exp(&mut p, "(interrupted)");
    prompt(&mut p);
    // Right after Ctrl-C: the watch added nothing and took nothing away.
    assert_eq!(links_of(&[prog]), [first], "after Ctrl-C bpftool lists exactly the user's link");
    // The session goes on, with its link still attached, until it is detached.
    line(&mut p, ":links", "1: emit");
    line(&mut p, ":detach 1", "detached link 1");
    assert_eq!(links_of(&[prog]), Vec::<u32>::new(), "`:detach` left nothing");
    let second = link_id(&line(&mut p, ":attach emit tracepoint syscalls/sys_enter_getpid", "link 2: emit"));
    assert_eq!(links_of(&[prog]), [second]);
    p.send_line(":watch events 5").expect("type");
    exp(&mut p, "watching events");
    p.send_control('c').expect("Ctrl-C");
    exp(&mut p, "(interrupted)");
    prompt(&mut p);
    assert_eq!(links_of(&[prog]), [second], "a second interrupted watch changes nothing either");
    p.send_line(":quit").expect("send");
    exp(&mut p, "detached 1 link");
    p.exp_eof().expect("the session ends");
    // After `:quit`: no link of the session, by bpftool and by the library; none of the
    // links made meanwhile are the session's.
    assert_eq!(links_of(&[prog]), Vec::<u32>::new(), "`:quit` left nothing attached");
    let ours = [first, second];
    let left: Vec<u32> = Link::all_ids().expect("link ids").into_iter().filter(|id| !before.contains(id) && ours.contains(id)).collect();
    assert!(left.is_empty(), "links left attached after the session: {left:?}");
}
