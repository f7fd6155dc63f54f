//! The load phase: BTF into the kernel, maps created (with BTF key/value types where the object
//! defines them, global data written and `.rodata` frozen, map-in-map slots filled), programs
//! relocated, linked and loaded; and attaching by section.

use super::maps::{MapDef, MapOrigin, Pinning};
use super::section::{AttachTarget, SectionSpec};
use super::{linker, prog_btf};
use super::{Object, ObjectError};
use crate::attach::kprobe::KprobeTarget;
use crate::attach::uprobe::UprobeTarget;
use crate::attach::{Link, PerfEventTarget, TcDirection, XdpMode};
use crate::core_btf::{Btf, Kind, LoadedBtf};
use crate::insn::Assembled;
use crate::maps::{Map, MapSpec, MapType, UpdateFlags};
use crate::prog::{LoadOptions, Program};
use std::os::fd::AsFd;

/// A loaded object: its maps and programs, by name.
#[derive(Debug)]
pub struct LoadedObject {
    name: String,
    maps: Vec<(MapDef, Map)>,
    programs: Vec<LoadedProgram>,
    /// Keeps the object's BTF loaded as long as the object (maps and programs refer to it).
    _btf: Option<LoadedBtf>,
    /// The object's BTF, to find global variables.
    local_btf: Option<Btf>,
}

/// A loaded program and what its section said about it.
#[derive(Debug)]
pub struct LoadedProgram {
    /// The program's name (its function symbol).
    pub name: String,
    /// The ELF section it came from.
    pub section_name: String,
    /// What the section name says about it (type, attach type, target).
    pub spec: SectionSpec,
    program: Program,
}

impl LoadedObject {
    /// The object's name (the file name up to its first `.`, or the name given to `open_bytes`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A map by its name in the object (variable name, or `.data`/`.rodata`/… section name).
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|(d, _)| d.name == name).map(|(_, m)| m)
    }

    /// Every map with its definition, in the object's order.
    pub fn maps(&self) -> impl Iterator<Item = (&MapDef, &Map)> {
        self.maps.iter().map(|(d, m)| (d, m))
    }

    /// The loaded program named `name`, if it was loaded.
    pub fn program(&self, name: &str) -> Option<&LoadedProgram> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// Every loaded program, in section order.
    pub fn programs(&self) -> &[LoadedProgram] {
        &self.programs
    }

    /// Where global `name` is: its section's map (definition and map), offset and size.
    pub(super) fn global_slot(&self, name: &str) -> Result<(&MapDef, &Map, usize, usize), ObjectError> {
        let (index, offset, size) =
            super::locate_global(self.local_btf.as_ref(), self.maps.iter().map(|(d, _)| d), name)?;
        let (def, map) = &self.maps[index];
        Ok((def, map, offset, size))
    }

    /// Global variable `name`'s current value, read from its data section's map (one lookup
    /// syscall; [`global_mmap`](Self::global_mmap) reads writable sections without one).
    pub fn global(&self, name: &str) -> Result<Vec<u8>, ObjectError> {
        let (def, map, offset, size) = self.global_slot(name)?;
        let err = |reason: String| ObjectError::Global { name: name.to_string(), reason };
        let value = map.lookup(&0u32.to_le_bytes()).map_err(|e| err(format!("reading map '{}': {e}", def.name)))?;
        value
            .and_then(|v| v.get(offset..offset + size).map(<[u8]>::to_vec))
            .ok_or_else(|| err(format!("not within map '{}''s value", def.name)))
    }
}

