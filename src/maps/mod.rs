//! Maps: creation and element operations over the syscall funnel. A [`Map`] owns its fd
//! (dropping it closes the fd) and knows its name, type and sizes so errors can name it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::insn::MapRef;
use crate::sys::{self, Cmd, MapCreateAttr, MapElemAttr, SysError};

/// `enum bpf_map_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MapType {
    Hash,
    Array,
    ProgArray,
    PerfEventArray,
    PercpuHash,
    PercpuArray,
    LruHash,
    LpmTrie,
    Queue,
    Stack,
    RingBuf,
    BloomFilter,
}

impl MapType {
    /// The kernel's number for this type.
    pub fn raw(self) -> u32 {
        match self {
            MapType::Hash => 1,
            MapType::Array => 2,
            MapType::ProgArray => 3,
            MapType::PerfEventArray => 4,
            MapType::PercpuHash => 5,
            MapType::PercpuArray => 6,
            MapType::LruHash => 9,
            MapType::LpmTrie => 11,
            MapType::Queue => 22,
            MapType::Stack => 23,
            MapType::RingBuf => 27,
            MapType::BloomFilter => 30,
        }
    }

    /// The name used in messages and the REPL (`hash`, `array`, …).
    pub fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::ProgArray => "prog_array",
            MapType::PerfEventArray => "perf_event_array",
            MapType::PercpuHash => "percpu_hash",
            MapType::PercpuArray => "percpu_array",
            MapType::LruHash => "lru_hash",
            MapType::LpmTrie => "lpm_trie",
            MapType::Queue => "queue",
            MapType::Stack => "stack",
            MapType::RingBuf => "ringbuf",
            MapType::BloomFilter => "bloom_filter",
        }
    }
}

/// How to create a map.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MapSpec {
    pub name: String,
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl MapSpec {
    pub fn new(name: impl Into<String>, map_type: MapType, key_size: u32, value_size: u32, max_entries: u32) -> Self {
        MapSpec { name: name.into(), map_type, key_size, value_size, max_entries, flags: 0 }
    }
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
}

/// Update flags (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFlags {
    Any,
    NoExist,
    Exist,
    Lock,
}

impl UpdateFlags {
    fn raw(self) -> u64 {
        match self {
            UpdateFlags::Any => 0,
            UpdateFlags::NoExist => 1,
            UpdateFlags::Exist => 2,
            UpdateFlags::Lock => 4,
        }
    }
}

/// Errors of map operations.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("map \"{map}\": {what} is {got} bytes, the map's {what} size is {want}")]
    WrongSize { map: String, what: &'static str, got: usize, want: u32 },
}

/// A map owned by this process.
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
    spec: MapSpec,
}

impl Map {
    /// Create a map in the kernel.
    pub fn create(spec: MapSpec) -> Result<Map, MapError> {
        let mut attr = MapCreateAttr {
            map_type: spec.map_type.raw(),
            key_size: spec.key_size,
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            map_flags: spec.flags,
            map_name: sys::name16(&spec.name),
            ..Default::default()
        };
        let fd = sys::bpf_fd(Cmd::MapCreate, &mut attr).map_err(|source| SysError {
            op: format!(
                "map_create({} \"{}\", key {}, value {}, max_entries {})",
                spec.map_type.name(),
                spec.name,
                spec.key_size,
                spec.value_size,
                spec.max_entries
            ),
            source,
        })?;
        Ok(Map { fd, spec })
    }

    pub fn spec(&self) -> &MapSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// This map as an `ld_imm64` operand (`BPF_PSEUDO_MAP_FD`).
    pub fn as_ref(&self) -> MapRef {
        MapRef::Fd(self.fd.as_raw_fd())
    }

    fn check(&self, what: &'static str, got: usize, want: u32) -> Result<(), MapError> {
        if got == want as usize {
            Ok(())
        } else {
            Err(MapError::WrongSize { map: self.spec.name.clone(), what, got, want })
        }
    }

    fn elem_op(&self, cmd: Cmd, op: &str, key: &[u8], value: u64, flags: u64) -> Result<(), SysError> {
        let mut attr = MapElemAttr { map_fd: self.fd.as_raw_fd() as u32, key: sys::ptr(key.as_ptr()), value, flags, ..Default::default() };
        sys::bpf(cmd, &mut attr)
            .map(|_| ())
            .map_err(|source| SysError { op: format!("{op}({} \"{}\")", self.spec.map_type.name(), self.spec.name), source })
    }

    /// Look up `key`; `None` if absent.
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        self.check("key", key.len(), self.spec.key_size)?;
        let mut value = vec![0u8; self.spec.value_size as usize];
        match self.elem_op(Cmd::MapLookupElem, "map_lookup_elem", key, sys::ptr(value.as_mut_ptr()), 0) {
            Ok(()) => Ok(Some(value)),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Insert or replace `key` → `value`.
    pub fn update(&self, key: &[u8], value: &[u8], flags: UpdateFlags) -> Result<(), MapError> {
        self.check("key", key.len(), self.spec.key_size)?;
        self.check("value", value.len(), self.spec.value_size)?;
        Ok(self.elem_op(Cmd::MapUpdateElem, "map_update_elem", key, sys::ptr(value.as_ptr()), flags.raw())?)
    }

    /// Delete `key`; `false` if it was absent.
    pub fn delete(&self, key: &[u8]) -> Result<bool, MapError> {
        self.check("key", key.len(), self.spec.key_size)?;
        match self.elem_op(Cmd::MapDeleteElem, "map_delete_elem", key, 0, 0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
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
