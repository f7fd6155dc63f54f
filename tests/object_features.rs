//! Object features beyond the corpus basics, each loaded by bpfkit (`bpfkit::object`) and by
//! libbpf 1.7 and triggered where this kernel allows: `.kconfig` externs, `__ksym` variables,
//! custom `.rodata.*` and `version` sections with mmapped globals, attaching the corpus's
//! remaining program types, and the kernel's refusal of fentry/LSM programs.

mod support;

use support::veth::{Veth, A_IP as VA, B_IP as VB};

use bpfkit::core_btf::TypeDetail;
use bpfkit::insn::{Imm64, Insn};
use bpfkit::object::{LoadedObject, Object};
use bpfkit::prog::TestRun;
use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/objects");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

// ---------------------------------------------------------------------------------------------
// libbpf's side
// ---------------------------------------------------------------------------------------------

/// An object opened and loaded by libbpf; closed on drop.
struct Libbpf(*mut libbpf_sys::bpf_object);

impl Drop for Libbpf {
    fn drop(&mut self) {
        // SAFETY: the object is valid and not used after this.
        unsafe { libbpf_sys::bpf_object__close(self.0) };
    }
}

impl Libbpf {
    /// Open and load `path`; libbpf's error (negative errno) otherwise.
    fn load(path: &Path) -> Result<Libbpf, i32> {
        Libbpf::load_with(path, |_| {})
    }

    /// The memory libbpf keeps for global data map `section`: its initial value before load,
    /// the map's own mapping after (mmapable maps).
    fn data(&self, section: &str) -> &mut [u8] {
        let map = self.map(section);
        let mut size = 0usize;
        // SAFETY: `map` belongs to the object; libbpf returns its buffer and size.
        let ptr = unsafe { libbpf_sys::bpf_map__initial_value(map, &mut size as *mut usize as *mut _) };
        assert!(!ptr.is_null(), "libbpf has no data for {section}");
        // SAFETY: libbpf's buffer of `size` bytes lives as long as the object.
        unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, size) }
    }

    /// Map `section` by its real name (libbpf matches `.bss`, `.rodata.limits`, … exactly).
    fn map(&self, section: &str) -> *mut libbpf_sys::bpf_map {
        let c = CString::new(section).unwrap();
        // SAFETY: `self.0` is valid; `c` is NUL-terminated.
        let map = unsafe { libbpf_sys::bpf_object__find_map_by_name(self.0, c.as_ptr()) };
        assert!(!map.is_null(), "libbpf has no map for {section}");
        map
    }

    /// Open `path`, let `adjust` change it before load (as libbpf's open phase allows), load.
    fn load_with(path: &Path, adjust: impl FnOnce(&Libbpf)) -> Result<Libbpf, i32> {
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: `c_path` is a NUL-terminated path; null opts are allowed.
        let obj = unsafe { libbpf_sys::bpf_object__open_file(c_path.as_ptr(), std::ptr::null()) };
        if obj.is_null() {
            return Err(-1);
        }
        let obj = Libbpf(obj);
        adjust(&obj);
        // SAFETY: `obj.0` is the object just opened.
        let err = unsafe { libbpf_sys::bpf_object__load(obj.0) };
        if err != 0 {
            return Err(err);
        }
        Ok(obj)
    }

    fn prog_fd(&self, name: &str) -> i32 {
        let c = CString::new(name).unwrap();
        // SAFETY: `self.0` is loaded; `c` is NUL-terminated.
        let prog = unsafe { libbpf_sys::bpf_object__find_program_by_name(self.0, c.as_ptr()) };
        assert!(!prog.is_null(), "libbpf has no program {name}");
        // SAFETY: `prog` belongs to the loaded object.
        unsafe { libbpf_sys::bpf_program__fd(prog) }
    }

    /// Run program `name` once with PROG_TEST_RUN (no data), returning its r0.
    fn test_run(&self, name: &str) -> u32 {
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as _,
            ..Default::default()
        };
        // SAFETY: `opts` is a zeroed, sized `bpf_test_run_opts` with no buffers.
        let err = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog_fd(name), &mut opts) };
        assert_eq!(err, 0, "libbpf test run of {name}");
        opts.retval
    }

    /// The value of global data map `section` (`.bss`, `.data`, …), read from the kernel.
    fn section(&self, section: &str) -> Vec<u8> {
        let map = self.map(section);
        // SAFETY: as above.
        let (fd, size) = unsafe { (libbpf_sys::bpf_map__fd(map), libbpf_sys::bpf_map__value_size(map)) };
        let mut value = vec![0u8; size as usize];
        let key = 0u32;
        // SAFETY: `key` is 4 bytes and `value` the map's value size, both valid for the call.
        let err = unsafe {
            libbpf_sys::bpf_map_lookup_elem(fd, &key as *const u32 as *const _, value.as_mut_ptr() as *mut _)
        };
        assert_eq!(err, 0, "lookup in libbpf's {section}");
        value
    }
}

