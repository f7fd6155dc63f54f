//! Memory-mapped maps: `BPF_F_MMAPABLE` arrays (elements at `index × round_up(value_size, 8)`)
//! and arenas (`max_entries` pages), read and written in place from user space.

use std::sync::atomic::{AtomicU32, AtomicU64};

use bytemuck::Pod;

use super::elem::per_cpu_stride;
use super::{Map, MapError, MapFlags, MapType};
use crate::sys;

/// A map's memory mapped into this process ([`Map::mmap`]). Keeps its own mapping; the map may
/// be dropped while this lives (the kernel keeps the memory until unmapped).
pub struct MappedMap {
    mem: memmap2::MmapMut,
    /// Bytes from one element to the next (1 for arenas, which are addressed by byte).
    stride: usize,
    /// Bytes of one element that may be read or written (arrays: the value size).
    value_size: usize,
    entries: usize,
    name: String,
}

impl Map {
    /// Map the map's memory: an array created with `MapFlags::MMAPABLE`, or an arena.
    pub fn mmap(&self) -> Result<MappedMap, MapError> {
        let page = sys::page_size();
        let (len, stride, value_size, entries) = match self.map_type {
            MapType::Array if self.flags.contains(MapFlags::MMAPABLE) => {
                let stride = per_cpu_stride(self.value_size);
                let len = (stride * self.max_entries as usize).div_ceil(page) * page;
                (len, stride, self.value_size as usize, self.max_entries as usize)
            }
            MapType::Arena => {
                let len = self.max_entries as usize * page;
                (len, 1, len, len)
            }
            _ => return Err(self.unsupported("cannot be memory-mapped (needs an array created with MMAPABLE, or an arena)")),
        };
        let mem = sys::mmap_shared(std::os::fd::AsFd::as_fd(self), 0, len).map_err(|e| MapError::Sys(sys::SysError::new(format!("mmap({}, {len} bytes)", self.describe()), e)))?;
        Ok(MappedMap { mem, stride, value_size, entries, name: self.name.clone() })
    }
}

impl MappedMap {
    /// The whole mapping.
    pub fn as_bytes(&self) -> &[u8] {
        &self.mem
    }
    /// The whole mapping, writable (writes go straight to the map).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.mem
    }
    /// Number of elements (arrays) or bytes (arenas).
    pub fn len(&self) -> usize {
        self.entries
    }
    /// Bytes of one element (arrays: the value size; arenas: the whole mapping).
    pub fn value_size(&self) -> usize {
        self.value_size
    }
    /// Whether the mapping holds no elements.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn slot(&self, index: usize, size: usize) -> Result<usize, MapError> {
        let off = index.checked_mul(self.stride);
        let fits = match off {
            Some(off) if self.stride == 1 => off.checked_add(size).is_some_and(|end| end <= self.mem.len()),
            Some(off) => index < self.entries && size <= self.value_size && off + size <= self.mem.len(),
            None => false,
        };
        match off {
            Some(off) if fits => Ok(off),
            _ => Err(MapError::OutOfRange { map: self.name.clone(), index, size, len: self.entries }),
        }
    }

    /// Read element `index` as `T` (arrays), or the `T` at byte offset `index` (arenas).
    pub fn get<T: Pod>(&self, index: usize) -> Result<T, MapError> {
        let off = self.slot(index, std::mem::size_of::<T>())?;
        Ok(bytemuck::pod_read_unaligned(&self.mem[off..off + std::mem::size_of::<T>()]))
    }

    /// Element `index` (arrays) or the word at byte offset `index` (arenas) as an `AtomicU64`:
    /// CPU atomics on the memory BPF programs update with their own atomic instructions, so a
    /// `fetch_add` or `compare_exchange` here never loses a program's update, nor the reverse.
    pub fn atomic_u64(&self, index: usize) -> Result<&AtomicU64, MapError> {
        let off = self.slot(index, 8)?;
        sys::shared_mem::atomic_u64_at(&self.mem, off).ok_or_else(|| self.misaligned(index))
    }

    /// As [`MappedMap::atomic_u64`], for a 4-byte element.
    pub fn atomic_u32(&self, index: usize) -> Result<&AtomicU32, MapError> {
        let off = self.slot(index, 4)?;
        sys::shared_mem::atomic_u32_at(&self.mem, off).ok_or_else(|| self.misaligned(index))
    }

    fn misaligned(&self, index: usize) -> MapError {
        MapError::Unsupported { map: self.name.clone(), map_type: "mmap".into(), message: format!("element {index} is not aligned for an atomic access") }
    }

    /// Write element `index` (arrays), or the `T` at byte offset `index` (arenas).
    pub fn set<T: Pod>(&mut self, index: usize, value: &T) -> Result<(), MapError> {
        let size = std::mem::size_of::<T>();
        let off = self.slot(index, size)?;
        self.mem[off..off + size].copy_from_slice(bytemuck::bytes_of(value));
        Ok(())
    }
}
