//! A local TCP proxy whose bytes never reach user space (tutorial/ch08-tc.md, section 8.3): the
//! proxy accepts a client, connects to a backend, and puts both of its sockets in a sockmap. An
//! sk_skb verdict program runs on every message either socket receives and redirects it to the
//! other socket's send side (`bpf_sk_redirect_map`). The proxy process itself reads nothing; the
//! client and the backend see each other's bytes, and the program's counters see every byte.
//!
//! Run as root: `cargo run --example sockmap_proxy`. The same code is a doctest of the chapter.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::ctx_field;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::net::NetNs;
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("sockmap proxy") {
        return Ok(());
    }
    // The proxy's two sockets: 0 faces the client, 1 the backend.
    let socks = Map::create(&MapSpec::new("proxy_socks", MapType::Sockmap, 4, 4, 2))?;
    // Socket cookie → the index of the other socket (its peer).
    let peers = Map::create(&MapSpec::new("proxy_peers", MapType::Hash, 8, 4, 2))?;
    // Per destination index: {messages, bytes} redirected to it.
    let moved = Map::create(&MapSpec::new("proxy_moved", MapType::Array, 4, 16, 2))?;
    let len = ctx_field(ProgType::SkSkb, "len")?;
    let prog = bpf_asm! {
        r6 = r1
        call bpf_get_socket_cookie          // which of the proxy's sockets received this
        *(u64 *)(r10 - 8) = r0
        r1 = map[proxy_peers] ll
        r2 = r10
        r2 += -8
        call bpf_map_lookup_elem
        if r0 == 0 goto pass                // not one of ours: to its reader as usual
        r7 = *(u32 *)(r0 + 0)
        *(u32 *)(r10 - 12) = r7
        r1 = map[proxy_moved] ll
        r2 = r10
        r2 += -12
        call bpf_map_lookup_elem
        if r0 == 0 goto pass
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        r1 = *(u32 *)(r6 + {len})
        lock *(u64 *)(r0 + 8) += r1
        r1 = r6
        r2 = map[proxy_socks] ll
        r3 = r7
        r4 = 0                              // flags 0: out of the peer (BPF_F_INGRESS: into it)
        call bpf_sk_redirect_map            // SK_PASS when redirected, SK_DROP when not
        exit
    pass:
        r0 = 1                              // SK_PASS
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&peers, &moved, &socks], &LoadOptions::new("proxy", ProgType::SkSkb).expected_attach_type(AttachType::SkSkbStreamVerdict))?;
    // Sockets take a map's programs when they are added: attach first.
    let link = prog.attach_sockmap(&socks, AttachType::SkSkbStreamVerdict)?;

    // All of it on the loopback of a namespace of its own.
    let ns = NetNs::new()?;
    let (backend_listener, proxy_listener) = ns.run(|| -> std::io::Result<_> {
        let up = bpfkit::net::Netlink::open()?;
        up.set_up(bpfkit::net::if_index("lo")?).map_err(std::io::Error::other)?;
        Ok((TcpListener::bind("127.0.0.1:0")?, TcpListener::bind("127.0.0.1:0")?))
    })??;
    let (backend_addr, proxy_addr) = (backend_listener.local_addr()?, proxy_listener.local_addr()?);
    let mut client = ns.run(|| TcpStream::connect(proxy_addr))??;
    let (to_client, _) = proxy_listener.accept()?;
    let to_backend = ns.run(|| TcpStream::connect(backend_addr))??;
    let (mut backend, _) = backend_listener.accept()?;
    for (i, s) in [&to_client, &to_backend].into_iter().enumerate() {
        let cookie = bpfkit::os::socket_cookie(s.as_fd())?;
        peers.typed::<u64, u32>()?.insert(&cookie, &(1 - i as u32), UpdateFlags::Any)?;
        socks.update_fd(&(i as u32).to_ne_bytes(), s, UpdateFlags::Any)?;
    }
    for s in [&client, &backend] {
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
    }

    // A request of 100 KiB through the proxy, and a reply of 1 MiB back.
    let request: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let reply: Vec<u8> = (0..1024 * 1024).map(|i| (i % 241) as u8).collect();
    let (got_request, got_reply) = std::thread::scope(|s| -> Result<_, Error> {
        let server = s.spawn(|| -> std::io::Result<Vec<u8>> {
            let mut got = vec![0u8; request.len()];
            backend.read_exact(&mut got)?;
            backend.write_all(&reply)?;
            Ok(got)
        });
        client.write_all(&request)?;
        let mut got = vec![0u8; reply.len()];
        client.read_exact(&mut got)?;
        Ok((server.join().expect("the backend thread")?, got))
    })?;
    // The proxy's own sockets have nothing to read: every byte went around user space.
    let mut idle = 0;
    for mut s in [&to_client, &to_backend] {
        s.set_nonblocking(true)?;
        match s.read(&mut [0u8; 64]) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => idle += 1,
            other => println!("the proxy's socket read {other:?}"),
        }
    }
    let counts = moved.typed::<u32, [u64; 2]>()?;
    let [to_client_msgs, to_client_bytes] = counts.get(&0)?.unwrap_or_default();
    let [to_backend_msgs, to_backend_bytes] = counts.get(&1)?.unwrap_or_default();
    println!("client → backend: {to_backend_bytes} bytes in {to_backend_msgs} messages");
    println!("backend → client: {to_client_bytes} bytes in {to_client_msgs} messages");
    drop(link);

    assert!(got_request == request && got_reply == reply, "both sides got exactly what the other sent");
    assert_eq!((to_backend_bytes, to_client_bytes), (request.len() as u64, reply.len() as u64), "the program moved every byte");
    assert_eq!(idle, 2, "nothing reached the proxy's own reads");
    Ok(())
}
