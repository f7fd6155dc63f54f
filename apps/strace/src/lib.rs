//! bpfkit-strace's parts, as a library: the kernel programs and maps (`kernel`), the record
//! they send (`record`), strace's formatting (`decode`, `text`), the `-e trace=` filter
//! (`filter`) and the `-c` table (`summary`). The binary (`src/main.rs`) puts them together.

pub mod decode;
pub mod filter;
pub mod kernel;
pub mod record;
pub mod summary;
pub mod text;

/// Tutorial chapter 16 (`tutorial/ch16-strace.md`): every code block is a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../tutorial/ch16-strace.md")]
pub struct TutorialChapter16;
