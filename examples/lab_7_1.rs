//! Lab 7.1 — SYN-flood mitigation (tutorial/ch07-xdp.md): an XDP program on the server's
//! interfaces keeps a token bucket per source address in an LRU hash map and drops the SYNs
//! over the limit. A generator with a raw socket floods from one (spoofed) address in an
//! attacker namespace while a client in another namespace connects; the lab checks the counts
//! against the generator's, the half-open connections against `ss`, and the client's echo.
//!
//! Run as root: `cargo run --example lab_7_1`. The same code is a doctest of the chapter.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::packet::{parse_ports, PacketCtx};
use bpfkit::insn::Reg;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use bpfkit::testing::packet::{Packet, TcpFlags};
use socket2::{Domain, Protocol, Socket, Type};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if !bpfkit::features::can_use_bpf("Lab 7.1") {
        return Ok(());
    }
    type Error = Box<dyn std::error::Error + Send + Sync>;
    const RATE: u64 = 100; // SYNs per second per source …
    const BURST: u64 = 5; // … after a first burst of this many
    const FLOOD: u16 = 60_000; // SYNs, each from its own source port
    // Configuration, read by the program at every SYN: nanoseconds of credit one SYN costs, and the
    // most credit a source can save up. User space may change it at any time.
    let config = Map::create(&MapSpec::new("syn_config", MapType::Array, 4, 16, 1))?;
    config.typed::<u32, [u64; 2]>()?.insert(&0, &[1_000_000_000 / RATE, BURST * 1_000_000_000 / RATE], UpdateFlags::Any)?;
    // Per source address: {credit_ns, last_ns, passed, dropped}. LRU: a flood from many sources
    // evicts old buckets instead of filling the map.
    let buckets = Map::create(&MapSpec::new("syn_buckets", MapType::LruHash, 4, 32, 65536))?;
    let prog = bpf_asm! {
        r9 = r1
        {parse_ports(PacketCtx::Xdp, Reg::R9, -16, "pass")?}
        if r0 != 6 goto pass                // TCP …
        r5 = *(u16 *)(r10 - 16)
        if r5 != 0x800 goto pass            // … over IPv4
        r5 = *(u8 *)(r4 + 13)               // the TCP flags
        r5 &= 0x12
        if r5 != 0x02 goto pass             // SYN without ACK: a new connection
        r5 = *(u32 *)(r2 + 26)              // the source address: the bucket's key
        *(u32 *)(r10 - 24) = r5
        r1 = map_value[syn_config]+0 ll
        r7 = *(u64 *)(r1 + 0)               // cost of one SYN, ns
        r8 = *(u64 *)(r1 + 8)               // burst, ns
        call bpf_ktime_get_ns
        r6 = r0                             // now
        r1 = map[syn_buckets] ll
        r2 = r10
        r2 += -24
        call bpf_map_lookup_elem
        if r0 != 0 goto bucket
        *(u64 *)(r10 - 56) = r8             // a new source starts with a full bucket
        *(u64 *)(r10 - 48) = r6
        *(u64 *)(r10 - 40) = 0
        *(u64 *)(r10 - 32) = 0
        r1 = map[syn_buckets] ll
        r2 = r10
        r2 += -24
        r3 = r10
        r3 += -56
        r4 = 1                              // BPF_NOEXIST: another CPU may have just made it
        call bpf_map_update_elem
        r1 = map[syn_buckets] ll
        r2 = r10
        r2 += -24
        call bpf_map_lookup_elem
        if r0 == 0 goto pass                // no room at all: fail open
    bucket:
        r1 = *(u64 *)(r0 + 8)               // when the bucket was last filled
        r2 = 0
        if r1 > r6 goto refilled            // a later time from another CPU: no refill
        r2 = r6
        r2 -= r1
    refilled:
        r3 = *(u64 *)(r0 + 0)
        r3 += r2                            // the credit earned since then …
        if r3 <= r8 goto capped
        r3 = r8                             // … up to the burst
    capped:
        *(u64 *)(r0 + 8) = r6
        if r3 < r7 goto over
        r3 -= r7                            // pay for this SYN
        *(u64 *)(r0 + 0) = r3
        r1 = 1
        lock *(u64 *)(r0 + 16) += r1        // passed
        goto pass
    over:
        *(u64 *)(r0 + 0) = r3
        r1 = 1
        lock *(u64 *)(r0 + 24) += r1        // dropped
        r0 = 1                              // XDP_DROP
        exit
    pass:
        r0 = 2                              // XDP_PASS
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&config, &buckets], &LoadOptions::new("syn_limit", ProgType::Xdp))?;

    // attacker (192.0.2.2) ── sa 192.0.2.1 [server] 198.51.100.1 sc ── client (198.51.100.2)
    let (server_a, attacker_ip, spoofed) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 66));
    let (server_c, client_ip) = (Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 2));
    let (server, attacker, client) = (NetNs::new()?, NetNs::new()?, NetNs::new()?);
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        nl.set_up(i)?;
        Ok(i)
    };
    let (sa, sc) = server.run(|| -> Result<(u32, u32), Error> {
        let nl = Netlink::open()?;
        nl.add_veth("sa", "eth0", Some(attacker.as_fd()))?;
        nl.add_veth("sc", "eth0", Some(client.as_fd()))?;
        Ok((configure("sa", server_a)?, configure("sc", server_c)?))
    })??;
    attacker.run(|| configure("eth0", attacker_ip))??;
    client.run(|| configure("eth0", client_ip))??;
    let listener = server.run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)))??;
    // One real connection from the attacker before the filter, so its ARP entry for the server
    // exists and the flood is not held up by address resolution.
    attacker.run(|| TcpStream::connect_timeout(&SocketAddr::from((server_a, 80)), Duration::from_secs(2)))??;
    drop(listener.accept()?);

    let links = server.run(|| -> Result<_, Error> { Ok([prog.attach_xdp(sa, XdpMode::Native)?, prog.attach_xdp(sc, XdpMode::Native)?]) })??;
    // The generator: a raw socket (IPPROTO_RAW: we write the IP header, so any source address)
    // sending SYNs from 192.0.2.66 to port 80, each from its own port: every SYN that gets
    // through is a half-open connection of its own.
    let raw = attacker.run(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(libc::IPPROTO_RAW))))??;
    let syns: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| Ok(Packet::tcp(SocketAddr::from((spoofed, 1024 + i)), SocketAddr::from((server_a, 80))).flags(TcpFlags::SYN).seq(u32::from(i) * 7919).build()?[14..].to_vec()))
        .collect::<Result<_, Error>>()?;
    let to = SocketAddrV4::new(server_a, 0).into();
    let per_source = buckets.typed::<[u8; 4], [u64; 4]>()?;
    let start = Instant::now();
    let (sent, flood_time, connected_at, echoed) = std::thread::scope(|s| -> Result<_, Error> {
        let flood = s.spawn(|| -> std::io::Result<(u64, Duration)> {
            for syn in &syns {
                raw.send_to(syn, &to)?; // as fast as it can
            }
            Ok((syns.len() as u64, start.elapsed()))
        });
        // In the middle of the flood, a client connects from its own address and gets an echo.
        while per_source.get(&spoofed.octets())?.map_or(0, |b| b[3]) < 1000 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut stream = client.run(|| TcpStream::connect_timeout(&SocketAddr::from((server_c, 80)), Duration::from_secs(2)))??;
        let connected_at = start.elapsed();
        stream.write_all(b"hello\n")?;
        let (mut conn, _) = listener.accept()?;
        let mut line = [0u8; 6];
        conn.read_exact(&mut line)?;
        conn.write_all(&line)?;
        stream.read_exact(&mut line)?;
        let (sent, time) = flood.join().expect("the flood thread")?;
        Ok((sent, time, connected_at, &line == b"hello\n"))
    })?;
    drop(links);

    let [cost, burst] = config.typed::<u32, [u64; 2]>()?.get(&0)?.ok_or("no config")?;
    println!("limit: {} SYN/s per source, burst {}", 1_000_000_000 / cost, burst / cost);
    println!("flood: {sent} SYNs from {spoofed} in {:.0} ms ({:.0}/s)", flood_time.as_secs_f64() * 1e3, sent as f64 / flood_time.as_secs_f64());
    println!("{:<15} {:>8} {:>8}", "source", "passed", "dropped");
    let mut rows: Vec<([u8; 4], [u64; 4])> = per_source.iter().collect::<Result<_, _>>()?;
    rows.sort();
    for (ip, [_, _, passed, dropped]) in &rows {
        println!("{:<15} {passed:>8} {dropped:>8}", Ipv4Addr::from(*ip).to_string());
    }
    // The oracle for what passed: the server's TCP stack, through `ss`. The spoofed address never
    // answers the SYN-ACKs, so every SYN that got through is still a half-open connection.
    let ss = server.run(|| Command::new("ss").args(["-Htn", "state", "syn-recv"]).output())??;
    let half_open = String::from_utf8(ss.stdout)?.lines().filter(|l| l.contains(&format!("{spoofed}:"))).count() as u64;
    println!("ss: {half_open} half-open connections from {spoofed}");
    println!("client {client_ip}: connected {:.1} ms into the flood, line echoed: {echoed}", connected_at.as_secs_f64() * 1e3);

    let [_, _, passed, dropped] = per_source.get(&spoofed.octets())?.ok_or("no bucket for the flood")?;
    assert_eq!(passed + dropped, sent, "the program saw every SYN the generator sent");
    // Allowed: the first burst, plus what the bucket refilled while the flood lasted (at most
    // RATE x its duration, +1 for a token begun before the first SYN).
    let refill = (RATE as f64 * flood_time.as_secs_f64()).ceil() as u64;
    assert!((BURST..=BURST + refill + 1).contains(&passed), "passed {passed}, allowed {BURST}..={}", BURST + refill + 1);
    assert!(dropped >= sent - (BURST + refill + 1) && dropped <= sent - BURST, "dropped {dropped} of {sent}");
    assert_eq!(half_open, passed, "TCP saw exactly the SYNs the program passed");
    assert!(echoed && connected_at < flood_time, "the legitimate client connected during the flood");
    let legit = per_source.get(&client_ip.octets())?.ok_or("no bucket for the client")?;
    assert_eq!((legit[2], legit[3]), (1, 0), "the client's SYN passed");
    Ok(())
}
