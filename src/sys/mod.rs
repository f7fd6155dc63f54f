//! The one syscall funnel: every bpf(2) call goes through [`bpf`]. All `unsafe` in bpfkit
//! lives in this module, each block with a `// SAFETY:` line. Attribute structs mirror the
//! kernel's `union bpf_attr` members (`include/uapi/linux/bpf.h`) field for field.

mod attr;
mod epoll;
pub mod netlink;
pub mod netns;
mod objects;
mod perf;
mod process;
mod socket;
mod probe;
pub mod shared_mem;
pub mod xsk;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod layout_tests;

pub use attr::*;
pub use epoll::Epoll;
pub use netlink::NetlinkError;
pub use objects::*;
pub use perf::*;
pub use process::*;
pub use socket::*;
pub use probe::*;

use std::ffi::c_void;

use crate::caps::{Capabilities, Capability, MissingCapabilities};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

crate::maps::kernel_enum! {
    /// bpf(2) command numbers (`enum bpf_cmd`) and their names in messages (`map_create`,
    /// `prog_load`, …): all of them, whether bpfkit issues each yet or not (the layout tests
    /// compare the whole list with libbpf-sys's).
    Cmd {
        MapCreate = 0, "map_create";
        MapLookupElem = 1, "map_lookup_elem";
        MapUpdateElem = 2, "map_update_elem";
        MapDeleteElem = 3, "map_delete_elem";
        MapGetNextKey = 4, "map_get_next_key";
        ProgLoad = 5, "prog_load";
        ObjPin = 6, "obj_pin";
        ObjGet = 7, "obj_get";
        ProgAttach = 8, "prog_attach";
        ProgDetach = 9, "prog_detach";
        ProgTestRun = 10, "prog_test_run";
        ProgGetNextId = 11, "prog_get_next_id";
        MapGetNextId = 12, "map_get_next_id";
        ProgGetFdById = 13, "prog_get_fd_by_id";
        MapGetFdById = 14, "map_get_fd_by_id";
        ObjGetInfoByFd = 15, "obj_get_info_by_fd";
        ProgQuery = 16, "prog_query";
        RawTracepointOpen = 17, "raw_tracepoint_open";
        BtfLoad = 18, "btf_load";
        BtfGetFdById = 19, "btf_get_fd_by_id";
        TaskFdQuery = 20, "task_fd_query";
        MapLookupAndDeleteElem = 21, "map_lookup_and_delete_elem";
        MapFreeze = 22, "map_freeze";
        BtfGetNextId = 23, "btf_get_next_id";
        MapLookupBatch = 24, "map_lookup_batch";
        MapLookupAndDeleteBatch = 25, "map_lookup_and_delete_batch";
        MapUpdateBatch = 26, "map_update_batch";
        MapDeleteBatch = 27, "map_delete_batch";
        LinkCreate = 28, "link_create";
        LinkUpdate = 29, "link_update";
        LinkGetFdById = 30, "link_get_fd_by_id";
        LinkGetNextId = 31, "link_get_next_id";
        EnableStats = 32, "enable_stats";
        IterCreate = 33, "iter_create";
        LinkDetach = 34, "link_detach";
        ProgBindMap = 35, "prog_bind_map";
    }
}

/// An errno from a syscall, with the operation and object it concerned. Displays as
/// `map_create(hash "counts", key 4, value 8, max_entries 0): EINVAL (Invalid argument)`.
/// An EPERM explained by a missing capability says so: `prog_load(xdp "p"): EPERM (Operation not
/// permitted) — needs CAP_BPF and CAP_NET_ADMIN; this process has neither`.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {}", self.cause())]
#[non_exhaustive]
pub struct SysError {
    /// What was attempted, naming the object: `map_create(hash "counts", key 4, value 8)`.
    pub op: String,
    /// The errno of the failed call.
    #[source]
    pub source: io::Error,
    /// For an EPERM: the capabilities the operation needs that this process lacks (see
    /// [`SysError::needing`]); `None` when it lacks none, or the error is not EPERM.
    pub missing_capabilities: Option<MissingCapabilities>,
}

