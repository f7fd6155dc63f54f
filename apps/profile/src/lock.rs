//! `lock` mode: time spent waiting for locks, by the stack that waited. Two sources, each a
//! begin/end pair keyed by the waiting thread:
//!
//! | source | begin | end | what waits |
//! |---|---|---|---|
//! | user-space locks | `syscalls:sys_enter_futex` with a wait op (`FUTEX_WAIT`, `_BITSET`, `LOCK_PI`, …) | `sys_exit_futex` | a pthread mutex, condition variable, join… that had to sleep |
//! | kernel locks | `lock:contention_begin` | `lock:contention_end` | a contended mutex, rwsem, spinlock in the kernel |
//!
//! ```text
//!  begin:  waits[tid] = {now, key: tgid, stacks, extra = what kind of lock}
//!  end:    d = now − waits[tid].ts;  delete waits[tid];  counts[key] += 1;  waited[key] += d
//! ```
//!
//! A pthread mutex taken without contention never enters the kernel and costs nothing here;
//! only the waits that sleep are seen — the contention. The kernel-lock tracepoints exist since
//! Linux 5.19; whether this kernel has them is decided by looking for them in tracefs.

use bpfkit::attach::{Link, TracepointFormat};
use bpfkit::bpf_asm;
use bpfkit::insn::{jmp_if, ld_map, JmpCond, Program as Insns, Reg};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

use crate::kernel::{
    remember_start, add_to, build_key_with, filter_target, stat_inc, Error, StackMaps, KEY_SIZE, STAT_EVENTS,
    STAT_MODE,
};
use crate::profile::Entries;

/// `stats` slot: a wait not timed because its map was full.
pub const STAT_WAITS_FULL: u32 = STAT_MODE;
/// The key's extra field: a futex wait, or a kernel lock (this bit, with the tracepoint's
/// `LCB_F_*` flags below it).
pub const EXTRA_FUTEX: u32 = 1;
pub const EXTRA_KERNEL_LOCK: u32 = 0x100;

const VALUE_AT: i16 = -96; // {ts, key}: 40 bytes
const TID_AT: i16 = -100;

/// futex(2) operations that wait (FUTEX_CMD_MASK applied).
const FUTEX_WAIT_OPS: [i32; 5] = [
    0,  /* WAIT */
    6,  /* LOCK_PI */
    9,  /* WAIT_BITSET */
    11, /* WAIT_REQUEUE_PI */
    13, /* LOCK_PI2 */
];

/// The mode's own maps.
pub struct LockMaps {
    /// tid → {ts, key}: threads in a futex wait.
    pub futex_waits: Map,
    /// tid → {ts, key}: threads waiting for a kernel lock (separate: a futex wait can meet a
    /// contended kernel lock inside it).
    pub lock_waits: Map,
    /// key → nanoseconds waited (the number of waits is in the shared `counts`).
    pub waited: Map,
}

impl LockMaps {
    pub fn new(keys: u32) -> Result<LockMaps, Error> {
        Ok(LockMaps {
            futex_waits: Map::create(&MapSpec::new(
                "futex_waits",
                MapType::Hash,
                4,
                8 + KEY_SIZE,
                65536,
            ))?,
            lock_waits: Map::create(&MapSpec::new(
                "lock_waits",
                MapType::Hash,
                4,
                8 + KEY_SIZE,
                65536,
            ))?,
            waited: Map::create(&MapSpec::new("waited", MapType::Hash, KEY_SIZE, 8, keys))?,
        })
    }
}

/// After the kind check: `waits[tid] = {now, key}`, with the key's extra field from r8 and the
/// kernel stack when `kernel_stack`.
fn begin(waits: &str, filtered: bool, kernel_stack: bool) -> Insns {
    let mut p = bpf_asm! {
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 + {TID_AT}) = w0
        r7 = r0
        r7 >>= 32
        if r7 == 0 goto out
    };
    if filtered {
        p.extend(filter_target("out"));
    }
    p.extend(build_key_with(kernel_stack));
    p.extend(bpf_asm! {
        *(u32 *)(r10 - 20) = w8                 // the key's extra field: the kind of lock
    });
    p.extend(remember_start(waits, TID_AT, VALUE_AT, STAT_WAITS_FULL, "waits_full", "out"));
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    p
}

/// `futex` entry: a wait op starts a wait.
pub fn futex_begin_program(filtered: bool) -> Result<Insns, Error> {
    let op = TracepointFormat::read("syscalls", "sys_enter_futex")?.offset_of("op")?;
    let mut p = bpf_asm! {
        r6 = r1
        r1 = *(u64 *)(r6 + {op})
        r1 &= 0x7f                              // FUTEX_CMD_MASK: without PRIVATE, CLOCK_REALTIME
    };
    for wait_op in FUTEX_WAIT_OPS {
        p.push(jmp_if(JmpCond::Eq, Reg::R1, wait_op, "waits"));
    }
    p.extend(bpf_asm! {
        goto out
    waits:
        r8 = {EXTRA_FUTEX as i32}
    });
    p.extend(begin("futex_waits", filtered, false));
    Ok(p)
}

