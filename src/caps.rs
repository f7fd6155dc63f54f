//! Capabilities: which ones a BPF operation needs, which ones this process has, and the sentence
//! an error adds when an EPERM is explained by a missing one (`prog_load(xdp "p"): EPERM
//! (Operation not permitted) — needs CAP_BPF and CAP_NET_ADMIN; this process has neither`).
//!
//! The kernel's rules (`kernel/bpf/syscall.c`, 5.8+): bpf(2) itself needs `CAP_BPF`
//! (`bpf_capable()`) once `kernel.unprivileged_bpf_disabled` is set, as it is by default;
//! network program types and socket/device maps also need `CAP_NET_ADMIN` (`bpf_net_capable()`,
//! `is_net_admin_prog_type()`); tracing program types need `CAP_PERFMON` (`perfmon_capable()`,
//! `is_perfmon_prog_type()`), and so do kernel perf events and probes. `CAP_SYS_ADMIN` stands in
//! for each of the three. Read from `/proc/self/status` (no `unsafe`: it stands in for capget(2)).

use std::fmt;

/// The capabilities that decide what BPF a process may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Everything before 5.8; still needed for some program types and for reading kernel pointers.
    SysAdmin,
    /// Network program types (XDP, TC, cgroup skb, …) and PROG_QUERY.
    NetAdmin,
    /// Tracing program types and reading kernel memory (5.8+).
    Perfmon,
    /// bpf(2) itself, maps and non-network, non-tracing programs (5.8+).
    Bpf,
}

impl Capability {
    /// Every capability bpfkit checks for.
    pub const ALL: [Capability; 4] = [Capability::SysAdmin, Capability::NetAdmin, Capability::Perfmon, Capability::Bpf];

    /// The bit in the capability sets (`include/uapi/linux/capability.h`).
    pub fn bit(self) -> u32 {
        match self {
            Capability::SysAdmin => 21,
            Capability::NetAdmin => 12,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
        }
    }

    /// The capability's name, as `include/uapi/linux/capability.h` spells it (`CAP_BPF`).
    pub fn name(self) -> &'static str {
        match self {
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An effective capability set (`CapEff` of `/proc/self/status`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(pub u64);

impl Capabilities {
    /// Whether `cap` is in the set.
    pub fn has(self, cap: Capability) -> bool {
        self.0 & (1u64 << cap.bit()) != 0
    }

    /// The `CapEff:` line of a `/proc/<pid>/status` text.
    pub fn parse_status(status: &str) -> Option<Capabilities> {
        let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
        u64::from_str_radix(hex.trim(), 16).ok().map(Capabilities)
    }
}

impl Capabilities {
    /// This process's effective set, from `/proc/self/status`; `None` when it cannot be read.
    pub fn current() -> Option<Capabilities> {
        std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(Capabilities::parse_status)
    }

    /// Whether the kernel's check for `cap` passes: the capability itself or `CAP_SYS_ADMIN`
    /// (`bpf_capable()`, `perfmon_capable()` and `bpf_net_capable()` all accept it).
    pub fn satisfies(self, cap: Capability) -> bool {
        self.has(cap) || self.has(Capability::SysAdmin)
    }
}

/// The capabilities an operation needs and which of them this process lacks: what an EPERM
/// error says when it is explained by them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingCapabilities {
    /// What the operation needs (each also satisfied by `CAP_SYS_ADMIN`).
    pub needed: Vec<Capability>,
    /// Those of `needed` this process has neither itself nor through `CAP_SYS_ADMIN`.
    pub missing: Vec<Capability>,
}

impl MissingCapabilities {
    /// What of `needed` the process with capabilities `have` lacks; `None` when it lacks nothing
    /// (the EPERM then comes from something else: lockdown, a kernel without trampolines, a
    /// build that refuses the map type).
    pub fn of(needed: &[Capability], have: Capabilities) -> Option<MissingCapabilities> {
        let missing: Vec<Capability> = needed.iter().copied().filter(|&c| !have.satisfies(c)).collect();
        (!missing.is_empty()).then(|| MissingCapabilities { needed: needed.to_vec(), missing })
    }
}

fn and_list(caps: &[Capability]) -> String {
    let names: Vec<&str> = caps.iter().map(|c| c.name()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl fmt::Display for MissingCapabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "needs {}", and_list(&self.needed))?;
        if self.missing.len() == self.needed.len() {
            match self.needed.len() {
                1 => write!(f, "; this process lacks it"),
                2 => write!(f, "; this process has neither"),
                _ => write!(f, "; this process has none of them"),
            }
        } else {
            write!(f, "; this process lacks {}", and_list(&self.missing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(caps: &[Capability]) -> Capabilities {
        Capabilities(caps.iter().fold(0, |acc, c| acc | 1u64 << c.bit()))
    }

    #[test]
    fn missing_capabilities_are_named() {
        let needed = [Capability::Bpf, Capability::NetAdmin];
        let none = MissingCapabilities::of(&needed, with(&[])).unwrap();
        assert_eq!(none.to_string(), "needs CAP_BPF and CAP_NET_ADMIN; this process has neither");
        let one = MissingCapabilities::of(&needed, with(&[Capability::Bpf])).unwrap();
        assert_eq!(one.to_string(), "needs CAP_BPF and CAP_NET_ADMIN; this process lacks CAP_NET_ADMIN");
        assert_eq!(MissingCapabilities::of(&needed, with(&[Capability::Bpf, Capability::NetAdmin])), None);
        assert_eq!(MissingCapabilities::of(&needed, with(&[Capability::SysAdmin])), None, "CAP_SYS_ADMIN stands in");
        let three = MissingCapabilities::of(&[Capability::Bpf, Capability::Perfmon, Capability::NetAdmin], with(&[])).unwrap();
        assert_eq!(three.to_string(), "needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; this process has none of them");
        assert_eq!(MissingCapabilities::of(&[Capability::Bpf], with(&[])).unwrap().to_string(), "needs CAP_BPF; this process lacks it");
    }
}