impl LoadedProgram {
    /// The loaded program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    fn attach_err(&self, reason: impl std::fmt::Display) -> ObjectError {
        ObjectError::Attach { program: self.name.clone(), reason: reason.to_string() }
    }

    /// Attach where the section name says: tracepoints, raw tracepoints, BTF targets (tp_btf,
    /// fentry/fexit, LSM), kprobes, and uprobes whose section names a binary and symbol. Other
    /// program types need a target: [`attach_xdp`](Self::attach_xdp),
    /// [`attach_uprobe`](Self::attach_uprobe), [`attach_cgroup`](Self::attach_cgroup), or the
    /// [`crate::attach`] methods on [`program`](Self::program).
    pub fn attach(&self) -> Result<Link, ObjectError> {
        let p = &self.program;
        match &self.spec.target {
            AttachTarget::Tracepoint { category, name } => {
                p.attach_tracepoint(category, name).map_err(|e| self.attach_err(e))
            }
            AttachTarget::RawTracepoint { name } => {
                p.attach_raw_tracepoint(name).map_err(|e| self.attach_err(e))
            }
            AttachTarget::Btf { .. } if self.spec.expected_attach_type == Some(crate::prog::AttachType::TraceIter) => {
                Err(self.attach_err("an iterator is attached with Program::attach_iter and a scope"))
            }
            AttachTarget::Btf { .. } => p.attach_btf().map_err(|e| self.attach_err(e)),
            AttachTarget::Kprobe { function, offset, ret } => {
                let mut t = KprobeTarget::function(function.clone()).offset(*offset);
                if *ret {
                    t = t.retprobe();
                }
                let what = if *ret { "kretprobe" } else { "kprobe" };
                p.attach_kprobe(&t)
                    .map_err(|e| self.attach_err(format!("{what} on '{function}'+{offset}: {e}")))
            }
            AttachTarget::Uprobe { binary: Some(binary), symbol: Some(symbol), ret } => {
                let mut t = UprobeTarget::symbol(binary.clone(), symbol.clone());
                if *ret {
                    t = t.retprobe();
                }
                self.attach_uprobe(&t)
            }
            AttachTarget::Uprobe { .. } => Err(self
                .attach_err(format!("section '{}' names no binary and symbol: use attach_uprobe", self.section_name))),
            _ => Err(self.attach_err(format!(
                "section '{}' ({}) names no attach point: use attach_xdp, attach_cgroup or the bpfkit::attach methods",
                self.section_name, self.spec.prog_type
            ))),
        }
    }

    /// Attach an XDP program to interface `ifindex`.
    pub fn attach_xdp(&self, ifindex: u32, mode: XdpMode) -> Result<Link, ObjectError> {
        self.program.attach_xdp(ifindex, mode).map_err(|e| self.attach_err(e))
    }

    /// Attach a uprobe program to `target`.
    pub fn attach_uprobe(&self, target: &UprobeTarget) -> Result<Link, ObjectError> {
        self.program.attach_uprobe(target).map_err(|e| self.attach_err(e))
    }

    /// Attach a tc program to interface `ifindex` (in the calling thread's network namespace):
    /// a `tcx/ingress` or `tcx/egress` section at its own direction (`direction` must agree), a
    /// `tc` or `classifier` section at `direction`; a tcx link where the kernel has TCX.
    pub fn attach_tc(&self, ifindex: u32, direction: TcDirection) -> Result<Link, ObjectError> {
        use crate::prog::AttachType as A;
        let own = match self.spec.expected_attach_type {
            Some(A::TcxIngress) => Some(TcDirection::Ingress),
            Some(A::TcxEgress) => Some(TcDirection::Egress),
            _ => None,
        };
        if self.spec.prog_type != crate::prog::ProgType::SchedCls {
            return Err(self.attach_err(format!("section '{}' is not a tc program", self.section_name)));
        }
        if own.is_some_and(|d| d != direction) {
            return Err(self.attach_err(format!("section '{}' attaches at {own:?}, not {direction:?}", self.section_name)));
        }
        self.program.attach_tc(ifindex, direction).map_err(|e| self.attach_err(e))
    }

    /// Attach a `perf_event` program to the perf event `target` opens (a software or hardware
    /// counter, sampled every `sample_period` events).
    pub fn attach_perf_event(&self, target: &PerfEventTarget) -> Result<Link, ObjectError> {
        self.program.attach_perf_event(target).map_err(|e| self.attach_err(e))
    }

    /// Attach a cgroup program to `cgroup` at the section's expected attach type.
    pub fn attach_cgroup(&self, cgroup: impl AsFd) -> Result<Link, ObjectError> {
        let at = self
            .spec
            .expected_attach_type
            .ok_or_else(|| self.attach_err(format!("section '{}' has no expected attach type", self.section_name)))?;
        self.program.attach_cgroup(cgroup, at).map_err(|e| self.attach_err(e))
    }
}

