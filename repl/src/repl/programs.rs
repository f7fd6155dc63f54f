//! The REPL's program commands: `:progs`, `:list`, `:load` (with the verifier's rejection
//! shown against the lines as typed), `:run` (test runs on hex or built packets) and `:info`.

use std::io::Write;

use bpfkit::attach::fentry::{BtfTarget, TracingHook};
use bpfkit::attach::iter;
use bpfkit::attach::ProbeError;
use bpfkit::maps::Map;
use bpfkit::prog::{AttachType, LoadError, LoadOptions, Program, TestRun};

use crate::error::CliError;
use super::session::{say, Loaded, Outcome, Session};
use super::{render, system};
use crate::packet;
use crate::commands::run::{load_options_for, runs_once, takes_packet, test_run_hint, DEFAULT_PACKET_LEN};

/// `:prog NAME` starts (or switches to) a session program; `:prog list|show|dump …` is
/// `bpfkit prog …`.
pub fn prog(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    match args {
        [sub, ..] if matches!(*sub, "list" | "show" | "dump") => system::subcommand("prog", args, out),
        [name] => s.start_program(name, out),
        _ => Err("usage: :prog NAME (or :prog list|show|dump …)".into()),
    }
}

/// `:progs [all]`.
pub fn progs(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    match args {
        ["all"] => system::subcommand("prog", &["list"], out),
        [] => list_session(s, out),
        _ => Err("usage: :progs [all]".into()),
    }
}

/// `:log`: the verifier log of the last rejected load.
pub fn log(s: &mut Session, _: &[&str], out: &mut dyn Write) -> Outcome {
    match &s.last_log {
        Some(log) => {
            let explained = s.last_diagnosis.as_ref().map(|d| format!("\n{d}")).unwrap_or_default();
            writeln!(out, "{}{explained}", log.trim_end()).map_err(|e| CliError::Message(format!("cannot write output: {e}")))
        }
        None => Err("no verifier log: the last load was not rejected (or nothing was loaded)".into()),
    }
}

/// `:progs`.
fn list_session(s: &Session, out: &mut dyn Write) -> Outcome {
    if s.programs.is_empty() {
        say!(out, "no programs yet (`:prog NAME` starts one, or just type an instruction)");
    }
    for (i, p) in s.programs.iter().enumerate() {
        let mark = if s.current == Some(i) { "*" } else { " " };
        let state = match &p.loaded {
            Some(l) if s.interactive => match l.prog.info() {
                Ok(info) => format!("loaded as {} (id {})", l.prog_type, info.id),
                Err(_) => format!("loaded as {}", l.prog_type),
            },
            Some(l) => format!("loaded as {}", l.prog_type),
            None => "not loaded".into(),
        };
        match &p.object {
            Some(object) => say!(out, "{mark} {}: from object {object}, {state}", p.name),
            None => say!(out, "{mark} {}: {} instructions, {state}", p.name, p.insn_count()),
        }
    }
    Ok(())
}

/// `:list [NAME]`: the program as typed, each instruction with its slot, bytes and text.
pub fn listing(s: &Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let name = match args {
        [] => s.current_name().ok_or("no current program (`:list NAME`)")?.to_owned(),
        [name] => (*name).to_owned(),
        _ => return Err("usage: :list [NAME]".into()),
    };
    let entry = s.program(&name)?;
    if let Some(object) = &entry.object {
        return Err(crate::error::CliError::from(format!("program {name} comes from object {object}, not typed here: `:prog dump xlated ID` shows what the kernel holds (`:info {name}` gives the id)")));
    }
    let asm = entry.assemble()?;
    say!(out, "program {name}: {} instructions, {} slots", asm.insns().len(), asm.slot_count());
    let labels = asm.labels_by_slot();
    for (i, insn) in asm.insns().iter().enumerate() {
        let slot = asm.slot_of(i).unwrap_or_default();
        for (_, label) in labels.iter().filter(|(s, _)| *s == slot) {
            say!(out, "{label}:");
        }
        let line = asm.loc(i).map(|l| l.line);
        let typed = line.and_then(|l| entry.lines.get(&l)).map(String::as_str).unwrap_or("");
        let text = render::insn_lines(slot, insn);
        let mut rows = text.lines();
        if let Some(first) = rows.next() {
            say!(out, "{first:<58} ; {:>3} | {typed}", line.unwrap_or_default());
        }
        for row in rows {
            say!(out, "{row}");
        }
    }
    Ok(())
}

