#!/usr/bin/env bash
# Installs what bpfkit's build and tests need on Debian 12, only what is missing.
# Runs as root (CI and the development VM are root); uses sudo otherwise.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the LLVM 19 oracles (llvm-mc, llvm-objdump, clang for BPF fixtures),
# libelf/zlib/pkg-config for libbpf-sys, bpftool to cross-check kernel state; python3 for the
# child process Lab 6.1 watches (/usr/bin/python3, runnable as `nobody`); prometheus (with
# promtool) for chapter 13, whose labs start their own server on a free localhost port; strace, the
# oracle bpfkit-strace is compared with (apps/strace); curl, the client of Lab 7.2's load balancer
# (whose backends are python3's http.server); tcpdump and tshark, which capture Lab 7.3's traffic and
# read back the pcap file it writes (tshark's debconf question is answered by the noninteractive
# frontend below); linux-perf, which chapter 12 (§12.3) runs to profile a JITed program and
# bpfkit-profile's benchmark (scripts/bench-profile.sh) compares with; iperf3, the judge of Lab
# 8.1's bandwidth limiter; iputils-ping, whose RTTs judge Lab 8.3's latency injection;
# protobuf-compiler and golang-go, whose `protoc --decode` and `go tool pprof` read back the pprof
# files bpfkit-profile writes (apps/profile/tests/cpu.rs).
packages=(llvm-19 clang-19 libelf-dev zlib1g-dev pkg-config bpftool iproute2 gcc make python3 prometheus strace curl tcpdump tshark linux-perf iperf3 iputils-ping protobuf-compiler golang-go)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's prometheus package enables a system service listening on :9090. The labs start
# their own servers; where systemd runs, keep the packaged one stopped (without systemd, or
# with a policy-rc.d that refuses starts, it never started).
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
  echo "setup: stopping and disabling the packaged prometheus service"
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

# A Rust toolchain, if the machine has none.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup"
    as_root apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# bpffs at /sys/fs/bpf: where libbpf (and bpfkit's objects) pin maps declared with
# LIBBPF_PIN_BY_NAME. A fresh VM may not have it mounted.
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != bpf_fs ]; then
  echo "setup: mounting bpffs at /sys/fs/bpf"
  as_root mkdir -p /sys/fs/bpf
  as_root mount -t bpf bpf /sys/fs/bpf
fi
