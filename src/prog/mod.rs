//! Programs: loading an assembled program into the kernel as any program type (map names bound
//! to fds, the verifier log captured, grown and explained against the source lines). Info, ids
//! and pins live in `info.rs`, PROG_TEST_RUN in `test_run.rs`.

pub(crate) mod btf_info;
mod core_relo;
mod info;
mod kfunc;
mod test_run;
mod types;
mod diagnose;
mod verifier;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

pub use core_relo::CoreRelocation;
pub use info::{ProgInfo, RunStats};
pub use kfunc::KfuncError;
pub use test_run::{TestRun, TestRunResult};
pub use types::{AttachType, ProgFlags, ProgType};
pub use diagnose::{Diagnosis, Mistake};
pub use verifier::{explain, VerifierRejection};

use crate::insn::codec::encode_into;
use crate::insn::{Assembled, EncodeError, Imm64, Insn, MapRef};
use crate::maps::Map;
use crate::sys::{self, Cmd, ProgLoadAttr, SysError};

/// How to load a program. Build with [`LoadOptions::new`] and the setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadOptions {
    pub(crate) name: String,
    pub(crate) prog_type: ProgType,
    pub(crate) license: String,
    /// 0: log only on failure (retried at level 1 to get the reason); 1: verbose; 2: per-insn
    /// state; 4: statistics only. Levels combine as bits, as the kernel takes them.
    pub(crate) log_level: u32,
    /// Initial verifier log buffer size (grown ×4 on ENOSPC up to 16 MiB).
    pub(crate) log_size: usize,
    pub(crate) expected_attach_type: Option<AttachType>,
    /// struct_ops: the index of the member of the kernel's ops struct the program implements,
    /// which the kernel takes in `expected_attach_type` (in place of an attach type).
    pub(crate) struct_ops_member: Option<u32>,
    /// BTF id of the attach target (tracing, LSM, struct_ops, ext).
    pub(crate) attach_btf_id: u32,
    /// BTF object the attach id is in (0: vmlinux) — `attach_btf_obj_fd`.
    pub(crate) attach_btf_obj_fd: Option<std::sync::Arc<OwnedFd>>,
    /// Program to attach to (freplace/ext, fentry on a BPF program) — `attach_prog_fd`.
    pub(crate) attach_prog_fd: Option<std::sync::Arc<OwnedFd>>,
    pub(crate) flags: ProgFlags,
    /// `kern_version` (only checked for kprobes by kernels before 5.0).
    pub(crate) kern_version: u32,
    /// Device for offloaded or device-bound XDP programs.
    pub(crate) ifindex: u32,
    /// The BTF CO-RE instructions are resolved against (default: the running kernel's).
    pub(crate) core_btf: Option<std::sync::Arc<crate::core_btf::Btf>>,
    /// Program BTF with its func and line info, given by the caller (an object's `.BTF` and
    /// `.BTF.ext`, as libbpf loads it) instead of built from the instructions' source locations.
    pub(crate) program_btf: Option<btf_info::ProgBtf>,
}

/// What the options say; fields are set with [`LoadOptions::new`] and the setters only (getters
/// are `get_*`, as `std::process::Command`'s, since the setters have the plain names).
impl LoadOptions {
    /// The program's name (the kernel keeps the first 15 bytes).
    pub fn get_name(&self) -> &str {
        &self.name
    }
    /// The program type.
    pub fn get_prog_type(&self) -> ProgType {
        self.prog_type
    }
    /// The `expected_attach_type` set with [`LoadOptions::expected_attach_type`], if any.
    pub fn get_expected_attach_type(&self) -> Option<AttachType> {
        self.expected_attach_type
    }
    /// The `attach_btf_id` (0 when unset).
    pub fn get_attach_btf_id(&self) -> u32 {
        self.attach_btf_id
    }
    /// The verifier log level (0: log only on failure).
    pub fn get_log_level(&self) -> u32 {
        self.log_level
    }
    /// The initial verifier log buffer size in bytes.
    pub fn get_log_size(&self) -> usize {
        self.log_size
    }
    /// The `prog_flags` of BPF_PROG_LOAD.
    pub fn get_flags(&self) -> ProgFlags {
        self.flags
    }
}

