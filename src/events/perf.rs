//! The perf buffer consumer: one `PERF_COUNT_SW_BPF_OUTPUT` event per online CPU, each with its
//! own mmapped ring, stored in a `BPF_MAP_TYPE_PERF_EVENT_ARRAY` at its CPU's index so programs
//! can `bpf_perf_event_output(ctx, map, BPF_F_CURRENT_CPU, data, size)`.
//!
//! Ring layout (`struct perf_event_mmap_page`): `data_head` at byte 1024 (kernel writes),
//! `data_tail` at 1032 (ours), `data_offset`/`data_size` at 1040/1048; records
//! `{ u32 type, u16 misc, u16 size }` — `PERF_RECORD_SAMPLE` (9) carries `u32 raw_size` and the
//! raw bytes (padded so the record stays 8-byte aligned), `PERF_RECORD_LOST` (2) `u64 id, u64 lost`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::EventError;
use crate::maps::{Map, MapType, UpdateFlags};
use crate::sys::{self, shared_mem, Epoll, PerfEventAttr, SysError};

const RECORD_SAMPLE: u32 = 9;
const RECORD_LOST: u32 = 2;

struct CpuRing {
    cpu: u32,
    _event: OwnedFd,
    mem: memmap2::MmapMut,
    data_off: usize,
    data_size: usize,
}

/// Reads `bpf_perf_event_output` records from every CPU.
pub struct PerfBuffer {
    rings: Vec<CpuRing>,
    epoll: Epoll,
    lost: u64,
    scratch: Vec<u8>,
}

/// How a [`PerfBuffer`] is opened: the data pages of each CPU's ring, and after how many
/// samples on one CPU the kernel wakes a reader waiting in [`PerfBuffer::poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PerfBufferOptions {
    pages: usize,
    wakeup_events: u32,
}

impl Default for PerfBufferOptions {
    fn default() -> PerfBufferOptions {
        PerfBufferOptions { pages: 8, wakeup_events: 1 }
    }
}

impl PerfBufferOptions {
    /// 8 data pages per CPU, a wake-up for every sample.
    pub fn new() -> PerfBufferOptions {
        PerfBufferOptions::default()
    }
    /// Data pages per CPU ring (a power of two).
    pub fn pages(mut self, pages: usize) -> PerfBufferOptions {
        self.pages = pages;
        self
    }
    /// Wake a waiting reader only after every `n` samples on a CPU (`perf_event_attr.
    /// wakeup_events`; 0 counts as 1). Fewer wake-ups cost the producer less at high rates, as
    /// the ring buffer's `BPF_RB_NO_WAKEUP` does; samples below the threshold wait in the ring
    /// until the next wake-up or until the reader drains on its own (poll with a timeout).
    pub fn wakeup_events(mut self, n: u32) -> PerfBufferOptions {
        self.wakeup_events = n.max(1);
        self
    }
}

fn sys_err(op: String) -> impl FnOnce(std::io::Error) -> EventError {
    move |source| EventError::Sys(SysError::new(op, source))
}

impl PerfBuffer {
    /// Open one event and ring of `pages` data pages (a power of two) per online CPU, and store
    /// the events in `map` (a perf event array); every sample wakes a waiting reader.
    pub fn new(map: &Map, pages: usize) -> Result<PerfBuffer, EventError> {
        PerfBuffer::with_options(map, &PerfBufferOptions::new().pages(pages))
    }

