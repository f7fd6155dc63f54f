//! The kernel half every mode shares: the maps that aggregate in the kernel, and the instruction
//! sequence that adds an amount (a sample, nanoseconds, bytes) to the count of the current
//! task's stacks.
//!
//! ```text
//!  event ──► program ──► filter (targets: tgid → 1) ──► key {tgid, user stack id,
//!                                                          kernel stack id, extra, comm}
//!                                 stacks (stack id → ips)◄─┘      │
//!                                                   counts (key → u64) += amount
//! ```
//!
//! Nothing leaves the kernel while profiling: user space reads `counts` and `stacks` once, at the
//! end. Stack ids that failed (`bpf_get_stackid` < 0) are kept in the key as the kernel's error,
//! so user space can tell "no such stack" (`-EFAULT`: a kernel thread has no user stack, a sample
//! in user mode no kernel stack) from "lost" (`-EEXIST`: another stack hashed to the same bucket;
//! `-ENOMEM`: the stack map is full); lost ones are also counted in `stats`.

use bpfkit::bpf_asm;
use bpfkit::insn::{ja, jmp_if, ld_map, JmpCond, Program as Insns, Reg};
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The bytes of a `counts` key.
pub const KEY_SIZE: u32 = 32;
/// Offsets in a key: the process, the two stack ids, a mode's own field (the device of an I/O),
/// the thread's name.
pub const KEY_TGID: i16 = 0;
pub const KEY_USTACK: i16 = 4;
pub const KEY_KSTACK: i16 = 8;
pub const KEY_EXTRA: i16 = 12;
pub const KEY_COMM: i16 = 16;
/// Where the key sits on the BPF stack (r10 + KEY_AT .. r10).
pub const KEY_AT: i16 = -32;

/// The frames a stack-map entry holds (the kernel's PERF_MAX_STACK_DEPTH).
pub const STACK_DEPTH: u32 = 127;
/// `bpf_get_stackid` flags.
pub const BPF_F_USER_STACK: i32 = 1 << 8;

/// `stats` slots (per-CPU u64 counters).
pub const STAT_EVENTS: u32 = 0;
pub const STAT_USER_STACK_LOST: u32 = 1;
pub const STAT_KERNEL_STACK_LOST: u32 = 2;
pub const STAT_COUNTS_FULL: u32 = 3;
/// Mode-specific counters start here (offcpu: wake-ups without a recorded switch-out, …).
pub const STAT_MODE: u32 = 4;
pub const STAT_SLOTS: u32 = 8;

pub const EFAULT: i32 = 14;
pub const EEXIST: i32 = 17;
pub const ENOMEM: i32 = 12;

/// How big the aggregation maps are.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Distinct stacks the stack map holds.
    pub stacks: u32,
    /// Distinct (process, stacks, comm) keys.
    pub keys: u32,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            stacks: 16384,
            keys: 40960,
        }
    }
}

/// The maps every mode uses.
pub struct StackMaps {
    /// stack id → up to 127 instruction pointers.
    pub stacks: Map,
    /// key → amount.
    pub counts: Map,
    /// The processes profiled (tgid → 1); empty and unused when the whole system is.
    pub targets: Map,
    /// Per-CPU counters: events, lost stacks, a full `counts`.
    pub stats: Map,
}

impl StackMaps {
    pub fn new(sizes: Sizes) -> Result<StackMaps, Error> {
        Ok(StackMaps {
            stacks: Map::create(&MapSpec::new(
                "stacks",
                MapType::StackTrace,
                4,
                STACK_DEPTH * 8,
                sizes.stacks,
            ))?,
            counts: Map::create(&MapSpec::new(
                "counts",
                MapType::Hash,
                KEY_SIZE,
                8,
                sizes.keys,
            ))?,
            targets: Map::create(&MapSpec::new("targets", MapType::Hash, 4, 1, 4096))?,
            stats: Map::create(&MapSpec::new(
                "stats",
                MapType::PercpuArray,
                4,
                8,
                STAT_SLOTS,
            ))?,
        })
    }

    /// Profile process `tgid` (and only the processes so added).
    pub fn target(&self, tgid: u32) -> Result<(), Error> {
        Ok(self
            .targets
            .update(&tgid.to_ne_bytes(), &[1], UpdateFlags::Any)?)
    }

    /// The maps a program of this module may name.
    pub fn all(&self) -> Vec<&Map> {
        vec![&self.stacks, &self.counts, &self.targets, &self.stats]
    }

    /// Counter `slot` of `stats`, summed over the CPUs.
    pub fn stat(&self, slot: u32) -> Result<u64, Error> {
        let per_cpu = self
            .stats
            .lookup_percpu(&slot.to_ne_bytes())?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default()))
            .sum())
    }
}

/// `stats[slot] += 1` on this CPU. Clobbers r0–r2 and the stack slot at r10-40; `tag` keeps the
/// label unique.
pub fn stat_inc(slot: u32, tag: &str) -> Insns {
    let skip = format!("stat_done_{tag}");
    let mut p = bpf_asm! {
        *(u32 *)(r10 - 40) = {slot as i32}
        r1 = map[stats] ll
        r2 = r10
        r2 += -40
        call bpf_map_lookup_elem
    };
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, skip.as_str()));
    p.extend(bpf_asm! {
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    });
    p.label(skip);
    p
}

