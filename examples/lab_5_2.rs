//! Lab 5.2 — a TCP connection tracker (tutorial/ch05-kprobes.md). The lab makes its own
//! connections from one network namespace to a listener in another: three to a port with a
//! listener (they connect) and two to a port without one (refused by a RST). Two variants watch:
//!
//! * kprobes: `tcp_v4_connect` entry (remember the socket) and return (its return value and
//!   4-tuple, read with CO-RE), and `tcp_set_state` for every state change of those sockets;
//! * the `sock:inet_sock_set_state` tracepoint, where the kernel has it (decided by probing).
//!
//! Each variant that this kernel supports must report exactly the lab's five connections, with
//! the ports user space saw and the right outcome. Run as root: `cargo run --example lab_5_2`.
//! On a kernel without kprobes the first variant shows bpfkit's error; the 6.1 guest
//! (`scripts/kernel2/run.sh`) runs both. The same code is a doctest of the chapter.

use bpfkit::attach::kprobe::{kernel_function, KprobeTarget};
use bpfkit::attach::{Link, ProbeError, TracepointFormat};
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::helpers::patterns::{map_lookup, probe_arg, probe_ret, ringbuf_output, tgid_filter, zero_stack};
use bpfkit::insn::{Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;
const STATES: [&str; 13] = ["?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"];
const OPEN: u16 = 8080; // a listener waits here
const CLOSED: u16 = 8081; // nothing listens here: the server answers a SYN with a RST
// The record both variants write: {u32 kind; i32 ret; u64 sk; u32 saddr, daddr; u16 sport, dport; u32 old, new}.
const RECORD: usize = 40;
const CONNECT_RETURN: u32 = 1;
const STATE_CHANGE: u32 = 2;

/// What one socket went through, assembled from the records.
#[derive(Default, Debug)]
struct Conn {
    tuple: Option<(Ipv4Addr, u16, Ipv4Addr, u16)>,
    connect_ret: Option<i32>,
    states: Vec<(&'static str, &'static str)>,
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 5.2") {
        return Ok(());
    }
    // Client namespace `a` (192.0.2.1) and server namespace `b` (192.0.2.2), joined by a veth pair.
    let (a_ip, b_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (a, b) = (NetNs::new()?, NetNs::new()?);
    let configure = |name: &str, ip: Ipv4Addr| -> Result<(), Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        Ok(nl.set_up(i)?)
    };
    a.run(|| -> Result<(), Error> {
        Netlink::open()?.add_veth("va", "vb", Some(b.as_fd()))?;
        configure("va", a_ip)
    })??;
    b.run(|| configure("vb", b_ip))??;
    let _listener: TcpListener = b.run(|| TcpListener::bind((b_ip, OPEN)))??; // nothing on CLOSED
    let events = Map::create(&MapSpec::new("tcp_events", MapType::RingBuf, 0, 0, 64 * 1024))?;

    let mut variants = 0;
    // ---- Variant 1: kprobes on tcp_v4_connect (entry and return) and tcp_set_state ----
    match kprobe_variant(&events) {
        Ok(links) => {
            let conns = connect_and_collect(&a, b_ip, &events, links)?;
            check(&conns, true)?;
            variants += 1;
        }
        Err(e) if matches!(e.downcast_ref(), Some(ProbeError::NoProbeSupport { .. })) => {
            assert!(kernel_function("register_kprobe")?.is_none(), "bpfkit says no kprobes, yet register_kprobe exists");
            println!("kprobe variant: {e}\n(and /proc/kallsyms has no register_kprobe: this kernel was built without CONFIG_KPROBES)\n");
        }
        Err(e) => return Err(e.into()),
    }
    // ---- Variant 2: the sock:inet_sock_set_state tracepoint, if this kernel has it ----
    match TracepointFormat::read("sock", "inet_sock_set_state") {
        Ok(format) => {
            let links = tracepoint_variant(&events, &format)?;
            let conns = connect_and_collect(&a, b_ip, &events, links)?;
            check(&conns, false)?;
            variants += 1;
        }
        Err(e) => println!("tracepoint variant: {e}"),
    }
    assert!(variants >= 1, "neither kprobes nor sock:inet_sock_set_state on this kernel");
    Ok(())
}

