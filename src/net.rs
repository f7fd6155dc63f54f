//! Networking for the labs and tests that send real packets: network namespaces held by fd
//! ([`NetNs`]: create one, run code inside it), interfaces by name and index, an rtnetlink
//! client ([`Netlink`]: veth pairs, addresses, links up, an interface's XDP state, root qdiscs such as
//! fq), and AF_XDP
//! sockets ([`xsk`]) enough to receive what an XSKMAP redirects.
//!
//! bpfkit attaches XDP and tc programs over the same rtnetlink code (`attach::xdp`,
//! `attach::tc`); those requests stay inside the crate, behind `Link`.

pub use crate::sys::netlink::{if_index, if_name, LinkState, Netlink, NetlinkError, XdpState};
pub use crate::sys::netns::NetNs;

/// AF_XDP sockets: a UMEM, fill/completion/RX rings, bound in copy mode to one queue.
pub mod xsk {
    pub use crate::sys::xsk::{XskConfig, XskSocket};
}