/// Where variable `var` is in its data section, by the object's BTF: (section, offset, size).
fn var_location(obj: &Object, var: &str) -> (String, usize, usize) {
    let btf = obj.btf().expect("object BTF");
    for id in btf.ids() {
        let t = btf.type_by_id(id).unwrap();
        if let TypeDetail::Datasec { vars, .. } = &t.detail {
            for v in vars {
                if btf.name_of(v.ty).is_ok_and(|n| n == var) {
                    return (t.name.to_string(), v.offset as usize, v.size as usize);
                }
            }
        }
    }
    panic!("no global {var}");
}

/// Global `var` as libbpf's loaded copy of the object has it.
fn libbpf_global(lib: &Libbpf, obj: &Object, var: &str) -> Vec<u8> {
    let (sec, off, size) = var_location(obj, var);
    lib.section(&sec)[off..off + size].to_vec()
}

fn u64_of(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

fn bpfkit_global(loaded: &LoadedObject, var: &str) -> Vec<u8> {
    loaded.global(var).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// 1. `.kconfig` externs
// ---------------------------------------------------------------------------------------------

/// The running kernel's config as this test reads it itself (`zcat`, or the plain file).
fn kernel_config() -> Option<HashMap<String, String>> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let boot = format!("/boot/config-{}", release.trim());
    let text = std::fs::read_to_string(&boot).ok().or_else(|| {
        let out = std::process::Command::new("zcat").arg("/proc/config.gz").output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("CONFIG_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn kconfig_externs_have_the_kernels_values() {
    if !support::kernel_or_skip("kconfig_externs_have_the_kernels_values") {
        return;
    }
    let path = fixture("o23_kconfig.o");
    let obj = Object::open(&path).unwrap();
    let kconfig = obj.map(".kconfig").expect("a .kconfig map");
    assert_eq!(kconfig.kernel_name, "o23_kco.kconfig");
    let loaded = obj.clone().load().unwrap_or_else(|e| panic!("{e}"));
    let lib = Libbpf::load(&path).expect("libbpf loads o23_kconfig.o");
    loaded.program("read_kconfig").unwrap().program().test_run(&TestRun::default()).unwrap();
    lib.test_run("read_kconfig");

    // Every value equals libbpf's.
    let vars = ["kernel_version", "bpf_syscall", "bpf_jit", "veth", "hz", "nr_cpus", "hostname", "missing", "runs"];
    for var in vars {
        assert_eq!(bpfkit_global(&loaded, var), libbpf_global(&lib, &obj, var), "{var}: bpfkit vs libbpf");
    }
    assert_eq!(u64_of(&bpfkit_global(&loaded, "runs")), 1);
    assert_eq!(u64_of(&bpfkit_global(&loaded, "missing")), 0, "a __weak option the kernel lacks is 0");

    // And what this test reads itself: uname's release …
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let nums: Vec<u32> =
        release.trim().split(['.', '-']).take(3).map(|n| n.parse().expect("numeric release")).collect();
    let code = (nums[0] << 16) + (nums[1] << 8) + nums[2].min(255);
    assert_eq!(u64_of(&bpfkit_global(&loaded, "kernel_version")), u64::from(code), "LINUX_KERNEL_VERSION");

    // … and the kernel config, when there is one.
    let Some(config) = kernel_config() else {
        // Without a config bpfkit and libbpf both read every CONFIG_* as absent (compared above);
        // only this file-based check has nothing to compare with.
        let boot = format!("/boot/config-{}", release.trim());
        let present = ["/proc/config.gz", boot.as_str()].into_iter().find(|p| std::path::Path::new(p).exists());
        let witness = if let Some(p) = present {
            support::Witness::Contradicts(format!("{p} exists"))
        } else {
            support::Witness::Confirms(format!("neither /boot/config-{} nor /proc/config.gz exists", release.trim()))
        };
        support::kernel_lacks("the CONFIG_* values", "a readable kernel config", "kernel_config() found none", witness);
        return;
    };
    let get = |k: &str| config.get(k).map(String::as_str);
    let tri = |k: &str| match get(k) {
        Some("y") => 1,
        Some("m") => 2,
        _ => 0,
    };
    assert_eq!(u64_of(&bpfkit_global(&loaded, "bpf_syscall")), u64::from(get("CONFIG_BPF_SYSCALL") == Some("y")));
    assert_eq!(u64_of(&bpfkit_global(&loaded, "bpf_jit")), tri("CONFIG_BPF_JIT"));
    assert_eq!(bpfkit_global(&loaded, "veth")[0], get("CONFIG_VETH").map_or(0, |v| v.as_bytes()[0]));
    assert_eq!(u64_of(&bpfkit_global(&loaded, "hz")), get("CONFIG_HZ").unwrap().parse::<u64>().unwrap());
    assert_eq!(
        u64_of(&bpfkit_global(&loaded, "nr_cpus")),
        get("CONFIG_NR_CPUS").map_or(0, |v| v.parse::<u64>().unwrap())
    );
    let host = get("CONFIG_DEFAULT_HOSTNAME").map_or("", |v| v.trim_matches('"'));
    let got = bpfkit_global(&loaded, "hostname");
    let end = got.iter().position(|&b| b == 0).unwrap();
    assert_eq!(std::str::from_utf8(&got[..end]).unwrap(), &host[..host.len().min(15)], "CONFIG_DEFAULT_HOSTNAME");

    // The .kconfig map is frozen: userspace cannot change the values.
    let map = loaded.map(".kconfig").unwrap();
    assert!(map
        .update(&0u32.to_le_bytes(), &vec![0; map.value_size() as usize], bpfkit::maps::UpdateFlags::Any)
        .is_err());
}

#[test]
fn strong_kconfig_extern_missing_is_refused_naming_it() {
    if !support::kernel_or_skip("strong_kconfig_extern_missing_is_refused_naming_it") {
        return;
    }
    let path = fixture("refused/r01_kconfig_strong_missing.o");
    let err = Object::open(&path).unwrap().load().expect_err("a strong extern no kernel has").to_string();
    assert!(err.contains("extern 'CONFIG_BPFKIT_NO_SUCH_OPTION'"), "{err}");
    let why = if kernel_config().is_some() { "is not set in the kernel config" } else { "needs the kernel config" };
    assert!(err.contains(why), "{err}");
    assert!(Libbpf::load(&path).is_err(), "libbpf refuses it too");
}

// ---------------------------------------------------------------------------------------------
// 2. `__ksym` variables
// ---------------------------------------------------------------------------------------------

/// `name`'s address in /proc/kallsyms, as this test reads it.
fn kallsyms_addr(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
    text.lines().find_map(|l| {
        let mut p = l.split_ascii_whitespace();
        let (addr, _, sym) = (p.next()?, p.next()?, p.next()?);
        (sym == name).then(|| u64::from_str_radix(addr, 16).ok()).flatten()
    })
}

#[test]
fn typeless_and_weak_ksyms_resolve() {
    if !support::kernel_or_skip("typeless_and_weak_ksyms_resolve") {
        return;
    }
    let path = fixture("o24_ksym_typeless.o");
    let obj = Object::open(&path).unwrap();
    let loaded = obj.clone().load().unwrap_or_else(|e| panic!("{e}"));
    let lib = Libbpf::load(&path).expect("libbpf loads o24_ksym_typeless.o");
    loaded.program("read_ksyms").unwrap().program().test_run(&TestRun::default()).unwrap();
    lib.test_run("read_ksyms");
    for var in ["schedule_addr", "missing_void", "missing_typed", "kfunc_exists", "runs"] {
        assert_eq!(bpfkit_global(&loaded, var), libbpf_global(&lib, &obj, var), "{var}: bpfkit vs libbpf");
    }
    let addr = kallsyms_addr("schedule").expect("schedule in /proc/kallsyms");
    assert_ne!(addr, 0, "kallsyms shows addresses to root");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "schedule_addr")), addr, "the program saw schedule's address");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "missing_void")), 0, "weak void ksym the kernel lacks");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "missing_typed")), 0, "weak typed ksym vmlinux BTF lacks");
    let kfunc = bpfkit::core_btf::Btf::vmlinux().unwrap().find_by_name_kind("bpf_rcu_read_lock", bpfkit::core_btf::Kind::Func);
    assert_eq!(u64_of(&bpfkit_global(&loaded, "kfunc_exists")), u64::from(kfunc.is_some()), "a kfunc's address");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "runs")), 1);
}

