//! [`Link`]: one attachment, owned. bpf_links (`BPF_LINK_CREATE`, `BPF_RAW_TRACEPOINT_OPEN`)
//! detach when their last fd closes; a perf event with `PERF_EVENT_IOC_SET_BPF` when the event
//! fd closes (bpfkit disables it first); a `BPF_PROG_ATTACH` attachment needs an explicit
//! `BPF_PROG_DETACH`, which drop performs; so do netlink attachments (XDP, cls_bpf: removed
//! with a netlink request) and socket filters (`SO_DETACH_BPF`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::maps::kernel_enum;
use crate::sys::netlink::NetlinkAttachment;
use crate::sys::{self, Cmd, LinkInfoRaw, NetlinkError, PinError, SysError};

kernel_enum! {
    /// `enum bpf_link_type` as of Linux 6.18.
    LinkType {
        /// `BPF_LINK_TYPE_RAW_TRACEPOINT`: raw tracepoints and tp_btf.
        RawTracepoint = 1, "raw_tracepoint";
        /// `BPF_LINK_TYPE_TRACING`: fentry, fexit, fmod_ret, LSM (trampolines).
        Tracing = 2, "tracing";
        /// `BPF_LINK_TYPE_CGROUP`: cgroup programs.
        Cgroup = 3, "cgroup";
        /// `BPF_LINK_TYPE_ITER`: BPF iterators.
        Iter = 4, "iter";
        /// `BPF_LINK_TYPE_NETNS`: network namespace programs (flow dissector, sk_lookup).
        Netns = 5, "netns";
        /// `BPF_LINK_TYPE_XDP`: XDP.
        Xdp = 6, "xdp";
        /// `BPF_LINK_TYPE_PERF_EVENT`: perf events, kprobes, uprobes, tracepoints.
        PerfEvent = 7, "perf_event";
        /// `BPF_LINK_TYPE_KPROBE_MULTI`: kprobe.multi.
        KprobeMulti = 8, "kprobe_multi";
        /// `BPF_LINK_TYPE_STRUCT_OPS`: struct_ops maps.
        StructOps = 9, "struct_ops";
        /// `BPF_LINK_TYPE_NETFILTER`: netfilter hooks.
        Netfilter = 10, "netfilter";
        /// `BPF_LINK_TYPE_TCX`: tcx (6.6+).
        Tcx = 11, "tcx";
        /// `BPF_LINK_TYPE_UPROBE_MULTI`: uprobe.multi (6.6+).
        UprobeMulti = 12, "uprobe_multi";
        /// `BPF_LINK_TYPE_NETKIT`: netkit devices (6.7+).
        Netkit = 13, "netkit";
        /// `BPF_LINK_TYPE_SOCKMAP`: sockmap and sockhash programs (6.10+).
        Sockmap = 14, "sockmap";
    }
}

/// How an attachment was made (and so how it is undone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachPath {
    /// A bpf_link: closing its last fd (or unpinning) detaches.
    BpfLink,
    /// `PERF_EVENT_IOC_SET_BPF` on a perf event: closing the event detaches.
    PerfEventIoctl,
    /// `BPF_PROG_ATTACH`: detached with `BPF_PROG_DETACH` on drop.
    ProgAttach,
    /// rtnetlink (XDP through `IFLA_XDP`, a cls_bpf filter on clsact): removed over the same
    /// netlink socket, so in the same network namespace, on drop.
    Netlink,
    /// `SO_ATTACH_BPF` on a socket: `SO_DETACH_BPF` on drop.
    SocketOption,
}

/// Errors of attaching and of link operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// A bpf(2) or other system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Pinning or unpinning the link failed.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// A netlink request (XDP or tc without bpf_link) failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The attach target does not fit (no such interface, a program of the wrong type, …); names it.
    #[error("{what}: {message}")]
    Target {
        /// The target that does not fit.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// Info or a pin was asked of an attachment that is not a bpf_link.
    #[error("{what} has no {asked}: only bpf_links do, and this attachment took the {path:?} path")]
    NotABpfLink {
        /// The attachment asked.
        what: String,
        /// The way the attachment was made.
        path: AttachPath,
        /// What was asked of it (`info` or `a pin`).
        asked: &'static str,
    },
}

enum Inner {
    Fd(OwnedFd),
    Perf { event: OwnedFd },
    ProgAttach { target: OwnedFd, prog: OwnedFd, attach_type: u32 },
    Netlink(NetlinkAttachment),
    /// A socket filter: a duplicate of the socket's fd, to detach from (it keeps the socket open).
    SocketFilter { sock: OwnedFd },
    /// Several attachments made as one (the uprobes of a USDT probe's locations).
    Group(Vec<Link>),
}

