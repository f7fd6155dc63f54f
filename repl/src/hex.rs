//! Hex text for instruction bytes: the format `bpfkit asm --format hex` writes and
//! `bpfkit disasm --input hex` reads.
//!
//! Written form: one 8-byte slot per line, lowercase pairs separated by single
//! spaces (`b7 00 00 00 00 00 00 00`). Read form is looser: `#` starts a comment
//! that runs to the end of the line, all whitespace is ignored, and the remaining
//! hex digits are taken two at a time.

use std::fmt;
use std::fmt::Write;

/// Bytes as lowercase hex pairs joined by `sep` (`"01 00 00 00"` with `" "`): how keys, values
/// and records are shown by `bpfkit map dump` and the REPL.
pub fn spaced(bytes: &[u8], sep: &str) -> String {
    let mut out = String::with_capacity(bytes.len() * (2 + sep.len()));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Format bytes as hex text, one 8-byte slot per line (a short final slot is printed as is).
pub fn format_slots(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for slot in bytes.chunks(8) {
        for (i, b) in slot.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{b:02x}");
        }
        out.push('\n');
    }
    out
}

/// A malformed hex text, with the 1-based line and column (in characters) of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Parse hex text: `#` comments to end of line, whitespace ignored, then pairs of hex digits.
pub fn parse(text: &str) -> Result<Vec<u8>, HexError> {
    let mut out = Vec::with_capacity(text.len() / 3);
    // The first digit of a pair not yet completed, with its position.
    let mut pending: Option<(u8, usize, usize)> = None;
    for (l, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default();
        let mut prev = None;
        for (c, ch) in code.chars().enumerate() {
            let (line, column) = (l + 1, c + 1);
            if ch.is_whitespace() {
                prev = Some(ch);
                continue;
            }
            let Some(digit) = ch.to_digit(16) else {
                let message = if (ch == 'x' || ch == 'X') && prev == Some('0') {
                    "`0x` prefixes are not accepted: write the bytes as bare hex pairs (`b7 00 …`)"
                        .to_owned()
                } else {
                    format!("expected a hex digit, found {ch:?}")
                };
                return Err(HexError {
                    line,
                    column,
                    message,
                });
            };
            prev = Some(ch);
            let digit = digit as u8;
            match pending.take() {
                None => pending = Some((digit, line, column)),
                Some((hi, _, _)) => out.push(hi << 4 | digit),
            }
        }
    }
    if let Some((_, line, column)) = pending {
        return Err(HexError {
            line,
            column,
            message: "odd number of hex digits: this one has no partner".to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(parse(&format_slots(&bytes)), Ok(bytes));
    }

    #[test]
    fn comments_and_free_whitespace() {
        assert_eq!(
            parse("# header\nb7 0 0\t00 # mov\n\n  95\n"),
            Ok(vec![0xb7, 0x00, 0x00, 0x95])
        );
    }

    #[test]
    fn errors_have_positions() {
        let e = parse("b7 00\n0x12").unwrap_err();
        assert_eq!((e.line, e.column), (2, 2));
        assert!(e.message.contains("0x"), "{e}");
        let e = parse("b7 0g").unwrap_err();
        assert_eq!((e.line, e.column), (1, 5));
        let e = parse("b7 0").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4));
        assert!(e.message.contains("odd"), "{e}");
    }
}
