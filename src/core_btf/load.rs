//! Loading BTF into the kernel (`BPF_BTF_LOAD`) through the syscall funnel: [`LoadedBtf`] owns
//! the fd maps and programs refer to. A rejected blob is loaded again with the BTF log on (grown
//! until it fits), and the error carries the log's decisive line(s).

use super::{Btf, BtfBuilder, BtfError};
use crate::sys::{self, BtfInfoRaw, BtfLoadAttr, Cmd, InfoByFdAttr, SysError};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = 16 * 1024 * 1024;

/// BTF the kernel accepted. Dropping it closes the fd (the kernel keeps the BTF while maps or
/// programs use it).
#[derive(Debug)]
pub struct LoadedBtf {
    fd: OwnedFd,
}

impl LoadedBtf {
    /// Load a blob with `BPF_BTF_LOAD`. On rejection the error is [`BtfError::Rejected`] with
    /// the kernel's reason (`btf_load: EINVAL: [2] STRUCT value size=16 vlen=2 …`), or
    /// [`BtfError::Sys`] when the kernel gave no log (EPERM without privileges, say).
    pub fn load(blob: &[u8]) -> Result<LoadedBtf, BtfError> {
        let size = u32::try_from(blob.len())
            .map_err(|_| BtfError::Build(format!("blob of {} bytes exceeds 4 GiB", blob.len())))?;
        let mut log: Vec<u8> = Vec::new();
        let mut log_level = 0;
        loop {
            let mut attr = BtfLoadAttr {
                btf: sys::ptr(blob.as_ptr()),
                btf_size: size,
                btf_log_buf: if log.is_empty() { 0 } else { sys::ptr(log.as_mut_ptr()) },
                btf_log_size: log.len() as u32,
                btf_log_level: log_level,
                ..Default::default()
            };
            let err = match sys::bpf_fd(Cmd::BtfLoad, &mut attr) {
                Ok(fd) => return Ok(LoadedBtf { fd }),
                Err(e) => e,
            };
            let errno = err.raw_os_error();
            if log_level == 0 && errno != Some(libc::EPERM) {
                // Rejected without a log: load again with one, to say why.
                log_level = 1;
                log = vec![0u8; LOG_START];
                continue;
            }
            if errno == Some(libc::ENOSPC) && log_level > 0 && log.len() < LOG_MAX {
                // The log did not fit; the kernel says how much it needed.
                let want = (attr.btf_log_true_size as usize).max(log.len() * 4);
                log = vec![0u8; want.min(LOG_MAX)];
                continue;
            }
            let text = sys::c_name(&log);
            return match decisive_lines(&text) {
                Some(decisive) => Err(BtfError::Rejected { decisive, log: text, source: err }),
                None => Err(SysError::new(format!("btf_load({} bytes)", blob.len()), err).into()),
            };
        }
    }

    /// The fd as `bpf_attr` fields take it (`btf_fd`, `prog_btf_fd`).
    pub(crate) fn attr_fd(&self) -> u32 {
        self.fd.as_raw_fd() as u32
    }

    /// The kernel's id of this BTF object (`bpftool btf show id N`).
    pub fn kernel_id(&self) -> Result<u32, BtfError> {
        let mut info = BtfInfoRaw::default();
        let mut attr = InfoByFdAttr {
            bpf_fd: self.attr_fd(),
            info_len: std::mem::size_of::<BtfInfoRaw>() as u32,
            info: sys::ptr(&mut info as *mut BtfInfoRaw),
        };
        sys::bpf(Cmd::ObjGetInfoByFd, &mut attr)
            .map_err(|source| SysError::new(format!("obj_get_info_by_fd(btf fd {})", self.attr_fd()), source))?;
        Ok(info.id)
    }

    /// Give up ownership of the fd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for LoadedBtf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Btf {
    /// Read back the kernel's BTF object `id` (a map's `btf_id`, as `bpftool btf dump id N`
    /// does): `BPF_BTF_GET_FD_BY_ID`, then `BPF_OBJ_GET_INFO_BY_FD` into a buffer of its size.
    /// For standalone BTF, what maps and programs carry (not a module's split BTF).
    pub fn from_kernel_id(id: u32) -> Result<Btf, BtfError> {
        let op = |what: &str| format!("{what}(btf id {id})");
        let fd = sys::fd_by_id(Cmd::BtfGetFdById, id).map_err(|source| SysError::new(op("btf_get_fd_by_id"), source))?;
        let first: BtfInfoRaw = sys::info_by_fd(fd.as_fd(), |_| {}).map_err(|source| SysError::new(op("obj_get_info_by_fd"), source))?;
        let mut data = vec![0u8; first.btf_size as usize];
        let (at, len) = (sys::ptr(data.as_mut_ptr()), data.len() as u32);
        let info: BtfInfoRaw = sys::info_by_fd(fd.as_fd(), |i: &mut BtfInfoRaw| {
            i.btf = at;
            i.btf_size = len;
        })
        .map_err(|source| SysError::new(op("obj_get_info_by_fd"), source))?;
        // The size can only have been what the first call said (BTF objects are immutable).
        data.truncate(info.btf_size.min(len) as usize);
        Btf::from_bytes(data)
    }
}

impl BtfBuilder {
    /// Encode and load into the kernel ([`LoadedBtf::load`]).
    pub fn load(&self) -> Result<LoadedBtf, BtfError> {
        LoadedBtf::load(&self.encode())
    }
}

/// The kernel's reason from a BTF log: its last non-empty line, prefixed with the `[N] KIND …`
/// line of the type it belongs to when it is an indented member/parameter line.
pub(crate) fn decisive_lines(log: &str) -> Option<String> {
    let mut lines = log.lines().rev().filter(|l| !l.trim().is_empty());
    let last = lines.next()?;
    if last.starts_with('[') || !last.starts_with(char::is_whitespace) {
        return Some(last.trim().to_string());
    }
    match lines.find(|l| l.starts_with('[')) {
        Some(owner) => Some(format!("{}: {}", owner.trim(), last.trim())),
        None => Some(last.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::decisive_lines;

    #[test]
    fn decisive_line_names_the_type_of_a_member_line() {
        let log = "magic: 0xeb9f\n[1] INT int size=4 bits_offset=0 nr_bits=32 encoding=SIGNED\n[2] STRUCT foo size=8 vlen=1\n\ta type_id=9 bits_offset=0 Invalid member\n\n";
        assert_eq!(
            decisive_lines(log).as_deref(),
            Some("[2] STRUCT foo size=8 vlen=1: a type_id=9 bits_offset=0 Invalid member")
        );
        assert_eq!(
            decisive_lines("x\n[3] FUNC f type_id=9 Invalid type_id\n").as_deref(),
            Some("[3] FUNC f type_id=9 Invalid type_id")
        );
        assert_eq!(decisive_lines("\n \n"), None);
    }
}
