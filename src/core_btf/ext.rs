//! `.BTF.ext`: the per-instruction annotations clang writes next to `.BTF` — function info
//! (which BTF `FUNC` starts at which instruction), line info (source file, line and column of
//! instructions) and CO-RE relocations ([`CoreRelo`]) — each grouped by the ELF section that
//! holds the instructions.
//!
//! Layout (libbpf's `btf_ext__new`): a header (`magic 0xeB9F`, version 1, flags, `hdr_len`,
//! then offset/length pairs of the func_info, line_info and — when `hdr_len` ≥ 32 —
//! core_relo subsections, relative to the header's end). Each subsection is a `u32` record
//! size followed by blocks of `{ sec_name_off, num_info, records[num_info] }`. Names and
//! strings are offsets into the `.BTF` string section, so parsing takes the object's [`Btf`].
//! Records may be larger than this reader knows (newer fields); only the known prefix is
//! read. In object files, every `insn_off` is a **byte** offset from the start of the section.
//!
//! Like `.BTF`, `.BTF.ext` is untrusted: every read is bounds-checked, and the checks libbpf
//! makes (alignment, minimum record sizes, no empty blocks) give a [`BtfExtError`] naming the
//! byte, never a panic.

use super::relo::{CoreRelo, RelocKind};
use super::types::{TypeId, MAGIC};
use super::Btf;

/// A malformed `.BTF.ext`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".BTF.ext at byte {offset}: {reason}")]
#[non_exhaustive]
pub struct BtfExtError {
    /// Byte offset in the `.BTF.ext` section of the malformed part.
    pub offset: usize,
    /// What is wrong there.
    pub reason: String,
}

/// `struct bpf_func_info`: the BTF `FUNC` of the function starting at `insn_off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncInfo {
    /// Byte offset of the function's first instruction in its section.
    pub insn_off: u32,
    /// The function's `BTF_KIND_FUNC` in the object's `.BTF`.
    pub type_id: TypeId,
}

/// `struct bpf_line_info`: where an instruction came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineInfo {
    /// Byte offset of the instruction in its section.
    pub insn_off: u32,
    /// The source file's name (from the `.BTF` string section).
    pub file_name: String,
    /// The source line's text.
    pub line: String,
    /// 1-based source line number (`line_col >> 10`).
    pub line_num: u32,
    /// Source column (`line_col & 0x3ff`).
    pub column: u32,
}

/// The records of one ELF section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtSection<T> {
    /// The ELF section's name (`tracepoint/syscalls/sys_enter_openat`, `.text`, …).
    pub name: String,
    /// The section's records, in `.BTF.ext` order.
    pub records: Vec<T>,
}

/// A parsed `.BTF.ext`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BtfExt {
    /// Function info (`struct bpf_func_info`) per program section.
    pub func_info: Vec<ExtSection<FuncInfo>>,
    /// Line info (`struct bpf_line_info`) per program section.
    pub line_info: Vec<ExtSection<LineInfo>>,
    /// CO-RE relocations (`struct bpf_core_relo`) per program section.
    pub core_relos: Vec<ExtSection<CoreRelo>>,
}

const HEADER_MIN: u32 = 24;
const HEADER_WITH_CORE: u32 = 32;
const FUNC_INFO_MIN: u32 = 8;
const LINE_INFO_MIN: u32 = 16;
const CORE_RELO_MIN: u32 = 16;

/// A bounds-checked reader of native-endian words.
struct Reader<'d> {
    data: &'d [u8],
}

impl Reader<'_> {
    fn u32(&self, off: usize) -> Result<u32, BtfExtError> {
        off.checked_add(4)
            .and_then(|end| self.data.get(off..end))
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| err(off, format!("a 4-byte read runs past the section's {} bytes", self.data.len())))
    }
}

fn err(offset: usize, reason: impl Into<String>) -> BtfExtError {
    BtfExtError { offset, reason: reason.into() }
}

