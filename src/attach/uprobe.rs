//! Uprobes and uretprobes: a program (`ProgType::Kprobe`, whose context is `struct pt_regs`)
//! runs when a process executes an instruction of a user binary, or returns from a function.
//!
//! The target is a binary (a path, or a name such as `libc.so.6` or `libc` found in the process
//! maps, `$PATH` or the library directories: [`symbols::resolve_binary`]) and either a function
//! symbol — turned into a file offset through the ELF's symbol table and program headers
//! ([`symbols::ElfBinary`]) — or a raw file offset, plus an optional offset inside the function.
//! An optional pid limits the probe to one process. Attachment goes through the uprobe PMU and a
//! bpf_link ([`super::kprobe`] has the machinery and the tracefs fallback).
//!
//! [`Program::attach_uprobe_multi`] attaches one program to many offsets of one binary with a
//! single `BPF_TRACE_UPROBE_MULTI` link (Linux 6.6); the program must be loaded with expected
//! attach type [`AttachType::TraceUprobeMulti`].
//!
//! Register offsets for reading arguments and return values come from vmlinux BTF's
//! `struct pt_regs`: [`pt_regs_offset`], [`arg_reg`], [`RET_REG`].
//!
//! ```no_run
//! # use bpfkit::prog::Program;
//! # fn f(prog: &Program) -> Result<(), bpfkit::attach::ProbeError> {
//! use bpfkit::attach::uprobe::UprobeTarget;
//! let entry = prog.attach_uprobe(&UprobeTarget::symbol("libc.so.6", "getpid").pid(1234))?;
//! let inner = prog.attach_uprobe(&UprobeTarget::symbol("/usr/bin/bash", "main").at(4))?;
//! let ret = prog.attach_uprobe(&UprobeTarget::symbol("/usr/bin/bash", "main").retprobe())?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::probe::{attach_probe, sys_error, ProbeError, ProbeRequest};
use super::link::Link;
use super::symbols::{self, ElfBinary, SymbolError};
use crate::core_btf::{Btf, Kind};
use crate::prog::{AttachType, Program};
use crate::sys::{self, Cmd, LinkCreateAttr, ProbeKind, UprobeMultiLink};

/// `BPF_F_UPROBE_MULTI_RETURN`.
const UPROBE_MULTI_RETURN: u32 = 1;

/// Where in a binary: a function symbol or a file offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UprobeLocation {
    /// A function symbol in the binary's `.symtab` or `.dynsym`.
    Symbol(String),
    /// An offset in the file (what the kernel's uprobe takes directly).
    FileOffset(u64),
}

/// A uprobe or uretprobe to attach. Build with [`UprobeTarget::symbol`] or
/// [`UprobeTarget::file_offset`] and the setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeTarget {
    binary: String,
    location: UprobeLocation,
    offset: u64,
    retprobe: bool,
    pid: Option<i32>,
    cookie: u64,
    ref_ctr_offset: u64,
    via_tracefs: bool,
}

/// A uprobe target resolved to what the kernel takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUprobe {
    /// The binary's path (a bare name is looked up in the process's mappings, `$PATH`, library dirs).
    pub binary: PathBuf,
    /// The probe's offset in the file.
    pub file_offset: u64,
}

impl UprobeTarget {
    /// The entry of function `symbol` in `binary`.
    pub fn symbol(binary: impl Into<String>, symbol: impl Into<String>) -> UprobeTarget {
        UprobeTarget::new(binary.into(), UprobeLocation::Symbol(symbol.into()))
    }
    /// The instruction at `offset` bytes into the file `binary`.
    pub fn file_offset(binary: impl Into<String>, offset: u64) -> UprobeTarget {
        UprobeTarget::new(binary.into(), UprobeLocation::FileOffset(offset))
    }
    fn new(binary: String, location: UprobeLocation) -> UprobeTarget {
        UprobeTarget { binary, location, offset: 0, retprobe: false, pid: None, cookie: 0, ref_ctr_offset: 0, via_tracefs: false }
    }
    /// Probe `offset` bytes further (into the function). It must be an instruction boundary:
    /// the kernel decodes the instruction found there.
    pub fn at(mut self, offset: u64) -> UprobeTarget {
        self.offset = offset;
        self
    }
    /// A uretprobe: runs when the function returns (at a function's entry only).
    pub fn retprobe(mut self) -> UprobeTarget {
        self.retprobe = true;
        self
    }
    /// Only in process `pid` (a process id; all its threads).
    pub fn pid(mut self, pid: i32) -> UprobeTarget {
        self.pid = Some(pid);
        self
    }
    /// The value `bpf_get_attach_cookie` returns in the program.
    pub fn cookie(mut self, cookie: u64) -> UprobeTarget {
        self.cookie = cookie;
        self
    }
    /// File offset of a 16-bit reference counter (a USDT semaphore) the kernel keeps
    /// incremented while the probe exists.
    pub fn ref_ctr_offset(mut self, offset: u64) -> UprobeTarget {
        self.ref_ctr_offset = offset;
        self
    }
    /// Define the probe in tracefs' `uprobe_events` (the pre-4.17 way) even when the uprobe
    /// PMU exists.
    pub fn via_tracefs(mut self) -> UprobeTarget {
        self.via_tracefs = true;
        self
    }

