//! BTF: the reader against the running kernel's vmlinux BTF with bpftool as the oracle (every
//! type printed in bpftool's format must equal `bpftool btf dump`), split BTF, builder round
//! trips of every kind (also read back by bpftool), BPF_BTF_LOAD accepting a built blob and
//! explaining a rejected one, and the reader surviving truncated and corrupted input.

mod support;

use bpfkit::core_btf::{
    Btf, BtfBuilder, BtfError, EnumValue, IntEncoding, Kind, Linkage, LoadedBtf, Member, Param, Type, TypeDetail,
    TypeId, VarSecinfo,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// vmlinux BTF, parsed once per test binary; `None` (after a skip line) when absent.
fn vmlinux(test: &str) -> Option<&'static Btf> {
    static VM: OnceLock<Result<Btf, String>> = OnceLock::new();
    let vm = VM.get_or_init(|| {
        if !Path::new(VMLINUX).exists() {
            return Err(format!("{VMLINUX} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)"));
        }
        let start = Instant::now();
        let btf = Btf::vmlinux().map_err(|e| format!("parsing {VMLINUX}: {e}"))?;
        eprintln!("parsed {VMLINUX}: {} types in {:?} (this build's profile)", btf.type_count(), start.elapsed());
        Ok(btf)
    });
    match vm {
        Ok(btf) => Some(btf),
        Err(e) if e.starts_with("parsing") => panic!("{e}"),
        Err(e) => {
            support::skip(&format!("{test}: {e}"));
            None
        }
    }
}

/// `bpftool [-B <base>] btf dump file <path>`, or a skip when bpftool is missing.
fn bpftool_dump(test: &str, path: &Path, base: Option<&Path>) -> Option<String> {
    let mut cmd = Command::new("bpftool");
    if let Some(base) = base {
        cmd.arg("-B").arg(base);
    }
    cmd.args(["btf", "dump", "file"]).arg(path);
    match cmd.output() {
        Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).expect("bpftool output is UTF-8")),
        Ok(out) => panic!("bpftool btf dump {}: {}", path.display(), String::from_utf8_lossy(&out.stderr)),
        Err(e) => {
            support::skip(&format!("{test}: bpftool not runnable ({e})"));
            None
        }
    }
}

/// bpftool's dump of vmlinux, run once.
fn vmlinux_dump(test: &str) -> Option<&'static str> {
    static DUMP: OnceLock<Option<String>> = OnceLock::new();
    DUMP.get_or_init(|| bpftool_dump(test, Path::new(VMLINUX), None)).as_deref()
}

/// One type as `bpftool btf dump` (plain format) prints it.
fn bpftool_text(btf: &Btf, t: &Type<'_>) -> String {
    let anon = |n: &str| if n.is_empty() { "(anon)".to_string() } else { n.to_string() };
    let linkage = |l: &Linkage| match l {
        Linkage::Static => "static",
        Linkage::Global => "global",
        Linkage::Extern => "extern",
    };
    let mut s = format!("[{}] {} '{}'", t.id.0, t.kind().name(), anon(t.name));
    match &t.detail {
        TypeDetail::Void => {}
        TypeDetail::Int { size, encoding, offset, bits } => {
            let enc = match encoding {
                IntEncoding::Unsigned => "(none)",
                IntEncoding::Signed => "SIGNED",
                IntEncoding::Char => "CHAR",
                IntEncoding::Bool => "BOOL",
            };
            write!(s, " size={size} bits_offset={offset} nr_bits={bits} encoding={enc}").unwrap();
        }
        TypeDetail::Ptr { target }
        | TypeDetail::Typedef { target }
        | TypeDetail::Volatile { target }
        | TypeDetail::Const { target }
        | TypeDetail::Restrict { target }
        | TypeDetail::TypeTag { target, .. } => write!(s, " type_id={}", target.0).unwrap(),
        TypeDetail::Array { elem, index, len } => {
            write!(s, " type_id={} index_type_id={} nr_elems={len}", elem.0, index.0).unwrap()
        }
        TypeDetail::Struct { size, members } | TypeDetail::Union { size, members } => {
            write!(s, " size={size} vlen={}", members.len()).unwrap();
            for m in members {
                write!(s, "\n\t'{}' type_id={} bits_offset={}", anon(m.name), m.ty.0, m.bit_offset).unwrap();
                if m.bitfield_size != 0 {
                    write!(s, " bitfield_size={}", m.bitfield_size).unwrap();
                }
            }
        }
        TypeDetail::Enum { size, signed, values } | TypeDetail::Enum64 { size, signed, values } => {
            let enc = if *signed { "SIGNED" } else { "UNSIGNED" };
            write!(s, " encoding={enc} size={size} vlen={}", values.len()).unwrap();
            let suffix = match (t.kind(), signed) {
                (Kind::Enum64, true) => "LL",
                (Kind::Enum64, false) => "ULL",
                _ => "",
            };
            for v in values {
                write!(s, "\n\t'{}' val={}{suffix}", anon(v.name), v.value).unwrap();
            }
        }
        TypeDetail::Fwd { union } => write!(s, " fwd_kind={}", if *union { "union" } else { "struct" }).unwrap(),
        TypeDetail::Func { proto, linkage: l } => write!(s, " type_id={} linkage={}", proto.0, linkage(l)).unwrap(),
        TypeDetail::FuncProto { ret, params } => {
            write!(s, " ret_type_id={} vlen={}", ret.0, params.len()).unwrap();
            for p in params {
                write!(s, "\n\t'{}' type_id={}", anon(p.name), p.ty.0).unwrap();
            }
        }
        TypeDetail::Var { ty, linkage: l } => write!(s, " type_id={}, linkage={}", ty.0, linkage(l)).unwrap(),
        TypeDetail::Datasec { size, vars } => {
            write!(s, " size={size} vlen={}", vars.len()).unwrap();
            for v in vars {
                let var = btf.type_by_id(v.ty).unwrap();
                write!(
                    s,
                    "\n\ttype_id={} offset={} size={} ({} '{}')",
                    v.ty.0,
                    v.offset,
                    v.size,
                    var.kind().name(),
                    anon(var.name)
                )
                .unwrap();
            }
        }
        TypeDetail::Float { size } => write!(s, " size={size}").unwrap(),
        TypeDetail::DeclTag { target, component_idx, .. } => {
            write!(s, " type_id={} component_idx={component_idx}", target.0).unwrap()
        }
    }
    s
}

