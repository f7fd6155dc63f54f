//! Reading the kernel's BTF beside libbpf (docs/PERFORMANCE.md): `cargo bench --bench btf`.
//! Needs /sys/kernel/btf/vmlinux (no privileges).
//!
//! * `btf_parse/vmlinux`: read and parse /sys/kernel/btf/vmlinux — bpfkit `Btf::vmlinux`
//!   (the file read whole, one pass indexing where each type starts) vs libbpf `btf__parse`
//!   (libbpf-sys 1.7; reads, validates and indexes) followed by `btf__free`.
//! * `btf_parse_1000_lookups/vmlinux`: the same parse, then 1,000 lookups by name of a fixed
//!   list of names taken from vmlinux itself (every k-th named STRUCT in id order, so the list is
//!   the same for every run on one kernel): bpfkit `Btf::find_by_name` (its first call builds the
//!   name index, included) vs libbpf `btf__find_by_name`. Setup asserts both find the same id
//!   for every name.
//! * `btf_lookups_1000/vmlinux`: only the 1,000 lookups, on an already parsed and indexed BTF.
//! * `btf_c_dump/vmlinux`: the whole vmlinux.h into memory: bpfkit `Btf::c_dump_all` vs
//!   libbpf's `btf_dump__dump_type` of every id into a buffer (its printf callback formats with
//!   `vsnprintf`), on an already parsed BTF. Setup asserts the two texts are equal.
//!
//! bpfkit is used only through its safe API. `unsafe` appears only around libbpf-sys's C
//! functions, each block with a `// SAFETY:` comment.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::hint::black_box;
use std::time::Duration;

use bpfkit::core_btf::{Btf, Kind, TypeId};
use criterion::{criterion_group, criterion_main, Criterion};

const VMLINUX: &CStr = c"/sys/kernel/btf/vmlinux";
const LOOKUPS: usize = 1_000;

/// libbpf's parsed BTF, freed on drop.
struct LibbpfBtf(*mut libbpf_sys::btf);

impl LibbpfBtf {
    fn parse() -> LibbpfBtf {
        // SAFETY: the path is a NUL-terminated string that outlives the call; a null `btf_ext`
        // out-pointer asks libbpf not to return .BTF.ext (there is none in raw BTF).
        let btf = unsafe { libbpf_sys::btf__parse(VMLINUX.as_ptr(), std::ptr::null_mut()) };
        // libbpf ≥ 1.0 returns NULL (errno set) on failure.
        assert!(!btf.is_null(), "btf__parse({VMLINUX:?}) failed: {}", std::io::Error::last_os_error());
        LibbpfBtf(btf)
    }

    /// `btf__find_by_name`: the id, or a negative errno.
    fn find(&self, name: &CStr) -> i32 {
        // SAFETY: `self.0` is a live `struct btf` from `btf__parse` (freed only in `drop`), and
        // `name` is NUL-terminated and outlives the call.
        unsafe { libbpf_sys::btf__find_by_name(self.0, name.as_ptr()) }
    }
}

impl Drop for LibbpfBtf {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `btf__parse`, is non-null, and is freed exactly once here.
        unsafe { libbpf_sys::btf__free(self.0) }
    }
}

unsafe extern "C" {
    /// C's `vsnprintf`, for libbpf's printf callback.
    fn vsnprintf(buf: *mut c_char, n: usize, fmt: *const c_char, ap: *mut libbpf_sys::__va_list_tag) -> c_int;
}

/// libbpf's `btf_dump` printf callback: appends to the `Vec<u8>` behind `ctx`.
unsafe extern "C" fn append(ctx: *mut c_void, fmt: *const c_char, args: *mut libbpf_sys::__va_list_tag) {
    const CHUNK: usize = 64 << 10;
    // SAFETY: `ctx` is the `&mut Vec<u8>` that `libbpf_c_dump` passed to `btf_dump__new`, alive
    // and not otherwise borrowed while libbpf runs.
    let out = unsafe { &mut *(ctx as *mut Vec<u8>) };
    out.reserve(CHUNK);
    let spare = out.spare_capacity_mut();
    // SAFETY: `spare` has at least CHUNK writable bytes; `fmt` and `args` are the format string
    // and argument list libbpf hands to its callback, used once.
    let n = unsafe { vsnprintf(spare.as_mut_ptr().cast(), CHUNK, fmt, args) };
    // libbpf's fragments are names and single lines, far below CHUNK.
    let n = (n.max(0) as usize).min(CHUNK - 1);
    // SAFETY: vsnprintf initialised the first `n` bytes of the spare capacity.
    unsafe { out.set_len(out.len() + n) };
}

