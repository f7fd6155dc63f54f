//! Coverage of a program's test runs: which basic blocks ran and which way each conditional
//! jump went, mapped back to the lines the program was written on.
//!
//! How: the program is rewritten before loading. Each basic block starts by storing 1 to its
//! own byte of a marks area on the stack (below everything the program itself uses, which the
//! verifier reports as its stack depth); each conditional jump gets a byte for "taken" (in a
//! trampoline the jump is redirected to) and one for "not taken" (right after it). The marks are
//! zeroed on entry, and every `exit` ORs them into a one-element array map with atomic ORs —
//! r0 is kept in a stack slot meanwhile — so the map accumulates over any number of runs.
//! Store-immediate instructions need no register, so the program's registers are untouched;
//! only its stack grows (the rewrite says so when 512 bytes are not enough).
//!
//! Programs calling their own subprograms (bpf-to-bpf calls) are not instrumented: each
//! subprogram has its own frame, so marks on the caller's stack would be out of reach.

use std::collections::BTreeSet;
use std::fmt;

use super::TestError;
use crate::insn::build::{atomic, exit, ja, ld_map_value, ldx, st, stx};
use crate::insn::{AtomicOp, Assembled, Call, Imm64, Insn, MapRef, Program, Reg, Size, SourceLoc, Syntax, Target};

/// The name of the map the marks are collected in.
pub(crate) const MAP: &str = "bpfkit_cov";

/// A program rewritten to record its coverage.
pub(crate) struct Instrumented {
    pub program: Program,
    /// First instruction index of each block, in order (the block runs to the next one).
    pub leaders: Vec<usize>,
    /// (instruction index of the jump, its mark bytes: taken, not taken).
    pub branches: Vec<(usize, usize, usize)>,
    /// Bytes of marks (blocks, then two per branch), rounded up to 8.
    pub marks_len: usize,
}

fn jump_target(insns: &[Insn], slot_of: &[usize], i: usize) -> Result<Option<usize>, TestError> {
    let Some(Target::Rel(off)) = insns[i].target() else {
        return Ok(None);
    };
    let slot = slot_of[i] as i64 + insns[i].slots() as i64 + i64::from(*off);
    slot_of.binary_search(&(slot as usize)).map(Some).map_err(|_| TestError::Instrument(format!("instruction {i} jumps into the middle of an instruction (slot {slot})")))
}

