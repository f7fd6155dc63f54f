//! Lab 3.3 — a protocol parser with statistics (tutorial/ch03-instructions.md): an XDP program
//! parses Ethernet, IPv4 (with options), UDP and a small custom header, and counts datagrams per
//! message type, short and malformed, in an array map; crafted packets go through PROG_TEST_RUN,
//! then real datagrams cross a veth pair between two new network namespaces with the program
//! attached: the valid ones arrive, the others do not, and the counts equal what was sent.
//!
//! Run as root: `cargo run --example lab_3_3`. The same code is a doctest of the chapter.

use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::time::Duration;
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapError, MapSpec, MapType};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if !bpfkit::features::can_use_bpf("Lab 3.3") {
        return Ok(());
    }
    const PORT: u16 = 9000;
    const MAGIC: u16 = 0xB7F1;
    const SLOTS: [&str; 7] = ["other", "HELLO", "DATA", "ACK", "BYE", "short", "malformed"];
    let (other, short, malformed) = (0, 5, 6);
    let stats = Map::create(&MapSpec::new("bkp_stats", MapType::Array, 4, 8, SLOTS.len() as u32))?;
    let prog = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)           // data
        r3 = *(u32 *)(r1 + 4)           // data_end
        r6 = {other}                    // r6: the slot to count in (kept across calls)
        r7 = 2                          // r7: the verdict, XDP_PASS
        r4 = r2
        r4 += 34                        // Ethernet 14 + the fixed IPv4 header 20
        if r4 > r3 goto count
        r5 = *(u16 *)(r2 + 12)
        r5 = be16 r5                    // EtherType, network to host order
        if r5 != 0x0800 goto count      // not IPv4
        r5 = *(u8 *)(r2 + 23)
        if r5 != 17 goto count          // not UDP
        r5 = *(u8 *)(r2 + 14)           // version and IHL
        r5 &= 0xf
        r5 <<= 2                        // the IPv4 header's length, 0..60 bytes
        if r5 < 20 goto count
        r4 = r2
        r4 += 14
        r4 += r5                        // r4: the UDP header
        r5 = r4
        r5 += 8
        if r5 > r3 goto count           // no room for UDP: not even ours to judge
        r5 = *(u16 *)(r4 + 2)
        r5 = be16 r5
        if r5 != {PORT as i32} goto count      // another port
        r6 = {short}
        r7 = 1                          // XDP_DROP from here on, unless valid
        r5 = r4
        r5 += 14                        // UDP 8 + BKP 6
        if r5 > r3 goto count
        r6 = {malformed}
        r5 = *(u16 *)(r4 + 8)
        r5 = be16 r5
        if r5 != {MAGIC as i32} goto count
        r5 = *(u8 *)(r4 + 10)
        if r5 != 1 goto count           // version 1 only
        r8 = *(u8 *)(r4 + 11)           // message type
        if r8 == 0 goto count
        if r8 > 4 goto count
        r5 = *(u16 *)(r4 + 4)           // UDP length: its header and payload
        r5 = be16 r5
        r5 -= 14                        // what the BKP payload must be
        r0 = *(u16 *)(r4 + 12)
        r0 = be16 r0
        if r0 != r5 goto count
        r6 = r8                         // valid: count by type, and pass
        r7 = 2
    count:
        *(u32 *)(r10 - 4) = w6
        r1 = map[bkp_stats] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    out:
        r0 = r7
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&stats], &LoadOptions::new("bkp_parser", ProgType::Xdp))?;

    // Ethernet + IPv4 (with `options` extra bytes of header) + UDP to `port` + `body`.
    let frame = |proto: u8, options: usize, port: u16, body: &[u8]| -> Vec<u8> {
        let ihl = 20 + options;
        let mut p = vec![0u8; 14];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0u8; ihl];
        ip[0] = 0x40 | (ihl / 4) as u8;
        ip[2..4].copy_from_slice(&((ihl + 8 + body.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        p.extend(ip);
        p.extend(40000u16.to_be_bytes());
        p.extend(port.to_be_bytes());
        p.extend(((8 + body.len()) as u16).to_be_bytes());
        p.extend([0, 0]);
        p.extend(body);
        p
    };
    let bkp = |magic: u16, version: u8, kind: u8, payload: &[u8], claimed: usize| -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        b.extend([version, kind]);
        b.extend((claimed as u16).to_be_bytes());
        b.extend(payload);
        b
    };
    let msg = |kind: u8, payload: &[u8]| frame(17, 0, PORT, &bkp(MAGIC, 1, kind, payload, payload.len()));
    let mut sent: Vec<(Vec<u8>, u32)> = Vec::new(); // (frame, expected verdict)
    for _ in 0..5 { sent.push((msg(1, b"hi"), 2)); }
    for i in 0..3 { sent.push((msg(2, &[i; 100]), 2)); }
    for _ in 0..2 { sent.push((msg(3, b""), 2)); }
    sent.push((msg(4, b"bye"), 2));
    sent.push((frame(17, 8, PORT, &bkp(MAGIC, 1, 2, b"opts", 4)), 2));       // DATA after IPv4 options
    sent.push((frame(17, 0, PORT, &bkp(0xdead, 1, 1, b"", 0)), 1));          // bad magic
    sent.push((frame(17, 0, PORT, &bkp(MAGIC, 2, 1, b"", 0)), 1));           // version 2
    sent.push((frame(17, 0, PORT, &bkp(MAGIC, 1, 9, b"", 0)), 1));           // type 9
    sent.push((frame(17, 0, PORT, &bkp(MAGIC, 1, 2, b"four", 40)), 1));      // length lies
    sent.push((frame(17, 0, PORT, &[0xb7, 0xf1, 1]), 1));                    // 3 of 6 header bytes
    sent.push((frame(17, 0, PORT, &[]), 1));                                 // no header at all
    sent.push((frame(17, 0, 53, &bkp(MAGIC, 1, 1, b"", 0)), 2));             // another UDP port
    sent.push((frame(6, 0, PORT, &bkp(MAGIC, 1, 1, b"", 0)), 2));            // TCP
    for (packet, verdict) in &sent {
        assert_eq!(prog.test_run(&TestRun::with_data(packet.clone()))?.retval, *verdict);
    }

    // Every slot's count, as the map holds it now.
    let counts = || -> Result<Vec<u64>, MapError> {
        (0..SLOTS.len() as u32).map(|i| stats.typed::<u32, u64>()?.get(&i).map(Option::unwrap_or_default)).collect()
    };
    let tested = counts()?;
    assert_eq!(tested, [2, 5, 4, 2, 1, 2, 4], "other, HELLO, DATA, ACK, BYE, short, malformed");

    // Real datagrams: a client and a server namespace (removed when dropped), veth vc <-> vs.
    let (client_ip, server_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (client, server) = (NetNs::new()?, NetNs::new()?);
    type Error = Box<dyn std::error::Error + Send + Sync>;
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        nl.set_up(i)?;
        Ok(i)
    };
    client.run(|| -> Result<u32, Error> {
        Netlink::open()?.add_veth("vc", "vs", Some(server.as_fd()))?;
        configure("vc", client_ip)
    })??;
    let vs = server.run(|| configure("vs", server_ip))??;
    let tx = client.run(|| UdpSocket::bind((client_ip, 0)))??;
    let rx = server.run(|| UdpSocket::bind((server_ip, PORT)))??;
    let rx_other = server.run(|| UdpSocket::bind((server_ip, PORT + 1)))??;
    rx.set_read_timeout(Some(Duration::from_secs(2)))?;
    rx_other.set_read_timeout(Some(Duration::from_secs(2)))?;
    // One datagram before attaching, so that ARP is resolved.
    tx.send_to(b"warm-up", (server_ip, PORT + 1))?;
    rx_other.recv(&mut [0u8; 64])?;

    let link = server.run(|| prog.attach_xdp(vs, XdpMode::Native))??;
    let valid = |kind: u8, payload: &[u8]| bkp(MAGIC, 1, kind, payload, payload.len());
    let traffic: Vec<(u16, Vec<u8>, bool)> = vec![ // (port, UDP payload, must arrive)
        (PORT, valid(1, b"hi"), true),
        (PORT, bkp(0xdead, 1, 1, b"", 0), false),      // bad magic
        (PORT, valid(2, &[1; 100]), true),
        (PORT, vec![0xb7, 0xf1, 1], false),            // short
        (PORT, valid(1, b"hi"), true),
        (PORT + 1, valid(1, b"hi"), true),             // another port: other
        (PORT, bkp(MAGIC, 2, 1, b"", 0), false),       // version 2
        (PORT, valid(3, b""), true),
        (PORT, valid(2, &[2; 100]), true),
        (PORT, valid(1, b"hi"), true),
        (PORT, vec![], false),                         // short: an empty datagram
        (PORT, bkp(MAGIC, 1, 9, b"", 0), false),       // type 9
        (PORT, valid(1, b"hi"), true),
        (PORT, valid(2, &[3; 100]), true),
        (PORT, bkp(MAGIC, 1, 2, b"four", 40), false),  // length lies
        (PORT + 1, b"not BKP".to_vec(), true),         // another port: other
        (PORT, valid(3, b""), true),
        (PORT, valid(1, b"hi"), true),
        (PORT, valid(4, b"bye"), true),                // the last one is valid
    ];
    for (port, payload, _) in &traffic {
        tx.send_to(payload, (server_ip, *port))?;
    }
    // What arrived on each port: exactly the datagrams that must, in the order sent.
    for (port, socket) in [(PORT, &rx), (PORT + 1, &rx_other)] {
        let want: Vec<&[u8]> = traffic.iter().filter(|(p, _, arrives)| *p == port && *arrives).map(|(_, d, _)| d.as_slice()).collect();
        let mut buf = [0u8; 2048];
        for (n, expected) in want.iter().enumerate() {
            let len = socket.recv(&mut buf)?;
            assert_eq!(&buf[..len], *expected, "datagram {} to port {port}", n + 1);
        }
    }
    drop(link);
    let live: Vec<u64> = counts()?.iter().zip(&tested).map(|(now, before)| now - before).collect();

    println!("{:<10} {:>9} {:>8}", "message", "test runs", "traffic");
    for (name, (t, l)) in SLOTS.iter().zip(tested.iter().zip(&live)) {
        println!("{name:<10} {t:>9} {l:>8}");
    }
    assert_eq!(live[1..], [5, 3, 2, 1, 2, 4], "HELLO, DATA, ACK, BYE, short, malformed: as sent");
    assert!(live[0] >= 2, "other: the two datagrams to another port, and the link's own chatter");
    Ok(())
}
