//! (Unit tests inside the crate: `sys` is private.) Every field bpfkit writes into a bpf(2) attribute or reads from an info struct has the offset
//! and size of the same field in libbpf-sys's bindgen bindings of the kernel's uapi header.

use std::mem::{offset_of, size_of};

use super::*;
use crate::maps::MapType;
use crate::prog::{AttachType, ProgType};
use libbpf_sys as lb;

/// The size of a field, from a projection closure (no value of the type is needed).
fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `layout!(Ours => Theirs { ours_field => theirs_field, same_name, … })`
macro_rules! layout {
    ($ours:ty => $theirs:ty { $($f:ident $(=> $g:ident)?),* $(,)? }) => {{
        let mut checked = 0usize;
        $(
            layout!(@one $ours, $theirs, $f $(=> $g)?);
            checked += 1;
        )*
        assert!(size_of::<$ours>() <= size_of::<lb::bpf_attr>().max(size_of::<$theirs>()), "{} is larger than the kernel's", stringify!($ours));
        checked
    }};
    (@one $ours:ty, $theirs:ty, $f:ident => $g:ident) => {{
        assert_eq!(offset_of!($ours, $f), offset_of!($theirs, $g), "offset of {}.{} vs {}.{}", stringify!($ours), stringify!($f), stringify!($theirs), stringify!($g));
        assert_eq!(field_size(|x: &$ours| &x.$f), field_size(|x: &$theirs| &x.$g), "size of {}.{} vs {}.{}", stringify!($ours), stringify!($f), stringify!($theirs), stringify!($g));
    }};
    (@one $ours:ty, $theirs:ty, $f:ident) => {
        layout!(@one $ours, $theirs, $f => $f)
    };
}

#[test]
fn attrs_match_libbpf_sys() {
    let mut n = 0;
    n += layout!(MapCreateAttr => lb::bpf_attr__bindgen_ty_1 {
        map_type, key_size, value_size, max_entries, map_flags, inner_map_fd, numa_node, map_name,
        map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id, btf_vmlinux_value_type_id, map_extra,
        value_type_btf_obj_fd, map_token_fd,
    });
    n += layout!(MapElemAttr => lb::bpf_attr__bindgen_ty_2 { map_fd, key, value => __bindgen_anon_1, flags });
    n += layout!(MapBatchAttr => lb::bpf_attr__bindgen_ty_3 { in_batch, out_batch, keys, values, count, map_fd, elem_flags, flags });
    n += layout!(ProgLoadAttr => lb::bpf_attr__bindgen_ty_4 {
        prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, kern_version, prog_flags,
        prog_name, prog_ifindex, expected_attach_type, prog_btf_fd, func_info_rec_size, func_info,
        func_info_cnt, line_info_rec_size, line_info, line_info_cnt, attach_btf_id,
        attach_prog_fd => __bindgen_anon_1, core_relo_cnt, fd_array, core_relos, core_relo_rec_size,
        log_true_size, prog_token_fd, fd_array_cnt,
    });
    n += layout!(ObjPinAttr => lb::bpf_attr__bindgen_ty_5 { pathname, bpf_fd, file_flags, path_fd });
    n += layout!(ProgAttachAttr => lb::bpf_attr__bindgen_ty_6 {
        target_fd => __bindgen_anon_1, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd,
        relative_fd => __bindgen_anon_2, expected_revision,
    });
    n += layout!(TestRunAttr => lb::bpf_attr__bindgen_ty_7 {
        prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat, duration,
        ctx_size_in, ctx_size_out, ctx_in, ctx_out, flags, cpu, batch_size,
    });
    n += layout!(GetIdAttr => lb::bpf_attr__bindgen_ty_8 { start_id => __bindgen_anon_1, next_id, open_flags, fd_by_id_token_fd });
    n += layout!(InfoByFdAttr => lb::bpf_attr__bindgen_ty_9 { bpf_fd, info_len, info });
    n += layout!(ProgQueryAttr => lb::bpf_attr__bindgen_ty_10 {
        target_fd => __bindgen_anon_1, attach_type, query_flags, attach_flags, prog_ids,
        prog_cnt => __bindgen_anon_2, prog_attach_flags, link_ids, link_attach_flags, revision,
    });
    n += layout!(RawTracepointOpenAttr => lb::bpf_attr__bindgen_ty_11 { name, prog_fd, cookie });
    n += layout!(BtfLoadAttr => lb::bpf_attr__bindgen_ty_12 {
        btf, btf_log_buf, btf_size, btf_log_size, btf_log_level, btf_log_true_size, btf_flags, btf_token_fd,
    });
    n += layout!(LinkCreateAttr => lb::bpf_attr__bindgen_ty_14 {
        prog_fd => __bindgen_anon_1, target_fd => __bindgen_anon_2, attach_type, flags, target => __bindgen_anon_3,
    });
    // The union after `flags`: bpfkit's storage covers the kernel's whole union, and every
    // member bpfkit writes there is checked field by field below (`link_create_members_…`).
    assert_eq!(size_of::<[u64; 6]>(), size_of::<lb::bpf_attr__bindgen_ty_14__bindgen_ty_3>(), "link_create union size");
    n += layout!(LinkDetachAttr => lb::bpf_attr__bindgen_ty_16 { link_fd });
    n += layout!(EnableStatsAttr => lb::bpf_attr__bindgen_ty_17 { stats_type => type_ });
    n += layout!(IterCreateAttr => lb::bpf_attr__bindgen_ty_18 { link_fd, flags });
    n += layout!(ProgBindMapAttr => lb::bpf_attr__bindgen_ty_19 { prog_fd, map_fd, flags });
    println!("{n} attribute fields match libbpf-sys");
}

