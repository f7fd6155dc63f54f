//! `bpfkit::testing` against the kernel: cases with verdicts, packets and map state; properties
//! over generated inputs; and coverage — blocks and branch directions of the program itself,
//! mapped back to source lines, the uncovered ones named — checked on a TCP port filter, whose
//! instrumented form must behave exactly as the plain one.

mod support;

use bpfkit::bpf_asm;
use bpfkit::insn::Assembled;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::testing::packet::{Packet, TcpFlags};
use bpfkit::testing::{Case, Suite, TestError};

/// Drops TCP to port 80 (IPv4 only), counts drops in `drops[0]`, passes everything else.
fn port_filter() -> Assembled {
    bpf_asm! {
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 54                        // Ethernet 14 + IPv4 20 + TCP 20
        if r4 > r3 goto pass            // too short for IPv4 + TCP
        r4 = *(u16 *)(r2 + 12)
        if r4 != 8 goto pass            // not IPv4 (0x0800, read little-endian)
        r4 = *(u8 *)(r2 + 23)
        if r4 != 6 goto pass            // not TCP
        r4 = *(u16 *)(r2 + 36)
        if r4 != 0x5000 goto pass       // not port 80 (big-endian 0x0050)
        *(u32 *)(r10 - 4) = 0
        r1 = map[drops] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto drop
        r1 = 1
        lock *(u64 *)(r0 + 0) += r1
    drop:
        r0 = 1                          // XDP_DROP
        exit
    pass:
        r0 = 2                          // XDP_PASS
        exit
    }
    .assemble()
    .unwrap()
}

fn tcp(port: u16) -> Vec<u8> {
    Packet::tcp("10.0.0.1:40000".parse().unwrap(), format!("10.0.0.2:{port}").parse().unwrap()).flags(TcpFlags::SYN).build().unwrap()
}

#[test]
fn coverage_names_what_the_cases_missed_then_reaches_every_branch() {
    if !support::kernel_or_skip("testing: coverage") {
        return;
    }
    let drops = Map::create(&MapSpec::new("drops", MapType::Array, 4, 8, 1)).unwrap();
    let prog = port_filter();
    let opts = LoadOptions::new("port_filter", ProgType::Xdp);
    // Two cases: port 80 and port 8080.
    let first = Suite::new(&prog, opts.clone())
        .maps(&[&drops])
        .case(Case::new("TCP to 80 is dropped").data(tcp(80)).returns(1).map_has(&drops, &0u32.to_ne_bytes(), &1u64.to_ne_bytes()))
        .case(Case::new("TCP to 8080 passes").data(tcp(8080)).returns(2))
        .run()
        .unwrap();
    eprintln!("{first}");
    assert!(first.passed(), "{first}");
    let (hit, total) = first.coverage.branches_hit();
    assert!(hit < total, "two cases cannot take every branch both ways");
    // What they never did: a short frame, a non-IPv4 frame, a non-TCP packet, a failed lookup.
    let text = first.coverage.to_string();
    for never in ["`if r4 > r3 goto pass`", "`if r4 != 0x8 goto pass`", "`if r4 != 0x6 goto pass`"] {
        assert!(text.contains(never) && text.contains("never taken"), "{never} in:\n{text}");
    }
    assert!(text.contains("`if r0 == 0x0 goto drop`"), "the NULL check's other side: {text}");
    // Every line is covered by these two (each block runs), but not every direction.
    assert!(first.coverage.uncovered.is_empty(), "{text}");

    // More cases: now every branch goes both ways except the lookup of an array's only key,
    // which the kernel never fails: that one stays named.
    let drops2 = Map::create(&MapSpec::new("drops", MapType::Array, 4, 8, 1)).unwrap();
    let udp = Packet::udp("10.0.0.1:4000".parse().unwrap(), "10.0.0.2:80".parse().unwrap()).payload(vec![0; 20]).build().unwrap();
    let v6 = Packet::tcp("[2001:db8::1]:4000".parse().unwrap(), "[2001:db8::2]:80".parse().unwrap()).build().unwrap();
    let second = Suite::new(&prog, opts)
        .maps(&[&drops2])
        .case(Case::new("TCP to 80 is dropped").data(tcp(80)).returns(1))
        .case(Case::new("TCP to 8080 passes").data(tcp(8080)).returns(2))
        .case(Case::new("a runt passes").data(vec![0u8; 20]).returns(2))
        .case(Case::new("IPv6 passes").data(v6).returns(2))
        .case(Case::new("UDP to 80 passes").data(udp).returns(2).map_has(&drops2, &0u32.to_ne_bytes(), &1u64.to_ne_bytes()))
        .run()
        .unwrap();
    eprintln!("{second}");
    assert!(second.passed(), "{second}");
    let (hit, total) = second.coverage.branches_hit();
    assert_eq!((hit, total), (9, 10), "five conditional jumps, one direction unreachable: {}", second.coverage);
    let missing: Vec<_> = second.coverage.branches.iter().filter(|b| !(b.taken && b.not_taken)).collect();
    assert_eq!(missing.len(), 1);
    assert!(missing[0].text == "if r0 == 0x0 goto drop" && missing[0].not_taken && !missing[0].taken, "{:?}", missing[0]);
    assert!(missing[0].loc.as_ref().is_some_and(|l| l.text().contains("goto drop")), "mapped to its source line: {:?}", missing[0].loc);
}

