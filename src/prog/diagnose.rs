//! The verifier-error explainer: a rejection's decisive line (and the log around it) turned into
//! the mistake it points at, its cause in the program's own terms (registers, offsets, helper
//! names), the fix, and the line of the user's source where the verifier stopped.
//!
//! The verifier's messages are not an ABI, so each rule matches the phrases kernels from 5.x to
//! today print (several wordings where they changed), and a rejection no rule knows gives
//! `None`: the verifier's own text is then all there is. `tests/verifier_diagnose.rs` keeps a
//! broken program for every [`Mistake`], asserts the diagnosis against this kernel's verifier,
//! and loads the program with the suggested fix applied.

use std::fmt;

use super::verifier::VerifierRejection;
use crate::insn::SourceLoc;

/// The mistake a verifier rejection points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mistake {
    /// A map lookup's result used without checking it for NULL.
    NullCheckMissing,
    /// A packet byte read or written without proving it lies before `data_end`.
    PacketOutOfBounds,
    /// A register read before anything was written to it.
    UninitializedRegister,
    /// r1–r5 read after a call, which leaves them unreadable.
    ClobberedByCall,
    /// `exit` without a value in r0.
    ExitWithoutReturnValue,
    /// A stack access beyond the 512 bytes below r10 (or above it).
    StackOutOfBounds,
    /// A map value accessed past its size.
    MapValueOutOfBounds,
    /// A number used as a pointer.
    ScalarDereference,
    /// r10, the frame pointer, written.
    FramePointerWrite,
    /// A loop the verifier proved never ends.
    InfiniteLoop,
    /// More than the verifier's budget of instructions to explore (1 M), or too many branches.
    TooComplex,
    /// A helper this program type may not call.
    HelperNotAllowed,
    /// A helper argument of the wrong kind (a number where a map, a stack pointer, … is due).
    WrongArgumentType,
    /// A reference (ring-buffer reservation, socket, kptr) not released on some path.
    UnreleasedReference,
    /// Arithmetic on a pointer the kernel forbids changing (a map, the context, …).
    PointerArithmeticProhibited,
    /// A variable offset whose range the verifier cannot bound, added to a pointer.
    UnboundedOffset,
    /// A context field that does not exist, or may not be read or written, at that offset.
    ContextAccess,
    /// The program returns a value its type does not allow.
    ReturnValueOutOfRange,
    /// Instructions no path reaches.
    UnreachableCode,
    /// The last instruction is neither `exit` nor a jump.
    FallsOffTheEnd,
    /// A GPL-only helper called from a program whose license is not GPL-compatible.
    GplOnlyHelper,
    /// A helper that may sleep, called from a program that may not.
    SleepableHelper,
    /// A write to packet data from a program type that may only read it.
    PacketWriteNotAllowed,
    /// `bpf_spin_lock` taken and not released, or a call made while holding it.
    SpinLockMisuse,
    /// An access not aligned to its size where alignment is enforced.
    Misaligned,
    /// Memory a helper returned (a `bpf_ringbuf_reserve` record, …) accessed past its size.
    MemoryOutOfBounds,
}

/// What a rejection means: the mistake, its cause, the fix, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// Which mistake.
    pub mistake: Mistake,
    /// Why the verifier refused, in the program's terms.
    pub cause: String,
    /// What to change.
    pub fix: String,
    /// The source line of the instruction the verifier stopped at, when known.
    pub at: Option<SourceLoc>,
    /// That instruction, disassembled.
    pub insn: Option<String>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "why: {}\nfix: {}", self.cause, self.fix)?;
        match (&self.at, &self.insn) {
            (Some(at), Some(insn)) => write!(f, "\nat:  {at}: `{insn}`"),
            (Some(at), None) => write!(f, "\nat:  {at}"),
            (None, Some(insn)) => write!(f, "\nat:  `{insn}`"),
            (None, None) => Ok(()),
        }
    }
}

impl VerifierRejection {
    /// The mistake this rejection points at, explained; `None` for a message no rule knows.
    pub fn diagnose(&self) -> Option<Diagnosis> {
        let prog_type = self.prog_type.map(|t| t.to_string());
        let (mistake, cause, fix) = diagnose_text(&self.reason, &self.log, prog_type.as_deref())?;
        Some(Diagnosis { mistake, cause, fix, at: self.loc.clone(), insn: self.insn_text.clone() })
    }
}

