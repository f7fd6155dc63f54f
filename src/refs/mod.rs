//! References to kernel state that behave like Rust's own: an [`Entry`] is one map key you can
//! read, write and update atomically; a [`RingStream`] or [`PopStream`] is a blocking iterator
//! over a ring buffer or a queue/stack map, with timeouts; a [`Watch`] blocks until a key
//! appears or its value changes; [`channel`] makes a `Sender`/`Receiver` pair over a queue
//! (FIFO) or stack (LIFO) map that BPF programs can use from the other side.
//!
//! Each holds its own descriptor of the map (a `dup`), so it keeps the map alive however long
//! it lives and closes that descriptor when dropped; nothing blocks without a bound unless the
//! caller asks for it (`recv`, as opposed to `recv_timeout`).
//!
//! # How atomic is an [`Entry`]?
//! A BPF program updates a counter with an atomic instruction (`lock *(u64 *)(r0 + 0) += r1`,
//! `cmpxchg`). User space reads and writes map values with `bpf(2)`, which copies the whole
//! value: a lookup followed by an update is **not** atomic — a program's increment between the
//! two is lost. `Entry` therefore does read-modify-write on integer values one of two ways, and
//! [`Entry::atomicity`] says which:
//!
//! | map | path | atomic against programs? |
//! |---|---|---|
//! | array created with `MapFlags::MMAPABLE` | the value's memory is mapped into this process; `compare_exchange`/`fetch_add` are CPU atomics on the very word programs update | yes |
//! | any other hash or array | a `BPF_PROG_TYPE_SYSCALL` program, run with `BPF_PROG_TEST_RUN`, does the `cmpxchg` or `atomic_fetch_add` in the kernel on the element's memory | yes |
//! | values with a `bpf_spin_lock` | `get_locked`/`set_locked` (`BPF_F_LOCK`) give whole-value snapshots and writes, never torn; a read-modify-write of such a value is two calls | single operations only |
//! | per-CPU maps, anything else | refused with [`RefError::Unsupported`] | — |
//!
//! `get`/`set` are plain lookups and updates on every path (each is atomic as a whole value
//! for values up to 8 bytes; larger values can be seen half-written by a concurrent program
//! unless it uses a spin lock). A validator ([`Entry::with_validator`]) refuses values before
//! they are written, on every path.

mod channel;
mod entry;
mod kernel_cas;
mod stream;
mod watch;

use std::time::{Duration, Instant};

pub use channel::{channel, Receiver, Sender};
pub use entry::{Atomicity, Entry, Word};
#[cfg(feature = "tokio")]
pub use stream::AsyncRingStream;
pub use stream::{PopStream, RingStream};
pub use watch::{BytesWatch, Watch};

use crate::events::EventError;
use crate::maps::MapError;
use crate::prog::LoadError;
use crate::sys::SysError;

/// Errors of entries, streams, watches and channels: each names its map.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// A map operation failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// Loading the in-kernel compare-and-swap program failed (boxed: a load error carries the
    /// verifier's log, and every `Result` of this module would otherwise be as large).
    #[error(transparent)]
    Load(Box<LoadError>),
    /// Reading a ring buffer failed.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A system call failed (running the compare-and-swap program, mapping memory).
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The entry's validator refused the value; nothing was written.
    #[error("map \"{map}\": the validator refused the value: {reason}")]
    Invalid {
        /// The map's name.
        map: String,
        /// What the validator said.
        reason: String,
    },
    /// Nothing arrived (or changed) within the timeout.
    #[error("map \"{map}\": nothing within {:.1} ms", waited.as_secs_f64() * 1e3)]
    Timeout {
        /// The map's name.
        map: String,
        /// How long the call waited.
        waited: Duration,
    },
    /// A queue or stack map is full (the kernel said E2BIG): `max_entries` values wait in it.
    #[error("map \"{map}\" is full ({max_entries} entries)")]
    Full {
        /// The map's name.
        map: String,
        /// Its capacity.
        max_entries: u32,
    },
    /// A queue or stack map is empty (the kernel said ENOENT).
    #[error("map \"{map}\" is empty")]
    Empty {
        /// The map's name.
        map: String,
    },
    /// A record or value does not have the size of the Rust type it is read as.
    #[error("map \"{map}\": a {got}-byte record cannot be read as a {want}-byte value")]
    Size {
        /// The map's name.
        map: String,
        /// The record's size.
        got: usize,
        /// The type's size.
        want: usize,
    },
    /// The map cannot back this kind of reference; `why` says what would.
    #[error("map \"{map}\": {what} is not supported: {why}")]
    Unsupported {
        /// The map's name.
        map: String,
        /// The operation or reference asked for.
        what: &'static str,
        /// Why not, and what would work.
        why: String,
    },
}

crate::error::errno_from_sources!(RefError);

impl From<LoadError> for RefError {
    fn from(e: LoadError) -> RefError {
        RefError::Load(Box::new(e))
    }
}

/// How the polling waits (queue and stack maps, watches) wait: the kernel has no notification
/// for a map element appearing or changing, so they look, sleep, and look again — 50 µs at
/// first, doubling up to 20 ms — until the deadline.
pub(crate) struct Backoff {
    deadline: Option<Instant>,
    started: Instant,
    sleep: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_micros(50);
    const MAX: Duration = Duration::from_millis(20);

    /// Waits up to `timeout` (`None`: without end).
    pub(crate) fn new(timeout: Option<Duration>) -> Backoff {
        let started = Instant::now();
        Backoff { deadline: timeout.map(|t| started + t), started, sleep: Backoff::FIRST }
    }

    /// Sleep before the next look; `false` once the deadline has passed (no sleep then).
    pub(crate) fn wait(&mut self) -> bool {
        let now = Instant::now();
        let mut sleep = self.sleep;
        if let Some(deadline) = self.deadline {
            if now >= deadline {
                return false;
            }
            sleep = sleep.min(deadline - now);
        }
        std::thread::sleep(sleep);
        self.sleep = (self.sleep * 2).min(Backoff::MAX);
        true
    }

    pub(crate) fn timeout(&self, map: &str) -> RefError {
        RefError::Timeout { map: map.to_string(), waited: self.started.elapsed() }
    }
}

/// A `T` from a record or value of exactly its size.
pub(crate) fn decode<T: bytemuck::Pod>(map: &str, bytes: &[u8]) -> Result<T, RefError> {
    if bytes.len() != std::mem::size_of::<T>() {
        return Err(RefError::Size { map: map.to_string(), got: bytes.len(), want: std::mem::size_of::<T>() });
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

/// The map's own descriptor, for a reference that must keep the map alive.
pub(crate) fn dup_map(map: &crate::maps::Map) -> Result<crate::maps::Map, RefError> {
    let fd = crate::sys::dup(std::os::fd::AsFd::as_fd(map), &map.describe())?;
    Ok(crate::maps::Map::from_fd(fd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_honours_its_deadline() {
        let started = Instant::now();
        let mut b = Backoff::new(Some(Duration::from_millis(30)));
        let mut looks = 0;
        while b.wait() {
            looks += 1;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(30) && took < Duration::from_millis(80), "{took:?}");
        assert!(looks >= 4, "it looks often at first: {looks}");
        assert!(matches!(b.timeout("m"), RefError::Timeout { .. }));
    }

    #[test]
    fn decode_checks_the_size() {
        assert_eq!(decode::<u32>("m", &7u32.to_ne_bytes()).unwrap(), 7);
        assert!(matches!(decode::<u64>("m", &[0; 4]), Err(RefError::Size { got: 4, want: 8, .. })));
    }
}
