//! Lab 14.2 — a verifier-error resolver (tutorial/ch14-testing.md): thirty slips that
//! newcomers to eBPF make, each a small program the kernel's verifier rejects. For each, the
//! rejection goes through `VerifierRejection::diagnose()` — which mistake, why in the
//! program's terms, the fix, and the source line — the diagnosis is asserted, and the program
//! with the suggested fix applied is loaded. 26 distinct kinds of mistake.
//!
//! Run as root: `cargo run --example lab_14_2`. The same code is a doctest of the chapter.

use bpfkit::bpf_asm;
use bpfkit::core_btf::{BtfBuilder, IntEncoding, Member};
use bpfkit::insn::Program as Insns;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadError, LoadOptions, Mistake, ProgFlags, ProgType, Program};
use std::collections::HashSet;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A slip: what went wrong in words, the mistake the explainer must name, and the program
/// before and after the fix.
struct Slip {
    title: &'static str,
    mistake: Mistake,
    prog_type: ProgType,
    broken: Insns,
    fixed: Insns,
}

fn slip(title: &'static str, mistake: Mistake, prog_type: ProgType, broken: Insns, fixed: Insns) -> Slip {
    Slip { title, mistake, prog_type, broken, fixed }
}

/// `r0 = lookup(map, key 0)`, no check: what most of the slips start from.
fn lookup(map: &str) -> Insns {
    bpf_asm! {
        *(u32 *)(r10 - 4) = 0
        r1 = map[{bpfkit::insn::MapRef::Name(map.into())}] ll
        r2 = r10
        r2 += -4
        call bpf_map_lookup_elem
    }
}

