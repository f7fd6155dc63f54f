//! The REPL's packet builder: `packet udp|tcp SRC:PORT DST:PORT [payload=HEX]` → an Ethernet
//! frame with an IPv4 or IPv6 header (by the addresses: `[2001:db8::1]:53` for IPv6) and a
//! UDP or TCP header, checksums filled in, for `:run`.

use std::net::{IpAddr, SocketAddr};

/// Source MAC 02:00:00:00:00:01, destination 02:00:00:00:00:02 (locally administered).
const SRC_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Build the packet the words after `packet` describe.
pub fn build(words: &[&str]) -> Result<Vec<u8>, String> {
    const USAGE: &str = "usage: packet udp|tcp SRC:PORT DST:PORT [payload=HEX]";
    let [proto, src, dst, rest @ ..] = words else {
        return Err(USAGE.into());
    };
    let proto: u8 = match *proto {
        "udp" => 17,
        "tcp" => 6,
        other => return Err(format!("unknown protocol `{other}`: udp or tcp ({USAGE})")),
    };
    let addr = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("`{s}` is not ADDRESS:PORT (`10.0.0.1:53`, `[2001:db8::1]:53`)"))
    };
    let (src, dst) = (addr(src)?, addr(dst)?);
    let mut payload = Vec::new();
    for w in rest {
        match w.split_once('=') {
            Some(("payload", hex)) => {
                payload = crate::hex::parse(hex).map_err(|e| format!("payload: {}", e.message))?;
            }
            _ => return Err(format!("unknown packet option `{w}` ({USAGE})")),
        }
    }
    let l4 = l4_header(proto, src.port(), dst.port(), &payload);
    let mut segment = l4;
    segment.extend_from_slice(&payload);
    let mut frame = Vec::new();
    frame.extend_from_slice(&DST_MAC);
    frame.extend_from_slice(&SRC_MAC);
    let csum_offset = if proto == 17 { 6 } else { 16 };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let total = u16::try_from(20 + segment.len()).map_err(|_| "packet too long")?;
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = checksum(&ip, 0);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut sum = pseudo_sum(&s.octets(), &d.octets());
            sum += u32::from(proto) + segment.len() as u32;
            fill_checksum(&mut segment, csum_offset, sum);
            frame.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            let len = u16::try_from(segment.len()).map_err(|_| "packet too long")?;
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&len.to_be_bytes());
            ip.extend_from_slice(&[proto, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let mut sum = pseudo_sum(&s.octets(), &d.octets());
            sum += u32::from(proto) + segment.len() as u32;
            fill_checksum(&mut segment, csum_offset, sum);
            frame.extend_from_slice(&ip);
        }
        _ => return Err("source and destination must both be IPv4 or both IPv6".into()),
    }
    frame.extend_from_slice(&segment);
    Ok(frame)
}

/// The UDP (8 bytes) or TCP (20 bytes, SYN) header, checksum zero.
fn l4_header(proto: u8, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    if proto == 17 {
        h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
    } else {
        // seq 1, ack 0, data offset 5 words, SYN, window 65535, checksum 0, urgent 0.
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    }
    h
}

/// The ones'-complement sum of the addresses of the pseudo header.
fn pseudo_sum(src: &[u8], dst: &[u8]) -> u32 {
    words_sum(src) + words_sum(dst)
}

fn words_sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// The Internet checksum of `data` starting from `initial`.
fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial + words_sum(data);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn fill_checksum(segment: &mut [u8], offset: usize, pseudo: u32) {
    let c = checksum(segment, pseudo);
    // UDP sends a zero checksum as all ones.
    let c = if c == 0 { 0xffff } else { c };
    segment[offset..offset + 2].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_v4() {
        let p = build(&["udp", "10.0.0.1:1234", "10.0.0.2:53", "payload=abcd"]).unwrap();
        assert_eq!(p.len(), 14 + 20 + 8 + 2);
        assert_eq!(&p[12..14], &[0x08, 0x00]);
        // The IPv4 header checksums to zero.
        assert_eq!(checksum(&p[14..34], 0), 0);
        assert_eq!(&p[34..38], &[0x04, 0xd2, 0x00, 0x35]);
    }

    #[test]
    fn tcp_v6_and_errors() {
        let p = build(&["tcp", "[2001:db8::1]:80", "[2001:db8::2]:8080"]).unwrap();
        assert_eq!(p.len(), 14 + 40 + 20);
        assert_eq!(&p[12..14], &[0x86, 0xdd]);
        assert!(build(&["udp", "10.0.0.1:1", "[::1]:2"]).is_err());
        assert!(build(&["icmp", "a", "b"]).unwrap_err().contains("udp or tcp"));
    }
}
