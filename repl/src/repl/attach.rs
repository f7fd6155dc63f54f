//! The REPL's attach commands: `:attach` (tracepoints, raw tracepoints, tp_btf and the
//! BTF-attached fentry/fexit/fmod_ret/lsm, kprobes, uprobes, USDT probes, perf events, iterators, XDP, tc,
//! cgroups), `:links`, `:detach`, `:count` (counters after N seconds) and `:trigger` (make
//! events happen: getpid calls, UDP datagrams over loopback).
//!
//! Every attachment is a [`SessionLink`] owned by the session: dropping it (on `:detach` or
//! when the session ends, however it ends) detaches.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use bpfkit::attach::iter::{self, IterScope};
use bpfkit::attach::kprobe::KprobeTarget;
use bpfkit::attach::uprobe::UprobeTarget;
use bpfkit::attach::usdt::{self, UsdtTarget};
use bpfkit::attach::{ifindex, Link, PerfEventTarget, TcDirection, TcOptions, XdpMode};
use bpfkit::os::perf::{PERF_COUNT_SW_CONTEXT_SWITCHES, PERF_COUNT_SW_CPU_CLOCK, PERF_COUNT_SW_PAGE_FAULTS, PERF_COUNT_SW_TASK_CLOCK};
use bpfkit::prog::AttachType;

use super::render::number;
use crate::error::CliError;
use super::session::{say, seconds, Outcome, Session, SessionLink, SessionMap};

const USAGE: &str = "usage: :attach NAME (a program of an :open object) | :attach NAME tracepoint CAT/EVENT | raw_tp EVENT | tp_btf | fentry | fexit | fmod_ret | lsm | kprobe FUNC | kretprobe FUNC | uprobe BIN:SYM | uretprobe BIN:SYM | usdt BIN:PROVIDER:NAME [PID] | perf_event EVENT [HZ] [CPU] | iter [MAP] | xdp IFACE | tc IFACE ingress|egress | cls_bpf IFACE ingress|egress | cgroup PATH HOOK";

