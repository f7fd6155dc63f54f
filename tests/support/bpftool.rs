//! bpftool as an independent witness of kernel state: which links exist, seen by another tool.

use std::process::Command;

/// Assert bpftool finds link `id` (while attached) or does not (after drop). Asks for that one
/// link (`bpftool link show id N`), not the list: listing opens every link on the system, and an
/// fd bpftool holds on another test's link for a moment would delay that link's detach.
pub fn assert_link_listed(id: u32, listed: bool) {
    let out = match Command::new("bpftool").args(["-j", "link", "show", "id", &id.to_string()]).output() {
        Ok(out) => out,
        Err(e) => {
            super::oracle_unavailable(&format!("bpftool cross-check of link {id}"), &format!("bpftool unavailable ({e})"));
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let found = out.status.success() && text.contains(&format!("\"id\":{id}"));
    assert_eq!(found, listed, "bpftool link show id {id}: {text} {}", String::from_utf8_lossy(&out.stderr));
}

/// How many programs `bpftool -j cgroup show DIR` lists as attached to the cgroup directory
/// (links and PROG_ATTACH alike); `None` (a [`super::skip`]) without bpftool.
pub fn cgroup_prog_count(dir: &std::path::Path) -> Option<usize> {
    let out = match Command::new("bpftool").args(["-j", "cgroup", "show"]).arg(dir).output() {
        Ok(out) => out,
        Err(e) => {
            super::oracle_unavailable(&format!("bpftool cross-check of cgroup {}", dir.display()), &format!("bpftool unavailable ({e})"));
            return None;
        }
    };
    assert!(out.status.success(), "bpftool cgroup show {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap().matches("{\"id\":").count())
}

/// Assert bpftool lists `n` programs on the cgroup directory `dir` (when bpftool is there).
pub fn assert_cgroup_progs(dir: &std::path::Path, n: usize) {
    if let Some(listed) = cgroup_prog_count(dir) {
        assert_eq!(listed, n, "bpftool cgroup show {}", dir.display());
    }
}

/// Whether bpftool runs here; when it does not, `test` skips saying so ([`super::skip`]: a
/// failure in CI, where `scripts/setup.sh` installs it).
pub fn bpftool_or_skip(test: &str) -> bool {
    if Command::new("bpftool").arg("version").output().is_ok() {
        return true;
    }
    super::skip(&format!("{test}: bpftool is not installed (scripts/setup.sh installs it)"));
    false
}

/// Every bpf_link the kernel has, as `bpftool -j link list` reports them: (link id, program id).
pub fn links() -> Vec<(u32, u32)> {
    let out = Command::new("bpftool").args(["-j", "link", "list"]).output().expect("bpftool runs");
    assert!(out.status.success(), "bpftool link list: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let number = |obj: &str, key: &str| -> Option<u32> {
        let at = obj.find(&format!("\"{key}\":"))? + key.len() + 3;
        obj[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
    };
    // `[{"id":12,"type":"perf_event","prog_id":34},…]`: each link's object starts with its id.
    text.split("{\"id\":")
        .skip(1)
        .map(|obj| {
            let obj = format!("{{\"id\":{obj}");
            (number(&obj, "id").expect("link id"), number(&obj, "prog_id").expect("prog_id"))
        })
        .collect()
}
