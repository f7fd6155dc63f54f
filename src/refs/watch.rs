//! [`Watch`]: wait for a map key to appear, or for its value to change. The kernel offers no
//! notification for either, so a watch looks, sleeps and looks again (50 µs at first, doubling
//! up to 20 ms between looks) until its deadline; a change that is undone between two looks is
//! not seen. Where a program can say "changed" itself, a ring buffer record ([`super::RingStream`])
//! is the notification to use instead.

use std::time::Duration;

use bytemuck::Pod;

use super::{decode, dup_map, Backoff, RefError};
use crate::maps::Map;

/// A watch on one key of a map (any map with lookups: hash, array, LRU, …).
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
    map: Map,
    key: K,
    _v: std::marker::PhantomData<fn() -> V>,
}

impl<K: Pod, V: Pod> Watch<K, V> {
    /// Watch `key` of `map`; holds its own descriptor of the map.
    pub fn new(map: &Map, key: K) -> Result<Watch<K, V>, RefError> {
        for (what, got, want) in [("key", std::mem::size_of::<K>(), map.key_size()), ("value", std::mem::size_of::<V>(), map.value_size())] {
            if got != want as usize {
                return Err(crate::maps::MapError::WrongSize { map: map.name().to_string(), what, got, want: want as usize }.into());
            }
        }
        Ok(Watch { map: dup_map(map)?, key, _v: std::marker::PhantomData })
    }

    /// The value now (`None`: absent).
    pub fn get(&self) -> Result<Option<V>, RefError> {
        match self.map.lookup(bytemuck::bytes_of(&self.key))? {
            Some(bytes) => Ok(Some(decode(self.map.name(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Wait until the key exists and return its value (at once if it exists already).
    pub fn wait_present(&self, timeout: Option<Duration>) -> Result<V, RefError> {
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

    /// Wait until the value differs from `from` (`None`: absent) and return the new one
    /// (`None` when the key was deleted).
    pub fn wait_change(&self, from: Option<V>, timeout: Option<Duration>) -> Result<Option<V>, RefError> {
        let from = from.map(|v| bytemuck::bytes_of(&v).to_vec());
        let mut backoff = Backoff::new(timeout);
        loop {
            let now = self.get()?;
            if now.map(|v| bytemuck::bytes_of(&v).to_vec()) != from {
                return Ok(now);
            }
            if !backoff.wait() {
                return Err(backoff.timeout(self.map.name()));
            }
        }
    }

    /// The successive values as they change, starting from the current one; ends when no
    /// change comes within `idle`.
    pub fn changes(&self, idle: Duration) -> impl Iterator<Item = Result<Option<V>, RefError>> + '_ {
        let mut last: Option<Option<V>> = None;
        std::iter::from_fn(move || {
            let next = match last {
                None => self.get(),
                Some(prev) => match self.wait_change(prev, Some(idle)) {
                    Err(RefError::Timeout { .. }) => return None,
                    other => other,
                },
            };
            if let Ok(v) = &next {
                last = Some(*v);
            }
            Some(next)
        })
    }
}
