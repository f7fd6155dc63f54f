//! CO-RE relocation, proven against libbpf: every program of the corpus in
//! `tests/fixtures/core/` (clang-built; see its README) is relocated by bpfkit and by libbpf
//! 1.7 (`bpf_object__open_file` + `bpf_object__prepare`, which relocates without loading), for
//! the running kernel's BTF and for custom target BTFs built with `BtfBuilder` (fields moved and
//! resized, types renamed with flavors, fields, types and enumerators removed, ambiguous
//! candidates), and the resulting instructions must be equal, poisoned ones included. Where
//! libbpf refuses an object, bpfkit must refuse it too, at the same relocation.
//!
//! What is compared: libbpf's final instructions of each program (`bpf_program__insns`) against
//! bpfkit's relocated section slice of that program, with the subprograms it calls appended
//! and the call immediates set as libbpf's linker does (`bpf_object__reloc_code`); the corpus
//! has no maps or global data, so CO-RE is the only other rewrite.

mod support;

use bpfkit::core_btf::ext::BtfExt;
use bpfkit::core_btf::relo::{
    find_poisoned, resolve_named, Applied, Cause, CoreTarget, Outcome, RelocError, RelocKind, Relocator,
    POISON_CALL_IMM,
};
use bpfkit::core_btf::{Btf, BtfBuilder, EnumValue, IntEncoding, Kind, Member, Type, TypeDetail, TypeId};
use bpfkit::elf::{reloc_type, ElfObject, ElfProgram, SectionKind};
use bpfkit::insn::RawInsn;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/core");
const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("tests/fixtures/core")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "o"))
        .collect();
    files.sort();
    files
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// An object's parts bpfkit relocates.
struct Parsed {
    obj: ElfObject,
    local: Btf,
    ext: BtfExt,
}

fn parse(path: &Path) -> Parsed {
    let obj = ElfObject::from_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let local = Btf::from_bytes(obj.btf().expect(".BTF")).expect("parse .BTF");
    let ext = BtfExt::parse(obj.btf_ext().expect(".BTF.ext"), &local).expect("parse .BTF.ext");
    Parsed { obj, local, ext }
}

/// libbpf's programs: the functions outside `.text` (those in `.text` are subprograms).
fn entry_programs(obj: &ElfObject) -> Vec<ElfProgram> {
    obj.programs().into_iter().filter(|p| p.section_name != ".text").collect()
}

// ---------------------------------------------------------------------------------------------
// bpfkit's side
// ---------------------------------------------------------------------------------------------

struct Relocated {
    /// Program name → instructions, linked as libbpf links them.
    programs: BTreeMap<String, Vec<RawInsn>>,
    applied: Vec<Applied>,
}

/// Relocate every section (in `.BTF.ext` order, one relocator: libbpf's candidate cache is per
/// object) and link each program.
fn relocate_with_bpfkit(p: &Parsed, target: &CoreTarget<'_>) -> Result<Relocated, RelocError> {
    let mut sections: HashMap<usize, Vec<RawInsn>> = HashMap::new();
    for s in p.obj.program_sections() {
        sections.insert(s.index, p.obj.instructions(s).expect("instructions"));
    }
    let mut relocator = Relocator::new(&p.local, target);
    let mut applied = Vec::new();
    for sec in &p.ext.core_relos {
        let index = p.obj.section_by_name(&sec.name).expect("relocated section exists").index;
        let insns = sections.get_mut(&index).expect("a program section");
        applied.extend(relocator.relocate(&sec.name, insns, &sec.records)?);
    }
    let programs =
        entry_programs(&p.obj).iter().map(|prog| (prog.name.clone(), link(&p.obj, &sections, prog))).collect();
    Ok(Relocated { programs, applied })
}

/// A program's instructions with the subprograms it calls appended depth-first on first call,
/// and each `call` immediate pointing at its copy (libbpf's `bpf_object__reloc_code`).
fn link(obj: &ElfObject, sections: &HashMap<usize, Vec<RawInsn>>, prog: &ElfProgram) -> Vec<RawInsn> {
    let mut out = Vec::new();
    let mut placed: HashMap<(usize, usize), usize> = HashMap::new();
    append(obj, sections, prog, &mut out, &mut placed);
    out
}

fn append(
    obj: &ElfObject,
    sections: &HashMap<usize, Vec<RawInsn>>,
    f: &ElfProgram,
    out: &mut Vec<RawInsn>,
    placed: &mut HashMap<(usize, usize), usize>,
) -> usize {
    let start = out.len();
    placed.insert((f.section, f.first_slot), start);
    out.extend_from_slice(&sections[&f.section][f.first_slot..f.first_slot + f.slots]);
    let section = obj.section(f.section).unwrap();
    let relocs = obj.relocations(section);
    for i in 0..f.slots {
        let insn = out[start + i];
        if insn.code != 0x85 || insn.src() != 1 {
            continue; // not a bpf-to-bpf call
        }
        let slot = f.first_slot + i;
        let callee = match relocs.iter().find(|r| r.offset == slot as u64 * 8 && r.r_type == reloc_type::R_BPF_64_32) {
            Some(r) => {
                let sym = &obj.symbols()[r.symbol];
                (sym.section.unwrap(), (sym.value / 8) as i64 + insn.imm as i64 + 1)
            }
            None => (f.section, slot as i64 + insn.imm as i64 + 1),
        };
        let callee = obj
            .programs()
            .into_iter()
            .find(|p| p.section == callee.0 && p.first_slot as i64 == callee.1)
            .expect("call target is a function");
        let at = match placed.get(&(callee.section, callee.first_slot)) {
            Some(&at) => at,
            None => append(obj, sections, &callee, out, placed),
        };
        out[start + i].imm = at as i32 - (start + i + 1) as i32;
    }
    start
}

