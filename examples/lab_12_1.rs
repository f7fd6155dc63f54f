//! Lab 12.1 — a high-performance packet counter (tutorial/ch12-performance.md): three ways to
//! count packets in XDP — a per-CPU array, one shared array entry with an atomic add, a hash map
//! keyed by flow — timed with test runs on one and on two CPUs, then attached in turn to a veth
//! in a network namespace while two pinned senders push real UDP traffic through it.
//!
//! Run as root: `cargo run --example lab_12_1`. The same code is a doctest of the chapter.

use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::insn::Program as Insns;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::testing::packet::Packet;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Barrier;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Keep the calling thread on one CPU.
fn pin_to(cpu: u32) -> std::io::Result<()> {
    let mut set = unsafe { std::mem::zeroed::<libc::cpu_set_t>() };
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    match unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 12.1") {
        return Ok(());
    }
    const PORT: u16 = 7000; // flow i goes to PORT + i
    const PACKETS: u64 = 20_480; // per flow, on the veth
    const BURST: u64 = 64; // sent, then received, so no queue ever overflows
    const REPEAT: u32 = 1_000_000; // runs per test run
    let cpus: Vec<u32> = bpfkit::os::online_cpus()?.into_iter().take(2).collect();
    let flows = cpus.len() as i32; // one sender per CPU

    // The program: UDP to PORT..PORT+flows is counted, then passed on; `r6` is the flow.
    let count_flow = |count: Insns| -> Insns {
        bpf_asm! {
            r2 = *(u32 *)(r1 + 0)           // xdp_md.data
            r3 = *(u32 *)(r1 + 4)           // xdp_md.data_end
            r4 = r2
            r4 += 38                        // Ethernet 14 + IPv4 20 + the UDP ports 4
            if r4 > r3 goto pass
            r4 = *(u16 *)(r2 + 12)
            if r4 != 8 goto pass            // EtherType IPv4 (0x0800, read little-endian)
            r4 = *(u8 *)(r2 + 23)
            if r4 != 17 goto pass           // UDP
            r6 = *(u16 *)(r2 + 36)          // destination port, network order
            r6 = be16 r6
            r6 -= {i32::from(PORT)}
            if r6 >= {flows} goto pass      // unsigned: below PORT wraps around
            {count}
        pass:
            r0 = 2                          // XDP_PASS
            exit
        }
    };
    let percpu = Map::create(&MapSpec::new("pkts_percpu", MapType::PercpuArray, 4, 8, 1))?;
    let shared = Map::create(&MapSpec::new("pkts_shared", MapType::Array, 4, 8, 1))?;
    let by_flow = Map::create(&MapSpec::new("pkts_flow", MapType::Hash, 4, 8, 1024))?;
    let variants = [
        // This CPU's own slot: a plain load, add and store, no other CPU ever touches it.
        ("per-CPU array", count_flow(bpf_asm! {
            *(u32 *)(r10 - 4) = 0
            r1 = map[pkts_percpu] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto pass
            r1 = *(u64 *)(r0 + 0)
            r1 += 1
            *(u64 *)(r0 + 0) = r1
        })),
        // One counter for every CPU: the add must be atomic (lock xadd), and the cache line
        // moves to whichever CPU counts.
        ("shared array, atomic", count_flow(bpf_asm! {
            *(u32 *)(r10 - 4) = 0
            r1 = map[pkts_shared] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto pass
            r1 = 1
            lock *(u64 *)(r0 + 0) += r1
        })),
        // A counter per flow: a hashed lookup, the first packet of a flow inserts it.
        ("hash by flow, atomic", count_flow(bpf_asm! {
            *(u32 *)(r10 - 4) = w6
            r1 = map[pkts_flow] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 != 0 goto add
            *(u64 *)(r10 - 16) = 0
            r1 = map[pkts_flow] ll
            r2 = r10
            r2 += -4
            r3 = r10
            r3 += -16
            r4 = 1                          // BPF_NOEXIST: another CPU may have made it
            call bpf_map_update_elem
            r1 = map[pkts_flow] ll
            r2 = r10
            r2 += -4
            call bpf_map_lookup_elem
            if r0 == 0 goto pass
        add:
            r1 = 1
            lock *(u64 *)(r0 + 0) += r1
        })),
    ];
    let maps = [&percpu, &shared, &by_flow];
    let progs: Vec<(&str, Program)> = variants
        .iter()
        .map(|(name, insns)| Ok((*name, Program::load(&insns.assemble()?, &maps, &LoadOptions::new("pkt_count", ProgType::Xdp))?)))
        .collect::<Result<_, Error>>()?;
    // What each variant counted: the sum over CPUs, the shared entry, or the sum over flows.
    let total = |variant: usize| -> Result<u64, Error> {
        Ok(match variant {
            0 => percpu.per_cpu::<u32, u64>()?.get(&0)?.unwrap_or_default().iter().sum(),
            1 => shared.typed::<u32, u64>()?.get(&0)?.unwrap_or_default(),
            _ => by_flow.typed::<u32, u64>()?.iter().map(|e| e.map(|(_, n)| n)).sum::<Result<u64, _>>()?,
        })
    };

    // 1. Test runs: each variant on one CPU, then on every CPU at once (the same frame, so the
    // same counter: the worst case for sharing). The kernel reports the mean per run; of three
    // test runs the fastest counts (anything else running only ever makes a run slower).
    let frame = Packet::udp("10.0.0.1:40000".parse()?, format!("10.0.0.2:{PORT}").parse()?).payload(*b"count me").build()?;
    let run_on = |prog: &Program, cpu: u32, barrier: &Barrier| -> Result<f64, Error> {
        pin_to(cpu)?;
        let mut fastest = f64::MAX;
        for _ in 0..3 {
            barrier.wait(); // every CPU's runs start together
            fastest = fastest.min(f64::from(prog.test_run(&TestRun::with_data(frame.clone()).repeat(REPEAT))?.duration_ns));
        }
        Ok(fastest)
    };
    let mut one_cpu = Vec::new();
    let mut all_cpus = Vec::new();
    for (i, (_, prog)) in progs.iter().enumerate() {
        let before = total(i)?;
        one_cpu.push(run_on(prog, cpus[0], &Barrier::new(1))?);
        let barrier = Barrier::new(cpus.len());
        let per_cpu: Vec<f64> = std::thread::scope(|s| {
            let (run_on, barrier) = (&run_on, &barrier);
            let threads: Vec<_> = cpus.iter().map(|&cpu| s.spawn(move || run_on(prog, cpu, barrier))).collect();
            threads.into_iter().map(|t| t.join().expect("a test-run thread panicked")).collect::<Result<_, Error>>()
        })?;
        all_cpus.push(per_cpu.iter().sum::<f64>() / per_cpu.len() as f64);
        let runs = 3 * u64::from(REPEAT) * (1 + cpus.len() as u64);
        assert_eq!(total(i)? - before, runs, "{}: every test run counted once", progs[i].0);
    }

    // 2. Real traffic: two namespaces joined by veth va <-> vb, the counter on vb (native XDP),
    // one sender per CPU in `a`, each with its own flow and its own receiving socket in `b`.
    let (a_ip, b_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (a, b) = (NetNs::new()?, NetNs::new()?); // removed, with the veth, when dropped
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1"); // no IPv6 chatter (if any)
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
    let mut pairs = Vec::new();
    for flow in 0..flows as u16 {
        let tx = a.run(|| UdpSocket::bind((a_ip, 0)))??;
        let rx = b.run(|| UdpSocket::bind((b_ip, PORT + flow)))??;
        rx.set_read_timeout(Some(Duration::from_secs(2)))?;
        tx.send_to(b"warm-up", (b_ip, PORT + flow))?; // resolves ARP before anything is counted
        rx.recv(&mut [0u8; 64])?;
        pairs.push((tx, rx, PORT + flow));
    }
    let _stats = Program::enable_stats()?; // run_time_ns and run_cnt while this fd lives
    println!("{:<22} {:>10} {:>10} {:>12} {:>12}", "", "test run", "test run", "veth", "veth");
    println!("{:<22} {:>10} {:>10} {:>12} {:>12} {:>16}", "counter", "1 CPU", format!("{} CPUs", cpus.len()), "ns/packet", "packets/s", "counted of sent");
    for (i, (name, prog)) in progs.iter().enumerate() {
        let before = (total(i)?, prog.info()?.stats);
        let per_cpu_before = percpu.per_cpu::<u32, u64>()?.get(&0)?.unwrap_or_default();
        let link = b.run(|| prog.attach_xdp(vb, XdpMode::Native))??;
        let start = Instant::now();
        let (sent, arrived) = std::thread::scope(|s| -> Result<(u64, u64), Error> {
            let senders: Vec<_> = pairs
                .iter()
                .zip(&cpus)
                .map(|((tx, rx, port), &cpu)| {
                    s.spawn(move || -> Result<(u64, u64), Error> {
                        pin_to(cpu)?;
                        let (mut sent, mut arrived, mut buf) = (0u64, 0u64, [0u8; 64]);
                        while sent < PACKETS {
                            for _ in 0..BURST {
                                tx.send_to(&sent.to_ne_bytes(), (b_ip, *port))?;
                                sent += 1;
                            }
                            while arrived < sent {
                                rx.recv(&mut buf)?; // the program ran before the socket got it
                                arrived += 1;
                            }
                        }
                        Ok((sent, arrived))
                    })
                })
                .collect();
            senders.into_iter().map(|t| t.join().expect("a sender panicked")).try_fold((0, 0), |(s, a), r| r.map(|(s2, a2)| (s + s2, a + a2)))
        })?;
        let elapsed = start.elapsed();
        drop(link);
        let counted = total(i)? - before.0;
        let stats = prog.info()?.stats;
        let (runs, ns) = (stats.run_count - before.1.run_count, stats.run_time_ns - before.1.run_time_ns);
        println!(
            "{name:<22} {:>10.1} {:>10.1} {:>12.1} {:>12.0} {counted:>8} of {sent}",
            one_cpu[i],
            all_cpus[i],
            ns as f64 / runs as f64,
            sent as f64 / elapsed.as_secs_f64()
        );
        assert_eq!((counted, arrived), (sent, sent), "{name}: every datagram sent was counted once and arrived");
        assert!(runs >= sent, "{name}: the program ran for every frame");
        if i == 0 {
            let after = percpu.per_cpu::<u32, u64>()?.get(&0)?.unwrap_or_default();
            let by_cpu: Vec<u64> = after.iter().zip(&per_cpu_before).map(|(a, b)| a - b).collect();
            println!("{:<22} per CPU: {by_cpu:?}, sum {}", "", by_cpu.iter().sum::<u64>());
        }
    }
    // Contention: with every CPU counting at once, the private slots are not slower. (A loose
    // bound: the shared counter is usually several times slower, but a busy machine, where the
    // CPUs' runs overlap less, hides contention.)
    if cpus.len() > 1 {
        assert!(all_cpus[0] <= all_cpus[1] * 1.25, "per-CPU ({:.1} ns) is not slower than the shared atomic ({:.1} ns)", all_cpus[0], all_cpus[1]);
    }
    Ok(())
}
