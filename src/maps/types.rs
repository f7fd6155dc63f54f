//! `enum bpf_map_type` and the map creation flags, with the names messages and the REPL use.
//! `tests/kernel_maps.rs` checks the list against the running kernel's BTF.

/// Declare a kernel enum mirror: variants, their kernel numbers and their lower-case names.
macro_rules! kernel_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $raw:literal, $text:literal;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $var,)* }

        impl $name {
            /// Every variant, in kernel order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];

            /// The kernel's number.
            pub fn raw(self) -> u32 {
                match self { $($name::$var => $raw,)* }
            }

            /// The variant for a kernel number, if bpfkit knows it.
            #[allow(dead_code)] // (the crate-private `sys::Cmd` never decodes one)
            pub fn from_raw(raw: u32) -> Option<$name> {
                match raw { $($raw => Some($name::$var),)* _ => None }
            }

            /// The name in messages, the CLI and the REPL (the kernel's enumerator, lower-case,
            /// without its prefix).
            pub fn name(self) -> &'static str {
                match self { $($name::$var => $text,)* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let want = s.trim().to_ascii_lowercase().replace('-', "_");
                $name::ALL.iter().copied().find(|v| v.name() == want).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.name()).collect();
                    format!("unknown {} `{s}` (known: {})", stringify!($name), names.join(", "))
                })
            }
        }
    };
}
pub(crate) use kernel_enum;

kernel_enum! {
    /// `enum bpf_map_type` as of Linux 6.18.
    MapType {
        /// `BPF_MAP_TYPE_HASH`: a hash table.
        Hash = 1, "hash";
        /// `BPF_MAP_TYPE_ARRAY`: an array indexed by u32 (preallocated, elements never deleted).
        Array = 2, "array";
        /// `BPF_MAP_TYPE_PROG_ARRAY`: program slots for tail calls (`bpf_tail_call`).
        ProgArray = 3, "prog_array";
        /// `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: per-CPU perf event fds that `bpf_perf_event_output` writes to.
        PerfEventArray = 4, "perf_event_array";
        /// `BPF_MAP_TYPE_PERCPU_HASH`: a hash table with a value per CPU.
        PercpuHash = 5, "percpu_hash";
        /// `BPF_MAP_TYPE_PERCPU_ARRAY`: an array with a value per CPU.
        PercpuArray = 6, "percpu_array";
        /// `BPF_MAP_TYPE_STACK_TRACE`: stack traces stored by `bpf_get_stackid`.
        StackTrace = 7, "stack_trace";
        /// `BPF_MAP_TYPE_CGROUP_ARRAY`: cgroup fds, for `bpf_skb_under_cgroup`.
        CgroupArray = 8, "cgroup_array";
        /// `BPF_MAP_TYPE_LRU_HASH`: a hash table that evicts the least recently used elements when full.
        LruHash = 9, "lru_hash";
        /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`: an LRU hash table with a value per CPU.
        LruPercpuHash = 10, "lru_percpu_hash";
        /// `BPF_MAP_TYPE_LPM_TRIE`: longest-prefix-match lookups (IP prefixes).
        LpmTrie = 11, "lpm_trie";
        /// `BPF_MAP_TYPE_ARRAY_OF_MAPS`: an array whose values are maps.
        ArrayOfMaps = 12, "array_of_maps";
        /// `BPF_MAP_TYPE_HASH_OF_MAPS`: a hash table whose values are maps.
        HashOfMaps = 13, "hash_of_maps";
        /// `BPF_MAP_TYPE_DEVMAP`: network devices, for XDP redirect.
        Devmap = 14, "devmap";
        /// `BPF_MAP_TYPE_SOCKMAP`: sockets by index, for sk_msg/sk_skb redirect.
        Sockmap = 15, "sockmap";
        /// `BPF_MAP_TYPE_CPUMAP`: CPUs, for XDP redirect to another CPU.
        Cpumap = 16, "cpumap";
        /// `BPF_MAP_TYPE_XSKMAP`: AF_XDP sockets, for XDP redirect.
        Xskmap = 17, "xskmap";
        /// `BPF_MAP_TYPE_SOCKHASH`: sockets by key, for sk_msg/sk_skb redirect.
        Sockhash = 18, "sockhash";
        /// `BPF_MAP_TYPE_CGROUP_STORAGE`: per-cgroup storage of cgroup programs (deprecated by cgrp_storage).
        CgroupStorage = 19, "cgroup_storage";
        /// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY`: sockets of a SO_REUSEPORT group, for sk_reuseport programs.
        ReuseportSockarray = 20, "reuseport_sockarray";
        /// `BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE`: per-cgroup storage with a value per CPU.
        PercpuCgroupStorage = 21, "percpu_cgroup_storage";
        /// `BPF_MAP_TYPE_QUEUE`: a FIFO queue (no keys).
        Queue = 22, "queue";
        /// `BPF_MAP_TYPE_STACK`: a LIFO stack (no keys).
        Stack = 23, "stack";
        /// `BPF_MAP_TYPE_SK_STORAGE`: storage attached to sockets.
        SkStorage = 24, "sk_storage";
        /// `BPF_MAP_TYPE_DEVMAP_HASH`: network devices by key, for XDP redirect.
        DevmapHash = 25, "devmap_hash";
        /// `BPF_MAP_TYPE_STRUCT_OPS`: a kernel ops struct implemented by BPF programs.
        StructOps = 26, "struct_ops";
        /// `BPF_MAP_TYPE_RINGBUF`: a ring buffer shared by all CPUs, read by user space (5.8+).
        RingBuf = 27, "ringbuf";
        /// `BPF_MAP_TYPE_INODE_STORAGE`: storage attached to inodes (LSM programs).
        InodeStorage = 28, "inode_storage";
        /// `BPF_MAP_TYPE_TASK_STORAGE`: storage attached to tasks.
        TaskStorage = 29, "task_storage";
        /// `BPF_MAP_TYPE_BLOOM_FILTER`: a bloom filter (5.16+).
        BloomFilter = 30, "bloom_filter";
        /// `BPF_MAP_TYPE_USER_RINGBUF`: a ring buffer written by user space, drained by programs (6.1+).
        UserRingBuf = 31, "user_ringbuf";
        /// `BPF_MAP_TYPE_CGRP_STORAGE`: storage attached to cgroups (6.2+).
        CgrpStorage = 32, "cgrp_storage";
        /// `BPF_MAP_TYPE_ARENA`: memory shared by programs and user space, mapped page by page (6.9+).
        Arena = 33, "arena";
    }
}

