//! The running kernel's vmlinux BTF read by libbpf (`btf__load_vmlinux_btf`), not by bpfkit: an
//! independent oracle for what this kernel has, so a test's expected value does not come from
//! the code under test. Included with `#[path]` by the tests that need it (it links libbpf).
#![allow(dead_code)]

use std::ffi::{CStr, CString};

/// The kernel's BTF as libbpf parsed it, freed on drop.
pub struct VmlinuxBtf(*mut libbpf_sys::btf);

impl VmlinuxBtf {
    pub fn load() -> VmlinuxBtf {
        // SAFETY: no arguments; libbpf returns an owned object or NULL (errno set).
        let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
        assert!(!btf.is_null(), "libbpf: btf__load_vmlinux_btf: {}", std::io::Error::last_os_error());
        VmlinuxBtf(btf)
    }

    fn find(&self, name: &str, kind: u32) -> Option<u32> {
        let c = CString::new(name).unwrap();
        // SAFETY: a live btf and a NUL-terminated name.
        let id = unsafe { libbpf_sys::btf__find_by_name_kind(self.0, c.as_ptr(), kind) };
        (id > 0).then_some(id as u32)
    }

    /// Whether a `FUNC` named `name` exists (kfuncs are looked up this way).
    pub fn has_func(&self, name: &str) -> bool {
        self.find(name, libbpf_sys::BTF_KIND_FUNC).is_some()
    }

    /// The value of enumerator `value` of `enum enum_name`, or `None` when this kernel's enum
    /// lacks it (or has no such enum).
    pub fn enum_value(&self, enum_name: &str, value: &str) -> Option<i64> {
        self.enum_values(enum_name).into_iter().find(|(n, _)| n == value).map(|(_, v)| v)
    }

    /// Every enumerator of `enum enum_name` (a 32-bit enum), in order.
    pub fn enum_values(&self, enum_name: &str) -> Vec<(String, i64)> {
        let Some(id) = self.find(enum_name, libbpf_sys::BTF_KIND_ENUM) else { return Vec::new() };
        // SAFETY: `id` was found in this btf, so the type exists; an ENUM's `vlen` (the low 16
        // bits of `info`) `struct btf_enum` records follow its `struct btf_type` in libbpf's copy.
        unsafe {
            let t = libbpf_sys::btf__type_by_id(self.0, id);
            assert!(!t.is_null());
            let vlen = ((*t).info & 0xffff) as usize;
            let records = t.add(1).cast::<libbpf_sys::btf_enum>();
            (0..vlen)
                .map(|i| {
                    let e = *records.add(i);
                    let name = CStr::from_ptr(libbpf_sys::btf__name_by_offset(self.0, e.name_off));
                    (name.to_string_lossy().into_owned(), e.val as i64)
                })
                .collect()
        }
    }
}

impl Drop for VmlinuxBtf {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { libbpf_sys::btf__free(self.0) };
    }
}
