//! Programs under construction (instructions, labels, source locations) and
//! their assembly: label resolution with range checks, slot numbering, and the
//! slot → source-line map the verifier-log explanation uses.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::codec::{encode_into, EncodeError, RawInsn};
use super::model::*;

/// Where an instruction came from: a `bpf_asm!` invocation, a REPL line, or a file.
///
/// Every location of one parse shares one [`SourceText`] (the origin's name and the whole
/// text), and points at its statement by byte range: no allocation per statement, and one
/// reference count per location (assembly copies every location once).
#[derive(Clone)]
pub struct SourceLoc {
    source: Arc<SourceText>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The statement's byte range in `source.text`.
    start: u32,
    end: u32,
}

/// The text a parse read, and what to call it.
#[derive(Debug)]
pub struct SourceText {
    /// A file path, `<repl>`, `<stdin>`, …
    pub origin: Arc<str>,
    /// The whole text.
    pub text: Box<str>,
}

impl SourceText {
    /// The text `text` read from `origin`, shared by the locations that point into it.
    pub fn new(origin: Arc<str>, text: impl Into<Box<str>>) -> Arc<SourceText> {
        Arc::new(SourceText { origin, text: text.into() })
    }
}

impl SourceLoc {
    /// A location in `source`: `line` and `column`, the statement being `source.text[range]`
    /// (clamped to the text).
    pub fn new(source: Arc<SourceText>, line: u32, column: u32, range: std::ops::Range<usize>) -> SourceLoc {
        let len = source.text.len();
        let end = range.end.min(len);
        let start = range.start.min(end);
        SourceLoc { source, line, column, start: start as u32, end: end as u32 }
    }

    /// A location whose statement is `text`, in a source of its own.
    pub fn single(origin: Arc<str>, line: u32, column: u32, text: &str) -> SourceLoc {
        SourceLoc::new(SourceText::new(origin, text), line, column, 0..text.len())
    }

    /// A file path, `<repl>`, `<stdin>`, …
    pub fn origin(&self) -> &str {
        &self.source.origin
    }

    /// The statement as written (trimmed): what BTF line info and the REPL show for it.
    pub fn text(&self) -> &str {
        self.source.text.get(self.start as usize..self.end as usize).unwrap_or("")
    }
}

impl PartialEq for SourceLoc {
    fn eq(&self, other: &Self) -> bool {
        (self.line, self.column, self.origin(), self.text()) == (other.line, other.column, other.origin(), other.text())
    }
}

impl Eq for SourceLoc {}

impl std::hash::Hash for SourceLoc {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.line, self.column, self.origin(), self.text()).hash(h);
    }
}

impl fmt::Debug for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceLoc").field("origin", &self.origin()).field("line", &self.line).field("column", &self.column).field("text", &self.text()).finish()
    }
}

impl fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin(), self.line, self.column)
    }
}

/// An element of a [`Program`]: an instruction or a label definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A label definition (`name:`), with where it was written.
    Label {
        /// The label's name.
        name: String,
        /// Where it was written, if known.
        loc: Option<SourceLoc>,
    },
    /// An instruction, with where it was written.
    Insn {
        /// The instruction.
        insn: Insn,
        /// Where it was written, if known.
        loc: Option<SourceLoc>,
    },
}

/// A sequence of instructions and labels, as written; [`Program::assemble`] resolves the labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    items: Vec<Item>,
}

/// Why a program could not be assembled. Every variant names the label and where it was used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// A jump or call names a label that is never defined.
    #[error("{}undefined label `{name}`", at(.loc))]
    UndefinedLabel {
        /// The label's name.
        name: String,
        /// Where the jump or call is, if known.
        loc: Option<SourceLoc>,
    },
    /// A label is defined twice; `first` is the first definition.
    #[error("{}duplicate label `{name}` (first defined{})", at(.loc), first.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    DuplicateLabel {
        /// The label's name.
        name: String,
        /// Where the second definition is, if known.
        loc: Option<SourceLoc>,
        /// Where the first definition is, if known.
        first: Option<SourceLoc>,
    },
    /// A 16-bit jump's target is `distance` slots away, beyond the offset field's range.
    #[error("{}jump to `{name}` is {distance} slots away, outside the 16-bit offset range (-32768..=32767){}", at(.loc),
        if *.can_use_gotol { "; use `gotol` (a 32-bit unconditional jump) or restructure" } else { "; invert the condition around a `gotol`" })]
    JumpOutOfRange {
        /// The target label's name.
        name: String,
        /// Slots from the jump to its target.
        distance: i64,
        /// Where the jump is, if known.
        loc: Option<SourceLoc>,
        /// Whether the jump is unconditional, so `gotol` can replace it.
        can_use_gotol: bool,
    },
}

