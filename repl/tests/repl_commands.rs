//! REPL commands beyond the main session (tests/repl_session.rs), each as a script run
//! against the kernel: `:run` with context bytes in and out, `:info`'s run statistics,
//! `:watch` on perf event arrays with struct decoding, the attach kinds (tc, perf_event,
//! iter; kprobe and fentry/LSM refused on this kernel with the library's reason), and the
//! map commands `:maps`, `:map del|pin|open`. Run as root (CI); otherwise each test skips.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

/// Run `bpfkit` as a script on `input` (through `prefix`, e.g. `unshare -n`, when given);
/// (exit code, stdout, the process id).
fn script_via(prefix: &[&str], input: &str) -> (Option<i32>, String, u32) {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run bpfkit");
    let pid = child.id();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write script");
    let out = child.wait_with_output().expect("bpfkit runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), String::from_utf8(out.stdout).expect("UTF-8 output"), pid)
}

fn script(input: &str) -> (Option<i32>, String) {
    let (code, out, _) = script_via(&[], input);
    (code, out)
}

/// The output lines after the (first) echo of `line` up to the next echoed line.
fn after<'a>(out: &'a str, line: &str) -> Vec<&'a str> {
    after_nth(out, line, 0)
}

/// The same after the `n`th echo of `line` (from 0).
fn after_nth<'a>(out: &'a str, line: &str, n: usize) -> Vec<&'a str> {
    let echo = format!("> {line}");
    let lines: Vec<&str> = out.lines().collect();
    let at = lines.iter().enumerate().filter(|(_, l)| **l == echo).nth(n).map(|(i, _)| i);
    let Some(at) = at else { panic!("no `{echo}` (#{n}) in:\n{out}") };
    lines[at + 1..].iter().copied().take_while(|l| !l.starts_with("> ")).collect()
}

#[test]
fn run_takes_context_bytes_and_shows_the_context_out() {
    if !support::kernel_or_skip("run_takes_context_bytes_and_shows_the_context_out") {
        return;
    }
    let (code, out) = script(
        ":prog sc
r2 = *(u32 *)(r1 + 0)
r2 += 1
*(u32 *)(r1 + 0) = r2
r0 = r2
exit
:load sc syscall
:run sc --ctx 29000000
:prog cls
r2 = *(u32 *)(r1 + 8)
r0 = r2
r2 += 1
*(u32 *)(r1 + 8) = r2
exit
:load cls sched_cls
:run cls --ctx 000000000000000007000000
:run cls --ctx 0100000000000000
:run cls --ctx 123
",
    );
    // The syscall program read 41 from its context and wrote 42 back into it.
    assert_eq!(after(&out, ":run sc --ctx 29000000"), ["retval=42", "ctx_out=2a 00 00 00"], "{out}");
    // sched_cls: `mark` (offset 8) went in as 7, the program returned it and wrote 8; the
    // kernel hands back its whole `struct __sk_buff`.
    let run = after(&out, ":run cls --ctx 000000000000000007000000");
    assert_eq!(run[0], "retval=7", "{out}");
    let ctx: Vec<u8> = run[1]
        .strip_prefix("ctx_out=")
        .expect("ctx_out")
        .split(' ')
        .map(|b| u8::from_str_radix(b, 16).expect("hex"))
        .collect();
    assert_eq!(ctx.len(), 192, "sizeof(struct __sk_buff): {out}");
    assert_eq!(&ctx[8..12], &[8, 0, 0, 0], "mark as the program left it: {out}");
    // `len` is the kernel's to set: a context with it is refused, with the hint.
    let bad = after(&out, ":run cls --ctx 0100000000000000");
    assert!(bad[0].starts_with("error: prog_test_run(sched_cls \"cls\"") && bad[0].contains("EINVAL") && bad[0].contains("--ctx"), "{out}");
    assert_eq!(after(&out, ":run cls --ctx 123"), ["error: --ctx hex: odd number of hex digits: this one has no partner"], "{out}");
    assert_eq!(code, Some(1));
}

