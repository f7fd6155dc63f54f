//! USDT probes (user statically-defined tracing, `DTRACE_PROBE`/`STAP_PROBE` from
//! `<sys/sdt.h>`): reading a binary's `.note.stapsdt` notes, attaching a uprobe at each
//! location of a probe, keeping its semaphore raised, and reading its arguments in the program.
//!
//! # Notes
//! Each `NT_STAPSDT` (3) note of owner `stapsdt` holds the probe's address, the link-time
//! address of `.stapsdt.base` (to undo prelinking: the location moves by the difference to the
//! section's actual address), the semaphore's address (0: none), then provider, name and the
//! argument spec string, e.g. `-4@%edi 8@-16(%rbp) 8@$5`: size (negative = signed) `@` a
//! register, a memory operand `off(%reg)`, or a constant. Only x86-64 operands are understood;
//! scaled-index (`(%rax,%rdx,8)`) and symbolic (`var(%rip)`) operands are reported as
//! unsupported.
//!
//! # Semaphores
//! A probe with a semaphore only fires while its 16-bit counter is non-zero. bpfkit passes the
//! semaphore's file offset to the uprobe PMU (`ref_ctr_offset`, Linux 4.20), so the kernel
//! increments it in every process mapping the binary, now and later, and decrements it when
//! the probe goes. On older kernels, with a pid, the counter is raised through `/proc/<pid>/mem`
//! and lowered again when the attachment's [`Link`] is dropped.
//!
//! # Arguments (the spec table)
//! The program learns where the arguments are from a hash map (key: spec id, `u32`; value: a
//! 208-byte spec with libbpf's `struct __bpf_usdt_spec` layout, see [`encode_spec`]) created by
//! [`spec_map`]. Every location is attached with its spec id as the bpf_cookie, so in the
//! program `bpf_get_attach_cookie(ctx)` finds its spec. [`arg_subprogram`] is a bpf-to-bpf
//! function doing what libbpf's `bpf_usdt_arg()` does (`r1` = ctx, `r2` = argument index, `r3`
//! = pointer to a `u64` result; `r0` = 0, or -ENOENT without spec, -E2BIG past the last
//! argument, -EINVAL for an unknown kind, or a failed read's error); [`read_arg`] calls it and
//! loads argument N into a register:
//!
//! ```no_run
//! # use bpfkit::{bpf_asm, insn::Reg};
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use bpfkit::attach::usdt::{self, UsdtTarget};
//! use bpfkit::prog::{LoadOptions, Program, ProgType};
//! let specs = usdt::spec_map(64)?;
//! let mut asm = bpf_asm! { r6 = r1 };
//! asm.extend(usdt::read_arg(1, Reg::R6, Reg::R7, -8)); // r7 = argument 1
//! asm.extend(bpf_asm! {
//!     r0 = 0
//!     exit
//! });
//! asm.extend(usdt::arg_subprogram(usdt::SPEC_MAP_NAME)?);
//! let prog = Program::load(&asm.assemble()?, &[&specs], &LoadOptions::new("usdt", ProgType::Kprobe))?;
//! let link = prog.attach_usdt(&UsdtTarget::new("/usr/bin/python3", "python", "function__entry"), &specs)?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::probe::ProbeError;
use super::Link;
use super::symbols::{self, ElfBinary};
use super::uprobe::{pt_regs_offset, UprobeTarget};
use crate::insn::{self, ParseError, Reg, Size};
use crate::maps::{Map, MapError, MapSpec, MapType, UpdateFlags};
use crate::prog::Program;
use crate::sys::{self, ProbeKind};

/// `NT_STAPSDT`.
const NT_STAPSDT: u32 = 3;
/// Arguments a spec holds (`BPF_USDT_MAX_ARG_CNT`).
pub const MAX_ARGS: usize = 12;
/// Bytes of one spec (libbpf's `struct __bpf_usdt_spec`).
pub const SPEC_SIZE: usize = 208;
/// The spec map's name, as programs reference it (`map[usdt_specs]`).
pub const SPEC_MAP_NAME: &str = "usdt_specs";
/// The label of [`arg_subprogram`].
pub const ARG_SUBPROGRAM: &str = "bpfkit_usdt_arg";

