//! Attaching programs and owning the attachment. A [`Link`] detaches when dropped (unless it is
//! pinned: a pinned bpf_link lives on until unpinned). Where the kernel offers a bpf_link bpfkit
//! uses it; where it does not, the link remembers the fallback path it took ([`AttachPath`]) and
//! undoes it on drop. The attach points are in the submodules: `tracing` (tracepoints, raw
//! tracepoints, tp_btf, perf events), `cgroup` (every cgroup hook), `xdp` (XDP on a device),
//! `tc` (tcx links, cls_bpf filters), `socket` (socket filters, sockmap programs, netns
//! hooks, netfilter), `kprobe`, `uprobe`, `usdt`, `fentry` (fentry/fexit/fmod_ret/LSM), `iter`,
//! and `symbols` (ELF symbol → file offset for uprobes).

mod cgroup;
pub mod fentry;
pub mod iter;
pub mod kprobe;
mod link;
mod probe;
mod socket;
pub mod symbols;
mod tc;
mod tracepoint_format;
mod tracing;
pub mod uprobe;
pub mod usdt;
mod xdp;

pub use cgroup::{CgroupAttachMode, CgroupOptions};
pub use link::{AttachPath, Link, LinkError, LinkInfo, LinkType};
pub use probe::{ProbeError, TRACEFS_GROUP};
pub use socket::{NetfilterHook, NfFamily, NfHook};
pub use tc::{cls_bpf_filters, TcDirection, TcOptions};
pub use tracepoint_format::{TracepointField, TracepointFormat};
pub use tracing::{tp_btf_options, tracepoint_id, PerfEventTarget, TracepointOptions};
pub use xdp::{ifindex, xdp_state, XdpMode};
pub use crate::sys::netlink::{ClsBpfFilter, XdpState};
