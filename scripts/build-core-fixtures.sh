#!/usr/bin/env bash
# Rebuilds the CO-RE corpus: every tests/fixtures/core/*.c → *.o with clang-19 -target bpf,
# against a vmlinux.h generated from this machine's kernel BTF (in a temporary directory; it
# is several megabytes and machine-specific, so it is not committed) and libbpf's
# bpf_helpers.h / bpf_core_read.h / bpf_tracing.h, taken from the vendored libbpf source of the
# libbpf-sys dev-dependency (run `cargo fetch` first if it is missing). Commit the .o files:
# tests/core_relo.rs reads them and needs no clang at run time.
#
#   scripts/build-core-fixtures.sh            # all of them
#   scripts/build-core-fixtures.sh f01_x.c    # some of them
set -euo pipefail
cd "$(dirname "$0")/.."
dir=tests/fixtures/core
clang=${CLANG:-clang-19}
strip=${LLVM_STRIP:-llvm-strip-19}
vmlinux=${VMLINUX_BTF:-/sys/kernel/btf/vmlinux}

libbpf_src=${LIBBPF_SRC:-}
if [ -z "$libbpf_src" ]; then
  for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/libbpf-sys-1.7.0*/libbpf/src; do
    [ -f "$d/bpf_core_read.h" ] && libbpf_src=$d
  done
fi
if [ -z "$libbpf_src" ] || [ ! -f "$libbpf_src/bpf_core_read.h" ]; then
  echo "libbpf headers not found: run 'cargo fetch' (libbpf-sys 1.7 is a dev-dependency) or set LIBBPF_SRC" >&2
  exit 1
fi

gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
mkdir -p "$gen/bpf"
for h in bpf_helpers.h bpf_helper_defs.h bpf_core_read.h bpf_tracing.h; do
  cp "$libbpf_src/$h" "$gen/bpf/"
done
bpftool btf dump file "$vmlinux" format c > "$gen/vmlinux.h"

if [ $# -gt 0 ]; then srcs=("$@"); else srcs=("$dir"/*.c); fi
for src in "${srcs[@]}"; do
  [ -f "$src" ] || src="$dir/$src"
  out="${src%.c}.o"
  "$clang" -target bpf -g -O2 -mcpu=v3 -D__TARGET_ARCH_x86 -I"$gen" -I"$dir" -c "$src" -o "$out"
  # DWARF is dropped (libbpf and bpfkit read .BTF / .BTF.ext only): 640 KiB → ~25 KiB an object.
  "$strip" --strip-debug "$out"
  echo "built $out"
done
