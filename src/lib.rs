//! bpfkit: write, assemble, load, attach and inspect eBPF programs — and see every instruction.
//!
//! * [`insn`]: the instruction model, builders, the text grammar, the disassembler.
//! * [`bpf_asm!`]: the same grammar, checked at compile time.
//! * [`helpers`]: helper ids by name.
//! * [`attach`]: attaching programs; [`attach::Link`] owns an attachment and detaches on drop.
//! * [`events`]: ring buffers, perf buffers and user ring buffers.
//! * [`features`]: what this kernel and process support (program, map, attach types, helpers), probed once and cached.
//! * [`core_btf`]: BTF — reading (vmlinux, module split BTF), building, loading into the kernel.
//! * [`elf`]: reading clang-built BPF objects (sections, symbols, program instructions, `.BTF`, `.BTF.ext`, relocations).
//! * [`object`]: libbpf-style objects: open (programs by section name, maps, globals) → adjust → load (relocated, linked) → attach.
//! * [`os`]: what the operating system says and offers around BPF (CPU counts, page size, bpffs
//!   mounts, tracefs, perf event constants, probe PMUs) and the errors of its calls.
//! * [`net`]: network namespaces, veth pairs and addresses over rtnetlink, AF_XDP sockets: what
//!   the networking labs and tests need to have packets cross a real interface.
//!
//! `unsafe` lives only in the crate-private syscall funnel (`sys`): `#![deny(unsafe_code)]`
//! holds everywhere else, and nothing outside the crate can reach a raw bpf(2) call or an
//! attribute struct with a pointer in it (`tests/ui/sys_is_private.rs`).
//!
//! ```
//! use bpfkit::bpf_asm;
//! let prog = bpf_asm! {
//!     mov r0, 0
//!     r1 = 7
//!     if r1 == 7 goto done
//!     r0 = 1
//! done:
//!     exit
//! };
//! let bytes = prog.assemble().unwrap().to_bytes().unwrap();
//! assert_eq!(bytes.len(), 5 * 8);
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod attach;
pub mod caps;
pub mod core_btf;
pub mod elf;
mod error;
pub mod events;
pub mod features;
pub mod helpers;
pub mod insn;
pub mod maps;
pub mod net;
pub mod object;
pub mod os;
pub mod prog;
pub mod refs;
pub mod testing;
#[allow(unsafe_code)]
pub(crate) mod sys;

pub use bpfkit_macros::bpf_asm;

/// Tutorial chapter 1: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch01-introduction.md")]
pub struct TutorialChapter01;

/// Tutorial chapter 2: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch02-maps.md")]
pub struct TutorialChapter02;

/// Tutorial chapter 3: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch03-instructions.md")]
pub struct TutorialChapter03;

/// Tutorial chapter 4: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch04-helpers.md")]
pub struct TutorialChapter04;

/// Tutorial chapter 5: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch05-kprobes.md")]
pub struct TutorialChapter05;

/// Tutorial chapter 6: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch06-tracepoints.md")]
pub struct TutorialChapter06;

/// Tutorial chapter 7: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch07-xdp.md")]
pub struct TutorialChapter07;

/// Tutorial chapter 8: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch08-tc.md")]
pub struct TutorialChapter08;

/// Tutorial chapter 9: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch09-cgroups.md")]
pub struct TutorialChapter09;

/// Tutorial chapter 10: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch10-core.md")]
pub struct TutorialChapter10;

/// Tutorial chapter 11: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch11-lsm.md")]
pub struct TutorialChapter11;

/// Tutorial chapter 12: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch12-performance.md")]
pub struct TutorialChapter12;

/// Tutorial chapter 13: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch13-events.md")]
pub struct TutorialChapter13;

/// Tutorial chapter 14: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch14-testing.md")]
pub struct TutorialChapter14;

/// Tutorial chapter 15: every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../tutorial/ch15-references.md")]
pub struct TutorialChapter15;

/// The README's code blocks are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
