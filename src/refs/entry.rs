//! [`Entry`]: one key of a map, read, written and updated atomically where the kernel allows
//! (see the module documentation of [`crate::refs`] for which path is atomic against what).

use std::fmt;
use std::sync::{Arc, OnceLock};

use bytemuck::Pod;

use super::kernel_cas::KernelCas;
use super::{dup_map, RefError};
use crate::maps::{Map, MapError, MapFlags, MapType, MappedMap, UpdateFlags};

/// How an entry's read-modify-write operations reach the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Atomicity {
    /// The value's memory is mapped (an array created with `MapFlags::MMAPABLE`): CPU atomics
    /// on the word programs update.
    MappedMemory,
    /// A syscall program run by `BPF_PROG_TEST_RUN` does `cmpxchg`/`atomic_fetch_add` in the
    /// kernel.
    KernelProgram,
}

impl fmt::Display for Atomicity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Atomicity::MappedMemory => "CPU atomics on the mmapped value",
            Atomicity::KernelProgram => "cmpxchg in a syscall program (BPF_PROG_TEST_RUN)",
        })
    }
}

/// An integer map value that [`Entry`] can update atomically: `u32`, `i32`, `u64`, `i64` — the
/// widths of the kernel's atomic instructions.
pub trait Word: Pod + Eq + fmt::Debug + Send + Sync + sealed::Sealed {
    /// Size in bytes: 4 or 8.
    const WIDTH: usize;
    /// The bits, zero-extended.
    fn to_bits(self) -> u64;
    /// From the low `WIDTH` bytes of `bits`.
    fn from_bits(bits: u64) -> Self;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! word {
    ($($t:ty: $unsigned:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Word for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn to_bits(self) -> u64 {
                self as $unsigned as u64
            }
            fn from_bits(bits: u64) -> Self {
                bits as $unsigned as $t
            }
        }
    )*};
}
word!(u32: u32, i32: u32, u64: u64, i64: u64);

type Validator<V> = Arc<dyn Fn(&V) -> Result<(), String> + Send + Sync>;

/// One key of a hash or array map, with its own descriptor of the map (the map lives as long
/// as the entry does). `Send + Sync`: share it between threads by reference or `Arc`.
///
/// ```no_run
/// use bpfkit::maps::{Map, MapFlags, MapSpec, MapType};
/// use bpfkit::refs::Entry;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let counters = Map::create(&MapSpec::new("counters", MapType::Array, 4, 8, 4).flags(MapFlags::MMAPABLE))?;
/// let hits = Entry::<u32, u64>::new(&counters, 2)?.with_validator(|v| if *v <= 1_000_000 { Ok(()) } else { Err(format!("{v} is over the limit")) });
/// hits.set(&10)?;
/// hits.fetch_add(5)?;                                  // atomic against programs adding too
/// assert_eq!(hits.compare_exchange(15, 0)?, Ok(15));   // reset, unless a program got there first
/// assert!(hits.set(&2_000_000).is_err());              // refused before it is written
/// # Ok(()) }
/// ```
pub struct Entry<K: Pod, V: Pod> {
    map: Map,
    key: K,
    /// The mapping and element index, for an mmapable array.
    mapped: Option<(MappedMap, usize)>,
    /// The in-kernel compare-and-swap program, loaded on first use.
    cas: OnceLock<KernelCas>,
    validator: Option<Validator<V>>,
}

impl<K: Pod, V: Pod> fmt::Debug for Entry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry").field("map", &self.map.name()).field("key", &bytemuck::bytes_of(&self.key)).finish()
    }
}

