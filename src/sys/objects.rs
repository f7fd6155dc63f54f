//! Object-level commands shared by maps, programs, links and BTF: info by fd, id iteration,
//! fd by id, pinning on bpffs (with the mount checks), run-time stats, and memory mappings of
//! maps, BPF_PROG_ATTACH/DETACH. Safe wrappers; the `unsafe` they need is here, each with a `// SAFETY:` line.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{bpf, bpf_fd, ptr, BpfAttr, Cmd, EnableStatsAttr, GetIdAttr, InfoByFdAttr, ObjPinAttr, ProgAttachAttr};

/// `BPF_FS_MAGIC` from `linux/magic.h`.
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Fill an info struct (`bpf_prog_info`, `bpf_map_info`, …) for `fd` with `BPF_OBJ_GET_INFO_BY_FD`.
/// `prepare` may set pointer fields (e.g. `map_ids`) before the call.
pub fn info_by_fd<T: BpfAttr + Default>(fd: BorrowedFd<'_>, prepare: impl FnOnce(&mut T)) -> io::Result<T> {
    let mut info = T::default();
    prepare(&mut info);
    let mut attr = InfoByFdAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: std::mem::size_of::<T>() as u32, info: ptr(&info as *const T) };
    bpf(Cmd::ObjGetInfoByFd, &mut attr)?;
    Ok(info)
}