/// `bpf_attr.link_create`'s type-specific union: libbpf-sys's member structs, in uapi order.
mod lc {
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3 as Union;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_1 as IterInfo;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_2 as PerfEvent;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_3 as KprobeMulti;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_4 as Tracing;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_5 as Netfilter;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_6 as Tcx;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_7 as UprobeMulti;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_8 as Netkit;
    pub use libbpf_sys::bpf_attr__bindgen_ty_14__bindgen_ty_3__bindgen_ty_9 as Cgroup;
}

/// `set_target` writes every member at the union's start: libbpf-sys must put it there too.
fn member_at_union_offset(member: &str, theirs_in_union: usize) {
    assert_eq!(theirs_in_union, 0, "libbpf-sys puts link_create.{member} at union offset {theirs_in_union}");
}

#[test]
fn link_create_members_match_libbpf_sys() {
    let mut n = 0;
    // Each member starts the union (offset 0 inside it) in libbpf-sys too.
    member_at_union_offset("target_btf_id", offset_of!(lc::Union, target_btf_id));
    member_at_union_offset("iter_info", offset_of!(lc::Union, __bindgen_anon_1));
    member_at_union_offset("perf_event", offset_of!(lc::Union, perf_event));
    member_at_union_offset("kprobe_multi", offset_of!(lc::Union, kprobe_multi));
    member_at_union_offset("tracing", offset_of!(lc::Union, tracing));
    member_at_union_offset("netfilter", offset_of!(lc::Union, netfilter));
    member_at_union_offset("tcx", offset_of!(lc::Union, tcx));
    member_at_union_offset("uprobe_multi", offset_of!(lc::Union, uprobe_multi));
    member_at_union_offset("netkit", offset_of!(lc::Union, netkit));
    member_at_union_offset("cgroup", offset_of!(lc::Union, cgroup));

    // `target_btf_id` is a bare u32 member of the union (no struct around it in libbpf-sys).
    assert_eq!(offset_of!(TargetBtfIdLink, target_btf_id), offset_of!(lc::Union, target_btf_id));
    assert_eq!(size_of::<TargetBtfIdLink>(), size_of::<u32>());
    n += 1;
    n += layout!(IterInfoLink => lc::IterInfo { iter_info, iter_info_len });
    n += layout!(PerfEventLink => lc::PerfEvent { bpf_cookie });
    n += layout!(KprobeMultiLink => lc::KprobeMulti { flags, cnt, syms, addrs, cookies });
    n += layout!(TracingLink => lc::Tracing { target_btf_id, cookie });
    n += layout!(NetfilterLink => lc::Netfilter { pf, hooknum, priority, flags });
    n += layout!(RelativeLink => lc::Tcx { relative_fd => __bindgen_anon_1, expected_revision });
    n += layout!(RelativeLink => lc::Netkit { relative_fd => __bindgen_anon_1, expected_revision });
    n += layout!(RelativeLink => lc::Cgroup { relative_fd => __bindgen_anon_1, expected_revision });
    n += layout!(UprobeMultiLink => lc::UprobeMulti { path, offsets, ref_ctr_offsets, cookies, cnt, flags, pid });
    // Whole sizes too: a member must not be shorter than the kernel's (the tail would be
    // left zero where the kernel expects a field) nor longer than the union.
    for (name, ours, theirs) in [
        ("iter_info", size_of::<IterInfoLink>(), size_of::<lc::IterInfo>()),
        ("perf_event", size_of::<PerfEventLink>(), size_of::<lc::PerfEvent>()),
        ("kprobe_multi", size_of::<KprobeMultiLink>(), size_of::<lc::KprobeMulti>()),
        ("tracing", size_of::<TracingLink>(), size_of::<lc::Tracing>()),
        ("netfilter", size_of::<NetfilterLink>(), size_of::<lc::Netfilter>()),
        ("tcx", size_of::<RelativeLink>(), size_of::<lc::Tcx>()),
        ("netkit", size_of::<RelativeLink>(), size_of::<lc::Netkit>()),
        ("cgroup", size_of::<RelativeLink>(), size_of::<lc::Cgroup>()),
        ("uprobe_multi", size_of::<UprobeMultiLink>(), size_of::<lc::UprobeMulti>()),
    ] {
        assert_eq!(ours, theirs, "size of link_create.{name}");
    }

    // `bpf_iter_link_info`, which `iter_info` points at.
    n += layout!(IterMapInfo => lb::bpf_iter_link_info__bindgen_ty_1 { map_fd });
    n += layout!(IterCgroupInfo => lb::bpf_iter_link_info__bindgen_ty_2 { order, cgroup_fd, cgroup_id });
    n += layout!(IterTaskInfo => lb::bpf_iter_link_info__bindgen_ty_3 { tid, pid, pid_fd });
    for (name, off) in [
        ("map", offset_of!(lb::bpf_iter_link_info, map)),
        ("cgroup", offset_of!(lb::bpf_iter_link_info, cgroup)),
        ("task", offset_of!(lb::bpf_iter_link_info, task)),
    ] {
        assert_eq!(off, 0, "bpf_iter_link_info.{name} offset");
    }
    println!("{n} link_create union fields match libbpf-sys");
}

