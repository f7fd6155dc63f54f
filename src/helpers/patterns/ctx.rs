//! Per-program-type context field offsets and return codes, read from the running kernel's
//! BTF rather than copied from headers.
//!
//! `ctx_field(ProgType::Xdp, "data_end")` is the byte offset of `data_end` in `struct xdp_md`
//! (4), for `r3 = *(u32 *)(r1 + 4)`; `ctx_field(ProgType::SchedCls, "data")` reads
//! `struct __sk_buff`. The context struct of each type:
//!
//! | program types | context |
//! |---|---|
//! | `Xdp` | `xdp_md` |
//! | `SocketFilter`, `SchedCls`, `SchedAct`, `CgroupSkb`, `SkSkb`, `LwtIn`/`Out`/`Xmit`/`Seg6local` | `__sk_buff` |
//! | `CgroupSockAddr` | `bpf_sock_addr` |
//! | `CgroupSock` | `bpf_sock` |
//! | `SockOps` | `bpf_sock_ops` |
//! | `SkMsg` | `sk_msg_md` |
//! | `SkLookup` | `bpf_sk_lookup` |
//! | `CgroupSysctl` | `bpf_sysctl` |
//! | `CgroupSockopt` | `bpf_sockopt` |
//! | `CgroupDevice` | `bpf_cgroup_dev_ctx` |
//! | `FlowDissector` | `__sk_buff` |
//!
//! Return codes: `return_code(ProgType::Xdp, "XDP_PASS")` from `enum xdp_action`; TC programs
//! (`SchedCls`, `SchedAct`) from `enum tcx_action_base` (`TCX_PASS` = `TC_ACT_OK`, `TCX_DROP` =
//! `TC_ACT_SHOT`, `TCX_REDIRECT`, `TCX_NEXT`; the enum exists from 6.6 on, and before that the
//! uapi's `TC_ACT_*` values, which are macros without BTF, stand in for it — they are the same
//! numbers, and `TC_ACT_*` names are accepted on every kernel); socket, cgroup and sk_* verdicts from
//! `enum sk_action` (`SK_DROP`, `SK_PASS`).

use std::cell::OnceCell;

use super::PatternError;
use crate::core_btf::{Btf, Kind};
use crate::prog::ProgType;

thread_local! {
    static VMLINUX: OnceCell<Result<std::sync::Arc<Btf>, String>> = const { OnceCell::new() };
}

fn btf_err<T>(reason: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError::Btf { pattern: "ctx", reason: reason.into() })
}

fn with_vmlinux<T>(f: impl FnOnce(&Btf) -> Result<T, PatternError>) -> Result<T, PatternError> {
    VMLINUX.with(|cell| match cell.get_or_init(|| Btf::vmlinux_shared().map_err(|e| e.to_string())) {
        Ok(btf) => f(btf),
        Err(e) => btf_err(format!("vmlinux BTF: {e}")),
    })
}

/// The context struct a program type receives (see the table above).
pub fn ctx_struct(prog: ProgType) -> Option<&'static str> {
    use ProgType::*;
    Some(match prog {
        Xdp => "xdp_md",
        SocketFilter | SchedCls | SchedAct | CgroupSkb | SkSkb | LwtIn | LwtOut | LwtXmit | LwtSeg6local | FlowDissector => "__sk_buff",
        CgroupSockAddr => "bpf_sock_addr",
        CgroupSock => "bpf_sock",
        SockOps => "bpf_sock_ops",
        SkMsg => "sk_msg_md",
        SkLookup => "bpf_sk_lookup",
        CgroupSysctl => "bpf_sysctl",
        CgroupSockopt => "bpf_sockopt",
        CgroupDevice => "bpf_cgroup_dev_ctx",
        _ => return None,
    })
}

