//! Network namespaces: a new one held by an fd ([`NetNs::new`]; it disappears with its
//! interfaces once the last fd, socket and thread in it are gone, so nothing outlives a test
//! even when it fails), and running code inside one ([`NetNs::run`]) on a helper thread:
//! `setns(2)` moves only the calling thread, so the caller stays where it was. Sockets, netlink
//! sockets and bpf_links made on that thread belong to the namespace; processes spawned there
//! start in it too.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use super::netlink::{self, Netlink};

/// A network namespace, kept alive by this fd.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// Create a network namespace with its loopback up.
    pub fn new() -> io::Result<NetNs> {
        on_thread(|| {
            // SAFETY: plain flag argument; affects only this (helper) thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("unshare(CLONE_NEWNET): {e}")));
            }
            let ns = NetNs::current()?;
            let lo = netlink::if_index("lo")?;
            Netlink::open()?.set_up(lo).map_err(io::Error::other)?;
            Ok(ns)
        })
    }

    /// The calling thread's network namespace.
    pub fn current() -> io::Result<NetNs> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// The namespace at `path` (`/proc/PID/ns/net`, `/run/netns/NAME`).
    pub fn open(path: impl AsRef<Path>) -> io::Result<NetNs> {
        let f = std::fs::File::open(path.as_ref()).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.as_ref().display())))?;
        Ok(NetNs { fd: f.into() })
    }

    /// The namespace's inode number (what `/proc/PID/ns/net` links name: `net:[N]`).
    pub fn inode(&self) -> io::Result<u64> {
        let meta = std::fs::File::from(self.fd.try_clone()?).metadata()?;
        Ok(std::os::unix::fs::MetadataExt::ino(&meta))
    }

    /// Run `f` on a thread inside this namespace and return its result (a panic in `f` goes on
    /// in the caller).
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        on_thread(|| {
            setns(self.fd.as_fd())?;
            Ok(f())
        })
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Move the calling thread into network namespace `ns`.
pub fn setns(ns: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain integer arguments; the kernel checks that `ns` is a network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns(CLONE_NEWNET): {e}")));
    }
    Ok(())
}

/// Run `f` on a scoped helper thread, so namespace changes die with the thread.
fn on_thread<R: Send>(f: impl FnOnce() -> io::Result<R> + Send) -> io::Result<R> {
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