/// Rewrite `asm` (whose own stack use is `stack_depth` bytes) to record coverage.
pub(crate) fn instrument(asm: &Assembled, stack_depth: u32) -> Result<Instrumented, TestError> {
    let insns = asm.insns();
    if insns.iter().any(|i| matches!(i, Insn::Call(Call::Local(_)) | Insn::LdImm64 { value: Imm64::Func(_), .. })) {
        return Err(TestError::Instrument("the program calls subprograms of its own; coverage instruments single-function programs (each subprogram has its own stack frame)".into()));
    }
    let slot_of: Vec<usize> = (0..insns.len()).map(|i| asm.slot_of(i).unwrap_or(0)).collect();
    let mut leaders = BTreeSet::from([0usize]);
    let mut branches = Vec::new();
    for (i, insn) in insns.iter().enumerate() {
        let is_jump = matches!(insn, Insn::Ja { .. } | Insn::Gotol { .. } | Insn::JmpIf { .. } | Insn::MayGoto { .. });
        if let Some(t) = jump_target(insns, &slot_of, i)? {
            leaders.insert(t);
        }
        if (is_jump || matches!(insn, Insn::Exit)) && i + 1 < insns.len() {
            leaders.insert(i + 1);
        }
        if matches!(insn, Insn::JmpIf { .. } | Insn::MayGoto { .. }) {
            branches.push(i);
        }
    }
    let leaders: Vec<usize> = leaders.into_iter().collect();
    let marks = leaders.len() + 2 * branches.len();
    let marks_len = marks.div_ceil(8).max(1) * 8;
    // The marks below the program's own stack, then 8 bytes for r0 at exit.
    let own = stack_depth.div_ceil(8) as usize * 8;
    let needed = own + marks_len + 8;
    if needed > 512 {
        return Err(TestError::Instrument(format!(
            "the program uses {own} bytes of stack and coverage of its {} blocks and {} branches needs {} more: over the 512-byte limit",
            leaders.len(),
            branches.len(),
            marks_len + 8
        )));
    }
    let marks_at = -((own + marks_len) as i32); // byte 0 of the marks
    let mark_off = |k: usize| (marks_at + k as i32) as i16;
    let r0_at = (marks_at - 8) as i16;
    let block_of = |i: usize| leaders.partition_point(|&l| l <= i) - 1;
    let label = |k: usize| format!("__bpfkit_cov_b{k}");
    let mut branch_marks = Vec::new();

    let mut p = Program::new();
    for w in 0..marks_len / 8 {
        p.push(st(Size::DW, Reg::R10, mark_off(8 * w), 0));
    }
    let mut trampolines = Program::new();
    for (i, insn) in insns.iter().enumerate() {
        if let Ok(k) = leaders.binary_search(&i) {
            p.label(label(k));
            p.push(st(Size::B, Reg::R10, mark_off(k), 1));
        }
        let loc = asm.loc(i);
        match insn {
            Insn::Exit => {
                p.push_at(stx(Size::DW, Reg::R10, r0_at, Reg::R0), loc.clone());
                p.push_at(ld_map_value(Reg::R1, MapRef::Name(MAP.into()), 0), loc.clone());
                for w in 0..marks_len / 8 {
                    p.push_at(ldx(Size::DW, Reg::R2, Reg::R10, mark_off(8 * w)), loc.clone());
                    p.push_at(atomic(AtomicOp::Or, Size::DW, Reg::R1, (8 * w) as i16, Reg::R2), loc.clone());
                }
                p.push_at(ldx(Size::DW, Reg::R0, Reg::R10, r0_at), loc.clone());
                p.push_at(exit(), loc);
            }
            _ => {
                let mut rewritten = insn.clone();
                let target = jump_target(insns, &slot_of, i)?;
                if let (Some(t), Some(slot)) = (target, rewritten.target_mut()) {
                    *slot = Target::Label(label(block_of(t)));
                }
                if matches!(insn, Insn::JmpIf { .. } | Insn::MayGoto { .. }) {
                    let n = branch_marks.len();
                    let (taken, not_taken) = (leaders.len() + 2 * n, leaders.len() + 2 * n + 1);
                    branch_marks.push((i, taken, not_taken));
                    let trampoline = format!("__bpfkit_cov_t{n}");
                    if let Some(slot) = rewritten.target_mut() {
                        *slot = Target::Label(trampoline.clone());
                    }
                    trampolines.label(trampoline);
                    trampolines.push(st(Size::B, Reg::R10, mark_off(taken), 1));
                    trampolines.push(ja(label(block_of(target.unwrap_or(i + 1)))));
                    p.push_at(rewritten, loc);
                    p.push(st(Size::B, Reg::R10, mark_off(not_taken), 1));
                } else {
                    p.push_at(rewritten, loc);
                }
            }
        }
    }
    p.extend(trampolines);
    Ok(Instrumented { program: p, leaders, branches: branch_marks, marks_len })
}

/// Instruction `i` disassembled, its jump target shown by the label it was written with.
fn with_label(asm: &Assembled, i: usize) -> String {
    let text = crate::insn::format_insn(&asm.insns()[i], Syntax::Llvm);
    let (Some(Target::Rel(off)), Some(slot)) = (asm.insns()[i].target(), asm.slot_of(i)) else {
        return text;
    };
    let dest = slot as i64 + asm.insns()[i].slots() as i64 + i64::from(*off);
    let label = asm.labels_by_slot().into_iter().find(|(s, _)| *s as i64 == dest).map(|(_, l)| l.to_string());
    match (label, text.rsplit_once(" goto ")) {
        (Some(label), Some((head, _))) => format!("{head} goto {label}"),
        _ => text,
    }
}

