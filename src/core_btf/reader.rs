//! Parsing a BTF blob ([`Btf`]): header and section checks, one pass that records where each
//! type record starts, and decoding a single record on demand ([`Btf::type_by_id`]). Nothing
//! else is built up front; the name index (`query`) is built on the first lookup by name.
//!
//! Split BTF (`/sys/kernel/btf/<module>`) holds a reference to its base: ids below
//! [`Btf::first_id`] and string offsets below the base's string length are the base's.

use super::query::NameIndex;
use super::types::{
    EnumValue, IntEncoding, Kind, Linkage, Member, Param, Type, TypeDetail, TypeId, VarSecinfo, HEADER_LEN, MAGIC,
    TYPE_HEADER_LEN,
};
use super::BtfError;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Where the running kernel publishes its own BTF.
pub const VMLINUX_PATH: &str = "/sys/kernel/btf/vmlinux";

/// Parsed BTF: a blob plus an index of where each type starts. Cheap to clone (shared).
#[derive(Clone)]
pub struct Btf {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    data: Vec<u8>,
    strs: Range<usize>,
    /// Byte offset in `data` of each type record, for ids `first_id..`.
    pub(super) offsets: Vec<u32>,
    pub(super) first_id: u32,
    /// String offsets below this are the base's.
    str_base: u32,
    pub(super) base: Option<Btf>,
    /// Name → ids of this blob's named types; built on first use.
    pub(super) names: OnceLock<NameIndex>,
}

/// A located type record: the [`Btf`] that holds it (the base, for a base id of split BTF),
/// its id, byte offset and the three words of `struct btf_type`.
#[derive(Clone, Copy)]
pub(super) struct Raw<'a> {
    pub btf: &'a Btf,
    pub id: u32,
    pub off: usize,
    pub kind: Kind,
    pub name_off: u32,
    pub info: u32,
    /// `size` or `type`, depending on the kind.
    pub size_type: u32,
}

impl<'a> Raw<'a> {
    pub fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }

    pub fn kflag(&self) -> bool {
        self.info >> 31 != 0
    }

    /// Offset of the `i`th `stride`-byte record after the type header.
    pub fn trailer(&self, stride: usize, i: usize) -> usize {
        self.off + TYPE_HEADER_LEN + stride * i
    }

    /// A word of this record (the index pass checked the record lies within the blob; the
    /// read is checked again rather than trusted).
    pub fn word(&self, off: usize) -> Result<u32, BtfError> {
        ne32(&self.btf.inner.data, off).ok_or_else(|| self.bad(format!("read at byte {off} runs past the blob")))
    }

    pub fn bad(&self, reason: String) -> BtfError {
        BtfError::BadType { id: self.id, offset: self.off, reason }
    }

    /// This record's name (empty when anonymous), or an error naming the type.
    pub fn name(&self) -> Result<&'a str, BtfError> {
        self.btf.str_at(self.name_off).map_err(|e| self.bad(format!("name: {e}")))
    }
}

/// A native-endian u32 at `off`, if the bytes are there.
pub(super) fn ne32(data: &[u8], off: usize) -> Option<u32> {
    let bytes = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes(bytes.try_into().ok()?))
}

impl Btf {
    /// Parse a BTF blob (type ids from 1).
    pub fn from_bytes(data: impl Into<Vec<u8>>) -> Result<Btf, BtfError> {
        Btf::parse(data.into(), None)
    }

