//! Programs: loading an assembled program into the kernel (map names bound to fds, the
//! verifier log captured and explained against the source lines), and PROG_TEST_RUN.

mod verifier;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub use verifier::{explain, VerifierRejection};

use crate::insn::{Assembled, EncodeError, Imm64, Insn, MapRef};
use crate::maps::Map;
use crate::sys::{self, Cmd, ProgLoadAttr, SysError, TestRunAttr};

/// `enum bpf_prog_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgType {
    SocketFilter,
    Kprobe,
    SchedCls,
    SchedAct,
    Tracepoint,
    Xdp,
    PerfEvent,
    CgroupSkb,
    RawTracepoint,
    Syscall,
}

impl ProgType {
    pub fn raw(self) -> u32 {
        match self {
            ProgType::SocketFilter => 1,
            ProgType::Kprobe => 2,
            ProgType::SchedCls => 3,
            ProgType::SchedAct => 4,
            ProgType::Tracepoint => 5,
            ProgType::Xdp => 6,
            ProgType::PerfEvent => 7,
            ProgType::CgroupSkb => 8,
            ProgType::RawTracepoint => 17,
            ProgType::Syscall => 31,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProgType::SocketFilter => "socket_filter",
            ProgType::Kprobe => "kprobe",
            ProgType::SchedCls => "sched_cls",
            ProgType::SchedAct => "sched_act",
            ProgType::Tracepoint => "tracepoint",
            ProgType::Xdp => "xdp",
            ProgType::PerfEvent => "perf_event",
            ProgType::CgroupSkb => "cgroup_skb",
            ProgType::RawTracepoint => "raw_tracepoint",
            ProgType::Syscall => "syscall",
        }
    }
}

/// How to load a program.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadOptions {
    pub name: String,
    pub prog_type: ProgType,
    pub license: String,
    /// 0: log only on failure (retried at level 1 to get the reason); 1, 2: verbose.
    pub log_level: u32,
}

impl LoadOptions {
    pub fn new(name: impl Into<String>, prog_type: ProgType) -> Self {
        LoadOptions { name: name.into(), prog_type, license: "GPL".into(), log_level: 0 }
    }
    pub fn license(mut self, l: impl Into<String>) -> Self {
        self.license = l.into();
        self
    }
    pub fn log_level(mut self, l: u32) -> Self {
        self.log_level = l;
        self
    }
}

/// Why a program did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("program \"{prog}\": map `{map}` is referenced but not provided")]
    UnboundMap { prog: String, map: String },
    #[error("program \"{prog}\": {source}")]
    Encode { prog: String, source: EncodeError },
    #[error("program \"{prog}\" rejected by the verifier: {0}", .rejection)]
    Verifier { prog: String, rejection: VerifierRejection },
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// A loaded program; dropping it closes its fd.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: String,
    prog_type: ProgType,
    /// The verifier log, if a log level was requested.
    pub log: String,
}

const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = 16 * 1024 * 1024;

impl Program {
    /// Load `asm`, binding map names to `maps`.
    pub fn load(asm: &Assembled, maps: &[&Map], opts: &LoadOptions) -> Result<Program, LoadError> {
        let by_name: HashMap<&str, &Map> = maps.iter().map(|m| (m.name(), *m)).collect();
        let mut insns: Vec<Insn> = asm.insns().to_vec();
        for insn in &mut insns {
            if let Insn::LdImm64 { value: Imm64::Map(m) | Imm64::MapValue { map: m, .. }, .. } = insn {
                if let MapRef::Name(n) = m {
                    let map = by_name.get(n.as_str()).ok_or_else(|| LoadError::UnboundMap { prog: opts.name.clone(), map: n.clone() })?;
                    *m = map.as_ref();
                }
            }
        }
        let bound = Assembled::from_insns(insns);
        let slots = bound.encode().map_err(|source| LoadError::Encode { prog: opts.name.clone(), source })?;
        let license = std::ffi::CString::new(opts.license.replace('\0', "")).unwrap_or_default();
        let mut log_level = opts.log_level;
        let mut log = vec![0u8; if log_level > 0 { LOG_START } else { 0 }];
        loop {
            let mut attr = ProgLoadAttr {
                prog_type: opts.prog_type.raw(),
                insn_cnt: slots.len() as u32,
                insns: sys::ptr(slots.as_ptr()),
                license: sys::ptr(license.as_ptr()),
                log_level,
                log_size: log.len() as u32,
                log_buf: if log.is_empty() { 0 } else { sys::ptr(log.as_mut_ptr()) },
                prog_name: sys::name16(&opts.name),
                ..Default::default()
            };
            match sys::bpf_fd(Cmd::ProgLoad, &mut attr) {
                Ok(fd) => {
                    return Ok(Program { fd, name: opts.name.clone(), prog_type: opts.prog_type, log: log_text(&log) });
                }
                // The log buffer was too small: grow it (up to 16 MiB) and try again.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && log_level > 0 && log.len() < LOG_MAX => {
                    log = vec![0u8; (log.len() * 4).min(LOG_MAX)];
                }
                // Rejected without a log: retry once with one, to say why.
                Err(e) if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) => {
                    if log_level == 0 {
                        log_level = 1;
                        log = vec![0u8; LOG_START];
                        continue;
                    }
                    let text = log_text(&log);
                    if text.trim().is_empty() {
                        return Err(SysError { op: format!("prog_load({} \"{}\")", opts.prog_type.name(), opts.name), source: e }.into());
                    }
                    return Err(LoadError::Verifier { prog: opts.name.clone(), rejection: explain(&text, asm, e) });
                }
                Err(source) => {
                    return Err(SysError { op: format!("prog_load({} \"{}\")", opts.prog_type.name(), opts.name), source }.into());
                }
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// Run the program once (or `repeat` times) on `data` with PROG_TEST_RUN.
    pub fn test_run(&self, run: &TestRun) -> Result<TestRunResult, SysError> {
        let mut data_out = vec![0u8; run.data.len() + run.data_out_extra];
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: run.data.len() as u32,
            data_size_out: data_out.len() as u32,
            data_in: if run.data.is_empty() { 0 } else { sys::ptr(run.data.as_ptr()) },
            data_out: if data_out.is_empty() { 0 } else { sys::ptr(data_out.as_mut_ptr()) },
            repeat: run.repeat,
            ..Default::default()
        };
        sys::bpf(Cmd::ProgTestRun, &mut attr)
            .map_err(|source| SysError { op: format!("prog_test_run({} \"{}\")", self.prog_type.name(), self.name), source })?;
        data_out.truncate(attr.data_size_out as usize);
        Ok(TestRunResult { retval: attr.retval, duration_ns: attr.duration, data_out })
    }
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Input of a test run.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TestRun {
    pub data: Vec<u8>,
    pub repeat: u32,
    /// Room for the program to grow the packet (e.g. `bpf_xdp_adjust_tail`).
    pub data_out_extra: usize,
}

impl TestRun {
    pub fn with_data(data: impl Into<Vec<u8>>) -> Self {
        TestRun { data: data.into(), repeat: 1, data_out_extra: 0 }
    }
    pub fn repeat(mut self, n: u32) -> Self {
        self.repeat = n;
        self
    }
}

/// Output of a test run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value (32 bits: the kernel truncates r0).
    pub retval: u32,
    /// Mean run time per repetition, as the kernel measured it.
    pub duration_ns: u32,
    pub data_out: Vec<u8>,
}
