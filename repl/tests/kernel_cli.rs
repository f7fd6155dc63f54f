//! End-to-end tests of the `bpfkit` kernel subcommands (`run`, `prog`, `map`): the binary
//! runs as a user runs it, against the kernel; listings are checked against what bpftool
//! prints for the same objects. Run as root (CI); otherwise each test skips with its reason.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{LoadOptions, ProgType, Program};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

/// Run `bpfkit` with `args` in `dir`; it must not panic.
fn bpfkit(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run bpfkit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "bpfkit panicked: {stderr}");
    out
}

/// Assert success and return stdout.
fn ok(o: Output) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "expected success, got {:?}; stderr:\n{stderr}",
        o.status
    );
    String::from_utf8(o.stdout).expect("stdout is UTF-8")
}

/// Assert exit status `code` with nothing on stdout, and return stderr.
fn fails_with(code: i32, o: Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.is_empty(),
        "nothing on stdout on failure, got:\n{stdout}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr.into_owned()
}

/// A scratch directory holding `files` (name, contents).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write input");
    }
    dir
}

/// `retval=N duration_ns=N` → (N, N).
fn parse_result_line(line: &str) -> (u32, u32) {
    let (r, d) = line
        .split_once(' ')
        .unwrap_or_else(|| panic!("result line: {line:?}"));
    let num = |s: &str, key: &str| -> u32 {
        s.strip_prefix(key)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key}N in {line:?}"))
    };
    (num(r, "retval="), num(d, "duration_ns="))
}

/// The retval of a `run` output's first line.
fn retval(out: &str) -> u32 {
    parse_result_line(out.lines().next().unwrap_or_default()).0
}

/// A name no other test (or earlier run) uses: kernel names keep 15 characters.
fn unique_name(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 1_000_000)
}

/// What bpftool prints for `args`, or `None` (with the reason printed) when it cannot run.
fn bpftool(args: &[&str]) -> Option<String> {
    match Command::new("bpftool").args(args).output() {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => panic!(
            "bpftool {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            support::oracle_unavailable("bpftool comparison", &format!("bpftool not run ({e}); scripts/setup.sh installs it"));
            None
        }
    }
}

/// The output of `bpfkit KIND list`, checked to be in increasing id order.
fn list_of(dir: &Path, kind: &str) -> String {
    let list = ok(bpfkit(dir, &[kind, "list"]));
    let ids: Vec<u32> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id:\n{list}");
    list
}

/// The line of a `list` output whose first column is `id`, split into columns.
fn row_of(list: &str, id: u32) -> Vec<String> {
    let line = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("id {id} not listed:\n{list}"));
    line.split_whitespace().map(str::to_owned).collect()
}