// ---------------------------------------------------------------------------------------------
// libbpf's side
// ---------------------------------------------------------------------------------------------

/// libbpf's warnings of the current object (captured by the print callback).
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

extern "C" {
    fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, ap: *mut libbpf_sys::__va_list_tag) -> c_int;
}

unsafe extern "C" fn capture(
    level: libbpf_sys::libbpf_print_level,
    fmt: *const c_char,
    ap: *mut libbpf_sys::__va_list_tag,
) -> c_int {
    if level != libbpf_sys::LIBBPF_WARN {
        return 0;
    }
    let mut buf = [0u8; 1024];
    // SAFETY: `fmt` and `ap` are the format and argument list libbpf passes to its print
    // callback, valid for this call; vsnprintf writes at most `buf.len()` bytes, NUL included.
    let n = unsafe { vsnprintf(buf.as_mut_ptr().cast(), buf.len(), fmt, ap) };
    if n > 0 {
        let text = CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
        LIBBPF_LOG.lock().unwrap().push_str(&text);
    }
    0
}

/// Program name → instructions after `bpf_object__prepare`; or libbpf's error and warnings.
fn relocate_with_libbpf(path: &Path, custom_btf: Option<&Path>) -> Result<BTreeMap<String, Vec<RawInsn>>, String> {
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let c_custom = custom_btf.map(|p| CString::new(p.to_str().unwrap()).unwrap());
    let opts = libbpf_sys::bpf_object_open_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as _,
        btf_custom_path: c_custom.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        ..Default::default()
    };
    LIBBPF_LOG.lock().unwrap().clear();
    // SAFETY: setting the process-wide print callback to a function that is valid for the
    // whole process and only formats into a local buffer and a Mutex.
    unsafe { libbpf_sys::libbpf_set_print(Some(capture)) };
    // SAFETY: `c_path` is a NUL-terminated path; `opts` is a zero-initialised
    // `bpf_object_open_opts` with `sz` set, and the strings it points to (`c_custom`) outlive
    // the call (libbpf copies them).
    let obj = unsafe { libbpf_sys::bpf_object__open_file(c_path.as_ptr(), &opts) };
    if obj.is_null() {
        return Err(format!("open: {}", LIBBPF_LOG.lock().unwrap()));
    }
    // SAFETY: `obj` is the object just opened, not yet prepared or loaded.
    let err = unsafe { libbpf_sys::bpf_object__prepare(obj) };
    let mut programs = BTreeMap::new();
    if err == 0 {
        let mut prog = std::ptr::null_mut();
        loop {
            // SAFETY: `obj` is valid; `prog` is null or the previous program of `obj`.
            prog = unsafe { libbpf_sys::bpf_object__next_program(obj, prog) };
            if prog.is_null() {
                break;
            }
            // SAFETY: `prog` belongs to `obj`, which is open; the name is a NUL-terminated
            // string owned by libbpf, copied here before the object is closed.
            let name = unsafe { CStr::from_ptr(libbpf_sys::bpf_program__name(prog)) }.to_string_lossy().into_owned();
            // SAFETY: as above; after prepare, `bpf_program__insns` points at
            // `bpf_program__insn_cnt` 8-byte `struct bpf_insn`s owned by the object, copied here.
            let insns = unsafe {
                let n = libbpf_sys::bpf_program__insn_cnt(prog) as usize;
                let p = libbpf_sys::bpf_program__insns(prog).cast::<u8>();
                std::slice::from_raw_parts(p, n * 8).to_vec()
            };
            let insns = insns.chunks_exact(8).map(|c| RawInsn::from_bytes(c.try_into().unwrap())).collect();
            programs.insert(name, insns);
        }
    }
    // SAFETY: `obj` is valid and not used after this.
    unsafe { libbpf_sys::bpf_object__close(obj) };
    if err != 0 {
        return Err(format!("prepare: {err}: {}", LIBBPF_LOG.lock().unwrap().trim_end()));
    }
    Ok(programs)
}

// ---------------------------------------------------------------------------------------------
// Custom targets: the running kernel's BTF rewritten type by type with BtfBuilder
// ---------------------------------------------------------------------------------------------

