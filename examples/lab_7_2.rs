//! Lab 7.2 — a layer-4 load balancer (tutorial/ch07-xdp.md): an XDP program on a router
//! namespace's interfaces sends connections to a virtual IP to one of three backends
//! (`python3 -m http.server` each, in its own namespace) — a 5-tuple hash for a new connection,
//! a flow table after that — rewriting the destination address and the checksums, and
//! forwarding with `bpf_fib_lookup` + `bpf_redirect`; replies get the virtual IP back as their
//! source. User space keeps the rotation by TCP health checks. curl from a client namespace is
//! the judge: every request answered, spread across the backends, a keep-alive connection kept
//! on its backend while the rotation changes.
//!
//! Run as root: `cargo run --example lab_7_2`. The same code is a doctest of the chapter.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use bpfkit::attach::XdpMode;
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::helpers::patterns::{ctx_field, ipv4_checksum, ipv4_l4_checksum, parse_ports, zero_stack, PacketCtx};
use bpfkit::insn::Reg;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A backend: a namespace with `python3 -m http.server` serving a file `name` that says which
/// backend it is. Dropping it kills and reaps the server (then the namespace goes).
struct Backend {
    name: String,
    ip: Ipv4Addr,
    _ns: NetNs,
    server: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Run `cmd args…` inside `ns` and fail with its stderr if it fails.
fn run_in(ns: &NetNs, cmd: &str, args: &[&str]) -> Result<(), Error> {
    let out = ns.run(|| Command::new(cmd).args(args).output())??;
    if !out.status.success() {
        return Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

/// One HTTP/1.1 GET on a kept-alive connection: the body.
fn get(stream: &mut BufReader<TcpStream>, path: &str) -> Result<String, Error> {
    stream.get_mut().write_all(format!("GET {path} HTTP/1.1\r\nHost: lb\r\n\r\n").as_bytes())?;
    let mut length = 0;
    loop {
        let mut line = String::new();
        stream.read_line(&mut line)?;
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse()?;
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok(String::from_utf8(body)?.trim().to_string())
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 7.2") {
        return Ok(());
    }
    const VIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const MAX_BACKENDS: usize = 8;
    let vip = u32::from_ne_bytes(VIP.octets()) as i32; // as the program loads it
    // The rotation: {count, ip[8]} under key 0. A hash map, so that an update replaces the whole
    // value at once (RCU): the program sees the old rotation or the new one, never half of each.
    let rotation = Map::create(&MapSpec::new("rotation", MapType::Hash, 4, 4 + 4 * MAX_BACKENDS as u32, 1))?;
    // The flow table: {client address, client port} → backend address.
    let flows = Map::create(&MapSpec::new("flows", MapType::LruHash, 8, 4, 65536))?;
    // Frames redirected by the program, and frames rewritten but left to the kernel to forward.
    let stats = Map::create(&MapSpec::new("lb_stats", MapType::Array, 4, 16, 1))?;
    // Offsets in `struct bpf_fib_lookup` (the stack at r10-96), from the kernel's own BTF.
    let btf = Btf::vmlinux()?;
    let fib_type = btf.find_by_name_kind("bpf_fib_lookup", Kind::Struct).ok_or("no struct bpf_fib_lookup in BTF")?;
    let fib = |field: &str| -> Result<i16, Error> { Ok(-96 + (btf.member_offset(fib_type, field)? / 8) as i16) };
    let (m1, m2) = (0x85eb_ca6b_u32 as i32, 0xc2b2_ae35_u32 as i32); // murmur3's finalizer
    // Six bytes from the stack at r10+`from` to the frame at r6+`to` (r6: the IPv4 header, so the
    // Ethernet header is at -14), two at a time: the verifier wants aligned stack loads.
    let copy_mac = |from: i16, to: i16| {
        bpf_asm! {
            r1 = *(u16 *)(r10 + {from})
            *(u16 *)(r6 + {to}) = r1
            r1 = *(u16 *)(r10 + {from + 2})
            *(u16 *)(r6 + {to + 2}) = r1
            r1 = *(u16 *)(r10 + {from + 4})
            *(u16 *)(r6 + {to + 4}) = r1
        }
    };
    let prog = bpf_asm! {
        r9 = r1                              // the context
        {parse_ports(PacketCtx::Xdp, Reg::R9, -16, "pass")?}
        if r0 != 6 goto pass                 // TCP …
        r5 = *(u16 *)(r10 - 16)
        if r5 != 0x800 goto pass             // … over IPv4 …
        r6 = r2
        r6 += 14                             // r6: the IPv4 header
        r5 = *(u8 *)(r6 + 0)
        if r5 != 0x45 goto pass              // … without options
        r7 = r4                              // r7: the TCP header
        r8 = r3                              // r8: data_end
        r5 = *(u32 *)(r6 + 16)
        if w5 != {vip} goto back             // to the virtual IP?
        r5 = *(u16 *)(r10 - 10)
        if r5 != 80 goto pass                // … port 80: a client's packet
        r5 = *(u32 *)(r6 + 12)
        *(u32 *)(r10 - 24) = r5              // flow key: client address …
        r5 = *(u16 *)(r7 + 0)
        *(u32 *)(r10 - 20) = r5              // … and port
        r5 = *(u8 *)(r7 + 13)
        r5 &= 0x12
        if r5 == 0x02 goto choose            // a SYN starts a new flow
        r1 = map[flows] ll
        r2 = r10
        r2 += -24
        call bpf_map_lookup_elem
        if r0 == 0 goto choose               // not in the table (the LB restarted?): hash again
        r5 = *(u32 *)(r0 + 0)
        goto forward
    choose:
        r1 = *(u32 *)(r6 + 12)               // hash of the 5-tuple
        r2 = *(u32 *)(r6 + 16)
        r1 ^= r2
        r2 = *(u32 *)(r7 + 0)                // both ports
        r1 ^= r2
        r1 ^= 6
        w2 = w1
        w2 >>= 16
        w1 ^= w2
        w1 *= {m1}
        w2 = w1
        w2 >>= 13
        w1 ^= w2
        w1 *= {m2}
        w2 = w1
        w2 >>= 16
        w1 ^= w2
        *(u32 *)(r10 - 28) = w1
        *(u32 *)(r10 - 32) = 0
        r1 = map[rotation] ll
        r2 = r10
        r2 += -32
        call bpf_map_lookup_elem
        if r0 == 0 goto pass
        r3 = *(u32 *)(r0 + 0)                // how many backends
        if r3 == 0 goto pass
        r1 = *(u32 *)(r10 - 28)
        w1 %= w3                             // the hash picks a slot
        if r1 >= {MAX_BACKENDS as i32} goto pass // (a bound the verifier can see)
        r1 <<= 2
        r0 += r1
        r5 = *(u32 *)(r0 + 4)
        *(u32 *)(r10 - 28) = r5
        r1 = map[flows] ll
        r2 = r10
        r2 += -24
        r3 = r10
        r3 += -28
        r4 = 0                               // BPF_ANY: a new flow replaces an old one
        call bpf_map_update_elem
        r5 = *(u32 *)(r10 - 28)
    forward:
        *(u32 *)(r6 + 16) = w5               // destination: the backend
        goto fix
    back:
        r5 = *(u16 *)(r10 - 12)
        if r5 != 80 goto pass                // from port 80 …
        r5 = *(u32 *)(r6 + 16)
        *(u32 *)(r10 - 24) = r5              // … to a client's address …
        r5 = *(u16 *)(r7 + 2)
        *(u32 *)(r10 - 20) = r5              // … and port: a flow we balanced?
        r1 = map[flows] ll
        r2 = r10
        r2 += -24
        call bpf_map_lookup_elem
        if r0 == 0 goto pass
        r1 = *(u32 *)(r0 + 0)
        r2 = *(u32 *)(r6 + 12)
        if r1 != r2 goto pass                // … and from its backend: a reply
        r5 = {vip}
        *(u32 *)(r6 + 12) = w5               // source: the virtual IP
    fix:
        *(u16 *)(r6 + 10) = 0                // both checksums, computed again
        {ipv4_checksum(Reg::R6, 20)?}
        *(u16 *)(r6 + 10) = r0
        *(u16 *)(r7 + 16) = 0
        {ipv4_l4_checksum(Reg::R6, Reg::R7, Reg::R8, 1480, "pass")?}
        *(u16 *)(r7 + 16) = r0
        {zero_stack(-96, 64)?}               // struct bpf_fib_lookup: where does it go next?
        *(u8 *)(r10 + {fib("family")?}) = 2  // AF_INET
        *(u8 *)(r10 + {fib("l4_protocol")?}) = 6
        r1 = *(u16 *)(r7 + 0)
        *(u16 *)(r10 + {fib("sport")?}) = r1
        r1 = *(u16 *)(r7 + 2)
        *(u16 *)(r10 + {fib("dport")?}) = r1
        r1 = *(u16 *)(r6 + 2)
        r1 = be16 r1
        *(u16 *)(r10 + {fib("tot_len")?}) = r1
        r1 = *(u32 *)(r9 + {ctx_field(ProgType::Xdp, "ingress_ifindex")?})
        *(u32 *)(r10 + {fib("ifindex")?}) = r1
        r1 = *(u32 *)(r6 + 12)
        *(u32 *)(r10 + {fib("ipv4_src")?}) = r1
        r1 = *(u32 *)(r6 + 16)
        *(u32 *)(r10 + {fib("ipv4_dst")?}) = r1
        r1 = r9
        r2 = r10
        r2 += -96
        r3 = 64
        r4 = 0
        call bpf_fib_lookup
        if r0 != 0 goto kernel               // no route or neighbour yet: the kernel's forwarding
        {copy_mac(fib("dmac")?, -14)}         // Ethernet destination: the next hop …
        {copy_mac(fib("smac")?, -8)}          // … and source: our interface
        r1 = map_value[lb_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 0) += r2          // redirected
        r1 = *(u32 *)(r10 + {fib("ifindex")?}) // out of the interface the route names
        r2 = 0
        call bpf_redirect                    // XDP_REDIRECT
        exit
    kernel:
        r1 = map_value[lb_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 8) += r2          // rewritten, left to the kernel
    pass:
        r0 = 2                               // XDP_PASS
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&rotation, &flows, &stats], &LoadOptions::new("l4_lb", ProgType::Xdp))?;
    // A veth delivers redirected frames only if its peer runs XDP (it then polls a ring for
    // them): an XDP_PASS program on each client and backend interface turns that on.
    let pass = Program::load(&bpf_asm! { r0 = 2; exit }.assemble()?, &[], &LoadOptions::new("pass", ProgType::Xdp))?;

    // client 198.51.100.2 ── c0 [lb: 198.51.100.1, 192.0.2.17/33/49] b1,b2,b3 ── backends .18/.34/.50
    let (client, lb) = (NetNs::new()?, NetNs::new()?);
    let configure = |name: &str, ip: Ipv4Addr, prefix: u8| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, prefix)?;
        nl.set_up(i)?;
        Ok(i)
    };
    let c0 = lb.run(|| -> Result<u32, Error> {
        Netlink::open()?.add_veth("c0", "eth0", Some(client.as_fd()))?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?; // this namespace routes
        configure("c0", Ipv4Addr::new(198, 51, 100, 1), 24)
    })??;
    let eth0 = client.run(|| configure("eth0", Ipv4Addr::new(198, 51, 100, 2), 24))??;
    let mut leaf_links = vec![client.run(|| pass.attach_xdp(eth0, XdpMode::Native))??];
    run_in(&client, "ip", &["route", "add", "default", "via", "198.51.100.1"])?;
    // Ctrl-C skips destructors: kill the servers there too (the namespaces go with the process).
    let pids = Arc::new(Mutex::new(Vec::<u32>::new()));
    let to_kill = pids.clone();
    ctrlc::set_handler(move || {
        for pid in to_kill.lock().unwrap().iter() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        std::process::exit(130);
    })?;
    let mut backends = Vec::new();
    let mut lb_links = vec![lb.run(|| prog.attach_xdp(c0, XdpMode::Native))??];
    for i in 1..=3u8 {
        let (name, gw, ip) = (format!("b{i}"), Ipv4Addr::new(192, 0, 2, 16 * i + 1), Ipv4Addr::new(192, 0, 2, 16 * i + 2));
        let ns = NetNs::new()?;
        let ifindex = lb.run(|| -> Result<u32, Error> {
            Netlink::open()?.add_veth(&name, "eth0", Some(ns.as_fd()))?;
            configure(&name, gw, 28)
        })??;
        lb_links.push(lb.run(|| prog.attach_xdp(ifindex, XdpMode::Native))??);
        let eth0 = ns.run(|| configure("eth0", ip, 28))??;
        leaf_links.push(ns.run(|| pass.attach_xdp(eth0, XdpMode::Native))??);
        run_in(&ns, "ip", &["route", "add", "default", "via", &gw.to_string()])?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("name"), format!("{name}\n"))?;
        let mut server = ns.run(|| {
            Command::new("python3")
                .args(["-u", "-m", "http.server", "80", "--bind", &ip.to_string(), "--protocol", "HTTP/1.1", "--directory"])
                .arg(dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })??;
        pids.lock().unwrap().push(server.id());
        // It is ready when it says so: "Serving HTTP on 192.0.2.18 port 80 …".
        let mut ready = String::new();
        BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut ready)?;
        if !ready.starts_with("Serving HTTP") {
            return Err(format!("{name}: python3 -m http.server did not start: {ready:?}").into());
        }
        backends.push(Backend { name, ip, _ns: ns, server: Some(server), _dir: dir });
    }

    // Health checks from the balancer's namespace: a backend is in the rotation while a TCP
    // connection to its port 80 succeeds. Returns the indexes of the backends up.
    let health_check = |backends: &[Backend]| -> Result<Vec<usize>, Error> {
        let table = rotation.typed::<u32, [u32; 1 + MAX_BACKENDS]>()?;
        let before = table.get(&0)?.unwrap_or_default();
        let mut up = Vec::new();
        for (i, b) in backends.iter().enumerate() {
            let ip = u32::from_ne_bytes(b.ip.octets());
            match lb.run(|| TcpStream::connect_timeout(&SocketAddr::from((b.ip, 80)), Duration::from_millis(500)))? {
                Ok(_) => up.push(i),
                Err(e) if before[1..=before[0] as usize].contains(&ip) => println!("health check: {} ({}) down: {e}", b.name, b.ip),
                Err(_) => {}
            }
        }
        let mut value = [0u32; 1 + MAX_BACKENDS];
        value[0] = up.len() as u32;
        for (slot, &i) in value[1..].iter_mut().zip(&up) {
            *slot = u32::from_ne_bytes(backends[i].ip.octets());
        }
        table.insert(&0, &value, UpdateFlags::Any)?;
        let names: Vec<String> = up.iter().map(|&i| format!("{} {}", backends[i].name, backends[i].ip)).collect();
        println!("rotation: {}", names.join(", "));
        Ok(up)
    };
    assert_eq!(health_check(&backends)?.len(), 3, "every backend up");

    // N connections with curl, each a new TCP connection answered with a backend's name: how
    // many each backend answered, beside a fair split (binomial: n/k ± 4 standard deviations).
    let curl_round = |n: usize, up: &[usize], backends: &[Backend]| -> Result<(), Error> {
        let mut counts = vec![0usize; backends.len()];
        for _ in 0..n {
            let out = client.run(|| Command::new("curl").args(["-sS", "--max-time", "5", &format!("http://{VIP}/name")]).output())??;
            if !out.status.success() {
                return Err(format!("curl: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            let name = String::from_utf8(out.stdout)?.trim().to_string();
            counts[backends.iter().position(|b| b.name == name).ok_or(format!("answered by {name:?}?"))?] += 1;
        }
        let p = 1.0 / up.len() as f64;
        let (mean, tolerance) = (n as f64 * p, 4.0 * (n as f64 * p * (1.0 - p)).sqrt());
        let shown: Vec<String> = backends.iter().zip(&counts).map(|(b, c)| format!("{} {c}", b.name)).collect();
        println!("{n} curl connections, all answered: {} (each up: {mean:.1} ± {tolerance:.1})", shown.join(", "));
        for (i, &c) in counts.iter().enumerate() {
            if up.contains(&i) {
                assert!((c as f64 - mean).abs() <= tolerance, "{}: {c} of {n}", backends[i].name);
            } else {
                assert_eq!(c, 0, "{} is out of the rotation", backends[i].name);
            }
        }
        Ok(())
    };
    // A long-lived connection, opened first: its backend must not change.
    let mut kept = BufReader::new(client.run(|| TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(2)))??);
    let first = get(&mut kept, "/name")?;
    println!("keep-alive connection: request 1 answered by {first}");
    curl_round(60, &[0, 1, 2], &backends)?;

    // A backend dies (not the one holding the kept-alive connection); the health check sees it.
    let victim = backends.iter().rposition(|b| b.name != first).ok_or("no other backend")?;
    backends[victim].stop();
    println!("{} stopped", backends[victim].name);
    let up = health_check(&backends)?;
    assert_eq!(up.len(), 2, "the health check took {} out", backends[victim].name);
    curl_round(40, &up, &backends)?;
    let mut later = Vec::new();
    for _ in 0..4 {
        later.push(get(&mut kept, "/name")?);
    }
    println!("keep-alive connection: requests 2-5 answered by {}", later.join(", "));
    assert!(later.iter().all(|b| *b == first), "the kept-alive connection stayed on {first}");

    let mut per_backend = vec![0; backends.len()];
    for entry in flows.typed::<[u32; 2], [u8; 4]>()?.iter() {
        let ip = Ipv4Addr::from(entry?.1);
        per_backend[backends.iter().position(|b| b.ip == ip).ok_or("a flow to no backend")?] += 1;
    }
    let shown: Vec<String> = backends.iter().zip(&per_backend).map(|(b, n)| format!("{} {n}", b.name)).collect();
    println!("flow table: {}", shown.join(", "));
    let [redirected, to_kernel] = stats.typed::<u32, [u64; 2]>()?.get(&0)?.ok_or("no stats")?;
    println!("XDP: {redirected} frames rewritten and redirected, {to_kernel} rewritten and left to the kernel");
    assert_eq!(per_backend.iter().sum::<usize>(), 1 + 60 + 40, "one flow per connection");
    assert!(redirected > 10 * (1 + 60 + 40), "the connections' frames took the XDP path");
    Ok(())
}
