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
    bpfkit::sys::mount_bpffs(dir.path()).unwrap();
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
    bpfkit::sys::unmount(dir.path()).unwrap();

    // Without --pin the object loads and is gone when the command exits.
    let out = ok(bpfkit(&["load", fixture("o01_hash_tp.o").to_str().unwrap()]));
    assert!(out.starts_with("prog "), "{out}");
    let bad = bpfkit(&["load", "/etc/hostname"]);
    assert_eq!(bad.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("/etc/hostname"), "{msg}");
}