impl MapType {
    /// The capabilities `BPF_MAP_CREATE` of this type needs (`map_create()` in
    /// `kernel/bpf/syscall.c`): `CAP_BPF`, and `CAP_NET_ADMIN` too for maps of sockets and
    /// devices. `CAP_SYS_ADMIN` stands in for either.
    pub fn required_capabilities(self) -> &'static [crate::caps::Capability] {
        use crate::caps::Capability::{Bpf, NetAdmin};
        match self {
            MapType::Sockmap | MapType::Sockhash | MapType::Devmap | MapType::DevmapHash | MapType::Xskmap => &[Bpf, NetAdmin],
            _ => &[Bpf],
        }
    }

    /// Per-CPU maps: a value is one slot per possible CPU, each rounded up to 8 bytes.
    pub fn is_per_cpu(self) -> bool {
        matches!(self, MapType::PercpuHash | MapType::PercpuArray | MapType::LruPercpuHash | MapType::PercpuCgroupStorage)
    }

    /// Maps without keys, used through push/pop/peek (queue, stack) or push/contains (bloom).
    pub fn is_keyless(self) -> bool {
        matches!(self, MapType::Queue | MapType::Stack | MapType::BloomFilter)
    }

    /// Maps whose update value is a file descriptor (program, map, socket, perf event, cgroup).
    pub fn takes_fd_values(self) -> bool {
        matches!(
            self,
            MapType::ProgArray
                | MapType::PerfEventArray
                | MapType::CgroupArray
                | MapType::ArrayOfMaps
                | MapType::HashOfMaps
                | MapType::Sockmap
                | MapType::Sockhash
                | MapType::Xskmap
                | MapType::ReuseportSockarray
        )
    }

    /// Local-storage maps: keyed by an fd (socket, inode's file, pidfd, cgroup) and created with
    /// BTF for key and value and `BPF_F_NO_PREALLOC`.
    pub fn is_local_storage(self) -> bool {
        matches!(self, MapType::SkStorage | MapType::InodeStorage | MapType::TaskStorage | MapType::CgrpStorage)
    }
}

/// `BPF_F_*` map creation flags (`map_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapFlags(pub u32);