/// tcp_v4_connect(struct sock *sk, …): entry remembers `sk` per thread (and marks it tracked);
/// return reads the 4-tuple the kernel just chose; tcp_set_state(sk, state) reports changes of
/// tracked sockets, whichever context (often a softirq) makes them.
fn kprobe_variant(events: &Map) -> Result<Vec<Link>, Error> {
    let connecting = Map::create(&MapSpec::new("connecting", MapType::Hash, 4, 8, 1024))?; // tid -> sk
    let tracked = Map::create(&MapSpec::new("tracked", MapType::Hash, 8, 8, 1024))?; // sk -> 1
    let sk_field = |dst: Reg, path: &str, size: Size| core_read(dst, Reg::R6, &[Hop::new("sock", path)], size, -48, Reg::R9);
    let entry = bpf_asm! {
        {probe_arg(Reg::R6, Reg::R1, 0)?}
        {tgid_filter(std::process::id(), "out")?}
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 4) = w0          // key: the thread
        *(u64 *)(r10 - 16) = r6         // value: the socket
        r1 = map[connecting] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
        *(u64 *)(r10 - 24) = 1
        r1 = map[tracked] ll
        r2 = r10
        r2 += -16
        r3 = r10
        r3 += -24
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    };
    let mut ret = bpf_asm! {
        {probe_ret(Reg::R8, Reg::R1)?}
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 4) = w0
        {map_lookup("connecting", -4, "out")?}
        r6 = *(u64 *)(r0 + 0)           // the socket connect() was entered with
        r1 = map[connecting] ll
        r2 = r10
        r2 += -4
        call bpf_map_delete_elem
        {zero_stack(-(RECORD as i16), RECORD)?}
        *(u32 *)(r10 - 40) = {CONNECT_RETURN as i32}
        *(u32 *)(r10 - 36) = w8         // 0, or a negative errno
        *(u64 *)(r10 - 32) = r6
    };
    for (path, off) in [("__sk_common.skc_rcv_saddr", -24i16), ("__sk_common.skc_daddr", -20)] {
        ret.extend(sk_field(Reg::R7, path, Size::W)?);
        ret.extend(bpf_asm! { *(u32 *)(r10 + {off}) = w7 });
    }
    for (path, off) in [("__sk_common.skc_num", -16i16), ("__sk_common.skc_dport", -14)] {
        ret.extend(sk_field(Reg::R7, path, Size::H)?);
        ret.extend(bpf_asm! { *(u16 *)(r10 + {off}) = w7 });
    }
    ret.extend(bpf_asm! {
        {ringbuf_output("tcp_events", -(RECORD as i16), RECORD)?}
    out:
        r0 = 0
        exit
    });
    let mut state = bpf_asm! {
        r9 = r1
        {probe_arg(Reg::R6, Reg::R9, 0)?}
        *(u64 *)(r10 - 64) = r6
        {map_lookup("tracked", -64, "out")?}
        {zero_stack(-(RECORD as i16), RECORD)?}
        *(u32 *)(r10 - 40) = {STATE_CHANGE as i32}
        *(u64 *)(r10 - 32) = r6
        {probe_arg(Reg::R8, Reg::R9, 1)?}
        *(u32 *)(r10 - 4) = w8          // the new state
    };
    state.extend(sk_field(Reg::R7, "__sk_common.skc_state", Size::B)?);
    state.extend(bpf_asm! {
        *(u32 *)(r10 - 8) = w7          // the state it leaves
        {ringbuf_output("tcp_events", -(RECORD as i16), RECORD)?}
    out:
        r0 = 0
        exit
    });
    let maps = [events, &connecting, &tracked];
    let load = |name: &str, p: bpfkit::insn::Program| -> Result<Program, Error> {
        Ok(Program::load(&p.assemble()?, &maps, &LoadOptions::new(name, ProgType::Kprobe))?)
    };
    let (entry, ret, state) = (load("connect_in", entry)?, load("connect_out", ret)?, load("set_state", state)?);
    Ok(vec![
        state.attach_kprobe(&KprobeTarget::function("tcp_set_state"))?,
        ret.attach_kprobe(&KprobeTarget::function("tcp_v4_connect").retprobe())?,
        entry.attach_kprobe(&KprobeTarget::function("tcp_v4_connect"))?,
    ])
}