    /// [`PerfBuffer::new`] with [`PerfBufferOptions`].
    pub fn with_options(map: &Map, opts: &PerfBufferOptions) -> Result<PerfBuffer, EventError> {
        let pages = opts.pages;
        if map.map_type() != MapType::PerfEventArray {
            return Err(EventError::WrongMap { map: map.describe(), want: "perf_event_array" });
        }
        if !pages.is_power_of_two() {
            return Err(EventError::BadSize { what: "perf buffer pages per CPU (a power of two)", got: pages });
        }
        let page = sys::page_size();
        let epoll = Epoll::new().map_err(sys_err("epoll_create1".into()))?;
        let attr = PerfEventAttr {
            type_: sys::PERF_TYPE_SOFTWARE,
            config: sys::PERF_COUNT_SW_BPF_OUTPUT,
            sample_type: sys::PERF_SAMPLE_RAW,
            sample_period: 1,
            wakeup_events: opts.wakeup_events,
            ..Default::default()
        };
        let mut rings = Vec::new();
        for cpu in sys::online_cpus().map_err(sys_err("read /sys/devices/system/cpu/online".into()))? {
            if cpu >= map.max_entries() {
                continue;
            }
            let event = sys::perf_event_open(&attr, -1, cpu as i32, -1, 0).map_err(sys_err(format!("perf_event_open(bpf_output, cpu {cpu})")))?;
            let mut mem = sys::mmap_shared(event.as_fd(), 0, (1 + pages) * page).map_err(sys_err(format!("mmap(perf ring, cpu {cpu})")))?;
            // Older kernels leave data_offset/data_size 0: the data starts at the second page.
            let data_off = shared_mem::load_acquire_u64(&mem, 1040).filter(|v| *v != 0).unwrap_or(page as u64) as usize;
            let data_size = shared_mem::load_acquire_u64(&mem, 1048).filter(|v| *v != 0).unwrap_or((pages * page) as u64) as usize;
            shared_mem::store_release_u64(&mut mem, 1032, 0);
            map.update_fd(&cpu.to_ne_bytes(), &event, UpdateFlags::Any)?;
            epoll.add(event.as_fd(), rings.len() as u64).map_err(sys_err(format!("epoll_ctl(perf event cpu {cpu})")))?;
            rings.push(CpuRing { cpu, _event: event, mem, data_off, data_size });
        }
        Ok(PerfBuffer { rings, epoll, lost: 0, scratch: Vec::new() })
    }

    /// Records the kernel could not write because a ring was full (from `PERF_RECORD_LOST`).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Call `f(cpu, raw)` for every available sample on every CPU; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(u32, &[u8])) -> usize {
        let mut n = 0;
        for i in 0..self.rings.len() {
            n += self.drain_ring(i, &mut f);
        }
        n
    }

    fn drain_ring(&mut self, i: usize, f: &mut impl FnMut(u32, &[u8])) -> usize {
        let ring = &mut self.rings[i];
        let mut n = 0;
        let (Some(head), Some(mut tail)) = (shared_mem::load_acquire_u64(&ring.mem, 1024), shared_mem::load_acquire_u64(&ring.mem, 1032)) else {
            return 0;
        };
        while tail < head {
            let size = ring.data_size;
            let at = |pos: u64| ring.data_off + (pos as usize % size);
            // Headers never wrap: records are 8-byte aligned and the ring a multiple of 8.
            let h = at(tail);
            let kind = u32::from_ne_bytes([ring.mem[h], ring.mem[h + 1], ring.mem[h + 2], ring.mem[h + 3]]);
            let len = u16::from_ne_bytes([ring.mem[h + 6], ring.mem[h + 7]]) as usize;
            if len < 8 {
                break; // malformed: stop rather than spin
            }
            // Copy the record out (it may wrap around the end of the ring).
            self.scratch.clear();
            let first = len.min(size - (tail as usize % size));
            self.scratch.extend_from_slice(&ring.mem[h..h + first]);
            self.scratch.extend_from_slice(&ring.mem[ring.data_off..ring.data_off + (len - first)]);
            match kind {
                RECORD_SAMPLE if len >= 12 => {
                    let raw = u32::from_ne_bytes([self.scratch[8], self.scratch[9], self.scratch[10], self.scratch[11]]) as usize;
                    let end = (12 + raw).min(len);
                    f(ring.cpu, &self.scratch[12..end]);
                    n += 1;
                }
                RECORD_LOST if len >= 24 => {
                    self.lost += u64::from_ne_bytes(self.scratch[16..24].try_into().unwrap_or([0; 8]));
                }
                _ => {}
            }
            tail += len as u64;
        }
        shared_mem::store_release_u64(&mut ring.mem, 1032, tail);
        n
    }

    /// Wait until some CPU has data or `timeout` passes, then drain.
    pub fn poll(&mut self, timeout: Option<Duration>, f: impl FnMut(u32, &[u8])) -> Result<usize, EventError> {
        self.epoll.wait(timeout, self.rings.len()).map_err(sys_err("epoll_wait(perf buffer)".into()))?;
        Ok(self.drain(f))
    }
}
