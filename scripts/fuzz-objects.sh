#!/usr/bin/env bash
# Mutated BPF objects, RUNS cases (default 1,000,000), outside the normal test run: the
# property of tests/object_fuzz.rs in release mode. Every case must be refused with an error
# that names what is wrong, or open (and relocate) cleanly; a panic fails the run.
#
#   scripts/fuzz-objects.sh                 # 1,000,000 cases
#   RUNS=5000000 scripts/fuzz-objects.sh
set -euo pipefail
RUNS="${RUNS:-1000000}"
cd "$(dirname "$0")/.."
start=$(date +%s)
PROPTEST_CASES="$RUNS" cargo test --release --test object_fuzz -- mutated_objects --nocapture
echo "done: $RUNS mutated objects in $(( $(date +%s) - start )) s (including the build)"
