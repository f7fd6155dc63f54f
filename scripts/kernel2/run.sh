#!/usr/bin/env bash
# The second kernel: bpfkit's kernel tests inside Debian's cloud kernel (6.1) under qemu (TCG).
#
#   scripts/kernel2/run.sh                 # every binary of the plan below
#   scripts/kernel2/run.sh kernel2 kernel_trace   # only these binaries
#
# Idempotent: installs qemu-system-x86 and busybox-static when missing, downloads the kernel
# package once into $BPFKIT_KERNEL2_CACHE (default target/kernel2/; nothing goes into /boot),
# builds the test binaries with cargo, packs them with their shared libraries (ldd), busybox,
# bash, a few kernel modules and tests/fixtures into an initramfs, boots it, and reads each
# binary's result from the serial console (`KERNEL2-RESULT <name> <exit code>`). Exits non-zero
# when a binary failed, a planned binary did not report, or the VM timed out.
#
# Environment: BPFKIT_KERNEL2_PKG (kernel package, default: what linux-image-cloud-amd64 depends
# on), BPFKIT_KERNEL2_CACHE, BPFKIT_KERNEL2_TIMEOUT (seconds for the whole VM run, default 480),
# BPFKIT_KERNEL2_SMP (default 2), BPFKIT_KERNEL2_LOG (console log, default $CACHE/console.log).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${BPFKIT_KERNEL2_CACHE:-$ROOT/target/kernel2}
TIMEOUT=${BPFKIT_KERNEL2_TIMEOUT:-480}
SMP=${BPFKIT_KERNEL2_SMP:-2}
LOG=${BPFKIT_KERNEL2_LOG:-$CACHE/console.log}
mkdir -p "$CACHE"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---- the plan: which test binaries run in the guest, with which libtest filters, and why ----
# One line per binary: name, then arguments for the test binary (`--skip NAME` filters). The
# same binaries as on the host: where 6.1 lacks something, the test's own feature probe picks
# the branch (tests/support/probe.rs; it prints `probe: this kernel lacks …`, collected in the
# summary). A `--skip` is left only where no probe can decide, each with its reason below.
# Every binary runs with --show-output so the probe lines reach the console. Binaries not
# listed here run on the host only (see docs/KERNELS.md).
HOST_HALF="core_dsl_relocates_against_the_guest_btf_on_the_host clang_core_object_relocates_against_the_guest_btf_on_the_host"
PLAN=(
  "kernel2"                 # the guest-only tests (kprobes, trampolines, LSM, CO-RE on 6.1)
  "kernel_trace --skip kernel_stack_of_a_syscall_tracepoint_is_symbolized"
  "kernel_attach"
  "kernel_maps"
  "kernel_prog"
  "conformance_kernel"
  "kernel_core_dsl"         # bpfkit's CO-RE DSL against 6.1's BTF at load
  "core_relo"               # 27 clang CO-RE programs: bpfkit vs libbpf against 6.1's BTF
  "object_load"             # clang objects loaded with CO-RE, vs libbpf
  "kernel_net"              # XDP/tc/sockmap/netfilter/...: the no-TCX and no-sockmap-link fallbacks
  "kernel_events"
  "kernel_prog_options --skip log_levels_and_log_growth --skip verifier_log_quotes_the_source_through_btf_line_info"
  "kernel_maps_special --skip every_map_type_is_created_and_reported_back --skip local_storage_maps_keyed_by_fds --skip arena_ --skip inode_storage_helper_is_for_lsm_programs_only"
  "patterns"
  "helpers_table --skip table_is_the_kernels_enum_exactly"
  "features"                # bpftool is not in the initramfs: its comparison skips itself; libbpf's runs
)
# Tutorial labs that need what the host lacks (kprobes, trampolines, LSM, sch_fq): the example binaries
# themselves (`cargo run --example NAME` on the host shows their clear error there). One line
# per lab: name, then its command-line arguments.
LABS=(
  "lab_5_1"                 # kprobe call tracer (do_sys_openat2, decoded from BTF)
  "lab_5_2"                 # tcp_v4_connect entry/return + tcp_set_state, and the tracepoint variant
  "lab_5_3"                 # mutex_lock entry/return by lock and stack, and the tracepoint variant
  "lab_8_3"                 # EDT latency injection: skb->tstamp + the fq qdisc (sch_fq.ko, packed below)
  "lab_9_3"                 # cgroup sandbox: device and raw-socket policies, and the BPF-LSM file_open half
  "lab_10_1"                # CO-RE exec monitor: the same program, 6.1's task_struct offsets, checked against /proc
  "lab_10_2"                # CO-RE adaptive RSS reader: 6.1 takes the mm_rss_stat branch
  "lab_11_1"                # BPF-LSM file_open: one file denied to nobody, logged
  "lab_11_2"                # BPF-LSM bprm_check_security: an inode allow-list with digests checked at load
  "lab_11_3"                # BPF-LSM socket_connect: per-comm destination rules on loopback servers
)
# (Not in the plan: fd_hygiene, whose 10,000 load/run/drop cycles take ~80 s under TCG, as long as
# the rest of the new binaries together, for a property that does not depend on the kernel.)
# Reasons for the skips above (printed with the summary):
SKIP_REASONS=(
  "kernel_prog_options/log_levels_and_log_growth, verifier_log_quotes_the_source_through_btf_line_info: they assert 6.18's verifier log text; 6.1 prints register states as R0_w=1 (not R0=1) and source lines without the \" @ file:line\" suffix. The log levels, growth and line info themselves work there (the logs are in the console log)"
  "kernel_maps_special/every_map_type_is_created_and_reported_back, local_storage_maps_keyed_by_fds, arena_*: they create every map type bpfkit knows, cgrp_storage (6.2) and arena (6.9) included, which 6.1 refuses with EINVAL (these tests have no feature-probe branch yet); type_lists_are_the_running_kernels checks that the probes refuse exactly those"
  "kernel_maps_special/inode_storage_helper_is_for_lsm_programs_only: asserts 6.18's verifier wording \"cannot use helper bpf_inode_storage_get\"; 6.1 refuses the same call to an iterator program as \"unknown func bpf_inode_storage_get#145\""
  "helpers_table/table_is_the_kernels_enum_exactly: asserts bpfkit's helper table equals the running kernel's enum bpf_func_id exactly; 6.1's stops at 209 (bpf_user_ringbuf_drain), bpfkit's goes on to 211 (bpf_cgrp_storage_get/delete, 6.2)"
  "kernel_trace/kernel_stack_of_a_syscall_tracepoint_is_symbolized: on 6.1 bpf_get_stackid of a kernel stack from a syscall tracepoint returns -EFAULT (empty callchain); no feature probe tells that apart from a bpfkit bug without running the test itself. kernel2/kernel_stack_of_a_kprobe_is_symbolized covers kernel stacks there"
)

