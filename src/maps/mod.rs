//! Maps: creation of every `bpf_map_type`, opening by pin or id, info, pinning, freezing, and the
//! element, batch, per-CPU, typed and memory-mapped access in the submodules. A [`Map`] owns its
//! fd (dropping it closes the fd) and knows its name, type and sizes so every error names it.

mod batch;
mod elem;
mod mmap;
mod typed;
mod types;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

pub use batch::{BatchEntries, BatchOptions};
pub use elem::Keys;
pub use mmap::MappedMap;
pub use typed::{PerCpu, Typed};
pub(crate) use types::kernel_enum; // shared with prog::types
pub use types::{lpm_key, MapFlags, MapType, UpdateFlags};

use crate::insn::MapRef;
use crate::sys::{self, Cmd, MapCreateAttr, MapInfoRaw, PinError, SysError};

/// BTF type ids describing a map's key and value (needed for spin locks, timers, local storage).
#[derive(Clone, Debug)]
pub struct MapBtf {
    /// The loaded BTF object the type ids refer to (`btf_fd` of BPF_MAP_CREATE).
    pub btf_fd: Arc<OwnedFd>,
    /// BTF type id of the key (`btf_key_type_id`).
    pub key_type_id: u32,
    /// BTF type id of the value (`btf_value_type_id`).
    pub value_type_id: u32,
}

/// How to create a map. Build with [`MapSpec::new`] and the setters.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MapSpec {
    pub(crate) name: String,
    pub(crate) map_type: MapType,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
    pub(crate) flags: MapFlags,
    /// Bloom filter: number of hash functions; arena: the fixed user address.
    pub(crate) map_extra: u64,
    pub(crate) numa_node: Option<u32>,
    /// Map-in-map: the inner map template.
    pub(crate) inner_map: Option<Arc<OwnedFd>>,
    pub(crate) btf: Option<MapBtf>,
    /// struct_ops: the id of `bpf_struct_ops_<name>` in vmlinux (or module) BTF.
    pub(crate) btf_vmlinux_value_type_id: u32,
    /// Offload/XDP device maps: the device.
    pub(crate) ifindex: u32,
}

/// What the spec says; fields are set with [`MapSpec::new`] and the setters only (getters are
/// `get_*`, as `std::process::Command`'s, since the setters have the plain names).
impl MapSpec {
    /// The map's name (the kernel keeps the first 15 bytes).
    pub fn get_name(&self) -> &str {
        &self.name
    }
    /// The map type.
    pub fn get_map_type(&self) -> MapType {
        self.map_type
    }
    /// The key size in bytes.
    pub fn get_key_size(&self) -> u32 {
        self.key_size
    }
    /// The value size in bytes.
    pub fn get_value_size(&self) -> u32 {
        self.value_size
    }
    /// The maximum number of entries.
    pub fn get_max_entries(&self) -> u32 {
        self.max_entries
    }
    /// The `map_flags` of BPF_MAP_CREATE.
    pub fn get_flags(&self) -> MapFlags {
        self.flags
    }
}

