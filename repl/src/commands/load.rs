//! `bpfkit load FILE.o [--pin DIR]`: open a BPF object, create its maps and load its programs
//! (CO-RE against the running kernel), and print what the kernel made of them. Without `--pin`
//! everything is released when the command exits, so it answers "does this object load here?";
//! with `--pin DIR` (on a bpffs) each program stays, pinned at `DIR/<program>`, and each map at
//! `DIR/maps/<map>`, as `bpftool prog loadall … pinmaps` does.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use crate::error::CliError;
use crate::io::write_output;

/// The arguments of `bpfkit load` (its help text is on [`super::Command::Load`]).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A BPF ELF object.
    #[arg(value_name = "FILE.o")]
    pub file: PathBuf,

    /// Pin every program at DIR/<program> and every map at DIR/maps/<map> (DIR on a bpffs).
    #[arg(long, value_name = "DIR")]
    pub pin: Option<PathBuf>,
}

pub fn run(args: &Args, stdout: &mut dyn Write) -> Result<(), CliError> {
    let file = args.file.display().to_string();
    let obj = super::obj::open(&args.file)?;
    let loaded = obj.load().map_err(|source| CliError::Object { file: file.clone(), source: Box::new(source) })?;
    let mut out = String::new();
    for p in loaded.programs() {
        let info = p.program().info().map_err(|e| CliError::Load { source: Box::new(e), snippet: None, log: None })?;
        let _ = writeln!(out, "prog {} id {} {} ({} section) xlated {} B jited {} B", p.name, info.id, p.spec.prog_type, p.section_name, info.xlated_len, info.jited_len);
    }
    for (def, map) in loaded.maps() {
        let info = map.info().map_err(CliError::Map)?;
        let _ = writeln!(out, "map {} id {} {} key {} value {} max_entries {}", def.name, info.id, def.map_type, def.key_size, def.value_size, def.max_entries);
    }
    if let Some(dir) = &args.pin {
        let maps_dir = dir.join("maps");
        std::fs::create_dir_all(&maps_dir).map_err(|source| CliError::Write { target: maps_dir.display().to_string(), source })?;
        for p in loaded.programs() {
            let path = dir.join(&p.name);
            p.program().pin(&path).map_err(|e| CliError::Load { source: Box::new(e), snippet: None, log: None })?;
            let _ = writeln!(out, "pinned prog {} at {}", p.name, path.display());
        }
        for (def, map) in loaded.maps() {
            // Map names of global data (`.rodata`) are file names too.
            let path = maps_dir.join(def.name.trim_start_matches('.'));
            map.pin(&path).map_err(CliError::Map)?;
            let _ = writeln!(out, "pinned map {} at {}", def.name, path.display());
        }
    }
    write_output(None, stdout, out.as_bytes())
}
