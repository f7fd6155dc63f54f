//! cgroup attach points (skb ingress/egress, sock create, sock_addr hooks, sockopt, sysctl,
//! device, sock_ops): a cgroup bpf_link (`BPF_LINK_CREATE`, kernel ≥ 5.7), or `BPF_PROG_ATTACH`
//! with `BPF_F_ALLOW_MULTI` on older kernels. Either way the [`Link`] detaches on drop.

use std::os::fd::{AsFd, AsRawFd};

use super::link::{AttachPath, Link, LinkError};
use crate::prog::{AttachType, Program};
use crate::sys::{self, Cmd, LinkCreateAttr, SysError};

/// `BPF_F_ALLOW_MULTI`: other programs may stay attached to the same cgroup and hook.
const ALLOW_MULTI: u32 = 1 << 1;

impl Program {
    /// Attach to the cgroup v2 directory open as `cgroup` at hook `attach_type`, with a bpf_link.
    pub fn attach_cgroup(&self, cgroup: impl AsFd, attach_type: AttachType) -> Result<Link, LinkError> {
        self.attach_cgroup_via(cgroup, attach_type, AttachPath::BpfLink)
    }

    /// Attach with a chosen mechanism: `BpfLink` (falls back to `ProgAttach` on kernels without
    /// cgroup links) or `ProgAttach` directly.
    pub fn attach_cgroup_via(&self, cgroup: impl AsFd, attach_type: AttachType, path: AttachPath) -> Result<Link, LinkError> {
        let what = format!("cgroup fd {} {attach_type} ← {}", cgroup.as_fd().as_raw_fd(), self.describe());
        if path == AttachPath::BpfLink {
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
        sys::prog_attach(self.as_fd(), cgroup.as_fd(), attach_type.raw(), ALLOW_MULTI)
            .map_err(|source| SysError::new(format!("prog_attach({what})"), source))?;
        Ok(Link::from_prog_attach(dup(cgroup.as_fd())?, dup(self.as_fd())?, attach_type.raw(), what))
    }
}
