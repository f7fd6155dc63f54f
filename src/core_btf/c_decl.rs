//! C declarations of BTF types, written as `bpftool btf dump file … format c` writes them
//! (libbpf's `btf_dump.c`): [`Btf::c_decl`] for one type, [`Btf::c_dump_with_deps`] and
//! [`Btf::c_dump_all`] for a header that compiles. A dump of vmlinux equals libbpf 1.7's byte for
//! byte (`benches/btf.rs` asserts it) and bpftool 7.1's line for line but for the enum sizes
//! below (`tests/btf_c.rs`).
//!
//! A dump orders types the way C needs them: a struct embedded in another (or reached only
//! through anonymous types) is defined first, a struct reached through a pointer only needs
//! `struct name;` — the walk ([`Dumper::order`]) marks each dependency *strong* or *weak* and
//! queues named definitions in dependency order; emitting ([`Dumper::emit`]) then writes
//! forward declarations where a definition is still in progress (a cycle through pointers).
//! Names that repeat get `___N` suffixes in the order they are first written (struct, union and
//! enum tags share one namespace; typedef names and enumerators another). Gaps between members
//! become unnamed bitfields (`long: 64;`, `int: 0;`), and a struct whose members are not
//! naturally aligned gets `__attribute__((packed))`.
//!
//! One deliberate difference from bpftool 7.1 (whose libbpf 1.1 predates it): an enum of 1 byte
//! (or of 8 bytes whose values fit 32 bits) is written with `__attribute__((mode(byte)))`
//! (`mode(word)`), as libbpf 1.7 does. Without it C makes the enum 4 bytes and every struct
//! embedding it (`struct inode`, through `enum rw_hint`) gets the wrong layout.
//!
//! Untrusted BTF cannot make it recurse without bound or loop: walks are depth-limited and
//! chains of modifiers are length-limited ([`BtfError::TooDeep`] or [`BtfError::Unexpected`]).

use super::types::{Kind, Type, TypeDetail, TypeId};
use super::{Btf, BtfError};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

mod syntax;

/// How deep the ordering and emitting walks may nest (structs in structs, pointer chains).
const MAX_NESTING: usize = 512;
/// Pointer size of the target (BPF and x86-64): `long` padding is 64 bits.
const PTR_SIZE: u32 = 8;

const HEADER: &str = "#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n\
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif\n\n";
const FOOTER: &str =
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif /* __VMLINUX_H__ */\n";

/// Typedefs GCC emits to its internal types, aliased to standard ones (as libbpf does).
const MISSING_BASE_TYPES: [(&str, &str); 4] = [
    ("__Poly8_t", "unsigned char"),
    ("__Poly16_t", "unsigned short"),
    ("__Poly64_t", "unsigned long long"),
    ("__Poly128_t", "unsigned __int128"),
];

