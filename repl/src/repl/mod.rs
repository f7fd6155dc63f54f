//! The REPL that `bpfkit` with no subcommand starts: the input loop, interactive (rustyline:
//! line editing, history in `~/.bpfkit_history`, tab completion) or not (stdin not a
//! terminal, or `--script FILE`: no prompt, each line echoed as `> LINE` before its output,
//! exit status 1 if any line failed).
//!
//! What a line does is [`table::execute`]'s business: `table` is the command table (name,
//! usage, example, handler), `session` the state the handlers borrow and the typing of
//! instructions. The handlers are grouped by what they act on: `programs`, `maps`, `objects`,
//! `attach`, `watch` (with `layout`), `queues` (`:push`/`:pop`/`:peek`), `testing`
//! (`:case`/`:test`), `system`. `complete` is the completion, `render` how things are shown;
//! packet words (`packet udp …`) are the crate's `packet`, shared with `bpfkit test`. Modules
//! depend downwards only:
//! `table` → handlers → `session` → `render`; no cycle.

mod attach;
mod complete;
mod layout;
mod maps;
mod objects;

mod programs;
mod queues;
mod render;
mod session;
mod system;
mod table;
mod testing;
mod watch;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};

use complete::ReplHelper;
use session::Session;

/// Start the REPL: on `script` if given, else on stdin (interactive when it is a terminal).
pub fn main(script: Option<&Path>) -> ExitCode {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // Ctrl-C while a command runs stops the command; the session (and its links) goes on.
    if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
        eprintln!("warning: Ctrl-C cannot be caught ({e}): it will end the session");
    }
    let ok = match script {
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => script_loop(std::io::BufReader::new(f), interrupted),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None if std::io::stdin().is_terminal() => interactive_loop(interrupted),
        None => script_loop(std::io::stdin().lock(), interrupted),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Non-interactive: echo, run, report; true if every line succeeded.
fn script_loop(input: impl BufRead, interrupted: Arc<AtomicBool>) -> bool {
    let mut session = Session::new(false, interrupted);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut ok = true;
    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                let _ = writeln!(out, "error: cannot read input: {e}");
                return false;
            }
        };
        let _ = writeln!(out, "{}", format!("> {line}").trim_end());
        if let Err(e) = table::execute(&mut session, &line, &mut out) {
            let _ = writeln!(out, "error: {e}");
            ok = false;
        }
        let _ = out.flush();
        if session.quit {
            break;
        }
        // Ctrl-C stops the command it came during, and a script with it.
        if session.was_interrupted() {
            let _ = writeln!(out, "interrupted: the script stops here");
            return false;
        }
    }
    // A block still open at the end is assembled as if a blank line followed.
    if let Err(e) = table::execute(&mut session, "", &mut out) {
        let _ = writeln!(out, "error: {e}");
        ok = false;
    }
    ok
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".bpfkit_history"))
}

/// Interactive: rustyline with history and completion; Ctrl-C clears the line, Ctrl-D ends.
fn interactive_loop(interrupted: Arc<AtomicBool>) -> bool {
    let config = Config::builder().auto_add_history(true).build();
    let mut rl: Editor<ReplHelper, DefaultHistory> = match Editor::with_config(config) {
        Ok(rl) => rl,
        Err(e) => {
            eprintln!("error: cannot start line editing ({e}); pipe the input to run a script instead");
            return false;
        }
    };
    rl.set_helper(Some(ReplHelper::default()));
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    println!("bpfkit {} — `:help` lists the commands, Ctrl-D ends the session", env!("CARGO_PKG_VERSION"));
    let mut session = Session::new(true, interrupted);
    let mut ok = true;
    while !session.quit {
        let prompt = match (session.in_block(), session.current_name()) {
            (true, _) => "...> ".to_owned(),
            (false, Some(p)) => format!("bpf:{p}> "),
            (false, None) => "bpf> ".to_owned(),
        };
        let line = match rl.readline(&prompt) {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                ok = false;
                break;
            }
        };
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        if let Err(e) = table::execute(&mut session, &line, &mut out) {
            let _ = writeln!(out, "error: {e}");
            ok = false;
        }
        let _ = out.flush();
        if let Some(h) = rl.helper_mut() {
            h.maps = session.maps.iter().map(|m| m.name.clone()).collect();
            h.progs = session.programs.iter().map(|p| p.name.clone()).collect();
        }
        if let Some(h) = &history {
            let _ = rl.save_history(h);
        }
    }
    let links = session.links.len();
    drop(session);
    if links > 0 {
        println!("detached {links} link{}", if links == 1 { "" } else { "s" });
    }
    ok
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// The REPL's modules depend downwards only (`table` → handlers → `session` → `render`):
    /// every `super::NAME` a module names is read from the sources, and the graph has no cycle.
    #[test]
    fn modules_import_each_other_without_a_cycle() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/repl");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(str::to_owned))
            .filter(|n| n != "mod")
            .collect();
        for name in &names {
            let text = std::fs::read_to_string(format!("{dir}/{name}.rs")).unwrap();
            let uses = graph.entry(name.clone()).or_default();
            for (i, _) in text.match_indices("super::") {
                let rest = &text[i + "super::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let inner = &group[..group.find('}').unwrap_or(0)];
                    uses.extend(inner.split(',').map(|w| w.trim().split("::").next().unwrap_or("").to_owned()));
                } else {
                    uses.insert(rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("").to_owned());
                }
            }
            uses.retain(|u| names.contains(u) && u != name);
        }
        // Depth-first search for a back edge.
        fn visit(n: &str, g: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
            if done.contains(n) {
                return;
            }
            assert!(!path.iter().any(|p| p == n), "import cycle: {} → {n}", path.join(" → "));
            path.push(n.to_owned());
            for m in &g[n] {
                visit(m, g, path, done);
            }
            path.pop();
            done.insert(n.to_owned());
        }
        let mut done = BTreeSet::new();
        for n in graph.keys() {
            visit(n, &graph, &mut Vec::new(), &mut done);
        }
        assert!(graph["session"].iter().all(|m| m == "render"), "session knows no command: {:?}", graph["session"]);
    }
}
