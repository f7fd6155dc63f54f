//! The REPL's command table: every `:command`, its usage, what it does, an example, and the
//! handler that runs it; and [`execute`], which runs one input line.
//!
//! `:help` and `:help CMD` print from here, tab completion offers these names, and
//! [`execute`] finds a command here and calls its handler, so a command exists only with its
//! help. Handlers live in their group's module (`programs`, `maps`, `attach`, `watch`,
//! `objects`, `system`) and borrow a [`Session`], which knows nothing of them: adding a command
//! is its handler in one module plus its line here.

use std::io::Write;

use crate::error::CliError;
use super::session::{Outcome, Session};
use super::{attach, maps, objects, programs, queues, system, testing, watch};

/// What runs a command: the session, the words after the command name, the output.
pub type Handler = fn(&mut Session, &[&str], &mut dyn Write) -> Outcome;

/// One REPL command, as `:help` shows it, and its handler.
pub struct Command {
    /// The name without its `:`.
    pub name: &'static str,
    pub usage: &'static str,
    pub summary: &'static str,
    pub example: &'static str,
    pub run: Handler,
}

const fn cmd(name: &'static str, usage: &'static str, summary: &'static str, example: &'static str, run: Handler) -> Command {
    Command { name, usage, summary, example, run }
}

/// Every command, in the order `:help` lists them.
pub const COMMANDS: &[Command] = &[
    cmd("help", ":help [CMD]", "list the commands, or show one with an example", ":help load", help),
    cmd("prog", ":prog NAME | :prog list|show|dump …", "start (or switch to) the session program NAME; instructions typed next are added to it. `list`, `show ID`, `dump xlated ID` are `bpfkit prog` on the system's programs", ":prog counter", programs::prog),
    cmd("progs", ":progs [all]", "the session's programs: name, instructions, whether loaded; `all`: every program loaded in the kernel (`bpfkit prog list`)", ":progs all", programs::progs),
    cmd("list", ":list [NAME]", "a program as typed: session line, slot, encoding, disassembly", ":list counter", |s, a, o| programs::listing(s, a, o)),
    cmd("end", ":end", "end a block of instructions (a blank line does too) and assemble it", ":end", end),
    cmd("map", ":map create|get|set|del|dump|pin|open … | :map list|show …", "session maps: `create NAME TYPE KEY VALUE MAX` (a perf_event_array with MAX 0 gets one entry per CPU; KEY and VALUE are sizes in bytes, or types — u8…u64, s8…s64, char, TYPE[N] — which give the map BTF and typed dumps), `get NAME KEY`, `set NAME KEY VALUE`, `del NAME KEY`, `dump NAME`, `pin NAME PATH`, `open NAME PATH`. Keys and values are hex (`01000000`) or `u8:`/`u16:`/`u32:`/`u64:` numbers (`u32:1`); `$pid` is this process's id. `list`/`show ID` are `bpfkit map`", ":map create counts hash 4 8 16", maps::command),
    cmd("open", ":open NAME FILE.o [VAR=VALUE …]", "open a clang-built BPF object, set its globals (VAR=VALUE, parsed by the variable's BTF type: integers, true/false, enumerator names, strings for char arrays; `$pid` is this process's id), load it (CO-RE against this kernel) and add its programs as session programs NAME.PROG and its maps (global data too) as session maps NAME.MAP: `:attach NAME.PROG` with no kind attaches where its section says, and `:run`, `:info`, `:watch`, `:count`, `:map dump` work on them", ":open tgt tests/fixtures/cli/c01_target_tgid.o target_tgid=$pid", objects::open),
    cmd("maps", ":maps [all]", "the session's maps: name, type, key/value sizes, entries; `all`: every map in the kernel (`bpfkit map list`)", ":maps", maps::maps),
    cmd("load", ":load NAME TYPE [ATTACH_TYPE] | :load NAME tp_btf EVENT | :load NAME iter TARGET | :load NAME fentry|fexit|fmod_ret FUNCTION | :load NAME lsm HOOK", "load a session program as TYPE; TYPE is xdp, socket_filter, sched_cls, tracepoint, raw_tracepoint, kprobe, perf_event, syscall, …; tp_btf on a raw tracepoint, iter on an iterator target (task, bpf_map, …), fentry/fexit/fmod_ret on a kernel function and lsm on an LSM hook are found in the kernel's BTF (kernels without BPF trampolines refuse the last four, and the error says so); `map[NAME]` binds to session maps. A rejection shows the verifier's reason against the line you typed", ":load counter tracepoint", programs::load),
    cmd("log", ":log", "the whole verifier log of the last rejected load", ":log", programs::log),
    cmd("run", ":run NAME [HEX | packet udp|tcp SRC:PORT DST:PORT [payload=HEX]] [--ctx HEX] [--repeat N] [--time]", "test-run a loaded program (BPF_PROG_TEST_RUN); on packet bytes: 64 zero bytes by default, hex, or a built Ethernet/IPv4|IPv6/UDP|TCP packet; `--ctx HEX` passes the context struct (`struct __sk_buff`, `struct xdp_md`, a syscall program's argument block); prints retval (and duration_ns with --time), then `ctx_out=…`, the context as the program and kernel left it", ":run p packet udp 10.0.0.1:1234 10.0.0.2:53 payload=abcd", |s, a, o| programs::run(s, a, o)),
    cmd("case", ":case NAME [HEX | packet udp|tcp SRC:PORT DST:PORT [payload=HEX]] => RETVAL | :case NAME clear", "add a test case for program NAME: this input must make it return RETVAL (`:test` runs the cases)", ":case filter packet tcp 10.0.0.1:4000 10.0.0.2:80 => 1", testing::case),
    cmd("test", ":test NAME", "run NAME's cases (`:case`) through BPF_PROG_TEST_RUN on an instrumented copy of the program, then show each verdict and the coverage: blocks and branch directions, naming the lines no case ran", ":test filter", testing::test),
    cmd("info", ":info NAME", "a loaded program's kernel id, xlated and JIT sizes, verified instructions and run stats; the session turns BPF_ENABLE_STATS on at its first load, so every run after that (test runs, events) is counted", ":info counter", |s, a, o| programs::info(s, a, o)),
    cmd("attach", ":attach NAME [KIND …]  (no KIND: a program of an `:open`ed object, where its section says; KIND: tracepoint CAT/EVENT | raw_tp EVENT | tp_btf | fentry | fexit | fmod_ret | lsm | kprobe FUNC | kretprobe FUNC | uprobe BIN:SYM | uretprobe BIN:SYM | usdt BIN:PROVIDER:NAME [PID] | perf_event EVENT [HZ] [CPU] | iter [MAP] | xdp IFACE | tc IFACE ingress|egress | cls_bpf IFACE ingress|egress | cgroup PATH HOOK)", "attach a loaded program; the link lives until `:detach` or the end of the session. A program of an object (`:open`) attaches where its section names (tracepoint/…, raw_tp/…, tp_btf/…, kprobe/…, uprobe/BIN:SYM) with no KIND. tp_btf/fentry/fexit/fmod_ret/lsm attach where `:load` aimed them; usdt puts a uprobe (kprobe-type program) on every location of the probe, raising its semaphore in process PID, with the argument specs in the session map `usdt_specs`; perf_event takes a software event (cpu-clock, task-clock, page-faults, context-switches) sampled HZ times a second (1000) on CPU (0); iter creates the iterator link (over MAP's elements for map iterators) and prints what the program wrote; tc is a tcx link (a cls_bpf filter where the kernel has no tcx), cls_bpf a netlink filter on the clsact qdisc", ":attach counter tracepoint syscalls/sys_enter_getpid", attach::attach),
    cmd("links", ":links", "the session's attachments, by number", ":links", attach::links),
    cmd("detach", ":detach N", "drop link N (see `:links`)", ":detach 1", attach::detach),
    cmd("push", ":push MAP VALUE [force]", "push VALUE (hex or `u64:N`) onto a queue or stack map; a full map is an error unless `force`, which drops the oldest (queue) or bottom (stack) value to make room", ":push work u64:7", queues::push),
    cmd("pop", ":pop MAP [SECS]", "pop the next value of a queue (first in, first out) or stack (last in, first out) map; with SECS, wait up to that long for one (the kernel cannot signal a push: it looks every 10 ms)", ":pop work 2", queues::pop),
    cmd("peek", ":peek MAP", "the value `:pop` would return next, left in place", ":peek work", queues::peek),
    cmd("watch", ":watch MAP [SECS] [as {TYPE NAME; …} | as KERNEL_TYPE] | :watch MAP KEY [SECS]", "print the records of a ringbuf or perf_event_array map until Ctrl-C (or SECS seconds); on any other map, the value of KEY now and at each change (polled with backoff: the kernel has no notification for it). Records show as hex, or read as a struct — declared inline (members u8…u64, s8…s64, char, NAME[N], aligned as C aligns them) or a struct/union/typedef of the kernel's BTF (`as task_struct`). Perf records carry the kernel's padding to 8 bytes; a perf_event_array made with MAX 0 gets one entry per CPU, and its rings stay open for the session, so records wait for the next watch", ":watch events 5 as {u32 pid; u64 ts; char comm[16]}", watch::watch),
    cmd("count", ":count MAP SECS", "wait SECS seconds (Ctrl-C stops early), then print MAP's counters as numbers", ":count counts 1", |s, a, o| attach::count(s, a, o)),
    cmd("trigger", ":trigger getpid N | :trigger udp N", "make events from this process; `getpid`: call getpid(2) N times (fires syscalls/sys_enter_getpid), `udp`: send N UDP datagrams over loopback to a socket of its own (through lo's tc and XDP hooks) and say how many arrived", ":trigger getpid 10", |s, a, o| attach::trigger(s, a, o)),
    cmd("features", ":features [ARGS]", "what this kernel supports (`bpfkit features ARGS`)", ":features --helpers", |_, a, o| system::subcommand("features", a, o)),
    cmd("btf", ":btf TYPE… | :btf members TYPE | :btf path TYPE->member[->member…]", "the C declaration of kernel BTF types (`bpfkit btf dump TYPE`); `members`: a struct's layout, each member's offset, size, bitfield and declaration (`bpfkit btf members`); `path`: a chain through pointers resolved into CO-RE hops and the instructions that read it from a pointer in r6 (`bpfkit btf path`)", ":btf path task_struct->mm->arg_start", |_, a, o| system::btf(a, o)),
    cmd("helper", ":helper NAME|ID", "a helper's id, C prototype and the kernel release it appeared in", ":helper map_lookup_elem", |_, a, o| system::helper(a, o)),
    cmd("link", ":link list|show ID|detach ID", "bpf_links on the system (`bpfkit link …`)", ":link list", |_, a, o| system::subcommand("link", a, o)),
    cmd("quit", ":quit", "end the session: every link is detached, every map and program closed", ":quit", quit),
];