impl LoadOptions {
    /// Options to load a program of `prog_type` named `name`: license "GPL", log level 0, the rest unset.
    pub fn new(name: impl Into<String>, prog_type: ProgType) -> Self {
        LoadOptions {
            name: name.into(),
            prog_type,
            license: "GPL".into(),
            log_level: 0,
            log_size: LOG_START,
            expected_attach_type: None,
            struct_ops_member: None,
            attach_btf_id: 0,
            attach_btf_obj_fd: None,
            attach_prog_fd: None,
            flags: ProgFlags::default(),
            kern_version: 0,
            ifindex: 0,
            core_btf: None,
            program_btf: None,
        }
    }
    /// `license` of BPF_PROG_LOAD (default "GPL"); GPL-only helpers and kfuncs need a GPL-compatible one.
    pub fn license(mut self, l: impl Into<String>) -> Self {
        self.license = l.into();
        self
    }
    /// `log_level` of BPF_PROG_LOAD: 1 verbose, 2 per-instruction state, 4 statistics (bits combine);
    /// 0 logs only on failure.
    pub fn log_level(mut self, l: u32) -> Self {
        self.log_level = l;
        self
    }
    /// Initial verifier log buffer size in bytes, clamped to 128 bytes..16 MiB (grown on ENOSPC).
    pub fn log_size(mut self, bytes: usize) -> Self {
        self.log_size = bytes.clamp(128, LOG_MAX);
        self
    }
    /// `expected_attach_type` of BPF_PROG_LOAD: the hook the program will attach to; needed by
    /// cgroup sock_addr/sockopt, tracing (fentry, fexit, LSM, iter) and some other types.
    pub fn expected_attach_type(mut self, t: AttachType) -> Self {
        self.expected_attach_type = Some(t);
        self
    }
    /// struct_ops: implement member `index` of the ops struct `attach_btf_id` names.
    pub fn struct_ops_member(mut self, index: u32) -> Self {
        self.struct_ops_member = Some(index);
        self
    }
    /// What `expected_attach_type` of `BPF_PROG_LOAD` carries: the struct_ops member index, or
    /// the attach type.
    pub fn raw_expected_attach_type(&self) -> u32 {
        self.struct_ops_member.or(self.expected_attach_type.map(AttachType::raw)).unwrap_or(0)
    }
    /// `attach_btf_id` of BPF_PROG_LOAD: the BTF id of the attach target (the function of
    /// fentry/fexit/LSM/tp_btf, the ops struct of struct_ops, the function an ext program replaces).
    pub fn attach_btf_id(mut self, id: u32) -> Self {
        self.attach_btf_id = id;
        self
    }
    /// The BTF object (e.g. a module's) holding `attach_btf_id`.
    pub fn attach_btf_obj(mut self, btf: impl AsFd) -> Result<Self, SysError> {
        let fd = sys::dup(btf.as_fd(), &format!("attach btf of \"{}\"", self.name))?;
        self.attach_btf_obj_fd = Some(std::sync::Arc::new(fd));
        Ok(self)
    }
    /// The BPF program this one attaches to (freplace, fentry/fexit on BPF).
    pub fn attach_prog(mut self, prog: impl AsFd) -> Result<Self, SysError> {
        let fd = sys::dup(prog.as_fd(), &format!("attach prog of \"{}\"", self.name))?;
        self.attach_prog_fd = Some(std::sync::Arc::new(fd));
        Ok(self)
    }
    /// `prog_flags` of BPF_PROG_LOAD (e.g. sleepable, XDP frags).
    pub fn flags(mut self, f: ProgFlags) -> Self {
        self.flags = f;
        self
    }
    /// `kern_version` of BPF_PROG_LOAD; only kernels before 5.0 check it, and only for kprobes.
    pub fn kern_version(mut self, v: u32) -> Self {
        self.kern_version = v;
        self
    }
    /// `prog_ifindex` of BPF_PROG_LOAD: the device of an offloaded or device-bound XDP program.
    pub fn ifindex(mut self, ifindex: u32) -> Self {
        self.ifindex = ifindex;
        self
    }
    /// Resolve CO-RE instructions against `btf` instead of the running kernel's BTF (to test a
    /// program against another kernel's types).
    pub fn core_btf(mut self, btf: crate::core_btf::Btf) -> Self {
        self.core_btf = Some(std::sync::Arc::new(btf));
        self
    }