/// The byte offset of `field` (a member path, `"a.b"`) in `prog`'s context struct.
pub fn ctx_field(prog: ProgType, field: &str) -> Result<i16, PatternError> {
    let Some(name) = ctx_struct(prog) else {
        return btf_err(format!("no context struct known for {prog:?}"));
    };
    with_vmlinux(|btf| {
        let Some(id) = btf.find_by_name_kind(name, Kind::Struct) else {
            return btf_err(format!("struct {name} is not in vmlinux BTF"));
        };
        let bits = match btf.member_offset(id, field) {
            Ok(b) => b,
            Err(e) => return btf_err(format!("struct {name} has no field \"{field}\": {e}")),
        };
        if bits % 8 != 0 {
            return btf_err(format!("{name}.{field} is a bitfield"));
        }
        i16::try_from(bits / 8).or_else(|_| btf_err(format!("{name}.{field} is beyond a 16-bit offset")))
    })
}

/// The enum whose values a program type returns.
pub fn return_enum(prog: ProgType) -> Option<&'static str> {
    use ProgType::*;
    Some(match prog {
        Xdp => "xdp_action",
        SchedCls | SchedAct => "tcx_action_base",
        SocketFilter | CgroupSkb | CgroupSock | CgroupSockAddr | CgroupDevice | CgroupSysctl | CgroupSockopt | SockOps | SkSkb | SkMsg | SkReuseport | SkLookup => "sk_action",
        _ => return None,
    })
}

/// The value of `name` (e.g. `XDP_PASS`) in the enum `prog` returns.
pub fn return_code(prog: ProgType, name: &str) -> Result<i32, PatternError> {
    let Some(en) = return_enum(prog) else {
        return btf_err(format!("no return-code enum known for {prog:?}"));
    };
    if en == "tcx_action_base" {
        return tc_action(name);
    }
    enum_value(en, name)
}

/// `linux/pkt_cls.h`'s `TC_ACT_*` (stable uapi values; macros, so not in BTF), and the
/// `TCX_*` names `enum tcx_action_base` (6.6+) gives the same values.
const TC_ACT: &[(&str, i32)] = &[
    ("TC_ACT_UNSPEC", -1),
    ("TC_ACT_OK", 0),
    ("TC_ACT_RECLASSIFY", 1),
    ("TC_ACT_SHOT", 2),
    ("TC_ACT_PIPE", 3),
    ("TC_ACT_STOLEN", 4),
    ("TC_ACT_QUEUED", 5),
    ("TC_ACT_REPEAT", 6),
    ("TC_ACT_REDIRECT", 7),
    ("TC_ACT_TRAP", 8),
    ("TCX_NEXT", -1),
    ("TCX_PASS", 0),
    ("TCX_DROP", 2),
    ("TCX_REDIRECT", 7),
];

fn enum_value(en: &str, name: &str) -> Result<i32, PatternError> {
    with_vmlinux(|btf| {
        let values = match btf.enum_values(en) {
            Ok(v) => v,
            Err(e) => return btf_err(format!("enum {en}: {e}")),
        };
        match values.iter().find(|v| v.name == name) {
            Some(v) => i32::try_from(v.value).or_else(|_| btf_err(format!("{name} does not fit 32 bits"))),
            None => btf_err(format!("enum {en} has no {name}")),
        }
    })
}

/// `XDP_ABORTED`, `XDP_DROP`, `XDP_PASS`, `XDP_TX`, `XDP_REDIRECT` from `enum xdp_action`.
pub fn xdp_action(name: &str) -> Result<i32, PatternError> {
    enum_value("xdp_action", name)
}

/// `TCX_NEXT`, `TCX_PASS`, `TCX_DROP`, `TCX_REDIRECT` from `enum tcx_action_base` where the
/// kernel's BTF has it (6.6+); before that, and for `TC_ACT_*` names, the uapi values.
pub fn tc_action(name: &str) -> Result<i32, PatternError> {
    let from_btf = with_vmlinux(|btf| Ok(btf.enum_values("tcx_action_base").ok().and_then(|v| v.iter().find(|v| v.name == name).map(|v| v.value))));
    match from_btf? {
        Some(v) => i32::try_from(v).or_else(|_| btf_err(format!("{name} does not fit 32 bits"))),
        None => match TC_ACT.iter().find(|(n, _)| *n == name) {
            Some(&(_, v)) => Ok(v),
            None => btf_err(format!("no TC action {name} (TC_ACT_* or TCX_*)")),
        },
    }
}
