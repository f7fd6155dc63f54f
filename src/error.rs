//! What every bpfkit error has in common: each public error type is `#[non_exhaustive]` (new
//! causes can be added without breaking a `match`) and has `errno()`, the errno the kernel or
//! the OS answered with when a call failed — `None` when bpfkit refused before asking, or the
//! error is not about a call (a syntax error, a malformed object). So a program can tell EPERM
//! from ENOENT without knowing which layer failed: `err.errno() == Some(libc::EPERM)`.

/// The first errno found walking `e` and its sources (an `io::Error` from a call).
pub(crate) fn errno_in_chain(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(n) = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error) {
            return Some(n);
        }
        cur = err.source();
    }
    None
}

/// `errno()` for error types whose errno, when there is one, is an `io::Error` among their
/// sources.
macro_rules! errno_from_sources {
    ($($t:ty),* $(,)?) => {$(
        impl $t {
            /// The errno the kernel (or the OS) answered with, when this error came from a
            /// failed call; `None` when bpfkit refused before asking.
            pub fn errno(&self) -> Option<i32> {
                $crate::error::errno_in_chain(self)
            }
        }
    )*};
}
pub(crate) use errno_from_sources;

#[cfg(test)]
mod tests {
    /// Every public error type says its errno (this list is checked by the compiler; a new
    /// public error type belongs here too).
    #[test]
    fn every_public_error_says_its_errno() {
        let _ = crate::sys::SysError::errno;
        let _ = crate::sys::NetlinkError::errno;
        let _ = crate::sys::PinError::errno;
        let _ = crate::os::CgroupError::errno;
        let _ = crate::maps::MapError::errno;
        let _ = crate::prog::LoadError::errno;
        let _ = crate::prog::KfuncError::errno;
        let _ = crate::attach::LinkError::errno;
        let _ = crate::attach::ProbeError::errno;
        let _ = crate::attach::symbols::SymbolError::errno;
        let _ = crate::events::EventError::errno;
        let _ = crate::refs::RefError::errno;
        let _ = crate::testing::TestError::errno;
        let _ = crate::events::StackError::errno;
        let _ = crate::features::FeatureError::errno;
        let _ = crate::core_btf::BtfError::errno;
        let _ = crate::core_btf::ext::BtfExtError::errno;
        let _ = crate::core_btf::relo::RelocError::errno;
        let _ = crate::elf::ElfError::errno;
        let _ = crate::elf::WriteError::errno;
        let _ = crate::helpers::patterns::PatternError::errno;
        let _ = crate::insn::ParseError::errno;
        let _ = crate::insn::EncodeError::errno;
        let _ = crate::insn::DecodeError::errno;
        let _ = crate::insn::AssembleError::errno;
        let _ = crate::object::ObjectError::errno;
        // An errno found through the source chain of a wrapping error.
        let e = crate::maps::MapError::Sys(crate::sys::SysError::new("map_create".into(), std::io::Error::from_raw_os_error(libc::EPERM)));
        let wrapped = crate::events::EventError::Map(e);
        assert_eq!(wrapped.errno(), Some(libc::EPERM));
    }
}
