//! Lab 8.3 — latency injection (tutorial/ch08-tc.md): a TC egress program stamps each outgoing
//! IPv4 packet with an earliest departure time (`skb->tstamp` = now + delay) and the fq qdisc
//! holds it until then. A chaos controller in user space changes the delay while the program
//! runs; `ping` is the judge: its median round trip rises by the configured delay, ±2 ms.
//!
//! Needs the fq qdisc (EDT). A kernel without it refuses to create one: the lab says so and
//! stops; the 6.1 guest (`scripts/kernel2/run.sh lab_8_3`) has fq as a module and runs it all.
//!
//! Run as root: `cargo run --example lab_8_3`. The same code is a doctest of the chapter.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use bpfkit::attach::TcDirection;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::ctx_field;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// `ping -c COUNT` from `ns` to `to`: the round trips it printed, in ms (iputils and busybox both
/// print `time=0.061 ms` per reply).
fn ping_rtts(ns: &NetNs, to: Ipv4Addr, count: u32) -> Result<Vec<f64>, Error> {
    let out = ns.run(|| Command::new("ping").args(["-n", "-c", &count.to_string(), "-i", "0.2", &to.to_string()]).output())??;
    let text = String::from_utf8(out.stdout)?;
    let rtts: Vec<f64> = text.split_whitespace().filter_map(|w| w.strip_prefix("time=")).map(str::parse).collect::<Result<_, _>>()?;
    if rtts.len() != count as usize {
        return Err(format!("ping: {} of {count} replies\n{text}{}", rtts.len(), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(rtts)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 8.3") {
        return Ok(());
    }
    // The controller's knob, read by the program at every packet: {delay_ns, packets delayed}.
    let latency = Map::create(&MapSpec::new("latency", MapType::Array, 4, 16, 1))?;
    let (protocol, tstamp) = (ctx_field(ProgType::SchedCls, "protocol")?, ctx_field(ProgType::SchedCls, "tstamp")?);
    let prog = bpf_asm! {
        r6 = r1
        r1 = *(u32 *)(r6 + {protocol})
        if r1 != 0x0008 goto out            // IPv4 only (htons(ETH_P_IP)): ARP stays prompt
        r7 = map_value[latency]+0 ll
        r8 = *(u64 *)(r7 + 0)               // the delay, ns
        if r8 == 0 goto out
        call bpf_ktime_get_ns               // CLOCK_MONOTONIC: fq's clock
        r1 = *(u64 *)(r6 + {tstamp})
        if r1 <= r0 goto stamp              // a departure time set earlier (TCP's pacing) …
        r0 = r1                             // … is kept, and delayed from there
    stamp:
        r0 += r8
        *(u64 *)(r6 + {tstamp}) = r0        // the earliest departure time
        r1 = 1
        lock *(u64 *)(r7 + 8) += r1
    out:
        r0 = 0                              // TC_ACT_OK: fq does the waiting
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&latency], &LoadOptions::new("edt_delay", ProgType::SchedCls))?;

    // client 192.0.2.2 [eth0: edt_delay on egress, fq root qdisc] ──veth── 192.0.2.1 server
    let (server_ip, client_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (server, client) = (NetNs::new()?, NetNs::new()?);
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        nl.set_up(i)?;
        Ok(i)
    };
    server.run(|| -> Result<u32, Error> {
        Netlink::open()?.add_veth("s0", "eth0", Some(client.as_fd()))?;
        configure("s0", server_ip)
    })??;
    let eth0 = client.run(|| configure("eth0", client_ip))??;
    // The probe: ask for the qdisc. A kernel without fq answers ENOENT, "Specified qdisc kind is
    // unknown" — and then nothing would ever hold a packet until its tstamp.
    let nl = client.run(Netlink::open)??;
    if let Err(e) = nl.add_root_qdisc(eth0, "fq") {
        if e.errno() != Some(libc::ENOENT) {
            return Err(e.into());
        }
        println!("{e}");
        println!("this kernel has no fq qdisc: EDT needs one to hold packets until skb->tstamp");
        // A second opinion, where iproute2 is installed.
        if let Ok(out) = client.run(|| Command::new("tc").args(["qdisc", "add", "dev", "eth0", "root", "fq"]).output())? {
            println!("tc qdisc add dev eth0 root fq: {}", String::from_utf8_lossy(&out.stderr).trim());
            assert!(!out.status.success(), "tc created an fq qdisc that bpfkit could not");
        }
        println!("Lab 8.3 runs in the 6.1 guest: scripts/kernel2/run.sh lab_8_3");
        return Ok(()); // the namespaces (and the veth) go with their last handles
    }
    let qdiscs = nl.qdiscs(eth0)?;
    println!("eth0 qdiscs: {qdiscs:?}");
    let link = client.run(|| prog.attach_tc(eth0, TcDirection::Egress))??;
    println!("attached: {}", link.describe());

    // The chaos controller: no delay, 20 ms, 50 ms, then none again — the program never reloads.
    // (No Ctrl-C handler: the namespaces, the fq qdisc and the link live only as long as this
    // process, and a running ping gets the same SIGINT.)
    let knob = latency.typed::<u32, [u64; 2]>()?;
    let mut rows = Vec::new();
    for delay_ms in [0u64, 20, 50, 0] {
        let delayed = knob.get(&0)?.unwrap_or_default()[1];
        knob.insert(&0, &[delay_ms * 1_000_000, delayed], UpdateFlags::Any)?;
        let rtts = ping_rtts(&client, server_ip, 15)?;
        let (lo, hi) = rtts.iter().fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!("delay {delay_ms:>2} ms: ping min {lo:7.3} ms, median {:7.3} ms, max {hi:7.3} ms", median(&rtts));
        rows.push((delay_ms, lo, median(&rtts)));
    }
    let delayed = knob.get(&0)?.unwrap_or_default()[1];
    drop(link);
    nl.del_root_qdisc(eth0)?; // (it would also go with the namespace, even on an error or Ctrl-C)
    println!("packets stamped: {delayed}");

    // The delay is a constant added to every round trip; what else varies (the scheduler's
    // wake-ups, an emulated CPU's hiccups) only ever adds. So the added delay is measured between
    // the runs' minimum round trips, and must be the configured one within ±2 ms; the medians
    // are shown beside them.
    let (base_min, base_median) = (rows[0].1, rows[0].2);
    for &(delay_ms, min, median) in &rows[1..] {
        let added = min - base_min;
        println!("  {delay_ms:>2} ms configured: {added:+.3} ms measured ({:+.3} ms off; medians {:+.3} ms)", added - delay_ms as f64, median - base_median);
        assert!((added - delay_ms as f64).abs() <= 2.0, "{delay_ms} ms configured, {added:.3} ms added");
    }
    // The echo requests of the two delayed runs (replies go the other way, undelayed); nothing
    // else IPv4 leaves the client meanwhile.
    assert_eq!(delayed, 30, "every echo request of the delayed runs was stamped");
    Ok(())
}
