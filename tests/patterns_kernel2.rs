//! Instruction patterns' other branches, in the kernel: probe reads of kernel and user memory
//! (bytes and strings, failing reads, bounds), a map lookup's miss, a full ring buffer, a time
//! delta without a start, cgroup_skb verdicts from BTF dropping and passing a child process's
//! packets, and the TCP/UDP checksum against one computed here. Each test asserts what the
//! kernel did, with exact values.

mod support;

use support::patterns::*;

use std::net::UdpSocket;
use std::time::Duration;

use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::*;
use bpfkit::insn::{self, add64, call_helper_named, exit, ld_imm64, mov64, st, stx, Reg, Size};
use bpfkit::maps::{Map, MapType, UpdateFlags};
use bpfkit::prog::{AttachType, LoadOptions, ProgType};
use bpfkit::os;
use support::cgroup::ChildCgroup;

const EFAULT: i64 = 14;
const ERANGE: i64 = 34;

// ---- probe reads: kernel and user memory, bytes and strings ----

/// One probe read into a 32-byte buffer prefilled with 0xab, then `out[key]` = (r0, buffer).
/// The source pointer is computed into r7 by `src` (r6 holds the current task).
fn probe_case(p: &mut insn::Program, key: i32, src: insn::Program, read: insn::Program) {
    for off in (-40..-8).step_by(4) {
        p.push(st(Size::W, Reg::R10, off, 0xabab_abab_u32 as i32));
    }
    p.extend(src);
    p.extend(read);
    p.push(stx(Size::DW, Reg::R10, -48, Reg::R0));
    store_out(p, "out", -52, key, -48);
}

/// `(r0 as i64, the 32-byte buffer)` of case `key`.
fn probe_result(out: &Map, key: u32) -> (i64, Vec<u8>) {
    let v = get(out, key).unwrap_or_else(|| panic!("case {key} did not run"));
    (i64::from_ne_bytes(v[..8].try_into().unwrap()), v[8..40].to_vec())
}

fn marker(n: usize) -> Vec<u8> {
    vec![0xab; n]
}

/// A string read of at most `max` bytes returned `want` (with its NUL): its length, the bytes,
/// nothing but zeroes after the NUL (the user copy writes whole words, masked past the NUL),
/// and nothing at all from `max` on.
fn assert_str(case: &str, (ret, buf): &(i64, Vec<u8>), want: &[u8], max: usize) {
    assert_eq!(*ret, want.len() as i64, "{case}: the length with the NUL");
    assert_eq!(&buf[..want.len()], want, "{case}");
    assert!(buf[want.len()..max].iter().all(|b| *b == 0 || *b == 0xab), "{case}: junk after the NUL: {buf:?}");
    assert_eq!(buf[max..], marker(32 - max), "{case}: written past the bound");
}

