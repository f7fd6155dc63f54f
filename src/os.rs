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

/// A device number as the kernel compares it inside (`MKDEV`: `major << 20 | minor`, what
/// `super_block.s_dev` and `inode.i_rdev` hold) from the one `stat` reports in `st_dev`/`st_rdev`
/// (glibc's encoding: `minor & 0xff | major << 8 | (minor & !0xff) << 12`, with the high bits of
/// both above bit 32). A program matching files by device needs the kernel's.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 8) & 0xfff) | ((st_dev >> 32) & !0xfff);
    let minor = (st_dev & 0xff) | ((st_dev >> 12) & !0xff);
    (major << 20) | minor
}

/// perf_event_open(2): the attribute struct (plain data: no field is written back through a
/// pointer), the type and counter constants, and the call.
pub mod perf {
    pub use crate::sys::{
        perf_event_open as open, PerfEventAttr, PERF_COUNT_HW_CPU_CYCLES, PERF_COUNT_HW_INSTRUCTIONS, PERF_COUNT_SW_BPF_OUTPUT,
        PERF_COUNT_SW_CONTEXT_SWITCHES, PERF_COUNT_SW_CPU_CLOCK, PERF_COUNT_SW_PAGE_FAULTS, PERF_COUNT_SW_TASK_CLOCK,
        PERF_SAMPLE_RAW, PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT,
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_dev_is_mkdev_of_stats_encoding() {
        use std::os::unix::fs::MetadataExt;
        // /dev/null is character device 1:3 on every Linux.
        let rdev = std::fs::metadata("/dev/null").unwrap().rdev();
        assert_eq!(super::kernel_dev(rdev), 1 << 20 | 3);
        // glibc's makedev(259, 300): a major above 255 and a minor above 255.
        let glibc = (300u64 & 0xff) | (259 << 8) | ((300 & !0xff) << 12);
        assert_eq!(super::kernel_dev(glibc), 259 << 20 | 300);
    }
}