/// `set_target` writes a member's bytes at the union's start and zeroes the rest: the bytes
/// `bpf_attr` would hold are the ones libbpf-sys's union holds with the same member written.
#[test]
fn set_target_writes_the_kernels_bytes() {
    fn attr_bytes(attr: &LinkCreateAttr) -> Vec<u8> {
        bytemuck_bytes(attr)
    }
    fn bytemuck_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: (test code, libbpf-sys exception) `T` is a `repr(C)` plain-data struct
        // fully initialised by the caller (zeroed first), read as bytes.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }
    let path = c"/bin/true";
    let offsets = [0x1000u64, 0x2000];
    let cookies = [7u64, 8];
    let member = UprobeMultiLink::new(path, &offsets, &[], &cookies, 1, 4242).expect("two offsets, two cookies");
    let attr = LinkCreateAttr::new(3, 0, lb::BPF_TRACE_UPROBE_MULTI, 0).with_target(member);

    // SAFETY: (test code) an all-zero `bpf_attr` is valid; the fields are then set by name.
    let mut theirs: lb::bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: (test code) writing plain integers into the link_create member of a zeroed union.
    unsafe {
        theirs.link_create.__bindgen_anon_1.prog_fd = 3;
        theirs.link_create.attach_type = lb::BPF_TRACE_UPROBE_MULTI;
        let u = &mut theirs.link_create.__bindgen_anon_3.uprobe_multi;
        u.path = path.as_ptr() as u64;
        u.offsets = offsets.as_ptr() as u64;
        u.cookies = cookies.as_ptr() as u64;
        u.cnt = 2;
        u.flags = 1;
        u.pid = 4242;
    }
    let ours = attr_bytes(&attr);
    assert_eq!(ours[..], bytemuck_bytes(&theirs)[..ours.len()], "uprobe_multi bytes");

    let mut nf = LinkCreateAttr::new(3, 0, lb::BPF_NETFILTER, 0);
    nf.set_target(NetfilterLink { pf: 2, hooknum: 1, priority: -128, flags: 1 });
    // SAFETY: as above.
    let mut theirs: lb::bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        theirs.link_create.__bindgen_anon_1.prog_fd = 3;
        theirs.link_create.attach_type = lb::BPF_NETFILTER;
        let n = &mut theirs.link_create.__bindgen_anon_3.netfilter;
        n.pf = 2;
        n.hooknum = 1;
        n.priority = -128;
        n.flags = 1;
    }
    let ours = attr_bytes(&nf);
    assert_eq!(ours[..], bytemuck_bytes(&theirs)[..ours.len()], "netfilter bytes");

    // A later, shorter member clears what an earlier one left.
    nf.set_target(PerfEventLink { bpf_cookie: 9 });
    assert_eq!(nf.target, [9, 0, 0, 0, 0, 0]);

    // Mismatched lists are refused, not truncated.
    assert!(UprobeMultiLink::new(path, &offsets, &[1], &[], 0, 0).is_none());
    assert!(KprobeMultiLink::symbols(&[1, 2], &[1], 0).is_none());
}