/// The session holds BPF_ENABLE_STATS, so `:info` counts every run the kernel made.
#[test]
fn info_shows_the_kernels_run_count() {
    if !support::kernel_or_skip("info_shows_the_kernels_run_count") {
        return;
    }
    let (code, out) = script(":prog p\nr0 = 2\nexit\n:load p xdp\n:info p\n:run p --repeat 7\n:run p\n:run p --repeat 2\n:info p\n");
    assert_eq!(code, Some(0), "{out}");
    let runs = |info: Vec<&str>| -> (u64, u64) {
        let line = info.iter().find(|l| l.trim_start().starts_with("runs: ")).expect("a runs line");
        let mut w = line.split_whitespace();
        let n = w.nth(1).and_then(|n| n.parse().ok()).expect("run count");
        let ns = w.nth(1).and_then(|n| n.parse().ok()).expect("run time");
        assert!(line.contains("BPF_ENABLE_STATS on"), "{line}");
        (n, ns)
    };
    let lines: Vec<&str> = out.lines().collect();
    let infos: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| **l == "> :info p").map(|(i, _)| i).collect();
    let first = runs(lines[infos[0] + 1..infos[0] + 5].to_vec());
    let second = runs(lines[infos[1] + 1..].to_vec());
    assert_eq!(first.0, 0, "{out}");
    assert_eq!(second.0, 10, "7 + 1 + 2 test runs: {out}");
    assert!(second.1 > 0, "the kernel measured run time: {out}");
    let sizes = &lines[infos[1] + 2];
    assert!(sizes.contains("xlated 16 bytes") && !sizes.contains("jited 0 bytes"), "{sizes}");
}

/// A tracepoint program sends `{pid, ktime, comm}` for this session's getpid calls through a
/// perf event array; `:watch … as {…}` decodes them. A ring buffer record read as a kernel
/// BTF type, and the refusals.
#[test]
fn watch_reads_perf_buffers_and_decodes_layouts() {
    if !support::kernel_or_skip("watch_reads_perf_buffers_and_decodes_layouts") {
        return;
    }
    let input = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/watch_perf.bpf")).expect("fixture");
    let (code, out, pid) = script_via(&[], &input);
    assert_eq!(code, Some(1), "two lines fail on purpose: {out}");
    let recs = after(&out, ":watch events 0.3 as {u32 pid; u64 ts; char comm[16]}");
    assert_eq!(recs.len(), 5, "header, 3 records, total: {out}");
    assert_eq!(recs[0], "watching events as {u32 pid; u64 ts; char comm[16]} for 0.3s (Ctrl-C stops)");
    let mut last_ts = 0u64;
    for (i, r) in recs[1..4].iter().enumerate() {
        let (head, value) = r.split_once(": ").expect("record line");
        assert!(head.starts_with(&format!("record {} (cpu ", i + 1)), "{r}");
        // The pid and comm are what the kernel saw calling getpid: the bpfkit process.
        let want = format!("{{ .pid = {pid}, .ts = ");
        assert!(value.starts_with(&want) && value.ends_with(", .comm = \"bpfkit\" }"), "{r}");
        let ts: u64 = value[want.len()..].split(',').next().and_then(|t| t.parse().ok()).expect("ts");
        assert!(ts > last_ts, "ktime grows: {r}");
        last_ts = ts;
    }
    assert_eq!(recs[4], "3 records (time is up)");
    // Without a layout: hex, with the kernel's padding of the raw sample to 8 bytes (36 = 32 + 4).
    let hex = after(&out, ":watch events 0.2");
    assert_eq!(hex.len(), 3, "{out}");
    let bytes: Vec<&str> = hex[1].split_once(": ").expect("record").1.split(' ').collect();
    assert_eq!(bytes.len(), 36, "{}", hex[1]);
    assert_eq!(u32::from_str_radix(&bytes[..4].iter().rev().copied().collect::<String>(), 16).unwrap(), pid);
    assert_eq!(&bytes[16..22], ["62", "70", "66", "6b", "69", "74"], "comm \"bpfkit\": {}", hex[1]);
    assert_eq!(after(&out, ":watch me"), ["error: map me is a array; `:watch` reads a ringbuf or a perf_event_array"]);
    // A ring buffer record read as the kernel's `struct timespec64`.
    assert_eq!(
        after(&out, ":watch rb 0.2 as struct timespec64"),
        [
            "watching rb as struct timespec64 for 0.2s (Ctrl-C stops)",
            "record 1: { .tv_sec = 5, .tv_nsec = 7 }",
            "record 2: { .tv_sec = 5, .tv_nsec = 7 }",
            "2 records (time is up)"
        ]
    );
    let short = after(&out, ":watch rb 0.2 as task_struct");
    assert!(short[1].starts_with("record 1: 16 bytes, shorter than the layout's "), "{out}");
    assert!(after(&out, ":watch rb 0.2 as no_such_type_x")[0].starts_with("error: layout `no_such_type_x`: no such type in the kernel's BTF"));
}

