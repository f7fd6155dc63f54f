//! Map definitions of an object: BTF-defined maps in `.maps`, legacy `struct bpf_map_def`s in
//! `maps`, and global data sections (`.data`, `.rodata`, `.bss`, `.data.*`, `.rodata.*`) as
//! single-element array maps, as libbpf 1.7 derives them.

use super::ObjectError;
use crate::core_btf::{Btf, Linkage, TypeDetail, TypeId};
use crate::elf::{reloc_type, ElfObject, Section, SectionKind, SymbolKind};
use crate::maps::{MapFlags, MapType};

/// Where a map definition came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOrigin {
    /// A variable in `.maps` (`SEC(".maps")`), at `offset` in that section.
    Btf {
        /// Byte offset of the variable in `.maps`.
        offset: u64,
    },
    /// A `struct bpf_map_def` in the legacy `maps` section, at `offset`.
    Legacy {
        /// Byte offset of the definition in `maps`.
        offset: u64,
    },
    /// A global data section (`.data`, `.rodata.str1.1`, `.bss`, …); `readonly` for `.rodata*`.
    Data {
        /// Whether the section is read-only (`.rodata*`).
        readonly: bool,
    },
    /// The inner map template of a map-in-map.
    Inner,
    /// A variable of a `.struct_ops`/`.struct_ops.link` section, at `offset` in it.
    StructOps {
        /// Byte offset of the variable in its section.
        offset: u64,
    },
}

/// `LIBBPF_PIN_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// `LIBBPF_PIN_NONE`: not pinned.
    #[default]
    None,
    /// `LIBBPF_PIN_BY_NAME`: pinned under the pin root by its name.
    ByName,
}

/// One map of the object, as defined before load (adjustable: `max_entries`, `data`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapDef {
    /// The map's name in the object: the variable's name, or the data section's name.
    pub name: String,
    /// The name given to the kernel (libbpf's: `objname.rodata` for global data).
    pub kernel_name: String,
    /// Where the definition came from.
    pub origin: MapOrigin,
    /// The defining section's index.
    pub section: usize,
    /// The map type.
    pub map_type: MapType,
    /// The key size in bytes.
    pub key_size: u32,
    /// The value size in bytes.
    pub value_size: u32,
    /// The maximum number of entries.
    pub max_entries: u32,
    /// The `map_flags`.
    pub flags: MapFlags,
    /// `map_extra` (bloom filter hash count, arena address).
    pub map_extra: u64,
    /// The NUMA node to allocate on, if any.
    pub numa_node: Option<u32>,
    /// Whether and how the map is pinned at load.
    pub pinning: Pinning,
    /// BTF ids (in the object's `.BTF`) of the key and value types, when defined by type.
    pub key_type_id: Option<TypeId>,
    /// BTF id of the value type (see `key_type_id`).
    pub value_type_id: Option<TypeId>,
    /// Map-in-map: the inner map template.
    pub inner: Option<Box<MapDef>>,
    /// Map-in-map and prog arrays: initial slots (`.values = { [i] = &name }`).
    pub init_slots: Vec<(u32, String)>,
    /// Global data: the initial contents (`value_size` bytes; zeros for `.bss`). struct_ops:
    /// the value, laid out as the kernel's `bpf_struct_ops_<ops>` once loaded.
    pub data: Vec<u8>,
    /// struct_ops maps: the ops struct and the programs its members name.
    pub struct_ops: Option<super::struct_ops::StructOps>,
}

impl MapDef {
    /// A definition with everything but its identity and type zero or absent.
    pub(crate) fn new(name: String, kernel_name: String, origin: MapOrigin, section: usize, map_type: MapType) -> MapDef {
        MapDef {
            name,
            kernel_name,
            origin,
            section,
            map_type,
            key_size: 0,
            value_size: 0,
            max_entries: 0,
            flags: MapFlags(0),
            map_extra: 0,
            numa_node: None,
            pinning: Pinning::None,
            key_type_id: None,
            value_type_id: None,
            inner: None,
            init_slots: Vec::new(),
            data: Vec::new(),
            struct_ops: None,
        }
    }
}