    /// `uprobe libc.so.6:getpid`, `uretprobe /bin/bash:main`, `uprobe /x:0x1234+0x4 pid 7`.
    pub fn describe(&self) -> String {
        let kind = if self.retprobe { "uretprobe" } else { "uprobe" };
        let loc = match &self.location {
            UprobeLocation::Symbol(s) => s.clone(),
            UprobeLocation::FileOffset(o) => format!("{o:#x}"),
        };
        let off = if self.offset != 0 { format!("+{:#x}", self.offset) } else { String::new() };
        let pid = self.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        format!("{kind} {}:{loc}{off}{pid}", self.binary)
    }

    /// The binary's path and the file offset the probe goes to.
    pub fn resolve(&self) -> Result<ResolvedUprobe, ProbeError> {
        let binary = symbols::resolve_binary(&self.binary, self.pid)?;
        let base = match &self.location {
            UprobeLocation::FileOffset(o) => *o,
            UprobeLocation::Symbol(name) => {
                let loc = ElfBinary::open(&binary)?.function(name)?;
                if loc.size != 0 && self.offset >= loc.size {
                    return Err(SymbolError::OutsideFunction { path: binary, symbol: name.clone(), offset: self.offset, size: loc.size }.into());
                }
                loc.file_offset
            }
        };
        let file_offset = base.checked_add(self.offset).ok_or_else(|| ProbeError::invalid(self.describe(), "offset overflows"))?;
        Ok(ResolvedUprobe { binary, file_offset })
    }
}

impl Program {
    /// Attach a kprobe-type program as a uprobe or uretprobe.
    pub fn attach_uprobe(&self, target: &UprobeTarget) -> Result<Link, ProbeError> {
        let what = target.describe();
        if target.retprobe && target.offset != 0 {
            return Err(ProbeError::invalid(what, "uretprobes attach at a function's entry: the offset inside it must be 0"));
        }
        let resolved = target.resolve()?;
        let req = ProbeRequest {
            kind: ProbeKind::Uprobe,
            target: resolved.binary.to_string_lossy().into_owned(),
            offset: resolved.file_offset,
            retprobe: target.retprobe,
            ref_ctr_offset: target.ref_ctr_offset,
            pid: target.pid.unwrap_or(-1),
            cookie: target.cookie,
            via_tracefs: target.via_tracefs,
            what: format!("{what} (file offset {:#x})", resolved.file_offset),
        };
        attach_probe(self, &req)
    }

    /// Attach one program to many places of one binary with a single uprobe_multi link.
    pub fn attach_uprobe_multi(&self, target: &UprobeMulti) -> Result<Link, ProbeError> {
        let what = format!("{} ← {}", target.describe(), self.describe());
        let (binary, offsets) = target.resolve()?;
        for (name, list) in [("cookies", &target.cookies), ("ref_ctr_offsets", &target.ref_ctr_offsets)] {
            if !list.is_empty() && list.len() != offsets.len() {
                return Err(ProbeError::invalid(&what, format!("{} {name} for {} locations", list.len(), offsets.len())));
            }
        }
        let path = CString::new(binary.as_os_str().as_bytes()).map_err(|_| ProbeError::invalid(&what, "path contains a NUL byte"))?;
        let flags = if target.retprobe { UPROBE_MULTI_RETURN } else { 0 };
        let member = UprobeMultiLink::new(&path, &offsets, &target.ref_ctr_offsets, &target.cookies, flags, target.pid.unwrap_or(0) as u32)
            .ok_or_else(|| ProbeError::invalid(&what, format!("{} locations do not fit one uprobe_multi link", offsets.len())))?;
        let mut attr = LinkCreateAttr::new(self.as_fd().as_raw_fd() as u32, 0, AttachType::TraceUprobeMulti.raw(), 0).with_target(member);
        let fd = sys::bpf_fd(Cmd::LinkCreate, &mut attr).map_err(|source| {
            let hint = if source.raw_os_error() == Some(libc::EINVAL) { " [was the program loaded with expected attach type trace_uprobe_multi?]" } else { "" };
            sys_error(format!("link_create(uprobe_multi {what}, offsets {offsets:#x?}){hint}"), source)
        })?;
        Ok(Link::from_link_fd(fd, what))
    }
}

/// Many uprobes (or uretprobes) of one binary behind one `BPF_TRACE_UPROBE_MULTI` link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeMulti {
    binary: String,
    locations: Vec<UprobeLocation>,
    cookies: Vec<u64>,
    ref_ctr_offsets: Vec<u64>,
    retprobe: bool,
    pid: Option<i32>,
}

