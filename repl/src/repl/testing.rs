//! `:case` and `:test`: test cases for a session program, run by `bpfkit::testing` — each case
//! through BPF_PROG_TEST_RUN, then the verdicts and the program's coverage (blocks and branch
//! directions, with the lines no case ran) against the lines typed in the session.

use std::io::Write;

use bpfkit::testing::{Case, Suite};

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
    let case = crate::commands::test::case_from_words(rest).map_err(|e| format!("{e}\n{CASE_USAGE}"))?;
    let retval = case_retval(rest);
    s.cases.push((name.to_string(), case));
    let n = s.cases.iter().filter(|(p, _)| p == name).count();
    say!(out, "case {n} of {name}: returns {retval}");
    Ok(())
}

/// The number after `=>` (the case parsed, so it is there).
fn case_retval<'a>(words: &[&'a str]) -> &'a str {
    words.last().copied().unwrap_or_default()
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
    let opts = crate::commands::run::load_options_for(loaded.prog_type, None, 0, name.to_string());
    let mut suite = Suite::new(asm, opts).maps(&maps);
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