fn at(loc: &Option<SourceLoc>) -> String {
    loc.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
}

impl Program {
    /// An empty program.
    pub fn new() -> Self {
        Program::default()
    }

    /// Append an instruction.
    pub fn push(&mut self, insn: Insn) -> &mut Self {
        self.items.push(Item::Insn { insn, loc: None });
        self
    }

    /// Append an instruction with its source location.
    pub fn push_at(&mut self, insn: Insn, loc: Option<SourceLoc>) -> &mut Self {
        self.items.push(Item::Insn { insn, loc });
        self
    }

    /// Define a label at the current position.
    pub fn label(&mut self, name: impl Into<String>) -> &mut Self {
        self.items.push(Item::Label { name: name.into(), loc: None });
        self
    }

    /// Define a label with its source location.
    pub fn label_at(&mut self, name: impl Into<String>, loc: Option<SourceLoc>) -> &mut Self {
        self.items.push(Item::Label { name: name.into(), loc });
        self
    }

    /// Append all items of another program (e.g. a pattern or a subprogram).
    pub fn extend(&mut self, other: Program) -> &mut Self {
        self.items.extend(other.items);
        self
    }

    /// Append items.
    pub fn push_item(&mut self, item: Item) -> &mut Self {
        self.items.push(item);
        self
    }

    /// The uBPF / bpf_conformance convention: a jump to `exit` where no label of that name
    /// exists targets the program's first `exit` instruction. Defines that label.
    pub(crate) fn define_exit_label_if_used(&mut self) {
        // One pass over the items (this runs on every parse).
        let (mut defined, mut used) = (false, false);
        for item in &self.items {
            match item {
                Item::Label { name, .. } if name == "exit" => defined = true,
                Item::Insn { insn, .. } => used |= matches!(insn.target(), Some(Target::Label(l)) if l == "exit"),
                Item::Label { .. } => {}
            }
        }
        if defined || !used {
            return;
        }
        if let Some(pos) = self.items.iter().position(|i| matches!(i, Item::Insn { insn: Insn::Exit, .. })) {
            let loc = match &self.items[pos] {
                Item::Insn { loc, .. } => loc.clone(),
                Item::Label { .. } => None,
            };
            self.items.insert(pos, Item::Label { name: "exit".into(), loc });
        }
    }

    /// The instructions and labels, in order.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The instructions, without labels.
    pub fn insns(&self) -> impl Iterator<Item = &Insn> {
        self.items.iter().filter_map(|i| match i {
            Item::Insn { insn, .. } => Some(insn),
            Item::Label { .. } => None,
        })
    }

    /// Whether the program has no instructions (labels alone do not count).
    pub fn is_empty(&self) -> bool {
        self.insns().next().is_none()
    }

    /// Resolve labels to relative offsets and number the slots.
    pub fn assemble(&self) -> Result<Assembled, AssembleError> {
        let mut labels: HashMap<&str, (usize, &Option<SourceLoc>)> = HashMap::new();
        let mut slot = 0usize;
        let mut n_insns = 0;
        for item in &self.items {
            match item {
                Item::Label { name, loc } => {
                    if let Some((_, first)) = labels.get(name.as_str()) {
                        return Err(AssembleError::DuplicateLabel {
                            name: name.clone(),
                            loc: loc.clone(),
                            first: (*first).clone(),
                        });
                    }
                    labels.insert(name, (slot, loc));
                }
                Item::Insn { insn, .. } => {
                    slot += insn.slots();
                    n_insns += 1;
                }
            }
        }
        let mut insns = Vec::with_capacity(n_insns);
        let mut locs = Locs::with_capacity(n_insns);
        let mut slot_of = Vec::with_capacity(n_insns);
        let mut slot = 0usize;
        for item in &self.items {
            let Item::Insn { insn, loc } = item else { continue };
            let mut insn = insn.clone();
            let short = insn.has_short_target();
            let can_use_gotol = matches!(insn, Insn::Ja { .. });
            if let Some(target) = insn.target_mut() {
                if let Target::Label(name) = target {
                    let dest = match labels.get(name.as_str()) {
                        Some((s, _)) => *s,
                        None => return Err(AssembleError::UndefinedLabel { name: name.clone(), loc: loc.clone() }),
                    };
                    let distance = dest as i64 - (slot as i64 + 1);
                    let fits = if short { i16::try_from(distance).is_ok() } else { i32::try_from(distance).is_ok() };
                    if !fits {
                        return Err(AssembleError::JumpOutOfRange { name: name.clone(), distance, loc: loc.clone(), can_use_gotol });
                    }
                    *target = Target::Rel(distance as i32);
                }
            }
            slot_of.push(slot);
            slot += insn.slots();
            insns.push(insn);
            locs.push(loc.as_ref());
        }
        let labels = labels.into_iter().map(|(k, (s, _))| (k.to_owned(), s)).collect();
        Ok(Assembled { insns, locs, slot_of, slots: slot, labels })
    }
}

