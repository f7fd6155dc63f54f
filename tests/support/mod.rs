//! Shared test support: conformance files, and the one place that decides to skip.
#![allow(dead_code)]

pub mod conformance;

/// Skip a test with a one-line reason. Under `BPFKIT_REQUIRE_KERNEL=1` (CI) a skip is a failure.
pub fn skip(reason: &str) {
    if std::env::var("BPFKIT_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
        panic!("required but skipped: {reason}");
    }
    eprintln!("skipped: {reason}");
}
