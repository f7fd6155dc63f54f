//! One source of truth for every lab: `examples/lab_N_M.rs` (what `cargo run --example lab_N_M`
//! runs, and what the second kernel runs for the labs that need it) and the code the chapter shows
//! under `## Lab N.M` (what the doctests run) are the same code. This test fails when they differ.
//!
//! "The same" ignores what only one side can have: the example's `//!` header and `fn main`
//! wrapper, rustdoc's hidden-line marker (`# `), indentation and blank lines. Everything else —
//! every statement, comment and assertion — must match line for line, in order.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The lines that carry meaning: trimmed, without blank lines, inner doc comments or the
/// `fn main` frame a doctest hides and an example spells out.
fn meaningful(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with("//!"))
        .collect()
}

/// The chapter's `## Lab N.M` section as code: its Rust blocks with rustdoc's hidden-line marker
/// removed and each block's `fn main` frame dropped, concatenated.
fn chapter_code(chapter: &str, lab: &str) -> Option<Vec<String>> {
    let heading = format!("## Lab {lab} ");
    let start = chapter.find(&heading)?;
    let rest = &chapter[start + heading.len()..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let (mut code, mut block, mut in_rust) = (Vec::new(), Vec::new(), false);
    for line in section.lines() {
        if line.starts_with("```") {
            if in_rust {
                code.extend(without_main(meaningful(std::mem::take(&mut block))));
            }
            in_rust = !in_rust && line.trim() == "```rust";
            continue;
        }
        if in_rust {
            let line = line.strip_prefix("# ").unwrap_or(if line == "#" { "" } else { line });
            block.push(line.to_string());
        }
    }
    Some(code)
}

/// Without the `fn main() -> … {` line and the `}` that closes it (the last line).
fn without_main(mut lines: Vec<String>) -> Vec<String> {
    if let Some(i) = lines.iter().position(|l| l.starts_with("fn main(")) {
        lines.remove(i);
        lines.pop();
    }
    lines
}

fn chapters() -> Vec<(u32, PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("tutorial")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("ch").and_then(|s| s.get(..2)).and_then(|s| s.parse().ok()) {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((n, path, text));
        }
    }
    out.sort();
    out
}

fn example_path(lab: &str) -> PathBuf {
    root().join("examples").join(format!("lab_{}.rs", lab.replace('.', "_")))
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

#[test]
fn every_lab_in_a_chapter_is_an_example_with_the_same_code() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (n, path, text) in chapters() {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("## Lab ") else { continue };
            let lab = rest.split_whitespace().next().unwrap_or_default().to_string();
            assert!(lab.starts_with(&format!("{n}.")), "{}: `{line}` is not a lab of chapter {n}", rel(&path));
            let example = example_path(&lab);
            let Ok(source) = std::fs::read_to_string(&example) else {
                problems.push(format!("{}: Lab {lab} has no example {}", rel(&path), rel(&example)));
                continue;
            };
            let shown = chapter_code(&text, &lab).unwrap();
            let run = without_main(meaningful(source.lines().map(String::from)));
            if shown != run {
                let at = shown.iter().zip(&run).position(|(a, b)| a != b).unwrap_or(shown.len().min(run.len()));
                problems.push(format!(
                    "Lab {lab}: {} and {} differ at meaningful line {}:\n  chapter: {}\n  example: {}",
                    rel(&path),
                    rel(&example),
                    at + 1,
                    shown.get(at).map(String::as_str).unwrap_or("(end)"),
                    run.get(at).map(String::as_str).unwrap_or("(end)"),
                ));
            }
            if !text[text.find(&format!("## Lab {lab} ")).unwrap()..].contains("What you should see") {
                problems.push(format!("Lab {lab}: {} has no \"What you should see\" block", rel(&path)));
            }
            checked += 1;
        }
    }
    // And the other way: no example without its lab in a chapter.
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(lab) = name.strip_prefix("lab_").and_then(|s| s.strip_suffix(".rs")) {
            let lab = lab.replace('_', ".");
            if !chapters().iter().any(|(_, _, text)| text.contains(&format!("## Lab {lab} "))) {
                problems.push(format!("examples/{name}: no `## Lab {lab}` section in any chapter"));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems with the labs and their examples:\n{}", problems.len(), problems.join("\n"));
    eprintln!("{checked} labs: chapter code equals the example");
}