/// tc (tcx and cls_bpf) on `lo` of a network namespace of its own, a perf event on CPU 0, an
/// iterator's output, and the library's refusals of kprobes and trampolines on this kernel.
#[test]
fn attach_kinds_tc_perf_event_iter_and_refusals() {
    if !support::kernel_or_skip("attach_kinds_tc_perf_event_iter_and_refusals") {
        return;
    }
    let netns = Command::new("unshare").args(["-n", "ip", "link", "set", "lo", "up"]).status();
    if !netns.is_ok_and(|s| s.success()) {
        support::skip("attach_kinds_tc_perf_event_iter_and_refusals: `unshare -n` and `ip` are needed for a network namespace");
        return;
    }
    // The offset of `id` in the kernel's `struct bpf_map`, as a C program compiled against
    // this kernel would have it.
    let vmlinux = bpfkit::core_btf::Btf::vmlinux().expect("vmlinux BTF");
    let bpf_map = vmlinux.find_by_name_kind("bpf_map", bpfkit::core_btf::Kind::Struct).expect("struct bpf_map");
    let id_off = vmlinux.member_offset(bpf_map, "id").expect("bpf_map.id") / 8;
    let input = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/attach_kinds.bpf"))
        .expect("fixture")
        .replace("ID_OFF", &id_off.to_string());
    let (code, out, _) = script_via(&["unshare", "-n", "sh", "-c", "ip link set lo up && exec \"$0\""], &input);
    assert_eq!(code, Some(1), "the refusals fail their lines: {out}");
    // tcx on ingress: every IPv4 packet of the 5 datagrams, counted by the kernel.
    assert_eq!(after(&out, ":attach count tc lo ingress"), ["link 1: count → tc lo ingress"]);
    assert_eq!(after(&out, ":trigger udp 5"), ["5 UDP datagrams sent over loopback, 5 received"]);
    let counts: Vec<&str> = out.lines().filter(|l| l.starts_with("hits[00 00 00 00] = ")).collect();
    assert_eq!(counts, ["hits[00 00 00 00] = 5", "hits[00 00 00 00] = 5", "hits[00 00 00 00] = 8", "hits[00 00 00 00] = 8"], "tcx counts 5, nothing after :detach, cls_bpf egress 3 more (then the wait for cpu-clock): {out}");
    assert_eq!(after(&out, ":attach count tc lo sideways"), ["error: `sideways`: tc attaches on ingress or egress"]);
    // The software cpu-clock event at 2000 Hz ran the program (BPF stats count its runs).
    let info = after(&out, ":info pe");
    let runs: u64 = info[3].split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("run count");
    assert!(runs > 0, "cpu-clock fired the program: {out}");
    assert_eq!(after(&out, ":links"), ["2: count → cls_bpf lo egress"]);
    assert_eq!(after_nth(&out, ":links", 1), ["2: count → cls_bpf lo egress", "3: pe → perf_event cpu-clock 2000 0"]);
    // The bpf_map iterator wrote every map's id, the session's among them.
    let iter = after(&out, ":attach ids iter");
    assert_eq!(iter[0], "link 4: ids → iter", "{out}");
    let n: usize = iter[1].strip_prefix("iterator output, ").and_then(|r| r.strip_suffix(" bytes:")).and_then(|n| n.parse().ok()).expect("byte count");
    let bytes: Vec<u8> = iter[2..]
        .iter()
        .flat_map(|row| row.split_once(": ").expect("hex row").1.split(' ').map(|b| u8::from_str_radix(b, 16).expect("hex")))
        .collect();
    assert_eq!(bytes.len(), n);
    let ids: Vec<u32> = bytes.chunks(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let listed = after(&out, ":maps all");
    let iterme: u32 = listed.iter().find(|l| l.split_whitespace().nth(2) == Some("iterme")).and_then(|l| l.split_whitespace().next()?.parse().ok()).expect("iterme in :maps all");
    assert!(ids.contains(&iterme), "map {iterme} in the iterator's ids {ids:?}");
    // Refusals, as the library words them.
    for kind in ["kprobe", "kretprobe"] {
        let line = format!(":attach k {kind} do_unlinkat");
        let got = after(&out, &line);
        assert!(got[0].starts_with("error: no kprobe support in this kernel") || got[0].starts_with("link "), "{line}: {got:?}");
    }
    for (line, what) in [
        (":load k fentry do_unlinkat", "error: fentry do_unlinkat (BTF id "),
        (":load k fexit do_unlinkat", "error: fexit do_unlinkat (BTF id "),
        (":load k lsm file_open", "error: lsm bpf_lsm_file_open (BTF id "),
    ] {
        let got = after(&out, line);
        assert!(got[0].starts_with(what) && (got[0].contains("tracing programs are refused with EPERM by this kernel") || got[0].starts_with("loaded")), "{line}: {got:?}");
    }
    assert!(after(&out, ":load k lsm no_such_hook")[0].contains("no BTF FUNC `bpf_lsm_no_such_hook`"));
}

/// `:maps`, `:map del`, `:map pin` in one session; `:map open` in another reads the pinned
/// map back, typed by the BTF it was created with.
#[test]
fn maps_del_pin_and_open_in_another_session() {
    if !support::kernel_or_skip("maps_del_pin_and_open_in_another_session") {
        return;
    }
    let pin = format!("/sys/fs/bpf/bpfkit_repl_test_{}", std::process::id());
    let _ = std::fs::remove_file(&pin);
    /// Removes the pin however the test ends.
    struct Unpin<'a>(&'a str);
    impl Drop for Unpin<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _unpin = Unpin(&pin);
    let (code, out) = script(&format!(
        ":maps
:map create names hash u32 char[8] 4
:map create raw array 4 8 2
:map set names u32:1 6261736800000000
:map set names u32:2 7a73680000000000
:map set names u32:3 6b73680000000000
:map del names u32:2
:map del names u32:2
:map get names u32:2
:maps
:map pin names {pin}
:map pin names {pin}
"
    ));
    assert_eq!(after(&out, ":maps"), ["no maps yet (`:map create NAME TYPE KEY VALUE MAX`)"]);
    assert_eq!(after(&out, ":map del names u32:2"), ["deleted"]);
    assert_eq!(after_nth(&out, ":map del names u32:2", 1), ["no such key"], "the kernel no longer has it: {out}");
    assert_eq!(after(&out, ":map get names u32:2"), ["error: map names has no element with key 02 00 00 00"]);
    assert_eq!(after_nth(&out, ":maps", 1), ["names: hash key 4 value 8 max 4", "raw: array key 4 value 8 max 2"]);
    assert_eq!(after(&out, &format!(":map pin names {pin}")), [format!("map names pinned at {pin}")]);
    let again = after_nth(&out, &format!(":map pin names {pin}"), 1);
    assert!(again[0].starts_with(&format!("error: obj_pin {pin}: File exists")), "{again:?}");
    assert_eq!(code, Some(1), "{out}");
    // The first session has ended: the pin holds the map. Another opens it.
    let (code, out) = script(&format!(
        ":map open other {pin}
:map open names {pin}
:map dump names
:map get names u32:3
:map del names u32:1
:map dump names
:map open names2 /sys/fs/bpf/bpfkit_no_such_pin
"
    ));
    let wrong = after(&out, &format!(":map open other {pin}"));
    assert_eq!(wrong, [format!("error: the map pinned at {pin} is named `names` in the kernel; programs bind maps by that name: `:map open names {pin}`")]);
    assert_eq!(after(&out, &format!(":map open names {pin}")), [format!("map names: hash key 4 value 8 max 4 (from {pin}, typed by its BTF)")]);
    let mut dump = after(&out, ":map dump names");
    dump[..2].sort();
    assert_eq!(dump, ["1: \"bash\"", "3: \"ksh\"", "2 elements"], "{out}");
    assert_eq!(after(&out, ":map get names u32:3"), ["3: \"ksh\""]);
    assert_eq!(after_nth(&out, ":map dump names", 1), ["3: \"ksh\"", "1 element"]);
    assert!(after(&out, ":map open names2 /sys/fs/bpf/bpfkit_no_such_pin")[0].starts_with("error: obj_get /sys/fs/bpf/bpfkit_no_such_pin: No such file"));
    assert_eq!(code, Some(1));
}

