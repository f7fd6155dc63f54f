#!/usr/bin/env bash
# bpfkit-profile's cpu mode against `perf record -g`, the same workload in one run of this
# script (docs/PERFORMANCE.md):
#
#   sudo scripts/bench-profile.sh            # RUNS=5 runs of each, the median
#
# The workload is the cpu test's shape (apps/profile/tests/cpu.rs) doing a fixed amount of work:
# ROUNDS rounds of hot_three_quarters (3 M loop iterations) then cold_one_quarter (1 M), built
# with -fno-omit-frame-pointer. It times itself from inside (CLOCK_MONOTONIC and its own CPU
# time), so a profiler's start-up and teardown are not counted as the cost on the workload; the
# whole command (profiler included) is timed too, and so is the step from recorded data to
# folded stacks (perf script | a fold in awk; bpfkit-profile has none: it writes them itself).
#
# Each profiler samples the command only, on the cpu-clock software event (this VM has no
# hardware PMU: perf falls back to cpu-clock by itself), at 99 Hz and at 999 Hz, with user and
# kernel stacks. Agreement: the share of samples whose stack holds hot_three_quarters, against
# the 75% the workload is built to have, from each profiler's stacks.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-300}
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
cargo build -q --release -p bpfkit-profile
BIN=$TARGET/release/bpfkit-profile
command -v perf >/dev/null || { echo "perf is missing (scripts/setup.sh installs linux-perf)"; exit 1; }

DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
cat >"$DIR/shape.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void spin(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i; }
__attribute__((noinline)) void hot_three_quarters(void) { spin(3000000); }
__attribute__((noinline)) void cold_one_quarter(void) { spin(1000000); }
static double secs(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    long rounds = argc > 1 ? atol(argv[1]) : 100;
    double w0 = secs(CLOCK_MONOTONIC), c0 = secs(CLOCK_PROCESS_CPUTIME_ID);
    for (long r = 0; r < rounds; r++) { hot_three_quarters(); cold_one_quarter(); }
    fprintf(stderr, "workload %.4f %.4f\n", secs(CLOCK_MONOTONIC) - w0, secs(CLOCK_PROCESS_CPUTIME_ID) - c0);
    return 0;
}
EOF
gcc -O0 -fno-omit-frame-pointer -o "$DIR/shape" "$DIR/shape.c"
WORK=("$DIR/shape" "$ROUNDS")

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
# once NAME CMD…: one run; appends the workload's own wall and CPU seconds, the whole command's
# wall seconds and the CPU seconds of everything it ran (profiler and workload: user + sys of
# the command and its reaped children) to NAME's files.
once() {
  local name=$1; shift
  local t0; t0=$(now)
  ( TIMEFORMAT='%3U %3S'; time "$@" >"$DIR/$name.out" 2>"$DIR/$name.err" ) 2>"$DIR/$name.time"
  awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }' >>"$DIR/$name.t"
  awk '/^workload / { print $2 >> "'"$DIR/$name.w"'"; print $3 >> "'"$DIR/$name.c"'"; c = $3 }
       END { getline line < "'"$DIR/$name.time"'"; split(line, u, " "); print u[1] + u[2] - c >> "'"$DIR/$name.own"'" }' "$DIR/$name.err"
}
# NAME's medians: "workload-wall workload-cpu whole-wall profiler-cpu".
medians() {
  local name=$1
  echo "$(median <"$DIR/$name.w") $(median <"$DIR/$name.c") $(median <"$DIR/$name.t") $(median <"$DIR/$name.own")"
}
# The share (%) of folded samples whose stack holds hot_three_quarters, of those holding either.
share() {
  awk '{ n = $NF; if ($0 ~ /hot_three_quarters/) h += n; else if ($0 ~ /cold_one_quarter/) c += n }
       END { if (h + c) printf "%.1f%% (%d samples)", 100 * h / (h + c), h + c; else print "no samples" }' "$1"
}
# perf script's callchains folded (comm;outer;…;inner count), as FlameGraph's stackcollapse-perf.
fold_perf() {
  awk 'function flush() { if (n) { s = comm; for (i = n; i >= 1; i--) s = s ";" f[i]; c[s]++ } n = 0 }
       /^[^ \t]/ { flush(); comm = $1; next }
       /^[ \t]+[0-9a-f]+ / { sym = $2; sub(/\+0x[0-9a-f]+$/, "", sym); f[++n] = sym; next }
       /^$/ { flush() }
       END { flush(); for (s in c) print s, c[s] }'
}

# The runs interleave (one of each configuration per round), so that a busy neighbour on this
# shared machine weighs on all of them alike; each figure is the median of RUNS.
for _ in $(seq "$RUNS"); do
  once base "${WORK[@]}"
  for hz in 99 999; do
    once "ours$hz" "$BIN" cpu -F "$hz" -f -- "${WORK[@]}"
    once "perf$hz" perf record -q -F "$hz" -g -o "$DIR/perf$hz.data" -- "${WORK[@]}"
  done
done
base=$(medians base)
printf '| run | workload wall | workload CPU | whole command | profiler CPU | to folded stacks | hot share |\n|---|---:|---:|---:|---:|---:|---:|\n'
row() { # label "wall cpu whole own" post share
  read -r w c t o <<<"$2"
  read -r bw bc _ _ <<<"$base"
  awk -v l="$1" -v w="$w" -v c="$c" -v t="$t" -v o="$o" -v bw="$bw" -v bc="$bc" -v p="$3" -v s="$4" \
    'BEGIN { printf "| %s | %.3f s (%+.1f%%) | %.3f s (%+.1f%%) | %.3f s | %.3f s | %s | %s |\n", l, w, 100 * (w / bw - 1), c, 100 * (c / bc - 1), t, o, p, s }'
}
row "not profiled" "$base" "–" "–"
for hz in 99 999; do
  row "bpfkit-profile cpu -F $hz" "$(medians "ours$hz")" "0 (written by the run)" "$(share "$DIR/ours$hz.out")"
  t0=$(now)
  perf script -i "$DIR/perf$hz.data" 2>/dev/null | fold_perf >"$DIR/perf$hz.folded"
  post=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f s", b - a }')
  row "perf record -F $hz -g" "$(medians "perf$hz")" "$post (perf script + fold)" "$(share "$DIR/perf$hz.folded")"
done
echo
echo "Top stacks, bpfkit-profile -F 999 (last run):"
sort -t' ' -k2 -nr "$DIR/ours999.out" | head -3 | awk '{ print "    " $0 }'
echo "Top stacks, perf record -F 999 -g (last run, folded):"
sort -t' ' -k2 -nr "$DIR/perf999.folded" | head -3 | awk '{ print "    " $0 }'
echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; kernel $(uname -r); $(perf --version); RUNS=$RUNS ROUNDS=$ROUNDS"
