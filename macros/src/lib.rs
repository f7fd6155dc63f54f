//! `bpf_asm!`: bpfkit's text grammar at compile time.
//!
//! The macro compiles bpfkit's own grammar and instruction model (`src/insn/`, by
//! `#[path]`), so the text it accepts is exactly what the REPL and `bpfkit asm`
//! accept. It rebuilds each statement's text from the tokens (statements end at a
//! `;` or a line break), parses it, and turns a syntax error into a compile error
//! on the offending token. The expansion hands the checked statements to
//! `bpfkit::insn::grammar::parse_macro`, with each `{expr}` evaluated once and
//! typed by where it appears (`i32` immediate, `i16` offset, 64-bit `lddw` value,
//! or a map handle).

#[allow(dead_code, unused_imports)]
#[path = "../../src/insn/mod.rs"]
mod insn;

#[allow(dead_code)]
#[path = "../../src/helpers/ids.rs"]
mod helper_ids;

/// The same path as in bpfkit (`crate::helpers::ids`), for the shared sources.
mod helpers {
    pub(crate) use super::helper_ids as ids;
}

use std::cell::RefCell;
use std::collections::HashMap;

use proc_macro::{Delimiter, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned};

use insn::grammar::{parse_statement, splice_hole, Dialect, HoleKind, Holes};

/// A statement being rebuilt from tokens.
struct Stmt {
    text: String,
    line: usize,
    column: usize,
    /// (byte offset in `text`, span) of every token, for mapping parse errors back.
    tokens: Vec<(usize, Span)>,
}

struct Collector {
    stmts: Vec<Stmt>,
    cur: Option<Stmt>,
    last_line: usize,
    last_end: (usize, usize),
    holes: Vec<(proc_macro2::TokenStream, Span)>,
}

impl Collector {
    fn finish(&mut self) {
        if let Some(s) = self.cur.take() {
            if !s.text.trim().is_empty() {
                self.stmts.push(s);
            }
        }
    }

    fn push_text(&mut self, text: &str, span: Span, top_level: bool) {
        let (line, col) = (span.line(), span.column());
        if top_level && self.cur.is_some() && line > self.last_line {
            self.finish();
        }
        let adjacent = self.last_end == (line, col);
        let stmt = self.cur.get_or_insert_with(|| Stmt { text: String::new(), line, column: col, tokens: Vec::new() });
        if !stmt.text.is_empty() && !adjacent {
            stmt.text.push(' ');
        }
        stmt.tokens.push((stmt.text.len(), span));
        stmt.text.push_str(text);
        let end = span.end();
        self.last_line = end.line();
        self.last_end = (end.line(), end.column());
    }

    fn walk(&mut self, ts: TokenStream, top_level: bool) {
        for tt in ts {
            match tt {
                TokenTree::Punct(p) if p.as_char() == ';' && top_level => {
                    self.finish();
                    self.last_end = (0, 0);
                }
                TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => {
                    let n = self.holes.len();
                    self.holes.push((g.stream().into(), g.span()));
                    self.push_text(&format!("{{{n}}}"), g.span(), top_level);
                }
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Bracket => ("[", "]"),
                        _ => ("", ""),
                    };
                    if !open.is_empty() {
                        self.push_text(open, g.span_open(), top_level);
                    }
                    self.walk(g.stream(), false);
                    if !close.is_empty() {
                        self.push_text(close, g.span_close(), false);
                    }
                }
                other => {
                    let text = other.to_string();
                    self.push_text(&text, other.span(), top_level);
                }
            }
        }
    }
}

