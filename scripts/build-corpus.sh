#!/usr/bin/env bash
# Rebuilds the real-world object corpus of tests/object_corpus.rs (docs/CORPUS.md):
#
#  - selftests/: the Linux kernel's BPF selftest programs (tools/testing/selftests/bpf/progs/*.c)
#    from Debian's `linux-source-6.12` package, compiled with clang-19 as the selftests' Makefile
#    compiles them (-g -O2 -mcpu=v3 --target=bpf, -D__TARGET_ARCH_x86 -DENABLE_ATOMICS_TESTS), against
#    a vmlinux.h generated from this machine's kernel BTF with bpftool, the package's own libbpf
#    headers (tools/lib/bpf) and bpf_helper_defs.h generated from its uapi bpf.h by its
#    scripts/bpf_doc.py; then `llvm-strip-19 --strip-debug` (BTF and .BTF.ext stay). Kept: the
#    programs that compile against this kernel's vmlinux.h, except those listed below (skip_name
#    and the rules after it): programs for bpf_testmod, BTF-only fixtures, slow or large ones.
#  - xdp-tools/: the ready-built objects Debian's `libxdp1` package (installed with `xdp-tools`)
#    ships in /usr/lib/x86_64-linux-gnu/bpf, copied as they are.
#
# Licence texts go beside them (LICENSES/), and SOURCES.md says where each object came from.
# Commit the results: the test needs no clang, no package and no network at run time.
#
#   scripts/build-corpus.sh            # all of it (installs the packages above with apt-get)
#   scripts/build-corpus.sh --all      # try every selftest program and list those that compile
set -euo pipefail
cd "$(dirname "$0")/.."
out=tests/fixtures/corpus
clang=${CLANG:-clang-19}
strip=${LLVM_STRIP:-llvm-strip-19}
vmlinux=${VMLINUX_BTF:-/sys/kernel/btf/vmlinux}
kver=6.12
tarball=/usr/src/linux-source-$kver.tar.xz

need=()
[ -f "$tarball" ] || need+=(linux-source-$kver)
[ -d /usr/lib/x86_64-linux-gnu/bpf ] && [ -f /usr/lib/x86_64-linux-gnu/bpf/xdpfilt_alw_all.o ] || need+=(xdp-tools libxdp1)
command -v "$clang" >/dev/null || need+=(clang-19)
command -v "$strip" >/dev/null || need+=(llvm-19)
command -v bpftool >/dev/null || need+=(bpftool)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
pkgver() { dpkg-query -W -f='${Version}' "$1"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
src=$tmp/linux-source-$kver
tar -xJf "$tarball" -C "$tmp" --wildcards \
  "linux-source-$kver/tools/testing/selftests/bpf/*" "linux-source-$kver/tools/lib/bpf/*" \
  "linux-source-$kver/tools/include/*" "linux-source-$kver/include/uapi/linux/bpf.h" \
  "linux-source-$kver/scripts/bpf_doc.py" "linux-source-$kver/COPYING" "linux-source-$kver/LICENSES/*"
st=$src/tools/testing/selftests/bpf
inc=$tmp/include
mkdir -p "$inc/bpf"
cp "$src"/tools/lib/bpf/{bpf_helpers.h,bpf_core_read.h,bpf_tracing.h,bpf_endian.h,usdt.bpf.h} "$inc/bpf/"
python3 "$src/scripts/bpf_doc.py" --header --file "$src/include/uapi/linux/bpf.h" > "$inc/bpf/bpf_helper_defs.h"
bpftool btf dump file "$vmlinux" format c > "$inc/vmlinux.h"

compile() { # $1 = source, $2 = object
  local extra=()
  case "$(basename "$1")" in
    test_l4lb_noinline.c|test_xdp_noinline.c) extra=(-fno-inline) ;;
  esac
  # The selftests Makefile's BPF_CFLAGS + CLANG_CFLAGS (the system include dirs after ours).
  "$clang" -g -Wall -Werror -D__TARGET_ARCH_x86 -mlittle-endian -I"$inc" -I"$st" -I"$src/tools/include/uapi" \
    -Wno-compare-distinct-pointer-types -DENABLE_ATOMICS_TESTS \
    -idirafter /usr/lib/llvm-19/lib/clang/19/include -idirafter /usr/local/include \
    -idirafter /usr/include/x86_64-linux-gnu -idirafter /usr/include "${extra[@]}" \
    -O2 --target=bpf -mcpu=v3 -c "$1" -o "$2" 2>/dev/null && "$strip" --strip-debug "$2"
}

# Left out, with the reason:
#  - programs for bpf_testmod (the selftests' kernel module; its kfuncs and types exist only
#    with it loaded): sources that name it, and objects whose BTF does;
#  - objects without programs (BTF fixtures of other tests: btf__core_reloc_*, btf_dump_test_case_*);
#  - loop3: hits the verifier's 1M-instruction limit on purpose, ~25 s a load, loaded 4 times;
#  - objects above 300 KB (pyperf50/100/180/600, strobemeta, verifier_gotol: verifier scale
#    tests; the corpus stays small; pyperf_global, pyperf_subprogs and the other scale tests
#    are kept).
skip_name() {
  case "$1" in
    btf__core_reloc*|btf_dump_test_case*|loop3) return 0 ;;
  esac
  return 1
}

