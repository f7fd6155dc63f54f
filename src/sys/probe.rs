//! Dynamic probes at the system-call level: the kprobe and uprobe PMUs (perf_event_open(2)
//! with the `type` read from `/sys/bus/event_source/devices/{kprobe,uprobe}/type`, the probed
//! function name or binary path in `config1`, the offset in `config2`) and the tracefs
//! `kprobe_events` / `uprobe_events` files that kernels before 4.17 (or without the PMU) use.
//!
//! No `unsafe` is needed here: the path pointer in `config1` is taken from a borrowed `&CStr`
//! that outlives the perf_event_open call made by [`super::perf_event_open`].

use std::ffi::CStr;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::{perf_event_open, ptr, tracefs_dir, PerfEventAttr};

/// Which kind of dynamic probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// A kernel function (`kprobe` PMU, `kprobe_events`).
    Kprobe,
    /// An instruction in a user binary (`uprobe` PMU, `uprobe_events`).
    Uprobe,
}

impl ProbeKind {
    /// `kprobe` or `uprobe`: the PMU's directory name and the tracefs file's prefix.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Kprobe => "kprobe",
            ProbeKind::Uprobe => "uprobe",
        }
    }
}

/// A bit field of `perf_event_attr` as a PMU's `format/<field>` file describes it
/// (`config:0`, `config:32-63`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmuField {
    /// 0: `config`, 1: `config1`, 2: `config2`.
    pub word: u8,
    pub low_bit: u32,
    pub high_bit: u32,
}

impl PmuField {
    /// Parse a `format/*` file's text such as `config:0` or `config:32-63`.
    pub fn parse(text: &str) -> Option<PmuField> {
        let (word, bits) = text.trim().split_once(':')?;
        let word = match word {
            "config" => 0,
            "config1" => 1,
            "config2" => 2,
            _ => return None,
        };
        let (lo, hi) = bits.split_once('-').unwrap_or((bits, bits));
        let (low_bit, high_bit): (u32, u32) = (lo.parse().ok()?, hi.parse().ok()?);
        (low_bit <= high_bit && high_bit < 64).then_some(PmuField { word, low_bit, high_bit })
    }

    /// `value` placed in this field (truncated to its width).
    pub fn place(&self, value: u64) -> u64 {
        let width = self.high_bit - self.low_bit + 1;
        let mask = if width == 64 { u64::MAX } else { (1u64 << width) - 1 };
        (value & mask) << self.low_bit
    }
}

/// A probe PMU as sysfs describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePmu {
    /// Which probe PMU (kprobe or uprobe).
    pub kind: ProbeKind,
    /// The PMU's perf event `type`.
    pub type_: u32,
    /// Where the return-probe flag goes (`format/retprobe`); `None`: no return probes.
    pub retprobe: Option<PmuField>,
    /// Where a uprobe's reference counter (USDT semaphore) offset goes (`format/ref_ctr_offset`,
    /// Linux 4.20); `None`: the kernel cannot maintain semaphores.
    pub ref_ctr_offset: Option<PmuField>,
}

/// `/sys/bus/event_source/devices/<kind>`: where the probe PMU describes itself.
pub fn probe_pmu_dir(kind: ProbeKind) -> PathBuf {
    Path::new("/sys/bus/event_source/devices").join(kind.name())
}

/// The probe PMU of `kind`, or `None` when the kernel has none (no such device directory).
pub fn probe_pmu(kind: ProbeKind) -> io::Result<Option<ProbePmu>> {
    let dir = probe_pmu_dir(kind);
    let type_text = match std::fs::read_to_string(dir.join("type")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}/type: {e}", dir.display()))),
    };
    let type_ = type_text
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{}/type: not a number: {type_text:?}", dir.display())))?;
    let field = |name: &str| std::fs::read_to_string(dir.join("format").join(name)).ok().and_then(|t| PmuField::parse(&t));
    Ok(Some(ProbePmu { kind, type_, retprobe: field("retprobe"), ref_ctr_offset: field("ref_ctr_offset") }))
}

/// One probe to open on a probe PMU.
#[derive(Clone, Copy, Debug)]
pub struct ProbeEventSpec<'a> {
    /// kprobe: the kernel function's name (empty with an absolute address in `offset`);
    /// uprobe: the binary's path.
    pub target: &'a CStr,
    /// kprobe: the offset in the function (or the address); uprobe: the file offset.
    pub offset: u64,
    /// A return probe (kretprobe, uretprobe).
    pub retprobe: bool,
    /// uprobe: file offset of a 16-bit reference counter (USDT semaphore) the kernel increments
    /// while the probe exists; 0 for none.
    pub ref_ctr_offset: u64,
}

/// The `perf_event_attr` for `spec` on `pmu`. Its `config1` points into `spec.target`, so the
/// attr is only valid while that string lives.
pub fn probe_event_attr(pmu: &ProbePmu, spec: &ProbeEventSpec<'_>) -> io::Result<PerfEventAttr> {
    let unsupported = |what: &str| io::Error::new(io::ErrorKind::Unsupported, format!("the {} PMU has no {what} field", pmu.kind.name()));
    let mut config = 0;
    if spec.retprobe {
        config |= pmu.retprobe.ok_or_else(|| unsupported("format/retprobe"))?.place(1);
    }
    if spec.ref_ctr_offset != 0 {
        config |= pmu.ref_ctr_offset.ok_or_else(|| unsupported("format/ref_ctr_offset"))?.place(spec.ref_ctr_offset);
    }
    Ok(PerfEventAttr {
        type_: pmu.type_,
        config,
        config1: ptr(spec.target.as_ptr()),
        config2: spec.offset,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    })
}

/// Open a probe event: `pid` -1 probes every process (the event is then opened on CPU 0, as the
/// probe fires on every CPU regardless), otherwise only process `pid`.
pub fn probe_event_open(pmu: &ProbePmu, spec: &ProbeEventSpec<'_>, pid: i32) -> io::Result<OwnedFd> {
    let attr = probe_event_attr(pmu, spec)?;
    let (pid, cpu) = if pid < 0 { (-1, 0) } else { (pid, -1) };
    // `attr.config1` points into `spec.target`, which is borrowed for this whole call.
    perf_event_open(&attr, pid, cpu, -1, 0)
}

/// The tracefs file that defines probe events of `kind` (`<tracefs>/kprobe_events`), or `None`
/// when tracefs has none (kernel built without it).
pub fn probe_events_file(kind: ProbeKind) -> io::Result<Option<PathBuf>> {
    let path = tracefs_dir()?.join(format!("{}_events", kind.name()));
    Ok(path.exists().then_some(path))
}

/// Append one line to a probe-events file (`p:group/name target`, `-:group/name`). The file is
/// opened for appending: opening it for writing without `O_APPEND` would delete every event.
pub fn write_probe_events(file: &Path, line: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).open(file)?;
    f.write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmu_fields_parse_and_place() {
        let f = PmuField::parse("config:32-63\n").unwrap();
        assert_eq!((f.word, f.low_bit, f.high_bit), (0, 32, 63));
        assert_eq!(f.place(0x1234), 0x1234 << 32);
        let bit = PmuField::parse("config:0").unwrap();
        assert_eq!(bit.place(1), 1);
        assert_eq!(bit.place(3), 1, "a one-bit field keeps one bit");
        assert_eq!(PmuField::parse("config:9-3"), None);
        assert_eq!(PmuField::parse("bogus"), None);
        assert_eq!(PmuField::parse("config:64"), None);
    }
}
