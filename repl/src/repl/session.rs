//! A REPL session's state (programs as typed, maps, loaded programs, links) and the entry
//! point for one input line: instructions are assembled into the current program, blocks
//! are collected, and `:commands` are dispatched to `programs`, `maps`, `attach` and
//! `system`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bpfkit::insn::{parse_program_with, AssembleError, Assembled, Item, ParseOptions, Program};

use super::attach::SessionLink;
use super::maps::SessionMap;
use super::programs::Loaded;
use super::{attach, help, maps, objects, programs, render, system, watch};

/// What a command returns: `Err` is the message printed after `error: `.
pub type Outcome = Result<(), String>;

/// Write a line of output, turning a write failure into the command's error.
macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        writeln!($out, $($t)*).map_err(|e| format!("cannot write output: {e}"))?
    };
}
pub(crate) use say;

/// The name in source locations of everything typed in the REPL.
pub const ORIGIN: &str = "<repl>";

/// A program of the session, as typed.
pub struct ProgEntry {
    pub name: String,
    /// Instructions and labels, each with the session line it was typed on.
    pub items: Vec<Item>,
    /// Session line → the text typed there.
    pub lines: BTreeMap<u32, String>,
    /// The program as last loaded.
    pub loaded: Option<Loaded>,
    /// The object (`:open NAME`) it came from: such a program is loaded, not typed.
    pub object: Option<String>,
}

impl ProgEntry {
    pub fn new(name: &str) -> Self {
        ProgEntry {
            name: name.to_owned(),
            items: Vec::new(),
            lines: BTreeMap::new(),
            loaded: None,
            object: None,
        }
    }

    pub fn program(&self) -> Program {
        let mut p = Program::new();
        for item in &self.items {
            p.push_item(item.clone());
        }
        p
    }

    /// Resolve labels; an error shows the line it is about.
    pub fn assemble(&self) -> Result<Assembled, String> {
        self.program().assemble().map_err(|e| self.assemble_error(&e))
    }

    fn assemble_error(&self, e: &AssembleError) -> String {
        let loc = match e {
            AssembleError::UndefinedLabel { loc, .. }
            | AssembleError::DuplicateLabel { loc, .. }
            | AssembleError::JumpOutOfRange { loc, .. } => loc.as_ref(),
        };
        format!("{e}{}", loc.map(|l| render::snippet(&self.lines, l)).unwrap_or_default())
    }

    pub fn insn_count(&self) -> usize {
        self.items.iter().filter(|i| matches!(i, Item::Insn { .. })).count()
    }
}

/// Instructions typed since a block began (a label, or a jump to a label not yet defined).
struct Block {
    /// Items and instructions of the program before the block.
    items_before: usize,
    insns_before: usize,
    first_line: u32,
}

/// Everything a session holds; dropping it detaches every link and closes every fd.
pub struct Session {
    // Links first: they must go before the programs they hold.
    pub links: Vec<SessionLink>,
    pub next_link: usize,
    pub programs: Vec<ProgEntry>,
    pub current: Option<usize>,
    pub maps: Vec<SessionMap>,
    /// Objects opened with `:open`, by session name: their programs and maps are also in
    /// `programs` and `maps` (as `NAME.PROG`, `NAME.MAP`, on duplicated fds); the object keeps
    /// its BTF and attaches by section. Last, so they close after the links that use them.
    pub objects: Vec<(String, bpfkit::object::LoadedObject)>,
    pub line_no: u32,
    block: Option<Block>,
    /// The verifier log of the last rejected load.
    pub last_log: Option<String>,
    /// Interactive sessions show kernel ids and color; scripts stay deterministic.
    pub interactive: bool,
    /// Set by Ctrl-C while a command runs.
    pub interrupted: Arc<AtomicBool>,
    pub quit: bool,
    /// Run statistics (`BPF_ENABLE_STATS`), on from the first load while the session lives,
    /// so `:info` shows real run counts; the reason when they could not be turned on.
    pub stats: Result<OwnedFd, String>,
    /// This process's id, read once (`$pid` in commands): every getpid(2) is an event the
    /// session may be counting.
    pid: String,
}

impl Session {
    pub fn new(interactive: bool, interrupted: Arc<AtomicBool>) -> Self {
        Session {
            links: Vec::new(),
            next_link: 1,
            programs: Vec::new(),
            current: None,
            maps: Vec::new(),
            objects: Vec::new(),
            line_no: 0,
            block: None,
            last_log: None,
            interactive,
            interrupted,
            quit: false,
            stats: Err("no program loaded yet".into()),
            pid: std::process::id().to_string(),
        }
    }

