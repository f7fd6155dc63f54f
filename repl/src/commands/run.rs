//! `bpfkit run`: program text → assembled → loaded → test-run (`BPF_PROG_TEST_RUN`) →
//! `retval=<n> duration_ns=<n>`.
//!
//! A verifier rejection is reported as the verifier's decisive line, the failing
//! instruction's index and text, and the source line it was written on (exit status 1);
//! `--log` adds the whole verifier log. Maps the program names (`map[counts]`) are
//! created for the run from `--map` declarations, and `--dump-maps` prints them after it.

use std::io::Write;
use std::path::PathBuf;

use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{AttachType, LoadError, LoadOptions, ProgFlags, ProgType, Program, TestRun};

use super::asm::{parse_and_assemble, SourceSyntax};
use super::map::dump;
use crate::error::{snippet, CliError};
use crate::hex;
use crate::io::{write_output, Source};

/// The arguments of `bpfkit run` (its summary is on [`super::Command::Run`]).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Input by program type: packet types (xdp, socket_filter, sched_cls, sched_act, cgroup_skb, \
lwt_*, flow_dissector, netfilter) run on --data-hex, 64 zero bytes when not given. \
raw_tracepoint, tracing and syscall programs take no packet and run once (--repeat 0); \
give their arguments or context with --ctx-hex.

Hex: `#` starts a comment, whitespace is ignored, the other characters are hex digits \
read two at a time (`--data-hex 'ffffffffffff 0242ac110002 0800'`).")]
pub struct Args {
    /// Program type: xdp, socket_filter, sched_cls, cgroup_skb, raw_tracepoint, … (the kernel's
    /// `BPF_PROG_TYPE_*` names, lower-case).
    #[arg(long = "type", value_name = "TYPE", default_value = "xdp", value_parser = parse_prog_type)]
    pub prog_type: ProgType,

    /// The expected attach type the program is loaded with (the kernel's `BPF_*` attach names,
    /// lower-case) [default: sk_lookup and netfilter for those types, none otherwise].
    #[arg(long, value_name = "ATTACH_TYPE", value_parser = parse_attach_type)]
    pub attach_type: Option<AttachType>,

    /// Packet data as hex [default: 64 zero bytes for packet types, none for the others].
    #[arg(long, value_name = "HEX")]
    pub data_hex: Option<String>,

    /// Context as hex (`struct xdp_md`, `struct __sk_buff`, raw tracepoint arguments, …).
    #[arg(long, value_name = "HEX")]
    pub ctx_hex: Option<String>,

    /// Run the program N times; `duration_ns` is the kernel's mean per run
    /// [default: 1; 0 for raw_tracepoint, tracing and syscall programs].
    #[arg(long, value_name = "N")]
    pub repeat: Option<u32>,

    /// Which dialect the text is in (`auto` decides line by line).
    #[arg(long, value_enum, default_value_t = SourceSyntax::Auto)]
    pub syntax: SourceSyntax,

    /// The program's name in the kernel (letters, digits, `_`, `.`; 15 kept)
    /// [default: from the file name].
    #[arg(long, value_parser = parse_object_name)]
    pub name: Option<String>,

    /// Create a map for the run, for `map[NAME]` operands; repeat for more maps
    /// (e.g. `--map counts:hash:4:8:1024`).
    #[arg(long = "map", value_name = "NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES", value_parser = parse_map_decl)]
    pub maps: Vec<MapSpec>,

    /// After the run, print each `--map` map's elements (as `bpfkit map dump` does).
    #[arg(long)]
    pub dump_maps: bool,

    /// Also print the packet after the run, `data_out=HEX` (and `ctx_out=HEX` when there is one).
    #[arg(long)]
    pub show_data: bool,

    /// Verifier log level: 1 verbose, 2 per-instruction states, 4 statistics (bits combine);
    /// a level above 0 prints the log as `--log` does.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub log_level: u32,

    /// Print the whole verifier log to stderr, on rejection and on success (at `--log-level 1`
    /// unless another level is given).
    #[arg(long)]
    pub log: bool,

    /// The program text; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: PathBuf,
}

pub(super) fn parse_prog_type(s: &str) -> Result<ProgType, String> {
    s.parse()
}