/// The entry for `name` (with or without its `:`), aliases included: the dispatcher looks
/// every command up here first.
pub fn find(name: &str) -> Option<&'static Command> {
    let name = name.trim_start_matches(':');
    let name = match name {
        "h" | "?" => "help",
        "exit" | "q" => "quit",
        other => other,
    };
    COMMANDS.iter().find(|c| c.name == name)
}

/// `:help` without arguments.
pub fn overview() -> String {
    let mut out = String::from(
        "Type instructions in either dialect (`mov r0, 0` or `r0 = 0`), one per line: each is \
         assembled at once and shown as bytes and text. A label (`out:`) or a jump to a label not \
         yet defined starts a block, which ends with a blank line or `:end`.\n\nCommands:\n",
    );
    let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in COMMANDS {
        out.push_str(&format!("  :{:<width$}  {}\n", c.name, headline(c.summary)));
    }
    out.push_str("`:help CMD` shows a command's usage and an example.\n");
    out
}

/// The summary up to its first clause break, for the overview.
fn headline(summary: &str) -> &str {
    let end = [". ", "; ", ": `", " (`"]
        .iter()
        .filter_map(|sep| summary.find(sep))
        .min()
        .unwrap_or(summary.len());
    &summary[..end]
}

/// `:help CMD`.
pub fn detail(c: &Command) -> String {
    format!(
        "usage: {}\n{}\nexample: {}\n",
        c.usage, c.summary, c.example
    )
}