/// Add a copy of `detail` named `name`; returns its id.
fn add_copy(b: &mut BtfBuilder, name: &str, detail: &TypeDetail<'_>) -> TypeId {
    match detail {
        TypeDetail::Void => unreachable!("void is not a type record"),
        TypeDetail::Int { size, encoding, bits, .. } => b.add_int(name, *size, *encoding, *bits as u32),
        TypeDetail::Ptr { target } => b.add_ptr(*target),
        TypeDetail::Array { elem, index, len } => b.add_array(*elem, *index, *len),
        TypeDetail::Struct { size, members } => b.add_struct(name, *size, members),
        TypeDetail::Union { size, members } => b.add_union(name, *size, members),
        TypeDetail::Enum { size, signed, values } => b.add_enum(name, *size, *signed, values),
        TypeDetail::Enum64 { size, signed, values } => b.add_enum64(name, *size, *signed, values),
        TypeDetail::Fwd { union } => b.add_fwd(name, *union),
        TypeDetail::Typedef { target } => b.add_typedef(name, *target),
        TypeDetail::Volatile { target } => b.add_volatile(*target),
        TypeDetail::Const { target } => b.add_const(*target),
        TypeDetail::Restrict { target } => b.add_restrict(*target),
        TypeDetail::Func { proto, linkage } => b.add_func(name, *proto, *linkage),
        TypeDetail::FuncProto { ret, params } => b.add_func_proto(*ret, params),
        TypeDetail::Var { ty, linkage } => b.add_var(name, *ty, *linkage),
        TypeDetail::Datasec { size, vars } => b.add_datasec(name, *size, vars),
        TypeDetail::Float { size } => b.add_float(name, *size),
        TypeDetail::DeclTag { target, component_idx, .. } => b.add_decl_tag(name, *target, *component_idx),
        TypeDetail::TypeTag { target, .. } => b.add_type_tag(name, *target),
    }
    .expect("re-encode a vmlinux type")
}

/// Scalar types of the kernel the demo types are made of.
struct Prims {
    int: TypeId,
    uint: TypeId,
    long: TypeId,
    ulong: TypeId,
    ushort: TypeId,
    chr: TypeId,
}

impl Prims {
    fn of(btf: &Btf) -> Prims {
        let int = |n: &str| btf.find_by_name_kind(n, Kind::Int).unwrap_or_else(|| panic!("vmlinux has no {n}"));
        Prims {
            int: int("int"),
            uint: int("unsigned int"),
            long: int("long int"),
            ulong: int("long unsigned int"),
            ushort: int("short unsigned int"),
            chr: int("char"),
        }
    }
}

/// The layouts of `struct core_demo` (tests/fixtures/core/demo.h) the targets define.
#[derive(Clone, Copy, PartialEq)]
enum Demo {
    /// As compiled.
    Base,
    /// Reordered; `a` int → long (signed: loads of it are poisoned), `counter` u32 → u64 and
    /// `inner.y` u16 → u32 (unsigned: loads and stores resized), bitfields moved and `sflag`
    /// widened, `name` and `arr` longer, enum values renumbered.
    Moved,
    /// Types renamed with flavors; member `b` renamed (so absent), an enumerator flavored.
    Renamed,
    /// `counter`, `sflag`, `name` and enumerator `CORE_DEMO_GONE` removed.
    Removed,
}

fn add_demo(b: &mut BtfBuilder, p: &Prims, demo: Demo, suffix: &str) {
    let moved = demo == Demo::Moved;
    let flavor = |n: &str| if demo == Demo::Renamed { format!("{n}___renamed") } else { n.to_string() };
    let inner_members = if moved {
        vec![Member::new("x", p.int, 32), Member::new("y", p.uint, 0)]
    } else {
        vec![Member::new("x", p.int, 0), Member::new("y", p.ushort, 32)]
    };
    let inner = b.add_struct(&format!("{}{suffix}", flavor("core_demo_inner")), 8, &inner_members).unwrap();
    let gone = if demo == Demo::Renamed { "CORE_DEMO_GONE___x" } else { "CORE_DEMO_GONE" };
    let mut values =
        vec![EnumValue::new("CORE_DEMO_IDLE", 0), EnumValue::new("CORE_DEMO_BUSY", if moved { 5 } else { 1 })];
    if demo != Demo::Removed {
        values.push(EnumValue::new(gone, if moved { 9 } else { 2 }));
    }
    let state = b.add_enum(&format!("{}{suffix}", flavor("core_demo_state")), 4, false, &values).unwrap();
    let u = b.add_union("", 4, &[Member::new("u1", p.int, 0), Member::new("u2", p.chr, 0)]).unwrap();
    let idx = p.int;
    let fwd = b.add_fwd(&format!("{}{suffix}", flavor("core_demo")), false).unwrap();
    let next = b.add_ptr(fwd).unwrap();
    let members: Vec<Member<'_>> = if moved {
        let name = b.add_array(p.chr, idx, 16).unwrap();
        let arr = b.add_array(inner, idx, 8).unwrap();
        vec![
            Member::new("next", next, 0),
            Member::new("b", p.long, 64),
            Member::new("a", p.long, 128),
            Member::new("counter", p.ulong, 192),
            Member::new("", u, 256),
            Member::bitfield("mode", p.uint, 288, 5),
            Member::bitfield("flags", p.uint, 300, 3),
            Member::bitfield("sflag", p.int, 310, 6),
            Member::new("name", name, 320),
            Member::new("inner", inner, 448),
            Member::new("arr", arr, 512),
            Member::new("state", state, 1024),
        ]
    } else {
        let name = b.add_array(p.chr, idx, 8).unwrap();
        let arr = b.add_array(inner, idx, 4).unwrap();
        let mut m = vec![
            Member::new("a", p.int, 0),
            Member::new("counter", p.uint, 32),
            Member::new(if demo == Demo::Renamed { "b_renamed" } else { "b" }, p.long, 64),
            Member::new("", u, 128),
            Member::bitfield("flags", p.uint, 160, 3),
            Member::bitfield("mode", p.uint, 163, 5),
            Member::bitfield("sflag", p.int, 168, 4),
            Member::new("name", name, 176),
            Member::new("inner", inner, 192),
            Member::new("arr", arr, 256),
            Member::new("state", state, 512),
            Member::new("next", next, 576),
        ];
        if demo == Demo::Removed {
            m.retain(|m| !["counter", "sflag", "name"].contains(&m.name));
        }
        m
    };
    let size = if moved { 136 } else { 80 };
    b.add_struct(&format!("{}{suffix}", flavor("core_demo")), size, &members).unwrap();
}

