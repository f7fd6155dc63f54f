//! A small gzip (RFC 1952) / DEFLATE (RFC 1951) decoder, for reading `/proc/config.gz` when an
//! object has `.kconfig` externs (libbpf uses zlib for it; bpfkit has no compression
//! dependency). Canonical Huffman decoding one bit at a time: a kernel config is a few hundred
//! KiB, read once per load. Malformed input is an error, never a panic.

/// Decompress a whole gzip file (its first member), checking the trailer's CRC-32 and length.
pub(crate) fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < 18 || data[0] != 0x1f || data[1] != 0x8b {
        return Err("not a gzip file".into());
    }
    if data[2] != 8 {
        return Err(format!("gzip compression method {} is not deflate", data[2]));
    }
    let flags = data[3];
    let mut pos = 10;
    if flags & 4 != 0 {
        let xlen = data.get(pos..pos + 2).ok_or("truncated gzip header")?;
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            let rest = data.get(pos..).ok_or("truncated gzip header")?;
            pos += rest.iter().position(|&b| b == 0).ok_or("unterminated gzip header string")? + 1;
        }
    }
    if flags & 2 != 0 {
        pos += 2;
    }
    let body = data.get(pos..).ok_or("truncated gzip header")?;
    let (out, used) = inflate(body)?;
    let trailer = body.get(used..used + 8).ok_or("gzip trailer missing")?;
    let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let len = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
    if len != out.len() as u32 || crc != crc32(&out) {
        return Err("gzip trailer does not match the data (corrupt file)".into());
    }
    Ok(out)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u32,
    count: u32,
}

impl Bits<'_> {
    fn bits(&mut self, n: u32) -> Result<u32, String> {
        while self.count < n {
            let b = *self.data.get(self.pos).ok_or("deflate stream ends early")?;
            self.pos += 1;
            self.buf |= u32::from(b) << self.count;
            self.count += 8;
        }
        let v = self.buf & ((1u64 << n) - 1) as u32;
        self.buf = if n >= 32 { 0 } else { self.buf >> n };
        self.count -= n;
        Ok(v)
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Huffman {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[usize::from(l)] += 1;
        }
        count[0] = 0;
        let mut offs = [0u16; 16];
        for len in 1..15 {
            offs[len + 1] = offs[len] + count[len];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[usize::from(offs[usize::from(l)])] = sym as u16;
                offs[usize::from(l)] += 1;
            }
        }
        Huffman { count, symbol }
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.bits(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - first < count {
                return self.symbol.get((index + code - first) as usize).copied().ok_or_else(|| "bad code".into());
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err("invalid Huffman code in deflate stream".into())
    }
}

const LEN_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CLEN_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// Inflate a raw DEFLATE stream: the data and how many input bytes it took.
fn inflate(data: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut bits = Bits { data, pos: 0, buf: 0, count: 0 };
    let mut out = Vec::with_capacity(data.len() * 4);
    loop {
        let last = bits.bits(1)?;
        match bits.bits(2)? {
            0 => {
                bits.buf = 0;
                bits.count = 0;
                let hdr = data.get(bits.pos..bits.pos + 4).ok_or("stored block header truncated")?;
                let len = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
                if u16::from_le_bytes([hdr[2], hdr[3]]) != !(len as u16) {
                    return Err("stored block length check fails".into());
                }
                bits.pos += 4;
                out.extend_from_slice(data.get(bits.pos..bits.pos + len).ok_or("stored block truncated")?);
                bits.pos += len;
            }
            1 => {
                let mut lengths = [0u8; 288];
                lengths[..144].fill(8);
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                lengths[280..].fill(8);
                codes(&mut bits, &mut out, &Huffman::new(&lengths), &Huffman::new(&[5; 30]))?;
            }
            2 => {
                let nlen = bits.bits(5)? as usize + 257;
                let ndist = bits.bits(5)? as usize + 1;
                let ncode = bits.bits(4)? as usize + 4;
                let mut clen = [0u8; 19];
                for &i in &CLEN_ORDER[..ncode] {
                    clen[i] = bits.bits(3)? as u8;
                }
                let clen = Huffman::new(&clen);
                let mut lengths = vec![0u8; nlen + ndist];
                let mut i = 0;
                while i < nlen + ndist {
                    let sym = clen.decode(&mut bits)?;
                    let (value, repeat) = match sym {
                        0..=15 => (sym as u8, 1),
                        16 => (
                            *lengths.get(i.wrapping_sub(1)).ok_or("repeat with no previous length")?,
                            3 + bits.bits(2)?,
                        ),
                        17 => (0, 3 + bits.bits(3)?),
                        _ => (0, 11 + bits.bits(7)?),
                    };
                    for _ in 0..repeat {
                        *lengths.get_mut(i).ok_or("code lengths overrun")? = value;
                        i += 1;
                    }
                }
                let (lit, dist) = lengths.split_at(nlen);
                codes(&mut bits, &mut out, &Huffman::new(lit), &Huffman::new(dist))?;
            }
            _ => return Err("invalid deflate block type 3".into()),
        }
        if last == 1 {
            return Ok((out, bits.pos));
        }
    }
}