fn error_at(span: Span, msg: &str) -> TokenStream {
    let span: proc_macro2::Span = span.into();
    quote_spanned!(span=> ::core::compile_error!(#msg)).into()
}

/// Assemble eBPF text at compile time into a `bpfkit::insn::Program`.
///
/// Either dialect, one instruction per line or `;`-separated; labels as `name:`;
/// Rust values as `{expr}`; a statement that is only `{expr}` (a `Program` or `&Program`,
/// e.g. an instruction pattern) splices that program's instructions and labels in place.
/// A syntax error, or a label defined twice, is a compile error.
///
/// # Panics
/// At run time, if a value spliced in with `-{expr}` overflows its field.
#[proc_macro]
pub fn bpf_asm(input: TokenStream) -> TokenStream {
    let mut c = Collector { stmts: Vec::new(), cur: None, last_line: 0, last_end: (0, 0), holes: Vec::new() };
    c.walk(input, true);
    c.finish();

    let probe = Holes::Probe(RefCell::new(Vec::new()));
    let mut labels: HashMap<String, Span> = HashMap::new();
    // Statements that are only `{expr}` splice a whole `Program` there.
    let mut splices = Vec::new();
    for st in &c.stmts {
        if let Some(n) = splice_hole(&st.text) {
            splices.push(n);
            continue;
        }
        match parse_statement(&st.text, Dialect::Auto, &probe) {
            Ok(parsed) => {
                for (name, at) in parsed.labels {
                    let span = span_at(st, at);
                    if labels.insert(name.clone(), span).is_some() {
                        return error_at(span, &format!("duplicate label `{name}`"));
                    }
                }
            }
            Err((pos, msg)) => return error_at(span_at(st, pos), &msg),
        }
    }
    let kinds: HashMap<usize, HoleKind> = match probe {
        Holes::Probe(k) => k.into_inner().into_iter().collect(),
        _ => HashMap::new(),
    };

    let hole_values = c.holes.iter().enumerate().map(|(i, (expr, span))| {
        let span: proc_macro2::Span = (*span).into();
        if splices.contains(&i) {
            return quote!(::bpfkit::insn::grammar::HoleValue::Int(0));
        }
        match kinds.get(&i) {
            Some(HoleKind::Imm32) => quote_spanned!(span=> ::bpfkit::insn::grammar::HoleValue::Int({ let v: i32 = #expr; v as i128 })),
            Some(HoleKind::Off16) => quote_spanned!(span=> ::bpfkit::insn::grammar::HoleValue::Int({ let v: i16 = #expr; v as i128 })),
            Some(HoleKind::Imm64) => quote_spanned!(span=> ::bpfkit::insn::grammar::HoleValue::Int(::core::convert::Into::<i128>::into(#expr))),
            Some(HoleKind::Map) => quote_spanned!(span=> ::bpfkit::insn::grammar::HoleValue::Map(::core::convert::Into::<::bpfkit::insn::MapRef>::into(#expr))),
            None => quote_spanned!(span=> ::core::compile_error!("`{…}` is not allowed here: Rust values go where an immediate, an offset or a map goes")),
        }
    });
    let stmts = c.stmts.iter().map(|s| {
        let text = &s.text;
        let line = s.line as u32;
        let column = s.column as u32;
        quote!(::bpfkit::insn::grammar::MacroStatement { text: #text, line: #line, column: #column })
    });
    if splices.is_empty() {
        return quote!({
            let holes = [#(#hole_values),*];
            ::bpfkit::insn::grammar::parse_macro(::core::file!(), &[#(#stmts),*], &holes)
                .unwrap_or_else(|e| ::core::panic!("bpf_asm!: {}", e))
        })
        .into();
    }
    let spliced = splices.iter().map(|&n| {
        let (expr, span) = &c.holes[n];
        let span: proc_macro2::Span = (*span).into();
        quote_spanned!(span=> (#n, ::bpfkit::insn::grammar::splice_value(#expr)))
    });
    quote!({
        let holes = [#(#hole_values),*];
        let splices = ::std::vec![#(#spliced),*];
        ::bpfkit::insn::grammar::parse_macro_spliced(::core::file!(), &[#(#stmts),*], &holes, splices)
            .unwrap_or_else(|e| ::core::panic!("bpf_asm!: {}", e))
    })
    .into()
}

/// The span of the token covering byte `pos` of the statement.
fn span_at(st: &Stmt, pos: usize) -> Span {
    st.tokens
        .iter()
        .rev()
        .find(|(off, _)| *off <= pos)
        .or_else(|| st.tokens.first())
        .map(|(_, s)| *s)
        .unwrap_or_else(Span::call_site)
}
