//! Shared test support: conformance files, and the one place that decides to skip.
#![allow(dead_code)]

pub mod bpftool;
pub mod cgroup;
pub mod conformance;
pub mod libbpf_btf;
pub mod patterns;
pub mod probe;
pub mod progs;
pub mod veth;
pub mod witness;

fn required() -> bool {
    std::env::var("BPFKIT_REQUIRE_KERNEL").is_ok_and(|v| v == "1")
}

/// Skip a test with a one-line reason. Under `BPFKIT_REQUIRE_KERNEL=1` (CI) a skip is a failure:
/// this is for what the machine should have and does not (privileges, a tool, a file). A
/// feature the kernel itself lacks goes through [`kernel_lacks`].
pub fn skip(reason: &str) {
    if required() {
        panic!("required but skipped: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// An oracle tool (bpftool, ip, tc) could not run, so the cross-check `check` is left out.
/// On the host that is a [`skip`] (`scripts/setup.sh` installs them, so CI fails without them);
/// inside the second kernel's VM (`BPFKIT_KERNEL2=1`), whose initramfs holds busybox and the
/// test binaries only, it is a note: the same checks ran on the host.
pub fn oracle_unavailable(check: &str, why: &str) {
    if std::env::var("BPFKIT_KERNEL2").is_ok_and(|v| v == "1") {
        eprintln!("note: {check} left out in the second kernel's VM: {why}");
    } else {
        skip(&format!("{check}: {why}"));
    }
}

/// What an independent tool ([`witness`]: libbpf 1.7, the kernel's BTF read by libbpf, tracefs)
/// says of a feature bpfkit found missing.
#[derive(Debug)]
pub enum Witness {
    /// It agrees the kernel lacks it; how it knows.
    Confirms(String),
    /// It says the kernel has it: bpfkit's verdict is wrong.
    Contradicts(String),
    /// It could not be asked, or could not tell.
    Absent(String),
}

/// The one way a test gives up on something because the running kernel does not do it. `ours`
/// is bpfkit's evidence (the probe's or the operation's errno and reason). A refusal an
/// independent witness confirms is not a failure, even under `BPFKIT_REQUIRE_KERNEL=1`: machines
/// of this kind differ by kernel build. A witness that contradicts it fails the test (a bpfkit
/// bug would otherwise pass as "the kernel refuses"), and one that cannot tell is an ordinary
/// [`skip`], a failure in CI. The kernel's version never decides.
pub fn kernel_lacks(test: &str, what: &str, ours: &str, witness: Witness) {
    match witness {
        Witness::Confirms(w) => eprintln!("skipped: {test}: this kernel lacks {what} ({ours}); confirmed: {w}"),
        Witness::Contradicts(w) => panic!("{test}: bpfkit says this kernel lacks {what} ({ours}), but {w}"),
        Witness::Absent(w) => skip(&format!("{test}: this kernel seems to lack {what} ({ours}); unconfirmed: {w}")),
    }
}

/// Whether bpf(2) works here (root, or CAP_BPF). Prints the skip reason when it does not.
pub fn kernel_or_skip(test: &str) -> bool {
    use bpfkit::maps::{Map, MapSpec, MapType};
    match Map::create(&MapSpec::new("probe", MapType::Array, 4, 4, 1)) {
        Ok(_) => true,
        Err(e) => {
            skip(&format!("{test}: bpf(2) unavailable ({e}); run as root"));
            false
        }
    }
}

/// Pin the calling thread to `cpu` (per-CPU buffers and events then see all its work).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY (test code): a zeroed cpu_set_t with one bit set, for this thread (pid 0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0, "sched_setaffinity({cpu})");
    }
}

/// Assert that link `id` is gone from the kernel within 5 s of its last fd closing. Not at once:
/// the kernel may release a link from a workqueue (`bpf_link_put_deferred`), and a concurrent
/// test listing links (`bpfkit link list`, bpftool) holds each one open for a moment.
pub fn assert_link_gone(id: u32) {
    let start = std::time::Instant::now();
    while bpfkit::attach::Link::all_ids().unwrap().contains(&id) {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "link {id} still exists 5 s after it was released");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
