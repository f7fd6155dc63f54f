#!/usr/bin/env bash
# bpfkit-strace against strace, whole programs, one run of this script (docs/PERFORMANCE.md):
#
#   sudo scripts/bench-strace.sh            # 5 runs of each, the median
#
# Workloads: a syscall-bound loop (dd, 1 byte at a time: 500,000 reads and 500,000 writes), a
# syscall-heavy walk (find over /usr), and a build step (gcc -O2 of a C file, the kind of work
# one traces to see which files a build opens). Each runs untraced, under bpfkit-strace, under strace, and
# under strace --seccomp-bpf, all tracing every call (-f, output to /dev/null). Then the cost to
# a process that is *not* traced while bpfkit-strace traces another one (its tracepoints are
# system-wide; the filter runs for every task's every call).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
cargo build -q --release -p bpfkit-strace
BIN=$(pwd)/target/release/bpfkit-strace
command -v strace >/dev/null || { echo "strace is missing (scripts/setup.sh installs it)"; exit 1; }

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }
# time_of CMD…: the median wall time of RUNS runs, in seconds.
time_of() {
  for _ in $(seq "$RUNS"); do
    local t0; t0=$(now)
    "$@" >/dev/null 2>&1
    awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.4f\n", b - a }'
  done | median
}

DD=(dd if=/dev/zero of=/dev/null bs=1 count=500000)
FIND=(find /usr -name '*.so*')
# A build step of a few seconds: gcc -O2 on a generated file of 1,500 small functions.
SRC=$(mktemp --suffix=.c)
OBJ=$(mktemp --suffix=.o)
trap 'rm -f "$SRC" "$OBJ"' EXIT
for i in $(seq 1500); do echo "int f$i(int *a, int n) { int s = 0; for (int j = 0; j < n; j++) s += a[j] * $i ^ (s >> 3); return s; }"; done >"$SRC"
GCC=(gcc -O2 -c "$SRC" -o "$OBJ")
printf '| workload | untraced | bpfkit-strace | strace | strace --seccomp-bpf |\n|---|---:|---:|---:|---:|\n'
for w in dd find gcc; do
  case $w in
    dd) cmd=("${DD[@]}"); label='dd bs=1 count=500k (1 M syscalls)' ;;
    find) cmd=("${FIND[@]}"); label='find /usr -name "*.so*"' ;;
    gcc) cmd=("${GCC[@]}"); label='gcc -O2 -c, 1,500 functions (a build step)' ;;
  esac
  base=$(time_of "${cmd[@]}")
  ours=$(time_of "$BIN" -f -o /dev/null -- "${cmd[@]}")
  theirs=$(time_of strace -f -o /dev/null "${cmd[@]}")
  seccomp=$(time_of strace -f --seccomp-bpf -o /dev/null "${cmd[@]}")
  ratio() { awk -v t="$1" -v b="$base" 'BEGIN { printf "%.3f s (%.2f×)", t, t / b }'; }
  printf '| %s | %.3f s | %s | %s | %s |\n' "$label" "$base" "$(ratio "$ours")" "$(ratio "$theirs")" "$(ratio "$seccomp")"
  if [ "$w" = dd ]; then
    added_ours=$(awk -v t="$ours" -v b="$base" 'BEGIN { print t - b }')
    added_theirs=$(awk -v t="$theirs" -v b="$base" 'BEGIN { print t - b }')
    awk -v o="$added_ours" -v s="$added_theirs" 'BEGIN { printf "\nAdded cost on the syscall-bound loop: bpfkit-strace %.3f s, strace %.3f s: %.1f× less.\n\n", o, s, s / o }'
  fi
done
# The cost to everyone else: the workloads untraced, while bpfkit-strace traces an idle process
# (the tracepoints are system-wide: every task's every call runs the filter).
sleep 600 & idle=$!
declare -A alone
for w in dd gcc; do if [ $w = dd ]; then cmd=("${DD[@]}"); else cmd=("${GCC[@]}"); fi; alone[$w]=$(time_of "${cmd[@]}"); done
"$BIN" -f -o /dev/null -p "$idle" 2>/dev/null & tracer=$!
sleep 1
echo
for w in dd gcc; do
  if [ $w = dd ]; then cmd=("${DD[@]}"); else cmd=("${GCC[@]}"); fi
  t=$(time_of "${cmd[@]}")
  awk -v t="$t" -v b="${alone[$w]}" -v w="$w" 'BEGIN { printf "Untraced %s while bpfkit-strace traces another process: %.3f s against %.3f s alone (%+.1f%%).\n", w, t, b, 100 * (t / b - 1) }'
done
kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
kill "$idle"
echo
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; kernel $(uname -r); $(strace -V | head -1)"