#[test]
fn lines_no_case_ran_are_named() {
    if !support::kernel_or_skip("testing: uncovered lines") {
        return;
    }
    let drops = Map::create(&MapSpec::new("drops", MapType::Array, 4, 8, 1)).unwrap();
    let report = Suite::new(&port_filter(), LoadOptions::new("port_filter", ProgType::Xdp))
        .maps(&[&drops])
        .case(Case::new("TCP to 8080 passes").data(tcp(8080)).returns(2))
        .run()
        .unwrap();
    let text = report.coverage.to_string();
    eprintln!("{text}");
    // The drop path never ran: its lines are named, from the map lookup to `r0 = 1`.
    let lines: Vec<String> = report.coverage.uncovered.iter().map(|l| l.text().trim().to_string()).collect();
    assert_eq!(lines.first().map(String::as_str), Some("*(u32 *)(r10 - 4) = 0"), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("r0 = 1")), "{text}");
    assert!(text.contains("not run: tests/testing_framework.rs:"), "{text}");
    let (b, bn) = report.coverage.blocks_hit();
    assert_eq!((b, bn), (bn - 3, 8), "the lookup, the increment and the drop never ran: {text}");
}

#[test]
fn a_hash_lookup_reaches_full_branch_coverage() {
    if !support::kernel_or_skip("testing: full coverage") {
        return;
    }
    // With a hash map the lookup can fail too: both directions of every branch are reachable.
    let seen = Map::create(&MapSpec::new("seen", MapType::Hash, 4, 8, 4)).unwrap();
    let prog = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 64
        if r4 > r3 goto pass            // at least 64 bytes
        r4 = *(u8 *)(r2 + 0)            // the first byte is the key
        *(u32 *)(r10 - 4) = w4
        r1 = map[seen] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto pass
        r0 = 1
        exit
    pass:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    seen.update(&7u32.to_ne_bytes(), &1u64.to_ne_bytes(), bpfkit::maps::UpdateFlags::Any).unwrap();
    let report = Suite::new(&prog, LoadOptions::new("seen_filter", ProgType::Xdp))
        .maps(&[&seen])
        .case(Case::new("a known key is dropped").data([vec![7], vec![0; 63]].concat()).returns(1))
        .case(Case::new("an unknown key passes").data([vec![9], vec![0; 63]].concat()).returns(2))
        .case(Case::new("a short frame passes").data(vec![7; 20]).returns(2))
        .run()
        .unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.coverage.is_complete(), "{}", report.coverage);
    assert_eq!(report.coverage.branches_hit(), (4, 4));
    assert!(report.to_string().contains("branches 4/4 (100%)"), "{report}");
}