/// `:attach NAME KIND ARGS…`.
pub fn attach(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    // A program of an object (`:open`) with no KIND: where its section says.
    if let [name] = args {
        let held = super::objects::attach_by_section(s, name)?;
        let what = held.describe().to_owned();
        return push_link(s, name, what, held, None, out);
    }
    let [name, kind, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    // USDT argument specs go into the session map `usdt_specs`, made at the first USDT attach
    // (a program reading arguments binds it by that name).
    if *kind == "usdt" && s.map(usdt::SPEC_MAP_NAME).is_err() {
        let map = usdt::spec_map(USDT_SPECS).map_err(|e| e.to_string())?;
        say!(
            out,
            "map {}: the argument specs of USDT probes",
            usdt::SPEC_MAP_NAME
        );
        s.maps.push(SessionMap {
            name: map.name().to_owned(),
            map,
            types: None,
            perf: None,
        });
    }
    let entry = s.program(name)?;
    let prog = &entry
        .loaded
        .as_ref()
        .ok_or_else(|| format!("program {name} is not loaded (`:load {name} TYPE` first)"))?
        .prog;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut shown = None;
    let held = match (*kind, rest) {
        ("tracepoint" | "tp", [event]) => {
            let (cat, ev) = event
                .split_once('/')
                .ok_or_else(|| format!("`{event}`: a tracepoint is CATEGORY/EVENT (syscalls/sys_enter_getpid)"))?;
            prog.attach_tracepoint(cat, ev).map_err(|e| err(&e))?
        }
        // The target was chosen at `:load` (`:load p fentry do_unlinkat`).
        ("tp_btf" | "fentry" | "fexit" | "fmod_ret" | "lsm", []) => prog.attach_btf().map_err(|e| err(&e))?,
        ("raw_tp" | "raw_tracepoint", [event]) => prog.attach_raw_tracepoint(event).map_err(|e| err(&e))?,
        ("kprobe" | "kretprobe", [func]) => {
            let mut t = KprobeTarget::function(*func);
            if *kind == "kretprobe" {
                t = t.retprobe();
            }
            prog.attach_kprobe(&t).map_err(|e| err(&e))?
        }
        ("uprobe" | "uretprobe", [target]) => {
            let (bin, sym) = target
                .split_once(':')
                .ok_or_else(|| format!("`{target}`: a uprobe is BINARY:SYMBOL (/bin/bash:readline)"))?;
            let mut t = UprobeTarget::symbol(bin, sym);
            if *kind == "uretprobe" {
                t = t.retprobe();
            }
            prog.attach_uprobe(&t).map_err(|e| err(&e))?
        }
        ("usdt", [target, pid @ ..]) if pid.len() <= 1 => {
            let mut parts = target.rsplitn(3, ':');
            let (Some(probe), Some(provider), Some(bin)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(crate::error::CliError::from(format!("`{target}`: a USDT probe is BINARY:PROVIDER:NAME (/usr/lib/x86_64-linux-gnu/libc.so.6:libc:setjmp)")));
            };
            let mut t = UsdtTarget::new(bin, provider, probe);
            if let Some(pid) = pid.first() {
                t = t.pid(
                    pid.parse()
                        .map_err(|_| format!("`{pid}` is not a process id"))?,
                );
            }
            prog.attach_usdt(&t, s.map(usdt::SPEC_MAP_NAME)?).map_err(|e| err(&e))?
        }
        ("perf_event", [event, more @ ..]) if more.len() <= 2 => {
            let config = software_event(event)?;
            let hz = more.first().map(|h| h.parse::<u64>().ok().filter(|h| *h > 0).ok_or_else(|| format!("`{h}` is not a sampling frequency in Hz"))).transpose()?;
            let cpu = more.get(1).map(|c| c.parse::<i32>().ok().filter(|c| *c >= 0).ok_or_else(|| format!("`{c}` is not a CPU number"))).transpose()?;
            let target = PerfEventTarget::software_freq(config, hz.unwrap_or(1000), cpu.unwrap_or(0));
            prog.attach_perf_event(&target).map_err(|e| err(&e))?
        }
        ("iter", scope @ ([] | [_])) => {
            let map = scope.first().map(|m| s.map(m)).transpose()?;
            let scope = match map {
                Some(m) => IterScope::Map(m.as_fd()),
                None => IterScope::All,
            };
            let link = prog.attach_iter(&scope).map_err(|e| err(&e))?;
            shown = Some(iter::read_to_end(&link).map_err(|e| err(&e))?);
            link
        }
        ("xdp", [iface]) => {
            let idx = ifindex(iface).map_err(|e| err(&e))?;
            prog.attach_xdp(idx, XdpMode::Auto).map_err(|e| err(&e))?
        }
        ("tc" | "cls_bpf", [iface, dir]) => {
            let idx = ifindex(iface).map_err(|e| err(&e))?;
            let dir = match *dir {
                "ingress" => TcDirection::Ingress,
                "egress" => TcDirection::Egress,
                other => return Err(crate::error::CliError::from(format!("`{other}`: tc attaches on ingress or egress"))),
            };
            let opts = if *kind == "tc" { TcOptions::new() } else { TcOptions::new().cls_bpf() };
            prog.attach_tc_with(idx, dir, &opts).map_err(|e| err(&e))?
        }
        ("cgroup", [path, hook]) => {
            let hook: AttachType = hook.parse()?;
            let dir = std::fs::File::open(path).map_err(|e| format!("cgroup {path}: {e}"))?;
            prog.attach_cgroup(&dir, hook).map_err(|e| err(&e))?
        }
        _ => return Err(USAGE.into()),
    };
    let what = format!("{kind} {}", rest.join(" ")).trim_end().to_owned();
    push_link(s, name, what, held, shown, out)
}

/// Number a new attachment, say so, and keep it in the session.
fn push_link(s: &mut Session, name: &str, what: String, held: Link, shown: Option<Vec<u8>>, out: &mut dyn Write) -> Outcome {
    let number = s.next_link;
    s.next_link += 1;
    say!(out, "link {number}: {name} → {what}{}", kernel_id(s, Some(&held)));
    if let Some(bytes) = shown {
        show_iter_output(&bytes, out)?;
    }
    s.links.push(SessionLink { number, prog: name.to_owned(), what, link: held });
    Ok(())
}

/// `cpu-clock`, `task-clock`, `page-faults`, `context-switches` → `PERF_COUNT_SW_*`.
fn software_event(name: &str) -> Result<u64, String> {
    Ok(match name {
        "cpu-clock" => PERF_COUNT_SW_CPU_CLOCK,
        "task-clock" => PERF_COUNT_SW_TASK_CLOCK,
        "page-faults" => PERF_COUNT_SW_PAGE_FAULTS,
        "context-switches" => PERF_COUNT_SW_CONTEXT_SWITCHES,
        other => return Err(format!("`{other}`: the software perf events are cpu-clock, task-clock, page-faults, context-switches")),
    })
}

/// What an iterator wrote: as text when it is text, else as hex, 16 bytes a line.
fn show_iter_output(bytes: &[u8], out: &mut dyn Write) -> Outcome {
    say!(out, "iterator output, {} bytes:", bytes.len());
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().all(|c| !c.is_control() || c == '\n' || c == '\t') => {
            write!(out, "{text}").map_err(|e| CliError::Message(format!("cannot write output: {e}")))?;
            if !text.is_empty() && !text.ends_with('\n') {
                say!(out, "");
            }
        }
        _ => {
            for (i, row) in bytes.chunks(16).enumerate() {
                say!(out, "{:>6x}: {}", i * 16, crate::hex::spaced(row, " "));
            }
        }
    }
    Ok(())
}

