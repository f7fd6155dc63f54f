//! Probe events, the machinery under kprobes and uprobes, and kprobes themselves.
//!
//! A probe event is opened on the probe PMU (`perf_event_open` with the PMU's `type` from
//! `/sys/bus/event_source/devices/{kprobe,uprobe}/type`, the function name or binary path in
//! `config1`, the offset in `config2`, the return-probe bit where `format/retprobe` says) and
//! the program is attached to it with a bpf_link (`BPF_LINK_CREATE`/`BPF_PERF_EVENT`, which
//! also carries the bpf_cookie). Kernels without the PMU (before 4.17) get the tracefs path: a
//! line in `kprobe_events`/`uprobe_events` defines event `bpfkit/<name>`, which is opened as a
//! tracepoint and removed again when the [`Link`] is dropped (after its perf event closes).
//!
//! Kprobes need `CONFIG_KPROBES`; a kernel without it (this VM's) has neither the PMU nor
//! `kprobe_events`, and [`Program::attach_kprobe`] says exactly that:
//! `no kprobe support in this kernel: /sys/bus/event_source/devices/kprobe missing and tracefs
//! has no kprobe_events`.
//!
//! ```no_run
//! # use bpfkit::prog::Program;
//! # fn f(prog: &Program) -> Result<(), bpfkit::attach::kprobe::ProbeError> {
//! use bpfkit::attach::kprobe::KprobeTarget;
//! let link = prog.attach_kprobe(&KprobeTarget::function("do_unlinkat"))?;
//! let ret = prog.attach_kprobe(&KprobeTarget::function("do_unlinkat").retprobe())?;
//! # Ok(()) }
//! ```

use crate::caps::Capability;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use super::link::{AttachPath, Link, LinkError};
use super::symbols::SymbolError;
use super::tracing::tracepoint_id;
use crate::core_btf::BtfError;
use crate::maps::MapError;
use crate::prog::{LoadError, Program};
use crate::sys::{self, PerfEventAttr, ProbeEventSpec, ProbeKind, SysError};

/// The tracefs group of the probe events bpfkit defines.
pub const TRACEFS_GROUP: &str = "bpfkit";

/// Errors of kprobes, uprobes, USDT, fentry/LSM and iterators: each names its target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{what}: {source}")]
    Btf { what: String, source: BtfError },
    /// Neither the probe PMU nor the tracefs probe-events file exists.
    #[error("no {kind} support in this kernel: /sys/bus/event_source/devices/{kind} missing and tracefs has no {kind}_events")]
    NoProbeSupport { kind: &'static str },
    /// PROG_LOAD of a trampoline-based program (fentry, fexit, fmod_ret, LSM) gave EPERM although
    /// bpf(2) works otherwise.
    #[error("{what}: tracing programs are refused with EPERM by this kernel ({source})")]
    TracingRefused { what: String, source: SysError },
    /// A USDT note or argument that cannot be used.
    #[error("{}: {message}", binary.display())]
    Usdt { binary: PathBuf, message: String },
    /// A request that cannot work as given (offset on a return probe, empty list, …).
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

impl ProbeError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> ProbeError {
        ProbeError::Invalid { what: what.into(), message: message.into() }
    }
}

/// A tracefs probe event bpfkit defined; removed on drop (after the perf event using it closed).
#[derive(Debug)]
struct TracefsEvent {
    file: PathBuf,
    name: String,
}

impl Drop for TracefsEvent {
    fn drop(&mut self) {
        let _ = sys::write_probe_events(&self.file, &format!("-:{TRACEFS_GROUP}/{}", self.name));
    }
}

/// One probe to attach, kernel- or user-side (built by the kprobe, uprobe and USDT front ends).
#[derive(Clone, Debug)]
pub(crate) struct ProbeRequest {
    pub kind: ProbeKind,
    /// Function name (kprobe) or binary path (uprobe).
    pub target: String,
    pub offset: u64,
    pub retprobe: bool,
    pub ref_ctr_offset: u64,
    /// -1: every process.
    pub pid: i32,
    pub cookie: u64,
    pub via_tracefs: bool,
    /// How messages name it: `uprobe /bin/bash:0x1234`.
    pub what: String,
}

static EVENT_COUNTER: AtomicU32 = AtomicU32::new(0);

