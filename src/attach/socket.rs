//! Socket-level attach points:
//! - socket filters on one socket (`SO_ATTACH_BPF`; drop: `SO_DETACH_BPF`);
//! - sk_msg and sk_skb programs on a sockmap or sockhash: a sockmap bpf_link (kernel ≥ 6.10),
//!   else `BPF_PROG_ATTACH` to the map;
//! - network-namespace hooks, sk_lookup and flow dissector: a netns bpf_link on a namespace fd;
//! - netfilter hooks (`BPF_LINK_CREATE` with `BPF_NETFILTER`, kernel ≥ 6.4) in the calling
//!   thread's namespace.

use std::os::fd::{AsFd, AsRawFd};

use super::link::{AttachPath, Link, LinkError};
use super::xdp::{check_prog_type, link_attr};
use crate::maps::{Map, MapType};
use crate::prog::{AttachType, ProgType, Program};
use crate::sys::{self, Cmd, NetfilterLink, SysError};

/// The protocol family of a netfilter hook (`NFPROTO_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfFamily {
    /// `NFPROTO_IPV4`.
    Ipv4 = 2,
    /// `NFPROTO_IPV6`.
    Ipv6 = 10,
}

/// A netfilter hook (`NF_INET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfHook {
    /// `NF_INET_PRE_ROUTING`: packets as they arrive, before routing.
    PreRouting = 0,
    /// `NF_INET_LOCAL_IN`: packets routed to this host.
    LocalIn = 1,
    /// `NF_INET_FORWARD`: packets routed through this host.
    Forward = 2,
    /// `NF_INET_LOCAL_OUT`: packets this host sends.
    LocalOut = 3,
    /// `NF_INET_POST_ROUTING`: packets about to leave, after routing.
    PostRouting = 4,
}

/// Where a netfilter program runs: family, hook and priority (lower runs first; the kernel
/// refuses `INT_MIN` and `INT_MAX`, reserved for its first and last hooks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetfilterHook {
    /// The protocol family (`pf` of the netfilter link).
    pub family: NfFamily,
    /// The hook (`hooknum`).
    pub hook: NfHook,
    /// The priority (`priority`); lower runs first.
    pub priority: i32,
    /// `BPF_F_NETFILTER_IP_DEFRAG`: see reassembled packets (priority must then be above
    /// `NF_IP_PRI_CONNTRACK_DEFRAG`, -400).
    pub defrag: bool,
}

impl NetfilterHook {
    /// A hook at `family`, `hook` and `priority`, without defragmentation.
    pub fn new(family: NfFamily, hook: NfHook, priority: i32) -> NetfilterHook {
        NetfilterHook { family, hook, priority, defrag: false }
    }
    /// Set `BPF_F_NETFILTER_IP_DEFRAG` (kernel 6.6+): the program sees reassembled packets.
    pub fn defrag(mut self, yes: bool) -> NetfilterHook {
        self.defrag = yes;
        self
    }
}

/// `BPF_F_NETFILTER_IP_DEFRAG`.
const NETFILTER_IP_DEFRAG: u32 = 1;

impl Program {
    /// Attach this socket filter to `sock` (`SO_ATTACH_BPF`, replacing the socket's filter).
    /// The program's return value is how many bytes of the packet the socket keeps (0 drops it).
    /// The [`Link`] holds a duplicate of the socket's fd, so the socket stays open until both
    /// are closed; dropping the link removes the filter.
    pub fn attach_socket_filter(&self, sock: impl AsFd) -> Result<Link, LinkError> {
        let what = format!("socket fd {} ← {}", sock.as_fd().as_raw_fd(), self.describe());
        check_prog_type(self, &[ProgType::SocketFilter], &what)?;
        sys::socket_attach_bpf(sock.as_fd(), self.as_fd()).map_err(|source| SysError::new(format!("setsockopt(SO_ATTACH_BPF, {what})"), source))?;
        let dup = sys::dup(sock.as_fd(), &what).inspect_err(|_| {
            // Without an fd to detach through, leave nothing behind.
            let _ = sys::socket_detach_bpf(sock.as_fd());
        })?;
        Ok(Link::from_socket_filter(dup, what))
    }

    /// Attach an sk_msg (`SkMsgVerdict`) or sk_skb (`SkSkbStreamVerdict`, `SkSkbStreamParser`,
    /// `SkSkbVerdict`) program to the sockets of sockmap or sockhash `map`, with a bpf_link.
    /// A socket takes the map's programs when it is added, so attach before adding sockets;
    /// likewise detaching concerns the sockets added afterwards (the kernel's rule).
    pub fn attach_sockmap(&self, map: &Map, attach_type: AttachType) -> Result<Link, LinkError> {
        self.attach_sockmap_via(map, attach_type, AttachPath::BpfLink)
    }

