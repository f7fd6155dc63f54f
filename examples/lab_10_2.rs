//! Lab 10.2 — a kernel-version adaptive program (tutorial/ch10-core.md): a process's resident
//! memory, read from `mm_struct.rss_stat`, whose type changed in Linux 6.2. Up to 6.1 it is a
//! `struct mm_rss_stat { atomic_long_t count[4]; }`; from 6.2 an array of four
//! `struct percpu_counter`. One program asks `core_type_exists("mm_rss_stat")` and takes the
//! branch the loading kernel's layout needs; the other branch's relocations find nothing there and
//! are poisoned in code the verifier proves dead. It runs as a task iterator over a child shell
//! holding 4 MB, and the sum of the file, anonymous and shared-memory pages is checked against
//! the rss of `/proc/<pid>/stat` — on the host's 6.18 (the percpu_counter branch) and in the 6.1 guest
//! (`scripts/kernel2/run.sh lab_10_2`, the mm_rss_stat branch).
//!
//! Run as root: `cargo run --example lab_10_2`. The same code is a doctest of the chapter.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use bpfkit::attach::iter::{self, IterScope};
use bpfkit::bpf_asm;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{Program as Code, Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::Program;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 10.2") {
        return Ok(());
    }
    // MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES: the counters' order in both kernels.
    const COUNTERS: [&str; 4] = ["file", "anon", "swap", "shmem"];
    // out[0]: which branch ran (1: mm_rss_stat, 2: percpu_counter); out[1..5]: the four counters.
    let out = Map::create(&MapSpec::new("rss_out", MapType::Array, 4, 40, 1))?;
    // Reads counter `i` of the mm in r7 into r0, then stores it in out[1 + i] (r9 points there).
    let counter = |path: String, i: i16| -> Result<Code, Box<dyn std::error::Error>> {
        let mut c = core_read(Reg::R0, Reg::R7, &[Hop::new("mm_struct", &path)], Size::DW, -8, Reg::R8)?;
        c.extend(bpf_asm! { *(u64 *)(r9 + {8 * (i + 1)}) = r0 });
        Ok(c)
    };
    let mut old_layout = Code::new(); // <= 6.1: mm->rss_stat.count[i].counter
    let mut new_layout = Code::new(); // >= 6.2: mm->rss_stat[i].count
    for i in 0..4 {
        old_layout.extend(counter(format!("rss_stat.count[{i}].counter"), i)?);
        new_layout.extend(counter(format!("rss_stat[{i}].count"), i)?);
    }
    let prog = bpf_asm! {
        r6 = *(u64 *)(r1 + 8)                  // ctx->task; NULL once, at the end
        if r6 == 0 goto out
        {core_read(Reg::R7, Reg::R6, &[Hop::new("task_struct", "mm")], Size::DW, -8, Reg::R8)?}
        if r7 == 0 goto out                    // a kernel thread has no mm
        r9 = map_value[rss_out]+0 ll
        core_type_exists(r1, "mm_rss_stat")    // 1 on kernels before 6.2, 0 after
        if r1 == 0 goto percpu
        *(u64 *)(r9 + 0) = 1
        {old_layout}
        goto out
    percpu:
        *(u64 *)(r9 + 0) = 2
        {new_layout}
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&out], &iter::load_options("rss_reader", "task")?)?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    println!("relocated for {}:", release.trim());
    for r in prog.core_relocations().iter().filter(|r| r.path.contains("rss_stat") || r.type_name == "mm_rss_stat") {
        println!("  {r}");
    }

    // A process whose memory does not change while it is read: a shell that fills a 4 MB
    // variable, says so, then waits on its stdin (no child process of its own). Killed and
    // reaped however the lab ends.
    struct Reaped(Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let script = "x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo filled; read _";
    let mut child = Reaped(Command::new("sh").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?);
    let pid = child.0.id();
    let mut ready = String::new();
    BufReader::new(child.0.stdout.take().ok_or("no stdout")?).read_line(&mut ready)?;
    assert_eq!(ready.trim(), "filled");
    let link = prog.attach_iter(&IterScope::Process(pid))?;
    iter::read_to_end(&link)?; // runs the program once per thread of the child
    let v = out.typed::<u32, [u64; 5]>()?.get(&0)?.ok_or("no result")?;
    // /proc/PID/stat's rss (field 24) is get_mm_rss(): the counters as the kernel reads them
    // cheaply — on percpu_counter kernels their shared `count` without the per-CPU deltas not yet
    // folded in, each clamped at 0. (statm and status sum the deltas on newer kernels.)
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(") ").ok_or("malformed /proc/PID/stat")?.1;
    let resident: u64 = after_comm.split(' ').nth(21).ok_or("malformed /proc/PID/stat")?.parse()?; // field 24

    let branch = match v[0] {
        1 => "mm_rss_stat (atomic_long_t count[4])",
        2 => "percpu_counter rss_stat[4]",
        _ => return Err("the program did not run on the child".into()),
    };
    println!("branch taken: {branch}");
    for (name, value) in COUNTERS.iter().zip(&v[1..]) {
        println!("  {name:<6} {value:>6} pages");
    }
    let positive = |x: u64| (x as i64).max(0) as u64;
    let sum = positive(v[1]) + positive(v[2]) + positive(v[4]); // file + anon + shmem
    println!("resident: {sum} pages read by the program, {resident} in /proc/{pid}/stat (rss)");
    assert_eq!(sum, resident);
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    println!("(statm's resident, {} pages, may add per-CPU deltas a cheap read leaves out)", statm.split(' ').nth(1).unwrap_or("?"));
    // The branch is the kernel's layout, decided by the kernel's BTF (a probe), not its version.
    let layout_is_old = bpfkit::core_btf::Btf::vmlinux()?.find_by_name_kind("mm_rss_stat", bpfkit::core_btf::Kind::Struct).is_some();
    assert_eq!(v[0], if layout_is_old { 1 } else { 2 });
    Ok(())
}
