//! The syscall seam (test builds only): a test installs a fake bpf(2) for its own thread, and
//! every call the crate makes through [`super::bpf`] goes to the fake instead of the kernel. The
//! fake sees the command and the attribute struct, and acts on the memory the struct points to
//! through [`Call::read_user`] and [`Call::write_user`], as the kernel would. So `maps`, `prog`
//! and `events` logic (length checks, ENOENT → `None`, key iteration, error naming) has unit
//! tests that run without root; what the kernel itself does is tested against the kernel.
//! (aya's `override_syscall` in `aya/src/sys/fake.rs` is the model.)

use std::cell::RefCell;
use std::io;

use super::{BpfAttr, Cmd};

type Hook = Box<dyn FnMut(&mut Call<'_>) -> io::Result<i64>>;

thread_local! {
    static FAKE: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// One bpf(2) call as the fake sees it: the command and the attribute bytes.
pub(crate) struct Call<'a> {
    pub cmd: Cmd,
    attr: &'a mut [u8],
}

impl Call<'_> {
    /// The attribute struct, read from its bytes.
    pub fn attr<T: BpfAttr + Copy + Default>(&self) -> T {
        let mut out = T::default();
        let n = std::mem::size_of::<T>().min(self.attr.len());
        // SAFETY: `out` is a live, plain-data `T` (BpfAttr: every bit pattern valid) of at least
        // `n` bytes, and `self.attr` holds at least `n` bytes; the regions do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(self.attr.as_ptr(), (&mut out as *mut T).cast::<u8>(), n) };
        out
    }

    /// `len` bytes of the caller's memory at `addr` (an attribute's pointer field), as the
    /// kernel's `copy_from_user` reads them.
    pub fn read_user(&self, addr: u64, len: usize) -> Vec<u8> {
        assert!(addr != 0 || len == 0, "{:?}: a NULL pointer where {len} bytes were expected", self.cmd);
        // SAFETY (test seam): `addr` is a pointer the code under test put in the attribute, to
        // a buffer it claims holds `len` bytes for this command; reading fewer or equal bytes
        // is what the kernel would do with it. A wrong claim is the bug the test looks for.
        unsafe { std::slice::from_raw_parts(addr as usize as *const u8, len) }.to_vec()
    }

    /// Write `bytes` to the caller's memory at `addr`, as the kernel's `copy_to_user` would.
    pub fn write_user(&mut self, addr: u64, bytes: &[u8]) {
        assert!(addr != 0, "{:?}: a NULL pointer where {} bytes go", self.cmd, bytes.len());
        // SAFETY (test seam): as for `read_user`: `addr` is the buffer the code under test gave
        // for this command's output, sized for what the kernel writes there.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as usize as *mut u8, bytes.len()) };
    }
}

/// Run `body` with every bpf(2) call of this thread answered by `fake`; the kernel is not asked.
pub(crate) fn with_fake_bpf<R>(fake: impl FnMut(&mut Call<'_>) -> io::Result<i64> + 'static, body: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            FAKE.with(|f| *f.borrow_mut() = None);
        }
    }
    FAKE.with(|f| *f.borrow_mut() = Some(Box::new(fake)));
    let _reset = Reset;
    body()
}

/// The fake's answer to this call, if a fake is installed on this thread.
pub(super) fn intercept<T: BpfAttr>(cmd: Cmd, attr: &mut T) -> Option<io::Result<i64>> {
    FAKE.with(|f| {
        let mut hook = f.borrow_mut();
        let hook = hook.as_mut()?;
        // SAFETY: `attr` is an exclusively borrowed plain-data struct (BpfAttr) of exactly
        // `size_of::<T>()` bytes; the slice lives only for this call.
        let bytes = unsafe { std::slice::from_raw_parts_mut((attr as *mut T).cast::<u8>(), std::mem::size_of::<T>()) };
        Some(hook(&mut Call { cmd, attr: bytes }))
    })
}

/// A file descriptor the fake can hand out as a "map" or "program" (`/dev/null`), owned by the
/// caller as a real bpf(2) fd would be.
pub(crate) fn fake_fd() -> i64 {
    use std::os::fd::IntoRawFd;
    std::fs::File::open("/dev/null").expect("/dev/null").into_raw_fd() as i64
}