#[test]
fn run_xdp_prints_retval_and_duration() {
    if !support::kernel_or_skip("bpfkit run (xdp)") {
        return;
    }
    let dir = dir_with(&[("ret2.s", "mov r0, 1\nadd r0, 1\nexit\n")]);
    let out = ok(bpfkit(dir.path(), &["run", "ret2.s"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("retval=2 duration_ns="), "{out}");
    parse_result_line(out.trim_end());

    let out = ok(bpfkit(
        dir.path(),
        &["run", "--type", "xdp", "--repeat", "1000", "ret2.s"],
    ));
    assert_eq!(retval(&out), 2, "{out}");
}

#[test]
fn run_socket_filter_sees_the_packet() {
    if !support::kernel_or_skip("bpfkit run (socket_filter)") {
        return;
    }
    // r0 = skb->len (`struct __sk_buff` starts with `len`), in the LLVM dialect. A socket
    // filter sees the packet from its network header: 14 bytes of Ethernet header less.
    let dir = dir_with(&[("len.s", "r0 = *(u32 *)(r1 + 0)\nexit\n")]);
    let packet = "ab".repeat(20);
    let out = ok(bpfkit(
        dir.path(),
        &[
            "run",
            "--type",
            "socket_filter",
            "--syntax",
            "llvm",
            "--data-hex",
            &packet,
            "--show-data",
            "len.s",
        ],
    ));
    let mut lines = out.lines();
    assert_eq!(retval(&out), 20 - 14, "{out}");
    lines.next();
    // The kernel hands non-L2 programs the packet with a zeroed Ethernet header.
    let data = lines
        .next()
        .and_then(|l| l.strip_prefix("data_out="))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        data,
        format!("{}{}", "00".repeat(14), "ab".repeat(6)),
        "{out}"
    );

    // Without --data-hex, packet types run on 64 zero bytes.
    let out = ok(bpfkit(
        dir.path(),
        &["run", "--type", "socket_filter", "len.s"],
    ));
    assert_eq!(retval(&out), 64 - 14, "{out}");
}

#[test]
fn run_from_stdin_and_the_mnemonic_dialect() {
    if !support::kernel_or_skip("bpfkit run -") {
        return;
    }
    let mut child = Command::new(BIN)
        .args(["run", "--syntax", "mnemonic", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bpfkit");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"mov r0, 3\nexit\n").expect("write stdin");
    }
    let out = ok(child.wait_with_output().expect("wait"));
    assert_eq!(retval(&out), 3, "{out}");
}

#[test]
fn verifier_rejection_exits_1_with_the_summary_and_source_line() {
    if !support::kernel_or_skip("bpfkit run (verifier rejection)") {
        return;
    }
    let dir = dir_with(&[(
        "oob.s",
        "; too far below the frame\nmov r0, 0\nmov r1, 1\n*(u64 *)(r10 - 520) = r1\nexit\n",
    )]);
    let err = fails_with(1, bpfkit(dir.path(), &["run", "oob.s"]));
    assert!(
        err.contains("rejected by the verifier: invalid write to stack R10 off=-520 size=8"),
        "{err}"
    );
    assert!(
        err.contains("at insn 2 `*(u64 *)(r10 - 0x208) = r1`"),
        "{err}"
    );
    assert!(err.contains("(oob.s:4:1)"), "{err}");
    assert!(
        err.contains("  | *(u64 *)(r10 - 520) = r1"),
        "source line shown: {err}"
    );
    assert!(!err.contains("verifier log:"), "{err}");
    // Under the verifier's text, bpfkit's explanation (prog::diagnose).
    assert!(err.contains("why: the stack access at r10-520 is outside the stack: a program has 512 bytes"), "{err}");
    assert!(err.contains("fix: use offsets between -512 and -1 from r10"), "{err}");

    // --log adds the whole log: the instructions the verifier walked.
    let err = fails_with(1, bpfkit(dir.path(), &["run", "--log", "oob.s"]));
    assert!(err.contains("verifier log:\n"), "{err}");
    assert!(err.contains("2: (7b) *(u64 *)(r10 -520) = r1"), "{err}");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = dir_with(&[("ret2.s", "mov r0, 2\nexit\n")]);
    // Checked before any bpf(2) call, so these run without privileges too.
    let err = fails_with(2, bpfkit(dir.path(), &["run", "--type", "xpd", "ret2.s"]));
    assert!(err.contains("xpd"), "{err}");
    for known in [
        "xdp",
        "socket_filter",
        "sched_cls",
        "cgroup_skb",
        "raw_tracepoint",
    ] {
        assert!(err.contains(known), "lists {known}: {err}");
    }
    let err = fails_with(
        1,
        bpfkit(dir.path(), &["run", "--data-hex", "ab 0g", "ret2.s"]),
    );
    assert!(
        err.contains("--data-hex:1:5: expected a hex digit, found 'g'"),
        "{err}"
    );
    let err = fails_with(
        1,
        bpfkit(dir.path(), &["run", "--ctx-hex", "abc", "ret2.s"]),
    );
    assert!(
        err.contains("--ctx-hex:1:3: odd number of hex digits"),
        "{err}"
    );
    let err = fails_with(
        2,
        bpfkit(dir.path(), &["run", "--map", "counts:hash:4:8", "ret2.s"]),
    );
    assert!(
        err.contains("NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES"),
        "{err}"
    );
    let err = fails_with(1, bpfkit(dir.path(), &["run", "missing.s"]));
    assert!(err.contains("cannot read missing.s"), "{err}");
}

#[test]
fn run_creates_declared_maps_and_dumps_them() {
    // Counts runs in counts[0]; in the mnemonic dialect.
    let text = "\
stw [r10-4], 0
lddw r1, map[counts]
mov r2, r10
add r2, -4
call bpf_map_lookup_elem
jeq r0, 0, out
mov r1, 1
lock add [r0+0], r1
out: mov r0, 2
exit
";
    let dir = dir_with(&[("count.s", text)]);
    // An undeclared map is refused before loading, naming it and its line.
    let err = fails_with(1, bpfkit(dir.path(), &["run", "count.s"]));
    assert!(
        err.contains("count.s:2:1: map `counts` is not declared"),
        "{err}"
    );
    assert!(err.contains("--map counts:"), "{err}");
    if !support::kernel_or_skip("bpfkit run --map") {
        return;
    }
    let out = ok(bpfkit(
        dir.path(),
        &[
            "run",
            "--repeat",
            "10",
            "--map",
            "counts:array:4:8:2",
            "--dump-maps",
            "count.s",
        ],
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(retval(&out), 2, "{out}");
    assert_eq!(
        &lines[1..],
        [
            "map array \"counts\":",
            "key: 00 00 00 00  value: 0a 00 00 00 00 00 00 00",
            "key: 01 00 00 00  value: 00 00 00 00 00 00 00 00",
            "2 elements",
        ],
        "{out}"
    );
}

#[test]
fn prog_list_and_show_agree_with_bpftool() {
    if !support::kernel_or_skip("bpfkit prog list") {
        return;
    }
    let map = Map::create(&MapSpec::new(unique_name("kcpm"), MapType::Array, 4, 8, 1))
        .expect("create map");
    // Loading the map's address is enough for the kernel to list the map with the program.
    let map_ref = map.as_ref();
    let asm = bpf_asm! {
        lddw r1, map[{map_ref}]
        mov r0, 2
        exit
    }
    .assemble()
    .expect("assemble");
    let name = unique_name("kcli");
    let prog =
        Program::load(&asm, &[], &LoadOptions::new(name.clone(), ProgType::Xdp)).expect("load");
    let info = prog.info().expect("info");
    let map_id = map.info().expect("map info").id;

    let dir = tempfile::tempdir().expect("temp dir");
    let list = list_of(dir.path(), "prog");
    let row = row_of(&list, info.id);
    let tag = info.tag_hex();
    let (xlated, jited) = (
        format!("{}B", info.xlated_len),
        format!("{}B", info.jited_len),
    );
    let map_ids = map_id.to_string();
    let want = [
        &info.id.to_string(),
        "xdp",
        &name,
        "tag",
        &tag,
        "xlated",
        &xlated,
        "jited",
        &jited,
        "maps",
        &map_ids,
    ];
    assert_eq!(row, want, "{list}");
    let show = ok(bpfkit(dir.path(), &["prog", "show", &info.id.to_string()]));
    assert_eq!(row_of(&show, info.id), row, "{show}");

    if let Some(tool) = bpftool(&["prog", "show", "id", &info.id.to_string()]) {
        assert!(
            tool.starts_with(&format!("{}: xdp  name {name}  tag {tag}", info.id)),
            "{tool}"
        );
        assert!(
            tool.contains(&format!("xlated {xlated}  jited {jited}")),
            "{tool}"
        );
        assert!(tool.contains(&format!("map_ids {map_id}")), "{tool}");
    }

    let dump = ok(bpfkit(
        dir.path(),
        &[
            "prog",
            "dump",
            "xlated",
            &info.id.to_string(),
            "--syntax",
            "mnemonic",
        ],
    ));
    assert!(
        dump.contains(&format!("lddw r1, map[fd:{map_id}]")),
        "map loads show the map id:\n{dump}"
    );
    assert!(dump.trim_end().ends_with("exit"), "{dump}");
    drop(prog);
}

#[test]
fn map_list_and_dump_agree_with_bpftool() {
    if !support::kernel_or_skip("bpfkit map list / dump") {
        return;
    }
    let name = unique_name("kclm");
    let map =
        Map::create(&MapSpec::new(name.clone(), MapType::Hash, 4, 8, 16)).expect("create map");
    for k in 1u32..=3 {
        map.update(
            &k.to_le_bytes(),
            &(u64::from(k) * 0x0101).to_le_bytes(),
            UpdateFlags::Any,
        )
        .expect("update");
    }
    let id = map.info().expect("info").id;
    let dir = tempfile::tempdir().expect("temp dir");

    let list = list_of(dir.path(), "map");
    let row = row_of(&list, id);
    assert_eq!(
        row,
        [
            &id.to_string(),
            "hash",
            &name,
            "key",
            "4",
            "value",
            "8",
            "max",
            "16",
            "flags",
            "0x0"
        ],
        "{list}"
    );
    if let Some(tool) = bpftool(&["map", "show", "id", &id.to_string()]) {
        assert!(
            tool.starts_with(&format!("{id}: hash  name {name}  flags 0x0")),
            "{tool}"
        );
        assert!(tool.contains("key 4B  value 8B  max_entries 16"), "{tool}");
    }

    let dump = ok(bpfkit(dir.path(), &["map", "dump", &id.to_string()]));
    let mut lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.pop(), Some("3 elements"), "{dump}");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "key: 01 00 00 00  value: 01 01 00 00 00 00 00 00",
            "key: 02 00 00 00  value: 02 02 00 00 00 00 00 00",
            "key: 03 00 00 00  value: 03 03 00 00 00 00 00 00",
        ],
        "{dump}"
    );
    if let Some(tool) = bpftool(&["map", "dump", "id", &id.to_string()]) {
        assert!(tool.contains("Found 3 elements"), "{tool}");
    }
}

#[test]
fn map_dump_of_a_pinned_per_cpu_map() {
    if !support::kernel_or_skip("bpfkit map dump PATH") {
        return;
    }
    let map = Map::create(&MapSpec::new(
        unique_name("kclp"),
        MapType::PercpuArray,
        4,
        4,
        2,
    ))
    .expect("create map");
    let cpus = map.value_buf_len().expect("value buffer") / 8;
    let values: Vec<[u8; 4]> = (0..cpus)
        .map(|cpu| (cpu as u32 + 7).to_le_bytes())
        .collect();
    map.update_percpu(&1u32.to_le_bytes(), &values, UpdateFlags::Any)
        .expect("update");

    let fs = tempfile::tempdir().expect("temp dir");
    if let Err(e) = bpfkit::os::mount_bpffs(fs.path()) {
        support::skip(&format!("bpfkit map dump PATH: cannot mount a bpffs ({e})"));
        return;
    }
    let pin = fs.path().join("counts");
    map.pin(&pin).expect("pin");
    let pin_arg = pin.to_str().expect("UTF-8 temp path");
    let dump = bpfkit(fs.path(), &["map", "dump", pin_arg]);
    // A pinned map is no program.
    let wrong = bpfkit(fs.path(), &["prog", "show", pin_arg]);
    Map::unpin(&pin).expect("unpin");
    bpfkit::os::unmount(fs.path()).expect("unmount");

    let dump = ok(dump);
    let mut want = vec!["key: 00 00 00 00".to_owned()];
    want.extend((0..cpus).map(|cpu| format!("  value (cpu {cpu}): 00 00 00 00")));
    want.push("key: 01 00 00 00".into());
    want.extend(
        values
            .iter()
            .enumerate()
            .map(|(cpu, v)| format!("  value (cpu {cpu}): {:02x} 00 00 00", v[0])),
    );
    want.push("2 elements".into());
    assert_eq!(dump.lines().collect::<Vec<_>>(), want, "{dump}");
    let err = fails_with(1, wrong);
    assert!(
        err.contains("pinned object is a bpf-map, not a bpf-prog"),
        "{err}"
    );
}

#[test]
fn dumps_that_cannot_be_done_are_clear_errors() {
    if !support::kernel_or_skip("bpfkit map dump errors") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // Ids count up from 1 and are never reused, so the last one is free on any real system.
    let err = fails_with(1, bpfkit(dir.path(), &["map", "dump", "4294967295"]));
    assert!(err.contains("no map with id 4294967295"), "{err}");
    let err = fails_with(1, bpfkit(dir.path(), &["prog", "show", "4294967295"]));
    assert!(err.contains("no prog with id 4294967295"), "{err}");
    let err = fails_with(
        1,
        bpfkit(dir.path(), &["map", "dump", "/nonexistent/counts"]),
    );
    assert!(err.contains("/nonexistent/counts"), "{err}");

    let name = unique_name("kclr");
    let ring = Map::create(&MapSpec::new(name.clone(), MapType::RingBuf, 0, 0, 4096))
        .expect("create ring buffer");
    let id = ring.info().expect("info").id;
    let err = fails_with(1, bpfkit(dir.path(), &["map", "dump", &id.to_string()]));
    assert!(
        err.contains(&format!("map \"{name}\" (ringbuf): cannot be dumped")),
        "{err}"
    );

    let queue = Map::create(&MapSpec::new(unique_name("kclq"), MapType::Queue, 0, 4, 4))
        .expect("create queue");
    queue.push(&[1, 2, 3, 4], UpdateFlags::Any).expect("push");
    queue.push(&[5, 6, 7, 8], UpdateFlags::Any).expect("push");
    let id = queue.info().expect("info").id;
    let out = ok(bpfkit(dir.path(), &["map", "dump", &id.to_string()]));
    assert!(
        out.starts_with("value: 01 02 03 04\n1 element shown"),
        "{out}"
    );
}

#[test]
fn link_list_show_and_detach() {
    if !support::kernel_or_skip("bpfkit link") {
        return;
    }
    let asm = bpfkit::bpf_asm! { r0 = 0; exit }.assemble().unwrap();
    let prog = bpfkit::prog::Program::load(&asm, &[], &bpfkit::prog::LoadOptions::new("cli_link", bpfkit::prog::ProgType::RawTracepoint)).unwrap();
    let link = prog.attach_raw_tracepoint("sys_enter").unwrap();
    let info = link.info().unwrap();
    let prog_id = prog.info().unwrap().id;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bpfkit")).args(["link", "list"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(&info.id.to_string())).unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells, ["{id}".replace("{id}", &info.id.to_string()).as_str(), "raw_tracepoint", "prog", prog_id.to_string().as_str()]);
    // Raw tracepoint links cannot be detached by id (the kernel has no detach for them): a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bpfkit")).args(["link", "detach", &info.id.to_string()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("link id {}", info.id)) && err.contains("EOPNOTSUPP") && err.contains("close"), "{err}");
    drop(link);
    support::assert_link_gone(info.id);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bpfkit")).args(["link", "show", "4000000000"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("link"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn test_subcommand_reports_cases_and_coverage() {
    if !support::kernel_or_skip("bpfkit test") {
        return;
    }
    let dir = dir_with(&[(
        "filter.s",
        "; drop TCP to port 80 (any protocol's port 80, in fact: it reads offset 36 only)\n\
         r2 = *(u32 *)(r1 + 0)\nr3 = *(u32 *)(r1 + 4)\nr4 = r2\nr4 += 38\nif r4 > r3 goto pass\n\
         r4 = *(u16 *)(r2 + 36)\nif r4 != 0x5000 goto pass\nr0 = 1\nexit\npass:\nr0 = 2\nexit\n",
    )]);
    let drop80 = "packet tcp 10.0.0.1:4000 10.0.0.2:80 => 1";
    // A test runner's failure still prints its report (stdout), then the verdict (stderr).
    let failed = |o: Output| -> (String, String) {
        assert_eq!(o.status.code(), Some(1), "{o:?}");
        (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    // One case: passes, but coverage names what never ran; --full-coverage makes that a failure.
    let out = ok(bpfkit(dir.path(), &["test", "filter.s", "--case", drop80]));
    assert!(out.contains("ok    packet tcp 10.0.0.1:4000 10.0.0.2:80 => 1 (returned 1)"), "{out}");
    assert!(out.contains("coverage: blocks 3/4 (75%), branches 2/4 (50%)"), "{out}");
    assert!(out.contains("not run: filter.s:12:1: r0 = 2"), "{out}");
    let (report, err) = failed(bpfkit(dir.path(), &["test", "filter.s", "--case", drop80, "--full-coverage"]));
    assert!(err.contains("coverage is not complete") && report.contains("not run: filter.s:12:1"), "{err}");
    // Enough cases: complete.
    let out = ok(bpfkit(dir.path(), &["test", "filter.s", "--case", drop80, "--case", "packet udp 10.0.0.1:4000 10.0.0.2:53 => 2", "--case", "000000000000000000000000000000 => 2", "--full-coverage"]));
    assert!(out.contains("coverage: blocks 4/4 (100%), branches 4/4 (100%)"), "{out}");
    // A wrong expectation fails, naming the case.
    let (report, err) = failed(bpfkit(dir.path(), &["test", "filter.s", "--case", "packet udp 10.0.0.1:4000 10.0.0.2:53 => 1"]));
    assert!(err.contains("1 of 1 cases failed") && report.contains("FAIL  packet udp 10.0.0.1:4000 10.0.0.2:53 => 1: returned 2, expected 1"), "{report}{err}");
    // A malformed case is refused by the parser, saying the form.
    let err = fails_with(2, bpfkit(dir.path(), &["test", "filter.s", "--case", "packet tcp 10.0.0.1:1 10.0.0.2:80"]));
    assert!(err.contains("a case is INPUT => RETVAL"), "{err}");
}
