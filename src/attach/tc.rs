//! tc (traffic control) programs on a network device's ingress or egress: a tcx bpf_link
//! (`BPF_TCX_INGRESS`/`EGRESS`, kernel ≥ 6.6), or a direct-action cls_bpf filter on the device's
//! clsact qdisc over netlink, which is also what kernels without tcx get. The clsact qdisc is
//! created when missing and left in place on detach (other filters may hang off it); dropping
//! the [`Link`] removes only its own filter.

use std::os::fd::{AsFd, AsRawFd};

use super::link::{Link, LinkError};
use super::xdp::{check_target, describe_ifindex, link_attr, open_netlink};
use crate::prog::{AttachType, ProgType, Program};
use crate::sys::netlink::{self, ClsBpfFilter, FilterId, NetlinkAttachment};
use crate::sys::{self, Cmd, SysError};

/// Which way the packets go through the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcDirection {
    /// Packets the device receives.
    Ingress,
    /// Packets the device sends.
    Egress,
}

impl TcDirection {
    /// `ingress` or `egress`.
    pub fn name(self) -> &'static str {
        match self {
            TcDirection::Ingress => "ingress",
            TcDirection::Egress => "egress",
        }
    }
    fn tcx_attach_type(self) -> AttachType {
        match self {
            TcDirection::Ingress => AttachType::TcxIngress,
            TcDirection::Egress => AttachType::TcxEgress,
        }
    }
    /// The clsact parent handle of this direction's filters.
    fn clsact_parent(self) -> u32 {
        match self {
            TcDirection::Ingress => netlink::TC_PARENT_INGRESS,
            TcDirection::Egress => netlink::TC_PARENT_EGRESS,
        }
    }
}

/// How [`Program::attach_tc_with`] attaches: a tcx link (the default; a cls_bpf filter on
/// kernels without tcx), or a direct-action cls_bpf filter over netlink at a chosen place in its
/// direction's filter list (priority and handle 0 let the kernel choose: a priority below the
/// existing ones, handle 1 or the next free one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcOptions {
    cls_bpf: bool,
    priority: u16,
    handle: u32,
}

impl TcOptions {
    /// A tcx link (falling back to a cls_bpf filter where the kernel has no tcx).
    pub fn new() -> TcOptions {
        TcOptions::default()
    }
    /// A cls_bpf filter on the clsact qdisc (created if missing), like `tc filter add dev X
    /// ingress bpf direct-action`, even where tcx exists.
    pub fn cls_bpf(mut self) -> TcOptions {
        self.cls_bpf = true;
        self
    }
    /// The cls_bpf filter's priority (lower runs first); implies [`cls_bpf`](Self::cls_bpf).
    pub fn priority(mut self, priority: u16) -> TcOptions {
        self.priority = priority;
        self.cls_bpf()
    }
    /// The cls_bpf filter's handle; implies [`cls_bpf`](Self::cls_bpf).
    pub fn handle(mut self, handle: u32) -> TcOptions {
        self.handle = handle;
        self.cls_bpf()
    }
}

/// The program types tc runs (`sched_cls`; `sched_act` only as a cls_bpf filter's action,
/// which this kernel's direct-action mode replaces).
const TC_PROGS: &[ProgType] = &[ProgType::SchedCls];

impl Program {
    /// Attach this `sched_cls` program to interface `ifindex` with a tcx link (as a cls_bpf
    /// filter over netlink on kernels without tcx; [`Link::path`] says which).
    pub fn attach_tc(&self, ifindex: u32, direction: TcDirection) -> Result<Link, LinkError> {
        self.attach_tc_with(ifindex, direction, &TcOptions::new())
    }

    /// Attach as `opts` says: a tcx link (falling back to a cls_bpf filter when the kernel
    /// refuses tcx with EINVAL), or a direct-action cls_bpf filter over netlink. The program's
    /// return value is the verdict (`TC_ACT_OK` 0, `TC_ACT_SHOT` 2, …).
    pub fn attach_tc_with(&self, ifindex: u32, direction: TcDirection, opts: &TcOptions) -> Result<Link, LinkError> {
        if opts.cls_bpf {
            return self.attach_cls_bpf(ifindex, direction, opts);
        }
        let what = format!("tcx {} on {} ← {}", direction.name(), describe_ifindex(ifindex), self.describe());
        check_target(self, TC_PROGS, ifindex, &what)?;
        match sys::bpf_fd(Cmd::LinkCreate, &mut link_attr(self, ifindex, direction.tcx_attach_type(), 0)) {
            Ok(fd) => Ok(Link::from_link_fd(fd, what)),
            // No tcx before 6.6: a cls_bpf filter does the same job.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.attach_cls_bpf(ifindex, direction, opts),
            Err(source) => Err(SysError::new(format!("link_create({what})"), source).into()),
        }
    }

    fn attach_cls_bpf(&self, ifindex: u32, direction: TcDirection, opts: &TcOptions) -> Result<Link, LinkError> {
        let dev = describe_ifindex(ifindex);
        let mut what = format!("cls_bpf {} on {dev} ← {}", direction.name(), self.describe());
        check_target(self, TC_PROGS, ifindex, &what)?;
        let nl = open_netlink(&what)?;
        nl.add_clsact(ifindex)?;
        let at = FilterId { ifindex, parent: direction.clsact_parent(), priority: opts.priority, handle: opts.handle };
        let id = nl.add_cls_bpf(&what, at, self.as_fd().as_raw_fd(), self.name())?;
        what = format!("cls_bpf {} pref {} handle {:#x} on {dev} ← {}", direction.name(), id.priority, id.handle, self.describe());
        Ok(Link::from_netlink(NetlinkAttachment::tc_filter(nl, what.clone(), id), what))
    }
}

/// The cls_bpf filters on `ifindex`'s clsact qdisc in `direction` (none when there is no clsact).
pub fn cls_bpf_filters(ifindex: u32, direction: TcDirection) -> Result<Vec<ClsBpfFilter>, LinkError> {
    let what = format!("cls_bpf filters of {}", describe_ifindex(ifindex));
    match open_netlink(&what)?.cls_bpf_filters(ifindex, direction.clsact_parent()) {
        Ok(f) => Ok(f),
        // No clsact qdisc: no filters.
        Err(e) if e.errno() == Some(libc::EINVAL) || e.errno() == Some(libc::ENOENT) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
