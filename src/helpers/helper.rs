//! The helper table's types: a helper's signature (return and argument C types, each with a
//! kind the patterns and the REPL reason about) and [`Helper`], which joins the id from
//! [`super::ids`], the signature from [`super::prototypes`] and the kernel version the helper
//! appeared in. Which program types may call a helper is a question for the running kernel:
//! [`crate::features::Features::helper`] probes it by loading.

use super::ids::HELPER_IDS;
use super::prototypes::SIGNATURES;
use crate::features::KernelVersion;

/// What kind of value an argument takes, as the verifier checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// The program's context pointer (`ctx`, `struct __sk_buff *`, …).
    Ctx,
    /// A map (`ld_imm64 rN, map[NAME]`).
    Map,
    /// A pointer to memory (stack, map value, packet) of a size given by a following `Size`.
    Mem,
    /// A NUL-terminated string or format (read-only memory).
    String,
    /// A pointer to a kernel object type (`struct bpf_spin_lock *`, `struct bpf_dynptr *`, …).
    StructPtr,
    /// A byte count for the preceding memory argument.
    Size,
    /// A subprogram's address (`ld_imm64 rN, func[label]`).
    Callback,
    /// Any other scalar (flags, ids, numbers).
    Scalar,
}

/// What a helper returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetKind {
    /// A pointer that may be NULL: check it before use.
    PtrOrNull,
    /// A number.
    Scalar,
    /// Returns nothing (`void`).
    Void,
}

/// One argument: its C type, name and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// The C type, as written in the prototype (`const void *`).
    pub ty: &'static str,
    /// The parameter's name in the prototype.
    pub name: &'static str,
    /// What kind of value the argument takes.
    pub kind: ArgKind,
}

/// A helper's C prototype, split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelperSig {
    /// The helper's C name (`bpf_map_lookup_elem`).
    pub name: &'static str,
    /// The C return type, as written in the prototype (`void *`, `long`).
    pub ret: &'static str,
    /// What the return value is.
    pub ret_kind: RetKind,
    /// The parameters, in order.
    pub params: &'static [Param],
}

impl HelperSig {
    /// The C prototype: `long bpf_map_update_elem(struct bpf_map *map, const void *key, …)`.
    pub fn prototype(&self) -> String {
        let params: Vec<String> = self.params.iter().map(|p| format!("{}{}{}", p.ty, if p.ty.ends_with('*') { "" } else { " " }, p.name)).collect();
        let sep = if self.ret.ends_with('*') { "" } else { " " };
        format!("{}{sep}{}({})", self.ret, self.name, if params.is_empty() { "void".to_string() } else { params.join(", ") })
    }
}

/// A helper: id, name, signature (when documented) and the kernel version it appeared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Helper {
    /// The `enum bpf_func_id` number.
    pub id: u32,
    /// The helper's name.
    pub name: &'static str,
    /// The C prototype, when known.
    pub sig: Option<&'static HelperSig>,
    /// The kernel version that added the helper, when known.
    pub since: Option<KernelVersion>,
}

fn helper(id: u32, name: &'static str) -> Helper {
    Helper { id, name, sig: SIGNATURES.iter().find(|s| s.name == name), since: crate::features::helper_since(id) }
}

/// Every helper of the kernel's `enum bpf_func_id`, in id order.
pub fn all() -> impl Iterator<Item = Helper> {
    HELPER_IDS.iter().map(|&(id, name)| helper(id, name))
}

/// A helper by name (`bpf_map_lookup_elem`, or without the `bpf_` prefix).
pub fn by_name(name: &str) -> Option<Helper> {
    let full = if name.starts_with("bpf_") { name.to_string() } else { format!("bpf_{name}") };
    HELPER_IDS.iter().find(|(_, n)| *n == full).map(|&(id, n)| helper(id, n))
}

/// A helper by id.
pub fn by_id(id: u32) -> Option<Helper> {
    HELPER_IDS.iter().find(|(i, _)| *i == id).map(|&(i, n)| helper(i, n))
}
