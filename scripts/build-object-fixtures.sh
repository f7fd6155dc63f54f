#!/usr/bin/env bash
# Rebuilds the object corpus: every tests/fixtures/objects/*.c → *.o with clang-19 -target bpf
# -g -O2 -mcpu=v3, the same way as the CO-RE corpus (scripts/build-core-fixtures.sh, which this
# delegates to: vmlinux.h generated from this machine's kernel BTF with bpftool, libbpf's
# bpf_helpers.h / bpf_core_read.h / bpf_tracing.h from the vendored libbpf source of the
# libbpf-sys dev-dependency, DWARF stripped). Commit the .o files: tests/object_load.rs reads
# them and needs no clang at run time. Objects this kernel (or libbpf) refuses to load, on purpose,
# are in refused/ (tests/object_features.rs checks the refusals), outside the corpus.
#
#   scripts/build-object-fixtures.sh                  # all of them
#   scripts/build-object-fixtures.sh o05_globals.c    # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/fixtures/objects
if [ $# -gt 0 ]; then
  srcs=()
  for src in "$@"; do
    [ -f "$src" ] || src="$dir/$src"
    [ -f "$src" ] || src="$dir/refused/$(basename "$src")"
    srcs+=("$src")
  done
else
  srcs=("$dir"/*.c "$dir"/refused/*.c)
fi
exec scripts/build-core-fixtures.sh "${srcs[@]}"
