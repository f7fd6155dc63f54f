//! The process and the filesystems around it: thread ids, pidfds (the keys of task storage),
//! and where tracefs is.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// pidfd_open(2): an fd for process `pid` (the key of task storage maps).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Where tracefs is mounted: `/sys/kernel/tracing`, else the old `/sys/kernel/debug/tracing`;
/// when neither is mounted, tracefs is mounted at `/sys/kernel/tracing` (needs CAP_SYS_ADMIN).
pub fn tracefs_dir() -> io::Result<std::path::PathBuf> {
    const TRACEFS_MAGIC: i64 = 0x7472_6163;
    let primary = std::path::Path::new("/sys/kernel/tracing");
    for dir in [primary, std::path::Path::new("/sys/kernel/debug/tracing")] {
        if super::fs_magic(dir).ok() == Some(TRACEFS_MAGIC) {
            return Ok(dir.to_path_buf());
        }
    }
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: NUL-terminated static strings; no data argument.
    let ret = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if ret != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("tracefs is not mounted and mounting it at /sys/kernel/tracing failed: {e}")));
    }
    Ok(primary.to_path_buf())
}

/// The calling thread's id (what `bpf_get_current_pid_tgid()` returns in its low 32 bits).
pub fn gettid() -> i32 {
    // SAFETY: gettid(2) has no arguments and cannot fail.
    unsafe { libc::gettid() }
}
