//! `alloc` mode: uprobes on the allocator — `malloc`, `calloc`, `realloc` and `free` of libc (or
//! of another library that exports them, `--allocator`) — keeping every live allocation in the
//! kernel with the stack that made it:
//!
//! ```text
//!  malloc(size) / calloc(n, size) / realloc(p, size)   entry:  sizes[tid] = size
//!                                                               (realloc: as free(p) first)
//!  … returns addr (uretprobe):  allocs[addr] = {size, key of the caller's stack}
//!                               bytes[key] += size;  calls[key] += 1     ← allocation rate
//!  free(addr):                  delete allocs[addr]                     ← no longer outstanding
//! ```
//!
//! At the end, what is still in `allocs` is outstanding — a leak, if the program is done — and
//! is summed by stack in user space. Allocations made before the profile started are unknown to
//! it (their frees find nothing and change nothing).
//!
//! Only calls that reach these symbols are seen: a program with its own allocator linked in
//! (jemalloc or mimalloc built in, Go's runtime) calls none of them; one that loads an allocator
//! library (`libjemalloc.so`, `libtcmalloc.so`) is profiled with `--allocator` naming it, as
//! those export the same four functions. Rust's default allocator is libc's.

use bpfkit::attach::uprobe::{pt_regs_offset, UprobeTarget};
use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::insn::{jmp_if, JmpCond, Program as Insns, Reg};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

use crate::kernel::{
    add_to, build_key_with, filter_target, stat_inc, Error, StackMaps, KEY_SIZE, STAT_EVENTS,
    STAT_MODE,
};
use crate::profile::Entries;

/// `stats` slot: a live allocation not recorded because `allocs` was full.
pub const STAT_ALLOCS_FULL: u32 = STAT_MODE;

/// Stack slots of the programs (the key is at r10-32..0).
const VALUE_AT: i16 = -96; // {size, key}: 40 bytes
const ADDR_AT: i16 = -104;
const TID_AT: i16 = -108;

/// The mode's own maps.
pub struct AllocMaps {
    /// tid → the size asked for, between a call's entry and its return.
    pub sizes: Map,
    /// addr → {size, key}: the live allocations.
    pub allocs: Map,
    /// key → allocations made (the bytes made are in the shared `counts`).
    pub calls: Map,
}

impl AllocMaps {
    pub fn new(live: u32, keys: u32) -> Result<AllocMaps, Error> {
        Ok(AllocMaps {
            sizes: Map::create(&MapSpec::new("sizes", MapType::Hash, 4, 8, 65536))?,
            allocs: Map::create(&MapSpec::new(
                "allocs",
                MapType::Hash,
                8,
                8 + KEY_SIZE,
                live,
            ))?,
            calls: Map::create(&MapSpec::new("calls", MapType::Hash, KEY_SIZE, 8, keys))?,
        })
    }
}

/// Which allocation function an entry program is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Malloc,
    Calloc,
    Realloc,
}

/// `r7` = tgid, `r8` = tid, and the target filter. Clobbers r0–r2.
fn prologue(filtered: bool) -> Insns {
    let mut p = bpf_asm! {
        r6 = r1                                 // struct pt_regs
        call bpf_get_current_pid_tgid
        r8 = r0
        r8 &= 0xffffffff
        r7 = r0
        r7 >>= 32
    };
    if filtered {
        p.extend(filter_target("out"));
    }
    p
}

fn epilogue() -> Insns {
    bpf_asm! {
    out:
        r0 = 0
        exit
    }
}

/// `delete allocs[addr in r1]` (addr 0: nothing). Clobbers r0–r2.
fn forget(tag: &str) -> Insns {
    let done = format!("forget_done_{tag}");
    let mut p = Insns::new();
    p.push(jmp_if(JmpCond::Eq, Reg::R1, 0, done.as_str()));
    p.extend(bpf_asm! {
        *(u64 *)(r10 + {ADDR_AT}) = r1
        r1 = map[allocs] ll
        r2 = r10
        r2 += {ADDR_AT as i32}
        call bpf_map_delete_elem
    });
    p.label(done);
    p
}

/// The entry program of `which`: the size asked for, kept under the thread.
pub fn entry_program(which: Entry, filtered: bool) -> Result<Insns, Error> {
    let (di, si) = (pt_regs_offset("di")?, pt_regs_offset("si")?);
    let mut p = prologue(filtered);
    match which {
        Entry::Malloc => {
            p.extend(bpf_asm! { r9 = *(u64 *)(r6 + {di}) });
        }
        Entry::Calloc => {
            p.extend(bpf_asm! {
                r9 = *(u64 *)(r6 + {di})
                r1 = *(u64 *)(r6 + {si})
                r9 *= r1
            });
        }
        Entry::Realloc => {
            // realloc(p, n) frees p (or moves it; either way p is no longer the allocation).
            p.extend(bpf_asm! { r1 = *(u64 *)(r6 + {di}) });
            p.extend(forget("realloc"));
            p.extend(bpf_asm! { r9 = *(u64 *)(r6 + {si}) });
        }
    };
    p.extend(bpf_asm! {
        *(u32 *)(r10 + {TID_AT}) = w8
        *(u64 *)(r10 + {ADDR_AT}) = r9
        r1 = map[sizes] ll
        r2 = r10
        r2 += {TID_AT as i32}
        r3 = r10
        r3 += {ADDR_AT as i32}
        r4 = 0
        call bpf_map_update_elem
    });
    p.extend(epilogue());
    Ok(p)
}

