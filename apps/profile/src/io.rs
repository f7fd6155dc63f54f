//! `io` mode: block I/O latency, per device as a log2 histogram and per issuing stack. Two
//! tp_btf programs keyed by the request (`struct request *`):
//!
//! ```text
//!  block_io_start(rq)   (in the task that submitted it)
//!      inflight[rq] = {now, key: tgid, stacks, extra = the disk's dev_t}
//!  block_io_done(rq)
//!      d = now − inflight[rq].ts;  delete inflight[rq]
//!      hist[{dev, log2(d in µs)}] += 1;  counts[key] += 1;  latency[key] += d
//! ```
//!
//! `block_io_start`/`block_io_done` (Linux 6.5) fire where the I/O is accounted: the start in
//! the submitter's context, so its stacks are the issuing stacks. Where the kernel lacks them
//! (decided by looking them up in its BTF) `block_rq_issue`/`block_rq_complete` are used: the
//! same latency, but the issue may run in a kworker flushing a plug, whose stack is then the one
//! counted.

use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{jmp_if, JmpCond, Program as Insns, Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::Program;

use crate::kernel::{
    remember_start, add_to, build_key, filter_target, stat_inc, Error, StackMaps, KEY_SIZE, STAT_EVENTS, STAT_MODE,
};
use crate::profile::{count_and_amount, Entries};

/// `stats` slot: a request not timed because `inflight` was full.
pub const STAT_INFLIGHT_FULL: u32 = STAT_MODE;
/// Histogram slots: log2 of microseconds, 0..=31.
pub const SLOTS: u32 = 32;

const VALUE_AT: i16 = -96; // {ts, key}: 40 bytes
const RQ_AT: i16 = -104;
const HIST_KEY_AT: i16 = -112; // {dev, slot}

/// The mode's own maps.
pub struct IoMaps {
    /// request → {start ns, key}.
    pub inflight: Map,
    /// {dev, slot} → requests.
    pub hist: Map,
    /// key → total nanoseconds (the count of requests is in the shared `counts`).
    pub latency: Map,
}

impl IoMaps {
    pub fn new(keys: u32) -> Result<IoMaps, Error> {
        Ok(IoMaps {
            inflight: Map::create(&MapSpec::new(
                "inflight",
                MapType::Hash,
                8,
                8 + KEY_SIZE,
                65536,
            ))?,
            hist: Map::create(&MapSpec::new("hist", MapType::Hash, 8, 8, 4096))?,
            latency: Map::create(&MapSpec::new("latency", MapType::Hash, KEY_SIZE, 8, keys))?,
        })
    }

    /// Per device (dev_t as MKDEV: major << 20 | minor): the count in each log2-µs slot.
    pub fn histograms(
        &self,
    ) -> Result<std::collections::BTreeMap<u32, [u64; SLOTS as usize]>, Error> {
        let mut out = std::collections::BTreeMap::new();
        for e in self.hist.iter() {
            let (k, v) = e?;
            let dev = u32::from_ne_bytes(k[0..4].try_into().unwrap_or_default());
            let slot = u32::from_ne_bytes(k[4..8].try_into().unwrap_or_default()).min(SLOTS - 1);
            let n = u64::from_ne_bytes(v[0..8].try_into().unwrap_or_default());
            out.entry(dev).or_insert([0u64; SLOTS as usize])[slot as usize] += n;
        }
        Ok(out)
    }
}

/// The start program: the request, its disk and the submitter's stacks.
pub fn start_program(filtered: bool) -> Result<Insns, Error> {
    let mut p = bpf_asm! {
        r6 = r1                                 // u64 args[]: rq
        r9 = *(u64 *)(r6 + 0)
        call bpf_get_current_pid_tgid
        r7 = r0
        r7 >>= 32
    };
    if filtered {
        p.extend(filter_target("out"));
    }
    // The disk: rq->q->disk->{major, first_minor}, before the key (core_read's scratch is -8).
    p.extend(core_read(
        Reg::R8,
        Reg::R9,
        &[
            Hop::new("request", "q"),
            Hop::new("request_queue", "disk"),
            Hop::new("gendisk", "major"),
        ],
        Size::W,
        -8,
        Reg::R0,
    )?);
    p.extend(bpf_asm! { r8 <<= 20 });
    p.extend(core_read(
        Reg::R1,
        Reg::R9,
        &[
            Hop::new("request", "q"),
            Hop::new("request_queue", "disk"),
            Hop::new("gendisk", "first_minor"),
        ],
        Size::W,
        -8,
        Reg::R0,
    )?);
    p.extend(bpf_asm! {
        r8 |= r1
        *(u64 *)(r10 + {RQ_AT}) = r9
    });
    p.extend(build_key());
    p.extend(bpf_asm! {
        *(u32 *)(r10 - 20) = w8                 // the key's extra field: the device
    });
    p.extend(remember_start("inflight", RQ_AT, VALUE_AT, STAT_INFLIGHT_FULL, "inflight_full", "out"));
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    Ok(p)
}

/// The completion program: the latency into the device's histogram and the stack's counters.
pub fn done_program() -> Insns {
    let mut p = bpf_asm! {
        r6 = r1
        r1 = *(u64 *)(r6 + 0)
        *(u64 *)(r10 + {RQ_AT}) = r1
        r1 = map[inflight] ll
        r2 = r10
        r2 += {RQ_AT as i32}
        call bpf_map_lookup_elem
        if r0 == 0 goto out                     // not timed (before the profile, or filtered)
        r9 = r0
    };
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
        r9 = r0                                 // nanoseconds in flight
        r1 = map[inflight] ll
        r2 = r10
        r2 += {RQ_AT as i32}
        call bpf_map_delete_elem
        // The slot: log2 of the microseconds (0 and 1 µs in slot 0).
        r1 = r9
        r1 /= 1000
        r5 = 0
    });
    for _ in 0..SLOTS - 1 {
        p.push(jmp_if(JmpCond::Lt, Reg::R1, 2, "slot_found"));
        p.extend(bpf_asm! {
            r1 >>= 1
            r5 += 1
        });
    }
    p.label("slot_found");
    p.extend(bpf_asm! {
        r1 = *(u32 *)(r10 - 20)                 // the device
        *(u32 *)(r10 + {HIST_KEY_AT}) = w1
        *(u32 *)(r10 + {HIST_KEY_AT + 4}) = w5
        r1 = map[hist] ll
        r2 = r10
        r2 += {HIST_KEY_AT as i32}
        call bpf_map_lookup_elem
        if r0 != 0 goto hist_add
        *(u64 *)(r10 - 48) = 1
        r1 = map[hist] ll
        r2 = r10
        r2 += {HIST_KEY_AT as i32}
        r3 = r10
        r3 += -48
        r4 = 1                                  // BPF_NOEXIST
        call bpf_map_update_elem
        if r0 == 0 goto hist_done
        r1 = map[hist] ll
        r2 = r10
        r2 += {HIST_KEY_AT as i32}
        call bpf_map_lookup_elem
        if r0 == 0 goto hist_done
    hist_add:
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    hist_done:
    });
    p.extend(stat_inc(STAT_EVENTS, "events"));
    p.extend(add_to("latency", "latency"));
    p.extend(bpf_asm! { r9 = 1 });
    p.extend(add_to("counts", "requests"));
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    p
}

