//! BTF as people read it: C declarations ([`Btf::c_decl`], [`Btf::c_dump_all`]) checked against
//! bpftool's `format c` line for line and against clang-19 (the header compiles, and every
//! uniquely named struct has the size and member offsets BTF gives), and values
//! ([`Btf::format_value`]) checked against `bpftool map dump` of real maps, plus unit cases for
//! every kind on BTF built with [`BtfBuilder`].

mod support;

use bpfkit::core_btf::{
    Btf, BtfBuilder, BtfError, EnumValue, IntEncoding, Kind, Linkage, Member, Param, TypeDetail, TypeId, VarSecinfo,
};
use bpfkit::maps::{Map, MapSpec, MapType, UpdateFlags};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn vmlinux(test: &str) -> Option<&'static Btf> {
    static VM: OnceLock<Option<Btf>> = OnceLock::new();
    let vm = VM.get_or_init(|| Path::new(VMLINUX).exists().then(|| Btf::vmlinux().expect("parse vmlinux BTF")));
    if vm.is_none() {
        support::skip(&format!("{test}: {VMLINUX} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)"));
    }
    vm.as_ref()
}

/// Run a tool; `None` (after a skip line) when it cannot be started.
fn tool(test: &str, program: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(program).args(args).output() {
        Ok(out) => Some(out),
        Err(e) => {
            support::skip(&format!("{test}: {program} not runnable ({e})"));
            None
        }
    }
}

fn stdout_of(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Compile `c` (which may `#include "header.h"`, holding `header`) for BPF with clang-19.
fn compile(test: &str, header: &str, c: &str) -> Option<Result<(), String>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("header.h"), header).unwrap();
    std::fs::write(dir.path().join("t.c"), c).unwrap();
    let (src, obj) = (dir.path().join("t.c"), dir.path().join("t.o"));
    let out =
        tool(test, "clang-19", &["-target", "bpf", "-O2", "-c", src.to_str().unwrap(), "-o", obj.to_str().unwrap()])?;
    Some(if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) })
}

/// The one attribute bpfkit writes and bpftool 7.1 does not (see `c_decl`'s module doc).
fn without_enum_mode(line: &str) -> String {
    line.replace(" __attribute__((mode(byte)))", "").replace(" __attribute__((mode(word)))", "")
}

#[test]
fn full_vmlinux_dump_equals_bpftool_line_for_line() {
    let test = "vmlinux C dump vs bpftool";
    let Some(btf) = vmlinux(test) else { return };
    let Some(out) = tool(test, "bpftool", &["btf", "dump", "file", VMLINUX, "format", "c"]) else { return };
    let theirs = stdout_of(out, "bpftool btf dump format c");
    let start = std::time::Instant::now();
    let ours = btf.c_dump_all().unwrap();
    let took = start.elapsed();
    let mut moded = 0;
    for (n, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
        let a_norm = without_enum_mode(a);
        moded += usize::from(a_norm != a);
        assert_eq!(a_norm, b, "line {} differs (bpfkit, bpftool)", n + 1);
    }
    assert_eq!(ours.lines().count(), theirs.lines().count(), "line counts differ");
    // vmlinux of 6.18 has 1-byte enums (enum rw_hint, …): the normalisation is not vacuous.
    assert!(moded > 0, "no enum needed mode(byte): is the normalisation still needed?");
    eprintln!(
        "{} lines ({} types) equal bpftool's; {moded} enums differ only by mode(byte/word); dumped in {took:?}",
        ours.lines().count(),
        btf.type_count()
    );
}

/// Whether a struct/union embeds (not through a pointer) `va_list`, which clang's BPF target
/// makes 8 bytes where the kernel's x86-64 build has 24.
fn embeds_va_list(btf: &Btf, id: TypeId, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    let t = btf.type_by_id(id).unwrap();
    match &t.detail {
        TypeDetail::Typedef { target } if t.name.contains("va_list") => {
            let _ = target;
            true
        }
        TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. } => {
            members.iter().any(|m| embeds_va_list(btf, m.ty, depth + 1))
        }
        TypeDetail::Ptr { .. } => false,
        _ => t.target().is_some_and(|next| embeds_va_list(btf, next, depth + 1)),
    }
}

/// `_Static_assert`s of size and member offsets for every named struct/union of `btf` whose
/// name no other struct, union or enum has (so the header spells it without `___N`), and that
/// `defined` says the header defines. Returns (asserts, types).
fn layout_asserts(btf: &Btf, defined: &dyn Fn(&str) -> bool) -> (String, usize) {
    let mut c = String::new();
    let mut types = 0;
    for id in btf.ids() {
        let t = btf.type_by_id(id).unwrap();
        let kw = match t.kind() {
            Kind::Struct => "struct",
            Kind::Union => "union",
            _ => continue,
        };
        let tags = btf
            .find_by_name(t.name)
            .into_iter()
            .filter(|&i| matches!(btf.kind_of(i).unwrap(), Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64));
        if t.name.is_empty()
            || tags.count() != 1
            || !defined(&format!("{kw} {} {{", t.name))
            || embeds_va_list(btf, id, 0)
        {
            continue;
        }
        types += 1;
        let name = t.name;
        writeln!(c, "_Static_assert(sizeof({kw} {name}) == {}, \"sizeof {name}\");", t.size().unwrap()).unwrap();
        for m in t.members().iter().filter(|m| !m.name.is_empty() && m.bitfield_size == 0) {
            let (field, off) = (m.name, m.bit_offset / 8);
            writeln!(c, "_Static_assert(__builtin_offsetof({kw} {name}, {field}) == {off}, \"{name}.{field}\");")
                .unwrap();
        }
    }
    (c, types)
}

