//! Tracing attach points on this kernel: tracepoints (a perf event of type TRACEPOINT, then a
//! bpf_link with `BPF_LINK_CREATE`/`BPF_PERF_EVENT`, or `PERF_EVENT_IOC_SET_BPF` on kernels
//! before 5.15), raw tracepoints and tp_btf (`BPF_RAW_TRACEPOINT_OPEN`), and any perf event
//! (perf_event programs on software or hardware events).

use crate::caps::Capability;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::link::{AttachPath, Link, LinkError};
use crate::prog::Program;
use crate::sys::{self, Cmd, LinkCreateAttr, PerfEventAttr, PerfEventLink, RawTracepointOpenAttr, SysError};

/// How [`Program::attach_tracepoint_with`] attaches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TracepointOptions {
    ioctl: bool,
}

impl TracepointOptions {
    /// A bpf_link on the tracepoint's perf event (an ioctl where the kernel has no perf links).
    pub fn new() -> TracepointOptions {
        TracepointOptions::default()
    }
    /// `PERF_EVENT_IOC_SET_BPF` on the perf event instead of a bpf_link (the pre-5.15 way; no
    /// bpf_cookie, no link id).
    pub fn ioctl(mut self) -> TracepointOptions {
        self.ioctl = true;
        self
    }
}

/// `BPF_PERF_EVENT` attach type.
const ATTACH_PERF_EVENT: u32 = 41;

/// Load options for a `tp_btf` program named `name` on the raw tracepoint `event` (`sys_enter`,
/// `sched_switch`): `tracing`, `trace_raw_tp`, and the BTF id of the kernel's typedef
/// `btf_trace_EVENT`, which gives the program the tracepoint's typed arguments (`u64 ctx[]`: a
/// `struct task_struct *` is a pointer the program may load through). Attach the loaded program
/// with [`Program::attach_btf`]. Unlike a perf-event tracepoint, whose detach waits for RCU
/// grace periods, a `tp_btf` link detaches without waiting.
pub fn tp_btf_options(name: &str, event: &str) -> Result<crate::prog::LoadOptions, super::ProbeError> {
    use crate::core_btf::{Btf, Kind};
    use crate::prog::{AttachType, LoadOptions, ProgType};
    let what = format!("tp_btf/{event}");
    let btf = Btf::vmlinux_shared().map_err(|source| super::ProbeError::Btf { what: format!("{what}: reading vmlinux BTF"), source })?;
    let id = btf
        .find_by_name_kind(&format!("btf_trace_{event}"), Kind::Typedef)
        .ok_or_else(|| super::ProbeError::invalid(what, format!("no raw tracepoint `{event}` in the kernel's BTF (no typedef btf_trace_{event})")))?;
    Ok(LoadOptions::new(name, ProgType::Tracing).expected_attach_type(AttachType::TraceRawTp).attach_btf_id(id.get()))
}

/// The id of tracepoint `category/name` from tracefs (`events/<category>/<name>/id`).
pub fn tracepoint_id(category: &str, name: &str) -> Result<u64, LinkError> {
    let bad = |m: String| LinkError::Target { what: format!("tracepoint {category}/{name}"), message: m };
    if [category, name].iter().any(|s| s.is_empty() || s.contains('/') || s.contains("..")) {
        return Err(bad("category and name must be plain names (e.g. `syscalls`, `sys_enter_getpid`)".into()));
    }
    let dir = sys::tracefs_dir().map_err(|e| bad(e.to_string()))?;
    let path = dir.join("events").join(category).join(name).join("id");
    let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e} (is the tracepoint in {}/available_events?)", path.display(), dir.display())))?;
    text.trim().parse().map_err(|_| bad(format!("{}: not a number: {text:?}", path.display())))
}

/// Which perf event a perf_event program is attached to.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct PerfEventTarget {
    pub(crate) attr: PerfEventAttr,
    /// -1: every process (then `cpu` must be ≥ 0).
    pub(crate) pid: i32,
    /// -1: every CPU (then `pid` must be ≥ 0).
    pub(crate) cpu: i32,
}

impl PerfEventTarget {
    /// A software event (`PERF_COUNT_SW_*`) sampled every `period` events on `cpu`, all processes.
    pub fn software(config: u64, period: u64, cpu: i32) -> PerfEventTarget {
        let attr = PerfEventAttr { type_: sys::PERF_TYPE_SOFTWARE, config, sample_period: period, ..Default::default() };
        PerfEventTarget { attr, pid: -1, cpu }
    }
    /// A hardware event (`PERF_COUNT_HW_*`: cycles, instructions, …) sampled every `period`
    /// events on `cpu`. Needs a PMU: on a VM without one, attaching fails with the kernel's
    /// ENOENT/EOPNOTSUPP, and the error names the event.
    pub fn hardware(config: u64, period: u64, cpu: i32) -> PerfEventTarget {
        let attr = PerfEventAttr { type_: sys::PERF_TYPE_HARDWARE, config, sample_period: period, ..Default::default() };
        PerfEventTarget { attr, pid: -1, cpu }
    }
    /// A software event sampled `freq` times per second on `cpu`.
    pub fn software_freq(config: u64, freq: u64, cpu: i32) -> PerfEventTarget {
        let mut t = PerfEventTarget::software(config, freq, cpu);
        t.attr.flags |= 1 << 10; // freq
        t
    }
    /// Only this process (every CPU).
    pub fn for_pid(mut self, pid: i32) -> PerfEventTarget {
        self.pid = pid;
        self.cpu = -1;
        self
    }
    /// Only this process, and only while it runs on `cpu`.
    pub fn for_pid_on_cpu(mut self, pid: i32, cpu: i32) -> PerfEventTarget {
        self.pid = pid;
        self.cpu = cpu;
        self
    }
}