/// The return program of malloc, calloc and realloc: the allocation recorded with its stack.
pub fn return_program(filtered: bool) -> Result<Insns, Error> {
    let ax = pt_regs_offset("ax")?;
    let mut p = prologue(filtered);
    p.extend(bpf_asm! {
        *(u32 *)(r10 + {TID_AT}) = w8
        r1 = map[sizes] ll
        r2 = r10
        r2 += {TID_AT as i32}
        call bpf_map_lookup_elem
        if r0 == 0 goto out                     // its entry was not seen
        r9 = *(u64 *)(r0 + 0)                   // the size
        r1 = map[sizes] ll
        r2 = r10
        r2 += {TID_AT as i32}
        call bpf_map_delete_elem
        r8 = *(u64 *)(r6 + {ax})                // the address returned
        if r8 == 0 goto out                     // failed: nothing allocated
    });
    p.extend(stat_inc(STAT_EVENTS, "events"));
    // The caller's stack: at the return probe the registers are the caller's, after the call.
    p.extend(build_key_with(false));
    p.extend(bpf_asm! { *(u64 *)(r10 + {VALUE_AT}) = r9 });
    for i in 0..4i16 {
        p.extend(bpf_asm! {
            r1 = *(u64 *)(r10 + {-32 + 8 * i})
            *(u64 *)(r10 + {VALUE_AT + 8 + 8 * i}) = r1
        });
    }
    p.extend(bpf_asm! {
        *(u64 *)(r10 + {ADDR_AT}) = r8
        r1 = map[allocs] ll
        r2 = r10
        r2 += {ADDR_AT as i32}
        r3 = r10
        r3 += {VALUE_AT as i32}
        r4 = 0
        call bpf_map_update_elem
        if r0 == 0 goto recorded
    });
    p.extend(stat_inc(STAT_ALLOCS_FULL, "allocs_full"));
    p.label("recorded");
    p.extend(add_to("counts", "bytes"));
    p.extend(bpf_asm! { r9 = 1 });
    p.extend(add_to("calls", "calls"));
    p.extend(epilogue());
    Ok(p)
}

/// free(addr): no longer outstanding.
pub fn free_program(filtered: bool) -> Result<Insns, Error> {
    let di = pt_regs_offset("di")?;
    let mut p = prologue(filtered);
    p.extend(bpf_asm! { r1 = *(u64 *)(r6 + {di}) });
    p.extend(forget("free"));
    p.extend(epilogue());
    Ok(p)
}

/// The programs loaded and attached to `allocator`'s four functions (one process when `pid`).
pub fn attach(
    maps: &StackMaps,
    own: &AllocMaps,
    allocator: &str,
    pid: Option<i32>,
    filtered: bool,
) -> Result<(Vec<Program>, Vec<Link>), Error> {
    let mut all = maps.all();
    all.extend([&own.sizes, &own.allocs, &own.calls]);
    let load = |name: &str, p: Insns| -> Result<Program, Error> {
        Ok(Program::load(
            &p.assemble()?,
            &all,
            &LoadOptions::new(name, ProgType::Kprobe),
        )?)
    };
    let target = |symbol: &str| {
        let t = UprobeTarget::symbol(allocator, symbol);
        match pid {
            Some(pid) => t.pid(pid),
            None => t,
        }
    };
    let mut programs = Vec::new();
    let mut links = Vec::new();
    let ret = load("alloc_return", return_program(filtered)?)?;
    for (symbol, which) in [
        ("malloc", Entry::Malloc),
        ("calloc", Entry::Calloc),
        ("realloc", Entry::Realloc),
    ] {
        let entry = load(&format!("alloc_{symbol}"), entry_program(which, filtered)?)?;
        links.push(
            entry
                .attach_uprobe(&target(symbol))
                .map_err(|e| format!("{allocator}:{symbol}: {e}"))?,
        );
        links.push(
            ret.attach_uprobe(&target(symbol).retprobe())
                .map_err(|e| format!("{allocator}:{symbol} (return): {e}"))?,
        );
        programs.push(entry);
    }
    let free = load("alloc_free", free_program(filtered)?)?;
    links.push(
        free.attach_uprobe(&target("free"))
            .map_err(|e| format!("{allocator}:free: {e}"))?,
    );
    programs.push(free);
    programs.push(ret);
    Ok((programs, links))
}

/// Per key: [outstanding allocations, outstanding bytes, allocations, bytes allocated] — pprof's
/// `inuse_objects`, `inuse_space`, `alloc_objects`, `alloc_space`.
pub fn entries(maps: &StackMaps, own: &AllocMaps) -> Result<Entries, Error> {
    use std::collections::HashMap;
    let mut by_key: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    let u64_at =
        |b: &[u8], o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or_default());
    for e in own.allocs.iter() {
        let (_, v) = e?;
        let slot = by_key
            .entry(v[8..8 + KEY_SIZE as usize].to_vec())
            .or_insert_with(|| vec![0; 4]);
        slot[0] += 1;
        slot[1] += u64_at(&v, 0);
    }
    for e in own.calls.iter() {
        let (k, v) = e?;
        by_key.entry(k).or_insert_with(|| vec![0; 4])[2] += u64_at(&v, 0);
    }
    for e in maps.counts.iter() {
        let (k, v) = e?;
        by_key.entry(k).or_insert_with(|| vec![0; 4])[3] += u64_at(&v, 0);
    }
    Ok(by_key.into_iter().collect())
}
