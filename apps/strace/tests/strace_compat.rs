//! bpfkit-strace against strace itself, on a program of known system calls (tests/fixtures/
//! known.c: opens of an existing and a missing file, read, write, close, a fork whose child
//! execs /bin/true, handled signals, EBADF): the traces are equal line for line, per process,
//! after normalising what differs between any two runs (pids, addresses) and strace's way of
//! splitting a call that another process's output interrupted. The `-c` tables agree on calls
//! and errors.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-strace");
const CALLS: &str = "trace=openat,read,write,close,execve,kill,wait4,clone,exit_group";

/// The fixture, compiled into `dir` (gcc, as Debian has it).
fn known(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/known.c");
    let exe = dir.join("known");
    let out = Command::new("gcc").args(["-O1", "-o"]).arg(&exe).arg(&src).output().expect("gcc runs");
    assert!(out.status.success(), "gcc: {}", String::from_utf8_lossy(&out.stderr));
    exe
}

fn have_strace() -> bool {
    Command::new("strace").arg("-V").output().is_ok_and(|o| o.status.success())
}

/// Lines by process, in order: pids renamed P1, P2… by first appearance, hex addresses as
/// 0xADDR, the padding before ` = ` collapsed, and strace's `<unfinished ...>` joined with
/// its `<... NAME resumed>`.
fn normalize(trace: &str) -> BTreeMap<String, Vec<String>> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut unfinished: BTreeMap<String, String> = BTreeMap::new();
    let mut by_pid: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        let n = names.len() + 1;
        let p = names.entry(pid.to_string()).or_insert_with(|| format!("P{n}")).clone();
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            unfinished.insert(p.clone(), head.trim_end().to_string());
            continue;
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            let tail = tail.split_once(" resumed>").map_or(tail, |(_, t)| t);
            // `wait4(5,  <unfinished ...>` + `[…], 0, NULL) = 5`: a space between arguments;
            // `execve(…, 0x… /* 1 var */ <unfinished ...>` + `) = 0`: none before the `)`.
            let (head, tail) = (unfinished.remove(&p).unwrap_or_default(), tail.trim_start());
            if tail.starts_with(')') { format!("{head}{tail}") } else { format!("{head} {tail}") }
        } else {
            rest.to_string()
        };
        by_pid.entry(p).or_default().push(full);
    }
    // Pids inside lines (clone's result, wait4, kill, si_pid) follow the same renaming.
    let rename = |s: &str| {
        let mut out = s.to_string();
        for (pid, p) in &names {
            out = out.replace(&format!("({pid},"), &format!("({p},")).replace(&format!("= {pid}"), &format!("= {p}")).replace(&format!("si_pid={pid}"), &format!("si_pid={p}"));
        }
        let mut norm = String::new();
        let mut chars = out.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '0' && chars.peek() == Some(&'x') {
                chars.next();
                while chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    chars.next();
                }
                norm.push_str("0xADDR");
            } else {
                norm.push(c);
            }
        }
        // The alignment padding before the result, and si_utime/si_stime (CPU ticks).
        let norm = match norm.rsplit_once(" = ") {
            Some((call, result)) => format!("{} = {result}", call.trim_end()),
            None => norm,
        };
        norm.split(", si_utime=").next().map(|head| if norm.contains(", si_utime=") { format!("{head}}} ---") } else { head.to_string() }).unwrap_or(norm)
    };
    by_pid.into_iter().map(|(p, lines)| (p, lines.iter().map(|l| rename(l)).collect())).collect()
}

#[test]
fn trace_equals_straces_line_for_line() {
    if !support::kernel_or_skip("bpfkit-strace vs strace") {
        return;
    }
    if !have_strace() {
        support::skip("strace is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = known(dir.path());
    let theirs = dir.path().join("strace.txt");
    let ours = dir.path().join("ours.txt");
    let run = |tool: &str, out: &Path| {
        // A plain environment (cargo's LD_LIBRARY_PATH would add the loader's path probes).
        let status = Command::new(tool).env_clear().env("PATH", "/usr/bin:/bin").args(["-f", "-e", CALLS, "-o"]).arg(out).arg(&exe).stdout(std::process::Stdio::null()).status().unwrap();
        assert!(status.success(), "{tool} exited with {status}");
        std::fs::read_to_string(out).unwrap()
    };
    let (t, o) = (run("strace", &theirs), run(OURS, &ours));
    let (tn, on) = (normalize(&t), normalize(&o));
    eprintln!("strace:\n{t}\nbpfkit-strace:\n{o}");
    assert_eq!(tn.len(), 2, "two processes: {tn:#?}");
    for (p, theirs) in &tn {
        let mine = on.get(p).cloned().unwrap_or_default();
        if let Some(i) = (0..theirs.len().max(mine.len())).find(|&i| theirs.get(i) != mine.get(i)) {
            panic!("{p}, line {}:\n  strace:        {:?}\n  bpfkit-strace: {:?}", i + 1, theirs.get(i), mine.get(i));
        }
    }
    assert_eq!(on.len(), tn.len());
    // And what the comparison covered.
    let all: Vec<&String> = on.values().flatten().collect();
    for needle in ["openat(AT_FDCWD, \"/etc/hostname\", O_RDONLY|O_CLOEXEC) = 3", "= -1 ENOENT (No such file or directory)", "execve(\"/bin/true\", [\"/bin/true\"]", "--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED", "close(-1) = -1 EBADF (Bad file descriptor)", "+++ exited with 0 +++"] {
        assert!(all.iter().any(|l| l.contains(needle)), "{needle} in {all:#?}");
    }
}

/// `-c` tables: syscall → (calls, errors).
fn summary_table(text: &str) -> BTreeMap<String, (u64, u64)> {
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (calls, errors, name) = match cols.as_slice() {
            [_, _, _, calls, errors, name] => (calls, *errors, name),
            [_, _, _, calls, name] => (calls, "0", name),
            _ => continue,
        };
        if let (Ok(c), Ok(e)) = (calls.parse::<u64>(), errors.parse::<u64>()) {
            rows.insert(name.to_string(), (c, e));
        }
    }
    rows
}

#[test]
fn summary_counts_equal_straces() {
    if !support::kernel_or_skip("bpfkit-strace -c vs strace -c") {
        return;
    }
    if !have_strace() {
        support::skip("strace is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = known(dir.path());
    let table = |tool: &str| {
        let out = dir.path().join(format!("{}.c.txt", tool.rsplit('/').next().unwrap()));
        let status = Command::new(tool).env_clear().env("PATH", "/usr/bin:/bin").args(["-c", "-f", "-o"]).arg(&out).arg(&exe).stdout(std::process::Stdio::null()).status().unwrap();
        assert!(status.success());
        std::fs::read_to_string(out).unwrap()
    };
    let (t, o) = (table("strace"), table(OURS));
    eprintln!("strace -c:\n{t}\nbpfkit-strace -c:\n{o}");
    let (tt, ot) = (summary_table(&t), summary_table(&o));
    // (Neither counts exit_group: it never finishes.)
    assert_eq!(ot, tt, "calls and errors per system call, and the totals");
    assert!(!ot.contains_key("exit_group"));
    assert!(o.starts_with("% time     seconds  usecs/call     calls    errors syscall\n"), "{o}");
}