#[test]
fn instrumented_program_behaves_as_the_plain_one_and_properties_run() {
    if !support::kernel_or_skip("testing: properties") {
        return;
    }
    let drops = Map::create(&MapSpec::new("drops", MapType::Array, 4, 8, 1)).unwrap();
    let prog = port_filter();
    let plain = Program::load(&prog, &[&drops], &LoadOptions::new("plain", ProgType::Xdp)).unwrap();
    // Random frames (biased to IPv4/TCP and the ports that matter): the instrumented program's
    // verdict is the plain one's, every time.
    let gen = |rng: &mut fastrand::Rng| {
        let port = [80u16, 8080, rng.u16(..)][rng.usize(..3)];
        // (XDP test runs take at least an Ethernet header: 14 bytes.)
        let mut p = if rng.bool() { tcp(port) } else { (0..rng.usize(14..80)).map(|_| rng.u8(..)).collect() };
        if !p.is_empty() && rng.u8(..) < 30 {
            let i = rng.usize(..p.len());
            p[i] ^= 0xff;
        }
        p
    };
    let report = Suite::new(&prog, LoadOptions::new("port_filter", ProgType::Xdp))
        .maps(&[&drops])
        .property("same verdict as the plain program", 500, 42, gen, move |input, outcome| {
            let want = plain.test_run(&TestRun::with_data(input.to_vec())).map_err(|e| e.to_string())?.retval;
            if outcome.retval == want { Ok(()) } else { Err(format!("instrumented {} vs plain {want}", outcome.retval)) }
        })
        .run()
        .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.properties, [("same verdict as the plain program".to_string(), 500)]);

    // A property that fails reports its input, reproducibly (same seed, same input).
    let failing = || {
        Suite::new(&prog, LoadOptions::new("port_filter", ProgType::Xdp))
            .maps(&[&drops])
            .property("never drops", 200, 7, |_rng| tcp(80), |_, o| if o.retval == 2 { Ok(()) } else { Err(format!("returned {}", o.retval)) })
            .run()
            .unwrap()
    };
    let (a, b) = (failing(), failing());
    assert!(!a.passed());
    let f = a.failures().next().unwrap();
    assert_eq!((f.name.as_str(), f.failures.as_slice()), ("never drops #0", ["returned 1".to_string()].as_slice()));
    assert_eq!(f.input, b.failures().next().unwrap().input);
}

#[test]
fn what_cannot_be_instrumented_says_why() {
    if !support::kernel_or_skip("testing: refusals") {
        return;
    }
    let with_subprogram = bpf_asm! {
        call local sub
        exit
    sub:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    match Suite::new(&with_subprogram, LoadOptions::new("sub", ProgType::Xdp)).run() {
        Err(TestError::Instrument(why)) => assert!(why.contains("subprograms"), "{why}"),
        other => panic!("{:?}", other.map(|r| r.to_string())),
    }
    let deep = bpf_asm! {
        r1 = 0
        *(u64 *)(r10 - 504) = r1
        r0 = 2
        if r0 == 2 goto out
        r0 = 1
    out:
        exit
    }
    .assemble()
    .unwrap();
    match Suite::new(&deep, LoadOptions::new("deep", ProgType::Xdp)).run() {
        Err(TestError::Instrument(why)) => assert!(why.contains("504 bytes of stack") && why.contains("512"), "{why}"),
        other => panic!("{:?}", other.map(|r| r.to_string())),
    }
}

#[test]
fn a_packet_that_differs_is_shown_where_it_differs() {
    if !support::kernel_or_skip("testing: packet out") {
        return;
    }
    // Swaps the Ethernet addresses' last bytes (02 and 01): the packet differs at 5 and 11.
    let swap = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)
        r3 = *(u32 *)(r1 + 4)
        r4 = r2
        r4 += 14
        if r4 > r3 goto out
        r4 = *(u8 *)(r2 + 5)
        r5 = *(u8 *)(r2 + 11)
        *(u8 *)(r2 + 5) = w5
        *(u8 *)(r2 + 11) = w4
    out:
        r0 = 2
        exit
    }
    .assemble()
    .unwrap();
    let frame = tcp(80);
    let mut swapped = frame.clone();
    swapped.swap(5, 11);
    let report = Suite::new(&swap, LoadOptions::new("swap", ProgType::Xdp))
        .case(Case::new("swapped").data(frame.clone()).data_out(swapped.clone()))
        .case(Case::new("unchanged, wrongly").data(frame.clone()).data_out(frame.clone()))
        .run()
        .unwrap();
    let failures: Vec<&str> = report.failures().flat_map(|c| c.failures.iter().map(String::as_str)).collect();
    let want = format!("packet out differs at byte 5: {} expected {}", hex8(&swapped[5..]), hex8(&frame[5..]));
    assert_eq!(failures, [want.as_str()], "{report}");
}

fn hex8(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}
