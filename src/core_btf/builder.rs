//! [`BtfBuilder`]: writing BTF. Types are encoded as they are added (ids in order from 1, or
//! after a base's last id for split BTF), names deduplicated, and [`BtfBuilder::encode`] joins
//! header, type section and string section into a blob the kernel and [`Btf`] accept.
//!
//! The builder checks only what the encoding cannot represent (more than 65535 members, a
//! bitfield offset beyond 24 bits, an enum value out of range, …). Whether the types make
//! sense — member types exist, sizes add up, names are identifiers — is the kernel's to judge
//! at load time, and its log says which type is wrong.

use super::types::{EnumValue, IntEncoding, Kind, Linkage, Member, Param, TypeId, VarSecinfo, HEADER_LEN, MAGIC};
use super::{Btf, BtfError};
use std::collections::HashMap;

/// Builds a BTF blob type by type. Every `add_*` returns the new type's id.
#[derive(Clone, Debug)]
pub struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    offsets: HashMap<String, u32>,
    first_id: u32,
    count: u32,
    /// Offset of `strings[0]` (the base's string length for split BTF).
    str_base: u32,
}

impl Default for BtfBuilder {
    fn default() -> Self {
        BtfBuilder::new()
    }
}

impl BtfBuilder {
    /// An empty builder for standalone BTF (ids from 1).
    pub fn new() -> BtfBuilder {
        BtfBuilder { types: Vec::new(), strings: vec![0], offsets: HashMap::new(), first_id: 1, count: 0, str_base: 0 }
    }

    /// A builder of split BTF on top of `base` (as a kernel module's BTF sits on vmlinux): ids
    /// continue after `base.last_id()`, types may refer to the base's ids, and string offsets
    /// continue after the base's strings. Parse the result with [`Btf::from_split`].
    pub fn split(base: &Btf) -> Result<BtfBuilder, BtfError> {
        let first_id = base.last_id().0.checked_add(1);
        let str_base = u32::try_from(base.str_end()).ok();
        let (Some(first_id), Some(str_base)) = (first_id, str_base) else {
            return Err(BtfError::Build("base BTF too large to split from".into()));
        };
        // The section starts with an empty string as a base's does: the kernel does not need it
        // in split BTF, but libbpf 1.1 (bpftool 7.1) refuses split BTF without it.
        Ok(BtfBuilder { types: Vec::new(), strings: vec![0], offsets: HashMap::new(), first_id, count: 0, str_base })
    }

    /// The id the next added type will get.
    pub fn next_id(&self) -> TypeId {
        TypeId(self.first_id + self.count)
    }

    /// How many types have been added.
    pub fn type_count(&self) -> u32 {
        self.count
    }

    /// The string offset of `s`, adding it once (the empty string is offset 0).
    pub fn add_string(&mut self, s: &str) -> Result<u32, BtfError> {
        if s.is_empty() {
            return Ok(0);
        }
        if let Some(&off) = self.offsets.get(s) {
            return Ok(off);
        }
        if s.contains('\0') {
            return Err(BtfError::Build(format!("name {s:?} contains a NUL byte")));
        }
        let off = u64::from(self.str_base) + self.strings.len() as u64;
        let off = u32::try_from(off)
            .ok()
            .filter(|o| o.checked_add(s.len() as u32 + 1).is_some())
            .ok_or_else(|| BtfError::Build("string section exceeds 4 GiB".into()))?;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        self.offsets.insert(s.to_string(), off);
        Ok(off)
    }

    /// Append one record: `struct btf_type` and its trailing words.
    fn push(
        &mut self,
        name: &str,
        kind: Kind,
        kflag: bool,
        vlen: usize,
        size_type: u32,
        trailer: &[u32],
    ) -> Result<TypeId, BtfError> {
        if vlen > 0xffff {
            return Err(BtfError::Build(format!("{kind} '{name}' has {vlen} entries; BTF allows 65535")));
        }
        let id = self.first_id.checked_add(self.count).ok_or_else(|| BtfError::Build("type ids exhausted".into()))?;
        if self.types.len() + 12 + 4 * trailer.len() > u32::MAX as usize {
            return Err(BtfError::Build("type section exceeds 4 GiB".into()));
        }
        let name_off = self.add_string(name)?;
        let info = (kflag as u32) << 31 | kind.raw() << 24 | vlen as u32;
        for w in [name_off, info, size_type].iter().chain(trailer) {
            self.types.extend_from_slice(&w.to_ne_bytes());
        }
        self.count += 1;
        Ok(TypeId(id))
    }

