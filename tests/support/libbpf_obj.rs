//! Objects loaded by libbpf 1.7 (libbpf-sys) beside bpfkit's loader, and what the kernel says
//! about the programs: xlated instructions with map ids normalised to map names and JIT
//! addresses masked, tag, verified instruction count, func/line info counts. Included with
//! `#[path]` by the tests that compare the two loaders (it links libbpf).
#![allow(dead_code)]

use bpfkit::insn::RawInsn;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, CString};
use std::path::Path;

/// One xlated slot with its map operand (by the map's kernel name) taken out of the immediate.
pub type Normal = Vec<(RawInsn, Option<String>)>;

/// Mask what differs between two loads of the same program: map ids (→ names), JIT addresses.
pub fn normalise(slots: &[RawInsn], map_names: &HashMap<u32, String>) -> Normal {
    let mut out = Vec::with_capacity(slots.len());
    let mut i = 0;
    while i < slots.len() {
        let mut s = slots[i];
        if s.code == 0x18 && i + 1 < slots.len() {
            let mut next = slots[i + 1];
            let mut name = None;
            if matches!(s.src(), 1 | 2) {
                name = Some(
                    map_names.get(&(s.imm as u32)).cloned().unwrap_or_else(|| format!("unknown map id {}", s.imm)),
                );
                s.imm = 0;
            } else if next.imm as u32 >= 0xffff_0000 {
                // A kernel address (callback, kfunc data, ksym): differs per load.
                s.imm = 0;
                next.imm = 0;
            }
            out.push((s, name));
            out.push((next, None));
            i += 2;
            continue;
        }
        if s.code == 0x85 && s.src() == 1 {
            s.imm = 0; // bpf-to-bpf call: the JIT's address of the callee
        }
        out.push((s, None));
        i += 1;
    }
    out
}

pub fn show(n: &Normal) -> String {
    n.iter()
        .enumerate()
        .map(|(i, (s, m))| {
            format!("{i:4}: {:02x} {:02x} {:6} {:11} {}\n", s.code, s.regs, s.off, s.imm, m.as_deref().unwrap_or(""))
        })
        .collect()
}

/// What the kernel says about a loaded program, beyond its instructions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub tag: [u8; 8],
    pub verified_insns: u32,
    pub nr_func_info: u32,
    pub nr_line_info: u32,
    pub has_btf: bool,
}

