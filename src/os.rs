//! What the operating system says and offers around BPF, without bpf(2): CPU counts (per-CPU
//! maps are sized by the possible CPUs), the page size (ring buffers and mmapable maps), bpffs
//! mounts, tracefs, the process's thread id and open fds, a socket's cookie, the kprobe/uprobe
//! PMUs, the perf event constants, cgroup v2 directories ([`Cgroup`]), and the errors that name
//! the call that failed.
//!
//! These are thin, safe wrappers of the crate's private syscall funnel: no raw pointer or
//! attribute struct leaves it.

mod cgroup;
pub use cgroup::{cgroup2_mount, Cgroup, CgroupError, CgroupRemover, Leftovers};

pub use crate::sys::{
    cpu_ids, describe_io_error, errno_name, gettid, mount_bpffs, obj_get, online_cpus, open_fd_count, page_size, parse_cpu_list, pidfd_open, possible_cpus, PausedChild,
    probe_events_file, probe_pmu, socket_cookie, tracefs_dir, unmount, NetlinkError, PinError, ProbeKind, ProbePmu,
    SysError,
};

/// perf_event_open(2): the attribute struct (plain data: no field is written back through a
/// pointer), the type and counter constants, and the call.
pub mod perf {
    pub use crate::sys::{
        perf_event_open as open, PerfEventAttr, PERF_COUNT_HW_CPU_CYCLES, PERF_COUNT_HW_INSTRUCTIONS, PERF_COUNT_SW_BPF_OUTPUT,
        PERF_COUNT_SW_CONTEXT_SWITCHES, PERF_COUNT_SW_CPU_CLOCK, PERF_COUNT_SW_PAGE_FAULTS, PERF_COUNT_SW_TASK_CLOCK,
        PERF_SAMPLE_RAW, PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT,
    };
}
