//! Record layouts for `:watch … as LAYOUT`: a struct declared inline (`{u32 pid; u64 ts;
//! char comm[16]}`, laid out as C lays it out) or a type of the kernel's BTF by name
//! (`task_struct`, `struct timespec64`), and records formatted through it as C initialisers.

use bpfkit::core_btf::{Btf, BtfBuilder, Kind, Member, TypeId};

use bpfkit::core_btf::IntEncoding;

/// A type to read records as: the BTF that describes it and its id there.
pub struct Layout {
    btf: Btf,
    id: TypeId,
    size: u64,
    /// How it was written, for messages.
    pub text: String,
}

impl Layout {
    /// `{TYPE NAME; …}` or a kernel BTF type name (`struct ` optional).
    pub fn parse(text: &str) -> Result<Layout, String> {
        let text = text.trim();
        let (btf, id) = match text.strip_prefix('{') {
            Some(body) => inline(body.strip_suffix('}').ok_or_else(|| format!("`{text}`: an inline layout ends with `}}`"))?)?,
            None => vmlinux(text)?,
        };
        let size = btf.size_of(id).map_err(|e| format!("layout `{text}`: {e}"))?;
        Ok(Layout { btf, id, size, text: text.to_owned() })
    }

    /// One record: `{ .pid = 12, … }`, or why it cannot be read as the layout, with its bytes.
    pub fn format(&self, rec: &[u8]) -> String {
        if (rec.len() as u64) < self.size {
            return format!("{} bytes, shorter than the layout's {}: {}", rec.len(), self.size, crate::hex::spaced(rec, " "));
        }
        self.btf.format_value(self.id, rec).unwrap_or_else(|e| format!("({e}) {}", crate::hex::spaced(rec, " ")))
    }
}

/// Members `TYPE NAME` or `TYPE NAME[N]` separated by `;`, each aligned to its element size.
fn inline(body: &str) -> Result<(Btf, TypeId), String> {
    let mut b = BtfBuilder::new();
    let mut members: Vec<(String, TypeId, u32)> = Vec::new();
    let (mut offset, mut align_max) = (0u32, 1u32);
    for decl in body.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let (ty, name) = decl
            .rsplit_once(char::is_whitespace)
            .ok_or_else(|| format!("`{decl}`: a member is TYPE NAME (e.g. `u32 pid`, `char comm[16]`)"))?;
        let (name, spec) = match name.split_once('[') {
            Some((n, len)) => (n, format!("{}[{len}", ty.trim())),
            None => (name, ty.trim().to_owned()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{decl}`: `{name}` is not a member name"));
        }
        if members.iter().any(|(n, _, _)| n == name) {
            return Err(format!("`{decl}`: member `{name}` is declared twice"));
        }
        let (id, size) = add_type(&mut b, &spec)?;
        let align = element_size(&spec);
        offset = offset.next_multiple_of(align);
        members.push((name.to_owned(), id, offset));
        offset += size;
        align_max = align_max.max(align);
    }
    if members.is_empty() {
        return Err("an inline layout declares at least one member: `{u32 pid; u64 ts}`".into());
    }
    let size = offset.next_multiple_of(align_max);
    let list: Vec<Member<'_>> = members.iter().map(|(n, id, off)| Member::new(n, *id, off * 8)).collect();
    let id = b.add_struct("record", size, &list).map_err(|e| e.to_string())?;
    let btf = Btf::from_bytes(b.encode()).map_err(|e| e.to_string())?;
    Ok((btf, id))
}

/// The size of one element of `u32`, `char[16]`, …: its alignment in C.
fn element_size(spec: &str) -> u32 {
    match spec.split('[').next().unwrap_or(spec) {
        "u16" | "s16" => 2,
        "u32" | "s32" => 4,
        "u64" | "s64" => 8,
        _ => 1,
    }
}

/// A struct, union or typedef of the running kernel's BTF.
fn vmlinux(name: &str) -> Result<(Btf, TypeId), String> {
    let (kinds, bare): (&[Kind], &str) = match name.split_once(char::is_whitespace) {
        Some(("struct", n)) => (&[Kind::Struct], n.trim()),
        Some(("union", n)) => (&[Kind::Union], n.trim()),
        _ => (&[Kind::Struct, Kind::Union, Kind::Typedef], name),
    };
    let btf = Btf::vmlinux().map_err(|e| format!("layout `{name}`: {e}"))?;
    let id = kinds
        .iter()
        .find_map(|k| btf.find_by_name_kind(bare, *k))
        .ok_or_else(|| format!("layout `{name}`: no such type in the kernel's BTF (`:btf {bare}` looks; or declare one: `{{u32 pid; u64 ts}}`)"))?;
    Ok((btf, id))
}

/// A key or value type: `u8`…`u64`, `s8`…`s64`, `char`, each optionally an array (`char[16]`).
pub fn add_type(b: &mut BtfBuilder, spec: &str) -> Result<(TypeId, u32), String> {
    let (base, len) = match spec.split_once('[') {
        Some((base, rest)) => {
            let n = rest
                .strip_suffix(']')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{spec}`: an array is TYPE[N] with N > 0"))?;
            (base, Some(n))
        }
        None => (spec, None),
    };
    let (size, enc) = match base {
        "u8" => (1, IntEncoding::Unsigned),
        "u16" => (2, IntEncoding::Unsigned),
        "u32" => (4, IntEncoding::Unsigned),
        "u64" => (8, IntEncoding::Unsigned),
        "s8" => (1, IntEncoding::Signed),
        "s16" => (2, IntEncoding::Signed),
        "s32" => (4, IntEncoding::Signed),
        "s64" => (8, IntEncoding::Signed),
        "char" => (1, IntEncoding::Char),
        _ => return Err(format!("`{spec}`: a size in bytes, or a type: u8 u16 u32 u64 s8 s16 s32 s64 char, TYPE[N]")),
    };
    let e = |e: bpfkit::core_btf::BtfError| e.to_string();
    let int = b.add_int(base, size, enc, size * 8).map_err(e)?;
    match len {
        None => Ok((int, size)),
        Some(n) => {
            let index = b.add_int("__ARRAY_SIZE_TYPE__", 4, IntEncoding::Unsigned, 32).map_err(e)?;
            Ok((b.add_array(int, index, n).map_err(e)?, size * n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Layout::parse(text) {
            Ok(l) => panic!("`{text}` parsed: {} bytes", l.size),
            Err(e) => e,
        }
    }

    #[test]
    fn inline_layouts_follow_c_alignment() {
        let Ok(l) = Layout::parse("{u32 pid; u64 ts; char comm[16]}") else { panic!("layout") };
        assert_eq!(l.size, 32);
        let mut rec = vec![0u8; 36];
        rec[..4].copy_from_slice(&7u32.to_ne_bytes());
        rec[8..16].copy_from_slice(&9u64.to_ne_bytes());
        rec[16..20].copy_from_slice(b"sh\0\0");
        assert_eq!(l.format(&rec), r#"{ .pid = 7, .ts = 9, .comm = "sh" }"#);
        assert!(l.format(&rec[..8]).starts_with("8 bytes, shorter than the layout's 32"));
        assert!(err("{u32 pid; u32 pid}").contains("twice"));
        assert!(err("{float x}").contains("u8 u16 u32"));
        assert!(err("{}").contains("at least one member"));
        assert!(err("{u32 pid").contains("ends with"));
    }
}
