//! AF_XDP sockets (`XSK`): the UMEM that holds a socket's frames, the fill, completion and RX
//! rings mapped from the kernel, and the bind to one queue of one interface. An XDP program
//! hands packets to a socket with `bpf_redirect_map` on an `xskmap` holding the socket's fd.
//!
//! Receive only, copy mode (`XDP_COPY`, which every driver and generic XDP support): enough to
//! prove that an xskmap delivers packets, not a packet I/O framework. Ring protocol as in the
//! kernel's `xsk_queue.h`: the producer publishes entries with a release store of its index, the
//! consumer reads them after an acquire load and hands them back with a release store of its own.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::shared_mem::{load_acquire_u32, store_release_u32};

/// Size of `struct xdp_desc` (RX/TX ring entries); fill and completion entries are `u64`.
const DESC_SIZE: usize = std::mem::size_of::<libc::xdp_desc>();

/// How an [`XskSocket`] is set up: UMEM frames, ring sizes (powers of two) and the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct XskConfig {
    /// Number of UMEM frames.
    pub(crate) frames: u32,
    /// Bytes per frame (a power of two from 2048 to the page size).
    pub(crate) frame_size: u32,
    /// Entries of each ring.
    pub(crate) ring_size: u32,
    /// The interface queue to bind to.
    pub(crate) queue_id: u32,
}

impl Default for XskConfig {
    fn default() -> XskConfig {
        XskConfig { frames: 64, frame_size: 4096, ring_size: 64, queue_id: 0 }
    }
}

impl XskConfig {
    /// Number of UMEM frames (default 64).
    pub fn frames(mut self, n: u32) -> XskConfig {
        self.frames = n;
        self
    }
    /// Bytes per UMEM frame: a power of two from 2048 to the page size (default 4096).
    pub fn frame_size(mut self, n: u32) -> XskConfig {
        self.frame_size = n;
        self
    }
    /// Entries of each ring (fill, completion, RX, TX); a power of two (default 64).
    pub fn ring_size(mut self, n: u32) -> XskConfig {
        self.ring_size = n;
        self
    }
    /// The interface queue to bind to (default 0).
    pub fn queue_id(mut self, q: u32) -> XskConfig {
        self.queue_id = q;
        self
    }
}

/// Counters the kernel keeps per socket (`struct xdp_statistics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct XskStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
}

/// One ring mapped from the socket: the words at `producer`/`consumer` and `entries` slots.
struct Ring {
    mem: memmap2::MmapMut,
    producer: usize,
    consumer: usize,
    desc: usize,
    mask: u32,
}

impl Ring {
    fn map(fd: BorrowedFd<'_>, what: &str, pgoff: u64, off: &libc::xdp_ring_offset, entries: u32, entry: usize) -> io::Result<Ring> {
        let len = (off.desc as usize).saturating_add(entries as usize * entry);
        // SAFETY: a shared mapping of the socket's ring (the kernel sized it at setsockopt);
        // the kernel writes it concurrently, and this module touches only the index words (with
        // atomics) and entries the protocol says it owns.
        let mem = unsafe { memmap2::MmapOptions::new().offset(pgoff).len(len).map_mut(&fd) }.map_err(|e| ctx(format!("mmap(AF_XDP {what} ring, {len} bytes)"), e))?;
        let fits = |o: u64, n: usize| (o as usize).checked_add(n).is_some_and(|end| end <= len);
        if !(fits(off.producer, 4) && fits(off.consumer, 4) && fits(off.desc, entries as usize * entry)) {
            return Err(io::Error::other(format!("AF_XDP {what} ring: kernel offsets {off:?} outside its {len}-byte mapping")));
        }
        Ok(Ring { mem, producer: off.producer as usize, consumer: off.consumer as usize, desc: off.desc as usize, mask: entries - 1 })
    }
    fn load(&self, at: usize) -> io::Result<u32> {
        load_acquire_u32(&self.mem, at).ok_or_else(|| io::Error::other("AF_XDP ring index word misaligned"))
    }
    fn store(&mut self, at: usize, v: u32) -> io::Result<()> {
        if store_release_u32(&mut self.mem, at, v) { Ok(()) } else { Err(io::Error::other("AF_XDP ring index word misaligned")) }
    }
    /// Byte offset of slot `i`'s entry.
    fn slot(&self, i: u32, entry: usize) -> usize {
        self.desc + (i & self.mask) as usize * entry
    }
}

