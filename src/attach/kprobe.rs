//! Kprobes and kretprobes: a kernel function (and offset) to probe, attached through the
//! probe machinery in `attach::probe` (the kprobe PMU, or tracefs' `kprobe_events` on kernels
//! without it).
//!
//! Kprobes need `CONFIG_KPROBES`; a kernel without it (this VM's) has neither the PMU nor
//! `kprobe_events`, and [`Program::attach_kprobe`] says exactly that:
//! `no kprobe support in this kernel: /sys/bus/event_source/devices/kprobe missing and tracefs
//! has no kprobe_events`.
//!
//! ```no_run
//! # use bpfkit::prog::Program;
//! # fn f(prog: &Program) -> Result<(), bpfkit::attach::ProbeError> {
//! use bpfkit::attach::kprobe::KprobeTarget;
//! let link = prog.attach_kprobe(&KprobeTarget::function("do_unlinkat"))?;
//! let ret = prog.attach_kprobe(&KprobeTarget::function("do_unlinkat").retprobe())?;
//! # Ok(()) }
//! ```

use super::link::Link;
use super::probe::{attach_probe, ProbeError, ProbeRequest};
use super::symbols::SymbolError;
use crate::prog::Program;
use crate::sys::ProbeKind;

/// A kernel function to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KprobeTarget {
    function: String,
    offset: u64,
    retprobe: bool,
    cookie: u64,
    via_tracefs: bool,
}

impl KprobeTarget {
    /// The entry of kernel function `name` (as in `/proc/kallsyms`).
    pub fn function(name: impl Into<String>) -> KprobeTarget {
        KprobeTarget { function: name.into(), offset: 0, retprobe: false, cookie: 0, via_tracefs: false }
    }
    /// An absolute kernel address instead of a function.
    pub fn address(addr: u64) -> KprobeTarget {
        KprobeTarget { offset: addr, ..KprobeTarget::function("") }
    }
    /// An instruction `offset` bytes into the function.
    pub fn offset(mut self, offset: u64) -> KprobeTarget {
        self.offset = offset;
        self
    }
    /// A kretprobe: runs when the function returns (the offset must be 0).
    pub fn retprobe(mut self) -> KprobeTarget {
        self.retprobe = true;
        self
    }
    /// The value `bpf_get_attach_cookie` returns in the program.
    pub fn cookie(mut self, cookie: u64) -> KprobeTarget {
        self.cookie = cookie;
        self
    }
    /// Use tracefs' `kprobe_events` even when the kprobe PMU exists.
    pub fn via_tracefs(mut self) -> KprobeTarget {
        self.via_tracefs = true;
        self
    }

    /// `kprobe do_unlinkat+0x0`, `kretprobe do_unlinkat+0x0`.
    pub fn describe(&self) -> String {
        let kind = if self.retprobe { "kretprobe" } else { "kprobe" };
        if self.function.is_empty() {
            format!("{kind} {:#x}", self.offset)
        } else {
            format!("{kind} {}+{:#x}", self.function, self.offset)
        }
    }

    fn request(&self) -> Result<ProbeRequest, ProbeError> {
        let what = self.describe();
        if self.function.chars().any(|c| c.is_whitespace() || c == ':' || c == '/') {
            return Err(ProbeError::invalid(what, "a kernel function name has no spaces, `:` or `/`"));
        }
        if self.function.is_empty() && self.offset == 0 {
            return Err(ProbeError::invalid(what, "needs a function name or an address"));
        }
        if self.retprobe && self.offset != 0 && !self.function.is_empty() {
            return Err(ProbeError::invalid(what, "kretprobes attach at the function's entry: the offset must be 0"));
        }
        Ok(ProbeRequest {
            kind: ProbeKind::Kprobe,
            target: self.function.clone(),
            offset: self.offset,
            retprobe: self.retprobe,
            ref_ctr_offset: 0,
            pid: -1,
            cookie: self.cookie,
            via_tracefs: self.via_tracefs,
            what,
        })
    }

    /// The `kprobe_events` line the tracefs path writes for event `bpfkit/<event>`
    /// (`p:bpfkit/<event> do_unlinkat+0`, `r:…` for a kretprobe).
    pub fn tracefs_definition(&self, event: &str) -> Result<String, ProbeError> {
        Ok(self.request()?.tracefs_definition(event))
    }
}

impl Program {
    /// Attach a kprobe program (`ProgType::Kprobe`) to a kernel function's entry, an offset in
    /// it, or its return.
    pub fn attach_kprobe(&self, target: &KprobeTarget) -> Result<Link, ProbeError> {
        attach_probe(self, &target.request()?)
    }
}

/// One line of `/proc/kallsyms`: a kernel (or module) symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSymbol {
    /// Its address; 0 for every symbol when `kptr_restrict` hides addresses from this process.
    pub address: u64,
    /// The `nm` type letter: `T`/`t` for text (functions; lower case: not exported), `D`/`d`,
    /// `B`/`b`, `R`/`r` for data.
    pub kind: char,
    /// The symbol's name (for a compiler-made copy, with its suffix: `foo.isra.0`, `foo.cold`).
    pub name: String,
    /// The module it belongs to, `None` for vmlinux.
    pub module: Option<String>,
}