/// `:load NAME TYPE [ATTACH_TYPE]`, `:load NAME tp_btf EVENT`, `:load NAME iter TARGET`,
/// `:load NAME fentry|fexit|fmod_ret FUNCTION`, `:load NAME lsm HOOK`.
pub fn load(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let (name, t, attach) = match args {
        [name, t] => (*name, *t, None),
        [name, t, a] => (*name, *t, Some(*a)),
        _ => return Err("usage: :load NAME TYPE [ATTACH_TYPE] (e.g. :load p xdp)".into()),
    };
    let target = |what: &str| attach.ok_or_else(|| format!("usage: :load NAME {t} {what}"));
    let hook = match t {
        "fentry" => Some(TracingHook::Fentry),
        "fexit" => Some(TracingHook::Fexit),
        "fmod_ret" => Some(TracingHook::FmodRet),
        "lsm" => Some(TracingHook::Lsm),
        _ => None,
    };
    // Trampoline programs load through `BtfTarget::load`, which names this kernel's refusal.
    let traced = match hook {
        Some(h) => Some(BtfTarget::find(h, target(if h == TracingHook::Lsm { "HOOK (e.g. file_open)" } else { "FUNCTION (e.g. do_unlinkat)" })?).map_err(|e| e.to_string())?),
        None => None,
    };
    let opts = match (t, &traced) {
        (_, Some(bt)) => bt.load_options(name),
        ("tp_btf", _) => tp_btf_options(name, target("EVENT (e.g. sys_enter)")?)?,
        ("iter", _) => iter::load_options(name, target("TARGET (e.g. task, bpf_map, bpf_map_elem)")?).map_err(|e| e.to_string())?,
        _ => {
            let attach: Option<AttachType> = attach.map(str::parse).transpose()?;
            load_options_for(t.parse()?, attach, 0, name.to_owned())
        }
    };
    let prog_type = opts.get_prog_type();
    let entry = s.program(name)?;
    if let Some(object) = &entry.object {
        return Err(crate::error::CliError::from(format!("program {name} was loaded from object {object} by `:open`; it is not typed here")));
    }
    let asm = entry.assemble()?;
    if asm.insns().is_empty() {
        return Err(crate::error::CliError::from(format!("program {name} has no instructions yet")));
    }
    let mut maps: Vec<&Map> = Vec::new();
    for (i, map) in asm.map_references() {
        match s.maps.iter().find(|m| m.name == map) {
            Some(m) => maps.push(&m.map),
            None => {
                let loc = asm.loc(i);
                let at = loc.as_ref().map(|l| render::snippet(&entry.lines, l)).unwrap_or_default();
                return Err(crate::error::CliError::from(format!(
                    "map `{map}` is not in the session: create it first (`:map create {map} hash 4 8 16`){at}"
                )));
            }
        }
    }
    let result = match &traced {
        Some(bt) => bt.load(&asm, &maps, name),
        None => Program::load(&asm, &maps, &opts).map_err(ProbeError::from),
    };
    match result {
        Ok(prog) => {
            let id = if s.interactive {
                prog.info().map(|i| format!(" (id {})", i.id)).unwrap_or_default()
            } else {
                String::new()
            };
            say!(out, "loaded {name} as {prog_type}{id}: {} instructions, {} slots", asm.insns().len(), asm.slot_count());
            s.last_log = None;
            s.last_diagnosis = None;
            s.enable_stats();
            s.program_mut(name)?.loaded = Some(Loaded { prog, asm: Some(asm), prog_type });
            Ok(())
        }
        Err(ProbeError::Load(LoadError::Verifier { prog, rejection })) => {
            let mark = rejection.loc.as_ref().map(|l| l.line);
            let listing = render::listing(&entry.lines, mark, &format!("^ the verifier: {}", rejection.reason), s.interactive);
            s.last_log = Some(rejection.log.clone());
            s.last_diagnosis = rejection.diagnose();
            let explained = s.last_diagnosis.as_ref().map(|d| format!("why: {}\nfix: {}\n", d.cause, d.fix)).unwrap_or_default();
            Err(crate::error::CliError::from(format!(
                "program \"{prog}\" rejected by the verifier: {rejection}\n{listing}{explained}(`:log` shows the whole verifier log)"
            )))
        }
        Err(e) => Err(e.to_string().into()),
    }
}

/// A `tp_btf` program (tracing, `BPF_TRACE_RAW_TP`) for the raw tracepoint `event`.
fn tp_btf_options(name: &str, event: &str) -> Result<LoadOptions, String> {
    bpfkit::attach::tp_btf_options(name, event).map_err(|e| e.to_string())
}

