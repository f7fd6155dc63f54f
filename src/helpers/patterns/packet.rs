//! Packet parsing with bounds checks (Ethernet → IPv4/IPv6 → TCP/UDP) for XDP and TC programs,
//! and the IPv4 header checksum.
//!
//! `parse_ports(PacketCtx::Xdp, R1, -16, "reject")` zeroes a [`PacketInfo`] at r10-16 and fills
//! it; `data`/`data_end` offsets come from `struct xdp_md` (TC: `struct __sk_buff`) in vmlinux
//! BTF ([`super::ctx_field`]):
//!
//! ```text
//!     *(u64 *)(r10 - 16) = 0; *(u64 *)(r10 - 8) = 0
//!     r2 = *(u32 *)(r1 + 0)                ; data
//!     r3 = *(u32 *)(r1 + 4)                ; data_end
//!     r4 = r2; r4 += 14
//!     if r4 > r3 goto reject               ; Ethernet header
//!     r5 = *(u16 *)(r2 + 12); r5 = be16 r5
//!     *(u16 *)(r10 - 16) = r5              ; ethertype
//!     if r5 == 0x86dd goto v6
//!     if r5 != 0x800 goto reject
//!     r4 = r2; r4 += 34
//!     if r4 > r3 goto reject               ; minimal IPv4 header
//!     r5 = *(u16 *)(r2 + 20); r5 = be16 r5; r5 &= 0x1fff
//!     if r5 != 0 goto reject               ; a later fragment has no L4 header
//!     r0 = *(u8 *)(r2 + 23)                ; protocol
//!     r5 = *(u8 *)(r2 + 14)
//!     r4 = r5; r4 >>= 4
//!     if r4 != 4 goto reject               ; version
//!     r5 &= 15
//!     if r5 < 5 goto reject                ; IHL
//!     r5 <<= 2
//!     r4 = r2; r4 += 14; r4 += r5          ; L4 header (options skipped)
//!     goto l4
//! v6:
//!     r4 = r2; r4 += 54
//!     if r4 > r3 goto reject               ; IPv6 header
//!     r5 = *(u8 *)(r2 + 14); r5 >>= 4
//!     if r5 != 6 goto reject
//!     r0 = *(u8 *)(r2 + 20)                ; next header (extension headers are not followed)
//! l4:
//!     *(u8 *)(r10 - 14) = r0               ; L4 protocol
//!     r5 = r4; r5 += 8
//!     if r0 == 17 goto len                 ; UDP: 8 bytes
//!     if r0 != 6 goto reject
//!     r5 += 12                             ; TCP: 20 bytes
//! len:
//!     if r5 > r3 goto reject
//!     r5 = *(u16 *)(r4 + 0); r5 = be16 r5
//!     *(u16 *)(r10 - 12) = r5              ; source port
//!     r5 = *(u16 *)(r4 + 2); r5 = be16 r5
//!     *(u16 *)(r10 - 10) = r5              ; destination port
//!     r5 = r4; r5 -= r2
//!     *(u16 *)(r10 - 8) = r5               ; L4 offset
//! ```
//!
//! On fall-through r2 = data, r3 = data_end, r4 = the L4 header (8 bytes checked for UDP, 20
//! for TCP), r0 = the L4 protocol. Clobbers r0, r2–r5.
//!
//! `ipv4_checksum(R6, 20)`, r6 pointing at an IPv4 header the program has bounds-checked:
//!
//! ```text
//! r3 = r6
//! r1 = 0; r2 = 0; r4 = 20; r5 = 0
//! call bpf_csum_diff                   ; the 32-bit one's-complement sum of the header
//! w1 = w0; w1 >>= 16; w0 &= 0xffff; w0 += w1
//! w1 = w0; w1 >>= 16; w0 += w1         ; folded to 16 bits
//! w0 ^= 0xffff; w0 &= 0xffff           ; complemented
//! ```
//!
//! r0 is then the checksum in memory order (`*(u16 *)(r6 + 10) = r0` stores it), when the
//! header's checksum field was 0; over a header with a correct checksum it is 0.
//!
//! `ipv4_l4_checksum(R6, R7, R8, 1480, "bad")` — r6 the IPv4 header, r7 its TCP/UDP header
//! (`r6 + IHL × 4`, as [`parse_ports`] leaves it in r4), r8 `data_end` — computes the TCP/UDP
//! checksum over the IPv4 pseudo-header and the segment the header's total length says:
//!
//! ```text
//!     r4 = r6; r4 += 20
//!     if r4 > r8 goto bad                  ; the IPv4 header
//!     r0 = *(u16 *)(r6 + 12); r0 = be16 r0 ; pseudo-header: source address …
//!     r5 = *(u16 *)(r6 + 14); r5 = be16 r5; r0 += r5
//!     r5 = *(u16 *)(r6 + 16); r5 = be16 r5; r0 += r5   ; … destination address …
//!     r5 = *(u16 *)(r6 + 18); r5 = be16 r5; r0 += r5
//!     r5 = *(u8 *)(r6 + 9); r0 += r5      ; … protocol …
//!     r2 = *(u16 *)(r6 + 2); r2 = be16 r2 ; total length
//!     r5 = *(u8 *)(r6 + 0); r5 &= 15; r5 <<= 2
//!     if r5 > r2 goto bad                  ; shorter than its header
//!     r2 -= r5                             ; the L4 length
//!     if r2 > 1480 goto bad                ; bounds the verifier's walk of the loop
//!     r0 += r2                             ; … and the L4 length
//!     r1 = r7
//! word:
//!     if r2 < 2 goto tail
//!     r4 = r1; r4 += 2
//!     if r4 > r8 goto bad                  ; the segment is cut short
//!     r5 = *(u16 *)(r1 + 0); r5 = be16 r5; r0 += r5
//!     r1 += 2; r2 -= 2
//!     goto word
//! tail:
//!     if r2 == 0 goto fold
//!     r4 = r1; r4 += 1
//!     if r4 > r8 goto bad
//!     r5 = *(u8 *)(r1 + 0); r5 <<= 8; r0 += r5   ; an odd last byte, zero-padded
//! fold:
//!     r5 = r0; r5 >>= 16; r0 &= 0xffff; r0 += r5
//!     r5 = r0; r5 >>= 16; r0 &= 0xffff; r0 += r5 ; folded to 16 bits
//!     r0 ^= 0xffff; r0 &= 0xffff           ; complemented
//!     r0 = be16 r0                         ; memory order
//! ```
//!
//! As with `ipv4_checksum`, r0 is the checksum to store (`*(u16 *)(r7 + 16) = r0` for TCP,
//! `+ 6` for UDP) when the segment's checksum field was 0, and 0 over a segment whose checksum
//! is correct. (UDP sends a computed 0 as 0xffff; that rule is the caller's.) The verifier walks
//! the loop once per 16-bit word up to `max_len`, hence the bound. Clobbers r0–r5.

