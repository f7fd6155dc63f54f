//! Where to put a uprobe: ELF symbols of user binaries (executables, PIE or not, and shared
//! libraries) turned into the file offsets the kernel's uprobes take, plus the process maps
//! that relate file offsets to run-time addresses.
//!
//! A symbol's value is a virtual address in the ELF's own address space; the uprobe wants the
//! offset of that instruction in the file. The loadable segment (`PT_LOAD`) containing the
//! address gives it: `offset = vaddr - p_vaddr + p_offset`. This holds for position-dependent
//! executables, PIE executables and shared libraries alike (the load bias cancels out), which is
//! why uprobes never need the process's run-time addresses.
//!
//! A binary is untrusted input: it is read through `object`'s bounds-checked reader, on demand
//! (headers and symbol tables, not the whole file), and malformed input is a [`SymbolError`].
//!
//! ```no_run
//! use bpfkit::attach::symbols::ElfBinary;
//! let libc = ElfBinary::open(bpfkit::attach::symbols::resolve_binary("libc.so.6", None)?)?;
//! let getpid = libc.function("getpid")?;
//! println!("getpid at {:#x}, file offset {:#x}", getpid.vaddr, getpid.file_offset);
//! # Ok::<(), bpfkit::attach::symbols::SymbolError>(())
//! ```

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use object::read::ReadCache;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SectionKind, SymbolFlags, SymbolKind};

/// `STT_GNU_IFUNC`: the symbol is a resolver returning the real implementation's address.
const STT_GNU_IFUNC: u8 = 10;
/// `PF_X`: an executable segment.
const PF_X: u32 = 1;

/// Why a binary, symbol or address could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SymbolError {
    /// Reading the file at `path` failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file at `path` is not an ELF file bpfkit can read; `message` says why.
    #[error("{}: not a readable ELF file: {message}", path.display())]
    Elf {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read as ELF.
        message: String,
    },
    /// No function symbol named `symbol` in the binary's `.symtab` or `.dynsym`.
    #[error("{}: no function symbol `{symbol}` in .symtab or .dynsym", path.display())]
    NotFound {
        /// The binary searched.
        path: PathBuf,
        /// The symbol name asked for.
        symbol: String,
    },
    /// More than one function symbol matches `symbol`, at different addresses; `candidates` lists them.
    #[error("{}: function symbol `{symbol}` is ambiguous: {candidates}", path.display())]
    Ambiguous {
        /// The binary searched.
        path: PathBuf,
        /// The symbol name asked for.
        symbol: String,
        /// The matching symbols and their addresses.
        candidates: String,
    },
    /// `symbol` is a GNU IFUNC resolver (`STT_GNU_IFUNC`), not a function to probe.
    #[error("{}: `{symbol}` is an IFUNC (STT_GNU_IFUNC) resolver, not the function it selects; probe the implementation's symbol (e.g. `__memcpy_avx_unaligned`) or its offset", path.display())]
    Ifunc {
        /// The binary searched.
        path: PathBuf,
        /// The IFUNC resolver's symbol name.
        symbol: String,
    },
    /// The offset asked for lies past the end of the function `symbol` (`size` bytes long).
    #[error("{}: offset {offset:#x} is past the end of `{symbol}` ({size} bytes)", path.display())]
    OutsideFunction {
        /// The binary searched.
        path: PathBuf,
        /// The function's symbol name.
        symbol: String,
        /// The offset asked for, in bytes from the function's start.
        offset: u64,
        /// The function's size in bytes (`st_size`).
        size: u64,
    },
    /// The address `vaddr` lies in no `PT_LOAD` segment (with `exec_only`: in no executable one).
    #[error("{}: address {vaddr:#x} is in no loadable segment{}", path.display(), if *.exec_only { " with code" } else { "" })]
    NoSegment {
        /// The binary searched.
        path: PathBuf,
        /// The virtual address looked up.
        vaddr: u64,
        /// Whether only executable segments were searched.
        exec_only: bool,
    },
    /// A binary given by `name` was not found; `looked` says where it was looked for.
    #[error("cannot find binary `{name}`: {looked}")]
    NoBinary {
        /// The name given.
        name: String,
        /// Where it was looked for.
        looked: String,
    },
    /// `/proc/<pid>/maps` could not be read or parsed.
    #[error("/proc/{pid}/maps: {message}")]
    Maps {
        /// The process, as in `/proc/<pid>`.
        pid: String,
        /// Why the file could not be read or parsed.
        message: String,
    },
}

