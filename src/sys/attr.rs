//! `union bpf_attr` members and the `bpf_*_info` structs, one `#[repr(C)]` struct per command
//! family, laid out as in Linux 6.18's uapi header. `tests/sys_layout.rs` checks the offset and
//! size of every field against libbpf-sys's bindgen bindings of the same header.
//!
//! Fields the kernel unions (`value`/`next_key`, `attach_prog_fd`/`attach_btf_obj_fd`, …) take
//! the first member's name with the alternative noted in its doc comment.

/// Attribute and info structs that may be passed to bpf(2).
///
/// # Safety
/// An implementor is `#[repr(C)]`, laid out as the kernel's member of `union bpf_attr` (or its
/// `bpf_*_info` struct) for the commands it is passed with, plain data with every bit pattern
/// valid (the kernel writes some of them back), and every pointer field it carries is set,
/// before the call, to memory that outlives the call and is at least as large as the kernel
/// will read or write through it. The trait is crate-private (`sys` is), so it is sealed.
pub unsafe trait BpfAttr {}

macro_rules! attrs {
    // SAFETY: each listed struct mirrors its uapi member field for field (checked against
    // libbpf-sys by sys::layout_tests); the pointer obligation is on the code that fills it.
    ($($t:ty),* $(,)?) => { $(unsafe impl BpfAttr for $t {})* };
}

attrs!(
    MapCreateAttr,
    MapElemAttr,
    MapBatchAttr,
    ObjPinAttr,
    ProgAttachAttr,
    ProgLoadAttr,
    TestRunAttr,
    GetIdAttr,
    InfoByFdAttr,
    ProgQueryAttr,
    RawTracepointOpenAttr,
    BtfLoadAttr,
    LinkCreateAttr,
    LinkDetachAttr,
    EnableStatsAttr,
    IterCreateAttr,
    ProgBindMapAttr,
);

/// `BPF_MAP_CREATE`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MapCreateAttr {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub inner_map_fd: u32,
    pub numa_node: u32,
    pub map_name: [u8; 16],
    pub map_ifindex: u32,
    pub btf_fd: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub map_extra: u64,
    pub value_type_btf_obj_fd: i32,
    pub map_token_fd: i32,
}

/// `BPF_MAP_{LOOKUP,UPDATE,DELETE,LOOKUP_AND_DELETE}_ELEM`, `BPF_MAP_GET_NEXT_KEY`, `BPF_MAP_FREEZE`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MapElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    pub key: u64,
    /// `value`, or `next_key` for `BPF_MAP_GET_NEXT_KEY`.
    pub value: u64,
    pub flags: u64,
}

/// `BPF_MAP_*_BATCH`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MapBatchAttr {
    pub in_batch: u64,
    pub out_batch: u64,
    pub keys: u64,
    pub values: u64,
    pub count: u32,
    pub map_fd: u32,
    pub elem_flags: u64,
    pub flags: u64,
}

/// `BPF_OBJ_PIN`, `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ObjPinAttr {
    pub pathname: u64,
    pub bpf_fd: u32,
    pub file_flags: u32,
    pub path_fd: i32,
    pub _pad: u32,
}

/// `BPF_PROG_ATTACH`, `BPF_PROG_DETACH`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgAttachAttr {
    /// `target_fd` or `target_ifindex`.
    pub target_fd: u32,
    pub attach_bpf_fd: u32,
    pub attach_type: u32,
    pub attach_flags: u32,
    pub replace_bpf_fd: u32,
    /// `relative_fd` or `relative_id`.
    pub relative_fd: u32,
    pub expected_revision: u64,
}

/// `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    /// `attach_prog_fd` or `attach_btf_obj_fd`.
    pub attach_prog_fd: u32,
    pub core_relo_cnt: u32,
    pub fd_array: u64,
    pub core_relos: u64,
    pub core_relo_rec_size: u32,
    pub log_true_size: u32,
    pub prog_token_fd: i32,
    pub fd_array_cnt: u32,
}

/// `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct TestRunAttr {
    pub prog_fd: u32,
    pub retval: u32,
    pub data_size_in: u32,
    pub data_size_out: u32,
    pub data_in: u64,
    pub data_out: u64,
    pub repeat: u32,
    pub duration: u32,
    pub ctx_size_in: u32,
    pub ctx_size_out: u32,
    pub ctx_in: u64,
    pub ctx_out: u64,
    pub flags: u32,
    pub cpu: u32,
    pub batch_size: u32,
    pub _pad: u32,
}

