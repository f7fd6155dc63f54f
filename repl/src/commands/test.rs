//! `bpfkit test`: program text → cases run through `BPF_PROG_TEST_RUN` on an instrumented copy
//! (`bpfkit::testing`) → each verdict, then the coverage: blocks and branch directions, naming
//! the source lines no case ran. Exit status 1 when a case fails (or with `--full-coverage`,
//! when a block or a branch direction was never taken).

use std::io::Write;
use std::path::PathBuf;

use bpfkit::maps::{Map, MapSpec};
use bpfkit::prog::{AttachType, ProgType};
use bpfkit::testing::{Case, Suite};

use super::asm::{parse_and_assemble, SourceSyntax};
use super::run::{check_maps_declared, load_options_for, parse_attach_type, parse_map_decl, parse_object_name, parse_prog_type, program_name};
use crate::error::CliError;
use crate::io::Source;

/// The arguments of `bpfkit test` (its summary is on [`super::Command::Test`]).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
A case is INPUT => RETVAL, where INPUT is hex (`0011aabb…`) or packet words: \
`packet udp|tcp SRC:PORT DST:PORT [payload=HEX]` (IPv4 or IPv6 by the addresses; checksums \
filled in). Example:

  bpfkit test filter.s --type xdp --case 'packet tcp 10.0.0.1:4000 10.0.0.2:80 => 1' \\
      --case 'packet udp 10.0.0.1:4000 10.0.0.2:53 => 2' --full-coverage")]
pub struct Args {
    /// Program type: xdp, socket_filter, sched_cls, cgroup_skb, … (the kernel's
    /// `BPF_PROG_TYPE_*` names, lower-case).
    #[arg(long = "type", value_name = "TYPE", default_value = "xdp", value_parser = parse_prog_type)]
    pub prog_type: ProgType,

    /// The expected attach type the program is loaded with.
    #[arg(long, value_name = "ATTACH_TYPE", value_parser = parse_attach_type)]
    pub attach_type: Option<AttachType>,

    /// A test case, `INPUT => RETVAL`; repeat for more (they run in order, against the same maps).
    #[arg(long = "case", value_name = "INPUT => RETVAL", required = true, value_parser = parse_case)]
    pub cases: Vec<Case>,

    /// Fail (exit 1) unless every block ran and every conditional jump went both ways.
    #[arg(long)]
    pub full_coverage: bool,

    /// Which dialect the text is in (`auto` decides line by line).
    #[arg(long, value_enum, default_value_t = SourceSyntax::Auto)]
    pub syntax: SourceSyntax,

    /// The program's name in the kernel [default: from the file name].
    #[arg(long, value_parser = parse_object_name)]
    pub name: Option<String>,

    /// Create a map for the cases, for `map[NAME]` operands (e.g. `--map counts:hash:4:8:1024`).
    #[arg(long = "map", value_name = "NAME:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES", value_parser = parse_map_decl)]
    pub maps: Vec<MapSpec>,

    /// The program text; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: PathBuf,
}

/// `INPUT => RETVAL`, the input as hex or packet words (shared with the REPL's `:case`).
pub fn parse_case(text: &str) -> Result<Case, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    case_from_words(&words)
}

/// The same from words (`packet`, `tcp`, …, `=>`, `1`).
pub fn case_from_words(words: &[&str]) -> Result<Case, String> {
    const FORM: &str = "a case is INPUT => RETVAL (INPUT: hex, or `packet udp|tcp SRC:PORT DST:PORT [payload=HEX]`)";
    let arrow = words.iter().position(|w| *w == "=>").ok_or(FORM)?;
    let (input, expect) = (&words[..arrow], &words[arrow + 1..]);
    let [retval] = expect else { return Err(FORM.into()) };
    let retval: u32 = retval.parse().map_err(|_| format!("`{retval}` is not a return value (a number); {FORM}"))?;
    let data = match input {
        ["packet", spec @ ..] => crate::packet::build(spec)?,
        [] => return Err(FORM.into()),
        hex => crate::hex::parse(&hex.concat()).map_err(|e| format!("input hex: {}", e.message))?,
    };
    Ok(Case::new(format!("{} => {retval}", input.join(" "))).data(data).returns(retval))
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let source = Source::from_arg(&args.input);
    let text = source.read_text("`bpfkit test` reads program text")?;
    let asm = parse_and_assemble(&text, &source.origin(), args.syntax.into())?;
    if asm.insns().is_empty() {
        return Err(CliError::NoInstructions { origin: source.origin() });
    }
    check_maps_declared(&asm, &args.maps, &text)?;
    let maps = args.maps.iter().map(|spec| Map::create(spec).map_err(CliError::Map)).collect::<Result<Vec<Map>, CliError>>()?;
    let map_refs: Vec<&Map> = maps.iter().collect();
    let opts = load_options_for(args.prog_type, args.attach_type, 0, program_name(args.name.as_ref(), &source));
    let mut suite = Suite::new(&asm, opts).maps(&map_refs);
    for case in &args.cases {
        suite = suite.case(case.clone());
    }
    let report = suite.run().map_err(|e| CliError::Message(e.to_string()))?;
    write!(stdout, "{report}").map_err(|e| CliError::Message(format!("cannot write output: {e}")))?;
    if !report.passed() {
        return Err(CliError::Message(format!("{} of {} cases failed", report.failures().count(), args.cases.len())));
    }
    if args.full_coverage && !report.coverage.is_complete() {
        return Err(CliError::Message("coverage is not complete (--full-coverage): the lines and branches above were never run".into()));
    }
    Ok(())
}
