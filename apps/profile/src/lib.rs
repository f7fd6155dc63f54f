//! bpfkit-profile's parts, as a library: the shared kernel half (`kernel`: stack maps, the
//! count-by-stack instruction sequence), one module per mode with its programs (`cpu`), reading
//! the aggregation back (`profile`), naming addresses (`symbols`), and the outputs (`output`:
//! folded stacks, SVG, top table; `pprof`). The binary (`src/main.rs`) puts them together.

pub mod alloc;
pub mod command;
pub mod cpu;
pub mod follow;
pub mod io;
pub mod kernel;
pub mod lock;
pub mod offcpu;
pub mod output;
pub mod pprof;
pub mod profile;
pub mod symbols;

/// Tutorial chapter 19 (`tutorial/ch19-profile.md`): every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../tutorial/ch19-profile.md")]
pub struct TutorialChapter19;