/// An AF_XDP socket bound to one queue, receiving into its own UMEM. Put it in an `xskmap`
/// (`Map::update_fd`) and redirect to it from XDP; [`XskSocket::recv`] returns the frames.
pub struct XskSocket {
    // Field order is drop order: the socket (which holds the pinned UMEM pages) closes before
    // its rings and UMEM are unmapped.
    fd: OwnedFd,
    rx: Ring,
    fill: Ring,
    _completion: Ring,
    umem: memmap2::MmapMut,
    cfg: XskConfig,
    ifindex: u32,
    rx_cons: u32,
    fill_prod: u32,
}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket").field("fd", &self.fd.as_raw_fd()).field("ifindex", &self.ifindex).field("cfg", &self.cfg).finish()
    }
}

fn ctx(what: String, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn setsockopt<T>(fd: BorrowedFd<'_>, name: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed; the kernel only reads it.
    let r = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_XDP, name, value as *const T as *const libc::c_void, std::mem::size_of::<T>() as libc::socklen_t) };
    if r == 0 { Ok(()) } else { Err(ctx(format!("setsockopt(AF_XDP, {what})"), io::Error::last_os_error())) }
}

fn getsockopt<T: bytemuck::Pod>(fd: BorrowedFd<'_>, name: libc::c_int, what: &str) -> io::Result<T> {
    let mut value = T::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is writable for `len` bytes, and any bytes are a valid `T` (Pod).
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_XDP, name, &mut value as *mut T as *mut libc::c_void, &mut len) };
    if r != 0 {
        return Err(ctx(format!("getsockopt(AF_XDP, {what})"), io::Error::last_os_error()));
    }
    if (len as usize) < std::mem::size_of::<T>() {
        return Err(io::Error::other(format!("getsockopt(AF_XDP, {what}): {len} bytes, an older kernel's layout")));
    }
    Ok(value)
}

/// `struct xdp_ring_offset` ×4 as the kernel fills it (`XDP_MMAP_OFFSETS`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MmapOffsets([[u64; 4]; 4]);

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Statistics([u64; 6]);

// The kernel's layouts as libc binds them (`if_xdp.h`), read through these plain-data mirrors.
const _: () = assert!(std::mem::size_of::<MmapOffsets>() == std::mem::size_of::<libc::xdp_mmap_offsets>());
const _: () = assert!(std::mem::size_of::<Statistics>() == std::mem::size_of::<libc::xdp_statistics>());

fn ring_offset(w: [u64; 4]) -> libc::xdp_ring_offset {
    libc::xdp_ring_offset { producer: w[0], consumer: w[1], desc: w[2], flags: w[3] }
}

