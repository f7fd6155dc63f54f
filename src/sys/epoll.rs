//! epoll(7), for waiting on ring buffers and perf buffers: a safe wrapper owning the epoll fd.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An epoll instance. Registered fds are identified by a caller-chosen `u64` token.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes only flags.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        Ok(Epoll { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watch `fd` for readability, reporting `token` when it is ready.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: `ev` is a live epoll_event; both fds are open for the duration of the call.
        let ret = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout` (forever if `None`) and return the tokens of ready fds. An
    /// interrupted wait (EINTR) returns no tokens rather than an error.
    pub fn wait(&self, timeout: Option<Duration>, max: usize) -> io::Result<Vec<u64>> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; max.max(1)];
        let ms = match timeout {
            None => -1,
            Some(d) => d.as_millis().min(i32::MAX as u128) as i32,
        };
        // SAFETY: `events` has room for `events.len()` entries, which is the count passed.
        let n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) { Ok(Vec::new()) } else { Err(e) };
        }
        Ok(events[..n as usize].iter().map(|e| e.u64).collect())
    }
}