#[test]
fn probe_reads_copy_kernel_and_user_memory_within_their_bounds_and_fail_on_bad_addresses() {
    if !support::kernel_or_skip("probe read patterns") {
        return;
    }
    // Known user memory in this process: 32 bytes and a C string, both resident (just written).
    let bytes: Box<[u8; 32]> = Box::new(std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a));
    let cstr = std::ffi::CString::new("bpfkit reads this user string").unwrap();
    let (bytes_at, cstr_at) = (bytes.as_ptr() as u64, cstr.as_ptr() as u64);
    let out = map("out", MapType::Array, 4, 40, 16);
    // r7 = task + the field's offset, from the running kernel's BTF (CO-RE).
    let task_field = |field: &str| -> insn::Program {
        match field {
            "tgid" => bpf_asm! {
                core_field_offset(r7, "task_struct", "tgid")
                r7 += r6
            },
            _ => bpf_asm! {
                core_field_offset(r7, "task_struct", "comm")
                r7 += r6
            },
        }
    };
    let at = |addr: u64| -> insn::Program {
        let mut p = insn::Program::new();
        p.push(ld_imm64(Reg::R7, addr));
        p
    };
    use Space::{Kernel, User};
    let mut body = insn::Program::new();
    body.push(call_helper_named("bpf_get_current_task").unwrap()).push(mov64(Reg::R6, Reg::R0));
    let cases: Vec<(insn::Program, insn::Program)> = vec![
        // 0: the task's tgid, 4 bytes; 1: its comm, 16 bytes.
        (task_field("tgid"), probe_read(Kernel, -40, 4, Reg::R7).unwrap()),
        (task_field("comm"), probe_read(Kernel, -40, 16, Reg::R7).unwrap()),
        // 2: comm as a string, up to 32 bytes; 3: at most 4 bytes (3 characters and the NUL).
        (task_field("comm"), probe_read_str(Kernel, -40, 32, Reg::R7).unwrap()),
        (task_field("comm"), probe_read_str(Kernel, -40, 4, Reg::R7).unwrap()),
        // 4, 5: a kernel read of a user address, bytes and string: refused.
        (at(8), probe_read(Kernel, -40, 16, Reg::R7).unwrap()),
        (at(8), probe_read_str(Kernel, -40, 16, Reg::R7).unwrap()),
        // 6: 24 of the user bytes; 7: the user string; 8: the string bounded to 7 bytes.
        (at(bytes_at), probe_read(User, -40, 24, Reg::R7).unwrap()),
        (at(cstr_at), probe_read_str(User, -40, 32, Reg::R7).unwrap()),
        (at(cstr_at), probe_read_str(User, -40, 7, Reg::R7).unwrap()),
        // 9, 10: user reads of an unmapped user address.
        (at(8), probe_read(User, -40, 16, Reg::R7).unwrap()),
        (at(8), probe_read_str(User, -40, 16, Reg::R7).unwrap()),
    ];
    let n = cases.len();
    for (key, (src, read)) in cases.into_iter().enumerate() {
        probe_case(&mut body, key as i32, src, read);
    }
    let prog = load("probe_reads", ProgType::Tracepoint, &on_this_thread(body), &[&out]);
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    getpid_n(1);
    drop(link);

    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let comm = comm.trim_end().as_bytes();
    assert!(comm.len() >= 4, "the thread's comm {comm:?} is long enough for the bounded read");
    let mut comm16 = comm.to_vec();
    comm16.resize(16, 0);
    let r: Vec<(i64, Vec<u8>)> = (0..n as u32).map(|k| probe_result(&out, k)).collect();

    assert_eq!(r[0], (0, [std::process::id().to_ne_bytes().to_vec(), marker(28)].concat()), "tgid");
    assert_eq!(r[1], (0, [comm16.clone(), marker(16)].concat()), "comm bytes");
    assert_str("comm string", &r[2], &comm16[..comm.len() + 1], 32);
    assert_str("comm string bounded to 4 bytes", &r[3], &[&comm[..3], &[0][..]].concat(), 4);
    for (k, cut) in [(4, 16), (5, 16)] {
        let (ret, buf) = &r[k];
        assert!(*ret == -EFAULT || *ret == -ERANGE, "case {k}: a kernel read of a user address returned {ret}");
        assert_eq!(*buf, [vec![0; cut], marker(32 - cut)].concat(), "case {k}: the bound zero-filled, the rest untouched");
    }
    println!("probe reads: a kernel read of a user address returned {} (bytes), {} (string)", r[4].0, r[5].0);
    assert_eq!(r[6], (0, [&bytes[..24], &marker(8)[..]].concat()), "user bytes");
    let s = cstr.as_bytes_with_nul();
    assert_str("user string", &r[7], s, 32);
    assert_str("user string bounded to 7 bytes", &r[8], &[&s[..6], &[0][..]].concat(), 7);
    for k in [9, 10] {
        assert_eq!(r[k], (-EFAULT, [vec![0; 16], marker(16)].concat()), "case {k}: an unmapped user address");
    }
}

// ---- the other branches: a lookup's miss, a full ring, a delta without a start ----

