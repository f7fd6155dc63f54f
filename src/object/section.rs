//! Program section names → program type, expected attach type, load flags and attach target,
//! by libbpf 1.7's `section_defs` table (`src/libbpf.c`) and its matching rules.

use crate::prog::{AttachType, ProgFlags, ProgType};

/// How the attach target is named after the section prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Nothing after the name (or ignored).
    None,
    /// `tracepoint/<category>/<name>`.
    Tracepoint,
    /// `raw_tp/<name>`.
    RawTracepoint,
    /// A kernel function: `kprobe/<func>`.
    Kprobe { ret: bool },
    /// `uprobe/<binary>:<symbol>` or bare `uprobe` (target given at attach time).
    Uprobe { ret: bool },
    /// A BTF name in vmlinux: `prefix` + the section's suffix (`btf_trace_` for tp_btf).
    Btf { prefix: &'static str, func: bool },
}

/// One `SEC_DEF`: the section prefix, and what a section matching it means.
struct SecDef {
    /// Matching as libbpf: ends in `+`: exact or followed by `/`; otherwise exact.
    sec: &'static str,
    prog_type: ProgType,
    attach: Option<AttachType>,
    flags: ProgFlags,
    target: Target,
}

const fn def(sec: &'static str, prog_type: ProgType, attach: Option<AttachType>, target: Target) -> SecDef {
    SecDef { sec, prog_type, attach, flags: ProgFlags(0), target }
}

const fn sleepable(mut d: SecDef) -> SecDef {
    d.flags = ProgFlags::SLEEPABLE;
    d
}

const fn frags(mut d: SecDef) -> SecDef {
    d.flags = ProgFlags::XDP_HAS_FRAGS;
    d
}

use AttachType as A;
use ProgType as P;
use Target as T;

const fn btf(prefix: &'static str, func: bool) -> Target {
    Target::Btf { prefix, func }
}