/// Argument kinds in a spec (`enum __bpf_usdt_arg_type`).
const ARG_CONST: u32 = 0;
const ARG_REG: u32 = 1;
const ARG_REG_DEREF: u32 = 2;

/// Where an argument's value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgLocation {
    /// An immediate (`$5`).
    Const(i64),
    /// A register, named as its `struct pt_regs` member (`di`, `ax`, `r8`).
    Reg(String),
    /// Memory at a register plus an offset (`-16(%rbp)`).
    Deref {
        /// The base register, named as its `struct pt_regs` member.
        reg: String,
        /// Bytes added to the register's value.
        offset: i64,
    },
}

/// One argument of a USDT probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtArg {
    /// Size in bytes (1, 2, 4 or 8).
    pub size: u8,
    /// Whether the value is signed (the size is negative in the note's argument spec).
    pub signed: bool,
    /// Where the value is.
    pub location: ArgLocation,
}

/// One USDT probe location, from a `.note.stapsdt` note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtProbe {
    /// The probe's provider (the first name in `DTRACE_PROBE(provider, name)`).
    pub provider: String,
    /// The probe's name.
    pub name: String,
    /// The probe's address as the note gives it.
    pub address: u64,
    /// The note's `.stapsdt.base` address (0: none).
    pub base: u64,
    /// The semaphore's address (0: none).
    pub semaphore: u64,
    /// The argument spec string (`-4@%edi 8@-16(%rbp)`).
    pub args: String,
    /// The file offset of the probe instruction (after the `.stapsdt.base` adjustment).
    pub file_offset: u64,
    /// The file offset of the semaphore (0: none).
    pub semaphore_offset: u64,
}

impl UsdtProbe {
    /// The parsed arguments.
    pub fn parse_args(&self) -> Result<Vec<UsdtArg>, String> {
        parse_args(&self.args)
    }
}

fn usdt_err(binary: &Path, message: impl Into<String>) -> ProbeError {
    ProbeError::Usdt { binary: binary.to_path_buf(), message: message.into() }
}

/// Every USDT probe location in `binary` (empty when it has no `.note.stapsdt`).
pub fn probes(binary: impl AsRef<Path>) -> Result<Vec<UsdtProbe>, ProbeError> {
    let path = binary.as_ref();
    let elf = ElfBinary::open(path)?;
    let Some(data) = elf.section_data(".note.stapsdt")? else { return Ok(Vec::new()) };
    if !elf.is_64_little_endian()? {
        return Err(usdt_err(path, "only 64-bit little-endian binaries' USDT notes are read"));
    }
    let base_section = elf.section(".stapsdt.base")?.map(|s| s.address);
    let mut out = Vec::new();
    for note in parse_notes(&data).map_err(|m| usdt_err(path, format!(".note.stapsdt: {m}")))? {
        let address = match (note.base, base_section) {
            (b, Some(actual)) if b != 0 => note.address.wrapping_add(actual).wrapping_sub(b),
            _ => note.address,
        };
        let what = |m: String| usdt_err(path, format!("probe {}:{}: {m}", note.provider, note.name));
        let file_offset = elf.file_offset(address, true).map_err(|e| what(e.to_string()))?;
        let semaphore_offset = if note.semaphore == 0 { 0 } else { elf.file_offset(note.semaphore, false).map_err(|e| what(e.to_string()))? };
        out.push(UsdtProbe { address, file_offset, semaphore_offset, ..note });
    }
    Ok(out)
}

