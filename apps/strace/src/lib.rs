//! bpfkit-strace's parts, as a library: the kernel programs and maps (`kernel`), the record
//! they send (`record`), strace's formatting (`decode`, `text`), the `-e trace=` filter
//! (`filter`) and the `-c` table (`summary`). The binary (`src/main.rs`) puts them together.

pub mod decode;
pub mod filter;
pub mod kernel;
pub mod record;
pub mod summary;
pub mod text;
