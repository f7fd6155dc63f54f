//! Lab 14.1 — a program test framework at work (tutorial/ch14-testing.md). The program under
//! test is a small XDP firewall: it drops TCP SYNs to the ports in a hash map, drops IPv4 with
//! options and truncated TCP headers, passes everything else, and counts why it decided. Three
//! steps: a suite of three cases and the coverage report that names what they never ran; the
//! cases that complete it (100% of blocks and branch directions), map-state expectations and a
//! property over 500 random frames checked against a model in Rust; then the same program on a
//! veth in a network namespace, where real connections agree with the test-run verdicts.
//!
//! Everything it creates goes when it exits, however it exits: the namespaces are held only by
//! file descriptors (and take the veth pair with them), the XDP link is dropped.
//!
//! Run as root: `cargo run --example lab_14_1`. The same code is a doctest of the chapter.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::insn::Assembled;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::testing::packet::{Packet, TcpFlags};
use bpfkit::testing::{Case, Suite};

type Error = Box<dyn std::error::Error + Send + Sync>;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const BLOCKED: [u16; 2] = [22, 2323];
/// Why the firewall decided: the index of each reason's counter in `stats`, and its verdict.
const REASONS: [(&str, u32); 8] = [
    ("shorter than Ethernet + IPv4", XDP_PASS),
    ("not IPv4", XDP_PASS),
    ("IPv4 with options", XDP_DROP),
    ("not TCP", XDP_PASS),
    ("truncated TCP header", XDP_DROP),
    ("not a bare SYN", XDP_PASS),
    ("SYN to an open port", XDP_PASS),
    ("SYN to a blocked port", XDP_DROP),
];

/// The firewall. `blocked` maps a port (host order) to the SYNs dropped for it; `stats` is
/// one array element of eight counters, indexed by reason, addressed directly (`map_value`):
/// no lookup, so no NULL check — and no branch that no test could ever take.
fn firewall() -> Result<Assembled, Error> {
    Ok(bpf_asm! {
        r2 = *(u32 *)(r1 + 0)           // data
        r3 = *(u32 *)(r1 + 4)           // data_end
        r4 = r2
        r4 += 34                        // Ethernet 14 + IPv4 20
        if r4 > r3 goto short
        r4 = *(u16 *)(r2 + 12)          // EtherType 0x0800, read little-endian
        if r4 != 8 goto not_ipv4
        r4 = *(u8 *)(r2 + 14)           // IPv4 version 4, header length 5 words
        if r4 != 0x45 goto options
        r4 = *(u8 *)(r2 + 23)           // protocol
        if r4 != 6 goto not_tcp
        r4 = r2
        r4 += 54                        // + TCP 20
        if r4 > r3 goto truncated
        r4 = *(u8 *)(r2 + 47)           // TCP flags
        r4 &= 0x12                      // SYN and ACK
        if r4 != 2 goto not_syn         // only a bare SYN opens a connection
        r4 = *(u16 *)(r2 + 36)          // destination port
        r4 = be16 r4
        *(u32 *)(r10 - 4) = w4
        r1 = map[blocked] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto open
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1     // blocked[port] += 1
        r6 = 7
        goto drop
    short:
        r6 = 0
        goto pass
    not_ipv4:
        r6 = 1
        goto pass
    options:
        r6 = 2
        goto drop
    not_tcp:
        r6 = 3
        goto pass
    truncated:
        r6 = 4
        goto drop
    not_syn:
        r6 = 5
        goto pass
    open:
        r6 = 6
    pass:
        r7 = 2                          // XDP_PASS
        goto count
    drop:
        r7 = 1                          // XDP_DROP
    count:
        r6 <<= 3
        r1 = map_value[stats]+0 ll
        r1 += r6
        r2 = 1
        lock *(u64 *)(r1 + 0) += r2     // stats[reason] += 1
        r0 = r7
        exit
    }
    .assemble()?)
}

