//! Kernel tests of the networking attach points: XDP and tc on a veth pair between two network
//! namespaces the test creates, socket filters, sockmap programs, sk_lookup, netfilter, the flow
//! dissector, and cgroup skb/sock/sysctl hooks. Each sends a known number of packets (or
//! connections, messages, writes) and asserts the exact count the program saw, what the
//! receiving side got, and that dropping the link leaves nothing attached. Namespaces are held
//! by fds ([`NetNs`]), so their veths vanish with them even when a test fails.

mod support;

use support::cgroup::ChildCgroup;
use support::veth::{Veth, A_IP, B_IP};

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use bpfkit::attach::{
    cls_bpf_filters, xdp_state, AttachPath, LinkError, LinkType, NetfilterHook, NfFamily, NfHook, TcDirection, TcOptions,
    XdpMode,
};
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, Kind};
use bpfkit::insn::Assembled;
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};
use bpfkit::net::NetNs;

const N: usize = 40;
const PORT: u16 = 4242;
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// The byte offset of `field` in kernel struct `name`, from vmlinux BTF.
fn offset(name: &str, field: &str) -> i16 {
    let btf = Btf::vmlinux().unwrap();
    let id = btf.find_by_name_kind(name, Kind::Struct).unwrap_or_else(|| panic!("struct {name} in vmlinux BTF"));
    (btf.member_offset(id, field).unwrap() / 8) as i16
}

/// `counts[0]`: packets and bytes. Every program below names it `counts`.
fn counts() -> Map {
    Map::create(&MapSpec::new("counts", MapType::Array, 4, 16, 1)).unwrap()
}

fn read(m: &Map) -> (u64, u64) {
    let [packets, bytes] = m.typed::<u32, [u64; 2]>().unwrap().get(&0).unwrap().unwrap();
    (packets, bytes)
}

/// Wait (up to 3 s: packets are processed in softirq after `send` returns) until `counts`
/// shows `packets`, then return what it shows.
fn settle(m: &Map, packets: u64) -> (u64, u64) {
    let start = Instant::now();
    while read(m).0 < packets && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(20)); // and let any extra arrive, to be caught
    read(m)
}

/// Append the shared tail: jumping to `count` with the verdict in r6 and a byte count in r7
/// adds 1 and r7 to `counts[0]` and returns r6; `done` returns r6 without counting.
fn with_count_tail(mut prog: bpfkit::insn::Program) -> Assembled {
    prog.extend(bpf_asm! {
    count:
        *(u32 *)(r10 - 4) = 0
        r1 = map[counts] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto done
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
        lock *(u64 *)(r0 + 8) += r7
    done:
        r0 = r6
        exit
    });
    prog.assemble().unwrap()
}

fn load(asm: &Assembled, maps: &[&Map], name: &str, prog_type: ProgType, attach: Option<AttachType>) -> Program {
    let mut opts = LoadOptions::new(name, prog_type);
    if let Some(a) = attach {
        opts = opts.expected_attach_type(a);
    }
    Program::load(asm, maps, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A program over an Ethernet frame (XDP, tc) that counts IPv4 UDP packets to `PORT` and
/// returns `hit` for them, `miss` for everything else.
fn udp_port_prog(counts: &Map, prog_type: ProgType, hit: i32, miss: i32) -> Program {
    let ctx = if prog_type == ProgType::Xdp { "xdp_md" } else { "__sk_buff" };
    let (data, data_end) = (offset(ctx, "data"), offset(ctx, "data_end"));
    let port = PORT.to_be() as i32;
    let prefix = bpf_asm! {
        r6 = {miss}
        r2 = *(u32 *)(r1 + {data})
        r3 = *(u32 *)(r1 + {data_end})
        r4 = r2
        r4 += 38
        if r4 > r3 goto done
        r4 = *(u16 *)(r2 + 12)     // ethertype 0x0800, read little-endian
        if r4 != 8 goto done
        r4 = *(u8 *)(r2 + 23)      // IPv4 protocol: UDP
        if r4 != 17 goto done
        r4 = *(u16 *)(r2 + 36)     // UDP destination port
        if r4 != {port} goto done
        r6 = {hit}
        r7 = 0
        goto count
    };
    let attach = if prog_type == ProgType::Xdp { Some(AttachType::Xdp) } else { None };
    load(&with_count_tail(prefix), &[counts], "udp_port", prog_type, attach)
}

impl Veth {
    /// A sender in `a` and a receiver on `PORT` in `b`, after one datagram has made the trip
    /// (so ARP is resolved and no later datagram waits for it).
    fn udp(&self) -> (UdpSocket, UdpSocket) {
        let tx = self.a.run(|| UdpSocket::bind((A_IP, 0)).unwrap()).unwrap();
        let rx = self.b.run(|| UdpSocket::bind((B_IP, PORT)).unwrap()).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        tx.send_to(b"warm-up", (B_IP, PORT)).unwrap();
        rx.recv(&mut [0u8; 64]).expect("a warm-up datagram crosses the veth");
        (tx, rx)
    }
}

fn send(tx: &UdpSocket, n: usize) {
    for i in 0..n {
        tx.send_to(format!("datagram {i}").as_bytes(), (B_IP, PORT)).unwrap();
    }
}

/// Receive until `want` datagrams arrived or 1 s passed without one; then count any extra.
fn received(rx: &UdpSocket, want: usize) -> usize {
    let mut buf = [0u8; 2048];
    let mut got = 0;
    rx.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    while got < want && rx.recv(&mut buf).is_ok() {
        got += 1;
    }
    rx.set_nonblocking(true).unwrap();
    while rx.recv(&mut buf).is_ok() {
        got += 1;
    }
    rx.set_nonblocking(false).unwrap();
    got
}

/// `tool args…` run inside `ns`: its stdout and stderr; `None` (with a note) if the tool is
/// not installed, so only that cross-check is skipped.
fn tool_in(ns: &NetNs, tool: &str, args: &[&str]) -> Option<String> {
    match ns.run(|| Command::new(tool).args(args).output()).unwrap() {
        Ok(out) => Some(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))),
        Err(e) => {
            support::oracle_unavailable(&format!("{tool} cross-check"), &format!("{tool} not run ({e})"));
            None
        }
    }
}

