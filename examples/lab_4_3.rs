//! Lab 4.3 — a malloc/free profiler (tutorial/ch04-helpers.md): uprobes on libc's malloc (entry and
//! return) and free, filtered to this process, count allocations by size and process and track
//! bytes outstanding; the lab allocates 3001 bytes seven times (freeing five) and 77777 bytes three
//! times, and checks those exact counts.
//!
//! Run as root: `cargo run --example lab_4_3`. The same code is a doctest of the chapter.

use bpfkit::attach::uprobe::{self, UprobeTarget};
use bpfkit::bpf_asm;
use bpfkit::helpers::patterns::{counter_increment, map_lookup};
use bpfkit::insn::Program as Insns;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 4.3") {
        return Ok(());
    }
    let arg0 = uprobe::pt_regs_offset(uprobe::arg_reg(0).ok_or("no argument register")?)?;
    let ret = uprobe::pt_regs_offset(uprobe::RET_REG)?;
    let map = |name: &str, key: u32, value: u32| Map::create(&MapSpec::new(name, MapType::Hash, key, value, 16384));
    let pending = map("pending", 4, 8)?; // tid -> requested size
    let live = map("live", 8, 8)?; // address -> size
    let (allocs_by_size, frees_by_size) = (map("allocs_by_size", 8, 8)?, map("frees_by_size", 8, 8)?);
    let (mallocs, frees, outstanding) = (map("mallocs", 4, 8)?, map("frees", 4, 8)?, map("outstanding", 4, 8)?);
    let maps = [&pending, &live, &allocs_by_size, &frees_by_size, &mallocs, &frees, &outstanding];

    // outstanding[tgid at r10-40] += r7 (created at 0 when missing).
    let add_to_outstanding = bpf_asm! {
        r1 = map[outstanding] ll
        r2 = r10
        r2 += -40
        call bpf_map_lookup_elem
        if r0 != 0 goto add
        *(u64 *)(r10 - 48) = 0
        r1 = map[outstanding] ll
        r2 = r10
        r2 += -40
        r3 = r10
        r3 += -48
        r4 = 1                              // BPF_NOEXIST
        call bpf_map_update_elem
        r1 = map[outstanding] ll
        r2 = r10
        r2 += -40
        call bpf_map_lookup_elem
        if r0 == 0 goto added
    add:
        lock *(u64 *)(r0 + 0) += r7
    added:
    };
    let on_malloc = bpf_asm! {
        r6 = *(u64 *)(r1 + {arg0})          // size_t size
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 - 4) = w0              // key: the thread
        *(u64 *)(r10 - 16) = r6
        r1 = map[pending] ll
        r2 = r10
        r2 += -4
        r3 = r10
        r3 += -16
        r4 = 0
        call bpf_map_update_elem
        r0 = 0
        exit
    };
    let mut on_malloc_return: Insns = bpf_asm! {
        r6 = *(u64 *)(r1 + {ret})           // void *: the new block
        call bpf_get_current_pid_tgid
        r8 = r0
        *(u32 *)(r10 - 4) = w0
        {map_lookup("pending", -4, "out")?} // entry not seen (attached mid-call)
        r7 = *(u64 *)(r0 + 0)               // the size asked for
        r1 = map[pending] ll
        r2 = r10
        r2 += -4
        call bpf_map_delete_elem
        if r6 == 0 goto out                 // malloc failed
        *(u64 *)(r10 - 16) = r6
        *(u64 *)(r10 - 24) = r7
        r1 = map[live] ll
        r2 = r10
        r2 += -16
        r3 = r10
        r3 += -24
        r4 = 0
        call bpf_map_update_elem
        *(u64 *)(r10 - 32) = r7
        {counter_increment("allocs_by_size", -32, -48)?}
        r8 >>= 32
        *(u32 *)(r10 - 40) = w8             // the process
        {counter_increment("mallocs", -40, -48)?}
    };
    on_malloc_return.extend(add_to_outstanding.clone());
    on_malloc_return.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    let mut on_free: Insns = bpf_asm! {
        r6 = *(u64 *)(r1 + {arg0})          // void *ptr
        if r6 == 0 goto out                 // free(NULL)
        *(u64 *)(r10 - 16) = r6
        {map_lookup("live", -16, "out")?}   // allocated before we watched
        r7 = *(u64 *)(r0 + 0)
        *(u64 *)(r10 - 32) = r7
        r1 = map[live] ll
        r2 = r10
        r2 += -16
        call bpf_map_delete_elem
        {counter_increment("frees_by_size", -32, -48)?}
        call bpf_get_current_pid_tgid
        r0 >>= 32
        *(u32 *)(r10 - 40) = w0
        {counter_increment("frees", -40, -48)?}
        r7 = -r7
    };
    on_free.extend(add_to_outstanding);
    on_free.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    let load = |name: &str, p: &Insns| -> Result<Program, Box<dyn std::error::Error>> {
        Ok(Program::load(&p.assemble()?, &maps, &LoadOptions::new(name, ProgType::Kprobe))?)
    };
    let (on_malloc, on_malloc_return, on_free) = (load("malloc_in", &on_malloc)?, load("malloc_out", &on_malloc_return)?, load("free_in", &on_free)?);

    let me = std::process::id();
    let links = [
        on_free.attach_uprobe(&UprobeTarget::symbol("libc.so.6", "free").pid(me as i32))?,
        on_malloc_return.attach_uprobe(&UprobeTarget::symbol("libc.so.6", "malloc").retprobe().pid(me as i32))?,
        on_malloc.attach_uprobe(&UprobeTarget::symbol("libc.so.6", "malloc").pid(me as i32))?,
    ];
    let mut small: Vec<Vec<u8>> = (0..7).map(|_| Vec::with_capacity(3001)).collect();
    let large: Vec<Vec<u8>> = (0..3).map(|_| Vec::with_capacity(77777)).collect();
    small.truncate(2); // frees five of the 3001-byte blocks
    std::hint::black_box((&small, &large));
    drop(links);
    drop((small, large)); // after detaching: not seen

    let get = |m: &Map, key: u64| -> Result<u64, Box<dyn std::error::Error>> {
        let value = if m.key_size() == 4 { m.lookup(&(key as u32).to_ne_bytes())? } else { m.lookup(&key.to_ne_bytes())? };
        Ok(value.map(|v| u64::from_ne_bytes(v.try_into().unwrap())).unwrap_or(0))
    };
    println!("{:>8} {:>8} {:>8} {:>12}", "pid", "mallocs", "frees", "outstanding");
    println!("{me:>8} {:>8} {:>8} {:>12}", get(&mallocs, me.into())?, get(&frees, me.into())?, get(&outstanding, me.into())? as i64);
    let mut sizes: Vec<(u64, u64)> = allocs_by_size.typed::<u64, u64>()?.iter().collect::<Result<_, _>>()?;
    sizes.sort_by_key(|&(size, n)| (std::cmp::Reverse(n), size));
    println!("{:>8} {:>8} {:>8}", "size", "allocs", "frees");
    for &(size, n) in sizes.iter().take(8) {
        println!("{size:>8} {n:>8} {:>8}", get(&frees_by_size, size)?);
    }
    assert_eq!((get(&allocs_by_size, 3001)?, get(&frees_by_size, 3001)?), (7, 5));
    assert_eq!((get(&allocs_by_size, 77777)?, get(&frees_by_size, 77777)?), (3, 0));
    assert!(get(&mallocs, me.into())? >= 10 && get(&frees, me.into())? >= 5);
    assert!(get(&outstanding, me.into())? as i64 >= 2 * 3001 + 3 * 77777, "what we kept is outstanding");
    Ok(())
}