/// libbpf's table, in its order (the first match wins).
static SECTION_DEFS: &[SecDef] = &[
    def("socket", P::SocketFilter, None, T::None),
    def("sk_reuseport/migrate", P::SkReuseport, Some(A::SkReuseportSelectOrMigrate), T::None),
    def("sk_reuseport", P::SkReuseport, Some(A::SkReuseportSelect), T::None),
    def("kprobe+", P::Kprobe, None, T::Kprobe { ret: false }),
    def("uprobe+", P::Kprobe, None, T::Uprobe { ret: false }),
    sleepable(def("uprobe.s+", P::Kprobe, None, T::Uprobe { ret: false })),
    def("kretprobe+", P::Kprobe, None, T::Kprobe { ret: true }),
    def("uretprobe+", P::Kprobe, None, T::Uprobe { ret: true }),
    sleepable(def("uretprobe.s+", P::Kprobe, None, T::Uprobe { ret: true })),
    def("kprobe.multi+", P::Kprobe, Some(A::TraceKprobeMulti), T::None),
    def("kretprobe.multi+", P::Kprobe, Some(A::TraceKprobeMulti), T::None),
    def("kprobe.session+", P::Kprobe, Some(A::TraceKprobeSession), T::None),
    def("uprobe.multi+", P::Kprobe, Some(A::TraceUprobeMulti), T::None),
    def("uretprobe.multi+", P::Kprobe, Some(A::TraceUprobeMulti), T::None),
    def("uprobe.session+", P::Kprobe, Some(A::TraceUprobeSession), T::None),
    sleepable(def("uprobe.multi.s+", P::Kprobe, Some(A::TraceUprobeMulti), T::None)),
    sleepable(def("uretprobe.multi.s+", P::Kprobe, Some(A::TraceUprobeMulti), T::None)),
    sleepable(def("uprobe.session.s+", P::Kprobe, Some(A::TraceUprobeSession), T::None)),
    def("ksyscall+", P::Kprobe, None, T::None),
    def("kretsyscall+", P::Kprobe, None, T::None),
    def("usdt+", P::Kprobe, None, T::None),
    sleepable(def("usdt.s+", P::Kprobe, None, T::None)),
    def("tc/ingress", P::SchedCls, Some(A::TcxIngress), T::None),
    def("tc/egress", P::SchedCls, Some(A::TcxEgress), T::None),
    def("tcx/ingress", P::SchedCls, Some(A::TcxIngress), T::None),
    def("tcx/egress", P::SchedCls, Some(A::TcxEgress), T::None),
    def("tc", P::SchedCls, None, T::None),
    def("classifier", P::SchedCls, None, T::None),
    def("action", P::SchedAct, None, T::None),
    def("netkit/primary", P::SchedCls, Some(A::NetkitPrimary), T::None),
    def("netkit/peer", P::SchedCls, Some(A::NetkitPeer), T::None),
    def("tracepoint+", P::Tracepoint, None, T::Tracepoint),
    def("tp+", P::Tracepoint, None, T::Tracepoint),
    def("raw_tracepoint+", P::RawTracepoint, None, T::RawTracepoint),
    def("raw_tp+", P::RawTracepoint, None, T::RawTracepoint),
    def("raw_tracepoint.w+", P::RawTracepointWritable, None, T::RawTracepoint),
    def("raw_tp.w+", P::RawTracepointWritable, None, T::RawTracepoint),
    def("tp_btf+", P::Tracing, Some(A::TraceRawTp), btf("btf_trace_", false)),
    def("fentry+", P::Tracing, Some(A::TraceFentry), btf("", true)),
    def("fmod_ret+", P::Tracing, Some(A::ModifyReturn), btf("", true)),
    def("fexit+", P::Tracing, Some(A::TraceFexit), btf("", true)),
    sleepable(def("fentry.s+", P::Tracing, Some(A::TraceFentry), btf("", true))),
    sleepable(def("fmod_ret.s+", P::Tracing, Some(A::ModifyReturn), btf("", true))),
    sleepable(def("fexit.s+", P::Tracing, Some(A::TraceFexit), btf("", true))),
    def("freplace+", P::Ext, None, T::None),
    def("lsm+", P::Lsm, Some(A::LsmMac), btf("bpf_lsm_", true)),
    sleepable(def("lsm.s+", P::Lsm, Some(A::LsmMac), btf("bpf_lsm_", true))),
    def("lsm_cgroup+", P::Lsm, Some(A::LsmCgroup), btf("bpf_lsm_", true)),
    def("iter+", P::Tracing, Some(A::TraceIter), btf("bpf_iter_", true)),
    sleepable(def("iter.s+", P::Tracing, Some(A::TraceIter), btf("bpf_iter_", true))),
    sleepable(def("syscall", P::Syscall, None, T::None)),
    frags(def("xdp.frags/devmap", P::Xdp, Some(A::XdpDevmap), T::None)),
    def("xdp/devmap", P::Xdp, Some(A::XdpDevmap), T::None),
    frags(def("xdp.frags/cpumap", P::Xdp, Some(A::XdpCpumap), T::None)),
    def("xdp/cpumap", P::Xdp, Some(A::XdpCpumap), T::None),
    frags(def("xdp.frags", P::Xdp, Some(A::Xdp), T::None)),
    def("xdp", P::Xdp, Some(A::Xdp), T::None),
    def("perf_event", P::PerfEvent, None, T::None),
    def("lwt_in", P::LwtIn, None, T::None),
    def("lwt_out", P::LwtOut, None, T::None),
    def("lwt_xmit", P::LwtXmit, None, T::None),
    def("lwt_seg6local", P::LwtSeg6local, None, T::None),
    def("sockops", P::SockOps, Some(A::CgroupSockOps), T::None),
    def("sk_skb/stream_parser", P::SkSkb, Some(A::SkSkbStreamParser), T::None),
    def("sk_skb/stream_verdict", P::SkSkb, Some(A::SkSkbStreamVerdict), T::None),
    def("sk_skb/verdict", P::SkSkb, Some(A::SkSkbVerdict), T::None),
    def("sk_skb", P::SkSkb, None, T::None),
    def("sk_msg", P::SkMsg, Some(A::SkMsgVerdict), T::None),
    def("lirc_mode2", P::LircMode2, Some(A::LircMode2), T::None),
    def("flow_dissector", P::FlowDissector, Some(A::FlowDissector), T::None),
    def("cgroup_skb/ingress", P::CgroupSkb, Some(A::CgroupInetIngress), T::None),
    def("cgroup_skb/egress", P::CgroupSkb, Some(A::CgroupInetEgress), T::None),
    def("cgroup/skb", P::CgroupSkb, None, T::None),
    def("cgroup/sock_create", P::CgroupSock, Some(A::CgroupInetSockCreate), T::None),
    def("cgroup/sock_release", P::CgroupSock, Some(A::CgroupInetSockRelease), T::None),
    def("cgroup/sock", P::CgroupSock, Some(A::CgroupInetSockCreate), T::None),
    def("cgroup/post_bind4", P::CgroupSock, Some(A::CgroupInet4PostBind), T::None),
    def("cgroup/post_bind6", P::CgroupSock, Some(A::CgroupInet6PostBind), T::None),
    def("cgroup/bind4", P::CgroupSockAddr, Some(A::CgroupInet4Bind), T::None),
    def("cgroup/bind6", P::CgroupSockAddr, Some(A::CgroupInet6Bind), T::None),
    def("cgroup/connect4", P::CgroupSockAddr, Some(A::CgroupInet4Connect), T::None),
    def("cgroup/connect6", P::CgroupSockAddr, Some(A::CgroupInet6Connect), T::None),
    def("cgroup/connect_unix", P::CgroupSockAddr, Some(A::CgroupUnixConnect), T::None),
    def("cgroup/sendmsg4", P::CgroupSockAddr, Some(A::CgroupUdp4Sendmsg), T::None),
    def("cgroup/sendmsg6", P::CgroupSockAddr, Some(A::CgroupUdp6Sendmsg), T::None),
    def("cgroup/sendmsg_unix", P::CgroupSockAddr, Some(A::CgroupUnixSendmsg), T::None),
    def("cgroup/recvmsg4", P::CgroupSockAddr, Some(A::CgroupUdp4Recvmsg), T::None),
    def("cgroup/recvmsg6", P::CgroupSockAddr, Some(A::CgroupUdp6Recvmsg), T::None),
    def("cgroup/recvmsg_unix", P::CgroupSockAddr, Some(A::CgroupUnixRecvmsg), T::None),
    def("cgroup/getpeername4", P::CgroupSockAddr, Some(A::CgroupInet4Getpeername), T::None),
    def("cgroup/getpeername6", P::CgroupSockAddr, Some(A::CgroupInet6Getpeername), T::None),
    def("cgroup/getpeername_unix", P::CgroupSockAddr, Some(A::CgroupUnixGetpeername), T::None),
    def("cgroup/getsockname4", P::CgroupSockAddr, Some(A::CgroupInet4Getsockname), T::None),
    def("cgroup/getsockname6", P::CgroupSockAddr, Some(A::CgroupInet6Getsockname), T::None),
    def("cgroup/getsockname_unix", P::CgroupSockAddr, Some(A::CgroupUnixGetsockname), T::None),
    def("cgroup/sysctl", P::CgroupSysctl, Some(A::CgroupSysctl), T::None),
    def("cgroup/getsockopt", P::CgroupSockopt, Some(A::CgroupGetsockopt), T::None),
    def("cgroup/setsockopt", P::CgroupSockopt, Some(A::CgroupSetsockopt), T::None),
    def("cgroup/dev", P::CgroupDevice, Some(A::CgroupDevice), T::None),
    def("struct_ops+", P::StructOps, None, T::None),
    sleepable(def("struct_ops.s+", P::StructOps, None, T::None)),
    def("sk_lookup", P::SkLookup, Some(A::SkLookup), T::None),
    def("netfilter", P::Netfilter, Some(A::Netfilter), T::None),
];

