//! A child cgroup v2 directory for one test, removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where cgroup v2 is mounted on the test machines.
pub const CGROUP2: &str = "/sys/fs/cgroup/unified";

pub struct ChildCgroup(pub PathBuf);

impl ChildCgroup {
    /// `<cgroup2>/bpfkit-<tag>-<pid>`.
    pub fn new(tag: &str) -> ChildCgroup {
        let path = Path::new(CGROUP2).join(format!("bpfkit-{tag}-{}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        ChildCgroup(path)
    }

    /// The directory, open (what cgroup attach and cgroup maps take).
    pub fn open(&self) -> std::fs::File {
        std::fs::File::open(&self.0).unwrap()
    }

    /// The cgroup's id: its directory's inode number.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.0).unwrap().ino()
    }

    /// `bash -c` running `script` after moving itself into this cgroup.
    pub fn bash(&self, script: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg("-c").arg(format!("echo $$ > {}/cgroup.procs && {script}", self.0.display())).stdin(Stdio::null());
        c
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
