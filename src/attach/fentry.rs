//! fentry, fexit, fmod_ret and BPF-LSM programs: trampoline-based tracing of kernel functions.
//!
//! Such a program is tied to its target when it is *loaded*: `BPF_PROG_LOAD` takes the
//! program type (`tracing`, or `lsm` for LSM hooks), the expected attach type (`trace_fentry`,
//! `trace_fexit`, `modify_return`, `lsm_mac`) and the BTF id of the target `FUNC` in vmlinux
//! BTF — `do_unlinkat` for `fentry/do_unlinkat`, `bpf_lsm_file_open` for `lsm/file_open`.
//! [`BtfTarget`] finds that id and builds the [`LoadOptions`]; once loaded, the program is
//! attached with [`Program::attach_btf`] (`BPF_RAW_TRACEPOINT_OPEN` without a name).
//!
//! Kernels without trampolines for BPF, like this VM's, refuse these loads with EPERM and an
//! empty verifier log; [`BtfTarget::load`] reports that as [`ProbeError::TracingRefused`]:
//! `fentry do_unlinkat (BTF id …, expected attach type trace_fentry): tracing programs are
//! refused with EPERM by this kernel (…)`.
//!
//! ```no_run
//! use bpfkit::attach::fentry::{BtfTarget, TracingHook};
//! let target = BtfTarget::find(TracingHook::Lsm, "file_open")?;
//! assert_eq!(target.function, "bpf_lsm_file_open");
//! let opts = target.load_options("deny_open"); // ProgType::Lsm, AttachType::LsmMac, the BTF id
//! # Ok::<(), bpfkit::attach::ProbeError>(())
//! ```

use super::probe::ProbeError;
use crate::core_btf::{Btf, Kind};
use crate::insn::Assembled;
use crate::maps::{Map, MapSpec, MapType};
use crate::prog::{AttachType, LoadError, LoadOptions, ProgType, Program};

/// Which trampoline hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TracingHook {
    /// Runs at the function's entry with its arguments.
    Fentry,
    /// Runs at its return with the arguments and the return value.
    Fexit,
    /// Runs before the function and may replace its return value (error-injectable functions
    /// and LSM hooks only).
    FmodRet,
    /// A BPF-LSM program on an LSM hook; its return value can deny the operation.
    Lsm,
}

impl TracingHook {
    /// The expected attach type the program is loaded with.
    pub fn attach_type(self) -> AttachType {
        match self {
            TracingHook::Fentry => AttachType::TraceFentry,
            TracingHook::Fexit => AttachType::TraceFexit,
            TracingHook::FmodRet => AttachType::ModifyReturn,
            TracingHook::Lsm => AttachType::LsmMac,
        }
    }

    /// The program type: `tracing`, or `lsm` for LSM hooks.
    pub fn prog_type(self) -> ProgType {
        match self {
            TracingHook::Lsm => ProgType::Lsm,
            _ => ProgType::Tracing,
        }
    }

    /// `fentry`, `fexit`, `fmod_ret`, `lsm`: the section prefix libbpf uses.
    pub fn name(self) -> &'static str {
        match self {
            TracingHook::Fentry => "fentry",
            TracingHook::Fexit => "fexit",
            TracingHook::FmodRet => "fmod_ret",
            TracingHook::Lsm => "lsm",
        }
    }

    /// The BTF `FUNC` this hook attaches to for `target`: the function itself, except for LSM,
    /// where hook `file_open` (also written `security_file_open`) is `bpf_lsm_file_open`.
    pub fn btf_func_name(self, target: &str) -> String {
        match self {
            TracingHook::Lsm if target.starts_with("bpf_lsm_") => target.to_string(),
            TracingHook::Lsm => format!("bpf_lsm_{}", target.strip_prefix("security_").unwrap_or(target)),
            _ => target.to_string(),
        }
    }
}

/// A kernel function (or LSM hook) found in BTF, ready to load a program for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfTarget {
    /// What kind of program the target is for (fentry, fexit, fmod_ret, LSM, …).
    pub hook: TracingHook,
    /// The BTF `FUNC`'s name (`do_unlinkat`, `bpf_lsm_file_open`).
    pub function: String,
    /// Its id in vmlinux BTF: the load's `attach_btf_id`.
    pub btf_id: u32,
}

impl BtfTarget {
    /// Find `target` for `hook` in the running kernel's BTF (`/sys/kernel/btf/vmlinux`).
    pub fn find(hook: TracingHook, target: &str) -> Result<BtfTarget, ProbeError> {
        let btf = Btf::vmlinux_shared().map_err(|source| ProbeError::Btf { what: format!("{} {target}: reading vmlinux BTF", hook.name()), source })?;
        BtfTarget::find_in(&btf, hook, target)
    }

    /// Find `target` for `hook` in `btf` (vmlinux or a module's split BTF).
    pub fn find_in(btf: &Btf, hook: TracingHook, target: &str) -> Result<BtfTarget, ProbeError> {
        let function = hook.btf_func_name(target);
        let id = btf.find_by_name_kind(&function, Kind::Func).ok_or_else(|| {
            let hint = if hook == TracingHook::Lsm { " (LSM hooks are named after `security_*` without the prefix, e.g. `file_open`)" } else { "" };
            ProbeError::invalid(format!("{} {target}", hook.name()), format!("no BTF FUNC `{function}` in this kernel's BTF{hint}"))
        })?;
        Ok(BtfTarget { hook, function, btf_id: id.get() })
    }

    /// `fentry do_unlinkat (BTF id 76253, expected attach type trace_fentry)`.
    pub fn describe(&self) -> String {
        format!("{} {} (BTF id {}, expected attach type {})", self.hook.name(), self.function, self.btf_id, self.hook.attach_type())
    }

    /// Load options for a program named `name` on this target: program type, expected attach
    /// type and attach BTF id.
    pub fn load_options(&self, name: &str) -> LoadOptions {
        LoadOptions::new(name, self.hook.prog_type()).expected_attach_type(self.hook.attach_type()).attach_btf_id(self.btf_id)
    }

    /// Load `asm` as a program named `name` on this target. EPERM from a kernel whose bpf(2)
    /// works otherwise becomes [`ProbeError::TracingRefused`].
    pub fn load(&self, asm: &Assembled, maps: &[&Map], name: &str) -> Result<Program, ProbeError> {
        match Program::load(asm, maps, &self.load_options(name)) {
            Ok(p) => Ok(p),
            Err(LoadError::Sys(source) | LoadError::Refused { source, .. }) if source.errno() == Some(libc::EPERM) && bpf_works() => {
                Err(ProbeError::TracingRefused { what: self.describe(), source })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether this process may use bpf(2) at all (so an EPERM is about the program, not us).
fn bpf_works() -> bool {
    Map::create(&MapSpec::new("priv_probe", MapType::Array, 4, 4, 1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsm_hook_names_map_to_bpf_lsm_funcs() {
        assert_eq!(TracingHook::Lsm.btf_func_name("file_open"), "bpf_lsm_file_open");
        assert_eq!(TracingHook::Lsm.btf_func_name("security_file_open"), "bpf_lsm_file_open");
        assert_eq!(TracingHook::Lsm.btf_func_name("bpf_lsm_file_open"), "bpf_lsm_file_open");
        assert_eq!(TracingHook::Fentry.btf_func_name("security_file_open"), "security_file_open");
        assert_eq!(TracingHook::FmodRet.attach_type(), AttachType::ModifyReturn);
        assert_eq!(TracingHook::Lsm.prog_type(), ProgType::Lsm);
    }
}
