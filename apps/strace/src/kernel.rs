//! The kernel half: programs on `raw_syscalls:sys_enter`/`sys_exit` (every system call of a
//! traced task), `sched:sched_process_fork` (following children), `sched:sched_process_exit`
//! and `signal:signal_deliver`, and the maps that filter in the kernel — which tasks
//! (`tids`), which system calls (`selected`) — and say what to read of each call's memory
//! (`argspec`).
//!
//! A call's entry fills a per-CPU scratch record (arguments, time, the strings and buffers its
//! spec names) and parks it in `pending` under the thread id; its exit copies it into a
//! ring-buffer record with the return value and what the call wrote (a `read`'s data, a
//! `stat`'s struct). Nothing leaves the kernel for tasks or calls not selected; with `-c` the
//! exit only adds to per-call counters (`stats`) and sends nothing at all.

use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{jmp_if, JmpCond, Program as Insns, Reg, Size};
use bpfkit::maps::{Map, MapFlags, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::Program;

use crate::record::*;

/// Syscall numbers the maps are indexed by (x86-64 has fewer than 512).
pub const NR_MAX: u32 = 512;
/// `argspec` entries: what to read of a call's memory. Byte offsets in an entry:
pub const SPEC_STR0: i16 = 0;
pub const SPEC_BUF_IN: i16 = 2;
pub const SPEC_BUF_IN_LEN: i16 = 3;
pub const SPEC_BUF_OUT: i16 = 4;
pub const SPEC_BUF_OUT_LEN: i16 = 5;
pub const SPEC_ARGV: i16 = 6;
pub const SPEC_ENVP: i16 = 7;
pub const SPEC_FIXED_LEN: i16 = 8;
/// An argument index that means "none".
pub const NONE: u8 = 0xff;
/// `SPEC_BUF_OUT_LEN` values beyond argument indexes: the return value, or the fixed length.
pub const LEN_RET: u8 = 0x80;
pub const LEN_FIXED: u8 = 0x81;

/// `tids` values: traced, or armed (a started command, traced from its `execve` on).
pub const TRACED: u8 = 1;
pub const ARMED: u8 = 2;

/// What to read of one system call's arguments (argument indexes, `NONE` for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgSpec {
    pub str0: u8,
    pub str1: u8,
    pub buf_in: u8,
    pub buf_in_len: u8,
    pub buf_out: u8,
    pub buf_out_len: u8,
    pub argv: u8,
    pub envp: u8,
    pub fixed_len: u16,
}

impl ArgSpec {
    pub const NOTHING: ArgSpec = ArgSpec { str0: NONE, str1: NONE, buf_in: NONE, buf_in_len: NONE, buf_out: NONE, buf_out_len: NONE, argv: NONE, envp: NONE, fixed_len: 0 };

    fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&[self.str0, self.str1, self.buf_in, self.buf_in_len, self.buf_out, self.buf_out_len, self.argv, self.envp]);
        b[8..10].copy_from_slice(&self.fixed_len.to_ne_bytes());
        b
    }
}

/// The maps, created for one run.
pub struct Maps {
    pub tids: Map,
    pub selected: Map,
    pub argspec: Map,
    pub scratch: Map,
    pub pending: Map,
    pub events: Map,
    pub lost: Map,
    pub stats: Map,
    /// Per traced process: the last signal sent to it (see `signal_sent_program`).
    pub sigsent: Map,
}

