//! Loading a program with the object's BTF as its program BTF and the `.BTF.ext` func and line
//! info of every piece linked into it (as libbpf does): the kernel then knows the functions'
//! names and prototypes (global subprograms are verified on their own) and the verifier log and
//! `bpftool prog dump` quote the C source.
//!
//! Line info records keep their string offsets into `.BTF`, so they are read from the raw
//! `.BTF.ext` here (the parsed [`BtfExt`] resolves them to strings); sections come in the same
//! order in both.

use super::link::Placement;
use crate::core_btf::ext::BtfExt;
use crate::core_btf::LoadedBtf;
use crate::insn::{Imm64, Insn, MapRef, RawInsn};
use crate::maps::Map;
use crate::prog::{LoadOptions, Program};
use crate::sys::{self, Cmd, ProgLoadAttr};
use std::collections::HashMap;
use std::os::fd::OwnedFd;

/// `struct bpf_func_info` as PROG_LOAD takes it (`insn_off` in instructions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct FuncRec {
    insn_off: u32,
    type_id: u32,
}

/// `struct bpf_line_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct LineRec {
    insn_off: u32,
    file_name_off: u32,
    line_off: u32,
    line_col: u32,
}

fn word(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at.checked_add(4)?).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The raw line info records of each `.BTF.ext` section, in file order (`None` if malformed).
pub(crate) fn raw_line_info(data: &[u8]) -> Option<Vec<Vec<LineRec>>> {
    let hdr_len = word(data, 4)? as usize;
    let (off, len) = (word(data, 16)? as usize, word(data, 20)? as usize);
    if len == 0 {
        return Some(Vec::new());
    }
    let start = hdr_len.checked_add(off)?;
    let end = start.checked_add(len)?;
    let block = data.get(start..end)?;
    let rec_size = word(block, 0)? as usize;
    if rec_size < 16 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 4;
    while at < block.len() {
        let n = word(block, at + 4)? as usize;
        at += 8;
        let mut recs = Vec::with_capacity(n.min(block.len() / rec_size));
        for _ in 0..n {
            recs.push(LineRec {
                insn_off: word(block, at)?,
                file_name_off: word(block, at + 4)?,
                line_off: word(block, at + 8)?,
                line_col: word(block, at + 12)?,
            });
            at = at.checked_add(rec_size)?;
        }
        out.push(recs);
    }
    Some(out)
}

/// Func and line info of a linked program: each placed piece's records, moved to where it landed.
pub(crate) fn records(ext: &BtfExt, lines: &[Vec<LineRec>], placed: &[Placement]) -> (Vec<FuncRec>, Vec<LineRec>) {
    let funcs_by_sec: HashMap<&str, usize> =
        ext.func_info.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let lines_by_sec: HashMap<&str, usize> =
        ext.line_info.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut funcs = Vec::new();
    let mut out_lines = Vec::new();
    for p in placed {
        let range = p.first_slot as u64 * 8..(p.first_slot + p.slots) as u64 * 8;
        let moved = |insn_off: u32| (p.start + (insn_off as usize / 8 - p.first_slot)) as u32;
        if let Some(&i) = funcs_by_sec.get(p.section_name.as_str()) {
            for f in ext.func_info[i].records.iter().filter(|f| range.contains(&u64::from(f.insn_off))) {
                funcs.push(FuncRec { insn_off: moved(f.insn_off), type_id: f.type_id.0 });
            }
        }
        if let Some(recs) = lines_by_sec.get(p.section_name.as_str()).and_then(|&i| lines.get(i)) {
            for l in recs.iter().filter(|l| range.contains(&u64::from(l.insn_off))) {
                out_lines.push(LineRec { insn_off: moved(l.insn_off), ..*l });
            }
        }
    }
    funcs.sort_by_key(|f| f.insn_off);
    out_lines.sort_by_key(|l| l.insn_off);
    (funcs, out_lines)
}

/// Why [`load`] failed: the verifier's rejection, or a refusal the log does not explain (the
/// errno and the log's last lines).
pub(crate) enum Refusal {
    Verifier(Box<crate::prog::VerifierRejection>),
    Other(String),
}

/// Largest verifier log asked for when explaining a rejection (the kernel keeps the last part of
/// a longer one and says ENOSPC, which would hide the errno that matters).
const LOG_MAX: usize = 256 << 20;