impl ProbeRequest {
    /// The probe-events line defining this probe as event `bpfkit/<event>`:
    /// `p:bpfkit/e do_unlinkat+0`, `r:bpfkit/e /bin/bash:0x1234(0x5678)`.
    pub fn tracefs_definition(&self, event: &str) -> String {
        let p = if self.retprobe { 'r' } else { 'p' };
        match self.kind {
            ProbeKind::Kprobe if self.target.is_empty() => format!("{p}:{TRACEFS_GROUP}/{event} {:#x}", self.offset),
            ProbeKind::Kprobe => format!("{p}:{TRACEFS_GROUP}/{event} {}+{}", self.target, self.offset),
            ProbeKind::Uprobe if self.ref_ctr_offset != 0 => {
                format!("{p}:{TRACEFS_GROUP}/{event} {}:{:#x}({:#x})", self.target, self.offset, self.ref_ctr_offset)
            }
            ProbeKind::Uprobe => format!("{p}:{TRACEFS_GROUP}/{event} {}:{:#x}", self.target, self.offset),
        }
    }

    /// A fresh event name: kind, sanitized target, pid and a counter (at most 63 bytes).
    fn event_name(&self) -> String {
        let base = self.target.rsplit('/').next().unwrap_or("");
        let clean: String = base.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(32).collect();
        let n = EVENT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = match (self.kind, self.retprobe) {
            (ProbeKind::Kprobe, false) => "kp",
            (ProbeKind::Kprobe, true) => "kr",
            (ProbeKind::Uprobe, false) => "up",
            (ProbeKind::Uprobe, true) => "ur",
        };
        format!("{tag}_{clean}_{:x}_{}_{n}", self.offset, std::process::id())
    }
}

/// Attach `prog` to the probe `req` describes: the PMU when the kernel has it (and tracefs was
/// not asked for), else the tracefs probe-events file.
pub(crate) fn attach_probe(prog: &Program, req: &ProbeRequest) -> Result<Link, ProbeError> {
    let target = CString::new(req.target.as_str()).map_err(|_| ProbeError::invalid(&req.what, "contains a NUL byte"))?;
    let pmu = if req.via_tracefs {
        None
    } else {
        sys::probe_pmu(req.kind).map_err(|e| ProbeError::invalid(&req.what, e.to_string()))?
    };
    if let Some(pmu) = pmu {
        let spec = ProbeEventSpec { target: &target, offset: req.offset, retprobe: req.retprobe, ref_ctr_offset: req.ref_ctr_offset };
        let attr = sys::probe_event_attr(&pmu, &spec).map_err(|e| ProbeError::invalid(&req.what, e.to_string()))?;
        let event = sys::probe_event_open(&pmu, &spec, req.pid).map_err(|source| {
            let op = format!("perf_event_open({}: {} PMU type {} config {:#x} offset {:#x} pid {})", req.what, req.kind.name(), attr.type_, attr.config, attr.config2, req.pid);
            ProbeError::Link(LinkError::Sys(SysError::new(op, source).needing(&[Capability::Perfmon])))
        })?;
        let link = prog.attach_perf_fd(event, req.what.clone(), AttachPath::BpfLink, req.cookie)?;
        return Ok(link);
    }
    let file = match sys::probe_events_file(req.kind) {
        Ok(Some(file)) => file,
        Ok(None) if req.via_tracefs => {
            return Err(ProbeError::invalid(&req.what, format!("tracefs has no {}_events", req.kind.name())));
        }
        Ok(None) => return Err(ProbeError::NoProbeSupport { kind: req.kind.name() }),
        Err(e) => return Err(ProbeError::invalid(&req.what, format!("no {} PMU, and tracefs is unavailable: {e}", req.kind.name()))),
    };
    let name = req.event_name();
    let definition = req.tracefs_definition(&name);
    sys::write_probe_events(&file, &definition)
        .map_err(|source| sys_error(format!("write {:?} to {} ({})", definition, file.display(), req.what), source))?;
    // From here on the guard removes the event on every path.
    let guard = TracefsEvent { file, name };
    let id = tracepoint_id(TRACEFS_GROUP, &guard.name)?;
    let attr = PerfEventAttr { type_: sys::PERF_TYPE_TRACEPOINT, config: id, sample_period: 1, wakeup_events: 1, ..Default::default() };
    let (pid, cpu) = if req.pid < 0 { (-1, 0) } else { (req.pid, -1) };
    let event: OwnedFd = sys::perf_event_open(&attr, pid, cpu, -1, 0)
        .map_err(|source| {
            let op = format!("perf_event_open({}: tracefs event {TRACEFS_GROUP}/{} id {id})", req.what, guard.name);
            ProbeError::Link(LinkError::Sys(SysError::new(op, source).needing(&[Capability::Perfmon])))
        })?;
    let link = prog.attach_perf_fd(event, format!("{} (tracefs {TRACEFS_GROUP}/{})", req.what, guard.name), AttachPath::BpfLink, req.cookie)?;
    Ok(link.with_tracefs_event(format!("{TRACEFS_GROUP}/{}", guard.name), guard))
}

/// A failed system call as a [`ProbeError`].
pub(crate) fn sys_error(op: String, source: std::io::Error) -> ProbeError {
    ProbeError::Link(LinkError::Sys(SysError::new(op, source)))
}