fn xdp_counts_drops_and_detaches(path: AttachPath, mode: XdpMode) {
    let net = Veth::new();
    let (tx, rx) = net.udp();
    let hits = counts();
    let pass = udp_port_prog(&hits, ProgType::Xdp, XDP_PASS, XDP_PASS);
    let id = pass.info().unwrap().id;
    let link = net.b.run(|| pass.attach_xdp_via(net.ifb, mode, path)).unwrap().unwrap();
    assert_eq!(link.path(), path, "{mode:?}");
    assert!(link.describe().contains("\"vb\""), "{}", link.describe());
    let state = net.b.run(|| xdp_state(net.ifb)).unwrap().unwrap();
    assert_eq!(state.attached, if mode == XdpMode::Native { 1 } else { 2 }, "{path:?} {mode:?}: {state:?}");
    assert_eq!(state.prog_ids(), vec![id]);
    if let Some(shown) = tool_in(&net.b, "ip", &["link", "show", "dev", "vb"]) {
        let word = if mode == XdpMode::Native { " xdp " } else { " xdpgeneric " };
        assert!(shown.contains(word) && shown.contains(&format!("prog/xdp id {id}")), "{path:?} {mode:?}: {shown}");
    }
    send(&tx, N);
    assert_eq!(received(&rx, N), N, "{path:?} {mode:?}: XDP_PASS lets every datagram through");
    assert_eq!(settle(&hits, N as u64).0, N as u64, "{path:?} {mode:?}");

    drop(link);
    // Not at once: a link is released when its last fd closes, and a concurrent listing (another
    // test's bpftool) may hold it for a moment; support::assert_link_gone waits the same way.
    let start = std::time::Instant::now();
    while !net.b.run(|| xdp_state(net.ifb)).unwrap().unwrap().prog_ids().is_empty() {
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{path:?} {mode:?}: XDP still attached 5 s after drop");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if let Some(shown) = tool_in(&net.b, "bpftool", &["net", "show", "dev", "vb"]) {
        assert!(shown.contains("xdp:") && !shown.contains(&format!("id {id}")), "{path:?} {mode:?}: {shown}");
    }
    if let Some(shown) = tool_in(&net.b, "ip", &["link", "show", "dev", "vb"]) {
        assert!(!shown.contains("prog/xdp"), "{shown}");
    }
    send(&tx, N);
    assert_eq!(received(&rx, N), N);
    assert_eq!(read(&hits).0, N as u64, "{path:?} {mode:?}: no runs after the link is dropped");

    let drops = counts();
    let drop_prog = udp_port_prog(&drops, ProgType::Xdp, XDP_DROP, XDP_PASS);
    let link = net.b.run(|| drop_prog.attach_xdp_via(net.ifb, mode, path)).unwrap().unwrap();
    send(&tx, N);
    assert_eq!(settle(&drops, N as u64).0, N as u64, "{path:?} {mode:?}");
    assert_eq!(received(&rx, 0), 0, "{path:?} {mode:?}: XDP_DROP drops every datagram");
    drop(link);
    send(&tx, N);
    assert_eq!(received(&rx, N), N, "{path:?} {mode:?}: they arrive again once detached");
    assert_eq!(read(&drops).0, N as u64);
}

#[test]
fn xdp_link_generic_and_native_on_veth() {
    if !support::kernel_or_skip("xdp link on veth") {
        return;
    }
    xdp_counts_drops_and_detaches(AttachPath::BpfLink, XdpMode::Generic);
    xdp_counts_drops_and_detaches(AttachPath::BpfLink, XdpMode::Native);
}

#[test]
fn xdp_netlink_generic_and_native_on_veth() {
    if !support::kernel_or_skip("xdp netlink on veth") {
        return;
    }
    xdp_counts_drops_and_detaches(AttachPath::Netlink, XdpMode::Generic);
    xdp_counts_drops_and_detaches(AttachPath::Netlink, XdpMode::Native);
}

fn errno(e: &LinkError) -> Option<i32> {
    match e {
        LinkError::Sys(s) => s.errno(),
        LinkError::Netlink(n) => n.errno(),
        _ => None,
    }
}

