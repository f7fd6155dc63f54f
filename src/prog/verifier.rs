//! Explaining a verifier rejection: the decisive line of the log, the failing instruction's
//! slot, and the source line it was written on.

use std::fmt;
use std::io;

use crate::insn::{format_insn, Assembled, Call, Insn, SourceLoc, Syntax};

/// A verifier rejection, summarised.
#[derive(Debug)]
pub struct VerifierRejection {
    /// The verifier's decisive line (`invalid write to stack R10 off=-520 size=8`).
    pub reason: String,
    /// The slot of the last instruction the verifier reached.
    pub slot: Option<usize>,
    /// Where that instruction was written.
    pub loc: Option<SourceLoc>,
    /// That instruction, disassembled.
    pub insn_text: Option<String>,
    /// The whole log.
    pub log: String,
    /// The errno of PROG_LOAD.
    pub errno: io::Error,
    /// The type the program was loaded as (the explainer names it).
    pub prog_type: Option<super::ProgType>,
}

impl fmt::Display for VerifierRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(slot) = self.slot {
            write!(f, " at insn {slot}")?;
            if let Some(t) = &self.insn_text {
                write!(f, " `{t}`")?;
            }
        }
        if let Some(loc) = &self.loc {
            write!(f, " ({loc})")?;
        }
        Ok(())
    }
}

/// Lines the verifier prints after the decision, which are not the reason.
fn is_epilogue(line: &str) -> bool {
    line.starts_with("processed ")
        || line.starts_with("verification time")
        || line.starts_with("stack depth")
        || line.starts_with("max_states_per_insn")
        || line.starts_with("mark_precise")
        // After "infinite loop detected", the two states it compared.
        || line.starts_with("cur state:")
        || line.starts_with("old state:")
        || line.is_empty()
}

/// Summarise a verifier log against the program that was loaded.
pub fn explain(log: &str, asm: &Assembled, errno: io::Error) -> VerifierRejection {
    let lines: Vec<&str> = log.lines().map(str::trim_end).collect();
    let reason = lines.iter().rev().find(|l| !is_epilogue(l)).map(|l| l.to_string()).unwrap_or_else(|| errno.to_string());
    // Instruction lines look like `12: (7b) *(u64 *)(r10 -520) = r1`.
    let walked = lines.iter().rev().find_map(|l| {
        let (n, _) = l.split_once(": (")?;
        n.trim().parse::<usize>().ok()
    });
    // Checks of the control-flow graph run before the walk: the message names the instruction.
    let slot = walked.or_else(|| {
        if let Some(n) = reason.strip_prefix("unreachable insn ") {
            return n.trim().parse().ok();
        }
        if reason.starts_with("last insn is not an exit or jmp") {
            return asm.slot_count().checked_sub(1);
        }
        None
    });
    let loc = slot.and_then(|s| asm.loc_of_slot(s));
    // Helper calls by name (`call bpf_map_lookup_elem`), as the verifier's log names them.
    let insn_text = slot.and_then(|s| asm.insn_at_slot(s)).map(|i| match &asm.insns()[i] {
        Insn::Call(Call::Helper(id)) => crate::helpers::by_id(*id as u32).map(|h| format!("call {}", h.name)).unwrap_or_else(|| format_insn(&asm.insns()[i], Syntax::Llvm)),
        insn => format_insn(insn, Syntax::Llvm),
    });
    VerifierRejection { reason, slot, loc, insn_text, log: log.to_string(), errno, prog_type: None }
}
