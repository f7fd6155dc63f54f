//! What the system says about BPF without asking bpf(2): the kernel release, vmlinux BTF, this
//! process's effective capabilities, bpffs mounts and the BPF sysctls — read from `/proc` and
//! `/sys` (no `unsafe`: `/proc/self/status` stands in for capget(2), `osrelease` for uname(2)).

use std::path::{Path, PathBuf};

use super::versions::KernelVersion;

pub use crate::caps::{Capabilities, Capability};

/// The system-level facts, each `None` when its file could not be read (reported, not fatal:
/// a container may hide `/proc/sys`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SystemInfo {
    /// `/proc/sys/kernel/osrelease`, e.g. `6.18.44-fc-v595`.
    pub release: Option<String>,
    /// The release's leading `major.minor.patch`.
    pub kernel: Option<KernelVersion>,
    /// `/sys/kernel/btf/vmlinux` exists (CO-RE, BTF-typed programs and struct_ops need it).
    pub btf_vmlinux: bool,
    /// This process's effective capabilities.
    pub capabilities: Option<Capabilities>,
    /// Mount points of bpffs in this mount namespace (`/proc/self/mounts`, type `bpf`).
    pub bpffs_mounts: Option<Vec<PathBuf>>,
    /// `kernel.unprivileged_bpf_disabled`: 0 allowed, 1 disabled for good, 2 disabled (admin can change).
    pub unprivileged_bpf_disabled: Option<u32>,
    /// `net.core.bpf_jit_enable`: 0 interpreter, 1 JIT, 2 JIT with debug output.
    pub jit_enable: Option<u32>,
    /// `net.core.bpf_jit_harden`: 0 off, 1 unprivileged, 2 everyone.
    pub jit_harden: Option<u32>,
    /// `net.core.bpf_jit_kallsyms`: JITed programs in /proc/kallsyms.
    pub jit_kallsyms: Option<u32>,
}

const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

impl SystemInfo {
    /// Read everything now (a few small files; [`super::Features`] caches the result).
    pub fn read() -> SystemInfo {
        let release = read_trimmed("/proc/sys/kernel/osrelease");
        SystemInfo {
            kernel: release.as_deref().and_then(KernelVersion::parse),
            release,
            btf_vmlinux: Path::new(BTF_VMLINUX).exists(),
            capabilities: std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(Capabilities::parse_status),
            bpffs_mounts: std::fs::read_to_string("/proc/self/mounts").ok().map(|m| bpffs_mounts(&m)),
            unprivileged_bpf_disabled: read_number("/proc/sys/kernel/unprivileged_bpf_disabled"),
            jit_enable: read_number("/proc/sys/net/core/bpf_jit_enable"),
            jit_harden: read_number("/proc/sys/net/core/bpf_jit_harden"),
            jit_kallsyms: read_number("/proc/sys/net/core/bpf_jit_kallsyms"),
        }
    }

    /// Whether this process has `cap` (false when the capability set could not be read).
    pub fn has(&self, cap: Capability) -> bool {
        self.capabilities.is_some_and(|c| c.has(cap))
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_number(path: &str) -> Option<u32> {
    read_trimmed(path)?.parse().ok()
}

/// bpffs mount points in a `/proc/<pid>/mounts` text (fields: source, target, fstype, …; the
/// target escapes space, tab, newline and backslash as `\040`-style octal).
pub fn bpffs_mounts(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
            (fstype == "bpf").then(|| PathBuf::from(unescape_octal(target)))
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 4).filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match escape {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_from_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        let caps = Capabilities::parse_status(status).unwrap();
        assert!(Capability::ALL.iter().all(|c| caps.has(*c)));
        let caps = Capabilities::parse_status("CapEff:\t0000000000001000\n").unwrap();
        assert!(caps.has(Capability::NetAdmin) && !caps.has(Capability::Bpf));
        assert_eq!(Capabilities::parse_status("CapPrm:\t0\n"), None);
    }

    #[test]
    fn bpffs_mount_points() {
        let mounts = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,relatime 0 0\nnone /tmp/my\\040dir bpf rw 0 0\n";
        assert_eq!(bpffs_mounts(mounts), vec![PathBuf::from("/sys/fs/bpf"), PathBuf::from("/tmp/my dir")]);
    }
}