impl Btf {
    /// The C declaration of one type, its dependencies not expanded: `struct task_struct {…};`
    /// (anonymous members inline, named ones as `struct name`), `enum e {…};`, `typedef … t;`,
    /// `struct fwd;`, `int f(int a);` for a FUNC, `static int v;` for a VAR; for a type without
    /// a declaration of its own (INT, PTR, ARRAY, modifiers, FUNC_PROTO) the type as C writes it
    /// in a cast (`const char *`, `int[16]`, `int (*)(void *)`).
    ///
    /// ```
    /// use bpfkit::core_btf::{Btf, BtfBuilder, IntEncoding, Member};
    /// let mut b = BtfBuilder::new();
    /// let int = b.add_int("int", 4, IntEncoding::Signed, 32)?;
    /// let uint = b.add_int("unsigned int", 4, IntEncoding::Unsigned, 32)?;
    /// let node = b.next_id().0 + 1;
    /// let next = b.add_ptr(bpfkit::core_btf::TypeId(node))?;
    /// let members = [Member::new("next", next, 0), Member::bitfield("flags", uint, 64, 3), Member::new("v", int, 96)];
    /// let node = b.add_struct("node", 16, &members)?;
    /// let btf = Btf::from_bytes(b.encode())?;
    /// assert_eq!(
    ///     btf.c_decl(node)?,
    ///     "struct node {\n\tstruct node *next;\n\tunsigned int flags: 3;\n\tint v;\n};"
    /// );
    /// assert_eq!(btf.c_decl(next)?, "struct node *");
    /// # Ok::<(), bpfkit::core_btf::BtfError>(())
    /// ```
    pub fn c_decl(&self, id: TypeId) -> Result<String, BtfError> {
        let mut d = Dumper::new(self);
        let t = d.ty(id)?;
        match &t.detail {
            TypeDetail::Struct { .. } | TypeDetail::Union { .. } => d.struct_def(&t, 0, 0)?,
            TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. } => d.enum_def(&t, 0)?,
            TypeDetail::Fwd { .. } => d.fwd_def(&t),
            TypeDetail::Typedef { .. } => d.typedef_def(&t, 0, 0)?,
            TypeDetail::Func { proto, linkage } => {
                if *linkage == super::Linkage::Static {
                    d.out.push_str("static ");
                }
                d.type_decl(*proto, t.name, 0, 0)?;
            }
            TypeDetail::Var { ty, linkage } => {
                d.out.push_str(match linkage {
                    super::Linkage::Static => "static ",
                    super::Linkage::Global => "",
                    super::Linkage::Extern => "extern ",
                });
                d.type_decl(*ty, t.name, 0, 0)?;
            }
            TypeDetail::Datasec { size, vars } => {
                let _ = write!(d.out, "/* section {}: {} variables, {size} bytes */", t.name, vars.len());
                return Ok(d.out);
            }
            TypeDetail::DeclTag { target, component_idx, attr } => {
                let tag = if *attr { t.name.to_string() } else { format!("btf_decl_tag(\"{}\")", t.name) };
                let what = if *component_idx < 0 { String::new() } else { format!(" component {component_idx}") };
                let _ = write!(d.out, "/* __attribute__(({tag})) on {target}{what} */");
                return Ok(d.out);
            }
            _ => {
                d.type_decl(id, "", 0, 0)?;
                return Ok(d.out);
            }
        }
        d.out.push(';');
        Ok(d.out)
    }

    /// The declaration of one member or variable `name` of type `id` as C writes it inside a
    /// struct: `char comm[16]`, `struct mm_struct *mm`, `void (*fn)(int)` (no `;`).
    pub fn c_member_decl(&self, id: TypeId, name: &str) -> Result<String, BtfError> {
        let mut d = Dumper::new(self);
        d.type_decl(id, name, 0, 0)?;
        Ok(d.out)
    }

    /// A header defining `roots` and every type they need, in an order that compiles, with the
    /// `#ifndef __VMLINUX_H__` guard and `preserve_access_index` pragma bpftool writes around it
    /// (bpftool's `btf dump … root_id N format c`).
    pub fn c_dump_with_deps(&self, roots: &[TypeId]) -> Result<String, BtfError> {
        let mut d = Dumper::new(self);
        d.out.push_str(HEADER);
        for &id in roots {
            d.dump_type(id)?;
        }
        d.out.push_str(FOOTER);
        Ok(d.out)
    }

    /// Every type of this BTF as a compilable header: what
    /// `bpftool btf dump file /sys/kernel/btf/vmlinux format c` prints, line for line.
    pub fn c_dump_all(&self) -> Result<String, BtfError> {
        let roots: Vec<TypeId> = self.ids().collect();
        self.c_dump_with_deps(&roots)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Walk {
    #[default]
    Not,
    Doing,
    Done,
}

/// Per-type state of a dump (libbpf's `btf_dump_type_aux_state`).
#[derive(Clone, Copy, Default)]
struct State {
    order: Walk,
    emit: Walk,
    fwd_emitted: bool,
    name_resolved: bool,
    /// Some other type refers to this one (tells a top-level anonymous enum from an inline one).
    referenced: bool,
}

/// One dump session: the states, the names handed out so far, and the text.
struct Dumper<'b> {
    btf: &'b Btf,
    types: Vec<Option<Rc<Type<'b>>>>,
    state: Vec<State>,
    /// Names with a `___N` suffix, for types whose name was taken when they were first written.
    renamed: Vec<Option<Box<str>>>,
    /// struct/union/enum tags → times seen.
    type_names: HashMap<&'b str, usize, FastHash>,
    /// typedef names and enumerators → times seen.
    ident_names: HashMap<&'b str, usize, FastHash>,
    /// `align_of` per id, `u32::MAX` until computed.
    aligns: Vec<u32>,
    /// Whether `State::referenced` has been computed.
    marked: bool,
    queue: Vec<TypeId>,
    out: String,
}