use super::loops::zero_stack;
use super::{call, check_callee_saved, check_stack, ctx_field, invalid, Labels, PatternError};
use crate::insn::build::{add64, alu32, alu64, endian, ja, jmp_if, ldx, mov32, mov64, stx};
use crate::insn::{AluOp, ByteOrder, JmpCond, Program, Reg, Size};
use crate::prog::ProgType;

/// Which context the parser reads `data`/`data_end` from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketCtx {
    /// `struct xdp_md`.
    Xdp,
    /// `struct __sk_buff` (TC classifiers and actions).
    Tc,
}

/// What [`parse_ports`] writes (16 bytes, native endian, ports in host order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// The Ethernet header's EtherType in host order (0x0800 IPv4, 0x86dd IPv6).
    pub ethertype: u16,
    /// The IP protocol number of the L4 header (6 TCP, 17 UDP).
    pub l4_proto: u8,
    /// TCP/UDP source port, in host order.
    pub sport: u16,
    /// TCP/UDP destination port, in host order.
    pub dport: u16,
    /// Byte offset of the TCP/UDP header from the start of the packet (`data`).
    pub l4_offset: u16,
}

impl PacketInfo {
    /// Size of the struct on the stack, in bytes.
    pub const SIZE: usize = 16;
    /// Byte offset of `ethertype` in the struct (for `stx`/`ldx` off the stack slot).
    pub const ETHERTYPE: i16 = 0;
    /// Byte offset of `l4_proto` in the struct.
    pub const L4_PROTO: i16 = 2;
    /// Byte offset of `sport` in the struct.
    pub const SPORT: i16 = 4;
    /// Byte offset of `dport` in the struct.
    pub const DPORT: i16 = 6;
    /// Byte offset of `l4_offset` in the struct.
    pub const L4_OFFSET: i16 = 8;

