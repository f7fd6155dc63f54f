//! The BTF type model shared by the reader and the builder: [`TypeId`], [`Kind`], the decoded
//! view [`Type`] / [`TypeDetail`], and the record types ([`Member`], [`EnumValue`], [`Param`],
//! [`VarSecinfo`]) that the reader returns and the builder takes. Wire-format constants
//! (`include/uapi/linux/btf.h`) live here too.

use std::fmt;

/// Size of `struct btf_header` as Linux 6.18 defines it.
pub(crate) const HEADER_LEN: usize = 24;
/// `BTF_MAGIC`, read as a native-endian u16.
pub(crate) const MAGIC: u16 = 0xEB9F;
/// Size of `struct btf_type` (name_off, info, size/type).
pub(crate) const TYPE_HEADER_LEN: usize = 12;
/// The longest chain of typedefs/modifiers/arrays followed before giving up (libbpf's
/// `MAX_RESOLVE_DEPTH`); longer chains in untrusted BTF are loops.
pub(crate) const MAX_DEPTH: usize = 32;

/// A BTF type id. Id 0 is `void`; in split BTF, ids continue after the base's last id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TypeId(pub u32);

impl TypeId {
    /// Type id 0, `void`.
    pub const VOID: TypeId = TypeId(0);

    /// The id as the kernel's attribute fields (`btf_key_type_id`, …) take it.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Prints `[N]`, as bpftool and the kernel's BTF log do.
impl fmt::Display for TypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

/// The kind of a BTF type (`BTF_KIND_*`). [`Kind::Void`] is id 0 only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Not a record kind: the type of id 0, `void`.
    Void = 0,
    /// `BTF_KIND_INT`: an integer (or char/bool) type.
    Int = 1,
    /// `BTF_KIND_PTR`: a pointer.
    Ptr = 2,
    /// `BTF_KIND_ARRAY`: an array (`struct btf_array` follows).
    Array = 3,
    /// `BTF_KIND_STRUCT`: a struct (`struct btf_member` entries follow).
    Struct = 4,
    /// `BTF_KIND_UNION`: a union (`struct btf_member` entries follow).
    Union = 5,
    /// `BTF_KIND_ENUM`: an enum of 32-bit values (`struct btf_enum` entries follow).
    Enum = 6,
    /// `BTF_KIND_FWD`: a forward declaration of a struct or union.
    Fwd = 7,
    /// `BTF_KIND_TYPEDEF`: a typedef.
    Typedef = 8,
    /// `BTF_KIND_VOLATILE`: the `volatile` modifier.
    Volatile = 9,
    /// `BTF_KIND_CONST`: the `const` modifier.
    Const = 10,
    /// `BTF_KIND_RESTRICT`: the `restrict` modifier.
    Restrict = 11,
    /// `BTF_KIND_FUNC`: a function, pointing at its FUNC_PROTO.
    Func = 12,
    /// `BTF_KIND_FUNC_PROTO`: a function signature (`struct btf_param` entries follow).
    FuncProto = 13,
    /// `BTF_KIND_VAR`: a variable (`struct btf_var` follows).
    Var = 14,
    /// `BTF_KIND_DATASEC`: an ELF section of variables (`struct btf_var_secinfo` entries follow).
    Datasec = 15,
    /// `BTF_KIND_FLOAT`: a floating-point type.
    Float = 16,
    /// `BTF_KIND_DECL_TAG`: a `btf_decl_tag` on a type, member, parameter, function or variable.
    DeclTag = 17,
    /// `BTF_KIND_TYPE_TAG`: a `btf_type_tag` on a pointee type (e.g. `__user`, `__rcu`).
    TypeTag = 18,
    /// `BTF_KIND_ENUM64`: an enum of 64-bit values (`struct btf_enum64` entries follow).
    Enum64 = 19,
}

