//! `bpfkit-profile io` against a loop device the test makes (over a 16 MiB file, detached and
//! removed when the test ends, also when it fails): `dd` with O_DIRECT writes 50 blocks, then
//! reads 30; each is one request on the loop device, so its histogram must count exactly 50 and
//! then 30, and the issuing stack must be dd's direct-I/O path — also when timed from the older
//! block_rq_issue/complete pair (`--rq-tracepoints`).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::process::Command;

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-profile");

/// A loop device over a temporary file; detached when dropped.
struct LoopDevice {
    path: String,
    _backing: tempfile::NamedTempFile,
}

impl LoopDevice {
    fn new() -> Option<LoopDevice> {
        let backing = tempfile::NamedTempFile::new().unwrap();
        backing.as_file().set_len(16 << 20).unwrap();
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing.path())
            .output()
            .ok()?;
        if !out.status.success() {
            support::skip(&format!(
                "bpfkit-profile io: losetup: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
            return None;
        }
        Some(LoopDevice {
            path: String::from_utf8(out.stdout).unwrap().trim().to_string(),
            _backing: backing,
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .args(["--detach", &self.path])
            .status();
    }
}

/// The I/O count the histogram of `device` reports, and the sum of its buckets.
fn histogram_of(stdout: &str, device: &str) -> (u64, u64) {
    let header = format!("device {device} (");
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(&header));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no histogram for {device}:\n{stdout}"));
    let total: u64 = first
        .rsplit_once(": ")
        .unwrap()
        .1
        .trim_end_matches(" I/Os")
        .parse()
        .unwrap();
    let buckets: u64 = lines
        .skip(1)
        .take_while(|l| l.contains("->"))
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap()
                .split('|')
                .next()
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    (total, buckets)
}

#[test]
fn direct_ios_on_a_loop_device_are_counted_exactly() {
    if !support::kernel_or_skip("bpfkit-profile io") {
        return;
    }
    let Some(disk) = LoopDevice::new() else {
        return;
    };
    let name = disk.path.trim_start_matches("/dev/");
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        (
            50u64,
            [
                "if=/dev/zero".to_string(),
                format!("of={}", disk.path),
                "oflag=direct".into(),
            ],
        ),
        (
            30,
            [
                format!("if={}", disk.path),
                "of=/dev/null".into(),
                "iflag=direct".into(),
            ],
        ),
    ];
    for (via, (n, args)) in [
        (None, runs[0].clone()),
        (None, runs[1].clone()),
        (Some("--rq-tracepoints"), runs[0].clone()),
    ] {
        let folded = dir.path().join("io.folded");
        let out = Command::new(OURS)
            .arg("io")
            .args(via)
            .arg("--folded-file")
            .arg(&folded)
            .args(["--", "dd", "bs=4096", &format!("count={n}")])
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{stdout}");
        assert_eq!(histogram_of(&stdout, name), (n, n), "{stdout}");
        // By stack: dd's n requests issued from its direct-I/O system call.
        let text = std::fs::read_to_string(&folded).unwrap();
        let direct: u64 = text
            .lines()
            .filter(|l| {
                l.starts_with("dd;")
                    && l.contains("__blkdev_direct_IO")
                    && l.rsplit_once(' ')
                        .unwrap()
                        .0
                        .ends_with(&format!(";[{name}]"))
            })
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(direct, n, "{text}");
    }
}
