//! The one syscall funnel: every bpf(2) call goes through [`bpf`]. All `unsafe` in bpfkit
//! lives in this module, each block with a `// SAFETY:` line. Attribute structs mirror the
//! kernel's `union bpf_attr` members (`include/uapi/linux/bpf.h`) field for field.

mod attr;

pub use attr::*;

use std::ffi::c_void;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// bpf(2) command numbers (`enum bpf_cmd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Cmd {
    MapCreate = 0,
    MapLookupElem = 1,
    MapUpdateElem = 2,
    MapDeleteElem = 3,
    MapGetNextKey = 4,
    ProgLoad = 5,
    ObjPin = 6,
    ObjGet = 7,
    ProgTestRun = 10,
    ObjGetInfoByFd = 15,
}

/// An errno from a syscall, with the operation and object it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct SysError {
    /// What was attempted, naming the object: `map_create(hash "counts", key 4, value 8)`.
    pub op: String,
    #[source]
    pub source: io::Error,
}

impl SysError {
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Issue bpf(2) with `attr` (a `#[repr(C)]` struct from [`attr`]). Returns the non-negative result.
pub fn bpf<T: BpfAttr>(cmd: Cmd, attr: &mut T) -> io::Result<i64> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] struct of `size_of::<T>()` bytes whose
    // layout matches the kernel's bpf_attr member for `cmd`; every pointer inside it was set by the
    // caller to memory that outlives this call. The kernel reads/writes at most `size` bytes.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd as u32 as libc::c_long, attr as *mut T as *mut c_void, std::mem::size_of::<T>() as libc::c_long)
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// bpf(2) for commands that return a new file descriptor.
pub fn bpf_fd<T: BpfAttr>(cmd: Cmd, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)? as RawFd;
    // SAFETY: the kernel just returned `fd` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pointer as the kernel's `__aligned_u64` fields take it.
pub fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// Copy a name into a fixed-size, NUL-terminated kernel name field (truncating at 15 bytes).
pub fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in name.bytes().filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.').take(15).enumerate() {
        out[i] = b;
    }
    out
}

/// The number of open file descriptors of this process (for leak checks).
pub fn open_fd_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`), which per-CPU maps are sized by.
pub fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for part in s.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, s.clone()))?,
            b.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, s.clone()))?,
        );
        n += b - a + 1;
    }
    Ok(n)
}