#[test]
fn info_structs_match_libbpf_sys() {
    let mut n = 0;
    n += layout!(ProgInfoRaw => lb::bpf_prog_info {
        prog_type => type_, id, tag, jited_prog_len, xlated_prog_len, jited_prog_insns, xlated_prog_insns,
        load_time, created_by_uid, nr_map_ids, map_ids, name, ifindex, flags_bits => _bitfield_1,
        netns_dev, netns_ino, nr_jited_ksyms, nr_jited_func_lens, jited_ksyms, jited_func_lens, btf_id,
        func_info_rec_size, func_info, nr_func_info, nr_line_info, line_info, jited_line_info,
        nr_jited_line_info, line_info_rec_size, jited_line_info_rec_size, nr_prog_tags, prog_tags,
        run_time_ns, run_cnt, recursion_misses, verified_insns, attach_btf_obj_id, attach_btf_id,
    });
    n += layout!(MapInfoRaw => lb::bpf_map_info {
        map_type => type_, id, key_size, value_size, max_entries, map_flags, name, ifindex,
        btf_vmlinux_value_type_id, netns_dev, netns_ino, btf_id, btf_key_type_id, btf_value_type_id,
        btf_vmlinux_id, map_extra,
    });
    n += layout!(BtfInfoRaw => lb::bpf_btf_info { btf, btf_size, id, name, name_len, kernel_btf });
    n += layout!(LinkInfoRaw => lb::bpf_link_info { link_type => type_, id, prog_id });
    assert_eq!(offset_of!(LinkInfoRaw, detail), offset_of!(lb::bpf_link_info, __bindgen_anon_1));
    assert!(size_of::<LinkInfoRaw>() >= size_of::<lb::bpf_link_info>() || size_of::<lb::bpf_link_info>() - offset_of!(lb::bpf_link_info, __bindgen_anon_1) >= 64);
    println!("{n} info fields match libbpf-sys");
}