    /// An integer of `size` bytes whose value is `bits` wide (`int`: 4, Signed, 32).
    pub fn add_int(&mut self, name: &str, size: u32, encoding: IntEncoding, bits: u32) -> Result<TypeId, BtfError> {
        if bits > 0xff {
            return Err(BtfError::Build(format!("INT '{name}' has {bits} bits; the encoding holds at most 255")));
        }
        self.push(name, Kind::Int, false, 0, size, &[encoding.raw() << 24 | bits])
    }

    /// A pointer to `target` (`BTF_KIND_PTR`).
    pub fn add_ptr(&mut self, target: TypeId) -> Result<TypeId, BtfError> {
        self.push("", Kind::Ptr, false, 0, target.0, &[])
    }

    /// `elem[len]`; `index` is the index type (an INT, conventionally `unsigned int` or
    /// `__ARRAY_SIZE_TYPE__`).
    pub fn add_array(&mut self, elem: TypeId, index: TypeId, len: u32) -> Result<TypeId, BtfError> {
        self.push("", Kind::Array, false, 0, 0, &[elem.0, index.0, len])
    }

    /// A struct of `size` bytes. If any member is a bitfield, the kind_flag is set and every
    /// offset encoded as `bitfield_size << 24 | bit_offset`.
    pub fn add_struct(&mut self, name: &str, size: u32, members: &[Member<'_>]) -> Result<TypeId, BtfError> {
        self.composite(Kind::Struct, name, size, members)
    }

    /// A union; members as for [`BtfBuilder::add_struct`].
    pub fn add_union(&mut self, name: &str, size: u32, members: &[Member<'_>]) -> Result<TypeId, BtfError> {
        self.composite(Kind::Union, name, size, members)
    }

    fn composite(&mut self, kind: Kind, name: &str, size: u32, members: &[Member<'_>]) -> Result<TypeId, BtfError> {
        let kflag = members.iter().any(|m| m.bitfield_size != 0);
        let mut trailer = Vec::with_capacity(3 * members.len());
        for m in members {
            let offset = if kflag {
                if m.bit_offset > 0xff_ffff {
                    return Err(BtfError::Build(format!(
                        "{kind} '{name}' member '{}': bit offset {} does not fit the 24 bits a struct with bitfields has",
                        m.name, m.bit_offset
                    )));
                }
                (m.bitfield_size as u32) << 24 | m.bit_offset
            } else {
                m.bit_offset
            };
            trailer.extend_from_slice(&[self.add_string(m.name)?, m.ty.0, offset]);
        }
        self.push(name, kind, kflag, members.len(), size, &trailer)
    }

    /// An ENUM of `size` bytes (1, 2, 4 or 8); values must fit 32 bits of the given signedness.
    pub fn add_enum(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        values: &[EnumValue<'_>],
    ) -> Result<TypeId, BtfError> {
        let mut trailer = Vec::with_capacity(2 * values.len());
        for v in values {
            let raw = if signed { i32::try_from(v.value).ok().map(|x| x as u32) } else { u32::try_from(v.value).ok() };
            let raw = raw.ok_or_else(|| Self::enum_range(name, v, signed, 32))?;
            trailer.extend_from_slice(&[self.add_string(v.name)?, raw]);
        }
        self.push(name, Kind::Enum, signed, values.len(), size, &trailer)
    }

    /// An ENUM64; values must fit 64 bits of the given signedness.
    pub fn add_enum64(
        &mut self,
        name: &str,
        size: u32,
        signed: bool,
        values: &[EnumValue<'_>],
    ) -> Result<TypeId, BtfError> {
        let mut trailer = Vec::with_capacity(3 * values.len());
        for v in values {
            let raw = if signed { i64::try_from(v.value).ok().map(|x| x as u64) } else { u64::try_from(v.value).ok() };
            let raw = raw.ok_or_else(|| Self::enum_range(name, v, signed, 64))?;
            trailer.extend_from_slice(&[self.add_string(v.name)?, raw as u32, (raw >> 32) as u32]);
        }
        self.push(name, Kind::Enum64, signed, values.len(), size, &trailer)
    }

    fn enum_range(name: &str, v: &EnumValue<'_>, signed: bool, bits: u32) -> BtfError {
        let sign = if signed { "signed" } else { "unsigned" };
        BtfError::Build(format!("enum '{name}' value {} = {} does not fit {sign} {bits} bits", v.name, v.value))
    }

    /// A forward declaration: `struct name;` or, with `union`, `union name;`.
    pub fn add_fwd(&mut self, name: &str, union: bool) -> Result<TypeId, BtfError> {
        self.push(name, Kind::Fwd, union, 0, 0, &[])
    }

    /// `typedef target name;` (`BTF_KIND_TYPEDEF`).
    pub fn add_typedef(&mut self, name: &str, target: TypeId) -> Result<TypeId, BtfError> {
        self.push(name, Kind::Typedef, false, 0, target.0, &[])
    }

    /// `const target` (`BTF_KIND_CONST`).
    pub fn add_const(&mut self, target: TypeId) -> Result<TypeId, BtfError> {
        self.push("", Kind::Const, false, 0, target.0, &[])
    }

    /// `volatile target` (`BTF_KIND_VOLATILE`).
    pub fn add_volatile(&mut self, target: TypeId) -> Result<TypeId, BtfError> {
        self.push("", Kind::Volatile, false, 0, target.0, &[])
    }

    /// `restrict target` (`BTF_KIND_RESTRICT`).
    pub fn add_restrict(&mut self, target: TypeId) -> Result<TypeId, BtfError> {
        self.push("", Kind::Restrict, false, 0, target.0, &[])
    }

    /// A function prototype; a trailing `Param::new("", TypeId::VOID)` makes it variadic.
    pub fn add_func_proto(&mut self, ret: TypeId, params: &[Param<'_>]) -> Result<TypeId, BtfError> {
        let mut trailer = Vec::with_capacity(2 * params.len());
        for p in params {
            trailer.extend_from_slice(&[self.add_string(p.name)?, p.ty.0]);
        }
        self.push("", Kind::FuncProto, false, params.len(), ret.0, &trailer)
    }

    /// A function of prototype `proto` (linkage in the vlen field).
    pub fn add_func(&mut self, name: &str, proto: TypeId, linkage: Linkage) -> Result<TypeId, BtfError> {
        self.push(name, Kind::Func, false, linkage.raw() as usize, proto.0, &[])
    }

    /// A variable (`Global` is `BTF_VAR_GLOBAL_ALLOCATED`, `Extern` `BTF_VAR_GLOBAL_EXTERN`).
    pub fn add_var(&mut self, name: &str, ty: TypeId, linkage: Linkage) -> Result<TypeId, BtfError> {
        self.push(name, Kind::Var, false, 0, ty.0, &[linkage.raw()])
    }

    /// A data section (`.data`, `.bss`, `.rodata`, …) of `size` bytes holding `vars`.
    pub fn add_datasec(&mut self, name: &str, size: u32, vars: &[VarSecinfo]) -> Result<TypeId, BtfError> {
        let trailer: Vec<u32> = vars.iter().flat_map(|v| [v.ty.0, v.offset, v.size]).collect();
        self.push(name, Kind::Datasec, false, vars.len(), size, &trailer)
    }

    /// A floating-point type of `size` bytes (`BTF_KIND_FLOAT`; `double`: 8).
    pub fn add_float(&mut self, name: &str, size: u32) -> Result<TypeId, BtfError> {
        self.push(name, Kind::Float, false, 0, size, &[])
    }

    /// `__attribute__((btf_decl_tag(value)))` on `target` itself (`component_idx` -1) or on its
    /// member/parameter number `component_idx`.
    pub fn add_decl_tag(&mut self, value: &str, target: TypeId, component_idx: i32) -> Result<TypeId, BtfError> {
        self.push(value, Kind::DeclTag, false, 0, target.0, &[component_idx as u32])
    }

    /// `__attribute__((btf_type_tag(value)))` on `target` (as `__user`, `__rcu`, `__percpu`).
    pub fn add_type_tag(&mut self, value: &str, target: TypeId) -> Result<TypeId, BtfError> {
        self.push(value, Kind::TypeTag, false, 0, target.0, &[])
    }

    /// The blob: a 24-byte version-1 header, the type section, the string section.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.types.len() + self.strings.len());
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&[1, 0]); // version, flags
                                        // The add_* checks keep both sections under 4 GiB.
        let (type_len, str_len) = (self.types.len() as u32, self.strings.len() as u32);
        for w in [HEADER_LEN as u32, 0, type_len, type_len, str_len] {
            out.extend_from_slice(&w.to_ne_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}