/// ` (link id N)` in interactive sessions, when the attachment is a bpf_link.
fn kernel_id(s: &Session, link: Option<&Link>) -> String {
    match link {
        Some(link) if s.interactive => link
            .info()
            .map(|i| format!(" (link id {})", i.id))
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Spec entries of the session's USDT map: one per probe location attached.
const USDT_SPECS: u32 = 256;

/// `:links`.
pub fn links(s: &mut Session, _: &[&str], out: &mut dyn Write) -> Outcome {
    if s.links.is_empty() {
        say!(out, "no links");
    }
    for l in &s.links {
        say!(out, "{}: {} → {}{}", l.number, l.prog, l.what, kernel_id(s, Some(&l.link)));
    }
    Ok(())
}

/// `:detach N`.
pub fn detach(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let [n] = args else {
        return Err("usage: :detach N (`:links` shows the numbers)".into());
    };
    let n: usize = n.parse().map_err(|_| format!("`{n}` is not a link number (`:links` shows them)"))?;
    let i = s.links.iter().position(|l| l.number == n).ok_or_else(|| format!("no link {n} (`:links` shows them)"))?;
    let l = s.links.remove(i);
    say!(out, "detached link {n}: {} → {}", l.prog, l.what);
    Ok(())
}

/// `:count MAP SECS`: every element's value as a number after waiting.
pub fn count(s: &Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let [name, secs] = args else {
        return Err("usage: :count MAP SECS".into());
    };
    let map = s.map(name)?;
    if !s.wait(seconds(secs)?) {
        say!(out, "interrupted: counts so far");
    }
    let mut n = 0;
    for key in map.keys() {
        let key = key.map_err(|e| e.to_string())?;
        let total: Option<u64> = if map.map_type().is_per_cpu() {
            map.lookup_percpu(&key)
                .map_err(|e| e.to_string())?
                .map(|vs| vs.iter().filter_map(|v| number(v)).sum())
        } else {
            map.lookup(&key).map_err(|e| e.to_string())?.and_then(|v| number(&v))
        };
        match total {
            Some(t) => say!(out, "{name}[{}] = {t}", crate::hex::spaced(&key, " ")),
            None => return Err(crate::error::CliError::from(format!("map {name}: values of {} bytes are not counters (4 or 8 bytes)", map.value_size()))),
        }
        n += 1;
    }
    if n == 0 {
        say!(out, "{name} is empty");
    }
    Ok(())
}

/// `:trigger getpid N`.
pub fn trigger(s: &Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let (what, n) = match args {
        [what @ ("getpid" | "udp"), n] => (*what, *n),
        _ => return Err("usage: :trigger getpid N | :trigger udp N".into()),
    };
    let n: u64 = n.parse().map_err(|_| format!("`{n}` is not a count"))?;
    if what == "udp" {
        return udp(s, n, out);
    }
    for _ in 0..n {
        if s.was_interrupted() {
            break;
        }
        // glibc does not cache getpid(2): each call is a syscall.
        std::hint::black_box(std::process::id());
    }
    say!(out, "getpid called {n} times");
    Ok(())
}

/// `:trigger udp N`: N datagrams from one loopback socket to another of this process (which
/// receives them, so no ICMP error comes back).
fn udp(s: &Session, n: u64, out: &mut dyn Write) -> Outcome {
    use std::net::UdpSocket;
    fn e(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
        move |err| format!("{what}: {err}")
    }
    let rx = UdpSocket::bind("127.0.0.1:0").map_err(e("binding a UDP socket on 127.0.0.1"))?;
    let to = rx.local_addr().map_err(e("reading the socket's address"))?;
    let tx = UdpSocket::bind("127.0.0.1:0").map_err(e("binding a UDP socket on 127.0.0.1"))?;
    rx.set_read_timeout(Some(Duration::from_secs(1))).map_err(e("setting a read timeout"))?;
    let mut buf = [0u8; 64];
    let mut received = 0u64;
    for i in 0..n {
        if s.was_interrupted() {
            break;
        }
        tx.send_to(&i.to_le_bytes(), to).map_err(e(&format!("sending to {to}")))?;
        // Wait for each one: a datagram dropped on the way (a tc or XDP verdict) is reported.
        if rx.recv(&mut buf).is_ok() {
            received += 1;
        }
    }
    say!(out, "{n} UDP datagrams sent over loopback, {received} received");
    Ok(())
}
