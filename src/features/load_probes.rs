//! The kernel features libbpf 1.7 probes while loading an object (`features.c`,
//! `kernel_supports`) and lets change what it hands the kernel: each probed the way libbpf probes
//! it, so that bpfkit decides as libbpf does on the same kernel, once per process. They live
//! with the other feature probes; the object loader (`object::externs`, `object::load`) asks them.

use crate::insn::{build, Assembled, Reg};
use crate::prog::{AttachType, LoadOptions, ProgType, Program};
use crate::sys::{self, Cmd, LinkCreateAttr, UprobeMultiLink};
use std::os::fd::{AsFd, AsRawFd};

/// `LINUX_HAS_BPF_COOKIE`: whether a tracepoint program may call `bpf_get_attach_cookie`,
/// probed as libbpf's `probe_kern_bpf_cookie` does (load `call bpf_get_attach_cookie; exit`);
/// once per process.
pub(crate) fn has_bpf_cookie() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let prog = Assembled::from_insns(vec![build::call_helper(174), build::exit()]);
        let opts = LoadOptions::new("bpf_cookie", ProgType::Tracepoint).license("GPL");
        Program::load(&prog, &[], &opts).is_ok()
    })
}

/// The kernel function a syscall wrapper kernel has for bpf(2) on this architecture
/// (libbpf's `arch_specific_syscall_pfx`).
fn sys_bpf_wrapper() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("__x64_sys_bpf"),
        "x86" => Some("__ia32_sys_bpf"),
        "s390x" => Some("__s390x_sys_bpf"),
        "arm" => Some("__arm_sys_bpf"),
        "aarch64" => Some("__arm64_sys_bpf"),
        "mips" | "mips64" => Some("__mips_sys_bpf"),
        "riscv64" | "riscv32" => Some("__riscv_sys_bpf"),
        "powerpc" => Some("__powerpc_sys_bpf"),
        "powerpc64" => Some("__powerpc64_sys_bpf"),
        _ => None,
    }
}

/// `LINUX_HAS_SYSCALL_WRAPPER`: whether the kernel's syscalls go through `__<arch>_sys_*`
/// wrappers, probed as libbpf's `probe_kern_syscall_wrapper` does: a kprobe on `__x64_sys_bpf`
/// (by the kprobe PMU, else a `kprobe_events` line added and removed) can be created. A kernel
/// without kprobes says no, as it does to libbpf. Once per process.
pub(crate) fn has_syscall_wrapper() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        use sys::{probe_event_open, probe_events_file, probe_pmu, write_probe_events, ProbeEventSpec, ProbeKind};
        let Some(func) = sys_bpf_wrapper() else { return false };
        let Ok(target) = std::ffi::CString::new(func) else { return false };
        match probe_pmu(ProbeKind::Kprobe) {
            Ok(Some(pmu)) => {
                let spec = ProbeEventSpec { target: &target, offset: 0, retprobe: false, ref_ctr_offset: 0 };
                probe_event_open(&pmu, &spec, std::process::id() as i32).is_ok()
            }
            _ => {
                let Ok(Some(file)) = probe_events_file(ProbeKind::Kprobe) else { return false };
                let event = format!("bpfkit/syscall_wrapper_{}", std::process::id());
                if write_probe_events(&file, &format!("p:{event} {func}")).is_err() {
                    return false;
                }
                let _ = write_probe_events(&file, &format!("-:{event}"));
                true
            }
        }
    })
}

/// `FEAT_UPROBE_MULTI_LINK`: whether uprobe_multi links work, with the PID filtering fix
/// (libbpf's `probe_uprobe_multi_link`): a `uprobe.multi` program loads; a link to `/` fails
/// with EBADF; the same link with pid -1 fails with EINVAL. libbpf then loads `usdt` programs
/// with expected attach type `BPF_TRACE_UPROBE_MULTI`.
pub(crate) fn has_uprobe_multi_link() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let prog = Assembled::from_insns(vec![build::mov64(Reg::R0, 0), build::exit()]);
        let opts = LoadOptions::new("uprobe_multi", ProgType::Kprobe)
            .license("GPL")
            .expected_attach_type(AttachType::TraceUprobeMulti);
        let Ok(program) = Program::load(&prog, &[], &opts) else { return false };
        let offsets = [0u64];
        let link_errno = |pid: u32| {
            let mut attr = LinkCreateAttr {
                prog_fd: program.as_fd().as_raw_fd() as u32,
                target_fd: u32::MAX,
                attach_type: AttachType::TraceUprobeMulti.raw(),
                ..Default::default()
            };
            let member = UprobeMultiLink::new(c"/", &offsets, &[], &[], 0, pid)?;
            attr.set_target(member);
            // A link, if one were made, is dropped (detached) at once.
            sys::bpf_fd(Cmd::LinkCreate, &mut attr).err().and_then(|e| e.raw_os_error())
        };
        link_errno(0) == Some(libc::EBADF) && link_errno(u32::MAX) == Some(libc::EINVAL)
    })
}