#[test]
fn task_struct_with_its_dependencies_compiles_with_the_kernels_layout() {
    let test = "task_struct C closure";
    let Some(btf) = vmlinux(test) else { return };
    let task = btf.find_by_name_kind("task_struct", Kind::Struct).unwrap();
    let header = btf.c_dump_with_deps(&[task]).unwrap();
    assert!(header.contains("struct task_struct {\n"), "{header}");
    let defined: Vec<&str> = header.lines().filter(|l| l.ends_with(" {")).collect();
    let (asserts, types) = layout_asserts(btf, &|line| defined.contains(&line));
    let pid = btf.member_offset(task, "pid").unwrap() / 8;
    let c = format!(
        "#include \"header.h\"\n{asserts}\n\
         _Static_assert(__builtin_offsetof(struct task_struct, pid) == {pid}, \"pid\");\n\
         int f(struct task_struct *t) {{ return t->pid; }}\n"
    );
    let Some(result) = compile(test, &header, &c) else { return };
    result.unwrap_or_else(|e| panic!("the task_struct closure does not compile:\n{e}"));
    eprintln!("task_struct closure: {} lines, {types} struct layouts asserted", header.lines().count());
}

#[test]
fn full_vmlinux_dump_compiles_with_every_struct_layout_as_btf_says() {
    let test = "vmlinux C dump compiles";
    let Some(btf) = vmlinux(test) else { return };
    let header = btf.c_dump_all().unwrap();
    let (asserts, types) = layout_asserts(btf, &|_| true);
    let c = format!("#include \"header.h\"\n{asserts}\nint f(struct task_struct *t) {{ return t->pid; }}\n");
    let Some(result) = compile(test, &header, &c) else { return };
    result.unwrap_or_else(|e| {
        panic!("vmlinux.h does not compile:\n{}", e.lines().take(40).collect::<Vec<_>>().join("\n"))
    });
    eprintln!(
        "vmlinux.h compiles; {types} structs/unions: size and {} member offsets asserted",
        asserts.lines().count() - types
    );
}

/// The BTF of a map value with a member of every kind bpftool 7.1 can print (it stops at a
/// FLOAT: floats are in the unit cases below); returns the builder, the value struct's id, the
/// key's (`int`) id and a value's bytes.
fn value_btf() -> (BtfBuilder, TypeId, TypeId, Vec<u8>) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
    let char_ = b.add_int("char", 1, IntEncoding::Unsigned, 8).unwrap();
    let short = b.add_int("short", 2, IntEncoding::Signed, 16).unwrap();
    let ushort = b.add_int("unsigned short", 2, IntEncoding::Unsigned, 16).unwrap();
    let uchar = b.add_int("unsigned char", 1, IntEncoding::Unsigned, 8).unwrap();
    let ll = b.add_int("long long", 8, IntEncoding::Signed, 64).unwrap();
    let ull = b.add_int("unsigned long long", 8, IntEncoding::Unsigned, 64).unwrap();
    let bool_ = b.add_int("_Bool", 1, IntEncoding::Bool, 8).unwrap();
    let ptr = b.add_ptr(TypeId::VOID).unwrap();
    let color = b
        .add_enum("color", 4, false, &[EnumValue::new("RED", 0), EnumValue::new("GREEN", 1), EnumValue::new("BLUE", 7)])
        .unwrap();
    let e64 = b.add_enum64("big", 8, true, &[EnumValue::new("NEG", -5), EnumValue::new("HUGE", 1i64 << 40)]).unwrap();
    let pid_t = b.add_typedef("pid_t", int).unwrap();
    let inner = b.add_struct("inner", 4, &[Member::new("a", short, 0), Member::new("b", uchar, 16)]).unwrap();
    let u = b.add_union("u", 4, &[Member::new("i", int, 0), Member::new("s", short, 0)]).unwrap();
    let anon = b.add_union("", 4, &[Member::new("x", uint, 0), Member::new("y", ushort, 0)]).unwrap();
    let idx = uint;
    let comm = b.add_array(char_, idx, 16).unwrap();
    let arr = b.add_array(int, idx, 3).unwrap();
    let row = b.add_array(uchar, idx, 3).unwrap();
    let grid = b.add_array(row, idx, 2).unwrap();
    let cint = b.add_const(int).unwrap();
    let cv = b.add_volatile(cint).unwrap();
    let members = [
        Member::new("pid", int, 0),
        Member::new("comm", comm, 32),
        Member::new("flags", uint, 160),
        Member::new("arr", arr, 192),
        Member::bitfield("bf1", uint, 288, 3),
        Member::bitfield("bf2", uint, 291, 5),
        Member::bitfield("sbf", int, 296, 4),
        Member::new("ptr", ptr, 320),
        Member::new("neg", ll, 384),
        Member::new("big", ull, 448),
        Member::new("ok", bool_, 512),
        Member::new("color", color, 544),
        Member::new("in", inner, 576),
        Member::new("u", u, 608),
        Member::new("d", ull, 640),
        Member::new("f", uint, 704),
        Member::new("tpid", pid_t, 736),
        Member::new("cv", cv, 768),
        Member::new("e64", e64, 832),
        Member::new("", anon, 896),
        Member::new("grid", grid, 928),
    ];
    let value = b.add_struct("value", 128, &members).unwrap();
    let mut v = vec![0u8; 128];
    let mut put = |off: usize, bytes: &[u8]| v[off..off + bytes.len()].copy_from_slice(bytes);
    put(0, &12i32.to_ne_bytes());
    put(4, b"bash\0");
    put(20, &4u32.to_ne_bytes());
    for (i, x) in [1i32, -2, 3].iter().enumerate() {
        put(24 + 4 * i, &x.to_ne_bytes());
    }
    // bf1 = 5 (bits 288..291), bf2 = 17 (291..296), sbf = -3 (296..300).
    put(36, &[5 | 17 << 3, 0b1101]);
    put(40, &0xffff_8881_0a3c_0000u64.to_ne_bytes());
    put(48, &(-42i64).to_ne_bytes());
    put(56, &u64::MAX.to_ne_bytes());
    put(64, &[1]);
    put(68, &7u32.to_ne_bytes());
    put(72, &(-7i16).to_ne_bytes());
    put(74, &[200]);
    put(76, &(-9i32).to_ne_bytes());
    put(80, &1.5f64.to_bits().to_ne_bytes());
    put(88, &(-0.25f32).to_bits().to_ne_bytes());
    put(92, &4321i32.to_ne_bytes());
    put(96, &(-1i32).to_ne_bytes());
    put(104, &(-5i64).to_ne_bytes());
    put(112, &0x0001_0002u32.to_ne_bytes());
    put(116, &[1, 2, 3, 4, 5, 6]);
    (b, value, int, v)
}