impl Program {
    /// Attach to tracepoint `category/name` (e.g. `syscalls`, `sys_enter_getpid`) with a bpf_link.
    pub fn attach_tracepoint(&self, category: &str, name: &str) -> Result<Link, LinkError> {
        let event = self.open_tracepoint(category, name)?;
        self.attach_perf_fd(event, format!("tracepoint {category}/{name}"), AttachPath::BpfLink, 0)
    }

    /// Attach to a tracepoint as `opts` says: a bpf_link (the default, falling back to the
    /// ioctl before 5.15), or `PERF_EVENT_IOC_SET_BPF` on the perf event, as kernels before 5.15
    /// do it.
    pub fn attach_tracepoint_with(&self, category: &str, name: &str, opts: &TracepointOptions) -> Result<Link, LinkError> {
        let event = self.open_tracepoint(category, name)?;
        let path = if opts.ioctl { AttachPath::PerfEventIoctl } else { AttachPath::BpfLink };
        self.attach_perf_fd(event, format!("tracepoint {category}/{name}"), path, 0)
    }

    fn open_tracepoint(&self, category: &str, name: &str) -> Result<OwnedFd, LinkError> {
        let id = tracepoint_id(category, name)?;
        let attr = PerfEventAttr { type_: sys::PERF_TYPE_TRACEPOINT, config: id, sample_period: 1, wakeup_events: 1, ..Default::default() };
        // A tracepoint's program runs for every CPU and task; the event itself is opened on CPU 0.
        sys::perf_event_open(&attr, -1, 0, -1, 0)
            .map_err(|source| SysError::new(format!("perf_event_open(tracepoint {category}/{name} id {id})"), source).needing(&[Capability::Perfmon]).into())
    }

    /// Attach a perf_event program to a perf event (one CPU or one process) with a bpf_link.
    pub fn attach_perf_event(&self, target: &PerfEventTarget) -> Result<Link, LinkError> {
        let what = format!("perf event type {} config {} pid {} cpu {}", target.attr.type_, target.attr.config, target.pid, target.cpu);
        let event = sys::perf_event_open(&target.attr, target.pid, target.cpu, -1, 0)
            .map_err(|source| SysError::new(format!("perf_event_open({what})"), source).needing(&[Capability::Perfmon]))?;
        self.attach_perf_fd(event, what, AttachPath::BpfLink, 0)
    }

    /// Attach to an open perf event (`BPF_LINK_CREATE`/`BPF_PERF_EVENT` with `cookie` as the
    /// bpf_cookie, else the ioctl); also used by the kprobe and uprobe attach points.
    pub(crate) fn attach_perf_fd(&self, event: OwnedFd, target: String, path: AttachPath, cookie: u64) -> Result<Link, LinkError> {
        let what = format!("{target} ← {}", self.describe());
        match path {
            AttachPath::PerfEventIoctl => {
                sys::perf_event_set_bpf(event.as_fd(), self.as_fd()).map_err(|source| SysError::new(format!("ioctl(PERF_EVENT_IOC_SET_BPF, {what})"), source))?;
                sys::perf_event_enable(event.as_fd()).map_err(|source| SysError::new(format!("ioctl(PERF_EVENT_IOC_ENABLE, {what})"), source))?;
                Ok(Link::from_perf_ioctl(event, what))
            }
            _ => {
                let mut attr = LinkCreateAttr::new(self.as_fd().as_raw_fd() as u32, event.as_raw_fd() as u32, ATTACH_PERF_EVENT, 0).with_target(PerfEventLink { bpf_cookie: cookie });
                match sys::bpf_fd(Cmd::LinkCreate, &mut attr) {
                    Ok(fd) => {
                        // The link holds the event; this fd can go.
                        drop(event);
                        Ok(Link::from_link_fd(fd, what))
                    }
                    // Kernels before 5.15 have no perf_event links: fall back to the ioctl
                    // (which has no bpf_cookie).
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) && cookie == 0 => {
                        self.attach_perf_fd(event, target, AttachPath::PerfEventIoctl, 0)
                    }
                    Err(source) => Err(SysError::new(format!("link_create(perf_event, {what})"), source).into()),
                }
            }
        }
    }

    /// Attach a raw tracepoint program to tracepoint `name` (e.g. `sys_enter`, `sched_switch`).
    pub fn attach_raw_tracepoint(&self, name: &str) -> Result<Link, LinkError> {
        let c = CString::new(name).map_err(|_| LinkError::Target { what: format!("raw tracepoint {name:?}"), message: "contains a NUL byte".into() })?;
        self.raw_tracepoint_open(Some(&c), format!("raw_tracepoint {name}"))
    }

    /// Attach a tracing program loaded with an attach BTF id (tp_btf, fentry/fexit, LSM, iter-less
    /// tracing): the target is the one chosen at load.
    pub fn attach_btf(&self) -> Result<Link, LinkError> {
        self.raw_tracepoint_open(None, "btf target".to_string())
    }

    fn raw_tracepoint_open(&self, name: Option<&CString>, what: String) -> Result<Link, LinkError> {
        let what = format!("{what} ← {}", self.describe());
        let mut attr = RawTracepointOpenAttr { name: name.map(|c| sys::ptr(c.as_ptr())).unwrap_or(0), prog_fd: self.as_fd().as_raw_fd() as u32, ..Default::default() };
        let fd = sys::bpf_fd(Cmd::RawTracepointOpen, &mut attr).map_err(|source| SysError::new(format!("raw_tracepoint_open({what})"), source))?;
        Ok(Link::from_link_fd(fd, what))
    }
}