pub(super) fn parse_attach_type(s: &str) -> Result<AttachType, String> {
    s.parse()
}

/// How a program of type `t` must be loaded to be accepted at all: the attach type
/// (`--attach-type`, else the one the type requires) and flags.
fn load_options(args: &Args, name: String) -> LoadOptions {
    let log_level = if args.log {
        args.log_level.max(1)
    } else {
        args.log_level
    };
    load_options_for(args.prog_type, args.attach_type, log_level, name)
}

/// How a program of type `t` must be loaded to be accepted at all (shared with the REPL's
/// `:load`): `attach` or the attach type the type requires, and the flags it requires.
pub fn load_options_for(t: ProgType, attach: Option<AttachType>, log_level: u32, name: String) -> LoadOptions {
    let mut opts = LoadOptions::new(name, t).log_level(log_level);
    let required = match t {
        ProgType::SkLookup => Some(AttachType::SkLookup),
        ProgType::Netfilter => Some(AttachType::Netfilter),
        _ => None,
    };
    if let Some(attach) = attach.or(required) {
        opts = opts.expected_attach_type(attach);
    }
    // The kernel loads syscall programs only as sleepable.
    if t == ProgType::Syscall {
        opts = opts.flags(ProgFlags::SLEEPABLE);
    }
    opts
}

/// Kernel object names: letters, digits, `_` and `.` (the kernel keeps the first 15).
pub(super) fn parse_object_name(s: &str) -> Result<String, String> {
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed: names take letters, digits, `_` and `.`"
        )),
        None => Ok(s.to_owned()),
    }
}

/// `NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES` → the map to create.
pub fn parse_map_decl(s: &str) -> Result<MapSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [name, map_type, key, value, max] = parts[..] else {
        return Err(format!(
            "expected NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES (5 fields), found {} field{}",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        ));
    };
    let name = parse_object_name(name).map_err(|e| format!("map name `{name}`: {e}"))?;
    let map_type: MapType = map_type.parse()?;
    let size = |what: &str, v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| format!("{what} `{v}` is not a whole number (0 to 4294967295)"))
    };
    Ok(MapSpec::new(
        name,
        map_type,
        size("KEY_SIZE", key)?,
        size("VALUE_SIZE", value)?,
        size("MAX_ENTRIES", max)?,
    ))
}

/// Types whose test run takes a packet (`data_in`), so one is made up when none is given.
pub fn takes_packet(t: ProgType) -> bool {
    matches!(
        t,
        ProgType::Xdp
            | ProgType::SocketFilter
            | ProgType::SchedCls
            | ProgType::SchedAct
            | ProgType::CgroupSkb
            | ProgType::LwtIn
            | ProgType::LwtOut
            | ProgType::LwtXmit
            | ProgType::LwtSeg6local
            | ProgType::FlowDissector
            | ProgType::Netfilter
    )
}

/// Types whose test run refuses `repeat` and an output context: they run once.
pub fn runs_once(t: ProgType) -> bool {
    matches!(
        t,
        ProgType::RawTracepoint | ProgType::Tracing | ProgType::Syscall
    )
}

/// The packet used when `--data-hex` is not given.
pub const DEFAULT_PACKET_LEN: usize = 64;

fn parse_hex_arg(option: &str, text: &str) -> Result<Vec<u8>, CliError> {
    hex::parse(text).map_err(|source| CliError::Hex {
        origin: option.to_owned(),
        source,
    })
}

/// The program name: `--name`, else the file name's stem with other characters as `_`.
pub(super) fn program_name(given: Option<&String>, source: &Source) -> String {
    if let Some(name) = given {
        return name.clone();
    }
    let stem = match source {
        Source::File(p) => p.file_stem().map(|s| s.to_string_lossy().into_owned()),
        Source::Stdin => None,
    };
    let name: String = stem
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(15)
        .collect();
    if name.is_empty() {
        "bpfkit_run".into()
    } else {
        name
    }
}

