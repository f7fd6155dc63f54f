//! `:open NAME FILE.o [VAR=VALUE …]`: a clang-built object in the session. Its globals are set
//! by their BTF types (`Object::set_global_text`), it is loaded (CO-RE against this kernel), and
//! its programs and maps join the session as `NAME.PROG` and `NAME.MAP` — on duplicated fds, so
//! every command that takes a session program or map takes them (`:run`, `:info`, `:watch`,
//! `:count`, `:map dump`, `:attach NAME.PROG KIND …`), while the object itself stays in the
//! session to attach its programs by section (`:attach NAME.PROG` with no kind).

use std::io::Write;
use std::os::fd::AsFd;

use bpfkit::maps::Map;
use bpfkit::attach::Link;
use bpfkit::object::{LoadedProgram, Object};
use bpfkit::prog::Program;

use super::session::{say, Loaded, MapTypes, Outcome, ProgEntry, Session, SessionMap};

const USAGE: &str = "usage: :open NAME FILE.o [VAR=VALUE …] (e.g. :open tgt prog.o target_tgid=$pid)";

/// `:open NAME FILE.o [VAR=VALUE …]`.
pub fn open(s: &mut Session, args: &[&str], out: &mut dyn Write) -> Outcome {
    let [name, file, sets @ ..] = args else {
        return Err(USAGE.into());
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(crate::error::CliError::from(format!("`{name}`: object names take letters, digits and `_` (its programs become `{name}.PROG`)")));
    }
    if s.objects.iter().any(|(n, _)| n == name) {
        return Err(crate::error::CliError::from(format!("an object `{name}` is already open in this session")));
    }
    let mut obj = Object::open(file).map_err(|e| format!("{file}: {e}"))?;
    for assignment in sets {
        let (var, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}`: globals are set as VAR=VALUE ({USAGE})"))?;
        obj.set_global_text(var, value).map_err(|e| format!("{file}: {e}"))?;
    }
    let btf = obj.btf().cloned();
    let loaded = obj.load().map_err(|e| format!("{file}: {e}"))?;
    // As `:load` does: run statistics on, so `:info` counts this object's runs too.
    s.enable_stats();

    let prog_name = |p: &LoadedProgram| format!("{name}.{}", p.name);
    let map_name = |def: &bpfkit::object::MapDef| format!("{name}.{}", def.name.trim_start_matches('.'));
    for p in loaded.programs() {
        if s.program(&prog_name(p)).is_ok() {
            return Err(crate::error::CliError::from(format!("the session already has a program {}", prog_name(p))));
        }
    }
    let mut maps = Vec::new();
    for (def, map) in loaded.maps() {
        let session_name = map_name(def);
        if s.maps.iter().any(|m| m.name == session_name) {
            return Err(crate::error::CliError::from(format!("the session already has a map {session_name}")));
        }
        let dup = map.as_fd().try_clone_to_owned().map_err(|e| format!("dup of map {session_name}: {e}"))?;
        let map = Map::from_fd(dup).map_err(|e| e.to_string())?;
        let types = match (&btf, def.key_type_id, def.value_type_id) {
            (Some(btf), Some(key), Some(value)) => Some(MapTypes { btf: btf.clone(), key, value }),
            _ => None,
        };
        maps.push(SessionMap::named(session_name, map, types)?);
    }
    let mut programs = Vec::new();
    for p in loaded.programs() {
        let dup = p.program().as_fd().try_clone_to_owned().map_err(|e| format!("dup of program {}: {e}", prog_name(p)))?;
        let prog = Program::from_fd(dup).map_err(|e| e.to_string())?;
        let mut entry = ProgEntry::new(&prog_name(p));
        entry.object = Some((*name).to_owned());
        entry.loaded = Some(Loaded { prog, asm: None, prog_type: p.spec.prog_type });
        programs.push(entry);
    }

    say!(out, "object {name}: {} program(s), {} map(s) from {file}", programs.len(), maps.len());
    for p in loaded.programs() {
        let how = if p.spec.attaches_by_section() {
            format!("`:attach {}` attaches it there", prog_name(p))
        } else {
            "attach it with a KIND".to_owned()
        };
        say!(out, "  program {}: {} (section {}); {how}", prog_name(p), p.spec.prog_type, p.section_name);
    }
    for m in &maps {
        let map = &m.map;
        say!(out, "  map {}: {} key {} value {} max {}", m.name, map.map_type(), map.key_size(), map.value_size(), map.max_entries());
    }
    s.programs.extend(programs);
    s.maps.extend(maps);
    s.objects.push(((*name).to_owned(), loaded));
    Ok(())
}

/// Attach session program `prog_name` (from an object) where its section says.
pub fn attach_by_section(s: &Session, prog_name: &str) -> Result<Link, String> {
    let entry = s.program(prog_name)?;
    let Some(object) = &entry.object else {
        return Err(format!(
            "program {prog_name} was typed here: its section is unknown, so `:attach {prog_name} KIND …` says where (`:help attach`)"
        ));
    };
    let (_, loaded) = s.objects.iter().find(|(n, _)| n == object).ok_or_else(|| format!("object {object} is not open"))?;
    let short = prog_name.strip_prefix(&format!("{object}.")).unwrap_or(prog_name);
    let p = loaded.program(short).ok_or_else(|| format!("object {object} has no program {short}"))?;
    if !p.spec.attaches_by_section() {
        return Err(format!(
            "program {prog_name}: section '{}' names no attach point; `:attach {prog_name} KIND …` says where",
            p.section_name
        ));
    }
    p.attach().map_err(|e| e.to_string())
}