/// Our decoding of every type of `btf`, in bpftool's format, must equal bpftool's dump.
fn assert_same_as_bpftool(btf: &Btf, dump: &str) {
    let mut ours = String::with_capacity(dump.len());
    for id in btf.ids() {
        let t = btf.type_by_id(id).unwrap_or_else(|e| panic!("decoding {id}: {e}"));
        ours.push_str(&bpftool_text(btf, &t));
        ours.push('\n');
    }
    for (n, (a, b)) in ours.lines().zip(dump.lines()).enumerate() {
        assert_eq!(a, b, "line {} differs (ours, bpftool)", n + 1);
    }
    assert_eq!(ours.lines().count(), dump.lines().count(), "line counts differ");
}

/// bpftool's `[ID] KIND 'name' …` line for `kind` `name`: (id, line).
fn bpftool_line<'a>(dump: &'a str, kind: &str, name: &str) -> (u32, &'a str) {
    let needle = format!("] {kind} '{name}' ");
    let line = dump.lines().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("bpftool has no {kind} '{name}'"));
    let id = line[1..line.find(']').unwrap()].parse().unwrap();
    (id, line)
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!("{key}=")).unwrap_or_else(|| panic!("no {key}= in {line}")) + key.len() + 1;
    line[start..].split([' ', ',']).next().unwrap()
}

#[test]
fn vmlinux_decodes_exactly_as_bpftool_prints_it() {
    let (Some(btf), Some(dump)) = (vmlinux("vmlinux vs bpftool"), vmlinux_dump("vmlinux vs bpftool")) else { return };
    let last: u32 =
        dump.lines().rev().find(|l| l.starts_with('[')).map(|l| l[1..l.find(']').unwrap()].parse().unwrap()).unwrap();
    assert_eq!(btf.last_id(), TypeId(last));
    assert_eq!(btf.type_count(), last);
    let start = Instant::now();
    assert_same_as_bpftool(btf, dump);
    eprintln!("{last} types decoded and compared with bpftool in {:?}", start.elapsed());
}

#[test]
fn task_struct_size_and_pid_offset_match_bpftool() {
    let (Some(btf), Some(dump)) = (vmlinux("task_struct"), vmlinux_dump("task_struct")) else { return };
    let (id, line) = bpftool_line(dump, "STRUCT", "task_struct");
    let task = btf.find_by_name_kind("task_struct", Kind::Struct).expect("task_struct");
    assert_eq!(task, TypeId(id));
    assert_eq!(btf.size_of(task).unwrap(), field(line, "size").parse::<u64>().unwrap());
    // The first member line `'pid' …` after the task_struct line is task_struct's.
    let pid_line = dump.lines().skip_while(|l| *l != line).find(|l| l.starts_with("\t'pid' ")).unwrap();
    assert_eq!(btf.member_offset(task, "pid").unwrap(), field(pid_line, "bits_offset").parse::<u64>().unwrap());
    // A path through nested and anonymous members, and an array index.
    let t = btf.type_by_id(task).unwrap();
    assert!(t.members().len() > 100, "{} members", t.members().len());
    let comm = btf.member_offset(task, "comm").unwrap();
    assert_eq!(btf.member_offset(task, "comm[3]").unwrap(), comm + 3 * 8);
    let se = btf.member_offset(task, "se").unwrap();
    let se_struct = btf.find_by_name_kind("sched_entity", Kind::Struct).unwrap();
    assert_eq!(btf.member_offset(task, "se.vruntime").unwrap(), se + btf.member_offset(se_struct, "vruntime").unwrap());
    let err = btf.member_offset(task, "no_such_member").unwrap_err().to_string();
    assert!(err.contains("STRUCT 'task_struct'") && err.contains("no_such_member"), "{err}");
}

