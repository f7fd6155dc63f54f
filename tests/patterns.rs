//! Instruction patterns (`bpfkit::helpers::patterns`) loaded into the kernel: every pattern runs
//! inside a program that exercises it, and each test asserts its effect with exact values —
//! through PROG_TEST_RUN, or through tracepoints fired by this thread's own syscalls.

mod support;

use support::patterns::*;

use std::time::Instant;

use bpfkit::bpf_asm;
use bpfkit::core_btf::{BtfBuilder, IntEncoding, LoadedBtf, Member};
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::*;
use bpfkit::insn::{self, exit, jmp_if, mov64, st, stx, JmpCond, Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use bpfkit::prog::{ProgType, Program, TestRun};
use bpfkit::os;

// ---- shared preambles ----

fn xdp(name: &str) -> i32 {
    xdp_action(name).unwrap()
}

/// `*(u32 *)(r10 + off) = key`.
fn key_at(p: &mut insn::Program, off: i16, key: i32) {
    p.push(st(Size::W, Reg::R10, off, key));
}

/// The map the counting tests count in: `counts`, a hash of `u32` → `u64`.
fn counts_map() -> Map {
    map("counts", MapType::Hash, 4, 8, 16)
}

/// The first id on the `Uid:`/`Gid:` line of /proc/self/status (the real id).
fn proc_status_id(field: &str) -> u32 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

// ---- maps: lookup, counters, spin locks ----

#[test]
fn counter_counts_exactly_n_test_runs_built_with_bpf_asm() {
    if !support::kernel_or_skip("counter pattern") {
        return;
    }
    let counts = counts_map();
    let pass = xdp("XDP_PASS");
    // Two instances of the pattern and the user's own labels in one `bpf_asm!`.
    let p = bpf_asm! {
        *(u32 *)(r10 - 8) = 7
        {counter_increment("counts", -8, -16).unwrap()}
        *(u32 *)(r10 - 8) = 8
        {counter_add("counts", -8, -16, 3).unwrap()}
        {map_lookup("counts", -8, "miss").unwrap()}
        r0 = {pass}
        exit
    miss:
        r0 = 0
        exit
    };
    let prog = load("counter", ProgType::Xdp, &p, &[&counts]);
    assert!(get(&counts, 7).is_none(), "created by the first run");
    assert_eq!(run(&prog, &PKT, 1000), pass as u32);
    assert_eq!(get_u64(&counts, 7), 1000);
    assert_eq!(get_u64(&counts, 8), 3000);
    assert_eq!(run(&prog, &PKT, 24), pass as u32);
    assert_eq!(get_u64(&counts, 7), 1024);
}

#[test]
fn counter_counts_exactly_n_getpid_calls_from_a_tracepoint() {
    if !support::kernel_or_skip("counter from tracepoint") {
        return;
    }
    let counts = counts_map();
    let mut body = insn::Program::new();
    count_key(&mut body, "counts", 0);
    let prog = load("tp_counter", ProgType::Tracepoint, &on_this_thread(body), &[&counts]);
    fire_getpid(&prog, 250);
    getpid_n(10);
    assert_eq!(get_u64(&counts, 0), 250);
}

#[test]
fn tgid_and_uid_filters_pass_only_the_matching_task() {
    if !support::kernel_or_skip("filters") {
        return;
    }
    let counts = counts_map();
    let (pid, uid) = (std::process::id(), proc_status_id("Uid:"));
    let mut body = insn::Program::new();
    // key 1: this tgid; key 2: this uid; key 3: another tgid; key 4: another uid.
    let filters = [tgid_filter(pid, "f1"), uid_filter(uid, "f2"), tgid_filter(pid + 1, "f3"), uid_filter(uid + 1, "f4")];
    for (i, f) in filters.into_iter().enumerate() {
        body.extend(f.unwrap());
        count_key(&mut body, "counts", i as i32 + 1);
        body.label(format!("f{}", i + 1));
    }
    let prog = load("tp_filters", ProgType::Tracepoint, &on_this_thread(body), &[&counts]);
    fire_getpid(&prog, 40);
    assert_eq!([1, 2, 3, 4].map(|k| get_u64(&counts, k)), [40, 40, 0, 0]);
}

fn spin_lock_map() -> (Map, LoadedBtf) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let u64t = b.add_int("unsigned long long", 8, IntEncoding::Unsigned, 64).unwrap();
    let lock = b.add_struct("bpf_spin_lock", 4, &[Member::new("val", int, 0)]).unwrap();
    let value = b.add_struct("locked", 16, &[Member::new("lock", lock, 0), Member::new("count", u64t, 64)]).unwrap();
    let btf = b.load().unwrap();
    let spec = MapSpec::new("locked", MapType::Hash, 4, 16, 4).btf(&btf, int.get(), value.get()).unwrap();
    (Map::create(&spec).unwrap(), btf)
}