/// `lock:contention_begin`: a kernel lock is contended.
pub fn kernel_begin_program(filtered: bool) -> Result<Insns, Error> {
    let flags = TracepointFormat::read("lock", "contention_begin")?.offset_of("flags")?;
    let mut p = bpf_asm! {
        r6 = r1
        r8 = *(u32 *)(r6 + {flags})
        r8 |= {EXTRA_KERNEL_LOCK as i32}
    };
    p.extend(begin("lock_waits", filtered, true));
    Ok(p)
}

/// The end of a wait begun in `waits`.
pub fn end_program(waits: &str) -> Insns {
    let mut p = bpf_asm! {
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 + {TID_AT}) = w0
    };
    p.push(ld_map(Reg::R1, waits));
    p.extend(bpf_asm! {
        r2 = r10
        r2 += {TID_AT as i32}
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r9 = r0
    });
    for i in 0..4i16 {
        p.extend(bpf_asm! {
            r1 = *(u64 *)(r9 + {8 + 8 * i})
            *(u64 *)(r10 + {-32 + 8 * i}) = r1
        });
    }
    p.extend(bpf_asm! {
        r7 = *(u64 *)(r9 + 0)
        call bpf_ktime_get_ns
        r0 -= r7
        r9 = r0                                 // nanoseconds waited
    });
    p.push(ld_map(Reg::R1, waits));
    p.extend(bpf_asm! {
        r2 = r10
        r2 += {TID_AT as i32}
        call bpf_map_delete_elem
    });
    p.extend(stat_inc(STAT_EVENTS, "events"));
    p.extend(add_to("waited", "waited"));
    p.extend(bpf_asm! { r9 = 1 });
    p.extend(add_to("counts", "waits"));
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    p
}

/// Whether this kernel has the kernel-lock contention tracepoints (tracefs has them).
pub fn kernel_locks_available() -> bool {
    bpfkit::attach::tracepoint_id("lock", "contention_begin").is_ok()
        && bpfkit::attach::tracepoint_id("lock", "contention_end").is_ok()
}

/// The programs loaded and attached: futex waits always, kernel locks when `kernel` and the
/// kernel has their tracepoints. Says whether kernel locks are watched.
pub fn attach(
    maps: &StackMaps,
    own: &LockMaps,
    filtered: bool,
    kernel: bool,
) -> Result<(Vec<Program>, Vec<Link>, bool), Error> {
    let mut all = maps.all();
    all.extend([&own.futex_waits, &own.lock_waits, &own.waited]);
    let load = |name: &str, p: Insns| -> Result<Program, Error> {
        Ok(Program::load(
            &p.assemble()?,
            &all,
            &LoadOptions::new(name, ProgType::Tracepoint),
        )?)
    };
    let mut programs = Vec::new();
    let mut links = Vec::new();
    // Ends before begins: a wait that begins always finds its end attached.
    let futex_end = load("lock_futex_end", end_program("futex_waits"))?;
    links.push(futex_end.attach_tracepoint("syscalls", "sys_exit_futex")?);
    let futex_begin = load("lock_futex_begin", futex_begin_program(filtered)?)?;
    links.push(futex_begin.attach_tracepoint("syscalls", "sys_enter_futex")?);
    programs.extend([futex_end, futex_begin]);
    let kernel = kernel && kernel_locks_available();
    if kernel {
        let end = load("lock_kernel_end", end_program("lock_waits"))?;
        links.push(end.attach_tracepoint("lock", "contention_end")?);
        let begin = load("lock_kernel_begin", kernel_begin_program(filtered)?)?;
        links.push(begin.attach_tracepoint("lock", "contention_begin")?);
        programs.extend([end, begin]);
    }
    Ok((programs, links, kernel))
}

/// Per key: [waits, nanoseconds], with the waits still going on at the profile's end
/// (`end_ns`, by `profile::ktime_now`) counted up to it.
pub fn entries(maps: &StackMaps, own: &LockMaps, end_ns: u64) -> Result<Entries, Error> {
    let mut by_key = crate::profile::sum_by_key(&[(0, &maps.counts), (1, &own.waited)], 2)?;
    // Waits still going on at the end (a deadlock is the wait most worth seeing): counted up to now.
    for in_flight in [&own.futex_waits, &own.lock_waits] {
        crate::profile::add_in_flight(&mut by_key, in_flight, end_ns, 0, 1, Some(0))?;
    }
    Ok(by_key.into_iter().collect())
}

/// The innermost pseudo-frame naming the kind of lock of a key's extra field: `[futex]`, or the
/// kernel lock's kind from the tracepoint's flags (`[kernel-mutex]`, `[kernel-rwsem-read]`, …:
/// no spaces, which folded stacks cannot hold).
pub fn kind_frame(extra: u32) -> String {
    if extra == EXTRA_FUTEX {
        return "[futex]".into();
    }
    let f = extra & 0xff;
    let mut kind = if f & 0x20 != 0 {
        "mutex"
    } else if f & 0x1 != 0 {
        "spinlock"
    } else if f & 0x8 != 0 {
        "rtmutex"
    } else {
        "rwsem"
    }
    .to_string();
    if f & 0x10 != 0 {
        kind = format!("percpu-{kind}");
    }
    if f & 0x2 != 0 {
        kind.push_str("-read");
    } else if f & 0x4 != 0 {
        kind.push_str("-write");
    }
    format!("[kernel-{kind}]")
}