/// Map types whose key and value the kernel does not describe with BTF (it refuses BTF ids for
/// some, ignores them for others): created without, as libbpf's `bpf_object__create_map` does.
fn takes_btf_types(t: MapType) -> bool {
    !matches!(
        t,
        MapType::PerfEventArray
            | MapType::CgroupArray
            | MapType::StackTrace
            | MapType::ArrayOfMaps
            | MapType::HashOfMaps
            | MapType::Devmap
            | MapType::DevmapHash
            | MapType::Cpumap
            | MapType::Xskmap
            | MapType::Sockmap
            | MapType::Sockhash
            | MapType::Queue
            | MapType::Stack
            | MapType::Arena
            | MapType::StructOps
    )
}

fn map_spec(def: &MapDef, btf: Option<&LoadedBtf>) -> Result<MapSpec, ObjectError> {
    let mut spec = MapSpec::new(def.kernel_name.clone(), def.map_type, def.key_size, def.value_size, def.max_entries)
        .flags(def.flags)
        .map_extra(def.map_extra);
    if let Some(n) = def.numa_node {
        spec = spec.numa_node(n);
    }
    let is_data = matches!(def.origin, MapOrigin::Data { .. });
    let ids = match (def.key_type_id, def.value_type_id) {
        (Some(k), Some(v)) => Some((k.0, v.0)),
        (None, Some(v)) if is_data => Some((0, v.0)),
        _ => None,
    };
    if let (Some(btf), Some((k, v)), true) = (btf, ids, takes_btf_types(def.map_type)) {
        spec = spec.btf(btf, k, v).map_err(|source| ObjectError::MapCreate { map: def.name.clone(), source })?;
    }
    // struct_ops: the kernel's value type, beside the object's BTF (no key/value types).
    if let Some(vt) = def.struct_ops.as_ref().and_then(|s| s.kernel_value_type) {
        spec = spec.btf_vmlinux_value_type_id(vt);
        if let Some(btf) = btf {
            spec = spec.btf(btf, 0, 0).map_err(|source| ObjectError::MapCreate { map: def.name.clone(), source })?;
        }
    }
    Ok(spec)
}

/// `Map::create`, and when the kernel refuses a map with BTF key/value types, once more
/// without them (libbpf's "Retrying without BTF"): kernels refuse BTF for some map types, or
/// types they cannot check (a kernel older than the object's BTF).
fn create_with_btf_fallback(spec: MapSpec) -> Result<Map, crate::maps::MapError> {
    match Map::create(&spec) {
        Err(_) if spec.btf.is_some() => Map::create(&MapSpec { btf: None, ..spec }),
        created => created,
    }
}

/// The sizes libbpf gives a map at creation when the object leaves them to it: a perf event
/// array without `max_entries` gets one slot per possible CPU (`map_set_def_max_entries`); a
/// ring buffer's size is rounded up to a power-of-2 multiple of the page size
/// (`adjust_ringbuf_sz`).
pub(super) fn settle_max_entries(def: &mut MapDef) -> Result<(), ObjectError> {
    if def.map_type == MapType::PerfEventArray && def.max_entries == 0 {
        let cpus = crate::sys::possible_cpus().map_err(|e| ObjectError::Map {
            map: def.name.clone(),
            reason: format!(
                "a perf event array without max_entries gets one slot per possible CPU: \
                 reading /sys/devices/system/cpu/possible: {e}"
            ),
        })?;
        def.max_entries = u32::try_from(cpus).unwrap_or(u32::MAX);
    }
    if matches!(def.map_type, MapType::RingBuf | MapType::UserRingBuf) {
        def.max_entries = super::maps::adjust_ringbuf_size(def.max_entries);
    }
    if let Some(inner) = def.inner.as_deref_mut() {
        settle_max_entries(inner)?;
    }
    Ok(())
}