#[test]
fn map_lookup_takes_the_miss_branch_exactly_while_the_key_is_absent() {
    if !support::kernel_or_skip("map_lookup miss") {
        return;
    }
    let values = map("values", MapType::Hash, 4, 8, 4);
    let counts = map("counts", MapType::Hash, 4, 8, 4);
    // Hit: r0 = the value's low 32 bits. Miss: counts[9] += 1, r0 = 7777.
    let mut p = insn::Program::new();
    p.push(st(Size::W, Reg::R10, -24, 42));
    p.extend(map_lookup("values", -24, "miss").unwrap());
    p.push(insn::ldx(Size::W, Reg::R0, Reg::R0, 0)).push(exit());
    p.label("miss");
    count_key(&mut p, "counts", 9);
    ret(&mut p, 7777);
    let prog = load("lookup_miss", ProgType::Xdp, &p, &[&values, &counts]);
    assert_eq!(run(&prog, &PKT, 300), 7777, "absent: the miss branch");
    assert_eq!(get_u64(&counts, 9), 300, "the miss branch ran once per run");
    values.update(&42u32.to_ne_bytes(), &1234u64.to_ne_bytes(), UpdateFlags::Any).unwrap();
    assert_eq!(run(&prog, &PKT, 300), 1234, "present: the value");
    assert_eq!(get_u64(&counts, 9), 300, "no miss while the key is present");
    values.delete(&42u32.to_ne_bytes()).unwrap();
    assert_eq!(run(&prog, &PKT, 5), 7777);
    assert_eq!(get_u64(&counts, 9), 305);
}

#[test]
fn ringbuf_reserve_takes_the_full_branch_exactly_when_the_ring_has_no_room() {
    if !support::kernel_or_skip("ringbuf full") {
        return;
    }
    // A 4096-byte ring holds four 1000-byte records (1008 with their headers), not five.
    const SIZE: u32 = 1000;
    let events = map("events", MapType::RingBuf, 0, 0, 4096);
    let counts = map("counts", MapType::Hash, 4, 8, 4);
    let mut p = ringbuf_reserve("events", SIZE, Reg::R6, "full").unwrap();
    p.push(st(Size::DW, Reg::R10, -32, 0x600d));
    p.extend(ringbuf_fill_from_stack(Reg::R6, -32, 8).unwrap());
    p.extend(ringbuf_submit(Reg::R6).unwrap());
    count_key(&mut p, "counts", 0);
    ret(&mut p, 1);
    p.label("full");
    count_key(&mut p, "counts", 1);
    ret(&mut p, 2);
    let prog = load("rb_full", ProgType::Xdp, &p, &[&events, &counts]);
    let outcomes: Vec<u32> = (0..10).map(|_| run(&prog, &PKT, 1)).collect();
    assert_eq!(outcomes, [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]);
    assert_eq!((get_u64(&counts, 0), get_u64(&counts, 1)), (4, 6), "submitted, full");
    let mut ring = RingBuf::new(&events).unwrap();
    let records = ring.read_all();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.len() == SIZE as usize && r[..8] == 0x600du64.to_ne_bytes()));
    // Consumed: room again, for four more.
    let outcomes: Vec<u32> = (0..5).map(|_| run(&prog, &PKT, 1)).collect();
    assert_eq!(outcomes, [1, 1, 1, 1, 2]);
    assert_eq!((get_u64(&counts, 0), get_u64(&counts, 1)), (8, 7));
}

#[test]
fn timestamp_delta_takes_the_missing_branch_without_a_stored_start() {
    if !support::kernel_or_skip("timestamp_delta missing") {
        return;
    }
    let start = map("start", MapType::Hash, 4, 8, 16);
    let deltas = map("deltas", MapType::Array, 4, 8, 1);
    let counts = map("counts", MapType::Hash, 4, 8, 4);
    // sys_exit_getpid only: nothing ever stored a start for this thread.
    let mut body = timestamp_delta("start", -4, Reg::R7, "missing").unwrap();
    body.push(stx(Size::DW, Reg::R10, -24, Reg::R7));
    store_out(&mut body, "deltas", -28, 0, -24);
    count_key(&mut body, "counts", 0);
    body.push(insn::ja("out"));
    body.label("missing");
    count_key(&mut body, "counts", 1);
    let prog = load("tp_no_start", ProgType::Tracepoint, &on_this_thread(body), &[&start, &deltas, &counts]);
    let link = prog.attach_tracepoint("syscalls", "sys_exit_getpid").unwrap();
    getpid_n(40);
    drop(link);
    assert_eq!((get_u64(&counts, 0), get_u64(&counts, 1)), (0, 40), "deltas, missing starts");
    assert_eq!(get_u64(&deltas, 0), 0, "no delta was written");
    // With a start stored for this thread the delta path runs once and deletes it.
    let tid = os::gettid() as u32;
    start.update(&tid.to_ne_bytes(), &1u64.to_ne_bytes(), UpdateFlags::Any).unwrap();
    let link = prog.attach_tracepoint("syscalls", "sys_exit_getpid").unwrap();
    getpid_n(3);
    drop(link);
    assert_eq!((get_u64(&counts, 0), get_u64(&counts, 1)), (1, 42));
    assert!(get_u64(&deltas, 0) > 1, "now - 1 ns");
    assert!(get(&start, tid).is_none());
}