#[test]
fn xdp_refusals_name_the_interface_and_the_reason() {
    if !support::kernel_or_skip("xdp refusals") {
        return;
    }
    let net = Veth::new();
    let hits = counts();
    let prog = udp_port_prog(&hits, ProgType::Xdp, XDP_PASS, XDP_PASS);
    let other = udp_port_prog(&hits, ProgType::Xdp, XDP_PASS, XDP_PASS);
    net.b.run(|| {
        let held = prog.attach_xdp_via(net.ifb, XdpMode::Generic, AttachPath::Netlink).unwrap();
        // netlink never replaces a program: the kernel's extended ack says why.
        let err = other.attach_xdp_via(net.ifb, XdpMode::Generic, AttachPath::Netlink).unwrap_err();
        assert_eq!(errno(&err), Some(libc::EBUSY), "{err}");
        let text = err.to_string();
        assert!(text.contains("\"vb\"") && text.contains("xdp \"udp_port\"") && text.contains("XDP program already attached"), "{text}");
        // Nor does a link take over a netlink attachment.
        let err = other.attach_xdp(net.ifb, XdpMode::Generic).unwrap_err();
        assert_eq!(errno(&err), Some(libc::EBUSY), "{err}");
        held.detach().unwrap();
        assert_eq!(xdp_state(net.ifb).unwrap().attached, 0, "explicit detach removed it");

        let err = prog.attach_xdp(9999, XdpMode::Generic).unwrap_err();
        assert!(err.to_string().contains("ifindex 9999"), "{err}");
        assert!(prog.attach_xdp(0, XdpMode::Auto).unwrap_err().to_string().contains("ifindex 0 names no interface"));
        let tc = udp_port_prog(&hits, ProgType::SchedCls, TC_ACT_OK, TC_ACT_OK);
        let err = tc.attach_xdp(net.ifb, XdpMode::Generic).unwrap_err();
        assert!(err.to_string().contains("needs a xdp program, not sched_cls"), "{err}");
        let err = bpfkit::attach::ifindex("no-such-dev").unwrap_err();
        assert!(err.to_string().contains("\"no-such-dev\""), "{err}");
    })
    .unwrap();
}

#[test]
fn tc_tcx_links_and_cls_bpf_filters_count_exactly() {
    if !support::kernel_or_skip("tc on veth") {
        return;
    }
    let net = Veth::new();
    let (tx, rx) = net.udp();
    let hits = counts();
    let prog = udp_port_prog(&hits, ProgType::SchedCls, TC_ACT_OK, TC_ACT_OK);
    let id = prog.info().unwrap().id;
    // Without TCX (before 6.6) every tc attach goes through a cls_bpf filter over netlink.
    let tcx = support::probe::kernel_has("tc counts", "tcx links", bpfkit::features::Features::global().attach_type(AttachType::TcxIngress), || {
        support::witness::kernel_enum_has("bpf_attach_type", "BPF_TCX_INGRESS")
    });
    let linked = |path: AttachPath| if tcx { path } else { AttachPath::Netlink };

    // A tcx ingress link on vb (or, without TCX, the cls_bpf filter bpfkit falls back to).
    let link = net.b.run(|| prog.attach_tc(net.ifb, TcDirection::Ingress)).unwrap().unwrap();
    assert_eq!(link.path(), linked(AttachPath::BpfLink), "{}", link.describe());
    if tcx {
        assert_eq!(link.info().unwrap().link_type, Some(LinkType::Tcx));
        // bpftool before 7.3 does not list tcx in `bpftool net`; every version shows the link.
        let link_id = link.info().unwrap().id.to_string();
        if let Some(shown) = tool_in(&net.b, "bpftool", &["link", "show", "id", &link_id]) {
            assert!(shown.contains(&format!("prog {id}")), "{shown}");
        }
        send(&tx, N);
        assert_eq!(received(&rx, N), N);
        assert_eq!(settle(&hits, N as u64).0, N as u64);
        drop(link);
        if let Some(shown) = tool_in(&net.b, "bpftool", &["link", "show", "id", &link_id]) {
            assert!(!shown.contains(&format!("prog {id}")), "the tcx link is gone: {shown}");
        }
    } else {
        let filters = net.b.run(|| cls_bpf_filters(net.ifb, TcDirection::Ingress)).unwrap().unwrap();
        assert_eq!(filters.len(), 1, "{filters:?}");
        assert_eq!((filters[0].prog_id, filters[0].direct_action), (id, true), "{filters:?}");
        send(&tx, N);
        assert_eq!(received(&rx, N), N);
        assert_eq!(settle(&hits, N as u64).0, N as u64);
        drop(link);
        assert_eq!(net.b.run(|| cls_bpf_filters(net.ifb, TcDirection::Ingress)).unwrap().unwrap(), vec![], "the fallback filter is removed on drop");
    }

    // A direct-action cls_bpf filter on vb's clsact, at a chosen priority and handle.
    let opts = TcOptions::new().priority(7).handle(3);
    let link = net.b.run(|| prog.attach_tc_with(net.ifb, TcDirection::Ingress, &opts)).unwrap().unwrap();
    assert_eq!(link.path(), AttachPath::Netlink);
    assert!(link.describe().contains("pref 7 handle 0x3 on \"vb\""), "{}", link.describe());
    let filters = net.b.run(|| cls_bpf_filters(net.ifb, TcDirection::Ingress)).unwrap().unwrap();
    assert_eq!(filters.len(), 1, "{filters:?}");
    assert_eq!((filters[0].priority, filters[0].handle, filters[0].prog_id, filters[0].direct_action), (7, 3, id, true));
    if let Some(shown) = tool_in(&net.b, "tc", &["filter", "show", "dev", "vb", "ingress"]) {
        assert!(shown.contains("pref 7 bpf") && shown.contains("direct-action") && shown.contains(&format!("id {id}")), "{shown}");
    }
    if let Some(shown) = tool_in(&net.b, "bpftool", &["net", "show", "dev", "vb"]) {
        assert!(shown.contains(&format!("clsact/ingress udp_port id {id}")), "{shown}");
    }
    send(&tx, N);
    assert_eq!(received(&rx, N), N);
    assert_eq!(settle(&hits, 2 * N as u64).0, 2 * N as u64);
    drop(link);
    assert_eq!(net.b.run(|| cls_bpf_filters(net.ifb, TcDirection::Ingress)).unwrap().unwrap(), vec![]);
    if let Some(shown) = tool_in(&net.b, "tc", &["filter", "show", "dev", "vb", "ingress"]) {
        assert!(!shown.contains("bpf"), "{shown}");
    }
    if let Some(shown) = tool_in(&net.b, "bpftool", &["net", "show", "dev", "vb"]) {
        assert!(!shown.contains("clsact/ingress"), "{shown}");
    }
    send(&tx, N);
    assert_eq!(received(&rx, N), N);
    assert_eq!(read(&hits).0, 2 * N as u64, "no runs once both are gone");

    // Egress on va, both ways, with a program that drops what it counts.
    assert_eq!(net.a.run(|| cls_bpf_filters(net.ifa, TcDirection::Egress)).unwrap().unwrap(), vec![], "no clsact yet: no filters");
    for path in [AttachPath::BpfLink, AttachPath::Netlink] {
        let shots = counts();
        let shoot = udp_port_prog(&shots, ProgType::SchedCls, TC_ACT_SHOT, TC_ACT_OK);
        let opts = if path == AttachPath::Netlink { TcOptions::new().cls_bpf() } else { TcOptions::new() };
        let link = net.a.run(|| shoot.attach_tc_with(net.ifa, TcDirection::Egress, &opts)).unwrap().unwrap();
        assert_eq!(link.path(), linked(path), "{path:?}");
        send(&tx, N);
        assert_eq!(settle(&shots, N as u64).0, N as u64, "{path:?}");
        assert_eq!(received(&rx, 0), 0, "{path:?}: TC_ACT_SHOT on egress drops every datagram");
        // A tcx bpf_link is released when its last fd closes, which a concurrent test's link
        // listing may delay a moment: wait for it to be gone before checking the traffic.
        let link_id = link.info().ok().map(|i| i.id);
        drop(link);
        if let Some(id) = link_id {
            support::assert_link_gone(id);
        }
        send(&tx, N);
        assert_eq!(received(&rx, N), N, "{path:?}: detached");
    }
}