impl Kind {
    /// Every kind a type record can have (all but [`Kind::Void`]), in `BTF_KIND_*` order.
    pub const ALL: [Kind; 19] = [
        Kind::Int,
        Kind::Ptr,
        Kind::Array,
        Kind::Struct,
        Kind::Union,
        Kind::Enum,
        Kind::Fwd,
        Kind::Typedef,
        Kind::Volatile,
        Kind::Const,
        Kind::Restrict,
        Kind::Func,
        Kind::FuncProto,
        Kind::Var,
        Kind::Datasec,
        Kind::Float,
        Kind::DeclTag,
        Kind::TypeTag,
        Kind::Enum64,
    ];

    /// The kind for a `BTF_KIND_*` number (0 is [`Kind::Void`]).
    pub fn from_raw(raw: u32) -> Option<Kind> {
        match raw {
            0 => Some(Kind::Void),
            1..=19 => Kind::ALL.get(raw as usize - 1).copied(),
            _ => None,
        }
    }

    /// The `BTF_KIND_*` number.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// The kind's name as bpftool and the kernel's log print it (`STRUCT`, `FUNC_PROTO`, …).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Void => "VOID",
            Kind::Int => "INT",
            Kind::Ptr => "PTR",
            Kind::Array => "ARRAY",
            Kind::Struct => "STRUCT",
            Kind::Union => "UNION",
            Kind::Enum => "ENUM",
            Kind::Fwd => "FWD",
            Kind::Typedef => "TYPEDEF",
            Kind::Volatile => "VOLATILE",
            Kind::Const => "CONST",
            Kind::Restrict => "RESTRICT",
            Kind::Func => "FUNC",
            Kind::FuncProto => "FUNC_PROTO",
            Kind::Var => "VAR",
            Kind::Datasec => "DATASEC",
            Kind::Float => "FLOAT",
            Kind::DeclTag => "DECL_TAG",
            Kind::TypeTag => "TYPE_TAG",
            Kind::Enum64 => "ENUM64",
        }
    }

    /// Bytes that follow the 12-byte `struct btf_type` for a record of this kind with `vlen`.
    pub(crate) fn trailer_len(self, vlen: usize) -> usize {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Datasec | Kind::Enum64 => 12 * vlen,
            Kind::Enum | Kind::FuncProto => 8 * vlen,
            Kind::Void
            | Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => 0,
        }
    }

    /// Modifiers that [`Btf::resolve`](super::Btf::resolve) skips.
    pub fn is_modifier(self) -> bool {
        matches!(self, Kind::Typedef | Kind::Const | Kind::Volatile | Kind::Restrict | Kind::TypeTag)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An INT's encoding (`BTF_INT_SIGNED` / `BTF_INT_CHAR` / `BTF_INT_BOOL`; the kernel allows at
/// most one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IntEncoding {
    /// No encoding bits: an unsigned integer.
    Unsigned,
    /// `BTF_INT_SIGNED`.
    Signed,
    /// `BTF_INT_CHAR`: a `char` (printing hint only).
    Char,
    /// `BTF_INT_BOOL`: a `bool`.
    Bool,
}

impl IntEncoding {
    pub(crate) fn from_raw(raw: u32) -> Option<IntEncoding> {
        match raw {
            0 => Some(IntEncoding::Unsigned),
            1 => Some(IntEncoding::Signed),
            2 => Some(IntEncoding::Char),
            4 => Some(IntEncoding::Bool),
            _ => None,
        }
    }

    pub(crate) fn raw(self) -> u32 {
        match self {
            IntEncoding::Unsigned => 0,
            IntEncoding::Signed => 1,
            IntEncoding::Char => 2,
            IntEncoding::Bool => 4,
        }
    }
}

/// Linkage of a FUNC (`BTF_FUNC_STATIC/GLOBAL/EXTERN`) or a VAR (`BTF_VAR_STATIC`,
/// `BTF_VAR_GLOBAL_ALLOCATED`, `BTF_VAR_GLOBAL_EXTERN`); both number them 0, 1, 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Linkage {
    /// `BTF_FUNC_STATIC` / `BTF_VAR_STATIC` (0).
    Static,
    /// `BTF_FUNC_GLOBAL` / `BTF_VAR_GLOBAL_ALLOCATED` (1).
    Global,
    /// `BTF_FUNC_EXTERN` / `BTF_VAR_GLOBAL_EXTERN` (2): defined elsewhere (resolved at load or link).
    Extern,
}