    /// Load with this program BTF and these func and line info records (an object's).
    pub(crate) fn program_btf(mut self, btf: btf_info::ProgBtf) -> Self {
        self.program_btf = Some(btf);
        self
    }

    fn describe(&self) -> String {
        format!("prog_load({} \"{}\")", self.prog_type, self.name)
    }
}

/// Why a program did not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The program references a map that was not given; names the program and the map.
    #[error("program \"{prog}\": map `{map}` is referenced but not provided")]
    UnboundMap {
        /// The program's name.
        prog: String,
        /// The map's name.
        map: String,
    },
    /// The instructions could not be encoded; names the program.
    #[error("program \"{prog}\": {source}")]
    Encode {
        /// The program's name.
        prog: String,
        /// The encoding error.
        source: EncodeError,
    },
    /// The verifier rejected the program; the rejection holds its analysis of the log.
    #[error("program \"{prog}\" rejected by the verifier: {0}", .rejection)]
    Verifier {
        /// The program's name.
        prog: String,
        /// The verifier's log and its analysis.
        rejection: Box<VerifierRejection>,
    },
    /// A bpf(2) or other system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// The kernel refused the program for a reason the verifier's analysis does not give (a
    /// kernel symbol without an address, an attach type not allowed here, …); the log's last
    /// lines say what it saw.
    #[error("{source}; the verifier log ends: {log_tail}")]
    Refused {
        /// The program's name.
        prog: String,
        /// The error PROG_LOAD gave.
        source: SysError,
        /// The last lines of the verifier log.
        log_tail: String,
    },
    /// Pinning or unpinning failed.
    #[error(transparent)]
    Pin(#[from] sys::PinError),
    /// A CO-RE relocation could not be resolved against the kernel's BTF.
    #[error("program \"{prog}\": CO-RE: {source}")]
    Core {
        /// The program's name.
        prog: String,
        /// The CO-RE error.
        source: core_relo::CoreError,
    },
    /// A kfunc call could not be resolved; `at` says where in the program it is called.
    #[error("program \"{prog}\": kfunc `{name}`{at}: {source}")]
    Kfunc {
        /// The program's name.
        prog: String,
        /// The kfunc's name.
        name: String,
        /// Where in the program it is called.
        at: String,
        /// Why it could not be resolved.
        source: Box<KfuncError>,
    },
    /// The BTF func info for the program could not be built.
    #[error("program \"{prog}\": building its BTF func info: {source}")]
    FuncInfo {
        /// The program's name.
        prog: String,
        /// The BTF error.
        source: crate::core_btf::BtfError,
    },
    /// The fd given to [`Program::from_fd`] does not refer to a program; `what` describes the fd.
    #[error("the fd is not a program ({what})")]
    NotAProgram {
        /// What the fd refers to.
        what: String,
    },
    /// The kernel reports a program type this library does not know; `id` is the program's, `raw` the type.
    #[error("program id {id} has type {raw}, which bpfkit does not know")]
    UnknownType {
        /// The program's id.
        id: u32,
        /// The program type number the kernel reports.
        raw: u32,
    },
    /// The kernel's translated (xlated) instructions could not be decoded; names the program.
    #[error("program \"{prog}\": the kernel's xlated instructions do not decode: {message}")]
    Xlated {
        /// The program's name.
        prog: String,
        /// Why the instructions do not decode.
        message: String,
    },
}

/// A loaded program; dropping it closes its fd.
#[derive(Debug)]
pub struct Program {
    fd: OwnedFd,
    name: String,
    prog_type: ProgType,
    /// The verifier log, if a log level was requested.
    pub log: String,
    /// What each CO-RE instruction was resolved to at load.
    core: Vec<core_relo::CoreRelocation>,
}

const LOG_START: usize = 64 * 1024;
/// Largest verifier log asked for when explaining a rejection: the kernel keeps only the last
/// part of a longer one and says ENOSPC, which would hide the errno that matters.
const LOG_MAX: usize = 256 * 1024 * 1024;

