//! The ring buffer consumer (`BPF_MAP_TYPE_RINGBUF`, kernel → user).
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 holds `consumer_pos` (ours to write), page 1
//! `producer_pos`, then the data area of `max_entries` bytes, mapped twice in a row so a record
//! that wraps is still contiguous in memory. Each record has an 8-byte header
//! `{ u32 len | BUSY << 31 | DISCARD << 30, u32 pg_off }` and is padded to 8 bytes. Positions
//! and headers are read with acquire loads and the consumer position published with a release
//! store, matching the kernel's `smp_store_release`/`smp_load_acquire`.
//!
//! [`RingBuf::drain`] reads runs of same-length records as one slice (see
//! `RingBuf::same_size_run`), calls the caller's closure inline (no call through a pointer),
//! and publishes the consumer position once per run. This is what makes it faster than
//! libbpf's `ring_buffer__consume`, which follows the headers one by one, calls a function
//! pointer and stores the position for every record (docs/PERFORMANCE.md).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use super::EventError;
use crate::maps::{Map, MapType};
use crate::sys::{self, shared_mem, Epoll, SysError};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
pub(crate) const HDR: usize = 8;
/// Records [`RingBuf::drain`] hands out between two publications of the consumer position, at
/// most.
const RUN: usize = 256;

pub(crate) fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

pub(crate) fn mmap_err(map: &Map, what: &str, e: std::io::Error) -> EventError {
    EventError::Sys(SysError::new(format!("mmap({}, {what})", map.describe()), e))
}

/// Reads the records BPF programs submit to a ring buffer map.
pub struct RingBuf {
    fd: OwnedFd,
    consumer: memmap2::MmapMut,
    producer: memmap2::Mmap,
    page: usize,
    mask: usize,
    name: String,
    /// The epoll instance `poll` waits in, made on its first wait and kept (one per ring, not
    /// one per call).
    epoll: Option<Epoll>,
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

/// What lies at a consumer position.
enum Slot {
    /// A committed record at `start..end` of the producer mapping; the next one is at `next_pos`.
    Record { start: usize, end: usize, next_pos: u64 },
    /// A discarded (or malformed) record to step over.
    Skip { next_pos: u64 },
    /// Nothing to read: the producer position, or a record still being written (records are
    /// consumed in order).
    End,
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
        let fd = crate::sys::dup(map.as_fd(), &map.describe()).map_err(EventError::Sys)?;
        Ok(RingBuf { fd, consumer, producer, page, mask: size - 1, name: map.name().to_string(), epoll: None })
    }

    /// The ring buffer map's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What lies at consumer position `pos`, given producer position `prod`.
    #[inline]
    fn slot(&self, pos: u64, prod: u64) -> Slot {
        if pos >= prod {
            return Slot::End;
        }
        let off = self.page + (pos as usize & self.mask);
        let Some(hdr) = shared_mem::load_acquire_u32(&self.producer, off) else { return Slot::End };
        if hdr & BUSY != 0 {
            return Slot::End;
        }
        let len = (hdr & !(BUSY | DISCARD)) as usize;
        let next_pos = pos + round8(len + HDR) as u64;
        let (start, end) = (off + HDR, off + HDR + len);
        if hdr & DISCARD == 0 && end <= self.producer.len() {
            Slot::Record { start, end, next_pos }
        } else {
            Slot::Skip { next_pos }
        }
    }

    /// Find the next committed record, skipping (and consuming) discarded ones.
    fn advance(&mut self) -> Next {
        let Some(mut cons) = shared_mem::load_acquire_u64(&self.consumer, 0) else { return Next::Empty };
        loop {
            let Some(prod) = shared_mem::load_acquire_u64(&self.producer, 0) else { return Next::Empty };
            match self.slot(cons, prod) {
                Slot::Record { start, end, next_pos } => return Next::Record { start, len: end - start, next_pos },
                Slot::Skip { next_pos } => {
                    cons = next_pos;
                    shared_mem::store_release_u64(&mut self.consumer, 0, cons);
                }
                Slot::End => return Next::Empty,
            }
        }
    }