    /// Decode the bytes a program copied out (`None` if fewer than 16).
    pub fn from_bytes(b: &[u8]) -> Option<PacketInfo> {
        let h = |o: usize| Some(u16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?));
        if b.len() < Self::SIZE {
            return None;
        }
        Some(PacketInfo { ethertype: h(0)?, l4_proto: b[2], sport: h(4)?, dport: h(6)?, l4_offset: h(8)? })
    }
}

fn be16_load(p: &mut Program, base: Reg, off: i16) {
    p.push(ldx(Size::H, Reg::R5, base, off));
    p.push(endian(ByteOrder::ToBe, 16, Reg::R5));
}

/// Parse Ethernet → IPv4/IPv6 → TCP/UDP from the packet of the context in `ctx`, writing a
/// [`PacketInfo`] at `r10 + out_off` (8-aligned); any other or truncated packet jumps to
/// `on_reject`. `ctx` must not be r0 or r2–r5.
pub fn parse_ports(kind: PacketCtx, ctx: Reg, out_off: i16, on_reject: &str) -> Result<Program, PatternError> {
    const P: &str = "parse_ports";
    check_stack(P, "the output", out_off, PacketInfo::SIZE, 8)?;
    if matches!(ctx, Reg::R0 | Reg::R2 | Reg::R3 | Reg::R4 | Reg::R5 | Reg::R10) {
        return invalid(P, "the context register must not be r0, r2-r5 or r10");
    }
    let prog = match kind {
        PacketCtx::Xdp => ProgType::Xdp,
        PacketCtx::Tc => ProgType::SchedCls,
    };
    let (data, data_end) = (ctx_field(prog, "data")?, ctx_field(prog, "data_end")?);
    let l = Labels::fresh();
    let (v6, l4, len) = (l.name("v6"), l.name("l4"), l.name("len"));
    let reject = on_reject;
    let out = |f: i16| out_off + f;
    let mut p = zero_stack(out_off, PacketInfo::SIZE)?;
    p.push(ldx(Size::W, Reg::R2, ctx, data));
    p.push(ldx(Size::W, Reg::R3, ctx, data_end));
    let check = |p: &mut Program, n: i32| {
        p.push(mov64(Reg::R4, Reg::R2));
        p.push(add64(Reg::R4, n));
        p.push(jmp_if(JmpCond::Gt, Reg::R4, Reg::R3, reject));
    };
    check(&mut p, 14);
    be16_load(&mut p, Reg::R2, 12);
    p.push(stx(Size::H, Reg::R10, out(PacketInfo::ETHERTYPE), Reg::R5));
    p.push(jmp_if(JmpCond::Eq, Reg::R5, 0x86dd, v6.as_str()));
    p.push(jmp_if(JmpCond::Ne, Reg::R5, 0x0800, reject));
    check(&mut p, 34);
    be16_load(&mut p, Reg::R2, 20);
    p.push(alu64(AluOp::And, Reg::R5, 0x1fff));
    p.push(jmp_if(JmpCond::Ne, Reg::R5, 0, reject));
    p.push(ldx(Size::B, Reg::R0, Reg::R2, 23));
    p.push(ldx(Size::B, Reg::R5, Reg::R2, 14));
    p.push(mov64(Reg::R4, Reg::R5));
    p.push(alu64(AluOp::Rsh, Reg::R4, 4));
    p.push(jmp_if(JmpCond::Ne, Reg::R4, 4, reject));
    p.push(alu64(AluOp::And, Reg::R5, 15));
    p.push(jmp_if(JmpCond::Lt, Reg::R5, 5, reject));
    p.push(alu64(AluOp::Lsh, Reg::R5, 2));
    p.push(mov64(Reg::R4, Reg::R2));
    p.push(add64(Reg::R4, 14));
    p.push(add64(Reg::R4, Reg::R5));
    p.push(ja(l4.as_str()));
    p.label(v6);
    check(&mut p, 54);
    p.push(ldx(Size::B, Reg::R5, Reg::R2, 14));
    p.push(alu64(AluOp::Rsh, Reg::R5, 4));
    p.push(jmp_if(JmpCond::Ne, Reg::R5, 6, reject));
    p.push(ldx(Size::B, Reg::R0, Reg::R2, 20));
    p.label(l4);
    p.push(stx(Size::B, Reg::R10, out(PacketInfo::L4_PROTO), Reg::R0));
    p.push(mov64(Reg::R5, Reg::R4));
    p.push(add64(Reg::R5, 8));
    p.push(jmp_if(JmpCond::Eq, Reg::R0, 17, len.as_str()));
    p.push(jmp_if(JmpCond::Ne, Reg::R0, 6, reject));
    p.push(add64(Reg::R5, 12));
    p.label(len);
    p.push(jmp_if(JmpCond::Gt, Reg::R5, Reg::R3, reject));
    be16_load(&mut p, Reg::R4, 0);
    p.push(stx(Size::H, Reg::R10, out(PacketInfo::SPORT), Reg::R5));
    be16_load(&mut p, Reg::R4, 2);
    p.push(stx(Size::H, Reg::R10, out(PacketInfo::DPORT), Reg::R5));
    p.push(mov64(Reg::R5, Reg::R4));
    p.push(alu64(AluOp::Sub, Reg::R5, Reg::R2));
    p.push(stx(Size::H, Reg::R10, out(PacketInfo::L4_OFFSET), Reg::R5));
    Ok(p)
}