/// The kernel's xlated instructions and [`Facts`] of program fd `fd`, read with libbpf's info
/// call.
pub fn prog_info(fd: i32) -> (Vec<RawInsn>, Facts) {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a zeroed `bpf_prog_info` of `len` bytes, valid for writes during the call.
    let err = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len) };
    assert_eq!(err, 0, "bpf_prog_get_info_by_fd({fd})");
    let facts = Facts {
        tag: info.tag,
        verified_insns: info.verified_insns,
        nr_func_info: info.nr_func_info,
        nr_line_info: info.nr_line_info,
        has_btf: info.btf_id != 0,
    };
    let mut buf = vec![0u8; info.xlated_prog_len as usize];
    let mut info2 = libbpf_sys::bpf_prog_info {
        xlated_prog_len: buf.len() as u32,
        xlated_prog_insns: buf.as_mut_ptr() as u64,
        ..Default::default()
    };
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info2.xlated_prog_insns` points at `buf`, `xlated_prog_len` bytes long, which
    // outlives the call; every other pointer field is zero (not requested).
    let err = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd, &mut info2, &mut len) };
    assert_eq!(err, 0, "bpf_prog_get_info_by_fd({fd}) with a buffer");
    (buf.chunks_exact(8).map(|c| RawInsn::from_bytes(c.try_into().unwrap())).collect(), facts)
}

/// What the kernel says about a map, beyond its id: equal for both loaders when they created
/// it alike (BTF type ids are the object's, the same in both).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MapFacts {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
    pub map_extra: u64,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
    pub btf_vmlinux_value_type_id: u32,
}

/// The kernel's id and [`MapFacts`] of map fd `fd`.
pub fn map_info(fd: i32) -> (u32, MapFacts) {
    let mut info = libbpf_sys::bpf_map_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
    // SAFETY: `info` is a zeroed `bpf_map_info` of `len` bytes, valid for writes during the call.
    let err = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd, &mut info, &mut len) };
    assert_eq!(err, 0, "bpf_map_get_info_by_fd({fd})");
    let name: Vec<u8> = info.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let facts = MapFacts {
        name: String::from_utf8_lossy(&name).into_owned(),
        map_type: info.type_,
        key_size: info.key_size,
        value_size: info.value_size,
        max_entries: info.max_entries,
        flags: info.map_flags,
        map_extra: info.map_extra,
        btf_key_type_id: info.btf_key_type_id,
        btf_value_type_id: info.btf_value_type_id,
        btf_vmlinux_value_type_id: info.btf_vmlinux_value_type_id,
    };
    (info.id, facts)
}

/// Program name → its normalised xlated instructions and facts.
pub type Loaded = BTreeMap<String, (Normal, Facts)>;

// ---------------------------------------------------------------------------------------------
// libbpf's messages
// ---------------------------------------------------------------------------------------------

/// The verifier log libbpf printed for a program it failed to load (it loads with a log when a
/// load without one fails, growing its buffer as needed, and prints the log, its CO-RE and
/// kfunc poison lines rewritten, between these markers).
pub fn load_log(messages: &str) -> String {
    let Some(start) = messages.find("-- BEGIN PROG LOAD LOG --\n") else { return String::new() };
    let rest = &messages[start + "-- BEGIN PROG LOAD LOG --\n".len()..];
    rest[..rest.find("-- END PROG LOAD LOG --").unwrap_or(rest.len())].to_string()
}

thread_local! {
    /// Where this thread's libbpf warnings go (a memfd), read back by [`take_messages`].
    static SINK: std::cell::OnceCell<std::fs::File> = const { std::cell::OnceCell::new() };
}

unsafe extern "C" fn print_to_sink(
    level: libbpf_sys::libbpf_print_level,
    fmt: *const std::os::raw::c_char,
    ap: *mut libbpf_sys::__va_list_tag,
) -> std::os::raw::c_int {
    if level != libbpf_sys::LIBBPF_WARN {
        return 0;
    }
    SINK.with(|s| {
        let f = s.get_or_init(memfd);
        // SAFETY: libbpf hands its format and the matching va_list; the fd is open.
        unsafe { libbpf_sys::vdprintf(std::os::fd::AsRawFd::as_raw_fd(f), fmt, ap) }
    })
}

fn memfd() -> std::fs::File {
    // SAFETY: a NUL-terminated name; the fd returned is owned by the File.
    let fd = unsafe { libc::memfd_create(c"libbpf-messages".as_ptr(), 0) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh fd nobody else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

/// Route libbpf's warnings into per-thread buffers (instead of stderr).
pub fn capture_messages() {
    // SAFETY: the callback is a valid `libbpf_print_fn_t` for the life of the process.
    unsafe { libbpf_sys::libbpf_set_print(Some(print_to_sink)) };
}

/// libbpf's warnings on this thread since the last call.
pub fn take_messages() -> String {
    use std::io::{Read, Seek};
    SINK.with(|s| {
        let mut f = s.get_or_init(memfd);
        let mut text = String::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut text).unwrap_or_default();
        f.set_len(0).unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        text
    })
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

/// An object opened by libbpf, closed on drop.
pub struct LibbpfObject {
    obj: *mut libbpf_sys::bpf_object,
}

impl LibbpfObject {
    /// `bpf_object__open_file` with maps pinned by name under `pin_root`; libbpf's errno and
    /// its messages on refusal.
    pub fn open(path: &Path, pin_root: &Path) -> Result<LibbpfObject, (i32, String)> {
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        let c_root = CString::new(pin_root.to_str().unwrap()).unwrap();
        let opts = libbpf_sys::bpf_object_open_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as libbpf_sys::size_t,
            pin_root_path: c_root.as_ptr(),
            ..Default::default()
        };
        take_messages();
        // SAFETY: NUL-terminated path, opts of the size it says, both alive during the call.
        let obj = unsafe { libbpf_sys::bpf_object__open_file(c_path.as_ptr(), &opts) };
        if obj.is_null() {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err((errno, take_messages()));
        }
        Ok(LibbpfObject { obj })
    }

    fn progs(&self) -> Vec<*mut libbpf_sys::bpf_program> {
        let mut out = Vec::new();
        let mut prog = std::ptr::null_mut();
        loop {
            // SAFETY: `obj` is open; `prog` is null or its previous program.
            prog = unsafe { libbpf_sys::bpf_object__next_program(self.obj, prog) };
            if prog.is_null() {
                return out;
            }
            out.push(prog);
        }
    }

    fn name_of(prog: *mut libbpf_sys::bpf_program) -> String {
        // SAFETY: `prog` belongs to an open object; the name is NUL-terminated, copied.
        unsafe { CStr::from_ptr(libbpf_sys::bpf_program__name(prog)) }.to_string_lossy().into_owned()
    }

    /// Every program's name and whether libbpf loads it by default, in the object's order.
    pub fn programs(&self) -> Vec<(String, bool)> {
        // SAFETY: each `p` belongs to the open object.
        self.progs().into_iter().map(|p| (Self::name_of(p), unsafe { libbpf_sys::bpf_program__autoload(p) })).collect()
    }

    /// Load only program `name` (autoload off for every other).
    pub fn only(&mut self, name: &str) {
        for p in self.progs() {
            // SAFETY: `p` belongs to the open, not yet loaded object.
            unsafe { libbpf_sys::bpf_program__set_autoload(p, Self::name_of(p) == name) };
        }
    }

    /// `bpf_object__load`: the errno of a refusal and libbpf's messages.
    pub fn load(&mut self) -> Result<(), (i32, String)> {
        take_messages();
        // SAFETY: `obj` is open and not loaded.
        let err = unsafe { libbpf_sys::bpf_object__load(self.obj) };
        if err != 0 {
            return Err((-err, take_messages()));
        }
        Ok(())
    }

    /// The value at key 0 of the loaded object's map `name` (libbpf's name: `.kconfig`, …).
    pub fn map_value(&self, name: &str) -> Vec<u8> {
        let c = CString::new(name).unwrap();
        // SAFETY: `obj` is loaded; `c` is NUL-terminated.
        let map = unsafe { libbpf_sys::bpf_object__find_map_by_name(self.obj, c.as_ptr()) };
        assert!(!map.is_null(), "libbpf has no map {name}");
        // SAFETY: `map` belongs to the loaded object.
        let (fd, size) = unsafe { (libbpf_sys::bpf_map__fd(map), libbpf_sys::bpf_map__value_size(map)) };
        let mut value = vec![0u8; size as usize];
        let key = 0u32;
        // SAFETY: key and value buffers of the map's key (4) and value sizes, alive for the call.
        let err = unsafe { libbpf_sys::bpf_map_lookup_elem(fd, (&key as *const u32).cast(), value.as_mut_ptr().cast()) };
        assert_eq!(err, 0, "lookup in libbpf's {name}");
        value
    }

    /// The loaded programs, and what the kernel says of the maps libbpf created (by name).
    pub fn loaded(&self) -> (Loaded, Vec<MapFacts>) {
        let mut names = HashMap::new();
        let mut map_names = Vec::new();
        let mut map = std::ptr::null_mut();
        loop {
            // SAFETY: `obj` is loaded; `map` is null or its previous map.
            map = unsafe { libbpf_sys::bpf_object__next_map(self.obj, map) };
            if map.is_null() {
                break;
            }
            // SAFETY: `map` belongs to the loaded `obj`.
            let fd = unsafe { libbpf_sys::bpf_map__fd(map) };
            if fd < 0 {
                continue; // not created (autocreate off)
            }
            let (id, facts) = map_info(fd);
            names.insert(id, facts.name.clone());
            map_names.push(facts);
        }
        let mut programs = BTreeMap::new();
        for p in self.progs() {
            // SAFETY: `p` belongs to the loaded object.
            let fd = unsafe { libbpf_sys::bpf_program__fd(p) };
            if fd >= 0 {
                let (xlated, facts) = prog_info(fd);
                programs.insert(Self::name_of(p), (normalise(&xlated, &names), facts));
            }
        }
        map_names.sort();
        (programs, map_names)
    }
}

impl Drop for LibbpfObject {
    fn drop(&mut self) {
        // SAFETY: `obj` is valid and not used after this.
        unsafe { libbpf_sys::bpf_object__close(self.obj) };
    }
}

// ---------------------------------------------------------------------------------------------
// bpfkit's side
// ---------------------------------------------------------------------------------------------

/// Kernel map id → name of a loaded bpfkit object's maps.
pub fn map_names(loaded: &bpfkit::object::LoadedObject) -> HashMap<u32, String> {
    loaded
        .maps()
        .map(|(_, m)| {
            let info = m.info().expect("map info");
            (info.id, info.name)
        })
        .collect()
}

/// What the kernel says of a loaded bpfkit object's maps, sorted by name.
pub fn map_facts(loaded: &bpfkit::object::LoadedObject) -> Vec<MapFacts> {
    let mut out: Vec<MapFacts> = loaded
        .maps()
        .map(|(_, m)| map_info(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(m))).1)
        .collect();
    out.sort();
    out
}

/// A loaded bpfkit object's programs, as [`LibbpfObject::loaded`] gives libbpf's.
pub fn loaded_by_bpfkit(loaded: &bpfkit::object::LoadedObject) -> Loaded {
    let names = map_names(loaded);
    loaded
        .programs()
        .iter()
        .map(|p| {
            let (raw, facts) = prog_info(std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(p.program())));
            (p.name.clone(), (normalise(&raw, &names), facts))
        })
        .collect()
}