#[test]
fn a_vmlinux_bitfield_decodes_like_bpftool() {
    let (Some(btf), Some(dump)) = (vmlinux("bitfield"), vmlinux_dump("bitfield")) else { return };
    let (sid, member) = btf
        .ids()
        .filter(|&id| btf.kind_of(id).unwrap() == Kind::Struct)
        .find_map(|id| {
            let t = btf.type_by_id(id).unwrap();
            let m = t.members().iter().find(|m| m.bitfield_size != 0 && m.bit_offset % 8 != 0).copied();
            m.map(|m| (id, (m.name.to_string(), m.ty, m.bit_offset, m.bitfield_size)))
        })
        .expect("vmlinux has a bitfield");
    let header = format!("[{}] STRUCT ", sid.0);
    let line = dump
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .find(|l| l.starts_with(&format!("\t'{}' ", member.0)))
        .unwrap();
    eprintln!("bitfield: {} {line}", btf.name_of(sid).unwrap());
    assert_eq!(field(line, "type_id").parse::<u32>().unwrap(), member.1 .0);
    assert_eq!(field(line, "bits_offset").parse::<u32>().unwrap(), member.2);
    assert_eq!(field(line, "bitfield_size").parse::<u8>().unwrap(), member.3);
    assert_eq!(btf.member_offset(sid, &member.0).unwrap(), member.2 as u64);
}

#[test]
fn bpf_map_type_and_struct_ops_from_vmlinux() {
    let Some(btf) = vmlinux("bpf_map_type") else { return };
    let values = btf.enum_values("bpf_map_type").unwrap();
    let arena = values.iter().find(|v| v.name == "BPF_MAP_TYPE_ARENA").expect("BPF_MAP_TYPE_ARENA");
    assert_eq!(arena.value, 33);
    assert_eq!(values[0], EnumValue::new("BPF_MAP_TYPE_UNSPEC", 0));
    let ops = btf.find_by_name_kind("bpf_struct_ops_tcp_congestion_ops", Kind::Struct).expect("struct_ops wrapper");
    assert!(btf.size_of(ops).unwrap() > 0);
    assert_eq!(btf.member_offset(ops, "data").unwrap() % 8, 0);
    // Signed enums and ENUM64 values beyond 2^63.
    let cpuhp = btf.enum_values("cpuhp_state").unwrap();
    assert_eq!(cpuhp.iter().find(|v| v.name == "CPUHP_INVALID").unwrap().value, -1);
    let ctx = btf.enum_values("perf_callchain_context").unwrap();
    assert_eq!(ctx.iter().find(|v| v.name == "PERF_CONTEXT_HV").unwrap().value, 18446744073709551584);
    assert!(matches!(btf.enum_values("no_such_enum"), Err(BtfError::NotFound { .. })));
    // resolve / size_of through typedefs, pointers, arrays.
    let u64_id = btf.find_by_name_kind("u64", Kind::Typedef).unwrap();
    assert_eq!(btf.kind_of(btf.resolve(u64_id).unwrap()).unwrap(), Kind::Int);
    assert_eq!(btf.size_of(u64_id).unwrap(), 8);
    let func = btf.find_by_name_kind("bpf_map_lookup_elem", Kind::Func);
    if let Some(func) = func {
        assert!(btf.size_of(func).unwrap_err().to_string().contains("has no size"));
    }
}

#[test]
fn every_kind_appears_in_vmlinux_as_often_as_bpftool_counts() {
    let (Some(btf), Some(dump)) = (vmlinux("kind counts"), vmlinux_dump("kind counts")) else { return };
    let mut ours: BTreeMap<&str, u32> = BTreeMap::new();
    for id in btf.ids() {
        *ours.entry(btf.kind_of(id).unwrap().name()).or_default() += 1;
    }
    let mut theirs: BTreeMap<&str, u32> = BTreeMap::new();
    for l in dump.lines().filter(|l| l.starts_with('[')) {
        *theirs.entry(l.split(' ').nth(1).unwrap()).or_default() += 1;
    }
    assert_eq!(ours, theirs);
    let missing: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).filter(|k| !ours.contains_key(k)).collect();
    eprintln!("kinds in vmlinux: {ours:?}; not emitted by this kernel: {missing:?}");
}

