//! Element operations on a [`Map`] as bytes: lookup, update, delete, lookup-and-delete, key
//! iteration that survives concurrent deletes, per-CPU values, fd-valued maps, and the keyless
//! queue/stack/bloom operations. Typed access is layered on top in `typed.rs`.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd};

use super::{Map, MapError, MapType, UpdateFlags};
use crate::sys::{self, Cmd, MapElemAttr};

/// `BPF_F_LOCK` for lookups.
const F_LOCK: u64 = 4;

/// Values of per-CPU maps are one slot per possible CPU, each rounded up to 8 bytes.
pub(crate) fn per_cpu_stride(value_size: u32) -> usize {
    (value_size as usize).div_ceil(8) * 8
}

impl Map {
    /// The size of the value buffer the kernel reads and writes for one element: the value size,
    /// or for per-CPU maps `round_up(value_size, 8) × possible CPUs`.
    pub fn value_buf_len(&self) -> Result<usize, MapError> {
        if self.map_type.is_per_cpu() {
            let cpus = sys::possible_cpus().map_err(|e| self.sys_err(Cmd::MapLookupElem, e))?;
            Ok(per_cpu_stride(self.value_size) * cpus)
        } else {
            Ok(self.value_size as usize)
        }
    }

    pub(crate) fn check_len(&self, what: &'static str, got: usize, want: usize) -> Result<(), MapError> {
        if got == want {
            Ok(())
        } else {
            Err(MapError::WrongSize { map: self.name.clone(), what, got, want })
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), MapError> {
        if self.map_type.is_keyless() {
            return Err(self.unsupported("has no keys: use push/pop/peek (queue, stack) or push/contains (bloom filter)"));
        }
        self.check_len("key", key.len(), self.key_size as usize)
    }

    /// Issue one element command. `key`/`value` are raw pointers as the kernel takes them (0: none).
    fn elem(&self, cmd: Cmd, key: u64, value: u64, flags: u64) -> std::io::Result<()> {
        let mut attr = MapElemAttr { map_fd: self.fd.as_raw_fd() as u32, key, value, flags, ..Default::default() };
        sys::bpf(cmd, &mut attr).map(|_| ())
    }

    /// Look up `key`; `None` if absent. Per-CPU maps return every CPU's slot, concatenated
    /// (see [`Map::lookup_percpu`]).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        let mut value = vec![0u8; self.value_buf_len()?];
        Ok(self.lookup_into(key, &mut value)?.then_some(value))
    }

    /// Look up `key` into `out` (exactly [`Map::value_buf_len`] bytes) without allocating;
    /// `false` if absent.
    pub fn lookup_into(&self, key: &[u8], out: &mut [u8]) -> Result<bool, MapError> {
        self.check_key(key)?;
        self.check_len("value buffer", out.len(), self.value_buf_len()?)?;
        self.lookup_raw(key, out, 0)
    }

    /// Look up with `BPF_F_LOCK`: copy the value under its `bpf_spin_lock`.
    pub fn lookup_locked(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let mut value = vec![0u8; self.value_buf_len()?];
        Ok(self.lookup_raw(key, &mut value, F_LOCK)?.then_some(value))
    }

