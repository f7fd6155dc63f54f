//! Lab 11.3 — a network connection firewall (tutorial/ch11-lsm.md): a program on the
//! `socket_connect` LSM hook checks every IPv4 `connect` against rules keyed by the calling
//! task's command name and the destination address and port. A task named `fw-client` may reach
//! one local server and not another (its `connect` fails with EPERM); a task without rules
//! (`fw-other`) reaches both; every denial is logged with the command name and destination.
//! Kernels without BPF trampolines (this host) refuse LSM programs: the lab then prints bpfkit's
//! error and the probe's verdict; it runs in full in the 6.1 guest
//! (`scripts/kernel2/run.sh lab_11_3`).
//!
//! Run as root: `cargo run --example lab_11_3`. The same code is a doctest of the chapter.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use bpfkit::attach::fentry::{BtfTarget, TracingHook};
use bpfkit::attach::ProbeError;
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::ProgType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 11.3") {
        return Ok(());
    }
    const EPERM: i32 = 1;
    const AF_INET: i32 = 2;
    // A rule: {comm[16], daddr (network order), dport (network order), 0u16} → 1 (deny).
    let rules = Map::create(&MapSpec::new("fw_rules", MapType::Hash, 24, 4, 1024))?;
    let denials = Map::create(&MapSpec::new("fw_denials", MapType::RingBuf, 0, 0, 64 * 1024))?;
    let prog = bpf_asm! {
        r6 = *(u64 *)(r1 + 8)                       // socket_connect(sock, struct sockaddr *address, addrlen)
        r1 = r10                                    // sockaddr_in's first 8 bytes: family, port, address
        r1 += -8
        r2 = 8
        r3 = r6
        call bpf_probe_read_kernel
        r1 = *(u16 *)(r10 - 8)
        if r1 != {AF_INET} goto allow
        r1 = r10                                    // the key: {comm, daddr, dport, 0} at r10 - 32
        r1 += -32
        r2 = 16
        call bpf_get_current_comm
        r1 = *(u32 *)(r10 - 4)
        *(u32 *)(r10 - 16) = w1                     // daddr
        r1 = *(u16 *)(r10 - 6)
        *(u16 *)(r10 - 12) = w1                     // dport
        *(u16 *)(r10 - 10) = 0
        r1 = map[fw_rules] ll
        r2 = r10
        r2 += -32
        call bpf_map_lookup_elem
        if r0 == 0 goto allow                       // no rule for this task and destination
        r1 = map[fw_denials] ll                     // log the key itself: who, and where to
        r2 = 24
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto deny
        r1 = *(u64 *)(r10 - 32)
        *(u64 *)(r0 + 0) = r1
        r1 = *(u64 *)(r10 - 24)
        *(u64 *)(r0 + 8) = r1
        r1 = *(u64 *)(r10 - 16)
        *(u64 *)(r0 + 16) = r1
        r1 = r0
        r2 = 0
        call bpf_ringbuf_submit
    deny:
        r0 = -{EPERM}
        exit
    allow:
        r0 = 0
        exit
    };
    let hook = BtfTarget::find(TracingHook::Lsm, "socket_connect")?;
    let prog = match hook.load(&prog.assemble()?, &[&rules, &denials], "connect_firewall") {
        Ok(p) => p,
        Err(e @ ProbeError::TracingRefused { .. }) => {
            // The kernel's own answer, by probe (the suite checks these probes against bpftool).
            let verdict = bpfkit::features::Features::global().prog_type_libbpf(ProgType::Lsm)?;
            let said = verdict.supported.map_or("unknown", |yes| if yes { "yes" } else { "no" });
            println!("{e}\nprobe: lsm programs on this kernel: {said} ({}: {})", verdict.method, verdict.detail);
            assert_eq!(verdict.supported, Some(false), "bpfkit refused what the kernel's probe accepts");
            println!("Lab 11.3 runs in full in the 6.1 guest: scripts/kernel2/run.sh lab_11_3");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };

    // Two servers on loopback; the rule denies `fw-client` the second one.
    let (open, closed) = (TcpListener::bind("127.0.0.1:0")?, TcpListener::bind("127.0.0.1:0")?);
    let (open_addr, closed_addr) = (open.local_addr()?, closed.local_addr()?);
    let rule = |comm: &str, to: SocketAddr| -> Result<[u8; 24], Box<dyn std::error::Error>> {
        let SocketAddr::V4(to) = to else { return Err("IPv4 only".into()) };
        let mut key = [0u8; 24];
        key[..comm.len()].copy_from_slice(comm.as_bytes());
        key[16..20].copy_from_slice(&to.ip().octets());
        key[20..22].copy_from_slice(&to.port().to_be_bytes());
        Ok(key)
    };
    rules.typed::<[u8; 24], u32>()?.insert(&rule("fw-client", closed_addr)?, &1, UpdateFlags::Any)?;
    println!("rule: fw-client may not connect to {closed_addr}");

    let link = prog.attach_btf()?;
    // The command name is per task: a thread's name is its comm.
    let connect_as = |comm: &str, to: SocketAddr| -> std::io::Result<std::io::Result<TcpStream>> {
        std::thread::Builder::new().name(comm.into()).spawn(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)))?.join().map_err(|_| std::io::Error::other("thread panicked"))
    };
    let results = [
        ("fw-client", open_addr, connect_as("fw-client", open_addr)?),
        ("fw-client", closed_addr, connect_as("fw-client", closed_addr)?),
        ("fw-other", closed_addr, connect_as("fw-other", closed_addr)?),
    ];
    for (comm, to, result) in &results {
        println!("{comm:<9} → {to}: {}", result.as_ref().map_or_else(|e| e.to_string(), |_| "connected".to_string()));
    }
    assert!(results[0].2.is_ok(), "an allowed destination");
    assert_eq!(results[1].2.as_ref().err().and_then(|e| e.raw_os_error()), Some(EPERM), "the denied one");
    assert!(results[2].2.is_ok(), "a task without rules is unaffected");

    let mut log = Vec::new();
    RingBuf::new(&denials)?.poll(Some(Duration::from_millis(500)), |r| log.push(r.to_vec()))?;
    for r in &log {
        let comm = String::from_utf8_lossy(&r[..16]).trim_end_matches('\0').to_string();
        let to = SocketAddr::from((Ipv4Addr::new(r[16], r[17], r[18], r[19]), u16::from_be_bytes([r[20], r[21]])));
        println!("denied: {comm} → {to}");
        assert_eq!((comm.as_str(), to), ("fw-client", closed_addr));
    }
    assert_eq!(log.len(), 1);
    drop(link);
    assert!(connect_as("fw-client", closed_addr)?.is_ok(), "detached: allowed again");
    println!("detached: fw-client connects to {closed_addr} again");
    Ok(())
}
