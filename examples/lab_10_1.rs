//! Lab 10.1 — a portable process monitor (tutorial/ch10-core.md): one program on
//! `sched:sched_process_exec` reads the new program's pid, tgid, parent's tgid, comm, start time
//! and cgroup id out of `task_struct` through CO-RE — no offset is compiled in; the kernel that
//! loads it supplies them — and streams them through a ring buffer. The lab starts four
//! children, two of them in a cgroup it makes, and checks every field against `/proc/<pid>`.
//! The same program runs on the host's 6.18 and in the 6.1 guest
//! (`scripts/kernel2/run.sh lab_10_1`); each prints the offsets its kernel gave.
//!
//! Run as root: `cargo run --example lab_10_1`. The same code is a doctest of the chapter.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use bpfkit::bpf_asm;
use bpfkit::events::RingBuf;
use bpfkit::helpers::core_read::{core_read, Hop};
use bpfkit::insn::{Reg, Size};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::os::{cgroup2_mount, Cgroup, CgroupRemover, Leftovers};
use bpfkit::prog::{LoadOptions, ProgType, Program};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 10.1") {
        return Ok(());
    }
    const CHILDREN: usize = 4;
    // The record: {pid u32, tgid u32, ppid u32, pad u32, start_boottime u64, cgroup_id u64, comm [16]}.
    const RECORD: i32 = 48;
    let me = std::process::id() as i32; // pids fit in 31 bits (pid_max is at most 2^22)
    let events = Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, 64 * 1024))?;
    // Reads `task->a->b…` through CO-RE into r0 (clobbers r1–r5 and r8; r6 holds the task).
    let read = |hops: &[(&str, &str)], size: Size| core_read(Reg::R0, Reg::R6, &hops.iter().map(|&(t, p)| Hop::new(t, p)).collect::<Vec<_>>(), size, -8, Reg::R8);
    let prog = bpf_asm! {
        call bpf_get_current_task
        r6 = r0                                     // struct task_struct *, for every read below
        {read(&[("task_struct", "real_parent"), ("task_struct", "tgid")], Size::W)?}
        if r0 != {me} goto out                      // only the lab's own children
        r7 = r0
        r1 = map[events] ll
        r2 = {RECORD}
        r3 = 0
        call bpf_ringbuf_reserve
        if r0 == 0 goto out
        r9 = r0
        *(u32 *)(r9 + 8) = w7                       // ppid
        {read(&[("task_struct", "pid")], Size::W)?}
        *(u32 *)(r9 + 0) = w0
        {read(&[("task_struct", "tgid")], Size::W)?}
        *(u32 *)(r9 + 4) = w0
        *(u32 *)(r9 + 12) = 0
        {read(&[("task_struct", "start_boottime")], Size::DW)?}
        *(u64 *)(r9 + 16) = r0
        {read(&[("task_struct", "cgroups"), ("css_set", "dfl_cgrp"), ("cgroup", "kn"), ("kernfs_node", "id")], Size::DW)?}
        *(u64 *)(r9 + 24) = r0
        r1 = r9                                     // comm: 16 bytes straight into the record
        r1 += 32
        r2 = 16
        r3 = r6
        core_field_offset(r8, "task_struct", "comm")
        r3 += r8
        call bpf_probe_read_kernel
        r1 = r9
        r2 = 0
        call bpf_ringbuf_submit
    out:
        r0 = 0
        exit
    };
    let prog = Program::load(&prog.assemble()?, &[&events], &LoadOptions::new("exec_monitor", ProgType::Tracepoint))?;
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    println!("relocated for {} ({} CO-RE relocations):", release.trim(), prog.core_relocations().len());
    let mut shown: Vec<String> = Vec::new();
    for r in prog.core_relocations().iter().map(|r| r.to_string()) {
        if !shown.contains(&r) {
            println!("  {r}");
            shown.push(r);
        }
    }
    let _link = prog.attach_tracepoint("sched", "sched_process_exec")?;

    // Half the children run in a cgroup the lab makes, so that two different ids are checked.
    // It is removed however the lab ends: on drop, and from the Ctrl-C handler, installed
    // before the cgroup exists.
    let name = format!("bpfkit-lab10-1-{me}");
    let remover = CgroupRemover::for_path(cgroup2_mount()?.join(&name), Leftovers::Kill);
    ctrlc::set_handler(move || {
        let _ = remover.remove();
        std::process::exit(130);
    })?;
    let cgroup = Cgroup::create(&name)?;
    // Children are killed and reaped however the lab ends.
    struct Children(Vec<Child>);
    impl Drop for Children {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut children = Children(Vec::new());
    for i in 0..CHILDREN {
        // Every other child joins the cgroup before its execve, so its exec — and the
        // record — happens there.
        let mut command = if i % 2 == 0 { cgroup.command("sleep")? } else { Command::new("sleep") };
        children.0.push(command.arg("5").spawn()?);
    }
    let mut ring = RingBuf::new(&events)?;
    let mut records: HashMap<u32, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    while records.len() < CHILDREN && Instant::now() < deadline {
        ring.poll(Some(Duration::from_millis(100)), |r| {
            records.insert(u32::from_ne_bytes([r[0], r[1], r[2], r[3]]), r.to_vec());
        })?;
    }

    // The independent witness: /proc. The cgroup id is the inode of the cgroup's directory
    // under the cgroup2 mount (which machines mount in different places).
    let cgroup2 = cgroup2_mount()?.display().to_string();
    const USER_HZ: u64 = 100; // /proc's clock ticks: fixed at 100 on x86-64 (the ABI's USER_HZ)
    println!("{:>7} {:>7} {:>7} {:<8} {:>14} {:>9}   checked against /proc", "pid", "tgid", "ppid", "comm", "start (ns)", "cgroup");
    for child in &children.0 {
        let pid = child.id();
        let r = records.get(&pid).ok_or_else(|| format!("no exec event for child {pid}"))?;
        let u32_at = |o: usize| u32::from_ne_bytes(r[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_ne_bytes(r[o..o + 8].try_into().unwrap_or_default());
        let (tgid, ppid, start_ns, cgroup_id) = (u32_at(4), u32_at(8), u64_at(16), u64_at(24));
        let comm = String::from_utf8_lossy(&r[32..48]).trim_end_matches('\0').to_string();

        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let (head, tail) = stat.rsplit_once(") ").ok_or("malformed /proc/PID/stat")?;
        let proc_comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
        let fields: Vec<&str> = tail.split(' ').collect(); // fields[0] is field 3 (state)
        let proc_ppid: u32 = fields[1].parse()?;
        let proc_start_ticks: u64 = fields[19].parse()?; // field 22: starttime
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let proc_tgid: u32 = status.lines().find_map(|l| l.strip_prefix("Tgid:")).ok_or("no Tgid")?.trim().parse()?;
        let cgroup_path = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            .ok_or("no cgroup v2 line in /proc/PID/cgroup")?;
        let proc_cgroup_id = std::fs::metadata(format!("{cgroup2}{}", cgroup_path.trim_end_matches('/')))?.ino();
        println!("{pid:>7} {tgid:>7} {ppid:>7} {comm:<8} {start_ns:>14} {cgroup_id:>9}   ok");
        assert_eq!((tgid, ppid, comm.as_str()), (proc_tgid, proc_ppid, proc_comm), "pid {pid}");
        assert_eq!(start_ns / (1_000_000_000 / USER_HZ), proc_start_ticks, "pid {pid}: start time");
        assert_eq!(cgroup_id, proc_cgroup_id, "pid {pid}: cgroup {cgroup_path}");
    }
    let ids: std::collections::BTreeSet<u64> = records.values().map(|r| u64::from_ne_bytes(r[24..32].try_into().unwrap_or_default())).collect();
    assert_eq!(ids.len(), 2, "two cgroups, two ids: {ids:?}");
    println!("{CHILDREN} of {CHILDREN} children: every field equals /proc (cgroups {ids:?})");
    Ok(())
}