impl KernelSymbol {
    /// A function (text symbol): what a kprobe can name.
    pub fn is_function(&self) -> bool {
        matches!(self.kind, 'T' | 't' | 'W' | 'w')
    }
}

/// Every symbol of the running kernel and its loaded modules, in `/proc/kallsyms` order
/// (ascending addresses within vmlinux). The one reader of that file in bpfkit.
pub fn kernel_symbols() -> Result<Vec<KernelSymbol>, SymbolError> {
    let path = "/proc/kallsyms";
    let text = std::fs::read_to_string(path).map_err(|source| SymbolError::Io { path: path.into(), source })?;
    Ok(text.lines().filter_map(parse_kallsyms_line).collect())
}

/// `ffffffff81234560 T do_sys_openat2` or `ffffffffc0123450 t veth_xmit\t[veth]`.
fn parse_kallsyms_line(line: &str) -> Option<KernelSymbol> {
    let mut parts = line.split_ascii_whitespace();
    let address = u64::from_str_radix(parts.next()?, 16).ok()?;
    let kind = parts.next()?.chars().next()?;
    let name = parts.next()?.to_string();
    let module = parts.next().map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
    Some(KernelSymbol { address, kind, name, module })
}

/// The kernel function named `name` (exactly), if the running kernel has one: what decides
/// whether [`KprobeTarget::function`] can work on this kernel before trying. A function the
/// compiler inlined everywhere has no symbol; one it copied has a suffixed name
/// (`tcp_v4_connect.cold`) — [`kernel_symbols`] lists those.
pub fn kernel_function(name: &str) -> Result<Option<KernelSymbol>, SymbolError> {
    Ok(kernel_symbols()?.into_iter().find(|s| s.name == name && s.is_function()))
}

/// Whether ftrace can trace `name`: it is listed in tracefs' `available_filter_functions`
/// (kprobes on a function entry use ftrace; `notrace` functions and those the kernel
/// blacklists for probing are not there). `None` when this cannot be told: tracefs has no
/// such file (no `CONFIG_FUNCTION_TRACER`, tracefs not mounted) or refuses to show it (EPERM:
/// some sandboxed kernels restrict ftrace even for root).
pub fn is_traceable(name: &str) -> Result<Option<bool>, SymbolError> {
    for path in ["/sys/kernel/tracing/available_filter_functions", "/sys/kernel/debug/tracing/available_filter_functions"] {
        match std::fs::read_to_string(path) {
            // Lines are `name` or `name [module]`.
            Ok(text) => return Ok(Some(text.lines().any(|l| l.split_ascii_whitespace().next() == Some(name)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
            Err(source) => return Err(SymbolError::Io { path: path.into(), source }),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_follow_the_tracefs_syntax() {
        let k = KprobeTarget::function("do_unlinkat");
        assert_eq!(k.tracefs_definition("e").unwrap(), "p:bpfkit/e do_unlinkat+0");
        assert_eq!(k.clone().retprobe().tracefs_definition("e").unwrap(), "r:bpfkit/e do_unlinkat+0");
        assert_eq!(k.clone().offset(5).describe(), "kprobe do_unlinkat+0x5");
        assert!(k.clone().offset(5).retprobe().tracefs_definition("e").is_err());
        assert_eq!(KprobeTarget::address(0xffff_ffff_8100_0000).tracefs_definition("a").unwrap(), "p:bpfkit/a 0xffffffff81000000");
        assert!(KprobeTarget::function("bad name").tracefs_definition("e").is_err());
        let u = ProbeRequest {
            kind: ProbeKind::Uprobe,
            target: "/bin/true".into(),
            offset: 0x1234,
            retprobe: false,
            ref_ctr_offset: 0x40,
            pid: -1,
            cookie: 0,
            via_tracefs: true,
            what: String::new(),
        };
        assert_eq!(u.tracefs_definition("u"), "p:bpfkit/u /bin/true:0x1234(0x40)");
        let name = u.event_name();
        assert!(name.starts_with("up_true_1234_") && name.len() < 64, "{name}");
    }

    #[test]
    fn kallsyms_lines_parse_with_and_without_a_module() {
        let s = parse_kallsyms_line("ffffffff82087900 T tcp_v4_connect").unwrap();
        assert_eq!((s.address, s.kind, s.name.as_str(), s.module.as_deref()), (0xffff_ffff_8208_7900, 'T', "tcp_v4_connect", None));
        assert!(s.is_function());
        let m = parse_kallsyms_line("ffffffffc0123450 d veth_ops\t[veth]").unwrap();
        assert_eq!((m.kind, m.module.as_deref()), ('d', Some("veth")));
        assert!(!m.is_function());
        assert_eq!(parse_kallsyms_line("not a line"), None);
    }

    #[test]
    fn this_kernel_has_its_own_entry_points() {
        // Every kernel has these (the syscall entry), kprobes or not; never a made-up name.
        let syms = kernel_symbols().unwrap();
        assert!(syms.len() > 1000, "{} symbols", syms.len());
        assert!(kernel_function("do_sys_openat2").unwrap().is_some());
        assert!(kernel_function("bpfkit_no_such_function").unwrap().is_none());
    }
}

crate::error::errno_from_sources!(ProbeError);
