//! The one text grammar: used by `bpf_asm!` at compile time, and by the REPL and
//! `bpfkit asm` at run time.
//!
//! Text is split into statements (a line; `bpf_asm!` also splits on `;`). A
//! statement is zero or more `label:` definitions followed by at most one
//! instruction in either dialect, chosen per statement: the mnemonic dialect
//! ([`mnemonic`]) or the LLVM / verifier-log dialect ([`llvm`]). Comments start
//! with `#`, `//` or (outside `bpf_asm!`) `;`. Errors carry line and column and
//! say what was expected. As in the uBPF / bpf_conformance assembler, a jump to
//! `exit` where no label `exit` is defined targets the program's first `exit`.

mod lexer;
pub mod llvm;
pub mod mnemonic;

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

pub use lexer::{helper_id, helper_name};
use lexer::{Cursor, StmtError};

use super::model::{Insn, MapRef};
use super::program::{Item, Program, SourceLoc, SourceText};

/// Which dialect(s) a parse accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Either, decided per statement.
    #[default]
    Auto,
    /// Only the mnemonic dialect ([`mnemonic`]: `mov r0, 0`, `ldxw r1, [r2+4]`).
    Mnemonic,
    /// Only the LLVM / verifier-log dialect ([`llvm`]: `r0 = 0`, `r1 = *(u32 *)(r2 + 4)`).
    Llvm,
}

/// A syntax error with its position (1-based line and column, in characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
#[non_exhaustive]
pub struct ParseError {
    /// Where the text came from: a file path, `<repl>`, `<stdin>`, …
    pub origin: Arc<str>,
    /// 1-based line of the error.
    pub line: u32,
    /// 1-based column of the error, in characters.
    pub column: u32,
    /// What went wrong and what was expected.
    pub message: String,
    /// The offending statement's text, for display with a caret.
    pub source_line: String,
}

impl ParseError {
    /// The error with the source line and a caret under the column, as compilers print it.
    pub fn render(&self) -> String {
        let pad: String = self.source_line.chars().take(self.column.saturating_sub(1) as usize).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
        format!("{self}\n  | {}\n  | {pad}^", self.source_line)
    }
}

/// What kind of value a `{hole}` in `bpf_asm!` stands for (decided by where it appears).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoleKind {
    /// A 32-bit immediate (`i32`).
    Imm32,
    /// A 16-bit memory or jump offset (`i16`).
    Off16,
    /// A 64-bit immediate of `lddw` (`i64`/`u64`).
    Imm64,
    /// A map handle (`MapRef`).
    Map,
}

/// The value of a `{hole}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoleValue {
    /// An integer (for the immediate and offset kinds; range-checked when used).
    Int(i128),
    /// A map handle.
    Map(MapRef),
}

/// How `{N}` holes are treated.
pub enum Holes<'a> {
    /// Not allowed (run-time text).
    None,
    /// Allowed with dummy values; records each hole's kind (`bpf_asm!` at compile time).
    Probe(RefCell<Vec<(usize, HoleKind)>>),
    /// Filled from these values (`bpf_asm!` at run time).
    Values(&'a [HoleValue]),
}

/// One parsed statement: labels defined on it, and its instruction if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Label names with their byte offset in the statement.
    pub labels: Vec<(String, usize)>,
    /// The instruction and its byte offset in the statement.
    pub insn: Option<(Insn, usize)>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// 8 bytes as a little-endian word (`chunk.len() == 8`).
#[inline]
fn word(chunk: &[u8]) -> u64 {
    u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]])
}

/// The high bit of every byte of `x` equal to `c`, exact up to the first such byte (a
/// borrow can flag bytes after it), so its trailing zeros locate the first match.
#[inline]
fn bytes_eq(x: u64, c: u8) -> u64 {
    let y = x ^ (ONES * c as u64);
    y.wrapping_sub(ONES) & !y & HIGH
}

/// [`str::lines`] (split at `\n`, a `\r` before it dropped), with a word-at-a-time newline
/// search: program lines are short, where `memchr`'s set-up costs more than the search.
struct Lines<'a>(&'a str);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let text = self.0;
        if text.is_empty() {
            return None;
        }
        let b = text.as_bytes();
        let mut i = 0;
        let newline = loop {
            match b.get(i..i + 8) {
                Some(chunk) => {
                    let m = bytes_eq(word(chunk), b'\n');
                    if m != 0 {
                        break Some(i + (m.trailing_zeros() / 8) as usize);
                    }
                    i += 8;
                }
                None => break b[i..].iter().position(|&c| c == b'\n').map(|p| i + p),
            }
        };
        Some(match newline {
            Some(n) => {
                self.0 = &text[n + 1..];
                let line = &text[..n];
                line.strip_suffix('\r').unwrap_or(line)
            }
            None => {
                self.0 = "";
                text
            }
        })
    }
}

