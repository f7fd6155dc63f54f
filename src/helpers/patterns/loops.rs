//! Loops and stack structs: `bpf_loop` with a callback subprogram, a bounded loop the verifier
//! can follow, and zeroing a stack range.
//!
//! `bpf_loop(100, Some(-8), callback)` returns the call site
//!
//! ```text
//! r1 = 100
//! r2 = func[__bpfkit_pN_loop_cb] ll   ; BTF func info is generated at load
//! r3 = r10
//! r3 += -8                            ; the callback's ctx (r3 = 0 without one)
//! r4 = 0
//! call bpf_loop                       ; r0 = iterations run, or a negative errno
//! ```
//!
//! and the subprogram `__bpfkit_pN_loop_cb: <callback>` to append after the main program's last
//! `exit`. The callback receives the index in r1 and the ctx in r2, and must end with
//! `r0 = 0` (continue) or `r0 = 1` (stop) and `exit`.
//!
//! `bounded_loop(R6, 10, body)`:
//!
//! ```text
//!     r6 = 0
//! top:
//!     if r6 >= 10 goto end
//!     <body>                          ; must not write r6
//!     r6 += 1
//!     goto top
//! end:
//! ```
//!
//! `zero_stack(-24, 13)`: the widest aligned store at each position:
//! `*(u64 *)(r10 - 24) = 0; *(u32 *)(r10 - 16) = 0; *(u8 *)(r10 - 12) = 0`.

use super::{check_stack, invalid, Labels, PatternError};
use crate::insn::build::{add64, ja, jmp_if, ld_func, mov64, st};
use crate::insn::{Insn, JmpCond, Program, Reg, Size};

/// A pattern that needs a subprogram: `body` goes where the pattern is used, `subprog` after
/// the program's last `exit` (subprograms follow the main program).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithSubprog {
    /// The instructions that go where the pattern is used.
    pub body: Program,
    /// The subprogram, to append after the program's last `exit`.
    pub subprog: Program,
}

/// Call `callback` `iterations` times through `bpf_loop`, with `r10 + ctx_off` as its ctx.
pub fn bpf_loop(iterations: u32, ctx_off: Option<i16>, callback: Program) -> Result<WithSubprog, PatternError> {
    if !matches!(callback.insns().last(), Some(Insn::Exit)) {
        return invalid("bpf_loop", "the callback must end with `exit` (r0 = 0 to continue, 1 to stop)");
    }
    if iterations > 1 << 23 {
        return invalid("bpf_loop", "bpf_loop refuses more than 2^23 iterations");
    }
    if let Some(off) = ctx_off {
        check_stack("bpf_loop", "the ctx", off, 1, 1)?;
    }
    let cb = Labels::fresh().name("loop_cb");
    let mut body = Program::new();
    body.push(mov64(Reg::R1, iterations as i32));
    body.push(ld_func(Reg::R2, cb.as_str()));
    match ctx_off {
        Some(off) => {
            body.push(mov64(Reg::R3, Reg::R10));
            body.push(add64(Reg::R3, off as i32));
        }
        None => {
            body.push(mov64(Reg::R3, 0));
        }
    }
    body.push(mov64(Reg::R4, 0));
    body.push(super::call("bpf_loop"));
    let mut subprog = Program::new();
    subprog.label(cb);
    subprog.extend(callback);
    Ok(WithSubprog { body, subprog })
}

/// Run `body` with `counter` = 0, 1, …, `n - 1`. The body must not write `counter`.
pub fn bounded_loop(counter: Reg, n: i32, body: Program) -> Result<Program, PatternError> {
    if counter == Reg::R10 {
        return invalid("bounded_loop", "r10 cannot count");
    }
    if n < 0 {
        return invalid("bounded_loop", "the bound must not be negative");
    }
    let l = Labels::fresh();
    let (top, end) = (l.name("top"), l.name("end"));
    let mut p = Program::new();
    p.push(mov64(counter, 0));
    p.label(top.as_str());
    p.push(jmp_if(JmpCond::Ge, counter, n, end.as_str()));
    p.extend(body);
    p.push(add64(counter, 1));
    p.push(ja(top.as_str()));
    p.label(end);
    Ok(p)
}

/// Zero `len` bytes at `r10 + off`.
pub fn zero_stack(off: i16, len: usize) -> Result<Program, PatternError> {
    check_stack("zero_stack", "the range", off, len, 1)?;
    let mut p = Program::new();
    let (mut at, end) = (off as i32, off as i32 + len as i32);
    while at < end {
        let size = [Size::DW, Size::W, Size::H, Size::B]
            .into_iter()
            .find(|s| {
                let n = s.bytes() as i32;
                at % n == 0 && at + n <= end
            })
            .unwrap_or(Size::B);
        p.push(st(size, Reg::R10, at as i16, 0));
        at += size.bytes() as i32;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::build::exit;

    #[test]
    fn zeroing_uses_the_widest_aligned_stores() {
        let p = zero_stack(-24, 13).unwrap();
        let sizes: Vec<Size> = p.insns().map(|i| match i {
            Insn::StoreImm { size, .. } => *size,
            other => panic!("{other:?}"),
        }).collect();
        assert_eq!(sizes, [Size::DW, Size::W, Size::B]);
        assert_eq!(zero_stack(-3, 3).unwrap().insns().count(), 2);
        assert!(zero_stack(-4, 8).is_err());
    }

    #[test]
    fn callbacks_must_exit() {
        assert!(bpf_loop(4, None, Program::new()).is_err());
        let mut cb = Program::new();
        cb.push(mov64(Reg::R0, 0)).push(exit());
        let l = bpf_loop(4, Some(-8), cb).unwrap();
        assert_eq!(l.body.insns().count(), 6);
        assert!(bounded_loop(Reg::R10, 3, Program::new()).is_err());
    }
}