impl UprobeMulti {
    /// The entries of functions `symbols` in `binary`.
    pub fn symbols(binary: impl Into<String>, symbols: &[&str]) -> UprobeMulti {
        UprobeMulti::new(binary.into(), symbols.iter().map(|s| UprobeLocation::Symbol(s.to_string())).collect())
    }
    /// Raw file offsets in `binary`.
    pub fn file_offsets(binary: impl Into<String>, offsets: &[u64]) -> UprobeMulti {
        UprobeMulti::new(binary.into(), offsets.iter().map(|o| UprobeLocation::FileOffset(*o)).collect())
    }
    fn new(binary: String, locations: Vec<UprobeLocation>) -> UprobeMulti {
        UprobeMulti { binary, locations, cookies: Vec::new(), ref_ctr_offsets: Vec::new(), retprobe: false, pid: None }
    }
    /// One bpf_cookie per location.
    pub fn cookies(mut self, cookies: Vec<u64>) -> UprobeMulti {
        self.cookies = cookies;
        self
    }
    /// One reference counter (semaphore) file offset per location (0: none).
    pub fn ref_ctr_offsets(mut self, offsets: Vec<u64>) -> UprobeMulti {
        self.ref_ctr_offsets = offsets;
        self
    }
    /// Uretprobes instead of uprobes.
    pub fn retprobe(mut self) -> UprobeMulti {
        self.retprobe = true;
        self
    }
    /// Only in process `pid`.
    pub fn pid(mut self, pid: i32) -> UprobeMulti {
        self.pid = Some(pid);
        self
    }

    /// `uprobe_multi /bin/x:{a, b}`.
    pub fn describe(&self) -> String {
        let locs: Vec<String> = self
            .locations
            .iter()
            .map(|l| match l {
                UprobeLocation::Symbol(s) => s.clone(),
                UprobeLocation::FileOffset(o) => format!("{o:#x}"),
            })
            .collect();
        let kind = if self.retprobe { "uretprobe_multi" } else { "uprobe_multi" };
        format!("{kind} {}:{{{}}}", self.binary, locs.join(", "))
    }

    /// The binary's path and each location's file offset.
    pub fn resolve(&self) -> Result<(PathBuf, Vec<u64>), ProbeError> {
        if self.locations.is_empty() {
            return Err(ProbeError::invalid(self.describe(), "no locations"));
        }
        let binary = symbols::resolve_binary(&self.binary, self.pid)?;
        let names: Vec<&str> = self.locations.iter().filter_map(|l| if let UprobeLocation::Symbol(s) = l { Some(s.as_str()) } else { None }).collect();
        let mut found = if names.is_empty() { Vec::new() } else { ElfBinary::open(&binary)?.functions(&names)? }.into_iter();
        let offsets = self
            .locations
            .iter()
            .map(|l| match l {
                UprobeLocation::FileOffset(o) => *o,
                UprobeLocation::Symbol(_) => found.next().map(|f| f.file_offset).unwrap_or(0),
            })
            .collect();
        Ok((binary, offsets))
    }
}

/// `struct pt_regs` members of x86-64 (the registers a uprobe or kprobe program can read).
const PT_REGS_MEMBERS: [&str; 21] =
    ["r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di", "orig_ax", "ip", "cs", "flags", "sp", "ss"];

/// The x86-64 System V argument registers, as `pt_regs` members.
pub const ARG_REGS: [&str; 6] = ["di", "si", "dx", "cx", "r8", "r9"];
/// The x86-64 return-value register, as a `pt_regs` member.
pub const RET_REG: &str = "ax";

/// The `pt_regs` member holding integer argument `n` (0-based) at a function's entry.
pub fn arg_reg(n: usize) -> Option<&'static str> {
    ARG_REGS.get(n).copied()
}

/// Byte offset of `member` (`ax`, `di`, `sp`, `ip`, …) in the running kernel's `struct
/// pt_regs`, from vmlinux BTF (read once).
pub fn pt_regs_offset(member: &str) -> Result<i16, ProbeError> {
    static OFFSETS: OnceLock<Result<HashMap<&'static str, i16>, String>> = OnceLock::new();
    let table = OFFSETS.get_or_init(|| {
        let btf = Btf::vmlinux_shared().map_err(|e| e.to_string())?;
        let id = btf.find_by_name_kind("pt_regs", Kind::Struct).ok_or("vmlinux BTF has no struct pt_regs")?;
        let mut out = HashMap::new();
        for m in PT_REGS_MEMBERS {
            if let Ok(bits) = btf.member_offset(id, m) {
                out.insert(m, (bits / 8) as i16);
            }
        }
        Ok(out)
    });
    let what = || format!("struct pt_regs member `{member}`");
    match table {
        Ok(t) => t.get(member).copied().ok_or_else(|| ProbeError::invalid(what(), format!("not in vmlinux BTF (known: {})", PT_REGS_MEMBERS.join(", ")))),
        Err(e) => Err(ProbeError::invalid(what(), e.clone())),
    }
}
