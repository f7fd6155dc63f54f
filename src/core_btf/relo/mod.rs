//! CO-RE ("compile once, run everywhere") relocation with libbpf's semantics
//! (`tools/lib/bpf/relo_core.c`, `libbpf.c`'s candidate search): an instruction that clang
//! marked with a `struct bpf_core_relo` (in `.BTF.ext`, see [`super::ext`]) is rewritten so that
//! the field offset, size, existence, type id, enum value, … it encodes are the *target*
//! kernel's rather than those of the headers the program was compiled with.
//!
//! # How a relocation is resolved
//! 1. The **local spec** is parsed from the relocation's access string (`"0:1:2"`: the
//!    index of the root object, then member or array indexes) against the object's own BTF.
//!    Its high-level accessors are the named members and array indexes, so anonymous
//!    structs and unions on the way do not need to match.
//! 2. **Candidates** are the target BTF's types of a compatible kind whose *essential name*
//!    equals the local type's: the name before a `___flavor` suffix (`task_struct___old` and
//!    `task_struct` are candidates for each other). They are found through the target's name
//!    index plus a one-time index of its flavored names, and cached per local type; a
//!    relocation that matches only some candidates prunes the cached list for the relocations
//!    that follow (as libbpf's `cands->len = j`).
//! 3. Each candidate is **matched**: for field relocations every named member is looked up by
//!    name (descending into anonymous members), array indexes must be in bounds (flexible
//!    arrays excepted), and local and target field types must be compatible
//!    (`bpf_core_fields_are_compat`); type relocations use `bpf_core_types_are_compat`, or
//!    `bpf_core_types_match` for `TYPE_MATCHES`; enum value relocations match enumerators by
//!    essential name.
//! 4. The **value** is computed for the local spec (what the compiler emitted, checked against
//!    the instruction) and for each matching candidate. Several candidates must agree on the
//!    field's bit offset and the value, otherwise the relocation is ambiguous (an error). No
//!    candidate: existence relocations give 0, the others **poison** the instruction.
//! 5. The instruction is **patched**: an ALU immediate (`r1 = 8`, `r1 += 8`), a load's or
//!    store's offset (with the memory size adjusted when the field's size changed and that is
//!    safe: pointers, unsigned integers), or an `ld_imm64` value. A poisoned instruction
//!    becomes `call 0xbad2310` ([`POISON_CALL_IMM`], both slots of an `ld_imm64`): harmless in
//!    dead code, and the verifier names it (`invalid func unknown#195896080`) when reachable.
//!
//! # Entry points
//! * [`CoreTarget`]: a target BTF (the running kernel's, or any other) prepared for candidate
//!   search; share one between all objects relocated for the same kernel.
//! * [`Relocator`]: one object (its local BTF) against one [`CoreTarget`];
//!   [`Relocator::relocate`] patches a section's instructions with that section's
//!   [`CoreRelo`]s (from [`super::ext::BtfExt`]) and reports every relocation ([`Applied`]), so
//!   a load error at a poisoned instruction can name the relocation behind it
//!   ([`find_poisoned`]). Relocate all of an object's sections with one relocator, in
//!   `.BTF.ext` order, for libbpf's results (its candidate cache lives per object).
//! * [`resolve_named`] / [`CoreTarget::resolve_named`]: the same target-side matching driven by
//!   names rather than by a local BTF, for bpfkit's own assembler forms
//!   (`core_field_offset(r1, "task_struct", "real_parent.tgid")`).
//! * [`types_are_compat`], [`types_match`], [`essential_name`]: libbpf's relations, on their own.
//!
//! ```no_run
//! use bpfkit::core_btf::{ext::BtfExt, relo::{CoreTarget, Relocator}, Btf};
//! use bpfkit::elf::ElfObject;
//! let obj = ElfObject::from_file("prog.o")?;
//! let local = Btf::from_bytes(obj.btf().unwrap_or_default())?;
//! let ext = BtfExt::parse(obj.btf_ext().unwrap_or_default(), &local)?;
//! let vmlinux = Btf::vmlinux()?;
//! let target = CoreTarget::new(&vmlinux);
//! let mut relocator = Relocator::new(&local, &target);
//! for sec in &ext.core_relos {
//!     let section = obj.section_by_name(&sec.name).expect("the section exists");
//!     let mut insns = obj.instructions(section)?;
//!     for applied in relocator.relocate(&sec.name, &mut insns, &sec.records)? {
//!         println!("{}: insn {} {:?}", applied.spec, applied.site.slot, applied.outcome);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ```no_run
//! use bpfkit::core_btf::{relo::{resolve_named, RelocKind}, Btf};
//! let vmlinux = Btf::vmlinux()?;
//! let off = resolve_named(&vmlinux, "task_struct", "real_parent", RelocKind::FieldByteOffset)?;
//! println!("task_struct.real_parent is at byte {}", off.value);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod calc;
mod compat;
mod engine;
mod named;
mod patch;
mod spec;