fn create_map(def: &MapDef, btf: Option<&LoadedBtf>) -> Result<Map, ObjectError> {
    let create_err = |source| ObjectError::MapCreate { map: def.name.clone(), source };
    let mut spec = map_spec(def, btf)?;
    if let Some(inner) = &def.inner {
        let template = create_with_btf_fallback(map_spec(inner, btf)?).map_err(create_err)?;
        spec = spec.inner_map(&template).map_err(create_err)?;
    }
    let map = create_with_btf_fallback(spec).map_err(create_err)?;
    if let MapOrigin::Data { readonly } = def.origin {
        if def.data.iter().any(|&b| b != 0) {
            map.update(&0u32.to_le_bytes(), &def.data, UpdateFlags::Any).map_err(create_err)?;
        }
        if readonly {
            map.freeze().map_err(create_err)?;
        }
    }
    Ok(map)
}

/// Put fd (a map or a program) into slot `slot` of map-in-map or program array `map`.
fn set_slot(def: &MapDef, map: &Map, slot: u32, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), ObjectError> {
    if !matches!(def.map_type, MapType::ArrayOfMaps | MapType::HashOfMaps | MapType::ProgArray) {
        return Err(ObjectError::Map {
            map: def.name.clone(),
            reason: format!("initial values are not supported for {} maps", def.map_type),
        });
    }
    map.update_fd(&slot.to_le_bytes(), fd, UpdateFlags::Any)
        .map_err(|source| ObjectError::MapCreate { map: def.name.clone(), source })
}

/// A map pinned by name: the one at `path` if its definition matches (libbpf's
/// `map_is_reuse_compat`), else a new one, pinned there.
fn pinned_map(def: &MapDef, btf: Option<&LoadedBtf>, path: &std::path::Path) -> Result<Map, ObjectError> {
    let err = |reason: String| ObjectError::Map { map: def.name.clone(), reason };
    if path.exists() {
        let map = Map::from_pin(path).map_err(|e| err(format!("opening the pin {}: {e}", path.display())))?;
        let same = map.map_type() == def.map_type
            && map.key_size() == def.key_size
            && map.value_size() == def.value_size
            && map.max_entries() == def.max_entries
            && map.flags() == def.flags;
        if !same {
            return Err(err(format!("the map pinned at {} has another definition", path.display())));
        }
        return Ok(map);
    }
    let map = create_map(def, btf)?;
    map.pin(path).map_err(|e| err(format!("pinning at {}: {e}", path.display())))?;
    Ok(map)
}

/// The BTF id of a program's attach target in vmlinux.
fn attach_btf_id(vmlinux: Option<&Btf>, prog: &str, target: &AttachTarget) -> Result<u32, ObjectError> {
    let AttachTarget::Btf { name, func } = target else { return Ok(0) };
    let vml = vmlinux.ok_or_else(|| ObjectError::Program {
        program: prog.into(),
        reason: format!("attach target '{name}' needs the kernel's BTF"),
    })?;
    let kind = if *func { Kind::Func } else { Kind::Typedef };
    vml.find_by_name_kind(name, kind).map(|id| id.0).ok_or_else(|| ObjectError::Program {
        program: prog.into(),
        reason: format!("attach target {} '{name}' is not in vmlinux BTF", kind.name()),
    })
}

