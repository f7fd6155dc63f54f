//! A missing capability is named, not a bare EPERM: the `bpfkit` binary run as an unprivileged
//! user (`setpriv`, from util-linux) without capabilities, with some, and with those it needs.
//! The test itself runs as root (it needs the right to drop to another user).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

/// `bpfkit run --type TYPE -` with `r0 = 2; exit` on stdin, as user nobody with the ambient
/// capabilities `caps` (e.g. `+bpf,+net_admin`; empty: none). Exit status and stderr/stdout.
fn run_as_nobody(prog_type: &str, caps: &str) -> (Option<i32>, String) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    if !caps.is_empty() {
        cmd.arg(format!("--inh-caps={caps}")).arg(format!("--ambient-caps={caps}"));
    }
    let mut child = cmd
        .args([BIN, "run", "--type", prog_type, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv runs (util-linux)");
    child.stdin.take().unwrap().write_all(b"r0 = 2\nexit\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("panicked"), "{text}");
    (out.status.code(), text)
}

#[test]
fn eperm_names_the_missing_capabilities() {
    if !support::kernel_or_skip("capabilities") {
        return;
    }
    if !nix_is_root() {
        support::skip("capabilities: dropping to user nobody needs root");
        return;
    }
    // Nothing at all: both capabilities an XDP load needs are named.
    let (code, text) = run_as_nobody("xdp", "");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("prog_load(xdp \"bpfkit_run\"): EPERM (Operation not permitted) — needs CAP_BPF and CAP_NET_ADMIN; this process has neither"),
        "{text}"
    );
    // CAP_BPF alone: the one still missing.
    let (code, text) = run_as_nobody("xdp", "+bpf");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("needs CAP_BPF and CAP_NET_ADMIN; this process lacks CAP_NET_ADMIN"), "{text}");
    // A tracing type needs CAP_PERFMON instead.
    let (_, text) = run_as_nobody("tracepoint", "+bpf,+net_admin");
    assert!(text.contains("prog_load(tracepoint \"bpfkit_run\"): EPERM") && text.contains("this process lacks CAP_PERFMON"), "{text}");
    // With CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN the program loads and runs, as it does for root.
    let (code, text) = run_as_nobody("xdp", "+bpf,+perfmon,+net_admin");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("retval=2 "), "{text}");
}

/// Whether this process is root (effective uid 0), from /proc (no unsafe).
fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|u| u.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
