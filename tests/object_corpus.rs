//! Objects load wherever libbpf loads them: every object of the real-world corpus
//! (`tests/fixtures/corpus/`, built by `scripts/build-corpus.sh`; docs/CORPUS.md) is loaded by
//! libbpf 1.7 (`bpf_object__open_file` + `bpf_object__load`) and by bpfkit
//! (`Object::open(..)?.load()`), programs' autoload as the object says. Every program libbpf
//! loads, bpfkit loads, and the kernel's xlated instructions (map ids normalised to map names,
//! JIT addresses masked), tag, verified instruction count and func/line info counts are equal,
//! and so is what the kernel says of every map.
//!
//! Where libbpf refuses an object as a whole, it is narrowed to its programs: each is loaded
//! alone (autoload of the others off) by both libraries, so that one program this kernel
//! refuses does not hide the others. Where both refuse, both must name the same cause: the
//! same errno and, for verifier rejections, the same decisive verifier line.
//!
//! `BPFKIT_CORPUS_DIR` points the test at another directory of objects, `BPFKIT_CORPUS_ONLY`
//! keeps the objects whose path contains it.

mod support;
#[path = "support/libbpf_obj.rs"]
mod libbpf_obj;

use bpfkit::object::{Object, ObjectError};
use libbpf_obj::{show, LibbpfObject, Loaded};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/corpus");

/// Objects bpfkit does not (yet) load as libbpf does, with the reason. Printed on every run.
const KNOWN_BPFKIT_FAILURES: &[(&str, &str)] = &[];

fn objects() -> Vec<PathBuf> {
    let root = std::env::var("BPFKIT_CORPUS_DIR").map_or_else(|_| PathBuf::from(CORPUS), PathBuf::from);
    let only = std::env::var("BPFKIT_CORPUS_ONLY").unwrap_or_default();
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "o") && p.to_string_lossy().contains(&only) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Why a program (or object) was refused: the errno, the verifier's decisive line when the
/// verifier decided, a refusal by the loader itself (before the kernel saw the program), and
/// the whole message.
#[derive(Clone, Debug)]
struct Refusal {
    errno: Option<i32>,
    line: Option<String>,
    loader: Option<LoaderCause>,
    text: String,
}

/// Refusals a loader makes itself, worded differently by libbpf and bpfkit.
#[derive(Clone, Debug, PartialEq, Eq)]
enum LoaderCause {
    /// The section name says no program type.
    UnknownSection,
    /// A kfunc (`__ksym` function) the kernel's BTF does not have: the name.
    MissingKfunc(String),
    /// A `__ksym` variable the kernel does not have: the name.
    MissingKsym(String),
    /// An freplace program without its target program.
    NoTargetProgram,
    /// A `fentry`/`fexit`/`lsm`/… section naming no attach target.
    NoAttachTarget,
    /// A BTF attach target the kernel does not have: the name.
    MissingAttachTarget(String),
    /// An extern map, variable or function defined in another object: objects meant to be
    /// linked first (`bpftool gen object`), which neither loader links.
    Unlinked,
    /// A map's `pinning` is neither `LIBBPF_PIN_NONE` nor `LIBBPF_PIN_BY_NAME`.
    InvalidPinning,
    /// A `SEC("struct_ops")` program no struct_ops map refers to.
    StructOpsUnreferenced,
    /// A program array's initial slot names a program that is not loaded (autoload off).
    SlotProgramNotLoaded,
    /// An instruction naming a register that does not exist (r11-r15): libbpf hands it to the
    /// kernel ("R15 is invalid"), bpfkit refuses to decode it.
    InvalidRegister,
}

/// The first `'quoted'` word of `text` after `marker`.
fn quoted_after(text: &str, marker: &str) -> Option<String> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find('\'')? + 1;
    let end = start + rest[start..].find('\'')?;
    Some(rest[start..end].to_string())
}

