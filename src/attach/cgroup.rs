//! cgroup attach points (skb ingress/egress, sock create, sock_addr hooks, sockopt, sysctl,
//! device, sock_ops): a cgroup bpf_link (`BPF_LINK_CREATE`, kernel ≥ 5.7), or `BPF_PROG_ATTACH`
//! with `BPF_F_ALLOW_MULTI` on older kernels. Either way the [`Link`] detaches on drop.

use std::os::fd::{AsFd, AsRawFd};

use super::link::{AttachPath, Link, LinkError};
use crate::prog::{AttachType, Program};
use crate::sys::{self, Cmd, LinkCreateAttr, SysError};

/// How a program attached to a cgroup shares the hook with programs of the same cgroup and of
/// its descendants (the `attach_flags` of `BPF_PROG_ATTACH`).
///
/// | mode | at this cgroup | a descendant may attach | a process in the descendant runs |
/// |---|---|---|---|
/// | `Exclusive` (0) | this program only | nothing (EPERM) | this program |
/// | `AllowOverride` | this program only | its own program | the descendant's, instead of this one |
/// | `Multi` | up to 64 programs | more programs (multi only) | the descendant's, then this cgroup's |
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupAttachMode {
    /// No flag: the only program at this hook, and the final word for every descendant.
    Exclusive,
    /// `BPF_F_ALLOW_OVERRIDE`: the only program here; a descendant's program replaces it there.
    AllowOverride,
    /// `BPF_F_ALLOW_MULTI`: programs accumulate; each ancestor's runs after the cgroup's own.
    /// A cgroup bpf_link always attaches this way.
    #[default]
    Multi,
}

impl CgroupAttachMode {
    /// The `attach_flags` bits.
    pub fn flags(self) -> u32 {
        match self {
            CgroupAttachMode::Exclusive => 0,
            CgroupAttachMode::AllowOverride => 1 << 0,
            CgroupAttachMode::Multi => 1 << 1,
        }
    }
}

/// How [`Program::attach_cgroup_with`] attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupOptions {
    /// `BpfLink` (falls back to `ProgAttach` on kernels without cgroup links) or `ProgAttach`.
    pub path: AttachPath,
    /// Sharing with other programs. Anything but `Multi` needs `BPF_PROG_ATTACH` (a bpf_link is
    /// always multi), so it is attached that way whatever `path` says.
    pub mode: CgroupAttachMode,
}

impl Default for CgroupOptions {
    fn default() -> Self {
        CgroupOptions { path: AttachPath::BpfLink, mode: CgroupAttachMode::Multi }
    }
}

impl Program {
    /// Attach to the cgroup v2 directory open as `cgroup` at hook `attach_type`, with a bpf_link.
    pub fn attach_cgroup(&self, cgroup: impl AsFd, attach_type: AttachType) -> Result<Link, LinkError> {
        self.attach_cgroup_via(cgroup, attach_type, AttachPath::BpfLink)
    }

    /// Attach with a chosen mechanism: `BpfLink` (falls back to `ProgAttach` on kernels without
    /// cgroup links) or `ProgAttach` directly.
    pub fn attach_cgroup_via(&self, cgroup: impl AsFd, attach_type: AttachType, path: AttachPath) -> Result<Link, LinkError> {
        self.attach_cgroup_with(cgroup, attach_type, &CgroupOptions { path, ..Default::default() })
    }

    /// Attach with a chosen mechanism and sharing mode ([`CgroupAttachMode`]).
    pub fn attach_cgroup_with(&self, cgroup: impl AsFd, attach_type: AttachType, options: &CgroupOptions) -> Result<Link, LinkError> {
        let what = format!("cgroup fd {} {attach_type} ({:?}) ← {}", cgroup.as_fd().as_raw_fd(), options.mode, self.describe());
        if options.path == AttachPath::BpfLink && options.mode == CgroupAttachMode::Multi {
            let mut attr = LinkCreateAttr {
                prog_fd: self.as_fd().as_raw_fd() as u32,
                target_fd: cgroup.as_fd().as_raw_fd() as u32,
                attach_type: attach_type.raw(),
                ..Default::default()
            };
            match sys::bpf_fd(Cmd::LinkCreate, &mut attr) {
                Ok(fd) => return Ok(Link::from_link_fd(fd, what)),
                Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                    return Err(SysError::new(format!("link_create({what})"), e).into());
                }
                Err(_) => {} // no cgroup links: fall back to PROG_ATTACH
            }
        }
        let dup = |fd: std::os::fd::BorrowedFd<'_>| crate::sys::dup(fd, &what);
        sys::prog_attach(self.as_fd(), cgroup.as_fd(), attach_type.raw(), options.mode.flags())
            .map_err(|source| SysError::new(format!("prog_attach({what})"), source))?;
        Ok(Link::from_prog_attach(dup(cgroup.as_fd())?, dup(self.as_fd())?, attach_type.raw(), what))
    }
}