/// sock:inet_sock_set_state: every TCP state change, with the addresses in the event; offsets
/// from the tracepoint's format file. Only IPv4 TCP sockets going to the lab's two ports.
fn tracepoint_variant(events: &Map, format: &TracepointFormat) -> Result<Vec<Link>, Error> {
    let f = |name: &str| format.offset_of(name);
    let prog = bpf_asm! {
        r2 = *(u16 *)(r1 + {f("protocol")?})
        if r2 != 6 goto out             // IPPROTO_TCP
        r2 = *(u16 *)(r1 + {f("family")?})
        if r2 != 2 goto out             // AF_INET
        r2 = *(u16 *)(r1 + {f("dport")?})   // host byte order in this event
        if r2 == {OPEN as i32} goto ours
        if r2 != {CLOSED as i32} goto out
    ours:
        {zero_stack(-(RECORD as i16), RECORD)?}
        *(u32 *)(r10 - 40) = {STATE_CHANGE as i32}
        r2 = *(u64 *)(r1 + {f("skaddr")?})
        *(u64 *)(r10 - 32) = r2
        r2 = *(u32 *)(r1 + {f("saddr")?})   // __u8[4]: network order, copied as is
        *(u32 *)(r10 - 24) = w2
        r2 = *(u32 *)(r1 + {f("daddr")?})
        *(u32 *)(r10 - 20) = w2
        r2 = *(u16 *)(r1 + {f("sport")?})
        *(u16 *)(r10 - 16) = w2
        r2 = *(u16 *)(r1 + {f("dport")?})
        r2 = be16 r2                    // as skc_dport holds it: network order
        *(u16 *)(r10 - 14) = w2
        r2 = *(u32 *)(r1 + {f("oldstate")?})
        *(u32 *)(r10 - 8) = w2
        r2 = *(u32 *)(r1 + {f("newstate")?})
        *(u32 *)(r10 - 4) = w2
        {ringbuf_output("tcp_events", -(RECORD as i16), RECORD)?}
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[events], &LoadOptions::new("tcp_states", ProgType::Tracepoint))?;
    Ok(vec![prog.attach_tracepoint("sock", "inet_sock_set_state")?])
}

