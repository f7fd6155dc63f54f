//! `bpfkit-profile offcpu` against a thread that sleeps a known time: a C program, built here,
//! whose thread `sleeper` calls `sleep_known_time` five times (200 ms each) and prints how long
//! that took by its own clock. The off-CPU nanoseconds counted at that stack must be that time
//! within ±10%; with `--min-block` above 200 ms they must be absent while the main thread's
//! one-second `pthread_join` stays. A thread still blocked when the profile ends is counted up
//! to the end.

#[path = "../../../tests/support/mod.rs"]
mod support;
mod workload;

use std::process::Command;

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-profile");

const WORKLOAD: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <sys/syscall.h>
/* nanosleep made here, not in libc: libc keeps no frame pointers, and a stack walked from inside
   it skips the function that called it (sleep_known_time would vanish). */
__attribute__((noinline)) static long raw_nanosleep(const struct timespec *ts) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "0"((long)SYS_nanosleep), "D"(ts), "S"(0L) : "rcx", "r11", "memory");
    return ret;
}
__attribute__((noinline)) void sleep_known_time(void) {
    struct timespec ts = {0, 200 * 1000 * 1000};
    raw_nanosleep(&ts);
}
static void *sleeper(void *arg) {
    (void)arg;
    /* Named by itself, before its first sleep (named by main, a sleep could come first). */
    pthread_setname_np(pthread_self(), "sleeper");
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 5; i++) sleep_known_time();
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("slept_ns %lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return 0;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, 0, sleeper, 0);
    pthread_join(t, 0);
    return 0;
}
"#;

/// (the workload's own measure of its sleeps, folded lines)
fn run(min_block_us: &str, extra: &[&str]) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "blocker", WORKLOAD);
    let folded = dir.path().join("offcpu.folded");
    let out = Command::new(OURS)
        .args(["offcpu", "-m", min_block_us])
        .args(extra)
        .arg("--folded-file")
        .arg(&folded)
        .arg("--")
        .arg(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slept: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("slept_ns "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap();
    (slept, std::fs::read_to_string(&folded).unwrap())
}

fn ns_where(folded: &str, pred: impl Fn(&str) -> bool) -> u64 {
    folded
        .lines()
        .filter(|l| pred(l))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_thread_sleeping_a_known_time_is_counted_at_its_stack() {
    if !support::kernel_or_skip("bpfkit-profile offcpu") {
        return;
    }
    for via in [&[][..], &["--raw-tracepoint"][..]] {
        let (slept, folded) = run("1", via);
        check_known_sleep(slept, &folded, via);
    }
}

fn check_known_sleep(slept: u64, folded: &str, via: &[&str]) {
    let at_stack = ns_where(folded, |l| {
        l.starts_with("sleeper;") && l.contains(";sleeper;sleep_known_time;raw_nanosleep;-;")
    });
    let ratio = at_stack as f64 / slept as f64;
    eprintln!("{via:?} off-CPU at sleep_known_time: {at_stack} ns; the thread's own clock: {slept} ns ({:.2}%)", 100.0 * ratio);
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{at_stack} ns counted, {slept} ns slept:\n{folded}"
    );
    // The kernel half of that stack is the nanosleep path, without our own tracing frames.
    let line = folded
        .lines()
        .find(|l| l.contains("sleep_known_time"))
        .unwrap();
    assert!(
        line.contains("hrtimer_nanosleep") || line.contains("do_nanosleep"),
        "{line}"
    );
    assert!(
        !line.contains("bpf_prog_") && !line.contains("__traceiter_"),
        "{line}"
    );
    // The main thread blocked in pthread_join (a futex) for about as long.
    let joined = ns_where(folded, |l| l.starts_with("blocker;") && l.contains("futex"));
    assert!(
        joined as f64 >= 0.9 * slept as f64,
        "main thread's futex wait: {joined} ns:\n{folded}"
    );
}

#[test]
fn min_block_drops_shorter_blocks() {
    if !support::kernel_or_skip("bpfkit-profile offcpu -m") {
        return;
    }
    let (slept, folded) = run("300000", &[]);
    assert_eq!(
        ns_where(&folded, |l| l.contains("sleep_known_time")),
        0,
        "200 ms sleeps are under -m 300 ms:\n{folded}"
    );
    let joined = ns_where(&folded, |l| {
        l.starts_with("blocker;") && l.contains("futex")
    });
    assert!(
        joined as f64 >= 0.9 * slept as f64,
        "the 1 s join stays: {joined} ns:\n{folded}"
    );
}

#[test]
fn a_thread_still_blocked_at_the_end_is_counted_up_to_the_end() {
    if !support::kernel_or_skip("bpfkit-profile offcpu, blocked at the end") {
        return;
    }
    // `sleep 3` blocks from its start; the profile ends after 1 s, while it still sleeps (it
    // goes on, unprofiled, and ends by itself).
    // (`output()` returns when `sleep` closes the inherited pipe too, 3 s in: not a measure.)
    let out = Command::new(OURS)
        .args(["offcpu", "-d", "1", "-f", "--", "sleep", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folded = String::from_utf8_lossy(&out.stdout);
    let asleep = ns_where(&folded, |l| {
        l.starts_with("sleep;") && l.contains("nanosleep")
    });
    eprintln!("sleep blocked {asleep} ns of a 1 s profile");
    assert!(
        (800_000_000..=1_300_000_000).contains(&asleep),
        "{asleep} ns counted for a 1 s profile:\n{folded}"
    );
}
