//! Probe events, the machinery under kprobes, uprobes and USDT probes, and [`ProbeError`], the
//! error of every probe kind (and of fentry/LSM and iterators).
//!
//! A probe event is opened on the probe PMU (`perf_event_open` with the PMU's `type` from
//! `/sys/bus/event_source/devices/{kprobe,uprobe}/type`, the function name or binary path in
//! `config1`, the offset in `config2`, the return-probe bit where `format/retprobe` says) and
//! the program is attached to it with a bpf_link (`BPF_LINK_CREATE`/`BPF_PERF_EVENT`, which
//! also carries the bpf_cookie). Kernels without the PMU (before 4.17) get the tracefs path: a
//! line in `kprobe_events`/`uprobe_events` defines event `bpfkit/<name>`, which is opened as a
//! tracepoint and removed again when the [`Link`] is dropped (after its perf event closes).

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
    /// Creating or using the link failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The target binary or symbol could not be resolved.
    #[error(transparent)]
    Symbol(#[from] SymbolError),
    /// A map operation failed (e.g. filling the USDT spec map).
    #[error(transparent)]
    Map(#[from] MapError),
    /// Loading a program failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Reading or searching BTF failed (for fentry, LSM or iterator targets); `what` says for what.
    #[error("{what}: {source}")]
    Btf {
        /// What the BTF was read or searched for.
        what: String,
        /// The BTF error.
        source: BtfError,
    },
    /// Neither the probe PMU nor the tracefs probe-events file exists.
    #[error("no {kind} support in this kernel: /sys/bus/event_source/devices/{kind} missing and tracefs has no {kind}_events")]
    NoProbeSupport {
        /// The probe kind (`kprobe` or `uprobe`).
        kind: &'static str,
    },
    /// PROG_LOAD of a trampoline-based program (fentry, fexit, fmod_ret, LSM) gave EPERM although
    /// bpf(2) works otherwise.
    #[error("{what}: tracing programs are refused with EPERM by this kernel ({source})")]
    TracingRefused {
        /// The attach target (hook, function, BTF id, attach type).
        what: String,
        /// The EPERM error bpf(2) gave.
        source: SysError,
    },
    /// A USDT note or argument that cannot be used.
    #[error("{}: {message}", binary.display())]
    Usdt {
        /// The binary holding the USDT note.
        binary: PathBuf,
        /// What is wrong with the note or argument.
        message: String,
    },
    /// A request that cannot work as given (offset on a return probe, empty list, …).
    #[error("{what}: {message}")]
    Invalid {
        /// The request.
        what: String,
        /// Why it cannot work.
        message: String,
    },
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
    pub(crate) fn event_name(&self) -> String {
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