/// How the programs are built for this run.
pub struct Config {
    /// Bytes of a buffer to capture (`-s`).
    pub buf_max: usize,
    /// Add children of traced tasks (`-f`).
    pub follow: bool,
    /// Count in the kernel instead of sending records (`-c`).
    pub summary: bool,
    /// Bytes of the ring buffer.
    pub ring_size: u32,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl Maps {
    pub fn new(cfg: &Config) -> Result<Maps, Error> {
        let record = size(cfg.buf_max) as u32;
        Ok(Maps {
            tids: Map::create(&MapSpec::new("tids", MapType::Hash, 4, 1, 65536))?,
            selected: Map::create(&MapSpec::new("selected", MapType::Array, 4, 1, NR_MAX))?,
            argspec: Map::create(&MapSpec::new("argspec", MapType::Array, 4, 16, NR_MAX))?,
            scratch: Map::create(&MapSpec::new("scratch", MapType::PercpuArray, 4, record, 1))?,
            // Not preallocated: 4096 records of ~1 KiB each would be 4 MiB charged at start.
            pending: Map::create(&MapSpec::new("pending", MapType::Hash, 4, record, 4096).flags(MapFlags::NO_PREALLOC))?,
            // 8 MiB by default: room for thousands of records while user space formats.
            events: Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, cfg.ring_size))?,
            lost: Map::create(&MapSpec::new("lost", MapType::PercpuArray, 4, 8, 1))?,
            // Per call: {u64 calls, u64 errors, u64 ns}.
            stats: Map::create(&MapSpec::new("stats", MapType::PercpuArray, 4, 24, NR_MAX))?,
            // Per traced process (tgid): the last signal sent to it, {sig, si_code, si_pid,
            // si_uid, si_status, si_utime, si_stime}, for a fatal one the kernel delivers as
            // SIGKILL.
            sigsent: Map::create(&MapSpec::new("sigsent", MapType::Hash, 4, 56, 4096))?,
        })
    }

    /// Trace task `tid`.
    pub fn trace(&self, tid: u32) -> Result<(), Error> {
        Ok(self.tids.update(&tid.to_ne_bytes(), &[TRACED], UpdateFlags::Any)?)
    }

    /// Trace task `tid` from its next `execve` on (a command started paused: its own last
    /// steps before the exec are not the command's).
    pub fn trace_from_exec(&self, tid: u32) -> Result<(), Error> {
        Ok(self.tids.update(&tid.to_ne_bytes(), &[ARMED], UpdateFlags::Any)?)
    }

    /// Select system call `nr` (and give its argument spec).
    pub fn select(&self, nr: u32, spec: &ArgSpec) -> Result<(), Error> {
        self.selected.update(&nr.to_ne_bytes(), &[1], UpdateFlags::Any)?;
        Ok(self.argspec.update(&nr.to_ne_bytes(), &spec.bytes(), UpdateFlags::Any)?)
    }

    fn all(&self) -> [&Map; 9] {
        [&self.tids, &self.selected, &self.argspec, &self.scratch, &self.pending, &self.events, &self.lost, &self.stats, &self.sigsent]
    }
}

/// `dst = args[idx]` of the record at r9, for the argument index in `idx` (checked ≤ 5 first:
/// jumps to `skip` otherwise). Clobbers r1.
fn arg_by_index(dst: Reg, idx: Reg, skip: &str) -> Insns {
    let mut p = Insns::new();
    p.push(bpfkit::insn::jmp_if(bpfkit::insn::JmpCond::Gt, idx, 5, skip));
    p.push(bpfkit::insn::mov64(Reg::R1, idx));
    p.push(bpfkit::insn::alu64(bpfkit::insn::AluOp::Lsh, Reg::R1, 3));
    p.push(bpfkit::insn::add64(Reg::R1, Reg::R9));
    p.push(bpfkit::insn::ldx(Size::DW, dst, Reg::R1, ARGS));
    p
}

/// Whether the current thread is traced: r7 = its pid_tgid, the tid at r10-4, r0 = its `tids`
/// entry; jumps to `out` when it has none.
fn current_if_traced(out: &str) -> Insns {
    let mut p = bpf_asm! {
        call bpf_get_current_pid_tgid
        r7 = r0
        *(u32 *)(r10 - 4) = w7                  // the thread
        r1 = map[tids] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
    };
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, out));
    p
}

/// A record of `kind` reserved in the ring at r9, its header filled for the current thread
/// (pid_tgid in r7, kept) and no strings, buffer or argv; jumps to `full` when the ring is full.
/// The caller fills `NR` (and the arguments) and submits.
fn reserve_record(cfg: &Config, kind: u32, full: &str) -> Insns {
    let mut p = bpf_asm! {
        r1 = map[events] ll
        r2 = {size(cfg.buf_max) as i32}
        r3 = 0
        call bpf_ringbuf_reserve
    };
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 0, full));
    p.extend(bpf_asm! {
        r9 = r0
        *(u32 *)(r9 + {KIND}) = {kind as i32}
        *(u32 *)(r9 + {TID}) = w7
        r1 = r7
        r1 >>= 32
        *(u32 *)(r9 + {TGID}) = w1
        *(u64 *)(r9 + {STR_LEN}) = 0
        *(u64 *)(r9 + {BUF_LEN}) = 0            // and flags
        *(u64 *)(r9 + {ARGC}) = 0               // and envc
    });
    p
}

