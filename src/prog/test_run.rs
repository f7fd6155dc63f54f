//! `BPF_PROG_TEST_RUN`: run a loaded program on packet data and/or a context struct, once or
//! `repeat` times, and read back the return value, the output data and context, and the
//! kernel's measured duration.

use std::os::fd::AsRawFd;

use super::Program;
use crate::sys::{self, Cmd, SysError, TestRunAttr};

/// Input of a test run. Build with [`TestRun::with_data`] / [`TestRun::default`] and the setters.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TestRun {
    pub(crate) data: Vec<u8>,
    /// The context struct passed in (`struct __sk_buff`, `struct xdp_md`, raw_tp args, …).
    pub(crate) ctx: Option<Vec<u8>>,
    /// Room for output context (defaults to the input context's size).
    pub(crate) ctx_out_size: Option<usize>,
    pub(crate) repeat: u32,
    /// Room for the program to grow the packet (e.g. `bpf_xdp_adjust_tail`).
    pub(crate) data_out_extra: usize,
    /// `BPF_F_TEST_RUN_ON_CPU` etc.
    pub(crate) flags: u32,
    pub(crate) cpu: u32,
    /// XDP live-frames batch size.
    pub(crate) batch_size: u32,
}

impl TestRun {
    /// A test run on packet `data`, run once.
    pub fn with_data(data: impl Into<Vec<u8>>) -> Self {
        TestRun { data: data.into(), repeat: 1, ..Default::default() }
    }
    /// The packet data the program runs on (`data_in` of BPF_PROG_TEST_RUN).
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = data.into();
        self
    }
    /// The context struct to pass in (`ctx_in`), e.g. a `struct __sk_buff` or `struct xdp_md`.
    pub fn ctx(mut self, ctx: impl Into<Vec<u8>>) -> Self {
        self.ctx = Some(ctx.into());
        self
    }
    /// Room in bytes for the context after the run (`ctx_size_out`); defaults to the input's size.
    pub fn ctx_out_size(mut self, n: usize) -> Self {
        self.ctx_out_size = Some(n);
        self
    }
    /// How many times to run (`repeat`); the reported duration is the mean per run.
    pub fn repeat(mut self, n: u32) -> Self {
        self.repeat = n;
        self
    }
    /// Extra bytes of output room beyond the input, for programs that grow the packet.
    pub fn data_out_extra(mut self, n: usize) -> Self {
        self.data_out_extra = n;
        self
    }
    /// Run on a chosen CPU (`BPF_F_TEST_RUN_ON_CPU`; raw tracepoints only).
    pub fn on_cpu(mut self, cpu: u32) -> Self {
        self.flags |= 1;
        self.cpu = cpu;
        self
    }
}

/// Output of a test run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunResult {
    /// The program's return value (32 bits: the kernel truncates r0).
    pub retval: u32,
    /// Mean run time per repetition, as the kernel measured it.
    pub duration_ns: u32,
    /// The packet data after the run (`data_out`).
    pub data_out: Vec<u8>,
    /// The context after the run (empty when none was passed or the type returns none; for
    /// syscall programs, the context as the program left it).
    pub ctx_out: Vec<u8>,
}

impl Program {
    /// Run the program with PROG_TEST_RUN.
    pub fn test_run(&self, run: &TestRun) -> Result<TestRunResult, SysError> {
        let mut data_out = vec![0u8; if run.data.is_empty() { 0 } else { run.data.len() + run.data_out_extra }];
        // A mutable copy: syscall programs write their context back into `ctx_in`.
        let mut ctx_in: Vec<u8> = run.ctx.clone().unwrap_or_default();
        // Syscall programs write back into ctx_in; raw tracepoint runs refuse any ctx_out
        // (EINVAL), so unless asked for one they get none.
        let ctx_out_len = match self.prog_type {
            super::ProgType::Syscall => 0,
            super::ProgType::RawTracepoint => run.ctx_out_size.unwrap_or(0),
            _ => run.ctx_out_size.unwrap_or(ctx_in.len()),
        };
        let mut ctx_out = vec![0u8; ctx_out_len];
        let mut attr = TestRunAttr {
            prog_fd: self.as_fd_raw(),
            data_size_in: run.data.len() as u32,
            data_size_out: data_out.len() as u32,
            data_in: if run.data.is_empty() { 0 } else { sys::ptr(run.data.as_ptr()) },
            data_out: if data_out.is_empty() { 0 } else { sys::ptr(data_out.as_mut_ptr()) },
            repeat: run.repeat,
            ctx_size_in: ctx_in.len() as u32,
            ctx_in: if ctx_in.is_empty() { 0 } else { sys::ptr(ctx_in.as_mut_ptr()) },
            ctx_size_out: ctx_out.len() as u32,
            ctx_out: if ctx_out.is_empty() { 0 } else { sys::ptr(ctx_out.as_mut_ptr()) },
            flags: run.flags,
            cpu: run.cpu,
            batch_size: run.batch_size,
            ..Default::default()
        };
        sys::bpf(Cmd::ProgTestRun, &mut attr).map_err(|source| SysError::new(
            format!(
                "prog_test_run({}, data {} bytes{})",
                self.describe(),
                run.data.len(),
                if ctx_in.is_empty() { String::new() } else { format!(", ctx {} bytes", ctx_in.len()) }
            ),
            source,
        ))?;
        data_out.truncate(attr.data_size_out as usize);
        ctx_out.truncate(attr.ctx_size_out as usize);
        if self.prog_type == super::ProgType::Syscall {
            ctx_out = ctx_in;
        }
        Ok(TestRunResult { retval: attr.retval, duration_ns: attr.duration, data_out, ctx_out })
    }

    fn as_fd_raw(&self) -> u32 {
        self.fd.as_raw_fd() as u32
    }
}
