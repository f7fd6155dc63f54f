//! Instructions: the one model of every eBPF instruction ([`Insn`]), its wire codec,
//! typed builders, programs with labels, the one text grammar (both dialects), and
//! the disassembler.
//!
//! This module is self-contained (it depends only on [`crate::helpers::ids`]) because the
//! `bpf_asm!` proc-macro compiles these same sources to check programs at compile time.

pub mod build;
pub mod codec;
pub mod format;
pub mod grammar;
pub mod model;
pub mod opcode;
pub mod program;

pub use build::*;
pub use codec::{decode_bytes, decode_slots, encode, encode_bytes, DecodeError, EncodeError, RawInsn};
pub use format::{disassemble, format_insn, DisasmOptions, Syntax};
pub use grammar::{parse_program, parse_program_with, Dialect, ParseError, ParseOptions};
pub use model::*;
pub use program::{AssembleError, Assembled, Item, Program, SourceLoc, SourceText};