pub(super) fn load(mut obj: Object) -> Result<LoadedObject, ObjectError> {
    if let Some(p) = obj.programs.iter().find(|p| p.autoload && p.spec.is_none()) {
        return Err(ObjectError::Program {
            program: p.name.clone(),
            reason: format!(
                "section '{}' is not a known program type (set autoload to false to leave it out)",
                p.section_name
            ),
        });
    }
    // Kconfig values are read now, as libbpf reads them at load.
    if let Some(def) = obj.maps.iter_mut().find(|m| m.name == super::externs::KCONFIG_SEC) {
        super::externs::fill_kconfig(&obj.externs, &mut def.data)?;
    }
    let vmlinux = if obj.needs_vmlinux() {
        Some(Btf::vmlinux().map_err(|e| ObjectError::Core { reason: format!("reading the kernel's BTF: {e}") })?)
    } else {
        None
    };
    let struct_ops_attach = match &vmlinux {
        Some(vml) if obj.maps.iter().any(|m| m.struct_ops.is_some()) => {
            super::struct_ops::prepare(&mut obj.maps, &mut obj.programs, obj.btf.as_ref(), vml)?
        }
        _ => Default::default(),
    };
    // The object's BTF for map key/value types; a kernel that refuses it gets maps without.
    let btf = obj.btf_blob.as_deref().and_then(|b| LoadedBtf::load(b).ok());
    for def in &mut obj.maps {
        settle_max_entries(def)?;
    }
    let mut maps = Vec::with_capacity(obj.maps.len());
    for def in &obj.maps {
        maps.push(match def.pinning {
            Pinning::ByName => pinned_map(def, btf.as_ref(), &obj.pin_root.join(&def.name))?,
            Pinning::None => create_map(def, btf.as_ref())?,
        });
    }
    // Map-in-map slots now; program array slots once the programs are loaded.
    for (def, map) in obj.maps.iter().zip(&maps).filter(|(d, _)| d.map_type != MapType::ProgArray) {
        for (slot, target) in &def.init_slots {
            let inner = obj.maps.iter().position(|m| &m.name == target).ok_or_else(|| ObjectError::Map {
                map: def.name.clone(),
                reason: format!("slot {slot} refers to '{target}', which is not a map of the object"),
            })?;
            set_slot(def, map, *slot, maps[inner].as_fd())?;
        }
    }
    let rel = linker::relocate(&obj.elf, &obj.maps, &obj.externs, obj.btf.as_ref(), obj.ext.as_ref(), vmlinux.as_ref())?;
    let map_refs: Vec<&Map> = maps.iter().collect();
    let raw_lines = obj.elf.btf_ext().and_then(prog_btf::raw_line_info).unwrap_or_default();
    let mut programs = Vec::new();
    for p in obj.programs.iter().filter(|p| p.autoload) {
        let spec = p.spec.clone().ok_or_else(|| ObjectError::Program {
            program: p.name.clone(),
            reason: format!("section '{}' is not a known program type", p.section_name),
        })?;
        // What libbpf refuses before the kernel sees it (`libbpf_prepare_prog_load`).
        let bare = !p.section_name.contains('/');
        if spec.prog_type == crate::prog::ProgType::Ext && !bare {
            return Err(ObjectError::Program {
                program: p.name.clone(),
                reason: format!(
                    "section '{}': an freplace program needs the program it replaces (attach program FD is not set)",
                    p.section_name
                ),
            });
        }
        if matches!(&spec.target, AttachTarget::Btf { name, .. } if name.is_empty())
            || (spec.prog_type == crate::prog::ProgType::Ext && bare)
        {
            return Err(ObjectError::Program {
                program: p.name.clone(),
                reason: format!("section '{}' names no BTF attach target: set one with set_attach_target", p.section_name),
            });
        }
        let (slots, placed) = rel.link(&obj.elf, &p.func, vmlinux.as_ref())?;
        let insns = linker::decode(&p.name, &slots, &obj.maps)?;
        let mut opts = LoadOptions::new(p.name.clone(), spec.prog_type)
            .license(obj.license.clone())
            .kern_version(obj.kern_version)
            .flags(spec.flags)
            .attach_btf_id(attach_btf_id(vmlinux.as_ref(), &p.name, &spec.target)?);
        if let Some(at) = spec.expected_attach_type {
            opts = opts.expected_attach_type(at);
        }
        if spec.prog_type == crate::prog::ProgType::StructOps {
            let at = struct_ops_attach.get(&p.name).ok_or_else(|| ObjectError::Program {
                program: p.name.clone(),
                reason: format!(
                    "section '{}': a struct_ops program no struct_ops map refers to (isn't referenced anywhere)",
                    p.section_name
                ),
            })?;
            opts = opts.attach_btf_id(at.btf_id).struct_ops_member(at.member);
        }
        // libbpf loads USDT programs for uprobe_multi links where the kernel has them
        // (`libbpf_prepare_prog_load`); some helpers (bpf_get_attach_cookie) differ by it.
        if matches!(p.section_name.split('/').next(), Some("usdt" | "usdt.s")) && crate::features::load_probes::has_uprobe_multi_link() {
            opts = opts.expected_attach_type(crate::prog::AttachType::TraceUprobeMulti);
        }
        // With the object's BTF, func and line info as libbpf loads it; without only when the
        // kernel refused the object's BTF (as libbpf then does).
        let records = match (&btf, &obj.ext) {
            (Some(b), Some(ext)) => Some((b, prog_btf::records(ext, &raw_lines, &placed))),
            _ => None,
        };
        if let Some((b, (funcs, lines))) = records {
            let fd = crate::sys::dup(std::os::fd::AsFd::as_fd(b), "the object's BTF")
                .map_err(|e| ObjectError::Program { program: p.name.clone(), reason: e.to_string() })?;
            opts = opts.program_btf(crate::prog::btf_info::ProgBtf { btf: std::sync::Arc::new(fd), funcs, lines });
        }
        // The one load path (prog::Program::load): a rejection is loaded again with a log,
        // grown until it fits, to say why.
        let program = match Program::load(&Assembled::from_insns(insns), &map_refs, &opts.log_size(1 << 20)) {
            Ok(p) => p,
            Err(crate::prog::LoadError::Verifier { prog, mut rejection }) => {
                // A poisoned CO-RE instruction: say which relocation, as libbpf does.
                if let Some(why) = rejection.slot.and_then(|s| rel.poisoned_at(&placed, s)) {
                    rejection.reason = format!("{why} (the verifier: {})", rejection.reason);
                }
                return Err(ObjectError::Load {
                    program: p.name.clone(),
                    section: p.section_name.clone(),
                    source: Box::new(crate::prog::LoadError::Verifier { prog, rejection }),
                });
            }
            // A refusal the verifier does not explain: the errno and the log's last lines.
            Err(crate::prog::LoadError::Refused { source, log_tail, .. }) => {
                return Err(ObjectError::Refused {
                    program: p.name.clone(),
                    section: p.section_name.clone(),
                    reason: format!("the kernel refused it: {}; the verifier log ends: {log_tail}", source.cause()),
                })
            }
            Err(crate::prog::LoadError::Sys(source)) => {
                return Err(ObjectError::Refused {
                    program: p.name.clone(),
                    section: p.section_name.clone(),
                    reason: format!("the kernel refused it: {}", source.cause()),
                })
            }
            Err(source) => {
                return Err(ObjectError::Load { program: p.name.clone(), section: p.section_name.clone(), source: Box::new(source) })
            }
        };
        programs.push(LoadedProgram { name: p.name.clone(), section_name: p.section_name.clone(), spec, program });
    }
    for (def, map) in obj.maps.iter().zip(&maps).filter(|(d, _)| d.map_type == MapType::ProgArray) {
        for (slot, target) in &def.init_slots {
            let prog = programs.iter().find(|p| &p.name == target).ok_or_else(|| ObjectError::Map {
                map: def.name.clone(),
                reason: format!("slot {slot} refers to '{target}', which is not a loaded program of the object"),
            })?;
            set_slot(def, map, *slot, prog.program.as_fd())?;
        }
    }
    Ok(LoadedObject {
        name: obj.name,
        maps: obj.maps.into_iter().zip(maps).collect(),
        programs,
        _btf: btf,
        local_btf: obj.btf,
    })
}
