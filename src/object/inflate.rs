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
}