pub use compat::{essential_name, types_are_compat, types_match};
pub use engine::{find_poisoned, Applied, CoreTarget, Outcome, Relocator};
pub use named::{resolve_named, RelocValue};
pub use patch::POISON_CALL_IMM;

use super::{BtfError, TypeId};
use std::fmt;

/// What a relocation computes: `enum bpf_core_relo_kind` (uapi `bpf.h`), all 13 of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RelocKind {
    /// Byte offset of a field (`bpf_core_field_offset`, every `BPF_CORE_READ` hop, direct loads).
    FieldByteOffset = 0,
    /// Size of a field in bytes (`bpf_core_field_size`).
    FieldByteSize = 1,
    /// 1 if the field exists in the target, else 0 (`bpf_core_field_exists`).
    FieldExists = 2,
    /// 1 if the field is a signed integer or a signed enum.
    FieldSigned = 3,
    /// Left shift that puts a bitfield's top bit at bit 63 of a u64 (`BPF_CORE_READ_BITFIELD`).
    FieldLshiftU64 = 4,
    /// Right shift that then brings the bitfield down to bit 0.
    FieldRshiftU64 = 5,
    /// The type's id in the object's own BTF (`bpf_core_type_id_local`).
    TypeIdLocal = 6,
    /// The type's id in the target BTF, 0 if absent (`bpf_core_type_id_kernel`).
    TypeIdTarget = 7,
    /// 1 if a compatible type exists in the target (`bpf_core_type_exists`).
    TypeExists = 8,
    /// The type's size in the target, 0 if absent (`bpf_core_type_size`).
    TypeSize = 9,
    /// 1 if the enumerator exists in the target (`bpf_core_enum_value_exists`).
    EnumvalExists = 10,
    /// The enumerator's value in the target (`bpf_core_enum_value`).
    EnumvalValue = 11,
    /// 1 if the target's type matches the local one strictly (`bpf_core_type_matches`).
    TypeMatches = 12,
}

impl RelocKind {
    /// Every kind, in `enum bpf_core_relo_kind` order.
    pub const ALL: [RelocKind; 13] = [
        RelocKind::FieldByteOffset,
        RelocKind::FieldByteSize,
        RelocKind::FieldExists,
        RelocKind::FieldSigned,
        RelocKind::FieldLshiftU64,
        RelocKind::FieldRshiftU64,
        RelocKind::TypeIdLocal,
        RelocKind::TypeIdTarget,
        RelocKind::TypeExists,
        RelocKind::TypeSize,
        RelocKind::EnumvalExists,
        RelocKind::EnumvalValue,
        RelocKind::TypeMatches,
    ];

    /// The kind for a `BPF_CORE_*` number.
    pub fn from_raw(raw: u32) -> Option<RelocKind> {
        RelocKind::ALL.get(raw as usize).copied()
    }

    /// The `BPF_CORE_*` number.
    pub fn raw(self) -> u32 {
        self as u32
    }

