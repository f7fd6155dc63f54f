//! Lab 5.1 — a kernel function call tracer (tutorial/ch05-kprobes.md): a kprobe on the kernel
//! function named on the command line (default `do_sys_openat2`) whose program is generated from
//! the function's BTF prototype: it copies each integer or pointer argument out of `pt_regs`,
//! and the first `char *` argument as a string, into a ring buffer, and counts every call for
//! the rate. With the default function the lab opens its own file 20 times and checks that
//! exactly those 20 calls arrive, with `dfd` = AT_FDCWD and the file's name decoded.
//!
//! Run as root: `cargo run --example lab_5_1 [-- FUNCTION [SECONDS]]`. Needs kprobes: on a
//! kernel without them it shows bpfkit's error (and the kernel's own word for it) and stops;
//! `scripts/kernel2/run.sh` runs it in full in the 6.1 guest. The same code is a doctest.

use bpfkit::attach::kprobe::{kernel_function, is_traceable, KprobeTarget};
use bpfkit::attach::ProbeError;
use bpfkit::bpf_asm;
use bpfkit::core_btf::{Btf, IntEncoding, Kind, TypeDetail};
use bpfkit::events::RingBuf;
use bpfkit::helpers::patterns::{probe_arg, probe_read_str, ringbuf_output, zero_stack, Space};
use bpfkit::insn::{Program as Insns, Reg};
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadOptions, ProgType, Program};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if !bpfkit::features::can_use_bpf("Lab 5.1") {
        return Ok(());
    }
    let mut args = std::env::args().skip(1);
    let function = args.next().unwrap_or_else(|| "do_sys_openat2".to_string());
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1.0);

    // 1. Resolve the symbol, and read its prototype from the kernel's BTF.
    let symbol = kernel_function(&function)?.ok_or_else(|| format!("{function}: not a function in /proc/kallsyms (inlined, renamed, or a typo)"))?;
    let traceable = match is_traceable(&function)? {
        Some(true) => "yes",
        Some(false) => "no: notrace, or on the kprobe blacklist",
        None => "cannot tell (ftrace's list is not readable here)",
    };
    println!("{function} at {:#x} ({}), traceable by ftrace: {traceable}", symbol.address, symbol.kind);
    let btf = Btf::vmlinux()?;
    let func = btf.find_by_name_kind(&function, Kind::Func).ok_or_else(|| format!("{function}: no BTF FUNC"))?;
    println!("{}", btf.c_decl(func)?.trim());
    let proto = btf.type_by_id(func)?.target().ok_or("FUNC without a prototype")?;
    let mut params = Vec::new(); // (name, how to show it)
    for p in btf.type_by_id(proto)?.params().iter().take(6) {
        let shown = match btf.type_by_id(btf.resolve(p.ty)?)?.detail {
            TypeDetail::Ptr { target } => match btf.type_by_id(btf.resolve(target)?)? {
                t if t.name == "char" => "string",
                _ => "pointer",
            },
            TypeDetail::Int { encoding: IntEncoding::Signed, .. } => "signed",
            _ => "unsigned",
        };
        params.push((p.name.to_string(), shown));
    }

    // 2. The program, generated from the prototype. Record: {u32 tgid; u32 tid; u64 args[6]; char s[64]}.
    const RECORD: usize = 8 + 48 + 64;
    let rec = -(RECORD as i16);
    let events = Map::create(&MapSpec::new("calls", MapType::RingBuf, 0, 0, 1 << 20))?;
    let counts = Map::create(&MapSpec::new("call_count", MapType::PercpuArray, 4, 8, 2))?; // [calls, lost]
    let mut prog: Insns = bpf_asm! {
        r9 = r1                         // pt_regs *: r1 is clobbered by the first call
        *(u32 *)(r10 - 4) = 0           // key 0: calls
        r1 = map[call_count] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 + 0)           // per-CPU: no other CPU writes this slot,
        r1 += 1                         // so no atomic add is needed
        *(u64 *)(r0 + 0) = r1
        {zero_stack(rec, RECORD)?}
        call bpf_get_current_pid_tgid
        *(u32 *)(r10 + {rec + 4}) = w0  // tid
        r0 >>= 32
        *(u32 *)(r10 + {rec}) = w0      // tgid
    };
    let mut string_arg = None;
    for (i, (_, shown)) in params.iter().enumerate() {
        let slot = rec + 8 + 8 * i as i16;
        prog.extend(probe_arg(Reg::R6, Reg::R9, i)?);
        prog.extend(bpf_asm! { *(u64 *)(r10 + {slot}) = r6 });
        if *shown == "string" && string_arg.is_none() {
            string_arg = Some(i);
            // A `char *` may point into user or kernel memory: try user first.
            prog.extend(bpf_asm! {
                {probe_read_str(Space::User, rec + 56, 64, Reg::R6)?}
                if r0 s> 0 goto copied
                {probe_read_str(Space::Kernel, rec + 56, 64, Reg::R6)?}
            copied:
            });
        }
    }
    prog.extend(bpf_asm! {
        {ringbuf_output("calls", rec, RECORD)?}
        if r0 == 0 goto out
        *(u32 *)(r10 - 4) = 1           // key 1: records the ring buffer had no room for
        r1 = map[call_count] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
        if r0 == 0 goto out
        r1 = *(u64 *)(r0 + 0)
        r1 += 1
        *(u64 *)(r0 + 0) = r1
    out:
        r0 = 0
        exit
    });
    let prog = Program::load(&prog.assemble()?, &[&events, &counts], &LoadOptions::new("call_tracer", ProgType::Kprobe))?;
    println!("program: {} instructions for {} arguments", prog.info()?.xlated_len / 8, params.len());

    // The file the workload opens, created before the probe is in place.
    let path = std::env::temp_dir().join(format!("bpfkit-lab51-{}", std::process::id()));
    std::fs::write(&path, b"lab 5.1")?;

    // 3. Attach: here a kernel without kprobes says so.
    let link = match prog.attach_kprobe(&KprobeTarget::function(&function)) {
        Ok(link) => link,
        Err(e @ ProbeError::NoProbeSupport { .. }) => {
            // Confirmed independently: the kernel's symbol table has no kprobe core either.
            assert!(kernel_function("register_kprobe")?.is_none(), "bpfkit says no kprobes, yet register_kprobe exists");
            println!("{e}\n(and /proc/kallsyms has no register_kprobe: this kernel was built without CONFIG_KPROBES)");
            std::fs::remove_file(&path)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut ring = RingBuf::new(&events)?;
    let started = Instant::now();
    if function == "do_sys_openat2" {
        for _ in 0..20 {
            std::fs::File::open(&path)?;
        }
    }
    std::thread::sleep(Duration::from_secs_f64(seconds).saturating_sub(started.elapsed()));
    let elapsed = started.elapsed().as_secs_f64();
    drop(link);
    std::fs::remove_file(&path)?;

    // 4. Decode: each argument the way its BTF type says.
    let per_cpu = |key: u32| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(counts.lookup_percpu(&key.to_ne_bytes())?.unwrap_or_default().iter().map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap())).sum())
    };
    let (calls, lost) = (per_cpu(0)?, per_cpu(1)?);
    let me = std::process::id();
    let mut ours = 0;
    let mut shown = 0;
    ring.poll(Some(Duration::from_millis(200)), |r| {
        let tgid = u32::from_ne_bytes(r[0..4].try_into().unwrap());
        let arg = |i: usize| u64::from_ne_bytes(r[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        let text = String::from_utf8_lossy(r[56..].split(|&b| b == 0).next().unwrap_or_default()).into_owned();
        let decoded: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, (name, how))| match *how {
                "string" if Some(i) == string_arg => format!("{name}={text:?}"),
                "signed" => format!("{name}={}", arg(i) as i32),
                "unsigned" => format!("{name}={}", arg(i)),
                _ => format!("{name}={:#x}", arg(i)),
            })
            .collect();
        if tgid == me && text == path.to_string_lossy() && arg(0) as i32 == -100 {
            ours += 1;
        }
        if shown < 5 || (tgid == me && ours <= 2) {
            println!("[{tgid}] {function}({})", decoded.join(", "));
            shown += 1;
        }
    })?;
    println!("{calls} calls in {elapsed:.2} s ({:.0}/s), {lost} not recorded (ring buffer full)", calls as f64 / elapsed);
    if function == "do_sys_openat2" {
        assert_eq!(ours, 20, "each of our 20 opens, with dfd = AT_FDCWD and our file's name");
    }
    Ok(())
}
