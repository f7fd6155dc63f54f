//! `bpfkit obj`, `bpfkit disasm FILE.o` and `bpfkit load FILE.o [--pin DIR]`, run as a user
//! runs them, on clang-built objects of the corpus: the disassembly equals llvm-objdump-19's,
//! the listing names the maps and relocations clang wrote, and a loaded, pinned program runs in
//! the kernel and counts into its pinned map. (bpfkit prints what `llvm-objdump -d
//! --mattr=+alu32` does, see DESIGN.md.)

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bpfkit::maps::Map;
use bpfkit::prog::{Program, TestRun};

const BIN: &str = env!("CARGO_BIN_EXE_bpfkit");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/objects").join(name)
}

fn bpfkit(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).output().expect("run bpfkit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "bpfkit panicked: {stderr}");
    out
}

fn ok(o: Output) -> String {
    assert!(o.status.success(), "{:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn obj_lists_sections_programs_maps_and_relocations() {
    let out = ok(bpfkit(&["obj", fixture("o09_xdp.o").to_str().unwrap()]));
    assert!(out.contains("license \"GPL\""), "{out}");
    assert!(out.contains("  xdp_count in xdp: xdp"), "{out}");
    assert!(out.contains("  pkts (pkts): array key 4 value 8 max_entries 256 flags 0x0, BTF-defined"), "{out}");
    // `r1 = pkts ll` is instruction 11 (byte 0x58) of the xdp section.
    assert!(out.contains("  xdp+0x58 (insn 11): R_BPF_64_64 → pkts"), "{out}");
    let tp = ok(bpfkit(&["obj", fixture("o01_hash_tp.o").to_str().unwrap()]));
    assert!(tp.contains("tracepoint"), "{tp}");
}

#[test]
fn disasm_of_an_object_equals_llvm_objdump() {
    for file in ["o09_xdp.o", "o06_static_subprog.o", "o01_hash_tp.o"] {
        let path = fixture(file);
        let objdump = match Command::new("llvm-objdump-19").args(["-d", "--no-show-raw-insn", "--mattr=+alu32"]).arg(&path).output() {
            Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
            _ => {
                support::skip("llvm-objdump-19 is not installed (scripts/setup.sh installs llvm-19)");
                return;
            }
        };
        // objdump: `      11:\tr1 = 0x0 ll`, with `<sym+off>` notes on jumps; per section.
        let mut theirs: Vec<(String, Vec<String>)> = Vec::new();
        for line in objdump.lines() {
            if let Some(sec) = line.strip_prefix("Disassembly of section ").and_then(|l| l.strip_suffix(':')) {
                theirs.push((sec.to_owned(), Vec::new()));
            } else if let (Some((_, text)), Some(current)) = (line.split_once(":\t"), theirs.last_mut()) {
                current.1.push(text.split(" <").next().unwrap().trim().to_owned());
            }
        }
        for (section, want) in &theirs {
            let ours = ok(bpfkit(&["disasm", "--section", section, path.to_str().unwrap()]));
            // Our heading per program (`<section>: <name>`), then one instruction per line.
            // bpf-to-bpf calls print as `call local -0x1` (ARCHITECTURE.md, "Extensions"): objdump
            // writes the same instruction as `call -0x1`, like a helper call.
            let got: Vec<String> = ours.lines().filter(|l| !l.starts_with(&format!("{section}: "))).map(|l| l.replace("call local ", "call ")).collect();
            assert_eq!(&got, want, "{file} section {section}");
        }
    }
    let err = bpfkit(&["disasm", "--section", "nosuch", fixture("o09_xdp.o").to_str().unwrap()]);
    assert_eq!(err.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(msg.contains("o09_xdp.o") && msg.contains("nosuch") && msg.contains("programs are in: xdp"), "{msg}");
}

#[test]
fn load_pins_programs_and_maps_that_then_run_in_the_kernel() {
    if !support::kernel_or_skip("bpfkit load") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    bpfkit::os::mount_bpffs(dir.path()).unwrap();
    let pins = dir.path().join("o09");
    let out = ok(bpfkit(&["load", fixture("o09_xdp.o").to_str().unwrap(), "--pin", pins.to_str().unwrap()]));
    assert!(out.contains("prog xdp_count id "), "{out}");
    assert!(out.contains("map pkts id "), "{out}");
    // The command has exited: only the pins keep the program and map.
    let prog = Program::from_pin(pins.join("xdp_count")).unwrap();
    let map = Map::from_pin(pins.join("maps/pkts")).unwrap();
    let mut packet = [0u8; 64];
    packet[13] = 0x2a; // the byte the program counts by
    for _ in 0..6 {
        assert_eq!(prog.test_run(&TestRun::with_data(packet)).unwrap().retval, 2);
    }
    let count = map.lookup(&0x2au32.to_le_bytes()).unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(count[..8].try_into().unwrap()), 6);
    drop((prog, map));
    bpfkit::os::unmount(dir.path()).unwrap();

    // Without --pin the object loads and is gone when the command exits.
    let out = ok(bpfkit(&["load", fixture("o01_hash_tp.o").to_str().unwrap()]));
    assert!(out.starts_with("prog "), "{out}");
    let bad = bpfkit(&["load", "/etc/hostname"]);
    assert_eq!(bad.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("/etc/hostname"), "{msg}");
}

fn cli_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cli").join(name)
}


