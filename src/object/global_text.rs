//! Setting a global variable before load from text, parsed by the variable's BTF type: what
//! `bpfkit load --set NAME=VALUE` and the REPL's `:open … NAME=VALUE` do. libbpf users write the
//! bytes through a skeleton's typed struct; from a command line there is only text, so the
//! object's own BTF says what the text must be.
//!
//! | BTF type (after typedefs and `const`/`volatile`) | text |
//! |---|---|
//! | `_Bool` | `true`, `false`, `1`, `0` |
//! | integers, signed or not, 1–8 bytes | decimal, `0x` hex, `0o` octal or `0b` binary; `-` for signed ones; must fit |
//! | `enum` | an enumerator's name, or a number that fits |
//! | `char[N]` | the string itself (optionally in double quotes), at most N-1 bytes: a NUL must fit |
//!
//! Anything else (structs, pointers, floats, arrays of other types) is refused, naming the type.

use super::{Object, ObjectError};
use crate::core_btf::{Btf, IntEncoding, TypeDetail, TypeId};

impl Object {
    /// Set global variable `name` (in `.rodata`, `.data`, `.bss` or a custom `.data.*`/`.rodata.*`
    /// section) from `text`, parsed by the variable's BTF type (see the module docs). An unknown
    /// name, an unsupported type or a value that does not fit is an error naming the variable
    /// and its C declaration:
    ///
    /// ```no_run
    /// # use bpfkit::object::Object;
    /// let mut obj = Object::open("prog.o")?;
    /// obj.set_global_text("target_tgid", "4242")?; // const volatile __u32 target_tgid
    /// obj.set_global_text("mode", "MODE_SKIP")?;   // const volatile enum mode mode
    /// obj.set_global_text("tag", "web")?;          // const volatile char tag[8]
    /// # Ok::<(), bpfkit::object::ObjectError>(())
    /// ```
    pub fn set_global_text(&mut self, name: &str, text: &str) -> Result<(), ObjectError> {
        let btf = self.btf.as_ref().ok_or_else(|| global_err(name, "the object has no BTF".into()))?;
        let var = find_var(btf, &self.maps, name)?;
        let bytes = parse_for_type(btf, var, text).map_err(|reason| {
            let decl = btf.c_decl(var).map(|d| d.trim_end_matches(';').to_string()).unwrap_or_else(|_| name.to_string());
            global_err(name, format!("declared `{decl}`; {reason}"))
        })?;
        self.set_global(name, &bytes)
    }

    /// The names of every global variable a data section holds, in section order: what
    /// [`set_global_text`](Self::set_global_text) accepts.
    pub fn global_names(&self) -> Vec<String> {
        let Some(btf) = self.btf.as_ref() else { return Vec::new() };
        var_ids(btf, &self.maps).filter_map(|id| btf.name_of(id).ok().map(str::to_string)).collect()
    }
}

fn global_err(name: &str, reason: String) -> ObjectError {
    ObjectError::Global { name: name.to_string(), reason }
}

/// The VAR type ids of every variable of every global data section.
fn var_ids<'a>(btf: &'a Btf, maps: &'a [super::MapDef]) -> impl Iterator<Item = TypeId> + 'a {
    super::data_vars(btf, maps).map(|(_, v)| v.ty)
}

fn find_var(btf: &Btf, maps: &[super::MapDef], name: &str) -> Result<TypeId, ObjectError> {
    if let Some(id) = var_ids(btf, maps).find(|&id| btf.name_of(id).is_ok_and(|n| n == name)) {
        return Ok(id);
    }
    let known: Vec<String> = var_ids(btf, maps).filter_map(|id| btf.name_of(id).ok().map(str::to_string)).collect();
    let known = if known.is_empty() { "the object has none".to_string() } else { format!("the object has {}", known.join(", ")) };
    Err(global_err(name, format!("no such global variable ({known})")))
}

