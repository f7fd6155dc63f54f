//! The probes themselves: each asks the kernel by creating the smallest object whose success or
//! specific failure answers the question, then closes it. Program and map types and helpers are
//! probed exactly as libbpf's `libbpf_probes.c` does (so bpftool's answers are comparable);
//! attach types, which libbpf does not probe, each get the cheapest request the kernel validates.
//!
//! Objects are created without names: kernels before 4.15 reject a name, and a probe must work
//! on the kernels it is meant to tell apart.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};

use super::versions::KernelVersion;
use super::{Method, Verdict};
use crate::insn::{call_helper, exit, ldx, mov64, Assembled, Reg, Size};
use crate::maps::{Map, MapError, MapFlags, MapSpec, MapType};
use crate::prog::{AttachType, LoadError, LoadOptions, ProgFlags, ProgType, Program};
use crate::sys::{self, BtfLoadAttr, Cmd, KprobeMultiLink, LinkCreateAttr, ProgQueryAttr, UprobeMultiLink};

/// The kernel's internal "operation not supported" (`ENOTSUPP`, not `EOPNOTSUPP`), which some
/// BPF paths return to user space.
const ENOTSUPP: i32 = 524;

/// `r0 = 0; exit`: accepted by every program type.
fn trivial() -> Assembled {
    returning(0)
}

/// `r0 = value; exit`. Attach types with a fixed return range (cgroup recvmsg, getpeername and
/// getsockname hooks must return 1) get 1, which every hook probed by loading accepts.
fn returning(value: i32) -> Assembled {
    Assembled::from_insns(vec![mov64(Reg::R0, value), exit()])
}

/// An errno as its symbolic name, for verdict details (`errno N` for one without a name).
pub(super) fn errno_name(errno: i32) -> String {
    crate::sys::errno_name(errno).map_or_else(|| format!("errno {errno}"), str::to_string)
}

fn yes(method: Method, detail: impl Into<String>) -> Verdict {
    Verdict { supported: Some(true), method, detail: detail.into(), since: None }
}

fn no(method: Method, detail: impl Into<String>) -> Verdict {
    Verdict { supported: Some(false), method, detail: detail.into(), since: None }
}

fn unknown(method: Method, detail: impl Into<String>) -> Verdict {
    Verdict { supported: None, method, detail: detail.into(), since: None }
}

/// What PROG_LOAD said.
enum Loaded {
    Yes,
    /// The errno, the verifier's decisive line (empty without a log) and the whole log.
    No { errno: i32, reason: String, log: String },
}

fn load(asm: &Assembled, opts: &LoadOptions) -> Loaded {
    match Program::load(asm, &[], opts) {
        // Dropping the program closes it: the probe leaves nothing behind.
        Ok(_program) => Loaded::Yes,
        Err(LoadError::Verifier { rejection, .. }) => {
            Loaded::No { errno: rejection.errno.raw_os_error().unwrap_or(0), reason: rejection.reason, log: rejection.log }
        }
        Err(LoadError::Sys(e)) => Loaded::No { errno: e.errno().unwrap_or(0), reason: String::new(), log: String::new() },
        // Refused for a reason the verifier does not give (ENOTSUPP for a type that needs more
        // than a plain load): the errno decides, the log's last lines come along.
        Err(LoadError::Refused { source, log_tail, .. }) => Loaded::No { errno: source.errno().unwrap_or(0), reason: String::new(), log: log_tail },
        Err(other) => Loaded::No { errno: 0, reason: other.to_string(), log: String::new() },
    }
}

/// `EINVAL: attach_btf_id 1 is not a function`, or just `EPERM` when there was no log.
fn describe_failure(errno: i32, reason: &str) -> String {
    let errno = errno_name(errno);
    if reason.is_empty() {
        format!("{errno} (refused before verification, no log)")
    } else {
        format!("{errno}: {reason}")
    }
}