/// `:attach … usdt BIN:PROVIDER:NAME PID` on the USDT fixture (tests/fixtures/usdt): the
/// kernel runs the program once per firing, with the probe's semaphore raised in the process.
#[test]
fn usdt_probe_counts_its_firings() {
    use std::io::{BufRead, BufReader};
    use bpfkit::os::{probe_events_file, probe_pmu, ProbeKind};
    if !support::kernel_or_skip("usdt_probe_counts_its_firings") {
        return;
    }
    if probe_pmu(ProbeKind::Uprobe).ok().flatten().is_none() && probe_events_file(ProbeKind::Uprobe).ok().flatten().is_none() {
        support::skip("usdt_probe_counts_its_firings: no uprobe PMU and no uprobe_events");
        return;
    }
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/usdt/usdt_probe");
    let mut child = Command::new(fixture).arg("7").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("usdt fixture");
    let mut child_out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut l = String::new();
    child_out.read_line(&mut l).expect("fixture starts");
    assert_eq!(l.trim(), "semaphore=0");
    let mut repl = Command::new(BIN).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bpfkit");
    let mut input = repl.stdin.take().expect("stdin");
    let mut output = BufReader::new(repl.stdout.take().expect("stdout"));
    let pid = child.id();
    write!(
        input,
        ":map create hits array 4 8 1
:prog tick
*(u32 *)(r10 - 4) = 0
r1 = map[hits] ll
r2 = r10
r2 += -4
call bpf_map_lookup_elem
if r0 == 0 goto out
r1 = 1
lock *(u64 *)(r0 + 0) += r1
out:
r0 = 0
exit
:end
:load tick kprobe
:attach tick usdt {fixture}:bpfkit:nope {pid}
:attach tick usdt {fixture}:bpfkit:tick {pid}
"
    )
    .expect("write script");
    input.flush().expect("flush");
    // Wait for the attachment before letting the fixture fire.
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(output.read_line(&mut line).expect("read bpfkit") > 0, "bpfkit ended early:\n{seen}");
        seen.push_str(&line);
        if line.starts_with("link 1: ") || (line.starts_with("error: ") && seen.contains(":bpfkit:tick")) {
            break;
        }
    }
    child.stdin.take().expect("stdin").write_all(b"go\n").expect("go");
    l.clear();
    child_out.read_line(&mut l).expect("fixture fires");
    assert_eq!(l.trim(), "fired=7", "the semaphore was raised in the running process:\n{seen}");
    assert!(child.wait().expect("fixture ends").success());
    input.write_all(b":count hits 0\n:maps\n").expect("write");
    drop(input);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).expect("read");
    let out = seen + &rest;
    assert!(repl.wait().expect("bpfkit ends").code() == Some(1), "the wrong probe fails its line: {out}");
    let nope = after(&out, &format!(":attach tick usdt {fixture}:bpfkit:nope {pid}"));
    assert_eq!(nope[0], "map usdt_specs: the argument specs of USDT probes", "{out}");
    assert!(nope[1].starts_with("error: ") && nope[1].contains("no USDT probe bpfkit:nope"), "{out}");
    assert_eq!(after(&out, &format!(":attach tick usdt {fixture}:bpfkit:tick {pid}")), [format!("link 1: tick → usdt {fixture}:bpfkit:tick {pid}")]);
    assert_eq!(after(&out, ":count hits 0"), ["hits[00 00 00 00] = 7"], "{out}");
    assert!(after(&out, ":maps").iter().any(|l| l.starts_with("usdt_specs: hash key 4")), "{out}");
}