#[test]
fn typed_percpu_ksyms_resolve_to_btf_ids() {
    if !support::kernel_or_skip("typed_percpu_ksyms_resolve_to_btf_ids") {
        return;
    }
    let path = fixture("refused/r02_ksym_percpu.o");
    let vmlinux = bpfkit::core_btf::Btf::vmlinux().unwrap();
    // The ld_imm64s carry vmlinux's BTF ids of the variables (BPF_PSEUDO_BTF_ID).
    let relocated = Object::open(&path).unwrap().relocate(Some(&vmlinux)).unwrap();
    let (_, insns) = &relocated[0];
    let text: String = insns.iter().map(|i| format!("{i:?}\n")).collect();
    for var in ["runqueues", "bpf_prog_active"] {
        let id = vmlinux.find_by_name_kind(var, bpfkit::core_btf::Kind::Var).expect("a per-CPU VAR in vmlinux BTF");
        let by_id = |i: &Insn| matches!(i, Insn::LdImm64 { value: Imm64::BtfId { id: got, btf_fd: 0 }, .. } if *got == id.0 as i32);
        assert!(insns.iter().any(by_id), "{var} [{}]:\n{text}", id.0);
    }
    let result = Object::open(&path).unwrap().load();
    let lib = Libbpf::load(&path);
    if kallsyms_addr("runqueues").is_none() {
        // The verifier looks the address up in kallsyms, which has no data symbols here.
        let err = result.expect_err("the kernel has no kallsyms address for runqueues").to_string();
        assert!(err.contains("'read_percpu'") && err.contains("(section 'syscall')"), "{err}");
        assert!(err.contains("failed to find the address for kernel symbol 'runqueues'"), "{err}");
        let lib = lib.map_err(|e| format!("bpf_object__load: {}", std::io::Error::from_raw_os_error(-e)));
        support::kernel_lacks(
            "running read_percpu",
            "kallsyms entries for data (CONFIG_KALLSYMS_ALL=n), which typed __ksym variables need",
            &err,
            support::witness::libbpf_refused(&lib),
        );
        return;
    }
    let loaded = result.unwrap_or_else(|e| panic!("{e}"));
    let lib = lib.expect("libbpf loads it");
    loaded.program("read_percpu").unwrap().program().test_run(&TestRun::default()).unwrap();
    lib.test_run("read_percpu");
    assert_eq!(bpfkit_global(&loaded, "active"), libbpf_global(&lib, &Object::open(&path).unwrap(), "active"));
}

