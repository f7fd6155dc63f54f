//! `offcpu` mode: time blocked, by the stack that blocked. One program on `sched_switch`, which
//! runs in the context of the task leaving the CPU (`prev`) and names the one arriving (`next`):
//!
//! ```text
//!  sched_switch(preempt, prev, next, prev_state)
//!   ├─ prev blocked (prev_state ≠ TASK_RUNNING) and profiled:
//!   │     start[prev tid] = {now, key of prev's stacks}       ← the stacks at the moment it blocked
//!   └─ next had blocked:  d = now − start[next tid].ts;  delete start[next tid]
//!         if d ≥ --min-block: counts[key] += d (nanoseconds)
//! ```
//!
//! The switch back in is when the task runs again, so the time counted is the whole gap: the
//! sleep itself and the wait for a CPU after the wake-up. A task preempted while runnable is not
//! blocked, and not counted (that is CPU contention, the cpu mode's business).
//!
//! The program is a `tp_btf` program where the kernel takes one (BTF-typed arguments, no
//! tracepoint buffer) and a raw tracepoint otherwise: both see the same `u64` arguments. `next`'s
//! thread id is read with CO-RE (`task_struct.pid` where this kernel has it).

use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{jmp_if, JmpCond, Program as Insns, Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

use crate::kernel::{
    remember_start, add_to_counts, build_key, filter_target, stat_inc, Error, StackMaps, KEY_SIZE, STAT_EVENTS,
    STAT_MODE,
};
use crate::profile::Entries;

/// `stats` slot: a blocked task not recorded because `start` was full.
pub const STAT_START_FULL: u32 = STAT_MODE;

/// `start` value: the switch-out time, then the key (at r10-96 on the program's stack).
const START_AT: i16 = -96;
const TID_AT: i16 = -100;

/// The threads blocked now: tid → {ns, key}.
pub fn start_map(threads: u32) -> Result<Map, Error> {
    Ok(Map::create(&MapSpec::new(
        "start",
        MapType::Hash,
        4,
        8 + KEY_SIZE,
        threads,
    ))?)
}

/// The sched_switch program. `min_ns`: shorter blocks are not counted.
pub fn program(filtered: bool, min_ns: u64) -> Result<Insns, Error> {
    let mut p = bpf_asm! {
        r6 = r1                                 // u64 args[]: preempt, prev, next, prev_state
        call bpf_get_current_pid_tgid
        r8 = r0
        r8 &= 0xffffffff                        // prev's thread
        r7 = r0
        r7 >>= 32                               // prev's process
        if r7 == 0 goto switch_in
        r1 = *(u64 *)(r6 + 24)
        if w1 == 0 goto switch_in               // TASK_RUNNING: preempted, not blocked
    };
    if filtered {
        p.extend(filter_target("switch_in"));
    }
    p.extend(build_key());
    p.extend(bpf_asm! { *(u32 *)(r10 + {TID_AT}) = w8 });
    p.extend(remember_start("start", TID_AT, START_AT, STAT_START_FULL, "start_full", "switch_in"));
    p.label("switch_in");
    p.extend(bpf_asm! { r1 = *(u64 *)(r6 + 16) }); // next
    p.extend(bpf_asm! { r9 = r1 });
    p.extend(core_read(
        Reg::R8,
        Reg::R9,
        &[Hop::new("task_struct", "pid")],
        Size::W,
        -8,
        Reg::R0,
    )?);
    p.extend(bpf_asm! {
        *(u32 *)(r10 + {TID_AT}) = w8
        r1 = map[start] ll
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
        r9 = r0                                 // nanoseconds blocked
        r1 = map[start] ll
        r2 = r10
        r2 += {TID_AT as i32}
        call bpf_map_delete_elem
    });
    // A u64 immediate compare: load the minimum into a register.
    p.push(bpfkit::insn::ld_imm64(Reg::R1, min_ns));
    p.push(jmp_if(JmpCond::Lt, Reg::R9, Reg::R1, "out"));
    p.extend(stat_inc(STAT_EVENTS, "events"));
    p.extend(add_to_counts("blocked"));
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// Which kind of program carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    TpBtf,
    RawTracepoint,
}

/// The program loaded and attached to sched_switch: as tp_btf, or as a raw tracepoint when the
/// kernel refuses that (decided by trying, not by version), or when `force_raw`.
pub fn attach(
    maps: &StackMaps,
    start: &Map,
    filtered: bool,
    min_ns: u64,
    force_raw: bool,
) -> Result<(Program, Link, Via), Error> {
    let asm = program(filtered, min_ns)?.assemble()?;
    let mut all = maps.all();
    all.push(start);
    let tp_btf = || -> Result<(Program, Link), Error> {
        let opts = bpfkit::attach::tp_btf_options("offcpu_switch", "sched_switch")?;
        let prog = Program::load(&asm, &all, &opts)?;
        let link = prog.attach_btf()?;
        Ok((prog, link))
    };
    let tried = if force_raw {
        Err("--raw-tracepoint".into())
    } else {
        tp_btf()
    };
    match tried {
        Ok((prog, link)) => Ok((prog, link, Via::TpBtf)),
        Err(btf_err) => {
            let prog = Program::load(
                &asm,
                &all,
                &LoadOptions::new("offcpu_switch", ProgType::RawTracepoint),
            )
            .map_err(|e| format!("sched_switch as tp_btf: {btf_err}; as a raw tracepoint: {e}"))?;
            let link = prog.attach_raw_tracepoint("sched_switch")?;
            Ok((prog, link, Via::RawTracepoint))
        }
    }
}

/// The profile's entries: what `counts` holds (blocks that ended), plus each thread still
/// blocked when the profile ended, counted from its switch-out up to `end_ns` (when at least
/// `min_ns`) — a thread stuck for the whole profile (a deadlock, a long read) is the one
/// most worth seeing.
pub fn entries_until_now(maps: &StackMaps, start: &Map, end_ns: u64, min_ns: u64) -> Result<Entries, Error> {
    let mut by_key = crate::profile::sum_by_key(&[(0, &maps.counts)], 1)?;
    crate::profile::add_in_flight(&mut by_key, start, end_ns, min_ns, 0, None)?;
    Ok(by_key.into_iter().collect())
}