/// Largest global data section made into a map (64 MiB, far above the kernel's limit).
const MAX_DATA_SECTION: u32 = 64 << 20;
const BPF_F_RDONLY_PROG: u32 = 1 << 7;
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// libbpf's `internal_map_name`: up to 8 characters of the object name, then the section name
/// (at least 7 characters reserved); custom `.data.*`/`.rodata.*` names alone; 15 at most.
pub(crate) fn internal_map_name(obj_name: &str, real: &str) -> String {
    let sfx = real.len().clamp(7, 15);
    let pfx = if real.get(1..).is_some_and(|r| r.contains('.')) { 0 } else { (16 - sfx - 1).min(obj_name.len()) };
    let name: String = obj_name.chars().take(pfx).chain(real.chars().take(sfx)).take(15).collect();
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect()
}

fn map_err(map: &str, reason: impl Into<String>) -> ObjectError {
    ObjectError::Map { map: map.to_string(), reason: reason.into() }
}

/// Every map of the object: `.maps`, `maps`, then data sections in section order.
pub(crate) fn collect(elf: &ElfObject, btf: Option<&Btf>, obj_name: &str) -> Result<Vec<MapDef>, ObjectError> {
    let mut out = Vec::new();
    if let Some(sec) = elf.section_by_name(".maps") {
        let btf = btf.ok_or_else(|| map_err(".maps", "BTF-defined maps need the object's .BTF"))?;
        out.extend(btf_maps(elf, btf, sec)?);
    }
    if let Some(sec) = elf.section_by_name("maps") {
        out.extend(legacy_maps(elf, sec)?);
    }
    for sec in elf.sections() {
        let readonly = match (sec.kind, sec.name.as_str()) {
            (SectionKind::Data, n) if n == ".data" || n.starts_with(".data.") => false,
            (SectionKind::ReadOnlyData, n) if n == ".rodata" || n.starts_with(".rodata.") => true,
            (SectionKind::Bss, n) if n == ".bss" || n.starts_with(".bss.") => false,
            _ => continue,
        };
        if sec.size == 0 {
            continue;
        }
        // The kernel takes values up to KMALLOC_MAX_SIZE (a few MiB); a header claiming more is
        // refused here rather than allocated.
        let size = u32::try_from(sec.size)
            .ok()
            .filter(|&s| s <= MAX_DATA_SECTION)
            .ok_or_else(|| map_err(&sec.name, format!("{} bytes is larger than a map value can be", sec.size)))?;
        let datasec = btf.and_then(|b| b.find_by_name_kind(&sec.name, crate::core_btf::Kind::Datasec));
        let mut flags = if readonly { BPF_F_RDONLY_PROG } else { 0 };
        if let (Some(b), Some(id)) = (btf, datasec) {
            if has_non_static_var(b, id) {
                flags |= BPF_F_MMAPABLE;
            }
        }
        let mut data = elf.section_data(sec).to_vec();
        data.resize(size as usize, 0);
        let mut def = MapDef::new(
            sec.name.clone(),
            internal_map_name(obj_name, &sec.name),
            MapOrigin::Data { readonly },
            sec.index,
            MapType::Array,
        );
        def.key_size = 4;
        def.value_size = size;
        def.max_entries = 1;
        def.flags = MapFlags(flags);
        def.value_type_id = datasec;
        def.data = data;
        out.push(def);
    }
    Ok(out)
}

/// The `.kconfig` map of an object with `__kconfig` externs (libbpf's `LIBBPF_MAP_KCONFIG`):
/// read-only to programs, mmapable, frozen after load; `section` is the symbol table's index
/// (no ELF section holds it), `datasec` its type.
pub(crate) fn kconfig_map(obj_name: &str, size: u32, datasec: Option<TypeId>, section: usize) -> MapDef {
    let name = super::externs::KCONFIG_SEC;
    let mut def = MapDef::new(
        name.into(),
        internal_map_name(obj_name, name),
        MapOrigin::Data { readonly: true },
        section,
        MapType::Array,
    );
    def.key_size = 4;
    def.value_size = size;
    def.max_entries = 1;
    def.flags = MapFlags(BPF_F_RDONLY_PROG | BPF_F_MMAPABLE);
    def.value_type_id = datasec;
    def.data = vec![0; size as usize];
    def
}