/// A function symbol, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolLocation {
    /// The symbol's name.
    pub name: String,
    /// The symbol's value: its virtual address in the ELF's address space.
    pub vaddr: u64,
    /// `st_size` (0 when the symbol does not say).
    pub size: u64,
    /// Offset of the first instruction in the file: what a uprobe takes.
    pub file_offset: u64,
}

/// One `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// `p_vaddr`: the segment's virtual address.
    pub vaddr: u64,
    /// `p_memsz`: the segment's size in memory.
    pub memsz: u64,
    /// `p_offset`: where the segment starts in the file.
    pub offset: u64,
    /// `p_filesz`: the segment's size in the file.
    pub filesz: u64,
    /// Whether the segment is executable (`PF_X`).
    pub executable: bool,
}

/// One section's placement (for notes and `.stapsdt.base`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// The section's name.
    pub name: String,
    /// `sh_addr`: the section's virtual address.
    pub address: u64,
    /// `sh_offset`: where the section starts in the file.
    pub offset: u64,
    /// `sh_size`: the section's size in bytes.
    pub size: u64,
}

/// A user binary opened for symbol lookups. The file stays open; tables are read on demand.
pub struct ElfBinary {
    path: PathBuf,
    cache: ReadCache<File>,
    segments: Vec<Segment>,
}

impl std::fmt::Debug for ElfBinary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElfBinary").field("path", &self.path).field("segments", &self.segments).finish()
    }
}

