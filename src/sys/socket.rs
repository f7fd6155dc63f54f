//! Socket options around BPF: a socket filter attached and detached (`SO_ATTACH_BPF`,
//! `SO_DETACH_BPF`), and a socket's cookie (`SO_COOKIE`, what sockmaps report).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub(super) fn setsockopt_int(sock: BorrowedFd<'_>, level: i32, opt: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live int of the size passed.
    let ret = unsafe {
        libc::setsockopt(sock.as_raw_fd(), level, opt, &value as *const i32 as *const libc::c_void, std::mem::size_of::<i32>() as libc::socklen_t)
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_ATTACH_BPF`: run socket filter `prog` on what `sock` receives (replacing any filter).
pub fn socket_attach_bpf(sock: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_ATTACH_BPF, prog.as_raw_fd())
}

/// `SO_DETACH_BPF`: remove the socket's filter.
pub fn socket_detach_bpf(sock: BorrowedFd<'_>) -> io::Result<()> {
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_DETACH_BPF, 0)
}

/// The socket's cookie (`SO_COOKIE`): what sockmaps and reuseport arrays return for it.
pub fn socket_cookie(sock: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are live and correctly sized for SO_COOKIE's u64 result.
    let ret = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE, &mut cookie as *mut u64 as *mut libc::c_void, &mut len)
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