/// A rejection that proves support: the errno and, when given, a log line the kernel only prints
/// once it has accepted the program type (or attach type) and moved on to checking the target.
#[derive(Clone, Copy)]
struct Expected {
    errno: i32,
    message: Option<&'static str>,
}

/// libbpf's load options for probing `t` (`probe_prog_load` in `libbpf_probes.c`): the expected
/// attach type the kernel insists on, and for the BTF-targeted types the rejection that proves
/// support, since a trivial program cannot have a valid target.
fn libbpf_options(t: ProgType, kernel: Option<KernelVersion>) -> (LoadOptions, Option<Expected>) {
    let opts = LoadOptions::new("", t);
    let einval = |message| Some(Expected { errno: libc::EINVAL, message: Some(message) });
    match t {
        ProgType::CgroupSockAddr => (opts.expected_attach_type(AttachType::CgroupInet4Connect), None),
        ProgType::CgroupSockopt => (opts.expected_attach_type(AttachType::CgroupGetsockopt), None),
        ProgType::SkLookup => (opts.expected_attach_type(AttachType::SkLookup), None),
        ProgType::LircMode2 => (opts.expected_attach_type(AttachType::LircMode2), None),
        ProgType::Netfilter => (opts.expected_attach_type(AttachType::Netfilter), None),
        // Kernels before 5.0 refuse a kprobe whose kern_version is not theirs.
        ProgType::Kprobe => (opts.kern_version(kernel.map(KernelVersion::code).unwrap_or(0)), None),
        // Sleepable, as libbpf loads it, so helper probes also reach the sleepable-only helpers.
        ProgType::Syscall => (opts.flags(ProgFlags::SLEEPABLE), None),
        // BTF id 1 of vmlinux is never a function: a kernel that knows the type gets as far as
        // checking the target and says so.
        ProgType::Tracing => (
            opts.expected_attach_type(AttachType::TraceFentry).attach_btf_id(1).log_level(1),
            einval("attach_btf_id 1 is not a function"),
        ),
        // libbpf pairs LSM with fmod_ret's attach type: both reach the same function-target check.
        ProgType::Lsm => (
            opts.expected_attach_type(AttachType::ModifyReturn).attach_btf_id(1).log_level(1),
            einval("attach_btf_id 1 is not a function"),
        ),
        // freplace only targets BPF programs; asked to replace a vmlinux id it says so.
        ProgType::Ext => (opts.attach_btf_id(1).log_level(1), einval("Cannot replace kernel functions")),
        ProgType::StructOps => (opts, Some(Expected { errno: ENOTSUPP, message: None })),
        _ => (opts, None),
    }
}

fn judge(outcome: Loaded, expected: Option<Expected>, method: Method) -> Verdict {
    match (outcome, expected) {
        (Loaded::Yes, None) => yes(method, "loaded"),
        (Loaded::No { errno, reason, .. }, None) => no(method, describe_failure(errno, &reason)),
        (Loaded::Yes, Some(_)) => no(method, "loaded although a rejection was expected"),
        (Loaded::No { errno, reason, .. }, Some(want)) => {
            let message_ok = want.message.is_none_or(|m| reason.contains(m));
            if errno == want.errno && message_ok {
                let said = if reason.is_empty() { String::new() } else { format!(": {reason}") };
                yes(method, format!("rejected as expected: {}{said}", errno_name(errno)))
            } else {
                no(method, describe_failure(errno, &reason))
            }
        }
    }
}

/// Probe program type `t` the way libbpf does.
pub(super) fn prog_type_libbpf(t: ProgType, kernel: Option<KernelVersion>) -> Verdict {
    let (opts, expected) = libbpf_options(t, kernel);
    let method = if expected.is_some_and(|e| e.message.is_some()) { Method::LoadBtfTarget } else { Method::Load };
    judge(load(&trivial(), &opts), expected, method)
}