/// Parse the notes of a `.note.stapsdt` section (64-bit little-endian layout).
fn parse_notes(data: &[u8]) -> Result<Vec<UsdtProbe>, String> {
    let word = |at: usize| data.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()));
    let align4 = |n: usize| n.checked_add(3).map(|v| v & !3);
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= data.len() {
        let (Some(namesz), Some(descsz), Some(kind)) = (word(at), word(at + 4), word(at + 8)) else { break };
        let name_start = at + 12;
        let desc_start = align4(name_start + namesz as usize).ok_or("note size overflows")?;
        let next = desc_start.checked_add(descsz as usize).and_then(align4).ok_or("note size overflows")?;
        let name = data.get(name_start..name_start + namesz as usize).ok_or_else(|| format!("note at byte {at}: name runs past the section"))?;
        let desc = data.get(desc_start..desc_start + descsz as usize).ok_or_else(|| format!("note at byte {at}: description runs past the section"))?;
        if kind == NT_STAPSDT && name.strip_suffix(b"\0").unwrap_or(name) == b"stapsdt" {
            out.push(parse_desc(desc).ok_or_else(|| format!("note at byte {at}: malformed stapsdt description"))?);
        }
        at = next;
    }
    Ok(out)
}

fn parse_desc(desc: &[u8]) -> Option<UsdtProbe> {
    let addr = |i: usize| desc.get(i * 8..i * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    let (address, base, semaphore) = (addr(0)?, addr(1)?, addr(2)?);
    let mut strings = desc.get(24..)?.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned());
    let (provider, name, args) = (strings.next()?, strings.next()?, strings.next().unwrap_or_default());
    Some(UsdtProbe { provider, name, address, base, semaphore, args, file_offset: 0, semaphore_offset: 0 })
}

/// Parse an x86-64 argument spec string (`-4@%edi 8@-16(%rbp) 4@$5`).
pub fn parse_args(text: &str) -> Result<Vec<UsdtArg>, String> {
    let args: Vec<UsdtArg> = text.split_whitespace().map(parse_arg).collect::<Result<_, _>>()?;
    if args.len() > MAX_ARGS {
        return Err(format!("{} arguments; at most {MAX_ARGS} are supported", args.len()));
    }
    Ok(args)
}

fn parse_arg(text: &str) -> Result<UsdtArg, String> {
    let bad = |why: &str| format!("argument `{text}`: {why}");
    let (size, loc) = text.split_once('@').ok_or_else(|| bad("expected SIZE@OPERAND"))?;
    let size: i32 = size.parse().map_err(|_| bad("the size is not a number"))?;
    if ![1, 2, 4, 8].contains(&size.unsigned_abs()) {
        return Err(bad("the size must be 1, 2, 4 or 8 bytes"));
    }
    let location = if let Some(imm) = loc.strip_prefix('$') {
        ArgLocation::Const(parse_int(imm).ok_or_else(|| bad("the constant is not a number"))?)
    } else if let Some(reg) = loc.strip_prefix('%') {
        ArgLocation::Reg(pt_regs_member(reg).ok_or_else(|| bad("unknown register"))?.to_string())
    } else if let Some((off, rest)) = loc.split_once('(') {
        let inner = rest.strip_suffix(')').ok_or_else(|| bad("unbalanced parentheses"))?;
        if inner.contains(',') {
            return Err(bad("scaled-index memory operands are not supported"));
        }
        let reg = inner.strip_prefix('%').and_then(pt_regs_member).ok_or_else(|| bad("unknown base register"))?;
        let offset = if off.is_empty() { 0 } else { parse_int(off).ok_or_else(|| bad("symbolic offsets are not supported"))? };
        ArgLocation::Deref { reg: reg.to_string(), offset }
    } else {
        return Err(bad("unknown operand form"));
    };
    Ok(UsdtArg { size: size.unsigned_abs() as u8, signed: size < 0, location })
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = s.strip_prefix('-').map(|d| (true, d)).unwrap_or((false, s));
    let v = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()? as i64,
        None => digits.parse::<u64>().ok()? as i64,
    };
    Some(if neg { v.wrapping_neg() } else { v })
}