impl MapSpec {
    /// A spec for a map of `map_type` named `name` with these sizes; the rest is zero or unset.
    pub fn new(name: impl Into<String>, map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> Self {
        MapSpec {
            name: name.into(),
            map_type,
            key_size,
            value_size,
            max_entries,
            flags: MapFlags::default(),
            map_extra: 0,
            numa_node: None,
            inner_map: None,
            btf: None,
            btf_vmlinux_value_type_id: 0,
            ifindex: 0,
        }
    }
    /// `map_flags` of BPF_MAP_CREATE (replaces any flags set before).
    pub fn flags(mut self, flags: MapFlags) -> Self {
        self.flags = flags;
        self
    }
    /// `map_extra` of BPF_MAP_CREATE: the number of hash functions for bloom filters (default 5 in the
    /// kernel when 0), the user-space address for arenas; ignored by other types (kernel 5.16+).
    pub fn map_extra(mut self, extra: u64) -> Self {
        self.map_extra = extra;
        self
    }
    /// `numa_node` of BPF_MAP_CREATE: allocate the map on this NUMA node (sets `MapFlags::NUMA_NODE`).
    pub fn numa_node(mut self, node: u32) -> Self {
        self.numa_node = Some(node);
        self
    }
    /// Map-in-map: `inner` is the template every inner map must match.
    pub fn inner_map(mut self, inner: &Map) -> Result<Self, MapError> {
        let fd = inner.fd.try_clone().map_err(|source| SysError::new(format!("dup({})", inner.describe()), source))?;
        self.inner_map = Some(Arc::new(fd));
        Ok(self)
    }
    /// Key and value types from loaded BTF (`btf` is any fd of a BTF object).
    pub fn btf(mut self, btf: impl AsFd, key_type_id: u32, value_type_id: u32) -> Result<Self, MapError> {
        let fd = sys::dup(btf.as_fd(), &format!("btf for map \"{}\"", self.name))?;
        self.btf = Some(MapBtf { btf_fd: Arc::new(fd), key_type_id, value_type_id });
        Ok(self)
    }
    /// struct_ops: the kernel value type (`bpf_struct_ops_<ops>`). The kernel also wants a
    /// program BTF fd beside it — any loaded BTF: `.btf(fd, 0, 0)`.
    pub fn btf_vmlinux_value_type_id(mut self, id: u32) -> Self {
        self.btf_vmlinux_value_type_id = id;
        self
    }
    /// `map_ifindex` of BPF_MAP_CREATE: the device for offloaded maps; 0 (the default) for none.
    pub fn ifindex(mut self, ifindex: u32) -> Self {
        self.ifindex = ifindex;
        self
    }
}

/// Errors of map operations.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A bpf(2) or other system call failed.
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A key or value buffer has the wrong size for the map; names the map, which (`what`) and both sizes.
    #[error("map \"{map}\": {what} is {got} bytes, the map's {what} size is {want}")]
    WrongSize {
        /// The map's name.
        map: String,
        /// Which buffer: `key`, `value`, …
        what: &'static str,
        /// Bytes given.
        got: usize,
        /// The size the map was created with.
        want: usize,
    },
    /// The map type does not support the operation (e.g. keys of a queue, fds of a hash); names the map.
    #[error("map \"{map}\" ({map_type}): {message}")]
    Unsupported {
        /// The map's name.
        map: String,
        /// The map's type.
        map_type: String,
        /// What is not supported.
        message: String,
    },
    /// Pinning or unpinning failed.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// Memory-mapped access: an element index beyond the mapping; names the map, index and sizes.
    #[error("map \"{map}\": {size} bytes at index {index} are outside the mapping ({len} elements)")]
    OutOfRange {
        /// The map's name.
        map: String,
        /// The element index asked for.
        index: usize,
        /// Bytes asked for at that index.
        size: usize,
        /// Elements in the mapping.
        len: usize,
    },
    /// The fd given to [`Map::from_fd`] does not refer to a map; `what` describes the fd.
    #[error("the fd is not a map ({what})")]
    NotAMap {
        /// What the fd refers to.
        what: String,
    },
    /// The kernel reports a map type this library does not know; `id` is the map's, `raw` the type.
    #[error("map id {id} has type {raw}, which bpfkit does not know")]
    UnknownType {
        /// The map's id.
        id: u32,
        /// The map type number the kernel reports.
        raw: u32,
    },
    /// Walking the keys did not finish after `steps` steps, because the map kept changing.
    #[error("map \"{map}\": iteration did not finish after {steps} steps (the map changed faster than it could be walked)")]
    IterationAborted {
        /// The map's name.
        map: String,
        /// Steps taken before giving up.
        steps: usize,
    },
}

impl MapError {
    /// The errno the kernel answered with, when the kernel refused (`None` when bpfkit refused
    /// before asking it).
    pub fn errno(&self) -> Option<i32> {
        match self {
            MapError::Sys(e) => e.errno(),
            MapError::Pin(e) => e.errno(),
            _ => None,
        }
    }
}