impl ElfBinary {
    /// Open `path` and read its program headers.
    pub fn open(path: impl AsRef<Path>) -> Result<ElfBinary, SymbolError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| SymbolError::Io { path: path.clone(), source })?;
        let mut bin = ElfBinary { path, cache: ReadCache::new(file), segments: Vec::new() };
        let segments = {
            let obj = bin.parse()?;
            obj.segments()
                .map(|s| {
                    let (offset, filesz) = s.file_range();
                    let executable = matches!(s.flags(), object::SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0);
                    Segment { vaddr: s.address(), memsz: s.size(), offset, filesz, executable }
                })
                .collect()
        };
        bin.segments = segments;
        Ok(bin)
    }

    fn parse(&self) -> Result<object::File<'_, &ReadCache<File>>, SymbolError> {
        let obj = object::File::parse(&self.cache).map_err(|e| self.elf_error(e.to_string()))?;
        if obj.format() != object::BinaryFormat::Elf {
            return Err(self.elf_error(format!("{:?} file, not ELF", obj.format())));
        }
        Ok(obj)
    }

    fn elf_error(&self, message: String) -> SymbolError {
        SymbolError::Elf { path: self.path.clone(), message }
    }

    /// The path this binary was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The loadable segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The file offset of virtual address `vaddr` (in code segments only when `exec_only`).
    pub fn file_offset(&self, vaddr: u64, exec_only: bool) -> Result<u64, SymbolError> {
        self.segments
            .iter()
            .filter(|s| s.executable || !exec_only)
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz.min(s.memsz))
            .map(|s| vaddr - s.vaddr + s.offset)
            .ok_or_else(|| SymbolError::NoSegment { path: self.path.clone(), vaddr, exec_only })
    }

    /// The function `name`, from `.symtab` or else `.dynsym`. A global or weak definition wins
    /// over local ones; several definitions at different addresses are an error naming them.
    pub fn function(&self, name: &str) -> Result<SymbolLocation, SymbolError> {
        Ok(self.functions(&[name])?.remove(0))
    }

    /// Several functions at once (one pass over the symbol tables), in the order asked.
    pub fn functions(&self, names: &[&str]) -> Result<Vec<SymbolLocation>, SymbolError> {
        let obj = self.parse()?;
        // Per name: (global?, vaddr, size, ifunc) of every defined function symbol so named.
        let mut found: Vec<Vec<(bool, u64, u64, bool)>> = vec![Vec::new(); names.len()];
        for sym in obj.symbols().chain(obj.dynamic_symbols()) {
            if sym.kind() != SymbolKind::Text || sym.is_undefined() || sym.address() == 0 {
                continue;
            }
            let Ok(sym_name) = sym.name_bytes() else { continue };
            let Some(i) = names.iter().position(|n| n.as_bytes() == sym_name) else { continue };
            let ifunc = matches!(sym.flags(), SymbolFlags::Elf { st_info, .. } if st_info & 0xf == STT_GNU_IFUNC);
            let entry = (sym.is_global() || sym.is_weak(), sym.address(), sym.size(), ifunc);
            if !found[i].iter().any(|e| e.1 == entry.1) {
                found[i].push(entry);
            }
        }
        names
            .iter()
            .zip(found)
            .map(|(name, mut candidates)| {
                if candidates.iter().any(|c| c.0) {
                    candidates.retain(|c| c.0);
                }
                match candidates.as_slice() {
                    [] => Err(SymbolError::NotFound { path: self.path.clone(), symbol: name.to_string() }),
                    [(_, _, _, true)] => Err(SymbolError::Ifunc { path: self.path.clone(), symbol: name.to_string() }),
                    [(_, vaddr, size, false)] => Ok(SymbolLocation {
                        name: name.to_string(),
                        vaddr: *vaddr,
                        size: *size,
                        file_offset: self.file_offset(*vaddr, true)?,
                    }),
                    many => Err(SymbolError::Ambiguous {
                        path: self.path.clone(),
                        symbol: name.to_string(),
                        candidates: many.iter().map(|c| format!("{:#x} ({} bytes)", c.1, c.2)).collect::<Vec<_>>().join(", "),
                    }),
                }
            })
            .collect()
    }

    /// Where section `name` is, if the binary has it.
    pub fn section(&self, name: &str) -> Result<Option<SectionInfo>, SymbolError> {
        let obj = self.parse()?;
        Ok(obj.section_by_name(name).map(|s| SectionInfo {
            name: name.to_string(),
            address: s.address(),
            offset: s.file_range().map(|r| r.0).unwrap_or(0),
            size: s.size(),
        }))
    }

    /// The bytes of section `name` (`None`: no such section, or it has no file data).
    pub fn section_data(&self, name: &str) -> Result<Option<Vec<u8>>, SymbolError> {
        let obj = self.parse()?;
        let Some(section) = obj.section_by_name(name) else { return Ok(None) };
        if section.kind() == SectionKind::UninitializedData {
            return Ok(None);
        }
        section.data().map(|d| Some(d.to_vec())).map_err(|e| self.elf_error(format!("section {name}: {e}")))
    }

    /// Whether the ELF is little-endian 64-bit (the note layouts bpfkit reads).
    pub fn is_64_little_endian(&self) -> Result<bool, SymbolError> {
        let obj = self.parse()?;
        Ok(obj.is_64() && obj.is_little_endian())
    }
}

/// One line of `/proc/<pid>/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Start address of the mapping.
    pub start: u64,
    /// End address of the mapping (exclusive).
    pub end: u64,
    /// `rwxp`-style permissions.
    pub perms: String,
    /// Offset in the mapped file.
    pub offset: u64,
    /// Inode of the mapped file (0 for anonymous memory).
    pub inode: u64,
    /// The mapped file (or `[heap]`, `[stack]`, …); `None` for anonymous memory.
    pub path: Option<PathBuf>,
}

/// The mappings of process `pid` (this process for `None`).
pub fn proc_maps(pid: Option<i32>) -> Result<Vec<Mapping>, SymbolError> {
    let who = pid.map(|p| p.to_string()).unwrap_or_else(|| "self".into());
    let text = std::fs::read_to_string(format!("/proc/{who}/maps")).map_err(|e| SymbolError::Maps { pid: who.clone(), message: e.to_string() })?;
    text.lines().map(|line| parse_maps_line(line).ok_or_else(|| SymbolError::Maps { pid: who.clone(), message: format!("cannot parse line {line:?}") })).collect()
}

fn parse_maps_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let (range, perms, offset, _dev, inode) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next().map(str::trim).filter(|p| !p.is_empty()).map(PathBuf::from);
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms: perms.to_string(),
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        path,
    })
}

