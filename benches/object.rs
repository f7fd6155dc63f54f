//! Opening and relocating BPF objects beside libbpf (docs/PERFORMANCE.md): `cargo bench --bench
//! object`, as root (libbpf's prepare step probes the kernel).
//!
//! The corpus: every clang-built object of `tests/fixtures/objects` and `tests/fixtures/core`
//! that both libraries relocate (the setup drops the others, printing which and why). Each
//! timed iteration takes the whole corpus, every object from its bytes in memory, to relocated
//! instructions against the running kernel's BTF, without loading a program:
//!
//! * bpfkit: `Object::open_bytes`, `Object::relocate(None)` (CO-RE, externs, map and call
//!   relocations, subprograms appended), which reads and indexes /sys/kernel/btf/vmlinux for
//!   each object that needs it (CO-RE, typed `__ksym`s, BTF attach targets) — as libbpf does;
//! * libbpf 1.7 (libbpf-sys): `bpf_object__open_mem`, every map's autocreate turned off (no map
//!   is created; map references are then poisoned, which is libbpf's relocation too),
//!   `bpf_object__prepare` (which also loads vmlinux BTF per object, probes kernel features and
//!   loads the object's BTF), `bpf_object__close`;
//! * `bpfkit_shared_btf`: bpfkit with one parsed vmlinux BTF shared by all objects, which its
//!   API allows and libbpf's does not (not the compared figure).
//!
//! bpfkit is used only through its safe API; `unsafe` only around libbpf-sys's C functions.

use std::ffi::{c_char, c_int};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use bpfkit::core_btf::Btf;
use bpfkit::object::Object;
use criterion::{criterion_group, criterion_main, Criterion};

fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["tests/fixtures/objects", "tests/fixtures/core"] {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "o")).collect();
        paths.sort();
        for p in paths {
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

unsafe extern "C" fn quiet(_level: libbpf_sys::libbpf_print_level, _fmt: *const c_char, _ap: *mut libbpf_sys::__va_list_tag) -> c_int {
    0
}

/// libbpf: open from memory, no map creation, prepare (relocate), close. The number of
/// programs, or libbpf's error.
fn libbpf_relocate(name: &str, bytes: &[u8]) -> Result<usize, i32> {
    let c_name = std::ffi::CString::new(name).unwrap();
    let opts = libbpf_sys::bpf_object_open_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as _,
        object_name: c_name.as_ptr(),
        ..Default::default()
    };
    // SAFETY: `bytes` is readable for its length during the call (libbpf copies what it keeps);
    // `opts` is a zero-initialised open-opts with `sz` set, its name outliving the call.
    let obj = unsafe { libbpf_sys::bpf_object__open_mem(bytes.as_ptr().cast(), bytes.len() as _, &opts) };
    if obj.is_null() {
        return Err(-1);
    }
    let mut map = std::ptr::null_mut();
    loop {
        // SAFETY: `obj` is open; `map` is null or its previous map.
        map = unsafe { libbpf_sys::bpf_object__next_map(obj, map) };
        if map.is_null() {
            break;
        }
        // SAFETY: `map` belongs to `obj`, which is not yet prepared.
        unsafe { libbpf_sys::bpf_map__set_autocreate(map, false) };
    }
    // SAFETY: `obj` is open and not yet prepared.
    let err = unsafe { libbpf_sys::bpf_object__prepare(obj) };
    let mut n = 0;
    let mut prog = std::ptr::null_mut();
    loop {
        // SAFETY: `obj` is valid; `prog` is null or its previous program.
        prog = unsafe { libbpf_sys::bpf_object__next_program(obj, prog) };
        if prog.is_null() {
            break;
        }
        // SAFETY: `prog` belongs to `obj`; after prepare its instructions are relocated.
        n += usize::from(unsafe { libbpf_sys::bpf_program__insn_cnt(prog) } > 0);
    }
    // SAFETY: `obj` is valid and not used after this.
    unsafe { libbpf_sys::bpf_object__close(obj) };
    if err != 0 {
        Err(err)
    } else {
        Ok(n)
    }
}

fn bpfkit_relocate(name: &str, bytes: &[u8], vmlinux: Option<&Btf>) -> Result<usize, String> {
    let obj = Object::open_bytes(name, bytes.to_vec()).map_err(|e| e.to_string())?;
    Ok(obj.relocate(vmlinux).map_err(|e| e.to_string())?.len())
}

fn open_relocate(c: &mut Criterion) {
    // SAFETY: a process-wide print callback that does nothing, valid for the whole process.
    unsafe { libbpf_sys::libbpf_set_print(Some(quiet)) };
    let vmlinux = Btf::vmlinux().expect("/sys/kernel/btf/vmlinux");
    let mut corpus = Vec::new();
    for (name, bytes) in corpus_files() {
        match (bpfkit_relocate(&name, &bytes, None), libbpf_relocate(&name, &bytes)) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{name}: both relocate the same programs");
                corpus.push((name, bytes));
            }
            (a, b) => eprintln!("not in the corpus: {name}: bpfkit {a:?}, libbpf {b:?}"),
        }
    }
    let programs: usize = corpus.iter().map(|(n, b)| bpfkit_relocate(n, b, Some(&vmlinux)).unwrap()).sum();
    eprintln!("corpus: {} objects, {programs} programs", corpus.len());

    let mut g = c.benchmark_group("object_open_relocate/corpus");
    g.sample_size(10).measurement_time(Duration::from_secs(6));
    g.bench_function("bpfkit", |b| {
        b.iter(|| {
            for (name, bytes) in &corpus {
                black_box(bpfkit_relocate(name, bytes, None).unwrap());
            }
        })
    });
    g.bench_function("libbpf", |b| {
        b.iter(|| {
            for (name, bytes) in &corpus {
                black_box(libbpf_relocate(name, bytes).unwrap());
            }
        })
    });
    g.bench_function("bpfkit_shared_btf", |b| {
        b.iter(|| {
            for (name, bytes) in &corpus {
                black_box(bpfkit_relocate(name, bytes, Some(&vmlinux)).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, open_relocate);
criterion_main!(benches);