#[test]
fn spin_locked_update_is_exact_under_concurrent_runs() {
    if !support::kernel_or_skip("spin lock pattern") {
        return;
    }
    let (locked, _btf) = spin_lock_map();
    locked.update(&1u32.to_ne_bytes(), &[0u8; 16], UpdateFlags::Any).unwrap();
    let mut p = insn::Program::new();
    key_at(&mut p, -8, 1);
    p.extend(spin_locked_add("locked", -8, Reg::R6, 0, 8, 3, "miss").unwrap());
    ret(&mut p, xdp("XDP_PASS"));
    p.label("miss");
    ret(&mut p, xdp("XDP_DROP"));
    let prog = load("spin", ProgType::Xdp, &p, &[&locked]);
    let (threads, runs) = (4u64, 20_000u32);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| assert_eq!(run(&prog, &PKT, runs), xdp("XDP_PASS") as u32));
        }
    });
    let v = locked.lookup_locked(&1u32.to_ne_bytes()).unwrap().unwrap();
    assert_eq!(u64::from_ne_bytes(v[8..16].try_into().unwrap()), 3 * threads * runs as u64);
    // A missing key takes the miss branch.
    locked.delete(&1u32.to_ne_bytes()).unwrap();
    assert_eq!(run(&prog, &PKT, 1), xdp("XDP_DROP") as u32);
}

// ---- process info, timestamps, ring buffers ----

#[test]
fn process_info_matches_the_calling_thread_through_a_ring_buffer() {
    if !support::kernel_or_skip("process info") {
        return;
    }
    let events = map("events", MapType::RingBuf, 0, 0, 4096);
    let mut body = process_info(-32).unwrap();
    body.extend(ringbuf_emit("events", -32, ProcInfo::SIZE, Reg::R6, "out").unwrap());
    let prog = load("tp_procinfo", ProgType::Tracepoint, &on_this_thread(body), &[&events]);
    fire_getpid(&prog, 3);
    let records = RingBuf::new(&events).unwrap().read_all();
    assert_eq!(records.len(), 3);
    let info = ProcInfo::from_bytes(&records[0]).unwrap();
    let comm = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    assert_eq!(info.tgid, std::process::id());
    assert_eq!(info.tid, os::gettid() as u32);
    assert_eq!(info.uid, proc_status_id("Uid:"));
    assert_eq!(info.gid, proc_status_id("Gid:"));
    assert_eq!(info.comm_str(), comm.trim_end());
}

#[test]
fn ringbuf_output_submits_one_record_per_run() {
    if !support::kernel_or_skip("ringbuf output") {
        return;
    }
    let events = map("events", MapType::RingBuf, 0, 0, 4096);
    let mut p = insn::Program::new();
    p.push(st(Size::DW, Reg::R10, -16, 0x1234_5678)).push(st(Size::DW, Reg::R10, -8, -1));
    p.extend(ringbuf_output("events", -16, 16).unwrap());
    p.push(exit());
    let prog = load("rb_output", ProgType::Xdp, &p, &[&events]);
    assert_eq!(run(&prog, &PKT, 100), 0, "bpf_ringbuf_output returned 0");
    let records = RingBuf::new(&events).unwrap().read_all();
    assert_eq!(records.len(), 100);
    let mut want = 0x1234_5678u64.to_ne_bytes().to_vec();
    want.extend(u64::MAX.to_ne_bytes());
    assert!(records.iter().all(|r| *r == want));
}

