//! Typed views of a [`Map`]: keys and values as plain-old-data Rust types (`bytemuck::Pod`),
//! sizes checked once when the view is made.

use std::marker::PhantomData;

use bytemuck::Pod;

use super::elem::per_cpu_stride;
use super::{Map, MapError, UpdateFlags};

/// A map seen as `K → V` ([`Map::typed`]).
pub struct Typed<'m, K, V> {
    map: &'m Map,
    _kv: PhantomData<(K, V)>,
}

/// A per-CPU map seen as `K → [V; possible CPUs]` ([`Map::per_cpu`]).
pub struct PerCpu<'m, K, V> {
    map: &'m Map,
    _kv: PhantomData<(K, V)>,
}

impl Map {
    /// View this map with key type `K` and value type `V` (sizes must equal the map's).
    pub fn typed<K: Pod, V: Pod>(&self) -> Result<Typed<'_, K, V>, MapError> {
        if self.map_type.is_per_cpu() {
            return Err(self.unsupported("is per-CPU: use `per_cpu::<K, V>()`"));
        }
        self.check_len("key type", std::mem::size_of::<K>(), self.key_size as usize)?;
        self.check_len("value type", std::mem::size_of::<V>(), self.value_size as usize)?;
        Ok(Typed { map: self, _kv: PhantomData })
    }

    /// View a per-CPU map with key type `K` and per-CPU value type `V`.
    pub fn per_cpu<K: Pod, V: Pod>(&self) -> Result<PerCpu<'_, K, V>, MapError> {
        if !self.map_type.is_per_cpu() {
            return Err(self.unsupported("is not a per-CPU map"));
        }
        self.check_len("key type", std::mem::size_of::<K>(), self.key_size as usize)?;
        self.check_len("value type", std::mem::size_of::<V>(), self.value_size as usize)?;
        Ok(PerCpu { map: self, _kv: PhantomData })
    }
}

impl<K: Pod, V: Pod> Typed<'_, K, V> {
    /// The value at `key`, `None` if the key is absent.
    pub fn get(&self, key: &K) -> Result<Option<V>, MapError> {
        let mut v = V::zeroed();
        Ok(self.map.lookup_into(bytemuck::bytes_of(key), bytemuck::bytes_of_mut(&mut v))?.then_some(v))
    }
    /// Set the value at `key` (`flags` say whether it may create or replace).
    pub fn insert(&self, key: &K, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        self.map.update(bytemuck::bytes_of(key), bytemuck::bytes_of(value), flags)
    }
    /// Delete `key`; `false` if it was absent.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        self.map.delete(bytemuck::bytes_of(key))
    }
    /// `(key, value)` pairs, surviving concurrent deletes like [`Map::keys`].
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, V), MapError>> + '_ {
        self.map.iter().map(|r| r.map(|(k, v)| (bytemuck::pod_read_unaligned(&k), bytemuck::pod_read_unaligned(&v))))
    }
    /// The keys, surviving concurrent deletes like [`Map::keys`].
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        self.map.keys().map(|r| r.map(|k| bytemuck::pod_read_unaligned(&k)))
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map
    }
}

impl<K: Pod, V: Pod> PerCpu<'_, K, V> {
    /// Every possible CPU's value, `None` if the key is absent.
    pub fn get(&self, key: &K) -> Result<Option<Vec<V>>, MapError> {
        let stride = per_cpu_stride(self.map.value_size);
        let size = std::mem::size_of::<V>();
        Ok(self.map.lookup(bytemuck::bytes_of(key))?.map(|buf| buf.chunks(stride).map(|c| bytemuck::pod_read_unaligned(&c[..size])).collect()))
    }
    /// Set every possible CPU's value (`values.len()` must equal the number of possible CPUs).
    pub fn insert(&self, key: &K, values: &[V], flags: UpdateFlags) -> Result<(), MapError> {
        let slices: Vec<&[u8]> = values.iter().map(bytemuck::bytes_of).collect();
        self.map.update_percpu(bytemuck::bytes_of(key), &slices, flags)
    }
    /// Set the same value on every possible CPU.
    pub fn insert_all(&self, key: &K, value: &V, flags: UpdateFlags) -> Result<(), MapError> {
        let cpus = crate::sys::possible_cpus().map_err(|e| self.map.sys_err(crate::sys::Cmd::MapUpdateElem, e))?;
        self.insert(key, &vec![*value; cpus], flags)
    }
    /// Delete `key`; `false` if it was absent.
    pub fn remove(&self, key: &K) -> Result<bool, MapError> {
        self.map.delete(bytemuck::bytes_of(key))
    }
    /// The underlying map.
    pub fn map(&self) -> &Map {
        self.map
    }
}