/// The run-time address in process `pid` of `file_offset` in `binary` (which must be mapped
/// there at that offset): `start + file_offset - mapping offset`.
pub fn runtime_address(pid: Option<i32>, binary: &Path, file_offset: u64) -> Result<u64, SymbolError> {
    let want = std::fs::canonicalize(binary).map_err(|source| SymbolError::Io { path: binary.to_path_buf(), source })?;
    proc_maps(pid)?
        .into_iter()
        .find(|m| m.path.as_deref() == Some(want.as_path()) && file_offset >= m.offset && file_offset - m.offset < m.end - m.start)
        .map(|m| m.start + (file_offset - m.offset))
        .ok_or_else(|| SymbolError::Maps {
            pid: pid.map(|p| p.to_string()).unwrap_or_else(|| "self".into()),
            message: format!("{} is not mapped at file offset {file_offset:#x}", want.display()),
        })
}

/// Find a binary by name: a name with a `/` is a path; otherwise a library or executable
/// mapped into process `pid` (this process for `None`) whose file name is `name` or starts
/// with `name.so` (`libc` finds `libc.so.6`), then `$PATH`, then the usual library directories.
pub fn resolve_binary(name: &str, pid: Option<i32>) -> Result<PathBuf, SymbolError> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return match path.try_exists() {
            Ok(true) => Ok(path),
            _ => Err(SymbolError::NoBinary { name: name.to_string(), looked: "no such file".into() }),
        };
    }
    if name.is_empty() {
        return Err(SymbolError::NoBinary { name: String::new(), looked: "the name is empty".into() });
    }
    let matches = |file: &str| file == name || file.starts_with(&format!("{name}.so")) || file.starts_with(&format!("{name}-")) && file.contains(".so");
    if let Ok(maps) = proc_maps(pid) {
        for path in maps.into_iter().filter_map(|m| m.path) {
            if path.file_name().and_then(|f| f.to_str()).is_some_and(matches) && path.is_file() {
                return Ok(path);
            }
        }
    }
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for dir in &path_dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    const LIB_DIRS: [&str; 6] = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
    for dir in LIB_DIRS {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut hits: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(matches)).collect();
        hits.sort();
        if let Some(hit) = hits.into_iter().next() {
            return Ok(hit);
        }
    }
    Err(SymbolError::NoBinary {
        name: name.to_string(),
        looked: format!("not mapped in /proc/{}/maps, not in $PATH, not in {}", pid.map(|p| p.to_string()).unwrap_or_else(|| "self".into()), LIB_DIRS.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse() {
        let m = parse_maps_line("7f1c2a000000-7f1c2a028000 r-xp 00028000 fe:01 1835123                    /usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!((m.start, m.end, m.offset, m.inode), (0x7f1c2a000000, 0x7f1c2a028000, 0x28000, 1835123));
        assert_eq!(m.path.as_deref(), Some(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")));
        assert_eq!(parse_maps_line("7ffd-7ffe rw-p 00000000 00:00 0 ").unwrap().path, None);
        assert_eq!(parse_maps_line("garbage"), None);
    }

    #[test]
    fn malformed_elf_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("bpfkit-symbols-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for (i, len) in [0usize, 4, 16, 64, 63, 200, 4096].into_iter().enumerate() {
            let path = dir.join(format!("cut{i}"));
            let mut bytes = this[..len.min(this.len())].to_vec();
            if i % 2 == 1 && bytes.len() > 40 {
                bytes[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff far away
            }
            std::fs::write(&path, bytes).unwrap();
            if let Ok(bin) = ElfBinary::open(&path) {
                let _ = bin.function("main");
                let _ = bin.section_data(".note.stapsdt");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_binary_resolves_its_own_function() {
        let exe = std::env::current_exe().unwrap();
        let bin = ElfBinary::open(&exe).unwrap();
        let err = bin.function("no_such_function_anywhere").unwrap_err();
        assert!(err.to_string().contains("no function symbol `no_such_function_anywhere`"), "{err}");
        assert!(bin.segments().iter().any(|s| s.executable));
        assert!(resolve_binary("libc", None).unwrap().to_string_lossy().contains("libc.so"));
    }
}

crate::error::errno_from_sources!(SymbolError);