impl<K: Pod, V: Pod> Entry<K, V> {
    /// The entry for `key` of `map` (a hash, LRU hash or array; `K` and `V` must have the map's
    /// key and value sizes).
    pub fn new(map: &Map, key: K) -> Result<Entry<K, V>, RefError> {
        let unsupported = |why: String| RefError::Unsupported { map: map.name().to_string(), what: "an entry", why };
        if !matches!(map.map_type(), MapType::Hash | MapType::LruHash | MapType::Array) {
            return Err(unsupported(format!("a {} map has no single value per key here; entries are for hash, LRU hash and array maps", map.map_type())));
        }
        for (what, got, want) in [("key", std::mem::size_of::<K>(), map.key_size()), ("value", std::mem::size_of::<V>(), map.value_size())] {
            if got != want as usize {
                return Err(MapError::WrongSize { map: map.name().to_string(), what, got, want: want as usize }.into());
            }
        }
        let mapped = if map.map_type() == MapType::Array && map.flags().contains(MapFlags::MMAPABLE) {
            let index = u32::from_ne_bytes(bytemuck::bytes_of(&key).try_into().map_err(|_| unsupported("an array's key is 4 bytes".into()))?);
            Some((map.mmap()?, index as usize))
        } else {
            None
        };
        Ok(Entry { map: dup_map(map)?, key, mapped, cas: OnceLock::new(), validator: None })
    }

    /// Refuse values for which `check` returns an error, before they are written
    /// ([`RefError::Invalid`] with its message).
    pub fn with_validator(mut self, check: impl Fn(&V) -> Result<(), String> + Send + Sync + 'static) -> Entry<K, V> {
        self.validator = Some(Arc::new(check));
        self
    }

    /// The key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The map (this entry's own descriptor of it).
    pub fn map(&self) -> &Map {
        &self.map
    }