/// A custom target: a name, the BTF, and the file libbpf reads it from.
struct Custom {
    name: &'static str,
    btf: Btf,
    path: PathBuf,
}

/// Copy `vmlinux`, letting `edit` replace any type (it must add exactly one type and return
/// true, or return false to have it copied), then let `extra` append types.
fn rewrite(
    vmlinux: &Btf,
    mut edit: impl FnMut(&mut BtfBuilder, &Type<'_>) -> bool,
    extra: impl FnOnce(&mut BtfBuilder),
) -> Vec<u8> {
    let mut b = BtfBuilder::new();
    for id in vmlinux.ids() {
        let t = vmlinux.type_by_id(id).unwrap();
        if !edit(&mut b, &t) {
            add_copy(&mut b, t.name, &t.detail);
        }
        assert_eq!(b.next_id().0, id.0 + 1, "edit of [{}] {} added one type", id.0, t.name);
    }
    extra(&mut b);
    b.encode()
}

fn members_of<'a>(t: &Type<'a>) -> (u32, Vec<Member<'a>>) {
    (t.size().unwrap(), t.members().to_vec())
}

fn build_targets(vmlinux: &Btf, dir: &Path) -> Vec<Custom> {
    let p = Prims::of(vmlinux);
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let mut out = Vec::new();
    let mut save = |name: &'static str, blob: Vec<u8>| {
        let path = dir.join(format!("{name}.btf"));
        std::fs::write(&path, &blob).unwrap();
        out.push(Custom { name, btf: Btf::from_bytes(blob).unwrap(), path });
    };

    // Fields moved and resized; bitfields moved; enumerators renumbered.
    save(
        "moved",
        rewrite(
            vmlinux,
            |b, t| match (t.kind(), t.name) {
                (Kind::Struct, "task_struct") => {
                    let (size, mut m) = members_of(t);
                    let pid_at = m.iter().find(|m| m.name == "pid").unwrap().bit_offset;
                    for m in &mut m {
                        if m.bit_offset >= pid_at {
                            m.bit_offset += 512;
                        }
                        match m.name {
                            "prio" | "migration_flags" => m.ty = p.uint,
                            "in_execve" => m.bit_offset += 3,
                            _ => {}
                        }
                    }
                    b.add_struct(t.name, size + 64, &m).unwrap();
                    true
                }
                (Kind::Struct, "") if t.members().iter().any(|m| m.name == "pkt_type") => {
                    let (size, mut m) = members_of(t);
                    m.iter_mut().filter(|m| m.name == "pkt_type").for_each(|m| m.bit_offset += 5);
                    b.add_struct("", size, &m).unwrap();
                    true
                }
                (Kind::Enum, "pid_type" | "bpf_map_type") => {
                    let values: Vec<EnumValue<'_>> =
                        t.enum_values().iter().map(|v| EnumValue::new(v.name, v.value + 10)).collect();
                    b.add_enum(t.name, 4, false, &values).unwrap();
                    true
                }
                _ => false,
            },
            |b| add_demo(b, &p, Demo::Moved, ""),
        ),
    );

    // Types renamed with flavors (still candidates by essential name).
    save(
        "flavored",
        rewrite(
            vmlinux,
            |b, t| match (t.kind(), t.name) {
                (Kind::Struct, "task_struct" | "sk_buff") => {
                    add_copy(b, &format!("{}___v2", t.name), &t.detail);
                    true
                }
                _ => false,
            },
            |b| add_demo(b, &p, Demo::Renamed, ""),
        ),
    );

    // Fields, a type and enumerators removed; `state` instead of `__state` (before 5.14).
    save(
        "removed",
        rewrite(
            vmlinux,
            |b, t| match (t.kind(), t.name) {
                (Kind::Struct, "task_struct") => {
                    let (size, mut m) = members_of(t);
                    for m in &mut m {
                        if m.name == "__state" {
                            (m.name, m.ty) = ("state", p.long);
                        }
                    }
                    m.retain(|m| !["tgid", "in_execve"].contains(&m.name));
                    b.add_struct(t.name, size, &m).unwrap();
                    true
                }
                (Kind::Struct, "bpf_ringbuf") => {
                    add_copy(b, "bpf_ringbuf_gone", &t.detail);
                    true
                }
                (Kind::Enum, "pid_type" | "bpf_map_type") => {
                    let values: Vec<EnumValue<'_>> = t
                        .enum_values()
                        .iter()
                        .filter(|v| !["PIDTYPE_TGID", "BPF_MAP_TYPE_RINGBUF"].contains(&v.name))
                        .copied()
                        .collect();
                    b.add_enum(t.name, 4, false, &values).unwrap();
                    true
                }
                _ => false,
            },
            |b| add_demo(b, &p, Demo::Removed, ""),
        ),
    );

    // Several candidates: an identical second task_struct (they agree: fine, except for its
    // type id), two core_demo layouts that disagree (an error, in libbpf and bpfkit), and two
    // core_prune flavors of which the first relocation keeps one.
    save(
        "ambiguous",
        rewrite(
            vmlinux,
            |_, _| false,
            |b| {
                add_copy(b, "task_struct___dup", &vmlinux.type_by_id(task).unwrap().detail);
                add_demo(b, &p, Demo::Base, "___a");
                add_demo(b, &p, Demo::Moved, "___b");
                // f25: `first` matches only ___x, which prunes ___y for `second`.
                b.add_struct("core_prune___x", 4, &[Member::new("first", p.int, 0)]).unwrap();
                b.add_struct("core_prune___y", 4, &[Member::new("second", p.int, 0)]).unwrap();
            },
        ),
    );
    out
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// The corpus reads as ELF, `.BTF` and `.BTF.ext`, and uses every relocation kind.
#[test]
fn corpus_parses_and_uses_every_kind() {
    let files = corpus();
    assert!(files.len() >= 20, "{} objects", files.len());
    let mut kinds = BTreeSet::new();
    let mut programs = 0;
    for path in &files {
        let p = parse(path);
        assert_eq!(p.obj.license(), Some("GPL"), "{}", path.display());
        for s in p.obj.program_sections() {
            assert_eq!(p.obj.instructions(s).unwrap().len() as u64 * 8, s.size);
        }
        let progs = entry_programs(&p.obj);
        assert!(!progs.is_empty(), "{}: no programs", path.display());
        programs += progs.len();
        for prog in &progs {
            let insns = p.obj.program_instructions(prog).unwrap();
            assert_eq!(insns.last().map(|i| i.code), Some(0x95), "{} ends with exit", prog.name);
        }
        // Every relocation points into a program section, at a whole slot.
        for sec in &p.ext.core_relos {
            let s = p.obj.section_by_name(&sec.name).unwrap();
            assert_eq!(s.kind, SectionKind::Program);
            for r in &sec.records {
                assert!(r.slot().is_some_and(|slot| (slot as u64) < s.size / 8), "{}: {r:?}", sec.name);
                kinds.insert(r.kind.raw());
            }
        }
        assert!(p.ext.func_info.iter().all(|s| !s.records.is_empty()));
        assert!(p
            .ext
            .line_info
            .iter()
            .flat_map(|s| &s.records)
            .all(|l| l.file_name.ends_with(".c") || l.file_name.ends_with(".h")));
    }
    let all: BTreeSet<u32> = RelocKind::ALL.iter().map(|k| k.raw()).collect();
    assert_eq!(kinds, all, "relocation kinds used by the corpus");
    eprintln!("corpus: {} objects, {programs} programs, all 13 relocation kinds", files.len());
}