/// What the kernel reports about a map (`struct bpf_map_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MapInfo {
    /// The map's kernel id (`id` of `struct bpf_map_info`).
    pub id: u32,
    /// The map type, `None` when bpfkit does not know `raw_type`.
    pub map_type: Option<MapType>,
    /// The map type as the kernel reports it (`type`).
    pub raw_type: u32,
    /// The map's name (`name`, at most 15 bytes).
    pub name: String,
    /// `key_size`, in bytes.
    pub key_size: u32,
    /// `value_size`, in bytes.
    pub value_size: u32,
    /// `max_entries`.
    pub max_entries: u32,
    /// `map_flags`.
    pub flags: MapFlags,
    /// `map_extra` (bloom filter hash count, arena address; kernel 5.16+).
    pub map_extra: u64,
    /// `ifindex`: the device of an offloaded map, 0 for none.
    pub ifindex: u32,
    /// `btf_id`: the id of the BTF object with the key and value types, 0 for none.
    pub btf_id: u32,
    /// `btf_key_type_id`: the key's type in that BTF.
    pub btf_key_type_id: u32,
    /// `btf_value_type_id`: the value's type in that BTF.
    pub btf_value_type_id: u32,
    /// `btf_vmlinux_value_type_id`: the kernel value type of a struct_ops map, 0 otherwise.
    pub btf_vmlinux_value_type_id: u32,
}

impl MapInfo {
    fn from_raw(raw: &MapInfoRaw) -> MapInfo {
        MapInfo {
            id: raw.id,
            map_type: MapType::from_raw(raw.map_type),
            raw_type: raw.map_type,
            name: sys::c_name(&raw.name),
            key_size: raw.key_size,
            value_size: raw.value_size,
            max_entries: raw.max_entries,
            flags: MapFlags(raw.map_flags),
            map_extra: raw.map_extra,
            ifindex: raw.ifindex,
            btf_id: raw.btf_id,
            btf_key_type_id: raw.btf_key_type_id,
            btf_value_type_id: raw.btf_value_type_id,
            btf_vmlinux_value_type_id: raw.btf_vmlinux_value_type_id,
        }
    }
}

/// A map this process holds an fd of (created, opened by pin or by id).
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    name: String,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: MapFlags,
}

impl Map {
    /// Create a map in the kernel.
    pub fn create(spec: &MapSpec) -> Result<Map, MapError> {
        let mut attr = MapCreateAttr {
            map_type: spec.map_type.raw(),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.flags.0,
            map_name: sys::name16(&spec.name),
            map_extra: spec.map_extra,
            btf_vmlinux_value_type_id: spec.btf_vmlinux_value_type_id,
            map_ifindex: spec.ifindex,
            ..Default::default()
        };
        if let Some(node) = spec.numa_node {
            attr.numa_node = node;
            attr.map_flags |= MapFlags::NUMA_NODE.0;
        }
        if let Some(inner) = &spec.inner_map {
            attr.inner_map_fd = inner.as_raw_fd() as u32;
        }
        if let Some(btf) = &spec.btf {
            attr.btf_fd = btf.btf_fd.as_raw_fd() as u32;
            attr.btf_key_type_id = btf.key_type_id;
            attr.btf_value_type_id = btf.value_type_id;
        }
        let fd = sys::bpf_fd(Cmd::MapCreate, &mut attr).map_err(|source| SysError::new(
            format!(
                "map_create({} \"{}\", key {}, value {}, max_entries {}{})",
                spec.map_type,
                spec.name,
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                if spec.flags.0 != 0 { format!(", flags {:#x}", spec.flags.0) } else { String::new() }
            ),
            source,
        )
        .needing(spec.map_type.required_capabilities()))?;
        Ok(Map {
            fd,
            name: spec.name.clone(),
            map_type: spec.map_type,
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            flags: spec.flags,
        })
    }