fn pfx(lvl: usize) -> &'static str {
    const TABS: &str = "\t\t\t\t\t\t\t\t\t\t\t\t\t";
    &TABS[..lvl.min(TABS.len())]
}

fn too_deep(id: TypeId) -> BtfError {
    BtfError::Unexpected {
        id: id.0,
        kind: Kind::Void,
        name: String::new(),
        what: format!("types nest deeper than {MAX_NESTING} levels (a loop?)"),
    }
}

fn is_composite(t: &Type<'_>) -> bool {
    matches!(t.detail, TypeDetail::Struct { .. } | TypeDetail::Union { .. })
}

impl<'b> Dumper<'b> {
    fn new(btf: &'b Btf) -> Dumper<'b> {
        let n = btf.last_id().0 as usize + 1;
        let mut d = Dumper {
            btf,
            types: vec![None; n],
            state: vec![State::default(); n],
            renamed: vec![None; n],
            type_names: HashMap::default(),
            ident_names: HashMap::default(),
            aligns: vec![u32::MAX; n],
            marked: false,
            queue: Vec::new(),
            out: String::new(),
        };
        d.state[0].order = Walk::Done;
        d.state[0].emit = Walk::Done;
        d
    }

    /// A decoded type, cached.
    fn ty(&mut self, id: TypeId) -> Result<Rc<Type<'b>>, BtfError> {
        let last = self.btf.last_id().0;
        let slot = self.types.get_mut(id.0 as usize).ok_or(BtfError::NoSuchId { id: id.0, last })?;
        if let Some(t) = slot {
            return Ok(Rc::clone(t));
        }
        let t = Rc::new(self.btf.type_by_id(id)?);
        self.types[id.0 as usize] = Some(Rc::clone(&t));
        Ok(t)
    }

    fn st(&mut self, id: TypeId) -> &mut State {
        // Every id reaching here was decoded by `ty` first, so it is in range.
        let last = self.state.len() - 1;
        &mut self.state[(id.0 as usize).min(last)]
    }