/// Attach types that prove a program type when libbpf's probe of it was refused: tracing loads
/// as `tp_btf` and `iter` on kernels that refuse fentry (as this project's test kernel does).
pub(super) fn prog_type_fallbacks(t: ProgType) -> &'static [AttachType] {
    match t {
        ProgType::Tracing => &[AttachType::TraceRawTp, AttachType::TraceIter],
        ProgType::Lsm => &[AttachType::LsmMac, AttachType::LsmCgroup],
        _ => &[],
    }
}

/// The small BTF local-storage maps need for key and value: `[1] int`, `[2] struct bpf_spin_lock
/// { int val; }`, `[3] struct val { int cnt; struct bpf_spin_lock l; }` — libbpf's
/// `load_local_storage_btf`, written out here so map probing does not depend on a BTF builder.
fn local_storage_btf() -> std::io::Result<std::os::fd::OwnedFd> {
    const KIND_INT: u32 = 1;
    const KIND_STRUCT: u32 = 4;
    let strings = b"\0bpf_spin_lock\0val\0cnt\0l\0";
    let info = |kind: u32, vlen: u32| (kind << 24) | vlen;
    let types: [u32; 19] = [
        0, info(KIND_INT, 0), 4, (1 << 24) | 32, // [1] int: signed, 32 bits
        1, info(KIND_STRUCT, 1), 4, 15, 1, 0, // [2] bpf_spin_lock { val: int @0 }
        15, info(KIND_STRUCT, 2), 8, 19, 1, 0, 23, 2, 32, // [3] val { cnt: int @0, l: [2] @32 bits }
    ];
    let type_len = (types.len() * 4) as u32;
    let mut raw = Vec::with_capacity(24 + type_len as usize + strings.len());
    raw.extend_from_slice(&0xeb9fu16.to_le_bytes()); // magic
    raw.extend_from_slice(&[1, 0]); // version, flags
    for word in [24u32, 0, type_len, type_len, strings.len() as u32] {
        raw.extend_from_slice(&word.to_le_bytes()); // hdr_len, type_off, type_len, str_off, str_len
    }
    for word in types {
        raw.extend_from_slice(&word.to_le_bytes());
    }
    raw.extend_from_slice(strings);
    let mut attr = BtfLoadAttr { btf: sys::ptr(raw.as_ptr()), btf_size: raw.len() as u32, ..Default::default() };
    sys::bpf_fd(Cmd::BtfLoad, &mut attr)
}

