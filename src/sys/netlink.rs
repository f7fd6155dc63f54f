//! rtnetlink (`NETLINK_ROUTE`), and the few socket calls the networking attach points need
//! besides: XDP set/query on a device (`IFLA_XDP`), the clsact qdisc and cls_bpf filters
//! (`TCA_BPF_*`), veth pairs, addresses and link state for test namespaces, `SO_ATTACH_BPF`, and
//! interface name ⇄ index.
//!
//! Messages are encoded by hand: the handful bpfkit sends are a fixed header plus a few
//! type-length-value attributes, which a 60-line builder covers. `netlink-packet-route` would
//! bring four crates and still has no cls_bpf options (`TCA_BPF_FD`, `TCA_BPF_FLAGS`), so the
//! filter messages would be hand-built anyway.
//!
//! Every request asks for an acknowledgement and for extended acks (`NETLINK_EXT_ACK`): a
//! refusal carries the kernel's own sentence (`NLMSGERR_ATTR_MSG`), which [`NetlinkError`]
//! shows after the errno. A socket belongs to the network namespace of the thread that opened
//! it, for its whole life; that is why attachments keep theirs ([`NetlinkAttachment`]).

use std::ffi::{CStr, CString};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::describe_io_error;

// <linux/netlink.h>
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_ECHO: u16 = 0x8;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
/// In an ack: the echoed request is cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// In an ack: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;

// <linux/rtnetlink.h>
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWQDISC: u16 = 36;
const RTM_DELQDISC: u16 = 37;
const RTM_GETQDISC: u16 = 38;
const RTM_NEWTFILTER: u16 = 44;
const RTM_DELTFILTER: u16 = 45;
const RTM_GETTFILTER: u16 = 46;

// <linux/if_link.h>
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_XDP: u16 = 43;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const IFLA_XDP_EXPECTED_FD: u16 = 8;
/// Fail rather than replace a program already attached.
pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1 << 0;
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
pub const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
/// Replace (or remove) only if the attached program is `IFLA_XDP_EXPECTED_FD`'s.
pub const XDP_FLAGS_REPLACE: u32 = 1 << 4;
const IFF_UP: u32 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_ADDRESS: u16 = 1;

// <linux/pkt_sched.h>, <linux/pkt_cls.h>
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_FD: u16 = 6;
const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_FLAGS: u16 = 8;
const TCA_BPF_ID: u16 = 11;
const TCA_BPF_FLAG_ACT_DIRECT: u32 = 1;
/// `TC_H_ROOT`: the parent of a device's root (egress) qdisc.
const TC_H_ROOT: u32 = 0xffff_ffff;
/// `TC_H_CLSACT` (= `TC_H_INGRESS`): the clsact qdisc's parent.
const TC_H_CLSACT: u32 = 0xffff_fff1;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)`: the parent of ingress filters.
pub const TC_PARENT_INGRESS: u32 = 0xffff_fff2;
/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)`: the parent of egress filters.
pub const TC_PARENT_EGRESS: u32 = 0xffff_fff3;
/// `htons(ETH_P_ALL)`: the filter sees every protocol.
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();

/// How long a request waits for the kernel's answer before giving up.
const REPLY_TIMEOUT_SECS: libc::time_t = 10;

/// A refused or failed netlink request: what was asked, the errno, and the kernel's
/// extended-ack message when it gave one.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {}{}", describe_io_error(.source), .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
#[non_exhaustive]
pub struct NetlinkError {
    /// The request, naming its object: `RTM_SETLINK xdp (ifindex 4 "veth1", native)`.
    pub op: String,
    /// The errno of the failed send, receive or `NLMSG_ERROR` reply.
    #[source]
    pub source: io::Error,
    /// `NLMSGERR_ATTR_MSG`: the kernel's explanation, e.g. `XDP program already attached`.
    pub message: Option<String>,
}

impl NetlinkError {
    /// The errno the kernel answered with, if the error carries one.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
    fn io(op: &str, source: io::Error) -> NetlinkError {
        NetlinkError { op: op.to_string(), source, message: None }
    }
    fn malformed(op: &str, what: &str) -> NetlinkError {
        NetlinkError::io(op, io::Error::new(io::ErrorKind::InvalidData, format!("malformed netlink reply: {what}")))
    }
}

