//! Typed packet builders for test runs: an Ethernet frame with an IPv4 or IPv6 header and a
//! TCP or UDP segment (or any IP protocol's raw payload), lengths and checksums filled in as a
//! real stack would, so programs that verify them accept the packets.
//!
//! ```
//! use bpfkit::testing::packet::{Packet, TcpFlags};
//! let syn = Packet::tcp("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap()).flags(TcpFlags::SYN).build().unwrap();
//! assert_eq!(syn.len(), 14 + 20 + 20);
//! assert_eq!(&syn[36..38], &80u16.to_be_bytes());          // the destination port
//! let dns = Packet::udp("[2001:db8::1]:5353".parse().unwrap(), "[2001:db8::2]:53".parse().unwrap()).payload(b"query").build().unwrap();
//! assert_eq!(&dns[12..14], &[0x86, 0xdd]);                  // IPv6
//! ```

use std::net::{IpAddr, SocketAddr};

/// TCP header flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, o: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | o.0)
    }
}

#[derive(Clone, Debug)]
enum Transport {
    Tcp { sport: u16, dport: u16, flags: TcpFlags, seq: u32 },
    Udp { sport: u16, dport: u16 },
    Raw { protocol: u8 },
}

/// A packet to build ([`Packet::tcp`], [`Packet::udp`], [`Packet::ip`]), then adjusted with
/// the setters and turned into bytes by [`Packet::build`].
#[derive(Clone, Debug)]
pub struct Packet {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    transport: Transport,
    payload: Vec<u8>,
}

/// Why a packet cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The source is IPv4 and the destination IPv6, or the reverse.
    #[error("source {src} and destination {dst} are not the same IP version")]
    MixedFamilies {
        /// The source address.
        src: IpAddr,
        /// The destination address.
        dst: IpAddr,
    },
    /// The payload does not fit the header's 16-bit length.
    #[error("a {len}-byte payload does not fit an IP packet")]
    TooLong {
        /// The payload's length.
        len: usize,
    },
}

impl Packet {
    /// A TCP segment (a SYN unless [`Packet::flags`] says otherwise) from `src` to `dst`.
    pub fn tcp(src: SocketAddr, dst: SocketAddr) -> Packet {
        Packet::new(src.ip(), dst.ip(), Transport::Tcp { sport: src.port(), dport: dst.port(), flags: TcpFlags::SYN, seq: 1 })
    }

    /// A UDP datagram from `src` to `dst`.
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Packet {
        Packet::new(src.ip(), dst.ip(), Transport::Udp { sport: src.port(), dport: dst.port() })
    }

    /// An IP packet of protocol number `protocol` whose payload is all of the transport (ICMP,
    /// GRE, a protocol of your own).
    pub fn ip(src: IpAddr, dst: IpAddr, protocol: u8) -> Packet {
        Packet::new(src, dst, Transport::Raw { protocol })
    }

    fn new(src: IpAddr, dst: IpAddr, transport: Transport) -> Packet {
        // Locally administered addresses, source ...:01, destination ...:02.
        Packet { src_mac: [2, 0, 0, 0, 0, 1], dst_mac: [2, 0, 0, 0, 0, 2], src, dst, ttl: 64, transport, payload: Vec::new() }
    }

    /// The TCP flags (no effect on other protocols).
    pub fn flags(mut self, flags: TcpFlags) -> Packet {
        if let Transport::Tcp { flags: f, .. } = &mut self.transport {
            *f = flags;
        }
        self
    }

    /// The TCP sequence number (no effect on other protocols).
    pub fn seq(mut self, seq: u32) -> Packet {
        if let Transport::Tcp { seq: s, .. } = &mut self.transport {
            *s = seq;
        }
        self
    }

