//! Feature probes: what this kernel, and this process on it, can do with BPF. Owns [`Features`]
//! (the probe cache: each question is asked of the kernel once), [`Verdict`] (an answer, how it
//! was obtained, and the release the feature appeared in) and the entry points; `system` reads
//! `/proc` and `/sys`, `probe` asks bpf(2), `versions` holds the "first appeared in" tables.
//!
//! ```no_run
//! use bpfkit::features::Features;
//! use bpfkit::maps::MapType;
//! let features = Features::global();
//! let arena = features.map_type(MapType::Arena)?;
//! println!("arena maps: {} ({}: {})", arena.label(), arena.method, arena.detail);
//! # Ok::<(), bpfkit::features::FeatureError>(())
//! ```

pub(crate) mod load_probes;
mod probe;
mod system;
mod versions;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

pub use probe::HELPER_UNAVAILABLE;
pub use system::{bpffs_mounts, Capabilities, Capability, SystemInfo};
pub use versions::{
    attach_type_since, helper_since, map_type_since, prog_type_since, system as system_since, KernelVersion,
    LAST_DATED_HELPER,
};

use crate::helpers::ids::HELPER_IDS;
use crate::maps::{Map, MapError, MapSpec, MapType};
use crate::prog::{AttachType, ProgType};

/// How a verdict was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Loaded a trivial program (`r0 = 0; exit`) of the type, with the expected attach type the
    /// kernel insists on.
    Load,
    /// Loaded with `attach_btf_id` 1, which is never a valid target: the kernel's complaint about
    /// the *target* proves it accepted the program type and attach type.
    LoadBtfTarget,
    /// Created the smallest map of the type (with the BTF or inner map it needs).
    MapCreate,
    /// Loaded `call <helper>; exit` and read the verifier log.
    HelperCall,
    /// BPF_PROG_QUERY on a target that cannot exist.
    Query,
    /// BPF_LINK_CREATE to a target that cannot exist.
    LinkCreate,
    /// Not asked: no request tells without attaching to something real (the detail says why).
    NotProbed,
}

impl Method {
    /// The method's short name, as reports print it (`load`, `map_create`, …).
    pub fn name(self) -> &'static str {
        match self {
            Method::Load => "load",
            Method::LoadBtfTarget => "load+btf_id",
            Method::MapCreate => "map_create",
            Method::HelperCall => "call",
            Method::Query => "prog_query",
            Method::LinkCreate => "link_create",
            Method::NotProbed => "not probed",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: not probed, or the kernel would not say (e.g. EPERM on a query).
    pub supported: Option<bool>,
    /// How the kernel was asked.
    pub method: Method,
    /// What the kernel said: `loaded`, `EINVAL: attach_btf_id 1 is not a typedef as expected`,
    /// the verifier's line for a helper, …
    pub detail: String,
    /// The release the feature first appeared in, when bpfkit's tables know it.
    pub since: Option<KernelVersion>,
}

impl Verdict {
    /// Whether the kernel said yes (`false` for no and for unknown).
    pub fn is_supported(&self) -> bool {
        self.supported == Some(true)
    }

    /// `yes`, `no` or `?`.
    pub fn label(&self) -> &'static str {
        match self.supported {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        }
    }
}

/// Why a question could not be asked at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// bpf(2) itself fails for this process (EPERM, or ENOSYS without BPF); `errno` is what it gave.
    #[error("bpf(2) is not usable by this process ({}); feature probes need root, or CAP_BPF with CAP_PERFMON and CAP_NET_ADMIN", std::io::Error::from_raw_os_error(*.errno))]
    NoAccess {
        /// The errno bpf(2) gave.
        errno: i32,
    },
}

/// Helpers whose mere loading writes to the kernel log (trace_printk's banner, probe_write_user's
/// warning); like bpftool, they are not probed unless asked for.
pub const NOISY_HELPERS: [u32; 3] = [6, 36, 177];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Prog(ProgType),
    ProgLibbpf(ProgType),
    Map(MapType),
    Helper(ProgType, u32),
    Attach(AttachType),
}

