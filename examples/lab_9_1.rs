//! Lab 9.1 — a container network policy (tutorial/ch09-cgroups.md): `cgroup/connect4` and
//! `cgroup/connect6` programs on a cgroup the lab creates let its processes connect only to the
//! destinations in a policy map. A refused connect() fails with EPERM in the process itself and
//! is logged through a ring buffer with the process's pid, command name and destination. The
//! servers are the lab's own, on loopback ports it binds; the client in the cgroup is python3;
//! the lab itself, outside the cgroup, is not affected.
//!
//! Run as root: `cargo run --example lab_9_1`. The same code is a doctest of the chapter.

use std::io::Write;
use std::process::Stdio;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use bpfkit::attach::Link;
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::ctx_field;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::os::{cgroup2_mount, Cgroup, CgroupRemover, Leftovers};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A TCP server on a loopback port the lab binds: greets each connection with its name and
/// counts the connections it accepted.
fn serve(ip: IpAddr, name: &'static str) -> Result<(u16, Arc<AtomicU32>), Error> {
    let listener = TcpListener::bind((ip, 0))?;
    let port = listener.local_addr()?.port();
    let accepted = Arc::new(AtomicU32::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(name.as_bytes());
        }
    });
    Ok((port, accepted))
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 9.1") {
        return Ok(());
    }
    // The policy: destination → connections allowed so far. IPv4 keys are {address, port},
    // IPv6 keys {address[16], port}, both as the context holds them (network byte order).
    let allow4 = Map::create(&MapSpec::new("allow4", MapType::Hash, 8, 8, 64))?;
    let allow6 = Map::create(&MapSpec::new("allow6", MapType::Hash, 20, 8, 64))?;
    let denied = Map::create(&MapSpec::new("denied", MapType::RingBuf, 0, 0, 64 << 10))?;
    let field = |name: &str| ctx_field(ProgType::CgroupSockAddr, name);
    let (user_ip4, user_ip6, user_port) = (field("user_ip4")?, field("user_ip6")?, field("user_port")?);
    // The log record: pid u32 | family u32 | port u32 (network order) | address [16] | comm [16].
    // `key` is where the program built the lookup key on the stack; its address part is copied.
    let log_and_refuse = |family: i32, key: i16, key_words: i16| {
        let mut copy_address = bpfkit::insn::Program::new();
        for w in 0..key_words {
            copy_address.extend(bpf_asm! {
                r1 = *(u32 *)(r10 + {key + 4 * w})
                *(u32 *)(r7 + {12 + 4 * w}) = r1
            });
        }
        bpf_asm! {
            r1 = map[denied] ll
            r2 = 44
            r3 = 0
            call bpf_ringbuf_reserve
            if r0 == 0 goto refuse
            r7 = r0
            *(u64 *)(r7 + 12) = 0                // the address, zero-filled for IPv4
            *(u64 *)(r7 + 20) = 0
            {&copy_address}
            *(u32 *)(r7 + 4) = {family}
            r1 = *(u32 *)(r6 + {user_port})
            *(u32 *)(r7 + 8) = r1
            call bpf_get_current_pid_tgid
            r0 >>= 32                             // the process id (tgid)
            *(u32 *)(r7 + 0) = r0
            r1 = r7
            r1 += 28
            r2 = 16
            call bpf_get_current_comm
            r1 = r7
            r2 = 0
            call bpf_ringbuf_submit
        refuse:
            r0 = 0                                // 0: connect() fails with EPERM
            exit
        }
    };
    let connect4 = bpf_asm! {
        r6 = r1
        r1 = *(u32 *)(r6 + {user_ip4})
        *(u32 *)(r10 - 8) = r1
        r1 = *(u32 *)(r6 + {user_port})
        *(u32 *)(r10 - 4) = r1
        r1 = map[allow4] ll
        r2 = r10
        r2 += -8
        call bpf_map_lookup_elem
        if r0 == 0 goto deny
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r0 = 1                                    // 1: the connect goes on
        exit
    deny:
        {log_and_refuse(libc::AF_INET, -8, 1)}
    };
    let connect6 = bpf_asm! {
        r6 = r1
        r1 = *(u32 *)(r6 + {user_ip6})
        *(u32 *)(r10 - 20) = r1
        r1 = *(u32 *)(r6 + {user_ip6 + 4})
        *(u32 *)(r10 - 16) = r1
        r1 = *(u32 *)(r6 + {user_ip6 + 8})
        *(u32 *)(r10 - 12) = r1
        r1 = *(u32 *)(r6 + {user_ip6 + 12})
        *(u32 *)(r10 - 8) = r1
        r1 = *(u32 *)(r6 + {user_port})
        *(u32 *)(r10 - 4) = r1
        r1 = map[allow6] ll
        r2 = r10
        r2 += -20
        call bpf_map_lookup_elem
        if r0 == 0 goto deny
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r0 = 1
        exit
    deny:
        {log_and_refuse(libc::AF_INET6, -20, 4)}
    };
    let load = |asm: bpfkit::insn::Program, name: &str, hook: AttachType| -> Result<Program, Error> {
        let opts = LoadOptions::new(name, ProgType::CgroupSockAddr).expected_attach_type(hook);
        Ok(Program::load(&asm.assemble()?, &[&allow4, &allow6, &denied], &opts)?)
    };
    let policy4 = load(connect4, "policy4", AttachType::CgroupInet4Connect)?;
    let policy6 = load(connect6, "policy6", AttachType::CgroupInet6Connect)?;

    // Four servers: an allowed and a forbidden one on each family.
    let (v4, v6) = (IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST));
    let (api4, api4_accepted) = serve(v4, "api4")?;
    let (db4, db4_accepted) = serve(v4, "db4")?;
    let (api6, api6_accepted) = serve(v6, "api6")?;
    let (db6, db6_accepted) = serve(v6, "db6")?;
    let port_key = |port: u16| u32::from(port.to_be()).to_ne_bytes();
    let mut key4 = [0u8; 8];
    key4[..4].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
    key4[4..].copy_from_slice(&port_key(api4));
    allow4.update(&key4, &0u64.to_ne_bytes(), UpdateFlags::NoExist)?;
    let mut key6 = [0u8; 20];
    key6[..16].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
    key6[16..].copy_from_slice(&port_key(api6));
    allow6.update(&key6, &0u64.to_ne_bytes(), UpdateFlags::NoExist)?;
    println!("policy: allow 127.0.0.1:{api4} and [::1]:{api6}; everything else refused");

    // The "container": a cgroup of our own, the programs on it. Ctrl-C removes it (killing the
    // client if it is inside): the handler is in place before the cgroup exists, so no moment
    // is left uncovered; the links go with the process.
    let name = format!("bpfkit-lab-9-1-{}", std::process::id());
    let remover = CgroupRemover::for_path(cgroup2_mount()?.join(&name), Leftovers::Kill);
    ctrlc::set_handler(move || {
        let _ = remover.remove();
        std::process::exit(130);
    })?;
    let cgroup = Cgroup::create(&name)?;
    let links = [policy4.attach_cgroup(&cgroup, AttachType::CgroupInet4Connect)?, policy6.attach_cgroup(&cgroup, AttachType::CgroupInet6Connect)?];

    // The client, started inside the cgroup: one connect per destination, the outcome as the
    // process sees it (the server's greeting, or the errno).
    let client = r#"
