//! The verifier-error explainer (`bpfkit::prog::diagnose`) against the kernel's own verifier:
//! each case is a broken program the kernel rejects, the diagnosis asserted (which mistake,
//! which line), and the program with the suggested fix applied, which the kernel loads.

mod support;

use bpfkit::bpf_asm;
use bpfkit::core_btf::{BtfBuilder, IntEncoding, Member};
use bpfkit::insn::Program as Insns;
use bpfkit::maps::{Map, MapSpec, MapType};
use bpfkit::prog::{LoadError, LoadOptions, Mistake, ProgFlags, ProgType, Program};

struct Case {
    mistake: Mistake,
    /// Words the cause or the fix must contain (the explanation is specific, not generic).
    says: &'static [&'static str],
    opts: LoadOptions,
    broken: Insns,
    fixed: Insns,
}

fn case(mistake: Mistake, says: &'static [&'static str], prog_type: ProgType, broken: Insns, fixed: Insns) -> Case {
    Case { mistake, says, opts: LoadOptions::new("broken", prog_type), broken, fixed }
}

fn cases() -> Vec<Case> {
    let xdp = ProgType::Xdp;
    let tp = ProgType::Tracepoint;
    vec![
        case(Mistake::NullCheckMissing, &["NULL", "if r0 == 0"], xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[h] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r1 = *(u64 *)(r0 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[h] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                if r0 == 0 goto out
                r1 = *(u64 *)(r0 + 0)
            out:
                r0 = 2
                exit
            }),
        case(Mistake::PacketOutOfBounds, &["data_end", "14"], xdp,
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r0 = *(u8 *)(r2 + 13)
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r4 = r2
                r4 += 14
                if r4 > r3 goto out
                r0 = *(u8 *)(r2 + 13)
            out:
                r0 = 2
                exit
            }),
        case(Mistake::UninitializedRegister, &["r5", "never"], xdp,
            bpf_asm! {
                r0 = r5
                exit
            },
            bpf_asm! {
                r5 = 0
                r0 = r5
                exit
            }),
        case(Mistake::ClobberedByCall, &["r1", "call"], xdp,
            bpf_asm! {
                r6 = r1
                call bpf_get_prandom_u32
                r0 = *(u32 *)(r1 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                r6 = r1
                call bpf_get_prandom_u32
                r0 = *(u32 *)(r6 + 0)
                r0 = 2
                exit
            }),
        case(Mistake::ExitWithoutReturnValue, &["r0", "exit"], xdp,
            bpf_asm! {
                r1 = 0
                exit
            },
            bpf_asm! {
                r0 = 2
                exit
            }),
        case(Mistake::StackOutOfBounds, &["512", "-520"], xdp,
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
        case(Mistake::MapValueOutOfBounds, &["8", "value"], xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[m] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                if r0 == 0 goto out
                r1 = *(u64 *)(r0 + 8)
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[m] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                if r0 == 0 goto out
                r1 = *(u64 *)(r0 + 0)
            out:
                r0 = 2
                exit
            }),
        case(Mistake::ScalarDereference, &["r1", "number"], xdp,
            bpf_asm! {
                r1 = 4096
                r0 = *(u64 *)(r1 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = 4096
                *(u64 *)(r10 - 8) = r1
                r0 = *(u64 *)(r10 - 8)
                r0 = 2
                exit
            }),
        case(Mistake::FramePointerWrite, &["r10", "read-only"], xdp,
            bpf_asm! {
                r10 = 0
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = r10
                r1 += -8
                r0 = 2
                exit
            }),
        case(Mistake::InfiniteLoop, &["loop", "bounded"], xdp,
            bpf_asm! {
                r0 = 0
            again:
                r1 = r0
                goto again
            },
            bpf_asm! {
                r0 = 0
            again:
                r0 += 1
                if r0 < 16 goto again
                r0 = 2
                exit
            }),
        case(Mistake::TooComplex, &["1000000", "bpf_loop"], xdp,
            bpf_asm! {
                r6 = 0
            again:
                r6 += 1
                if r6 < 2000000 goto again
                r0 = 2
                exit
            },
            bpf_asm! {
                r6 = 0
            again:
                r6 += 1
                if r6 < 2000 goto again
                r0 = 2
                exit
            }),
        case(Mistake::TooComplex, &["8192", "bound"], xdp,
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
            next:                               // to the first zero byte, however far
                r4 = r2
                r4 += 1
                if r4 > r3 goto done
                r5 = *(u8 *)(r2 + 0)
                if r5 == 0 goto done
                r2 += 1
                goto next
            done:
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r6 = 0
            next:
                r4 = r2
                r4 += 1
                if r4 > r3 goto done
                r5 = *(u8 *)(r2 + 0)
                if r5 == 0 goto done
                r2 += 1
                r6 += 1
                if r6 < 64 goto next
            done:
                r0 = 2
                exit
            }),
        case(Mistake::HelperNotAllowed, &["bpf_get_stackid", "xdp"], xdp,
            bpf_asm! {
                r2 = map[m] ll
                r3 = 0
                call bpf_get_stackid
                r0 = 2
                exit
            },
            bpf_asm! {
                call bpf_get_prandom_u32
                r0 = 2
                exit
            }),
        case(Mistake::WrongArgumentType, &["r1", "map"], xdp,
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
                *(u32 *)(r10 - 4) = 0
                r1 = map[m] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r0 = 2
                exit
            }),
        case(Mistake::UnreleasedReference, &["bpf_ringbuf_submit", "reserve"], xdp,
            bpf_asm! {
                r1 = map[ring] ll
                r2 = 8
                r3 = 0
                call bpf_ringbuf_reserve
                if r0 == 0 goto out
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = map[ring] ll
                r2 = 8
                r3 = 0
                call bpf_ringbuf_reserve
                if r0 == 0 goto out
                r1 = r0
                r2 = 0
                call bpf_ringbuf_submit
            out:
                r0 = 2
                exit
            }),
        case(Mistake::PointerArithmeticProhibited, &["map", "pointer"], xdp,
            bpf_asm! {
                r1 = map[m] ll
                r1 += 8
                r0 = 2
                exit
            },
            bpf_asm! {
                r1 = map[m] ll
                r0 = 2
                exit
            }),
        case(Mistake::UnboundedOffset, &["&=", "bound"], xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[big] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
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
                *(u32 *)(r10 - 4) = 0
                r1 = map[big] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                if r0 == 0 goto out
                r6 = r0
                call bpf_get_prandom_u32
                r0 &= 63
                r6 += r0
                r0 = *(u8 *)(r6 + 0)
            out:
                r0 = 2
                exit
            }),
        case(Mistake::ContextAccess, &["context", "offset"], xdp,
            bpf_asm! {
                r0 = *(u32 *)(r1 + 100)
                r0 = 2
                exit
            },
            bpf_asm! {
                r0 = *(u32 *)(r1 + 4)
                r0 = 2
                exit
            }),
        case(Mistake::ReturnValueOutOfRange, &["[0, 1]", "r0"], ProgType::CgroupSkb,
            bpf_asm! {
                r0 = 5
                exit
            },
            bpf_asm! {
                r0 = 1
                exit
            }),
        case(Mistake::UnreachableCode, &["never", "dead"], xdp,
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
        case(Mistake::FallsOffTheEnd, &["exit", "last"], xdp,
            bpf_asm! {
                r0 = 2
                if r0 == 2 goto out
                exit
            out:
                r0 = 1
            },
            bpf_asm! {
                r0 = 2
                if r0 == 2 goto out
                exit
            out:
                r0 = 1
                exit
            }),
        case(Mistake::GplOnlyHelper, &["GPL", "license"], tp,
            bpf_asm! {
                r1 = r10
                r1 += -16
                r2 = 16
                r3 = 0
                call bpf_probe_read_kernel
                r0 = 0
                exit
            },
            bpf_asm! {
                r1 = r10
                r1 += -16
                r2 = 16
                r3 = 0
                call bpf_probe_read_kernel
                r0 = 0
                exit
            }),
        case(Mistake::SleepableHelper, &["sleep", "sleepable"], tp,
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
        case(Mistake::PacketWriteNotAllowed, &["write", "socket filter"], ProgType::SocketFilter,
            bpf_asm! {
                r6 = r1
                r0 = 0
                *(u32 *)(r6 + 0) = r0
                r0 = 0
                exit
            },
            bpf_asm! {
                r6 = r1
                r0 = *(u32 *)(r6 + 0)
                r0 = 0
                exit
            }),
        case(Mistake::SpinLockMisuse, &["bpf_spin_unlock", "every path"], xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[locked] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                if r0 == 0 goto out
                r1 = r0
                call bpf_spin_lock
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[locked] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
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
        // Variants of the mistakes above, which the verifier words differently.
        case(Mistake::NullCheckMissing, &["NULL", "if r3 == 0"], xdp,
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[h] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r3 = r0                         // the value to store: maybe NULL
                r1 = map[h] ll
                r2 = r10
                r2 += -4
                r4 = 0
                call bpf_map_update_elem
                r0 = 2
                exit
            },
            bpf_asm! {
                *(u32 *)(r10 - 4) = 0
                r1 = map[h] ll
                r2 = r10
                r2 += -4
                call bpf_map_lookup_elem
                r3 = r0
                if r3 == 0 goto out
                r1 = map[h] ll
                r2 = r10
                r2 += -4
                r4 = 0
                call bpf_map_update_elem
            out:
                r0 = 2
                exit
            }),
        case(Mistake::PacketOutOfBounds, &["variable", "again"], xdp,
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r4 = r2
                r4 += 14
                if r4 > r3 goto out
                r5 = *(u8 *)(r2 + 0)
                r2 += r5
                r0 = *(u8 *)(r2 + 0)
            out:
                r0 = 2
                exit
            },
            bpf_asm! {
                r2 = *(u32 *)(r1 + 0)
                r3 = *(u32 *)(r1 + 4)
                r4 = r2
                r4 += 14
                if r4 > r3 goto out
                r5 = *(u8 *)(r2 + 0)
                r2 += r5
                r4 = r2
                r4 += 1
                if r4 > r3 goto out
                r0 = *(u8 *)(r2 + 0)
            out:
                r0 = 2
                exit
            }),
        case(Mistake::ContextAccess, &["context pointer moved by 4", "r1 + OFFSET"], xdp,
            bpf_asm! {
                r1 += 4
                r0 = *(u32 *)(r1 + 0)
                r0 = 2
                exit
            },
            bpf_asm! {
                r0 = *(u32 *)(r1 + 4)
                r0 = 2
                exit
            }),
        case(Mistake::MemoryOutOfBounds, &["8-byte", "offset 8"], xdp,
            bpf_asm! {
                r1 = map[ring] ll
                r2 = 8
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
            },
            bpf_asm! {
                r1 = map[ring] ll
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
        case(Mistake::StackOutOfBounds, &["2 nested calls", "800"], xdp,
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 400) = r1
                call local sub
                r0 = 2
                exit
            sub:
                r1 = 0
                *(u64 *)(r10 - 400) = r1
                r0 = 0
                exit
            },
            bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 200) = r1
                call local sub
                r0 = 2
                exit
            sub:
                r1 = 0
                *(u64 *)(r10 - 200) = r1
                r0 = 0
                exit
            }),
        Case {
            mistake: Mistake::Misaligned,
            says: &["multiple", "size"],
            opts: LoadOptions::new("broken", xdp).flags(ProgFlags::STRICT_ALIGNMENT),
            broken: bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 12) = r1
                r0 = 2
                exit
            },
            fixed: bpf_asm! {
                r1 = 0
                *(u64 *)(r10 - 16) = r1
                r0 = 2
                exit
            },
        },
    ]
}

