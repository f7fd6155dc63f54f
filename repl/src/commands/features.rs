//! `bpfkit features`: what this kernel and this process support.
//!
//! Prints the system facts (kernel, BTF, capabilities, bpffs, JIT, the unprivileged sysctl),
//! then one line per program type, map type and attach type — yes/no, the release the feature
//! appeared in, and how the verdict was obtained — and, when asked, which helpers each program
//! type may call. All answers come from `bpfkit::features`, which probes the kernel once per
//! question.

use std::fmt::Write as _;
use std::io::Write;

use bpfkit::features::{
    system_since, Capability, FeatureError, Features, KernelVersion, SystemInfo, Verdict,
};
use bpfkit::maps::MapType;
use bpfkit::prog::{AttachType, ProgType};

use crate::error::{CliError, OutputName};

/// The arguments of `bpfkit features` (its help text is on [`super::Command::Features`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also probe which helpers each program type may call (one load per pair, ~6,700 in all).
    #[arg(long)]
    pub helpers: bool,

    /// Probe helpers only for this program type, e.g. `xdp` (implies --helpers).
    #[arg(long = "prog-type", value_name = "NAME", value_parser = parse_prog_type)]
    pub prog_type: Option<ProgType>,

    /// Also probe the helpers whose loading writes to the kernel log (bpf_trace_printk,
    /// bpf_trace_vprintk, bpf_probe_write_user), as `bpftool feature probe full` does.
    #[arg(long)]
    pub full: bool,
}

fn parse_prog_type(s: &str) -> Result<ProgType, String> {
    s.parse()
}

/// Probe and print.
pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let features = Features::new().with_noisy_helpers(args.full);
    let mut out = String::new();
    system_section(&mut out, features.system());
    match features.check_access() {
        Ok(()) => {
            line(
                &mut out,
                "bpf(2)",
                "usable",
                Some(system_since::BPF_SYSCALL),
            );
            probe_sections(&mut out, &features, args);
        }
        Err(e) => {
            line(
                &mut out,
                "bpf(2)",
                "not usable",
                Some(system_since::BPF_SYSCALL),
            );
            let _ = writeln!(
                out,
                "\n{e}: program, map, attach type and helper probes skipped"
            );
        }
    }
    stdout
        .write_all(out.as_bytes())
        .map_err(|e| CliError::write(&OutputName::stdout(), e))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// One system line: `  name  value  since X`.
fn line(out: &mut String, name: &str, value: &str, since: Option<KernelVersion>) {
    let since = since.map(|v| format!("since {v}")).unwrap_or_default();
    let _ = writeln!(out, "  {name:<18} {value:<52} {since}");
    trim_last_line(out);
}

/// Lines end without trailing spaces (they come from fixed-width columns).
fn trim_last_line(out: &mut String) {
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out.push('\n');
}

fn unknown() -> String {
    "unknown (not readable)".to_string()
}