    /// Read and parse a BTF file (read whole with `std::fs::read`; sysfs BTF cannot be mmapped shared).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Btf, BtfError> {
        Btf::from_bytes(read(path.as_ref())?)
    }

    /// The running kernel's BTF, from `/sys/kernel/btf/vmlinux` (read and parsed anew; see
    /// [`Btf::vmlinux_shared`] for the process's one copy).
    pub fn vmlinux() -> Result<Btf, BtfError> {
        Btf::from_file(VMLINUX_PATH)
    }

    /// The running kernel's BTF, read and parsed once per process and shared: what bpfkit
    /// itself uses for CO-RE, `pt_regs` offsets, context fields and attach targets. Parsing
    /// vmlinux (and indexing its names) is most of a tool's start-up; this pays it once.
    pub fn vmlinux_shared() -> Result<std::sync::Arc<Btf>, BtfError> {
        static VMLINUX: std::sync::OnceLock<std::sync::Arc<Btf>> = std::sync::OnceLock::new();
        if let Some(b) = VMLINUX.get() {
            return Ok(b.clone());
        }
        let btf = std::sync::Arc::new(Btf::vmlinux()?);
        Ok(VMLINUX.get_or_init(|| btf).clone())
    }

    /// Parse split BTF (a kernel module's `/sys/kernel/btf/<module>`) on top of `base`: its ids
    /// continue after `base.last_id()`, its string offsets after the base's strings.
    pub fn from_split(data: impl Into<Vec<u8>>, base: &Btf) -> Result<Btf, BtfError> {
        Btf::parse(data.into(), Some(base))
    }

    /// [`Btf::from_split`] of a file.
    pub fn from_split_file(path: impl AsRef<Path>, base: &Btf) -> Result<Btf, BtfError> {
        Btf::from_split(read(path.as_ref())?, base)
    }

    fn parse(data: Vec<u8>, base: Option<&Btf>) -> Result<Btf, BtfError> {
        let header = |what: String| BtfError::Header(what);
        if data.len() < HEADER_LEN {
            return Err(header(format!("blob is {} bytes, a BTF header needs {HEADER_LEN}", data.len())));
        }
        if data.len() > u32::MAX as usize {
            return Err(header(format!("blob is {} bytes; BTF is limited to 4 GiB", data.len())));
        }
        let magic = u16::from_ne_bytes([data[0], data[1]]);
        if magic == MAGIC.swap_bytes() {
            return Err(header("magic 0x9feb: BTF of the other byte order is not supported".into()));
        }
        if magic != MAGIC {
            return Err(header(format!("bad magic {magic:#06x} at byte 0 (BTF starts with 0xeb9f)")));
        }
        if data[2] != 1 {
            return Err(header(format!("version {} at byte 2, expected 1", data[2])));
        }
        let word = |off: usize| ne32(&data, off).unwrap_or(0); // len >= HEADER_LEN was checked
        let hdr_len = word(4) as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(header(format!("hdr_len {hdr_len} at byte 4 (must be {HEADER_LEN}..={})", data.len())));
        }
        let section = |name: &str, off_at: usize| -> Result<Range<usize>, BtfError> {
            let (off, len) = (word(off_at) as u64, word(off_at + 4) as u64);
            let start = hdr_len as u64 + off;
            let end = start + len;
            if end > data.len() as u64 {
                return Err(header(format!(
                    "{name} section (offset {off}, length {len}, after the {hdr_len}-byte header) runs past the blob's {} bytes",
                    data.len()
                )));
            }
            Ok(start as usize..end as usize)
        };
        let types = section("type", 8)?;
        let strs = section("string", 16)?;
        if types.start < strs.end && strs.start < types.end {
            return Err(header(format!("type section {types:?} and string section {strs:?} overlap")));
        }
        let str_bytes = &data[strs.clone()];
        match (str_bytes.first(), str_bytes.last()) {
            (_, Some(&last)) if last != 0 => {
                return Err(header(format!("string section does not end with NUL (byte {})", strs.end - 1)));
            }
            (Some(&first), _) if first != 0 && base.is_none() => {
                return Err(header(format!(
                    "string section does not start with the empty string (byte {})",
                    strs.start
                )));
            }
            (None, _) if base.is_none() => return Err(header("empty string section".into())),
            _ => {}
        }
        let (first_id, str_base) = match base {
            None => (1, 0),
            Some(b) => {
                let str_base = b.str_end().try_into().ok();
                match (b.last_id().0.checked_add(1), str_base) {
                    (Some(id), Some(s)) => (id, s),
                    _ => return Err(header("base BTF too large to split from".into())),
                }
            }
        };
        let offsets = index_types(&data, types, first_id)?;
        if (first_id as u64) + (offsets.len() as u64) > u32::MAX as u64 {
            return Err(header(format!("{} types after id {first_id} overflow 32-bit type ids", offsets.len())));
        }
        Ok(Btf {
            inner: Arc::new(Inner {
                data,
                strs,
                offsets,
                first_id,
                str_base,
                base: base.cloned(),
                names: OnceLock::new(),
            }),
        })
    }

    /// The base BTF of split BTF.
    pub fn base(&self) -> Option<&Btf> {
        self.inner.base.as_ref()
    }

    /// The first id of this blob's own types: 1, or the base's last id + 1 for split BTF.
    pub fn first_id(&self) -> TypeId {
        TypeId(self.inner.first_id)
    }

    /// The highest type id (bpftool's last `[ID]`). `TypeId(0)` for BTF without types.
    pub fn last_id(&self) -> TypeId {
        TypeId(self.inner.first_id + self.inner.offsets.len() as u32 - 1)
    }

    /// How many types this blob holds (not counting `void` or a base's types).
    pub fn type_count(&self) -> u32 {
        self.inner.offsets.len() as u32
    }

    /// This blob's own type ids, `first_id()..=last_id()`.
    pub fn ids(&self) -> impl Iterator<Item = TypeId> {
        (self.inner.first_id..self.inner.first_id + self.inner.offsets.len() as u32).map(TypeId)
    }

    /// One past the last string offset (split BTF built on this continues from here).
    pub(super) fn str_end(&self) -> u64 {
        self.inner.str_base as u64 + self.inner.strs.len() as u64
    }

    /// The blob this was parsed from (for [`LoadedBtf::load`](super::LoadedBtf::load), say).
    pub fn as_bytes(&self) -> &[u8] {
        &self.inner.data
    }

    /// Decode one type.
    pub fn type_by_id(&self, id: TypeId) -> Result<Type<'_>, BtfError> {
        decode(self.raw(id)?)
    }

    /// A type's kind, without decoding it.
    pub fn kind_of(&self, id: TypeId) -> Result<Kind, BtfError> {
        Ok(self.raw(id)?.kind)
    }

    /// A type's name (empty when anonymous), without decoding it.
    pub fn name_of(&self, id: TypeId) -> Result<&str, BtfError> {
        self.raw(id)?.name()
    }

    /// Locate a record, following split BTF into its base.
    pub(super) fn raw(&self, id: TypeId) -> Result<Raw<'_>, BtfError> {
        let mut btf = self;
        loop {
            let inner = &btf.inner;
            if id.0 >= inner.first_id {
                let Some(&off) = inner.offsets.get((id.0 - inner.first_id) as usize) else {
                    return Err(BtfError::NoSuchId { id: id.0, last: self.last_id().0 });
                };
                return btf.raw_at(id.0, off as usize);
            }
            match &inner.base {
                Some(base) => btf = base,
                None => {
                    return Ok(Raw { btf, id: 0, off: 0, kind: Kind::Void, name_off: 0, info: 0, size_type: 0 });
                }
            }
        }
    }

    fn raw_at(&self, id: u32, off: usize) -> Result<Raw<'_>, BtfError> {
        let data = &self.inner.data;
        let bad = |reason: String| BtfError::BadType { id, offset: off, reason };
        let (Some(name_off), Some(info), Some(size_type)) = (ne32(data, off), ne32(data, off + 4), ne32(data, off + 8))
        else {
            return Err(bad("type header runs past the blob".into()));
        };
        let kind =
            Kind::from_raw((info >> 24) & 0x1f).ok_or_else(|| bad(format!("unknown kind {}", (info >> 24) & 0x1f)))?;
        Ok(Raw { btf: self, id, off, kind, name_off, info, size_type })
    }

    /// The NUL-terminated string at `off` (offsets below the base's string length are the base's).
    pub(super) fn str_bytes(&self, off: u32) -> Result<&[u8], BtfError> {
        let inner = &self.inner;
        if off < inner.str_base {
            if let Some(base) = &inner.base {
                return base.str_bytes(off);
            }
        }
        let tail = self.local_str_tail(off).filter(|t| !t.is_empty());
        let Some(tail) = tail else {
            return Err(BtfError::BadString { offset: off, reason: "past the end of the string section" });
        };
        // The section ends with NUL (checked at parse), so a terminator is always found.
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        Ok(&tail[..end])
    }

    /// The string section from `off` to its end, when `off` is this blob's (not the base's).
    pub(super) fn local_str_tail(&self, off: u32) -> Option<&[u8]> {
        let rel = off.checked_sub(self.inner.str_base)? as usize;
        self.inner.data.get(self.inner.strs.start.checked_add(rel)?..self.inner.strs.end)
    }

    /// [`Btf::str_bytes`] as UTF-8.
    pub(super) fn str_at(&self, off: u32) -> Result<&str, BtfError> {
        std::str::from_utf8(self.str_bytes(off)?).map_err(|_| BtfError::BadString { offset: off, reason: "not UTF-8" })
    }
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("bytes", &self.inner.data.len())
            .field("first_id", &self.inner.first_id)
            .field("types", &self.inner.offsets.len())
            .field("split", &self.inner.base.is_some())
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|source| BtfError::Io { path: path.to_path_buf(), source })
}

