//! clang-built BPF objects, libbpf-style: [`Object::open`] reads the programs (typed by their
//! section names, [`section`]), the maps (BTF-defined `.maps`, legacy `maps`, global data
//! sections) and the BTF; the object can then be adjusted (globals set, maps resized, programs
//! left out); [`Object::load`] creates the maps, relocates (CO-RE against the running kernel,
//! maps, global data, subprograms, kfuncs) and loads every program, giving a [`LoadedObject`]
//! whose programs attach as their section says ([`LoadedProgram::attach`]).
//!
//! Programs are loaded with the object's BTF and their `.BTF.ext` func and line info, so the
//! kernel sees what libbpf gives it: `tests/object_load.rs` checks, for a corpus of clang-built
//! objects, that the kernel's xlated instructions, program tags, verified instruction counts and
//! func/line info counts equal libbpf 1.7's; `tests/object_features.rs` loads the features below
//! with both and triggers them.
//!
//! Supported beyond maps and programs:
//! - `__kconfig` externs (`externs`): a frozen, mmapable `.kconfig` map laid out as libbpf lays
//!   it out, filled at load from `/boot/config-$(uname -r)` or `/proc/config.gz` (`CONFIG_*`:
//!   bool, tristate, char, integers, strings) and the kernel release (`LINUX_KERNEL_VERSION`);
//!   `__weak` ones are 0 when unset, also when there is no config file (libbpf then fails).
//! - `__ksym` externs: typed variables as `BPF_PSEUDO_BTF_ID` of vmlinux's VAR (the verifier
//!   then needs the symbol in kallsyms: without `CONFIG_KALLSYMS_ALL` the kernel refuses them,
//!   and the error says so), `void` ones by their `/proc/kallsyms` address, kfunc calls by BTF
//!   id; unresolved `__weak` ones are 0.
//! - Custom `.data.*`/`.rodata.*` sections, `.rodata` settable before load and frozen, the
//!   `version` section; after load, writable globals are read and written in place through
//!   [`LoadedObject::global_mmap`]'s typed [`GlobalVar`] (read-only ones with
//!   [`LoadedObject::global`]).
//! - Attach by section ([`LoadedProgram::attach`]), or with a target: `attach_xdp`,
//!   `attach_tc`, `attach_cgroup`, `attach_uprobe`, `attach_perf_event`.
//!
//! - `LINUX_HAS_BPF_COOKIE`/`LINUX_HAS_SYSCALL_WRAPPER` externs, probed as libbpf probes them.
//! - Map sizes libbpf settles at load: a perf event array without `max_entries` gets one slot
//!   per possible CPU, a ring buffer is rounded up to a power-of-2 number of pages; maps of
//!   types that take no BTF key/value types are created without, and any map the kernel refuses
//!   with them is retried without (as libbpf).
//!
//! - struct_ops maps (`.struct_ops`, `.struct_ops.link`) created and their programs loaded as
//!   libbpf does (`object::struct_ops`); not registered (attached).
//!
//! Not (yet) supported: checking a typed ksym's type against the kernel's, registering struct_ops, arenas, `.addr_space`
//! sections, USDT and multi-kprobe attach from the section name, module BTF (kfuncs, ksyms and
//! attach targets are looked up in vmlinux only). A kernel refusal the verifier does not explain
//! (EPERM for fentry/LSM where trampolines are not allowed, ENOENT for a ksym without an
//! address) is [`ObjectError::Refused`], naming the program, section, errno and the log's end.
//!
//! ```no_run
//! use bpfkit::object::Object;
//! let mut obj = Object::open("prog.o")?;
//! obj.set_global("target_tgid", &42u32.to_le_bytes())?;
//! let loaded = obj.load()?;
//! let _link = loaded.program("count_getpid").unwrap().attach()?;
//! let counts = loaded.map("counts").unwrap();
//! # Ok::<(), bpfkit::object::ObjectError>(())
//! ```

mod btf_fix;
mod externs;
mod global;
mod global_text;
mod linker;
mod load;
pub mod maps;
mod prog_btf;
mod struct_ops;
pub mod section;