/// The `struct pt_regs` member holding x86-64 register `reg` (any width: `rdi`, `edi`, `di`, `dil`).
fn pt_regs_member(reg: &str) -> Option<&'static str> {
    const LEGACY: [(&str, [&str; 4]); 8] = [
        ("ax", ["rax", "eax", "ax", "al"]),
        ("bx", ["rbx", "ebx", "bx", "bl"]),
        ("cx", ["rcx", "ecx", "cx", "cl"]),
        ("dx", ["rdx", "edx", "dx", "dl"]),
        ("si", ["rsi", "esi", "si", "sil"]),
        ("di", ["rdi", "edi", "di", "dil"]),
        ("bp", ["rbp", "ebp", "bp", "bpl"]),
        ("sp", ["rsp", "esp", "sp", "spl"]),
    ];
    const NUMBERED: [&str; 8] = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
    if reg == "rip" {
        return Some("ip");
    }
    if let Some((m, _)) = LEGACY.iter().find(|(_, names)| names.contains(&reg)) {
        return Some(m);
    }
    NUMBERED.iter().copied().find(|r| reg.strip_prefix(r).is_some_and(|suffix| ["", "d", "w", "b"].contains(&suffix)))
}

/// The 208-byte spec of `args` (libbpf's `struct __bpf_usdt_spec`): per argument 16 bytes
/// (`u64 val_off` — the constant, or the memory offset; `u32 arg_type` — 0 const, 1 register,
/// 2 memory at register + val_off; `s16 reg_off` — the register's offset in `struct pt_regs`;
/// `u8 arg_signed`; `s8 arg_bitshift` = 64 − 8 × size), then `u64 usdt_cookie` at 192 and
/// `s16 arg_cnt` at 200.
pub fn encode_spec(args: &[UsdtArg], cookie: u64) -> Result<[u8; SPEC_SIZE], ProbeError> {
    if args.len() > MAX_ARGS {
        return Err(ProbeError::invalid("USDT spec", format!("{} arguments; at most {MAX_ARGS}", args.len())));
    }
    let mut out = [0u8; SPEC_SIZE];
    for (i, arg) in args.iter().enumerate() {
        let (val_off, kind, reg_off) = match &arg.location {
            ArgLocation::Const(v) => (*v as u64, ARG_CONST, 0),
            ArgLocation::Reg(r) => (0, ARG_REG, pt_regs_offset(r)?),
            ArgLocation::Deref { reg, offset } => (*offset as u64, ARG_REG_DEREF, pt_regs_offset(reg)?),
        };
        let rec = &mut out[i * 16..i * 16 + 16];
        rec[0..8].copy_from_slice(&val_off.to_le_bytes());
        rec[8..12].copy_from_slice(&kind.to_le_bytes());
        rec[12..14].copy_from_slice(&reg_off.to_le_bytes());
        rec[14] = arg.signed as u8;
        rec[15] = 64 - 8 * arg.size;
    }
    out[192..200].copy_from_slice(&cookie.to_le_bytes());
    out[200..202].copy_from_slice(&(args.len() as i16).to_le_bytes());
    Ok(out)
}

/// A spec map ([`SPEC_MAP_NAME`], hash `u32` → [`SPEC_SIZE`] bytes) for up to `max_entries`
/// attached locations.
pub fn spec_map(max_entries: u32) -> Result<Map, MapError> {
    Map::create(&MapSpec::new(SPEC_MAP_NAME, MapType::Hash, 4, SPEC_SIZE as u32, max_entries))
}

/// The bpf-to-bpf function [`ARG_SUBPROGRAM`] reading a USDT argument through the spec map
/// named `spec_map` (see the module docs for its contract). Append it after the program's
/// last `exit`, and only when the program calls it (the verifier refuses unreachable code).
pub fn arg_subprogram(spec_map: &str) -> Result<insn::Program, ParseError> {
    let text = ARG_SUBPROGRAM_TEXT.replace("SPECS", spec_map).replace("L_", "bpfkit_usdt_arg_");
    insn::parse_program(&text)
}

