//! The BTF a program is loaded with: func info (where each function starts) and line info (the
//! source statement of every instruction). With line info the verifier's log quotes bpfkit's
//! source — `; r0 = *(u32 *)(r1 + 8) @ tests/foo.rs:12` — above the instructions it checks. Func
//! info is required when a program takes a subprogram's address (`ld_imm64 rN, func[label]`, the
//! callbacks of `bpf_loop`, `bpf_user_ringbuf_drain`, timers …). Each function gets a `FUNC` with
//! a `long (void)` prototype: static subprograms' arguments are tracked by the verifier, not
//! read from BTF.

use crate::core_btf::{BtfBuilder, BtfError, IntEncoding, Linkage};
use crate::insn::{Assembled, RawInsn};

/// `struct bpf_func_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct FuncInfoRecord {
    pub insn_off: u32,
    pub type_id: u32,
}

/// `struct bpf_line_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct LineInfoRecord {
    pub insn_off: u32,
    pub file_name_off: u32,
    pub line_off: u32,
    /// `line << 10 | column`.
    pub line_col: u32,
}

/// Loaded BTF (its fd, shared: load options are cloned) and the records that point into it.
#[derive(Clone, Debug)]
pub(crate) struct ProgBtf {
    pub btf: std::sync::Arc<std::os::fd::OwnedFd>,
    pub funcs: Vec<FuncInfoRecord>,
    pub lines: Vec<LineInfoRecord>,
}

const CALL: u8 = 0x85;
const LD_IMM64: u8 = 0x18;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_FUNC: u8 = 4;

/// The slots where functions start (slot 0 included), and whether the program takes a
/// subprogram's address (then the kernel requires func info).
pub(crate) fn function_starts(slots: &[RawInsn]) -> (Vec<u32>, bool) {
    let mut takes_address = false;
    let mut starts = vec![0u32];
    let mut i = 0usize;
    while i < slots.len() {
        let s = &slots[i];
        let src = s.regs >> 4;
        let target = |imm: i32| -> Option<u32> { (i as i64 + imm as i64 + 1).try_into().ok() };
        if s.code == CALL && src == PSEUDO_CALL {
            starts.extend(target(s.imm));
        } else if s.code == LD_IMM64 && src == PSEUDO_FUNC {
            takes_address = true;
            starts.extend(target(s.imm));
        }
        i += if s.code == LD_IMM64 { 2 } else { 1 };
    }
    starts.sort_unstable();
    starts.dedup();
    (starts, takes_address)
}

/// A C identifier from a program or label name.
fn ident(name: &str, fallback: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{fallback}_{s}")
    } else {
        s
    }
}

/// Build and load the program's BTF: a `FUNC` per function start (named after the program, or
/// the label at the start), and a line record per instruction that has a source location.
pub(crate) fn build(prog_name: &str, asm: &Assembled, starts: &[u32]) -> Result<ProgBtf, BtfError> {
    let mut b = BtfBuilder::new();
    let (funcs, lines) = add_program(&mut b, prog_name, asm, starts)?;
    Ok(ProgBtf { btf: std::sync::Arc::new(b.load()?.into_fd()), funcs, lines })
}

/// Add one program's functions and source strings to `b` (which may hold other programs' and
/// maps' types too, as an object file's `.BTF` does); its func and line records, with
/// instruction offsets in slots.
pub(crate) fn add_program(b: &mut BtfBuilder, prog_name: &str, asm: &Assembled, starts: &[u32]) -> Result<(Vec<FuncInfoRecord>, Vec<LineInfoRecord>), BtfError> {
    let long = b.add_int("long", 8, IntEncoding::Signed, 64)?;
    let proto = b.add_func_proto(long, &[])?;
    let labels = asm.labels_by_slot();
    let mut funcs = Vec::with_capacity(starts.len());
    for &start in starts {
        let name = if start == 0 {
            ident(prog_name, "prog")
        } else {
            labels.iter().find(|(s, _)| *s == start as usize).map(|(_, l)| ident(l, "sub")).unwrap_or_else(|| format!("sub_{start}"))
        };
        let func = b.add_func(&name, proto, Linkage::Static)?;
        funcs.push(FuncInfoRecord { insn_off: start, type_id: func.get() });
    }
    let mut lines = Vec::new();
    let empty = b.add_string("")?;
    for (i, loc) in asm.locs().enumerate() {
        let Some(slot) = asm.slot_of(i) else { continue };
        let rec = match loc {
            Some(loc) => LineInfoRecord {
                insn_off: slot as u32,
                file_name_off: b.add_string(loc.origin())?,
                line_off: b.add_string(loc.text())?,
                line_col: (loc.line << 10) | loc.column.min(0x3ff),
            },
            // Every function start needs a line record, known or not.
            None if starts.contains(&(slot as u32)) => LineInfoRecord { insn_off: slot as u32, file_name_off: empty, line_off: empty, line_col: 0 },
            None => continue,
        };
        lines.push(rec);
    }
    Ok((funcs, lines))
}
