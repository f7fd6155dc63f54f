//! Lab 10.3 — a BTF explorer (tutorial/ch10-core.md): lay out a kernel struct from the running
//! kernel's BTF (members, offsets, sizes, bitfields), then turn access paths such as
//! `task_struct->mm->arg_start` into CO-RE read sequences, load them as one task iterator over
//! a child process, and check each value against `/proc/<pid>/stat` and `/proc/<pid>/limits`.
//! `bpfkit btf members TYPE` and `bpfkit btf path PATH` (`:btf members`, `:btf path` in the REPL)
//! print the same two views.
//!
//! Run as root: `cargo run --example lab_10_3`. The same code is a doctest of the chapter.

use std::process::{Child, Command};
use std::time::Duration;
use bpfkit::attach::iter::{self, IterScope};
use bpfkit::bpf_asm;
use bpfkit::core_btf::Btf;
use bpfkit::helpers::core_read::core_read_path;
use bpfkit::insn::{format::{disassemble, DisasmOptions, Syntax}, Program as Code, Reg};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::Program;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 10.3") {
        return Ok(());
    }
    let btf = Btf::vmlinux()?;

    // 1. A struct's layout: the first members of task_struct, and its bitfields.
    let rows = btf.member_rows("task_struct")?;
    println!("task_struct: {} members (anonymous ones expanded)", rows.len());
    println!("{:>10} {:>5}  member", "offset", "size");
    let show = |r: &bpfkit::core_btf::MemberRow| {
        let at = if r.bitfield_bits > 0 { format!("{:#x}:{}", r.bit_offset / 8, r.bit_offset % 8) } else { format!("{:#x}", r.bit_offset / 8) };
        println!("{at:>10} {:>5}  {}{}", r.size, "    ".repeat(r.depth), r.decl);
    };
    rows.iter().take(6).for_each(show);
    println!("       …");
    rows.iter().filter(|r| r.bitfield_bits > 0).take(4).for_each(show);
    assert!(rows.iter().any(|r| r.name == "pid" && r.decl == "pid_t pid"));

    // 2. Access paths, each checked against what /proc says about the same process.
    let child_limit = 4321; // RLIMIT_NOFILE's soft limit, set for the child by the shell
    let paths = [
        ("task_struct->real_parent->tgid", "ppid: /proc/PID/stat field 4"),
        ("task_struct->mm->arg_start", "arg_start: field 48"),
        ("task_struct->mm->arg_end", "arg_end: field 49"),
        ("task_struct->mm->start_stack", "startstack: field 28"),
        ("task_struct->signal->rlim[7].rlim_cur", "RLIMIT_NOFILE (7): /proc/PID/limits"),
    ];
    let out = Map::create(&MapSpec::new("explorer_out", MapType::Array, 4, 8 * paths.len() as u32, 1))?;
    let mut reads = Code::new();
    for (i, (expr, _)) in paths.iter().enumerate() {
        let access = btf.access_path(expr)?;
        let code = core_read_path(Reg::R0, Reg::R6, &access, -8, Reg::R7)?;
        if i == 1 {
            println!("\n{access}\ngenerated:");
            print!("{}", disassemble(&code.insns().cloned().collect::<Vec<_>>(), DisasmOptions::new(Syntax::Llvm)));
        }
        reads.extend(code);
        reads.extend(bpf_asm! { *(u64 *)(r9 + {8 * i as i16}) = r0 });
    }
    let prog = bpf_asm! {
        r6 = *(u64 *)(r1 + 8)              // ctx->task; NULL once, at the end
        if r6 == 0 goto out
        r9 = map_value[explorer_out]+0 ll
        {reads}
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&out], &iter::load_options("btf_explorer", "task")?)?;

    struct Reaped(Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reaped(Command::new("sh").args(["-c", &format!("ulimit -n {child_limit} && exec sleep 10")]).spawn()?);
    let pid = child.0.id();
    std::thread::sleep(Duration::from_millis(300)); // past `ulimit` and the exec
    let link = prog.attach_iter(&IterScope::Process(pid))?;
    iter::read_to_end(&link)?;
    let got = out.typed::<u32, [u64; 5]>()?.get(&0)?.ok_or("no result")?;

    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat.rsplit_once(") ").ok_or("malformed stat")?.1.split(' ').collect();
    let field = |n: usize| -> Result<u64, std::num::ParseIntError> { fields[n - 3].parse() }; // fields[0] is field 3
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let nofile: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .ok_or("no open-files limit")?
        .parse()?;
    let expected = [field(4)?, field(48)?, field(49)?, field(28)?, nofile];
    println!("\nchild {pid}:");
    for (((expr, what), value), want) in paths.iter().zip(got).zip(expected) {
        println!("  {expr:<40} {value:#16x}   {what}: {want:#x}");
        assert_eq!(value, want, "{expr}");
    }
    assert_eq!(got[4], child_limit);
    println!("{} of {} paths equal /proc", paths.len(), paths.len());
    Ok(())
}