/// The program on sys_enter.
fn enter_program(cfg: &Config) -> Result<Insns, Error> {
    let rec = size(cfg.buf_max) as i32;
    let buf_max = (cfg.buf_max.div_ceil(8) * 8) as i32;
    let mut p = bpf_asm! {
        r6 = r1                                 // u64 ctx[]: struct pt_regs *regs, long id
    };
    p.extend(current_if_traced("out"));
    p.extend(bpf_asm! {
        r8 = *(u64 *)(r6 + 8)                   // the syscall number
        r1 = *(u8 *)(r0 + 0)
        if r1 != {ARMED as i32} goto traced
        // A started command is traced from its execve: what runs before it is ours.
        if r8 != 59 goto out
        *(u8 *)(r0 + 0) = {TRACED as i32}
    traced:
        if r8 >= {NR_MAX as i32} goto out
        *(u32 *)(r10 - 8) = w8
        r1 = map[selected] ll
        r2 = r10
        r2 += -8
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u8 *)(r0 + 0)
        if r1 == 0 goto out                     // not selected (-e trace=)
        *(u32 *)(r10 - 12) = 0
        r1 = map[scratch] ll
        r2 = r10
        r2 += -12
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r9 = r0                                 // the record being filled
        *(u32 *)(r9 + {KIND}) = {KIND_SYSCALL as i32}
        *(u32 *)(r9 + {TID}) = w7
        r7 >>= 32
        *(u32 *)(r9 + {TGID}) = w7
        *(u32 *)(r9 + {NR}) = w8
        *(u64 *)(r9 + {STR_LEN}) = 0
        *(u64 *)(r9 + {BUF_LEN}) = 0            // and flags
        *(u64 *)(r9 + {ARGC}) = 0               // and envc
        *(u64 *)(r9 + {RET}) = 0
        call bpf_ktime_get_ns
        *(u64 *)(r9 + {TS_ENTER}) = r0
    });
    // The arguments, from the registers the syscall entry saved (the x86-64 syscall convention:
    // rdi, rsi, rdx, r10, r8, r9), at this kernel's pt_regs offsets.
    p.extend(bpf_asm! { r2 = *(u64 *)(r6 + 0) });
    for (i, off) in syscall_arg_offsets()?.into_iter().enumerate() {
        let i = i as i16;
        p.extend(bpf_asm! {
            r1 = *(u64 *)(r2 + {off})
            *(u64 *)(r9 + {ARGS + 8 * i}) = r1
        });
    }
    p.extend(bpf_asm! {
        r1 = map[argspec] ll
        r2 = r10
        r2 += -8
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r8 = r0                                 // the spec of this call
    });
    // Up to two strings (paths).
    for k in 0..2i16 {
        let skip = format!("no_str{k}");
        p.extend(bpf_asm! { r2 = *(u8 *)(r8 + {SPEC_STR0 + k}) });
        p.extend(arg_by_index(Reg::R3, Reg::R2, &skip));
        p.extend(bpf_asm! {
            r1 = r9
            r1 += {(STRS as i32) + (k as i32) * STR_MAX as i32}
            r2 = {STR_MAX as i32}
            call bpf_probe_read_user_str
        });
        p.push(jmp_if(JmpCond::SLe, Reg::R0, 0, skip.as_str()));
        p.extend(bpf_asm! { *(u32 *)(r9 + {STR_LEN + 4 * k}) = w0 });
        p.label(skip);
    }
    // A buffer the call reads from (write's data, connect's address): up to buf_max bytes.
    p.extend(bpf_asm! { r2 = *(u8 *)(r8 + {SPEC_BUF_IN}) });
    p.extend(arg_by_index(Reg::R7, Reg::R2, "no_buf_in"));
    p.extend(bpf_asm! { r2 = *(u8 *)(r8 + {SPEC_BUF_IN_LEN}) });
    p.extend(arg_by_index(Reg::R2, Reg::R2, "no_buf_in"));
    p.extend(bpf_asm! {
        if r2 <= {buf_max} goto buf_in_fits
        r2 = {buf_max}
        *(u32 *)(r9 + {FLAGS}) = {FLAG_TRUNCATED as i32}
    buf_in_fits:
        if r2 == 0 goto no_buf_in
        *(u32 *)(r9 + {BUF_LEN}) = w2
        r1 = r9
        r1 += {BUF as i32}
        r3 = r7
        call bpf_probe_read_user
    no_buf_in:
    });
    // execve's argv: the first ARGV_MAX entries, and whether there are more.
    p.extend(bpf_asm! { r2 = *(u8 *)(r8 + {SPEC_ARGV}) });
    p.extend(arg_by_index(Reg::R7, Reg::R2, "no_argv"));
    for i in 0..=ARGV_MAX as i32 {
        p.extend(bpf_asm! {
            r1 = r10
            r1 += -24
            r2 = 8
            r3 = r7
            r3 += {8 * i}
            call bpf_probe_read_user
            if r0 != 0 goto argv_done
            r3 = *(u64 *)(r10 - 24)
            if r3 == 0 goto argv_done
            *(u32 *)(r9 + {ARGC}) = {i + 1}
        });
        if (i as usize) < ARGV_MAX {
            p.extend(bpf_asm! {
                r1 = r9
                r1 += {ARGV as i32 + i * ARG_MAX as i32}
                r2 = {ARG_MAX as i32}
                call bpf_probe_read_user_str
            });
        }
    }
    p.extend(bpf_asm! {
    argv_done:
    no_argv:
        r2 = *(u8 *)(r8 + {SPEC_ENVP})
    });
    // execve's envp: counted, up to ENV_MAX entries (a bounded loop).
    p.extend(arg_by_index(Reg::R7, Reg::R2, "no_envp"));
    p.extend(bpf_asm! {
        r8 = 0
    env_next:
        if r8 >= {ENV_MAX as i32} goto env_done
        r1 = r10
        r1 += -24
        r2 = 8
        r3 = r8
        r3 <<= 3
        r3 += r7
        call bpf_probe_read_user
        if r0 != 0 goto env_done
        r3 = *(u64 *)(r10 - 24)
        if r3 == 0 goto env_done
        r8 += 1
        goto env_next
    env_done:
        *(u32 *)(r9 + {ENVC}) = w8
    no_envp:
        r1 = *(u32 *)(r9 + {NR})
        if r1 == 60 goto noreturn               // exit
        if r1 == 231 goto noreturn              // exit_group
        r1 = map[pending] ll
        r2 = r10
        r2 += -4
        r3 = r9
        r4 = 0
        call bpf_map_update_elem
        goto out
    noreturn:
        *(u32 *)(r9 + {FLAGS}) = {FLAG_NORETURN as i32}
    });
    if cfg.summary {
        // -c: strace's table counts finished calls; one that never returns is not among them.
        p.extend(bpf_asm! { goto out });
    } else {
        p.extend(bpf_asm! {
            r1 = map[events] ll
            r2 = r9
            r3 = {rec}
            r4 = 0
            call bpf_ringbuf_output
            if r0 == 0 goto out
        });
        p.extend(count_lost());
    }
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// `lost[0] += 1` (per-CPU). Clobbers r0–r2.
fn count_lost() -> Insns {
    bpf_asm! {
        *(u32 *)(r10 - 12) = 0
        r1 = map[lost] ll
        r2 = r10
        r2 += -12
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
    }
}

