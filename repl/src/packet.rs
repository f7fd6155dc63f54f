//! Packet words (the REPL's `:run`/`:case`, `bpfkit test --case`): `packet udp|tcp SRC:PORT DST:PORT [payload=HEX]` → an Ethernet
//! frame with an IPv4 or IPv6 header (by the addresses: `[2001:db8::1]:53` for IPv6) and a
//! UDP or TCP (SYN) header, checksums filled in — built by `bpfkit::testing::packet`.

use std::net::SocketAddr;

use bpfkit::testing::packet::Packet;

/// Build the packet the words after `packet` describe.
pub fn build(words: &[&str]) -> Result<Vec<u8>, String> {
    const USAGE: &str = "usage: packet udp|tcp SRC:PORT DST:PORT [payload=HEX]";
    let [proto, src, dst, rest @ ..] = words else {
        return Err(USAGE.into());
    };
    let addr = |s: &str| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("`{s}` is not ADDRESS:PORT (`10.0.0.1:53`, `[2001:db8::1]:53`)"))
    };
    let make: fn(SocketAddr, SocketAddr) -> Packet = match *proto {
        "udp" => Packet::udp,
        "tcp" => Packet::tcp,
        other => return Err(format!("unknown protocol `{other}`: udp or tcp ({USAGE})")),
    };
    let mut packet = make(addr(src)?, addr(dst)?);
    for w in rest {
        match w.split_once('=') {
            Some(("payload", hex)) => {
                packet = packet.payload(crate::hex::parse(hex).map_err(|e| format!("payload: {}", e.message))?);
            }
            _ => return Err(format!("unknown packet option `{w}` ({USAGE})")),
        }
    }
    packet.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bpfkit::testing::packet::checksum;

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
        assert!(build(&["udp", "10.0.0.1:1", "[::1]:2"]).unwrap_err().contains("not the same IP version"));
        assert!(build(&["icmp", "a", "b"]).unwrap_err().contains("udp or tcp"));
    }
}
