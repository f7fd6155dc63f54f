//! Lab 4.1 — a process tree from fork events (tutorial/ch04-helpers.md): a tracepoint program on
//! `sched:sched_process_fork` (offsets from its tracefs format file) records child → parent for
//! this process's descendants; the lab starts `sh` with two background children and checks every
//! edge against the pids it knows.
//!
//! Run as root: `cargo run --example lab_4_1`. The same code is a doctest of the chapter.

use bpfkit::attach::TracepointFormat;
use bpfkit::bpf_asm;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 4.1") {
        return Ok(());
    }
    let me = std::process::id();
    let format = TracepointFormat::read("sched", "sched_process_fork")?;
    let (parent_pid, child_pid) = (format.offset_of("parent_pid")?, format.offset_of("child_pid")?);
    let parents = Map::create(&MapSpec::new("parents", MapType::Hash, 4, 4, 1024))?;
    let prog = bpf_asm! {
        r6 = *(u32 *)(r1 + {parent_pid})
        r7 = *(u32 *)(r1 + {child_pid})
        *(u32 *)(r10 - 4) = w6
        *(u32 *)(r10 - 8) = w7
        if w6 == {me as i32} goto record    // a child of the lab
        r1 = map[parents] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem            // or of a process already in the tree
        if r0 == 0 goto out
    record:
        r1 = map[parents] ll
        r2 = r10
        r2 += -8                            // key: the child
        r3 = r10
        r3 += -4                            // value: its parent
        r4 = 0
        call bpf_map_update_elem
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&parents], &LoadOptions::new("fork_tree", ProgType::Tracepoint))?;
    let link = prog.attach_tracepoint("sched", "sched_process_fork")?;
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "/bin/true & echo $!; /bin/true & echo $!; wait"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut printed = String::new();
    sh.stdout.take().ok_or("no stdout")?.read_to_string(&mut printed)?;
    assert!(sh.wait()?.success());
    drop(link);

    let sh_pid = sh.id();
    let grandchildren: Vec<u32> = printed.lines().map(str::parse).collect::<Result<_, _>>()?;
    let edges: BTreeMap<u32, u32> = parents.typed::<u32, u32>()?.iter().collect::<Result<_, _>>()?;
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&child, &parent) in &edges {
        children.entry(parent).or_default().push(child);
    }
    fn show(pid: u32, depth: usize, children: &BTreeMap<u32, Vec<u32>>, name: &dyn Fn(u32) -> &'static str) {
        println!("{}{pid} {}", "  ".repeat(depth), name(pid));
        for &c in children.get(&pid).into_iter().flatten() {
            show(c, depth + 1, children, name);
        }
    }
    let name = |pid: u32| if pid == me { "(this lab)" } else if pid == sh_pid { "(sh)" } else { "(true)" };
    show(me, 0, &children, &name);

    let mut expected = BTreeMap::from([(sh_pid, me)]);
    for &g in &grandchildren {
        expected.insert(g, sh_pid);
    }
    assert_eq!(grandchildren.len(), 2);
    assert_eq!(edges, expected, "exactly the lab's three forks, each under the right parent");
    Ok(())
}
