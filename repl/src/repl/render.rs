//! How the REPL shows things: an instruction as slot, bytes and text; a program as typed
//! with the verifier's failing line marked; and how keys and values typed as hex or
//! numbers become bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bpfkit::insn::{encode, format_insn, Imm64, Insn, MapRef, SourceLoc, Syntax};


/// `insn` at `slot`: `   0: b7 00 00 00 00 00 00 00  r0 = 0x0`, one line per slot.
///
/// A map named in `ld_imm64` has no fd until the program is loaded: its bytes show fd 0.
pub fn insn_lines(slot: usize, insn: &Insn) -> String {
    let shown = match insn {
        Insn::LdImm64 { dst, value: Imm64::Map(MapRef::Name(_)) } => Insn::LdImm64 {
            dst: *dst,
            value: Imm64::Map(MapRef::Fd(0)),
        },
        Insn::LdImm64 { dst, value: Imm64::MapValue { map: MapRef::Name(_), offset } } => Insn::LdImm64 {
            dst: *dst,
            value: Imm64::MapValue { map: MapRef::Fd(0), offset: *offset },
        },
        other => other.clone(),
    };
    let text = format_insn(insn, Syntax::Llvm);
    let mut out = String::new();
    match encode(&shown) {
        Ok(slots) => {
            for (k, raw) in slots.iter().enumerate() {
                let bytes = crate::hex::spaced(&raw.to_bytes(), " ");
                if k == 0 {
                    let _ = writeln!(out, "{:>4}: {bytes}  {text}", slot + k);
                } else {
                    let _ = writeln!(out, "{:>4}: {bytes}", slot + k);
                }
            }
        }
        // Only unresolved forms (CO-RE, kfuncs by name) get here; they encode at load.
        Err(e) => {
            let _ = writeln!(out, "{slot:>4}: ({e})  {text}");
        }
    }
    out
}

/// The line a source location points at, with a caret under its column.
pub fn snippet(lines: &BTreeMap<u32, String>, loc: &SourceLoc) -> String {
    match lines.get(&loc.line) {
        Some(text) => {
            let pad = " ".repeat(loc.column.saturating_sub(1) as usize);
            format!("\n{:>5} | {text}\n      | {pad}^", loc.line)
        }
        None => String::new(),
    }
}

/// The program as typed (`LINE | text`), the line `mark` marked with `>>` and followed by
/// `note`; with `color`, the marked line is shown in reverse video.
pub fn listing(lines: &BTreeMap<u32, String>, mark: Option<u32>, note: &str, color: bool) -> String {
    let mut out = String::new();
    for (no, text) in lines {
        if Some(*no) == mark {
            if color {
                let _ = writeln!(out, ">>{no:>4} | \x1b[7m{text}\x1b[0m");
            } else {
                let _ = writeln!(out, ">>{no:>4} | {text}");
            }
            let _ = writeln!(out, "       | {note}");
        } else {
            let _ = writeln!(out, "  {no:>4} | {text}");
        }
    }
    out
}

/// A key or value as typed: hex digits (`01000000`, `01 00 00 00` when quoted as one
/// argument), or a little-endian number `u8:N`, `u16:N`, `u32:N`, `u64:N` (decimal or 0x hex).
pub fn parse_bytes(arg: &str, what: &str) -> Result<Vec<u8>, String> {
    if let Some((width, num)) = arg.split_once(':') {
        let v = if let Some(h) = num.strip_prefix("0x") {
            u64::from_str_radix(h, 16)
        } else {
            num.parse::<u64>()
        }
        .map_err(|_| format!("{what} `{arg}`: `{num}` is not a number"))?;
        let bytes = v.to_le_bytes();
        let n = match width {
            "u8" => 1,
            "u16" => 2,
            "u32" => 4,
            "u64" => 8,
            _ => return Err(format!("{what} `{arg}`: the width is u8, u16, u32 or u64, not `{width}`")),
        };
        if n < 8 && v >> (8 * n) != 0 {
            return Err(format!("{what} `{arg}`: {v} does not fit in {width}"));
        }
        return Ok(bytes[..n].to_vec());
    }
    crate::hex::parse(arg).map_err(|e| format!("{what} `{arg}`: {}", e.message))
}

/// Bytes as hex, with the number they hold when they are 4 or 8 bytes long.
pub fn value_text(bytes: &[u8]) -> String {
    let hex = crate::hex::spaced(bytes, " ");
    match number(bytes) {
        Some(n) if bytes.len() == 4 => format!("{hex}  (u32 {n})"),
        Some(n) => format!("{hex}  (u64 {n})"),
        None => hex,
    }
}

/// A 4- or 8-byte little-endian number.
pub fn number(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u64::from(u32::from_le_bytes(bytes.try_into().ok()?))),
        8 => Some(u64::from_le_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_hex() {
        assert_eq!(parse_bytes("u32:1", "key"), Ok(vec![1, 0, 0, 0]));
        assert_eq!(parse_bytes("u16:0x102", "key"), Ok(vec![2, 1]));
        assert_eq!(parse_bytes("0100", "key"), Ok(vec![1, 0]));
        assert!(parse_bytes("u8:256", "key").unwrap_err().contains("does not fit"));
        assert!(parse_bytes("i7:1", "key").unwrap_err().contains("width"));
        assert_eq!(value_text(&[7, 0, 0, 0]), "07 00 00 00  (u32 7)");
    }
}