// ---- cgroup verdicts from BTF ----

#[test]
fn cgroup_skb_verdicts_from_btf_drop_and_pass_a_child_processs_packets() {
    if !support::kernel_or_skip("cgroup_skb verdicts") {
        return;
    }
    if !std::path::Path::new(support::cgroup::CGROUP2).join("cgroup.procs").exists() {
        support::skip(&format!("cgroup_skb verdicts: no cgroup v2 at {}", support::cgroup::CGROUP2));
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let cg = ChildCgroup::new("verdict");
    for verdict in ["SK_DROP", "SK_PASS"] {
        let code = return_code(ProgType::CgroupSkb, verdict).unwrap();
        // counts[0] += 1 for every packet the cgroup sends, then the verdict.
        let counts = map("counts", MapType::Hash, 4, 8, 4);
        let mut p = insn::Program::new();
        count_key(&mut p, "counts", 0);
        ret(&mut p, code);
        let opts = LoadOptions::new("cg_verdict", ProgType::CgroupSkb).expected_attach_type(AttachType::CgroupInetEgress);
        let prog = load_as(verdict, &p, &[&counts], opts);
        let link = prog.attach_cgroup(cg.open(), AttachType::CgroupInetEgress).unwrap();
        // A process in the cgroup sends one datagram from a connected socket.
        let out = cg.bash(&format!("exec 3<>/dev/udp/127.0.0.1/{port} && printf {verdict} >&3")).output().unwrap();
        drop(link);
        let stderr = String::from_utf8_lossy(&out.stderr);
        server.set_read_timeout(Some(Duration::from_millis(if verdict == "SK_DROP" { 300 } else { 5000 }))).unwrap();
        let mut buf = [0u8; 16];
        let received = server.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec());
        assert_eq!(get_u64(&counts, 0), 1, "{verdict}: the program saw the one datagram");
        if verdict == "SK_DROP" {
            assert!(!out.status.success(), "{verdict}: the send failed");
            assert!(stderr.contains("Operation not permitted"), "{verdict}: EPERM for a dropped egress packet: {stderr}");
            assert!(received.is_err(), "{verdict}: nothing arrived, got {received:?}");
        } else {
            assert!(out.status.success(), "{verdict}: {stderr}");
            assert_eq!(received.unwrap(), b"SK_PASS", "{verdict}: the datagram arrived");
        }
    }
}

// ---- the TCP/UDP checksum ----