/// `:open` of two clang-built objects: one whose `.rodata` target tgid is set to `$pid` (the
/// REPL's own process) counts exactly the getpid calls `:trigger` makes, after `:attach` with
/// no kind put it where its section says; the other's ring buffer is read with `:watch`, one
/// record per call, in order. A bad `VAR=VALUE` is refused naming the variable.
#[test]
fn open_attaches_by_section_counts_and_watches() {
    if !support::kernel_or_skip("open_attaches_by_section_counts_and_watches") {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/cli");
    let (code, out, pid) = script_via(
        &[],
        &format!(
            ":open tgt {dir}/c01_target_tgid.o target_tgid=$pid step=2
:open ev {dir}/c02_ring_events.o target_tgid=$pid
:attach tgt.count_target
:attach ev.emit
:trigger getpid 7
:count tgt.counts 0
:map dump tgt.bss
:watch ev.events 1 as {{u32 tgid; u32 seq; char comm[16]}}
:progs
:open bad {dir}/c01_target_tgid.o nope=1
:open bad {dir}/c01_target_tgid.o step=99999
:attach tgt.count_target xdp lo
"
        ),
    );
    let opened = after(&out, &format!(":open tgt {dir}/c01_target_tgid.o target_tgid=$pid step=2"));
    assert_eq!(opened[0], format!("object tgt: 1 program(s), 3 map(s) from {dir}/c01_target_tgid.o"), "{out}");
    assert!(opened.contains(&"  program tgt.count_target: tracepoint (section tracepoint/syscalls/sys_enter_getpid); `:attach tgt.count_target` attaches it there"), "{out}");
    assert!(opened.contains(&"  map tgt.counts: hash key 4 value 8 max 64") && opened.contains(&"  map tgt.rodata: array key 4 value 22 max 1"), "{out}");
    assert_eq!(after(&out, ":attach tgt.count_target"), ["link 1: tgt.count_target → tracepoint syscalls/sys_enter_getpid ← tracepoint \"count_target\""]);
    assert_eq!(after(&out, ":attach ev.emit"), ["link 2: ev.emit → tracepoint syscalls/sys_enter_getpid ← tracepoint \"emit\""]);
    // Exactly the 7 calls, from this tgid only (set through .rodata before load).
    let key: Vec<String> = pid.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(after(&out, ":count tgt.counts 0"), [format!("tgt.counts[{}] = 7", key.join(" "))], "{out}");
    // `hits += step` with step = 2 from the command line.
    assert_eq!(after(&out, ":map dump tgt.bss"), ["key: 00 00 00 00  value: 0e 00 00 00 00 00 00 00", "1 element"], "{out}");
    let watched = after(&out, ":watch ev.events 1 as {u32 tgid; u32 seq; char comm[16]}");
    let records: Vec<&&str> = watched.iter().filter(|l| l.starts_with("record ")).collect();
    assert_eq!(records.len(), 7, "{out}");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(**r, format!("record {}: {{ .tgid = {pid}, .seq = {i}, .comm = \"bpfkit\" }}", i + 1), "{out}");
    }
    assert!(after(&out, ":progs").contains(&"  tgt.count_target: from object tgt, loaded as tracepoint"), "{out}");
    let bad = after(&out, &format!(":open bad {dir}/c01_target_tgid.o nope=1"));
    assert_eq!(bad, [format!("error: {dir}/c01_target_tgid.o: global variable 'nope': no such global variable (the object has target_tgid, enabled, mode, step, tag, hits)")]);
    let bad = after(&out, &format!(":open bad {dir}/c01_target_tgid.o step=99999"));
    assert_eq!(bad, [format!("error: {dir}/c01_target_tgid.o: global variable 'step': declared `volatile const __s16 step`; 99999 does not fit (-32768..=32767)")]);
    // An object's program still takes an explicit KIND; a tracepoint program on XDP is refused
    // by the kernel, and the session goes on.
    let xdp = after(&out, ":attach tgt.count_target xdp lo");
    assert!(xdp[0].starts_with("error: "), "{out}");
    assert_eq!(code, Some(1), "the refused lines make the script fail");
}

