//! `enum bpf_prog_type`, `enum bpf_attach_type` and the program load flags.

use crate::maps::kernel_enum;

kernel_enum! {
    /// `enum bpf_prog_type` as of Linux 6.18.
    ProgType {
        SocketFilter = 1, "socket_filter";
        Kprobe = 2, "kprobe";
        SchedCls = 3, "sched_cls";
        SchedAct = 4, "sched_act";
        Tracepoint = 5, "tracepoint";
        Xdp = 6, "xdp";
        PerfEvent = 7, "perf_event";
        CgroupSkb = 8, "cgroup_skb";
        CgroupSock = 9, "cgroup_sock";
        LwtIn = 10, "lwt_in";
        LwtOut = 11, "lwt_out";
        LwtXmit = 12, "lwt_xmit";
        SockOps = 13, "sock_ops";
        SkSkb = 14, "sk_skb";
        CgroupDevice = 15, "cgroup_device";
        SkMsg = 16, "sk_msg";
        RawTracepoint = 17, "raw_tracepoint";
        CgroupSockAddr = 18, "cgroup_sock_addr";
        LwtSeg6local = 19, "lwt_seg6local";
        LircMode2 = 20, "lirc_mode2";
        SkReuseport = 21, "sk_reuseport";
        FlowDissector = 22, "flow_dissector";
        CgroupSysctl = 23, "cgroup_sysctl";
        RawTracepointWritable = 24, "raw_tracepoint_writable";
        CgroupSockopt = 25, "cgroup_sockopt";
        Tracing = 26, "tracing";
        StructOps = 27, "struct_ops";
        Ext = 28, "ext";
        Lsm = 29, "lsm";
        SkLookup = 30, "sk_lookup";
        Syscall = 31, "syscall";
        Netfilter = 32, "netfilter";
    }
}

impl ProgType {
    /// The capabilities `BPF_PROG_LOAD` of this type needs (`bpf_prog_load()` in
    /// `kernel/bpf/syscall.c`): `CAP_BPF` (while `kernel.unprivileged_bpf_disabled` is set, as
    /// by default), plus `CAP_NET_ADMIN` for the types of `is_net_admin_prog_type()` and
    /// `CAP_PERFMON` for those of `is_perfmon_prog_type()`. `CAP_SYS_ADMIN` stands in for each.
    pub fn required_capabilities(self) -> &'static [crate::caps::Capability] {
        use crate::caps::Capability::{Bpf, NetAdmin, Perfmon};
        use ProgType::*;
        match self {
            Ext => &[Bpf, NetAdmin, Perfmon],
            SchedCls | SchedAct | Xdp | LwtIn | LwtOut | LwtXmit | LwtSeg6local | SkSkb | SkMsg | LircMode2 | FlowDissector
            | CgroupDevice | CgroupSock | CgroupSockAddr | CgroupSockopt | CgroupSysctl | SockOps | Netfilter => &[Bpf, NetAdmin],
            Kprobe | Tracepoint | PerfEvent | RawTracepoint | RawTracepointWritable | Tracing | Lsm | StructOps => &[Bpf, Perfmon],
            _ => &[Bpf],
        }
    }
}