#[test]
fn time_delta_is_positive_and_within_the_elapsed_wall_time() {
    if !support::kernel_or_skip("time delta") {
        return;
    }
    let start = map("start", MapType::Hash, 4, 8, 64);
    let deltas = map("deltas", MapType::Array, 4, 8, 1);
    let enter = load("tp_ts_enter", ProgType::Tracepoint, &on_this_thread(timestamp_store("start", -8, -16).unwrap()), &[&start]);
    let mut body = timestamp_delta("start", -8, Reg::R7, "out").unwrap();
    body.push(stx(Size::DW, Reg::R10, -16, Reg::R7));
    store_out(&mut body, "deltas", -4, 0, -16);
    let exit_prog = load("tp_ts_exit", ProgType::Tracepoint, &on_this_thread(body), &[&start, &deltas]);
    let _l1 = enter.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    let _l2 = exit_prog.attach_tracepoint("syscalls", "sys_exit_getpid").unwrap();
    let t0 = Instant::now();
    getpid_n(1);
    let elapsed = t0.elapsed().as_nanos() as u64;
    let delta = get_u64(&deltas, 0);
    assert!(delta > 0 && delta <= elapsed, "delta {delta} ns, elapsed {elapsed} ns");
    assert!(get(&start, os::gettid() as u32).is_none(), "the start entry was deleted");
}

// ---- sampling, loops, stack structs ----

#[test]
fn one_in_n_sampling_is_within_five_sigma() {
    if !support::kernel_or_skip("sampling") {
        return;
    }
    let counts = counts_map();
    let mut p = sample_one_in(10, "skip").unwrap();
    count_key(&mut p, "counts", 0);
    p.label("skip");
    ret(&mut p, xdp("XDP_PASS"));
    let prog = load("sample", ProgType::Xdp, &p, &[&counts]);
    let n = 100_000u32;
    run(&prog, &PKT, n);
    let (hits, mean) = (get_u64(&counts, 0) as f64, n as f64 / 10.0);
    let sigma = (n as f64 * 0.1 * 0.9).sqrt();
    assert!((hits - mean).abs() <= 5.0 * sigma, "{hits} samples, expected {mean} ± {}", 5.0 * sigma);
}

#[test]
fn bpf_loop_and_bounded_loop_sum_exactly() {
    if !support::kernel_or_skip("loops") {
        return;
    }
    // bpf_loop: sum the indexes 0..1000 into a u64 ctx on the stack.
    let cb = bpf_asm! {
        r3 = *(u64 *)(r2 + 0)
        r3 += r1
        *(u64 *)(r2 + 0) = r3
        r0 = 0
        exit
    };
    let lp = bpf_loop(1000, Some(-8), cb).unwrap();
    let p = bpf_asm! {
        *(u64 *)(r10 - 8) = 0
        {&lp.body}
        if r0 != 1000 goto bad
        r0 = *(u64 *)(r10 - 8)
        exit
    bad:
        r0 = 0
        exit
        {lp.subprog}
    };
    let prog = load("bpf_loop", ProgType::Xdp, &p, &[]);
    assert_eq!(run(&prog, &PKT, 1), 499_500);

    // A bounded loop: r7 = sum of squares of 0..50, built with the builders.
    let mut body = insn::Program::new();
    body.push(mov64(Reg::R1, Reg::R6)).push(insn::alu64(insn::AluOp::Mul, Reg::R1, Reg::R6)).push(insn::add64(Reg::R7, Reg::R1));
    let mut p = insn::Program::new();
    p.push(mov64(Reg::R7, 0));
    p.extend(bounded_loop(Reg::R6, 50, body).unwrap());
    p.push(mov64(Reg::R0, Reg::R7)).push(exit());
    let prog = load("bounded", ProgType::Xdp, &p, &[]);
    assert_eq!(run(&prog, &PKT, 1), (0..50).map(|i| i * i).sum::<u32>());
}

#[test]
fn zero_stack_zeroes_exactly_its_range() {
    if !support::kernel_or_skip("zero stack") {
        return;
    }
    let out = map("out", MapType::Array, 4, 48, 1);
    let mut p = insn::Program::new();
    for off in (-48..0).step_by(4) {
        p.push(st(Size::W, Reg::R10, off, 0xabab_abab_u32 as i32));
    }
    p.extend(zero_stack(-43, 27).unwrap());
    store_out(&mut p, "out", -52, 0, -48);
    ret(&mut p, 0);
    let prog = load("zero", ProgType::Xdp, &p, &[&out]);
    run(&prog, &PKT, 1);
    let v = get(&out, 0).unwrap();
    let want: Vec<u8> = (0..48).map(|i| if (5..32).contains(&i) { 0 } else { 0xab }).collect();
    assert_eq!(v, want);
}

// ---- packets ----

fn eth(ethertype: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    p.extend(ethertype.to_be_bytes());
    p
}

fn l4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(sport.to_be_bytes());
    h.extend(dport.to_be_bytes());
    if proto == 6 {
        h.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        h.extend([0, 8, 0, 0]);
    }
    h
}

