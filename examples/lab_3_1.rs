//! Lab 3.1 — drop TCP port 80 in XDP (tutorial/ch03-instructions.md): an XDP filter reading
//! the Ethernet type, IPv4 protocol and TCP destination port, proven with crafted packets through
//! PROG_TEST_RUN.
//!
//! Run as root: `cargo run --example lab_3_1`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("lab 3.1") {
        return Ok(());
    }
    let prog = bpf_asm! {
        r2 = *(u32 *)(r1 + 0)       // data
        r3 = *(u32 *)(r1 + 4)       // data_end
        r0 = 2                      // XDP_PASS unless proven otherwise
        r4 = r2
        r4 += 38                    // Ethernet 14 + IPv4 20 + 4 bytes of TCP
        if r4 > r3 goto out         // bounds check: now bytes 0..38 are readable
        r5 = *(u16 *)(r2 + 12)      // EtherType, network order
        if r5 != 0x0008 goto out    // 0x0800 read little-endian
        r5 = *(u8 *)(r2 + 23)       // IPv4 protocol
        if r5 != 6 goto out         // TCP
        r5 = *(u16 *)(r2 + 36)      // TCP destination port
        if r5 != 0x5000 goto out    // 80 in network order
        r0 = 1                      // XDP_DROP
    out:
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[], &LoadOptions::new("port80", ProgType::Xdp))?;
    let packet = |proto: u8, port: u16| {
        let mut p = vec![0u8; 64];
        p[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        p[14] = 0x45;
        p[23] = proto;
        p[36..38].copy_from_slice(&port.to_be_bytes());
        p
    };
    let cases = [
        ("TCP to port 80", packet(6, 80), 1),
        ("TCP to port 443", packet(6, 443), 2),
        ("UDP to port 80", packet(17, 80), 2),
        ("a 20-byte runt", vec![0u8; 20], 2),
    ];
    for (what, p, want) in cases {
        let verdict = prog.test_run(&TestRun::with_data(p))?.retval;
        println!("{what:<16} {}", if verdict == 1 { "XDP_DROP" } else { "XDP_PASS" });
        assert_eq!(verdict, want, "{what}");
    }
    Ok(())
}