/// `BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID` and `BPF_{PROG,MAP,BTF,LINK}_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GetIdAttr {
    /// `start_id`, or `prog_id`/`map_id`/`btf_id`/`link_id` for `*_GET_FD_BY_ID`.
    pub start_id: u32,
    pub next_id: u32,
    pub open_flags: u32,
    pub fd_by_id_token_fd: i32,
}

/// `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct InfoByFdAttr {
    pub bpf_fd: u32,
    pub info_len: u32,
    pub info: u64,
}

/// `BPF_PROG_QUERY`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgQueryAttr {
    /// `target_fd` or `target_ifindex`.
    pub target_fd: u32,
    pub attach_type: u32,
    pub query_flags: u32,
    pub attach_flags: u32,
    pub prog_ids: u64,
    /// `prog_cnt` or `count`.
    pub prog_cnt: u32,
    pub _pad: u32,
    pub prog_attach_flags: u64,
    pub link_ids: u64,
    pub link_attach_flags: u64,
    pub revision: u64,
}

/// `BPF_RAW_TRACEPOINT_OPEN`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RawTracepointOpenAttr {
    pub name: u64,
    pub prog_fd: u32,
    pub _pad: u32,
    pub cookie: u64,
}

/// `BPF_BTF_LOAD`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct BtfLoadAttr {
    pub btf: u64,
    pub btf_log_buf: u64,
    pub btf_size: u32,
    pub btf_log_size: u32,
    pub btf_log_level: u32,
    pub btf_log_true_size: u32,
    pub btf_flags: u32,
    pub btf_token_fd: i32,
}

/// `BPF_LINK_CREATE`. The kernel's per-attach-type union after `flags` is 48 zeroed bytes here,
/// written only through [`LinkCreateAttr::set_target`] with one of the typed members below
/// ([`LinkTargetMember`]), each laid out as its `link_create` union member in uapi `bpf.h`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkCreateAttr {
    /// `prog_fd` or `map_fd` (struct_ops).
    pub prog_fd: u32,
    /// `target_fd` or `target_ifindex`.
    pub target_fd: u32,
    pub attach_type: u32,
    pub flags: u32,
    /// The union at offset 16 (`target_btf_id`, `iter_info`, `perf_event`, `kprobe_multi`,
    /// `tracing`, `netfilter`, `tcx`, `uprobe_multi`, `netkit`, `cgroup`). Use
    /// [`LinkCreateAttr::set_target`] rather than writing words by hand.
    pub target: [u64; 6],
}

impl LinkCreateAttr {
    /// A link of `attach_type` from program (or struct_ops map) `prog_fd` to `target_fd` (or
    /// ifindex), with the type-specific union zeroed.
    pub fn new(prog_fd: u32, target_fd: u32, attach_type: u32, flags: u32) -> LinkCreateAttr {
        LinkCreateAttr { prog_fd, target_fd, attach_type, flags, target: [0; 6] }
    }

    /// Fill the type-specific union with `member` (the rest of it zeroed, as the kernel expects
    /// of bytes a member does not use).
    pub fn set_target<T: LinkTargetMember>(&mut self, member: T) {
        const { assert!(std::mem::size_of::<T>() <= std::mem::size_of::<[u64; 6]>()) };
        self.target = [0; 6];
        let bytes = bytemuck::bytes_of(&member);
        bytemuck::bytes_of_mut(&mut self.target)[..bytes.len()].copy_from_slice(bytes);
    }

    /// [`set_target`](Self::set_target), by value.
    pub fn with_target<T: LinkTargetMember>(mut self, member: T) -> LinkCreateAttr {
        self.set_target(member);
        self
    }
}

/// One member of `link_create`'s type-specific union: plain data no larger than the union.
pub trait LinkTargetMember: bytemuck::Pod {}

/// `u64` of a slice's first element, or 0 for an empty slice (the kernel reads "absent").
fn slice_addr(v: &[u64]) -> u64 {
    if v.is_empty() {
        0
    } else {
        super::ptr(v.as_ptr())
    }
}

/// `link_create.target_btf_id` (freplace/fentry targets, struct_ops).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TargetBtfIdLink {
    pub target_btf_id: u32,
}

/// `link_create.{iter_info, iter_info_len}` (`BPF_TRACE_ITER`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IterInfoLink {
    /// Address of a `union bpf_iter_link_info`.
    pub iter_info: u64,
    pub iter_info_len: u32,
    pub _pad: u32,
}