/// `bpfkit load FILE.o --set … --attach`: the globals are written by their BTF types, the
/// program attaches by its section, counts exactly this test's getpid calls (its tgid was set
/// with --set), and after SIGINT nothing of it is attached (bpftool's link list).
#[test]
fn load_set_attach_counts_and_detaches_on_sigint() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    if !support::kernel_or_skip("load --set --attach") {
        return;
    }
    if !support::bpftool::bpftool_or_skip("load --set --attach") {
        return;
    }
    // The traced process: a bpfkit REPL waiting on its stdin, which makes exactly the getpid
    // calls it is told to (`:trigger getpid N`); this test's own threads call getpid too.
    // It has answered a first command before the program is loaded, so its start-up (which
    // asks for its own pid once) is over.
    let mut target = Command::new(BIN).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run bpfkit");
    let me = target.id().to_string();
    let mut target_in = target.stdin.take().unwrap();
    let mut target_out = BufReader::new(target.stdout.take().unwrap());
    {
        use std::io::Write;
        target_in.write_all(b":help quit\n").unwrap();
        let mut first = String::new();
        target_out.read_line(&mut first).unwrap();
        assert_eq!(first, "> :help quit\n", "the target REPL echoes its first command");
    }
    let file = cli_fixture("c01_target_tgid.o");
    let mut child = KillOnDrop(
        Command::new(BIN)
            .args(["load", file.to_str().unwrap(), "--set", &format!("target_tgid={me}"), "--set", "step=3", "--set", "tag=cli", "--attach"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run bpfkit"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let (mut prog_id, mut counts_id, mut bss_id, mut link_id) = (None, None, None, None);
    let id_after = |line: &str, word: &str| line.split(word).nth(1).and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok());
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("prog count_target ") {
            prog_id = id_after(&line, " id ");
        } else if line.starts_with("map counts ") {
            counts_id = id_after(&line, " id ");
        } else if line.starts_with("map .bss ") {
            bss_id = id_after(&line, " id ");
        } else if line.starts_with("attached: count_target → ") {
            link_id = id_after(&line, "(link id ");
        }
        let done = line.ends_with("Ctrl-C detaches");
        seen.push(line);
        if done {
            break;
        }
    }
    let all = seen.join("\n");
    let (Some(prog_id), Some(counts_id), Some(bss_id), Some(link_id)) = (prog_id, counts_id, bss_id, link_id) else {
        panic!("bpfkit load --attach did not report its ids:\n{all}");
    };
    assert!(all.contains("1 link(s); Ctrl-C detaches"), "{all}");
    assert!(support::bpftool::links().contains(&(link_id, prog_id)), "bpftool lists the link while attached");

    // Only the target's getpid calls count: 25 of them, each adding `step` (3) to `hits`.
    {
        use std::io::{Read, Write};
        target_in.write_all(b":trigger getpid 25\n").unwrap();
        drop(target_in);
        let mut rest = String::new();
        target_out.read_to_string(&mut rest).unwrap();
        let t = target.wait_with_output().unwrap();
        assert!(t.status.success(), "{rest}{}", String::from_utf8_lossy(&t.stderr));
    }
    let counts = Map::from_id(counts_id).unwrap();
    let mine = counts.lookup(&me.parse::<u32>().unwrap().to_le_bytes()).unwrap().expect("an entry for the target's tgid");
    assert_eq!(u64::from_le_bytes(mine[..8].try_into().unwrap()), 25, "{all}");
    assert_eq!(counts.keys().count(), 1, "no other process counted");
    let bss = Map::from_id(bss_id).unwrap().lookup(&0u32.to_le_bytes()).unwrap().unwrap();
    assert_eq!(u64::from_le_bytes(bss[..8].try_into().unwrap()), 75, "hits += step (3) each time");

    // SIGINT: the command detaches and exits 0; bpftool lists nothing of it any more.
    // SAFETY (test code): a signal to our own child's pid.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(rest.iter().any(|l| l == "interrupted: 1 link(s) released"), "{rest:?}");
    drop(counts);
    let start = std::time::Instant::now();
    while support::bpftool::links().iter().any(|&(l, p)| l == link_id || p == prog_id) {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "link {link_id} still listed by bpftool 5 s after SIGINT");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A `--set` that names no variable, or whose value does not fit its type, is refused before
/// anything is loaded, naming the variable and its declaration.
#[test]
fn load_set_refuses_bad_names_and_values() {
    let file = cli_fixture("c01_target_tgid.o");
    let path = file.to_str().unwrap();
    let err = |args: &[&str]| {
        let mut all = vec!["load", path];
        all.extend_from_slice(args);
        let out = bpfkit(&all);
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["--set", "nope=1"]);
    assert!(e.contains("global variable 'nope': no such global variable (the object has target_tgid, enabled, mode, step, tag, hits)"), "{e}");
    let e = err(&["--set", "target_tgid=-1"]);
    assert!(e.contains("global variable 'target_tgid': declared `volatile const __u32 target_tgid`; -1 does not fit (0..=4294967295)"), "{e}");
    let e = err(&["--set", "mode=MODE_BOGUS"]);
    assert!(e.contains("`MODE_BOGUS` is not one of MODE_COUNT, MODE_SKIP nor a number"), "{e}");
    let e = err(&["--set", "tag=much_too_long"]);
    assert!(e.contains("\"much_too_long\" is 13 bytes; char[8] holds at most 7 and the NUL"), "{e}");
    let e = err(&["--set", "enabled=maybe"]);
    assert!(e.contains("`maybe` is not a bool"), "{e}");
    let e = err(&["--set", "step"]);
    assert!(e.contains("--set step: expected NAME=VALUE"), "{e}");
}

/// A child process killed (and reaped) when the test ends, also when it fails: a leftover
/// `bpfkit load --attach` would keep its links attached.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
