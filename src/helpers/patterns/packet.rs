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

use super::loops::zero_stack;
use super::{call, check_stack, ctx_field, invalid, Labels, PatternError};
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
    pub ethertype: u16,
    pub l4_proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub l4_offset: u16,
}

impl PacketInfo {
    pub const SIZE: usize = 16;
    pub const ETHERTYPE: i16 = 0;
    pub const L4_PROTO: i16 = 2;
    pub const SPORT: i16 = 4;
    pub const DPORT: i16 = 6;
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
    }
}
