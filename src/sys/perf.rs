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
    /// `type`: the event type (`PERF_TYPE_*`).
    pub type_: u32,
    /// `size`: the size of this struct, for the kernel's versioning.
    pub size: u32,
    /// `config`: the event within the type (`PERF_COUNT_*`, a tracepoint id, …).
    pub config: u64,
    /// `sample_period` or `sample_freq` (with the `freq` flag).
    pub sample_period: u64,
    /// `sample_type`: what each sample records (`PERF_SAMPLE_*`).
    pub sample_type: u64,
    /// `read_format`: what read(2) of the event returns.
    pub read_format: u64,
    /// The bitfield word (`disabled`, `inherit`, …, `freq`, `watermark`, …).
    pub flags: u64,
    /// `wakeup_events` or `wakeup_watermark`.
    pub wakeup_events: u32,
    /// `bp_type`: breakpoint type, for hardware breakpoints.
    pub bp_type: u32,
    /// `config1` (also `bp_addr`, `kprobe_func`, `uprobe_path`).
    pub config1: u64,
    /// `config2` (also `bp_len`, `kprobe_addr`, `probe_offset`).
    pub config2: u64,
    /// `branch_sample_type`.
    pub branch_sample_type: u64,
    /// `sample_regs_user`.
    pub sample_regs_user: u64,
    /// `sample_stack_user`.
    pub sample_stack_user: u32,
    /// `clockid`, used with the `use_clockid` flag.
    pub clockid: i32,
    /// `sample_regs_intr`.
    pub sample_regs_intr: u64,
    /// `aux_watermark`.
    pub aux_watermark: u32,
    /// `sample_max_stack`.
    pub sample_max_stack: u16,
    /// Reserved, zero.
    pub _reserved_2: u16,
    /// `aux_sample_size`.
    pub aux_sample_size: u32,
    /// Reserved, zero.
    pub _reserved_3: u32,
    /// `sig_data`, passed to the signal handler with `sigtrap`.
    pub sig_data: u64,
    /// `config3` (kernel 6.3+).
    pub config3: u64,
}

/// `PERF_TYPE_HARDWARE`: a hardware event; `config` is a `PERF_COUNT_HW_*`.
pub const PERF_TYPE_HARDWARE: u32 = 0;
/// `PERF_TYPE_SOFTWARE`: a software event; `config` is a `PERF_COUNT_SW_*`.
pub const PERF_TYPE_SOFTWARE: u32 = 1;
/// `PERF_TYPE_TRACEPOINT`: a tracepoint; `config` is its id from tracefs.
pub const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_COUNT_HW_CPU_CYCLES`: CPU cycles.
pub const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
/// `PERF_COUNT_HW_INSTRUCTIONS`: retired instructions.
pub const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
/// `PERF_COUNT_SW_CPU_CLOCK`: a per-CPU high-resolution timer (sampling without hardware PMU).
pub const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
/// `PERF_COUNT_SW_TASK_CLOCK`: a timer that runs while the task runs.
pub const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
/// `PERF_COUNT_SW_PAGE_FAULTS`: page faults.
pub const PERF_COUNT_SW_PAGE_FAULTS: u64 = 2;
/// `PERF_COUNT_SW_CONTEXT_SWITCHES`: context switches.
pub const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
/// `PERF_COUNT_SW_BPF_OUTPUT`: the software event a perf event array's `bpf_perf_event_output` writes.
pub const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
/// `PERF_SAMPLE_RAW`: samples carry raw data (what BPF programs output).
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