/// Parse a target spec as bpfkit prints it (`<byte_off> [5] struct task_struct.real_parent.pid
/// (0:95:92 @ offset 1264)`, `<enumval_value> [9] enum pid_type::PIDTYPE_TGID = 1`) into a
/// `resolve_named` request.
fn named_request(spec: &str) -> (String, String) {
    let rest = &spec[spec.find("] ").unwrap() + 2..];
    let (kind_word, rest) = rest.split_once(' ').unwrap();
    let rest = rest.split(" (").next().unwrap();
    let (name, path) = match rest.split_once("::") {
        Some((name, e)) => (name, e.split(" = ").next().unwrap().to_string()),
        None => {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            (&rest[..end], rest[end..].trim_start_matches('.').to_string())
        }
    };
    let ty = match kind_word {
        "struct" | "union" | "typedef" => format!("{kind_word} {name}"),
        "enum" | "enum64" => format!("enum {name}"),
        _ => name.to_string(),
    };
    (ty, path)
}

/// For each relocation bpfkit matched, [`resolve_named`] on the target access gives the same
/// value (the DSL entry point runs the same target-side code).
fn check_named(target: &CoreTarget<'_>, applied: &[Applied], problems: &mut Vec<String>) -> usize {
    let mut checked = 0;
    for a in applied {
        let (Some(spec), Outcome::Patched { new, .. }) = (&a.target, a.outcome) else { continue };
        if matches!(a.kind, RelocKind::TypeIdLocal | RelocKind::TypeMatches) {
            continue;
        }
        let (ty, path) = named_request(spec);
        match target.resolve_named(&ty, &path, a.kind) {
            Ok(v) if v.value == new => checked += 1,
            other => {
                problems.push(format!("resolve_named({ty:?}, {path:?}, {}) = {other:?}, relocation gave {new}", a.kind))
            }
        }
    }
    checked
}