/// The workload: three connections that succeed and two that are refused, made from namespace
/// `a`; then the records, grouped by socket. The links are dropped before reading.
fn connect_and_collect(a: &NetNs, server: Ipv4Addr, events: &Map, links: Vec<Link>) -> Result<Vec<(u16, Conn)>, Error> {
    let mut ring = RingBuf::new(events)?;
    let mut made = Vec::new(); // (client port or 0, server port, connected?)
    let mut streams = Vec::new();
    for port in [OPEN, CLOSED, OPEN, CLOSED, OPEN] {
        let to = SocketAddr::from((server, port));
        match a.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)))? {
            Ok(s) => {
                made.push((s.local_addr()?.port(), port, true));
                streams.push(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => made.push((0, port, false)),
            Err(e) => return Err(e.into()),
        }
    }
    drop(links);
    // The kernel reuses a freed socket's memory, so one address can be several connections in
    // turn: a connection starts at CLOSE -> SYN_SENT, and later records go to the latest one.
    let mut conns: Vec<Conn> = Vec::new();
    let mut latest: HashMap<u64, usize> = HashMap::new();
    ring.poll(Some(Duration::from_millis(100)), |r| {
        let u32_at = |o: usize| u32::from_ne_bytes(r[o..o + 4].try_into().unwrap());
        let sk = u64::from_ne_bytes(r[8..16].try_into().unwrap());
        let addr_at = |o: usize| Ipv4Addr::new(r[o], r[o + 1], r[o + 2], r[o + 3]); // network order
        // skc_num (the local port) is in host order; skc_dport in network order.
        let (sport, dport) = (u16::from_ne_bytes([r[24], r[25]]), u16::from_be_bytes([r[26], r[27]]));
        let state = |o: usize| *STATES.get(u32_at(o) as usize).unwrap_or(&"?");
        let kind = u32_at(0);
        if (kind == STATE_CHANGE && (state(32), state(36)) == ("CLOSE", "SYN_SENT")) || !latest.contains_key(&sk) {
            latest.insert(sk, conns.len());
            conns.push(Conn::default());
        }
        let conn = &mut conns[latest[&sk]];
        if dport != 0 {
            // (tcp_set_state's records carry no addresses: the connect return had them.)
            conn.tuple = Some((addr_at(16), sport, addr_at(20), dport));
        }
        match kind {
            CONNECT_RETURN => conn.connect_ret = Some(u32_at(4) as i32),
            _ => conn.states.push((state(32), state(36))),
        }
    })?;
    drop(streams);
    let mut conns: Vec<(u16, Conn)> = conns.into_iter().map(|c| (c.tuple.map(|t| t.1).unwrap_or(0), c)).collect();
    println!("{:<22} {:<22} {:>7}  states", "source", "destination", "connect");
    for (_, c) in &conns {
        let (s, sp, d, dp) = c.tuple.unwrap_or((Ipv4Addr::UNSPECIFIED, 0, Ipv4Addr::UNSPECIFIED, 0));
        let ret = c.connect_ret.map_or("-".to_string(), |r| r.to_string());
        let states: Vec<String> = c.states.iter().map(|(from, to)| format!("{from}->{to}")).collect();
        println!("{:<22} {:<22} {ret:>7}  {}", format!("{s}:{sp}"), format!("{d}:{dp}"), states.join(" "));
    }
    // What user space saw, to compare: the ports of the connections that succeeded.
    conns.retain(|(_, c)| c.tuple.is_some());
    let refused = made.iter().filter(|m| !m.2).count();
    println!("user space: {} connected ({:?}), {refused} refused\n", made.len() - refused, made.iter().filter(|m| m.2).map(|m| m.0).collect::<Vec<_>>());
    let mut expected: Vec<u16> = made.iter().filter(|m| m.2).map(|m| m.0).collect();
    expected.sort();
    let mut seen: Vec<u16> = conns.iter().filter(|(_, c)| c.tuple.is_some_and(|t| t.3 == OPEN)).map(|(p, _)| *p).collect();
    seen.sort();
    assert_eq!(seen, expected, "the kernel reports the same client ports user space got");
    Ok(conns)
}

/// Three connected to OPEN, two refused on CLOSED, each with the state changes that say so.
fn check(conns: &[(u16, Conn)], with_connect_return: bool) -> Result<(), Error> {
    let outcome = |c: &Conn| match c.states.as_slice() {
        [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ..] => "connected",
        [("CLOSE", "SYN_SENT"), ("SYN_SENT", "CLOSE")] => "refused",
        _ => "other",
    };
    let count = |port: u16, what: &str| conns.iter().filter(|(_, c)| c.tuple.is_some_and(|t| t.3 == port) && outcome(c) == what).count();
    assert_eq!((count(OPEN, "connected"), count(CLOSED, "refused")), (3, 2), "{conns:?}");
    assert_eq!(conns.len(), 5, "no other sockets: {conns:?}");
    if with_connect_return {
        // tcp_v4_connect only sends the SYN: it returns 0 for the refused ones too.
        assert!(conns.iter().all(|(_, c)| c.connect_ret == Some(0)), "{conns:?}");
    }
    Ok(())
}