/// The whole of `btf` as C through libbpf's `btf_dump`, with bpftool's header and footer.
fn libbpf_c_dump(btf: &LibbpfBtf) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(8 << 20);
    out.extend_from_slice(b"#ifndef __VMLINUX_H__\n#define __VMLINUX_H__\n\n#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n#endif\n\n");
    let opts = libbpf_sys::btf_dump_opts { sz: std::mem::size_of::<libbpf_sys::btf_dump_opts>() as _ };
    let ctx = &mut out as *mut Vec<u8> as *mut c_void;
    // SAFETY: `btf.0` is a live parsed BTF; `append` matches `btf_dump_printf_fn_t`; `ctx` points
    // at `out`, which outlives the dumper (freed below); `opts` is initialised with its size.
    let d = unsafe { libbpf_sys::btf_dump__new(btf.0, Some(append), ctx, &opts) };
    assert!(!d.is_null(), "btf_dump__new failed");
    // SAFETY: `btf.0` is live.
    let count = unsafe { libbpf_sys::btf__type_cnt(btf.0) };
    for id in 1..count {
        // SAFETY: `d` is the live dumper from `btf_dump__new`, `id` below `btf__type_cnt`.
        let err = unsafe { libbpf_sys::btf_dump__dump_type(d, id) };
        assert_eq!(err, 0, "btf_dump__dump_type({id})");
    }
    // SAFETY: `d` came from `btf_dump__new` and is freed once; `out` is not touched by it after.
    unsafe { libbpf_sys::btf_dump__free(d) };
    out.extend_from_slice(
        b"#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n#pragma clang attribute pop\n#endif\n\n#endif /* __VMLINUX_H__ */\n",
    );
    out
}

/// Every k-th named STRUCT of vmlinux, in id order: `LOOKUPS` names.
fn names(btf: &Btf) -> Vec<String> {
    let structs: Vec<TypeId> = btf
        .ids()
        .filter(|&id| btf.kind_of(id).is_ok_and(|k| k == Kind::Struct) && btf.name_of(id).is_ok_and(|n| !n.is_empty()))
        .collect();
    let step = (structs.len() / LOOKUPS).max(1);
    structs.iter().step_by(step).take(LOOKUPS).map(|&id| btf.name_of(id).unwrap().to_string()).collect()
}

fn kit_parse_and_find(names: &[String]) -> u64 {
    let btf = Btf::vmlinux().expect("parse vmlinux BTF");
    names.iter().map(|n| btf.find_by_name(n).first().map_or(0, |id| id.0 as u64)).sum()
}

fn libbpf_parse_and_find(names: &[CString]) -> u64 {
    let btf = LibbpfBtf::parse();
    names.iter().map(|n| btf.find(n).max(0) as u64).sum()
}

fn btf_benches(c: &mut Criterion) {
    if !std::path::Path::new(VMLINUX.to_str().unwrap()).exists() {
        eprintln!("skipped: {VMLINUX:?} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)");
        return;
    }
    let btf = Btf::vmlinux().expect("parse vmlinux BTF");
    let names = names(&btf);
    assert_eq!(names.len(), LOOKUPS, "vmlinux has fewer than {LOOKUPS} named structs");
    let cnames: Vec<CString> = names.iter().map(|n| CString::new(n.as_str()).unwrap()).collect();
    // Both libraries find the same first id for every name.
    let lib = LibbpfBtf::parse();
    for (n, cn) in names.iter().zip(&cnames) {
        let ours = btf.find_by_name(n).first().map(|id| id.0 as i32);
        assert_eq!(ours, Some(lib.find(cn)), "{n}");
    }
    assert_eq!(kit_parse_and_find(&names), libbpf_parse_and_find(&cnames));

    let mut g = c.benchmark_group("btf_parse");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.bench_function("bpfkit/vmlinux", |b| b.iter(|| black_box(Btf::vmlinux().unwrap().type_count())));
    g.bench_function("libbpf/vmlinux", |b| b.iter(|| black_box(LibbpfBtf::parse().0)));
    g.finish();

    let mut g = c.benchmark_group("btf_parse_1000_lookups");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    g.bench_function("bpfkit/vmlinux", |b| b.iter(|| black_box(kit_parse_and_find(black_box(&names)))));
    g.bench_function("libbpf/vmlinux", |b| b.iter(|| black_box(libbpf_parse_and_find(black_box(&cnames)))));
    g.finish();

    let mut g = c.benchmark_group("btf_lookups_1000");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    btf.find_by_name("task_struct"); // the index is built
    g.bench_function("bpfkit/vmlinux", |b| {
        b.iter(|| names.iter().map(|n| btf.find_by_name(black_box(n)).len()).sum::<usize>())
    });
    g.bench_function("libbpf/vmlinux", |b| {
        b.iter(|| cnames.iter().map(|n| lib.find(black_box(n)) as i64).sum::<i64>())
    });
    g.finish();

    let mut g = c.benchmark_group("btf_c_dump");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let (ours, theirs) = (btf.c_dump_all().unwrap(), String::from_utf8(libbpf_c_dump(&lib)).unwrap());
    // Same text: bpfkit writes what libbpf 1.7 writes (bpftool 7.1's libbpf lacks `mode(byte)`).
    assert!(ours == theirs, "bpfkit's C dump differs from libbpf 1.7's");
    g.bench_function("bpfkit/vmlinux", |b| b.iter(|| black_box(btf.c_dump_all().unwrap().len())));
    g.bench_function("libbpf/vmlinux", |b| b.iter(|| black_box(libbpf_c_dump(&lib).len())));
    g.finish();
}

criterion_group!(benches, btf_benches);
criterion_main!(benches);
