#!/usr/bin/env bash
# Fuzz the text grammar and the wire decoder with at least RUNS (default 1,000,000) cases.
#
#   scripts/fuzz-grammar.sh            # 1,000,000 cases
#   RUNS=10000000 scripts/fuzz-grammar.sh
#
# With a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`) this runs the
# libFuzzer target fuzz/fuzz_targets/grammar.rs (parse_program on arbitrary UTF-8 in every
# dialect; decode_bytes on arbitrary bytes, re-encoded and compared). Without them it falls
# back to the proptest "never panics" properties of tests/property.rs, in release mode,
# with PROPTEST_CASES=RUNS (each of those properties runs RUNS cases).
# Force the fallback with FUZZ_ENGINE=proptest.
set -euo pipefail

RUNS="${RUNS:-1000000}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

have_libfuzzer() {
    [[ "${FUZZ_ENGINE:-}" != proptest ]] &&
        rustup toolchain list 2>/dev/null | grep -q '^nightly' &&
        cargo fuzz --version >/dev/null 2>&1
}

if have_libfuzzer; then
    cd fuzz
    mkdir -p corpus/grammar
    # Seed the corpus with the LLVM fixture's instruction texts, 8 lines per file.
    if [[ -z "$(ls -A corpus/grammar)" ]]; then
        grep -v '^#' ../tests/fixtures/llvm/forms.expected | cut -f1 | split -l 8 - corpus/grammar/seed-
    fi
    echo "libFuzzer: $RUNS runs of fuzz/fuzz_targets/grammar.rs"
    start=$(date +%s)
    cargo +nightly fuzz run grammar -- \
        -runs="$RUNS" -dict=grammar.dict -max_len=512 -print_final_stats=1
    echo "done: $RUNS runs in $(( $(date +%s) - start )) s (including the build)"
else
    echo "nightly/cargo-fuzz unavailable: proptest never_panics properties, PROPTEST_CASES=$RUNS each"
    start=$(date +%s)
    PROPTEST_CASES="$RUNS" cargo test --release --test property -- never_panics
    echo "done: $RUNS cases per property in $(( $(date +%s) - start )) s (including the build)"
fi
