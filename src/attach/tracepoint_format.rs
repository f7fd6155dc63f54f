//! Tracepoint record layouts: the `format` file tracefs publishes for every tracepoint
//! (`<tracefs>/events/<category>/<name>/format`), parsed into its fields with their offsets and
//! sizes. A tracepoint program reads its context at these offsets; reading them from the running
//! kernel instead of copying numbers out of a header keeps the program right when the layout
//! changes between kernels.
//!
//! ```text
//! name: sys_enter_openat
//! ID: 782
//! format:
//!     field:unsigned short common_type;   offset:0;   size:2; signed:0;
//!     …
//!     field:const char * filename;        offset:24;  size:8; signed:0;
//! ```

use super::link::LinkError;
use crate::sys;

/// One field of a tracepoint record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracepointField {
    /// The field's name (`filename`; `comm` for `char comm[16]`).
    pub name: String,
    /// The C declaration as tracefs prints it (`const char * filename`).
    pub decl: String,
    /// Byte offset in the record (the program's context).
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Whether the kernel declares the field signed.
    pub signed: bool,
}

/// A tracepoint's record layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracepointFormat {
    /// `category/name`, for error messages.
    pub tracepoint: String,
    /// The tracepoint's id (`ID:` line), as `events/<category>/<name>/id` holds it.
    pub id: u64,
    /// Every field, the `common_*` header first, in file order.
    pub fields: Vec<TracepointField>,
}

impl TracepointFormat {
    /// Read and parse the `format` file of tracepoint `category/name` (mounting tracefs at
    /// `/sys/kernel/tracing` if it is not mounted).
    pub fn read(category: &str, name: &str) -> Result<TracepointFormat, LinkError> {
        let what = format!("tracepoint {category}/{name}");
        let bad = |m: String| LinkError::Target { what: what.clone(), message: m };
        if [category, name].iter().any(|s| s.is_empty() || s.contains('/') || s.contains("..")) {
            return Err(bad("category and name must be plain names (e.g. `syscalls`, `sys_enter_openat`)".into()));
        }
        let dir = sys::tracefs_dir().map_err(|e| bad(e.to_string()))?;
        let path = dir.join("events").join(category).join(name).join("format");
        let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e} (is the tracepoint in {}/available_events?)", path.display(), dir.display())))?;
        TracepointFormat::parse(&format!("{category}/{name}"), &text)
    }

    /// Parse the text of a `format` file; `tracepoint` names it in errors.
    pub fn parse(tracepoint: &str, text: &str) -> Result<TracepointFormat, LinkError> {
        let bad = |line: usize, m: String| LinkError::Target { what: format!("format of tracepoint {tracepoint}"), message: format!("line {line}: {m}") };
        let mut id = None;
        let mut fields = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("ID:") {
                id = Some(rest.trim().parse::<u64>().map_err(|_| bad(line_no, format!("the ID is not a number: {rest:?}")))?);
                continue;
            }
            let Some(rest) = line.strip_prefix("field:") else { continue };
            // `<decl>;\toffset:N;\tsize:N;\tsigned:N;`
            let mut parts = rest.split(';').map(str::trim);
            let decl = parts.next().unwrap_or_default();
            let mut attr = |key: &str| -> Result<u32, LinkError> {
                let part = parts.next().unwrap_or_default();
                let value = part.strip_prefix(key).and_then(|v| v.strip_prefix(':')).ok_or_else(|| bad(line_no, format!("expected `{key}:N`, found {part:?}")))?;
                value.trim().parse().map_err(|_| bad(line_no, format!("`{key}` is not a number: {value:?}")))
            };
            let (offset, size, signed) = (attr("offset")?, attr("size")?, attr("signed")?);
            let name = field_name(decl).ok_or_else(|| bad(line_no, format!("no field name in {decl:?}")))?;
            fields.push(TracepointField { name: name.to_owned(), decl: decl.to_owned(), offset, size, signed: signed != 0 });
        }
        let id = id.ok_or_else(|| bad(0, "no `ID:` line".into()))?;
        if fields.is_empty() {
            return Err(bad(0, "no `field:` lines".into()));
        }
        Ok(TracepointFormat { tracepoint: tracepoint.to_owned(), id, fields })
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&TracepointField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The offset of field `name`, as the `i16` a load instruction takes; an error lists the
    /// fields there are.
    pub fn offset_of(&self, name: &str) -> Result<i16, LinkError> {
        let what = || format!("tracepoint {}", self.tracepoint);
        let f = self.field(name).ok_or_else(|| {
            let names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
            LinkError::Target { what: what(), message: format!("no field `{name}` (it has {})", names.join(", ")) }
        })?;
        i16::try_from(f.offset).map_err(|_| LinkError::Target { what: what(), message: format!("field `{name}` is at offset {}, beyond an instruction's 16-bit offset", f.offset) })
    }
}