#[test]
fn lookups_by_name_are_fast_and_complete() {
    if vmlinux("lookups").is_none() {
        return;
    }
    let names =
        ["task_struct", "sk_buff", "xdp_md", "bpf_map", "file", "inode", "mm_struct", "sock", "net_device", "page"];
    // A fresh parse, so the first lookup builds the name index (DESIGN.md's benchmark shape).
    let start = Instant::now();
    let btf = &Btf::vmlinux().unwrap();
    let parsed = start.elapsed();
    for i in 0..1000 {
        assert!(btf.find_by_name_kind(names[i % names.len()], Kind::Struct).is_some(), "{}", names[i % names.len()]);
    }
    eprintln!("parse {parsed:?} + 1000 struct lookups by name (the first builds the index): {:?}", start.elapsed());
    // Several types share a name (a struct and a FUNC, say): all are found, in id order.
    let all = btf.find_by_name("bpf_map_type");
    assert!(!all.is_empty() && all.windows(2).all(|w| w[0] < w[1]));
    assert!(btf.find_by_name("no such type name").is_empty());
    assert_eq!(btf.find_by_name("").len(), 0);
}

#[test]
fn module_split_btf() {
    let Some(vm) = vmlinux("module split BTF") else { return };
    let modules: Vec<PathBuf> = std::fs::read_dir("/sys/kernel/btf")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n != "vmlinux"))
                .collect()
        })
        .unwrap_or_default();
    if modules.is_empty() {
        // Not a skip of something this kernel supports: it has no module BTF (DESIGN.md).
        eprintln!(
            "module split BTF: no module BTF under /sys/kernel/btf on this kernel (split BTF is tested synthetically)"
        );
        return;
    }
    for path in modules.iter().take(5) {
        let btf = Btf::from_split_file(path, vm).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(btf.first_id().0, vm.last_id().0 + 1);
        if let Some(dump) = bpftool_dump("module split BTF", path, Some(Path::new(VMLINUX))) {
            assert_same_as_bpftool(&btf, &dump);
        }
    }
}

