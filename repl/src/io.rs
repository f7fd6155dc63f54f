//! Where subcommands read their input and write their output: a file path or `-`
//! for stdin, and stdout or an `-o` file. Names used in messages (`<stdin>`, the
//! path as given) are decided here.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{CliError, OutputName};

/// An input named on the command line: a file, or `-` for stdin.
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// `-` is stdin; anything else is a path.
    pub fn from_arg(arg: &Path) -> Self {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(arg.to_path_buf())
        }
    }

    /// The name used in messages and source locations: the path as given, or `<stdin>`.
    pub fn origin(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// The whole input as bytes.
    pub fn read_bytes(&self) -> Result<Vec<u8>, CliError> {
        let res = match self {
            Source::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin().lock().read_to_end(&mut buf).map(|_| buf)
            }
            Source::File(p) => std::fs::read(p),
        };
        res.map_err(|source| CliError::Read {
            origin: self.origin(),
            source,
        })
    }

    /// The whole input as UTF-8 text; `hint` says what to do if it is not text.
    pub fn read_text(&self, hint: &'static str) -> Result<String, CliError> {
        let bytes = self.read_bytes()?;
        String::from_utf8(bytes).map_err(|_| CliError::NotText {
            origin: self.origin(),
            hint,
        })
    }
}

/// Write `data` to the `-o` path if one was given (`-` meaning stdout), else to `stdout`.
///
/// Callers produce the whole output first, so a failed command never leaves a partial file.
pub fn write_output(
    output: Option<&Path>,
    stdout: &mut dyn Write,
    data: &[u8],
) -> Result<(), CliError> {
    match output {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(p, data).map_err(|e| CliError::write(&OutputName::path(p), e))
        }
        _ => {
            let name = OutputName::stdout();
            stdout
                .write_all(data)
                .map_err(|e| CliError::write(&name, e))?;
            stdout.flush().map_err(|e| CliError::write(&name, e))
        }
    }
}
