//! Batch operations (`BPF_MAP_{LOOKUP,LOOKUP_AND_DELETE,UPDATE,DELETE}_BATCH`): many elements
//! per syscall. Keys and values travel as flat buffers, `count × size` bytes.

use std::os::fd::AsRawFd;

use super::{Map, MapError, UpdateFlags};
use crate::sys::{self, Cmd, MapBatchAttr};

/// Options of batch operations.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct BatchOptions {
    /// Elements asked for per syscall (lookups; grown when a hash bucket does not fit).
    pub chunk: u32,
    /// `BPF_F_LOCK` for values with a spin lock.
    pub lock: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions { chunk: 1024, lock: false }
    }
}

impl BatchOptions {
    /// Elements per batch call (`count` of the batch command); at least 1, default 1024.
    pub fn chunk(mut self, n: u32) -> Self {
        self.chunk = n.max(1);
        self
    }
    /// Use `BPF_F_LOCK`: copy values under their `bpf_spin_lock` (default off).
    pub fn lock(mut self, lock: bool) -> Self {
        self.lock = lock;
        self
    }
    fn elem_flags(&self) -> u64 {
        if self.lock { 4 } else { 0 }
    }
}

/// Elements returned by a batch lookup: `keys` and `values` are flat, `len()` entries each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchEntries {
    /// Bytes per key.
    pub key_size: usize,
    /// Bytes per value as the kernel returns it (per-CPU maps: all CPUs' slots).
    pub value_size: usize,
    /// The keys, `len()` × `key_size` bytes.
    pub keys: Vec<u8>,
    /// The values, `len()` × `value_size` bytes.
    pub values: Vec<u8>,
}

impl BatchEntries {
    /// The number of entries.
    pub fn len(&self) -> usize {
        if self.key_size == 0 { 0 } else { self.keys.len() / self.key_size }
    }
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(key, value)` slices.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.keys.chunks(self.key_size.max(1)).zip(self.values.chunks(self.value_size.max(1)))
    }
}

impl Map {
    /// Read every element with `BPF_MAP_LOOKUP_BATCH`.
    pub fn lookup_batch(&self, opts: &BatchOptions) -> Result<BatchEntries, MapError> {
        self.batch_read(Cmd::MapLookupBatch, opts)
    }

    /// Read and delete every element with `BPF_MAP_LOOKUP_AND_DELETE_BATCH`.
    pub fn lookup_and_delete_batch(&self, opts: &BatchOptions) -> Result<BatchEntries, MapError> {
        self.batch_read(Cmd::MapLookupAndDeleteBatch, opts)
    }

    fn batch_read(&self, cmd: Cmd, opts: &BatchOptions) -> Result<BatchEntries, MapError> {
        let key_size = self.key_size as usize;
        let value_size = self.value_buf_len()?;
        let mut out = BatchEntries { key_size, value_size, ..Default::default() };
        // The cursor is opaque: a bucket index (u32) for hash maps, a key for arrays.
        let cursor_len = key_size.max(8);
        let mut in_batch = vec![0u8; cursor_len];
        let mut out_batch = vec![0u8; cursor_len];
        let mut first = true;
        let mut chunk = opts.chunk.max(1) as usize;
        loop {
            let mut keys = vec![0u8; chunk * key_size];
            let mut values = vec![0u8; chunk * value_size];
            let mut attr = MapBatchAttr {
                in_batch: if first { 0 } else { sys::ptr(in_batch.as_ptr()) },
                out_batch: sys::ptr(out_batch.as_mut_ptr()),
                keys: sys::ptr(keys.as_mut_ptr()),
                values: sys::ptr(values.as_mut_ptr()),
                count: chunk as u32,
                map_fd: self.fd.as_raw_fd() as u32,
                elem_flags: opts.elem_flags(),
                flags: 0,
            };
            let res = sys::bpf(cmd, &mut attr);
            let got = attr.count as usize;
            out.keys.extend_from_slice(&keys[..got * key_size]);
            out.values.extend_from_slice(&values[..got * value_size]);
            match res {
                Ok(_) => {}
                // ENOENT: no more elements (the last chunk may still carry some).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                // ENOSPC: a hash bucket holds more elements than `count`; ask for more.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && got == 0 && chunk < (1 << 20) => {
                    chunk *= 2;
                    continue;
                }
                Err(e) => return Err(self.sys_err(cmd, e)),
            }
            first = false;
            std::mem::swap(&mut in_batch, &mut out_batch);
        }
    }

    /// Write `keys[i] → values[i]` for every element (`BPF_MAP_UPDATE_BATCH`); flat buffers of
    /// `n × key_size` and `n × value_buf_len()` bytes. Returns the number written.
    pub fn update_batch(&self, keys: &[u8], values: &[u8], flags: UpdateFlags, opts: &BatchOptions) -> Result<usize, MapError> {
        let n = self.batch_count(keys)?;
        self.check_len("batch values", values.len(), n * self.value_buf_len()?)?;
        let elem_flags = flags.raw() | opts.elem_flags();
        let mut attr = MapBatchAttr {
            keys: sys::ptr(keys.as_ptr()),
            values: sys::ptr(values.as_ptr()),
            count: n as u32,
            map_fd: self.fd.as_raw_fd() as u32,
            elem_flags,
            ..Default::default()
        };
        sys::bpf(Cmd::MapUpdateBatch, &mut attr).map_err(|e| self.batch_err(Cmd::MapUpdateBatch, e, attr.count, n))?;
        Ok(attr.count as usize)
    }

    /// Delete every key in `keys` (flat, `n × key_size`) with `BPF_MAP_DELETE_BATCH`.
    pub fn delete_batch(&self, keys: &[u8]) -> Result<usize, MapError> {
        let n = self.batch_count(keys)?;
        let mut attr = MapBatchAttr { keys: sys::ptr(keys.as_ptr()), count: n as u32, map_fd: self.fd.as_raw_fd() as u32, ..Default::default() };
        sys::bpf(Cmd::MapDeleteBatch, &mut attr).map_err(|e| self.batch_err(Cmd::MapDeleteBatch, e, attr.count, n))?;
        Ok(attr.count as usize)
    }

    fn batch_count(&self, keys: &[u8]) -> Result<usize, MapError> {
        let ks = self.key_size as usize;
        if ks == 0 || keys.len() % ks != 0 {
            return Err(MapError::WrongSize { map: self.name.clone(), what: "batch keys (a multiple of the key size)", got: keys.len(), want: ks });
        }
        Ok(keys.len() / ks)
    }

    fn batch_err(&self, cmd: Cmd, e: std::io::Error, done: u32, asked: usize) -> MapError {
        MapError::Sys(sys::SysError::new(format!("{}({}, {done} of {asked} elements done)", cmd.name(), self.describe()), e))
    }
}