impl XskSocket {
    /// Create an AF_XDP socket in the calling thread's network namespace, register a UMEM of
    /// `cfg.frames × cfg.frame_size` bytes, size and map its rings, give every frame the ring
    /// can hold to the kernel, and bind it in copy mode to queue `cfg.queue_id` of `ifindex`.
    pub fn bind(ifindex: u32, cfg: XskConfig) -> io::Result<XskSocket> {
        let pow2 = |n: u32| n.is_power_of_two();
        if !pow2(cfg.ring_size) || !pow2(cfg.frame_size) || cfg.frames == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("AF_XDP {cfg:?}: ring and frame sizes must be powers of two, frames non-zero")));
        }
        // SAFETY: plain arguments; the result is checked and owned below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(ctx("socket(AF_XDP)".into(), io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new socket fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = cfg.frames as usize * cfg.frame_size as usize;
        let umem = memmap2::MmapMut::map_anon(len).map_err(|e| ctx(format!("mmap(UMEM, {len} bytes)"), e))?;
        let reg = libc::xdp_umem_reg { addr: umem.as_ptr() as u64, len: len as u64, chunk_size: cfg.frame_size, headroom: 0, flags: 0, tx_metadata_len: 0 };
        setsockopt(fd.as_fd(), libc::XDP_UMEM_REG, &reg, &format!("XDP_UMEM_REG, {} frames of {}", cfg.frames, cfg.frame_size))?;
        let n = cfg.ring_size as libc::c_int;
        setsockopt(fd.as_fd(), libc::XDP_UMEM_FILL_RING, &n, &format!("XDP_UMEM_FILL_RING, {n}"))?;
        setsockopt(fd.as_fd(), libc::XDP_UMEM_COMPLETION_RING, &n, &format!("XDP_UMEM_COMPLETION_RING, {n}"))?;
        setsockopt(fd.as_fd(), libc::XDP_RX_RING, &n, &format!("XDP_RX_RING, {n}"))?;
        let MmapOffsets([rx, _tx, fr, cr]) = getsockopt(fd.as_fd(), libc::XDP_MMAP_OFFSETS, "XDP_MMAP_OFFSETS")?;
        let rx = Ring::map(fd.as_fd(), "rx", libc::XDP_PGOFF_RX_RING as u64, &ring_offset(rx), cfg.ring_size, DESC_SIZE)?;
        let fill = Ring::map(fd.as_fd(), "fill", libc::XDP_UMEM_PGOFF_FILL_RING, &ring_offset(fr), cfg.ring_size, 8)?;
        let completion = Ring::map(fd.as_fd(), "completion", libc::XDP_UMEM_PGOFF_COMPLETION_RING, &ring_offset(cr), cfg.ring_size, 8)?;
        let mut xsk = XskSocket { fd, rx, fill, _completion: completion, umem, cfg, ifindex, rx_cons: 0, fill_prod: 0 };
        for frame in 0..cfg.frames.min(cfg.ring_size) {
            xsk.give_frame(frame as u64 * cfg.frame_size as u64)?;
        }
        let addr = libc::sockaddr_xdp { sxdp_family: libc::AF_XDP as u16, sxdp_flags: libc::XDP_COPY, sxdp_ifindex: ifindex, sxdp_queue_id: cfg.queue_id, sxdp_shared_umem_fd: 0 };
        // SAFETY: `addr` is a live `sockaddr_xdp` of the size passed; the kernel only reads it.
        let r = unsafe { libc::bind(xsk.fd.as_raw_fd(), &addr as *const libc::sockaddr_xdp as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t) };
        if r != 0 {
            return Err(ctx(format!("bind(AF_XDP, ifindex {ifindex} queue {}, copy mode)", cfg.queue_id), io::Error::last_os_error()));
        }
        Ok(xsk)
    }

    /// Hand the frame at UMEM offset `addr` to the kernel on the fill ring.
    fn give_frame(&mut self, addr: u64) -> io::Result<()> {
        let at = self.fill.slot(self.fill_prod, 8);
        self.fill.mem[at..at + 8].copy_from_slice(&addr.to_ne_bytes());
        self.fill_prod = self.fill_prod.wrapping_add(1);
        let producer = self.fill.producer;
        self.fill.store(producer, self.fill_prod)
    }

    /// The next received frame, if the kernel has produced one; its UMEM frame goes back to the
    /// fill ring.
    pub fn try_recv(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.rx.load(self.rx.producer)? == self.rx_cons {
            return Ok(None);
        }
        let at = self.rx.slot(self.rx_cons, DESC_SIZE);
        let d = &self.rx.mem[at..at + DESC_SIZE];
        let addr = u64::from_ne_bytes(d[..8].try_into().unwrap_or_default());
        let len = u32::from_ne_bytes(d[8..12].try_into().unwrap_or_default()) as usize;
        let frame = (addr as usize).checked_add(len).filter(|end| *end <= self.umem.len()).map(|end| self.umem[addr as usize..end].to_vec());
        self.rx_cons = self.rx_cons.wrapping_add(1);
        let consumer = self.rx.consumer;
        self.rx.store(consumer, self.rx_cons)?;
        let frame = frame.ok_or_else(|| io::Error::other(format!("AF_XDP rx descriptor {addr:#x}+{len} outside the {}-byte UMEM", self.umem.len())))?;
        // Aligned mode: any address inside a frame names the frame.
        self.give_frame(addr & !(self.cfg.frame_size as u64 - 1))?;
        Ok(Some(frame))
    }

    /// Wait up to `timeout` for a frame (poll(2) on the socket).
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.try_recv()? {
                return Ok(Some(frame));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one live pollfd, count 1.
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(ctx("poll(AF_XDP)".into(), e));
                }
            }
        }
    }

    /// The kernel's counters for this socket (`XDP_STATISTICS`).
    pub fn stats(&self) -> io::Result<XskStats> {
        let Statistics(s) = getsockopt(self.fd.as_fd(), libc::XDP_STATISTICS, "XDP_STATISTICS")?;
        Ok(XskStats { rx_dropped: s[0], rx_invalid_descs: s[1], rx_ring_full: s[3], rx_fill_ring_empty_descs: s[4] })
    }

    /// The interface and queue this socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The interface queue this socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.cfg.queue_id
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
