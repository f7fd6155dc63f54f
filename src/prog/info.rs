//! What the kernel knows about loaded programs: info by fd (xlated and JIT sizes, run count and
//! time under `BPF_ENABLE_STATS`, map ids, the xlated instructions), enumeration by id, opening
//! by id or pin, and pinning.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::{LoadError, ProgType, Program};
use crate::insn::Insn;
use crate::sys::{self, Cmd, ProgInfoRaw, SysError};

/// `struct bpf_prog_info`, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgInfo {
    /// `id`: the program's kernel id.
    pub id: u32,
    /// The program type, `None` when bpfkit does not know `raw_type`.
    pub prog_type: Option<ProgType>,
    /// `type`, as the kernel reports it.
    pub raw_type: u32,
    /// `name` (at most 15 bytes).
    pub name: String,
    /// The program's tag (a hash of its instructions), as bpftool prints it.
    pub tag: [u8; 8],
    /// `xlated_len`: size in bytes of the instructions after the verifier's rewrites.
    pub xlated_len: u32,
    /// `jited_len`: size in bytes of the JIT-compiled code (0 without the JIT).
    pub jited_len: u32,
    /// Boot-time nanoseconds at load.
    pub load_time_ns: u64,
    /// `created_by_uid`: the uid of the process that loaded the program.
    pub created_by_uid: u32,
    /// `map_ids`: the ids of the maps the program uses.
    pub map_ids: Vec<u32>,
    /// `btf_id`: the id of the program's BTF object, 0 for none.
    pub btf_id: u32,
    /// `gpl_compatible`: whether the license is GPL-compatible.
    pub gpl_compatible: bool,
    /// `verified_insns`: instructions the verifier processed (kernel 5.16+).
    pub verified_insns: u32,
    /// `attach_btf_id`: the BTF id of the attach target (tracing, LSM, struct_ops, ext).
    pub attach_btf_id: u32,
    /// `attach_btf_obj_id`: the id of the BTF object `attach_btf_id` is in (kernel 5.18+).
    pub attach_btf_obj_id: u32,
    /// Run statistics: `run_cnt`, `run_time_ns` and `recursion_misses`.
    pub stats: RunStats,
}

/// Run statistics (counted only while `BPF_ENABLE_STATS` is on, see [`Program::enable_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// `run_cnt`: how many times the program ran.
    pub run_count: u64,
    /// `run_time_ns`: total time it ran, in nanoseconds.
    pub run_time_ns: u64,
    /// `recursion_misses`: runs skipped because the program was already running on that CPU.
    pub recursion_misses: u64,
}

