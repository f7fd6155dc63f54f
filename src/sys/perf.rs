//! perf_event_open(2) and the perf event ioctls: perf event arrays, perf_event programs, and
//! tracepoint, kprobe and uprobe events that programs attach to.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `struct perf_event_attr` (`PERF_ATTR_SIZE_VER8`, 136 bytes). Bit flags of the C bitfield
/// word are in [`PerfEventAttr::flags`] (`disabled` = bit 0, `inherit` = 1, `exclude_kernel` = 5,
/// `freq` = 10, `watermark` = 14, …).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    /// `sample_period` or `sample_freq` (with the `freq` flag).
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    pub flags: u64,
    /// `wakeup_events` or `wakeup_watermark`.
    pub wakeup_events: u32,
    pub bp_type: u32,
    pub config1: u64,
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub _reserved_2: u16,
    pub aux_sample_size: u32,
    pub _reserved_3: u32,
    pub sig_data: u64,
    pub config3: u64,
}

pub const PERF_TYPE_HARDWARE: u32 = 0;
pub const PERF_TYPE_SOFTWARE: u32 = 1;
pub const PERF_TYPE_TRACEPOINT: u32 = 2;
pub const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
pub const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
pub const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
pub const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
pub const PERF_COUNT_SW_PAGE_FAULTS: u64 = 2;
pub const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
pub const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
pub const PERF_SAMPLE_RAW: u64 = 1 << 10;

/// `PERF_FLAG_FD_CLOEXEC`, always added: bpfkit's fds never leak into exec'd children.
const PERF_FLAG_FD_CLOEXEC: u64 = 8;

/// perf_event_open(2). `pid` -1 with a `cpu` ≥ 0 watches every task on that CPU.
pub fn perf_event_open(attr: &PerfEventAttr, pid: i32, cpu: i32, group_fd: i32, flags: u64) -> io::Result<OwnedFd> {
    let flags = flags | PERF_FLAG_FD_CLOEXEC;
    let mut attr = *attr;
    attr.size = std::mem::size_of::<PerfEventAttr>() as u32;
    // SAFETY: `attr` is a live, correctly sized `perf_event_attr` (size field set to match);
    // the kernel only reads it. The other arguments are plain integers.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &attr as *const PerfEventAttr, pid, cpu, group_fd, flags as libc::c_ulong) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

fn perf_ioctl(perf: BorrowedFd<'_>, request: libc::c_ulong, arg: libc::c_int) -> io::Result<()> {
    // SAFETY: the perf ioctls used here take an integer argument (0 or a program fd), not a pointer.
    let ret = unsafe { libc::ioctl(perf.as_raw_fd(), request, arg) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PERF_EVENT_IOC_SET_BPF`: run `prog` when the perf event fires (the pre-bpf_link way).
pub fn perf_event_set_bpf(perf: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    perf_ioctl(perf, PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd())
}

/// `PERF_EVENT_IOC_ENABLE`.
pub fn perf_event_enable(perf: BorrowedFd<'_>) -> io::Result<()> {
    perf_ioctl(perf, PERF_EVENT_IOC_ENABLE, 0)
}

/// `PERF_EVENT_IOC_DISABLE`.
pub fn perf_event_disable(perf: BorrowedFd<'_>) -> io::Result<()> {
    perf_ioctl(perf, PERF_EVENT_IOC_DISABLE, 0)
}