    /// Hand `f` the records at `pos..limit` that have the length of the record just before
    /// `pos` (`len` bytes, so each `stride` bytes after the last), stopping at the first that
    /// does not (or at [`RUN`] records); returns how many it delivered.
    ///
    /// Producers mostly send one record type per ring, so most records are in such a run, and a
    /// run needs no bookkeeping per record: the double mapping makes the run one contiguous
    /// slice, walked in `stride`-sized chunks whose header word is compared (acquire) with the
    /// one expected. A header that differs (busy, discarded, another length) ends the run, and
    /// the general path in [`RingBuf::drain`] reads it. The per-record cost is a load, a compare
    /// and `f`, where a general step (libbpf's loop too) waits for each header to know where the
    /// next one is.
    fn same_size_run(&self, pos: u64, limit: u64, stride: usize, len: usize, f: &mut impl FnMut(&[u8])) -> usize {
        // `slot` makes `stride` the record's padded size, so these hold; checked once per run,
        // they keep the two chunk walks in step and let the per-record slicing go unchecked. A
        // bogus header can put `pos` past `limit`.
        if stride == 0 || stride % 8 != 0 || HDR + len > stride || pos >= limit {
            return 0;
        }
        // At most the ring's size lies between the consumer and producer positions, and a run
        // starts in the first mapping of the data, so it ends inside the second.
        let count = (((limit - pos) / stride as u64) as usize).min(RUN);
        let start = self.page + (pos as usize & self.mask);
        let Some(bytes) = self.producer.get(start..start + count * stride) else { return 0 };
        let Some(words) = shared_mem::atomic_u32_words(bytes) else { return 0 };
        let header = len as u32; // committed: neither BUSY nor DISCARD
        let mut delivered = 0;
        for (hdr, record) in words.chunks_exact(stride / 4).zip(bytes.chunks_exact(stride)) {
            if hdr[0].load(Ordering::Acquire) != header {
                break;
            }
            f(&record[HDR..HDR + len]);
            delivered += 1;
        }
        delivered
    }

    /// Publish consumer position `pos` (release) and, with `fence`, order that store before the
    /// loads that follow (see [`RingBuf::drain`]).
    fn publish(&mut self, pos: u64, full_fence: bool) {
        shared_mem::store_release_u64(&mut self.consumer, 0, pos);
        if full_fence {
            fence(Ordering::SeqCst);
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
    ///
    /// The consumer position is published after each run of same-length records (at most
    /// 256): if `f` panics, the records of its run stay in the ring and the next read
    /// delivers them again.
    ///
    /// When it returns, the ring has no readable record, and the consumer position it published
    /// is ordered (a full fence) before its last look at the ring. So the next record's commit
    /// sees that the consumer has caught up and wakes the map fd (unless the program passed
    /// `BPF_RB_NO_WAKEUP`): an edge-triggered waiter (tokio) can wait after a drain without
    /// missing a record committed during it.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let Some(mut cons) = shared_mem::load_acquire_u64(&self.consumer, 0) else { return 0 };
        let (mut n, mut fenced) = (0, false);
        loop {
            let before = cons;
            let Some(prod) = shared_mem::load_acquire_u64(&self.producer, 0) else { return n };
            while cons < prod {
                match self.slot(cons, prod) {
                    Slot::Record { start, end, next_pos } => {
                        f(&self.producer[start..end]);
                        let stride = (next_pos - cons) as usize;
                        let run = self.same_size_run(next_pos, prod, stride, end - start, &mut f);
                        n += 1 + run;
                        cons = next_pos + (run * stride) as u64;
                    }
                    Slot::Skip { next_pos } => cons = next_pos,
                    Slot::End => break,
                }
                self.publish(cons, false);
            }
            if cons == before {
                if fenced {
                    return n;
                }
                // Look once more after a full fence: a record committed while the consumer
                // position was not yet visible to the kernel did not wake anyone.
                self.publish(cons, true);
                fenced = true;
            } else {
                fenced = false;
            }
        }
    }

    /// The available records as a standard [`Iterator`], each copied out of the ring (its
    /// space is released as it is yielded). Ends when the ring has no readable record; call again
    /// later for more. For zero-copy access use [`RingBuf::next`] or [`RingBuf::drain`].
    pub fn iter(&mut self) -> Records<'_> {
        Records { ring: self }
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
            if self.epoll.is_none() {
                let epoll = Epoll::new().map_err(|e| EventError::Sys(SysError::new("epoll_create1".into(), e)))?;
                epoll.add(self.fd.as_fd(), 0).map_err(|e| EventError::Sys(SysError::new(format!("epoll_ctl(ringbuf \"{}\")", self.name), e)))?;
                self.epoll = Some(epoll);
            }
            if let Some(epoll) = &self.epoll {
                epoll.wait(timeout, 1).map_err(|e| EventError::Sys(SysError::new("epoll_wait".into(), e)))?;
            }
        }
        Ok(self.drain(f))
    }
}

/// The available records of a [`RingBuf`], copied ([`RingBuf::iter`]).
pub struct Records<'r> {
    ring: &'r mut RingBuf,
}

impl Iterator for Records<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        self.ring.next().map(|record| record.to_vec())
    }
}

impl AsFd for RingBuf {
    /// The map fd: readable (for epoll) when records are available.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