fn describe_diff(name: &str, ours: &[RawInsn], theirs: &[RawInsn]) -> String {
    let mut s = format!("program {name}: bpfkit {} insns, libbpf {}\n", ours.len(), theirs.len());
    for i in 0..ours.len().max(theirs.len()) {
        let (a, b) = (ours.get(i), theirs.get(i));
        if a != b {
            s += &format!("  slot {i}: bpfkit {a:?}\n          libbpf {b:?}\n");
        }
    }
    s
}

/// The relocation index libbpf names in its failure (`relo #3: …`).
fn libbpf_failed_relo(log: &str) -> Option<usize> {
    let at = log.find("relo #")? + 6;
    log[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[test]
fn relocations_equal_libbpf() {
    if !Path::new(VMLINUX).exists() {
        return support::skip(&format!("core_relo: {VMLINUX} is missing (kernel without BTF)"));
    }
    if !support::kernel_or_skip("core_relo (libbpf's bpf_object__prepare probes the kernel)") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let customs = build_targets(&vmlinux, dir.path());
    let files = corpus();
    let parsed: Vec<Parsed> = files.iter().map(|f| parse(f)).collect();
    let relocations: usize = parsed.iter().map(|p| p.ext.core_relo_count()).sum();

    let mut targets: Vec<(&str, &Btf, Option<&Path>)> = vec![("running kernel", &vmlinux, None)];
    targets.extend(customs.iter().map(|c| (c.name, &c.btf, Some(c.path.as_path()))));
    let mut problems = Vec::new();
    let mut programs = 0;
    let mut named = 0;
    let mut failed_objects = Vec::new();
    let mut outcomes: HashMap<(&str, String), Vec<Applied>> = HashMap::new();
    for &(target_name, btf, custom) in &targets {
        let target = CoreTarget::new(btf);
        let (mut poisoned, mut patched, mut agreed_failures) = (0, 0, 0);
        for (path, p) in files.iter().zip(&parsed) {
            let what = format!("{} against {target_name}", file_name(path));
            let ours = relocate_with_bpfkit(p, &target);
            let theirs = relocate_with_libbpf(path, custom);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    if ours.programs.keys().ne(theirs.keys()) {
                        problems.push(format!(
                            "{what}: programs {:?} vs libbpf {:?}",
                            ours.programs.keys(),
                            theirs.keys()
                        ));
                    }
                    for (name, insns) in &ours.programs {
                        match theirs.get(name) {
                            Some(t) if t == insns => {}
                            Some(t) => problems.push(format!("{what}: {}", describe_diff(name, insns, t))),
                            None => {}
                        }
                    }
                    if target_name == "running kernel" {
                        programs += ours.programs.len();
                    }
                    poisoned += ours.applied.iter().filter(|a| a.is_poisoned()).count();
                    patched += ours.applied.iter().filter(|a| !a.is_poisoned()).count();
                    if target_name != "ambiguous" {
                        named += check_named(&target, &ours.applied, &mut problems);
                    }
                    outcomes.insert((target_name, file_name(path)), ours.applied);
                }
                (Err(ours), Err(theirs)) => {
                    // Both refuse: at the same relocation.
                    let index = ours.site.as_ref().map(|s| s.index);
                    if libbpf_failed_relo(&theirs).is_some_and(|i| Some(i) != index) {
                        problems.push(format!("{what}: bpfkit fails at {ours}, libbpf at: {theirs}"));
                    }
                    failed_objects.push(format!("{what}:\n    bpfkit: {ours}\n    libbpf: {theirs}"));
                    agreed_failures += 1;
                }
                (Ok(_), Err(theirs)) => problems.push(format!("{what}: libbpf fails ({theirs}), bpfkit does not")),
                (Err(ours), Ok(_)) => problems.push(format!("{what}: bpfkit fails ({ours}), libbpf does not")),
            }
        }
        eprintln!(
            "core: {target_name}: {patched} relocations patched, {poisoned} poisoned, {agreed_failures} objects refused by both"
        );
    }
    for f in &failed_objects {
        eprintln!("  refused by both: {f}");
    }
    assert!(problems.is_empty(), "{} differences from libbpf:\n{}", problems.len(), problems.join("\n"));
    check_scenarios(&outcomes);
    // The ambiguous target must have been refused for the demo objects (and only for them and
    // the kernel type id, which differs between the two identical task_structs).
    assert!(failed_objects.iter().any(|f| f.contains("f22_demo_reads.o against ambiguous")), "{failed_objects:#?}");
    assert!(failed_objects.iter().all(|f| f.contains("against ambiguous")), "{failed_objects:#?}");
    eprintln!("core: resolve_named agreed with {named} matched relocations");
    eprintln!(
        "core: {programs} programs, {relocations} relocations, all equal to libbpf (running kernel + {} custom targets)",
        customs.len()
    );
}