#[test]
fn socket_filter_drops_and_truncates_exactly() {
    if !support::kernel_or_skip("socket filter") {
        return;
    }
    let hits = counts();
    // A UDP socket filter sees the datagram from its UDP header on: drop 100-byte payloads,
    // keep 4 bytes of 30-byte ones, keep the rest whole.
    let len = offset("__sk_buff", "len");
    let prefix = bpf_asm! {
        r7 = *(u32 *)(r1 + {len})
        r6 = r7
        if r7 != 108 goto not_drop
        r6 = 0
        goto count
    not_drop:
        if r7 != 38 goto count
        r6 = 12
        goto count
    };
    let prog = load(&with_count_tail(prefix), &[&hits], "sock_filter", ProgType::SocketFilter, None);
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let link = prog.attach_socket_filter(&rx).unwrap();
    assert_eq!(link.path(), AttachPath::SocketOption);
    let to = rx.local_addr().unwrap();
    for i in 0..N {
        tx.send_to(&[b'k'; 20], to).unwrap();
        tx.send_to(&[b'd'; 100], to).unwrap();
        tx.send_to(&[i as u8; 30], to).unwrap();
    }
    let (packets, bytes) = settle(&hits, 3 * N as u64);
    assert_eq!(packets, 3 * N as u64);
    assert_eq!(bytes, (N * (28 + 108 + 38)) as u64);
    let mut sizes = Vec::new();
    let mut buf = [0u8; 256];
    rx.set_nonblocking(true).unwrap();
    while let Ok(n) = rx.recv(&mut buf) {
        sizes.push(n);
    }
    assert_eq!(sizes, [20, 4].repeat(N), "100-byte datagrams dropped, 30-byte ones cut to 4");
    drop(link);
    tx.send_to(&[b'd'; 100], to).unwrap();
    rx.set_nonblocking(false).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(rx.recv(&mut buf).unwrap(), 100, "the filter is gone");
    assert_eq!(read(&hits).0, 3 * N as u64);
    // The wrong program type is refused before the kernel is asked.
    let xdp = udp_port_prog(&hits, ProgType::Xdp, XDP_PASS, XDP_PASS);
    assert!(xdp.attach_socket_filter(&rx).unwrap_err().to_string().contains("needs a socket_filter program"));
}

/// A connected TCP pair on 127.0.0.1: (client, server side).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    for s in [&client, &server] {
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    (client, server)
}