impl Program {
    /// Load `asm`, binding map names to `maps`.
    pub fn load(asm: &Assembled, maps: &[&Map], opts: &LoadOptions) -> Result<Program, LoadError> {
        let by_name: HashMap<&str, &Map> = maps.iter().map(|m| (m.name(), *m)).collect();
        // Encode straight from the assembled program; only `ld_imm64` instructions naming a map
        // are copied, to bind the name to the map's fd.
        let mut slots = Vec::with_capacity(asm.slot_count());
        let mut uses_fd_array = false;
        let mut resolver: Option<core_relo::CoreResolver> = None;
        // Slots poisoned because a CO-RE relocation found no match, and which relocation.
        let mut poisoned: Vec<(usize, String)> = Vec::new();
        // What each CO-RE instruction became, kept on the loaded program.
        let mut core_records: Vec<core_relo::CoreRelocation> = Vec::new();
        let core_err = |source| LoadError::Core { prog: opts.name.clone(), source };
        for (i, insn) in asm.insns().iter().enumerate() {
            if let Some(resolved) = kfunc::resolve(insn) {
                let insn = resolved.map_err(|(name, source)| {
                    let at = asm.loc(i).map(|l| format!(" ({l})")).unwrap_or_default();
                    LoadError::Kfunc { prog: opts.name.clone(), name, at, source: Box::new(source) }
                })?;
                encode_into(&insn, &mut slots).map_err(|source| LoadError::Encode { prog: opts.name.clone(), source })?;
                continue;
            }
            let encoded = match insn {
                Insn::Core { dst, access } => {
                    if resolver.is_none() {
                        resolver = Some(core_relo::CoreResolver::new(opts.core_btf.as_ref()).map_err(core_err)?);
                    }
                    let resolved = resolver.as_ref().map(|r| r.resolve(*dst, access, slots.len())).transpose().map_err(core_err)?;
                    let Some(resolved) = resolved else { continue };
                    if let Some(why) = resolved.poisoned {
                        poisoned.push((slots.len(), why));
                    }
                    core_records.push(resolved.record);
                    encode_into(&resolved.insn, &mut slots)
                }
                Insn::LdImm64 { value: Imm64::Map(MapRef::Name(n)) | Imm64::MapValue { map: MapRef::Name(n), .. }, .. } => {
                    let map = by_name.get(n.as_str()).ok_or_else(|| LoadError::UnboundMap { prog: opts.name.clone(), map: n.clone() })?;
                    let mut bound = insn.clone();
                    if let Insn::LdImm64 { value: Imm64::Map(m) | Imm64::MapValue { map: m, .. }, .. } = &mut bound {
                        *m = map.as_ref();
                    }
                    encode_into(&bound, &mut slots)
                }
                Insn::LdImm64 { value: Imm64::MapIdx(_) | Imm64::MapIdxValue { .. }, .. } => {
                    uses_fd_array = true;
                    encode_into(insn, &mut slots)
                }
                _ => encode_into(insn, &mut slots),
            };
            encoded.map_err(|source| LoadError::Encode { prog: opts.name.clone(), source })?;
        }
        // `map_idx[N]` operands index the load's fd_array: the maps passed in, in order.
        let fd_array: Vec<i32> = if uses_fd_array { maps.iter().map(|m| m.as_fd().as_raw_fd()).collect() } else { Vec::new() };
        // BTF func and line info: required when the program takes a subprogram's address, and
        // otherwise given whenever the program has source locations, so the verifier's log
        // quotes the source. The BTF must stay loaded until PROG_LOAD returns (the kernel takes
        // its own reference).
        let (starts, func_info_required) = btf_info::function_starts(&slots);
        let has_locs = asm.has_locs();
        let built;
        let prog_btf = if let Some(given) = &opts.program_btf {
            Some(given)
        } else if func_info_required || has_locs {
            built = match btf_info::build(&opts.name, asm, &starts) {
                Ok(b) => Some(b),
                Err(source) if func_info_required => return Err(LoadError::FuncInfo { prog: opts.name.clone(), source }),
                // Line info is a comfort: without BTF (e.g. refused) the program loads as before.
                Err(_) => None,
            };
            built.as_ref()
        } else {
            None
        };
        let license = std::ffi::CString::new(opts.license.replace('\0', "")).unwrap_or_default();
        let mut log_level = opts.log_level;
        let mut log = vec![0u8; if log_level > 0 { opts.log_size } else { 0 }];
        loop {
            let mut attr = ProgLoadAttr {
                prog_type: opts.prog_type.raw(),
                insn_cnt: slots.len() as u32,
                insns: sys::ptr(slots.as_ptr()),
                license: sys::ptr(license.as_ptr()),
                log_level,
                log_size: log.len() as u32,
                log_buf: if log.is_empty() { 0 } else { sys::ptr(log.as_mut_ptr()) },
                prog_name: sys::name16(&opts.name),
                expected_attach_type: opts.raw_expected_attach_type(),
                attach_btf_id: opts.attach_btf_id,
                attach_prog_fd: opts
                    .attach_prog_fd
                    .as_ref()
                    .or(opts.attach_btf_obj_fd.as_ref())
                    .map(|fd| fd.as_raw_fd() as u32)
                    .unwrap_or(0),
                prog_flags: opts.flags.0,
                kern_version: opts.kern_version,
                prog_ifindex: opts.ifindex,
                fd_array: if fd_array.is_empty() { 0 } else { sys::ptr(fd_array.as_ptr()) },
                ..Default::default()
            };
            if let Some(pb) = &prog_btf {
                attr.prog_btf_fd = pb.btf.as_raw_fd() as u32;
                attr.func_info = sys::ptr(pb.funcs.as_ptr());
                attr.func_info_cnt = pb.funcs.len() as u32;
                attr.func_info_rec_size = std::mem::size_of::<btf_info::FuncInfoRecord>() as u32;
                if !pb.lines.is_empty() {
                    attr.line_info = sys::ptr(pb.lines.as_ptr());
                    attr.line_info_cnt = pb.lines.len() as u32;
                    attr.line_info_rec_size = std::mem::size_of::<btf_info::LineInfoRecord>() as u32;
                }
            }
            match sys::bpf_fd(Cmd::ProgLoad, &mut attr) {
                Ok(fd) => {
                    return Ok(Program { fd, name: opts.name.clone(), prog_type: opts.prog_type, log: sys::c_name(&log), core: core_records });
                }
                // The log buffer was too small: grow it (up to 16 MiB) and try again.
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && log_level > 0 && log.len() < LOG_MAX => {
                    log = vec![0u8; (log.len() * 4).min(LOG_MAX)];
                }
                // Refused without a log: load once more with one, to say why (as libbpf does).
                Err(_) if log_level == 0 => {
                    log_level = 1;
                    log = vec![0u8; opts.log_size];
                }
                Err(e) => {
                    let text = sys::c_name(&log);
                    // E2BIG with a log: the verifier ran out of its instruction budget.
                    let verifier = matches!(e.raw_os_error(), Some(libc::EACCES | libc::EINVAL | libc::E2BIG));
                    if verifier && !text.trim().is_empty() {
                        let mut rejection = explain(&text, asm, e);
                        rejection.prog_type = Some(opts.prog_type);
                        // A poisoned CO-RE instruction: say which relocation, not just "unknown func".
                        if let Some((_, why)) = poisoned.iter().find(|(s, _)| Some(*s) == rejection.slot) {
                            rejection.reason = format!("CO-RE relocation failed: {why} (the verifier: {})", rejection.reason);
                        }
                        return Err(LoadError::Verifier { prog: opts.name.clone(), rejection: Box::new(rejection) });
                    }
                    let source = SysError::new(opts.describe(), e).needing(opts.prog_type.required_capabilities());
                    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
                    if tail.is_empty() {
                        return Err(source.into());
                    }
                    let log_tail = tail[tail.len().saturating_sub(3)..].join(" / ");
                    return Err(LoadError::Refused { prog: opts.name.clone(), source, log_tail });
                }
            }
        }
    }

    /// What each CO-RE instruction (`core_field_offset(…)` and friends) was resolved to when
    /// this program was loaded, in program order: the offsets, sizes and existence answers the
    /// target kernel's BTF gave, and which ones were poisoned. Empty for programs without CO-RE
    /// and for programs opened from the kernel.
    pub fn core_relocations(&self) -> &[CoreRelocation] {
        &self.core
    }

    /// The program's name as loaded (or as the kernel reports it for opened programs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program type.
    pub fn prog_type(&self) -> ProgType {
        self.prog_type
    }

    /// `xdp "name"`: how errors name this program.
    pub fn describe(&self) -> String {
        format!("{} \"{}\"", self.prog_type, self.name)
    }

}

impl AsFd for Program {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

crate::error::errno_from_sources!(LoadError);
