#!/usr/bin/env bash
# The whole test suite, set-up included: `sudo ./scripts/test.sh` on a fresh Debian 12 machine.
# Tests that need the kernel or privileges skip with a reason; with BPFKIT_REQUIRE_KERNEL=1
# (CI) such a skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== LLVM oracle fixture is reproducible (llvm-mc-19, llvm-objdump-19)"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
scripts/gen-llvm-fixture.sh tests/fixtures/llvm/forms.s "$tmp" >/dev/null
diff -u tests/fixtures/llvm/forms.expected "$tmp" || { echo "forms.expected differs from what LLVM produces now"; exit 1; }

echo "== the lab examples as programs (tests/lab_cleanup.rs runs them and checks what they leave behind)"
cargo build --examples -p bpfkit --features tokio

echo "== cargo test (workspace: unit, oracle, conformance, property, macro, CLI, doctests)"
cargo test --workspace --all-targets --features tokio --no-fail-fast   # (tokio: events::AsyncRingBuf and its kernel test)
cargo test -p bpfkit --features tokio --doc   # (the macro crate compiles src/insn via #[path]; its copies are not doctests)
cargo test -p bpfkit-strace --doc   # (tutorial chapter 16: the application's parts as doctests)
cargo test -p bpfkit-profile --doc   # (tutorial chapter 19: the application's parts as doctests)

echo "== second kernel: the kernel tests inside Debian's 6.1 cloud kernel under qemu (scripts/kernel2/run.sh, docs/KERNELS.md)"
if [ "${BPFKIT_SKIP_KERNEL2:-0}" = 1 ]; then
  echo "skipped: BPFKIT_SKIP_KERNEL2=1"
elif [ "$(uname -m)" != x86_64 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "skipped: the second kernel needs an x86_64 Debian host (qemu-system-x86, Debian's kernel package)"
else
  # The VM has its own timeout (BPFKIT_KERNEL2_TIMEOUT, 480 s); this one bounds set-up and build too.
  timeout 600 scripts/kernel2/run.sh
fi
