//! `bpfkit map`: the maps in the kernel — list them, show one, dump its elements.
//!
//! A dump prints every element as hex bytes, one per line (`key: 01 00 00 00  value: …`),
//! each CPU's value on its own line for per-CPU maps, and the count at the end. Maps user
//! space cannot enumerate (ring buffers, perf event arrays, local storage, bloom filters,
//! arenas) are refused with the reason, naming the map.

use std::fmt::Write as _;
use std::io::Write;

use bpfkit::maps::{Map, MapError, MapInfo, MapType};

use super::prog::{is_not_found, name_cell, open_pinned, table, Target};
use crate::error::CliError;
use crate::io::write_output;

/// The arguments of `bpfkit map` (its help text is on [`super::Command::Map`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: MapCommand,
}

/// What `bpfkit map` does.
#[derive(Debug, clap::Subcommand)]
pub enum MapCommand {
    /// One line per map in the kernel, by id:
    /// `ID TYPE NAME key K value V max M flags 0xF`.
    List,
    /// The `list` line of one map.
    Show {
        /// A map id, or the path it is pinned at on a bpffs.
        #[arg(value_name = "ID|PATH")]
        target: Target,
    },
    /// Print every element as hex: `key: HEX  value: HEX` (per-CPU maps: one
    /// `value (cpu N): HEX` line per CPU), then `N elements`.
    ///
    /// Queues and stacks show only their head (reading further would remove elements).
    Dump {
        /// A map id, or the path it is pinned at on a bpffs.
        #[arg(value_name = "ID|PATH")]
        target: Target,
    },
}

/// Why user space cannot list the elements of `map`, if it cannot.
fn undumpable(map: &Map) -> Option<&'static str> {
    Some(match map.map_type() {
        MapType::RingBuf | MapType::UserRingBuf => {
            "a ring buffer has no elements to dump: records are read from its memory mapping"
        }
        MapType::PerfEventArray | MapType::CgroupArray | MapType::Xskmap => {
            "its values are fds (perf events, cgroups, XDP sockets), which the kernel does not return to user space"
        }
        MapType::Sockmap | MapType::Sockhash | MapType::ReuseportSockarray if map.value_size() != 8 => {
            "its values are socket fds; the kernel returns socket cookies instead only when the value size is 8"
        }
        MapType::BloomFilter => "a bloom filter cannot list its values, only say whether it may contain one",
        MapType::Arena => "an arena is memory, read through its memory mapping",
        t if t.is_local_storage() => {
            "its keys are file descriptors (socket, inode, task, cgroup): its elements cannot be enumerated"
        }
        _ => return None,
    })
}

/// The dump of `map`'s elements (see the module doc), ending with the count line.
pub fn dump(map: &Map) -> Result<String, CliError> {
    let map_type = map.map_type();
    if let Some(reason) = undumpable(map) {
        return Err(CliError::Map(MapError::Unsupported {
            map: map.name().to_owned(),
            map_type: map_type.to_string(),
            message: format!("cannot be dumped: {reason}"),
        }));
    }
    let mut out = String::new();
    if matches!(map_type, MapType::Queue | MapType::Stack) {
        let head = map.peek().map_err(CliError::Map)?;
        if let Some(value) = &head {
            let _ = writeln!(out, "value: {}", crate::hex::spaced(value, " "));
        }
        let _ = writeln!(
            out,
            "{} element{} shown (a {map_type} can only be read at its head without removing elements)",
            usize::from(head.is_some()),
            if head.is_some() { "" } else { "s" },
        );
        return Ok(out);
    }
    let mut count = 0usize;
    for key in map.keys() {
        let key = key.map_err(CliError::Map)?;
        let key_hex = crate::hex::spaced(&key, " ");
        // An element deleted between the key walk and the lookup is left out.
        if map_type.is_per_cpu() {
            let Some(values) = map.lookup_percpu(&key).map_err(CliError::Map)? else {
                continue;
            };
            let _ = writeln!(out, "key: {key_hex}");
            for (cpu, value) in values.iter().enumerate() {
                let _ = writeln!(out, "  value (cpu {cpu}): {}", crate::hex::spaced(value, " "));
            }
        } else {
            let Some(value) = map.lookup(&key).map_err(CliError::Map)? else {
                continue;
            };
            let _ = writeln!(out, "key: {key_hex}  value: {}", crate::hex::spaced(&value, " "));
        }
        count += 1;
    }
    let _ = writeln!(out, "{count} element{}", if count == 1 { "" } else { "s" });
    Ok(out)
}

/// Open the map `target` names.
fn open(target: &Target) -> Result<Map, CliError> {
    match target {
        Target::Id(id) => Map::from_id(*id).map_err(|e| match e {
            MapError::Sys(s) if is_not_found(&s.source) => CliError::NoSuchId {
                kind: "map",
                id: *id,
            },
            e => CliError::Map(e),
        }),
        Target::Pinned(path) => Map::from_fd(open_pinned(path, "bpf-map")?).map_err(CliError::Map),
    }
}

/// The `list` row of a map.
fn row(info: &MapInfo) -> Vec<String> {
    let map_type = match info.map_type {
        Some(t) => t.to_string(),
        None => format!("type({})", info.raw_type),
    };
    vec![
        info.id.to_string(),
        map_type,
        name_cell(&info.name),
        format!("key {}", info.key_size),
        format!("value {}", info.value_size),
        format!("max {}", info.max_entries),
        format!("flags {:#x}", info.flags.0),
    ]
}

/// The rows of every map, by id. Maps freed while the list is read are left out.
fn list_rows() -> Result<Vec<Vec<String>>, CliError> {
    let mut rows = Vec::new();
    for id in Map::all_ids().map_err(CliError::Map)? {
        match Map::from_id(id) {
            Ok(map) => rows.push(row(&map.info().map_err(CliError::Map)?)),
            Err(MapError::Sys(s)) if is_not_found(&s.source) => {}
            // A type this bpfkit does not know yet still gets a line.
            Err(MapError::UnknownType { id, raw }) => rows.push(vec![
                id.to_string(),
                format!("type({raw})"),
                "(unknown to bpfkit)".into(),
            ]),
            Err(e) => return Err(CliError::Map(e)),
        }
    }
    Ok(rows)
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let out = match &args.command {
        MapCommand::List => table(&list_rows()?),
        MapCommand::Show { target } => {
            table(&[row(&open(target)?.info().map_err(CliError::Map)?)])
        }
        MapCommand::Dump { target } => dump(&open(target)?)?,
    };
    write_output(None, stdout, out.as_bytes())
}
