//! BTF func info for programs with subprograms. The verifier insists on it when a program takes
//! a subprogram's address (`ld_imm64 rN, func[label]`, the callbacks of `bpf_loop`,
//! `bpf_user_ringbuf_drain`, timers …): it must know where every function starts. bpfkit writes
//! one `FUNC` per subprogram entry, with a `long (void)` prototype (static subprograms' arguments
//! are tracked by the verifier, not read from BTF).

use crate::core_btf::{BtfBuilder, BtfError, IntEncoding, Linkage, LoadedBtf};
use crate::insn::RawInsn;

/// `struct bpf_func_info`: where a function starts and its `FUNC` type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct FuncInfoRecord {
    pub insn_off: u32,
    pub type_id: u32,
}

/// Loaded BTF and the func info records that point into it.
pub(crate) struct FuncInfo {
    pub btf: LoadedBtf,
    pub records: Vec<FuncInfoRecord>,
}

const CALL: u8 = 0x85;
const LD_IMM64: u8 = 0x18;
const PSEUDO_CALL: u8 = 1;
const PSEUDO_FUNC: u8 = 4;

/// The slots where subprograms start (slot 0 included), if the program takes a subprogram's
/// address; `None` when the kernel does not need func info.
pub(crate) fn subprogram_starts(slots: &[RawInsn]) -> Option<Vec<u32>> {
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
    if !takes_address {
        return None;
    }
    starts.sort_unstable();
    starts.dedup();
    Some(starts)
}

/// Build and load BTF with one `FUNC` per start; the first is named after the program.
pub(crate) fn build(prog_name: &str, starts: &[u32]) -> Result<FuncInfo, BtfError> {
    let mut b = BtfBuilder::new();
    let long = b.add_int("long", 8, IntEncoding::Signed, 64)?;
    let proto = b.add_func_proto(long, &[])?;
    let main_name: String = prog_name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let main_name = if main_name.is_empty() || main_name.starts_with(|c: char| c.is_ascii_digit()) { format!("prog_{main_name}") } else { main_name };
    let mut records = Vec::with_capacity(starts.len());
    for &start in starts {
        let name = if start == 0 { main_name.clone() } else { format!("sub_{start}") };
        let linkage = Linkage::Static;
        let func = b.add_func(&name, proto, linkage)?;
        records.push(FuncInfoRecord { insn_off: start, type_id: func.get() });
    }
    Ok(FuncInfo { btf: b.load()?, records })
}