/// Where each instruction of an [`Assembled`] came from, packed: the distinct source texts
/// once, and per instruction an index into them with line, column and statement range. An
/// assembled program then holds one reference count per source text rather than one per
/// instruction (each an atomic operation when made and when dropped: a tenth of the time of
/// text assembly, docs/PERFORMANCE.md).
#[derive(Clone, Debug, Default)]
struct Locs {
    sources: Vec<Arc<SourceText>>,
    packed: Vec<Option<PackedLoc>>,
}

#[derive(Clone, Copy, Debug)]
struct PackedLoc {
    source: u32,
    line: u32,
    column: u32,
    start: u32,
    end: u32,
}

impl Locs {
    fn with_capacity(n: usize) -> Locs {
        Locs { sources: Vec::new(), packed: Vec::with_capacity(n) }
    }

    fn push(&mut self, loc: Option<&SourceLoc>) {
        let packed = loc.map(|l| {
            // Instructions of one parse share one source: compare with the last one first.
            let source = match self.sources.iter().rposition(|s| Arc::ptr_eq(s, &l.source)) {
                Some(i) => i,
                None => {
                    self.sources.push(l.source.clone());
                    self.sources.len() - 1
                }
            };
            PackedLoc { source: source as u32, line: l.line, column: l.column, start: l.start, end: l.end }
        });
        self.packed.push(packed);
    }

    fn get(&self, i: usize) -> Option<SourceLoc> {
        let p = (*self.packed.get(i)?)?;
        let source = self.sources.get(p.source as usize)?.clone();
        Some(SourceLoc { source, line: p.line, column: p.column, start: p.start, end: p.end })
    }

    fn none(n: usize) -> Locs {
        Locs { sources: Vec::new(), packed: vec![None; n] }
    }
}

impl PartialEq for Locs {
    fn eq(&self, other: &Self) -> bool {
        self.packed.len() == other.packed.len() && (0..self.packed.len()).all(|i| self.get(i) == other.get(i))
    }
}

impl Eq for Locs {}

/// An assembled program: labels resolved, slots numbered. Map references by name remain until load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    insns: Vec<Insn>,
    locs: Locs,
    slot_of: Vec<usize>,
    slots: usize,
    labels: HashMap<String, usize>,
}

impl Assembled {
    /// Wrap already-resolved instructions (e.g. decoded bytes).
    pub fn from_insns(insns: Vec<Insn>) -> Self {
        let mut slot_of = Vec::with_capacity(insns.len());
        let mut slot = 0;
        for i in &insns {
            slot_of.push(slot);
            slot += i.slots();
        }
        let locs = Locs::none(insns.len());
        Assembled { insns, locs, slot_of, slots: slot, labels: HashMap::new() }
    }

    /// The assembled instructions, in order.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// Mutable access to the assembled instructions (e.g. to patch immediates).
    pub fn insns_mut(&mut self) -> &mut [Insn] {
        &mut self.insns
    }

    /// Number of 8-byte slots.
    pub fn slot_count(&self) -> usize {
        self.slots
    }

    /// The slot index at which instruction `i` starts.
    pub fn slot_of(&self, i: usize) -> Option<usize> {
        self.slot_of.get(i).copied()
    }