/// `R5` → `r5` (the first register named in `text`).
fn register(text: &str) -> Option<String> {
    let at = text.find('R')?;
    let digits: String = text[at + 1..].chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("r{digits}"))
}

/// The number after `key` (`off=-520` → -520).
fn number_after(text: &str, key: &str) -> Option<i64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest.find(|c: char| !(c == '-' || c.is_ascii_digit())).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The helper named in `text` (`bpf_get_stackid#27` → `bpf_get_stackid`).
fn helper_name(text: &str) -> Option<&str> {
    let at = text.find("bpf_")?;
    let rest = &text[at..];
    Some(&rest[..rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len())])
}

/// The type the verifier says a register held (`invalid mem access 'scalar'` → `scalar`).
fn quoted(text: &str) -> Option<&str> {
    let start = text.find('\'')? + 1;
    let end = start + text[start..].find('\'')?;
    Some(&text[start..end])
}

fn diagnose_text(reason: &str, log: &str, prog_type: Option<&str>) -> Option<(Mistake, String, String)> {
    use Mistake::*;
    let r = reason;
    let reg = register(r).unwrap_or_else(|| "the register".into());
    let s = |a: String, b: String| Some((a, b));
    let (mistake, (cause, fix)) = if (r.contains("invalid mem access") || (r.contains(" type=") && r.contains("expected="))) && r.contains("_or_null") {
        let what = quoted(r).or_else(|| r.split(" type=").nth(1).and_then(|t| t.split_whitespace().next())).unwrap_or("map_value_or_null");
        (NullCheckMissing, s(format!("{reg} may be NULL here ({what}): a map lookup returns NULL when the key is absent, and this path did not test for it"), format!("test the result right after the call, before any use: `if {reg} == 0 goto out`"))?)
    } else if r.contains("offset is outside of the packet") || r.contains("invalid access to packet") {
        // `invalid access to packet, off=13 size=1, R2(id=0,off=0,r=0)`: the access, then the
        // register; an id other than 0 means a variable was added to it.
        let line = log.lines().rev().find(|l| l.contains("invalid access to packet")).unwrap_or(r);
        let off = number_after(line, "off=").map(|o| o.to_string()).unwrap_or_else(|| "those".into());
        let size = number_after(line, "size=").unwrap_or(1);
        let need = number_after(line, "off=").map(|o| o + size).map(|n| n.to_string()).unwrap_or_else(|| "N".into());
        if number_after(line, "(id=").is_some_and(|id| id != 0) {
            (PacketOutOfBounds, s(format!("{reg} was moved by a variable amount after the bounds check, so the check no longer covers it"), format!("compare again after moving it: `r4 = {reg}; r4 += {size}; if r4 > data_end goto out`, then access {reg}"))?)
        } else {
            (PacketOutOfBounds, s(format!("{reg} reads packet byte(s) at offset {off} without a comparison proving the packet is that long"), format!("compare first: `r4 = data; r4 += {need}; if r4 > data_end goto out`, then access bytes below data + {need}"))?)
        }
    } else if r.contains("!read_ok") && reg == "r0" && log_last_insn_is_exit(log) {
        (ExitWithoutReturnValue, s("r0 holds no value at `exit`: a program returns r0, and nothing set it on this path".into(), "set r0 before every `exit` (`r0 = 0`, or the action your program type expects)".into())?)
    } else if r.contains("!read_ok") && matches!(reg.as_str(), "r1" | "r2" | "r3" | "r4" | "r5") && log_has_call_before_read(log) {
        (ClobberedByCall, s(format!("{reg} is read after a helper call: a call leaves r1–r5 unreadable (they held its arguments)"), format!("keep the value in r6–r9 (callee-saved) before the call, and read that afterwards instead of {reg}"))?)
    } else if r.contains("!read_ok") {
        (UninitializedRegister, s(format!("{reg} is read but never written on this path"), format!("assign {reg} before this instruction on every path that reaches it"))?)
    } else if r.starts_with("combined stack size of") {
        let calls = number_after(r, "combined stack size of ").map(|n| n.to_string()).unwrap_or_else(|| "the".into());
        let bytes = number_after(r, " is ").map(|n| n.to_string()).unwrap_or_else(|| "more than 512".into());
        (StackOutOfBounds, s(format!("the frames of {calls} nested calls use {bytes} bytes together, and they all share one 512-byte stack"), "make the frames smaller (keep big buffers in a per-CPU array map instead) or nest fewer calls".into())?)
    } else if (r.contains("stack") && (r.contains("invalid write") || r.contains("invalid read") || r.contains("invalid stack off"))) && number_after(r, "off=").or_else(|| number_after(r, "off ")).is_some_and(|o| !(-512..0).contains(&o)) {
        let off = number_after(r, "off=").or_else(|| number_after(r, "off ")).unwrap_or(0);
        (StackOutOfBounds, s(format!("the stack access at r10{off:+} is outside the stack: a program has 512 bytes, from r10-512 up to r10"), "use offsets between -512 and -1 from r10 (keep big buffers in a per-CPU array map instead)".into())?)
    } else if r.contains("invalid access to map value") || (r.contains("min value is outside of the allowed memory range") && log_mentions(log, "map_value")) || (r.contains("max value is outside of the allowed memory range") && log_mentions(log, "map_value")) {
        let size = number_after(log, "value_size=").map(|v| v.to_string()).unwrap_or_else(|| "its".into());
        let off = number_after(log, "off=").map(|v| format!(" at offset {v}")).unwrap_or_default();
        (MapValueOutOfBounds, s(format!("the access{off} goes past the end of the map value, which is {size} bytes"), format!("keep accesses within the value size ({size} bytes), or create the map with a larger value"))?)
    } else if (r.contains("min value is outside of the allowed memory range") || r.contains("max value is outside of the allowed memory range")) && log.contains("invalid access to memory") {
        let line = log.lines().find(|l| l.contains("invalid access to memory")).unwrap_or_default();
        let size = number_after(line, "mem_size=").map(|v| v.to_string()).unwrap_or_else(|| "its".into());
        let off = number_after(line, " off=").map(|v| format!(" at offset {v}")).unwrap_or_default();
        (MemoryOutOfBounds, s(format!("the access{off} goes past the end of the {size}-byte memory {reg} points to (a record bpf_ringbuf_reserve returned, or a helper's buffer)"), format!("keep accesses within the {size} bytes asked for, or reserve a larger record"))?)
    } else if r.contains("invalid mem access 'scalar'") || r.contains("invalid mem access 'inv'") {
        (ScalarDereference, s(format!("{reg} holds a number (a scalar), not a pointer the verifier knows: a number cannot be used as an address"), "load through a pointer the verifier gave you (r10, the context, a checked map value, a packet pointer), or read arbitrary memory with bpf_probe_read_kernel".into())?)
    } else if r.contains("frame pointer is read only") {
        (FramePointerWrite, s("r10 is written: it is the read-only frame pointer".into(), "copy it instead (`r1 = r10; r1 += -8`) and change the copy".into())?)
    } else if r.contains("infinite loop detected") || r.starts_with("back-edge from insn") {
        (InfiniteLoop, s("the verifier reached the same state twice in a loop: it can never end (or, before 5.3, any backward jump)".into(), "make the loop bounded: change a register each iteration and leave when it passes a constant (`if r6 < 16 goto again`), or use bpf_loop".into())?)
    } else if r.contains("BPF program is too large") || r.contains("too complex") {
        let cause = if r.contains("jumps is too complex") {
            "the verifier had more than 8192 branches waiting to be explored: a loop whose end it cannot see (a walk to data_end, a bound from the packet) adds one each iteration"
        } else {
            "the verifier explored more than its budget of 1000000 instructions (every path of every loop iteration counts)"
        };
        (TooComplex, s(cause.into(), "bound loops by small constants, move long loops into bpf_loop (the callback is verified once), or split the work with tail calls".into())?)
    } else if r.contains("cannot use helper") || r.contains("unknown func") {
        let h = helper_name(r).unwrap_or("this helper");
        let ty = prog_type.unwrap_or("this program type's");
        (HelperNotAllowed, s(format!("{h} is not available to {ty} programs (each program type has its own set of helpers)"), format!("use a helper this type allows (`bpfkit features --helpers` lists them), or a program type that may call {h}"))?)
    } else if r.contains(" type=") && r.contains("expected=") {
        let got = r.split(" type=").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or("?");
        let want = r.split("expected=").nth(1).unwrap_or("?");
        // The kernel lists every kind of memory a buffer argument may point at: say "memory".
        let kinds: Vec<&str> = want.split(',').map(str::trim).collect();
        let fix = if kinds.contains(&"map_ptr") {
            format!("pass the map in {reg}: `{reg} = map[NAME] ll`")
        } else if kinds.contains(&"fp") {
            format!("point {reg} at memory: a stack buffer (`{reg} = r10; {reg} += -8`, its bytes written first when the helper reads them), a map value or the packet")
        } else {
            format!("pass {want} in {reg}")
        };
        let wanted = if kinds.contains(&"fp") && kinds.len() > 2 { format!("a pointer to memory ({want})") } else { want.to_string() };
        (WrongArgumentType, s(format!("{reg} is a {got} but the helper expects {wanted}"), fix)?)
    } else if r.contains("reference leak") || r.contains("Unreleased reference") {
        (UnreleasedReference, s("a reference the program acquired (a bpf_ringbuf_reserve record, a socket lookup, a kptr) is still held at exit on some path".into(), "release it on every path before exit: bpf_ringbuf_submit or bpf_ringbuf_discard for a reserve, bpf_sk_release for a socket".into())?)
    } else if r.contains("pointer arithmetic on") && r.contains("prohibited") {
        let what = r.split("pointer arithmetic on ").nth(1).and_then(|t| t.split_whitespace().next()).unwrap_or("this pointer");
        (PointerArithmeticProhibited, s(format!("{reg} is a {what}: that kind of pointer may not be moved"), "pass it as it is (a map pointer goes straight to a helper); do arithmetic on pointers to memory: the stack, a map value, the packet".into())?)
    } else if r.contains("unbounded min value") || r.contains("unbounded memory access") || r.contains("min value is negative") {
        (UnboundedOffset, s("a variable offset whose range the verifier cannot bound is added to a pointer (or used as a size)".into(), "bound it first: `r0 &= 63` (a mask) or `if r0 > 63 goto out` (a check) so that every value stays inside the object".into())?)
    } else if r.contains("dereference of modified ctx ptr") {
        let off = number_after(r, "off=").map(|v| format!(" by {v}")).unwrap_or_default();
        (ContextAccess, s(format!("{reg} is the context pointer moved{off}: the verifier rewrites context reads into the kernel's real fields, so they must be made at a constant offset from the unmodified pointer"), format!("read the field as `*(u32 *)({reg} + OFFSET)` from the pointer as the program received it (copy it, `r6 = r1`, but never add to it)"))?)
    } else if r.contains("invalid bpf_context access") {
        let off = number_after(r, "off=").map(|v| v.to_string()).unwrap_or_else(|| "that".into());
        if log_last_insn_is_store(log) {
            (PacketWriteNotAllowed, s(format!("the program writes its context at offset {off}, which this program type may only read (a socket filter sees packets read-only)"), "read the field instead, or use a program type that may change packets (tc, XDP) — for a socket filter, the packet is read with loads and the verdict returned in r0".into())?)
        } else {
            (ContextAccess, s(format!("offset {off} of the context is no field this program type may access (or not with that size)"), "use the context struct's field offsets for this program type (`bpfkit btf dump xdp_md`, `helpers::patterns::ctx_field`)".into())?)
        }
    } else if r.contains("At program exit the register R0") || r.contains("should have been in") {
        let range = r.rsplit("should have been in ").next().unwrap_or("the allowed range");
        (ReturnValueOutOfRange, s(format!("r0 at exit may lie outside {range}, the values this program type may return"), format!("return a value in {range}: set r0 to one of them before every exit"))?)
    } else if r.starts_with("unreachable insn") {
        let n = number_after(r, "unreachable insn ").map(|v| v.to_string()).unwrap_or_else(|| "some".into());
        (UnreachableCode, s(format!("instruction {n} is never reached (dead code after an exit or an unconditional jump)"), "remove it, or jump to it from a path that should run it".into())?)
    } else if r.contains("last insn is not an exit or jmp") || r.contains("jump out of range") {
        (FallsOffTheEnd, s("the program's last instruction is neither exit nor a jump: a path runs off its end".into(), "end every path with `exit` (with r0 set)".into())?)
    } else if r.contains("GPL-restricted") || r.contains("non-GPL compatible") {
        (GplOnlyHelper, s("this helper is GPL-only and the program's license is not GPL-compatible".into(), "load with a GPL-compatible license (`LoadOptions::license(\"GPL\")`, or `Dual BSD/GPL`) if you can, or avoid the helper".into())?)
    } else if r.contains("might sleep") || r.contains("sleepable") {
        (SleepableHelper, s("this helper may sleep (it can fault in user memory), and this program runs where it must not".into(), "use the non-sleeping variant (bpf_probe_read_user for bpf_copy_from_user), or load a sleepable program (`ProgFlags::SLEEPABLE` on a type that allows it)".into())?)
    } else if r.contains("spin_lock") || r.contains("spin_unlock") || r.contains("while holding a lock") {
        (SpinLockMisuse, s("bpf_spin_lock must be released by bpf_spin_unlock on every path, with no calls or exits in between".into(), "pair each bpf_spin_lock with bpf_spin_unlock in straight-line code and call nothing while holding it".into())?)
    } else if r.contains("misaligned") {
        (Misaligned, s("an access at an offset that is not a multiple of its size, where alignment is enforced".into(), "align the offset to the access size (8-byte loads at multiples of 8), or read smaller pieces".into())?)
    } else {
        return None;
    };
    Some((mistake, cause, fix))
}

