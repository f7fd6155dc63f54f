//! `bpfkit-profile lock` against contention the tests cause: two threads of a C program, built
//! here, taking one pthread mutex and holding it 10 ms at a time (the other sleeps in a futex
//! wait meanwhile) — the contended stack must be named with its waits; and four threads mapping
//! and unmapping memory in one process, which contend the kernel's mmap_lock — counted through
//! lock:contention_begin/end where the kernel has them; and a thread still waiting when the
//! profile ends, counted up to the end.

#[path = "../../../tests/support/mod.rs"]
mod support;
mod workload;

use std::path::Path;
use std::process::Command;

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-profile");

const CONTEND: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <time.h>
static pthread_mutex_t contended = PTHREAD_MUTEX_INITIALIZER;
/* The call into libc: libc keeps no frame pointers, so a stack walked from inside
   pthread_mutex_lock skips this frame (its caller, lock_contended_here, is the first seen). */
__attribute__((noinline)) void take_lock(void) { pthread_mutex_lock(&contended); }
__attribute__((noinline)) void lock_contended_here(void) {
    for (int i = 0; i < 20; i++) {
        take_lock();
        struct timespec held = {0, 10 * 1000 * 1000};
        nanosleep(&held, 0);
        pthread_mutex_unlock(&contended);
        struct timespec gap = {0, 1000 * 1000};
        nanosleep(&gap, 0);
    }
}
static void *worker(void *arg) { (void)arg; lock_contended_here(); return 0; }
int main(void) {
    pthread_t a, b;
    pthread_create(&a, 0, worker, 0);
    pthread_create(&b, 0, worker, 0);
    pthread_join(a, 0);
    pthread_join(b, 0);
    return 0;
}
"#;

const MMAPPER: &str = r#"
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
__attribute__((noinline)) void map_and_unmap(void) {
    double end = now() + 1.0;
    while (now() < end) {
        void *p = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        munmap(p, 1 << 16);
    }
}
static void *worker(void *arg) { (void)arg; map_and_unmap(); return 0; }
int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, worker, 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    return 0;
}
"#;

fn folded(args: &[&str], work: &Path) -> String {
    let out = Command::new(OURS)
        .args(["lock", "-f"])
        .args(args)
        .arg("--")
        .arg(work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sum(text: &str, pred: impl Fn(&str) -> bool) -> u64 {
    text.lines()
        .filter(|l| pred(l))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn a_contended_pthread_mutex_is_named_by_its_stack() {
    if !support::kernel_or_skip("bpfkit-profile lock") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "contend", CONTEND);
    let contended = |l: &str| {
        l.starts_with("contend;")
            && l.contains(";worker;lock_contended_here;")
            && l.rsplit_once(' ').unwrap().0.ends_with(";[futex]")
    };
    let text = folded(&[], &work);
    eprintln!("{text}");
    // 40 lock-holds of 10 ms each, by two threads: whichever waits, waits most of a hold.
    let waited = sum(&text, contended);
    assert!(
        waited >= 100_000_000,
        "the contended stack waited {waited} ns:\n{text}"
    );
    // The wrapper that called into libc is the frame a frame-pointer walk loses.
    assert!(!text.contains("take_lock"), "{text}");
    // --count: the same stack weighted by waits, at least 10 of the 40 acquisitions.
    let text = folded(&["--count"], &work);
    let waits = sum(&text, contended);
    assert!((10..=40).contains(&waits), "{waits} waits:\n{text}");
}

#[test]
fn contended_kernel_locks_are_counted_where_the_kernel_has_the_tracepoints() {
    if !support::kernel_or_skip("bpfkit-profile lock (kernel)") {
        return;
    }
    if !bpfkit_profile::lock::kernel_locks_available() {
        support::skip("bpfkit-profile lock (kernel): no lock:contention_begin/end tracepoints in this kernel's tracefs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "mmapper", MMAPPER);
    let text = folded(&[], &work);
    let kernel = sum(&text, |l| {
        l.starts_with("mmapper;")
            && l.contains(";[kernel-")
            && ["mmap", "munmap", "madvise"].iter().any(|f| l.contains(f))
    });
    assert!(
        kernel > 0,
        "four threads mapping and unmapping for 1 s contend mmap_lock:\n{text}"
    );
    let text = folded(&["--no-kernel"], &work);
    assert!(!text.contains("[kernel-"), "{text}");
}

const STUCK: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <unistd.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static void *waiter(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "stuck");
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
    return 0;
}
int main(void) {
    pthread_t t;
    pthread_mutex_lock(&m);
    pthread_create(&t, 0, waiter, 0);
    sleep(3);
    pthread_mutex_unlock(&m);
    pthread_join(t, 0);
    return 0;
}
"#;

#[test]
fn a_wait_still_going_on_at_the_end_is_counted_up_to_the_end() {
    if !support::kernel_or_skip("bpfkit-profile lock, waiting at the end") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "stuck", STUCK);
    // The profile ends after 1 s; the thread waits 3 s for the mutex main holds.
    let text = folded(&["-d", "1"], &work);
    let waited = sum(&text, |l| l.starts_with("stuck;") && l.rsplit_once(' ').unwrap().0.ends_with(";[futex]"));
    eprintln!("stuck waited {waited} ns in a 1 s profile");
    assert!((800_000_000..=1_300_000_000).contains(&waited), "{waited} ns:\n{text}");
}