    /// The instruction index covering `slot` (the verifier's log counts slots).
    pub fn insn_at_slot(&self, slot: usize) -> Option<usize> {
        match self.slot_of.binary_search(&slot) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) if slot < self.slots => Some(i - 1),
            Err(_) => None,
        }
    }

    /// Where the instruction at `slot` was written, if known.
    pub fn loc_of_slot(&self, slot: usize) -> Option<SourceLoc> {
        self.insn_at_slot(slot).and_then(|i| self.loc(i))
    }

    /// Where instruction `i` was written, if known.
    pub fn loc(&self, i: usize) -> Option<SourceLoc> {
        self.locs.get(i)
    }

    /// Every instruction's location, in order.
    pub fn locs(&self) -> impl Iterator<Item = Option<SourceLoc>> + '_ {
        (0..self.insns.len()).map(|i| self.locs.get(i))
    }

    /// Whether any instruction has a location (programs parsed from text do; decoded bytes
    /// and builder-made instructions do not).
    pub fn has_locs(&self) -> bool {
        self.locs.packed.iter().any(Option::is_some)
    }

    /// The slot a label points at.
    pub fn label_slot(&self, name: &str) -> Option<usize> {
        self.labels.get(name).copied()
    }

    /// Labels by slot, sorted by slot then name (for listings).
    pub fn labels_by_slot(&self) -> Vec<(usize, &str)> {
        let mut v: Vec<_> = self.labels.iter().map(|(k, s)| (*s, k.as_str())).collect();
        v.sort();
        v
    }

    /// Map names referenced by `ld_imm64` instructions, with the instruction index.
    pub fn map_references(&self) -> Vec<(usize, &str)> {
        self.insns
            .iter()
            .enumerate()
            .filter_map(|(i, insn)| match insn {
                Insn::LdImm64 { value: Imm64::Map(MapRef::Name(n)), .. }
                | Insn::LdImm64 { value: Imm64::MapValue { map: MapRef::Name(n), .. }, .. } => Some((i, n.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Encode to wire slots. Fails on map names not yet bound to fds.
    pub fn encode(&self) -> Result<Vec<RawInsn>, EncodeError> {
        let mut out = Vec::with_capacity(self.slots);
        for i in &self.insns {
            encode_into(i, &mut out)?;
        }
        Ok(out)
    }

    /// Encode to bytes (8 per slot).
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(self.slots * 8);
        for slot in self.encode()? {
            out.extend_from_slice(&slot.to_bytes());
        }
        Ok(out)
    }
}

impl From<Vec<Insn>> for Program {
    fn from(insns: Vec<Insn>) -> Self {
        Program { items: insns.into_iter().map(|insn| Item::Insn { insn, loc: None }).collect() }
    }
}

impl FromIterator<Item> for Program {
    fn from_iter<T: IntoIterator<Item = Item>>(iter: T) -> Self {
        Program { items: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use crate::insn::{parse_program_with, ParseOptions};

    /// Assembly packs the locations (one reference per source text); every instruction's
    /// location comes back equal to the one the parse gave it, across two sources.
    #[test]
    fn locations_survive_assembly_across_sources() {
        let mut a = parse_program_with("mov r0, 0\n  jeq r1, 2, out\n", &ParseOptions::new().origin("a.s")).unwrap();
        let b = parse_program_with("# spliced\nout: exit\n", &ParseOptions::new().origin("b.s").first_line(10)).unwrap();
        a.extend(b);
        let want: Vec<_> = a.items().iter().filter_map(|i| match i {
            super::Item::Insn { loc, .. } => Some(loc.clone()),
            super::Item::Label { .. } => None,
        }).collect();
        let asm = a.assemble().unwrap();
        assert_eq!(asm.locs().collect::<Vec<_>>(), want);
        assert_eq!(asm.locs.sources.len(), 2, "one entry per source text");
        let last = asm.loc_of_slot(2).unwrap();
        assert_eq!((last.origin(), last.line, last.column, last.text()), ("b.s", 11, 6, "out: exit"));
        let second = asm.loc(1).unwrap();
        assert_eq!((second.to_string().as_str(), second.text()), ("a.s:2:3", "jeq r1, 2, out"));
        assert!(asm.has_locs() && !super::Assembled::from_insns(asm.insns().to_vec()).has_locs());
    }
}

impl AssembleError {
    /// Where the offending label was used or defined, if known.
    pub fn loc(&self) -> Option<&SourceLoc> {
        match self {
            AssembleError::UndefinedLabel { loc, .. } | AssembleError::DuplicateLabel { loc, .. } | AssembleError::JumpOutOfRange { loc, .. } => {
                loc.as_ref()
            }
        }
    }

    /// Always `None`: text, labels and encodings fail in bpfkit, never in a syscall (the same
    /// `errno()` as every bpfkit error has, so callers need not know which layer failed).
    pub fn errno(&self) -> Option<i32> {
        None
    }
}
