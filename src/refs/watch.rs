//! [`Watch`]: wait for a map key to appear, or for its value to change. The kernel offers no
//! notification for either, so a watch looks, sleeps and looks again (50 µs at first, doubling
//! up to 20 ms between looks) until its deadline; a change that is undone between two looks is
//! not seen. Where a program can say "changed" itself, a ring buffer record ([`super::RingStream`])
//! is the notification to use instead.

use std::time::Duration;

use bytemuck::Pod;

use super::{decode, dup_map, Backoff, RefError};
use crate::maps::Map;

/// A watch on one key of a map (any map with lookups: hash, array, LRU, …), values decoded
/// as `V`. [`BytesWatch`] is the same on raw bytes, for keys and values whose shape is known
/// only at run time.
///
/// ```no_run
/// # use bpfkit::maps::{Map, MapSpec, MapType};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let seen = Map::create(&MapSpec::new("seen", MapType::Hash, 4, 8, 16))?;
/// use bpfkit::refs::Watch;
/// use std::time::Duration;
/// let w = Watch::<u32, u64>::new(&seen, 42)?;
/// let first = w.wait_present(Some(Duration::from_secs(5)))?;            // until a program adds key 42
/// let next = w.wait_change(Some(first), Some(Duration::from_secs(5)))?;  // until it differs (None: deleted)
/// # Ok(()) }
/// ```
pub struct Watch<K: Pod, V: Pod> {
    raw: BytesWatch,
    _kv: std::marker::PhantomData<fn(K) -> V>,
}

impl<K: Pod, V: Pod> Watch<K, V> {
    /// Watch `key` of `map`; holds its own descriptor of the map.
    pub fn new(map: &Map, key: K) -> Result<Watch<K, V>, RefError> {
        if std::mem::size_of::<V>() != map.value_size() as usize {
            let (got, want) = (std::mem::size_of::<V>(), map.value_size() as usize);
            return Err(crate::maps::MapError::WrongSize { map: map.name().to_string(), what: "value", got, want }.into());
        }
        Ok(Watch { raw: BytesWatch::new(map, bytemuck::bytes_of(&key))?, _kv: std::marker::PhantomData })
    }

    /// The value now (`None`: absent).
    pub fn get(&self) -> Result<Option<V>, RefError> {
        self.raw.get()?.map(|b| decode(self.raw.map.name(), &b)).transpose()
    }

    /// Wait until the key exists and return its value (at once if it exists already).
    pub fn wait_present(&self, timeout: Option<Duration>) -> Result<V, RefError> {
        decode(self.raw.map.name(), &self.raw.wait_present(timeout)?)
    }

    /// Wait until the value differs from `from` (`None`: absent) and return the new one
    /// (`None` when the key was deleted).
    pub fn wait_change(&self, from: Option<V>, timeout: Option<Duration>) -> Result<Option<V>, RefError> {
        let from = from.map(|v| bytemuck::bytes_of(&v).to_vec());
        self.raw.wait_change(from.as_deref(), timeout)?.map(|b| decode(self.raw.map.name(), &b)).transpose()
    }

    /// The successive values as they change, starting from the current one; ends when no
    /// change comes within `idle`.
    pub fn changes(&self, idle: Duration) -> impl Iterator<Item = Result<Option<V>, RefError>> + '_ {
        self.raw.changes(idle).map(|r| r.and_then(|v| v.map(|b| decode(self.raw.map.name(), &b)).transpose()))
    }
}

/// [`Watch`] on raw bytes: the key as bytes, values as `Vec<u8>`.
pub struct BytesWatch {
    map: Map,
    key: Vec<u8>,
}

impl BytesWatch {
    /// Watch `key` (the map's key size) of `map`; holds its own descriptor of the map.
    pub fn new(map: &Map, key: &[u8]) -> Result<BytesWatch, RefError> {
        if key.len() != map.key_size() as usize {
            return Err(crate::maps::MapError::WrongSize { map: map.name().to_string(), what: "key", got: key.len(), want: map.key_size() as usize }.into());
        }
        Ok(BytesWatch { map: dup_map(map)?, key: key.to_vec() })
    }

    /// The value now (`None`: absent).
    pub fn get(&self) -> Result<Option<Vec<u8>>, RefError> {
        Ok(self.map.lookup(&self.key)?)
    }

    /// Wait until the key exists and return its value.
    pub fn wait_present(&self, timeout: Option<Duration>) -> Result<Vec<u8>, RefError> {
        let mut backoff = Backoff::new(timeout);
        loop {
            if let Some(v) = self.get()? {
                return Ok(v);
            }
            if !backoff.wait() {
                return Err(backoff.timeout(self.map.name()));
            }
        }
    }

    /// Wait until the value differs from `from` (`None`: absent); the new value, `None` when
    /// the key was deleted.
    pub fn wait_change(&self, from: Option<&[u8]>, timeout: Option<Duration>) -> Result<Option<Vec<u8>>, RefError> {
        let mut backoff = Backoff::new(timeout);
        loop {
            let now = self.get()?;
            if now.as_deref() != from {
                return Ok(now);
            }
            if !backoff.wait() {
                return Err(backoff.timeout(self.map.name()));
            }
        }
    }

    /// The successive values as they change, starting from the current one; ends when no
    /// change comes within `idle`.
    pub fn changes(&self, idle: Duration) -> impl Iterator<Item = Result<Option<Vec<u8>>, RefError>> + '_ {
        let mut last: Option<Option<Vec<u8>>> = None;
        std::iter::from_fn(move || {
            let next = match &last {
                None => self.get(),
                Some(prev) => match self.wait_change(prev.as_deref(), Some(idle)) {
                    Err(RefError::Timeout { .. }) => return None,
                    other => other,
                },
            };
            if let Ok(v) = &next {
                last = Some(v.clone());
            }
            Some(next)
        })
    }
}