const ARG_SUBPROGRAM_TEXT: &str = "
bpfkit_usdt_arg:
    r6 = r1
    r7 = r2
    r8 = r3
    r1 = 0
    *(u64 *)(r8 + 0) = r1
    r1 = r6
    call bpf_get_attach_cookie
    *(u32 *)(r10 - 4) = w0
    r2 = r10
    r2 += -4
    r1 = map[SPECS] ll
    call bpf_map_lookup_elem
    r9 = r0
    r0 = -2
    if r9 == 0 goto L_out
    r0 = -7
    if r7 > 11 goto L_out
    r1 = *(u16 *)(r9 + 200)
    if r7 >= r1 goto L_out
    r7 <<= 4
    r9 += r7
    r1 = *(u32 *)(r9 + 8)
    r0 = *(u64 *)(r9 + 0)
    if r1 == 0 goto L_shift
    r0 = -22
    if r1 > 2 goto L_out
    r2 = *(u16 *)(r9 + 12)
    r2 <<= 48
    r2 s>>= 48
    r3 = r6
    r3 += r2
    r1 = r10
    r1 += -16
    r2 = 8
    call bpf_probe_read_kernel
    if r0 != 0 goto L_out
    r0 = *(u64 *)(r10 - 16)
    r1 = *(u32 *)(r9 + 8)
    if r1 == 1 goto L_shift
    r3 = *(u64 *)(r9 + 0)
    r3 += r0
    r1 = r10
    r1 += -16
    r2 = 8
    call bpf_probe_read_user
    if r0 != 0 goto L_out
    r0 = *(u64 *)(r10 - 16)
L_shift:
    r1 = *(u8 *)(r9 + 15)
    r0 <<= r1
    r2 = *(u8 *)(r9 + 14)
    if r2 == 0 goto L_unsigned
    r0 s>>= r1
    goto L_store
L_unsigned:
    r0 >>= r1
L_store:
    *(u64 *)(r8 + 0) = r0
    r0 = 0
L_out:
    exit
";

/// Instructions loading USDT argument `n` into `dst`: `r1 = ctx; r2 = n; r3 = r10 + stack_off;
/// call local bpfkit_usdt_arg; dst = *(u64 *)(r10 + stack_off)` (0 when the read failed).
/// Clobbers r0–r5 and the 8 stack bytes at `stack_off`; needs [`arg_subprogram`] in the program.
pub fn read_arg(n: u32, ctx: Reg, dst: Reg, stack_off: i16) -> insn::Program {
    let mut p = insn::Program::new();
    p.push(insn::mov64(Reg::R1, ctx))
        .push(insn::mov64(Reg::R2, n as i32))
        .push(insn::mov64(Reg::R3, Reg::R10))
        .push(insn::add64(Reg::R3, stack_off as i32))
        .push(insn::call_local(ARG_SUBPROGRAM))
        .push(insn::ldx(Size::DW, dst, Reg::R10, stack_off));
    p
}

/// Which USDT probe to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsdtTarget {
    binary: String,
    provider: String,
    name: String,
    pid: Option<i32>,
    cookie: u64,
}

impl UsdtTarget {
    /// Probe `provider:name` in `binary` (a path or a name, as for uprobes).
    pub fn new(binary: impl Into<String>, provider: impl Into<String>, name: impl Into<String>) -> UsdtTarget {
        UsdtTarget { binary: binary.into(), provider: provider.into(), name: name.into(), pid: None, cookie: 0 }
    }
    /// Only in process `pid`.
    pub fn pid(mut self, pid: i32) -> UsdtTarget {
        self.pid = Some(pid);
        self
    }
    /// A value stored in each spec's `usdt_cookie` for the program to read.
    pub fn cookie(mut self, cookie: u64) -> UsdtTarget {
        self.cookie = cookie;
        self
    }
    /// `usdt /path:provider:name`.
    pub fn describe(&self) -> String {
        format!("usdt {}:{}:{}", self.binary, self.provider, self.name)
    }
}

/// What a USDT attachment set up besides its uprobes: the spec entries it added and any
/// semaphore it raised by hand. The attachment's [`Link`] keeps it as a guard, so it goes after
/// the uprobes: the specs are deleted and the semaphores lowered.
struct UsdtSetup {
    specs: Map,
    spec_ids: Vec<u32>,
    semaphores: Vec<ProcMemSemaphore>,
}

