//! The kernel's aggregation read back: each `counts` entry becomes a [`Sample`] — the process,
//! its thread's name, the user and kernel frames (named) and the amount — and the `stats`
//! counters become [`Losses`].

use std::collections::HashMap;

use bpfkit::events::stack_ips;
use bpfkit::maps::Map;

use crate::kernel::{
    Error, StackMaps, EEXIST, EFAULT, ENOMEM, KEY_COMM, KEY_EXTRA, KEY_KSTACK, KEY_SIZE, KEY_TGID,
    KEY_USTACK, STAT_COUNTS_FULL, STAT_EVENTS, STAT_KERNEL_STACK_LOST, STAT_USER_STACK_LOST,
};
use crate::symbols::{Resolver, SymbolStats};

/// One aggregated stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub tgid: u32,
    /// The thread's name (`comm`) when the amount was counted.
    pub comm: String,
    /// A mode's own key field (io: the device).
    pub extra: u32,
    /// User frames, outermost first (empty for a kernel thread).
    pub user: Vec<String>,
    /// Kernel frames, outermost first (empty for a sample taken in user mode).
    pub kernel: Vec<String>,
    /// Samples, nanoseconds or bytes: what folded stacks, the SVG and the top table show.
    pub value: u64,
    /// Every value the mode keeps for this stack, in its pprof sample types' order (alloc:
    /// outstanding allocations and bytes, allocations and bytes allocated); `[value]` otherwise.
    pub values: Vec<u64>,
}

impl Sample {
    /// All frames, outermost first, with bcc's `-` between user and kernel frames when there are
    /// both (`profile -d`).
    pub fn frames(&self, delimiter: bool) -> Vec<&str> {
        let mut f: Vec<&str> = self.user.iter().map(String::as_str).collect();
        if delimiter && !self.user.is_empty() && !self.kernel.is_empty() {
            f.push("-");
        }
        f.extend(self.kernel.iter().map(String::as_str));
        f
    }
}

/// What was not counted, or not counted whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// Events the programs counted (after the process filter).
    pub events: u64,
    /// User stacks lost to a stack-map hash collision or a full stack map.
    pub user_stacks_lost: u64,
    /// Kernel stacks lost the same way.
    pub kernel_stacks_lost: u64,
    /// Events not counted at all: the counts map was full.
    pub counts_full: u64,
    /// Symbolization.
    pub symbols: SymbolStats,
}

impl Losses {
    /// One line per kind of loss that happened (none: nothing was lost).
    pub fn report(&self, unit: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if self.counts_full > 0 {
            lines.push(format!(
                "{} {unit} not counted: the counts map was full (raise --keys)",
                self.counts_full
            ));
        }
        if self.user_stacks_lost > 0 || self.kernel_stacks_lost > 0 {
            lines.push(format!(
                "{} user and {} kernel stacks lost to stack-map collisions or a full stack map (raise --stacks); shown as [lost-stack]",
                self.user_stacks_lost, self.kernel_stacks_lost
            ));
        }
        let s = self.symbols;
        if s.no_symbol + s.no_mapping > 0 {
            lines.push(format!(
                "{} of {} frames without a symbol: {} in files without one there (stripped?), {} outside any mapping read (JIT code, or the process ended before its mappings were read)",
                s.no_symbol + s.no_mapping,
                s.frames,
                s.no_symbol,
                s.no_mapping
            ));
        }
        lines
    }
}

/// Everything a run collected.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    pub samples: Vec<Sample>,
    pub losses: Losses,
}

impl Profile {
    /// The sum of the samples' values.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(|s| s.value).sum()
    }
}

fn stack_frames(
    stacks: &Map,
    id: i32,
    user_of: Option<u32>,
    resolver: &mut Resolver,
) -> Vec<String> {
    match id {
        id if id >= 0 => match stack_ips(stacks, id as u32) {
            Ok(ips) => match user_of {
                Some(tgid) => resolver.user(tgid, &ips),
                None => resolver.kernel(&ips),
            },
            Err(_) => vec!["[lost-stack]".into()],
        },
        id if id == -EFAULT => Vec::new(),
        id if id == -EEXIST || id == -ENOMEM => vec!["[lost-stack]".into()],
        _ => vec!["[no-stack]".into()],
    }
}

fn u32_at(key: &[u8], off: i16) -> u32 {
    let o = off as usize;
    u32::from_ne_bytes(key[o..o + 4].try_into().unwrap_or_default())
}

/// The frames bpfkit-profile's own programs add to a kernel stack taken at a tracepoint.
pub fn is_tracing_machinery(frame: &str) -> bool {
    [
        "bpf_prog_",
        "bpf_trace_run",
        "__traceiter_",
        "__bpf_trace_",
        "bpf_trampoline_",
    ]
    .iter()
    .any(|p| frame.starts_with(p))
}