/// The custom targets did exercise what they were built for (the outcomes equal libbpf's
/// anyway; this guards against a target that silently tests nothing).
fn check_scenarios(outcomes: &HashMap<(&str, String), Vec<Applied>>) {
    let find = |target: &str, file: &str, kind: RelocKind, spec: &str| -> Outcome {
        let applied = &outcomes[&(target, file.to_string())];
        let a = applied.iter().find(|a| a.kind == kind && a.spec.contains(spec));
        a.unwrap_or_else(|| panic!("{file} against {target}: no <{kind}> relocation of {spec}: {applied:#?}")).outcome
    };
    let resized = |o: Outcome| matches!(o, Outcome::Patched { size: Some(_), .. });
    let value = |o: Outcome| match o {
        Outcome::Patched { new, .. } => new,
        Outcome::Poisoned => panic!("poisoned"),
    };
    use RelocKind::*;
    // Moved: unsigned fields widened → loads and stores resized; int → long → load poisoned.
    assert!(resized(find("moved", "f03_direct_load.o", FieldByteOffset, ".migration_flags")));
    assert!(resized(find("moved", "f22_demo_reads.o", FieldByteOffset, "core_demo.counter")));
    assert_eq!(find("moved", "f22_demo_reads.o", FieldByteOffset, "core_demo.a "), Outcome::Poisoned);
    assert_eq!(value(find("moved", "f10_field_signed.o", FieldSigned, ".prio")), 0);
    assert_eq!(value(find("running kernel", "f10_field_signed.o", FieldSigned, ".prio")), 1);
    // Flavored: the renamed task_struct is still the candidate; a renamed member is absent.
    assert!(matches!(find("flavored", "f01_task_pid.o", FieldByteOffset, ".pid"), Outcome::Patched { .. }));
    assert_eq!(value(find("flavored", "f23_demo_bits.o", FieldExists, "core_demo.b ")), 0);
    // Removed: the pre-5.14 `state` exists and `__state` does not; a removed enumerator's value
    // is poisoned, a removed type does not exist.
    assert_eq!(value(find("removed", "f06_field_exists.o", FieldExists, "task_struct___old.state")), 1);
    assert_eq!(value(find("removed", "f06_field_exists.o", FieldExists, "task_struct.__state")), 0);
    assert_eq!(find("removed", "f16_enum_value.o", EnumvalValue, "PIDTYPE_TGID"), Outcome::Poisoned);
    assert_eq!(value(find("removed", "f11_type_exists.o", TypeExists, "bpf_ringbuf")), 0);
    // Ambiguous: the cache pruned core_prune___y, so `second` is absent although ___y has it.
    assert_eq!(value(find("ambiguous", "f25_candidate_pruning.o", FieldExists, "core_prune.second")), 0);
    // The running kernel: no core_demo anywhere, so its reads are poisoned.
    assert_eq!(find("running kernel", "f22_demo_reads.o", FieldByteOffset, "core_demo.b "), Outcome::Poisoned);
}