/// A request under construction: `nlmsghdr`, the family header, then attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, family_header: &[u8]) -> Msg {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(family_header);
        let mut m = Msg(b);
        m.align();
        m
    }
    fn align(&mut self) {
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }
    fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Msg {
        self.0.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.align();
        self
    }
    fn u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }
    fn str(&mut self, ty: u16, s: &CStr) -> &mut Msg {
        self.attr(ty, s.to_bytes_with_nul())
    }
    /// A nested attribute holding what `fill` adds.
    fn nest(&mut self, ty: u16, fill: impl FnOnce(&mut Msg)) -> &mut Msg {
        let start = self.0.len();
        self.attr(ty | NLA_F_NESTED, &[]);
        fill(self);
        let len = (self.0.len() - start) as u16;
        self.0[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }
    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.0
    }
}

/// A request the kernel acknowledges (so the answer ends, and a refusal is reported).
fn acked(ty: u16, flags: u16, header: &[u8]) -> Msg {
    Msg::new(ty, flags | NLM_F_ACK, header)
}

/// `struct ifinfomsg`.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// `struct tcmsg`.
fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    h[8..12].copy_from_slice(&handle.to_ne_bytes());
    h[12..16].copy_from_slice(&parent.to_ne_bytes());
    h[16..20].copy_from_slice(&info.to_ne_bytes());
    h
}

/// `tcm_info` of a filter: priority in the high half, protocol (network order) in the low.
fn filter_info(priority: u16) -> u32 {
    ((priority as u32) << 16) | ETH_P_ALL_BE as u32
}

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The attributes in `b`: `(type without flags, payload)`; stops at the first malformed one.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = ne_u16(b, 0)? as usize;
        let ty = ne_u16(b, 2)? & NLA_TYPE_MASK;
        let payload = b.get(4..len)?;
        b = b.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

fn attr_u32(b: &[u8], ty: u16) -> Option<u32> {
    attrs(b).find(|(t, _)| *t == ty).and_then(|(_, p)| ne_u32(p, 0))
}

fn attr_str(b: &[u8], ty: u16) -> Option<String> {
    attrs(b).find(|(t, _)| *t == ty).map(|(_, p)| super::c_name(p))
}

/// One reply message: its type and what follows its header.
struct Reply {
    ty: u16,
    body: Vec<u8>,
}

/// A `NETLINK_ROUTE` socket in the network namespace of the thread that opened it.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: AtomicU32,
}