/// A builder blob of every kind, and the types it should decode to.
fn every_kind() -> (BtfBuilder, Vec<TypeDetail<'static>>) {
    let mut b = BtfBuilder::new();
    let t = TypeId;
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let ch = b.add_int("char", 1, IntEncoding::Char, 8).unwrap();
    let bl = b.add_int("_Bool", 1, IntEncoding::Bool, 1).unwrap();
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
    let ptr = b.add_ptr(ch).unwrap();
    let arr = b.add_array(int, uint, 16).unwrap();
    let members = [Member::new("a", int, 0), Member::new("p", ptr, 64), Member::new("arr", arr, 128)];
    let st = b.add_struct("plain", 80, &members).unwrap();
    let bits = [Member::bitfield("lo", uint, 0, 3), Member::bitfield("hi", uint, 3, 29), Member::new("", st, 64)];
    let bf = b.add_struct("bits", 88, &bits).unwrap();
    let un = b.add_union("u", 8, &[Member::new("i", int, 0), Member::new("p", ptr, 0)]).unwrap();
    let en = b.add_enum("e", 4, true, &[EnumValue::new("NEG", -5), EnumValue::new("MAX", i32::MAX)]).unwrap();
    let ue = b.add_enum("ue", 4, false, &[EnumValue::new("BIG", u32::MAX)]).unwrap();
    let fwd = b.add_fwd("later", true).unwrap();
    let td = b.add_typedef("int_t", int).unwrap();
    let vol = b.add_volatile(td).unwrap();
    let cst = b.add_const(vol).unwrap();
    let rst = b.add_restrict(ptr).unwrap();
    let proto =
        b.add_func_proto(int, &[Param::new("x", int), Param::new("s", rst), Param::new("", TypeId::VOID)]).unwrap();
    let func = b.add_func("f", proto, Linkage::Global).unwrap();
    let var = b.add_var("v", st, Linkage::Static).unwrap();
    let sec = b.add_datasec(".data", 80, &[VarSecinfo { ty: var, offset: 0, size: 80 }]).unwrap();
    let fl = b.add_float("double", 8).unwrap();
    let dt = b.add_decl_tag("kfunc", func, -1).unwrap();
    let dt2 = b.add_decl_tag("arg", func, 1).unwrap();
    let tt = b.add_type_tag("user", int).unwrap();
    let e64 = b.add_enum64("e64", 8, false, &[EnumValue::new("HUGE", u64::MAX), EnumValue::new("SMALL", 1)]).unwrap();
    let se64 = b.add_enum64("se64", 8, true, &[EnumValue::new("MIN", i64::MIN)]).unwrap();
    let ids = [
        int, ch, bl, uint, ptr, arr, st, bf, un, en, ue, fwd, td, vol, cst, rst, proto, func, var, sec, fl, dt, dt2,
        tt, e64, se64,
    ];
    assert_eq!(ids, std::array::from_fn(|i| t(i as u32 + 1)));
    let m = |name, ty, bit_offset, bitfield_size| Member { name, ty, bit_offset, bitfield_size };
    let expected = vec![
        TypeDetail::Int { size: 4, encoding: IntEncoding::Signed, offset: 0, bits: 32 },
        TypeDetail::Int { size: 1, encoding: IntEncoding::Char, offset: 0, bits: 8 },
        TypeDetail::Int { size: 1, encoding: IntEncoding::Bool, offset: 0, bits: 1 },
        TypeDetail::Int { size: 4, encoding: IntEncoding::Unsigned, offset: 0, bits: 32 },
        TypeDetail::Ptr { target: ch },
        TypeDetail::Array { elem: int, index: uint, len: 16 },
        TypeDetail::Struct { size: 80, members: vec![m("a", int, 0, 0), m("p", ptr, 64, 0), m("arr", arr, 128, 0)] },
        TypeDetail::Struct { size: 88, members: vec![m("lo", uint, 0, 3), m("hi", uint, 3, 29), m("", st, 64, 0)] },
        TypeDetail::Union { size: 8, members: vec![m("i", int, 0, 0), m("p", ptr, 0, 0)] },
        TypeDetail::Enum {
            size: 4,
            signed: true,
            values: vec![EnumValue::new("NEG", -5), EnumValue::new("MAX", i32::MAX)],
        },
        TypeDetail::Enum { size: 4, signed: false, values: vec![EnumValue::new("BIG", u32::MAX)] },
        TypeDetail::Fwd { union: true },
        TypeDetail::Typedef { target: int },
        TypeDetail::Volatile { target: td },
        TypeDetail::Const { target: vol },
        TypeDetail::Restrict { target: ptr },
        TypeDetail::FuncProto {
            ret: int,
            params: vec![Param::new("x", int), Param::new("s", rst), Param::new("", TypeId::VOID)],
        },
        TypeDetail::Func { proto, linkage: Linkage::Global },
        TypeDetail::Var { ty: st, linkage: Linkage::Static },
        TypeDetail::Datasec { size: 80, vars: vec![VarSecinfo { ty: var, offset: 0, size: 80 }] },
        TypeDetail::Float { size: 8 },
        TypeDetail::DeclTag { target: func, component_idx: -1, attr: false },
        TypeDetail::DeclTag { target: func, component_idx: 1, attr: false },
        TypeDetail::TypeTag { target: int, attr: false },
        TypeDetail::Enum64 {
            size: 8,
            signed: false,
            values: vec![EnumValue::new("HUGE", u64::MAX), EnumValue::new("SMALL", 1)],
        },
        TypeDetail::Enum64 { size: 8, signed: true, values: vec![EnumValue::new("MIN", i64::MIN)] },
    ];
    (b, expected)
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("bpfkit-btf-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn builder_round_trips_every_kind() {
    let (b, expected) = every_kind();
    let blob = b.encode();
    assert_eq!(&blob[..4], &[0x9f, 0xeb, 1, 0]);
    assert_eq!(u32::from_ne_bytes(blob[4..8].try_into().unwrap()), 24);
    let btf = Btf::from_bytes(blob.as_slice()).unwrap();
    assert_eq!(btf.type_count() as usize, expected.len());
    let mut kinds = std::collections::BTreeSet::new();
    for (i, want) in expected.iter().enumerate() {
        let t = btf.type_by_id(TypeId(i as u32 + 1)).unwrap();
        assert_eq!(&t.detail, want, "type [{}] '{}'", i + 1, t.name);
        kinds.insert(t.kind());
    }
    assert_eq!(kinds.len(), Kind::ALL.len(), "every kind is built");
    // Names, deduplicated strings (`int` once), queries over the built types.
    assert_eq!(btf.name_of(TypeId(1)).unwrap(), "int");
    assert_eq!(btf.find_by_name("int"), vec![TypeId(1)]);
    assert_eq!(blob.windows(5).filter(|w| w == b"\0int\0").count(), 1);
    assert_eq!(btf.find_by_name_kind("bits", Kind::Struct), Some(TypeId(8)));
    assert_eq!(btf.resolve(TypeId(15)).unwrap(), TypeId(1)); // const → volatile → typedef → int
    assert_eq!(btf.size_of(TypeId(15)).unwrap(), 4);
    assert_eq!(btf.size_of(TypeId(6)).unwrap(), 64); // int[16]
    assert_eq!(btf.size_of(TypeId(19)).unwrap(), 80); // var of struct plain
    assert_eq!(btf.member_offset(TypeId(8), "hi").unwrap(), 3);
    assert_eq!(btf.member_offset(TypeId(8), "arr[2]").unwrap(), 64 + 128 + 2 * 32); // through the anonymous member
    assert_eq!(btf.member_offset(TypeId(7), "p").unwrap(), 64);
    assert!(btf.member_offset(TypeId(1), "x").is_err());
    assert!(btf.member_offset(TypeId(7), "a[1]").is_err());
    assert!(btf.member_offset(TypeId(7), "a..b").is_err());
    // bpftool (libbpf) reads the builder's blob the same way.
    let path = temp_file("every-kind", &blob);
    if let Some(dump) = bpftool_dump("builder vs bpftool", &path, None) {
        assert_same_as_bpftool(&btf, &dump);
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn builder_refuses_what_it_cannot_encode() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    assert!(b.add_int("wide", 64, IntEncoding::Unsigned, 512).is_err());
    let far = [Member::bitfield("x", int, 1 << 24, 1)];
    assert!(b.add_struct("s", 4, &far).unwrap_err().to_string().contains("24 bits"));
    assert!(b.add_enum("e", 4, false, &[EnumValue::new("N", -1)]).is_err());
    assert!(b.add_enum("e", 4, true, &[EnumValue::new("N", u32::MAX)]).is_err());
    assert!(b.add_enum64("e", 8, true, &[EnumValue::new("N", u64::MAX)]).is_err());
    let many: Vec<Member<'_>> = (0..70_000).map(|i| Member::new("m", int, i)).collect();
    assert!(b.add_struct("big", 4, &many).unwrap_err().to_string().contains("65535"));
    assert!(b.add_typedef("a\0b", int).is_err());
    // Failed adds leave no trace.
    assert_eq!(b.type_count(), 1);
    assert_eq!(Btf::from_bytes(b.encode()).unwrap().type_count(), 1);
}

#[test]
fn loops_in_type_chains_are_errors() {
    let mut b = BtfBuilder::new();
    b.add_typedef("self", TypeId(1)).unwrap(); // [1] typedef self → [1]
    b.add_array(TypeId(2), TypeId(1), 2).unwrap(); // [2] array of itself
    b.add_struct("s", 8, &[Member::new("", TypeId(3), 0)]).unwrap(); // [3] anonymous member of itself
    let btf = Btf::from_bytes(b.encode()).unwrap();
    assert!(matches!(btf.resolve(TypeId(1)), Err(BtfError::TooDeep { id: 1 })));
    assert!(matches!(btf.size_of(TypeId(2)), Err(BtfError::TooDeep { .. })));
    assert!(matches!(btf.member_offset(TypeId(3), "x"), Err(BtfError::TooDeep { .. })));
    assert!(matches!(btf.type_by_id(TypeId(4)), Err(BtfError::NoSuchId { id: 4, last: 3 })));

    // No loop, but 1100 anonymous members each holding 1100 anonymous members: a search for a
    // missing member gives up rather than visiting them all (and their own, and so on).
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let c = b.add_struct("c", 4, &[Member::new("x", int, 0)]).unwrap();
    let anon_c: Vec<Member<'_>> = (0..1100).map(|_| Member::new("", c, 0)).collect();
    let bb = b.add_struct("b", 4, &anon_c).unwrap();
    let anon_b: Vec<Member<'_>> = (0..1100).map(|_| Member::new("", bb, 0)).collect();
    let a = b.add_struct("a", 4, &anon_b).unwrap();
    let btf = Btf::from_bytes(b.encode()).unwrap();
    assert_eq!(btf.member_offset(a, "x").unwrap(), 0);
    let e = btf.member_offset(a, "nope").unwrap_err().to_string();
    assert!(e.contains("more than 1048576 members"), "{e}");
}

#[test]
fn split_btf_continues_ids_and_strings_of_its_base() {
    let (base_builder, _) = every_kind();
    let base = Btf::from_bytes(base_builder.encode()).unwrap();
    let mut b = BtfBuilder::split(&base).unwrap();
    assert_eq!(b.next_id(), TypeId(base.last_id().0 + 1));
    let plain = base.find_by_name_kind("plain", Kind::Struct).unwrap();
    let int = TypeId(1);
    let p = b.add_ptr(plain).unwrap();
    let s = b.add_struct("modstruct", 16, &[Member::new("x", int, 0), Member::new("plain_ptr", p, 64)]).unwrap();
    let dup = b.add_typedef("int", int).unwrap(); // a name the base has too
    let blob = b.encode();
    let split = Btf::from_split(blob.as_slice(), &base).unwrap();
    assert_eq!(split.first_id(), TypeId(base.last_id().0 + 1));
    assert_eq!(split.type_count(), 3);
    assert_eq!(split.type_by_id(plain).unwrap().name, "plain"); // a base id through the split
    let t = split.type_by_id(s).unwrap();
    assert_eq!(t.name, "modstruct");
    assert_eq!(t.members()[0], Member::new("x", int, 0));
    assert_eq!(split.member_offset(s, "plain_ptr").unwrap(), 64);
    assert_eq!(split.size_of(s).unwrap(), 16);
    assert_eq!(split.find_by_name("int"), vec![int, dup]);
    assert_eq!(split.find_by_name_kind("plain", Kind::Struct), Some(plain));
    // As a module's BTF would be, read by bpftool on top of its base.
    let base_path = temp_file("split-base", base.as_bytes());
    let path = temp_file("split", &blob);
    if let Some(dump) = bpftool_dump("split vs bpftool", &path, Some(&base_path)) {
        assert_same_as_bpftool(&split, &dump);
    }
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(base_path);

    // On top of the real vmlinux as well.
    if let Some(vm) = vmlinux("split on vmlinux") {
        let mut b = BtfBuilder::split(vm).unwrap();
        let task = vm.find_by_name_kind("task_struct", Kind::Struct).unwrap();
        let p = b.add_ptr(task).unwrap();
        let w = b.add_struct("bpfkit_wrapper", 8, &[Member::new("task", p, 0)]).unwrap();
        let split = Btf::from_split(b.encode(), vm).unwrap();
        assert_eq!(w, TypeId(vm.last_id().0 + 2));
        assert_eq!(split.resolve(split.type_by_id(p).unwrap().target().unwrap()).unwrap(), task);
        assert_eq!(split.find_by_name_kind("bpfkit_wrapper", Kind::Struct), Some(w));
        assert_eq!(split.find_by_name_kind("task_struct", Kind::Struct), Some(task));
    }
}

#[test]
fn kernel_accepts_a_built_blob_and_a_map_uses_its_ids() {
    if !support::kernel_or_skip("BPF_BTF_LOAD") {
        return;
    }
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let long = b.add_int("long", 8, IntEncoding::Signed, 64).unwrap();
    let value = b.add_struct("value", 16, &[Member::new("a", int, 0), Member::new("b", long, 64)]).unwrap();
    let proto = b.add_func_proto(int, &[Param::new("x", int)]).unwrap();
    b.add_func("get", proto, Linkage::Global).unwrap();
    let var = b.add_var("counter", value, Linkage::Global).unwrap();
    b.add_datasec(".data", 16, &[VarSecinfo { ty: var, offset: 0, size: 16 }]).unwrap();
    let loaded = b.load().unwrap_or_else(|e| panic!("{e}"));
    let id = loaded.kernel_id().unwrap();
    assert!(id > 0);

    // An array map whose key and value are described by the loaded BTF: the kernel checks the
    // ids' kinds and sizes against key_size and value_size.
    use bpfkit::maps::{Map, MapSpec, MapType};
    let spec = |value_size| {
        MapSpec::new("btf_map", MapType::Array, 4, value_size, 1).btf(std::os::fd::AsFd::as_fd(&loaded), int.get(), value.get()).unwrap()
    };
    Map::create(&spec(16)).expect("map with BTF key/value");
    assert!(Map::create(&spec(8)).is_err(), "value_size 8 disagrees with the BTF's 16");

    // bpftool reads it back out of the kernel as we wrote it.
    let out = Command::new("bpftool").args(["btf", "dump", "id", &id.to_string()]).output();
    if let Some(out) = out.ok().filter(|o| o.status.success()) {
        let dump = String::from_utf8(out.stdout).unwrap();
        assert_same_as_bpftool(&Btf::from_bytes(b.encode()).unwrap(), &dump);
    }
}

#[test]
fn kernel_rejection_carries_the_log_line() {
    if !support::kernel_or_skip("BPF_BTF_LOAD rejection") {
        return;
    }
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    b.add_struct("foo", 8, &[Member::new("a", int, 0), Member::new("b", TypeId(99), 32)]).unwrap();
    let err = b.load().unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.starts_with("btf_load: EINVAL: "), "{msg}");
    assert!(msg.contains("STRUCT foo") && msg.contains("Invalid member"), "{msg}");
    assert_eq!(err.errno(), Some(libc::EINVAL));
    let BtfError::Rejected { log, .. } = &err else { panic!("{err:?}") };
    assert!(log.contains("magic: 0xeb9f"), "{log}");

    // A raw blob with a bad header is refused before the types are looked at.
    let mut blob = b.encode();
    blob[2] = 2; // version
    let msg = LoadedBtf::load(&blob).unwrap_err().to_string();
    assert!(msg.starts_with("btf_load: ") && msg.contains("Unsupported version"), "{msg}");
}

// ---- untrusted input ----

/// Run every query over `btf`'s first types; errors are fine, panics are not.
fn exercise(btf: &Btf, max_types: u32) {
    let last = btf.last_id().0;
    for id in (0..=last.min(max_types)).chain([last + 1, u32::MAX]) {
        let id = TypeId(id);
        if let Ok(t) = btf.type_by_id(id) {
            for m in t.members() {
                let _ = btf.member_offset(id, m.name);
            }
            let _ = btf.find_by_name(t.name);
        }
        let _ = (btf.kind_of(id), btf.name_of(id), btf.resolve(id), btf.size_of(id));
        let _ = btf.member_offset(id, "a.b[1]");
    }
    let _ = (btf.enum_values("e"), btf.find_by_name_kind("int", Kind::Int));
}

/// The size of the record at `off` (header + trailer), to cut the type section on a boundary.
fn record_len(types: &[u8], off: usize) -> usize {
    let info = u32::from_ne_bytes(types[off + 4..off + 8].try_into().unwrap());
    let vlen = (info & 0xffff) as usize;
    12 + match (info >> 24) & 0x1f {
        1 | 14 | 17 => 4,
        3 => 12,
        4 | 5 | 15 | 19 => 12 * vlen,
        6 | 13 => 8 * vlen,
        _ => 0,
    }
}

/// A small valid blob from vmlinux's first types and strings: its header, about `type_bytes`
/// of whole type records, the first `str_bytes` of strings (cut after a NUL).
fn vmlinux_prefix(vm: &[u8], type_bytes: usize, str_bytes: usize) -> Vec<u8> {
    let w = |i: usize| u32::from_ne_bytes(vm[i..i + 4].try_into().unwrap()) as usize;
    let (hdr, type_off, type_len, str_off, str_len) = (w(4), w(8), w(12), w(16), w(20));
    let types = &vm[hdr + type_off..hdr + type_off + type_len];
    let mut cut = 0;
    while cut < types.len() && cut < type_bytes {
        cut += record_len(types, cut);
    }
    let strs = &vm[hdr + str_off..hdr + str_off + str_len];
    let str_cut = strs[..str_bytes.min(strs.len())].iter().rposition(|&b| b == 0).unwrap() + 1;
    let mut out = vm[..4].to_vec();
    for v in [24, 0, cut, cut, str_cut] {
        out.extend_from_slice(&(v as u32).to_ne_bytes());
    }
    out.extend_from_slice(&types[..cut]);
    out.extend_from_slice(&strs[..str_cut]);
    out
}

/// xorshift64: deterministic corruption.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn reader_never_panics_on_truncated_or_corrupted_input() {
    let start = Instant::now();
    let (b, _) = every_kind();
    let mut samples = vec![b.encode()];
    if let Some(vm) = vmlinux("corrupted vmlinux prefix") {
        let prefix = vmlinux_prefix(vm.as_bytes(), 6 * 1024, 32 * 1024);
        let btf = Btf::from_bytes(prefix.as_slice()).expect("the prefix blob is valid");
        assert!(btf.type_count() > 100);
        assert_eq!(btf.type_by_id(TypeId(1)).unwrap(), vm.type_by_id(TypeId(1)).unwrap());
        samples.push(prefix);
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut parsed = 0;
    for sample in &samples {
        let type_len = u32::from_ne_bytes(sample[12..16].try_into().unwrap()) as usize;
        let region = 24 + type_len; // header and type section
                                    // Truncated blobs: every length in the header and first records, then strided.
        let lens = (0..sample.len().min(400)).chain((400..sample.len()).step_by(97));
        for len in lens {
            if let Ok(btf) = Btf::from_bytes(&sample[..len]) {
                parsed += 1;
                exercise(&btf, 50);
            }
        }
        // A type section cut short inside a record: the header says so, the record is short.
        for cut in (0..type_len).step_by(7) {
            let mut blob = sample.clone();
            blob[12..16].copy_from_slice(&(cut as u32).to_ne_bytes());
            match Btf::from_bytes(blob) {
                Ok(btf) => exercise(&btf, 50),
                Err(e) => assert!(matches!(e, BtfError::BadType { .. } | BtfError::Header(_)), "{e}"),
            }
        }
        // Bit flips in the header and type section.
        for _ in 0..1500 {
            let mut blob = sample.clone();
            for _ in 0..1 + next(&mut rng) % 3 {
                let bit = next(&mut rng) as usize % (region * 8);
                blob[bit / 8] ^= 1 << (bit % 8);
            }
            if let Ok(btf) = Btf::from_bytes(blob) {
                parsed += 1;
                exercise(&btf, 60);
            }
        }
        // Header fields set to edge values.
        for field in 1..6 {
            for v in [0u32, 1, 3, 24, region as u32, sample.len() as u32, u32::MAX - 3, u32::MAX] {
                let mut blob = sample.clone();
                blob[field * 4..field * 4 + 4].copy_from_slice(&v.to_ne_bytes());
                if let Ok(btf) = Btf::from_bytes(blob) {
                    exercise(&btf, 50);
                }
            }
        }
    }
    eprintln!(
        "corruption: {parsed} corrupted blobs still parsed and were queried without panics, in {:?}",
        start.elapsed()
    );
}

#[test]
fn errors_name_the_offset_or_type() {
    let (b, _) = every_kind();
    let blob = b.encode();
    let e = Btf::from_bytes(&blob[..10]).unwrap_err().to_string();
    assert!(e.contains("10 bytes"), "{e}");
    let mut bad = blob.clone();
    bad[0] = 0;
    assert!(Btf::from_bytes(bad).unwrap_err().to_string().contains("magic"));
    // Type [3]'s kind set to 31 (its info word is at 24 + 2*16 + 4).
    let mut bad = blob.clone();
    bad[24 + 32 + 7] = 31;
    let e = Btf::from_bytes(bad).unwrap_err().to_string();
    assert_eq!(e, "BTF type [3] at byte 56: unknown kind 31");
    // A name offset beyond the strings is reported when the type is decoded.
    let mut bad = blob.clone();
    bad[24..28].copy_from_slice(&1_000_000u32.to_ne_bytes());
    let btf = Btf::from_bytes(bad).unwrap();
    let e = btf.type_by_id(TypeId(1)).unwrap_err().to_string();
    assert!(e.starts_with("BTF type [1] at byte 24: name: BTF string at offset 1000000"), "{e}");
    let e = Btf::from_file("/nonexistent/btf").unwrap_err().to_string();
    assert!(e.contains("/nonexistent/btf"), "{e}");
}