fn codes(bits: &mut Bits<'_>, out: &mut Vec<u8>, lit: &Huffman, dist: &Huffman) -> Result<(), String> {
    loop {
        let sym = usize::from(lit.decode(bits)?);
        match sym {
            0..=255 => out.push(sym as u8),
            256 => return Ok(()),
            _ => {
                let i = sym - 257;
                let len = usize::from(*LEN_BASE.get(i).ok_or("invalid length code")?)
                    + bits.bits(u32::from(LEN_EXTRA[i]))? as usize;
                let d = usize::from(dist.decode(bits)?);
                let back = usize::from(*DIST_BASE.get(d).ok_or("invalid distance code")?)
                    + bits.bits(u32::from(DIST_EXTRA[d]))? as usize;
                let start = out.len().checked_sub(back).ok_or("distance reaches before the start")?;
                for k in 0..len {
                    let b = out[start + k];
                    out.push(b);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_huffman_block_and_corruption() {
        // `printf 'hello hello hello\n' | gzip -n` (a fixed-Huffman block with a back-reference).
        let gz = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x40,
            0x90, 0x5c, 0x00, 0x3b, 0x7c, 0x8a, 0xdf, 0x12, 0x00, 0x00, 0x00,
        ];
        assert_eq!(gunzip(&gz).as_deref(), Ok(&b"hello hello hello\n"[..]));
        assert!(gunzip(&gz[..20]).is_err());
        let mut bad = gz;
        bad[20] ^= 1;
        assert!(gunzip(&bad).is_err());
    }

    #[test]
    fn dynamic_huffman_block() {
        // `seq 1 200 | gzip -n -9`.
        const GZ: &[u8] = &[
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x1d, 0xd2, 0xc9, 0x11, 0xc0, 0x30, 0x0c, 0xc3,
            0xc0, 0x3f, 0xaa, 0x31, 0xe5, 0xbb, 0xff, 0xc6, 0x02, 0xe7, 0xcf, 0xc9, 0xb1, 0x50, 0x28, 0x3a, 0x83, 0xc9,
            0x62, 0x73, 0xb8, 0xa4, 0x91, 0x90, 0x22, 0x9d, 0x0c, 0x32, 0xc9, 0x22, 0x9b, 0x1c, 0x72, 0xa9, 0x46, 0x85,
            0x2a, 0xaa, 0x53, 0x83, 0x9a, 0xd4, 0xa2, 0x36, 0x75, 0xa8, 0x4b, 0x6f, 0xf4, 0xd0, 0x7d, 0x64, 0xa7, 0x0f,
            0xfa, 0xa4, 0x2f, 0xfa, 0xa6, 0x1f, 0xfa, 0x65, 0x34, 0x46, 0x18, 0xc5, 0xf0, 0x8d, 0x83, 0x31, 0x19, 0x8b,
            0xb1, 0x19, 0x87, 0x71, 0x99, 0x8d, 0x19, 0x66, 0x31, 0x3b, 0xd3, 0x0f, 0x9a, 0xcc, 0xc5, 0xdc, 0xcc, 0xc3,
            0xbc, 0xac, 0xc6, 0x0a, 0xab, 0x58, 0x9d, 0x35, 0x58, 0x7e, 0xef, 0x62, 0x6d, 0xd6, 0x61, 0x5d, 0x76, 0x63,
            0x87, 0x5d, 0xec, 0xce, 0x1e, 0xec, 0xc9, 0xf6, 0x77, 0x36, 0xfb, 0xb0, 0x2f, 0xa7, 0x71, 0xc2, 0x29, 0x4e,
            0xe7, 0x0c, 0xce, 0xe4, 0x2c, 0x8e, 0x7f, 0x7b, 0x38, 0x97, 0xdb, 0xb8, 0xe1, 0x16, 0xb7, 0x73, 0x07, 0x77,
            0x72, 0x17, 0x77, 0x73, 0xc5, 0x78, 0x1a, 0x72, 0x34, 0x3d, 0x9a, 0x20, 0x4d, 0x91, 0x26, 0x49, 0xd3, 0xa4,
            0x89, 0xd2, 0x54, 0x69, 0xb2, 0x34, 0x77, 0x3f, 0x9b, 0xbb, 0x07, 0xf7, 0xe4, 0x1e, 0xdd, 0xb3, 0x7b, 0x78,
            0x4f, 0xef, 0xf1, 0xe9, 0x17, 0x01, 0x53, 0xcf, 0xd7, 0x9d, 0x86, 0x11, 0x31, 0x2a, 0x46, 0xc6, 0xe8, 0x18,
            0x21, 0xa3, 0x64, 0xa4, 0x8c, 0x96, 0xe9, 0x2f, 0x84, 0x3b, 0x39, 0xa3, 0x67, 0x04, 0x8d, 0xa2, 0x91, 0x34,
            0x9a, 0x46, 0xd4, 0xa8, 0x1a, 0x59, 0x33, 0x5e, 0x31, 0x77, 0xca, 0x46, 0xda, 0x68, 0x1b, 0x71, 0xa3, 0x6e,
            0xe4, 0x8d, 0xbe, 0x11, 0x38, 0x0a, 0x67, 0xbe, 0xb4, 0xee, 0x44, 0x8e, 0xca, 0x91, 0x39, 0x3a, 0x47, 0xe8,
            0x28, 0x1d, 0xa9, 0xa3, 0x75, 0xc4, 0xce, 0x7a, 0x37, 0xe0, 0x4e, 0xef, 0x08, 0x1e, 0xc5, 0x23, 0x79, 0x34,
            0x8f, 0xe8, 0x51, 0x3d, 0xb2, 0x47, 0xf7, 0xec, 0x77, 0x2c, 0xee, 0xa4, 0x8f, 0xf6, 0x11, 0x3f, 0xea, 0x47,
            0xfe, 0xe8, 0x1f, 0x03, 0xc4, 0x02, 0x31, 0x41, 0xce, 0xbb, 0x2a, 0x77, 0x56, 0x88, 0x19, 0x62, 0x87, 0x18,
            0x22, 0x96, 0x88, 0x29, 0x62, 0x8b, 0x18, 0x23, 0xd6, 0xc8, 0x7d, 0xe7, 0xf7, 0xee, 0xaf, 0xf1, 0x01, 0x98,
            0xef, 0x28, 0x34, 0xb4, 0x02, 0x00, 0x00,
        ];
        let want: String = (1..=200).map(|i| format!("{i}\n")).collect();
        assert_eq!(gunzip(GZ).as_deref(), Ok(want.as_bytes()));
    }

    #[test]
    fn stored_block() {
        // 64 random bytes through `gzip -n -9`, which stores them.
        const GZ: &[u8] = &[
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x01, 0x40, 0x00, 0xbf, 0xff, 0xf0, 0x60, 0xf1,
            0x5e, 0x36, 0x22, 0x9d, 0x23, 0xc0, 0xfa, 0x86, 0x0b, 0xf0, 0x20, 0xd5, 0xdb, 0x99, 0x6e, 0x0a, 0x75, 0xa6,
            0x96, 0x53, 0x56, 0xe8, 0xf3, 0xcb, 0x4c, 0x91, 0x3d, 0x66, 0x43, 0xe8, 0x81, 0x55, 0xb1, 0xec, 0x21, 0xc9,
            0x5a, 0x24, 0x5a, 0x06, 0x6e, 0x0f, 0x10, 0x86, 0xa7, 0xd5, 0x34, 0xdd, 0x80, 0x7a, 0xb1, 0x4b, 0x54, 0x56,
            0xe3, 0xd8, 0xbf, 0x2c, 0x8e, 0x04, 0x5c, 0x9f, 0x2c, 0x2e, 0x1a, 0x40, 0x00, 0x00, 0x00,
        ];
        const RAW: &[u8] = &[
            0xf0, 0x60, 0xf1, 0x5e, 0x36, 0x22, 0x9d, 0x23, 0xc0, 0xfa, 0x86, 0x0b, 0xf0, 0x20, 0xd5, 0xdb, 0x99, 0x6e,
            0x0a, 0x75, 0xa6, 0x96, 0x53, 0x56, 0xe8, 0xf3, 0xcb, 0x4c, 0x91, 0x3d, 0x66, 0x43, 0xe8, 0x81, 0x55, 0xb1,
            0xec, 0x21, 0xc9, 0x5a, 0x24, 0x5a, 0x06, 0x6e, 0x0f, 0x10, 0x86, 0xa7, 0xd5, 0x34, 0xdd, 0x80, 0x7a, 0xb1,
            0x4b, 0x54, 0x56, 0xe3, 0xd8, 0xbf, 0x2c, 0x8e, 0x04, 0x5c,
        ];
        assert_eq!(gunzip(GZ).as_deref(), Ok(RAW));
    }
}