/// Whether the instruction the verifier stopped at (the last instruction line) is `exit`.
fn log_last_insn_is_exit(log: &str) -> bool {
    last_insn(log).is_some_and(|l| l.contains("exit"))
}

/// Whether it is a store (`*(… *)(…) = …`).
fn log_last_insn_is_store(log: &str) -> bool {
    last_insn(log).is_some_and(|l| l.split_once(") ").is_some_and(|(_, text)| text.trim_start().starts_with("*(")))
}

/// Whether a call comes before the rejected instruction in the log's walk.
fn log_has_call_before_read(log: &str) -> bool {
    let insns: Vec<&str> = log.lines().filter(|l| l.split_once(": (").is_some_and(|(n, _)| n.trim().parse::<usize>().is_ok())).collect();
    insns.len() > 1 && insns[..insns.len() - 1].iter().any(|l| l.contains(") call "))
}

fn last_insn(log: &str) -> Option<&str> {
    log.lines().rev().find(|l| l.split_once(": (").is_some_and(|(n, _)| n.trim().parse::<usize>().is_ok()))
}

fn log_mentions(log: &str, what: &str) -> bool {
    log.contains(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_wordings_are_known_too() {
        // 5.x printed `inv` for scalars and `back-edge` for any loop.
        assert_eq!(diagnose_text("R1 invalid mem access 'inv'", "", None).unwrap().0, Mistake::ScalarDereference);
        assert_eq!(diagnose_text("back-edge from insn 3 to 1", "", None).unwrap().0, Mistake::InfiniteLoop);
        assert_eq!(diagnose_text("R0 invalid mem access 'map_value_or_null'", "", None).unwrap().0, Mistake::NullCheckMissing);
        assert_eq!(diagnose_text("something new", "", None), None);
    }

    #[test]
    fn details_come_from_the_message() {
        assert_eq!(register("R10 off=-520"), Some("r10".into()));
        assert_eq!(number_after("invalid write to stack R10 off=-520 size=8", "off="), Some(-520));
        assert_eq!(helper_name("program of this type cannot use helper bpf_get_stackid#27"), Some("bpf_get_stackid"));
        assert_eq!(quoted("R0 invalid mem access 'map_value_or_null'"), Some("map_value_or_null"));
    }
}