    /// Turn run statistics on (once; a failure is retried at the next load).
    pub fn enable_stats(&mut self) {
        if self.stats.is_err() {
            self.stats = bpfkit::prog::Program::enable_stats().map_err(|e| format!("BPF_ENABLE_STATS failed: {e}"));
        }
    }

    /// Whether a block is being typed (the prompt says so).
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// The name of the program instructions go to.
    pub fn current_name(&self) -> Option<&str> {
        self.current.map(|i| self.programs[i].name.as_str())
    }

    pub fn was_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    pub fn program(&self, name: &str) -> Result<&ProgEntry, String> {
        self.programs.iter().find(|p| p.name == name).ok_or_else(|| {
            format!("no program `{name}` in this session (`:progs` lists them; `:prog {name}` starts one)")
        })
    }

    pub fn program_mut(&mut self, name: &str) -> Result<&mut ProgEntry, String> {
        self.program(name)?;
        Ok(self.programs.iter_mut().find(|p| p.name == name).expect("checked above"))
    }

    /// Start program `name`, or make it current again.
    pub fn start_program(&mut self, name: &str, out: &mut dyn Write) -> Outcome {
        if let Some(i) = self.programs.iter().position(|p| p.name == name) {
            if let Some(object) = &self.programs[i].object {
                return Err(format!("program {name} was loaded from object {object} by `:open`; instructions cannot be added to it"));
            }
            self.current = Some(i);
            say!(out, "program {name}: {} instructions so far; new ones are added", self.programs[i].insn_count());
            return Ok(());
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(format!("`{name}`: program names take letters, digits, `_` and `.`"));
        }
        self.programs.push(ProgEntry::new(name));
        self.current = Some(self.programs.len() - 1);
        say!(out, "program {name}: type its instructions");
        Ok(())
    }

    /// Handle one input line.
    pub fn execute(&mut self, line: &str, out: &mut dyn Write) -> Outcome {
        self.line_no += 1;
        self.interrupted.store(false, Ordering::SeqCst);
        let text = line.trim();
        if text.is_empty() {
            return self.end_block(out);
        }
        if let Some(cmd) = text.strip_prefix(':') {
            let words: Vec<String> = cmd
                .split_whitespace()
                .map(|w| w.replace("$pid", &self.pid))
                .collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            if words.first() == Some(&"end") {
                if self.block.is_none() {
                    return Err("no block to end".into());
                }
                return self.end_block(out);
            }
            // Any other command ends a block first.
            self.end_block(out)?;
            return self.command(&words, out);
        }
        self.instruction(line.trim_end(), out)
    }

    /// Dispatch a `:command`: through the help table, so a command without help cannot be
    /// dispatched (and the test below finds any entry of the table that is not).
    fn command(&mut self, words: &[&str], out: &mut dyn Write) -> Outcome {
        let Some((&typed, args)) = words.split_first() else {
            return Err("a command follows `:` (`:help` lists them)".into());
        };
        let Some(entry) = help::find(typed) else {
            return Err(format!("unknown command `:{typed}` (`:help` lists the commands)"));
        };
        match entry.name {
            "help" => match args.first() {
                None => write!(out, "{}", help::overview()).map_err(|e| e.to_string()),
                Some(c) => match help::find(c) {
                    Some(c) => write!(out, "{}", help::detail(c)).map_err(|e| e.to_string()),
                    None => Err(format!("no command `:{}` (`:help` lists them)", c.trim_start_matches(':'))),
                },
            },
            "prog" => match args {
                [sub, ..] if matches!(*sub, "list" | "show" | "dump") => system::subcommand("prog", args, out),
                [name] => self.start_program(name, out),
                _ => Err("usage: :prog NAME (or :prog list|show|dump …)".into()),
            },
            "progs" if args == ["all"] => system::subcommand("prog", &["list"], out),
            "progs" => programs::list_session(self, out),
            "list" => programs::listing(self, args, out),
            "load" => programs::load(self, args, out),
            "log" => match &self.last_log {
                Some(log) => writeln!(out, "{}", log.trim_end()).map_err(|e| e.to_string()),
                None => Err("no verifier log: the last load was not rejected (or nothing was loaded)".into()),
            },
            "run" => programs::run(self, args, out),
            "info" => programs::info(self, args, out),
            "map" => maps::command(self, args, out),
            "open" => objects::open(self, args, out),
            "maps" if args == ["all"] => system::subcommand("map", &["list"], out),
            "maps" => maps::list_session(self, out),
            "attach" => attach::attach(self, args, out),
            "links" => attach::list(self, out),
            "detach" => attach::detach(self, args, out),
            "watch" => watch::watch(self, args, out),
            "count" => attach::count(self, args, out),
            "trigger" => attach::trigger(self, args, out),
            "features" => system::subcommand("features", args, out),
            "btf" if args.is_empty() => Err("usage: :btf TYPE… (e.g. :btf task_struct)".into()),
            "btf" => {
                let mut full = vec!["dump"];
                full.extend_from_slice(args);
                system::subcommand("btf", &full, out)
            }
            "link" => system::subcommand("link", args, out),
            "helper" => system::helper(args, out),
            "quit" => {
                self.quit = true;
                Ok(())
            }
            other => Err(format!("`:{other}` is in the help table but not dispatched")),
        }
    }