/// r0 = the IPv4 header checksum over `len` bytes (20..=60, a multiple of 4) at `hdr`, via
/// `bpf_csum_diff` and a fold. Clobbers r0–r5.
pub fn ipv4_checksum(hdr: Reg, len: i32) -> Result<Program, PatternError> {
    if !(20..=60).contains(&len) || len % 4 != 0 {
        return invalid("ipv4_checksum", format!("an IPv4 header is 20..=60 bytes in 4-byte words, not {len}"));
    }
    let mut p = Program::new();
    p.push(mov64(Reg::R3, hdr));
    p.push(mov64(Reg::R1, 0));
    p.push(mov64(Reg::R2, 0));
    p.push(mov64(Reg::R4, len));
    p.push(mov64(Reg::R5, 0));
    p.push(call("bpf_csum_diff"));
    for first in [true, false] {
        p.push(mov32(Reg::R1, Reg::R0));
        p.push(alu32(AluOp::Rsh, Reg::R1, 16));
        if first {
            p.push(alu32(AluOp::And, Reg::R0, 0xffff));
        }
        p.push(alu32(AluOp::Add, Reg::R0, Reg::R1));
    }
    p.push(alu32(AluOp::Xor, Reg::R0, 0xffff));
    p.push(alu32(AluOp::And, Reg::R0, 0xffff));
    Ok(p)
}

/// The most a segment [`ipv4_l4_checksum`] sums may be: an Ethernet MTU's IPv4 payload. It
/// bounds the verifier's walk of the loop (about 25 instructions and two pending branches per
/// word).
pub const L4_CHECKSUM_MAX_LEN: u16 = 1480;

