//! Programs under construction (instructions, labels, source locations) and
//! their assembly: label resolution with range checks, slot numbering, and the
//! slot → source-line map the verifier-log explanation uses.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::codec::{encode_into, EncodeError, RawInsn};
use super::model::*;

/// Where an instruction came from: a `bpf_asm!` invocation, a REPL line, or a file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLoc {
    /// A file path, `<repl>`, `<stdin>`, …
    pub origin: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The statement as written (trimmed): what BTF line info and the REPL show for it.
    pub text: Arc<str>,
}

impl fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// An element of a [`Program`]: an instruction or a label definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Label { name: String, loc: Option<SourceLoc> },
    Insn { insn: Insn, loc: Option<SourceLoc> },
}

/// A sequence of instructions and labels, as written; [`Program::assemble`] resolves the labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Program {
    items: Vec<Item>,
}

/// Why a program could not be assembled. Every variant names the label and where it was used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    #[error("{}undefined label `{name}`", at(.loc))]
    UndefinedLabel { name: String, loc: Option<SourceLoc> },
    #[error("{}duplicate label `{name}` (first defined{})", at(.loc), first.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    DuplicateLabel { name: String, loc: Option<SourceLoc>, first: Option<SourceLoc> },
    #[error("{}jump to `{name}` is {distance} slots away, outside the 16-bit offset range (-32768..=32767){}", at(.loc),
        if *.can_use_gotol { "; use `gotol` (a 32-bit unconditional jump) or restructure" } else { "; invert the condition around a `gotol`" })]
    JumpOutOfRange { name: String, distance: i64, loc: Option<SourceLoc>, can_use_gotol: bool },
}

fn at(loc: &Option<SourceLoc>) -> String {
    loc.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
}

impl Program {
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
        let defined = self.items.iter().any(|i| matches!(i, Item::Label { name, .. } if name == "exit"));
        let used = self.insns().any(|i| matches!(i.target(), Some(Target::Label(l)) if l == "exit"));
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
        let mut locs = Vec::with_capacity(n_insns);
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
            locs.push(loc.clone());
        }
        let labels = labels.into_iter().map(|(k, (s, _))| (k.to_owned(), s)).collect();
        Ok(Assembled { insns, locs, slot_of, slots: slot, labels })
    }
}

/// An assembled program: labels resolved, slots numbered. Map references by name remain until load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    insns: Vec<Insn>,
    locs: Vec<Option<SourceLoc>>,
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
        let locs = vec![None; insns.len()];
        Assembled { insns, locs, slot_of, slots: slot, labels: HashMap::new() }
    }

    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

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
    pub fn loc_of_slot(&self, slot: usize) -> Option<&SourceLoc> {
        self.insn_at_slot(slot).and_then(|i| self.locs[i].as_ref())
    }

    pub fn locs(&self) -> &[Option<SourceLoc>] {
        &self.locs
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