fn loaded<'s>(s: &'s Session, name: &str) -> Result<&'s Loaded, String> {
    s.program(name)?
        .loaded
        .as_ref()
        .ok_or_else(|| format!("program {name} is not loaded (`:load {name} TYPE`)"))
}

/// Room for the context a test run hands back (larger than any context struct).
const CTX_OUT_ROOM: usize = 1024;

/// `:run NAME [HEX | packet …] [--ctx HEX] [--repeat N] [--time]`.
pub fn run(s: &Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    const USAGE: &str = "usage: :run NAME [HEX | packet udp|tcp SRC:PORT DST:PORT [payload=HEX]] [--ctx HEX] [--repeat N] [--time]";
    let Some((name, rest)) = args.split_first() else {
        return Err(USAGE.into());
    };
    let l = loaded(s, name)?;
    let mut words: Vec<&str> = Vec::new();
    let (mut repeat, mut time, mut ctx) = (None, false, None);
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        match *w {
            "--time" => time = true,
            "--repeat" => {
                let n = it.next().ok_or("--repeat takes a number")?;
                repeat = Some(n.parse::<u32>().map_err(|_| format!("--repeat `{n}` is not a number"))?);
            }
            "--ctx" => {
                let h = it.next().ok_or("--ctx takes the context as hex (`--ctx 2a000000`)")?;
                ctx = Some(crate::hex::parse(h).map_err(|e| format!("--ctx hex: {}", e.message))?);
            }
            w => words.push(w),
        }
    }
    let data = match words.as_slice() {
        [] if takes_packet(l.prog_type) => vec![0u8; DEFAULT_PACKET_LEN],
        [] => Vec::new(),
        ["packet", spec @ ..] => packet::build(spec)?,
        hex => crate::hex::parse(&hex.concat()).map_err(|e| format!("packet hex: {}", e.message))?,
    };
    let once = runs_once(l.prog_type);
    let mut input = TestRun::with_data(data).repeat(repeat.unwrap_or(if once { 0 } else { 1 }));
    if let Some(ctx) = ctx {
        // The kernel hands back its whole context struct (192 bytes of `__sk_buff`) and fails
        // with ENOSPC if there is less room: leave plenty; it says how much it wrote.
        input = input.ctx_out_size(ctx.len().max(CTX_OUT_ROOM)).ctx(ctx);
    }
    if once {
        input = input.ctx_out_size(0);
    }
    let r = l.prog.test_run(&input).map_err(|e| match test_run_hint(l.prog_type, e.errno()) {
        // The hints name the command line's options; here the packet follows the name.
        Some(hint) => format!(
            "{e} ({})",
            hint.replace("in --data-hex", "(`:run NAME HEX` or `:run NAME packet …`)").replace("--ctx-hex", "--ctx").replace("--data-hex", "a packet")
        ),
        None => e.to_string(),
    })?;
    if time {
        say!(out, "retval={} duration_ns={}", r.retval, r.duration_ns);
    } else {
        say!(out, "retval={}", r.retval);
    }
    // What the kernel handed back: the context as the program (and the kernel) left it.
    if !r.ctx_out.is_empty() {
        say!(out, "ctx_out={}", crate::hex::spaced(&r.ctx_out, " "));
    }
    Ok(())
}

/// `:info NAME`.
pub fn info(s: &Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let [name] = args else {
        return Err("usage: :info NAME".into());
    };
    let l = loaded(s, name)?;
    let i = l.prog.info().map_err(|e| e.to_string())?;
    say!(out, "{name}: id {} type {} tag {}", i.id, l.prog_type, i.tag_hex());
    let origin = match (&l.asm, &s.program(name)?.object) {
        (Some(asm), _) => format!("{} typed, {} slots", asm.insns().len(), asm.slot_count()),
        (None, Some(object)) => format!("from object {object}"),
        (None, None) => "not typed here".to_owned(),
    };
    say!(out, "  instructions: {origin}; xlated {} bytes, jited {} bytes, verified {} insns", i.xlated_len, i.jited_len, i.verified_insns);
    say!(out, "  maps: {:?}", i.map_ids);
    let counting = match &s.stats {
        Ok(_) => "counted since the session's first load turned BPF_ENABLE_STATS on".to_owned(),
        Err(e) => format!("not counted: {e}"),
    };
    say!(out, "  runs: {} in {} ns, recursion misses {} ({counting})", i.stats.run_count, i.stats.run_time_ns, i.stats.recursion_misses);
    Ok(())
}
