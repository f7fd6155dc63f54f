//! Addresses to names. Kernel addresses through `/proc/kallsyms`; user addresses through the
//! process's mappings, which are read *while it runs* (a profiled command has usually exited by
//! the time its stacks are read), then as a file offset in the mapped ELF file — its symbol
//! table, and with debug information the functions inlined at that address (each its own frame).
//!
//! What cannot be named is counted and shown as perf shows it: `[libfoo.so]` when the mapping is
//! known but the file has no symbol there (stripped), `[unknown]` when no mapping is (JIT code,
//! a process that exited before its mappings were read).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::MaybeDefault;

use bpfkit::attach::symbols::{proc_maps, Mapping};

/// What symbolization could not do, for the report at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SymbolStats {
    /// Frames (addresses) looked up.
    pub frames: u64,
    /// Of those, in a known file but without a symbol there.
    pub no_symbol: u64,
    /// Of those, in no known mapping.
    pub no_mapping: u64,
}

/// Caches each process's mappings and each address's names.
pub struct Resolver {
    symbolizer: Symbolizer,
    maps: HashMap<u32, Vec<Mapping>>,
    user_cache: HashMap<(PathBuf, u64), Vec<String>>,
    kernel_cache: HashMap<u64, Option<String>>,
    pub stats: SymbolStats,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new()
    }
}

impl Resolver {
    pub fn new() -> Resolver {
        Resolver {
            symbolizer: Symbolizer::new(),
            maps: HashMap::new(),
            user_cache: HashMap::new(),
            kernel_cache: HashMap::new(),
            stats: SymbolStats::default(),
        }
    }

    /// Whether process `tgid`'s mappings were read.
    pub fn knows(&self, tgid: u32) -> bool {
        self.maps.contains_key(&tgid)
    }

    /// Read (again) process `tgid`'s mappings; a process that is gone keeps its last ones.
    pub fn snapshot(&mut self, tgid: u32) {
        if let Ok(maps) = proc_maps(Some(tgid as i32)) {
            let exec: Vec<Mapping> = maps.into_iter().filter(|m| m.perms.contains('x')).collect();
            if !exec.is_empty() {
                self.maps.insert(tgid, exec);
            }
        }
    }

    /// Process `tgid`'s mappings, read by someone else (as the command exits).
    pub fn set_maps(&mut self, tgid: u32, maps: Vec<Mapping>) {
        let exec: Vec<Mapping> = maps.into_iter().filter(|m| m.perms.contains('x')).collect();
        if !exec.is_empty() {
            self.maps.insert(tgid, exec);
        }
    }

    /// Frames of a user stack (`ips` innermost first, as the stack map holds them), outermost
    /// first. Return addresses (all but the innermost) are looked up one byte back: the call
    /// instruction, which is in the caller even when the call was the caller's last instruction.
    pub fn user(&mut self, tgid: u32, ips: &[u64]) -> Vec<String> {
        let mut frames = Vec::new();
        for (i, &ip) in ips.iter().enumerate() {
            let addr = if i == 0 { ip } else { ip.saturating_sub(1) };
            frames.push(self.user_frame(tgid, addr));
        }
        frames.reverse();
        frames.into_iter().flatten().collect()
    }

    /// The names at one user address, outermost first (a function, then what is inlined into it
    /// there).
    fn user_frame(&mut self, tgid: u32, addr: u64) -> Vec<String> {
        self.stats.frames += 1;
        let Some(mapping) = self
            .maps
            .get(&tgid)
            .and_then(|maps| maps.iter().find(|m| m.start <= addr && addr < m.end))
        else {
            self.stats.no_mapping += 1;
            return vec!["[unknown]".into()];
        };
        let Some(path) = mapping.path.clone() else {
            self.stats.no_mapping += 1;
            return vec!["[unknown]".into()];
        };
        let file_offset = addr - mapping.start + mapping.offset;
        if let Some(names) = self.user_cache.get(&(path.clone(), file_offset)) {
            if names[0].starts_with('[') {
                self.stats.no_symbol += 1;
            }
            return names.clone();
        }
        let names = match self.elf_names(&path, file_offset) {
            Some(names) => names,
            None => {
                self.stats.no_symbol += 1;
                vec![format!(
                    "[{}]",
                    path.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| path.display().to_string())
                )]
            }
        };
        self.user_cache.insert((path, file_offset), names.clone());
        names
    }

    fn elf_names(&self, path: &Path, file_offset: u64) -> Option<Vec<String>> {
        // Pseudo-files ([vdso], [heap]) have no ELF file to read.
        if !path.is_absolute() {
            return None;
        }
        let source = Source::Elf(Elf::new(path));
        let result = self
            .symbolizer
            .symbolize(&source, Input::FileOffset(&[file_offset]))
            .ok()?;
        match result.into_iter().next()? {
            Symbolized::Sym(sym) => {
                let mut names = vec![sym.name.to_string()];
                names.extend(sym.inlined.iter().map(|f| f.name.to_string()));
                Some(names)
            }
            Symbolized::Unknown(_) => None,
        }
    }

    /// Frames of a kernel stack, outermost first.
    pub fn kernel(&mut self, ips: &[u64]) -> Vec<String> {
        let missing: Vec<u64> = ips
            .iter()
            .copied()
            .filter(|ip| !self.kernel_cache.contains_key(ip))
            .collect();
        if !missing.is_empty() {
            let source = Source::Kernel(Kernel {
                vmlinux: MaybeDefault::None,
                debug_syms: false,
                ..Default::default()
            });
            let names: Vec<Option<String>> =
                match self.symbolizer.symbolize(&source, Input::AbsAddr(&missing)) {
                    Ok(results) => results
                        .into_iter()
                        .map(|r| match r {
                            Symbolized::Sym(sym) => Some(sym.name.to_string()),
                            Symbolized::Unknown(_) => None,
                        })
                        .collect(),
                    Err(_) => vec![None; missing.len()],
                };
            for (ip, name) in missing.into_iter().zip(names) {
                self.kernel_cache.insert(ip, name);
            }
        }
        let mut frames = Vec::with_capacity(ips.len());
        for ip in ips.iter().rev() {
            self.stats.frames += 1;
            match self.kernel_cache.get(ip).cloned().flatten() {
                Some(name) => frames.push(name),
                None => {
                    self.stats.no_symbol += 1;
                    frames.push("[kernel]".into());
                }
            }
        }
        frames
    }
}