impl BtfExt {
    /// Parse `.BTF.ext` bytes; `btf` is the same object's `.BTF` (for names and strings).
    pub fn parse(data: &[u8], btf: &Btf) -> Result<BtfExt, BtfExtError> {
        let r = Reader { data };
        if data.len() < 8 {
            return Err(err(0, format!("{} bytes is too short for a header", data.len())));
        }
        let magic = u16::from_ne_bytes([data[0], data[1]]);
        if magic != MAGIC {
            return Err(err(0, format!("bad magic {magic:#06x} (expected {MAGIC:#06x}, native byte order)")));
        }
        if data[2] != 1 {
            return Err(err(2, format!("version {}, expected 1", data[2])));
        }
        let hdr_len = r.u32(4)?;
        if hdr_len < HEADER_MIN || hdr_len as usize > data.len() {
            return Err(err(4, format!("hdr_len {hdr_len} (must be {HEADER_MIN}..={})", data.len())));
        }
        let sub = |at: usize, min: u32, what: &'static str| -> Result<Option<Blocks<'_>>, BtfExtError> {
            Blocks::new(data, hdr_len, r.u32(at)?, r.u32(at + 4)?, min, what)
        };
        let mut ext = BtfExt::default();
        let name = |b: &Blocks<'_>, off: usize, name_off: u32| str_at(btf, name_off, off, b.what);
        if let Some(blocks) = sub(8, FUNC_INFO_MIN, "func_info")? {
            ext.func_info =
                blocks.parse(&name, |rec| Ok(FuncInfo { insn_off: r.u32(rec)?, type_id: TypeId(r.u32(rec + 4)?) }))?;
        }
        if let Some(blocks) = sub(16, LINE_INFO_MIN, "line_info")? {
            ext.line_info = blocks.parse(&name, |rec| {
                let col = r.u32(rec + 12)?;
                Ok(LineInfo {
                    insn_off: r.u32(rec)?,
                    file_name: str_at(btf, r.u32(rec + 4)?, rec + 4, "line_info")?,
                    line: str_at(btf, r.u32(rec + 8)?, rec + 8, "line_info")?,
                    line_num: col >> 10,
                    column: col & 0x3ff,
                })
            })?;
        }
        if hdr_len >= HEADER_WITH_CORE {
            if let Some(blocks) = sub(24, CORE_RELO_MIN, "core_relo")? {
                ext.core_relos = blocks.parse(&name, |rec| {
                    let raw_kind = r.u32(rec + 12)?;
                    let kind = RelocKind::from_raw(raw_kind)
                        .ok_or_else(|| err(rec + 12, format!("unknown CO-RE relocation kind {raw_kind}")))?;
                    Ok(CoreRelo {
                        insn_off: r.u32(rec)?,
                        type_id: TypeId(r.u32(rec + 4)?),
                        access: str_at(btf, r.u32(rec + 8)?, rec + 8, "core_relo")?,
                        kind,
                    })
                })?;
            }
        }
        Ok(ext)
    }

    /// The CO-RE relocations of the ELF section `section` (empty when it has none).
    pub fn core_relos_of(&self, section: &str) -> &[CoreRelo] {
        self.core_relos.iter().find(|s| s.name == section).map(|s| s.records.as_slice()).unwrap_or_default()
    }

    /// How many CO-RE relocations there are in all sections.
    pub fn core_relo_count(&self) -> usize {
        self.core_relos.iter().map(|s| s.records.len()).sum()
    }
}

/// A string of the `.BTF` string section, for a record at byte `at`.
fn str_at(btf: &Btf, off: u32, at: usize, what: &str) -> Result<String, BtfExtError> {
    btf.str_at(off).map(str::to_string).map_err(|e| err(at, format!("{what}: {e}")))
}

/// One subsection: its record size and the byte range of its blocks.
struct Blocks<'d> {
    data: &'d [u8],
    start: usize,
    end: usize,
    rec_size: usize,
    what: &'static str,
}