/// An IPv4 header of `ihl` words (options zero), checksum filled in.
fn ipv4_header(proto: u8, ihl: u8, payload: usize) -> Vec<u8> {
    let len = ihl as usize * 4;
    let mut h = vec![0u8; len];
    h[0] = 0x40 | ihl;
    h[2..4].copy_from_slice(&((len + payload) as u16).to_be_bytes());
    h[6] = 0x40; // DF
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&[10, 0, 0, 1]);
    h[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// RFC 1071, as a big-endian value.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn v4_packet(proto: u8, ihl: u8, sport: u16, dport: u16) -> Vec<u8> {
    let l4h = l4(proto, sport, dport);
    let mut p = eth(0x0800);
    p.extend(ipv4_header(proto, ihl, l4h.len()));
    p.extend(l4h);
    p
}

fn v6_packet(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let l4h = l4(proto, sport, dport);
    let mut p = eth(0x86dd);
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((l4h.len() as u16).to_be_bytes());
    h.extend([proto, 64]);
    h.extend([0xfd; 16]);
    h.extend([0xfe; 16]);
    p.extend(h);
    p.extend(l4h);
    p
}

/// parse_ports → copy the PacketInfo into `out[0]` → pass; reject → drop.
fn parser_prog(kind: PacketCtx, out: &Map) -> (Program, u32, u32) {
    let (ty, pass, drop) = match kind {
        PacketCtx::Xdp => (ProgType::Xdp, xdp("XDP_PASS"), xdp("XDP_DROP")),
        PacketCtx::Tc => (ProgType::SchedCls, tc_action("TCX_PASS").unwrap(), tc_action("TCX_DROP").unwrap()),
    };
    let mut p = parse_ports(kind, Reg::R1, -16, "reject").unwrap();
    store_out(&mut p, "out", -20, 0, -16);
    ret(&mut p, pass);
    p.label("reject");
    ret(&mut p, drop);
    (load("parse_ports", ty, &p, &[out]), pass as u32, drop as u32)
}

#[test]
fn packet_parser_extracts_ports_and_rejects_truncated_packets() {
    if !support::kernel_or_skip("packet parser") {
        return;
    }
    for kind in [PacketCtx::Xdp, PacketCtx::Tc] {
        let out = map("out", MapType::Array, 4, 16, 1);
        let (prog, pass, drop) = parser_prog(kind, &out);
        let cases = [
            (v4_packet(6, 5, 40000, 443), 0x0800, 6, 40000, 443, 34),
            (v4_packet(17, 5, 5353, 53), 0x0800, 17, 5353, 53, 34),
            (v4_packet(6, 7, 1, 65535), 0x0800, 6, 1, 65535, 42),
            (v6_packet(6, 50000, 22), 0x86dd, 6, 50000, 22, 54),
            (v6_packet(17, 123, 4789), 0x86dd, 17, 123, 4789, 54),
        ];
        for (pkt, ethertype, l4_proto, sport, dport, l4_offset) in cases {
            out.update(&0u32.to_ne_bytes(), &[0xff; 16], UpdateFlags::Any).unwrap();
            assert_eq!(run(&prog, &pkt, 1), pass, "{kind:?} {pkt:02x?}");
            let info = PacketInfo::from_bytes(&get(&out, 0).unwrap()).unwrap();
            assert_eq!(info, PacketInfo { ethertype, l4_proto, sport, dport, l4_offset }, "{kind:?}");
            // Every truncation down to a bare Ethernet header is rejected without a write. (For
            // an skb, PROG_TEST_RUN itself refuses IPv4/IPv6 packets cut inside the IP header.)
            out.update(&0u32.to_ne_bytes(), &[0xff; 16], UpdateFlags::Any).unwrap();
            let ip_end = if ethertype == 0x0800 { 34 } else { 54 };
            for len in 14..pkt.len() {
                match prog.test_run(&TestRun::with_data(pkt[..len].to_vec())) {
                    Ok(r) => assert_eq!(r.retval, drop, "{kind:?} truncated to {len}"),
                    Err(e) => assert!(kind == PacketCtx::Tc && len < ip_end, "{kind:?} truncated to {len}: {e}"),
                }
            }
            assert_eq!(get(&out, 0).unwrap(), [0xff; 16]);
        }
        // Not IP, not TCP/UDP, a later fragment, a bad IHL: rejected.
        let mut arp = eth(0x0806);
        arp.extend([0; 28]);
        let mut icmp = v4_packet(6, 5, 1, 2);
        icmp[23] = 1;
        let mut frag = v4_packet(17, 5, 1, 2);
        frag[20] = 0x20;
        frag[21] = 0x10;
        let mut ihl = v4_packet(17, 5, 1, 2);
        ihl[14] = 0x44;
        for bad in [arp, icmp, frag, ihl] {
            assert_eq!(run(&prog, &bad, 1), drop, "{kind:?} {bad:02x?}");
        }
    }
}