/// Fresh maps: the blocked ports (no SYNs dropped yet) and zeroed counters.
fn maps() -> Result<(Map, Map), Error> {
    let blocked = Map::create(&MapSpec::new("blocked", MapType::Hash, 4, 8, 64))?;
    for port in BLOCKED {
        blocked.typed::<u32, u64>()?.insert(&u32::from(port), &0, UpdateFlags::Any)?;
    }
    let stats = Map::create(&MapSpec::new("stats", MapType::Array, 4, 64, 1))?;
    Ok((blocked, stats))
}

/// The firewall's rules in plain Rust: the reason it gives `frame` (an index into REASONS).
fn model(frame: &[u8], blocked: &[u16]) -> usize {
    match frame {
        f if f.len() < 34 => 0,
        f if f[12..14] != [0x08, 0x00] => 1,
        f if f[14] != 0x45 => 2,
        f if f[23] != 6 => 3,
        f if f.len() < 54 => 4,
        f if f[47] & 0x12 != 0x02 => 5,
        f if !blocked.contains(&u16::from_be_bytes([f[36], f[37]])) => 6,
        _ => 7,
    }
}

fn tcp(from: &str, to: &str, flags: TcpFlags) -> Vec<u8> {
    Packet::tcp(from.parse().unwrap(), to.parse().unwrap()).flags(flags).build().unwrap()
}

fn syn(port: u16) -> Vec<u8> {
    tcp("10.0.0.1:40000", &format!("10.0.0.2:{port}"), TcpFlags::SYN)
}

fn udp(port: u16) -> Vec<u8> {
    Packet::udp("10.0.0.1:40000".parse().unwrap(), format!("10.0.0.2:{port}").parse().unwrap()).payload(*b"query").build().unwrap()
}