    /// Adopt an fd of a map (e.g. from another library), reading its type and sizes from the kernel.
    pub fn from_fd(fd: OwnedFd) -> Result<Map, MapError> {
        let kind = sys::bpf_object_kind(fd.as_fd()).map_err(|source| SysError::new(format!("readlink(/proc/self/fd/{})", fd.as_raw_fd()), source))?;
        if kind.as_deref() != Some("bpf-map") {
            return Err(MapError::NotAMap { what: kind.unwrap_or_else(|| "not a BPF object".into()) });
        }
        let raw: MapInfoRaw = sys::info_by_fd(fd.as_fd(), |_| {})
            .map_err(|source| SysError::new(format!("obj_get_info_by_fd(map fd {})", fd.as_raw_fd()), source))?;
        let info = MapInfo::from_raw(&raw);
        let map_type = info.map_type.ok_or(MapError::UnknownType { id: info.id, raw: info.raw_type })?;
        Ok(Map {
            fd,
            name: info.name,
            map_type,
            key_size: info.key_size,
            value_size: info.value_size,
            max_entries: info.max_entries,
            flags: info.flags,
        })
    }

    /// Open the map pinned at `path`.
    pub fn from_pin(path: impl AsRef<Path>) -> Result<Map, MapError> {
        Map::from_fd(sys::obj_get(path.as_ref())?)
    }

    /// Open the map with kernel id `id`.
    pub fn from_id(id: u32) -> Result<Map, MapError> {
        let fd = sys::fd_by_id(Cmd::MapGetFdById, id).map_err(|source| SysError::new(format!("map_get_fd_by_id({id})"), source))?;
        Map::from_fd(fd)
    }

    /// Ids of every map loaded in the kernel.
    pub fn all_ids() -> Result<Vec<u32>, MapError> {
        Ok(sys::all_ids(Cmd::MapGetNextId).map_err(|source| SysError::new("map_get_next_id".into(), source))?)
    }

    /// What the kernel reports about this map.
    pub fn info(&self) -> Result<MapInfo, MapError> {
        let raw: MapInfoRaw = sys::info_by_fd(self.fd.as_fd(), |_| {})
            .map_err(|source| SysError::new(format!("obj_get_info_by_fd({})", self.describe()), source))?;
        Ok(MapInfo::from_raw(&raw))
    }

    /// Pin this map at `path` on a bpffs. The pin outlives the process until [`Map::unpin`].
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<(), MapError> {
        Ok(sys::obj_pin(self.fd.as_fd(), path.as_ref())?)
    }

    /// Remove the pin at `path`.
    pub fn unpin(path: impl AsRef<Path>) -> Result<(), MapError> {
        Ok(sys::unpin(path.as_ref())?)
    }

    /// Make the map read-only for user space (`BPF_MAP_FREEZE`); programs may still write it
    /// unless created with `RDONLY_PROG`.
    pub fn freeze(&self) -> Result<(), MapError> {
        let mut attr = sys::MapElemAttr { map_fd: self.fd.as_raw_fd() as u32, ..Default::default() };
        sys::bpf(Cmd::MapFreeze, &mut attr).map_err(|source| SysError::new(format!("map_freeze({})", self.describe()), source))?;
        Ok(())
    }

    /// The map's name as created (or as the kernel reports it for opened maps).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The map type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }
    /// The key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }
    /// The value size the map was created with (per CPU, for per-CPU maps).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }
    /// The maximum number of entries.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
    /// The map's `map_flags`.
    pub fn flags(&self) -> MapFlags {
        self.flags
    }

    /// `hash "counts"`: how errors name this map.
    pub fn describe(&self) -> String {
        format!("{} \"{}\"", self.map_type, self.name)
    }

    /// This map as an `ld_imm64` operand (`BPF_PSEUDO_MAP_FD`).
    pub fn as_ref(&self) -> MapRef {
        MapRef::Fd(self.fd.as_raw_fd())
    }

    fn unsupported(&self, message: impl Into<String>) -> MapError {
        MapError::Unsupported { map: self.name.clone(), map_type: self.map_type.to_string(), message: message.into() }
    }

    fn sys_err(&self, cmd: Cmd, source: std::io::Error) -> MapError {
        MapError::Sys(SysError::new(format!("{}({})", cmd.name(), self.describe()), source))
    }
}

impl AsFd for Map {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<&Map> for MapRef {
    fn from(m: &Map) -> MapRef {
        m.as_ref()
    }
}

#[cfg(test)]
mod seam_tests;