/// An array whose value is `struct { struct bpf_spin_lock lock; u32 n; }`, described by BTF
/// (the verifier finds the lock through it).
fn spin_locked_map() -> Map {
    let mut b = BtfBuilder::new();
    let u32_t = b.add_int("u32", 4, IntEncoding::Unsigned, 32).unwrap();
    let lock = b.add_struct("bpf_spin_lock", 4, &[Member::new("val", u32_t, 0)]).unwrap();
    let value = b.add_struct("locked_value", 8, &[Member::new("lock", lock, 0), Member::new("n", u32_t, 32)]).unwrap();
    let loaded = b.load().unwrap();
    Map::create(&MapSpec::new("locked", MapType::Array, 4, 8, 1).btf(&loaded, u32_t.get(), value.get()).unwrap()).unwrap()
}

#[test]
fn every_case_is_explained_and_its_fix_loads() {
    if !support::kernel_or_skip("verifier diagnoses") {
        return;
    }
    let m = Map::create(&MapSpec::new("m", MapType::Array, 4, 8, 1)).unwrap();
    let big = Map::create(&MapSpec::new("big", MapType::Array, 4, 64, 1)).unwrap();
    let ring = Map::create(&MapSpec::new("ring", MapType::RingBuf, 0, 0, 4096)).unwrap();
    let h = Map::create(&MapSpec::new("h", MapType::Hash, 4, 8, 4)).unwrap();
    let locked = spin_locked_map();
    let maps = [&m, &big, &ring, &h, &locked];
    let mut failures = Vec::new();
    for c in cases() {
        let mut opts = c.opts.clone();
        if c.mistake == Mistake::GplOnlyHelper {
            opts = opts.license("Proprietary");
        }
        let err = match Program::load(&c.broken.assemble().unwrap(), &maps, &opts) {
            Ok(_) => {
                failures.push(format!("{:?}: the broken program loaded", c.mistake));
                continue;
            }
            Err(e) => e,
        };
        let LoadError::Verifier { rejection, .. } = &err else {
            failures.push(format!("{:?}: not a verifier rejection: {err}", c.mistake));
            continue;
        };
        eprintln!("{:?}: {}", c.mistake, rejection.reason);
        match rejection.diagnose() {
            Some(d) if d.mistake == c.mistake => {
                let text = format!("{} {}", d.cause, d.fix);
                for word in c.says {
                    if !text.contains(word) {
                        failures.push(format!("{:?}: the explanation does not mention `{word}`: {text}", c.mistake));
                    }
                }
                if c.mistake == Mistake::HelperNotAllowed && d.insn.as_deref() != Some("call bpf_get_stackid") {
                    failures.push(format!("HelperNotAllowed: the instruction is not named by its helper: {:?}", d.insn));
                }
                // (The stack size of nested calls is checked after the walk: no instruction.)
                let whole_program = matches!(c.mistake, Mistake::TooComplex | Mistake::UnreleasedReference) || rejection.reason.starts_with("combined stack size");
                if d.at.is_none() && !whole_program {
                    failures.push(format!("{:?}: no source line", c.mistake));
                }
            }
            Some(d) => failures.push(format!("{:?}: diagnosed as {:?}: {}", c.mistake, d.mistake, rejection.reason)),
            None => failures.push(format!("{:?}: not diagnosed: {}", c.mistake, rejection.reason)),
        }
        let mut fixed_opts = c.opts.clone();
        if c.mistake == Mistake::GplOnlyHelper {
            fixed_opts = fixed_opts.license("GPL");
        }
        if let Err(e) = Program::load(&c.fixed.assemble().unwrap(), &maps, &fixed_opts) {
            failures.push(format!("{:?}: the fixed program is refused: {e}", c.mistake));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
