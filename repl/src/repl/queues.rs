//! `:push`, `:pop`, `:peek`: a queue (FIFO) or stack (LIFO) map from the REPL, the user-space
//! end of what programs push and pop with `bpf_map_push_elem`/`bpf_map_pop_elem`.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bpfkit::maps::{MapType, UpdateFlags};

use super::render::{parse_bytes, value_text};
use super::session::{say, seconds, Outcome, Session};

fn queue_or_stack<'s>(s: &'s Session, name: &str) -> Result<&'s bpfkit::maps::Map, String> {
    let map = s.map(name)?;
    match map.map_type() {
        MapType::Queue | MapType::Stack => Ok(map),
        other => Err(format!("map {name} is a {other}; `:push`, `:pop` and `:peek` take a queue or stack map")),
    }
}

/// `:push MAP VALUE [force]`.
pub fn push(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let (name, value, force) = match args {
        [name, value] => (*name, *value, false),
        [name, value, "force"] => (*name, *value, true),
        _ => return Err("usage: :push MAP VALUE [force]".into()),
    };
    let map = queue_or_stack(s, name)?;
    let value = parse_bytes(value, "value")?;
    let flags = if force { UpdateFlags::Exist } else { UpdateFlags::Any };
    match map.push(&value, flags) {
        Ok(()) => say!(out, "pushed to {name}"),
        // E2BIG: the map holds max_entries values already.
        Err(e) if e.errno().map(|n| std::io::Error::from_raw_os_error(n).kind()) == Some(std::io::ErrorKind::ArgumentListTooLong) => {
            return Err(format!("map {name} is full ({} entries): `:pop` one, or `:push {name} VALUE force` to drop the {}", map.max_entries(), if map.map_type() == MapType::Queue { "oldest" } else { "bottom one" }).into())
        }
        Err(e) => return Err(e.to_string().into()),
    }
    Ok(())
}

/// `:pop MAP [SECS]`: the next value; with SECS, wait up to that long for one.
pub fn pop(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let (name, wait) = match args {
        [name] => (*name, Duration::ZERO),
        [name, secs] => (*name, seconds(secs)?),
        _ => return Err("usage: :pop MAP [SECS]".into()),
    };
    let map = queue_or_stack(s, name)?;
    let end = Instant::now() + wait;
    loop {
        if let Some(v) = map.pop().map_err(|e| e.to_string())? {
            say!(out, "{}", value_text(&v));
            return Ok(());
        }
        // Queue and stack maps have no notification: look again every 10 ms.
        if Instant::now() >= end || s.interrupted.load(Ordering::SeqCst) {
            say!(out, "{name} is empty");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `:peek MAP`: the next value without removing it.
pub fn peek(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let [name] = args else { return Err("usage: :peek MAP".into()) };
    match queue_or_stack(s, name)?.peek().map_err(|e| e.to_string())? {
        Some(v) => say!(out, "{}", value_text(&v)),
        None => say!(out, "{name} is empty"),
    }
    Ok(())
}