impl ProgInfo {
    /// The tag as hex, as `bpftool prog` prints it.
    pub fn tag_hex(&self) -> String {
        self.tag.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn info_err(what: String, source: std::io::Error) -> LoadError {
    LoadError::Sys(SysError::new(format!("obj_get_info_by_fd({what})"), source))
}

impl Program {
    /// Adopt an fd of a loaded program, reading its type and name from the kernel.
    pub fn from_fd(fd: OwnedFd) -> Result<Program, LoadError> {
        let kind = sys::bpf_object_kind(fd.as_fd()).map_err(|source| SysError::new("readlink(/proc/self/fd)".into(), source))?;
        if kind.as_deref() != Some("bpf-prog") {
            return Err(LoadError::NotAProgram { what: kind.unwrap_or_else(|| "not a BPF object".into()) });
        }
        let raw: ProgInfoRaw = sys::info_by_fd(fd.as_fd(), |_| {}).map_err(|e| info_err("program fd".into(), e))?;
        let prog_type = ProgType::from_raw(raw.prog_type).ok_or_else(|| LoadError::UnknownType { id: raw.id, raw: raw.prog_type })?;
        Ok(Program { fd, name: sys::c_name(&raw.name), prog_type, log: String::new(), core: Vec::new() })
    }

    /// Open the program with kernel id `id`.
    pub fn from_id(id: u32) -> Result<Program, LoadError> {
        let fd = sys::fd_by_id(Cmd::ProgGetFdById, id).map_err(|source| SysError::new(format!("prog_get_fd_by_id({id})"), source))?;
        Program::from_fd(fd)
    }

    /// Open the program pinned at `path`.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Program, LoadError> {
        Program::from_fd(sys::obj_get(path.as_ref())?)
    }

    /// Ids of every program loaded in the kernel.
    pub fn all_ids() -> Result<Vec<u32>, LoadError> {
        Ok(sys::all_ids(Cmd::ProgGetNextId).map_err(|source| SysError::new("prog_get_next_id".into(), source))?)
    }

    /// Pin at `path` on a bpffs.
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<(), LoadError> {
        Ok(sys::obj_pin(self.fd.as_fd(), path.as_ref())?)
    }

    /// Remove the pin at `path`.
    pub fn unpin(path: impl AsRef<Path>) -> Result<(), LoadError> {
        Ok(sys::unpin(path.as_ref())?)
    }

    /// Turn on run-time statistics for all programs while the returned fd lives.
    pub fn enable_stats() -> Result<OwnedFd, SysError> {
        sys::enable_run_time_stats().map_err(|source| SysError::new("enable_stats(run_time)".into(), source))
    }

    /// What the kernel reports about this program.
    pub fn info(&self) -> Result<ProgInfo, LoadError> {
        let first: ProgInfoRaw = sys::info_by_fd(self.fd.as_fd(), |_| {}).map_err(|e| info_err(self.describe(), e))?;
        let mut map_ids = vec![0u32; first.nr_map_ids as usize];
        let raw = if map_ids.is_empty() {
            first
        } else {
            // A second call with room for the map ids (the count can only shrink in between).
            let n = map_ids.len() as u32;
            let ptr = sys::ptr(map_ids.as_mut_ptr());
            let raw: ProgInfoRaw = sys::info_by_fd(self.fd.as_fd(), |i: &mut ProgInfoRaw| {
                i.nr_map_ids = n;
                i.map_ids = ptr;
            })
            .map_err(|e| info_err(self.describe(), e))?;
            map_ids.truncate(raw.nr_map_ids.min(n) as usize);
            raw
        };
        Ok(ProgInfo {
            id: raw.id,
            prog_type: ProgType::from_raw(raw.prog_type),
            raw_type: raw.prog_type,
            name: sys::c_name(&raw.name),
            tag: raw.tag,
            xlated_len: raw.xlated_prog_len,
            jited_len: raw.jited_prog_len,
            load_time_ns: raw.load_time,
            created_by_uid: raw.created_by_uid,
            map_ids,
            btf_id: raw.btf_id,
            gpl_compatible: raw.flags_bits & 1 != 0,
            verified_insns: raw.verified_insns,
            attach_btf_id: raw.attach_btf_id,
            attach_btf_obj_id: raw.attach_btf_obj_id,
            stats: RunStats { run_count: raw.run_cnt, run_time_ns: raw.run_time_ns, recursion_misses: raw.recursion_misses },
        })
    }

    /// The instructions as the kernel rewrote them (xlated), decoded into bpfkit's model.
    /// Needs CAP_SYS_ADMIN (`bpf_dump_raw_ok`); the kernel hides them otherwise.
    pub fn xlated_insns(&self) -> Result<Vec<Insn>, LoadError> {
        let len = self.info()?.xlated_len as usize;
        let mut buf = vec![0u8; len];
        let ptr = sys::ptr(buf.as_mut_ptr());
        let raw: ProgInfoRaw = sys::info_by_fd(self.fd.as_fd(), |i: &mut ProgInfoRaw| {
            i.xlated_prog_len = len as u32;
            i.xlated_prog_insns = ptr;
        })
        .map_err(|e| info_err(self.describe(), e))?;
        buf.truncate(raw.xlated_prog_len.min(len as u32) as usize);
        crate::insn::decode_bytes(&buf).map_err(|e| LoadError::Xlated { prog: self.name.clone(), message: e.to_string() })
    }
}
