//! Lab 2.2 — packet size histogram (tutorial/ch02-maps.md): an XDP program on a veth pair
//! between two new network namespaces counts UDP frames by log2 size; drawn with `#` bars.
//!
//! Run as root: `cargo run --example lab_2_2`. The same code is a doctest of the chapter.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bpfkit::net::{if_index, Netlink};
use bpfkit::net::NetNs;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if !bpfkit::features::can_use_bpf("Lab 2.2") {
        return Ok(());
    }
    const PORT: u16 = 4242;
    let (a_ip, b_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let hist = Map::create(&MapSpec::new("size_hist", MapType::Array, 4, 8, 32))?;
    let port = PORT.to_be() as i32; // as the program reads it: network byte order
    let prog = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)           // xdp_md.data: the first byte of the frame
        r3 = *(u32 *)(r1 + 4)           // xdp_md.data_end
        r4 = r2
        r4 += 38                        // Ethernet 14 + IPv4 20 + UDP ports 4
        if r4 > r3 goto pass            // the verifier's bounds check
        r4 = *(u16 *)(r2 + 12)          // ethertype 0x0800 (big-endian, read little-endian)
        if r4 != 8 goto pass
        r4 = *(u8 *)(r2 + 23)           // IPv4 protocol
        if r4 != 17 goto pass           // UDP
        r4 = *(u16 *)(r2 + 36)          // UDP destination port
        if r4 != {port} goto pass
        r4 = r3
        r4 -= r2                        // the frame length
        r5 = 0                          // r5 = log2(r4), by halving the range each step
        if r4 <= 0xffff goto b8
        r4 >>= 16
        r5 += 16
    b8:
        if r4 <= 0xff goto b4
        r4 >>= 8
        r5 += 8
    b4:
        if r4 <= 0xf goto b2
        r4 >>= 4
        r5 += 4
    b2:
        if r4 <= 3 goto b1
        r4 >>= 2
        r5 += 2
    b1:
        if r4 <= 1 goto count
        r5 += 1
    count:
        *(u32 *)(r10 - 4) = w5
        r1 = map[size_hist] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto pass
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    pass:
        r0 = 2                          // XDP_PASS: the datagram goes on to its socket
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&hist], &LoadOptions::new("size_hist", ProgType::Xdp))?;

    // Two namespaces (removed when `a` and `b` are dropped) joined by veth va <-> vb.
    let (a, b) = (NetNs::new()?, NetNs::new()?);
    // `NetNs::run` carries a closure's result back from another thread: errors must be `Send`.
    type Error = Box<dyn std::error::Error + Send + Sync>;
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        nl.set_up(i)?;
        Ok(i)
    };
    a.run(|| -> Result<u32, Error> {
        Netlink::open()?.add_veth("va", "vb", Some(b.as_fd()))?;
        configure("va", a_ip)
    })??;
    let vb = b.run(|| configure("vb", b_ip))??;
    let tx = a.run(|| UdpSocket::bind((a_ip, 0)))??;
    let rx = b.run(|| UdpSocket::bind((b_ip, PORT)))??;
    rx.set_read_timeout(Some(Duration::from_secs(2)))?;
    // One datagram before attaching, so that ARP is resolved.
    tx.send_to(b"warm-up", (b_ip, PORT))?;
    rx.recv(&mut [0u8; 64])?;

    let link = b.run(|| prog.attach_xdp(vb, XdpMode::Native))??;
    let sent = [(64usize, 10), (200, 20), (1000, 5)]; // (frame length, how many)
    let mut buf = [0u8; 2048];
    for (frame, n) in sent {
        for _ in 0..n {
            tx.send_to(&vec![0x55; frame - 42], (b_ip, PORT))?;
            // The program runs before the datagram reaches the socket: once it arrives, it was counted.
            assert_eq!(rx.recv(&mut buf)?, frame - 42);
        }
    }
    drop(link);

    let counts: Vec<u64> = (0..32u32).map(|i| hist.typed::<u32, u64>()?.get(&i).map(Option::unwrap_or_default)).collect::<Result<_, _>>()?;
    for (bucket, &n) in counts.iter().enumerate().filter(|(b, _)| (5..=11).contains(b)) {
        let range = format!("{}-{}", 1u64 << bucket, (1u64 << (bucket + 1)) - 1);
        let bar = "#".repeat(n as usize);
        println!("{}", format!("{range:>10} B {n:>3} {bar}").trim_end());
    }
    let mut expected = vec![0u64; 32];
    expected[6] = 10; // 64 B
    expected[7] = 20; // 200 B
    expected[9] = 5; // 1000 B
    assert_eq!(counts, expected);
    Ok(())
}