impl Netlink {
    /// Open a route netlink socket, with extended acks and capped echoes of requests.
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: plain integer arguments; a new descriptor is returned or -1.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            // Older kernels lack these options; requests still work, only with plainer errors.
            let _ = super::socket::setsockopt_int(fd.as_fd(), libc::SOL_NETLINK, opt, 1);
        }
        let tv = libc::timeval { tv_sec: REPLY_TIMEOUT_SECS, tv_usec: 0 };
        // SAFETY: `tv` is a live `struct timeval` of the size passed.
        let ret = unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const libc::timeval as *const libc::c_void, std::mem::size_of::<libc::timeval>() as libc::socklen_t)
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink { fd, seq: AtomicU32::new(1) })
    }

    /// Send `msg` and collect the replies up to the ack (or, for dumps, `NLMSG_DONE`).
    fn request(&self, op: &str, msg: Msg) -> Result<Vec<Reply>, NetlinkError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let is_dump = ne_u16(&msg.0, 6).is_some_and(|f| f & NLM_F_DUMP == NLM_F_DUMP);
        let bytes = msg.finish(seq);
        // SAFETY: `bytes` is a live buffer of the length passed; with no address the message goes
        // to the kernel.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr() as *const libc::c_void, bytes.len(), 0) };
        if sent < 0 {
            return Err(NetlinkError::io(op, io::Error::last_os_error()));
        }
        let mut replies = Vec::new();
        loop {
            let buf = self.recv().map_err(|e| {
                let e = if e.kind() == io::ErrorKind::WouldBlock { io::Error::new(e.kind(), format!("no answer from the kernel in {REPLY_TIMEOUT_SECS} s")) } else { e };
                NetlinkError::io(op, e)
            })?;
            let mut rest = &buf[..];
            while rest.len() >= NLMSG_HDRLEN {
                let len = ne_u32(rest, 0).unwrap_or(0) as usize;
                if len < NLMSG_HDRLEN || len > rest.len() {
                    return Err(NetlinkError::malformed(op, &format!("message length {len} of {} bytes left", rest.len())));
                }
                let (ty, flags, msg_seq) = (ne_u16(rest, 4).unwrap_or(0), ne_u16(rest, 6).unwrap_or(0), ne_u32(rest, 8).unwrap_or(0));
                let body = &rest[NLMSG_HDRLEN..len];
                rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
                if msg_seq != seq {
                    continue; // a late answer to an earlier request that timed out
                }
                match ty {
                    NLMSG_ERROR | NLMSG_DONE => {
                        let code = ne_u32(body, 0).map(|c| c as i32).unwrap_or(0);
                        if code == 0 && (ty == NLMSG_DONE || !is_dump) {
                            return Ok(replies);
                        }
                        if code < 0 {
                            return Err(NetlinkError { op: op.to_string(), source: io::Error::from_raw_os_error(-code), message: ack_message(ty, flags, body) });
                        }
                    }
                    _ => replies.push(Reply { ty, body: body.to_vec() }),
                }
            }
        }
    }

    /// One datagram from the kernel, whatever its size.
    fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            // SAFETY: `buf` is a live buffer of the length passed. MSG_PEEK|MSG_TRUNC leaves the
            // datagram queued and returns its full length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_PEEK | libc::MSG_TRUNC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n as usize > buf.len() {
                buf.resize(n as usize, 0);
                continue;
            }
            // SAFETY: as above; this time the datagram, which fits, is taken off the queue.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            return Ok(buf);
        }
    }

    /// What `RTM_GETLINK` reports for interface `ifindex`.
    pub fn link(&self, ifindex: u32) -> Result<LinkState, NetlinkError> {
        let op = format!("RTM_GETLINK (ifindex {ifindex})");
        let replies = self.request(&op, acked(RTM_GETLINK, 0, &ifinfomsg(ifindex, 0, 0)))?;
        let reply = replies.iter().find(|r| r.ty == RTM_NEWLINK).ok_or_else(|| NetlinkError::malformed(&op, "no RTM_NEWLINK in the answer"))?;
        let body = &reply.body;
        let flags = ne_u32(body, 8).ok_or_else(|| NetlinkError::malformed(&op, "short ifinfomsg"))?;
        let attrs_at = body.get(16..).unwrap_or(&[]);
        let name = attr_str(attrs_at, IFLA_IFNAME).unwrap_or_default();
        let xdp = attrs(attrs_at).find(|(t, _)| *t == IFLA_XDP).map(|(_, x)| XdpState {
            attached: attrs(x).find(|(t, _)| *t == IFLA_XDP_ATTACHED).and_then(|(_, p)| p.first().copied()).unwrap_or(0),
            prog_id: attr_u32(x, IFLA_XDP_PROG_ID).unwrap_or(0),
            drv_prog_id: attr_u32(x, IFLA_XDP_DRV_PROG_ID).unwrap_or(0),
            skb_prog_id: attr_u32(x, IFLA_XDP_SKB_PROG_ID).unwrap_or(0),
            hw_prog_id: attr_u32(x, IFLA_XDP_HW_PROG_ID).unwrap_or(0),
        });
        Ok(LinkState { ifindex, name, up: flags & IFF_UP != 0, xdp: xdp.unwrap_or_default() })
    }

    /// `RTM_SETLINK` with `IFLA_XDP`: attach program `prog_fd` (-1: remove) with `XDP_FLAGS_*`
    /// `flags`; `expected_fd` (with `XDP_FLAGS_REPLACE`) names the program that must be there.
    pub fn set_xdp(&self, what: &str, ifindex: u32, prog_fd: i32, flags: u32, expected_fd: Option<i32>) -> Result<(), NetlinkError> {
        let mut m = acked(RTM_SETLINK, 0, &ifinfomsg(ifindex, 0, 0));
        m.nest(IFLA_XDP, |m| {
            m.u32(IFLA_XDP_FD, prog_fd as u32).u32(IFLA_XDP_FLAGS, flags);
            if let Some(e) = expected_fd {
                m.u32(IFLA_XDP_EXPECTED_FD, e as u32);
            }
        });
        self.request(&format!("RTM_SETLINK xdp ({what})"), m).map(|_| ())
    }

    /// Add a clsact qdisc to `ifindex`. `Ok(false)`: one was already there.
    pub fn add_clsact(&self, ifindex: u32) -> Result<bool, NetlinkError> {
        let mut m = acked(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &tcmsg(ifindex, 0xffff_0000, TC_H_CLSACT, 0));
        m.str(TCA_KIND, c"clsact");
        match self.request(&format!("RTM_NEWQDISC clsact (ifindex {ifindex})"), m) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remove the clsact qdisc of `ifindex` (and with it every filter on it).
    pub fn del_clsact(&self, ifindex: u32) -> Result<(), NetlinkError> {
        let m = acked(RTM_DELQDISC, 0, &tcmsg(ifindex, 0xffff_0000, TC_H_CLSACT, 0));
        self.request(&format!("RTM_DELQDISC clsact (ifindex {ifindex})"), m).map(|_| ())
    }

    /// Make a qdisc of `kind` (`"fq"`, `"pfifo"`, …, with its default options) the root qdisc
    /// of `ifindex`, like `tc qdisc add dev X root KIND`. A kernel without that scheduler
    /// answers `ENOENT` with the message `Specified qdisc kind is unknown` (or, where the kernel
    /// builds it as a module it cannot load, the same): this is the probe for a qdisc.
    pub fn add_root_qdisc(&self, ifindex: u32, kind: &str) -> Result<(), NetlinkError> {
        let op = format!("RTM_NEWQDISC {kind} root (ifindex {ifindex})");
        let kind_c = CString::new(kind).map_err(|_| NetlinkError::io(&op, io::Error::from_raw_os_error(libc::EINVAL)))?;
        let mut m = acked(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &tcmsg(ifindex, 0, TC_H_ROOT, 0));
        m.str(TCA_KIND, &kind_c);
        self.request(&op, m).map(|_| ())
    }

    /// Remove the root qdisc of `ifindex` (the device goes back to its default one).
    pub fn del_root_qdisc(&self, ifindex: u32) -> Result<(), NetlinkError> {
        let m = acked(RTM_DELQDISC, 0, &tcmsg(ifindex, 0, TC_H_ROOT, 0));
        self.request(&format!("RTM_DELQDISC root (ifindex {ifindex})"), m).map(|_| ())
    }

    /// The qdiscs of `ifindex` as `(parent, kind)`, as `tc qdisc show dev X` lists them
    /// (`parent` [`u32::MAX`] for the root; `clsact`'s is `0xfffffff1`).
    pub fn qdiscs(&self, ifindex: u32) -> Result<Vec<(u32, String)>, NetlinkError> {
        let op = format!("RTM_GETQDISC (ifindex {ifindex})");
        let m = Msg::new(RTM_GETQDISC, NLM_F_DUMP, &tcmsg(ifindex, 0, 0, 0));
        let mut out = Vec::new();
        for r in self.request(&op, m)?.iter().filter(|r| r.ty == RTM_NEWQDISC) {
            // A dump lists every device's qdiscs, whatever the request's ifindex.
            let (Some(dev), Some(parent)) = (ne_u32(&r.body, 4), ne_u32(&r.body, 12)) else { continue };
            if dev == ifindex {
                out.push((parent, attr_str(r.body.get(20..).unwrap_or(&[]), TCA_KIND).unwrap_or_default()));
            }
        }
        Ok(out)
    }

    /// Add a direct-action cls_bpf filter running `prog_fd` at `at` (a `priority` or `handle`
    /// of 0: the kernel picks). Returns the filter as the kernel echoes it, with what it picked.
    pub fn add_cls_bpf(&self, what: &str, at: FilterId, prog_fd: i32, name: &str) -> Result<FilterId, NetlinkError> {
        let op = format!("RTM_NEWTFILTER bpf ({what})");
        let name = CString::new(name.replace('\0', "")).unwrap_or_default();
        let header = tcmsg(at.ifindex, at.handle, at.parent, filter_info(at.priority));
        let mut m = acked(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO, &header);
        m.str(TCA_KIND, c"bpf").nest(TCA_OPTIONS, |m| {
            m.u32(TCA_BPF_FD, prog_fd as u32).str(TCA_BPF_NAME, &name).u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
        });
        let replies = self.request(&op, m)?;
        // The echo names the filter as created, with the priority and handle the kernel chose.
        let echo = replies.iter().find(|r| r.ty == RTM_NEWTFILTER).ok_or_else(|| NetlinkError::malformed(&op, "no echo of the new filter"))?;
        let (handle, info) = (ne_u32(&echo.body, 8), ne_u32(&echo.body, 16));
        match (handle, info) {
            (Some(handle), Some(info)) => Ok(FilterId { priority: (info >> 16) as u16, handle, ..at }),
            _ => Err(NetlinkError::malformed(&op, "short tcmsg in the echo")),
        }
    }

    /// Remove cls_bpf filter `id`.
    pub fn del_filter(&self, what: &str, id: FilterId) -> Result<(), NetlinkError> {
        let mut m = acked(RTM_DELTFILTER, 0, &tcmsg(id.ifindex, id.handle, id.parent, filter_info(id.priority)));
        m.str(TCA_KIND, c"bpf");
        self.request(&format!("RTM_DELTFILTER bpf ({what})"), m).map(|_| ())
    }

    /// The cls_bpf filters under `parent` of `ifindex`.
    pub fn cls_bpf_filters(&self, ifindex: u32, parent: u32) -> Result<Vec<ClsBpfFilter>, NetlinkError> {
        let op = format!("RTM_GETTFILTER (ifindex {ifindex}, parent {parent:#x})");
        let m = Msg::new(RTM_GETTFILTER, NLM_F_DUMP, &tcmsg(ifindex, 0, parent, 0));
        let mut out = Vec::new();
        for r in self.request(&op, m)?.iter().filter(|r| r.ty == RTM_NEWTFILTER) {
            let (Some(handle), Some(info)) = (ne_u32(&r.body, 8), ne_u32(&r.body, 16)) else { continue };
            let a = r.body.get(20..).unwrap_or(&[]);
            // The dump also lists each priority's empty head (handle 0); only real filters count.
            if attr_str(a, TCA_KIND).as_deref() != Some("bpf") || handle == 0 {
                continue;
            }
            let opts = attrs(a).find(|(t, _)| *t == TCA_OPTIONS).map(|(_, o)| o).unwrap_or(&[]);
            out.push(ClsBpfFilter {
                priority: (info >> 16) as u16,
                handle,
                prog_id: attr_u32(opts, TCA_BPF_ID).unwrap_or(0),
                name: attr_str(opts, TCA_BPF_NAME).unwrap_or_default(),
                direct_action: attr_u32(opts, TCA_BPF_FLAGS).is_some_and(|f| f & TCA_BPF_FLAG_ACT_DIRECT != 0),
            });
        }
        Ok(out)
    }

    /// Create a veth pair `name` ⇄ `peer`; the peer goes to network namespace `peer_netns`
    /// (`None`: this one).
    pub fn add_veth(&self, name: &str, peer: &str, peer_netns: Option<BorrowedFd<'_>>) -> Result<(), NetlinkError> {
        let op = format!("RTM_NEWLINK veth {name:?} peer {peer:?}");
        let cname = |s: &str| CString::new(s).map_err(|_| NetlinkError::io(&op, io::Error::from_raw_os_error(libc::EINVAL)));
        let (name_c, peer_c) = (cname(name)?, cname(peer)?);
        let mut m = acked(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        m.str(IFLA_IFNAME, &name_c).nest(IFLA_LINKINFO, |m| {
            m.attr(IFLA_INFO_KIND, b"veth").nest(IFLA_INFO_DATA, |m| {
                m.nest(VETH_INFO_PEER, |m| {
                    // The peer's attributes follow its own ifinfomsg.
                    m.0.extend_from_slice(&ifinfomsg(0, 0, 0));
                    m.str(IFLA_IFNAME, &peer_c);
                    if let Some(ns) = peer_netns {
                        m.u32(IFLA_NET_NS_FD, ns.as_raw_fd() as u32);
                    }
                });
            });
        });
        self.request(&op, m).map(|_| ())
    }

    /// Delete interface `ifindex` (a veth's peer goes with it).
    pub fn del_link(&self, ifindex: u32) -> Result<(), NetlinkError> {
        let m = acked(RTM_DELLINK, 0, &ifinfomsg(ifindex, 0, 0));
        self.request(&format!("RTM_DELLINK (ifindex {ifindex})"), m).map(|_| ())
    }

    /// Bring interface `ifindex` up.
    pub fn set_up(&self, ifindex: u32) -> Result<(), NetlinkError> {
        let m = acked(RTM_SETLINK, 0, &ifinfomsg(ifindex, IFF_UP, IFF_UP));
        self.request(&format!("RTM_SETLINK up (ifindex {ifindex})"), m).map(|_| ())
    }

    /// Add IPv4 address `addr/prefix` to interface `ifindex`.
    pub fn add_ipv4(&self, ifindex: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        let mut h = [0u8; 8];
        h[0] = libc::AF_INET as u8;
        h[1] = prefix;
        h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        let mut m = acked(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &h);
        m.attr(IFA_LOCAL, &addr.octets()).attr(IFA_ADDRESS, &addr.octets());
        self.request(&format!("RTM_NEWADDR {addr}/{prefix} (ifindex {ifindex})"), m).map(|_| ())
    }
}

/// The extended-ack message of an error or done message, if the kernel attached one.
fn ack_message(ty: u16, flags: u16, body: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    // NLMSG_ERROR: errno, then the request (its header only when capped), then the TLVs.
    // NLMSG_DONE: errno, then the TLVs.
    let tlvs_at = if ty == NLMSG_ERROR {
        let echoed = if flags & NLM_F_CAPPED != 0 { NLMSG_HDRLEN } else { ne_u32(body, 4)? as usize };
        4 + echoed.next_multiple_of(4)
    } else {
        4
    };
    attr_str(body.get(tlvs_at..)?, NLMSGERR_ATTR_MSG).filter(|m| !m.is_empty())
}

/// What a device reports about XDP (`IFLA_XDP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpState {
    /// `XDP_ATTACHED_*`: 0 none, 1 native (driver), 2 generic (skb), 3 offloaded, 4 several.
    pub attached: u8,
    /// The program's id when exactly one mode has one.
    pub prog_id: u32,
    /// `IFLA_XDP_DRV_PROG_ID`: the program attached in native (driver) mode, 0 for none.
    pub drv_prog_id: u32,
    /// `IFLA_XDP_SKB_PROG_ID`: the program attached in generic (skb) mode, 0 for none.
    pub skb_prog_id: u32,
    /// `IFLA_XDP_HW_PROG_ID`: the program offloaded to the device, 0 for none.
    pub hw_prog_id: u32,
}