#[test]
fn ipv4_checksum_equals_rusts() {
    if !support::kernel_or_skip("checksum") {
        return;
    }
    // Bounds-check the header in the packet, then r0 = checksum(data + 14, 20).
    let p = bpf_asm! {
        r2 = *(u32 *)(r1 + {ctx_field(ProgType::Xdp, "data").unwrap()})
        r3 = *(u32 *)(r1 + {ctx_field(ProgType::Xdp, "data_end").unwrap()})
        r6 = r2
        r6 += 14
        r4 = r2
        r4 += 34
        r0 = 0xdead
        if r4 > r3 goto out
        {ipv4_checksum(Reg::R6, 20).unwrap()}
    out:
        exit
    };
    let prog = load("csum", ProgType::Xdp, &p, &[]);
    for (proto, payload) in [(6u8, 20usize), (17, 8), (1, 1400)] {
        let mut pkt = eth(0x0800);
        pkt.extend(ipv4_header(proto, 5, payload));
        pkt.resize(64, 0);
        let want = u16::from_be_bytes([pkt[24], pkt[25]]);
        // A correct header sums to 0; with the field zeroed the result is the checksum, stored
        // in memory order.
        assert_eq!(run(&prog, &pkt, 1), 0);
        pkt[24..26].fill(0);
        let got = run(&prog, &pkt, 1) as u16;
        assert_eq!(got.to_ne_bytes(), want.to_be_bytes(), "{proto}");
        assert_eq!(want, checksum(&pkt[14..34]));
    }
    assert_eq!(run(&prog, &PKT[..20], 1), 0xdead, "a short packet is never read");
}

// ---- context offsets and return codes from BTF ----

#[test]
fn context_offsets_and_return_codes_come_from_btf() {
    // The uapi layouts these must agree with.
    assert_eq!(ctx_field(ProgType::Xdp, "data").unwrap(), 0);
    assert_eq!(ctx_field(ProgType::Xdp, "data_end").unwrap(), 4);
    assert_eq!(ctx_field(ProgType::Xdp, "ingress_ifindex").unwrap(), 12);
    assert_eq!(ctx_field(ProgType::SchedCls, "len").unwrap(), 0);
    assert_eq!(ctx_field(ProgType::SchedCls, "data").unwrap(), 76);
    assert_eq!(ctx_field(ProgType::SchedCls, "data_end").unwrap(), 80);
    assert_eq!(ctx_field(ProgType::CgroupSockAddr, "user_family").unwrap(), 0);
    assert_eq!(ctx_field(ProgType::CgroupSockAddr, "user_port").unwrap(), 24);
    assert_eq!(["access_type", "major", "minor"].map(|f| ctx_field(ProgType::CgroupDevice, f).unwrap()), [0, 4, 8]);
    assert!(ctx_field(ProgType::Xdp, "no_such_field").is_err());
    assert!(ctx_field(ProgType::Kprobe, "data").is_err());
    assert_eq!(["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"].map(xdp), [0, 1, 2, 3, 4]);
    assert_eq!(["TCX_NEXT", "TCX_PASS", "TCX_DROP", "TCX_REDIRECT"].map(|n| tc_action(n).unwrap()), [-1, 0, 2, 7]);
    // The uapi names (no BTF before 6.6's enum tcx_action_base) agree with the enum's values.
    assert_eq!(["TC_ACT_UNSPEC", "TC_ACT_OK", "TC_ACT_SHOT", "TC_ACT_REDIRECT"].map(|n| tc_action(n).unwrap()), [-1, 0, 2, 7]);
    assert!(tc_action("TC_ACT_NOPE").is_err());
    assert_eq!(return_code(ProgType::CgroupSkb, "SK_PASS").unwrap(), 1);
    assert_eq!(return_code(ProgType::CgroupSockAddr, "SK_DROP").unwrap(), 0);
    assert!(return_code(ProgType::Xdp, "TCX_PASS").is_err());
}

