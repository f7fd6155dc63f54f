//! `bpfkit-profile alloc` against a program of known allocations, built here: `leak_here` keeps
//! 37 malloc'd blocks (1000..1036 bytes), `freed_here` mallocs and frees 200, `calloc_leak`
//! keeps 5 calloc(4, 100), `realloc_leak` grows 3 malloc(16) blocks to 4096 with realloc and
//! keeps them. Outstanding at the end must be exactly those, at those stacks; the freed ones
//! absent; and the allocation counts (pprof's alloc_objects/alloc_space) exact too.

#[path = "../../../tests/support/mod.rs"]
mod support;
mod workload;

use std::collections::HashMap;
use std::process::Command;

use bpfkit_profile::pprof::PprofProfile;

const OURS: &str = env!("CARGO_BIN_EXE_bpfkit-profile");

const WORKLOAD: &str = r#"
#include <stdlib.h>
#include <stdio.h>
void *kept[64];
__attribute__((noinline)) void leak_here(int n) { for (int i = 0; i < n; i++) kept[i] = malloc(1000 + i); }
__attribute__((noinline)) void freed_here(int n) { for (int i = 0; i < n; i++) { void *p = malloc(5000 + i); free(p); } }
__attribute__((noinline)) void calloc_leak(int n) { for (int i = 0; i < n; i++) kept[40 + i] = calloc(4, 100); }
__attribute__((noinline)) void realloc_leak(int n) { for (int i = 0; i < n; i++) { void *p = malloc(16); kept[50 + i] = realloc(p, 4096); } }
int main(void) {
    leak_here(37);
    freed_here(200);
    calloc_leak(5);
    realloc_leak(3);
    return 0;
}
"#;

/// pprof values [inuse_objects, inuse_space, alloc_objects, alloc_space] summed over the samples
/// whose innermost frame is `function`.
fn at(p: &PprofProfile, function: &str) -> [i64; 4] {
    let names: HashMap<u64, &str> = p
        .function
        .iter()
        .map(|f| (f.id, p.string_table[f.name as usize].as_str()))
        .collect();
    let loc: HashMap<u64, &str> = p
        .location
        .iter()
        .map(|l| (l.id, names[&l.line[0].function_id]))
        .collect();
    let mut sum = [0i64; 4];
    for s in p
        .sample
        .iter()
        .filter(|s| s.location_id.first().map(|l| loc[l]) == Some(function))
    {
        for (acc, v) in sum.iter_mut().zip(&s.value) {
            *acc += v;
        }
    }
    sum
}

#[test]
fn outstanding_allocations_are_exactly_the_ones_never_freed() {
    if !support::kernel_or_skip("bpfkit-profile alloc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let work = workload::build_c(dir.path(), "leaky", WORKLOAD);
    let (folded, pprof) = (
        dir.path().join("alloc.folded"),
        dir.path().join("alloc.pb.gz"),
    );
    let out = Command::new(OURS)
        .args(["alloc", "--folded-file"])
        .arg(&folded)
        .arg("--pprof")
        .arg(&pprof)
        .arg("--")
        .arg(&work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&folded).unwrap();
    eprintln!("{text}");
    // Outstanding bytes by stack, exact: the command ended (its mappings read as it exited).
    let bytes = |f: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("leaky;") && l.contains(&format!(";main;{f} ")))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(bytes("leak_here"), (0..37).map(|i| 1000 + i).sum::<u64>());
    assert_eq!(bytes("calloc_leak"), 5 * 400);
    assert_eq!(bytes("realloc_leak"), 3 * 4096);
    assert!(
        !text.contains("freed_here"),
        "freed allocations are not outstanding:\n{text}"
    );

    let p = bpfkit_profile::pprof::read(&std::fs::read(&pprof).unwrap()).unwrap();
    let types: Vec<&str> = p
        .sample_type
        .iter()
        .map(|t| p.string_table[t.r#type as usize].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "inuse_objects",
            "inuse_space",
            "alloc_objects",
            "alloc_space"
        ]
    );
    assert_eq!(at(&p, "leak_here"), [37, 37666, 37, 37666]);
    assert_eq!(
        at(&p, "freed_here"),
        [0, 0, 200, (0..200).map(|i| 5000 + i).sum::<i64>()]
    );
    assert_eq!(at(&p, "calloc_leak"), [5, 2000, 5, 2000]);
    // Each malloc(16) was freed by its realloc; the 4096-byte results stay.
    assert_eq!(at(&p, "realloc_leak"), [3, 3 * 4096, 6, 3 * 16 + 3 * 4096]);

    // --objects: the same stacks counted in allocations.
    let out = Command::new(OURS)
        .args(["alloc", "--objects", "-f", "--"])
        .arg(&work)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("leaky;") && l.ends_with(";main;leak_here 37")),
        "{text}"
    );
}
