//! Attaching programs and owning the attachment. A [`Link`] detaches when dropped (unless it is
//! pinned: a pinned bpf_link lives on until unpinned). Where the kernel offers a bpf_link bpfkit
//! uses it; where it does not, the link remembers the fallback path it took ([`AttachPath`]) and
//! undoes it on drop. The attach points are in the submodules: `tracing` (tracepoints, raw
//! tracepoints, tp_btf, perf events) and `cgroup` (every cgroup hook).

mod cgroup;
mod link;
mod tracing;

pub use link::{AttachPath, Link, LinkError, LinkInfo, LinkType};
pub use tracing::{tracepoint_id, PerfEventTarget};