fn slips() -> Vec<Slip> {
    use Mistake::*;
    let (xdp, tp) = (ProgType::Xdp, ProgType::Tracepoint);
    vec![
        slip("used a lookup's result without a NULL check", NullCheckMissing, xdp,
            bpf_asm! {
                {lookup("counts")}
                r1 = *(u64 *)(r0 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                {lookup("counts")}
                if r0 == 0 goto out
                r1 = *(u64 *)(r0 + 0)
            out:
                r0 = 2
                exit
            }),
        slip("passed a maybe-NULL value on to a helper", NullCheckMissing, xdp,
            bpf_asm! {
                {lookup("counts")}
                r3 = r0                         // copy counts[0] ...
                r1 = map[counts] ll
                r2 = r10
                r2 += -4
                r4 = 0
                call bpf_map_update_elem        // ... back into counts[0]
                r0 = 2
                exit
            },
            bpf_asm! {
                {lookup("counts")}
                r3 = r0
                if r3 == 0 goto out
                r1 = map[counts] ll
                r2 = r10
                r2 += -4
                r4 = 0
                call bpf_map_update_elem
            out:
                r0 = 2
                exit
            }),
        slip("read the packet before checking its length", PacketOutOfBounds, xdp,
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r0 = *(u8 *)(r2 + 23)           // IPv4 protocol
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r4 = r2
                r4 += 24
                if r4 > r3 goto out
                r0 = *(u8 *)(r2 + 23)
            out:
                r0 = 2
                exit
            }),
        slip("moved the packet pointer after the check", PacketOutOfBounds, xdp,
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r4 = r2
                r4 += 15
                if r4 > r3 goto out
                r5 = *(u8 *)(r2 + 14)
                r5 &= 0xf                       // IPv4 header length, in words
                r5 <<= 2
                r2 += r5                        // skip the header to the transport
                r0 = *(u8 *)(r2 + 14)
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r4 = r2
                r4 += 15
                if r4 > r3 goto out
                r5 = *(u8 *)(r2 + 14)
                r5 &= 0xf
                r5 <<= 2
                r2 += r5
                r4 = r2
                r4 += 15
                if r4 > r3 goto out             // checked again, after the move
                r0 = *(u8 *)(r2 + 14)
            out:
                r0 = 2
                exit
            }),
        slip("read a register nothing wrote", UninitializedRegister, xdp,
            bpf_asm! {
                r0 = r7
                exit
            },
            bpf_asm! {
                r7 = 2
                r0 = r7
                exit
            }),
        slip("used r1 (the context) after a call", ClobberedByCall, xdp,
            bpf_asm! {
                call bpf_ktime_get_ns
                r2 = *(u32 *)(r1 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                r6 = r1                         // r6-r9 survive calls
                call bpf_ktime_get_ns
                r2 = *(u32 *)(r6 + 0)
                r0 = 2
                exit
            }),
        slip("returned without setting r0", ExitWithoutReturnValue, xdp,
            bpf_asm! {
                r6 = 2
                exit
            },
            bpf_asm! {
                r0 = 2
                exit
            }),
        slip("put a 520-byte buffer on the stack", StackOutOfBounds, xdp,
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 520) = r1
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 512) = r1
                r0 = 2
                exit
            }),
        slip("nested two functions with 400-byte frames", StackOutOfBounds, xdp,
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 400) = r1
                call local parse
                r0 = 2
                exit
            parse:
                r1 = 0
                *(u64 *)(r10 - 400) = r1
                r0 = 0
                exit
            },
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 200) = r1
                call local parse
                r0 = 2
                exit
            parse:
                r1 = 0
                *(u64 *)(r10 - 200) = r1
                r0 = 0
                exit
            }),
        slip("read past the end of a map value", MapValueOutOfBounds, xdp,
            bpf_asm! {
                {lookup("counts")}
                if r0 == 0 goto out
                r1 = *(u64 *)(r0 + 8)           // the value is 8 bytes
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                {lookup("counts")}
                if r0 == 0 goto out
                r1 = *(u64 *)(r0 + 0)
            out:
                r0 = 2
                exit
            }),
        slip("wrote past a ring-buffer record", MemoryOutOfBounds, xdp,
            bpf_asm! {
                r1 = map[events] ll
                r2 = 8                          // an 8-byte record ...
                r3 = 0
                call bpf_ringbuf_reserve
                if r0 == 0 goto out
                r1 = 0
                *(u64 *)(r0 + 8) = r1           // ... and its second word
                r1 = r0
                r2 = 0
                call bpf_ringbuf_submit
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = map[events] ll
                r2 = 16
                r3 = 0
                call bpf_ringbuf_reserve
                if r0 == 0 goto out
                r1 = 0
                *(u64 *)(r0 + 8) = r1
                r1 = r0
                r2 = 0
                call bpf_ringbuf_submit
            out:
                r0 = 2
                exit
            }),
        slip("used a number as a pointer", ScalarDereference, xdp,
            bpf_asm! {
                r1 = 0x1000
                r0 = *(u64 *)(r1 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = 0x1000
                *(u64 *)(r10 - 8) = r1
                r0 = *(u64 *)(r10 - 8)
                r0 = 2
                exit
            }),
        slip("wrote to the frame pointer", FramePointerWrite, xdp,
            bpf_asm! {
                r10 += -8
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = r10
                r1 += -8
                r0 = 2
                exit
            }),
        slip("wrote a loop that never ends", InfiniteLoop, xdp,
            bpf_asm! {
                r0 = 2
            again:
                r1 = r0
                goto again
            },
            bpf_asm! {
                r1 = 0
            again:
                r1 += 1
                if r1 < 16 goto again
                r0 = 2
                exit
            }),
        slip("looped two million times", TooComplex, xdp,
            bpf_asm! {
                r1 = 0
            again:
                r1 += 1
                if r1 < 2000000 goto again
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = 0
            again:
                r1 += 1
                if r1 < 1000 goto again
                r0 = 2
                exit
            }),
        slip("called tc's helper from XDP", HelperNotAllowed, xdp,
            bpf_asm! {
                r2 = 12
                r3 = r10
                r3 += -8
                r4 = 2
                call bpf_skb_load_bytes         // the EtherType, as a tc program reads it
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = 12
                r3 = r10
                r3 += -8
                r4 = 2
                call bpf_xdp_load_bytes         // XDP's own
                r0 = 2
                exit
            }),
        slip("passed a number where the map goes", WrongArgumentType, xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = 0
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r0 = 2
                exit
            },
            bpf_asm! {
                {lookup("counts")}
                r0 = 2
                exit
            }),
        slip("reserved a record and never submitted it", UnreleasedReference, xdp,
            bpf_asm! {
                r1 = map[events] ll
                r2 = 8
                r3 = 0
                call bpf_ringbuf_reserve
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = map[events] ll
                r2 = 8
                r3 = 0
                call bpf_ringbuf_reserve
                if r0 == 0 goto out
                r1 = r0
                r2 = 0
                call bpf_ringbuf_discard
            out:
                r0 = 2
                exit
            }),
        slip("added an offset to a map pointer", PointerArithmeticProhibited, xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 1
                r1 = map[counts] ll
                r1 += 8                         // "the second element"
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r0 = 2
                exit
            },
            bpf_asm! {
                *(u32 *)(r10 - 4) = 1           // the key says which element
                r1 = map[counts] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r0 = 2
                exit
            }),
        slip("indexed a map value by a random number", UnboundedOffset, xdp,
            bpf_asm! {
                {lookup("table")}
                if r0 == 0 goto out
                r6 = r0
                call bpf_get_prandom_u32
                r6 += r0
                r0 = *(u8 *)(r6 + 0)
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                {lookup("table")}
                if r0 == 0 goto out
                r6 = r0
                call bpf_get_prandom_u32
                r0 &= 63                        // the value is 64 bytes
                r6 += r0
                r0 = *(u8 *)(r6 + 0)
            out:
                r0 = 2
                exit
            }),
        slip("read a context field that does not exist", ContextAccess, xdp,
            bpf_asm! {
                r2 = *(u32 *)(r1 + 64)          // xdp_md has 24 bytes
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 12)          // rx_queue_index
                r0 = 2
                exit
            }),
        slip("moved the context pointer to a field", ContextAccess, xdp,
            bpf_asm! {
                r1 += 12
                r2 = *(u32 *)(r1 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 12)
                r0 = 2
                exit
            }),
        slip("returned 2 from a cgroup program (0 or 1)", ReturnValueOutOfRange, ProgType::CgroupSkb,
            bpf_asm! {
                r0 = 2
                exit
            },
            bpf_asm! {
                r0 = 1
                exit
            }),
        slip("left dead code after exit", UnreachableCode, xdp,
            bpf_asm! {
                r0 = 2
                exit
                r0 = 1
                exit
            },
            bpf_asm! {
                r0 = 2
                exit
            }),
        slip("let the last path fall off the end", FallsOffTheEnd, xdp,
            bpf_asm! {
                r0 = 2
                if r1 != 0 goto out
                exit
            out:
                r0 = 1
            },
            bpf_asm! {
                r0 = 2
                if r1 != 0 goto out
                exit
            out:
                r0 = 1
                exit
            }),
        slip("called a GPL-only helper without the GPL", GplOnlyHelper, tp,
            bpf_asm! {
                r1 = r10
                r1 += -8
                r2 = 8
                r3 = 0
                call bpf_probe_read_kernel
                r0 = 0
                exit
            },
            bpf_asm! {
                r1 = r10
                r1 += -8
                r2 = 8
                r3 = 0
                call bpf_probe_read_kernel
                r0 = 0
                exit
            }),
        slip("called a sleeping helper from a tracepoint", SleepableHelper, tp,
            bpf_asm! {
                r1 = r10
                r1 += -8
                r2 = 8
                r3 = 0
                call bpf_copy_from_user
                r0 = 0
                exit
            },
            bpf_asm! {
                r1 = r10
                r1 += -8
                r2 = 8
                r3 = 0
                call bpf_probe_read_user
                r0 = 0
                exit
            }),
        slip("wrote to __sk_buff from a socket filter", PacketWriteNotAllowed, ProgType::SocketFilter,
            bpf_asm! {
                r2 = 0
                *(u32 *)(r1 + 8) = r2           // __sk_buff.mark
                r0 = 0
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 8)
                r0 = 0
                exit
            }),
        slip("returned holding a spin lock", SpinLockMisuse, xdp,
            bpf_asm! {
                {lookup("locked")}
                if r0 == 0 goto out
                r1 = r0
                call bpf_spin_lock
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                {lookup("locked")}
                if r0 == 0 goto out
                r6 = r0
                r1 = r0
                call bpf_spin_lock
                r1 = r6
                call bpf_spin_unlock
            out:
                r0 = 2
                exit
            }),
        slip("stored 8 bytes at r10-12 (strict alignment)", Misaligned, xdp,
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 12) = r1
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 16) = r1
                r0 = 2
                exit
            }),
    ]
}