#[test]
fn push_pop_and_peek_on_queue_and_stack_maps() {
    if !support::kernel_or_skip("push_pop_and_peek_on_queue_and_stack_maps") {
        return;
    }
    let (code, out) = script(
        ":map create q queue 0 8 2\n:push q u64:1\n:push q u64:2\n:push q u64:3\n:peek q\n:pop q\n:push q u64:3\n:push q u64:4 force\n:pop q\n:pop q\n:pop q 0.2\n\
         :map create s stack 0 4 4\n:push s u32:7\n:push s u32:8\n:pop s\n:map create h hash 4 8 4\n:push h u64:1\n",
    );
    assert_eq!(code, Some(1), "a script with failed commands exits 1: {out}");
    assert_eq!(after(&out, ":push q u64:1"), ["pushed to q"]);
    let full = after(&out, ":push q u64:3").join("\n");
    assert!(full.contains("map q is full (2 entries)") && full.contains("force"), "{out}");
    assert_eq!(after(&out, ":peek q"), ["01 00 00 00 00 00 00 00  (u64 1)"]);
    assert_eq!(after_nth(&out, ":pop q", 0), ["01 00 00 00 00 00 00 00  (u64 1)"], "first in, first out");
    // `force` dropped the oldest (2): 3 and 4 remain.
    assert_eq!(after_nth(&out, ":pop q", 1), ["03 00 00 00 00 00 00 00  (u64 3)"]);
    assert_eq!(after_nth(&out, ":pop q", 2), ["04 00 00 00 00 00 00 00  (u64 4)"]);
    assert_eq!(after(&out, ":pop q 0.2"), ["q is empty"]);
    assert_eq!(after(&out, ":pop s"), ["08 00 00 00  (u32 8)"], "last in, first out");
    assert!(after(&out, ":push h u64:1").join("\n").contains("map h is a hash; `:push`, `:pop` and `:peek` take a queue or stack map"), "{out}");
}