pub use global::GlobalVar;
pub use load::{LoadedObject, LoadedProgram};
pub use maps::{MapDef, MapOrigin, Pinning};
pub use section::{parse_section, AttachTarget, SectionSpec};
pub use struct_ops::StructOps;

use crate::core_btf::ext::BtfExt;
use crate::core_btf::{Btf, Kind, TypeDetail};
use crate::elf::{ElfError, ElfObject, ElfProgram, SectionKind};
use crate::insn::Insn;
use std::path::Path;

/// libbpf's default pin root for `LIBBPF_PIN_BY_NAME` maps.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf";

/// Everything that can go wrong opening, relocating or loading an object. Each names the
/// section, symbol, map or program at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The ELF file could not be parsed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The object's `.BTF` or `.BTF.ext` could not be read or made kernel-ready.
    #[error("object BTF: {reason}")]
    Btf {
        /// Why it could not be read or made kernel-ready.
        reason: String,
    },
    /// A map definition (in `.maps` or a data section) is invalid; names the map.
    #[error("map '{map}': {reason}")]
    Map {
        /// The map's name.
        map: String,
        /// What is wrong with the definition.
        reason: String,
    },
    /// A relocation could not be applied; names the section and the instruction slot.
    #[error("relocation in section '{section}' at insn {slot}: {reason}")]
    Relocation {
        /// The section holding the instruction.
        section: String,
        /// The instruction's slot in the section.
        slot: usize,
        /// Why the relocation could not be applied.
        reason: String,
    },
    /// A CO-RE relocation could not be resolved against the kernel's BTF.
    #[error("CO-RE: {reason}")]
    Core {
        /// Why the relocation could not be resolved.
        reason: String,
    },
    /// A program in the object is invalid or could not be prepared; names the program.
    #[error("program '{program}': {reason}")]
    Program {
        /// The program's name.
        program: String,
        /// What is wrong.
        reason: String,
    },
    /// A global variable could not be read or set; names it.
    #[error("global variable '{name}': {reason}")]
    Global {
        /// The variable's name.
        name: String,
        /// Why it could not be read or set.
        reason: String,
    },
    /// The kernel refused to create one of the object's maps.
    #[error("creating map '{map}': {source}")]
    MapCreate {
        /// The map's name in the object.
        map: String,
        /// Why the map was not created.
        #[source]
        source: crate::maps::MapError,
    },
    /// The kernel (or the verifier) refused one of the object's programs.
    #[error("loading program '{program}' (section '{section}'): {source}")]
    Load {
        /// The program's name.
        program: String,
        /// The ELF section the program is in.
        section: String,
        /// Why the program did not load.
        #[source]
        source: Box<crate::prog::LoadError>,
    },
    /// The kernel refused the program for a reason other than the verifier's analysis (an
    /// attach type not allowed here, a kernel symbol without an address, …).
    #[error("loading program '{program}' (section '{section}'): {reason}")]
    Refused {
        /// The program's name.
        program: String,
        /// The program's ELF section.
        section: String,
        /// Why the kernel refused it.
        reason: String,
    },
    /// A program could not be attached; names the program.
    #[error("attaching program '{program}': {reason}")]
    Attach {
        /// The program's name.
        program: String,
        /// Why it could not be attached.
        reason: String,
    },
    /// An `extern` (kconfig value, ksym) could not be resolved; names it.
    #[error("extern '{name}': {reason}")]
    Extern {
        /// The extern's name.
        name: String,
        /// Why it could not be resolved.
        reason: String,
    },
}

/// One program of the object, before load.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ProgramDef {
    /// The program's name (its function symbol).
    pub name: String,
    /// The ELF section the program is in (its name says the program type and attach point).
    pub section_name: String,
    /// What the section name means; `None` when libbpf would not know it (loading it fails,
    /// naming the section: set `autoload` to false to leave it out).
    pub spec: Option<SectionSpec>,
    /// Whether [`Object::load`] loads it (`false` for `?` sections until set).
    pub autoload: bool,
    func: ElfProgram,
}

