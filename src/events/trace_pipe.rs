//! The kernel's trace pipe (`<tracefs>/trace_pipe`), where `bpf_trace_printk` writes: read its
//! lines with a deadline instead of blocking forever. Reading consumes the lines, as it does
//! for every reader of the pipe — so bpfkit's readers take turns: an open `TracePipe` holds an
//! exclusive lock (`bpfkit-trace-pipe.lock` in the temporary directory), and a second one, in
//! this process or another, waits for it. Open the pipe before attaching the programs that
//! print, and one reader never eats another's lines.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::EventError;
use crate::sys::{self, Epoll, SysError};

/// An open trace pipe.
pub struct TracePipe {
    file: File,
    /// Held while open: other bpfkit readers wait (see the module documentation).
    _turn: File,
    epoll: Epoll,
    partial: Vec<u8>,
}

fn err(op: &str) -> impl FnOnce(std::io::Error) -> EventError + '_ {
    move |source| EventError::Sys(SysError::new(op.to_string(), source))
}

impl TracePipe {
    /// Open the trace pipe (mounting tracefs if needed).
    pub fn open() -> Result<TracePipe, EventError> {
        let lock = std::env::temp_dir().join("bpfkit-trace-pipe.lock");
        let turn = sys::lock_file_exclusive(&lock).map_err(|source| EventError::Sys(SysError::new(format!("flock {}", lock.display()), source)))?;
        let dir = sys::tracefs_dir().map_err(err("tracefs"))?;
        let path = dir.join("trace_pipe");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|source| EventError::Sys(SysError::new(format!("open {}", path.display()), source)))?;
        let epoll = Epoll::new().map_err(err("epoll_create1"))?;
        epoll.add(file.as_fd(), 0).map_err(err("epoll_ctl(trace_pipe)"))?;
        Ok(TracePipe { file, _turn: turn, epoll, partial: Vec::new() })
    }

    /// Complete lines that arrive within `timeout` (waiting only while none has arrived).
    pub fn read_lines(&mut self, timeout: Duration) -> Result<Vec<String>, EventError> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=end).collect();
                        lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
                    }
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(err("read trace_pipe")(e)),
            }
            let now = Instant::now();
            if !lines.is_empty() || now >= deadline {
                return Ok(lines);
            }
            self.epoll.wait(Some(deadline - now), 1).map_err(err("epoll_wait(trace_pipe)"))?;
        }
    }
}
