//! The ring buffer consumer (`BPF_MAP_TYPE_RINGBUF`, kernel → user).
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 holds `consumer_pos` (ours to write), page 1
//! `producer_pos`, then the data area of `max_entries` bytes, mapped twice in a row so a record
//! that wraps is still contiguous in memory. Each record has an 8-byte header
//! `{ u32 len | BUSY << 31 | DISCARD << 30, u32 pg_off }` and is padded to 8 bytes. Positions
//! and headers are read with acquire loads and the consumer position published with a release
//! store, matching the kernel's `smp_store_release`/`smp_load_acquire`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use super::EventError;
use crate::maps::{Map, MapType};
use crate::sys::{self, shared_mem, Epoll, SysError};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
pub(crate) const HDR: usize = 8;

pub(crate) fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

pub(crate) fn mmap_err(map: &Map, what: &str, e: std::io::Error) -> EventError {
    EventError::Sys(SysError { op: format!("mmap({}, {what})", map.describe()), source: e })
}

/// Reads the records BPF programs submit to a ring buffer map.
pub struct RingBuf {
    fd: OwnedFd,
    consumer: memmap2::MmapMut,
    producer: memmap2::Mmap,
    page: usize,
    mask: usize,
    name: String,
}

/// One record, borrowed from the ring's memory (no copy). The consumer position moves past it
/// when it is dropped, which lets the producer reuse the space.
pub struct Record<'r> {
    ring: &'r mut RingBuf,
    start: usize,
    len: usize,
    next_pos: u64,
}

impl std::ops::Deref for Record<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.ring.producer[self.start..self.start + self.len]
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        shared_mem::store_release_u64(&mut self.ring.consumer, 0, self.next_pos);
    }
}

enum Next {
    Record { start: usize, len: usize, next_pos: u64 },
    Empty,
}

impl RingBuf {
    /// Map `map` (a ring buffer) for reading.
    pub fn new(map: &Map) -> Result<RingBuf, EventError> {
        if map.map_type() != MapType::RingBuf {
            return Err(EventError::WrongMap { map: map.describe(), want: "ringbuf" });
        }
        let page = sys::page_size();
        let size = map.max_entries() as usize;
        let consumer = sys::mmap_shared(map.as_fd(), 0, page).map_err(|e| mmap_err(map, "consumer page", e))?;
        let producer = sys::mmap_shared_ro(map.as_fd(), page as u64, page + 2 * size).map_err(|e| mmap_err(map, "producer pages", e))?;
        let fd = map.as_fd().try_clone_to_owned().map_err(|e| EventError::Sys(SysError { op: format!("dup({})", map.describe()), source: e }))?;
        Ok(RingBuf { fd, consumer, producer, page, mask: size - 1, name: map.name().to_string() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Find the next committed record, skipping (and consuming) discarded ones.
    fn advance(&mut self) -> Next {
        let Some(mut cons) = shared_mem::load_acquire_u64(&self.consumer, 0) else { return Next::Empty };
        loop {
            let Some(prod) = shared_mem::load_acquire_u64(&self.producer, 0) else { return Next::Empty };
            if cons >= prod {
                return Next::Empty;
            }
            let off = self.page + (cons as usize & self.mask);
            let Some(hdr) = shared_mem::load_acquire_u32(&self.producer, off) else { return Next::Empty };
            if hdr & BUSY != 0 {
                return Next::Empty; // still being written: records are consumed in order
            }
            let len = (hdr & !(BUSY | DISCARD)) as usize;
            let next_pos = cons + round8(len + HDR) as u64;
            if hdr & DISCARD == 0 && off + HDR + len <= self.producer.len() {
                return Next::Record { start: off + HDR, len, next_pos };
            }
            cons = next_pos;
            shared_mem::store_release_u64(&mut self.consumer, 0, cons);
        }
    }

    /// The next available record, borrowed; `None` when the ring is empty.
    #[allow(clippy::should_implement_trait)] // a lending iterator: each record borrows the ring
    pub fn next(&mut self) -> Option<Record<'_>> {
        match self.advance() {
            Next::Record { start, len, next_pos } => Some(Record { ring: self, start, len, next_pos }),
            Next::Empty => None,
        }
    }

    /// Call `f` on every available record in order; returns how many were read.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(rec) = self.next() {
            f(&rec);
            n += 1;
        }
        n
    }

    /// Every available record, copied.
    pub fn read_all(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.drain(|r| out.push(r.to_vec()));
        out
    }

    /// Bytes written but not yet consumed.
    pub fn pending_bytes(&self) -> u64 {
        let cons = shared_mem::load_acquire_u64(&self.consumer, 0).unwrap_or(0);
        let prod = shared_mem::load_acquire_u64(&self.producer, 0).unwrap_or(0);
        prod.saturating_sub(cons)
    }

    /// Wait until a record is available or `timeout` passes, then drain with `f`.
    pub fn poll(&mut self, timeout: Option<Duration>, f: impl FnMut(&[u8])) -> Result<usize, EventError> {
        if self.pending_bytes() == 0 {
            let epoll = Epoll::new().map_err(|e| EventError::Sys(SysError { op: "epoll_create1".into(), source: e }))?;
            epoll.add(self.fd.as_fd(), 0).map_err(|e| EventError::Sys(SysError { op: format!("epoll_ctl(ringbuf \"{}\")", self.name), source: e }))?;
            epoll.wait(timeout, 1).map_err(|e| EventError::Sys(SysError { op: "epoll_wait".into(), source: e }))?;
        }
        Ok(self.drain(f))
    }
}

impl AsFd for RingBuf {
    /// The map fd: readable (for epoll) when records are available.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