impl ProgramDef {
    /// Override where the program attaches (e.g. a `uprobe` section's binary and symbol, or a
    /// `tp_btf` target): replaces the target the section name gave.
    pub fn set_attach_target(&mut self, target: AttachTarget) -> Result<(), ObjectError> {
        let spec = self.spec.as_mut().ok_or_else(|| ObjectError::Program {
            program: self.name.clone(),
            reason: format!("section '{}' is not a known program type", self.section_name),
        })?;
        spec.target = target;
        Ok(())
    }
}

/// An opened object: programs, maps and BTF, adjustable until [`Object::load`].
#[derive(Clone, Debug)]
pub struct Object {
    name: String,
    elf: ElfObject,
    /// `.BTF` made kernel-ready (DATASEC sizes and offsets filled in, externs made static).
    btf_blob: Option<Vec<u8>>,
    btf: Option<Btf>,
    ext: Option<BtfExt>,
    maps: Vec<MapDef>,
    programs: Vec<ProgramDef>,
    license: String,
    kern_version: u32,
    /// Where maps with `pinning = LIBBPF_PIN_BY_NAME` are pinned (and reused from).
    pin_root: std::path::PathBuf,
    /// `__kconfig` and `__ksym` externs (kconfig ones laid out in the `.kconfig` map).
    externs: Vec<externs::Extern>,
}

impl Object {
    /// Open the object file at `path`; its name is the file name up to the first `.`, as libbpf.
    pub fn open(path: impl AsRef<Path>) -> Result<Object, ObjectError> {
        let path = path.as_ref();
        let elf = ElfObject::from_file(path)?;
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file.split('.').next().unwrap_or_default().to_string();
        Object::from_elf(name, elf)
    }

    /// Open an object from its bytes, naming it `name`.
    pub fn open_bytes(name: &str, bytes: impl Into<Vec<u8>>) -> Result<Object, ObjectError> {
        Object::from_elf(name.to_string(), ElfObject::parse(bytes)?)
    }

    fn from_elf(name: String, elf: ElfObject) -> Result<Object, ObjectError> {
        // Externs are described by the BTF as clang wrote it (before their DATASECs are fixed).
        let has_externs = elf.symbols().iter().any(|s| s.section.is_none() && !s.name.is_empty());
        let externs = match elf.btf() {
            Some(raw) if has_externs => {
                let raw = Btf::from_bytes(raw.to_vec()).map_err(|e| ObjectError::Btf { reason: e.to_string() })?;
                externs::collect(&elf, &raw)?
            }
            _ => Vec::new(),
        };
        let (btf_blob, btf) = match elf.btf() {
            Some(raw) => {
                let blob = btf_fix::sanitize(raw, &elf, &externs)?;
                let btf = Btf::from_bytes(blob.clone()).map_err(|e| ObjectError::Btf { reason: e.to_string() })?;
                (Some(blob), Some(btf))
            }
            None => (None, None),
        };
        let ext = match (elf.btf_ext(), &btf) {
            (Some(raw), Some(b)) => {
                Some(BtfExt::parse(raw, b).map_err(|e| ObjectError::Btf { reason: format!(".BTF.ext: {e}") })?)
            }
            _ => None,
        };
        let mut maps = maps::collect(&elf, btf.as_ref(), &name)?;
        let kconfig_size = externs::kconfig_size(&externs);
        if kconfig_size > 0 {
            let datasec = btf.as_ref().and_then(|b| b.find_by_name_kind(externs::KCONFIG_SEC, Kind::Datasec));
            let symtab = elf.sections().iter().find(|s| s.kind == SectionKind::SymbolTable).map_or(0, |s| s.index);
            maps.push(maps::kconfig_map(&name, kconfig_size, datasec, symtab));
        }
        maps.extend(struct_ops::collect(&elf, btf.as_ref())?);
        let programs = elf
            .programs()
            .into_iter()
            .filter(|p| p.section_name != ".text")
            .map(|func| {
                let spec = parse_section(&func.section_name);
                ProgramDef {
                    name: func.name.clone(),
                    section_name: func.section_name.clone(),
                    // As libbpf: an unknown section is loaded (and fails, naming it) unless
                    // left out; a `?` section only when asked for.
                    autoload: spec.as_ref().is_none_or(|s| !s.optional),
                    spec,
                    func,
                }
            })
            .collect();
        let license = elf.license().unwrap_or("").to_string();
        let kern_version = elf
            .section_by_name("version")
            .map(|s| elf.section_data(s))
            .and_then(|d| d.get(..4))
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let pin_root = DEFAULT_PIN_ROOT.into();
        Ok(Object { name, elf, btf_blob, btf, ext, maps, programs, license, kern_version, pin_root, externs })
    }