/// Run one input line: a `:command` through the table (ending an open block first, except
/// `:end` itself), a blank line ends a block, anything else is an instruction.
pub fn execute(s: &mut Session, line: &str, out: &mut dyn Write) -> Outcome {
    s.begin_line();
    let text = line.trim();
    if text.is_empty() {
        return s.end_block(out);
    }
    let Some(cmd) = text.strip_prefix(':') else {
        return s.instruction(line.trim_end(), out);
    };
    let words: Vec<String> = cmd.split_whitespace().map(|w| s.expand(w)).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let Some((&typed, args)) = words.split_first() else {
        return Err("a command follows `:` (`:help` lists them)".into());
    };
    let Some(entry) = find(typed) else {
        return Err(crate::error::CliError::from(format!("unknown command `:{typed}` (`:help` lists the commands)")));
    };
    if entry.name != "end" {
        s.end_block(out)?;
    }
    (entry.run)(s, args, out)
}

/// `:help [CMD]`.
fn help(_: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    match args.first() {
        None => write!(out, "{}", overview()).map_err(|e| CliError::Message(format!("cannot write output: {e}"))),
        Some(c) => match find(c) {
            Some(c) => write!(out, "{}", detail(c)).map_err(|e| CliError::Message(format!("cannot write output: {e}"))),
            None => Err(format!("no command `:{}` (`:help` lists them)", c.trim_start_matches(':')).into()),
        },
    }
}