#[test]
fn command_numbers_match_libbpf_sys() {
    let pairs = [
        (Cmd::MapCreate, lb::BPF_MAP_CREATE),
        (Cmd::MapLookupElem, lb::BPF_MAP_LOOKUP_ELEM),
        (Cmd::MapUpdateElem, lb::BPF_MAP_UPDATE_ELEM),
        (Cmd::MapDeleteElem, lb::BPF_MAP_DELETE_ELEM),
        (Cmd::MapGetNextKey, lb::BPF_MAP_GET_NEXT_KEY),
        (Cmd::ProgLoad, lb::BPF_PROG_LOAD),
        (Cmd::ObjPin, lb::BPF_OBJ_PIN),
        (Cmd::ObjGet, lb::BPF_OBJ_GET),
        (Cmd::ProgAttach, lb::BPF_PROG_ATTACH),
        (Cmd::ProgDetach, lb::BPF_PROG_DETACH),
        (Cmd::ProgTestRun, lb::BPF_PROG_TEST_RUN),
        (Cmd::ProgGetNextId, lb::BPF_PROG_GET_NEXT_ID),
        (Cmd::MapGetNextId, lb::BPF_MAP_GET_NEXT_ID),
        (Cmd::ProgGetFdById, lb::BPF_PROG_GET_FD_BY_ID),
        (Cmd::MapGetFdById, lb::BPF_MAP_GET_FD_BY_ID),
        (Cmd::ObjGetInfoByFd, lb::BPF_OBJ_GET_INFO_BY_FD),
        (Cmd::ProgQuery, lb::BPF_PROG_QUERY),
        (Cmd::RawTracepointOpen, lb::BPF_RAW_TRACEPOINT_OPEN),
        (Cmd::BtfLoad, lb::BPF_BTF_LOAD),
        (Cmd::BtfGetFdById, lb::BPF_BTF_GET_FD_BY_ID),
        (Cmd::TaskFdQuery, lb::BPF_TASK_FD_QUERY),
        (Cmd::MapLookupAndDeleteElem, lb::BPF_MAP_LOOKUP_AND_DELETE_ELEM),
        (Cmd::MapFreeze, lb::BPF_MAP_FREEZE),
        (Cmd::BtfGetNextId, lb::BPF_BTF_GET_NEXT_ID),
        (Cmd::MapLookupBatch, lb::BPF_MAP_LOOKUP_BATCH),
        (Cmd::MapLookupAndDeleteBatch, lb::BPF_MAP_LOOKUP_AND_DELETE_BATCH),
        (Cmd::MapUpdateBatch, lb::BPF_MAP_UPDATE_BATCH),
        (Cmd::MapDeleteBatch, lb::BPF_MAP_DELETE_BATCH),
        (Cmd::LinkCreate, lb::BPF_LINK_CREATE),
        (Cmd::LinkUpdate, lb::BPF_LINK_UPDATE),
        (Cmd::LinkGetFdById, lb::BPF_LINK_GET_FD_BY_ID),
        (Cmd::LinkGetNextId, lb::BPF_LINK_GET_NEXT_ID),
        (Cmd::EnableStats, lb::BPF_ENABLE_STATS),
        (Cmd::IterCreate, lb::BPF_ITER_CREATE),
        (Cmd::LinkDetach, lb::BPF_LINK_DETACH),
        (Cmd::ProgBindMap, lb::BPF_PROG_BIND_MAP),
    ];
    for (ours, theirs) in pairs {
        assert_eq!(ours.raw(), theirs, "{ours:?}");
    }
}

#[test]
fn type_enums_match_libbpf_sys() {
    // libbpf-sys's header may be newer than Linux 6.18 (tests/kernel_maps.rs checks completeness
    // against the running kernel's BTF); here every number bpfkit has must be libbpf's.
    assert!((MapType::ALL.len() as u32) < lb::__MAX_BPF_MAP_TYPE);
    assert_eq!(MapType::Arena.raw(), lb::BPF_MAP_TYPE_ARENA);
    assert_eq!(MapType::CgrpStorage.raw(), lb::BPF_MAP_TYPE_CGRP_STORAGE);
    assert!((ProgType::ALL.len() as u32) < lb::__MAX_BPF_PROG_TYPE);
    assert_eq!(ProgType::Netfilter.raw(), lb::BPF_PROG_TYPE_NETFILTER);
    assert!(AttachType::ALL.len() as u32 <= lb::__MAX_BPF_ATTACH_TYPE);
    assert_eq!(AttachType::TraceUprobeSession.raw(), lb::BPF_TRACE_UPROBE_SESSION);
}