/// The id after `start` for one of the `*_GET_NEXT_ID` commands; `None` at the end.
pub fn next_id(cmd: Cmd, start: u32) -> io::Result<Option<u32>> {
    let mut attr = GetIdAttr { start_id: start, ..Default::default() };
    match bpf(cmd, &mut attr) {
        Ok(_) => Ok(Some(attr.next_id)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every id the kernel lists for `cmd` (`ProgGetNextId`, `MapGetNextId`, `BtfGetNextId`, `LinkGetNextId`).
pub fn all_ids(cmd: Cmd) -> io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    let mut cur = 0;
    while let Some(id) = next_id(cmd, cur)? {
        ids.push(id);
        cur = id;
    }
    Ok(ids)
}

/// A new fd for the object with `id` (`ProgGetFdById`, `MapGetFdById`, `BtfGetFdById`, `LinkGetFdById`).
pub fn fd_by_id(cmd: Cmd, id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetIdAttr { start_id: id, ..Default::default() };
    bpf_fd(cmd, &mut attr)
}

/// What kind of BPF object `fd` is (`bpf-map`, `bpf-prog`, `bpf_link`, `btf`), from the
/// anonymous inode's name in `/proc/self/fd`; `None` if it is not a BPF object.
pub fn bpf_object_kind(fd: BorrowedFd<'_>) -> io::Result<Option<String>> {
    let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
    let target = target.to_string_lossy();
    Ok(target.strip_prefix("anon_inode:").map(|k| k.trim_matches(|c| c == '[' || c == ']').to_string()))
}

/// Why a path cannot hold a pin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// The pin's directory `dir` is not on a bpffs; `magic` is the filesystem's `f_type`.
    #[error("{path}: not on a bpffs (its directory {dir} is on a filesystem with magic {magic:#x}); mount one with `mount -t bpf bpf {dir}`")]
    NotBpffs {
        /// The pin path.
        path: PathBuf,
        /// The pin's directory.
        dir: PathBuf,
        /// The directory's filesystem magic (`f_type`).
        magic: i64,
    },
    /// The pin's directory `dir` does not exist.
    #[error("{path}: directory {dir} does not exist")]
    NoDir {
        /// The pin path.
        path: PathBuf,
        /// The missing directory.
        dir: PathBuf,
    },
    /// A system call (`op`: statfs, obj_pin, obj_get or unpin) on `path` failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The call: `statfs`, `obj_pin`, `obj_get` or `unpin`.
        op: &'static str,
        /// The path it was made on.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

impl PinError {
    /// The errno of the failed call (`None` when bpfkit refused the path before any call).
    pub fn errno(&self) -> Option<i32> {
        match self {
            PinError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// The filesystem magic of the filesystem holding `path` (statfs(2)).
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    let c = c_path(path)?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` is writable storage for one `statfs`.
    let ret = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it initialised `st`.
    Ok(unsafe { st.assume_init() }.f_type as i64)
}

/// Check that `path`'s directory exists and is on a bpffs.
pub fn check_bpffs(path: &Path) -> Result<(), PinError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    if !dir.is_dir() {
        return Err(PinError::NoDir { path: path.into(), dir });
    }
    let magic = fs_magic(&dir).map_err(|source| PinError::Io { op: "statfs", path: dir.clone(), source })?;
    if magic != BPF_FS_MAGIC {
        return Err(PinError::NotBpffs { path: path.into(), dir, magic });
    }
    Ok(())
}

/// Pin `fd` at `path` (`BPF_OBJ_PIN`), after checking that `path` is on a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), PinError> {
    check_bpffs(path)?;
    let c = c_path(path).map_err(|source| PinError::Io { op: "obj_pin", path: path.into(), source })?;
    let mut attr = ObjPinAttr { pathname: ptr(c.as_ptr()), bpf_fd: fd.as_raw_fd() as u32, ..Default::default() };
    bpf(Cmd::ObjPin, &mut attr).map_err(|source| PinError::Io { op: "obj_pin", path: path.into(), source })?;
    Ok(())
}

/// Open the object pinned at `path` (`BPF_OBJ_GET`).
pub fn obj_get(path: &Path) -> Result<OwnedFd, PinError> {
    let c = c_path(path).map_err(|source| PinError::Io { op: "obj_get", path: path.into(), source })?;
    let mut attr = ObjPinAttr { pathname: ptr(c.as_ptr()), ..Default::default() };
    bpf_fd(Cmd::ObjGet, &mut attr).map_err(|source| match fs_magic(path.parent().unwrap_or(Path::new("/"))) {
        Ok(m) if m != BPF_FS_MAGIC && source.raw_os_error() == Some(libc::EINVAL) => PinError::NotBpffs {
            path: path.into(),
            dir: path.parent().unwrap_or(Path::new("/")).into(),
            magic: m,
        },
        _ => PinError::Io { op: "obj_get", path: path.into(), source },
    })
}

/// Remove a pin: pins are files on bpffs, so this is unlink(2) after the bpffs check.
pub fn unpin(path: &Path) -> Result<(), PinError> {
    check_bpffs(path)?;
    std::fs::remove_file(path).map_err(|source| PinError::Io { op: "unpin", path: path.into(), source })
}

/// Mount a bpffs at `dir` unless one is mounted there already. Returns whether it mounted.
pub fn mount_bpffs(dir: &Path) -> io::Result<bool> {
    if fs_magic(dir)? == BPF_FS_MAGIC {
        return Ok(false);
    }
    let target = c_path(dir)?;
    let fstype = c"bpf";
    // SAFETY: all three strings are NUL-terminated and outlive the call; no data argument.
    let ret = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Unmount what is mounted at `dir` (lazily, so open pins do not block it).
pub fn unmount(dir: &Path) -> io::Result<()> {
    let target = c_path(dir)?;
    // SAFETY: `target` is a NUL-terminated path that outlives the call.
    let ret = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Turn on run-time statistics (`BPF_ENABLE_STATS`, `BPF_STATS_RUN_TIME`) while the fd is open.
pub fn enable_run_time_stats() -> io::Result<OwnedFd> {
    let mut attr = EnableStatsAttr { stats_type: 0 };
    bpf_fd(Cmd::EnableStats, &mut attr)
}

/// A shared, writable mapping of a map's memory (mmapable arrays, arenas, ring buffers).
pub fn mmap_shared(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<memmap2::MmapMut> {
    // SAFETY: the mapping is of a BPF map, not of a file another process can truncate; the kernel
    // keeps the pages alive while mapped. Concurrent writes by BPF programs are the point of
    // such maps; bpfkit only reads and writes plain bytes through the mapping.
    unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map_mut(&fd.as_fd()) }
}

/// A shared, read-only mapping (the ring buffer's producer pages and data area).
pub fn mmap_shared_ro(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<memmap2::Mmap> {
    // SAFETY: as for `mmap_shared`; read-only pages the kernel writes concurrently, read as bytes.
    unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(&fd.as_fd()) }
}

/// The page size, which map memory layouts are built from.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// `BPF_PROG_ATTACH` of `prog` to `target` (a cgroup, a sockmap, a netns …) as `attach_type`.
pub fn prog_attach(prog: BorrowedFd<'_>, target: BorrowedFd<'_>, attach_type: u32, flags: u32) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: target.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        ..Default::default()
    };
    bpf(Cmd::ProgAttach, &mut attr).map(|_| ())
}

/// `BPF_PROG_DETACH` of `prog` from `target`.
pub fn prog_detach(prog: BorrowedFd<'_>, target: BorrowedFd<'_>, attach_type: u32) -> io::Result<()> {
    let mut attr = ProgAttachAttr { target_fd: target.as_raw_fd() as u32, attach_bpf_fd: prog.as_raw_fd() as u32, attach_type, ..Default::default() };
    bpf(Cmd::ProgDetach, &mut attr).map(|_| ())
}