    fn lookup_raw(&self, key: &[u8], out: &mut [u8], flags: u64) -> Result<bool, MapError> {
        match self.elem(Cmd::MapLookupElem, sys::ptr(key.as_ptr()), sys::ptr(out.as_mut_ptr()), flags) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.sys_err(Cmd::MapLookupElem, e)),
        }
    }

    /// Insert or replace `key` → `value` according to `flags`.
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        self.check_key(key)?;
        self.check_len("value", value.len(), self.value_buf_len()?)?;
        self.elem(Cmd::MapUpdateElem, sys::ptr(key.as_ptr()), sys::ptr(value.as_ptr()), flags.raw())
            .map_err(|e| self.sys_err(Cmd::MapUpdateElem, e))
    }

    /// Delete `key`; `false` if it was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool, MapError> {
        self.check_key(key)?;
        match self.elem(Cmd::MapDeleteElem, sys::ptr(key.as_ptr()), 0, 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.sys_err(Cmd::MapDeleteElem, e)),
        }
    }

    /// Look up and delete `key` in one step (hash maps); `None` if absent.
    pub fn lookup_and_delete(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check_key(key)?;
        let mut value = vec![0u8; self.value_buf_len()?];
        match self.elem(Cmd::MapLookupAndDeleteElem, sys::ptr(key.as_ptr()), sys::ptr(value.as_mut_ptr()), 0) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys_err(Cmd::MapLookupAndDeleteElem, e)),
        }
    }

    /// The key after `key` (the first key when `None`); `None` at the end.
    pub fn next_key(&self, key: Option<&[u8]>) -> Result<Option<Vec<u8>>, MapError> {
        if let Some(k) = key {
            self.check_key(k)?;
        } else if self.map_type.is_keyless() {
            return Err(self.unsupported("has no keys to iterate"));
        }
        let mut next = vec![0u8; self.key_size as usize];
        let key_ptr = key.map(|k| sys::ptr(k.as_ptr())).unwrap_or(0);
        match self.elem(Cmd::MapGetNextKey, key_ptr, sys::ptr(next.as_mut_ptr()), 0) {
            Ok(()) => Ok(Some(next)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys_err(Cmd::MapGetNextKey, e)),
        }
    }

    /// Iterate over the keys. Survives concurrent deletes: when the current key disappears the
    /// kernel restarts from the first key, and keys already yielded are skipped.
    pub fn keys(&self) -> Keys<'_> {
        // Only maps whose keys can be deleted restart the walk; array-like maps never do.
        let track = !matches!(self.map_type, MapType::Array | MapType::PercpuArray | MapType::ProgArray | MapType::ArrayOfMaps | MapType::CgroupArray | MapType::PerfEventArray);
        let seen = if track { Some(HashSet::with_capacity((self.max_entries as usize).min(1 << 16))) } else { None };
        Keys { map: self, prev: None, seen, steps: 0, done: false }
    }

    /// Iterate over `(key, value)` pairs; keys deleted between the key walk and the lookup are skipped.
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), MapError>> + '_ {
        self.keys().filter_map(move |k| match k {
            Err(e) => Some(Err(e)),
            Ok(k) => match self.lookup(&k) {
                Ok(Some(v)) => Some(Ok((k, v))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
        })
    }

    /// Per-CPU maps: each possible CPU's value (`value_size` bytes each), `None` if absent.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        self.require_per_cpu()?;
        let stride = per_cpu_stride(self.value_size);
        Ok(self.lookup(key)?.map(|buf| buf.chunks(stride).map(|c| c[..self.value_size as usize].to_vec()).collect()))
    }

    /// Per-CPU maps: set each possible CPU's value (one `value_size` slice per CPU).
    pub fn update_percpu<V: AsRef<[u8]>>(&self, key: &[u8], values: &[V], flags: UpdateFlags) -> Result<(), MapError> {
        self.require_per_cpu()?;
        let stride = per_cpu_stride(self.value_size);
        let total = self.value_buf_len()?;
        self.check_len("per-CPU value list (entries × stride)", values.len() * stride, total)?;
        let mut buf = vec![0u8; total];
        for (slot, v) in buf.chunks_mut(stride).zip(values) {
            self.check_len("per-CPU value", v.as_ref().len(), self.value_size as usize)?;
            slot[..v.as_ref().len()].copy_from_slice(v.as_ref());
        }
        self.update(key, &buf, flags)
    }

    fn require_per_cpu(&self) -> Result<(), MapError> {
        if self.map_type.is_per_cpu() {
            Ok(())
        } else {
            Err(self.unsupported("is not a per-CPU map"))
        }
    }

    /// Maps whose values are fds (prog arrays, map-in-map, sockmaps, perf event arrays, cgroup
    /// arrays, xskmaps, reuseport arrays): store `fd` at `key`.
    pub fn update_fd(&self, key: &[u8], fd: impl AsFd, flags: UpdateFlags) -> Result<(), MapError> {
        if !self.map_type.takes_fd_values() {
            return Err(self.unsupported("does not hold file descriptors"));
        }
        let raw = fd.as_fd().as_raw_fd() as u32;
        let mut value = vec![0u8; self.value_size as usize];
        if value.len() < 4 {
            return Err(self.unsupported("value size is below 4, too small for an fd"));
        }
        value[..4].copy_from_slice(&raw.to_ne_bytes());
        self.update(key, &value, flags)
    }

    /// Map-in-map: the inner map at `key`, opened by the id the kernel reports.
    pub fn lookup_inner_map(&self, key: &[u8]) -> Result<Option<Map>, MapError> {
        if !matches!(self.map_type, MapType::ArrayOfMaps | MapType::HashOfMaps) {
            return Err(self.unsupported("is not a map-in-map"));
        }
        match self.lookup(key)? {
            Some(v) => match v.get(..4) {
                Some(id) => Ok(Some(Map::from_id(u32::from_ne_bytes([id[0], id[1], id[2], id[3]]))?)),
                None => Err(self.unsupported("value is shorter than a map id")),
            },
            None => Ok(None),
        }
    }

    fn require(&self, types: &[MapType], what: &str) -> Result<(), MapError> {
        if types.contains(&self.map_type) {
            Ok(())
        } else {
            Err(self.unsupported(format!("{what} needs a queue, stack or bloom filter")))
        }
    }

    /// Queue, stack, bloom filter: add `value` (`UpdateFlags::Exist` on a full queue/stack
    /// replaces the oldest element).
    pub fn push(&self, value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        self.require(&[MapType::Queue, MapType::Stack, MapType::BloomFilter], "push")?;
        self.check_len("value", value.len(), self.value_size as usize)?;
        self.elem(Cmd::MapUpdateElem, 0, sys::ptr(value.as_ptr()), flags.raw()).map_err(|e| self.sys_err(Cmd::MapUpdateElem, e))
    }

    /// Queue, stack: remove and return the next element; `None` when empty.
    pub fn pop(&self) -> Result<Option<Vec<u8>>, MapError> {
        self.require(&[MapType::Queue, MapType::Stack], "pop")?;
        self.keyless(Cmd::MapLookupAndDeleteElem)
    }

    /// Queue, stack: the next element without removing it; `None` when empty.
    pub fn peek(&self) -> Result<Option<Vec<u8>>, MapError> {
        self.require(&[MapType::Queue, MapType::Stack], "peek")?;
        self.keyless(Cmd::MapLookupElem)
    }

    fn keyless(&self, cmd: Cmd) -> Result<Option<Vec<u8>>, MapError> {
        let mut value = vec![0u8; self.value_size as usize];
        match self.elem(cmd, 0, sys::ptr(value.as_mut_ptr()), 0) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(self.sys_err(cmd, e)),
        }
    }

    /// Bloom filter: whether `value` may be in the set (false positives possible, no false negatives).
    pub fn contains(&self, value: &[u8]) -> Result<bool, MapError> {
        self.require(&[MapType::BloomFilter], "contains")?;
        self.check_len("value", value.len(), self.value_size as usize)?;
        let mut copy = value.to_vec();
        match self.elem(Cmd::MapLookupElem, 0, sys::ptr(copy.as_mut_ptr()), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.sys_err(Cmd::MapLookupElem, e)),
        }
    }
}