/// RFC 1071 one's-complement checksum, as a number.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u64 = b.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4 (`ihl` words, addresses 192.0.2.1 → 198.51.100.7) + a TCP or UDP segment
/// with `payload` bytes, its checksum field zero; returns (packet, where the field is, the
/// checksum computed here over pseudo-header + segment).
fn l4_packet(proto: u8, ihl: u8, payload: usize) -> (Vec<u8>, usize, u16) {
    let mut seg = Vec::new();
    seg.extend(40000u16.to_be_bytes());
    seg.extend(443u16.to_be_bytes());
    let field = if proto == 6 {
        seg.extend([0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        16
    } else {
        seg.extend(((8 + payload) as u16).to_be_bytes());
        seg.extend([0, 0]);
        6
    };
    seg.extend((0..payload).map(|i| (i as u8).wrapping_mul(151).wrapping_add(7)));
    let hlen = ihl as usize * 4;
    let mut ip = vec![0u8; hlen];
    ip[0] = 0x40 | ihl;
    ip[2..4].copy_from_slice(&((hlen + seg.len()) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
    ip[16..20].copy_from_slice(&[198, 51, 100, 7]);
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend([0, proto]);
    pseudo.extend((seg.len() as u16).to_be_bytes());
    pseudo.extend(&seg);
    let want = checksum(&pseudo);
    let mut pkt = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00];
    pkt.extend(ip);
    let at = pkt.len() + field;
    pkt.extend(seg);
    (pkt, at, want)
}

const BAD: u32 = 0x10000;
const REJECT: u32 = 0x20000;

#[test]
fn l4_checksum_equals_the_one_computed_here_for_tcp_and_udp() {
    if !support::kernel_or_skip("l4 checksum") {
        return;
    }
    // parse_ports finds the L4 header (r4, r3 = data_end); IPv4 only; then the checksum.
    let mut p = parse_ports(PacketCtx::Xdp, Reg::R1, -16, "reject").unwrap();
    p.push(insn::ldx(Size::H, Reg::R5, Reg::R10, -16 + PacketInfo::ETHERTYPE));
    p.push(insn::jmp_if(insn::JmpCond::Ne, Reg::R5, 0x0800, "reject"));
    p.push(mov64(Reg::R6, Reg::R2)).push(add64(Reg::R6, 14));
    p.push(mov64(Reg::R7, Reg::R4)).push(mov64(Reg::R8, Reg::R3));
    p.extend(ipv4_l4_checksum(Reg::R6, Reg::R7, Reg::R8, L4_CHECKSUM_MAX_LEN, "bad").unwrap());
    p.push(exit());
    p.label("bad");
    ret(&mut p, BAD as i32);
    p.label("reject");
    ret(&mut p, REJECT as i32);
    let prog = load("l4_csum", ProgType::Xdp, &p, &[]);
    let mut checked = 0;
    for (proto, ihl, payload) in [(6u8, 5u8, 0usize), (6, 5, 1), (6, 5, 7), (6, 7, 100), (6, 5, 1001), (6, 5, 1460), (17, 5, 0), (17, 5, 3), (17, 6, 512), (17, 5, 1472)] {
        let (mut pkt, at, want) = l4_packet(proto, ihl, payload);
        let case = format!("proto {proto}, ihl {ihl}, {payload} bytes");
        // The field zeroed: r0 is the checksum, in memory order.
        let got = run(&prog, &pkt, 1);
        assert!(got <= 0xffff, "{case}: {got:#x}");
        assert_eq!((got as u16).to_ne_bytes(), want.to_be_bytes(), "{case}");
        // The checksum in place: a correct segment sums to 0 …
        pkt[at..at + 2].copy_from_slice(&want.to_be_bytes());
        assert_eq!(run(&prog, &pkt, 1), 0, "{case}: with its checksum");
        // … and Ethernet padding past the IPv4 total length is not summed.
        let mut padded = pkt.clone();
        padded.extend([0xee; 9]);
        assert_eq!(run(&prog, &padded, 1), 0, "{case}: padded");
        // A flipped bit anywhere in the segment or the addresses is caught.
        for flip in [14 + 12, 14 + 19, pkt.len() - 1] {
            let mut bad = pkt.clone();
            bad[flip] ^= 0x04;
            assert_ne!(run(&prog, &bad, 1), 0, "{case}: bit flipped at {flip}");
        }
        // Cut short of the total length: the bounds check (or, cut into the L4 header, the parser).
        assert_eq!(run(&prog, &pkt[..pkt.len() - 1], 1), if payload == 0 { REJECT } else { BAD }, "{case}: truncated");
        checked += 1;
    }
    // A total length shorter than the header, and a segment over the bound.
    let (mut short, _, _) = l4_packet(17, 5, 8);
    short[16..18].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(run(&prog, &short, 1), BAD, "total length below the header");
    let (long, _, _) = l4_packet(17, 5, L4_CHECKSUM_MAX_LEN as usize - 8 + 1);
    assert_eq!(run(&prog, &long, 1), BAD, "a segment over max_len");
    println!("l4 checksum: {checked} TCP/UDP packets agree with RFC 1071 computed here");
}