    /// Mark every type another type refers to (once, before the first ordering walk). As in
    /// libbpf, a prototype's return type does not count.
    fn mark_referenced(&mut self) -> Result<(), BtfError> {
        if self.marked {
            return Ok(());
        }
        self.marked = true;
        let last = self.btf.last_id().0;
        let mut refs: Vec<TypeId> = Vec::new();
        for id in (1..=last).map(TypeId) {
            refs.clear();
            let raw = self.btf.raw(id)?;
            match raw.kind {
                // Kinds referring to several types are decoded (and kept: the dump needs them).
                Kind::Array | Kind::Struct | Kind::Union | Kind::FuncProto | Kind::Datasec => {
                    match &self.ty(id)?.detail {
                        TypeDetail::Array { elem, index, .. } => refs.extend([*elem, *index]),
                        TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. } => {
                            refs.extend(members.iter().map(|m| m.ty))
                        }
                        TypeDetail::FuncProto { params, .. } => refs.extend(params.iter().map(|p| p.ty)),
                        TypeDetail::Datasec { vars, .. } => refs.extend(vars.iter().map(|v| v.ty)),
                        _ => {}
                    }
                }
                // `struct btf_type`'s `type` field, without decoding the rest.
                Kind::Ptr
                | Kind::Typedef
                | Kind::Volatile
                | Kind::Const
                | Kind::Restrict
                | Kind::Func
                | Kind::Var
                | Kind::DeclTag
                | Kind::TypeTag => refs.push(TypeId(raw.size_type)),
                Kind::Void | Kind::Int | Kind::Enum | Kind::Enum64 | Kind::Fwd | Kind::Float => {}
            }
            for &r in &refs {
                if let Some(s) = self.state.get_mut(r.0 as usize) {
                    s.referenced = true;
                }
            }
        }
        Ok(())
    }

    /// Order `id` and its dependencies, then write every definition queued.
    fn dump_type(&mut self, id: TypeId) -> Result<(), BtfError> {
        self.mark_referenced()?;
        // Functions, variables, sections and tags have no C definition in a dump.
        if matches!(self.btf.kind_of(id)?, Kind::Func | Kind::Var | Kind::Datasec | Kind::DeclTag) {
            return Ok(());
        }
        self.ty(id)?;
        self.queue.clear();
        self.order(id, false, 0)?;
        let queue = std::mem::take(&mut self.queue);
        for &q in &queue {
            self.emit(q, TypeId::VOID, 0)?;
        }
        self.queue = queue;
        Ok(())
    }

    /// Topological ordering (libbpf's `btf_dump_order_type`): `Ok(true)` when `id` must be
    /// fully defined before whatever reached it (a strong link), `Ok(false)` when a forward
    /// declaration will do.
    fn order(&mut self, id: TypeId, through_ptr: bool, depth: usize) -> Result<bool, BtfError> {
        if depth > MAX_NESTING {
            return Err(too_deep(id));
        }
        let t = self.ty(id)?;
        let state = self.st(id).order;
        if state == Walk::Done {
            return Ok(true);
        }
        if state == Walk::Doing {
            if is_composite(&t) && through_ptr && !t.name.is_empty() {
                return Ok(false);
            }
            return Err(BtfError::Unexpected {
                id: id.0,
                kind: t.kind(),
                name: t.name.to_string(),
                what: "unsatisfiable type cycle".into(),
            });
        }
        match &t.detail {
            TypeDetail::Void | TypeDetail::Int { .. } | TypeDetail::Float { .. } => {
                self.st(id).order = Walk::Done;
                Ok(false)
            }
            TypeDetail::Ptr { target } => {
                let strong = self.order(*target, true, depth + 1)?;
                self.st(id).order = Walk::Done;
                Ok(strong)
            }
            TypeDetail::Array { elem, .. } => self.order(*elem, false, depth + 1),
            TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. } => {
                if through_ptr && !t.name.is_empty() {
                    return Ok(false);
                }
                self.st(id).order = Walk::Doing;
                for m in members {
                    self.order(m.ty, false, depth + 1)?;
                }
                if !t.name.is_empty() {
                    self.queue.push(id);
                }
                self.st(id).order = Walk::Done;
                Ok(true)
            }
            TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. } | TypeDetail::Fwd { .. } => {
                if !t.name.is_empty() || !self.st(id).referenced {
                    self.queue.push(id);
                }
                self.st(id).order = Walk::Done;
                Ok(true)
            }
            TypeDetail::Typedef { target } => {
                let strong = self.order(*target, through_ptr, depth + 1)?;
                if through_ptr && !strong {
                    return Ok(false);
                }
                self.queue.push(id);
                self.st(id).order = Walk::Done;
                Ok(true)
            }
            TypeDetail::Volatile { target }
            | TypeDetail::Const { target }
            | TypeDetail::Restrict { target }
            | TypeDetail::TypeTag { target, .. } => self.order(*target, through_ptr, depth + 1),
            TypeDetail::FuncProto { ret, params } => {
                let mut strong = self.order(*ret, through_ptr, depth + 1)?;
                for p in params {
                    strong |= self.order(p.ty, through_ptr, depth + 1)?;
                }
                Ok(strong)
            }
            TypeDetail::Func { .. }
            | TypeDetail::Var { .. }
            | TypeDetail::Datasec { .. }
            | TypeDetail::DeclTag { .. } => {
                self.st(id).order = Walk::Done;
                Ok(false)
            }
        }
    }

    /// Write the definitions `id` needs and then `id`'s own (libbpf's `btf_dump_emit_type`);
    /// `cont` is the struct being defined, when inside one (0 at top level).
    fn emit(&mut self, id: TypeId, cont: TypeId, depth: usize) -> Result<(), BtfError> {
        if depth > MAX_NESTING {
            return Err(too_deep(id));
        }
        let t = self.ty(id)?;
        let s = *self.st(id);
        if s.emit == Walk::Done {
            return Ok(());
        }
        let top_level = cont == TypeId::VOID;
        if s.emit == Walk::Doing {
            if s.fwd_emitted {
                return Ok(());
            }
            match &t.detail {
                TypeDetail::Struct { .. } | TypeDetail::Union { .. } => {
                    // A reference to the struct being defined, or an anonymous loop: nothing to write.
                    if id == cont || t.name.is_empty() {
                        return Ok(());
                    }
                    self.struct_fwd(&t);
                    self.out.push_str(";\n\n");
                    self.st(id).fwd_emitted = true;
                }
                TypeDetail::Typedef { .. } => {
                    if !is_builtin(&t) {
                        self.typedef_def(&t, 0, depth)?;
                        self.out.push_str(";\n\n");
                    }
                    self.st(id).fwd_emitted = true;
                }
                _ => {}
            }
            return Ok(());
        }
        match &t.detail {
            TypeDetail::Int { .. } => {
                if let Some((_, alias)) = MISSING_BASE_TYPES.iter().find(|(n, _)| *n == t.name) {
                    let name = self.type_name(&t).to_string();
                    let _ = write!(self.out, "typedef {alias} {name};\n\n");
                }
                self.st(id).emit = Walk::Done;
            }
            TypeDetail::Enum { .. } | TypeDetail::Enum64 { .. } => {
                if top_level {
                    self.enum_def(&t, 0)?;
                    self.out.push_str(";\n\n");
                }
                self.st(id).emit = Walk::Done;
            }
            TypeDetail::Ptr { target }
            | TypeDetail::Volatile { target }
            | TypeDetail::Const { target }
            | TypeDetail::Restrict { target }
            | TypeDetail::TypeTag { target, .. } => self.emit(*target, cont, depth + 1)?,
            TypeDetail::Array { elem, .. } => self.emit(*elem, cont, depth + 1)?,
            TypeDetail::Fwd { .. } => {
                self.fwd_def(&t);
                self.out.push_str(";\n\n");
                self.st(id).emit = Walk::Done;
            }
            TypeDetail::Typedef { target } => {
                self.st(id).emit = Walk::Doing;
                self.emit(*target, id, depth + 1)?;
                // The typedef doubles as its own forward declaration: written once.
                if !self.st(id).fwd_emitted && !is_builtin(&t) {
                    self.typedef_def(&t, 0, depth)?;
                    self.out.push_str(";\n\n");
                }
                self.st(id).emit = Walk::Done;
            }
            TypeDetail::Struct { members, .. } | TypeDetail::Union { members, .. } => {
                self.st(id).emit = Walk::Doing;
                // Defining it writes every member's type, so their dependencies come first.
                if top_level || t.name.is_empty() {
                    let inner = if t.name.is_empty() { cont } else { id };
                    for m in members {
                        self.emit(m.ty, inner, depth + 1)?;
                    }
                } else if !self.st(id).fwd_emitted && id != cont {
                    self.struct_fwd(&t);
                    self.out.push_str(";\n\n");
                    self.st(id).fwd_emitted = true;
                }
                if top_level {
                    self.struct_def(&t, 0, depth)?;
                    self.out.push_str(";\n\n");
                    self.st(id).emit = Walk::Done;
                } else {
                    self.st(id).emit = Walk::Not;
                }
            }
            TypeDetail::FuncProto { ret, params } => {
                self.emit(*ret, cont, depth + 1)?;
                for p in params {
                    self.emit(p.ty, cont, depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A struct/union/enum tag, with a `___N` suffix when the name was taken before.
    fn type_name(&mut self, t: &Type<'b>) -> &str {
        self.resolve_name(t, false)
    }

    /// A typedef name, with a `___N` suffix when the name was taken before.
    fn ident_name(&mut self, t: &Type<'b>) -> &str {
        self.resolve_name(t, true)
    }

    fn resolve_name(&mut self, t: &Type<'b>, ident: bool) -> &str {
        let idx = t.id.0 as usize;
        if t.name.is_empty() || idx >= self.state.len() {
            return t.name;
        }
        if !self.state[idx].name_resolved {
            self.state[idx].name_resolved = true;
            let bare = matches!(t.detail, TypeDetail::Fwd { .. })
                || matches!(&t.detail, TypeDetail::Enum { values, .. } if values.is_empty());
            if !bare {
                let names = if ident { &mut self.ident_names } else { &mut self.type_names };
                let n = names.entry(t.name).or_insert(0);
                *n += 1;
                if *n > 1 {
                    self.renamed[idx] = Some(format!("{}___{n}", t.name).into_boxed_str());
                }
            }
        }
        self.renamed[idx].as_deref().unwrap_or(t.name)
    }
}

/// FxHash (rustc's hasher) for the name tables: names are not attacker-chosen keys here, and
/// SipHash was a tenth of a full dump's time.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FastHash = BuildHasherDefault<Fx>;

/// `__builtin_va_list` is the compiler's own: its typedef is never written.
fn is_builtin(t: &Type<'_>) -> bool {
    t.name == "__builtin_va_list"
}
