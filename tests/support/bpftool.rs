//! bpftool as an independent witness of kernel state: which links exist, seen by another tool.

use std::process::Command;

/// The ids of every bpf_link the kernel has, as `bpftool -j link list` reports them; `None`
/// (with one printed line) where bpftool is not installed, as in the second kernel's initramfs.
/// `scripts/setup.sh` installs it, so on CI hosts the cross-check always runs.
pub fn link_ids() -> Option<Vec<u32>> {
    let out = match Command::new("bpftool").args(["-j", "link", "list"]).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("bpftool cross-check not run: bpftool unavailable ({e})");
            return None;
        }
    };
    assert!(out.status.success(), "bpftool link list: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // `[{"id":12,"type":"tracing",…},…]`: every top-level object starts with its "id".
    Some(text.match_indices("{\"id\":").map(|(i, m)| text[i + m.len()..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()).collect())
}

/// Assert bpftool lists link `id` (while attached) or does not (after drop).
pub fn assert_link_listed(id: u32, listed: bool) {
    if let Some(ids) = link_ids() {
        assert_eq!(ids.contains(&id), listed, "bpftool link list {} link {id}: {ids:?}", if listed { "lacks" } else { "still shows" });
    }
}

/// How many programs `bpftool -j cgroup show DIR` lists as attached to the cgroup directory
/// (links and PROG_ATTACH alike); `None` without bpftool.
pub fn cgroup_prog_count(dir: &std::path::Path) -> Option<usize> {
    let out = Command::new("bpftool").args(["-j", "cgroup", "show"]).arg(dir).output().ok()?;
    assert!(out.status.success(), "bpftool cgroup show {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().matches("{\"id\":").count())
}

/// Assert bpftool lists `n` programs on the cgroup directory `dir` (when bpftool is there).
pub fn assert_cgroup_progs(dir: &std::path::Path, n: usize) {
    if let Some(listed) = cgroup_prog_count(dir) {
        assert_eq!(listed, n, "bpftool cgroup show {}", dir.display());
    }
}