/// `:end`: assemble the block being typed.
fn end(s: &mut Session, _: &[&str], out: &mut dyn Write) -> Outcome {
    if !s.in_block() {
        return Err("no block to end".into());
    }
    s.end_block(out)
}

/// `:quit`.
fn quit(s: &mut Session, _: &[&str], _: &mut dyn Write) -> Outcome {
    s.quit = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Every command of the table reaches its handler: run bare, each gives its own answer
    /// (mostly a usage line), never "unknown".
    #[test]
    fn every_command_in_the_table_runs_its_handler() {
        for c in COMMANDS {
            let mut s = Session::new(false, Arc::new(AtomicBool::new(false)));
            let mut out = Vec::new();
            let res = execute(&mut s, &format!(":{}", c.name), &mut out);
            if let Err(e) = &res {
                assert!(!e.to_string().contains("unknown command"), ":{}: {e}", c.name);
            }
            assert!(!c.summary.is_empty() && c.example.starts_with(':') && c.usage.starts_with(&format!(":{}", c.name)), ":{}", c.name);
        }
        // Aliases go through the same table; anything else is unknown.
        for alias in ["h", "?", "exit", "q"] {
            assert!(find(alias).is_some(), ":{alias}");
        }
        let mut s = Session::new(false, Arc::new(AtomicBool::new(false)));
        let err = execute(&mut s, ":frobnicate", &mut Vec::new()).unwrap_err();
        assert_eq!(err.to_string(), "unknown command `:frobnicate` (`:help` lists the commands)");
        execute(&mut s, ":q", &mut Vec::new()).unwrap();
        assert!(s.quit);
    }
}