/// Where a program attaches, as its section names it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachTarget {
    /// Nothing in the name: the caller says where (an interface, a cgroup, a socket, …).
    None,
    /// `tp/<category>/<name>` or `tracepoint/<category>/<name>`: a tracefs tracepoint.
    Tracepoint {
        /// The tracepoint's category (its directory in tracefs, e.g. `syscalls`).
        category: String,
        /// The tracepoint's name (e.g. `sys_enter_openat`).
        name: String,
    },
    /// `raw_tp/<name>` or `raw_tracepoint/<name>`: a raw tracepoint.
    RawTracepoint {
        /// The tracepoint's name (e.g. `sys_enter`).
        name: String,
    },
    /// `kprobe/<function>[+<offset>]` or `kretprobe/<function>`.
    Kprobe {
        /// The kernel function to probe.
        function: String,
        /// The offset into the function (0 for its entry).
        offset: u64,
        /// A return probe (`kretprobe`).
        ret: bool,
    },
    /// `binary` and `symbol` are `None` for a bare `uprobe` section.
    Uprobe {
        /// The binary's path or name.
        binary: Option<String>,
        /// The symbol in the binary, possibly with `+<offset>`.
        symbol: Option<String>,
        /// A return probe (`uretprobe`).
        ret: bool,
    },
    /// A type in vmlinux BTF (`btf_trace_sys_enter`, `bpf_lsm_file_open`, `bpf_iter_task`, a
    /// kernel function for fentry), resolved to `attach_btf_id` at load.
    Btf {
        /// The name in BTF, with the section's prefix (`btf_trace_`, `bpf_lsm_`, …); empty if none given.
        name: String,
        /// `name` is a BTF `FUNC` (fentry, fexit, fmod_ret, LSM, iter), not tp_btf's `btf_trace_*` typedef.
        func: bool,
    },
}