/// Which tracepoints carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Points {
    /// block_io_start / block_io_done.
    IoStartDone,
    /// block_rq_issue / block_rq_complete.
    RqIssueComplete,
}

/// Both programs loaded and attached, to the tracepoints this kernel has (the older pair when
/// `force_rq`).
pub fn attach(
    maps: &StackMaps,
    own: &IoMaps,
    filtered: bool,
    force_rq: bool,
) -> Result<(Vec<Program>, Vec<Link>, Points), Error> {
    let btf = Btf::vmlinux_shared()?;
    let has = |name: &str| btf.find_by_name_kind(&format!("btf_trace_{name}"), Kind::Typedef).is_some();
    let (points, start_tp, done_tp) = match (has("block_io_start"), has("block_io_done")) {
        (true, true) if !force_rq => (Points::IoStartDone, "block_io_start", "block_io_done"),
        _ => {
            if !has("block_rq_issue") {
                return Err("the kernel's BTF has neither block_io_start nor block_rq_issue".into());
            }
            (Points::RqIssueComplete, "block_rq_issue", "block_rq_complete")
        }
    };
    let mut all = maps.all();
    all.extend([&own.inflight, &own.hist, &own.latency]);
    let load = |name: &str, p: Insns, event: &str| -> Result<Program, Error> {
        Ok(Program::load(&p.assemble()?, &all, &bpfkit::attach::tp_btf_options(name, event)?)?)
    };
    let start = load("io_start", start_program(filtered)?, start_tp)?;
    let done = load("io_done", done_program(), done_tp)?;
    // The completion first: a request timed by the start always finds its end attached.
    let links = vec![done.attach_btf()?, start.attach_btf()?];
    Ok((vec![start, done], links, points))
}

/// Per key: [requests, nanoseconds].
pub fn entries(maps: &StackMaps, own: &IoMaps) -> Result<Entries, Error> {
    count_and_amount(maps, &own.latency)
}

/// A device's name (`loop3`, `vda`) from sysfs, else `major:minor`.
pub fn device_name(dev: u32) -> String {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// The histograms as text, one per device, as bcc's biolatency draws them.
pub fn histogram_text(hists: &std::collections::BTreeMap<u32, [u64; SLOTS as usize]>) -> String {
    let mut t = String::new();
    for (&dev, slots) in hists {
        let total: u64 = slots.iter().sum();
        t.push_str(&format!(
            "device {} ({}:{}): {total} I/Os\n",
            device_name(dev),
            dev >> 20,
            dev & 0xfffff
        ));
        t.push_str(&format!("{:>24} : {:<8} distribution\n", "usecs", "count"));
        let last = slots.iter().rposition(|n| *n > 0).unwrap_or(0);
        let max = slots.iter().copied().max().unwrap_or(1).max(1);
        for (i, &n) in slots.iter().enumerate().take(last + 1) {
            let (lo, hi) = if i == 0 {
                (0u64, 1u64)
            } else {
                (1u64 << i, (1u64 << (i + 1)) - 1)
            };
            let bar = "*".repeat(((n * 40) / max) as usize);
            t.push_str(&format!("{lo:>10} -> {hi:<10} : {n:<8} |{bar:<40}|\n"));
        }
    }
    t
}