impl IterInfoLink {
    /// Point at `info`, which must stay alive until the `BPF_LINK_CREATE` call returns. The
    /// length is `info`'s own size; the kernel zero-fills the rest of its union.
    pub fn new<T: IterLinkInfoMember>(info: &T) -> IterInfoLink {
        IterInfoLink { iter_info: super::ptr(info as *const T), iter_info_len: std::mem::size_of::<T>() as u32, _pad: 0 }
    }
}

/// One member of `union bpf_iter_link_info`.
pub trait IterLinkInfoMember: bytemuck::Pod {}

/// `bpf_iter_link_info.map`: the map whose elements are visited.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IterMapInfo {
    pub map_fd: u32,
}

/// `bpf_iter_link_info.cgroup`: a cgroup (by fd, or by id when `cgroup_fd` is 0) and the walk
/// order (`BPF_CGROUP_ITER_*`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IterCgroupInfo {
    pub order: u32,
    pub cgroup_fd: u32,
    pub cgroup_id: u64,
}

/// `bpf_iter_link_info.task`: one thread, one process, or the process behind a pidfd (the
/// first non-zero field wins).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct IterTaskInfo {
    pub tid: u32,
    pub pid: u32,
    pub pid_fd: u32,
}

impl IterLinkInfoMember for IterMapInfo {}
impl IterLinkInfoMember for IterCgroupInfo {}
impl IterLinkInfoMember for IterTaskInfo {}

/// `link_create.perf_event` (`BPF_PERF_EVENT`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PerfEventLink {
    pub bpf_cookie: u64,
}

/// `link_create.kprobe_multi` (`BPF_TRACE_KPROBE_MULTI`, `BPF_TRACE_KPROBE_SESSION`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct KprobeMultiLink {
    /// `BPF_F_KPROBE_MULTI_RETURN` = 1.
    pub flags: u32,
    pub cnt: u32,
    /// Address of `cnt` pointers to NUL-terminated symbol names, or 0.
    pub syms: u64,
    /// Address of `cnt` kernel addresses, or 0.
    pub addrs: u64,
    /// Address of `cnt` cookies, or 0.
    pub cookies: u64,
}

impl KprobeMultiLink {
    /// Probes on the symbols whose name pointers are `syms` (each a `*const c_char` as `u64`),
    /// with one cookie each or none. The slices must stay alive until the call returns; `None`
    /// if `cookies` is neither empty nor as long as `syms`, or there are more than `u32::MAX`.
    pub fn symbols(syms: &[u64], cookies: &[u64], flags: u32) -> Option<KprobeMultiLink> {
        let cnt = u32::try_from(syms.len()).ok()?;
        (cookies.is_empty() || cookies.len() == syms.len()).then_some(KprobeMultiLink { flags, cnt, syms: slice_addr(syms), addrs: 0, cookies: slice_addr(cookies) })
    }
}

/// `link_create.tracing` (fentry/fexit/fmod_ret/LSM links with a cookie).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct TracingLink {
    pub target_btf_id: u32,
    pub _pad: u32,
    pub cookie: u64,
}

/// `link_create.netfilter` (`BPF_NETFILTER`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NetfilterLink {
    /// `NFPROTO_*`.
    pub pf: u32,
    /// `NF_INET_*`.
    pub hooknum: u32,
    pub priority: i32,
    /// `BPF_F_NETFILTER_IP_DEFRAG` = 1.
    pub flags: u32,
}

/// `link_create.tcx`, `link_create.netkit` and `link_create.cgroup`: where in the
/// multi-program list the link goes, and the list revision expected.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RelativeLink {
    /// `relative_fd` or `relative_id` (with `BPF_F_ID` in `flags`).
    pub relative_fd: u32,
    pub _pad: u32,
    pub expected_revision: u64,
}

/// `link_create.uprobe_multi` (`BPF_TRACE_UPROBE_MULTI`, `BPF_TRACE_UPROBE_SESSION`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UprobeMultiLink {
    /// Address of the binary's NUL-terminated path.
    pub path: u64,
    /// Address of `cnt` file offsets.
    pub offsets: u64,
    /// Address of `cnt` reference-counter (semaphore) offsets, or 0.
    pub ref_ctr_offsets: u64,
    /// Address of `cnt` cookies, or 0.
    pub cookies: u64,
    pub cnt: u32,
    /// `BPF_F_UPROBE_MULTI_RETURN` = 1.
    pub flags: u32,
    /// Only this process (0: every process).
    pub pid: u32,
    pub _pad: u32,
}