/// The one pass over the type section: each record's offset, after checking its kind is known
/// and it fits in the section.
fn index_types(data: &[u8], types: Range<usize>, first_id: u32) -> Result<Vec<u32>, BtfError> {
    let mut offsets = Vec::with_capacity(types.len() / 24);
    let mut off = types.start;
    while off < types.end {
        let id = first_id.wrapping_add(offsets.len() as u32);
        let left = types.end - off;
        let bad = |reason: String| BtfError::BadType { id, offset: off, reason };
        let info = match ne32(data, off + 4) {
            Some(info) if left >= TYPE_HEADER_LEN => info,
            _ => {
                return Err(bad(format!("type header needs {TYPE_HEADER_LEN} bytes, the type section has {left} left")))
            }
        };
        let raw_kind = (info >> 24) & 0x1f;
        let kind = match Kind::from_raw(raw_kind) {
            Some(Kind::Void) | None => return Err(bad(format!("unknown kind {raw_kind}"))),
            Some(k) => k,
        };
        let len = TYPE_HEADER_LEN + kind.trailer_len((info & 0xffff) as usize);
        if len > left {
            return Err(bad(format!(
                "{kind} with vlen {} needs {len} bytes, the type section has {left} left",
                info & 0xffff
            )));
        }
        offsets.push(off as u32);
        off += len;
    }
    Ok(offsets)
}