#[test]
fn watch_a_key_prints_each_change() {
    if !support::kernel_or_skip("watch_a_key_prints_each_change") {
        return;
    }
    use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
    // The map lives in this process and is pinned; the REPL opens the pin and watches key 1
    // while this process changes it twice, then deletes it.
    let map = Map::create(&MapSpec::new("watched", MapType::Hash, 4, 8, 4)).unwrap();
    let pin = format!("/sys/fs/bpf/bpfkit-repl-watch-{}", std::process::id());
    map.pin(&pin).unwrap();
    let key = 1u32.to_ne_bytes();
    map.update(&key, &5u64.to_ne_bytes(), UpdateFlags::Any).unwrap();
    let changer = std::thread::spawn({
        let map = Map::from_pin(&pin).unwrap();
        move || {
            for v in [6u64, 7] {
                std::thread::sleep(std::time::Duration::from_millis(400));
                map.update(&key, &v.to_ne_bytes(), UpdateFlags::Any).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(400));
            map.delete(&key).unwrap();
        }
    });
    let (code, out) = script(&format!(":map open watched {pin}\n:watch watched u32:1 2\n"));
    changer.join().unwrap();
    Map::unpin(&pin).unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        after(&out, ":watch watched u32:1 2"),
        [
            "watching watched[01 00 00 00] for 2s (Ctrl-C stops): 05 00 00 00 00 00 00 00  (u64 5)",
            "watched[01 00 00 00]: 05 00 00 00 00 00 00 00  (u64 5) -> 06 00 00 00 00 00 00 00  (u64 6)",
            "watched[01 00 00 00]: 06 00 00 00 00 00 00 00  (u64 6) -> 07 00 00 00 00 00 00 00  (u64 7)",
            "watched[01 00 00 00]: 07 00 00 00 00 00 00 00  (u64 7) -> (absent)",
            "3 changes (time is up)",
        ]
    );
}