/// A reachable poisoned instruction makes the verifier refuse the program at its slot; the
/// report names the relocation behind it.
#[test]
fn poisoned_instruction_is_named_at_load() {
    use bpfkit::insn::{decode_slots, Assembled};
    use bpfkit::prog::{LoadError, LoadOptions, ProgType, Program};
    if !Path::new(VMLINUX).exists() {
        return support::skip(&format!("core_relo: {VMLINUX} is missing"));
    }
    if !support::kernel_or_skip("core_relo poisoned load") {
        return;
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let target = CoreTarget::new(&vmlinux);
    let p = parse(&Path::new(FIXTURES).join("f20_missing_field.o"));
    let relocated = relocate_with_bpfkit(&p, &target).unwrap();
    let insns = &relocated.programs["missing_field"];
    assert!(insns.iter().any(|i| i.code == 0x85 && i.imm == POISON_CALL_IMM));
    let asm = Assembled::from_insns(decode_slots(insns).unwrap());
    let err = Program::load(&asm, &[], &LoadOptions::new("missing_field", ProgType::Tracepoint)).unwrap_err();
    let LoadError::Verifier { rejection, .. } = err else { panic!("expected a verifier rejection, got {err}") };
    assert!(rejection.reason.contains("195896080"), "{}", rejection.reason);
    let slot = rejection.slot.expect("the verifier names the slot");
    let section = &p.obj.program("missing_field").unwrap().section_name;
    let culprit = find_poisoned(&relocated.applied, section, slot).expect("a poisoned relocation at that slot");
    assert!(culprit.spec.contains("not_there"), "{culprit:?}");
    eprintln!("verifier: {} at insn {slot} ← {}", rejection.reason, culprit.spec);
}

/// `resolve_named` on a hand-made BTF: anonymous members, arrays (flexible too), bitfields,
/// flavors, enums, absent things, and disagreeing candidates.
#[test]
fn resolve_named_on_handmade_btf() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
    let chr = b.add_int("char", 1, IntEncoding::Signed, 8).unwrap();
    let arr = b.add_array(chr, int, 16).unwrap();
    let flex = b.add_array(int, int, 0).unwrap();
    let inner = b.add_struct("", 8, &[Member::new("x", int, 0), Member::new("y", int, 32)]).unwrap();
    let anon = b.add_union("", 8, &[Member::new("", inner, 0), Member::new("whole", uint, 0)]).unwrap();
    b.add_struct(
        "thing",
        40,
        &[
            Member::new("a", int, 0),
            Member::new("", anon, 64),
            Member::bitfield("bits", uint, 133, 3),
            Member::new("name", arr, 160),
            Member::new("tail", flex, 288),
        ],
    )
    .unwrap();
    b.add_enum("color", 4, false, &[EnumValue::new("RED", 0), EnumValue::new("BLUE", 7)]).unwrap();
    b.add_struct("twin___one", 8, &[Member::new("v", int, 0)]).unwrap();
    b.add_struct("twin___two", 8, &[Member::new("v", int, 32)]).unwrap();
    b.add_struct("same___one", 8, &[Member::new("v", int, 0)]).unwrap();
    b.add_struct("same___two", 8, &[Member::new("v", int, 0)]).unwrap();
    let btf = Btf::from_bytes(b.encode()).unwrap();

    let v = |ty: &str, path: &str, kind| resolve_named(&btf, ty, path, kind).map(|v| v.value);
    use RelocKind::*;
    assert_eq!(v("thing", "y", FieldByteOffset), Ok(12)); // through two anonymous members
    assert_eq!(v("struct thing", "whole", FieldByteOffset), Ok(8));
    assert_eq!(v("thing", "name[3]", FieldByteOffset), Ok(23));
    assert_eq!(v("thing", "name", FieldByteSize), Ok(16));
    assert_eq!(v("thing", "tail[5]", FieldByteOffset), Ok(56)); // flexible array: no bound
    assert_eq!(v("thing", "bits", FieldByteOffset), Ok(16));
    assert_eq!(v("thing", "bits", FieldLshiftU64), Ok(64 - (133 + 3 - 128)));
    assert_eq!(v("thing", "bits", FieldRshiftU64), Ok(61));
    assert_eq!(v("thing", "a", FieldSigned), Ok(1));
    assert_eq!(v("thing", "whole", FieldSigned), Ok(0));
    assert_eq!(v("thing___mine", "a", FieldExists), Ok(1)); // flavor of the request ignored
    assert_eq!(v("thing", "nope", FieldExists), Ok(0));
    assert_eq!(v("thing", "", TypeSize), Ok(40));
    assert_eq!(v("nothing", "", TypeExists), Ok(0));
    assert_eq!(v("enum color", "BLUE", EnumvalValue), Ok(7));
    assert_eq!(v("color", "GREEN", EnumvalExists), Ok(0));
    assert_eq!(v("same", "v", FieldByteOffset), Ok(0)); // two flavors that agree
    let found = resolve_named(&btf, "thing", "name[3]", FieldByteOffset).unwrap();
    assert_eq!((found.load_size, found.found), (Some(1), true));

    let cause = |ty: &str, path: &str, kind| resolve_named(&btf, ty, path, kind).map_err(|e| e.cause);
    assert_eq!(cause("twin", "v", FieldByteOffset), Err(Cause::Ambiguous));
    assert_eq!(cause("thing", "name[16]", FieldByteOffset), Err(Cause::NotFound)); // out of bounds
    assert_eq!(cause("thing", "nope", FieldByteOffset), Err(Cause::NotFound));
    assert_eq!(cause("color", "GREEN", EnumvalValue), Err(Cause::NotFound));
    assert_eq!(cause("thing", "a.", FieldByteOffset), Err(Cause::BadSpec));
    assert_eq!(cause("thing", "", TypeMatches), Err(Cause::Unsupported));
    // An access ending at an array element has only an offset and a size (libbpf's rule).
    assert_eq!(cause("thing", "name[3]", FieldLshiftU64), Err(Cause::Unsupported));
    // A whole non-bitfield member wider than 8 bytes: libbpf's u32 arithmetic wraps; so does ours.
    assert_eq!(v("thing", "name", FieldLshiftU64), Ok((64u32.wrapping_sub(128)) as u64));
    let e = resolve_named(&btf, "twin", "v", FieldByteOffset).unwrap_err();
    assert!(e.to_string().starts_with("CO-RE <byte_off> twin.v: "), "{e}");
}

/// `resolve_named` against the running kernel agrees with the BTF reader's member offsets.
#[test]
fn resolve_named_on_vmlinux() {
    if !Path::new(VMLINUX).exists() {
        return support::skip(&format!("core_relo: {VMLINUX} is missing"));
    }
    let vmlinux = Btf::vmlinux().unwrap();
    let target = CoreTarget::new(&vmlinux);
    let task = vmlinux.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    for path in ["pid", "real_parent", "comm[2]", "se.vruntime"] {
        let v = target.resolve_named("struct task_struct", path, RelocKind::FieldByteOffset).unwrap();
        assert_eq!(v.value * 8, vmlinux.member_offset(task, path).unwrap(), "{path}");
        assert_eq!(v.target_type, Some(task));
    }
    let size = target.resolve_named("task_struct", "", RelocKind::TypeSize).unwrap();
    assert_eq!(size.value, vmlinux.size_of(task).unwrap());
    let tgid = target.resolve_named("pid_type", "PIDTYPE_TGID", RelocKind::EnumvalValue).unwrap();
    assert_eq!(tgid.value, 1);
}