/// A value as either side writes it: bpftool's JSON-like dump or bpfkit's C initialiser.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Fields in order; an anonymous member's name is empty.
    Obj(Vec<(String, Node)>),
    Arr(Vec<Node>),
    Str(String),
    /// A bare token: a number, `0x…`, `true`, an enumerator.
    Scalar(String),
}

/// A small reader for both notations: `{ "a": 1 }` (bpftool) and `{ .a = 1, { … } }` (bpfkit).
struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.at).is_some_and(|c| c.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.skip_ws();
        self.s.get(self.at).copied().unwrap_or(0)
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == c;
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, c: u8) {
        assert!(self.eat(c), "expected '{}' at byte {} of {}", c as char, self.at, String::from_utf8_lossy(self.s));
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = String::new();
        while let Some(&c) = self.s.get(self.at) {
            self.at += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    out.push(self.s[self.at] as char);
                    self.at += 1;
                }
                _ => out.push(c as char),
            }
        }
        panic!("unterminated string");
    }

    fn token(&mut self) -> String {
        self.skip_ws();
        let start = self.at;
        while self.s.get(self.at).is_some_and(|c| !b",]}: \n\t".contains(c)) {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.at]).into_owned()
    }

    fn value(&mut self) -> Node {
        match self.peek() {
            b'{' => {
                self.expect(b'{');
                let mut fields = Vec::new();
                while !self.eat(b'}') {
                    let name = match self.peek() {
                        b'"' => {
                            let n = self.string();
                            self.expect(b':');
                            n
                        }
                        b'.' => {
                            self.at += 1;
                            let n = self.token();
                            self.expect(b'=');
                            n
                        }
                        _ => String::new(),
                    };
                    fields.push((name, self.value()));
                    self.eat(b',');
                }
                Node::Obj(fields)
            }
            b'[' => {
                self.expect(b'[');
                let mut elems = Vec::new();
                while !self.eat(b']') {
                    elems.push(self.value());
                    self.eat(b',');
                }
                Node::Arr(elems)
            }
            b'"' => Node::Str(self.string()),
            _ => Node::Scalar(self.token()),
        }
    }
}

fn read_node(text: &str) -> Node {
    let mut r = Reader { s: text.as_bytes(), at: 0 };
    let node = r.value();
    assert_eq!(r.peek(), 0, "trailing text after the value: {text}");
    node
}

/// A number in either notation (bpftool prints a NULL pointer as glibc's `%p` does: `(nil)`).
fn int_of(token: &str) -> Option<i128> {
    if token == "(nil)" {
        return Some(0);
    }
    match token.strip_prefix("0x") {
        Some(hex) => u128::from_str_radix(hex, 16).ok().map(|v| v as i128),
        None => token.parse().ok(),
    }
}