#[test]
fn sk_msg_counts_messages_on_a_sockmap() {
    if !support::kernel_or_skip("sk_msg on sockmap") {
        return;
    }
    use std::io::{Read, Write};
    let size = offset("sk_msg_md", "size");
    // Before 6.10 there are no sockmap links: bpfkit falls back to BPF_PROG_ATTACH.
    let links = support::probe::kernel_has("sockmap", "sockmap links", support::probe::sockmap_links(), sockmap_link_witness);
    for path in [AttachPath::BpfLink, AttachPath::ProgAttach] {
        let hits = counts();
        let prefix = bpf_asm! {
            r6 = 1                      // SK_PASS
            r7 = *(u32 *)(r1 + {size})
            goto count
        };
        let prog = load(&with_count_tail(prefix), &[&hits], "msg_count", ProgType::SkMsg, Some(AttachType::SkMsgVerdict));
        let socks = Map::create(&MapSpec::new("socks", MapType::Sockmap, 4, 4, 2)).unwrap();
        // Sockets take the map's programs when they are added, so attach first.
        let link = prog.attach_sockmap_via(&socks, AttachType::SkMsgVerdict, path).unwrap();
        assert_eq!(link.path(), if links { path } else { AttachPath::ProgAttach }, "{path:?}");
        let (mut client, mut server) = tcp_pair();
        socks.update_fd(&0u32.to_ne_bytes(), &client, UpdateFlags::Any).unwrap();
        socks.update_fd(&1u32.to_ne_bytes(), &server, UpdateFlags::Any).unwrap();
        for i in 0..N {
            client.write_all(format!("message {i:03}").as_bytes()).unwrap();
        }
        let mut got = vec![0u8; 11 * N];
        server.read_exact(&mut got).unwrap();
        assert_eq!(read(&hits), (N as u64, 11 * N as u64), "{path:?}: one run per sendmsg, every byte");
        server.write_all(b"reply").unwrap();
        client.read_exact(&mut [0u8; 5]).unwrap();
        assert_eq!(read(&hits).0, N as u64 + 1, "{path:?}: the server side is in the map too");
        drop(link);
        // Sockets added from now on run nothing.
        let (mut c2, mut s2) = tcp_pair();
        socks.update_fd(&0u32.to_ne_bytes(), &c2, UpdateFlags::Any).unwrap();
        c2.write_all(b"after").unwrap();
        s2.read_exact(&mut [0u8; 5]).unwrap();
        assert_eq!(read(&hits).0, N as u64 + 1, "{path:?}: detached");
    }
    let hits = counts();
    let wrong = Map::create(&MapSpec::new("arr", MapType::Array, 4, 4, 1)).unwrap();
    let pass = bpf_asm! {
        r6 = 1
        r7 = 0
        goto count
    };
    let prog = load(&with_count_tail(pass), &[&hits], "msg", ProgType::SkMsg, None);
    let err = prog.attach_sockmap(&wrong, AttachType::SkMsgVerdict).unwrap_err();
    assert!(err.to_string().contains("needs a sockmap or sockhash"), "{err}");
}

#[test]
fn sk_skb_verdict_echoes_through_a_sockhash() {
    if !support::kernel_or_skip("sk_skb on sockhash") {
        return;
    }
    use std::io::{Read, Write};
    let hits = counts();
    let socks = Map::create(&MapSpec::new("socks", MapType::Sockhash, 4, 4, 2)).unwrap();
    let len = offset("__sk_buff", "len");
    // Everything the socket at key 0 receives goes back out of it (egress redirect).
    let prefix = bpf_asm! {
        r8 = r1
        r7 = *(u32 *)(r1 + {len})
        *(u32 *)(r10 - 8) = 0
        r1 = r8
        r2 = map[socks] ll
        r3 = r10
        r3 += -8
        r4 = 0
        call bpf_sk_redirect_hash
        r6 = r0
        goto count
    };
    let prog = load(&with_count_tail(prefix), &[&hits, &socks], "echo", ProgType::SkSkb, Some(AttachType::SkSkbStreamVerdict));
    let link = prog.attach_sockmap(&socks, AttachType::SkSkbStreamVerdict).unwrap();
    if support::probe::kernel_has("sockmap", "sockmap links", support::probe::sockmap_links(), sockmap_link_witness) {
        assert_eq!(link.path(), AttachPath::BpfLink);
        assert_eq!(link.info().unwrap().link_type, Some(LinkType::Sockmap));
    } else {
        // Before 6.10: BPF_PROG_ATTACH to the map.
        assert_eq!(link.path(), AttachPath::ProgAttach, "{}", link.describe());
    }
    let (mut client, mut server) = tcp_pair();
    socks.update_fd(&0u32.to_ne_bytes(), &server, UpdateFlags::Any).unwrap();
    for i in 0..N {
        let msg = format!("ping {i:03}");
        client.write_all(msg.as_bytes()).unwrap();
        let mut echo = [0u8; 8];
        client.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, msg.as_bytes());
    }
    assert_eq!(read(&hits), (N as u64, 8 * N as u64), "one verdict per message, every byte");
    server.set_nonblocking(true).unwrap();
    assert!(server.read(&mut [0u8; 16]).is_err(), "redirected away: nothing reached the server's reader");
}

