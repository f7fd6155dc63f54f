//! Lab 3.1 — drop TCP port 80 in XDP (tutorial/ch03-instructions.md): an XDP filter reading
//! the Ethernet type, IPv4 protocol and TCP destination port, proven with crafted packets through
//! PROG_TEST_RUN and then on real connections between two new network namespaces: with the
//! filter on the server's veth, port 80 times out while port 8080 connects.
//!
//! Run as root: `cargo run --example lab_3_1`. The same code is a doctest of the chapter.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if !bpfkit::features::can_use_bpf("Lab 3.1") {
        return Ok(());
    }
    let prog = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)       // data
        r3 = *(u32 *)(r1 + 4)       // data_end
        r0 = 2                      // XDP_PASS unless proven otherwise
        r4 = r2
        r4 += 38                    // Ethernet 14 + IPv4 20 + 4 bytes of TCP
        if r4 > r3 goto out         // bounds check: now bytes 0..38 are readable
        r5 = *(u16 *)(r2 + 12)      // EtherType, network order
        if r5 != 0x0008 goto out    // 0x0800 read little-endian
        r5 = *(u8 *)(r2 + 23)       // IPv4 protocol
        if r5 != 6 goto out         // TCP
        r5 = *(u16 *)(r2 + 36)      // TCP destination port
        if r5 != 0x5000 goto out    // 80 in network order
        r0 = 1                      // XDP_DROP
    out:
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[], &LoadOptions::new("port80", ProgType::Xdp))?;

    // 1. Crafted frames, through PROG_TEST_RUN.
    let packet = |proto: u8, port: u16| {
        let mut p = vec![0u8; 64];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        p[14] = 0x45;
        p[23] = proto;
        p[36..38].copy_from_slice(&port.to_be_bytes());
        p
    };
    let cases = [
        ("TCP to port 80", packet(6, 80), 1),
        ("TCP to port 443", packet(6, 443), 2),
        ("UDP to port 80", packet(17, 80), 2),
        ("a 20-byte runt", vec![0u8; 20], 2),
    ];
    for (what, p, want) in cases {
        let verdict = prog.test_run(&TestRun::with_data(p))?.retval;
        println!("{what:<16} {}", if verdict == 1 { "XDP_DROP" } else { "XDP_PASS" });
        assert_eq!(verdict, want, "{what}");
    }

    // 2. Real connections: a client and a server namespace (removed when dropped), veth vc <-> vs.
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
    // A real listener on each port: without the filter, both accept connections.
    let http = server.run(|| TcpListener::bind((server_ip, 80)))??;
    let alt = server.run(|| TcpListener::bind((server_ip, 8080)))??;
    // Connect from the client (give up after 2 s), send a line, have the server echo it back.
    let attempt = |port: u16, listener: &TcpListener| -> std::io::Result<()> {
        let to = SocketAddr::from((server_ip, port));
        let mut stream = client.run(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)))??;
        stream.write_all(b"ping\n")?;
        let (mut conn, _) = listener.accept()?;
        let mut line = [0u8; 5];
        conn.read_exact(&mut line)?;
        conn.write_all(&line)?;
        stream.read_exact(&mut line)?;
        assert_eq!(&line, b"ping\n");
        Ok(())
    };
    let show = |when: &str, port: u16, outcome: &std::io::Result<()>| match outcome {
        Ok(()) => println!("{when:<19} port {port:>4}: connected, line echoed"),
        Err(e) => println!("{when:<19} port {port:>4}: {e}"),
    };
    for (port, listener) in [(80, &http), (8080, &alt)] {
        let outcome = attempt(port, listener);
        show("without the filter", port, &outcome);
        outcome?;
    }
    let link = server.run(|| prog.attach_xdp(vs, XdpMode::Native))??;
    let dropped = attempt(80, &http);
    show("with the filter", 80, &dropped);
    assert_eq!(dropped.expect_err("port 80 must not connect").kind(), ErrorKind::TimedOut, "the SYN was dropped: no answer at all");
    let passed = attempt(8080, &alt);
    show("with the filter", 8080, &passed);
    passed?;
    drop(link);
    let again = attempt(80, &http);
    show("after detaching", 80, &again);
    again?;
    Ok(())
}
