//! The record the kernel programs write for each finished system call (and for exits and
//! signals), and its decoding. One layout, used by the programs (as offsets) and by user space.
//!
//! ```text
//!    0 u32 kind         0 syscall, 1 task exit, 2 signal
//!    4 u32 tid
//!    8 u32 tgid
//!   12 u32 nr           syscall number / exit code / signal number
//!   16 u64 ts_enter     bpf_ktime_get_ns at sys_enter
//!   24 u64 ts_exit      at sys_exit
//!   32 i64 ret
//!   40 u64 args[6]
//!   88 u32 str_len[2]   bytes read by bpf_probe_read_user_str (with the NUL), 0: none
//!   96 u32 buf_len      bytes of `buf` read
//!  100 u32 flags        FLAG_*
//!  104 u32 argc         argv entries read (ARGV_MAX + 1: more followed)
//!  108 u32 envc         environment entries counted (ENV_MAX: that many or more)
//!  112 char str[2][STR_MAX]
//!  624 char argv[ARGV_MAX][ARG_MAX]
//! 1136 u8 buf[buf_max]  a buffer read at entry (write) or exit (read, stat)
//! ```

pub const KIND: i16 = 0;
pub const TID: i16 = 4;
pub const TGID: i16 = 8;
pub const NR: i16 = 12;
pub const TS_ENTER: i16 = 16;
pub const TS_EXIT: i16 = 24;
pub const RET: i16 = 32;
pub const ARGS: i16 = 40;
pub const STR_LEN: i16 = 88;
pub const BUF_LEN: i16 = 96;
pub const FLAGS: i16 = 100;
pub const ARGC: i16 = 104;
pub const ENVC: i16 = 108;
pub const STRS: i16 = 112;
pub const STR_MAX: usize = 256;
pub const ARGV: i16 = 624;
pub const ARGV_MAX: usize = 8;
pub const ARG_MAX: usize = 64;
pub const BUF: i16 = 1136;
pub const ENV_MAX: u32 = 512;

/// The buffer held more than `buf` could: the shown bytes are followed by `...`.
pub const FLAG_TRUNCATED: u32 = 1;
/// The call does not return (exit, exit_group): written at entry, result `?`.
pub const FLAG_NORETURN: u32 = 2;

pub const KIND_SYSCALL: u32 = 0;
pub const KIND_EXIT: u32 = 1;
pub const KIND_SIGNAL: u32 = 2;

/// The record's size for a buffer of `buf_max` bytes (a multiple of 8).
pub fn size(buf_max: usize) -> usize {
    BUF as usize + buf_max.div_ceil(8) * 8
}

/// A record, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub kind: u32,
    pub tid: u32,
    pub tgid: u32,
    pub nr: u32,
    pub ts_enter: u64,
    pub ts_exit: u64,
    pub ret: i64,
    pub args: [u64; 6],
    /// Strings read at entry (paths), without their NUL.
    pub strs: [Option<Vec<u8>>; 2],
    pub buf: Vec<u8>,
    pub flags: u32,
    /// argv entries (execve), and whether more followed.
    pub argv: Vec<Vec<u8>>,
    pub argv_more: bool,
    pub envc: u32,
}

fn u32_at(r: &[u8], off: i16) -> u32 {
    let o = off as usize;
    r.get(o..o + 4).map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap_or_default()))
}

fn u64_at(r: &[u8], off: i16) -> u64 {
    let o = off as usize;
    r.get(o..o + 8).map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()))
}

/// The bytes up to the first NUL of `r[off..off + max]`.
fn c_string(r: &[u8], off: usize, max: usize) -> Vec<u8> {
    let s = r.get(off..(off + max).min(r.len())).unwrap_or_default();
    s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())].to_vec()
}

impl Record {
    /// Decode a record of the kernel programs (`None` if it is shorter than the header).
    pub fn parse(r: &[u8]) -> Option<Record> {
        if r.len() < BUF as usize {
            return None;
        }
        let strs = [0usize, 1].map(|k| {
            let len = u32_at(r, STR_LEN + 4 * k as i16) as usize;
            (len > 0).then(|| c_string(r, STRS as usize + k * STR_MAX, STR_MAX))
        });
        let argc = u32_at(r, ARGC) as usize;
        let argv = (0..argc.min(ARGV_MAX)).map(|i| c_string(r, ARGV as usize + i * ARG_MAX, ARG_MAX)).collect();
        let buf_len = u32_at(r, BUF_LEN) as usize;
        let buf = r.get(BUF as usize..BUF as usize + buf_len).unwrap_or_default().to_vec();
        Some(Record {
            kind: u32_at(r, KIND),
            tid: u32_at(r, TID),
            tgid: u32_at(r, TGID),
            nr: u32_at(r, NR),
            ts_enter: u64_at(r, TS_ENTER),
            ts_exit: u64_at(r, TS_EXIT),
            ret: u64_at(r, RET) as i64,
            args: [0, 1, 2, 3, 4, 5].map(|i| u64_at(r, ARGS + 8 * i)),
            strs,
            buf,
            flags: u32_at(r, FLAGS),
            argv,
            argv_more: argc > ARGV_MAX,
            envc: u32_at(r, ENVC),
        })
    }
}
