//! The text outputs: folded stacks (`comm;frame;…;frame value`, outermost frame first — the
//! format FlameGraph, inferno and speedscope read), the flame-graph SVG drawn from them by
//! inferno, and the top-N table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use crate::profile::Profile;

/// Folded lines, identical stacks merged (two processes with the same name and stack are one
/// line, as in bcc's `profile -f`), sorted by stack.
pub fn folded(profile: &Profile, delimiter: bool) -> Vec<String> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    // A stack whose value is 0 (alloc: everything it allocated was freed) is not in the graph.
    for s in profile.samples.iter().filter(|s| s.value > 0) {
        let mut line = sanitize(&s.comm);
        for f in s.frames(delimiter) {
            line.push(';');
            line.push_str(&sanitize(f));
        }
        *merged.entry(line).or_default() += s.value;
    }
    merged
        .into_iter()
        .map(|(stack, n)| format!("{stack} {n}"))
        .collect()
}

/// `;` separates frames and the last space the count: neither may appear inside a name (C++
/// and Rust names have spaces, `operator;` is rare but real).
fn sanitize(name: &str) -> String {
    name.replace(';', ":").replace(' ', "_")
}

/// A flame graph of the folded lines, as SVG.
pub fn svg(
    lines: &[String],
    title: &str,
    count_name: &str,
    out: impl Write,
) -> std::io::Result<()> {
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = count_name.to_string();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), out)
}

/// One row of the top table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopRow {
    pub function: String,
    /// The amount with this function innermost (where the time was spent itself).
    pub self_value: u64,
    /// The amount with this function anywhere on the stack (itself and its callees).
    pub total_value: u64,
}

/// The `n` functions with the largest self amount (the delimiter and thread names are not
/// functions).
pub fn top(profile: &Profile, n: usize) -> Vec<TopRow> {
    let mut self_v: HashMap<&str, u64> = HashMap::new();
    let mut total_v: HashMap<&str, u64> = HashMap::new();
    for s in &profile.samples {
        let frames = s.frames(false);
        if let Some(leaf) = frames.last() {
            *self_v.entry(leaf).or_default() += s.value;
        }
        // A recursive function counts once per stack.
        let distinct: HashSet<&str> = frames.iter().copied().collect();
        for f in distinct {
            *total_v.entry(f).or_default() += s.value;
        }
    }
    let mut rows: Vec<TopRow> = total_v
        .iter()
        .filter(|(_, t)| **t > 0)
        .map(|(f, t)| TopRow {
            function: f.to_string(),
            self_value: self_v.get(f).copied().unwrap_or(0),
            total_value: *t,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.self_value
            .cmp(&a.self_value)
            .then(b.total_value.cmp(&a.total_value))
            .then(a.function.cmp(&b.function))
    });
    rows.truncate(n);
    rows
}

/// The top table as text: percentages of the whole profile.
pub fn top_table(profile: &Profile, n: usize, unit: &str) -> String {
    let total = profile.total().max(1) as f64;
    let mut t = format!(
        "{:>7} {:>12} {:>7} {:>12}  FUNCTION\n",
        "SELF%",
        format!("SELF {unit}"),
        "TOTAL%",
        format!("TOTAL {unit}")
    );
    for r in top(profile, n) {
        t.push_str(&format!(
            "{:>6.2}% {:>12} {:>6.2}% {:>12}  {}\n",
            100.0 * r.self_value as f64 / total,
            r.self_value,
            100.0 * r.total_value as f64 / total,
            r.total_value,
            r.function
        ));
    }
    t
}