    /// Where maps pinned by name go (default `/sys/fs/bpf`, as libbpf): a pinned map already
    /// there with the same definition is reused, otherwise the new map is pinned there.
    pub fn set_pin_root(&mut self, dir: impl Into<std::path::PathBuf>) {
        self.pin_root = dir.into();
    }

    /// The object's name (libbpf's: file name up to the first `.`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `license` section's string.
    pub fn license(&self) -> &str {
        &self.license
    }

    /// The `version` section's value (0 when absent).
    pub fn kern_version(&self) -> u32 {
        self.kern_version
    }

    /// The parsed ELF file.
    pub fn elf(&self) -> &ElfObject {
        &self.elf
    }

    /// The object's BTF (kernel-ready copy of `.BTF`).
    pub fn btf(&self) -> Option<&Btf> {
        self.btf.as_ref()
    }

    /// The object's programs, in section order.
    pub fn programs(&self) -> &[ProgramDef] {
        &self.programs
    }

    /// The program named `name`, if any.
    pub fn program(&self, name: &str) -> Option<&ProgramDef> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// A program to adjust: `autoload`, attach target.
    pub fn program_mut(&mut self, name: &str) -> Option<&mut ProgramDef> {
        self.programs.iter_mut().find(|p| p.name == name)
    }

    /// The object's maps, including the `.data`/`.rodata`/`.bss` maps of global variables.
    pub fn maps(&self) -> &[MapDef] {
        &self.maps
    }

    /// A map by its name in the object (variable name, or `.data`/`.rodata`/… section name).
    pub fn map(&self, name: &str) -> Option<&MapDef> {
        self.maps.iter().find(|m| m.name == name)
    }

    /// A map to adjust before load (`max_entries`, `flags`, `data`, …).
    pub fn map_mut(&mut self, name: &str) -> Option<&mut MapDef> {
        self.maps.iter_mut().find(|m| m.name == name)
    }

    fn global_location(&self, name: &str) -> Result<(usize, usize, usize), ObjectError> {
        locate_global(self.btf.as_ref(), &self.maps, name)
    }

    /// Set global variable `name` (in `.data`, `.rodata`, `.bss` or a custom data section) to
    /// `bytes` before load; `bytes` must be exactly the variable's size.
    pub fn set_global(&mut self, name: &str, bytes: &[u8]) -> Result<(), ObjectError> {
        let (index, offset, size) = self.global_location(name)?;
        if bytes.len() != size {
            return Err(ObjectError::Global {
                name: name.into(),
                reason: format!("is {size} bytes, {} given", bytes.len()),
            });
        }
        let data = &mut self.maps[index].data;
        let len = data.len();
        let slot = data.get_mut(offset..offset + size).ok_or_else(|| ObjectError::Global {
            name: name.into(),
            reason: format!("offset {offset} + {size} is outside its section's {len} bytes"),
        })?;
        slot.copy_from_slice(bytes);
        Ok(())
    }

    /// Global variable `name`'s initial value (as set so far).
    pub fn global(&self, name: &str) -> Result<&[u8], ObjectError> {
        let (index, offset, size) = self.global_location(name)?;
        self.maps[index]
            .data
            .get(offset..offset + size)
            .ok_or_else(|| ObjectError::Global { name: name.into(), reason: "outside its section".into() })
    }

