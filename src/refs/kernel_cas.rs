//! Atomic read-modify-write of one map value, done by the kernel: a `BPF_PROG_TYPE_SYSCALL`
//! program, run through `BPF_PROG_TEST_RUN` in the calling thread, looks the key up and applies
//! `cmpxchg` or `atomic_fetch_add` to the value's memory — the same instructions a BPF program
//! updating the value uses, so the two are atomic against each other.
//!
//! The context the program reads and writes back (`u64` slots after the key, which is padded to
//! 8 bytes):
//!
//! ```text
//! key[kp] | op (0 cmpxchg, 1 fetch_add) | expected | new (or addend) | old (out) | found (out)
//! ```

use super::RefError;
use crate::insn::parse_program;
use crate::maps::Map;
use crate::prog::{LoadOptions, ProgFlags, ProgType, Program, TestRun};

/// What one run did.
pub(crate) struct CasResult {
    /// Whether the key exists.
    pub found: bool,
    /// The value before the operation (when found).
    pub old: u64,
}

/// The loaded program for one map, key size and word width.
pub(crate) struct KernelCas {
    prog: Program,
    key_padded: usize,
    map: String,
}

impl KernelCas {
    /// Loads the program for `map`'s values as `width`-byte words (4 or 8) at offset 0.
    pub(crate) fn load(map: &Map, width: usize) -> Result<KernelCas, RefError> {
        let key_padded = (map.key_size() as usize).div_ceil(8) * 8;
        let text = program_text(map.name(), key_padded, width);
        let unsupported = |why: String| RefError::Unsupported { map: map.name().to_string(), what: "the in-kernel compare-and-swap", why };
        let program = parse_program(&text).map_err(|e| unsupported(format!("bpfkit generated an invalid program: {e}")))?;
        let assembled = program.assemble().map_err(|e| unsupported(format!("bpfkit generated an invalid program: {e}")))?;
        let opts = LoadOptions::new("bpfkit_cas", ProgType::Syscall).flags(ProgFlags::SLEEPABLE);
        let prog = Program::load(&assembled, &[map], &opts)?;
        Ok(KernelCas { prog, key_padded, map: map.name().to_string() })
    }

    /// Runs `op` (0: compare `expected` and exchange for `new`; 1: add `new`) on `key`'s value.
    pub(crate) fn run(&self, key: &[u8], op: u64, expected: u64, new: u64) -> Result<CasResult, RefError> {
        let mut ctx = vec![0u8; self.key_padded + 40];
        ctx[..key.len()].copy_from_slice(key);
        for (i, v) in [op, expected, new].into_iter().enumerate() {
            let at = self.key_padded + 8 * i;
            ctx[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        }
        let out = self.prog.test_run(&TestRun::default().ctx(ctx))?;
        let word = |i: usize| -> Result<u64, RefError> {
            let at = self.key_padded + 8 * i;
            let bytes = out.ctx_out.get(at..at + 8).ok_or_else(|| RefError::Size { map: self.map.clone(), got: out.ctx_out.len(), want: self.key_padded + 40 })?;
            Ok(u64::from_ne_bytes(bytes.try_into().unwrap_or_default()))
        };
        Ok(CasResult { old: word(3)?, found: word(4)? == 1 })
    }
}

/// The program, in bpfkit's grammar (see the module documentation for the context layout).
fn program_text(map: &str, key_padded: usize, width: usize) -> String {
    let (op, expected, new, old, found) = (key_padded, key_padded + 8, key_padded + 16, key_padded + 24, key_padded + 32);
    let mut t = String::from("r6 = r1\n");
    for i in (0..key_padded).step_by(8) {
        t += &format!("r1 = *(u64 *)(r6 + {i})\n*(u64 *)(r10 - {}) = r1\n", key_padded - i);
    }
    t += &format!("r1 = map[{map}] ll\nr2 = r10\nr2 += -{key_padded}\ncall bpf_map_lookup_elem\nif r0 == 0 goto missing\nr2 = r0\n");
    t += &format!("r3 = *(u64 *)(r6 + {op})\n");
    if width == 8 {
        t += &format!("r1 = *(u64 *)(r6 + {new})\nif r3 == 1 goto add\nr0 = *(u64 *)(r6 + {expected})\nr0 = cmpxchg_64(r2 + 0, r0, r1)\n*(u64 *)(r6 + {old}) = r0\ngoto done\n");
        t += &format!("add:\nr1 = atomic_fetch_add((u64 *)(r2 + 0), r1)\n*(u64 *)(r6 + {old}) = r1\n");
    } else {
        t += &format!("r1 = *(u32 *)(r6 + {new})\nif r3 == 1 goto add\nr0 = *(u32 *)(r6 + {expected})\nw0 = cmpxchg32_32(r2 + 0, w0, w1)\n*(u64 *)(r6 + {old}) = r0\ngoto done\n");
        t += &format!("add:\nw1 = atomic_fetch_add((u32 *)(r2 + 0), w1)\n*(u64 *)(r6 + {old}) = r1\n");
    }
    t += &format!("done:\n*(u64 *)(r6 + {found}) = 1\nr0 = 0\nexit\nmissing:\n*(u64 *)(r6 + {found}) = 0\nr0 = 0\nexit\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_widths_assemble() {
        for (key, width) in [(8, 8), (16, 4), (8, 4)] {
            let text = program_text("counts", key, width);
            let p = parse_program(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            p.assemble().unwrap();
        }
        // The 8-byte form uses the 64-bit cmpxchg, the 4-byte one the 32-bit form.
        assert!(program_text("m", 8, 8).contains("cmpxchg_64"));
        assert!(program_text("m", 8, 4).contains("cmpxchg32_32"));
    }
}
