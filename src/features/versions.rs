//! The kernel version each feature first appeared in: static tables for program types, map types,
//! attach types, helpers and the system-level features, and [`KernelVersion`] itself.
//!
//! Sources: the isovalent/ebpf-docs `data/feature-versions.yaml` table (each entry names the
//! commit that introduced the feature) and the bcc `docs/kernel-versions.md` list; entries after
//! 6.2 (newer than both lists) from the merge windows of the commits that added the enum values.
//! Where the two lists disagree the commit's first release wins (ebpf-docs dates
//! `bpf_get_prandom_u32` to the 4.17 rename; the helper itself is 4.1).

use std::fmt;

use crate::prog::{AttachType, ProgType};
use crate::maps::MapType;

/// A kernel version, `major.minor.patch`. Ordered, so `kernel >= KernelVersion::new(5, 8, 0)` reads
/// as "at least 5.8".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// The major version (the 6 of 6.8.0).
    pub major: u32,
    /// The minor version (the 8 of 6.8.0).
    pub minor: u32,
    /// The patch level (the 0 of 6.8.0; distribution kernels may not bump it).
    pub patch: u32,
}

impl KernelVersion {
    /// The version `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelVersion { major, minor, patch }
    }

    /// Parse the leading `major.minor[.patch]` of a release string such as `6.18.44-fc-v595`
    /// (`/proc/sys/kernel/osrelease`); anything after the numbers is ignored.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor = leading_number(parts.next()?)?;
        let patch = parts.next().and_then(leading_number).unwrap_or(0);
        Some(KernelVersion { major, minor, patch })
    }

    /// `LINUX_VERSION_CODE` form, as `kern_version` of kprobe programs took it before 5.0
    /// (the patch level saturates at 255, as the kernel's `KERNEL_VERSION` macro does since 4.14.256).
    pub fn code(self) -> u32 {
        (self.major << 16) + (self.minor << 8) + self.patch.min(255)
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s[..end].parse().ok()
}

/// Versions print as `6.18.44`, or `5.8` when the patch level is 0 (how "since" versions read).
impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patch == 0 {
            write!(f, "{}.{}", self.major, self.minor)
        } else {
            write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
        }
    }
}

const fn v(major: u32, minor: u32) -> KernelVersion {
    KernelVersion::new(major, minor, 0)
}

/// The release that introduced program type `t`.
pub fn prog_type_since(t: ProgType) -> KernelVersion {
    use ProgType::*;
    match t {
        SocketFilter => v(3, 19),
        Kprobe | SchedCls | SchedAct => v(4, 1),
        Tracepoint => v(4, 7),
        Xdp => v(4, 8),
        PerfEvent => v(4, 9),
        CgroupSkb | CgroupSock | LwtIn | LwtOut | LwtXmit => v(4, 10),
        SockOps => v(4, 13),
        SkSkb => v(4, 14),
        CgroupDevice => v(4, 15),
        SkMsg | RawTracepoint | CgroupSockAddr => v(4, 17),
        LwtSeg6local | LircMode2 => v(4, 18),
        SkReuseport => v(4, 19),
        FlowDissector => v(4, 20),
        CgroupSysctl | RawTracepointWritable => v(5, 2),
        CgroupSockopt => v(5, 3),
        Tracing => v(5, 5),
        StructOps | Ext => v(5, 6),
        Lsm => v(5, 7),
        SkLookup => v(5, 9),
        Syscall => v(5, 14),
        Netfilter => v(6, 4),
    }
}

/// The release that introduced map type `t`.
pub fn map_type_since(t: MapType) -> KernelVersion {
    use MapType::*;
    match t {
        Hash | Array => v(3, 19),
        ProgArray => v(4, 2),
        PerfEventArray => v(4, 3),
        PercpuHash | PercpuArray | StackTrace => v(4, 6),
        CgroupArray => v(4, 8),
        LruHash | LruPercpuHash => v(4, 10),
        LpmTrie => v(4, 11),
        ArrayOfMaps | HashOfMaps => v(4, 12),
        Devmap | Sockmap => v(4, 14),
        Cpumap => v(4, 15),
        Xskmap | Sockhash => v(4, 18),
        CgroupStorage | ReuseportSockarray => v(4, 19),
        PercpuCgroupStorage | Queue | Stack => v(4, 20),
        SkStorage => v(5, 2),
        DevmapHash => v(5, 4),
        StructOps => v(5, 6),
        RingBuf => v(5, 8),
        InodeStorage => v(5, 10),
        TaskStorage => v(5, 11),
        BloomFilter => v(5, 16),
        UserRingBuf => v(6, 1),
        CgrpStorage => v(6, 2),
        Arena => v(6, 9),
    }
}