/// PROG_LOAD with program BTF, func and line info, as libbpf loads it (libbpf does not retry
/// without: the verifier checks global functions by their BTF, so a load without would verify
/// another program). A rejection is loaded again with a log, grown until it fits, to say why.
pub(crate) fn load(
    insns: &[Insn],
    maps: &[&Map],
    opts: &LoadOptions,
    btf: &LoadedBtf,
    funcs: &[FuncRec],
    lines: &[LineRec],
) -> Result<Program, Refusal> {
    if let Ok(p) = load_logged(insns, maps, opts, btf, funcs, lines, 0) {
        return Ok(p);
    }
    let mut size = 1 << 20;
    loop {
        match load_logged(insns, maps, opts, btf, funcs, lines, size) {
            Ok(p) => return Ok(p),
            Err((e, _)) if e.raw_os_error() == Some(libc::ENOSPC) && size < LOG_MAX => size *= 4,
            Err((e, log)) => {
                let verifier = matches!(e.raw_os_error(), Some(libc::EACCES | libc::EINVAL));
                if verifier && !log.trim().is_empty() {
                    let asm = crate::insn::Assembled::from_insns(insns.to_vec());
                    return Err(Refusal::Verifier(Box::new(crate::prog::explain(&log, &asm, e))));
                }
                return Err(Refusal::Other(describe_refusal(&e, &log)));
            }
        }
    }
}

fn describe_refusal(err: &std::io::Error, log: &str) -> String {
    let tail: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
    let err = sys::describe_io_error(err);
    match tail.is_empty() {
        true => format!("the kernel refused it: {err}"),
        false => format!("the kernel refused it: {err}; the verifier log ends: {tail}"),
    }
}

fn load_logged(
    insns: &[Insn],
    maps: &[&Map],
    opts: &LoadOptions,
    btf: &LoadedBtf,
    funcs: &[FuncRec],
    lines: &[LineRec],
    log_size: usize,
) -> Result<Program, (std::io::Error, String)> {
    let unbound = || (std::io::Error::from_raw_os_error(libc::EINVAL), String::new());
    let by_name: HashMap<&str, &Map> = maps.iter().map(|m| (m.name(), *m)).collect();
    let mut slots: Vec<RawInsn> = Vec::with_capacity(insns.len() + 8);
    for insn in insns {
        let mut bound = insn.clone();
        if let Insn::LdImm64 { value: Imm64::Map(m) | Imm64::MapValue { map: m, .. }, .. } = &mut bound {
            if let MapRef::Name(n) = m {
                *m = by_name.get(n.as_str()).ok_or_else(unbound)?.as_ref();
            }
        }
        crate::insn::codec::encode_into(&bound, &mut slots).map_err(|_| unbound())?;
    }
    let mut log = vec![0u8; log_size];
    let license = std::ffi::CString::new(opts.license.replace('\0', "")).unwrap_or_default();
    let mut attr = ProgLoadAttr {
        prog_type: opts.prog_type.raw(),
        insn_cnt: slots.len() as u32,
        insns: sys::ptr(slots.as_ptr()),
        license: sys::ptr(license.as_ptr()),
        prog_name: sys::name16(&opts.name),
        expected_attach_type: opts.raw_expected_attach_type(),
        attach_btf_id: opts.attach_btf_id,
        prog_flags: opts.flags.0,
        kern_version: opts.kern_version,
        prog_btf_fd: btf.attr_fd(),
        func_info: if funcs.is_empty() { 0 } else { sys::ptr(funcs.as_ptr()) },
        func_info_cnt: funcs.len() as u32,
        func_info_rec_size: if funcs.is_empty() { 0 } else { std::mem::size_of::<FuncRec>() as u32 },
        line_info: if lines.is_empty() { 0 } else { sys::ptr(lines.as_ptr()) },
        line_info_cnt: lines.len() as u32,
        line_info_rec_size: if lines.is_empty() { 0 } else { std::mem::size_of::<LineRec>() as u32 },
        log_level: u32::from(log_size > 0),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() { 0 } else { sys::ptr(log.as_mut_ptr()) },
        ..Default::default()
    };
    let fd: OwnedFd = sys::bpf_fd(Cmd::ProgLoad, &mut attr).map_err(|e| (e, sys::c_name(&log)))?;
    Program::from_fd(fd).map_err(|_| unbound())
}
