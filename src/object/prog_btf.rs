//! The func and line info of a linked program, from the object's `.BTF.ext`: every piece linked
//! into it, its records moved to where it landed. The object loader hands them, with the
//! object's BTF, to `prog::Program::load` (the one `BPF_PROG_LOAD`), as libbpf loads a program:
//! the kernel then knows the functions' names and prototypes (global subprograms are verified on
//! their own) and the verifier log and `bpftool prog dump` quote the C source.
//!
//! Line info records keep their string offsets into `.BTF`, so they are read from the raw
//! `.BTF.ext` here (the parsed [`BtfExt`] resolves them to strings); sections come in the same
//! order in both.

use super::linker::Placement;
use crate::core_btf::ext::BtfExt;
use std::collections::HashMap;

// The records are the kernel's `struct bpf_func_info` / `struct bpf_line_info`, the same types
// `prog::btf_info` builds for bpfkit's own programs.
use crate::prog::btf_info::{FuncInfoRecord as FuncRec, LineInfoRecord as LineRec};

fn word(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The raw line info records of each `.BTF.ext` section, in file order (`None` if malformed).
pub(crate) fn raw_line_info(data: &[u8]) -> Option<Vec<Vec<LineRec>>> {
    let hdr_len = word(data, 4)? as usize;
    let (off, len) = (word(data, 16)? as usize, word(data, 20)? as usize);
    if len == 0 {
        return Some(Vec::new());
    }
    let start = hdr_len.checked_add(off)?;
    let end = start.checked_add(len)?;
    let block = data.get(start..end)?;
    let rec_size = word(block, 0)? as usize;
    if rec_size < 16 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 4;
    while at < block.len() {
        let n = word(block, at + 4)? as usize;
        at += 8;
        let mut recs = Vec::with_capacity(n.min(block.len() / rec_size));
        for _ in 0..n {
            recs.push(LineRec {
                insn_off: word(block, at)?,
                file_name_off: word(block, at + 4)?,
                line_off: word(block, at + 8)?,
                line_col: word(block, at + 12)?,
            });
            at = at.checked_add(rec_size)?;
        }
        out.push(recs);
    }
    Some(out)
}

/// Func and line info of a linked program: each placed piece's records, moved to where it landed.
pub(crate) fn records(ext: &BtfExt, lines: &[Vec<LineRec>], placed: &[Placement]) -> (Vec<FuncRec>, Vec<LineRec>) {
    let funcs_by_sec: HashMap<&str, usize> =
        ext.func_info.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let lines_by_sec: HashMap<&str, usize> =
        ext.line_info.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut funcs = Vec::new();
    let mut out_lines = Vec::new();
    for p in placed {
        let range = p.first_slot as u64 * 8..(p.first_slot + p.slots) as u64 * 8;
        let moved = |insn_off: u32| (p.start + (insn_off as usize / 8 - p.first_slot)) as u32;
        if let Some(&i) = funcs_by_sec.get(p.section_name.as_str()) {
            for f in ext.func_info[i].records.iter().filter(|f| range.contains(&u64::from(f.insn_off))) {
                funcs.push(FuncRec { insn_off: moved(f.insn_off), type_id: f.type_id.0 });
            }
        }
        if let Some(recs) = lines_by_sec.get(p.section_name.as_str()).and_then(|&i| lines.get(i)) {
            for l in recs.iter().filter(|l| range.contains(&u64::from(l.insn_off))) {
                out_lines.push(LineRec { insn_off: moved(l.insn_off), ..*l });
            }
        }
    }
    funcs.sort_by_key(|f| f.insn_off);
    out_lines.sort_by_key(|l| l.insn_off);
    (funcs, out_lines)
}