#[test]
fn a_tc_program_reads_skb_len_at_the_btf_offset() {
    if !support::kernel_or_skip("ctx offsets") {
        return;
    }
    let mut p = insn::Program::new();
    p.push(insn::ldx(Size::W, Reg::R0, Reg::R1, ctx_field(ProgType::SchedCls, "len").unwrap()));
    p.push(jmp_if(JmpCond::Ne, Reg::R0, 77, "other"));
    ret(&mut p, tc_action("TCX_DROP").unwrap());
    p.label("other");
    p.push(exit());
    let prog = load("skb_len", ProgType::SchedCls, &p, &[]);
    assert_eq!(run(&prog, &[0u8; 77], 1), tc_action("TCX_DROP").unwrap() as u32);
    assert_eq!(run(&prog, &[0u8; 60], 1), 60);
}

// ---- composition ----

#[test]
fn splicing_into_bpf_asm_equals_builder_composition() {
    let lookup = map_lookup("counts", -8, "miss").unwrap();
    let from_macro = bpf_asm! {
        *(u32 *)(r10 - 8) = 1
        {&lookup}
        r0 = 1
    miss:
        exit
    };
    let mut built = insn::Program::new();
    key_at(&mut built, -8, 1);
    built.extend(lookup.clone());
    built.push(mov64(Reg::R0, 1)).label("miss").push(exit());
    assert_eq!(from_macro.assemble().unwrap().insns(), built.assemble().unwrap().insns());
    // Spliced statements carry no source location of the macro; the others do.
    assert!(from_macro.items().iter().filter_map(|i| match i {
        insn::Item::Insn { loc, .. } => Some(loc.is_some()),
        _ => None,
    }).eq([true, false, false, false, false, false, true, true]));
    // Pattern labels never collide: two instances in one program assemble.
    let twice = bpf_asm! {
        *(u32 *)(r10 - 8) = 1
        {counter_increment("c", -8, -16).unwrap()}
        {counter_increment("c", -8, -16).unwrap()}
        exit
    };
    assert!(twice.assemble().is_ok());
}

/// The byte offset of `field` in a syscalls tracepoint's record, from its tracefs `format` file.
fn tracepoint_field_offset(event: &str, field: &str) -> i16 {
    let dir = os::tracefs_dir().unwrap();
    let format = std::fs::read_to_string(dir.join("events/syscalls").join(event).join("format")).unwrap();
    let line = format.lines().find(|l| l.contains(&format!(" {field};"))).unwrap_or_else(|| panic!("{field} in {format}"));
    let off = line.split("offset:").nth(1).unwrap().split(';').next().unwrap();
    off.trim().parse().unwrap()
}

#[test]
fn probe_read_str_copies_a_user_string_into_the_stack() {
    use bpfkit::helpers::patterns::{probe_read_str, Space};
    if !support::kernel_or_skip("probe_read_str pattern") {
        return;
    }
    let paths = map("paths", MapType::Array, 4, 64, 1);
    let lens = map("lens", MapType::Array, 4, 8, 1);
    let filename = tracepoint_field_offset("sys_enter_openat", "filename");
    let mut body = insn::Program::new();
    body.push(insn::ldx(Size::DW, Reg::R6, Reg::R9, filename));
    body.extend(zero_stack(-64, 64).unwrap());
    body.extend(probe_read_str(Space::User, -64, 64, Reg::R6).unwrap());
    body.push(insn::stx(Size::DW, Reg::R10, -72, Reg::R0));
    store_out(&mut body, "paths", -76, 0, -64);
    store_out(&mut body, "lens", -76, 0, -72);
    let mut p = insn::Program::new();
    p.push(mov64(Reg::R9, Reg::R1)); // the context, kept across the filter's helper call
    p.extend(on_this_thread(body));
    let prog = load("openat_path", ProgType::Tracepoint, &p, &[&paths, &lens]);
    let path = format!("/tmp/bpfkit-probe-read-{}", std::process::id());
    let link = prog.attach_tracepoint("syscalls", "sys_enter_openat").unwrap();
    let _ = std::fs::File::open(&path); // need not exist: the syscall is entered either way
    drop(link);
    let got = get(&paths, 0).unwrap();
    let end = got.iter().position(|b| *b == 0).unwrap();
    assert_eq!(std::str::from_utf8(&got[..end]).unwrap(), path);
    assert_eq!(get_u64(&lens, 0), path.len() as u64 + 1, "the length includes the NUL");
}
