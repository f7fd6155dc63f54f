//! A [`RingBuf`] awaited on tokio's reactor (feature `tokio`).
//!
//! The ring's map fd is registered with tokio (edge-triggered epoll). The kernel wakes the fd's
//! wait queue when a committed record is the first one the consumer has not read
//! (`bpf_ringbuf_commit`: `cons_pos == rec_pos`, unless the program passed
//! `BPF_RB_NO_WAKEUP`). So after reading every available record, the consumer position equals
//! the next record's position, and that record's commit wakes the fd again: clearing tokio's
//! readiness once a drain finds no record (the ring empty, or its first record still being
//! written) loses no wakeup. A wakeup that arrives during the drain carries a newer readiness
//! tick than the guard's, and tokio keeps it.

use std::os::fd::{AsFd, AsRawFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{EventError, RingBuf};
use crate::sys::SysError;

/// The registered object: the ring, whose map fd it owns for as long as it lives.
struct Registered(RingBuf);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A ring buffer reader whose waits are `async`: [`readable_drain`](Self::readable_drain)
/// and [`next_batch`](Self::next_batch) suspend the task until the kernel signals records,
/// instead of blocking a thread in `epoll_wait` as [`RingBuf::poll`] does.
pub struct AsyncRingBuf {
    fd: AsyncFd<Registered>,
}

impl AsyncRingBuf {
    /// Register `ring` with the current tokio runtime's reactor.
    ///
    /// # Panics
    /// Outside a tokio runtime, or in one built without I/O (`Builder::enable_io`).
    pub fn new(ring: RingBuf) -> Result<AsyncRingBuf, EventError> {
        let op = format!("epoll_ctl(ringbuf \"{}\", tokio reactor)", ring.name());
        // `AsyncFd::with_interest` is deprecated since tokio 1.51.6/1.53.3 because an arbitrary
        // `T: AsRawFd` may close or swap its fd while registered; its replacement is `unsafe`.
        // Here the contract of `AsyncFd::register_with_interest` holds: `Registered` owns the
        // map fd (the `OwnedFd` inside `RingBuf`), which stays open until the `AsyncFd` is
        // dropped or `into_inner` returns it, and `as_raw_fd` always returns that same fd; this
        // type never hands out `&mut RingBuf`, so it cannot be swapped for another ring.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(Registered(ring), Interest::READABLE).map_err(|source| EventError::Sys(SysError::new(op, source)))?;
        Ok(AsyncRingBuf { fd })
    }

    /// Wait until at least one record is available, then call `f` on every available record in
    /// order; returns how many were read (at least 1).
    ///
    /// Cancel safe: dropped while waiting, it has consumed nothing.
    pub async fn readable_drain(&mut self, mut f: impl FnMut(&[u8])) -> Result<usize, EventError> {
        loop {
            let mut guard = match self.fd.readable_mut().await {
                Ok(guard) => guard,
                Err(source) => return Err(self.wait_err(source)),
            };
            let n = guard.get_inner_mut().0.drain(&mut f);
            // `drain` stops only where no record can be read: see the module comment.
            guard.clear_ready();
            if n > 0 {
                return Ok(n);
            }
        }
    }

    /// Wait until at least one record is available and return every available record, copied.
    pub async fn next_batch(&mut self) -> Result<Vec<Vec<u8>>, EventError> {
        let mut out = Vec::new();
        self.readable_drain(|r| out.push(r.to_vec())).await?;
        Ok(out)
    }

    /// The polling form of [`readable_drain`](Self::readable_drain), for `Stream`
    /// implementations: `Ready` with the number of records read (at least 1), or `Pending` with
    /// the task registered for the next wake-up.
    pub fn poll_drain(&mut self, cx: &mut std::task::Context<'_>, mut f: impl FnMut(&[u8])) -> std::task::Poll<Result<usize, EventError>> {
        loop {
            let mut guard = match self.fd.poll_read_ready_mut(cx) {
                std::task::Poll::Ready(Ok(guard)) => guard,
                std::task::Poll::Ready(Err(source)) => return std::task::Poll::Ready(Err(self.wait_err(source))),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            };
            let n = guard.get_inner_mut().0.drain(&mut f);
            guard.clear_ready();
            if n > 0 {
                return std::task::Poll::Ready(Ok(n));
            }
        }
    }

    /// Read the records available now without waiting (see [`RingBuf::drain`]).
    pub fn try_drain(&mut self, f: impl FnMut(&[u8])) -> usize {
        self.fd.get_mut().0.drain(f)
    }

    /// The ring (name, pending bytes).
    pub fn get_ref(&self) -> &RingBuf {
        &self.fd.get_ref().0
    }

    /// Deregister from the reactor and return the ring.
    pub fn into_inner(self) -> RingBuf {
        self.fd.into_inner().0
    }

    fn wait_err(&self, source: std::io::Error) -> EventError {
        EventError::Sys(SysError::new(format!("wait for ringbuf \"{}\" (tokio reactor)", self.get_ref().name()), source))
    }
}
