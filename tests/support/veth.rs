//! Two network namespaces joined by a veth pair, for tests that send real packets across an
//! interface: `va` (192.0.2.1/24) in `a`, `vb` (192.0.2.2/24) in `b`, both up.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use bpfkit::net::{if_index, Netlink};
use bpfkit::net::NetNs;

pub const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

pub struct Veth {
    pub a: NetNs,
    pub b: NetNs,
    pub ifa: u32,
    pub ifb: u32,
}

impl Veth {
    /// The pair, with IPv6 on (as interfaces come up by default).
    pub fn new() -> Veth {
        Veth::with_ipv6(true)
    }

    /// The pair; without IPv6 no neighbour discovery packets cross it on their own, so a test
    /// can count every packet.
    pub fn with_ipv6(ipv6: bool) -> Veth {
        let (a, b) = (NetNs::new().unwrap(), NetNs::new().unwrap());
        let up = |name: &str, ip: Ipv4Addr| {
            if !ipv6 {
                // Per network namespace: /proc/sys/net is the opening thread's.
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
            }
            let nl = Netlink::open().unwrap();
            let i = if_index(name).unwrap();
            nl.add_ipv4(i, ip, 24).unwrap();
            nl.set_up(i).unwrap();
            i
        };
        let ifa = a
            .run(|| {
                Netlink::open().unwrap().add_veth("va", "vb", Some(b.as_fd())).unwrap();
                up("va", A_IP)
            })
            .unwrap();
        let ifb = b.run(|| up("vb", B_IP)).unwrap();
        Veth { a, b, ifa, ifb }
    }
}