// ---------------------------------------------------------------------------------------------
// 3. Custom `.rodata.<name>` and `version` sections; mmapped globals
// ---------------------------------------------------------------------------------------------

#[test]
fn custom_sections_and_mmapped_globals() {
    if !support::kernel_or_skip("custom_sections_and_mmapped_globals") {
        return;
    }
    let path = fixture("o25_custom_sections.o");
    let mut obj = Object::open(&path).unwrap();
    assert_eq!(obj.kern_version(), 0x060000, "the version section");
    let limits = obj.map(".rodata.limits").expect("a map for .rodata.limits");
    assert_eq!((limits.kernel_name.as_str(), limits.value_size), (".rodata.limits", 8));
    assert!(obj.map("version").is_none(), "the version section is not global data");
    obj.set_global("step", &7u32.to_le_bytes()).unwrap();
    let loaded = obj.clone().load().unwrap_or_else(|e| panic!("{e}"));

    // Rust → program through the mapping; program → Rust through it, no lookup in between.
    let counter = loaded.global_mmap::<u64>("counter").unwrap();
    let echo = loaded.global_mmap::<u64>("echo").unwrap();
    let mut from_user = loaded.global_mmap::<u64>("from_user").unwrap();
    assert_eq!((counter.get(), echo.get(), from_user.get()), (0, 1, 0), "initial values, mapped");
    from_user.set(5);
    assert_eq!(u64_of(&bpfkit_global(&loaded, "from_user")), 5, "the kernel's map holds the mapped store");
    let prog = loaded.program("custom_sections").unwrap().program();
    for _ in 0..3 {
        prog.test_run(&TestRun::default()).unwrap();
    }
    assert_eq!(counter.get(), 21, "three runs of counter += step (7, set before load)");
    assert_eq!(echo.get(), 5 * 2 + 7, "the program read from_user as Rust stored it");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "counter")), 21, "the mapping is the map");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "step")), 7, ".rodata.limits holds the value set");
    assert!(loaded.map(".rodata.limits").unwrap().update(&0u32.to_le_bytes(), &[0; 8], bpfkit::maps::UpdateFlags::Any).is_err(), "frozen");

    // Mapping errors name the variable and why.
    let e = loaded.global_mmap::<u32>("step").unwrap_err().to_string();
    assert!(e.contains("'step'") && e.contains("read-only section '.rodata.limits'"), "{e}");
    let e = loaded.global_mmap::<u32>("counter").unwrap_err().to_string();
    assert!(e.contains("'counter'") && e.contains("is 8 bytes"), "{e}");
    let e = loaded.global_mmap::<u64>("nope").unwrap_err().to_string();
    assert!(e.contains("'nope'"), "{e}");

    // libbpf: the same adjustments, the same results.
    let lib = Libbpf::load_with(&path, |l| {
        let (_, off, _) = var_location(&obj, "step");
        l.data(".rodata.limits")[off..off + 4].copy_from_slice(&7u32.to_le_bytes());
    })
    .expect("libbpf loads o25_custom_sections.o");
    let (_, off, _) = var_location(&obj, "from_user");
    lib.data(".bss")[off..off + 8].copy_from_slice(&5u64.to_le_bytes());
    for _ in 0..3 {
        lib.test_run("custom_sections");
    }
    for var in ["counter", "echo", "from_user", "step", "scale"] {
        assert_eq!(bpfkit_global(&loaded, var), libbpf_global(&lib, &obj, var), "{var}: bpfkit vs libbpf");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Attaching the corpus's remaining program types
// ---------------------------------------------------------------------------------------------

fn load_fixture(file: &str) -> LoadedObject {
    Object::open(fixture(file)).and_then(Object::load).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn sum_percpu(map: &bpfkit::maps::Map, key: u32) -> u64 {
    map.lookup_percpu(&key.to_le_bytes()).unwrap().unwrap_or_default().iter().map(|v| u64_of(&v[..8])).sum()
}

#[test]
fn percpu_maps_count_getppid_exactly() {
    if !support::kernel_or_skip("percpu_maps_count_getppid_exactly") {
        return;
    }
    let loaded = load_fixture("o03_percpu.o");
    let tgid = std::process::id();
    const K: u64 = 25;
    {
        let _link = loaded.program("count_getppid").unwrap().attach().unwrap();
        for _ in 0..K {
            // SAFETY: getppid has no preconditions.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
    }
    // The hash is keyed by tgid: exactly this process's calls, summed over the CPUs they ran on.
    assert_eq!(sum_percpu(loaded.map("pcpu_hash").unwrap(), tgid), K);
    assert!(sum_percpu(loaded.map("pcpu_arr").unwrap(), 0) >= K, "the array counts every process's calls");
}

#[test]
fn core_reads_see_this_task() {
    if !support::kernel_or_skip("core_reads_see_this_task") {
        return;
    }
    let loaded = load_fixture("o08_core.o");
    let seen = loaded.map("seen").unwrap();
    let (tgid, ppid) = (u64::from(std::process::id()), u64::from(std::os::unix::process::parent_id()));
    let _link = loaded.program("core_task").unwrap().attach().unwrap();
    // The program stores whichever task called gettid last: retry if another process's call
    // lands between this one's and the read.
    let mut last = (0, 0);
    for _ in 0..50 {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::syscall(libc::SYS_gettid) };
        let at = |k: u32| u64_of(&seen.lookup(&k.to_le_bytes()).unwrap().unwrap()[..8]);
        last = (at(0), at(1));
        if last == (tgid, ppid) {
            return;
        }
    }
    panic!("task->tgid and task->real_parent->tgid read through CO-RE: {last:?}, this process is {:?}", (tgid, ppid));
}


#[test]
fn tc_and_tcx_programs_count_and_drop_exactly() {
    use bpfkit::attach::TcDirection;
    use std::net::UdpSocket;
    use std::time::Duration;
    if !support::kernel_or_skip("tc_and_tcx_programs_count_and_drop_exactly") {
        return;
    }
    let loaded = load_fixture("o10_tc.o");
    let net = Veth::with_ipv6(false);
    let tx = net.a.run(|| UdpSocket::bind((VA, 0)).unwrap()).unwrap();
    let rx = net.b.run(|| UdpSocket::bind((VB, 4243)).unwrap()).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tx.send_to(b"warm-up", (VB, 4243)).unwrap();
    rx.recv(&mut [0u8; 64]).expect("a warm-up datagram crosses the veth (ARP resolved)");

    let tcx_in = loaded.program("tcx_in").unwrap();
    let e = tcx_in.attach_tc(net.ifb, TcDirection::Egress).unwrap_err().to_string();
    assert!(e.contains("'tcx_in'") && e.contains("tcx/ingress"), "{e}");
    let _in = net.b.run(|| tcx_in.attach_tc(net.ifb, TcDirection::Ingress)).unwrap().unwrap();
    let _out = net.a.run(|| loaded.program("tcx_out").unwrap().attach_tc(net.ifa, TcDirection::Egress)).unwrap().unwrap();
    // After tcx_in (TCX_NEXT): the `tc` program, which drops frames longer than 1500 bytes.
    let _legacy = net.b.run(|| loaded.program("tc_legacy").unwrap().attach_tc(net.ifb, TcDirection::Ingress)).unwrap().unwrap();
    let bytes = loaded.global_mmap::<u64>("ingress_bytes").unwrap();
    let pkts = loaded.global_mmap::<u64>("egress_pkts").unwrap();

    const SMALL: usize = 30;
    const BIG: usize = 10;
    for _ in 0..SMALL {
        tx.send_to(&[7u8; 100], (VB, 4243)).unwrap();
    }
    for _ in 0..BIG {
        tx.send_to(&[9u8; 1472], (VB, 4243)).unwrap(); // IPv4 1500 bytes: a 1514-byte frame
    }
    let mut got = (0, 0);
    let mut buf = [0u8; 2048];
    rx.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while let Ok(n) = rx.recv(&mut buf) {
        if n == 100 { got.0 += 1 } else { got.1 += 1 }
    }
    assert_eq!(got, (SMALL, 0), "small datagrams pass, 1514-byte frames are shot by tc_legacy");
    let frame = |payload: u64| 14 + 20 + 8 + payload;
    assert_eq!(pkts.get(), (SMALL + BIG) as u64, "tcx/egress on va saw every datagram");
    assert_eq!(bytes.get(), SMALL as u64 * frame(100) + BIG as u64 * frame(1472), "tcx/ingress on vb summed skb->len");
}

#[test]
fn cgroup_programs_count_a_child_cgroups_connects_and_packets() {
    use std::net::UdpSocket;
    use support::cgroup::ChildCgroup;
    if !support::kernel_or_skip("cgroup_programs_count_a_child_cgroups_connects_and_packets") {
        return;
    }
    let loaded = load_fixture("o12_cgroup.o");
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let port = server.local_addr().unwrap().port();
    let cg = ChildCgroup::new("objcg");
    let _egress = loaded.program("skb_egress").unwrap().attach_cgroup(cg.open()).unwrap();
    let _connect = loaded.program("on_connect4").unwrap().attach_cgroup(cg.open()).unwrap();
    let _create = loaded.program("on_sock_create").unwrap().attach_cgroup(cg.open()).unwrap();
    const K: usize = 6;
    // K connected UDP sockets, one datagram each, from a process in the child cgroup.
    let status = cg
        .bash(&format!("for i in $(seq {K}); do exec 3<>/dev/udp/127.0.0.1/{port} && printf x >&3 && exec 3>&-; done"))
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..K {
        server.recv_from(&mut [0u8; 8]).expect("on_sock_create allows the child's sockets");
    }
    assert_eq!(u64_of(&bpfkit_global(&loaded, "connects")), K as u64, "cgroup/connect4");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "skb_count")), K as u64, "cgroup_skb/egress");
    assert_eq!(u64_of(&bpfkit_global(&loaded, "last_port")), u64::from(port.to_be()), "ctx->user_port");
}