/// An attachment this process owns: what every `attach_*` returns. Dropping it detaches (or,
/// for a pinned bpf_link, lets the pin hold it).
///
/// Besides the kernel object that holds the attachment (a bpf_link fd, a perf event, a netlink
/// filter, …) a link may own what was set up for it and must go after it: a probe event bpfkit
/// defined in tracefs, USDT argument specs in a map, a semaphore raised in a process. Those are
/// its `guards`, dropped after the attachment itself. A USDT probe with several locations is one
/// `Link` whose [`members`](Link::members) are the uprobe of each location.
pub struct Link {
    // Field order matters: the attachment (and its members) close before the guards go.
    inner: Inner,
    what: String,
    path: AttachPath,
    guards: Vec<Box<dyn Guard>>,
    /// The tracefs probe event bpfkit defined for this link (its guard removes it).
    tracefs_event: Option<String>,
}

/// Something a [`Link`] keeps until after its attachment is gone; its `Drop` undoes it.
pub(crate) trait Guard: Send + Sync {}
impl<T: Send + Sync> Guard for T {}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("what", &self.what).field("path", &self.path).finish()
    }
}

/// What the kernel reports about a bpf_link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkInfo {
    /// `id`: the link's kernel id.
    pub id: u32,
    /// The link type, `None` when bpfkit does not know `raw_type`.
    pub link_type: Option<LinkType>,
    /// `type`, as the kernel reports it.
    pub raw_type: u32,
    /// `prog_id`: the id of the linked program.
    pub prog_id: u32,
}

impl Link {
    pub(crate) fn from_link_fd(fd: OwnedFd, what: String) -> Link {
        Link { inner: Inner::Fd(fd), what, path: AttachPath::BpfLink, guards: Vec::new(), tracefs_event: None }
    }
    pub(crate) fn from_perf_ioctl(event: OwnedFd, what: String) -> Link {
        Link { inner: Inner::Perf { event }, what, path: AttachPath::PerfEventIoctl, guards: Vec::new(), tracefs_event: None }
    }
    /// A `BPF_PROG_ATTACH` attachment of `prog` to `target`, detached on drop.
    pub(crate) fn from_prog_attach(target: OwnedFd, prog: OwnedFd, attach_type: u32, what: String) -> Link {
        Link { inner: Inner::ProgAttach { target, prog, attach_type }, what, path: AttachPath::ProgAttach, guards: Vec::new(), tracefs_event: None }
    }

    pub(crate) fn from_netlink(attachment: NetlinkAttachment, what: String) -> Link {
        Link { inner: Inner::Netlink(attachment), what, path: AttachPath::Netlink, guards: Vec::new(), tracefs_event: None }
    }
    pub(crate) fn from_socket_filter(sock: OwnedFd, what: String) -> Link {
        Link { inner: Inner::SocketFilter { sock }, what, path: AttachPath::SocketOption, guards: Vec::new(), tracefs_event: None }
    }

    /// Several attachments made as one: the group's `path` is its first member's.
    pub(crate) fn group(members: Vec<Link>, what: String) -> Link {
        let path = members.first().map_or(AttachPath::BpfLink, |m| m.path);
        Link { inner: Inner::Group(members), what, path, guards: Vec::new(), tracefs_event: None }
    }

    /// Keep `guard` until after the attachment is gone.
    pub(crate) fn guarded(mut self, guard: impl Guard + 'static) -> Link {
        self.guards.push(Box::new(guard));
        self
    }

    /// The link holds the tracefs probe event `group/name` bpfkit defined for it, removed by
    /// `guard` after the link's perf event closes.
    pub(crate) fn with_tracefs_event(mut self, event: String, guard: impl Guard + 'static) -> Link {
        self.tracefs_event = Some(event);
        self.guarded(guard)
    }

    /// Which mechanism holds this attachment.
    pub fn path(&self) -> AttachPath {
        self.path
    }

    /// The attachments of a group (each location of a USDT probe); empty for a single one.
    pub fn members(&self) -> &[Link] {
        match &self.inner {
            Inner::Group(members) => members,
            _ => &[],
        }
    }

