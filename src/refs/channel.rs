//! [`channel`]: a `Sender`/`Receiver` pair over a queue map (first in, first out) or a stack
//! map (last in, first out). Either end may be a BPF program instead (`bpf_map_push_elem`,
//! `bpf_map_pop_elem`); both ends are `Clone + Send + Sync`, for several producers and consumers
//! across threads. The map's `max_entries` bounds it: a push into a full map is
//! [`RefError::Full`] (the kernel's E2BIG), a pop from an empty one [`RefError::Empty`]
//! (ENOENT); the blocking forms wait by polling with backoff, as the kernel gives user space
//! no notification for these maps.

use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::stream::{check_queue_or_stack, PopStream};
use super::{dup_map, Backoff, RefError};
use crate::maps::{Map, MapType, UpdateFlags};

/// The sending end ([`channel`]).
pub struct Sender<T: Pod> {
    map: Arc<Map>,
    _t: std::marker::PhantomData<fn(T)>,
}

/// The receiving end ([`channel`]).
pub struct Receiver<T: Pod> {
    stream: Arc<PopStream<T>>,
}

impl<T: Pod> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender { map: Arc::clone(&self.map), _t: std::marker::PhantomData }
    }
}

impl<T: Pod> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver { stream: Arc::clone(&self.stream) }
    }
}

/// Both ends of a channel over `map`, a queue (FIFO) or stack (LIFO) whose value size is `T`'s.
/// Each end holds its own descriptor of the map.
///
/// ```no_run
/// use bpfkit::maps::{Map, MapSpec, MapType};
/// use bpfkit::refs::{channel, RefError};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let work = Map::create(&MapSpec::new("work", MapType::Queue, 0, 8, 2))?;
/// let (tx, rx) = channel::<u64>(&work)?;
/// tx.try_send(&1)?;
/// tx.try_send(&2)?;
/// assert!(matches!(tx.try_send(&3), Err(RefError::Full { .. })));
/// assert_eq!((rx.recv()?, rx.recv()?), (1, 2));                 // FIFO
/// assert!(matches!(rx.try_recv(), Err(RefError::Empty { .. })));
/// # Ok(()) }
/// ```
pub fn channel<T: Pod>(map: &Map) -> Result<(Sender<T>, Receiver<T>), RefError> {
    check_queue_or_stack::<T>(map, "a channel")?;
    let sender = Sender { map: Arc::new(dup_map(map)?), _t: std::marker::PhantomData };
    Ok((sender, Receiver { stream: Arc::new(PopStream::new(map)?) }))
}

impl<T: Pod> Sender<T> {
    /// Push `value` now, or [`RefError::Full`].
    pub fn try_send(&self, value: &T) -> Result<(), RefError> {
        match self.map.push(bytemuck::bytes_of(value), UpdateFlags::Any) {
            Ok(()) => Ok(()),
            Err(e) if e.errno() == Some(libc::E2BIG) => Err(RefError::Full { map: self.map.name().to_string(), max_entries: self.map.max_entries() }),
            Err(e) => Err(e.into()),
        }
    }

    /// Push `value`, waiting up to `timeout` for room ([`RefError::Timeout`]).
    pub fn send_timeout(&self, value: &T, timeout: Duration) -> Result<(), RefError> {
        self.send_within(value, Some(timeout))
    }

    /// Push `value`, waiting as long as it takes for room.
    pub fn send(&self, value: &T) -> Result<(), RefError> {
        self.send_within(value, None)
    }

    /// Push `value`; when the map is full, the oldest value (queue) or the bottom one (stack)
    /// is dropped to make room (`BPF_EXIST` on a queue/stack push). Never waits.
    pub fn force_send(&self, value: &T) -> Result<(), RefError> {
        Ok(self.map.push(bytemuck::bytes_of(value), UpdateFlags::Exist)?)
    }

    /// Whether values come out first in, first out (a queue) rather than last in, first out.
    pub fn is_fifo(&self) -> bool {
        self.map.map_type() == MapType::Queue
    }

    fn send_within(&self, value: &T, timeout: Option<Duration>) -> Result<(), RefError> {
        let mut backoff = Backoff::new(timeout);
        loop {
            match self.try_send(value) {
                Err(RefError::Full { .. }) if backoff.wait() => continue,
                Err(RefError::Full { .. }) => return Err(backoff.timeout(self.map.name())),
                other => return other,
            }
        }
    }
}

impl<T: Pod> Receiver<T> {
    /// The next value now, or [`RefError::Empty`].
    pub fn try_recv(&self) -> Result<T, RefError> {
        self.stream.try_recv()
    }

    /// The next value, waiting up to `timeout` ([`RefError::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RefError> {
        self.stream.recv_timeout(timeout)
    }

    /// The next value, waiting as long as it takes.
    pub fn recv(&self) -> Result<T, RefError> {
        self.stream.recv()
    }

    /// The value the next `recv` would return, without removing it ([`RefError::Empty`]).
    pub fn peek(&self) -> Result<T, RefError> {
        self.stream.peek()
    }

    /// The values arriving until none has come for `idle`.
    pub fn until_idle(&self, idle: Duration) -> impl Iterator<Item = Result<T, RefError>> + '_ {
        self.stream.until_idle(idle)
    }
}
