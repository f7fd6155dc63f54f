//! The error type every subcommand returns, and how it is shown to the user.
//!
//! `Display` gives the message that `main` prints after `error: `; library errors
//! that carry a position (parse errors, assemble errors, encode errors with the
//! instruction's source location, decode errors with the slot) keep it.

use std::fmt;

use bpfkit::core_btf::BtfError;
use bpfkit::insn::{AssembleError, DecodeError, EncodeError, ParseError, SourceLoc};
use bpfkit::maps::MapError;
use bpfkit::prog::LoadError;
use bpfkit::os::{PinError, SysError};

use crate::hex::HexError;

/// Why a subcommand failed.
#[derive(Debug)]
pub enum CliError {
    /// An input file (or stdin) could not be read.
    Read {
        origin: String,
        source: std::io::Error,
    },
    /// The output could not be written.
    Write {
        target: String,
        source: std::io::Error,
    },
    /// Text was expected but the input is not UTF-8.
    NotText { origin: String, hint: &'static str },
    /// Program text has a syntax error.
    Parse(ParseError),
    /// Labels could not be resolved; `snippet` is the offending line with a caret, when known.
    Assemble {
        source: AssembleError,
        snippet: Option<String>,
    },
    /// An instruction could not be encoded (e.g. a map referenced by name).
    Encode {
        loc: Option<SourceLoc>,
        source: EncodeError,
        snippet: Option<String>,
    },
    /// Hex text is malformed.
    Hex { origin: String, source: HexError },
    /// The input length is not a whole number of 8-byte slots.
    Truncated { origin: String, len: usize },
    /// Bytes do not decode to instructions.
    Decode { origin: String, source: DecodeError },
    /// A program did not load; a verifier rejection shows `snippet` (the source line of the
    /// failing instruction) and, when asked for, the whole verifier `log`.
    Load {
        source: Box<LoadError>,
        snippet: Option<String>,
        log: Option<String>,
    },
    /// Program text holds no instructions (only comments, labels or nothing).
    NoInstructions { origin: String },
    /// A program uses a map (`map[NAME]`) that the command line does not declare.
    UndeclaredMap {
        name: String,
        loc: Option<SourceLoc>,
        snippet: Option<String>,
    },
    /// A map operation failed (the error names the map).
    Map(MapError),
    /// `BPF_PROG_TEST_RUN` failed; `hint` says what to change, when the errno suggests it.
    TestRun {
        source: SysError,
        hint: Option<String>,
    },
    /// A pinned path could not be opened, or holds a different kind of object.
    Pin(PinError),
    /// No kernel object of this kind has this id.
    NoSuchId { kind: &'static str, id: u32 },
    /// The object pinned at `path` is not a `want` (it is a `found`).
    WrongPinKind {
        path: String,
        want: &'static str,
        found: String,
    },
    /// BTF could not be read, or has no type of that name or id.
    Btf(BtfError),
    /// A link could not be opened, queried or detached (the error names it).
    Link(bpfkit::attach::LinkError),
    /// A BPF object could not be read, relocated or loaded (the error names what in it).
    Object { file: String, source: Box<bpfkit::object::ObjectError> },
    /// An argument is malformed (exit status 2, as clap's usage errors).
    Usage(String),
    /// A REPL command could not do what it was asked; the message says what and why (naming
    /// the program, map, line or capability).
    Message(String),
    /// The process could not set itself up (a signal handler, say).
    Setup(String),
}

impl CliError {
    /// The process exit status for this error (2 is left to usage errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }

    pub fn write(target: &OutputName, source: std::io::Error) -> Self {
        CliError::Write {
            target: target.0.clone(),
            source,
        }
    }
}

/// The name of an output, for error messages: a path or `<stdout>`.
#[derive(Debug, Clone)]
pub struct OutputName(pub String);

impl OutputName {
    pub fn stdout() -> Self {
        OutputName("<stdout>".into())
    }
    pub fn path(p: &std::path::Path) -> Self {
        OutputName(p.display().to_string())
    }
}

/// The line `loc` points at in `text`, with a caret under its column, formatted as
/// [`bpfkit::insn::ParseError::render`] does (`\n  | line\n  |    ^`).
pub fn snippet(text: &str, loc: &SourceLoc) -> Option<String> {
    let line = text
        .lines()
        .nth(usize::try_from(loc.line).ok()?.checked_sub(1)?)?;
    let pad: String = line
        .chars()
        .take(loc.column.saturating_sub(1) as usize)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    Some(format!("\n  | {line}\n  | {pad}^"))
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Read { origin, source } => write!(f, "cannot read {origin}: {source}"),
            CliError::Write { target, source } => write!(f, "cannot write {target}: {source}"),
            CliError::NotText { origin, hint } => write!(f, "{origin}: not UTF-8 text ({hint})"),
            CliError::Parse(e) => f.write_str(&e.render()),
            CliError::Assemble { source, snippet } => write!(f, "{source}{}", snippet.as_deref().unwrap_or_default()),
            CliError::Encode { loc: Some(loc), source, snippet } => {
                write!(f, "{loc}: {source}{}", snippet.as_deref().unwrap_or_default())
            }
            CliError::Encode { loc: None, source, .. } => write!(f, "{source}"),
            CliError::Hex { origin, source } => write!(f, "{origin}:{source}"),
            CliError::Truncated { origin, len } => write!(
                f,
                "{origin}: truncated program: {len} bytes is not a whole number of 8-byte instruction slots \
                 ({} whole slot{} and {} byte{} left over)",
                len / 8,
                if len / 8 == 1 { "" } else { "s" },
                len % 8,
                if len % 8 == 1 { "" } else { "s" },
            ),
            CliError::Decode { origin, source } => write!(f, "{origin}: {source}"),
            CliError::Load { source, snippet, log } => {
                write!(f, "{source}{}", snippet.as_deref().unwrap_or_default())?;
                if let LoadError::Verifier { rejection, .. } = source.as_ref() {
                    if let Some(d) = rejection.diagnose() {
                        write!(f, "\nwhy: {}\nfix: {}", d.cause, d.fix)?;
                    }
                }
                match log {
                    Some(log) => write!(f, "\nverifier log:\n{}", log.trim_end()),
                    None => Ok(()),
                }
            }
            CliError::NoInstructions { origin } => write!(f, "{origin}: no instructions to load"),
            CliError::UndeclaredMap { name, loc, snippet } => {
                if let Some(loc) = loc {
                    write!(f, "{loc}: ")?;
                }
                write!(
                    f,
                    "map `{name}` is not declared: declare it with `--map {name}:TYPE:KEY_SIZE:VALUE_SIZE:MAX_ENTRIES` \
                     (e.g. `--map {name}:hash:4:8:1024`){}",
                    snippet.as_deref().unwrap_or_default()
                )
            }
            CliError::Map(e) => write!(f, "{e}"),
            CliError::TestRun { source, hint: Some(hint) } => write!(f, "{source} ({hint})"),
            CliError::TestRun { source, hint: None } => write!(f, "{source}"),
            CliError::Pin(e) => write!(f, "{e}"),
            CliError::NoSuchId { kind, id } => {
                write!(f, "no {kind} with id {id} (`bpfkit {kind} list` shows the loaded ones)")
            }
            CliError::WrongPinKind { path, want, found } => {
                write!(f, "{path}: pinned object is a {found}, not a {want}")
            }
            CliError::Btf(e) => write!(f, "{e}"),
            CliError::Link(e) => write!(f, "{e}"),
            CliError::Object { file, source } => write!(f, "{file}: {source}"),
            CliError::Usage(what) | CliError::Setup(what) | CliError::Message(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for CliError {}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Message(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        CliError::Message(message.to_owned())
    }
}
