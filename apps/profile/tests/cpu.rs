//! `bpfkit-profile cpu` against a workload of known shape, built here: a C program that spends
//! three quarters of its CPU time in `hot_three_quarters` and one quarter in `cold_one_quarter`
//! (both call the same `spin` loop, 3M and 1M iterations), for a given amount of its own CPU
//! time (so the samples it gets do not depend on how busy the machine is: at 499 Hz, 3 s of CPU
//! are about 1500 samples, and one share's sampling error is ±1.1 points). The folded stacks
//! must show that ratio within ±5 points; the SVG must be valid XML (read by Python's parser) naming both
//! functions; the pprof file must decode with `protoc` against profile.proto and carry the same
//! totals, and `go tool pprof` must read it with the same shares; Ctrl-C must still write
//! everything.

#[path = "../../../tests/support/mod.rs"]
mod support;
mod workload;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-profile");

const WORKLOAD: &str = r#"
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void spin(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) void hot_three_quarters(void) { spin(3000000); }
__attribute__((noinline)) void cold_one_quarter(void) { spin(1000000); }
/* Runs for SECS of its own CPU time, not wall time: on a busy machine it still gets about
   SECS x HZ samples, since cpu-clock samples land in it only while it runs. */
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 3;
    struct timespec t;
    do {
        hot_three_quarters();
        cold_one_quarter();
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    } while (t.tv_sec + t.tv_nsec / 1e9 < secs);
    return 0;
}
"#;

/// (hot, cold, all) samples of the workload's process in folded lines.
fn shape_counts(folded: &str) -> (u64, u64, u64) {
    let (mut hot, mut cold, mut all) = (0, 0, 0);
    for line in folded.lines() {
        let (stack, n) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("folded line without a count: {line:?}"));
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("count in {line:?}"));
        if !stack.starts_with("shape;") {
            continue;
        }
        all += n;
        let frames: Vec<&str> = stack.split(';').collect();
        if frames.contains(&"hot_three_quarters") {
            hot += n;
        }
        if frames.contains(&"cold_one_quarter") {
            cold += n;
        }
    }
    (hot, cold, all)
}

