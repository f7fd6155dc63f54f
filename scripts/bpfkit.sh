#!/usr/bin/env bash
# Builds and starts bpfkit (set-up included): `sudo ./scripts/bpfkit.sh [ARGS]`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec cargo run --quiet --release -p bpfkit-cli -- "$@"