/// An ARP request (who has 10.0.0.2?): 42 bytes, EtherType 0x0806.
fn arp() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend([0, 1, 0x08, 0x00, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
    f.extend([0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    f
}

/// A SYN to 22 whose IPv4 header carries four bytes of options (NOPs): header length 6.
fn syn_with_ip_options() -> Vec<u8> {
    let mut f = syn(22);
    f.splice(34..34, [1, 1, 1, 1]);
    f[14] = 0x46;
    f[17] += 4; // total length
    f
}

/// Frames a fuzzer would send: typed packets to the ports that matter with any flags, and
/// random bytes; now and then cut short or with a bit flipped.
fn random_frame(rng: &mut fastrand::Rng) -> Vec<u8> {
    let port = [22, 2323, 80, rng.u16(..)][rng.usize(..4)];
    let flags = TcpFlags([0x02, 0x12, 0x10, 0x01, rng.u8(..)][rng.usize(..5)]);
    let mut f = match rng.usize(..4) {
        0 => tcp("10.0.0.1:40000", &format!("10.0.0.2:{port}"), flags),
        1 => tcp("[2001:db8::1]:40000", &format!("[2001:db8::2]:{port}"), flags),
        2 => udp(port),
        _ => (0..rng.usize(14..80)).map(|_| rng.u8(..)).collect(),
    };
    if rng.u8(..) < 40 {
        f.truncate(rng.usize(14..=f.len())); // (a test run needs an Ethernet header: 14 bytes)
    }
    if rng.u8(..) < 40 {
        let i = rng.usize(..f.len());
        f[i] ^= 1 << rng.u8(..8);
    }
    f
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 14.1") {
        return Ok(());
    }
    let firewall = firewall()?;
    let opts = LoadOptions::new("syn_guard", ProgType::Xdp);

    // ---- 1. Three cases, and what they never ran ----
    let (blocked, stats) = maps()?;
    let first = Suite::new(&firewall, opts.clone())
        .maps(&[&blocked, &stats])
        .case(Case::new("SYN to 22 is dropped").data(syn(22)).returns(XDP_DROP).map_has(&blocked, &22u32.to_ne_bytes(), &1u64.to_ne_bytes()))
        .case(Case::new("SYN to 80 passes").data(syn(80)).returns(XDP_PASS).map_lacks(&blocked, &80u32.to_ne_bytes()))
        .case(Case::new("UDP passes").data(udp(53)).returns(XDP_PASS))
        .run()?;
    println!("--- 1. three cases ---\n{first}");
    assert!(first.passed(), "{first}");
    assert!(!first.coverage.is_complete());
    let never_ran: Vec<String> = first.coverage.uncovered.iter().map(|l| l.text().trim().to_string()).collect();
    assert!(never_ran.iter().any(|l| l.starts_with("r6 = 2")), "the IPv4-options path is named: {never_ran:?}");

    // ---- 2. The cases the report asks for; the final counters; a property ----
    let (blocked, stats) = maps()?;
    // After these ten cases each reason has counted once; "not IPv4" (ARP, IPv6) and "SYN to
    // a blocked port" (22, 2323) twice.
    let counted: Vec<u8> = [1u64, 2, 1, 1, 1, 1, 1, 2].iter().flat_map(|n| n.to_ne_bytes()).collect();
    let second = Suite::new(&firewall, opts.clone())
        .maps(&[&blocked, &stats])
        .case(Case::new("SYN to 22 is dropped").data(syn(22)).returns(XDP_DROP).map_has(&blocked, &22u32.to_ne_bytes(), &1u64.to_ne_bytes()))
        .case(Case::new("SYN to 80 passes").data(syn(80)).returns(XDP_PASS))
        .case(Case::new("UDP passes").data(udp(53)).returns(XDP_PASS))
        .case(Case::new("a 20-byte runt passes").data(vec![0u8; 20]).returns(XDP_PASS))
        .case(Case::new("ARP passes").data(arp()).returns(XDP_PASS))
        .case(Case::new("IPv6 passes").data(tcp("[2001:db8::1]:40000", "[2001:db8::2]:22", TcpFlags::SYN)).returns(XDP_PASS))
        .case(Case::new("IPv4 options are dropped").data(syn_with_ip_options()).returns(XDP_DROP))
        .case(Case::new("a truncated TCP header is dropped").data(syn(22)[..44].to_vec()).returns(XDP_DROP))
        .case(Case::new("a SYN-ACK to 22 passes").data(tcp("10.0.0.1:40000", "10.0.0.2:22", TcpFlags::SYN | TcpFlags::ACK)).returns(XDP_PASS))
        .case(
            Case::new("SYN to 2323 is dropped")
                .data(syn(2323))
                .returns(XDP_DROP)
                .map_has(&blocked, &2323u32.to_ne_bytes(), &1u64.to_ne_bytes())
                .map_has(&stats, &0u32.to_ne_bytes(), &counted),
        )
        .property("random frames: the model's verdict", 500, 14, random_frame, |frame, out| {
            let want = REASONS[model(frame, &BLOCKED)].1;
            if out.retval == want { Ok(()) } else { Err(format!("returned {}, the model says {want}", out.retval)) }
        })
        .run()?;
    println!("--- 2. ten cases and a property ---\n{second}");
    assert!(second.passed(), "{second}");
    assert!(second.coverage.is_complete(), "{}", second.coverage);
    // Every run counted once: 10 cases and 500 generated frames.
    let counts = stats.typed::<u32, [u64; 8]>()?.get(&0)?.unwrap_or_default();
    assert_eq!(counts.iter().sum::<u64>(), 10 + 500, "{counts:?}");
    let drops: u64 = REASONS.iter().zip(counts).filter(|((_, v), _)| *v == XDP_DROP).map(|(_, n)| n).sum();
    println!("counters after 510 runs: {counts:?} ({drops} dropped)\n");

    // ---- 3. The same program on a veth: real traffic agrees with the test runs ----
    on_the_wire(&firewall)
}

/// Namespaces `a` and `b` joined by veth va <-> vb; the firewall on vb. Each probe is judged by
/// a test run of the frame it will send, then sent for real, with the kernel's TCP and UDP
/// stack as the independent judge of what got through.
fn on_the_wire(firewall: &Assembled) -> Result<(), Error> {
    let (a_ip, b_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (blocked, stats) = maps()?;
    let prog = Program::load(firewall, &[&blocked, &stats], &LoadOptions::new("syn_guard", ProgType::Xdp))?;
    let (a, b) = (NetNs::new()?, NetNs::new()?);
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
    let (ssh, web, dns) = b.run(|| -> std::io::Result<_> {
        Ok((TcpListener::bind((b_ip, 22))?, TcpListener::bind((b_ip, 8080))?, UdpSocket::bind((b_ip, 5353))?))
    })??;
    dns.set_read_timeout(Some(Duration::from_secs(2)))?;

    // What the test runs say about the frames the probes will send (before attaching: the
    // counters below are then the wire's alone).
    let verdict = |frame: Vec<u8>| -> Result<u32, Error> { Ok(prog.test_run(&TestRun::with_data(frame))?.retval) };
    let predicted = [
        verdict(tcp("192.0.2.1:40000", "192.0.2.2:22", TcpFlags::SYN))?,
        verdict(tcp("192.0.2.1:40000", "192.0.2.2:8080", TcpFlags::SYN))?,
        verdict(Packet::udp("192.0.2.1:40000".parse()?, "192.0.2.2:5353".parse()?).payload(*b"query").build()?)?,
    ];
    let before = stats.typed::<u32, [u64; 8]>()?.get(&0)?.unwrap_or_default();
    let ssh_before = blocked.typed::<u32, u64>()?.get(&22)?.unwrap_or_default();
    let link = b.run(|| prog.attach_xdp(vb, XdpMode::Native))??;

    let connect = |port: u16| a.run(|| TcpStream::connect_timeout(&SocketAddr::from((b_ip, port)), Duration::from_millis(1500)));
    let started = Instant::now();
    let to_ssh = connect(22)?;
    let waited = started.elapsed();
    let to_web = connect(8080)?;
    let to_dns = a.run(|| UdpSocket::bind((a_ip, 0))?.send_to(b"query", (b_ip, 5353)))??;
    let got_dns = dns.recv(&mut [0u8; 64]);
    drop(link);

    let after = stats.typed::<u32, [u64; 8]>()?.get(&0)?.unwrap_or_default();
    let delta: Vec<u64> = after.iter().zip(before).map(|(x, y)| x - y).collect();
    let blocked_22 = blocked.typed::<u32, u64>()?.get(&22)?.unwrap_or_default() - ssh_before;
    // Through or not, by the kernel's own account: connected and accepted, or received.
    ssh.set_nonblocking(true)?;
    let through = [to_ssh.is_ok() || ssh.accept().is_ok(), to_web.is_ok() && web.accept().is_ok(), got_dns.as_ref().is_ok_and(|n| *n == to_dns)];
    let seen = [
        match &to_ssh {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => format!("connect timed out ({:.1} s)", waited.as_secs_f64()),
            other => format!("{other:?}"),
        },
        if through[1] { "connected, accepted".to_string() } else { format!("{to_web:?}") },
        if through[2] { "datagram received".to_string() } else { format!("{got_dns:?}") },
    ];
    let name = |v: u32| if v == XDP_DROP { "DROP" } else { "PASS" };
    println!("{:<24} {:<9} {:<28} counted by the program", "probe (va -> vb)", "test run", "on the wire");
    for (i, (probe, reason)) in [("SYN to 192.0.2.2:22", 7), ("SYN to 192.0.2.2:8080", 6), ("UDP to 192.0.2.2:5353", 3)].into_iter().enumerate() {
        println!("{probe:<24} {:<9} {:<28} {} x {}", name(predicted[i]), seen[i], delta[reason], REASONS[reason].0);
        // The test run's verdict is what happened: PASS got through, DROP never arrived.
        assert_eq!(predicted[i] == XDP_PASS, through[i], "{probe}: the test run said {}, the wire: {}", name(predicted[i]), seen[i]);
    }
    println!("all reasons: {delta:?}; blocked[22] += {blocked_22}");
    assert!(delta[7] >= 1 && delta[7] == blocked_22, "each SYN to 22 (and its retransmission) dropped and counted");
    assert_eq!((delta[6], delta[3]), (1, 1), "one SYN to 8080, one datagram");
    assert_eq!((delta[2], delta[4]), (0, 0), "real traffic has no IPv4 options or cut TCP headers");
    Ok(())
}