    /// The value, or `None` if the key is absent.
    pub fn get(&self) -> Result<Option<V>, RefError> {
        match self.map.lookup(bytemuck::bytes_of(&self.key))? {
            Some(bytes) => Ok(Some(super::decode(self.map.name(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Write `value` (created if absent), after the validator accepts it.
    pub fn set(&self, value: &V) -> Result<(), RefError> {
        self.validate(value)?;
        Ok(self.map.update(bytemuck::bytes_of(&self.key), bytemuck::bytes_of(value), UpdateFlags::Any)?)
    }

    /// Remove the key; `false` if it was absent. (Array elements cannot be removed: EINVAL.)
    pub fn delete(&self) -> Result<bool, RefError> {
        Ok(self.map.delete(bytemuck::bytes_of(&self.key))?)
    }

    /// The value copied under its `bpf_spin_lock` (`BPF_F_LOCK`): never torn by a program
    /// holding the lock. The value's BTF must declare the lock.
    pub fn get_locked(&self) -> Result<Option<V>, RefError> {
        match self.map.lookup_locked(bytemuck::bytes_of(&self.key))? {
            Some(bytes) => Ok(Some(super::decode(self.map.name(), &bytes)?)),
            None => Ok(None),
        }
    }

    /// Write the value under its `bpf_spin_lock` (`BPF_F_LOCK`; the lock word itself is kept).
    /// A read-modify-write of such a value is two calls, not one atomic step.
    pub fn set_locked(&self, value: &V) -> Result<(), RefError> {
        self.validate(value)?;
        Ok(self.map.update(bytemuck::bytes_of(&self.key), bytemuck::bytes_of(value), UpdateFlags::Lock)?)
    }

    fn validate(&self, value: &V) -> Result<(), RefError> {
        match &self.validator {
            Some(check) => check(value).map_err(|reason| RefError::Invalid { map: self.map.name().to_string(), reason }),
            None => Ok(()),
        }
    }
}

impl<K: Pod, W: Word> Entry<K, W> {
    /// Which path the atomic operations take.
    pub fn atomicity(&self) -> Atomicity {
        if self.mapped.is_some() {
            Atomicity::MappedMemory
        } else {
            Atomicity::KernelProgram
        }
    }

    /// Atomically: if the value is `current`, make it `new`. `Ok(Ok(current))` when it was
    /// exchanged, `Ok(Err(actual))` when the value was something else (as
    /// `AtomicU64::compare_exchange`). An absent key counts as 0: exchanging 0 creates it.
    pub fn compare_exchange(&self, current: W, new: W) -> Result<Result<W, W>, RefError> {
        self.validate(&new)?;
        if let Some((mem, index)) = &self.mapped {
            return Ok(mapped_op(mem, *index, |a| a.compare_exchange(current.to_bits(), new.to_bits()))?.map(W::from_bits).map_err(W::from_bits));
        }
        loop {
            let r = self.kernel_cas()?.run(bytemuck::bytes_of(&self.key), 0, current.to_bits(), new.to_bits())?;
            if r.found {
                let old = W::from_bits(r.old);
                return Ok(if old == current { Ok(old) } else { Err(old) });
            }
            if current.to_bits() != 0 {
                return Ok(Err(W::from_bits(0)));
            }
            if self.create(new)? {
                return Ok(Ok(current));
            } // Created by someone else meanwhile: compare against theirs.
        }
    }

    /// Atomically add `n` (wrapping); returns the value before. An absent key counts as 0.
    /// With a validator, this is a compare-and-swap loop so that the sum is checked first.
    pub fn fetch_add(&self, n: W) -> Result<W, RefError> {
        if self.validator.is_some() {
            return self.update(|v| W::from_bits(v.to_bits().wrapping_add(n.to_bits()))).map(|(old, _)| old);
        }
        if let Some((mem, index)) = &self.mapped {
            return Ok(W::from_bits(mapped_op(mem, *index, |a| Ok::<u64, u64>(a.fetch_add(n.to_bits())))?.unwrap_or_default()));
        }
        loop {
            let r = self.kernel_cas()?.run(bytemuck::bytes_of(&self.key), 1, 0, n.to_bits())?;
            if r.found {
                return Ok(W::from_bits(r.old));
            }
            if self.create(n)? {
                return Ok(W::from_bits(0));
            }
        }
    }

    /// Atomically replace the value `v` with `f(v)`, retrying while programs (or other threads)
    /// change it in between; returns `(old, new)`. `f` may run more than once.
    pub fn update(&self, mut f: impl FnMut(W) -> W) -> Result<(W, W), RefError> {
        let mut current = self.load()?;
        loop {
            let new = f(current);
            match self.compare_exchange(current, new)? {
                Ok(old) => return Ok((old, new)),
                Err(actual) => current = actual,
            }
        }
    }

    /// The value (0 if absent), read atomically.
    pub fn load(&self) -> Result<W, RefError> {
        if let Some((mem, index)) = &self.mapped {
            return Ok(W::from_bits(mapped_op(mem, *index, |a| Ok::<u64, u64>(a.load()))?.unwrap_or_default()));
        }
        Ok(self.get()?.unwrap_or(W::from_bits(0)))
    }

    /// Create the absent key with `value`; `false` if it exists after all (BPF_NOEXIST).
    fn create(&self, value: W) -> Result<bool, RefError> {
        match self.map.update(bytemuck::bytes_of(&self.key), bytemuck::bytes_of(&value), UpdateFlags::NoExist) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn kernel_cas(&self) -> Result<&KernelCas, RefError> {
        if let Some(cas) = self.cas.get() {
            return Ok(cas);
        }
        let loaded = KernelCas::load(&self.map, W::WIDTH)?;
        Ok(self.cas.get_or_init(|| loaded))
    }
}

/// A word of the mapping, as the operations need it (4- or 8-byte elements).
enum MappedWord<'a> {
    U32(&'a std::sync::atomic::AtomicU32),
    U64(&'a std::sync::atomic::AtomicU64),
}

impl MappedWord<'_> {
    const ORDER: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;
    fn compare_exchange(&self, current: u64, new: u64) -> Result<u64, u64> {
        match self {
            MappedWord::U32(a) => a.compare_exchange(current as u32, new as u32, Self::ORDER, Self::ORDER).map(u64::from).map_err(u64::from),
            MappedWord::U64(a) => a.compare_exchange(current, new, Self::ORDER, Self::ORDER),
        }
    }
    fn fetch_add(&self, n: u64) -> u64 {
        match self {
            MappedWord::U32(a) => a.fetch_add(n as u32, Self::ORDER).into(),
            MappedWord::U64(a) => a.fetch_add(n, Self::ORDER),
        }
    }
    fn load(&self) -> u64 {
        match self {
            MappedWord::U32(a) => a.load(Self::ORDER).into(),
            MappedWord::U64(a) => a.load(Self::ORDER),
        }
    }
}

fn mapped_op(mem: &MappedMap, index: usize, op: impl FnOnce(&MappedWord<'_>) -> Result<u64, u64>) -> Result<Result<u64, u64>, RefError> {
    let word = match mem.value_size() {
        4 => MappedWord::U32(mem.atomic_u32(index)?),
        _ => MappedWord::U64(mem.atomic_u64(index)?),
    };
    Ok(op(&word))
}
