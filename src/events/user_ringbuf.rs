//! The user ring buffer producer (`BPF_MAP_TYPE_USER_RINGBUF`, user → kernel): records written
//! here are drained by a program calling `bpf_user_ringbuf_drain`. Same layout as the ring
//! buffer with the roles swapped: the kernel owns `consumer_pos`, user space `producer_pos`.

use std::os::fd::AsFd;

use super::ringbuf::{mmap_err, round8, HDR};
use super::EventError;
use crate::maps::{Map, MapType};
use crate::sys::{self, shared_mem};

const BUSY: u32 = 1 << 31;

/// Writes records for a BPF program to drain.
pub struct UserRingBuf {
    consumer: memmap2::Mmap,
    producer: memmap2::MmapMut,
    page: usize,
    size: usize,
    name: String,
}

impl UserRingBuf {
    /// Map `map` (a user ring buffer) for writing.
    pub fn new(map: &Map) -> Result<UserRingBuf, EventError> {
        if map.map_type() != MapType::UserRingBuf {
            return Err(EventError::WrongMap { map: map.describe(), want: "user_ringbuf" });
        }
        let page = sys::page_size();
        let size = map.max_entries() as usize;
        let consumer = sys::mmap_shared_ro(map.as_fd(), 0, page).map_err(|e| mmap_err(map, "consumer page", e))?;
        let producer = sys::mmap_shared(map.as_fd(), page as u64, page + 2 * size).map_err(|e| mmap_err(map, "producer pages", e))?;
        Ok(UserRingBuf { consumer, producer, page, size, name: map.name().to_string() })
    }

    /// Append one record. `EventError::Full` when the ring has no room (the program has not
    /// drained enough yet).
    pub fn write(&mut self, record: &[u8]) -> Result<(), EventError> {
        let full = || EventError::Full { map: self.name.clone(), size: record.len() };
        let total = round8(record.len() + HDR);
        let cons = shared_mem::load_acquire_u64(&self.consumer, 0).ok_or_else(full)?;
        let prod = shared_mem::load_acquire_u64(&self.producer, 0).ok_or_else(full)?;
        if record.len() > (u32::MAX >> 2) as usize || prod.saturating_sub(cons) as usize + total > self.size {
            return Err(full());
        }
        let off = self.page + (prod as usize & (self.size - 1));
        // Reserve: the header marked busy, then the new producer position published.
        shared_mem::store_release_u32(&mut self.producer, off + 4, 0);
        shared_mem::store_release_u32(&mut self.producer, off, record.len() as u32 | BUSY);
        shared_mem::store_release_u64(&mut self.producer, 0, prod + total as u64);
        self.producer[off + HDR..off + HDR + record.len()].copy_from_slice(record);
        // Submit: clear the busy bit.
        shared_mem::store_release_u32(&mut self.producer, off, record.len() as u32);
        Ok(())
    }
}