#[test]
fn cases_and_test_report_verdicts_and_coverage() {
    if !support::kernel_or_skip("cases_and_test_report_verdicts_and_coverage") {
        return;
    }
    let (code, out) = script(
        ":prog filter\nr2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 38\nif r4 > r3 goto pass\nr4 = *(u16 *)(r2 + 36)\nif r4 != 0x5000 goto pass\nr0 = 1\nexit\npass:\nr0 = 2\nexit\n\n\
         :load filter xdp\n:case filter packet tcp 10.0.0.1:4000 10.0.0.2:80 => 1\n:test filter\n\
         :case filter packet udp 10.0.0.1:4000 10.0.0.2:53 => 2\n:case filter 000000000000000000000000000000 => 2\n:test filter\n\
         :case filter packet udp 10.0.0.1:4000 10.0.0.2:54 => 1\n:test filter\n",
    );
    assert_eq!(code, Some(1), "the last :test has a failing case: {out}");
    assert_eq!(
        after_nth(&out, ":test filter", 0),
        [
            "ok    packet tcp 10.0.0.1:4000 10.0.0.2:80 => 1 (returned 1)",
            "coverage: blocks 3/4 (75%), branches 2/4 (50%)",
            "  branch <repl>:6:1: `if r4 > r3 goto pass` never taken",
            "  branch <repl>:8:1: `if r4 != 0x5000 goto pass` never taken",
            "  not run: <repl>:12:1: r0 = 2",
            "  not run: <repl>:13:1: exit",
        ]
    );
    let second = after_nth(&out, ":test filter", 1);
    assert_eq!(second.last(), Some(&"coverage: blocks 4/4 (100%), branches 4/4 (100%)"), "{out}");
    let third = after_nth(&out, ":test filter", 2).join("\n");
    assert!(third.contains("FAIL  packet udp 10.0.0.1:4000 10.0.0.2:54 => 1: returned 2, expected 1"), "{third}");
    assert!(third.contains("1 of filter's cases failed"), "{third}");
}

#[test]
fn btf_members_and_path_explore_kernel_types() {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        support::skip(":btf members/path: this kernel has no /sys/kernel/btf/vmlinux");
        return;
    }
    let (code, out) = script(":btf members css_set\n:btf path task_struct -> cgroups -> dfl_cgrp\n:btf path task_struct->comm\n");
    let members = after(&out, ":btf members css_set");
    assert!(members[0].starts_with("css_set (") && members.iter().any(|l| l.trim_end().ends_with("struct cgroup *dfl_cgrp")), "{out}");
    let path = after(&out, ":btf path task_struct -> cgroups -> dfl_cgrp");
    assert!(path[0].starts_with("hop 1: task_struct->cgroups at 0x") && path[1].starts_with("hop 2: css_set->dfl_cgrp at 0x"), "{out}");
    assert!(path.contains(&r#"core_field_offset(r7, "css_set", "dfl_cgrp")"#), "{out}");
    let refused = after(&out, ":btf path task_struct->comm");
    assert!(refused.iter().any(|l| l.contains("into a buffer")), "{out}");
    assert_eq!(code, Some(1), "a failed line makes the script fail");
}