#[test]
fn sk_lookup_steers_a_port_to_a_sockmap_socket() {
    if !support::kernel_or_skip("sk_lookup") {
        return;
    }
    const STEERED: u16 = 7777;
    let hits = counts();
    let socks = Map::create(&MapSpec::new("socks", MapType::Sockmap, 4, 8, 1)).unwrap();
    let local_port = offset("bpf_sk_lookup", "local_port");
    let prefix = bpf_asm! {
        r6 = 1                          // SK_PASS
        r8 = r1
        r2 = *(u32 *)(r1 + {local_port})
        if r2 != {STEERED as i32} goto done
        *(u32 *)(r10 - 8) = 0
        r1 = map[socks] ll
        r2 = r10
        r2 += -8
        call bpf_map_lookup_elem
        if r0 == 0 goto done
        r9 = r0
        r1 = r8
        r2 = r9
        r3 = 0
        call bpf_sk_assign
        r1 = r9
        call bpf_sk_release
        r7 = 0
        goto count
    };
    let prog = load(&with_count_tail(prefix), &[&hits, &socks], "steer", ProgType::SkLookup, Some(AttachType::SkLookup));
    let ns = NetNs::new().unwrap();
    ns.run(|| {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        socks.update_fd(&0u32.to_ne_bytes(), &server, UpdateFlags::Any).unwrap();
        let steered: SocketAddr = (Ipv4Addr::LOCALHOST, STEERED).into();
        assert!(TcpStream::connect(steered).is_err(), "nothing listens on {STEERED}");
        let link = prog.attach_netns(&ns, AttachType::SkLookup).unwrap();
        assert_eq!(link.info().unwrap().link_type, Some(LinkType::Netns));
        for _ in 0..N {
            let _client = TcpStream::connect(steered).unwrap();
            let (conn, _) = server.accept().unwrap();
            assert_eq!(conn.local_addr().unwrap(), steered, "the server's socket took a connection for {STEERED}");
        }
        assert_eq!(read(&hits).0, N as u64);
        drop(link);
        assert!(TcpStream::connect(steered).is_err(), "detached: refused again");
    })
    .unwrap();
}

#[test]
fn netfilter_local_in_counts_and_drops_exactly() {
    if !support::kernel_or_skip("netfilter link") {
        return;
    }
    let probe = bpfkit::features::Features::global().prog_type(ProgType::Netfilter);
    if !support::probe::kernel_has("netfilter link", "netfilter programs", probe, || support::witness::libbpf_prog_type(ProgType::Netfilter.raw())) {
        return;
    }
    let (skb, len) = (offset("bpf_nf_ctx", "skb"), offset("sk_buff", "len"));
    let ns = NetNs::new().unwrap();
    for verdict in [1, 0] {
        let hits = counts();
        // Our datagrams are the only 65-byte IPv4 packets (20 + 8 + 37) in the namespace.
        let prefix = bpf_asm! {
            r6 = 1                        // NF_ACCEPT
            r2 = *(u64 *)(r1 + {skb})
            r7 = *(u32 *)(r2 + {len})
            if r7 != 65 goto done
            r6 = {verdict}
            goto count
        };
        let prog = load(&with_count_tail(prefix), &[&hits], "nf_count", ProgType::Netfilter, Some(AttachType::Netfilter));
        ns.run(|| {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let link = prog.attach_netfilter(NetfilterHook::new(NfFamily::Ipv4, NfHook::LocalIn, -128)).unwrap();
            assert_eq!(link.info().unwrap().link_type, Some(LinkType::Netfilter));
            for _ in 0..N {
                tx.send_to(&[7u8; 37], rx.local_addr().unwrap()).unwrap();
            }
            assert_eq!(settle(&hits, N as u64), (N as u64, 65 * N as u64), "verdict {verdict}");
            assert_eq!(received(&rx, if verdict == 1 { N } else { 0 }), if verdict == 1 { N } else { 0 }, "verdict {verdict}");
            drop(link);
            tx.send_to(&[7u8; 37], rx.local_addr().unwrap()).unwrap();
            assert_eq!(received(&rx, 1), 1);
            assert_eq!(read(&hits).0, N as u64, "detached");
            let bad = prog.attach_netfilter(NetfilterHook::new(NfFamily::Ipv4, NfHook::LocalIn, i32::MIN)).unwrap_err();
            assert!(bad.to_string().contains("netfilter Ipv4 LocalIn priority -2147483648"), "{bad}");
        })
        .unwrap();
    }
}

