//! Acquire/release access to words of memory shared with the kernel (ring buffer positions and
//! record headers). The kernel's side of the protocol uses `smp_load_acquire` /
//! `smp_store_release`; these are the matching user-space halves.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

fn aligned_ptr(mem: &[u8], off: usize, size: usize) -> Option<*const u8> {
    let end = off.checked_add(size)?;
    if end > mem.len() {
        return None;
    }
    let p = mem[off..].as_ptr();
    (p as usize % size == 0).then_some(p)
}

/// Load-acquire the u64 at `off`; `None` if out of bounds or misaligned.
pub fn load_acquire_u64(mem: &[u8], off: usize) -> Option<u64> {
    let p = aligned_ptr(mem, off, 8)?;
    // SAFETY: `p` is in bounds of `mem` for 8 bytes and 8-aligned (checked above); the memory is a
    // live mapping shared with the kernel, which accesses this word only atomically.
    Some(unsafe { AtomicU64::from_ptr(p as *mut u64) }.load(Ordering::Acquire))
}

/// Load-acquire the u32 at `off`; `None` if out of bounds or misaligned.
pub fn load_acquire_u32(mem: &[u8], off: usize) -> Option<u32> {
    let p = aligned_ptr(mem, off, 4)?;
    // SAFETY: as in `load_acquire_u64`, for a 4-byte aligned word.
    Some(unsafe { AtomicU32::from_ptr(p as *mut u32) }.load(Ordering::Acquire))
}

/// Store-release `v` to the u64 at `off`; `false` if out of bounds or misaligned.
pub fn store_release_u64(mem: &mut [u8], off: usize, v: u64) -> bool {
    let Some(p) = aligned_ptr(mem, off, 8) else { return false };
    // SAFETY: in bounds, aligned, and exclusively borrowed on our side; the kernel reads it atomically.
    unsafe { AtomicU64::from_ptr(p as *mut u64) }.store(v, Ordering::Release);
    true
}

/// Store-release `v` to the u32 at `off`; `false` if out of bounds or misaligned.
pub fn store_release_u32(mem: &mut [u8], off: usize, v: u32) -> bool {
    let Some(p) = aligned_ptr(mem, off, 4) else { return false };
    // SAFETY: as in `store_release_u64`, for a 4-byte aligned word.
    unsafe { AtomicU32::from_ptr(p as *mut u32) }.store(v, Ordering::Release);
    true
}

/// The u64 at `off` as an atomic, for read-modify-write shared with BPF programs (an mmapable
/// array's value); `None` if out of bounds or misaligned.
pub fn atomic_u64_at(mem: &[u8], off: usize) -> Option<&AtomicU64> {
    let p = aligned_ptr(mem, off, 8)?;
    // SAFETY: in bounds of `mem` for 8 bytes and 8-aligned (checked above); the reference lives
    // no longer than the borrow of `mem`; `AtomicU64` has the size and alignment of `u64`; the
    // memory is a shared mapping that programs update only with atomic instructions or plain
    // stores of whole words, never through a Rust `&mut` while this borrow lives.
    Some(unsafe { AtomicU64::from_ptr(p as *mut u64) })
}

/// The u32 at `off` as an atomic (as [`atomic_u64_at`]); `None` if out of bounds or misaligned.
pub fn atomic_u32_at(mem: &[u8], off: usize) -> Option<&AtomicU32> {
    let p = aligned_ptr(mem, off, 4)?;
    // SAFETY: as in `atomic_u64_at`, for a 4-byte aligned word.
    Some(unsafe { AtomicU32::from_ptr(p as *mut u32) })
}

/// `mem` as the 32-bit words the kernel writes atomically (ring buffer record headers), for
/// acquire loads without a bounds-and-alignment check per load; `None` unless `mem` starts
/// 4-aligned. A trailing partial word is left out.
pub fn atomic_u32_words(mem: &[u8]) -> Option<&[AtomicU32]> {
    if mem.as_ptr() as usize % std::mem::align_of::<AtomicU32>() != 0 {
        return None;
    }
    // SAFETY: the pointer is 4-aligned (checked above) and the `len / 4` words lie inside `mem`,
    // which outlives the returned slice; `AtomicU32` has the size and alignment of `u32`, and the
    // kernel writes these words only atomically (smp_store_release of a record header).
    Some(unsafe { std::slice::from_raw_parts(mem.as_ptr() as *const AtomicU32, mem.len() / 4) })
}