/// Compare bpfkit's value (`ours`) with bpftool's (`theirs`) field by field, walking type `id`;
/// returns how many scalars were compared. `bits` is a bitfield's width (bpftool prints a
/// bitfield's raw bits in hex, bpfkit its value).
fn compare(btf: &Btf, id: TypeId, ours: &Node, theirs: &Node, path: &str, bits: u8) -> usize {
    let t = btf.type_by_id(btf.resolve(id).unwrap()).unwrap();
    let scalar = |n: &Node| match n {
        Node::Scalar(s) | Node::Str(s) => s.clone(),
        other => panic!("{path}: expected a scalar, got {other:?}"),
    };
    match (&t.detail, ours, theirs) {
        (TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. }, Node::Obj(o), Node::Obj(th)) => {
            // bpfkit shows a union's first member, bpftool all of them.
            let want = if t.kind() == Kind::Union { members.len().min(1) } else { members.len() };
            assert_eq!(o.len(), want, "{path}: bpfkit's fields {o:?}");
            assert_eq!(th.len(), members.len(), "{path}: bpftool's fields {th:?}");
            let mut n = 0;
            for ((m, (on, ov)), (tn, tv)) in members.iter().zip(o).zip(th) {
                assert_eq!((on.as_str(), tn.as_str()), (m.name, m.name), "{path}: member names");
                n += compare(btf, m.ty, ov, tv, &format!("{path}.{}", m.name), m.bitfield_size);
            }
            n
        }
        (TypeDetail::Array { elem, .. }, Node::Arr(o), Node::Arr(th)) => {
            assert_eq!(o.len(), th.len(), "{path}: array lengths");
            o.iter().zip(th).enumerate().map(|(i, (a, b))| compare(btf, *elem, a, b, &format!("{path}[{i}]"), 0)).sum()
        }
        (TypeDetail::Array { .. }, Node::Str(a), Node::Str(b)) => {
            assert_eq!(a, b, "{path}: strings");
            1
        }
        (
            TypeDetail::Int { .. } | TypeDetail::Ptr { .. } | TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. },
            _,
            _,
        ) => {
            let (a, b) = (scalar(ours), scalar(theirs));
            match (int_of(&a), int_of(&b)) {
                (Some(x), Some(y)) if bits != 0 => assert_eq!(x & ((1 << bits) - 1), y, "{path}: bitfield"),
                (Some(x), Some(y)) => assert_eq!(x, y, "{path}: {a} vs {b}"),
                _ => assert_eq!(a, b, "{path}"),
            }
            1
        }
        _ => panic!("{path}: {} value shapes differ: bpfkit {ours:?}, bpftool {theirs:?}", t.kind()),
    }
}

/// `bpftool map dump id N`'s entries: (key, values), one value per CPU for per-CPU maps.
fn bpftool_entries(dump: &str) -> Vec<(Node, Vec<Node>)> {
    let Node::Arr(entries) = read_node(dump) else { panic!("bpftool map dump is not a list: {dump}") };
    entries
        .into_iter()
        .map(|e| {
            let Node::Obj(fields) = e else { panic!("entry {e:?}") };
            let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let key = get("key").expect("key");
            let values = match (get("value"), get("values")) {
                (Some(v), _) => vec![v],
                (None, Some(Node::Arr(cpus))) => cpus
                    .into_iter()
                    .map(|c| match c {
                        Node::Obj(f) => f.into_iter().find(|(n, _)| n == "value").expect("cpu value").1,
                        other => panic!("per-cpu entry {other:?}"),
                    })
                    .collect(),
                _ => panic!("entry without value: {fields:?}"),
            };
            (key, values)
        })
        .collect()
}

#[test]
fn map_values_print_as_bpftool_prints_them_field_by_field() {
    let test = "pretty-printed map values vs bpftool";
    if !support::kernel_or_skip(test) {
        return;
    }
    let (b, value, int, bytes) = value_btf();
    let loaded = b.load().unwrap();
    let btf = Btf::from_bytes(b.encode()).unwrap();
    let mut second = bytes.clone();
    second[4..9].copy_from_slice(b"\x01\x02xy\0"); // not printable: an array of numbers
    second[36..38].copy_from_slice(&[0b1111_1111, 0b0111]); // sbf = 7, the largest it holds
    second[68..72].copy_from_slice(&3u32.to_ne_bytes()); // no enumerator has 3
    second[40..48].fill(0); // a NULL pointer
    let mut compared = 0;
    for (map_type, name) in
        [(MapType::Array, "pretty_arr"), (MapType::Hash, "pretty_hash"), (MapType::PercpuArray, "pretty_pcpu")]
    {
        let spec = MapSpec::new(name, map_type, 4, 128, 2).btf(&loaded, int.get(), value.get()).unwrap();
        let m = Map::create(&spec).unwrap();
        let per_cpu = map_type == MapType::PercpuArray;
        let cpus = m.value_buf_len().unwrap() / 128;
        for (k, v) in [(0u32, &bytes), (1, &second)] {
            let full: Vec<u8> = (0..if per_cpu { cpus } else { 1 }).flat_map(|_| v.iter().copied()).collect();
            m.update(&k.to_ne_bytes(), &full, UpdateFlags::Any).unwrap();
        }
        let id = m.info().unwrap().id.to_string();
        let Some(out) = tool(test, "bpftool", &["map", "dump", "id", &id]) else { return };
        let entries = bpftool_entries(&stdout_of(out, "bpftool map dump"));
        assert_eq!(entries.len(), 2, "{name}: {entries:?}");
        for (key, values) in entries {
            let k = int_of(&match key {
                Node::Scalar(s) => s,
                other => panic!("key {other:?}"),
            })
            .unwrap() as u32;
            let got = m.lookup(&k.to_ne_bytes()).unwrap().unwrap();
            assert_eq!(values.len(), if per_cpu { cpus } else { 1 });
            for (cpu, theirs) in values.iter().enumerate() {
                let slot = &got[cpu * 128..(cpu + 1) * 128];
                let ours = btf.format_value(value, slot).unwrap();
                compared += compare(&btf, value, &read_node(&ours), theirs, &format!("{name}[{k}]"), 0);
            }
        }
    }
    eprintln!("{compared} scalar fields equal bpftool's across array, hash and per-CPU array maps");
}