/// How each slip is loaded: strict alignment for the alignment slip; the GPL slip's broken
/// form without a GPL-compatible license.
fn options(s: &Slip, broken: bool) -> LoadOptions {
    let opts = LoadOptions::new("slip", s.prog_type);
    match s.mistake {
        Mistake::Misaligned => opts.flags(ProgFlags::STRICT_ALIGNMENT),
        Mistake::GplOnlyHelper if broken => opts.license("Proprietary"),
        _ => opts,
    }
}

/// An array whose value is `struct { struct bpf_spin_lock lock; u32 n; }`, described in BTF:
/// the verifier finds the lock through it.
fn locked_map() -> Result<Map, Error> {
    let mut b = BtfBuilder::new();
    let u32_t = b.add_int("u32", 4, IntEncoding::Unsigned, 32)?;
    let lock = b.add_struct("bpf_spin_lock", 4, &[Member::new("val", u32_t, 0)])?;
    let value = b.add_struct("locked", 8, &[Member::new("lock", lock, 0), Member::new("n", u32_t, 32)])?;
    let btf = b.load()?;
    Ok(Map::create(&MapSpec::new("locked", MapType::Array, 4, 8, 1).btf(&btf, u32_t.get(), value.get())?)?)
}

fn main() -> Result<(), Error> {
    if !bpfkit::features::can_use_bpf("Lab 14.2") {
        return Ok(());
    }
    let counts = Map::create(&MapSpec::new("counts", MapType::Hash, 4, 8, 64))?;
    let table = Map::create(&MapSpec::new("table", MapType::Array, 4, 64, 1))?;
    let events = Map::create(&MapSpec::new("events", MapType::RingBuf, 0, 0, 4096))?;
    let locked = locked_map()?;
    let maps = [&counts, &table, &events, &locked];
    let (mut kinds, mut loaded) = (HashSet::new(), 0);
    let slips = slips();
    println!("{:>2} {:<44} {:<28} {:<9} the verifier said", "#", "slip", "mistake", "at");
    for (n, s) in slips.iter().enumerate() {
        let Err(LoadError::Verifier { rejection, .. }) = Program::load(&s.broken.assemble()?, &maps, &options(s, true)) else {
            panic!("{}: the broken program was not rejected by the verifier", s.title);
        };
        let d = rejection.diagnose().unwrap_or_else(|| panic!("{}: not diagnosed: {}", s.title, rejection.reason));
        let at = d.at.as_ref().map(|l| format!("line {}", l.line)).unwrap_or_else(|| "-".into());
        println!("{:>2} {:<44} {:<28} {:<9} {}", n + 1, s.title, format!("{:?}", d.mistake), at, rejection.reason);
        println!("{:>6} {}\n{:>6} {}", "why:", d.cause, "fix:", d.fix);
        assert_eq!(d.mistake, s.mistake, "{}: {}", s.title, rejection.reason);
        // Only the checks made on the whole program have no instruction to point at.
        let whole_program = matches!(d.mistake, Mistake::TooComplex | Mistake::UnreleasedReference) || rejection.reason.starts_with("combined stack");
        assert!(d.at.is_some() || whole_program, "{}: no source line", s.title);
        Program::load(&s.fixed.assemble()?, &maps, &options(s, false)).map_err(|e| format!("{}: the fixed program: {e}", s.title))?;
        kinds.insert(d.mistake);
        loaded += 1;
    }
    println!("\n{} slips, {} kinds of mistake, each explained; {loaded} fixed programs loaded", slips.len(), kinds.len());
    assert!(kinds.len() >= 20 && loaded == slips.len());
    Ok(())
}
