//! Event streams between programs and user space: [`RingBuf`] (kernel → user, zero-copy
//! records), [`PerfBuffer`] (per-CPU perf rings with lost-record counts), [`UserRingBuf`]
//! (user → kernel), [`TracePipe`] (`bpf_trace_printk` output), and [`Poller`] (one epoll wait over several ring buffers). With the `tokio`
//! feature, `AsyncRingBuf` awaits a ring's records on tokio's reactor.

#[cfg(feature = "tokio")]
mod async_ringbuf;
mod perf;
mod poller;
mod ringbuf;
mod stacks;
mod trace_pipe;
mod user_ringbuf;

#[cfg(feature = "tokio")]
pub use async_ringbuf::AsyncRingBuf;
pub use perf::{PerfBuffer, PerfBufferOptions};
pub use poller::Poller;
pub use ringbuf::{Record, Records, RingBuf};
pub use stacks::{stack_ips, StackError, StackFrame, Symbolizer};
pub use trace_pipe::TracePipe;
pub use user_ringbuf::UserRingBuf;

use crate::maps::MapError;
use crate::sys::SysError;

/// Errors of event streams.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A bpf(2), mmap(2), epoll or other system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A map operation failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The map is of the wrong type for this stream; `want` is the type it should be.
    #[error("{map} is not a {want} map")]
    WrongMap {
        /// The map's name.
        map: String,
        /// The map type the stream needs.
        want: &'static str,
    },
    /// A user ring buffer has no room for a record of `size` bytes until the program drains it.
    #[error("user ring buffer \"{map}\" has no room for a {size}-byte record (the program has not drained it)")]
    Full {
        /// The map's name.
        map: String,
        /// The record's size in bytes.
        size: usize,
    },
    /// A size argument is invalid; `what` says which and what it must be, `got` is the value given.
    #[error("{what}: {got}")]
    BadSize {
        /// Which size, and what it must be.
        what: &'static str,
        /// The value given.
        got: usize,
    },
}

crate::error::errno_from_sources!(EventError);
