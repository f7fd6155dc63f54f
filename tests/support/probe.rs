//! Feature probes deciding what a kernel test runs: the same test binary runs on every kernel,
//! and a probe's verdict (never a version string) picks the branch. A "no" is believed only when
//! an independent witness (`super::witness`) agrees; see [`super::kernel_lacks`].

use std::os::fd::{AsFd, AsRawFd};

use bpfkit::features::{FeatureError, Features, KernelVersion, Method, Verdict};
use bpfkit::insn::build::{exit, mov64};
use bpfkit::insn::{Program as Text, Reg};
use bpfkit::prog::{AttachType, LoadOptions, ProgType, Program};

use super::Witness;

/// Whether the running kernel has `what`, as bpfkit's `verdict` says. On "no" it asks `witness`
/// and prints one line (the probe's words and the witness's) through [`super::kernel_lacks`],
/// then returns `false`; on "cannot tell" it skips (see [`super::skip`]).
pub fn kernel_has(test: &str, what: &str, verdict: Result<Verdict, FeatureError>, witness: impl FnOnce() -> Witness) -> bool {
    let v = match verdict {
        Ok(v) => v,
        Err(e) => {
            super::skip(&format!("{test}: {what}: the feature probe could not ask the kernel ({e})"));
            return false;
        }
    };
    match v.supported {
        Some(true) => true,
        Some(false) => {
            // The version table only explains the verdict; it never decides it.
            let since = v.since.map(|s| format!("; bpfkit's table dates it {s}")).unwrap_or_default();
            super::kernel_lacks(test, what, &format!("{}: {}{since}", v.method, v.detail), witness());
            false
        }
        None => {
            super::skip(&format!("{test}: {what}: the probe cannot tell ({}: {})", v.method, v.detail));
            false
        }
    }
}

/// Sockmap/sockhash bpf_links (`BPF_LINK_CREATE` of an sk_msg or sk_skb program on a map, 6.10+),
/// which `bpfkit::features` does not probe: an sk_msg program loaded by bpfkit, then a link
/// request through libbpf 1.7's `bpf_link_create` (bpfkit's raw funnel is private) naming fd
/// `u32::MAX` as the map. A kernel with sockmap links looks the map up and says EBADF; one
/// without them refuses the program type in `link_create` with EINVAL before looking at the
/// target.
pub fn sockmap_links() -> Result<Verdict, FeatureError> {
    Features::global().check_access()?;
    let since = Some(KernelVersion::new(6, 10, 0));
    let verdict = |supported, detail: String| Verdict { supported, method: Method::LinkCreate, detail, since };
    let mut text = Text::new();
    text.push(mov64(Reg::R0, 1)).push(exit());
    let opts = LoadOptions::new("sockmap_probe", ProgType::SkMsg).expected_attach_type(AttachType::SkMsgVerdict);
    let prog = match Program::load(&text.assemble().expect("two instructions"), &[], &opts) {
        Ok(p) => p,
        Err(e) => return Ok(verdict(Some(false), format!("an sk_msg program did not load: {e}"))),
    };
    // SAFETY (test code): a program fd this test owns, a bogus target fd the kernel only looks
    // up, and no options (NULL).
    let ret = unsafe {
        libbpf_sys::bpf_link_create(prog.as_fd().as_raw_fd(), u32::MAX as i32, AttachType::SkMsgVerdict.raw(), std::ptr::null())
    };
    if ret >= 0 {
        // SAFETY (test code): the link fd libbpf just returned, closed once.
        unsafe { libc::close(ret) };
        return Ok(verdict(Some(true), "created a link to map fd u32::MAX".into()));
    }
    Ok(match -ret {
        libc::EINVAL => verdict(Some(false), "EINVAL: link_create refuses sk_msg programs".into()),
        libc::EBADF => verdict(Some(true), "EBADF: the kernel looked for the map".into()),
        e => verdict(None, format!("link_create: {}", std::io::Error::from_raw_os_error(e))),
    })
}