impl XdpState {
    /// Ids of every attached program, whatever the mode.
    pub fn prog_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = [self.prog_id, self.drv_prog_id, self.skb_prog_id, self.hw_prog_id].into_iter().filter(|&i| i != 0).collect();
        ids.dedup();
        ids
    }
}

/// What `RTM_GETLINK` reports about an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// The interface index.
    pub ifindex: u32,
    /// `IFLA_IFNAME`: the interface's name.
    pub name: String,
    /// Whether the interface is administratively up (`IFF_UP`).
    pub up: bool,
    /// The XDP programs attached to it.
    pub xdp: XdpState,
}

/// Where a tc filter is: device, parent ([`TC_PARENT_INGRESS`]/[`TC_PARENT_EGRESS`]), priority
/// and handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterId {
    pub ifindex: u32,
    pub parent: u32,
    pub priority: u16,
    pub handle: u32,
}

/// A cls_bpf filter as a filter dump reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClsBpfFilter {
    /// The filter's priority (the high half of `tcm_info`).
    pub priority: u16,
    /// The filter's handle.
    pub handle: u32,
    /// `TCA_BPF_ID`: the id of the filter's program.
    pub prog_id: u32,
    /// `TCA_BPF_NAME`: the name the filter was given.
    pub name: String,
    /// Whether the filter runs in direct-action mode (`TCA_BPF_FLAG_ACT_DIRECT`).
    pub direct_action: bool,
}