impl Drop for UsdtSetup {
    fn drop(&mut self) {
        for id in &self.spec_ids {
            let _ = self.specs.delete(&id.to_le_bytes());
        }
        self.semaphores.clear();
    }
}

/// A semaphore raised through `/proc/<pid>/mem`, lowered on drop.
struct ProcMemSemaphore {
    mem: File,
    addr: u64,
}

impl ProcMemSemaphore {
    fn raise(pid: i32, binary: &Path, file_offset: u64) -> Result<ProcMemSemaphore, ProbeError> {
        let addr = symbols::runtime_address(Some(pid), binary, file_offset)?;
        let path = format!("/proc/{pid}/mem");
        let mem = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(|e| usdt_err(binary, format!("semaphore: {path}: {e}")))?;
        let sem = ProcMemSemaphore { mem, addr };
        sem.add(1).map_err(|e| usdt_err(binary, format!("semaphore at {addr:#x} in {path}: {e}")))?;
        Ok(sem)
    }

    fn add(&self, delta: i16) -> std::io::Result<()> {
        let mut v = [0u8; 2];
        self.mem.read_exact_at(&mut v, self.addr)?;
        let n = u16::from_le_bytes(v).wrapping_add_signed(delta);
        self.mem.write_all_at(&n.to_le_bytes(), self.addr)
    }
}

impl Drop for ProcMemSemaphore {
    fn drop(&mut self) {
        let _ = self.add(-1);
    }
}