/// The tgids that have counts so far (to read their mappings while they run).
pub fn tgids_seen(maps: &StackMaps) -> Vec<u32> {
    let mut seen: Vec<u32> = maps
        .counts
        .keys()
        .filter_map(Result::ok)
        .map(|k| u32_at(&k, KEY_TGID))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// Per `counts` key: the stack's values, in a mode's pprof sample-type order.
pub type Entries = Vec<(Vec<u8>, Vec<u64>)>;

/// Per key: [counts[key], second[key]] — requests and latency (io), waits and nanoseconds
/// (lock): a count in the shared map and an amount in the mode's own.
pub fn count_and_amount(maps: &StackMaps, second: &Map) -> Result<Entries, Error> {
    Ok(sum_by_key(&[(0, &maps.counts), (1, second)], 2)?
        .into_iter()
        .collect())
}

/// Maps of key → u64 summed into `width` slots per key, each map into its slot.
pub fn sum_by_key(
    maps: &[(usize, &Map)],
    width: usize,
) -> Result<HashMap<Vec<u8>, Vec<u64>>, Error> {
    let mut by_key: HashMap<Vec<u8>, Vec<u64>> = HashMap::new();
    for (slot, map) in maps {
        for e in map.iter() {
            let (k, v) = e?;
            by_key.entry(k).or_insert_with(|| vec![0; width])[*slot] += u64_of(&v);
        }
    }
    Ok(by_key)
}

fn u64_of(v: &[u8]) -> u64 {
    u64::from_ne_bytes(
        v.get(0..8)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_default(),
    )
}

/// The monotonic clock now, in ns: `bpf_ktime_get_ns`'s clock.
pub fn ktime_now() -> Result<u64, Error> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

/// Add what is still in flight in `in_flight` (values `{start ns, key}`: threads blocked or
/// waiting when the programs were detached) to `by_key`: the time from its start to `end_ns`
/// (the profile's end, by `ktime_now`; when at least `min_ns`) into slot `ns_slot`, and 1 into
/// `count_slot` if given.
pub fn add_in_flight(
    by_key: &mut HashMap<Vec<u8>, Vec<u64>>,
    in_flight: &Map,
    end_ns: u64,
    min_ns: u64,
    ns_slot: usize,
    count_slot: Option<usize>,
) -> Result<(), Error> {
    let width = ns_slot.max(count_slot.unwrap_or(0)) + 1;
    for e in in_flight.iter() {
        let (_, v) = e?;
        let waited = end_ns.saturating_sub(u64_of(&v));
        if waited < min_ns || v.len() < 8 + KEY_SIZE as usize {
            continue;
        }
        let slot = by_key
            .entry(v[8..8 + KEY_SIZE as usize].to_vec())
            .or_insert_with(|| vec![0; width]);
        slot[ns_slot] += waited;
        if let Some(c) = count_slot {
            slot[c] += 1;
        }
    }
    Ok(())
}

/// Read the maps (after the programs are detached) into a profile.
pub fn collect(maps: &StackMaps, resolver: &mut Resolver) -> Result<Profile, Error> {
    let mut entries = Vec::new();
    for entry in maps.counts.iter() {
        let (key, value) = entry?;
        entries.push((
            key,
            vec![u64::from_ne_bytes(
                value[..8].try_into().unwrap_or_default(),
            )],
        ));
    }
    collect_entries(maps, resolver, entries, 0)
}

/// A profile of `entries` (a `counts` key, and that stack's values): each key's stacks named,
/// `values[primary]` the value shown.
pub fn collect_entries(
    maps: &StackMaps,
    resolver: &mut Resolver,
    entries: Vec<(Vec<u8>, Vec<u64>)>,
    primary: usize,
) -> Result<Profile, Error> {
    let mut samples = Vec::new();
    for (key, values) in entries {
        let tgid = u32_at(&key, KEY_TGID);
        let comm_bytes = &key[KEY_COMM as usize..KEY_COMM as usize + 16];
        let comm = String::from_utf8_lossy(
            &comm_bytes[..comm_bytes.iter().position(|b| *b == 0).unwrap_or(16)],
        )
        .into_owned();
        let user = stack_frames(
            &maps.stacks,
            u32_at(&key, KEY_USTACK) as i32,
            Some(tgid),
            resolver,
        );
        let mut kernel = stack_frames(
            &maps.stacks,
            u32_at(&key, KEY_KSTACK) as i32,
            None,
            resolver,
        );
        // A stack taken inside a tracepoint program ends in the machinery that ran it: the
        // program itself and the tracepoint's trampolines. They are ours, not the task's.
        while kernel.last().is_some_and(|f| is_tracing_machinery(f)) {
            kernel.pop();
        }
        let value = values.get(primary).copied().unwrap_or(0);
        samples.push(Sample {
            tgid,
            comm,
            extra: u32_at(&key, KEY_EXTRA),
            user,
            kernel,
            value,
            values,
        });
    }
    // Largest first: what a reader looks at first, and a stable order for the outputs.
    samples.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then_with(|| a.frames(false).cmp(&b.frames(false)))
    });
    let losses = Losses {
        events: maps.stat(STAT_EVENTS)?,
        user_stacks_lost: maps.stat(STAT_USER_STACK_LOST)?,
        kernel_stacks_lost: maps.stat(STAT_KERNEL_STACK_LOST)?,
        counts_full: maps.stat(STAT_COUNTS_FULL)?,
        symbols: resolver.stats,
    };
    Ok(Profile { samples, losses })
}