fn libbpf_loader_cause(messages: &str) -> Option<LoaderCause> {
    use LoaderCause::*;
    if messages.contains("missing BPF prog type, check ELF section name") {
        Some(UnknownSection)
    } else if messages.contains("attach program FD is not set") {
        Some(NoTargetProgram)
    } else if messages.contains("no BTF-based attach target is specified") {
        Some(NoAttachTarget)
    } else if messages.contains("unrecognized extern section") || messages.contains("failed to find BTF for extern") {
        Some(Unlinked)
    } else if messages.contains("invalid pinning value") {
        Some(InvalidPinning)
    } else if messages.contains("program isn't referenced anywhere") {
        Some(StructOpsUnreferenced)
    } else if messages.contains("failed to initialize slot") && messages.contains("fd=-") {
        Some(SlotProgramNotLoaded)
    } else if let Some(n) = quoted_after(messages, "extern (func ksym) ").filter(|_| messages.contains("not found in kernel")) {
        Some(MissingKfunc(n))
    } else if let Some(n) = quoted_after(messages, "extern (var ksym) ").or_else(|| quoted_after(messages, "extern (ksym) ")) {
        Some(MissingKsym(n))
    } else if let Some(n) = quoted_after(messages, "extern ").filter(|_| messages.contains("(strong): not resolved")) {
        Some(MissingKsym(n))
    } else {
        quoted_after(messages, "failed to find kernel BTF type ID of ").map(MissingAttachTarget)
    }
}

fn bpfkit_loader_cause(text: &str) -> Option<LoaderCause> {
    use LoaderCause::*;
    if text.contains("is not a known program type") {
        Some(UnknownSection)
    } else if text.contains("attach program FD is not set") {
        Some(NoTargetProgram)
    } else if text.contains("names no BTF attach target") {
        Some(NoAttachTarget)
    } else if text.contains("is not a kernel variable in vmlinux BTF")
        || text.contains("it is defined in another object")
        || (text.contains("DATASEC '.maps'") && text.contains("has no ELF symbol"))
    {
        Some(Unlinked)
    } else if text.contains("unknown pinning") {
        Some(InvalidPinning)
    } else if text.contains("isn't referenced anywhere") {
        Some(StructOpsUnreferenced)
    } else if text.contains("which is not a loaded program of the object") {
        Some(SlotProgramNotLoaded)
    } else if text.contains("do not decode") && text.contains("register r1") && text.contains("does not exist") {
        Some(InvalidRegister)
    } else if let Some(n) = quoted_after(text, "kfunc ").filter(|_| text.contains("is not in vmlinux BTF")) {
        Some(MissingKfunc(n))
    } else if let Some(n) = quoted_after(text, "extern (ksym) ") {
        Some(MissingKsym(n))
    } else {
        quoted_after(text, "attach target ").filter(|_| text.contains("is not in vmlinux BTF")).map(MissingAttachTarget)
    }
}

/// A CO-RE relocation neither library could resolve poisons its instruction (`call
/// 0xbad2310`); the verifier says "invalid func unknown#195896080", which libbpf's log rewrites
/// as "failed to resolve CO-RE relocation <kind> <spec>" and bpfkit's error says first: their
/// decisive line is that.
fn canonical_line(line: String) -> String {
    match line.split_once(" (the verifier: ") {
        Some((core, _)) if core.starts_with("failed to resolve CO-RE relocation") => core.to_string(),
        _ => line,
    }
}

impl Refusal {
    fn same_cause(&self, other: &Refusal) -> bool {
        use LoaderCause::*;
        match (&self.loader, &other.loader) {
            // The loaders resolve externs in different orders: the first missing one each
            // names may differ.
            (Some(MissingKfunc(_)), Some(MissingKfunc(_))) | (Some(MissingKsym(_)), Some(MissingKsym(_))) => true,
            (Some(a), Some(b)) => a == b,
            (None, None) => self.errno == other.errno && self.line == other.line,
            _ => false,
        }
    }

    fn brief(&self) -> String {
        if let Some(c) = &self.loader {
            return format!("refused by the loader: {c:?}");
        }
        let errno = self.errno.map_or("no errno".into(), errno_name);
        match &self.line {
            Some(l) => format!("{errno}: {l}"),
            None => errno,
        }
    }
}

fn errno_name(e: i32) -> String {
    bpfkit::os::describe_io_error(&std::io::Error::from_raw_os_error(e))
}

/// The verifier's decisive line of a log (what `bpfkit::prog::explain` reports).
fn decisive_line(log: &str) -> Option<String> {
    if log.trim().is_empty() {
        return None;
    }
    let r = bpfkit::prog::explain(log, &bpfkit::insn::Assembled::from_insns(Vec::new()), std::io::Error::other(""));
    Some(canonical_line(r.reason))
}

fn libbpf_refusal(errno: i32, messages: String, log: String) -> Refusal {
    let mut line = decisive_line(&log);
    // A refusal with a kernel log is the kernel's; one without, that libbpf explains, libbpf's.
    let mut loader = if line.is_none() { libbpf_loader_cause(&messages) } else { None };
    if line.as_deref().is_some_and(|l| l.starts_with('R') && l.ends_with(" is invalid")) {
        (line, loader) = (None, Some(LoaderCause::InvalidRegister));
    }
    Refusal { errno: Some(errno), line, loader, text: messages.trim_end().to_string() }
}