    /// `tracepoint syscalls/sys_enter_getpid ← prog "count"`: what is attached where.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// The bpf_link's fd, if this attachment is a bpf_link (a group's: its first member's).
    pub fn link_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner {
            Inner::Fd(fd) => Some(fd.as_fd()),
            Inner::Group(members) => members.first().and_then(Link::link_fd),
            _ => None,
        }
    }

    fn not_a_bpf_link(&self, asked: &'static str) -> LinkError {
        LinkError::NotABpfLink { what: self.what.clone(), path: self.path, asked }
    }

    /// What the kernel reports about this bpf_link (a group's first member). Only bpf_links
    /// have kernel info: other attachments are [`LinkError::NotABpfLink`].
    pub fn info(&self) -> Result<LinkInfo, LinkError> {
        let fd = self.link_fd().ok_or_else(|| self.not_a_bpf_link("info"))?;
        link_info(fd).map_err(|source| SysError::new(format!("obj_get_info_by_fd(link {})", self.what), source).into())
    }

    /// Pin the bpf_link at `path` on a bpffs: the attachment then outlives this process.
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<(), LinkError> {
        if matches!(self.inner, Inner::Group(_)) {
            return Err(self.not_a_bpf_link("a pin (a group of links has no one fd to pin)"));
        }
        let fd = self.link_fd().ok_or_else(|| self.not_a_bpf_link("a pin"))?;
        Ok(sys::obj_pin(fd, path.as_ref())?)
    }

    /// `bpfkit/<name>`, when this probe went through tracefs' probe-events file (the kernel had
    /// no kprobe/uprobe PMU): bpfkit defined that event, and removes it after the link goes.
    pub fn tracefs_event(&self) -> Option<String> {
        self.tracefs_event.clone()
    }

    /// Remove a link's pin (the link detaches once no fd and no pin holds it).
    pub fn unpin(path: impl AsRef<Path>) -> Result<(), LinkError> {
        Ok(sys::unpin(path.as_ref())?)
    }

    /// Open a pinned bpf_link.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Link, LinkError> {
        let fd = sys::obj_get(path.as_ref())?;
        Ok(Link::from_link_fd(fd, format!("pinned link {}", path.as_ref().display())))
    }

    /// Open the bpf_link with kernel id `id`.
    pub fn from_id(id: u32) -> Result<Link, LinkError> {
        let fd = sys::fd_by_id(Cmd::LinkGetFdById, id).map_err(|source| SysError::new(format!("link_get_fd_by_id({id})"), source))?;
        Ok(Link::from_link_fd(fd, format!("link id {id}")))
    }

    /// Ids of every bpf_link in the kernel.
    pub fn all_ids() -> Result<Vec<u32>, LinkError> {
        Ok(sys::all_ids(Cmd::LinkGetNextId).map_err(|source| SysError::new("link_get_next_id".into(), source))?)
    }

    /// Detach now (`BPF_LINK_DETACH` for bpf_links, which also detaches pinned copies; the
    /// netlink request for netlink attachments, reporting the kernel's refusal), and release
    /// the attachment.
    pub fn detach(mut self) -> Result<(), LinkError> {
        match &mut self.inner {
            Inner::Fd(fd) => {
                let mut attr = sys::LinkDetachAttr { link_fd: fd.as_raw_fd() as u32 };
                sys::bpf(Cmd::LinkDetach, &mut attr).map_err(|source| SysError::new(format!("link_detach({})", self.what), source))?;
            }
            Inner::Netlink(attachment) => attachment.detach()?,
            Inner::Group(members) => {
                for m in std::mem::take(members) {
                    m.detach()?;
                }
            }
            _ => {}
        }
        drop(self);
        Ok(())
    }
}

pub(crate) fn link_info(fd: BorrowedFd<'_>) -> std::io::Result<LinkInfo> {
    let raw: LinkInfoRaw = sys::info_by_fd(fd, |_| {})?;
    Ok(LinkInfo { id: raw.id, link_type: LinkType::from_raw(raw.link_type), raw_type: raw.link_type, prog_id: raw.prog_id })
}

impl Drop for Link {
    fn drop(&mut self) {
        match &mut self.inner {
            // Closing the fd (OwnedFd's drop) releases the link.
            Inner::Fd(_) => {}
            // Stop the event before closing it so no further run starts.
            Inner::Perf { event } => {
                let _ = sys::perf_event_disable(event.as_fd());
            }
            Inner::ProgAttach { target, prog, attach_type } => {
                let _ = sys::prog_detach(prog.as_fd(), target.as_fd(), *attach_type);
            }
            // A failure means nothing is left to undo (detached already, or the device is gone).
            Inner::Netlink(attachment) => {
                let _ = attachment.detach();
            }
            Inner::SocketFilter { sock } => {
                let _ = sys::socket_detach_bpf(sock.as_fd());
            }
            // The members detach as they drop (with the field, before the guards).
            Inner::Group(_) => {}
        }
    }
}

crate::error::errno_from_sources!(LinkError);