    /// The bytes after the transport header.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Packet {
        self.payload = payload.into();
        self
    }

    /// The IPv4 TTL or IPv6 hop limit (64 by default).
    pub fn ttl(mut self, ttl: u8) -> Packet {
        self.ttl = ttl;
        self
    }

    /// The Ethernet source and destination addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Packet {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// The frame: Ethernet, IP, transport, payload; lengths and checksums filled in.
    pub fn build(&self) -> Result<Vec<u8>, PacketError> {
        let (protocol, mut segment, csum_at) = match self.transport {
            Transport::Tcp { sport, dport, flags, seq } => {
                let mut h = Vec::with_capacity(20 + self.payload.len());
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&seq.to_be_bytes());
                // ack 0, data offset 5 words, flags, window 65535, checksum, urgent pointer.
                h.extend_from_slice(&[0, 0, 0, 0, 0x50, flags.0, 0xff, 0xff, 0, 0, 0, 0]);
                (6u8, h, Some(16))
            }
            Transport::Udp { sport, dport } => {
                let len = u16::try_from(8 + self.payload.len()).map_err(|_| PacketError::TooLong { len: self.payload.len() })?;
                let mut h = Vec::with_capacity(8 + self.payload.len());
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                (17u8, h, Some(6))
            }
            Transport::Raw { protocol } => (protocol, Vec::new(), None),
        };
        segment.extend_from_slice(&self.payload);
        let too_long = || PacketError::TooLong { len: self.payload.len() };
        let mut frame = Vec::with_capacity(14 + 40 + segment.len());
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        let pseudo = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                frame.extend_from_slice(&0x0800u16.to_be_bytes());
                let total = u16::try_from(20 + segment.len()).map_err(|_| too_long())?;
                let mut ip = vec![0x45, 0];
                ip.extend_from_slice(&total.to_be_bytes());
                ip.extend_from_slice(&[0, 0, 0x40, 0, self.ttl, protocol, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                let c = checksum(&ip, 0);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                frame.extend_from_slice(&ip);
                words_sum(&s.octets()) + words_sum(&d.octets())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                frame.extend_from_slice(&0x86ddu16.to_be_bytes());
                let len = u16::try_from(segment.len()).map_err(|_| too_long())?;
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend_from_slice(&len.to_be_bytes());
                ip.extend_from_slice(&[protocol, self.ttl]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                frame.extend_from_slice(&ip);
                words_sum(&s.octets()) + words_sum(&d.octets())
            }
            (src, dst) => return Err(PacketError::MixedFamilies { src, dst }),
        };
        if let Some(at) = csum_at {
            let c = checksum(&segment, pseudo + u32::from(protocol) + segment.len() as u32);
            // UDP sends a computed zero as all ones (zero means "no checksum").
            let c = if c == 0 && protocol == 17 { 0xffff } else { c };
            segment[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        frame.extend_from_slice(&segment);
        Ok(frame)
    }
}

fn words_sum(data: &[u8]) -> u32 {
    data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

/// The Internet checksum (RFC 1071) of `data`, starting from the partial sum `initial`.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial) + u64::from(words_sum(data));
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let p = Packet::udp("10.0.0.1:1234".parse().unwrap(), "10.0.0.2:53".parse().unwrap()).payload(vec![0xab, 0xcd]).build().unwrap();
        assert_eq!(p.len(), 14 + 20 + 8 + 2);
        assert_eq!(checksum(&p[14..34], 0), 0, "IPv4 header");
        assert_eq!(&p[34..38], &[0x04, 0xd2, 0x00, 0x35]);
        // The UDP checksum over the pseudo header verifies too.
        let pseudo = words_sum(&p[26..34]) + 17 + (p.len() - 34) as u32;
        assert_eq!(checksum(&p[34..], pseudo), 0);
        let t = Packet::tcp("[2001:db8::1]:80".parse().unwrap(), "[2001:db8::2]:8080".parse().unwrap()).flags(TcpFlags::SYN | TcpFlags::ACK).build().unwrap();
        assert_eq!((t.len(), t[14 + 40 + 13]), (14 + 40 + 20, 0x12));
        let pseudo = words_sum(&t[22..54]) + 6 + 20;
        assert_eq!(checksum(&t[54..], pseudo), 0);
        assert!(Packet::udp("10.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()).build().is_err());
        let raw = Packet::ip("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 1).payload(vec![8, 0, 0, 0]).build().unwrap();
        assert_eq!((raw.len(), raw[23]), (14 + 20 + 4, 1));
    }
}