/// Probe map type `t` by creating the smallest map of it (libbpf's sizes and flags per type).
pub(super) fn map_type(t: MapType) -> Verdict {
    let method = Method::MapCreate;
    let (key, value, max_entries, flags) = match t {
        MapType::StackTrace => (4, 8, 1, MapFlags::default()),
        MapType::LpmTrie => (8, 8, 1, MapFlags::NO_PREALLOC),
        // struct bpf_cgroup_storage_key { __u64 cgroup_inode_id; __u32 attach_type; }: 16 bytes.
        MapType::CgroupStorage | MapType::PercpuCgroupStorage => (16, 8, 0, MapFlags::default()),
        MapType::Queue | MapType::Stack | MapType::BloomFilter => (0, 4, 1, MapFlags::default()),
        MapType::SkStorage | MapType::InodeStorage | MapType::TaskStorage | MapType::CgrpStorage => {
            (4, 8, 0, MapFlags::NO_PREALLOC)
        }
        MapType::RingBuf | MapType::UserRingBuf => (0, 0, sys::page_size() as u32, MapFlags::default()),
        MapType::Arena => (0, 0, 1, MapFlags::MMAPABLE),
        _ => (4, 4, 1, MapFlags::default()),
    };
    let mut spec = MapSpec::new("", t, key, value, max_entries).flags(flags);
    // Kept alive until the probe map is created: the kernel only reads them during MAP_CREATE.
    let mut _inner = None;
    let mut expected_errno = None;
    match t {
        MapType::ArrayOfMaps | MapType::HashOfMaps => {
            let inner = match Map::create(&MapSpec::new("", MapType::Hash, 4, 4, 1)) {
                Ok(inner) => inner,
                Err(e) => return no(method, format!("the inner hash map failed: {e}")),
            };
            spec = match spec.inner_map(&inner) {
                Ok(spec) => spec,
                Err(e) => return unknown(method, e.to_string()),
            };
            _inner = Some(inner);
        }
        MapType::SkStorage | MapType::InodeStorage | MapType::TaskStorage | MapType::CgrpStorage => {
            let btf = match local_storage_btf() {
                Ok(fd) => fd,
                Err(e) => return no(method, format!("BTF_LOAD of the key/value types failed: {e}")),
            };
            spec = match spec.btf(&btf, 1, 3) {
                Ok(spec) => spec,
                Err(e) => return unknown(method, e.to_string()),
            };
        }
        // Type id 1 is never a struct_ops value type: a kernel that knows the map type says
        // ENOTSUPP about the id instead of EINVAL about the type.
        MapType::StructOps => {
            spec = spec.btf_vmlinux_value_type_id(1);
            expected_errno = Some(ENOTSUPP);
        }
        _ => {}
    }
    match (Map::create(&spec), expected_errno) {
        (Ok(_map), None) => yes(method, "created"),
        (Ok(_map), Some(_)) => no(method, "created although a rejection was expected"),
        (Err(MapError::Sys(e)), Some(want)) if e.errno() == Some(want) => {
            yes(method, format!("rejected as expected: {}", errno_name(want)))
        }
        (Err(MapError::Sys(e)), _) => no(method, e.errno().map(errno_name).unwrap_or_else(|| e.to_string())),
        (Err(e), _) => unknown(method, e.to_string()),
    }
}

/// The verifier's words for "this helper is not available here": an id it does not know at all
/// (`invalid func unknown#250`), one this program type may not call (`unknown func …` before 6.x,
/// `program of this type cannot use helper …` since). libbpf's rule: only these mean "no".
pub const HELPER_UNAVAILABLE: [&str; 3] = ["invalid func ", "unknown func ", "program of this type cannot use helper "];

/// Probe whether program type `t` may call helper `id`: load `call id; exit` and read the log.
/// `t` must be a type [`prog_type_libbpf`] found supported (a refused type would say nothing
/// about the helper).
pub(super) fn helper(t: ProgType, id: u32, kernel: Option<KernelVersion>) -> Verdict {
    let method = Method::HelperCall;
    let asm = Assembled::from_insns(vec![call_helper(id), exit()]);
    let (opts, _) = libbpf_options(t, kernel);
    match load(&asm, &opts.log_level(1).log_size(4096)) {
        Loaded::Yes => yes(method, "loaded"),
        Loaded::No { errno, reason, log } => {
            if let Some(line) = log.lines().find(|l| HELPER_UNAVAILABLE.iter().any(|m| l.contains(m))) {
                return no(method, line.trim());
            }
            if log.trim().is_empty() {
                // No verifier log means the load failed before the call was looked at; libbpf
                // calls that "supported", and says nothing more. Neither can we.
                return yes(method, format!("{}; no verifier log, assumed available (libbpf's rule)", errno_name(errno)));
            }
            // The verifier knew the helper and went on to check its arguments against the
            // trivial program's registers.
            yes(method, format!("known to the verifier, which checked its arguments: {reason}"))
        }
    }
}