impl UprobeMultiLink {
    /// Probes at `offsets` of the binary at `path`, with per-offset reference counters and
    /// cookies (each empty or as long as `offsets`). Every argument must stay alive until the
    /// `BPF_LINK_CREATE` call returns. `None` if a list's length differs from `offsets`', or
    /// there are more than `u32::MAX` offsets.
    pub fn new(path: &std::ffi::CStr, offsets: &[u64], ref_ctr_offsets: &[u64], cookies: &[u64], flags: u32, pid: u32) -> Option<UprobeMultiLink> {
        let cnt = u32::try_from(offsets.len()).ok()?;
        let fits = |v: &[u64]| v.is_empty() || v.len() == offsets.len();
        (fits(ref_ctr_offsets) && fits(cookies)).then(|| UprobeMultiLink {
            path: super::ptr(path.as_ptr()),
            offsets: slice_addr(offsets),
            ref_ctr_offsets: slice_addr(ref_ctr_offsets),
            cookies: slice_addr(cookies),
            cnt,
            flags,
            pid,
            _pad: 0,
        })
    }
}

impl LinkTargetMember for TargetBtfIdLink {}
impl LinkTargetMember for IterInfoLink {}
impl LinkTargetMember for PerfEventLink {}
impl LinkTargetMember for KprobeMultiLink {}
impl LinkTargetMember for TracingLink {}
impl LinkTargetMember for NetfilterLink {}
impl LinkTargetMember for RelativeLink {}
impl LinkTargetMember for UprobeMultiLink {}

/// `BPF_LINK_DETACH`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkDetachAttr {
    pub link_fd: u32,
}

/// `BPF_ENABLE_STATS`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct EnableStatsAttr {
    /// `BPF_STATS_RUN_TIME` = 0.
    pub stats_type: u32,
}

/// `BPF_ITER_CREATE`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IterCreateAttr {
    pub link_fd: u32,
    pub flags: u32,
}

/// `BPF_PROG_BIND_MAP`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
#[allow(dead_code)] // not issued yet; its layout is checked with the rest
pub struct ProgBindMapAttr {
    pub prog_fd: u32,
    pub map_fd: u32,
    pub flags: u32,
}

/// `struct bpf_prog_info` (filled by `BPF_OBJ_GET_INFO_BY_FD`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct ProgInfoRaw {
    pub prog_type: u32,
    pub id: u32,
    pub tag: [u8; 8],
    pub jited_prog_len: u32,
    pub xlated_prog_len: u32,
    pub jited_prog_insns: u64,
    pub xlated_prog_insns: u64,
    pub load_time: u64,
    pub created_by_uid: u32,
    pub nr_map_ids: u32,
    pub map_ids: u64,
    pub name: [u8; 16],
    pub ifindex: u32,
    /// Bit 0: `gpl_compatible`.
    pub flags_bits: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub nr_jited_ksyms: u32,
    pub nr_jited_func_lens: u32,
    pub jited_ksyms: u64,
    pub jited_func_lens: u64,
    pub btf_id: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub nr_func_info: u32,
    pub nr_line_info: u32,
    pub line_info: u64,
    pub jited_line_info: u64,
    pub nr_jited_line_info: u32,
    pub line_info_rec_size: u32,
    pub jited_line_info_rec_size: u32,
    pub nr_prog_tags: u32,
    pub prog_tags: u64,
    pub run_time_ns: u64,
    pub run_cnt: u64,
    pub recursion_misses: u64,
    pub verified_insns: u32,
    pub attach_btf_obj_id: u32,
    pub attach_btf_id: u32,
    pub _pad: u32,
}

/// `struct bpf_map_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MapInfoRaw {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: [u8; 16],
    pub ifindex: u32,
    pub btf_vmlinux_value_type_id: u32,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub btf_id: u32,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_id: u32,
    pub map_extra: u64,
}

/// `struct bpf_btf_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct BtfInfoRaw {
    pub btf: u64,
    pub btf_size: u32,
    pub id: u32,
    pub name: u64,
    pub name_len: u32,
    pub kernel_btf: u32,
}

/// `struct bpf_link_info`: the common head and the type-specific union as raw words.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkInfoRaw {
    pub link_type: u32,
    pub id: u32,
    pub prog_id: u32,
    pub _pad: u32,
    pub detail: [u64; 8],
}

attrs!(ProgInfoRaw, MapInfoRaw, BtfInfoRaw, LinkInfoRaw);
