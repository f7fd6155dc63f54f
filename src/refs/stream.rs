//! Streams of values from the kernel: [`RingStream`] over a ring buffer's records (woken by the
//! kernel through epoll), [`PopStream`] over a queue or stack map's pops (polled with backoff:
//! these maps have no notification), and, with the `tokio` feature, [`AsyncRingStream`], a
//! `futures_core::Stream`. Each decodes records into a `Pod` type of exactly their size.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{decode, dup_map, Backoff, RefError};
use crate::events::RingBuf;
use crate::maps::{Map, MapType};

/// A blocking iterator over a ring buffer's records, each decoded as a `T`.
///
/// ```no_run
/// # use bpfkit::maps::{Map, MapSpec, MapType};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let events = Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, 4096))?;
/// use bpfkit::refs::RingStream;
/// use std::time::Duration;
/// let mut pids = RingStream::<u32>::new(&events)?;
/// let first = pids.recv_timeout(Duration::from_secs(1))?;      // RefError::Timeout if none came
/// for pid in pids.by_ref().take(10) { println!("{}", pid?); }   // blocks for each
/// # Ok(()) }
/// ```
pub struct RingStream<T: Pod> {
    ring: RingBuf,
    pending: VecDeque<Result<T, RefError>>,
    name: String,
}

impl<T: Pod> RingStream<T> {
    /// A stream over `map` (a ring buffer) from its current position; holds its own
    /// descriptor of the map.
    pub fn new(map: &Map) -> Result<RingStream<T>, RefError> {
        Ok(RingStream { ring: RingBuf::new(map)?, pending: VecDeque::new(), name: map.name().to_string() })
    }

    /// The next record; waits as long as it takes.
    pub fn recv(&mut self) -> Result<T, RefError> {
        self.next_within(None)
    }

    /// The next record, or [`RefError::Timeout`] when none arrives within `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RefError> {
        self.next_within(Some(timeout))
    }

    /// The next record if one is available now.
    pub fn try_recv(&mut self) -> Result<Option<T>, RefError> {
        if self.pending.is_empty() {
            self.take_available();
        }
        self.pending.pop_front().transpose()
    }

    /// The records arriving until none has come for `idle` (then the iterator ends).
    pub fn until_idle(&mut self, idle: Duration) -> impl Iterator<Item = Result<T, RefError>> + '_ {
        std::iter::from_fn(move || match self.recv_timeout(idle) {
            Err(RefError::Timeout { .. }) => None,
            other => Some(other),
        })
    }

    fn take_available(&mut self) {
        let name = &self.name;
        let pending = &mut self.pending;
        self.ring.drain(|r| pending.push_back(decode(name, r)));
    }

    fn next_within(&mut self, timeout: Option<Duration>) -> Result<T, RefError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(next) = self.pending.pop_front() {
                return next;
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return Err(RefError::Timeout { map: self.name.clone(), waited: timeout.unwrap_or_default() }),
                },
                None => None,
            };
            let (name, pending) = (&self.name, &mut self.pending);
            self.ring.poll(left, |r| pending.push_back(decode(name, r)))?;
        }
    }
}

impl<T: Pod> Iterator for RingStream<T> {
    type Item = Result<T, RefError>;
    /// The next record, waiting as long as it takes (the iterator never ends by itself; see
    /// [`RingStream::until_idle`]).
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.recv())
    }
}

/// A blocking iterator over a queue (FIFO) or stack (LIFO) map's values, popped one at a time.
/// The kernel cannot signal a push to user space, so waiting polls with backoff (50 µs at first,
/// up to 20 ms between looks).
pub struct PopStream<T: Pod> {
    map: Map,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> PopStream<T> {
    /// A stream popping `map` (a queue or stack whose value size is `T`'s); holds its own
    /// descriptor of the map.
    pub fn new(map: &Map) -> Result<PopStream<T>, RefError> {
        check_queue_or_stack::<T>(map, "a pop stream")?;
        Ok(PopStream { map: dup_map(map)?, _t: PhantomData })
    }

    /// The next value if there is one now ([`RefError::Empty`] otherwise).
    pub fn try_recv(&self) -> Result<T, RefError> {
        match self.map.pop()? {
            Some(bytes) => decode(self.map.name(), &bytes),
            None => Err(RefError::Empty { map: self.map.name().to_string() }),
        }
    }

    /// The next value, waiting up to `timeout` ([`RefError::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RefError> {
        self.wait(Some(timeout))
    }