/// How an attach type is probed.
enum How {
    /// The kernel validates `expected_attach_type` at load for this program type.
    Load(ProgType),
    /// Load with `attach_btf_id` 1: the log line proves the kernel checked the target.
    LoadBtf(ProgType, &'static str),
    /// An XDP program reading `egress_ifindex`, which only `xdp_devmap` programs may.
    XdpDevmapCtx,
    /// BPF_PROG_QUERY on a target that cannot exist: EINVAL means the attach type is unknown
    /// (or its subsystem is not built in); looking for the target (EBADF, ENODEV) means known.
    Query,
    /// BPF_LINK_CREATE of a perf_event link to a perf fd that cannot exist.
    PerfLink,
    /// A kprobe_multi (or session) link to a symbol that cannot exist.
    KprobeMulti,
    /// A uprobe_multi (or session) link to a path that cannot exist.
    UprobeMulti,
    /// No request tells without attaching to something real.
    NotProbed(&'static str),
}

fn how(a: AttachType) -> How {
    use AttachType::*;
    match a {
        CgroupInetIngress | CgroupInetEgress => How::Load(ProgType::CgroupSkb),
        CgroupInetSockCreate | CgroupInetSockRelease | CgroupInet4PostBind | CgroupInet6PostBind => {
            How::Load(ProgType::CgroupSock)
        }
        CgroupInet4Bind | CgroupInet6Bind | CgroupInet4Connect | CgroupInet6Connect | CgroupUdp4Sendmsg
        | CgroupUdp6Sendmsg | CgroupUdp4Recvmsg | CgroupUdp6Recvmsg | CgroupInet4Getpeername
        | CgroupInet6Getpeername | CgroupInet4Getsockname | CgroupInet6Getsockname | CgroupUnixConnect
        | CgroupUnixSendmsg | CgroupUnixRecvmsg | CgroupUnixGetpeername | CgroupUnixGetsockname => {
            How::Load(ProgType::CgroupSockAddr)
        }
        CgroupGetsockopt | CgroupSetsockopt => How::Load(ProgType::CgroupSockopt),
        SkLookup => How::Load(ProgType::SkLookup),
        SkReuseportSelect | SkReuseportSelectOrMigrate => How::Load(ProgType::SkReuseport),
        Netfilter => How::Load(ProgType::Netfilter),
        TraceRawTp => How::LoadBtf(ProgType::Tracing, "is not a typedef"),
        TraceFentry | TraceFexit | ModifyReturn | TraceIter => How::LoadBtf(ProgType::Tracing, "is not a function"),
        LsmMac | LsmCgroup => How::LoadBtf(ProgType::Lsm, "is not a function"),
        XdpDevmap => How::XdpDevmapCtx,
        CgroupSockOps | CgroupDevice | CgroupSysctl | SkSkbStreamParser | SkSkbStreamVerdict | SkMsgVerdict
        | SkSkbVerdict | LircMode2 | FlowDissector | TcxIngress | TcxEgress | NetkitPrimary | NetkitPeer => How::Query,
        PerfEvent => How::PerfLink,
        TraceKprobeMulti | TraceKprobeSession => How::KprobeMulti,
        TraceUprobeMulti | TraceUprobeSession => How::UprobeMulti,
        Xdp => How::NotProbed("only an XDP link on a real device would tell"),
        XdpCpumap => How::NotProbed("the kernel checks it only when the program is put into a cpumap"),
        StructOps => How::NotProbed("needs a struct_ops map built from vmlinux BTF"),
    }
}

/// Probe attach type `a`.
pub(super) fn attach_type(a: AttachType, kernel: Option<KernelVersion>) -> Verdict {
    match how(a) {
        How::Load(t) => {
            let opts = LoadOptions::new("", t).expected_attach_type(a);
            judge(load(&returning(1), &opts), None, Method::Load)
        }
        How::LoadBtf(t, message) => {
            let opts = LoadOptions::new("", t).expected_attach_type(a).attach_btf_id(1).log_level(1);
            let verdict = judge(load(&trivial(), &opts), Some(Expected { errno: libc::EINVAL, message: Some(message) }), Method::LoadBtfTarget);
            Verdict { detail: format!("{t} program, attach_btf_id 1: {}", verdict.detail), ..verdict }
        }
        How::XdpDevmapCtx => {
            let asm = Assembled::from_insns(vec![ldx(Size::W, Reg::R0, Reg::R1, 20), mov64(Reg::R0, 0), exit()]);
            let opts = LoadOptions::new("", ProgType::Xdp).expected_attach_type(a);
            let verdict = judge(load(&asm, &opts), None, Method::Load);
            Verdict { detail: format!("xdp reading egress_ifindex: {}", verdict.detail), ..verdict }
        }
        How::Query => {
            let mut attr = ProgQueryAttr { target_fd: u32::MAX, attach_type: a.raw(), ..Default::default() };
            match sys::bpf(Cmd::ProgQuery, &mut attr) {
                Ok(_) => yes(Method::Query, "answered"),
                Err(e) => errno_verdict(Method::Query, e.raw_os_error().unwrap_or(0), "looked for the target"),
            }
        }
        How::PerfLink => link_probe(a, ProgType::Tracepoint, kernel, |_| {}),
        How::KprobeMulti => {
            let symbol = CString::new("bpfkit_probe_no_such_function").unwrap_or_default();
            let syms = [sys::ptr(symbol.as_ptr())];
            link_probe(a, ProgType::Kprobe, kernel, |attr| {
                if let Some(member) = KprobeMultiLink::symbols(&syms, &[], 0) {
                    attr.set_target(member);
                }
            })
        }
        How::UprobeMulti => {
            let path = CString::new("/nonexistent/bpfkit-probe").unwrap_or_default();
            let offsets = [0u64];
            link_probe(a, ProgType::Kprobe, kernel, |attr| {
                if let Some(member) = UprobeMultiLink::new(&path, &offsets, &[], &[], 0, 0) {
                    attr.set_target(member);
                }
            })
        }
        How::NotProbed(why) => unknown(Method::NotProbed, why),
    }
}

/// A request about a target that cannot exist: EINVAL says the kernel does not know the attach
/// type, EOPNOTSUPP that its subsystem is not built in, EPERM that we may not ask; any other error
/// means the kernel accepted the attach type and went looking for the target.
fn errno_verdict(method: Method, errno: i32, looked: &str) -> Verdict {
    match errno {
        libc::EINVAL => no(method, "EINVAL: unknown attach type, or its subsystem is not built in"),
        libc::EOPNOTSUPP | ENOTSUPP => no(method, format!("{}: not built into this kernel", errno_name(errno))),
        libc::EPERM => unknown(method, "EPERM: not permitted to ask (needs CAP_NET_ADMIN or CAP_SYS_ADMIN)"),
        _ => yes(method, format!("{}: the kernel {looked}", errno_name(errno))),
    }
}

/// Load a trivial `prog_type` program expecting `a`, then try to create a link whose target
/// `fill` points at something that cannot exist.
fn link_probe(a: AttachType, prog_type: ProgType, kernel: Option<KernelVersion>, fill: impl FnOnce(&mut LinkCreateAttr)) -> Verdict {
    let method = Method::LinkCreate;
    let mut opts = LoadOptions::new("", prog_type);
    if a != AttachType::PerfEvent {
        opts = opts.expected_attach_type(a);
    }
    if prog_type == ProgType::Kprobe {
        opts = opts.kern_version(kernel.map(KernelVersion::code).unwrap_or(0));
    }
    let program = match Program::load(&trivial(), &[], &opts) {
        Ok(p) => p,
        Err(e) => return no(method, format!("the {prog_type} program did not load: {e}")),
    };
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_fd().as_raw_fd() as u32,
        target_fd: u32::MAX,
        attach_type: a.raw(),
        ..Default::default()
    };
    fill(&mut attr);
    match sys::bpf_fd(Cmd::LinkCreate, &mut attr) {
        // Nothing the probe names exists, so a link cannot be made; if one were, dropping it
        // detaches it at once.
        Ok(_link) => yes(method, "created a link"),
        Err(e) => errno_verdict(method, e.raw_os_error().unwrap_or(0), "looked for the target"),
    }
}