/// A kernel function to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KprobeTarget {
    function: String,
    offset: u64,
    retprobe: bool,
    cookie: u64,
    via_tracefs: bool,
}

impl KprobeTarget {
    /// The entry of kernel function `name` (as in `/proc/kallsyms`).
    pub fn function(name: impl Into<String>) -> KprobeTarget {
        KprobeTarget { function: name.into(), offset: 0, retprobe: false, cookie: 0, via_tracefs: false }
    }
    /// An absolute kernel address instead of a function.
    pub fn address(addr: u64) -> KprobeTarget {
        KprobeTarget { offset: addr, ..KprobeTarget::function("") }
    }
    /// An instruction `offset` bytes into the function.
    pub fn offset(mut self, offset: u64) -> KprobeTarget {
        self.offset = offset;
        self
    }
    /// A kretprobe: runs when the function returns (the offset must be 0).
    pub fn retprobe(mut self) -> KprobeTarget {
        self.retprobe = true;
        self
    }
    /// The value `bpf_get_attach_cookie` returns in the program.
    pub fn cookie(mut self, cookie: u64) -> KprobeTarget {
        self.cookie = cookie;
        self
    }
    /// Use tracefs' `kprobe_events` even when the kprobe PMU exists.
    pub fn via_tracefs(mut self) -> KprobeTarget {
        self.via_tracefs = true;
        self
    }

    /// `kprobe do_unlinkat+0x0`, `kretprobe do_unlinkat+0x0`.
    pub fn describe(&self) -> String {
        let kind = if self.retprobe { "kretprobe" } else { "kprobe" };
        if self.function.is_empty() {
            format!("{kind} {:#x}", self.offset)
        } else {
            format!("{kind} {}+{:#x}", self.function, self.offset)
        }
    }

    fn request(&self) -> Result<ProbeRequest, ProbeError> {
        let what = self.describe();
        if self.function.chars().any(|c| c.is_whitespace() || c == ':' || c == '/') {
            return Err(ProbeError::invalid(what, "a kernel function name has no spaces, `:` or `/`"));
        }
        if self.function.is_empty() && self.offset == 0 {
            return Err(ProbeError::invalid(what, "needs a function name or an address"));
        }
        if self.retprobe && self.offset != 0 && !self.function.is_empty() {
            return Err(ProbeError::invalid(what, "kretprobes attach at the function's entry: the offset must be 0"));
        }
        Ok(ProbeRequest {
            kind: ProbeKind::Kprobe,
            target: self.function.clone(),
            offset: self.offset,
            retprobe: self.retprobe,
            ref_ctr_offset: 0,
            pid: -1,
            cookie: self.cookie,
            via_tracefs: self.via_tracefs,
            what,
        })
    }

    /// The `kprobe_events` line the tracefs path writes for event `bpfkit/<event>`
    /// (`p:bpfkit/<event> do_unlinkat+0`, `r:…` for a kretprobe).
    pub fn tracefs_definition(&self, event: &str) -> Result<String, ProbeError> {
        Ok(self.request()?.tracefs_definition(event))
    }
}

impl Program {
    /// Attach a kprobe program (`ProgType::Kprobe`) to a kernel function's entry, an offset in
    /// it, or its return.
    pub fn attach_kprobe(&self, target: &KprobeTarget) -> Result<Link, ProbeError> {
        attach_probe(self, &target.request()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_follow_the_tracefs_syntax() {
        let k = KprobeTarget::function("do_unlinkat");
        assert_eq!(k.tracefs_definition("e").unwrap(), "p:bpfkit/e do_unlinkat+0");
        assert_eq!(k.clone().retprobe().tracefs_definition("e").unwrap(), "r:bpfkit/e do_unlinkat+0");
        assert_eq!(k.clone().offset(5).describe(), "kprobe do_unlinkat+0x5");
        assert!(k.clone().offset(5).retprobe().tracefs_definition("e").is_err());
        assert_eq!(KprobeTarget::address(0xffff_ffff_8100_0000).tracefs_definition("a").unwrap(), "p:bpfkit/a 0xffffffff81000000");
        assert!(KprobeTarget::function("bad name").tracefs_definition("e").is_err());
        let u = ProbeRequest {
            kind: ProbeKind::Uprobe,
            target: "/bin/true".into(),
            offset: 0x1234,
            retprobe: false,
            ref_ctr_offset: 0x40,
            pid: -1,
            cookie: 0,
            via_tracefs: true,
            what: String::new(),
        };
        assert_eq!(u.tracefs_definition("u"), "p:bpfkit/u /bin/true:0x1234(0x40)");
        let name = u.event_name();
        assert!(name.starts_with("up_true_1234_") && name.len() < 64, "{name}");
    }
}

crate::error::errno_from_sources!(ProbeError);