/// This thread's minor page faults (`/proc/thread-self/stat` field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(7).unwrap().parse().unwrap()
}

#[test]
fn perf_event_program_counts_this_threads_page_faults() {
    use bpfkit::attach::PerfEventTarget;
    if !support::kernel_or_skip("perf_event_program_counts_this_threads_page_faults") {
        return;
    }
    let loaded = load_fixture("o15_probes.o");
    let prog = loaded.program("on_perf").unwrap();
    let hits = loaded.global_mmap::<u64>("probe_hits").unwrap();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;

    // PERF_COUNT_SW_PAGE_FAULTS_MIN (5) of this thread, every event: the kernel counts exactly
    // the faults it adds to the thread's min_flt.
    const PAGES: usize = 64;
    let target = PerfEventTarget::software(5, 1, -1).for_pid(tid);
    let before = minor_faults();
    let link = prog.attach_perf_event(&target).unwrap();
    // A fresh anonymous mapping: each first write faults (heap memory may be touched already).
    let mut fresh = memmap2::MmapMut::map_anon(PAGES * 4096).unwrap();
    for i in 0..PAGES {
        fresh[i * 4096] = 1;
    }
    std::hint::black_box(&fresh);
    drop(link);
    let faults = minor_faults() - before;
    let counted = hits.get();
    assert!(counted >= PAGES as u64, "{counted} runs for {PAGES} fresh pages");
    assert_eq!(counted, faults, "one run per minor fault of this thread");

    // cpu-clock of this thread, a sample per millisecond of its CPU time.
    let target = PerfEventTarget::software(bpfkit::os::perf::PERF_COUNT_SW_CPU_CLOCK, 1_000_000, -1).for_pid(tid);
    let start = hits.get();
    let link = prog.attach_perf_event(&target).unwrap();
    let t0 = std::time::Instant::now();
    let mut x = 0u64;
    while t0.elapsed() < std::time::Duration::from_millis(50) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    drop(link);
    let samples = hits.get() - start;
    assert!((1..=60).contains(&samples), "{samples} cpu-clock samples in 50 ms of wall time");
    let after = hits.get();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(hits.get(), after, "no samples once detached");
}