impl Linkage {
    pub(crate) fn from_raw(raw: u32) -> Option<Linkage> {
        match raw {
            0 => Some(Linkage::Static),
            1 => Some(Linkage::Global),
            2 => Some(Linkage::Extern),
            _ => None,
        }
    }

    pub(crate) fn raw(self) -> u32 {
        match self {
            Linkage::Static => 0,
            Linkage::Global => 1,
            Linkage::Extern => 2,
        }
    }
}

/// A STRUCT/UNION member. `bit_offset` is from the start of the struct; `bitfield_size` is 0
/// for an ordinary member. The reader takes both from `bitfield_size << 24 | bit_offset` when
/// the struct's kind_flag is set; without it the offset is plain bits and `bitfield_size` is 0
/// (old-style bitfields are described by the member's INT type instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Member<'a> {
    /// Empty for an anonymous member (an embedded anonymous struct or union).
    pub name: &'a str,
    /// The member's type.
    pub ty: TypeId,
    /// Offset from the start of the struct or union, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield in bits; 0 for an ordinary member.
    pub bitfield_size: u8,
}

impl<'a> Member<'a> {
    /// An ordinary member at `bit_offset`.
    pub fn new(name: &'a str, ty: TypeId, bit_offset: u32) -> Member<'a> {
        Member { name, ty, bit_offset, bitfield_size: 0 }
    }

    /// A bitfield of `bits` bits at `bit_offset`.
    pub fn bitfield(name: &'a str, ty: TypeId, bit_offset: u32, bits: u8) -> Member<'a> {
        Member { name, ty, bit_offset, bitfield_size: bits }
    }
}

/// An ENUM/ENUM64 enumerator. `value` holds every 32- and 64-bit value of either signedness
/// exactly: the reader sign-extends when the enum's kind_flag (signed) is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnumValue<'a> {
    /// The enumerator's name.
    pub name: &'a str,
    /// The enumerator's value, widened to `i128` so both signednesses fit.
    pub value: i128,
}

impl<'a> EnumValue<'a> {
    /// An enumerator `name` with `value`.
    pub fn new(name: &'a str, value: impl Into<i128>) -> EnumValue<'a> {
        EnumValue { name, value: value.into() }
    }
}

/// A FUNC_PROTO parameter. A trailing `Param { name: "", ty: TypeId::VOID }` means `...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Param<'a> {
    /// The parameter's name; empty when unnamed (and for a trailing `...`).
    pub name: &'a str,
    /// The parameter's type; `VOID` together with an empty name means `...`.
    pub ty: TypeId,
}

impl<'a> Param<'a> {
    /// A parameter `name` of type `ty`.
    pub fn new(name: &'a str, ty: TypeId) -> Param<'a> {
        Param { name, ty }
    }
}

/// A DATASEC entry (`struct btf_var_secinfo`): a VAR (or FUNC) at `offset` in the section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VarSecinfo {
    /// The VAR (or FUNC) this entry places.
    pub ty: TypeId,
    /// Byte offset of the variable in the section.
    pub offset: u32,
    /// Size of the variable in bytes.
    pub size: u32,
}

/// One decoded type: its id, name (empty when anonymous) and kind-specific detail. Strings
/// borrow from the [`Btf`](super::Btf) it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type<'a> {
    /// The type's id.
    pub id: TypeId,
    /// The type's name; empty when anonymous.
    pub name: &'a str,
    /// The kind-specific part.
    pub detail: TypeDetail<'a>,
}