/// What a program section's name means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionSpec {
    /// The program type the section name implies.
    pub prog_type: ProgType,
    /// The `expected_attach_type` it implies, if any.
    pub expected_attach_type: Option<AttachType>,
    /// The `prog_flags` it implies (e.g. sleepable for `.s` sections, XDP frags for `xdp.frags`).
    pub flags: ProgFlags,
    /// Where the program attaches, as far as the name says.
    pub target: AttachTarget,
    /// The section started with `?`: the program is not loaded unless asked for.
    pub optional: bool,
}

fn matches(def: &str, name: &str) -> bool {
    match def.strip_suffix('+') {
        Some(pfx) => name.strip_prefix(pfx).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        None => name == def,
    }
}

/// The meaning of program section `name` (`None` when libbpf would not know it either).
pub fn parse_section(name: &str) -> Option<SectionSpec> {
    let (optional, name) = match name.strip_prefix('?') {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let def = SECTION_DEFS.iter().find(|d| matches(d.sec, name))?;
    let base = def.sec.trim_end_matches('+');
    let extra = name.get(base.len()..).unwrap_or("");
    let extra = extra.strip_prefix('/').unwrap_or(extra);
    let target = match def.target {
        // A bare `fentry`/`lsm`/… names no target (empty: it must be set before load).
        T::Btf { func, .. } if extra.is_empty() => AttachTarget::Btf { name: String::new(), func },
        _ if extra.is_empty() => AttachTarget::None,
        T::None => AttachTarget::None,
        T::Tracepoint => match extra.split_once('/') {
            Some((category, name)) => AttachTarget::Tracepoint { category: category.into(), name: name.into() },
            None => AttachTarget::None,
        },
        T::RawTracepoint => AttachTarget::RawTracepoint { name: extra.into() },
        T::Kprobe { ret } => {
            let (function, offset) = match extra.split_once('+') {
                Some((f, off)) => (f, parse_u64(off).unwrap_or(0)),
                None => (extra, 0),
            };
            AttachTarget::Kprobe { function: function.into(), offset, ret }
        }
        T::Uprobe { ret } => match extra.rsplit_once(':') {
            Some((binary, symbol)) => {
                AttachTarget::Uprobe { binary: Some(binary.into()), symbol: Some(symbol.into()), ret }
            }
            None => AttachTarget::Uprobe { binary: Some(extra.into()), symbol: None, ret },
        },
        T::Btf { prefix, func } => AttachTarget::Btf { name: format!("{prefix}{extra}"), func },
    };
    let target = match (target, def.target) {
        (AttachTarget::None, T::Uprobe { ret }) => AttachTarget::Uprobe { binary: None, symbol: None, ret },
        (t, _) => t,
    };
    Some(SectionSpec { prog_type: def.prog_type, expected_attach_type: def.attach, flags: def.flags, target, optional })
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libbpf_conventions() {
        let s = parse_section("tracepoint/syscalls/sys_enter_openat").unwrap();
        assert_eq!(s.prog_type, ProgType::Tracepoint);
        assert_eq!(s.target, AttachTarget::Tracepoint { category: "syscalls".into(), name: "sys_enter_openat".into() });
        let s = parse_section("tcx/ingress").unwrap();
        assert_eq!((s.prog_type, s.expected_attach_type), (ProgType::SchedCls, Some(AttachType::TcxIngress)));
        let s = parse_section("?tp_btf/sched_switch").unwrap();
        assert!(s.optional);
        assert_eq!(s.target, AttachTarget::Btf { name: "btf_trace_sched_switch".into(), func: false });
        let s = parse_section("uprobe//bin/true:main").unwrap();
        assert_eq!(
            s.target,
            AttachTarget::Uprobe { binary: Some("/bin/true".into()), symbol: Some("main".into()), ret: false }
        );
        let s = parse_section("kretprobe/do_sys_open+0x10").unwrap();
        assert_eq!(s.target, AttachTarget::Kprobe { function: "do_sys_open".into(), offset: 16, ret: true });
        assert_eq!(parse_section("xdp.frags").unwrap().flags, ProgFlags::XDP_HAS_FRAGS);
        assert_eq!(parse_section("lsm.s/file_open").unwrap().flags, ProgFlags::SLEEPABLE);
        assert_eq!(
            parse_section("cgroup/connect4").unwrap().expected_attach_type,
            Some(AttachType::CgroupInet4Connect)
        );
        assert_eq!(
            parse_section("iter/task").unwrap().target,
            AttachTarget::Btf { name: "bpf_iter_task".into(), func: true }
        );
        assert!(parse_section("tracepointx").is_none());
        assert!(parse_section("xdpfoo").is_none());
        assert!(parse_section(".text").is_none());
    }
}

impl SectionSpec {
    /// Whether the section name alone says where to attach (as libbpf's `bpf_program__attach`
    /// can): tracepoints, raw tracepoints, BTF targets other than iterators, kprobes, and
    /// uprobes naming a binary and a symbol. Others (XDP, tc, cgroups, sockets, iterators, a
    /// bare `uprobe`) need a target from the caller.
    pub fn attaches_by_section(&self) -> bool {
        match &self.target {
            AttachTarget::Tracepoint { .. } | AttachTarget::RawTracepoint { .. } | AttachTarget::Kprobe { .. } => true,
            AttachTarget::Btf { .. } => self.expected_attach_type != Some(AttachType::TraceIter),
            AttachTarget::Uprobe { binary, symbol, .. } => binary.is_some() && symbol.is_some(),
            AttachTarget::None => false,
        }
    }
}