// ---- Unit cases: no kernel needed ----

#[test]
fn every_value_kind_formats_as_a_c_initialiser() {
    let (b, value, _, bytes) = value_btf();
    let btf = Btf::from_bytes(b.encode()).unwrap();
    assert_eq!(
        btf.format_value(value, &bytes).unwrap(),
        "{ .pid = 12, .comm = \"bash\", .flags = 0x4, .arr = [1, -2, 3], .bf1 = 5, .bf2 = 17, .sbf = -3, \
         .ptr = 0xffff88810a3c0000, .neg = -42, .big = 18446744073709551615, .ok = true, .color = BLUE, \
         .in = { .a = -7, .b = 200 }, .u = { .i = -9 }, .d = 4609434218613702656, .f = 3196059648, .tpid = 4321, \
         .cv = -1, .e64 = NEG, { .x = 65538 }, .grid = [[1, 2, 3], [4, 5, 6]] }"
    );
    // Longer buffers are fine (the value is their start); shorter ones are an error.
    let mut longer = bytes.clone();
    longer.extend([0xaa; 8]);
    assert_eq!(btf.format_value(value, &longer).unwrap(), btf.format_value(value, &bytes).unwrap());
    for len in [0, 1, 64, 127] {
        let err = btf.format_value(value, &bytes[..len]).unwrap_err();
        assert!(err.to_string().contains(&format!("from {len} bytes")), "{err}");
    }
    // A member type on its own: the array, the nested struct, a typedef.
    let comm = btf.type_by_id(value).unwrap().members()[1].ty;
    assert_eq!(btf.format_value(comm, &bytes[4..20]).unwrap(), "\"bash\"");
    let pid_t = btf.find_by_name_kind("pid_t", Kind::Typedef).unwrap();
    assert_eq!(btf.format_value(pid_t, &(-1i32).to_ne_bytes()).unwrap(), "-1");
}