/// Fail, naming the line, if the program uses a map that no `--map` declares.
pub(super) fn check_maps_declared(
    asm: &bpfkit::insn::Assembled,
    maps: &[MapSpec],
    text: &str,
) -> Result<(), CliError> {
    for (i, name) in asm.map_references() {
        if !maps.iter().any(|m| m.get_name() == name) {
            let loc = asm.loc(i);
            return Err(CliError::UndeclaredMap {
                name: name.to_owned(),
                snippet: loc.as_ref().and_then(|l| snippet(text, l)),
                loc,
            });
        }
    }
    Ok(())
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let source = Source::from_arg(&args.input);
    let text = source.read_text(
        "`bpfkit run` reads program text; use `bpfkit disasm` to turn instruction bytes into text",
    )?;
    let data = match &args.data_hex {
        Some(h) => parse_hex_arg("--data-hex", h)?,
        None if takes_packet(args.prog_type) => vec![0u8; DEFAULT_PACKET_LEN],
        None => Vec::new(),
    };
    let ctx = match &args.ctx_hex {
        Some(h) => Some(parse_hex_arg("--ctx-hex", h)?),
        None => None,
    };
    let asm = parse_and_assemble(&text, &source.origin(), args.syntax.into())?;
    if asm.insns().is_empty() {
        return Err(CliError::NoInstructions {
            origin: source.origin(),
        });
    }
    check_maps_declared(&asm, &args.maps, &text)?;
    let maps = args
        .maps
        .iter()
        .map(|spec| Map::create(spec).map_err(CliError::Map))
        .collect::<Result<Vec<Map>, CliError>>()?;
    let map_refs: Vec<&Map> = maps.iter().collect();

    let opts = load_options(args, program_name(args.name.as_ref(), &source));
    let show_log = args.log || args.log_level > 0;
    let prog = Program::load(&asm, &map_refs, &opts).map_err(|source| {
        let (snippet, log) = match &source {
            LoadError::Verifier { rejection, .. } => (
                rejection.loc.as_ref().and_then(|l| snippet(&text, l)),
                show_log.then(|| rejection.log.clone()),
            ),
            _ => (None, None),
        };
        CliError::Load {
            source: Box::new(source),
            snippet,
            log,
        }
    })?;
    if show_log {
        let _ = writeln!(std::io::stderr(), "{}", prog.log.trim_end());
    }

    let once = runs_once(args.prog_type);
    let mut input =
        TestRun::with_data(data).repeat(args.repeat.unwrap_or(if once { 0 } else { 1 }));
    if let Some(ctx) = ctx {
        input = input.ctx(ctx);
    }
    if once {
        input = input.ctx_out_size(0);
    }
    let result = prog.test_run(&input).map_err(|source| CliError::TestRun {
        hint: test_run_hint(args.prog_type, source.errno()),
        source,
    })?;

    let mut out = format!(
        "retval={} duration_ns={}\n",
        result.retval, result.duration_ns
    );
    if args.show_data {
        out.push_str(&format!("data_out={}\n", crate::hex::spaced(&result.data_out, "")));
        if !result.ctx_out.is_empty() {
            out.push_str(&format!("ctx_out={}\n", crate::hex::spaced(&result.ctx_out, "")));
        }
    }
    if args.dump_maps {
        for map in &maps {
            out.push_str(&format!("map {}:\n", map.describe()));
            out.push_str(&dump(map)?);
        }
    }
    write_output(None, stdout, out.as_bytes())
}

/// What to try when the kernel refuses a test run with `errno`.
pub fn test_run_hint(t: ProgType, errno: Option<i32>) -> Option<String> {
    const EINVAL: i32 = 22;
    const EOPNOTSUPP: i32 = 95;
    const ENOTSUPP: i32 = 524;
    match errno? {
        EOPNOTSUPP | ENOTSUPP => Some(format!("the kernel cannot test-run {t} programs")),
        EINVAL if takes_packet(t) => Some(format!(
            "{t} programs need a packet of at least 14 bytes (an Ethernet header) in --data-hex; \
             a --ctx-hex must have the size of the type's context struct"
        )),
        EINVAL if runs_once(t) => Some(format!(
            "{t} programs take no packet and run once: drop --data-hex and --repeat"
        )),
        EINVAL => Some(format!(
            "the kernel refused the input: {t} programs may need --ctx-hex with their context struct"
        )),
        _ => None,
    }
}
