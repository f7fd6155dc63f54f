//! Stack traces: the instruction pointers a program stored with `bpf_get_stackid` in a
//! `BPF_MAP_TYPE_STACK_TRACE` map, and their symbols. Kernel addresses are symbolized through
//! `/proc/kallsyms`, user addresses through the process's mappings and the ELF symbol tables of
//! the mapped files (the `blazesym` crate does both; Rust and C++ names are demangled).
//!
//! ```no_run
//! # fn f(stacks: &bpfkit::maps::Map, id: u32, pid: u32) -> Result<(), bpfkit::events::StackError> {
//! use bpfkit::events::{stack_ips, Symbolizer};
//! let ips = stack_ips(stacks, id)?;
//! for frame in Symbolizer::new().user(pid, &ips)? {
//!     println!("{frame}"); // 0x55d0c1f2a3b4 my_crate::busy_loop+0x24 (/path/to/binary)
//! }
//! # Ok(()) }
//! ```

use std::fmt;

use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized};
use blazesym::{MaybeDefault, Pid};

use crate::maps::{Map, MapError, MapFlags, MapType};

/// Why a stack could not be read or symbolized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// Reading the stack map failed.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The map is not a `BPF_MAP_TYPE_STACK_TRACE` map; names it and its type.
    #[error("{map} is a {map_type} map, not a stack_trace map")]
    WrongMap {
        /// The map's name.
        map: String,
        /// The map's type.
        map_type: MapType,
    },
    /// The map stores build ids and offsets (`BPF_F_STACK_BUILD_ID`), not addresses.
    #[error("{map}: holds build-id stacks (BPF_F_STACK_BUILD_ID), not addresses")]
    BuildId {
        /// The map's name.
        map: String,
    },
    /// The map has no stack with this id (never stored, or overwritten or deleted since).
    #[error("{map}: no stack with id {id}")]
    NoStack {
        /// The map's name.
        map: String,
        /// The stack id asked for.
        id: u32,
    },
    /// Symbolizing addresses failed; `what` names the addresses' process or the kernel.
    #[error("symbolizing {what}: {message}")]
    Symbolize {
        /// The process whose addresses were symbolized, or the kernel.
        what: String,
        /// Why symbolizing failed.
        message: String,
    },
}

/// One frame of a symbolized stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StackFrame {
    /// The instruction address.
    pub addr: u64,
    /// The function containing `addr` (demangled), if known.
    pub symbol: Option<String>,
    /// `addr`'s offset from the function's start.
    pub offset: u64,
    /// The binary or library (user frames), if known.
    pub module: Option<String>,
}

impl fmt::Display for StackFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.addr)?;
        match &self.symbol {
            Some(s) => write!(f, " {s}+{:#x}", self.offset)?,
            None => write!(f, " ?")?,
        }
        if let Some(m) = &self.module {
            write!(f, " ({m})")?;
        }
        Ok(())
    }
}

/// The instruction pointers of stack `stack_id` in stack-trace map `map`, innermost first (the
/// zero entries past the stack's depth are dropped).
pub fn stack_ips(map: &Map, stack_id: u32) -> Result<Vec<u64>, StackError> {
    if map.map_type() != MapType::StackTrace {
        return Err(StackError::WrongMap { map: map.describe(), map_type: map.map_type() });
    }
    if map.flags().0 & MapFlags::STACK_BUILD_ID.0 != 0 {
        return Err(StackError::BuildId { map: map.describe() });
    }
    let value = map.lookup(&stack_id.to_le_bytes())?.ok_or_else(|| StackError::NoStack { map: map.describe(), id: stack_id })?;
    let ips = value.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
    Ok(ips.take_while(|ip| *ip != 0).collect())
}

/// Turns addresses into [`StackFrame`]s. Keep one around: it caches parsed symbol tables.
pub struct Symbolizer {
    inner: blazesym::symbolize::Symbolizer,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new()
    }
}

impl fmt::Debug for Symbolizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Symbolizer").finish_non_exhaustive()
    }
}

impl Symbolizer {
    /// A symbolizer with blazesym's defaults.
    pub fn new() -> Symbolizer {
        Symbolizer { inner: blazesym::symbolize::Symbolizer::new() }
    }

    /// Symbolize kernel addresses with `/proc/kallsyms` (needs `kptr_restrict` to allow it, as
    /// root it usually does).
    pub fn kernel(&self, ips: &[u64]) -> Result<Vec<StackFrame>, StackError> {
        let source = Source::Kernel(Kernel { vmlinux: MaybeDefault::None, debug_syms: false, ..Default::default() });
        self.run(&source, ips, "kernel addresses via /proc/kallsyms".into())
    }

    /// Symbolize user addresses of process `pid` with its mappings (`/proc/<pid>/maps`) and the
    /// mapped files' ELF symbols. The process must still be running.
    pub fn user(&self, pid: u32, ips: &[u64]) -> Result<Vec<StackFrame>, StackError> {
        let mut process = Process::new(Pid::from(pid));
        process.debug_syms = false;
        self.run(&Source::Process(process), ips, format!("user addresses of pid {pid}"))
    }

    fn run(&self, source: &Source<'_>, ips: &[u64], what: String) -> Result<Vec<StackFrame>, StackError> {
        let results = self.inner.symbolize(source, Input::AbsAddr(ips)).map_err(|e| StackError::Symbolize { what, message: e.to_string() })?;
        Ok(ips
            .iter()
            .zip(results)
            .map(|(addr, r)| match r {
                Symbolized::Sym(sym) => StackFrame {
                    addr: *addr,
                    symbol: Some(sym.name.into_owned()),
                    offset: sym.offset as u64,
                    module: sym.module.map(|m| m.to_string_lossy().into_owned()),
                },
                Symbolized::Unknown(_) => StackFrame { addr: *addr, symbol: None, offset: 0, module: None },
            })
            .collect())
    }
}

crate::error::errno_from_sources!(StackError);
