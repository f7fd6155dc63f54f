//! XDP on a network device: an XDP bpf_link (`BPF_LINK_CREATE`, kernel ≥ 5.9), or the older
//! netlink attachment (`RTM_SETLINK` with `IFLA_XDP`), which is also what a kernel without XDP
//! links gets. Either path takes a mode: generic (skb), native (driver), offloaded, or the
//! kernel's choice. Interfaces are named by index in the calling thread's network namespace
//! ([`ifindex`] turns a name into one); a netlink attachment keeps its netlink socket, so it is
//! removed from the right namespace whichever thread drops it. The helpers `tc` and `socket`
//! share (naming an interface, checking a program's type, `BPF_LINK_CREATE` attributes) live
//! here too.

use std::os::fd::{AsFd, AsRawFd};

use super::link::{AttachPath, Link, LinkError};
use crate::prog::{AttachType, ProgType, Program};
use crate::sys::netlink::{self, Netlink, NetlinkAttachment, XdpState};
use crate::sys::{self, Cmd, LinkCreateAttr, SysError};

/// Where on the device the XDP program runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum XdpMode {
    /// Native if the driver has XDP support, generic otherwise (no mode flag).
    #[default]
    Auto,
    /// Generic XDP (`XDP_FLAGS_SKB_MODE`): after the skb is built; works on any device.
    Generic,
    /// Native XDP (`XDP_FLAGS_DRV_MODE`): in the driver, before any skb (veth has it).
    Native,
    /// Offloaded to the NIC (`XDP_FLAGS_HW_MODE`); the program must be loaded for the device.
    Offload,
}

impl XdpMode {
    /// The `XDP_FLAGS_*_MODE` bit, for links and netlink alike.
    pub fn flags(self) -> u32 {
        match self {
            XdpMode::Auto => 0,
            XdpMode::Generic => netlink::XDP_FLAGS_SKB_MODE,
            XdpMode::Native => netlink::XDP_FLAGS_DRV_MODE,
            XdpMode::Offload => netlink::XDP_FLAGS_HW_MODE,
        }
    }

    /// The mode's short name (`auto`, `generic`, `native`, `offload`).
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Generic => "generic",
            XdpMode::Native => "native",
            XdpMode::Offload => "offload",
        }
    }
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32, LinkError> {
    netlink::if_index(name).map_err(|e| LinkError::Target {
        what: format!("interface {name:?}"),
        message: format!("{} (not in this network namespace?)", sys::describe_io_error(&e)),
    })
}

/// `"veth0" (ifindex 4)`, or `ifindex 4` when the index names no interface here.
pub(super) fn describe_ifindex(ifindex: u32) -> String {
    match netlink::if_name(ifindex) {
        Ok(name) => format!("{name:?} (ifindex {ifindex})"),
        Err(_) => format!("ifindex {ifindex}"),
    }
}

/// Refuse what the kernel would refuse with a bare errno: an index of 0, a program of the
/// wrong type.
pub(super) fn check_target(prog: &Program, want: &[ProgType], ifindex: u32, what: &str) -> Result<(), LinkError> {
    if ifindex == 0 {
        return Err(LinkError::Target { what: what.to_string(), message: "ifindex 0 names no interface".into() });
    }
    check_prog_type(prog, want, what)
}

pub(super) fn check_prog_type(prog: &Program, want: &[ProgType], what: &str) -> Result<(), LinkError> {
    if !want.contains(&prog.prog_type()) {
        let want: Vec<&str> = want.iter().map(|t| t.name()).collect();
        return Err(LinkError::Target { what: what.to_string(), message: format!("needs a {} program, not {}", want.join(" or "), prog.prog_type()) });
    }
    Ok(())
}

/// `BPF_LINK_CREATE`'s attributes for `prog` on `target` (an fd, or an ifindex).
pub(super) fn link_attr(prog: &Program, target: u32, attach_type: AttachType, flags: u32) -> LinkCreateAttr {
    LinkCreateAttr { prog_fd: prog.as_fd().as_raw_fd() as u32, target_fd: target, attach_type: attach_type.raw(), flags, ..Default::default() }
}

/// Open a route netlink socket in this thread's network namespace.
pub(super) fn open_netlink(what: &str) -> Result<Netlink, LinkError> {
    Netlink::open().map_err(|source| SysError::new(format!("socket(AF_NETLINK, NETLINK_ROUTE) for {what}"), source).into())
}

/// What interface `ifindex` reports about XDP: the mode and the attached programs' ids.
pub fn xdp_state(ifindex: u32) -> Result<XdpState, LinkError> {
    let what = format!("xdp state of {}", describe_ifindex(ifindex));
    Ok(open_netlink(&what)?.link(ifindex)?.xdp)
}

impl Program {
    /// Attach this XDP program to interface `ifindex` in `mode` with a bpf_link (over netlink
    /// on kernels without XDP links; [`Link::path`] says which).
    pub fn attach_xdp(&self, ifindex: u32, mode: XdpMode) -> Result<Link, LinkError> {
        self.attach_xdp_via(ifindex, mode, AttachPath::BpfLink)
    }

    /// Attach with a chosen mechanism: `BpfLink` (falling back to netlink when the kernel
    /// refuses XDP links with EINVAL) or `Netlink` directly. The netlink path never replaces a
    /// program already attached (`XDP_FLAGS_UPDATE_IF_NOEXIST`), and on drop removes only its own
    /// (`XDP_FLAGS_REPLACE` with the expected program).
    pub fn attach_xdp_via(&self, ifindex: u32, mode: XdpMode, path: AttachPath) -> Result<Link, LinkError> {
        let what = format!("xdp {} on {} ← {}", mode.name(), describe_ifindex(ifindex), self.describe());
        check_target(self, &[ProgType::Xdp], ifindex, &what)?;
        match path {
            AttachPath::BpfLink => {
                match sys::bpf_fd(Cmd::LinkCreate, &mut link_attr(self, ifindex, AttachType::Xdp, mode.flags())) {
                    Ok(fd) => Ok(Link::from_link_fd(fd, what)),
                    // No XDP links before 5.9. Other EINVALs (bad flags) get netlink's own
                    // explanation from the same attempt over netlink.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.attach_xdp_netlink(ifindex, mode, what),
                    Err(source) => Err(SysError::new(format!("link_create({what}){}", xdp_hint(source.raw_os_error())), source).into()),
                }
            }
            AttachPath::Netlink => self.attach_xdp_netlink(ifindex, mode, what),
            other => Err(LinkError::Target { what, message: format!("XDP attaches with a bpf_link or over netlink, not {other:?}") }),
        }
    }

    fn attach_xdp_netlink(&self, ifindex: u32, mode: XdpMode, what: String) -> Result<Link, LinkError> {
        let nl = open_netlink(&what)?;
        let prog = crate::sys::dup(self.as_fd(), &what)?;
        nl.set_xdp(&what, ifindex, prog.as_raw_fd(), mode.flags() | netlink::XDP_FLAGS_UPDATE_IF_NOEXIST, None)?;
        Ok(Link::from_netlink(NetlinkAttachment::xdp(nl, what.clone(), ifindex, prog, mode.flags()), what))
    }
}

/// bpf(2) gives no message with its errno; say what the usual ones mean for XDP links.
fn xdp_hint(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EBUSY) => " [another XDP program or link holds this device and mode]",
        Some(libc::ENODEV) => " [no such interface in this network namespace]",
        Some(libc::EOPNOTSUPP) => " [the driver has no XDP in this mode]",
        _ => "",
    }
}
