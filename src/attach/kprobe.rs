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
}

crate::error::errno_from_sources!(ProbeError);
