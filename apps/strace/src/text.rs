//! strace's ways of writing values: C string literals with its escapes, truncation with `...`,
//! flag sets joined by `|`, and the column the ` = ` of a finished call is aligned to.

/// The column (counting the `[pid N] ` or `PID ` prefix) the ` = ` of a result starts at,
/// as strace's default `-a 40` puts it.
pub const RESULT_COLUMN: usize = 39;

/// `bytes` as strace quotes a string: `"…"`, with `\n`, `\t`, `\"`, `\\` and octal escapes
/// (`\0`, `\177`; three digits when a digit follows, so `\0` then `1` reads `\0001`), cut at
/// `max` bytes with `...` after the closing quote when `truncated` (the data went on).
pub fn quote(bytes: &[u8], max: usize, truncated: bool) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut out = String::with_capacity(shown.len() + 2);
    out.push('"');
    for (i, &b) in shown.iter().enumerate() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let next_is_digit = shown.get(i + 1).is_some_and(|n| (b'0'..=b'7').contains(n));
                if next_is_digit {
                    out.push_str(&format!("\\{b:03o}"));
                } else {
                    out.push_str(&format!("\\{b:o}"));
                }
            }
        }
    }
    out.push('"');
    if truncated || bytes.len() > max {
        out.push_str("...");
    }
    out
}

/// `value` as the names of its set `flags` joined by `|`; bits no name covers are added as hex
/// (`O_RDONLY|0x400000`). `zero` names the value 0 (`O_RDONLY`), when it has a name.
pub fn flags(value: u64, names: &[(u64, &str)], zero: Option<&str>) -> String {
    if value == 0 {
        return zero.map_or_else(|| "0".to_string(), str::to_string);
    }
    let mut rest = value;
    let mut parts = Vec::new();
    for &(bit, name) in names {
        if bit != 0 && rest & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// The name of `value` in `names`, or the number.
pub fn named(value: i64, names: &[(i64, &str)]) -> String {
    names.iter().find(|(v, _)| *v == value).map_or_else(|| value.to_string(), |(_, n)| n.to_string())
}

/// A pointer as strace prints one: `NULL` or `0x7ffd…`.
pub fn pointer(value: u64) -> String {
    if value == 0 {
        "NULL".to_string()
    } else {
        format!("{value:#x}")
    }
}

/// A file descriptor argument: `AT_FDCWD` for -100, else the number.
pub fn dirfd(value: u64) -> String {
    if value as i32 == -100 {
        "AT_FDCWD".to_string()
    } else {
        (value as i32).to_string()
    }
}

/// A finished call's line: `call` padded so that ` = ` starts at [`RESULT_COLUMN`] (counting
/// `prefix`), then the result.
pub fn finished(prefix: &str, call: &str, result: &str) -> String {
    let mut line = format!("{prefix}{call}");
    let width = line.chars().count();
    if width < RESULT_COLUMN {
        line.extend(std::iter::repeat_n(' ', RESULT_COLUMN - width));
    }
    line.push_str(" = ");
    line.push_str(result);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_strace() {
        // What strace printed for the first 32 bytes of libc.so.6 (read of 832 bytes).
        let elf = b"\x7fELF\x02\x01\x01\x03\0\0\0\0\0\0\0\0\x03\0>\0\x01\0\0\0\x10t\x02\0\0\0\0\0";
        assert_eq!(quote(elf, 32, true), r#""\177ELF\2\1\1\3\0\0\0\0\0\0\0\0\3\0>\0\1\0\0\0\20t\2\0\0\0\0\0"..."#);
        assert_eq!(quote(b"vm\n", 32, false), r#""vm\n""#);
        assert_eq!(quote(b"\x001", 32, false), r#""\0001""#);
        assert_eq!(quote(b"a\"b\\", 32, false), r#""a\"b\\""#);
    }

    #[test]
    fn columns_and_flags() {
        assert_eq!(finished("20639 ", "close(3)", "0"), "20639 close(3)                          = 0");
        assert_eq!(finished("", "openat(AT_FDCWD, \"/a/very/long/path/that/is/long\", O_RDONLY)", "3").matches(" = ").count(), 1);
        let open = [(0o2000000, "O_CLOEXEC"), (0o100, "O_CREAT")];
        assert_eq!(flags(0o2000000, &open, Some("O_RDONLY")), "O_CLOEXEC");
        assert_eq!(flags(0o2000100 | 0x10000000, &open, None), "O_CLOEXEC|O_CREAT|0x10000000");
        assert_eq!(pointer(0), "NULL");
        assert_eq!(dirfd((-100i64) as u64), "AT_FDCWD");
    }
}