/// The release that introduced attach type `t`.
pub fn attach_type_since(t: AttachType) -> KernelVersion {
    use AttachType::*;
    match t {
        CgroupInetIngress | CgroupInetEgress | CgroupInetSockCreate => v(4, 10),
        CgroupSockOps => v(4, 13),
        SkSkbStreamParser | SkSkbStreamVerdict => v(4, 14),
        CgroupDevice => v(4, 15),
        SkMsgVerdict | CgroupInet4Bind | CgroupInet6Bind | CgroupInet4Connect | CgroupInet6Connect
        | CgroupInet4PostBind | CgroupInet6PostBind => v(4, 17),
        CgroupUdp4Sendmsg | CgroupUdp6Sendmsg | LircMode2 => v(4, 18),
        FlowDissector => v(4, 20),
        CgroupSysctl | CgroupUdp4Recvmsg | CgroupUdp6Recvmsg => v(5, 2),
        CgroupGetsockopt | CgroupSetsockopt => v(5, 3),
        TraceRawTp | TraceFentry | TraceFexit => v(5, 5),
        ModifyReturn | LsmMac => v(5, 7),
        TraceIter | CgroupInet4Getpeername | CgroupInet6Getpeername | CgroupInet4Getsockname
        | CgroupInet6Getsockname | XdpDevmap => v(5, 8),
        CgroupInetSockRelease | XdpCpumap | SkLookup | Xdp => v(5, 9),
        SkSkbVerdict => v(5, 13),
        SkReuseportSelect | SkReuseportSelectOrMigrate => v(5, 14),
        PerfEvent => v(5, 15),
        TraceKprobeMulti => v(5, 18),
        LsmCgroup => v(6, 0),
        StructOps | Netfilter => v(6, 4),
        TcxIngress | TcxEgress | TraceUprobeMulti => v(6, 6),
        CgroupUnixConnect | CgroupUnixSendmsg | CgroupUnixRecvmsg | CgroupUnixGetpeername
        | CgroupUnixGetsockname | NetkitPrimary | NetkitPeer => v(6, 7),
        TraceKprobeSession => v(6, 10),
        TraceUprobeSession => v(6, 13),
    }
}

/// Helper ids are appended to `enum bpf_func_id` in merge order, so the release of a helper is the
/// release of the last boundary at or below its id: `(first id of the release, its name, release)`.
/// The names make the table checkable against [`crate::helpers::ids`] (a unit test does).
const HELPER_RELEASES: &[(u32, &str, KernelVersion)] = &[
    (1, "bpf_map_lookup_elem", v(3, 18)),
    (3, "bpf_map_delete_elem", v(3, 19)),
    (4, "bpf_probe_read", v(4, 1)),
    (12, "bpf_tail_call", v(4, 2)),
    (17, "bpf_get_cgroup_classid", v(4, 3)),
    (23, "bpf_redirect", v(4, 4)),
    (26, "bpf_skb_load_bytes", v(4, 5)),
    (27, "bpf_get_stackid", v(4, 6)),
    (31, "bpf_skb_change_proto", v(4, 8)),
    (37, "bpf_current_task_under_cgroup", v(4, 9)),
    (42, "bpf_get_numa_node_id", v(4, 10)),
    (45, "bpf_probe_read_str", v(4, 11)),
    (46, "bpf_get_socket_cookie", v(4, 12)),
    (48, "bpf_set_hash", v(4, 13)),
    (51, "bpf_redirect_map", v(4, 14)),
    (54, "bpf_xdp_adjust_meta", v(4, 15)),
    (58, "bpf_override_return", v(4, 16)),
    (60, "bpf_msg_redirect_map", v(4, 17)),
    (65, "bpf_xdp_adjust_tail", v(4, 18)),
    (81, "bpf_get_local_storage", v(4, 19)),
    (84, "bpf_sk_lookup_tcp", v(4, 20)),
    (91, "bpf_msg_pop_data", v(5, 0)),
    (93, "bpf_spin_lock", v(5, 1)),
    (99, "bpf_skc_lookup_tcp", v(5, 2)),
    (109, "bpf_send_signal", v(5, 3)),
    (110, "bpf_tcp_gen_syncookie", v(5, 4)),
    (111, "bpf_skb_output", v(5, 5)),
    (116, "bpf_tcp_send_ack", v(5, 6)),
    (119, "bpf_read_branch_records", v(5, 7)),
    (125, "bpf_ktime_get_boot_ns", v(5, 8)),
    (136, "bpf_skc_to_tcp6_sock", v(5, 9)),
    (142, "bpf_load_hdr_opt", v(5, 10)),
    (156, "bpf_task_storage_get", v(5, 11)),
    (163, "bpf_check_mtu", v(5, 12)),
    (164, "bpf_for_each_map_elem", v(5, 13)),
    (166, "bpf_sys_bpf", v(5, 14)),
    (169, "bpf_timer_init", v(5, 15)),
    (176, "bpf_get_branch_snapshot", v(5, 16)),
    (180, "bpf_find_vma", v(5, 17)),
    (186, "bpf_get_retval", v(5, 18)),
    (194, "bpf_kptr_xchg", v(5, 19)),
    (204, "bpf_tcp_raw_gen_syncookie_ipv4", v(6, 0)),
    (208, "bpf_ktime_get_tai_ns", v(6, 1)),
    (210, "bpf_cgrp_storage_get", v(6, 2)),
];