/// -c: `stats[nr]` += {1, error?, ns} for the record at r9 (its ret and times filled in).
/// Clobbers r0–r4.
fn count_call() -> Result<Insns, Error> {
    let mut p = bpf_asm! {
        r1 = *(u32 *)(r9 + {NR})
        *(u32 *)(r10 - 12) = w1
        r1 = map[stats] ll
        r2 = r10
        r2 += -12
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
    };
    {
        p.extend(bpf_asm! {
            r1 = *(u64 *)(r9 + {RET})
            if r1 s>= 0 goto counted_ok
            if r1 s< -4095 goto counted_ok
            r2 = *(u64 *)(r0 + 8)
            r2 += 1
            *(u64 *)(r0 + 8) = r2
        counted_ok:
            r1 = *(u64 *)(r9 + {TS_EXIT})
            r2 = *(u64 *)(r9 + {TS_ENTER})
            r1 -= r2
            r2 = *(u64 *)(r0 + 16)
            r2 += r1
            *(u64 *)(r0 + 16) = r2
        });
    }
    Ok(p)
}

/// The program on sys_exit.
fn exit_program(cfg: &Config) -> Result<Insns, Error> {
    let rec = size(cfg.buf_max) as i32;
    let buf_max = (cfg.buf_max.div_ceil(8) * 8) as i32;
    let mut p = bpf_asm! {
        r6 = r1                                 // u64 ctx[]: struct pt_regs *regs, long ret
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 4) = w0
        r1 = map[pending] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out                     // its entry was not seen (or not selected)
        r7 = r0
        r1 = *(u64 *)(r6 + 8)
        *(u64 *)(r7 + {RET}) = r1
        call bpf_ktime_get_ns
        *(u64 *)(r7 + {TS_EXIT}) = r0
    };
    if cfg.summary {
        p.extend(bpf_asm! { r9 = r7 });
        p.extend(count_call()?);
        p.extend(bpf_asm! { goto done });
    } else {
        p.extend(bpf_asm! {
            r1 = map[events] ll
            r2 = {rec}
            r3 = 0
            call bpf_ringbuf_reserve
            if r0 != 0 goto reserved
        });
        p.extend(count_lost());
        p.extend(bpf_asm! {
            goto done
        reserved:
            r9 = r0
            r1 = r9
            r2 = {rec}
            r3 = r7
            call bpf_probe_read_kernel          // the entry's record into the ring
            r1 = *(u32 *)(r9 + {NR})
            *(u32 *)(r10 - 8) = w1
            r1 = map[argspec] ll
            r2 = r10
            r2 += -8
            call bpf_map_lookup_elem
            if r0 == 0 goto submit
            r8 = r0
            r1 = *(u32 *)(r9 + {NR})
            if r1 == 59 goto strings_done       // execve: the old memory is gone
        });
        // A string whose page was not resident at entry reads now: the call faulted it in.
        for k in 0..2i16 {
            let skip = format!("retry_done{k}");
            p.extend(bpf_asm! { r1 = *(u32 *)(r9 + {STR_LEN + 4 * k}) });
            p.push(jmp_if(JmpCond::Ne, Reg::R1, 0, skip.as_str()));
            p.extend(bpf_asm! { r2 = *(u8 *)(r8 + {SPEC_STR0 + k}) });
            p.extend(arg_by_index(Reg::R3, Reg::R2, &skip));
            p.extend(bpf_asm! {
                r1 = r9
                r1 += {(STRS as i32) + (k as i32) * STR_MAX as i32}
                r2 = {STR_MAX as i32}
                call bpf_probe_read_user_str
            });
            p.push(jmp_if(JmpCond::SLe, Reg::R0, 0, skip.as_str()));
            p.extend(bpf_asm! { *(u32 *)(r9 + {STR_LEN + 4 * k}) = w0 });
            p.label(skip);
        }
        p.extend(bpf_asm! {
        strings_done:
            r1 = *(u32 *)(r9 + {NR})
            if r1 != 59 goto argv_done
            r1 = *(u64 *)(r9 + {RET})
            if r1 != 0 goto argv_done
            call bpf_get_current_task
            r6 = r0
        });
        // execve succeeded: argv as the new program sees it, [mm->arg_start, mm->arg_end).
        p.extend(core_read(Reg::R7, Reg::R6, &[Hop::new("task_struct", "mm"), Hop::new("mm_struct", "arg_start")], Size::DW, -16, Reg::R0)?);
        p.extend(core_read(Reg::R6, Reg::R6, &[Hop::new("task_struct", "mm"), Hop::new("mm_struct", "arg_end")], Size::DW, -16, Reg::R0)?);
        p.extend(bpf_asm! { *(u32 *)(r9 + {ARGC}) = 0 });
        for i in 0..=ARGV_MAX as i32 {
            p.extend(bpf_asm! {
                if r7 >= r6 goto argv_done
                *(u32 *)(r9 + {ARGC}) = {i + 1}
            });
            if (i as usize) < ARGV_MAX {
                p.extend(bpf_asm! {
                    r1 = r9
                    r1 += {ARGV as i32 + i * ARG_MAX as i32}
                    r2 = {ARG_MAX as i32}
                    r3 = r7
                    call bpf_probe_read_user_str
                    if r0 s<= 0 goto argv_done
                });
                p.push(jmp_if(JmpCond::Lt, Reg::R0, ARG_MAX as i32, format!("argv_next{i}").as_str()));
                // A longer argument: find its end to step past it.
                p.extend(bpf_asm! {
                    r1 = r10
                    r1 += -256
                    r2 = 240
                    r3 = r7
                    call bpf_probe_read_user_str
                    if r0 s<= 0 goto argv_done
                });
                p.label(format!("argv_next{i}"));
                p.extend(bpf_asm! { r7 += r0 });
            }
        }
        p.extend(bpf_asm! {
        argv_done:
            r2 = *(u8 *)(r8 + {SPEC_BUF_OUT})
        });
        p.extend(arg_by_index(Reg::R7, Reg::R2, "submit"));
        p.extend(bpf_asm! {
            r1 = *(u8 *)(r8 + {SPEC_BUF_OUT_LEN})
            if r1 == {LEN_RET as i32} goto len_ret
            if r1 == {LEN_FIXED as i32} goto len_fixed
            r2 = r1
        });
        p.extend(arg_by_index(Reg::R2, Reg::R2, "submit"));
        p.extend(bpf_asm! {
            goto have_len
        len_ret:
            r2 = *(u64 *)(r9 + {RET})
            if r2 s<= 0 goto submit             // nothing written, or an error
            goto have_len
        len_fixed:
            r2 = *(u16 *)(r8 + {SPEC_FIXED_LEN})
            r1 = *(u64 *)(r9 + {RET})
            if r1 s< 0 goto submit              // an error: nothing written
        have_len:
            if r2 <= {buf_max} goto buf_out_fits
            r2 = {buf_max}
            *(u32 *)(r9 + {FLAGS}) = {FLAG_TRUNCATED as i32}
        buf_out_fits:
            if r2 == 0 goto submit
            *(u32 *)(r9 + {BUF_LEN}) = w2
            r1 = r9
            r1 += {BUF as i32}
            r3 = r7
            call bpf_probe_read_user
        submit:
            r1 = r9
            r2 = 0
            call bpf_ringbuf_submit
        });
    }
    p.extend(bpf_asm! {
    done:
        r1 = map[pending] ll
        r2 = r10
        r2 += -4
        call bpf_map_delete_elem
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// sched_process_fork: with `-f`, a traced task's child (process or thread) is traced too.
fn fork_program() -> Result<Insns, Error> {
    let pid = member_offset("task_struct", "pid")?;
    Ok(bpf_asm! {
        r6 = *(u64 *)(r1 + 0)                   // u64 ctx[]: struct task_struct *parent, *child
        r6 = *(u32 *)(r6 + {pid})
        r7 = *(u64 *)(r1 + 8)
        r7 = *(u32 *)(r7 + {pid})
        *(u32 *)(r10 - 4) = w6
        r1 = map[tids] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        *(u32 *)(r10 - 8) = w7
        *(u8 *)(r10 - 9) = 1
        r1 = map[tids] ll
        r2 = r10
        r2 += -8
        r3 = r10
        r3 += -9
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    })
}

/// sched_process_exit: a traced task's end (`+++ exited with N +++`), with its exit code read
/// from the task (CO-RE); the task leaves `tids`.
fn task_exit_program(cfg: &Config) -> Result<Insns, Error> {
    let mut p = current_if_traced("out");
    p.extend(bpf_asm! {
        call bpf_get_current_task
        r6 = r0
    });
    p.extend(core_read(Reg::R8, Reg::R6, &[Hop::new("task_struct", "exit_code")], Size::W, -16, Reg::R9)?);
    if !cfg.summary {
        p.extend(reserve_record(cfg, KIND_EXIT, "forget"));
        p.extend(bpf_asm! {
            *(u32 *)(r9 + {NR}) = w8            // exit_code: status << 8 | signal
            r1 = r9
            r2 = 0
            call bpf_ringbuf_submit
        });
    }
    p.extend(bpf_asm! {
    forget:
        r1 = map[tids] ll
        r2 = r10
        r2 += -4
        call bpf_map_delete_elem
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// The siginfo fields strace prints, as (path in `kernel_siginfo`, load size): `si_code`, then
/// the union's (the same offsets serve `_kill`, `_sigchld` and `_sigfault`). They are stored at
/// `ARGS + 8 * i` of a signal record, and at `8 + 8 * i` of a `sigsent` value.
const SIGINFO_FIELDS: [(&str, Size); 6] = [
    ("si_code", Size::W),
    ("_sifields._sigchld._pid", Size::W),
    ("_sifields._sigchld._uid", Size::W),
    ("_sifields._sigchld._status", Size::W),
    ("_sifields._sigchld._utime", Size::DW),
    ("_sifields._sigchld._stime", Size::DW),
];
const SIGKILL: i32 = 9;

/// signal_generate (`sig, struct kernel_siginfo *info, struct task_struct *task, group, result`):
/// a signal sent to a traced task is remembered per process. A signal whose default action is to
/// end the process is not delivered as itself: the kernel turns it into SIGKILL for every thread
/// (`complete_signal`), and `signal_deliver` then sees SIGKILL with no siginfo. strace, whose
/// tracee the kernel stops before that conversion, shows the original signal; this is how
/// bpfkit-strace can too.
fn signal_sent_program() -> Result<Insns, Error> {
    let (pid, tgid) = (member_offset("task_struct", "pid")?, member_offset("task_struct", "tgid")?);
    let mut p = bpf_asm! {
        r6 = r1
        r7 = *(u64 *)(r6 + 16)                  // the target task
        r1 = *(u32 *)(r7 + {pid})
        *(u32 *)(r10 - 4) = w1
        r1 = map[tids] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out                     // not traced
        r1 = *(u32 *)(r7 + {tgid})
        *(u32 *)(r10 - 4) = w1                  // the key: the process
        r1 = *(u64 *)(r6 + 0)
        *(u64 *)(r10 - 64) = r1                 // sig
        r8 = *(u64 *)(r6 + 8)                   // info, or SEND_SIG_NOINFO (0) / SEND_SIG_PRIV (1)
        if r8 > 1 goto real_info
        *(u64 *)(r10 - 32) = 0                  // si_status, si_utime, si_stime: none
        *(u64 *)(r10 - 24) = 0
        *(u64 *)(r10 - 16) = 0
        if r8 == 1 goto privileged
        *(u64 *)(r10 - 56) = 0                  // SI_USER, from the current task (as the kernel fills it)
        call bpf_get_current_pid_tgid
        r0 >>= 32
        *(u64 *)(r10 - 48) = r0
        call bpf_get_current_uid_gid
        w0 = w0
        *(u64 *)(r10 - 40) = r0
        goto store
    privileged:
        *(u64 *)(r10 - 56) = 0x80               // SI_KERNEL
        *(u64 *)(r10 - 48) = 0
        *(u64 *)(r10 - 40) = 0
        goto store
    real_info:
    };
    for (i, (path, size)) in SIGINFO_FIELDS.iter().enumerate() {
        p.extend(core_read(Reg::R7, Reg::R8, &[Hop::new("kernel_siginfo", path)], *size, -72, Reg::R9)?);
        p.extend(bpf_asm! { *(u64 *)(r10 + {-56 + 8 * i as i16}) = r7 });
    }
    p.extend(bpf_asm! {
    store:
        r1 = map[sigsent] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -64
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// signal_deliver (as tp_btf: its `struct kernel_siginfo *` argument): a signal delivered to a
/// traced task, with the siginfo fields strace prints (`--- SIGCHLD {si_signo=SIGCHLD, …} ---`).
/// A SIGKILL without siginfo is a process being ended by a fatal signal: shown as the signal
/// that was sent (`sigsent`), or not at all when that was SIGKILL itself (as strace, which never
/// sees SIGKILL).
fn signal_program(cfg: &Config) -> Result<Insns, Error> {
    let mut p = bpf_asm! {
        r6 = r1                                 // u64 args[]: sig, info, ka
    };
    p.extend(current_if_traced("out"));
    p.extend(bpf_asm! {
        r1 = r7
        r1 >>= 32
        *(u32 *)(r10 - 8) = w1                  // sigsent's key: the process
        r1 = *(u64 *)(r6 + 0)
        if r1 != {SIGKILL} goto delivered
        r1 = *(u64 *)(r6 + 8)
        if r1 != 0 goto delivered
        r1 = map[sigsent] ll                    // the group's end: which signal caused it?
        r2 = r10
        r2 += -8
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r8 = r0
        r1 = *(u64 *)(r8 + 0)
        if r1 == {SIGKILL} goto forget
    });
    p.extend(reserve_record(cfg, KIND_SIGNAL, "forget"));
    p.extend(bpf_asm! {
        r1 = *(u64 *)(r8 + 0)
        *(u32 *)(r9 + {NR}) = w1
    });
    for i in 0..SIGINFO_FIELDS.len() as i16 {
        p.extend(bpf_asm! {
            r1 = *(u64 *)(r8 + {8 + 8 * i})
            *(u64 *)(r9 + {ARGS + 8 * i}) = r1
        });
    }
    p.extend(bpf_asm! {
        r1 = r9
        r2 = 0
        call bpf_ringbuf_submit
        goto forget                             // once per process, not once per thread
    });
    p.label("delivered");
    p.extend(reserve_record(cfg, KIND_SIGNAL, "forget"));
    p.extend(bpf_asm! {
        r1 = *(u64 *)(r6 + 0)
        *(u32 *)(r9 + {NR}) = w1
        r6 = *(u64 *)(r6 + 8)                   // struct kernel_siginfo *
    });
    for (i, (path, size)) in SIGINFO_FIELDS.iter().enumerate() {
        p.extend(core_read(Reg::R7, Reg::R6, &[Hop::new("kernel_siginfo", path)], *size, -16, Reg::R8)?);
        p.extend(bpf_asm! { *(u64 *)(r9 + {ARGS + 8 * i as i16}) = r7 });
    }
    p.extend(bpf_asm! {
        r1 = r9
        r2 = 0
        call bpf_ringbuf_submit
    forget:
        r1 = map[sigsent] ll                    // this signal has its line
        r2 = r10
        r2 += -8
        call bpf_map_delete_elem
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// sched_process_exec: the path execve ran (`bprm->filename`), for a traced execve whose
/// entry could not read it (its page was not resident then, and after the exec it is gone).
fn exec_program() -> Result<Insns, Error> {
    let filename = member_offset("linux_binprm", "filename")?;
    Ok(bpf_asm! {
        r6 = r1                                 // u64 ctx[]: task, old_pid, struct linux_binprm *bprm
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 4) = w0
        r1 = map[pending] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r7 = r0
        r1 = *(u32 *)(r7 + {STR_LEN})
        if r1 != 0 goto out                     // read at entry
        r3 = *(u64 *)(r6 + 16)
        r3 = *(u64 *)(r3 + {filename})          // bprm->filename
        r1 = r7
        r1 += {STRS as i32}
        r2 = {STR_MAX as i32}
        call bpf_probe_read_kernel_str
        if r0 s<= 0 goto out
        *(u32 *)(r7 + {STR_LEN}) = w0
    out:
        r0 = 0
        exit
    })
}

/// The byte offset of `path` in struct `name`, from the running kernel's BTF (these programs
/// are built where they run, so its own layout is the one to use).
fn member_offset(name: &str, path: &str) -> Result<i16, Error> {
    let btf = bpfkit::core_btf::Btf::vmlinux_shared()?;
    let id = btf.find_by_name_kind(name, bpfkit::core_btf::Kind::Struct).ok_or_else(|| format!("no struct {name} in the kernel's BTF"))?;
    Ok(i16::try_from(btf.member_offset(id, path)? / 8).map_err(|_| format!("{name}.{path}: offset beyond a load's reach"))?)
}

/// Where `struct pt_regs` keeps a system call's six arguments on x86-64.
fn syscall_arg_offsets() -> Result<[i16; 6], Error> {
    let mut offs = [0i16; 6];
    for (o, reg) in offs.iter_mut().zip(["di", "si", "dx", "r10", "r8", "r9"]) {
        *o = member_offset("pt_regs", reg)?;
    }
    Ok(offs)
}

/// The programs, loaded and attached (the links detach on drop). Every program is a `tp_btf`
/// program on a raw tracepoint: their links detach at once, where a perf-event tracepoint's
/// detach waits for RCU grace periods (~50 ms each here) — most of a short run's time.
pub struct Tracer {
    pub maps: Maps,
    links: Vec<Link>,
    programs: Vec<Program>,
}

impl Tracer {
    /// Load every program; attach nothing yet.
    pub fn load(cfg: &Config) -> Result<Tracer, Error> {
        let maps = Maps::new(cfg)?;
        let all = maps.all();
        let load = |name: &str, event: &str, p: Insns| -> Result<Program, Error> {
            Ok(Program::load(&p.assemble()?, &all, &bpfkit::attach::tp_btf_options(name, event)?)?)
        };
        // Attached in this order: exit before entry, so no call is seen half.
        let mut programs = vec![
            load("strace_exit", "sys_exit", exit_program(cfg)?)?,
            load("strace_enter", "sys_enter", enter_program(cfg)?)?,
            load("strace_texit", "sched_process_exit", task_exit_program(cfg)?)?,
            load("strace_exec", "sched_process_exec", exec_program()?)?,
        ];
        if cfg.follow {
            programs.push(load("strace_fork", "sched_process_fork", fork_program()?)?);
        }
        if !cfg.summary {
            programs.push(load("strace_sigsent", "signal_generate", signal_sent_program()?)?);
            programs.push(load("strace_signal", "signal_deliver", signal_program(cfg)?)?);
        }
        Ok(Tracer { maps, links: Vec::new(), programs })
    }

    /// Attach the programs `load` made.
    pub fn attach(&mut self) -> Result<(), Error> {
        for prog in &self.programs {
            self.links.push(prog.attach_btf()?);
        }
        Ok(())
    }

    /// Detach everything (what dropping does, earlier).
    pub fn detach(&mut self) {
        self.links.clear();
    }

    /// Records lost because the ring buffer was full.
    pub fn lost(&self) -> Result<u64, Error> {
        let per_cpu = self.maps.lost.lookup_percpu(&0u32.to_ne_bytes())?.unwrap_or_default();
        Ok(per_cpu.iter().map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or_default())).sum())
    }
}
