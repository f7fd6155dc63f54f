//! Kfunc calls by name (`call kfunc[bpf_task_from_pid]`, `Call::Kfunc { func: KfuncRef::Name }`):
//! at load each name becomes the BTF id of the `FUNC` of that name in the running kernel's
//! vmlinux BTF, as libbpf does for `__ksym` externs and as `object::linker` does for clang's
//! relocations. The id is always the running kernel's (never a CO-RE target's): the verifier
//! checks it against its own BTF and its kfunc sets for the program type.

use crate::core_btf::{BtfError, Kind};
use crate::insn::{Call, Insn, KfuncRef};

/// Why a kfunc name did not resolve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KfuncError {
    /// vmlinux BTF could not be read.
    #[error("reading vmlinux BTF to look it up: {0}")]
    Btf(#[from] BtfError),
    /// vmlinux BTF has no function (`FUNC`) of that name.
    #[error("vmlinux BTF has no function of that name")]
    NotFound,
    /// The call names a module's BTF (`btf_index` given); such kfuncs are not looked up by name.
    #[error("module BTF (btf_index {0}) is not searched by name; give the BTF id")]
    Module(i16),
}

/// `insn` with a kfunc name replaced by its vmlinux BTF id; `None` when there is nothing to
/// resolve. On failure, the name and why.
pub(crate) fn resolve(insn: &Insn) -> Option<Result<Insn, (String, KfuncError)>> {
    let Insn::Call(Call::Kfunc { func: KfuncRef::Name(name), btf_index }) = insn else { return None };
    let id = (|| {
        if *btf_index != 0 {
            return Err(KfuncError::Module(*btf_index));
        }
        let btf = super::core_relo::vmlinux()?;
        btf.find_by_name_kind(name, Kind::Func).ok_or(KfuncError::NotFound)
    })();
    Some(match id {
        Ok(id) => Ok(Insn::Call(Call::Kfunc { func: KfuncRef::Id(id.0 as i32), btf_index: 0 })),
        Err(e) => Err((name.clone(), e)),
    })
}

crate::error::errno_from_sources!(KfuncError);
