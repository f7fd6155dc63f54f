//! `bpfkit load FILE.o [--set NAME=VALUE]… [--attach] [--pin DIR]`: open a BPF object, set its
//! globals, create its maps and load its programs (CO-RE against the running kernel), and print
//! what the kernel made of them.
//!
//! - `--set NAME=VALUE` writes a global (`.rodata`, `.data`, `.bss`, custom `.data.*`) before
//!   load, parsed by its BTF type (`Object::set_global_text`): how a libbpf tool's `-p PID`
//!   reaches its `const volatile` configuration.
//! - `--attach` attaches every program whose section names its attach point (as libbpf's
//!   `bpf_program__attach`; the others are listed as not attached, and why), prints the links
//!   and stays until Ctrl-C (SIGINT) or SIGTERM; then every link is detached, unless `--pin`
//!   pinned it.
//! - Without `--pin` everything is released when the command exits, so without `--attach` it
//!   answers "does this object load here?"; with `--pin DIR` (on a bpffs) each program stays,
//!   pinned at `DIR/<program>`, each map at `DIR/maps/<map>` (as `bpftool prog loadall …
//!   pinmaps` does) and, with `--attach`, each link at `DIR/links/<program>`.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bpfkit::attach::Link;
use bpfkit::object::LoadedObject;

use crate::error::CliError;
use crate::io::write_output;

/// The arguments of `bpfkit load` (its help text is on [`super::Command::Load`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A BPF ELF object.
    #[arg(value_name = "FILE.o")]
    pub file: PathBuf,

    /// Set global variable NAME (in .rodata, .data, .bss or .data.*) to VALUE before load,
    /// parsed by its BTF type: integers (decimal or 0x hex), true/false, enumerator names,
    /// strings for char arrays. Repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,

    /// Attach every program whose section names its attach point, print the links, and stay
    /// until Ctrl-C; then detach (links pinned with --pin stay).
    #[arg(long)]
    pub attach: bool,

    /// Pin every program at DIR/<program> and every map at DIR/maps/<map> (DIR on a bpffs);
    /// with --attach, every link at DIR/links/<program>.
    #[arg(long, value_name = "DIR")]
    pub pin: Option<PathBuf>,
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let file = args.file.display().to_string();
    let object_err = |source| CliError::Object { file: file.clone(), source: Box::new(source) };
    let mut obj = super::obj::open(&args.file)?;
    for assignment in &args.set {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--set {assignment}: expected NAME=VALUE")))?;
        obj.set_global_text(name, value).map_err(object_err)?;
    }
    let loaded = obj.load().map_err(object_err)?;
    let mut out = String::new();
    describe(&loaded, &mut out)?;
    if let Some(dir) = &args.pin {
        pin(&loaded, dir, &mut out)?;
    }
    write_output(None, stdout, out.as_bytes())?;
    if args.attach {
        attach_until_interrupted(&loaded, args.pin.as_deref(), &file, stdout)?;
    }
    Ok(())
}

fn load_err(e: impl Into<bpfkit::prog::LoadError>) -> CliError {
    CliError::Load { source: Box::new(e.into()), snippet: None, log: None }
}

/// One line per program and map: ids and sizes as the kernel has them.
fn describe(loaded: &LoadedObject, out: &mut String) -> Result<(), CliError> {
    for p in loaded.programs() {
        let info = p.program().info().map_err(load_err)?;
        let _ = writeln!(out, "prog {} id {} {} ({} section) xlated {} B jited {} B", p.name, info.id, p.spec.prog_type, p.section_name, info.xlated_len, info.jited_len);
    }
    for (def, map) in loaded.maps() {
        let info = map.info().map_err(CliError::Map)?;
        let _ = writeln!(out, "map {} id {} {} key {} value {} max_entries {}", def.name, info.id, def.map_type, def.key_size, def.value_size, def.max_entries);
    }
    Ok(())
}

fn pin(loaded: &LoadedObject, dir: &std::path::Path, out: &mut String) -> Result<(), CliError> {
    let maps_dir = dir.join("maps");
    std::fs::create_dir_all(&maps_dir).map_err(|source| CliError::Write { target: maps_dir.display().to_string(), source })?;
    for p in loaded.programs() {
        let path = dir.join(&p.name);
        p.program().pin(&path).map_err(load_err)?;
        let _ = writeln!(out, "pinned prog {} at {}", p.name, path.display());
    }
    for (def, map) in loaded.maps() {
        // Map names of global data (`.rodata`) are file names too.
        let path = maps_dir.join(def.name.trim_start_matches('.'));
        map.pin(&path).map_err(CliError::Map)?;
        let _ = writeln!(out, "pinned map {} at {}", def.name, path.display());
    }
    Ok(())
}

/// Attach what attaches by section, say so, wait for SIGINT/SIGTERM, then drop (detach) every
/// link that was not pinned.
fn attach_until_interrupted(loaded: &LoadedObject, pin_dir: Option<&std::path::Path>, file: &str, stdout: &mut dyn Write) -> Result<(), CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| CliError::Setup(format!("cannot handle Ctrl-C, so --attach could not detach on exit: {e}")))?;
    let mut links: Vec<(String, Link)> = Vec::new();
    let mut out = String::new();
    for p in loaded.programs() {
        if !p.spec.attaches_by_section() {
            let _ = writeln!(out, "not attached: {} (section '{}' names no attach point; attach it with bpfkit's API or the REPL's :attach)", p.name, p.section_name);
            continue;
        }
        let link = p.attach().map_err(|source| CliError::Object { file: file.to_string(), source: Box::new(source) })?;
        let id = link.info().map(|i| format!(" (link id {})", i.id)).unwrap_or_default();
        let _ = writeln!(out, "attached: {} → {}{id}", p.name, link.describe());
        if let Some(dir) = pin_dir {
            let links_dir = dir.join("links");
            std::fs::create_dir_all(&links_dir).map_err(|source| CliError::Write { target: links_dir.display().to_string(), source })?;
            let path = links_dir.join(&p.name);
            link.pin(&path).map_err(CliError::Link)?;
            let _ = writeln!(out, "pinned link of {} at {}", p.name, path.display());
        }
        links.push((p.name.clone(), link));
    }
    let _ = writeln!(out, "{} link(s); Ctrl-C detaches{}", links.len(), if pin_dir.is_some() { " (pinned links stay)" } else { "" });
    write_output(None, stdout, out.as_bytes())?;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let n = links.len();
    drop(links);
    write_output(None, stdout, format!("interrupted: {n} link(s) released\n").as_bytes())
}
