//! Lab 8.2 — an application-layer filter (tutorial/ch08-tc.md): a TC ingress program in front of
//! `python3 -m http.server` reads the first bytes of each TCP segment to the server's port,
//! finds the HTTP method and path of a request, and drops requests that the policy (written by
//! user space: methods allowed or denied, a denied path prefix) refuses. curl is the client and
//! the server's own request log the judge: GET answered, POST and the private path never reach
//! the server, and every dropped segment is a transmission the client's TCP counts.
//!
//! Run as root: `cargo run --example lab_8_2`. The same code is a doctest of the chapter.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use bpfkit::attach::TcDirection;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{ctx_field, parse_ports, zero_stack, PacketCtx};
use bpfkit::insn::Reg;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::net::{if_index, NetNs, Netlink};
use bpfkit::prog::{LoadOptions, ProgType, Program};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP server: killed and reaped when dropped (on success and on error); its pid is also
/// in a file the Ctrl-C handler reads, since destructors do not run there.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A method as the program keys it: its name, zero-padded to 8 bytes.
fn method_key(name: &str) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..name.len()].copy_from_slice(name.as_bytes());
    key
}

/// The denied-path rule as the program reads it: {on, prefix[32], mask[32], hits}.
fn path_rule(prefix: &str) -> [u64; 10] {
    let (mut bytes, mut mask) = ([0u8; 32], [0u8; 32]);
    bytes[..prefix.len()].copy_from_slice(prefix.as_bytes());
    mask[..prefix.len()].fill(0xff);
    let word = |b: &[u8; 32], i: usize| u64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().unwrap());
    let mut rule = [0u64; 10];
    rule[0] = 1;
    for i in 0..4 {
        rule[1 + i] = word(&bytes, i);
        rule[5 + i] = word(&mask, i);
    }
    rule
}