if [ "${1:-}" = "--all" ]; then
  for f in "$st"/progs/*.c; do
    n=$(basename "$f" .c)
    compile "$f" "$tmp/$n.o" && printf '%s %s\n' "$n" "$(stat -c %s "$tmp/$n.o")"
  done
  exit 0
fi

rm -rf "$out"
mkdir -p "$out/selftests" "$out/xdp-tools" "$out/LICENSES"
kept=0
rows=$tmp/rows.md
: > "$rows"
for f in "$st"/progs/*.c; do
  n=$(basename "$f" .c)
  skip_name "$n" && continue
  grep -q -E 'bpf_testmod|bpf_kfunc_call_test' "$f" && continue
  compile "$f" "$tmp/$n.o" || continue
  if strings "$tmp/$n.o" | grep -q -i testmod; then continue; fi
  [ "$(stat -c %s "$tmp/$n.o")" -le 307200 ] || continue
  mv "$tmp/$n.o" "$out/selftests/$n.o"
  spdx=$(grep -m1 -o 'SPDX-License-Identifier:.*' "$f" | sed -e 's/SPDX-License-Identifier: *//' -e 's/ *\*\/.*//' -e 's/ *$//' || true)
  printf '| `selftests/%s.o` | `tools/testing/selftests/bpf/progs/%s.c` | %s |\n' "$n" "$n" "${spdx:-GPL-2.0 (COPYING)}" >> "$rows"
  kept=$((kept + 1))
done
echo "selftests: $kept objects"

cp /usr/lib/x86_64-linux-gnu/bpf/*.o "$out/xdp-tools/"

cp "$src/COPYING" "$out/LICENSES/linux-COPYING"
for l in GPL-2.0 LGPL-2.1 BSD-2-Clause BSD-3-Clause; do
  cp "$src/LICENSES/preferred/$l" "$out/LICENSES/linux-$l"
done
cp /usr/share/doc/xdp-tools/copyright "$out/LICENSES/xdp-tools.copyright"
cp /usr/share/doc/libxdp1/copyright "$out/LICENSES/libxdp1.copyright"

{
  echo '# Where the corpus objects come from'
  echo
  echo 'Built by `scripts/build-corpus.sh`; see `docs/CORPUS.md`. Every source is a Debian package'
  echo '(bookworm), installed with apt-get.'
  echo
  echo '## selftests/ — the Linux kernel'"'"'s BPF selftest programs'
  echo
  echo "- Package: \`linux-source-$kver\` $(pkgver linux-source-$kver), \`$tarball\`."
  echo "- Sources: \`linux-source-$kver/tools/testing/selftests/bpf/progs/*.c\`, with the headers beside"
  echo '  them (`tools/testing/selftests/bpf`), the package'"'"'s libbpf headers (`tools/lib/bpf`) and'
  echo '  `bpf_helper_defs.h` generated from its `include/uapi/linux/bpf.h` by its `scripts/bpf_doc.py`.'
  echo "- Compiled with clang-19 $(pkgver clang-19) with the selftests' flags (\`-g -O2 --target=bpf -mcpu=v3\`),"
  echo "  against a \`vmlinux.h\` dumped by bpftool from the build machine's kernel BTF ($(uname -r)),"
  echo '  then `llvm-strip-19 --strip-debug` (`.BTF` and `.BTF.ext` kept).'
  echo '- Licences: each file'"'"'s SPDX identifier in the table; texts in `LICENSES/linux-*`'
  echo '  (`linux-COPYING` is the kernel'"'"'s COPYING, which puts files without an identifier under GPL-2.0).'
  echo
  echo '## xdp-tools/ — ready-built objects shipped by xdp-tools and libxdp'
  echo
  echo "- Packages: \`xdp-tools\` $(pkgver xdp-tools), \`libxdp1\` $(pkgver libxdp1)."
  echo '- Files: `/usr/lib/x86_64-linux-gnu/bpf/*.o`, copied unchanged.'
  echo '- Licences: the packages'"'"' copyright files, `LICENSES/xdp-tools.copyright` and'
  echo '  `LICENSES/libxdp1.copyright`.'
  echo
  echo '| object | source | licence |'
  echo '|---|---|---|'
  cat "$rows"
  for f in "$out"/xdp-tools/*.o; do
    n=$(basename "$f")
    pkg=$(dpkg -S "/usr/lib/x86_64-linux-gnu/bpf/$n" 2>/dev/null | cut -d: -f1 | head -1)
    printf '| `xdp-tools/%s` | `/usr/lib/x86_64-linux-gnu/bpf/%s` in package `%s` | `LICENSES/%s.copyright` |\n' "$n" "$n" "$pkg" "$pkg"
  done
} > "$out/SOURCES.md"
du -sh "$out"