    /// An instruction line (or a label, or a comment) for the current program.
    fn instruction(&mut self, text: &str, out: &mut dyn Write) -> Outcome {
        let opts = ParseOptions::new().origin(ORIGIN).first_line(self.line_no);
        let parsed = parse_program_with(text, &opts).map_err(|e| e.render())?;
        if parsed.items().is_empty() {
            return Ok(()); // a comment
        }
        let idx = match self.current {
            Some(i) => i,
            None => {
                let name = (1..).map(|n| format!("prog{n}")).find(|n| self.program(n).is_err()).unwrap_or_default();
                self.start_program(&name, out)?;
                self.programs.len() - 1
            }
        };
        let line_no = self.line_no;
        let has_label = parsed.items().iter().any(|i| matches!(i, Item::Label { .. }));
        let entry = &mut self.programs[idx];
        let (items_before, insns_before) = (entry.items.len(), entry.insn_count());
        entry.items.extend(parsed.items().iter().cloned());
        entry.lines.insert(line_no, text.to_owned());
        entry.loaded = None;
        if self.block.is_some() {
            return Ok(());
        }
        let start_block = |s: &mut Session| {
            s.block = Some(Block { items_before, insns_before, first_line: line_no });
        };
        if has_label {
            start_block(self);
            return Ok(());
        }
        match entry.program().assemble() {
            Ok(asm) => show_insns(&asm, insns_before, out),
            Err(AssembleError::UndefinedLabel { .. }) => {
                start_block(self);
                Ok(())
            }
            Err(e) => {
                let msg = entry.assemble_error(&e);
                entry.items.truncate(items_before);
                entry.lines.remove(&line_no);
                Err(msg)
            }
        }
    }

    /// Assemble and show a finished block; a block that does not assemble is dropped.
    fn end_block(&mut self, out: &mut dyn Write) -> Outcome {
        let (Some(block), Some(idx)) = (self.block.take(), self.current) else {
            return Ok(());
        };
        let entry = &mut self.programs[idx];
        match entry.assemble() {
            Ok(asm) => show_insns(&asm, block.insns_before, out),
            Err(msg) => {
                entry.items.truncate(block.items_before);
                entry.lines.retain(|&l, _| l < block.first_line);
                Err(format!("{msg}\nthe block (lines {}–) was dropped", block.first_line))
            }
        }
    }
}

/// Show instructions `from..` of `asm` as slot, bytes and text.
fn show_insns(asm: &Assembled, from: usize, out: &mut dyn Write) -> Outcome {
    let labels = asm.labels_by_slot();
    for (i, insn) in asm.insns().iter().enumerate().skip(from) {
        let slot = asm.slot_of(i).unwrap_or_default();
        for (_, name) in labels.iter().filter(|(s, _)| *s == slot) {
            say!(out, "{name}:");
        }
        write!(out, "{}", render::insn_lines(slot, insn)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command of the help table reaches its code: run bare, each gives its own answer
    /// (mostly a usage line), never "not dispatched" nor "unknown".
    #[test]
    fn every_command_in_the_help_table_is_dispatched() {
        for c in help::COMMANDS {
            let mut s = Session::new(false, Arc::new(AtomicBool::new(false)));
            let mut out = Vec::new();
            let res = s.execute(&format!(":{}", c.name), &mut out);
            if let Err(e) = &res {
                assert!(!e.contains("not dispatched") && !e.contains("unknown command"), ":{}: {e}", c.name);
            }
            assert!(!c.summary.is_empty() && c.example.starts_with(':') && c.usage.starts_with(&format!(":{}", c.name)), ":{}", c.name);
        }
        // Aliases go through the same table; anything else is unknown.
        for alias in ["h", "?", "exit", "q"] {
            assert!(help::find(alias).is_some(), ":{alias}");
        }
        let mut s = Session::new(false, Arc::new(AtomicBool::new(false)));
        let err = s.execute(":frobnicate", &mut Vec::new()).unwrap_err();
        assert_eq!(err, "unknown command `:frobnicate` (`:help` lists the commands)");
        s.execute(":q", &mut Vec::new()).unwrap();
        assert!(s.quit);
    }
}