/// Iterator over a map's keys ([`Map::keys`]).
pub struct Keys<'a> {
    map: &'a Map,
    prev: Option<Vec<u8>>,
    /// Keys already yielded (`None` for maps whose walk never restarts).
    seen: Option<HashSet<Vec<u8>>>,
    steps: usize,
    done: bool,
}

impl Iterator for Keys<'_> {
    type Item = Result<Vec<u8>, MapError>;

    fn next(&mut self) -> Option<Self::Item> {
        // A restart (current key deleted) walks already-seen keys again; bound the total work so a
        // map that changes faster than it can be walked ends with an error instead of spinning.
        let limit = (self.map.max_entries as usize).saturating_mul(8).saturating_add(1024);
        while !self.done {
            self.steps += 1;
            if self.steps > limit {
                self.done = true;
                return Some(Err(MapError::IterationAborted { map: self.map.name.clone(), steps: limit }));
            }
            match self.map.next_key(self.prev.as_deref()) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(None) => self.done = true,
                Ok(Some(k)) => {
                    let fresh = match &mut self.seen {
                        Some(seen) => seen.insert(k.clone()),
                        None => true,
                    };
                    self.prev = Some(k.clone());
                    if fresh {
                        return Some(Ok(k));
                    }
                }
            }
        }
        None
    }
}
