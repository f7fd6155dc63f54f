//! End-to-end tests of `bpfkit features`: the built binary probes the running kernel and prints
//! one line per feature. Without bpf(2) access (not root) the probe sections are replaced by one
//! line saying so; the tests then skip, unless `BPFKIT_REQUIRE_KERNEL=1` makes that a failure.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().expect("spawn bpfkit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "bpfkit panicked: {stderr}");
    out
}

/// stdout of a successful `bpfkit features ARGS`, or `None` when bpf(2) is not usable here.
fn features(args: &[&str]) -> Option<String> {
    let mut all = vec!["features"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(
        out.status.success(),
        "bpfkit features failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    if stdout
        .lines()
        .any(|l| l.starts_with("  bpf(2)") && l.contains("not usable"))
    {
        support::skip(&format!("bpfkit features: bpf(2) not usable by this process; run as root:\n{stdout}"));
        return None;
    }
    Some(stdout)
}

/// The line of section `section` (a heading prefix) whose first word is `name`.
fn line<'a>(stdout: &'a str, section: &str, name: &str) -> &'a str {
    let start = stdout
        .find(&format!("\n{section}"))
        .unwrap_or_else(|| panic!("no section {section}:\n{stdout}"));
    stdout[start + 1..]
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in {section}:\n{stdout}"))
}

/// `yes`/`no`/`?` and the `since` version of a verdict line.
fn verdict(line: &str) -> (&str, &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.get(2), Some(&"since"), "verdict line layout: {line}");
    (words[1], words[3])
}

#[test]
fn prints_system_program_map_and_attach_sections() {
    let Some(stdout) = features(&[]) else { return };
    for heading in ["system", "\nprogram types", "\nmap types", "\nattach types"] {
        assert!(stdout.contains(heading), "missing {heading:?}:\n{stdout}");
    }
    assert!(
        !stdout.contains("\nhelpers for"),
        "helpers only with --helpers"
    );
    assert_eq!(
        verdict(line(&stdout, "program types", "xdp")),
        ("yes", "4.8")
    );
    assert_eq!(
        verdict(line(&stdout, "program types", "socket_filter")),
        ("yes", "3.19")
    );
    // The kernel decides, not its version (one build of 6.18 refuses arenas): bpfkit's verdict
    // must be libbpf 1.7's, and the table's date is only printed beside it.
    let (arena, since) = verdict(line(&stdout, "map types", "arena"));
    assert_eq!(since, "6.9");
    match support::witness::libbpf_map_type(libbpf_sys::BPF_MAP_TYPE_ARENA) {
        support::Witness::Confirms(w) => assert_eq!(arena, "no", "{w}"),
        support::Witness::Contradicts(w) => assert_eq!(arena, "yes", "{w}"),
        support::Witness::Absent(w) => support::skip(&format!("arena verdict: no independent answer ({w})")),
    }
    assert_eq!(verdict(line(&stdout, "map types", "hash")), ("yes", "3.19"));
    let ingress = line(&stdout, "attach types", "cgroup_inet_ingress");
    assert_eq!(verdict(ingress), ("yes", "4.10"));
    assert!(ingress.contains("load: loaded"), "says how: {ingress}");
    for cap in ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(cap)),
            "missing {cap}:\n{stdout}"
        );
    }
}

#[test]
fn helpers_for_one_program_type() {
    let Some(stdout) = features(&["--prog-type", "xdp"]) else {
        return;
    };
    assert!(stdout.contains("\nhelpers for xdp "), "{stdout}");
    assert!(
        !stdout.contains("\nhelpers for kprobe"),
        "only the type asked for"
    );
    let section = "helpers for xdp";
    assert_eq!(
        verdict(line(&stdout, section, "bpf_xdp_adjust_head")),
        ("yes", "4.10")
    );
    let sys_bpf = line(&stdout, section, "bpf_sys_bpf");
    assert_eq!(verdict(sys_bpf), ("no", "5.14"));
    assert!(sys_bpf.contains("cannot use helper"), "says why: {sys_bpf}");
    // Loading bpf_trace_printk writes to the kernel log: only probed with --full.
    assert_eq!(verdict(line(&stdout, section, "bpf_trace_printk")).0, "?");
}

#[test]
fn unknown_program_type_is_a_usage_error() {
    let out = run(&["features", "--prog-type", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nosuch") && stderr.contains("xdp"),
        "names the type and the known ones: {stderr}"
    );
}