fn has_non_static_var(btf: &Btf, datasec: TypeId) -> bool {
    let Ok(t) = btf.type_by_id(datasec) else { return false };
    let TypeDetail::Datasec { vars, .. } = t.detail else { return false };
    vars.iter().any(|v| {
        btf.type_by_id(v.ty)
            .is_ok_and(|t| matches!(t.detail, TypeDetail::Var { linkage, .. } if linkage != Linkage::Static))
    })
}

/// `__uint(name, N)` is `int (*name)[N]`: N.
fn ptr_array_len(btf: &Btf, ty: TypeId, map: &str, field: &str) -> Result<u32, ObjectError> {
    let bad = |why: String| map_err(map, format!("field '{field}': {why}"));
    let t = btf.type_by_id(btf.resolve(ty).map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    let TypeDetail::Ptr { target } = t.detail else {
        return Err(bad(format!("is a {}, not a pointer to an array", t.kind().name())));
    };
    let a = btf.type_by_id(target).map_err(|e| bad(e.to_string()))?;
    match a.detail {
        TypeDetail::Array { len, .. } => Ok(len),
        _ => Err(bad(format!("points to a {}, not an array", a.kind().name()))),
    }
}

/// A `__ulong(name, N)` field (`enum { __unique_value = N } name`, for values above 32 bits,
/// as `map_extra` may be) or a `__uint(name, N)` one: N, as libbpf's `get_map_field_long`.
fn long_field(btf: &Btf, ty: TypeId, map: &str, field: &str) -> Result<u64, ObjectError> {
    let bad = |why: String| map_err(map, format!("field '{field}': {why}"));
    let t = btf.type_by_id(btf.resolve(ty).map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    match &t.detail {
        TypeDetail::Enum { values, .. } | TypeDetail::Enum64 { values, .. } => match values.as_slice() {
            [v] => Ok(v.value as u64),
            _ => Err(bad(format!("an enum of {} values, not 1", values.len()))),
        },
        _ => ptr_array_len(btf, ty, map, field).map(u64::from),
    }
}

/// libbpf's `adjust_ringbuf_sz`: a ring buffer's size rounded up to a power-of-2 multiple of
/// the page size (0, and sizes that cannot be rounded within 32 bits, are left for the kernel
/// to refuse).
pub(crate) fn adjust_ringbuf_size(size: u32) -> u32 {
    let page = crate::sys::page_size() as u64;
    let size64 = u64::from(size);
    if size == 0 || page == 0 || (size64 % page == 0 && (size64 / page).is_power_of_two()) {
        return size;
    }
    let mut mul = 1u64;
    while mul * page <= u64::from(u32::MAX) {
        if mul * page > size64 {
            return (mul * page) as u32;
        }
        mul <<= 1;
    }
    size
}

/// `__type(name, T)` is `T *name`: T.
fn ptr_target(btf: &Btf, ty: TypeId, map: &str, field: &str) -> Result<TypeId, ObjectError> {
    let t = btf
        .type_by_id(btf.resolve(ty).map_err(|e| map_err(map, e.to_string()))?)
        .map_err(|e| map_err(map, e.to_string()))?;
    match t.detail {
        TypeDetail::Ptr { target } => Ok(target),
        _ => Err(map_err(map, format!("field '{field}' is a {}, not a pointer", t.kind().name()))),
    }
}

fn size_of(btf: &Btf, ty: TypeId, map: &str, field: &str) -> Result<u32, ObjectError> {
    let size = btf.size_of(ty).map_err(|e| map_err(map, format!("field '{field}': {e}")))?;
    u32::try_from(size).map_err(|_| map_err(map, format!("field '{field}': {size} bytes is too large")))
}

/// Parse the struct `ty` of a BTF map definition named `name`.
fn parse_btf_def(btf: &Btf, ty: TypeId, name: &str, is_inner: bool) -> Result<(MapDef, Option<TypeId>), ObjectError> {
    let sid = btf.resolve(ty).map_err(|e| map_err(name, e.to_string()))?;
    let st = btf.type_by_id(sid).map_err(|e| map_err(name, e.to_string()))?;
    let TypeDetail::Struct { members, .. } = &st.detail else {
        return Err(map_err(name, format!("definition is a {}, not a struct", st.kind().name())));
    };
    let origin = if is_inner { MapOrigin::Inner } else { MapOrigin::Btf { offset: 0 } };
    let mut def = MapDef::new(name.to_string(), name.chars().take(15).collect(), origin, 0, MapType::Hash);
    let mut have_type = false;
    let mut values_elem = None;
    for m in members {
        let f = m.name;
        match f {
            "type" => {
                let raw = ptr_array_len(btf, m.ty, name, f)?;
                def.map_type =
                    MapType::from_raw(raw).ok_or_else(|| map_err(name, format!("unknown map type {raw}")))?;
                have_type = true;
            }
            "max_entries" => def.max_entries = ptr_array_len(btf, m.ty, name, f)?,
            "map_flags" => def.flags = MapFlags(ptr_array_len(btf, m.ty, name, f)?),
            "numa_node" => def.numa_node = Some(ptr_array_len(btf, m.ty, name, f)?),
            "map_extra" => def.map_extra = long_field(btf, m.ty, name, f)?,
            "key_size" => def.key_size = ptr_array_len(btf, m.ty, name, f)?,
            "value_size" => def.value_size = ptr_array_len(btf, m.ty, name, f)?,
            "pinning" => {
                def.pinning = match ptr_array_len(btf, m.ty, name, f)? {
                    0 => Pinning::None,
                    1 => Pinning::ByName,
                    n => return Err(map_err(name, format!("unknown pinning {n}"))),
                }
            }
            "key" => {
                let t = ptr_target(btf, m.ty, name, f)?;
                def.key_size = size_of(btf, t, name, f)?;
                def.key_type_id = Some(t);
            }
            "value" => {
                let t = ptr_target(btf, m.ty, name, f)?;
                def.value_size = size_of(btf, t, name, f)?;
                def.value_type_id = Some(t);
            }
            "values" => {
                // `__array(values, struct inner)`: `struct inner *values[]`.
                let arr = btf
                    .type_by_id(btf.resolve(m.ty).map_err(|e| map_err(name, e.to_string()))?)
                    .map_err(|e| map_err(name, e.to_string()))?;
                let TypeDetail::Array { elem, .. } = arr.detail else {
                    return Err(map_err(name, "field 'values' is not an array"));
                };
                values_elem = Some(ptr_target(btf, elem, name, f)?);
                def.value_size = 4;
            }
            other => return Err(map_err(name, format!("unknown field '{other}' in the map definition"))),
        }
    }
    if !have_type {
        return Err(map_err(name, "no 'type' field"));
    }
    if matches!(def.map_type, MapType::RingBuf | MapType::UserRingBuf) {
        def.max_entries = adjust_ringbuf_size(def.max_entries);
    }
    Ok((def, values_elem))
}

fn btf_maps(elf: &ElfObject, btf: &Btf, sec: &Section) -> Result<Vec<MapDef>, ObjectError> {
    let datasec = btf
        .find_by_name_kind(".maps", crate::core_btf::Kind::Datasec)
        .ok_or_else(|| map_err(".maps", "no DATASEC '.maps' in .BTF"))?;
    let TypeDetail::Datasec { vars, .. } = btf.type_by_id(datasec).map_err(|e| map_err(".maps", e.to_string()))?.detail
    else {
        return Err(map_err(".maps", "not a DATASEC"));
    };
    let relocs = elf.relocations(sec);
    let mut out = Vec::new();
    for v in vars {
        let var = btf.type_by_id(v.ty).map_err(|e| map_err(".maps", e.to_string()))?;
        let TypeDetail::Var { ty, .. } = var.detail else { continue };
        let name = var.name.to_string();
        let sym = elf
            .symbols()
            .iter()
            .find(|s| s.section == Some(sec.index) && s.name == name)
            .ok_or_else(|| map_err(&name, "no ELF symbol in .maps"))?;
        let (mut def, values) = parse_btf_def(btf, ty, &name, false)?;
        def.origin = MapOrigin::Btf { offset: sym.value };
        def.section = sec.index;
        if let Some(inner_ty) = values {
            if matches!(def.map_type, MapType::ArrayOfMaps | MapType::HashOfMaps) {
                let (mut inner, _) = parse_btf_def(btf, inner_ty, &format!("{name}.inner"), true)?;
                inner.section = sec.index;
                def.inner = Some(Box::new(inner));
            }
            // Initial slots: ABS64 relocations inside `values`, 8 bytes each, after the fixed part.
            let st = btf
                .type_by_id(btf.resolve(ty).map_err(|e| map_err(&name, e.to_string()))?)
                .map_err(|e| map_err(&name, e.to_string()))?;
            let base = st.members().iter().find(|m| m.name == "values").map_or(0, |m| u64::from(m.bit_offset / 8));
            for r in relocs.iter().filter(|r| r.r_type == reloc_type::R_BPF_64_ABS64) {
                let Some(rel) = sym.value.checked_add(base).and_then(|start| r.offset.checked_sub(start)) else {
                    continue;
                };
                if sym.size != 0 && r.offset >= sym.value.saturating_add(sym.size.max(base + 8)) {
                    continue;
                }
                let target = elf.symbols().get(r.symbol).ok_or_else(|| {
                    map_err(&name, format!("relocation at {} names symbol {} which does not exist", r.offset, r.symbol))
                })?;
                def.init_slots.push(((rel / 8) as u32, target.name.clone()));
            }
        }
        out.push(def);
    }
    Ok(out)
}

fn legacy_maps(elf: &ElfObject, sec: &Section) -> Result<Vec<MapDef>, ObjectError> {
    let data = elf.section_data(sec);
    let syms: Vec<_> = elf
        .symbols()
        .iter()
        .filter(|s| {
            s.section == Some(sec.index)
                && matches!(s.kind, SymbolKind::Object | SymbolKind::NoType)
                && !s.name.is_empty()
        })
        .collect();
    if syms.is_empty() {
        return Ok(Vec::new());
    }
    let def_size = data.len() / syms.len();
    let mut out = Vec::new();
    for s in syms {
        let off = s.value as usize;
        let word = |i: usize| -> Result<u32, ObjectError> {
            off.checked_add(i * 4)
                .and_then(|at| data.get(at..at.checked_add(4)?))
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| {
                    map_err(
                        &s.name,
                        format!("legacy definition at offset {off} runs past the section's {} bytes", data.len()),
                    )
                })
        };
        if def_size < 20 {
            return Err(map_err(
                &s.name,
                format!("legacy definition of {def_size} bytes is shorter than struct bpf_map_def"),
            ));
        }
        let raw = word(0)?;
        let map_type = MapType::from_raw(raw).ok_or_else(|| map_err(&s.name, format!("unknown map type {raw}")))?;
        let mut def = MapDef::new(
            s.name.clone(),
            s.name.chars().take(15).collect(),
            MapOrigin::Legacy { offset: s.value },
            sec.index,
            map_type,
        );
        def.key_size = word(1)?;
        def.value_size = word(2)?;
        def.max_entries = word(3)?;
        def.flags = MapFlags(word(4)?);
        out.push(def);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::internal_map_name;

    #[test]
    fn libbpf_internal_names() {
        assert_eq!(internal_map_name("my_object_name", ".rodata"), "my_objec.rodata");
        assert_eq!(internal_map_name("my_object_name", ".bss"), "my_objec.bss");
        assert_eq!(internal_map_name("my_object_name", ".kconfig"), "my_obje.kconfig");
        assert_eq!(internal_map_name("my_object_name", ".rodata.abracadabra"), ".rodata.abracad");
        assert_eq!(internal_map_name("o14_rodata_config", ".rodata.str1.1"), ".rodata.str1.1");
    }

    #[test]
    fn ring_buffer_sizes_as_libbpf_adjusts_them() {
        use super::adjust_ringbuf_size as adjust;
        let page = crate::sys::page_size() as u32;
        assert_eq!(adjust(0), 0, "left for the kernel to refuse");
        assert_eq!(adjust(1000), page);
        assert_eq!(adjust(page), page);
        assert_eq!(adjust(page + 1), 2 * page);
        assert_eq!(adjust(3 * page), 4 * page, "a power-of-2 number of pages");
        assert_eq!(adjust(u32::MAX), u32::MAX, "cannot be rounded within 32 bits");
    }
}