/// One basic block's coverage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockCoverage {
    /// Its instructions (indices into the assembled program).
    pub insns: std::ops::Range<usize>,
    /// Whether any run executed it.
    pub hit: bool,
}

/// One conditional jump's coverage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BranchCoverage {
    /// The jump's instruction index.
    pub insn: usize,
    /// The jump, disassembled.
    pub text: String,
    /// Where it was written.
    pub loc: Option<SourceLoc>,
    /// Whether some run jumped.
    pub taken: bool,
    /// Whether some run fell through.
    pub not_taken: bool,
}

/// What the runs executed: blocks, branches, and the lines never reached.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Coverage {
    /// Every basic block, in program order.
    pub blocks: Vec<BlockCoverage>,
    /// Every conditional jump.
    pub branches: Vec<BranchCoverage>,
    /// The source locations of instructions no run executed, one per line.
    pub uncovered: Vec<SourceLoc>,
}

impl Coverage {
    pub(crate) fn from_marks(asm: &Assembled, inst: &Instrumented, marks: &[u8]) -> Coverage {
        let n = asm.insns().len();
        let hit = |k: usize| marks.get(k).is_some_and(|&b| b != 0);
        let blocks: Vec<BlockCoverage> = inst
            .leaders
            .iter()
            .enumerate()
            .map(|(k, &start)| BlockCoverage { insns: start..inst.leaders.get(k + 1).copied().unwrap_or(n), hit: hit(k) })
            .collect();
        let branches = inst
            .branches
            .iter()
            .map(|&(i, taken, not_taken)| BranchCoverage {
                insn: i,
                text: with_label(asm, i),
                loc: asm.loc(i),
                taken: hit(taken),
                not_taken: hit(not_taken),
            })
            .collect();
        let mut uncovered: Vec<SourceLoc> = Vec::new();
        for b in blocks.iter().filter(|b| !b.hit) {
            for i in b.insns.clone() {
                if let Some(loc) = asm.loc(i) {
                    if !uncovered.iter().any(|u| u.line == loc.line && u.origin() == loc.origin()) {
                        uncovered.push(loc);
                    }
                }
            }
        }
        Coverage { blocks, branches, uncovered }
    }

    /// (blocks executed, blocks).
    pub fn blocks_hit(&self) -> (usize, usize) {
        (self.blocks.iter().filter(|b| b.hit).count(), self.blocks.len())
    }

    /// (branch directions taken, directions: two per conditional jump).
    pub fn branches_hit(&self) -> (usize, usize) {
        (self.branches.iter().map(|b| usize::from(b.taken) + usize::from(b.not_taken)).sum(), 2 * self.branches.len())
    }

    /// Whether every block ran and every conditional jump went both ways.
    pub fn is_complete(&self) -> bool {
        let (b, bn) = self.blocks_hit();
        let (j, jn) = self.branches_hit();
        b == bn && j == jn
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |a: usize, b: usize| if b == 0 { 100.0 } else { 100.0 * a as f64 / b as f64 };
        let ((b, bn), (j, jn)) = (self.blocks_hit(), self.branches_hit());
        writeln!(f, "coverage: blocks {b}/{bn} ({:.0}%), branches {j}/{jn} ({:.0}%)", pct(b, bn), pct(j, jn))?;
        for br in self.branches.iter().filter(|br| !(br.taken && br.not_taken)) {
            let at = br.loc.as_ref().map(|l| format!("{l}: ")).unwrap_or_else(|| format!("insn {}: ", br.insn));
            let missing = match (br.taken, br.not_taken) {
                (false, false) => "never reached",
                (false, true) => "never taken",
                _ => "never fell through",
            };
            writeln!(f, "  branch {at}`{}` {missing}", br.text)?;
        }
        for loc in &self.uncovered {
            writeln!(f, "  not run: {loc}: {}", loc.text().trim())?;
        }
        Ok(())
    }
}