/// Decode one located record into a [`Type`].
fn decode(r: Raw<'_>) -> Result<Type<'_>, BtfError> {
    let name = r.name()?;
    let id = TypeId(r.id);
    let str_of = |off: u32| r.btf.str_at(off).map_err(|e| r.bad(format!("member name: {e}")));
    let n = r.vlen();
    let detail = match r.kind {
        Kind::Void => TypeDetail::Void,
        Kind::Int => {
            let w = r.word(r.trailer(4, 0))?;
            let encoding = IntEncoding::from_raw((w >> 24) & 0xf)
                .ok_or_else(|| r.bad(format!("INT encoding {:#x} is none of signed, char, bool", (w >> 24) & 0xf)))?;
            TypeDetail::Int { size: r.size_type, encoding, offset: (w >> 16) as u8, bits: w as u8 }
        }
        Kind::Ptr => TypeDetail::Ptr { target: TypeId(r.size_type) },
        Kind::Array => {
            let t = r.trailer(4, 0);
            TypeDetail::Array { elem: TypeId(r.word(t)?), index: TypeId(r.word(t + 4)?), len: r.word(t + 8)? }
        }
        Kind::Struct | Kind::Union => {
            let mut members = Vec::with_capacity(n);
            for i in 0..n {
                let m = r.trailer(12, i);
                let offset = r.word(m + 8)?;
                let (bit_offset, bitfield_size) =
                    if r.kflag() { (offset & 0xff_ffff, (offset >> 24) as u8) } else { (offset, 0) };
                members.push(Member {
                    name: str_of(r.word(m)?)?,
                    ty: TypeId(r.word(m + 4)?),
                    bit_offset,
                    bitfield_size,
                });
            }
            if r.kind == Kind::Struct {
                TypeDetail::Struct { size: r.size_type, members }
            } else {
                TypeDetail::Union { size: r.size_type, members }
            }
        }
        Kind::Enum => {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let e = r.trailer(8, i);
                let raw = r.word(e + 4)?;
                let value = if r.kflag() { raw as i32 as i128 } else { raw as i128 };
                values.push(EnumValue { name: str_of(r.word(e)?)?, value });
            }
            TypeDetail::Enum { size: r.size_type, signed: r.kflag(), values }
        }
        Kind::Enum64 => {
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let e = r.trailer(12, i);
                let raw = (r.word(e + 8)? as u64) << 32 | r.word(e + 4)? as u64;
                let value = if r.kflag() { raw as i64 as i128 } else { raw as i128 };
                values.push(EnumValue { name: str_of(r.word(e)?)?, value });
            }
            TypeDetail::Enum64 { size: r.size_type, signed: r.kflag(), values }
        }
        Kind::Fwd => TypeDetail::Fwd { union: r.kflag() },
        Kind::Typedef => TypeDetail::Typedef { target: TypeId(r.size_type) },
        Kind::Volatile => TypeDetail::Volatile { target: TypeId(r.size_type) },
        Kind::Const => TypeDetail::Const { target: TypeId(r.size_type) },
        Kind::Restrict => TypeDetail::Restrict { target: TypeId(r.size_type) },
        Kind::Func => {
            let linkage = Linkage::from_raw(n as u32)
                .ok_or_else(|| r.bad(format!("FUNC linkage {n} is none of static, global, extern")))?;
            TypeDetail::Func { proto: TypeId(r.size_type), linkage }
        }
        Kind::FuncProto => {
            let mut params = Vec::with_capacity(n);
            for i in 0..n {
                let p = r.trailer(8, i);
                params.push(Param { name: str_of(r.word(p)?)?, ty: TypeId(r.word(p + 4)?) });
            }
            TypeDetail::FuncProto { ret: TypeId(r.size_type), params }
        }
        Kind::Var => {
            let raw = r.word(r.trailer(4, 0))?;
            let linkage = Linkage::from_raw(raw)
                .ok_or_else(|| r.bad(format!("VAR linkage {raw} is none of static, global, extern")))?;
            TypeDetail::Var { ty: TypeId(r.size_type), linkage }
        }
        Kind::Datasec => {
            let mut vars = Vec::with_capacity(n);
            for i in 0..n {
                let v = r.trailer(12, i);
                vars.push(VarSecinfo { ty: TypeId(r.word(v)?), offset: r.word(v + 4)?, size: r.word(v + 8)? });
            }
            TypeDetail::Datasec { size: r.size_type, vars }
        }
        Kind::Float => TypeDetail::Float { size: r.size_type },
        Kind::DeclTag => TypeDetail::DeclTag {
            target: TypeId(r.size_type),
            component_idx: r.word(r.trailer(4, 0))? as i32,
            attr: r.kflag(),
        },
        Kind::TypeTag => TypeDetail::TypeTag { target: TypeId(r.size_type), attr: r.kflag() },
    };
    Ok(Type { id, name, detail })
}