#[test]
fn kprobes_are_refused_clearly() {
    if !support::kernel_or_skip("kprobes_are_refused_clearly") {
        return;
    }
    let loaded = load_fixture("o15_probes.o");
    let kprobes_here = std::path::Path::new("/sys/kernel/tracing/kprobe_events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/kprobe_events").exists();
    for name in ["kp_nanosleep", "krp_nanosleep"] {
        let result = loaded.program(name).unwrap().attach();
        if kprobes_here {
            let _link = result.unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        let e = result.expect_err("no kprobes on this kernel").to_string();
        assert!(e.contains(&format!("attaching program '{name}'")) && e.contains("'do_nanosleep'"), "{e}");
        assert!(e.contains("no kprobe support in this kernel"), "{e}");
        eprintln!("{name}: {e}");
    }
    // libbpf refuses too.
    let lib = Libbpf::load(&fixture("o15_probes.o")).expect("libbpf loads o15");
    let c = CString::new("kp_nanosleep").unwrap();
    // SAFETY: the object is loaded; `c` is NUL-terminated.
    let prog = unsafe { libbpf_sys::bpf_object__find_program_by_name(lib.0, c.as_ptr()) };
    // SAFETY: `prog` belongs to the loaded object.
    let link = unsafe { libbpf_sys::bpf_program__attach(prog) };
    if !kprobes_here {
        assert!(link.is_null(), "libbpf attached a kprobe on a kernel without kprobes");
    } else if !link.is_null() {
        // SAFETY: `link` is the link just made.
        unsafe { libbpf_sys::bpf_link__destroy(link) };
    }
}

// ---------------------------------------------------------------------------------------------
// 5. fentry and LSM: refused by this kernel
// ---------------------------------------------------------------------------------------------

#[test]
fn fentry_and_lsm_refusals_name_program_section_and_kernel_error() {
    if !support::kernel_or_skip("fentry_and_lsm_refusals_name_program_section_and_kernel_error") {
        return;
    }
    let path = fixture("refused/r03_fentry_lsm.o");
    for (prog, other, section) in
        [("on_unlinkat", "on_file_open", "fentry/do_unlinkat"), ("on_file_open", "on_unlinkat", "lsm/file_open")]
    {
        let mut obj = Object::open(&path).unwrap();
        obj.program_mut(other).unwrap().autoload = false;
        let lib = Libbpf::load_with(&path, |l| {
            let c = CString::new(other).unwrap();
            // SAFETY: the object is open, not loaded; `c` is NUL-terminated.
            let p = unsafe { libbpf_sys::bpf_object__find_program_by_name(l.0, c.as_ptr()) };
            // SAFETY: `p` belongs to the open object.
            assert_eq!(unsafe { libbpf_sys::bpf_program__set_autoload(p, false) }, 0);
        });
        match obj.load() {
            Ok(loaded) => {
                // A kernel with trampolines and BPF LSM: both load, and libbpf agrees.
                assert!(lib.is_ok(), "{prog}: bpfkit loaded it, libbpf did not");
                let _link = loaded.program(prog).unwrap().attach().unwrap_or_else(|e| panic!("{e}"));
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(&format!("loading program '{prog}' (section '{section}')")), "{e}");
                assert!(e.contains("the kernel refused it") && e.contains("EPERM"), "{e}");
                assert!(lib.is_err(), "{prog}: libbpf loaded what bpfkit could not");
                eprintln!("{prog}: {e}");
            }
        }
    }
}
