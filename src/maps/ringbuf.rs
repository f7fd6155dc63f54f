//! Ring buffers as memory: [`RingBufReader`] consumes a `BPF_MAP_TYPE_RINGBUF` (kernel →
//! user), [`UserRingBufWriter`] produces into a `BPF_MAP_TYPE_USER_RINGBUF` (user → kernel).
//!
//! Layout (kernel/bpf/ringbuf.c): page 0 holds `consumer_pos`, page 1 `producer_pos`, then the
//! data area of `max_entries` bytes, mapped twice in a row so records never wrap. Each record has
//! an 8-byte header `{ u32 len | BUSY << 31 | DISCARD << 30, u32 pg_off }` and is padded to 8.

use std::os::fd::AsFd;

use super::{Map, MapError, MapType};
use crate::sys::{self, shared_mem, SysError};

const BUSY: u32 = 1 << 31;
const DISCARD: u32 = 1 << 30;
const HDR: usize = 8;

fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

fn mmap_err(map: &Map, what: &str, e: std::io::Error) -> MapError {
    MapError::Sys(SysError { op: format!("mmap({}, {what})", map.describe()), source: e })
}

/// Reads records a BPF program submitted to a ring buffer map.
pub struct RingBufReader {
    consumer: memmap2::MmapMut,
    producer: memmap2::Mmap,
    page: usize,
    mask: usize,
}

impl RingBufReader {
    /// Map `map` (a ring buffer) for reading.
    pub fn new(map: &Map) -> Result<RingBufReader, MapError> {
        if map.map_type() != MapType::RingBuf {
            return Err(map.unsupported("is not a ring buffer"));
        }
        let page = sys::page_size();
        let size = map.max_entries() as usize;
        let consumer = sys::mmap_shared(map.as_fd(), 0, page).map_err(|e| mmap_err(map, "consumer page", e))?;
        let producer = sys::mmap_shared_ro(map.as_fd(), page as u64, page + 2 * size).map_err(|e| mmap_err(map, "producer pages", e))?;
        Ok(RingBufReader { consumer, producer, page, mask: size - 1 })
    }

    /// Call `f` on each available record, in order; returns how many were read. Discarded
    /// records are skipped; a record still being written ends the pass.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        let Some(mut cons) = shared_mem::load_acquire_u64(&self.consumer, 0) else { return 0 };
        loop {
            let Some(prod) = shared_mem::load_acquire_u64(&self.producer, 0) else { break };
            if cons >= prod {
                break;
            }
            let off = self.page + (cons as usize & self.mask);
            let Some(hdr) = shared_mem::load_acquire_u32(&self.producer, off) else { break };
            if hdr & BUSY != 0 {
                break;
            }
            let len = (hdr & !(BUSY | DISCARD)) as usize;
            if hdr & DISCARD == 0 {
                if let Some(rec) = self.producer.get(off + HDR..off + HDR + len) {
                    f(rec);
                    n += 1;
                }
            }
            cons += round8(len + HDR) as u64;
            shared_mem::store_release_u64(&mut self.consumer, 0, cons);
        }
        n
    }

    /// Every available record, copied.
    pub fn read_all(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        self.drain(|r| out.push(r.to_vec()));
        out
    }
}

/// Writes records into a user ring buffer for a BPF program to drain with `bpf_user_ringbuf_drain`.
pub struct UserRingBufWriter {
    consumer: memmap2::Mmap,
    producer: memmap2::MmapMut,
    page: usize,
    size: usize,
    name: String,
}

impl UserRingBufWriter {
    /// Map `map` (a user ring buffer) for writing.
    pub fn new(map: &Map) -> Result<UserRingBufWriter, MapError> {
        if map.map_type() != MapType::UserRingBuf {
            return Err(map.unsupported("is not a user ring buffer"));
        }
        let page = sys::page_size();
        let size = map.max_entries() as usize;
        let consumer = sys::mmap_shared_ro(map.as_fd(), 0, page).map_err(|e| mmap_err(map, "consumer page", e))?;
        let producer = sys::mmap_shared(map.as_fd(), page as u64, page + 2 * size).map_err(|e| mmap_err(map, "producer pages", e))?;
        Ok(UserRingBufWriter { consumer, producer, page, size, name: map.name().to_string() })
    }

    /// Append one record. Fails with `OutOfRange` when the ring has no room (the program has
    /// not drained enough yet).
    pub fn write(&mut self, record: &[u8]) -> Result<(), MapError> {
        let full = || MapError::OutOfRange { map: self.name.clone(), index: 0, size: record.len(), len: self.size };
        let total = round8(record.len() + HDR);
        let cons = shared_mem::load_acquire_u64(&self.consumer, 0).ok_or_else(full)?;
        let prod = shared_mem::load_acquire_u64(&self.producer, 0).ok_or_else(full)?;
        if record.len() > u32::MAX as usize >> 2 || (prod - cons) as usize + total > self.size {
            return Err(full());
        }
        let off = self.page + (prod as usize & (self.size - 1));
        // Reserve: header marked busy, then publish the new producer position.
        shared_mem::store_release_u32(&mut self.producer, off + 4, 0);
        shared_mem::store_release_u32(&mut self.producer, off, record.len() as u32 | BUSY);
        shared_mem::store_release_u64(&mut self.producer, 0, prod + total as u64);
        self.producer[off + HDR..off + HDR + record.len()].copy_from_slice(record);
        // Submit: clear the busy bit.
        shared_mem::store_release_u32(&mut self.producer, off, record.len() as u32);
        Ok(())
    }
}