/// The client's TCP retransmissions so far (`Tcp: RetransSegs` of its namespace's snmp file; the
/// thread's: `/proc/self` is the process's, whose main thread stays in the first namespace).
fn retransmissions(ns: &NetNs) -> Result<u64, Error> {
    let snmp = ns.run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().ok_or("no Tcp: line")?, tcp.next().ok_or("no Tcp: values")?);
    let at = names.split_whitespace().position(|n| n == "RetransSegs").ok_or("no RetransSegs")?;
    Ok(values.split_whitespace().nth(at).ok_or("short Tcp: values")?.parse()?)
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 8.2") {
        return Ok(());
    }
    const PORT: i32 = 8000;
    // Policy: method (8 bytes, zero-padded) → {verdict: 0 allow, 1 drop; requests seen}.
    let methods = Map::create(&MapSpec::new("http_methods", MapType::Hash, 8, 16, 32))?;
    // One denied path prefix: {on, prefix[32], mask[32], hits}, read in place by the program.
    let deny_path = Map::create(&MapSpec::new("http_deny_path", MapType::Array, 4, 80, 1))?;
    // {requests parsed, not a request start, dropped by method, dropped by path}.
    let stats = Map::create(&MapSpec::new("http_stats", MapType::Array, 4, 32, 1))?;
    let skb_len = ctx_field(ProgType::SchedCls, "len")?;
    let prog = bpf_asm! {
        r9 = r1
        {parse_ports(PacketCtx::Tc, Reg::R9, -16, "pass")?}
        if r0 != 6 goto pass                // TCP …
        r5 = *(u16 *)(r10 - 16)
        if r5 != 0x800 goto pass            // … over IPv4 …
        r5 = *(u16 *)(r10 - 10)
        if r5 != {PORT} goto pass           // … to the server's port
        r5 = *(u8 *)(r4 + 12)
        r5 >>= 4
        r5 <<= 2                            // TCP header length
        r7 = r4
        r7 -= r2
        r7 += r5                            // where the payload starts
        r6 = *(u32 *)(r9 + {skb_len})
        r6 -= r7                            // payload bytes
        if r6 s< 8 goto pass                // ACKs, SYNs, FINs: nothing to read
        if r6 <= 40 goto sized
        r6 = 40
    sized:
        {zero_stack(-56, 40)?}
        r1 = r9                             // copy up to 40 bytes of payload to r10-56
        r2 = r7
        r3 = r10
        r3 += -56
        r4 = r6
        call bpf_skb_load_bytes
        if r0 != 0 goto pass
        // The request line: METHOD SP PATH SP VERSION. Methods are 3 (GET) to 7 (OPTIONS)
        // letters: the first space is at byte 3 to 7, or this is not a request's start.
        r8 = 3
        r1 = *(u8 *)(r10 - 53)
        if r1 == 0x20 goto method
        r8 = 4
        r1 = *(u8 *)(r10 - 52)
        if r1 == 0x20 goto method
        r8 = 5
        r1 = *(u8 *)(r10 - 51)
        if r1 == 0x20 goto method
        r8 = 6
        r1 = *(u8 *)(r10 - 50)
        if r1 == 0x20 goto method
        r8 = 7
        r1 = *(u8 *)(r10 - 49)
        if r1 == 0x20 goto method
        r1 = map_value[http_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 8) += r2         // a continuation, a body, or not HTTP
        goto pass
    method:
        r1 = map_value[http_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 0) += r2
        r1 = *(u64 *)(r10 - 56)             // the method's bytes, the rest zeroed: the key
        r2 = r8
        r2 <<= 3
        r3 = 1
        r3 <<= r2
        r3 -= 1
        r1 &= r3
        *(u64 *)(r10 - 64) = r1
        r1 = map[http_methods] ll
        r2 = r10
        r2 += -64
        call bpf_map_lookup_elem
        if r0 == 0 goto path                // a method the policy does not name: path rule only
        r1 = 1
        lock *(u64 *)(r0 + 8) += r1
        r1 = *(u64 *)(r0 + 0)
        if r1 == 0 goto path
        r1 = map_value[http_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 16) += r2
        goto drop
    path:
        // The path: up to 32 bytes after the space, compared with the rule under its mask.
        {zero_stack(-96, 32)?}
        r6 -= r8
        r6 -= 1                             // bytes from the path on (of the 40 read)
        if r6 s< 1 goto pass
        if r6 <= 32 goto path_sized
        r6 = 32
    path_sized:
        r1 = r9
        r2 = r7
        r2 += r8
        r2 += 1
        r3 = r10
        r3 += -96
        r4 = r6
        call bpf_skb_load_bytes
        if r0 != 0 goto pass
        r6 = map_value[http_deny_path]+0 ll
        r1 = *(u64 *)(r6 + 0)
        if r1 == 0 goto pass                // no rule
        r1 = *(u64 *)(r10 - 96)
        r2 = *(u64 *)(r6 + 40)
        r1 &= r2
        r2 = *(u64 *)(r6 + 8)
        if r1 != r2 goto pass
        r1 = *(u64 *)(r10 - 88)
        r2 = *(u64 *)(r6 + 48)
        r1 &= r2
        r2 = *(u64 *)(r6 + 16)
        if r1 != r2 goto pass
        r1 = *(u64 *)(r10 - 80)
        r2 = *(u64 *)(r6 + 56)
        r1 &= r2
        r2 = *(u64 *)(r6 + 24)
        if r1 != r2 goto pass
        r1 = *(u64 *)(r10 - 72)
        r2 = *(u64 *)(r6 + 64)
        r1 &= r2
        r2 = *(u64 *)(r6 + 32)
        if r1 != r2 goto pass
        r1 = 1
        lock *(u64 *)(r6 + 72) += r1
        r1 = map_value[http_stats]+0 ll
        r2 = 1
        lock *(u64 *)(r1 + 24) += r2
    drop:
        r0 = 2                              // TC_ACT_SHOT
        exit
    pass:
        r0 = 0                              // TC_ACT_OK
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&methods, &deny_path, &stats], &LoadOptions::new("http_filter", ProgType::SchedCls))?;

    // client 192.0.2.2 ──veth── s0 192.0.2.1 [http_filter on ingress] python3 -m http.server 8000
    let (server_ip, client_ip) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
    let (server_ns, client) = (NetNs::new()?, NetNs::new()?);
    let configure = |name: &str, ip: Ipv4Addr| -> Result<u32, Error> {
        let nl = Netlink::open()?;
        let i = if_index(name)?;
        nl.add_ipv4(i, ip, 24)?;
        nl.set_up(i)?;
        Ok(i)
    };
    let s0 = server_ns.run(|| -> Result<u32, Error> {
        Netlink::open()?.add_veth("s0", "eth0", Some(client.as_fd()))?;
        configure("s0", server_ip)
    })??;
    client.run(|| configure("eth0", client_ip))??;

    // The site: an index page and a private file.
    let site = tempfile::tempdir()?;
    std::fs::write(site.path().join("index.html"), "<h1>hello from lab 8.2</h1>\n")?;
    std::fs::create_dir(site.path().join("private"))?;
    std::fs::write(site.path().join("private/secret.txt"), "not for you\n")?;
    let log_path = site.path().join("requests.log"); // the server's request log (its stderr)
    let log = std::fs::File::create(&log_path)?;
    let server = server_ns.run(|| {
        Command::new("python3")
            .args(["-u", "-m", "http.server", "8000", "--bind", "192.0.2.1", "--directory"])
            .arg(site.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
    })??;
    let mut server = Server(server);
    let (pid, site_dir) = (server.0.id(), site.path().to_path_buf());
    // Ctrl-C skips destructors: kill the server and remove the site there too (the namespaces
    // and the program's link go with the process; a running curl gets the same SIGINT).
    ctrlc::set_handler(move || {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        let _ = std::fs::remove_dir_all(&site_dir);
        std::process::exit(130);
    })?;
    let mut ready = String::new();
    // It is ready when it says so: "Serving HTTP on 192.0.2.1 port 8000 …".
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.0.stdout.take().ok_or("no stdout")?), &mut ready)?;
    if !ready.starts_with("Serving HTTP") {
        return Err(format!("python3 -m http.server did not start: {ready:?}").into());
    }

    // The policy, from user space: GET and HEAD allowed, POST dropped, /private/ dropped.
    let verdicts = methods.typed::<[u8; 8], [u64; 2]>()?;
    for (m, verdict) in [("GET", 0), ("HEAD", 0), ("POST", 1)] {
        verdicts.insert(&method_key(m), &[verdict, 0], UpdateFlags::Any)?;
    }
    deny_path.typed::<u32, [u64; 10]>()?.insert(&0, &path_rule("/private/"), UpdateFlags::Any)?;
    let link = server_ns.run(|| prog.attach_tc(s0, TcDirection::Ingress))??;
    println!("attached: {}", link.describe());

    let curl = |args: &[&str]| -> Result<Output, Error> {
        let mut all = vec!["-sS", "--max-time", "2", "-o", "-", "-w", "\n%{http_code}"];
        all.extend_from_slice(args);
        Ok(client.run(|| Command::new("curl").args(&all).output())??)
    };
    let show = |what: &str, out: &Output| {
        let text = String::from_utf8_lossy(&out.stdout);
        let code = text.lines().last().unwrap_or("");
        let err = String::from_utf8_lossy(&out.stderr);
        println!("{what:<34} exit {:>2}, HTTP {code:>3} {}", out.status.code().unwrap_or(-1), err.trim());
    };
    let retrans_before = retransmissions(&client)?;
    let get = curl(&["http://192.0.2.1:8000/"])?;
    show("curl GET /", &get);
    let post = curl(&["-d", "name=lab", "http://192.0.2.1:8000/"])?;
    show("curl POST / (denied method)", &post);
    let private = curl(&["http://192.0.2.1:8000/private/secret.txt"])?;
    show("curl GET /private/secret.txt", &private);
    // Every dropped segment was a transmission of one of the two denied requests: the first, and
    // each retransmission the client's TCP counts. (Read the pair again if one was on the wire
    // between the two reads.)
    let [requests, other, by_method, by_path] = stats.typed::<u32, [u64; 4]>()?.get(&0)?.ok_or("no stats")?;
    let (mut dropped, mut retransmitted) = (by_method + by_path, retransmissions(&client)? - retrans_before);
    for _ in 0..10 {
        if dropped == 2 + retransmitted {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        let s = stats.typed::<u32, [u64; 4]>()?.get(&0)?.ok_or("no stats")?;
        (dropped, retransmitted) = (s[2] + s[3], retransmissions(&client)? - retrans_before);
    }

    // User space changes the policy while the program runs: POST is now allowed through, and the
    // server answers it itself (http.server has no POST handler: 501).
    verdicts.insert(&method_key("POST"), &[0, verdicts.get(&method_key("POST"))?.map_or(0, |v| v[1])], UpdateFlags::Exist)?;
    let post_again = curl(&["-d", "name=lab", "http://192.0.2.1:8000/"])?;
    show("curl POST / (after the change)", &post_again);
    drop(link);

    println!("program: {requests} request lines, {other} other segments; dropped {by_method} by method, {by_path} by path");
    for m in ["GET", "HEAD", "POST"] {
        let [verdict, seen] = verdicts.get(&method_key(m))?.unwrap_or_default();
        println!("  {m:<5} verdict {} seen {seen}", if verdict == 0 { "allow" } else { "drop " });
    }
    println!("client TCP: {retransmitted} retransmissions; segments dropped = 2 requests + {retransmitted} = {dropped}");
    let log = std::fs::read_to_string(&log_path)?;
    println!("server log:");
    for line in log.lines() {
        println!("  {}", line.split_once("] ").map_or(line, |(_, request)| request));
    }

    let body = String::from_utf8(get.stdout)?;
    assert_eq!(body, "<h1>hello from lab 8.2</h1>\n\n200", "GET / was answered with the page");
    assert_eq!(post.status.code(), Some(28), "POST timed out (curl exit 28): its segments were dropped");
    assert_eq!(private.status.code(), Some(28), "the private path timed out too");
    assert!(by_method >= 1 && by_path >= 1, "each denied request was dropped at least once");
    assert_eq!(dropped, 2 + retransmitted, "every drop is a transmission the client's TCP made");
    // The server's own log: the GET and the POST let through, nothing else.
    let requests_logged: Vec<&str> = log.lines().filter_map(|l| l.split('"').nth(1)).collect();
    assert_eq!(requests_logged, ["GET / HTTP/1.1", "POST / HTTP/1.1"], "{log}");
    assert!(String::from_utf8(post_again.stdout)?.ends_with("\n501"), "the allowed POST reached the server");
    Ok(())
}