/// The probe cache. Every question is asked of the kernel at most once per `Features` (two
/// threads asking the same new question at once may both probe; the answers are the same).
/// [`Features::global`] is the process-wide instance.
#[derive(Debug, Default)]
pub struct Features {
    noisy_helpers: bool,
    system: OnceLock<SystemInfo>,
    /// `None` when bpf(2) works, else the errno of the first map creation.
    access: OnceLock<Option<i32>>,
    cache: Mutex<HashMap<Key, Verdict>>,
    probes: AtomicUsize,
}

impl Features {
    /// An empty cache (helpers that write to the kernel log are not probed).
    pub fn new() -> Features {
        Features::default()
    }

    /// The process-wide cache.
    pub fn global() -> &'static Features {
        static GLOBAL: OnceLock<Features> = OnceLock::new();
        GLOBAL.get_or_init(Features::new)
    }

    /// Also probe [`NOISY_HELPERS`] (each load writes a line to the kernel log).
    pub fn with_noisy_helpers(mut self, yes: bool) -> Features {
        self.noisy_helpers = yes;
        self
    }

    /// Kernel release, BTF, capabilities, bpffs, sysctls (read once).
    pub fn system(&self) -> &SystemInfo {
        self.system.get_or_init(SystemInfo::read)
    }

    /// How many probes have asked the kernel so far (cache hits do not count).
    pub fn probes_run(&self) -> usize {
        self.probes.load(Ordering::Relaxed)
    }

    /// Whether bpf(2) works for this process at all: without it every probe would say "no" for
    /// the wrong reason, so they report this error instead.
    pub fn check_access(&self) -> Result<(), FeatureError> {
        let denied = self.access.get_or_init(|| match Map::create(&MapSpec::new("", MapType::Array, 4, 4, 1)) {
            Ok(_) => None,
            Err(MapError::Sys(e)) => Some(e.errno().unwrap_or(libc::EPERM)),
            Err(_) => Some(libc::EINVAL),
        });
        match denied {
            None => Ok(()),
            Some(errno) => Err(FeatureError::NoAccess { errno: *errno }),
        }
    }

    fn kernel(&self) -> Option<KernelVersion> {
        self.system().kernel
    }

    /// The cached answer for `key`, or probe, stamp `since` and remember. The lock is not held
    /// while probing: a prog type's fallback asks about attach types through this same cache.
    fn cached(&self, key: Key, since: Option<KernelVersion>, probe: impl FnOnce() -> Verdict) -> Result<Verdict, FeatureError> {
        self.check_access()?;
        if let Some(v) = self.lock().get(&key) {
            return Ok(v.clone());
        }
        self.probes.fetch_add(1, Ordering::Relaxed);
        let verdict = Verdict { since, ..probe() };
        self.lock().insert(key, verdict.clone());
        Ok(verdict)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Verdict>> {
        // A panic while holding the lock cannot leave the map half-updated (one insert), so a
        // poisoned lock is still a good cache.
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Program type `t`, probed as libbpf's `libbpf_probe_bpf_prog_type` does — what bpftool
    /// reports. For tracing and LSM that is an fentry / fmod_ret load, which some kernels refuse
    /// even though the type works for other attach types: see [`Features::prog_type`].
    pub fn prog_type_libbpf(&self, t: ProgType) -> Result<Verdict, FeatureError> {
        let kernel = self.kernel();
        self.cached(Key::ProgLibbpf(t), Some(prog_type_since(t)), || probe::prog_type_libbpf(t, kernel))
    }

    /// Program type `t`: libbpf's probe, and when that says no for tracing or LSM, the other
    /// attach types of the type (tracing loads as `tp_btf` or `iter` where fentry is refused).
    pub fn prog_type(&self, t: ProgType) -> Result<Verdict, FeatureError> {
        let libbpf = self.prog_type_libbpf(t)?;
        if libbpf.is_supported() || probe::prog_type_fallbacks(t).is_empty() {
            return Ok(libbpf);
        }
        let key = Key::Prog(t);
        if let Some(v) = self.lock().get(&key) {
            return Ok(v.clone());
        }
        let mut verdict = libbpf.clone();
        for &attach in probe::prog_type_fallbacks(t) {
            let alt = self.attach_type(attach)?;
            if alt.is_supported() {
                verdict = Verdict {
                    supported: Some(true),
                    method: alt.method,
                    detail: format!("as {attach}: {}; libbpf's probe: {}", alt.detail, libbpf.detail),
                    since: libbpf.since,
                };
                break;
            }
        }
        self.lock().insert(key, verdict.clone());
        Ok(verdict)
    }

    /// Map type `t`.
    pub fn map_type(&self, t: MapType) -> Result<Verdict, FeatureError> {
        self.cached(Key::Map(t), Some(map_type_since(t)), || probe::map_type(t))
    }

    /// Attach type `a` (libbpf has no probe for these; [`Verdict::method`] says how it was asked).
    pub fn attach_type(&self, a: AttachType) -> Result<Verdict, FeatureError> {
        let kernel = self.kernel();
        self.cached(Key::Attach(a), Some(attach_type_since(a)), || probe::attach_type(a, kernel))
    }

    /// Whether program type `t` may call helper `id`, by libbpf's rule: available unless the
    /// verifier log says the helper is unknown or not allowed for the type ([`HELPER_UNAVAILABLE`]).
    pub fn helper(&self, t: ProgType, id: u32) -> Result<Verdict, FeatureError> {
        let since = helper_since(id);
        let key = Key::Helper(t, id);
        if !self.noisy_helpers && NOISY_HELPERS.contains(&id) {
            self.check_access()?;
            let detail = "loading it writes to the kernel log (see Features::with_noisy_helpers)";
            return Ok(Verdict { supported: None, method: Method::NotProbed, detail: detail.into(), since });
        }
        if matches!(t, ProgType::Tracing | ProgType::Ext | ProgType::Lsm | ProgType::StructOps) {
            self.check_access()?;
            // A program of these types cannot load without a real BTF attach target, so a
            // trivial one calling the helper says nothing (libbpf refuses with EOPNOTSUPP too).
            let detail = "the program type needs a BTF attach target";
            return Ok(Verdict { supported: None, method: Method::NotProbed, detail: detail.into(), since });
        }
        let program_type = self.prog_type_libbpf(t)?;
        if !program_type.is_supported() {
            let detail = format!("program type not supported ({})", program_type.detail);
            return Ok(Verdict { supported: Some(false), method: Method::HelperCall, detail, since });
        }
        let kernel = self.kernel();
        self.cached(key, since, || probe::helper(t, id, kernel))
    }

    /// Every helper bpfkit knows, for program type `t`: `(id, name, verdict)` in id order.
    pub fn helpers(&self, t: ProgType) -> Result<Vec<(u32, &'static str, Verdict)>, FeatureError> {
        HELPER_IDS.iter().map(|&(id, name)| Ok((id, name, self.helper(t, id)?))).collect()
    }
}

/// Whether this process can use bpf(2) for `what` (a tutorial block, an example). When it
/// cannot, prints one line saying why and returns `false` — unless `BPFKIT_REQUIRE_KERNEL=1`
/// (CI), where a missing kernel is a failure and this panics.
pub fn can_use_bpf(what: &str) -> bool {
    match Features::global().check_access() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("BPFKIT_REQUIRE_KERNEL").as_deref() == Ok("1") {
                panic!("{what}: bpf(2) is required (BPFKIT_REQUIRE_KERNEL=1) but unavailable: {e}");
            }
            println!("skipped: {what}: bpf(2) unavailable ({e}); run as root or with CAP_BPF");
            false
        }
    }
}

crate::error::errno_from_sources!(FeatureError);