/// An attachment made over netlink, undone over the same socket (so in the same network
/// namespace, whichever thread drops it).
#[derive(Debug)]
pub struct NetlinkAttachment {
    nl: Netlink,
    what: String,
    ifindex: u32,
    undo: Undo,
    done: bool,
}

#[derive(Debug)]
enum Undo {
    /// Remove XDP program `prog` (kept open so `IFLA_XDP_EXPECTED_FD` can name it) in `mode`.
    Xdp { prog: OwnedFd, mode: u32 },
    TcFilter(FilterId),
}

impl NetlinkAttachment {
    /// An XDP program attached with mode flags `mode` (`XDP_FLAGS_*_MODE`, or 0).
    pub fn xdp(nl: Netlink, what: String, ifindex: u32, prog: OwnedFd, mode: u32) -> NetlinkAttachment {
        NetlinkAttachment { nl, what, ifindex, undo: Undo::Xdp { prog, mode }, done: false }
    }
    /// The tc filter `id`.
    pub fn tc_filter(nl: Netlink, what: String, id: FilterId) -> NetlinkAttachment {
        NetlinkAttachment { nl, what, ifindex: id.ifindex, undo: Undo::TcFilter(id), done: false }
    }
    /// Undo the attachment (once; later calls do nothing). An XDP program is removed only if it
    /// is still the one attached, so a program someone attached since stays.
    pub fn detach(&mut self) -> Result<(), NetlinkError> {
        if self.done {
            return Ok(());
        }
        match &self.undo {
            Undo::Xdp { prog, mode } => {
                self.nl.set_xdp(&self.what, self.ifindex, -1, mode | XDP_FLAGS_REPLACE, Some(prog.as_raw_fd()))?;
            }
            Undo::TcFilter(id) => self.nl.del_filter(&self.what, *id)?,
        }
        self.done = true;
        Ok(())
    }
}