fn python_svg_titles(svg: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys, xml.etree.ElementTree as E\nroot = E.parse(sys.argv[1]).getroot()\nassert root.tag.endswith('svg'), root.tag\nprint('\\n'.join(t.text or '' for t in root.iter() if t.tag.endswith('title')))"])
        .arg(svg)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the SVG does not parse as XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `protoc --decode` of the gunzipped pprof file: protobuf's own reader with profile.proto.
fn protoc_decode(pprof: &Path) -> Option<String> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let gunzip = Command::new("gzip")
        .arg("-dc")
        .arg(pprof)
        .output()
        .expect("gzip");
    assert!(gunzip.status.success(), "the pprof file is not gzip");
    let mut child = match Command::new("protoc")
        .args(["--decode=perftools.profiles.Profile", "--proto_path"])
        .arg(&fixtures)
        .arg("profile.proto")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            support::oracle_unavailable(
                "pprof decoded by protoc",
                &format!("protoc: {e} (scripts/setup.sh installs protobuf-compiler)"),
            );
            return None;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&gunzip.stdout)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "protoc cannot decode the pprof file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn cpu_profile_of_a_command_shows_its_three_to_one_shape() {
    if !support::kernel_or_skip("bpfkit-profile cpu") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "shape", WORKLOAD);
    let (folded, svg, pprof) = (
        dir.path().join("cpu.folded"),
        dir.path().join("cpu.svg"),
        dir.path().join("cpu.pb.gz"),
    );
    let out = Command::new(OURS)
        .args(["cpu", "-F", "499", "--folded-file"])
        .arg(&folded)
        .arg("--svg")
        .arg(&svg)
        .arg("--pprof")
        .arg(&pprof)
        .arg("--")
        .arg(&work)
        .arg("3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}{stderr}");

    // The folded stacks: main → hot_three_quarters → spin, and the 3:1 shape.
    let text = std::fs::read_to_string(&folded).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("shape;") && l.contains(";main;hot_three_quarters;spin")),
        "the stack walked through frame pointers:\n{text}"
    );
    let (hot, cold, all) = shape_counts(&text);
    assert!(
        all >= 300,
        "{all} samples of 3 s at 499 Hz (a busy machine takes some):\n{text}"
    );
    assert!(
        hot + cold >= all * 9 / 10,
        "hot {hot} + cold {cold} of {all}"
    );
    let share = 100.0 * hot as f64 / (hot + cold) as f64;
    eprintln!("hot_three_quarters: {hot}, cold_one_quarter: {cold}: {share:.1}% (expected 75 ± 5)");
    assert!(
        (70.0..=80.0).contains(&share),
        "hot share {share:.1}% (hot {hot}, cold {cold})"
    );

    // The top table names spin as where the time is spent.
    let first_row = table.lines().nth(1).unwrap_or_default();
    assert!(first_row.ends_with("  spin"), "{table}");

    // The SVG: XML with an <svg> root whose frame titles name both functions.
    let titles = python_svg_titles(&svg);
    assert!(
        titles.contains("hot_three_quarters") && titles.contains("cold_one_quarter"),
        "{titles}"
    );

    // pprof: protobuf's own decoder reads it against profile.proto; the samples' first value
    // sums to the folded total, and the string table holds both names.
    let total_folded: u64 = text
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    if let Some(decoded) = protoc_decode(&pprof) {
        assert!(
            decoded.contains("string_table: \"hot_three_quarters\"")
                && decoded.contains("string_table: \"cold_one_quarter\""),
            "{decoded}"
        );
        // Each sample has two values (samples, cpu nanoseconds): the first of each pair counts.
        let mut total = 0u64;
        let mut in_pair = false;
        for l in decoded.lines().map(str::trim) {
            if l == "sample {" {
                in_pair = false;
            }
            if let Some(v) = l.strip_prefix("value: ") {
                if !in_pair {
                    total += v.parse::<u64>().unwrap();
                }
                in_pair = !in_pair;
            }
        }
        assert_eq!(total, total_folded, "pprof and folded totals");
    }
    // And pprof's own reader, `go tool pprof` (Debian's golang-go): its cumulative share of
    // hot_three_quarters is the folded stacks' share of the whole profile.
    match Command::new("go")
        .args(["tool", "pprof", "-top", "-nodecount=30"])
        .arg(&pprof)
        .env("HOME", dir.path())
        .output()
    {
        Ok(out) => {
            let top = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "go tool pprof cannot read it: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let row = top
                .lines()
                .find(|l| l.trim_end().ends_with(" hot_three_quarters"))
                .unwrap_or_else(|| panic!("{top}"));
            let cum: f64 = row
                .split_whitespace()
                .nth(4)
                .unwrap()
                .trim_end_matches('%')
                .parse()
                .unwrap();
            let expected = 100.0 * hot as f64 / total_folded as f64;
            eprintln!("go tool pprof: hot_three_quarters cum {cum}% (folded: {expected:.2}%)");
            assert!((cum - expected).abs() < 0.1, "{row}");
        }
        Err(e) => support::oracle_unavailable(
            "pprof read by go tool pprof",
            &format!("go: {e} (scripts/setup.sh installs golang-go)"),
        ),
    }
    // And the crate's own reader: the hot stack resolves to spin ← hot_three_quarters ← main.
    let p = bpfkit_profile::pprof::read(&std::fs::read(&pprof).unwrap()).unwrap();
    let name = |loc: u64| -> &str {
        let f = p.location.iter().find(|l| l.id == loc).unwrap().line[0].function_id;
        &p.string_table[p.function.iter().find(|x| x.id == f).unwrap().name as usize]
    };
    let hot_in_pprof: i64 = p
        .sample
        .iter()
        .filter(|s| {
            s.location_id
                .iter()
                .any(|l| name(*l) == "hot_three_quarters")
        })
        .map(|s| s.value[0])
        .sum();
    assert_eq!(hot_in_pprof as u64, hot);
    let period = p.period;
    assert_eq!(period, 1_000_000_000 / 499);
    assert!(p.sample.iter().all(|s| s.value[1] == s.value[0] * period));
}

#[test]
fn ctrl_c_writes_the_profile_and_leaves_the_process_running() {
    if !support::kernel_or_skip("bpfkit-profile cpu -p, Ctrl-C") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "shape", WORKLOAD);
    let mut target = Command::new(&work).arg("30").spawn().unwrap();
    let svg = dir.path().join("cpu.svg");
    let profiler = Command::new(OURS)
        .args(["cpu", "-f", "-p", &target.id().to_string(), "--svg"])
        .arg(&svg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY (test code): a signal to the child this test started.
    unsafe { libc::kill(profiler.id() as i32, libc::SIGINT) };
    let out = profiler.wait_with_output().unwrap();
    let still_running = target.try_wait().unwrap().is_none();
    let _ = target.kill();
    let _ = target.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(still_running, "the profiled process goes on after Ctrl-C");
    let folded = String::from_utf8_lossy(&out.stdout);
    let (hot, cold, all) = shape_counts(&folded);
    assert!(
        all >= 20 && hot > cold,
        "up to 1.5 s at 99 Hz (less on a busy machine) was written out: hot {hot}, cold {cold}, all {all}\n{folded}{stderr}"
    );
    assert!(
        folded.lines().all(|l| l.starts_with("shape;")),
        "-p counts only that process:\n{folded}"
    );
    assert!(python_svg_titles(&svg).contains("hot_three_quarters"));
}