#[test]
fn floats_wide_ints_strings_enums_in_bitfields_sections_and_empty_things() {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
    let char_ = b.add_int("char", 1, IntEncoding::Signed, 8).unwrap();
    let schar = b.add_int("signed char", 1, IntEncoding::Char, 8).unwrap();
    let i128_ = b.add_int("__int128", 16, IntEncoding::Signed, 128).unwrap();
    let float = b.add_float("float", 4).unwrap();
    let double = b.add_float("double", 8).unwrap();
    let ldouble = b.add_float("long double", 16).unwrap();
    let color = b.add_enum("color", 4, false, &[EnumValue::new("RED", 0), EnumValue::new("BLUE", 7)]).unwrap();
    let wide = b.add_enum64("wide", 8, false, &[EnumValue::new("TOP", u64::MAX)]).unwrap();
    let mychar = b.add_typedef("mychar", char_).unwrap();
    let empty = b.add_struct("empty", 0, &[]).unwrap();
    let s8 = b.add_array(char_, uint, 8).unwrap();
    let t4 = b.add_array(mychar, uint, 4).unwrap();
    let none = b.add_array(int, uint, 0).unwrap();
    let members = [
        Member::new("f", float, 0),
        Member::new("d", double, 64),
        Member::new("ld", ldouble, 128),
        Member::new("big", i128_, 256),
        Member::new("quote", s8, 384),
        Member::new("typedefd", t4, 448),
        Member::bitfield("col", color, 480, 3),
        Member::bitfield("on", uint, 483, 1),
        Member::new("irq_mask", uint, 512),
        Member::new("c", schar, 544),
        Member::new("e", empty, 552),
        Member::new("none", none, 552),
        Member::new("w", wide, 576),
    ];
    let s = b.add_struct("kinds", 80, &members).unwrap();
    let va = b.add_var("a", int, Linkage::Global).unwrap();
    let vb = b.add_var("b", uint, Linkage::Static).unwrap();
    let sec = b
        .add_datasec(
            ".data",
            8,
            &[VarSecinfo { ty: va, offset: 0, size: 4 }, VarSecinfo { ty: vb, offset: 4, size: 4 }],
        )
        .unwrap();
    let func_proto = b.add_func_proto(int, &[]).unwrap();
    let func = b.add_func("main", func_proto, Linkage::Global).unwrap();
    let fwd = b.add_fwd("opaque", false).unwrap();
    let btf = Btf::from_bytes(b.encode()).unwrap();

    let mut v = vec![0u8; 80];
    v[0..4].copy_from_slice(&(-0.25f32).to_ne_bytes());
    v[8..16].copy_from_slice(&1.5f64.to_ne_bytes());
    v[16..32].copy_from_slice(&7u128.to_ne_bytes());
    v[32..48].copy_from_slice(&(-2i128).to_ne_bytes());
    v[48..56].copy_from_slice(b"a\"b\\\0zz\0");
    v[56..60].copy_from_slice(b"abc\0");
    v[60] = 7 | 1 << 3; // col = BLUE, on = 1
    v[64..68].copy_from_slice(&0xffu32.to_ne_bytes());
    v[68] = 0xff;
    v[72..80].copy_from_slice(&u64::MAX.to_ne_bytes());
    assert_eq!(
        btf.format_value(s, &v).unwrap(),
        "{ .f = -0.25, .d = 1.5, .ld = 0x7, .big = 0xfffffffffffffffffffffffffffffffe, .quote = \"a\\\"b\\\\\", \
         .typedefd = [97, 98, 99, 0], .col = BLUE, .on = 1, .irq_mask = 0xff, .c = -1, .e = {}, .none = [], .w = TOP }"
    );
    let mut data = 5i32.to_ne_bytes().to_vec();
    data.extend(6u32.to_ne_bytes());
    assert_eq!(btf.format_value(sec, &data).unwrap(), "{ .a = 5, .b = 6 }");
    assert_eq!(btf.format_value(vb, &data[4..]).unwrap(), "6");
    assert_eq!(btf.format_value(float, &f32::NAN.to_ne_bytes()).unwrap(), "NaN");
    // Kinds without a value.
    for id in [func, func_proto, fwd, TypeId::VOID] {
        assert!(btf.format_value(id, &[0; 64]).is_err(), "{id}");
    }
}

#[test]
fn hostile_btf_gives_errors_not_panics_or_hangs() {
    let mut b = BtfBuilder::new();
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
    // A typedef loop: [2] -> [3] -> [2].
    let t1 = b.add_typedef("loop_a", TypeId(3)).unwrap();
    b.add_typedef("loop_b", t1).unwrap();
    // Zero-sized nests: 2^32 - 1 empty structs, 65535 times, 65535 times over.
    let empty = b.add_struct("z", 0, &[]).unwrap();
    let many = b.add_array(empty, uint, u32::MAX).unwrap();
    let wide: Vec<Member<'_>> = (0..0xffff).map(|_| Member::new("m", many, 0)).collect();
    let inner = b.add_struct("inner", 0, &wide).unwrap();
    let outer: Vec<Member<'_>> = (0..0xffff).map(|_| Member::new("i", inner, 0)).collect();
    let outer = b.add_struct("outer", 0, &outer).unwrap();
    // A bitfield wider than its bytes, a member past the end of its struct.
    let odd = b.add_struct("odd", 4, &[Member::bitfield("wide", uint, 0, 255), Member::new("past", uint, 64)]).unwrap();
    // 4 GiB of nothing: as `long: 64;` lines that would be 5 GB of text.
    let vast = b.add_struct("vast", u32::MAX, &[Member::new("x", uint, 0)]).unwrap();
    let btf = Btf::from_bytes(b.encode()).unwrap();
    let start = std::time::Instant::now();
    let err = btf.c_decl(vast).unwrap_err();
    assert!(err.to_string().contains("too large to write as padding"), "{err}");
    assert!(btf.c_decl(TypeId(9999)).is_err());
    assert!(matches!(btf.format_value(t1, &[0; 8]), Err(BtfError::TooDeep { .. })));
    assert!(btf.format_value(outer, &[]).is_err());
    assert!(btf.format_value(odd, &[0xff; 4]).is_err());
    let small = btf.format_value(many, &[]).unwrap();
    assert!(small.starts_with("[{}, {}, ") && small.ends_with(", …]"), "{small}");
    // C declarations of the same types: errors for the loop, no hang for the rest.
    assert!(btf.c_decl(t1).is_ok(), "a typedef's own declaration names its target");
    assert!(btf.c_dump_with_deps(&[t1]).is_err());
    assert!(btf.c_dump_with_deps(&[outer, odd]).is_ok());
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "took {:?}", start.elapsed());
}