#[test]
fn flow_dissector_link_runs_in_the_test_netns() {
    if !support::kernel_or_skip("flow dissector") {
        return;
    }
    let net = Veth::new();
    let (tx, rx) = net.udp();
    let hits = counts();
    let (data, data_end, flow_keys) = (offset("__sk_buff", "data"), offset("__sk_buff", "data_end"), offset("__sk_buff", "flow_keys"));
    let nhoff = offset("bpf_flow_keys", "nhoff");
    let port = PORT.to_be() as i32;
    // Count IPv4 UDP packets to PORT, then let the kernel's own dissector do the work
    // (BPF_FLOW_DISSECTOR_CONTINUE).
    let prefix = bpf_asm! {
        r6 = 129
        r2 = *(u32 *)(r1 + {data})
        r3 = *(u32 *)(r1 + {data_end})
        r4 = *(u64 *)(r1 + {flow_keys})
        r5 = *(u16 *)(r4 + {nhoff})
        r5 &= 0xff                  // bounded, so the verifier can range-check the packet
        r2 += r5
        r4 = r2
        r4 += 24
        if r4 > r3 goto done
        r4 = *(u8 *)(r2 + 9)
        if r4 != 17 goto done
        r4 = *(u16 *)(r2 + 22)
        if r4 != {port} goto done
        r7 = 0
        goto count
    };
    let dissector = load(&with_count_tail(prefix), &[&hits], "dissect", ProgType::FlowDissector, Some(AttachType::FlowDissector));
    // Receiving a datagram needs no flow hash; a tc program asking for a fresh one makes the
    // kernel dissect each packet exactly once.
    let rehash = bpf_asm! {
        r6 = r1
        call bpf_set_hash_invalid
        r1 = r6
        call bpf_get_hash_recalc
        r0 = 0
        exit
    }
    .assemble()
    .unwrap();
    let rehash = load(&rehash, &[], "rehash", ProgType::SchedCls, None);
    let link = dissector.attach_netns(&net.b, AttachType::FlowDissector).unwrap();
    if let Some(shown) = tool_in(&net.b, "bpftool", &["net", "show"]) {
        let id = dissector.info().unwrap().id;
        assert!(shown.contains("flow_dissector:") && shown.contains(&format!("id {id}")), "{shown}");
    }
    let trigger = net.b.run(|| rehash.attach_tc(net.ifb, TcDirection::Ingress)).unwrap().unwrap();
    send(&tx, N);
    assert_eq!(received(&rx, N), N);
    assert_eq!(settle(&hits, N as u64).0, N as u64);
    drop(link);
    send(&tx, N);
    assert_eq!(received(&rx, N), N);
    assert_eq!(read(&hits).0, N as u64, "detached");
    drop(trigger);
    // Only sk_lookup and flow dissector programs attach to a namespace.
    let err = rehash.attach_netns(&net.b, AttachType::FlowDissector).unwrap_err();
    assert!(err.to_string().contains("needs a flow_dissector program"), "{err}");
}

/// A child cgroup v2 for the test, removed on drop.
/// A child process, killed and reaped on drop.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cgroup_skb_ingress_and_egress_count_a_child_process_packets() {
    if !support::kernel_or_skip("cgroup skb") {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = server.local_addr().unwrap().port();
    let (remote_port, len) = (offset("__sk_buff", "remote_port"), offset("__sk_buff", "len"));
    // Packets of sockets whose peer is `port` (held in network byte order in a u32).
    let peer = (port as u32).to_be() as i32;
    let prog_for = |counts: &Map, attach: AttachType| {
        let prefix = bpf_asm! {
            r6 = 1
            r2 = *(u32 *)(r1 + {remote_port})
            if w2 != {peer} goto done     // 32-bit compare: the immediate is not sign-extended
            r7 = *(u32 *)(r1 + {len})
            goto count
        };
        load(&with_count_tail(prefix), &[counts], "cg_skb", ProgType::CgroupSkb, Some(attach))
    };
    let (ins, outs) = (counts(), counts());
    let (ingress, egress) = (prog_for(&ins, AttachType::CgroupInetIngress), prog_for(&outs, AttachType::CgroupInetEgress));
    let cg = ChildCgroup::new("skb");
    let l_in = ingress.attach_cgroup(cg.open(), AttachType::CgroupInetIngress).unwrap();
    let l_out = egress.attach_cgroup(cg.open(), AttachType::CgroupInetEgress).unwrap();
    // The child sends N one-byte datagrams from a connected socket, then idles holding it.
    let child = Reaped(
        cg.bash(&format!("exec 3<>/dev/udp/127.0.0.1/{port} && for i in {{1..{N}}}; do printf x >&3; done && exec sleep 30")).spawn().unwrap(),
    );
    let mut from = None;
    for _ in 0..N {
        let (n, addr) = server.recv_from(&mut [0u8; 16]).unwrap();
        assert_eq!(n, 1);
        from = Some(addr);
    }
    let child_addr = from.unwrap();
    const M: usize = 25;
    for _ in 0..M {
        server.send_to(b"yy", child_addr).unwrap();
    }
    assert_eq!(settle(&outs, N as u64), (N as u64, (N * 29) as u64), "egress: IPv4 20 + UDP 8 + 1");
    assert_eq!(settle(&ins, M as u64), (M as u64, (M * 30) as u64), "ingress: IPv4 20 + UDP 8 + 2");
    drop(child);
    drop((l_in, l_out));
}

#[test]
fn cgroup_sock_create_refuses_udp_sockets() {
    if !support::kernel_or_skip("cgroup sock_create") {
        return;
    }
    let hits = counts();
    let (family, ty) = (offset("bpf_sock", "family"), offset("bpf_sock", "type"));
    let prefix = bpf_asm! {
        r6 = 1
        r2 = *(u32 *)(r1 + {family})
        if r2 != 2 goto done              // AF_INET
        r2 = *(u32 *)(r1 + {ty})
        if r2 != 2 goto done              // SOCK_DGRAM
        r6 = 0
        r7 = 0
        goto count
    };
    let prog = load(&with_count_tail(prefix), &[&hits], "no_udp", ProgType::CgroupSock, Some(AttachType::CgroupInetSockCreate));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = listener.local_addr().unwrap().port();
    let cg = ChildCgroup::new("sock");
    let link = prog.attach_cgroup(cg.open(), AttachType::CgroupInetSockCreate).unwrap();
    let script = format!(
        "for i in {{1..{N}}}; do (exec 3<>/dev/udp/127.0.0.1/9) 2>/dev/null && echo made || echo refused; done; \
         (exec 3<>/dev/tcp/127.0.0.1/{tcp}) && echo tcp"
    );
    let out = cg.bash(&script).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, format!("{}tcp\n", "refused\n".repeat(N)), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(read(&hits).0, N as u64);
    drop(link);
    let out = cg.bash("(exec 3<>/dev/udp/127.0.0.1/9) && echo made").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "made\n");
}