impl Program {
    /// Attach this kprobe-type program to every location of USDT probe `target`, writing each
    /// location's argument spec into `specs` (from [`spec_map`]) under a fresh spec id that is
    /// also the location's bpf_cookie. One [`Link`]: its [`members`](Link::members) are the
    /// uprobes of the locations, and dropping it also deletes the specs and lowers semaphores.
    pub fn attach_usdt(&self, target: &UsdtTarget, specs: &Map) -> Result<Link, ProbeError> {
        let what = target.describe();
        let binary: PathBuf = symbols::resolve_binary(&target.binary, target.pid)?;
        let found: Vec<UsdtProbe> = probes(&binary)?.into_iter().filter(|p| p.provider == target.provider && p.name == target.name).collect();
        if found.is_empty() {
            return Err(usdt_err(&binary, format!("no USDT probe {}:{} in .note.stapsdt", target.provider, target.name)));
        }
        let kernel_semaphores = sys::probe_pmu(ProbeKind::Uprobe).ok().flatten().is_some_and(|p| p.ref_ctr_offset.is_some());
        let dup = sys::dup(specs.as_fd(), &format!("spec map of {what}")).map_err(|e| ProbeError::Link(e.into()))?;
        let mut setup = UsdtSetup { specs: Map::from_fd(dup)?, spec_ids: Vec::new(), semaphores: Vec::new() };
        let mut members = Vec::with_capacity(found.len());
        let mut used: HashSet<u32> = HashSet::new();
        for key in specs.keys() {
            if let Some(k) = key?.get(..4) {
                used.insert(u32::from_le_bytes(k.try_into().unwrap_or_default()));
            }
        }
        let mut next_id = 0u32;
        for probe in &found {
            let at = format!("{what} at file offset {:#x}", probe.file_offset);
            let args = probe.parse_args().map_err(|m| usdt_err(&binary, format!("{at}: {m}")))?;
            let spec = encode_spec(&args, target.cookie)?;
            // The lowest free spec id (another attachment may share the map).
            let id = loop {
                while used.contains(&next_id) {
                    next_id += 1;
                }
                used.insert(next_id);
                match specs.update(&next_id.to_le_bytes(), &spec, UpdateFlags::NoExist) {
                    Ok(()) => break next_id,
                    Err(MapError::Sys(e)) if e.errno() == Some(libc::EEXIST) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            setup.spec_ids.push(id);
            let mut uprobe = UprobeTarget::file_offset(binary.to_string_lossy(), probe.file_offset).cookie(id as u64);
            if let Some(pid) = target.pid {
                uprobe = uprobe.pid(pid);
            }
            if probe.semaphore_offset != 0 {
                if kernel_semaphores {
                    uprobe = uprobe.ref_ctr_offset(probe.semaphore_offset);
                } else if let Some(pid) = target.pid {
                    setup.semaphores.push(ProcMemSemaphore::raise(pid, &binary, probe.semaphore_offset)?);
                } else {
                    return Err(usdt_err(&binary, format!("{at}: the probe has a semaphore, this kernel cannot maintain it (no uprobe ref_ctr_offset), and no pid was given to raise it by hand")));
                }
            }
            members.push(self.attach_uprobe(&uprobe)?);
        }
        Ok(Link::group(members, what).guarded(setup))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_argument_specs_parse() {
        let args = parse_args("-4@%edi 8@-16(%rbp) 2@$-3 1@%r9b 8@(%rax) 8@0x10(%rsp)").unwrap();
        assert_eq!(args[0], UsdtArg { size: 4, signed: true, location: ArgLocation::Reg("di".into()) });
        assert_eq!(args[1], UsdtArg { size: 8, signed: false, location: ArgLocation::Deref { reg: "bp".into(), offset: -16 } });
        assert_eq!(args[2].location, ArgLocation::Const(-3));
        assert_eq!(args[3].location, ArgLocation::Reg("r9".into()));
        assert_eq!(args[4].location, ArgLocation::Deref { reg: "ax".into(), offset: 0 });
        assert_eq!(args[5].location, ArgLocation::Deref { reg: "sp".into(), offset: 16 });
        for bad in ["8@-4(%rax,%rdx,8)", "8@var(%rip)", "3@%eax", "8@%xmm0", "junk", "8@"] {
            assert!(parse_args(bad).is_err(), "{bad}");
        }
        assert!(parse_args("").unwrap().is_empty());
    }

    #[test]
    fn notes_parse_and_malformed_notes_do_not_panic() {
        let mut desc = Vec::new();
        for v in [0x1130u64, 0x2000, 0x4010] {
            desc.extend_from_slice(&v.to_le_bytes());
        }
        desc.extend_from_slice(b"prov\0probe\0-4@%edi\0");
        let mut note = Vec::new();
        note.extend_from_slice(&8u32.to_le_bytes());
        note.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        note.extend_from_slice(&NT_STAPSDT.to_le_bytes());
        note.extend_from_slice(b"stapsdt\0");
        note.extend_from_slice(&desc);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        let parsed = parse_notes(&note).unwrap();
        assert_eq!((parsed[0].address, parsed[0].base, parsed[0].semaphore), (0x1130, 0x2000, 0x4010));
        assert_eq!((parsed[0].provider.as_str(), parsed[0].name.as_str(), parsed[0].args.as_str()), ("prov", "probe", "-4@%edi"));
        for cut in 0..note.len() {
            let _ = parse_notes(&note[..cut]);
        }
        let mut huge = note.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_notes(&huge).is_err());
    }

    #[test]
    fn specs_have_libbpf_layout() {
        let args = vec![UsdtArg { size: 4, signed: true, location: ArgLocation::Const(-7) }];
        let spec = encode_spec(&args, 0xabcd).unwrap();
        assert_eq!(i64::from_le_bytes(spec[0..8].try_into().unwrap()), -7);
        assert_eq!(u32::from_le_bytes(spec[8..12].try_into().unwrap()), ARG_CONST);
        assert_eq!((spec[14], spec[15]), (1, 32));
        assert_eq!(u64::from_le_bytes(spec[192..200].try_into().unwrap()), 0xabcd);
        assert_eq!(i16::from_le_bytes(spec[200..202].try_into().unwrap()), 1);
        let sub = arg_subprogram("specs").unwrap().assemble().unwrap();
        assert!(sub.label_slot(ARG_SUBPROGRAM) == Some(0));
        assert!(read_arg(0, Reg::R6, Reg::R7, -8).insns().count() == 6);
    }
}