import socket, sys
for dest in sys.argv[1:]:
    host, port = dest.rsplit(":", 1)
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.connect((host.strip("[]"), int(port)))
        print(dest, "ok", s.recv(16).decode())
    except OSError as e:
        print(dest, "errno", e.errno)
    s.close()
"#;
    let dests = [format!("127.0.0.1:{api4}"), format!("127.0.0.1:{db4}"), format!("[::1]:{api6}"), format!("[::1]:{db6}")];
    let started = Instant::now();
    let child = cgroup.command("python3")?.arg("-c").arg(client).args(&dests).stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
    let client_pid = child.id();
    let child = child.wait_with_output()?;
    let seen = String::from_utf8(child.stdout)?;
    print!("inside the cgroup (python3, pid {client_pid}, {:.0?}):\n{seen}", started.elapsed());
    let outcomes: Vec<&str> = seen.lines().collect();
    let eperm = format!("errno {}", libc::EPERM);
    assert_eq!(outcomes, [
        format!("{} ok api4", dests[0]),
        format!("{} {eperm}", dests[1]),
        format!("{} ok api6", dests[2]),
        format!("{} {eperm}", dests[3]),
    ], "allowed destinations connect, the others fail with EPERM; stderr: {}", String::from_utf8_lossy(&child.stderr));

    // The log: one record per refused connect, naming the process and where it wanted to go.
    let mut log = Vec::new();
    for record in RingBuf::new(&denied)?.read_all() {
        let word = |at: usize| u32::from_ne_bytes([record[at], record[at + 1], record[at + 2], record[at + 3]]);
        let port = u16::from_be(word(8) as u16);
        let address: [u8; 16] = record[12..28].try_into()?;
        let ip = match word(4) as i32 {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(address[0], address[1], address[2], address[3])),
            _ => IpAddr::V6(Ipv6Addr::from(address)),
        };
        let comm = String::from_utf8_lossy(&record[28..44]).trim_end_matches('\0').to_string();
        println!("denied: pid {} ({comm}) → {}", word(0), SocketAddr::new(ip, port));
        log.push((word(0), comm, SocketAddr::new(ip, port)));
    }
    assert_eq!(log.len(), 2, "two refusals logged");
    assert!(log.iter().all(|(pid, comm, _)| *pid == client_pid && comm == "python3"), "logged as the client's");
    assert_eq!([log[0].2, log[1].2], [SocketAddr::new(v4, db4), SocketAddr::new(v6, db6)]);
    let allowed4 = u64::from_ne_bytes(allow4.lookup(&key4)?.ok_or("no allow4 entry")?.try_into().map_err(|_| "size")?);
    let allowed6 = u64::from_ne_bytes(allow6.lookup(&key6)?.ok_or("no allow6 entry")?.try_into().map_err(|_| "size")?);
    println!("policy hits: 127.0.0.1:{api4} {allowed4}, [::1]:{api6} {allowed6}");
    assert_eq!((allowed4, allowed6), (1, 1));

    // Outside the cgroup (this process), the same forbidden servers answer.
    for (ip, port) in [(v4, db4), (v6, db6)] {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2))?;
        let mut greeting = String::new();
        std::io::Read::read_to_string(&mut stream, &mut greeting)?;
        println!("outside the cgroup: {} ok {greeting}", SocketAddr::new(ip, port));
        assert!(greeting.starts_with("db"));
    }
    std::thread::sleep(Duration::from_millis(50)); // the accept threads count
    let accepted = |a: &AtomicU32| a.load(Ordering::SeqCst);
    println!("accepted: api4 {}, db4 {}, api6 {}, db6 {}", accepted(&api4_accepted), accepted(&db4_accepted), accepted(&api6_accepted), accepted(&db6_accepted));
    assert_eq!([accepted(&api4_accepted), accepted(&db4_accepted), accepted(&api6_accepted), accepted(&db6_accepted)], [1, 1, 1, 1], "the forbidden servers saw only the outside connections");
    assert!(RingBuf::new(&denied)?.read_all().is_empty(), "nothing logged for the outside process");
    // Clean-up, checked: the links detach and the cgroup goes (on an error, drop does the same;
    // on Ctrl-C, the remover).
    let link_ids = links.iter().map(|l| Ok(l.info()?.id)).collect::<Result<Vec<u32>, Error>>()?;
    let path = cgroup.path().to_path_buf();
    drop(links);
    cgroup.remove()?;
    let alive = Link::all_ids()?;
    assert!(!path.exists() && link_ids.iter().all(|id| !alive.contains(id)), "nothing left behind");
    println!("clean-up: links {link_ids:?} and {} removed", path.display());
    Ok(())
}