/// The symbolic name of an errno (`EINVAL`), as kernel sources and logs say it; the one table
/// of them in bpfkit. Kernel-internal errnos libc does not know (ENOTSUPP 524) have theirs too.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::ELOOP => "ELOOP",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPROTO => "EPROTO",
        524 => "ENOTSUPP",
        _ => return None,
    })
}

/// `EINVAL (Invalid argument)`: the errno's name then libc's text (for ENOTSUPP, which libc
/// does not know, what it means for BPF).
pub fn describe_io_error(e: &io::Error) -> String {
    let Some(code) = e.raw_os_error() else { return e.to_string() };
    match (errno_name(code), code) {
        (Some(name), 524) => format!("{name} (operation not supported by the kernel for this object)"),
        (Some(name), _) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{name} ({text})")
        }
        (None, _) => e.to_string(),
    }
}

impl SysError {
    /// `op` failed with `source`.
    pub fn new(op: String, source: io::Error) -> SysError {
        SysError { op, source, missing_capabilities: None }
    }

    /// The operation needs `needed` (each also satisfied by `CAP_SYS_ADMIN`): if the error is
    /// EPERM and this process lacks some of them, the error names them. With all of them
    /// present the EPERM has another cause, and the error does not blame capabilities.
    pub fn needing(mut self, needed: &[Capability]) -> SysError {
        if self.errno() == Some(libc::EPERM) {
            if let Some(have) = Capabilities::current() {
                self.missing_capabilities = MissingCapabilities::of(needed, have);
            }
        }
        self
    }

    /// The errno the call failed with, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// What went wrong without the operation: the errno by name and, when they explain an
    /// EPERM, the missing capabilities (`EPERM (Operation not permitted) — needs CAP_BPF; …`).
    pub fn cause(&self) -> String {
        let caps = self.missing_capabilities.as_ref().map(|m| format!(" — {m}")).unwrap_or_default();
        format!("{}{caps}", describe_io_error(&self.source))
    }
}

/// Issue bpf(2) with `attr` (a `#[repr(C)]` struct from [`attr`]). Returns the non-negative result.
pub fn bpf<T: BpfAttr>(cmd: Cmd, attr: &mut T) -> io::Result<i64> {
    // The seam unit tests put a fake kernel behind (test builds only).
    #[cfg(test)]
    if let Some(answer) = fake::intercept(cmd, attr) {
        return answer;
    }
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] struct of `size_of::<T>()` bytes whose
    // layout matches the kernel's bpf_attr member for `cmd`; every pointer inside it was set by the
    // caller to memory that outlives this call. The kernel reads/writes at most `size` bytes.
    let ret = unsafe {
        libc::syscall(libc::SYS_bpf, cmd.raw() as libc::c_long, attr as *mut T as *mut c_void, std::mem::size_of::<T>() as libc::c_long)
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A second fd of `fd` (to keep a map, program or socket open beside its owner), the failure
/// named as `dup(what)`.
pub fn dup(fd: std::os::fd::BorrowedFd<'_>, what: &str) -> Result<OwnedFd, SysError> {
    fd.try_clone_to_owned().map_err(|source| SysError::new(format!("dup({what})"), source))
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

/// A NUL-terminated kernel buffer (a `char name[16]` field, a verifier or BTF log) as a string,
/// up to its first NUL.
pub fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The number of open file descriptors of this process (for leak checks).
pub fn open_fd_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count())
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`), which per-CPU maps are sized
/// by. Read once and cached: the set is fixed at boot.
pub fn possible_cpus() -> io::Result<usize> {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(n) = CPUS.get() {
        return Ok(*n);
    }
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let n = parse_cpu_list(&s).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse cpu list {s:?}")))?;
    Ok(*CPUS.get_or_init(|| n))
}

/// Count the CPUs in a list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Option<usize> {
    cpu_ids(s).map(|v| v.len())
}

/// The CPU numbers in a list such as `0-3,8,10-11`.
pub fn cpu_ids(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        if b < a || b - a > 1 << 16 {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

/// The online CPUs (`/sys/devices/system/cpu/online`): where per-CPU perf events can be opened.
pub fn online_cpus() -> io::Result<Vec<u32>> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    cpu_ids(&s).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse cpu list {s:?}")))
}
