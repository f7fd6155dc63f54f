//! `:case` and `:test`: test cases for a session program, run by `bpfkit::testing` — each case
//! through BPF_PROG_TEST_RUN, then the verdicts and the program's coverage (blocks and branch
//! directions, with the lines no case ran) against the lines typed in the session.

use std::io::Write;

use bpfkit::prog::LoadOptions;
use bpfkit::testing::{Case, Suite};

use super::packet;
use super::session::{say, Outcome, Session};

const CASE_USAGE: &str = "usage: :case NAME [HEX | packet udp|tcp SRC:PORT DST:PORT [payload=HEX]] => RETVAL | :case NAME clear";

/// `:case NAME INPUT => RETVAL`, `:case NAME clear`.
pub fn case(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let Some((name, rest)) = args.split_first() else {
        return Err(CASE_USAGE.into());
    };
    s.program(name)?;
    if rest == ["clear"] {
        let before = s.cases.len();
        s.cases.retain(|(p, _)| p != name);
        say!(out, "{} case{} of {name} removed", before - s.cases.len(), if before - s.cases.len() == 1 { "" } else { "s" });
        return Ok(());
    }
    let arrow = rest.iter().position(|w| *w == "=>").ok_or(CASE_USAGE)?;
    let (input, expect) = (&rest[..arrow], &rest[arrow + 1..]);
    let [retval] = expect else { return Err(CASE_USAGE.into()) };
    let retval: u32 = retval.parse().map_err(|_| format!("`{retval}` is not a return value (a number)"))?;
    let data = match input {
        ["packet", spec @ ..] => packet::build(spec)?,
        [] => return Err(CASE_USAGE.into()),
        hex => crate::hex::parse(&hex.concat()).map_err(|e| format!("input hex: {}", e.message))?,
    };
    let label = format!("{} => {retval}", input.join(" "));
    s.cases.push((name.to_string(), Case::new(label).data(data).returns(retval)));
    let n = s.cases.iter().filter(|(p, _)| p == name).count();
    say!(out, "case {n} of {name}: returns {retval}");
    Ok(())
}

/// `:test NAME`: run NAME's cases and show the report with coverage.
pub fn test(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let [name] = args else { return Err("usage: :test NAME".into()) };
    let entry = s.program(name)?;
    let loaded = entry.loaded.as_ref().ok_or_else(|| format!("program {name} is not loaded: `:load {name} TYPE` first (the cases run as that type)"))?;
    let asm = loaded.asm.as_ref().ok_or_else(|| format!("program {name} comes from an object: `:test` instruments programs typed here"))?;
    let cases: Vec<Case> = s.cases.iter().filter(|(p, _)| p == name).map(|(_, c)| c.clone()).collect();
    if cases.is_empty() {
        return Err(format!("program {name} has no cases: `:case {name} packet tcp 10.0.0.1:1 10.0.0.2:80 => 1`").into());
    }
    let maps: Vec<&bpfkit::maps::Map> = s.maps.iter().map(|m| &m.map).collect();
    let mut suite = Suite::new(asm, LoadOptions::new(*name, loaded.prog_type)).maps(&maps);
    for c in cases {
        suite = suite.case(c);
    }
    let report = suite.run().map_err(|e| e.to_string())?;
    write!(out, "{report}").map_err(|e| crate::error::CliError::Message(format!("cannot write output: {e}")))?;
    if !report.passed() {
        return Err(format!("{} of {name}'s cases failed", report.failures().count()).into());
    }
    Ok(())
}