impl<'d> Blocks<'d> {
    /// Check a subsection at `off`/`len` (relative to the header's end), as libbpf does.
    fn new(
        data: &'d [u8],
        hdr_len: u32,
        off: u32,
        len: u32,
        min: u32,
        what: &'static str,
    ) -> Result<Option<Blocks<'d>>, BtfExtError> {
        if len == 0 {
            return Ok(None);
        }
        let start = hdr_len as usize + off as usize;
        if !off.is_multiple_of(4) {
            return Err(err(start, format!("{what} subsection is not 4-byte aligned (offset {off})")));
        }
        let end = start.checked_add(len as usize).filter(|&e| e <= data.len()).ok_or_else(|| {
            err(start, format!("{what} subsection (offset {off}, length {len}) runs past the {} bytes", data.len()))
        })?;
        if len < 4 {
            return Err(err(start, format!("{what} subsection of {len} bytes has no record size")));
        }
        let rec_size = Reader { data }.u32(start)?;
        if rec_size < min || !rec_size.is_multiple_of(4) {
            return Err(err(start, format!("{what} record size {rec_size} (at least {min}, a multiple of 4)")));
        }
        if len == 4 {
            return Err(err(start, format!("{what} subsection has no records")));
        }
        Ok(Some(Blocks { data, start: start + 4, end, rec_size: rec_size as usize, what }))
    }

    /// Walk the blocks: `name` resolves a block's section name, `record` decodes the record
    /// starting at a byte offset.
    fn parse<T>(
        &self,
        name: &dyn Fn(&Blocks<'_>, usize, u32) -> Result<String, BtfExtError>,
        record: impl Fn(usize) -> Result<T, BtfExtError>,
    ) -> Result<Vec<ExtSection<T>>, BtfExtError> {
        let r = Reader { data: self.data };
        let mut out = Vec::new();
        let mut at = self.start;
        while at < self.end {
            if self.end - at < 8 {
                return Err(err(at, format!("{} block header runs past the subsection", self.what)));
            }
            let (name_off, count) = (r.u32(at)?, r.u32(at + 4)? as usize);
            if count == 0 {
                return Err(err(at + 4, format!("{} block with no records", self.what)));
            }
            let body = at + 8;
            let fits = count.checked_mul(self.rec_size).and_then(|n| body.checked_add(n)).filter(|&e| e <= self.end);
            let Some(next) = fits else {
                return Err(err(at + 4, format!("{} block of {count} records runs past the subsection", self.what)));
            };
            let records = (0..count).map(|i| record(body + i * self.rec_size)).collect::<Result<_, _>>()?;
            out.push(ExtSection { name: name(self, at, name_off)?, records });
            at = next;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_btf::{BtfBuilder, IntEncoding};

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    /// A `.BTF` with strings "sec", "0:1" and an int, and a `.BTF.ext` with one core_relo.
    fn sample() -> (Btf, Vec<u8>) {
        let mut b = BtfBuilder::new();
        let sec = b.add_string("sec").unwrap();
        let access = b.add_string("0:1").unwrap();
        b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
        let btf = Btf::from_bytes(b.encode()).unwrap();
        let mut ext = vec![0x9f, 0xeb, 1, 0];
        // hdr_len 32; func_info and line_info empty; core_relo at 0, 28 bytes.
        ext.extend(words(&[32, 0, 0, 0, 0, 0, 28]));
        ext.extend(words(&[16, sec, 1, 24, 1, access, 0]));
        (btf, ext)
    }

    #[test]
    fn reads_core_relos() {
        let (btf, ext) = sample();
        let parsed = BtfExt::parse(&ext, &btf).unwrap();
        assert_eq!(parsed.core_relo_count(), 1);
        let relo = &parsed.core_relos_of("sec")[0];
        assert_eq!((relo.insn_off, relo.type_id, relo.access.as_str()), (24, TypeId(1), "0:1"));
        assert_eq!((relo.kind, relo.slot()), (RelocKind::FieldByteOffset, Some(3)));
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_not_a_panic() {
        let (btf, ext) = sample();
        for len in 0..ext.len() {
            assert!(BtfExt::parse(&ext[..len], &btf).is_err(), "length {len}");
        }
        for i in 0..ext.len() {
            for v in [0u8, 1, 3, 0x80, 0xff] {
                let mut bad = ext.clone();
                bad[i] = v;
                let _ = BtfExt::parse(&bad, &btf);
            }
        }
    }
}

crate::error::errno_from_sources!(BtfExtError);
