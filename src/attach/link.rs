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
        RawTracepoint = 1, "raw_tracepoint";
        Tracing = 2, "tracing";
        Cgroup = 3, "cgroup";
        Iter = 4, "iter";
        Netns = 5, "netns";
        Xdp = 6, "xdp";
        PerfEvent = 7, "perf_event";
        KprobeMulti = 8, "kprobe_multi";
        StructOps = 9, "struct_ops";
        Netfilter = 10, "netfilter";
        Tcx = 11, "tcx";
        UprobeMulti = 12, "uprobe_multi";
        Netkit = 13, "netkit";
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
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("{what}: {message}")]
    Target { what: String, message: String },
    #[error("{0} cannot be pinned: only bpf_links can (this attachment took the {1:?} path)")]
    NotPinnable(String, AttachPath),
}

enum Inner {
    Fd(OwnedFd),
    Perf { event: OwnedFd },
    ProgAttach { target: OwnedFd, prog: OwnedFd, attach_type: u32 },
    Netlink(NetlinkAttachment),
    /// A socket filter: a duplicate of the socket's fd, to detach from (it keeps the socket open).
    SocketFilter { sock: OwnedFd },
}

/// An attachment this process owns.
pub struct Link {
    inner: Inner,
    what: String,
    path: AttachPath,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("what", &self.what).field("path", &self.path).finish()
    }
}

/// What the kernel reports about a bpf_link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkInfo {
    pub id: u32,
    pub link_type: Option<LinkType>,
    pub raw_type: u32,
    pub prog_id: u32,
}

impl Link {
    pub(crate) fn from_link_fd(fd: OwnedFd, what: String) -> Link {
        Link { inner: Inner::Fd(fd), what, path: AttachPath::BpfLink }
    }
    pub(crate) fn from_perf_ioctl(event: OwnedFd, what: String) -> Link {
        Link { inner: Inner::Perf { event }, what, path: AttachPath::PerfEventIoctl }
    }
    /// A `BPF_PROG_ATTACH` attachment of `prog` to `target`, detached on drop.
    pub(crate) fn from_prog_attach(target: OwnedFd, prog: OwnedFd, attach_type: u32, what: String) -> Link {
        Link { inner: Inner::ProgAttach { target, prog, attach_type }, what, path: AttachPath::ProgAttach }
    }

    pub(crate) fn from_netlink(attachment: NetlinkAttachment, what: String) -> Link {
        Link { inner: Inner::Netlink(attachment), what, path: AttachPath::Netlink }
    }
    pub(crate) fn from_socket_filter(sock: OwnedFd, what: String) -> Link {
        Link { inner: Inner::SocketFilter { sock }, what, path: AttachPath::SocketOption }
    }

    /// Which mechanism holds this attachment.
    pub fn path(&self) -> AttachPath {
        self.path
    }

    /// `tracepoint syscalls/sys_enter_getpid ← prog "count"`: what is attached where.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// The bpf_link's fd, if this attachment is a bpf_link.
    pub fn link_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner {
            Inner::Fd(fd) => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// What the kernel reports about this bpf_link.
    pub fn info(&self) -> Result<LinkInfo, LinkError> {
        let fd = self.link_fd().ok_or_else(|| LinkError::NotPinnable(self.what.clone(), self.path))?;
        link_info(fd).map_err(|source| SysError::new(format!("obj_get_info_by_fd(link {})", self.what), source).into())
    }

    /// Pin the bpf_link at `path` on a bpffs: the attachment then outlives this process.
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<(), LinkError> {
        let fd = self.link_fd().ok_or_else(|| LinkError::NotPinnable(self.what.clone(), self.path))?;
        Ok(sys::obj_pin(fd, path.as_ref())?)
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
                let _ = sys::netlink::socket_detach_bpf(sock.as_fd());
            }
        }
    }
}

crate::error::errno_from_sources!(LinkError);