if [ $# -gt 0 ]; then
  selected=() labs=()
  for want in "$@"; do
    found=
    for line in "${PLAN[@]}"; do [ "${line%% *}" = "$want" ] && { selected+=("$line"); found=1; }; done
    for line in "${LABS[@]}"; do [ "${line%% *}" = "$want" ] && { labs+=("$line"); found=1; }; done
    [ -n "$found" ] || { echo "kernel2: no binary or lab \`$want\` in the plan (${PLAN[*]%% *} ${LABS[*]%% *})" >&2; exit 2; }
  done
  PLAN=("${selected[@]}") LABS=("${labs[@]}")
fi

# ---- 1. qemu, busybox, the kernel ----
t0=$(now)
need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v jq >/dev/null 2>&1 || need+=(jq)
command -v strip >/dev/null 2>&1 || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "kernel2: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PKG=${BPFKIT_KERNEL2_PKG:-}
if [ -z "$PKG" ]; then
  if [ -f "$CACHE/package" ]; then
    PKG=$(cat "$CACHE/package")
  else
    PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    if [ -z "$PKG" ]; then
      as_root apt-get update -qq
      PKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    fi
    [ -n "$PKG" ] || { echo "kernel2: cannot find the package linux-image-cloud-amd64 depends on" >&2; exit 1; }
    echo "$PKG" >"$CACHE/package"
  fi
fi
KDIR=$CACHE/$PKG
if ! ls "$KDIR"/root/boot/vmlinuz-* >/dev/null 2>&1; then
  echo "kernel2: downloading $PKG"
  rm -rf "$KDIR" && mkdir -p "$KDIR"
  (cd "$KDIR" && { apt-get download "$PKG" >/dev/null 2>&1 || { as_root apt-get update -qq && apt-get download "$PKG" >/dev/null; }; })
  dpkg -x "$KDIR"/*.deb "$KDIR/root"
  rm -f "$KDIR"/*.deb
fi
VMLINUZ=$(ls "$KDIR"/root/boot/vmlinuz-* | head -1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KDIR/root/lib/modules/$KVER/kernel
t_setup=$(since "$t0")
echo "kernel2: kernel $PKG ($KVER) ready in ${t_setup}s"

# ---- 2. the test binaries ----
t0=$(now)
cargo_args=()
for line in "${PLAN[@]}"; do cargo_args+=(--test "${line%% *}"); done
# (With the `tokio` feature, as the host's test runs build the library: one build, not two.)
json=
[ ${#cargo_args[@]} -eq 0 ] || json=$(cargo test --workspace --features bpfkit/tokio --no-run --message-format=json "${cargo_args[@]}")
declare -A EXE
while IFS=$'\t' read -r name exe; do EXE[$name]=$exe; done < <(
  jq -r 'select(.reason == "compiler-artifact" and .profile.test == true and .target.kind == ["test"]) | "\(.target.name)\t\(.executable)"' <<<"$json")
for line in "${PLAN[@]}"; do
  [ -n "${EXE[${line%% *}]:-}" ] || { echo "kernel2: cargo built no test binary for ${line%% *}" >&2; exit 1; }
done
declare -A LAB_EXE
if [ ${#LABS[@]} -gt 0 ]; then
  lab_args=()
  for line in "${LABS[@]}"; do lab_args+=(--example "${line%% *}"); done
  while IFS=$'\t' read -r name exe; do LAB_EXE[$name]=$exe; done < <(
    cargo build -p bpfkit --features tokio --message-format=json "${lab_args[@]}" |
      jq -r 'select(.reason == "compiler-artifact" and .target.kind == ["example"] and .executable != null) | "\(.target.name)\t\(.executable)"')
  for line in "${LABS[@]}"; do
    [ -n "${LAB_EXE[${line%% *}]:-}" ] || { echo "kernel2: cargo built no example for ${line%% *}" >&2; exit 1; }
  done
fi
# The `bpfkit` command, for `bpfkit features` in both kernels side by side.
BPFKIT_BIN=$(cargo build -p bpfkit-cli --features bpfkit/tokio --bin bpfkit --message-format=json |
  jq -r 'select(.reason == "compiler-artifact" and .target.name == "bpfkit" and .executable != null) | .executable' | tail -1)
[ -x "$BPFKIT_BIN" ] || { echo "kernel2: cargo built no bpfkit binary" >&2; exit 1; }
# The guest's vmlinux BTF, kept for the host half of kernel2's CO-RE test (relocating against
# 6.1's layout on the host): dumped once over the console (gzip | base64), then cached.
GUEST_BTF=$KDIR/vmlinux.btf
t_build=$(since "$t0")

# ---- 3. the initramfs ----
t0=$(now)
IR=$CACHE/initramfs
rm -rf "$IR"
mkdir -p "$IR"/{bin,sbin,lib,lib64,proc,sys,dev,tmp,root,kernel2/bin,kernel2/modules,etc}
cp /bin/busybox "$IR/bin/busybox"
# (No `ip`: busybox's `ip link show` does not print attached XDP programs the way iproute2 does,
# so kernel_net's optional `ip` cross-checks skip themselves when it is missing; /init calls
# `busybox ip`.)
# No `tc` either: busybox's tc has another command line (`tc filter show dev vb ingress` is
# refused), so kernel_net's optional `tc` cross-checks skip themselves the same way.
for app in $("$IR/bin/busybox" --list); do [ "$app" = ip ] || [ "$app" = tc ] || [ -e "$IR/bin/$app" ] || ln -s busybox "$IR/bin/$app"; done
ln -sf ../bin/busybox "$IR/sbin/modprobe"
cp /bin/bash "$IR/bin/bash"   # the tests run `bash -c` (bash's /dev/tcp in kernel_attach)
# Shared libraries of everything that runs, at the paths ldd names (and the loader).
copy_libs() {
  ldd "$1" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }' | while read -r lib; do
    [ -e "$IR$lib" ] || { mkdir -p "$IR$(dirname "$lib")"; cp -L "$lib" "$IR$lib"; }
  done
}
copy_libs /bin/bash
strip --strip-debug -o "$IR/kernel2/bin/bpfkit" "$BPFKIT_BIN"
copy_libs "$BPFKIT_BIN"
[ -s "$GUEST_BTF" ] || touch "$IR/kernel2/dump-btf"
for line in "${PLAN[@]}"; do
  name=${line%% *}
  # Debug info is most of a test binary; the symbol table (uprobes, symbolization) stays.
  strip --strip-debug -o "$IR/kernel2/bin/$name" "${EXE[$name]}"
  copy_libs "${EXE[$name]}"
done
for line in "${LABS[@]}"; do
  name=${line%% *}
  strip --strip-debug -o "$IR/kernel2/bin/$name" "${LAB_EXE[$name]}"
  copy_libs "${LAB_EXE[$name]}"
done
# tests/fixtures at the repository's own path: env!("CARGO_MANIFEST_DIR") is compiled in.
mkdir -p "$IR$ROOT/tests"
cp -a tests/fixtures "$IR$ROOT/tests/"
copy_libs tests/fixtures/usdt/usdt_probe
# The kernel's config where libbpf and bpfkit look for `.kconfig` externs (o23_kconfig.o), as on
# an installed system (/boot/config-<release>; the cloud kernel has no /proc/config.gz).
mkdir -p "$IR/boot"
cp "$KDIR/root/boot/config-$KVER" "$IR/boot/"
# Modules the tests need that the cloud kernel builds as modules (clsact, cls_bpf, veth, dummy;
# fq, the EDT qdisc of Lab 8.3 and kernel_net's root qdisc test).
for m in net/sched/sch_ingress.ko net/sched/cls_bpf.ko net/sched/sch_fq.ko drivers/net/veth.ko drivers/net/dummy.ko; do
  cp "$MODDIR/$m" "$IR/kernel2/modules/"
done
printf '%s\n' "${PLAN[@]}" >"$IR/kernel2/plan"
printf '%s\n' "${LABS[@]}" >"$IR/kernel2/labs"
cat >"$IR/init" <<EOF
#!/bin/sh
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# /tmp stays on the initramfs (writable rootfs): a tmpfs there would hide a checkout under /tmp.
chmod 1777 /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
for m in /kernel2/modules/*.ko; do insmod \$m; done
busybox ip link set lo up
echo
echo "KERNEL2-KERNEL \$(uname -r) \$(cat /proc/sys/kernel/osrelease)"
echo "KERNEL2-INIT uptime \$(cut -d' ' -f1 /proc/uptime)"
echo "KERNEL2-FEATURES-BEGIN"
/kernel2/bin/bpfkit features
echo "KERNEL2-FEATURES-END \$?"
if [ -f /kernel2/dump-btf ]; then
  echo "KERNEL2-BTF-BEGIN"
  gzip -c /sys/kernel/btf/vmlinux | base64
  echo "KERNEL2-BTF-END"
fi
export BPFKIT_REQUIRE_KERNEL=1 BPFKIT_KERNEL2=1 CARGO_MANIFEST_DIR=$ROOT RUST_BACKTRACE=1
cd /tmp
while read -r name args; do
  [ -n "\$name" ] || continue
  echo "KERNEL2-BEGIN \$name \$(cut -d' ' -f1 /proc/uptime)"
  /kernel2/bin/\$name --test-threads=1 --show-output \$args
  echo "KERNEL2-RESULT \$name \$? \$(cut -d' ' -f1 /proc/uptime)"
done </kernel2/plan
while read -r name args; do
  [ -n "\$name" ] || continue
  echo "KERNEL2-LAB-BEGIN \$name \$(cut -d' ' -f1 /proc/uptime)"
  /kernel2/bin/\$name \$args
  echo "KERNEL2-LAB-RESULT \$name \$? \$(cut -d' ' -f1 /proc/uptime)"
done </kernel2/labs
echo "KERNEL2-DONE"
poweroff -f
EOF
chmod +x "$IR/init"
(cd "$IR" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 >"$CACHE/initrd.cpio.gz")
t_pack=$(since "$t0")
echo "kernel2: initramfs $(du -h "$CACHE/initrd.cpio.gz" | cut -f1) (build ${t_build}s, pack ${t_pack}s)"

# ---- 4. boot and run ----
t0=$(now)
echo "kernel2: booting $KVER under qemu (TCG, ${SMP} CPUs, timeout ${TIMEOUT}s); console in $LOG"
set +e
timeout --foreground -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp "$SMP" -m 1G \
  -kernel "$VMLINUZ" -initrd "$CACHE/initrd.cpio.gz" \
  -append 'console=ttyS0 panic=-1 quiet' -nographic -no-reboot </dev/null 2>&1 | tr -d '\r' | tee "$LOG" |
  awk '/^KERNEL2-(BTF|FEATURES)-BEGIN/ { hide = 1 } !hide { print; fflush() } /^KERNEL2-(BTF|FEATURES)-END/ { hide = 0 }'
status=${PIPESTATUS[0]}
set -e
t_vm=$(since "$t0")
if [ ! -s "$GUEST_BTF" ] && grep -q '^KERNEL2-BTF-END' "$LOG"; then
  sed -n '/^KERNEL2-BTF-BEGIN/,/^KERNEL2-BTF-END/p' "$LOG" | sed '1d;$d' | base64 -d | gunzip >"$GUEST_BTF.tmp" &&
    mv "$GUEST_BTF.tmp" "$GUEST_BTF" || rm -f "$GUEST_BTF.tmp"
fi
# The host half: kernel2's CO-RE tests relocating the same DSL program and the same clang object
# against the guest's BTF.
t0=$(now)
host_half=
if [ -n "${EXE[kernel2]:-}" ]; then
  set +e
  host_out=$(BPFKIT_KERNEL2_BTF=$GUEST_BTF "${EXE[kernel2]}" --exact $HOST_HALF --nocapture 2>&1)
  host_half=$?
  set -e
fi
t_host=$(since "$t0")

# ---- 5. summary ----
echo
echo "== second kernel summary ($PKG)"
grep -m1 '^KERNEL2-KERNEL' "$LOG" || true
grep -m1 '^KERNEL2-INIT' "$LOG" || true
failed=0
for line in "${PLAN[@]}"; do
  name=${line%% *}
  r=$(grep "^KERNEL2-RESULT $name " "$LOG" | tail -1 | cut -d' ' -f3)
  # libtest's own count line for this binary (the last `test result:` before its result marker).
  counts=$(awk -v n="$name" '$1 == "KERNEL2-BEGIN" && $2 == n { on = 1; c = "" } on && /^test result:/ { c = $0 } $1 == "KERNEL2-RESULT" && $2 == n { print c; exit }' "$LOG" | sed 's/; finished in.*//')
  if [ -z "$r" ]; then
    echo "  $name: NO RESULT (VM died or timed out)"; failed=1
  elif [ "$r" = 0 ]; then
    echo "  $name: ok ($counts)"
  else
    echo "  $name: FAILED, exit $r ($counts)"; failed=1
  fi
done
for line in "${LABS[@]}"; do
  name=${line%% *}
  r=$(grep "^KERNEL2-LAB-RESULT $name " "$LOG" | tail -1 | cut -d' ' -f3)
  if [ -z "$r" ]; then
    echo "  $name (tutorial lab): NO RESULT (VM died or timed out)"; failed=1
  elif [ "$r" = 0 ]; then
    echo "  $name (tutorial lab): ok"
  else
    echo "  $name (tutorial lab): FAILED, exit $r"; failed=1
  fi
done
# Totals over the binaries that reported (`filtered out` = the skips named below).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) == "filtered") s += $i } }
  END { printf "  %d passed, %d failed, %d skipped\n", p, f, s }' "$LOG"
# kernel2's tests skip on the host: these ran only here (its host half is reported below).
only=$(awk '$1 == "KERNEL2-BEGIN" && $2 == "kernel2" { on = 1 } $1 == "KERNEL2-RESULT" { on = 0 }
  on && /^test .* \.\.\. ok$/ && index(" '"$HOST_HALF"' ", " " $2 " ") == 0 { print $2 }' "$LOG")
[ -z "$only" ] || { echo "  ran only in the guest (kernel2):"; sed 's/^/    /' <<<"$only"; }
# Where a test's feature probe found 6.1 without something and the test took its other branch
# (`probe: this kernel lacks …`), or skipped (`skipped: …`): per binary and test (--show-output
# headers `---- <test> stdout ----`).
probed=$(awk '$1 == "KERNEL2-BEGIN" { bin = $2 } /^---- .* stdout ----$/ { t = $2 }
  /^(probe|skipped): / { print bin "::" t ": " $0 }' "$LOG" | sort -u)
if [ -n "$probed" ]; then
  echo "  decided by feature probes in the guest ($(grep -c ': skipped: ' <<<"$probed" || true) skipped, the rest took the kernel's other branch):"
  sed 's/^/    /' <<<"$probed"
fi
for s in "${SKIP_REASONS[@]}"; do
  for line in "${PLAN[@]}"; do [ "${s%%/*}" = "${line%% *}" ] && echo "  skipped in the guest: $s"; done
done
if [ -n "$host_half" ]; then
  if [ "$host_half" = 0 ]; then
    echo "  host half of kernel2 (CO-RE against the guest's BTF file $GUEST_BTF): ok"
    grep '^host:' <<<"$host_out" | sed 's/^/    /' || true
  else
    echo "  host half of kernel2 (CO-RE against the guest's BTF file): FAILED, exit $host_half"; echo "$host_out" | tail -20; failed=1
  fi
fi
# `bpfkit features` on both kernels: the program, map and attach types whose verdict differs.
if grep -q '^KERNEL2-FEATURES-END 0' "$LOG"; then
  sed -n '/^KERNEL2-FEATURES-BEGIN/,/^KERNEL2-FEATURES-END/p' "$LOG" | sed '1d;$d' >"$CACHE/features.guest"
  "$BPFKIT_BIN" features >"$CACHE/features.host" 2>&1 || true
  hver=$(uname -r | cut -d. -f1,2); gver=$(echo "$KVER" | cut -d. -f1,2)
  echo "  bpfkit features, where $hver (host) and $gver (guest) differ:"
  awk -v h="$hver" -v g="$gver" '
    /^[^ ]/ { sec = $1; next }
    sec == "system" || NF < 2 { next }
    FNR == NR { host[sec " " $1] = $2; next }
    { k = sec " " $1; if ((k in host) && host[k] != $2) { printf "    %-8s %-34s %s: %-4s %s: %s\n", sec, $1, h, host[k], g, $2; n++ } }
    END { if (!n) print "    (none)" }' "$CACHE/features.host" "$CACHE/features.guest"
else
  echo "  bpfkit features did not complete in the guest"; failed=1
fi
echo "  timings: kernel+qemu setup ${t_setup}s, cargo build ${t_build}s, initramfs ${t_pack}s, VM boot+tests ${t_vm}s, host half ${t_host}s"
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "kernel2: the VM timed out after ${TIMEOUT}s"; exit 1
fi
grep -q '^KERNEL2-DONE' "$LOG" || { echo "kernel2: the VM did not finish its plan (qemu exit $status)"; exit 1; }
[ "$failed" = 0 ] || { echo "kernel2: FAILED"; exit 1; }
echo "kernel2: all passed"