    /// Every program's instructions relocated and linked, without loading anything (CO-RE
    /// against `target`, or the running kernel's BTF when `None` and the object needs it); map
    /// operands name maps by their kernel names.
    pub fn relocate(&self, target: Option<&Btf>) -> Result<Vec<(String, Vec<Insn>)>, ObjectError> {
        let owned;
        let vmlinux = match target {
            Some(t) => Some(t),
            None if self.needs_vmlinux() => {
                owned = Btf::vmlinux()
                    .map_err(|e| ObjectError::Core { reason: format!("reading the kernel's BTF: {e}") })?;
                Some(&owned)
            }
            None => None,
        };
        let rel = linker::relocate(&self.elf, &self.maps, &self.externs, self.btf.as_ref(), self.ext.as_ref(), vmlinux)?;
        self.programs
            .iter()
            .map(|p| {
                let (slots, _) = rel.link(&self.elf, &p.func, vmlinux)?;
                Ok((p.name.clone(), linker::decode(&p.name, &slots, &self.maps)?))
            })
            .collect()
    }

    /// Whether relocating or loading needs the kernel's BTF (CO-RE, externs, BTF attach targets).
    fn needs_vmlinux(&self) -> bool {
        let core = self.ext.as_ref().is_some_and(|e| e.core_relos.iter().any(|s| !s.records.is_empty()));
        // Kconfig and `void` ksym externs are resolved without it.
        let by_btf = |name: &str| {
            self.externs
                .iter()
                .find(|e| e.name == name)
                .is_none_or(|e| matches!(e.kind, externs::ExternKind::Ksym { typed: true, .. }))
        };
        let externs = self.elf.symbols().iter().any(|s| {
            s.section.is_none() && !s.name.is_empty() && s.kind != crate::elf::SymbolKind::File && by_btf(&s.name)
        });
        let btf_targets = self
            .programs
            .iter()
            .any(|p| p.autoload && matches!(p.spec.as_ref().map(|s| &s.target), Some(AttachTarget::Btf { .. })));
        let struct_ops = self.maps.iter().any(|m| m.struct_ops.is_some());
        core || externs || btf_targets || struct_ops
    }

    /// Create the maps, relocate and load every program with `autoload` set.
    pub fn load(self) -> Result<LoadedObject, ObjectError> {
        load::load(self)
    }

    /// The sections holding global data (for inspection).
    pub fn data_sections(&self) -> impl Iterator<Item = &crate::elf::Section> {
        self.elf
            .sections()
            .iter()
            .filter(|s| matches!(s.kind, SectionKind::Data | SectionKind::ReadOnlyData | SectionKind::Bss))
    }
}

/// Where global variable `name` lives: (map index, byte offset, size), from the DATASEC BTF.
/// Every variable of every global data section: the index of its section's map, and where the
/// DATASEC places it (its VAR, offset and size).
fn data_vars<'a, I>(btf: &'a Btf, maps: I) -> impl Iterator<Item = (usize, crate::core_btf::VarSecinfo)> + 'a
where
    I: IntoIterator<Item = &'a MapDef>,
    I::IntoIter: 'a,
{
    maps.into_iter()
        .enumerate()
        .filter(|(_, m)| matches!(m.origin, MapOrigin::Data { .. }))
        .filter_map(|(index, m)| match btf.type_by_id(m.value_type_id?).ok()?.detail {
            TypeDetail::Datasec { vars, .. } => Some(vars.into_iter().map(move |v| (index, v))),
            _ => None,
        })
        .flatten()
}

fn locate_global<'a, I>(
    btf: Option<&'a Btf>,
    maps: I,
    name: &str,
) -> Result<(usize, usize, usize), ObjectError>
where
    I: IntoIterator<Item = &'a MapDef>,
    I::IntoIter: 'a,
{
    let err = |reason: &str| ObjectError::Global { name: name.to_string(), reason: reason.to_string() };
    let btf = btf.ok_or_else(|| err("the object has no BTF"))?;
    data_vars(btf, maps)
        .find(|(_, v)| btf.name_of(v.ty).is_ok_and(|n| n == name))
        .map(|(index, v)| (index, v.offset as usize, v.size as usize))
        .ok_or_else(|| err("not found in any global data section"))
}

crate::error::errno_from_sources!(ObjectError);