    /// The next value, waiting as long as it takes.
    pub fn recv(&self) -> Result<T, RefError> {
        self.wait(None)
    }

    /// The values arriving until none has come for `idle` (then the iterator ends).
    pub fn until_idle(&self, idle: Duration) -> impl Iterator<Item = Result<T, RefError>> + '_ {
        std::iter::from_fn(move || match self.recv_timeout(idle) {
            Err(RefError::Timeout { .. }) => None,
            other => Some(other),
        })
    }

    /// The next value without removing it ([`RefError::Empty`] when there is none).
    pub fn peek(&self) -> Result<T, RefError> {
        match self.map.peek()? {
            Some(bytes) => decode(self.map.name(), &bytes),
            None => Err(RefError::Empty { map: self.map.name().to_string() }),
        }
    }

    fn wait(&self, timeout: Option<Duration>) -> Result<T, RefError> {
        let mut backoff = Backoff::new(timeout);
        loop {
            match self.try_recv() {
                Err(RefError::Empty { .. }) if backoff.wait() => continue,
                Err(RefError::Empty { .. }) => return Err(backoff.timeout(self.map.name())),
                other => return other,
            }
        }
    }
}

impl<T: Pod> Iterator for PopStream<T> {
    type Item = Result<T, RefError>;
    /// The next value, waiting as long as it takes.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.recv())
    }
}

/// `map` is a queue or stack of `T`s, or the error saying what it is.
pub(crate) fn check_queue_or_stack<T>(map: &Map, what: &'static str) -> Result<(), RefError> {
    if !matches!(map.map_type(), MapType::Queue | MapType::Stack) {
        return Err(RefError::Unsupported { map: map.name().to_string(), what, why: format!("it is a {} map, not a queue or stack", map.map_type()) });
    }
    if map.value_size() as usize != std::mem::size_of::<T>() {
        return Err(RefError::Size { map: map.name().to_string(), got: map.value_size() as usize, want: std::mem::size_of::<T>() });
    }
    Ok(())
}

/// A ring buffer's records as a `futures_core::Stream` of `T`s (feature `tokio`; the task
/// sleeps on tokio's reactor until the kernel signals records).
#[cfg(feature = "tokio")]
pub struct AsyncRingStream<T: Pod> {
    ring: crate::events::AsyncRingBuf,
    pending: VecDeque<Result<T, RefError>>,
    name: String,
}

#[cfg(feature = "tokio")]
impl<T: Pod> AsyncRingStream<T> {
    /// A stream over `map` (a ring buffer), registered with the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled (as `AsyncRingBuf::new`).
    pub fn new(map: &Map) -> Result<AsyncRingStream<T>, RefError> {
        let ring = crate::events::AsyncRingBuf::new(RingBuf::new(map)?)?;
        Ok(AsyncRingStream { ring, pending: VecDeque::new(), name: map.name().to_string() })
    }
}

// Nothing is ever pinned in place: the values are copied out of the ring into `pending`.
#[cfg(feature = "tokio")]
impl<T: Pod> Unpin for AsyncRingStream<T> {}

#[cfg(feature = "tokio")]
impl<T: Pod> futures_core::Stream for AsyncRingStream<T> {
    type Item = Result<T, RefError>;
    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(next) = this.pending.pop_front() {
                return std::task::Poll::Ready(Some(next));
            }
            let (name, pending) = (&this.name, &mut this.pending);
            match this.ring.poll_drain(cx, |r| pending.push_back(decode(name, r))) {
                std::task::Poll::Ready(Ok(_)) => continue,
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Some(Err(e.into()))),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}