/// BTF exercising the C writer: self-reference, a cycle through pointers, function pointers,
/// arrays of pointers, modifiers, signed / 64-bit / 1-byte enums, duplicate names, padding,
/// bitfields, packing, anonymous members and forward declarations.
fn c_btf() -> (Btf, Vec<(&'static str, TypeId)>) {
    let mut b = BtfBuilder::new();
    let int = b.add_int("int", 4, IntEncoding::Signed, 32).unwrap();
    let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32).unwrap();
    let char_ = b.add_int("char", 1, IntEncoding::Signed, 8).unwrap();
    let long = b.add_int("long", 8, IntEncoding::Signed, 64).unwrap();
    let list_fwd = TypeId(b.next_id().0 + 1);
    let list_ptr = b.add_ptr(list_fwd).unwrap();
    let list =
        b.add_struct("list", 16, &[Member::new("next", list_ptr, 0), Member::new("prev", list_ptr, 64)]).unwrap();
    assert_eq!(list, list_fwd);
    // struct a { struct b *pb; }; struct b { struct a sa; int x; };
    let b_id = TypeId(b.next_id().0 + 2);
    let pb = b.add_ptr(b_id).unwrap();
    let a = b.add_struct("a", 8, &[Member::new("pb", pb, 0)]).unwrap();
    let bb = b.add_struct("b", 16, &[Member::new("sa", a, 0), Member::new("x", int, 64)]).unwrap();
    assert_eq!(bb, b_id);
    let void_ptr = b.add_ptr(TypeId::VOID).unwrap();
    let handler_proto = b
        .add_func_proto(int, &[Param::new("ctx", void_ptr), Param::new("flags", uint), Param::new("", TypeId::VOID)])
        .unwrap();
    let handler_ptr = b.add_ptr(handler_proto).unwrap();
    let handler_t = b.add_typedef("handler_t", handler_ptr).unwrap();
    let cb_proto = b.add_func_proto(int, &[Param::new("", int)]).unwrap();
    let cb = b.add_ptr(cb_proto).unwrap();
    let cchar = b.add_const(char_).unwrap();
    let name = b.add_ptr(cchar).unwrap();
    let char_ptr = b.add_ptr(char_).unwrap();
    let argv = b.add_array(char_ptr, uint, 4).unwrap();
    let void_proto = b.add_func_proto(int, &[]).unwrap();
    let void_fn = b.add_ptr(void_proto).unwrap();
    let table = b.add_array(void_fn, uint, 2).unwrap();
    let int_ptr = b.add_ptr(int).unwrap();
    let restricted = b.add_restrict(int_ptr).unwrap();
    let vint = b.add_volatile(int).unwrap();
    let ops = b
        .add_struct(
            "ops",
            88,
            &[
                Member::new("h", handler_t, 0),
                Member::new("cb", cb, 64),
                Member::new("name", name, 128),
                Member::new("argv", argv, 192),
                Member::new("table", table, 448),
                Member::new("p", restricted, 576),
                Member::new("v", vint, 640),
            ],
        )
        .unwrap();
    let sign = b.add_enum("sign", 4, true, &[EnumValue::new("NEGV", -1), EnumValue::new("POS", 1)]).unwrap();
    let big = b.add_enum64("big64", 8, false, &[EnumValue::new("HUGE", 1u64 << 40)]).unwrap();
    let tiny = b.add_enum("tiny", 1, false, &[EnumValue::new("T0", 0), EnumValue::new("T1", 1)]).unwrap();
    let dup1 = b.add_struct("dup", 4, &[Member::new("x", int, 0)]).unwrap();
    let dup2 = b.add_struct("dup", 8, &[Member::new("y", long, 0)]).unwrap();
    let packed = b.add_struct("packed_s", 5, &[Member::new("c", char_, 0), Member::new("i", int, 8)]).unwrap();
    let bits = b
        .add_struct(
            "bits",
            12,
            &[
                Member::bitfield("a", uint, 0, 3),
                Member::bitfield("b", uint, 3, 5),
                Member::bitfield("c", uint, 32, 4),
                Member::new("d", int, 64),
            ],
        )
        .unwrap();
    let gap = b.add_struct("gap", 16, &[Member::new("a", int, 0), Member::new("b", int, 64)]).unwrap();
    let anon_s = b.add_struct("", 8, &[Member::new("lo", int, 0), Member::new("hi", int, 32)]).unwrap();
    let anon_e = b.add_enum("", 4, false, &[EnumValue::new("ANON_A", 0)]).unwrap();
    let tiny_m = b
        .add_struct(
            "holder",
            24,
            &[
                Member::new("t", tiny, 0),
                Member::new("", anon_s, 32),
                Member::new("kind", anon_e, 96),
                Member::new("both", dup2, 128),
            ],
        )
        .unwrap();
    let fu = b.add_fwd("fu", true).unwrap();
    let fu_ptr = b.add_ptr(fu).unwrap();
    let uses = b.add_struct("usesfwd", 8, &[Member::new("p", fu_ptr, 0)]).unwrap();
    let btf = Btf::from_bytes(b.encode()).unwrap();
    let named = vec![
        ("list", list),
        ("a", a),
        ("b", bb),
        ("handler_t", handler_t),
        ("ops", ops),
        ("sign", sign),
        ("big64", big),
        ("tiny", tiny),
        ("dup", dup1),
        ("dup___2", dup2),
        ("packed_s", packed),
        ("bits", bits),
        ("gap", gap),
        ("holder", tiny_m),
        ("fu", fu),
        ("usesfwd", uses),
        ("anon_s", anon_s),
    ];
    (btf, named)
}