/// Jump to `out` unless the current process is a target (only emitted when filtering). Expects
/// the tgid in r7. Clobbers r0–r2.
/// The start of a timed interval, kept until its end: `{bpf_ktime_get_ns(), the key at
/// r10-32..0}` written at `value_at` and stored in map `map` under the key at `key_at`; a full
/// map is counted in stats slot `full` (`tag` names its labels). Goes on at `done` when stored.
pub fn remember_start(map: &str, key_at: i16, value_at: i16, full: u32, tag: &str, done: &str) -> Insns {
    let mut p = bpf_asm! {
        call bpf_ktime_get_ns
        *(u64 *)(r10 + {value_at}) = r0
    };
    for i in 0..4i16 {
        p.extend(bpf_asm! {
            r1 = *(u64 *)(r10 + {-32 + 8 * i})
            *(u64 *)(r10 + {value_at + 8 + 8 * i}) = r1
        });
    }
    p.push(ld_map(Reg::R1, map));
    p.extend(bpf_asm! {
        r2 = r10
        r2 += {key_at as i32}
        r3 = r10
        r3 += {value_at as i32}
        r4 = 0
        call bpf_map_update_elem
    });
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, done));
    p.extend(stat_inc(full, tag));
    p
}

pub fn filter_target(out: &str) -> Insns {
    let mut p = bpf_asm! {
        *(u32 *)(r10 - 36) = w7
        r1 = map[targets] ll
        r2 = r10
        r2 += -36
        call bpf_map_lookup_elem
    };
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, out));
    p
}

/// The key of the current task at r10+KEY_AT: tgid (from r7), user and kernel stack ids of the
/// context in r6, the extra field zero, comm. Lost stacks (`-EEXIST`, `-ENOMEM`) are counted.
/// Clobbers r0–r5.
pub fn build_key() -> Insns {
    build_key_with(true)
}

/// [`build_key`], with the kernel stack left out (`-EFAULT`, "none") when `kernel` is false: a
/// uprobe's kernel stack is only the uprobe machinery.
pub fn build_key_with(kernel: bool) -> Insns {
    let mut p = bpf_asm! {
        *(u64 *)(r10 - 32) = 0
        *(u64 *)(r10 - 24) = 0
        *(u64 *)(r10 - 16) = 0
        *(u64 *)(r10 - 8) = 0
        *(u32 *)(r10 - 32) = w7
        r1 = r10
        r1 += {(KEY_AT + KEY_COMM) as i32}
        r2 = 16
        call bpf_get_current_comm
        r1 = r6
        r2 = map[stacks] ll
        r3 = {BPF_F_USER_STACK}
        call bpf_get_stackid
        *(u32 *)(r10 - 28) = w0
    };
    p.extend(count_lost_stack(STAT_USER_STACK_LOST, "user"));
    if !kernel {
        p.extend(bpf_asm! { *(u32 *)(r10 - 24) = {-EFAULT} });
        return p;
    }
    p.extend(bpf_asm! {
        r1 = r6
        r2 = map[stacks] ll
        r3 = 0
        call bpf_get_stackid
        *(u32 *)(r10 - 24) = w0
    });
    p.extend(count_lost_stack(STAT_KERNEL_STACK_LOST, "kernel"));
    p
}

/// After a `bpf_get_stackid`: `stats[slot] += 1` when r0 is -EEXIST or -ENOMEM.
fn count_lost_stack(slot: u32, tag: &str) -> Insns {
    let lost = format!("stack_lost_{tag}");
    let fine = format!("stack_fine_{tag}");
    let mut p = Insns::new();
    p.push(jmp_if(JmpCond::Eq, Reg::R0, -EEXIST, lost.as_str()));
    p.push(jmp_if(JmpCond::Eq, Reg::R0, -ENOMEM, lost.as_str()));
    p.push(ja(fine.as_str()));
    p.label(lost);
    p.extend(stat_inc(slot, tag));
    p.label(fine);
    p
}

/// `counts[key at r10+KEY_AT] += r9`: an atomic add to an existing entry, else an insert (a
/// racing insert from another CPU is retried once as an add); an insert refused because the map
/// is full is counted. Clobbers r0–r5.
pub fn add_to_counts(tag: &str) -> Insns {
    add_to("counts", tag)
}

/// [`add_to_counts`] for another map with the same key and a u64 value.
pub fn add_to(map: &str, tag: &str) -> Insns {
    let add = format!("counts_add_{tag}");
    let done = format!("counts_done_{tag}");
    let retry = format!("counts_retry_{tag}");
    let mut p = Insns::new();
    p.push(ld_map(Reg::R1, map));
    p.extend(bpf_asm! {
        r2 = r10
        r2 += {KEY_AT as i32}
        call bpf_map_lookup_elem
    });
    p.push(jmp_if(JmpCond::Ne, Reg::R0, 0, add.as_str()));
    p.extend(bpf_asm! { *(u64 *)(r10 - 48) = r9 });
    p.push(ld_map(Reg::R1, map));
    p.extend(bpf_asm! {
        r2 = r10
        r2 += {KEY_AT as i32}
        r3 = r10
        r3 += -48
        r4 = 1                                  // BPF_NOEXIST
        call bpf_map_update_elem
    });
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, done.as_str()));
    p.push(jmp_if(JmpCond::Eq, Reg::R0, -EEXIST, retry.as_str()));
    p.extend(stat_inc(STAT_COUNTS_FULL, tag));
    p.push(ja(done.as_str()));
    p.label(retry);
    p.push(ld_map(Reg::R1, map));
    p.extend(bpf_asm! {
        r2 = r10
        r2 += {KEY_AT as i32}
        call bpf_map_lookup_elem
    });
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, done.as_str()));
    p.label(add);
    p.extend(bpf_asm! { lock *(u64 *)(r0 + 0) += r9 });
    p.label(done);
    p
}
