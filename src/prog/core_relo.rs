//! Resolving bpfkit's CO-RE instructions (`core_field_offset(r1, "task_struct", "pid")` …) at
//! load time, against the running kernel's BTF or one the caller chose. Each becomes
//! `mov64 dst, value`; one whose type or field the target lacks is poisoned the way libbpf does
//! (`call 0xbad2310`), so a program that never reaches it still loads, and one that does is
//! refused by the verifier — with bpfkit's error naming the relocation.

use std::sync::Arc;

use crate::core_btf::relo::{Cause, CoreTarget, RelocError, RelocKind, POISON_CALL_IMM};
use crate::core_btf::{Btf, BtfError};
use crate::insn::{AluOp, Call, CoreAccess, CoreKind, Insn, Operand, Width};

fn reloc_kind(k: CoreKind) -> RelocKind {
    match k {
        CoreKind::FieldOffset => RelocKind::FieldByteOffset,
        CoreKind::FieldSize => RelocKind::FieldByteSize,
        CoreKind::FieldExists => RelocKind::FieldExists,
        CoreKind::FieldSigned => RelocKind::FieldSigned,
        CoreKind::FieldLshift => RelocKind::FieldLshiftU64,
        CoreKind::FieldRshift => RelocKind::FieldRshiftU64,
        CoreKind::TypeExists => RelocKind::TypeExists,
        CoreKind::TypeSize => RelocKind::TypeSize,
        CoreKind::TypeId => RelocKind::TypeIdTarget,
        CoreKind::EnumExists => RelocKind::EnumvalExists,
        CoreKind::EnumValue => RelocKind::EnumvalValue,
    }
}

/// Why a CO-RE instruction could not be resolved (other than "no match", which poisons).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error("reading the target BTF: {0}")]
    Btf(#[from] BtfError),
    #[error("{access}: {source}")]
    Relocation { access: String, source: RelocError },
    #[error("{access}: the value {value:#x} does not fit a 32-bit immediate")]
    TooWide { access: String, value: u64 },
}

/// The running kernel's BTF, read once per process.
pub(crate) fn vmlinux() -> Result<Arc<Btf>, BtfError> {
    Btf::vmlinux_shared()
}

/// A resolved instruction, and the relocation it came from when it was poisoned.
pub(crate) struct Resolved {
    pub insn: Insn,
    pub poisoned: Option<String>,
    pub record: CoreRelocation,
}

/// What one CO-RE instruction of a loaded program became ([`Program::core_relocations`](super::Program::core_relocations)):
/// the value the target kernel's BTF gave it, or none when nothing matched and it was poisoned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreRelocation {
    /// The instruction's index in the loaded program (in 8-byte slots).
    pub slot: usize,
    /// Which relocation: `core_field_offset`, `core_type_exists`, …
    pub kind: CoreKind,
    /// The type it names (`task_struct`).
    pub type_name: String,
    /// The member path or enumerator (`real_parent`, `rss_stat.count[1]`); empty for type kinds.
    pub path: String,
    /// The resolved value (an offset in bytes, a size, 0/1 for existence, an enum value); `None`
    /// when the target has no such field or type and the instruction was poisoned.
    pub value: Option<i64>,
}

impl std::fmt::Display for CoreRelocation {
    /// `core_field_offset("task_struct", "real_parent") = 0x500` / `… = poisoned (not found)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(\"{}\"", self.kind.name(), self.type_name)?;
        if self.kind.has_path() {
            write!(f, ", \"{}\"", self.path)?;
        }
        match self.value {
            Some(v) => write!(f, ") = {v:#x}"),
            None => write!(f, ") = poisoned (not found)"),
        }
    }
}

/// Resolves every CO-RE instruction of one load against one target.
pub(crate) struct CoreResolver {
    btf: Arc<Btf>,
}

impl CoreResolver {
    pub fn new(target: Option<&Arc<Btf>>) -> Result<CoreResolver, CoreError> {
        Ok(CoreResolver { btf: match target { Some(b) => b.clone(), None => vmlinux()? } })
    }

    pub fn resolve(&self, dst: crate::insn::Reg, access: &CoreAccess, slot: usize) -> Result<Resolved, CoreError> {
        let record = |value| CoreRelocation { slot, kind: access.kind, type_name: access.type_name.clone(), path: access.path.clone(), value };
        let target = CoreTarget::new(&self.btf);
        let text = format!("{}(\"{}\"{})", access.kind.name(), access.type_name, if access.kind.has_path() { format!(", \"{}\"", access.path) } else { String::new() });
        match target.resolve_named(&access.type_name, &access.path, reloc_kind(access.kind)) {
            Ok(v) => {
                let imm = i32::try_from(v.value as i64).map_err(|_| CoreError::TooWide { access: text.clone(), value: v.value })?;
                Ok(Resolved { insn: Insn::Alu { op: AluOp::Mov, width: Width::W64, dst, src: Operand::Imm(imm) }, poisoned: None, record: record(Some(imm as i64)) })
            }
            Err(e) if e.cause == Cause::NotFound => {
                Ok(Resolved { insn: Insn::Call(Call::Helper(POISON_CALL_IMM as i32)), poisoned: Some(format!("{text}: {e}")), record: record(None) })
            }
            Err(source) => Err(CoreError::Relocation { access: text, source }),
        }
    }
}

crate::error::errno_from_sources!(CoreError);
