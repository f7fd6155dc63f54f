//! BTF: reading it ([`Btf`]: vmlinux, module split BTF, any blob), writing it ([`BtfBuilder`]),
//! and loading it into the kernel ([`LoadedBtf`], `BPF_BTF_LOAD`). CO-RE relocation will build
//! on this module.
//!
//! * [`types`]: the type model ([`TypeId`], [`Kind`], the decoded view [`Type`]) shared by
//!   reader and builder.
//! * `reader`: parsing a blob — one pass indexes where each type starts; types are decoded on
//!   demand, and the name index is built on the first lookup by name.
//! * `query`: lookups over a parsed [`Btf`] (by name, [`Btf::resolve`], [`Btf::size_of`],
//!   [`Btf::member_offset`], [`Btf::enum_values`]).
//! * `builder`: [`BtfBuilder`], which encodes types into a blob.
//! * `c_decl`: C declarations as bpftool writes them ([`Btf::c_decl`], [`Btf::c_dump_all`]).
//! * `pretty`: raw bytes as a typed value ([`Btf::format_value`]) and types as bpftool's
//!   `[ID] KIND 'name' …` lines ([`Btf::format_type_raw`]).
//! * `load`: [`LoadedBtf`], a blob the kernel accepted, and the kernel's log when it refuses one.
//!
//! BTF read from files is untrusted: every read is bounds-checked, and malformed input gives a
//! [`BtfError`] naming the byte offset or type id, never a panic.
//!
//! # Reading
//! ```no_run
//! use bpfkit::core_btf::{Btf, Kind};
//! let btf = Btf::vmlinux()?;
//! let task = btf.find_by_name_kind("task_struct", Kind::Struct).expect("task_struct");
//! println!("task_struct: {} bytes, pid at bit {}", btf.size_of(task)?, btf.member_offset(task, "pid")?);
//! # Ok::<(), bpfkit::core_btf::BtfError>(())
//! ```
//!
//! # Building and loading: the BTF of a map with an `int` key and a struct value
//! ```
//! use bpfkit::core_btf::{Btf, BtfBuilder, IntEncoding, Member};
//! # fn main() -> Result<(), bpfkit::core_btf::BtfError> {
//! let mut b = BtfBuilder::new();
//! let int = b.add_int("int", 4, IntEncoding::Signed, 32)?;
//! let long = b.add_int("long", 8, IntEncoding::Signed, 64)?;
//! // struct value { int a; long b; }: `b` is 8-aligned, so it starts at bit 64.
//! let value = b.add_struct("value", 16, &[Member::new("a", int, 0), Member::new("b", long, 64)])?;
//!
//! // The blob reads back as written.
//! let blob = b.encode();
//! let btf = Btf::from_bytes(blob.as_slice())?;
//! assert_eq!(btf.size_of(value)?, 16);
//! assert_eq!(btf.member_offset(value, "b")?, 64);
//!
//! // In the kernel (needs root or CAP_BPF): a map whose key and value the BTF describes; the
//! // kernel checks the types' sizes against the map's (`BPF_MAP_CREATE`'s `btf_fd`,
//! // `btf_key_type_id`, `btf_value_type_id`).
//! use bpfkit::maps::{Map, MapSpec, MapType};
//! match b.load() {
//!     Ok(loaded) => {
//!         let spec = MapSpec::new("typed", MapType::Hash, 4, 16, 8).btf(&loaded, int.get(), value.get()).unwrap();
//!         Map::create(&spec).unwrap();
//!     }
//!     Err(e) if e.errno() == Some(libc::EPERM) => {} // not privileged
//!     Err(e) => return Err(e),
//! }
//! # Ok(()) }
//! ```

mod builder;
mod c_decl;
mod explore;
pub mod ext;
mod load;
mod pretty;
mod query;
mod reader;
pub mod relo;
pub mod types;

pub use builder::BtfBuilder;
pub use explore::{AccessHop, AccessPath, MemberRow};
pub use query::MemberAt;
pub use load::LoadedBtf;
pub use reader::Btf;
pub use types::{EnumValue, IntEncoding, Kind, Linkage, Member, Param, Type, TypeDetail, TypeId, VarSecinfo};

use crate::sys::SysError;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading, building or loading BTF.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtfError {
    /// Reading a BTF file (e.g. `/sys/kernel/btf/vmlinux`) failed.
    #[error("reading BTF from {path}: {source}")]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The header or section layout is malformed.
    #[error("BTF header: {0}")]
    Header(String),
    /// A type record is malformed (truncated, unknown kind, bad field).
    #[error("BTF type [{id}] at byte {offset}: {reason}")]
    BadType {
        /// The type's id.
        id: u32,
        /// Byte offset of the record in the BTF blob.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A name offset points outside the string section or at invalid UTF-8.
    #[error("BTF string at offset {offset}: {reason}")]
    BadString {
        /// Byte offset of the name in the string section.
        offset: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No type has this id.
    #[error("no BTF type [{id}] (this BTF has ids up to {last})")]
    NoSuchId {
        /// The id asked for.
        id: u32,
        /// The highest type id in this BTF.
        last: u32,
    },
    /// No type has this name (and kind).
    #[error("no BTF {what} named \"{name}\"")]
    NotFound {
        /// The kind of type looked for.
        what: &'static str,
        /// The name looked for.
        name: String,
    },
    /// A type is not what an operation needs (`STRUCT` without the member, `FUNC` has no size, …).
    #[error("BTF type [{id}] {kind} '{name}': {what}")]
    Unexpected {
        /// The type's id.
        id: u32,
        /// The type's kind.
        kind: Kind,
        /// The type's name.
        name: String,
        /// What the operation needed and did not find.
        what: String,
    },
    /// An access path (`task_struct->mm->arg_start`, [`Btf::access_path`]) that cannot be read
    /// as written.
    #[error("access path \"{expr}\": {what}")]
    BadPath {
        /// The path as given.
        expr: String,
        /// Why it cannot be read, naming the member at fault.
        what: String,
    },
    /// A chain of typedefs, modifiers or arrays longer than 32: a loop in malformed BTF.
    #[error("BTF type [{id}]: chain of referenced types deeper than 32 (a loop?)")]
    TooDeep {
        /// The id the chain starts from.
        id: u32,
    },
    /// A builder argument that cannot be encoded (too many members, offset out of range, …).
    #[error("BTF builder: {0}")]
    Build(String),
    /// The kernel refused the blob; `decisive` is the kernel log's last meaningful line(s).
    #[error("btf_load: {}: {decisive}", errno_name(.source))]
    Rejected {
        /// The kernel log's last meaningful line(s).
        decisive: String,
        /// The whole BTF verifier log.
        log: String,
        /// The `BPF_BTF_LOAD` error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl BtfError {
    /// The errno, when the error came from the kernel.
    pub fn errno(&self) -> Option<i32> {
        match self {
            BtfError::Rejected { source, .. } | BtfError::Io { source, .. } => source.raw_os_error(),
            BtfError::Sys(e) => e.errno(),
            _ => None,
        }
    }
}

/// `EINVAL`, `E2BIG`, … for the errnos BPF_BTF_LOAD returns; `errno N` for others.
pub(crate) fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => crate::sys::errno_name(n).map_or_else(|| format!("errno {n}"), str::to_string),
        None => e.to_string(),
    }
}