#[test]
fn cgroup_sysctl_denies_writes_and_allows_reads() {
    if !support::kernel_or_skip("cgroup sysctl") {
        return;
    }
    let hits = counts();
    let write = offset("bpf_sysctl", "write");
    // For net/ipv4/ip_default_ttl: count every access, writes in the byte column, and deny writes.
    let prefix = bpf_asm! {
        r6 = 1
        r8 = r1
        r2 = r10
        r2 += -24
        r3 = 16
        r4 = 1                            // BPF_F_SYSCTL_BASE_NAME
        call bpf_sysctl_get_name
        if r0 != 14 goto done
        r1 = *(u64 *)(r10 - 24)
        r2 = 0x75616665645f7069 ll        // "ip_defau"
        if r1 != r2 goto done
        r7 = *(u32 *)(r8 + {write})
        if r7 == 0 goto count
        r6 = 0
        goto count
    };
    let prog = load(&with_count_tail(prefix), &[&hits], "ro_ttl", ProgType::CgroupSysctl, Some(AttachType::CgroupSysctl));
    let cg = ChildCgroup::new("sysctl");
    let link = prog.attach_cgroup(cg.open(), AttachType::CgroupSysctl).unwrap();
    // The shell runs in a namespace of its own, so even a write let through changes nothing
    // outside the test (and it writes the value already there).
    let ns = NetNs::new().unwrap();
    let file = "/proc/sys/net/ipv4/ip_default_ttl";
    let script = format!("cat {file}; for i in {{1..{N}}}; do (echo 64 > {file}) 2>/dev/null && echo written || echo denied; done");
    let out = ns.run(|| cg.bash(&script).output().unwrap()).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("64\n{}", "denied\n".repeat(N)));
    let (accesses, writes) = read(&hits);
    assert_eq!(writes, N as u64, "one run per write(2)");
    assert!(accesses > writes, "cat's reads ran the program too: {accesses}");
    drop(link);
    let out = ns.run(|| cg.bash(&format!("echo 64 > {file} && echo written")).output().unwrap()).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "written\n");
}

/// The independent witness for sockmap links: the kernel's own `enum bpf_link_type`.
fn sockmap_link_witness() -> support::Witness {
    support::witness::kernel_enum_has("bpf_link_type", "BPF_LINK_TYPE_SOCKMAP")
}

#[test]
fn root_qdiscs_are_added_listed_and_removed() {
    if !support::kernel_or_skip("root qdiscs") {
        return;
    }
    use bpfkit::net::Netlink;
    let net = Veth::with_ipv6(false);
    net.b
        .run(|| {
            let nl = Netlink::open().unwrap();
            let root = |nl: &Netlink| nl.qdiscs(net.ifb).unwrap().into_iter().filter(|(parent, _)| *parent == u32::MAX).map(|(_, k)| k).collect::<Vec<_>>();
            // pfifo is built into every kernel with traffic control.
            nl.add_root_qdisc(net.ifb, "pfifo").unwrap();
            assert_eq!(root(&nl), ["pfifo"]);
            if let Some(shown) = tool_in(&net.b, "tc", &["qdisc", "show", "dev", "vb", "root"]) {
                assert!(shown.contains("qdisc pfifo"), "{shown}");
            }
            let again = nl.add_root_qdisc(net.ifb, "pfifo").unwrap_err();
            assert_eq!(again.errno(), Some(libc::EEXIST), "{again}");
            nl.del_root_qdisc(net.ifb).unwrap();
            assert!(!root(&nl).contains(&"pfifo".to_string()), "{:?}", root(&nl));
            let unknown = nl.add_root_qdisc(net.ifb, "no_such_qdisc").unwrap_err();
            assert_eq!(unknown.errno(), Some(libc::ENOENT), "{unknown}");
            assert!(unknown.to_string().contains("RTM_NEWQDISC no_such_qdisc root"), "{unknown}");
            // fq (EDT pacing) is a build option: present, or refused the same way; tc agrees.
            match nl.add_root_qdisc(net.ifb, "fq") {
                Ok(()) => {
                    assert_eq!(root(&nl), ["fq"]);
                    nl.del_root_qdisc(net.ifb).unwrap();
                }
                Err(e) => {
                    assert_eq!(e.errno(), Some(libc::ENOENT), "{e}");
                    let witness = match tool_in(&net.b, "tc", &["qdisc", "add", "dev", "vb", "root", "fq"]) {
                        Some(out) if out.contains("unknown") || out.contains("No such file") => support::Witness::Confirms(format!("tc qdisc add … fq: {}", out.trim())),
                        Some(out) => support::Witness::Contradicts(format!("tc qdisc add … fq said {:?}", out.trim())),
                        None => support::Witness::Absent("tc is not installed".into()),
                    };
                    support::kernel_lacks("root_qdiscs_are_added_listed_and_removed", "the fq qdisc", &e.to_string(), witness);
                }
            }
        })
        .unwrap();
}