/// The last helper id the table covers (`bpf_cgrp_storage_delete`; no helper has been added since 6.2).
pub const LAST_DATED_HELPER: u32 = 211;

/// The release that introduced helper `id`, if bpfkit knows it (ids past
/// [`LAST_DATED_HELPER`] would be newer than this table).
pub fn helper_since(id: u32) -> Option<KernelVersion> {
    if id == 0 || id > LAST_DATED_HELPER {
        return None;
    }
    HELPER_RELEASES.iter().rev().find(|(first, _, _)| *first <= id).map(|(_, _, version)| *version)
}

/// System-level features and the release each appeared in.
pub mod system {
    use super::{v, KernelVersion};
    /// The bpf(2) system call.
    pub const BPF_SYSCALL: KernelVersion = v(3, 18);
    /// The x86-64 eBPF JIT (`net.core.bpf_jit_enable`).
    pub const JIT_X86_64: KernelVersion = v(3, 16);
    /// `net.core.bpf_jit_harden`.
    pub const JIT_HARDEN: KernelVersion = v(4, 7);
    /// The BPF filesystem (pinning).
    pub const BPFFS: KernelVersion = v(4, 4);
    /// `kernel.unprivileged_bpf_disabled`.
    pub const UNPRIVILEGED_BPF_SYSCTL: KernelVersion = v(4, 4);
    /// `/sys/kernel/btf/vmlinux`.
    pub const BTF_VMLINUX: KernelVersion = v(5, 4);
    /// `CAP_BPF` and `CAP_PERFMON` (before 5.8 BPF needed `CAP_SYS_ADMIN`).
    pub const CAP_BPF: KernelVersion = v(5, 8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helpers::ids::HELPER_IDS;

    #[test]
    fn helper_boundaries_name_the_right_ids() {
        for (id, name, _) in HELPER_RELEASES {
            let known = HELPER_IDS.iter().find(|(i, _)| i == id).map(|(_, n)| *n);
            assert_eq!(known, Some(*name), "helper boundary {id}");
        }
        assert!(HELPER_RELEASES.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 < w[1].2));
        assert_eq!(HELPER_IDS.last().map(|(id, _)| *id), Some(LAST_DATED_HELPER));
    }

    #[test]
    fn helper_versions() {
        assert_eq!(helper_since(7), Some(v(4, 1))); // bpf_get_prandom_u32
        assert_eq!(helper_since(135), Some(v(5, 8))); // bpf_csum_level
        assert_eq!(helper_since(141), Some(v(5, 9))); // bpf_get_task_stack
        assert_eq!(helper_since(211), Some(v(6, 2)));
        assert_eq!(helper_since(0), None);
        assert_eq!(helper_since(212), None);
    }

    #[test]
    fn parse_release() {
        assert_eq!(KernelVersion::parse("6.18.44-fc-v595"), Some(KernelVersion::new(6, 18, 44)));
        assert_eq!(KernelVersion::parse("5.15.0-91-generic"), Some(KernelVersion::new(5, 15, 0)));
        assert_eq!(KernelVersion::parse("6.9-rc1"), Some(KernelVersion::new(6, 9, 0)));
        assert_eq!(KernelVersion::parse("6.1.300"), Some(KernelVersion::new(6, 1, 300)));
        assert_eq!(KernelVersion::parse("x.1"), None);
        assert_eq!(KernelVersion::new(4, 14, 300).code(), (4 << 16) + (14 << 8) + 255);
        assert_eq!(KernelVersion::new(5, 8, 0).to_string(), "5.8");
    }
}