/// The errno named in a message (`EPERM (Operation not permitted)`), if any.
fn errno_in_text(text: &str) -> Option<i32> {
    (1..=600).find(|&e| {
        let name = errno_name(e);
        let short = name.split(' ').next().unwrap_or_default();
        short.starts_with('E') && text.contains(&format!("{short} ("))
    })
}

fn bpfkit_refusal(e: &ObjectError) -> Refusal {
    let text = e.to_string();
    if let ObjectError::Load { source, .. } = e {
        if let bpfkit::prog::LoadError::Verifier { rejection, .. } = &**source {
            return Refusal {
                errno: rejection.errno.raw_os_error(),
                line: Some(canonical_line(rejection.reason.clone())),
                loader: None,
                text,
            };
        }
    }
    if let ObjectError::Refused { reason, .. } = e {
        // "…: EPERM (…); the verifier log ends: a / b / c"
        let line = reason.split_once("the verifier log ends: ").and_then(|(_, t)| decisive_line(&t.replace(" / ", "\n")));
        return Refusal { errno: errno_in_text(reason), line, loader: None, text };
    }
    let mut errno = None;
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            errno = io.raw_os_error();
        }
        source = s.source();
    }
    let loader = bpfkit_loader_cause(&text);
    Refusal { errno: errno.or_else(|| errno_in_text(&text)), line: None, loader, text }
}

/// What loading one object, or one program of it, gave.
enum Outcome {
    Loaded(Loaded, Vec<libbpf_obj::MapFacts>),
    Refused(Refusal),
}

fn load_libbpf(path: &Path, pin_root: &Path, only: Option<&str>) -> Outcome {
    let mut obj = match LibbpfObject::open(path, pin_root) {
        Ok(o) => o,
        Err((errno, messages)) => return Outcome::Refused(libbpf_refusal(errno, messages, String::new())),
    };
    if let Some(p) = only {
        obj.only(p);
    }
    let out = match obj.load() {
        Ok(()) => {
            let (programs, maps) = obj.loaded();
            Outcome::Loaded(programs, maps)
        }
        Err((errno, messages)) => {
            let log = libbpf_obj::load_log(&messages);
            Outcome::Refused(libbpf_refusal(errno, messages, log))
        }
    };
    drop(obj);
    clear_pins(pin_root);
    out
}

fn load_bpfkit(path: &Path, pin_root: &Path, only: Option<&str>) -> Outcome {
    let opened = Object::open(path).map(|mut obj| {
        obj.set_pin_root(pin_root);
        if let Some(only) = only {
            let names: Vec<String> = obj.programs().iter().map(|p| p.name.clone()).collect();
            for n in names {
                obj.program_mut(&n).unwrap().autoload = n == only;
            }
        }
        obj
    });
    let out = match opened.and_then(Object::load) {
        Ok(loaded) => Outcome::Loaded(libbpf_obj::loaded_by_bpfkit(&loaded), libbpf_obj::map_facts(&loaded)),
        Err(e) => Outcome::Refused(bpfkit_refusal(&e)),
    };
    clear_pins(pin_root);
    out
}

/// The last lines of libbpf's messages, on one line.
fn last_lines(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().rev().take(6).collect();
    lines.reverse();
    lines.join(" | ")
}