/// The identifier a declaration declares: the last word, without `[N]` or pointer stars.
fn field_name(decl: &str) -> Option<&str> {
    let last = decl.rsplit([' ', '\t', '*']).find(|w| !w.is_empty())?;
    let name = last.split('[').next()?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAT: &str = "name: sys_enter_openat
ID: 782
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: \"dfd: 0x%08lx, filename: 0x%08lx\", ((unsigned long)(REC->dfd)), ((unsigned long)(REC->filename))
";

    #[test]
    fn parses_offsets_sizes_and_names() {
        let f = TracepointFormat::parse("syscalls/sys_enter_openat", OPENAT).unwrap();
        assert_eq!(f.id, 782);
        assert_eq!(f.fields.len(), 9);
        let filename = f.field("filename").unwrap();
        assert_eq!((filename.offset, filename.size, filename.signed), (24, 8, false));
        assert_eq!(filename.decl, "const char * filename");
        assert!(f.field("common_pid").unwrap().signed);
        assert_eq!(f.offset_of("mode").unwrap(), 40);
        let err = f.offset_of("pathname").unwrap_err().to_string();
        assert!(err.contains("no field `pathname`") && err.contains("filename"), "{err}");
    }

    #[test]
    fn array_and_data_loc_fields_get_their_names() {
        assert_eq!(field_name("char prev_comm[16]"), Some("prev_comm"));
        assert_eq!(field_name("__data_loc char[] parent_comm"), Some("parent_comm"));
        assert_eq!(field_name("const char *name"), Some("name"));
        assert_eq!(field_name("pid_t child_pid"), Some("child_pid"));
        assert_eq!(field_name(""), None);
    }

    #[test]
    fn malformed_files_are_errors_naming_the_line() {
        let err = TracepointFormat::parse("x/y", "ID: 1\n\tfield:int a;\toffset:zero;\tsize:4;\tsigned:1;\n").unwrap_err().to_string();
        assert!(err.contains("format of tracepoint x/y") && err.contains("line 2") && err.contains("offset"), "{err}");
        assert!(TracepointFormat::parse("x/y", "ID: 1\n").is_err(), "no fields");
        assert!(TracepointFormat::parse("x/y", "\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n").is_err(), "no id");
        assert!(TracepointFormat::read("..", "x").is_err());
    }

    /// The running kernel's file: needs tracefs (root); agrees with the tracepoint's `id` file.
    #[test]
    fn reads_the_running_kernels_format() {
        let f = match TracepointFormat::read("syscalls", "sys_enter_openat") {
            Ok(f) => f,
            Err(e) if std::env::var_os("BPFKIT_REQUIRE_KERNEL").is_none() => {
                println!("skipped: reads_the_running_kernels_format: {e}");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert_eq!(f.id, super::super::tracepoint_id("syscalls", "sys_enter_openat").unwrap());
        let filename = f.field("filename").unwrap();
        assert_eq!(filename.size, 8, "a user pointer");
        assert!(filename.offset >= 8 && filename.offset % 8 == 0);
        let err = TracepointFormat::read("syscalls", "sys_enter_no_such_call").unwrap_err().to_string();
        assert!(err.contains("sys_enter_no_such_call"), "{err}");
    }
}
