//! The REPL's map commands: session maps created by type and sizes (or key and value types,
//! which gives the map BTF and its dumps typed values), read and written with hex or
//! numbers, dumped (as `bpfkit map dump` does), pinned and opened from pins; the system's
//! maps through `bpfkit map list|show|dump`.

use std::io::Write;

use bpfkit::core_btf::{Btf, BtfBuilder, TypeId};
use bpfkit::maps::{Map, MapSpec, UpdateFlags};

use super::render::{parse_bytes, value_text};
use crate::error::CliError;
use super::session::{say, MapTypes, Outcome, Session, SessionMap};
use super::system;
use crate::commands::map::dump;
use crate::commands::run::parse_map_decl;

/// `create NAME TYPE KEY VALUE MAX` where KEY and VALUE are types: the map gets their BTF.
fn create_typed(name: &str, t: &str, key: &str, value: &str, max: &str) -> Result<SessionMap, String> {
    let mut b = BtfBuilder::new();
    let (key_id, key_size) = super::layout::add_type(&mut b, key)?;
    let (value_id, value_size) = super::layout::add_type(&mut b, value)?;
    let spec = parse_map_decl(&format!("{name}:{t}:{key_size}:{value_size}:{max}"))?;
    let loaded = b.load().map_err(|e| format!("loading the key and value types: {e}"))?;
    let btf = Btf::from_bytes(b.encode()).map_err(|e| e.to_string())?;
    let spec: MapSpec = spec.btf(loaded.into_fd(), key_id.0, value_id.0).map_err(|e| e.to_string())?;
    let map = Map::create(&spec).map_err(|e| e.to_string())?;
    SessionMap::new(map, Some(MapTypes { btf, key: key_id, value: value_id }))
}

/// `:maps [all]`.
pub fn maps(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    match args {
        ["all"] => system::subcommand("map", &["list"], out),
        [] => list_session(s, out),
        _ => Err("usage: :maps [all]".into()),
    }
}

/// `:maps`.
fn list_session(s: &Session, out: &mut dyn Write) -> Outcome {
    if s.maps.is_empty() {
        say!(out, "no maps yet (`:map create NAME TYPE KEY VALUE MAX`)");
    }
    for entry in &s.maps {
        let m = &entry.map;
        let id = match m.info() {
            Ok(info) if s.interactive => format!(" (id {})", info.id),
            _ => String::new(),
        };
        say!(out, "{}: {} key {} value {} max {}{id}", entry.name, m.map_type(), m.key_size(), m.value_size(), m.max_entries());
    }
    Ok(())
}

fn check_len(bytes: &[u8], want: u32, what: &str, map: &Map) -> Outcome {
    if bytes.len() != want as usize {
        return Err(crate::error::CliError::from(format!(
            "{what} is {} bytes; map {} takes {want}-byte {what}s",
            bytes.len(),
            map.name()
        )));
    }
    Ok(())
}

