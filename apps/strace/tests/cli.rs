//! bpfkit-strace's options against real processes: --json, -T/-tt, -p with Ctrl-C (the process
//! goes on, nothing stays attached), lost records reported (never silent), and errors a person
//! can act on.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-strace");

fn python(code: &str) -> Command {
    let mut c = Command::new("python3");
    c.args(["-c", code]);
    c
}

#[test]
fn json_lines_parse_and_name_the_call() {
    if !support::kernel_or_skip("bpfkit-strace --json") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("calls.jsonl");
    let status = Command::new(OURS).args(["--json", "-e", "trace=openat,close", "-o"]).arg(&out).args(["--", "/bin/cat", "/etc/hostname"]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let values: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let open = values.iter().find(|v| v["syscall"] == "openat" && v["args"].as_str().is_some_and(|a| a.contains("\"/etc/hostname\""))).expect("the open of /etc/hostname");
    let fd = open["return"].as_i64().unwrap();
    assert!(fd >= 3, "{open}");
    assert!(open["duration_ns"].as_u64().is_some() && open["error"].is_null());
    assert!(values.iter().any(|v| v["syscall"] == "close" && v["raw_args"][0] == fd), "the fd is closed");
    assert!(values.iter().any(|v| v["event"] == "exit" && v["status"] == 0));
}

#[test]
fn durations_and_microsecond_timestamps() {
    if !support::kernel_or_skip("bpfkit-strace -T -tt") {
        return;
    }
    let out = Command::new(OURS).args(["-T", "-tt", "-e", "trace=nanosleep,clock_nanosleep", "--", "/bin/sleep", "0.2"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.contains("nanosleep(")).unwrap_or_else(|| panic!("{err}"));
    // 12:34:56.123456 clock_nanosleep(…) = 0 <0.200123>
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(time.len() == 15 && time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.', "{line}");
    let took: f64 = rest.rsplit_once(" <").unwrap().1.trim_end_matches('>').parse().unwrap();
    assert!((0.19..1.0).contains(&took), "slept 0.2 s: {line}");
}

#[test]
fn attach_to_a_running_process_and_detach_on_ctrl_c() {
    if !support::kernel_or_skip("bpfkit-strace -p, Ctrl-C") {
        return;
    }
    let mut target = python("import os, time\nwhile True:\n    os.getppid()\n    time.sleep(0.02)").spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("trace.txt");
    let mut tracer = Command::new(OURS).args(["-p", &target.id().to_string(), "-e", "trace=getppid", "-o"]).arg(&out).stderr(Stdio::piped()).spawn().unwrap();
    // As strace does, the tracer says when the process is attached; from then on ~25 calls
    // happen in the next half second.
    let mut stderr = std::io::BufReader::new(tracer.stderr.take().unwrap());
    let mut attached = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut attached).unwrap();
    assert_eq!(attached.trim(), format!("bpfkit-strace: Process {} attached", target.id()));
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    // SAFETY-free: kill(1) with SIGINT, as Ctrl-C would.
    assert!(Command::new("kill").args(["-INT", &tracer.id().to_string()]).status().unwrap().success());
    let status = tracer.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(started.elapsed() < Duration::from_secs(2), "detaches promptly");
    let text = std::fs::read_to_string(&out).unwrap();
    let lines = text.lines().filter(|l| l.starts_with("getppid()")).count();
    assert!(lines >= 10, "{text}");
    // The process goes on, untraced. (The tracer has exited, so its links and programs are
    // gone with its descriptors: nothing was pinned.)
    assert!(target.try_wait().unwrap().is_none(), "still running");
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn lost_records_are_counted_and_reported() {
    if !support::kernel_or_skip("bpfkit-strace lost records") {
        return;
    }
    // The workload's getppid calls (python's own start-up makes a few too), counted with the
    // default ring; then a ring of one page, which holds three records, overflows.
    let burst = ["-e", "trace=getppid", "--", "python3", "-c", "import os\nfor _ in range(3000): os.getppid()"];
    let full = Command::new(OURS).args(burst).output().unwrap();
    let total = String::from_utf8_lossy(&full.stderr).lines().filter(|l| l.starts_with("getppid()")).count();
    assert!(total >= 3000, "{total}");
    let out = Command::new(OURS).args(["--ring-size", "4096"]).args(burst).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = err.lines().filter(|l| l.starts_with("getppid()")).count();
    let lost: usize = err
        .lines()
        .find_map(|l| l.strip_prefix("bpfkit-strace: ")?.split_once(" call")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no lost report in:\n{}", err.lines().rev().take(3).collect::<Vec<_>>().join("\n")));
    assert!(lost > 0);
    assert_eq!(shown + lost, total, "every call is shown or counted as lost");
}

#[test]
fn errors_say_what_to_do() {
    let out = Command::new(OURS).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to trace: give a command after `--`, or -p PID"));
    let out = Command::new(OURS).args(["-e", "trace=bogus", "--", "/bin/true"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown system call `bogus`"));
    let out = Command::new(OURS).args(["--ring-size", "1000", "--", "/bin/true"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("a power of two, at least 4096"));
    if support::kernel_or_skip("bpfkit-strace: a command that does not exist") {
        let out = Command::new(OURS).args(["--", "/nonexistent/bpfkit"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/bpfkit: No such file or directory"), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_fatal_signal_is_shown_as_sent_as_strace_shows_it() {
    // The kernel delivers a fatal signal as SIGKILL to every thread (without siginfo); strace,
    // whose tracee stops first, shows the signal that was sent, once. So must we — and SIGKILL
    // itself not at all.
    if !support::kernel_or_skip("bpfkit-strace, fatal signals") {
        return;
    }
    let normalize = |text: &str, pid_of: &dyn Fn(&str) -> Option<String>| -> Vec<String> {
        let pid = text.lines().find_map(|l| pid_of(l)).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with("---") || l.starts_with("+++") || l.starts_with("kill("))
            .map(|l| l.replace(&pid, "PID"))
            .collect()
    };
    let pid_in_kill = |l: &str| l.strip_prefix("kill(").and_then(|r| r.split(',').next()).map(str::to_string);
    for script in ["kill -USR1 $$", "kill -TERM $$", "kill -KILL $$"] {
        let ours = Command::new(OURS).args(["-f", "-e", "trace=kill", "--", "sh", "-c", script]).output().unwrap();
        let theirs = Command::new("strace").args(["-f", "-e", "trace=kill", "sh", "-c", script]).output().unwrap();
        let (ours, theirs) = (String::from_utf8_lossy(&ours.stderr), String::from_utf8_lossy(&theirs.stderr));
        let (a, b) = (normalize(&ours, &pid_in_kill), normalize(&theirs, &pid_in_kill));
        // strace writes `= ?` for a kill of oneself with SIGKILL (the call never returns to it);
        // the kernel's sys_exit has already run with 0 by then: compare the signal lines.
        let signals = |v: &[String]| v.iter().filter(|l| !l.starts_with("kill(")).cloned().collect::<Vec<_>>();
        assert_eq!(signals(&a), signals(&b), "{script}\nours:\n{ours}\nstrace:\n{theirs}");
        assert_eq!(a.iter().filter(|l| l.starts_with("---")).count(), usize::from(!script.contains("KILL")), "{script}: {ours}");
    }
}
