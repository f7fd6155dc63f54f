//! A REPL session's state — programs as typed and loaded, maps, objects, links — and the
//! typing of instructions: each line is assembled into the current program, and blocks (a
//! label, or a jump to a label not yet defined) are collected until they end. The session
//! knows nothing of the `:commands`: their handlers (in `table`'s modules) borrow it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bpfkit::insn::{parse_program_with, AssembleError, Assembled, Item, ParseOptions, Program};

use bpfkit::attach::Link;
use bpfkit::core_btf::{Btf, TypeId};
use bpfkit::events::PerfBuffer;
use bpfkit::maps::{Map, MapType};
use bpfkit::prog::{Program as LoadedProgram, ProgType};
use std::time::{Duration, Instant};
use super::render;

/// What a command returns: `Err` is printed after `error: `. The REPL and the subcommands share
/// one error type, so a `:command` that runs a subcommand hands its error on unchanged.
pub type Outcome = Result<(), crate::error::CliError>;

/// Write a line of output, turning a write failure into the command's error.
macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        writeln!($out, $($t)*).map_err(|e| $crate::error::CliError::Message(format!("cannot write output: {e}")))?
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
        let loc = e.loc();
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

// ---- what a session holds besides its typed programs ----

/// A program as loaded into the kernel.
pub struct Loaded {
    pub prog: LoadedProgram,
    /// The instructions as assembled here; `None` for a program of an object (`:open`).
    pub asm: Option<Assembled>,
    pub prog_type: ProgType,
}

/// A map of the session, known by its name (the name programs use in `map[NAME]`).
pub struct SessionMap {
    /// The session's name for it: the kernel's name for maps made here, `OBJECT.MAP` for the
    /// maps of an object opened with `:open` (whose kernel names are cut to 15 bytes).
    pub name: String,
    pub map: Map,
    /// Key and value types, for maps created with them.
    pub types: Option<MapTypes>,
    /// A perf event array's per-CPU rings, opened when the map is created (so records wait
    /// for `:watch` as a ring buffer's do) or at its first `:watch`.
    pub perf: Option<PerfBuffer>,
}

impl SessionMap {
    pub fn new(map: Map, types: Option<MapTypes>) -> Result<SessionMap, String> {
        let name = map.name().to_owned();
        SessionMap::named(name, map, types)
    }

    /// A map the session knows as `name`.
    pub fn named(name: String, map: Map, types: Option<MapTypes>) -> Result<SessionMap, String> {
        let perf = if map.map_type() == MapType::PerfEventArray {
            Some(PerfBuffer::new(&map, PERF_PAGES).map_err(|e| format!("opening the perf buffer of map {name}: {e}"))?)
        } else {
            None
        };
        Ok(SessionMap { name, map, types, perf })
    }
}

/// Data pages per CPU of a perf event array's rings.
pub const PERF_PAGES: usize = 8;

/// The BTF a map was created with, to print its elements as typed values.
pub struct MapTypes {
    pub btf: Btf,
    pub key: TypeId,
    pub value: TypeId,
}

impl MapTypes {
    pub fn element(&self, key: &[u8], value: &[u8]) -> String {
        let k = self.btf.format_value(self.key, key).unwrap_or_else(|_| crate::hex::spaced(key, " "));
        let v = self.btf.format_value(self.value, value).unwrap_or_else(|_| crate::hex::spaced(value, " "));
        format!("{k}: {v}")
    }
}

/// An attachment of the session.
pub struct SessionLink {
    /// The session's number for it (`:detach N`).
    pub number: usize,
    pub prog: String,
    pub what: String,
    pub link: Link,
}


/// A number of seconds typed as a command argument (`1`, `0.5`).
pub fn seconds(arg: &str) -> Result<Duration, String> {
    arg.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("`{arg}` is not a number of seconds"))
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
    /// Test cases by program name (`:case`), run by `:test`.
    pub cases: Vec<(String, bpfkit::testing::Case)>,
    /// What `bpfkit::prog::diagnose` made of the last rejection, shown with it and by `:log`.
    pub last_diagnosis: Option<bpfkit::prog::Diagnosis>,
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
            cases: Vec::new(),
            last_diagnosis: None,
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

    /// Session map `name`.
    pub fn map(&self, name: &str) -> Result<&Map, String> {
        self.maps
            .iter()
            .find(|m| m.name == name)
            .map(|m| &m.map)
            .ok_or_else(|| format!("no map `{name}` in this session (`:maps` lists them; `:map create {name} TYPE KEY VALUE MAX` makes one)"))
    }

    /// Sleep `d` in small steps; false if Ctrl-C cut it short.
    pub fn wait(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.was_interrupted() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
        }
        !self.was_interrupted()
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
                return Err(crate::error::CliError::from(format!("program {name} was loaded from object {object} by `:open`; instructions cannot be added to it")));
            }
            self.current = Some(i);
            say!(out, "program {name}: {} instructions so far; new ones are added", self.programs[i].insn_count());
            return Ok(());
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(crate::error::CliError::from(format!("`{name}`: program names take letters, digits, `_` and `.`")));
        }
        self.programs.push(ProgEntry::new(name));
        self.current = Some(self.programs.len() - 1);
        say!(out, "program {name}: type its instructions");
        Ok(())
    }

    /// The start of a new input line: count it (for source locations) and forget an earlier
    /// Ctrl-C.
    pub fn begin_line(&mut self) {
        self.line_no += 1;
        self.interrupted.store(false, Ordering::SeqCst);
    }

    /// `$pid` in a command's words: this process's id.
    pub fn expand(&self, word: &str) -> String {
        word.replace("$pid", &self.pid)
    }

    /// An instruction line (or a label, or a comment) for the current program.
    pub fn instruction(&mut self, text: &str, out: &mut dyn Write) -> Outcome {
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
                Err(msg.into())
            }
        }
    }

    /// Assemble and show a finished block; a block that does not assemble is dropped.
    pub fn end_block(&mut self, out: &mut dyn Write) -> Outcome {
        let (Some(block), Some(idx)) = (self.block.take(), self.current) else {
            return Ok(());
        };
        let entry = &mut self.programs[idx];
        match entry.assemble() {
            Ok(asm) => show_insns(&asm, block.insns_before, out),
            Err(msg) => {
                entry.items.truncate(block.items_before);
                entry.lines.retain(|&l, _| l < block.first_line);
                Err(crate::error::CliError::from(format!("{msg}\nthe block (lines {}–) was dropped", block.first_line)))
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
        write!(out, "{}", render::insn_lines(slot, insn)).map_err(|e| crate::error::CliError::Message(format!("cannot write output: {e}")))?;
    }
    Ok(())
}