/// The index of interface `name` in this thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a live NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// The name of interface `ifindex` in this thread's network namespace.
pub fn if_name(ifindex: u32) -> io::Result<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` is IF_NAMESIZE bytes, what if_indextoname writes at most (NUL included).
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr() as *mut libc::c_char) };
    if p.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(super::c_name(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_sized_and_aligned() {
        let mut m = Msg::new(RTM_SETLINK, NLM_F_ACK, &ifinfomsg(7, 0, 0));
        m.nest(IFLA_XDP, |m| {
            m.u32(IFLA_XDP_FD, 5).attr(IFLA_XDP_FLAGS, &[1, 2, 3]);
        });
        let b = m.finish(9);
        assert_eq!(ne_u32(&b, 0), Some(b.len() as u32));
        assert_eq!(ne_u32(&b, 8), Some(9));
        assert_eq!(ne_u32(&b, 20), Some(7), "ifi_index");
        // nest header (4) + fd attr (8) + 3-byte attr padded to 8.
        assert_eq!(ne_u16(&b, 32), Some(20));
        assert_eq!(ne_u16(&b, 34), Some(IFLA_XDP | NLA_F_NESTED));
        let inner: Vec<_> = attrs(&b[36..]).collect();
        assert_eq!(inner, vec![(IFLA_XDP_FD, &5u32.to_ne_bytes()[..]), (IFLA_XDP_FLAGS, &[1u8, 2, 3][..])]);
    }

    #[test]
    fn extended_ack_message_is_found_after_a_capped_request() {
        let mut body = (-16i32).to_ne_bytes().to_vec();
        body.extend_from_slice(&[0u8; NLMSG_HDRLEN]);
        let mut tlv = Msg(Vec::new());
        tlv.attr(NLMSGERR_ATTR_MSG, b"XDP program already attached\0");
        body.extend_from_slice(&tlv.0);
        assert_eq!(ack_message(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, &body).as_deref(), Some("XDP program already attached"));
        assert_eq!(ack_message(NLMSG_ERROR, NLM_F_CAPPED, &body), None);
        // A truncated reply gives no message rather than a panic.
        assert_eq!(ack_message(NLMSG_ERROR, NLM_F_ACK_TLVS, &body[..6]), None);
    }
}