kernel_enum! {
    /// `enum bpf_attach_type` as of Linux 6.18 (a program's expected attach type, and where
    /// links and PROG_ATTACH put it).
    AttachType {
        CgroupInetIngress = 0, "cgroup_inet_ingress";
        CgroupInetEgress = 1, "cgroup_inet_egress";
        CgroupInetSockCreate = 2, "cgroup_inet_sock_create";
        CgroupSockOps = 3, "cgroup_sock_ops";
        SkSkbStreamParser = 4, "sk_skb_stream_parser";
        SkSkbStreamVerdict = 5, "sk_skb_stream_verdict";
        CgroupDevice = 6, "cgroup_device";
        SkMsgVerdict = 7, "sk_msg_verdict";
        CgroupInet4Bind = 8, "cgroup_inet4_bind";
        CgroupInet6Bind = 9, "cgroup_inet6_bind";
        CgroupInet4Connect = 10, "cgroup_inet4_connect";
        CgroupInet6Connect = 11, "cgroup_inet6_connect";
        CgroupInet4PostBind = 12, "cgroup_inet4_post_bind";
        CgroupInet6PostBind = 13, "cgroup_inet6_post_bind";
        CgroupUdp4Sendmsg = 14, "cgroup_udp4_sendmsg";
        CgroupUdp6Sendmsg = 15, "cgroup_udp6_sendmsg";
        LircMode2 = 16, "lirc_mode2";
        FlowDissector = 17, "flow_dissector";
        CgroupSysctl = 18, "cgroup_sysctl";
        CgroupUdp4Recvmsg = 19, "cgroup_udp4_recvmsg";
        CgroupUdp6Recvmsg = 20, "cgroup_udp6_recvmsg";
        CgroupGetsockopt = 21, "cgroup_getsockopt";
        CgroupSetsockopt = 22, "cgroup_setsockopt";
        TraceRawTp = 23, "trace_raw_tp";
        TraceFentry = 24, "trace_fentry";
        TraceFexit = 25, "trace_fexit";
        ModifyReturn = 26, "modify_return";
        LsmMac = 27, "lsm_mac";
        TraceIter = 28, "trace_iter";
        CgroupInet4Getpeername = 29, "cgroup_inet4_getpeername";
        CgroupInet6Getpeername = 30, "cgroup_inet6_getpeername";
        CgroupInet4Getsockname = 31, "cgroup_inet4_getsockname";
        CgroupInet6Getsockname = 32, "cgroup_inet6_getsockname";
        XdpDevmap = 33, "xdp_devmap";
        CgroupInetSockRelease = 34, "cgroup_inet_sock_release";
        XdpCpumap = 35, "xdp_cpumap";
        SkLookup = 36, "sk_lookup";
        Xdp = 37, "xdp";
        SkSkbVerdict = 38, "sk_skb_verdict";
        SkReuseportSelect = 39, "sk_reuseport_select";
        SkReuseportSelectOrMigrate = 40, "sk_reuseport_select_or_migrate";
        PerfEvent = 41, "perf_event";
        TraceKprobeMulti = 42, "trace_kprobe_multi";
        LsmCgroup = 43, "lsm_cgroup";
        StructOps = 44, "struct_ops";
        Netfilter = 45, "netfilter";
        TcxIngress = 46, "tcx_ingress";
        TcxEgress = 47, "tcx_egress";
        TraceUprobeMulti = 48, "trace_uprobe_multi";
        CgroupUnixConnect = 49, "cgroup_unix_connect";
        CgroupUnixSendmsg = 50, "cgroup_unix_sendmsg";
        CgroupUnixRecvmsg = 51, "cgroup_unix_recvmsg";
        CgroupUnixGetpeername = 52, "cgroup_unix_getpeername";
        CgroupUnixGetsockname = 53, "cgroup_unix_getsockname";
        NetkitPrimary = 54, "netkit_primary";
        NetkitPeer = 55, "netkit_peer";
        TraceKprobeSession = 56, "trace_kprobe_session";
        TraceUprobeSession = 57, "trace_uprobe_session";
    }
}

/// `BPF_F_*` program load flags (`prog_flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ProgFlags(pub u32);

impl ProgFlags {
    /// `BPF_F_STRICT_ALIGNMENT`: the verifier checks alignment as if the arch required it.
    pub const STRICT_ALIGNMENT: ProgFlags = ProgFlags(1 << 0);
    /// `BPF_F_ANY_ALIGNMENT`: the verifier skips alignment checks (testing only).
    pub const ANY_ALIGNMENT: ProgFlags = ProgFlags(1 << 1);
    /// `BPF_F_TEST_RND_HI32`: the verifier fills the upper halves of 32-bit subregisters with random
    /// values (testing its zero-extension).
    pub const TEST_RND_HI32: ProgFlags = ProgFlags(1 << 2);
    /// `BPF_F_TEST_STATE_FREQ`: the verifier checkpoints states more often (testing only).
    pub const TEST_STATE_FREQ: ProgFlags = ProgFlags(1 << 3);
    /// Tracing, LSM and struct_ops programs that may sleep (call sleepable helpers/kfuncs).
    pub const SLEEPABLE: ProgFlags = ProgFlags(1 << 4);
    /// XDP programs that handle multi-buffer (fragmented) packets.
    pub const XDP_HAS_FRAGS: ProgFlags = ProgFlags(1 << 5);
    /// `BPF_F_XDP_DEV_BOUND_ONLY`: an XDP program bound to the device of `prog_ifindex` (kernel 6.3+).
    pub const XDP_DEV_BOUND_ONLY: ProgFlags = ProgFlags(1 << 6);
    /// `BPF_F_TEST_REG_INVARIANTS`: the verifier checks its register bounds invariants (testing only).
    pub const TEST_REG_INVARIANTS: ProgFlags = ProgFlags(1 << 7);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: ProgFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for ProgFlags {
    type Output = ProgFlags;
    fn bitor(self, rhs: ProgFlags) -> ProgFlags {
        ProgFlags(self.0 | rhs.0)
    }
}