/// The kind-specific part of a [`Type`], kind_flag already interpreted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeDetail<'a> {
    /// Id 0.
    Void,
    /// `size` bytes; the value is `bits` wide starting at bit `offset` (both from the INT's
    /// trailing word).
    Int {
        /// Size of the type in bytes.
        size: u32,
        /// Signedness, char or bool (`BTF_INT_ENCODING`).
        encoding: IntEncoding,
        /// Bit offset of the value within the type (`BTF_INT_OFFSET`; 0 in practice).
        offset: u8,
        /// Number of value bits (`BTF_INT_BITS`).
        bits: u8,
    },
    /// `BTF_KIND_PTR`: a pointer.
    Ptr {
        /// The pointee type.
        target: TypeId,
    },
    /// `BTF_KIND_ARRAY` (`struct btf_array`).
    Array {
        /// The element type.
        elem: TypeId,
        /// The index type (an INT; informational).
        index: TypeId,
        /// Number of elements.
        len: u32,
    },
    /// `BTF_KIND_STRUCT`.
    Struct {
        /// Size of the struct in bytes.
        size: u32,
        /// The members, in declaration order.
        members: Vec<Member<'a>>,
    },
    /// `BTF_KIND_UNION`.
    Union {
        /// Size of the union in bytes.
        size: u32,
        /// The members, in declaration order.
        members: Vec<Member<'a>>,
    },
    /// `signed` is the kind_flag.
    Enum {
        /// Size of the enum in bytes (1, 2, 4 or 8).
        size: u32,
        /// Whether the values are signed.
        signed: bool,
        /// The enumerators.
        values: Vec<EnumValue<'a>>,
    },
    /// `BTF_KIND_ENUM64`; `signed` is the kind_flag.
    Enum64 {
        /// Size of the enum in bytes.
        size: u32,
        /// Whether the values are signed.
        signed: bool,
        /// The enumerators.
        values: Vec<EnumValue<'a>>,
    },
    /// `union` is the kind_flag (`union foo;` rather than `struct foo;`).
    Fwd {
        /// Whether the declaration is of a union rather than a struct.
        union: bool,
    },
    /// `BTF_KIND_TYPEDEF`.
    Typedef {
        /// The aliased type.
        target: TypeId,
    },
    /// `BTF_KIND_VOLATILE`.
    Volatile {
        /// The qualified type.
        target: TypeId,
    },
    /// `BTF_KIND_CONST`.
    Const {
        /// The qualified type.
        target: TypeId,
    },
    /// `BTF_KIND_RESTRICT`.
    Restrict {
        /// The qualified type.
        target: TypeId,
    },
    /// `BTF_KIND_FUNC`.
    Func {
        /// The function's FUNC_PROTO.
        proto: TypeId,
        /// `BTF_FUNC_STATIC`, `GLOBAL` or `EXTERN` (the record's vlen).
        linkage: Linkage,
    },
    /// `BTF_KIND_FUNC_PROTO`: a function signature.
    FuncProto {
        /// The return type (`VOID` for `void`).
        ret: TypeId,
        /// The parameters (`struct btf_param`), in order.
        params: Vec<Param<'a>>,
    },
    /// `BTF_KIND_VAR`.
    Var {
        /// The variable's type.
        ty: TypeId,
        /// `BTF_VAR_STATIC`, `GLOBAL_ALLOCATED` or `GLOBAL_EXTERN` (`struct btf_var`'s linkage).
        linkage: Linkage,
    },
    /// `BTF_KIND_DATASEC`: an ELF section (`.data`, `.bss`, `.maps`, …) of variables.
    Datasec {
        /// Size of the section in bytes.
        size: u32,
        /// The section's variables (`struct btf_var_secinfo`).
        vars: Vec<VarSecinfo>,
    },
    /// `BTF_KIND_FLOAT`.
    Float {
        /// Size in bytes (2, 4, 8, 12 or 16).
        size: u32,
    },
    /// `component_idx` is -1 for the tagged type itself, else the member/parameter index.
    /// `attr` is the kind_flag (the tag is an `__attribute__` rather than `btf_decl_tag`).
    DeclTag {
        /// The tagged type, function or variable.
        target: TypeId,
        /// -1 for the tagged item itself, else the member or parameter index.
        component_idx: i32,
        /// Whether the tag is a plain attribute (the kind_flag).
        attr: bool,
    },
    /// `attr` as for [`TypeDetail::DeclTag`].
    TypeTag {
        /// The type the tag applies to.
        target: TypeId,
        /// Whether the tag is a plain attribute (the kind_flag).
        attr: bool,
    },
}

