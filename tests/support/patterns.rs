//! Preambles the pattern tests (`tests/patterns.rs`, `tests/patterns_kernel2.rs`) share: maps,
//! loading, test runs, and small instruction sequences around the patterns under test.

use bpfkit::helpers::patterns::{counter_increment, tid_filter};
use bpfkit::insn::{self, add64, call_helper_named, exit, ld_map, mov64, st, Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program, TestRun};
use bpfkit::os;

pub const PKT: [u8; 64] = [0; 64];

pub fn map(name: &str, ty: MapType, key: u32, value: u32, n: u32) -> Map {
    Map::create(&MapSpec::new(name, ty, key, value, n)).unwrap()
}

pub fn load_as(name: &str, p: &insn::Program, maps: &[&Map], opts: LoadOptions) -> Program {
    let asm = p.assemble().unwrap_or_else(|e| panic!("{name}: {e}"));
    Program::load(&asm, maps, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn load(name: &str, ty: ProgType, p: &insn::Program, maps: &[&Map]) -> Program {
    load_as(name, p, maps, LoadOptions::new(name, ty))
}

pub fn get(m: &Map, key: u32) -> Option<Vec<u8>> {
    m.lookup(&key.to_ne_bytes()).unwrap()
}

pub fn get_u64(m: &Map, key: u32) -> u64 {
    get(m, key).map_or(0, |v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
}

pub fn run(p: &Program, data: &[u8], repeat: u32) -> u32 {
    p.test_run(&TestRun::with_data(data.to_vec()).repeat(repeat)).unwrap().retval
}

/// `r0 = code; exit`.
pub fn ret(p: &mut insn::Program, code: i32) {
    p.push(mov64(Reg::R0, code)).push(exit());
}

/// Copy `r10 + val_off` into `out[key]` (an array), the key written at `key_off`.
pub fn store_out(p: &mut insn::Program, out: &str, key_off: i16, key: i32, val_off: i16) {
    p.push(st(Size::W, Reg::R10, key_off, key));
    p.push(ld_map(Reg::R1, out));
    p.push(mov64(Reg::R2, Reg::R10)).push(add64(Reg::R2, key_off as i32));
    p.push(mov64(Reg::R3, Reg::R10)).push(add64(Reg::R3, val_off as i32));
    p.push(mov64(Reg::R4, 0)).push(call_helper_named("bpf_map_update_elem").unwrap());
}

/// `counts[key] += 1` with the counter pattern (key at r10-8, scratch at r10-16).
pub fn count_key(p: &mut insn::Program, counts: &str, key: i32) {
    p.push(st(Size::W, Reg::R10, -8, key));
    p.extend(counter_increment(counts, -8, -16).unwrap());
}

/// A tracepoint program (e.g. on `sys_enter_getpid`) whose body runs only for this thread:
/// `tid_filter(gettid) → body → r0 = 0; exit`.
pub fn on_this_thread(body: insn::Program) -> insn::Program {
    let mut p = tid_filter(os::gettid() as u32, "out").unwrap();
    p.extend(body);
    p.label("out");
    ret(&mut p, 0);
    p
}

/// `n` getpid(2) calls (glibc does not cache the pid).
pub fn getpid_n(n: usize) {
    for _ in 0..n {
        std::hint::black_box(std::process::id());
    }
}

/// Attach `prog` to `sys_enter_getpid`, call getpid `n` times, detach.
pub fn fire_getpid(prog: &Program, n: usize) {
    let link = prog.attach_tracepoint("syscalls", "sys_enter_getpid").unwrap();
    getpid_n(n);
    drop(link);
}