/// `:map …`.
pub fn command(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    match args {
        ["create", name, t, key, value, max] => {
            if s.map(name).is_ok() {
                return Err(crate::error::CliError::from(format!("map `{name}` already exists in this session")));
            }
            let sized = key.parse::<u32>().is_ok() && value.parse::<u32>().is_ok();
            // A perf event array of 0 entries gets one per possible CPU.
            let cpus;
            let max = match (*t, *max) {
                ("perf_event_array", "0") => {
                    cpus = bpfkit::os::possible_cpus().map_err(|e| format!("counting the CPUs: {e}"))?.to_string();
                    cpus.as_str()
                }
                _ => *max,
            };
            let m = if sized {
                let spec = parse_map_decl(&[*name, t, key, value, max].join(":"))?;
                SessionMap::new(Map::create(&spec).map_err(|e| e.to_string())?, None)?
            } else {
                create_typed(name, t, key, value, max)?
            };
            let map = &m.map;
            let typed = if m.types.is_some() { format!(" ({key} → {value})") } else { String::new() };
            say!(out, "map {name}: {} key {} value {} max {}{typed}", map.map_type(), map.key_size(), map.value_size(), map.max_entries());
            s.maps.push(m);
            Ok(())
        }
        ["get", name, key] => {
            let map = s.map(name)?;
            let key = parse_bytes(key, "key")?;
            check_len(&key, map.key_size(), "key", map)?;
            if map.map_type().is_per_cpu() {
                let values = map.lookup_percpu(&key).map_err(|e| e.to_string())?.ok_or("no such key")?;
                for (cpu, v) in values.iter().enumerate() {
                    say!(out, "cpu {cpu}: {}", value_text(v));
                }
                return Ok(());
            }
            let types = s.maps.iter().find(|m| m.name == *name).and_then(|m| m.types.as_ref());
            match map.lookup(&key).map_err(|e| e.to_string())? {
                Some(v) => match types {
                    Some(t) => say!(out, "{}", t.element(&key, &v)),
                    None => say!(out, "{}", value_text(&v)),
                },
                None => return Err(crate::error::CliError::from(format!("map {name} has no element with key {}", crate::hex::spaced(&key, " ")))),
            }
            Ok(())
        }
        ["set", name, key, value] => {
            let map = s.map(name)?;
            let (key, value) = (parse_bytes(key, "key")?, parse_bytes(value, "value")?);
            check_len(&key, map.key_size(), "key", map)?;
            check_len(&value, map.value_size(), "value", map)?;
            map.update(&key, &value, UpdateFlags::Any).map_err(|e| e.to_string())?;
            // The value is not echoed: it may hold `$pid`, and scripts' transcripts stay the same.
            say!(out, "{name}[{}] updated", crate::hex::spaced(&key, " "));
            Ok(())
        }
        ["del", name, key] => {
            let map = s.map(name)?;
            let key = parse_bytes(key, "key")?;
            check_len(&key, map.key_size(), "key", map)?;
            if map.delete(&key).map_err(|e| e.to_string())? {
                say!(out, "deleted");
            } else {
                say!(out, "no such key");
            }
            Ok(())
        }
        ["dump", name] if s.map(name).is_ok() => {
            let m = s.maps.iter().find(|m| m.name == *name).ok_or("no such map")?;
            if let (Some(types), false) = (&m.types, m.map.map_type().is_per_cpu()) {
                return typed_dump(&m.map, types, out);
            }
            let text = dump(&m.map).map_err(|e| e.to_string())?;
            write!(out, "{text}").map_err(|e| CliError::Message(format!("cannot write output: {e}")))
        }
        ["pin", name, path] => {
            s.map(name)?.pin(path).map_err(|e| e.to_string())?;
            say!(out, "map {name} pinned at {path}");
            Ok(())
        }
        ["open", name, path] => {
            if s.map(name).is_ok() {
                return Err(crate::error::CliError::from(format!("map `{name}` already exists in this session")));
            }
            let map = Map::from_pin(path).map_err(|e| e.to_string())?;
            if map.name() != *name {
                return Err(crate::error::CliError::from(format!(
                    "the map pinned at {path} is named `{}` in the kernel; programs bind maps by that name: `:map open {} {path}`",
                    map.name(),
                    map.name()
                )));
            }
            // A map made with key and value types keeps them in the kernel: read them back.
            let info = map.info().map_err(|e| e.to_string())?;
            let types = if info.btf_id != 0 && info.btf_key_type_id != 0 && info.btf_value_type_id != 0 {
                let btf = Btf::from_kernel_id(info.btf_id).map_err(|e| format!("map {name}: reading its BTF: {e}"))?;
                Some(MapTypes { btf, key: TypeId(info.btf_key_type_id), value: TypeId(info.btf_value_type_id) })
            } else {
                None
            };
            let typed = if types.is_some() { ", typed by its BTF" } else { "" };
            say!(out, "map {name}: {} key {} value {} max {} (from {path}{typed})", map.map_type(), map.key_size(), map.value_size(), map.max_entries());
            s.maps.push(SessionMap { name: map.name().to_owned(), map, types, perf: None });
            Ok(())
        }
        [sub, ..] if matches!(*sub, "list" | "show" | "dump") => system::subcommand("map", args, out),
        _ => Err("usage: :map create NAME TYPE KEY VALUE MAX | get NAME KEY | set NAME KEY VALUE | del NAME KEY | dump NAME | pin NAME PATH | open NAME PATH | list".into()),
    }
}

/// Every element as `KEY: VALUE`, typed by the map's BTF.
fn typed_dump(map: &Map, types: &MapTypes, out: &mut dyn Write) -> Outcome {
    let mut n = 0usize;
    for key in map.keys() {
        let key = key.map_err(|e| e.to_string())?;
        if let Some(value) = map.lookup(&key).map_err(|e| e.to_string())? {
            say!(out, "{}", types.element(&key, &value));
            n += 1;
        }
    }
    say!(out, "{n} element{}", if n == 1 { "" } else { "s" });
    Ok(())
}