fn clear_pins(root: &Path) {
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What one object gave.
#[derive(Default)]
struct Report {
    /// Programs loaded by both with equal xlated instructions, and programs libbpf loaded.
    equal: usize,
    libbpf_loaded: usize,
    /// Whether libbpf loaded the object whole, and bpfkit too.
    whole_by_libbpf: bool,
    whole_by_both: bool,
    failures: Vec<String>,
    /// (program or "" for the object, libbpf's refusal, bpfkit's)
    shared: Vec<(String, Refusal, Refusal)>,
    /// Programs bpfkit loaded that libbpf refused.
    bpfkit_only: Vec<(String, Refusal)>,
    took: Duration,
}

fn compare_loaded(file: &str, theirs: &Loaded, ours: &Loaded, r: &mut Report) {
    for (name, (their, their_facts)) in theirs {
        r.libbpf_loaded += 1;
        let Some((mine, my_facts)) = ours.get(name) else {
            r.failures.push(format!("{file}: program {name}: libbpf loaded it, bpfkit did not"));
            continue;
        };
        if mine != their {
            r.failures.push(format!(
                "{file}: program {name}: xlated differs\n--- bpfkit\n{}--- libbpf\n{}",
                show(mine),
                show(their)
            ));
            continue;
        }
        // The tag hashes the instructions handed to the kernel; func/line info counts say the
        // same BTF records went along; the verifier walked as many instructions.
        let key = |f: &libbpf_obj::Facts| (f.tag, f.nr_func_info, f.nr_line_info, f.has_btf, f.verified_insns);
        if key(my_facts) != key(their_facts) {
            r.failures.push(format!("{file}: program {name}: bpfkit {my_facts:?}, libbpf {their_facts:?}"));
            continue;
        }
        r.equal += 1;
    }
    for name in ours.keys().filter(|n| !theirs.contains_key(*n)) {
        r.failures.push(format!("{file}: program {name}: bpfkit loaded it, libbpf did not"));
    }
}

fn check_object(path: &Path, pin_root: &Path) -> Report {
    let start = Instant::now();
    let file = path.strip_prefix(CORPUS).unwrap_or(path).to_string_lossy().into_owned();
    let mut r = Report::default();
    match (load_libbpf(path, pin_root, None), load_bpfkit(path, pin_root, None)) {
        (Outcome::Loaded(theirs, their_maps), Outcome::Loaded(ours, our_maps)) => {
            r.whole_by_libbpf = true;
            r.whole_by_both = true;
            // The same maps, created alike (type, sizes, flags, BTF types).
            if our_maps != their_maps {
                let ours: Vec<_> = our_maps.iter().filter(|m| !their_maps.contains(m)).collect();
                let theirs: Vec<_> = their_maps.iter().filter(|m| !our_maps.contains(m)).collect();
                r.failures.push(format!("{file}: maps differ: bpfkit {ours:?}, libbpf {theirs:?}"));
            }
            compare_loaded(&file, &theirs, &ours, &mut r);
        }
        (Outcome::Loaded(theirs, _), Outcome::Refused(ours)) => {
            r.whole_by_libbpf = true;
            r.libbpf_loaded = theirs.len();
            r.failures.push(format!("{file}: libbpf loaded it, bpfkit: {}", ours.text));
        }
        (Outcome::Refused(theirs), whole) => {
            // One program at a time, in both.
            let programs = match LibbpfObject::open(path, pin_root) {
                Ok(o) => o.programs(),
                Err(_) => Vec::new(),
            };
            let mut bpfkit_causes: Vec<LoaderCause> = Vec::new();
            if let Outcome::Refused(ours) = &whole {
                bpfkit_causes.extend(ours.loader.clone());
            }
            // libbpf resolves every extern of the object before loading any program: one it
            // cannot resolve refuses them all, where bpfkit refuses only the programs using it.
            // Such a refusal is shared when bpfkit names the same extern somewhere.
            let mut object_level: Vec<(String, Refusal, Refusal)> = Vec::new();
            if programs.iter().all(|(_, autoload)| !autoload) {
                match whole {
                    Outcome::Refused(ours) if ours.same_cause(&theirs) => r.shared.push((String::new(), theirs, ours)),
                    Outcome::Refused(ours) => r.failures.push(format!(
                        "{file}: both refuse it, for different causes:\n  libbpf: {}\n  bpfkit: {}\n  libbpf said: {}\n  bpfkit said: {}",
                        theirs.brief(),
                        ours.brief(),
                        last_lines(&theirs.text),
                        ours.text
                    )),
                    Outcome::Loaded(..) => r.bpfkit_only.push((String::new(), theirs)),
                }
            }
            for (name, _) in programs.iter().filter(|(_, autoload)| *autoload) {
                match (load_libbpf(path, pin_root, Some(name)), load_bpfkit(path, pin_root, Some(name))) {
                    (Outcome::Loaded(theirs, _), Outcome::Loaded(ours, _)) => {
                        // Only this program is counted here (struct_ops programs a map uses load
                        // along with it, in both libraries, and are counted on their own turn).
                        let only = |l: Loaded| -> Loaded { l.into_iter().filter(|(n, _)| n == name).collect() };
                        compare_loaded(&file, &only(theirs), &only(ours), &mut r)
                    }
                    (Outcome::Loaded(theirs, _), Outcome::Refused(ours)) => {
                        r.libbpf_loaded += theirs.len();
                        r.failures.push(format!("{file}: program {name}: libbpf loaded it alone, bpfkit: {}", ours.text));
                    }
                    (Outcome::Refused(theirs), Outcome::Refused(ours)) => {
                        bpfkit_causes.extend(ours.loader.clone());
                        if ours.same_cause(&theirs) {
                            r.shared.push((name.clone(), theirs, ours));
                        } else if matches!(theirs.loader, Some(LoaderCause::MissingKfunc(_) | LoaderCause::MissingKsym(_))) {
                            object_level.push((name.clone(), theirs, ours));
                        } else {
                            r.failures.push(format!(
                                "{file}: program {name}: both refuse it, for different causes:\n  libbpf: {}\n  bpfkit: {}\n  libbpf said: {}\n  bpfkit said: {}",
                                theirs.brief(),
                                ours.brief(),
                                last_lines(&theirs.text),
                                ours.text
                            ));
                        }
                    }
                    (Outcome::Refused(theirs), Outcome::Loaded(..)) => r.bpfkit_only.push((name.clone(), theirs)),
                }
            }
            for (name, theirs, ours) in object_level {
                let cause = theirs.loader.clone();
                let same_kind = |c: &LoaderCause| std::mem::discriminant(c) == std::mem::discriminant(cause.as_ref().unwrap());
                if bpfkit_causes.iter().any(same_kind) {
                    if !r.shared.iter().any(|(p, t, _)| p.is_empty() && t.loader == cause) {
                        r.shared.push((String::new(), theirs, ours));
                    }
                } else {
                    r.failures.push(format!(
                        "{file}: program {name}: libbpf refuses the object for {}, which bpfkit never names; bpfkit: {}",
                        theirs.brief(),
                        ours.text
                    ));
                }
            }
        }
    }
    r.took = start.elapsed();
    r
}

#[test]
fn corpus_loads_wherever_libbpf_loads() {
    if !support::kernel_or_skip("corpus_loads_wherever_libbpf_loads") {
        return;
    }
    libbpf_obj::capture_messages();
    let files = objects();
    let pin_base = PathBuf::from(format!("/sys/fs/bpf/bpfkit-corpus-{}", std::process::id()));
    // Two workers (objects are independent; the verifier is the cost).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    let mut reports: Vec<(usize, Report)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (files, next, pin_base) = (&files, &next, &pin_base);
                s.spawn(move || {
                    let pin_root = pin_base.join(w.to_string());
                    std::fs::create_dir_all(&pin_root).unwrap();
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        out.push((i, check_object(path, &pin_root)));
                    }
                    let _ = std::fs::remove_dir(&pin_root);
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let _ = std::fs::remove_dir(&pin_base);
    reports.sort_by_key(|(i, _)| *i);

    let name = |i: usize| files[i].strip_prefix(CORPUS).unwrap_or(&files[i]).to_string_lossy().into_owned();
    let (mut objs_libbpf, mut objs_both, mut progs_libbpf, mut progs_equal) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut known = Vec::new();
    eprintln!("shared refusals (both libraries refuse, for the same cause):");
    for (i, r) in &reports {
        let file = name(*i);
        objs_libbpf += usize::from(r.whole_by_libbpf);
        objs_both += usize::from(r.whole_by_both);
        progs_libbpf += r.libbpf_loaded;
        progs_equal += r.equal;
        for (prog, theirs, _) in &r.shared {
            eprintln!("  {file}{}{prog}: {}", if prog.is_empty() { "" } else { " " }, theirs.brief());
        }
        for (prog, theirs) in &r.bpfkit_only {
            eprintln!("  note: {file} {prog}: bpfkit loads it, libbpf refuses it: {}", theirs.brief());
        }
        if r.took > Duration::from_secs(5) {
            eprintln!("  slow: {file} took {:.1} s", r.took.as_secs_f64());
        }
        match KNOWN_BPFKIT_FAILURES.iter().find(|(f, _)| file.ends_with(f)) {
            Some((_, why)) if !r.failures.is_empty() => known.push(format!("{file}: {why}")),
            _ => failures.extend(r.failures.iter().cloned()),
        }
    }
    eprintln!(
        "objects: {objs_both}/{objs_libbpf} loaded by both, programs: {progs_equal}/{progs_libbpf}, xlated equal ({} objects)",
        files.len()
    );
    for k in &known {
        eprintln!("known bpfkit failure: {k}");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    if std::env::var_os("BPFKIT_CORPUS_DIR").is_none() && std::env::var_os("BPFKIT_CORPUS_ONLY").is_none() {
        assert!(files.len() >= 150, "{} objects in the corpus", files.len());
    }
}