#[test]
fn whole_system_for_a_duration_and_errors_a_person_can_act_on() {
    if !support::kernel_or_skip("bpfkit-profile cpu -d") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "shape", WORKLOAD);
    let mut target = Command::new(&work).arg("30").spawn().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(OURS)
        .args(["cpu", "-d", "1", "-f"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let _ = target.kill();
    let _ = target.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "-d 1 took {took:?}");
    let folded = String::from_utf8_lossy(&out.stdout);
    assert!(
        shape_counts(&folded).0 > 0,
        "the whole system includes the workload:\n{folded}"
    );

    let out = Command::new(OURS)
        .args(["cpu", "-p", "999999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-p 999999999: no such process"));
    let out = Command::new(OURS)
        .args(["cpu", "-F", "0", "-d", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("0"));
}

#[test]
fn a_commands_children_are_profiled_and_inlined_functions_are_frames() {
    if !support::kernel_or_skip("bpfkit-profile cpu: children, inlined frames") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // With debug information (-g), a function inlined at the sampled address is a frame of its
    // own, inside the function it was inlined into.
    let src = dir.path().join("inl.c");
    std::fs::write(
        &src,
        r#"
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static inline __attribute__((always_inline)) void inlined_spin(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) void calls_inlined(void) { inlined_spin(2000000); }
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1;
    struct timespec t;
    do { calls_inlined(); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); } while (t.tv_sec + t.tv_nsec / 1e9 < secs);
    return 0;
}
"#,
    )
    .unwrap();
    let inl = dir.path().join("inl");
    assert!(Command::new("gcc")
        .args(["-O1", "-g", "-fno-omit-frame-pointer", "-o"])
        .arg(&inl)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let work = workload::build_c(dir.path(), "shape", WORKLOAD);
    // The command is a shell that forks both programs: its children are followed.
    let script = format!("{} 1; {} 1; true", work.display(), inl.display());
    let out = Command::new(OURS)
        .args(["cpu", "-F", "499", "-f", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folded = String::from_utf8_lossy(&out.stdout);
    let (hot, cold, all) = shape_counts(&folded);
    assert!(
        all >= 100 && hot > cold,
        "the shell's child was profiled: hot {hot}, cold {cold}, all {all}\n{folded}"
    );
    let inlined: u64 = folded
        .lines()
        .filter(|l| l.starts_with("inl;") && l.contains(";calls_inlined;inlined_spin"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert!(
        inlined >= 100,
        "inlined_spin as a frame inside calls_inlined: {inlined}\n{folded}"
    );
}

#[test]
fn lost_stacks_and_a_full_counter_map_are_reported() {
    if !support::kernel_or_skip("bpfkit-profile cpu: losses") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "shape", WORKLOAD);
    // One stack-map bucket: every stack but the first collides (-EEXIST). Two counters: the
    // third distinct key is not counted.
    let out = Command::new(OURS)
        .args([
            "cpu", "-F", "999", "-f", "--stacks", "1", "--keys", "2", "--",
        ])
        .arg(&work)
        .arg("1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let folded = String::from_utf8_lossy(&out.stdout);
    eprintln!("{folded}{stderr}");
    assert!(folded.lines().count() <= 2, "{folded}");
    let lost_line = stderr
        .lines()
        .find(|l| l.contains("stacks lost to stack-map collisions"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let user_lost: u64 = lost_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(user_lost > 0, "{lost_line}");
    assert!(
        folded.contains("[lost-stack]"),
        "lost stacks are shown as such:\n{folded}"
    );
    let full = stderr
        .lines()
        .find(|l| l.contains("not counted: the counts map was full"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let not_counted: u64 = full.split_whitespace().nth(1).unwrap().parse().unwrap();
    let counted: u64 = folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert!(
        not_counted > 0 && counted > 0,
        "{counted} counted, {not_counted} not"
    );
}

#[test]
fn a_stripped_binary_keeps_its_stacks_named_by_file_and_counted_as_unnamed() {
    if !support::kernel_or_skip("bpfkit-profile cpu: stripped") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "shape", WORKLOAD);
    let stripped = dir.path().join("stripped");
    std::fs::copy(&work, &stripped).unwrap();
    assert!(Command::new("strip")
        .arg(&stripped)
        .status()
        .expect("strip (binutils, with gcc)")
        .success());
    let out = Command::new(OURS)
        .args(["cpu", "-F", "499", "-f", "--"])
        .arg(&stripped)
        .arg("1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let folded = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The frames are still walked (frame pointers do not need symbols): main → hot or cold →
    // spin, each shown as the file.
    let deep: u64 = folded
        .lines()
        .filter(|l| l.starts_with("stripped;") && l.contains(";[stripped];[stripped];[stripped] "))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert!(deep >= 100, "{folded}");
    assert!(!folded.contains("hot_three_quarters"), "{folded}");
    let line = stderr
        .lines()
        .find(|l| l.contains("frames without a symbol"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let in_files: u64 = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(in_files >= 3, "{line}");
}