    /// Attach with a chosen mechanism: `BpfLink` (falling back to `ProgAttach` on kernels
    /// without sockmap links, before 6.10) or `ProgAttach` directly.
    pub fn attach_sockmap_via(&self, map: &Map, attach_type: AttachType, path: AttachPath) -> Result<Link, LinkError> {
        let what = format!("{} {attach_type} ← {}", map.describe(), self.describe());
        let want = match attach_type {
            AttachType::SkMsgVerdict => ProgType::SkMsg,
            AttachType::SkSkbStreamVerdict | AttachType::SkSkbStreamParser | AttachType::SkSkbVerdict => ProgType::SkSkb,
            _ => return Err(LinkError::Target { what, message: "a sockmap takes sk_msg_verdict, sk_skb_stream_verdict, sk_skb_stream_parser or sk_skb_verdict".into() }),
        };
        check_prog_type(self, &[want], &what)?;
        if !matches!(map.map_type(), MapType::Sockmap | MapType::Sockhash) {
            return Err(LinkError::Target { what, message: format!("needs a sockmap or sockhash, not a {}", map.map_type()) });
        }
        if path == AttachPath::BpfLink {
            match sys::bpf_fd(Cmd::LinkCreate, &mut link_attr(self, map.as_fd().as_raw_fd() as u32, attach_type, 0)) {
                Ok(fd) => return Ok(Link::from_link_fd(fd, what)),
                Err(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(SysError::new(format!("link_create({what})"), e).into()),
                Err(_) => {} // no sockmap links: fall back to PROG_ATTACH
            }
        } else if path != AttachPath::ProgAttach {
            return Err(LinkError::Target { what, message: format!("a sockmap attaches with a bpf_link or BPF_PROG_ATTACH, not {path:?}") });
        }
        sys::prog_attach(self.as_fd(), map.as_fd(), attach_type.raw(), 0).map_err(|source| SysError::new(format!("prog_attach({what})"), source))?;
        let dup = |fd: std::os::fd::BorrowedFd<'_>| crate::sys::dup(fd, &what);
        let (target, prog) = match (dup(map.as_fd()), dup(self.as_fd())) {
            (Ok(t), Ok(p)) => (t, p),
            (Err(e), _) | (_, Err(e)) => {
                let _ = sys::prog_detach(self.as_fd(), map.as_fd(), attach_type.raw());
                return Err(e.into());
            }
        };
        Ok(Link::from_prog_attach(target, prog, attach_type.raw(), what))
    }

    /// Attach an sk_lookup (`SkLookup`) or flow dissector (`FlowDissector`) program to the
    /// network namespace open as `netns` (e.g. [`crate::net::NetNs`], `/proc/self/ns/net`) with a netns
    /// bpf_link (kernel ≥ 5.8 / 5.9).
    pub fn attach_netns(&self, netns: impl AsFd, attach_type: AttachType) -> Result<Link, LinkError> {
        let what = format!("netns fd {} {attach_type} ← {}", netns.as_fd().as_raw_fd(), self.describe());
        let want = match attach_type {
            AttachType::SkLookup => ProgType::SkLookup,
            AttachType::FlowDissector => ProgType::FlowDissector,
            _ => return Err(LinkError::Target { what, message: "a network namespace takes sk_lookup or flow_dissector programs".into() }),
        };
        check_prog_type(self, &[want], &what)?;
        let mut attr = link_attr(self, netns.as_fd().as_raw_fd() as u32, attach_type, 0);
        let fd = sys::bpf_fd(Cmd::LinkCreate, &mut attr).map_err(|source| SysError::new(format!("link_create({what})"), source))?;
        Ok(Link::from_link_fd(fd, what))
    }

    /// Attach this netfilter program at `hook` in the calling thread's network namespace.
    /// Its return value is the verdict (`NF_DROP` 0, `NF_ACCEPT` 1).
    pub fn attach_netfilter(&self, hook: NetfilterHook) -> Result<Link, LinkError> {
        let what = format!("netfilter {:?} {:?} priority {}{} ← {}", hook.family, hook.hook, hook.priority, if hook.defrag { " defrag" } else { "" }, self.describe());
        check_prog_type(self, &[ProgType::Netfilter], &what)?;
        let mut attr = link_attr(self, 0, AttachType::Netfilter, 0);
        attr.set_target(NetfilterLink {
            pf: hook.family as u32,
            hooknum: hook.hook as u32,
            priority: hook.priority,
            flags: if hook.defrag { NETFILTER_IP_DEFRAG } else { 0 },
        });
        let fd = sys::bpf_fd(Cmd::LinkCreate, &mut attr).map_err(|source| SysError::new(format!("link_create({what})"), source))?;
        Ok(Link::from_link_fd(fd, what))
    }
}
