//! [`Poller`]: one epoll wait over several ring buffers, draining whichever have records.

use std::os::fd::AsFd;
use std::time::Duration;

use super::{EventError, RingBuf};
use crate::sys::{Epoll, SysError};

/// Waits on several [`RingBuf`]s at once.
pub struct Poller {
    epoll: Epoll,
    rings: Vec<RingBuf>,
}

impl Poller {
    /// A poller with no ring buffers yet (creates its epoll instance).
    pub fn new() -> Result<Poller, EventError> {
        Ok(Poller { epoll: Epoll::new().map_err(|source| SysError::new("epoll_create1".into(), source))?, rings: Vec::new() })
    }

    /// Add a ring; its index (the order of `add` calls) identifies it in callbacks.
    pub fn add(&mut self, ring: RingBuf) -> Result<usize, EventError> {
        let index = self.rings.len();
        self.epoll
            .add(ring.as_fd(), index as u64)
            .map_err(|source| SysError::new(format!("epoll_ctl(ringbuf \"{}\")", ring.name()), source))?;
        self.rings.push(ring);
        Ok(index)
    }

    /// Drain every ring that has records now, calling `f(ring index, record)`.
    pub fn drain(&mut self, mut f: impl FnMut(usize, &[u8])) -> usize {
        let mut n = 0;
        for (i, ring) in self.rings.iter_mut().enumerate() {
            n += ring.drain(|r| f(i, r));
        }
        n
    }

    /// Wait up to `timeout` for records in any ring, then drain all of them.
    pub fn poll(&mut self, timeout: Option<Duration>, f: impl FnMut(usize, &[u8])) -> Result<usize, EventError> {
        if self.rings.iter().all(|r| r.pending_bytes() == 0) {
            self.epoll.wait(timeout, self.rings.len()).map_err(|source| SysError::new("epoll_wait(rings)".into(), source))?;
        }
        Ok(self.drain(f))
    }
}
