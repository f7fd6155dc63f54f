//! `:watch`: stream the records of a ring buffer or a perf event array until Ctrl-C (or a
//! number of seconds), each as hex or read through a layout (`as {u32 pid; char comm[16]}`,
//! `as task_struct`).
//!
//! On any other map, `:watch MAP KEY [SECS]` prints the key's value each time it changes
//! (`bpfkit::refs::BytesWatch`: the kernel has no notification for that, so it polls with
//! backoff). A watch attaches nothing: it only reads; the session's perf buffers stay open
//! after it so records keep arriving for the next one.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bpfkit::events::{PerfBuffer, RingBuf};
use bpfkit::maps::MapType;
use bpfkit::refs::{BytesWatch, RefError};

use super::layout::Layout;
use super::render::{parse_bytes, value_text};
use super::session::{say, seconds, Outcome, Session, PERF_PAGES};

pub const USAGE: &str = "usage: :watch MAP [SECS] [as {TYPE NAME; …} | as KERNEL_TYPE] (MAP a ringbuf or perf_event_array) | :watch MAP KEY [SECS] (any other map: the key's value at each change)";

/// `:watch MAP [SECS] [as LAYOUT]`.
pub fn watch(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let (head, layout) = match args.iter().position(|w| *w == "as") {
        Some(i) if i + 1 < args.len() => (&args[..i], Some(Layout::parse(&args[i + 1..].join(" "))?)),
        Some(_) => return Err(crate::error::CliError::from(format!("`as` takes a layout\n{USAGE}"))),
        None => (args, None),
    };
    if let [name, key, rest @ ..] = head {
        let map_type = s.map(name)?.map_type();
        if !matches!(map_type, MapType::RingBuf | MapType::PerfEventArray) && layout.is_none() {
            let limit = match rest {
                [] => None,
                [secs] => Some(seconds(secs)?),
                _ => return Err(USAGE.into()),
            };
            return watch_key(s, name, key, limit, out);
        }
    }
    let (name, limit) = match head {
        [name] => (*name, None),
        [name, secs] => (*name, Some(seconds(secs)?)),
        _ => return Err(USAGE.into()),
    };
    let map_type = s.map(name)?.map_type();
    let show = |rec: &[u8]| match &layout {
        Some(l) => l.format(rec),
        None => crate::hex::spaced(rec, " "),
    };
    let as_what = layout.as_ref().map(|l| format!(" as {}", l.text)).unwrap_or_default();
    let until = limit.map(|d| format!(" for {}s", d.as_secs_f64())).unwrap_or_default();
    let interrupted = s.interrupted.clone();
    let stop = || interrupted.load(Ordering::SeqCst);
    let end = limit.map(|d| Instant::now() + d);
    let running = || !stop() && end.is_none_or(|e| Instant::now() < e);
    let mut count = 0usize;
    let mut failed: Option<String> = None;
    const TICK: Duration = Duration::from_millis(100);
    let lost = match map_type {
        MapType::RingBuf => {
            let mut ring = RingBuf::new(s.map(name)?).map_err(|e| e.to_string())?;
            say!(out, "watching {name}{as_what}{until} (Ctrl-C stops)");
            while running() && failed.is_none() {
                ring.poll(Some(TICK), |rec| {
                    count += 1;
                    emit(out, &format!("record {count}: {}", show(rec)), &mut failed);
                })
                .map_err(|e| e.to_string())?;
            }
            0
        }
        MapType::PerfEventArray => {
            let m = s.maps.iter_mut().find(|m| m.name == name).ok_or("no such map")?;
            if m.perf.is_none() {
                m.perf = Some(PerfBuffer::new(&m.map, PERF_PAGES).map_err(|e| e.to_string())?);
            }
            let perf = m.perf.as_mut().ok_or("no perf buffer")?;
            say!(out, "watching {name}{as_what}{until} (Ctrl-C stops)");
            let before = perf.lost();
            while running() && failed.is_none() {
                perf.poll(Some(TICK), |cpu, rec| {
                    count += 1;
                    emit(out, &format!("record {count} (cpu {cpu}): {}", show(rec)), &mut failed);
                })
                .map_err(|e| e.to_string())?;
            }
            perf.lost() - before
        }
        other => return Err(crate::error::CliError::from(format!("map {name} is a {other}; `:watch` reads a ringbuf or a perf_event_array"))),
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    let why = if stop() { "interrupted" } else { "time is up" };
    let lost = if lost > 0 { format!(", {lost} lost (the rings were full)") } else { String::new() };
    say!(out, "{count} record{}{lost} ({why})", if count == 1 { "" } else { "s" });
    Ok(())
}

/// `:watch MAP KEY [SECS]`: the value now, then each change, until Ctrl-C or SECS.
fn watch_key(s: &mut Session, name: &str, key: &str, limit: Option<Duration>, out: &mut dyn Write) -> Outcome {
    let key = parse_bytes(key, "key")?;
    let w = BytesWatch::new(s.map(name)?, &key).map_err(|e| e.to_string())?;
    let shown = |v: &Option<Vec<u8>>| v.as_deref().map_or_else(|| "(absent)".to_string(), value_text);
    let label = crate::hex::spaced(&key, " ");
    let mut current = w.get().map_err(|e| e.to_string())?;
    let until = limit.map(|d| format!(" for {}s", d.as_secs_f64())).unwrap_or_default();
    say!(out, "watching {name}[{label}]{until} (Ctrl-C stops): {}", shown(&current));
    let end = limit.map(|d| Instant::now() + d);
    let mut changes = 0usize;
    let interrupted = s.interrupted.clone();
    // Short waits, so that Ctrl-C and the deadline are noticed within 100 ms.
    while !interrupted.load(Ordering::SeqCst) && end.is_none_or(|e| Instant::now() < e) {
        match w.wait_change(current.as_deref(), Some(Duration::from_millis(100))) {
            Ok(now) => {
                changes += 1;
                say!(out, "{name}[{label}]: {} -> {}", shown(&current), shown(&now));
                current = now;
            }
            Err(RefError::Timeout { .. }) => {}
            Err(e) => return Err(e.to_string().into()),
        }
    }
    say!(out, "{changes} change{} ({})", if changes == 1 { "" } else { "s" }, if interrupted.load(Ordering::SeqCst) { "interrupted" } else { "time is up" });
    Ok(())
}

/// Write one record's line; the first write failure is kept and ends the watch.
fn emit(out: &mut dyn Write, line: &str, failed: &mut Option<String>) {
    if failed.is_none() {
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            *failed = Some(format!("cannot write output: {e}"));
        }
    }
}
