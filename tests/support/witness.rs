//! Independent witnesses: when bpfkit's own probe says the running kernel lacks something, a test
//! does not take bpfkit's word for it (a bpfkit bug could hide behind "the kernel refuses"). It
//! asks a second tool that shares no code with bpfkit: libbpf 1.7 (through libbpf-sys: its
//! feature probes, its BTF parser reading the kernel's enums), or the kernel's own files. The
//! answer goes to [`super::kernel_lacks`], the one place that turns a refusal into a skip.

use super::libbpf_btf::VmlinuxBtf;
use super::Witness;

fn errno_text(ret: i32) -> String {
    std::io::Error::from_raw_os_error(-ret).to_string()
}

/// libbpf's verdict from one of its `libbpf_probe_bpf_*` calls: 1 yes, 0 no, < 0 could not tell.
fn libbpf_verdict(call: &str, ret: i32) -> Witness {
    match ret {
        0 => Witness::Confirms(format!("libbpf 1.7's {call} says no")),
        1 => Witness::Contradicts(format!("libbpf 1.7's {call} says yes")),
        e => Witness::Absent(format!("libbpf 1.7's {call} could not tell ({})", errno_text(e))),
    }
}

/// libbpf's probe of map type `raw` (`libbpf_probe_bpf_map_type`).
pub fn libbpf_map_type(raw: u32) -> Witness {
    // SAFETY: libbpf's probe takes a map type number and no options (NULL).
    let ret = unsafe { libbpf_sys::libbpf_probe_bpf_map_type(raw, std::ptr::null()) };
    libbpf_verdict(&format!("libbpf_probe_bpf_map_type({raw})"), ret)
}

/// libbpf's probe of program type `raw` (`libbpf_probe_bpf_prog_type`).
pub fn libbpf_prog_type(raw: u32) -> Witness {
    // SAFETY: libbpf's probe takes a program type number and no options (NULL).
    let ret = unsafe { libbpf_sys::libbpf_probe_bpf_prog_type(raw, std::ptr::null()) };
    libbpf_verdict(&format!("libbpf_probe_bpf_prog_type({raw})"), ret)
}

/// Whether `enum enum_name` of the kernel's BTF, parsed by libbpf, has `value`: a kernel whose
/// uapi enum lacks an attach or link type cannot offer it.
pub fn kernel_enum_has(enum_name: &str, value: &str) -> Witness {
    match VmlinuxBtf::load().enum_value(enum_name, value) {
        None => Witness::Confirms(format!("the kernel's BTF, read by libbpf, has no {value} in enum {enum_name}")),
        Some(v) => Witness::Contradicts(format!("the kernel's BTF, read by libbpf, has {value} = {v} in enum {enum_name}")),
    }
}

/// libbpf's own load of the same object failed too (`libbpf`: its error, or that it loaded).
pub fn libbpf_refused<T>(libbpf: &Result<T, String>) -> Witness {
    match libbpf {
        Err(e) => Witness::Confirms(format!("libbpf 1.7 refuses it too ({e})")),
        Ok(_) => Witness::Contradicts("libbpf 1.7 loads it".into()),
    }
}

/// libbpf's own `bpf_prog_load` of `r0 = 0; exit` as `prog_type` with `expected_attach_type` and
/// `attach_btf_id`: whether the kernel refuses such a program with `errno`.
pub fn libbpf_prog_load_refused(prog_type: u32, expected_attach_type: u32, attach_btf_id: u32, errno: i32) -> Witness {
    let insns = [
        libbpf_sys::bpf_insn { code: 0xb7, _bitfield_align_1: [], _bitfield_1: Default::default(), off: 0, imm: 0 },
        libbpf_sys::bpf_insn { code: 0x95, _bitfield_align_1: [], _bitfield_1: Default::default(), off: 0, imm: 0 },
    ];
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as _,
        expected_attach_type,
        attach_btf_id,
        ..Default::default()
    };
    // SAFETY: two valid instructions, NUL-terminated name and licence, a sized options struct
    // without buffers; a returned fd is closed at once.
    let ret = unsafe {
        libbpf_sys::bpf_prog_load(prog_type, c"witness".as_ptr(), c"GPL".as_ptr(), insns.as_ptr(), insns.len() as _, &mut opts)
    };
    if ret >= 0 {
        // SAFETY: the fd libbpf just returned, closed once.
        unsafe { libc::close(ret) };
        return Witness::Contradicts(format!("libbpf 1.7's bpf_prog_load(type {prog_type}, attach type {expected_attach_type}, BTF id {attach_btf_id}) succeeded"));
    }
    let e = std::io::Error::from_raw_os_error(-ret);
    if -ret == errno {
        Witness::Confirms(format!("libbpf 1.7's bpf_prog_load of the same program fails too ({e})"))
    } else {
        Witness::Absent(format!("libbpf 1.7's bpf_prog_load fails with another error ({e})"))
    }
}

/// Whether the kernel has no kprobes at all: neither the kprobe PMU nor tracefs' kprobe_events,
/// read straight from sysfs and tracefs.
pub fn no_kprobes() -> Witness {
    let pmu = "/sys/bus/event_source/devices/kprobe";
    let events = "/sys/kernel/tracing/kprobe_events";
    match (std::path::Path::new(pmu).exists(), std::path::Path::new(events).exists()) {
        (false, false) => Witness::Confirms(format!("neither {pmu} nor {events} exists")),
        (true, _) => Witness::Contradicts(format!("{pmu} exists")),
        (_, true) => Witness::Contradicts(format!("{events} exists")),
    }
}
