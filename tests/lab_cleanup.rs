//! Kernel test: the labs that create namespaces, veth pairs, qdiscs, cgroups and links (chapters
//! 7–10) leave nothing behind — when they succeed, and when they are interrupted with Ctrl-C in
//! the middle (SIGINT to the lab's process group, as a terminal sends it). After each run the
//! machine's state must equal what it was before: `ip netns list`, the host's interfaces and
//! qdiscs, the cgroup v2 tree, `bpftool link list` and `bpftool prog list`, the bpffs pins, and no
//! process left in the lab's process group.
//!
//! The labs are the example binaries `cargo test --all-targets` builds (`target/*/examples/`).

mod support;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which labs: the chapters whose labs make kernel objects outside their own process.
const CHAPTERS: [u32; 4] = [7, 8, 9, 10];

/// What a lab could leave behind, as sorted lines per source.
#[derive(Debug, PartialEq, Eq)]
struct State(Vec<(&'static str, BTreeSet<String>)>);

fn lines(cmd: &[&str]) -> BTreeSet<String> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// bpftool's object ids (`"id": N` of its JSON list).
fn bpftool_ids(what: &str) -> BTreeSet<String> {
    let out = Command::new("bpftool").args([what, "list", "-j"]).output().expect("bpftool");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("\"id\":").skip(1).filter_map(|s| s.split([',', '}']).next()).map(|s| format!("{what} {}", s.trim())).collect()
}

fn dirs_under(root: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.insert(e.path().display().to_string());
            dirs_under(&e.path(), out);
        }
    }
}

fn snapshot() -> State {
    let mut cgroups = BTreeSet::new();
    dirs_under(&bpfkit::os::cgroup2_mount().expect("a cgroup2 mount"), &mut cgroups);
    let mut pins = BTreeSet::new();
    dirs_under(Path::new("/sys/fs/bpf"), &mut pins);
    if let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") {
        pins.extend(entries.flatten().map(|e| e.path().display().to_string()));
    }
    State(vec![
        ("ip netns list", lines(&["ip", "netns", "list"])),
        ("host interfaces", lines(&["ip", "-o", "link", "show"]).into_iter().map(|l| l.split(':').nth(1).unwrap_or_default().trim().to_string()).collect()),
        ("host qdiscs", lines(&["tc", "qdisc", "show"])),
        ("cgroup v2 tree", cgroups),
        ("bpf links", bpftool_ids("link")),
        ("bpf programs", bpftool_ids("prog")),
        ("bpffs pins", pins),
    ])
}

/// Processes still in process group `pgid`.
fn group_members(pgid: u32) -> Vec<String> {
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        let Some((head, tail)) = stat.rsplit_once(") ") else { continue };
        if tail.split(' ').nth(2) == Some(&pgid.to_string()) {
            left.push(head.to_string() + ")");
        }
    }
    left
}

/// What differs between two snapshots, named by source.
fn differences(before: &State, after: &State) -> Vec<String> {
    let mut out = Vec::new();
    for ((what, a), (_, b)) in before.0.iter().zip(&after.0) {
        let added: Vec<_> = b.difference(a).collect();
        if !added.is_empty() {
            out.push(format!("{what}: left behind {added:?}"));
        }
    }
    out
}

/// The state after a run must return to `before` (namespaces and their links go asynchronously
/// once the last reference closes: give the kernel a few seconds).
fn assert_clean(lab: &str, how: &str, before: &State, pgid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let diff = differences(before, &snapshot());
        let members = group_members(pgid);
        if diff.is_empty() && members.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{lab} ({how}) left things behind:\n  {}\n  processes: {members:?}", diff.join("\n  "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Run `bin` in a process group of its own, interrupting it with SIGINT after `interrupt_after`
/// (as a terminal's Ctrl-C reaches every process of the foreground group). Returns its run time.
fn run(bin: &Path, interrupt_after: Option<Duration>) -> (Duration, u32, std::process::ExitStatus, String) {
    let start = Instant::now();
    let mut child = Command::new(bin).process_group(0).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start the lab");
    let pgid = child.id();
    if let Some(after) = interrupt_after {
        while start.elapsed() < after {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = Command::new("kill").args(["-INT", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
    }
    let out = child.wait_with_output().expect("wait for the lab");
    (start.elapsed(), pgid, out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn network_and_cgroup_labs_leave_nothing_behind() {
    if !support::kernel_or_skip("lab clean-up") {
        return;
    }
    let examples = std::env::current_exe().unwrap().parent().and_then(Path::parent).unwrap().join("examples");
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut labs: Vec<(String, PathBuf)> = std::fs::read_dir(&sources)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().strip_suffix(".rs")?.to_string();
            let chapter: u32 = name.strip_prefix("lab_")?.split('_').next()?.parse().ok()?;
            CHAPTERS.contains(&chapter).then(|| (name.clone(), examples.join(&name)))
        })
        .collect();
    labs.sort();
    assert!(labs.len() >= 4, "{labs:?}");
    for (name, bin) in &labs {
        let fresh = bin.metadata().and_then(|m| m.modified()).ok() >= sources.join(format!("{name}.rs")).metadata().and_then(|m| m.modified()).ok();
        assert!(bin.exists() && fresh, "{} is missing or older than its source: build the examples (`cargo test --all-targets` or `cargo build --examples`)", bin.display());
    }
    for (name, bin) in &labs {
        let before = snapshot();
        let (took, pgid, status, stderr) = run(bin, None);
        assert!(status.success(), "{name} failed: {stderr}");
        assert_clean(name, "after success", &before, pgid);
        // Interrupted early (set-up) and late (traffic, measurement).
        for fraction in [0.3, 0.7] {
            let before = snapshot();
            let at = took.mul_f64(fraction);
            let (_, pgid, status, _) = run(bin, Some(at));
            assert_clean(name, &format!("Ctrl-C after {} ms", at.as_millis()), &before, pgid);
            eprintln!("{name}: clean after success ({} ms) and after Ctrl-C at {} ms ({status})", took.as_millis(), at.as_millis());
        }
    }
}
