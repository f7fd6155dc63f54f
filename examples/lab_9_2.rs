//! Lab 9.2 — network usage per cgroup (tutorial/ch09-cgroups.md): two `cgroup_skb` programs
//! (egress and ingress) on a parent cgroup count, for each child cgroup (`bpf_skb_cgroup_id`),
//! the packets, the bytes on the wire (IP packets, headers included) and the TCP payload its
//! sockets sent and received. Two "containers", `web` and `batch`, move known amounts of data
//! through python3 clients to the lab's servers, inside a network namespace the lab creates.
//! The payload must equal what the applications transferred, byte for byte; packets, wire
//! bytes and payload must equal what tcpdump captured on the namespace's loopback for each
//! client's connections.
//!
//! Run as root: `cargo run --example lab_9_2`. The same code is a doctest of the chapter.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::ctx_field;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::os::{cgroup2_mount, Cgroup, CgroupRemover, Leftovers};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use pcap_file::pcap::PcapReader;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// tcpdump writing to a file; dropping it kills and reaps it.
struct Tcpdump(Child);

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Per direction: packets, bytes on the wire (IP header onwards), TCP payload bytes.
#[derive(Debug, Default, PartialEq, Clone, Copy)]
struct Usage {
    packets: u64,
    wire: u64,
    payload: u64,
}

/// The payload of one direction of a TCP connection seen so far, as ranges of sequence numbers
/// (relative to the first one seen, disjoint and sorted): what is new in a segment is what no
/// earlier segment covered; the rest was sent again.
struct SeqRanges {
    first: u32,
    covered: Vec<(u32, u32)>,
}

impl SeqRanges {
    /// Add a segment's payload; how many of its bytes were not seen before.
    fn add(&mut self, seq: u32, len: u32) -> u64 {
        let start = seq.wrapping_sub(self.first);
        let end = start + len;
        let overlap: u32 = self.covered.iter().map(|&(a, b)| end.min(b).saturating_sub(start.max(a))).sum();
        if len > 0 {
            self.covered.push((start, end));
            self.covered.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::new();
            for &(a, b) in &self.covered {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            self.covered = merged;
        }
        u64::from(len - overlap)
    }
}

/// A server on loopback port it binds: per connection, reads exactly `expect` bytes, answers
/// with `reply` bytes and closes (it closes first, so the client never lingers in TIME_WAIT).
fn serve(expect: usize, reply: usize) -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = vec![0u8; expect];
            if stream.read_exact(&mut request).is_ok() {
                let _ = stream.write_all(&vec![b'r'; reply]);
            }
        }
    });
    Ok(port)
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 9.2") {
        return Ok(());
    }
    // cgroup id → [egress: packets, wire bytes, payload bytes | ingress: the same].
    let usage = Map::create(&MapSpec::new("usage", MapType::Hash, 8, 48, 1024))?;
    let len = ctx_field(ProgType::CgroupSkb, "len")?;
    let count = |direction: i16| {
        let at = direction * 24; // egress at 0, ingress at 24
        bpf_asm! {
            r6 = r1
            call bpf_skb_cgroup_id                // the cgroup of the packet's socket
            *(u64 *)(r10 - 8) = r0
            r7 = *(u32 *)(r6 + {len})             // the IP packet: headers and payload
            r8 = 0                                // payload, when it is TCP
            r1 = r6
            r2 = 0
            r3 = r10
            r3 += -32
            r4 = 20
            call bpf_skb_load_bytes               // the IPv4 header (the program sees it at 0)
            if r0 != 0 goto add
            r1 = *(u8 *)(r10 - 23)                // protocol (byte 9)
            if r1 != 6 goto add
            r9 = *(u8 *)(r10 - 32)
            r9 &= 0xf
            r9 <<= 2                              // IP header length
            r1 = r6
            r2 = r9
            r2 += 12
            r3 = r10
            r3 += -40
            r4 = 1
            call bpf_skb_load_bytes               // TCP data offset
            if r0 != 0 goto add
            r1 = *(u8 *)(r10 - 40)
            r1 >>= 4
            r1 <<= 2                              // TCP header length
            r8 = r7
            r8 -= r9
            r8 -= r1
        add:
            r1 = map[usage] ll
            r2 = r10
            r2 += -8
            call bpf_map_lookup_elem
            if r0 != 0 goto found
            *(u64 *)(r10 - 88) = 0                // a new cgroup: zeroes first
            *(u64 *)(r10 - 80) = 0
            *(u64 *)(r10 - 72) = 0
            *(u64 *)(r10 - 64) = 0
            *(u64 *)(r10 - 56) = 0
            *(u64 *)(r10 - 48) = 0
            r1 = map[usage] ll
            r2 = r10
            r2 += -8
            r3 = r10
            r3 += -88
            r4 = 1                                // BPF_NOEXIST: another CPU may have added it
            call bpf_map_update_elem
            r1 = map[usage] ll
            r2 = r10
            r2 += -8
            call bpf_map_lookup_elem
            if r0 == 0 goto out
        found:
            r1 = 1
            lock *(u64 *)(r0 + {at}) += r1
            lock *(u64 *)(r0 + {at + 8}) += r7
            lock *(u64 *)(r0 + {at + 16}) += r8
        out:
            r0 = 1                                // let every packet through
            exit
        }
    };
    let load = |direction: i16, name: &str, hook: AttachType| -> Result<Program, Error> {
        let opts = LoadOptions::new(name, ProgType::CgroupSkb).expected_attach_type(hook);
        Ok(Program::load(&count(direction).assemble()?, &[&usage], &opts)?)
    };
    let egress = load(0, "usage_egress", AttachType::CgroupInetEgress)?;
    let ingress = load(1, "usage_ingress", AttachType::CgroupInetIngress)?;

    // Ctrl-C removes the cgroup tree — killing every process the lab starts, all of which run
    // in it — and the capture's directory; the namespace and links go with the process. The
    // handler is in place before any of them exists.
    let dir = tempfile::tempdir()?;
    let name = format!("bpfkit-lab-9-2-{}", std::process::id());
    let (remover, scratch) = (CgroupRemover::for_path(cgroup2_mount()?.join(&name), Leftovers::Kill), dir.path().to_path_buf());
    ctrlc::set_handler(move || {
        let _ = remover.remove();
        let _ = std::fs::remove_dir_all(&scratch);
        std::process::exit(130);
    })?;
    // The namespace: only its loopback, so every packet below is the lab's.
    let ns = NetNs::new()?;
    ns.run(|| -> Result<(), Error> { Ok(Netlink::open()?.set_up(if_index("lo")?)?) })??;
    // Two containers under one parent; the programs sit on the parent and see both. A third
    // child holds the lab's tools (tcpdump's packet socket is no inet socket: it is not counted).
    let parent = Cgroup::create(&name)?;
    let (web, batch, tools) = (parent.create_child("web")?, parent.create_child("batch")?, parent.create_child("tools")?);
    let links = [egress.attach_cgroup(&parent, AttachType::CgroupInetEgress)?, ingress.attach_cgroup(&parent, AttachType::CgroupInetIngress)?];

    // The oracle: tcpdump on the namespace's loopback.
    let capture = dir.path().join("lo.pcap");
    let mut tcpdump = tools.command("tcpdump")?;
    tcpdump.args(["-i", "lo", "-nn", "-U", "--immediate-mode", "-B", "16384", "-Z", "root", "-w"]).arg(&capture).arg("tcp").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut tcpdump = Tcpdump(ns.run(|| tcpdump.spawn())??);
    let mut stderr = BufReader::new(tcpdump.0.stderr.take().ok_or("no stderr")?);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if stderr.read_line(&mut line)? == 0 {
            return Err("tcpdump exited before capturing".into());
        }
    }

    // The traffic: per container, connections × (bytes sent, bytes received).
    let plan = [("web", &web, 2usize, 20_000usize, 1_500_000usize), ("batch", &batch, 1, 3_000_000, 70_000)];
    let client = r#"