    /// libbpf's short name (`byte_off`, `field_exists`, `target_type_id`, …), as its logs and
    /// `llvm-objdump -r` print it.
    pub fn name(self) -> &'static str {
        match self {
            RelocKind::FieldByteOffset => "byte_off",
            RelocKind::FieldByteSize => "byte_sz",
            RelocKind::FieldExists => "field_exists",
            RelocKind::FieldSigned => "signed",
            RelocKind::FieldLshiftU64 => "lshift_u64",
            RelocKind::FieldRshiftU64 => "rshift_u64",
            RelocKind::TypeIdLocal => "local_type_id",
            RelocKind::TypeIdTarget => "target_type_id",
            RelocKind::TypeExists => "type_exists",
            RelocKind::TypeSize => "type_size",
            RelocKind::EnumvalExists => "enumval_exists",
            RelocKind::EnumvalValue => "enumval_value",
            RelocKind::TypeMatches => "type_matches",
        }
    }

    /// Field relocations: the access string is a path of member and array indexes.
    pub fn is_field_based(self) -> bool {
        (self as u32) <= RelocKind::FieldRshiftU64 as u32
    }

    /// Type relocations: the access string is `"0"`.
    pub fn is_type_based(self) -> bool {
        matches!(
            self,
            RelocKind::TypeIdLocal
                | RelocKind::TypeIdTarget
                | RelocKind::TypeExists
                | RelocKind::TypeSize
                | RelocKind::TypeMatches
        )
    }

    /// Enum value relocations: the access string is the enumerator's index.
    pub fn is_enumval_based(self) -> bool {
        matches!(self, RelocKind::EnumvalExists | RelocKind::EnumvalValue)
    }
}

impl fmt::Display for RelocKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `struct bpf_core_relo` of `.BTF.ext`, its strings resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRelo {
    /// **Byte** offset of the instruction from the start of its ELF section, as in the file
    /// (`slot × 8`); see [`CoreRelo::slot`].
    pub insn_off: u32,
    /// The local type (in the object's own BTF) the access starts from.
    pub type_id: TypeId,
    /// The access string: `"0:1:2"` (root index, then member / array indexes) for field
    /// relocations, `"0"` for type relocations, the enumerator index for enum relocations.
    pub access: String,
    /// What is asked (`bpf_core_relo_kind`: field offset, type size, enum value, …).
    pub kind: RelocKind,
}

impl CoreRelo {
    /// The instruction's slot index in its section (`insn_off / 8`), or `None` when the byte
    /// offset is not a multiple of 8.
    pub fn slot(&self) -> Option<usize> {
        self.insn_off.is_multiple_of(8).then_some((self.insn_off / 8) as usize)
    }
}

/// Why a relocation failed. libbpf refuses to load the object for each of these (poisoning is
/// not a failure: see [`Outcome::Poisoned`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The access string does not describe a valid access into the local type.
    BadSpec,
    /// BTF that cannot be read (a type id out of range, a loop, …).
    Btf,
    /// Several candidates matched but disagree on the offset or the value.
    Ambiguous,
    /// The instruction is not of a form that can be relocated, or does not hold the value
    /// the local BTF implies.
    Instruction,
    /// The relocation cannot be applied to this kind of access (a bitfield wider than 8
    /// bytes, a shift relocation on an array element, an anonymous local type, …).
    Unsupported,
    /// A name-based request ([`resolve_named`]) whose type or field is absent from the target.
    NotFound,
}

/// Where a relocation is: its section, its index among that section's `.BTF.ext` records,
/// and the slot of the instruction it patches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RelocSite {
    /// The ELF section's name.
    pub section: String,
    /// Index among that section's `.BTF.ext` CO-RE records.
    pub index: usize,
    /// Slot of the patched instruction in the section (`insn_off / 8`).
    pub slot: usize,
}

/// A failed relocation, naming it: where it is (absent for [`resolve_named`]), its kind, the
/// local access it describes, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelocError {
    /// Where it is; `None` for a name-based request ([`resolve_named`]).
    pub site: Option<RelocSite>,
    /// What the relocation asks for.
    pub kind: RelocKind,
    /// The access, as libbpf prints a spec: `<byte_off> [12] struct task_struct.real_parent
    /// (0:61 @ offset 2480)`.
    pub spec: String,
    /// The class of failure.
    pub cause: Cause,
    /// The failure in words.
    pub reason: String,
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.site {
            Some(s) => write!(f, "CO-RE relocation #{} in section '{}' at insn {}: ", s.index, s.section, s.slot)?,
            None => write!(f, "CO-RE <{}> ", self.kind)?,
        }
        write!(f, "{}: {}", self.spec, self.reason)
    }
}

impl std::error::Error for RelocError {}

/// An error inside resolution, before it is tied to a relocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fail {
    pub cause: Cause,
    pub reason: String,
}

impl Fail {
    pub fn new(cause: Cause, reason: impl Into<String>) -> Fail {
        Fail { cause, reason: reason.into() }
    }
}

impl From<BtfError> for Fail {
    fn from(e: BtfError) -> Fail {
        Fail::new(Cause::Btf, e.to_string())
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

crate::error::errno_from_sources!(RelocError);
