//! The test workloads: small C programs built by the tests themselves, with frame pointers in
//! every function (-O0: gcc keeps no frame in a leaf function at -O1 even with
//! -fno-omit-frame-pointer, and the leaf's caller would vanish from the stacks).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `source` compiled by gcc into `dir/name` (`-O0 -fno-omit-frame-pointer -pthread`).
pub fn build_c(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let bin = dir.join(name);
    let status = Command::new("gcc")
        .args(["-O0", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("gcc (scripts/setup.sh installs it)");
    assert!(status.success(), "gcc {}", src.display());
    bin
}