#[test]
fn c_declarations_of_every_kind() {
    let (btf, named) = c_btf();
    let id = |n: &str| named.iter().find(|(name, _)| *name == n).unwrap().1;
    let decl = |n: &str| btf.c_decl(id(n)).unwrap();
    assert_eq!(decl("list"), "struct list {\n\tstruct list *next;\n\tstruct list *prev;\n};");
    assert_eq!(decl("handler_t"), "typedef int (*handler_t)(void *ctx, unsigned int flags, ...);");
    assert_eq!(
        decl("ops"),
        "struct ops {\n\thandler_t h;\n\tint (*cb)(int);\n\tconst char *name;\n\tchar *argv[4];\n\
         \tint (*table[2])(void);\n\tint * restrict p;\n\tvolatile int v;\n};"
    );
    assert_eq!(decl("sign"), "enum sign {\n\tNEGV = -1,\n\tPOS = 1,\n};");
    assert_eq!(decl("big64"), "enum big64 {\n\tHUGE = 1099511627776ULL,\n};");
    assert_eq!(decl("tiny"), "enum tiny {\n\tT0 = 0,\n\tT1 = 1,\n} __attribute__((mode(byte)));");
    assert_eq!(decl("packed_s"), "struct packed_s {\n\tchar c;\n\tint i;\n} __attribute__((packed));");
    assert_eq!(
        decl("bits"),
        "struct bits {\n\tunsigned int a: 3;\n\tunsigned int b: 5;\n\tint: 24;\n\tunsigned int c: 4;\n\tint d;\n};"
    );
    assert_eq!(decl("gap"), "struct gap {\n\tint a;\n\tlong: 0;\n\tint b;\n\tlong: 0;\n};");
    assert_eq!(
        decl("holder"),
        "struct holder {\n\tenum tiny t;\n\tstruct {\n\t\tint lo;\n\t\tint hi;\n\t};\n\tenum {\n\t\tANON_A = 0,\n\t} kind;\n\
         \tstruct dup both;\n};"
    );
    assert_eq!(decl("fu"), "union fu;");
    assert_eq!(btf.c_decl(TypeId::VOID).unwrap(), "void");
    // Types without a declaration of their own are written as in a cast.
    let ops = btf.type_by_id(id("ops")).unwrap();
    let casts: Vec<String> = ops.members()[1..].iter().map(|m| btf.c_decl(m.ty).unwrap()).collect();
    assert_eq!(
        casts,
        ["int (*)(int)", "const char *", "char *[4]", "int (*[2])(void)", "int * restrict", "volatile int"]
    );
}

#[test]
fn a_c_dump_orders_forward_declares_renames_and_compiles_with_the_btf_layout() {
    let (btf, named) = c_btf();
    let all = btf.c_dump_all().unwrap();
    // `struct a` points at `struct b`, which embeds `struct a`: b is forward-declared.
    let pos = |s: &str| all.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{all}"));
    assert!(pos("struct b;\n") < pos("struct a {") && pos("struct a {") < pos("struct b {"), "{all}");
    // The second `struct dup` is renamed, and its users follow.
    assert!(all.contains("struct dup___2 {\n\tlong y;\n};") && all.contains("\tstruct dup___2 both;"), "{all}");
    assert!(all.contains("union fu;\n"), "{all}");
    assert!(all.starts_with("#ifndef __VMLINUX_H__\n") && all.ends_with("#endif /* __VMLINUX_H__ */\n"));
    // Closure of one type: only what it needs.
    let holder = named.iter().find(|(n, _)| *n == "holder").unwrap().1;
    let some = btf.c_dump_with_deps(&[holder]).unwrap();
    assert!(some.contains("struct holder {") && some.contains("enum tiny {") && !some.contains("struct ops"), "{some}");

    let mut asserts = String::new();
    for (name, id) in &named {
        let t = btf.type_by_id(*id).unwrap();
        let kw = match t.kind() {
            Kind::Struct if !t.name.is_empty() => "struct",
            _ => continue,
        };
        writeln!(asserts, "_Static_assert(sizeof({kw} {name}) == {}, \"{name}\");", t.size().unwrap()).unwrap();
        for m in t.members().iter().filter(|m| !m.name.is_empty() && m.bitfield_size == 0) {
            let (f, off) = (m.name, m.bit_offset / 8);
            writeln!(asserts, "_Static_assert(__builtin_offsetof({kw} {name}, {f}) == {off}, \"{name}.{f}\");")
                .unwrap();
        }
    }
    writeln!(asserts, "_Static_assert(sizeof(enum tiny) == 1, \"tiny\");").unwrap();
    let c = format!("#include \"header.h\"\n{asserts}");
    let Some(result) = compile("builder BTF as C", &all, &c) else { return };
    result.unwrap_or_else(|e| panic!("does not compile:\n{e}\n{all}"));
}