import socket, sys
port, send, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"s" * send)
    got = 0
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += len(chunk)
    print(s.getsockname()[1], send, got)
    s.close()
"#;
    let started = Instant::now();
    let mut ports_of = HashMap::new(); // container → its connections' local ports
    let mut transferred = HashMap::new(); // container → (sent, received) as the client counted
    for (name, cgroup, connections, send, receive) in plan {
        let port = ns.run(|| serve(send, receive))??;
        let mut python = cgroup.command("python3")?;
        python.arg("-c").arg(client).args([port.to_string(), send.to_string(), connections.to_string()]).stdin(Stdio::null());
        let out = ns.run(|| python.output())??;
        if !out.status.success() {
            return Err(format!("{name} client: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let (mut sent, mut received) = (0, 0);
        for line in String::from_utf8(out.stdout)?.lines() {
            let fields: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
            ports_of.entry(name).or_insert_with(Vec::new).push(fields[0] as u16);
            (sent, received) = (sent + fields[1], received + fields[2]);
        }
        assert_eq!((sent, received), ((connections * send) as u64, (connections * receive) as u64), "{name}: the client moved what was planned");
        transferred.insert(name, (sent, received));
    }
    // tcpdump is done when its file stops growing.
    let mut size = u64::MAX;
    while std::fs::metadata(&capture)?.len() != size {
        size = std::fs::metadata(&capture)?.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    Command::new("kill").args(["-INT", &tcpdump.0.id().to_string()]).status()?;
    tcpdump.0.wait()?;
    println!("traffic done in {:.1?}", started.elapsed());
    // The oracle must be complete: tcpdump says how many packets the kernel could not give it.
    let mut summary = String::new();
    stderr.read_to_string(&mut summary)?;
    let dropped = summary.lines().find_map(|l| l.strip_suffix(" packets dropped by kernel")).ok_or(format!("no tcpdump summary: {summary}"))?;
    assert_eq!(dropped.trim(), "0", "tcpdump missed packets: {summary}");

    // What tcpdump saw, per container: packets from its ports are its egress, to them its ingress.
    let mut seen: HashMap<&str, [Usage; 2]> = HashMap::new();
    let mut data_headers: HashMap<&str, HashSet<u64>> = HashMap::new(); // header bytes of data segments sent
    // Payload seen for the first time (by TCP sequence number), per container and direction:
    // what the applications moved; the rest of the payload are retransmissions.
    let mut first_time: HashMap<&str, [u64; 2]> = HashMap::new();
    let mut flows: HashMap<(u16, u16), SeqRanges> = HashMap::new(); // by (from port, to port)
    let mut reader = PcapReader::new(std::fs::File::open(&capture)?)?;
    while let Some(packet) = reader.next_packet() {
        let frame = packet?.data;
        let ip = &frame[14..]; // loopback frames carry an Ethernet header
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = u64::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[ihl..];
        let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
        let payload = total - ihl as u64 - u64::from(tcp[12] >> 4) * 4;
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let new_bytes = flows.entry((sport, dport)).or_insert(SeqRanges { first: seq, covered: Vec::new() }).add(seq, payload as u32);
        for (name, ports) in &ports_of {
            for (direction, port) in [(0, sport), (1, dport)] {
                if ports.contains(&port) {
                    let u = &mut seen.entry(name).or_default()[direction];
                    (u.packets, u.wire, u.payload) = (u.packets + 1, u.wire + total, u.payload + payload);
                    first_time.entry(name).or_default()[direction] += new_bytes;
                    if direction == 0 && payload > 0 {
                        data_headers.entry(name).or_default().insert(total - payload);
                    }
                }
            }
        }
    }

    println!("{:<6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}  header bytes/packet", "cgroup", "pkts out", "pkts in", "wire out", "wire in", "data out", "data in");
    let table = usage.typed::<u64, [u64; 6]>()?;
    for (name, cgroup, ..) in plan {
        let v = table.get(&cgroup.id())?.ok_or(format!("no usage for {name}"))?;
        let counted = [Usage { packets: v[0], wire: v[1], payload: v[2] }, Usage { packets: v[3], wire: v[4], payload: v[5] }];
        let (out, inn) = (counted[0], counted[1]);
        let per_packet = (out.wire + inn.wire - out.payload - inn.payload) as f64 / (out.packets + inn.packets) as f64;
        println!("{name:<6} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}  {per_packet:.2}", out.packets, inn.packets, out.wire, inn.wire, out.payload, inn.payload);
        // Retransmitted segments pass the hooks again: the payload counted is what the
        // application moved plus what TCP sent twice, which tcpdump's sequence numbers tell.
        let (sent_again, received_again) = (seen[name][0].payload - first_time[name][0], seen[name][1].payload - first_time[name][1]);
        if sent_again + received_again > 0 {
            println!("{name:<6} retransmitted: {sent_again} bytes out, {received_again} in (the same sequence numbers seen again)");
        }
        assert_eq!((first_time[name][0], first_time[name][1]), transferred[name], "{name}: first-time payload (tcpdump) = what the application moved");
        assert_eq!((out.payload, inn.payload), (transferred[name].0 + sent_again, transferred[name].1 + received_again), "{name}: payload = what the application sent and received, plus retransmissions");
        // Ingress runs on the packets tcpdump saw: equal in everything.
        assert_eq!(inn, seen[name][1], "{name}: received packets, wire bytes and payload = what tcpdump saw");
        // Egress runs before segmentation: a super-packet the program counts once reaches the
        // wire as several segments, each with its own copy of the headers.
        let (wire_out, header) = (seen[name][0], data_headers[name].iter().copied().collect::<Vec<_>>());
        assert_eq!(header.len(), 1, "{name}: every data segment has the same header length");
        let split = wire_out.packets - out.packets;
        println!("{name:<6} tcpdump: {} packets out ({split} more: segments of larger packets), {} wire bytes = counted + {split} × {} header bytes", wire_out.packets, wire_out.wire, header[0]);
        assert_eq!((wire_out.payload, wire_out.wire), (out.payload, out.wire + split * header[0]), "{name}: sent payload equal, wire bytes equal once the segments' headers are added");
    }
    // Clean-up, checked: the links detach and the cgroup goes (on an error, drop does the same;
    // on Ctrl-C, the remover).
    let link_ids = links.iter().map(|l| Ok(l.info()?.id)).collect::<Result<Vec<u32>, Error>>()?;
    let path = parent.path().to_path_buf();
    drop(links);
    parent.remove()?;
    let alive = Link::all_ids()?;
    assert!(!path.exists() && link_ids.iter().all(|id| !alive.contains(id)), "nothing left behind");
    println!("clean-up: links {link_ids:?} and {} removed", path.display());
    Ok(())
}