fn system_section(out: &mut String, sys: &SystemInfo) {
    let _ = writeln!(out, "system");
    let kernel = match (&sys.kernel, &sys.release) {
        (Some(v), Some(r)) => format!("{v} ({r})"),
        (None, Some(r)) => format!("unparsed release {r:?}"),
        _ => unknown(),
    };
    line(out, "kernel", &kernel, None);
    let btf = if sys.btf_vmlinux {
        "yes  /sys/kernel/btf/vmlinux"
    } else {
        "no   (/sys/kernel/btf/vmlinux missing)"
    };
    line(out, "BTF (vmlinux)", btf, Some(system_since::BTF_VMLINUX));
    for cap in Capability::ALL {
        let value = match sys.capabilities {
            Some(c) => yes_no(c.has(cap)).to_string(),
            None => unknown(),
        };
        let since =
            matches!(cap, Capability::Bpf | Capability::Perfmon).then_some(system_since::CAP_BPF);
        line(out, cap.name(), &value, since);
    }
    let bpffs = match &sys.bpffs_mounts {
        Some(m) if m.is_empty() => "no   (not mounted in this mount namespace)".to_string(),
        Some(m) => format!(
            "yes  {}",
            m.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => unknown(),
    };
    line(out, "bpffs", &bpffs, Some(system_since::BPFFS));
    let unprivileged = match sys.unprivileged_bpf_disabled {
        Some(0) => "allowed (0)".to_string(),
        Some(1) => "disabled (1: until reboot)".to_string(),
        Some(2) => "disabled (2: an admin can re-enable it)".to_string(),
        Some(n) => format!("disabled ({n})"),
        None => unknown(),
    };
    line(
        out,
        "unprivileged bpf",
        &unprivileged,
        Some(system_since::UNPRIVILEGED_BPF_SYSCTL),
    );
    let jit = match sys.jit_enable {
        Some(n) => {
            let state = if n == 0 { "interpreter" } else { "enabled" };
            let extra =
                |name: &str, v: Option<u32>| v.map(|v| format!(", {name} {v}")).unwrap_or_default();
            format!(
                "{state} (bpf_jit_enable {n}{}{})",
                extra("harden", sys.jit_harden),
                extra("kallsyms", sys.jit_kallsyms)
            )
        }
        None => unknown(),
    };
    line(out, "JIT", &jit, Some(system_since::JIT_X86_64));
}

/// A verdict line: `  name  yes  since 5.8  method: detail`.
fn verdict_line(out: &mut String, indent: &str, name: &str, v: &Verdict, show_detail: bool) {
    let since = v.since.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
    let detail = if show_detail {
        format!("{}: {}", v.method, v.detail)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{indent}{name:<34} {:<3}  since {since:<5}  {detail}",
        v.label()
    );
    trim_last_line(out);
}

fn error_line(out: &mut String, name: &str, e: &FeatureError) {
    let _ = writeln!(out, "  {name:<34} ?    {e}");
}

fn probe_sections(out: &mut String, features: &Features, args: &Args) {
    let _ = writeln!(
        out,
        "\nprogram types (libbpf's probe: load `r0 = 0; exit` with the attach type the type needs)"
    );
    for &t in ProgType::ALL {
        match features.prog_type(t) {
            Ok(v) => verdict_line(out, "  ", t.name(), &v, true),
            Err(e) => error_line(out, t.name(), &e),
        }
    }
    let _ = writeln!(out, "\nmap types (create the smallest map of the type)");
    for &t in MapType::ALL {
        match features.map_type(t) {
            Ok(v) => verdict_line(out, "  ", t.name(), &v, true),
            Err(e) => error_line(out, t.name(), &e),
        }
    }
    let _ = writeln!(out, "\nattach types (load with it as expected attach type, query or link a target that cannot exist; method says which)");
    for &a in AttachType::ALL {
        match features.attach_type(a) {
            Ok(v) => verdict_line(out, "  ", a.name(), &v, true),
            Err(e) => error_line(out, a.name(), &e),
        }
    }
    if args.helpers || args.prog_type.is_some() {
        helper_section(out, features, args.prog_type);
    }
}

fn helper_section(out: &mut String, features: &Features, only: Option<ProgType>) {
    let types: Vec<ProgType> = match only {
        Some(t) => vec![t],
        None => ProgType::ALL.to_vec(),
    };
    for t in types {
        let helpers = match features.helpers(t) {
            Ok(h) => h,
            Err(e) => {
                error_line(out, t.name(), &e);
                continue;
            }
        };
        let count = |want: Option<bool>| {
            helpers
                .iter()
                .filter(|(_, _, v)| v.supported == want)
                .count()
        };
        let _ = writeln!(
            out,
            "\nhelpers for {t} (load `call <id>; exit`, read the verifier log): {} yes, {} no, {} not probed",
            count(Some(true)),
            count(Some(false)),
            count(None)
        );
        for (_, name, v) in &helpers {
            verdict_line(out, "  ", name, v, !v.is_supported());
        }
    }
}