/// r0 = the TCP/UDP checksum (memory order) of the IPv4 packet with its header at `ip` and its
/// L4 header at `l4` (`ip + IHL × 4`), over the pseudo-header and the segment of the length the
/// header gives (total length − IHL × 4, at most `max_len` ≤ [`L4_CHECKSUM_MAX_LEN`]). Jumps to
/// `on_bad` if the header or the segment extends past `data_end`, the total length is shorter
/// than the header, or the segment is longer than `max_len`. `ip`, `l4` and `data_end` must be
/// distinct registers among r6–r9. Clobbers r0–r5.
pub fn ipv4_l4_checksum(ip: Reg, l4: Reg, data_end: Reg, max_len: u16, on_bad: &str) -> Result<Program, PatternError> {
    const P: &str = "ipv4_l4_checksum";
    check_callee_saved(P, "the IPv4 header register", ip)?;
    check_callee_saved(P, "the L4 header register", l4)?;
    check_callee_saved(P, "the data_end register", data_end)?;
    if ip == l4 || ip == data_end || l4 == data_end {
        return invalid(P, format!("the IPv4 header ({ip:?}), L4 header ({l4:?}) and data_end ({data_end:?}) registers must differ"));
    }
    if max_len == 0 || max_len > L4_CHECKSUM_MAX_LEN {
        return invalid(P, format!("max_len must be 1..={L4_CHECKSUM_MAX_LEN}, not {max_len}"));
    }
    let l = Labels::fresh();
    let (word, tail, fold) = (l.name("word"), l.name("tail"), l.name("fold"));
    let mut p = Program::new();
    let be16_add = |p: &mut Program, base: Reg, off: i16| {
        p.push(ldx(Size::H, Reg::R5, base, off));
        p.push(endian(ByteOrder::ToBe, 16, Reg::R5));
        p.push(add64(Reg::R0, Reg::R5));
    };
    p.push(mov64(Reg::R4, ip)).push(add64(Reg::R4, 20));
    p.push(jmp_if(JmpCond::Gt, Reg::R4, data_end, on_bad));
    p.push(ldx(Size::H, Reg::R0, ip, 12)).push(endian(ByteOrder::ToBe, 16, Reg::R0));
    for off in [14, 16, 18] {
        be16_add(&mut p, ip, off);
    }
    p.push(ldx(Size::B, Reg::R5, ip, 9)).push(add64(Reg::R0, Reg::R5));
    p.push(ldx(Size::H, Reg::R2, ip, 2)).push(endian(ByteOrder::ToBe, 16, Reg::R2));
    p.push(ldx(Size::B, Reg::R5, ip, 0));
    p.push(alu64(AluOp::And, Reg::R5, 15)).push(alu64(AluOp::Lsh, Reg::R5, 2));
    p.push(jmp_if(JmpCond::Gt, Reg::R5, Reg::R2, on_bad));
    p.push(alu64(AluOp::Sub, Reg::R2, Reg::R5));
    p.push(jmp_if(JmpCond::Gt, Reg::R2, max_len as i32, on_bad));
    p.push(add64(Reg::R0, Reg::R2));
    p.push(mov64(Reg::R1, l4));
    p.label(word.as_str());
    p.push(jmp_if(JmpCond::Lt, Reg::R2, 2, tail.as_str()));
    p.push(mov64(Reg::R4, Reg::R1)).push(add64(Reg::R4, 2));
    p.push(jmp_if(JmpCond::Gt, Reg::R4, data_end, on_bad));
    be16_add(&mut p, Reg::R1, 0);
    p.push(add64(Reg::R1, 2)).push(alu64(AluOp::Sub, Reg::R2, 2));
    p.push(ja(word.as_str()));
    p.label(tail);
    p.push(jmp_if(JmpCond::Eq, Reg::R2, 0, fold.as_str()));
    p.push(mov64(Reg::R4, Reg::R1)).push(add64(Reg::R4, 1));
    p.push(jmp_if(JmpCond::Gt, Reg::R4, data_end, on_bad));
    p.push(ldx(Size::B, Reg::R5, Reg::R1, 0)).push(alu64(AluOp::Lsh, Reg::R5, 8)).push(add64(Reg::R0, Reg::R5));
    p.label(fold);
    for _ in 0..2 {
        p.push(mov64(Reg::R5, Reg::R0)).push(alu64(AluOp::Rsh, Reg::R5, 16));
        p.push(alu64(AluOp::And, Reg::R0, 0xffff)).push(add64(Reg::R0, Reg::R5));
    }
    p.push(alu64(AluOp::Xor, Reg::R0, 0xffff)).push(alu64(AluOp::And, Reg::R0, 0xffff));
    p.push(endian(ByteOrder::ToBe, 16, Reg::R0));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        assert!(ipv4_checksum(Reg::R6, 22).is_err());
        assert!(ipv4_checksum(Reg::R6, 64).is_err());
        assert_eq!(ipv4_checksum(Reg::R6, 20).unwrap().insns().count(), 15);
        assert!(parse_ports(PacketCtx::Xdp, Reg::R2, -16, "r").is_err());
        assert!(parse_ports(PacketCtx::Xdp, Reg::R1, -12, "r").is_err());
        assert!(PacketInfo::from_bytes(&[0; 15]).is_none());
        assert!(ipv4_l4_checksum(Reg::R6, Reg::R7, Reg::R8, 1480, "bad").is_ok());
        assert!(ipv4_l4_checksum(Reg::R6, Reg::R7, Reg::R8, 1481, "bad").is_err());
        assert!(ipv4_l4_checksum(Reg::R6, Reg::R6, Reg::R8, 100, "bad").is_err());
        assert!(ipv4_l4_checksum(Reg::R2, Reg::R7, Reg::R8, 100, "bad").is_err());
    }
}
