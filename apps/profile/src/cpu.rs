//! `cpu` mode: a perf_event program on the `cpu-clock` software event, one event per online CPU
//! sampling at `-F HZ`. Each sample adds 1 to the count of the interrupted task's (user stack,
//! kernel stack) pair, in the kernel.
//!
//! `cpu-clock` is an hrtimer: it fires on time, whatever the CPU does, so a sample lands where
//! the CPU was — in the task that was running, or in the idle task (tgid 0, skipped). There is no
//! hardware PMU here, so `cycles` is not an option; perf falls back to the same event.

use bpfkit::attach::{Link, PerfEventTarget};
use bpfkit::bpf_asm;
use bpfkit::insn::Program as Insns;
use bpfkit::os::perf::PERF_COUNT_SW_CPU_CLOCK;
use bpfkit::prog::{LoadOptions, ProgType, Program};

use crate::kernel::{
    add_to_counts, build_key, filter_target, stat_inc, Error, StackMaps, STAT_EVENTS,
};

/// The sampling program. With `filtered`, only processes in `targets` are counted.
pub fn program(filtered: bool) -> Insns {
    let mut p = bpf_asm! {
        r6 = r1                                 // the perf_event context (the sample's registers)
        call bpf_get_current_pid_tgid
        r7 = r0
        r7 >>= 32                               // the process
        if r7 == 0 goto out                     // the idle task: a CPU with nothing to do
    };
    if filtered {
        p.extend(filter_target("out"));
    }
    p.extend(stat_inc(STAT_EVENTS, "events"));
    p.extend(build_key());
    p.extend(bpf_asm! { r9 = 1 });
    p.extend(add_to_counts("sample"));
    p.extend(bpf_asm! {
    out:
        r0 = 0
        exit
    });
    p
}

/// The program loaded and attached to a `cpu-clock` event at `hz` on every online CPU. Dropping
/// the links detaches (and closes the events).
pub fn attach(maps: &StackMaps, hz: u64, filtered: bool) -> Result<(Program, Vec<Link>), Error> {
    let asm = program(filtered).assemble()?;
    let prog = Program::load(
        &asm,
        &maps.all(),
        &LoadOptions::new("profile_cpu", ProgType::PerfEvent),
    )?;
    let mut links = Vec::new();
    for cpu in bpfkit::os::online_cpus()? {
        let target = PerfEventTarget::software_freq(PERF_COUNT_SW_CPU_CLOCK, hz, cpu as i32);
        links.push(prog.attach_perf_event(&target)?);
    }
    Ok((prog, links))
}