/// `text` as the bytes of the VAR `var`'s type, or why not.
fn parse_for_type(btf: &Btf, var: TypeId, text: &str) -> Result<Vec<u8>, String> {
    let TypeDetail::Var { ty, .. } = btf.type_by_id(var).map_err(|e| e.to_string())?.detail else {
        return Err("not a variable in the object's BTF".into());
    };
    let id = btf.resolve(ty).map_err(|e| e.to_string())?;
    let t = btf.type_by_id(id).map_err(|e| e.to_string())?;
    match t.detail {
        TypeDetail::Int { size, encoding: IntEncoding::Bool, .. } => {
            let v = match text {
                "true" | "1" => 1u64,
                "false" | "0" => 0,
                _ => return Err(format!("`{text}` is not a bool (true, false, 1 or 0)")),
            };
            Ok(v.to_le_bytes()[..size as usize].to_vec())
        }
        TypeDetail::Int { size, encoding, bits, .. } => {
            let signed = encoding == IntEncoding::Signed;
            let value = parse_int(text).ok_or_else(|| format!("`{text}` is not an integer"))?;
            int_bytes(value, size, u32::from(bits), signed)
        }
        TypeDetail::Enum { size, signed, ref values } | TypeDetail::Enum64 { size, signed, ref values } => {
            let value = match values.iter().find(|v| v.name == text) {
                Some(v) => v.value,
                None => parse_int(text).ok_or_else(|| {
                    let names: Vec<&str> = values.iter().map(|v| v.name).collect();
                    format!("`{text}` is not one of {} nor a number", names.join(", "))
                })?,
            };
            // An enum without negative enumerators may still be read as unsigned; allow both.
            int_bytes(value, size, size * 8, signed || value < 0)
        }
        TypeDetail::Array { elem, len, .. } if is_char(btf, elem) => {
            let s = text.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(text);
            if s.len() >= len as usize {
                return Err(format!("\"{s}\" is {} bytes; char[{len}] holds at most {} and the NUL", s.len(), len.saturating_sub(1)));
            }
            let mut bytes = s.as_bytes().to_vec();
            bytes.resize(len as usize, 0);
            Ok(bytes)
        }
        _ => Err(format!("its type ({}) cannot be set from text: only integers, bools, enums and char arrays", t.kind())),
    }
}

fn is_char(btf: &Btf, elem: TypeId) -> bool {
    let Ok(id) = btf.resolve(elem) else { return false };
    matches!(btf.type_by_id(id).map(|t| t.detail), Ok(TypeDetail::Int { size: 1, .. }))
}

/// Decimal, `0x`, `0o` or `0b`, with an optional leading `-`.
fn parse_int(text: &str) -> Option<i128> {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits = digits.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(h) = lower.strip_prefix("0x") {
        (16, h)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (8, o)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b)
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(body, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// `value` as `size` little-endian bytes of a `bits`-wide integer, or why it does not fit.
fn int_bytes(value: i128, size: u32, bits: u32, signed: bool) -> Result<Vec<u8>, String> {
    let bits = bits.clamp(1, 64);
    let (min, max) = if signed { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) } else { (0, (1i128 << bits) - 1) };
    if value < min || value > max {
        return Err(format!("{value} does not fit ({min}..={max})"));
    }
    Ok((value as u64).to_le_bytes()[..size.min(8) as usize].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_in_every_radix_and_must_fit() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int("0b101"), Some(5));
        assert_eq!(parse_int("0o17"), Some(15));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("x"), None);
        assert_eq!(parse_int("0x"), None);
        assert_eq!(int_bytes(255, 1, 8, false).unwrap(), vec![255]);
        assert_eq!(int_bytes(-1, 2, 16, true).unwrap(), vec![0xff, 0xff]);
        assert_eq!(int_bytes(256, 1, 8, false).unwrap_err(), "256 does not fit (0..=255)");
        assert_eq!(int_bytes(-1, 4, 32, false).unwrap_err(), "-1 does not fit (0..=4294967295)");
        assert_eq!(int_bytes(-129, 1, 8, true).unwrap_err(), "-129 does not fit (-128..=127)");
        assert_eq!(int_bytes(u64::MAX as i128, 8, 64, false).unwrap(), vec![0xff; 8]);
    }
}
