//! `enum bpf_prog_type`, `enum bpf_attach_type` and the program load flags.

use crate::maps::kernel_enum;

kernel_enum! {
    /// `enum bpf_prog_type` as of Linux 6.18.
    ProgType {
        /// `BPF_PROG_TYPE_SOCKET_FILTER`: filters packets of a socket (`SO_ATTACH_BPF`).
        SocketFilter = 1, "socket_filter";
        /// `BPF_PROG_TYPE_KPROBE`: kprobes, uprobes and their multi and return variants.
        Kprobe = 2, "kprobe";
        /// `BPF_PROG_TYPE_SCHED_CLS`: a tc classifier (cls_bpf, tcx).
        SchedCls = 3, "sched_cls";
        /// `BPF_PROG_TYPE_SCHED_ACT`: a tc action (act_bpf).
        SchedAct = 4, "sched_act";
        /// `BPF_PROG_TYPE_TRACEPOINT`: a tracefs tracepoint.
        Tracepoint = 5, "tracepoint";
        /// `BPF_PROG_TYPE_XDP`: XDP: packets in the driver, before any skb.
        Xdp = 6, "xdp";
        /// `BPF_PROG_TYPE_PERF_EVENT`: runs on perf event samples.
        PerfEvent = 7, "perf_event";
        /// `BPF_PROG_TYPE_CGROUP_SKB`: packets entering or leaving a cgroup.
        CgroupSkb = 8, "cgroup_skb";
        /// `BPF_PROG_TYPE_CGROUP_SOCK`: socket creation, release and binds of a cgroup.
        CgroupSock = 9, "cgroup_sock";
        /// `BPF_PROG_TYPE_LWT_IN`: lightweight tunnel input.
        LwtIn = 10, "lwt_in";
        /// `BPF_PROG_TYPE_LWT_OUT`: lightweight tunnel output.
        LwtOut = 11, "lwt_out";
        /// `BPF_PROG_TYPE_LWT_XMIT`: lightweight tunnel transmit.
        LwtXmit = 12, "lwt_xmit";
        /// `BPF_PROG_TYPE_SOCK_OPS`: TCP socket events of a cgroup.
        SockOps = 13, "sock_ops";
        /// `BPF_PROG_TYPE_SK_SKB`: skbs of sockets in a sockmap (parser, verdict).
        SkSkb = 14, "sk_skb";
        /// `BPF_PROG_TYPE_CGROUP_DEVICE`: device access of a cgroup.
        CgroupDevice = 15, "cgroup_device";
        /// `BPF_PROG_TYPE_SK_MSG`: sendmsg data of sockets in a sockmap.
        SkMsg = 16, "sk_msg";
        /// `BPF_PROG_TYPE_RAW_TRACEPOINT`: a raw tracepoint (untranslated arguments).
        RawTracepoint = 17, "raw_tracepoint";
        /// `BPF_PROG_TYPE_CGROUP_SOCK_ADDR`: connect, bind, sendmsg, … addresses of a cgroup.
        CgroupSockAddr = 18, "cgroup_sock_addr";
        /// `BPF_PROG_TYPE_LWT_SEG6LOCAL`: SRv6 local actions (seg6local).
        LwtSeg6local = 19, "lwt_seg6local";
        /// `BPF_PROG_TYPE_LIRC_MODE2`: decodes infrared (LIRC mode2) samples.
        LircMode2 = 20, "lirc_mode2";
        /// `BPF_PROG_TYPE_SK_REUSEPORT`: selects a socket of a SO_REUSEPORT group.
        SkReuseport = 21, "sk_reuseport";
        /// `BPF_PROG_TYPE_FLOW_DISSECTOR`: dissects flows instead of the kernel.
        FlowDissector = 22, "flow_dissector";
        /// `BPF_PROG_TYPE_CGROUP_SYSCTL`: sysctl access of a cgroup.
        CgroupSysctl = 23, "cgroup_sysctl";
        /// `BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE`: a raw tracepoint that may write its buffer argument.
        RawTracepointWritable = 24, "raw_tracepoint_writable";
        /// `BPF_PROG_TYPE_CGROUP_SOCKOPT`: getsockopt and setsockopt of a cgroup.
        CgroupSockopt = 25, "cgroup_sockopt";
        /// `BPF_PROG_TYPE_TRACING`: fentry, fexit, fmod_ret, tp_btf and iterators (BTF-typed).
        Tracing = 26, "tracing";
        /// `BPF_PROG_TYPE_STRUCT_OPS`: implements a member of a kernel ops struct.
        StructOps = 27, "struct_ops";
        /// `BPF_PROG_TYPE_EXT`: replaces a function of another BPF program (freplace).
        Ext = 28, "ext";
        /// `BPF_PROG_TYPE_LSM`: an LSM hook.
        Lsm = 29, "lsm";
        /// `BPF_PROG_TYPE_SK_LOOKUP`: selects the socket for an incoming connection or packet.
        SkLookup = 30, "sk_lookup";
        /// `BPF_PROG_TYPE_SYSCALL`: runs from bpf(2) `BPF_PROG_TEST_RUN`, may call bpf(2) itself (loaders).
        Syscall = 31, "syscall";
        /// `BPF_PROG_TYPE_NETFILTER`: a netfilter hook (6.4+).
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
        /// `BPF_CGROUP_INET_INGRESS`: cgroup_skb: packets entering the cgroup.
        CgroupInetIngress = 0, "cgroup_inet_ingress";
        /// `BPF_CGROUP_INET_EGRESS`: cgroup_skb: packets leaving the cgroup.
        CgroupInetEgress = 1, "cgroup_inet_egress";
        /// `BPF_CGROUP_INET_SOCK_CREATE`: cgroup_sock: socket creation.
        CgroupInetSockCreate = 2, "cgroup_inet_sock_create";
        /// `BPF_CGROUP_SOCK_OPS`: sock_ops of a cgroup.
        CgroupSockOps = 3, "cgroup_sock_ops";
        /// `BPF_SK_SKB_STREAM_PARSER`: sk_skb stream parser of a sockmap.
        SkSkbStreamParser = 4, "sk_skb_stream_parser";
        /// `BPF_SK_SKB_STREAM_VERDICT`: sk_skb stream verdict of a sockmap.
        SkSkbStreamVerdict = 5, "sk_skb_stream_verdict";
        /// `BPF_CGROUP_DEVICE`: cgroup_device.
        CgroupDevice = 6, "cgroup_device";
        /// `BPF_SK_MSG_VERDICT`: sk_msg verdict of a sockmap.
        SkMsgVerdict = 7, "sk_msg_verdict";
        /// `BPF_CGROUP_INET4_BIND`: cgroup_sock_addr: IPv4 bind.
        CgroupInet4Bind = 8, "cgroup_inet4_bind";
        /// `BPF_CGROUP_INET6_BIND`: cgroup_sock_addr: IPv6 bind.
        CgroupInet6Bind = 9, "cgroup_inet6_bind";
        /// `BPF_CGROUP_INET4_CONNECT`: cgroup_sock_addr: IPv4 connect.
        CgroupInet4Connect = 10, "cgroup_inet4_connect";
        /// `BPF_CGROUP_INET6_CONNECT`: cgroup_sock_addr: IPv6 connect.
        CgroupInet6Connect = 11, "cgroup_inet6_connect";
        /// `BPF_CGROUP_INET4_POST_BIND`: cgroup_sock: after an IPv4 bind.
        CgroupInet4PostBind = 12, "cgroup_inet4_post_bind";
        /// `BPF_CGROUP_INET6_POST_BIND`: cgroup_sock: after an IPv6 bind.
        CgroupInet6PostBind = 13, "cgroup_inet6_post_bind";
        /// `BPF_CGROUP_UDP4_SENDMSG`: cgroup_sock_addr: UDPv4 sendmsg.
        CgroupUdp4Sendmsg = 14, "cgroup_udp4_sendmsg";
        /// `BPF_CGROUP_UDP6_SENDMSG`: cgroup_sock_addr: UDPv6 sendmsg.
        CgroupUdp6Sendmsg = 15, "cgroup_udp6_sendmsg";
        /// `BPF_LIRC_MODE2`: lirc_mode2 on a LIRC device.
        LircMode2 = 16, "lirc_mode2";
        /// `BPF_FLOW_DISSECTOR`: flow dissector of a network namespace.
        FlowDissector = 17, "flow_dissector";
        /// `BPF_CGROUP_SYSCTL`: cgroup_sysctl.
        CgroupSysctl = 18, "cgroup_sysctl";
        /// `BPF_CGROUP_UDP4_RECVMSG`: cgroup_sock_addr: UDPv4 recvmsg.
        CgroupUdp4Recvmsg = 19, "cgroup_udp4_recvmsg";
        /// `BPF_CGROUP_UDP6_RECVMSG`: cgroup_sock_addr: UDPv6 recvmsg.
        CgroupUdp6Recvmsg = 20, "cgroup_udp6_recvmsg";
        /// `BPF_CGROUP_GETSOCKOPT`: cgroup_sockopt: getsockopt.
        CgroupGetsockopt = 21, "cgroup_getsockopt";
        /// `BPF_CGROUP_SETSOCKOPT`: cgroup_sockopt: setsockopt.
        CgroupSetsockopt = 22, "cgroup_setsockopt";
        /// `BPF_TRACE_RAW_TP`: tracing: a BTF-typed raw tracepoint (tp_btf).
        TraceRawTp = 23, "trace_raw_tp";
        /// `BPF_TRACE_FENTRY`: tracing: function entry (fentry).
        TraceFentry = 24, "trace_fentry";
        /// `BPF_TRACE_FEXIT`: tracing: function exit (fexit).
        TraceFexit = 25, "trace_fexit";
        /// `BPF_MODIFY_RETURN`: tracing: modify a function's return (fmod_ret).
        ModifyReturn = 26, "modify_return";
        /// `BPF_LSM_MAC`: lsm: an LSM hook.
        LsmMac = 27, "lsm_mac";
        /// `BPF_TRACE_ITER`: tracing: a BPF iterator.
        TraceIter = 28, "trace_iter";
        /// `BPF_CGROUP_INET4_GETPEERNAME`: cgroup_sock_addr: IPv4 getpeername.
        CgroupInet4Getpeername = 29, "cgroup_inet4_getpeername";
        /// `BPF_CGROUP_INET6_GETPEERNAME`: cgroup_sock_addr: IPv6 getpeername.
        CgroupInet6Getpeername = 30, "cgroup_inet6_getpeername";
        /// `BPF_CGROUP_INET4_GETSOCKNAME`: cgroup_sock_addr: IPv4 getsockname.
        CgroupInet4Getsockname = 31, "cgroup_inet4_getsockname";
        /// `BPF_CGROUP_INET6_GETSOCKNAME`: cgroup_sock_addr: IPv6 getsockname.
        CgroupInet6Getsockname = 32, "cgroup_inet6_getsockname";
        /// `BPF_XDP_DEVMAP`: xdp: a program run on redirect through a devmap entry.
        XdpDevmap = 33, "xdp_devmap";
        /// `BPF_CGROUP_INET_SOCK_RELEASE`: cgroup_sock: socket release.
        CgroupInetSockRelease = 34, "cgroup_inet_sock_release";
        /// `BPF_XDP_CPUMAP`: xdp: a program run on redirect through a cpumap entry.
        XdpCpumap = 35, "xdp_cpumap";
        /// `BPF_SK_LOOKUP`: sk_lookup of a network namespace.
        SkLookup = 36, "sk_lookup";
        /// `BPF_XDP`: xdp through a bpf_link.
        Xdp = 37, "xdp";
        /// `BPF_SK_SKB_VERDICT`: sk_skb verdict of a sockmap (no parser).
        SkSkbVerdict = 38, "sk_skb_verdict";
        /// `BPF_SK_REUSEPORT_SELECT`: sk_reuseport: select a socket.
        SkReuseportSelect = 39, "sk_reuseport_select";
        /// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`: sk_reuseport: select, or migrate on close.
        SkReuseportSelectOrMigrate = 40, "sk_reuseport_select_or_migrate";
        /// `BPF_PERF_EVENT`: perf_event through a bpf_link.
        PerfEvent = 41, "perf_event";
        /// `BPF_TRACE_KPROBE_MULTI`: kprobe: a kprobe.multi link.
        TraceKprobeMulti = 42, "trace_kprobe_multi";
        /// `BPF_LSM_CGROUP`: lsm: an LSM hook for one cgroup.
        LsmCgroup = 43, "lsm_cgroup";
        /// `BPF_STRUCT_OPS`: struct_ops.
        StructOps = 44, "struct_ops";
        /// `BPF_NETFILTER`: netfilter.
        Netfilter = 45, "netfilter";
        /// `BPF_TCX_INGRESS`: sched_cls: tcx ingress (6.6+).
        TcxIngress = 46, "tcx_ingress";
        /// `BPF_TCX_EGRESS`: sched_cls: tcx egress (6.6+).
        TcxEgress = 47, "tcx_egress";
        /// `BPF_TRACE_UPROBE_MULTI`: kprobe: a uprobe.multi link (6.6+).
        TraceUprobeMulti = 48, "trace_uprobe_multi";
        /// `BPF_CGROUP_UNIX_CONNECT`: cgroup_sock_addr: Unix socket connect (6.7+).
        CgroupUnixConnect = 49, "cgroup_unix_connect";
        /// `BPF_CGROUP_UNIX_SENDMSG`: cgroup_sock_addr: Unix socket sendmsg (6.7+).
        CgroupUnixSendmsg = 50, "cgroup_unix_sendmsg";
        /// `BPF_CGROUP_UNIX_RECVMSG`: cgroup_sock_addr: Unix socket recvmsg (6.7+).
        CgroupUnixRecvmsg = 51, "cgroup_unix_recvmsg";
        /// `BPF_CGROUP_UNIX_GETPEERNAME`: cgroup_sock_addr: Unix socket getpeername (6.7+).
        CgroupUnixGetpeername = 52, "cgroup_unix_getpeername";
        /// `BPF_CGROUP_UNIX_GETSOCKNAME`: cgroup_sock_addr: Unix socket getsockname (6.7+).
        CgroupUnixGetsockname = 53, "cgroup_unix_getsockname";
        /// `BPF_NETKIT_PRIMARY`: sched_cls: the primary device of a netkit pair (6.7+).
        NetkitPrimary = 54, "netkit_primary";
        /// `BPF_NETKIT_PEER`: sched_cls: the peer device of a netkit pair (6.7+).
        NetkitPeer = 55, "netkit_peer";
        /// `BPF_TRACE_KPROBE_SESSION`: kprobe: a kprobe session (entry and return, 6.10+).
        TraceKprobeSession = 56, "trace_kprobe_session";
        /// `BPF_TRACE_UPROBE_SESSION`: kprobe: a uprobe session (entry and return, 6.13+).
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