/// Whether a statement is empty (only whitespace), as `s.trim_start().is_empty()`.
#[inline]
fn is_blank(s: &str) -> bool {
    match s.bytes().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')) {
        None => true,
        Some(i) if s.as_bytes()[i] < 0x80 => false,
        Some(i) => s[i..].trim_start().is_empty(),
    }
}

/// Strip a comment (`#`, `//`, and `;` when `semicolon_comments`).
pub fn strip_comment(line: &str, semicolon_comments: bool) -> &str {
    let b = line.as_bytes();
    // Skip 8 bytes at a time while none of them can start a comment (most lines have none);
    // the byte loop below decides from the first chunk that might.
    let mut start = 0;
    while let Some(chunk) = b.get(start..start + 8) {
        let x = word(chunk);
        if bytes_eq(x, b'#') | bytes_eq(x, b'/') | if semicolon_comments { bytes_eq(x, b';') } else { 0 } != 0 {
            break;
        }
        start += 8;
    }
    for i in start..b.len() {
        match b[i] {
            b'#' => return &line[..i],
            b';' if semicolon_comments => return &line[..i],
            b'/' if b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Parse one statement (no comment, no newline). Positions in the error are byte offsets into `text`.
pub fn parse_statement(text: &str, dialect: Dialect, holes: &Holes) -> Result<Statement, (usize, String)> {
    parse_statement_inner(text, dialect, holes).map_err(|e| (e.pos, e.message))
}

fn parse_statement_inner(text: &str, dialect: Dialect, holes: &Holes) -> Result<Statement, StmtError> {
    let mut c = Cursor::new(text, holes);
    let mut labels = Vec::new();
    // The statement's first identifier (if it is not a label) and the position after it:
    // lexed once here, then used to choose the dialect and as the mnemonic.
    let mut first = None;
    loop {
        if c.at_end() {
            return Ok(Statement { labels, insn: None });
        }
        let start = c.pos;
        if let Some(id) = c.ident() {
            let after = c.pos;
            if c.eat(":") {
                labels.push((id.to_owned(), start));
                continue;
            }
            first = Some((id, after));
        }
        c.pos = start;
        break;
    }
    let at = c.pos;
    let is_llvm = match first {
        Some((id, after)) => {
            c.pos = after;
            let yes = llvm::ident_starts_llvm(&mut c, id);
            c.pos = at;
            yes
        }
        None => llvm::starts_llvm(&mut c),
    };
    let insn = if is_llvm {
        if dialect == Dialect::Mnemonic {
            return c.err("this is an LLVM-style instruction, but the mnemonic dialect was requested");
        }
        llvm::parse(&mut c)?
    } else {
        let Some((m, after)) = first else {
            return c.expected("an instruction or a label");
        };
        c.pos = after;
        // `call`, `callx`, `exit`, `gotol`, `may_goto` and the `core_*` forms read the same in
        // both dialects.
        let shared = matches!(m, "call" | "callx" | "exit" | "gotol" | "may_goto") || m.starts_with("core_");
        if dialect == Dialect::Llvm && !shared {
            return c.err_at(at, format!("`{m}` is a mnemonic-dialect instruction, but the LLVM dialect was requested"));
        }
        mnemonic::parse(&mut c, m, at)?
    };
    Ok(Statement { labels, insn: Some((insn, at)) })
}

/// Options for [`parse_program_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ParseOptions {
    dialect: Dialect,
    /// Named in errors and source locations: a file path, `<repl>`, `<stdin>`.
    origin: Arc<str>,
    /// The line number of the text's first line (for text embedded in a larger file).
    first_line: u32,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions { dialect: Dialect::Auto, origin: Arc::from("<input>"), first_line: 1 }
    }
}

impl ParseOptions {
    /// The defaults: [`Dialect::Auto`], origin `<input>`, first line 1.
    pub fn new() -> Self {
        Self::default()
    }
    /// Which dialect(s) to accept.
    pub fn dialect(mut self, d: Dialect) -> Self {
        self.dialect = d;
        self
    }
    /// The name errors and source locations give the text (a file path, `<repl>`, …).
    pub fn origin(mut self, o: impl Into<Arc<str>>) -> Self {
        self.origin = o.into();
        self
    }
    /// The line number of the text's first line (for text embedded in a larger file).
    pub fn first_line(mut self, l: u32) -> Self {
        self.first_line = l;
        self
    }
}

fn column_of(line: &str, byte: usize) -> u32 {
    line[..byte.min(line.len())].chars().count() as u32 + 1
}

/// Parse program text, either dialect per line.
pub fn parse_program(text: &str) -> Result<Program, ParseError> {
    parse_program_with(text, &ParseOptions::default())
}

/// Parse program text with options.
pub fn parse_program_with(text: &str, opts: &ParseOptions) -> Result<Program, ParseError> {
    let mut prog = Program::new();
    // One copy of the text for every location to share; statements are ranges of it.
    let source = SourceText::new(opts.origin.clone(), text);
    let base = text.as_ptr() as usize;
    for (i, raw_line) in Lines(text).enumerate() {
        let line_no = opts.first_line + i as u32;
        let stmt = strip_comment(raw_line, true);
        if is_blank(stmt) {
            continue;
        }
        let parsed = parse_statement_inner(stmt, opts.dialect, &Holes::None).map_err(|e| ParseError {
            origin: opts.origin.clone(),
            line: line_no,
            column: column_of(raw_line, e.pos),
            message: e.message,
            source_line: raw_line.to_owned(),
        })?;
        let trimmed = stmt.trim();
        let start = trimmed.as_ptr() as usize - base;
        push_statement(&mut prog, parsed, &source, line_no, start..start + trimmed.len(), |b| column_of(raw_line, b));
    }
    prog.define_exit_label_if_used();
    Ok(prog)
}

fn push_statement(prog: &mut Program, s: Statement, source: &Arc<SourceText>, line: u32, range: std::ops::Range<usize>, col: impl Fn(usize) -> u32) {
    let loc = |b: usize| Some(SourceLoc::new(source.clone(), line, col(b), range.clone()));
    for (name, at) in s.labels {
        prog.push_item(Item::Label { name, loc: loc(at) });
    }
    if let Some((insn, at)) = s.insn {
        prog.push_item(Item::Insn { insn, loc: loc(at) });
    }
}

/// One statement of a `bpf_asm!` invocation: its text and where it starts in the Rust file.
#[derive(Clone, Copy, Debug)]
pub struct MacroStatement {
    /// The statement's text.
    pub text: &'static str,
    /// 1-based line where it starts in the Rust file.
    pub line: u32,
    /// 1-based column where it starts in the Rust file.
    pub column: u32,
}

/// Build the program of a `bpf_asm!` invocation at run time. The macro has already parsed the
/// same statements with the same grammar at compile time, so a failure here means the values
/// spliced into `{holes}` did not fit where they were used (e.g. an offset beyond 16 bits).
pub fn parse_macro(file: &'static str, stmts: &[MacroStatement], holes: &[HoleValue]) -> Result<Program, ParseError> {
    parse_macro_spliced(file, stmts, holes, Vec::new())
}

/// The hole number of a statement consisting only of `{N}`: `bpf_asm!` splices a whole
/// [`Program`] there (a pattern, a fragment built elsewhere) instead of parsing it.
pub fn splice_hole(text: &str) -> Option<usize> {
    let n = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// A `{program}` statement's value: a [`Program`] or a reference to one.
pub fn splice_value<P: std::borrow::Borrow<Program>>(p: P) -> Program {
    p.borrow().clone()
}

/// [`parse_macro`] where the statements `{N}` of the `splices` hole numbers insert those
/// programs' items in place (their `holes` entries are unused).
pub fn parse_macro_spliced(file: &'static str, stmts: &[MacroStatement], holes: &[HoleValue], mut splices: Vec<(usize, Program)>) -> Result<Program, ParseError> {
    let origin: Arc<str> = Arc::from(file);
    let holes = Holes::Values(holes);
    let mut prog = Program::new();
    // The statements' texts, one per line, shared by every location.
    let mut all = String::new();
    let mut ranges = Vec::with_capacity(stmts.len());
    for st in stmts {
        let trimmed = st.text.trim();
        ranges.push(all.len()..all.len() + trimmed.len());
        all.push_str(trimmed);
        all.push('\n');
    }
    let source = SourceText::new(origin.clone(), all);
    for (st, range) in stmts.iter().zip(ranges) {
        if let Some(i) = splice_hole(st.text).and_then(|n| splices.iter().position(|(h, _)| *h == n)) {
            prog.extend(std::mem::take(&mut splices[i].1));
            continue;
        }
        let parsed = parse_statement_inner(st.text, Dialect::Auto, &holes).map_err(|e| ParseError {
            origin: origin.clone(),
            line: st.line,
            column: st.column + column_of(st.text, e.pos) - 1,
            message: e.message,
            source_line: st.text.to_owned(),
        })?;
        push_statement(&mut prog, parsed, &source, st.line, range, |b| st.column + column_of(st.text, b) - 1);
    }
    prog.define_exit_label_if_used();
    Ok(prog)
}

impl fmt::Display for HoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HoleKind::Imm32 => "a 32-bit immediate",
            HoleKind::Off16 => "a 16-bit offset",
            HoleKind::Imm64 => "a 64-bit immediate",
            HoleKind::Map => "a map",
        })
    }
}

impl ParseError {
    /// Always `None`: text, labels and encodings fail in bpfkit, never in a syscall (the same
    /// `errno()` as every bpfkit error has, so callers need not know which layer failed).
    pub fn errno(&self) -> Option<i32> {
        None
    }
}