impl MapFlags {
    /// `BPF_F_NO_PREALLOC`: allocate hash elements on update instead of all at creation.
    pub const NO_PREALLOC: MapFlags = MapFlags(1 << 0);
    /// `BPF_F_NO_COMMON_LRU`: LRU hash maps keep an LRU list per CPU instead of one shared list.
    pub const NO_COMMON_LRU: MapFlags = MapFlags(1 << 1);
    /// `BPF_F_NUMA_NODE`: `numa_node` is valid (set by [`MapSpec::numa_node`](super::MapSpec::numa_node)).
    pub const NUMA_NODE: MapFlags = MapFlags(1 << 2);
    /// `BPF_F_RDONLY`: user space may only read the map (through this fd).
    pub const RDONLY: MapFlags = MapFlags(1 << 3);
    /// `BPF_F_WRONLY`: user space may only write the map (through this fd).
    pub const WRONLY: MapFlags = MapFlags(1 << 4);
    /// `BPF_F_STACK_BUILD_ID`: stack trace maps store build id and offset instead of addresses.
    pub const STACK_BUILD_ID: MapFlags = MapFlags(1 << 5);
    /// `BPF_F_ZERO_SEED`: hash with a zero seed, for reproducible tests (needs `CAP_SYS_ADMIN`).
    pub const ZERO_SEED: MapFlags = MapFlags(1 << 6);
    /// `BPF_F_RDONLY_PROG`: programs may only read the map.
    pub const RDONLY_PROG: MapFlags = MapFlags(1 << 7);
    /// `BPF_F_WRONLY_PROG`: programs may only write the map.
    pub const WRONLY_PROG: MapFlags = MapFlags(1 << 8);
    /// `BPF_F_CLONE`: socket local storage is cloned to child sockets.
    pub const CLONE: MapFlags = MapFlags(1 << 9);
    /// `BPF_F_MMAPABLE`: array (and arena) maps that user space can mmap(2).
    pub const MMAPABLE: MapFlags = MapFlags(1 << 10);
    /// `BPF_F_PRESERVE_ELEMS`: perf event arrays keep their events when the map's fd is closed.
    pub const PRESERVE_ELEMS: MapFlags = MapFlags(1 << 11);
    /// `BPF_F_INNER_MAP`: inner array maps whose `max_entries` may differ from the template's.
    pub const INNER_MAP: MapFlags = MapFlags(1 << 12);
    /// `BPF_F_LINK`: create a link (for struct_ops maps that are attached through a link).
    pub const LINK: MapFlags = MapFlags(1 << 13);
    /// `BPF_F_PATH_FD`: for BPF_OBJ_PIN/GET, `path_fd` is set (not a map creation flag).
    pub const PATH_FD: MapFlags = MapFlags(1 << 14);
    /// `BPF_F_VTYPE_BTF_OBJ_FD`: `value_type_btf_obj_fd` is set (struct_ops from a module).
    pub const VTYPE_BTF_OBJ_FD: MapFlags = MapFlags(1 << 15);
    /// `BPF_F_TOKEN_FD`: `map_token_fd` is set (BPF token, kernel 6.9+).
    pub const TOKEN_FD: MapFlags = MapFlags(1 << 16);
    /// `BPF_F_SEGV_ON_FAULT`: arenas: user-space faults on unallocated pages raise SIGSEGV.
    pub const SEGV_ON_FAULT: MapFlags = MapFlags(1 << 17);
    /// `BPF_F_NO_USER_CONV`: arenas: do not convert pointers between kernel and user addresses.
    pub const NO_USER_CONV: MapFlags = MapFlags(1 << 18);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: MapFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for MapFlags {
    type Output = MapFlags;
    fn bitor(self, rhs: MapFlags) -> MapFlags {
        MapFlags(self.0 | rhs.0)
    }
}

/// Flags of element updates (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateFlags {
    /// Create or replace.
    Any,
    /// Create only; `EEXIST` if present.
    NoExist,
    /// Replace only; `ENOENT` if absent.
    Exist,
    /// Update the value under its `bpf_spin_lock` (the value type must contain one, via BTF).
    Lock,
}

impl UpdateFlags {
    /// The `flags` value of BPF_MAP_UPDATE_ELEM.
    pub fn raw(self) -> u64 {
        match self {
            UpdateFlags::Any => 0,
            UpdateFlags::NoExist => 1,
            UpdateFlags::Exist => 2,
            UpdateFlags::Lock => 4,
        }
    }
}

/// An LPM trie key: `prefix_len` in bits, then the address bytes (`struct bpf_lpm_trie_key_u8`).
/// The map's key size is `4 + data.len()`.
pub fn lpm_key(prefix_len: u32, data: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + data.len());
    k.extend_from_slice(&prefix_len.to_ne_bytes());
    k.extend_from_slice(data);
    k
}