impl<'a> Type<'a> {
    /// The type's kind.
    pub fn kind(&self) -> Kind {
        match &self.detail {
            TypeDetail::Void => Kind::Void,
            TypeDetail::Int { .. } => Kind::Int,
            TypeDetail::Ptr { .. } => Kind::Ptr,
            TypeDetail::Array { .. } => Kind::Array,
            TypeDetail::Struct { .. } => Kind::Struct,
            TypeDetail::Union { .. } => Kind::Union,
            TypeDetail::Enum { .. } => Kind::Enum,
            TypeDetail::Enum64 { .. } => Kind::Enum64,
            TypeDetail::Fwd { .. } => Kind::Fwd,
            TypeDetail::Typedef { .. } => Kind::Typedef,
            TypeDetail::Volatile { .. } => Kind::Volatile,
            TypeDetail::Const { .. } => Kind::Const,
            TypeDetail::Restrict { .. } => Kind::Restrict,
            TypeDetail::Func { .. } => Kind::Func,
            TypeDetail::FuncProto { .. } => Kind::FuncProto,
            TypeDetail::Var { .. } => Kind::Var,
            TypeDetail::Datasec { .. } => Kind::Datasec,
            TypeDetail::Float { .. } => Kind::Float,
            TypeDetail::DeclTag { .. } => Kind::DeclTag,
            TypeDetail::TypeTag { .. } => Kind::TypeTag,
        }
    }

    /// The size field of kinds that have one (INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT).
    /// For the size of any type, see [`Btf::size_of`](super::Btf::size_of).
    pub fn size(&self) -> Option<u32> {
        match &self.detail {
            TypeDetail::Int { size, .. }
            | TypeDetail::Struct { size, .. }
            | TypeDetail::Union { size, .. }
            | TypeDetail::Enum { size, .. }
            | TypeDetail::Enum64 { size, .. }
            | TypeDetail::Datasec { size, .. }
            | TypeDetail::Float { size } => Some(*size),
            _ => None,
        }
    }

    /// The one type this type refers to: a pointer's, modifier's, typedef's, tag's target, an
    /// array's element, a FUNC's prototype, a VAR's type, a FUNC_PROTO's return type.
    pub fn target(&self) -> Option<TypeId> {
        match &self.detail {
            TypeDetail::Ptr { target }
            | TypeDetail::Typedef { target }
            | TypeDetail::Volatile { target }
            | TypeDetail::Const { target }
            | TypeDetail::Restrict { target }
            | TypeDetail::DeclTag { target, .. }
            | TypeDetail::TypeTag { target, .. } => Some(*target),
            TypeDetail::Array { elem, .. } => Some(*elem),
            TypeDetail::Func { proto, .. } => Some(*proto),
            TypeDetail::Var { ty, .. } => Some(*ty),
            TypeDetail::FuncProto { ret, .. } => Some(*ret),
            _ => None,
        }
    }

    /// A STRUCT's or UNION's members (empty for other kinds).
    pub fn members(&self) -> &[Member<'a>] {
        match &self.detail {
            TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. } => members,
            _ => &[],
        }
    }

    /// An ENUM's or ENUM64's values (empty for other kinds).
    pub fn enum_values(&self) -> &[EnumValue<'a>] {
        match &self.detail {
            TypeDetail::Enum { values, .. } | TypeDetail::Enum64 { values, .. } => values,
            _ => &[],
        }
    }

    /// A FUNC_PROTO's parameters (empty for other kinds).
    pub fn params(&self) -> &[Param<'a>] {
        match &self.detail {
            TypeDetail::FuncProto { params, .. } => params,
            _ => &[],
        }
    }
}
